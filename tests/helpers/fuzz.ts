/**
 * Seeded mutation fuzzing for the codec tests: generic mutation operators ({@linkcode flipBits},
 * {@linkcode truncate}, {@linkcode insertOrDelete}, {@linkcode randomBytesFrom}, {@linkcode setByte}, and
 * for type-length-value options {@linkcode lengthLie} and {@linkcode repeatOrFlood} over a
 * {@linkcode TlvLayout}) and the driver {@linkcode fuzz}: pick a seed, apply 1..3 mutations, check it,
 * count decoded/rejected, time the slowest input. Protocol-specific operators stay in their test and are
 * passed in with the generic ones. Randomness: xorshift ({@linkcode Rng}, tests/helpers/random.ts).
 *
 * ```ts
 * const run = fuzz({ seed: 0x7261_6476, iterations: 20_000, seeds, mutations, garbage: 300, check });
 * assertThorough(run);
 * ```
 * @module
 */
import { fail, ok } from "node:assert/strict";
import { type Rng, xorshift } from "./random.ts";

/** One mutation operator: returns a new array (or `b` itself), never changes `b`. */
export type Mutation = (b: Uint8Array, r: Rng) => Uint8Array;

/** Flips 1..8 random bits. */
export const flipBits: Mutation = (b, r) => {
  const c = b.slice();
  for (let i = 1 + r.below(8); i > 0 && c.length > 0; i--) c[r.below(c.length)] ^= 1 << r.below(8);
  return c;
};

/** Cuts anywhere (also to nothing or not at all). */
export const truncate: Mutation = (b, r) => b.slice(0, r.below(b.length + 1));

/** Inserts a random byte or deletes one. */
export const insertOrDelete: Mutation = (b, r) => {
  const at = r.below(b.length + 1);
  return r.below(2)
    ? Uint8Array.of(...b.subarray(0, at), r.below(256), ...b.subarray(at))
    : Uint8Array.of(...b.subarray(0, at), ...b.subarray(at + 1));
};

/** Random bytes over everything from `offset` on (when there is anything past it). */
export function randomBytesFrom(offset: number): Mutation {
  return (b, r) => {
    const c = b.slice();
    if (c.length > offset) c.set(r.bytes(c.length - offset), offset);
    return c;
  };
}

/** In {@linkcode setByte}'s values: a random byte. */
export const ANY_BYTE = -1;

/** Sets the byte `where` picks (none when it returns undefined) to one of `values` ({@linkcode ANY_BYTE}: random). */
export function setByte(
  where: (b: Uint8Array, r: Rng) => number | undefined,
  values: readonly number[],
): Mutation {
  return (b, r) => {
    const c = b.slice();
    const at = where(c, r);
    if (at === undefined) return c;
    const v = values[r.below(values.length)];
    c[at] = v === ANY_BYTE ? r.below(256) : v;
    return c;
  };
}

/** Where a protocol's type-length-value options stand. */
export interface TlvLayout {
  /** Offset of the first option (after the fixed header). */
  start(b: Uint8Array): number;
  /** Offset of the length field in an option header; the header ends after it. */
  lengthAt: number;
  /** Width of the length field. */
  lengthBytes: 1 | 2;
  /** The whole size of an option whose length field says `length`; 0 ends the walk. */
  size(length: number): number;
}

/** A {@linkcode TlvLayout} from its parts, in the order of its fields. */
export function tlvLayout(
  start: (b: Uint8Array) => number,
  lengthAt: number,
  lengthBytes: 1 | 2,
  size: (length: number) => number,
): TlvLayout {
  return { start, lengthAt, lengthBytes, size };
}

function readLength(b: Uint8Array, at: number, bytes: 1 | 2): number {
  return bytes === 1 ? b[at] : (b[at] << 8) | b[at + 1];
}

/** Offsets of the option headers of `b` (at most 64), following the length fields as they say. */
export function optionHeaders(b: Uint8Array, layout: TlvLayout): number[] {
  const out: number[] = [];
  const header = layout.lengthAt + layout.lengthBytes;
  for (let at = layout.start(b); at + header <= b.length && out.length < 64;) {
    out.push(at);
    const size = layout.size(readLength(b, at + layout.lengthAt, layout.lengthBytes));
    if (size === 0) break;
    at += size;
  }
  return out;
}

/** One option's length lies: 0, 1, one less, one more, the maximum or random. */
export function lengthLie(layout: TlvLayout): Mutation {
  const max = layout.lengthBytes === 1 ? 0xff : 0xffff;
  return (b, r) => {
    const c = b.slice();
    const offs = optionHeaders(c, layout);
    if (offs.length === 0) return c;
    const at = offs[r.below(offs.length)] + layout.lengthAt;
    const old = readLength(c, at, layout.lengthBytes);
    const len = [0, 1, old - 1, old + 1, max, r.below(max + 1)][r.below(6)] & max;
    if (layout.lengthBytes === 1) c[at] = len;
    else c.set([len >> 8, len & 255], at);
    return c;
  };
}

/** A flood of small options: `min + random(spread)` options of `size` bytes, each starting `header(r)`. */
export interface Flood {
  size: number;
  min: number;
  spread: number;
  header: (r: Rng) => number[];
}

