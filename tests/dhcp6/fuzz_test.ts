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
import * as fz from "../helpers/fuzz.ts";
import type { Rng } from "../helpers/random.ts";
import { fixture6, fixture6Names } from "./helpers.ts";

const ITERATIONS = 20_000;

/** DHCPv6 options: 2-byte code, 2-byte length, the value; after a relay's 34-byte header or a message's 4. */
const DHCP6_OPTIONS = fz.tlvLayout((b) => b[0] === 12 || b[0] === 13 ? 34 : 4, 2, 2, (n) => 4 + n);

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

const MUTATIONS: fz.Mutation[] = [
  // repeat an option (second Relay Message, second IA_NA...) or append an empty-option flood
  ...fz.tlvMutations(DHCP6_OPTIONS, { size: 4, min: 400, spread: 200, header: (r) => [0, r.below(100)] }, 4),
  // a length byte inside an option value (IA_NA sub-options, vendor class strings) lies
  fz.setByte((c, r) => c.length > 8 ? 8 + r.below(c.length - 8) : undefined, [0, 1, 0xff, fz.ANY_BYTE]),
  (b, r) => { // nested relay bomb: 1..12 relay headers, sometimes one lying about option 9's length
    let c = b;
    const lieAt = r.below(3) === 0 ? r.below(12) : -1;
    for (let i = 0, n = 1 + r.below(12); i < n; i++) c = relayAround(c, r, i === lieAt);
    return c;
  },
  // the message type becomes a relay type (and back), or 0
  fz.setByte((c) => c.length > 0 ? 0 : undefined, [0, 1, 7, 12, 13, 255]),
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

const DHCP6: fz.Codec<Dhcp6Packet> = {
  decode: decodeDhcp6,
  encode: encodeDhcp6,
  error: Dhcp6DecodeError,
  name: "DHCPv6",
};

/** decode returns or throws Dhcp6DecodeError; what decodes re-encodes to the very same bytes. */
function check(input: Uint8Array, label: string): "decoded" | "rejected" {
  const pkt = fz.roundTrip(input, label, DHCP6);
  if (pkt === undefined) return "rejected";
  readAll(pkt, label);
  return "decoded";
}

Deno.test(`fuzz: ${ITERATIONS} seeded mutations of the DHCPv6 goldens decode or throw Dhcp6DecodeError`, () => {
  const seeds = fixture6Names().map(fixture6);
  ok(seeds.length >= 10);
  const run = fz.fuzz({
    seed: 0x6d6c6436,
    iterations: ITERATIONS,
    seeds,
    mutations: MUTATIONS,
    garbage: 600,
    check,
  });
  fz.assertThorough(run);
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
