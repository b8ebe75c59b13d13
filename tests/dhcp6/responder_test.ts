import { deepEqual, equal, ok } from "node:assert/strict";
import { decodeDhcp6, type Dhcp6Message, type Dhcp6Relay, encodeDhcp6 } from "../../src/dhcp6/packet.ts";
import { getOption6, hasOption6, StatusCode6 } from "../../src/dhcp6/options.ts";
import { encodeIaAddress, encodeIaNa } from "../../src/dhcp6/values.ts";
import { fixture6, toHex } from "./helpers.ts";
import {
  addressOf,
  bootFileUrl,
  CLIENT,
  follow,
  golden,
  iaAddresses,
  iaNas,
  memoryLog,
  MessageType6 as T,
  only,
  Opt6,
  responder,
  SERVER_DUID,
  statusCode,
  vendorClasses,
} from "./responder_helpers.ts";

const text = (b: Uint8Array) => new TextDecoder().decode(b);
const vendorClassText = (m: Dhcp6Message) =>
  vendorClasses(m).map((v) => `${v.enterprise} ${v.data.map(text)}`);

Deno.test("responder6: OVMF HTTP Solicit -> the very Advertise OVMF accepted from capture-responder.ts", () => {
  const r = responder({ useIpxe: false });
  const out = r.handle(fixture6("ovmf-http6-solicit.bin"), CLIENT);
  equal(out.length, 1);
  deepEqual({ address: out[0].address, port: out[0].port }, CLIENT);
  equal(toHex(out[0].bytes), toHex(fixture6("capture-responder-advertise-ovmf-http6.bin")));
});

Deno.test("responder6: OVMF PXE Solicit, full mode -> Advertise with IA_NA, tftp URL, no vendor class", () => {
  const adv = only(responder().handle(fixture6("ovmf-pxe6-solicit.bin"), CLIENT));
  equal(adv.type, T.ADVERTISE);
  equal(adv.transactionId, golden("ovmf-pxe6-solicit.bin").transactionId);
  deepEqual(getOption6(adv, Opt6.CLIENTID), getOption6(golden("ovmf-pxe6-solicit.bin"), Opt6.CLIENTID));
  deepEqual(getOption6(adv, Opt6.SERVERID), SERVER_DUID);
  const [ia] = iaNas(adv);
  equal(ia.iaid, iaNas(golden("ovmf-pxe6-solicit.bin"))[0].iaid);
  deepEqual([ia.t1, ia.t2], [1800, 2880]);
  equal(addressOf(adv), "2001:db8:77::1a0");
  equal(bootFileUrl(adv), "tftp://[2001:db8:77::1]/ipxe.efi");
  // with an address, "PXEClient" would make EDK2 ask port 4011 for the boot file before it configures
  // that address, which fails (PXE-E16 in OVMF, tests/e2e/ipv6_boot_test.ts); dnsmasq sends none either
  deepEqual(vendorClassText(adv), []);
});

Deno.test("responder6: OVMF PXE Solicit, proxy mode -> Advertise with boot options and no IA_NA", () => {
  const r = responder({ mode: "proxy", pool: undefined });
  equal(r.leases, undefined);
  const adv = only(r.handle(fixture6("ovmf-pxe6-solicit.bin"), CLIENT));
  equal(adv.type, T.ADVERTISE);
  equal(iaNas(adv).length, 0);
  ok(!hasOption6(adv, Opt6.STATUS_CODE));
  equal(bootFileUrl(adv), "tftp://[2001:db8:77::1]/ipxe.efi");
  deepEqual(vendorClassText(adv), ["343 PXEClient"]);
  // a client that is not booting (OVMF's Ip6Config) hears nothing from a proxy
  deepEqual(r.handle(fixture6("ovmf-ip6-solicit.bin"), CLIENT), []);
});

Deno.test("responder6: proxy mode answers EDK2's boot-server Request on port 4011 and ignores Renew", () => {
  const r = responder({ mode: "proxy", pool: undefined });
  const solicit = golden("ovmf-pxe6-solicit.bin");
  const req = follow(solicit, T.REQUEST, undefined, { serverId: null });
  const reply = only(r.handle(req, { ...CLIENT, on: "proxy" }));
  equal(reply.type, T.REPLY);
  equal(iaNas(reply).length, 0);
  equal(bootFileUrl(reply), "tftp://[2001:db8:77::1]/ipxe.efi");
  // the same Request on 547 without our server id is the address server's business
  deepEqual(r.handle(req, CLIENT), []);
  deepEqual(r.handle(follow(solicit, T.RENEW, undefined, { serverId: SERVER_DUID }), CLIENT), []);
  // Solicit on 4011 is not a thing
  deepEqual(r.handle(fixture6("ovmf-pxe6-solicit.bin"), { ...CLIENT, on: "proxy" }), []);
});

