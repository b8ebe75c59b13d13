/**
 * Hostile load (issue 18): pypxe runs as a subprocess in a network namespace with a low open-file limit
 * (`ulimit -n 4096`) and full DHCP, TFTP, HTTP and NBD on one segment. A flood process on the segment
 * (tests/helpers/flood.ts, its own limit raised) opens tens of thousands of connections that never finish
 * their request head or NBD handshake. During the flood a real HTTP GET, TFTP transfer, DHCP DORA and NBD
 * read must succeed, the process must live, its log must stay small, and short header/handshake timeouts
 * must close the half-open connections.
 *
 * Needs root, `ip netns`, curl, busybox (udhcpc) and nbdcopy; skipped with the reason otherwise
 * (`requires`, tests/helpers/tools.ts), unless PYPXE_REQUIRE_E2E=1 (then the reason fails the test).
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { type FloodOptions, type FloodProcess, type FloodStats, startFlood } from "../helpers/flood.ts";
import { sha256, sha256File } from "../helpers/hash.ts";
import { netnsAvailable, Segment } from "../helpers/netns.ts";
import { run } from "../helpers/run.ts";
import { type PypxeProcess, runPypxeOnce, startPypxe } from "../helpers/servers.ts";
import { requires } from "../helpers/tools.ts";

const unavailable = netnsAvailable(["curl", "busybox", "nbdcopy", "bash"]);

/** pypxe's open-file limit: low, so a 20,000-connection flood is far beyond it. */
const PYPXE_FILE_LIMIT = 4096;
/** Log lines pypxe may write while it is flooded. */
const MAX_FLOOD_LOG_LINES = 300;
const BLOB_SIZE = 256 * 1024;
const DISK_SIZE = 1 << 20;

/** A segment with pypxe in the server namespace, a flood host and a client host. */
interface Bed {
  seg: Segment;
  pypxe: PypxeProcess;
  serverIp: string;
  /** The address of the host running the legitimate clients. */
  clientIp: string;
  floodNs: string;
  clientNs: string;
  dir: string;
  blobSha: string;
  diskSha: string;
  /** True while the pypxe process runs. */
  alive(): boolean;
  /** Open descriptors of the pypxe process now (null when it is gone). */
  fds(): number | null;
}

function randomBytes(n: number): Uint8Array {
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i += 65536) crypto.getRandomValues(out.subarray(i, Math.min(n, i + 65536)));
  return out;
}

async function withBed(name: string, extraArgs: string[], fn: (bed: Bed) => Promise<void>): Promise<void> {
  const seg = await Segment.create(name);
  let pypxe: PypxeProcess | undefined;
  let dir: string | undefined;
  try {
    dir = await Deno.makeTempDir({ prefix: "pypxe-hostile-" });
    const flood = await seg.addHost(`${seg.subnet}.2`);
    const client = await seg.addHost(`${seg.subnet}.3`);
    // 22,000 connections from one address to one port need more than the default 28,232 source ports
    await run(["sysctl", "-qw", "net.ipv4.ip_local_port_range=1024 65535"], { netns: flood.ns, check: true });
    const blob = randomBytes(BLOB_SIZE);
    const disk = randomBytes(DISK_SIZE);
    await Deno.mkdir(join(dir, "netboot"));
    await Deno.writeFile(join(dir, "netboot", "blob.bin"), blob);
    await Deno.writeFile(join(dir, "disk.img"), disk);
    pypxe = await startPypxe([
      "--dhcp",
      "--interface",
      seg.serverIf,
      "--http",
      "--tftp",
      "--netboot-dir",
      join(dir, "netboot"),
      "--nbd",
      join(dir, "disk.img"),
      ...extraArgs,
    ], {
      prefix: [...seg.inServer(), "sh", "-c", `ulimit -n ${PYPXE_FILE_LIMIT} && exec "$0" "$@"`],
      readyTimeoutMs: 30_000,
    });
    let running = true;
    pypxe.child.status.then(() => (running = false));
    const pid = pypxe.child.pid;
    await fn({
      seg,
      pypxe,
      serverIp: seg.serverIp,
      clientIp: `${seg.subnet}.3`,
      floodNs: flood.ns,
      clientNs: client.ns,
      dir,
      blobSha: sha256(blob),
      diskSha: sha256(disk),
      alive: () => running,
      fds: () => {
        try {
          let n = 0;
          for (const _ of Deno.readDirSync(`/proc/${pid}/fd`)) n++;
          return n;
        } catch {
          return null;
        }
      },
    });
  } catch (err) {
    console.log(`pypxe's last log lines:\n${pypxe?.lines.slice(-30).join("\n")}`);
    throw err;
  } finally {
    await pypxe?.stop("SIGTERM", 10_000);
    await seg.destroy();
    if (dir !== undefined) await Deno.remove(dir, { recursive: true });
  }
}

