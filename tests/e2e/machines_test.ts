/**
 * Per-machine boot (issue 13) with real firmware: QEMU clients PXE-boot from pypxe in network namespaces,
 * and each must reach the serial marker of the profile chosen for its MAC. Every profile boots the same
 * kernel with its own initrd (built per run with its own marker), so the console says which profile booted;
 * a wrong profile powers the VM off early with the wrong marker, which the failure names.
 *
 * The profiles and groups are tests/fixtures/machines (copied per run: pypxe writes state.json there):
 * MAC ..:a1:01 -> alpha, MAC ..:b2:02 -> beta, any other MAC -> fallback (the empty selector).
 *
 * 1. groups: two BIOS clients (SeaBIOS + iPXE ROM) at once, different MACs, boot alpha and beta; each got
 *    its per-machine script `machine/MAC.ipxe` over HTTP instead of the menu.
 * 2. one-shot: `pypxe next MAC alpha` (the CLI against --api-listen, with the token file) before a UEFI
 *    client (OVMF PXE -> ipxe.efi -> per-machine script) boots: it boots alpha, the one-shot is used up
 *    (`pypxe machines --json` and GET /api/machines/MAC: next null, lastBoot alpha/done), and its second
 *    boot is the default (fallback).
 * 3. boot API: a fake pixiecore API (tests/helpers/boot_api_server.ts, a process in the server namespace)
 *    answers the client's MAC with a kernel and an initrd of its own (relative URLs, on the API host,
 *    outside the netboot tree): pypxe serves them to the client through its remote cache
 *    (`remote/<key>/...`, issue 17) and the client boots the API's initrd.
 * 4. the API stopped mid-run: the same client boots again while the API process is stopped (SIGSTOP: the
 *    kernel still accepts the connection, nobody answers: pypxe's timeout) and once more after it was
 *    killed (connection refused): both boots fall back to the groups (fallback) within the usual time.
 *
 * Each boot's time is printed. Logs (serial, pypxe, API) are kept under $PYPXE_E2E_LOGS (default
 * /tmp/pypxe-e2e-logs), in `machines-<tag>/`.
 * @module
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { netnsAvailable, Segment } from "../helpers/netns.ts";
import { bootVm, buildPayload, envOr, type Firmware } from "../helpers/qemu.ts";
import { run } from "../helpers/run.ts";
import { type Daemon, type PypxeProcess, runPypxeOnce, startDaemon, startPypxe } from "../helpers/servers.ts";
import { requires } from "../helpers/tools.ts";

const unavailable = netnsAvailable(["qemu-system-x86_64", "cpio", "curl"]);
const LOGS = envOr("PYPXE_E2E_LOGS", "/tmp/pypxe-e2e-logs");
const TIMEOUT_MS = Number(envOr("PYPXE_E2E_TIMEOUT_MS", "240000"));
const FIXTURE = new URL("../fixtures/machines/", import.meta.url).pathname;
const FAKE_API = new URL("../helpers/boot_api_server.ts", import.meta.url).pathname;
const HTTP_PORT = 8080;
const API_PORT = 8067;

/** The MACs of the fixture's groups, and two that only the default group (or the boot API) selects. */
const MAC = {
  alpha: "52:54:00:e2:a1:01",
  beta: "52:54:00:e2:b2:02",
  uefi: "52:54:00:e2:c3:03",
  api: "52:54:00:e2:d4:04",
} as const;

/** One run's segment, netboot tree, machines directory and markers. */
interface Bed {
  readonly seg: Segment;
  readonly overlay: string;
  /** Payloads that are not in the netboot tree (the boot API's). */
  readonly outside: string;
  readonly machinesDir: string;
  readonly tokenFile: string;
  readonly logDir: string;
  /** Marker per payload name (`alpha`, `beta`, `fallback`, `api`). */
  readonly markers: Readonly<Record<string, string>>;
}

/** The MAC in the per-machine script's name: `machine/52-54-00-e2-a1-01.ipxe`. */
const scriptOf = (mac: string) => `machine/${mac.replaceAll(":", "-")}.ipxe`;

