import assert from "node:assert/strict";
import { join } from "node:path";
import { DEFAULTS, SETTINGS } from "../../src/config.ts";
import { runPypxeOnce, startPypxe } from "../helpers/servers.ts";
import { missingTools, needsRoot, requires } from "../helpers/tools.ts";
import { run } from "../helpers/run.ts";

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

Deno.test("a busy port is one clear line, exit 1", async () => {
  const blocker = Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port: 0 });
  const port = (blocker.addr as Deno.NetAddr).port;
  try {
    const busy = await runPypxeOnce(["--tftp-port", String(port), "--tftp-server-ip", "127.0.0.1"]);
    assert.equal(busy.code, 1, busy.stderr);
    assert.match(busy.stderr, new RegExp(`ERROR main {2}tftp: UDP 127\\.0\\.0\\.1:${port} is in use: `));
  } finally {
    blocker.close();
  }
});

// the privileged-port case needs root to drop the capability from
Deno.test(requires([needsRoot(), missingTools("capsh")], {
  name: "a port below 1024 without the capability is one clear line, exit 1",
  fn: async () => {
    // root without CAP_NET_BIND_SERVICE gets the kernel's EACCES, exactly like an unprivileged user
    const denied = await runPypxeOnce(["--tftp-server-ip", "127.0.0.1"], {
      prefix: ["capsh", "--drop=cap_net_bind_service", "--", "-c", 'exec "$0" "$@"'],
    });
    assert.equal(denied.code, 1, denied.stderr);
    assert.match(
      denied.stderr,
      /tftp: cannot bind UDP 127\.0\.0\.1:69: permission denied; ports below 1024 need root: run as root or give the binary cap_net_bind_service/,
    );
  },
}));

Deno.test("the started server serves the embedded tree over TFTP (curl)", async () => {
  const probe = Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port: 0 });
  const port = (probe.addr as Deno.NetAddr).port;
  probe.close();
  const pypxe = await startPypxe(["--tftp-port", String(port), "--tftp-server-ip", "127.0.0.1"]);
  try {
    const out = await run([
      "curl",
      "-sS",
      "--max-time",
      "10",
      `tftp://127.0.0.1:${port}/pxelinux.cfg/default`,
    ]);
    assert.equal(out.code, 0, out.stderr);
    const expected = await Deno.readTextFile(new URL("../../netboot/pxelinux.cfg/default", import.meta.url));
    assert.equal(out.stdout, expected);
    await pypxe.waitFor(/tftp .*pxelinux\.cfg\/default/);
  } finally {
    assert.equal(await pypxe.stop("SIGTERM"), 0);
  }
});

Deno.test("SIGHUP saves the leases and reloads the static leases; SIGTERM still exits 0", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const leases = join(dir, "static.json");
    const binding = (n: number) =>
      JSON.stringify({
        dhcp: {
          binding: Object.fromEntries(Array.from({ length: n }, (_, i) => [`52:54:00:00:00:0${i}`, {}])),
        },
      });
    await Deno.writeTextFile(leases, binding(1));
    const probe = Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port: 0 });
    const port = (probe.addr as Deno.NetAddr).port;
    probe.close();
    const pypxe = await startPypxe([
      "--no-tftp",
      "--dhcp",
      "--dhcp-server-port",
      String(port),
      "--dhcp-server-ip",
      "127.0.0.1",
      "--dhcp-fileserver",
      "127.0.0.1",
      "--dhcp-router",
      "127.0.0.1",
      "--dhcp-subnet",
      "255.0.0.0",
      "--dhcp-begin",
      "127.0.0.100",
      "--dhcp-end",
      "127.0.0.150",
      "--static-config",
      leases,
      "--save-leases",
      join(dir, "leases.json"),
    ]);
    try {
      await Deno.writeTextFile(leases, binding(3));
      pypxe.child.kill("SIGHUP");
      await pypxe.waitFor(/reloaded 3 static lease\(s\)/);
      await Deno.writeTextFile(leases, "{ broken");
      pypxe.child.kill("SIGHUP");
      await pypxe.waitFor(/static leases not reloaded, keeping the previous ones: .*not valid JSON/);
    } finally {
      assert.equal(await pypxe.stop("SIGTERM"), 0, pypxe.lines.join("\n"));
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
