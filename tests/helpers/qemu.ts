/**
 * QEMU network boots for the e2e tests and the boot benchmark: the payload (a Debian kernel and a busybox
 * initramfs that prints a per-run marker on the serial console), a bootable ISO of it, and {@linkcode bootVm}:
 * one QEMU client (SeaBIOS + iPXE ROM, OVMF, or AAVMF on ARM64) on a {@linkcode Segment}'s bridge, watched
 * until the marker appears.
 * @module
 */
import { join } from "node:path";
import type { Segment } from "./netns.ts";
import { run } from "./run.ts";

/** The boot payload: a Debian kernel and a busybox initramfs whose /init prints `marker` and powers off. */
export interface Payload {
  readonly kernel: string;
  readonly initrd: string;
  readonly marker: string;
}

/** Finds the newest installed Debian kernel image. */
export async function findKernel(): Promise<string | null> {
  const names: string[] = [];
  for await (const e of Deno.readDir("/boot")) if (/^vmlinuz-/.test(e.name)) names.push(e.name);
  names.sort();
  return names.length > 0 ? `/boot/${names[names.length - 1]}` : null;
}

/** Copies the kernel and builds the initramfs into `dir` (as `vmlinuz` and `initrd.img`). */
export async function buildPayload(dir: string, marker: string): Promise<Payload> {
  const kernel = await findKernel();
  if (kernel === null) throw new Error("no /boot/vmlinuz-*: apt-get install linux-image-amd64");
  const busybox = ["/bin/busybox", "/usr/bin/busybox"].find((p) => {
    try {
      return Deno.statSync(p).isFile;
    } catch {
      return false;
    }
  });
  if (busybox === undefined) throw new Error("no busybox: apt-get install busybox-static");
  const root = await Deno.makeTempDir({ prefix: "pypxe-initrd-" });
  try {
    await Deno.mkdir(join(root, "bin"));
    await Deno.mkdir(join(root, "proc"));
    await Deno.mkdir(join(root, "dev"));
    await Deno.copyFile(busybox, join(root, "bin", "busybox"));
    await Deno.chmod(join(root, "bin", "busybox"), 0o755);
    await Deno.symlink("busybox", join(root, "bin", "sh"));
    await Deno.writeTextFile(
      join(root, "init"),
      `#!/bin/sh\n/bin/busybox mount -t proc proc /proc\n/bin/busybox echo "${marker}"\n/bin/busybox echo "${marker}" > /dev/ttyS0\n/bin/busybox sync\n/bin/busybox poweroff -f\n`,
    );
    await Deno.chmod(join(root, "init"), 0o755);
    const initrd = join(dir, "initrd.img");
    await run(["sh", "-c", `cd '${root}' && find . | cpio -o -H newc --quiet > '${initrd}'`], {
      check: true,
    });
    await Deno.copyFile(kernel, join(dir, "vmlinuz"));
  } finally {
    await Deno.remove(root, { recursive: true });
  }
  return { kernel: join(dir, "vmlinuz"), initrd: join(dir, "initrd.img"), marker };
}

/** Builds a BIOS-bootable ISO (isolinux) at `iso` that boots the payload in `payloadDir`. */
export async function buildIso(payloadDir: string, iso: string): Promise<void> {
  const root = await Deno.makeTempDir({ prefix: "pypxe-iso-" });
  try {
    await Deno.mkdir(join(root, "isolinux"));
    await Deno.copyFile("/usr/lib/ISOLINUX/isolinux.bin", join(root, "isolinux", "isolinux.bin"));
    await Deno.copyFile("/usr/lib/syslinux/modules/bios/ldlinux.c32", join(root, "isolinux", "ldlinux.c32"));
    await Deno.copyFile(join(payloadDir, "vmlinuz"), join(root, "vmlinuz"));
    await Deno.copyFile(join(payloadDir, "initrd.img"), join(root, "initrd.img"));
    await Deno.writeTextFile(
      join(root, "isolinux", "isolinux.cfg"),
      "DEFAULT m\nPROMPT 0\nLABEL m\n  KERNEL /vmlinuz\n  INITRD /initrd.img\n  APPEND console=ttyS0 panic=-1 quiet\n",
    );
    await run([
      "xorriso",
      "-as",
      "mkisofs",
      "-quiet",
      "-o",
      iso,
      "-b",
      "isolinux/isolinux.bin",
      "-c",
      "isolinux/boot.cat",
      "-no-emul-boot",
      "-boot-load-size",
      "4",
      "-boot-info-table",
      root,
    ], { timeoutMs: 60_000, check: true });
  } finally {
    await Deno.remove(root, { recursive: true });
  }
}

/** OVMF built with Secure Boot and SMM (Debian's ovmf package). */
export const SECBOOT_CODE = "/usr/share/OVMF/OVMF_CODE_4M.secboot.fd";

/** Which firmware boots the VM: SeaBIOS, OVMF (x86_64 UEFI) or AAVMF (ARM64 UEFI on QEMU `virt`). */
export type Firmware = "bios" | "uefi" | "arm64";

/** The AAVMF (ARM64 OVMF) firmware images of Debian's qemu-efi-aarch64 package. */
export const AAVMF_CODE = "/usr/share/AAVMF/AAVMF_CODE.fd";
/** The AAVMF variable store template (copied per VM). */
export const AAVMF_VARS = "/usr/share/AAVMF/AAVMF_VARS.fd";

