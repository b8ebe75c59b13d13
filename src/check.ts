/**
 * `--check`: a dry run for the field. Validates what the config points at, checks every port it would
 * bind is free, and shows, per client type, the answer pypxe would give (file, next-server, options)
 * with whether that file exists. Nothing is served.
 * @module
 */
import { describeCaps, processCaps } from "./limits.ts";
import type { PxeConfig } from "./config.ts";
import { bootFileFor, policyOptionsFrom } from "./dhcp/policy.ts";
import { SAMPLE_CLIENTS } from "./clients.ts";
import { describeBindError, inSubnet, ipv4Interfaces, maskToPrefix, networkOf } from "./net.ts";
import { leaseStoreFor } from "./dhcp/responder.ts";
import type { StaticLeases } from "./static_leases.ts";
import { MachineBoot } from "./machines/runtime.ts";
import { readTokenFile } from "./machines/api.ts";
import { errText } from "./errors.ts";
import type { NetbootFs } from "./netboot/fs.ts";
import { BootFiles } from "./netboot/files.ts";
import { checkIpv6 } from "./check6.ts";

/** What `--check` found. */
export interface CheckReport {
  /** The table and the port lines, ready to print. */
  readonly lines: string[];
  /** Everything that is wrong, one line each; empty when all is well. */
  readonly problems: string[];
  /** Client types that would not boot but are not configured either (ARM64, Raspberry Pi...). */
  readonly notes: string[];
}

/** A socket pypxe would bind. */
interface PortUse {
  readonly service: string;
  readonly proto: "UDP" | "TCP";
  readonly host: string;
  readonly port: number;
}

/** The sockets the enabled services bind. */
export function portsOf(config: PxeConfig): PortUse[] {
  const ports: PortUse[] = [];
  // with --ipv6 TFTP and HTTP also bind [::] (one dual-stack socket for the default 0.0.0.0)
  const six = (host: string) => config.USE_IPV6 ? (host === "0.0.0.0" ? ["::"] : [host, "::"]) : [host];
  if (config.USE_TFTP) {
    for (const host of six(config.TFTP_SERVER_IP)) {
      ports.push({ service: "tftp", proto: "UDP", host, port: config.TFTP_PORT });
    }
  }
  if (config.USE_DHCP) {
    if (config.USE_DHCP4) {
      ports.push({ service: "dhcp", proto: "UDP", host: "0.0.0.0", port: config.DHCP_SERVER_PORT });
      if (config.DHCP_MODE_PROXY) ports.push({ service: "dhcp", proto: "UDP", host: "0.0.0.0", port: 4011 });
    }
    if (config.USE_IPV6) {
      ports.push({ service: "dhcp6", proto: "UDP", host: "::", port: 547 });
      if (config.DHCP_MODE_PROXY) {
        ports.push({ service: "dhcp6", proto: "UDP", host: config.DHCP6_SERVER_IP || "::", port: 4011 });
      }
    }
  }
  if (config.USE_HTTP) {
    for (const host of six(config.HTTP_SERVER_IP)) {
      ports.push({ service: "http", proto: "TCP", host, port: config.HTTP_PORT });
    }
  }
  if ([config.NBD_BLOCK_DEVICE].flat().some((d) => d !== "")) {
    ports.push({ service: "nbd", proto: "TCP", host: config.NBD_SERVER_IP, port: config.NBD_PORT });
  }
  return ports;
}

/** Binds and closes the socket at once; returns the one-line problem, or null when it is free. */
export function probePort(use: PortUse): string | null {
  try {
    if (use.proto === "UDP") {
      Deno.listenDatagram({ transport: "udp", hostname: use.host, port: use.port }).close();
    } else {
      Deno.listen({ transport: "tcp", hostname: use.host, port: use.port }).close();
    }
    return null;
  } catch (err) {
    return describeBindError(err, use);
  }
}

/** This host's IPv4 addresses, loopback included (null-safe: none when they cannot be listed). */
function hostAddresses(): string[] {
  try {
    return ["127.0.0.1", ...ipv4Interfaces().map((i) => i.address)];
  } catch {
    return [];
  }
}

