/**
 * The program: command line -> config -> services -> run until a signal. `main.ts` only calls
 * {@linkcode runPypxe} and exits with its code; everything here is testable in-process.
 * @module
 */
import { errText } from "./errors.ts";
import { getLogger } from "@logtape/logtape";
import { chooseInterface, decideAuto, decideAuto6, type ProbeAnswer, probeDhcpServers } from "./auto.ts";
import { probeIpv6 } from "./dhcp6/probe6.ts";
import { ipv6Interfaces, isRoutable6 } from "./net6.ts";
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
import { type ConnectionCaps, processCaps } from "./limits.ts";
import { MAIN_CATEGORY, setupLogging, teardownLogging } from "./log.ts";
import { NetbootError, NetbootFs } from "./netboot/fs.ts";
import { BootFiles } from "./netboot/files.ts";
import { LazyRemoteCache } from "./netboot/remote_open.ts";
import { runCacheCommand } from "./netboot/remote_cli.ts";
import { NETBOOT_FILE_KEYS } from "./settings.ts";
import { MACHINE_COMMANDS, runMachineCommand } from "./machines/cli.ts";
import { MachinesError } from "./machines/keys.ts";
import { MachineBoot, machinesStateFile } from "./machines/runtime.ts";
import { createMachinesService } from "./machines/service.ts";
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
import { createDhcpService } from "./dhcp/server.ts";
import { createDhcp6Service } from "./dhcp6/server.ts";
import { createRaService } from "./dhcp6/ra_service.ts";
import { createHttpService } from "./http/server.ts";
import { createNbdService } from "./nbd/server.ts";
import { createTftpService } from "./tftp/server.ts";
import { dropPrivileges, type Ids, lookupIds } from "./privilege.ts";
import { StatusBoard } from "./status.ts";
import { TtyStatusView } from "./status_tty.ts";
import { VERSION } from "./version.ts";
import { banner, startupWarnings } from "./banner.ts";

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
  createDhcp6Service,
  createRaService,
  createNbdService,
  createMachinesService,
];

/** What the command line asks for, once parsed and validated. */
interface Request {
  readonly built: BuiltConfig;
  readonly staticLeases: StaticLeases;
  readonly checkOnly: boolean;
  readonly autoNotes: string[];
  readonly ids?: Ids;
  /** What reading the config file warned about (unknown keys): problems for `--check`. */
  readonly configWarnings: readonly string[];
}

