/**
 * No thundering herd: 20 readers open a cold 100 MiB file at once from a throttled origin; the origin
 * sees exactly one GET and every reader gets the same bytes (sha256), half by read(), half by stream().
 */
import assert from "node:assert/strict";
import { RemoteCache } from "../../src/netboot/remote.ts";
import { sha256 } from "../helpers/hash.ts";
import { hashReader, hashStream, memoryLog, OriginServer, randomBytes } from "../helpers/origin_server.ts";

const MiB = 1 << 20;

Deno.test("remote: 20 concurrent readers of a cold 100 MiB file share one origin GET and get identical bytes", async () => {
  const dir = await Deno.makeTempDir({ prefix: "pypxe-remote-" });
  await using origin = await OriginServer.start();
  const body = randomBytes(100 * MiB);
  const want = sha256(body);
  origin.put("/big.iso", body, { rate: 150e6 }); // ~0.7 s upstream
  const url = origin.url("/big.iso");
  const cache = await RemoteCache.create({ dir, maxBytes: 1e9, log: memoryLog() });
  try {
    const started = performance.now();
    const files = await Promise.all(Array.from({ length: 20 }, () => cache.open(url)));
    const opened = performance.now() - started;
    assert.ok(files.every((f) => f.size === body.length && !f.complete));
    const results = await Promise.all(
      files.map((f, i) => i % 2 === 0 ? hashReader(f) : hashStream(f.stream(0, undefined, { close: true }))),
    );
    const elapsed = performance.now() - started;
    for (const r of results) assert.deepEqual(r, { sha256: want, length: body.length });
    assert.equal(origin.count("/big.iso"), 1, "exactly one upstream GET");
    assert.equal(origin.requests("/big.iso")[0].range, null);
    for (const f of files) f.close();
    await cache.idle();
    assert.equal(cache.list()[0].state, "complete");
    console.log(`20 readers: open ${opened.toFixed(0)} ms, all bytes ${elapsed.toFixed(0)} ms`);
  } finally {
    await cache.close();
    await Deno.remove(dir, { recursive: true });
  }
});
