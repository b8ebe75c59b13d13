/**
 * ICMPv6 Neighbor Discovery codec for what `--ra` sends and hears (RFC 4861 §4.1, §4.2, §4.6): Router
 * Solicitation (133) and Router Advertisement (134) with the Source Link-Layer Address (1), Prefix
 * Information (3) and MTU (5) options; any other option is kept as raw bytes. Pure: `decodeNd(bytes)`
 * throws only `NdDecodeError`, the encoders only `NdEncodeError`.
 *
 * The checksum is the kernel's business (a raw ICMPv6 socket computes it on send and checks it on
 * receive), so it is kept as read and written as given (0 by default). Decoding is strict about
 * structure (header size, code 0, option lengths) and keeps every reserved bit, so every input that
 * decodes re-encodes to the same bytes.
 *
 * @example
 * ```ts
 * const wire = encodeRouterAdvert({
 *   curHopLimit: 64, managed: true, other: true, routerLifetime: 0, reachableTime: 0, retransTimer: 0,
 *   options: [{ kind: "prefix", prefixLength: 64, onLink: true, autonomous: false,
 *     validLifetime: 86400, preferredLifetime: 14400, prefix: "2001:db8::" }],
 * });
 * const ra = decodeNd(wire); // { type: 134, managed: true, ... }
 * ```
 * @module
 */
import { formatIpv6, parseIpv6 } from "./address.ts";

/** ICMPv6 types of this codec. */
export const NdType = { ROUTER_SOLICIT: 133, ROUTER_ADVERT: 134 } as const;

/** Neighbor Discovery option types this codec reads. */
export const NdOpt = { SOURCE_LL: 1, TARGET_LL: 2, PREFIX: 3, MTU: 5 } as const;

/** Router Advertisement flag bits (RFC 4861 §4.2). */
const FLAG_M = 0x80;
const FLAG_O = 0x40;
/** Prefix Information flag bits (RFC 4861 §4.6.2). */
const FLAG_L = 0x80;
const FLAG_A = 0x40;

/** Thrown for malformed input: `field` names the part (`"header"`, `"option 3 (prefix)"`), `reason` why. */
export class NdDecodeError extends Error {
  /** Which part of the input is wrong. */
  readonly field: string;
  /** What is wrong with it. */
  readonly reason: string;
  constructor(field: string, reason: string) {
    super(`bad ICMPv6 ${field}: ${reason}`);
    this.name = "NdDecodeError";
    this.field = field;
    this.reason = reason;
  }
}

/** Thrown when a value cannot be put on the wire: `field` names it. */
export class NdEncodeError extends Error {
  /** Which value is wrong. */
  readonly field: string;
  /** What is wrong with it. */
  readonly reason: string;
  constructor(field: string, reason: string) {
    super(`cannot encode ICMPv6 ${field}: ${reason}`);
    this.name = "NdEncodeError";
    this.field = field;
    this.reason = reason;
  }
}

/** Source (type 1) or Target (type 2) Link-Layer Address: the address padded to 8-byte units. */
export interface LinkLayerOption {
  kind: "source-ll" | "target-ll";
  /** The link-layer address; on decode every byte of the option (6 for Ethernet). */
  address: Uint8Array;
}

/** Prefix Information (type 3). */
export interface PrefixOption {
  kind: "prefix";
  prefixLength: number;
  /** L: the prefix is on-link. */
  onLink: boolean;
  /** A: hosts may form addresses in it (SLAAC). */
  autonomous: boolean;
  /** The other 6 flag bits as on the wire (R and reserved); default 0. */
  otherFlags?: number;
  /** Seconds; 0xffffffff is infinity. */
  validLifetime: number;
  preferredLifetime: number;
  /** Reserved2 as on the wire; default 0. */
  reserved?: number;
  /** The prefix (RFC 5952 text). */
  prefix: string;
}

/** MTU (type 5). */
export interface MtuOption {
  kind: "mtu";
  mtu: number;
  /** The 16 reserved bits as on the wire; default 0. */
  reserved?: number;
}

