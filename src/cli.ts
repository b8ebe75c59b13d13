/**
 * The command line: PyPXE's flag set (same names, same defaults, `--x`/`--no-x` pairs) plus ours,
 * parsed into a partial config, and the PyPXE-shaped `--help` text.
 * @module
 */
import {
  closest,
  ConfigError,
  type ConfigKey,
  type PxeConfig,
  type Setting,
  type SettingGroup,
  SETTINGS,
} from "./config.ts";

/** What the command line asked for. */
export interface CliRequest {
  /** Values given by flags. */
  readonly flags: Partial<PxeConfig>;
  /** `--config FILE`. */
  readonly configFile?: string;
  readonly help: boolean;
  readonly version: boolean;
  readonly dumpConfig: boolean;
  readonly dumpConfigMerged: boolean;
  /** `--check`: validate, probe ports, show the answers per client type, and exit. */
  readonly check: boolean;
}

/** Flags that are not settings. */
const COMMANDS: Readonly<Record<string, { metavar?: string; help: string }>> = {
  "--config": { metavar: "FILE", help: "Load settings from a JSON file (PyPXE's example_cfg.json shape)" },
  "--dump-config": { help: "Print the default configuration as JSON (a valid --config file) and exit" },
  "--dump-config-merged": {
    help: "Print the configuration merged from defaults, --config and flags, and exit",
  },
  "--check": {
    help:
      "Check config, static leases, netboot tree and ports; show the reply for each client type; exit 0/1",
  },
  "--version": { help: "Print the version and exit" },
  "--help": { help: "Show this help and exit" },
};

/** Groups of mutually exclusive flags (PyPXE's argparse groups). */
const EXCLUSIVE: readonly (readonly string[])[] = [["--dhcp", "--dhcp-proxy", "--no-dhcp"]];

interface FlagTarget {
  key: ConfigKey;
  /** For boolean flags, the value they set. */
  bool?: boolean;
}

function flagTable(): Map<string, FlagTarget> {
  const table = new Map<string, FlagTarget>();
  for (const [key, s] of Object.entries(SETTINGS) as [ConfigKey, Setting][]) {
    if (s.flag === undefined) continue;
    const target: FlagTarget = s.kind === "bool" ? { key, bool: true } : { key };
    for (const name of [s.flag, ...(s.aliases ?? [])]) table.set(name, target);
    if (s.noFlag !== undefined) table.set(s.noFlag, { key, bool: false });
  }
  return table;
}

/** Parses the arguments (without the program name); throws `ConfigError` naming the bad flag. */
export function parseArgs(args: readonly string[]): CliRequest {
  const table = flagTable();
  const flags: Partial<Record<ConfigKey, unknown>> = {};
  const seen = new Map<ConfigKey, string>();
  const used = new Set<string>();
  let configFile: string | undefined;
  const request = { help: false, version: false, dumpConfig: false, dumpConfigMerged: false, check: false };

  for (let i = 0; i < args.length; i++) {
    const arg = args[i];
    // `deno task start -- --dhcp` passes the `--` on: pypxe takes no positional arguments, so it means nothing
    if (arg === "--") continue;
    const eq = arg.startsWith("--") ? arg.indexOf("=") : -1;
    const name = eq > 0 ? arg.slice(0, eq) : arg;
    const inline = eq > 0 ? arg.slice(eq + 1) : undefined;
    const takeValue = (): string => {
      if (inline !== undefined) return inline;
      const next = args[i + 1];
      if (next === undefined || (next.startsWith("--") && next.length > 2)) {
        throw new ConfigError(`${name}: expected a value`);
      }
      i++;
      return next;
    };
    if (name === "-h" || name === "--help") request.help = true;
    else if (name === "--version") request.version = true;
    else if (name === "--dump-config") request.dumpConfig = true;
    else if (name === "--dump-config-merged") request.dumpConfigMerged = true;
    else if (name === "--check") request.check = true;
    else if (name === "--config") configFile = takeValue();
    else {
      const target = table.get(name);
      if (target === undefined) {
        if (!name.startsWith("-")) {
          throw new ConfigError(`unexpected argument ${JSON.stringify(arg)} (flags start with --)`);
        }
        const near = closest(name, [...table.keys(), ...Object.keys(COMMANDS)]);
        throw new ConfigError(`unknown flag ${name}${near === null ? "" : ` (did you mean ${near}?)`}`);
      }
      const previous = seen.get(target.key);
      if (previous !== undefined && previous !== name && target.bool !== undefined) {
        throw new ConfigError(`${name}: not allowed with ${previous}`);
      }
      seen.set(target.key, name);
      used.add(name);
      if (target.bool !== undefined) {
        if (inline !== undefined) throw new ConfigError(`${name}: takes no value`);
        flags[target.key] = target.bool;
      } else {
        const setting = SETTINGS[target.key];
        const raw = takeValue();
        const before = flags[target.key];
        // a repeated list flag (--nbd a.img --nbd b.img) collects its values
        flags[target.key] = setting.kind === "path-list" && before !== undefined ? [before, raw].flat() : raw;
        if (setting.kind === "port" || setting.kind === "int") {
          if (!/^\d+$/.test(raw)) {
            const range = setting.kind === "port" ? "1-65535" : `${setting.min}-${setting.max}`;
            throw new ConfigError(`${name}: expected an integer ${range}, got ${JSON.stringify(raw)}`);
          }
          flags[target.key] = Number(raw);
        }
      }
    }
  }
  for (const group of EXCLUSIVE) {
    const given = group.filter((f) => used.has(f));
    if (given.length > 1) throw new ConfigError(`${given[1]}: not allowed with ${given[0]}`);
  }
  if (used.has("--no-dhcp")) flags.DHCP_MODE_PROXY = false;
  if (used.has("--nbd") && [flags.NBD_BLOCK_DEVICE].flat().includes("")) {
    throw new ConfigError("--nbd: expected a file or block device");
  }
  return { flags: flags as Partial<PxeConfig>, configFile, ...request };
}

