import { deepStrictEqual, equal, ok, throws } from "node:assert/strict";
import {
  createDhcpPacket,
  decodeDhcp,
  DhcpDecodeError,
  DhcpEncodeError,
  type DhcpPacket,
  encodeDhcp,
  isBroadcast,
  newReply,
  parseMac,
  setBootFile,
} from "../../src/dhcp/packet.ts";
import {
  clientArch,
  decodePxeOptions,
  getIp,
  getString,
  getU16,
  getU32,
  getU8List,
  isIpxe,
  MessageType,
  messageType,
  Opt,
  vendorClass,
} from "../../src/dhcp/options.ts";
import { fixturesDir } from "../helpers/fixtures.ts";

/** The DHCP fixtures. */
function fixtureDir(): string {
  return fixturesDir() + "dhcp/";
}
const fixture = (name: string): Uint8Array => Deno.readFileSync(fixtureDir() + name);
const fixtureNames = (): string[] =>
  [...Deno.readDirSync(fixtureDir())].map((e) => e.name).filter((n) => n.endsWith(".bin")).sort();

const MAC = "52:54:00:77:00:10";
const GUID = "0077777777777777478777777777770010";
const IPXE_55 = [
  1,
  3,
  6,
  7,
  12,
  15,
  17,
  26,
  43,
  60,
  66,
  67,
  119,
  128,
  129,
  130,
  131,
  132,
  133,
  134,
  135,
  175,
  203,
];
const OVMF_55 = [1, 2, 3, 4, 5, 6, 12, 13, 15, 17, 18, 22, 23, 28, 40, 41, 42, 43, 50, 51, 54, 58, 59, 60];
const OVMF_PXE_55 = [...OVMF_55, 66, 67, 97, 128, 129, 130, 131, 132, 133, 134, 135];
const OVMF_HTTP_55 = [...OVMF_55, 0, 67, 97];
const { DISCOVER, OFFER, REQUEST, ACK } = MessageType;

interface Expect {
  type: number;
  size: number;
  bcast: boolean;
  order: number[];
  arch?: number;
  vc?: string;
  ipxe?: boolean;
  p55?: number[];
  mms?: number;
  boot?: string;
  file?: string;
  sname?: string;
  addrs?: [string, string, string];
  xid0?: boolean;
}

const LEASE = [53, 54, 51, 67, 58, 59, 1, 28, 3];
const A3 = (ci: string, yi: string, si: string): [string, string, string] => [ci, yi, si];
const OFFERED = A3("0.0.0.0", "192.168.77.115", "192.168.77.1");
const IPXE_REQ = [53, 57, 93, 94, 60, 77, 55, 175, 61, 97];
const VC_BIOS = "PXEClient:Arch:00000:UNDI:002001";
const VC_EFI = "PXEClient:Arch:00007:UNDI:003010";
const VC_OVMF = "PXEClient:Arch:00007:UNDI:003000";
const VC_HTTP = "HTTPClient:Arch:00016:UNDI:003000";

