/** Loopback integration: a real DhcpServer on 127.0.0.1 high ports, driven by a Deno UDP client. */
import { deepStrictEqual, equal, ok } from "node:assert/strict";
import type { PxeConfig } from "../../src/config.ts";
import { BootEvents } from "../../src/events.ts";
import { getString, messageType } from "../../src/dhcp/options.ts";
import { createDhcpService, DhcpServer } from "../../src/dhcp/server.ts";
import { fixture, macOf, MessageType, Opt, request, wire } from "./helpers.ts";
import { decodeDhcp, encodeDhcp } from "../../src/dhcp/packet.ts";
import { loopbackDhcpConfig, startDhcp, UdpClient } from "../helpers/servers.ts";
import { DEFAULTS } from "../../src/config.ts";

const SERVER = "127.0.0.1";

/** The loopback config of these tests: pool 127.0.0.100-150, a DNS server to hand out. */
function loopConfig(over: Partial<PxeConfig> = {}): PxeConfig {
  return loopbackDhcpConfig({ DHCP_DNS: "127.0.0.53", ...over });
}

/** Starts a server and a client (bound 0.0.0.0 so unicast replies to pool addresses arrive). */
function setup(over: Partial<PxeConfig> = {}) {
  return startDhcp({ DHCP_DNS: "127.0.0.53", ...over }, { clientHost: "0.0.0.0" });
}

const SANITIZE = { sanitizeResources: true, sanitizeOps: true };

Deno.test({
  name: "loopback: DORA, RENEW (unicast), INIT-REBOOT NAK, RELEASE, INFORM",
  ...SANITIZE,
  async fn() {
    const t = await setup();
    try {
      const mac = macOf(1);
      const offer = await t.ask(
        request(MessageType.DISCOVER, mac, { arch: 7, vendorClass: "PXEClient:Arch:00007" }),
      );
      ok(offer, "no OFFER");
      equal(messageType(offer), MessageType.OFFER);
      equal(offer.yiaddr, "127.0.0.100");
      equal(offer.file, "ipxe.efi");
      equal(offer.from.port, t.port);
      const ack = await t.ask(
        request(MessageType.REQUEST, mac, { requested: offer.yiaddr, serverId: SERVER }),
      );
      equal(messageType(ack!), MessageType.ACK);
      equal(ack!.yiaddr, "127.0.0.100");
      // RENEWING: unicast to ciaddr
      const renew = await t.ask(request(MessageType.REQUEST, mac, { ciaddr: "127.0.0.100" }));
      equal(messageType(renew!), MessageType.ACK);
      // INIT-REBOOT with a foreign address: NAK
      const nak = await t.ask(request(MessageType.REQUEST, mac, { requested: "10.20.30.40" }));
      equal(messageType(nak!), MessageType.NAK);
      // another client asking for the bound address: NAK
      const nak2 = await t.ask(request(MessageType.REQUEST, macOf(2), { requested: "127.0.0.100" }));
      equal(messageType(nak2!), MessageType.NAK);
      // RELEASE then the other client may have it
      await t.client.send(
        wire(MessageType.RELEASE, mac, { ciaddr: "127.0.0.100", serverId: SERVER }),
        t.port,
      );
      await new Promise((r) => setTimeout(r, 50));
      const ack2 = await t.ask(request(MessageType.REQUEST, macOf(2), { requested: "127.0.0.100" }));
      equal(messageType(ack2!), MessageType.ACK);
      const inform = await t.ask(request(MessageType.INFORM, macOf(3), { ciaddr: "127.0.0.77" }));
      equal(messageType(inform!), MessageType.ACK);
      equal(inform!.yiaddr, "0.0.0.0");
      const seen = t.events.map((e) => `${e.received}->${e.sent}`);
      deepStrictEqual(seen, [
        "DISCOVER->OFFER",
        "REQUEST->ACK",
        "REQUEST->ACK",
        "REQUEST->NAK",
        "REQUEST->NAK",
        "RELEASE->none",
        "REQUEST->ACK",
        "INFORM->ACK",
      ]);
      equal(t.events[0].client, "UEFI x64");
      equal(t.events[0].bootFile, "ipxe.efi");
    } finally {
      await t.close();
    }
  },
});

