/**
 * Every generated file reads the same over TFTP and HTTP: one `BootFiles` behind both servers, fetched
 * with curl over both protocols, byte for byte.
 */
import { equal, match, ok } from "node:assert/strict";
import { BootEvents } from "../../src/events.ts";
import { HttpServer } from "../../src/http/server.ts";
import { BootFiles, GENERATED_FILES } from "../../src/netboot/files.ts";
import { NetbootFs } from "../../src/netboot/fs.ts";
import { TftpServer } from "../../src/tftp/server.ts";
import { run } from "../helpers/run.ts";

const MENU = JSON.stringify({
  title: "Lab",
  timeout: 5,
  entries: [{
    id: "deb",
    label: "Debian",
    kernel: "debian/linux",
    initrd: ["debian/initrd.gz"],
    cmdline: "quiet",
  }],
});

async function curlBytes(url: string): Promise<Uint8Array> {
  const out = await run(["curl", "-sS", "--fail", "-m", "10", url]);
  if (!out.success) throw new Error(`curl ${url} failed (${out.code})`);
  return out.bytes;
}

async function withServers(
  files: Record<string, string>,
  fn: (tftp: number, http: number, served: BootFiles) => Promise<void>,
): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "pypxe-generated-" });
  const overlay = `${dir}/overlay`;
  const embedded = `${dir}/embedded`;
  for (
    const [root, tree] of [[overlay, files], [embedded, { "boot.ipxe": "#!ipxe\n# embedded\n" }]] as const
  ) {
    for (const [name, text] of Object.entries(tree)) {
      const path = `${root}/${name}`;
      await Deno.mkdir(path.slice(0, path.lastIndexOf("/")), { recursive: true });
      await Deno.writeTextFile(path, text);
    }
  }
  await Deno.mkdir(embedded, { recursive: true });
  const netboot = await NetbootFs.open({ overlay, embedded });
  const served = new BootFiles({ netboot, httpPort: null, revalidateMs: 0 });
  const events = new BootEvents();
  const http = new HttpServer({ host: "127.0.0.1", port: 0, netboot, files: served, events });
  const tftp = new TftpServer({ host: "127.0.0.1", port: 0, netboot, files: served, events });
  await http.start();
  await tftp.start();
  served.httpPort = http.port; // as the program does with --http
  try {
    await fn(tftp.port, http.port, served);
  } finally {
    await tftp.stop();
    await http.stop();
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("generated files: the same bytes over TFTP and HTTP, for every generated name", async () => {
  const tree = {
    "menu.json": MENU,
    "images/rescue.iso": "iso",
    "debian/linux": "k",
    "live/vmlinuz": "k", // a drop-in kernel folder
    "live/initrd.img": "i",
    "live/cmdline.txt": "boot=live\n",
    "rescue.ipxe": "#!ipxe\n", // a drop-in script
  };
  await withServers(tree, async (t, h) => {
    for (const name of GENERATED_FILES) {
      const overTftp = await curlBytes(`tftp://127.0.0.1:${t}/${name}`);
      const overHttp = await curlBytes(`http://127.0.0.1:${h}/${name}`);
      ok(overTftp.length > 100, name);
      equal(new TextDecoder().decode(overTftp), new TextDecoder().decode(overHttp), name);
    }
    // and they honour menu.json over TFTP too (it used to serve the embedded static boot.ipxe)
    const ipxe = new TextDecoder().decode(await curlBytes(`tftp://127.0.0.1:${t}/boot.ipxe`));
    match(ipxe, /item deb Debian/);
    match(
      ipxe,
      new RegExp(`sanboot --no-describe --drive 0x80 http://127\\.0\\.0\\.1:${h}/images/rescue\\.iso`),
    );
    match(ipxe, /item dropin-kernel0 live/);
    match(ipxe, /kernel \$\{pypxe-files\}\/live\/vmlinuz initrd=initrd\.img boot=live /);
    match(ipxe, /chain \$\{pypxe-files\}\/rescue\.ipxe /);
    const grub = new TextDecoder().decode(await curlBytes(`tftp://127.0.0.1:${t}/grub/grub.cfg`));
    match(grub, /menuentry 'Debian'/);
    match(grub, /menuentry 'live' --id 'dropin-kernel0'/);
  });
});

Deno.test("generated files: a user's file of a generated name wins over both protocols", async () => {
  const mine = "#!ipxe\necho mine\n";
  await withServers({ "menu.json": MENU, "boot.ipxe": mine }, async (t, h) => {
    equal(new TextDecoder().decode(await curlBytes(`tftp://127.0.0.1:${t}/boot.ipxe`)), mine);
    equal(new TextDecoder().decode(await curlBytes(`http://127.0.0.1:${h}/boot.ipxe`)), mine);
    // the other menu name is still generated, identically
    equal(
      new TextDecoder().decode(await curlBytes(`tftp://127.0.0.1:${t}/boot.http.ipxe`)),
      new TextDecoder().decode(await curlBytes(`http://127.0.0.1:${h}/boot.http.ipxe`)),
    );
  });
});

Deno.test("generated files: without HTTP boot.ipxe is generated over TFTP only when the tree has something to list", async () => {
  await withServers({ "pxelinux.cfg/default": "DEFAULT local\n" }, async (t, _h, served) => {
    served.httpPort = null;
    // nothing to list: the tree's own (here the embedded) boot.ipxe
    equal(
      new TextDecoder().decode(await curlBytes(`tftp://127.0.0.1:${t}/boot.ipxe`)),
      "#!ipxe\n# embedded\n",
    );
  });
  await withServers(
    { "menu.json": MENU, "live/vmlinuz": "k", "live/initrd.img": "i" },
    async (t, _h, served) => {
      served.httpPort = null;
      const menu = new TextDecoder().decode(await curlBytes(`tftp://127.0.0.1:${t}/boot.ipxe`));
      match(menu, /^set pypxe-files tftp:\/\/127\.0\.0\.1$/m);
      match(menu, /item deb Debian/);
      match(menu, /item dropin-kernel0 live/);
    },
  );
});
