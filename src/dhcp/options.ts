/**
 * DHCP option table (RFC 2132, RFC 4578, PXE 2.1, iPXE), typed value codecs, PXE option 43 sub-options
 * and small accessors over a packet's raw option map. Pure: no I/O, no clocks, no logging. It is long
 * because the table is: one row per option pypxe reads or writes, each with its codec.
 * @module
 */

/** Raw option values by code, in arrival (or insertion) order. */
export type OptionMap = Map<number, Uint8Array>;

/** Anything carrying a raw option map (a decoded `DhcpPacket` does). */
export interface HasOptions {
  options: OptionMap;
}

/** Thrown for any malformed DHCP input: the packet, an option value or a PXE sub-option. */
export class DhcpDecodeError extends Error {
  /** Which part of the input is wrong, e.g. `"cookie"` or `"option 52"`. */
  readonly field: string;
  /** What is wrong with it. */
  readonly reason: string;
  constructor(field: string, reason: string) {
    super(`bad DHCP ${field}: ${reason}`);
    this.name = "DhcpDecodeError";
    this.field = field;
    this.reason = reason;
  }
}

/** Thrown when a value cannot be put on the wire (too long, wrong type, does not fit maxSize). */
export class DhcpEncodeError extends Error {
  /** Which part of the output is wrong, e.g. `"file"` or `"option 3"`. */
  readonly field: string;
  /** What is wrong with it. */
  readonly reason: string;
  constructor(field: string, reason: string) {
    super(`cannot encode DHCP ${field}: ${reason}`);
    this.name = "DhcpEncodeError";
    this.field = field;
    this.reason = reason;
  }
}

/** How an option's value is laid out on the wire. */
export type OptionType =
  | "none" // pad/end: no value
  | "flag" // zero-length presence flag (80 rapid commit)
  | "ip"
  | "ips"
  | "u8"
  | "u16"
  | "u32"
  | "i32"
  | "u8list"
  | "u16list"
  | "string" // UTF-8; trailing NULs dropped on decode, none added on encode
  | "bytes"
  | "domains" // RFC 1035 names, RFC 3397 (119)
  | "routes"; // RFC 3442 (121)

/** A decoded option value; which one depends on the `OptionType`. */
export type OptionValue = boolean | number | number[] | string | string[] | Uint8Array | Route[];

/** One classless static route (option 121): `dest` like `"10.0.0.0/8"`. */
export interface Route {
  dest: string;
  router: string;
}

/** Well-known option codes. */
export const Opt = {
  PAD: 0,
  SUBNET_MASK: 1,
  ROUTER: 3,
  DNS: 6,
  HOSTNAME: 12,
  DOMAIN_NAME: 15,
  BROADCAST: 28,
  VENDOR_SPECIFIC: 43,
  REQUESTED_IP: 50,
  LEASE_TIME: 51,
  OVERLOAD: 52,
  MESSAGE_TYPE: 53,
  SERVER_ID: 54,
  PARAMETER_LIST: 55,
  /** Error text of a DHCPNAK (RFC 2132 §9.9). */
  MESSAGE: 56,
  MAX_MESSAGE_SIZE: 57,
  RENEWAL_TIME: 58,
  REBINDING_TIME: 59,
  VENDOR_CLASS: 60,
  CLIENT_ID: 61,
  TFTP_SERVER: 66,
  BOOTFILE: 67,
  USER_CLASS: 77,
  CLIENT_FQDN: 81,
  RELAY_AGENT: 82,
  CLIENT_ARCH: 93,
  CLIENT_NDI: 94,
  CLIENT_UUID: 97,
  DOMAIN_SEARCH: 119,
  CLASSLESS_ROUTES: 121,
  IPXE_ENCAP: 175,
  END: 255,
} as const;

