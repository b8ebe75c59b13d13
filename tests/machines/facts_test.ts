/** Machine facts from real firmware requests (tests/fixtures/dhcp/, the AAVMF capture) and synthetic ones. */
import { deepStrictEqual, equal } from "node:assert/strict";
import { Opt, setOption } from "../../src/dhcp/options.ts";
import { createDhcpPacket, decodeDhcp } from "../../src/dhcp/packet.ts";
import { machineFacts, uuidOf } from "../../src/machines/facts.ts";
import type { MachineFacts } from "../../src/machines/model.ts";
import { fixturesDir } from "../helpers/fixtures.ts";

const fixture = (name: string) => decodeDhcp(Deno.readFileSync(`${fixturesDir()}dhcp/${name}`));
const captured = (name: string) =>
  decodeDhcp(Deno.readFileSync(new URL(`../dhcp/captured/${name}`, import.meta.url)));

/** The SMBIOS UUID QEMU was given (`-uuid`), as dmidecode shows it. */
const UUID = "77777777-7777-4777-8777-777777770010";
const MAC = "52:54:00:77:00:10";

const cases: [string, Omit<MachineFacts, "mac" | "uuid">][] = [
  ["ipxe-bios-discover.bin", {
    arch: "bios",
    client: "ipxe",
    vendorClass: "PXEClient:Arch:00000:UNDI:002001",
  }],
  ["ipxe-bios-request.bin", {
    arch: "bios",
    client: "ipxe",
    ip: "192.168.77.115",
    vendorClass: "PXEClient:Arch:00000:UNDI:002001",
  }],
  ["ipxe-bios-proxy-request-4011.bin", {
    arch: "bios",
    client: "ipxe",
    ip: "192.168.77.115",
    vendorClass: "PXEClient",
  }],
  ["ipxe-efi-rom-discover.bin", {
    arch: "efi64",
    client: "ipxe",
    vendorClass: "PXEClient:Arch:00007:UNDI:003010",
  }],
  ["ipxe-efi-snp-discover.bin", {
    arch: "efi64",
    client: "ipxe",
    vendorClass: "PXEClient:Arch:00007:UNDI:003010",
  }],
  ["ovmf-pxe-discover.bin", {
    arch: "efi64",
    client: "pxe",
    vendorClass: "PXEClient:Arch:00007:UNDI:003000",
  }],
  ["ovmf-pxe-request.bin", {
    arch: "efi64",
    client: "pxe",
    ip: "192.168.77.115",
    vendorClass: "PXEClient:Arch:00007:UNDI:003000",
  }],
  ["ovmf-pxe-proxy-request-4011.bin", {
    arch: "efi64",
    client: "pxe",
    ip: "192.168.77.115",
    vendorClass: "PXEClient:Arch:00007:UNDI:003000",
  }],
  ["ovmf-http-discover.bin", {
    arch: "efi-http",
    client: "http",
    vendorClass: "HTTPClient:Arch:00016:UNDI:003000",
  }],
  ["ovmf-http-request.bin", {
    arch: "efi-http",
    client: "http",
    ip: "192.168.77.115",
    vendorClass: "HTTPClient:Arch:00016:UNDI:003000",
  }],
];

for (const [file, expected] of cases) {
  Deno.test(`facts: ${file}`, () => {
    deepStrictEqual(machineFacts(fixture(file)), { mac: MAC, uuid: UUID, ...expected });
  });
}

Deno.test("facts: the Raspberry Pi boot ROM (arch 0, Pi OUI) is rpi", () => {
  deepStrictEqual(machineFacts(fixture("rpi-synthetic-discover.bin")), {
    mac: "b8:27:eb:12:34:56",
    arch: "rpi",
    client: "pxe",
    uuid: "44444444-4444-4444-4444-444444444444",
    vendorClass: "PXEClient:Arch:00000:UNDI:002001",
  });
});

Deno.test("facts: AAVMF arm64 (arch 11) is efi-arm64 over PXE", () => {
  const facts = machineFacts(captured("aavmf-arm64-discover.bin"));
  equal(facts.mac, "52:54:00:e2:a6:40");
  equal(facts.arch, "efi-arm64");
  equal(facts.client, "pxe");
  equal(machineFacts(captured("aavmf-arm64-request.bin")).arch, "efi-arm64");
});

