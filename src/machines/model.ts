/**
 * The per-machine boot model: what one machine boots (a profile), how a machine is recognised (the facts
 * a selector matches), and the selector keys. Profiles come from `--machines DIR` (profiles.ts), from a
 * boot API (boot_api.ts) or from a one-shot; the netboot layer renders a profile for every loader.
 * Types only: no I/O here.
 * @module
 */

/** A boot file named by a profile: a path relative to the netboot tree or an `http(s)://` URL. */
export type BootSource = string;

/** What one machine boots. Exactly one kind. */
export type ProfileBoot =
  | {
    readonly kind: "kernel";
    readonly kernel: BootSource;
    readonly initrd: readonly BootSource[];
    readonly cmdline: string;
  }
  | { readonly kind: "iso"; readonly iso: BootSource }
  | { readonly kind: "ipxe"; readonly script: string }
  | { readonly kind: "chain"; readonly url: string }
  | { readonly kind: "local" }
  | { readonly kind: "menu" };

/** A named profile. */
export interface Profile {
  /** File name without `.json` (profiles/NAME.json), or `boot-api` for an API answer. */
  readonly name: string;
  readonly boot: ProfileBoot;
  /** DHCP boot file for machines on this profile, overriding the policy table's choice. */
  readonly bootfile?: string;
  /** A line shown to the user before booting (pixiecore's `message`). */
  readonly message?: string;
  /** Expected sha256 of remote files (`{"url", "sha256"}`), by URL. */
  readonly sha256?: ReadonlyMap<string, string>;
}

/** Firmware families a selector can name. */
export type MachineArch = "bios" | "efi32" | "efi64" | "efi-arm64" | "efi-http" | "rpi";

/** How the machine is asking: its ROM's PXE, iPXE, or UEFI HTTP boot. */
export type MachineClient = "pxe" | "ipxe" | "http";

/** What pypxe knows of a machine when it decides what it boots. */
export interface MachineFacts {
  /** Lower case, colon-separated. */
  readonly mac: string;
  readonly arch?: MachineArch;
  readonly client?: MachineClient;
  /** DHCP option 97, lower-case hex without the type byte, dashes as in an RFC 4122 UUID. */
  readonly uuid?: string;
  /** DHCP option 12. */
  readonly hostname?: string;
  readonly ip?: string;
  readonly vendorClass?: string;
}

/** Selector keys of a group (every key present must match). */
export interface Selector {
  readonly mac?: string;
  readonly uuid?: string;
  readonly arch?: MachineArch;
  readonly client?: MachineClient;
  readonly hostname?: string;
}

/** A named group: which profile its machines boot. */
export interface Group {
  /** File name without `.json` (groups/NAME.json). */
  readonly name: string;
  readonly profile: string;
  readonly selector: Selector;
  /** The profile applies to one boot per machine, then the machine falls through to other groups. */
  readonly once: boolean;
}
