/**
 * Gathers the third-party boot binaries (iPXE, PXELINUX, SYSLINUX modules) from installed Debian
 * packages into `netboot/`, where `deno compile` embeds them. They are never committed.
 *
 * Usage: deno task netboot [--dest DIR]
 * @module
 */
import { join, resolve } from "node:path";

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
];

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
  const { copied, missing, optional } = await gatherNetboot(dest);
  console.log(`netboot: copied ${copied.length} files into ${dest}: ${copied.join(" ")}`);
  for (const [pkg, names] of missing) {
    console.error(`netboot: missing ${names.join(", ")}: install them with: sudo apt-get install ${pkg}`);
  }
  for (const [pkg, names] of optional) {
    console.error(
      `netboot: note: ${names.join(", ")} (only for --secure-boot) not gathered: apt-get install ${pkg}`,
    );
  }
  Deno.exit(missing.size > 0 ? 1 : 0);
}
