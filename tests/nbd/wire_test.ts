/**
 * The NBD server at the wire level, with a raw client: option haggling corner cases, error replies,
 * pipelining, private copy-on-write per connection, clients vanishing mid-request, and seeded fuzz.
 */
import { deepStrictEqual, equal, ok } from "node:assert/strict";
import {
  encodeInfoRequest,
  encodeOption,
  encodeRequest,
  NbdClientFlag,
  NbdCmd,
  NbdCmdFlag,
  NbdError,
  NbdFlag,
  NbdHandshakeFlag,
  NbdInfo,
  NbdOpt,
  NbdRep,
} from "../../src/nbd/protocol.ts";
import { COW_BLOCK } from "../../src/nbd/cow.ts";
import type { NbdServer } from "../../src/nbd/server.ts";
import { makeImage, RawClient, waitFor, withServer, xorshift } from "./helpers.ts";

const SIZE = 1024 * 1024 + 777;
const test = (name: string, fn: () => Promise<void>) =>
  Deno.test({ name: `nbd wire: ${name}`, sanitizeResources: true, sanitizeOps: true, fn });

/** Runs `fn` with a fresh image served with `opts`; removes the image afterwards. */
async function withImage(
  opts: {
    write?: boolean;
    cow?: boolean;
    cowInMemory?: boolean;
    cowMemoryLimit?: number;
    seed?: number;
    handshakeTimeoutMs?: number;
  },
  fn: (server: NbdServer, data: Uint8Array, path: string) => Promise<void>,
): Promise<void> {
  const img = await makeImage({ size: SIZE, seed: opts.seed ?? 1 });
  try {
    await withServer({ exports: [img.path], ...opts }, (server) => fn(server, img.data, img.path));
  } finally {
    await Deno.remove(img.dir, { recursive: true });
  }
}

async function opened(server: NbdServer, name = ""): Promise<{ c: RawClient; size: number; flags: number }> {
  const c = await RawClient.connect(server.port);
  await c.greet();
  const { size, flags } = await c.go(name);
  return { c, size, flags };
}

async function disconnect(c: RawClient): Promise<void> {
  await c.request({ flags: 0, type: NbdCmd.DISC, handle: 0n, offset: 0, length: 0 });
  ok(await c.closedByServer(), "the server closes after NBD_CMD_DISC");
  c.close();
}

test("greeting offers fixed newstyle and NO_ZEROES; INFO returns name, description and block size", async () => {
  await withImage({}, async (server) => {
    const c = await RawClient.connect(server.port);
    equal(await c.greet(), NbdHandshakeFlag.FIXED_NEWSTYLE | NbdHandshakeFlag.NO_ZEROES);
    await c.send(
      encodeOption(
        NbdOpt.INFO,
        encodeInfoRequest({ name: "", infos: [NbdInfo.NAME, NbdInfo.DESCRIPTION, NbdInfo.BLOCK_SIZE, 999] }),
      ),
    );
    const types: number[] = [];
    for (let i = 0; i < 10; i++) {
      const r = await c.optionReply();
      equal(r.option, NbdOpt.INFO);
      if (r.type === NbdRep.ACK) break;
      equal(r.type, NbdRep.INFO);
      types.push(new DataView(r.data.buffer).getUint16(0));
    }
    deepStrictEqual(types, [NbdInfo.EXPORT, NbdInfo.NAME, NbdInfo.DESCRIPTION, NbdInfo.BLOCK_SIZE]);
    // still in negotiation: GO works afterwards
    const { size, flags } = await c.go("disk.img");
    equal(size, SIZE);
    equal(
      flags,
      NbdFlag.HAS_FLAGS | NbdFlag.READ_ONLY | NbdFlag.SEND_FLUSH | NbdFlag.CAN_MULTI_CONN |
        NbdFlag.SEND_CACHE,
    );
    await disconnect(c);
  });
});

