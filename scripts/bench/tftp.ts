/**
 * TFTP benchmark: pypxe against tftpd-hpa on the same files, alternating runs, medians.
 *
 *   deno run -A scripts/bench/tftp.ts [--size MiB] [--runs N] [--parallel 20,100] [--parallel-size MiB]
 *     [--sections lockstep,window,parallel]
 *
 * Prints MB/s, server CPU seconds per GB and the pypxe/tftpd-hpa ratio for lock-step transfers on
 * loopback (curl and atftp, blksize 512/1468/8192/65464), pypxe's windowsize gain on a LAN-like link (a
 * veth pair with `netem delay 0.5ms` when the kernel has netem, else scripts/bench/delay_relay.c adding
 * 0.25 ms each way between namespaces, else loopback), and wall time plus server RSS for parallel clients
 * against tftpd-hpa and dnsmasq. Needs curl, atftp and in.tftpd (tftpd-hpa); dnsmasq, cc and root for the
 * rest.
 * @module
 */
import { parseArgs } from "node:util";
import { createDelayedLink, createPair, netemAvailable, type NetnsPair } from "../../tests/helpers/netns.ts";
import { run } from "../../tests/helpers/run.ts";
import { spawnService, startDaemon } from "../../tests/helpers/servers.ts";
import { missingTools } from "../../tests/helpers/tools.ts";

const { values: args } = parseArgs({
  args: Deno.args,
  options: {
    size: { type: "string", default: "64" },
    runs: { type: "string", default: "3" },
    parallel: { type: "string", default: "20,100" },
    "parallel-size": { type: "string", default: "16" },
    "skip-parallel": { type: "boolean", default: false },
    sections: { type: "string", default: "lockstep,window,parallel" },
  },
});
const SIZE = Number(args.size) * 1024 * 1024;
const RUNS = Number(args.runs);
const SECTIONS = new Set(args.sections.split(","));
if (args["skip-parallel"]) SECTIONS.delete("parallel");

/** Runs a client within 10 minutes. */
const sh = (cmd: string[]) => run(cmd, { timeoutMs: 600_000 });

