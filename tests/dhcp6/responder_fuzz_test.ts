import { equal, ok } from "node:assert/strict";
import { decodeDhcp6 } from "../../src/dhcp6/packet.ts";
import { xorshift } from "../helpers/random.ts";
import { fixture6, toHex } from "./helpers.ts";
import { CLIENT, memoryLog, MessageType6 as T, only, responder } from "./responder_helpers.ts";

const ITERATIONS = 10_000;

const SEEDS = [
  "ovmf-pxe6-solicit.bin",
  "ovmf-http6-solicit.bin",
  "ipxe-efi-solicit6.bin",
  "ovmf-ip6-solicit.bin",
];

type Rng = ReturnType<typeof xorshift>;

/** Offsets of the top-level options' 2-byte length fields (bounded). */
function lengthOffsets(b: Uint8Array): number[] {
  const out: number[] = [];
  for (let at = 4; at + 4 <= b.length && out.length < 64;) {
    out.push(at + 2);
    at += 4 + ((b[at + 2] << 8) | b[at + 3]);
  }
  return out;
}

const MUTATIONS: ((b: Uint8Array, r: Rng) => Uint8Array)[] = [
  (b, r) => { // flip bits
    const c = b.slice();
    for (let i = 1 + r.below(8); i > 0; i--) c[r.below(c.length)] ^= 1 << r.below(8);
    return c;
  },
  (b, r) => b.slice(0, r.below(b.length + 1)), // truncate
  (b, r) => { // an option length lies
    const c = b.slice();
    const offs = lengthOffsets(c);
    if (offs.length === 0) return c;
    const at = offs[r.below(offs.length)];
    const len = [0, 1, 3, 11, 0xffff, r.below(0x10000)][r.below(6)];
    c.set([len >> 8, len & 255], at);
    return c;
  },
  (b, r) => { // a byte inside option values (IA_NA, DUID, vendor class lengths)
    const c = b.slice();
    c[4 + r.below(c.length - 4)] = [0, 1, 2, 3, 4, 0xff, r.below(256)][r.below(7)];
    return c;
  },
  (b, r) => { // repeat an option
    const offs = lengthOffsets(b);
    if (offs.length === 0) return b;
    const at = offs[r.below(offs.length)] - 2;
    const end = Math.min(b.length, at + 4 + ((b[at + 2] << 8) | b[at + 3]));
    return Uint8Array.of(...b, ...b.subarray(at, end));
  },
  (b, r) => { // message type: any client or server type, relay, 0, 255
    const c = b.slice();
    c[0] = r.below(16) === 0 ? 255 : r.below(15);
    return c;
  },
  (b, r) => { // wrap in a RELAY-FORW
    const out = new Uint8Array(38 + b.length);
    out.set([12, r.below(3)]);
    out.set(r.bytes(32), 2);
    const len = r.below(4) === 0 ? r.below(0x10000) : b.length;
    out.set([0, 9, len >> 8, len & 255], 34);
    out.set(b, 38);
    return out;
  },
  (b, r) => { // add an option with random code and content (rapid commit, server id, IA_NA, 15, 16, 61...)
    const code = [2, 3, 5, 13, 14, 15, 16, 61, 79, r.below(100)][r.below(10)];
    const data = r.bytes(r.below(40));
    return Uint8Array.of(...b, code >> 8, code & 255, data.length >> 8, data.length, ...data);
  },
];

for (const mode of ["full", "proxy"] as const) {
  Deno.test(`responder6 fuzz (${mode}): ${ITERATIONS} mutated Solicits never throw; the next Solicit is answered`, () => {
    const log = memoryLog();
    const r = responder({ mode, pool: { begin: "2001:db8:77::1:0", end: "2001:db8:77::ffff:ffff" }, log });
    const seeds = SEEDS.map(fixture6);
    const rng = xorshift(mode === "full" ? 0x5eed6 : 0x5eed7);
    let answered = 0;
    for (let i = 0; i < ITERATIONS; i++) {
      let input = seeds[rng.below(seeds.length)];
      for (let m = 1 + rng.below(3); m > 0; m--) input = MUTATIONS[rng.below(MUTATIONS.length)](input, rng);
      const from = rng.below(8) === 0 ? { ...CLIENT, on: "proxy" as const } : CLIENT;
      let out;
      try {
        out = r.handle(input, from);
      } catch (e) {
        throw new Error(`iteration ${i} (${toHex(input.subarray(0, 64))}...): handle threw ${e}`);
      }
      for (const o of out) decodeDhcp6(o.bytes); // what we send decodes
      answered += out.length;
    }
    // handle() turned every failure into a debug line: a warning about a failed message is a bug
    const failed = log.lines.filter((l) => l.startsWith("warn dropped"));
    equal(failed.length, 0, failed.slice(0, 3).join("\n"));
    ok(answered > ITERATIONS / 20, `only ${answered} answers`);
    const next = only(r.handle(fixture6("ovmf-pxe6-solicit.bin"), CLIENT));
    equal(next.type, T.ADVERTISE);
    console.log(`responder6 fuzz (${mode}): ${answered} answers to ${ITERATIONS} mutated Solicits`);
  });
}
