/**
 * The test command (`deno task test`): runs every test under tests/ with the resource and op sanitizers,
 * streams Deno's output, and ends with the plain summary line CI reads: `tests: N passed, N failed, N skipped`.
 * Skipped is Deno's ignored count (tests plus steps): tests whose tool is missing (tests/helpers/tools.ts).
 * The exit code is non-zero when a test failed; `.ci/run` also fails when any was skipped.
 *
 * Usage: deno task test [deno test args, e.g. a path or --filter NAME]
 * @module
 */
const extra = Deno.args.length > 0 ? Deno.args : ["tests/"];
const root = new URL("..", import.meta.url).pathname;
const command = new Deno.Command(Deno.execPath(), {
  args: ["test", "--allow-all", "--no-prompt", "--sanitize-resources", "--sanitize-ops", ...extra],
  cwd: root,
  env: { NO_COLOR: "1", RUST_BACKTRACE: "0" },
  stdout: "piped",
  stderr: "inherit",
});
const child = command.spawn();
const decoder = new TextDecoder();
let tail = "";
let passed = -1;
let failed = -1;
let skipped = 0;
for await (const chunk of child.stdout) {
  const text = decoder.decode(chunk, { stream: true });
  await Deno.stdout.write(chunk);
  tail = (tail + text).slice(-4096);
  for (const line of tail.split("\n")) {
    // e.g. `FAILED | 2 passed (1 step) | 1 failed | 3 ignored (1 step) (29ms)`
    const m = /^(?:ok|FAILED) \| (\d+) passed.*?\| (\d+) failed(?: \| (\d+) ignored(?: \((\d+) steps?\))?)?/
      .exec(line);
    if (m) [passed, failed, skipped] = [Number(m[1]), Number(m[2]), Number(m[3] ?? 0) + Number(m[4] ?? 0)];
  }
}
const status = await child.status;
if (passed < 0) {
  // deno test died before its summary (a type error, a crash): count that as one failure
  passed = 0;
  failed = 1;
} else if (!status.success && failed === 0) {
  failed = 1;
}
console.log(`tests: ${passed} passed, ${failed} failed, ${skipped} skipped`);
Deno.exit(failed > 0 ? 1 : 0);