Deno.test("responder6: OVMF HTTP Solicit -> http URL (port when not 80) and HTTPClient", () => {
  const adv = only(responder({ httpPort: 8080 }).handle(fixture6("ovmf-http6-solicit.bin"), CLIENT));
  equal(bootFileUrl(adv), "http://[2001:db8:77::1]:8080/ipxe.efi");
  deepEqual(vendorClassText(adv), ["343 HTTPClient"]);
});

Deno.test("responder6: iPXE Solicit -> its script URL in 59 though it did not ask for 59 first", () => {
  const tftp = only(responder({ useHttp: false }).handle(fixture6("ipxe-efi-solicit6.bin"), CLIENT));
  equal(bootFileUrl(tftp), "tftp://[2001:db8:77::1]/boot.ipxe");
  const http = only(
    responder({ netbootFile: "boot.http.ipxe" }).handle(fixture6("ipxe-efi-solicit6.bin"), CLIENT),
  );
  equal(bootFileUrl(http), "http://[2001:db8:77::1]/boot.http.ipxe");
  // iPXE's DUID-UUID is all zeros: the lease key is the MAC from its link-local address
  const r = responder();
  only(r.handle(fixture6("ipxe-efi-solicit6.bin"), CLIENT));
  const ia = iaNas(golden("ipxe-efi-solicit6.bin"))[0];
  equal(r.leases!.bindingFor("52:54:00:77:00:66", ia.iaid)?.state, "offered");
});

Deno.test("responder6: OVMF's Ip6Config (no arch, no vendor class) gets an address and no boot options", () => {
  const adv = only(responder().handle(fixture6("ovmf-ip6-solicit.bin"), CLIENT));
  equal(addressOf(adv), "2001:db8:77::1a0");
  equal(bootFileUrl(adv), undefined);
  equal(vendorClasses(adv).length, 0);
});

Deno.test("responder6: Solicit -> Advertise -> Request -> Reply binds the advertised address", () => {
  const r = responder();
  const solicit = golden("ovmf-pxe6-solicit.bin");
  const adv = only(r.handle(fixture6("ovmf-pxe6-solicit.bin"), CLIENT));
  const iaid = iaNas(adv)[0].iaid;
  equal(r.leases!.bindingFor("52:54:00:77:00:66", iaid)?.state, "offered");
  const reply = only(r.handle(follow(solicit, T.REQUEST, adv), CLIENT));
  equal(reply.type, T.REPLY);
  equal(addressOf(reply), addressOf(adv));
  equal(bootFileUrl(reply), "tftp://[2001:db8:77::1]/ipxe.efi");
  const b = r.leases!.bindingFor("52:54:00:77:00:66", iaid)!;
  equal(b.state, "bound");
  equal(b.duid, "llt:1:31e4cf6f:525400770066");
  // a second Solicit from the same client gets the same address
  equal(addressOf(only(r.handle(fixture6("ovmf-pxe6-solicit.bin"), CLIENT))), addressOf(adv));
  // another IA of the same machine gets its own address
  const other = only(r.handle(fixture6("ovmf-ip6-solicit.bin"), CLIENT));
  equal(addressOf(other), "2001:db8:77::1a1");
});

Deno.test("responder6: Request/Renew/Release/Decline naming another server, or none, are ignored", () => {
  const log = memoryLog();
  const r = responder({ log });
  const solicit = golden("ovmf-pxe6-solicit.bin");
  const adv = only(r.handle(fixture6("ovmf-pxe6-solicit.bin"), CLIENT));
  const dnsmasq = getOption6(golden("dnsmasq-advertise-ovmf-pxe6.bin"), Opt6.SERVERID)!;
  for (const type of [T.REQUEST, T.RENEW, T.RELEASE, T.DECLINE]) {
    deepEqual(r.handle(follow(solicit, type, adv, { serverId: dnsmasq }), CLIENT), [], `type ${type}`);
    deepEqual(r.handle(follow(solicit, type, adv, { serverId: null }), CLIENT), [], `type ${type}`);
  }
  // the golden Request, which names dnsmasq, too
  deepEqual(r.handle(fixture6("ovmf-pxe6-request.bin"), CLIENT), []);
  // a Solicit or Rebind carrying a server id is malformed
  deepEqual(r.handle(follow(solicit, T.SOLICIT, adv), CLIENT), []);
  deepEqual(r.handle(follow(solicit, T.REBIND, adv), CLIENT), []);
  ok(log.lines.some((l) => l.includes("for another server")));
});

