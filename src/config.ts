/**
 * The one typed configuration. Built as defaults < `--config` JSON file < command-line flags, using
 * PyPXE's upper-case JSON keys so an existing `example_cfg.json` loads unchanged, then validated with
 * one-line messages that name the flag or key.
 *
 * Every setting is one row of {@linkcode SETTINGS} (kind, default, flags, help); `DEFAULTS`, the flag
 * parser, `--help` and `--dump-config` all derive from it. That table (~60 keys) is most of this file's
 * length; the code around it is the checking and merging it drives.
 * @module
 */
import {
  broadcastOf,
  inSubnet,
  intToIp,
  ipToInt,
  type Ipv4Interface,
  ipv4Interfaces,
  isNetmask,
  networkOf,
} from "./net.ts";

/** Every setting, under PyPXE's JSON key names (ours added in the same style). */
export interface PxeConfig {
  USE_IPXE: boolean;
  USE_HTTP: boolean;
  USE_TFTP: boolean;
  USE_DHCP: boolean;
  DHCP_MODE_PROXY: boolean;
  MODE_DEBUG: string;
  MODE_VERBOSE: string;
  STATIC_CONFIG: string;
  LEASES_FILE: string;
  SYSLOG_SERVER: string | null;
  SYSLOG_PORT: number;
  DHCP_SERVER_IP: string;
  DHCP_SERVER_PORT: number;
  DHCP_OFFER_BEGIN: string;
  DHCP_OFFER_END: string;
  DHCP_SUBNET: string;
  DHCP_ROUTER: string;
  DHCP_DNS: string;
  DHCP_BROADCAST: string;
  DHCP_FILESERVER: string;
  DHCP_WHITELIST: boolean;
  HTTP_PORT: number;
  HTTP_SERVER_IP: string;
  TFTP_PORT: number;
  TFTP_SERVER_IP: string;
  NETBOOT_DIR: string;
  NETBOOT_FILE: string;
  /** One image, or several (`--nbd` repeated, or a JSON array). */
  NBD_BLOCK_DEVICE: string | string[];
  NBD_WRITE: boolean;
  NBD_COW: boolean;
  NBD_COW_IN_MEM: boolean;
  NBD_COPY_TO_RAM: boolean;
  NBD_SERVER_IP: string;
  NBD_PORT: number;
  // ours
  INTERFACE: string;
  DHCP_LEASE_TIME: number;
  TFTP_MAX_BLKSIZE: number;
  TFTP_MAX_WINDOWSIZE: number;
  NBD_STATE_DIR: string;
  NBD_COW_MEM_LIMIT: number;
  /** Open HTTP connections at most; 0: sized from the process's open-file limit. */
  HTTP_MAX_CONNECTIONS: number;
  /** Seconds a connection may take to send a complete request head. */
  HTTP_HEADER_TIMEOUT: number;
  /** Seconds a keep-alive connection may sit idle between requests. */
  HTTP_IDLE_TIMEOUT: number;
  /** Open NBD connections at most; 0: sized from the process's open-file limit. */
  NBD_MAX_CONNECTIONS: number;
  /** Seconds a client may take to finish the NBD handshake. */
  NBD_HANDSHAKE_TIMEOUT: number;
  DHCP_PXE_ONLY: boolean;
  DHCP_DOMAIN: string;
  NETBOOT_FILE_BIOS: string;
  NETBOOT_FILE_EFI32: string;
  NETBOOT_FILE_EFI64: string;
  NETBOOT_FILE_ARM32: string;
  NETBOOT_FILE_ARM64: string;
  SECURE_BOOT: boolean;
  AUTO: boolean;
  AUTO_PROBE_MS: number;
  STATUS: boolean;
  USER: string;
  GROUP: string;
}

/** A configuration key. */
export type ConfigKey = keyof PxeConfig;

/** The value each kind of setting checks and yields (what the key holds in {@linkcode PxeConfig}). */
export interface SettingValues {
  bool: boolean;
  string: string;
  ip: string;
  "ip-or-empty": string;
  "host-or-null": string | null;
  netmask: string;
  port: number;
  int: number;
  "ip-list": string;
  "path-list": string | string[];
  services: string;
}

/** How a value is checked and parsed. */
export type SettingKind = keyof SettingValues;

/** The kinds whose value type is exactly `T` (every kind when `T` is unknown). */
export type SettingKindFor<T> = unknown extends T ? SettingKind : {
  [K in SettingKind]: [SettingValues[K]] extends [T] ? [T] extends [SettingValues[K]] ? K : never : never;
}[SettingKind];

/** The `--help` group a setting is listed under (PyPXE's README tables, then ours). */
export type SettingGroup = "main" | "dhcp" | "files" | "nbd" | "tftp" | "http";

