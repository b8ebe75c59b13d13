/**
 * Drop-in boot entries in every generated loader (`ipxe.ts`, `grub.ts`, `files.ts`): kernel folders and
 * the user's iPXE scripts as menu items, `menu.json`'s `kernel:`/`script:` defaults, hostile names, the
 * menus without HTTP (over TFTP), and a PyPXE tree (its own `boot.ipxe`, no `menu.json`) served as it was
 * while the generated menu lists what the tree holds.
 *
 * iPXE output goes through tests/http/ipxe_syntax.ts; GRUB output through GRUB's own `grub-script-check`
 * when installed (skipped with a message otherwise; a failure under PYPXE_REQUIRE_E2E=1).
 * @module
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { type DropInKernel, DropInScanner } from "../../src/netboot/dropins.ts";
import { BootFiles } from "../../src/netboot/files.ts";
import { NetbootFs } from "../../src/netboot/fs.ts";
import { grubConfig } from "../../src/netboot/grub.ts";
import { ipxeMenu, MAX_WARNINGS } from "../../src/netboot/ipxe.ts";
import { MenuFileError, parseMenuFile } from "../../src/netboot/menu.ts";
import { checkIpxeScript } from "../http/ipxe_syntax.ts";
import { captureLogs } from "../helpers/logs.ts";
import { writeTree } from "../helpers/servers.ts";
import { assertGrubSyntax } from "../helpers/grub_syntax.ts";

const dec = new TextDecoder();

/** A kernel folder entry as the scan makes it. */
function kernel(index: number, folder: string, cmdline = ""): DropInKernel {
  return {
    id: `dropin-kernel${index}`,
    folder,
    label: folder,
    kernel: `${folder}/vmlinuz`,
    initrd: [`${folder}/initrd.img`],
    cmdline,
    platform: "any",
    arch: "any",
  };
}

function assertIpxe(script: string): void {
  const problems = checkIpxeScript(script);
  assert.deepEqual(problems, [], `${problems.join("\n")}\n---\n${script}`);
}

/** Fails unless GRUB's parser accepts `text`. */
const assertGrub = (text: string) => assertGrubSyntax(text);

/** The lines of the `:label` block of `script` (up to the next blank line). */
function block(script: string, label: string): string[] {
  const lines = script.split("\n");
  const at = lines.indexOf(`:${label}`);
  assert.ok(at >= 0, `no :${label} in\n${script}`);
  const end = lines.indexOf("", at);
  return lines.slice(at, end < 0 ? undefined : end);
}

// ---------------------------------------------------------------------------------------------------
// the renderers

Deno.test("dropin iPXE: kernel folders boot kernel + initrd + cmdline.txt; scripts are chained", () => {
  const kernels = [kernel(0, "debian", "console=ttyS0 priority=low"), kernel(1, "tools/rescue")];
  const script = ipxeMenu({
    serverIp: "10.0.0.1",
    httpPort: 8080,
    isos: [{ name: "a.iso", size: 2e6 }],
    entries: [{
      id: "mine",
      label: "Mine",
      kernel: "m/k",
      initrd: [],
      cmdline: "",
      platform: "any",
      arch: "any",
    }],
    transport: "http",
    kernels,
    scripts: ["boot.ipxe", "boot.http.nbd.ipxe"],
  });
  assertIpxe(script);
  const lines = script.split("\n");
  // after the menu.json entries, before the tools
  const order = ["item iso0 ", "item mine Mine", "item --gap Kernel folders", "item dropin-kernel0 debian"];
  order.push("item dropin-kernel1 tools/rescue", "item --gap iPXE scripts", "item dropin-script0 boot.ipxe");
  order.push("item dropin-script1 boot.http.nbd.ipxe", "item --gap Tools");
  const at = order.map((start) => lines.findIndex((l) => l.startsWith(start)));
  assert.ok(at.every((i, j) => i >= 0 && (j === 0 || i > at[j - 1])), `${order.join("\n")}\nin\n${script}`);
  assert.match(script, /^set pypxe-files http:\/\/10\.0\.0\.1:8080$/m);
  assert.deepEqual(block(script, "dropin-kernel0"), [
    ":dropin-kernel0",
    "echo Booting debian...",
    "kernel ${pypxe-files}/debian/vmlinuz initrd=initrd.img console=ttyS0 priority=low || goto failed",
    "initrd --name initrd.img ${pypxe-files}/debian/initrd.img || goto failed",
    "boot || goto failed",
  ]);
  assert.deepEqual(
    block(script, "dropin-kernel1")[2],
    "kernel ${pypxe-files}/tools/rescue/vmlinuz initrd=initrd.img || goto failed",
  );
  assert.deepEqual(block(script, "dropin-script1"), [
    ":dropin-script1",
    "echo Chaining boot.http.nbd.ipxe...",
    "chain ${pypxe-files}/boot.http.nbd.ipxe || goto failed",
  ]);
  // no menu.json default: the local disk, no timeout (as before)
  assert.match(script, /^choose --default local target /m);
});

