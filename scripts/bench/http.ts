/**
 * HTTP benchmark: pypxe's HttpServer against nginx (Debian nginx-light: one process, sendfile on,
 * access log off) on loopback, in alternating runs.
 *
 *   deno run -A scripts/bench/http.ts [--rounds 3] [--seconds 5] [--connections 50] [--before DIR]
 *
 * `--before DIR` adds a third peer: the same server from another checkout (e.g. a worktree of an older
 * commit, `git worktree add /tmp/before <commit>`), to measure what a change costs in the same run.
 *
 * Measures: one 512 MiB download (MB/s and the server's CPU seconds from /proc/PID/stat), 50 parallel
 * 4 MiB range requests over the 512 MiB file (wall time), and wrk req/s for a 4 KiB file with keep-alive.
 * pypxe runs as a subprocess (spawnService, tests/helpers/servers.ts): a bare HttpServer over DIR, no
 * logging sink configured (like nginx's `access_log off`). Needs curl, wrk and nginx
 * (`apt-get install -y nginx-light wrk`).
 * @module
 */
import { parseArgs } from "node:util";
import { writeRandomFile } from "../../tests/helpers/random.ts";
import { run } from "../../tests/helpers/run.ts";
import { type Daemon, freeTcpPort, spawnService, startDaemon } from "../../tests/helpers/servers.ts";
import { findTool, missingTools } from "../../tests/helpers/tools.ts";

const MiB = 1024 * 1024;

await main();

interface Peer {
  name: string;
  port: number;
  pid: number;
  daemon: Daemon;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      rounds: { type: "string", default: "3" },
      seconds: { type: "string", default: "5" },
      connections: { type: "string", default: "50" },
      before: { type: "string" },
    },
  });
  const rounds = Number(values.rounds);
  const seconds = Number(values.seconds);
  const connections = Number(values.connections);
  const missing = missingTools("nginx", "wrk", "curl");
  if (missing !== null) throw new Error(missing);
  const dir = await Deno.makeTempDir({ prefix: "pypxe-bench-http-" });
  const peers: Peer[] = [];
  try {
    const www = `${dir}/www`;
    await Deno.mkdir(www);
    await writeRandomFile(`${www}/big.iso`, 512 * MiB);
    await writeRandomFile(`${www}/small.efi`, 4096);
    peers.push(await startNginx(dir, www, freeTcpPort()));
    peers.push(await startPypxe(www, freeTcpPort()));
    if (values.before) peers.push(await startPypxe(www, freeTcpPort(), values.before, "before"));

    const results = new Map<string, Record<string, number[]>>();
    for (const p of peers) results.set(p.name, { mbps: [], cpu: [], ranges: [], rps: [] });
    for (let round = 0; round < rounds; round++) {
      const order = round % 2 === 0 ? peers : [...peers].reverse();
      for (const peer of order) {
        const r = results.get(peer.name)!;
        const dl = await download(peer);
        r.mbps.push(dl.mbps);
        r.cpu.push(dl.cpu);
        r.ranges.push(await parallelRanges(peer, 50, 4 * MiB));
        r.rps.push(await wrk(peer, seconds, connections));
        console.log(
          `round ${round + 1} ${peer.name.padEnd(6)} 512 MiB ${dl.mbps.toFixed(0)} MB/s cpu ${
            dl.cpu.toFixed(2)
          } s | ` +
            `50x4MiB ranges ${r.ranges.at(-1)!.toFixed(2)} s | 4 KiB ${r.rps.at(-1)!.toFixed(0)} req/s`,
        );
      }
    }
    const med = (name: string, key: string) => median(results.get(name)![key]);
    console.log(`\nmedians over ${rounds} alternating rounds (wrk -t1 -c${connections} -d${seconds}s):`);
    const hasBefore = peers.some((p) => p.name === "before");
    console.log(
      "                 nginx      pypxe      ratio (pypxe/nginx)" +
        (hasBefore ? "      before     pypxe/before" : ""),
    );
    const row = (label: string, key: string, digits: number, note: string) => {
      const n = med("nginx", key);
      const p = med("pypxe", key);
      const b = hasBefore ? med("before", key) : NaN;
      console.log(
        `${label.padEnd(16)} ${n.toFixed(digits).padStart(9)}  ${p.toFixed(digits).padStart(9)}  ${
          (p / n).toFixed(2)
        }x  ${note.padEnd(24)}` +
          (hasBefore ? `  ${b.toFixed(digits).padStart(9)}  ${(p / b).toFixed(2)}x` : ""),
      );
    };
    row("512 MiB MB/s", "mbps", 0, "(curl-bound on loopback)");
    row("CPU s / 512 MiB", "cpu", 2, "target <= 2.00x");
    row("50 ranges s", "ranges", 2, "target <= 1.00x");
    row("4 KiB req/s", "rps", 0, "target >= 0.80x");
  } finally {
    for (const p of peers) await p.daemon.stop();
    await Deno.remove(dir, { recursive: true });
  }
}