// code name type, in columns. Codes not listed are handled as `bytes`.
const OPTION_TABLE = `
  0 pad none                        1 subnet-mask ip                  2 time-offset i32
  3 router ips                      4 time-server ips                 6 dns-server ips
  7 log-server ips                  12 hostname string                13 boot-size u16
  15 domain-name string             17 root-path string               26 mtu u16
  28 broadcast ip                   40 nis-domain string              42 ntp-server ips
  43 vendor-specific bytes          50 requested-ip ip                51 lease-time u32
  52 overload u8                    53 message-type u8                54 server-id ip
  55 parameter-list u8list          56 message string                 57 max-message-size u16
  58 renewal-time u32               59 rebinding-time u32             60 vendor-class string
  61 client-id bytes                66 tftp-server string             67 bootfile string
  77 user-class bytes               80 rapid-commit flag              81 client-fqdn bytes
  82 relay-agent-info bytes         93 client-arch u16list            94 client-ndi bytes
  97 client-uuid bytes              119 domain-search domains         121 classless-routes routes
  150 tftp-server-address ips       175 ipxe-encap bytes              209 pxelinux-configfile string
  210 pxelinux-pathprefix string    211 pxelinux-reboottime u32       255 end none
`;

/** Option table: code -> [name, type] (RFC 2132, RFC 4578, PXE, iPXE, PXELINUX). */
export const OPTIONS: ReadonlyMap<number, readonly [string, OptionType]> = new Map(
  OPTION_TABLE.trim().split(/\s+/).flatMap((tok, i, all) =>
    i % 3 === 0 ? [[Number(tok), [all[i + 1], all[i + 2] as OptionType] as const] as const] : []
  ),
);

/** Returns the option's name (`"option-N"` for unknown codes). */
export function optionName(code: number): string {
  return OPTIONS.get(code)?.[0] ?? `option-${code}`;
}

/** Returns the option's wire type (`"bytes"` for unknown codes). */
export function optionType(code: number): OptionType {
  return OPTIONS.get(code)?.[1] ?? "bytes";
}

/** DHCP message types (option 53). */
export const MessageType = {
  DISCOVER: 1,
  OFFER: 2,
  REQUEST: 3,
  DECLINE: 4,
  ACK: 5,
  NAK: 6,
  RELEASE: 7,
  INFORM: 8,
} as const;

/** Returns `"DISCOVER"` etc. for a message type, or `"TYPE-n"` for unknown values. */
export function messageTypeName(type: number): string {
  const hit = Object.entries(MessageType).find(([, v]) => v === type);
  return hit ? hit[0] : `TYPE-${type}`;
}

// IANA "Processor Architecture Types" (option 93), as "code=name" separated by ";".
const ARCH_TABLE = `
  0=BIOS x86; 1=NEC/PC98; 2=Itanium; 3=DEC Alpha; 4=Arc x86; 5=Intel Lean Client; 6=EFI IA32; 7=EFI x64 (BC);
  8=EFI Xscale; 9=EFI x64; 10=ARM32 EFI; 11=ARM64 EFI; 12=PowerPC Open Firmware; 13=PowerPC ePAPR;
  14=POWER OPAL v3; 15=x86 UEFI HTTP; 16=x64 UEFI HTTP; 17=EBC UEFI HTTP; 18=ARM32 UEFI HTTP;
  19=ARM64 UEFI HTTP; 20=BIOS x86 HTTP; 21=ARM32 U-Boot; 22=ARM64 U-Boot; 23=ARM32 U-Boot HTTP;
  24=ARM64 U-Boot HTTP; 25=RISC-V 32 UEFI; 26=RISC-V 32 UEFI HTTP; 27=RISC-V 64 UEFI; 28=RISC-V 64 UEFI HTTP;
  29=RISC-V 128 UEFI; 30=RISC-V 128 UEFI HTTP; 31=s390 Basic; 32=s390 Extended; 33=MIPS32 UEFI;
  34=MIPS64 UEFI; 35=Sunway32 UEFI; 36=Sunway64 UEFI; 37=LoongArch32 UEFI; 38=LoongArch32 UEFI HTTP;
  39=LoongArch64 UEFI; 40=LoongArch64 UEFI HTTP; 41=ARM rpiboot
`;

/** Client system architectures (option 93): code -> readable name. */
export const CLIENT_ARCHES: ReadonlyMap<number, string> = new Map(
  ARCH_TABLE.split(";").map((entry) => {
    const [code, name] = entry.trim().split("=");
    return [Number(code), name] as const;
  }),
);

/** Returns a readable name for a client architecture code, e.g. `"EFI x64"`. */
export function archName(arch: number): string {
  return CLIENT_ARCHES.get(arch) ?? `arch ${arch}`;
}

const utf8 = new TextEncoder();
const fromUtf8 = new TextDecoder();

