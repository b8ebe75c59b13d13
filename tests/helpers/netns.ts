/**
 * Network namespaces for tests and benchmarks: the one place that builds and removes them.
 *
 * - {@linkcode createPair}: a server and a client namespace joined by a veth pair (`vs` and `vc`), with
 *   optional random loss (nftables) or netem on both ends.
 * - {@linkcode Segment}: an Ethernet segment: the server namespace's `srv0` joined to a bridge in the client
 *   namespace, where QEMU taps and further host namespaces plug in.
 * - {@linkcode createDelayedLink}: client and server joined through a relay namespace that holds every
 *   frame a fixed time each way (scripts/bench/delay_relay.c, for kernels without sch_netem).
 *
 * Every namespace is named `px-<pid>-<n>-<tag>-<role>`, so concurrent runs never collide; every link is
 * created inside its namespaces (nothing is named in the host's namespace). `destroy()` kills what still
 * runs inside and deletes every namespace it made; the first builder of a process also deletes the
 * namespaces of earlier runs whose process is gone (a run killed before its cleanup). Needs root and `ip`:
 * {@linkcode netnsAvailable} says why not.
 * @module
 */
import { join } from "node:path";
import { inNetns, run } from "./run.ts";
import { firstReason, missingTools, needsRoot } from "./tools.ts";

const PREFIX = "px-";
let counter = 0;

/** A namespace name unique to this process and call: `px-<pid>-<n>-<tag>`. */
function uniqueName(tag: string): string {
  const n = `${(counter++).toString(36)}${Math.floor(Math.random() * 36 ** 2).toString(36)}`;
  return `${PREFIX}${Deno.pid}-${n}-${tag}`;
}

/** Runs a setup step; throws with the command and its stderr when it fails. */
async function step(cmd: string[], netns?: string): Promise<void> {
  await run(cmd, { netns, check: true, timeoutMs: 30_000 });
}

/**
 * Waits until `ip -d -o link show dev DEV` in `ns` matches `pattern` (at most 5 s): a new link's carrier
 * and a new bridge port's forwarding state arrive a moment after `ip link set ... up` returns (the kernel
 * batches link events up to a second), and a frame sent before then is lost.
 */
