/**
 * The program: command line -> config -> services -> run until a signal. `main.ts` only calls
 * {@linkcode runPypxe} and exits with its code; everything here is testable in-process.
 * @module
 */
import { getLogger } from "@logtape/logtape";
import { chooseInterface, decideAuto, type ProbeAnswer, probeDhcpServers } from "./auto.ts";
import { runCheck } from "./check.ts";
import { helpText, parseArgs } from "./cli.ts";
import {
  buildConfig,
  type BuiltConfig,
  ConfigError,
  configToJson,
  DEFAULTS,
  type FileConfig,
  loadConfigFile,
  type PxeConfig,
} from "./config.ts";
import { BootEvents } from "./events.ts";
import { type ConnectionCaps, connectionCaps, describeCaps, openFileLimit } from "./limits.ts";
import { MAIN_CATEGORY, setupLogging, teardownLogging } from "./log.ts";
import { NetbootError, NetbootFs, piSizeWarnings } from "./netboot/fs.ts";
import { BootFiles } from "./netboot/files.ts";
import {
  guardProcess,
  logBootEvents,
  runUntilSignal,
  type Service,
  type ServiceContext,
  type ServiceFactory,
  ServiceGroup,
  StartupError,
} from "./server.ts";
import { loadStaticLeases, type StaticLeases } from "./static_leases.ts";
import { bootFileFor, type ClientInfo, policyOptionsFrom, SHIM_FILE } from "./dhcp/policy.ts";
import { createDhcpService } from "./dhcp/server.ts";
import { createHttpService } from "./http/server.ts";
import { createNbdService } from "./nbd/server.ts";
import { createTftpService } from "./tftp/server.ts";
import { dropPrivileges, type Ids, lookupIds } from "./privilege.ts";
import { StatusBoard } from "./status.ts";
import { TtyStatusView } from "./status_tty.ts";
import { VERSION } from "./version.ts";

/** Where the program writes; tests pass their own. */
export interface AppIo {
  stdout: (text: string) => void;
  stderr: (text: string) => void;
  /** Stops a running server without a signal. */
  signal?: AbortSignal;
  /** Called once all services are listening. */
  onReady?: (group: ServiceGroup) => void;
}

const encoder = new TextEncoder();
const defaultIo: AppIo = {
  stdout: (text) => Deno.stdout.writeSync(encoder.encode(text)),
  stderr: (text) => Deno.stderr.writeSync(encoder.encode(text)),
};

/** The factories of the implemented services, in start order. */
export const SERVICE_FACTORIES: ServiceFactory[] = [
  createTftpService,
  createHttpService,
  createDhcpService,
  createNbdService,
];

