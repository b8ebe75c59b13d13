/**
 * One client's boot as a list of what happened: DHCP exchanges, file transfers (with size, duration and
 * rate) and refused requests. Repeats collapse into one entry with a count, and the list is bounded, so a
 * client that loops for hours keeps a short, readable timeline. Pure: no clock, no I/O.
 * @module
 */
import type { ServiceName } from "../events.ts";

/** How far a client has come: DHCP → network boot program → script/config → kernel/initrd → done. */
export type Stage = "dhcp" | "nbp" | "script" | "kernel" | "done";

/** The stages in boot order. */
export const STAGES: readonly Stage[] = ["dhcp", "nbp", "script", "kernel", "done"];

/** What a stage is called on the page and in hints. */
export const STAGE_NAMES: Readonly<Record<Stage, string>> = {
  dhcp: "DHCP",
  nbp: "boot program",
  script: "script",
  kernel: "kernel/initrd",
  done: "done",
};

/** The stage a file name implies, or null when it says nothing. */
export function stageOfFile(name: string): Stage | null {
  const base = name.toLowerCase().replace(/^.*\//, "");
  if (/(^vmlinuz|^linux$|kernel|bzimage|initrd|\.iso$|\.img$|\.gz$|\.xz$|\.zst$|\.squashfs$)/.test(base)) {
    return "kernel";
  }
  if (/\.(ipxe|cfg|conf)$/.test(base) || name.toLowerCase().includes("pxelinux.cfg/") || base === "default") {
    return "script";
  }
  if (/\.(0|kpxe|kkpxe|pxe|efi|c32|com|n12|bin)$/.test(base) || base === "memdisk") return "nbp";
  return null;
}

/** The later of two stages. */
export function maxStage(a: Stage, b: Stage): Stage {
  return STAGES.indexOf(a) >= STAGES.indexOf(b) ? a : b;
}

/** A DHCP exchange: what the client sent, what pypxe answered. */
export interface DhcpEntry {
  readonly kind: "dhcp";
  /** Unix ms of the first occurrence. */
  at: number;
  /** Unix ms of the last occurrence (equals `at` unless repeated). */
  last: number;
  /** How many times in a row it happened. */
  count: number;
  readonly received: string;
  /** `OFFER`, `ACK`, `proxy OFFER`, `ACK (4011)`, `NAK`, or `none`. */
  readonly sent: string;
  readonly ip?: string;
  readonly bootFile?: string;
  readonly reason?: string;
  /** The DHCP server the client chose instead of pypxe. */
  readonly server?: string;
  /** Client type as DHCP saw it, e.g. `UEFI x64`. */
  readonly client?: string;
}

/** A file transfer, running or finished. */
export interface TransferEntry {
  readonly kind: "transfer";
  at: number;
  last: number;
  count: number;
  readonly service: ServiceName;
  /** The transfer id of the event stream. */
  readonly id: number;
  readonly file: string;
  /** Total bytes when known. */
  readonly size?: number;
  /** Bytes sent so far (or in all, once finished). */
  bytes: number;
  /** Duration once finished. */
  ms?: number;
  /** `ok` or why it failed; undefined while it runs. */
  outcome?: string;
}

/** A request answered with an error before any transfer (TFTP ERROR, HTTP 403/404). */
export interface RefusedEntry {
  readonly kind: "refused";
  at: number;
  last: number;
  count: number;
  readonly service: ServiceName;
  /** The first name asked for (later repeats may name other routine probes). */
  readonly file: string;
  readonly reason: "not-found" | "forbidden";
  /** A miss that belongs to a normal boot (PXELINUX config probes, optional files). */
  readonly routine: boolean;
}

/** One line of a client's timeline. */
export type TimelineEntry = DhcpEntry | TransferEntry | RefusedEntry;

/** Entries kept per client; the oldest go first. */
export const MAX_TIMELINE = 50;

/** Adds `entry` to `timeline` (in place), folding it into the last entry when it repeats that one. */
export function appendEntry(timeline: TimelineEntry[], entry: TimelineEntry): void {
  const prev = timeline[timeline.length - 1];
  if (prev !== undefined && repeats(prev, entry)) {
    prev.count += entry.count;
    prev.last = entry.last;
    return;
  }
  timeline.push(entry);
  if (timeline.length > MAX_TIMELINE) timeline.splice(0, timeline.length - MAX_TIMELINE);
}

/** Merges two clients' timelines (a client seen by its transfers before DHCP named its MAC). */
export function mergeTimelines(a: readonly TimelineEntry[], b: readonly TimelineEntry[]): TimelineEntry[] {
  const merged = [...a, ...b].sort((x, y) => x.at - y.at);
  return merged.slice(Math.max(0, merged.length - MAX_TIMELINE));
}

function repeats(prev: TimelineEntry, next: TimelineEntry): boolean {
  if (prev.kind === "dhcp" && next.kind === "dhcp") {
    return prev.received === next.received && prev.sent === next.sent && prev.ip === next.ip &&
      prev.bootFile === next.bootFile && prev.reason === next.reason && prev.server === next.server;
  }
  if (prev.kind === "refused" && next.kind === "refused") {
    // PXELINUX probes a dozen config names in a row: one line says it
    return prev.service === next.service && prev.reason === next.reason &&
      (prev.routine && next.routine || prev.file === next.file);
  }
  return false;
}

/** `512 B`, `42.4 kB`, `8.2 MB`, `1.03 GB` (decimal units). */
export function sizeText(bytes: number): string {
  if (bytes >= 1e9) return `${(bytes / 1e9).toFixed(2)} GB`;
  if (bytes >= 1e6) return `${(bytes / 1e6).toFixed(1)} MB`;
  if (bytes >= 1e3) return `${(bytes / 1e3).toFixed(1)} kB`;
  return `${Math.round(bytes)} B`;
}

/** `0.42 s`, `3.1 s`, `2 min 5 s`. */
export function durationText(ms: number): string {
  if (ms < 10_000) return `${(ms / 1000).toFixed(2)} s`;
  if (ms < 120_000) return `${(ms / 1000).toFixed(1)} s`;
  return `${Math.floor(ms / 60_000)} min ${Math.round((ms % 60_000) / 1000)} s`;
}

/** Bytes per second, 0 when the duration is unknown or zero. */
export function rateOf(bytes: number, ms: number): number {
  return ms > 0 ? Math.round(bytes / (ms / 1000)) : 0;
}

/** How an entry reads: `ok` (normal progress), `muted` (routine), `running`, `error`. */
export type EntryTone = "ok" | "muted" | "running" | "error";

/** True for a transfer the client ended on purpose (OVMF reads the size with a TFTP ERROR 8, then asks again). */
export function isClientAbort(outcome: string | undefined): boolean {
  return outcome !== undefined && outcome.startsWith("client error");
}

/** True for a transfer that stopped because the client went silent. */
export function isTimeout(outcome: string | undefined): boolean {
  return outcome !== undefined && (outcome.startsWith("timeout") || outcome.includes("stalled"));
}

/** A timeline entry in words: the service or protocol, the headline and its details. */
export function describeEntry(e: TimelineEntry): { what: string; text: string; tone: EntryTone } {
  const times = e.count > 1 ? ` (×${e.count})` : "";
  switch (e.kind) {
    case "dhcp": {
      const sent = e.sent === "none" ? "no answer" : e.sent;
      const parts = [`${e.received} → ${sent}`];
      if (e.ip) parts.push(e.ip);
      if (e.bootFile) parts.push(`boot file ${e.bootFile}`);
      let text = parts.join(" · ");
      if (e.server) text += ` · the client took the offer of ${e.server}`;
      else if (e.reason) text += ` · ${e.reason}`;
      const tone: EntryTone = e.server || e.sent === "NAK" ? "error" : e.sent === "none" ? "muted" : "ok";
      return { what: "DHCP", text: text + times, tone };
    }
    case "transfer": {
      const what = e.service.toUpperCase();
      if (e.outcome === undefined) {
        const of = e.size ? ` of ${sizeText(e.size)}` : "";
        return { what, text: `${e.file} · ${sizeText(e.bytes)}${of} so far…`, tone: "running" };
      }
      if (e.outcome === "ok") {
        const rate = rateOf(e.bytes, e.ms ?? 0);
        const speed = rate > 0 ? ` (${sizeText(rate)}/s)` : "";
        const text = `${e.file} · ${sizeText(e.bytes)} in ${durationText(e.ms ?? 0)}${speed}`;
        return { what, text: text + times, tone: "ok" };
      }
      if (isClientAbort(e.outcome)) {
        return { what, text: `${e.file} · ended by the client (${e.outcome})${times}`, tone: "muted" };
      }
      const after = `after ${sizeText(e.bytes)}${e.size ? ` of ${sizeText(e.size)}` : ""}`;
      return { what, text: `${e.file} · failed ${after}: ${e.outcome}${times}`, tone: "error" };
    }
    case "refused": {
      const what = e.service.toUpperCase();
      const why = e.reason === "forbidden" ? "refused (outside the tree or unreadable)" : "not found";
      if (e.routine) {
        const more = e.count > 1 ? ` and ${e.count - 1} more optional name(s)` : "";
        return { what, text: `${e.file}${more} · ${why} (normal probing)`, tone: "muted" };
      }
      return { what, text: `${e.file} · ${why}${times}`, tone: "error" };
    }
  }
}
