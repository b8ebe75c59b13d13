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

/** A `deno compile` that failed: `reason` is one line, `output` all it printed. */
class CompileError extends Error {
  constructor(readonly reason: string, readonly output: string) {
    super(reason);
  }
}

/**
 * The one-line reason of a failed `deno compile` from its output: for a denort download that failed, the
 * URL and the innermost cause; else the first `error:` line and its innermost cause.
 */
export function compileFailure(text: string): string {
  const lines = text.split("\n");
  const from = lines.findIndex((l) => l.trim() === "Caused by:");
  const causes: string[] = [];
  for (const line of from < 0 ? [] : lines.slice(from + 1)) {
    const m = /^\s*\d+: (.*)$/.exec(line);
    if (m === null) break; // the chain ends at the first line that is not `N: cause`
    causes.push(m[1]);
  }
  const cause = causes.at(-1);
  const url = /error sending request for url \((\S+)\)/.exec(text)?.[1];
  if (url !== undefined) {
    return `cannot download the Deno runtime ${url}: ${cause ?? "request failed"} ` +
      "(compile where dl.deno.land is reachable)";
  }
  const error = /^error: .*$/m.exec(text)?.[0] ?? "error: deno compile failed";
  return cause === undefined ? error : `${error}: ${cause}`;
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
  if (!out.success) throw new CompileError(compileFailure(text), text);
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
  // every target is tried: one whose runtime cannot be fetched does not stop the others
  const failed: string[] = [];
  for (const target of targets) {
    const output = target === undefined
      ? "pypxe"
      : join("dist", `pypxe-${target}${target.includes("windows") ? ".exe" : ""}`);
    console.log(`compile: ${output}`);
    try {
      console.log(await run(compileArgs(output, target)));
    } catch (err) {
      if (!(err instanceof CompileError)) throw err;
      if (!err.reason.startsWith("cannot download")) console.error(err.output.trim());
      console.error(`compile: ${output} failed: ${err.reason}`);
      failed.push(output);
    }
  }
  if (failed.length > 0) {
    console.error(`compile: ${failed.length} of ${targets.length} failed`);
    Deno.exit(1);
  }
}
