import assert from "node:assert/strict";
import { join } from "node:path";
import { ConfigError } from "../../src/config.ts";
import { resolveIds } from "../../src/privilege.ts";
import { runPypxeOnce, startPypxe } from "../helpers/servers.ts";
import { needsRoot, requires } from "../helpers/tools.ts";
import { run } from "../helpers/run.ts";

const PASSWD = "root:x:0:0:root:/root:/bin/bash\npxe:x:1500:1600::/var/lib/pxe:/usr/sbin/nologin\n";
const GROUPS = "root:x:0:\nnetboot:x:1700:\n";

Deno.test("--user/--group resolve from passwd and group, by name or number", () => {
  assert.deepEqual(resolveIds({ user: "pxe", passwd: PASSWD, groups: GROUPS }), { uid: 1500, gid: 1600 });
  assert.deepEqual(resolveIds({ user: "pxe", group: "netboot", passwd: PASSWD, groups: GROUPS }), {
    uid: 1500,
    gid: 1700,
  });
  assert.deepEqual(resolveIds({ user: "2000", group: "2001", passwd: PASSWD, groups: GROUPS }), {
    uid: 2000,
    gid: 2001,
  });
  assert.throws(() => resolveIds({ user: "nosuch", passwd: PASSWD, groups: GROUPS }), ConfigError);
  assert.throws(
    () => resolveIds({ user: "pxe", group: "nogroup2", passwd: PASSWD, groups: GROUPS }),
    /--group nogroup2: no such group/,
  );
});

Deno.test(requires(needsRoot(), {
  name: "--user nobody: ports bound as root, then the process runs as nobody and still serves",
  fn: async () => {
    const dir = await Deno.makeTempDir({ prefix: "pypxe-priv-" }); // root-owned, 0700
    const l = Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port: 0 });
    const port = (l.addr as Deno.NetAddr).port;
    l.close();
    const pypxe = await startPypxe([
      "--tftp-port",
      String(port),
      "--tftp-server-ip",
      "127.0.0.1",
      "--user",
      "nobody",
      "--dhcp",
      "--dhcp-server-port",
      String(port + 1 > 65535 ? port - 1 : port + 1),
      "--dhcp-server-ip",
      "127.0.0.1",
      "--dhcp-subnet",
      "255.0.0.0",
      "--dhcp-router",
      "127.0.0.1",
      "--dhcp-fileserver",
      "127.0.0.1",
      "--dhcp-begin",
      "127.0.0.100",
      "--dhcp-end",
      "127.0.0.150",
      "--save-leases",
      join(dir, "leases.json"),
    ]);
    try {
      const status = await Deno.readTextFile(`/proc/${pypxe.child.pid}/status`);
      assert.match(status, /^Uid:\s+65534\s+65534\s+65534\s+65534$/m);
      assert.ok(pypxe.lines.some((line) => /dropped root: now uid 65534/.test(line)));
      assert.ok(
        pypxe.lines.some((line) => line.includes(`${dir} is not writable by uid 65534`)),
        "a state directory the user cannot write is named",
      );
      const out = await run(["curl", "-sS", "--max-time", "5", `tftp://127.0.0.1:${port}/boot.ipxe`]);
      assert.equal(out.code, 0);
      assert.match(out.stdout, /^#!ipxe/);
    } finally {
      assert.equal(await pypxe.stop("SIGTERM"), 0);
      await Deno.remove(dir, { recursive: true });
    }
  },
}));

Deno.test("--user with an unknown name, or --group alone, is a config error (exit 2)", async () => {
  const unknown = await runPypxeOnce(["--no-tftp", "--user", "no-such-user-pypxe"]);
  assert.equal(unknown.code, 2);
  assert.match(unknown.stderr, /--user no-such-user-pypxe: no such user in \/etc\/passwd/);
  const alone = await runPypxeOnce(["--no-tftp", "--group", "nogroup"]);
  assert.equal(alone.code, 2);
  assert.match(alone.stderr, /--group needs --user/);
});