/** Values from tests/fixtures/README.md, one entry per file. */
const EXPECTED: Record<string, Expect> = {
  "dnsmasq-ack-ipxe-bios": {
    type: ACK,
    size: 300,
    bcast: false,
    order: LEASE,
    boot: "pxelinux.0",
    addrs: OFFERED,
  },
  "dnsmasq-ack-ovmf-http": {
    type: ACK,
    size: 329,
    bcast: true,
    order: [...LEASE, 60],
    boot: "http://192.168.77.1/ipxe.efi",
    vc: "HTTPClient",
    addrs: OFFERED,
  },
  "dnsmasq-ack-ovmf-pxe": {
    type: ACK,
    size: 300,
    bcast: true,
    order: LEASE,
    boot: "ipxe.efi",
    addrs: OFFERED,
  },
  "dnsmasq-offer-ipxe-bios": { type: OFFER, size: 300, bcast: false, order: LEASE, boot: "pxelinux.0" },
  "dnsmasq-offer-ipxe-efi-rom": { type: OFFER, size: 300, bcast: false, order: LEASE, boot: "boot.ipxe" },
  "dnsmasq-offer-ovmf-http": {
    type: OFFER,
    size: 329,
    bcast: true,
    order: [...LEASE, 60],
    boot: "http://192.168.77.1/ipxe.efi",
    vc: "HTTPClient",
    addrs: OFFERED,
  },
  "dnsmasq-offer-ovmf-pxe": { type: OFFER, size: 300, bcast: true, order: LEASE, boot: "ipxe.efi" },
  "dnsmasq-proxy-ack-4011-ipxe-bios": {
    type: ACK,
    size: 313,
    bcast: true,
    order: [53, 54, 60, 97, 43],
    vc: "PXEClient",
    file: "boot.ipxe",
    xid0: true,
    addrs: OFFERED,
  },
  "dnsmasq-proxy-ack-4011-ipxe-efi-snp": {
    type: ACK,
    size: 300,
    bcast: true,
    order: [53, 54, 60, 97],
    vc: "PXEClient",
    file: "boot.ipxe",
    sname: "192.168.77.1",
    addrs: A3("192.168.77.115", "0.0.0.0", "192.168.77.1"),
  },
  "dnsmasq-proxy-ack-4011-ovmf": {
    type: ACK,
    size: 300,
    bcast: false,
    order: [53, 54, 60, 97],
    vc: "PXEClient",
    file: "ipxe.efi",
    sname: "192.168.77.1",
    addrs: A3("192.168.77.115", "0.0.0.0", "192.168.77.1"),
  },
  "dnsmasq-proxy-offer-ipxe-bios": {
    type: OFFER,
    size: 335,
    bcast: true,
    order: [53, 54, 60, 97, 43],
    vc: "PXEClient",
    addrs: A3("0.0.0.0", "0.0.0.0", "0.0.0.0"),
  },
  "dnsmasq-proxy-offer-ovmf": {
    type: OFFER,
    size: 300,
    bcast: true,
    order: [53, 54, 60, 97],
    vc: "PXEClient",
    addrs: A3("0.0.0.0", "0.0.0.0", "192.168.77.1"),
  },
  "ipxe-bios-discover": {
    type: DISCOVER,
    size: 400,
    bcast: false,
    order: IPXE_REQ,
    arch: 0,
    vc: VC_BIOS,
    ipxe: true,
    p55: IPXE_55,
    mms: 1472,
  },
  "ipxe-bios-proxy-request-4011": {
    type: REQUEST,
    size: 386,
    bcast: true,
    order: [...IPXE_REQ, 43],
    arch: 0,
    vc: "PXEClient",
    ipxe: true,
    p55: IPXE_55,
    mms: 1472,
    xid0: true,
    addrs: A3("192.168.77.115", "0.0.0.0", "0.0.0.0"),
  },
  "ipxe-bios-request": {
    type: REQUEST,
    size: 412,
    bcast: false,
    order: [...IPXE_REQ, 54, 50],
    arch: 0,
    vc: VC_BIOS,
    ipxe: true,
    p55: IPXE_55,
    mms: 1472,
  },
  "ipxe-efi-rom-discover": {
    type: DISCOVER,
    size: 388,
    bcast: false,
    order: IPXE_REQ,
    arch: 7,
    vc: VC_EFI,
    ipxe: true,
    p55: IPXE_55,
    mms: 1472,
  },
  "ipxe-efi-snp-discover": {
    type: DISCOVER,
    size: 391,
    bcast: false,
    order: IPXE_REQ,
    arch: 7,
    vc: VC_EFI,
    ipxe: true,
    p55: IPXE_55,
    mms: 1472,
  },
  "ipxe-efi-snp-proxy-request-4011": {
    type: REQUEST,
    size: 397,
    bcast: true,
    order: [...IPXE_REQ, 54],
    arch: 7,
    vc: VC_EFI,
    ipxe: true,
    p55: IPXE_55,
    mms: 1472,
    addrs: A3("192.168.77.115", "0.0.0.0", "0.0.0.0"),
  },
  "ovmf-http-discover": {
    type: DISCOVER,
    size: 340,
    bcast: true,
    order: [53, 57, 55, 97, 94, 93, 60],
    arch: 16,
    vc: VC_HTTP,
    p55: OVMF_HTTP_55,
    mms: 1472,
  },
  "ovmf-http-request": {
    type: REQUEST,
    size: 352,
    bcast: true,
    order: [53, 54, 50, 57, 55, 97, 94, 93, 60],
    arch: 16,
    vc: VC_HTTP,
    p55: OVMF_HTTP_55,
    mms: 1472,
  },
  "ovmf-pxe-discover": {
    type: DISCOVER,
    size: 347,
    bcast: true,
    order: [53, 57, 55, 97, 94, 93, 60],
    arch: 7,
    vc: VC_OVMF,
    p55: OVMF_PXE_55,
    mms: 1472,
  },
  "ovmf-pxe-proxy-request-4011": {
    type: REQUEST,
    size: 347,
    bcast: false,
    order: [53, 55, 57, 60, 93, 94, 97],
    arch: 7,
    vc: VC_OVMF,
    p55: OVMF_PXE_55,
    mms: 1472,
    addrs: A3("192.168.77.115", "0.0.0.0", "0.0.0.0"),
  },
  "ovmf-pxe-request": {
    type: REQUEST,
    size: 359,
    bcast: true,
    order: [53, 54, 50, 57, 55, 97, 94, 93, 60],
    arch: 7,
    vc: VC_OVMF,
    p55: OVMF_PXE_55,
    mms: 65280,
  },
  "rpi-synthetic-discover": {
    type: DISCOVER,
    size: 320,
    bcast: false,
    order: [53, 55, 93, 94, 97, 60],
    arch: 0,
    vc: VC_BIOS,
    p55: [43, 60, 67, 128, 129, 130, 131, 132, 133, 134, 135, 66],
  },
};

