import assert from "node:assert/strict";
import { getLogger } from "@logtape/logtape";
import { levelFor, setupLogging, teardownLogging } from "../../src/log.ts";

Deno.test("--debug wins over --verbose; default is INFO", () => {
  assert.equal(levelFor("tftp", {}), "info");
  assert.equal(levelFor("tftp", { verbose: "all" }), "debug");
  assert.equal(levelFor("tftp", { verbose: "all", debug: "tftp" }), "trace");
  assert.equal(levelFor("dhcp", { debug: "all,-dhcp" }), "info");
  assert.equal(levelFor("dhcp", { debug: "all,-dhcp", verbose: "dhcp" }), "debug");
});

Deno.test("per-service levels reach the console sink as selected", async () => {
  const lines: string[] = [];
  await setupLogging({ debug: "all,-dhcp", verbose: "dhcp", write: (l) => lines.push(l) });
  try {
    getLogger(["pypxe", "tftp"]).trace("tftp packet");
    getLogger(["pypxe", "dhcp"]).debug("dhcp detail");
    getLogger(["pypxe", "dhcp"]).trace("dhcp packet");
    getLogger(["pypxe", "http"]).info("http request");
    getLogger(["pypxe", "main"]).debug("core detail");
  } finally {
    await teardownLogging();
  }
  const text = lines.join("\n");
  assert.match(text, /TRACE tftp {2}tftp packet/);
  assert.match(text, /DEBUG dhcp {2}dhcp detail/);
  assert.doesNotMatch(text, /dhcp packet/);
  assert.match(text, /INFO {2}http {2}http request/);
  assert.doesNotMatch(text, /core detail/);
});

Deno.test("categories that are not services are INFO by default and follow their service's --debug", async () => {
  for (const [opts, debugShown] of [[{}, false], [{ debug: "dhcp" }, true]] as const) {
    const lines: string[] = [];
    await setupLogging({ ...opts, write: (l) => lines.push(l) });
    try {
      for (const category of ["machines", "dhcp6", "api", "remote", "netboot"]) {
        getLogger(["pypxe", category]).debug(`${category} detail`);
        getLogger(["pypxe", category]).info(`${category} step`);
      }
    } finally {
      await teardownLogging();
    }
    const text = lines.join("\n");
    for (const category of ["machines", "dhcp6", "api", "remote", "netboot"]) {
      assert.match(text, new RegExp(`${category} step`));
    }
    assert.equal(/machines detail/.test(text), debugShown, JSON.stringify(opts));
    assert.doesNotMatch(text, /remote detail/);
  }
});

Deno.test({
  name: "--syslog sends RFC 5424 datagrams to the server",
  sanitizeResources: false, // LogTape's syslog sink closes its node:dgram socket asynchronously
  sanitizeOps: false,
  fn: async () => {
    const receiver = Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port: 0 });
    const port = (receiver.addr as Deno.NetAddr).port;
    const lines: string[] = [];
    try {
      await setupLogging({ syslog: { host: "127.0.0.1", port }, write: (l) => lines.push(l) });
      getLogger(["pypxe", "tftp"]).info("52:54:00:77:00:10 pxelinux.0 sent");
      getLogger(["pypxe", "dhcp"]).warn("pool exhausted");
      const got: string[] = [];
      const deadline = Date.now() + 5000;
      while (got.length < 2 && Date.now() < deadline) {
        const timer = new Promise<null>((r) => setTimeout(() => r(null), deadline - Date.now()));
        const result = await Promise.race([receiver.receive(), timer]);
        if (result === null) break;
        got.push(new TextDecoder().decode(result[0]));
      }
      assert.equal(got.length, 2, `received ${got.length} datagrams`);
      // <PRI>1 TIMESTAMP HOST APP PROCID MSGID SD MSG; daemon(3)*8 + info(6) = 30, warning(4) = 28
      assert.match(
        got[0],
        /^<30>1 \d{4}-\d\d-\d\dT[\d:.]+Z \S+ pypxe \d+ - - .*52:54:00:77:00:10 pxelinux\.0 sent/,
      );
      assert.match(got[1], /^<28>1 .* pypxe \d+ - - .*pool exhausted/);
      assert.equal(lines.length, 2, "the console still gets every line");
    } finally {
      await teardownLogging();
      receiver.close();
    }
  },
});
