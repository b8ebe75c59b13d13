import { deepStrictEqual, equal, fail } from "node:assert/strict";
import {
  decodeDhcp,
  DhcpDecodeError,
  DhcpEncodeError,
  type DhcpPacket,
  encodeDhcp,
} from "../../src/dhcp/packet.ts";
import { decodePxeOptions, Opt } from "../../src/dhcp/options.ts";
import { xorshift } from "../helpers/random.ts";
import { fixturesDir } from "../helpers/fixtures.ts";

const ITERATIONS = 20_000;

/** The DHCP fixtures. */
function fixtureDir(): string {
  return fixturesDir() + "dhcp/";
}

type Rng = ReturnType<typeof xorshift>;

/** Offsets of option length bytes in the main options area (walks until END or the end). */
function lengthOffsets(b: Uint8Array): number[] {
  const out: number[] = [];
  for (let at = 240; at + 1 < b.length && b[at] !== 255 && out.length < 512;) {
    if (b[at] === 0) {
      at++;
      continue;
    }
    out.push(at + 1);
    at += 2 + b[at + 1];
  }
  return out;
}

const MUTATIONS: ((b: Uint8Array, r: Rng) => Uint8Array)[] = [
  (b, r) => { // flip 1..8 bits
    const c = b.slice();
    for (let i = 1 + r.below(8); i > 0; i--) c[r.below(c.length)] ^= 1 << r.below(8);
    return c;
  },
  (b, r) => b.slice(0, r.below(b.length + 1)), // truncate anywhere
  (b, r) => b.slice(0, 240 + r.below(b.length - 239)), // truncate inside the options
  (b, r) => { // corrupt an option length
    const c = b.slice();
    const offs = lengthOffsets(c);
    if (offs.length) c[offs[r.below(offs.length)]] = r.below(256);
    return c;
  },
  (b, r) => { // overload 52 into the first option slot, garbage in file/sname
    const c = b.slice();
    c.set([52, 1, r.below(5)], 240);
    c.set(r.bytes(192), 44);
    return c;
  },
  (b, r) => { // random bytes after the cookie
    const c = b.slice();
    c.set(r.bytes(c.length - 240), 240);
    return c;
  },
  (b, r) => { // insert or delete a byte inside the options
    const at = 240 + r.below(b.length - 240);
    return r.below(2) ? Uint8Array.of(...b.subarray(0, at), r.below(256), ...b.subarray(at)) : Uint8Array.of(
      ...b.subarray(0, at),
      ...b.subarray(at + 1),
    );
  },
  (b, r) => { // hlen / op edge values
    const c = b.slice();
    c[r.below(2) ? 0 : 2] = [0, 1, 2, 3, 16, 17, 255][r.below(7)];
    return c;
  },
];

function withoutOverload(p: DhcpPacket): DhcpPacket {
  const options = new Map(
    [...p.options].filter(([code]) => code !== Opt.OVERLOAD).sort((a, b) => a[0] - b[0]),
  );
  return { ...p, options };
}

/** decode must return or throw DhcpDecodeError; a decoded packet must re-encode or throw DhcpEncodeError. */
function check(input: Uint8Array, r: Rng, label: string): "decoded" | "rejected" | "unencodable" {
  let p: DhcpPacket;
  try {
    p = decodeDhcp(input);
  } catch (e) {
    if (e instanceof DhcpDecodeError) return "rejected";
    fail(`${label}: decodeDhcp threw ${e}`);
  }
  const maxSize = r.below(3) === 0 ? 241 + r.below(1300) : undefined;
  let wire: Uint8Array;
  try {
    wire = encodeDhcp(p, { maxSize });
  } catch (e) {
    if (e instanceof DhcpEncodeError) return "unencodable";
    fail(`${label}: encodeDhcp threw ${e}`);
  }
  if (maxSize !== undefined && wire.length > maxSize) fail(`${label}: ${wire.length} > maxSize ${maxSize}`);
  deepStrictEqual(withoutOverload(decodeDhcp(wire)), withoutOverload(p), label);
  const pxe = p.options.get(Opt.VENDOR_SPECIFIC);
  try {
    if (pxe) decodePxeOptions(pxe);
  } catch (e) {
    if (!(e instanceof DhcpDecodeError)) fail(`${label}: decodePxeOptions threw ${e}`);
  }
  return "decoded";
}

Deno.test(`fuzz: ${ITERATIONS} random and mutated inputs only ever throw the codec's own errors`, () => {
  const dir = fixtureDir();
  const fixtures = [...Deno.readDirSync(dir)].filter((e) => e.name.endsWith(".bin")).map((e) =>
    Deno.readFileSync(dir + e.name)
  );
  equal(fixtures.length > 0, true);
  const r = xorshift(0x5eed1234);
  const counts = { decoded: 0, rejected: 0, unencodable: 0 };
  for (let i = 0; i < ITERATIONS; i++) {
    let input: Uint8Array;
    const kind = r.below(10);
    if (kind === 0) input = r.bytes(r.below(1600)); // pure garbage
    else if (kind === 1) { // garbage behind a valid header and cookie
      input = r.bytes(240 + r.below(1300));
      input.set([1 + r.below(2), 1, r.below(17)], 0);
      input.set([99, 130, 83, 99], 236);
    } else {
      input = fixtures[r.below(fixtures.length)];
      for (let m = 1 + r.below(3); m > 0; m--) {
        // Earlier mutations may have cut the packet short; mutations expect a full header and cookie.
        if (input.length >= 244) input = MUTATIONS[r.below(MUTATIONS.length)](input, r);
      }
    }
    counts[check(input, r, `iteration ${i}`)]++;
  }
  // The mix must exercise both paths, or the fuzzer tests nothing.
  equal(counts.decoded > ITERATIONS / 20 && counts.rejected > ITERATIONS / 20, true, JSON.stringify(counts));
});
