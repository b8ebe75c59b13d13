/**
 * Boot-policy inputs of a DHCPv6 client: the same `{arch, vendorClass, ipxe, mac}` the IPv4
 * `describeClient` (src/dhcp/policy.ts) reads from a DHCPv4 request, so one policy table can pick the
 * boot file for both, plus `http` and the client's DUID. Pure; never throws: a malformed option counts
 * as absent, as in the IPv4 version.
 *
 * Where each field comes from: `arch` option 61 (first value, the most preferred), else the `Arch:NNNNN`
 * of the vendor class; `vendorClass` the first string of option 16 (enterprise 343, Intel/PXE, preferred;
 * EDK2 and iPXE both send `PXEClient:Arch:00007:UNDI:003000`-style strings there); `ipxe` user class
 * (15) entry `iPXE`; `http` vendor class `HTTPClient...` or an HTTP-boot arch; `mac` an Ethernet DUID-LL
 * or DUID-LLT, else the Client Link-Layer Address (79) a relay added, else the EUI-64 interface id of the
 * client's link-local address (a relay's peer address, or the datagram's source).
 *
 * @example
 * ```ts
 * const client = describeClient6(decodeDhcp6(bytes), { sourceAddress: "fe80::5054:ff:fe77:66" });
 * // { arch: 7, vendorClass: "PXEClient:Arch:00007:UNDI:003000", ipxe: false, http: false,
 * //   mac: "52:54:00:77:00:66", macFrom: "duid", duid: "llt:1:31e4cf6f:525400770066" }
 * ```
 * @module
 */

import { clientArches, clientId, clientLinkLayer, userClasses, vendorClasses } from "./accessors.ts";
import { macFromEui64 } from "./address.ts";
import { formatDuid, hex, HW_ETHERNET, macOfDuid } from "./duid.ts";
import { Dhcp6DecodeError } from "./options.ts";
import { type Dhcp6Packet, unwrapRelay } from "./packet.ts";
import { decodeText } from "./values.ts";

/** What a DHCPv6 client says about itself, shaped like the IPv4 policy's `ClientInfo`. */
export interface Client6Info {
  /** Option 61's first (most preferred) architecture, or the vendor class's `Arch:NNNNN`. */
  arch?: number;
  /** The vendor class string as sent, e.g. `HTTPClient:Arch:00016:UNDI:003000`. */
  vendorClass?: string;
  /** True for iPXE (user class `iPXE`). */
  ipxe: boolean;
  /** True for UEFI HTTP boot: vendor class `HTTPClient...` or an HTTP-boot architecture. */
  http: boolean;
  /** Client MAC, lower case with colons, when one can be found. */
  mac?: string;
  /** Where `mac` came from. */
  macFrom?: "duid" | "link-layer" | "address";
  /** The client DUID as text (`formatDuid`), the client's identity in DHCPv6. */
  duid?: string;
}

/** Where the message arrived from, for the MAC fallback of an unrelayed client. */
export interface Describe6Options {
  /** The datagram's source address (the client's link-local address when not relayed). */
  sourceAddress?: string;
}

/** The enterprise number of Intel, under which PXE and UEFI send their vendor class. */
export const PXE_ENTERPRISE = 343;

/** Client architectures that mean "boot over HTTP" (RFC 4578 registry: x86/x64/EBC/ARM/RISC-V/LoongArch). */
export const HTTP_ARCHES: ReadonlySet<number> = new Set([15, 16, 17, 18, 19, 20, 23, 24, 26, 28, 30, 38, 40]);

/** `read()`, or undefined when the option it reads is malformed (the policy treats it as absent). */
function lenient<T>(read: () => T): T | undefined {
  try {
    return read();
  } catch (e) {
    if (e instanceof Dhcp6DecodeError) return undefined;
    throw e;
  }
}

/** The vendor-class string: the first entry of the first enterprise-343 option, else of any option 16. */
function vendorClassOf(msg: Dhcp6Packet): string | undefined {
  const all = lenient(() => vendorClasses(msg)) ?? [];
  const pick = all.find((vc) => vc.enterprise === PXE_ENTERPRISE && vc.data.length > 0) ??
    all.find((vc) => vc.data.length > 0);
  return pick === undefined ? undefined : decodeText(pick.data[0]);
}

/** Reads the boot-policy inputs from a Solicit/Request (relayed or not). Never throws for a decoded packet. */
export function describeClient6(pkt: Dhcp6Packet, opts: Describe6Options = {}): Client6Info {
  const { message, relays } = unwrapRelay(pkt);
  const vendorClass = vendorClassOf(message);
  let arch: number | undefined = lenient(() => clientArches(message))?.[0];
  if (arch === undefined && vendorClass !== undefined) {
    const m = /^(?:PXEClient|HTTPClient):Arch:(\d{5})/.exec(vendorClass);
    if (m) arch = Number(m[1]);
  }
  const ipxe = (lenient(() => userClasses(message)) ?? []).includes("iPXE");
  const http = /^HTTPClient/.test(vendorClass ?? "") || (arch !== undefined && HTTP_ARCHES.has(arch));
  const duid = lenient(() => clientId(message));
  const info: Client6Info = { arch, vendorClass, ipxe, http, duid: duid && formatDuid(duid) };

  const nearest = relays.at(-1); // the relay next to the client
  const lla = nearest && lenient(() => clientLinkLayer(nearest));
  const fromDuid = duid && macOfDuid(duid);
  const source = nearest ? nearest.peerAddress : opts.sourceAddress;
  const fromAddress = source === undefined ? undefined : macFromEui64(source);
  if (fromDuid) Object.assign(info, { mac: fromDuid, macFrom: "duid" });
  else if (lla?.hardwareType === HW_ETHERNET && lla.address.length === 6) {
    Object.assign(info, { mac: hex(lla.address, ":"), macFrom: "link-layer" });
  } else if (fromAddress) Object.assign(info, { mac: fromAddress, macFrom: "address" });
  return info;
}
