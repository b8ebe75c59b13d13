/**
 * The static-leases file (`--static-config`), in PyPXE's `example-leases.json` shape:
 * `{"dhcp": {"binding": {"5C:9A:D8:5E:F2:E5": {"ipaddr", "subnet", "router", "dns", "rom"}}}}`.
 * Every field is optional; MACs are accepted in any case with `:` or `-`.
 * @module
 */
import { normaliseMac } from "./net.ts";
import { errText } from "./errors.ts";
import { checkValue, ConfigError, describeFsError } from "./config.ts";

/** One client's fixed settings; absent fields fall back to the global config. */
export interface StaticBinding {
  readonly ipaddr?: string;
  readonly subnet?: string;
  readonly router?: string;
  readonly dns?: readonly string[];
  /** Boot file for this client, overriding the derived one. */
  readonly rom?: string;
  /** Its fixed IPv6 address (DHCPv6 with `--ipv6`; the MAC is read from its DUID or link-local address). */
  readonly ipv6addr?: string;
}

/** Bindings by MAC, normalised to lower case with colons. */
export type StaticLeases = ReadonlyMap<string, StaticBinding>;

export { normaliseMac } from "./net.ts";

const FIELDS = {
  ipaddr: "ip",
  subnet: "netmask",
  router: "ip",
  dns: "ip-list",
  rom: "string",
  ipv6addr: "ipv6-or-empty",
} as const;

/** Parses the text of a static-leases file; a bad entry is an error naming its MAC and field. */
export function parseStaticLeases(text: string, source: string): StaticLeases {
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (err) {
    throw new ConfigError(`${source}: not valid JSON (${errText(err)})`);
  }
  const binding = (data as { dhcp?: { binding?: unknown } } | null)?.dhcp?.binding;
  if (typeof binding !== "object" || binding === null || Array.isArray(binding)) {
    throw new ConfigError(`${source}: expected {"dhcp": {"binding": {"MAC": {...}}}}`);
  }
  const leases = new Map<string, StaticBinding>();
  const ips = new Map<string, string>();
  for (const [rawMac, entry] of Object.entries(binding)) {
    const mac = normaliseMac(rawMac);
    if (mac === null) throw new ConfigError(`${source}: ${JSON.stringify(rawMac)} is not a MAC address`);
    if (leases.has(mac)) throw new ConfigError(`${source}: ${rawMac}: listed twice`);
    if (typeof entry !== "object" || entry === null || Array.isArray(entry)) {
      throw new ConfigError(`${source}: ${rawMac}: expected an object of fields`);
    }
    const out: Record<string, unknown> = {};
    for (const [field, value] of Object.entries(entry)) {
      const kind = FIELDS[field as keyof typeof FIELDS];
      if (kind === undefined) {
        throw new ConfigError(
          `${source}: ${rawMac}: unknown field ${field} (known: ${Object.keys(FIELDS).join(", ")})`,
        );
      }
      const checked = checkValue(kind, value);
      if (!checked.ok) throw new ConfigError(`${source}: ${rawMac}: ${field}: ${checked.reason}`);
      out[field] = kind === "ip-list" ? (checked.value as string).split(",") : checked.value;
    }
    if (typeof out.ipaddr === "string") {
      const other = ips.get(out.ipaddr);
      if (other !== undefined) {
        throw new ConfigError(`${source}: ${rawMac}: ipaddr ${out.ipaddr} is also given to ${other}`);
      }
      ips.set(out.ipaddr, rawMac);
    }
    leases.set(mac, out as StaticBinding);
  }
  return leases;
}

/** Reads and parses a static-leases file. */
export async function loadStaticLeases(path: string): Promise<StaticLeases> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (err) {
    throw new ConfigError(`--static-config ${path}: cannot read (${describeFsError(err)})`);
  }
  return parseStaticLeases(text, path);
}
