/**
 * DHCP benchmark: complete DORA exchanges for 2,000 distinct MACs over a veth pair between two network
 * namespaces, 8 and 32 exchanges in flight, against pypxe, dnsmasq (`--no-ping`) and Kea (memfile) when
 * installed. Prints DORA/s, p50/p99 latency and the ratios to pypxe. Needs root and `ip netns`.
 *
 * Usage: deno run -A scripts/bench/dhcp.ts [--macs N] [--inflight 8,32] [--servers pypxe,dnsmasq,kea]
 * Internal mode (run inside the client namespace): `--generate JSON` (the load generator). pypxe's
 * DhcpServer runs alone in the server namespace (spawnService, tests/helpers/servers.ts).
 *
 * `--boot-api` (issue 13): pypxe only, PXE-looking clients, in rounds of `--chunk` (500) MACs, each a warm
 * pass, a pause (`--settle-ms`, 500) and the measured pass over the same MACs, after a round that is not
 * recorded (the JIT's warm-up): (a) pypxe without `--boot-api`; another pypxe with `--boot-api` at a local
 * fake API answering every MAC in `--api-ms` (20), whose even rounds are (b) (warm cache) and odd rounds
 * (c) (b plus one new MAC whose answer takes `--slow-ms`, 1500, pending during the whole measured pass).
 * Prints DORA/s, p50/p99, pypxe's CPU per DORA, the boot API requests of the measured passes, and the
 * ratios (b)/(a) and (c)/(b). Other options: `--macs` (2000 per pypxe run), `--inflight` (8,32),
 * `--warm-inflight` (32), `--repeat` (3), `--boot-api-timeout` (2000), `--pin SERVER:CLIENT` (CPU lists for
 * taskset, default 1:0 with 2 CPUs or more; `none`). pypxe runs as
 * scripts/bench/dhcp_serve.ts, the API as scripts/bench/boot_api_fake.ts, both in the server namespace
 * (the API on its 127.0.0.1). scripts/bench/dhcp_responder_cpu.ts measures the same without sockets.
 * @module
 */
import { parseArgs } from "node:util";
import { getIp, MessageType, messageType, Opt, setOption } from "../../src/dhcp/options.ts";
import { createDhcpPacket, decodeDhcp, encodeDhcp } from "../../src/dhcp/packet.ts";
import { createPair } from "../../tests/helpers/netns.ts";
import { run } from "../../tests/helpers/run.ts";
import { type Daemon, spawnService, startDaemon } from "../../tests/helpers/servers.ts";
import { findTool } from "../../tests/helpers/tools.ts";
import type { PxeConfig } from "../../src/config.ts";
import { parseBootApiBody } from "../../src/machines/boot_api.ts";
import type { FakeBootApiOptions } from "../../tests/helpers/boot_api_server.ts";
import type { DhcpServeSpec } from "./dhcp_serve.ts";

const SELF = new URL(import.meta.url).pathname;
const SERVER_IP = "10.214.0.1";
const CLIENT_IP = "10.214.0.2";
const POOL = ["10.214.1.0", "10.214.40.255"];
const MASK = "255.255.0.0";

/** One load run's result. */
export interface DoraResult {
  server: string;
  inflight: number;
  done: number;
  failed: number;
  seconds: number;
  perSecond: number;
  p50: number;
  p99: number;
}

// ---------- load generator (client namespace) ----------

interface GenerateOptions {
  macs: number;
  inflight: number;
  seed: number;
  timeoutMs: number;
  /**
   * Clients look like a BIOS PXE ROM (options 60 `PXEClient:Arch:00000:UNDI:002001`, 93, 94, 97 in the
   * DISCOVER and the REQUEST), so per-machine boot and the boot API see boot clients.
   */
  pxe?: boolean;
  /** First an unmeasured pass over the same MACs with this many in flight (fills the boot API cache). */
  warmInflight?: number;
  /**
   * With `warmInflight`: the MACs go in rounds of this many, each a warm pass then the measured pass over
   * them, which bounds how old a cached answer is when used, whatever `macs`; default all in one round.
   */
  chunk?: number;
  /**
   * With `warmInflight`: a pause between the warm pass and the measured pass (ms), so that what the warm
   * pass left to do (collecting its garbage, saving the leases) is not measured; default 0.
   */
  settleMs?: number;
  /** With `warmInflight`: first a round that is not recorded, over MACs `macs`..`macs` + `chunk` - 1. */
  jitRound?: boolean;
  /**
   * With `warmInflight`: in the measured pass of every round (`all`) or of every second round (`odd`),
   * one more client (MAC index `macs` + `chunk` + round, in no warm pass) starts with the others, beside the
   * `inflight` workers, with `slowTimeoutMs` per packet; its latency is reported apart and the pass waits
   * for it.
   */
  slowRounds?: "all" | "odd";
  slowTimeoutMs?: number;
  /** The server's pid: each pass reports the CPU time it used (from /proc, all its threads). */
  cpuPid?: number;
}

/** One pass of the load generator. */
export interface PassResult {
  done: number;
  failed: number;
  /** From the first DISCOVER to the last ACK, the slow client left out. */
  seconds: number;
  /** CPU time (user + system) the server used until the last client but the slow one was done. */
  cpuMs?: number;
  /** Epoch ms; the pass ends when every client, the slow one included, is done. */
  startedAt: number;
  endedAt: number;
}