test("unsupported options (STARTTLS, structured replies, unknown) get ERR_UNSUP after their payload", async () => {
  await withImage({}, async (server) => {
    const c = await RawClient.connect(server.port);
    await c.greet();
    for (
      const [opt, payload] of [[NbdOpt.STARTTLS, 0], [NbdOpt.STRUCTURED_REPLY, 0], [77, 1000], [
        NbdOpt.SET_META_CONTEXT,
        40,
      ]]
    ) {
      await c.send(encodeOption(opt, new Uint8Array(payload).fill(0x49)));
      const r = await c.optionReply();
      equal(r.option, opt);
      equal(r.type, NbdRep.ERR_UNSUP);
    }
    await c.send(encodeOption(NbdOpt.LIST, new Uint8Array(3)));
    equal((await c.optionReply()).type, NbdRep.ERR_INVALID);
    await c.send(encodeOption(NbdOpt.GO, new Uint8Array([0, 0, 0, 9, 1])));
    equal((await c.optionReply()).type, NbdRep.ERR_INVALID);
    await c.send(encodeOption(NbdOpt.GO, encodeInfoRequest({ name: "missing", infos: [] })));
    equal((await c.optionReply()).type, NbdRep.ERR_UNKNOWN);
    equal((await c.go()).size, SIZE);
    await disconnect(c);
  });
});

test("EXPORT_NAME enters transmission with and without NO_ZEROES; unknown name closes", async () => {
  await withImage({}, async (server) => {
    for (const noZeroes of [true, false]) {
      const c = await RawClient.connect(server.port);
      await c.greet(NbdClientFlag.C_FIXED_NEWSTYLE | (noZeroes ? NbdClientFlag.C_NO_ZEROES : 0));
      await c.send(encodeOption(NbdOpt.EXPORT_NAME, new TextEncoder().encode("disk.img")));
      const reply = await c.readExact(noZeroes ? 10 : 134);
      ok(reply !== null);
      const dv = new DataView(reply.buffer);
      equal(dv.getUint32(0) * 2 ** 32 + dv.getUint32(4), SIZE);
      equal(dv.getUint16(8) & NbdFlag.READ_ONLY, NbdFlag.READ_ONLY);
      await c.request({ flags: 0, type: NbdCmd.READ, handle: 5n, offset: 0, length: 16 });
      equal((await c.reply(16))!.handle, 5n);
      await disconnect(c);
    }
    const bad = await RawClient.connect(server.port);
    await bad.greet();
    await bad.send(encodeOption(NbdOpt.EXPORT_NAME, new TextEncoder().encode("nope")));
    ok(await bad.closedByServer());
    bad.close();
  });
});

test("clients without fixed newstyle, with unknown flags or a bad option magic are disconnected", async () => {
  await withImage({}, async (server) => {
    for (const flags of [0, 8]) {
      const c = await RawClient.connect(server.port);
      await c.greet(flags);
      ok(await c.closedByServer());
      c.close();
    }
    const c = await RawClient.connect(server.port);
    await c.greet();
    const opt = encodeOption(NbdOpt.LIST);
    opt[0] = 0;
    await c.send(opt);
    ok(await c.closedByServer());
    c.close();
    // ABORT is acknowledged, then the connection ends
    const a = await RawClient.connect(server.port);
    await a.greet();
    await a.send(encodeOption(NbdOpt.ABORT));
    equal((await a.optionReply()).type, NbdRep.ACK);
    ok(await a.closedByServer());
    a.close();
    ok(await waitFor(() => server.connections === 0));
  });
});

