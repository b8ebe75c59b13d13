/**
 * The Debian packages pypxe needs, in one list per purpose, and the one way they get installed: as root
 * with apt-get, install what is missing; otherwise print the one command to run.
 *
 * Usage: deno run -A scripts/packages.ts start|test
 *
 * `start`: the boot loaders `deno task netboot` gathers. `test`: everything the test suite drives (real
 * clients, QEMU and firmware, the Secure Boot chain). `.ci/run` and `deno task test` both use `test`.
 * @module
 */

/** What `deno task start` needs: the boot loaders gathered into netboot/. */
export const START_PACKAGES: readonly string[] = ["ipxe", "pxelinux", "syslinux-common"];

/**
 * What `deno task test` needs on top: real clients, QEMU with BIOS/UEFI/ARM64 firmware, user-mode QEMU
 * for the aarch64 Deno, tools.
 */
export const TEST_PACKAGES: readonly string[] = [
  ...START_PACKAGES,
  ...[
    "curl",
    "tftp-hpa",
    "atftp",
    "busybox-static",
    "iproute2",
    "tcpdump",
    "isc-dhcp-client",
    "dnsmasq-base",
    // rdisc6, which receives --ra's router advertisements (tests/dhcp6/ra_test.ts)
    "ndisc6",
    // dhcpcd, a second DHCPv6 client (rapid commit; Debian's busybox has no udhcpc6)
    "dhcpcd-base",
  ],
  ...["nftables", "libnbd-bin", "nbd-server", "qemu-utils", "qemu-system-x86", "ipxe-qemu", "ovmf"],
  ...["linux-image-amd64", "xorriso", "isolinux", "libcap2-bin", "chromium", "shim-signed"],
  ...[
    "shim-helpers-amd64-signed",
    "grub-efi-amd64-signed",
    "grub-common",
    "qemu-system-arm",
    "qemu-efi-aarch64",
  ],
  // the aarch64 Deno (scripts/arm64_deno.ts) runs pypxe under user-mode QEMU with the arm64 C library
  ...["qemu-user-static", "libc6-arm64-cross", "libgcc-s1-arm64-cross"],
];

/** The packages of `list` that dpkg does not report as installed (all of them without dpkg). */
export async function missingPackages(list: readonly string[]): Promise<string[]> {
  const missing: string[] = [];
  for (const pkg of list) {
    try {
      const out = await new Deno.Command("dpkg", { args: ["-s", pkg], stdout: "null", stderr: "null" })
        .output();
      if (!out.success) missing.push(pkg);
    } catch {
      return [...list]; // no dpkg: not Debian or Ubuntu
    }
  }
  return missing;
}

/**
 * Installs what `list` lacks when this is root with apt-get; returns null when nothing is missing any
 * more, else the line telling the user what to run.
 */
export async function ensurePackages(list: readonly string[]): Promise<string | null> {
  const missing = await missingPackages(list);
  if (missing.length === 0) return null;
  const command = `sudo apt-get install --no-install-recommends ${missing.join(" ")}`;
  if (Deno.uid() !== 0) return `missing packages: run ${command}`;
  console.error(`packages: installing ${missing.join(" ")}`);
  const env = { DEBIAN_FRONTEND: "noninteractive" };
  for (const args of [["update", "-q"], ["install", "-y", "-q", "--no-install-recommends", ...missing]]) {
    let ok = false;
    try {
      ok = (await new Deno.Command("apt-get", { args, env, stdout: "null", stderr: "inherit" }).output())
        .success;
    } catch {
      return `no apt-get here: install ${missing.join(" ")} with this system's package manager`;
    }
    if (!ok) return `apt-get ${args[0]} failed: run ${command}`;
  }
  const still = await missingPackages(list);
  return still.length === 0 ? null : `still missing after apt-get install: ${still.join(" ")}`;
}

if (import.meta.main) {
  const purpose = Deno.args[0];
  if (purpose !== "start" && purpose !== "test") {
    console.error("usage: deno run -A scripts/packages.ts start|test");
    Deno.exit(2);
  }
  const problem = await ensurePackages(purpose === "start" ? START_PACKAGES : TEST_PACKAGES);
  if (problem !== null) {
    console.error(`packages: ${problem}`);
    // tests that need a missing tool skip with the reason (fail under PYPXE_REQUIRE_E2E=1); the server
    // cannot start without its boot loaders
    Deno.exit(purpose === "start" ? 1 : 0);
  }
}
