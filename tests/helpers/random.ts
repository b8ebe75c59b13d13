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
