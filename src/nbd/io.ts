/**
 * Socket plumbing for NBD sessions: a buffered reader that hands out views of whole messages, a reply
 * buffer that gathers many small replies (or one reply header plus its read data) into one write, and a
 * watch that gives the event loop a turn when a session has kept it busy.
 * @module
 */

/** The minimal connection surface a session needs (a `Deno.Conn`, or a fake in tests). */
export interface ByteStream {
  read(p: Uint8Array): Promise<number | null>;
  write(p: Uint8Array): Promise<number>;
}

/** Reads from a stream through a reusable buffer; end of stream and socket errors both read as EOF. */
export class StreamReader {
  readonly #stream: ByteStream;
  #buf: Uint8Array;
  #start = 0;
  #end = 0;
  /** The error that ended the stream, if it was not a clean close. */
  error: unknown = null;
  /** Set once the stream ended. */
  eof = false;

  /** Wraps `stream` with a buffer of `capacity` bytes. */
  constructor(stream: ByteStream, capacity = 256 * 1024) {
    this.#stream = stream;
    this.#buf = new Uint8Array(capacity);
  }

  /** Bytes buffered and not yet taken. */
  get buffered(): number {
    return this.#end - this.#start;
  }

  async #readMore(): Promise<boolean> {
    if (this.eof) return false;
    let n: number | null;
    try {
      n = await this.#stream.read(this.#buf.subarray(this.#end));
    } catch (err) {
      this.error = err;
      n = null;
    }
    if (n === null || n === 0) {
      // Deno reports EOF as null; a 0-byte read on a non-empty buffer means the same: never retry
      this.eof = true;
      return false;
    }
    this.#end += n;
    return true;
  }

  /** Ensures at least `n` (<= capacity) bytes are buffered; false when the stream ended first. */
  async fill(n: number): Promise<boolean> {
    if (n > this.#buf.length) throw new RangeError(`fill(${n}) exceeds the buffer`);
    if (this.#end - this.#start >= n) return true;
    if (this.#buf.length - this.#start < n) {
      this.#buf.copyWithin(0, this.#start, this.#end);
      this.#end -= this.#start;
      this.#start = 0;
    }
    while (this.#end - this.#start < n) {
      if (!(await this.#readMore())) return false;
    }
    return true;
  }

  /** Takes `n` buffered bytes as a view, valid until the next `fill`, `readInto` or `skip`. */
  take(n: number): Uint8Array {
    if (this.#end - this.#start < n) throw new RangeError(`take(${n}) beyond the ${this.buffered} buffered`);
    const view = this.#buf.subarray(this.#start, this.#start + n);
    this.#start += n;
    if (this.#start === this.#end) this.#start = this.#end = 0;
    return view;
  }

  /** Fills `dest` completely (buffered bytes first, then straight from the stream); false on EOF. */
  async readInto(dest: Uint8Array): Promise<boolean> {
    const fromBuf = Math.min(this.buffered, dest.length);
    dest.set(this.take(fromBuf));
    let done = fromBuf;
    while (done < dest.length) {
      if (this.eof) return false;
      let n: number | null;
      try {
        n = await this.#stream.read(dest.subarray(done, Math.min(dest.length, done + SOCKET_CHUNK)));
      } catch (err) {
        this.error = err;
        n = null;
      }
      if (n === null || n === 0) {
        this.eof = true;
        return false;
      }
      done += n;
    }
    return true;
  }

  /** Discards `n` bytes; false on EOF. */
  async skip(n: number): Promise<boolean> {
    let left = n;
    while (left > 0) {
      if (this.buffered === 0 && !(await this.fill(1))) return false;
      const k = Math.min(left, this.buffered);
      this.take(k);
      left -= k;
    }
    return true;
  }
}

/**
 * Largest piece handed to one socket read or write: the kernel copies a whole piece on the event loop's
 * thread, so a 32 MiB reply goes out in several turns rather than in multi-megabyte copies.
 */
export const SOCKET_CHUNK = 1 << 20;

/** Writes all of `data`, {@linkcode SOCKET_CHUNK} at most per write; throws when the stream fails. */
export async function writeAll(stream: ByteStream, data: Uint8Array): Promise<void> {
  let done = 0;
  while (done < data.length) {
    const n = await stream.write(data.subarray(done, Math.min(data.length, done + SOCKET_CHUNK)));
    if (n <= 0) throw new Error("socket write made no progress");
    done += n;
  }
}

/** A growable output buffer: reserve space, fill it in place, flush it with one write. */
export class ReplyBuffer {
  #buf: Uint8Array;
  #len = 0;

  /** Creates a buffer with `capacity` bytes to start with. */
  constructor(capacity = 1 << 20) {
    this.#buf = new Uint8Array(capacity);
  }

  /** Bytes waiting to be written. */
  get length(): number {
    return this.#len;
  }

  /** Appends `n` bytes and returns them as a view to fill in (valid until the next reserve or flush). */
  reserve(n: number): Uint8Array {
    if (this.#len + n > this.#buf.length) {
      const grown = new Uint8Array(Math.max(this.#len + n, this.#buf.length * 2));
      grown.set(this.#buf.subarray(0, this.#len));
      this.#buf = grown;
    }
    const view = this.#buf.subarray(this.#len, this.#len + n);
    this.#len += n;
    return view;
  }

  /** Gives back the last `n` reserved bytes (a read that failed after its space was reserved). */
  unreserve(n: number): void {
    this.#len -= n;
  }

  /** Writes everything buffered to `stream`. */
  async flush(stream: ByteStream): Promise<void> {
    if (this.#len === 0) return;
    const len = this.#len;
    this.#len = 0;
    await writeAll(stream, this.#buf.subarray(0, len));
  }
}

/**
 * Notices when the event loop has had no turn for a while and waits for the next one. An `await` on a
 * socket write the kernel takes at once, or on a store served from memory, continues without one, so a
 * session fed by a pipelining client could keep DHCP and TFTP waiting; the session asks {@linkcode check}
 * after each request. A zero-delay timer marks the turns: while they come by themselves (file I/O,
 * sockets that make the session wait) it fires on its own and nothing is awaited. At most one timer is
 * set per `busyMs`, so the watch costs nothing measurable.
 */
export class LoopTurns {
  readonly #busyMs: number;
  #pending: Promise<void> | null = null;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #armedAt = 0;
  #lastTurn = performance.now();

  /** Waits for a turn once `busyMs` (up to twice that) have passed without one. */
  constructor(busyMs = 4) {
    this.#busyMs = busyMs;
  }

  /** Undefined while the loop turns; a promise of the next turn after `busyMs` without one. */
  check(): Promise<void> | undefined {
    const now = performance.now();
    if (this.#pending !== null) return now - this.#armedAt > this.#busyMs ? this.#pending : undefined;
    if (now - this.#lastTurn < this.#busyMs) return undefined;
    this.#armedAt = now;
    this.#pending = new Promise((resolve) => {
      this.#timer = setTimeout(() => {
        this.#pending = null;
        this.#timer = undefined;
        this.#lastTurn = performance.now();
        resolve();
      }, 0);
    });
    return undefined;
  }

  /** Cancels the marker timer (at the end of the session). */
  close(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#pending = null;
  }
}
