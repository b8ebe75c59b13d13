import { deepStrictEqual, equal, throws } from "node:assert/strict";
import {
  decodeClientFlags,
  decodeExportName,
  decodeInfoItem,
  decodeInfoRequest,
  decodeOptionHeader,
  decodeOptionReplyHeader,
  decodeRequest,
  decodeServerEntry,
  decodeServerGreeting,
  decodeSimpleReply,
  encodeClientFlags,
  encodeExportNameReply,
  encodeInfoBlockSize,
  encodeInfoExport,
  encodeInfoRequest,
  encodeInfoString,
  encodeOption,
  encodeOptionReply,
  encodeRequest,
  encodeServerEntry,
  encodeServerGreeting,
  encodeSimpleReply,
  NbdCmd,
  NbdError,
  NbdFlag,
  NbdInfo,
  NbdOpt,
  NbdProtocolError,
  NbdRep,
} from "../../src/nbd/protocol.ts";
import { xorshift } from "./helpers.ts";

Deno.test("nbd protocol: server greeting is NBDMAGIC IHAVEOPT flags", () => {
  const g = encodeServerGreeting(3);
  equal(new TextDecoder().decode(g.subarray(0, 16)), "NBDMAGICIHAVEOPT");
  deepStrictEqual(decodeServerGreeting(g), { flags: 3 });
  throws(() => decodeServerGreeting(g.subarray(0, 17)), NbdProtocolError);
});

Deno.test("nbd protocol: client flags reject unknown bits", () => {
  equal(decodeClientFlags(encodeClientFlags(3)), 3);
  throws(() => decodeClientFlags(encodeClientFlags(4)), /unknown bits 0x4/);
  throws(() => decodeClientFlags(new Uint8Array(3)), NbdProtocolError);
});

Deno.test("nbd protocol: option header round trip and bad magic", () => {
  const b = encodeOption(NbdOpt.GO, new Uint8Array([1, 2, 3]));
  deepStrictEqual(decodeOptionHeader(b), { option: NbdOpt.GO, length: 3 });
  b[0] ^= 1;
  throws(
    () => decodeOptionHeader(b),
    (e: unknown) => e instanceof NbdProtocolError && e.field === "option magic",
  );
});

Deno.test("nbd protocol: info request round trip and length checks", () => {
  const req = { name: "disk.img", infos: [NbdInfo.NAME, NbdInfo.BLOCK_SIZE] };
  const b = encodeInfoRequest(req);
  deepStrictEqual(decodeInfoRequest(b), req);
  deepStrictEqual(decodeInfoRequest(encodeInfoRequest({ name: "", infos: [] })), { name: "", infos: [] });
  throws(() => decodeInfoRequest(b.subarray(0, b.length - 1)), NbdProtocolError);
  const longer = new Uint8Array(b.length + 1);
  longer.set(b);
  throws(() => decodeInfoRequest(longer), NbdProtocolError);
  const badLen = b.slice();
  new DataView(badLen.buffer).setUint32(0, 1000);
  throws(() => decodeInfoRequest(badLen), /exceeds the payload/);
});

Deno.test("nbd protocol: export names must be UTF-8 without NUL, at most 4096 bytes", () => {
  equal(decodeExportName(new TextEncoder().encode("ü.img")), "ü.img");
  throws(() => decodeExportName(new Uint8Array([0xff])), /UTF-8/);
  throws(() => decodeExportName(new Uint8Array([0x41, 0])), /NUL/);
  throws(() => decodeExportName(new Uint8Array(4097).fill(0x41)), /longer than 4096/);
});

Deno.test("nbd protocol: option replies and info items", () => {
  const data = encodeInfoExport(2 ** 40 + 5, NbdFlag.HAS_FLAGS | NbdFlag.READ_ONLY);
  const r = encodeOptionReply({ option: NbdOpt.GO, type: NbdRep.INFO, data });
  deepStrictEqual(decodeOptionReplyHeader(r), { option: NbdOpt.GO, type: NbdRep.INFO, length: 12 });
  deepStrictEqual(decodeInfoItem(r.subarray(20)), { type: 0, size: 2 ** 40 + 5, flags: 3 });
  deepStrictEqual(decodeInfoItem(encodeInfoString(NbdInfo.NAME, "a")), { type: 1, text: "a" });
  deepStrictEqual(decodeInfoItem(encodeInfoString(NbdInfo.DESCRIPTION, "d")), { type: 2, text: "d" });
  deepStrictEqual(decodeInfoItem(encodeInfoBlockSize(1, 4096, 1 << 25)), {
    type: 3,
    min: 1,
    preferred: 4096,
    max: 1 << 25,
  });
  equal(NbdRep.ERR_UNSUP, 2 ** 31 + 1);
  equal(NbdRep.ERR_UNKNOWN, 2 ** 31 + 6);
  deepStrictEqual(decodeServerEntry(encodeServerEntry("x.img", "desc")), {
    name: "x.img",
    description: "desc",
  });
});

Deno.test("nbd protocol: export-name reply honours NO_ZEROES", () => {
  equal(encodeExportNameReply(512, 1, true).length, 10);
  const full = encodeExportNameReply(512, 1, false);
  equal(full.length, 134);
  equal(full.subarray(10).every((b) => b === 0), true);
});

Deno.test("nbd protocol: request and reply round trip", () => {
  const req = {
    flags: 1,
    type: NbdCmd.WRITE,
    handle: 0xdeadbeefcafef00dn,
    offset: 2 ** 45 + 3,
    length: 65536,
  };
  const b = encodeRequest(req);
  equal(b.length, 28);
  deepStrictEqual(decodeRequest(b), req);
  const padded = new Uint8Array(40);
  padded.set(b, 5);
  deepStrictEqual(decodeRequest(padded, 5), req);
  b[0] = 0;
  throws(() => decodeRequest(b), /request magic/);
  deepStrictEqual(decodeSimpleReply(encodeSimpleReply(NbdError.EINVAL, 7n)), { error: 22, handle: 7n });
});

Deno.test("nbd protocol: decoders throw only NbdProtocolError on random input (seeded)", () => {
  const rng = xorshift(0x6bd);
  const decoders: ((b: Uint8Array) => unknown)[] = [
    decodeServerGreeting,
    decodeClientFlags,
    decodeOptionHeader,
    decodeExportName,
    decodeInfoRequest,
    decodeOptionReplyHeader,
    decodeInfoItem,
    decodeServerEntry,
    (b) => decodeRequest(b),
    decodeSimpleReply,
  ];
  for (let i = 0; i < 5_000; i++) {
    const b = rng.bytes(rng.below(48));
    for (const decode of decoders) {
      try {
        decode(b);
      } catch (err) {
        if (!(err instanceof NbdProtocolError)) throw err;
      }
    }
  }
});
