/**
 * The README's commands run as written (issue 16 §1): every `./pypxe ...` and `deno task start ...` line of
 * its `sh` blocks is run with `--check` added (a dry run: nothing is served), and must be accepted: no
 * "unknown flag", no bad value, exit 0 (all well) or 1 (problems on this host, e.g. the disk image of the
 * example does not exist). `--help` and `--version` lines run as they are and must exit 0.
 */
import { equal, ok } from "node:assert/strict";

const ROOT = new URL("../..", import.meta.url).pathname;
const MAIN = new URL("../../main.ts", import.meta.url).pathname;

/** The pypxe command lines of the README's `sh` blocks, without `sudo` and comments. */
function readmeCommands(): string[] {
  const text = Deno.readTextFileSync(`${ROOT}/README.md`);
  const lines: string[] = [];
  for (const block of text.matchAll(/```sh\n([\s\S]*?)```/g)) {
    for (const raw of block[1].split("\n")) {
      const line = raw.replace(/\s+#.*$/, "").replace(/^sudo\s+/, "").trim();
      if (/^(\.\/pypxe|deno task start)\b/.test(line)) lines.push(line);
    }
  }
  return lines;
}

/** An IPv4 interface of this host to stand in for the README's `eth0` when there is none. */
function hostInterface(): string {
  const names = Deno.networkInterfaces().filter((i) => i.family === "IPv4" && !i.address.startsWith("127."))
    .map((i) => i.name);
  return names.includes("eth0") ? "eth0" : names[0] ?? "lo";
}

Deno.test("README: every pypxe command line is accepted as written", async () => {
  const commands = readmeCommands();
  ok(commands.length >= 6, `found ${commands.length} commands`);
  ok(commands.some((c) => c.startsWith("deno task start")), "the quick start is among them");
  for (const command of commands) {
    const words = command.split(/\s+/).map((w) => w === "eth0" ? hostInterface() : w);
    const args = words[0] === "./pypxe" ? words.slice(1) : words.slice(3);
    const dryRun = args.includes("--help") || args.includes("--version") ? args : [...args, "--check"];
    const cmd = words[0] === "./pypxe"
      ? new Deno.Command(Deno.execPath(), { args: ["run", "-A", MAIN, ...dryRun], cwd: ROOT })
      : new Deno.Command(Deno.execPath(), { args: ["task", "start", ...dryRun], cwd: ROOT });
    const out = await cmd.output();
    const stderr = new TextDecoder().decode(out.stderr);
    const stdout = new TextDecoder().decode(out.stdout);
    ok(!/pypxe: error:/.test(stderr), `${command}: ${stderr}`);
    ok(!/Permissions in the config file is an experimental feature/.test(stderr), `${command}: ${stderr}`);
    if (dryRun === args) equal(out.code, 0, `${command}: ${stderr}`);
    else ok(out.code === 0 || out.code === 1, `${command}: exit ${out.code}\n${stdout}${stderr}`);
    ok(/check: (ok|\d+ problem)|pypxe \d|Usage|usage|--dhcp/.test(stdout), `${command}: ${stdout}`);
  }
});

Deno.test("deno.json: the start task's permission flags are the `default` permission set", () => {
  const config = JSON.parse(Deno.readTextFileSync(`${ROOT}/deno.json`));
  const set = config.permissions.default as Record<string, boolean>;
  const start = config.tasks.start.command as string;
  const flags = [...start.matchAll(/--allow-([a-z]+)/g)].map((m) => m[1]).sort();
  equal(flags.join(","), Object.keys(set).filter((k) => set[k] === true).sort().join(","));
  equal(config.compile.permissions, "default");
});
