/**
 * Drop-in boot entries, the scan (`src/netboot/dropins.ts`): which folders are kernel folders, which
 * kernel and initrd are picked, `cmdline.txt` (one line, 4 KiB at most, unreadable -> warning), the
 * user's `*.ipxe` scripts, bounds, symlinks out of the tree, and the `cmdline.txt` cache.
 * @module
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import {
  CMDLINE_MAX,
  DROPIN_MAX_DEPTH,
  DROPIN_MAX_KERNELS,
  dropInDefault,
  DropInScanner,
  imageVersion,
  isInitrdName,
  isKernelName,
  parseCmdline,
  pickInitrd,
  pickKernel,
  type ReadHead,
} from "../../src/netboot/dropins.ts";
import { type NetbootFile, NetbootFs } from "../../src/netboot/fs.ts";
import { writeTree } from "../helpers/servers.ts";

/** An overlay and an embedded tree under one temp dir, plus a dir outside both. */
async function trees(overlayFiles: Record<string, string>, embeddedFiles: Record<string, string> = {}) {
  const base = await Deno.makeTempDir({ prefix: "pypxe-dropin-" });
  const overlay = join(base, "overlay");
  const embedded = join(base, "embedded");
  const outside = join(base, "outside");
  for (const dir of [overlay, embedded, outside]) await Deno.mkdir(dir);
  await writeTree(overlay, overlayFiles);
  await writeTree(embedded, embeddedFiles);
  const fs = await NetbootFs.open({ overlay, embedded });
  return { base, overlay, embedded, outside, fs, cleanup: () => Deno.remove(base, { recursive: true }) };
}

const scan = async (fs: NetbootFs, scanner = new DropInScanner()) => await scanner.scan(await fs.list());

Deno.test("dropins: kernel and initrd names (signatures, checksums, backups are neither)", () => {
  for (
    const name of ["vmlinuz", "vmlinuz-6.1.0-18-amd64", "VMLINUZ", "vmlinuz.efi", "vmlinuz-linux", "linux"]
  ) {
    assert.ok(isKernelName(name), name);
  }
  for (
    const name of [
      "vmlinux",
      "vmlinuz.sig",
      "vmlinuz-6.1.sha256",
      "vmlinuz~",
      "vmlinuz.bak",
      "linux.txt",
      "linux64",
      "bzImage",
      "vmlinuzx",
      ".vmlinuz",
      "initrd.img",
    ]
  ) {
    assert.ok(!isKernelName(name), name);
  }
  for (
    const name of [
      "initrd",
      "initrd.img",
      "initrd.gz",
      "initrd.img-6.1.0-18-amd64",
      "initramfs-linux.img",
      "INITRD.LZ",
    ]
  ) {
    assert.ok(isInitrdName(name), name);
  }
  for (const name of ["initrd.gz.sig", "initrd.img.asc", "initrd.md5", "initrdx", "myinitrd", "vmlinuz"]) {
    assert.ok(!isInitrdName(name), name);
  }
  const versions: [string, string][] = [
    ["vmlinuz", ""],
    ["linux", ""],
    ["initrd.img", ""],
    ["initrd.gz", ""],
    ["initrd", ""],
    ["vmlinuz-6.1.0-18-amd64", "6.1.0-18-amd64"],
    ["initrd.img-6.1.0-18-amd64", "6.1.0-18-amd64"],
    ["vmlinuz-linux", "linux"],
    ["initramfs-linux.img", "linux"],
    ["initramfs-linux-fallback.img", "linux-fallback"],
  ];
  for (const [name, version] of versions) assert.equal(imageVersion(name), version, name);
});

Deno.test("dropins: several kernels -> plain vmlinuz, else the highest version; the initrd of that version", () => {
  assert.equal(pickKernel(["vmlinuz-6.1.0-9-amd64", "vmlinuz-6.1.0-18-amd64"]), "vmlinuz-6.1.0-18-amd64");
  assert.equal(pickKernel(["vmlinuz-6.1.0-18-amd64", "vmlinuz", "vmlinuz-6.2"]), "vmlinuz");
  assert.equal(pickKernel(["linux"]), "linux");
  assert.equal(
    pickInitrd("vmlinuz-6.1.0-9-amd64", ["initrd.img-6.1.0-18-amd64", "initrd.img-6.1.0-9-amd64"]),
    "initrd.img-6.1.0-9-amd64",
  );
  assert.equal(
    pickInitrd("vmlinuz-linux", ["initramfs-linux-fallback.img", "initramfs-linux.img"]),
    "initramfs-linux.img",
  );
  assert.equal(pickInitrd("vmlinuz", ["initrd.img", "initrd.img-6.1"]), "initrd.img");
  // no initrd of the kernel's version: the highest one, whatever the listing order
  assert.equal(pickInitrd("vmlinuz-7", ["initrd-2", "initrd-10", "initrd-1"]), "initrd-10");
  assert.equal(pickInitrd("vmlinuz-7", ["initrd-10", "initrd-1", "initrd-2"]), "initrd-10");
});

