import { deepStrictEqual, equal, ok, throws } from "node:assert/strict";
import {
  archName,
  CLIENT_ARCHES,
  clientArch,
  decodeOptionValue,
  decodePxeOptions,
  DhcpDecodeError,
  DhcpEncodeError,
  encodeOption,
  encodePxeOptions,
  getIp,
  getIps,
  getOption,
  getString,
  getU16,
  getU32,
  getU8,
  isIpxe,
  maxReplySize,
  MessageType,
  messageType,
  messageTypeName,
  Opt,
  type OptionMap,
  optionName,
  OPTIONS,
  type OptionType,
  optionType,
  type OptionValue,
  setOption,
  vendorClass,
} from "../../src/dhcp/options.ts";

const te = new TextEncoder();
const pkt = (entries: [number, number[] | string][] = []) => ({
  options: new Map(
    entries.map(([c, v]) => [c, typeof v === "string" ? te.encode(v) : Uint8Array.from(v)]),
  ) as OptionMap,
});

Deno.test("option table covers the codes a PXE server needs", () => {
  const required = [
    0,
    1,
    3,
    6,
    12,
    15,
    28,
    43,
    50,
    51,
    52,
    53,
    54,
    55,
    57,
    58,
    59,
    60,
    61,
    66,
    67,
    77,
    81,
    82,
  ];
  for (const code of [...required, 93, 94, 97, 119, 121, 175, 255]) ok(OPTIONS.has(code), `option ${code}`);
  equal(optionName(67), "bootfile");
  equal(optionType(93), "u16list");
  equal(optionType(54), "ip");
  equal(optionName(240), "option-240");
  equal(optionType(240), "bytes");
  for (const [code, [name, type]] of OPTIONS) {
    ok(Number.isInteger(code) && name.length > 0, `${code} ${name}`);
    ok(
      [
        "none",
        "flag",
        "ip",
        "ips",
        "u8",
        "u16",
        "u32",
        "i32",
        "u8list",
        "u16list",
        "string",
        "bytes",
        "domains",
        "routes",
      ].includes(type),
    );
  }
});

Deno.test("message types and names", () => {
  deepStrictEqual(Object.values(MessageType), [1, 2, 3, 4, 5, 6, 7, 8]);
  deepStrictEqual(Object.values(MessageType).map(messageTypeName), [
    "DISCOVER",
    "OFFER",
    "REQUEST",
    "DECLINE",
    "ACK",
    "NAK",
    "RELEASE",
    "INFORM",
  ]);
  equal(messageTypeName(42), "TYPE-42");
  equal(messageType(pkt([[53, [3]]])), 3);
  equal(messageType(pkt()), undefined);
  equal(messageType(pkt([[53, [3, 3]]])), undefined);
});

Deno.test("client architecture names (IANA, option 93)", () => {
  const names: [number, string][] = [
    [0, "BIOS x86"],
    [6, "EFI IA32"],
    [7, "EFI x64 (BC)"],
    [9, "EFI x64"],
    [10, "ARM32 EFI"],
    [11, "ARM64 EFI"],
    [15, "x86 UEFI HTTP"],
    [16, "x64 UEFI HTTP"],
    [18, "ARM32 UEFI HTTP"],
    [19, "ARM64 UEFI HTTP"],
    [41, "ARM rpiboot"],
  ];
  for (const [code, name] of names) equal(archName(code), name);
  deepStrictEqual([...CLIENT_ARCHES.keys()], Array.from({ length: 42 }, (_, i) => i));
  equal(archName(300), "arch 300");
  equal(clientArch(pkt([[93, [0, 7, 0, 9]]])), 7);
  equal(clientArch(pkt([[93, [0]]])), undefined);
  equal(clientArch(pkt()), undefined);
});

const GW = [192, 168, 77, 1];
const ROUTES = [{ dest: "10.0.0.0/8", router: "192.168.77.1" }, {
  dest: "0.0.0.0/0",
  router: "192.168.77.254",
}];

