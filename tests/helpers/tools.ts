/**
 * The one place tests decide "can this run here?": external tools on PATH, root, and any other reason
 * computed by a test module (an `ip netns` probe, a missing boot file).
 *
 * A requirement is a reason it cannot run (`"missing tool curl (apt-get install curl)"`) or null. Wrap a
 * test definition with {@linkcode requires}: when the reason is null the test is unchanged; otherwise it
 * is ignored with the reason printed, except under `PYPXE_REQUIRE_E2E=1` (set by `.ci/run`), where it runs
 * and fails at once with the reason. Deno counts the ignored ones, `deno task test` prints them as
 * `N skipped`, and CI fails when that is not 0.
 *
 * ```ts
 * Deno.test(requires(missingTools("curl"), { name: "...", fn: async () => {} }));
 * ```
 *
 * Inside a test, {@linkcode toolAvailable} guards an optional step the same way.
 * @module
 */

/** True when a missing requirement must fail the test instead of skipping it (`PYPXE_REQUIRE_E2E=1`). */
export const REQUIRE_E2E: boolean = (() => {
  try {
    return Deno.env.get("PYPXE_REQUIRE_E2E") === "1";
  } catch {
    return false; // no env permission: not CI
  }
})();

/** The Debian package that provides a tool, for the reason text. */
const PACKAGES: Record<string, string> = {
  atftp: "atftp",
  capsh: "libcap2-bin",
  chromium: "chromium",
  cpio: "cpio",
  curl: "curl",
  dhclient: "isc-dhcp-client",
  dhcpcd: "dhcpcd-base",
  dnsmasq: "dnsmasq-base",
  "grub-script-check": "grub-common",
  ip: "iproute2",
  nbdcopy: "libnbd-bin",
  nbdinfo: "libnbd-bin",
  nft: "nftables",
  "qemu-system-x86_64": "qemu-system-x86",
  "qemu-system-aarch64": "qemu-system-arm",
  rdisc6: "ndisc6",
  script: "bsdutils",
  tcpdump: "tcpdump",
  tftp: "tftp-hpa",
  udhcpc: "busybox-static",
};

const found = new Map<string, string | null>();

/** The path of the executable `name` on PATH (where a spawn by name finds it), or null. */
export function findTool(name: string): string | null {
  const known = found.get(name);
  if (known !== undefined) return known;
  let path: string | null = null;
  let dirs: string[];
  try {
    dirs = (Deno.env.get("PATH") ?? "/usr/bin:/bin").split(":");
  } catch {
    dirs = ["/usr/bin", "/bin"]; // no env permission
  }
  for (const dir of dirs) {
    if (dir === "") continue;
    try {
      const info = Deno.statSync(`${dir}/${name}`);
      if (info.isFile && ((info.mode ?? 0o111) & 0o111) !== 0) {
        path = `${dir}/${name}`;
        break;
      }
    } catch {
      // not in this directory
    }
  }
  found.set(name, path);
  return path;
}

/** Why `tools` cannot be used ("missing tool curl (apt-get install curl)"), or null when all are on PATH. */
export function missingTools(...tools: string[]): string | null {
  const missing = tools.filter((t) => findTool(t) === null);
  if (missing.length === 0) return null;
  const packages = [...new Set(missing.map((t) => PACKAGES[t] ?? t))];
  return `missing tool${missing.length > 1 ? "s" : ""} ${missing.join(", ")} (apt-get install ${
    packages.join(" ")
  })`;
}

/** "needs root" when the process is not root, else null. */
export function needsRoot(): string | null {
  return Deno.uid() === 0 ? null : "needs root";
}

/** The first non-null reason of `reasons`, or null. */
export function firstReason(...reasons: (string | null | undefined)[]): string | null {
  return reasons.find((r) => typeof r === "string" && r !== "") ?? null;
}

const printed = new Set<string>();

function note(line: string): void {
  if (printed.has(line)) return;
  printed.add(line);
  console.log(line);
}

/**
 * `def` when `reason` (or every reason of a list) is null. Otherwise: ignored, with
 * `skipped: <name>: <reason>` printed; under `PYPXE_REQUIRE_E2E=1` the test runs and fails at once with
 * `<reason> (PYPXE_REQUIRE_E2E=1)`.
 */
export function requires(
  reason: string | null | (string | null | undefined)[],
  def: Deno.TestDefinition,
): Deno.TestDefinition {
  const why = Array.isArray(reason) ? firstReason(...reason) : reason;
  if (why === null) return def;
  if (!REQUIRE_E2E) {
    note(`skipped: ${def.name}: ${why}`);
    return { ...def, ignore: true };
  }
  return {
    ...def,
    fn: () => {
      throw new Error(`${why} (PYPXE_REQUIRE_E2E=1)`);
    },
  };
}

/**
 * For an optional step inside a test: true when every tool is on PATH. When one is missing it throws under
 * `PYPXE_REQUIRE_E2E=1`, else prints the reason once and returns false.
 */
export function toolAvailable(what: string, ...tools: string[]): boolean {
  const why = missingTools(...tools);
  if (why === null) return true;
  if (REQUIRE_E2E) throw new Error(`${what}: ${why} (PYPXE_REQUIRE_E2E=1)`);
  note(`skipped part: ${what}: ${why}`);
  return false;
}
