/**
 * ARM64 UEFI boots end to end: an emulated ARM64 machine (QEMU `virt`, AAVMF, UEFI's own PXE stack, so
 * DHCP arch 11) PXE-boots Debian's signed network GRUB from pypxe, which reads `grub/grub.cfg` over TFTP
 * and boots Debian's arm64 kernel + a busybox initramfs printing this run's marker on the serial console.
 * The arm64 packages are fetched once into $PYPXE_ARM64_CACHE (see arm64.ts). Logs (serial, pypxe,
 * packet capture) are kept under $PYPXE_E2E_LOGS (default /tmp/pypxe-e2e-logs).
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { EMBEDDED_ROOT } from "../../src/netboot/fs.ts";
import { startPypxe } from "../helpers/pypxe.ts";
import {
  ARM64_TOOLS,
  arm64FirmwareUnavailable,
  arm64MenuJson,
  bootArm64Vm,
  buildArm64Payload,
  fetchArm64Files,
} from "./arm64.ts";
import { e2eUnavailable, envOr, have, REQUIRE_E2E, Segment } from "./harness.ts";

const fetched = await (async () => {
  const problem = (await e2eUnavailable(ARM64_TOOLS)) ?? (await arm64FirmwareUnavailable());
  if (problem !== null) return { files: null, reason: problem };
  return await fetchArm64Files();
})();
const unavailable = fetched.reason;
if (unavailable !== null && REQUIRE_E2E) {
  Deno.test("e2e arm64 tier is available (PYPXE_REQUIRE_E2E=1)", () => {
    throw new Error(`e2e arm64 tier required but unavailable: ${unavailable}`);
  });
} else if (unavailable !== null) {
  console.log(`e2e arm64: skipped: ${unavailable}`);
}
const LOGS = envOr("PYPXE_E2E_LOGS", "/tmp/pypxe-e2e-logs");
const NAME =
  "ARM64 UEFI full DHCP: AAVMF PXE (arch 11) -> TFTP grubaa64.efi -> generated grub/grub.cfg -> kernel";

async function runArm64(): Promise<void> {
  const files = fetched.files!;
  const logDir = join(LOGS, NAME.replaceAll(/[^a-z0-9]+/gi, "-"));
  await Deno.mkdir(logDir, { recursive: true });
  const overlay = await Deno.makeTempDir({ prefix: "pypxe-e2e-netboot-" });
  const marker = `PYPXE-E2E-${crypto.randomUUID().slice(0, 8)}`;
  const mac = "52:54:00:e2:a6:40";
  const seg = await Segment.create("arm64");
  let pcap: Deno.ChildProcess | undefined;
  let pypxe: Awaited<ReturnType<typeof startPypxe>> | undefined;
  try {
    await buildArm64Payload(files, overlay, marker);
    // grubaa64.efi is pypxe's ARM64 default: from the embedded tree after `deno task netboot --arm64`,
    // else from the same package in the test's cache
    if (!(await Deno.stat(join(EMBEDDED_ROOT, "grubaa64.efi")).then(() => true, () => false))) {
      await Deno.copyFile(files.grubNet, join(overlay, "grubaa64.efi"));
    }
    // no grub/grub.cfg: pypxe generates it from menu.json (GRUB's embedded prefix is /grub)
    await Deno.writeTextFile(join(overlay, "menu.json"), arm64MenuJson());
    if (await have("tcpdump")) {
      pcap = new Deno.Command("ip", {
        args: [
          ...seg.inServer().slice(1),
          "tcpdump",
          "-q",
          "-i",
          seg.serverIf,
          "-w",
          join(logDir, "segment.pcap"),
        ],
        stdout: "null",
        stderr: "null",
      }).spawn();
    }
    pypxe = await startPypxe(
      [
        "--interface",
        seg.serverIf,
        "--netboot-dir",
        overlay,
        "--verbose",
        "all",
        "--dhcp",
      ],
      { prefix: seg.inServer() },
    );
    const result = await bootArm64Vm({
      segment: seg,
      marker,
      mac,
      serialLog: join(logDir, "serial-0-arm64.log"),
      timeoutMs: Number(envOr("PYPXE_E2E_TIMEOUT_MS", "240000")),
    });
    await Deno.writeTextFile(join(logDir, "pypxe.log"), pypxe.lines.join("\n") + "\n");
    console.log(`${NAME}: ${result.ok ? "marker seen" : "NO marker"} after ${result.seconds.toFixed(1)} s`);
    assert.ok(
      result.ok,
      `${NAME}: marker ${marker} not on the serial console; logs in ${logDir}\n${result.qemuStderr}\n` +
        pypxe.lines.slice(-30).join("\n"),
    );
    // the boot went the way the test means: arch 11 classified, GRUB fetched its config from pypxe
    const log = pypxe.lines.join("\n");
    assert.match(log, new RegExp(`${mac} DISCOVER \\(UEFI arm64\\) -> OFFER \\S+ grubaa64\\.efi`));
    assert.match(log, / grub\/grub\.cfg \d+ bytes in /);
    // the generated menu showed the arm64 entry and hid the x86_64 one ($grub_cpu filter)
    assert.match(result.serial, /ARM64 marker payload/);
    assert.doesNotMatch(result.serial, /hidden on arm64/);
    assert.match(log, / vmlinuz-arm64 [\d.]+ MB in /);
  } finally {
    if (pypxe) {
      const code = await pypxe.stop("SIGTERM");
      await Deno.writeTextFile(join(logDir, "pypxe.log"), pypxe.lines.join("\n") + `\nexit ${code}\n`);
    }
    if (pcap) {
      try {
        pcap.kill("SIGTERM");
      } catch {
        // already gone
      }
      await pcap.status;
    }
    await seg.destroy();
    await Deno.remove(overlay, { recursive: true });
  }
}

Deno.test({
  name: `e2e: ${NAME}`,
  ignore: unavailable !== null,
  sanitizeResources: false, // subprocess pipes of QEMU/tcpdump are drained by the harness
  sanitizeOps: false,
  fn: runArm64,
});
