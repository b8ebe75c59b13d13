import { deepStrictEqual, equal, ok, throws } from "node:assert/strict";
import { decodeDhcp6, type Dhcp6Message, encodeDhcp6, isRelay } from "../../src/dhcp6/packet.ts";
import { Dhcp6DecodeError, messageTypeName6, Opt6 } from "../../src/dhcp6/options.ts";
import { DuidType, formatDuid, macOfDuid } from "../../src/dhcp6/duid.ts";
import {
  bootFileUrl,
  clientArches,
  clientId,
  elapsedTime,
  iaAddresses,
  iaNas,
  nii,
  preference,
  rapidCommit,
  requestedOptions,
  serverId,
  statusCode,
  userClasses,
  vendorClasses,
} from "../../src/dhcp6/accessors.ts";
import type { Nii, Status6 } from "../../src/dhcp6/values.ts";
import { dhcp6Payloads } from "../fixtures/dhcp6/extract.ts";
import { fixture6, fixture6Names, toHex } from "./helpers.ts";

/** What a golden packet must decode to; absent fields must be absent (or empty) in the packet. */
interface Expect {
  type: string;
  xid: number;
  /** Option codes in wire order. */
  codes: number[];
  clientId?: string;
  clientMac?: string;
  serverId?: string;
  oro?: number[];
  elapsed?: number;
  arch?: number[];
  nii?: Nii;
  vendorClass?: [number, string[]][];
  userClass?: string[];
  rapidCommit?: true;
  preference?: number;
  status?: Status6;
  bootFileUrl?: string;
  /** [iaid, t1, t2, [address, preferred, valid][]] per IA_NA. */
  iaNa?: [number, number, number, [string, number, number][]][];
}

const OVMF_DUID = "llt:1:31e4cf6f:525400770066"; // DUID-LLT, Ethernet, MAC 52:54:00:77:00:66
const IPXE_DUID = "uuid:00000000-0000-0000-0000-000000000000"; // DUID-UUID, no MAC in it
const DNSMASQ_DUID = "llt:1:329eb2ec:623437546add";
const MAC = "52:54:00:77:00:66";
const INF = 0xffffffff;
const OVMF_HTTP_DUID = "llt:1:31e51145:525400770066"; // a fresh OVMF_VARS copy makes a new DUID-LLT time
const RESPONDER_DUID = "ll:1:020000770001";
const HTTP_URL = "http://[2001:db8:77::1]/ipxe.efi";
const OVMF_HTTP_VC: [number, string[]][] = [[343, ["HTTPClient:Arch:00016:UNDI:003000"]]];
const OVMF_VC: [number, string[]][] = [[343, ["PXEClient:Arch:00007:UNDI:003000"]]];
const IPXE_VC: [number, string[]][] = [[343, ["PXEClient:Arch:00007:UNDI:003010"]]];
const URL = "tftp://[2001:db8:77::1]/ipxe.efi";
const OK: Status6 = { code: 0, message: "success" };