/** Any other option: its type and the bytes after the 2-byte header (length 8n - 2). */
export interface RawNdOption {
  kind: "raw";
  type: number;
  data: Uint8Array;
}

/** One Neighbor Discovery option. */
export type NdOption = LinkLayerOption | PrefixOption | MtuOption | RawNdOption;

/** A Router Solicitation (RFC 4861 §4.1). */
export interface RouterSolicit {
  type?: 133;
  /** The checksum as read (the kernel fills it in on send); default 0. */
  checksum?: number;
  /** The 32 reserved bits as on the wire; default 0. */
  reserved?: number;
  options: NdOption[];
}

/** A Router Advertisement (RFC 4861 §4.2). */
export interface RouterAdvert {
  type?: 134;
  /** The checksum as read (the kernel fills it in on send); default 0. */
  checksum?: number;
  /** Hop limit hosts should use (0: unspecified). */
  curHopLimit: number;
  /** M: addresses come from DHCPv6. */
  managed: boolean;
  /** O: other configuration (DNS, boot file URL) comes from DHCPv6. */
  other: boolean;
  /** The other 6 flag bits as on the wire (H, Prf, P, reserved); default 0. */
  otherFlags?: number;
  /** Seconds this router is a default router; 0: it is not one. */
  routerLifetime: number;
  /** Milliseconds (0: unspecified). */
  reachableTime: number;
  /** Milliseconds (0: unspecified). */
  retransTimer: number;
  options: NdOption[];
}

/** What {@linkcode decodeNd} returns. */
export type NdMessage = (RouterSolicit & { type: 133 }) | (RouterAdvert & { type: 134 });

const OPTION_NAMES: Readonly<Record<number, string>> = {
  1: "source-ll",
  2: "target-ll",
  3: "prefix",
  4: "redirected-header",
  5: "mtu",
  24: "route-info",
  25: "rdnss",
  31: "dnssl",
};

function optionField(type: number): string {
  return `option ${type} (${OPTION_NAMES[type] ?? "unknown"})`;
}

const u16 = (b: Uint8Array, at: number) => (b[at] << 8) | b[at + 1];
const u32 = (b: Uint8Array, at: number) =>
  ((b[at] << 24) | (b[at + 1] << 16) | (b[at + 2] << 8) | b[at + 3]) >>> 0;

function decodeOption(type: number, body: Uint8Array, field: string): NdOption {
  switch (type) {
    case NdOpt.SOURCE_LL:
    case NdOpt.TARGET_LL:
      return { kind: type === NdOpt.SOURCE_LL ? "source-ll" : "target-ll", address: body.slice() };
    case NdOpt.PREFIX: {
      if (body.length !== 30) throw new NdDecodeError(field, `length ${(body.length + 2) / 8}, must be 4`);
      if (body[0] > 128) throw new NdDecodeError(`${field} prefix length`, `${body[0]} is over 128`);
      return {
        kind: "prefix",
        prefixLength: body[0],
        onLink: (body[1] & FLAG_L) !== 0,
        autonomous: (body[1] & FLAG_A) !== 0,
        otherFlags: body[1] & ~(FLAG_L | FLAG_A),
        validLifetime: u32(body, 2),
        preferredLifetime: u32(body, 6),
        reserved: u32(body, 10),
        prefix: formatIpv6(body, 14),
      };
    }
    case NdOpt.MTU:
      if (body.length !== 6) throw new NdDecodeError(field, `length ${(body.length + 2) / 8}, must be 1`);
      return { kind: "mtu", reserved: u16(body, 0), mtu: u32(body, 2) };
    default:
      return { kind: "raw", type, data: body.slice() };
  }
}

function decodeOptions(bytes: Uint8Array, start: number): NdOption[] {
  const out: NdOption[] = [];
  for (let at = start; at < bytes.length;) {
    if (at + 2 > bytes.length) {
      throw new NdDecodeError("options", `1 stray byte where a 2-byte option header should be`);
    }
    const type = bytes[at];
    const units = bytes[at + 1];
    const field = optionField(type);
    if (units === 0) throw new NdDecodeError(field, "length 0 (RFC 4861 §4.6: discard the packet)");
    if (at + units * 8 > bytes.length) {
      throw new NdDecodeError(
        field,
        `length ${units * 8} runs ${at + units * 8 - bytes.length} bytes past the end`,
      );
    }
    out.push(decodeOption(type, bytes.subarray(at + 2, at + units * 8), field));
    at += units * 8;
  }
  return out;
}

