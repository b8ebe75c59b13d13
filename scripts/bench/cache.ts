/**
 * Remote-cache benchmark (issue 17): pypxe serving an `http://` file that menu.json names, through its
 * cache (`remote/<key>/<name>`), against a direct download from the origin and against a local file.
 *
 *   deno task bench cache [--size-mib 256] [--runs 3] [--rate 25m] [--clients 20]
 *                         [--rounds 3] [--seconds 5] [--connections 50] [--nginx]
 *
 * The origin is nginx (Debian nginx-light, its own process, sendfile on) on loopback with two server
 * blocks over the same files: `throttled` (nginx `limit_rate`, default 25 MiB/s per connection: a
 * ~200 Mbit/s uplink, slow enough that `--clients` x the rate stays well under what this machine can
 * deliver over loopback, so the many-clients target measures the cache, not the box) and `loopback`
 * (unthrottled: pypxe's own cold-path ceiling, informational). pypxe runs as `deno task start` runs it
 * (tests/helpers/servers.ts startPypxe: HTTP only, no TFTP, request log on), with a fresh `--cache-dir`
 * for every cold measurement. Each origin, `--runs` times, alternating the order:
 *
 * 1. direct: curl from the origin vs cold: curl through pypxe on an empty cache (curl's time_total; the
 *    bytes of the first cold run are compared with the origin's file);
 * 2. `--clients` curls at once through pypxe on an empty cache: the slowest finish (wall time from the
 *    first spawn to the last exit) vs one cold client timed the same way, and the origin's GET count for
 *    the file (its access log; must be 1). On loopback this runs once: it is bound by this machine.
 *
 * Then warm, the table of `bench http` (the `--size-mib` file, 50 ranges of 4 MiB spread over it, wrk on a
 * 4 KiB file): the cached remote files vs the same bytes as local files of pypxe's netboot tree (one pypxe
 * process, alternating); `--nginx` adds nginx serving them as a reference column. Needs curl, wrk and
 * nginx (`apt-get install -y nginx-light wrk`). A full run takes about 3 minutes.
 * @module
 */
import { parseArgs } from "node:util";
import { remoteName } from "../../src/netboot/remote_url.ts";
import { writeRandomFile } from "../../tests/helpers/random.ts";
import { run } from "../../tests/helpers/run.ts";
import {
  type Daemon,
  freeTcpPort,
  type PypxeProcess,
  startDaemon,
  startPypxe,
} from "../../tests/helpers/servers.ts";
import { findTool, missingTools } from "../../tests/helpers/tools.ts";

const MiB = 1024 * 1024;
/** Bounds every client run (a stuck download fails the benchmark instead of hanging it). */
const CLIENT_TIMEOUT_MS = 120_000;

interface Origin {
  name: "throttled" | "loopback";
  port: number;
  log: string;
}

interface Ctx {
  dir: string;
  www: string;
  netboot: string;
  size: number;
  nginx: Daemon;
  origins: Origin[];
  /** The nginx block without access log or limit (the warm table's nginx column). */
  refPort: number;
}

await main();

