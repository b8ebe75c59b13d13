import { deepStrictEqual, equal, throws } from "node:assert/strict";
import { formatIpv6, macFromEui64, parseIpv6 } from "../../src/dhcp6/address.ts";
import { decodeDuid, type Duid, encodeDuid, formatDuid, macOfDuid } from "../../src/dhcp6/duid.ts";
import {
  addOption6,
  decodeOptionList,
  Dhcp6DecodeError,
  Dhcp6EncodeError,
  encodeOptionList,
  getOption6,
  getOptions6,
  type HasOptions6,
  MAX_OPTIONS,
  messageTypeName6,
  Opt6,
  optionName6,
  removeOption6,
  setOption6,
} from "../../src/dhcp6/options.ts";
import {
  decodeAddressList,
  decodeIaAddress,
  decodeIaNa,
  decodeLinkLayerAddress,
  decodeNii,
  decodeOpaqueList,
  decodeStatusCode,
  decodeU16,
  decodeU16List,
  decodeU8,
  decodeVendorClass,
  decodeVendorOpts,
  encodeAddressList,
  encodeIaAddress,
  encodeIaNa,
  encodeLinkLayerAddress,
  encodeNii,
  encodeOpaqueList,
  encodeStatusCode,
  encodeText,
  encodeU16List,
  encodeUint,
  encodeVendorClass,
  encodeVendorOpts,
  MAX_LIST,
} from "../../src/dhcp6/values.ts";
import {
  bootFileParams,
  bootFileUrl,
  clientArches,
  dnsServers,
  userClasses,
} from "../../src/dhcp6/accessors.ts";
import { fromHex, toHex } from "./helpers.ts";

const enc = new TextEncoder();

Deno.test("address: RFC 5952 text, parse/format round trip, IPv4 tails, rejects", () => {
  const cases: [string, string][] = [
    ["2001:DB8:0:0:0:0:0:1", "2001:db8::1"],
    ["::", "::"],
    ["::1", "::1"],
    ["1::", "1::"],
    ["2001:db8:0:1:1:1:1:1", "2001:db8:0:1:1:1:1:1"], // one zero group is not shortened
    ["2001:0:0:1:0:0:0:1", "2001:0:0:1::1"], // the longest run
    ["2001:db8:0:0:1:0:0:1", "2001:db8::1:0:0:1"], // the first of equal runs
    ["fe80::5054:ff:fe77:66", "fe80::5054:ff:fe77:66"],
    ["::ffff:192.0.2.1", "::ffff:c000:201"],
    ["1:2:3:4:5:6:1.2.3.4", "1:2:3:4:5:6:102:304"],
  ];
  for (const [input, canonical] of cases) {
    const b = parseIpv6(input);
    equal(b && formatIpv6(b), canonical, input);
    deepStrictEqual(parseIpv6(canonical), b);
  }
  for (
    const bad of [
      "",
      ":",
      ":::",
      "1::2::3",
      "1:2:3:4:5:6:7",
      "1:2:3:4:5:6:7:8:9",
      "12345::",
      "g::",
      "::1.2.3.256",
      "1.2.3.4",
      "fe80::1%eth0",
    ]
  ) {
    equal(parseIpv6(bad), undefined, bad);
  }
  equal(macFromEui64("fe80::5054:ff:fe77:66"), "52:54:00:77:00:66");
  equal(macFromEui64("fe80::1"), undefined);
  equal(macFromEui64("nonsense"), undefined);
});