Deno.test("dropin iPXE: without HTTP everything loads over TFTP; ISOs (HTTP only) are left out", () => {
  const script = ipxeMenu({
    serverIp: "10.0.0.1",
    httpPort: null,
    isos: [{ name: "a.iso", size: 1 }],
    entries: [],
    transport: "tftp",
    kernels: [kernel(0, "debian")],
    scripts: ["rescue.ipxe"],
  });
  assertIpxe(script);
  assert.match(script, /^set pypxe-files tftp:\/\/10\.0\.0\.1$/m);
  assert.ok(!script.includes("a.iso"));
  assert.ok(!script.includes("http://"), script);
  assert.deepEqual(block(script, "dropin-script0")[2], "chain ${pypxe-files}/rescue.ipxe || goto failed");
});

Deno.test("dropin iPXE + GRUB: menu.json default kernel:FOLDER / script:NAME picks them, with its timeout", async () => {
  const kernels = [kernel(0, "debian"), kernel(1, "fedora")];
  const scripts = ["boot.ipxe"];
  for (
    const [def, ipxeId, grubId] of [
      ["kernel:fedora", "dropin-kernel1", "dropin-kernel1"],
      ["kernel:/debian/", "dropin-kernel0", "dropin-kernel0"],
      ["script:boot.ipxe", "dropin-script0", "local"], // GRUB cannot run iPXE scripts
      ["kernel:gone", "local", "local"],
      ["script:gone.ipxe", "local", "local"],
    ]
  ) {
    const menu = parseMenuFile(JSON.stringify({ default: def, timeout: 3 }));
    assert.deepEqual(menu.entries, [], "entries may be left out");
    const ipxe = ipxeMenu({
      serverIp: "h",
      httpPort: 80,
      isos: [],
      entries: menu.entries,
      transport: "http",
      default: menu.default,
      timeout: menu.timeout,
      kernels,
      scripts,
    });
    assertIpxe(ipxe);
    assert.match(ipxe, new RegExp(`^choose --default ${ipxeId} --timeout 3000 target `, "m"), def);
    const grub = grubConfig({ menu, kernels });
    assert.match(grub, new RegExp(`^set default='${grubId}'$`, "m"), def);
    assert.match(grub, /^set timeout=3$/m);
    await assertGrub(grub);
  }
});