async function main(): Promise<void> {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      "size-mib": { type: "string", default: "256" },
      runs: { type: "string", default: "3" },
      rate: { type: "string", default: "25m" },
      clients: { type: "string", default: "20" },
      rounds: { type: "string", default: "3" },
      seconds: { type: "string", default: "5" },
      connections: { type: "string", default: "50" },
      nginx: { type: "boolean", default: false },
    },
  });
  const size = Number(values["size-mib"]) * MiB;
  const runs = Number(values.runs);
  const clients = Number(values.clients);
  const rounds = Number(values.rounds);
  const seconds = Number(values.seconds);
  const connections = Number(values.connections);
  if (!(size >= 64 * MiB && size <= 4096 * MiB)) throw new Error("--size-mib: 64..4096");
  if (!(runs >= 1 && runs <= 20 && clients >= 2 && clients <= 100 && rounds >= 1 && rounds <= 20)) {
    throw new Error("--runs 1..20, --clients 2..100, --rounds 1..20");
  }
  if (!/^\d+[km]?$/.test(values.rate)) throw new Error("--rate: nginx limit_rate syntax (100m)");
  const missing = missingTools("nginx", "wrk", "curl");
  if (missing !== null) throw new Error(missing);
  const started = performance.now();

  const dir = await Deno.makeTempDir({ prefix: "pypxe-bench-cache-" });
  let nginx: Daemon | null = null;
  try {
    const www = `${dir}/www`;
    const netboot = `${dir}/netboot`;
    await Deno.mkdir(www);
    await Deno.mkdir(netboot);
    await writeRandomFile(`${www}/big.iso`, size);
    await writeRandomFile(`${www}/small.efi`, 4096);
    // the local-file peer of the warm table: the same bytes in pypxe's netboot tree
    await Deno.copyFile(`${www}/big.iso`, `${netboot}/big.iso`);
    await Deno.copyFile(`${www}/small.efi`, `${netboot}/small.efi`);
    const origins: Origin[] = [
      { name: "throttled", port: freeTcpPort(), log: `${dir}/throttled.log` },
      { name: "loopback", port: freeTcpPort(), log: `${dir}/loopback.log` },
    ];
    const refPort = freeTcpPort();
    nginx = await startNginx(dir, www, origins, refPort, values.rate);
    const menu = {
      entries: origins.map((o) => ({
        id: o.name,
        label: `${o.name} origin`,
        kernel: originUrl(o, "big.iso"),
        initrd: [originUrl(o, "small.efi")],
      })),
    };
    await Deno.writeTextFile(`${netboot}/menu.json`, JSON.stringify(menu, null, 2));
    const ctx: Ctx = { dir, www, netboot, size, nginx, origins, refPort };

    console.log(
      `file ${size / MiB} MiB; origins: nginx throttled (limit_rate ${values.rate}/connection), ` +
        `nginx on loopback (unthrottled)\n`,
    );
    const cold = new Map<string, ColdResult>();
    for (const origin of origins) {
      // on loopback the many-clients run is bound by this machine (curl x N + loopback copies): once
      const manyRuns = origin.name === "throttled" ? runs : 1;
      cold.set(origin.name, await coldPhase(ctx, origin, runs, manyRuns, clients));
    }
    const warm = await warmPhase(ctx, rounds, seconds, connections, values.nginx);

    const t = cold.get("throttled")!;
    const l = cold.get("loopback")!;
    console.log(
      `\n== cold: fresh --cache-dir every run; medians of ${runs} alternating runs ` +
        `(loopback ${clients} clients: 1 run) ==`,
    );
    console.log(
      `${"".padEnd(34)} ${`throttled (${values.rate}/s)`.padStart(18)}  ${"loopback".padStart(10)}`,
    );
    const line = (label: string, a: string, b: string) =>
      console.log(`${label.padEnd(34)} ${a.padStart(18)}  ${b.padStart(10)}`);
    const secs = (xs: number[]) => median(xs).toFixed(2);
    const ratio = (x: number, limit: number) => `${x.toFixed(2)}x ${x <= limit ? "ok" : "MISS"}`;
    line("direct from the origin s", secs(t.direct), secs(l.direct));
    line("cold through pypxe s", secs(t.cold), secs(l.cold));
    line(
      "  cold/direct (target <= 1.10x)",
      ratio(median(t.cold) / median(t.direct), 1.1),
      ratio(median(l.cold) / median(l.direct), 1.1),
    );
    line(
      "  MB/s direct / cold",
      `${mbps(size, t.direct)} / ${mbps(size, t.cold)}`,
      `${mbps(size, l.direct)} / ${mbps(size, l.cold)}`,
    );
    line(
      "  first byte ms (cold)",
      (median(t.coldTtfb) * 1000).toFixed(0),
      (median(l.coldTtfb) * 1000).toFixed(0),
    );
    line("  pypxe CPU s (cold)", secs(t.coldCpu), secs(l.coldCpu));
    line("1 cold client, wall s", secs(t.coldWall), secs(l.coldWall));
    line(`${clients} cold clients, slowest s`, secs(t.many), secs(l.many));
    line(
      `  ${clients}/1 (target <= 1.20x)`,
      ratio(median(t.many) / median(t.coldWall), 1.2),
      ratio(median(l.many) / median(l.coldWall), 1.2),
    );
    line(`  fastest of ${clients} s`, secs(t.manyFastest), secs(l.manyFastest));
    line(`  pypxe CPU s (${clients} clients)`, secs(t.manyCpu), secs(l.manyCpu));
    const gets = (r: ColdResult) => `${r.gets.every((g) => g === 1) ? "ok" : "MISS"} ${r.gets.join(",")}`;
    line("origin GETs per run (must be 1)", gets(t), gets(l));

    console.log(
      `\n== warm: medians of ${rounds} alternating rounds (wrk -t1 -c${connections} -d${seconds}s) ==`,
    );
    const withNginx = warm.nginx.length > 0;
    console.log(
      "                 local      cached     ratio (cached/local)" +
        (withNginx ? "            nginx      cached/nginx" : ""),
    );
    const row = (label: string, key: keyof WarmSample, digits: number, note: string) => {
      const lv = median(warm.local.map((s) => s[key]));
      const cv = median(warm.cached.map((s) => s[key]));
      const nv = withNginx ? median(warm.nginx.map((s) => s[key])) : NaN;
      console.log(
        `${label.padEnd(16)} ${lv.toFixed(digits).padStart(9)}  ${cv.toFixed(digits).padStart(9)}  ${
          (cv / lv).toFixed(2)
        }x  ${note.padEnd(28)}` +
          (withNginx ? `  ${nv.toFixed(digits).padStart(9)}  ${(cv / nv).toFixed(2)}x` : ""),
      );
    };
    row(`${size / MiB} MiB MB/s`, "mbps", 0, "target ~1.00x (curl-bound)");
    row(`CPU s / ${size / MiB} MiB`, "cpu", 2, "target ~1.00x");
    row("50 ranges s", "ranges", 2, "target ~1.00x");
    row("4 KiB req/s", "rps", 0, "target ~1.00x");
    console.log(
      `  origin requests during the warm phase: ${warm.originRequests} (revalidation every 3600 s: 0 expected)`,
    );
    console.log(`\ntotal ${((performance.now() - started) / 1000).toFixed(0)} s`);
  } finally {
    await nginx?.stop();
    await Deno.remove(dir, { recursive: true });
  }
}