Deno.test({
  name: "loopback: proxy mode answers PXE DISCOVERs on 67 and REQUESTs on 4011 to their source port",
  ...SANITIZE,
  async fn() {
    const t = await setup({ DHCP_MODE_PROXY: true, USE_IPXE: true, NETBOOT_FILE: "boot.ipxe" });
    try {
      ok(t.server.endpoints().some((e) => e.endsWith(`:${t.proxyPort} (PXE)`)));
      const disc = fixture("ovmf-pxe-discover.bin");
      await t.client.send(disc, t.port);
      const offer = await t.client.next();
      ok(offer);
      equal(messageType(decodeFirst(offer.bytes)), MessageType.OFFER);
      equal(decodeFirst(offer.bytes).yiaddr, "0.0.0.0");
      // 4011 from the client's own port
      const req = fixture("ovmf-pxe-proxy-request-4011.bin");
      await t.client.send(req, t.proxyPort);
      const ack = await t.client.next();
      ok(ack, "no 4011 ACK");
      equal(ack.from.port, t.proxyPort);
      const p = decodeFirst(ack.bytes);
      equal(messageType(p), MessageType.ACK);
      equal(getString(p, Opt.BOOTFILE), "ipxe.efi");
      // a plain DISCOVER (not PXE) gets nothing
      await t.client.send(wire(MessageType.DISCOVER, macOf(9)), t.port);
      equal(await t.client.next(200), undefined);
    } finally {
      await t.close();
    }
  },
});

const decodeFirst = (b: Uint8Array) => decodeDhcp(b);

/** xorshift32, seeded. */
function rng(seed: number) {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    return (s >>>= 0);
  };
}

Deno.test({
  name: "loopback: malformed packets and a fuzz of 5,000 datagrams are dropped, then a DORA still works",
  ...SANITIZE,
  async fn() {
    // mutated DISCOVERs carry random MACs and rightly take offers: give them room
    const t = await setup({
      DHCP_SUBNET: "255.255.0.0",
      DHCP_OFFER_END: "127.0.40.0",
      DHCP_BROADCAST: "127.0.255.255",
    });
    try {
      const good = wire(MessageType.DISCOVER, macOf(5));
      const noCookie = good.slice();
      noCookie[236] = 0;
      const op2 = good.slice();
      op2[0] = 2;
      const hlen = good.slice();
      hlen[2] = 17;
      const overrun = good.slice(0, 243);
      overrun[241] = 200;
      const noType = encodeDhcp(request(MessageType.DISCOVER, macOf(6)));
      noType[240] = 0; // option 53 turned into padding: "53" gone
      noType[241] = 0;
      noType[242] = 0;
      const emptyType = good.slice();
      emptyType[241] = 0;
      const garbage = Uint8Array.from({ length: 1500 }, (_, i) => (i * 7919) & 255);
      for (
        const bad of [
          new Uint8Array(0),
          Uint8Array.of(1),
          good.slice(0, 100),
          noCookie,
          op2,
          hlen,
          overrun,
          noType,
          emptyType,
          garbage,
        ]
      ) {
        await t.client.send(bad, t.port);
      }
      const next = rng(42);
      for (let i = 0; i < 5000; i++) {
        let b: Uint8Array;
        if (i % 2 === 0) {
          b = good.slice(0, 240 + (next() % (good.length - 239)));
          for (let k = 0; k < 4; k++) b[next() % b.length] = next() & 255;
        } else {
          b = Uint8Array.from({ length: next() % 600 }, () => next() & 255);
          if (b.length > 240) b.set([99, 130, 83, 99], 236);
        }
        await t.client.send(b, t.port);
        if (i % 200 === 0) await new Promise((r) => setTimeout(r, 1)); // let the server keep up
      }
      await new Promise((r) => setTimeout(r, 200));
      t.client.drain();
      const mac = macOf(100);
      const offer = await t.ask(request(MessageType.DISCOVER, mac), 2000);
      ok(offer, "no OFFER after the fuzz");
      const ack = await t.ask(
        request(MessageType.REQUEST, mac, { requested: offer.yiaddr, serverId: SERVER }),
      );
      equal(messageType(ack!), MessageType.ACK);
      ok(t.events.length < 5000, `${t.events.length} of the fuzz datagrams were answered`);
    } finally {
      await t.close();
    }
  },
});

