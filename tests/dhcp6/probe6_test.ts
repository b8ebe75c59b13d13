/**
 * `--auto`'s IPv6 probe: the pure parts (the routing-table reader, the Solicit it sends, the RA reader),
 * then `probeIpv6` in a client namespace against a bare link (nothing found), pypxe's own `--ra` service
 * (a router), dnsmasq as a DHCPv6 server, and dnsmasq's own router advertisements plus a default route.
 */
import { deepEqual, equal, match, ok } from "node:assert/strict";
import { clientId, iaNas, requestedOptions } from "../../src/dhcp6/accessors.ts";
import { MessageType6, Opt6 } from "../../src/dhcp6/options.ts";
import { decodeDhcp6, encodeDhcp6 } from "../../src/dhcp6/packet.ts";
import { advertiserOf, defaultRouteVia, probeSolicit } from "../../src/dhcp6/probe6.ts";
import { encodeRouterAdvert, encodeRouterSolicit } from "../../src/dhcp6/ra.ts";
import { buildRouterAdvert } from "../../src/dhcp6/ra_service.ts";
import { linkLocalOf, probeIpv6In, startRaIn } from "../helpers/ipv6_link.ts";
import { netnsAvailable, type NetnsPair } from "../helpers/netns.ts";
import { createPair6 } from "../helpers/netns6.ts";
import { run } from "../helpers/run.ts";
import { startDnsmasqDhcp } from "../helpers/servers.ts";
import { requires } from "../helpers/tools.ts";

/** /proc/net/ipv6_route of a host with a default route via eth0, the loopback's reject default, a /64. */
const ROUTES = [
  "fd000000000000000000000000000000 40 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000001 00000000 00000001     eth0",
  "00000000000000000000000000000000 00 00000000000000000000000000000000 00 fe800000000000000000000000000001 00000400 00000001 00000000 00450003     eth0",
  "00000000000000000000000000000000 00 00000000000000000000000000000000 00 00000000000000000000000000000000 ffffffff 00000001 00000000 00200200       lo",
].join("\n");

Deno.test("defaultRouteVia: ::/0 up through the interface; not the loopback's reject route, not another interface", () => {
  equal(defaultRouteVia(ROUTES, "eth0"), true);
  equal(defaultRouteVia(ROUTES, "lo"), false);
  equal(defaultRouteVia(ROUTES, "eth1"), false);
  equal(defaultRouteVia(ROUTES.split("\n")[0], "eth0"), false);
  equal(defaultRouteVia("", "eth0"), false);
});

Deno.test("probeSolicit: DUID-LL, elapsed time, ORO (DNS, boot file URL), one IA_NA; decodes back", () => {
  const mac = Uint8Array.of(0x02, 0x11, 0x22, 0x33, 0x44, 0x55);
  const msg = decodeDhcp6(encodeDhcp6(probeSolicit(0xabcdef, mac, 150)));
  ok(!("hopCount" in msg));
  equal(msg.type, MessageType6.SOLICIT);
  equal(msg.transactionId, 0xabcdef);
  deepEqual(clientId(msg), { type: 3, hardwareType: 1, linkLayer: mac });
  deepEqual(requestedOptions(msg), [Opt6.DNS_SERVERS, Opt6.BOOTFILE_URL]);
  equal(iaNas(msg).length, 1);
  deepEqual(msg.options.find((o) => o.code === Opt6.ELAPSED_TIME)?.data, Uint8Array.of(0, 150));
  ok(!msg.options.some((o) => o.code === Opt6.RAPID_COMMIT), "no Rapid Commit: nothing is committed");
});

Deno.test("advertiserOf: a valid RA gives its sender, flags and prefixes; anything else null", () => {
  const ra = encodeRouterAdvert(
    buildRouterAdvert({ mac: "", prefix: "fd00::", managed: true, other: true, autonomous: false }),
  );
  deepEqual(advertiserOf(ra, "fe80::1", 255), {
    from: "fe80::1",
    managed: true,
    other: true,
    routerLifetime: 0,
    prefixes: ["fd00::/64"],
  });
  equal(advertiserOf(ra, "fe80::1", 64), null, "not from this link");
  equal(advertiserOf(encodeRouterSolicit({ options: [] }), "fe80::1", 255), null);
  equal(advertiserOf(ra.subarray(0, 10), "fe80::1", 255), null);
});

// ---------- in network namespaces ----------

const missing = netnsAvailable(["dnsmasq", "capsh"]);
const PROBE_MS = 2500;

/** A pair with fd00::1/64 on the server's vs and only a link-local address on the client's vc. */
function ipv6Pair(tag: string): Promise<NetnsPair> {
  return createPair6({ tag, serverIp6: "fd00::1" });
}