Deno.test("dropins: cmdline.txt is one line: comments dropped, breaks and blanks collapsed", () => {
  assert.equal(parseCmdline("console=ttyS0\n"), "console=ttyS0");
  assert.equal(
    parseCmdline("\uFEFF# installer\r\nauto=true  priority=critical\r\n\n  quiet\t splash \n"),
    "auto=true priority=critical quiet splash",
  );
  assert.equal(parseCmdline("a\rb\x00c\x1bd"), "a b c d");
  assert.equal(parseCmdline("   \n# only a comment\n"), "");
  // passed as written: iPXE variables stay for iPXE to expand
  assert.equal(
    parseCmdline("BOOTIF=01-${net0/mac:hexhyp} url=http://x/a?b=1&c=2"),
    "BOOTIF=01-${net0/mac:hexhyp} url=http://x/a?b=1&c=2",
  );
});

Deno.test("dropins: kernel folders at any depth below the root, titled by path, with cmdline.txt", async () => {
  const t = await trees({
    "debian/vmlinuz": "k",
    "debian/initrd.img": "i",
    "debian/cmdline.txt": "# Debian\nconsole=ttyS0\npriority=low\n",
    "linux/ubuntu 24.04/casper/vmlinuz": "k",
    "linux/ubuntu 24.04/casper/initrd": "i",
    "debian-installer/amd64/linux": "k",
    "debian-installer/amd64/initrd.gz": "i",
    "debian-installer/amd64/initrd.gz.sig": "s",
    // a copied /boot: the newest kernel, with its own initrd
    "boot/vmlinuz-6.1.0-9-amd64": "k9",
    "boot/vmlinuz-6.1.0-18-amd64": "k18",
    "boot/initrd.img-6.1.0-9-amd64": "i9",
    "boot/initrd.img-6.1.0-18-amd64": "i18",
    "boot/config-6.1.0-18-amd64": "c",
    // not kernel folders
    "vmlinuz": "root kernel (the root holds the loaders)",
    "initrd.img": "root initrd",
    "memtest/vmlinuz": "kernel without initrd",
    "initonly/initrd.img": "initrd without kernel",
    "sig/vmlinuz.sig": "s",
    "sig/initrd.img": "i",
  });
  try {
    const found = await scan(t.fs);
    assert.deepEqual(found.warnings, []);
    assert.deepEqual(
      found.kernels.map((k) => [k.id, k.folder, k.label, k.kernel, k.initrd, k.cmdline]),
      [
        [
          "dropin-kernel0",
          "boot",
          "boot",
          "boot/vmlinuz-6.1.0-18-amd64",
          ["boot/initrd.img-6.1.0-18-amd64"],
          "",
        ],
        [
          "dropin-kernel1",
          "debian",
          "debian",
          "debian/vmlinuz",
          ["debian/initrd.img"],
          "console=ttyS0 priority=low",
        ],
        [
          "dropin-kernel2",
          "debian-installer/amd64",
          "debian-installer/amd64",
          "debian-installer/amd64/linux",
          ["debian-installer/amd64/initrd.gz"],
          "",
        ],
        [
          "dropin-kernel3",
          "linux/ubuntu 24.04/casper",
          "linux/ubuntu 24.04/casper",
          "linux/ubuntu 24.04/casper/vmlinuz",
          ["linux/ubuntu 24.04/casper/initrd"],
          "",
        ],
      ],
    );
    for (const k of found.kernels) {
      assert.equal(k.platform, "any");
      assert.equal(k.arch, "any");
    }
    assert.deepEqual(found.scripts, []);
  } finally {
    await t.cleanup();
  }
});

