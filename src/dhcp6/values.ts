/**
 * Typed DHCPv6 option values (RFC 8415 §21, RFC 3646, RFC 5970): a `decodeX(raw)` that throws
 * Dhcp6DecodeError and an `encodeX(value)` that throws Dhcp6EncodeError for each value shape pypxe reads
 * or writes. The per-message accessors (`clientId(msg)`, `iaNas(msg)`...) are in `accessors.ts`. Pure.
 *
 * @example
 * ```ts
 * const ia = decodeIaNa(getOption6(solicit, Opt6.IA_NA)!); // { iaid, t1, t2, options }
 * addOption6(reply, Opt6.IA_NA, encodeIaNa({ iaid: ia.iaid, t1: 1800, t2: 2880,
 *   options: [{ code: Opt6.IAADDR, data: encodeIaAddress({ address: "2001:db8::100", preferred: 3600,
 *     valid: 3600, options: [] }) }] }));
 * ```
 * @module
 */

import { formatIpv6, parseIpv6 } from "./address.ts";
import {
  checkUint,
  decodeOptionList,
  Dhcp6DecodeError,
  Dhcp6EncodeError,
  type Dhcp6Option,
  encodeOptionList,
} from "./options.ts";

/** Status Code (13): a code from `StatusCode6` and a UTF-8 message. */
export interface Status6 {
  code: number;
  message: string;
}

/** IA_NA (3): identity association for non-temporary addresses; `options` holds IA Address and status. */
export interface IaNa {
  iaid: number;
  t1: number;
  t2: number;
  options: Dhcp6Option[];
}

/** IA Address (5): an address with its lifetimes (seconds; 0xffffffff is infinity) and sub-options. */
export interface IaAddress {
  address: string;
  preferred: number;
  valid: number;
  options: Dhcp6Option[];
}

/** Vendor Class (16): enterprise number and opaque class data (EDK2 and iPXE: 343 and one string). */
export interface VendorClass {
  enterprise: number;
  data: Uint8Array[];
}

/** Vendor-specific Information (17): enterprise number and vendor sub-options (16-bit codes). */
export interface VendorOpts {
  enterprise: number;
  options: Dhcp6Option[];
}

/** Client Network Interface Identifier (62, RFC 5970): type 1 is UNDI, with its major/minor version. */
export interface Nii {
  type: number;
  major: number;
  minor: number;
}

/** Client Link-Layer Address (79, RFC 6939), added by relays: hardware type and address. */
export interface LinkLayerAddress {
  hardwareType: number;
  address: Uint8Array;
}

/** Most entries decoded from one opaque list (user class, vendor class, boot file parameters). */
export const MAX_LIST = 256;

const utf8 = new TextEncoder();
const fromUtf8 = new TextDecoder();

const view = (raw: Uint8Array) => new DataView(raw.buffer, raw.byteOffset, raw.byteLength);

function fixed(raw: Uint8Array, n: number, field: string): DataView {
  if (raw.length !== n) throw new Dhcp6DecodeError(field, `length ${raw.length}, expected ${n}`);
  return view(raw);
}

function atLeast(raw: Uint8Array, n: number, field: string): DataView {
  if (raw.length < n) throw new Dhcp6DecodeError(field, `length ${raw.length}, expected at least ${n}`);
  return view(raw);
}

function be(bytes: number, value: number): Uint8Array {
  const out = new Uint8Array(bytes);
  for (let i = bytes - 1, v = value; i >= 0; i--, v = Math.floor(v / 256)) out[i] = v & 255;
  return out;
}