function rssMiB(pid: number): number {
  const m = /VmHWM:\s+(\d+)/.exec(Deno.readTextFileSync(`/proc/${pid}/status`));
  return m ? Number(m[1]) / 1024 : NaN;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length === 0
    ? NaN
    : s.length % 2
    ? s[(s.length - 1) / 2]
    : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

interface Server {
  name: string;
  pid: number;
  port: number;
  host: string;
  stop(): Promise<void>;
}

async function startHpa(dir: string, port: number, netns?: string, host = "127.0.0.1"): Promise<Server> {
  const hpa = await startDaemon(["in.tftpd", "-L", "-s", dir, "-a", `${host}:${port}`], {
    netns,
    settleMs: 300,
  });
  const pid = netns ? await childPid(hpa.pid, "in.tftpd") : hpa.pid;
  return { name: "tftpd-hpa", pid, port, host, stop: async () => void (await hpa.stop()) };
}

/** dnsmasq as a TFTP-only server (no DNS, no DHCP) on 127.0.0.1:69, up to 300 transfers at once. */
async function startDnsmasq(dir: string): Promise<Server | null> {
  if (missingTools("dnsmasq") !== null) return null;
  const dnsmasq = await startDaemon([
    "dnsmasq",
    "-d",
    "--conf-file=/dev/null",
    "--port=0",
    "--enable-tftp",
    `--tftp-root=${dir}`,
    "--tftp-max=300",
    "--listen-address=127.0.0.1",
    "--bind-interfaces",
    "--pid-file=",
    "--user=root",
  ], { settleMs: 500 });
  return {
    name: "dnsmasq",
    pid: dnsmasq.pid,
    port: 69,
    host: "127.0.0.1",
    stop: async () => void (await dnsmasq.stop()),
  };
}

async function childPid(parent: number, comm: string): Promise<number> {
  // `ip netns exec` execs in place, so the pid is usually the same; fall back to a /proc scan
  try {
    if (Deno.readTextFileSync(`/proc/${parent}/comm`).trim() === comm) return parent;
  } catch { /* gone */ }
  for await (const e of Deno.readDir("/proc")) {
    if (!/^\d+$/.test(e.name)) continue;
    try {
      const stat = Deno.readTextFileSync(`/proc/${e.name}/stat`);
      if (stat.includes(`(${comm})`) && stat.split(") ")[1].split(" ")[1] === String(parent)) {
        return Number(e.name);
      }
    } catch { /* raced */ }
  }
  return parent;
}

async function startPypxe(dir: string, port: number, netns?: string, host = "127.0.0.1"): Promise<Server> {
  const pypxe = await spawnService({ service: "tftp", host, port, dir }, { netns });
  const pid = netns ? await childPid(pypxe.pid, "deno") : pypxe.pid;
  return { name: "pypxe", pid, port, host, stop: async () => void (await pypxe.stop()) };
}

function clientCmd(client: string, s: Server, file: string, out: string, bs: number, ws = 1): string[] {
  if (client === "curl") {
    return [
      "curl",
      "-sS",
      "--max-time",
      "600",
      "-o",
      out,
      "--tftp-blksize",
      String(bs),
      `tftp://${s.host}:${s.port}/${file}`,
    ];
  }
  const opts = ["--option", `blksize ${bs}`, "--option", "tsize 0"];
  if (ws > 1) opts.push("--option", `windowsize ${ws}`);
  return ["atftp", "--get", "-r", file, "-l", out, ...opts, s.host, String(s.port)];
}

function busyJiffies(): number {
  const f = Deno.readTextFileSync("/proc/stat").split("\n")[0].trim().split(/\s+/).slice(1).map(Number);
  return f[0] + f[1] + f[2] + f[5] + f[6] + f[7]; // user nice system irq softirq steal
}

/**
 * Runs one client; server CPU = machine-wide busy time minus the client's own CPU, because tftpd-hpa
 * forks an auto-reaped child per transfer whose time never shows up in its parent.
 */
async function measure(s: Server, cmd: string[], bytes: number): Promise<{ mbs: number; cpuPerGB: number }> {
  const j0 = busyJiffies();
  const r = await sh(["/usr/bin/time", "-f", "@@%U %S", ...cmd]);
  const busy = (busyJiffies() - j0) / 100;
  if (r.code !== 0) throw new Error(`${s.name}: ${cmd.join(" ")} failed: ${r.stderr.trim()}`);
  const m = /@@([\d.]+) ([\d.]+)\s*$/.exec(r.stderr.trim());
  const client = m ? Number(m[1]) + Number(m[2]) : 0;
  const cpu = Math.max(0, busy - client);
  return { mbs: bytes / 1e6 / (r.ms / 1000), cpuPerGB: cpu / (bytes / 1e9) };
}

const fmt = (n: number, d = 1) => Number.isFinite(n) ? n.toFixed(d) : "-";

/** Prints atftp lock-step vs windowsize throughput. */
async function windowTable(
  dir: string,
  h: Server,
  p: Server,
  exec: (cmd: string[]) => string[],
): Promise<void> {
  console.log("server     windowsize  MB/s  x lock-step");
  const hs: number[] = [];
  for (let i = 0; i < RUNS; i++) {
    hs.push((await measure(h, exec(clientCmd("atftp", h, "bench.bin", `${dir}/out`, 1468)), SIZE)).mbs);
  }
  const base = median(hs);
  console.log(`tftpd-hpa  ${"1".padStart(10)}  ${fmt(base).padStart(4)}  ${fmt(1, 2).padStart(11)}`);
  let pbase = NaN;
  for (const ws of [1, 4, 16, 64]) {
    const xs: number[] = [];
    for (let i = 0; i < RUNS; i++) {
      xs.push(
        (await measure(p, exec(clientCmd("atftp", p, "bench.bin", `${dir}/out`, 1468, ws)), SIZE)).mbs,
      );
    }
    const m = median(xs);
    if (ws === 1) pbase = m;
    console.log(
      `pypxe      ${String(ws).padStart(10)}  ${fmt(m).padStart(4)}  ${fmt(m / pbase, 2).padStart(11)}`,
    );
  }
}

const dir = await Deno.makeTempDir({ prefix: "pypxe-bench-" });
const servers: Server[] = [];
try {
  console.log(`# TFTP benchmark: ${args.size} MiB file, ${RUNS} alternating runs per cell, medians`);
  const blob = new Uint8Array(1024 * 1024);
  {
    using f = await Deno.open(`${dir}/bench.bin`, { write: true, create: true });
    for (let done = 0; done < SIZE; done += blob.length) {
      crypto.getRandomValues(blob.subarray(0, 65536));
      for (let o = 65536; o < blob.length; o *= 2) blob.copyWithin(o, 0, o);
      await f.write(blob);
    }
  }
  // tftpd-hpa drops to an unprivileged user: the tree must be world-readable
  await Deno.chmod(dir, 0o755);
  await Deno.chmod(`${dir}/bench.bin`, 0o644);
  const hpa = await startHpa(dir, 17069);
  const pyx = await startPypxe(dir, 17070);
  servers.push(hpa, pyx);

  if (SECTIONS.has("lockstep")) {
    console.log("\n## loopback, lock-step");
    console.log("client  blksize  tftpd-hpa MB/s  pypxe MB/s  ratio  hpa CPU s/GB  pypxe CPU s/GB");
  }
  for (const client of SECTIONS.has("lockstep") ? ["curl", "atftp"] : []) {
    for (const bs of [512, 1468, 8192, 65464]) {
      const res: Record<string, { mbs: number[]; cpu: number[] }> = {
        hpa: { mbs: [], cpu: [] },
        pyx: { mbs: [], cpu: [] },
      };
      for (let i = 0; i < RUNS; i++) {
        const order: [string, Server][] = i % 2 === 0
          ? [["hpa", hpa], ["pyx", pyx]]
          : [["pyx", pyx], ["hpa", hpa]];
        for (const [key, s] of order) {
          const m = await measure(s, clientCmd(client, s, "bench.bin", `${dir}/out`, bs), SIZE);
          res[key].mbs.push(m.mbs);
          res[key].cpu.push(m.cpuPerGB);
        }
      }
      const h = median(res.hpa.mbs);
      const p = median(res.pyx.mbs);
      console.log(
        `${client.padEnd(7)} ${String(bs).padStart(7)}  ${fmt(h).padStart(14)}  ${fmt(p).padStart(10)}  ${
          fmt(p / h, 2).padStart(5)
        }` +
          `  ${fmt(median(res.hpa.cpu), 2).padStart(12)}  ${fmt(median(res.pyx.cpu), 2).padStart(14)}`,
      );
    }
  }

  if (SECTIONS.has("window")) {
    // a LAN-like link: a veth pair with netem where the kernel has it, else namespaces joined through
    // delay_relay (110 us each way plus the relay's own latency: about 0.5 ms round trip, ping shows it)
    const netem = await netemAvailable();
    let link: NetnsPair | null = null;
    try {
      if (netem) link = await createPair({ tag: "window", netem: ["delay", "0.5ms"] });
      else if (Deno.uid() === 0) link = await createDelayedLink(110);
    } catch (err) {
      console.log(`(no delayed link: ${err instanceof Error ? err.message : err})`);
    }
    console.log(
      `\n## windowsize (atftp, blksize 1468) ${
        link === null
          ? "on loopback (no netem in this kernel)"
          : netem
          ? "on a veth pair with netem delay 0.5ms"
          : "between namespaces through delay_relay (about 0.5 ms round trip)"
      }`,
    );
    if (link === null) {
      await windowTable(dir, hpa, pyx, (cmd) => cmd);
    } else {
      const l = link;
      const ping = await run(["busybox", "ping", "-c", "10", "-i", "0.1", l.serverIp], { netns: l.client });
      const rtt = /= [\d.]+\/([\d.]+)\//.exec(ping.stdout);
      console.log(`ping round trip (avg): ${rtt ? rtt[1] : "?"} ms`);
      const near: Server[] = [];
      try {
        near.push(await startHpa(dir, 6969, l.server, l.serverIp));
        near.push(await startPypxe(dir, 6970, l.server, l.serverIp));
        await windowTable(dir, near[0], near[1], (cmd) => l.exec(l.client, cmd));
      } finally {
        for (const s of near) await s.stop();
        await l.destroy();
      }
    }
  }

  if (SECTIONS.has("parallel")) {
    const psize = Number(args["parallel-size"]) * 1024 * 1024;
    await Deno.copyFile(`${dir}/bench.bin`, `${dir}/par.bin`);
    await Deno.truncate(`${dir}/par.bin`, psize);
    await Deno.chmod(`${dir}/par.bin`, 0o644);
    const dnsmasq = await startDnsmasq(dir);
    if (dnsmasq) servers.push(dnsmasq);
    console.log(`\n## parallel curl clients, ${args["parallel-size"]} MiB each, blksize 1468`);
    console.log(
      "clients  tftpd-hpa wall s  dnsmasq wall s  pypxe wall s  vs hpa  vs dnsmasq  pypxe RSS MiB (peak)",
    );
    for (const n of args.parallel.split(",").map(Number)) {
      const wall: Record<string, number> = {};
      for (const s of dnsmasq ? [hpa, dnsmasq, pyx] : [hpa, pyx]) {
        const t0 = performance.now();
        const results = await Promise.all(
          Array.from({ length: n }, (_, i) => sh(clientCmd("curl", s, "par.bin", `${dir}/p${i}`, 1468))),
        );
        wall[s.name] = (performance.now() - t0) / 1000;
        const bad = results.filter((r) => r.code !== 0);
        if (bad.length) console.log(`  ${s.name}: ${bad.length} clients failed: ${bad[0].stderr.trim()}`);
      }
      console.log(
        `${String(n).padStart(7)}  ${fmt(wall["tftpd-hpa"]).padStart(16)}  ${
          fmt(wall.dnsmasq ?? NaN).padStart(14)
        }  ${fmt(wall.pypxe).padStart(12)}  ${fmt(wall.pypxe / wall["tftpd-hpa"], 2).padStart(6)}  ${
          fmt(wall.pypxe / (wall.dnsmasq ?? NaN), 2).padStart(10)
        }  ${fmt(rssMiB(pyx.pid)).padStart(8)}`,
      );
      for (let i = 0; i < n; i++) await Deno.remove(`${dir}/p${i}`).catch(() => {});
    }
  }
} finally {
  for (const s of servers) await s.stop().catch(() => {});
  await Deno.remove(dir, { recursive: true });
}
