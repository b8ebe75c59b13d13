/**
 * A veth pair between two network namespaces for loss and delay tests: `server` at 10.X.0.1 and
 * `client` at 10.X.0.2, with an optional netem qdisc on both ends. Always `destroy()` in `finally`.
 * @module
 */
import { run } from "./helpers.ts";

/** A created namespace pair. */
export interface NetnsPair {
  server: string;
  client: string;
  serverIp: string;
  clientIp: string;
  /** Runs a command inside a namespace. */
  exec(ns: string, cmd: string[]): string[];
  destroy(): Promise<void>;
}

async function sh(cmd: string[]): Promise<void> {
  const r = await run(cmd, { timeoutMs: 10_000 });
  if (r.code !== 0) throw new Error(`${cmd.join(" ")}: ${r.stderr.trim() || r.code}`);
}

/** Creates the pair; `netem` is the netem argument list (e.g. `["loss", "10%"]`), applied on both ends. */
export async function createNetnsPair(netem: string[] = []): Promise<NetnsPair> {
  const tag = `${Deno.pid % 10000}${Math.floor(Math.random() * 1000)}`;
  const octet = 100 + Math.floor(Math.random() * 150);
  const server = `pxs${tag}`;
  const client = `pxc${tag}`;
  const vs = `vs${tag}`;
  const vc = `vc${tag}`;
  const pair: NetnsPair = {
    server,
    client,
    serverIp: `10.${octet}.0.1`,
    clientIp: `10.${octet}.0.2`,
    exec: (ns, cmd) => ["ip", "netns", "exec", ns, ...cmd],
    async destroy() {
      await run(["ip", "netns", "del", server], { timeoutMs: 10_000 });
      await run(["ip", "netns", "del", client], { timeoutMs: 10_000 });
    },
  };
  try {
    await sh(["ip", "netns", "add", server]);
    await sh(["ip", "netns", "add", client]);
    await sh(["ip", "link", "add", vs, "type", "veth", "peer", "name", vc]);
    await sh(["ip", "link", "set", vs, "netns", server]);
    await sh(["ip", "link", "set", vc, "netns", client]);
    for (const [ns, dev, ip] of [[server, vs, pair.serverIp], [client, vc, pair.clientIp]]) {
      await sh(["ip", "-n", ns, "addr", "add", `${ip}/24`, "dev", dev]);
      await sh(["ip", "-n", ns, "link", "set", dev, "up"]);
      await sh(["ip", "-n", ns, "link", "set", "lo", "up"]);
      if (netem.length > 0) await sh(["tc", "-n", ns, "qdisc", "add", "dev", dev, "root", "netem", ...netem]);
    }
  } catch (err) {
    await pair.destroy();
    throw err;
  }
  return pair;
}

/** Why namespace tests cannot run here, or null when they can. */
export async function netnsUnavailable(): Promise<string | null> {
  if (Deno.build.os !== "linux") return "not Linux";
  try {
    const name = `pxprobe${Deno.pid}`;
    const r = await run(["ip", "netns", "add", name], { timeoutMs: 5000 });
    if (r.code !== 0) return `ip netns add failed: ${r.stderr.trim()}`;
    try {
      const tc = await run([
        "ip",
        "netns",
        "exec",
        name,
        "tc",
        "qdisc",
        "add",
        "dev",
        "lo",
        "root",
        "netem",
        "delay",
        "1ms",
      ], {
        timeoutMs: 5000,
      });
      if (tc.code !== 0) return `tc netem not available: ${tc.stderr.trim()}`;
    } finally {
      await run(["ip", "netns", "del", name], { timeoutMs: 5000 });
    }
    return null;
  } catch (err) {
    return `ip/tc not runnable: ${err instanceof Error ? err.message : err}`;
  }
}
