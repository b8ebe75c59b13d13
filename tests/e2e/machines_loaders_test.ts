/**
 * Per-machine boot (issue 13) through the loaders that are not iPXE: a machine's kernel profile must be
 * rendered for GRUB (including the Secure Boot chain) and for PXELINUX, and each real loader must find its
 * per-machine file by the name pypxe generates it under.
 *
 * 1. Secure Boot: OVMF secboot (Microsoft keys enrolled) PXE -> signed shim -> Debian's signed
 *    grubx64.efi -> the generated `grub/grub.cfg`, whose first lines source
 *    `$prefix/machine/$net_default_mac.cfg` -> `grub/machine/<mac>.cfg` (a kernel profile) -> the signed
 *    kernel with the profile's cmdline.
 * 2. PXELINUX: SeaBIOS (its NIC's iPXE ROM is the PXE stack) with plain PXE, no `--ipxe`: DHCP gives
 *    pxelinux.0, PXELINUX asks for `pxelinux.cfg/01-<mac>` first and boots the profile from it.
 *
 * In both, the tree's menu (menu.json for GRUB, pxelinux.cfg/default for PXELINUX) boots a decoy initrd
 * with its own marker straight away: a loader that misses its per-machine file boots the decoy, and the
 * failure says so. The profile's initrd prints this run's marker, its cmdline carries a token that the
 * kernel's `Kernel command line:` line must show, and pypxe's log must show the per-machine file sent.
 * Each boot's time is printed. Logs (serial, pypxe) are kept under $PYPXE_E2E_LOGS (default
 * /tmp/pypxe-e2e-logs), in `machines-loaders-<tag>/`.
 * @module
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { EMBEDDED_ROOT } from "../../src/netboot/fs.ts";
import { netnsAvailable, Segment } from "../helpers/netns.ts";
import { bootVm, buildPayload, envOr, type Firmware, SECBOOT_CODE } from "../helpers/qemu.ts";
import { type PypxeProcess, startPypxe } from "../helpers/servers.ts";
import { requires } from "../helpers/tools.ts";

const unavailable = netnsAvailable(["qemu-system-x86_64", "cpio"]);
const LOGS = envOr("PYPXE_E2E_LOGS", "/tmp/pypxe-e2e-logs");
const TIMEOUT_MS = Number(envOr("PYPXE_E2E_TIMEOUT_MS", "180000"));

/** Why the files at `paths` cannot be used (missing or not a file), or null. */
function missingFiles(...paths: string[]): string | null {
  const lacking = paths.filter((path) => {
    try {
      return !Deno.statSync(path).isFile;
    } catch {
      return true;
    }
  });
  return lacking.length === 0
    ? null
    : `missing ${lacking.join(", ")}: install the packages and run deno task netboot`;
}

/** Escapes `text` for a RegExp. */
const re = (text: string) => text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");

/** One loader scenario. */
interface Scenario {
  readonly tag: string;
  readonly firmware: Firmware;
  readonly secureBoot: boolean;
  readonly mac: string;
  /** pypxe flags besides --interface, --netboot-dir, --verbose, --dhcp and --machines. */
  readonly args: readonly string[];
  /** The tree's own menu that boots the decoy (`menu/initrd.img`) at once. */
  readonly menuFiles: (decoyCmdline: string) => Record<string, string>;
  /** The per-machine file the loader must fetch (tree name as pypxe logs it). */
  readonly machineFile: string;
  /** DHCP's answer for the client, as pypxe logs it. */
  readonly dhcp: RegExp;
  /** More lines the serial console must show. */
  readonly serial: readonly RegExp[];
}