test("errors: EPERM on read-only, EINVAL out of range / unknown / bad flags, ENOSPC past the end", async () => {
  await withImage({}, async (server) => {
    const { c } = await opened(server);
    const cases: [number, number, number, number, number][] = [
      // type, flags, offset, length, expected error
      [NbdCmd.WRITE, 0, 0, 10, NbdError.EPERM],
      [NbdCmd.TRIM, 0, 0, 10, NbdError.EPERM],
      [NbdCmd.WRITE_ZEROES, 0, 0, 10, NbdError.EPERM],
      [NbdCmd.READ, 0, SIZE - 10, 11, NbdError.EINVAL],
      [NbdCmd.READ, 0, 2 ** 60, 1, NbdError.EINVAL],
      [NbdCmd.READ, 0, 0, (32 << 20) + 1, NbdError.EINVAL],
      [NbdCmd.CACHE, 0, SIZE, 1, NbdError.EINVAL],
      [NbdCmd.BLOCK_STATUS, 0, 0, 10, NbdError.EINVAL],
      [99, 0, 0, 0, NbdError.EINVAL],
      [NbdCmd.READ, NbdCmdFlag.FUA, 0, 10, NbdError.EINVAL],
      [NbdCmd.READ, 0, SIZE - 10, 10, 0],
      [NbdCmd.FLUSH, 0, 0, 0, 0],
      [NbdCmd.CACHE, 0, 0, 4096, 0],
    ];
    let handle = 1n;
    for (const [type, flags, offset, length, want] of cases) {
      const h = handle++;
      await c.request(
        { flags, type, handle: h, offset, length },
        type === NbdCmd.WRITE ? new Uint8Array(length) : undefined,
      );
      const r = await c.reply(type === NbdCmd.READ ? length : 0);
      ok(r !== null);
      equal(r.handle, h);
      equal(r.error, want, `type ${type} flags ${flags} ${length}@${offset}`);
    }
    await disconnect(c);
  });
  await withImage({ write: true, cow: true, cowInMemory: true }, async (server) => {
    const { c } = await opened(server);
    await c.request(
      { flags: 0, type: NbdCmd.WRITE, handle: 1n, offset: SIZE - 1, length: 2 },
      new Uint8Array(2),
    );
    equal((await c.reply())!.error, NbdError.ENOSPC);
    await c.request({ flags: 0, type: NbdCmd.WRITE_ZEROES, handle: 2n, offset: SIZE, length: 1 });
    equal((await c.reply())!.error, NbdError.ENOSPC);
    await c.request({ flags: 0, type: NbdCmd.TRIM, handle: 3n, offset: SIZE, length: 1 });
    equal((await c.reply())!.error, NbdError.EINVAL);
    // the stream is still in sync
    await c.request({ flags: 0, type: NbdCmd.READ, handle: 4n, offset: 0, length: 8 });
    equal((await c.reply(8))!.error, 0);
    await disconnect(c);
  });
});

test("the in-memory COW limit turns into ENOSPC, not memory exhaustion", async () => {
  await withImage({ write: true, cowInMemory: true, cowMemoryLimit: 8 * COW_BLOCK }, async (server) => {
    const { c } = await opened(server);
    await c.request(
      { flags: 0, type: NbdCmd.WRITE, handle: 1n, offset: 0, length: 8 * COW_BLOCK },
      new Uint8Array(8 * COW_BLOCK),
    );
    equal((await c.reply())!.error, 0);
    await c.request(
      { flags: 0, type: NbdCmd.WRITE, handle: 2n, offset: 9 * COW_BLOCK, length: 1 },
      new Uint8Array(1),
    );
    equal((await c.reply())!.error, NbdError.ENOSPC);
    equal(server.cowMemoryUsed, 8 * COW_BLOCK);
    await disconnect(c);
    ok(await waitFor(() => server.cowMemoryUsed === 0));
  });
});

