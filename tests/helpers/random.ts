/** Seeded, reproducible randomness for fuzz and model tests. */

/** xorshift32: tiny, seeded, reproducible. */
export function xorshift(seed: number) {
  let s = seed >>> 0 || 1;
  const next = () => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    return (s >>>= 0);
  };
  const below = (n: number) => next() % n;
  const bytes = (n: number) => {
    const out = new Uint8Array(n);
    for (let i = 0; i < n; i++) out[i] = next() & 255;
    return out;
  };
  return { next, below, bytes };
}

/** A seeded PRNG. */
export type Rng = ReturnType<typeof xorshift>;

/** Deterministic pseudo-random generator (mulberry32): floats in [0, 1). */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Writes `size` deterministic pseudo-random bytes to `path` in 1 MiB pieces. */
export async function writeRandomFile(path: string, size: number, seed = 1): Promise<void> {
  const next = prng(seed);
  using file = await Deno.open(path, { write: true, create: true, truncate: true });
  const piece = new Uint8Array(1 << 20);
  const words = new Uint32Array(piece.buffer);
  for (let done = 0; done < size;) {
    for (let i = 0; i < words.length; i++) words[i] = (next() * 4294967296) >>> 0;
    const n = Math.min(piece.length, size - done);
    let written = 0;
    while (written < n) written += await file.write(piece.subarray(written, n));
    done += n;
  }
}