/** A warm pass and the measured pass over the same MACs. */
export interface RoundResult {
  warm: PassResult;
  measured: PassResult & { latencies: number[] };
  /** The slow client's DORA latency (ms), null when it failed; absent when the round had none. */
  slowMs?: number | null;
}

/** User + system CPU time of process `pid` so far, in ms (clock ticks of 10 ms); NaN when unreadable. */
function cpuTimeMs(pid: number | undefined): number {
  if (pid === undefined) return NaN;
  try {
    const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    // fields[0] is field 3 (state): utime and stime are fields 14 and 15
    return (Number(fields[11]) + Number(fields[12])) * 10;
  } catch {
    return NaN;
  }
}

/** What the generator prints: the measured clients' numbers, and with `warmInflight` each round. */
export interface GenerateResult extends Omit<DoraResult, "server"> {
  rounds?: RoundResult[];
}

/** The locally administered MAC of client `i` of run `seed`. */
function macOf(seed: number, i: number): string {
  const hex = (n: number) => (n & 255).toString(16).padStart(2, "0");
  return `02:${hex(seed)}:00:${hex(i >> 16)}:${hex(i >> 8)}:${hex(i)}`;
}

/** Option 97 of client `i`: type 0 and 16 bytes. */
function uuidOf(seed: number, i: number): Uint8Array {
  const b = new Uint8Array(17);
  b.set([0, 0x5e, 0xed, seed & 255, (i >> 16) & 255, (i >> 8) & 255, i & 255], 0);
  return b;
}

async function generate(opts: GenerateOptions): Promise<GenerateResult> {
  const sock = Deno.listenDatagram({ transport: "udp", hostname: "0.0.0.0", port: 68, reuseAddress: true });
  const waiting = new Map<number, (pkt: ReturnType<typeof decodeDhcp>) => void>();
  const loop = (async () => {
    const buf = new Uint8Array(2048);
    for (;;) {
      let data: Uint8Array;
      try {
        [data] = await sock.receive(buf);
      } catch {
        return;
      }
      try {
        const pkt = decodeDhcp(data);
        waiting.get(pkt.xid)?.(pkt);
      } catch {
        // not a DHCP reply: ignore
      }
    }
  })();
  let xid = (opts.seed * 7919) >>> 0;
  const ask = (pkt: ReturnType<typeof createDhcpPacket>, want: number, timeoutMs: number) =>
    new Promise<ReturnType<typeof decodeDhcp> | null>((resolve) => {
      const timer = setTimeout(() => {
        waiting.delete(pkt.xid);
        resolve(null);
      }, timeoutMs);
      waiting.set(pkt.xid, (reply) => {
        if (messageType(reply) !== want) return;
        clearTimeout(timer);
        waiting.delete(pkt.xid);
        resolve(reply);
      });
      sock.send(encodeDhcp(pkt), { transport: "udp", hostname: "255.255.255.255", port: 67 }).catch(() => {});
    });
  const pxeOptions = (pkt: ReturnType<typeof createDhcpPacket>, i: number) => {
    if (!opts.pxe) return;
    setOption(pkt, Opt.MAX_MESSAGE_SIZE, 1260);
    setOption(pkt, Opt.CLIENT_ARCH, [0]);
    setOption(pkt, Opt.CLIENT_NDI, new Uint8Array([1, 2, 1]));
    setOption(pkt, Opt.CLIENT_UUID, uuidOf(opts.seed, i));
    setOption(pkt, Opt.VENDOR_CLASS, "PXEClient:Arch:00000:UNDI:002001");
  };
  const params = opts.pxe
    ? [1, 2, 3, 5, 6, 11, 12, 13, 15, 16, 17, 18, 43, 54, 60, 66, 67, 128, 129, 130, 131, 132, 133, 134, 135]
    : [1, 3, 6, 15, 28, 51, 54, 58, 59];
  /** One DORA (3 attempts); its latency in ms, or null when it failed. */
  const dora = async (i: number, timeoutMs: number): Promise<number | null> => {
    const mac = macOf(opts.seed, i);
    const t0 = performance.now();
    for (let attempt = 0; attempt < 3; attempt++) {
      const discover = createDhcpPacket({ mac, xid: xid = (xid + 1) >>> 0, flags: 0x8000 });
      setOption(discover, Opt.MESSAGE_TYPE, MessageType.DISCOVER);
      setOption(discover, Opt.PARAMETER_LIST, params);
      pxeOptions(discover, i);
      const offer = await ask(discover, MessageType.OFFER, timeoutMs);
      if (!offer) continue;
      const request = createDhcpPacket({ mac, xid: discover.xid, flags: 0x8000 });
      setOption(request, Opt.MESSAGE_TYPE, MessageType.REQUEST);
      setOption(request, Opt.REQUESTED_IP, offer.yiaddr);
      setOption(request, Opt.SERVER_ID, getIp(offer, Opt.SERVER_ID) ?? SERVER_IP);
      setOption(request, Opt.PARAMETER_LIST, params);
      pxeOptions(request, i);
      const ack = await ask(request, MessageType.ACK, timeoutMs);
      if (!ack) continue;
      return performance.now() - t0;
    }
    return null;
  };
  /** MACs from..to-1 with `inflight` workers, plus client `slow` when given. */
  const pass = async (from: number, to: number, inflight: number, slow?: number) => {
    const latencies: number[] = [];
    let failed = 0;
    let next = from;
    let lastDone = performance.now();
    const cpu0 = cpuTimeMs(opts.cpuPid);
    const startedAt = Date.now();
    const start = performance.now();
    const slowDora = slow === undefined ? null : dora(slow, opts.slowTimeoutMs ?? opts.timeoutMs);
    await Promise.all(
      Array.from({ length: inflight }, async () => {
        while (next < to) {
          const ms = await dora(next++, opts.timeoutMs);
          if (ms === null) failed++;
          else latencies.push(ms);
          lastDone = performance.now();
        }
      }),
    );
    // until the others are done: not the wait for the slow client, when the server may write its leases
    const cpuMs = cpuTimeMs(opts.cpuPid) - cpu0;
    const slowMs = slowDora === null ? undefined : await slowDora;
    const result = {
      done: latencies.length,
      failed,
      seconds: (lastDone - start) / 1000,
      ...(opts.cpuPid === undefined ? {} : { cpuMs }),
      startedAt,
      endedAt: Date.now(),
      latencies,
    };
    return { result, slowMs };
  };
  const rounds: RoundResult[] = [];
  const all: number[] = [];
  let failed = 0;
  let seconds = 0;
  if (opts.warmInflight === undefined) {
    const { result } = await pass(0, opts.macs, opts.inflight);
    all.push(...result.latencies);
    failed = result.failed;
    seconds = result.seconds;
  } else {
    const chunk = Math.max(1, Math.min(opts.macs, opts.chunk ?? opts.macs));
    if (opts.jitRound) {
      // not recorded: MACs macs..macs+chunk-1, so that the JIT has compiled both paths before measuring
      await pass(opts.macs, opts.macs + chunk, opts.warmInflight);
      await new Promise((resolve) => setTimeout(resolve, Math.min(10_000, opts.settleMs ?? 0)));
      await pass(opts.macs, opts.macs + chunk, opts.inflight);
    }
    // bounded: ceil(macs / chunk) rounds
    for (let from = 0, round = 0; from < opts.macs; from += chunk, round++) {
      const to = Math.min(opts.macs, from + chunk);
      const { result: { latencies: _, ...warm } } = await pass(from, to, opts.warmInflight);
      await new Promise((resolve) => setTimeout(resolve, Math.min(10_000, opts.settleMs ?? 0)));
      const slowHere = opts.slowRounds === "all" || (opts.slowRounds === "odd" && round % 2 === 1);
      const { result: measured, slowMs } = await pass(
        from,
        to,
        opts.inflight,
        slowHere ? opts.macs + chunk + round : undefined,
      );
      rounds.push({ warm, measured, ...(slowHere ? { slowMs: slowMs ?? null } : {}) });
      all.push(...measured.latencies);
      failed += measured.failed;
      seconds += measured.seconds;
    }
  }
  sock.close();
  await loop;
  return {
    inflight: opts.inflight,
    ...summarize(all, failed, seconds),
    ...(rounds.length ? { rounds } : {}),
  };
}