/** One row of the settings table: type, default, flag(s) and help of one JSON key. */
export interface Setting<T = unknown> {
  readonly kind: SettingKindFor<T>;
  readonly group: SettingGroup;
  /** The default value (`--dump-config` prints it). */
  readonly default: T;
  /** Shown in `--help` instead of `default` when the real default is derived at run time. */
  readonly defaultText?: string;
  /** What the setting does, without its default (`--help` appends that). */
  readonly help: string;
  /** `--flag` that sets it (a value flag, or the "on" flag of a boolean). */
  readonly flag?: string;
  /** Extra spellings of `flag`. */
  readonly aliases?: readonly string[];
  /** `--no-flag` of a boolean. */
  readonly noFlag?: string;
  /** Other JSON keys accepted for it in a `--config` file. */
  readonly keyAliases?: readonly string[];
  /** The value's placeholder in `--help` (`--dhcp-begin IP`). */
  readonly metavar?: string;
  /** Lowest value of an `int`. */
  readonly min?: number;
  /** Highest value of an `int`. */
  readonly max?: number;
  /** True for settings PyPXE does not have. */
  readonly ours?: boolean;
}

/** The table's type: exactly one row per {@linkcode PxeConfig} key, its default of the key's type. */
export type SettingsTable = { readonly [K in ConfigKey]: Setting<PxeConfig[K]> };

/**
 * The settings table, the one description of every setting: JSON key, kind, default, flag(s), help.
 * One row per key, in `--help` order. {@linkcode DEFAULTS}, `--help` and `--dump-config` derive from it.
 */
