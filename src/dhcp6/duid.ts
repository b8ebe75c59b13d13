/**
 * DHCP Unique Identifiers (RFC 8415 §11, RFC 6355): the value of Client ID (1) and Server ID (2).
 * Decoding knows DUID-LLT (1), DUID-EN (2), DUID-LL (3) and DUID-UUID (4) and keeps any other type as
 * opaque bytes; `macOfDuid` finds the MAC in an Ethernet DUID-LL or DUID-LLT. Pure.
 *
 * @example
 * ```ts
 * const duid = clientId(solicit); // { type: 1, hardwareType: 1, time: 837078895, linkLayer: ... }
 * macOfDuid(duid); // "52:54:00:77:00:66"
 * ```
 * @module
 */

import { checkUint, Dhcp6DecodeError, Dhcp6EncodeError } from "./options.ts";

/** DUID type codes. */
export const DuidType = { LLT: 1, EN: 2, LL: 3, UUID: 4 } as const;

/** DUID-LLT: hardware type, time (seconds since 2000-01-01 UTC, mod 2^32) and link-layer address. */
export interface DuidLlt {
  type: 1;
  hardwareType: number;
  time: number;
  linkLayer: Uint8Array;
}

/** DUID-EN: IANA enterprise number and an identifier the vendor assigned. */
export interface DuidEn {
  type: 2;
  enterprise: number;
  identifier: Uint8Array;
}

/** DUID-LL: hardware type and link-layer address. */
export interface DuidLl {
  type: 3;
  hardwareType: number;
  linkLayer: Uint8Array;
}

/** DUID-UUID (RFC 6355): a 16-byte UUID, shown as `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`. */
export interface DuidUuid {
  type: 4;
  uuid: string;
}

/** A DUID of a type not listed above (including 0), kept as the bytes after the type code. */
export interface DuidOther {
  type: number;
  data: Uint8Array;
}

/** A decoded DUID. */
export type Duid = DuidLlt | DuidEn | DuidLl | DuidUuid | DuidOther;

/** Longest DUID: 128 bytes after the 2-byte type (RFC 8415 §11.1). */
export const MAX_DUID = 130;

/** Hardware type 1 (Ethernet) from the ARP parameters registry. */
export const HW_ETHERNET = 1;

const HEX = Array.from({ length: 256 }, (_, b) => b.toString(16).padStart(2, "0"));

/** Lower-case hex of `bytes`, joined by `sep`. */
export function hex(bytes: Uint8Array, sep = ""): string {
  return Array.from(bytes, (b) => HEX[b]).join(sep);
}

/** Decodes a DUID (Client ID / Server ID value); throws Dhcp6DecodeError when it is malformed. */
export function decodeDuid(raw: Uint8Array, field = "duid"): Duid {
  if (raw.length < 2) throw new Dhcp6DecodeError(field, `${raw.length} bytes, a DUID has at least 2`);
  if (raw.length > MAX_DUID) throw new Dhcp6DecodeError(field, `${raw.length} bytes, over ${MAX_DUID}`);
  const dv = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
  const type = dv.getUint16(0);
  const need = (n: number, what: string) => {
    if (raw.length < n) throw new Dhcp6DecodeError(field, `${raw.length} bytes, a ${what} has at least ${n}`);
  };
  switch (type) {
    case DuidType.LLT:
      need(8, "DUID-LLT");
      return { type, hardwareType: dv.getUint16(2), time: dv.getUint32(4), linkLayer: raw.slice(8) };
    case DuidType.EN:
      need(6, "DUID-EN");
      return { type, enterprise: dv.getUint32(2), identifier: raw.slice(6) };
    case DuidType.LL:
      need(4, "DUID-LL");
      return { type, hardwareType: dv.getUint16(2), linkLayer: raw.slice(4) };
    case DuidType.UUID: {
      if (raw.length !== 18) {
        throw new Dhcp6DecodeError(field, `${raw.length} bytes, a DUID-UUID has exactly 18`);
      }
      const h = hex(raw.subarray(2));
      const uuid = `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
      return { type, uuid };
    }
    default:
      return { type, data: raw.slice(2) };
  }
}

const u16 = (v: unknown, field: string) => checkUint(v, 16, field);
const u32 = (v: unknown, field: string) => checkUint(v, 32, field);

/** Encodes a DUID; throws Dhcp6EncodeError for out-of-range fields or more than MAX_DUID bytes. */
export function encodeDuid(duid: Duid, field = "duid"): Uint8Array {
  const type = u16(duid.type, `${field} type`);
  let body: Uint8Array;
  if ("uuid" in duid) {
    const h = duid.uuid.replaceAll("-", "");
    if (!/^[0-9a-fA-F]{32}$/.test(h)) throw new Dhcp6EncodeError(field, `not a UUID: ${duid.uuid}`);
    body = Uint8Array.from({ length: 16 }, (_, i) => parseInt(h.slice(2 * i, 2 * i + 2), 16));
  } else if ("time" in duid) {
    body = new Uint8Array(6 + duid.linkLayer.length);
    const dv = new DataView(body.buffer);
    dv.setUint16(0, u16(duid.hardwareType, `${field} hardware type`));
    dv.setUint32(2, u32(duid.time, `${field} time`));
    body.set(duid.linkLayer, 6);
  } else if ("enterprise" in duid) {
    body = new Uint8Array(4 + duid.identifier.length);
    new DataView(body.buffer).setUint32(0, u32(duid.enterprise, `${field} enterprise`));
    body.set(duid.identifier, 4);
  } else if ("linkLayer" in duid) {
    body = new Uint8Array(2 + duid.linkLayer.length);
    new DataView(body.buffer).setUint16(0, u16(duid.hardwareType, `${field} hardware type`));
    body.set(duid.linkLayer, 2);
  } else {
    body = duid.data;
  }
  if (2 + body.length > MAX_DUID) {
    throw new Dhcp6EncodeError(field, `${2 + body.length} bytes, over ${MAX_DUID}`);
  }
  const out = new Uint8Array(2 + body.length);
  out.set([type >> 8, type & 255]);
  out.set(body, 2);
  return out;
}

/** The MAC of an Ethernet DUID-LL or DUID-LLT (`"52:54:00:77:00:66"`); undefined for any other DUID. */
export function macOfDuid(duid: Duid): string | undefined {
  if (!("linkLayer" in duid) || duid.hardwareType !== HW_ETHERNET || duid.linkLayer.length !== 6) {
    return undefined;
  }
  return hex(duid.linkLayer, ":");
}

/** A short text form for logs and lease keys: `llt:1:31e4cf6f:525400770066`, `uuid:...`, `en:343:...`. */
export function formatDuid(duid: Duid): string {
  if ("uuid" in duid) return `uuid:${duid.uuid}`;
  if ("time" in duid) return `llt:${duid.hardwareType}:${duid.time.toString(16)}:${hex(duid.linkLayer)}`;
  if ("enterprise" in duid) return `en:${duid.enterprise}:${hex(duid.identifier)}`;
  if ("linkLayer" in duid) return `ll:${duid.hardwareType}:${hex(duid.linkLayer)}`;
  return `type${duid.type}:${hex(duid.data)}`;
}
