/**
 * Gathers the third-party boot binaries (iPXE, PXELINUX, SYSLINUX modules) from installed Debian
 * packages into `netboot/`, where `deno compile` embeds them. They are never committed.
 *
 * Usage: deno task netboot [--dest DIR] [--arm64] [--if-missing] [--install]
 *
 * `--if-missing` does nothing when every required file is already in DIR (what `deno task start` runs
 * first). `--install` installs the missing packages first when run as root with apt-get, else prints the
 * command to run (`scripts/packages.ts`). With `--if-missing`, a failed `--arm64` download is a note.
 *
 * `--arm64` also gathers Debian's signed network GRUB for ARM64 UEFI (`grubaa64.efi`): on an arm64
 * host from the installed grub-efi-arm64-signed, elsewhere by downloading that package for arm64
 * (`dpkg --add-architecture arm64`, `apt-get download`) and unpacking it without installing it.
 * @module
 */
import { join, resolve } from "node:path";
import { ensurePackages, START_PACKAGES } from "./packages.ts";

/** A file to gather: where Debian installs it and which package provides it. */
interface Source {
  readonly name: string;
  readonly candidates: readonly string[];
  readonly pkg: string;
  /** Only needed for one client type (`--secure-boot`...): a missing one is a note, not a failure. */
  readonly optional?: string;
}

const SOURCES: readonly Source[] = [
  { name: "undionly.kpxe", candidates: ["/usr/lib/ipxe/undionly.kpxe"], pkg: "ipxe" },
  { name: "ipxe.efi", candidates: ["/usr/lib/ipxe/ipxe.efi", "/boot/ipxe.efi"], pkg: "ipxe" },
  { name: "snponly.efi", candidates: ["/usr/lib/ipxe/snponly.efi"], pkg: "ipxe" },
  { name: "ipxe.pxe", candidates: ["/usr/lib/ipxe/ipxe.pxe"], pkg: "ipxe" },
  { name: "pxelinux.0", candidates: ["/usr/lib/PXELINUX/pxelinux.0"], pkg: "pxelinux" },
  { name: "lpxelinux.0", candidates: ["/usr/lib/PXELINUX/lpxelinux.0"], pkg: "pxelinux" },
  { name: "ldlinux.c32", candidates: ["/usr/lib/syslinux/modules/bios/ldlinux.c32"], pkg: "syslinux-common" },
  { name: "menu.c32", candidates: ["/usr/lib/syslinux/modules/bios/menu.c32"], pkg: "syslinux-common" },
  { name: "libutil.c32", candidates: ["/usr/lib/syslinux/modules/bios/libutil.c32"], pkg: "syslinux-common" },
  {
    name: "libcom32.c32",
    candidates: ["/usr/lib/syslinux/modules/bios/libcom32.c32"],
    pkg: "syslinux-common",
  },
  { name: "memdisk", candidates: ["/usr/lib/syslinux/memdisk"], pkg: "syslinux-common" },
  // the UEFI Secure Boot chain (--secure-boot): Microsoft-signed shim -> Debian-signed network GRUB,
  // whose embedded prefix reads grub/grub.cfg from the boot server
  {
    name: "shimx64.efi",
    candidates: ["/usr/lib/shim/shimx64.efi.signed"],
    pkg: "shim-signed",
    optional: "--secure-boot",
  },
  {
    name: "mmx64.efi",
    candidates: ["/usr/lib/shim/mmx64.efi.signed"],
    pkg: "shim-helpers-amd64-signed",
    optional: "--secure-boot",
  },
  {
    name: "grubx64.efi",
    candidates: ["/usr/lib/grub/x86_64-efi-signed/grubnetx64.efi.signed"],
    pkg: "grub-efi-amd64-signed",
    optional: "--secure-boot",
  },
  {
    name: "grubaa64.efi",
    candidates: ["/usr/lib/grub/arm64-efi-signed/grubnetaa64.efi.signed"],
    pkg: "grub-efi-arm64-signed",
    optional: "ARM64 UEFI clients",
  },
];