Deno.test("dropins: the user's *.ipxe scripts of the overlay root, not the embedded tree's nor subfolders'", async () => {
  const t = await trees(
    {
      "boot.ipxe": "#!ipxe\n",
      "boot.http.nbd.ipxe": "#!ipxe\n",
      "Rescue.IPXE": "#!ipxe\n",
      ".hidden.ipxe": "#!ipxe\n",
      "sub/deep.ipxe": "#!ipxe\n",
      "notes.txt": "x",
    },
    { "boot.http.ipxe": "#!ipxe\n# pypxe's\n", "embedded.ipxe": "#!ipxe\n" },
  );
  try {
    const found = await scan(t.fs);
    assert.deepEqual(found.scripts, ["boot.http.nbd.ipxe", "boot.ipxe", "Rescue.IPXE"]);
    assert.deepEqual(found.kernels, []);
    // the overlay's boot.http.ipxe would be the user's: listed
    await Deno.writeTextFile(join(t.overlay, "boot.http.ipxe"), "#!ipxe\n");
    assert.deepEqual((await scan(t.fs)).scripts, [
      "boot.http.ipxe",
      "boot.http.nbd.ipxe",
      "boot.ipxe",
      "Rescue.IPXE",
    ]);
  } finally {
    await t.cleanup();
  }
});

Deno.test("dropins: symlinks leaving the tree are not followed; symlinks inside it are", async () => {
  const t = await trees({ "inside/initrd.img": "i", "inner/vmlinuz": "k", "inner/initrd.img": "i" });
  try {
    await writeTree(t.outside, {
      "vmlinuz": "k",
      "initrd.img": "i",
      "cmdline.txt": "secret",
      "x.ipxe": "#!ipxe",
    });
    await Deno.symlink(t.outside, join(t.overlay, "escape")); // a folder out of the tree
    await Deno.symlink(join(t.outside, "vmlinuz"), join(t.overlay, "inside", "vmlinuz")); // a kernel out of it
    await Deno.symlink(join(t.outside, "x.ipxe"), join(t.overlay, "out.ipxe"));
    await Deno.symlink(join(t.overlay, "inner"), join(t.overlay, "alias")); // a folder inside: not walked twice
    await Deno.mkdir(join(t.overlay, "linked"));
    await Deno.symlink("../inner/vmlinuz", join(t.overlay, "linked", "vmlinuz"));
    await Deno.symlink("../inner/initrd.img", join(t.overlay, "linked", "initrd.img"));
    const found = await scan(t.fs);
    assert.deepEqual(found.kernels.map((k) => k.folder), ["inner", "linked"]);
    assert.deepEqual(found.scripts, []);
    assert.deepEqual(found.warnings, []);
  } finally {
    await t.cleanup();
  }
});

Deno.test("dropins: a cmdline.txt over 4 KiB or unreadable leaves its folder out with a warning", async () => {
  const t = await trees({
    "big/vmlinuz": "k",
    "big/initrd.img": "i",
    "big/cmdline.txt": "x".repeat(CMDLINE_MAX + 1),
    "max/vmlinuz": "k",
    "max/initrd.img": "i",
    "max/cmdline.txt": "y".repeat(CMDLINE_MAX),
    "locked/vmlinuz": "k",
    "locked/initrd.img": "i",
    "locked/cmdline.txt": "quiet",
    "fine/vmlinuz": "k",
    "fine/initrd.img": "i",
  });
  try {
    // root reads everything: a read that fails is injected (EACCES, or the file gone since the listing)
    const readHead: ReadHead = async (path, max) => {
      if (path.endsWith("/locked/cmdline.txt")) throw new Deno.errors.PermissionDenied("Permission denied");
      const bytes = await Deno.readFile(path);
      return bytes.subarray(0, max + 1);
    };
    const found = await scan(t.fs, new DropInScanner({ readHead }));
    assert.deepEqual(found.kernels.map((k) => k.folder), ["fine", "max"]);
    assert.equal(found.kernels[1].cmdline, "y".repeat(CMDLINE_MAX));
    assert.equal(found.warnings.length, 2, found.warnings.join("\n"));
    assert.match(found.warnings[0], /^big left out: big\/cmdline\.txt is 4097 bytes \(at most 4096\)$/);
    assert.match(
      found.warnings[1],
      /^locked left out: locked\/cmdline\.txt cannot be read: .*Permission denied/,
    );

    // a file that vanished between the listing and the read: a warning, not a crash
    const listing = await t.fs.list();
    await Deno.remove(join(t.overlay, "fine"), { recursive: true });
    const ghost = listing.map((f): NetbootFile =>
      f.name === "max/cmdline.txt" ? { ...f, path: join(t.overlay, "gone", "cmdline.txt") } : f
    );
    const after = await new DropInScanner().scan(ghost);
    // `fine` is still in the old listing; `locked` reads now (the default reader); `big` stays refused
    assert.deepEqual(after.kernels.map((k) => k.folder), ["fine", "locked"]);
    assert.ok(
      after.warnings.some((w) => /^max left out: max\/cmdline\.txt cannot be read/.test(w)),
      after.warnings.join("\n"),
    );
  } finally {
    await t.cleanup();
  }
});

