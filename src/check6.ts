/**
 * The IPv6 part of `--check` (with `--ipv6`): the boot-file URLs DHCPv6 would send per client type, the
 * server's IPv6 address being this host's, static `ipv6addr` leases inside its /64, and saved IPv6 leases
 * the server would drop (read without writing).
 * @module
 */
import { parseIpv6 } from "./dhcp6/address.ts";
import { Leases6 } from "./dhcp6/leases6.ts";
import { bootFileUrl, urlHost } from "./dhcp6/replies6.ts";
import { bootFileFor, policyOptionsFrom } from "./dhcp/policy.ts";
import type { ClientInfo } from "./dhcp/policy.ts";
import { type Ipv6Address, ipv6Interfaces, leases6FileFor } from "./net6.ts";
import type { PxeConfig } from "./settings.ts";
import type { StaticLeases } from "./static_leases.ts";

/** IPv6 client types as their firmware describes itself in a Solicit. */
const SAMPLE_CLIENTS6: readonly { label: string; client: ClientInfo }[] = [
  {
    label: "UEFI x64 (PXEv6)",
    client: { arch: 7, vendorClass: "PXEClient:Arch:00007:UNDI:003000", ipxe: false },
  },
  {
    label: "UEFI HTTP (IPv6)",
    client: { arch: 16, vendorClass: "HTTPClient:Arch:00016:UNDI:003000", ipxe: false },
  },
  {
    label: "ARM64 UEFI (PXEv6)",
    client: { arch: 11, vendorClass: "PXEClient:Arch:00011:UNDI:003000", ipxe: false },
  },
  { label: "iPXE UEFI (IPv6)", client: { arch: 7, vendorClass: "PXEClient", ipxe: true } },
];

/** What the IPv6 check found: report lines and problems (one line each). */
export interface Check6 {
  lines: string[];
  problems: string[];
}

/** Runs the IPv6 checks; `addresses` are this host's IPv6 addresses (tests inject them). */
export async function checkIpv6(
  config: PxeConfig,
  staticLeases: StaticLeases,
  addresses?: readonly Ipv6Address[],
): Promise<Check6> {
  const lines: string[] = [];
  const problems: string[] = [];
  if (!config.USE_IPV6 || !config.USE_DHCP) return { lines, problems };
  const server = config.DHCP6_SERVER_IP;
  let local: readonly Ipv6Address[] = [];
  try {
    local = addresses ?? ipv6Interfaces();
  } catch {
    local = [];
  }
  if (local.length > 0 && !local.some((a) => a.address === server)) {
    problems.push(
      `DHCP6_SERVER_IP (--dhcp6-server-ip) ${server} is not an address of this host (this host has ${
        local.map((a) => a.address).join(", ")
      })`,
    );
  }
  const policy = { ...policyOptionsFrom(config), fileServer: urlHost(server) };
  const mode = config.DHCP_MODE_PROXY
    ? "proxyDHCPv6: boot options only, Requests also on 4011"
    : `range ${config.DHCP6_OFFER_BEGIN}-${config.DHCP6_OFFER_END}`;
  lines.push(`Replies pypxe would send over DHCPv6 (${mode}):`);
  const width = Math.max(...SAMPLE_CLIENTS6.map((s) => s.label.length));
  for (const { label, client } of SAMPLE_CLIENTS6) {
    const decision = bootFileFor(client, policy);
    const url = decision.file === undefined
      ? "(none)"
      : bootFileUrl(decision.file, { fileServer: policy.fileServer, httpPort: config.HTTP_PORT });
    // full mode sends 16 only for HTTPClient (an address with PXEClient sends OVMF to port 4011 first)
    const vc = decision.vendorClass ?? "PXEClient";
    const sixteen = config.DHCP_MODE_PROXY || vc === "HTTPClient" ? `  16=${vc}` : "";
    lines.push(`  ${label.padEnd(width)}  59=${url}${sixteen}`);
  }
  if (config.DHCP_MODE_PROXY) return { lines, problems };
  const prefix = parseIpv6(server)?.slice(0, 8);
  for (const [mac, binding] of staticLeases) {
    const b = binding.ipv6addr === undefined ? undefined : parseIpv6(binding.ipv6addr);
    if (b === undefined || prefix === undefined) continue;
    if (!prefix.every((x, i) => x === b[i])) {
      problems.push(
        `static lease ${mac} (${config.STATIC_CONFIG}): ipv6addr ${binding.ipv6addr} is outside the /64 of ` +
          `DHCP6_SERVER_IP ${server}: the client could not reach this server`,
      );
    }
  }
  const file = leases6FileFor(config.LEASES_FILE);
  if (file === "") return { lines, problems };
  const warnings: string[] = [];
  await new Leases6({
    begin: config.DHCP6_OFFER_BEGIN,
    end: config.DHCP6_OFFER_END,
    file,
    now: Date.now,
    warn: (m) => warnings.push(m),
  }).load({ dryRun: true });
  for (const w of warnings) problems.push(`saved IPv6 lease ${w}`);
  return { lines, problems };
}
