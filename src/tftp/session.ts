/**
 * One TFTP read transfer as a socket-free state machine: option negotiation (RFC 2347/2348/2349/7440),
 * the send window, block-number rollover, retransmission and the end of the transfer.
 *
 * The machine never touches sockets, files or clocks: {@linkcode TftpSession.handle} takes an input and
 * the current time and answers with what to send (the OACK, or a run of consecutive blocks by file
 * offset) and when the next timeout is due. The server reads the bytes and sends them.
 *
 * @example
 * ```ts
 * const negotiated = negotiateOptions(rrq.options, fileSize, { maxBlksize: 65464, maxWindowsize: 64 });
 * const session = new TftpSession({ size: fileSize, negotiated });
 * let step = session.handle({ type: "start" }, performance.now());
 * // send step.oack or blocks step.from..step.to, arm a timer for step.timerAt ...
 * ```
 * @module
 */
import type { TftpOption } from "./packet.ts";

/** Smallest and largest block size of RFC 2348. */
export const MIN_BLKSIZE = 8;
/** Largest block size of RFC 2348 (fits a 64 KiB UDP datagram). */
export const MAX_BLKSIZE = 65464;
/** Block size without the option (RFC 1350). */
export const DEFAULT_BLKSIZE = 512;
/**
 * Bytes of payload one window may hold. Every datagram of a window sits in the client's socket receive
 * buffer until read; Linux's default (rmem_default 208 KiB) is charged the skb truesize, 1.5-2x the
 * payload, so 64 KiB of payload per window fits with room to spare, while 16 x 8192 (128 KiB) was seen to
 * stall atftp. A window of one block is always allowed.
 */
export const MAX_WINDOW_BYTES = 65536;

/** Server-side limits for option negotiation. */
export interface NegotiationLimits {
  /** Largest block size granted (requests above are clamped). */
  maxBlksize: number;
  /** Largest window size granted (requests above are clamped). */
  maxWindowsize: number;
  /** Payload bytes one window may hold; default {@linkcode MAX_WINDOW_BYTES}. */
  maxWindowBytes?: number;
  /** Retransmission timeout when the client sends no `timeout` option; default 1000 ms. */
  defaultTimeoutMs?: number;
}

/** The outcome of option negotiation. */
export interface NegotiatedOptions {
  readonly blksize: number;
  readonly windowsize: number;
  /** Base retransmission timeout in ms. */
  readonly timeoutMs: number;
  /** True when the client set the timeout (RFC 2349): then it is used as is, never adapted. */
  readonly clientTimeout?: boolean;
  /** The OACK to send, or null when no option was recognised (then DATA 1 goes first). */
  readonly oack: readonly TftpOption[] | null;
  /** Options that were ignored, with the reason (for DEBUG logs). */
  readonly ignored: readonly string[];
}

function parseDecimal(value: string): number | null {
  return /^\s*\d{1,10}\s*$/.test(value) ? Number(value) : null;
}

/**
 * Negotiates RFC 2347 options: names are case-insensitive, unknown or invalid options are ignored,
 * the first occurrence of a name wins. `size` is the byte count the client will receive (for tsize).
 */