/** Addresses the config binds or announces that this host does not have (the real start fails or misleads). */
function addressProblems(config: PxeConfig, local: readonly string[]): string[] {
  if (local.length === 0) return [];
  const problems: string[] = [];
  const mine = (ip: string) => ip === "0.0.0.0" || local.includes(ip);
  const have = `this host has ${
    local.filter((a) => a !== "127.0.0.1").join(", ") || "no other IPv4 address"
  }`;
  const check = (ip: string, what: string) => {
    if (ip !== "" && !mine(ip)) problems.push(`${what} ${ip} is not an address of this host (${have})`);
  };
  if (config.USE_DHCP && config.USE_DHCP4) check(config.DHCP_SERVER_IP, "DHCP_SERVER_IP (--dhcp-server-ip)");
  if (config.USE_TFTP) check(config.TFTP_SERVER_IP, "TFTP_SERVER_IP (--tftp-server-ip)");
  if (config.USE_HTTP) check(config.HTTP_SERVER_IP, "HTTP_SERVER_IP (--http-server-ip)");
  if ([config.NBD_BLOCK_DEVICE].flat().some((d) => d !== "")) {
    check(config.NBD_SERVER_IP, "NBD_SERVER_IP (--nbd-server)");
  }
  // the file server may be another machine on purpose (a separate TFTP server): a note would do, but
  // pointing clients at an address nobody serves is the classic silent failure, so only when pypxe serves
  if (config.USE_DHCP && config.USE_DHCP4 && (config.USE_TFTP || config.USE_HTTP)) {
    check(
      config.DHCP_FILESERVER,
      "DHCP_FILESERVER (--dhcp-fileserver), where clients fetch their boot file,",
    );
  }
  return problems;
}

/** NBD images that do not exist or cannot be read (the real start would exit 1). */
async function imageProblems(config: PxeConfig): Promise<string[]> {
  const problems: string[] = [];
  for (const path of [config.NBD_BLOCK_DEVICE].flat().filter((d) => d !== "")) {
    try {
      const file = await Deno.open(path, { read: true });
      file.close();
    } catch (err) {
      problems.push(`--nbd ${path}: cannot open it (${errText(err)})`);
    }
  }
  return problems;
}

/** Saved leases the server would drop (outside the range, reserved for another MAC) and static leases
 * outside the subnet. Reads the lease file and its journals; writes nothing. */
async function leaseProblems(config: PxeConfig, staticLeases: StaticLeases): Promise<string[]> {
  if (!config.USE_DHCP || !config.USE_DHCP4) return [];
  const problems: string[] = [];
  const subnet = (mask: string) =>
    `${networkOf(config.DHCP_SERVER_IP, mask)}/${
      maskToPrefix(mask)
    } of DHCP_SERVER_IP ${config.DHCP_SERVER_IP}`;
  for (const [mac, binding] of staticLeases) {
    if (binding.ipaddr === undefined || config.DHCP_MODE_PROXY) continue;
    const mask = binding.subnet ?? config.DHCP_SUBNET;
    if (!inSubnet(binding.ipaddr, config.DHCP_SERVER_IP, mask)) {
      problems.push(
        `static lease ${mac} (${config.STATIC_CONFIG}): ipaddr ${binding.ipaddr} is outside the subnet ` +
          `${subnet(mask)}: the client could not reach this server`,
      );
    }
  }
  if (config.DHCP_MODE_PROXY || config.LEASES_FILE === "") return problems;
  const warnings: string[] = [];
  await leaseStoreFor({ config, staticLeases }, (m) => warnings.push(m)).load({ dryRun: true });
  const range = `${config.DHCP_OFFER_BEGIN}-${config.DHCP_OFFER_END}`;
  for (const warning of warnings) {
    problems.push(`saved lease ${warning.replace(/ skipped: /, " would be dropped: ")} (range ${range})`);
  }
  return problems;
}

/** `--machines`: the set is readable (else a problem naming the file and key), what known machines get. */
async function machinesReport(config: PxeConfig, problems: string[]): Promise<string[]> {
  if (config.API_LISTEN !== "" && config.API_TOKEN_FILE !== "") {
    await readTokenFile(config.API_TOKEN_FILE).catch((err) => problems.push(errText(err)));
  }
  if (config.MACHINES_DIR === "") return [];
  try {
    const { set, lines } = await MachineBoot.preview(config.MACHINES_DIR);
    const groups = set.groups.map((g) => `${g.name} -> ${g.profile}${g.once ? " (once)" : ""}`);
    return [
      `Machines (${config.MACHINES_DIR}): ${set.profiles.size} profile(s): ${
        [...set.profiles.keys()].join(", ") || "none"
      }`,
      `  groups: ${groups.join(", ") || "none"}`,
      ...(lines.length === 0 ? ["  no machine seen yet"] : lines.map((l) => `  ${l}`)),
    ];
  } catch (err) {
    problems.push(`--machines ${errText(err)}`);
    return [];
  }
}