Deno.test({
  name: "loopback: a 10,000-MAC DISCOVER flood does not take addresses from bound clients",
  ...SANITIZE,
  async fn() {
    const t = await setup({ DHCP_OFFER_END: "127.0.0.120" });
    try {
      const bound: [string, string][] = [];
      for (let i = 0; i < 5; i++) {
        const mac = macOf(i, "0a:00");
        const offer = await t.ask(request(MessageType.DISCOVER, mac));
        const ack = await t.ask(
          request(MessageType.REQUEST, mac, { requested: offer!.yiaddr, serverId: SERVER }),
        );
        equal(messageType(ack!), MessageType.ACK);
        bound.push([mac, ack!.yiaddr]);
      }
      const flood = new UdpClient();
      const offered = new Set<string>();
      try {
        for (let i = 0; i < 10_000; i++) {
          await flood.send(wire(MessageType.DISCOVER, macOf(10_000 + i)), t.port);
          if (i % 100 === 99) {
            await new Promise((r) => setTimeout(r, 2));
            for (let got = await t.client.next(0); got; got = await t.client.next(0)) {
              offered.add(decodeDhcp(got.bytes).yiaddr);
            }
          }
        }
      } finally {
        await flood.close();
      }
      await new Promise((r) => setTimeout(r, 100));
      for (let got = await t.client.next(0); got; got = await t.client.next(0)) {
        offered.add(decodeDhcp(got.bytes).yiaddr);
      }
      ok(offered.size > 0 && offered.size <= 16, `${offered.size} addresses offered`);
      for (const [mac, ip] of bound) {
        ok(!offered.has(ip), `${ip} offered to a flooder`);
        const renew = await t.ask(request(MessageType.REQUEST, mac, { ciaddr: ip }));
        equal(messageType(renew!), MessageType.ACK, `${mac} renews ${ip}`);
      }
      ok(t.events.some((e) => e.reason === "pool exhausted"));
    } finally {
      await t.close();
    }
  },
});

Deno.test({
  name: "createDhcpService: null without USE_DHCP; a clear one-line error when the port is taken",
  ...SANITIZE,
  async fn() {
    const ctx = {
      config: { ...DEFAULTS },
      events: new BootEvents(),
      staticLeases: new Map(),
    } as unknown as Parameters<
      typeof createDhcpService
    >[0];
    equal(createDhcpService(ctx), null);
    const svc = createDhcpService({ ...ctx, config: { ...DEFAULTS, USE_DHCP: true } });
    ok(svc instanceof DhcpServer);
    deepStrictEqual(svc.endpoints(), ["UDP 0.0.0.0:67", "UDP 192.168.2.2:67"]);
    // a port in use without reuseAddress on the other side
    const blocker = Deno.listenDatagram({ transport: "udp", hostname: SERVER, port: 0 });
    const port = (blocker.addr as Deno.NetAddr).port;
    const s = new DhcpServer({ config: loopConfig({ DHCP_SERVER_PORT: port }) });
    try {
      let message = "";
      await s.start().catch((err) => (message = err.message));
      ok(/dhcp: UDP 127\.0\.0\.1:\d+ is in use|dhcp: UDP 0\.0\.0\.0:\d+ is in use/.test(message), message);
      ok(!message.includes("\n"));
    } finally {
      blocker.close();
      await s.stop();
    }
  },
});
