/**
 * ARM64, proved (issue 16 §6): `deno compile --target aarch64-unknown-linux-gnu` cannot download its
 * runtime here, so the ARM64 build's code is proved instead. pypxe runs from source on the aarch64 Deno of
 * this very version (npm `@deno/linux-arm64-glibc`, fetched by scripts/arm64_deno.ts) under
 * `qemu-aarch64-static`, serving DHCP and TFTP in a server namespace; from the client namespace, x86 busybox
 * udhcpc gets a lease and curl and tftp-hpa fetch a file whose sha256 must match.
 *
 * It also proves it is not x86 running: the aarch64 Deno reports `aarch64-unknown-linux-gnu`, and the
 * sockets on ports 67 and 69 belong to the `qemu-aarch64-static` process. The npm dependencies come from
 * the x86 run's DENO_DIR (`--cached-only`: they are pure JS; the namespace has no way out anyway).
 *
 * Start-up is slow under user-mode QEMU (V8 emulated): up to 120 s for the ready line. The times (start,
 * lease, each fetch) are printed. Needs root, the aarch64 Deno and qemu-user-static with the arm64
 * libraries; skipped with the reason otherwise, unless PYPXE_REQUIRE_E2E=1 (then it fails).
 */
import { equal, match, ok } from "node:assert/strict";
import { join } from "node:path";
import { arm64DenoPath, isArm64Elf, QEMU_LD_PREFIX } from "../../scripts/arm64_deno.ts";
import { sha256 } from "../helpers/hash.ts";
import { createPair } from "../helpers/netns.ts";
import { netnsAvailable } from "../helpers/netns.ts";
import { xorshift } from "../helpers/random.ts";
import { run } from "../helpers/run.ts";
import { type Daemon, startDaemon, stripNoise } from "../helpers/servers.ts";
import { findTool, firstReason, requires } from "../helpers/tools.ts";

const ROOT = new URL("../..", import.meta.url).pathname;
const QEMU = "qemu-aarch64-static";
const DENO = arm64DenoPath();
const SERVER_IP = "10.213.0.1";
const READY_MS = 120_000;
const ENV = { NO_COLOR: "1", RUST_BACKTRACE: "0", QEMU_LD_PREFIX };

/** Why the aarch64 Deno cannot run here, or null. */
async function arm64Missing(): Promise<string | null> {
  if (findTool(QEMU) === null) return `missing tool ${QEMU} (apt-get install qemu-user-static)`;
  for (const lib of ["libc.so.6", "libgcc_s.so.1"]) {
    try {
      Deno.statSync(join(QEMU_LD_PREFIX, "lib", lib));
    } catch {
      return `missing ${QEMU_LD_PREFIX}/lib/${lib} (apt-get install libc6-arm64-cross libgcc-s1-arm64-cross)`;
    }
  }
  if (!await isArm64Elf(DENO)) return `no aarch64 deno at ${DENO} (run deno task arm64-deno)`;
  return null;
}

const missing = firstReason(netnsAvailable(["busybox", "curl", "tftp"]), await arm64Missing());

const seconds = (ms: number) => `${(ms / 1000).toFixed(1)} s`;

async function until(check: () => boolean | Promise<boolean>, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (await check()) return true;
    await new Promise((r) => setTimeout(r, 100));
  }
  return await check();
}

const readText = (path: string) => Deno.readTextFile(path).catch(() => "");