function originUrl(origin: Origin, file: string): string {
  return new URL(`http://127.0.0.1:${origin.port}/${file}`).href;
}

/** The path pypxe serves an origin file under (`remote/<key16>/<name>`). */
function servedUrl(pypxePort: number, origin: Origin, file: string): string {
  return `http://127.0.0.1:${pypxePort}/${remoteName(originUrl(origin, file))}`;
}

/** MB/s of `bytes` in the median of `secs`. */
function mbps(bytes: number, secs: number[]): string {
  return (bytes / 1e6 / median(secs)).toFixed(0);
}

// ---------- servers ----------

async function startNginx(
  dir: string,
  www: string,
  origins: Origin[],
  refPort: number,
  rate: string,
): Promise<Daemon> {
  const conf = `${dir}/nginx.conf`;
  const block = (o: Origin) => `
  server {
    listen 127.0.0.1:${o.port};
    root ${www};
    access_log ${o.log} origin;
    ${o.name === "throttled" ? `limit_rate ${rate};` : ""}
  }`;
  await Deno.writeTextFile(
    conf,
    `daemon off;
master_process off;
worker_processes 1;
pid ${dir}/nginx.pid;
error_log ${dir}/nginx-error.log warn;
events { worker_connections 1024; }
http {
  log_format origin '$request_method $uri $status $body_bytes_sent "$http_range"';
  sendfile on;
  tcp_nopush on;
  keepalive_requests 1000000;
  default_type application/octet-stream;
  client_body_temp_path ${dir}/body;
  proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi;
  scgi_temp_path ${dir}/scgi;
${origins.map(block).join("\n")}
  server {
    listen 127.0.0.1:${refPort};
    root ${www};
    access_log off;
  }
}
`,
  );
  for (const o of origins) await Deno.writeTextFile(o.log, "");
  return await startDaemon([findTool("nginx") ?? "nginx", "-c", conf, "-p", dir], {
    port: refPort,
    name: "nginx",
  });
}