function join(parts: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

function address(text: string, field: string): Uint8Array {
  const b = typeof text === "string" ? parseIpv6(text) : undefined;
  if (b === undefined) throw new Dhcp6EncodeError(field, `not an IPv6 address: ${String(text)}`);
  return b;
}

/** Decodes a one-byte value (Preference, 7). */
export function decodeU8(raw: Uint8Array, field = "u8"): number {
  return fixed(raw, 1, field).getUint8(0);
}

/** Decodes a two-byte value (Elapsed Time, 8, in hundredths of a second). */
export function decodeU16(raw: Uint8Array, field = "u16"): number {
  return fixed(raw, 2, field).getUint16(0);
}

/** Decodes a four-byte value (Information Refresh Time, SOL_MAX_RT). */
export function decodeU32(raw: Uint8Array, field = "u32"): number {
  return fixed(raw, 4, field).getUint32(0);
}

/** Encodes an unsigned integer of 1, 2 or 4 bytes. */
export function encodeUint(bytes: 1 | 2 | 4, value: number, field = "uint"): Uint8Array {
  return be(bytes, checkUint(value, (bytes * 8) as 8 | 16 | 32, field));
}

/** Decodes a list of 16-bit values (ORO, 6; Client Architecture Type, 61). */
export function decodeU16List(raw: Uint8Array, field = "u16 list"): number[] {
  if (raw.length % 2 !== 0) throw new Dhcp6DecodeError(field, `odd length ${raw.length}`);
  const dv = view(raw);
  return Array.from({ length: raw.length / 2 }, (_, i) => dv.getUint16(2 * i));
}

/** Encodes a list of 16-bit values. */
export function encodeU16List(values: readonly number[], field = "u16 list"): Uint8Array {
  return join(values.map((v) => encodeUint(2, v, field)));
}

/** Decodes UTF-8 text (Boot File URL, 59; a status message); invalid bytes become U+FFFD. */
export function decodeText(raw: Uint8Array): string {
  return fromUtf8.decode(raw);
}

/** Encodes UTF-8 text. */
export function encodeText(text: string, field = "text"): Uint8Array {
  if (typeof text !== "string") throw new Dhcp6EncodeError(field, "not a string");
  return utf8.encode(text);
}

/** Decodes a list of 2-byte-length-prefixed opaque values (User Class, 15; Boot File Parameters, 60). */
export function decodeOpaqueList(raw: Uint8Array, field = "opaque list", start = 0): Uint8Array[] {
  const out: Uint8Array[] = [];
  for (let at = start; at < raw.length;) {
    if (out.length === MAX_LIST) throw new Dhcp6DecodeError(field, `more than ${MAX_LIST} entries`);
    if (at + 2 > raw.length) {
      throw new Dhcp6DecodeError(field, `1 stray byte where a 2-byte length should be`);
    }
    const len = (raw[at] << 8) | raw[at + 1];
    if (at + 2 + len > raw.length) {
      throw new Dhcp6DecodeError(
        field,
        `entry length ${len} runs ${at + 2 + len - raw.length} bytes past the end`,
      );
    }
    out.push(raw.slice(at + 2, at + 2 + len));
    at += 2 + len;
  }
  return out;
}

/** Encodes a list of opaque values, each behind its 2-byte length. */
export function encodeOpaqueList(items: readonly Uint8Array[], field = "opaque list"): Uint8Array {
  return join(items.flatMap((item) => {
    if (!(item instanceof Uint8Array)) throw new Dhcp6EncodeError(field, "entry is not bytes");
    if (item.length > 0xffff) {
      throw new Dhcp6EncodeError(field, `entry of ${item.length} bytes is over 65535`);
    }
    return [be(2, item.length), item];
  }));
}

/** Decodes Status Code (13). */
export function decodeStatusCode(raw: Uint8Array, field = "status-code"): Status6 {
  const dv = atLeast(raw, 2, field);
  return { code: dv.getUint16(0), message: decodeText(raw.subarray(2)) };
}

/** Encodes Status Code (13). */
export function encodeStatusCode(status: Status6, field = "status-code"): Uint8Array {
  return join([encodeUint(2, status.code, field), encodeText(status.message, field)]);
}

/** Decodes IA_NA (3) and checks its sub-option list. */
export function decodeIaNa(raw: Uint8Array, field = "ia-na"): IaNa {
  const dv = atLeast(raw, 12, field);
  return {
    iaid: dv.getUint32(0),
    t1: dv.getUint32(4),
    t2: dv.getUint32(8),
    options: decodeOptionList(raw, 12, raw.length, field),
  };
}

/** Encodes IA_NA (3). */
export function encodeIaNa(ia: IaNa, field = "ia-na"): Uint8Array {
  return join([
    encodeUint(4, ia.iaid, `${field} iaid`),
    encodeUint(4, ia.t1, `${field} t1`),
    encodeUint(4, ia.t2, `${field} t2`),
    encodeOptionList(ia.options),
  ]);
}

/** Decodes IA Address (5). */
export function decodeIaAddress(raw: Uint8Array, field = "iaaddr"): IaAddress {
  const dv = atLeast(raw, 24, field);
  return {
    address: formatIpv6(raw),
    preferred: dv.getUint32(16),
    valid: dv.getUint32(20),
    options: decodeOptionList(raw, 24, raw.length, field),
  };
}

/** Encodes IA Address (5). */
export function encodeIaAddress(a: IaAddress, field = "iaaddr"): Uint8Array {
  return join([
    address(a.address, `${field} address`),
    encodeUint(4, a.preferred, `${field} preferred lifetime`),
    encodeUint(4, a.valid, `${field} valid lifetime`),
    encodeOptionList(a.options),
  ]);
}

/** Decodes Vendor Class (16). */
export function decodeVendorClass(raw: Uint8Array, field = "vendor-class"): VendorClass {
  const dv = atLeast(raw, 4, field);
  return { enterprise: dv.getUint32(0), data: decodeOpaqueList(raw, field, 4) };
}

/** Encodes Vendor Class (16). */
export function encodeVendorClass(vc: VendorClass, field = "vendor-class"): Uint8Array {
  return join([encodeUint(4, vc.enterprise, `${field} enterprise`), encodeOpaqueList(vc.data, field)]);
}

/** Decodes Vendor-specific Information (17). */
export function decodeVendorOpts(raw: Uint8Array, field = "vendor-opts"): VendorOpts {
  const dv = atLeast(raw, 4, field);
  return { enterprise: dv.getUint32(0), options: decodeOptionList(raw, 4, raw.length, field) };
}

/** Encodes Vendor-specific Information (17). */
export function encodeVendorOpts(vo: VendorOpts, field = "vendor-opts"): Uint8Array {
  return join([encodeUint(4, vo.enterprise, `${field} enterprise`), encodeOptionList(vo.options)]);
}

/** Decodes a list of IPv6 addresses (DNS Recursive Name Server, 23). */
export function decodeAddressList(raw: Uint8Array, field = "address list"): string[] {
  if (raw.length % 16 !== 0) {
    throw new Dhcp6DecodeError(field, `length ${raw.length} is not a multiple of 16`);
  }
  return Array.from({ length: raw.length / 16 }, (_, i) => formatIpv6(raw, 16 * i));
}

/** Encodes a list of IPv6 addresses. */
export function encodeAddressList(addresses: readonly string[], field = "address list"): Uint8Array {
  return join(addresses.map((a) => address(a, field)));
}

/** Decodes Client Network Interface Identifier (62). */
export function decodeNii(raw: Uint8Array, field = "nii"): Nii {
  fixed(raw, 3, field);
  return { type: raw[0], major: raw[1], minor: raw[2] };
}

/** Encodes Client Network Interface Identifier (62). */
export function encodeNii(nii: Nii, field = "nii"): Uint8Array {
  return Uint8Array.of(
    checkUint(nii.type, 8, `${field} type`),
    checkUint(nii.major, 8, `${field} major`),
    checkUint(nii.minor, 8, `${field} minor`),
  );
}

/** Decodes Client Link-Layer Address (79). */
export function decodeLinkLayerAddress(raw: Uint8Array, field = "client-linklayer-addr"): LinkLayerAddress {
  const dv = atLeast(raw, 2, field);
  return { hardwareType: dv.getUint16(0), address: raw.slice(2) };
}

/** Encodes Client Link-Layer Address (79). */
export function encodeLinkLayerAddress(lla: LinkLayerAddress, field = "client-linklayer-addr"): Uint8Array {
  return join([encodeUint(2, lla.hardwareType, `${field} hardware type`), lla.address]);
}
