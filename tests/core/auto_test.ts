/** `--auto` in network namespaces: proxyDHCP beside a DHCP server that answers, full DHCP when none does. */
import { decideAuto, decideAuto6, type Ipv6Findings } from "../../src/auto.ts";
import assert from "node:assert/strict";
import { netnsAvailable, Segment } from "../helpers/netns.ts";
import { plainDhcpServer, startPypxe } from "../helpers/servers.ts";
import { enableIpv6 } from "../helpers/segment6.ts";
import { requires } from "../helpers/tools.ts";

const unavailable = netnsAvailable(["dnsmasq"]);

async function autoRun(withDnsmasq: boolean): Promise<string[]> {
  const seg = await Segment.create(withDnsmasq ? "autop" : "autof");
  let stopDhcp: (() => Promise<void>) | undefined;
  try {
    if (withDnsmasq) {
      stopDhcp = await plainDhcpServer(seg);
      await new Promise((r) => setTimeout(r, 500)); // dnsmasq binds within milliseconds
    }
    const pypxe = await startPypxe(
      ["--auto", "--interface", seg.serverIf, "--auto-probe-ms", "1500", "--http-port", "8080"],
      { prefix: seg.inServer() },
    );
    const code = await pypxe.stop("SIGTERM");
    assert.equal(code, 0, pypxe.lines.join("\n"));
    return pypxe.lines;
  } finally {
    await stopDhcp?.();
    await seg.destroy();
  }
}

Deno.test(requires(unavailable, {
  name: "--auto: another DHCP server answers -> proxyDHCP, plus TFTP, HTTP and iPXE",
  sanitizeResources: false, // subprocess pipes are drained by the helper
  fn: async () => {
    const lines = (await autoRun(true)).join("\n");
    assert.match(
      lines,
      /auto: DHCP server\(s\) 10\.\d+\.0\.2 answered on srv0: running proxyDHCP beside them/,
    );
    assert.match(lines, /dhcp: server 10\.\d+\.0\.1\/255\.255\.255\.0 on srv0 \(--interface\), proxyDHCP/);
    assert.match(lines, /http +TCP 0\.0\.0\.0:8080/);
    assert.match(lines, /tftp +UDP 0\.0\.0\.0:69/);
    assert.match(lines, /iPXE BIOS: http:\/\/10\.\d+\.0\.1:8080\/boot\.http\.ipxe/);
  },
}));

Deno.test(requires(unavailable, {
  name: "--auto: no DHCP server answers -> full DHCP with a range from the interface",
  sanitizeResources: false,
  fn: async () => {
    const lines = (await autoRun(false)).join("\n");
    assert.match(lines, /auto: no DHCP server answered on srv0 within 1\.5 s: running full DHCP/);
    assert.match(
      lines,
      /dhcp: server 10\.\d+\.0\.1\/255\.255\.255\.0 on srv0 \(--interface\), range 10\.\d+\.0\.128-10\.\d+\.0\.227/,
    );
  },
}));

Deno.test(requires(unavailable, {
  name: "--auto --ipv6 on an isolated segment: full DHCP and DHCPv6, plus router advertisements",
  sanitizeResources: false,
  fn: async () => {
    const seg = await Segment.create("auto6");
    try {
      await enableIpv6(seg);
      const pypxe = await startPypxe(
        ["--auto", "--ipv6", "--interface", seg.serverIf, "--auto-probe-ms", "1000", "--http-port", "8080"],
        { prefix: seg.inServer() },
      );
      const code = await pypxe.stop("SIGTERM");
      const lines = pypxe.lines.join("\n");
      assert.equal(code, 0, lines);
      assert.match(
        lines,
        /auto: no DHCPv6 server and no router answered: running full DHCPv6 and advertising/,
      );
      assert.match(lines, /dhcp6 +UDP \[::\]:547 \(ff02::1:2 on srv0\)/);
      assert.match(lines, /ra +ICMPv6 srv0 RA fd00:1::\/64 flags MO/);
      assert.match(lines, /dhcp6: server fd00:1::1, range fd00:1::1:0-fd00:1::1:ffff/);
    } finally {
      await seg.destroy();
    }
  },
}));

Deno.test("--auto chooses --interface, else the only IPv4 interface, else the only wired one", async () => {
  const { chooseInterface, decideAuto } = await import("../../src/auto.ts");
  const eth = { name: "eth0", address: "10.0.0.5", netmask: "255.255.255.0" };
  const wlan = { name: "wlan0", address: "192.168.1.5", netmask: "255.255.255.0" };
  const usb = { name: "enx001122", address: "172.16.0.5", netmask: "255.255.0.0" };
  assert.equal(chooseInterface("", [wlan]).name, "wlan0");
  assert.equal(chooseInterface("", [eth, wlan]).name, "eth0");
  assert.equal(chooseInterface("wlan0", [eth, wlan]).name, "wlan0");
  assert.throws(
    () => chooseInterface("", [eth, usb, wlan]),
    /cannot choose among the IPv4 interfaces \(eth0, enx001122, wlan0\)/,
  );
  assert.throws(() => chooseInterface("eth9", [eth]), /--interface eth9: no IPv4 address/);
  assert.deepEqual(decideAuto(eth, [], 2000).flags.DHCP_MODE_PROXY, false);
  assert.deepEqual(
    decideAuto(eth, [{ server: "10.0.0.1", offered: "10.0.0.9" }], 2000).flags.DHCP_MODE_PROXY,
    true,
  );
});

Deno.test("auto ipv6: the IPv4 mode where safe, otherwise IPv6 off with the reason", () => {
  const eth = { name: "eth0", address: "192.168.9.1", netmask: "255.255.255.0" };
  const full = decideAuto(eth, [], 1000);
  const proxy = decideAuto(eth, [{ server: "192.168.9.254", offered: "192.168.9.50" }], 1000);
  const six = (over: Partial<Ipv6Findings> = {}): Ipv6Findings => ({
    routable: true,
    router: false,
    dhcp6Server: null,
    problems: [],
    ...over,
  });
  const isolated = decideAuto6("eth0", full, six());
  assert.deepEqual(isolated.flags, { USE_IPV6: true, USE_RA: true });
  assert.match(isolated.notes.join("\n"), /full DHCPv6 and advertising the \/64 \(--ra\)/);
  assert.deepEqual(decideAuto6("eth0", full, six({ router: true })).flags, { USE_IPV6: true });
  const beside = decideAuto6("eth0", proxy, six({ dhcp6Server: "fe80::1" }));
  assert.deepEqual(beside.flags, { USE_IPV6: true });
  assert.match(beside.notes.join("\n"), /DHCPv6 server fe80::1 answered: proxyDHCPv6 beside it/);
  const rogue = decideAuto6("eth0", proxy, six());
  assert.deepEqual(rogue.flags, { USE_IPV6: false });
  assert.match(rogue.notes.join("\n"), /IPv6 off: a DHCPv4 server answered but no DHCPv6 server did/);
  const mixed = decideAuto6("eth0", full, six({ dhcp6Server: "fe80::1" }));
  assert.match(mixed.notes.join("\n"), /IPv6 off: DHCPv6 server fe80::1 answered but no DHCPv4 server did/);
  const noUrl = decideAuto6("eth0", full, six({ routable: false, problems: ["cannot bind UDP [::]:546"] }));
  assert.deepEqual(noUrl.flags, { USE_IPV6: false });
  assert.match(noUrl.notes[0], /IPv6 probe on eth0: cannot bind/);
  assert.match(noUrl.notes[1], /eth0 has no global or ULA IPv6 address/);
});