export const SETTINGS: SettingsTable = {
  USE_IPXE: {
    kind: "bool",
    group: "main",
    default: false,
    flag: "--ipxe",
    noFlag: "--no-ipxe",
    help: "Enable iPXE ROM",
  },
  USE_HTTP: {
    kind: "bool",
    group: "main",
    default: false,
    flag: "--http",
    noFlag: "--no-http",
    help: "Enable built-in HTTP server",
  },
  USE_TFTP: {
    kind: "bool",
    group: "main",
    default: true,
    flag: "--tftp",
    noFlag: "--no-tftp",
    help: "Enable built-in TFTP server",
  },
  MODE_DEBUG: {
    kind: "services",
    group: "main",
    default: "",
    flag: "--debug",
    metavar: "LIST",
    help:
      "Most detailed logging (every packet) for the listed services: http,tftp,dhcp,nbd or all; '-svc' excludes (all,-dhcp)",
  },
  MODE_VERBOSE: {
    kind: "services",
    group: "main",
    default: "",
    flag: "--verbose",
    metavar: "LIST",
    help: "More detailed logging for the listed services, same syntax as --debug",
  },
  STATIC_CONFIG: {
    kind: "string",
    group: "main",
    default: "",
    flag: "--static-config",
    metavar: "FILE",
    help: "Load static DHCP leases from a JSON file (example-leases.json shape)",
  },
  LEASES_FILE: {
    kind: "string",
    group: "main",
    default: "",
    flag: "--save-leases",
    metavar: "FILE",
    help: "Save DHCP leases to FILE (atomically, after every change); load it on start",
  },
  SYSLOG_SERVER: {
    kind: "host-or-null",
    group: "main",
    default: null,
    flag: "--syslog",
    metavar: "HOST",
    help: "Also send logs to this syslog server (RFC 5424 over UDP)",
  },
  SYSLOG_PORT: {
    kind: "port",
    group: "main",
    default: 514,
    flag: "--syslog-port",
    metavar: "N",
    help: "Syslog server port",
  },
  INTERFACE: {
    kind: "string",
    group: "main",
    default: "",
    flag: "--interface",
    metavar: "IFACE",
    ours: true,
    help: "Derive server IP, subnet, broadcast, router and lease range from this interface's IPv4 address",
  },
  AUTO: {
    kind: "bool",
    group: "main",
    default: false,
    flag: "--auto",
    ours: true,
    help: "Field mode: probe the segment for a DHCP server, then run proxyDHCP beside it or full DHCP, " +
      "plus TFTP, HTTP and iPXE (needs root for port 68)",
  },
  AUTO_PROBE_MS: {
    kind: "int",
    group: "main",
    default: 2000,
    flag: "--auto-probe-ms",
    metavar: "MS",
    min: 100,
    max: 30000,
    ours: true,
    help: "How long --auto waits for DHCP offers",
  },
  STATUS: {
    kind: "bool",
    group: "main",
    default: false,
    flag: "--status",
    noFlag: "--no-status",
    ours: true,
    defaultText: "on for a terminal without --debug",
    help: "Live client table under the log on a terminal",
  },
  USER: {
    kind: "string",
    group: "main",
    default: "",
    flag: "--user",
    metavar: "NAME",
    ours: true,
    help: "Drop root to this user once every port is bound (state files are handed over)",
  },
  GROUP: {
    kind: "string",
    group: "main",
    default: "",
    flag: "--group",
    metavar: "NAME",
    ours: true,
    defaultText: "the user's own group",
    help: "Group for --user",
  },
  USE_DHCP: {
    kind: "bool",
    group: "dhcp",
    default: false,
    flag: "--dhcp",
    noFlag: "--no-dhcp",
    help: "Enable built-in DHCP server",
  },
  DHCP_MODE_PROXY: {
    kind: "bool",
    group: "dhcp",
    default: false,
    flag: "--dhcp-proxy",
    help: "Enable built-in DHCP server in proxy mode (implies --dhcp)",
  },
  DHCP_SERVER_IP: {
    kind: "ip",
    group: "dhcp",
    default: "192.168.2.2",
    flag: "--dhcp-server-ip",
    metavar: "IP",
    help: "DHCP server IP",
  },
  DHCP_SERVER_PORT: {
    kind: "port",
    group: "dhcp",
    default: 67,
    flag: "--dhcp-server-port",
    metavar: "N",
    help: "DHCP server port",
  },
  DHCP_OFFER_BEGIN: {
    kind: "ip",
    group: "dhcp",
    default: "192.168.2.100",
    flag: "--dhcp-begin",
    metavar: "IP",
    help: "DHCP lease range start",
  },
  DHCP_OFFER_END: {
    kind: "ip",
    group: "dhcp",
    default: "192.168.2.150",
    flag: "--dhcp-end",
    metavar: "IP",
    help: "DHCP lease range end (inclusive)",
  },
  DHCP_SUBNET: {
    kind: "netmask",
    group: "dhcp",
    default: "255.255.255.0",
    flag: "--dhcp-subnet",
    metavar: "MASK",
    help: "DHCP lease subnet mask",
  },
  DHCP_ROUTER: {
    kind: "ip",
    group: "dhcp",
    default: "192.168.2.1",
    flag: "--dhcp-router",
    metavar: "IP",
    help: "DHCP lease router",
  },
  DHCP_DNS: {
    kind: "ip-list",
    group: "dhcp",
    default: "8.8.8.8",
    flag: "--dhcp-dns",
    metavar: "IP[,IP]",
    help: "DHCP lease DNS server(s)",
  },
  DHCP_BROADCAST: {
    kind: "ip-or-empty",
    group: "dhcp",
    default: "",
    flag: "--dhcp-broadcast",
    metavar: "IP",
    defaultText: "derived from server IP and mask",
    help: "DHCP broadcast address",
  },
  DHCP_FILESERVER: {
    kind: "ip",
    group: "dhcp",
    default: "192.168.2.2",
    flag: "--dhcp-fileserver",
    aliases: ["--dhcp-fileserver-ip"],
    metavar: "IP",
    help: "DHCP file server IP (next-server)",
  },
  DHCP_WHITELIST: {
    kind: "bool",
    group: "dhcp",
    default: false,
    flag: "--dhcp-whitelist",
    noFlag: "--no-dhcp-whitelist",
    help: "Only answer DHCP clients listed in --static-config",
  },
  DHCP_LEASE_TIME: {
    kind: "int",
    group: "dhcp",
    default: 86400,
    flag: "--dhcp-lease-time",
    metavar: "SECONDS",
    min: 60,
    max: 31536000,
    ours: true,
    help: "DHCP lease time",
  },
  DHCP_PXE_ONLY: {
    kind: "bool",
    group: "dhcp",
    default: false,
    flag: "--dhcp-pxe-only",
    noFlag: "--no-dhcp-pxe-only",
    ours: true,
    help: "Answer PXE clients only, as PyPXE did (otherwise other clients get plain leases too)",
  },
  DHCP_DOMAIN: {
    kind: "string",
    group: "dhcp",
    default: "",
    flag: "--dhcp-domain",
    metavar: "NAME",
    ours: true,
    help: "Domain name sent to clients (option 15)",
  },
  NETBOOT_DIR: {
    kind: "string",
    group: "files",
    default: "netboot",
    flag: "--netboot-dir",
    metavar: "DIR",
    help: "Local directory served over TFTP/HTTP, overlaid on the embedded default tree",
  },
  NETBOOT_FILE: {
    kind: "string",
    group: "files",
    default: "",
    flag: "--netboot-file",
    metavar: "NAME",
    defaultText: "pxelinux.0; boot.ipxe with --ipxe; boot.http.ipxe with --ipxe --http",
    help: "PXE boot file name",
  },
  NETBOOT_FILE_BIOS: {
    kind: "string",
    group: "files",
    default: "",
    flag: "--netboot-file-bios",
    metavar: "NAME",
    ours: true,
    defaultText: "--netboot-file, or undionly.kpxe with --ipxe",
    help: "Boot file for BIOS clients",
  },
  NETBOOT_FILE_EFI32: {
    kind: "string",
    group: "files",
    default: "",
    flag: "--netboot-file-efi32",
    metavar: "NAME",
    ours: true,
    defaultText: "ipxe-ia32.efi",
    help: "Boot file for 32-bit x86 UEFI clients",
  },
  NETBOOT_FILE_EFI64: {
    kind: "string",
    group: "files",
    default: "",
    flag: "--netboot-file-efi64",
    metavar: "NAME",
    ours: true,
    defaultText: "ipxe.efi",
    help: "Boot file for x64 UEFI clients (snponly.efi is the usual alternative)",
  },
  NETBOOT_FILE_ARM32: {
    kind: "string",
    group: "files",
    default: "",
    flag: "--netboot-file-arm32",
    metavar: "NAME",
    ours: true,
    defaultText: "ipxe-arm32.efi",
    help: "Boot file for 32-bit ARM UEFI clients",
  },
  NETBOOT_FILE_ARM64: {
    kind: "string",
    group: "files",
    default: "",
    flag: "--netboot-file-arm64",
    metavar: "NAME",
    ours: true,
    defaultText: "grubaa64.efi",
    help: "Boot file for ARM64 UEFI clients",
  },
  SECURE_BOOT: {
    kind: "bool",
    group: "dhcp",
    default: false,
    flag: "--secure-boot",
    noFlag: "--no-secure-boot",
    ours: true,
    help: "UEFI x64 clients get the signed shim -> GRUB chain (shimx64.efi, grubx64.efi, grub/grub.cfg)",
  },
  TFTP_PORT: {
    kind: "port",
    group: "tftp",
    default: 69,
    flag: "--tftp-port",
    metavar: "N",
    help: "TFTP server port",
  },
  TFTP_SERVER_IP: {
    kind: "ip",
    group: "tftp",
    default: "0.0.0.0",
    flag: "--tftp-server-ip",
    metavar: "IP",
    help: "TFTP server IP address to bind to",
  },
  TFTP_MAX_BLKSIZE: {
    kind: "int",
    group: "tftp",
    default: 65464,
    flag: "--tftp-max-blksize",
    metavar: "N",
    min: 512,
    max: 65464,
    ours: true,
    help: "Largest TFTP block size granted (RFC 2348)",
  },
  TFTP_MAX_WINDOWSIZE: {
    kind: "int",
    group: "tftp",
    default: 64,
    flag: "--tftp-max-windowsize",
    metavar: "N",
    min: 1,
    max: 64,
    ours: true,
    help: "Largest TFTP window size granted (RFC 7440)",
  },
  HTTP_PORT: {
    kind: "port",
    group: "http",
    default: 80,
    flag: "--http-port",
    metavar: "N",
    help: "HTTP server port",
  },
  HTTP_SERVER_IP: {
    kind: "ip",
    group: "http",
    default: "0.0.0.0",
    flag: "--http-server-ip",
    metavar: "IP",
    help: "HTTP server IP address to bind to",
  },
  HTTP_MAX_CONNECTIONS: {
    kind: "int",
    group: "http",
    default: 0,
    flag: "--http-max-connections",
    metavar: "N",
    min: 0,
    max: 1_000_000,
    ours: true,
    help: "Open HTTP connections at most (0: sized from the open-file limit; see --check)",
  },
  HTTP_HEADER_TIMEOUT: {
    kind: "int",
    group: "http",
    default: 30,
    flag: "--http-header-timeout",
    metavar: "S",
    min: 1,
    max: 86_400,
    ours: true,
    help: "Seconds a client may take to send a whole request head before it is disconnected",
  },
  HTTP_IDLE_TIMEOUT: {
    kind: "int",
    group: "http",
    default: 60,
    flag: "--http-idle-timeout",
    metavar: "S",
    min: 1,
    max: 86_400,
    ours: true,
    help: "Seconds an idle keep-alive connection is kept open",
  },
  NBD_BLOCK_DEVICE: {
    kind: "path-list",
    group: "nbd",
    default: "",
    flag: "--nbd",
    metavar: "FILE",
    help: "Serve this block device or disk image over NBD (enables NBD; repeat for several exports)",
  },
  NBD_WRITE: {
    kind: "bool",
    group: "nbd",
    default: false,
    flag: "--nbd-write",
    noFlag: "--no-nbd-write",
    help: "Allow writes to the NBD export (read-only otherwise)",
  },
  NBD_COW: {
    kind: "bool",
    group: "nbd",
    default: true,
    flag: "--nbd-cow",
    noFlag: "--no-nbd-cow",
    help: "With --nbd-write, keep each client's writes in a volatile copy-on-write layer",
  },
  NBD_COW_IN_MEM: {
    kind: "bool",
    group: "nbd",
    default: false,
    flag: "--nbd-cow-in-mem",
    help: "Keep copy-on-write data in RAM instead of a file",
  },
  NBD_COPY_TO_RAM: {
    kind: "bool",
    group: "nbd",
    default: false,
    flag: "--nbd-copy-to-ram",
    help: "Copy the image into RAM before serving clients",
  },
  NBD_SERVER_IP: {
    kind: "ip",
    group: "nbd",
    default: "0.0.0.0",
    flag: "--nbd-server",
    metavar: "IP",
    help: "NBD server IP to bind to",
  },
  NBD_PORT: {
    kind: "port",
    group: "nbd",
    default: 10809,
    flag: "--nbd-port",
    metavar: "N",
    // PyPXE's own example_cfg.json says NBD_SERVER_PORT where its code reads NBD_PORT
    keyAliases: ["NBD_SERVER_PORT"],
    help: "NBD server port",
  },
  NBD_STATE_DIR: {
    kind: "string",
    group: "nbd",
    default: "",
    flag: "--nbd-state-dir",
    metavar: "DIR",
    ours: true,
    defaultText: "a temp dir",
    help: "Directory for copy-on-write files (stale ones are removed at start)",
  },
  NBD_COW_MEM_LIMIT: {
    kind: "int",
    group: "nbd",
    default: 1 << 30,
    flag: "--nbd-cow-mem-limit",
    metavar: "BYTES",
    min: 1 << 20,
    max: Number.MAX_SAFE_INTEGER,
    ours: true,
    help: "Total RAM for --nbd-cow-in-mem overlays; writes beyond it fail with ENOSPC",
  },
  NBD_MAX_CONNECTIONS: {
    kind: "int",
    group: "nbd",
    default: 0,
    flag: "--nbd-max-connections",
    metavar: "N",
    min: 0,
    max: 1_000_000,
    ours: true,
    help: "Open NBD connections at most (0: sized from the open-file limit; see --check)",
  },
  NBD_HANDSHAKE_TIMEOUT: {
    kind: "int",
    group: "nbd",
    default: 10,
    flag: "--nbd-handshake-timeout",
    metavar: "S",
    min: 1,
    max: 86_400,
    ours: true,
    help: "Seconds a client may take to finish the NBD handshake before it is disconnected",
  },
};

