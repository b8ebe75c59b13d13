import { equal, fail, ok } from "node:assert/strict";
import {
  decodeDhcp6,
  Dhcp6DecodeError,
  type Dhcp6Packet,
  encodeDhcp6,
  unwrapRelay,
} from "../../src/dhcp6/packet.ts";
import * as accessors from "../../src/dhcp6/accessors.ts";
import { describeClient6 } from "../../src/dhcp6/policy.ts";
import { type HasOptions6, Opt6 } from "../../src/dhcp6/options.ts";
import { type Rng, xorshift } from "../helpers/random.ts";
import { fixture6, fixture6Names, toHex } from "./helpers.ts";

const ITERATIONS = 20_000;

/** Offsets of the 2-byte length fields of the top-level options (message or relay), bounded. */
function lengthOffsets(b: Uint8Array): number[] {
  const out: number[] = [];
  const start = b[0] === 12 || b[0] === 13 ? 34 : 4;
  for (let at = start; at + 4 <= b.length && out.length < 64;) {
    out.push(at + 2);
    at += 4 + ((b[at + 2] << 8) | b[at + 3]);
  }
  return out;
}

/** Wraps `inner` in a RELAY-FORW header (random addresses) with option 9, or a lying option 9 length. */
function relayAround(inner: Uint8Array, r: Rng, lie: boolean): Uint8Array {
  const out = new Uint8Array(38 + inner.length);
  out.set([12, r.below(256)]);
  out.set(r.bytes(32), 2);
  const len = lie ? r.below(0x10000) : inner.length;
  out.set([0, 9, len >> 8, len & 255], 34);
  out.set(inner, 38);
  return out;
}

const MUTATIONS: ((b: Uint8Array, r: Rng) => Uint8Array)[] = [
  (b, r) => { // flip 1..8 bits
    const c = b.slice();
    for (let i = 1 + r.below(8); i > 0 && c.length > 0; i--) c[r.below(c.length)] ^= 1 << r.below(8);
    return c;
  },
  (b, r) => b.slice(0, r.below(b.length + 1)), // truncate anywhere
  (b, r) => { // a top-level option length lies
    const c = b.slice();
    const offs = lengthOffsets(c);
    if (offs.length === 0) return c;
    const at = offs[r.below(offs.length)];
    const old = (c[at] << 8) | c[at + 1];
    const len = [0, 1, old - 1, old + 1, 0xffff, r.below(0x10000)][r.below(6)] & 0xffff;
    c.set([len >> 8, len & 255], at);
    return c;
  },
  (b, r) => { // a length byte inside an option value (IA_NA sub-options, vendor class strings) lies
    const c = b.slice();
    if (c.length > 8) c[8 + r.below(c.length - 8)] = [0, 1, 0xff, r.below(256)][r.below(4)];
    return c;
  },
  (b, r) => { // insert or delete a byte
    const at = r.below(b.length + 1);
    return r.below(2)
      ? Uint8Array.of(...b.subarray(0, at), r.below(256), ...b.subarray(at))
      : Uint8Array.of(...b.subarray(0, at), ...b.subarray(at + 1));
  },
  (b, r) => { // nested relay bomb: 1..12 relay headers, sometimes one lying about option 9's length
    let c = b;
    const lieAt = r.below(3) === 0 ? r.below(12) : -1;
    for (let i = 0, n = 1 + r.below(12); i < n; i++) c = relayAround(c, r, i === lieAt);
    return c;
  },
  (b, r) => { // repeat an option (second Relay Message, second IA_NA...) or append an empty-option flood
    const offs = lengthOffsets(b);
    if (offs.length === 0 || r.below(2) === 0) {
      const flood = new Uint8Array(4 * (400 + r.below(200)));
      for (let i = 0; i < flood.length; i += 4) flood[i + 1] = r.below(100);
      return Uint8Array.of(...b, ...flood);
    }
    const at = offs[r.below(offs.length)] - 2;
    const end = Math.min(b.length, at + 4 + ((b[at + 2] << 8) | b[at + 3]));
    return Uint8Array.of(...b, ...b.subarray(at, end));
  },
  (b, r) => { // random bytes over the options
    const c = b.slice();
    if (c.length > 4) c.set(r.bytes(c.length - 4), 4);
    return c;
  },
  (b, r) => { // the message type becomes a relay type (and back), or 0
    const c = b.slice();
    if (c.length > 0) c[0] = [0, 1, 7, 12, 13, 255][r.below(6)];
    return c;
  },
];