function bad(field: string, reason: string): never {
  throw new DhcpDecodeError(field, reason);
}

/** Parses a dotted IPv4 string into 4 bytes, or returns undefined. */
export function parseIp(ip: string): Uint8Array | undefined {
  // hand-written (no split/regex): this runs several times for every reply the DHCP server encodes
  if (typeof ip !== "string") return undefined;
  const out = new Uint8Array(4);
  let part = 0;
  let value = 0;
  let digits = 0;
  for (let i = 0; i < ip.length; i++) {
    const c = ip.charCodeAt(i);
    if (c === 46) { // "."
      if (digits === 0 || part === 3) return undefined;
      out[part++] = value;
      value = 0;
      digits = 0;
    } else if (c >= 48 && c <= 57 && digits < 3) {
      value = value * 10 + c - 48;
      digits++;
      if (value > 255) return undefined;
    } else return undefined;
  }
  if (part !== 3 || digits === 0) return undefined;
  out[3] = value;
  return out;
}

/** Formats 4 bytes at `offset` as a dotted IPv4 string. */
export function formatIp(b: Uint8Array, offset = 0): string {
  return `${b[offset]}.${b[offset + 1]}.${b[offset + 2]}.${b[offset + 3]}`;
}

function ipBytes(ip: unknown, field: string): Uint8Array {
  const b = typeof ip === "string" ? parseIp(ip) : undefined;
  if (!b) throw new DhcpEncodeError(field, `not an IPv4 address: ${String(ip)}`);
  return b;
}

function uint(v: unknown, bits: 8 | 16 | 32, field: string): number {
  if (typeof v !== "number" || !Number.isInteger(v) || v < 0 || v >= 2 ** bits) {
    throw new DhcpEncodeError(field, `not an unsigned ${bits}-bit integer: ${String(v)}`);
  }
  return v;
}

function fixedLen(b: Uint8Array, n: number, field: string): void {
  if (b.length !== n) bad(field, `length ${b.length}, expected ${n}`);
}

function multipleOf(b: Uint8Array, n: number, field: string): void {
  if (b.length === 0 || b.length % n !== 0) {
    bad(field, `length ${b.length} is not a positive multiple of ${n}`);
  }
}

/** Decodes a raw option value by wire type; throws DhcpDecodeError when the length does not fit. */
export function decodeOptionValue(type: OptionType, raw: Uint8Array, field = "option"): OptionValue {
  const dv = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
  switch (type) {
    case "none":
    case "flag":
      return true;
    case "ip":
      fixedLen(raw, 4, field);
      return formatIp(raw);
    case "ips":
      multipleOf(raw, 4, field);
      return Array.from({ length: raw.length / 4 }, (_, i) => formatIp(raw, i * 4));
    case "u8":
      fixedLen(raw, 1, field);
      return raw[0];
    case "u16":
      fixedLen(raw, 2, field);
      return dv.getUint16(0);
    case "u32":
      fixedLen(raw, 4, field);
      return dv.getUint32(0);
    case "i32":
      fixedLen(raw, 4, field);
      return dv.getInt32(0);
    case "u8list":
      return Array.from(raw);
    case "u16list":
      multipleOf(raw, 2, field);
      return Array.from({ length: raw.length / 2 }, (_, i) => dv.getUint16(i * 2));
    case "string": {
      let end = raw.length;
      while (end > 0 && raw[end - 1] === 0) end--;
      return fromUtf8.decode(raw.subarray(0, end));
    }
    case "bytes":
      return raw.slice();
    case "domains":
      return decodeDomains(raw, field);
    case "routes":
      return decodeRoutes(raw, field);
  }
}

