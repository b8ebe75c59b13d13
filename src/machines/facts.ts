/**
 * What a DHCP request says about the machine that sent it, as {@linkcode MachineFacts}: the facts a group
 * selector matches and the inventory records. Pure and total: a malformed option is left out, never thrown.
 *
 * - `arch` from option 93 (else the `Arch:NNNNN` of option 60, as the boot policy reads it):
 *   0 → `bios` (or `rpi` when the policy recognises a Raspberry Pi boot ROM by its OUI), 6 and 15 → `efi32`,
 *   7 and 9 → `efi64`, 16 (x64 UEFI HTTP) → `efi-http`, 11 and 19 (arm64 UEFI, PXE and HTTP) → `efi-arm64`.
 *   arm64 HTTP boot stays `efi-arm64` because the arch picks the kernel: an `efi-http` profile hands out
 *   x64 files. That it boots over HTTP is in `client`. Other codes (arm32 10/18, Itanium...) have no
 *   selector name: `arch` is left out. A client that sent neither 93 nor 60 is not network-booting
 *   (an installed OS renewing its lease): no `arch`, no `client`.
 * - `client`: `ipxe` (option 77 `iPXE` or option 175, whatever else it says), else `http` (vendor class
 *   `HTTPClient` or an HTTP-boot arch 15/16/18/19), else `pxe` for any other network-boot client.
 * - `uuid` from option 97 (type 0 + 16 bytes). Firmware sends the SMBIOS UUID with its first three fields
 *   little-endian (EFI GUID byte order, seen in every capture in tests/fixtures/dhcp/); they are swapped
 *   back, so the value is the one `dmidecode -s system-uuid`, iPXE's `${uuid}` and QEMU's `-uuid` show.
 * - `hostname` from option 12, `vendorClass` from option 60 (control characters dropped), `ip` from
 *   ciaddr, else option 50 (requested address), unless the caller passes the address it leased.
 *
 * @example
 * ```ts
 * const facts = machineFacts(decodeDhcp(bytes), { ip: offeredIp });
 * facts.arch; // "efi64"
 * ```
 * @module
 */
import type { DhcpPacket } from "../dhcp/packet.ts";
import { getIp, getString, Opt } from "../dhcp/options.ts";
import { bootFileFor, type BootPolicyOptions, describeClient, isBootClient } from "../dhcp/policy.ts";
import type { MachineArch, MachineClient, MachineFacts } from "./model.ts";

/** Option 93 client architecture → selector arch (see the module docs for the choices). */
export const ARCH_OF_CLIENT_ARCH: ReadonlyMap<number, MachineArch> = new Map([
  [0, "bios"],
  [6, "efi32"],
  [7, "efi64"],
  [9, "efi64"],
  [11, "efi-arm64"],
  [15, "efi32"],
  [16, "efi-http"],
  [19, "efi-arm64"],
]);

/** UEFI HTTP boot architectures (RFC 4578 registry: x86 15, x64 16, arm32 18, arm64 19). */
const HTTP_ARCHES = new Set([15, 16, 18, 19]);

/** Only the family of the policy's answer is read: these settings do not change it. */
const FAMILY_ONLY: BootPolicyOptions = {
  useIpxe: false,
  useHttp: false,
  httpPort: 80,
  fileServer: "0.0.0.0",
  netbootFile: "pxelinux.0",
};

// deno-lint-ignore no-control-regex
const CONTROL = /[\u0000-\u001f\u007f]/g;

/** The facts of the machine that sent `pkt`; `ip` overrides the address read from the packet. */
export function machineFacts(pkt: DhcpPacket, opts: { ip?: string } = {}): MachineFacts {
  const info = describeClient(pkt);
  const booting = isBootClient(info);
  let arch: MachineArch | undefined;
  let client: MachineClient | undefined;
  if (booting) {
    const code = info.arch ?? 0;
    arch = ARCH_OF_CLIENT_ARCH.get(code);
    if (arch === "bios" && bootFileFor(info, FAMILY_ONLY).family === "rpi") arch = "rpi";
    client = info.ipxe
      ? "ipxe"
      : /^HTTPClient/.test(info.vendorClass ?? "") || HTTP_ARCHES.has(code)
      ? "http"
      : "pxe";
  }
  const facts: { -readonly [K in keyof MachineFacts]: MachineFacts[K] } = { mac: pkt.mac.toLowerCase() };
  if (arch !== undefined) facts.arch = arch;
  if (client !== undefined) facts.client = client;
  const uuid = uuidOf(pkt.options.get(Opt.CLIENT_UUID));
  if (uuid !== undefined) facts.uuid = uuid;
  const hostname = text(() => getString(pkt, Opt.HOSTNAME));
  if (hostname !== undefined) facts.hostname = hostname;
  const ip = opts.ip ?? (pkt.ciaddr !== "0.0.0.0" ? pkt.ciaddr : text(() => getIp(pkt, Opt.REQUESTED_IP)));
  if (ip !== undefined && ip !== "0.0.0.0") facts.ip = ip;
  const vendorClass = text(() => info.vendorClass);
  if (vendorClass !== undefined) facts.vendorClass = vendorClass;
  return facts;
}

/**
 * Option 97 (type 0 + 16 bytes) as an RFC 4122 UUID string, the first three fields byte-swapped from
 * the EFI GUID order firmware sends; undefined when absent, not that shape, or all zeros / all ones.
 */
export function uuidOf(raw: Uint8Array | undefined): string | undefined {
  if (raw === undefined || raw.length !== 17 || raw[0] !== 0) return undefined;
  const b = raw.subarray(1);
  // firmware without a system UUID sends all zeros (QEMU without -uuid) or all ones: no identity
  if (b.every((x) => x === 0) || b.every((x) => x === 0xff)) return undefined;
  const hex = (bytes: ArrayLike<number>) =>
    Array.from(bytes, (x) => x.toString(16).padStart(2, "0")).join("");
  return [
    hex([b[3], b[2], b[1], b[0]]),
    hex([b[5], b[4]]),
    hex([b[7], b[6]]),
    hex(b.subarray(8, 10)),
    hex(b.subarray(10, 16)),
  ].join("-");
}

/** The text an accessor returns, without control characters, trimmed, at most 255 characters. */
function text(read: () => string | undefined): string | undefined {
  let value: string | undefined;
  try {
    value = read();
  } catch {
    return undefined; // a malformed option: the fact is unknown, the packet is still answered
  }
  const clean = value?.replace(CONTROL, "").trim().slice(0, 255);
  return clean === "" ? undefined : clean;
}

/** The facts of an IPv6 client (from `describeClient6`): MAC, arch and client kind as for IPv4. */
export function machineFacts6(
  info: { mac: string; arch?: number; vendorClass?: string; ipxe: boolean; http: boolean },
  opts: { ip?: string } = {},
): MachineFacts {
  const facts: { -readonly [K in keyof MachineFacts]: MachineFacts[K] } = { mac: info.mac.toLowerCase() };
  const booting = info.arch !== undefined || info.ipxe ||
    /^(PXEClient|HTTPClient)/.test(info.vendorClass ?? "");
  if (booting) {
    const arch = ARCH_OF_CLIENT_ARCH.get(info.arch ?? 7);
    if (arch !== undefined) facts.arch = arch;
    facts.client = info.ipxe ? "ipxe" : info.http ? "http" : "pxe";
  }
  if (opts.ip !== undefined) facts.ip = opts.ip;
  const vendorClass = info.vendorClass?.replace(CONTROL, "");
  if (vendorClass) facts.vendorClass = vendorClass;
  return facts;
}