/** Options of {@linkcode bootVm}. */
export interface BootVmOptions {
  readonly segment: Segment;
  readonly firmware: Firmware;
  readonly marker: string;
  /** Where the serial console goes. */
  readonly serialLog: string;
  /**
   * For UEFI: `pxe` (OVMF's PxeBcDxe, no option ROM), `http` (OVMF's HttpBootDxe: PXE switched off
   * through OVMF's fw_cfg knobs) or `ipxe-rom` (iPXE's EFI ROM).
   */
  readonly uefiStack?: "pxe" | "http" | "ipxe-rom";
  /**
   * UEFI with Secure Boot enforced: Debian's `OVMF_CODE_4M.secboot.fd` with the Microsoft keys enrolled
   * (`OVMF_VARS_4M.ms.fd`), on q35 with SMM so the variable store is protected.
   */
  readonly secureBoot?: boolean;
  readonly mac?: string;
  readonly timeoutMs?: number;
}

/** Boots one QEMU client on the segment; resolves with whether the marker appeared and how long it took. */
export async function bootVm(
  opts: BootVmOptions,
): Promise<{ ok: boolean; seconds: number; serial: string; qemuStderr: string }> {
  // a log left by an earlier run must not be read as this boot's console
  await Deno.writeTextFile(opts.serialLog, "");
  const tap = await opts.segment.addTap();
  const mac = opts.mac ??
    `52:54:00:${
      [0, 0, 0].map(() => Math.floor(Math.random() * 256).toString(16).padStart(2, "0")).join(":")
    }`;
  // /dev/kvm may exist yet fail ("emulation failure" in nested setups): TCG unless asked for KVM
  const arm = opts.firmware === "arm64";
  const args = arm
    ? [
      "qemu-system-aarch64",
      "-M",
      "virt",
      "-cpu",
      envOr("PYPXE_E2E_ARM64_CPU", "cortex-a57"),
      "-accel",
      envOr("PYPXE_E2E_ARM64_ACCEL", "tcg"),
      "-m",
      "1024",
    ]
    : ["qemu-system-x86_64", "-accel", envOr("PYPXE_E2E_ACCEL", "tcg"), "-m", "512"];
  args.push(
    "-nodefaults",
    "-display",
    "none",
    "-no-reboot",
    "-serial",
    `file:${opts.serialLog}`,
    "-netdev",
    `tap,id=n0,ifname=${tap},script=no,downscript=no`,
  );
  let varsCopy: string | undefined;
  if (opts.firmware === "bios") {
    args.push("-device", `e1000,netdev=n0,mac=${mac}`, "-boot", "n");
  } else if (arm) {
    // UEFI's own PXE stack (no option ROM) answers DHCP with arch 11
    varsCopy = await Deno.makeTempFile({ prefix: "pypxe-aavmf-vars-" });
    await Deno.copyFile(AAVMF_VARS, varsCopy);
    args.push(
      "-drive",
      `if=pflash,format=raw,readonly=on,file=${AAVMF_CODE}`,
      "-drive",
      `if=pflash,format=raw,file=${varsCopy}`,
      "-device",
      `virtio-net-pci,netdev=n0,mac=${mac},romfile=`,
    );
  } else {
    const sb = opts.secureBoot === true;
    varsCopy = await Deno.makeTempFile({ prefix: "pypxe-ovmf-vars-" });
    await Deno.copyFile(`/usr/share/OVMF/OVMF_VARS_4M${sb ? ".ms" : ""}.fd`, varsCopy);
    const rom = opts.uefiStack === "ipxe-rom" ? "" : ",romfile=";
    if (sb) args.push("-machine", "q35,smm=on", "-global", "driver=cfi.pflash01,property=secure,value=on");
    args.push(
      "-drive",
      `if=pflash,format=raw,readonly=on,file=${sb ? SECBOOT_CODE : "/usr/share/OVMF/OVMF_CODE_4M.fd"}`,
      "-drive",
      `if=pflash,format=raw,file=${varsCopy}`,
      "-device",
      `virtio-net-pci,netdev=n0,mac=${mac}${rom}`,
    );
    if (opts.uefiStack === "http") {
      args.push(
        "-fw_cfg",
        "name=opt/org.tianocore/IPv4PXESupport,string=n",
        "-fw_cfg",
        "name=opt/org.tianocore/IPv6PXESupport,string=n",
      );
    }
  }
  const started = performance.now();
  const child = new Deno.Command(opts.segment.inClient()[0], {
    args: [...opts.segment.inClient().slice(1), ...args],
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const deadline = started + (opts.timeoutMs ?? 180_000);
  let serial = "";
  let ok = false;
  let exited = false;
  let qemuStderr = "";
  const status = child.status.then(() => (exited = true));
  const stderrText = new Response(child.stderr).text();
  try {
    while (performance.now() < deadline) {
      try {
        serial = await Deno.readTextFile(opts.serialLog);
      } catch {
        serial = "";
      }
      if (serial.includes(opts.marker)) {
        ok = true;
        break;
      }
      if (exited) break;
      await new Promise((r) => setTimeout(r, 250));
    }
  } finally {
    try {
      if (!exited) child.kill("SIGKILL");
    } catch {
      // QEMU exited (the guest powered off) between the check and the kill
    }
    await status;
    qemuStderr = await stderrText;
    if (varsCopy) await Deno.remove(varsCopy).catch(() => {});
  }
  try {
    serial = await Deno.readTextFile(opts.serialLog);
    ok ||= serial.includes(opts.marker);
  } catch {
    // no serial output at all
  }
  return { ok, seconds: (performance.now() - started) / 1000, serial, qemuStderr };
}

/** An environment variable, or `fallback` when unset or unreadable. */
export function envOr(name: string, fallback: string): string {
  try {
    return Deno.env.get(name) ?? fallback;
  } catch {
    return fallback;
  }
}
