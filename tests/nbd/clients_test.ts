/**
 * The NBD server driven by real clients from Debian: nbdinfo, nbdcopy (libnbd-bin) and qemu-img/qemu-io
 * (qemu-utils), on 127.0.0.1 and a random port.
 */
import { deepStrictEqual, equal, ok } from "node:assert/strict";
import { type BootEvent, BootEvents } from "../../src/events.ts";
import { makeImage, run, seededBytes, sha256, TOOLS, waitFor, withServer } from "./helpers.ts";
import { missingTools, requires } from "../helpers/tools.ts";

const missing = missingTools(...TOOLS);
const SIZE = 8 * 1024 * 1024 + 4096 * 3 + 512; // not a power of two
const test = (name: string, fn: () => Promise<void>) =>
  Deno.test(requires(missing, {
    name: `nbd clients: ${name}`,
    sanitizeResources: true,
    sanitizeOps: true,
    fn,
  }));

interface InfoExport {
  "export-name": string;
  "export-size": number;
  is_read_only: boolean;
  can_multi_conn: boolean;
  can_flush: boolean;
  can_fua: boolean;
  can_trim: boolean;
  can_zero: boolean;
  can_cache: boolean;
  block_size_minimum?: number;
  block_size_maximum?: number;
}

async function nbdinfo(url: string, ...extra: string[]): Promise<{ exports: InfoExport[] }> {
  const r = await run("nbdinfo", ["--json", ...extra, url]);
  equal(r.code, 0, r.stderr);
  return JSON.parse(r.stdout);
}

test("nbdinfo reads size and flags of a read-only export", async () => {
  const img = await makeImage({ size: SIZE, seed: 1 });
  try {
    await withServer({ exports: [img.path] }, async (_server, url) => {
      const info = (await nbdinfo(url)).exports[0];
      equal(info["export-size"], SIZE);
      equal(info.is_read_only, true);
      equal(info.can_multi_conn, true);
      equal(info.can_flush, true);
      equal(info.can_trim, false);
      equal(info.can_zero, false);
      equal(info.can_cache, true);
      equal(info.block_size_minimum, 1);
      equal(info.block_size_maximum, 32 << 20);
    });
  } finally {
    await Deno.remove(img.dir, { recursive: true });
  }
});

test("nbdinfo --list shows every export; names and the default export work", async () => {
  const a = await makeImage({ size: SIZE, seed: 2, name: "a.img" });
  const b = await makeImage({ size: 1 << 20, seed: 3, name: "b.iso", dir: a.dir });
  try {
    await withServer({ exports: [a.path, { path: b.path, description: "installer" }] }, async (_s, url) => {
      const list = (await nbdinfo(url, "--list")).exports;
      deepStrictEqual(list.map((e) => e["export-name"]), ["a.img", "b.iso"]);
      equal((await nbdinfo(`${url}/b.iso`)).exports[0]["export-size"], 1 << 20);
      equal((await nbdinfo(`${url}/`)).exports[0]["export-size"], SIZE);
      const missing = await run("nbdinfo", [`${url}/nope`]);
      ok(missing.code !== 0);
      ok(/unknown|not found|export/i.test(missing.stderr), missing.stderr);
    });
  } finally {
    await Deno.remove(a.dir, { recursive: true });
  }
});

test("nbdcopy copies the whole image (default and one request at a time), sha256 equal", async () => {
  const img = await makeImage({ size: SIZE, seed: 4 });
  const events = new BootEvents();
  const seen: BootEvent[] = [];
  const unsubscribe = events.subscribe((e) => seen.push(e));
  try {
    await withServer({ exports: [img.path], events }, async (server, url) => {
      const want = await sha256(img.data);
      for (const args of [[], ["--connections=1", "--requests=1"], ["--request-size=33554432"]]) {
        const out = `${img.dir}/out.img`;
        const r = await run("nbdcopy", [...args, `${url}/`, out]);
        equal(r.code, 0, r.stderr);
        equal(await sha256(await Deno.readFile(out)), want, args.join(" "));
        await Deno.remove(out);
      }
      ok(await waitFor(() => server.connections === 0));
    });
    const ends = seen.filter((e) => e.kind === "transfer-end");
    ok(ends.length >= 3);
    ok(
      ends.every((e) => e.kind === "transfer-end" && e.service === "nbd" && e.outcome === "ok"),
      JSON.stringify(ends),
    );
    equal(seen.filter((e) => e.kind === "transfer-start").length, ends.length);
  } finally {
    unsubscribe();
    await Deno.remove(img.dir, { recursive: true });
  }
});

test("qemu-img compare finds the export identical to the image (and from RAM)", async () => {
  const img = await makeImage({ size: SIZE, seed: 5 });
  try {
    for (const copyToRam of [false, true]) {
      await withServer({ exports: [img.path], copyToRam }, async (_s, url) => {
        const r = await run("qemu-img", ["compare", "-f", "raw", "-F", "raw", `${url}/`, img.path]);
        equal(r.code, 0, r.stdout + r.stderr);
      });
    }
  } finally {
    await Deno.remove(img.dir, { recursive: true });
  }
});

/** Unaligned writes for qemu-io: 512 at 512, a byte, cross-block and cross-page spans. */
const WRITES: [number, number, number][] = [
  [0x11, 512, 512],
  [0x22, 1, 1],
  [0x33, 4095, 2],
  [0x44, 12345, 7000],
  [0x55, 65535, 65538],
  [0x66, SIZE - 700, 700],
  [0x77, 4000, 200], // overlaps the 0x33 write
];

