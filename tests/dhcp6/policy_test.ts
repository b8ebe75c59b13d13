import { deepStrictEqual, equal } from "node:assert/strict";
import { type Client6Info, describeClient6 } from "../../src/dhcp6/policy.ts";
import { decodeDhcp6, type Dhcp6Message, type Dhcp6Packet, encodeDhcp6 } from "../../src/dhcp6/packet.ts";
import { type Dhcp6Option, MessageType6, Opt6 } from "../../src/dhcp6/options.ts";
import { encodeLinkLayerAddress, encodeU16List, encodeVendorClass } from "../../src/dhcp6/values.ts";
import { bootFileFor, type BootPolicyOptions, type ClientInfo } from "../../src/dhcp/policy.ts";
import { fixture6, fromHex } from "./helpers.ts";

const MAC = "52:54:00:77:00:66";
const LINK_LOCAL = "fe80::5054:ff:fe77:66";
const msg = (name: string) => decodeDhcp6(fixture6(name)) as Dhcp6Message;
const enc = new TextEncoder();

function relayed(inner: Dhcp6Packet, linkLayer?: string): Dhcp6Packet {
  const options: Dhcp6Option[] = [{ code: Opt6.RELAY_MSG, data: encodeDhcp6(inner) }];
  if (linkLayer) {
    options.push({
      code: Opt6.CLIENT_LINKLAYER_ADDR,
      data: encodeLinkLayerAddress({ hardwareType: 1, address: fromHex(linkLayer) }),
    });
  }
  return decodeDhcp6(encodeDhcp6({
    type: MessageType6.RELAY_FORW,
    hopCount: 0,
    linkAddress: "2001:db8:77::1",
    peerAddress: "fe80::5054:ff:fe12:3456",
    options,
    message: inner,
  }));
}

Deno.test("describeClient6: the captured Solicits", () => {
  const cases: [string, string | undefined, Client6Info][] = [
    ["ovmf-pxe6-solicit.bin", undefined, {
      arch: 7,
      vendorClass: "PXEClient:Arch:00007:UNDI:003000",
      ipxe: false,
      http: false,
      mac: MAC,
      macFrom: "duid",
      duid: "llt:1:31e4cf6f:525400770066",
    }],
    ["ovmf-http6-solicit.bin", undefined, {
      arch: 16,
      vendorClass: "HTTPClient:Arch:00016:UNDI:003000",
      ipxe: false,
      http: true,
      mac: MAC,
      macFrom: "duid",
      duid: "llt:1:31e51145:525400770066",
    }],
    // iPXE's DUID-UUID carries no MAC: it comes from the EUI-64 link-local source address
    ["ipxe-efi-solicit6.bin", LINK_LOCAL, {
      arch: 7,
      vendorClass: "PXEClient:Arch:00007:UNDI:003010",
      ipxe: true,
      http: false,
      mac: MAC,
      macFrom: "address",
      duid: "uuid:00000000-0000-0000-0000-000000000000",
    }],
    ["ipxe-efi-solicit6.bin", undefined, {
      arch: 7,
      vendorClass: "PXEClient:Arch:00007:UNDI:003010",
      ipxe: true,
      http: false,
      duid: "uuid:00000000-0000-0000-0000-000000000000",
    }],
    // OVMF's IPv6 stack configuring the NIC: not a boot request
    ["ovmf-ip6-solicit.bin", LINK_LOCAL, {
      arch: undefined,
      vendorClass: undefined,
      ipxe: false,
      http: false,
      mac: MAC,
      macFrom: "duid",
      duid: "llt:1:31e4cf6f:525400770066",
    }],
  ];
  for (const [name, sourceAddress, want] of cases) {
    deepStrictEqual(describeClient6(msg(name), { sourceAddress }), want, `${name} from ${sourceAddress}`);
  }
});

