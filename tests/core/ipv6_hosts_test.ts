/**
 * IPv6 serving without sockets: `BootFiles.hostFor` for IPv6 clients (the local address whose prefix
 * holds the client, bracketed; else `[advertiseHost6]`), the generated iPXE menu an IPv6 client gets, and
 * `src/dual_stack.ts` (bind plans, binding with a fake binder, client names).
 */
import assert from "node:assert/strict";
import { BootFiles } from "../../src/netboot/files.ts";
import { NetbootFs } from "../../src/netboot/fs.ts";
import type { Ipv6Address } from "../../src/net6.ts";
import {
  bindAll,
  type Binder,
  bindPlan,
  bracketHost,
  hostPort,
  plainAddr,
  plainIp,
} from "../../src/dual_stack.ts";
import { checkIpxeScript } from "../http/ipxe_syntax.ts";
import { writeTree } from "../helpers/servers.ts";

function addr(name: string, address: string, prefix: number): Ipv6Address {
  return { name, address, prefix, index: 2, mac: "52:54:00:00:00:01" };
}

const V6: Ipv6Address[] = [
  addr("eth0", "fe80::5054:ff:fe00:1", 64),
  addr("eth0", "fd00:1::1", 64),
  addr("eth1", "2001:db8:5::1", 48),
  addr("eth2", "fd00:0:0:10::1", 60),
];
const V4 = [{ name: "eth0", address: "10.0.0.2", netmask: "255.255.255.0" }];

async function withFiles(
  opts: { advertiseHost6?: string; httpPort?: number },
  fn: (files: BootFiles) => Promise<void>,
): Promise<void> {
  const root = await Deno.makeTempDir({ prefix: "pypxe-ipv6-hosts-" });
  try {
    await writeTree(root, { "tree/top.iso": "ISO", "tree/memdisk": "M", "embedded/.keep": "" });
    const netboot = await NetbootFs.open({ overlay: `${root}/tree`, embedded: `${root}/embedded` });
    await fn(
      new BootFiles({
        netboot,
        httpPort: opts.httpPort ?? null,
        advertiseHost: "192.168.0.2",
        advertiseHost6: opts.advertiseHost6,
        interfaces: () => V4,
        interfaces6: () => V6,
      }),
    );
  } finally {
    await Deno.remove(root, { recursive: true });
  }
}

Deno.test("hostFor: an IPv6 client gets the bracketed address of the interface on its prefix", async () => {
  await withFiles({ advertiseHost6: "fd00:9::1" }, (files) => {
    assert.equal(files.hostFor("fd00:1::42"), "[fd00:1::1]");
    assert.equal(files.hostFor("fd00:1::42%eth0"), "[fd00:1::1]"); // a zone is ignored
    assert.equal(files.hostFor("2001:db8:5:7::9"), "[2001:db8:5::1]"); // /48
    assert.equal(files.hostFor("fd00:0:0:1f::5"), "[fd00:0:0:10::1]"); // /60: same first nibble of 0x1f
    assert.equal(files.hostFor("fd00:0:0:20::5"), "[fd00:9::1]"); // outside the /60
    assert.equal(files.hostFor("fd00:2::5"), "[fd00:9::1]"); // no interface: advertiseHost6
    // a link-local client shares fe80::/64 with every interface; a URL cannot name fe80:: without a zone
    assert.equal(files.hostFor("fe80::1234"), "[fd00:9::1]");
    assert.equal(files.hostFor("::1"), "[::1]");
    // IPv4 as before, also as an IPv4-mapped address
    assert.equal(files.hostFor("10.0.0.50"), "10.0.0.2");
    assert.equal(files.hostFor("::ffff:10.0.0.50"), "10.0.0.2");
    assert.equal(files.hostFor("172.16.0.9"), "192.168.0.2");
    assert.equal(files.hostFor(undefined), "192.168.0.2");
    return Promise.resolve();
  });
  // without advertiseHost6 an unmatched IPv6 client falls back to the IPv4 advertised address
  await withFiles({}, (files) => {
    assert.equal(files.hostFor("fd00:2::5"), "192.168.0.2");
    assert.equal(files.hostFor("fd00:1::42"), "[fd00:1::1]");
    return Promise.resolve();
  });
});

Deno.test("hostFor: the iPXE menu an IPv6 client gets has bracketed URLs, with and without a port", async () => {
  for (const [port, base] of [[8080, "http://[fd00:1::1]:8080"], [80, "http://[fd00:1::1]"]] as const) {
    await withFiles({ httpPort: port }, async (files) => {
      const menu = await files.resolve("boot.http.ipxe", "fd00:1::42");
      const text = new TextDecoder().decode((await files.bytes(menu))!);
      assert.deepEqual(checkIpxeScript(text), [], text);
      assert.ok(text.includes(`sanboot --no-describe --drive 0x80 ${base}/top.iso`), text);
      assert.ok(text.includes(`kernel ${base}/memdisk iso raw`), text);
      assert.ok(text.includes("- [fd00:1::1] -"), "the title names the server as the client reaches it");
      const v4 = new TextDecoder().decode(
        (await files.bytes(await files.resolve("boot.http.ipxe", "10.0.0.50")))!,
      );
      assert.ok(v4.includes(`http://10.0.0.2${port === 80 ? "" : `:${port}`}/top.iso`), v4);
    });
  }
});

