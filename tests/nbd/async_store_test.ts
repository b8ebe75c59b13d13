/**
 * The stores' asynchronous I/O (issue 15 item 7): many requests at once never race on a file offset, a
 * large request gives the event loop turns, overlays apply concurrent writes one at a time, the handle
 * pool stays bounded and never mixes in a file replaced on disk, and closing under I/O leaks nothing.
 */
import { deepStrictEqual, equal, ok } from "node:assert/strict";
import { NbdCmd } from "../../src/nbd/protocol.ts";
import { COW_BLOCK, FileCowStore, MemoryBudget, MemoryCowStore } from "../../src/nbd/cow.ts";
import { FileStore, IO_CHUNK, MAX_HANDLES, NbdStoreError } from "../../src/nbd/store.ts";
import { makeImage, RawClient, seededBytes, withServer, xorshift } from "./helpers.ts";

const SIZE = 6 * IO_CHUNK + 777;

const test = (name: string, fn: () => Promise<void>) =>
  Deno.test({ name: `nbd async store: ${name}`, sanitizeResources: true, sanitizeOps: true, fn });

/** Random ranges of the image, some longer than one I/O piece. */
function ranges(seed: number, count: number): { offset: number; length: number }[] {
  const rng = xorshift(seed);
  const out = [];
  for (let i = 0; i < count; i++) {
    const length = 1 + (i % 5 === 0 ? rng.below(3 * IO_CHUNK) : rng.below(70_000));
    out.push({ offset: rng.below(SIZE - length), length });
  }
  return out;
}

test("200 concurrent reads at random offsets each get their own bytes", async () => {
  const img = await makeImage({ size: SIZE, seed: 41 });
  const store = FileStore.open({ path: img.path, writable: false });
  try {
    let most = 0;
    const reads = ranges(42, 200).map(async ({ offset, length }) => {
      const got = new Uint8Array(length);
      const reading = store.read(offset, got);
      most = Math.max(most, store.handles);
      await reading;
      deepStrictEqual(got, img.data.subarray(offset, offset + length), `read ${length}@${offset}`);
    });
    await Promise.all(reads);
    ok(most > 1 && most <= MAX_HANDLES, `${most} handles in use at most (limit ${MAX_HANDLES})`);
    const tail = new Uint8Array(100);
    await store.read(SIZE - 100, tail);
    deepStrictEqual(tail, img.data.subarray(SIZE - 100));
  } finally {
    store.close();
    await Deno.remove(img.dir, { recursive: true });
  }
});

test("concurrent writes to disjoint ranges, mixed with reads, all land", async () => {
  const img = await makeImage({ size: SIZE, seed: 43 });
  const store = FileStore.open({ path: img.path, writable: true });
  const model = img.data.slice();
  try {
    // disjoint slots of varying length, written all at once, with reads in between
    const ops: Promise<void>[] = [];
    const slot = Math.floor(SIZE / 40);
    for (let i = 0; i < 40; i++) {
      const data = seededBytes(1 + ((i * 7919) % slot), 100 + i);
      model.set(data, i * slot);
      ops.push(store.write(i * slot, data));
      if (i % 4 === 0) ops.push(store.read(i * slot + slot - 10, new Uint8Array(10)));
    }
    await Promise.all(ops);
    const big = seededBytes(2 * IO_CHUNK + 3, 99);
    model.set(big, 0);
    await store.write(0, big);
    await store.flush();
    const all = new Uint8Array(SIZE);
    await store.read(0, all);
    deepStrictEqual(all, model);
  } finally {
    store.close();
  }
  try {
    deepStrictEqual(await Deno.readFile(img.path), model);
  } finally {
    await Deno.remove(img.dir, { recursive: true });
  }
});

test("a 32 MiB read and a 32 MiB overlay write let timers run before they finish", async () => {
  const img = await makeImage({ size: 33 << 20, seed: 44 });
  const state = await Deno.makeTempDir();
  const base = FileStore.open({ path: img.path, writable: false });
  try {
    const timerFirst = async (io: () => Promise<void>) => {
      let fired = false;
      const timer = setTimeout(() => (fired = true), 0);
      await io();
      clearTimeout(timer);
      return fired;
    };
    const into = new Uint8Array(32 << 20);
    ok(await timerFirst(() => base.read(1000, into)), "a timer ran during the base read");
    deepStrictEqual(into, img.data.subarray(1000, 1000 + (32 << 20)));

    const cow = FileCowStore.create({ base, dir: state, tag: "big" });
    try {
      const data = seededBytes(32 << 20, 45);
      ok(await timerFirst(() => cow.write(12345, data)), "a timer ran during the overlay write");
      const back = new Uint8Array(32 << 20);
      ok(await timerFirst(() => cow.read(12345, back)), "a timer ran during the overlay read");
      deepStrictEqual(back, data);
      equal(cow.blocks, Math.ceil((12345 + data.length) / COW_BLOCK) - Math.floor(12345 / COW_BLOCK));
    } finally {
      cow.close();
    }
  } finally {
    base.close();
    await Deno.remove(img.dir, { recursive: true });
    await Deno.remove(state, { recursive: true });
  }
});

