/**
 * What pypxe says when it starts: the banner (services and endpoints, the netboot root, the boot file per
 * client type, DHCP mode, connection limits) and the warnings about what the tree lacks.
 * @module
 */
import type { BuiltConfig, PxeConfig } from "./config.ts";
import { SAMPLE_CLIENTS } from "./clients.ts";
import { bootFileFor, policyOptionsFrom, SHIM_FILE } from "./dhcp/policy.ts";
import { type ConnectionCaps, describeCaps } from "./limits.ts";
import { type NetbootFs, piSizeWarnings } from "./netboot/fs.ts";
import type { Service } from "./server.ts";
import { VERSION } from "./version.ts";

/** "BIOS: pxelinux.0, UEFI x64: ipxe.efi (missing), ..." from the policy and the tree. */
async function bootFilesLine(config: PxeConfig, netboot: NetbootFs): Promise<string> {
  const policy = policyOptionsFrom(config);
  const parts: string[] = [];
  for (const { label, client, optionalUnless } of SAMPLE_CLIENTS) {
    const file = bootFileFor(client, policy).file;
    if (file === undefined) continue;
    let missing = "";
    if (!/^[a-z]+:\/\//.test(file)) {
      missing = await netboot.resolve(file).then(() => "", () => " (missing: run deno task netboot)");
      // a type the default tree cannot serve is left out, unless the user configured its file
      if (missing !== "" && optionalUnless !== undefined && !optionalUnless(config)) continue;
    }
    parts.push(`${label}: ${file}${missing}`);
  }
  return parts.join(", ");
}

/**
 * What the tree lacks for the configured clients: the Secure Boot chain's files (and GRUB's proxyDHCP
 * limit), and files too big for a Raspberry Pi.
 */
export async function startupWarnings(config: PxeConfig, netboot: NetbootFs): Promise<string[]> {
  const warnings: string[] = [];
  if (config.SECURE_BOOT) {
    const missing: string[] = [];
    for (const [file, pkg] of [[SHIM_FILE, "shim-signed"], ["grubx64.efi", "grub-efi-amd64-signed"]]) {
      if (config.NETBOOT_FILE_EFI64 !== "" && file === SHIM_FILE) continue;
      if (!(await netboot.resolve(file).then(() => true, () => false))) missing.push(`${file} (${pkg})`);
    }
    if (missing.length > 0) {
      warnings.push(
        `--secure-boot: ${
          missing.join(", ")
        } not in the netboot tree: install the packages and run deno task netboot`,
      );
    }
    if (config.USE_DHCP && config.DHCP_MODE_PROXY) {
      warnings.push(
        "--secure-boot with proxyDHCP: shim loads GRUB from pypxe, but Debian's GRUB 2.06 reads its " +
          "server from the other DHCP server's answer: set that server's next-server to " +
          `${config.DHCP_FILESERVER}, or use --dhcp`,
      );
    }
  }
  if (config.USE_TFTP) warnings.push(...await piSizeWarnings(netboot));
  return warnings;
}

/** The start-up banner lines: version, services and endpoints, netboot root and its boot files. */
export async function banner(
  built: BuiltConfig,
  netboot: NetbootFs,
  services: readonly Service[],
  caps?: ConnectionCaps,
): Promise<string[]> {
  const { config, iface } = built;
  const lines = [`pypxe ${VERSION}`];
  for (const service of services) lines.push(`  ${service.name.padEnd(5)} ${service.endpoints().join(", ")}`);
  if (services.length === 0) lines.push("  no services enabled (--no-tftp without --dhcp/--http/--nbd)");
  lines.push(`  netboot: ${netboot.describe()}`);
  lines.push(`  boot files: ${await bootFilesLine(config, netboot)}`);
  if (config.USE_DHCP && config.USE_DHCP4) {
    const mode = config.DHCP_MODE_PROXY
      ? "proxyDHCP"
      : `range ${config.DHCP_OFFER_BEGIN}-${config.DHCP_OFFER_END}`;
    const via = iface
      ? ` on ${iface.name} (${iface.reason === "--interface" ? "--interface" : "the only IPv4 interface"})`
      : "";
    lines.push(
      `  dhcp: server ${config.DHCP_SERVER_IP}/${config.DHCP_SUBNET}${via}, ${mode}, boot file ${config.NETBOOT_FILE}`,
    );
    if (!config.DHCP_MODE_PROXY) {
      // what clients are told beyond their address: a wrong router or DNS is the classic silent failure
      lines.push(`  dhcp: router ${config.DHCP_ROUTER || "none"}, DNS ${config.DHCP_DNS || "none"}`);
    }
  }
  if (config.USE_DHCP && config.USE_IPV6) {
    const mode = config.DHCP_MODE_PROXY
      ? "proxyDHCPv6 (boot options only; Requests also on 4011)"
      : `range ${config.DHCP6_OFFER_BEGIN}-${config.DHCP6_OFFER_END}`;
    lines.push(`  dhcp6: server ${config.DHCP6_SERVER_IP}, ${mode}`);
  }
  if (caps !== undefined && services.some((s) => s.name !== "dhcp")) {
    lines.push(`  limits: ${describeCaps(caps)}`);
  }
  lines.push("ready");
  return lines;
}