Deno.test("duid: the four RFC types and unknown ones round trip; MAC only from Ethernet LL/LLT", () => {
  const cases: [string, Duid, string, string | undefined][] = [
    [
      "0001000131e4cf6f525400770066",
      { type: 1, hardwareType: 1, time: 0x31e4cf6f, linkLayer: fromHex("525400770066") },
      "llt:1:31e4cf6f:525400770066",
      "52:54:00:77:00:66",
    ],
    ["000200000157abcd", { type: 2, enterprise: 343, identifier: fromHex("abcd") }, "en:343:abcd", undefined],
    [
      "00030001525400770066",
      { type: 3, hardwareType: 1, linkLayer: fromHex("525400770066") },
      "ll:1:525400770066",
      "52:54:00:77:00:66",
    ],
    [
      "0003000612345678",
      { type: 3, hardwareType: 6, linkLayer: fromHex("12345678") },
      "ll:6:12345678",
      undefined,
    ],
    [
      "0004" + "00112233445566778899aabbccddeeff",
      { type: 4, uuid: "00112233-4455-6677-8899-aabbccddeeff" },
      "uuid:00112233-4455-6677-8899-aabbccddeeff",
      undefined,
    ],
    ["0009beef", { type: 9, data: fromHex("beef") }, "type9:beef", undefined],
  ];
  for (const [wire, duid, text, mac] of cases) {
    deepStrictEqual(decodeDuid(fromHex(wire)), duid, wire);
    equal(toHex(encodeDuid(duid)), wire);
    equal(formatDuid(duid), text);
    equal(macOfDuid(duid), mac);
  }
  for (
    const bad of [
      "",
      "00",
      "0001000131e4cf",
      "000200000",
      "000300",
      "0004" + "00".repeat(15),
      "0004" + "00".repeat(17),
      "0009" + "00".repeat(129),
    ]
  ) {
    throws(() => decodeDuid(fromHex(bad)), Dhcp6DecodeError, bad);
  }
  throws(() => encodeDuid({ type: 4, uuid: "not-a-uuid" }), Dhcp6EncodeError);
  throws(() => encodeDuid({ type: 3, hardwareType: 70000, linkLayer: new Uint8Array(6) }), Dhcp6EncodeError);
  throws(() => encodeDuid({ type: 3, hardwareType: 1, linkLayer: new Uint8Array(200) }), Dhcp6EncodeError);
});

Deno.test("option list: order and repeats kept; cut-off headers, long lengths and too many options rejected", () => {
  const list = [
    { code: 3, data: fromHex("01") },
    { code: 16, data: fromHex("") },
    { code: 3, data: fromHex("0203") },
  ];
  const wire = encodeOptionList(list);
  equal(toHex(wire), "0003000101" + "00100000" + "000300020203");
  deepStrictEqual(decodeOptionList(wire, 0, wire.length, "options"), list);
  throws(() => decodeOptionList(fromHex("000300"), 0, 3, "options"), /stray bytes/);
  throws(
    () => decodeOptionList(fromHex("0003000501"), 0, 5, "options"),
    /option 3 \(ia-na\).*length 5 runs 4 bytes past/,
  );
  const many = new Uint8Array(4 * (MAX_OPTIONS + 1));
  equal(decodeOptionList(many, 0, 4 * MAX_OPTIONS, "options").length, MAX_OPTIONS);
  throws(() => decodeOptionList(many, 0, many.length, "options"), /more than 512 options/);
  throws(() => encodeOptionList([{ code: 70000, data: new Uint8Array() }]), Dhcp6EncodeError);
  throws(() => encodeOptionList([{ code: 1, data: new Uint8Array(65536) }]), Dhcp6EncodeError);

  const pkt: HasOptions6 = { options: [] };
  addOption6(pkt, Opt6.VENDOR_CLASS, fromHex("01"));
  addOption6(pkt, Opt6.VENDOR_CLASS, fromHex("02"));
  addOption6(pkt, Opt6.ORO, fromHex("0017"));
  deepStrictEqual(getOptions6(pkt, Opt6.VENDOR_CLASS), [fromHex("01"), fromHex("02")]);
  setOption6(pkt, Opt6.VENDOR_CLASS, fromHex("03"));
  deepStrictEqual(pkt.options.map((o) => [o.code, toHex(o.data)]), [[16, "03"], [6, "0017"]]);
  setOption6(pkt, Opt6.BOOTFILE_URL, enc.encode("x"));
  removeOption6(pkt, Opt6.ORO);
  deepStrictEqual(pkt.options.map((o) => o.code), [16, 59]);
  equal(getOption6(pkt, Opt6.ORO), undefined);
  equal(optionName6(59), "bootfile-url");
  equal(optionName6(999), "option-999");
  equal(messageTypeName6(11), "INFORMATION-REQUEST");
  equal(messageTypeName6(77), "TYPE-77");
});

