/**
 * Builds the self-contained `pypxe` binary with `deno compile`, embedding the netboot tree and the
 * permission set of deno.json (`-P`).
 *
 *   deno task compile                    ./pypxe for this machine (needs internet for denort)
 *   deno task compile --all              every target: dist/pypxe-<target>[.exe]
 *   deno task compile --target T         one target
 *   deno task compile:check              type-check and list embedded files without downloading denort
 * @module
 */
import { join } from "node:path";

/** Targets `deno compile` supports; there is no 32-bit ARM target (ARM boards need a 64-bit OS). */
export const TARGETS = [
  "x86_64-unknown-linux-gnu",
  "aarch64-unknown-linux-gnu",
  "x86_64-pc-windows-msvc",
  "x86_64-apple-darwin",
  "aarch64-apple-darwin",
] as const;

const ROOT = new URL("..", import.meta.url).pathname;
const BOOT_FILES = ["undionly.kpxe", "ipxe.efi", "pxelinux.0", "ldlinux.c32"];

/** The `deno compile` arguments for one output. */
export function compileArgs(output: string, target?: string): string[] {
  return [
    "compile",
    "-P",
    "--no-prompt",
    "--exclude-unused-npm",
    ...(target ? ["--target", target] : []),
    "-o",
    output,
    "main.ts",
  ];
}

async function run(args: string[], env: Record<string, string> = {}): Promise<string> {
  const out = await new Deno.Command(Deno.execPath(), {
    args,
    cwd: ROOT,
    env: { NO_COLOR: "1", RUST_BACKTRACE: "0", ...env },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
  if (!out.success) throw new Error(`deno ${args.join(" ")} failed:\n${text}`);
  return text;
}

async function missingBootFiles(): Promise<string[]> {
  const missing: string[] = [];
  for (const name of BOOT_FILES) {
    try {
      await Deno.stat(join(ROOT, "netboot", name));
    } catch {
      missing.push(name);
    }
  }
  return missing;
}

if (import.meta.main) {
  const args = Deno.args;
  const missing = await missingBootFiles();
  if (missing.length > 0) {
    console.error(`compile: netboot/ lacks ${missing.join(", ")}: run \`deno task netboot\` first`);
    Deno.exit(1);
  }
  if (args.includes("--check")) {
    // No denort download here: DENORT_BIN points at this deno, so the output is NOT a pypxe binary.
    const output = join(await Deno.makeTempDir(), "pypxe-check");
    const text = await run(compileArgs(output), { DENORT_BIN: Deno.execPath() });
    const required = ["main.ts", "netboot/*", "src"];
    const absent = required.filter((entry) => !text.includes(entry));
    await Deno.remove(join(output, ".."), { recursive: true });
    if (absent.length > 0) {
      console.error(text);
      console.error(`compile:check: embedded files lack ${absent.join(", ")}`);
      Deno.exit(1);
    }
    console.log(text.trim());
    console.log("compile:check: ok (type-checked; netboot tree embedded)");
    Deno.exit(0);
  }
  const i = args.indexOf("--target");
  const targets = args.includes("--all") ? [...TARGETS] : i >= 0 ? [args[i + 1]] : [undefined];
  for (const target of targets) {
    const output = target === undefined
      ? "pypxe"
      : join("dist", `pypxe-${target}${target.includes("windows") ? ".exe" : ""}`);
    console.log(`compile: ${output}`);
    console.log(await run(compileArgs(output, target)));
  }
}