const EXPECT: Record<string, Expect> = {
  "ovmf-ip6-solicit.bin": {
    type: "SOLICIT",
    xid: 0x7ad216,
    codes: [1, 8, 3, 6],
    clientId: OVMF_DUID,
    clientMac: MAC,
    elapsed: 0,
    iaNa: [[0xffc3f772, INF, INF, []]],
    oro: [23],
  },
  "dnsmasq-advertise-ovmf-ip6.bin": {
    type: "ADVERTISE",
    xid: 0x7ad216,
    codes: [1, 2, 3, 13, 7],
    clientId: OVMF_DUID,
    clientMac: MAC,
    serverId: DNSMASQ_DUID,
    iaNa: [[0xffc3f772, 1800, 3150, [["2001:db8:77::126", 3600, 3600]]]],
    status: OK,
    preference: 0,
  },
  "ovmf-pxe6-solicit.bin": {
    type: "SOLICIT",
    xid: 0x7cd216,
    codes: [1, 8, 3, 6, 62, 61, 16],
    clientId: OVMF_DUID,
    clientMac: MAC,
    elapsed: 0,
    iaNa: [[0xf7dd76f6, INF, INF, []]],
    oro: [59, 60, 23, 16],
    nii: { type: 1, major: 3, minor: 0 },
    arch: [7],
    vendorClass: OVMF_VC,
  },
  "dnsmasq-advertise-ovmf-pxe6.bin": {
    type: "ADVERTISE",
    xid: 0x7cd216,
    codes: [1, 2, 3, 13, 7, 59],
    clientId: OVMF_DUID,
    clientMac: MAC,
    serverId: DNSMASQ_DUID,
    iaNa: [[0xf7dd76f6, 1800, 3150, [["2001:db8:77::1aa", 3600, 3600]]]],
    status: OK,
    preference: 0,
    bootFileUrl: URL,
  },
  "ovmf-pxe6-request.bin": {
    type: "REQUEST",
    xid: 0x7dd216,
    codes: [1, 8, 2, 3, 6, 62, 61, 16],
    clientId: OVMF_DUID,
    clientMac: MAC,
    serverId: DNSMASQ_DUID,
    elapsed: 0,
    iaNa: [[0xf7dd76f6, 1800, 3150, [["2001:db8:77::1aa", 3600, 3600]]]],
    oro: [59, 60, 23, 16],
    nii: { type: 1, major: 3, minor: 0 },
    arch: [7],
    vendorClass: OVMF_VC,
  },
  "dnsmasq-reply-ovmf-pxe6.bin": {
    type: "REPLY",
    xid: 0x7dd216,
    codes: [1, 2, 3, 13, 59],
    clientId: OVMF_DUID,
    clientMac: MAC,
    serverId: DNSMASQ_DUID,
    iaNa: [[0xf7dd76f6, 1800, 3150, [["2001:db8:77::1aa", 3600, 3600]]]],
    status: OK,
    bootFileUrl: URL,
  },
  "ovmf-release6.bin": {
    type: "RELEASE",
    xid: 0x7ed216,
    codes: [1, 2, 8, 3],
    clientId: OVMF_DUID,
    clientMac: MAC,
    serverId: DNSMASQ_DUID,
    elapsed: 0,
    // the IPv6 stack's IA (from ovmf-ip6-solicit), not the PXE one; T1/T2 still "infinite"
    iaNa: [[0xffc3f772, INF, INF, [["2001:db8:77::126", 3600, 3600]]]],
  },
  "ipxe-efi-solicit6.bin": {
    type: "SOLICIT",
    xid: 0x40e48f,
    codes: [1, 3, 6, 16, 61, 62, 15, 8],
    clientId: IPXE_DUID,
    iaNa: [[0x79ba7a4f, 0, 0, []]],
    oro: [23, 24, 59, 60],
    vendorClass: IPXE_VC,
    arch: [7],
    nii: { type: 1, major: 3, minor: 10 },
    userClass: ["iPXE"],
    elapsed: 0,
  },
  "dnsmasq-advertise-ipxe-efi6.bin": {
    type: "ADVERTISE",
    xid: 0x40e48f,
    codes: [1, 2, 3, 13, 7, 59],
    clientId: IPXE_DUID,
    serverId: DNSMASQ_DUID,
    iaNa: [[0x79ba7a4f, 1800, 3150, [["2001:db8:77::1d3", 3600, 3600]]]],
    status: OK,
    preference: 0,
    bootFileUrl: URL,
  },
  "ipxe-efi-request6.bin": {
    type: "REQUEST",
    xid: 0x40e48f, // iPXE reuses its Solicit's transaction id
    codes: [1, 2, 3, 6, 16, 61, 62, 15, 8],
    clientId: IPXE_DUID,
    serverId: DNSMASQ_DUID,
    iaNa: [[0x79ba7a4f, 0, 0, [["2001:db8:77::1d3", 0, 0]]]],
    oro: [23, 24, 59, 60],
    vendorClass: IPXE_VC,
    arch: [7],
    nii: { type: 1, major: 3, minor: 10 },
    userClass: ["iPXE"],
    elapsed: 0,
  },
  "dnsmasq-reply-ipxe-efi6.bin": {
    type: "REPLY",
    xid: 0x40e48f,
    codes: [1, 2, 3, 13, 59],
    clientId: IPXE_DUID,
    serverId: DNSMASQ_DUID,
    iaNa: [[0x79ba7a4f, 1800, 3150, [["2001:db8:77::1d3", 3600, 3600]]]],
    status: OK,
    bootFileUrl: URL,
  },
  "ovmf-http6-solicit.bin": {
    type: "SOLICIT",
    xid: 0xeb1243,
    codes: [1, 8, 3, 6, 62, 61, 16],
    clientId: OVMF_HTTP_DUID,
    clientMac: MAC,
    elapsed: 0,
    iaNa: [[0xfad42b9f, INF, INF, []]],
    oro: [59, 60, 23, 16],
    nii: { type: 1, major: 3, minor: 0 },
    arch: [16],
    vendorClass: OVMF_HTTP_VC,
  },
  "capture-responder-advertise-ovmf-http6.bin": {
    type: "ADVERTISE",
    xid: 0xeb1243,
    codes: [1, 2, 3, 16, 59],
    clientId: OVMF_HTTP_DUID,
    clientMac: MAC,
    serverId: RESPONDER_DUID,
    iaNa: [[0xfad42b9f, 1800, 2880, [["2001:db8:77::1a0", 3600, 3600]]]],
    vendorClass: [[343, ["HTTPClient"]]],
    bootFileUrl: HTTP_URL,
  },
  "ovmf-http6-request.bin": {
    type: "REQUEST",
    xid: 0xec1243,
    codes: [1, 8, 2, 3, 6, 62, 61, 16],
    clientId: OVMF_HTTP_DUID,
    clientMac: MAC,
    serverId: RESPONDER_DUID,
    elapsed: 0,
    iaNa: [[0xfad42b9f, 1800, 2880, [["2001:db8:77::1a0", 3600, 3600]]]],
    oro: [59, 60, 23, 16],
    nii: { type: 1, major: 3, minor: 0 },
    arch: [16],
    vendorClass: OVMF_HTTP_VC,
  },
  "capture-responder-reply-ovmf-http6.bin": {
    type: "REPLY",
    xid: 0xec1243,
    codes: [1, 2, 3, 16, 59],
    clientId: OVMF_HTTP_DUID,
    clientMac: MAC,
    serverId: RESPONDER_DUID,
    iaNa: [[0xfad42b9f, 1800, 2880, [["2001:db8:77::1a0", 3600, 3600]]]],
    vendorClass: [[343, ["HTTPClient"]]],
    bootFileUrl: HTTP_URL,
  },
};