Deno.test("value codecs round-trip for every type", () => {
  const cases: [OptionType, OptionValue, number[]][] = [
    ["ip", "192.168.77.1", [192, 168, 77, 1]],
    ["ips", ["10.0.0.1", "10.0.0.2"], [10, 0, 0, 1, 10, 0, 0, 2]],
    ["u8", 5, [5]],
    ["u16", 1472, [5, 192]],
    ["u32", 3600, [0, 0, 14, 16]],
    ["i32", -3600, [255, 255, 241, 240]],
    ["u8list", [1, 3, 0, 67], [1, 3, 0, 67]],
    ["u16list", [7, 16], [0, 7, 0, 16]],
    ["string", "pxelinux.0", [...te.encode("pxelinux.0")]],
    ["bytes", Uint8Array.of(1, 2), [1, 2]],
    ["flag", true, []],
    ["domains", ["example.com", "lab"], [
      7,
      ...te.encode("example"),
      3,
      ...te.encode("com"),
      0,
      3,
      ...te.encode("lab"),
      0,
    ]],
    ["routes", ROUTES, [8, 10, ...GW, 0, 192, 168, 77, 254]],
  ];
  for (const [type, value, wire] of cases) {
    const bytes = encodeOption(type, value);
    deepStrictEqual([...bytes], wire, type);
    deepStrictEqual(decodeOptionValue(type, bytes), value, type);
  }
});

Deno.test("string values drop trailing NULs (dnsmasq's option 67) and domains follow compression pointers", () => {
  equal(decodeOptionValue("string", te.encode("ipxe.efi\0")), "ipxe.efi");
  const wire = Uint8Array.of(3, ...te.encode("lab"), 0, 1, 0x61, 0xc0, 0);
  deepStrictEqual(decodeOptionValue("domains", wire), ["lab", "a.lab"]);
  throws(() => decodeOptionValue("domains", Uint8Array.of(0xc0, 0)), DhcpDecodeError); // pointer loop
  throws(() => decodeOptionValue("domains", Uint8Array.of(5, 1)), DhcpDecodeError);
  throws(() => decodeOptionValue("routes", Uint8Array.of(33, 0, 0, 0, 0, 0, 0, 0, 0)), DhcpDecodeError);
  throws(() => decodeOptionValue("routes", Uint8Array.of(24, 10, 0, 0, 1)), DhcpDecodeError);
});

Deno.test("malformed values throw DhcpDecodeError, bad inputs to encode throw DhcpEncodeError", () => {
  for (
    const [type, bytes] of [["ip", [1, 2, 3]], ["ips", []], ["u16", [1]], ["u32", [1, 2]], ["u16list", [
      1,
    ]]] as const
  ) {
    throws(() => decodeOptionValue(type, Uint8Array.from(bytes)), DhcpDecodeError, type);
  }
  const bad: [OptionType, OptionValue][] = [
    ["ip", "300.1.1.1"],
    ["ips", ["1.2.3.4", "x"]],
    ["u8", 256],
    ["u16", -1],
    ["u32", 2 ** 32],
    ["u8list", [1, 1000]],
    ["string", 5],
    ["bytes", "x"],
    ["domains", ["a".repeat(64) + ".com"]],
    ["routes", [{ dest: "10.0.0.0/33", router: "1.1.1.1" }]],
  ];
  for (const [type, value] of bad) throws(() => encodeOption(type, value), DhcpEncodeError, type);
});