/** PyPXE's defaults, plus ours: the `default` of every row of {@linkcode SETTINGS}. */
export const DEFAULTS: Readonly<PxeConfig> = Object.freeze(
  Object.fromEntries(Object.entries(SETTINGS).map(([key, s]) => [key, s.default])) as unknown as PxeConfig,
);

/** JSON keys accepted as another spelling of a key (the `keyAliases` of the table's rows). */
export const KEY_ALIASES: Readonly<Record<string, ConfigKey>> = Object.freeze(
  Object.fromEntries(
    (Object.entries(SETTINGS) as [ConfigKey, Setting][]).flatMap(([key, s]) =>
      (s.keyAliases ?? []).map((alias) => [alias, key])
    ),
  ),
);

/** A configuration problem: one line naming the flag or key. Exit code 2. */
export class ConfigError extends Error {
  /** Creates the error with a one-line message. */
  constructor(message: string) {
    super(message);
    this.name = "ConfigError";
  }
}

/** Service names accepted by `--debug`/`--verbose`. */
export const SERVICE_NAMES = ["dhcp", "tftp", "http", "nbd"] as const;

/** True when `value` is what `kind` expects; returns the normalised value or an error text. */
export function checkValue(kind: SettingKind, value: unknown, range: { min?: number; max?: number } = {}):
  | { ok: true; value: unknown }
  | { ok: false; reason: string } {
  const shown = JSON.stringify(value);
  switch (kind) {
    case "bool":
      return typeof value === "boolean"
        ? { ok: true, value }
        : { ok: false, reason: `expected true or false, got ${shown}` };
    case "string":
      return typeof value === "string"
        ? { ok: true, value }
        : { ok: false, reason: `expected a string, got ${shown}` };
    case "ip":
      return typeof value === "string" && ipToInt(value) !== null
        ? { ok: true, value }
        : { ok: false, reason: `expected an IPv4 address, got ${shown}` };
    case "ip-or-empty":
      return typeof value === "string" && (value === "" || ipToInt(value) !== null)
        ? { ok: true, value }
        : { ok: false, reason: `expected an IPv4 address or "", got ${shown}` };
    case "host-or-null":
      if (value === null || value === "") return { ok: true, value: null };
      return typeof value === "string" && isHost(value)
        ? { ok: true, value }
        : { ok: false, reason: `expected a host name or IP address, got ${shown}` };
    case "netmask":
      return typeof value === "string" && isNetmask(value)
        ? { ok: true, value }
        : { ok: false, reason: `expected a netmask such as 255.255.255.0, got ${shown}` };
    case "ip-list": {
      const parts = Array.isArray(value) ? value : typeof value === "string" ? value.split(",") : null;
      if (parts === null || parts.length === 0) {
        return { ok: false, reason: `expected IPv4 address(es), got ${shown}` };
      }
      const trimmed = parts.map((p) => typeof p === "string" ? p.trim() : p);
      const bad = trimmed.find((p) => typeof p !== "string" || ipToInt(p) === null);
      return bad === undefined
        ? { ok: true, value: trimmed.join(",") }
        : { ok: false, reason: `expected IPv4 address(es), got ${JSON.stringify(bad)}` };
    }
    case "port":
    case "int": {
      const min = kind === "port" ? 1 : range.min ?? Number.MIN_SAFE_INTEGER;
      const max = kind === "port" ? 65535 : range.max ?? Number.MAX_SAFE_INTEGER;
      const n = typeof value === "number"
        ? value
        : typeof value === "string" && /^\d+$/.test(value)
        ? Number(value)
        : NaN;
      if (!Number.isInteger(n)) {
        return { ok: false, reason: `expected an integer ${min}-${max}, got ${shown}` };
      }
      if (n < min || n > max) {
        return {
          ok: false,
          reason: `${n} is outside ${min}-${max}${kind === "port" ? " (a port is 1-65535)" : ""}`,
        };
      }
      return { ok: true, value: n };
    }
    case "path-list": {
      if (typeof value === "string") return { ok: true, value };
      if (Array.isArray(value) && value.length > 0 && value.every((v) => typeof v === "string" && v !== "")) {
        return { ok: true, value: value.length === 1 ? value[0] : value };
      }
      return { ok: false, reason: `expected a file name or a list of file names, got ${shown}` };
    }
    case "services": {
      if (typeof value !== "string") {
        return { ok: false, reason: `expected a list like "all,-dhcp", got ${shown}` };
      }
      for (const raw of value.split(",")) {
        const name = raw.trim().toLowerCase().replace(/^-/, "");
        if (name === "" && raw.trim() === "") continue;
        if (name !== "all" && !(SERVICE_NAMES as readonly string[]).includes(name)) {
          return {
            ok: false,
            reason: `unknown service ${JSON.stringify(raw.trim())} (use all, ${SERVICE_NAMES.join(", ")})`,
          };
        }
      }
      return { ok: true, value };
    }
  }
}