Deno.test(requires(missing, {
  name: "probeIpv6: a bare link has no router, no default route and no DHCPv6 server",
  sanitizeResources: true,
  sanitizeOps: true,
  fn: async () => {
    const pair = await ipv6Pair("p6bare");
    try {
      const found = await probeIpv6In(pair.client, "vc", PROBE_MS);
      deepEqual(found, {
        router: false,
        advertisers: [],
        defaultRoute: false,
        dhcp6Server: null,
        problems: [],
      });
      // without CAP_NET_RAW and CAP_NET_BIND_SERVICE: what it could not check is said, nothing thrown
      const drop = ["capsh", "--drop=cap_net_raw,cap_net_bind_service", "--", "-c", 'exec "$0" "$@"'];
      const limited = await probeIpv6In(pair.client, "vc", 500, drop);
      equal(limited.router, false);
      equal(limited.defaultRoute, false, "the routes are still read");
      equal(limited.problems.length, 2, limited.problems.join("\n"));
      match(
        limited.problems[0],
        /^probe6: cannot open a raw ICMPv6 socket: Operation not permitted; run as root/,
      );
      match(limited.problems[1], /^probe6: cannot bind UDP \[::\]:546: permission denied/);
    } finally {
      await pair.destroy();
    }
  },
}));

Deno.test(requires(missing, {
  name: "probeIpv6: pypxe's --ra answers the Router Solicitation: a router with M, O and fd00::/64",
  sanitizeResources: true,
  sanitizeOps: true,
  fn: async () => {
    const pair = await ipv6Pair("p6ra");
    try {
      const serverLl = await linkLocalOf(pair.server, "vs");
      // the initial advertisements are over before the probe starts: what it hears answers its solicitation
      const ra = await startRaIn(pair.server, {
        iface: "vs",
        mac: "02:00:00:00:00:01",
        prefix: "fd00::1",
        managed: true,
        other: true,
        autonomous: false,
        timing: { initialCount: 1, minIntervalMs: 600_000, maxIntervalMs: 600_000, minDelayMs: 0 },
      });
      try {
        const found = await probeIpv6In(pair.client, "vc", PROBE_MS);
        deepEqual(found, {
          router: true,
          advertisers: [{
            from: serverLl,
            managed: true,
            other: true,
            routerLifetime: 0,
            prefixes: ["fd00::/64"],
          }],
          defaultRoute: false,
          dhcp6Server: null,
          problems: [],
        });
      } finally {
        ok(await ra.finish() >= 2, "the initial advertisement and the answer");
      }
    } finally {
      await pair.destroy();
    }
  },
}));

Deno.test(requires(missing, {
  name: "probeIpv6: dnsmasq's DHCPv6 answers the Solicit; with its RAs and a default route, a router too",
  sanitizeResources: true,
  sanitizeOps: true,
  fn: async () => {
    const pair = await ipv6Pair("p6dhcp");
    try {
      const serverLl = await linkLocalOf(pair.server, "vs");
      const dhcp6 = ["--dhcp-range=fd00::100,fd00::1ff,64,1h", "--leasefile-ro", "--log-facility=-"];
      const dnsmasq = await startDnsmasqDhcp(pair.server, "vs", "10.213.0", dhcp6);
      try {
        await dnsmasq.waitFor("DHCPv6", 10_000);
        const found = await probeIpv6In(pair.client, "vc", PROBE_MS);
        deepEqual(found, {
          router: false,
          advertisers: [],
          defaultRoute: false,
          dhcp6Server: serverLl,
          problems: [],
        });
      } finally {
        await dnsmasq.stop();
      }
      // dnsmasq as the router: its own RAs (a third-party encoder for the decoder), and a default route
      await run(["ip", "-6", "route", "add", "default", "via", serverLl, "dev", "vc"], {
        netns: pair.client,
        check: true,
      });
      const withRa = await startDnsmasqDhcp(pair.server, "vs", "10.213.0", [...dhcp6, "--enable-ra"]);
      try {
        await withRa.waitFor("DHCPv6", 10_000);
        const found = await probeIpv6In(pair.client, "vc", PROBE_MS);
        equal(found.router, true);
        equal(found.defaultRoute, true);
        equal(found.dhcp6Server, serverLl);
        deepEqual(found.problems, []);
        equal(found.advertisers.length, 1, JSON.stringify(found));
        equal(found.advertisers[0].from, serverLl);
        equal(found.advertisers[0].managed, true, "dnsmasq sets M for a DHCPv6 range");
        deepEqual(found.advertisers[0].prefixes, ["fd00::/64"]);
      } finally {
        await withRa.stop();
      }
    } finally {
      await pair.destroy();
    }
  },
}));