Deno.test("typed accessors, getOption and setOption", () => {
  const p = pkt([[54, [192, 168, 77, 1]], [3, [10, 0, 0, 1, 10, 0, 0, 2]], [57, [5, 192]], [51, [
    0,
    0,
    14,
    16,
  ]]]);
  equal(getIp(p, 54), "192.168.77.1");
  deepStrictEqual(getIps(p, 3), ["10.0.0.1", "10.0.0.2"]);
  equal(getU16(p, 57), 1472);
  equal(getU32(p, 51), 3600);
  equal(getU8(p, 53), undefined);
  equal(getString(p, 60), undefined);
  throws(() => getIp(p, 3), (e) => e instanceof DhcpDecodeError && e.field === "option 3");
  setOption(p, Opt.MESSAGE_TYPE, MessageType.OFFER);
  setOption(p, Opt.ROUTER, ["192.168.77.1"]);
  setOption(p, Opt.BOOTFILE, "ipxe.efi");
  setOption(p, Opt.CLIENT_ARCH, [7]);
  equal(getOption(p, 53), 2);
  deepStrictEqual(getOption(p, 3), ["192.168.77.1"]);
  equal(getOption(p, 67), "ipxe.efi");
  deepStrictEqual(getOption(p, 93), [7]);
  equal(getOption(p, 99), undefined);
  throws(() => setOption(p, Opt.END, true), DhcpEncodeError);
  throws(() => setOption(p, Opt.SERVER_ID, "nope"), DhcpEncodeError);
});

Deno.test("isIpxe: raw 77 'iPXE' prefix or option 175; vendorClass; maxReplySize", () => {
  ok(isIpxe(pkt([[77, "iPXE"]])));
  ok(isIpxe(pkt([[175, [1, 1, 1]]])));
  ok(!isIpxe(pkt([[77, [4, ...te.encode("iPXE")]]]))); // RFC 3004 framing is not what iPXE sends
  ok(!isIpxe(pkt([[77, "iPX"]])));
  ok(!isIpxe(pkt()));
  equal(vendorClass(pkt([[60, "PXEClient"]])), "PXEClient");
  equal(vendorClass(pkt()), undefined);
  equal(maxReplySize(pkt()), 548);
  equal(maxReplySize(pkt([[57, [1, 0]]])), 548); // 256 < 576
  equal(maxReplySize(pkt([[57, [5, 192]]])), 1444);
  equal(maxReplySize(pkt([[57, [255, 0]]])), 65252);
});

Deno.test("PXE option 43: encode reproduces dnsmasq's proxy offer bytes exactly", () => {
  const dnsmasq = Uint8Array.of(
    6,
    1,
    3,
    8,
    7,
    0x80,
    3,
    1,
    192,
    168,
    77,
    1,
    9,
    14,
    0x80,
    3,
    11,
    ...te.encode("iPXE script"),
    10,
    22,
    0,
    ...te.encode("PXE harness proxyDHCP"),
    255,
  );
  const p = {
    discoveryControl: 3,
    bootServers: [{ type: 32771, ips: ["192.168.77.1"] }],
    bootMenu: [{ type: 32771, description: "iPXE script" }],
    menuPrompt: { timeout: 0, prompt: "PXE harness proxyDHCP" },
  };
  deepStrictEqual(encodePxeOptions(p), dnsmasq);
  deepStrictEqual(decodePxeOptions(dnsmasq), p);
});

Deno.test("PXE option 43: boot item, multicast, unknown sub-options, errors", () => {
  const p = {
    bootItem: { type: 32771, layer: 0 },
    multicastIp: "224.0.1.2",
    bootServers: [{ type: 0, ips: [] }],
    other: new Map([[1, Uint8Array.of(224, 1, 1, 1)]]),
  };
  deepStrictEqual(decodePxeOptions(encodePxeOptions(p)), p);
  deepStrictEqual([...encodePxeOptions({ bootItem: { type: 32771, layer: 0 } })], [
    71,
    4,
    0x80,
    3,
    0,
    0,
    255,
  ]);
  deepStrictEqual(decodePxeOptions(Uint8Array.of(0, 6, 1, 8, 255, 7, 9)), { discoveryControl: 8 });
  for (const bad of [[71, 3, 0, 0, 0], [6, 5, 1], [6], [8, 3, 0, 1, 1], [9, 4, 0, 1, 5, 65], [10, 0]]) {
    throws(() => decodePxeOptions(Uint8Array.from(bad)), DhcpDecodeError, JSON.stringify(bad));
  }
  throws(() => encodePxeOptions({ menuPrompt: { timeout: 256, prompt: "" } }), DhcpEncodeError);
  throws(() => encodePxeOptions({ menuPrompt: { timeout: 1, prompt: "x".repeat(255) } }), DhcpEncodeError);
});