Deno.test("responder6: Renew extends, Release frees, Renew after Release is NoBinding", () => {
  const clock = { t: 1_700_000_000_000 };
  const r = responder({}, clock);
  const solicit = golden("ovmf-pxe6-solicit.bin");
  const adv = only(r.handle(fixture6("ovmf-pxe6-solicit.bin"), CLIENT));
  const reply = only(r.handle(follow(solicit, T.REQUEST, adv), CLIENT));
  const iaid = iaNas(reply)[0].iaid;
  clock.t += 1800_000;
  const renewed = only(r.handle(follow(solicit, T.RENEW, reply), CLIENT));
  equal(addressOf(renewed), addressOf(reply));
  equal(r.leases!.bindingFor("52:54:00:77:00:66", iaid)!.expires, clock.t + 3600_000);
  const released = only(r.handle(follow(solicit, T.RELEASE, reply), CLIENT));
  equal(released.type, T.REPLY);
  deepEqual(statusCode(released), { code: StatusCode6.SUCCESS, message: "released" });
  equal(iaNas(released).length, 0);
  equal(r.leases!.bindingFor("52:54:00:77:00:66", iaid)!.state, "free");
  const again = only(r.handle(follow(solicit, T.RENEW, reply), CLIENT));
  equal(statusCode(iaNas(again)[0])?.code, StatusCode6.NO_BINDING);
  equal(iaAddresses(iaNas(again)[0]).length, 0);
  // Release of an IA we never bound
  const unknown = only(r.handle(follow(solicit, T.RELEASE, reply), CLIENT));
  equal(statusCode(iaNas(unknown)[0])?.code, StatusCode6.NO_BINDING);
});

Deno.test("responder6: Rebind extends a binding, recovers a lost one in the pool, withdraws foreign addresses", () => {
  const r = responder();
  const solicit = golden("ovmf-pxe6-solicit.bin");
  const adv = only(r.handle(fixture6("ovmf-pxe6-solicit.bin"), CLIENT));
  const reply = only(r.handle(follow(solicit, T.REQUEST, adv), CLIENT));
  const rebound = only(r.handle(follow(solicit, T.REBIND, reply, { serverId: null }), CLIENT));
  equal(addressOf(rebound), addressOf(reply));
  // a fresh server (no table) that sees a Rebind for a free pool address binds it again
  const fresh = responder();
  const recovered = only(fresh.handle(follow(solicit, T.REBIND, reply, { serverId: null }), CLIENT));
  equal(addressOf(recovered), addressOf(reply));
  equal(fresh.leases!.holderOf(addressOf(reply)!)?.state, "bound");
  // a Rebind listing another link's address too: ours extended, the other withdrawn (lifetimes 0)
  const iaid = iaNas(reply)[0].iaid;
  const both = only(
    fresh.handle(follow(solicit, T.REBIND, undefined, { ias: [ia(iaid, "2001:db8:99::5")] }), CLIENT),
  );
  deepEqual(
    iaAddresses(iaNas(both)[0]).map((a) => [a.address, a.preferred, a.valid]),
    [[addressOf(reply), 3600, 3600], ["2001:db8:99::5", 0, 0]],
  );
  // an IA we never saw holding only another link's address: lifetimes 0, no NoBinding
  const out = only(
    fresh.handle(follow(solicit, T.REBIND, undefined, { ias: [ia(7, "2001:db8:99::5")] }), CLIENT),
  );
  deepEqual(iaAddresses(iaNas(out)[0]).map((a) => [a.address, a.preferred, a.valid]), [[
    "2001:db8:99::5",
    0,
    0,
  ]]);
  equal(statusCode(iaNas(out)[0]), undefined);
});

/** An IA_NA option holding `address`. */
function ia(iaid: number, address: string) {
  const options = [{
    code: Opt6.IAADDR,
    data: encodeIaAddress({ address, preferred: 0, valid: 0, options: [] }),
  }];
  return { code: Opt6.IA_NA, data: encodeIaNa({ iaid, t1: 0, t2: 0, options }) };
}

Deno.test("responder6: Decline takes the address out of the pool; the next client gets another", () => {
  const r = responder();
  const solicit = golden("ovmf-pxe6-solicit.bin");
  const adv = only(r.handle(fixture6("ovmf-pxe6-solicit.bin"), CLIENT));
  const reply = only(r.handle(follow(solicit, T.REQUEST, adv), CLIENT));
  const declined = only(r.handle(follow(solicit, T.DECLINE, reply), CLIENT));
  deepEqual(statusCode(declined)?.code, StatusCode6.SUCCESS);
  equal(r.leases!.holderOf(addressOf(reply)!), undefined);
  const next = only(r.handle(fixture6("ovmf-pxe6-solicit.bin"), CLIENT));
  ok(addressOf(next) !== addressOf(reply), `got ${addressOf(next)} again`);
});

