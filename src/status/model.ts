/**
 * The status model: per client (MAC, type, IP, stage, current file, bytes/total, rate, last seen, its
 * timeline and the hints read from it), the server's services and the totals, fed only by the boot
 * event stream.
 * @module
 */
import type { MachineApiView } from "../machines/api.ts";
import type { RemoteEntryInfo } from "../netboot/remote_list.ts";
import type { BootEvent, BootEvents } from "../events.ts";
import { type Hint, hintsFor, QUIET_MS } from "./hints.ts";
import { BootCounters } from "./metrics.ts";
import { statusRoute } from "./routes.ts";
import {
  appendEntry,
  maxStage,
  mergeTimelines,
  rateOf,
  type Stage,
  stageOfFile,
  type TimelineEntry,
  type TransferEntry,
} from "./timeline.ts";

/** Where a client's boot stands: still going, through to the kernel, or stuck (see its hints). */
export type ClientState = "booting" | "done" | "failed";

/** One client as the status view shows it. */
export interface ClientStatus {
  /** MAC when DHCP saw the client, else undefined. */
  mac?: string;
  /** Its IPv4 address (from DHCP or from its transfers). */
  ip?: string;
  /** Client type from DHCP, e.g. `UEFI x64`. */
  label?: string;
  /** The furthest stage reached. */
  stage: Stage;
  /** The file being (or last) transferred. */
  file?: string;
  bytes: number;
  total?: number;
  /** Bytes per second of the current or last transfer. */
  rate: number;
  /** Unix milliseconds of the first event. */
  firstSeen: number;
  /** Unix milliseconds of the last event. */
  lastSeen: number;
  /** What happened, oldest first (at most {@linkcode MAX_TIMELINE} entries). */
  timeline: TimelineEntry[];
  /** Why the boot stopped, most recent first; empty when nothing looks wrong. */
  hints: Hint[];
  /** `failed` when there is a hint, `done` once the kernel/initrd arrived, else `booting`. */
  state: ClientState;
}

/** One running service as the header shows it. */
export interface ServiceSummary {
  /** `dhcp`, `tftp`, `http`, `nbd`. */
  readonly name: string;
  /** What it listens on, e.g. `UDP 0.0.0.0:69`. */
  readonly endpoints: readonly string[];
}

/** What the server is: told once at start (see `describe`). */
export interface ServerSummary {
  readonly version?: string;
  readonly services: readonly ServiceSummary[];
  /** More banner facts, e.g. `netboot: embedded`, `dhcp: server 192.168.2.1/255.255.255.0, proxyDHCP`. */
  readonly notes?: readonly string[];
  /** Unix ms the services started. */
  readonly started?: number;
}

/** The totals of the header. */
export interface StatusTotals {
  clients: number;
  booting: number;
  done: number;
  failed: number;
  /** Transfers running now. */
  transfers: number;
  /** Bytes sent by finished transfers. */
  bytes: number;
}

/** Everything the page, the JSON route and the terminal view show. */
export interface StatusSnapshot {
  /** Unix ms the snapshot was taken. */
  time: number;
  server: ServerSummary;
  totals: StatusTotals;
  /** Most recently seen first. */
  clients: ClientStatus[];
  /** The per-machine inventory (`--machines`, `--boot-api`, `--api-listen`), when it is on. */
  machines?: MachineApiView[];
  /** Remote boot files being downloaded into the cache now. */
  downloads?: RemoteEntryInfo[];
}

/** Clients kept at most; the least recently seen go first. */
const MAX_CLIENTS = 256;

type Client = Omit<ClientStatus, "hints" | "state">;

/** The status model: subscribe it to the events once; read it from the HTTP routes and the TTY view. */
export class StatusBoard {
  readonly #clients = new Map<string, Client>(); // by MAC, else by IP
  readonly #byIp = new Map<string, string>(); // IP -> key
  /** Running transfers; the client is found by IP at each event (DHCP may re-key it meanwhile). */
  readonly #transfers = new Map<number, { ip: string; entry: TransferEntry }>();
  readonly #counters = new BootCounters();
  readonly #now: () => number;
  readonly #quietMs: number;
  readonly #unsubscribe: () => void;
  readonly #listeners = new Set<() => void>();
  #server: ServerSummary = { services: [] };
  #inventory: (() => MachineApiView[]) | null = null;
  #downloads: (() => RemoteEntryInfo[]) | null = null;

