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
import * as fz from "../helpers/fuzz.ts";

const ITERATIONS = 20_000;

const hex = (s: string) => Uint8Array.from(s.replace(/\s+/g, "").match(/../g) ?? [], (b) => parseInt(b, 16));

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

/** ND options: 1-byte type, 1-byte length in 8-byte units (header included); after an RS's 8 bytes or an RA's 16. */
const ND_OPTIONS = fz.tlvLayout((b) => b[0] === 133 ? 8 : 16, 1, 1, (n) => n * 8);

const MUTATIONS: fz.Mutation[] = [
  // repeat an option, or append a flood of small ones
  ...fz.tlvMutations(ND_OPTIONS, { size: 8, min: 100, spread: 200, header: (r) => [r.below(40), 1] }, 4),
  // an option type changes (a prefix becomes an MTU, a raw option becomes a prefix...)
  fz.setByte((c, r) => {
    const offs = fz.optionHeaders(c, ND_OPTIONS);
    return offs.length > 0 ? offs[r.below(offs.length)] : undefined;
  }, [0, 1, 2, 3, 5, 25, fz.ANY_BYTE]),
  fz.setByte((c, r) => c.length > 1 ? r.below(2) : undefined, [0, 1, 133, 134, 135, 255]), // the type or code changes
];

const ND: fz.Codec<NdMessage> = {
  decode: decodeNd,
  encode: encodeNd,
  error: NdDecodeError,
  name: "ND message",
};

/** decode returns or throws NdDecodeError; what decodes re-encodes to the same bytes; readers never throw. */
function check(input: Uint8Array, label: string): "decoded" | "rejected" {
  try {
    invalidSolicitation(input, "fe80::1", 255);
    invalidSolicitation(input, "::", 255);
    advertiserOf(input, "fe80::1", 255);
  } catch (e) {
    fail(`${label}: a reader threw ${e}`);
  }
  if (fz.roundTrip(input, label, ND) === undefined) return "rejected";
  return "decoded";
}

Deno.test(`fuzz: ${ITERATIONS} seeded mutations of RA/RS goldens decode or throw NdDecodeError`, () => {
  const run = fz.fuzz({
    seed: 0x7261_6476,
    iterations: ITERATIONS,
    seeds: SEEDS,
    mutations: MUTATIONS,
    garbage: 300,
    check,
  });
  fz.assertThorough(run);
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