interface Pypxe {
  proc: PypxeProcess;
  port: number;
  pid: number;
  cacheDir: string;
}

/** pypxe with HTTP only on 127.0.0.1, over the bench's netboot tree, caching into `cacheDir` (created). */
async function startBenchPypxe(ctx: Ctx, cacheDir: string): Promise<Pypxe> {
  await Deno.mkdir(cacheDir, { recursive: true });
  const port = freeTcpPort();
  const proc = await startPypxe([
    "--no-tftp",
    "--http",
    "--http-server-ip",
    "127.0.0.1",
    "--http-port",
    String(port),
    "--netboot-dir",
    ctx.netboot,
    "--cache-dir",
    cacheDir,
    "--no-status",
  ]);
  return { proc, port, pid: proc.child.pid, cacheDir };
}

async function stopBenchPypxe(p: Pypxe): Promise<void> {
  const code = await p.proc.stop();
  if (code !== 0) console.error(`pypxe exited with ${code}:\n${p.proc.lines.slice(-20).join("\n")}`);
  await Deno.remove(p.cacheDir, { recursive: true });
}

/** utime + stime of `pid` in seconds. */
async function cpuSeconds(pid: number): Promise<number> {
  const stat = await Deno.readTextFile(`/proc/${pid}/stat`);
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(fields[11]) + Number(fields[12])) / 100; // CLK_TCK is 100 on Linux
}

/** GET requests for `file` in the origin's access log so far. */
async function originGets(origin: Origin, file: string): Promise<number> {
  const text = await Deno.readTextFile(origin.log);
  return text.split("\n").filter((l) => l.startsWith(`GET /${file} `)).length;
}

/** Lines of the origin's access log so far. */
async function originLines(origin: Origin): Promise<number> {
  return (await Deno.readTextFile(origin.log)).split("\n").filter((l) => l !== "").length;
}

// ---------- clients ----------

interface Fetched {
  /** curl's time_total, s. */
  total: number;
  /** curl's time_starttransfer, s. */
  ttfb: number;
  /** From spawning curl to its exit, s. */
  wall: number;
}

/** One curl GET of `url` to `out` (default /dev/null); checks the status and the byte count. */
async function fetchOnce(url: string, size: number, out = "/dev/null"): Promise<Fetched> {
  const r = await run([
    "curl",
    "-sS",
    "-o",
    out,
    "-w",
    "%{http_code} %{size_download} %{time_total} %{time_starttransfer}",
    url,
  ], { timeoutMs: CLIENT_TIMEOUT_MS });
  const [status, bytes, total, ttfb] = r.stdout.trim().split(" ").map(Number);
  if (r.code !== 0 || status !== 200 || bytes !== size) {
    throw new Error(`curl ${url}: exit ${r.code} status ${status} ${bytes} bytes ${r.stderr.trim()}`);
  }
  return { total, ttfb, wall: r.ms / 1000 };
}

interface ColdResult {
  direct: number[];
  cold: number[];
  coldWall: number[];
  coldTtfb: number[];
  coldCpu: number[];
  many: number[];
  manyFastest: number[];
  manyCpu: number[];
  gets: number[];
}

