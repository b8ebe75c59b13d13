/**
 * The block store contract behind an NBD export, and the two stores of a whole image: a raw file or block
 * device (positioned reads and writes) and a copy in RAM. The per-client copy-on-write overlays that sit
 * on them are in `cow.ts` and reuse the file and pacing primitives exported here. All file I/O is
 * asynchronous, in pieces of at most {@linkcode IO_CHUNK}, so a 32 MiB request never holds the event
 * loop that DHCP, TFTP and HTTP share. A file store gives each I/O under way a handle of its own (no two
 * requests share a file offset).
 *
 * @example
 * ```ts
 * const base = FileStore.open({ path: "disk.img", writable: false });
 * const into = new Uint8Array(512);
 * await base.read(0, into);
 * ```
 * @module
 */
import { NbdError } from "./protocol.ts";

/** A store failure that maps to one NBD error value (ENOSPC, EIO, EPERM...). */
export class NbdStoreError extends Error {
  /** The NBD error value to reply with. */
  readonly errno: number;
  /** Creates the error with an NBD error value and a message. */
  constructor(errno: number, message: string) {
    super(message);
    this.name = "NbdStoreError";
    this.errno = errno;
  }
}

/** What an export reads from and writes to. Offsets and lengths are checked by the caller. */
export interface BlockStore {
  /** Size in bytes. */
  readonly size: number;
  /** False when every write must be refused. */
  readonly writable: boolean;
  /** True when all connections see the same data (so NBD_FLAG_CAN_MULTI_CONN may be offered). */
  readonly shared: boolean;
  /** Fills `into` with the bytes at `offset`. */
  read(offset: number, into: Uint8Array): Promise<void>;
  /** Writes `data` at `offset`. */
  write(offset: number, data: Uint8Array): Promise<void>;
  /** Writes `length` zero bytes at `offset`. */
  writeZeroes(offset: number, length: number): Promise<void>;
  /** Says the range is no longer needed; its contents become unspecified. */
  trim(offset: number, length: number): Promise<void>;
  /** Makes completed writes durable. */
  flush(): Promise<void>;
  /** Releases the store (and deletes what it owns); I/O still under way then fails with EIO. */
  close(): void;
}

/** Largest piece of one file read or write: a 32 MiB request is served in several. */
export const IO_CHUNK = 1 << 20;
/** Most file handles a {@linkcode FileStore} opens on its image (one per I/O under way). */
export const MAX_HANDLES = 8;
/** Longest run of in-memory work (ms) before the event loop is given a turn. */
const BUSY_MS = 4;

const ZERO_CHUNK = new Uint8Array(1 << 20);

/** Lets timers and sockets run: a macrotask turn (awaiting a resolved promise does not give one). */
function yieldToLoop(): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, 0));
}

/** Cuts a long run of in-memory work into slices of about {@linkcode BUSY_MS}, with a loop turn between. */
export class Slices {
  #since = performance.now();

  /** Resolves at once inside a slice; at its end, after a loop turn. */
  tick(): Promise<void> | undefined {
    if (performance.now() - this.#since <= BUSY_MS) return undefined;
    return yieldToLoop().then(() => {
      this.#since = performance.now();
    });
  }
}

/** One open handle on a file and where its offset stands (-1: unknown, seek before the next I/O). */
export interface Handle {
  readonly file: Deno.FsFile;
  pos: number;
}

/**
 * The handles of one file: each I/O takes a handle of its own for the seek and the reads or writes that
 * follow, so requests running at the same time never move each other's file offset. Handles beyond the
 * first are opened on demand (up to `max`) and must be the same file as the first (same device and
 * inode), so an image replaced on disk after start is never mixed in.
 */
export class HandlePool {
  readonly #path: string | null;
  readonly #write: boolean;
  readonly #first: Deno.FileInfo | null;
  #max: number;
  #count = 1;
  #idle: Handle[];
  #waiters: { resolve: (h: Handle) => void; reject: (e: Error) => void }[] = [];
  #closed = false;

  /** Wraps `file`; with a `path`, up to `max` handles in all are opened on it. */
  constructor(file: Deno.FsFile, opts: { path?: string; write: boolean; max: number }) {
    this.#path = opts.path ?? null;
    this.#write = opts.write;
    this.#max = this.#path === null ? 1 : opts.max;
    this.#idle = [{ file, pos: -1 }];
    this.#first = this.#max > 1 ? file.statSync() : null;
  }

  /** Runs `fn` with a handle of its own, preferably one whose offset already stands at `pos`. */
  async use<T>(pos: number, fn: (h: Handle) => Promise<T>): Promise<T> {
    const h = await this.#acquire(pos);
    try {
      return await fn(h);
    } catch (err) {
      h.pos = -1;
      throw err;
    } finally {
      this.#release(h);
    }
  }

