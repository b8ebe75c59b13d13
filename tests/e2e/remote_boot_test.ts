/**
 * Remote boot files with real firmware (issue 17): the kernel and initrd exist only on an HTTP origin
 * (tests/helpers/origin_server.ts in a process of its own) that listens on 127.0.0.1 inside the server
 * namespace: pypxe reaches it, the client VMs' segment cannot (proved: the origin refuses the server's
 * segment address). `menu.json` names the kernel by URL and the initrd as `{"url", "sha256"}`; pypxe
 * serves them as `remote/<key>/<name>` through its cache, cold (nothing fetched before the client asks).
 *
 * 1. BIOS (SeaBIOS + iPXE ROM), TFTP only (no `--http`): boot.ipxe is generated for TFTP, so the kernel
 *    and initrd go to the client over pypxe's TFTP while pypxe downloads them.
 * 2. UEFI (OVMF PXE -> ipxe.efi), with `--http`: boot.http.ipxe, kernel and initrd over pypxe's HTTP.
 *
 * Each boot must reach the initrd's serial marker; the origin must have seen exactly one GET per file.
 * Each boot's time is printed. Logs (serial, pypxe, origin) are kept under $PYPXE_E2E_LOGS (default
 * /tmp/pypxe-e2e-logs), in `remote-<tag>/`.
 * @module
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { remoteName } from "../../src/netboot/remote_url.ts";
import { sha256File } from "../helpers/hash.ts";
import { netnsAvailable, Segment } from "../helpers/netns.ts";
import { bootVm, buildPayload, envOr, type Firmware } from "../helpers/qemu.ts";
import { run } from "../helpers/run.ts";
import { type Daemon, type PypxeProcess, startDaemon, startPypxe } from "../helpers/servers.ts";
import { requires } from "../helpers/tools.ts";

const unavailable = netnsAvailable(["qemu-system-x86_64", "cpio", "curl"]);
const LOGS = envOr("PYPXE_E2E_LOGS", "/tmp/pypxe-e2e-logs");
const TIMEOUT_MS = Number(envOr("PYPXE_E2E_TIMEOUT_MS", "240000"));
const ORIGIN_HELPER = new URL("../helpers/origin_server.ts", import.meta.url).href;
const ORIGIN_PORT = 8088;
const HTTP_PORT = 8080;
/** The origin's bytes per second: the kernel (about 8 MB) takes seconds upstream, so it is sent as it comes. */
const ORIGIN_RATE = 3e6;

/**
 * The origin process: serves every file of $ORIGIN_DIR at `/<name>` on 127.0.0.1:$ORIGIN_PORT and prints
 * `origin ready`, then one `seen METHOD PATH range=...` line per request.
 */
const ORIGIN_SCRIPT = `
const { OriginServer } = await import(Deno.env.get("ORIGIN_HELPER"));
const dir = Deno.env.get("ORIGIN_DIR");
const origin = await OriginServer.start({
  port: Number(Deno.env.get("ORIGIN_PORT")),
  rate: Number(Deno.env.get("ORIGIN_RATE")),
});
for await (const e of Deno.readDir(dir)) origin.put("/" + e.name, await Deno.readFile(dir + "/" + e.name));
console.log("origin ready " + origin.port);
let shown = 0;
setInterval(() => {
  const seen = origin.requests();
  for (; shown < seen.length; shown++) {
    console.log("seen " + seen[shown].method + " " + seen[shown].path + " range=" + seen[shown].range);
  }
}, 50);
`;

/** The time of day of a pypxe log line (`2026-01-01 12:34:56.789 INFO ...`) in ms. */
function clockMs(line: string): number {
  const m = /^\S+ (\d\d):(\d\d):(\d\d\.\d+) /.exec(line);
  assert.ok(m, `no time in ${line}`);
  return ((Number(m[1]) * 60 + Number(m[2])) * 60 + Number(m[3])) * 1000;
}