Deno.test("describeClient6: relayed clients take the MAC from option 79, else the relay's peer address", () => {
  const ipxe = msg("ipxe-efi-solicit6.bin");
  const viaRelay = describeClient6(relayed(ipxe, "020000abcdef"), { sourceAddress: "2001:db8:1::2" });
  equal(viaRelay.mac, "02:00:00:ab:cd:ef");
  equal(viaRelay.macFrom, "link-layer");
  equal(viaRelay.ipxe, true);
  const viaPeer = describeClient6(relayed(ipxe));
  equal(viaPeer.mac, "52:54:00:12:34:56");
  equal(viaPeer.macFrom, "address");
  // the DUID still wins over both
  equal(describeClient6(relayed(msg("ovmf-pxe6-solicit.bin"), "020000abcdef")).mac, MAC);
});

Deno.test("describeClient6: malformed options count as absent; arch from the vendor class; HTTP by arch", () => {
  const base = msg("ovmf-pxe6-solicit.bin");
  const without = (codes: number[]) => base.options.filter((o) => !codes.includes(o.code));
  const broken: Dhcp6Message = {
    ...base,
    options: [
      ...without([Opt6.CLIENT_ARCH_TYPE, Opt6.VENDOR_CLASS, Opt6.CLIENTID]),
      { code: Opt6.CLIENT_ARCH_TYPE, data: fromHex("00") },
      { code: Opt6.VENDOR_CLASS, data: fromHex("0000015700ff41") },
      { code: Opt6.USER_CLASS, data: fromHex("0009") },
      { code: Opt6.CLIENTID, data: fromHex("0004") },
    ],
  };
  deepStrictEqual(describeClient6(broken), {
    arch: undefined,
    vendorClass: undefined,
    ipxe: false,
    http: false,
    duid: undefined,
  });
  const archFromClass: Dhcp6Message = {
    ...base,
    options: [
      ...without([Opt6.CLIENT_ARCH_TYPE, Opt6.VENDOR_CLASS]),
      { code: Opt6.VENDOR_CLASS, data: encodeVendorClass({ enterprise: 9, data: [enc.encode("other")] }) },
      {
        code: Opt6.VENDOR_CLASS,
        data: encodeVendorClass({ enterprise: 343, data: [enc.encode("HTTPClient:Arch:00019:UNDI:003000")] }),
      },
    ],
  };
  const c = describeClient6(archFromClass);
  equal(c.arch, 19);
  equal(c.vendorClass, "HTTPClient:Arch:00019:UNDI:003000");
  equal(c.http, true);
  const arm64Http: Dhcp6Message = {
    ...base,
    options: [...without([Opt6.CLIENT_ARCH_TYPE, Opt6.VENDOR_CLASS]), {
      code: Opt6.CLIENT_ARCH_TYPE,
      data: encodeU16List([19, 11]),
    }],
  };
  deepStrictEqual([describeClient6(arm64Http).arch, describeClient6(arm64Http).http], [19, true]);
});

Deno.test("describeClient6 feeds the IPv4 boot policy table unchanged", () => {
  const opts: BootPolicyOptions = {
    useIpxe: true,
    useHttp: true,
    httpPort: 80,
    fileServer: "[2001:db8:77::1]",
    netbootFile: "boot.ipxe",
  };
  const decide = (name: string, sourceAddress?: string) => {
    const client: ClientInfo = describeClient6(msg(name), { sourceAddress });
    const d = bootFileFor(client, opts);
    return [d.file, d.vendorClass, d.label];
  };
  deepStrictEqual(decide("ovmf-pxe6-solicit.bin"), ["ipxe.efi", "PXEClient", "UEFI x64"]);
  deepStrictEqual(decide("ovmf-http6-solicit.bin"), [
    "http://[2001:db8:77::1]/ipxe.efi",
    "HTTPClient",
    "UEFI HTTP x64",
  ]);
  deepStrictEqual(decide("ipxe-efi-solicit6.bin", LINK_LOCAL), [
    "http://[2001:db8:77::1]/boot.ipxe",
    "PXEClient",
    "iPXE UEFI x64",
  ]);
});
