/**
 * Boot policy: which file or URL a client is handed, from what it says about itself (option 93 client
 * architecture, option 60 vendor class, iPXE's option 77/175) and the configuration. Pure and
 * table-tested: no I/O, no clocks, no logging; a `--check`-style dry run can call it directly.
 *
 * PyPXE semantics kept: without `--ipxe`, BIOS clients get `NETBOOT_FILE` (pxelinux.0); with `--ipxe` the
 * first stage is `undionly.kpxe` (BIOS) or `ipxe.efi` (UEFI) and `NETBOOT_FILE` (boot.ipxe or
 * boot.http.ipxe) is the second stage handed to clients that are already iPXE, as a `tftp://` or
 * `http://` URL so iPXE never loops. UEFI clients always get an EFI binary, with or without `--ipxe`.
 *
 * @example
 * ```ts
 * const client = describeClient(request);
 * const boot = bootFileFor(client, { useIpxe: true, useHttp: false, httpPort: 80,
 *   fileServer: "192.168.2.2", netbootFile: "boot.ipxe" });
 * boot.file; // "undionly.kpxe" for a BIOS PXE ROM, "tftp://192.168.2.2/boot.ipxe" for iPXE
 * ```
 * @module
 */
import type { PxeConfig } from "../config.ts";
import { archName, clientArch, type HasOptions, isIpxe, vendorClass } from "./options.ts";

/** Groups of client architectures that boot the same file. */
export type ArchFamily = "bios" | "efi32" | "efi64" | "arm32" | "arm64" | "rpi";

/** What a client says about itself, as the policy needs it. */
export interface ClientInfo {
  /** Option 93 (or the `Arch:NNNNN` part of option 60); undefined when the client sent neither. */
  arch?: number;
  /** Option 60 as sent, e.g. `PXEClient:Arch:00007:UNDI:003000`. */
  vendorClass?: string;
  /** True for iPXE (option 77 `iPXE` or option 175 present). */
  ipxe: boolean;
  /** Client MAC, lower case with colons (used to recognise Raspberry Pi boot ROMs). */
  mac?: string;
}

/** Per-family first-stage boot files; each is optional and falls back to the defaults below. */
export interface BootFiles {
  /** BIOS PXE ROMs: default `NETBOOT_FILE` (pxelinux.0), or `undionly.kpxe` with `--ipxe`. */
  bios?: string;
  /** 32-bit x86 UEFI (arch 6, 15): default `ipxe-ia32.efi`. */
  efi32?: string;
  /** x64 UEFI (arch 7, 9, 16): default `ipxe.efi` (`snponly.efi` is the usual alternative). */
  efi64?: string;
  /** 32-bit ARM UEFI (arch 10, 18): default `ipxe-arm32.efi`. */
  arm32?: string;
  /** 64-bit ARM UEFI (arch 11, 19): default `grubaa64.efi` (Debian's signed network GRUB). */
  arm64?: string;
  /** Raspberry Pi boot ROM: default `bootcode.bin`. */
  rpi?: string;
}

/** The settings the policy reads (a subset of the config, plus per-arch files). */
export interface BootPolicyOptions {
  /** `--ipxe` (USE_IPXE). */
  useIpxe: boolean;
  /** `--http` (USE_HTTP): iPXE second stage and UEFI HTTP boot go over HTTP. */
  useHttp: boolean;
  /** HTTP_PORT, written into http:// URLs (omitted when 80). */
  httpPort: number;
  /** DHCP_FILESERVER: the host in tftp:// and http:// URLs. */
  fileServer: string;
  /** NETBOOT_FILE as derived by the config (pxelinux.0, boot.ipxe or boot.http.ipxe). */
  netbootFile: string;
  /** Per-family first-stage overrides. */
  bootFiles?: BootFiles;
  /**
   * SECURE_BOOT: UEFI x64 PXE clients without an explicit file get the signed shim
   * ({@linkcode SHIM_FILE}); HTTP boot clients do not (Debian's GRUB cannot continue from HTTP boot).
   */
  secureBoot?: boolean;
  /** The client's static `rom` (from `--static-config`), when it has one. */
  staticRom?: string;
}

/** The config keys the policy reads. */
export type PolicyConfig = Pick<
  PxeConfig,
  | "USE_IPXE"
  | "USE_HTTP"
  | "HTTP_PORT"
  | "DHCP_FILESERVER"
  | "NETBOOT_FILE"
  | "SECURE_BOOT"
  | "NETBOOT_FILE_BIOS"
  | "NETBOOT_FILE_EFI32"
  | "NETBOOT_FILE_EFI64"
  | "NETBOOT_FILE_ARM32"
  | "NETBOOT_FILE_ARM64"
