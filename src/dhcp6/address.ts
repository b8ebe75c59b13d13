/**
 * IPv6 address text <-> bytes (RFC 4291 §2.2 input, RFC 5952 canonical output) and the MAC behind a
 * modified EUI-64 interface identifier (RFC 4291 appendix A). Pure.
 *
 * @example
 * ```ts
 * formatIpv6(parseIpv6("2001:DB8:0:0:0:0:0:1")!); // "2001:db8::1"
 * macFromEui64("fe80::5054:ff:fe77:66"); // "52:54:00:77:00:66"
 * ```
 * @module
 */

const HEX = Array.from({ length: 256 }, (_, b) => b.toString(16).padStart(2, "0"));

/** Formats 16 bytes at `offset` as RFC 5952 text: lower case, no leading zeros, longest zero run as `::`. */
export function formatIpv6(bytes: Uint8Array, offset = 0): string {
  const groups: number[] = [];
  for (let i = 0; i < 8; i++) groups.push((bytes[offset + 2 * i] << 8) | bytes[offset + 2 * i + 1]);
  // the longest run of two or more zero groups, the first one on a tie (RFC 5952 §4.2)
  let best = -1;
  let bestLen = 1;
  for (let i = 0; i < 8;) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen) [best, bestLen] = [i, j - i];
    i = j;
  }
  const hex = (from: number, to: number) => groups.slice(from, to).map((g) => g.toString(16)).join(":");
  return best < 0 ? hex(0, 8) : `${hex(0, best)}::${hex(best + bestLen, 8)}`;
}

/** Parses IPv6 text (`::`, an IPv4 tail like `::ffff:192.0.2.1`; no zone id) into 16 bytes, else undefined. */
export function parseIpv6(text: string): Uint8Array | undefined {
  if (text.length > 45) return undefined;
  let groupsText = text;
  const tail: number[] = [];
  const v4 = /^(.*:)(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(text);
  if (v4) {
    const parts = v4.slice(2).map(Number);
    if (parts.some((p) => p > 255)) return undefined;
    tail.push((parts[0] << 8) | parts[1], (parts[2] << 8) | parts[3]);
    groupsText = v4[1].endsWith("::") ? v4[1] : v4[1].slice(0, -1);
  }
  const halves = groupsText.split("::");
  if (halves.length > 2) return undefined;
  const parse = (half: string): number[] | undefined => {
    if (half === "") return [];
    const out: number[] = [];
    for (const g of half.split(":")) {
      if (!/^[0-9A-Fa-f]{1,4}$/.test(g)) return undefined;
      out.push(parseInt(g, 16));
    }
    return out;
  };
  const head = parse(halves[0]);
  const rest = halves.length === 2 ? parse(halves[1]) : [];
  if (head === undefined || rest === undefined) return undefined;
  const known = head.length + rest.length + tail.length;
  if (halves.length === 2 ? known > 7 : known !== 8) return undefined;
  const groups = [...head, ...new Array<number>(8 - known).fill(0), ...rest, ...tail];
  const out = new Uint8Array(16);
  groups.forEach((g, i) => out.set([g >> 8, g & 255], 2 * i));
  return out;
}

/**
 * The MAC behind an address whose interface identifier is a modified EUI-64 (`xxxx:xxff:fexx:xxxx`,
 * as in SLAAC and most link-local addresses), lower case with colons; undefined for any other address.
 */
export function macFromEui64(address: string): string | undefined {
  const b = parseIpv6(address);
  if (b === undefined || b[11] !== 0xff || b[12] !== 0xfe) return undefined;
  const mac = [b[8] ^ 0x02, b[9], b[10], b[13], b[14], b[15]];
  return mac.map((x) => HEX[x]).join(":");
}
