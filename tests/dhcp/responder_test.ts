import { deepStrictEqual, equal, ok } from "node:assert/strict";
import type { PxeConfig } from "../../src/config.ts";
import { BootEvents, type DhcpEvent } from "../../src/events.ts";
import { decodePxeOptions, getIp, getString, getU32, messageType } from "../../src/dhcp/options.ts";
import { decodeDhcp, type DhcpPacket, isBroadcast } from "../../src/dhcp/packet.ts";
import { DhcpResponder, leaseStoreFor, type Outgoing } from "../../src/dhcp/responder.ts";
import type { DhcpServerOptions } from "../../src/dhcp/server.ts";
import { fixture, macOf, MessageType, Opt, refConfig, wire } from "./helpers.ts";

const DHCP = { hostname: "0.0.0.0", port: 68, on: "dhcp" } as const;

function responder(over: Partial<PxeConfig> = {}, opts: Partial<DhcpServerOptions> = {}) {
  let now = 1_700_000_000_000;
  const events: DhcpEvent[] = [];
  const bus = new BootEvents();
  bus.subscribe((e) => e.kind === "dhcp" && events.push(e));
  const r = new DhcpResponder({ config: refConfig(over), events: bus, now: () => now, ...opts });
  return {
    r,
    events,
    advance: (ms: number) => (now += ms),
    send(
      bytes: Uint8Array,
      from: typeof DHCP | { hostname: string; port: number; on: "dhcp" | "proxy" } = DHCP,
    ) {
      const out = r.handle(bytes, from);
      return out.map((o) => ({ ...o, pkt: decodeDhcp(o.bytes) }));
    },
  };
}

type Sent = Outgoing & { pkt: DhcpPacket };

