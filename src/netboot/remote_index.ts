/**
 * The remote cache's index: one JSON file (`index.json` in the cache directory) listing each complete
 * file by key (the sha256 of its URL) with its URL, size, sha256, the origin's validators and times.
 * Written crash-safe: a temporary file is written and synced, then renamed over the index. Last-used
 * times change on every open, so those writes are gathered (at most one per `flushDelayMs`); completions,
 * replacements and evictions are written at once.
 *
 * On load, entries whose file is missing or has another size are dropped, and files the index does not
 * know (`<64 hex>` or `*.part` left by a crash) are removed: nothing half-written is ever served.
 * @module
 */
import { join } from "node:path";
import { errText } from "../errors.ts";
import type { RemoteLog } from "./remote_download.ts";

/** One complete file in the cache. */
export interface IndexEntry {
  readonly url: string;
  /** sha256 hex of the URL: the file name in the cache directory. */
  readonly key: string;
  readonly size: number;
  /** sha256 hex of the bytes, computed while downloading. */
  readonly sha256: string;
  /** True when a configured sha256 was given and matched. */
  readonly verified: boolean;
  readonly etag: string | null;
  readonly lastModified: string | null;
  /** When the bytes were fetched (ms since the epoch, the cache's clock). */
  readonly fetchedAt: number;
  /** When the origin last confirmed (200 or 304) or the copy was fetched. */
  checkedAt: number;
  /** When a reader last opened it. */
  lastUsedAt: number;
}

/** The index file's name in the cache directory. */
export const INDEX_FILE = "index.json";

const KEY_FILE = /^[0-9a-f]{64}$/;
const PART_FILE = /^[0-9a-f]{64}\.\d+\.part$/;

/** The entries of one cache directory and their on-disk index. */
export class CacheIndex {
  readonly #dir: string;
  readonly #log: RemoteLog;
  readonly #flushDelayMs: number;
  readonly #entries = new Map<string, IndexEntry>();
  #timer: ReturnType<typeof setTimeout> | undefined;
  #writing: Promise<void> = Promise.resolve();
  #dirty = false;

  private constructor(dir: string, log: RemoteLog, flushDelayMs: number) {
    this.#dir = dir;
    this.#log = log;
    this.#flushDelayMs = flushDelayMs;
  }

  /** Reads `dir/index.json` (creating `dir`), keeps the entries whose files are intact, removes leftovers. */
  static async load(dir: string, log: RemoteLog, flushDelayMs = 1000): Promise<CacheIndex> {
    await Deno.mkdir(dir, { recursive: true });
    const index = new CacheIndex(dir, log, flushDelayMs);
    for (const entry of await readEntries(join(dir, INDEX_FILE), log)) {
      const size = await fileSize(join(dir, entry.key));
      if (size === entry.size) index.#entries.set(entry.key, entry);
      else {log.warn(
          `remote: dropping ${entry.url} from the cache index: its file is ${
            size === null ? "missing" : "truncated"
          }`,
        );}
    }
    // bounded by the directory's entries
    for await (const item of Deno.readDir(dir)) {
      const stray = (KEY_FILE.test(item.name) && !index.#entries.has(item.name)) || PART_FILE.test(item.name);
      if (item.isFile && stray) {
        await Deno.remove(join(dir, item.name)).catch((err) =>
          log.warn(`remote: cannot remove ${item.name}: ${errText(err)}`)
        );
      }
    }
    index.#dirty = true;
    await index.flush();
    return index;
  }

  /** The entry of `key`, if complete. */
  get(key: string): IndexEntry | undefined {
    return this.#entries.get(key);
  }

  /** Every entry. */
  entries(): IndexEntry[] {
    return [...this.#entries.values()];
  }

  /** Bytes held by complete files. */
  get totalBytes(): number {
    let total = 0;
    for (const e of this.#entries.values()) total += e.size;
    return total;
  }

  /** Adds or replaces an entry and writes the index now. */
  set(entry: IndexEntry): Promise<void> {
    this.#entries.set(entry.key, entry);
    this.#dirty = true;
    return this.flush();
  }

  /** Removes an entry and writes the index now. */
  delete(key: string): Promise<void> {
    this.#entries.delete(key);
    this.#dirty = true;
    return this.flush();
  }

  /** Marks the index changed (last-used or checked times): written within `flushDelayMs`. */
  touch(): void {
    this.#dirty = true;
    if (this.#timer !== undefined) return;
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      this.flush().catch(() => {}); // flush logs its own failure
    }, this.#flushDelayMs);
  }

  /** Writes the index if it changed (temp file, sync, rename); one write at a time. Never rejects. */
  flush(): Promise<void> {
    if (this.#timer !== undefined) {
      clearTimeout(this.#timer);
      this.#timer = undefined;
    }
    this.#writing = this.#writing.then(() => this.#write());
    return this.#writing;
  }

  async #write(): Promise<void> {
    if (!this.#dirty) return;
    this.#dirty = false;
    const path = join(this.#dir, INDEX_FILE);
    const tmp = `${path}.tmp`;
    const text = JSON.stringify({ version: 1, entries: this.entries() }, null, 1) + "\n";
    try {
      const bytes = new TextEncoder().encode(text);
      {
        using file = await Deno.open(tmp, { write: true, create: true, truncate: true });
        // bounded: every pass writes at least one byte or throws
        for (let off = 0; off < bytes.length;) off += await file.write(bytes.subarray(off));
        await file.syncData();
      }
      await Deno.rename(tmp, path);
    } catch (err) {
      this.#dirty = true; // try again with the next change
      this.#log.error(`remote: cannot write the cache index ${path}: ${errText(err)}`);
    }
  }
}

/**
 * The complete entries of the index in `dir`, read only: nothing is created, removed or written (for
 * `pypxe cache list` while a server may be using the directory).
 */
export async function readIndex(dir: string, log: RemoteLog): Promise<IndexEntry[]> {
  const out: IndexEntry[] = [];
  for (const entry of await readEntries(join(dir, INDEX_FILE), log)) {
    if (await fileSize(join(dir, entry.key)) === entry.size) out.push(entry);
  }
  return out;
}

async function readEntries(path: string, log: RemoteLog): Promise<IndexEntry[]> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (err) {
    if (!(err instanceof Deno.errors.NotFound)) {
      log.warn(`remote: cannot read the cache index ${path}: ${errText(err)}`);
    }
    return [];
  }
  try {
    const parsed = JSON.parse(text) as { entries?: unknown };
    if (!Array.isArray(parsed.entries)) throw new Error("no entries list");
    return parsed.entries.filter(isEntry);
  } catch (err) {
    log.warn(`remote: the cache index ${path} is unreadable (${errText(err)}); starting empty`);
    return [];
  }
}

function isEntry(e: unknown): e is IndexEntry {
  if (typeof e !== "object" || e === null) return false;
  const r = e as Record<string, unknown>;
  return typeof r.url === "string" && typeof r.key === "string" && KEY_FILE.test(r.key) &&
    typeof r.size === "number" && typeof r.sha256 === "string" && typeof r.fetchedAt === "number" &&
    typeof r.checkedAt === "number" && typeof r.lastUsedAt === "number";
}

async function fileSize(path: string): Promise<number | null> {
  try {
    const info = await Deno.stat(path);
    return info.isFile ? info.size : null;
  } catch {
    return null; // missing or unreadable: the entry is dropped either way
  }
}