/** Escapes `text` for a RegExp. */
const re = (text: string) => text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");

/** One boot from a cold cache: its own segment, origin, netboot tree and cache. */
async function bootRemote(opts: { tag: string; firmware: Firmware; http: boolean; mac: string }) {
  const logDir = join(LOGS, `remote-${opts.tag}`);
  await Deno.mkdir(logDir, { recursive: true });
  const work = await Deno.makeTempDir({ prefix: "pypxe-e2e-remote-" });
  const [originDir, tree, cache] = ["origin", "tree", "cache"].map((d) => join(work, d));
  const marker = `PYPXE-REMOTE-${crypto.randomUUID().slice(0, 8)}`;
  let seg: Segment | undefined;
  let origin: Daemon | undefined;
  let pypxe: PypxeProcess | undefined;
  try {
    // the payload lives only in the origin's folder; the netboot tree holds nothing but menu.json
    await Deno.mkdir(originDir);
    await Deno.mkdir(tree);
    await buildPayload(originDir, marker);
    const kernelUrl = `http://127.0.0.1:${ORIGIN_PORT}/vmlinuz`;
    const initrdUrl = `http://127.0.0.1:${ORIGIN_PORT}/initrd.img`;
    const initrdSha = await sha256File(join(originDir, "initrd.img"));
    await Deno.writeTextFile(
      join(tree, "menu.json"),
      JSON.stringify({
        default: "remote",
        timeout: 1,
        entries: [{
          id: "remote",
          label: "Kernel and initrd from the origin",
          kernel: kernelUrl,
          initrd: [{ url: initrdUrl, sha256: initrdSha }],
          cmdline: "console=ttyS0 panic=-1",
        }],
      }),
    );
    seg = await Segment.create(opts.tag);
    origin = await startDaemon([Deno.execPath(), "eval", ORIGIN_SCRIPT], {
      netns: seg.serverNs,
      env: {
        ORIGIN_HELPER,
        ORIGIN_DIR: originDir,
        ORIGIN_PORT: String(ORIGIN_PORT),
        ORIGIN_RATE: String(ORIGIN_RATE),
        NO_COLOR: "1",
      },
      ready: /^origin ready/,
      name: "origin",
    });
    // reachable from the server namespace's loopback only, not on the segment the VM is on
    const local = await run(["curl", "-sS", "-o", "/dev/null", "-I", "--max-time", "5", kernelUrl], {
      netns: seg.serverNs,
    });
    assert.equal(local.code, 0, `the origin does not answer on loopback: ${local.stderr}`);
    const onSegment = await run(
      ["curl", "-sS", "-o", "/dev/null", "--max-time", "5", `http://${seg.serverIp}:${ORIGIN_PORT}/vmlinuz`],
      { netns: seg.serverNs },
    );
    assert.notEqual(onSegment.code, 0, "the origin answers on the client segment's address");

    const http = opts.http ? ["--http", "--http-port", String(HTTP_PORT)] : [];
    pypxe = await startPypxe([
      ...["--interface", seg.serverIf, "--netboot-dir", tree, "--cache-dir", cache, "--verbose", "all"],
      ...["--dhcp", "--ipxe", ...http],
    ], { prefix: seg.inServer() });
    const result = await bootVm({
      segment: seg,
      firmware: opts.firmware,
      uefiStack: opts.firmware === "uefi" ? "pxe" : undefined,
      marker,
      mac: opts.mac,
      serialLog: join(logDir, "serial.log"),
      timeoutMs: TIMEOUT_MS,
    });
    const log = pypxe.lines.join("\n");
    await Deno.writeTextFile(join(logDir, "pypxe.log"), log + "\n");
    console.log(
      `remote ${opts.tag} (${opts.firmware}, ${opts.http ? "HTTP" : "TFTP only"}): ` +
        `${result.ok ? "marker seen" : "NO marker"} after ${result.seconds.toFixed(1)} s`,
    );
    assert.ok(
      result.ok,
      `marker ${marker} not on the serial console; logs in ${logDir}\n${result.qemuStderr}\n` +
        pypxe.lines.slice(-40).join("\n"),
    );
    // the client got the files from pypxe, under pypxe's names, over the menu's transport
    for (const url of [kernelUrl, initrdUrl]) {
      const name = remoteName(url);
      const served = opts.http
        ? new RegExp(` http .*/${re(name)} 200 \\d+ `)
        : new RegExp(` tftp .* ${re(name)} [\\d.]+ (MB|bytes) in `);
      assert.match(log, served, `pypxe's log lacks ${served}; logs in ${logDir}`);
      assert.match(log, new RegExp(` remote +fetching ${re(url)}`), `pypxe did not fetch ${url}`);
    }
    assert.match(log, / remote .*initrd\.img .* \(sha256 verified\)/, "the initrd's hash was not checked");
    // the kernel went to the client while pypxe was still downloading it
    const kernel = remoteName(kernelUrl);
    const sent = new RegExp(
      opts.http
        ? ` http .*/${re(kernel)} 200 \\d+ ([\\d.]+)s`
        : ` tftp .* ${re(kernel)} [\\d.]+ MB in ([\\d.]+) s`,
    );
    const fetched = new RegExp(` remote +${re(kernelUrl)} [\\d.]+ MB in `);
    const sentLine = pypxe.lines.find((l) => sent.test(l))!;
    const sentStart = clockMs(sentLine) - Number(sent.exec(sentLine)![1]) * 1000;
    const fetchedAt = clockMs(pypxe.lines.find((l) => fetched.test(l))!);
    assert.ok(
      sentStart < fetchedAt,
      `the kernel was sent only after its download ended:\n${sentLine}\n${fetchedAt}`,
    );
    const menu = opts.http ? "boot.http.ipxe" : "boot.ipxe";
    assert.match(
      log,
      opts.http ? new RegExp(` http .*/${re(menu)} 200 `) : new RegExp(` tftp .* ${re(menu)} `),
      `the client did not get ${menu}`,
    );
    // one origin GET per file, whatever the firmware asked of pypxe
    const gets = origin.lines.filter((l) => l.startsWith("seen GET "));
    assert.deepEqual(
      gets.map((l) => l.split(" ")[2]).sort(),
      ["/initrd.img", "/vmlinuz"],
      `origin requests:\n${origin.lines.join("\n")}`,
    );
  } finally {
    if (pypxe) {
      const code = await pypxe.stop("SIGTERM");
      await Deno.writeTextFile(join(logDir, "pypxe.log"), pypxe.lines.join("\n") + `\nexit ${code}\n`);
    }
    if (origin) {
      await origin.stop("SIGTERM");
      await Deno.writeTextFile(join(logDir, "origin.log"), origin.lines.join("\n") + "\n");
    }
    await seg?.destroy();
    await Deno.remove(work, { recursive: true });
  }
}

Deno.test(requires(unavailable, {
  name: "e2e remote: BIOS iPXE, TFTP only -> boot.ipxe -> kernel and initrd that exist only on the origin, " +
    "over pypxe's TFTP",
  sanitizeResources: false, // subprocess pipes of QEMU, pypxe and the origin are drained by tests/helpers
  sanitizeOps: false,
  fn: () => bootRemote({ tag: "rbios", firmware: "bios", http: false, mac: "52:54:00:e2:17:01" }),
}));

Deno.test(requires(unavailable, {
  name: "e2e remote: UEFI (OVMF PXE -> ipxe.efi) with --http -> boot.http.ipxe -> kernel and initrd that " +
    "exist only on the origin, over pypxe's HTTP",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: () => bootRemote({ tag: "ruefi", firmware: "uefi", http: true, mac: "52:54:00:e2:17:02" }),
}));
