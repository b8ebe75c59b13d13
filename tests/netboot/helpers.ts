/**
 * The bed of the remote-cache tests: a RemoteCache in a temp dir, a real origin on loopback and the
 * cache's log lines, disposed together (`await using t = await remoteBed()`).
 */
import { RemoteCache, type RemoteCacheOptions } from "../../src/netboot/remote.ts";
import { memoryLog, OriginServer } from "../helpers/origin_server.ts";

export const MiB = 1 << 20;

/** A fresh cache (1 GB, 20 ms retry delay unless `opts` says otherwise) over a fresh origin. */
export async function remoteBed(opts: Partial<RemoteCacheOptions> = {}) {
  const dir = await Deno.makeTempDir({ prefix: "pypxe-remote-" });
  const origin = await OriginServer.start();
  const log = memoryLog();
  const cache = await RemoteCache.create({ dir, maxBytes: 1e9, log, retryDelayMs: 20, ...opts });
  return {
    dir,
    origin,
    log,
    cache,
    async [Symbol.asyncDispose]() {
      await cache.close();
      await origin.close();
      await Deno.remove(dir, { recursive: true });
    },
  };
}

/** The names in `dir`, sorted. */
export async function dirNames(dir: string): Promise<string[]> {
  const names: string[] = [];
  for await (const e of Deno.readDir(dir)) names.push(e.name);
  return names.sort();
}
