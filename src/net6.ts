/**
 * IPv6 addresses of this host's interfaces and what `--ipv6` derives from them: the interface DHCPv6
 * serves (joined to ff02::1:2 there, replies scoped to it), the server's address in boot URLs (a global or
 * ULA address of that interface) and a default DHCPv6 pool in its /64. Pure but for
 * {@linkcode ipv6Interfaces}, which reads `Deno.networkInterfaces()`.
 *
 * @example
 * ```ts
 * const d = deriveIpv6({ iface: "", server: "", begin: "", end: "", full: true }, ipv6Interfaces());
 * d.iface; // "eth0"
 * d.server; // "2001:db8::1"
 * d.begin; // "2001:db8::1:0"
 * ```
 * @module
 */
import { formatIpv6, parseIpv6 } from "./dhcp6/address.ts";

/** One IPv6 address of an interface. */
export interface Ipv6Address {
  readonly name: string;
  /** Canonical text (RFC 5952), no zone. */
  readonly address: string;
  /** Prefix length (64 for a SLAAC or typical static address). */
  readonly prefix: number;
  /** The interface index (the scope of its link-local addresses). */
  readonly index: number;
  /** The interface's MAC, lower case with colons. */
  readonly mac: string;
}

/** Why {@linkcode deriveIpv6} cannot derive what it needs: one line naming the flag. */
export class Ipv6ConfigError extends Error {
  /** Creates the error. */
  constructor(message: string) {
    super(message);
    this.name = "Ipv6ConfigError";
  }
}

/** True for fe80::/10. */
export function isLinkLocal6(address: string): boolean {
  const b = parseIpv6(address.replace(/%.*$/, ""));
  return b !== undefined && b[0] === 0xfe && (b[1] & 0xc0) === 0x80;
}

/** True for an address a boot URL can name: not link-local, loopback, multicast or unspecified. */
export function isRoutable6(address: string): boolean {
  const b = parseIpv6(address);
  if (b === undefined || b[0] === 0xff || isLinkLocal6(address)) return false;
  const zeroHead = b.subarray(0, 15).every((x) => x === 0);
  return !(zeroHead && b[15] <= 1); // :: and ::1
}

/** Lists the IPv6 addresses of every non-loopback interface (needs `--allow-sys=networkInterfaces`). */
export function ipv6Interfaces(): Ipv6Address[] {
  return Deno.networkInterfaces()
    .filter((i) => i.family === "IPv6" && i.address !== "::1")
    .map((i) => ({
      name: i.name,
      address: formatIpv6(parseIpv6(i.address.replace(/%.*$/, ""))!),
      prefix: Number(/\/(\d+)$/.exec(i.cidr)?.[1] ?? 64),
      index: i.scopeid ?? 0,
      mac: i.mac.toLowerCase(),
    }));
}

/** What {@linkcode deriveIpv6} starts from: the settings as given ("" = derive). */
export interface Ipv6Given {
  /** INTERFACE. */
  iface: string;
  /** DHCP6_SERVER_IP. */
  server: string;
  /** DHCP6_OFFER_BEGIN / DHCP6_OFFER_END. */
  begin: string;
  end: string;
  /** True when a DHCPv6 pool is needed (full DHCPv6). */
  full: boolean;
}

/** The derived IPv6 settings. */
export interface Ipv6Derived {
  iface: string;
  /** The interface index (for the multicast join and link-local scopes). */
  index: number;
  server: string;
  begin: string;
  end: string;
}

/**
 * Fills in what the user left empty: the interface (the one non-loopback interface with a routable IPv6
 * address, when there is exactly one), the server address (the interface's first routable address) and
 * the pool (`<its /64>::1:0` - `::1:ffff`); checks the pool lies in the server's /64, in order, without
 * the server. Throws {@linkcode Ipv6ConfigError} with one line naming the flag to give.
 */