Deno.test("dropin GRUB: kernel folders become menuentries after menu.json's; iPXE variables leave one out", async () => {
  const menu = parseMenuFile(JSON.stringify({
    entries: [{ id: "mine", label: "Mine", kernel: "m/k" }],
  }));
  const kernels = [
    kernel(0, "debian", "console=ttyS0 priority=low"),
    kernel(1, "vars", "BOOTIF=${net0/mac}"),
  ];
  const cfg = grubConfig({
    menu,
    kernels,
    warnings: ["big left out: big/cmdline.txt is 5000 bytes (at most 4096)"],
  });
  await assertGrub(cfg);
  const lines = cfg.split("\n");
  const mine = lines.indexOf("menuentry 'Mine' --id 'mine' {");
  const debian = lines.indexOf("menuentry 'debian' --id 'dropin-kernel0' {");
  assert.ok(mine >= 0 && debian > mine, cfg);
  assert.deepEqual(lines.slice(debian + 1, debian + 5), [
    "  echo 'Loading debian...'",
    "  linux '/debian/vmlinuz' console=ttyS0 priority=low",
    "  initrd '/debian/initrd.img'",
    "}",
  ]);
  assert.ok(!cfg.includes("dropin-kernel1'"), "GRUB cannot expand ${net0/mac}");
  assert.ok(
    lines.includes(
      "# NOTE: kernel folder 'vars' left out: its cmdline uses iPXE variables: give it a grub_cmdline",
    ),
  );
  assert.ok(lines.includes("# NOTE: big left out: big/cmdline.txt is 5000 bytes (at most 4096)"));
  assert.ok(lines.includes("echo 'pypxe: big left out: big/cmdline.txt is 5000 bytes (at most 4096)'"));
  // no menu.json: still the local disk after 10 s, the kernel folders listed
  const bare = grubConfig({ menu: null, kernels: [kernel(0, "debian")] });
  assert.match(bare, /^set default='local'\nset timeout=10$/m);
  assert.match(bare, /--id 'dropin-kernel0'/);
  // nothing to add: the same bytes as before drop-ins existed
  assert.equal(grubConfig({ menu, kernels: [], warnings: [] }), grubConfig({ menu }));
  assert.equal(grubConfig({ menu: null, kernels: [], warnings: [] }), grubConfig({ menu: null }));
});

