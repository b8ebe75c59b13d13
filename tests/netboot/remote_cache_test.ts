/**
 * RemoteCache against a real HTTP origin on loopback: cold and warm fetches, origin errors, redirects,
 * refused schemes, timeouts, listing, fetchAll and the index across restarts.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { RemoteCache, type RemoteCacheOptions, RemoteError, remoteKey } from "../../src/netboot/remote.ts";
import { sha256 } from "../helpers/hash.ts";
import { hashReader, hashStream, memoryLog, OriginServer, randomBytes } from "../helpers/origin_server.ts";
import { dirNames, MiB, remoteBed } from "./helpers.ts";

const setup = (opts: Partial<RemoteCacheOptions> = {}) => remoteBed({ timeoutMs: 5000, ...opts });

Deno.test("remote: cold fetch gives the origin's bytes, then the held copy without a request", async () => {
  await using t = await setup();
  const body = randomBytes(3 * MiB + 123);
  t.origin.put("/vmlinuz", body, { rate: 30e6 }); // ~0.1 s: still downloading when open resolves
  const url = t.origin.url("/vmlinuz");

  const first = await t.cache.open(url);
  assert.equal(first.size, body.length, "size from Content-Length before the body is read");
  assert.equal(first.complete, false);
  assert.equal(first.path, null);
  assert.deepEqual(await hashReader(first), { sha256: sha256(body), length: body.length });
  await first.done;
  assert.equal(first.complete, true);
  assert.equal(first.path, join(t.dir, remoteKey(url)));
  assert.equal(first.sha256, sha256(body));
  assert.equal(first.etag, t.origin.get("/vmlinuz")!.etag);
  first.close();

  using second = await t.cache.open(url);
  assert.equal(second.complete, true);
  assert.deepEqual(await hashStream(second.stream()), { sha256: sha256(body), length: body.length });
  assert.deepEqual(await hashStream(second.stream(1000, 5000)), {
    sha256: sha256(body.subarray(1000, 5000)),
    length: 4000,
  });
  const held = await second.openHeld();
  assert.ok(held !== null);
  assert.equal((await held.stat()).size, body.length);
  held.close();
  assert.equal(t.origin.count("/vmlinuz"), 1);
  assert.equal(t.origin.requests("/vmlinuz")[0].range, null);
  assert.deepEqual(await dirNames(t.dir), [remoteKey(url), "index.json"].sort());
  const [entry] = t.cache.list();
  assert.equal(entry.state, "complete");
  assert.equal(entry.hash, "unverified");
  assert.equal(entry.size, body.length);
  assert.ok(t.log.lines.some((l) => l.startsWith("info fetching ") && l.includes("/vmlinuz")));
});

Deno.test("remote: reads past the end give 0, a read waits for bytes still downloading", async () => {
  await using t = await setup();
  const body = randomBytes(2 * MiB);
  t.origin.put("/slow", body, { rate: 8e6 }); // ~0.26 s
  using file = await t.cache.open(t.origin.url("/slow"));
  const buf = new Uint8Array(4096);
  const n = await file.read(2 * MiB - 4096 - 1, buf);
  assert.equal(n, 4096);
  assert.deepEqual(buf, body.subarray(2 * MiB - 4097, 2 * MiB - 1));
  assert.equal(await file.read(2 * MiB - 10, buf), 10, "the last bytes: short read at the end");
  assert.equal(file.complete, true, "the read that reaches the end waits for completion");
  assert.equal(await file.read(2 * MiB, buf), 0);
  assert.equal(await file.read(3 * MiB, buf), 0);
});

Deno.test("remote: 404 and 500 reject open with the URL and status, nothing is kept, no retry", async () => {
  await using t = await setup();
  t.origin.route("/boom", { status: 500 });
  const missing = t.origin.url("/missing");
  await assert.rejects(t.cache.open(missing), (err: unknown) => {
    assert.ok(err instanceof RemoteError);
    assert.equal(err.code, "status");
    assert.equal(err.status, 404);
    assert.match(err.message, new RegExp(`${missing}: the origin answered 404`));
    return true;
  });
  await assert.rejects(t.cache.open(t.origin.url("/boom")), /\/boom: the origin answered 500/);
  assert.equal(t.origin.count("/boom"), 1);
  await t.cache.idle();
  assert.deepEqual(await dirNames(t.dir), ["index.json"]);
  const failed = t.cache.list().filter((e) => e.state === "failed");
  assert.equal(failed.length, 2);
  assert.ok(t.log.lines.some((l) => l.startsWith("warn download failed: ") && l.includes("404")));
});

Deno.test("remote: redirects are followed, loops and long chains are refused with the chain named", async () => {
  await using t = await setup({ maxRedirects: 5 });
  const body = randomBytes(100_000);
  t.origin.put("/real", body);
  t.origin.route("/r1", { redirect: "/r2" });
  t.origin.route("/r2", { redirect: t.origin.url("/real") });
  using file = await t.cache.open(t.origin.url("/r1"));
  assert.equal((await hashReader(file)).sha256, sha256(body));

  t.origin.route("/a", { redirect: "/b" });
  t.origin.route("/b", { redirect: "/a" });
  await assert.rejects(t.cache.open(t.origin.url("/a")), (err: unknown) => {
    assert.ok(err instanceof RemoteError && err.code === "redirects");
    assert.match(err.message, /redirect loop: .*\/a -> .*\/b -> .*\/a$/);
    return true;
  });
  for (let i = 0; i < 8; i++) t.origin.route(`/c${i}`, { redirect: `/c${i + 1}` });
  await assert.rejects(t.cache.open(t.origin.url("/c0")), /more than 5 redirects/);
  assert.equal(t.origin.count("/c6"), 0, "stops after 5 redirects");
  t.origin.route("/ftp", { redirect: "ftp://127.0.0.1/file" });
  await assert.rejects(t.cache.open(t.origin.url("/ftp")), (err: unknown) => {
    assert.ok(err instanceof RemoteError && err.code === "scheme");
    assert.match(
      err.message,
      /redirects to: "ftp:\/\/127\.0\.0\.1\/file" is not an http:\/\/ or https:\/\/ URL/,
    );
    return true;
  });
});

Deno.test("remote: non-HTTP schemes and bad sha256 are refused before any request", async () => {
  await using t = await setup();
  await assert.rejects(t.cache.open("ftp://127.0.0.1/x"), /is not an http:\/\/ or https:\/\/ URL/);
  await assert.rejects(t.cache.open("file:///etc/passwd"), /is not an http:\/\/ or https:\/\/ URL/);
  await assert.rejects(t.cache.open(t.origin.url("/x"), { sha256: "abc" }), /is not 64 hex digits/);
  assert.equal(t.origin.requests().length, 0);
});

Deno.test("remote: an origin that stalls times out, is resumed, and fails cleanly when it always stalls", async () => {
  await using t = await setup({ timeoutMs: 300, maxRetries: 1 });
  const body = randomBytes(MiB);
  t.origin.put("/stall-once", body, { stall: { afterBytes: 300_000, times: 1 } });
  using file = await t.cache.open(t.origin.url("/stall-once"));
  assert.equal((await hashReader(file)).sha256, sha256(body));
  assert.equal(t.origin.requests("/stall-once")[1].range, "bytes=300000-");

  t.origin.put("/stall", body, { stall: { afterBytes: 0, times: Infinity } });
  using stuck = await t.cache.open(t.origin.url("/stall"));
  await assert.rejects(hashReader(stuck), /\/stall: no body bytes from the origin for 300 ms/);
  assert.equal(t.origin.count("/stall"), 2, "one try and one resume (maxRetries 1)");
});

Deno.test("remote: an unreachable origin rejects open with a clear error", async () => {
  await using t = await setup();
  const url = t.origin.url("/gone");
  await t.origin.close();
  await assert.rejects(t.cache.open(url), (err: unknown) => {
    assert.ok(err instanceof RemoteError && err.code === "network");
    assert.match(err.message, /\/gone: cannot reach the origin: /);
    return true;
  });
});

Deno.test("remote: a reader that goes away does not stop the download; list shows it in progress", async () => {
  await using t = await setup();
  const body = randomBytes(4 * MiB);
  t.origin.put("/iso", body, { rate: 16e6 }); // ~0.26 s
  const url = t.origin.url("/iso");
  const file = await t.cache.open(url);
  await file.read(0, new Uint8Array(4096));
  const [running] = t.cache.list();
  assert.equal(running.state, "downloading");
  assert.equal(running.size, body.length);
  assert.equal(running.hash, "pending");
  file.close();
  await t.cache.idle();
  assert.equal(t.cache.list()[0].state, "complete");
  using again = await t.cache.open(url);
  assert.equal(again.complete, true);
  assert.equal((await hashReader(again)).sha256, sha256(body));
  assert.equal(t.origin.count("/iso"), 1);
});

Deno.test("remote: fetchAll pre-fetches every URL, reports progress, and a failure only fails its URL", async () => {
  await using t = await setup();
  const a = randomBytes(2 * MiB);
  const b = randomBytes(10_000);
  t.origin.put("/a", a, { rate: 10e6 });
  t.origin.put("/b", b);
  const seen: string[] = [];
  const results = await t.cache.fetchAll(
    [t.origin.url("/a"), { url: t.origin.url("/b"), sha256: sha256(b) }, t.origin.url("/nope")],
    (p) => seen.push(`${new URL(p.url).pathname} ${p.state}`),
    { progressMs: 20 },
  );
  assert.deepEqual(results.map((r) => r.ok), [true, true, false], JSON.stringify(results));
  assert.equal(results[0].sha256, sha256(a));
  assert.equal(results[1].kept, true);
  assert.equal(results[0].cached, false);
  assert.match(results[2].error!, /\/nope: the origin answered 404/);
  assert.ok(seen.includes("/a downloading"), seen.join(", "));
  assert.ok(seen.includes("/a complete") && seen.includes("/b complete") && seen.includes("/nope failed"));
  const again = await t.cache.fetchAll([t.origin.url("/a")]);
  assert.equal(again[0].cached, true);
  const hashes = Object.fromEntries(t.cache.list().map((e) => [new URL(e.url).pathname, e.hash]));
  assert.deepEqual(hashes, { "/a": "unverified", "/b": "verified", "/nope": "none" });
});

Deno.test("remote: the index survives a restart; leftovers of a crash are removed; a corrupt index starts empty", async () => {
  const dir = await Deno.makeTempDir({ prefix: "pypxe-remote-" });
  await using origin = await OriginServer.start();
  const body = randomBytes(500_000);
  origin.put("/kernel", body);
  const url = origin.url("/kernel");
  try {
    const log = memoryLog();
    const first = await RemoteCache.create({ dir, maxBytes: 1e9, log });
    await first.fetchAll([url]);
    await first.close();

    const stray = "ab".repeat(32);
    await Deno.writeTextFile(join(dir, `${stray}.7.part`), "half");
    await Deno.writeTextFile(join(dir, stray), "orphan");
    await Deno.writeTextFile(join(dir, "notes.txt"), "not ours");
    const second = await RemoteCache.create({ dir, maxBytes: 1e9, log });
    using file = await second.open(url);
    assert.equal(file.complete, true);
    assert.equal((await hashReader(file)).sha256, sha256(body));
    assert.equal(origin.count("/kernel"), 1);
    await second.close();
    assert.deepEqual(await dirNames(dir), [remoteKey(url), "index.json", "notes.txt"].sort());

    await Deno.writeTextFile(join(dir, "index.json"), "{not json");
    const third = await RemoteCache.create({ dir, maxBytes: 1e9, log });
    assert.deepEqual(third.list(), []);
    assert.ok(log.lines.some((l) => l.includes("is unreadable") && l.includes("starting empty")));
    await third.close();
    assert.deepEqual(await dirNames(dir), ["index.json", "notes.txt"], "the unindexed copy is removed");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("remote: closing the cache stops its downloads; waiting readers get a clear error", async () => {
  const dir = await Deno.makeTempDir({ prefix: "pypxe-remote-" });
  await using origin = await OriginServer.start();
  origin.put("/slow", randomBytes(8 * MiB), { rate: 4e6 });
  const cache = await RemoteCache.create({ dir, maxBytes: 1e9, log: memoryLog() });
  try {
    using file = await cache.open(origin.url("/slow"));
    const reading = hashReader(file);
    const started = performance.now();
    await cache.close();
    assert.ok(performance.now() - started < 2000, "close does not wait for the download");
    await assert.rejects(reading, (err: unknown) => err instanceof RemoteError && err.code === "closed");
    await assert.rejects(cache.open(origin.url("/slow")), /the remote cache is closed/);
    assert.deepEqual(await dirNames(dir), ["index.json"]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
