/**
 * A small file can finish downloading (verified, renamed into place) between a reader joining the
 * download and opening its `.part`: that reader must get the stored file, not "not found".
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { remoteBed } from "./helpers.ts";

const sha256 = (b: Uint8Array) => createHash("sha256").update(b).digest("hex");

Deno.test("remote: readers of small files that finish before they open them get the stored file", async () => {
  await using t = await remoteBed();
  const refs = [];
  for (let i = 0; i < 100; i++) t.origin.put(`/f${i}`, new Uint8Array(2000 + i).fill(i));
  // each URL four times, spaced apart: later readers join a download that may be finishing
  for (let k = 0; k < 4; k++) {
    for (let i = 0; i < 100; i++) {
      refs.push({ url: t.origin.url(`/f${i}`), sha256: sha256(new Uint8Array(2000 + i).fill(i)) });
    }
  }
  const results = await t.cache.fetchAll(refs, () => {}, { concurrency: 40 });
  const failed = results.filter((r) => !r.ok);
  assert.deepEqual(failed, [], JSON.stringify(failed.slice(0, 3)));
  assert.equal(t.cache.list().filter((e) => e.hash === "verified").length, 100);
});