/** Escapes `text` for a RegExp. */
const re = (text: string) => text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");

/**
 * Builds a bed: the kernel at `vmlinuz` and one initrd per profile at `<profile>/initrd.img` in the
 * netboot tree; `outside` payloads (kernel + initrd) in a directory pypxe does not serve.
 */
async function withBed(
  tag: string,
  payloads: { tree: readonly string[]; outside?: readonly string[] },
  fn: (bed: Bed) => Promise<void>,
): Promise<void> {
  const logDir = join(LOGS, `machines-${tag}`);
  await Deno.mkdir(logDir, { recursive: true });
  const overlay = await Deno.makeTempDir({ prefix: "pypxe-e2e-machines-tree-" });
  const outside = await Deno.makeTempDir({ prefix: "pypxe-e2e-machines-api-" });
  const machinesDir = await Deno.makeTempDir({ prefix: "pypxe-e2e-machines-dir-" });
  const run8 = crypto.randomUUID().slice(0, 8);
  const markers: Record<string, string> = {};
  let seg: Segment | undefined;
  try {
    for (const name of payloads.tree) {
      markers[name] = `PYPXE-M-${name}-${run8}`;
      await Deno.mkdir(join(overlay, name));
      await buildPayload(join(overlay, name), markers[name]);
      // one kernel for every profile, at the tree's top
      await Deno.rename(join(overlay, name, "vmlinuz"), join(overlay, "vmlinuz"));
    }
    for (const name of payloads.outside ?? []) {
      markers[name] = `PYPXE-M-${name}-${run8}`;
      await Deno.mkdir(join(outside, name));
      await buildPayload(join(outside, name), markers[name]);
    }
    for (const sub of ["profiles", "groups"]) {
      await Deno.mkdir(join(machinesDir, sub));
      for await (const e of Deno.readDir(join(FIXTURE, sub))) {
        await Deno.copyFile(join(FIXTURE, sub, e.name), join(machinesDir, sub, e.name));
      }
    }
    const tokenFile = join(machinesDir, "api-token");
    await Deno.writeTextFile(tokenFile, `${crypto.randomUUID()}\n`, { mode: 0o600 });
    seg = await Segment.create(tag);
    await fn({ seg, overlay, outside, machinesDir, tokenFile, logDir, markers });
  } finally {
    await seg?.destroy();
    for (const dir of [overlay, outside, machinesDir]) await Deno.remove(dir, { recursive: true });
  }
}

/** pypxe in the server namespace: full DHCP, iPXE, HTTP on 8080, `--machines`, and `extra`. */
function startServer(bed: Bed, extra: readonly string[]): Promise<PypxeProcess> {
  return startPypxe([
    "--interface",
    bed.seg.serverIf,
    "--netboot-dir",
    bed.overlay,
    "--cache-dir",
    join(bed.outside, "cache"),
    "--verbose",
    "all",
    "--dhcp",
    "--ipxe",
    "--http",
    "--http-port",
    String(HTTP_PORT),
    "--machines",
    bed.machinesDir,
    ...extra,
  ], { prefix: bed.seg.inServer() });
}

/** Saves pypxe's log (after stopping it when `stop`). */
async function savePypxe(bed: Bed, pypxe: PypxeProcess | undefined, stop: boolean): Promise<void> {
  if (pypxe === undefined) return;
  const tail = stop ? `\nexit ${await pypxe.stop("SIGTERM")}` : "";
  await Deno.writeTextFile(join(bed.logDir, "pypxe.log"), pypxe.lines.join("\n") + tail + "\n");
}

/**
 * One VM boot that must reach `profile`'s marker (and show each of `console` on its serial console);
 * returns its time in seconds.
 */
