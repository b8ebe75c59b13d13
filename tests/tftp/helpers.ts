/**
 * Shared helpers of the TFTP tests: fixtures, sha256, polling. Servers, commands and random files come
 * from tests/helpers/ (servers.ts, run.ts, random.ts).
 * @module
 */
export { fixturesDir } from "../helpers/fixtures.ts";
import { fixturesDir } from "../helpers/fixtures.ts";

/** Reads one TFTP fixture by file name. */
export function readFixture(name: string): Uint8Array {
  return Deno.readFileSync(fixturesDir() + "tftp/" + name);
}

export { sha256, sha256File } from "../helpers/hash.ts";

/** Waits until `cond()` holds, polling every 10 ms, at most `ms`. */
export async function waitFor(cond: () => boolean, ms = 5000): Promise<boolean> {
  const end = performance.now() + ms;
  while (performance.now() < end) {
    if (cond()) return true;
    await new Promise((r) => setTimeout(r, 10));
  }
  return cond();
}