Deno.test("dropin warnings: a NOTE and a gap line in the iPXE menu, at most 10", () => {
  const warnings = Array.from({ length: MAX_WARNINGS + 3 }, (_, i) => `f${i} left out: $oops || reboot`);
  const script = ipxeMenu({
    serverIp: "h",
    httpPort: 80,
    isos: [],
    entries: [],
    transport: "http",
    warnings,
  });
  assertIpxe(script);
  const gaps = script.split("\n").filter((l) => l.startsWith("item --gap f"));
  assert.equal(gaps.length, MAX_WARNINGS);
  assert.equal(gaps[0], "item --gap f0 left out: Soops | | reboot");
  assert.match(script, /^# NOTE: f0 left out: Soops \| \| reboot$/m);
});

Deno.test("dropin: hostile folder and script names stay inert in iPXE and GRUB (scan -> render)", async () => {
  const base = await Deno.makeTempDir({ prefix: "pypxe-dropin-hostile-" });
  try {
    const names = [
      'we ird/it\'s "q" ${net0/mac} || reboot ; x',
      "tab\there",
      "new\nline",
      "brace}{ & | < > # %20 é",
    ];
    const files: Record<string, string> = { "a b $x || y ; z.ipxe": "#!ipxe\n", "it's.ipxe": "#!ipxe\n" };
    for (const folder of names) {
      files[`${folder}/vmlinuz`] = "k";
      files[`${folder}/initrd.img $x'"`] = "i";
    }
    await writeTree(base, files);
    const fs = await NetbootFs.open({ overlay: base, embedded: join(base, "none") });
    const found = await new DropInScanner().scan(await fs.list());
    assert.equal(found.kernels.length, names.length);
    assert.equal(found.scripts.length, 2);
    for (const transport of ["http", "tftp"] as const) {
      const script = ipxeMenu({
        serverIp: "10.0.0.1",
        httpPort: transport === "http" ? 80 : null,
        isos: [],
        entries: [],
        transport,
        kernels: found.kernels,
        scripts: found.scripts,
      });
      assertIpxe(script);
      for (const line of script.split("\n")) {
        if (line.startsWith("#") || line === "") continue;
        // the only iPXE variables are pypxe's own; no name adds a command separator
        for (const v of line.match(/\$\{[^}]*\}/g) ?? []) {
          assert.ok(
            ["${pypxe-files}", "${platform}", "${buildarch}", "${net0/mac}", "${target}"].includes(v),
            line,
          );
        }
        if (/^(item|echo) /.test(line)) assert.ok(!/ (\|\||&&|;|#\S*) /.test(` ${line} `), line);
      }
      // paths are percent-encoded, the initrd's load name is plain
      assert.ok(
        script.includes(
          "${pypxe-files}/we%20ird/it's%20%22q%22%20%24%7Bnet0/mac%7D%20%7C%7C%20reboot%20%3B%20x/vmlinuz",
        ),
        script,
      );
      assert.ok(script.includes("initrd=initrd.img__x__"), script);
      assert.ok(script.includes("initrd --name initrd.img__x__ ${pypxe-files}/we%20ird/"), script);
      assert.ok(
        script.includes("chain ${pypxe-files}/a%20b%20%24x%20%7C%7C%20y%20%3B%20z.ipxe || goto failed"),
        script,
      );
    }
    const cfg = grubConfig({ menu: null, kernels: found.kernels });
    await assertGrub(cfg);
    // a `${` in a path reads as an iPXE variable to GRUB: that folder is left out with a note
    assert.match(cfg, /# NOTE: kernel folder 'we ird\/it's "q" \$\{net0\/mac\} \|\| reboot ; x' left out/);
    assert.match(cfg, /^menuentry 'tab here' --id /m);
    assert.match(cfg, /^menuentry 'new line' --id /m);
    assert.match(cfg, /^ {2}linux '\/brace\}\{ & \| < > # %20 é\/vmlinuz'$/m);
  } finally {
    await Deno.remove(base, { recursive: true });
  }
});

Deno.test("dropin menu.json: entries optional, kernel:/script: defaults accepted, dropin ids reserved", () => {
  assert.equal(parseMenuFile("{}").entries.length, 0);
  assert.equal(parseMenuFile('{"default": "script:boot.ipxe"}').default, "script:boot.ipxe");
  for (
    const [text, re] of [
      [
        '{"entries": [{"id": "dropin-kernel0", "label": "x", "kernel": "k"}]}',
        /'dropin-kernel0' is reserved/,
      ],
      ['{"default": "nope"}', /'nope' is not an entry id, 'local', 'shell', 'iso:PATH', 'kernel:FOLDER'/],
      ['{"default": "Kernel:debian"}', /is not an entry id/],
      ['{"entries": null}', /entries: must be a list/],
    ] as const
  ) {
    assert.throws(
      () => parseMenuFile(text),
      (e: unknown) => e instanceof MenuFileError && re.test(e.message),
      text,
    );
  }
});

// ---------------------------------------------------------------------------------------------------
// BootFiles: what TFTP and HTTP serve

/** PyPXE's own example boot.ipxe (its netboot/ folder), byte for byte. */
const PYPXE_BOOT_IPXE =
  "#!ipxe\ninitrd tftp://192.168.2.2/Core.iso\nchain tftp://192.168.2.2/memdisk iso\nsanboot\n";

async function served(files: Record<string, string>, httpPort: number | null) {
  const base = await Deno.makeTempDir({ prefix: "pypxe-dropin-files-" });
  const overlay = join(base, "overlay");
  const embedded = join(base, "embedded");
  await writeTree(overlay, files);
  await writeTree(embedded, {
    "boot.ipxe": "#!ipxe\n# embedded\n",
    "boot.http.ipxe": "#!ipxe\n# embedded http\n",
  });
  const netboot = await NetbootFs.open({ overlay, embedded });
  const boot = new BootFiles({ netboot, httpPort, revalidateMs: 0, advertiseHost: "10.9.9.9" });
  const text = async (name: string) => {
    const file = await boot.resolve(name, "10.1.2.3");
    return {
      file,
      text: file.content !== undefined ? dec.decode(file.content) : await Deno.readTextFile(file.path),
    };
  };
  return { overlay, boot, text, cleanup: () => Deno.remove(base, { recursive: true }) };
}

const DEBIAN = {
  "debian/vmlinuz": "kernel",
  "debian/initrd.img": "initrd",
  "debian/cmdline.txt": "console=ttyS0 panic=-1\n",
};

Deno.test("dropin PyPXE tree (own boot.ipxe, no menu.json), --http: boot.ipxe as is; the menu lists all", async () => {
  const t = await served({
    ...DEBIAN,
    "boot.ipxe": PYPXE_BOOT_IPXE,
    "boot.http.nbd.ipxe": "#!ipxe\nchain http://192.168.0.11/vmlinuz-linux\n",
    "Core.iso": "iso",
  }, 8080);
  try {
    const own = await t.text("boot.ipxe");
    assert.equal(own.file.layer, "overlay");
    assert.equal(own.text, PYPXE_BOOT_IPXE);
    const menu = await t.text("boot.http.ipxe");
    assert.equal(menu.file.layer, "generated");
    assertIpxe(menu.text);
    assert.match(menu.text, /^item iso0 Core\.iso \(1 KB\)$/m);
    assert.match(menu.text, /^item dropin-kernel0 debian$/m);
    assert.match(
      menu.text,
      /^kernel \$\{pypxe-files\}\/debian\/vmlinuz initrd=initrd\.img console=ttyS0 panic=-1 \|\| goto failed$/m,
    );
    assert.match(menu.text, /^set pypxe-files http:\/\/10\.9\.9\.9:8080$/m);
    // the user's scripts, their boot.ipxe included; the menu never lists itself
    assert.match(menu.text, /^item dropin-script0 boot\.http\.nbd\.ipxe\nitem dropin-script1 boot\.ipxe$/m);
    assert.match(menu.text, /^chain \$\{pypxe-files\}\/boot\.ipxe \|\| goto failed$/m);
    assert.ok(!menu.text.includes("chain ${pypxe-files}/boot.http.ipxe"));
    assert.match(menu.text, /^choose --default local target /m);
    const grub = await t.text("grub/grub.cfg");
    const entry = [
      "menuentry 'debian' --id 'dropin-kernel0' {",
      "  echo 'Loading debian...'",
      "  linux '/debian/vmlinuz' console=ttyS0 panic=-1",
      "  initrd '/debian/initrd.img'",
      "}",
    ];
    assert.ok(grub.text.includes(entry.join("\n")), grub.text);
    await assertGrub(grub.text);

    // the menus are dated by the newest file they use
    const later = new Date(Date.now() + 60_000);
    await Deno.utime(join(t.overlay, "debian", "cmdline.txt"), later, later);
    assert.equal((await t.text("boot.http.ipxe")).file.mtime?.getTime(), later.getTime());
    assert.equal((await t.text("grub/grub.cfg")).file.mtime?.getTime(), later.getTime());

    // a menu.json of two lines makes the folder boot unattended
    await Deno.writeTextFile(
      join(t.overlay, "menu.json"),
      JSON.stringify({ default: "kernel:debian", timeout: 2 }),
    );
    assert.match(
      (await t.text("boot.http.ipxe")).text,
      /^choose --default dropin-kernel0 --timeout 2000 target /m,
    );
    assert.match((await t.text("grub/grub.cfg")).text, /^set default='dropin-kernel0'\nset timeout=2$/m);
    // a new folder shows at the next listing; a removed one goes
    await writeTree(t.overlay, { "alpine/vmlinuz-lts": "k", "alpine/initramfs-lts": "i" });
    await Deno.remove(join(t.overlay, "debian"), { recursive: true });
    const next = (await t.text("boot.http.ipxe")).text;
    assert.match(next, /^item dropin-kernel0 alpine$/m);
    assert.ok(!next.includes("debian"));
    assert.match(next, /^choose --default local --timeout 2000 target /m, "the default folder is gone");
  } finally {
    await t.cleanup();
  }
});

Deno.test("dropin without HTTP: boot.ipxe is generated over TFTP when the tree has something to list", async () => {
  // nothing to list: the embedded (static) boot.ipxe, as before
  const bare = await served({ "pxelinux.cfg/default": "DEFAULT local\n" }, null);
  try {
    assert.equal((await bare.text("boot.ipxe")).text, "#!ipxe\n# embedded\n");
  } finally {
    await bare.cleanup();
  }
  const t = await served({ ...DEBIAN, "rescue.ipxe": "#!ipxe\n" }, null);
  try {
    const menu = await t.text("boot.ipxe");
    assert.equal(menu.file.layer, "generated");
    assertIpxe(menu.text);
    assert.match(menu.text, /^set pypxe-files tftp:\/\/10\.9\.9\.9$/m);
    assert.match(
      menu.text,
      /^kernel \$\{pypxe-files\}\/debian\/vmlinuz initrd=initrd\.img console=ttyS0 panic=-1 \|\| goto failed$/m,
    );
    assert.match(menu.text, /^chain \$\{pypxe-files\}\/rescue\.ipxe \|\| goto failed$/m);
    // boot.http.ipxe is not generated without HTTP
    assert.equal((await t.text("boot.http.ipxe")).text, "#!ipxe\n# embedded http\n");
    // a menu.json alone is something to list too
    await Deno.remove(join(t.overlay, "debian"), { recursive: true });
    await Deno.remove(join(t.overlay, "rescue.ipxe"));
    await Deno.writeTextFile(
      join(t.overlay, "menu.json"),
      JSON.stringify({ entries: [{ label: "K", kernel: "k" }] }),
    );
    assert.match((await t.text("boot.ipxe")).text, /^item entry0 K$/m);
    // the user's own boot.ipxe always wins
    await writeTree(t.overlay, { ...DEBIAN, "boot.ipxe": PYPXE_BOOT_IPXE });
    const own = await t.text("boot.ipxe");
    assert.equal(own.file.layer, "overlay");
    assert.equal(own.text, PYPXE_BOOT_IPXE);
  } finally {
    await t.cleanup();
  }
});

Deno.test("dropin warnings are logged once per change, not at every listing", async () => {
  const logs = await captureLogs("warning");
  const t = await served({
    ...DEBIAN,
    "big/vmlinuz": "k",
    "big/initrd": "i",
    "big/cmdline.txt": "x".repeat(5000),
  }, 8080);
  try {
    for (let i = 0; i < 3; i++) {
      const menu = (await t.text("boot.http.ipxe")).text;
      assert.match(menu, /^item --gap big left out: big\/cmdline\.txt is 5000 bytes \(at most 4096\)$/m);
      assert.match(menu, /^item dropin-kernel0 debian$/m);
    }
    assert.deepEqual(logs.lines, [
      "warning drop-in big left out: big/cmdline.txt is 5000 bytes (at most 4096)",
    ]);
    await Deno.writeTextFile(join(t.overlay, "big", "cmdline.txt"), "quiet");
    assert.match((await t.text("grub/grub.cfg")).text, /--id 'dropin-kernel0'/);
    await Deno.writeTextFile(join(t.overlay, "big", "cmdline.txt"), "y".repeat(4097));
    await t.text("grub/grub.cfg");
    assert.equal(logs.lines.length, 2, logs.lines.join("\n"));
    assert.match(logs.lines[1], /big\/cmdline\.txt is 4097 bytes/);
  } finally {
    await t.cleanup();
    await logs.stop();
  }
});