Deno.test("responder6: Confirm -> Success on the pool's /64, NotOnLink elsewhere, silence without addresses", () => {
  const r = responder();
  const solicit = golden("ovmf-pxe6-solicit.bin");
  const on = only(
    r.handle(follow(solicit, T.CONFIRM, undefined, { ias: [ia(1, "2001:db8:77::1b0")] }), CLIENT),
  );
  deepEqual(statusCode(on)?.code, StatusCode6.SUCCESS);
  const off = only(
    r.handle(follow(solicit, T.CONFIRM, undefined, { ias: [ia(1, "2001:db8:99::1")] }), CLIENT),
  );
  deepEqual(statusCode(off)?.code, StatusCode6.NOT_ON_LINK);
  deepEqual(r.handle(follow(solicit, T.CONFIRM, undefined, { ias: [] }), CLIENT), []);
});

Deno.test("responder6: Information-Request -> Reply with boot options (and DNS when asked), no IA", () => {
  const r = responder({ dns: ["2001:db8:77::53"] });
  const solicit = golden("ovmf-pxe6-solicit.bin");
  const reply = only(r.handle(follow(solicit, T.INFORMATION_REQUEST, undefined, { ias: [] }), CLIENT));
  equal(reply.type, T.REPLY);
  equal(iaNas(reply).length, 0);
  equal(bootFileUrl(reply), "tftp://[2001:db8:77::1]/ipxe.efi");
  ok(hasOption6(reply, Opt6.DNS_SERVERS)); // OVMF's ORO asks for 23
  equal(r.leases!.boundBindings().length, 0);
});

Deno.test("responder6: Solicit with Rapid Commit -> Reply with Rapid Commit and a committed binding", () => {
  const r = responder();
  const s = golden("ovmf-pxe6-solicit.bin");
  const rapid = encodeDhcp6({
    ...s,
    options: [...s.options, { code: Opt6.RAPID_COMMIT, data: new Uint8Array(0) }],
  });
  const reply = only(r.handle(rapid, CLIENT));
  equal(reply.type, T.REPLY);
  ok(hasOption6(reply, Opt6.RAPID_COMMIT));
  equal(r.leases!.holderOf(addressOf(reply)!)?.state, "bound");
  // a proxy does not commit: Advertise as usual
  equal(only(responder({ mode: "proxy" }).handle(rapid, CLIENT)).type, T.ADVERTISE);
});

Deno.test("responder6: RELAY-FORW -> RELAY-REPL to the relay on port 547, Interface-Id echoed", () => {
  const r = responder();
  const inner = golden("ovmf-pxe6-solicit.bin");
  const forw: Dhcp6Relay = {
    type: 12,
    hopCount: 0,
    linkAddress: "2001:db8:77::fe",
    peerAddress: "fe80::5054:ff:fe77:66",
    options: [{ code: Opt6.INTERFACE_ID, data: Uint8Array.of(1, 2, 3) }],
    message: inner,
  };
  const out = r.handle(encodeDhcp6(forw), { address: "2001:db8:77::fe", port: 547 });
  equal(out.length, 1);
  deepEqual({ address: out[0].address, port: out[0].port }, { address: "2001:db8:77::fe", port: 547 });
  const repl = decodeDhcp6(out[0].bytes) as Dhcp6Relay;
  equal(repl.type, T.RELAY_REPL);
  deepEqual([repl.linkAddress, repl.peerAddress], ["2001:db8:77::fe", "fe80::5054:ff:fe77:66"]);
  deepEqual(getOption6(repl, Opt6.INTERFACE_ID), Uint8Array.of(1, 2, 3));
  const adv = repl.message as Dhcp6Message;
  equal(adv.type, T.ADVERTISE);
  equal(adv.transactionId, inner.transactionId);
  equal(bootFileUrl(adv), "tftp://[2001:db8:77::1]/ipxe.efi");
  ok(addressOf(adv)?.startsWith("2001:db8:77::1"), "an address of the pool on the relay's link");
  // a RELAY-REPL sent to the server is dropped
  deepEqual(r.handle(out[0].bytes, { address: "2001:db8:77::fe", port: 547 }), []);
});