async function waitLink(ns: string, dev: string, pattern: RegExp): Promise<void> {
  const deadline = Date.now() + 5000;
  for (;;) {
    const r = await run(["ip", "-d", "-o", "link", "show", "dev", dev], { netns: ns, timeoutMs: 5000 });
    if (pattern.test(r.stdout)) return;
    if (Date.now() > deadline) throw new Error(`${dev} in ${ns} is not ready: ${r.stdout.trim()}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** A link whose carrier is up. */
const CARRIER = / state UP /;
/** A bridge port that forwards. */
const FORWARDING = /bridge_slave state forwarding /;

/** Kills whatever still runs inside each namespace, then deletes it; never throws. */
async function deleteNamespaces(names: readonly string[]): Promise<void> {
  for (const ns of names) {
    const pids = await run(["ip", "netns", "pids", ns], { timeoutMs: 10_000 }).catch(() => null);
    for (const pid of pids?.stdout.split("\n").map((p) => p.trim()).filter((p) => p !== "") ?? []) {
      try {
        Deno.kill(Number(pid), "SIGKILL");
      } catch {
        // already gone
      }
    }
    await run(["ip", "netns", "del", ns], { timeoutMs: 10_000 }).catch(() => {});
  }
}

let swept = false;

/** Once per process: deletes the namespaces of earlier runs whose process no longer exists. */
async function sweepStale(): Promise<void> {
  if (swept) return;
  swept = true;
  const list = await run(["ip", "netns", "list"], { timeoutMs: 10_000 }).catch(() => null);
  const stale: string[] = [];
  for (const line of list?.stdout.split("\n") ?? []) {
    const name = line.split(" ")[0];
    const m = /^px-(\d+)-/.exec(name);
    if (m === null || Number(m[1]) === Deno.pid) continue;
    try {
      Deno.statSync(`/proc/${m[1]}`);
    } catch {
      stale.push(name);
    }
  }
  await deleteNamespaces(stale);
}

/**
 * Null when namespaces can be used here with `tools` on PATH, else the reason (for `requires`,
 * tests/helpers/tools.ts): not root, a missing tool, `ip netns add` failing, or, when `tools` has `nft`,
 * nftables not working inside a namespace.
 */
export function netnsAvailable(tools: readonly string[] = []): string | null {
  const why = firstReason(needsRoot(), missingTools(...new Set(["ip", ...tools])));
  if (why !== null) return why;
  const probe = uniqueName("probe");
  const ip = (...args: string[]) =>
    new Deno.Command("ip", { args, stdout: "null", stderr: "piped" }).outputSync();
  const add = ip("netns", "add", probe);
  if (add.code !== 0) return `ip netns does not work here: ${new TextDecoder().decode(add.stderr).trim()}`;
  try {
    if (tools.includes("nft")) {
      const nft = ip("netns", "exec", probe, "nft", "add table inet pypxe_probe");
      if (nft.code !== 0) {
        return `nft does not work in a namespace: ${new TextDecoder().decode(nft.stderr).trim()}`;
      }
    }
    return null;
  } finally {
    ip("netns", "del", probe);
  }
}

/** True when the kernel has sch_netem (`tc qdisc ... netem` works in a namespace). */
export async function netemAvailable(): Promise<boolean> {
  const probe = uniqueName("netem");
  if ((await run(["ip", "netns", "add", probe], { timeoutMs: 5000 })).code !== 0) return false;
  try {
    const tc = await run(["tc", "qdisc", "add", "dev", "lo", "root", "netem", "delay", "1ms"], {
      netns: probe,
      timeoutMs: 5000,
    }).catch(() => null);
    return tc?.code === 0;
  } finally {
    await run(["ip", "netns", "del", probe], { timeoutMs: 5000 });
  }
}

/** Two namespaces joined by a link: a pair ({@linkcode createPair}) or a delayed link. */
export interface NetnsPair {
  /** The server's namespace. */
  readonly server: string;
  /** The client's namespace. */
  readonly client: string;
  /** The server's interface in its namespace. */
  readonly serverIf: string;
  /** The client's interface in its namespace. */
  readonly clientIf: string;
  readonly serverIp: string;
  /** The client's address, or null when it has none (DHCP clients get one). */
  readonly clientIp: string | null;
  /** The argv that runs `cmd` inside namespace `ns`. */
  exec(ns: string, cmd: readonly string[]): string[];
  /** Kills what runs inside and deletes the namespaces; never throws. */
  destroy(): Promise<void>;
}

/** Options of {@linkcode createPair}. */
export interface PairOptions {
  /** A word in the namespace names (default `pair`). */
  tag?: string;
  /** The server's address (default 10.213.0.1). */
  serverIp?: string;
  /** The client's address (default the server's with .2 last); null: none. */
  clientIp?: string | null;
  /** Prefix length of both addresses (default 24). */
  prefixLength?: number;
  /** Routes everything out of the client's veth (so 255.255.255.255 has a way out without an address). */
  clientDefaultRoute?: boolean;
  /** Percent of the packets each end drops on arrival, at random (nftables `numgen random`). */
  lossPercent?: number;
  /** A netem argument list (e.g. `["delay", "0.5ms"]`) applied on both ends; needs sch_netem. */
  netem?: string[];
}

/**
 * Creates a server and a client namespace joined by a veth pair: `vs` with `serverIp` in the server's,
 * `vc` (with `clientIp` unless null) in the client's, both up with their loopback. Throws when a step
 * fails, after removing what it made.
 */
export async function createPair(opts: PairOptions = {}): Promise<NetnsPair> {
  await sweepStale();
  const tag = opts.tag ?? "pair";
  const server = uniqueName(`${tag}-s`);
  const client = uniqueName(`${tag}-c`);
  const serverIp = opts.serverIp ?? "10.213.0.1";
  const clientIp = opts.clientIp === undefined ? serverIp.replace(/\.\d+$/, ".2") : opts.clientIp;
  const bits = opts.prefixLength ?? 24;
  const pair: NetnsPair = {
    server,
    client,
    serverIf: "vs",
    clientIf: "vc",
    serverIp,
    clientIp,
    exec: inNetns,
    destroy: () => deleteNamespaces([server, client]),
  };
  try {
    await step(["ip", "netns", "add", server]);
    await step(["ip", "netns", "add", client]);
    await step([
      "ip",
      "link",
      "add",
      "vs",
      "netns",
      server,
      "type",
      "veth",
      "peer",
      "name",
      "vc",
      "netns",
      client,
    ]);
    const ends: [string, string, string | null][] = [[server, "vs", serverIp], [client, "vc", clientIp]];
    for (const [ns, dev, ip] of ends) {
      if (ip !== null) await step(["ip", "addr", "add", `${ip}/${bits}`, "dev", dev], ns);
      await step(["ip", "link", "set", dev, "up"], ns);
      await step(["ip", "link", "set", "lo", "up"], ns);
      if (opts.netem?.length) {
        await step(["tc", "qdisc", "add", "dev", dev, "root", "netem", ...opts.netem], ns);
      }
      if (opts.lossPercent) {
        // dropped on arrival, so the sender's send() still succeeds, as on a real lossy wire
        await step(["nft", "add table inet pypxe_loss"], ns);
        await step(["nft", "add chain inet pypxe_loss input { type filter hook input priority 0; }"], ns);
        await step([
          "nft",
          `add rule inet pypxe_loss input iifname "${dev}" numgen random mod 100 < ${opts.lossPercent} drop`,
        ], ns);
      }
    }
    if (opts.clientDefaultRoute) await step(["ip", "route", "add", "default", "dev", "vc"], client);
    await waitLink(server, "vs", CARRIER);
    await waitLink(client, "vc", CARRIER);
  } catch (err) {
    await pair.destroy();
    throw err;
  }
  return pair;
}

const NO_IPV6 = ["sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1"];

let segmentCounter = 0;

/**
 * An isolated Ethernet segment: the server namespace holds `srv0` (`<subnet>.1/24`); the client namespace
 * holds a bridge `br0` joining the other end (`up0`), one tap per QEMU client ({@linkcode Segment.addTap})
 * and one veth per further host namespace ({@linkcode Segment.addHost}). Nothing is routed; IPv6 is off
 * so iPXE does not wait for router adverts.
 */
export class Segment {
  readonly serverNs: string;
  readonly clientNs: string;
  /** `10.<200 + index>.0`: the first three octets of every address on the segment. */
  readonly subnet: string;
  readonly serverIp: string;
  readonly serverIf = "srv0";
  #taps = 0;
  #hosts: string[] = [];

  private constructor(readonly tag: string, index: number) {
    this.serverNs = uniqueName(`${tag}-s`);
    this.clientNs = uniqueName(`${tag}-c`);
    this.subnet = `10.${200 + index}.0`;
    this.serverIp = `${this.subnet}.1`;
  }

  /** Creates the namespaces, the veth and the bridge; `tag` is a word in the namespace names. */
  static async create(tag: string): Promise<Segment> {
    await sweepStale();
    const seg = new Segment(tag, segmentCounter++ % 50);
    const [s, c] = [seg.serverNs, seg.clientNs];
    try {
      for (const ns of [s, c]) {
        await step(["ip", "netns", "add", ns]);
        await step(NO_IPV6, ns);
        await step(["ip", "link", "set", "lo", "up"], ns);
      }
      await step([
        "ip",
        "link",
        "add",
        "srv0",
        "netns",
        s,
        "type",
        "veth",
        "peer",
        "name",
        "up0",
        "netns",
        c,
      ]);
      await step(["ip", "addr", "add", `${seg.serverIp}/24`, "dev", "srv0"], s);
      await step(["ip", "link", "set", "srv0", "up"], s);
      await step(["ip", "link", "add", "br0", "type", "bridge"], c);
      await step(["ip", "link", "set", "br0", "type", "bridge", "stp_state", "0"], c);
      await step(["ip", "link", "set", "up0", "master", "br0"], c);
      await step(["ip", "link", "set", "up0", "up"], c);
      await step(["ip", "link", "set", "br0", "up"], c);
      await waitLink(s, "srv0", CARRIER);
      await waitLink(c, "up0", FORWARDING);
    } catch (err) {
      await seg.destroy();
      throw err;
    }
    return seg;
  }

  /** Adds a tap in the client namespace, on the bridge; returns its name. */
  async addTap(): Promise<string> {
    const name = `tap${this.#taps++}`;
    await step(["ip", "tuntap", "add", "dev", name, "mode", "tap"], this.clientNs);
    await step(["ip", "link", "set", name, "master", "br0"], this.clientNs);
    await step(["ip", "link", "set", name, "up"], this.clientNs);
    return name;
  }

  /** Adds a host namespace on the bridge with address `ip`/24 on its `eth0` (e.g. a second DHCP server). */
  async addHost(ip: string): Promise<{ ns: string; ifname: string }> {
    const n = this.#hosts.length;
    const ns = uniqueName(`${this.tag}-h${n}`);
    this.#hosts.push(ns);
    await step(["ip", "netns", "add", ns]);
    await step(NO_IPV6, ns);
    await step([
      "ip",
      "link",
      "add",
      "eth0",
      "netns",
      ns,
      "type",
      "veth",
      "peer",
      "name",
      `hup${n}`,
      "netns",
      this.clientNs,
    ]);
    await step(["ip", "link", "set", `hup${n}`, "master", "br0"], this.clientNs);
    await step(["ip", "link", "set", `hup${n}`, "up"], this.clientNs);
    await step(["ip", "addr", "add", `${ip}/24`, "dev", "eth0"], ns);
    await step(["ip", "link", "set", "eth0", "up"], ns);
    await step(["ip", "link", "set", "lo", "up"], ns);
    await waitLink(ns, "eth0", CARRIER);
    await waitLink(this.clientNs, `hup${n}`, FORWARDING);
    return { ns, ifname: "eth0" };
  }

  /**
   * Drops `percent`% of the frames the server sends, at random, like `tc netem loss` on its link (the
   * kernel here has no sch_netem): an nftables bridge rule in the client namespace, so the server's own
   * sends still succeed and only the wire loses them.
   */
  async loss(percent: number): Promise<void> {
    await step(["nft", "add table bridge pypxe_loss"], this.clientNs);
    await step(
      ["nft", "add chain bridge pypxe_loss forward { type filter hook forward priority 0; }"],
      this.clientNs,
    );
    await step([
      "nft",
      `add rule bridge pypxe_loss forward iifname "up0" numgen random mod 100 < ${percent} drop`,
    ], this.clientNs);
  }

  /** Command prefix that runs a program inside the server namespace. */
  inServer(): string[] {
    return inNetns(this.serverNs, []);
  }

  /** Command prefix that runs a program inside the client namespace. */
  inClient(): string[] {
    return inNetns(this.clientNs, []);
  }

  /** Kills what runs inside and deletes every namespace of the segment; never throws. */
  async destroy(): Promise<void> {
    await deleteNamespaces([...this.#hosts, this.serverNs, this.clientNs]);
  }
}

/** The relay's source, built with `cc` by {@linkcode createDelayedLink}. */
const RELAY_SOURCE = new URL("../../scripts/bench/delay_relay.c", import.meta.url).pathname;

/**
 * A LAN-like link on kernels without sch_netem: client and server namespaces joined through a third
 * namespace where `delay_relay` (scripts/bench/delay_relay.c, built here with `cc`) forwards every frame
 * after `delayUs` microseconds in each direction (a round trip of twice that, plus the relay's own time).
 *
 *   client ns  c0 ─── r0 ┐ relay ns ┌ r1 ─── s0  server ns
 *   10.213.0.2/24        └ delay_relay ┘       10.213.0.1/24
 *
 * Needs root, cc and busybox (a ping proves the path).
 */
export async function createDelayedLink(delayUs: number): Promise<NetnsPair> {
  await sweepStale();
  const [client, relay, server] = ["c", "r", "s"].map((role) => uniqueName(`delay-${role}`));
  const dir = await Deno.makeTempDir({ prefix: "pypxe-delay-relay-" });
  const bin = join(dir, "delay_relay");
  let child: Deno.ChildProcess | undefined;
  const link: NetnsPair = {
    server,
    client,
    serverIf: "s0",
    clientIf: "c0",
    serverIp: "10.213.0.1",
    clientIp: "10.213.0.2",
    exec: inNetns,
    async destroy() {
      try {
        child?.kill("SIGTERM");
      } catch {
        // gone
      }
      await child?.status;
      await deleteNamespaces([client, relay, server]);
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    },
  };
  try {
    await step(["cc", "-O2", "-o", bin, RELAY_SOURCE]);
    for (const ns of [client, relay, server]) await step(["ip", "netns", "add", ns]);
    await step(["ip", "link", "add", "c0", "type", "veth", "peer", "name", "r0", "netns", relay], client);
    await step(["ip", "link", "add", "s0", "type", "veth", "peer", "name", "r1", "netns", relay], server);
    await step(["ip", "addr", "add", "10.213.0.2/24", "dev", "c0"], client);
    await step(["ip", "addr", "add", "10.213.0.1/24", "dev", "s0"], server);
    for (
      const [ns, ifs] of [[client, ["lo", "c0"]], [server, ["lo", "s0"]], [relay, ["r0", "r1"]]] as const
    ) {
      for (const i of ifs) await step(["ip", "link", "set", i, "up"], ns);
    }
    // the relay namespace must not answer or route anything itself
    await step(["sysctl", "-q", "-w", "net.ipv6.conf.all.disable_ipv6=1"], relay);
    child = new Deno.Command("ip", {
      args: ["netns", "exec", relay, bin, "r0", "r1", String(delayUs)],
      stdout: "piped",
      stderr: "inherit",
    }).spawn();
    const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
    let timer: ReturnType<typeof setTimeout> | undefined;
    const first = await Promise.race([
      reader.read(),
      new Promise<{ value: undefined; done: true }>((r) =>
        timer = setTimeout(() => r({ value: undefined, done: true }), 10_000)
      ),
    ]);
    clearTimeout(timer);
    reader.releaseLock();
    if (!first.value?.includes("ready")) throw new Error("delay_relay did not start");
    // a ping proves the path and warms the neighbour tables
    const ping = await run(["busybox", "ping", "-c", "3", "-W", "2", link.serverIp], {
      netns: client,
      timeoutMs: 15_000,
    });
    if (!ping.success) throw new Error(`no path through delay_relay: ${ping.stderr.trim() || ping.stdout}`);
  } catch (err) {
    await link.destroy();
    throw err;
  }
  return link;
}