/** Boots one QEMU client against pypxe with `--machines`; asserts it booted the machine's profile. */
async function runScenario(s: Scenario): Promise<void> {
  const logDir = join(LOGS, `machines-loaders-${s.tag}`);
  await Deno.mkdir(logDir, { recursive: true });
  const overlay = await Deno.makeTempDir({ prefix: "pypxe-e2e-mloaders-tree-" });
  const machines = await Deno.makeTempDir({ prefix: "pypxe-e2e-mloaders-dir-" });
  const run8 = crypto.randomUUID().slice(0, 8);
  const marker = `PYPXE-ML-profile-${run8}`;
  const decoy = `PYPXE-ML-decoy-${run8}`;
  const token = `pypxe_machine=${s.tag}-${run8}`;
  let seg: Segment | undefined;
  let pypxe: PypxeProcess | undefined;
  try {
    // the profile's payload at the tree's top; the decoy's initrd under menu/ (same kernel)
    await buildPayload(overlay, marker);
    const decoyDir = join(overlay, "menu");
    await Deno.mkdir(decoyDir);
    await buildPayload(decoyDir, decoy);
    await Deno.remove(join(decoyDir, "vmlinuz"));
    for (const [name, text] of Object.entries(s.menuFiles("console=ttyS0 panic=-1 pypxe_machine=decoy"))) {
      await Deno.mkdir(join(overlay, name, ".."), { recursive: true });
      await Deno.writeTextFile(join(overlay, name), text);
    }
    await Deno.mkdir(join(machines, "profiles"));
    await Deno.mkdir(join(machines, "groups"));
    // not quiet: the kernel's command line (and under Secure Boot its lockdown line) must reach the console
    await Deno.writeTextFile(
      join(machines, "profiles", "loader.json"),
      JSON.stringify({
        kernel: "vmlinuz",
        initrd: ["initrd.img"],
        cmdline: `console=ttyS0 panic=-1 ${token}`,
      }),
    );
    // the selector in another spelling than the loaders use: pypxe normalises it
    await Deno.writeTextFile(
      join(machines, "groups", "vm.json"),
      JSON.stringify({ profile: "loader", selector: { mac: s.mac.toUpperCase().replaceAll(":", "-") } }),
    );

    seg = await Segment.create(s.tag);
    pypxe = await startPypxe([
      "--interface",
      seg.serverIf,
      "--netboot-dir",
      overlay,
      "--verbose",
      "all",
      "--dhcp",
      "--machines",
      machines,
      ...s.args,
    ], { prefix: seg.inServer() });
    const result = await bootVm({
      segment: seg,
      firmware: s.firmware,
      uefiStack: s.firmware === "uefi" ? "pxe" : undefined,
      secureBoot: s.secureBoot,
      marker,
      mac: s.mac,
      serialLog: join(logDir, "serial.log"),
      timeoutMs: TIMEOUT_MS,
    });
    const log = pypxe.lines.join("\n");
    await Deno.writeTextFile(join(logDir, "pypxe.log"), log + "\n");
    // what the loader asked for, for the failure messages: every TFTP name it requested
    const asked = pypxe.lines.filter((l) => / tftp /.test(l) && !/listening|main/.test(l))
      .map((l) => l.replace(/^\S+ \S+ +\S+ +tftp +/, "")).join("\n");
    console.log(
      `machines loaders ${s.tag} (${s.firmware}${s.secureBoot ? " Secure Boot" : ""} ${s.mac}): ` +
        `${result.ok ? "profile marker seen" : "NO profile marker"} after ${result.seconds.toFixed(1)} s`,
    );
    if (!result.ok) {
      const what = result.serial.includes(decoy)
        ? "booted the menu's decoy instead of the machine's profile"
        : "no marker";
      assert.fail(
        `${s.tag}: ${what} after ${result.seconds.toFixed(1)} s; logs in ${logDir}\n` +
          `TFTP requests:\n${asked}\n${result.qemuStderr}\nserial tail:\n${result.serial.slice(-1500)}`,
      );
    }
    const dhcpLines = pypxe.lines.filter((l) => / dhcp +\S+ (DISCOVER|REQUEST) /.test(l)).join("\n");
    assert.match(log, s.dhcp, `${s.tag}: DHCP did not answer ${s.dhcp}; it said:\n${dhcpLines}`);
    assert.match(
      log,
      new RegExp(` tftp .* ${re(s.machineFile)} \\d+ bytes in `),
      `${s.tag}: ${s.machineFile} was not sent; TFTP requests:\n${asked}`,
    );
    assert.match(
      result.serial,
      new RegExp(`Kernel command line: (\\S+ )*console=ttyS0 panic=-1 ${re(token)}\\s`),
      `${s.tag}: the kernel did not get the profile's cmdline; see ${logDir}/serial.log`,
    );
    assert.ok(!result.serial.includes(decoy), `${s.tag}: the decoy booted too`);
    for (const line of s.serial) {
      assert.match(result.serial, line, `${s.tag}: serial console lacks ${line}; see ${logDir}/serial.log`);
    }
  } finally {
    if (pypxe !== undefined) {
      const code = await pypxe.stop("SIGTERM");
      await Deno.writeTextFile(join(logDir, "pypxe.log"), pypxe.lines.join("\n") + `\nexit ${code}\n`);
    }
    await seg?.destroy();
    for (const dir of [overlay, machines]) await Deno.remove(dir, { recursive: true });
  }
}

