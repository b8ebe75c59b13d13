/**
 * Per-client copy-on-write overlays on a {@linkcode BlockStore}: kept in a file under a state directory
 * (unlinked at once where the OS allows it) or in memory, bounded by a {@linkcode MemoryBudget} shared by
 * the server. An overlay runs its requests one at a time; its file I/O goes through the same handle and
 * pacing primitives as the file store.
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
import {
  type BlockStore,
  HandlePool,
  NbdStoreError,
  preadFull,
  pwriteFull,
  Slices,
  toStoreError,
  writeZeroesVia,
} from "./store.ts";

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
