/**
 * The client-type sample table: one entry per kind of firmware pypxe answers, as it describes itself
 * (architecture, vendor class, iPXE or not), for the `--check` report and the start-up banner.
 * @module
 */
import type { PxeConfig } from "./config.ts";
import type { ClientInfo } from "./dhcp/policy.ts";

/** One client type, as its firmware describes itself to the DHCP policy. */
export interface SampleClient {
  readonly label: string;
  readonly client: ClientInfo;
  /**
   * Set for client types the default tree cannot serve (ARM64 GRUB needs `deno task netboot --arm64`, Pi firmware is
   * the user's): a missing file is a note, unless the user configured that type's file.
   */
  readonly optionalUnless?: (config: PxeConfig) => boolean;
}

/** The client types `--check` and the banner show, as their firmware describes itself. */
export const SAMPLE_CLIENTS: readonly SampleClient[] = [
  { label: "BIOS", client: { arch: 0, vendorClass: "PXEClient:Arch:00000:UNDI:002001", ipxe: false } },
  { label: "UEFI x64", client: { arch: 7, vendorClass: "PXEClient:Arch:00007:UNDI:003000", ipxe: false } },
  {
    label: "UEFI HTTP",
    client: { arch: 16, vendorClass: "HTTPClient:Arch:00016:UNDI:003000", ipxe: false },
    optionalUnless: (c) => c.USE_HTTP,
  },
  {
    label: "ARM64 UEFI",
    client: { arch: 11, vendorClass: "PXEClient:Arch:00011:UNDI:003000", ipxe: false },
    optionalUnless: (c) => c.NETBOOT_FILE_ARM64 !== "",
  },
  { label: "iPXE BIOS", client: { arch: 0, vendorClass: "PXEClient:Arch:00000:UNDI:002001", ipxe: true } },
  { label: "iPXE UEFI", client: { arch: 7, vendorClass: "PXEClient:Arch:00007:UNDI:003010", ipxe: true } },
  {
    label: "Raspberry Pi",
    client: {
      arch: 0,
      vendorClass: "PXEClient:Arch:00000:UNDI:002001",
      ipxe: false,
      mac: "b8:27:eb:12:34:56",
    },
    optionalUnless: () => false,
  },
];