function qemuIoArgs(url: string, reads: boolean): string[] {
  const args = ["-f", "raw"];
  for (const [p, off, len] of WRITES) args.push("-c", `write -P ${p} ${off} ${len}`);
  if (reads) {
    const model = modelAfterWrites(new Uint8Array(SIZE));
    for (const [, off, len] of WRITES) {
      // read back what the model says the last writer left in each range
      for (let at = off; at < off + len;) {
        let end = at;
        while (end < off + len && model.written[end] === model.written[at]) end++;
        args.push("-c", `read -P ${model.written[at]} ${at} ${end - at}`);
        at = end;
      }
    }
  }
  args.push(`${url}/`);
  return args;
}

function modelAfterWrites(base: Uint8Array): { bytes: Uint8Array; written: Uint8Array } {
  const bytes = base.slice();
  const written = new Uint8Array(base.length);
  for (const [p, off, len] of WRITES) {
    bytes.fill(p, off, off + len);
    written.fill(p, off, off + len);
  }
  return { bytes, written };
}

test("qemu-io unaligned writes to a writable image match an independent model", async () => {
  const img = await makeImage({ size: SIZE, seed: 6 });
  try {
    await withServer({ exports: [img.path], write: true, cow: false }, async (_s, url) => {
      equal((await nbdinfo(url)).exports[0].can_multi_conn, true);
      const r = await run("qemu-io", qemuIoArgs(url, true));
      equal(r.code, 0, r.stdout + r.stderr);
      ok(!/fail|error/i.test(r.stdout), r.stdout);
    });
    deepStrictEqual(await Deno.readFile(img.path), modelAfterWrites(img.data).bytes);
  } finally {
    await Deno.remove(img.dir, { recursive: true });
  }
});

for (const cowInMemory of [false, true]) {
  test(`qemu-io writes to a copy-on-write export (${cowInMemory ? "memory" : "file"}) stay private`, async () => {
    const img = await makeImage({ size: SIZE, seed: 7 });
    const state = `${img.dir}/state`;
    try {
      await withServer(
        { exports: [img.path], write: true, cowInMemory, stateDir: state },
        async (server, url) => {
          const info = (await nbdinfo(url)).exports[0];
          equal(info.is_read_only, false);
          equal(info.can_multi_conn, false, "each connection has its own overlay");
          const r = await run("qemu-io", qemuIoArgs(url, true));
          equal(r.code, 0, r.stdout + r.stderr);
          ok(!/fail|error/i.test(r.stdout), r.stdout);
          // a new connection sees the untouched image
          const cmp = await run("qemu-img", ["compare", "-f", "raw", "-F", "raw", `${url}/`, img.path]);
          equal(cmp.code, 0, cmp.stdout + cmp.stderr);
          ok(await waitFor(() => server.connections === 0));
          equal(server.cowMemoryUsed, 0);
          if (!cowInMemory) equal([...Deno.readDirSync(state)].length, 0, "no COW file left");
        },
      );
      deepStrictEqual(await Deno.readFile(img.path), img.data, "the image is never written");
    } finally {
      await Deno.remove(img.dir, { recursive: true });
    }
  });
}

test("a read-only export refuses qemu-io writes", async () => {
  const img = await makeImage({ size: SIZE, seed: 8 });
  try {
    await withServer({ exports: [img.path] }, async (_s, url) => {
      const r = await run("qemu-io", ["-f", "raw", "-c", "write -P 1 0 512", `${url}/`]);
      ok(r.code !== 0 || /read-only|denied|not permitted/i.test(r.stdout + r.stderr), r.stdout + r.stderr);
    });
    deepStrictEqual(await Deno.readFile(img.path), img.data);
  } finally {
    await Deno.remove(img.dir, { recursive: true });
  }
});

test("20 concurrent nbdcopy clients each get the whole image", async () => {
  const img = await makeImage({ size: 2 * 1024 * 1024 + 333, seed: 9 });
  try {
    await withServer({ exports: [img.path] }, async (server, url) => {
      const want = await sha256(img.data);
      const results = await Promise.all(
        Array.from({ length: 20 }, (_, i) => run("nbdcopy", [`${url}/`, `${img.dir}/out${i}.img`])),
      );
      for (const [i, r] of results.entries()) {
        equal(r.code, 0, r.stderr);
        equal(await sha256(await Deno.readFile(`${img.dir}/out${i}.img`)), want);
      }
      ok(await waitFor(() => server.connections === 0));
    });
  } finally {
    await Deno.remove(img.dir, { recursive: true });
  }
});

test("nbdcopy writes a whole image into a writable export", async () => {
  const img = await makeImage({ size: SIZE, seed: 10 });
  try {
    const src = `${img.dir}/src.img`;
    const data = seededBytes(SIZE, 99);
    await Deno.writeFile(src, data);
    await withServer({ exports: [img.path], write: true, cow: false }, async (_s, url) => {
      const info = (await nbdinfo(url)).exports[0];
      equal(info.can_fua && info.can_trim && info.can_zero && (info.is_read_only === false), true);
      const r = await run("nbdcopy", [src, `${url}/`]);
      equal(r.code, 0, r.stderr);
    });
    equal(await sha256(await Deno.readFile(img.path)), await sha256(data));
  } finally {
    await Deno.remove(img.dir, { recursive: true });
  }
});