async function bootProfile(
  bed: Bed,
  pypxe: PypxeProcess,
  opts: { label: string; firmware: Firmware; mac: string; profile: string; console?: readonly string[] },
): Promise<number> {
  const serialLog = join(bed.logDir, `serial-${opts.label}.log`);
  const result = await bootVm({
    segment: bed.seg,
    firmware: opts.firmware,
    uefiStack: opts.firmware === "uefi" ? "pxe" : undefined,
    marker: bed.markers[opts.profile],
    mac: opts.mac,
    serialLog,
    timeoutMs: TIMEOUT_MS,
  });
  console.log(
    `machines ${opts.label} (${opts.firmware} ${opts.mac}, expects ${opts.profile}): ` +
      `${result.ok ? "marker seen" : "NO marker"} after ${result.seconds.toFixed(1)} s`,
  );
  await Deno.writeTextFile(join(bed.logDir, "pypxe.log"), pypxe.lines.join("\n") + "\n");
  if (!result.ok) {
    const other = Object.entries(bed.markers).find(([, m]) => result.serial.includes(m));
    assert.fail(
      `${opts.label}: ${
        other !== undefined ? `booted profile ${other[0]} instead of ${opts.profile}` : "no marker"
      } after ${result.seconds.toFixed(1)} s; logs in ${bed.logDir}\n${result.qemuStderr}\n` +
        pypxe.lines.slice(-40).join("\n"),
    );
  }
  for (const line of opts.console ?? []) {
    assert.ok(
      result.serial.includes(line),
      `${opts.label}: serial console lacks "${line}"; see ${serialLog}`,
    );
  }
  return result.seconds;
}

/** Asserts that pypxe's log has a line matching `pattern`. */
function logHas(bed: Bed, pypxe: PypxeProcess, pattern: RegExp, what: string): void {
  assert.match(
    pypxe.lines.join("\n"),
    pattern,
    `${what}: pypxe's log lacks ${pattern}; logs in ${bed.logDir}`,
  );
}

/** The per-machine script, the kernel and the profile's initrd went to the client over HTTP. */
function servedProfile(bed: Bed, pypxe: PypxeProcess, mac: string, profile: string): void {
  for (const file of [scriptOf(mac), "vmlinuz", `${profile}/initrd.img`]) {
    logHas(bed, pypxe, new RegExp(` http .*/${re(file)} 200 \\d+`), `${mac} (${profile})`);
  }
}

// ---------- 1. groups ----------

async function groupsScenario(): Promise<void> {
  await withBed("groups", { tree: ["alpha", "beta", "fallback"] }, async (bed) => {
    let pypxe: PypxeProcess | undefined;
    try {
      pypxe = await startServer(bed, []);
      const started = performance.now();
      const seconds = await Promise.all([
        bootProfile(bed, pypxe, { label: "bios-alpha", firmware: "bios", mac: MAC.alpha, profile: "alpha" }),
        bootProfile(bed, pypxe, { label: "bios-beta", firmware: "bios", mac: MAC.beta, profile: "beta" }),
      ]);
      const total = ((performance.now() - started) / 1000).toFixed(1);
      console.log(
        `machines groups: both BIOS clients booted in ${total} s ` +
          `(alpha ${seconds[0].toFixed(1)} s, beta ${seconds[1].toFixed(1)} s, at the same time)`,
      );
      for (const [mac, profile] of [[MAC.alpha, "alpha"], [MAC.beta, "beta"]]) {
        // DHCP gave the iPXE ROM its per-machine script, over HTTP, instead of boot.http.ipxe
        logHas(
          bed,
          pypxe,
          new RegExp(
            `${mac} REQUEST \\(iPXE BIOS\\) -> ACK \\S+ http://\\S+:${HTTP_PORT}/${re(scriptOf(mac))}`,
          ),
          profile,
        );
        servedProfile(bed, pypxe, mac, profile);
      }
      assert.doesNotMatch(pypxe.lines.join("\n"), /boot\.http\.ipxe 200/, "a client got the menu");
      assert.doesNotMatch(pypxe.lines.join("\n"), /fallback\/initrd\.img/, "a client got the default");
    } finally {
      await savePypxe(bed, pypxe, true);
    }
  });
}