/** done, failed, seconds, DORA/s, p50 and p99 of some latencies (ms). */
function summarize(
  latencies: number[],
  failed: number,
  seconds: number,
): Omit<DoraResult, "server" | "inflight"> {
  const sorted = [...latencies].sort((a, b) => a - b);
  const q = (p: number) => sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))] ?? NaN;
  return {
    done: sorted.length,
    failed,
    seconds,
    perSecond: sorted.length / seconds,
    p50: q(0.5),
    p99: q(0.99),
  };
}

// ---------- orchestration ----------

/** pypxe's DHCP settings in the server namespace, its leases in `dir`. */
function pypxeConfig(dir: string): Partial<PxeConfig> {
  return {
    DHCP_SERVER_IP: SERVER_IP,
    DHCP_FILESERVER: SERVER_IP,
    DHCP_ROUTER: SERVER_IP,
    DHCP_OFFER_BEGIN: POOL[0],
    DHCP_OFFER_END: POOL[1],
    DHCP_SUBNET: MASK,
    DHCP_BROADCAST: "10.214.255.255",
    DHCP_DNS: SERVER_IP,
    DHCP_LEASE_TIME: 3600,
    LEASES_FILE: `${dir}/pypxe-leases.json`,
  };
}

/** `deno run` flags for pypxe: `--v8-flags=$PYPXE_BENCH_V8` when set (profiling). */
function v8Flags(): string[] {
  const v8 = Deno.env.get("PYPXE_BENCH_V8");
  return v8 ? [`--v8-flags=${v8}`] : [];
}

