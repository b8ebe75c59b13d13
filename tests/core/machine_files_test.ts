/**
 * Per-machine files of the netboot layer (`netboot/machine.ts` through `BootFiles`), with a real
 * MachineBoot on a temp dir: each profile kind for iPXE, GRUB and PXELINUX (checked by iPXE's grammar
 * and GRUB's own parser), the overlay wins, the menu profile serves the menu, and a one-shot counts once
 * the per-machine file, kernel and initrd were all sent to that client (events as the servers emit them).
 */
import assert from "node:assert/strict";
import { BootEvents } from "../../src/events.ts";
import { BootFiles } from "../../src/netboot/files.ts";
import { NetbootFs } from "../../src/netboot/fs.ts";
import { machineFileName } from "../../src/netboot/machine.ts";
import { MachineBoot } from "../../src/machines/runtime.ts";
import { checkIpxeScript } from "../http/ipxe_syntax.ts";
import { assertGrubSyntax } from "../helpers/grub_syntax.ts";
import { writeTree } from "../helpers/servers.ts";

const MAC = "52:54:00:12:34:56";
const PROFILES: Record<string, unknown> = {
  debian: {
    kernel: "d/vmlinuz",
    initrd: ["d/initrd.gz"],
    cmdline: "console=ttyS0 auto=true",
    message: "Reinstalling",
  },
  rescue: { iso: "images/rescue.iso" },
  script: { ipxe: "#!ipxe\necho custom\nshell" },
  chain: { chain: "http://10.0.0.9/boot.ipxe" },
  disk: { local: true },
  menu: { menu: true },
};

async function setup(group: string, tree: Record<string, string> = {}) {
  const root = await Deno.makeTempDir({ prefix: "pypxe-machine-files-" });
  const files: Record<string, string> = {
    "tree/d/vmlinuz": "K".repeat(100),
    "tree/d/initrd.gz": "I".repeat(50),
    "tree/images/rescue.iso": "ISO",
    "tree/memdisk": "M",
    "tree/boot.ipxe.keep": "",
    [`m/groups/g.json`]: JSON.stringify({ profile: group }),
  };
  for (const [name, p] of Object.entries(PROFILES)) files[`m/profiles/${name}.json`] = JSON.stringify(p);
  for (const [name, text] of Object.entries(tree)) files[`tree/${name}`] = text;
  await writeTree(root, files);
  const machines = await MachineBoot.open({ dir: `${root}/m`, bootApi: "", bootApiTimeoutMs: 500 });
  await Deno.mkdir(`${root}/embedded`);
  const netboot = await NetbootFs.open({ overlay: `${root}/tree`, embedded: `${root}/embedded` });
  const boot = new BootFiles({
    netboot,
    httpPort: 8080,
    machines,
    interfaces: () => [{ name: "lo", address: "10.0.0.2", netmask: "255.255.255.0" }],
  });
  const text = async (name: string) =>
    new TextDecoder().decode((await boot.bytes(await boot.resolve(name, "10.0.0.50")))!);
  return {
    root,
    machines,
    boot,
    text,
    async close() {
      await machines.close();
      await Deno.remove(root, { recursive: true });
    },
  };
}

Deno.test("machine files: names", () => {
  assert.deepEqual(machineFileName("/machine/52-54-00-12-34-56.ipxe"), { loader: "ipxe", mac: MAC });
  assert.deepEqual(machineFileName("grub/machine/52:54:00:12:34:56.cfg"), { loader: "grub", mac: MAC });
  assert.deepEqual(machineFileName("pxelinux.cfg/01-52-54-00-12-34-56"), { loader: "pxelinux", mac: MAC });
  assert.equal(machineFileName("pxelinux.cfg/default"), null);
  assert.equal(machineFileName("machine/../boot.ipxe"), null);
});