/** Fixtures whose message decodes but one option value does not; the test checks that option's error. */
const BAD_OPTION: Record<string, [number, RegExp]> = {
  // dnsmasq 2.90 writes option6:16 as a length-prefixed string, with no enterprise number
  "dnsmasq-advertise-ovmf-http6-bad-vendor-class.bin": [
    Opt6.VENDOR_CLASS,
    /bad DHCPv6 option 16 \(vendor-class\): entry length 14896 runs 14853 bytes past the end/,
  ],
};

const text = new TextDecoder();

/** The Expect-shaped view of a decoded message, leaving out what is absent. */
function summarise(m: Dhcp6Message): Expect {
  const cid = clientId(m);
  const sid = serverId(m);
  const out: Expect = {
    type: messageTypeName6(m.type),
    xid: m.transactionId,
    codes: m.options.map((o) => o.code),
  };
  const set = <K extends keyof Expect>(
    key: K,
    value: Expect[K] | undefined,
    present = value !== undefined,
  ) => {
    if (present) out[key] = value as Expect[K];
  };
  set("clientId", cid && formatDuid(cid));
  set("clientMac", cid && macOfDuid(cid));
  set("serverId", sid && formatDuid(sid));
  const oro = requestedOptions(m);
  set("oro", oro, oro.length > 0);
  set("elapsed", elapsedTime(m));
  const arch = clientArches(m);
  set("arch", arch, arch.length > 0);
  set("nii", nii(m));
  const vc = vendorClasses(m).map((
    v,
  ): [number, string[]] => [v.enterprise, v.data.map((d) => text.decode(d))]);
  set("vendorClass", vc, vc.length > 0);
  const uc = userClasses(m);
  set("userClass", uc, uc.length > 0);
  set("rapidCommit", true, rapidCommit(m));
  set("preference", preference(m));
  set("status", statusCode(m));
  set("bootFileUrl", bootFileUrl(m));
  const ias = iaNas(m).map((ia): [number, number, number, [string, number, number][]] => [
    ia.iaid,
    ia.t1,
    ia.t2,
    iaAddresses(ia).map((a): [string, number, number] => [a.address, a.preferred, a.valid]),
  ]);
  set("iaNa", ias, ias.length > 0);
  return out;
}