/** Runs pypxe with `args`; resolves with the process exit code (0 ok, 1 runtime failure, 2 bad config). */
export async function runPypxe(args: readonly string[], io: AppIo = defaultIo): Promise<number> {
  if (MACHINE_COMMANDS.includes(args[0])) return await runMachineCommand(args, io);
  if (args[0] === "cache") return await runCacheCommand(args.slice(1), io);
  const request = await readRequest(args, io);
  if (typeof request === "number") return request;
  const { config } = request.built;
  // with the live table on, every log line goes through it (erase table, print line, redraw)
  let view: TtyStatusView | null = null;
  const showStatus = request.built.explicit.has("STATUS")
    ? config.STATUS
    : config.MODE_DEBUG === "" && !request.checkOnly && isTerminal(Deno.stderr);
  await setupLogging({
    write: showStatus ? (line) => view ? view.writeLog(line) : writeErr(line + "\n") : undefined,
    debug: config.MODE_DEBUG,
    verbose: config.MODE_VERBOSE,
    syslog: config.SYSLOG_SERVER ? { host: config.SYSLOG_SERVER, port: config.SYSLOG_PORT } : null,
  });
  const log = getLogger(MAIN_CATEGORY);
  try {
    for (const note of request.autoNotes) log.info(note);
    for (const warning of request.built.warnings) log.warn(warning);
    const netboot = await openNetboot(config, io);
    if (typeof netboot === "number") return netboot;
    if (request.checkOnly) {
      return await checkOnly(config, netboot, request.staticLeases, request.configWarnings, io);
    }

    const events = new BootEvents();
    const unsubscribe = logBootEvents(events);
    const status = new StatusBoard(events);
    const started = await startServices(request, netboot, events, status);
    if (typeof started === "number") return started;
    const { group, services, caps, remote } = started;
    // listen for signals before saying "ready", so a signal right after it is handled
    const stopped = runUntilSignal(group, { signal: io.signal });
    const unguard = guardProcess();
    for (const warning of await startupWarnings(config, netboot)) log.warn(warning);
    const bannerLines = await banner(request.built, netboot, services, caps);
    for (const line of bannerLines) log.info(line);
    status.describe({
      version: VERSION,
      started: Date.now(),
      services: services.map((s) => ({ name: s.name, endpoints: s.endpoints() })),
      notes: bannerLines.filter((l) => /^ {2}(netboot|boot files|dhcp):/.test(l)).map((l) => l.trim()),
    });
    if (showStatus) view = new TtyStatusView(status, writeErr);
    io.onReady?.(group);
    await stopped;
    await remote.close();
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

/** Parses the command line and everything it names; answers --help/--version/--dump-* itself. */
async function readRequest(args: readonly string[], io: AppIo): Promise<Request | number> {
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
      // validated like a real start (a bad value is the same one-line error, exit 2), printed as merged
      buildConfig({ file: file.values, flags: request.flags });
      io.stdout(configToJson({ ...DEFAULTS, ...file.values, ...request.flags }) + "\n");
      return 0;
    }
    const auto = await applyAuto(file.values, request.flags, io);
    if (typeof auto === "number") return auto;
    const built = buildConfig({ file: file.values, flags: auto.flags });
    const { config } = built;
    const staticLeases = config.STATIC_CONFIG !== ""
      ? await loadStaticLeases(config.STATIC_CONFIG)
      : new Map();
    if (config.USER === "" && config.GROUP !== "") throw new ConfigError("--group needs --user");
    const ids = config.USER !== "" ? lookupIds(config.USER, config.GROUP || undefined) : undefined;
    return {
      built,
      staticLeases,
      checkOnly: request.check,
      autoNotes: auto.notes,
      ids,
      configWarnings: file.warnings,
    };
  } catch (err) {
    if (err instanceof ConfigError) {
      io.stderr(`pypxe: error: ${err.message}\n`);
      return 2;
    }
    throw err;
  }
}

/** The netboot tree: `--netboot-dir` over the embedded one (a missing default dir is no error). */
async function openNetboot(config: PxeConfig, io: AppIo): Promise<NetbootFs | number> {
  try {
    const overlay = config.NETBOOT_DIR === DEFAULTS.NETBOOT_DIR && !(await exists(config.NETBOOT_DIR))
      ? undefined
      : config.NETBOOT_DIR;
    return await NetbootFs.open({ overlay });
  } catch (err) {
    if (!(err instanceof NetbootError)) throw err;
    io.stderr(`pypxe: error: --netboot-dir ${err.message}\n`);
    return 2;
  }
}

/** `--check`: the report on stdout; 0 when all is well, 1 with the problems. */
async function checkOnly(
  config: PxeConfig,
  netboot: NetbootFs,
  staticLeases: StaticLeases,
  configWarnings: readonly string[],
  io: AppIo,
): Promise<number> {
  const report = await runCheck({ config, netboot, configWarnings, staticLeases });
  io.stdout(report.lines.join("\n") + "\n");
  const notes = [...report.notes, ...await startupWarnings(config, netboot)];
  for (const note of notes) io.stdout(`note: ${note}\n`);
  if (report.problems.length === 0) {
    io.stdout(`check: ok${staticLeases.size > 0 ? ` (${staticLeases.size} static leases)` : ""}\n`);
    return 0;
  }
  io.stdout(
    `check: ${report.problems.length} problem(s):\n${report.problems.map((p) => `  - ${p}`).join("\n")}\n`,
  );
  return 1;
}

/** Builds and starts the enabled services, then drops root if asked; an exit code when that fails. */
async function startServices(
  request: Request,
  netboot: NetbootFs,
  events: BootEvents,
  status: StatusBoard,
): Promise<
  { group: ServiceGroup; services: Service[]; caps: ConnectionCaps; remote: LazyRemoteCache } | number