// ---------- 2. one-shot (UEFI) ----------

/** A machine as the API shows it (the fields this test reads). */
interface MachineJson {
  mac: string;
  profile: string | null;
  next: { profile: string } | null;
  lastBoot: { profile: string; stage: string } | null;
  arch?: string;
  client?: string;
}

/** A machine's last boot as `{profile, stage}` (null when none). */
const bootOf = (m: MachineJson) =>
  m.lastBoot === null ? null : { profile: m.lastBoot.profile, stage: m.lastBoot.stage };

/** `pypxe ARGS --api-listen 127.0.0.1:8067 --api-token-file F` inside the server namespace. */
async function cli(
  bed: Bed,
  args: readonly string[],
): Promise<{ code: number; stdout: string; stderr: string }> {
  const r = await runPypxeOnce(
    [...args, "--api-listen", `127.0.0.1:${API_PORT}`, "--api-token-file", bed.tokenFile],
    { prefix: bed.seg.inServer(), timeoutMs: 30_000 },
  );
  assert.equal(r.code, 0, `pypxe ${args.join(" ")} exited ${r.code}:\n${r.stdout}\n${r.stderr}`);
  return r;
}

/** One machine from `pypxe machines --json`. */
async function machineByCli(bed: Bed, mac: string): Promise<MachineJson | undefined> {
  const r = await cli(bed, ["machines", "--json"]);
  return (JSON.parse(r.stdout) as { machines: MachineJson[] }).machines.find((m) => m.mac === mac);
}

/** GET /api/machines/MAC with curl inside the server namespace. */
async function machineByCurl(bed: Bed, mac: string): Promise<MachineJson> {
  const r = await run(
    [
      "curl",
      "-sS",
      "--max-time",
      "10",
      "-w",
      "\n%{http_code}",
      `http://127.0.0.1:${API_PORT}/api/machines/${mac}`,
    ],
    { netns: bed.seg.serverNs, timeoutMs: 20_000 },
  );
  const nl = r.stdout.lastIndexOf("\n");
  assert.equal(r.stdout.slice(nl + 1), "200", `GET /api/machines/${mac}: ${r.stdout}\n${r.stderr}`);
  return JSON.parse(r.stdout.slice(0, nl)) as MachineJson;
}

async function oneShotScenario(): Promise<void> {
  await withBed("oneshot", { tree: ["alpha", "fallback"] }, async (bed) => {
    let pypxe: PypxeProcess | undefined;
    try {
      pypxe = await startServer(bed, [
        "--api-listen",
        `127.0.0.1:${API_PORT}`,
        "--api-token-file",
        bed.tokenFile,
      ]);
      const set = await cli(bed, ["next", MAC.uefi, "alpha"]);
      assert.equal(set.stdout, `${MAC.uefi}: next boot alpha, once\n`);
      const before = await machineByCli(bed, MAC.uefi);
      assert.deepEqual(before?.next, { profile: "alpha" }, JSON.stringify(before));
      assert.equal(before?.profile, "alpha");

      const first = await bootProfile(bed, pypxe, {
        label: "uefi-oneshot",
        firmware: "uefi",
        mac: MAC.uefi,
        profile: "alpha",
        // UEFI iPXE's console is the serial port: the per-machine script says why
        console: [`pypxe: ${MAC.uefi} boots profile alpha (one-shot)`],
      });
      servedProfile(bed, pypxe, MAC.uefi, "alpha");
      logHas(bed, pypxe, new RegExp(`${MAC.uefi}: one-shot alpha booted`), "one-shot");
      // the one-shot is used up: the CLI and the API agree
      const views: [string, MachineJson | undefined][] = [
        ["pypxe machines --json", await machineByCli(bed, MAC.uefi)],
        [`GET /api/machines/${MAC.uefi}`, await machineByCurl(bed, MAC.uefi)],
      ];
      for (const [how, m] of views) {
        const text = JSON.stringify(m);
        assert.ok(m !== undefined, `${how}: ${MAC.uefi} not in the inventory`);
        assert.equal(m.next, null, `${how}: one-shot still pending: ${text}`);
        assert.deepEqual(bootOf(m), { profile: "alpha", stage: "done" }, `${how}: ${text}`);
        assert.equal(m.profile, "fallback", `${how}: the next boot should be the default: ${text}`);
        assert.equal(m.arch, "efi64", `${how}: ${text}`);
      }
      const table = (await cli(bed, ["machines"])).stdout;
      assert.match(table, new RegExp(`^${MAC.uefi} +efi64 .* fallback +- +alpha: done `, "m"), table);

      const second = await bootProfile(bed, pypxe, {
        label: "uefi-after-oneshot",
        firmware: "uefi",
        mac: MAC.uefi,
        profile: "fallback",
        console: [`pypxe: ${MAC.uefi} boots profile fallback (group zz-default)`],
      });
      servedProfile(bed, pypxe, MAC.uefi, "fallback");
      const after = await machineByCurl(bed, MAC.uefi);
      assert.equal(after.next, null, JSON.stringify(after));
      assert.deepEqual(bootOf(after), { profile: "fallback", stage: "done" }, JSON.stringify(after));
      const times = `boot 1 (alpha) ${first.toFixed(1)} s, boot 2 (fallback) ${second.toFixed(1)} s`;
      console.log(`machines one-shot: UEFI ${times}`);
    } finally {
      await savePypxe(bed, pypxe, true);
    }
  });
}