async function startServer(kind: string, netns: string, dir: string): Promise<Daemon> {
  await Deno.remove(dir, { recursive: true }).catch(() => {});
  await Deno.mkdir(dir, { recursive: true });
  if (kind === "pypxe") {
    return await spawnService({ service: "dhcp", config: pypxeConfig(dir) }, { netns, denoFlags: v8Flags() });
  }
  // servers without a ready line get a moment to bind
  const opts = (ready?: string) => ({
    netns,
    ready,
    settleMs: ready === undefined ? 1500 : undefined,
    readyTimeoutMs: 15_000,
  });
  if (kind === "dnsmasq") {
    return await startDaemon([
      "dnsmasq",
      "-d",
      "--conf-file=/dev/null",
      "--port=0",
      "--no-ping",
      "--interface=vs",
      "--bind-interfaces",
      `--dhcp-range=${POOL[0]},${POOL[1]},${MASK},1h`,
      "--dhcp-lease-max=100000",
      "--dhcp-authoritative",
      `--dhcp-leasefile=${dir}/dnsmasq.leases`,
      `--pid-file=${dir}/dnsmasq.pid`,
      "--log-facility=/dev/null",
    ], opts("started"));
  }
  const conf = {
    Dhcp4: {
      "interfaces-config": { interfaces: ["vs"], "dhcp-socket-type": "raw" },
      "lease-database": { type: "memfile", persist: true, name: `${dir}/kea-leases4.csv`, "lfc-interval": 0 },
      "valid-lifetime": 3600,
      subnet4: [{
        id: 1,
        subnet: "10.214.0.0/16",
        pools: [{ pool: `${POOL[0]} - ${POOL[1]}` }],
        "option-data": [{ name: "routers", data: SERVER_IP }],
      }],
      loggers: [{ name: "kea-dhcp4", output_options: [{ output: `${dir}/kea.log` }], severity: "WARN" }],
    },
  };
  await Deno.writeTextFile(`${dir}/kea.json`, JSON.stringify(conf));
  return await startDaemon([
    "env",
    `KEA_PIDFILE_DIR=${dir}`,
    `KEA_LOCKFILE_DIR=${dir}`,
    "kea-dhcp4",
    "-c",
    `${dir}/kea.json`,
  ], opts());
}

async function runGenerator(
  netns: string,
  opts: GenerateOptions,
  timeoutMs = 600_000,
  prefix: readonly string[] = [],
): Promise<GenerateResult> {
  const out = await run([...prefix, Deno.execPath(), "run", "-A", SELF, "--generate", JSON.stringify(opts)], {
    netns,
    timeoutMs,
  });
  if (out.code !== 0) throw new Error(`generator failed: ${out.stderr}`);
  return JSON.parse(out.stdout.trim().split("\n").at(-1)!);
}

/** Runs the benchmark and returns every result (also printed as a table). */
export async function runDhcpBench(
  opts: { macs?: number; inflight?: number[]; servers?: string[] } = {},
): Promise<DoraResult[]> {
  const macs = opts.macs ?? 2000;
  const inflights = opts.inflight ?? [8, 32];
  const wanted = opts.servers ?? ["pypxe", "dnsmasq", "kea"];
  const servers = wanted.filter((s) => {
    const ok = s === "pypxe" || findTool(s === "kea" ? "kea-dhcp4" : s) !== null;
    if (!ok) console.log(`${s}: not installed, skipped`);
    return ok;
  });
  const tmp = await Deno.makeTempDir({ prefix: "pypxe-bench-dhcp-" });
  const results: DoraResult[] = [];
  // the server's interface is `vs` (dnsmasq and Kea bind it); 255.255.255.255 leaves the client by `vc`
  const pair = await createPair({
    tag: "bench",
    serverIp: SERVER_IP,
    clientIp: CLIENT_IP,
    prefixLength: 16,
    clientDefaultRoute: true,
  });
  const [ns, nc] = [pair.server, pair.client];
  try {
    let seed = 1;
    for (const inflight of inflights) {
      for (const kind of servers) {
        const server = await startServer(kind, ns, `${tmp}/${kind}`);
        try {
          const r = await runGenerator(nc, { macs, inflight, seed: seed++, timeoutMs: 1000 });
          results.push({ server: kind, ...r });
          console.log(
            `${kind.padEnd(8)} inflight ${String(inflight).padStart(2)}: ${
              r.perSecond.toFixed(0).padStart(6)
            } DORA/s  ` +
              `p50 ${r.p50.toFixed(2)} ms  p99 ${r.p99.toFixed(2)} ms  (${r.done} ok, ${r.failed} failed, ${
                r.seconds.toFixed(2)
              } s)`,
          );
        } finally {
          await server.stop();
        }
      }
    }
    for (const inflight of inflights) {
      const ours = results.find((r) => r.server === "pypxe" && r.inflight === inflight);
      if (!ours) continue;
      for (const r of results.filter((r) => r.inflight === inflight && r.server !== "pypxe")) {
        console.log(
          `inflight ${inflight}: pypxe/${r.server} = ${(ours.perSecond / r.perSecond).toFixed(2)}x DORA/s, ` +
            `p99 ${ours.p99.toFixed(2)} vs ${r.p99.toFixed(2)} ms`,
        );
      }
    }
  } finally {
    await pair.destroy();
    await Deno.remove(tmp, { recursive: true }).catch(() => {});
  }
  return results;
}

// ---------- --boot-api: pypxe with and without its boot API ----------

const SERVE = new URL("./dhcp_serve.ts", import.meta.url).pathname;
const FAKE_API = new URL("./boot_api_fake.ts", import.meta.url).pathname;

/** The boot API client's answer cache lifetime (src/machines/boot_api.ts, `cacheMs`; no flag sets it). */
const BOOT_API_CACHE_MS = 5000;