/** A synthetic request with option 93 `arch` and the given extras. */
function request(
  init: { arch?: number; vendorClass?: string; ipxe?: boolean; hostname?: string; mac?: string } = {},
) {
  const p = createDhcpPacket({ mac: init.mac ?? "02:00:00:00:00:01" });
  if (init.arch !== undefined) setOption(p, Opt.CLIENT_ARCH, [init.arch]);
  if (init.vendorClass !== undefined) setOption(p, Opt.VENDOR_CLASS, init.vendorClass);
  if (init.ipxe) p.options.set(Opt.USER_CLASS, new TextEncoder().encode("iPXE"));
  if (init.hostname !== undefined) setOption(p, Opt.HOSTNAME, init.hostname);
  return p;
}

Deno.test("facts: the arch table (option 93 and option 60's Arch field)", () => {
  const table: [number, string | undefined, string | undefined][] = [
    [0, "bios", "pxe"],
    [6, "efi32", "pxe"],
    [7, "efi64", "pxe"],
    [9, "efi64", "pxe"],
    [10, undefined, "pxe"], // arm32: no selector name
    [11, "efi-arm64", "pxe"],
    [15, "efi32", "http"],
    [16, "efi-http", "http"],
    [18, undefined, "http"],
    [19, "efi-arm64", "http"], // arm64 HTTP boot: the arch picks the kernel, the client says HTTP
    [2, undefined, "pxe"], // Itanium
  ];
  for (const [code, arch, client] of table) {
    const facts = machineFacts(request({ arch: code }));
    deepStrictEqual([code, facts.arch, facts.client], [code, arch, client]);
    const fromVendorClass = machineFacts(
      request({ vendorClass: `PXEClient:Arch:${String(code).padStart(5, "0")}:UNDI:003000` }),
    );
    deepStrictEqual([code, fromVendorClass.arch], [code, arch]);
  }
});

Deno.test("facts: iPXE wins over HTTP; HTTPClient alone means http; a plain DHCP client has no arch/client", () => {
  equal(machineFacts(request({ arch: 16, ipxe: true })).client, "ipxe");
  equal(machineFacts(request({ vendorClass: "HTTPClient" })).client, "http");
  equal(machineFacts(request({ vendorClass: "HTTPClient" })).arch, "bios");
  const os = machineFacts(request({ vendorClass: "dhcpcd-9.4.1:Linux", hostname: "web1" }));
  deepStrictEqual(os, { mac: "02:00:00:00:00:01", hostname: "web1", vendorClass: "dhcpcd-9.4.1:Linux" });
  // an iPXE on a Pi's MAC is not the Pi boot ROM
  equal(machineFacts(request({ mac: "b8:27:eb:00:00:01", arch: 0, ipxe: true })).arch, "bios");
});

Deno.test("facts: hostname and vendor class lose control characters; ip from the caller wins", () => {
  const p = request({ arch: 7, hostname: " web1\n", vendorClass: "PXEClient\u0000" });
  p.ciaddr = "10.0.0.9";
  const facts = machineFacts(p, { ip: "10.0.0.20" });
  equal(facts.hostname, "web1");
  equal(facts.vendorClass, "PXEClient");
  equal(facts.ip, "10.0.0.20");
  equal(machineFacts(p).ip, "10.0.0.9");
});

Deno.test("facts: option 97 of another shape is left out, never thrown", () => {
  equal(uuidOf(undefined), undefined);
  equal(uuidOf(new Uint8Array(16)), undefined);
  equal(uuidOf(Uint8Array.of(1, ...new Uint8Array(16))), undefined);
  equal(uuidOf(new Uint8Array(17)), undefined, "all zeros: no system UUID (QEMU without -uuid)");
  equal(uuidOf(Uint8Array.of(0, ...new Uint8Array(16).fill(0xff))), undefined, "all ones");
  equal(
    uuidOf(
      Uint8Array.of(
        0,
        0x33,
        0x22,
        0x11,
        0x00,
        0x55,
        0x44,
        0x77,
        0x66,
        0x88,
        0x99,
        0xaa,
        0xbb,
        0xcc,
        0xdd,
        0xee,
        0xff,
      ),
    ),
    "00112233-4455-6677-8899-aabbccddeeff",
  );
  const p = request({ arch: 7 });
  p.options.set(Opt.CLIENT_UUID, Uint8Array.of(0, 1, 2));
  p.options.set(Opt.REQUESTED_IP, Uint8Array.of(1, 2)); // malformed option 50
  const facts = machineFacts(p);
  equal(facts.uuid, undefined);
  equal(facts.ip, undefined);
});