Deno.test("golden: every DHCPv6 fixture has expectations and vice versa", () => {
  deepStrictEqual(fixture6Names(), [...Object.keys(EXPECT), ...Object.keys(BAD_OPTION)].sort());
});

for (const [name, [code, error]] of Object.entries(BAD_OPTION)) {
  Deno.test(`golden: ${name} decodes and re-encodes; only its option ${code} is malformed`, () => {
    const bytes = fixture6(name);
    const pkt = decodeDhcp6(bytes) as Dhcp6Message;
    equal(toHex(encodeDhcp6(pkt)), toHex(bytes));
    throws(() => vendorClasses(pkt), (e) => e instanceof Dhcp6DecodeError && error.test(e.message));
    const { vendorClass: _, ...rest } = EXPECT["dnsmasq-advertise-ovmf-pxe6.bin"];
    deepStrictEqual(summarise({ ...pkt, options: pkt.options.filter((o) => o.code !== code) }), {
      ...rest,
      xid: 0xcff8a8,
      clientId: "llt:1:31e51085:525400770066",
      serverId: "llt:1:329ef400:e66c7b0a66bc",
      iaNa: [[0x81534da4, 1800, 3150, [["2001:db8:77::1ee", 3600, 3600]]]],
      bootFileUrl: HTTP_URL,
    });
  });
}

Deno.test("golden: the .bin files of the OVMF HTTPv6 captures are the DHCPv6 payloads of the committed pcaps", () => {
  const payloads = (pcap: string) => dhcp6Payloads(fixture6(pcap)).map((p) => toHex(p.payload));
  deepStrictEqual(
    payloads("ovmf-http6.pcap"),
    [
      "ovmf-http6-solicit.bin",
      "capture-responder-advertise-ovmf-http6.bin",
      "ovmf-http6-request.bin",
      "capture-responder-reply-ovmf-http6.bin",
    ].map((name) => toHex(fixture6(name))),
  );
  equal(
    payloads("ovmf-http6-dnsmasq.pcap")[1],
    toHex(fixture6("dnsmasq-advertise-ovmf-http6-bad-vendor-class.bin")),
  );
});

for (const [name, expect] of Object.entries(EXPECT)) {
  Deno.test(`golden: ${name} decodes to the captured fields and re-encodes byte for byte`, () => {
    const bytes = fixture6(name);
    const pkt = decodeDhcp6(bytes);
    equal(isRelay(pkt), false);
    deepStrictEqual(summarise(pkt as Dhcp6Message), expect);
    equal(toHex(encodeDhcp6(pkt)), toHex(bytes));
  });
}

Deno.test("golden: OVMF's PXE Solicit asks for boot-file-url (59) and never sends Rapid Commit", () => {
  const pkt = decodeDhcp6(fixture6("ovmf-pxe6-solicit.bin")) as Dhcp6Message;
  ok(requestedOptions(pkt).includes(Opt6.BOOTFILE_URL));
  equal(rapidCommit(pkt), false);
  equal(clientId(pkt)?.type, DuidType.LLT);
  equal(clientId(decodeDhcp6(fixture6("ipxe-efi-solicit6.bin")))?.type, DuidType.UUID);
});
