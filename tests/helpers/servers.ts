/**
 * Starting servers in tests and benchmarks, every way they need:
 *
 * - in this process, over a temp tree or on loopback: {@linkcode serveTftpTree}, {@linkcode serveHttpTree},
 *   {@linkcode startDhcp} (with a {@linkcode UdpClient} to talk to it);
 * - one service alone as a subprocess (tests/helpers/serve.ts), optionally in a network namespace:
 *   {@linkcode spawnService};
 * - pypxe itself as `deno task start` runs it: {@linkcode startPypxe}, {@linkcode runPypxeOnce};
 * - any other daemon (dnsmasq, tftpd-hpa, nginx, Kea...): {@linkcode startDaemon}, which the others build on.
 * @module
 */
import { DEFAULTS, type PxeConfig } from "../../src/config.ts";
import type { DhcpEvent } from "../../src/events.ts";
import { type BootEvent, BootEvents } from "../../src/events.ts";
import type { DhcpPacket } from "../../src/dhcp/packet.ts";
import { encodeDhcp } from "../../src/dhcp/packet.ts";
import { DhcpServer, type DhcpServerOptions } from "../../src/dhcp/server.ts";
import { HttpServer, type HttpServerOptions } from "../../src/http/server.ts";
import { NetbootFs } from "../../src/netboot/fs.ts";
import { TftpServer, type TftpServerOptions } from "../../src/tftp/server.ts";
import type { Segment } from "./netns.ts";
import { inNetns, run, type RunResult } from "./run.ts";
import { randomPort, UdpClient } from "./udp_client.ts";

const ROOT = new URL("../..", import.meta.url).pathname;

// ---------- in this process ----------

/** Writes `files` (relative path -> bytes or text) below `root`, creating directories as needed. */
export async function writeTree(root: string, files: Record<string, Uint8Array | string>): Promise<void> {
  for (const [name, content] of Object.entries(files)) {
    const path = `${root}/${name}`;
    await Deno.mkdir(path.slice(0, path.lastIndexOf("/")), { recursive: true });
    if (typeof content === "string") await Deno.writeTextFile(path, content);
    else await Deno.writeFile(path, content);
  }
}

/** A TftpServer over a temp tree, with its collected events. */
export interface ServedTree {
  server: TftpServer;
  port: number;
  /** The temp dir; the served tree is its `root/`. */
  dir: string;
  events: BootEvent[];
  /** Stops the server and removes the tree. */
  close(): Promise<void>;
}

/** Creates a temp tree with `files`, serves it over TFTP on 127.0.0.1 (port 0 unless `opts.port`). */
export async function serveTftpTree(
  files: Record<string, Uint8Array | string>,
  opts: Partial<TftpServerOptions> = {},
): Promise<ServedTree> {
  const dir = await Deno.makeTempDir({ prefix: "pypxe-tftp-" });
  const root = `${dir}/root`;
  await Deno.mkdir(root);
  await writeTree(root, files);
  const netboot = await NetbootFs.open({ overlay: root, embedded: `${dir}/no-embedded` });
  const events = new BootEvents();
  const seen: BootEvent[] = [];
  events.subscribe((e) => seen.push(e));
  const server = new TftpServer({ host: "127.0.0.1", port: 0, netboot, events, ...opts });
  await server.start();
  return {
    server,
    port: server.port,
    dir,
    events: seen,
    async close() {
      await server.stop();
      await Deno.remove(dir, { recursive: true });
    },
  };
}

/** An HttpServer on 127.0.0.1 over temp overlay and embedded trees, with its collected events. */
export interface ServedHttp {
  server: HttpServer;
  port: number;
  /** `http://127.0.0.1:<port>`. */
  base: string;
  overlay: string;
  embedded: string;
  events: BootEvent[];
  /** Stops the server and removes the temp dirs. */
  close(): Promise<void>;
}

/** Creates overlay/embedded temp trees with `files` and `embeddedFiles` and serves them over HTTP. */
export async function serveHttpTree(
  files: Record<string, Uint8Array | string>,
  embeddedFiles: Record<string, Uint8Array | string> = {},
  opts: Partial<HttpServerOptions> = {},
): Promise<ServedHttp> {
  const overlay = await Deno.makeTempDir({ prefix: "pypxe-http-overlay-" });
  const embedded = await Deno.makeTempDir({ prefix: "pypxe-http-embedded-" });
  await writeTree(overlay, files);
  await writeTree(embedded, embeddedFiles);
  const netboot = await NetbootFs.open({ overlay, embedded });
  const bootEvents = new BootEvents();
  const events: BootEvent[] = [];
  bootEvents.subscribe((e) => events.push(e));
  const server = new HttpServer({ host: "127.0.0.1", port: 0, netboot, events: bootEvents, ...opts });
  await server.start();
  const port = server.port;
  return {
    server,
    port,
    base: `http://127.0.0.1:${port}`,
    overlay,
    embedded,
    events,
    async close() {
      await server.stop();
      await Deno.remove(overlay, { recursive: true });
      await Deno.remove(embedded, { recursive: true });
    },
  };
}