const hex = (b: Uint8Array | undefined) =>
  Array.from(b ?? [], (x) => x.toString(16).padStart(2, "0")).join("");

Deno.test("fixtures: every file in the directory has expectations and vice versa", () => {
  deepStrictEqual(fixtureNames().map((n) => n.replace(/\.bin$/, "")), Object.keys(EXPECTED).sort());
});

for (const [name, want] of Object.entries(EXPECTED)) {
  Deno.test(`fixture ${name}: decoded fields match the README`, () => {
    const bytes = fixture(`${name}.bin`);
    equal(bytes.length, want.size);
    const p = decodeDhcp(bytes);
    const rpi = name.startsWith("rpi");
    equal(p.op, name.startsWith("dnsmasq") ? 2 : 1);
    equal(p.mac, rpi ? "b8:27:eb:12:34:56" : MAC);
    equal(p.htype, 1);
    equal(p.hlen, 6);
    equal(messageType(p), want.type);
    equal(isBroadcast(p), want.bcast);
    deepStrictEqual([...p.options.keys()], want.order);
    equal(clientArch(p), want.arch);
    equal(vendorClass(p), want.vc);
    equal(isIpxe(p), want.ipxe ?? false);
    deepStrictEqual(getU8List(p, Opt.PARAMETER_LIST), want.p55);
    equal(getU16(p, Opt.MAX_MESSAGE_SIZE), want.mms);
    if (p.options.has(97)) equal(hex(p.options.get(97)), rpi ? "00" + "44".repeat(16) : GUID);
    if (p.options.has(61)) equal(hex(p.options.get(61)), "01525400770010");
    if (want.boot) {
      equal(hex(p.options.get(67)), hex(new TextEncoder().encode(want.boot + "\0"))); // dnsmasq adds a NUL
      equal(getString(p, Opt.BOOTFILE), want.boot);
    } else equal(p.options.has(67), false);
    equal(p.file, want.file ?? "");
    equal(p.sname, want.sname ?? "");
    if (want.addrs) deepStrictEqual([p.ciaddr, p.yiaddr, p.siaddr], want.addrs);
    if (want.xid0) equal(p.xid, 0);
    if (rpi) equal(p.xid, 0x52506933);
    if (p.op === 2) {
      equal(getIp(p, Opt.SERVER_ID), "192.168.77.1");
      equal(p.giaddr, "0.0.0.0");
    }
    if (want.order.includes(51)) {
      equal(getU32(p, Opt.LEASE_TIME), 3600);
      equal(getU32(p, Opt.RENEWAL_TIME), 1800);
      equal(getU32(p, Opt.REBINDING_TIME), 3150);
      equal(getIp(p, Opt.SUBNET_MASK), "255.255.255.0");
      equal(getIp(p, Opt.BROADCAST), "192.168.77.255");
      equal(getIp(p, Opt.ROUTER), "192.168.77.1");
    }
    if (want.order.includes(54) && p.op === 1) equal(getIp(p, Opt.SERVER_ID), "192.168.77.1");
    if (want.order.includes(50)) equal(getIp(p, Opt.REQUESTED_IP), "192.168.77.115");
  });

  Deno.test(`fixture ${name}: decode -> encode -> decode is stable`, () => {
    const bytes = fixture(`${name}.bin`);
    const first = decodeDhcp(bytes);
    const wire = encodeDhcp(first);
    deepStrictEqual(decodeDhcp(wire), first);
    // Our encoder pads to 300 like dnsmasq; everything up to END is byte-identical.
    const end = 240 + [...first.options.values()].reduce((n, v) => n + 2 + v.length, 0);
    deepStrictEqual(wire.subarray(0, end + 1), bytes.subarray(0, end + 1));
    equal(wire.length, Math.max(300, end + 1));
  });
}

