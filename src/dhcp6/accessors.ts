/**
 * Typed reads of a DHCPv6 message's options: `clientId(msg)`, `iaNas(msg)`, `vendorClasses(msg)` and so
 * on. Each returns undefined (or an empty list) when the option is absent and throws Dhcp6DecodeError
 * when it is present but malformed; the message decoder itself does not look inside option values.
 * Single-instance options read the first instance; repeatable ones return every instance in wire order.
 *
 * @example
 * ```ts
 * const msg = decodeDhcp6(bytes);
 * clientArches(msg); // [7]
 * userClasses(msg).includes("iPXE"); // true for iPXE
 * ```
 * @module
 */

import { decodeDuid, type Duid } from "./duid.ts";
import { getOption6, getOptions6, hasOption6, type HasOptions6, Opt6, optionField } from "./options.ts";
import {
  decodeAddressList,
  decodeIaAddress,
  decodeIaNa,
  decodeLinkLayerAddress,
  decodeNii,
  decodeOpaqueList,
  decodeStatusCode,
  decodeText,
  decodeU16,
  decodeU16List,
  decodeU8,
  decodeVendorClass,
  decodeVendorOpts,
  type IaAddress,
  type IaNa,
  type LinkLayerAddress,
  type Nii,
  type Status6,
  type VendorClass,
  type VendorOpts,
} from "./values.ts";

/** Reads the first option `code` through `decode`, naming the option in errors. */
function first<T>(
  pkt: HasOptions6,
  code: number,
  decode: (raw: Uint8Array, field: string) => T,
): T | undefined {
  const raw = getOption6(pkt, code);
  return raw === undefined ? undefined : decode(raw, optionField(code));
}

/** Reads every option `code` through `decode`. */
function all<T>(pkt: HasOptions6, code: number, decode: (raw: Uint8Array, field: string) => T): T[] {
  return getOptions6(pkt, code).map((raw) => decode(raw, optionField(code)));
}

/** Client Identifier (1): the client's DUID. */
export const clientId = (pkt: HasOptions6): Duid | undefined => first(pkt, Opt6.CLIENTID, decodeDuid);

/** Server Identifier (2): the server's DUID. */
export const serverId = (pkt: HasOptions6): Duid | undefined => first(pkt, Opt6.SERVERID, decodeDuid);

/** Every IA_NA (3), in wire order. */
export const iaNas = (pkt: HasOptions6): IaNa[] => all(pkt, Opt6.IA_NA, decodeIaNa);

/** Every IA Address (5) in an IA_NA's (or any option list's) sub-options. */
export const iaAddresses = (ia: HasOptions6): IaAddress[] => all(ia, Opt6.IAADDR, decodeIaAddress);

/** Option Request (6): the option codes the client asks for (empty when it sent no ORO). */
export const requestedOptions = (pkt: HasOptions6): number[] => first(pkt, Opt6.ORO, decodeU16List) ?? [];

/** Preference (7), 0..255. */
export const preference = (pkt: HasOptions6): number | undefined => first(pkt, Opt6.PREFERENCE, decodeU8);

/** Elapsed Time (8), in hundredths of a second (0xffff: 655.35 s or more). */
export const elapsedTime = (pkt: HasOptions6): number | undefined => first(pkt, Opt6.ELAPSED_TIME, decodeU16);

/** Status Code (13) of a message, an IA_NA or an IA Address. */
export const statusCode = (pkt: HasOptions6): Status6 | undefined =>
  first(pkt, Opt6.STATUS_CODE, decodeStatusCode);

/** True when the client asked for a two-message exchange (Rapid Commit, 14). */
export const rapidCommit = (pkt: HasOptions6): boolean => hasOption6(pkt, Opt6.RAPID_COMMIT);

/** User Class (15) entries of every instance, as text (iPXE sends `"iPXE"`). */
export const userClasses = (pkt: HasOptions6): string[] =>
  all(pkt, Opt6.USER_CLASS, decodeOpaqueList).flat().map(decodeText);

/** Every Vendor Class (16), in wire order. */
export const vendorClasses = (pkt: HasOptions6): VendorClass[] =>
  all(pkt, Opt6.VENDOR_CLASS, decodeVendorClass);

/** Every Vendor-specific Information option (17), in wire order. */
export const vendorOpts = (pkt: HasOptions6): VendorOpts[] => all(pkt, Opt6.VENDOR_OPTS, decodeVendorOpts);

/** Interface-Id (18) of a relay message, opaque. */
export const interfaceId = (pkt: HasOptions6): Uint8Array | undefined => getOption6(pkt, Opt6.INTERFACE_ID);

/** DNS Recursive Name Server (23) addresses. */
export const dnsServers = (pkt: HasOptions6): string[] =>
  first(pkt, Opt6.DNS_SERVERS, decodeAddressList) ?? [];

/** Boot File URL (59), e.g. `tftp://[2001:db8::1]/ipxe.efi`. */
export const bootFileUrl = (pkt: HasOptions6): string | undefined =>
  first(pkt, Opt6.BOOTFILE_URL, decodeText);

/** Boot File Parameters (60), as text. */
export const bootFileParams = (pkt: HasOptions6): string[] =>
  (first(pkt, Opt6.BOOTFILE_PARAM, decodeOpaqueList) ?? []).map(decodeText);

/** Client System Architecture Type (61) values, most preferred first (empty when absent). */
export const clientArches = (pkt: HasOptions6): number[] =>
  first(pkt, Opt6.CLIENT_ARCH_TYPE, decodeU16List) ?? [];

/** Client Network Interface Identifier (62). */
export const nii = (pkt: HasOptions6): Nii | undefined => first(pkt, Opt6.NII, decodeNii);

/** Client Link-Layer Address (79), which a relay adds to its RELAY-FORW. */
export const clientLinkLayer = (pkt: HasOptions6): LinkLayerAddress | undefined =>
  first(pkt, Opt6.CLIENT_LINKLAYER_ADDR, decodeLinkLayerAddress);