Deno.test("dual stack: bind plans for each IPv4 address and --ipv6 setting", () => {
  const one = (host: string, more = {}) => ({
    host,
    reuse: false,
    ifFree: false,
    refuseMapped: false,
    ...more,
  });
  assert.deepEqual(bindPlan("0.0.0.0", false), { probe: false, sockets: [one("0.0.0.0")], host6: "" });
  assert.deepEqual(bindPlan("10.0.0.2", false, "fd00::1"), {
    probe: false,
    sockets: [one("10.0.0.2")],
    host6: "",
  });
  assert.deepEqual(bindPlan("0.0.0.0", true, "fd00::1"), {
    probe: false,
    sockets: [one("::"), one("0.0.0.0", { ifFree: true })],
    host6: "::",
  });
  assert.deepEqual(bindPlan("10.0.0.2", true, "fd00::1"), {
    probe: false,
    sockets: [one("10.0.0.2"), one("fd00::1")],
    host6: "fd00::1",
  });
  assert.deepEqual(bindPlan("10.0.0.2", true), {
    probe: true,
    sockets: [one("10.0.0.2", { reuse: true }), one("::", { reuse: true, refuseMapped: true })],
    host6: "::",
  });
});

Deno.test("dual stack: bindAll skips a busy 0.0.0.0 beside a dual-stack ::, closes what it bound on failure", () => {
  const log: string[] = [];
  type Fake = { host: string; port: number };
  const binder = (busy: Set<string>): Binder<Fake> => ({
    open(host: string, port: number, reuse: boolean): Fake {
      log.push(`open ${host}:${port}${reuse ? " reuse" : ""}`);
      if (busy.has(host)) throw new Deno.errors.AddrInUse("busy");
      return { host, port: port || 4242 };
    },
    portOf: (s) => s.port,
    close: (s) => void log.push(`close ${s.host}`),
  });
  // bindv6only=0: `::` took IPv4 too, so 0.0.0.0 is busy and skipped
  const dual = bindAll(bindPlan("0.0.0.0", true), 0, binder(new Set(["0.0.0.0"])));
  assert.equal(dual.port, 4242);
  assert.deepEqual(dual.bound.map((b) => b.spec.host), ["::"]);
  assert.deepEqual(log.splice(0), ["open :::0", "open 0.0.0.0:4242"]);
  // bindv6only=1: both bound
  assert.deepEqual(bindAll(bindPlan("0.0.0.0", true), 69, binder(new Set())).bound.length, 2);
  log.splice(0);
  // a probe first, then both with reuse
  const probed = bindAll(bindPlan("10.0.0.2", true), 0, binder(new Set()));
  assert.equal(probed.port, 4242);
  assert.deepEqual(log.splice(0), [
    "open :::0",
    "close ::",
    "open 10.0.0.2:4242 reuse",
    "open :::4242 reuse",
  ]);
  // a failure names the address and closes what was bound
  assert.throws(
    () => bindAll(bindPlan("10.0.0.2", true, "fd00::1"), 69, binder(new Set(["fd00::1"]))),
    (err: Error & { host?: string }) => err.name === "BindFailure" && err.host === "fd00::1",
  );
  assert.deepEqual(log.splice(0), ["open 10.0.0.2:69", "open fd00::1:69", "close 10.0.0.2"]);
});

Deno.test("dual stack: client names are unambiguous, IPv4-mapped addresses plain IPv4", () => {
  assert.equal(hostPort({ hostname: "fd00::5", port: 1234 }), "[fd00::5]:1234");
  assert.equal(hostPort({ hostname: "::ffff:10.0.0.5", port: 1234 }), "10.0.0.5:1234");
  assert.equal(hostPort({ hostname: "10.0.0.5", port: 69 }), "10.0.0.5:69");
  assert.equal(plainIp("::FFFF:192.0.2.1"), "192.0.2.1");
  assert.equal(plainIp("::ffff:1:2"), "::ffff:1:2");
  const a = { transport: "udp" as const, hostname: "::1", port: 5 };
  assert.equal(plainAddr(a), a);
  assert.deepEqual(plainAddr({ ...a, hostname: "::ffff:127.0.0.1" }), { ...a, hostname: "127.0.0.1" });
  assert.equal(bracketHost("::"), "[::]");
  assert.equal(bracketHost("[::1]"), "[::1]");
  assert.equal(bracketHost("0.0.0.0"), "0.0.0.0");
});