Deno.test("fixture PXE option 43 sub-options (dnsmasq proxy replies and the iPXE 4011 request)", () => {
  const prompt = { timeout: 0, prompt: "PXE harness proxyDHCP" };
  deepStrictEqual(
    decodePxeOptions(decodeDhcp(fixture("dnsmasq-proxy-offer-ipxe-bios.bin")).options.get(43)!),
    {
      discoveryControl: 3,
      bootServers: [{ type: 32771, ips: ["192.168.77.1"] }],
      bootMenu: [{ type: 32771, description: "iPXE script" }],
      menuPrompt: prompt,
    },
  );
  deepStrictEqual(
    decodePxeOptions(decodeDhcp(fixture("dnsmasq-proxy-ack-4011-ipxe-bios.bin")).options.get(43)!),
    {
      bootItem: { type: 32771, layer: 0 },
      menuPrompt: prompt,
    },
  );
  deepStrictEqual(
    decodePxeOptions(decodeDhcp(fixture("ipxe-bios-proxy-request-4011.bin")).options.get(43)!),
    {
      bootItem: { type: 32771, layer: 0 },
    },
  );
});

Deno.test("OVMF HTTP option 55 keeps the uninitialised 0 entry at index 24", () => {
  const p55 = getU8List(decodeDhcp(fixture("ovmf-http-discover.bin")), Opt.PARAMETER_LIST)!;
  equal(p55.length, 27);
  equal(p55[24], 0);
});

function sample(): DhcpPacket {
  const p = createDhcpPacket({ op: 2, mac: MAC, xid: 0xdeadbeef, yiaddr: "192.168.77.115" });
  p.options.set(Opt.MESSAGE_TYPE, Uint8Array.of(OFFER));
  p.options.set(Opt.SERVER_ID, Uint8Array.of(192, 168, 77, 1));
  return p;
}

Deno.test("encode: pads to 300 bytes by default, minSize and maxSize respected", () => {
  const p = sample();
  equal(encodeDhcp(p).length, 300);
  equal(encodeDhcp(p, { minSize: 0 }).length, 240 + 3 + 6 + 1);
  equal(encodeDhcp(p, { minSize: 400 }).length, 400);
  equal(encodeDhcp(p, { minSize: 400, maxSize: 350 }).length, 350);
  const wire = encodeDhcp(p);
  equal(wire[249], 255);
  ok(wire.subarray(250).every((b) => b === 0));
  throws(() => encodeDhcp(p, { maxSize: 100 }), DhcpEncodeError);
});

