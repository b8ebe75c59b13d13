/**
 * A LAN-like link for benchmarks on kernels without sch_netem: client and server network namespaces
 * joined through a third namespace where `delay_relay` (scripts/bench/delay_relay.c, built here with
 * `cc`) forwards every frame after a fixed delay in each direction.
 *
 *   client ns  c0 ─── r0 ┐ relay ns ┌ r1 ─── s0  server ns
 *   10.213.0.2/24        └ delay_relay ┘       10.213.0.1/24
 * @module
 */
import { join } from "node:path";

/** The namespaces, addresses and a way to run commands in them. */
export interface DelayedLink {
  readonly client: string;
  readonly server: string;
  readonly clientIp: string;
  readonly serverIp: string;
  /** Wraps `cmd` to run inside namespace `ns`. */
  exec(ns: string, cmd: string[]): string[];
  destroy(): Promise<void>;
}

async function run(cmd: string[], timeoutMs = 60_000): Promise<string> {
  const child = new Deno.Command(cmd[0], { args: cmd.slice(1), stdout: "piped", stderr: "piped" }).spawn();
  const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
  const out = await child.output();
  clearTimeout(timer);
  if (!out.success) {
    throw new Error(`${cmd.join(" ")}: ${new TextDecoder().decode(out.stderr).trim()}`);
  }
  return new TextDecoder().decode(out.stdout);
}

/** Builds the relay binary (once per call) into a temp dir; returns its path. */
async function buildRelay(): Promise<string> {
  const src = new URL("./delay_relay.c", import.meta.url).pathname;
  const dir = await Deno.makeTempDir({ prefix: "pypxe-delay-relay-" });
  const bin = join(dir, "delay_relay");
  await run(["cc", "-O2", "-o", bin, src]);
  return bin;
}

/** Creates the link with `delayUs` microseconds each way (a round trip of twice that). Needs root. */
export async function createDelayedLink(delayUs: number): Promise<DelayedLink> {
  const tag = `${Deno.pid % 10000}`;
  const [client, relay, server] = ["c", "r", "s"].map((x) => `pxd${x}${tag}`);
  const bin = await buildRelay();
  const ns = (name: string, ...cmd: string[]) => run(["ip", "-n", name, ...cmd]);
  let child: Deno.ChildProcess | undefined;
  const destroy = async () => {
    try {
      child?.kill("SIGTERM");
    } catch {
      // gone
    }
    await child?.status;
    for (const name of [client, relay, server]) {
      await run(["ip", "netns", "del", name]).catch(() => {});
    }
    await Deno.remove(join(bin, ".."), { recursive: true }).catch(() => {});
  };
  try {
    for (const name of [client, relay, server]) await run(["ip", "netns", "add", name]);
    await ns(client, "link", "add", "c0", "type", "veth", "peer", "name", "r0", "netns", relay);
    await ns(server, "link", "add", "s0", "type", "veth", "peer", "name", "r1", "netns", relay);
    await ns(client, "addr", "add", "10.213.0.2/24", "dev", "c0");
    await ns(server, "addr", "add", "10.213.0.1/24", "dev", "s0");
    for (
      const [name, ifs] of [[client, ["lo", "c0"]], [server, ["lo", "s0"]], [relay, ["r0", "r1"]]] as const
    ) {
      for (const i of ifs) await ns(name, "link", "set", i, "up");
    }
    // the relay namespace must not answer or route anything itself
    await run(["ip", "netns", "exec", relay, "sysctl", "-q", "-w", "net.ipv6.conf.all.disable_ipv6=1"]);
    child = new Deno.Command("ip", {
      args: ["netns", "exec", relay, bin, "r0", "r1", String(delayUs)],
      stdout: "piped",
      stderr: "inherit",
    }).spawn();
    const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
    const first = await Promise.race([
      reader.read(),
      new Promise<{ value: undefined; done: true }>((r) =>
        setTimeout(() => r({ value: undefined, done: true }), 10_000)
      ),
    ]);
    reader.releaseLock();
    if (!first.value?.includes("ready")) throw new Error("delay_relay did not start");
    // a ping proves the path and warms the neighbour tables
    await run(["ip", "netns", "exec", client, "busybox", "ping", "-c", "3", "-W", "2", "10.213.0.1"], 15_000)
      .catch((err) => {
        throw new Error(`no path through delay_relay: ${err.message}`);
      });
  } catch (err) {
    await destroy();
    throw err;
  }
  return {
    client,
    server,
    clientIp: "10.213.0.2",
    serverIp: "10.213.0.1",
    exec: (name, cmd) => ["ip", "netns", "exec", name, ...cmd],
    destroy,
  };
}

if (import.meta.main) {
  // deno run -A scripts/bench/delay.ts [DELAY_US]: builds the link, shows ping's RTT, tears it down
  const link = await createDelayedLink(Number(Deno.args[0] ?? "250"));
  try {
    console.log(await run(link.exec(link.client, ["busybox", "ping", "-c", "5", link.serverIp])));
  } finally {
    await link.destroy();
  }
}
