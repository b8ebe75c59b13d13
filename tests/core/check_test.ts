import assert from "node:assert/strict";
import { join } from "node:path";
import { EMBEDDED_ROOT } from "../../src/netboot/fs.ts";
import { runPypxeOnce } from "../helpers/servers.ts";

async function exists(path: string): Promise<boolean> {
  return await Deno.stat(path).then(() => true, () => false);
}

function freeUdpPort(): number {
  const probe = Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port: 0 });
  const port = (probe.addr as Deno.NetAddr).port;
  probe.close();
  return port;
}

Deno.test("--check: the reply per client type, ports free, exit 0; problems listed with exit 1", async () => {
  const dir = await Deno.makeTempDir({ prefix: "pypxe-check-" });
  try {
    for (const f of ["pxelinux.0", "ipxe.efi", "undionly.kpxe"]) await Deno.writeTextFile(join(dir, f), f);
    const port = freeUdpPort();
    const common = ["--netboot-dir", dir, "--tftp-server-ip", "127.0.0.1", "--tftp-port", String(port)];
    const ok = await runPypxeOnce(["--check", ...common]);
    assert.equal(ok.code, 0, ok.stdout + ok.stderr);
    assert.match(ok.stdout, /BIOS +pxelinux\.0 +\S+ +60=PXEClient +ok \(overlay, 10 bytes\)/);
    assert.match(ok.stdout, /UEFI x64 +ipxe\.efi .* ok \(overlay, 8 bytes\)/);
    assert.match(ok.stdout, /iPXE UEFI +tftp:\/\/\S+\/boot\.ipxe .* URL/);
    assert.match(ok.stdout, /Raspberry Pi +bootcode\.bin .*43='Raspberry Pi Boot' 66 +MISSING/);
    // grubaa64.efi is in the embedded tree only after `deno task netboot --arm64`
    if (await exists(join(EMBEDDED_ROOT, "grubaa64.efi"))) {
      assert.match(ok.stdout, /ARM64 UEFI +grubaa64\.efi .* ok \(embedded/);
    } else {
      assert.match(ok.stdout, /note: ARM64 UEFI: boot file grubaa64\.efi is not in the netboot tree/);
    }
    assert.match(ok.stdout, new RegExp(`tftp +UDP 127\\.0\\.0\\.1:${port} +free`));
    assert.match(ok.stdout, /^check: ok$/m);

    const ipxe = await runPypxeOnce(["--check", "--ipxe", ...common]);
    assert.match(ipxe.stdout, /BIOS +undionly\.kpxe .* ok \(overlay/);

    const blocker = Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port });
    try {
      const bad = await runPypxeOnce(["--check", ...common, "--netboot-file-efi64", "snponly-missing.efi"]);
      assert.equal(bad.code, 1, bad.stdout);
      assert.match(bad.stdout, /tftp +UDP 127\.0\.0\.1:\d+ +NOT FREE/);
      assert.match(bad.stdout, /check: 2 problem\(s\):/);
      assert.match(bad.stdout, /- UEFI x64: boot file snponly-missing\.efi is not in the netboot tree/);
      assert.match(bad.stdout, new RegExp(`- tftp: UDP 127\\.0\\.0\\.1:${port} is in use`));
    } finally {
      blocker.close();
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
