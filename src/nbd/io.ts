/**
 * Socket plumbing for NBD sessions: a buffered reader that hands out views of whole messages, and a
 * reply buffer that gathers many small replies (or one reply header plus its read data) into one write.
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
        n = await this.#stream.read(dest.subarray(done));
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

/** Writes all of `data`; throws when the stream fails. */
export async function writeAll(stream: ByteStream, data: Uint8Array): Promise<void> {
  let done = 0;
  while (done < data.length) {
    const n = await stream.write(data.subarray(done));
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