/** A full-DHCP config for 127.0.0.1: pool 127.0.0.100-150, /24, no DNS, lease 3600 s, pxelinux.0. */
export function loopbackDhcpConfig(over: Partial<PxeConfig> = {}): PxeConfig {
  return {
    ...DEFAULTS,
    USE_DHCP: true,
    DHCP_SERVER_IP: "127.0.0.1",
    DHCP_FILESERVER: "127.0.0.1",
    DHCP_ROUTER: "127.0.0.1",
    DHCP_OFFER_BEGIN: "127.0.0.100",
    DHCP_OFFER_END: "127.0.0.150",
    DHCP_SUBNET: "255.255.255.0",
    DHCP_BROADCAST: "127.0.0.255",
    DHCP_DNS: "",
    DHCP_LEASE_TIME: 3600,
    NETBOOT_FILE: "pxelinux.0",
    ...over,
  };
}

/** A DhcpServer on 127.0.0.1 and a client socket for it. */
export interface LoopbackDhcp {
  server: DhcpServer;
  client: UdpClient;
  /** The DHCP events so far. */
  events: DhcpEvent[];
  /** The server's port (its "67"). */
  port: number;
  /** The proxyDHCP port (its "4011"). */
  proxyPort: number;
  /** Sends `pkt` to `to` (default the server's port) and waits `ms` for the reply with its xid. */
  ask(pkt: DhcpPacket, ms?: number, to?: number): Promise<(DhcpPacket & { from: Deno.NetAddr }) | undefined>;
  /** Stops the server and closes the client. */
  close(): Promise<void>;
}

/** Options of {@linkcode startDhcp}. */
export interface StartDhcpOptions {
  /** The client socket's address (default 127.0.0.1; 0.0.0.0 to receive unicast to pool addresses). */
  clientHost?: string;
  /** More server options, given the ports picked for this attempt (e.g. a fault-injecting listen). */
  server?: (ports: { port: number; proxyPort: number }) => Partial<DhcpServerOptions>;
}

/**
 * Starts a DhcpServer with {@linkcode loopbackDhcpConfig}`(over)` on random high ports of 127.0.0.1 (the
 * replies go to the client's port on 127.0.0.1), trying other ports when one is taken.
 */
export async function startDhcp(
  over: Partial<PxeConfig> = {},
  opts: StartDhcpOptions = {},
): Promise<LoopbackDhcp> {
  const client = new UdpClient({ hostname: opts.clientHost ?? "127.0.0.1" });
  const events: DhcpEvent[] = [];
  const bus = new BootEvents();
  bus.subscribe((e) => e.kind === "dhcp" && events.push(e));
  for (let attempt = 0;; attempt++) {
    const port = randomPort();
    const proxyPort = randomPort();
    const server = new DhcpServer({
      config: loopbackDhcpConfig({ DHCP_SERVER_PORT: port, ...over }),
      events: bus,
      clientPort: client.port,
      proxyPort,
      broadcastAddress: "127.0.0.1",
      ...opts.server?.({ port, proxyPort }),
    });
    try {
      await server.start();
    } catch (err) {
      if (attempt < 4) continue;
      await client.close();
      throw err;
    }
    return {
      server,
      client,
      events,
      port,
      proxyPort,
      async ask(pkt, ms = 1000, to = port) {
        await client.send(encodeDhcp(pkt), to);
        return await client.reply(pkt.xid, ms);
      },
      async close() {
        await server.stop();
        await client.close();
      },
    };
  }
}

export { randomPort, UdpClient };

// ---------- subprocesses ----------