Deno.test("encode: options beyond maxSize overload file and sname, or throw DhcpEncodeError", () => {
  const p = sample();
  for (let code = 200; code < 207; code++) p.options.set(code, new Uint8Array(60).fill(code));
  const big = encodeDhcp(p);
  equal(big.length, 240 + 9 + 7 * 62 + 1);
  const wire = encodeDhcp(p, { maxSize: 548 });
  equal(wire.length, 240 + 3 + 9 + 4 * 62 + 1); // four fit in the options field, three move
  const back = decodeDhcp(wire);
  equal(back.options.get(Opt.OVERLOAD)?.[0], 3);
  back.options.delete(Opt.OVERLOAD);
  deepStrictEqual([...back.options].sort((a, b) => a[0] - b[0]), [...p.options].sort((a, b) => a[0] - b[0]));
  equal(back.file, "");
  p.file = "ipxe.efi"; // the file field is taken: not enough room left
  throws(() => encodeDhcp(p, { maxSize: 548 }), (e) => e instanceof DhcpEncodeError && e.field === "options");
  p.options.set(Opt.OVERLOAD, Uint8Array.of(3)); // a caller's 52 is ignored, never written blindly
  equal(decodeDhcp(encodeDhcp(p)).options.has(Opt.OVERLOAD), false);
});

Deno.test("encode: options longer than 255 bytes are split and decode concatenated (RFC 3396)", () => {
  const p = sample();
  const long = Uint8Array.from({ length: 600 }, (_, i) => i & 255);
  p.options.set(Opt.VENDOR_SPECIFIC, long);
  const wire = encodeDhcp(p);
  const at = 240 + 3 + 6;
  deepStrictEqual([wire[at], wire[at + 1]], [43, 255]);
  deepStrictEqual([wire[at + 257], wire[at + 258]], [43, 255]);
  deepStrictEqual([wire[at + 514], wire[at + 515]], [43, 90]);
  deepStrictEqual(decodeDhcp(wire).options.get(43), long);
  p.options.set(Opt.VENDOR_SPECIFIC, new Uint8Array(0)); // empty values are one zero-length instance
  deepStrictEqual(decodeDhcp(encodeDhcp(p)).options.get(43), new Uint8Array(0));
});

Deno.test("encode: names too long for sname/file throw instead of shifting the packet", () => {
  const p = sample();
  p.sname = "s".repeat(63);
  p.file = "f".repeat(127);
  const back = decodeDhcp(encodeDhcp(p));
  equal(back.sname, p.sname);
  equal(back.file, p.file);
  p.sname = "s".repeat(64);
  throws(() => encodeDhcp(p), (e) => e instanceof DhcpEncodeError && e.field === "sname");
  p.sname = "";
  p.file = "é".repeat(64); // 128 UTF-8 bytes
  throws(() => encodeDhcp(p), (e) => e instanceof DhcpEncodeError && e.field === "file");
  throws(() => setBootFile(p, "x".repeat(128)), DhcpEncodeError);
});

Deno.test("setBootFile fills the file field and option 67 with the same name", () => {
  const p = sample();
  setBootFile(p, "ipxe.efi");
  const back = decodeDhcp(encodeDhcp(p));
  equal(back.file, "ipxe.efi");
  equal(getString(back, Opt.BOOTFILE), "ipxe.efi");
  deepStrictEqual(back.options.get(67), new TextEncoder().encode("ipxe.efi"));
});

Deno.test("encode: bad header fields throw DhcpEncodeError", () => {
  const cases: Partial<DhcpPacket>[] = [
    { op: 256 },
    { xid: -1 },
    { secs: 65536 },
    { flags: 1.5 },
    { hlen: 17 },
    { ciaddr: "1.2.3" },
    { giaddr: "1.2.3.256" },
    { chaddr: new Uint8Array(17) },
    { options: new Map([[255, new Uint8Array(1)]]) },
    { options: new Map([[0, new Uint8Array(1)]]) },
  ];
  for (const c of cases) throws(() => encodeDhcp({ ...sample(), ...c }), DhcpEncodeError, JSON.stringify(c));
});