> {
  const { config } = request.built;
  const log = getLogger(MAIN_CATEGORY);
  const caps = processCaps({
    http: config.HTTP_MAX_CONNECTIONS,
    nbd: config.NBD_MAX_CONNECTIONS,
  });
  const machines = await openMachines(config);
  if (typeof machines === "number") return machines;
  if (machines !== undefined) {
    events.subscribe((e) => machines.onEvent(e));
    status.setInventory(() => machines.list());
  }
  const remote = new LazyRemoteCache(config);
  status.setDownloads(() => remote.downloads());
  const files = new BootFiles({
    netboot,
    httpPort: config.USE_HTTP ? config.HTTP_PORT : null,
    advertiseHost: advertisedHost(config),
    advertiseHost6: config.USE_IPV6 ? config.DHCP6_SERVER_IP : "",
    machines,
    remoteCache: () => remote.get(),
  });
  // remote files named by menu.json, profiles and --netboot-file*: known before the first request
  const localConfig = await primeRemotes(files, config, machines);
  const menuProblem = await files.menuProblem();
  if (menuProblem !== undefined) log.warn(`${menuProblem} (the generated menus show it; fix menu.json)`);
  const ctx: ServiceContext = {
    config: localConfig,
    netboot,
    files,
    events,
    staticLeases: request.staticLeases,
    status,
    caps,
    machines,
  };
  const services = SERVICE_FACTORIES.map((make) => make(ctx)).filter((s): s is Service => s !== null);
  const group = new ServiceGroup(services);
  try {
    await group.start();
  } catch (err) {
    if (!(err instanceof StartupError)) throw err;
    log.error(err.message);
    return 1;
  }
  if (request.ids !== undefined) {
    try {
      const stateFiles = [config.LEASES_FILE, machinesStateFile(config.MACHINES_DIR)].filter((f) => f !== "");
      for (const note of dropPrivileges(request.ids, { stateFiles })) log.warn(note);
      log.info(`dropped root: now uid ${request.ids.uid} gid ${request.ids.gid}`);
    } catch (err) {
      log.error(`--user ${config.USER}: ${errText(err)}`);
      await group.stop();
      return 1;
    }
  }
  return { group, services, caps, remote };
}

/**
 * Registers every remote file the menus and profiles name with `files`, and returns the config with
 * `http(s)://` boot files (`--netboot-file*`) replaced by the names pypxe serves them under.
 */
async function primeRemotes(files: BootFiles, config: PxeConfig, machines?: MachineBoot): Promise<PxeConfig> {
  await files.prime(machines ? [...machines.set.profiles.values()] : []);
  const local = { ...config };
  for (const key of NETBOOT_FILE_KEYS) local[key] = files.localName(config[key]);
  return local;
}

/** Per-machine boot when `--machines`, `--boot-api` or `--api-listen` asks for it; exit 2 on a broken set. */
async function openMachines(config: PxeConfig): Promise<MachineBoot | undefined | number> {
  if (config.MACHINES_DIR === "" && config.BOOT_API === "" && config.API_LISTEN === "") return undefined;
  try {
    return await MachineBoot.open({
      dir: config.MACHINES_DIR,
      bootApi: config.BOOT_API,
      bootApiTimeoutMs: config.BOOT_API_TIMEOUT,
    });
  } catch (err) {
    if (!(err instanceof MachinesError)) throw err;
    Deno.stderr.writeSync(new TextEncoder().encode(`pypxe: error: --machines ${err.message}\n`));
    return 2;
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
    io.stderr(`pypxe: error: --auto: ${errText(err)}\n`);
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
  if (given.USE_IPV6) {
    // IPv6 where it is safe: the same mode as IPv4, or off with the reason (see decideAuto6)
    const routable = ipv6Interfaces().some((a) => a.name === iface.name && isRoutable6(a.address));
    const six = routable
      ? await probeIpv6(iface.name, timeoutMs)
      : { router: false, dhcp6Server: null, problems: [] };
    const decided = decideAuto6(iface.name, decision, { routable, ...six });
    notes.push(...decided.notes);
    merged.USE_IPV6 = decided.flags.USE_IPV6;
    if (decided.flags.USE_RA && !("USE_RA" in given)) merged.USE_RA = true;
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
