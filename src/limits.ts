/**
 * File-descriptor budget: the process's open-file limit (from `/proc/self/limits` where it exists) and
 * the connection caps derived from it, so that a flood of connections to one service can never take
 * the descriptors the others need (EMFILE would otherwise end DHCP, TFTP and NBD with HTTP).
 * @module
 */

/** Where the limit is unknown (no /proc: macOS, Windows), this is assumed. */
export const ASSUMED_FILE_LIMIT = 1024;
/** Descriptors kept for listeners, stdio, lease files, journals and syslog. */
export const RESERVED_FDS = 128;
/** The TFTP transfer cap when the limit allows it (each transfer: a socket and a file). */
export const TFTP_MAX_TRANSFERS = 1000;

/** Reads the soft "Max open files" value of `/proc/self/limits` text; Infinity for unlimited. */
export function parseOpenFileLimit(text: string): number | null {
  const m = /^Max open files\s+(\d+|unlimited)\s+(\d+|unlimited)\s+files/m.exec(text);
  if (m === null) return null;
  return m[1] === "unlimited" ? Infinity : Number(m[1]);
}

/** Where a probe stops counting: enough for every cap, quick at start-up (about 0.2 s). */
export const PROBE_MAX_FDS = 16_384;

/** How the open-file limit was learnt. */
export type FileLimitSource = "proc" | "probe" | "assumed";

let probed: { limit: number; source: FileLimitSource } | null = null;

/**
 * The soft open-file limit of this process: `/proc/self/limits` where it can be read (Deno refuses it
 * to a program without --allow-all), else counted by opening `/dev/null` until EMFILE (at most
 * {@linkcode PROBE_MAX_FDS}, all closed again at once), else null. Learnt once per process.
 */
export function openFileLimit(): number | null {
  return openFileLimitSource().limit;
}

/** {@linkcode openFileLimit} and how it was learnt. */
export function openFileLimitSource(): { limit: number | null; source: FileLimitSource } {
  if (probed !== null) return probed;
  try {
    const limit = parseOpenFileLimit(Deno.readTextFileSync("/proc/self/limits"));
    if (limit !== null) return probed = { limit, source: "proc" };
  } catch {
    // not Linux, or not readable under this program's permissions: count instead
  }
  const count = countOpenableFiles(PROBE_MAX_FDS);
  if (count === null) return { limit: null, source: "assumed" };
  return probed = { limit: count, source: "probe" };
}

/** Opens `/dev/null` until EMFILE or `max`, closes them all; the number opened, null if none could be. */
function countOpenableFiles(max: number): number | null {
  const files: Deno.FsFile[] = [];
  try {
    for (let i = 0; i < max; i++) files.push(Deno.openSync("/dev/null"));
  } catch (err) {
    if (!isResourceExhaustion(err)) {
      for (const f of files) f.close();
      return null;
    }
  }
  for (const f of files) f.close();
  return files.length > 0 ? files.length : null;
}

/** The open-file limit and the caps each service runs with. */
export interface ConnectionCaps {
  /** The soft limit read, or null when unknown (then {@linkcode ASSUMED_FILE_LIMIT} was used). */
  readonly fileLimit: number | null;
  /** True when `fileLimit` was counted (descriptors still free, capped at {@linkcode PROBE_MAX_FDS}). */
  readonly probed?: boolean;
  /** Open HTTP connections at most. */
  readonly http: number;
  /** Open NBD connections at most. */
  readonly nbd: number;
  /** Running TFTP transfers at most. */
  readonly tftp: number;
}

/**
 * Splits the descriptors left after {@linkcode RESERVED_FDS}: TFTP a quarter (two per transfer, at most
 * 1000 transfers), HTTP 45 % (one per connection; a download holds a file too, and a failed open is
 * answered 503), NBD a tenth of the connections (a socket and an overlay file each). A configured
 * value other than 0 wins.
 */
export function connectionCaps(
  fileLimit: number | null,
  configured: { http?: number; nbd?: number } = {},
  probed = false,
): ConnectionCaps {
  const limit = Math.min(fileLimit ?? ASSUMED_FILE_LIMIT, 1 << 20);
  const usable = Math.max(64, limit - RESERVED_FDS);
  return {
    fileLimit,
    probed,
    http: configured.http || Math.max(16, Math.floor(usable * 0.45)),
    nbd: configured.nbd || Math.max(4, Math.floor(usable * 0.1)),
    tftp: Math.max(16, Math.min(TFTP_MAX_TRANSFERS, Math.floor((usable * 0.25) / 2))),
  };
}

/** True for the errors of a process or system out of descriptors or buffers (EMFILE, ENFILE, ENOBUFS). */
export function isResourceExhaustion(err: unknown): boolean {
  const text = err instanceof Error ? `${err.name} ${err.message}` : String(err);
  return /too many open files|os error (23|24|105)\b|ENOBUFS|no buffer space/i.test(text);
}

/** Sleeps `ms` milliseconds unless `signal` aborts first. */
export function backoff(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const done = () => {
      clearTimeout(timer);
      signal?.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal?.addEventListener("abort", done, { once: true });
  });
}

/** The caps of this process from its open-file limit and the configured values. */
export function processCaps(configured: { http?: number; nbd?: number }): ConnectionCaps {
  const { limit, source } = openFileLimitSource();
  return connectionCaps(limit, configured, source === "probe");
}

/** One line describing the limit and the caps, for `--check` and the banner. */
export function describeCaps(caps: ConnectionCaps): string {
  const limit = caps.fileLimit === null
    ? `unknown (assumed ${ASSUMED_FILE_LIMIT})`
    : caps.fileLimit === Infinity
    ? "unlimited"
    : caps.probed
    ? `${caps.fileLimit >= PROBE_MAX_FDS ? "at least " : ""}${caps.fileLimit} free (counted)`
    : String(caps.fileLimit);
  return `open files ${limit}: HTTP ${caps.http} connections, NBD ${caps.nbd} connections, ` +
    `TFTP ${caps.tftp} transfers`;
}

/** Backoff after a failed accept, receive or re-bind: doubles from the first to the last, reset on success. */
export const BACKOFF_FIRST_MS = 50;
/** The longest backoff. */
export const BACKOFF_LAST_MS = 1000;

/** The next backoff delay after `delay` (0: none yet). */
export function nextBackoff(delay: number): number {
  return delay === 0 ? BACKOFF_FIRST_MS : Math.min(BACKOFF_LAST_MS, delay * 2);
}

/** True when a socket operation failed because the socket itself is gone (closed underneath, cancelled). */
export function socketGone(err: unknown): boolean {
  return err instanceof Deno.errors.BadResource || err instanceof Deno.errors.Interrupted ||
    err instanceof Deno.errors.NotConnected;
}
