/**
 * `pypxe next` and `pypxe machines` against a running pypxe's machine API (real processes): set and
 * clear a one-shot, the table, the inventory on /status and /status.json, the refusals (no token: 403 said in one line; unknown profile; no API).
 * The token never appears in pypxe's log.
 */
import { equal, match, ok } from "node:assert/strict";
import { freeTcpPort, runPypxeOnce, startPypxe, writeTree } from "../helpers/servers.ts";

const TOKEN = "cli-test-token-0123456789abcdef";

Deno.test("machines cli: next and machines talk to the running server", async () => {
  const root = await Deno.makeTempDir({ prefix: "pypxe-cli-" });
  await writeTree(root, {
    "m/profiles/debian.json": JSON.stringify({ kernel: "d/vmlinuz" }),
    "m/profiles/disk.json": JSON.stringify({ local: true }),
    "m/groups/default.json": JSON.stringify({ profile: "disk" }),
    "token": TOKEN + "\n",
    "tree/README": "x",
  });
  const listen = `127.0.0.1:${freeTcpPort()}`;
  const api = ["--api-listen", listen, "--api-token-file", `${root}/token`];
  const http = freeTcpPort();
  const server = await startPypxe([
    "--no-tftp",
    ...["--http", "--http-port", String(http), "--http-server-ip", "127.0.0.1"],
    ...["--netboot-dir", `${root}/tree`, "--machines", `${root}/m`, ...api],
  ]);
  try {
    const set = await runPypxeOnce(["next", "52-54-00-AB-CD-EF", "debian", ...api]);
    equal(set.code, 0, set.stderr);
    equal(set.stdout, "52:54:00:ab:cd:ef: next boot debian, once\n");
    const table = await runPypxeOnce(["machines", "--api-listen", listen]);
    equal(table.code, 0, table.stderr);
    match(table.stdout, /^MAC +ARCH +CLIENT +IP +HOSTNAME +PROFILE +NEXT +LAST BOOT +LAST SEEN\n/);
    match(table.stdout, /\n52:54:00:ab:cd:ef +- +- +- +- +debian +debian +- +-\n/);
    const json = await runPypxeOnce(["machines", "--json", "--api-listen", listen]);
    equal(JSON.parse(json.stdout).machines[0].next.profile, "debian");

    // the inventory is on the status page and in /status.json too
    const status = await (await fetch(`http://127.0.0.1:${http}/status.json`)).json();
    equal(status.machines[0].mac, "52:54:00:ab:cd:ef");
    equal(status.machines[0].next.profile, "debian");
    match(await (await fetch(`http://127.0.0.1:${http}/status`)).text(), /Machines \(1\)/);

    const unknown = await runPypxeOnce(["next", "52:54:00:ab:cd:ef", "nosuch", ...api]);
    equal(unknown.code, 1);
    match(
      unknown.stderr,
      /^pypxe: error: PUT \/api\/machines\/52:54:00:ab:cd:ef\/next: 400 unknown profile "nosuch"/,
    );
    const noToken = await runPypxeOnce(["next", "52:54:00:ab:cd:ef", "--clear", "--api-listen", listen]);
    equal(noToken.code, 1);
    match(noToken.stderr, /401 missing or wrong bearer token/);
    const cleared = await runPypxeOnce(["next", "52:54:00:ab:cd:ef", "--clear", ...api]);
    equal(cleared.code, 0, cleared.stderr);
    equal(cleared.stdout, "52:54:00:ab:cd:ef: no pending next boot\n");
    const usage = await runPypxeOnce(["next", "nonsense", ...api]);
    equal(usage.code, 2);
    match(usage.stderr, /^pypxe: error: usage: pypxe next MAC PROFILE/);
    const noApi = await runPypxeOnce(["machines"]);
    equal(noApi.code, 2);
    match(noApi.stderr, /no machine API to talk to: give --api-listen/);
  } finally {
    equal(await server.stop(), 0);
    ok(!server.lines.join("\n").includes(TOKEN), "the token is never logged");
    await Deno.remove(root, { recursive: true });
  }
});