/** What the fake API answers every MAC (relative URLs resolve against the API URL, as in pixiecore). */
const PROFILE_ANSWER = {
  kernel: "/bench/vmlinuz",
  initrd: ["/bench/initrd.img"],
  cmdline: "console=ttyS0 bench=1",
};

/** The rows of the table: (a) is one pypxe, (b) and (c) alternate rounds of another (`BootApiRun`). */
const ROWS = {
  a: "(a) no --boot-api",
  b: "(b) --boot-api, warm cache",
  c: "(c) (b) + 1 slow MAC",
} as const;
type Row = keyof typeof ROWS;

/** Options of {@linkcode runBootApiBench}. */
export interface BootApiBenchOptions {
  /** Clients (MACs) per pypxe run; default 2000. */
  macs?: number;
  /** MACs per round of warm pass + measured pass (bounds the cached answers' age); default 500. */
  chunk?: number;
  /** Pause between a warm pass and its measured pass; default 500 ms. */
  settleMs?: number;
  /** Exchanges in flight in the measured passes; default [8, 32]. */
  inflight?: number[];
  /** In flight in the warm passes (at most the client's 32 concurrent requests); default 32. */
  warmInflight?: number;
  /** Runs of each pypxe, alternating; the table shows medians; default 3. */
  repeat?: number;
  /** The API's answer time for every MAC; default 20 ms. */
  apiMs?: number;
  /** The API's answer time for the slow MAC of each (c) round; default 1500 ms. */
  slowMs?: number;
  /** pypxe's `--boot-api-timeout`; default 2000 ms. */
  bootApiTimeoutMs?: number;
  /**
   * CPU pinning (taskset): pypxe on the first CPU list, the load generator and the fake API on the second,
   * e.g. `1:0` (the default with 2 CPUs or more and taskset installed); null: none.
   */
  pin?: [string, string] | null;
}

/** One pypxe run: `api` false is (a); `api` true has (b) in its even rounds and (c) in its odd ones. */
export interface BootApiRun {
  api: boolean;
  inflight: number;
  repeat: number;
  gen: GenerateResult;
  /** Per round: boot API requests during its warm and measured pass (the slow MAC's apart). */
  apiWarm: number[];
  apiMeasured: number[];
  /** Requests for the slow MACs. */
  apiSlow: number;
  /**
   * About the oldest a cached answer was when a measured pass used it: the later of (measured start -
   * warm start) and (measured end - warm end) over the rounds, both passes going through the MACs in order.
   */
  ageMs: number;
}

/** The numbers of one row of one run. */
interface RowStats extends Omit<DoraResult, "server" | "inflight"> {
  cpuUsPerDora: number;
  apiMeasured: number;
  slowMs: (number | null)[];
}

/** The rows a run has, from its rounds. */
function rowsOf(run: BootApiRun): Partial<Record<Row, RowStats>> {
  const rounds = run.gen.rounds ?? [];
  const stats = (pick: (i: number) => boolean): RowStats => {
    const mine = rounds.map((r, i) => ({ r, i })).filter(({ i }) => pick(i));
    const done = mine.reduce((n, { r }) => n + r.measured.done, 0);
    const cpuMs = mine.reduce((n, { r }) => n + (r.measured.cpuMs ?? NaN), 0);
    return {
      ...summarize(
        mine.flatMap(({ r }) => r.measured.latencies),
        mine.reduce((n, { r }) => n + r.measured.failed, 0),
        mine.reduce((n, { r }) => n + r.measured.seconds, 0),
      ),
      cpuUsPerDora: cpuMs * 1000 / Math.max(1, done),
      apiMeasured: mine.reduce((n, { i }) => n + run.apiMeasured[i], 0),
      slowMs: mine.flatMap(({ r }) => r.slowMs === undefined ? [] : [r.slowMs]),
    };
  };
  if (!run.api) return { a: stats(() => true) };
  return { b: stats((i) => i % 2 === 0), c: stats((i) => i % 2 === 1) };
}

/**
 * The boot API benchmark of issue 13. The same PXE DORA workload, in rounds of `chunk` MACs (a warm pass,
 * then the measured pass over the same MACs), against pypxe without `--boot-api` (a), and pypxe with
 * `--boot-api` at a local fake API that answers every MAC in `apiMs`, whose even rounds are (b) (the warm
 * pass fills the cache; the measured pass should ask nothing) and whose odd rounds are (c): (b) plus one
 * more client, a new MAC whose answer takes `slowMs`, pending during the whole measured pass. (b) and (c)
 * interleave in one process so that their p99 compare like with like. The API runs on 127.0.0.1 inside the
 * server namespace; pypxe's CPU time comes from /proc.
 */