export function negotiateOptions(
  options: readonly TftpOption[],
  size: number,
  limits: NegotiationLimits,
): NegotiatedOptions {
  const maxBlksize = Math.max(MIN_BLKSIZE, Math.min(MAX_BLKSIZE, limits.maxBlksize));
  const maxWindowsize = Math.max(1, Math.min(65535, limits.maxWindowsize));
  let blksize = DEFAULT_BLKSIZE;
  let windowsize = 1;
  let timeoutMs = limits.defaultTimeoutMs ?? 1000;
  let clientTimeout = false;
  const oack: [string, string][] = [];
  const ignored: string[] = [];
  const seen = new Set<string>();
  let windowIndex = -1;
  for (const [rawName, value] of options) {
    const name = rawName.toLowerCase();
    if (seen.has(name)) {
      ignored.push(`${rawName}=${value} (repeated)`);
      continue;
    }
    seen.add(name);
    const n = parseDecimal(value);
    switch (name) {
      case "blksize":
        if (n === null || n < MIN_BLKSIZE) ignored.push(`${rawName}=${value} (valid: ${MIN_BLKSIZE}..65464)`);
        else {
          blksize = Math.min(n, maxBlksize);
          oack.push([name, String(blksize)]);
        }
        break;
      case "tsize":
        if (n === null) ignored.push(`${rawName}=${value} (not a number)`);
        else oack.push([name, String(size)]);
        break;
      case "timeout":
        if (n === null || n < 1 || n > 255) ignored.push(`${rawName}=${value} (valid: 1..255)`);
        else {
          timeoutMs = n * 1000;
          clientTimeout = true;
          oack.push([name, String(n)]);
        }
        break;
      case "windowsize":
        if (n === null || n < 1 || n > 65535) ignored.push(`${rawName}=${value} (valid: 1..65535)`);
        else {
          windowsize = Math.min(n, maxWindowsize);
          windowIndex = oack.length;
          oack.push([name, ""]);
        }
        break;
      default:
        ignored.push(`${rawName}=${value} (unknown)`);
    }
  }
  if (windowIndex >= 0) {
    // the window cap depends on the block size, which may come after windowsize in the request
    const byBytes = Math.max(1, Math.floor((limits.maxWindowBytes ?? MAX_WINDOW_BYTES) / blksize));
    windowsize = Math.min(windowsize, byBytes);
    oack[windowIndex] = ["windowsize", String(windowsize)];
  }
  return { blksize, windowsize, timeoutMs, clientTimeout, oack: oack.length > 0 ? oack : null, ignored };
}

/** Formats granted options for events and logs: `blksize=1468 tsize=850528 windowsize=4`. */
export function describeOptions(negotiated: NegotiatedOptions): string {
  return negotiated.oack === null ? "" : negotiated.oack.map(([k, v]) => `${k}=${v}`).join(" ");
}

/** What the machine is fed. */
export type SessionInput =
  | { readonly type: "start" }
  | { readonly type: "ack"; readonly block: number }
  | { readonly type: "error"; readonly code: number; readonly message: string }
  | { readonly type: "timeout" };

/** What to do after an input. Blocks are absolute (1-based, no rollover); see {@linkcode TftpSession.wireBlock}. */
export interface SessionStep {
  /** Send the OACK. */
  readonly oack: boolean;
  /** First block to send, or 0 when there is none. */
  readonly from: number;
  /** Last block to send (inclusive). */
  readonly to: number;
  /** True when this send repeats packets already sent (timeout or a client's loss report). */
  readonly retransmit: boolean;
  /** When to feed `timeout` (same clock as `now`), or null when the transfer is over. */
  readonly timerAt: number | null;
  /** Set once the transfer is over: `ok`, or why it ended. */
  readonly done: string | null;
}

/** Where a session is. */
export type SessionPhase = "idle" | "oack" | "data" | "done";

/** Construction parameters of {@linkcode TftpSession}. */
export interface SessionOptions {
  /** Bytes to send. */
  size: number;
  negotiated: NegotiatedOptions;
  /** Retransmissions of the same packet before the transfer is dropped; default 6. */
  maxRetries?: number;
  /** Upper bound of the growing timeout; default max(base, 8000) ms. */
  maxTimeoutMs?: number;
  /** Floor of the adaptive timeout (used when the client set none); default 50 ms. */
  minTimeoutMs?: number;
}

const NOTHING = 0;