/** Decodes a Router Solicitation or Advertisement (the ICMPv6 message); throws NdDecodeError if malformed. */
export function decodeNd(bytes: Uint8Array): NdMessage {
  if (bytes.length < 4) throw new NdDecodeError("header", `${bytes.length} bytes, ICMPv6 needs at least 4`);
  const type = bytes[0];
  if (type !== NdType.ROUTER_SOLICIT && type !== NdType.ROUTER_ADVERT) {
    throw new NdDecodeError("type", `${type} is not a Router Solicitation (133) or Advertisement (134)`);
  }
  if (bytes[1] !== 0) throw new NdDecodeError("code", `${bytes[1]}, must be 0`);
  const checksum = u16(bytes, 2);
  if (type === NdType.ROUTER_SOLICIT) {
    if (bytes.length < 8) {
      throw new NdDecodeError("header", `${bytes.length} bytes, a Router Solicitation has at least 8`);
    }
    return { type, checksum, reserved: u32(bytes, 4), options: decodeOptions(bytes, 8) };
  }
  if (bytes.length < 16) {
    throw new NdDecodeError("header", `${bytes.length} bytes, a Router Advertisement has at least 16`);
  }
  return {
    type,
    checksum,
    curHopLimit: bytes[4],
    managed: (bytes[5] & FLAG_M) !== 0,
    other: (bytes[5] & FLAG_O) !== 0,
    otherFlags: bytes[5] & ~(FLAG_M | FLAG_O),
    routerLifetime: u16(bytes, 6),
    reachableTime: u32(bytes, 8),
    retransTimer: u32(bytes, 12),
    options: decodeOptions(bytes, 16),
  };
}

function uint(v: unknown, bits: 8 | 16 | 32, field: string): number {
  if (typeof v !== "number" || !Number.isInteger(v) || v < 0 || v >= 2 ** bits) {
    throw new NdEncodeError(field, `${String(v)} is not an unsigned ${bits}-bit integer`);
  }
  return v;
}

function flagBits(v: number | undefined, mask: number, field: string): number {
  const bits = uint(v ?? 0, 8, field);
  if ((bits & mask) !== 0) throw new NdEncodeError(field, `${bits} sets bits given by their own fields`);
  return bits;
}

function put32(out: Uint8Array, at: number, v: number): void {
  out.set([v >>> 24, (v >>> 16) & 255, (v >>> 8) & 255, v & 255], at);
}

function encodeOption(o: NdOption, i: number): Uint8Array {
  const field = `options[${i}]`;
  switch (o?.kind) {
    case "source-ll":
    case "target-ll":
    case "raw": {
      const type = o.kind === "raw" ? uint(o.type, 8, `${field}.type`) : o.kind === "source-ll" ? 1 : 2;
      const body = o.kind === "raw" ? o.data : o.address;
      if (!(body instanceof Uint8Array)) throw new NdEncodeError(field, "value is not bytes");
      const units = Math.ceil((body.length + 2) / 8);
      if (units > 255) throw new NdEncodeError(field, `${body.length} bytes is over an option's 2038`);
      const out = new Uint8Array(units * 8);
      out.set([type, units]);
      out.set(body, 2);
      return out;
    }
    case "prefix": {
      const prefix = typeof o.prefix === "string" ? parseIpv6(o.prefix) : undefined;
      if (prefix === undefined) {
        throw new NdEncodeError(`${field}.prefix`, `not an IPv6 address: ${o.prefix}`);
      }
      const length = uint(o.prefixLength, 8, `${field}.prefixLength`);
      if (length > 128) throw new NdEncodeError(`${field}.prefixLength`, `${length} is over 128`);
      const out = new Uint8Array(32);
      const flags = flagBits(o.otherFlags, FLAG_L | FLAG_A, `${field}.otherFlags`) |
        (o.onLink ? FLAG_L : 0) | (o.autonomous ? FLAG_A : 0);
      out.set([NdOpt.PREFIX, 4, length, flags]);
      put32(out, 4, uint(o.validLifetime, 32, `${field}.validLifetime`));
      put32(out, 8, uint(o.preferredLifetime, 32, `${field}.preferredLifetime`));
      put32(out, 12, uint(o.reserved ?? 0, 32, `${field}.reserved`));
      out.set(prefix, 16);
      return out;
    }
    case "mtu": {
      const out = new Uint8Array(8);
      const reserved = uint(o.reserved ?? 0, 16, `${field}.reserved`);
      out.set([NdOpt.MTU, 1, reserved >> 8, reserved & 255]);
      put32(out, 4, uint(o.mtu, 32, `${field}.mtu`));
      return out;
    }
    default:
      throw new NdEncodeError(field, `unknown option kind ${String((o as { kind?: unknown })?.kind)}`);
  }
}

