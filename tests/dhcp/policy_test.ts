import { FS, HTTP, IPXE, IPXE_HTTP, PLAIN } from "./helpers.ts";
import { deepStrictEqual, equal, ok } from "node:assert/strict";
import { Opt } from "../../src/dhcp/options.ts";
import { createDhcpPacket } from "../../src/dhcp/packet.ts";
import {
  bootFileFor,
  type BootPolicyOptions,
  bootUrl,
  type ClientInfo,
  describeClient,
} from "../../src/dhcp/policy.ts";

const pxe = (arch: number): ClientInfo => ({
  arch,
  vendorClass: `PXEClient:Arch:${String(arch).padStart(5, "0")}:UNDI:002001`,
  ipxe: false,
});
const ipxe = (arch: number): ClientInfo => ({ ...pxe(arch), ipxe: true });
const httpClient = (arch: number): ClientInfo => ({
  arch,
  vendorClass: `HTTPClient:Arch:${String(arch).padStart(5, "0")}:UNDI:003000`,
  ipxe: false,
});

// [what, client, options, expected file (undefined: none), expected vendor class, label, warning?]
type Row = [string, ClientInfo, BootPolicyOptions, string | undefined, string | undefined, string, boolean?];
const TABLE: Row[] = [
  ["BIOS PXE, plain", pxe(0), PLAIN, "pxelinux.0", "PXEClient", "BIOS"],
  ["BIOS PXE, --ipxe", pxe(0), IPXE, "undionly.kpxe", "PXEClient", "BIOS"],
  ["iPXE BIOS, plain (PyPXE: NETBOOT_FILE)", ipxe(0), PLAIN, "pxelinux.0", "PXEClient", "iPXE BIOS"],
  ["iPXE BIOS, --ipxe", ipxe(0), IPXE, `tftp://${FS}/boot.ipxe`, "PXEClient", "iPXE BIOS"],
  [
    "iPXE BIOS, --ipxe --http",
    ipxe(0),
    IPXE_HTTP,
    `http://${FS}:8080/boot.http.ipxe`,
    "PXEClient",
    "iPXE BIOS",
  ],
  ["UEFI x64 (7), plain", pxe(7), PLAIN, "ipxe.efi", "PXEClient", "UEFI x64"],
  ["UEFI x64 (9), plain", pxe(9), PLAIN, "ipxe.efi", "PXEClient", "UEFI x64"],
  ["UEFI x64, --ipxe", pxe(7), IPXE, "ipxe.efi", "PXEClient", "UEFI x64"],
  ["iPXE UEFI x64, plain", ipxe(7), PLAIN, `tftp://${FS}/boot.ipxe`, "PXEClient", "iPXE UEFI x64"],
  [
    "iPXE UEFI x64, --ipxe --http",
    ipxe(9),
    IPXE_HTTP,
    `http://${FS}:8080/boot.http.ipxe`,
    "PXEClient",
    "iPXE UEFI x64",
  ],
  ["UEFI ia32", pxe(6), PLAIN, "ipxe-ia32.efi", "PXEClient", "UEFI ia32"],
  ["ARM32 UEFI", pxe(10), PLAIN, "ipxe-arm32.efi", "PXEClient", "UEFI arm32"],
  ["ARM64 UEFI", pxe(11), PLAIN, "grubaa64.efi", "PXEClient", "UEFI arm64"],
  [
    "ARM64 UEFI, configured file",
    pxe(11),
    { ...PLAIN, bootFiles: { arm64: "grubaa64.efi" } },
    "grubaa64.efi",
    "PXEClient",
    "UEFI arm64",
  ],
  [
    "UEFI x64, snponly configured",
    pxe(7),
    { ...IPXE, bootFiles: { efi64: "snponly.efi" } },
    "snponly.efi",
    "PXEClient",
    "UEFI x64",
  ],
  [
    "BIOS, configured file",
    pxe(0),
    { ...IPXE, bootFiles: { bios: "ipxe.pxe" } },
    "ipxe.pxe",
    "PXEClient",
    "BIOS",
  ],
  ["UEFI HTTP x64, --http", httpClient(16), HTTP, `http://${FS}/ipxe.efi`, "HTTPClient", "UEFI HTTP x64"],
  [
    "UEFI HTTP x86, --http port",
    httpClient(15),
    { ...HTTP, httpPort: 8080 },
    `http://${FS}:8080/ipxe-ia32.efi`,
    "HTTPClient",
    "UEFI HTTP ia32",
  ],
  ["UEFI HTTP arm32", httpClient(18), HTTP, `http://${FS}/ipxe-arm32.efi`, "HTTPClient", "UEFI HTTP arm32"],
  ["UEFI HTTP arm64", httpClient(19), HTTP, `http://${FS}/grubaa64.efi`, "HTTPClient", "UEFI HTTP arm64"],
  [
    "UEFI HTTP without --http: no file, warning",
    httpClient(16),
    PLAIN,
    undefined,
    "HTTPClient",
    "UEFI HTTP x64",
    true,
  ],
  [
    "HTTPClient vendor class on arch 7",
    { ...httpClient(7) },
    HTTP,
    `http://${FS}/ipxe.efi`,
    "HTTPClient",
    "UEFI HTTP x64",
  ],
  ["unknown arch 27 (RISC-V 64) -> BIOS + warning", pxe(27), PLAIN, "pxelinux.0", "PXEClient", "BIOS", true],
  ["unknown arch 999 -> BIOS + warning", pxe(999), IPXE, "undionly.kpxe", "PXEClient", "BIOS", true],
  [
    "no option 93, PXEClient only",
    { vendorClass: "PXEClient", ipxe: false },
    PLAIN,
    "pxelinux.0",
    "PXEClient",
    "BIOS",
  ],
  ["not a boot client", { ipxe: false }, IPXE, undefined, undefined, "BIOS"],
  ["static rom (BIOS)", pxe(0), { ...IPXE, staticRom: "custom.kpxe" }, "custom.kpxe", "PXEClient", "BIOS"],
  [
    "static rom binary, iPXE client: second stage",
    ipxe(0),
    { ...IPXE, staticRom: "custom.kpxe" },
    `tftp://${FS}/boot.ipxe`,
    "PXEClient",
    "iPXE BIOS",
  ],
  [
    "static rom script, iPXE client",
    ipxe(7),
    { ...IPXE, staticRom: "menu.ipxe" },
    "menu.ipxe",
    "PXEClient",
    "iPXE UEFI x64",
  ],
  [
    "user NETBOOT_FILE URL for iPXE",
    ipxe(0),
    { ...IPXE, netbootFile: "http://10.0.0.9/x.ipxe" },
    "http://10.0.0.9/x.ipxe",
    "PXEClient",
    "iPXE BIOS",
  ],
  [
    "Raspberry Pi boot ROM",
    { ...pxe(0), mac: "b8:27:eb:12:34:56" },
    PLAIN,
    "bootcode.bin",
    "PXEClient",
    "Raspberry Pi",
  ],
];