Deno.test("machine files: every profile kind for iPXE, GRUB and PXELINUX", async () => {
  for (const kind of Object.keys(PROFILES)) {
    const s = await setup(kind);
    try {
      const ipxe = await s.text(`machine/52-54-00-12-34-56.ipxe`);
      assert.deepEqual(checkIpxeScript(ipxe), [], `${kind}:\n${ipxe}`);
      const grub = await s.text(`grub/machine/${MAC}.cfg`);
      await assertGrubSyntax(grub, `${kind}'s GRUB file`);
      const pxelinux = await s.text(`pxelinux.cfg/01-52-54-00-12-34-56`).catch(() => null);
      switch (kind) {
        case "debian":
          assert.match(
            ipxe,
            /^kernel http:\/\/10\.0\.0\.2:8080\/d\/vmlinuz|kernel \$\{pypxe-files\}\/d\/vmlinuz initrd=initrd\.gz console=ttyS0 auto=true \|\| goto failed$/m,
          );
          assert.match(ipxe, /^set pypxe-files http:\/\/10\.0\.0\.2:8080$/m);
          assert.match(ipxe, /^echo Reinstalling$/m);
          assert.match(
            grub,
            /^linux '\/d\/vmlinuz' console=ttyS0 auto=true\ninitrd '\/d\/initrd\.gz'\nboot$/m,
          );
          assert.match(
            pxelinux!,
            /KERNEL \/d\/vmlinuz\n {2}INITRD \/d\/initrd\.gz\n {2}APPEND console=ttyS0 auto=true/,
          );
          break;
        case "rescue":
          assert.match(
            ipxe,
            /^sanboot --no-describe --drive 0x80 http:\/\/10\.0\.0\.2:8080\/images\/rescue\.iso \|\| goto failed$/m,
          );
          assert.match(grub, /cannot be booted by GRUB; showing the menu/);
          assert.match(pxelinux!, /KERNEL \/memdisk\n {2}INITRD \/images\/rescue\.iso\n {2}APPEND iso raw/);
          break;
        case "script":
          assert.equal(ipxe, "#!ipxe\necho custom\nshell\n");
          assert.equal(pxelinux, null, "PXELINUX goes on to its default");
          break;
        case "chain":
          assert.match(ipxe, /^chain http:\/\/10\.0\.0\.9\/boot\.ipxe \|\| goto failed$/m);
          break;
        case "disk":
          assert.match(ipxe, /^sanboot --no-describe --drive 0x80 \|\| goto failed$/m);
          assert.match(grub, /\nexit\n$/);
          assert.match(pxelinux!, /LOCALBOOT 0/);
          break;
        case "menu":
          assert.equal(ipxe, await s.text("boot.http.ipxe"), "the generated menu");
          assert.doesNotMatch(grub, /linux|exit/);
          assert.equal(pxelinux, null);
          break;
      }
    } finally {
      await s.close();
    }
  }
});

Deno.test("machine files: the overlay wins; grub.cfg sources the machine's file", async () => {
  const s = await setup("debian", { "pxelinux.cfg/01-52-54-00-12-34-56": "DEFAULT mine\n" });
  try {
    assert.equal(await s.text("pxelinux.cfg/01-52-54-00-12-34-56"), "DEFAULT mine\n");
    const grub = await s.text("grub/grub.cfg");
    assert.match(grub, /source "\$prefix\/machine\/\$net_default_mac\.cfg"/);
    await assertGrubSyntax(grub, "grub.cfg with the machine hook");
  } finally {
    await s.close();
  }
});

Deno.test("machine files: a one-shot counts once the script, kernel and initrd reached that client", async () => {
  const s = await setup("disk");
  const events = new BootEvents();
  events.subscribe((e) => s.machines.onEvent(e));
  try {
    s.machines.setNext(MAC, "debian");
    await s.text("machine/52-54-00-12-34-56.ipxe");
    let id = 0;
    const sent = (file: string, client = "10.0.0.50:1234", outcome = "ok") =>
      events.emit({
        kind: "transfer-end",
        service: "http",
        id: ++id,
        client,
        file,
        bytes: 1,
        ms: 1,
        outcome,
      });
    sent("machine/52-54-00-12-34-56.ipxe");
    sent("d/vmlinuz");
    sent("d/initrd.gz", "10.0.0.51:1234"); // another client: does not count
    sent("d/initrd.gz", "10.0.0.50:1234", "timeout"); // failed: does not count
    assert.equal(s.machines.store.pendingNext(MAC), "debian");
    assert.equal(s.machines.get(MAC)?.lastBoot?.stage, "kernel");
    sent("d/initrd.gz");
    assert.equal(s.machines.store.pendingNext(MAC), null, "used up");
    assert.equal(s.machines.get(MAC)?.lastBoot?.stage, "done");
    assert.match(
      await s.text("machine/52-54-00-12-34-56.ipxe"),
      /profile disk \(group g\)/,
      "back to the group",
    );
  } finally {
    await s.close();
  }
});
