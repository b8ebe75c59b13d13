/**
 * Per-machine boot over DHCPv6: the responder with a real MachineBoot (profiles and groups on disk)
 * answers OVMF's PXEv6 Solicit with the profile's boot file and iPXE with its per-machine script URL on
 * the bracketed IPv6 server, and records the machine in the inventory, as for IPv4.
 */
import { deepStrictEqual, equal, ok } from "node:assert/strict";
import { MachineBoot } from "../../src/machines/runtime.ts";
import { bootFileUrl, CLIENT, only, responder } from "./responder_helpers.ts";
import { fixture6 } from "./helpers.ts";

const MAC = "52:54:00:77:00:66"; // the captures' client

async function machinesDir(): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix: "pypxe-dhcp6-machines-" });
  await Deno.mkdir(`${dir}/profiles`);
  await Deno.mkdir(`${dir}/groups`);
  await Deno.writeTextFile(
    `${dir}/profiles/fw.json`,
    JSON.stringify({ kernel: "d/vmlinuz", bootfile: "snponly.efi" }),
  );
  await Deno.writeTextFile(
    `${dir}/groups/lab.json`,
    JSON.stringify({ profile: "fw", selector: { mac: MAC.toUpperCase() } }),
  );
  return dir;
}

Deno.test("dhcp6 machine: a profile's boot file for OVMF, the per-machine script for iPXE, inventory", async () => {
  const dir = await machinesDir();
  const machines = await MachineBoot.open({ dir, bootApi: "", bootApiTimeoutMs: 500 });
  try {
    const r = responder({ machines });
    const adv = only(r.handle(fixture6("ovmf-pxe6-solicit.bin"), CLIENT));
    equal(bootFileUrl(adv), "tftp://[2001:db8:77::1]/snponly.efi", "the profile's bootfile over TFTP");
    const ipxe = only(r.handle(fixture6("ipxe-efi-solicit6.bin"), CLIENT));
    equal(bootFileUrl(ipxe), "http://[2001:db8:77::1]/machine/52-54-00-77-00-66.ipxe");
    const seen = machines.get(MAC);
    ok(seen, "the machine is in the inventory");
    deepStrictEqual([seen.arch, seen.profile], ["efi64", "fw"]);
    // without machines: the policy's answer
    const plain = only(responder().handle(fixture6("ovmf-pxe6-solicit.bin"), CLIENT));
    equal(bootFileUrl(plain), "tftp://[2001:db8:77::1]/ipxe.efi");
  } finally {
    await machines.close();
    await Deno.remove(dir, { recursive: true });
  }
});