>;

/** The policy settings of a config (per-arch files from the NETBOOT_FILE_* keys; "" means the default). */
export function policyOptionsFrom(config: PolicyConfig): BootPolicyOptions {
  const file = (name: string) => name === "" ? undefined : name;
  return {
    useIpxe: config.USE_IPXE,
    useHttp: config.USE_HTTP,
    httpPort: config.HTTP_PORT,
    fileServer: config.DHCP_FILESERVER,
    netbootFile: config.NETBOOT_FILE,
    secureBoot: config.SECURE_BOOT,
    bootFiles: {
      bios: file(config.NETBOOT_FILE_BIOS),
      efi32: file(config.NETBOOT_FILE_EFI32),
      efi64: file(config.NETBOOT_FILE_EFI64),
      arm32: file(config.NETBOOT_FILE_ARM32),
      arm64: file(config.NETBOOT_FILE_ARM64),
    },
  };
}

/** The policy's answer. */
export interface BootDecision {
  /** File name or URL to put in `file` and option 67; undefined: give no boot file. */
  file?: string;
  /** Option 60 to send: `PXEClient`, `HTTPClient`, or undefined for a client that is not booting. */
  vendorClass?: "PXEClient" | "HTTPClient";
  /** True when the client is network-booting (sent PXEClient/HTTPClient or option 93). */
  booting: boolean;
  /** The family used to pick the file. */
  family: ArchFamily;
  /** Short human label for logs, e.g. `UEFI x64`, `iPXE BIOS`, `UEFI HTTP arm64`. */
  label: string;
  /** Why this file (static rom, second stage, first stage...), for logs. */
  reason: string;
  /** Set when something is off (unknown architecture, HTTP boot without --http); log it as a warning. */
  warning?: string;
}

/** Raspberry Pi Foundation OUIs: their boot ROMs send arch 0 but need `bootcode.bin` and option 43. */
const RPI_OUIS = ["b8:27:eb", "dc:a6:32", "e4:5f:01", "28:cd:c1", "d8:3a:dd", "2c:cf:67"];

/** Family and whether the arch is a UEFI HTTP boot arch, for every arch the policy knows. */
const ARCH_FAMILY: ReadonlyMap<number, [ArchFamily, boolean]> = new Map([
  [0, ["bios", false]],
  [6, ["efi32", false]],
  [7, ["efi64", false]],
  [9, ["efi64", false]],
  [10, ["arm32", false]],
  [11, ["arm64", false]],
  [15, ["efi32", true]],
  [16, ["efi64", true]],
  [18, ["arm32", true]],
  [19, ["arm64", true]],
]);

/** The first stage of the Secure Boot chain: Debian's signed shim, which loads `grubx64.efi`. */
export const SHIM_FILE = "shimx64.efi";

const DEFAULT_FILES: Required<Omit<BootFiles, "bios">> = {
  efi32: "ipxe-ia32.efi",
  efi64: "ipxe.efi",
  arm32: "ipxe-arm32.efi",
  // Debian ships no ARM64 iPXE; its signed network GRUB reads the generated grub/grub.cfg
  arm64: "grubaa64.efi",
  rpi: "bootcode.bin",
};

const FAMILY_LABEL: Record<ArchFamily, string> = {
  bios: "BIOS",
  efi32: "UEFI ia32",
  efi64: "UEFI x64",
  arm32: "UEFI arm32",
  arm64: "UEFI arm64",
  rpi: "Raspberry Pi",
};

/** Reads the policy inputs from a request: arch (93, else option 60's `Arch:NNNNN`), vendor class, iPXE. */
export function describeClient(pkt: HasOptions & { mac?: string }): ClientInfo {
  const vc = vendorClass(pkt);
  let arch = clientArch(pkt);
  if (arch === undefined && vc !== undefined) {
    const m = /^(?:PXEClient|HTTPClient):Arch:(\d{5})/.exec(vc);
    if (m) arch = Number(m[1]);
  }
  return { arch, vendorClass: vc, ipxe: isIpxe(pkt), mac: pkt.mac };
}

/** True when the client asks to network-boot: vendor class PXEClient/HTTPClient, or option 93. */
export function isBootClient(client: ClientInfo): boolean {
  return client.arch !== undefined || /^(PXEClient|HTTPClient)/.test(client.vendorClass ?? "");
}

