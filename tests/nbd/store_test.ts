import { deepStrictEqual, equal, ok, rejects } from "node:assert/strict";
import {
  COW_BLOCK,
  COW_FILE_PREFIX,
  FileCowStore,
  MemoryBudget,
  MemoryCowStore,
  removeStaleCowFiles,
} from "../../src/nbd/cow.ts";
import { type BlockStore, FileStore, NbdStoreError, RamStore } from "../../src/nbd/store.ts";
import { NbdError } from "../../src/nbd/protocol.ts";
import { makeImage, type Rng, xorshift } from "./helpers.ts";

// an image size that is not a multiple of the COW block, so the last block is short
const SIZE = 5 * COW_BLOCK * 8 + 1234;

/** Random reads, writes, zero writes and trims at unaligned offsets, compared with a plain byte array. */
async function checkAgainstModel(store: BlockStore, model: Uint8Array, rng: Rng, ops: number): Promise<void> {
  for (let i = 0; i < ops; i++) {
    const kind = rng.below(10);
    // lengths from 1 byte to a few blocks, offsets anywhere, often straddling block edges
    const len = 1 + (rng.below(4) === 0 ? rng.below(3 * COW_BLOCK) : rng.below(700));
    const edge = rng.below(3) === 0;
    let off = edge ? Math.max(0, rng.below(SIZE / COW_BLOCK) * COW_BLOCK - rng.below(16)) : rng.below(SIZE);
    off = Math.min(off, SIZE - len);
    if (off < 0) continue;
    if (kind < 4) {
      const data = rng.bytes(len);
      await store.write(off, data);
      model.set(data, off);
    } else if (kind === 4) {
      await store.writeZeroes(off, len);
      model.fill(0, off, off + len);
    } else {
      const got = new Uint8Array(len);
      await store.read(off, got);
      deepStrictEqual(got, model.subarray(off, off + len), `op ${i}: read ${len}@${off}`);
    }
  }
  const all = new Uint8Array(SIZE);
  await store.read(0, all);
  deepStrictEqual(all, model);
}

Deno.test("nbd store: FileStore reads, writes and reports its size", async () => {
  const img = await makeImage({ size: SIZE, seed: 1 });
  try {
    const ro = FileStore.open({ path: img.path, writable: false });
    equal(ro.size, SIZE);
    equal(ro.writable, false);
    await rejects(
      ro.write(0, new Uint8Array(1)),
      (e: unknown) => e instanceof NbdStoreError && e.errno === 1,
    );
    const got = new Uint8Array(100);
    await ro.read(SIZE - 100, got);
    deepStrictEqual(got, img.data.subarray(SIZE - 100));
    ro.close();

    const rw = FileStore.open({ path: img.path, writable: true });
    const model = img.data.slice();
    await checkAgainstModel(rw, model, xorshift(2), 2000);
    await rw.flush();
    rw.close();
    deepStrictEqual(await Deno.readFile(img.path), model);
  } finally {
    await Deno.remove(img.dir, { recursive: true });
  }
});

Deno.test("nbd store: memory COW matches an independent model for random unaligned I/O", async () => {
  const img = await makeImage({ size: SIZE, seed: 3 });
  try {
    const base = FileStore.open({ path: img.path, writable: false });
    for (const seed of [11, 12, 13]) {
      const budget = new MemoryBudget(1 << 30);
      const cow = new MemoryCowStore({ base, budget });
      await checkAgainstModel(cow, img.data.slice(), xorshift(seed), 3000);
      ok(cow.blocks > 0);
      equal(budget.used, cow.blocks * COW_BLOCK);
      cow.close();
      equal(budget.used, 0);
    }
    base.close();
    deepStrictEqual(await Deno.readFile(img.path), img.data, "the base image is never written");
  } finally {
    await Deno.remove(img.dir, { recursive: true });
  }
});

Deno.test("nbd store: file COW matches the model; its file is gone", async () => {
  const img = await makeImage({ size: SIZE, seed: 4 });
  const state = await Deno.makeTempDir();
  try {
    const base = FileStore.open({ path: img.path, writable: false });
    for (const seed of [21, 22, 23]) {
      const cow = FileCowStore.create({ base, dir: state, tag: `t${seed}` });
      await checkAgainstModel(cow, img.data.slice(), xorshift(seed), 3000);
      equal([...Deno.readDirSync(state)].length, 0, "the overlay is unlinked while open (POSIX)");
      cow.close();
    }
    base.close();
    deepStrictEqual(await Deno.readFile(img.path), img.data);
    equal([...Deno.readDirSync(state)].length, 0);
  } finally {
    await Deno.remove(img.dir, { recursive: true });
    await Deno.remove(state, { recursive: true });
  }
});

Deno.test("nbd store: COW over a RAM copy, and a writable RAM copy", async () => {
  const img = await makeImage({ size: SIZE, seed: 5 });
  try {
    const file = FileStore.open({ path: img.path, writable: false });
    const ram = await RamStore.load({ source: file, writable: false });
    file.close();
    const cow = new MemoryCowStore({ base: ram, budget: new MemoryBudget(1 << 30) });
    await checkAgainstModel(cow, img.data.slice(), xorshift(31), 2000);
    cow.close();
    const all = new Uint8Array(SIZE);
    await ram.read(0, all);
    deepStrictEqual(all, img.data);
    await rejects(ram.write(0, new Uint8Array(1)), NbdStoreError);

    const file2 = FileStore.open({ path: img.path, writable: false });
    const rw = await RamStore.load({ source: file2, writable: true });
    file2.close();
    await checkAgainstModel(rw, img.data.slice(), xorshift(32), 2000);
    rw.close();
  } finally {
    await Deno.remove(img.dir, { recursive: true });
  }
});

Deno.test("nbd store: the memory budget refuses writes with ENOSPC before changing anything", async () => {
  const img = await makeImage({ size: SIZE, seed: 6 });
  try {
    const base = FileStore.open({ path: img.path, writable: false });
    const budget = new MemoryBudget(3 * COW_BLOCK);
    const a = new MemoryCowStore({ base, budget });
    const b = new MemoryCowStore({ base, budget });
    await a.write(10, new Uint8Array(COW_BLOCK)); // touches blocks 0 and 1
    await rejects(
      b.write(0, new Uint8Array(2 * COW_BLOCK)),
      (e: unknown) => e instanceof NbdStoreError && e.errno === NbdError.ENOSPC,
    );
    const got = new Uint8Array(2 * COW_BLOCK);
    await b.read(0, got);
    deepStrictEqual(got, img.data.subarray(0, 2 * COW_BLOCK), "a refused write leaves nothing behind");
    await b.write(0, new Uint8Array([1])); // one block still fits
    equal(budget.used, 3 * COW_BLOCK);
    await a.write(COW_BLOCK, new Uint8Array([9])); // an existing block needs no budget
    await a.trim(0, 2 * COW_BLOCK); // whole blocks dropped: budget returned
    equal(budget.used, COW_BLOCK);
    a.close();
    b.close();
    equal(budget.used, 0);
    base.close();
  } finally {
    await Deno.remove(img.dir, { recursive: true });
  }
});

Deno.test("nbd store: stale overlay files are removed, other files kept", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeFile(`${dir}/${COW_FILE_PREFIX}1-2-abc.img`, new Uint8Array(10));
    await Deno.writeFile(`${dir}/leases.json`, new Uint8Array(2));
    equal(removeStaleCowFiles(dir), 1);
    deepStrictEqual([...Deno.readDirSync(dir)].map((e) => e.name), ["leases.json"]);
    equal(removeStaleCowFiles(`${dir}/missing`), 0);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