/** Reads every typed view of a message's options: each must return or throw Dhcp6DecodeError. */
function readAll(pkt: Dhcp6Packet, label: string): void {
  const { message } = unwrapRelay(pkt);
  const lists: HasOptions6[] = [message];
  const reads: ((p: HasOptions6) => unknown)[] = Object.values(accessors);
  for (const list of lists.slice(0, 16)) {
    for (const read of reads) {
      try {
        const value = read(list);
        if (read === accessors.iaNas) lists.push(...(value as HasOptions6[]));
      } catch (e) {
        if (!(e instanceof Dhcp6DecodeError)) fail(`${label}: ${read.name} threw ${e}`);
      }
    }
  }
  try {
    describeClient6(pkt, { sourceAddress: "fe80::5054:ff:fe77:66" });
  } catch (e) {
    fail(`${label}: describeClient6 threw ${e}`);
  }
}

/** decode returns or throws Dhcp6DecodeError; what decodes re-encodes to the very same bytes. */
function check(input: Uint8Array, label: string): "decoded" | "rejected" {
  let pkt: Dhcp6Packet;
  try {
    pkt = decodeDhcp6(input);
  } catch (e) {
    if (e instanceof Dhcp6DecodeError) return "rejected";
    fail(`${label}: decodeDhcp6 threw ${e}`);
  }
  let wire: Uint8Array;
  try {
    wire = encodeDhcp6(pkt);
  } catch (e) {
    fail(`${label}: encodeDhcp6 of a decoded packet threw ${e}`);
  }
  if (wire.length !== input.length || toHex(wire) !== toHex(input)) {
    fail(`${label}: re-encoding changed the bytes`);
  }
  readAll(pkt, label);
  return "decoded";
}

Deno.test(`fuzz: ${ITERATIONS} seeded mutations of the DHCPv6 goldens decode or throw Dhcp6DecodeError`, () => {
  const seeds = fixture6Names().map(fixture6);
  ok(seeds.length >= 10);
  const r = xorshift(0x6d6c6436);
  const counts = { decoded: 0, rejected: 0 };
  const kinds = new Array<number>(MUTATIONS.length).fill(0);
  let slowest = 0;
  const started = performance.now();
  for (let i = 0; i < ITERATIONS; i++) {
    let input: Uint8Array;
    if (r.below(20) === 0) input = r.bytes(r.below(600)); // pure garbage
    else {
      input = seeds[r.below(seeds.length)];
      for (let m = 1 + r.below(3); m > 0; m--) {
        const k = r.below(MUTATIONS.length);
        kinds[k]++;
        input = MUTATIONS[k](input, r);
      }
    }
    const t = performance.now();
    counts[check(input, `iteration ${i} (${toHex(input.subarray(0, 48))}...)`)]++;
    slowest = Math.max(slowest, performance.now() - t);
  }
  const seconds = (performance.now() - started) / 1000;
  console.log(
    `fuzz: ${JSON.stringify(counts)}, slowest input ${slowest.toFixed(1)} ms, ${seconds.toFixed(1)} s`,
  );
  // the mix must exercise both paths and every mutation, or the fuzzer tests nothing
  ok(counts.decoded > ITERATIONS / 10 && counts.rejected > ITERATIONS / 10, JSON.stringify(counts));
  ok(kinds.every((n) => n > ITERATIONS / 20), JSON.stringify(kinds));
  ok(slowest < 250, `one input took ${slowest} ms`);
});

Deno.test("fuzz: every golden survives every single truncation and every single-byte value at each offset", () => {
  let decoded = 0;
  for (const name of fixture6Names()) {
    const bytes = fixture6(name);
    for (let n = 0; n <= bytes.length; n++) {
      if (check(bytes.subarray(0, n), `${name}[0, ${n})`) === "decoded") decoded++;
    }
    for (let at = 0; at < bytes.length; at++) {
      for (const v of [0x00, 0x01, 0x09, 0x0c, 0x7f, 0xff]) {
        const c = bytes.slice();
        c[at] = v;
        check(c, `${name} byte ${at} = ${v}`);
      }
    }
  }
  ok(decoded > 0);
  equal(Opt6.RELAY_MSG, 9);
});
