import assert from "node:assert/strict";
import { join } from "node:path";
import { DEFAULTS, SETTINGS } from "../../src/config.ts";
import { runPypxeOnce, startPypxe } from "../helpers/pypxe.ts";

Deno.test("--help lists every flag with its default, in PyPXE's groups", async () => {
  const { code, stdout } = await runPypxeOnce(["--help"]);
  assert.equal(code, 0);
  for (const s of Object.values(SETTINGS)) {
    for (const flag of [s.flag, s.noFlag, ...(s.aliases ?? [])]) {
      if (flag !== undefined) assert.ok(stdout.includes(flag), `--help lacks ${flag}`);
    }
  }
  for (
    const title of [
      "Main arguments",
      "DHCP service arguments",
      "File name/directory arguments",
      "Network Block Device arguments",
    ]
  ) {
    assert.ok(stdout.includes(title), title);
  }
  assert.match(stdout, /--dhcp-server-ip IP\s+DHCP server IP \(default: 192\.168\.2\.2\)/);
  assert.match(stdout, /--nbd-port N\s+NBD server port \(default: 10809\)/);
});

Deno.test("--version, --dump-config and --dump-config-merged (which includes --config)", async () => {
  const version = await runPypxeOnce(["--version"]);
  assert.match(version.stdout, /^pypxe \d+\.\d+\.\d+\n$/);
  const dump = await runPypxeOnce(["--dump-config"]);
  assert.equal(dump.code, 0);
  assert.deepEqual(JSON.parse(dump.stdout), DEFAULTS);
  const dir = await Deno.makeTempDir();
  try {
    const file = join(dir, "cfg.json");
    await Deno.writeTextFile(file, JSON.stringify({ DHCP_SERVER_PORT: 6767, USE_HTTP: true }));
    const merged = await runPypxeOnce(["--config", file, "--dump-config-merged", "--tftp-port", "6969"]);
    assert.equal(merged.code, 0, merged.stderr);
    const values = JSON.parse(merged.stdout);
    assert.equal(values.DHCP_SERVER_PORT, 6767);
    assert.equal(values.USE_HTTP, true);
    assert.equal(values.TFTP_PORT, 6969);
    // the dump is itself a valid --config file
    await Deno.writeTextFile(file, merged.stdout);
    const again = await runPypxeOnce(["--config", file, "--dump-config-merged"]);
    assert.deepEqual(JSON.parse(again.stdout), values);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("bad flags and bad config files exit 2 with one clear line, no stack trace", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const broken = join(dir, "broken.json");
    await Deno.writeTextFile(broken, `{"USE_DHCP": tru`);
    const typo = join(dir, "typo.json");
    await Deno.writeTextFile(typo, `{"TFTP_PROT": 69}`);
    const cases: [string[], RegExp][] = [
      [
        ["--dhcp-begin", "1.2.3"],
        /^pypxe: error: DHCP_OFFER_BEGIN \(--dhcp-begin\): expected an IPv4 address, got "1\.2\.3"$/,
      ],
      [["--tftp-port", "99999"], /^pypxe: error: TFTP_PORT \(--tftp-port\): 99999 is outside 1-65535/],
      [["--bogus"], /^pypxe: error: unknown flag --bogus/],
      [["--config", broken], /^pypxe: error: .*broken\.json: not valid JSON/],
      [
        ["--config", join(dir, "none.json")],
        /^pypxe: error: --config .*none\.json: cannot read \(no such file\)$/,
      ],
      [
        ["--static-config", join(dir, "none.json")],
        /^pypxe: error: --static-config .*: cannot read \(no such file\)$/,
      ],
      [
        ["--netboot-dir", join(dir, "missing-dir"), "--no-tftp"],
        /--netboot-dir .*missing-dir: netboot directory does not exist/,
      ],
    ];
    for (const [args, pattern] of cases) {
      const { code, stderr } = await runPypxeOnce(args);
      const lines = stderr.trim().split("\n").filter((l) => l !== "");
      assert.equal(code, 2, `${args.join(" ")}: exit ${code}: ${stderr}`);
      assert.equal(lines.length, 1, `${args.join(" ")}: ${stderr}`);
      assert.match(lines[0], pattern);
      assert.doesNotMatch(stderr, /Stack| {4}at /);
    }
    const warned = await runPypxeOnce(["--config", typo, "--dump-config-merged"]);
    assert.equal(warned.code, 0);
    assert.match(
      warned.stderr,
      /pypxe: warning: .*unknown key TFTP_PROT ignored \(did you mean TFTP_PORT\?\)/,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("it starts, prints its banner, and SIGTERM / SIGINT stop it with exit 0", async () => {
  for (const signal of ["SIGTERM", "SIGINT"] as const) {
    const pypxe = await startPypxe(["--no-tftp"]);
    assert.ok(pypxe.lines.some((l) => /netboot: embedded /.test(l)), pypxe.lines.join("\n"));
    assert.ok(pypxe.lines.some((l) => /boot files: .*pxelinux\.0|boot files: none found/.test(l)));
    const code = await pypxe.stop(signal);
    assert.equal(code, 0, pypxe.lines.join("\n"));
    assert.ok(pypxe.lines.some((l) => l.includes(`${signal}: stopping`)));
  }
});