const SB_MAC = "52:54:00:e2:5b:01";
const PX_MAC = "52:54:00:e2:9c:02";

const scenarios: { name: string; needs: string | null; scenario: Scenario }[] = [
  {
    name: "Secure Boot: OVMF secboot -> shim -> signed GRUB -> grub/machine/MAC.cfg -> the profile's kernel",
    needs: missingFiles(
      join(EMBEDDED_ROOT, "shimx64.efi"),
      join(EMBEDDED_ROOT, "grubx64.efi"),
      SECBOOT_CODE,
      "/usr/share/OVMF/OVMF_VARS_4M.ms.fd",
    ),
    scenario: {
      tag: "mlsb",
      firmware: "uefi",
      secureBoot: true,
      mac: SB_MAC,
      args: ["--secure-boot"],
      // no grub/grub.cfg in the tree: pypxe generates it (with the per-machine hook) from menu.json
      menuFiles: (cmdline) => ({
        "menu.json": JSON.stringify({
          timeout: 1,
          default: "decoy",
          entries: [{ id: "decoy", label: "Decoy", kernel: "vmlinuz", initrd: "menu/initrd.img", cmdline }],
        }),
      }),
      // GRUB's $net_default_mac: lower case with colons, as pypxe names the file
      machineFile: `grub/machine/${SB_MAC}.cfg`,
      dhcp: new RegExp(`${re(SB_MAC)} REQUEST \\(UEFI x64\\) -> ACK \\S+ shimx64\\.efi`),
      serial: [
        // GRUB sourced the per-machine file: its echo is on the console
        new RegExp(`pypxe: ${re(SB_MAC)} boots profile loader`),
        /secureboot: Secure boot enabled/,
        /Kernel is locked down from EFI Secure Boot/,
      ],
    },
  },
  {
    name:
      "PXELINUX: SeaBIOS plain PXE (no --ipxe) -> pxelinux.0 -> pxelinux.cfg/01-MAC -> the profile's kernel",
    needs: missingFiles(join(EMBEDDED_ROOT, "pxelinux.0"), join(EMBEDDED_ROOT, "ldlinux.c32")),
    scenario: {
      tag: "mlpx",
      firmware: "bios",
      secureBoot: false,
      mac: PX_MAC,
      args: [],
      menuFiles: (cmdline) => ({
        "pxelinux.cfg/default":
          `DEFAULT decoy\nPROMPT 0\nLABEL decoy\n  KERNEL vmlinuz\n  INITRD menu/initrd.img\n  APPEND ${cmdline}\n`,
      }),
      machineFile: `pxelinux.cfg/01-${PX_MAC.replaceAll(":", "-")}`,
      dhcp: new RegExp(`${re(PX_MAC)} REQUEST \\(iPXE BIOS\\) -> ACK \\S+ pxelinux\\.0`),
      serial: [],
    },
  },
];

for (const { name, needs, scenario } of scenarios) {
  Deno.test(requires([unavailable, needs], {
    name: `e2e machines loaders: ${name}`,
    sanitizeResources: false, // subprocess pipes of QEMU are drained by tests/helpers
    sanitizeOps: false,
    fn: () => runScenario(scenario),
  }));
}