const bootName = (p: DhcpPacket) => (getString(p, Opt.BOOTFILE) ?? "").replace(/^.*\//, "");

/** Compares our reply's key fields with dnsmasq's answer to the same request. */
function likeDnsmasq(
  ours: Sent,
  refName: string,
  opts: { exactYiaddr?: boolean; fullName?: boolean; skipYiaddr?: boolean } = {},
) {
  const ref = decodeDhcp(fixture(refName));
  const p = ours.pkt;
  equal(p.op, 2);
  equal(messageType(p), messageType(ref), "message type");
  if (opts.exactYiaddr) equal(p.yiaddr, ref.yiaddr, "yiaddr");
  else if (!opts.skipYiaddr) equal(p.yiaddr === "0.0.0.0", ref.yiaddr === "0.0.0.0", "yiaddr given or not");
  equal(p.siaddr === "0.0.0.0", ref.siaddr === "0.0.0.0" && messageType(ref) !== MessageType.OFFER, "siaddr");
  for (const code of [Opt.SERVER_ID, Opt.SUBNET_MASK, Opt.ROUTER, Opt.BROADCAST]) {
    equal(
      getIp(p, code) ?? undefined,
      ref.options.has(code) ? getIp(ref, code) : undefined,
      `option ${code}`,
    );
  }
  for (const code of [Opt.LEASE_TIME, Opt.RENEWAL_TIME, Opt.REBINDING_TIME]) {
    equal(
      p.options.has(code) ? getU32(p, code) : undefined,
      ref.options.has(code) ? getU32(ref, code) : undefined,
    );
  }
  const refFile = getString(ref, Opt.BOOTFILE) ?? ref.file;
  if (opts.fullName) equal(getString(p, Opt.BOOTFILE), refFile, "boot file");
  else equal(bootName(p), refFile.replace(/^.*\//, ""), "boot file name");
  equal(p.file, getString(p, Opt.BOOTFILE), "file field and option 67 agree");
  equal(getString(p, Opt.VENDOR_CLASS), getString(ref, Opt.VENDOR_CLASS), "option 60");
  if (ref.options.has(Opt.CLIENT_UUID)) {
    deepStrictEqual(p.options.get(Opt.CLIENT_UUID), ref.options.get(Opt.CLIENT_UUID));
  }
  ok(ours.bytes.length >= 300);
}

Deno.test("fixtures (dnsmasq config A): iPXE BIOS ROM DISCOVER/REQUEST -> pxelinux.0, same fields", () => {
  const t = responder();
  const [offer] = t.send(fixture("ipxe-bios-discover.bin"));
  likeDnsmasq(offer, "dnsmasq-offer-ipxe-bios.bin");
  equal(offer.via, "broadcast"); // no ARP injection from userland: broadcast even without the flag
  const [ack] = t.send(fixture("ipxe-bios-request.bin"));
  likeDnsmasq(ack, "dnsmasq-ack-ipxe-bios.bin", { exactYiaddr: true });
  equal(t.events.at(-1)?.sent, "ACK");
  equal(t.events.at(-1)?.client, "iPXE BIOS");
});

Deno.test("fixtures (config A): OVMF PXE -> ipxe.efi; iPXE EFI ROM and SNP -> boot.ipxe", () => {
  const t = responder();
  const [offer] = t.send(fixture("ovmf-pxe-discover.bin"));
  likeDnsmasq(offer, "dnsmasq-offer-ovmf-pxe.bin");
  ok(isBroadcast(offer.pkt));
  const [ack] = t.send(fixture("ovmf-pxe-request.bin"));
  likeDnsmasq(ack, "dnsmasq-ack-ovmf-pxe.bin", { exactYiaddr: true });
  equal(t.events.at(-1)?.client, "UEFI x64");
  const [rom] = t.send(fixture("ipxe-efi-rom-discover.bin"));
  likeDnsmasq(rom, "dnsmasq-offer-ipxe-efi-rom.bin");
  equal(rom.pkt.file, "tftp://192.168.77.1/boot.ipxe");
  const [snp] = t.send(fixture("ipxe-efi-snp-discover.bin"));
  equal(snp.pkt.file, "tftp://192.168.77.1/boot.ipxe");
});

Deno.test("fixtures (config B): OVMF HTTP boot -> http:// URL and option 60 HTTPClient", () => {
  const t = responder({ USE_HTTP: true, HTTP_PORT: 80 });
  const [offer] = t.send(fixture("ovmf-http-discover.bin"));
  likeDnsmasq(offer, "dnsmasq-offer-ovmf-http.bin", { fullName: true });
  const [ack] = t.send(fixture("ovmf-http-request.bin"));
  likeDnsmasq(ack, "dnsmasq-ack-ovmf-http.bin", { exactYiaddr: true, fullName: true });
  const t2 = responder({ USE_HTTP: true, HTTP_PORT: 8080 });
  equal(t2.send(fixture("ovmf-http-discover.bin"))[0].pkt.file, "http://192.168.77.1:8080/ipxe.efi");
});

Deno.test("fixtures (config C, proxy): offers without address, 4011 ACKs to the source port", () => {
  const t = responder({ DHCP_MODE_PROXY: true, USE_IPXE: true, NETBOOT_FILE: "boot.ipxe" });
  // OVMF
  const [offer] = t.send(fixture("ovmf-pxe-discover.bin"));
  const ref = decodeDhcp(fixture("dnsmasq-proxy-offer-ovmf.bin"));
  equal(offer.pkt.yiaddr, "0.0.0.0");
  equal(getIp(offer.pkt, Opt.SERVER_ID), getIp(ref, Opt.SERVER_ID));
  equal(getString(offer.pkt, Opt.VENDOR_CLASS), "PXEClient");
  deepStrictEqual(offer.pkt.options.get(Opt.CLIENT_UUID), ref.options.get(Opt.CLIENT_UUID));
  ok(isBroadcast(offer.pkt));
  equal(offer.pkt.file, "ipxe.efi");
  equal(decodePxeOptions(offer.pkt.options.get(Opt.VENDOR_SPECIFIC)!).discoveryControl, 8);
  const from = { hostname: "192.168.77.115", port: 4011, on: "proxy" } as const;
  const [ack] = t.send(fixture("ovmf-pxe-proxy-request-4011.bin"), from);
  likeDnsmasq(ack, "dnsmasq-proxy-ack-4011-ovmf.bin");
  equal(ack.pkt.ciaddr, "192.168.77.115");
  deepStrictEqual([ack.hostname, ack.port, ack.via], ["192.168.77.115", 4011, "proxy"]);
  // iPXE BIOS ROM: offer, then 4011 from port 68 with boot item 32771
  const [o2] = t.send(fixture("ipxe-bios-discover.bin"));
  equal(o2.pkt.yiaddr, "0.0.0.0");
  const [a2] = t.send(fixture("ipxe-bios-proxy-request-4011.bin"), { ...from, port: 68 });
  // dnsmasq moves the client's address from ciaddr to yiaddr here; we echo ciaddr (PXE spec), both boot
  likeDnsmasq(a2, "dnsmasq-proxy-ack-4011-ipxe-bios.bin", { skipYiaddr: true });
  equal(a2.pkt.ciaddr, "192.168.77.115");
  equal(a2.pkt.xid, 0);
  deepStrictEqual(decodePxeOptions(a2.pkt.options.get(Opt.VENDOR_SPECIFIC)!).bootItem, {
    type: 32771,
    layer: 0,
  });
  equal(a2.port, 68);
  // iPXE EFI over SNP
  const [a3] = t.send(fixture("ipxe-efi-snp-proxy-request-4011.bin"), { ...from, port: 68 });
  likeDnsmasq(a3, "dnsmasq-proxy-ack-4011-ipxe-efi-snp.bin");
});

Deno.test("proxy: never answers REQUESTs on 67 naming another server, nor non-PXE DISCOVERs", () => {
  const t = responder({ DHCP_MODE_PROXY: true });
  equal(t.send(fixture("ipxe-bios-request.bin").slice()).length, 1); // names 192.168.77.1: us
  const other = responder({ DHCP_MODE_PROXY: true, DHCP_SERVER_IP: "192.168.77.2" });
  equal(other.send(fixture("ipxe-bios-request.bin")).length, 0);
  equal(t.send(wire(MessageType.DISCOVER, macOf(1))).length, 0);
  equal(t.send(wire(MessageType.REQUEST, macOf(1), { requested: "192.168.77.120" })).length, 0);
});

Deno.test("Raspberry Pi DISCOVER (synthetic) gets bootcode.bin and the 'Raspberry Pi Boot' menu", () => {
  const t = responder();
  const [offer] = t.send(fixture("rpi-synthetic-discover.bin"));
  equal(offer.pkt.file, "bootcode.bin");
  const pxe = decodePxeOptions(offer.pkt.options.get(Opt.VENDOR_SPECIFIC)!);
  equal(pxe.bootMenu?.[0].description, "Raspberry Pi Boot");
  equal(t.events[0].client, "Raspberry Pi");
});

Deno.test("DORA: options 1,3,6,28,51,54,58,59; 61 echoed; 66 when asked; no boot file for non-PXE", () => {
  const t = responder({ DHCP_DNS: "8.8.8.8,8.8.4.4" });
  const mac = macOf(7);
  const id = Uint8Array.of(1, 2, 0, 0, 0, 0, 7);
  const [offer] = t.send(wire(MessageType.DISCOVER, mac, { clientId: id, params: [1, 3, 6, 66] }));
  const p = offer.pkt;
  equal(messageType(p), MessageType.OFFER);
  equal(p.yiaddr, "192.168.77.100");
  deepStrictEqual(p.options.get(Opt.CLIENT_ID), id);
  deepStrictEqual(new Uint8Array(p.options.get(Opt.DNS)!), Uint8Array.of(8, 8, 8, 8, 8, 8, 4, 4));
  equal(getU32(p, Opt.LEASE_TIME), 3600);
  equal(getU32(p, Opt.RENEWAL_TIME), 1800);
  equal(getU32(p, Opt.REBINDING_TIME), 3150);
  equal(p.file, "");
  ok(!p.options.has(Opt.BOOTFILE));
  const [ack] = t.send(wire(MessageType.REQUEST, mac, { requested: p.yiaddr, serverId: "192.168.77.1" }));
  equal(messageType(ack.pkt), MessageType.ACK);
  equal(ack.pkt.yiaddr, "192.168.77.100");
  // a PXE client asking for 66 gets it
  const [pxe] = t.send(
    wire(MessageType.DISCOVER, macOf(8), { arch: 0, vendorClass: "PXEClient", params: [66, 67] }),
  );
  equal(getString(pxe.pkt, Opt.TFTP_SERVER), "192.168.77.1");
  equal(pxe.pkt.siaddr, "192.168.77.1");
});

Deno.test("REQUEST naming another server: silent, offer withdrawn", () => {
  const t = responder({ DHCP_OFFER_END: "192.168.77.100" });
  const [offer] = t.send(wire(MessageType.DISCOVER, macOf(1)));
  equal(offer.pkt.yiaddr, "192.168.77.100");
  equal(
    t.send(wire(MessageType.REQUEST, macOf(1), { requested: "192.168.77.100", serverId: "192.168.77.9" }))
      .length,
    0,
  );
  const [other] = t.send(wire(MessageType.DISCOVER, macOf(2)));
  equal(other.pkt.yiaddr, "192.168.77.100"); // the withdrawn offer's address is free again
});

Deno.test("INIT-REBOOT: ACK its own address, NAK another subnet / another client's address", () => {
  const t = responder();
  const a = macOf(1);
  const b = macOf(2);
  t.send(wire(MessageType.DISCOVER, a));
  t.send(wire(MessageType.REQUEST, a, { requested: "192.168.77.100", serverId: "192.168.77.1" }));
  const [ok1] = t.send(wire(MessageType.REQUEST, a, { requested: "192.168.77.100" }));
  equal(messageType(ok1.pkt), MessageType.ACK);
  const [nak1] = t.send(wire(MessageType.REQUEST, a, { requested: "10.9.9.9" }));
  equal(messageType(nak1.pkt), MessageType.NAK);
  equal(nak1.via, "broadcast");
  equal(nak1.pkt.yiaddr, "0.0.0.0");
  const [nak2] = t.send(wire(MessageType.REQUEST, b, { requested: "192.168.77.100" }));
  equal(messageType(nak2.pkt), MessageType.NAK);
  equal(t.events.at(-1)?.sent, "NAK");
  ok(t.events.at(-1)?.reason?.includes("another client"));
  // an address outside the pool but on the subnet
  const [nak3] = t.send(wire(MessageType.REQUEST, b, { requested: "192.168.77.200" }));
  equal(messageType(nak3.pkt), MessageType.NAK);
});

Deno.test("RENEWING: ciaddr -> unicast ACK with refreshed lease; foreign ciaddr ignored; relayed -> relay:67", () => {
  const t = responder();
  const a = macOf(1);
  t.send(wire(MessageType.DISCOVER, a));
  t.send(wire(MessageType.REQUEST, a, { requested: "192.168.77.100", serverId: "192.168.77.1" }));
  const before = t.r.leases.leaseFor(a)!.expires;
  t.advance(1800_000);
  const [ack] = t.send(wire(MessageType.REQUEST, a, { ciaddr: "192.168.77.100" }));
  equal(messageType(ack.pkt), MessageType.ACK);
  deepStrictEqual([ack.hostname, ack.port, ack.via], ["192.168.77.100", 68, "unicast"]);
  equal(t.r.leases.leaseFor(a)!.expires, before + 1800_000);
  equal(t.send(wire(MessageType.REQUEST, a, { ciaddr: "10.1.1.1" })).length, 0);
  const [relayed] = t.send(wire(MessageType.DISCOVER, macOf(3), { giaddr: "192.168.77.254" }));
  deepStrictEqual([relayed.hostname, relayed.port], ["192.168.77.254", 67]);
});

Deno.test("DECLINE quarantines the address; RELEASE frees it; INFORM gets ACK without yiaddr", () => {
  const t = responder({ DHCP_OFFER_END: "192.168.77.101" }, { declineTime: 600 });
  const a = macOf(1);
  t.send(wire(MessageType.DISCOVER, a));
  t.send(wire(MessageType.REQUEST, a, { requested: "192.168.77.100", serverId: "192.168.77.1" }));
  equal(
    t.send(wire(MessageType.DECLINE, a, { requested: "192.168.77.100", serverId: "192.168.77.1" })).length,
    0,
  );
  const [o] = t.send(wire(MessageType.DISCOVER, a));
  equal(o.pkt.yiaddr, "192.168.77.101");
  const [o2] = t.send(wire(MessageType.DISCOVER, macOf(2)));
  equal(o2, undefined, "pool exhausted while .100 is declined and .101 offered");
  equal(t.events.at(-1)?.reason, "pool exhausted");
  t.advance(601_000);
  const [o3] = t.send(wire(MessageType.DISCOVER, macOf(2)));
  ok(o3.pkt.yiaddr === "192.168.77.100" || o3.pkt.yiaddr === "192.168.77.101");
  // RELEASE
  const b = macOf(3);
  const t2 = responder({ DHCP_OFFER_END: "192.168.77.100" });
  t2.send(wire(MessageType.DISCOVER, b));
  t2.send(wire(MessageType.REQUEST, b, { requested: "192.168.77.100", serverId: "192.168.77.1" }));
  equal(t2.send(wire(MessageType.DISCOVER, macOf(4))).length, 0);
  t2.send(wire(MessageType.RELEASE, b, { ciaddr: "192.168.77.100", serverId: "192.168.77.1" }));
  equal(t2.send(wire(MessageType.DISCOVER, macOf(4)))[0].pkt.yiaddr, "192.168.77.100");
  // INFORM
  const [inf] = t2.send(wire(MessageType.INFORM, macOf(9), { ciaddr: "192.168.77.7" }));
  equal(messageType(inf.pkt), MessageType.ACK);
  equal(inf.pkt.yiaddr, "0.0.0.0");
  ok(!inf.pkt.options.has(Opt.LEASE_TIME));
  deepStrictEqual([inf.hostname, inf.via], ["192.168.77.7", "unicast"]);
});

Deno.test("static leases: reserved address, rom, whitelist; pool skips server, router, reservations", () => {
  const staticLeases = new Map([["aa:bb:cc:dd:ee:01", {
    ipaddr: "192.168.77.100",
    rom: "special.0",
    dns: ["1.1.1.1"],
  }]]);
  const t = responder({
    DHCP_ROUTER: "192.168.77.101",
    DHCP_SERVER_IP: "192.168.77.102",
    DHCP_FILESERVER: "192.168.77.102",
  }, { staticLeases });
  const [o] = t.send(wire(MessageType.DISCOVER, macOf(1)));
  equal(o.pkt.yiaddr, "192.168.77.103");
  const [s] = t.send(
    wire(MessageType.DISCOVER, "AA:BB:CC:DD:EE:01".toLowerCase(), { arch: 0, vendorClass: "PXEClient" }),
  );
  equal(s.pkt.yiaddr, "192.168.77.100");
  equal(s.pkt.file, "special.0");
  equal(getIp(s.pkt, Opt.DNS), "1.1.1.1");
  const [nak] = t.send(wire(MessageType.REQUEST, "aa:bb:cc:dd:ee:01", { requested: "192.168.77.110" }));
  equal(messageType(nak.pkt), MessageType.NAK);
  const w = responder({ DHCP_WHITELIST: true }, { staticLeases });
  equal(w.send(wire(MessageType.DISCOVER, macOf(1))).length, 0);
  equal(w.events[0].reason, "not in the whitelist");
  equal(w.send(wire(MessageType.DISCOVER, "aa:bb:cc:dd:ee:01")).length, 1);
});

Deno.test("--dhcp-pxe-only: non-PXE clients get nothing (PyPXE behaviour)", () => {
  const t = responder({}, { pxeOnly: true });
  equal(t.send(wire(MessageType.DISCOVER, macOf(1))).length, 0);
  equal(t.send(wire(MessageType.DISCOVER, macOf(2), { vendorClass: "PXEClient:Arch:00000" })).length, 1);
});

Deno.test("max message size (57) is honoured; malformed option 50 does not break the exchange", () => {
  const t = responder();
  const [o] = t.send(fixture("ovmf-pxe-discover.bin"));
  ok(o.bytes.length <= 1472 - 28);
  const bytes = wire(MessageType.DISCOVER, macOf(5), { requested: "192.168.77.120" });
  // corrupt option 50's length to 3 (value becomes 3 bytes, the 4th is read as the next option code)
  const at = bytes.indexOf(50, 240);
  bytes[at + 1] = 3;
  const out = t.r.handle(bytes, DHCP);
  ok(out.length <= 1);
});

Deno.test("DISCOVER flood from 10,000 MACs never takes bound clients' addresses", () => {
  const t = responder();
  const bound = [macOf(1, "0a:00"), macOf(2, "0a:00"), macOf(3, "0a:00")];
  const ips = bound.map((mac) => {
    const [o] = t.send(wire(MessageType.DISCOVER, mac));
    t.send(wire(MessageType.REQUEST, mac, { requested: o.pkt.yiaddr, serverId: "192.168.77.1" }));
    return o.pkt.yiaddr;
  });
  const given = new Set<string>();
  for (let i = 0; i < 10_000; i++) {
    for (const out of t.r.handle(wire(MessageType.DISCOVER, macOf(1000 + i)), DHCP)) {
      given.add(decodeDhcp(out.bytes).yiaddr);
    }
    if (i % 100 === 0) t.advance(1000);
  }
  for (const ip of ips) ok(!given.has(ip), `${ip} was offered to a flooder`);
  bound.forEach((mac, i) => equal(t.r.leases.leaseFor(mac)?.ip, ips[i]));
  const [again] = t.send(wire(MessageType.REQUEST, bound[0], { ciaddr: ips[0] }));
  equal(messageType(again.pkt), MessageType.ACK);
});

Deno.test("the lease's iPXE flag comes from the client (option 77/175), whatever the boot decision", () => {
  const t = responder({ USE_IPXE: true, NETBOOT_FILE: "boot.ipxe" });
  const ipxe = macOf(201);
  const [offer] = t.send(wire(MessageType.DISCOVER, ipxe, { arch: 7, ipxe: true }));
  equal(t.r.leases.leaseFor(ipxe)?.ipxe, true, "offered");
  t.send(wire(MessageType.REQUEST, ipxe, { requested: offer.pkt.yiaddr, serverId: "192.168.77.1" }));
  equal(t.r.leases.leaseFor(ipxe)?.state, "bound");
  equal(t.r.leases.leaseFor(ipxe)?.ipxe, false, "the REQUEST did not say iPXE");
  t.send(wire(MessageType.REQUEST, ipxe, { requested: offer.pkt.yiaddr, ipxe: true }));
  equal(t.r.leases.leaseFor(ipxe)?.ipxe, true, "bound as iPXE");
  // an iPXE client that is not network-booting (no arch, no PXEClient): no client in the event, still iPXE
  const quiet = macOf(202);
  t.send(wire(MessageType.DISCOVER, quiet, { ipxe: true }));
  equal(t.events.at(-1)?.client, undefined);
  equal(t.r.leases.leaseFor(quiet)?.ipxe, true);
});

Deno.test("an injected lease store is the one the responder uses", () => {
  const config = refConfig();
  const leases = leaseStoreFor({ config, now: () => 1_700_000_000_000 });
  const r = new DhcpResponder({ config, leases });
  equal(r.leases, leases);
  const mac = macOf(203);
  const [offer] = r.handle(wire(MessageType.DISCOVER, mac, { arch: 7 }), DHCP);
  equal(leases.leaseFor(mac)?.ip, decodeDhcp(offer.bytes).yiaddr);
});