/** Encodes a value by wire type; throws DhcpEncodeError when the value does not fit the type. */
export function encodeOption(type: OptionType, value: OptionValue, field = "option"): Uint8Array {
  const list = (v: OptionValue): unknown[] => (Array.isArray(v) ? v : [v]);
  switch (type) {
    case "none":
    case "flag":
      return new Uint8Array(0);
    case "ip":
      return ipBytes(value, field);
    case "ips":
      return concat(list(value).map((ip) => ipBytes(ip, field)));
    case "u8":
      return Uint8Array.of(uint(value, 8, field));
    case "u16":
      return Uint8Array.of(uint(value, 16, field) >> 8, (value as number) & 255);
    case "u32":
    case "i32": {
      const out = new Uint8Array(4);
      const n = typeof value === "number" && type === "i32" && value < 0 ? value + 2 ** 32 : value;
      new DataView(out.buffer).setUint32(0, uint(n, 32, field));
      return out;
    }
    case "u8list":
      return Uint8Array.from(list(value), (v) => uint(v, 8, field));
    case "u16list":
      return concat(list(value).map((v) => encodeOption("u16", v as number, field)));
    case "string":
      if (typeof value !== "string") throw new DhcpEncodeError(field, "not a string");
      return utf8.encode(value);
    case "bytes":
      if (!(value instanceof Uint8Array)) throw new DhcpEncodeError(field, "not a Uint8Array");
      return value.slice();
    case "domains":
      return concat(list(value).map((d) => encodeDomain(d, field)));
    case "routes":
      return concat(list(value).map((r) => encodeRoute(r as Route, field)));
  }
}