/** Samples pypxe's descriptor count every 200 ms; `stop()` returns the largest count seen. */
function sampleFds(bed: Bed): { stop(): number } {
  let max = bed.fds() ?? 0;
  const timer = setInterval(() => (max = Math.max(max, bed.fds() ?? 0)), 200);
  return {
    stop() {
      clearInterval(timer);
      return max;
    },
  };
}

/** Runs `cmd` in the client namespace within `timeoutMs`. */
function inClient(bed: Bed, cmd: string[], timeoutMs = 20_000) {
  return run(cmd, { netns: bed.clientNs, timeoutMs });
}

/** A GET of blob.bin with curl; the bytes must match. */
async function httpGet(bed: Bed, out: string): Promise<void> {
  const r = await inClient(bed, [
    "curl",
    "-sS",
    "--max-time",
    "15",
    "-o",
    out,
    `http://${bed.serverIp}/blob.bin`,
  ]);
  assert.equal(r.code, 0, `HTTP GET failed: ${r.stderr}`);
  assert.equal(await sha256File(out), bed.blobSha, "HTTP GET: wrong bytes");
}

/** A TFTP read of blob.bin with curl; the bytes must match. */
async function tftpGet(bed: Bed, out: string): Promise<void> {
  const r = await inClient(bed, [
    "curl",
    "-sS",
    "--max-time",
    "15",
    "--tftp-blksize",
    "1468",
    "-o",
    out,
    `tftp://${bed.serverIp}/blob.bin`,
  ]);
  assert.equal(r.code, 0, `TFTP read failed: ${r.stderr}`);
  assert.equal(await sha256File(out), bed.blobSha, "TFTP read: wrong bytes");
}

/** A DHCP DORA with busybox udhcpc (it quits once bound); resolves with the address it got. */
async function dhcpDora(bed: Bed): Promise<string> {
  const log = join(bed.dir, `udhcpc-${crypto.randomUUID()}.log`);
  const script = join(bed.dir, "udhcpc.sh");
  await Deno.writeTextFile(script, `#!/bin/sh\necho "$1 $ip" >> "$UDHCPC_LOG"\nexit 0\n`);
  await Deno.chmod(script, 0o755);
  const r = await inClient(bed, [
    "env",
    `UDHCPC_LOG=${log}`,
    "busybox",
    "udhcpc",
    "-f",
    "-q",
    "-n",
    "-i",
    "eth0",
    "-s",
    script,
    "-t",
    "5",
    "-T",
    "1",
  ]);
  const text = await Deno.readTextFile(log).catch(() => "");
  const m = /^bound (\S+)$/m.exec(text);
  assert.ok(r.code === 0 && m !== null, `DHCP DORA failed (udhcpc exit ${r.code}): ${text}${r.stderr}`);
  return m[1];
}