/** One read transfer. Mutable for speed: `handle` updates the session and returns the step. */
export class TftpSession {
  readonly size: number;
  readonly blksize: number;
  readonly windowsize: number;
  /** Number of DATA packets of the transfer (the last one is shorter than blksize, maybe empty). */
  readonly lastBlock: number;
  readonly #negotiated: NegotiatedOptions;
  readonly #maxRetries: number;
  readonly #maxTimeoutMs: number;
  #phase: SessionPhase = "idle";
  #acked = 0;
  #sent = 0;
  #retries = 0;
  #timeoutMs: number;
  /**
   * Adaptive retransmission timeout (RFC 6298 estimator over ACK round trips, Karn's rule: no samples
   * from retransmitted windows), used when the client did not set `timeout`: on a LAN a lost block then
   * costs tens of milliseconds instead of a second. Bounded by [minTimeoutMs, base timeout].
   */
  #rto: number;
  readonly #minTimeoutMs: number;
  #srtt = -1;
  #rttvar = 0;
  #windowSentAt = 0;
  #sampleValid = false;
  #deadline: number | null = null;
  #retransmits = 0;
  #outcome: string | null = null;

  /** Creates a session that will send `size` bytes with the negotiated options. */
  constructor(opts: SessionOptions) {
    this.size = opts.size;
    this.#negotiated = opts.negotiated;
    this.blksize = opts.negotiated.blksize;
    this.windowsize = opts.negotiated.windowsize;
    this.lastBlock = Math.floor(opts.size / this.blksize) + 1;
    this.#maxRetries = opts.maxRetries ?? 6;
    this.#timeoutMs = opts.negotiated.timeoutMs;
    this.#rto = opts.negotiated.timeoutMs;
    this.#minTimeoutMs = Math.min(opts.minTimeoutMs ?? 50, opts.negotiated.timeoutMs);
    this.#maxTimeoutMs = opts.maxTimeoutMs ?? Math.max(opts.negotiated.timeoutMs, 8000);
  }