Deno.test(requires(missing, {
  name: "arm64: pypxe on the aarch64 Deno under qemu-user serves a DHCP lease and a TFTP file to x86 clients",
  sanitizeResources: true,
  sanitizeOps: true,
  async fn() {
    // the binary reports ARM64, so this cannot be the x86 Deno in disguise
    const arch = await run([QEMU, DENO, "eval", "console.log(Deno.build.target)"], {
      env: ENV,
      timeoutMs: READY_MS,
    });
    equal(arch.code, 0, arch.stderr);
    equal(arch.stdout.trim(), "aarch64-unknown-linux-gnu");
    console.log(`arm64: deno eval under qemu-user: ${seconds(arch.ms)}`);

    const dir = await Deno.makeTempDir({ prefix: "pypxe-arm64-" });
    const overlay = join(dir, "netboot");
    await Deno.mkdir(overlay);
    const payload = xorshift(0xa64).bytes(300_000);
    await Deno.writeFile(join(overlay, "arm64-proof.bin"), payload);
    const pair = await createPair({ tag: "a64", serverIp: SERVER_IP, clientIp: null });
    let pypxe: Daemon | undefined;
    let udhcpc: Daemon | undefined;
    try {
      const started = performance.now();
      pypxe = await startDaemon([
        QEMU,
        DENO,
        "run",
        "-P",
        "--no-prompt",
        "--cached-only",
        join(ROOT, "main.ts"),
        "--interface",
        pair.serverIf,
        "--dhcp",
        "--dhcp-begin",
        "10.213.0.100",
        "--dhcp-end",
        "10.213.0.109",
        "--netboot-dir",
        overlay,
        "--verbose",
        "all",
        "--no-status",
      ], {
        netns: pair.server,
        cwd: ROOT,
        env: ENV,
        keep: (line) => stripNoise(line) !== "",
        ready: / main {2}ready$/,
        readyTimeoutMs: READY_MS,
        name: "pypxe (aarch64 under qemu-user)",
      });
      const startMs = performance.now() - started;
      const pid = pypxe.pid;
      console.log(`arm64: pypxe ready under qemu-user after ${seconds(startMs)}`);

      // the process that owns the DHCP and TFTP sockets is the emulator running the aarch64 deno
      const exe = await Deno.realPath(`/proc/${pid}/exe`);
      ok(exe.endsWith(`/${QEMU}`), `pypxe's process runs ${exe}`);
      const cmdline = (await Deno.readTextFile(`/proc/${pid}/cmdline`)).split("\0");
      equal(cmdline[1], DENO);
      const ss = await run(["ss", "-H", "-u", "-l", "-n", "-p"], { netns: pair.server, timeoutMs: 10_000 });
      for (const port of [67, 69]) {
        ok(
          ss.stdout.split("\n").some((l) => l.includes(`:${port} `) && l.includes(`pid=${pid},`)),
          `UDP ${port} is not pypxe's (pid ${pid}):\n${ss.stdout}`,
        );
      }

      // a lease, from x86 busybox udhcpc in the client namespace
      const log = join(dir, "udhcpc.log");
      const script = join(dir, "udhcpc.sh");
      await Deno.writeTextFile(
        script,
        `#!/bin/sh\necho "$1 $ip" >> ${log}\ncase "$1" in\n  bound|renew) ip addr flush dev "$interface"; ip addr add "$ip/$mask" dev "$interface";;\n  deconfig) ip addr flush dev "$interface";;\nesac\nexit 0\n`,
      );
      await Deno.chmod(script, 0o755);
      const leaseStart = performance.now();
      udhcpc = await startDaemon(
        ["busybox", "udhcpc", "-f", "-i", pair.clientIf, "-s", script, "-t", "20", "-T", "3", "-n"],
        { netns: pair.client, name: "udhcpc" },
      );
      ok(
        await until(async () => /bound 10\.213\.0\.10\d/.test(await readText(log)), 60_000),
        `no lease within 60 s: ${await readText(log)}\n${pypxe.lines.join("\n")}`,
      );
      const leaseMs = performance.now() - leaseStart;
      const ip = /bound (\S+)/.exec(await readText(log))![1];
      console.log(`arm64: lease ${ip} after ${seconds(leaseMs)}`);
      ok(
        await until(() => pypxe!.lines.some((l) => l.includes("ACK") && l.includes(ip)), 10_000),
        `pypxe logged no ACK of ${ip}:\n${pypxe.lines.join("\n")}`,
      );

      // the file over TFTP, from the leased address: curl (blksize 1468) and tftp-hpa (512-byte blocks)
      const want = sha256(payload);
      const curl = await run(
        ["curl", "-sS", "--max-time", "60", "--tftp-blksize", "1468", `tftp://${SERVER_IP}/arm64-proof.bin`],
        { netns: pair.client, timeoutMs: 70_000 },
      );
      equal(curl.code, 0, curl.stderr);
      equal(sha256(curl.bytes), want, "curl's copy differs");
      console.log(`arm64: curl tftp 300 kB (blksize 1468) in ${seconds(curl.ms)}`);
      const copy = join(dir, "tftp-hpa.bin");
      const hpa = await run(
        ["tftp", "-m", "binary", SERVER_IP, "-c", "get", "arm64-proof.bin", copy],
        { netns: pair.client, timeoutMs: 70_000 },
      );
      equal(hpa.code, 0, hpa.stderr + hpa.stdout);
      equal(sha256(await Deno.readFile(copy)), want, "tftp-hpa's copy differs");
      console.log(`arm64: tftp-hpa 300 kB (blksize 512) in ${seconds(hpa.ms)}`);
      match(pypxe.lines.join("\n"), /arm64-proof\.bin/);

      await udhcpc.stop("SIGKILL");
      udhcpc = undefined;
      const status = await pypxe.stop("SIGTERM", 30_000);
      equal(status.code, 0, `pypxe exited ${status.code} on SIGTERM:\n${pypxe.lines.slice(-20).join("\n")}`);
      pypxe = undefined;
    } finally {
      await udhcpc?.stop("SIGKILL");
      await pypxe?.stop("SIGKILL");
      await pair.destroy();
      await Deno.remove(dir, { recursive: true });
    }
  },
}));