Deno.test("dropins: a cmdline.txt is read once while unchanged; an edit or a fixed read shows at the next scan", async () => {
  const t = await trees({ "d/vmlinuz": "k", "d/initrd.img": "i", "d/cmdline.txt": "one" });
  try {
    let reads = 0;
    let fail = true;
    const readHead: ReadHead = async (path, max) => {
      reads++;
      if (fail) throw new Deno.errors.PermissionDenied("Permission denied");
      return (await Deno.readFile(path)).subarray(0, max + 1);
    };
    const scanner = new DropInScanner({ readHead });
    assert.equal((await scan(t.fs, scanner)).kernels.length, 0);
    fail = false; // chmod changes no mtime: a failed read is tried again
    assert.equal((await scan(t.fs, scanner)).kernels[0].cmdline, "one");
    assert.equal((await scan(t.fs, scanner)).kernels[0].cmdline, "one");
    assert.equal(reads, 2);
    const path = join(t.overlay, "d", "cmdline.txt");
    await Deno.writeTextFile(path, "two words");
    const later = new Date(Date.now() + 5000);
    await Deno.utime(path, later, later);
    const edited = await scan(t.fs, scanner);
    assert.equal(edited.kernels[0].cmdline, "two words");
    assert.equal(edited.mtime, later.getTime(), "the newest file of an entry dates the drop-ins");
    assert.equal(reads, 3);
  } finally {
    await t.cleanup();
  }
});

Deno.test("dropins: bounded: folders deeper than the limit and kernels beyond the count are left out", async () => {
  const deep = Array.from({ length: DROPIN_MAX_DEPTH }, (_, i) => `d${i}`).join("/");
  const files: Record<string, string> = {
    [`${deep}/vmlinuz`]: "k",
    [`${deep}/initrd.img`]: "i",
    [`${deep}/x/vmlinuz`]: "k",
    [`${deep}/x/initrd.img`]: "i",
  };
  for (let i = 0; i <= DROPIN_MAX_KERNELS; i++) {
    files[`many/k${String(i).padStart(3, "0")}/vmlinuz`] = "k";
    files[`many/k${String(i).padStart(3, "0")}/initrd`] = "i";
  }
  const t = await trees(files);
  try {
    const found = await scan(t.fs);
    assert.equal(found.kernels.length, DROPIN_MAX_KERNELS);
    assert.equal(found.kernels[0].folder, deep, "the deepest allowed folder is found");
    assert.ok(!found.kernels.some((k) => k.folder === `${deep}/x`), "one level deeper is not");
    assert.deepEqual(found.warnings, [
      `more than ${DROPIN_MAX_KERNELS} kernel folders: many/k199 and the rest left out`,
    ]);
  } finally {
    await t.cleanup();
  }
});

Deno.test("dropins: menu.json's default names them by path: kernel:FOLDER, script:NAME", async () => {
  const t = await trees({
    "debian/vmlinuz": "k",
    "debian/initrd.img": "i",
    "Fedora/images/vmlinuz": "k",
    "Fedora/images/initrd.img": "i",
  });
  try {
    const { kernels } = await scan(t.fs);
    const scripts = ["boot.ipxe", "Rescue.ipxe"];
    const table: [string | undefined, string | undefined][] = [
      ["kernel:debian", "dropin-kernel0"],
      ["kernel:/debian/", "dropin-kernel0"],
      ["kernel:Fedora/images", "dropin-kernel1"],
      ["kernel:fedora/images", "dropin-kernel1"],
      ["kernel:nope", undefined],
      ["script:boot.ipxe", "dropin-script0"],
      ["script:rescue.ipxe", "dropin-script1"],
      ["script:other.ipxe", undefined],
      ["iso:debian", undefined],
      ["debian", undefined],
      [undefined, undefined],
    ];
    for (const [def, id] of table) assert.equal(dropInDefault(def, kernels, scripts), id, String(def));
  } finally {
    await t.cleanup();
  }
});
