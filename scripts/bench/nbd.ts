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

function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = l.addr.port;
  l.close();
  return port;
}

async function hasCommand(cmd: string): Promise<boolean> {
  try {
    await new Deno.Command(cmd, { args: ["--version"], stdout: "null", stderr: "null" }).output();
    return true;
  } catch {
    return false;
  }
}

async function waitForPort(port: number, ms = 5000): Promise<void> {
  for (let waited = 0; waited < ms; waited += 50) {
    try {
      (await Deno.connect({ hostname: "127.0.0.1", port })).close();
      return;
    } catch {
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  throw new Error(`nothing listens on 127.0.0.1:${port} after ${ms} ms`);
}

async function writeImage(path: string, bytes: number): Promise<void> {
  const file = await Deno.open(path, { write: true, create: true, truncate: true });
  try {
    const chunk = new Uint8Array(1 << 20);
    const words = new Uint32Array(chunk.buffer);
    let s = 0x9e3779b9;
    for (let done = 0; done < bytes; done += chunk.length) {
      for (let i = 0; i < words.length; i++) {
        s ^= s << 13;
        s ^= s >>> 17;
        s ^= s << 5;
        words[i] = s;
      }
      const n = Math.min(chunk.length, bytes - done);
      let w = 0;
      while (w < n) w += await file.write(chunk.subarray(w, n));
    }
  } finally {
    file.close();
  }
}

async function startNbdServer(dir: string, image: string): Promise<Peer> {
  const port = freePort();
  const conf = `${dir}/nbd-server.conf`;
  const pidFile = `${dir}/nbd-server.pid`;
  await Deno.writeTextFile(
    conf,
    `[generic]\n    listenaddr = 127.0.0.1\n    port = ${port}\n[bench]\n    exportname = ${image}\n    readonly = true\n`,
  );
  const out = await new Deno.Command("nbd-server", { args: ["-C", conf, "-p", pidFile], stdout: "null" })
    .output();
  if (!out.success) throw new Error(`nbd-server failed: ${new TextDecoder().decode(out.stderr)}`);
  await waitForPort(port);
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
  const port = freePort();
  const child = new Deno.Command("qemu-nbd", {
    args: [
      "-r",
      "-f",
      "raw",
      "-x",
      "bench",
      "-b",
      "127.0.0.1",
      "-p",
      String(port),
      "--shared=16",
      "-t",
      image,
    ],
    stdout: "null",
    stderr: "null",
  }).spawn();
  await waitForPort(port);
  return {
    name: "qemu-nbd",
    url: `nbd://127.0.0.1:${port}/bench`,
    stop: async () => {
      child.kill("SIGTERM");
      await child.status;
    },
  };
}

async function startPypxe(image: string): Promise<Peer> {
  const server = new NbdServer({ exports: [image], hostname: "127.0.0.1", port: 0 });
  await server.start();
  return { name: "pypxe", url: `nbd://127.0.0.1:${server.port}/`, stop: () => server.stop() };
}

async function nbdcopyMBps(url: string, args: string[], bytes: number): Promise<number> {
  const started = performance.now();
  const out = await new Deno.Command("nbdcopy", {
    args: [...args, url, "null:"],
    stdout: "null",
    stderr: "piped",
  })
    .output();
  const secs = (performance.now() - started) / 1000;
  if (!out.success) throw new Error(`nbdcopy ${url} failed: ${new TextDecoder().decode(out.stderr)}`);
  return bytes / 1e6 / secs;
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
  if (!(await hasCommand("nbdcopy"))) throw new Error("nbdcopy is missing: apt-get install libnbd-bin");
  const dir = await Deno.makeTempDir({ prefix: "pypxe-bench-nbd-" });
  const peers: Peer[] = [];
  try {
    const image = `${dir}/bench.img`;
    print(`nbd bench: ${sizeMiB} MiB image of pseudo-random data, ${runs} rounds, nbdcopy -> null:`);
    await writeImage(image, bytes);
    // warm the page cache so every server reads from memory
    await new Deno.Command("cat", { args: [image], stdout: "null" }).output();
    peers.push(await startPypxe(image));
    if (await hasCommand("nbd-server")) peers.push(await startNbdServer(dir, image));
    else print("  nbd-server missing (apt-get install nbd-server): skipped");
    if (await hasCommand("qemu-nbd")) peers.push(await startQemuNbd(image));
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