const GROUP_TITLES: Readonly<Record<SettingGroup, string>> = {
  main: "Main arguments",
  dhcp: "DHCP service arguments",
  files: "File name/directory arguments",
  nbd: "Network Block Device arguments",
  tftp: "TFTP service arguments",
  http: "HTTP service arguments",
  machines: "Per-machine boot arguments",
  cache: "Remote boot file cache arguments",
  ipv6: "IPv6 arguments",
};

/** The default as `--help` shows it: the row's `defaultText`, else its value in PyPXE's spelling. */
function shownDefault(setting: Setting): string {
  if (setting.defaultText !== undefined) return setting.defaultText;
  const value = setting.default;
  return value === "" ? "''" : value === null ? "none" : String(value);
}

/** The full `--help` text, grouped like PyPXE's README tables; `ours` marks flags PyPXE lacks. */
export function helpText(version: string): string {
  const rows: Record<SettingGroup, [string, string][]> = {
    main: [],
    dhcp: [],
    files: [],
    nbd: [],
    tftp: [],
    http: [],
    machines: [],
    cache: [],
    ipv6: [],
  };
  for (const [name, c] of Object.entries(COMMANDS)) {
    rows.main.push([name + (c.metavar ? ` ${c.metavar}` : ""), c.help]);
  }
  for (const s of Object.values(SETTINGS) as Setting[]) {
    if (s.flag === undefined) continue;
    const names = [s.flag, ...(s.aliases ?? [])].map((f) => s.metavar ? `${f} ${s.metavar}` : f);
    if (s.noFlag !== undefined) names.push(s.noFlag);
    rows[s.group].push([
      names.join(", "),
      `${s.help} (default: ${shownDefault(s)})${s.ours ? " [pypxe]" : ""}`,
    ]);
  }
  const width = Math.min(40, Math.max(...Object.values(rows).flat().map(([n]) => n.length)) + 2);
  const lines = [
    `pypxe ${version}: a PXE network-boot server (DHCP, proxyDHCP, TFTP, HTTP, iPXE, NBD)`,
    "",
    "usage: pypxe [--dhcp | --dhcp-proxy] [--http] [--ipxe] [--no-tftp] [--nbd FILE] [options]",
    "",
    "Services: TFTP runs by default; DHCP, HTTP and NBD are opt-in. Settings come from defaults,",
    "then --config FILE, then flags. Flags marked [pypxe] are additions to PyPXE's set.",
  ];
  for (const group of Object.keys(GROUP_TITLES) as SettingGroup[]) {
    lines.push("", `${GROUP_TITLES[group]}:`);
    for (const [name, help] of rows[group]) {
      lines.push(
        name.length + 2 > width
          ? `  ${name}\n${" ".repeat(width + 2)}${help}`
          : `  ${name.padEnd(width)}${help}`,
      );
    }
  }
  return lines.join("\n") + "\n";
}