/**
 * True for a dotted-quad IPv4 address, an IPv6 address or an RFC 1123 host name: dot-separated labels
 * of letters, digits and inner hyphens, at most 63 characters each and 253 in all, the last one not all
 * digits (so `300.1.1.1` is neither an address nor a name). Spaces, `_`, `/`, `@` and the like fail.
 */
function isHost(value: string): boolean {
  if (ipToInt(value) !== null || isIpv6(value)) return true;
  const name = value.endsWith(".") ? value.slice(0, -1) : value;
  const labels = name.split(".");
  return name.length <= 253 &&
    labels.every((label) => /^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$/.test(label)) &&
    !/^\d+$/.test(labels[labels.length - 1]);
}

/** True for an IPv6 address in text form (`::1`, `fe80::2`, `::ffff:192.0.2.1`; no zone id). */
function isIpv6(value: string): boolean {
  // an IPv4 tail stands for the last two groups
  const tail = /^(.*:)([^:]*\.[^:]*)$/.exec(value);
  if (tail !== null && ipToInt(tail[2]) === null) return false;
  const text = tail === null ? value : `${tail[1]}0:0`;
  const halves = text.split("::");
  if (halves.length > 2) return false;
  const groups = halves.flatMap((half) => half === "" ? [] : half.split(":"));
  if (!groups.every((g) => /^[0-9A-Fa-f]{1,4}$/.test(g))) return false;
  return halves.length === 2 ? groups.length <= 7 : groups.length === 8;
}

