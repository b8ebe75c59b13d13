/**
 * Interrupted downloads: a cut connection resumes with Range + If-Range; an origin that ignores Range is
 * read again and its repeated bytes skipped; a body shorter than its Content-Length fails cleanly when the
 * origin has no more; a file that changes upstream mid-download fails; retries are bounded.
 */
import assert from "node:assert/strict";
import { type RemoteCacheOptions } from "../../src/netboot/remote.ts";
import { sha256 } from "../helpers/hash.ts";
import { hashReader, randomBytes } from "../helpers/origin_server.ts";
import { MiB, remoteBed } from "./helpers.ts";

const setup = (opts: Partial<RemoteCacheOptions> = {}) => remoteBed({ timeoutMs: 5000, ...opts });

Deno.test("remote: a connection cut mid-body is resumed with Range and If-Range; readers just wait", async () => {
  await using t = await setup();
  const body = randomBytes(8 * MiB);
  const route = t.origin.put("/initrd", body, { rate: 40e6, cut: { afterBytes: 3 * MiB + 5, times: 2 } });
  const files = await Promise.all([1, 2, 3].map(() => t.cache.open(t.origin.url("/initrd"))));
  const hashes = await Promise.all(files.map((f) => hashReader(f)));
  for (const h of hashes) assert.deepEqual(h, { sha256: sha256(body), length: body.length });
  const seen = t.origin.requests("/initrd");
  assert.equal(seen.length, 3, "one GET and two resumes");
  assert.equal(seen[0].range, null);
  const [, first, second] = seen.map((r) => Number(/^bytes=(\d+)-$/.exec(r.range ?? "")?.[1]));
  assert.ok(first > 0 && first <= 3 * MiB + 5, `first resume at ${first}`);
  assert.ok(second > first && second <= first + 3 * MiB + 5, `second resume at ${second}`);
  assert.deepEqual(seen.slice(1).map((r) => [r.ifRange, r.status]), [[route.etag, 206], [route.etag, 206]]);
  assert.equal(
    t.log.lines.filter((l) => l.startsWith("warn ") && l.includes("resuming at byte")).length,
    2,
  );
  for (const f of files) f.close();
  await t.cache.idle();
  assert.equal(t.cache.list()[0].state, "complete");
});

Deno.test("remote: an origin that ignores Range is read again from 0 and the bytes already held are skipped", async () => {
  await using t = await setup();
  const body = randomBytes(4 * MiB);
  t.origin.put("/noranges", body, { noRanges: true, cut: { afterBytes: MiB + 77, times: 1 } });
  using file = await t.cache.open(t.origin.url("/noranges"));
  assert.deepEqual(await hashReader(file, 65536), { sha256: sha256(body), length: body.length });
  const seen = t.origin.requests("/noranges");
  assert.equal(seen.length, 2);
  assert.match(seen[1].range ?? "", /^bytes=\d+-$/);
  assert.equal(seen[1].status, 200, "the whole body again");
  await file.done;
  assert.equal(file.sha256, sha256(body));
});

Deno.test("remote: a body shorter than its Content-Length fails when the origin has no more bytes (416)", async () => {
  await using t = await setup();
  const body = randomBytes(2 * MiB);
  t.origin.put("/liar", body, { lie: { extra: 1000, times: Infinity } });
  using file = await t.cache.open(t.origin.url("/liar"));
  assert.equal(file.size, body.length + 1000, "the size the origin announced");
  await assert.rejects(
    hashReader(file),
    /\/liar: the body was shorter than its Content-Length \(2097152 of 2098152 bytes\) and the origin has no more \(416\)/,
  );
  await assert.rejects(file.done, /shorter than its Content-Length/);
  assert.equal(file.complete, false);
  assert.deepEqual(t.origin.requests("/liar").map((r) => r.status), [200, 416]);
  await t.cache.idle();
  assert.deepEqual(t.cache.list().map((e) => e.state), ["failed"]);
  const names: string[] = [];
  for await (const e of Deno.readDir(t.dir)) names.push(e.name);
  assert.deepEqual(names, ["index.json"], "no partial file left");
});

Deno.test("remote: a short body that the origin completes on resume is served whole", async () => {
  await using t = await setup();
  const body = randomBytes(2 * MiB);
  t.origin.put("/short-once", body, { cut: { afterBytes: 100_000, times: 1 } });
  using file = await t.cache.open(t.origin.url("/short-once"));
  assert.equal((await hashReader(file)).sha256, sha256(body));
  assert.equal(t.origin.requests("/short-once")[1].range, "bytes=100000-");
});

Deno.test("remote: a file that changes upstream in the middle of a download fails instead of mixing versions", async () => {
  await using t = await setup({ retryDelayMs: 200 });
  const oldBody = randomBytes(2 * MiB);
  t.origin.put("/moving", oldBody, { cut: { afterBytes: MiB, times: 1 } });
  using file = await t.cache.open(t.origin.url("/moving"));
  t.origin.put("/moving", randomBytes(2 * MiB)); // a new ETag before the resume (200 ms back-off)
  await assert.rejects(hashReader(file), /\/moving: the file changed at the origin during the download/);
  const seen = t.origin.requests("/moving");
  assert.equal(seen[1].status, 200, "If-Range did not match: the whole new file");
  using fresh = await t.cache.open(t.origin.url("/moving"));
  assert.equal((await hashReader(fresh)).length, 2 * MiB, "the next open starts afresh");
});

Deno.test("remote: resumes are bounded: an origin that always cuts before any byte fails after maxRetries", async () => {
  await using t = await setup({ maxRetries: 3, retryDelayMs: 50 }); // the route changes before the first resume
  const body = randomBytes(MiB);
  t.origin.put("/flaky", body, { cut: { afterBytes: 200_000, times: 1 } });
  const route = t.origin.get("/flaky")!;
  using file = await t.cache.open(t.origin.url("/flaky"));
  route.cut = { afterBytes: 0, times: Infinity }; // every resume from now on gets no body byte
  await assert.rejects(hashReader(file), /\/flaky: the connection broke/);
  assert.equal(t.origin.count("/flaky"), 1 + 3, "the GET and 3 resumes");
  assert.ok(t.log.lines.some((l) => l.includes("attempt 3 of 3")));
});

Deno.test("remote: an origin that cuts every response after some progress still completes (progress resets the count)", async () => {
  await using t = await setup({ maxRetries: 1, retryDelayMs: 1 });
  const body = randomBytes(3 * MiB);
  t.origin.put("/trickle", body, { cut: { afterBytes: 512 * 1024, times: Infinity } });
  using file = await t.cache.open(t.origin.url("/trickle"));
  assert.equal((await hashReader(file)).sha256, sha256(body));
  assert.equal(t.origin.count("/trickle"), 6);
});