test("pipelining: 300 mixed requests sent at once get one reply each, data matches", async () => {
  await withImage({ write: true }, async (server, data) => {
    const { c } = await opened(server);
    const model = data.slice();
    const rng = xorshift(77);
    const expect = new Map<bigint, { length: number; data?: Uint8Array }>();
    const chunks: Uint8Array[] = [];
    for (let i = 0; i < 300; i++) {
      const handle = BigInt(1000 + i);
      const length = 1 + rng.below(rng.below(5) === 0 ? 300_000 : 5000);
      const offset = rng.below(SIZE - length);
      if (rng.below(3) === 0) {
        const payload = rng.bytes(length);
        model.set(payload, offset);
        chunks.push(encodeRequest({ flags: 0, type: NbdCmd.WRITE, handle, offset, length }), payload);
        expect.set(handle, { length: 0 });
      } else {
        chunks.push(encodeRequest({ flags: 0, type: NbdCmd.READ, handle, offset, length }));
        // served in order, so the expected data is the model at this point
        expect.set(handle, { length, data: model.slice(offset, offset + length) });
      }
    }
    const all = new Uint8Array(chunks.reduce((n, b) => n + b.length, 0));
    let at = 0;
    for (const b of chunks) {
      all.set(b, at);
      at += b.length;
    }
    // send while reading replies, so neither side's socket buffer can fill up and stall the other
    const sending = c.send(all);
    for (let i = 0; i < 300; i++) {
      const head = await c.readExact(16);
      ok(head !== null);
      const handle = new DataView(head.buffer).getBigUint64(8);
      const want = expect.get(handle);
      ok(want !== undefined, `unexpected or repeated handle ${handle}`);
      expect.delete(handle);
      equal(new DataView(head.buffer).getUint32(4), 0);
      if (want.data) deepStrictEqual(await c.readExact(want.length), want.data);
    }
    await sending;
    equal(expect.size, 0);
    await disconnect(c);
  });
});

test("two clients on a COW export see only their own writes; overlays are gone after", async () => {
  const img = await makeImage({ size: SIZE, seed: 3 });
  const state = `${img.dir}/state`;
  try {
    await withServer({ exports: [img.path], write: true, stateDir: state }, async (server) => {
      const a = (await opened(server)).c;
      const b = (await opened(server)).c;
      const pa = new Uint8Array(5000).fill(0xaa);
      const pb = new Uint8Array(3000).fill(0xbb);
      await a.request(
        { flags: NbdCmdFlag.FUA, type: NbdCmd.WRITE, handle: 1n, offset: 4000, length: 5000 },
        pa,
      );
      equal((await a.reply())!.error, 0);
      await b.request({ flags: 0, type: NbdCmd.WRITE, handle: 1n, offset: 6000, length: 3000 }, pb);
      equal((await b.reply())!.error, 0);
      await a.request({ flags: 0, type: NbdCmd.READ, handle: 2n, offset: 3000, length: 7000 });
      const ra = (await a.reply(7000))!.data;
      const wantA = img.data.slice(3000, 10000);
      wantA.fill(0xaa, 1000, 6000);
      deepStrictEqual(ra, wantA);
      await b.request({ flags: 0, type: NbdCmd.READ, handle: 2n, offset: 3000, length: 7000 });
      const wantB = img.data.slice(3000, 10000);
      wantB.fill(0xbb, 3000, 6000);
      deepStrictEqual((await b.reply(7000))!.data, wantB);
      equal([...Deno.readDirSync(state)].length, 0, "overlay files are unlinked while open");
      await disconnect(a);
      b.close(); // a hard disconnect also discards the overlay
      ok(await waitFor(() => server.connections === 0));
      // a third client sees the original image
      const c = (await opened(server)).c;
      await c.request({ flags: 0, type: NbdCmd.READ, handle: 1n, offset: 3000, length: 7000 });
      deepStrictEqual((await c.reply(7000))!.data, img.data.slice(3000, 10000));
      await disconnect(c);
    });
    deepStrictEqual(await Deno.readFile(img.path), img.data);
    equal([...Deno.readDirSync(state)].length, 0);
  } finally {
    await Deno.remove(img.dir, { recursive: true });
  }
});

test("the server's own temporary state directory is removed at stop", async () => {
  let dir: string | null = null;
  await withImage({ write: true }, async (server) => {
    dir = server.stateDir;
    ok(dir !== null);
    ok((await Deno.stat(dir)).isDirectory);
    const { c } = await opened(server);
    await disconnect(c);
  });
  let gone = false;
  try {
    await Deno.stat(dir!);
  } catch (err) {
    gone = err instanceof Deno.errors.NotFound;
  }
  ok(gone);
});