async function startNginx(dir: string, www: string, port: number): Promise<Peer> {
  const conf = `${dir}/nginx.conf`;
  await Deno.writeTextFile(
    conf,
    `daemon off;
master_process off;
worker_processes 1;
pid ${dir}/nginx.pid;
error_log ${dir}/nginx-error.log warn;
events { worker_connections 1024; }
http {
  access_log off;
  sendfile on;
  tcp_nopush on;
  keepalive_requests 1000000;
  default_type application/octet-stream;
  client_body_temp_path ${dir}/body;
  proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi;
  scgi_temp_path ${dir}/scgi;
  server {
    listen 127.0.0.1:${port};
    root ${www};
  }
}
`,
  );
  const nginx = await startDaemon([findTool("nginx") ?? "nginx", "-c", conf, "-p", dir], { port });
  return { name: "nginx", port, pid: nginx.pid, daemon: nginx };
}

/** pypxe's HttpServer alone over `www`, from the checkout `repo` (default this one). */
async function startPypxe(
  www: string,
  port: number,
  repo = new URL("../../", import.meta.url).pathname,
  name = "pypxe",
): Promise<Peer> {
  const exists = await Deno.stat(`${repo}/tests/helpers/serve.ts`).then(() => true, () => false);
  // a checkout from before tests/helpers/serve.ts served through this script's own `--serve DIR PORT`
  const daemon = exists
    ? await spawnService({ service: "http", host: "127.0.0.1", port, dir: www }, { root: repo })
    : await startDaemon(
      [Deno.execPath(), "run", "-A", "scripts/bench/http.ts", "--serve", www, String(port)],
      {
        cwd: repo,
        port,
      },
    );
  return { name, port, pid: daemon.pid, daemon };
}

/** utime + stime of `pid` in seconds. */
async function cpuSeconds(pid: number): Promise<number> {
  const stat = await Deno.readTextFile(`/proc/${pid}/stat`);
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(fields[11]) + Number(fields[12])) / 100; // CLK_TCK is 100 on Linux
}

/** Runs a client; its stdout (throws when it fails). */
async function output(cmd: string[]): Promise<string> {
  return (await run(cmd, { check: true, timeoutMs: 600_000 })).stdout;
}

async function download(peer: Peer): Promise<{ mbps: number; cpu: number }> {
  const before = await cpuSeconds(peer.pid);
  const out = await output([
    "curl",
    "-sS",
    "-o",
    "/dev/null",
    "-w",
    "%{size_download} %{time_total}",
    `http://127.0.0.1:${peer.port}/big.iso`,
  ]);
  const cpu = (await cpuSeconds(peer.pid)) - before;
  const [size, secs] = out.trim().split(" ").map(Number);
  if (size !== 512 * MiB) throw new Error(`${peer.name}: downloaded ${size} bytes`);
  return { mbps: size / 1e6 / secs, cpu };
}

async function parallelRanges(peer: Peer, count: number, length: number): Promise<number> {
  const t0 = performance.now();
  const outs = await Promise.all(
    Array.from({ length: count }, (_, i) => {
      const start = i * 10 * MiB;
      return output([
        "curl",
        "-sS",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code} %{size_download}",
        "-r",
        `${start}-${start + length - 1}`,
        `http://127.0.0.1:${peer.port}/big.iso`,
      ]);
    }),
  );
  const secs = (performance.now() - t0) / 1000;
  for (const out of outs) {
    if (out !== `206 ${length}`) throw new Error(`${peer.name}: range answer ${out}`);
  }
  return secs;
}

async function wrk(peer: Peer, seconds: number, connections: number): Promise<number> {
  const out = await output([
    "wrk",
    "-t1",
    `-c${connections}`,
    `-d${seconds}s`,
    `http://127.0.0.1:${peer.port}/small.efi`,
  ]);
  const m = /Requests\/sec:\s+([\d.]+)/.exec(out);
  if (m === null) throw new Error(`wrk output: ${out}`);
  if (/Non-2xx/.test(out)) throw new Error(`${peer.name}: wrk saw errors: ${out}`);
  return Number(m[1]);
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}