/** Runs a command with a time limit; resolves with its exit code and output, never throws. */
async function run(
  cmd: string[],
  opts: { cwd?: string; timeoutMs?: number } = {},
): Promise<{ code: number; out: string }> {
  try {
    const child = new Deno.Command(cmd[0], {
      args: cmd.slice(1),
      cwd: opts.cwd,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const timer = setTimeout(() => child.kill("SIGKILL"), opts.timeoutMs ?? 300_000);
    const result = await child.output();
    clearTimeout(timer);
    const text = new TextDecoder().decode(result.stdout) + new TextDecoder().decode(result.stderr);
    return { code: result.code, out: text.trim() };
  } catch (err) {
    return { code: 127, out: `${cmd[0]}: ${err instanceof Error ? err.message : err}` };
  }
}

/**
 * Downloads grub-efi-arm64-signed for arm64 and unpacks its network GRUB to `dest/grubaa64.efi`.
 * Adds the arm64 architecture to dpkg (and updates the package lists) when it is missing.
 * Returns null on success, else the reason.
 */
export async function fetchArm64Grub(dest: string): Promise<string | null> {
  const arches = await run(["dpkg", "--print-foreign-architectures"], { timeoutMs: 30_000 });
  const native = await run(["dpkg", "--print-architecture"], { timeoutMs: 30_000 });
  if (arches.code !== 0 || native.code !== 0) return `dpkg is not usable: ${arches.out || native.out}`;
  if (native.out !== "arm64" && !arches.out.split(/\s+/).includes("arm64")) {
    const add = await run(["dpkg", "--add-architecture", "arm64"], { timeoutMs: 30_000 });
    if (add.code !== 0) return `dpkg --add-architecture arm64 failed (root needed): ${add.out}`;
    const update = await run(["apt-get", "update", "-q"], { timeoutMs: 600_000 });
    if (update.code !== 0) return `apt-get update failed: ${update.out.split("\n").slice(-2).join(" ")}`;
  }
  const work = await Deno.makeTempDir({ prefix: "pypxe-netboot-arm64-" });
  try {
    // _apt cannot write into a root-owned temp dir: download as the caller
    const dl = await run(
      ["apt-get", "download", "-q", "-o", "APT::Sandbox::User=root", "grub-efi-arm64-signed:arm64"],
      { cwd: work, timeoutMs: 600_000 },
    );
    if (dl.code !== 0) {
      return `apt-get download grub-efi-arm64-signed:arm64 failed: ${dl.out.split("\n").pop()}`;
    }
    const deb = [...Deno.readDirSync(work)].find((e) => e.name.endsWith(".deb"));
    if (deb === undefined) return "apt-get download left no .deb";
    const x = await run(["dpkg-deb", "-x", join(work, deb.name), join(work, "root")], { timeoutMs: 120_000 });
    if (x.code !== 0) return `dpkg-deb -x ${deb.name} failed: ${x.out}`;
    await Deno.copyFile(
      join(work, "root/usr/lib/grub/arm64-efi-signed/grubnetaa64.efi.signed"),
      join(dest, "grubaa64.efi"),
    );
    return null;
  } catch (err) {
    return `unpacking grub-efi-arm64-signed failed: ${err instanceof Error ? err.message : err}`;
  } finally {
    await Deno.remove(work, { recursive: true }).catch(() => {});
  }
}

async function exists(path: string): Promise<boolean> {
  try {
    return (await Deno.stat(path)).isFile;
  } catch {
    return false;
  }
}

/** Copies every boot binary into `dest`; returns the names of packages whose files are missing. */
export async function gatherNetboot(
  dest: string,
): Promise<{ copied: string[]; missing: Map<string, string[]>; optional: Map<string, string[]> }> {
  const copied: string[] = [];
  const missing = new Map<string, string[]>();
  const optional = new Map<string, string[]>();
  for (const source of SOURCES) {
    let found: string | undefined;
    for (const candidate of source.candidates) {
      try {
        if ((await Deno.stat(candidate)).isFile) {
          found = candidate;
          break;
        }
      } catch {
        // try the next place
      }
    }
    if (found === undefined) {
      const into = source.optional === undefined ? missing : optional;
      into.set(source.pkg, [...(into.get(source.pkg) ?? []), source.name]);
      continue;
    }
    // copyFile follows symlinks (Debian's ipxe.efi is one): netboot/ must hold real files
    await Deno.copyFile(found, join(dest, source.name));
    copied.push(source.name);
  }
  return { copied, missing, optional };
}

if (import.meta.main) {
  const i = Deno.args.indexOf("--dest");
  const dest = resolve(i >= 0 ? Deno.args[i + 1] : join(import.meta.dirname ?? ".", "..", "netboot"));
  await Deno.mkdir(dest, { recursive: true });
  const ifMissing = Deno.args.includes("--if-missing");
  const wantArm64 = Deno.args.includes("--arm64");
  const required = SOURCES.filter((s) =>
    s.optional === undefined || (wantArm64 && s.name === "grubaa64.efi")
  );
  if (ifMissing && (await Promise.all(required.map((s) => exists(join(dest, s.name))))).every((x) => x)) {
    Deno.exit(0);
  }
  if (Deno.args.includes("--install")) {
    const problem = await ensurePackages(START_PACKAGES);
    if (problem !== null) {
      console.error(`netboot: ${problem}`);
      Deno.exit(1);
    }
  }
  const { copied, missing, optional } = await gatherNetboot(dest);
  if (wantArm64 && optional.has("grub-efi-arm64-signed")) {
    const problem = await fetchArm64Grub(dest);
    if (problem !== null) {
      console.error(`netboot: --arm64: ${problem}`);
      if (!ifMissing) Deno.exit(1);
    } else {
      optional.delete("grub-efi-arm64-signed");
      copied.push("grubaa64.efi (downloaded for arm64)");
    }
  }
  console.log(`netboot: copied ${copied.length} files into ${dest}: ${copied.join(" ")}`);
  for (const [pkg, names] of missing) {
    console.error(`netboot: missing ${names.join(", ")}: install them with: sudo apt-get install ${pkg}`);
  }
  for (const [pkg, names] of optional) {
    const source = SOURCES.find((s) => s.pkg === pkg);
    const how = pkg === "grub-efi-arm64-signed" ? "deno task netboot --arm64" : `apt-get install ${pkg}`;
    console.error(`netboot: note: ${names.join(", ")} (only for ${source?.optional}) not gathered: ${how}`);
  }
  Deno.exit(missing.size > 0 ? 1 : 0);
}
