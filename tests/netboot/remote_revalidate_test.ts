/**
 * Later opens of a held file: conditional revalidation at most every revalidateMs (injected clock), in the
 * background while the held copy is served; 304 keeps it, 200 swaps in the new version; an unreachable or
 * failing origin keeps serving the stale copy and says so once; a sha256-pinned file is never revalidated.
 */
import assert from "node:assert/strict";
import { type RemoteCacheOptions } from "../../src/netboot/remote.ts";
import { sha256 } from "../helpers/hash.ts";
import { hashReader, randomBytes } from "../helpers/origin_server.ts";
import { remoteBed } from "./helpers.ts";

const HOUR = 3_600_000;

async function setup(opts: Partial<RemoteCacheOptions> = {}) {
  const clock = { now: 1_700_000_000_000 };
  const bed = await remoteBed({ timeoutMs: 2000, now: () => clock.now, ...opts });
  return Object.assign(bed, { clock });
}

Deno.test("remote: revalidation at most every revalidateMs; 304 keeps the held copy", async () => {
  await using t = await setup();
  const body = randomBytes(300_000);
  const route = t.origin.put("/vmlinuz", body);
  const url = t.origin.url("/vmlinuz");
  await t.cache.fetchAll([url]);

  t.clock.now += 10 * 60_000;
  (await t.cache.open(url)).close();
  await t.cache.idle();
  assert.equal(t.origin.count("/vmlinuz"), 1, "fresh: no request");

  t.clock.now += 2 * HOUR;
  using file = await t.cache.open(url);
  assert.equal(file.complete, true, "served from the cache at once");
  await t.cache.idle();
  assert.equal(t.origin.count("/vmlinuz"), 2);
  assert.equal(t.origin.conditionalCount("/vmlinuz"), 1);
  const check = t.origin.requests("/vmlinuz")[1];
  assert.equal(check.ifNoneMatch, route.etag);
  assert.equal(check.ifModifiedSince, route.lastModified!.toUTCString());
  assert.equal(check.status, 304);
  assert.equal((await hashReader(file)).sha256, sha256(body));

  (await t.cache.open(url)).close();
  t.clock.now += HOUR - 1;
  (await t.cache.open(url)).close();
  await t.cache.idle();
  assert.equal(t.origin.count("/vmlinuz"), 2, "checked less than revalidateMs ago");
  assert.equal(t.cache.list()[0].checkedAt, t.clock.now - (HOUR - 1));
  t.clock.now += 1;
  (await t.cache.open(url)).close();
  await t.cache.idle();
  assert.equal(t.origin.conditionalCount("/vmlinuz"), 2);
});

Deno.test("remote: a 200 at revalidation downloads the new version; readers of the old copy keep it", async () => {
  await using t = await setup();
  const oldBody = randomBytes(2 << 20);
  const newBody = randomBytes(1 << 20);
  t.origin.put("/initrd", oldBody);
  const url = t.origin.url("/initrd");
  await t.cache.fetchAll([url]);
  t.origin.put("/initrd", newBody, { rate: 20e6 });

  t.clock.now += 2 * HOUR;
  using old = await t.cache.open(url);
  assert.equal(old.size, oldBody.length);
  let listed = false;
  for (let i = 0; i < 400 && !listed; i++) {
    listed = t.cache.list().some((e) => e.replacing && e.state === "downloading");
    if (!listed) await new Promise((r) => setTimeout(r, 5));
  }
  assert.ok(listed, "the replacement download is listed while it runs");
  await t.cache.idle();
  assert.deepEqual(t.origin.requests("/initrd").map((r) => r.status), [200, 200]);
  assert.equal(t.origin.conditionalCount("/initrd"), 1);
  assert.equal((await hashReader(old)).sha256, sha256(oldBody), "the old reader still reads the old bytes");
  assert.equal(await old.openHeld(), null, "its path now holds another version");

  using fresh = await t.cache.open(url);
  assert.equal(fresh.complete, true);
  assert.equal((await hashReader(fresh)).sha256, sha256(newBody));
  assert.equal(t.origin.count("/initrd"), 2);
  assert.ok(t.log.lines.some((l) => l.includes("changed at the origin; fetching the new version")));
  assert.equal(t.cache.list().length, 1);
});

Deno.test("remote: offline with a warm cache: served, and the stale copy is logged once", async () => {
  await using t = await setup();
  const body = randomBytes(500_000);
  t.origin.put("/menu.iso", body);
  const url = t.origin.url("/menu.iso");
  await t.cache.fetchAll([url]);
  await t.origin.close();

  for (let i = 0; i < 3; i++) {
    t.clock.now += 2 * HOUR;
    using file = await t.cache.open(url);
    assert.equal(file.complete, true);
    assert.equal((await hashReader(file)).sha256, sha256(body));
    await t.cache.idle();
  }
  const stale = t.log.lines.filter((l) => l.includes("serving the cached copy"));
  assert.equal(stale.length, 1, stale.join("\n"));
  assert.match(
    stale[0],
    /^warn cannot revalidate http:\/\/127\.0\.0\.1:\d+\/menu\.iso \(.*cannot reach the origin.*\); serving the cached copy fetched 2\.0 h ago$/,
  );
});

Deno.test("remote: a 5xx at revalidation keeps the stale copy; a later 304 ends the stale episode", async () => {
  await using t = await setup();
  const body = randomBytes(100_000);
  const route = t.origin.put("/k", body);
  const url = t.origin.url("/k");
  await t.cache.fetchAll([url]);
  t.origin.route("/k", { status: 503 });
  t.clock.now += 2 * HOUR;
  (await t.cache.open(url)).close();
  await t.cache.idle();
  assert.equal(
    t.log.lines.filter((l) => l.includes("answered 503") && l.includes("serving the cached copy")).length,
    1,
  );
  t.origin.route("/k", route);
  t.clock.now += 2 * HOUR;
  (await t.cache.open(url)).close();
  await t.cache.idle();
  assert.equal(t.origin.requests("/k").at(-1)!.status, 304);
  t.origin.route("/k", { status: 500 });
  t.clock.now += 2 * HOUR;
  using file = await t.cache.open(url);
  await t.cache.idle();
  assert.equal(
    t.log.lines.filter((l) => l.includes("serving the cached copy")).length,
    2,
    "logged again: a new episode",
  );
  assert.equal((await hashReader(file)).sha256, sha256(body));
});

Deno.test("remote: a file whose sha256 matched is pinned: never revalidated", async () => {
  await using t = await setup();
  const body = randomBytes(100_000);
  t.origin.put("/pinned", body);
  const url = t.origin.url("/pinned");
  await t.cache.fetchAll([{ url, sha256: sha256(body) }]);
  t.clock.now += 50 * HOUR;
  using file = await t.cache.open(url, { sha256: sha256(body) });
  using unpinnedOpen = await t.cache.open(url);
  await t.cache.idle();
  assert.equal(t.origin.count("/pinned"), 1);
  assert.equal(file.complete && unpinnedOpen.complete, true);
});
