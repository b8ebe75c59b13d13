/**
 * Drop-in boot entries with a real client: the netboot tree holds only a kernel folder `debian/`
 * (vmlinuz + initrd.img + a two-line cmdline.txt with a comment) and a `menu.json` of two keys that picks
 * it (`"default": "kernel:debian"`, 1 s timeout: without one the menu waits for a person, defaulting to
 * the local disk). A QEMU BIOS client (SeaBIOS + iPXE ROM) PXE-boots from pypxe in network namespaces,
 * once with TFTP only (pypxe generates boot.ipxe, kernel over TFTP) and once with `--http` (boot.http.ipxe,
 * kernel over HTTP). The serial console must show the kernel's command line as cmdline.txt gave it (one
 * line, comment dropped) and the initrd's marker.
 * Logs (serial, pypxe) are kept under $PYPXE_E2E_LOGS (default /tmp/pypxe-e2e-logs).
 * @module
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { netnsAvailable, Segment } from "../helpers/netns.ts";
import { bootVm, buildPayload, envOr } from "../helpers/qemu.ts";
import { startPypxe } from "../helpers/servers.ts";
import { requires } from "../helpers/tools.ts";

const unavailable = netnsAvailable(["qemu-system-x86_64", "cpio"]);
const LOGS = envOr("PYPXE_E2E_LOGS", "/tmp/pypxe-e2e-logs");

async function bootDropIn(opts: { tag: string; http: boolean }): Promise<void> {
  const logDir = join(LOGS, `dropin-${opts.tag}`);
  await Deno.mkdir(logDir, { recursive: true });
  const overlay = await Deno.makeTempDir({ prefix: "pypxe-e2e-dropin-" });
  const marker = `PYPXE-E2E-${crypto.randomUUID().slice(0, 8)}`;
  const token = crypto.randomUUID().slice(0, 8);
  const seg = await Segment.create(opts.tag);
  let pypxe: Awaited<ReturnType<typeof startPypxe>> | undefined;
  try {
    // the payload lives only in the folder: a boot that shows the marker booted the drop-in
    await Deno.mkdir(join(overlay, "debian"));
    await buildPayload(join(overlay, "debian"), marker);
    await Deno.writeTextFile(
      join(overlay, "debian", "cmdline.txt"),
      `# serial console, and this run's token\nconsole=ttyS0 panic=-1\n  loglevel=6\tpypxe_dropin=${token}\n`,
    );
    await Deno.writeTextFile(
      join(overlay, "menu.json"),
      JSON.stringify({ default: "kernel:debian", timeout: 1 }),
    );
    const http = opts.http ? ["--http", "--http-port", "8080"] : [];
    pypxe = await startPypxe(
      [
        "--interface",
        seg.serverIf,
        "--netboot-dir",
        overlay,
        "--verbose",
        "all",
        "--dhcp",
        "--ipxe",
        ...http,
      ],
      { prefix: seg.inServer() },
    );
    const result = await bootVm({
      segment: seg,
      firmware: "bios",
      marker,
      mac: "52:54:00:e2:d1:01",
      serialLog: join(logDir, "serial.log"),
      timeoutMs: Number(envOr("PYPXE_E2E_TIMEOUT_MS", "240000")),
    });
    const log = pypxe.lines.join("\n");
    await Deno.writeTextFile(join(logDir, "pypxe.log"), log + "\n");
    console.log(
      `drop-in ${opts.tag}: ${result.ok ? "marker seen" : "NO marker"} after ${result.seconds.toFixed(1)} s`,
    );
    assert.ok(
      result.ok,
      `marker ${marker} not on the serial console; logs in ${logDir}\n${result.qemuStderr}\n${log}`,
    );
    // cmdline.txt as one line, its comment dropped, blanks collapsed; iPXE adds initrd= before it
    assert.match(
      result.serial,
      new RegExp(
        `Kernel command line: initrd=initrd\\.img console=ttyS0 panic=-1 loglevel=6 pypxe_dropin=${token}\\s`,
      ),
      `serial console lacks the cmdline.txt arguments; logs in ${logDir}`,
    );
    // the generated menu was fetched, and the kernel and initrd came over the menu's transport
    const menu = opts.http ? "boot.http.ipxe" : "boot.ipxe";
    for (const file of [menu, "debian/vmlinuz", "debian/initrd.img"]) {
      const name = file.replaceAll(".", "\\.");
      const re = opts.http
        ? new RegExp(` http .*/${name} 200 \\d+`)
        : new RegExp(` tftp .* ${name} [\\d.]+ (MB|bytes) in `);
      assert.match(log, re, `pypxe's log lacks ${re}; logs in ${logDir}`);
    }
  } finally {
    if (pypxe) {
      const code = await pypxe.stop("SIGTERM");
      await Deno.writeTextFile(join(logDir, "pypxe.log"), pypxe.lines.join("\n") + `\nexit ${code}\n`);
    }
    await seg.destroy();
    await Deno.remove(overlay, { recursive: true });
  }
}

for (const [tag, http] of [["dtftp", false], ["dhttp", true]] as const) {
  Deno.test(requires(unavailable, {
    name: `e2e drop-in: BIOS iPXE -> generated ${http ? "boot.http.ipxe (HTTP)" : "boot.ipxe (TFTP only)"} ` +
      "-> kernel folder debian/ with its cmdline.txt",
    sanitizeResources: false, // subprocess pipes of QEMU are drained by tests/helpers
    sanitizeOps: false,
    fn: () => bootDropIn({ tag, http }),
  }));
}
