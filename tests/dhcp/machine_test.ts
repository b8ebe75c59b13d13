/**
 * Per-machine boot in DHCP: the decision table (`applyMachineDecision`), and the responder with a real
 * MachineBoot (profiles on disk) and a real boot API server: iPXE gets its per-machine script, a first
 * stage gets a profile's `bootfile`, "not ours" gets no boot file (full) or no answer (proxy), and a
 * slow API delays only its own machine.
 */
import { deepStrictEqual, equal, ok } from "node:assert/strict";
import { applyMachineDecision } from "../../src/dhcp/machine.ts";
import { getString, Opt } from "../../src/dhcp/options.ts";
import { decodeDhcp } from "../../src/dhcp/packet.ts";
import { bootFileFor } from "../../src/dhcp/policy.ts";
import { DhcpResponder } from "../../src/dhcp/responder.ts";
import type { Profile } from "../../src/machines/model.ts";
import { MachineBoot } from "../../src/machines/runtime.ts";
import { startFakeBootApi } from "../helpers/boot_api_server.ts";
import { fixture, IPXE_HTTP, PLAIN, refConfig } from "./helpers.ts";

const MAC = "52:54:00:77:00:10"; // the MAC of the captured fixtures
const SERVING = { useHttp: true, fileServer: "192.168.2.2", httpPort: 8080 };
const kernel: Profile = {
  name: "debian",
  boot: { kind: "kernel", kernel: "d/vmlinuz", initrd: [], cmdline: "" },
};

Deno.test("dhcp machine decision: the boot file per client kind and decision", () => {
  const ipxe = { arch: 7, vendorClass: "PXEClient:Arch:00007:UNDI:003010", ipxe: true, mac: MAC };
  const rom = { arch: 7, vendorClass: "PXEClient:Arch:00007:UNDI:003000", ipxe: false, mac: MAC };
  const http = { arch: 16, vendorClass: "HTTPClient:Arch:00016:UNDI:003000", ipxe: false, mac: MAC };
  const os = { ipxe: false, mac: MAC };
  const file = (client: typeof ipxe | typeof os, machine: Parameters<typeof applyMachineDecision>[1]) =>
    applyMachineDecision(bootFileFor(client, IPXE_HTTP), machine, client, SERVING).file;
  const profile = (p: Partial<Profile> = {}) => ({
    kind: "profile" as const,
    via: "group" as const,
    profile: { ...kernel, ...p },
  });
  const rows: [string, string | undefined, string | undefined][] = [
    ["iPXE, profile", file(ipxe, profile()), "http://192.168.2.2:8080/machine/52-54-00-77-00-10.ipxe"],
    [
      "iPXE, menu profile",
      file(ipxe, profile({ boot: { kind: "menu" } })),
      "http://192.168.2.2:8080/boot.http.ipxe",
    ],
    ["iPXE, default", file(ipxe, { kind: "default" }), "http://192.168.2.2:8080/boot.http.ipxe"],
    [
      "iPXE, bootfile script",
      file(ipxe, profile({ bootfile: "lab.ipxe" })),
      "http://192.168.2.2:8080/lab.ipxe",
    ],
    [
      "iPXE, bootfile binary (would loop)",
      file(ipxe, profile({ bootfile: "snponly.efi" })),
      "http://192.168.2.2:8080/machine/52-54-00-77-00-10.ipxe",
    ],
    ["ROM, profile", file(rom, profile()), "ipxe.efi"],
    ["ROM, bootfile", file(rom, profile({ bootfile: "snponly.efi" })), "snponly.efi"],
    [
      "HTTP boot, bootfile",
      file(http, profile({ bootfile: "snponly.efi" })),
      "http://192.168.2.2:8080/snponly.efi",
    ],
    ["ROM, not ours", file(rom, { kind: "not-ours", reason: "HTTP 404" }), undefined],
    ["iPXE, not ours", file(ipxe, { kind: "not-ours", reason: "HTTP 404" }), undefined],
    ["not booting, profile", file(os, profile()), undefined],
  ];
  // BIOS iPXE ROM without --ipxe: the policy sends it to PXELINUX, which boots kernel and local profiles
  // itself (pxelinux.cfg/01-MAC); an ISO or an iPXE script needs iPXE
  const biosRom = { arch: 0, vendorClass: "PXEClient:Arch:00000:UNDI:002001", ipxe: true, mac: MAC };
  const plain = (machine: Parameters<typeof applyMachineDecision>[1]) =>
    applyMachineDecision(bootFileFor(biosRom, PLAIN), machine, biosRom, SERVING).file;
  rows.push(
    ["BIOS iPXE ROM, --ipxe off, kernel profile", plain(profile()), "pxelinux.0"],
    ["BIOS iPXE ROM, --ipxe off, local profile", plain(profile({ boot: { kind: "local" } })), "pxelinux.0"],
    [
      "BIOS iPXE ROM, --ipxe off, ISO profile",
      plain(profile({ boot: { kind: "iso", iso: "x.iso" } })),
      "http://192.168.2.2:8080/machine/52-54-00-77-00-10.ipxe",
    ],
  );
  for (const [what, got, want] of rows) equal(got, want, what);
  // the ROM's iPXE binary is unchanged by a profile: the profile is applied when iPXE asks again
  equal(bootFileFor(rom, PLAIN).file, "ipxe.efi");
});

