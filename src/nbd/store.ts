/**
 * Block stores behind an NBD export: a raw file or block device (positioned reads and writes), a copy in
 * RAM, and a per-client copy-on-write overlay kept in a file or in memory (bounded by a shared byte
 * budget). All I/O is synchronous: one request is served start to finish before the next, so concurrent
 * clients never see a half-applied write and a store needs no locks.
 *
 * @example
 * ```ts
 * const base = FileStore.open({ path: "disk.img", writable: false });
 * const cow = new MemoryCowStore({ base, budget: new MemoryBudget(64 << 20) });
 * cow.write(1000, new Uint8Array([1, 2, 3]));
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
  read(offset: number, into: Uint8Array): void;
  /** Writes `data` at `offset`. */
  write(offset: number, data: Uint8Array): void;
  /** Writes `length` zero bytes at `offset`. */
  writeZeroes(offset: number, length: number): void;
  /** Says the range is no longer needed; its contents become unspecified. */
  trim(offset: number, length: number): void;
  /** Makes completed writes durable. */
  flush(): void;
  /** Releases the store (and deletes what it owns). */
  close(): void;
}

const ZERO_CHUNK = new Uint8Array(1 << 20);

/** Reads exactly `into.length` bytes at `pos`; bytes past the end of the file read as zero. */
export function preadFull(file: Deno.FsFile, into: Uint8Array, pos: number): void {
  file.seekSync(pos, Deno.SeekMode.Start);
  let done = 0;
  for (let guard = 0; done < into.length && guard < 1_000_000; guard++) {
    const n = file.readSync(into.subarray(done));
    if (n === null || n === 0) {
      into.fill(0, done);
      return;
    }
    done += n;
  }
}