/** Repeats an option at the end, or (half the time, or when there is none) appends a {@linkcode Flood}. */
export function repeatOrFlood(layout: TlvLayout, flood: Flood): Mutation {
  const header = layout.lengthAt + layout.lengthBytes;
  return (b, r) => {
    const offs = optionHeaders(b, layout);
    if (offs.length === 0 || r.below(2) === 0) {
      const extra = new Uint8Array(flood.size * (flood.min + r.below(flood.spread)));
      for (let i = 0; i < extra.length; i += flood.size) extra.set(flood.header(r), i);
      return Uint8Array.of(...b, ...extra);
    }
    const at = offs[r.below(offs.length)];
    const size = Math.max(header, layout.size(readLength(b, at + layout.lengthAt, layout.lengthBytes)));
    return Uint8Array.of(...b, ...b.subarray(at, Math.min(b.length, at + size)));
  };
}

/**
 * The generic operators for a TLV protocol, in this order: {@linkcode flipBits}, {@linkcode truncate},
 * {@linkcode lengthLie}, {@linkcode insertOrDelete}, {@linkcode repeatOrFlood}, random bytes from
 * `bodyFrom` on. A test appends its protocol's own.
 */
export function tlvMutations(layout: TlvLayout, flood: Flood, bodyFrom: number): Mutation[] {
  return [
    flipBits,
    truncate,
    lengthLie(layout),
    insertOrDelete,
    repeatOrFlood(layout, flood),
    randomBytesFrom(bodyFrom),
  ];
}

/** A codec under test: what it is called in messages, and the error its decoder may throw. */
export interface Codec<T> {
  decode(bytes: Uint8Array): T;
  encode(value: T): Uint8Array;
  // deno-lint-ignore no-explicit-any
  error: new (...args: any[]) => Error;
  name: string;
}

/**
 * Decodes `input`: undefined when the codec rejects it with its own error; fails the test on any other
 * error, when encoding what decoded throws, or when that changes the bytes. Otherwise the decoded value.
 */
export function roundTrip<T>(input: Uint8Array, label: string, codec: Codec<T>): T | undefined {
  let value: T;
  try {
    value = codec.decode(input);
  } catch (e) {
    if (e instanceof codec.error) return undefined;
    fail(`${label}: decoding ${codec.name} threw ${e}`);
  }
  let wire: Uint8Array;
  try {
    wire = codec.encode(value);
  } catch (e) {
    fail(`${label}: encoding a decoded ${codec.name} threw ${e}`);
  }
  if (wire.length !== input.length || hex(wire) !== hex(input)) {
    fail(`${label}: re-encoding changed the bytes`);
  }
  return value;
}

/** What {@linkcode fuzz} found. */
export interface FuzzRun {
  iterations: number;
  counts: { decoded: number; rejected: number };
  /** How often each mutation was applied, by index. */
  kinds: number[];
  /** Milliseconds of the slowest input. */
  slowest: number;
  seconds: number;
}

const hex = (b: Uint8Array) => Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");

/**
 * Runs `iterations` inputs through `check`: one in 20 is garbage (random bytes, below `garbage` long), the
 * rest a random seed with 1..3 random mutations. `check` fails the test itself on a wrong outcome.
 */
export function fuzz(opts: {
  seed: number;
  iterations: number;
  seeds: readonly Uint8Array[];
  mutations: readonly Mutation[];
  garbage: number;
  check: (input: Uint8Array, label: string) => "decoded" | "rejected";
}): FuzzRun {
  const { iterations, seeds, mutations } = opts;
  const r = xorshift(opts.seed);
  const counts = { decoded: 0, rejected: 0 };
  const kinds = new Array<number>(mutations.length).fill(0);
  let slowest = 0;
  const started = performance.now();
  for (let i = 0; i < iterations; i++) {
    let input: Uint8Array;
    if (r.below(20) === 0) input = r.bytes(r.below(opts.garbage)); // pure garbage
    else {
      input = seeds[r.below(seeds.length)];
      for (let m = 1 + r.below(3); m > 0; m--) {
        const k = r.below(mutations.length);
        kinds[k]++;
        input = mutations[k](input, r);
      }
    }
    const t = performance.now();
    counts[opts.check(input, `iteration ${i} (${hex(input.subarray(0, 48))}...)`)]++;
    slowest = Math.max(slowest, performance.now() - t);
  }
  return { iterations, counts, kinds, slowest, seconds: (performance.now() - started) / 1000 };
}

/**
 * Logs the run and asserts it was thorough: both paths over a tenth of the inputs, every mutation over a
 * twentieth, no input slower than 250 ms (or the fuzzer tests nothing).
 */
export function assertThorough(run: FuzzRun): void {
  const { iterations, counts, kinds, slowest } = run;
  console.log(
    `fuzz: ${JSON.stringify(counts)}, slowest input ${slowest.toFixed(1)} ms, ${run.seconds.toFixed(1)} s`,
  );
  ok(counts.decoded > iterations / 10 && counts.rejected > iterations / 10, JSON.stringify(counts));
  ok(kinds.every((n) => n > iterations / 20), JSON.stringify(kinds));
  ok(slowest < 250, `one input took ${slowest} ms`);
}
