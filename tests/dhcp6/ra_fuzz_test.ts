/**
 * Fuzzing the Router Advertisement / Solicitation codec: seeded mutations of goldens (pypxe's own RA, a
 * radvd-like RA, a dnsmasq-like RA with RDNSS, solicitations) must decode or throw NdDecodeError, never
 * anything else; what decodes re-encodes to the very same bytes; the readers built on it
 * (`invalidSolicitation`, `advertiserOf`) never throw.
 */
import { equal, fail, ok } from "node:assert/strict";
import { decodeNd, encodeNd, encodeRouterAdvert, NdDecodeError, type NdMessage } from "../../src/dhcp6/ra.ts";
import { buildRouterAdvert, invalidSolicitation } from "../../src/dhcp6/ra_service.ts";
import { advertiserOf } from "../../src/dhcp6/probe6.ts";
import { type Rng, xorshift } from "../helpers/random.ts";

const ITERATIONS = 20_000;

const hex = (s: string) => Uint8Array.from(s.replace(/\s+/g, "").match(/../g) ?? [], (b) => parseInt(b, 16));
const toHex = (b: Uint8Array) => [...b].map((x) => x.toString(16).padStart(2, "0")).join("");

const SEEDS: Uint8Array[] = [
  // ra_test.ts's goldens: radvd-like RA (SLLA, prefix, MTU) and an RS with SLLA
  hex(`86 00 1234 40 c0 0708 0000ea60 000003e8 01 01 525400123456
    03 04 40 c0 00015180 00003840 00000000 fd000000000000000000000000000000 05 01 0000 000005dc`),
  hex(`85 00 abcd 00000000 01 01 525400123456`),
  encodeRouterAdvert(
    buildRouterAdvert({
      mac: "52:54:00:aa:bb:cc",
      prefix: "2001:db8::1",
      managed: true,
      other: true,
      autonomous: false,
    }),
  ),
  // dnsmasq-like: RDNSS (25), two prefixes, MTU, route information (24)
  hex(`86 00 0000 40 08 0000 00000000 00000000
    03 04 40 c0 00001c20 00000e10 00000000 fd00000000000000 0000000000000000
    03 04 40 80 00001c20 00000e10 00000000 20010db8000100000000000000000000
    19 03 0000 00000e10 fd000000000000000000000000000001
    18 03 30 08 00000708 20010db8000200000000000000000000
    05 01 0000 000005dc
    01 01 0a1b2c3d4e5f`),
  hex(`85 00 0000 00000000`),
];

/** Offsets of the option headers after the fixed header, bounded. */
function optionOffsets(b: Uint8Array): number[] {
  const out: number[] = [];
  for (let at = b[0] === 133 ? 8 : 16; at + 2 <= b.length && out.length < 64;) {
    out.push(at);
    if (b[at + 1] === 0) break;
    at += b[at + 1] * 8;
  }
  return out;
}

