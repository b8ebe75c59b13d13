/**
 * ARM64 end-to-end helpers: fetches Debian's arm64 boot chain (signed network GRUB, kernel, static
 * busybox) as .debs without installing them and builds the marker payload from them (the VM itself is
 * `bootVm` of tests/helpers/qemu.ts with firmware `arm64`).
 *
 * The .debs are fetched with `apt-get download PKG:arm64` (after `dpkg --add-architecture arm64` and
 * `apt-get update` when arm64 is not configured yet) into a cache directory, default
 * /var/cache/pypxe-e2e-arm64 (env `PYPXE_ARM64_CACHE`), unpacked there with `dpkg-deb -x` and reused by
 * later runs.
 * @module
 */
import { basename, join } from "node:path";
import { AAVMF_CODE, AAVMF_VARS, envOr } from "../helpers/qemu.ts";
import { run, type RunResult } from "../helpers/run.ts";

/** Tools the ARM64 tier needs on PATH (for netnsAvailable, tests/helpers/netns.ts). */
export const ARM64_TOOLS = ["qemu-system-aarch64", "ip", "cpio", "dpkg", "dpkg-deb", "apt-get", "apt-cache"];

/** The unpacked arm64 files, inside the cache. */
export interface Arm64Files {
  /** Debian's signed network GRUB (`grubnetaa64.efi.signed`); its prefix is `/grub` on the boot server. */
  readonly grubNet: string;
  /** The arm64 kernel as shipped (`/boot/vmlinuz-*`): a PE/EFI-stub Image, or gzip of one. */
  readonly kernel: string;
  /** The static arm64 busybox. */
  readonly busybox: string;
  /** The Debian packages they came from (`name=version`). */
  readonly packages: readonly string[];
}

/** Either the files or why they cannot be had. */
export type Arm64Fetch =
  | { readonly files: Arm64Files; readonly reason: null }
  | { readonly files: null; readonly reason: string };

/** The cache directory: `$PYPXE_ARM64_CACHE`, default /var/cache/pypxe-e2e-arm64. */
export function arm64CacheDir(): string {
  return envOr("PYPXE_ARM64_CACHE", "/var/cache/pypxe-e2e-arm64");
}

/** Returns why the ARM64 firmware cannot run here (missing AAVMF), or null. */
export async function arm64FirmwareUnavailable(): Promise<string | null> {
  for (const file of [AAVMF_CODE, AAVMF_VARS]) {
    try {
      await Deno.stat(file);
    } catch {
      return `${file} is missing: apt-get install qemu-efi-aarch64`;
    }
  }
  return null;
}

const MANIFEST = "manifest.json";
const APT_TIMEOUT_MS = 300_000;

function exists(path: string): boolean {
  try {
    Deno.statSync(path);
    return true;
  } catch {
    return false;
  }
}

/** One line of a failed command, for a reason string. */
function failure(what: string, r: RunResult): string {
  const text = (r.stderr.trim() || r.stdout.trim()).split("\n").slice(-2).join(" / ");
  return `${what} exited ${r.code}${text ? `: ${text}` : ""}`;
}

/** The real package behind the `linux-image-arm64` metapackage, e.g. `linux-image-6.1.0-56-arm64`. */
async function kernelPackage(): Promise<string | null> {
  const r = await run(["apt-cache", "depends", "linux-image-arm64:arm64"], { timeoutMs: 60_000 });
  const m = /Depends: (linux-image-[0-9][^\s:]*-arm64)(?::arm64)?/.exec(r.stdout);
  return r.code === 0 && m ? m[1] : null;
}

/** Makes sure apt knows arm64 packages: adds the architecture and updates the lists when needed. */
async function ensureArm64Apt(): Promise<string | null> {
  const foreign = await run(["dpkg", "--print-foreign-architectures"], { timeoutMs: 30_000 });
  if (foreign.code !== 0) return failure("dpkg --print-foreign-architectures", foreign);
  let update = false;
  if (!foreign.stdout.split(/\s+/).includes("arm64")) {
    const add = await run(["dpkg", "--add-architecture", "arm64"], { timeoutMs: 30_000 });
    if (add.code !== 0) return failure("dpkg --add-architecture arm64", add);
    update = true;
  } else if ((await kernelPackage()) === null) {
    update = true; // arm64 configured, but its package lists were never fetched
  }
  if (update) {
    const r = await run(["apt-get", "update", "-q"], { timeoutMs: APT_TIMEOUT_MS });
    if (r.code !== 0) return failure("apt-get update", r);
  }
  return null;
}