Deno.test("values: every typed option round trips and rejects malformed bytes", () => {
  const ia = {
    iaid: 0xf7dd76f6,
    t1: 1800,
    t2: 2880,
    options: [
      {
        code: Opt6.IAADDR,
        data: encodeIaAddress({ address: "2001:db8::100", preferred: 3600, valid: 7200, options: [] }),
      },
      { code: Opt6.STATUS_CODE, data: encodeStatusCode({ code: 0, message: "ok" }) },
    ],
  };
  deepStrictEqual(decodeIaNa(encodeIaNa(ia)), ia);
  deepStrictEqual(decodeIaAddress(ia.options[0].data), {
    address: "2001:db8::100",
    preferred: 3600,
    valid: 7200,
    options: [],
  });
  deepStrictEqual(decodeStatusCode(ia.options[1].data), { code: 0, message: "ok" });
  const vc = { enterprise: 343, data: [enc.encode("HTTPClient:Arch:00016:UNDI:003000")] };
  deepStrictEqual(decodeVendorClass(encodeVendorClass(vc)), vc);
  const vo = { enterprise: 343, options: [{ code: 1, data: fromHex("aa") }] };
  deepStrictEqual(decodeVendorOpts(encodeVendorOpts(vo)), vo);
  deepStrictEqual(decodeU16List(encodeU16List([59, 60, 23, 16])), [59, 60, 23, 16]);
  deepStrictEqual(decodeAddressList(encodeAddressList(["2001:db8::53", "::1"])), ["2001:db8::53", "::1"]);
  deepStrictEqual(decodeNii(encodeNii({ type: 1, major: 3, minor: 10 })), { type: 1, major: 3, minor: 10 });
  deepStrictEqual(
    decodeLinkLayerAddress(encodeLinkLayerAddress({ hardwareType: 1, address: fromHex("525400770066") })),
    {
      hardwareType: 1,
      address: fromHex("525400770066"),
    },
  );
  const params = [enc.encode("a"), new Uint8Array(0), enc.encode("root=/dev/nfs")];
  deepStrictEqual(decodeOpaqueList(encodeOpaqueList(params)), params);
  equal(decodeU8(encodeUint(1, 255)), 255);
  equal(decodeU16(encodeUint(2, 0xffff)), 0xffff);

  const pkt: HasOptions6 = {
    options: [
      { code: Opt6.BOOTFILE_URL, data: encodeText("http://[2001:db8::1]/ipxe.efi") },
      { code: Opt6.BOOTFILE_PARAM, data: encodeOpaqueList([enc.encode("console=ttyS0")]) },
      { code: Opt6.CLIENT_ARCH_TYPE, data: encodeU16List([16, 7]) },
      { code: Opt6.DNS_SERVERS, data: encodeAddressList(["2001:db8::53"]) },
      { code: Opt6.USER_CLASS, data: encodeOpaqueList([enc.encode("iPXE"), enc.encode("x")]) },
      { code: Opt6.USER_CLASS, data: encodeOpaqueList([enc.encode("y")]) },
    ],
  };
  equal(bootFileUrl(pkt), "http://[2001:db8::1]/ipxe.efi");
  deepStrictEqual(bootFileParams(pkt), ["console=ttyS0"]);
  deepStrictEqual(clientArches(pkt), [16, 7]);
  deepStrictEqual(dnsServers(pkt), ["2001:db8::53"]);
  deepStrictEqual(userClasses(pkt), ["iPXE", "x", "y"]);

  const bad: [() => unknown, RegExp][] = [
    [() => decodeIaNa(new Uint8Array(11)), /ia-na: length 11, expected at least 12/],
    [() => decodeIaNa(fromHex("000000010000000000000000000500")), /stray bytes/],
    [() => decodeIaAddress(new Uint8Array(23)), /at least 24/],
    [() => decodeStatusCode(fromHex("00")), /at least 2/],
    [() => decodeVendorClass(fromHex("00000157000a4854")), /entry length 10 runs 8 bytes past/],
    [() => decodeVendorClass(fromHex("0000015700")), /stray byte/],
    [() => decodeVendorOpts(fromHex("000001")), /at least 4/],
    [() => decodeU16List(fromHex("001700")), /odd length 3/],
    [() => decodeAddressList(new Uint8Array(17)), /not a multiple of 16/],
    [() => decodeNii(fromHex("0103")), /expected 3/],
    [() => decodeU8(fromHex("")), /expected 1/],
    [() => decodeU16(fromHex("00")), /expected 2/],
    [() => decodeLinkLayerAddress(fromHex("00")), /at least 2/],
    [() => decodeOpaqueList(new Uint8Array(2 * (MAX_LIST + 1))), /more than 256 entries/],
    [() => clientArches({ options: [{ code: 61, data: fromHex("00") }] }), /option 61 \(client-arch-type\)/],
  ];
  for (const [fn, message] of bad) {
    throws(fn, (e) => e instanceof Dhcp6DecodeError && message.test(e.message));
  }
  throws(() => encodeIaAddress({ address: "nope", preferred: 0, valid: 0, options: [] }), Dhcp6EncodeError);
  throws(() => encodeIaNa({ iaid: -1, t1: 0, t2: 0, options: [] }), Dhcp6EncodeError);
  throws(() => encodeUint(2, 65536), Dhcp6EncodeError);
  throws(() => encodeNii({ type: 256, major: 0, minor: 0 }), Dhcp6EncodeError);
  throws(() => encodeOpaqueList([new Uint8Array(65536)]), Dhcp6EncodeError);
});
