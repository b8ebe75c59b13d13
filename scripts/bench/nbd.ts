/**
 * NBD benchmark: nbd-server and qemu-nbd against pypxe's NbdServer on the same image (1 GiB by default),
 * read with `nbdcopy URL null:` once with `--connections=1 --requests=1` and once with nbdcopy's
 * defaults (several connections, many requests in flight). Servers alternate within each round so
 * machine noise spreads evenly; the table shows median MB/s and pypxe's ratio to each peer.
 *
 * Usage: deno run -A scripts/bench/nbd.ts [--size-mib N] [--runs N]
 * @module
 */
import { parseArgs } from "node:util";
import { NbdServer } from "../../src/nbd/server.ts";
import { writeRandomFile } from "../../tests/helpers/random.ts";
import { run } from "../../tests/helpers/run.ts";
import { freeTcpPort, startDaemon, waitForTcpPort } from "../../tests/helpers/servers.ts";
import { findTool } from "../../tests/helpers/tools.ts";

/** Options of {@linkcode runNbdBench}. */
export interface NbdBenchOptions {
  /** Image size in MiB (default 1024). */
  sizeMiB?: number;
  /** Rounds per server and setting (default 5). */
  runs?: number;
  /** Line printer (default console.log). */
  print?: (line: string) => void;
}

/** One server's median throughput per setting, in MB/s. */
export interface NbdBenchRow {
  server: string;
  oneRequest: number;
  defaults: number;
}

interface Peer {
  name: string;
  url: string;
  stop: () => Promise<void>;
}

async function startNbdServer(dir: string, image: string): Promise<Peer> {
  const port = freeTcpPort();
  const conf = `${dir}/nbd-server.conf`;
  const pidFile = `${dir}/nbd-server.pid`;
  await Deno.writeTextFile(
    conf,
    `[generic]\n    listenaddr = 127.0.0.1\n    port = ${port}\n[bench]\n    exportname = ${image}\n    readonly = true\n`,
  );
  // it forks into the background
  await run(["nbd-server", "-C", conf, "-p", pidFile], { check: true });
  await waitForTcpPort(port);
  const pid = Number((await Deno.readTextFile(pidFile)).trim());
  return {
    name: "nbd-server",
    url: `nbd://127.0.0.1:${port}/bench`,
    stop: () => {
      try {
        Deno.kill(pid, "SIGTERM");
      } catch {
        // already gone
      }
      return Promise.resolve();
    },
  };
}

async function startQemuNbd(image: string): Promise<Peer> {
  const port = freeTcpPort();
  const args = ["-r", "-f", "raw", "-x", "bench", "-b", "127.0.0.1", "-p", String(port), "--shared=16", "-t"];
  const qemuNbd = await startDaemon(["qemu-nbd", ...args, image], { port, readyTimeoutMs: 5000 });
  return {
    name: "qemu-nbd",
    url: `nbd://127.0.0.1:${port}/bench`,
    stop: async () => void (await qemuNbd.stop()),
  };
}

async function startPypxe(image: string): Promise<Peer> {
  const server = new NbdServer({ exports: [image], hostname: "127.0.0.1", port: 0 });
  await server.start();
  return { name: "pypxe", url: `nbd://127.0.0.1:${server.port}/`, stop: () => server.stop() };
}

async function nbdcopyMBps(url: string, args: string[], bytes: number): Promise<number> {
  const out = await run(["nbdcopy", ...args, url, "null:"], { timeoutMs: 600_000 });
  if (!out.success) throw new Error(`nbdcopy ${url} failed: ${out.stderr}`);
  return bytes / 1e6 / (out.ms / 1000);
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

/** Runs the benchmark and prints a table; resolves with the medians per server. */
export async function runNbdBench(opts: NbdBenchOptions = {}): Promise<NbdBenchRow[]> {
  const print = opts.print ?? console.log;
  const sizeMiB = opts.sizeMiB ?? 1024;
  const runs = opts.runs ?? 5;
  const bytes = sizeMiB * 1024 * 1024;
  if (findTool("nbdcopy") === null) throw new Error("nbdcopy is missing: apt-get install libnbd-bin");
  const dir = await Deno.makeTempDir({ prefix: "pypxe-bench-nbd-" });
  const peers: Peer[] = [];
  try {
    const image = `${dir}/bench.img`;
    print(`nbd bench: ${sizeMiB} MiB image of pseudo-random data, ${runs} rounds, nbdcopy -> null:`);
    await writeRandomFile(image, bytes);
    // warm the page cache so every server reads from memory
    await run(["sh", "-c", 'cat "$0" > /dev/null', image], { timeoutMs: 600_000 });
    peers.push(await startPypxe(image));
    if (findTool("nbd-server") !== null) peers.push(await startNbdServer(dir, image));
    else print("  nbd-server missing (apt-get install nbd-server): skipped");
    if (findTool("qemu-nbd") !== null) peers.push(await startQemuNbd(image));
    else print("  qemu-nbd missing (apt-get install qemu-utils): skipped");

    const settings = { oneRequest: ["--connections=1", "--requests=1"], defaults: [] as string[] };
    const results = new Map(
      peers.map((p) => [p.name, { oneRequest: [] as number[], defaults: [] as number[] }]),
    );
    for (let round = 0; round < runs; round++) {
      // rotate the order every round
      const order = peers.map((_, i) => peers[(i + round) % peers.length]);
      for (const [setting, args] of Object.entries(settings) as [keyof typeof settings, string[]][]) {
        for (const peer of order) {
          results.get(peer.name)![setting].push(await nbdcopyMBps(peer.url, args, bytes));
        }
      }
    }
    const rows: NbdBenchRow[] = peers.map((p) => ({
      server: p.name,
      oneRequest: median(results.get(p.name)!.oneRequest),
      defaults: median(results.get(p.name)!.defaults),
    }));
    const pad = (s: string, n: number) => s.padStart(n);
    print(`  ${"server".padEnd(12)}${pad("1 conn, 1 req MB/s", 20)}${pad("defaults MB/s", 16)}`);
    for (const r of rows) {
      print(`  ${r.server.padEnd(12)}${pad(r.oneRequest.toFixed(0), 20)}${pad(r.defaults.toFixed(0), 16)}`);
    }
    const us = rows[0];
    for (const r of rows.slice(1)) {
      print(
        `  pypxe / ${r.server}: ${(us.oneRequest / r.oneRequest).toFixed(2)}x (1 conn, 1 req), ` +
          `${(us.defaults / r.defaults).toFixed(2)}x (defaults)`,
      );
    }
    return rows;
  } finally {
    for (const p of peers) await p.stop();
    await Deno.remove(dir, { recursive: true });
  }
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: { "size-mib": { type: "string" }, runs: { type: "string" } },
  });
  await runNbdBench({
    sizeMiB: values["size-mib"] ? Number(values["size-mib"]) : undefined,
    runs: values.runs ? Number(values.runs) : undefined,
  });
}
