/**
 * `--check` reports what the real start-up would fail on (issue 16 §2): a missing NBD image, addresses
 * that are not this host's, unknown config keys, saved leases outside the range, static leases outside the
 * subnet.
 */
import { deepEqual, equal, match, ok } from "node:assert/strict";
import { runCheck } from "../../src/check.ts";
import { buildConfig } from "../../src/config.ts";
import { parseArgs } from "../../src/cli.ts";
import { NetbootFs } from "../../src/netboot/fs.ts";
import { join } from "node:path";
import { freeUdpPort, runPypxeOnce } from "../helpers/servers.ts";

async function check(args: string[], opts: { configWarnings?: string[]; local?: string[] } = {}) {
  const config = buildConfig({ flags: parseArgs(args).flags, interfaces: () => [] }).config;
  const dir = await Deno.makeTempDir({ prefix: "pypxe-check-problems-" });
  try {
    const netboot = await NetbootFs.open({ overlay: dir, embedded: dir });
    return await runCheck({
      config,
      netboot,
      configWarnings: opts.configWarnings,
      localAddresses: opts.local ?? ["127.0.0.1", "192.168.2.2"],
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

// ports: high and on loopback so the probes never collide with a real service
const QUIET = ["--no-tftp", "--tftp-port", "16969"];

Deno.test("check: a missing NBD image is a problem (the real start exits 1)", async () => {
  const r = await check([...QUIET, "--nbd", "/nonexistent/disk.img", "--nbd-port", "16810"]);
  ok(
    r.problems.some((p) => /^--nbd \/nonexistent\/disk\.img: cannot open it \(No such file/.test(p)),
    r.problems.join("\n"),
  );
});

Deno.test("check: a server address that is not this host's is a problem naming the host's addresses", async () => {
  const r = await check(
    [
      ...QUIET,
      "--dhcp",
      "--dhcp-server-port",
      "16767",
      "--dhcp-server-ip",
      "10.99.0.1",
      "--dhcp-begin",
      "10.99.0.100",
    ]
      .concat(["--dhcp-end", "10.99.0.110", "--dhcp-router", "10.99.0.1", "--dhcp-fileserver", "10.99.0.1"]),
  );
  deepEqual(
    r.problems.filter((p) => p.startsWith("DHCP_SERVER_IP")),
    ["DHCP_SERVER_IP (--dhcp-server-ip) 10.99.0.1 is not an address of this host (this host has 192.168.2.2)"],
  );
  const http = await check(["--http", "--http-port", "18099", "--http-server-ip", "10.99.0.7", ...QUIET]);
  ok(
    http.problems.some((p) => p.startsWith("HTTP_SERVER_IP (--http-server-ip) 10.99.0.7 is not an address")),
  );
  const fine = await check(["--http", "--http-port", "18099", "--http-server-ip", "192.168.2.2", ...QUIET]);
  equal(fine.problems.filter((p) => p.includes("not an address of this host")).length, 0);
});

Deno.test("check: the boot file server pypxe announces must be this host when pypxe serves the files", async () => {
  const r = await check([
    "--dhcp",
    "--dhcp-server-port",
    "16768",
    "--http",
    "--http-port",
    "18098",
    "--dhcp-fileserver",
    "192.168.2.9",
    ...QUIET,
  ]);
  ok(
    r.problems.some((p) =>
      /^DHCP_FILESERVER \(--dhcp-fileserver\), where clients fetch their boot file, 192\.168\.2\.9/.test(p)
    ),
  );
});

Deno.test("check: unknown config keys are problems, not only warnings", async () => {
  const r = await check(QUIET, { configWarnings: ["pypxe.json: unknown key FOO ignored"] });
  equal(r.problems[0], "pypxe.json: unknown key FOO ignored"); // the empty test tree adds missing boot files
  match(r.lines.join("\n"), /Limits:/);
});

Deno.test("check: saved leases outside the range and static leases outside the subnet are problems; nothing is written", async () => {
  const dir = await Deno.makeTempDir({ prefix: "pypxe-check-leases-" });
  try {
    const leases = join(dir, "leases.json");
    const expire = Math.round(Date.now() / 1000) + 3600;
    const table = JSON.stringify({
      "52:54:00:00:00:01": { ip: "127.0.0.105", expire, ipxe: false }, // in range: fine
      "52:54:00:00:00:02": { ip: "127.0.0.200", expire, ipxe: false }, // range shrank
    });
    await Deno.writeTextFile(leases, table);
    const journalLine = JSON.stringify({ mac: "52:54:00:00:00:03", ip: "127.0.0.9", expire, ipxe: true });
    await Deno.writeTextFile(`${leases}.journal`, journalLine + "\n");
    const statics = join(dir, "static.json");
    await Deno.writeTextFile(
      statics,
      JSON.stringify({
        dhcp: {
          binding: {
            "52-54-00-00-00-0A": { ipaddr: "10.5.5.5" },
            "52:54:00:00:00:0b": { ipaddr: "127.0.0.50" },
          },
        },
      }),
    );
    const r = await runPypxeOnce([
      "--check",
      ...["--dhcp", "--dhcp-server-ip", "127.0.0.1", "--dhcp-subnet", "255.255.255.0"],
      ...["--dhcp-begin", "127.0.0.100", "--dhcp-end", "127.0.0.110", "--dhcp-router", ""],
      ...["--dhcp-fileserver", "127.0.0.1", "--dhcp-server-port", String(freeUdpPort())],
      ...["--save-leases", leases, "--static-config", statics, "--netboot-dir", dir, ...QUIET],
    ]);
    equal(r.code, 1, r.stdout + r.stderr);
    const problems = r.stdout.split("\n").filter((l) => l.startsWith("  - "));
    const about = (needle: string) => problems.filter((p) => p.includes(needle));
    equal(about("52:54:00:00:00:01").length, 0, "a lease in the range is fine");
    match(
      about("52:54:00:00:00:02").join("") + about("52:54:00:00:00:02".toUpperCase()).join(""),
      /saved lease .*127\.0\.0\.200 is outside the pool .*\(range 127\.0\.0\.100-127\.0\.0\.110\)/,
    );
    match(about("52:54:00:00:00:03").join(""), /leases\.json\.journal:1: .*127\.0\.0\.9 is outside the pool/);
    match(
      about("52:54:00:00:00:0a").join(""),
      /^ {2}- static lease 52:54:00:00:00:0a \(.*static\.json\): ipaddr 10\.5\.5\.5 is outside the subnet 127\.0\.0\.0\/24 of DHCP_SERVER_IP 127\.0\.0\.1/,
    );
    equal(about("52:54:00:00:00:0b").length, 0, "a static lease in the subnet is fine");
    // --check read the files and wrote nothing
    equal(await Deno.readTextFile(leases), table);
    equal(await Deno.readTextFile(`${leases}.journal`), journalLine + "\n");
    deepEqual((await Array.fromAsync(Deno.readDir(dir))).map((e) => e.name).sort(), [
      "leases.json",
      "leases.json.journal",
      "static.json",
    ]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