test("clients vanishing mid-request or mid-handshake end their session only", async () => {
  await withImage({ write: true }, async (server, data) => {
    // a write header with a partial payload, then gone
    const w = (await opened(server)).c;
    await w.send(encodeRequest({ flags: 0, type: NbdCmd.WRITE, handle: 1n, offset: 0, length: 65536 }));
    await w.send(new Uint8Array(100));
    w.close();
    // a large read requested, then gone before the reply is read
    const r = (await opened(server)).c;
    for (let i = 0; i < 8; i++) {
      await r.request({ flags: 0, type: NbdCmd.READ, handle: BigInt(i), offset: 0, length: SIZE });
    }
    r.close();
    // half a request header
    const h = (await opened(server)).c;
    await h.send(
      encodeRequest({ flags: 0, type: NbdCmd.READ, handle: 1n, offset: 0, length: 1 }).subarray(0, 13),
    );
    h.close();
    // half an option
    const o = await RawClient.connect(server.port);
    await o.greet();
    await o.send(encodeOption(NbdOpt.GO, encodeInfoRequest({ name: "", infos: [] })).subarray(0, 20));
    o.close();
    // nothing at all
    (await RawClient.connect(server.port)).close();
    ok(await waitFor(() => server.connections === 0), "every session ended");
    const { c } = await opened(server);
    await c.request({ flags: 0, type: NbdCmd.READ, handle: 9n, offset: 100, length: 50 });
    deepStrictEqual((await c.reply(50))!.data, data.slice(100, 150));
    await disconnect(c);
  });
});

test("a client that never finishes the handshake is dropped after the timeout", async () => {
  await withImage({ handshakeTimeoutMs: 300 }, async (server) => {
    const c = await RawClient.connect(server.port);
    await c.greet();
    ok(await c.closedByServer(3000), "closed after handshakeTimeoutMs");
    c.close();
  });
});

test("stop() ends live sessions and their overlays", async () => {
  const img = await makeImage({ size: SIZE, seed: 5 });
  try {
    const server = new (await import("../../src/nbd/server.ts")).NbdServer({
      exports: [img.path],
      hostname: "127.0.0.1",
      port: 0,
      write: true,
      cowInMemory: true,
    });
    await server.start();
    const { c } = await opened(server);
    await c.request({ flags: 0, type: NbdCmd.WRITE, handle: 1n, offset: 0, length: 10 }, new Uint8Array(10));
    equal((await c.reply())!.error, 0);
    ok(server.cowMemoryUsed > 0);
    await server.stop();
    equal(server.cowMemoryUsed, 0);
    ok(await c.closedByServer());
    c.close();
  } finally {
    await Deno.remove(img.dir, { recursive: true });
  }
});

test("start() fails with one clear line for a busy port or a missing image", async () => {
  await withImage({}, async (server) => {
    const { NbdServer } = await import("../../src/nbd/server.ts");
    const other = new NbdServer({ exports: [Deno.execPath()], hostname: "127.0.0.1", port: server.port });
    let msg = "";
    await other.start().catch((e: Error) => (msg = e.message));
    ok(/^nbd: TCP 127\.0\.0\.1:\d+ is in use/.test(msg), msg);
    const missing = new NbdServer({ exports: ["/nonexistent/x.img"], hostname: "127.0.0.1", port: 0 });
    msg = "";
    await missing.start().catch((e: Error) => (msg = e.message));
    ok(/^nbd: cannot open \/nonexistent\/x\.img/.test(msg), msg);
    const dup = new NbdServer({
      exports: [Deno.execPath(), Deno.execPath()],
      hostname: "127.0.0.1",
      port: 0,
    });
    msg = "";
    await dup.start().catch((e: Error) => (msg = e.message));
    ok(/two exports are named/.test(msg), msg);
  });
});

