/**
 * A small in-memory cache of hot boot files (pxelinux.0, ldlinux.c32, ipxe.efi...): a file is kept
 * while its path, size and mtime stay the same; least recently used entries go first.
 * @module
 */
import type { NetbootFile } from "./fs.ts";

/** Limits of {@linkcode FileCache}. */
export interface FileCacheOptions {
  /** Largest file kept, in bytes (0 disables the cache). */
  maxFileBytes: number;
  /** Total bytes kept. */
  maxTotalBytes: number;
}

interface Entry {
  readonly size: number;
  readonly mtime: number;
  readonly bytes: Uint8Array;
}

/** Bounded LRU of whole small files, validated against the netboot lookup's size and mtime. */
export class FileCache {
  readonly #opts: FileCacheOptions;
  readonly #entries = new Map<string, Entry>();
  #total = 0;

  /** Creates an empty cache with the given limits. */
  constructor(opts: FileCacheOptions) {
    this.#opts = opts;
  }

  /** True when `file` is small enough to be cached. */
  accepts(file: NetbootFile): boolean {
    return file.size <= this.#opts.maxFileBytes && file.size <= this.#opts.maxTotalBytes;
  }

  /** The cached bytes of `file` if still current, else null. */
  get(file: NetbootFile): Uint8Array | null {
    const entry = this.#entries.get(file.path);
    if (entry === undefined) return null;
    if (entry.size !== file.size || entry.mtime !== (file.mtime?.getTime() ?? 0)) {
      this.#delete(file.path, entry);
      return null;
    }
    this.#entries.delete(file.path); // re-insert: most recently used last
    this.#entries.set(file.path, entry);
    return entry.bytes;
  }

  /** Stores the bytes of `file` when it fits, evicting the least recently used entries. */
  put(file: NetbootFile, bytes: Uint8Array): void {
    if (!this.accepts(file) || bytes.length !== file.size) return;
    const old = this.#entries.get(file.path);
    if (old !== undefined) this.#delete(file.path, old);
    for (const [path, entry] of this.#entries) {
      if (this.#total + bytes.length <= this.#opts.maxTotalBytes) break;
      this.#delete(path, entry);
    }
    this.#entries.set(file.path, { size: file.size, mtime: file.mtime?.getTime() ?? 0, bytes });
    this.#total += bytes.length;
  }

  /** Bytes currently held. */
  get totalBytes(): number {
    return this.#total;
  }

  #delete(path: string, entry: Entry): void {
    this.#entries.delete(path);
    this.#total -= entry.bytes.length;
  }
}
