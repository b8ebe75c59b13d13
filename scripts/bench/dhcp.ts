/**
 * DHCP benchmark: complete DORA exchanges for 2,000 distinct MACs over a veth pair between two network
 * namespaces, 8 and 32 exchanges in flight, against pypxe, dnsmasq (`--no-ping`) and Kea (memfile) when
 * installed. Prints DORA/s, p50/p99 latency and the ratios to pypxe. Needs root and `ip netns`.
 *
 * Usage: deno run -A scripts/bench/dhcp.ts [--macs N] [--inflight 8,32] [--servers pypxe,dnsmasq,kea]
 * Internal mode (run inside the client namespace): `--generate JSON` (the load generator). pypxe's
 * DhcpServer runs alone in the server namespace (spawnService, tests/helpers/servers.ts).
 * @module
 */
import { parseArgs } from "node:util";
import { getIp, MessageType, messageType, Opt, setOption } from "../../src/dhcp/options.ts";
import { createDhcpPacket, decodeDhcp, encodeDhcp } from "../../src/dhcp/packet.ts";
import { createPair } from "../../tests/helpers/netns.ts";
import { run } from "../../tests/helpers/run.ts";
import { type Daemon, spawnService, startDaemon } from "../../tests/helpers/servers.ts";
import { findTool } from "../../tests/helpers/tools.ts";

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
}

async function generate(opts: GenerateOptions): Promise<Omit<DoraResult, "server">> {
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
  const ask = (pkt: ReturnType<typeof createDhcpPacket>, want: number) =>
    new Promise<ReturnType<typeof decodeDhcp> | null>((resolve) => {
      const timer = setTimeout(() => {
        waiting.delete(pkt.xid);
        resolve(null);
      }, opts.timeoutMs);
      waiting.set(pkt.xid, (reply) => {
        if (messageType(reply) !== want) return;
        clearTimeout(timer);
        waiting.delete(pkt.xid);
        resolve(reply);
      });
      sock.send(encodeDhcp(pkt), { transport: "udp", hostname: "255.255.255.255", port: 67 }).catch(() => {});
    });
  const latencies: number[] = [];
  let failed = 0;
  let next = 0;
  const dora = async (i: number) => {
    const mac = `02:${(opts.seed & 255).toString(16).padStart(2, "0")}:00:${
      ((i >> 16) & 255).toString(16).padStart(2, "0")
    }:${((i >> 8) & 255).toString(16).padStart(2, "0")}:${(i & 255).toString(16).padStart(2, "0")}`;
    const t0 = performance.now();
    for (let attempt = 0; attempt < 3; attempt++) {
      const discover = createDhcpPacket({ mac, xid: xid = (xid + 1) >>> 0, flags: 0x8000 });
      setOption(discover, Opt.MESSAGE_TYPE, MessageType.DISCOVER);
      setOption(discover, Opt.PARAMETER_LIST, [1, 3, 6, 15, 28, 51, 54, 58, 59]);
      const offer = await ask(discover, MessageType.OFFER);
      if (!offer) continue;
      const request = createDhcpPacket({ mac, xid: discover.xid, flags: 0x8000 });
      setOption(request, Opt.MESSAGE_TYPE, MessageType.REQUEST);
      setOption(request, Opt.REQUESTED_IP, offer.yiaddr);
      setOption(request, Opt.SERVER_ID, getIp(offer, Opt.SERVER_ID) ?? SERVER_IP);
      setOption(request, Opt.PARAMETER_LIST, [1, 3, 6, 15, 28, 51, 54, 58, 59]);
      const ack = await ask(request, MessageType.ACK);
      if (!ack) continue;
      latencies.push(performance.now() - t0);
      return;
    }
    failed++;
  };
  const start = performance.now();
  await Promise.all(
    Array.from({ length: opts.inflight }, async () => {
      while (next < opts.macs) await dora(next++);
    }),
  );
  const seconds = (performance.now() - start) / 1000;
  sock.close();
  await loop;
  latencies.sort((a, b) => a - b);
  const q = (p: number) => latencies[Math.min(latencies.length - 1, Math.floor(latencies.length * p))] ?? NaN;
  return {
    inflight: opts.inflight,
    done: latencies.length,
    failed,
    seconds,
    perSecond: latencies.length / seconds,
    p50: q(0.5),
    p99: q(0.99),
  };
}

// ---------- orchestration ----------

async function startServer(kind: string, netns: string, dir: string): Promise<Daemon> {
  await Deno.remove(dir, { recursive: true }).catch(() => {});
  await Deno.mkdir(dir, { recursive: true });
  if (kind === "pypxe") {
    const v8 = Deno.env.get("PYPXE_BENCH_V8");
    return await spawnService({
      service: "dhcp",
      config: {
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
      },
    }, { netns, denoFlags: v8 ? [`--v8-flags=${v8}`] : [] });
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

async function runGenerator(netns: string, opts: GenerateOptions): Promise<Omit<DoraResult, "server">> {
  const out = await run([Deno.execPath(), "run", "-A", SELF, "--generate", JSON.stringify(opts)], {
    netns,
    timeoutMs: 600_000,
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

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      generate: { type: "string" },
      macs: { type: "string" },
      inflight: { type: "string" },
      servers: { type: "string" },
    },
  });
  if (values.generate !== undefined) {
    console.log(JSON.stringify(await generate(JSON.parse(values.generate))));
  } else {
    if (Deno.uid() !== 0) {
      console.error("dhcp bench: needs root (network namespaces)");
      Deno.exit(1);
    }
    await runDhcpBench({
      macs: values.macs ? Number(values.macs) : undefined,
      inflight: values.inflight?.split(",").map(Number),
      servers: values.servers?.split(","),
    });
  }
}