  /** Current phase. */
  get phase(): SessionPhase {
    return this.#phase;
  }
  /** True once the transfer is over. */
  get finished(): boolean {
    return this.#phase === "done";
  }
  /** Highest block acknowledged (absolute). */
  get acked(): number {
    return this.#acked;
  }
  /** Highest block sent so far (absolute). */
  get sent(): number {
    return this.#sent;
  }
  /** Bytes the client has acknowledged. */
  get bytesAcked(): number {
    return Math.min(this.#acked * this.blksize, this.size);
  }
  /** Packets sent again so far (for logs). */
  get retransmits(): number {
    return this.#retransmits;
  }
  /** The current timeout deadline, or null. */
  get deadline(): number | null {
    return this.#deadline;
  }
  /** Why the transfer ended, or null while it runs. */
  get outcome(): string | null {
    return this.#outcome;
  }
  /** The granted options (OACK content). */
  get negotiated(): NegotiatedOptions {
    return this.#negotiated;
  }

  /** Block number on the wire for absolute block `block`: rolls over from 65535 to 0. */
  static wireBlock(block: number): number {
    return block & 0xffff;
  }
  /** File offset of absolute block `block`. */
  offsetOf(block: number): number {
    return (block - 1) * this.blksize;
  }
  /** Payload length of absolute block `block`. */
  lengthOf(block: number): number {
    return Math.max(0, Math.min(this.blksize, this.size - (block - 1) * this.blksize));
  }

  /** Feeds one input at time `now` (ms) and returns what to send and when to wake up. */
  handle(input: SessionInput, now: number): SessionStep {
    if (this.#phase === "done") return this.#idle();
    switch (input.type) {
      case "start":
        if (this.#phase !== "idle") return this.#idle();
        if (this.#negotiated.oack !== null) {
          this.#phase = "oack";
          return this.#sendOack(now, false);
        }
        this.#phase = "data";
        return this.#sendWindow(now, false);
      case "ack":
        return this.#onAck(input.block, now);
      case "error":
        return this.#finish(`client error ${input.code}${input.message ? `: ${input.message}` : ""}`);
      case "timeout":
        return this.#onTimeout(now);
    }
  }

  /** Same as `handle({ type: "ack", block }, now)` without allocating the input (hot path). */
  ack(block: number, now: number): SessionStep {
    if (this.#phase === "done") return this.#idle();
    return this.#onAck(block, now);
  }

  /** Ends the transfer from outside (server stopping); returns the final step. */
  abort(reason: string): SessionStep {
    if (this.#phase === "done") return this.#idle();
    return this.#finish(reason);
  }

  #onAck(wire: number, now: number): SessionStep {
    if (this.#phase === "oack") {
      if (wire !== 0) return this.#idle();
      this.#phase = "data";
      this.#progress();
      return this.#sendWindow(now, false);
    }
    if (this.#phase !== "data") return this.#idle();
    // map the 16-bit number onto (acked, sent]; anything else is old, duplicate or bogus
    const delta = (wire - (this.#acked & 0xffff)) & 0xffff;
    const block = this.#acked + delta;
    if (delta === 0 || block > this.#sent) return this.#idle();
    if (this.#sampleValid && !this.#negotiated.clientTimeout) this.#sampleRtt(now - this.#windowSentAt);
    this.#acked = block;
    this.#progress();
    if (block >= this.lastBlock) return this.#finish("ok");
    // a partial ACK reports a loss inside the window: restart the window after it (RFC 7440)
    return this.#sendWindow(now, block < this.#sent);
  }

  #onTimeout(now: number): SessionStep {
    if (this.#deadline === null || now < this.#deadline) return this.#idle();
    if (this.#retries >= this.#maxRetries) {
      const what = this.#phase === "oack" ? "OACK" : `block ${this.#acked + 1}`;
      return this.#finish(`timeout: no ACK for ${what} after ${this.#retries + 1} tries`);
    }
    // short adaptive timeouts back off for free; only full-length ones count towards giving up, so a
    // client that stalls is given as long as with a fixed timeout
    if (this.#timeoutMs >= this.#negotiated.timeoutMs) this.#retries++;
    this.#timeoutMs = Math.min(this.#timeoutMs * 2, this.#maxTimeoutMs);
    if (this.#phase === "oack") return this.#sendOack(now, true);
    return this.#sendWindow(now, true);
  }

  #progress(): void {
    this.#retries = 0;
    this.#timeoutMs = this.#rto;
  }

  #sampleRtt(rtt: number): void {
    const r = Math.max(0, rtt);
    if (this.#srtt < 0) {
      this.#srtt = r;
      this.#rttvar = r / 2;
    } else {
      this.#rttvar = 0.75 * this.#rttvar + 0.25 * Math.abs(this.#srtt - r);
      this.#srtt = 0.875 * this.#srtt + 0.125 * r;
    }
    const rto = this.#srtt + Math.max(1, 4 * this.#rttvar);
    this.#rto = Math.min(this.#negotiated.timeoutMs, Math.max(this.#minTimeoutMs, rto));
  }

  /** The retransmission timeout a fresh window gets now (adaptive unless the client set one). */
  get timeoutMs(): number {
    return this.#rto;
  }

  #sendOack(now: number, retransmit: boolean): SessionStep {
    if (retransmit) this.#retransmits++;
    this.#deadline = now + this.#timeoutMs;
    return { oack: true, from: NOTHING, to: NOTHING, retransmit, timerAt: this.#deadline, done: null };
  }

  #sendWindow(now: number, retransmit: boolean): SessionStep {
    const from = this.#acked + 1;
    const to = Math.min(this.#acked + this.windowsize, this.lastBlock);
    if (retransmit) this.#retransmits += Math.min(to, this.#sent) - from + 1;
    if (to > this.#sent) this.#sent = to;
    this.#windowSentAt = now;
    this.#sampleValid = !retransmit;
    this.#deadline = now + this.#timeoutMs;
    return { oack: false, from, to, retransmit, timerAt: this.#deadline, done: null };
  }

  #finish(outcome: string): SessionStep {
    this.#phase = "done";
    this.#outcome = outcome;
    this.#deadline = null;
    return { oack: false, from: NOTHING, to: NOTHING, retransmit: false, timerAt: null, done: outcome };
  }

  #idle(): SessionStep {
    return {
      oack: false,
      from: NOTHING,
      to: NOTHING,
      retransmit: false,
      timerAt: this.#deadline,
      done: this.#phase === "done" ? this.#outcome : null,
    };
  }
}