/** True when `service` is selected by a PyPXE-style list such as `all,-dhcp`. */
export function serviceSelected(list: string, service: string): boolean {
  const items = list.toLowerCase().split(",").map((s) => s.trim()).filter((s) => s !== "");
  if (items.includes(`-${service}`)) return false;
  return items.includes("all") || items.includes(service);
}

/** Levenshtein distance, for "did you mean" hints. */
function distance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    let prev = row[0];
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const cur = row[j];
      row[j] = Math.min(row[j] + 1, row[j - 1] + 1, prev + (a[i - 1] === b[j - 1] ? 0 : 1));
      prev = cur;
    }
  }
  return row[b.length];
}

/** The candidate closest to `word`. */
export function closest(word: string, candidates: readonly string[]): string {
  let best = candidates[0];
  let bestDistance = Infinity;
  for (const c of candidates) {
    const d = distance(word.toUpperCase(), c.toUpperCase());
    if (d < bestDistance) [best, bestDistance] = [c, d];
  }
  return best;
}

/** Partial config from the JSON file, with warnings for keys that were ignored. */
export interface FileConfig {
  readonly values: Partial<PxeConfig>;
  readonly warnings: string[];
}

/** Parses and checks the text of a `--config` file (`source` names it in messages). */
export function parseConfigJson(text: string, source: string): FileConfig {
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (err) {
    throw new ConfigError(`${source}: not valid JSON (${err instanceof Error ? err.message : err})`);
  }
  if (typeof data !== "object" || data === null || Array.isArray(data)) {
    throw new ConfigError(`${source}: expected a JSON object of settings such as {"USE_DHCP": true}`);
  }
  const values: Record<string, unknown> = {};
  const warnings: string[] = [];
  const keys = Object.keys(SETTINGS) as ConfigKey[];
  for (const [rawKey, raw] of Object.entries(data)) {
    const key = (rawKey in SETTINGS ? rawKey : KEY_ALIASES[rawKey]) as ConfigKey | undefined;
    if (key === undefined) {
      warnings.push(`${source}: unknown key ${rawKey} ignored (did you mean ${closest(rawKey, keys)}?)`);
      continue;
    }
    const setting = SETTINGS[key];
    const checked = checkValue(setting.kind, raw, setting);
    if (!checked.ok) throw new ConfigError(`${source}: ${rawKey}: ${checked.reason}`);
    values[key] = checked.value;
  }
  return { values: values as Partial<PxeConfig>, warnings };
}