/** Options of {@linkcode startDaemon}. */
export interface DaemonOptions {
  /** A command prefix the daemon runs inside (`sh -c 'ulimit -n N && exec "$0" "$@"'`...). */
  prefix?: readonly string[];
  /** Runs it inside this network namespace (outside `prefix`). */
  netns?: string;
  env?: Record<string, string>;
  cwd?: string;
  /** Which output becomes `lines` (default both; the other is discarded). */
  capture?: "stdout" | "stderr" | "both";
  /** Lines for which this is false are dropped (e.g. Deno's own notices). */
  keep?: (line: string) => boolean;
  /** Started once a line matches this. */
  ready?: RegExp | string;
  /** Started once 127.0.0.1:`port` accepts a TCP connection (in this process's namespace). */
  port?: number;
  /** Started after this long (for a daemon that says nothing), after `ready`/`port` if given. */
  settleMs?: number;
  /** How long `ready` or `port` may take (default 20 s); then it is killed and this throws. */
  readyTimeoutMs?: number;
  /** Keeps a pipe to its stdin open until `stop()` (a daemon that ends at EOF of stdin); default none. */
  stdin?: boolean;
  /** Its name in errors (default the command). */
  name?: string;
}

/** A running daemon. */
export interface Daemon {
  readonly child: Deno.ChildProcess;
  readonly pid: number;
  /** Every line it printed so far (of the captured output). */
  readonly lines: string[];
  /** Resolves when it exits. */
  readonly status: Promise<Deno.CommandStatus>;
  /** True once it exited. */
  exited(): boolean;
  /**
   * Resolves with the first line matching `pattern` (a string: a line containing it); rejects after
   * `timeoutMs` (default 20 s), or when it exits without printing one.
   */
  waitFor(pattern: RegExp | string, timeoutMs?: number): Promise<string>;
  /** Sends `signal` (default SIGTERM), SIGKILL after `killAfterMs` (default 10 s); resolves with its status. */
  stop(signal?: Deno.Signal, killAfterMs?: number): Promise<Deno.CommandStatus>;
}

/** Starts `cmd` as a daemon and resolves once it is started (see {@linkcode DaemonOptions}). */
export async function startDaemon(cmd: readonly string[], opts: DaemonOptions = {}): Promise<Daemon> {
  const name = opts.name ?? cmd[0];
  let argv = [...(opts.prefix ?? []), ...cmd];
  if (opts.netns !== undefined) argv = inNetns(opts.netns, argv);
  const capture = opts.capture ?? "both";
  const child = new Deno.Command(argv[0], {
    args: argv.slice(1),
    cwd: opts.cwd,
    env: opts.env,
    stdin: opts.stdin ? "piped" : "null",
    stdout: capture === "stderr" ? "null" : "piped",
    stderr: capture === "stdout" ? "null" : "piped",
  }).spawn();
  const lines: string[] = [];
  const waiters = new Set<{ test: (line: string) => boolean; resolve: (line: string) => void }>();
  const keep = opts.keep ?? (() => true);
  const add = (line: string) => {
    if (!keep(line)) return;
    lines.push(line);
    for (const w of waiters) {
      if (w.test(line)) {
        waiters.delete(w);
        w.resolve(line);
      }
    }
  };
  const pump = async (stream: ReadableStream<Uint8Array> | null) => {
    if (stream === null) return;
    const decoder = new TextDecoder();
    let buf = "";
    for await (const chunk of stream) {
      buf += decoder.decode(chunk, { stream: true });
      let nl: number;
      while ((nl = buf.indexOf("\n")) >= 0) {
        add(buf.slice(0, nl));
        buf = buf.slice(nl + 1);
      }
    }
    if (buf !== "") add(buf);
  };
  const pumps = Promise.all([
    pump(capture === "stderr" ? null : child.stdout),
    pump(capture === "stdout" ? null : child.stderr),
  ]);
  let done = false;
  const status = child.status.then(async (s) => {
    await pumps;
    done = true;
    for (const w of waiters) w.resolve("");
    return s;
  });
  const stdin = opts.stdin ? child.stdin.getWriter() : null;
  const matcher = (pattern: RegExp | string) => (line: string) =>
    typeof pattern === "string" ? line.includes(pattern) : pattern.test(line);
  const waitFor = (pattern: RegExp | string, timeoutMs = 20_000) => {
    const test = matcher(pattern);
    const seen = lines.find(test);
    if (seen !== undefined) return Promise.resolve(seen);
    const printed = () => `; it printed:\n${lines.join("\n")}`;
    if (done) return Promise.reject(new Error(`${name} exited without printing ${pattern}${printed()}`));
    return new Promise<string>((resolve, reject) => {
      const waiter = {
        test,
        resolve: (line: string) => {
          clearTimeout(timer);
          if (test(line)) resolve(line);
          else reject(new Error(`${name} exited without printing ${pattern}${printed()}`));
        },
      };
      const timer = setTimeout(() => {
        waiters.delete(waiter);
        reject(new Error(`${name} did not print ${pattern} within ${timeoutMs} ms${printed()}`));
      }, timeoutMs);
      waiters.add(waiter);
    });
  };
  const stop = async (signal: Deno.Signal = "SIGTERM", killAfterMs = 10_000) => {
    if (!done) {
      try {
        child.kill(signal);
      } catch {
        // already gone
      }
    }
    const timer = setTimeout(() => {
      try {
        child.kill("SIGKILL");
      } catch {
        // already gone
      }
    }, killAfterMs);
    const s = await status;
    clearTimeout(timer);
    await stdin?.close().catch(() => {});
    return s;
  };
  const daemon: Daemon = { child, pid: child.pid, lines, status, exited: () => done, waitFor, stop };
  try {
    const timeoutMs = opts.readyTimeoutMs ?? 20_000;
    if (opts.ready !== undefined) await waitFor(opts.ready, timeoutMs);
    if (opts.port !== undefined) await waitForTcpPort(opts.port, timeoutMs, () => done);
    if (opts.settleMs !== undefined) await new Promise((r) => setTimeout(r, opts.settleMs));
    if (done) throw new Error(`${name} exited with ${(await status).code} before it was ready`);
  } catch (err) {
    await stop("SIGKILL");
    throw new Error(`${name} did not start: ${(err as Error).message}\n${lines.join("\n")}`);
  }
  return daemon;
}