/** Runs pypxe with `args`; resolves with the process exit code (0 ok, 1 runtime failure, 2 bad config). */
export async function runPypxe(args: readonly string[], io: AppIo = defaultIo): Promise<number> {
  let built: BuiltConfig;
  let staticLeases: StaticLeases = new Map();
  let checkOnly = false;
  let autoNotes: string[] = [];
  let ids: Ids | undefined;
  try {
    const request = parseArgs(args);
    if (request.help) {
      io.stdout(helpText(VERSION));
      return 0;
    }
    if (request.version) {
      io.stdout(`pypxe ${VERSION}\n`);
      return 0;
    }
    if (request.dumpConfig) {
      io.stdout(configToJson(DEFAULTS) + "\n");
      return 0;
    }
    const file: FileConfig = request.configFile !== undefined
      ? await loadConfigFile(request.configFile)
      : { values: {}, warnings: [] };
    for (const warning of file.warnings) io.stderr(`pypxe: warning: ${warning}\n`);
    if (request.dumpConfigMerged) {
      io.stdout(configToJson({ ...DEFAULTS, ...file.values, ...request.flags }) + "\n");
      return 0;
    }
    const auto = await applyAuto(file.values, request.flags, io);
    if (typeof auto === "number") return auto;
    built = buildConfig({ file: file.values, flags: auto.flags });
    autoNotes = auto.notes;
    if (built.config.STATIC_CONFIG !== "") staticLeases = await loadStaticLeases(built.config.STATIC_CONFIG);
    checkOnly = request.check;
    if (built.config.USER !== "") ids = lookupIds(built.config.USER, built.config.GROUP || undefined);
    else if (built.config.GROUP !== "") throw new ConfigError("--group needs --user");
  } catch (err) {
    if (err instanceof ConfigError) {
      io.stderr(`pypxe: error: ${err.message}\n`);
      return 2;
    }
    throw err;
  }
  const { config } = built;
  // with the live table on, every log line goes through it (erase table, print line, redraw)
  let view: TtyStatusView | null = null;
  const showStatus = built.explicit.has("STATUS")
    ? config.STATUS
    : config.MODE_DEBUG === "" && !checkOnly && isTerminal(Deno.stderr);
  await setupLogging({
    write: showStatus ? (line) => view ? view.writeLog(line) : writeErr(line + "\n") : undefined,
    debug: config.MODE_DEBUG,
    verbose: config.MODE_VERBOSE,
    syslog: config.SYSLOG_SERVER ? { host: config.SYSLOG_SERVER, port: config.SYSLOG_PORT } : null,
  });
  const log = getLogger(MAIN_CATEGORY);
  try {
    for (const note of autoNotes) log.info(note);
    for (const warning of built.warnings) log.warn(warning);
    let netboot: NetbootFs;
    try {
      const overlay = config.NETBOOT_DIR === DEFAULTS.NETBOOT_DIR && !(await exists(config.NETBOOT_DIR))
        ? undefined
        : config.NETBOOT_DIR;
      netboot = await NetbootFs.open({ overlay });
    } catch (err) {
      if (err instanceof NetbootError) {
        log.error(`--netboot-dir ${err.message}`);
        return 2;
      }
      throw err;
    }
    if (checkOnly) {
      const report = await runCheck({ config, netboot });
      io.stdout(report.lines.join("\n") + "\n");
      const notes = [...report.notes, ...await startupWarnings(config, netboot)];
      for (const note of notes) io.stdout(`note: ${note}\n`);
      if (report.problems.length === 0) {
        io.stdout(`check: ok${staticLeases.size > 0 ? ` (${staticLeases.size} static leases)` : ""}\n`);
        return 0;
      }
      io.stdout(
        `check: ${report.problems.length} problem(s):\n${
          report.problems.map((p) => `  - ${p}`).join("\n")
        }\n`,
      );
      return 1;
    }
    const events = new BootEvents();
    const unsubscribe = logBootEvents(events);
    const status = new StatusBoard(events);
    const caps = connectionCaps(openFileLimit(), {
      http: config.HTTP_MAX_CONNECTIONS,
      nbd: config.NBD_MAX_CONNECTIONS,
    });
    const files = new BootFiles({
      netboot,
      httpPort: config.USE_HTTP ? config.HTTP_PORT : null,
      advertiseHost: advertisedHost(config),
    });
    const ctx: ServiceContext = { config, netboot, files, events, staticLeases, status, caps };
    const services = SERVICE_FACTORIES.map((make) => make(ctx)).filter((s): s is Service => s !== null);
    const group = new ServiceGroup(services);
    try {
      await group.start();
    } catch (err) {
      if (err instanceof StartupError) {
        log.error(err.message);
        return 1;
      }
      throw err;
    }
    if (ids !== undefined) {
      try {
        const stateFiles = [config.LEASES_FILE].filter((f) => f !== "");
        for (const note of dropPrivileges(ids, { stateFiles })) log.warn(note);
        log.info(`dropped root: now uid ${ids.uid} gid ${ids.gid}`);
      } catch (err) {
        log.error(`--user ${config.USER}: ${err instanceof Error ? err.message : err}`);
        await group.stop();
        return 1;
      }
    }
    // listen for signals before saying "ready", so a signal right after it is handled
    const stopped = runUntilSignal(group, { signal: io.signal });
    const unguard = guardProcess();
    for (const warning of await startupWarnings(config, netboot)) log.warn(warning);
    for (const line of await banner(built, netboot, services, caps)) log.info(line);
    if (showStatus) view = new TtyStatusView(status, writeErr);
    io.onReady?.(group);
    await stopped;
    unguard();
    view?.close();
    view = null;
    unsubscribe();
    status.close();
    return 0;
  } finally {
    await teardownLogging();
  }
}

/**
 * `--auto`: probes the segment and fills in the DHCP mode and services the user did not set. Returns
 * the flags to build the config from, with the decision as notes, or an exit code when the probe
 * cannot run.
 */