for (const [what, client, opts, file, vc, label, warns] of TABLE) {
  Deno.test(`policy: ${what}`, () => {
    const d = bootFileFor(client, opts);
    equal(d.file, file);
    equal(d.vendorClass, vc);
    equal(d.label, label);
    equal(d.warning !== undefined, warns === true, `warning: ${d.warning}`);
  });
}

Deno.test("policy: every IANA arch 0..41 and a few odd ones give a decision and never throw", () => {
  for (let arch = 0; arch < 70; arch++) {
    for (const o of [PLAIN, IPXE, IPXE_HTTP, HTTP]) {
      for (const c of [pxe(arch), ipxe(arch), httpClient(arch)]) {
        const d = bootFileFor(c, o);
        ok(d.booting);
        ok(d.file === undefined || d.file.length > 0);
      }
    }
  }
  for (const arch of [65535, -1, NaN]) ok(bootFileFor(pxe(arch), PLAIN).file);
});

Deno.test("policy: describeClient reads 93, 60 (and its Arch field when 93 is absent), 77/175", () => {
  const p = createDhcpPacket({ mac: "52:54:00:77:00:10" });
  p.options.set(Opt.VENDOR_CLASS, new TextEncoder().encode("PXEClient:Arch:00007:UNDI:003000"));
  deepStrictEqual(describeClient(p), {
    arch: 7,
    vendorClass: "PXEClient:Arch:00007:UNDI:003000",
    ipxe: false,
    mac: "52:54:00:77:00:10",
  });
  p.options.set(Opt.CLIENT_ARCH, Uint8Array.of(0, 11));
  p.options.set(Opt.USER_CLASS, new TextEncoder().encode("iPXE"));
  const c = describeClient(p);
  equal(c.arch, 11);
  equal(c.ipxe, true);
});

Deno.test("policy: bootUrl keeps URLs, strips leading slashes, omits :80", () => {
  equal(bootUrl("/boot.ipxe", { http: false, fileServer: FS, httpPort: 80 }), `tftp://${FS}/boot.ipxe`);
  equal(bootUrl("boot.ipxe", { http: true, fileServer: FS, httpPort: 80 }), `http://${FS}/boot.ipxe`);
  equal(bootUrl("a/b.ipxe", { http: true, fileServer: FS, httpPort: 81 }), `http://${FS}:81/a/b.ipxe`);
  equal(bootUrl("tftp://x/y", { http: true, fileServer: FS, httpPort: 81 }), "tftp://x/y");
});