async function machinesDir(groups: Record<string, unknown>): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix: "pypxe-dhcp-machines-" });
  await Deno.mkdir(`${dir}/profiles`);
  await Deno.mkdir(`${dir}/groups`);
  await Deno.writeTextFile(`${dir}/profiles/debian.json`, JSON.stringify({ kernel: "d/vmlinuz" }));
  await Deno.writeTextFile(
    `${dir}/profiles/fw.json`,
    JSON.stringify({ local: true, bootfile: "snponly.efi" }),
  );
  for (const [name, g] of Object.entries(groups)) {
    await Deno.writeTextFile(`${dir}/groups/${name}.json`, JSON.stringify(g));
  }
  return dir;
}

const bootfileOf = (bytes: Uint8Array) => getString(decodeDhcp(bytes), Opt.BOOTFILE);

Deno.test("dhcp machine: the responder answers from the machine's profile and records it", async () => {
  const dir = await machinesDir({ lab: { profile: "fw", selector: { mac: MAC.toUpperCase() } } });
  const machines = await MachineBoot.open({ dir, bootApi: "", bootApiTimeoutMs: 500 });
  try {
    const r = new DhcpResponder({ config: refConfig({ USE_IPXE: true, USE_HTTP: true }), machines });
    await r.leases.load();
    equal(r.prepare(fixture("ovmf-pxe-discover.bin")), null, "no boot API: nothing to wait for");
    const [offer] = r.handle(fixture("ovmf-pxe-discover.bin"), { hostname: "0.0.0.0", port: 68, on: "dhcp" });
    equal(bootfileOf(offer.bytes), "snponly.efi", "the profile's bootfile");
    const [ipxe] = r.handle(fixture("ipxe-efi-snp-discover.bin"), {
      hostname: "0.0.0.0",
      port: 68,
      on: "dhcp",
    });
    ok(bootfileOf(ipxe.bytes)?.endsWith("/machine/52-54-00-77-00-10.ipxe"), bootfileOf(ipxe.bytes));
    const seen = machines.get(MAC)!;
    equal(seen.arch, "efi64");
    equal(seen.profile, "fw");
  } finally {
    await machines.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("dhcp machine: boot API answers, not ours (full: no boot file; proxy: silence), slow API", async () => {
  const api = await startFakeBootApi({
    answers: { [MAC]: { json: { kernel: "http://10.0.0.1/vmlinuz" } } },
  });
  const machines = await MachineBoot.open({ dir: "", bootApi: api.url, bootApiTimeoutMs: 300 });
  const from = { hostname: "0.0.0.0", port: 68, on: "dhcp" } as const;
  try {
    const full = new DhcpResponder({ config: refConfig({ USE_IPXE: true, USE_HTTP: true }), machines });
    await full.leases.load();
    const wait = full.prepare(fixture("ipxe-bios-discover.bin"));
    ok(wait !== null, "an uncached MAC waits for the API");
    await wait;
    equal(full.prepare(fixture("ipxe-bios-discover.bin")), null, "then it is cached");
    const [offer] = full.handle(fixture("ipxe-bios-discover.bin"), from);
    ok(bootfileOf(offer.bytes)?.endsWith("/machine/52-54-00-77-00-10.ipxe"), bootfileOf(offer.bytes));
    equal(api.count(MAC), 1);

    // another MAC the API does not know: full mode gives an address without a boot file
    const other = fixture("ipxe-bios-discover.bin").slice();
    other[28 + 5] = 0x99; // chaddr's last byte
    await full.prepare(other);
    const [bare] = full.handle(other, from);
    const pkt = decodeDhcp(bare.bytes);
    ok(pkt.yiaddr !== "0.0.0.0", "an address");
    equal(getString(pkt, Opt.BOOTFILE), undefined, "no boot file");
    deepStrictEqual(pkt.file, "", "no file field");

    const proxy = new DhcpResponder({
      config: refConfig({ DHCP_MODE_PROXY: true, USE_IPXE: true }),
      machines,
    });
    deepStrictEqual(proxy.handle(other, from), [], "proxy: no answer for a machine that is not ours");
    equal(proxy.handle(fixture("ipxe-bios-discover.bin"), from).length, 1, "proxy: ours is answered");

    // a slow answer (beyond the timeout) delays only its own machine, and then the groups decide
    const slow = fixture("ipxe-bios-discover.bin").slice();
    slow[28 + 5] = 0x42;
    api.answer("52:54:00:77:00:42", { json: { kernel: "http://10.0.0.1/k" }, delayMs: 2000 });
    const t0 = performance.now();
    await full.prepare(slow);
    const waited = performance.now() - t0;
    ok(waited >= 250 && waited < 1500, `settled at the timeout (${waited.toFixed(0)} ms)`);
    equal(full.handle(slow, from).length, 1, "answered with the fallback");
  } finally {
    await machines.close();
    await api.close();
  }
});