/** Downloads `pkgs` (arm64) into `dir`; one `apt-get update` and retry on failure (stale lists). */
async function download(dir: string, pkgs: string[]): Promise<string | null> {
  const cmd = [
    "sh",
    "-c",
    // apt-get download writes into the current directory; as root it warns unless sandboxing is off
    `cd '${dir}' && exec apt-get download -q -o APT::Sandbox::User=root ${
      pkgs.map((p) => `${p}:arm64`).join(" ")
    }`,
  ];
  let r = await run(cmd, { timeoutMs: APT_TIMEOUT_MS });
  if (r.code === 0) return null;
  const up = await run(["apt-get", "update", "-q"], { timeoutMs: APT_TIMEOUT_MS });
  if (up.code !== 0) return failure("apt-get update", up);
  r = await run(cmd, { timeoutMs: APT_TIMEOUT_MS });
  return r.code === 0 ? null : failure(`apt-get download ${pkgs.join(" ")}`, r);
}

/** Reads a finished cache, or null when there is none (or it is incomplete). */
async function readCache(cache: string): Promise<Arm64Files | null> {
  try {
    const files = JSON.parse(await Deno.readTextFile(join(cache, MANIFEST))) as Arm64Files;
    return [files.grubNet, files.kernel, files.busybox].every(exists) ? files : null;
  } catch {
    return null;
  }
}

/**
 * Returns the arm64 files, from the cache when it is complete, else fetching and unpacking the .debs
 * (needs root and the Debian mirror). Never throws: a failure comes back as a reason.
 */
export async function fetchArm64Files(cache = arm64CacheDir()): Promise<Arm64Fetch> {
  const cached = await readCache(cache);
  if (cached !== null) return { files: cached, reason: null };
  try {
    if (Deno.uid() !== 0) {
      return { files: null, reason: `no arm64 cache in ${cache} and not root to fetch it` };
    }
    const aptProblem = await ensureArm64Apt();
    if (aptProblem !== null) return { files: null, reason: aptProblem };
    const kernelPkg = await kernelPackage();
    if (kernelPkg === null) {
      return { files: null, reason: "apt-cache depends linux-image-arm64:arm64 names no kernel package" };
    }
    const pkgs = ["grub-efi-arm64-signed", "busybox-static", kernelPkg];
    const debs = join(cache, "debs");
    await Deno.remove(debs, { recursive: true }).catch(() => {});
    await Deno.mkdir(debs, { recursive: true });
    const dlProblem = await download(debs, pkgs);
    if (dlProblem !== null) return { files: null, reason: dlProblem };
    // unpack into a scratch directory and keep only the three files (the kernel package alone unpacks
    // to ~300 MB of modules); the manifest is written last, so a cut-short run leaves no half cache
    const staging = await Deno.makeTempDir({ dir: cache, prefix: "unpack.tmp-" });
    const packages: string[] = [];
    const kept = join(cache, "files");
    let files: Arm64Files;
    try {
      for await (const entry of Deno.readDir(debs)) {
        if (!entry.name.endsWith(".deb")) continue;
        const deb = join(debs, entry.name);
        const x = await run(["dpkg-deb", "-x", deb, staging], { timeoutMs: 120_000 });
        if (x.code !== 0) return { files: null, reason: failure(`dpkg-deb -x ${entry.name}`, x) };
        const v = await run(["dpkg-deb", "-f", deb, "Package", "Version"], { timeoutMs: 30_000 });
        packages.push(v.stdout.trim().split("\n").map((l) => l.replace(/^\w+: /, "")).join("="));
      }
      const kernels: string[] = [];
      for await (const e of Deno.readDir(join(staging, "boot"))) {
        if (e.name.startsWith("vmlinuz-")) kernels.push(e.name);
      }
      kernels.sort();
      const found = {
        grubNet: join(staging, "usr/lib/grub/arm64-efi-signed/grubnetaa64.efi.signed"),
        kernel: join(staging, "boot", kernels[kernels.length - 1] ?? "vmlinuz-missing"),
        busybox: [join(staging, "bin/busybox"), join(staging, "usr/bin/busybox")].find(exists) ??
          join(staging, "bin/busybox"),
      };
      const missing = Object.values(found).find((p) => !exists(p));
      if (missing !== undefined) {
        return { files: null, reason: `${missing.slice(staging.length)} is not in the unpacked packages` };
      }
      await Deno.remove(kept, { recursive: true }).catch(() => {});
      await Deno.mkdir(kept);
      const keep = async (from: string) => {
        const to = join(kept, basename(from));
        await Deno.copyFile(from, to);
        return to;
      };
      files = {
        grubNet: await keep(found.grubNet),
        kernel: await keep(found.kernel),
        busybox: await keep(found.busybox),
        packages: packages.sort(),
      };
    } finally {
      await Deno.remove(staging, { recursive: true }).catch(() => {});
    }
    await Deno.writeTextFile(join(cache, MANIFEST), JSON.stringify(files, null, 2) + "\n");
    await Deno.remove(debs, { recursive: true }).catch(() => {});
    return { files, reason: null };
  } catch (err) {
    return { files: null, reason: `fetching the arm64 packages failed: ${(err as Error).message}` };
  }
}