export async function runBootApiBench(opts: BootApiBenchOptions = {}): Promise<BootApiRun[]> {
  const macs = opts.macs ?? 2000;
  const chunk = opts.chunk ?? 500;
  const settleMs = opts.settleMs ?? 500;
  const inflights = opts.inflight ?? [8, 32];
  const warmInflight = opts.warmInflight ?? 32;
  const repeat = opts.repeat ?? 3;
  const apiMs = opts.apiMs ?? 20;
  const slowMs = opts.slowMs ?? 1500;
  const apiTimeout = opts.bootApiTimeoutMs ?? 2000;
  const pin = opts.pin !== undefined
    ? opts.pin
    : navigator.hardwareConcurrency >= 2 && findTool("taskset") !== null
    ? ["1", "0"] as [string, string]
    : null;
  // the pool has 10,240 addresses: macs, a JIT warm-up round of `chunk` and the slow clients
  const ok = macs >= 2 && macs <= 8000 && chunk >= 1 && chunk <= 2000 && settleMs >= 0 &&
    settleMs <= 10_000 &&
    chunk * 2 <= macs && repeat >= 1 && repeat <= 20 &&
    inflights.length >= 1 && inflights.length <= 8 && inflights.every((n) => n >= 1 && n <= 256) &&
    warmInflight >= 1 && warmInflight <= 256;
  if (!ok) {
    throw new RangeError(
      "--macs 2..8000, --chunk 1..2000 and at most half of --macs, --repeat 1..20, 1..8 --inflight values",
    );
  }
  if (parseBootApiBody(JSON.stringify(PROFILE_ANSWER), "http://127.0.0.1/").boot.kind !== "kernel") {
    throw new Error("the fake API's answer is not a kernel profile");
  }
  console.log(
    `boot API bench: ${macs} PXE clients per pypxe run (after a JIT warm-up round), in rounds of ${chunk}: ` +
      `a warm pass (${warmInflight} ` +
      `in flight), a ${settleMs} ms pause, the measured pass. API answers in ${apiMs} ms, the slow MAC of ` +
      `each (c) round in ${slowMs} ms; --boot-api-timeout ${apiTimeout}; cache ${BOOT_API_CACHE_MS} ms; ` +
      `${repeat} run(s) each`,
  );
  console.log(
    `machine: ${navigator.hardwareConcurrency} CPUs, load average ${
      Deno.loadavg().map((x) => x.toFixed(2)).join(" ")
    } before the run (other work on it makes DORA/s noisy); ${
      pin === null ? "no CPU pinning" : `pypxe on CPU ${pin[0]}, load generator and API on CPU ${pin[1]}`
    }`,
  );
  const tmp = await Deno.makeTempDir({ prefix: "pypxe-bench-dhcp-api-" });
  const runs: BootApiRun[] = [];
  const pair = await createPair({
    tag: "bapi",
    serverIp: SERVER_IP,
    clientIp: CLIENT_IP,
    prefixLength: 16,
    clientDefaultRoute: true,
  });
  const [ns, nc] = [pair.server, pair.client];
  try {
    let seed = 100;
    for (const inflight of inflights) {
      for (let i = 0; i < repeat; i++) {
        for (const api of [false, true]) {
          const run = await bootApiRun(api, {
            ns,
            nc,
            dir: `${tmp}/${api ? "api" : "none"}`,
            seed: seed++,
            macs,
            chunk,
            settleMs,
            inflight,
            warmInflight,
            apiMs,
            slowMs,
            apiTimeout,
            pin,
          });
          run.repeat = i;
          runs.push(run);
          const warm = (run.gen.rounds ?? []).map((r) => r.warm);
          const warmCpu = warm.reduce((n, w) => n + (w.cpuMs ?? NaN), 0) * 1000 /
            Math.max(1, warm.reduce((n, w) => n + w.done, 0));
          const warmSec = warm.reduce((n, w) => n + w.seconds, 0);
          for (const [row, st] of Object.entries(rowsOf(run)) as [Row, RowStats][]) {
            const slow = row === "c"
              ? `; slow clients ${st.slowMs.map((ms) => ms?.toFixed(0) ?? "failed").join(", ")} ms`
              : "";
            console.log(
              `  inflight ${String(inflight).padStart(2)} ${ROWS[row].padEnd(27)}` +
                `${st.perSecond.toFixed(0).padStart(6)} DORA/s  p50 ${st.p50.toFixed(2)} ms  ` +
                `p99 ${st.p99.toFixed(2)} ms  CPU ${st.cpuUsPerDora.toFixed(0)} µs/DORA  (${st.done} ok, ` +
                `${st.failed} failed, ${st.seconds.toFixed(2)} s` +
                (api ? `; API requests in measured passes ${st.apiMeasured}` : "") + `${slow})`,
            );
          }
          console.log(
            `    warm passes ${warmSec.toFixed(2)} s, pypxe CPU ${warmCpu.toFixed(0)} µs/DORA` +
              (api
                ? `, API requests ${run.apiWarm.reduce((n, x) => n + x, 0)}` +
                  ` (+ ${run.apiSlow} for the slow MACs); oldest cached answer used ${
                    (run.ageMs / 1000).toFixed(2)
                  } s`
                : ""),
          );
        }
      }
    }
    printBootApiTable(runs, inflights, slowMs);
  } finally {
    await pair.destroy();
    await Deno.remove(tmp, { recursive: true }).catch(() => {});
  }
  return runs;
}

