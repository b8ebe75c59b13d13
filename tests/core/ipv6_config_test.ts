/**
 * `--ipv6` settings: what src/net6.ts derives from the interfaces (interface, server address, /64 pool),
 * the one-line errors when it cannot, and the leases6 file name.
 */
import assert from "node:assert/strict";
import { parseArgs } from "../../src/cli.ts";
import { buildConfig, ConfigError } from "../../src/config.ts";
import { deriveIpv6, type Ipv6Address, isLinkLocal6, isRoutable6, leases6FileFor } from "../../src/net6.ts";

const addr = (name: string, address: string, index = 2): Ipv6Address => ({
  name,
  address,
  prefix: 64,
  index,
  mac: "52:54:00:12:34:56",
});
const lab = [addr("eth0", "fe80::5054:ff:fe12:3456"), addr("eth0", "fd00:1::1")];
const v4 = () => [{ name: "eth0", address: "192.168.7.1", netmask: "255.255.255.0" }];
const given = { iface: "", server: "", begin: "", end: "", full: true };
const build = (args: string[], six: Ipv6Address[] = lab) =>
  buildConfig({ flags: parseArgs(args).flags, interfaces: v4, interfaces6: () => six }).config;
const configError = (pattern: RegExp) => (err: unknown) =>
  err instanceof ConfigError && pattern.test(err.message) && !err.message.includes("\n");

Deno.test("ipv6: the one interface with a routable address gives server and a ::1:0-::1:ffff pool", () => {
  assert.deepEqual(deriveIpv6(given, lab), {
    iface: "eth0",
    index: 2,
    server: "fd00:1::1",
    begin: "fd00:1::1:0",
    end: "fd00:1::1:ffff",
  });
  const c = build(["--dhcp", "--ipv6"]);
  assert.equal(c.DHCP6_SERVER_IP, "fd00:1::1");
  assert.equal(c.DHCP6_OFFER_BEGIN, "fd00:1::1:0");
  assert.equal(c.DHCP6_OFFER_END, "fd00:1::1:ffff");
});

Deno.test("ipv6: given values are kept (canonical) and checked against the server's /64", () => {
  const c = build(["--dhcp", "--ipv6", "--dhcp6-begin", "FD00:1:0:0::200", "--dhcp6-end", "fd00:1::2ff"]);
  assert.equal(c.DHCP6_OFFER_BEGIN, "fd00:1::200");
  assert.equal(c.DHCP6_OFFER_END, "fd00:1::2ff");
  assert.throws(
    () => build(["--dhcp", "--ipv6", "--dhcp6-begin", "fd00:2::5"]),
    configError(/--dhcp6-begin fd00:2::5 is outside the \/64 of the server's address fd00:1::1/),
  );
  assert.throws(
    () => build(["--dhcp", "--ipv6", "--dhcp6-begin", "fd00:1::9", "--dhcp6-end", "fd00:1::5"]),
    configError(/--dhcp6-begin fd00:1::9 is after --dhcp6-end fd00:1::5/),
  );
  assert.throws(
    () => build(["--dhcp", "--ipv6", "--dhcp6-begin", "fd00:1::0", "--dhcp6-end", "fd00:1::5"]),
    configError(/fd00:1::1 lies inside the DHCPv6 range/),
  );
  assert.throws(() => build(["--dhcp6-begin", "fd00::g"]), configError(/expected an IPv6 address/));
});

Deno.test("ipv6: proxy mode needs no pool; an explicit server address wins", () => {
  const c = build(["--dhcp-proxy", "--ipv6", "--dhcp6-server-ip", "fd00:1::7"]);
  assert.equal(c.DHCP6_SERVER_IP, "fd00:1::7");
});

Deno.test("ipv6: no routable address, several interfaces, only link-local: one clear line each", () => {
  assert.throws(
    () => build(["--dhcp", "--ipv6"], [addr("eth0", "fe80::1")]),
    configError(/no interface has a global or ULA IPv6 address/),
  );
  assert.throws(
    () => build(["--dhcp", "--ipv6"], [...lab, addr("eth1", "fd00:9::1", 3)]),
    configError(/several interfaces have IPv6 addresses \(eth0, eth1\); choose one with --interface/),
  );
  assert.throws(
    () => build(["--dhcp", "--ipv6", "--interface", "eth0"], [addr("eth0", "fe80::1")]),
    configError(/eth0 has only a link-local IPv6 address/),
  );
  // TFTP and HTTP over IPv6 alone derive nothing
  assert.equal(build(["--ipv6", "--http"], []).USE_IPV6, true);
});

Deno.test("ipv6: address classes and the leases6 file name", () => {
  assert.equal(isLinkLocal6("fe80::1%eth0"), true);
  assert.equal(isLinkLocal6("fd00::1"), false);
  assert.equal(isRoutable6("::1"), false);
  assert.equal(isRoutable6("::"), false);
  assert.equal(isRoutable6("ff02::1:2"), false);
  assert.equal(isRoutable6("2001:db8::1"), true);
  assert.equal(leases6FileFor("leases.json"), "leases6.json");
  assert.equal(leases6FileFor("/var/lib/pypxe/leases"), "/var/lib/pypxe/leases6");
  assert.equal(leases6FileFor("state.d/x.json"), "state.d/x6.json");
  assert.equal(leases6FileFor(""), "");
});

Deno.test("ipv6: an --interface with IPv6 only serves DHCPv6 only; --no-dhcp4 needs --ipv6", () => {
  const built = buildConfig({
    flags: parseArgs(["--dhcp", "--ipv6", "--interface", "eth1"]).flags,
    interfaces: v4,
    interfaces6: () => [...lab, addr("eth1", "fd00:9::1", 3)],
  });
  assert.equal(built.config.USE_DHCP4, false);
  assert.equal(built.config.DHCP6_SERVER_IP, "fd00:9::1");
  assert.deepEqual(built.warnings, ["eth1 has no IPv4 address: DHCPv6 only there (no IPv4 DHCP)"]);
  assert.throws(
    () => build(["--dhcp", "--interface", "eth1"], [addr("eth1", "fd00:9::1", 3)]),
    configError(/--interface eth1: no IPv4 address on that interface/),
  );
  assert.throws(() => build(["--dhcp", "--no-dhcp4"]), configError(/--no-dhcp4 without --ipv6/));
  assert.equal(build(["--dhcp", "--ipv6", "--no-dhcp4"]).USE_DHCP4, false);
});