  async #acquire(pos: number): Promise<Handle> {
    if (this.#closed) throw new NbdStoreError(NbdError.EIO, "store closed");
    // a sequential reader keeps finding the handle it used last, at the right offset: no seek
    const at = this.#idle.findIndex((h) => h.pos === pos);
    const idle = at >= 0 ? this.#idle.splice(at, 1)[0] : this.#idle.pop();
    if (idle !== undefined) return this.#take(idle);
    if (this.#count < this.#max) {
      this.#count++;
      const opened = await this.#open();
      if (opened !== null) return this.#take(opened);
      this.#count--;
      this.#max = this.#count; // cannot grow (out of descriptors, or not the same file): share
      const later = this.#idle.pop();
      if (later !== undefined) return this.#take(later);
      if (this.#closed) throw new NbdStoreError(NbdError.EIO, "store closed");
    }
    return await new Promise<Handle>((resolve, reject) => this.#waiters.push({ resolve, reject }));
  }

  #take(h: Handle): Handle {
    if (this.#closed) {
      h.file.close();
      throw new NbdStoreError(NbdError.EIO, "store closed");
    }
    return h;
  }

  async #open(): Promise<Handle | null> {
    let file: Deno.FsFile;
    try {
      file = await Deno.open(this.#path!, { read: true, write: this.#write });
    } catch {
      return null;
    }
    try {
      const info = await file.stat();
      const first = this.#first!;
      if (!this.#closed && info.dev === first.dev && info.ino === first.ino && info.ino !== null) {
        return { file, pos: -1 };
      }
    } catch {
      // not usable: fall through and close it
    }
    file.close();
    return null;
  }

  #release(h: Handle): void {
    if (this.#closed) {
      h.file.close();
      return;
    }
    const waiter = this.#waiters.shift();
    if (waiter !== undefined) {
      waiter.resolve(h);
    } else {
      this.#idle.push(h);
    }
  }

  /** Handles open or being opened. */
  get count(): number {
    return this.#count;
  }

  /** Closes the idle handles now and the busy ones when their I/O ends; waiting I/O fails. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const h of this.#idle) h.file.close();
    this.#idle = [];
    for (const w of this.#waiters.splice(0)) w.reject(new NbdStoreError(NbdError.EIO, "store closed"));
  }
}

/** Reads exactly `into.length` bytes at `pos` in pieces of {@linkcode IO_CHUNK}; past the end reads as zero. */
export async function preadFull(h: Handle, into: Uint8Array, pos: number): Promise<void> {
  if (h.pos !== pos) {
    await h.file.seek(pos, Deno.SeekMode.Start);
    h.pos = pos;
  }
  let done = 0;
  for (let guard = 0; done < into.length && guard < 1_000_000; guard++) {
    const n = await h.file.read(into.subarray(done, Math.min(into.length, done + IO_CHUNK)));
    if (n === null || n === 0) {
      into.fill(0, done);
      h.pos = -1;
      return;
    }
    done += n;
    h.pos += n;
  }
}

/** Writes all of `data` at `pos` in pieces of {@linkcode IO_CHUNK}. */
export async function pwriteFull(h: Handle, data: Uint8Array, pos: number): Promise<void> {
  if (h.pos !== pos) {
    await h.file.seek(pos, Deno.SeekMode.Start);
    h.pos = pos;
  }
  let done = 0;
  for (let guard = 0; done < data.length; guard++) {
    if (guard >= 1_000_000) throw new NbdStoreError(NbdError.EIO, "write made no progress");
    const n = await h.file.write(data.subarray(done, Math.min(data.length, done + IO_CHUNK)));
    done += n;
    h.pos += n;
  }
}

/** Turns an OS error from file I/O into an NBD store error (ENOSPC for a full disk, else EIO). */
export function toStoreError(err: unknown): NbdStoreError {
  if (err instanceof NbdStoreError) return err;
  const message = err instanceof Error ? err.message : String(err);
  const code = (err as { code?: string } | null)?.code;
  if (
    code === "ENOSPC" || code === "EDQUOT" || code === "EFBIG" || /no space|quota|too large/i.test(message)
  ) {
    return new NbdStoreError(NbdError.ENOSPC, message);
  }
  return new NbdStoreError(NbdError.EIO, message);
}

/** Writes zeroes through `write` in 1 MiB pieces, giving the event loop a turn when it ran a while. */
export async function writeZeroesVia(
  write: (offset: number, data: Uint8Array) => Promise<void>,
  offset: number,
  length: number,
): Promise<void> {
  const slices = new Slices();
  for (let done = 0; done < length;) {
    const n = Math.min(ZERO_CHUNK.length, length - done);
    await write(offset + done, ZERO_CHUNK.subarray(0, n));
    done += n;
    await slices.tick();
  }
}

/** Options of {@linkcode FileStore.open}. */
export interface FileStoreOptions {
  /** Image file or block device. */
  path: string;
  /** Open for writing (writes go straight to the image). */
  writable: boolean;
}

/** A raw image file or block device, read and written through a pool of handles (one per I/O under way). */
export class FileStore implements BlockStore {
  readonly size: number;
  readonly writable: boolean;
  readonly shared = true;
  readonly #pool: HandlePool;

  private constructor(pool: HandlePool, size: number, writable: boolean) {
    this.#pool = pool;
    this.size = size;
    this.writable = writable;
  }