/** Concatenates byte arrays. */
export function concat(parts: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

function encodeDomain(name: unknown, field: string): Uint8Array {
  if (typeof name !== "string") throw new DhcpEncodeError(field, "domain is not a string");
  const labels = name.split(".").filter((l) => l !== "").map((l) => utf8.encode(l));
  if (labels.some((l) => l.length > 63)) throw new DhcpEncodeError(field, `label longer than 63 in ${name}`);
  return concat([...labels.flatMap((l) => [Uint8Array.of(l.length), l]), Uint8Array.of(0)]);
}

function decodeDomains(raw: Uint8Array, field: string): string[] {
  const names: string[] = [];
  let at = 0;
  while (at < raw.length) {
    const labels: string[] = [];
    let pos = at;
    let jumps = 0;
    for (;;) {
      if (pos >= raw.length) bad(field, "domain name runs past the option");
      const len = raw[pos];
      if (len === 0) {
        if (jumps === 0) at = pos + 1;
        break;
      }
      if ((len & 0xc0) === 0xc0) {
        if (pos + 1 >= raw.length) bad(field, "truncated compression pointer");
        if (jumps === 0) at = pos + 2;
        if (++jumps > 64) bad(field, "compression pointer loop");
        pos = ((len & 0x3f) << 8) | raw[pos + 1];
        continue;
      }
      if (len > 63) bad(field, `bad label length ${len}`);
      if (pos + 1 + len > raw.length) bad(field, "label runs past the option");
      labels.push(fromUtf8.decode(raw.subarray(pos + 1, pos + 1 + len)));
      pos += 1 + len;
    }
    names.push(labels.join("."));
  }
  return names;
}

function encodeRoute(r: Route, field: string): Uint8Array {
  const [net, bitsText] = typeof r?.dest === "string" ? r.dest.split("/") : [];
  const bits = Number(bitsText);
  if (!Number.isInteger(bits) || bits < 0 || bits > 32) throw new DhcpEncodeError(field, "bad route prefix");
  const dest = ipBytes(net, field).subarray(0, Math.ceil(bits / 8));
  return concat([Uint8Array.of(bits), dest, ipBytes(r.router, field)]);
}

function decodeRoutes(raw: Uint8Array, field: string): Route[] {
  const routes: Route[] = [];
  for (let at = 0; at < raw.length;) {
    const bits = raw[at];
    if (bits > 32) bad(field, `route prefix /${bits}`);
    const n = Math.ceil(bits / 8);
    if (at + 1 + n + 4 > raw.length) bad(field, "route runs past the option");
    const dest = new Uint8Array(4);
    dest.set(raw.subarray(at + 1, at + 1 + n));
    routes.push({ dest: `${formatIp(dest)}/${bits}`, router: formatIp(raw, at + 1 + n) });
    at += 1 + n + 4;
  }
  return routes;
}

/** Decodes option `code` by its table type; undefined when absent. Throws DhcpDecodeError if malformed. */
export function getOption(pkt: HasOptions, code: number): OptionValue | undefined {
  const raw = pkt.options.get(code);
  return raw === undefined ? undefined : decodeOptionValue(optionType(code), raw, `option ${code}`);
}

/** Encodes `value` by the table type of `code` and stores it (replacing any earlier value). */
export function setOption(pkt: HasOptions, code: number, value: OptionValue): void {
  if (code === 0 || code === 255) throw new DhcpEncodeError(`option ${code}`, "pad/end carry no value");
  pkt.options.set(code, encodeOption(optionType(code), value, `option ${code}`));
}

function getTyped<T>(pkt: HasOptions, code: number, type: OptionType): T | undefined {
  const raw = pkt.options.get(code);
  return raw === undefined ? undefined : decodeOptionValue(type, raw, `option ${code}`) as T;
}

/** Option `code` as one dotted IPv4 address. */
export const getIp = (pkt: HasOptions, code: number): string | undefined => getTyped(pkt, code, "ip");
/** Option `code` as a list of dotted IPv4 addresses. */
export const getIps = (pkt: HasOptions, code: number): string[] | undefined => getTyped(pkt, code, "ips");
/** Option `code` as UTF-8 text without trailing NULs. */
export const getString = (pkt: HasOptions, code: number): string | undefined => getTyped(pkt, code, "string");
/** Option `code` as an unsigned byte. */
export const getU8 = (pkt: HasOptions, code: number): number | undefined => getTyped(pkt, code, "u8");
/** Option `code` as a big-endian unsigned 16-bit integer. */
export const getU16 = (pkt: HasOptions, code: number): number | undefined => getTyped(pkt, code, "u16");
/** Option `code` as a big-endian unsigned 32-bit integer. */
export const getU32 = (pkt: HasOptions, code: number): number | undefined => getTyped(pkt, code, "u32");
/** Option `code` as a list of bytes (e.g. 55, the parameter request list). */
export const getU8List = (pkt: HasOptions, code: number): number[] | undefined =>
  getTyped(pkt, code, "u8list");

/** Returns the DHCP message type (option 53) or undefined for BOOTP or a malformed 53. Never throws. */
export function messageType(pkt: HasOptions): number | undefined {
  const raw = pkt.options.get(Opt.MESSAGE_TYPE);
  return raw?.length === 1 ? raw[0] : undefined;
}

/** Returns the first client architecture of option 93, or undefined. Never throws. */
export function clientArch(pkt: HasOptions): number | undefined {
  const raw = pkt.options.get(Opt.CLIENT_ARCH);
  return raw && raw.length >= 2 ? (raw[0] << 8) | raw[1] : undefined;
}

/** Returns the vendor class identifier (option 60) as text, or undefined. Never throws. */
export function vendorClass(pkt: HasOptions): string | undefined {
  const raw = pkt.options.get(Opt.VENDOR_CLASS);
  return raw === undefined ? undefined : decodeOptionValue("string", raw) as string;
}

/** True for iPXE: raw option 77 starts with "iPXE" (not RFC 3004 format) or option 175 is present. */
export function isIpxe(pkt: HasOptions): boolean {
  if (pkt.options.has(Opt.IPXE_ENCAP)) return true;
  const uc = pkt.options.get(Opt.USER_CLASS);
  return uc !== undefined && uc.length >= 4 && fromUtf8.decode(uc.subarray(0, 4)) === "iPXE";
}

/** Client-supplied maximum DHCP payload size: option 57 (clamped to >= 576) minus 28 IP+UDP bytes. */
export function maxReplySize(pkt: HasOptions): number {
  const raw = pkt.options.get(Opt.MAX_MESSAGE_SIZE);
  const mms = raw?.length === 2 ? (raw[0] << 8) | raw[1] : 576;
  return Math.max(576, mms) - 28;
}

/** PXE 2.1 option 43 sub-options; `other` keeps sub-options this codec does not model. */
export interface PxeOptions {
  /** 6: bit 0 no broadcast, bit 1 no multicast, bit 2 only listed servers, bit 3 boot file if present. */
  discoveryControl?: number;
  /** 7: multicast discovery address. */
  multicastIp?: string;
  /** 8: boot servers by type. */
  bootServers?: { type: number; ips: string[] }[];
  /** 9: boot menu entries. */
  bootMenu?: { type: number; description: string }[];
  /** 10: menu prompt; timeout in seconds (0 = boot first item now, 255 = wait). */
  menuPrompt?: { timeout: number; prompt: string };
  /** 71: the boot item requested (client) or answered (server). */
  bootItem?: { type: number; layer: number };
  /** Any other sub-option, raw. */
  other?: Map<number, Uint8Array>;
}

function tlv(code: number, value: Uint8Array): Uint8Array {
  if (value.length > 255) throw new DhcpEncodeError(`option 43.${code}`, "longer than 255 bytes");
  return concat([Uint8Array.of(code, value.length), value]);
}

/** Encodes PXE sub-options into an option 43 value, ending with sub-option 255. */
export function encodePxeOptions(p: PxeOptions): Uint8Array {
  const parts: Uint8Array[] = [];
  const f = (n: number) => `option 43.${n}`;
  if (p.discoveryControl !== undefined) parts.push(tlv(6, encodeOption("u8", p.discoveryControl, f(6))));
  if (p.multicastIp !== undefined) parts.push(tlv(7, encodeOption("ip", p.multicastIp, f(7))));
  if (p.bootServers) {
    parts.push(tlv(
      8,
      concat(
        p.bootServers.map((s) =>
          concat([
            encodeOption("u16", s.type, f(8)),
            encodeOption("u8", s.ips.length, f(8)),
            encodeOption("ips", s.ips),
          ])
        ),
      ),
    ));
  }
  if (p.bootMenu) {
    parts.push(tlv(
      9,
      concat(p.bootMenu.map((m) => {
        const text = encodeOption("string", m.description, f(9));
        return concat([encodeOption("u16", m.type, f(9)), encodeOption("u8", text.length, f(9)), text]);
      })),
    ));
  }
  if (p.menuPrompt) {
    const { timeout, prompt } = p.menuPrompt;
    parts.push(tlv(10, concat([encodeOption("u8", timeout, f(10)), encodeOption("string", prompt, f(10))])));
  }
  if (p.bootItem) {
    const { type, layer } = p.bootItem;
    parts.push(tlv(71, concat([encodeOption("u16", type, f(71)), encodeOption("u16", layer, f(71))])));
  }
  for (const [code, value] of p.other ?? []) parts.push(tlv(uint(code, 8, "option 43"), value));
  return concat([...parts, Uint8Array.of(255)]);
}

/** Decodes an option 43 value as PXE sub-options; throws DhcpDecodeError when malformed. */
export function decodePxeOptions(raw: Uint8Array): PxeOptions {
  const p: PxeOptions = {};
  for (let at = 0; at < raw.length;) {
    const code = raw[at];
    if (code === 255) break;
    if (code === 0) {
      at++;
      continue;
    }
    const field = `option 43.${code}`;
    if (at + 1 >= raw.length) bad(field, "no length byte");
    const len = raw[at + 1];
    if (at + 2 + len > raw.length) bad(field, `length ${len} runs past the option`);
    const v = raw.subarray(at + 2, at + 2 + len);
    const dv = new DataView(v.buffer, v.byteOffset, v.byteLength);
    at += 2 + len;
    if (code === 6) p.discoveryControl = decodeOptionValue("u8", v, field) as number;
    else if (code === 7) p.multicastIp = decodeOptionValue("ip", v, field) as string;
    else if (code === 8) {
      p.bootServers = [];
      for (let i = 0; i < v.length;) {
        if (i + 3 > v.length || i + 3 + v[i + 2] * 4 > v.length) bad(field, "boot server entry truncated");
        const ips = v[i + 2] === 0
          ? []
          : decodeOptionValue("ips", v.subarray(i + 3, i + 3 + v[i + 2] * 4), field);
        p.bootServers.push({ type: dv.getUint16(i), ips: ips as string[] });
        i += 3 + v[i + 2] * 4;
      }
    } else if (code === 9) {
      p.bootMenu = [];
      for (let i = 0; i < v.length;) {
        if (i + 3 > v.length || i + 3 + v[i + 2] > v.length) bad(field, "boot menu entry truncated");
        const text = fromUtf8.decode(v.subarray(i + 3, i + 3 + v[i + 2]));
        p.bootMenu.push({ type: dv.getUint16(i), description: text });
        i += 3 + v[i + 2];
      }
    } else if (code === 10) {
      if (len < 1) bad(field, "empty menu prompt");
      p.menuPrompt = { timeout: v[0], prompt: fromUtf8.decode(v.subarray(1)) };
    } else if (code === 71) {
      fixedLen(v, 4, field);
      p.bootItem = { type: dv.getUint16(0), layer: dv.getUint16(2) };
    } else (p.other ??= new Map()).set(code, v.slice());
  }
  return p;
}