/** Writes all of `data` at `pos`. */
export function pwriteFull(file: Deno.FsFile, data: Uint8Array, pos: number): void {
  file.seekSync(pos, Deno.SeekMode.Start);
  let done = 0;
  for (let guard = 0; done < data.length; guard++) {
    if (guard >= 1_000_000) throw new NbdStoreError(NbdError.EIO, "write made no progress");
    done += file.writeSync(data.subarray(done));
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

function writeZeroesVia(store: BlockStore, offset: number, length: number): void {
  for (let done = 0; done < length;) {
    const n = Math.min(ZERO_CHUNK.length, length - done);
    store.write(offset + done, ZERO_CHUNK.subarray(0, n));
    done += n;
  }
}

/** Options of {@linkcode FileStore.open}. */
export interface FileStoreOptions {
  /** Image file or block device. */
  path: string;
  /** Open for writing (writes go straight to the image). */
  writable: boolean;
}

/** A raw image file or block device. */
export class FileStore implements BlockStore {
  readonly size: number;
  readonly writable: boolean;
  readonly shared = true;
  readonly #file: Deno.FsFile;

  private constructor(file: Deno.FsFile, size: number, writable: boolean) {
    this.#file = file;
    this.size = size;
    this.writable = writable;
  }

  /** Opens an image; the size comes from seeking to the end, so block devices work too. */
  static open(opts: FileStoreOptions): FileStore {
    const file = Deno.openSync(opts.path, { read: true, write: opts.writable });
    try {
      const size = file.seekSync(0, Deno.SeekMode.End);
      return new FileStore(file, size, opts.writable);
    } catch (err) {
      file.close();
      throw err;
    }
  }

  read(offset: number, into: Uint8Array): void {
    try {
      preadFull(this.#file, into, offset);
    } catch (err) {
      throw toStoreError(err);
    }
  }

  write(offset: number, data: Uint8Array): void {
    if (!this.writable) throw new NbdStoreError(NbdError.EPERM, "read-only store");
    try {
      pwriteFull(this.#file, data, offset);
    } catch (err) {
      throw toStoreError(err);
    }
  }

  writeZeroes(offset: number, length: number): void {
    writeZeroesVia(this, offset, length);
  }

  trim(_offset: number, _length: number): void {
    // a hint only; Deno has no hole punching, and leaving the data in place is allowed
  }

  flush(): void {
    if (!this.writable) return;
    try {
      this.#file.syncDataSync();
    } catch (err) {
      throw toStoreError(err);
    }
  }

  close(): void {
    this.#file.close();
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

/** A whole image copied into RAM (64 MiB chunks, so images beyond one ArrayBuffer's limit fit). */
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
  static load(opts: RamStoreOptions): RamStore {
    const chunks: Uint8Array[] = [];
    for (let at = 0; at < opts.source.size; at += RAM_CHUNK) {
      const chunk = new Uint8Array(Math.min(RAM_CHUNK, opts.source.size - at));
      opts.source.read(at, chunk);
      chunks.push(chunk);
      opts.onProgress?.(at + chunk.length, opts.source.size);
    }
    return new RamStore(chunks, opts.source.size, opts.writable);
  }

  read(offset: number, into: Uint8Array): void {
    for (let done = 0; done < into.length;) {
      const pos = offset + done;
      const chunk = this.#chunks[Math.floor(pos / RAM_CHUNK)];
      const within = pos % RAM_CHUNK;
      const n = Math.min(into.length - done, chunk.length - within);
      into.set(chunk.subarray(within, within + n), done);
      done += n;
    }
  }

  write(offset: number, data: Uint8Array): void {
    if (!this.writable) throw new NbdStoreError(NbdError.EPERM, "read-only store");
    for (let done = 0; done < data.length;) {
      const pos = offset + done;
      const chunk = this.#chunks[Math.floor(pos / RAM_CHUNK)];
      const within = pos % RAM_CHUNK;
      const n = Math.min(data.length - done, chunk.length - within);
      chunk.set(data.subarray(done, done + n), within);
      done += n;
    }
  }

  writeZeroes(offset: number, length: number): void {
    writeZeroesVia(this, offset, length);
  }

  trim(_offset: number, _length: number): void {}

  flush(): void {}

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

/**
 * The copy-on-write algorithm over a block map: reads take overlay blocks where written and the base
 * elsewhere (consecutive base blocks in one read); a partial write to a block not yet copied first copies
 * the whole block from the base, so unaligned I/O keeps the surrounding bytes.
 */
abstract class CowStore implements BlockStore {
  readonly size: number;
  readonly writable = true;
  readonly shared = false;
  protected readonly base: BlockStore;
  readonly #scratch = new Uint8Array(COW_BLOCK);

  constructor(base: BlockStore) {
    this.base = base;
    this.size = base.size;
  }

  /** True when `block` lives in the overlay. */
  protected abstract has(block: number): boolean;
  /** Copies `into.length` bytes of overlay `block` starting at `within`. */
  protected abstract readBlock(block: number, within: number, into: Uint8Array): void;
  /** Overwrites bytes of overlay `block` (already present) starting at `within`. */
  protected abstract writeBlock(block: number, within: number, data: Uint8Array): void;
  /** Adds `block` to the overlay with its full contents `data` (length = the block's length). */
  protected abstract addBlock(block: number, data: Uint8Array): void;
  /** Makes room for `count` new blocks or throws ENOSPC, before anything is changed. */
  protected abstract reserve(count: number): void;
  /** Number of blocks in the overlay. */
  abstract get blocks(): number;
  abstract close(): void;

  /** Length of `block` (the last block of an image may be short). */
  protected blockLength(block: number): number {
    return Math.min(COW_BLOCK, this.size - block * COW_BLOCK);
  }

  read(offset: number, into: Uint8Array): void {
    const end = offset + into.length;
    let pos = offset;
    let baseStart = -1; // start of a pending run of base bytes
    const flushBase = (upTo: number) => {
      if (baseStart < 0) return;
      this.base.read(baseStart, into.subarray(baseStart - offset, upTo - offset));
      baseStart = -1;
    };
    for (let guard = 0; pos < end && guard <= into.length / COW_BLOCK + 2; guard++) {
      const block = Math.floor(pos / COW_BLOCK);
      const blockEnd = Math.min(end, (block + 1) * COW_BLOCK);
      if (this.has(block)) {
        flushBase(pos);
        this.readBlock(block, pos - block * COW_BLOCK, into.subarray(pos - offset, blockEnd - offset));
      } else if (baseStart < 0) {
        baseStart = pos;
      }
      pos = blockEnd;
    }
    flushBase(end);
  }

  write(offset: number, data: Uint8Array): void {
    const end = offset + data.length;
    if (data.length === 0) return;
    const first = Math.floor(offset / COW_BLOCK);
    const last = Math.floor((end - 1) / COW_BLOCK);
    let missing = 0;
    for (let b = first; b <= last; b++) if (!this.has(b)) missing++;
    if (missing > 0) this.reserve(missing);
    for (let b = first; b <= last; b++) {
      const blockStart = b * COW_BLOCK;
      const from = Math.max(offset, blockStart);
      const to = Math.min(end, blockStart + COW_BLOCK);
      const piece = data.subarray(from - offset, to - offset);
      if (this.has(b)) {
        this.writeBlock(b, from - blockStart, piece);
        continue;
      }
      const len = this.blockLength(b);
      if (from === blockStart && to - from === len) {
        this.addBlock(b, piece);
      } else {
        const full = this.#scratch.subarray(0, len);
        this.base.read(blockStart, full);
        full.set(piece, from - blockStart);
        this.addBlock(b, full);
      }
    }
  }

  writeZeroes(offset: number, length: number): void {
    writeZeroesVia(this, offset, length);
  }

  trim(_offset: number, _length: number): void {}

  flush(): void {}
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

  protected readBlock(block: number, within: number, into: Uint8Array): void {
    into.set(this.#map.get(block)!.subarray(within, within + into.length));
  }

  protected writeBlock(block: number, within: number, data: Uint8Array): void {
    this.#map.get(block)!.set(data, within);
  }

  protected addBlock(block: number, data: Uint8Array): void {
    this.#map.set(block, data.slice());
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
  override trim(offset: number, length: number): void {
    const first = Math.ceil(offset / COW_BLOCK);
    const endBlock = Math.floor((offset + length) / COW_BLOCK);
    for (let b = first; b < endBlock && this.#map.size > 0; b++) {
      if (this.#map.delete(b)) this.#budget.release(COW_BLOCK);
    }
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

/**
 * A per-client copy-on-write overlay in a file under a state directory. On POSIX the file is unlinked
 * right after it is created, so it disappears even if the process is killed; where that fails (Windows)
 * it is deleted on close and by {@linkcode removeStaleCowFiles} at the next start.
 */
export class FileCowStore extends CowStore {
  readonly #file: Deno.FsFile;
  #path: string | null;
  #slots = new Map<number, number>();

  private constructor(base: BlockStore, file: Deno.FsFile, path: string | null) {
    super(base);
    this.#file = file;
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

  protected readBlock(block: number, within: number, into: Uint8Array): void {
    try {
      preadFull(this.#file, into, this.#slots.get(block)! * COW_BLOCK + within);
    } catch (err) {
      throw toStoreError(err);
    }
  }

  protected writeBlock(block: number, within: number, data: Uint8Array): void {
    try {
      pwriteFull(this.#file, data, this.#slots.get(block)! * COW_BLOCK + within);
    } catch (err) {
      throw toStoreError(err);
    }
  }

  protected addBlock(block: number, data: Uint8Array): void {
    const slot = this.#slots.size;
    try {
      pwriteFull(this.#file, data, slot * COW_BLOCK);
    } catch (err) {
      throw toStoreError(err);
    }
    this.#slots.set(block, slot);
  }

  protected reserve(_count: number): void {
    // the file system enforces its own limit: a full disk fails the write with ENOSPC
  }

  close(): void {
    this.#slots = new Map();
    try {
      this.#file.close();
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