Deno.test("responder6: a relay from another link gets NoAddrsAvail (one warning), never an off-link address", () => {
  const log = memoryLog();
  const r = responder({ log });
  const forw = (linkAddress: string): Dhcp6Relay => ({
    type: 12,
    hopCount: 0,
    linkAddress,
    peerAddress: "fe80::5054:ff:fe77:66",
    options: [],
    message: golden("ovmf-pxe6-solicit.bin"),
  });
  for (let i = 0; i < 3; i++) {
    const [out] = r.handle(encodeDhcp6(forw("2001:db8:99::1")), { address: "2001:db8:99::1", port: 547 });
    const adv = (decodeDhcp6(out.bytes) as Dhcp6Relay).message as Dhcp6Message;
    equal(adv.type, T.ADVERTISE);
    equal(addressOf(adv), undefined);
    equal(statusCode(iaNas(adv)[0])?.code, StatusCode6.NO_ADDRS_AVAIL, "in the IA_NA");
  }
  equal(log.lines.filter((l) => l.includes("link 2001:db8:99::1")).length, 1, log.lines.join("\n"));
  // a relay that cannot name the link (::) is served from the pool
  const [out] = r.handle(encodeDhcp6(forw("::")), { address: "2001:db8:99::1", port: 547 });
  ok(addressOf((decodeDhcp6(out.bytes) as Dhcp6Relay).message as Dhcp6Message));
});

Deno.test("responder6: pool exhaustion -> IA_NA with NoAddrsAvail (and a throttled warning)", () => {
  const log = memoryLog();
  const r = responder({ pool: { begin: "2001:db8:77::1a0", end: "2001:db8:77::1a0" }, log });
  const a = only(r.handle(fixture6("ovmf-pxe6-solicit.bin"), CLIENT));
  equal(addressOf(a), "2001:db8:77::1a0");
  const b = only(
    r.handle(fixture6("ovmf-http6-solicit.bin"), { ...CLIENT, address: "fe80::5054:ff:fe77:99" }),
  );
  // same MAC in the DUID but another IAID: the one address is held by the first IA
  equal(addressOf(b), undefined);
  equal(statusCode(iaNas(b)[0])?.code, StatusCode6.NO_ADDRS_AVAIL);
  equal(statusCode(b)?.code, StatusCode6.NO_ADDRS_AVAIL);
  ok(bootFileUrl(b) !== undefined);
  r.handle(fixture6("ovmf-http6-solicit.bin"), CLIENT);
  equal(log.lines.filter((l) => l.includes("exhausted")).length, 1);
});

Deno.test("responder6: static address by MAC", () => {
  const r = responder({ static: new Map([["52:54:00:77:00:66", "2001:db8:77::66"]]) });
  equal(addressOf(only(r.handle(fixture6("ovmf-pxe6-solicit.bin"), CLIENT))), "2001:db8:77::66");
  // not handed to anyone else: another MAC gets a pool address
  const other = golden("ovmf-ip6-solicit.bin");
  const duid = Uint8Array.of(0, 3, 0, 1, 0x52, 0x54, 0, 0x77, 0, 0x99);
  const msg = {
    ...other,
    options: other.options.map((o) => o.code === Opt6.CLIENTID ? { ...o, data: duid } : o),
  };
  equal(addressOf(only(r.handle(encodeDhcp6(msg), CLIENT))), "2001:db8:77::1a0");
});

Deno.test("responder6: leases survive a reopen through the journal", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const file = `${dir}/leases6.json`;
    const clock = { t: 1_700_000_000_000 };
    const r = responder({ leasesFile: file }, clock);
    await r.leases!.load();
    const solicit = golden("ovmf-pxe6-solicit.bin");
    const adv = only(r.handle(fixture6("ovmf-pxe6-solicit.bin"), CLIENT));
    const reply = only(r.handle(follow(solicit, T.REQUEST, adv), CLIENT));
    // journalled before the answer: readable without a flush (as after SIGKILL)
    ok((await Deno.readTextFile(`${file}.journal`)).includes(addressOf(reply)!));
    const again = responder({ leasesFile: file }, clock);
    await again.leases!.load();
    const iaid = iaNas(reply)[0].iaid;
    equal(again.leases!.bindingFor("52:54:00:77:00:66", iaid)?.ip, addressOf(reply));
    equal(again.leases!.bindingFor("52:54:00:77:00:66", iaid)?.state, "bound");
    const renewed = only(again.handle(follow(solicit, T.RENEW, reply), CLIENT));
    equal(addressOf(renewed), addressOf(reply));
    await r.leases!.close();
    await again.leases!.close();
    const saved = JSON.parse(await Deno.readTextFile(file));
    deepEqual(Object.keys(saved), [`52:54:00:77:00:66/${iaid}`]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
