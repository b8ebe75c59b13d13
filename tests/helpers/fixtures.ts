/**
 * Where the golden packets captured from real firmware live: `tests/fixtures/` in this repository (see its
 * README.md for what each file is and how it was captured). Nothing outside the repository is read.
 * @module
 */

/** The fixtures directory, with a trailing slash (`<repo>/tests/fixtures/`). */
export function fixturesDir(): string {
  return new URL("../fixtures/", import.meta.url).pathname;
}
