import assert from "node:assert/strict";
import {
  decodePacket,
  encodeAckInto,
  encodePacket,
  TftpDecodeError,
  type TftpPacket,
  writeDataHeader,
} from "../../src/tftp/packet.ts";
import { toNetascii } from "../../src/tftp/netascii.ts";
import { readFixture } from "./helpers.ts";

Deno.test("packet: real RRQs from iPXE, PXELINUX and OVMF decode and re-encode byte-identically", () => {
  const cases: [string, string, [string, string][]][] = [
    ["ipxe-bios-rrq-pxelinux0.bin", "pxelinux.0", [["blksize", "1432"], ["tsize", "0"]]],
    ["pxelinux-rrq-cfg-mac.bin", "pxelinux.cfg/01-52-54-00-77-00-10", [["tsize", "0"], ["blksize", "1408"]]],
    ["pxelinux-rrq-ldlinux.bin", "ldlinux.c32", [["tsize", "0"], ["blksize", "1408"]]],
    ["ovmf-rrq-tsize.bin", "ipxe.efi", [["tsize", "0"], ["blksize", "1468"], ["windowsize", "4"]]],
    ["ovmf-rrq-no-tsize.bin", "ipxe.efi", [["blksize", "1468"], ["windowsize", "4"]]],
  ];
  for (const [fixture, filename, options] of cases) {
    const bytes = readFixture(fixture);
    const packet = decodePacket(bytes);
    assert.deepEqual(packet, { op: "rrq", filename, mode: "octet", options }, fixture);
    assert.deepEqual(encodePacket(packet), bytes, fixture);
  }
});

Deno.test("packet: OVMF ERROR 8 abort and dnsmasq OACK decode and re-encode", () => {
  const abort = readFixture("ovmf-error-abort.bin");
  assert.deepEqual(decodePacket(abort), { op: "error", code: 8, message: "User aborted the transfer" });
  assert.deepEqual(encodePacket(decodePacket(abort)), abort);
  const oack = readFixture("dnsmasq-oack-ovmf-tsize.bin");
  assert.deepEqual(decodePacket(oack), { op: "oack", options: [["blksize", "1468"], ["tsize", "850528"]] });
  assert.deepEqual(encodePacket(decodePacket(oack)), oack);
});

Deno.test("packet: round trips of every packet type", () => {
  const packets: TftpPacket[] = [
    { op: "rrq", filename: "a/b.efi", mode: "NetASCII", options: [["BLKSIZE", "8"]] },
    { op: "wrq", filename: "x", mode: "octet", options: [] },
    { op: "data", block: 65535, data: new Uint8Array([1, 2, 3]) },
    { op: "data", block: 0, data: new Uint8Array(0) },
    { op: "ack", block: 0 },
    { op: "ack", block: 65535 },
    { op: "error", code: 1, message: "File not found" },
    { op: "oack", options: [["windowsize", "4"]] },
  ];
  for (const p of packets) assert.deepEqual(decodePacket(encodePacket(p)), p);
});

Deno.test("packet: hot-path helpers write headers in place with rollover", () => {
  const buf = new Uint8Array(8).fill(9);
  writeDataHeader(buf, 65536 + 5);
  assert.deepEqual([...buf.subarray(0, 4)], [0, 3, 0, 5]);
  assert.deepEqual([...encodeAckInto(buf, 258)], [0, 4, 1, 2]);
});

Deno.test("packet: malformed datagrams throw TftpDecodeError naming the field", () => {
  const cases: [number[], string][] = [
    [[], "opcode"],
    [[1], "opcode"],
    [[0, 9, 0, 0], "opcode"],
    [[0, 4, 0], "block"],
    [[0, 3, 1], "block"],
    [[0, 5, 0], "code"],
    [[0, 1, ...new TextEncoder().encode("file"), 0], "mode"], // RRQ without mode
    [[0, 1, ...new TextEncoder().encode("file")], "filename"], // not terminated
    [[0, 1, 0, ...new TextEncoder().encode("octet"), 0], "filename"], // empty name
    [[0, 1, 0x66, 0xff, 0xfe, 0, 0x6f, 0], "filename"], // invalid UTF-8
    [[0, 1, 0x66, 0, 0x6f, 0, 0x62, 0], "options"], // option without value
    [[0, 1, 0x66, 0, 0x6f, 0, 0x62, 0, 0x31], "options"], // value not terminated
  ];
  for (const [bytes, field] of cases) {
    assert.throws(() => decodePacket(new Uint8Array(bytes)), (err: unknown) => {
      assert.ok(err instanceof TftpDecodeError, `${bytes}: ${err}`);
      assert.equal(err.field, field, `${bytes}: ${err.message}`);
      return true;
    });
  }
});

Deno.test("packet: trailing NUL padding after options is tolerated; ERROR without terminator decodes", () => {
  const rrq = new Uint8Array([0, 1, 0x66, 0, 0x6f, 0, 0, 0, 0]);
  assert.deepEqual(decodePacket(rrq), { op: "rrq", filename: "f", mode: "o", options: [] });
  assert.deepEqual(decodePacket(new Uint8Array([0, 5, 0, 2, 0x78])), { op: "error", code: 2, message: "x" });
});

Deno.test("packet: decoding never throws anything but TftpDecodeError (seeded fuzz)", () => {
  let seed = 12345;
  const rand = () => (seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 4294967296;
  const base = [...readFixture("ovmf-rrq-tsize.bin")];
  for (let i = 0; i < 20000; i++) {
    let bytes: number[];
    if (i % 2 === 0) {
      bytes = Array.from({ length: Math.floor(rand() * 40) }, () => Math.floor(rand() * 256));
      if (bytes.length > 1 && rand() < 0.7) bytes[0] = 0, bytes[1] = 1 + Math.floor(rand() * 6);
    } else {
      bytes = base.slice(0, Math.floor(rand() * (base.length + 1)));
      for (let m = 0; m < 3; m++) {
        if (bytes.length > 0) bytes[Math.floor(rand() * bytes.length)] = Math.floor(rand() * 256);
      }
    }
    try {
      decodePacket(new Uint8Array(bytes));
    } catch (err) {
      assert.ok(err instanceof TftpDecodeError, `input ${bytes}: ${err}`);
    }
  }
});

Deno.test("netascii: LF becomes CR LF and CR becomes CR NUL", () => {
  const out = toNetascii(new TextEncoder().encode("a\nb\rc\r\n"));
  assert.deepEqual([...out], [0x61, 13, 10, 0x62, 13, 0, 0x63, 13, 0, 13, 10]);
});