async function coldPhase(
  ctx: Ctx,
  origin: Origin,
  runs: number,
  manyRuns: number,
  clients: number,
): Promise<ColdResult> {
  const r: ColdResult = {
    direct: [],
    cold: [],
    coldWall: [],
    coldTtfb: [],
    coldCpu: [],
    many: [],
    manyFastest: [],
    manyCpu: [],
    gets: [],
  };
  const size = ctx.size;
  for (let i = 0; i < runs; i++) {
    const steps: (() => Promise<void>)[] = [
      async () => {
        const f = await fetchOnce(originUrl(origin, "big.iso"), size);
        r.direct.push(f.total);
        console.log(`${origin.name} run ${i + 1} direct       ${f.total.toFixed(2)} s`);
      },
      async () => {
        const p = await startBenchPypxe(ctx, `${ctx.dir}/cache-${origin.name}-${i}-one`);
        try {
          const gets0 = await originGets(origin, "big.iso");
          const cpu0 = await cpuSeconds(p.pid);
          // the first run keeps the bytes to compare them with the origin's file
          const out = i === 0 ? `${ctx.dir}/cold.out` : "/dev/null";
          const f = await fetchOnce(servedUrl(p.port, origin, "big.iso"), size, out);
          r.coldCpu.push(await cpuSeconds(p.pid) - cpu0);
          if (i === 0) {
            await sameBytes(`${ctx.www}/big.iso`, out);
            await Deno.remove(out);
          }
          r.cold.push(f.total);
          r.coldWall.push(f.wall);
          r.coldTtfb.push(f.ttfb);
          const gets = await settledGets(origin, gets0);
          r.gets.push(gets);
          console.log(
            `${origin.name} run ${i + 1} cold 1       ${f.total.toFixed(2)} s (wall ${
              f.wall.toFixed(2)
            } s, first byte ${(f.ttfb * 1000).toFixed(0)} ms, origin GETs ${gets})`,
          );
        } finally {
          await stopBenchPypxe(p);
        }
      },
      async () => {
        if (i >= manyRuns) return;
        const p = await startBenchPypxe(ctx, `${ctx.dir}/cache-${origin.name}-${i}-many`);
        try {
          const gets0 = await originGets(origin, "big.iso");
          const cpu0 = await cpuSeconds(p.pid);
          const url = servedUrl(p.port, origin, "big.iso");
          const t0 = performance.now();
          const all = await Promise.all(Array.from({ length: clients }, () => fetchOnce(url, size)));
          const wall = (performance.now() - t0) / 1000;
          r.manyCpu.push(await cpuSeconds(p.pid) - cpu0);
          r.many.push(wall);
          r.manyFastest.push(Math.min(...all.map((f) => f.total)));
          const gets = await settledGets(origin, gets0);
          r.gets.push(gets);
          console.log(
            `${origin.name} run ${i + 1} cold ${clients}      ${wall.toFixed(2)} s slowest (curl totals ${
              Math.min(...all.map((f) => f.total)).toFixed(2)
            }..${Math.max(...all.map((f) => f.total)).toFixed(2)} s, origin GETs ${gets})`,
          );
        } finally {
          await stopBenchPypxe(p);
        }
      },
    ];
    for (const step of i % 2 === 0 ? steps : [...steps].reverse()) await step();
  }
  return r;
}

/** The origin's GETs for big.iso since `before`, once its access log stopped growing (at most 2 s). */
async function settledGets(origin: Origin, before: number): Promise<number> {
  let last = -1;
  for (let i = 0; i < 20; i++) {
    const n = await originGets(origin, "big.iso");
    if (n === last && n > before) return n - before;
    last = n;
    await new Promise((r) => setTimeout(r, 100));
  }
  return last - before;
}

async function sameBytes(a: string, b: string): Promise<void> {
  const r = await run(["cmp", "-s", a, b], { timeoutMs: 60_000 });
  if (r.code !== 0) throw new Error(`cold download differs from the origin's file (cmp exit ${r.code})`);
}

// ---------- warm ----------

interface WarmSample {
  mbps: number;
  cpu: number;
  ranges: number;
  rps: number;
}

interface WarmPeer {
  name: "local" | "cached" | "nginx";
  base: string;
  big: string;
  small: string;
  pid: number;
}

