/**
 * Block stores behind an NBD export: a raw file or block device (positioned reads and writes), a copy in
 * RAM, and a per-client copy-on-write overlay kept in a file or in memory (bounded by a shared byte
 * budget). All file I/O is asynchronous, in pieces of at most {@linkcode IO_CHUNK}, so a 32 MiB request
 * never holds the event loop that DHCP, TFTP and HTTP share. A file store gives each I/O under way a
 * handle of its own (no two requests share a file offset); an overlay runs its requests one at a time.
 *
 * @example
 * ```ts
 * const base = FileStore.open({ path: "disk.img", writable: false });
 * const cow = new MemoryCowStore({ base, budget: new MemoryBudget(64 << 20) });
 * await cow.write(1000, new Uint8Array([1, 2, 3]));
 * ```
 * @module
 */
import { join } from "node:path";
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
class Slices {
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
interface Handle {
  readonly file: Deno.FsFile;
  pos: number;
}

/**
 * The handles of one file: each I/O takes a handle of its own for the seek and the reads or writes that
 * follow, so requests running at the same time never move each other's file offset. Handles beyond the
 * first are opened on demand (up to `max`) and must be the same file as the first (same device and
 * inode), so an image replaced on disk after start is never mixed in.
 */
class HandlePool {
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
async function preadFull(h: Handle, into: Uint8Array, pos: number): Promise<void> {
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
async function pwriteFull(h: Handle, data: Uint8Array, pos: number): Promise<void> {
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
async function writeZeroesVia(
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

/** Runs tasks one after another (a lock for stores whose state spans several awaits). */
class Serial {
  #tail: Promise<unknown> = Promise.resolve();

  /** Runs `fn` once every task queued before it has settled. */
  run<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.#tail.then(fn);
    this.#tail = next.catch(() => {});
    return next;
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

/** Copy-on-write granularity in bytes. */
export const COW_BLOCK = 4096;

/** A byte budget shared by every in-memory overlay of a server; writes beyond it fail with ENOSPC. */
export class MemoryBudget {
  readonly limit: number;
  #used = 0;

  /** Creates a budget of `limit` bytes. */
  constructor(limit: number) {
    this.limit = limit;
  }

  /** Bytes in use. */
  get used(): number {
    return this.#used;
  }

  /** Takes `n` bytes; false (and nothing taken) when that would pass the limit. */
  take(n: number): boolean {
    if (this.#used + n > this.limit) return false;
    this.#used += n;
    return true;
  }

  /** Gives `n` bytes back. */
  release(n: number): void {
    this.#used = Math.max(0, this.#used - n);
  }
}

/** One block's share of a copy-on-write write: bytes at `within` of `block`; `fresh` when it is new. */
interface CowPiece {
  block: number;
  within: number;
  bytes: Uint8Array;
  /** Not in the overlay yet: `bytes` is then the whole block. */
  fresh: boolean;
}

/**
 * The copy-on-write algorithm over a block map: reads take overlay blocks where written and the base
 * elsewhere (each run of consecutive blocks in one read); a partial write to a block not yet copied
 * first copies the whole block from the base, so unaligned I/O keeps the surrounding bytes. Requests
 * run one at a time per overlay (a map update spans several awaits).
 */
abstract class CowStore implements BlockStore {
  readonly size: number;
  readonly writable = true;
  readonly shared = false;
  protected readonly base: BlockStore;
  readonly #serial = new Serial();

  constructor(base: BlockStore) {
    this.base = base;
    this.size = base.size;
  }

  /** True when `block` lives in the overlay. */
  protected abstract has(block: number): boolean;
  /** Fills `into` from the overlay, from byte `within` of `block` on, over consecutive overlay blocks. */
  protected abstract readOverlay(block: number, within: number, into: Uint8Array): Promise<void> | void;
  /** Stores the pieces of one write (ascending blocks); fresh blocks join the overlay once stored. */
  protected abstract writeOverlay(pieces: CowPiece[]): Promise<void> | void;
  /** Makes room for `count` new blocks or throws ENOSPC, before anything is changed. */
  protected abstract reserve(count: number): void;
  /** Number of blocks in the overlay. */
  abstract get blocks(): number;
  abstract close(): void;

  /** Length of `block` (the last block of an image may be short). */
  protected blockLength(block: number): number {
    return Math.min(COW_BLOCK, this.size - block * COW_BLOCK);
  }

  read(offset: number, into: Uint8Array): Promise<void> {
    return this.#serial.run(() => this.#read(offset, into));
  }

  write(offset: number, data: Uint8Array): Promise<void> {
    return this.#serial.run(() => this.#write(offset, data));
  }

  writeZeroes(offset: number, length: number): Promise<void> {
    return this.#serial.run(() => writeZeroesVia((o, d) => this.#write(o, d), offset, length));
  }

  trim(_offset: number, _length: number): Promise<void> {
    return Promise.resolve();
  }

  flush(): Promise<void> {
    return Promise.resolve();
  }

  /** Runs `fn` in turn with this overlay's requests. */
  protected serially(fn: () => Promise<void>): Promise<void> {
    return this.#serial.run(fn);
  }

  async #read(offset: number, into: Uint8Array): Promise<void> {
    const end = offset + into.length;
    for (let pos = offset; pos < end;) {
      const block = Math.floor(pos / COW_BLOCK);
      const inOverlay = this.has(block);
      let next = block + 1;
      while (next * COW_BLOCK < end && this.has(next) === inOverlay) next++;
      const runEnd = Math.min(end, next * COW_BLOCK);
      const view = into.subarray(pos - offset, runEnd - offset);
      if (inOverlay) await this.readOverlay(block, pos - block * COW_BLOCK, view);
      else await this.base.read(pos, view);
      pos = runEnd;
    }
  }

  async #write(offset: number, data: Uint8Array): Promise<void> {
    const end = offset + data.length;
    if (data.length === 0) return;
    const first = Math.floor(offset / COW_BLOCK);
    const last = Math.floor((end - 1) / COW_BLOCK);
    const pieces: CowPiece[] = [];
    let missing = 0;
    for (let b = first; b <= last; b++) {
      const blockStart = b * COW_BLOCK;
      const from = Math.max(offset, blockStart);
      const to = Math.min(end, blockStart + COW_BLOCK);
      const piece = data.subarray(from - offset, to - offset);
      if (this.has(b)) {
        pieces.push({ block: b, within: from - blockStart, bytes: piece, fresh: false });
        continue;
      }
      missing++;
      const len = this.blockLength(b);
      if (from === blockStart && to - from === len) {
        pieces.push({ block: b, within: 0, bytes: piece, fresh: true });
      } else {
        // only the first and the last block can be partial: read them before anything is reserved
        const full = new Uint8Array(len);
        await this.base.read(blockStart, full);
        full.set(piece, from - blockStart);
        pieces.push({ block: b, within: 0, bytes: full, fresh: true });
      }
    }
    if (missing > 0) this.reserve(missing);
    await this.writeOverlay(pieces);
  }
}

/** Options of {@linkcode MemoryCowStore}. */
export interface MemoryCowOptions {
  /** The image the overlay sits on (not closed by the overlay). */
  base: BlockStore;
  /** The server-wide byte budget for in-memory overlays. */
  budget: MemoryBudget;
}

/** A per-client copy-on-write overlay in memory, bounded by a shared {@linkcode MemoryBudget}. */
export class MemoryCowStore extends CowStore {
  readonly #budget: MemoryBudget;
  #map = new Map<number, Uint8Array>();

  /** Creates an empty overlay on `opts.base`. */
  constructor(opts: MemoryCowOptions) {
    super(opts.base);
    this.#budget = opts.budget;
  }

  get blocks(): number {
    return this.#map.size;
  }

  protected has(block: number): boolean {
    return this.#map.has(block);
  }

  protected async readOverlay(block: number, within: number, into: Uint8Array): Promise<void> {
    const slices = new Slices();
    for (let done = 0, b = block, w = within; done < into.length; b++, w = 0) {
      const bytes = this.#map.get(b)!;
      const n = Math.min(bytes.length - w, into.length - done);
      into.set(bytes.subarray(w, w + n), done);
      done += n;
      await slices.tick();
    }
  }

  protected async writeOverlay(pieces: CowPiece[]): Promise<void> {
    const slices = new Slices();
    for (const p of pieces) {
      if (p.fresh) this.#map.set(p.block, p.bytes.slice());
      else this.#map.get(p.block)!.set(p.bytes, p.within);
      await slices.tick();
    }
  }

  protected reserve(count: number): void {
    if (!this.#budget.take(count * COW_BLOCK)) {
      throw new NbdStoreError(
        NbdError.ENOSPC,
        `copy-on-write memory limit of ${this.#budget.limit} bytes reached`,
      );
    }
  }

  /** Drops whole overlay blocks inside the range (their contents become the base's again: allowed). */
  override trim(offset: number, length: number): Promise<void> {
    return this.serially(() => {
      const first = Math.ceil(offset / COW_BLOCK);
      const endBlock = Math.floor((offset + length) / COW_BLOCK);
      for (let b = first; b < endBlock && this.#map.size > 0; b++) {
        if (this.#map.delete(b)) this.#budget.release(COW_BLOCK);
      }
      return Promise.resolve();
    });
  }

  close(): void {
    this.#budget.release(this.#map.size * COW_BLOCK);
    this.#map = new Map();
  }
}

/** File-name prefix of overlay files, used to find stale ones. */
export const COW_FILE_PREFIX = "pypxe-nbd-cow-";

/** Options of {@linkcode FileCowStore.create}. */
export interface FileCowOptions {
  /** The image the overlay sits on (not closed by the overlay). */
  base: BlockStore;
  /** Directory for the overlay file. */
  dir: string;
  /** A tag for the file name (e.g. the connection id). */
  tag: string;
}

/** True when `b` starts in memory right where `a` ends. */
function adjacent(a: Uint8Array, b: Uint8Array): boolean {
  return a.buffer === b.buffer && a.byteOffset + a.length === b.byteOffset;
}

/**
 * A per-client copy-on-write overlay in a file under a state directory. On POSIX the file is unlinked
 * right after it is created, so it disappears even if the process is killed; where that fails (Windows)
 * it is deleted on close and by {@linkcode removeStaleCowFiles} at the next start. New blocks take the
 * next slots of the file in block order, so a sequential write (and its later reads) is one file I/O.
 */
export class FileCowStore extends CowStore {
  readonly #pool: HandlePool;
  #path: string | null;
  #slots = new Map<number, number>();

  private constructor(base: BlockStore, file: Deno.FsFile, path: string | null) {
    super(base);
    this.#pool = new HandlePool(file, { write: true, max: 1 });
    this.#path = path;
  }

  /** Creates the overlay file under `opts.dir`. */
  static create(opts: FileCowOptions): FileCowStore {
    const rand = crypto.getRandomValues(new Uint32Array(1))[0].toString(16);
    const path = join(opts.dir, `${COW_FILE_PREFIX}${opts.tag}-${rand}.img`);
    const file = Deno.openSync(path, { read: true, write: true, createNew: true });
    let kept: string | null = path;
    try {
      Deno.removeSync(path);
      kept = null;
    } catch {
      // an open file cannot be removed here (Windows): remove it on close instead
    }
    return new FileCowStore(opts.base, file, kept);
  }

  /** Path of the overlay file while it still has a name (null once unlinked). */
  get path(): string | null {
    return this.#path;
  }

  get blocks(): number {
    return this.#slots.size;
  }

  protected has(block: number): boolean {
    return this.#slots.has(block);
  }

  protected async readOverlay(block: number, within: number, into: Uint8Array): Promise<void> {
    // one file read per run of blocks in consecutive slots
    for (let done = 0, b = block, w = within; done < into.length; w = 0) {
      const start = this.#slots.get(b)! * COW_BLOCK + w;
      let len = Math.min(COW_BLOCK - w, into.length - done);
      for (b++; done + len < into.length && this.#slots.get(b) === this.#slots.get(b - 1)! + 1; b++) {
        len += Math.min(COW_BLOCK, into.length - done - len);
      }
      const view = into.subarray(done, done + len);
      try {
        await this.#pool.use(start, (h) => preadFull(h, view, start));
      } catch (err) {
        throw toStoreError(err);
      }
      done += len;
    }
  }

  protected async writeOverlay(pieces: CowPiece[]): Promise<void> {
    // fresh blocks take the next slots in order; pieces next to each other in the file and in memory
    // are written together, and fresh blocks join the map only once their bytes are in the file
    let nextSlot = this.#slots.size;
    const placed = pieces.map((p) => ({
      piece: p,
      pos: (p.fresh ? nextSlot++ : this.#slots.get(p.block)!) * COW_BLOCK + p.within,
    }));
    for (let i = 0; i < placed.length;) {
      let j = i + 1;
      let bytes = placed[i].piece.bytes;
      while (
        j < placed.length && placed[j].pos === placed[j - 1].pos + placed[j - 1].piece.bytes.length &&
        adjacent(placed[j - 1].piece.bytes, placed[j].piece.bytes)
      ) {
        bytes = new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.length + placed[j].piece.bytes.length);
        j++;
      }
      const pos = placed[i].pos;
      try {
        await this.#pool.use(pos, (h) => pwriteFull(h, bytes, pos));
      } catch (err) {
        throw toStoreError(err);
      }
      for (let k = i; k < j; k++) {
        const p = placed[k];
        if (p.piece.fresh) this.#slots.set(p.piece.block, p.pos / COW_BLOCK);
      }
      i = j;
    }
  }

  protected reserve(_count: number): void {
    // the file system enforces its own limit: a full disk fails the write with ENOSPC
  }

  close(): void {
    this.#slots = new Map();
    try {
      this.#pool.close();
    } finally {
      if (this.#path !== null) {
        const path = this.#path;
        this.#path = null;
        Deno.removeSync(path);
      }
    }
  }
}

/** Deletes overlay files left in `dir` by an earlier run; returns how many were removed. */
export function removeStaleCowFiles(dir: string): number {
  let removed = 0;
  let entries: Deno.DirEntry[];
  try {
    entries = [...Deno.readDirSync(dir)];
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return 0;
    throw err;
  }
  for (const entry of entries) {
    if (entry.isFile && entry.name.startsWith(COW_FILE_PREFIX)) {
      Deno.removeSync(join(dir, entry.name));
      removed++;
    }
  }
  return removed;
}