/** `tftp://fs/name` or `http://fs[:port]/name`; names that already are URLs are kept. */
export function bootUrl(name: string, opts: { http: boolean; fileServer: string; httpPort: number }): string {
  if (name.includes("://")) return name;
  const path = name.replace(/^\/+/, "");
  if (!opts.http) return `tftp://${opts.fileServer}/${path}`;
  const port = opts.httpPort === 80 ? "" : `:${opts.httpPort}`;
  return `http://${opts.fileServer}${port}/${path}`;
}

/** The iPXE script for clients already running iPXE: NETBOOT_FILE when it is a script, else boot(.http).ipxe. */
function secondStage(opts: BootPolicyOptions): string {
  const name = /\.ipxe$/i.test(opts.netbootFile) || opts.netbootFile.includes("://")
    ? opts.netbootFile
    : opts.useHttp
    ? "boot.http.ipxe"
    : "boot.ipxe";
  return bootUrl(name, { http: opts.useHttp, fileServer: opts.fileServer, httpPort: opts.httpPort });
}

/** True for a static `rom` that an iPXE client can run without looping (a script or a URL). */
function romIsScript(rom: string): boolean {
  return /\.ipxe$/i.test(rom) || rom.includes("://");
}

/** Picks the boot file or URL for `client` (see the module docs for the rules). Never throws. */
export function bootFileFor(client: ClientInfo, opts: BootPolicyOptions): BootDecision {
  const booting = isBootClient(client);
  const http = /^HTTPClient/.test(client.vendorClass ?? "") ||
    (client.arch !== undefined && (ARCH_FAMILY.get(client.arch)?.[1] ?? false));
  let family: ArchFamily;
  let warning: string | undefined;
  if (client.arch === undefined || client.arch === 0) {
    const rpi = client.mac !== undefined && RPI_OUIS.includes(client.mac.slice(0, 8)) && !client.ipxe;
    family = rpi ? "rpi" : "bios";
  } else {
    const known = ARCH_FAMILY.get(client.arch);
    family = known?.[0] ?? "bios";
    if (!known) {
      warning = `client architecture ${client.arch} (${archName(client.arch)}) has no boot file; trying BIOS`;
    }
  }
  const files = opts.bootFiles ?? {};
  const ipxeTag = client.ipxe ? "iPXE " : "";
  const label = `${ipxeTag}${
    http ? FAMILY_LABEL[family].replace("UEFI", "UEFI HTTP") : FAMILY_LABEL[family]
  }`;
  const base = { booting, family, label, warning };

  if (!booting) return { ...base, reason: "not a network-boot client" };

  if (http) {
    if (!opts.useHttp) {
      return {
        ...base,
        vendorClass: "HTTPClient",
        reason: "UEFI HTTP boot",
        warning: warning ?? "UEFI HTTP boot client, but the HTTP server is off (--http)",
      };
    }
    const url = (name: string) =>
      bootUrl(name, { http: true, fileServer: opts.fileServer, httpPort: opts.httpPort });
    if (client.ipxe) {
      return { ...base, vendorClass: "HTTPClient", file: secondStage(opts), reason: "iPXE script" };
    }
    if (opts.staticRom) {
      return { ...base, vendorClass: "HTTPClient", file: url(opts.staticRom), reason: "static rom" };
    }
    const name = family === "bios" || family === "rpi"
      ? DEFAULT_FILES.efi64
      : files[family] ?? DEFAULT_FILES[family];
    // no shim here even with SECURE_BOOT: Debian's GRUB 2.06 finds no config after an HTTP boot
    return { ...base, vendorClass: "HTTPClient", file: url(name), reason: "UEFI HTTP boot" };
  }

  if (opts.staticRom && (!client.ipxe || romIsScript(opts.staticRom))) {
    return { ...base, vendorClass: "PXEClient", file: opts.staticRom, reason: "static rom" };
  }
  if (client.ipxe && (opts.useIpxe || family !== "bios")) {
    return { ...base, vendorClass: "PXEClient", file: secondStage(opts), reason: "iPXE script" };
  }
  let file: string;
  if (family === "bios") {
    file = files.bios || (opts.useIpxe ? "undionly.kpxe" : opts.netbootFile);
  } else if (family === "efi64" && opts.secureBoot && !files.efi64) {
    return { ...base, vendorClass: "PXEClient", file: SHIM_FILE, reason: "Secure Boot (shim)" };
  } else {
    file = files[family] || DEFAULT_FILES[family];
  }
  return {
    ...base,
    vendorClass: "PXEClient",
    file,
    reason: client.ipxe ? "iPXE ROM, --ipxe off" : "first stage",
  };
}