async function warmPhase(
  ctx: Ctx,
  rounds: number,
  seconds: number,
  connections: number,
  withNginx: boolean,
): Promise<{ local: WarmSample[]; cached: WarmSample[]; nginx: WarmSample[]; originRequests: number }> {
  const origin = ctx.origins.find((o) => o.name === "loopback")!;
  const p = await startBenchPypxe(ctx, `${ctx.dir}/cache-warm`);
  try {
    const base = `http://127.0.0.1:${p.port}`;
    const cachedBig = `/${remoteName(originUrl(origin, "big.iso"))}`;
    const cachedSmall = `/${remoteName(originUrl(origin, "small.efi"))}`;
    // warm the cache: one download of each (complete before the table starts)
    await fetchOnce(`${base}${cachedBig}`, ctx.size);
    await fetchOnce(`${base}${cachedSmall}`, 4096);
    await waitComplete(p.cacheDir, ctx.size);
    const lines0 = await originLines(origin);
    const peers: WarmPeer[] = [
      { name: "local", base, big: "/big.iso", small: "/small.efi", pid: p.pid },
      { name: "cached", base, big: cachedBig, small: cachedSmall, pid: p.pid },
    ];
    if (withNginx) {
      peers.push({
        name: "nginx",
        base: `http://127.0.0.1:${ctx.refPort}`,
        big: "/big.iso",
        small: "/small.efi",
        pid: ctx.nginx.pid,
      });
    }
    const out = { local: [] as WarmSample[], cached: [] as WarmSample[], nginx: [] as WarmSample[] };
    for (let round = 0; round < rounds; round++) {
      for (const peer of round % 2 === 0 ? peers : [...peers].reverse()) {
        const cpu0 = await cpuSeconds(peer.pid);
        const f = await fetchOnce(`${peer.base}${peer.big}`, ctx.size);
        const cpu = await cpuSeconds(peer.pid) - cpu0;
        const ranges = await parallelRanges(`${peer.base}${peer.big}`, ctx.size, 50, 4 * MiB);
        const rps = await wrk(`${peer.base}${peer.small}`, seconds, connections);
        const s: WarmSample = { mbps: ctx.size / 1e6 / f.total, cpu, ranges, rps };
        out[peer.name].push(s);
        console.log(
          `warm round ${round + 1} ${peer.name.padEnd(6)} ${ctx.size / MiB} MiB ${
            s.mbps.toFixed(0)
          } MB/s cpu ${cpu.toFixed(2)} s | 50x4MiB ranges ${ranges.toFixed(2)} s | 4 KiB ${
            rps.toFixed(0)
          } req/s`,
        );
      }
    }
    return { ...out, originRequests: await originLines(origin) - lines0 };
  } finally {
    await stopBenchPypxe(p);
  }
}

/** Waits (at most 10 s) until the cache dir holds `<64 hex>` of `size` bytes: the download was renamed. */
async function waitComplete(dir: string, size: number): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (Date.now() < deadline) {
    for await (const e of Deno.readDir(dir)) {
      if (e.isFile && /^[0-9a-f]{64}$/.test(e.name) && (await Deno.stat(`${dir}/${e.name}`)).size === size) {
        return;
      }
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`no complete ${size}-byte file in ${dir}`);
}

async function parallelRanges(url: string, size: number, count: number, length: number): Promise<number> {
  const step = Math.floor((size - length) / (count - 1));
  const t0 = performance.now();
  const outs = await Promise.all(
    Array.from({ length: count }, async (_, i) => {
      const start = i * step;
      const r = await run([
        "curl",
        "-sS",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code} %{size_download}",
        "-r",
        `${start}-${start + length - 1}`,
        url,
      ], { timeoutMs: CLIENT_TIMEOUT_MS, check: true });
      return r.stdout;
    }),
  );
  const secs = (performance.now() - t0) / 1000;
  for (const out of outs) if (out !== `206 ${length}`) throw new Error(`${url}: range answer ${out}`);
  return secs;
}

async function wrk(url: string, seconds: number, connections: number): Promise<number> {
  const r = await run(["wrk", "-t1", `-c${connections}`, `-d${seconds}s`, url], {
    timeoutMs: seconds * 1000 + 30_000,
    check: true,
  });
  const m = /Requests\/sec:\s+([\d.]+)/.exec(r.stdout);
  if (m === null) throw new Error(`wrk output: ${r.stdout}`);
  if (/Non-2xx|Socket errors/.test(r.stdout)) throw new Error(`${url}: wrk saw errors: ${r.stdout}`);
  return Number(m[1]);
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}