  /**
   * Subscribes to `events`; `now` is injectable for tests, `quietMs` is the silence after which a
   * client counts as stopped (default 30 s).
   */
  constructor(events: BootEvents, opts: { now?: () => number; quietMs?: number } = {}) {
    this.#now = opts.now ?? Date.now;
    this.#quietMs = opts.quietMs ?? QUIET_MS;
    this.#unsubscribe = events.subscribe((e) => this.#apply(e));
  }

  /** Stops listening to the events. */
  close(): void {
    this.#unsubscribe();
    this.#listeners.clear();
  }

  /** Calls `fn` after every change; returns the function that removes it. */
  onChange(fn: () => void): () => void {
    this.#listeners.add(fn);
    return () => this.#listeners.delete(fn);
  }

  /** Shows the per-machine inventory (what each machine boots, its one-shot, its last boot). */
  setInventory(list: () => MachineApiView[]): void {
    this.#inventory = list;
  }

  /** Shows the remote-file downloads in progress. */
  setDownloads(list: () => RemoteEntryInfo[]): void {
    this.#downloads = list;
  }

  /** Tells the board what runs (the services and their addresses), for the header. */
  describe(server: ServerSummary): void {
    this.#server = server;
    this.#changed();
  }

  /** The clients, most recently seen first, with their hints as of now. */
  clients(): ClientStatus[] {
    const now = this.#now();
    return [...this.#clients.values()].sort((a, b) => b.lastSeen - a.lastSeen).map((c) => {
      const timeline = c.timeline.map((e) => ({ ...e }));
      const hints = hintsFor(timeline, { now, quietMs: this.#quietMs, label: c.label });
      const state: ClientState = hints.length > 0 ? "failed" : c.stage === "done" ? "done" : "booting";
      return { ...c, timeline, hints, state };
    });
  }

  /** The server, totals and clients in one consistent view. */
  snapshot(): StatusSnapshot {
    const clients = this.clients();
    const count = (s: ClientState) => clients.filter((c) => c.state === s).length;
    return {
      time: this.#now(),
      server: this.#server,
      totals: {
        clients: clients.length,
        booting: count("booting"),
        done: count("done"),
        failed: count("failed"),
        transfers: this.#counters.active(),
        bytes: this.#counters.bytes(),
      },
      clients,
      ...(this.#inventory === null ? {} : { machines: this.#inventory() }),
      ...(this.#downloads === null ? {} : { downloads: this.#downloads() }),
    };
  }

  /** Prometheus text exposition of the counters. */
  metrics(): string {
    return this.#counters.text(this.#clients.size);
  }

  /** Answers /status, /status/live, /status.json, /status/events and /metrics; null for other paths. */
  route(req: { readonly method: string }, path: string): Response | null {
    return statusRoute(this, req, path);
  }

  #client(key: string): Client {
    let c = this.#clients.get(key);
    if (c === undefined) {
      if (this.#clients.size >= MAX_CLIENTS) {
        const oldest = [...this.#clients.entries()].sort((a, b) => a[1].lastSeen - b[1].lastSeen)[0];
        this.#clients.delete(oldest[0]);
        if (oldest[1].ip) this.#byIp.delete(oldest[1].ip);
      }
      const now = this.#now();
      c = { stage: "dhcp", bytes: 0, rate: 0, firstSeen: now, lastSeen: now, timeline: [] };
      this.#clients.set(key, c);
    }
    return c;
  }

  #keyForIp(ip: string): string {
    return this.#byIp.get(ip) ?? ip;
  }

  #changed(): void {
    for (const fn of this.#listeners) fn();
  }

  #apply(e: BootEvent): void {
    this.#counters.apply(e);
    const now = this.#now();
    switch (e.kind) {
      case "connection":
        return; // counters only: the client view did not change
      case "dhcp": {
        const c = this.#client(e.mac);
        c.mac = e.mac;
        if (e.client) c.label = e.client;
        if (e.ip) this.#bindIp(c, e.mac, e.ip);
        c.lastSeen = now;
        appendEntry(c.timeline, {
          kind: "dhcp",
          at: now,
          last: now,
          count: 1,
          received: e.received,
          sent: e.sent,
          ip: e.ip,
          bootFile: e.bootFile,
          reason: e.reason,
          server: e.server,
          client: e.client,
        });
        break;
      }
      case "transfer-start": {
        const ip = hostOf(e.client);
        const c = this.#client(this.#keyForIp(ip));
        c.ip ??= ip;
        c.file = e.file;
        c.bytes = 0;
        c.total = e.size;
        c.rate = 0;
        c.lastSeen = now;
        const stage = stageOfFile(e.file);
        if (stage) c.stage = maxStage(c.stage, stage);
        const entry: TransferEntry = {
          kind: "transfer",
          at: now,
          last: now,
          count: 1,
          service: e.service,
          id: e.id,
          file: e.file,
          size: e.size,
          bytes: 0,
        };
        appendEntry(c.timeline, entry);
        this.#transfers.set(e.id, { ip, entry });
        break;
      }
      case "transfer-progress": {
        const t = this.#transfers.get(e.id);
        const c = t && this.#clients.get(this.#keyForIp(t.ip));
        if (!t || !c) return;
        t.entry.bytes = e.bytes;
        t.entry.last = now;
        c.bytes = e.bytes;
        c.rate = rateOf(e.bytes, now - t.entry.at);
        c.lastSeen = now;
        break;
      }
      case "transfer-end": {
        const t = this.#transfers.get(e.id);
        this.#transfers.delete(e.id);
        const c = t && this.#clients.get(this.#keyForIp(t.ip));
        if (!t || !c) break;
        Object.assign(t.entry, { bytes: e.bytes, ms: e.ms, outcome: e.outcome, last: now });
        c.bytes = e.bytes;
        c.rate = rateOf(e.bytes, e.ms);
        c.lastSeen = now;
        // the initrd (or a booted image) is the last thing a network boot fetches
        if (e.outcome === "ok" && /initrd|\.iso$|\.img$/i.test(e.file)) c.stage = "done";
        break;
      }
      case "file-refused": {
        const ip = hostOf(e.client);
        const key = this.#keyForIp(ip);
        // a routine miss from an address seen nowhere else (a browser's favicon.ico) is no client
        if (e.routine && !this.#clients.has(key)) return;
        const c = this.#client(key);
        c.ip ??= ip;
        c.lastSeen = now;
        appendEntry(c.timeline, {
          kind: "refused",
          at: now,
          last: now,
          count: 1,
          service: e.service,
          file: e.file,
          reason: e.reason,
          routine: e.routine,
        });
        break;
      }
    }
    this.#changed();
  }

  /** Gives `c` (keyed by `mac`) the address `ip`; a client seen only by that address merges into it. */
  #bindIp(c: Client, mac: string, ip: string): void {
    if (c.ip && c.ip !== ip) this.#byIp.delete(c.ip);
    c.ip = ip;
    const byIp = this.#clients.get(ip);
    if (byIp !== undefined && byIp !== c) {
      Object.assign(c, {
        ...byIp,
        mac: c.mac,
        label: c.label,
        ip,
        stage: maxStage(c.stage, byIp.stage),
        firstSeen: Math.min(c.firstSeen, byIp.firstSeen),
        timeline: mergeTimelines(c.timeline, byIp.timeline),
      });
      this.#clients.delete(ip);
    }
    this.#byIp.set(ip, mac);
  }
}

/** `10.0.0.9` of `10.0.0.9:1000`, `fd00::5` of `[fd00::5]:1000`. */
function hostOf(client: string): string {
  return client.replace(/:\d+$/, "").replace(/^\[(.*)\]$/, "$1");
}
