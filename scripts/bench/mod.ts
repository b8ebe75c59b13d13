/**
 * `deno task bench <name> [args]`: runs one side-by-side benchmark (pypxe against its peers, same
 * machine, same run, alternating) and prints the ratios. Names: tftp, dhcp, http, nbd, boot, cache.
 * @module
 */
const BENCHES = ["tftp", "dhcp", "http", "nbd", "boot", "cache"] as const;

const [name, ...rest] = Deno.args;
if (!BENCHES.includes(name as (typeof BENCHES)[number])) {
  console.error(`usage: deno task bench <${BENCHES.join("|")}> [args]`);
  Deno.exit(2);
}
const script = new URL(`./${name}.ts`, import.meta.url).pathname;
try {
  await Deno.stat(script);
} catch {
  console.error(`bench: scripts/bench/${name}.ts does not exist yet`);
  Deno.exit(2);
}
const status = await new Deno.Command(Deno.execPath(), {
  args: ["run", "-A", script, ...rest],
  stdin: "inherit",
  stdout: "inherit",
  stderr: "inherit",
}).spawn().status;
Deno.exit(status.code);
