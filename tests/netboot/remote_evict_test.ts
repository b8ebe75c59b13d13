/**
 * Least-recently-used eviction at maxBytes: the oldest idle file goes first, a file being read is kept,
 * a lower maxBytes at start-up evicts, and a file larger than maxBytes is served but not kept.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { RemoteCache, type RemoteCacheOptions, remoteKey } from "../../src/netboot/remote.ts";
import { sha256 } from "../helpers/hash.ts";
import { hashReader, randomBytes } from "../helpers/origin_server.ts";
import { MiB, remoteBed } from "./helpers.ts";

async function setup(opts: Partial<RemoteCacheOptions> = {}) {
  const clock = { now: 1_700_000_000_000 };
  const tick = () => (clock.now += 1000);
  const bed = await remoteBed({ maxBytes: 3 * MiB, retryDelayMs: 500, now: tick, ...opts });
  for (const name of ["a", "b", "c", "d", "e"]) bed.origin.put(`/${name}`, randomBytes(MiB));
  return Object.assign(bed, {
    clock,
    held: () => t_held(bed.cache),
    async use(name: string) {
      (await bed.cache.open(bed.origin.url(`/${name}`))).close();
      await bed.cache.idle();
    },
  });
}

function t_held(cache: RemoteCache): string[] {
  return cache.list().filter((e) => e.state === "complete").map((e) => new URL(e.url).pathname).sort();
}

async function exists(path: string): Promise<boolean> {
  return await Deno.stat(path).then(() => true, () => false);
}

Deno.test("remote: at maxBytes the least recently used file is evicted", async () => {
  await using t = await setup();
  await t.cache.fetchAll(["/a", "/b", "/c"].map((p) => t.origin.url(p)), undefined, { concurrency: 1 });
  assert.deepEqual(t.held(), ["/a", "/b", "/c"]);
  await t.use("a"); // b is now the least recently used
  await t.cache.fetchAll([t.origin.url("/d")]);
  await t.cache.idle();
  assert.deepEqual(t.held(), ["/a", "/c", "/d"]);
  assert.equal(await exists(join(t.dir, remoteKey(t.origin.url("/b")))), false);
  assert.equal(t.cache.totalBytes, 3 * MiB);
  assert.ok(
    t.log.lines.some((l) => /^info evicted http:\/\/.*\/b \(1\.0 MB, least recently used\)$/.test(l)),
  );
  const index = JSON.parse(await Deno.readTextFile(join(t.dir, "index.json")));
  assert.deepEqual(index.entries.map((e: { url: string }) => new URL(e.url).pathname).sort(), [
    "/a",
    "/c",
    "/d",
  ]);
});

Deno.test("remote: a file being read is never evicted; the next idle one goes instead", async () => {
  await using t = await setup();
  await t.cache.fetchAll(["/a", "/b", "/c"].map((p) => t.origin.url(p)), undefined, { concurrency: 1 });
  const reader = await t.cache.open(t.origin.url("/a")); // a: in use
  await t.use("b");
  await t.use("c");
  await t.use("b"); // LRU order: a (in use), c, b
  await t.cache.fetchAll([t.origin.url("/d")]);
  await t.cache.idle();
  assert.deepEqual(t.held(), ["/a", "/b", "/d"]);
  assert.equal((await hashReader(reader)).length, MiB);
  reader.close();
  await t.cache.idle();
  assert.deepEqual(t.held(), ["/a", "/b", "/d"], "within maxBytes: nothing more goes");
});

Deno.test("remote: when every file is in use the cache goes over maxBytes, and comes back when readers close", async () => {
  await using t = await setup();
  const readers = [];
  for (const p of ["/a", "/b", "/c", "/d"]) {
    const f = await t.cache.open(t.origin.url(p));
    await f.done;
    readers.push(f);
  }
  await t.cache.idle();
  assert.equal(t.cache.totalBytes, 4 * MiB, "nothing idle to evict");
  for (const f of readers) f.close();
  await t.cache.idle();
  assert.equal(t.cache.totalBytes, 3 * MiB);
  assert.deepEqual(t.held(), ["/b", "/c", "/d"]);
});

Deno.test("remote: a smaller maxBytes at start-up evicts the least recently used files", async () => {
  await using t = await setup();
  await t.cache.fetchAll(["/a", "/b", "/c"].map((p) => t.origin.url(p)), undefined, { concurrency: 1 });
  await t.use("a");
  await t.cache.close();
  const again = await RemoteCache.create({ dir: t.dir, maxBytes: 1.5 * MiB, log: t.log });
  assert.deepEqual(t_held(again), ["/a"]);
  await again.close();
});

Deno.test("remote: a file larger than maxBytes is served to its readers but not kept", async () => {
  await using t = await setup({ maxBytes: MiB / 2 });
  const body = randomBytes(2 * MiB);
  t.origin.put("/huge.iso", body);
  const url = t.origin.url("/huge.iso");
  const [one, two] = await Promise.all([t.cache.open(url), t.cache.open(url)]);
  assert.equal((await hashReader(one)).sha256, sha256(body));
  await one.done;
  assert.equal(one.complete, true);
  assert.equal(one.path, null, "no held file to serve from");
  one.close();
  await t.cache.idle();
  assert.equal((await hashReader(two)).sha256, sha256(body), "the other reader still has its bytes");
  two.close();
  await t.cache.idle();
  const names: string[] = [];
  for await (const e of Deno.readDir(t.dir)) names.push(e.name);
  assert.deepEqual(names, ["index.json"], "the .part is removed with its last reader");
  assert.ok(t.log.lines.some((l) => l.includes("is larger than the cache") && l.includes("not kept")));
  const results = await t.cache.fetchAll([url]);
  assert.equal(results[0].ok, true);
  assert.equal(results[0].kept, false);
  assert.equal(t.origin.count("/huge.iso"), 2);
});
