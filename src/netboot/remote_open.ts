/**
 * Where the remote-file cache lives and when it is opened: `--cache-dir`, else `cache/` beside the lease
 * file, else beside a compiled binary (a USB stick: the cache travels with it), else in the working
 * directory; opened on first use, so a set-up without remote files never creates the folder.
 * @module
 */
import { dirname, join } from "node:path";
import type { PxeConfig } from "../settings.ts";
import { RemoteCache } from "./remote.ts";
import type { RemoteEntryInfo } from "./remote_list.ts";

/** The cache folder the config names or implies. */
export function remoteCacheDir(config: Pick<PxeConfig, "CACHE_DIR" | "LEASES_FILE">): string {
  if (config.CACHE_DIR !== "") return config.CACHE_DIR;
  if (config.LEASES_FILE !== "") return join(dirname(config.LEASES_FILE), "cache");
  // a compiled binary runs its main module from a deno-compile folder: keep the cache beside the binary
  if (Deno.mainModule.includes("deno-compile")) return join(dirname(Deno.execPath()), "cache");
  return join(Deno.cwd(), "cache");
}

/** The cache, created on the first `get()`; `close()` stops its downloads if it was ever opened. */
export class LazyRemoteCache {
  readonly #config: PxeConfig;
  #cache: Promise<RemoteCache> | null = null;
  #opened: RemoteCache | null = null;

  constructor(config: PxeConfig) {
    this.#config = config;
  }

  /** The folder it uses. */
  get dir(): string {
    return remoteCacheDir(this.#config);
  }

  /** Whether it was opened. */
  get opened(): boolean {
    return this.#cache !== null;
  }

  /** Downloads in progress (none before the cache is opened). */
  downloads(): RemoteEntryInfo[] {
    return this.#opened?.list().filter((e) => e.state === "downloading") ?? [];
  }

  get(): Promise<RemoteCache> {
    this.#cache ??= RemoteCache.create({
      dir: this.dir,
      maxBytes: this.#config.CACHE_MAX,
      revalidateMs: this.#config.CACHE_REVALIDATE * 1000,
    }).then((cache) => (this.#opened = cache), (err) => {
      this.#cache = null; // try again at the next request (the disk may come back)
      throw err;
    });
    return this.#cache;
  }

  async close(): Promise<void> {
    const cache = this.#cache;
    this.#cache = null;
    this.#opened = null;
    if (cache !== null) await (await cache.catch(() => null))?.close();
  }
}
