/**
 * GRUB's own parser on generated configs: `grub-script-check` (grub-common). Without the tool the checks
 * pass with a notice, or fail under PYPXE_REQUIRE_E2E=1 (as in CI), see tools.ts.
 * @module
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { run } from "./run.ts";
import { findTool, toolAvailable } from "./tools.ts";

/** grub-script-check from grub-common, or null when it is not installed. */
const GRUB_SCRIPT_CHECK = findTool("grub-script-check");

/** Runs grub-script-check on `text`; null when the tool is missing. */
export async function grubScriptCheck(text: string): Promise<{ code: number; output: string } | null> {
  if (!toolAvailable("GRUB syntax checks", "grub-script-check") || GRUB_SCRIPT_CHECK === null) return null;
  const dir = await Deno.makeTempDir({ prefix: "pypxe-grubcfg-" });
  try {
    const path = join(dir, "grub.cfg");
    await Deno.writeTextFile(path, text);
    const r = await run([GRUB_SCRIPT_CHECK, path], { timeoutMs: 20_000 });
    return { code: r.code, output: r.stdout + r.stderr };
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** Fails unless GRUB's parser accepts `text`. */
export async function assertGrubSyntax(text: string, what = "the config"): Promise<void> {
  const result = await grubScriptCheck(text);
  if (result === null) return;
  const numbered = text.split("\n").map((l, i) => `${String(i + 1).padStart(4)}  ${l}`).join("\n");
  assert.equal(result.code, 0, `grub-script-check rejects ${what}: ${result.output}\n${numbered}`);
}