  /** Opens an image; the size comes from seeking to the end, so block devices work too. */
  static open(opts: FileStoreOptions): FileStore {
    const file = Deno.openSync(opts.path, { read: true, write: opts.writable });
    try {
      const size = file.seekSync(0, Deno.SeekMode.End);
      const pool = new HandlePool(file, { path: opts.path, write: opts.writable, max: MAX_HANDLES });
      return new FileStore(pool, size, opts.writable);
    } catch (err) {
      file.close();
      throw err;
    }
  }

  /** Handles open on the image (one per I/O under way, at most {@linkcode MAX_HANDLES}). */
  get handles(): number {
    return this.#pool.count;
  }

  async read(offset: number, into: Uint8Array): Promise<void> {
    try {
      await this.#pool.use(offset, (h) => preadFull(h, into, offset));
    } catch (err) {
      throw toStoreError(err);
    }
  }

  async write(offset: number, data: Uint8Array): Promise<void> {
    if (!this.writable) throw new NbdStoreError(NbdError.EPERM, "read-only store");
    try {
      await this.#pool.use(offset, (h) => pwriteFull(h, data, offset));
    } catch (err) {
      throw toStoreError(err);
    }
  }

  writeZeroes(offset: number, length: number): Promise<void> {
    return writeZeroesVia((o, d) => this.write(o, d), offset, length);
  }

  trim(_offset: number, _length: number): Promise<void> {
    // a hint only; Deno has no hole punching, and leaving the data in place is allowed
    return Promise.resolve();
  }

  /** Syncs the image: fdatasync covers every handle's writes (it acts on the file, not the handle). */
  async flush(): Promise<void> {
    if (!this.writable) return;
    try {
      await this.#pool.use(-1, (h) => h.file.syncData());
    } catch (err) {
      throw toStoreError(err);
    }
  }

  close(): void {
    this.#pool.close();
  }
}

const RAM_CHUNK = 64 << 20;

/** Options of {@linkcode RamStore.load}. */
export interface RamStoreOptions {
  /** Store to copy from (it is read once and may be closed afterwards). */
  source: BlockStore;
  /** Accept writes (volatile: shared by every client, lost at exit). */
  writable: boolean;
  /** Called after each chunk with bytes copied so far and the total. */
  onProgress?: (done: number, total: number) => void;
}

/**
 * A whole image copied into RAM (64 MiB chunks, so images beyond one ArrayBuffer's limit fit). Reads
 * and writes are memory copies of at most {@linkcode IO_CHUNK} at a time, with a loop turn every
 * {@linkcode BUSY_MS} or so (a 32 MiB copy can take tens of milliseconds on a busy machine).
 */
export class RamStore implements BlockStore {
  readonly size: number;
  readonly writable: boolean;
  readonly shared = true;
  #chunks: Uint8Array[];

  private constructor(chunks: Uint8Array[], size: number, writable: boolean) {
    this.#chunks = chunks;
    this.size = size;
    this.writable = writable;
  }

  /** Copies `opts.source` into memory. */
  static async load(opts: RamStoreOptions): Promise<RamStore> {
    const chunks: Uint8Array[] = [];
    for (let at = 0; at < opts.source.size; at += RAM_CHUNK) {
      const chunk = new Uint8Array(Math.min(RAM_CHUNK, opts.source.size - at));
      await opts.source.read(at, chunk);
      chunks.push(chunk);
      opts.onProgress?.(at + chunk.length, opts.source.size);
    }
    return new RamStore(chunks, opts.source.size, opts.writable);
  }

  read(offset: number, into: Uint8Array): Promise<void> {
    return this.#copy(offset, into.length, (chunk, within, done, n) => {
      into.set(chunk.subarray(within, within + n), done);
    });
  }

  write(offset: number, data: Uint8Array): Promise<void> {
    if (!this.writable) return Promise.reject(new NbdStoreError(NbdError.EPERM, "read-only store"));
    return this.#copy(offset, data.length, (chunk, within, done, n) => {
      chunk.set(data.subarray(done, done + n), within);
    });
  }

  /** Walks `length` bytes at `offset` in pieces within one chunk and at most {@linkcode IO_CHUNK} long. */
  async #copy(
    offset: number,
    length: number,
    piece: (chunk: Uint8Array, within: number, done: number, n: number) => void,
  ): Promise<void> {
    const slices = new Slices();
    for (let done = 0; done < length;) {
      const pos = offset + done;
      const chunk = this.#chunks[Math.floor(pos / RAM_CHUNK)];
      const within = pos % RAM_CHUNK;
      const n = Math.min(length - done, chunk.length - within, IO_CHUNK);
      piece(chunk, within, done, n);
      done += n;
      if (done < length) await slices.tick();
    }
  }

  writeZeroes(offset: number, length: number): Promise<void> {
    return writeZeroesVia((o, d) => this.write(o, d), offset, length);
  }

  trim(_offset: number, _length: number): Promise<void> {
    return Promise.resolve();
  }

  flush(): Promise<void> {
    return Promise.resolve();
  }

  close(): void {
    this.#chunks = [];
  }
}