function pad(cells: string[], widths: number[]): string {
  return cells.map((c, i) => c.padEnd(widths[i])).join("  ").trimEnd();
}

/** Runs the check: the per-client table, the port probes and the files the answers name. */
export async function runCheck(opts: {
  config: PxeConfig;
  netboot: NetbootFs;
  /** Warnings of reading the config (unknown keys...): each is a problem here. */
  configWarnings?: readonly string[];
  /** The static leases (`--static-config`), checked against the subnet. */
  staticLeases?: StaticLeases;
  /** The host's IPv4 addresses (tests inject them); default: this machine's, with loopback. */
  localAddresses?: readonly string[];
}): Promise<CheckReport> {
  const { config, netboot } = opts;
  const problems: string[] = [...(opts.configWarnings ?? [])];
  const notes: string[] = [];
  problems.push(...addressProblems(config, opts.localAddresses ?? hostAddresses()));
  problems.push(...await imageProblems(config));
  problems.push(...await leaseProblems(config, opts.staticLeases ?? new Map()));
  const six = await checkIpv6(config, opts.staticLeases ?? new Map());
  problems.push(...six.problems);
  const menuProblem = await new BootFiles({ netboot }).menuProblem();
  if (menuProblem !== undefined) problems.push(menuProblem);
  const policy = policyOptionsFrom(config);
  const rows: string[][] = [["client", "boot file", "next-server", "options", "file"]];
  for (const { label, client, optionalUnless } of SAMPLE_CLIENTS) {
    const report = optionalUnless === undefined || optionalUnless(config) ? problems : notes;
    const decision = bootFileFor(client, policy);
    const file = decision.file ?? "(none)";
    let state = "-";
    if (decision.file !== undefined && !/^[a-z]+:\/\//.test(decision.file)) {
      try {
        const found = await netboot.resolve(decision.file);
        state = `ok (${found.layer}, ${found.size} bytes)`;
      } catch {
        state = "MISSING";
        report.push(
          `${label}: boot file ${decision.file} is not in the netboot tree (${netboot.describe()})`,
        );
      }
    } else if (decision.file !== undefined) state = "URL";
    if (decision.warning) report.push(`${label}: ${decision.warning}`);
    const options = [
      decision.vendorClass ? `60=${decision.vendorClass}` : "",
      decision.family === "rpi" ? "43='Raspberry Pi Boot' 66" : "",
      config.DHCP_MODE_PROXY ? "43=PXE discovery (proxy)" : "",
    ].filter((o) => o !== "").join(" ");
    rows.push([label, file, config.DHCP_FILESERVER, options || "-", state]);
  }
  if (config.SECURE_BOOT && config.NETBOOT_FILE_EFI64 === "") {
    // shim's second stage: not in the table (no client asks for it by DHCP) but the chain needs it
    const grub = await netboot.resolve("grubx64.efi").then(() => true, () => false);
    if (!grub) {
      problems.push(
        `--secure-boot: grubx64.efi (shim's second stage, package grub-efi-amd64-signed) is not in the ` +
          `netboot tree (${netboot.describe()})`,
      );
    }
  }
  const machineLines = await machinesReport(config, problems);
  const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
  const lines = [`Replies pypxe would send (${config.DHCP_MODE_PROXY ? "proxyDHCP" : "DHCP"}):`];
  for (const row of rows) lines.push("  " + pad(row, widths));
  lines.push(...six.lines);
  lines.push(...machineLines);
  lines.push("Ports:");
  const ports = portsOf(config);
  if (ports.length === 0) lines.push("  none (no service enabled)");
  for (const use of ports) {
    const problem = probePort(use);
    lines.push(
      `  ${use.service.padEnd(5)} ${use.proto} ${
        use.host.includes(":") ? `[${use.host}]` : use.host
      }:${use.port}  ${problem === null ? "free" : "NOT FREE"}`,
    );
    if (problem !== null) problems.push(problem);
  }
  const caps = processCaps({
    http: config.HTTP_MAX_CONNECTIONS,
    nbd: config.NBD_MAX_CONNECTIONS,
  });
  lines.push("Limits:", `  ${describeCaps(caps)}`);
  // a counted limit is what is still free (a few descriptors below the limit itself)
  if (caps.fileLimit !== null && caps.fileLimit < (caps.probed ? 4000 : 4096)) {
    notes.push(
      `the open-file limit is ${
        caps.probed ? "about " : ""
      }${caps.fileLimit}: raise it (ulimit -n 65536, or LimitNOFILE= in the ` +
        `systemd unit) so a connection flood cannot crowd out real clients`,
    );
  }
  return { lines, problems, notes };
}
