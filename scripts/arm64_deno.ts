/**
 * Fetches the aarch64 Linux build of this very Deno version from npm (`@deno/linux-arm64-glibc`) into
 * `.cache/deno-arm64/<version>/deno` (git-ignored), so tests/e2e/arm64_deno_test.ts can run pypxe from
 * source on ARM64 code under `qemu-aarch64-static`. `deno compile --target aarch64-unknown-linux-gnu` needs a
 * denort download that is blocked here; this proves the same code instead.
 *
 *   deno run -A scripts/arm64_deno.ts              fetch unless present; print the path
 *   deno run -A scripts/arm64_deno.ts --optional   the same, but a failure is reported, not fatal (the
 *                                                  arm64 test then says why it cannot run)
 *
 * A second run finds the binary and downloads nothing. Needs `npm` and `tar`; running the binary needs
 * `qemu-aarch64-static` with `QEMU_LD_PREFIX=/usr/aarch64-linux-gnu` (Debian `qemu-user-static`,
 * `libc6-arm64-cross`, `libgcc-s1-arm64-cross`: scripts/packages.ts `test`).
 * @module
 */
import { join } from "node:path";

/** The npm package holding Deno's aarch64 Linux (glibc) binary. */
export const ARM64_DENO_PACKAGE = "@deno/linux-arm64-glibc";

/** Where the aarch64 libraries are for `qemu-aarch64-static` (Debian's cross packages). */
export const QEMU_LD_PREFIX = "/usr/aarch64-linux-gnu";

const ROOT = new URL("..", import.meta.url).pathname;

/** The path of the aarch64 `deno` binary of `version` (default: this Deno's) in the repo's cache. */
export function arm64DenoPath(version: string = Deno.version.deno): string {
  return join(ROOT, ".cache", "deno-arm64", version, "deno");
}

/** True when `path` is an aarch64 ELF file (machine 183 in the ELF header). */
export async function isArm64Elf(path: string): Promise<boolean> {
  try {
    using file = await Deno.open(path);
    const head = new Uint8Array(20);
    const n = await file.read(head);
    const elf = n === 20 && head[0] === 0x7f && head[1] === 0x45 && head[2] === 0x4c && head[3] === 0x46;
    return elf && (head[18] | (head[19] << 8)) === 183;
  } catch {
    return false;
  }
}

async function output(cmd: string, args: string[], cwd?: string): Promise<string> {
  let out: Deno.CommandOutput;
  try {
    out = await new Deno.Command(cmd, { args, cwd, stdout: "piped", stderr: "piped" }).output();
  } catch (err) {
    throw new Error(`cannot run ${cmd}: ${(err as Error).message}`);
  }
  const text = new TextDecoder().decode(out.stdout);
  if (!out.success) {
    const why = new TextDecoder().decode(out.stderr).trim().split("\n").slice(-3).join(" / ");
    throw new Error(`${cmd} ${args.join(" ")} exited ${out.code}: ${why}`);
  }
  return text;
}

/**
 * Makes sure the aarch64 deno of `version` is in the cache: `npm pack` the package (npm checks its
 * integrity), unpack `package/deno` with tar into a temp dir beside the target, rename it into place.
 * Returns the path and whether it was downloaded now.
 */
export async function ensureArm64Deno(
  version: string = Deno.version.deno,
): Promise<{ path: string; fetched: boolean }> {
  const path = arm64DenoPath(version);
  if (await isArm64Elf(path)) return { path, fetched: false };
  const dir = join(path, "..");
  await Deno.mkdir(dir, { recursive: true });
  const tmp = await Deno.makeTempDir({ dir, prefix: ".fetch-" });
  try {
    const spec = `${ARM64_DENO_PACKAGE}@${version}`;
    const packed = JSON.parse(await output("npm", ["pack", "--json", "--pack-destination", tmp, spec], tmp));
    const tarball = join(tmp, packed[0].filename as string);
    await output("tar", ["-xzf", tarball, "-C", tmp, "package/deno"]);
    const binary = join(tmp, "package", "deno");
    if (!await isArm64Elf(binary)) throw new Error(`${spec} holds no aarch64 ELF package/deno`);
    await Deno.chmod(binary, 0o755);
    await Deno.rename(binary, path);
    return { path, fetched: true };
  } catch (err) {
    await Deno.remove(tmp, { recursive: true }).catch(() => {});
    await Deno.remove(dir).catch(() => {}); // only when empty: nothing was there before
    throw err;
  } finally {
    await Deno.remove(tmp, { recursive: true }).catch(() => {});
  }
}

if (import.meta.main) {
  const optional = Deno.args.includes("--optional");
  const unknown = Deno.args.filter((a) => a !== "--optional");
  if (unknown.length > 0) {
    console.error("usage: deno run -A scripts/arm64_deno.ts [--optional]");
    Deno.exit(2);
  }
  const started = performance.now();
  try {
    const { path, fetched } = await ensureArm64Deno();
    const seconds = ((performance.now() - started) / 1000).toFixed(1);
    console.error(`arm64-deno: ${path} (${fetched ? `fetched in ${seconds} s` : "cached"})`);
  } catch (err) {
    console.error(`arm64-deno: ${(err as Error).message}`);
    Deno.exit(optional ? 0 : 1);
  }
}