/** Reads and parses a `--config` file. */
export async function loadConfigFile(path: string): Promise<FileConfig> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (err) {
    throw new ConfigError(`--config ${path}: cannot read (${describeFsError(err)})`);
  }
  return parseConfigJson(text, path);
}

/** A short reason for a file-system error. */
export function describeFsError(err: unknown): string {
  if (err instanceof Deno.errors.NotFound) return "no such file";
  if (err instanceof Deno.errors.PermissionDenied) return "permission denied";
  if (err instanceof Deno.errors.IsADirectory) return "is a directory";
  return err instanceof Error ? err.message : String(err);
}

/** The result of building the config. */
export interface BuiltConfig {
  readonly config: PxeConfig;
  /** Keys set by the file or the flags (not defaults, not derived). */
  readonly explicit: ReadonlySet<ConfigKey>;
  /** The interface DHCP addresses came from, with why it was chosen. */
  readonly iface?: Ipv4Interface & { readonly reason: "--interface" | "only interface" };
  readonly warnings: string[];
}

/** Options of {@linkcode buildConfig}. */
export interface BuildConfigOptions {
  /** Values from the `--config` file. */
  file?: Partial<PxeConfig>;
  /** Values from the command line. */
  flags?: Partial<PxeConfig>;
  /** The interfaces to derive addresses from (defaults to the machine's). */
  interfaces?: () => Ipv4Interface[];
}

/**
 * Merges defaults < file < flags, derives what PyPXE derives (proxy implies DHCP, boot file name,
 * broadcast) and what we derive from an interface, then validates the whole. Throws `ConfigError`.
 */
export function buildConfig(opts: BuildConfigOptions = {}): BuiltConfig {
  const file = opts.file ?? {};
  const flags = opts.flags ?? {};
  const config: PxeConfig = { ...DEFAULTS, ...file, ...flags };
  const explicit = new Set([...Object.keys(file), ...Object.keys(flags)] as ConfigKey[]);
  const warnings: string[] = [];

  if (config.DHCP_MODE_PROXY) config.USE_DHCP = true;
  const iface = pickInterface(config, explicit, opts.interfaces ?? ipv4Interfaces);
  if (iface !== undefined) applyInterface(config, explicit, iface);
  if (config.NETBOOT_FILE === "") {
    config.NETBOOT_FILE = !config.USE_IPXE ? "pxelinux.0" : !config.USE_HTTP ? "boot.ipxe" : "boot.http.ipxe";
  }
  if (config.DHCP_BROADCAST === "") {
    config.DHCP_BROADCAST = broadcastOf(config.DHCP_SERVER_IP, config.DHCP_SUBNET);
  }

  validate(config, explicit);
  if (config.USE_HTTP && !config.USE_IPXE && !config.USE_DHCP) {
    warnings.push("HTTP selected but iPXE disabled: the PXE ROM must support HTTP requests");
  }
  if (config.NBD_WRITE && !config.NBD_COW) {
    warnings.push("--nbd-write without copy-on-write: clients write to the image itself and can corrupt it");
  }
  return { config, explicit, iface, warnings };
}