/** The ARM64 boot payload, named as the GRUB config refers to it. */
export interface Arm64Payload {
  /** `vmlinuz-arm64` in the payload directory: an uncompressed PE/EFI-stub Image. */
  readonly kernel: string;
  /** `initrd-arm64.img`: busybox whose /init prints the marker on ttyAMA0 and powers off. */
  readonly initrd: string;
  readonly marker: string;
}

/** True when `bytes` is an arm64 Linux Image (MZ header with the `ARM\x64` magic at 0x38). */
function isArm64Image(bytes: Uint8Array): boolean {
  const magic = new TextDecoder().decode(bytes.subarray(0x38, 0x3c));
  return bytes[0] === 0x4d && bytes[1] === 0x5a && magic === "ARM\x64";
}

/**
 * Writes `vmlinuz-arm64` (decompressed when the package ships gzip) and `initrd-arm64.img` into `dir`.
 * Throws when the kernel is in a form GRUB 2.06's `linux` cannot load (e.g. an EFI zboot image).
 */
export async function buildArm64Payload(
  files: Arm64Files,
  dir: string,
  marker: string,
): Promise<Arm64Payload> {
  const kernel = join(dir, "vmlinuz-arm64");
  const head = new Uint8Array(64);
  const f = await Deno.open(files.kernel);
  try {
    await f.read(head);
  } finally {
    f.close();
  }
  if (head[0] === 0x1f && head[1] === 0x8b) {
    await run(["sh", "-c", `gzip -dc '${files.kernel}' > '${kernel}'`], { timeoutMs: 60_000, check: true });
  } else {
    await Deno.copyFile(files.kernel, kernel);
  }
  const decoded = new Uint8Array(64);
  const k = await Deno.open(kernel);
  try {
    await k.read(decoded);
  } finally {
    k.close();
  }
  if (!isArm64Image(decoded)) {
    throw new Error(`${files.kernel} is not an arm64 Image (nor gzip of one): GRUB cannot load it`);
  }
  const root = await Deno.makeTempDir({ prefix: "pypxe-initrd-arm64-" });
  try {
    for (const d of ["bin", "proc", "dev"]) await Deno.mkdir(join(root, d));
    await Deno.copyFile(files.busybox, join(root, "bin", "busybox"));
    await Deno.chmod(join(root, "bin", "busybox"), 0o755);
    await Deno.symlink("busybox", join(root, "bin", "sh"));
    // the kernel's own initramfs supplies /dev/console (console=ttyAMA0): plain echo reaches the serial
    await Deno.writeTextFile(
      join(root, "init"),
      `#!/bin/sh\n/bin/busybox mount -t proc proc /proc\n/bin/busybox echo "${marker}"\n/bin/busybox sync\n/bin/busybox poweroff -f\n`,
    );
    await Deno.chmod(join(root, "init"), 0o755);
    const initrd = join(dir, "initrd-arm64.img");
    await run(["sh", "-c", `cd '${root}' && find . | cpio -o -H newc --quiet > '${initrd}'`], {
      timeoutMs: 60_000,
      check: true,
    });
    return { kernel, initrd, marker };
  } finally {
    await Deno.remove(root, { recursive: true });
  }
}

/**
 * The `menu.json` from which pypxe generates `grub/grub.cfg`: an x86_64 entry GRUB must hide on ARM64
 * (listed first, so a broken filter would boot it), then the ARM64 payload as the default.
 */
export function arm64MenuJson(cmdline = "console=ttyAMA0 panic=-1"): string {
  return JSON.stringify({
    timeout: 1,
    default: "marker",
    entries: [
      { id: "x86", label: "x86_64 kernel (hidden on arm64)", kernel: "vmlinuz-x86", arch: "x86_64" },
      {
        id: "marker",
        label: "ARM64 marker payload",
        kernel: "vmlinuz-arm64",
        initrd: "initrd-arm64.img",
        cmdline,
        arch: "arm64",
      },
    ],
  });
}
