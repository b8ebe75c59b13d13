/**
 * Plain-language hints for the classic boot failures pypxe can see from one client's timeline: another
 * DHCP server answered first, a missing file, a client that stopped after the boot program, a UEFI
 * client that never came back on port 4011 (proxyDHCP), a transfer that timed out. Pure: the time is an
 * argument.
 * @module
 */
import {
  durationText,
  isTimeout,
  sizeText,
  type Stage,
  stageOfFile,
  STAGES,
  type TimelineEntry,
} from "./timeline.ts";

/** Which failure a hint is about. */
export type HintCode =
  | "other-dhcp-server"
  | "missing-file"
  | "stopped-after-nbp"
  | "uefi-no-4011"
  | "transfer-timeout";

/** One explanation of why a boot stopped. */
export interface Hint {
  readonly code: HintCode;
  /** Two or three sentences for the status page: what happened and what to check. */
  readonly text: string;
  /** A few words for the terminal table. */
  readonly short: string;
  /** The stage that failed. */
  readonly stage: Stage;
  /** Unix ms of the event the hint is about. */
  readonly at: number;
}

/** Inputs besides the timeline. */
export interface HintOptions {
  /** Unix ms now. */
  readonly now: number;
  /** How long a client may stay silent before "it stopped" is said (default 30 s). */
  readonly quietMs?: number;
  /** The client type DHCP reported, e.g. `BIOS`, `UEFI x64`. */
  readonly label?: string;
}

/** The default silence after which a client counts as stopped. */
export const QUIET_MS = 30_000;

/**
 * The hints for a client's `timeline` (oldest entry first), most recent problem first; empty when the
 * boot looks fine (or is still going). A problem the client got past (a later successful transfer, an
 * ACK from pypxe) gives no hint.
 */
export function hintsFor(timeline: readonly TimelineEntry[], opts: HintOptions): Hint[] {
  const quietMs = opts.quietMs ?? QUIET_MS;
  const hints: Hint[] = [];
  const okAfter = (i: number, file?: string) =>
    timeline.some((e, j) =>
      j > i && e.kind === "transfer" && e.outcome === "ok" && (!file || e.file === file)
    );

  const chose = findLast(timeline, (e) => e.kind === "dhcp" && e.server !== undefined);
  if (chose !== null && chose.entry.kind === "dhcp") {
    const ackedLater = timeline.some((e, j) => j > chose.index && e.kind === "dhcp" && e.sent === "ACK");
    if (!ackedLater && !okAfter(chose.index)) {
      const server = chose.entry.server!;
      hints.push({
        code: "other-dhcp-server",
        stage: "dhcp",
        at: chose.entry.last,
        short: `another DHCP server (${server}) answered first`,
        text: `Another DHCP server (${server}) answered first and the client took its offer, so it never ` +
          `got pypxe's boot file. Stop that server or make it ignore this machine, or run pypxe with ` +
          `--dhcp-proxy beside it.`,
      });
    }
  }

  const refused = findLast(timeline, (e) => e.kind === "refused" && !e.routine);
  if (refused !== null && refused.entry.kind === "refused" && !okAfter(refused.index)) {
    const { file, reason } = refused.entry;
    const current = reachedStage(timeline.slice(0, refused.index));
    hints.push({
      code: "missing-file",
      stage: stageOfFile(file) ?? nextStage(current),
      at: refused.entry.last,
      short: reason === "forbidden" ? `${file} may not be served` : `asked for ${file}, which is missing`,
      text: reason === "forbidden"
        ? `The client asked for "${file}", which pypxe will not serve: it is outside the netboot tree or ` +
          `cannot be read. Move the file into the tree or fix its permissions.`
        : `The client asked for "${file}", which is not in the netboot tree. Put the file there, or ` +
          `correct the name that points to it (the boot file setting, a menu entry or a script).`,
    });
  }

  const timedOut = findLast(timeline, (e) => e.kind === "transfer" && isTimeout(e.outcome));
  if (timedOut !== null && timedOut.entry.kind === "transfer") {
    const t = timedOut.entry;
    if (!okAfter(timedOut.index, t.file)) {
      const of = t.size ? ` of ${sizeText(t.size)}` : "";
      const http = t.service === "http";
      hints.push({
        code: "transfer-timeout",
        stage: stageOfFile(t.file) ?? nextStage(reachedStage(timeline.slice(0, timedOut.index))),
        at: t.last,
        short: `transfer of ${t.file} timed out`,
        text: `The transfer of "${t.file}" timed out after ${sizeText(t.bytes)}${of}: the client stopped ` +
          (http
            ? `reading. Look for a flaky link or a proxy or firewall between them.`
            : `acknowledging. Look for packet loss or a firewall between them; if the network drops large ` +
              `packets, lower the block size (--tftp-max-blksize 1468), or load big files over HTTP.`),
      });
    }
  }

  const last = timeline[timeline.length - 1];
  if (
    last !== undefined && last.kind === "transfer" && last.outcome === "ok" &&
    stageOfFile(last.file) === "nbp" && opts.now - last.last >= quietMs
  ) {
    const label = opts.label ? ` (the client said it is ${opts.label})` : "";
    hints.push({
      code: "stopped-after-nbp",
      stage: "nbp",
      at: last.last,
      short: `stopped after the boot program ${last.file} (wrong architecture?)`,
      text: `The boot program "${last.file}" was sent ${durationText(opts.now - last.last)} ago and the ` +
        `client has asked for nothing since. It may be the wrong program for this machine${label}: BIOS ` +
        `or UEFI, x64 or ARM; or the boot program cannot reach the server (firewall, next-server address).`,
    });
  }

  const offer = findLast(timeline, (e) => e.kind === "dhcp" && e.sent === "proxy OFFER");
  if (offer !== null && offer.entry.kind === "dhcp") {
    const label = offer.entry.client ?? opts.label ?? "";
    const uefiPxe = /UEFI/.test(label) && !/iPXE|HTTP/.test(label);
    const cameBack = timeline.some((e, j) =>
      j > offer.index && (e.kind !== "dhcp" || e.sent === "ACK (4011)" || e.sent === "proxy ACK")
    );
    if (uefiPxe && !cameBack && opts.now - offer.entry.last >= quietMs) {
      hints.push({
        code: "uefi-no-4011",
        stage: "dhcp",
        at: offer.entry.last,
        short: "UEFI client never came back on port 4011",
        text: `This UEFI client got pypxe's proxyDHCP offer but never asked on port 4011, where UEFI ` +
          `firmware fetches its boot file name in proxy mode. Check that UDP port 4011 reaches this server ` +
          `(firewall), and that the site's DHCP server sends no PXE options (43, 60, 66, 67) itself.`,
      });
    }
  }
  return hints.sort((a, b) => b.at - a.at);
}

/** The furthest stage the entries show. */
function reachedStage(timeline: readonly TimelineEntry[]): Stage {
  let at = 0;
  for (const e of timeline) {
    const stage = e.kind === "transfer" && e.outcome === "ok" ? stageOfFile(e.file) : null;
    if (stage !== null) at = Math.max(at, STAGES.indexOf(stage));
  }
  return STAGES[at];
}

function nextStage(stage: Stage): Stage {
  return STAGES[Math.min(STAGES.length - 1, STAGES.indexOf(stage) + 1)];
}

function findLast(
  timeline: readonly TimelineEntry[],
  test: (e: TimelineEntry) => boolean,
): { entry: TimelineEntry; index: number } | null {
  for (let i = timeline.length - 1; i >= 0; i--) {
    if (test(timeline[i])) return { entry: timeline[i], index: i };
  }
  return null;
}