Deno.test("newReply copies xid, flags, giaddr and chaddr; parseMac round-trips", () => {
  const req = decodeDhcp(fixture("ovmf-pxe-discover.bin"));
  const r = newReply(req);
  deepStrictEqual([r.op, r.xid, r.flags, r.giaddr, r.mac, r.options.size], [
    2,
    req.xid,
    0x8000,
    "0.0.0.0",
    MAC,
    0,
  ]);
  deepStrictEqual(parseMac("52-54-00-77-00-10"), req.chaddr);
  throws(() => parseMac("zz:00"), DhcpEncodeError);
});

function valid(): Uint8Array {
  return encodeDhcp(sample());
}

function patched(edit: (b: Uint8Array) => Uint8Array | void): Uint8Array {
  const b = valid();
  return edit(b) ?? b;
}

const OPT_AT = 240;
const random = (n: number, seed: number) =>
  Uint8Array.from({ length: n }, (_, i) => (Math.imul(i + seed, 2654435761) >>> 13) & 255);

const MALFORMED: [string, Uint8Array, string][] = [
  ["empty", new Uint8Array(0), "length"],
  ["short (239 bytes)", valid().subarray(0, 239), "length"],
  ["wrong cookie", patched((b) => void (b[239] = 0x64)), "cookie"],
  ["op 3", patched((b) => void (b[0] = 3)), "op"],
  ["op 0", patched((b) => void (b[0] = 0)), "op"],
  ["hlen 17", patched((b) => void (b[2] = 17)), "hlen"],
  ["option length overruns", patched((b) => b.subarray(0, OPT_AT + 3 + 4)), "option 54"],
  ["option without length byte", patched((b) => b.subarray(0, OPT_AT + 3 + 1)), "option 54"],
  ["overload 52 = 4", patched((b) => void b.set([52, 1, 4, 255], OPT_AT + 9)), "option 52"],
  [
    "overloaded file truncated option",
    patched((b) => {
      b.set([52, 1, 1, 255], OPT_AT + 9);
      b.set([66, 200], 108);
    }),
    "option 66",
  ],
  ["1500 bytes of garbage", random(1500, 7), "op"],
];

for (const [what, bytes, field] of MALFORMED) {
  Deno.test(`decode rejects ${what} with DhcpDecodeError(${field})`, () => {
    throws(() => decodeDhcp(bytes), (e) => {
      ok(e instanceof DhcpDecodeError, String(e));
      equal(e.field, field);
      ok(!e.message.includes("\n"));
      ok(e.message.includes(field));
      return true;
    });
  });
}

Deno.test("decode accepts a missing END (options end with the datagram) and BOOTP without option 53", () => {
  const noEnd = patched((b) => b.subarray(0, OPT_AT + 9));
  deepStrictEqual([...decodeDhcp(noEnd).options.keys()], [53, 54]);
  const bootp = createDhcpPacket({ mac: MAC });
  const p = decodeDhcp(encodeDhcp(bootp));
  equal(messageType(p), undefined);
  equal(p.options.size, 0);
  equal(decodeDhcp(new Uint8Array([...encodeDhcp(bootp).subarray(0, 240)])).options.size, 0);
});

Deno.test("decode: random garbage with a valid header only ever throws DhcpDecodeError", () => {
  for (let seed = 0; seed < 200; seed++) {
    const b = random(1500, seed);
    b.set([1, 1, 6], 0);
    b.set([99, 130, 83, 99], 236);
    try {
      decodeDhcp(b);
    } catch (e) {
      ok(e instanceof DhcpDecodeError, String(e));
    }
  }
});

Deno.test("decode: option 52 reads options from file then sname, and those fields are not names", () => {
  const b = patched((b) => {
    b.set([52, 1, 3, 255], OPT_AT + 9);
    b.set([67, 3, 97, 98, 99, 255], 108);
    b.set([66, 2, 120, 121, 67, 2, 100, 101, 255], 44);
  });
  const p = decodeDhcp(b);
  deepStrictEqual([...p.options.keys()], [53, 54, 52, 67, 66]);
  equal(getString(p, 67), "abcde");
  equal(getString(p, 66), "xy");
  deepStrictEqual([p.file, p.sname], ["", ""]);
});