const MUTATIONS: ((b: Uint8Array, r: Rng) => Uint8Array)[] = [
  (b, r) => { // flip 1..8 bits
    const c = b.slice();
    for (let i = 1 + r.below(8); i > 0 && c.length > 0; i--) c[r.below(c.length)] ^= 1 << r.below(8);
    return c;
  },
  (b, r) => b.slice(0, r.below(b.length + 1)), // truncate anywhere
  (b, r) => { // an option length lies
    const c = b.slice();
    const offs = optionOffsets(c);
    if (offs.length === 0) return c;
    const at = offs[r.below(offs.length)] + 1;
    c[at] = [0, 1, c[at] - 1, c[at] + 1, 255, r.below(256)][r.below(6)] & 255;
    return c;
  },
  (b, r) => { // an option type changes (a prefix becomes an MTU, a raw option becomes a prefix...)
    const c = b.slice();
    const offs = optionOffsets(c);
    if (offs.length > 0) c[offs[r.below(offs.length)]] = [0, 1, 2, 3, 5, 25, r.below(256)][r.below(7)];
    return c;
  },
  (b, r) => { // insert or delete a byte
    const at = r.below(b.length + 1);
    return r.below(2)
      ? Uint8Array.of(...b.subarray(0, at), r.below(256), ...b.subarray(at))
      : Uint8Array.of(...b.subarray(0, at), ...b.subarray(at + 1));
  },
  (b, r) => { // repeat an option, or append a flood of small ones
    const offs = optionOffsets(b);
    if (offs.length === 0 || r.below(2) === 0) {
      const flood = new Uint8Array(8 * (100 + r.below(200)));
      for (let i = 0; i < flood.length; i += 8) flood.set([r.below(40), 1], i);
      return Uint8Array.of(...b, ...flood);
    }
    const at = offs[r.below(offs.length)];
    return Uint8Array.of(...b, ...b.subarray(at, Math.min(b.length, at + Math.max(8, b[at + 1] * 8))));
  },
  (b, r) => { // random bytes over the body
    const c = b.slice();
    if (c.length > 4) c.set(r.bytes(c.length - 4), 4);
    return c;
  },
  (b, r) => { // the type or code changes
    const c = b.slice();
    if (c.length > 1) c[r.below(2)] = [0, 1, 133, 134, 135, 255][r.below(6)];
    return c;
  },
];

/** decode returns or throws NdDecodeError; what decodes re-encodes to the same bytes; readers never throw. */
function check(input: Uint8Array, label: string): "decoded" | "rejected" {
  try {
    invalidSolicitation(input, "fe80::1", 255);
    invalidSolicitation(input, "::", 255);
    advertiserOf(input, "fe80::1", 255);
  } catch (e) {
    fail(`${label}: a reader threw ${e}`);
  }
  let msg: NdMessage;
  try {
    msg = decodeNd(input);
  } catch (e) {
    if (e instanceof NdDecodeError) return "rejected";
    fail(`${label}: decodeNd threw ${e}`);
  }
  let wire: Uint8Array;
  try {
    wire = encodeNd(msg);
  } catch (e) {
    fail(`${label}: encoding a decoded message threw ${e}`);
  }
  if (toHex(wire) !== toHex(input)) fail(`${label}: re-encoding changed the bytes`);
  return "decoded";
}

Deno.test(`fuzz: ${ITERATIONS} seeded mutations of RA/RS goldens decode or throw NdDecodeError`, () => {
  const r = xorshift(0x7261_6476);
  const counts = { decoded: 0, rejected: 0 };
  const kinds = new Array<number>(MUTATIONS.length).fill(0);
  let slowest = 0;
  const started = performance.now();
  for (let i = 0; i < ITERATIONS; i++) {
    let input: Uint8Array;
    if (r.below(20) === 0) input = r.bytes(r.below(300)); // pure garbage
    else {
      input = SEEDS[r.below(SEEDS.length)];
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
  // both paths and every mutation must be exercised, or the fuzzer tests nothing
  ok(counts.decoded > ITERATIONS / 10 && counts.rejected > ITERATIONS / 10, JSON.stringify(counts));
  ok(kinds.every((n) => n > ITERATIONS / 20), JSON.stringify(kinds));
  ok(slowest < 250, `one input took ${slowest} ms`);
});

Deno.test("fuzz: every seed survives every truncation and every single-byte value at each offset", () => {
  let decoded = 0;
  for (const [n, seed] of SEEDS.entries()) {
    for (let len = 0; len <= seed.length; len++) {
      if (check(seed.subarray(0, len), `seed ${n} [0, ${len})`) === "decoded") decoded++;
    }
    for (let at = 0; at < seed.length; at++) {
      for (const v of [0x00, 0x01, 0x03, 0x05, 0x80, 0x85, 0x86, 0xff]) {
        const c = seed.slice();
        c[at] = v;
        check(c, `seed ${n} byte ${at} = ${v}`);
      }
    }
  }
  ok(decoded >= SEEDS.length);
  equal(decodeNd(SEEDS[3]).options.length, 6);
});
