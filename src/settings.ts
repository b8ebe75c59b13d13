/**
 * The settings table: one row per configuration key (type, default, JSON key, flag(s), help). It is the
 * only place a setting is described: `DEFAULTS`, the flag parser, `--help`, `--dump-config` and the
 * validation in `config.ts` all derive from it. The file is long because the table is (~60 rows); it
 * holds no logic beyond deriving `DEFAULTS` and `KEY_ALIASES`.
 * @module
 */

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
  /** Machine profiles and groups (`DIR/profiles/*.json`, `DIR/groups/*.json`); "" = none. */
  MACHINES_DIR: string;
  /** A pixiecore-compatible boot API asked per client; "" = none. */
  BOOT_API: string;
  /** Milliseconds the boot API may take before the groups decide. */
  BOOT_API_TIMEOUT: number;
  /** `ADDR:PORT` of the machine API; "" = off. */
  API_LISTEN: string;
  /** File holding the bearer token of the machine API's write requests. */
  API_TOKEN_FILE: string;
  /** Where remote boot files are cached; "" = `cache/` beside the state files (see `remoteCacheDir`). */
  CACHE_DIR: string;
  /** Bytes the remote-file cache may hold (least recently used files go first). */
  CACHE_MAX: number;
  /** Seconds between two revalidations of a cached remote file with its origin. */
  CACHE_REVALIDATE: number;
  /** Serve IPv6 too: DHCPv6 (with USE_DHCP) on UDP 547, TFTP and HTTP on `::`. */
  USE_IPV6: boolean;
  /** The server's IPv6 address in boot URLs; "" = the interface's global or ULA address. */
  DHCP6_SERVER_IP: string;
  /** First address of the DHCPv6 pool; "" = `<the interface's /64>::1:0`. */
  DHCP6_OFFER_BEGIN: string;
  /** Last address of the DHCPv6 pool; "" = `<the interface's /64>::1:ffff`. */
  DHCP6_OFFER_END: string;
  /** Send router advertisements (M and O flags, the interface's /64) on a segment without a router. */
  USE_RA: boolean;
  /** IPv4 DHCP with `--dhcp`/`--dhcp-proxy` (false: DHCPv6 only, for an IPv6-only segment). */
  USE_DHCP4: boolean;
}

/** The keys that name a boot file (an `http(s)://` URL there is served through the remote cache). */
export const NETBOOT_FILE_KEYS = [
  "NETBOOT_FILE",
  "NETBOOT_FILE_BIOS",
  "NETBOOT_FILE_EFI32",
  "NETBOOT_FILE_EFI64",
  "NETBOOT_FILE_ARM32",
  "NETBOOT_FILE_ARM64",
] as const;

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
  "url-or-empty": string;
  "listen-or-empty": string;
  "ipv6-or-empty": string;
  size: number;
}

/** How a value is checked and parsed. */
export type SettingKind = keyof SettingValues;

/** The kinds whose value type is exactly `T` (every kind when `T` is unknown). */
export type SettingKindFor<T> = unknown extends T ? SettingKind : {
  [K in SettingKind]: [SettingValues[K]] extends [T] ? [T] extends [SettingValues[K]] ? K : never : never;
}[SettingKind];

