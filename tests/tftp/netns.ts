/**
 * A veth pair between two network namespaces for loss and delay tests: `server` at 10.X.0.1 and
 * `client` at 10.X.0.2, with optional random loss (nftables, which every kernel here has) or a netem
 * qdisc (where the kernel has sch_netem) on both ends. Always `destroy()` in `finally`.
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

/** Options of {@linkcode createNetnsPair}. */
export interface NetnsPairOptions {
  /** Percent of the packets each end drops on arrival, at random (nftables `numgen random`). */
  lossPercent?: number;
  /** A netem argument list (e.g. `["delay", "0.5ms"]`) applied on both ends; needs sch_netem. */
  netem?: string[];
}

/** Creates the pair, with loss or netem as asked. */
export async function createNetnsPair(opts: NetnsPairOptions = {}): Promise<NetnsPair> {
  const netem = opts.netem ?? [];
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
      if (opts.lossPercent) {
        // dropped on arrival, so the sender's send() still succeeds, as on a real lossy wire
        const nft = (rule: string) => sh(["ip", "netns", "exec", ns, "nft", rule]);
        await nft("add table inet pypxe_loss");
        await nft("add chain inet pypxe_loss input { type filter hook input priority 0; }");
        await nft(
          `add rule inet pypxe_loss input iifname "${dev}" numgen random mod 100 < ${opts.lossPercent} drop`,
        );
      }
    }
  } catch (err) {
    await pair.destroy();
    throw err;
  }
  return pair;
}

/** Why namespace loss tests cannot run here (root, ip netns, nft), or null when they can. */
export async function netnsUnavailable(): Promise<string | null> {
  if (Deno.build.os !== "linux") return "not Linux";
  try {
    const name = `pxprobe${Deno.pid}`;
    const r = await run(["ip", "netns", "add", name], { timeoutMs: 5000 });
    if (r.code !== 0) return `ip netns add failed: ${r.stderr.trim()}`;
    try {
      const nft = await run(["ip", "netns", "exec", name, "nft", "add table inet pypxe_probe"], {
        timeoutMs: 5000,
      });
      if (nft.code !== 0) return `nft not available: ${nft.stderr.trim()}`;
    } finally {
      await run(["ip", "netns", "del", name], { timeoutMs: 5000 });
    }
    return null;
  } catch (err) {
    return `ip/nft not runnable: ${err instanceof Error ? err.message : err}`;
  }
}

/** True when the kernel has sch_netem (for delay benchmarks). */
export async function netemAvailable(): Promise<boolean> {
  const name = `pxnetem${Deno.pid}`;
  if ((await run(["ip", "netns", "add", name], { timeoutMs: 5000 })).code !== 0) return false;
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
    return tc.code === 0;
  } finally {
    await run(["ip", "netns", "del", name], { timeoutMs: 5000 });
  }
}