// ---------- 3 + 4. boot API, then the API stopped ----------

async function bootApiScenario(): Promise<void> {
  await withBed("bootapi", { tree: ["fallback"], outside: ["api"] }, async (bed) => {
    let pypxe: PypxeProcess | undefined;
    let api: Daemon | undefined;
    try {
      const spec = {
        hostname: bed.seg.serverIp,
        port: 0,
        answers: {
          [MAC.api]: {
            json: {
              // relative: resolved against the API URL, so the client loads them from the API host
              kernel: "/files/vmlinuz",
              initrd: ["/files/initrd.img"],
              cmdline: "console=ttyS0 panic=-1 quiet pypxe_api=1",
              message: "e2e boot API answer",
            },
          },
        },
        files: {
          "/files/vmlinuz": join(bed.outside, "api", "vmlinuz"),
          "/files/initrd.img": join(bed.outside, "api", "initrd.img"),
        },
      };
      api = await startDaemon(
        [Deno.execPath(), "run", "--no-config", "-A", "--no-prompt", FAKE_API, JSON.stringify(spec)],
        { netns: bed.seg.serverNs, ready: /^ready \d+$/, stdin: true, name: "fake boot API" },
      );
      const port = Number(/^ready (\d+)$/.exec(await api.waitFor(/^ready \d+$/))![1]);
      const apiUrl = `http://${bed.seg.serverIp}:${port}/`;
      pypxe = await startServer(bed, ["--boot-api", apiUrl]);

      // 3. the API's answer boots
      const viaApi = await bootProfile(bed, pypxe, {
        label: "bios-api",
        firmware: "bios",
        mac: MAC.api,
        profile: "api",
      });
      logHas(
        bed,
        pypxe,
        new RegExp(`${MAC.api} REQUEST \\(iPXE BIOS\\) -> ACK \\S+ http://\\S+/${re(scriptOf(MAC.api))}`),
        "boot API",
      );
      logHas(bed, pypxe, new RegExp(` http .*/${re(scriptOf(MAC.api))} 200 \\d+`), "boot API");
      logHas(
        bed,
        pypxe,
        new RegExp(`boot API GET ${re(apiUrl)}v1/boot/${MAC.api}\\?\\S* -> profile`),
        "boot API",
      );
      const upLog = pypxe.lines.join("\n");
      // the kernel and initrd came from the API host, through pypxe's remote cache (not from its tree)
      assert.match(upLog, / http .*\/remote\/[0-9a-f]{16}\/vmlinuz 200 /, "the API's kernel via the cache");
      assert.match(
        upLog,
        / http .*\/remote\/[0-9a-f]{16}\/initrd\.img 200 /,
        "the API's initrd via the cache",
      );
      assert.doesNotMatch(upLog, / http [^ ]+ \/(vmlinuz|initrd\.img) 200 /, "served from the tree");
      assert.doesNotMatch(upLog, /WARN .*boot API/, "boot API warnings while it was up");
      const server = pypxe;
      let seen = server.lines.length;
      const lookups = () => {
        const lines = server.lines.slice(seen).filter((l) => l.includes(`boot API GET ${apiUrl}`));
        seen = server.lines.length;
        return lines.map((l) => ({ line: l, ms: Number(/ \((\d+) ms\)$/.exec(l)?.[1] ?? NaN) }));
      };

      // 4a. the API process stopped (SIGSTOP): its kernel still accepts connections, nobody answers, so
      // every lookup runs into pypxe's 2 s timeout and the groups decide
      Deno.kill(api.pid, "SIGSTOP");
      const hung = await bootProfile(bed, pypxe, {
        label: "bios-api-hung",
        firmware: "bios",
        mac: MAC.api,
        profile: "fallback",
      });
      logHas(bed, pypxe, /WARN .*boot API .* unreachable \(timed out after 2000 ms\) for /, "hung API");
      const slow = lookups();
      assert.ok(slow.length > 0, "no boot API lookups while it was stopped");
      for (const { line, ms } of slow) {
        assert.match(line, /-> unreachable \(timed out after 2000 ms\)/);
        assert.ok(ms >= 1900 && ms < 2600, `a lookup did not settle at its 2 s timeout: ${line}`);
      }

      // 4b. the API gone (SIGKILL): connection refused, the groups decide at once
      await api.stop("SIGKILL");
      const gone = await bootProfile(bed, pypxe, {
        label: "bios-api-gone",
        firmware: "bios",
        mac: MAC.api,
        profile: "fallback",
      });
      const refused = lookups();
      assert.ok(refused.length > 0, "no boot API lookups after it was killed");
      for (const { line, ms } of refused) {
        assert.match(line, /-> unreachable \((?!timed out)/);
        assert.ok(ms < 1000, `a refused lookup took long: ${line}`);
      }
      servedProfile(bed, pypxe, MAC.api, "fallback");
      // logged once a minute, not per packet (a later summary line counts the rest)
      const warnings = pypxe.lines.filter((l) => /WARN .*boot API .* unreachable \(/.test(l));
      assert.equal(warnings.length, 1, `unreachable warnings:\n${warnings.join("\n")}`);
      console.log(
        `machines boot API: via API ${viaApi.toFixed(1)} s, API stopped (SIGSTOP) ${hung.toFixed(1)} s, ` +
          `API killed ${gone.toFixed(1)} s`,
      );
    } finally {
      if (api !== undefined) {
        await api.stop("SIGKILL");
        await Deno.writeTextFile(join(bed.logDir, "boot-api.log"), api.lines.join("\n") + "\n");
      }
      await savePypxe(bed, pypxe, true);
    }
  });
}

const scenarios: [string, () => Promise<void>][] = [
  [
    "two BIOS clients (iPXE ROM) with different MACs boot their groups' profiles, at the same time",
    groupsScenario,
  ],
  [
    "UEFI (OVMF PXE -> ipxe.efi) with a one-shot set by `pypxe next`: boots it once, then the default",
    oneShotScenario,
  ],
  [
    "BIOS client driven by --boot-api boots the API's kernel + initrd; with the API stopped, then killed, " +
    "it falls back to the groups",
    bootApiScenario,
  ],
];

for (const [name, fn] of scenarios) {
  Deno.test(requires(unavailable, {
    name: `e2e machines: ${name}`,
    sanitizeResources: false, // subprocess pipes of QEMU are drained by tests/helpers
    sanitizeOps: false,
    fn,
  }));
}