export function deriveIpv6(given: Ipv6Given, all: readonly Ipv6Address[]): Ipv6Derived {
  let name = given.iface;
  if (name === "") {
    const names = [...new Set(all.filter((a) => isRoutable6(a.address)).map((a) => a.name))];
    if (names.length !== 1) {
      throw new Ipv6ConfigError(
        names.length === 0
          ? "--ipv6: no interface has a global or ULA IPv6 address; add one (ip -6 addr add fd00::1/64 dev IFACE) or name the interface with --interface"
          : `--ipv6: several interfaces have IPv6 addresses (${
            names.join(", ")
          }); choose one with --interface`,
      );
    }
    name = names[0];
  }
  const mine = all.filter((a) => a.name === name);
  if (mine.length === 0) {
    throw new Ipv6ConfigError(`--ipv6: interface ${name} has no IPv6 address (not even link-local)`);
  }
  const routable = mine.filter((a) => isRoutable6(a.address));
  let server = given.server;
  if (server === "") {
    if (routable.length === 0) {
      throw new Ipv6ConfigError(
        `--ipv6: interface ${name} has only a link-local IPv6 address, which boot URLs cannot name; add a global or ULA address (ip -6 addr add fd00::1/64 dev ${name}) or give --dhcp6-server-ip`,
      );
    }
    server = routable[0].address;
  }
  const serverBytes = parseIpv6(server);
  if (serverBytes === undefined) {
    throw new Ipv6ConfigError(`--dhcp6-server-ip ${server}: not an IPv6 address`);
  }
  server = formatIpv6(serverBytes);
  const prefix64 = serverBytes.slice(0, 8);
  const inPrefix = (b: Uint8Array) => b.slice(0, 8).every((x, i) => x === prefix64[i]);
  const withSuffix = (hi: number, lo: number) => {
    const b = new Uint8Array(16);
    b.set(prefix64);
    b[12] = hi >> 8;
    b[13] = hi & 255;
    b[14] = lo >> 8;
    b[15] = lo & 255;
    return formatIpv6(b);
  };
  const begin = given.begin === "" ? withSuffix(1, 0) : given.begin;
  const end = given.end === "" ? withSuffix(1, 0xffff) : given.end;
  const index = mine[0].index;
  if (!given.full) return { iface: name, index, server, begin, end };
  const [b, e] = [parseIpv6(begin), parseIpv6(end)];
  if (b === undefined || e === undefined) throw new Ipv6ConfigError(`--dhcp6-begin/--dhcp6-end: not IPv6`);
  for (const [flag, bytes, text] of [["--dhcp6-begin", b, begin], ["--dhcp6-end", e, end]] as const) {
    if (!inPrefix(bytes)) {
      throw new Ipv6ConfigError(
        `${flag} ${text} is outside the /64 of the server's address ${server} (${withSuffix(0, 0)}/64)`,
      );
    }
  }
  const cmp = compare(b, e);
  if (cmp > 0) throw new Ipv6ConfigError(`--dhcp6-begin ${begin} is after --dhcp6-end ${end}`);
  if (compare(b, serverBytes) <= 0 && compare(serverBytes, e) <= 0) {
    throw new Ipv6ConfigError(
      `the server's IPv6 address ${server} lies inside the DHCPv6 range ${begin}-${end}`,
    );
  }
  return { iface: name, index, server, begin: formatIpv6(b), end: formatIpv6(e) };
}

function compare(a: Uint8Array, b: Uint8Array): number {
  for (let i = 0; i < 16; i++) if (a[i] !== b[i]) return a[i] - b[i];
  return 0;
}

/** The IPv6 lease file beside an IPv4 one: `leases.json` -> `leases6.json` ("" stays ""). */
export function leases6FileFor(leasesFile: string): string {
  if (leasesFile === "") return "";
  const m = /^(.*?)(\.[^./]*)?$/.exec(leasesFile)!;
  return `${m[1]}6${m[2] ?? ""}`;
}
