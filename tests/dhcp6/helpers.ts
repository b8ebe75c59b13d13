/** Reading the DHCPv6 golden packets of `tests/fixtures/dhcp6/` (see its README.md). */
import { fixturesDir } from "../helpers/fixtures.ts";

/** The DHCPv6 fixtures directory, with a trailing slash. */
export function fixture6Dir(): string {
  return fixturesDir() + "dhcp6/";
}

/** The bytes of one DHCPv6 fixture. */
export function fixture6(name: string): Uint8Array {
  return Deno.readFileSync(fixture6Dir() + name);
}

/** The names of every `.bin` fixture, sorted. */
export function fixture6Names(): string[] {
  return [...Deno.readDirSync(fixture6Dir())].map((e) => e.name).filter((n) => n.endsWith(".bin")).sort();
}

/** Lower-case hex of bytes, for readable assertions. */
export function toHex(bytes: Uint8Array): string {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** Bytes from hex (spaces allowed). */
export function fromHex(text: string): Uint8Array {
  const h = text.replace(/\s+/g, "");
  return Uint8Array.from({ length: h.length / 2 }, (_, i) => parseInt(h.slice(2 * i, 2 * i + 2), 16));
}
