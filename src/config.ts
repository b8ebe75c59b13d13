/**
 * The one typed configuration. Built as defaults < `--config` JSON file < command-line flags, using
 * PyPXE's upper-case JSON keys so an existing `example_cfg.json` loads unchanged, then validated with
 * one-line messages that name the flag or key.
 *
 * Every setting is one row of the table in `settings.ts` (kind, default, flags, help); `DEFAULTS`, the
 * flag parser, `--help` and `--dump-config` all derive from it; this file checks and merges values.
 * @module
 */
import { formatIpv6, parseIpv6 } from "./dhcp6/address.ts";
import { errText } from "./errors.ts";
import { deriveIpv6, type Ipv6Address, Ipv6ConfigError, ipv6Interfaces } from "./net6.ts";
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

export {
  type ConfigKey,
  DEFAULTS,
  KEY_ALIASES,
  type PxeConfig,
  type Setting,
  type SettingGroup,
  type SettingKind,
  type SettingKindFor,
  SETTINGS,
  type SettingsTable,
  type SettingValues,
} from "./settings.ts";
import {
  type ConfigKey,
  DEFAULTS,
  KEY_ALIASES,
  type PxeConfig,
  type SettingKind,
  SETTINGS,
} from "./settings.ts";

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
    case "ipv6-or-empty":
      return typeof value === "string" && (value === "" || parseIpv6(value) !== undefined)
        ? { ok: true, value: value === "" ? value : formatIpv6(parseIpv6(value)!) }
        : { ok: false, reason: `expected an IPv6 address or "", got ${shown}` };
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
      if (value === "" || (Array.isArray(value) && value.length === 0)) return { ok: true, value: "" }; // none
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
    case "url-or-empty": {
      if (value === "") return { ok: true, value };
      let url: URL | null = null;
      try {
        url = typeof value === "string" ? new URL(value) : null;
      } catch {
        url = null;
      }
      return url !== null && (url.protocol === "http:" || url.protocol === "https:")
        ? { ok: true, value: (value as string).replace(/\/+$/, "") }
        : { ok: false, reason: `expected an http:// or https:// URL, got ${shown}` };
    }
    case "size": {
      const m = typeof value === "number"
        ? [String(value), String(value), ""]
        : typeof value === "string"
        ? /^\s*(\d+(?:\.\d+)?)\s*([KMGT]?)i?B?\s*$/i.exec(value)
        : null;
      const unit = { "": 1, K: 1024, M: 1024 ** 2, G: 1024 ** 3, T: 1024 ** 4 }[(m?.[2] ?? "").toUpperCase()];
      const n = m === null || unit === undefined ? NaN : Math.floor(Number(m[1]) * unit);
      return Number.isSafeInteger(n) && n >= 1024 * 1024
        ? { ok: true, value: n }
        : { ok: false, reason: `expected a size of at least 1M such as 500M or 20G, got ${shown}` };
    }
    case "listen-or-empty": {
      if (value === "") return { ok: true, value };
      const m = typeof value === "string" ? /^(.+):(\d{1,5})$/.exec(value) : null;
      const host = m?.[1].replace(/^\[(.*)\]$/, "$1");
      return m !== null && host !== undefined && isHost(host) && Number(m[2]) >= 1 && Number(m[2]) <= 65535
        ? { ok: true, value }
        : { ok: false, reason: `expected ADDR:PORT such as 127.0.0.1:8067, got ${shown}` };
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
export function closest(word: string, candidates: readonly string[]): string | null {
  let best: string | null = null;
  let bestDistance = Infinity;
  for (const c of candidates) {
    const d = distance(word.toUpperCase(), c.toUpperCase());
    if (d < bestDistance) [best, bestDistance] = [c, d];
  }
  // only a near miss is a suggestion: a typo or two, not a different word (--frobnicate is not --no-ipxe)
  const bare = word.replace(/^-+/, "");
  return bestDistance <= Math.max(2, Math.floor(bare.length / 4)) ? best : null;
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
    throw new ConfigError(`${source}: not valid JSON (${errText(err)})`);
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
      const near = closest(rawKey, keys);
      warnings.push(
        `${source}: unknown key ${rawKey} ignored${near === null ? "" : ` (did you mean ${near}?)`}`,
      );
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
  return errText(err);
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
  /** The IPv6 addresses to derive `--ipv6` settings from (defaults to the machine's). */
  interfaces6?: () => Ipv6Address[];
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
  const iface = pickInterface(
    config,
    explicit,
    opts.interfaces ?? ipv4Interfaces,
    opts.interfaces6 ?? ipv6Interfaces,
  );
  if (config.USE_DHCP && !config.USE_DHCP4) {
    if (!config.USE_IPV6) {
      throw new ConfigError("--no-dhcp4 without --ipv6 leaves no DHCP service: add --ipv6");
    }
    if (!explicit.has("USE_DHCP4")) {
      warnings.push(`${config.INTERFACE} has no IPv4 address: DHCPv6 only there (no IPv4 DHCP)`);
    }
  }
  if (iface !== undefined) applyInterface(config, explicit, iface);
  if (config.NETBOOT_FILE === "") {
    config.NETBOOT_FILE = !config.USE_IPXE ? "pxelinux.0" : !config.USE_HTTP ? "boot.ipxe" : "boot.http.ipxe";
  }
  if (config.DHCP_BROADCAST === "") {
    config.DHCP_BROADCAST = broadcastOf(config.DHCP_SERVER_IP, config.DHCP_SUBNET);
  }

  validate(config, explicit);
  if (config.USE_IPV6 && (config.USE_DHCP || config.USE_RA)) {
    try {
      const d = deriveIpv6({
        iface: config.INTERFACE,
        server: config.DHCP6_SERVER_IP,
        begin: config.DHCP6_OFFER_BEGIN,
        end: config.DHCP6_OFFER_END,
        full: config.USE_DHCP && !config.DHCP_MODE_PROXY,
      }, (opts.interfaces6 ?? ipv6Interfaces)());
      config.DHCP6_SERVER_IP = d.server;
      config.DHCP6_OFFER_BEGIN = d.begin;
      config.DHCP6_OFFER_END = d.end;
    } catch (err) {
      if (err instanceof Ipv6ConfigError) throw new ConfigError(err.message);
      throw new ConfigError(`--ipv6: cannot list interfaces (${describeFsError(err)})`);
    }
  }
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
  list6: () => Ipv6Address[],
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
    if (found === undefined && config.USE_IPV6 && hasIpv6(config.INTERFACE, list6)) {
      // an IPv6-only segment: DHCPv6 there, no IPv4 DHCP (nothing to derive IPv4 addresses from)
      config.USE_DHCP4 = false;
      return undefined;
    }
    if (found === undefined) {
      const names = [...new Set(all.map((i) => i.name))];
      // the host's other interfaces only count when the list is the host's (tests inject their own)
      const every = list === ipv4Interfaces ? allInterfaceNames() : null;
      if (every !== null && !every.includes(config.INTERFACE)) {
        throw new ConfigError(
          `--interface ${config.INTERFACE}: no such interface (this host has ${every.join(", ") || "none"})`,
        );
      }
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
  // the interface may be an isolated link (a technician's laptop cabled to one machine): pypxe is no
  // router and knows no DNS server there, so none is sent unless the user names one
  set("DHCP_ROUTER", "");
  set("DHCP_DNS", "");
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
    // the checked form is the value (`--cache-max 100M` is 104857600, a port given as text a number)
    (config as unknown as Record<string, unknown>)[key] = checked.value;
  }
  if (!config.USE_DHCP || !config.USE_DHCP4) return;
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

/** True when this host's interface `name` has an IPv6 address (false when interfaces cannot be listed). */
function hasIpv6(name: string, list6: () => Ipv6Address[]): boolean {
  try {
    return list6().some((a) => a.name === name);
  } catch {
    return false;
  }
}

/** The names of every network interface of this host (any address family), or null if unknown. */
export function allInterfaceNames(): string[] | null {
  try {
    return [...new Set(Deno.networkInterfaces().map((i) => i.name))];
  } catch {
    return null;
  }
}