function withOptions(header: Uint8Array, options: readonly NdOption[]): Uint8Array {
  if (!Array.isArray(options)) throw new NdEncodeError("options", "not a list");
  const parts = options.map(encodeOption);
  const out = new Uint8Array(header.length + parts.reduce((n, p) => n + p.length, 0));
  out.set(header);
  let at = header.length;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** Encodes a Router Advertisement; throws NdEncodeError naming the field that is out of range. */
export function encodeRouterAdvert(ra: RouterAdvert): Uint8Array {
  const header = new Uint8Array(16);
  const checksum = uint(ra.checksum ?? 0, 16, "checksum");
  const routerLifetime = uint(ra.routerLifetime, 16, "routerLifetime");
  const flags = flagBits(ra.otherFlags, FLAG_M | FLAG_O, "otherFlags") | (ra.managed ? FLAG_M : 0) |
    (ra.other ? FLAG_O : 0);
  header.set([
    NdType.ROUTER_ADVERT,
    0,
    checksum >> 8,
    checksum & 255,
    uint(ra.curHopLimit, 8, "curHopLimit"),
  ]);
  header.set([flags, routerLifetime >> 8, routerLifetime & 255], 5);
  put32(header, 8, uint(ra.reachableTime, 32, "reachableTime"));
  put32(header, 12, uint(ra.retransTimer, 32, "retransTimer"));
  return withOptions(header, ra.options);
}

/** Encodes a Router Solicitation; throws NdEncodeError naming the field that is out of range. */
export function encodeRouterSolicit(rs: RouterSolicit): Uint8Array {
  const header = new Uint8Array(8);
  const checksum = uint(rs.checksum ?? 0, 16, "checksum");
  header.set([NdType.ROUTER_SOLICIT, 0, checksum >> 8, checksum & 255]);
  put32(header, 4, uint(rs.reserved ?? 0, 32, "reserved"));
  return withOptions(header, rs.options);
}

/** Encodes either message by its `type`. */
export function encodeNd(msg: NdMessage): Uint8Array {
  return msg.type === NdType.ROUTER_SOLICIT ? encodeRouterSolicit(msg) : encodeRouterAdvert(msg);
}

/** The Ethernet MAC `aa:bb:cc:dd:ee:ff` as the 6 bytes of a link-layer address option. */
export function macBytes(mac: string): Uint8Array {
  const parts = mac.split(":");
  if (parts.length !== 6 || parts.some((p) => !/^[0-9a-fA-F]{2}$/.test(p))) {
    throw new NdEncodeError("mac", `not a MAC address: ${mac}`);
  }
  return Uint8Array.from(parts, (p) => parseInt(p, 16));
}

/** The first option of `kind` in `msg`, typed. */
export function findNdOption<K extends NdOption["kind"]>(
  msg: { options: readonly NdOption[] },
  kind: K,
): (NdOption & { kind: K }) | undefined {
  return msg.options.find((o) => o.kind === kind) as (NdOption & { kind: K }) | undefined;
}
