/**
 * Messages a person reads (issue 16 §3): fatal errors in one format with exit 2, suggestions only for
 * near misses, `--interface` naming a missing interface, `--dump-config-merged` validating, and the `--`
 * that `deno task start -- ...` passes on being ignored.
 */
import { equal, match, ok } from "node:assert/strict";
import { type AppIo, runPypxe } from "../../src/app.ts";
import { closest } from "../../src/config.ts";
import { startPypxe } from "../helpers/servers.ts";

async function run(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = "";
  let stderr = "";
  const io: AppIo = { stdout: (t) => stdout += t, stderr: (t) => stderr += t };
  const code = await runPypxe(args, io);
  return { code, stdout, stderr };
}

Deno.test("messages: an unknown flag suggests only a near miss", async () => {
  const far = await run(["--frobnicate"]);
  equal(far.code, 2);
  equal(far.stderr, "pypxe: error: unknown flag --frobnicate\n");
  const near = await run(["--no-ipx"]);
  equal(near.code, 2);
  equal(near.stderr, "pypxe: error: unknown flag --no-ipx (did you mean --no-ipxe?)\n");
  equal(closest("FOO", ["AUTO", "USE_DHCP"]), null);
  equal(closest("DHCP_SEVER_IP", ["DHCP_SERVER_IP", "AUTO"]), "DHCP_SERVER_IP");
});

Deno.test("messages: an unknown JSON key suggests only a near miss", async () => {
  const dir = await Deno.makeTempDir({ prefix: "pypxe-messages-" });
  try {
    await Deno.writeTextFile(`${dir}/far.json`, JSON.stringify({ FOO: 1 }));
    await Deno.writeTextFile(`${dir}/near.json`, JSON.stringify({ DHCP_SEVER_IP: "1.2.3.4" }));
    const far = await run(["--config", `${dir}/far.json`, "--dump-config-merged"]);
    match(far.stderr, /unknown key FOO ignored\n/);
    const near = await run(["--config", `${dir}/near.json`, "--dump-config-merged"]);
    match(near.stderr, /unknown key DHCP_SEVER_IP ignored \(did you mean DHCP_SERVER_IP\?\)\n/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("messages: --dump-config-merged validates like a real start", async () => {
  const bad = await run(["--dhcp-begin", "300.1.2.3", "--dump-config-merged"]);
  equal(bad.code, 2);
  equal(bad.stdout, "");
  equal(
    bad.stderr,
    'pypxe: error: DHCP_OFFER_BEGIN (--dhcp-begin): expected an IPv4 address, got "300.1.2.3"\n',
  );
  const good = await run(["--dhcp-begin", "192.168.2.120", "--dump-config-merged"]);
  equal(good.code, 0);
  equal(JSON.parse(good.stdout).DHCP_OFFER_BEGIN, "192.168.2.120");
});

Deno.test("messages: a missing --netboot-dir is a one-line error, exit 2", async () => {
  const r = await run(["--netboot-dir", "/nonexistent-pypxe-dir", "--check"]);
  equal(r.code, 2);
  equal(r.stderr, "pypxe: error: --netboot-dir /nonexistent-pypxe-dir: netboot directory does not exist\n");
});

Deno.test("messages: --interface names a missing interface and the host's interfaces", async () => {
  const r = await run(["--interface", "nosuch0", "--dhcp", "--check"]);
  equal(r.code, 2);
  match(
    r.stderr,
    /^pypxe: error: --interface nosuch0: no such interface \(this host has [^)]*\blo\b[^)]*\)\n$/,
  );
});

Deno.test("messages: the `--` of `deno task start -- --flags` is ignored", async () => {
  const r = await run(["--", "--version"]);
  equal(r.code, 0);
  ok(r.stdout.startsWith("pypxe "));
});

Deno.test("messages: on SIGTERM the DHCP service says how many leases it saved, and where", async () => {
  const dir = await Deno.makeTempDir({ prefix: "pypxe-messages-stop-" });
  const l = Deno.listenDatagram({ hostname: "127.0.0.1", port: 0, transport: "udp" });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  const leases = `${dir}/leases.json`;
  await Deno.writeTextFile(
    leases,
    JSON.stringify({
      "AA:BB:CC:DD:EE:01": { ip: "127.0.0.101", expire: Date.now() / 1000 + 3600, ipxe: false },
    }),
  );
  const pypxe = await startPypxe([
    ...[
      "--no-tftp",
      "--no-status",
      "--dhcp",
      "--dhcp-server-ip",
      "127.0.0.1",
      "--dhcp-server-port",
      String(port),
    ],
    ...["--dhcp-subnet", "255.0.0.0", "--dhcp-begin", "127.0.0.100", "--dhcp-end", "127.0.0.110"],
    ...["--dhcp-router", "127.0.0.1", "--dhcp-fileserver", "127.0.0.1", "--save-leases", leases],
  ]);
  try {
    equal(await pypxe.stop("SIGTERM"), 0);
    const text = pypxe.lines.join("\n");
    match(text, new RegExp(`stopped: 1 lease saved to ${leases.replaceAll(".", "\\.")}`));
  } finally {
    await pypxe.stop("SIGKILL");
    await Deno.remove(dir, { recursive: true });
  }
});