test("overlays apply concurrent writes to one missing block one at a time", async () => {
  const img = await makeImage({ size: 8 * COW_BLOCK, seed: 46 });
  const state = await Deno.makeTempDir();
  const base = FileStore.open({ path: img.path, writable: false });
  const budget = new MemoryBudget(1 << 20);
  const overlays = [
    new MemoryCowStore({ base, budget }),
    FileCowStore.create({ base, dir: state, tag: "race" }),
  ];
  try {
    for (const cow of overlays) {
      const expect = img.data.slice(0, 2 * COW_BLOCK);
      const writes: Promise<void>[] = [];
      for (let i = 0; i < 50; i++) {
        const at = (i * 97) % (2 * COW_BLOCK - 3);
        const bytes = new Uint8Array([i, i + 1, i + 2]);
        expect.set(bytes, at);
        writes.push(cow.write(at, bytes));
      }
      await Promise.all(writes);
      equal(cow.blocks, 2, "each block copied once");
      const got = new Uint8Array(2 * COW_BLOCK);
      await cow.read(0, got);
      deepStrictEqual(got, expect, "writes applied in the order they were issued");
    }
    equal(budget.used, 2 * COW_BLOCK, "the budget is charged once per block");
  } finally {
    for (const cow of overlays) cow.close();
    base.close();
    await Deno.remove(img.dir, { recursive: true });
    await Deno.remove(state, { recursive: true });
  }
});

test("extra handles never open a different file put in the image's place", async () => {
  const img = await makeImage({ size: SIZE, seed: 47 });
  const store = FileStore.open({ path: img.path, writable: false });
  try {
    await Deno.rename(img.path, `${img.path}.old`);
    await Deno.writeFile(img.path, new Uint8Array(SIZE).fill(0xee));
    const reads = ranges(48, 40).map(async ({ offset, length }) => {
      const got = new Uint8Array(length);
      await store.read(offset, got);
      deepStrictEqual(got, img.data.subarray(offset, offset + length));
    });
    await Promise.all(reads);
    equal(store.handles, 1, "the handles opened on the new file were closed again");
  } finally {
    store.close();
    await Deno.remove(img.dir, { recursive: true });
  }
});

test("closing a store under I/O fails that I/O with EIO and leaks no handle", async () => {
  const img = await makeImage({ size: SIZE, seed: 49 });
  const store = FileStore.open({ path: img.path, writable: false });
  const reads = ranges(50, 20).map(({ offset, length }) => store.read(offset, new Uint8Array(length)));
  store.close();
  const results = await Promise.allSettled(reads);
  for (const r of results) {
    if (r.status === "rejected") {
      ok(r.reason instanceof NbdStoreError && r.reason.errno === 5, String(r.reason));
    }
  }
  ok(results.some((r) => r.status === "rejected"), "I/O after close fails");
  await Deno.remove(img.dir, { recursive: true });
});

test("one connection with 64 reads in flight gets every reply in order with its bytes", async () => {
  const img = await makeImage({ size: SIZE, seed: 51 });
  try {
    await withServer({ exports: [img.path] }, async (server) => {
      const c = await RawClient.connect(server.port);
      try {
        await c.greet();
        await c.go();
        const reqs = ranges(52, 64);
        const batch: Uint8Array[] = [];
        for (const [i, r] of reqs.entries()) {
          await c.request({ type: NbdCmd.READ, flags: 0, handle: BigInt(i), ...r });
        }
        for (const [i, r] of reqs.entries()) {
          const rep = await c.reply(r.length);
          ok(rep !== null);
          equal(rep.error, 0);
          equal(rep.handle, BigInt(i));
          batch.push(rep.data);
          deepStrictEqual(rep.data, img.data.subarray(r.offset, r.offset + r.length));
        }
        equal(batch.length, 64);
        await c.request({ type: NbdCmd.DISC, flags: 0, handle: 999n, offset: 0, length: 0 });
      } finally {
        c.close();
      }
    });
  } finally {
    await Deno.remove(img.dir, { recursive: true });
  }
});