test("fuzz: random handshakes and requests never crash the server or desync replies (seeded)", async () => {
  await withImage({ write: true, cowInMemory: true }, async (server, data) => {
    const rng = xorshift(0xfb0);
    for (let round = 0; round < 120; round++) {
      const c = await RawClient.connect(server.port);
      const mode = rng.below(4);
      if (mode === 0) {
        // garbage instead of client flags and options
        await c.readExact(18);
        await c.send(rng.bytes(1 + rng.below(200))).catch(() => {});
      } else if (mode === 1) {
        // plausible option headers with random codes and payloads
        await c.greet();
        for (let i = 0; i < 5; i++) {
          const opt = rng.below(3) === 0 ? rng.next() : rng.below(14);
          if (opt === NbdOpt.EXPORT_NAME || opt === NbdOpt.GO || opt === NbdOpt.ABORT) continue;
          await c.send(encodeOption(opt, rng.bytes(rng.below(64)))).catch(() => {});
          // read this option's replies up to its ACK or error
          let last = 0;
          for (let j = 0; j < 10 && last !== -1; j++) {
            const r = await c.optionReply().catch(() => null);
            last = r === null || r.type === NbdRep.ACK || r.type >= 2 ** 31 ? -1 : r.type;
          }
        }
      } else {
        // random requests in transmission: each must get exactly one reply, in order
        await c.greet();
        await c.go();
        let expected = 0;
        const handles: bigint[] = [];
        for (let i = 0; i < 20; i++) {
          let type = rng.below(12);
          if (type === NbdCmd.DISC) type = NbdCmd.READ;
          const flags = rng.below(4) === 0 ? rng.below(65536) : 0;
          const length = rng.below(3) === 0 ? rng.next() : rng.below(9000);
          const offset = rng.below(3) === 0 ? rng.next() * 4096 : rng.below(SIZE);
          // writes carry their payload; keep those small enough to send
          const wlen = type === NbdCmd.WRITE ? Math.min(length, 70_000) : length;
          const handle = BigInt(i + 1);
          await c.request(
            { flags, type, handle, offset, length: wlen },
            type === NbdCmd.WRITE ? rng.bytes(wlen) : undefined,
          );
          handles.push(handle);
          expected++;
          const okRead = type === NbdCmd.READ && (flags & ~NbdCmdFlag.DF) === 0 && wlen <= 32 << 20 &&
            offset + wlen <= SIZE;
          const r = await c.reply(okRead ? wlen : 0);
          ok(r !== null, `round ${round}: reply to request ${i} missing`);
          equal(r.handle, handle);
          if (okRead) equal(r.error, 0);
          expected--;
        }
        equal(expected, 0);
      }
      c.close();
    }
    ok(await waitFor(() => server.connections === 0, 5000));
    const { c } = await opened(server);
    await c.request({ flags: 0, type: NbdCmd.READ, handle: 1n, offset: 0, length: 4096 });
    deepStrictEqual((await c.reply(4096))!.data, data.slice(0, 4096), "the image is intact for a new client");
    await disconnect(c);
  });
});

test("createNbdService: null without an image; serves NBD_BLOCK_DEVICE on NBD_SERVER_IP:NBD_PORT", async () => {
  const { createNbdService } = await import("../../src/nbd/server.ts");
  const { DEFAULTS } = await import("../../src/config.ts");
  const { BootEvents } = await import("../../src/events.ts");
  const ctx = (config: typeof DEFAULTS) =>
    ({ config, events: new BootEvents(), netboot: null, staticLeases: new Map() }) as unknown as Parameters<
      typeof createNbdService
    >[0];
  equal(createNbdService(ctx(DEFAULTS)), null);
  const img = await makeImage({ size: SIZE, seed: 8 });
  try {
    const service = createNbdService(
      ctx({ ...DEFAULTS, NBD_BLOCK_DEVICE: img.path, NBD_SERVER_IP: "127.0.0.1", NBD_PORT: 0 }),
    );
    ok(service !== null);
    equal(service.name, "nbd");
    await service.start();
    try {
      ok(/^TCP 127\.0\.0\.1:\d+ \(disk\.img\)$/.test(service.endpoints()[0]), service.endpoints()[0]);
      const { c, flags } = await opened(service as NbdServer);
      equal(flags & NbdFlag.READ_ONLY, NbdFlag.READ_ONLY, "read-only unless NBD_WRITE");
      await disconnect(c);
    } finally {
      await service.stop();
    }
  } finally {
    await Deno.remove(img.dir, { recursive: true });
  }
});