/** Waits until 127.0.0.1:`port` accepts a TCP connection; throws after `timeoutMs`, stops when `gone()`. */
export async function waitForTcpPort(port: number, timeoutMs = 5000, gone = () => false): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!gone()) {
    try {
      (await Deno.connect({ hostname: "127.0.0.1", port })).close();
      return;
    } catch {
      if (Date.now() > deadline) {
        throw new Error(`nothing listens on 127.0.0.1:${port} after ${timeoutMs} ms`);
      }
      await new Promise((r) => setTimeout(r, 50));
    }
  }
}

/** A free TCP port on 127.0.0.1 (bound then released). */
export function freeTcpPort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = l.addr.port;
  l.close();
  return port;
}

/** A free UDP port on 127.0.0.1 (bound then released). */
export function freeUdpPort(): number {
  const sock = Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port: 0 });
  const port = (sock.addr as Deno.NetAddr).port;
  sock.close();
  return port;
}

/** What {@linkcode spawnService} runs (tests/helpers/serve.ts takes it as JSON). */
export type ServiceSpec =
  | {
    service: "dhcp";
    /** Over DEFAULTS with USE_DHCP. */
    config?: Partial<PxeConfig>;
    clientPort?: number;
    broadcastAddress?: string;
    listenAddress?: string;
  }
  | { service: "tftp"; host: string; port: number; dir: string; cacheOff?: boolean; ipv6?: boolean }
  | { service: "http"; host: string; port: number; dir: string; ipv6?: boolean; menus?: boolean };

/** Options of {@linkcode spawnService}. */
export interface SpawnServiceOptions {
  /** Runs it inside this network namespace. */
  netns?: string;
  /** Prints one `event {json}` line per boot event, for {@linkcode ServiceProcess.events}. */
  events?: boolean;
  /** Flags for `deno run` (e.g. `--v8-flags=...`). */
  denoFlags?: string[];
  /** The checkout whose tests/helpers/serve.ts runs (default this one). */
  root?: string;
}

/** A service running alone in a subprocess. */
export interface ServiceProcess extends Daemon {
  /** The port it listens on. */
  readonly port: number;
  /** Everything it printed so far (stdout and stderr, line by line). */
  output(): string;
  /** The boot events printed so far (with `events: true`). */
  events(): BootEvent[];
}

/**
 * Runs one service alone (no banner, no other service) in a subprocess, optionally inside a network
 * namespace; resolves once it listens. It stops on SIGTERM/SIGINT (what `stop()` sends) or at EOF of its
 * stdin (so it never outlives this process), and prints `stopped` after a clean stop.
 */
export async function spawnService(
  spec: ServiceSpec,
  opts: SpawnServiceOptions = {},
): Promise<ServiceProcess> {
  const script = `${opts.root ?? ROOT}tests/helpers/serve.ts`;
  const arg = JSON.stringify({ ...spec, printEvents: opts.events === true });
  const daemon = await startDaemon(
    [Deno.execPath(), "run", ...(opts.denoFlags ?? []), "--allow-all", "--no-prompt", script, arg],
    {
      netns: opts.netns,
      env: { NO_COLOR: "1" },
      ready: /^ready \d+$/,
      stdin: true,
      name: `${spec.service} service`,
    },
  );
  const port = Number(daemon.lines.find((l) => /^ready \d+$/.test(l))!.slice(6));
  return {
    ...daemon,
    port,
    output: () => daemon.lines.map((l) => `${l}\n`).join(""),
    events: () =>
      daemon.lines.filter((l) => l.startsWith("event ")).map((l) => JSON.parse(l.slice(6)) as BootEvent),
  };
}