async function bootApiRun(api: boolean, o: {
  ns: string;
  nc: string;
  dir: string;
  seed: number;
  macs: number;
  chunk: number;
  settleMs: number;
  inflight: number;
  warmInflight: number;
  apiMs: number;
  slowMs: number;
  apiTimeout: number;
  pin: [string, string] | null;
}): Promise<BootApiRun> {
  const [serverCpus, clientCpus] = o.pin === null
    ? [[], []]
    : [["taskset", "-c", o.pin[0]], ["taskset", "-c", o.pin[1]]];
  await Deno.remove(o.dir, { recursive: true }).catch(() => {});
  await Deno.mkdir(o.dir, { recursive: true });
  // the slow client of each odd round (see GenerateOptions.slowRounds)
  const rounds = Math.ceil(o.macs / o.chunk);
  const slowMacs = new Set<string>();
  for (let k = 1; k < rounds; k += 2) slowMacs.add(macOf(o.seed, o.macs + o.chunk + k));
  let fake: Daemon | null = null;
  let server: Daemon | null = null;
  try {
    let bootApi = "";
    if (api) {
      const slow = { json: PROFILE_ANSWER, delayMs: o.slowMs };
      const spec: FakeBootApiOptions = {
        hostname: "127.0.0.1",
        port: 0,
        fallback: { json: PROFILE_ANSWER, delayMs: o.apiMs },
        answers: Object.fromEntries([...slowMacs].map((mac) => [mac, slow])),
      };
      fake = await startDaemon([Deno.execPath(), "run", "-A", FAKE_API, JSON.stringify(spec)], {
        netns: o.ns,
        prefix: clientCpus,
        ready: /^ready \d+$/,
        stdin: true,
        capture: "stdout",
        readyTimeoutMs: 30_000,
        name: "fake boot API",
      });
      const port = Number(fake.lines.find((l) => /^ready \d+$/.test(l))!.slice(6));
      bootApi = `http://127.0.0.1:${port}/`;
    }
    const spec: DhcpServeSpec = { config: pypxeConfig(o.dir), bootApi, bootApiTimeoutMs: o.apiTimeout };
    server = await startDaemon([Deno.execPath(), "run", ...v8Flags(), "-A", SERVE, JSON.stringify(spec)], {
      netns: o.ns,
      prefix: serverCpus,
      env: { NO_COLOR: "1" },
      ready: /^ready \d+$/,
      stdin: true,
      readyTimeoutMs: 30_000,
      name: "pypxe dhcp",
    });
    const gen = await runGenerator(
      o.nc,
      {
        macs: o.macs,
        inflight: o.inflight,
        seed: o.seed,
        timeoutMs: 1000,
        pxe: true,
        warmInflight: o.warmInflight,
        chunk: o.chunk,
        jitRound: true,
        settleMs: o.settleMs,
        cpuPid: server.pid,
        // the same workload for (a): its odd rounds have the extra client too, answered at once
        slowRounds: "odd",
        slowTimeoutMs: o.slowMs + 1000,
      },
      120_000,
      clientCpus,
    );
    await server.stop("SIGTERM", 10_000);
    const warnings = server.lines.filter((l) => / (WARN|ERROR|FATAL) /.test(l));
    for (const line of warnings.slice(0, 3)) console.log(`    pypxe: ${line}`);
    if (warnings.length > 3) console.log(`    pypxe: ... ${warnings.length - 3} more warning(s)`);
    server = null;
    let arrivals: [number, string][] = [];
    if (fake !== null) {
      await fake.stop("SIGTERM", 10_000);
      const line = fake.lines.find((l) => l.startsWith("requests "));
      if (line === undefined) throw new Error(`the fake API printed no requests:\n${fake.lines.join("\n")}`);
      arrivals = JSON.parse(line.slice("requests ".length));
      fake = null;
    }
    const isSlow = (mac: string) => slowMacs.has(mac.toLowerCase());
    // the passes follow each other: a request belongs to the last pass started by its arrival
    const passes = (gen.rounds ?? []).flatMap((r, round) => [
      { ...r.warm, round, measured: false },
      { ...r.measured, round, measured: true },
    ]).sort((x, y) => x.startedAt - y.startedAt);
    const apiWarm = (gen.rounds ?? []).map(() => 0);
    const apiMeasured = (gen.rounds ?? []).map(() => 0);
    for (const [t, mac] of arrivals) {
      const pass = isSlow(mac) ? undefined : passes.findLast((p) => p.startedAt <= t);
      if (pass !== undefined) (pass.measured ? apiMeasured : apiWarm)[pass.round]++;
    }
    return {
      api,
      inflight: o.inflight,
      repeat: 0,
      gen,
      apiWarm,
      apiMeasured,
      apiSlow: arrivals.filter(([, mac]) => isSlow(mac)).length,
      ageMs: Math.max(
        ...(gen.rounds ?? []).map(({ warm, measured }) =>
          Math.max(measured.startedAt - warm.startedAt, measured.endedAt - warm.endedAt)
        ),
      ),
    };
  } finally {
    await server?.stop("SIGKILL", 5000);
    await fake?.stop("SIGKILL", 5000);
  }
}

function median(values: number[]): number {
  const v = values.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (v.length === 0) return NaN;
  const mid = v.length >> 1;
  return v.length % 2 ? v[mid] : (v[mid - 1] + v[mid]) / 2;
}

/** `median (min-max)` of some values. */
function spread(values: number[], digits = 2): string {
  const v = values.filter((x) => Number.isFinite(x));
  if (v.length === 0) return "n/a";
  const f = (x: number) => x.toFixed(digits);
  return v.length === 1 ? f(v[0]) : `${f(median(v))} (${f(Math.min(...v))}-${f(Math.max(...v))})`;
}