async function applyAuto(
  file: Partial<PxeConfig>,
  flags: Partial<PxeConfig>,
  io: AppIo,
): Promise<{ flags: Partial<PxeConfig>; notes: string[] } | number> {
  const given = { ...file, ...flags };
  if (!given.AUTO) return { flags, notes: [] };
  const iface = chooseInterface(given.INTERFACE ?? "");
  const timeoutMs = given.AUTO_PROBE_MS ?? DEFAULTS.AUTO_PROBE_MS;
  let answers: ProbeAnswer[];
  try {
    answers = await probeDhcpServers({ iface, timeoutMs });
  } catch (err) {
    io.stderr(`pypxe: error: --auto: ${err instanceof Error ? err.message : err}\n`);
    return 1;
  }
  const decision = decideAuto(iface, answers, timeoutMs);
  const notes = [`auto: ${decision.reason}`];
  const merged: Partial<PxeConfig> = { ...flags };
  for (const [key, value] of Object.entries(decision.flags) as [keyof PxeConfig, never][]) {
    if (!(key in given)) merged[key] = value;
  }
  if (answers.length > 0 && given.USE_DHCP && !given.DHCP_MODE_PROXY) {
    notes.push(
      "auto: --dhcp given explicitly although another DHCP server answered: two servers now compete",
    );
  }
  return { flags: merged, notes };
}

/** The server address generated menus name when a client's subnet has no local interface. */
function advertisedHost(config: PxeConfig): string {
  const bound = config.HTTP_SERVER_IP;
  return bound !== "0.0.0.0" ? bound : config.DHCP_FILESERVER || config.DHCP_SERVER_IP;
}

function isTerminal(stream: { isTerminal(): boolean }): boolean {
  try {
    return stream.isTerminal();
  } catch {
    return false;
  }
}

function writeErr(text: string): void {
  try {
    Deno.stderr.writeSync(encoder.encode(text));
  } catch {
    // stderr closed
  }
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch {
    return false;
  }
}

/** Client types shown in the banner, as the DHCP policy sees them. */
const BANNER_CLIENTS: readonly [string, ClientInfo][] = [
  ["BIOS", { arch: 0, vendorClass: "PXEClient:Arch:00000:UNDI:002001", ipxe: false }],
  ["UEFI x64", { arch: 7, vendorClass: "PXEClient:Arch:00007:UNDI:003000", ipxe: false }],
  ["UEFI HTTP", { arch: 16, vendorClass: "HTTPClient:Arch:00016:UNDI:003000", ipxe: false }],
  ["iPXE BIOS", { arch: 0, vendorClass: "PXEClient:Arch:00000:UNDI:002001", ipxe: true }],
  ["iPXE UEFI", { arch: 7, vendorClass: "PXEClient:Arch:00007:UNDI:003010", ipxe: true }],
  ["ARM64 UEFI", { arch: 11, vendorClass: "PXEClient:Arch:00011:UNDI:003000", ipxe: false }],
];

/** Banner rows left out when their file is missing and the user did not configure one. */
const OPTIONAL_BANNER_ROWS: Record<string, (c: PxeConfig) => boolean> = {
  "ARM64 UEFI": (c) => c.NETBOOT_FILE_ARM64 !== "",
};

/** "BIOS: pxelinux.0, UEFI x64: ipxe.efi (missing), ..." from the policy and the tree. */
async function bootFilesLine(config: PxeConfig, netboot: NetbootFs): Promise<string> {
  const policy = policyOptionsFrom(config);
  const parts: string[] = [];
  for (const [label, client] of BANNER_CLIENTS) {
    const file = bootFileFor(client, policy).file;
    if (file === undefined) continue;
    let missing = "";
    if (!/^[a-z]+:\/\//.test(file)) {
      missing = await netboot.resolve(file).then(() => "", () => " (missing: run deno task netboot)");
      if (missing !== "" && OPTIONAL_BANNER_ROWS[label]?.(config) === false) continue;
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
  if (config.USE_DHCP) {
    const mode = config.DHCP_MODE_PROXY
      ? "proxyDHCP"
      : `range ${config.DHCP_OFFER_BEGIN}-${config.DHCP_OFFER_END}`;
    const via = iface
      ? ` on ${iface.name} (${iface.reason === "--interface" ? "--interface" : "the only IPv4 interface"})`
      : "";
    lines.push(
      `  dhcp: server ${config.DHCP_SERVER_IP}/${config.DHCP_SUBNET}${via}, ${mode}, boot file ${config.NETBOOT_FILE}`,
    );
  }
  if (caps !== undefined && services.some((s) => s.name !== "dhcp")) {
    lines.push(`  limits: ${describeCaps(caps)}`);
  }
  lines.push("ready");
  return lines;
}