/** The `--help` group a setting is listed under (PyPXE's README tables, then ours). */
export type SettingGroup =
  | "main"
  | "dhcp"
  | "files"
  | "nbd"
  | "tftp"
  | "http"
  | "machines"
  | "cache"
  | "ipv6";

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
    kind: "ip-or-empty",
    group: "dhcp",
    default: "192.168.2.1",
    flag: "--dhcp-router",
    metavar: "IP",
    help: "DHCP lease router ('' sends none; with --interface none unless given)",
  },
  DHCP_DNS: {
    kind: "ip-list",
    group: "dhcp",
    default: "8.8.8.8",
    flag: "--dhcp-dns",
    metavar: "IP[,IP]",
    help: "DHCP lease DNS server(s) ('' sends none; with --interface none unless given)",
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
  MACHINES_DIR: {
    kind: "string",
    group: "machines",
    default: "",
    flag: "--machines",
    metavar: "DIR",
    ours: true,
    help:
      "Per-machine boot: profiles (DIR/profiles/*.json) and groups (DIR/groups/*.json); reloaded on SIGHUP",
  },
  BOOT_API: {
    kind: "url-or-empty",
    group: "machines",
    default: "",
    flag: "--boot-api",
    metavar: "URL",
    ours: true,
    help: "Ask this pixiecore-compatible API what each machine boots (GET URL/v1/boot/MAC)",
  },
  BOOT_API_TIMEOUT: {
    kind: "int",
    group: "machines",
    default: 2000,
    flag: "--boot-api-timeout",
    metavar: "MS",
    min: 50,
    max: 60_000,
    ours: true,
    help: "Milliseconds the boot API may take; then the groups decide",
  },
  API_LISTEN: {
    kind: "listen-or-empty",
    group: "machines",
    default: "",
    flag: "--api-listen",
    metavar: "ADDR:PORT",
    ours: true,
    defaultText: "off",
    help: "Serve the machine API (inventory, one-shot next boot) on ADDR:PORT, e.g. 127.0.0.1:8067",
  },
  API_TOKEN_FILE: {
    kind: "string",
    group: "machines",
    default: "",
    flag: "--api-token-file",
    metavar: "FILE",
    ours: true,
    help: "Bearer token for the machine API's write requests (without it, writes are refused)",
  },
  CACHE_DIR: {
    kind: "string",
    group: "cache",
    default: "",
    flag: "--cache-dir",
    metavar: "DIR",
    ours: true,
    defaultText: "cache/ beside the lease file, else beside the binary, else in the working directory",
    help: "Where http(s):// kernels, initrds and ISOs named by menus and profiles are cached",
  },
  CACHE_MAX: {
    kind: "size",
    group: "cache",
    default: 20 * 1024 ** 3,
    flag: "--cache-max",
    metavar: "SIZE",
    ours: true,
    defaultText: "20G",
    help: "Most bytes the cache holds (e.g. 500M, 20G); least recently used files go first",
  },
  CACHE_REVALIDATE: {
    kind: "int",
    group: "cache",
    default: 3600,
    flag: "--cache-revalidate",
    metavar: "S",
    min: 0,
    max: 365 * 86_400,
    ours: true,
    help: "Seconds between two checks of a cached file with its origin (If-None-Match)",
  },
  USE_IPV6: {
    kind: "bool",
    group: "ipv6",
    default: false,
    flag: "--ipv6",
    noFlag: "--no-ipv6",
    ours: true,
    help:
      "Also serve IPv6: DHCPv6 on UDP 547 with --dhcp (proxyDHCPv6 with --dhcp-proxy), TFTP and HTTP on ::",
  },
  DHCP6_SERVER_IP: {
    kind: "ipv6-or-empty",
    group: "ipv6",
    default: "",
    flag: "--dhcp6-server-ip",
    metavar: "IP6",
    ours: true,
    defaultText: "the interface's global or ULA address",
    help: "This server's IPv6 address in the boot URLs (option 59) sent to IPv6 clients",
  },
  DHCP6_OFFER_BEGIN: {
    kind: "ipv6-or-empty",
    group: "ipv6",
    default: "",
    flag: "--dhcp6-begin",
    metavar: "IP6",
    ours: true,
    defaultText: "<the interface's /64>::1:0",
    help: "DHCPv6 address range start",
  },
  DHCP6_OFFER_END: {
    kind: "ipv6-or-empty",
    group: "ipv6",
    default: "",
    flag: "--dhcp6-end",
    metavar: "IP6",
    ours: true,
    defaultText: "<the interface's /64>::1:ffff",
    help: "DHCPv6 address range end",
  },
  USE_RA: {
    kind: "bool",
    group: "ipv6",
    default: false,
    flag: "--ra",
    noFlag: "--no-ra",
    ours: true,
    help: "Send router advertisements (managed flag, the interface's /64) on a segment with no router",
  },
  USE_DHCP4: {
    kind: "bool",
    group: "ipv6",
    default: true,
    flag: "--dhcp4",
    noFlag: "--no-dhcp4",
    ours: true,
    defaultText: "on, off by itself for an --interface without IPv4",
    help: "IPv4 DHCP with --dhcp/--dhcp-proxy; --no-dhcp4 --ipv6 serves DHCPv6 only (an IPv6-only segment)",
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