function printBootApiTable(runs: BootApiRun[], inflights: number[], slowMs: number): void {
  const n = Math.max(1, ...inflights.map((i) => runs.filter((r) => r.inflight === i && r.api).length));
  console.log(
    `\nmedians of ${n} run(s); (c): the other clients, without the slow one; CPU: pypxe's user+system time ` +
      `per DORA in the measured passes`,
  );
  console.log(
    "inflight  pypxe                        DORA/s   p50 ms   p99 ms  CPU µs/DORA  API req. measured  failed",
  );
  const statsOf = (inflight: number, row: Row) =>
    runs.filter((r) => r.inflight === inflight).flatMap((r) => rowsOf(r)[row] ?? []);
  for (const inflight of inflights) {
    for (const row of Object.keys(ROWS) as Row[]) {
      const st = statsOf(inflight, row);
      if (st.length === 0) continue;
      const req = row === "a" ? "-" : String(st.reduce((x, s) => x + s.apiMeasured, 0));
      console.log(
        `${String(inflight).padStart(8)}  ${ROWS[row].padEnd(27)}` +
          `${median(st.map((s) => s.perSecond)).toFixed(0).padStart(7)}` +
          `${median(st.map((s) => s.p50)).toFixed(2).padStart(9)}` +
          `${median(st.map((s) => s.p99)).toFixed(2).padStart(9)}` +
          `${median(st.map((s) => s.cpuUsPerDora)).toFixed(0).padStart(13)}  ${req.padEnd(17)}` +
          `${String(st.reduce((x, s) => x + s.failed, 0)).padStart(6)}`,
      );
    }
  }
  console.log("ratios per run, median (min-max):");
  for (const inflight of inflights) {
    const mine = runs.filter((r) => r.inflight === inflight);
    const reps = [...new Set(mine.map((r) => r.repeat))];
    const paired = reps.map((i) => {
      const a = mine.find((r) => r.repeat === i && !r.api);
      const api = mine.find((r) => r.repeat === i && r.api);
      return { a: a && rowsOf(a).a, b: api && rowsOf(api).b, c: api && rowsOf(api).c };
    }).filter((p) => p.a && p.b && p.c) as { a: RowStats; b: RowStats; c: RowStats }[];
    if (paired.length === 0) continue;
    const rate = paired.map((p) => p.b.perSecond / p.a.perSecond);
    const slow = paired.flatMap((p) => p.c.slowMs.map((ms) => ms ?? NaN));
    console.log(
      `  inflight ${inflight}: (b)/(a) DORA/s ${spread(rate)}x (target >= 0.90: ${
        median(rate) >= 0.9 ? "met" : "MISSED"
      }); CPU per DORA (b)/(a) ${spread(paired.map((p) => p.b.cpuUsPerDora / p.a.cpuUsPerDora))}x; ` +
        `others' p99 (c)/(b) ${spread(paired.map((p) => p.c.p99 / p.b.p99))}x, ` +
        `p50 (c)/(b) ${spread(paired.map((p) => p.c.p50 / p.b.p50))}x; ` +
        `slow client ${spread(slow, 0)} ms (API ${slowMs} ms)`,
    );
  }
  const misses = runs.filter((r) => r.api && r.apiMeasured.some((x) => x > 0));
  if (misses.length > 0) {
    console.log(
      `note: ${misses.length} run(s) asked the API during measured passes (cache misses; oldest cached answer ` +
        `used ${misses.map((r) => `${(r.ageMs / 1000).toFixed(2)} s`).join(", ")}); the cache lifetime is ` +
        `${BOOT_API_CACHE_MS / 1000} s and no flag changes it`,
    );
  }
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      generate: { type: "string" },
      macs: { type: "string" },
      inflight: { type: "string" },
      servers: { type: "string" },
      "boot-api": { type: "boolean" },
      repeat: { type: "string" },
      "warm-inflight": { type: "string" },
      chunk: { type: "string" },
      "settle-ms": { type: "string" },
      pin: { type: "string" },
      "api-ms": { type: "string" },
      "slow-ms": { type: "string" },
      "boot-api-timeout": { type: "string" },
    },
  });
  if (values.generate !== undefined) {
    console.log(JSON.stringify(await generate(JSON.parse(values.generate))));
  } else {
    if (Deno.uid() !== 0) {
      console.error("dhcp bench: needs root (network namespaces)");
      Deno.exit(1);
    }
    const num = (v: string | undefined) => v === undefined ? undefined : Number(v);
    if (values["boot-api"]) {
      await runBootApiBench({
        macs: num(values.macs),
        inflight: values.inflight?.split(",").map(Number),
        repeat: num(values.repeat),
        warmInflight: num(values["warm-inflight"]),
        chunk: num(values.chunk),
        settleMs: num(values["settle-ms"]),
        pin: values.pin === undefined
          ? undefined
          : values.pin === "none"
          ? null
          : values.pin.split(":", 2) as [string, string],
        apiMs: num(values["api-ms"]),
        slowMs: num(values["slow-ms"]),
        bootApiTimeoutMs: num(values["boot-api-timeout"]),
      });
      Deno.exit(0);
    }
    await runDhcpBench({
      macs: values.macs ? Number(values.macs) : undefined,
      inflight: values.inflight?.split(",").map(Number),
      servers: values.servers?.split(","),
    });
  }
}