function pickInterface(
  config: PxeConfig,
  explicit: ReadonlySet<ConfigKey>,
  list: () => Ipv4Interface[],
): BuiltConfig["iface"] {
  if (config.INTERFACE !== "") {
    let all: Ipv4Interface[];
    try {
      all = list();
    } catch (err) {
      throw new ConfigError(
        `--interface ${config.INTERFACE}: cannot list interfaces (${describeFsError(err)})`,
      );
    }
    const found = all.find((i) => i.name === config.INTERFACE);
    if (found === undefined) {
      const names = [...new Set(all.map((i) => i.name))];
      throw new ConfigError(
        `--interface ${config.INTERFACE}: no IPv4 address on that interface (with IPv4: ${
          names.join(", ") || "none"
        })`,
      );
    }
    return { ...found, reason: "--interface" };
  }
  if (!config.USE_DHCP || explicit.has("DHCP_SERVER_IP")) return undefined;
  let all: Ipv4Interface[];
  try {
    all = list();
  } catch {
    return undefined;
  }
  return all.length === 1 ? { ...all[0], reason: "only interface" } : undefined;
}

/** Replaces every address setting the user did not give with one derived from the interface. */
function applyInterface(config: PxeConfig, explicit: ReadonlySet<ConfigKey>, iface: Ipv4Interface): void {
  const set = <K extends ConfigKey>(key: K, value: PxeConfig[K]) => {
    if (!explicit.has(key)) config[key] = value;
  };
  set("DHCP_SERVER_IP", iface.address);
  set("DHCP_SUBNET", iface.netmask);
  set("DHCP_BROADCAST", broadcastOf(iface.address, iface.netmask));
  set("DHCP_ROUTER", iface.address);
  set("DHCP_FILESERVER", iface.address);
  const [begin, end] = leaseRangeFor(iface.address, iface.netmask);
  set("DHCP_OFFER_BEGIN", begin);
  set("DHCP_OFFER_END", end);
}

/**
 * A lease range for a server at `ip`/`mask`: up to 100 addresses from the half of the subnet that does
 * not hold the server (for 192.168.1.10/24: 192.168.1.128-192.168.1.227).
 */
export function leaseRangeFor(ip: string, mask: string): [string, string] {
  const net = ipToInt(networkOf(ip, mask))!;
  const bcast = ipToInt(broadcastOf(ip, mask))!;
  const self = ipToInt(ip)!;
  if (bcast - net < 3) return [intToIp(self), intToIp(self)]; // /31, /32: validation reports it
  const mid = net + Math.floor((bcast - net + 1) / 2);
  const [lo, hi] = self >= mid ? [net + 1, mid - 1] : [mid, bcast - 1];
  // skip the server and an x.y.z.0 start (valid in wide subnets, but some firmware refuses it)
  let first = lo;
  while ((first === self || (first & 255) === 0) && first < hi) first++;
  return [intToIp(first), intToIp(Math.min(hi, first + 99))];
}

function validate(config: PxeConfig, explicit: ReadonlySet<ConfigKey>): void {
  for (const key of Object.keys(SETTINGS) as ConfigKey[]) {
    const setting = SETTINGS[key];
    const checked = checkValue(setting.kind, config[key], setting);
    if (!checked.ok) throw new ConfigError(`${nameOf(key, explicit)}: ${checked.reason}`);
  }
  if (!config.USE_DHCP) return;
  const { DHCP_OFFER_BEGIN: begin, DHCP_OFFER_END: end, DHCP_SERVER_IP: server, DHCP_SUBNET: mask } = config;
  if (config.DHCP_MODE_PROXY) return;
  if (ipToInt(begin)! > ipToInt(end)!) {
    throw new ConfigError(
      `${nameOf("DHCP_OFFER_BEGIN", explicit)} ${begin} is after ${
        nameOf("DHCP_OFFER_END", explicit)
      } ${end}`,
    );
  }
  for (const key of ["DHCP_OFFER_BEGIN", "DHCP_OFFER_END"] as const) {
    if (!inSubnet(config[key], server, mask)) {
      throw new ConfigError(
        `${nameOf(key, explicit)} ${config[key]} is outside the subnet ${
          networkOf(server, mask)
        }/${mask} of the server ${server}`,
      );
    }
  }
  const s = ipToInt(server)!;
  if (s >= ipToInt(begin)! && s <= ipToInt(end)!) {
    throw new ConfigError(
      `${nameOf("DHCP_SERVER_IP", explicit)} ${server} lies inside the lease range ${begin}-${end}`,
    );
  }
}

/** The flag (if given on the command line) or JSON key that names a setting in messages. */
function nameOf(key: ConfigKey, explicit: ReadonlySet<ConfigKey>): string {
  const flag = SETTINGS[key].flag;
  return explicit.has(key) || flag === undefined ? `${key}${flag ? ` (${flag})` : ""}` : `${flag} (${key})`;
}

/** The config as PyPXE-style JSON (`--dump-config`, `--dump-config-merged`). */
export function configToJson(config: Partial<PxeConfig>): string {
  const sorted = Object.fromEntries(Object.entries(config).sort(([a], [b]) => a.localeCompare(b)));
  return JSON.stringify(sorted, null, 4);
}