/** The DHCP events of a {@linkcode ServiceProcess} running DHCP. */
export function dhcpEvents(service: ServiceProcess): DhcpEvent[] {
  return service.events().filter((e): e is DhcpEvent => e.kind === "dhcp");
}

// ---------- pypxe ----------

/** A running pypxe process. */
export interface PypxeProcess {
  readonly child: Deno.ChildProcess;
  /** Every stderr line so far. */
  readonly lines: string[];
  /** Sends `signal` and resolves with the exit code (kills after `timeoutMs`). */
  stop(signal?: Deno.Signal, timeoutMs?: number): Promise<number>;
  /** Resolves with the first line matching `pattern`, or rejects after `timeoutMs`. */
  waitFor(pattern: RegExp, timeoutMs?: number): Promise<string>;
}

/** Options of {@linkcode startPypxe} and {@linkcode runPypxeOnce}. */
export interface PypxeOptions {
  /** Runs pypxe inside something: `ip netns exec NS`, `capsh ... -- -c 'exec "$0" "$@"'`. */
  prefix?: string[];
}

/** The argv that runs pypxe from source as `deno task start` does (the permission set of deno.json). */
function pypxeArgv(args: readonly string[]): string[] {
  return [Deno.execPath(), "run", "-P", "--no-prompt", `${ROOT}main.ts`, ...args];
}

const PYPXE_ENV = { NO_COLOR: "1", RUST_BACKTRACE: "0" };

/** Drops Deno's own notices (the config-permissions warning) from stderr text. */
export function stripNoise(text: string): string {
  return text.split("\n").filter((l) => !/^Warning Permissions in the config file/.test(l)).join("\n");
}

/** Runs pypxe to completion (for --help, bad flags...) within `timeoutMs` (default 20 s). */
export async function runPypxeOnce(
  args: readonly string[],
  opts: PypxeOptions & { timeoutMs?: number } = {},
): Promise<RunResult> {
  const r = await run([...(opts.prefix ?? []), ...pypxeArgv(args)], {
    cwd: ROOT,
    env: PYPXE_ENV,
    timeoutMs: opts.timeoutMs ?? 20_000,
  });
  return { ...r, stderr: stripNoise(r.stderr) };
}

/** Starts pypxe and resolves once it printed its `ready` banner line (stderr). */
export async function startPypxe(
  args: readonly string[],
  opts: PypxeOptions & { readyTimeoutMs?: number } = {},
): Promise<PypxeProcess> {
  const daemon = await startDaemon(pypxeArgv(args), {
    prefix: opts.prefix,
    cwd: ROOT,
    env: PYPXE_ENV,
    capture: "stderr",
    keep: (line) => stripNoise(line) !== "",
    ready: / main {2}ready$/,
    readyTimeoutMs: opts.readyTimeoutMs ?? 20_000,
    name: "pypxe",
  });
  return {
    child: daemon.child,
    lines: daemon.lines,
    waitFor: (pattern, timeoutMs) => daemon.waitFor(pattern, timeoutMs),
    stop: async (signal = "SIGTERM", timeoutMs = 10_000) => (await daemon.stop(signal, timeoutMs)).code,
  };
}

// ---------- on a segment ----------

/**
 * dnsmasq as a DHCP server (no DNS) on `ifname` in namespace `netns`, leasing `<subnet>.100-150`, with
 * `extraArgs` (PXE or TFTP options; none: addresses only).
 */
export function startDnsmasqDhcp(
  netns: string,
  ifname: string,
  subnet: string,
  extraArgs: readonly string[] = [],
): Promise<Daemon> {
  return startDaemon([
    "dnsmasq",
    "-d",
    "--port=0",
    `--interface=${ifname}`,
    "--bind-interfaces",
    `--dhcp-range=${subnet}.100,${subnet}.150,1h`,
    "--no-ping",
    "-z",
    "--pid-file=",
    ...extraArgs,
  ], { netns });
}

/** Runs dnsmasq as a plain DHCP server (addresses only, no PXE options) on another host of the segment. */
export async function plainDhcpServer(seg: Segment): Promise<() => Promise<void>> {
  const host = await seg.addHost(`${seg.subnet}.2`);
  const dnsmasq = await startDnsmasqDhcp(host.ns, host.ifname, seg.subnet);
  return async () => void (await dnsmasq.stop());
}
