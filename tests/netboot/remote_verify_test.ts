/**
 * Nothing unverified or partial is ever served as complete: a sha256 mismatch rejects every reader and
 * keeps nothing; failing writes (an injected writer, and a real full tmpfs in a private mount namespace)
 * fail the download cleanly while the cache keeps working.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { type RemoteCacheOptions, RemoteError, type RemoteWriter } from "../../src/netboot/remote.ts";
import { sha256 } from "../helpers/hash.ts";
import { hashReader, hashStream, OriginServer, randomBytes } from "../helpers/origin_server.ts";
import { missingTools, needsRoot, requires } from "../helpers/tools.ts";
import { dirNames, MiB, remoteBed } from "./helpers.ts";

const setup = (opts: Partial<RemoteCacheOptions> = {}) => remoteBed(opts);

Deno.test("remote: sha256 mismatch rejects every reader before the last bytes, keeps nothing, next open re-downloads", async () => {
  await using t = await setup();
  const served = randomBytes(3 * MiB); // the origin serves other bytes than the pinned ones
  const pinned = sha256(randomBytes(16));
  t.origin.put("/kernel", served, { rate: 20e6 });
  const url = t.origin.url("/kernel");
  const files = await Promise.all([0, 1, 2].map(() => t.cache.open(url, { sha256: pinned })));
  const outcomes = await Promise.allSettled([
    hashReader(files[0]),
    hashStream(files[1].stream()),
    hashReader(files[2], 512),
  ]);
  for (const o of outcomes) {
    assert.equal(o.status, "rejected");
    assert.match(String(o.reason), new RegExp(`sha256 mismatch: expected ${pinned} got ${sha256(served)}`));
  }
  assert.ok(files.every((f) => !f.complete && f.path === null));
  for (const f of files) f.close();
  await t.cache.idle();
  assert.deepEqual(await dirNames(t.dir), ["index.json"], "no partial or complete file");
  const [entry] = t.cache.list();
  assert.equal(entry.state, "failed");
  assert.equal(entry.hash, "mismatch");
  assert.ok(
    t.log.lines.some((l) => l.startsWith("error download failed: ") && l.includes("sha256 mismatch")),
  );
  const index = JSON.parse(await Deno.readTextFile(join(t.dir, "index.json")));
  assert.deepEqual(index.entries, []);

  using good = await t.cache.open(url, { sha256: sha256(served) });
  assert.equal((await hashReader(good)).sha256, sha256(served));
  await good.done;
  assert.equal(t.origin.count("/kernel"), 2, "re-downloaded after the mismatch");
  assert.equal(t.cache.list()[0].hash, "verified");
});

Deno.test("remote: the last bytes wait for verification: a reader never sees the whole body of a mismatching file", async () => {
  await using t = await setup({ timeoutMs: 300 });
  const served = randomBytes(MiB);
  // all but the last byte, then silence: the cache times out and resumes for the last byte
  t.origin.put("/small", served, { stall: { afterBytes: MiB - 1, times: 1 } });
  using file = await t.cache.open(t.origin.url("/small"), { sha256: "0".repeat(64) });
  const buf = new Uint8Array(MiB - 1);
  assert.equal(await file.read(0, buf), MiB - 1, "bytes before the end may be read while downloading");
  assert.equal(file.complete, false);
  await assert.rejects(file.read(MiB - 1, new Uint8Array(10)), /sha256 mismatch/);
  assert.equal(t.origin.requests("/small")[1].range, `bytes=${MiB - 1}-`);
});

Deno.test("remote: a held file opened with another sha256 is downloaded again and checked", async () => {
  await using t = await setup();
  const body = randomBytes(200_000);
  t.origin.put("/pin", body);
  const url = t.origin.url("/pin");
  await t.cache.fetchAll([url]);
  await assert.rejects(async () => {
    using f = await t.cache.open(url, { sha256: "1".repeat(64) });
    await hashReader(f);
  }, /sha256 mismatch/);
  assert.equal(t.origin.count("/pin"), 2);
  using held = await t.cache.open(url);
  assert.equal(held.complete, true, "the old copy is still held for openers without a pin");
});

Deno.test("remote: a failing write (disk full) fails the download cleanly and the cache keeps working", async () => {
  let failNext = true;
  const openWriter = async (path: string): Promise<RemoteWriter> => {
    const file = await Deno.open(path, { write: true, create: true, truncate: true });
    const failing = failNext;
    failNext = false;
    let written = 0;
    return {
      write(bytes) {
        if (failing && written > MiB) {
          return Promise.reject(new Error("No space left on device (os error 28)"));
        }
        written += bytes.length;
        return file.write(bytes);
      },
      close: () => file.close(),
    };
  };
  await using t = await setup({ openWriter });
  const body = randomBytes(4 * MiB);
  t.origin.put("/big", body, { rate: 40e6 });
  const url = t.origin.url("/big");
  using file = await t.cache.open(url);
  await assert.rejects(hashReader(file), (err: unknown) => {
    assert.ok(err instanceof RemoteError && err.code === "write");
    assert.match(
      err.message,
      /\/big: cannot write the cache file .*\.part: No space left on device \(os error 28\)/,
    );
    return true;
  });
  await t.cache.idle();
  assert.deepEqual(await dirNames(t.dir), ["index.json"]);
  assert.ok(
    t.log.lines.some((l) => l.startsWith("error download failed: ") && l.includes("No space left")),
  );
  using again = await t.cache.open(url);
  assert.equal((await hashReader(again)).sha256, sha256(body));
});

const CHILD = `
import { RemoteCache } from ${JSON.stringify(new URL("../../src/netboot/remote.ts", import.meta.url).href)};
const [dir, bigUrl, smallUrl] = Deno.args;
const lines = [];
const log = { debug() {}, info: (m) => lines.push(m), warn: (m) => lines.push(m), error: (m) => lines.push(m) };
const cache = await RemoteCache.create({ dir, maxBytes: 1e9, log });
const out = {};
try {
  const f = await cache.open(bigUrl);
  try {
    const buf = new Uint8Array(1 << 20);
    for (let off = 0; ; off += buf.length) if (await f.read(off, buf) < buf.length) break;
    out.big = "served";
  } finally {
    f.close(); // a reader's handle keeps the removed .part's blocks until it is closed
  }
} catch (err) {
  out.big = String(err.message);
}
await cache.idle();
out.afterBig = [...Deno.readDirSync(dir)].map((e) => e.name).sort();
const small = await cache.open(smallUrl);
await small.done;
out.small = small.sha256;
small.close();
await cache.close();
out.log = lines;
console.log(JSON.stringify(out));
`;

Deno.test(requires(needsRoot() ?? missingTools("unshare", "mount"), {
  name:
    "remote: a real full disk (2 MiB tmpfs in a private mount namespace) fails the download, then a small file fits",
  async fn() {
    await using origin = await OriginServer.start();
    const big = randomBytes(6 * MiB);
    const small = randomBytes(300_000);
    origin.put("/big.iso", big);
    origin.put("/small", small);
    const mnt = await Deno.makeTempDir({ prefix: "pypxe-remote-tmpfs-" });
    try {
      const script = `mount -t tmpfs -o size=2m pypxe-test "$1" && shift && exec "$@"`;
      const cmd = new Deno.Command("unshare", {
        args: [
          "-m",
          "--propagation",
          "private",
          "sh",
          "-c",
          script,
          "sh",
          mnt,
          Deno.execPath(),
          "eval",
          "--ext=ts",
          CHILD,
          join(mnt, "cache"),
          origin.url("/big.iso"),
          origin.url("/small"),
        ],
        stdout: "piped",
        stderr: "piped",
        env: { NO_COLOR: "1" },
      });
      const out = await cmd.output();
      const stderr = new TextDecoder().decode(out.stderr);
      assert.equal(out.code, 0, stderr);
      const result = JSON.parse(new TextDecoder().decode(out.stdout).trim().split("\n").pop()!);
      assert.match(result.big, /\/big\.iso: cannot write the cache file .*\.part: No space left on device/);
      assert.deepEqual(result.afterBig, ["index.json"], "the partial file is removed");
      assert.equal(result.small, sha256(small), "the cache still works once the space is back");
      assert.ok(
        result.log.some((l: string) => l.startsWith("download failed: ") && l.includes("No space left")),
      );
      assert.deepEqual([...Deno.readDirSync(mnt)], [], "the tmpfs lived only in the child's namespace");
    } finally {
      await Deno.remove(mnt, { recursive: true });
    }
  },
}));