/** Reads the whole NBD export with nbdcopy (retrying while `retryForMs` lasts); the bytes must match. */
async function nbdRead(bed: Bed, out: string, retryForMs = 0): Promise<number> {
  const deadline = Date.now() + retryForMs;
  for (let attempt = 1;; attempt++) {
    await Deno.remove(out).catch(() => {});
    const r = await inClient(bed, ["nbdcopy", `nbd://${bed.serverIp}`, out], 15_000);
    if (r.code === 0) {
      assert.equal(await sha256File(out), bed.diskSha, "NBD read: wrong bytes");
      return attempt;
    }
    if (Date.now() >= deadline) assert.fail(`NBD read failed after ${attempt} attempt(s): ${r.stderr}`);
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
}

/** The outcome of one {@linkcode legitRound}: how long each client took (ms) and what failed. */
interface RoundResult {
  readonly round: string;
  readonly ms: Record<string, number>;
  readonly failures: string[];
  readonly detail: Record<string, unknown>;
}

/** One legitimate client of each kind, all at once; never throws: failures are listed. */
async function legitRound(bed: Bed, round: string, nbdRetryMs = 0): Promise<RoundResult> {
  const at = (name: string) => join(bed.dir, `${round}-${name}`);
  const result: RoundResult = { round, ms: {}, failures: [], detail: {} };
  const one = async (name: string, fn: () => Promise<unknown>) => {
    const t0 = performance.now();
    try {
      const value = await fn();
      result.ms[name] = Math.round(performance.now() - t0);
      if (value !== undefined) result.detail[name] = value;
    } catch (err) {
      result.failures.push(`${round} ${name}: ${(err as Error).message.split("\n")[0]}`);
    }
  };
  await Promise.all([
    one("http", () => httpGet(bed, at("http"))),
    one("tftp", () => tftpGet(bed, at("tftp"))),
    one("dhcp", () => dhcpDora(bed)),
    one("nbd", async () => ({ attempts: await nbdRead(bed, at("nbd"), nbdRetryMs) })),
  ]);
  return result;
}

/** pypxe's /metrics, fetched from the client host. */
async function metrics(bed: Bed): Promise<string> {
  const r = await inClient(bed, ["curl", "-sS", "--max-time", "10", `http://${bed.serverIp}/metrics`]);
  assert.equal(r.code, 0, `GET /metrics failed: ${r.stderr}`);
  return r.stdout;
}

function counter(text: string, name: string, service: string): number {
  const m = new RegExp(`^${name}\\{service="${service}"\\} (\\d+)$`, "m").exec(text);
  return m === null ? 0 : Number(m[1]);
}

/**
 * The lines pypxe wrote since `from` that the flood caused: the legitimate clients' own lines (their
 * address, DHCP) are left out, so that only what an attacker can make pypxe write is counted.
 */
function floodLog(bed: Bed, from: number): { all: number; flood: string[] } {
  const lines = bed.pypxe.lines.slice(from);
  const legit = (l: string) => l.includes(`${bed.clientIp}:`) || /\sdhcp\s/.test(l);
  return { all: lines.length, flood: lines.filter((l) => !legit(l)) };
}

function floodOn(bed: Bed, opts: FloodOptions): FloodProcess {
  return startFlood(opts, { prefix: ["ip", "netns", "exec", bed.floodNs] });
}

function report(name: string, data: Record<string, unknown>): void {
  console.log(`hostile ${name}: ${JSON.stringify(data)}`);
}

function brief(s: FloodStats): Record<string, unknown> {
  const { event: _e, errors, ...rest } = s;
  return { ...rest, errors };
}

Deno.test(requires(Deno.build.os === "linux" ? null : "Linux only (ulimit -n in sh)", {
  name: "hostile: the caps are sized from the process's own open-file limit (ulimit -n 4096)",
  fn: async () => {
    const r = await runPypxeOnce(["--check", "--no-tftp", "--http", "--http-port", "18080"], {
      prefix: ["sh", "-c", `ulimit -n ${PYPXE_FILE_LIMIT} && exec "$0" "$@"`],
    });
    // under its own permissions pypxe cannot read /proc/self/limits: it counts the descriptors still
    // free, a few below the limit (stdio, the runtime's own)
    const m = /open files (\d+) free \(counted\): HTTP (\d+) connections, NBD (\d+) connections/.exec(
      r.stdout + r.stderr,
    );
    assert.ok(m !== null, `pypxe --check did not count its open files:\n${r.stdout}${r.stderr}`);
    const free = Number(m[1]);
    assert.ok(free > PYPXE_FILE_LIMIT - 100 && free <= PYPXE_FILE_LIMIT, `counted ${free}`);
    assert.ok(Number(m[2]) + 2 * Number(m[3]) < PYPXE_FILE_LIMIT, "the caps fit in the limit");
  },
}));

Deno.test(requires(unavailable, {
  name: "hostile: 22,000 half-sent HTTP requests; DHCP, TFTP, HTTP and NBD answer, the process lives",
  sanitizeResources: false, // subprocess pipes are drained by the helpers
  sanitizeOps: false,
  fn: () =>
    withBed("hh", [], async (bed) => {
      const linesBefore = bed.pypxe.lines.length;
      const fds = sampleFds(bed);
      const flood = floodOn(bed, {
        host: bed.serverIp,
        port: 80,
        count: 22_000,
        payload: "http",
        concurrency: 256,
        connectTimeoutMs: 3000,
        maxSeconds: 100,
        progressMs: 250,
      });
      let summary: FloodStats | undefined;
      let refused = 0;
      let metricsText = "";
      // GETs one after another from two clients for as long as the flood is connecting
      let connecting = true;
      const gets = { ok: 0, failed: [] as string[] };
      const rounds: RoundResult[] = [];
      const stream = Promise.all([0, 1].map(async (worker) => {
        for (let i = 0; connecting; i++) {
          try {
            await httpGet(bed, join(bed.dir, `stream-${worker}`));
            gets.ok++;
          } catch (err) {
            gets.failed.push(
              `GET ${gets.ok + gets.failed.length + 1}: ${(err as Error).message.split("\n")[0]}`,
            );
          }
        }
      }));
      try {
        await flood.waitFor((s) => s.attempted >= 5000, 30_000);
        rounds.push(await legitRound(bed, "during-connects"));
        const connected = await flood.waitFor((s) => s.doneConnecting, 60_000);
        connecting = false;
        await stream;
        report("http-flood connected", brief(connected));
        report("http-flood GETs while connecting", { ok: gets.ok, failed: gets.failed.length });
        rounds.push(await legitRound(bed, "while-held"));
        metricsText = await metrics(bed);
        refused = counter(metricsText, "pypxe_connections_refused_total", "http");
        const timedOut = counter(metricsText, "pypxe_connections_timed_out_total", "http");
        report("http-flood metrics", { refused, timedOut });
      } finally {
        connecting = false;
        await stream;
        summary = await flood.stop();
      }
      await new Promise((resolve) => setTimeout(resolve, 1000)); // lines about the flood's end
      const maxFds = fds.stop();
      const log = floodLog(bed, linesBefore);
      const floodLines = log.flood;
      report("http-flood summary", {
        ...brief(summary),
        maxFds,
        logLines: log.all,
        floodLogLines: floodLines.length,
      });
      for (const r of rounds) report(`http-flood legit round ${r.round}`, { ...r.ms, ...r.detail });
      assert.ok(bed.alive(), `pypxe died during the flood:\n${floodLines.slice(-20).join("\n")}`);
      assert.ok(summary.attempted >= 22_000, `the flood made only ${summary.attempted} attempts`);
      assert.ok(
        summary.connected >= 20_000,
        `only ${summary.connected} of 22,000 connects completed: ${JSON.stringify(summary.errors)}`,
      );
      assert.ok(
        summary.closed >= summary.connected - PYPXE_FILE_LIMIT,
        `pypxe closed ${summary.closed} of ${summary.connected}: more were held than it has descriptors`,
      );
      assert.ok(
        floodLines.length < MAX_FLOOD_LOG_LINES,
        `${floodLines.length} log lines during the flood; the first ones:\n${
          floodLines.slice(0, 20).join("\n")
        }`,
      );
      assert.ok(refused > 0, `no refused HTTP connection counted in /metrics:\n${metricsText}`);
      assert.deepEqual(rounds.flatMap((r) => r.failures), [], "legitimate clients failed during the flood");
      assert.ok(gets.ok >= 10, `only ${gets.ok} GETs completed while the flood was connecting`);
      assert.deepEqual(
        gets.failed,
        [],
        `${gets.failed.length} of ${gets.ok + gets.failed.length} GETs failed while the flood was connecting`,
      );
      // still serving after the flood
      await httpGet(bed, join(bed.dir, "after-http"));
    }),
}));

Deno.test(requires(unavailable, {
  name:
    "hostile: half-sent HTTP requests are closed after --http-header-timeout, idle keep-alive after --http-idle-timeout",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: () =>
    withBed("ht", [
      "--http-header-timeout",
      "2",
      "--http-idle-timeout",
      "2",
      "--http-max-connections",
      "2000",
    ], async (bed) => {
      const linesBefore = bed.pypxe.lines.length;
      // fewer than the cap: only the header timeout may close them
      const flood = floodOn(bed, {
        host: bed.serverIp,
        port: 80,
        count: 1000,
        payload: "http",
        concurrency: 128,
        maxSeconds: 30,
        progressMs: 250,
        exitWhenAllClosed: true,
      });
      let summary: FloodStats;
      try {
        summary = await Promise.race([
          flood.summary,
          new Promise<never>((_, reject) =>
            setTimeout(() => reject(new Error(`not all closed: ${JSON.stringify(flood.latest())}`)), 25_000)
          ),
        ]);
      } finally {
        summary = await flood.stop();
      }
      report("http-timeout summary", brief(summary));
      assert.equal(
        summary.reason,
        "all-closed",
        `not every half-sent connection was closed: ${JSON.stringify(summary)}`,
      );
      assert.equal(summary.connected, 1000);
      assert.equal(summary.closed, 1000);
      assert.ok(
        summary.heldMs !== null && summary.heldMs.min >= 1500,
        `closed before the 2 s timeout: ${JSON.stringify(summary.heldMs)}`,
      );
      assert.ok(
        summary.heldMs.max <= 2000 + 6000,
        `held far beyond the 2 s timeout: ${JSON.stringify(summary.heldMs)}`,
      );

      // a keep-alive connection: one request answered, then idle until the server closes it
      const idle = await inClient(bed, [
        "bash",
        "-c",
        `exec 3<>/dev/tcp/${bed.serverIp}/80 && printf 'GET /blob.bin HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n' >&3 && ` +
        `t0=$(date +%s%N) && n=$(cat <&3 | wc -c) && echo "$n $(( ($(date +%s%N) - t0) / 1000000 ))"`,
      ], 20_000);
      assert.equal(idle.code, 0, idle.stderr);
      const [bytes, ms] = idle.stdout.trim().split(" ").map(Number);
      report("http-idle", { bytes, ms });
      assert.ok(bytes > BLOB_SIZE, `the keep-alive request was not answered (${bytes} bytes)`);
      assert.ok(
        ms >= 1500 && ms <= 2000 + 6000,
        `idle keep-alive connection closed after ${ms} ms, not ~2 s`,
      );

      const text = await metrics(bed);
      const timedOut = counter(text, "pypxe_connections_timed_out_total", "http");
      report("http-timeout metrics", { timedOut, logLines: bed.pypxe.lines.length - linesBefore });
      assert.ok(
        timedOut >= 1000,
        `pypxe_connections_timed_out_total{service="http"} is ${timedOut}:\n${text}`,
      );
      assert.ok(bed.alive());
      assert.ok(bed.pypxe.lines.length - linesBefore < MAX_FLOOD_LOG_LINES);
    }),
}));

Deno.test(requires(unavailable, {
  name:
    "hostile: 5,000 NBD connections that never handshake are closed after --nbd-handshake-timeout; all services answer",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: () =>
    withBed("hn", ["--nbd-handshake-timeout", "2"], async (bed) => {
      const linesBefore = bed.pypxe.lines.length;
      const fds = sampleFds(bed);
      const flood = floodOn(bed, {
        host: bed.serverIp,
        port: 10809,
        count: 5000,
        payload: "none",
        concurrency: 256,
        connectTimeoutMs: 3000,
        maxSeconds: 60,
        progressMs: 250,
        exitWhenAllClosed: true,
      });
      let summary: FloodStats | undefined;
      let round: RoundResult | undefined;
      try {
        await flood.waitFor((s) => s.attempted >= 2000, 30_000);
        // a connection cap may refuse a newcomer while the flood fills it: the handshake timeout frees it
        round = await legitRound(bed, "nbd-flood", 10_000);
        summary = await Promise.race([
          flood.summary,
          new Promise<never>((_, reject) =>
            setTimeout(() => reject(new Error(`not all closed: ${JSON.stringify(flood.latest())}`)), 40_000)
          ),
        ]);
      } finally {
        summary = await flood.stop();
      }
      await new Promise((resolve) => setTimeout(resolve, 1000));
      const maxFds = fds.stop();
      const text = await metrics(bed);
      const refused = counter(text, "pypxe_connections_refused_total", "nbd");
      const timedOut = counter(text, "pypxe_connections_timed_out_total", "nbd");
      const log = floodLog(bed, linesBefore);
      const floodLines = log.flood;
      report("nbd-flood summary", {
        ...brief(summary),
        maxFds,
        logLines: log.all,
        floodLogLines: floodLines.length,
        refused,
        timedOut,
      });
      if (round) report("nbd-flood legit round", { ...round.ms, ...round.detail });
      assert.ok(bed.alive(), `pypxe died during the NBD flood:\n${floodLines.slice(-20).join("\n")}`);
      assert.deepEqual(round?.failures, [], "legitimate clients failed during the NBD flood");
      assert.equal(
        summary.reason,
        "all-closed",
        `not every NBD connection was closed: ${JSON.stringify(summary)}`,
      );
      assert.ok(summary.connected >= 4500, `only ${summary.connected} NBD connects completed`);
      assert.ok(
        summary.heldMs !== null && summary.heldMs.max <= 2000 + 8000,
        `an NBD connection was held far beyond the 2 s handshake timeout: ${JSON.stringify(summary.heldMs)}`,
      );
      assert.ok(timedOut > 0, `pypxe_connections_timed_out_total{service="nbd"} is 0:\n${text}`);
      assert.ok(refused + timedOut >= summary.connected, `only ${refused} + ${timedOut} counted:\n${text}`);
      assert.ok(
        floodLines.length < MAX_FLOOD_LOG_LINES,
        `${floodLines.length} log lines during the NBD flood; the first ones:\n${
          floodLines.slice(0, 20).join("\n")
        }`,
      );
      await nbdRead(bed, join(bed.dir, "after-nbd"));
    }),
}));
