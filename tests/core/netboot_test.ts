import assert from "node:assert/strict";
import { join } from "node:path";
import { NetbootError, NetbootFs, normaliseName } from "../../src/netboot/fs.ts";

/** Builds an overlay and an embedded tree in a temp dir, plus a secret file outside both. */
async function makeTrees() {
  const base = await Deno.makeTempDir({ prefix: "pypxe-netboot-" });
  const overlay = join(base, "overlay");
  const embedded = join(base, "embedded");
  await Deno.mkdir(join(overlay, "pxelinux.cfg"), { recursive: true });
  await Deno.mkdir(join(embedded, "EFI", "Boot"), { recursive: true });
  await Deno.mkdir(join(embedded, "pxelinux.cfg"), { recursive: true });
  await Deno.writeTextFile(join(base, "secret.txt"), "secret");
  await Deno.writeTextFile(join(overlay, "pxelinux.cfg", "default"), "user menu");
  await Deno.writeTextFile(join(embedded, "pxelinux.cfg", "default"), "embedded menu");
  await Deno.writeTextFile(join(embedded, "pxelinux.0"), "pxelinux");
  await Deno.writeTextFile(join(embedded, "EFI", "Boot", "bootx64.efi"), "efi");
  await Deno.symlink(join(base, "secret.txt"), join(overlay, "escape.txt"));
  await Deno.symlink("/etc", join(overlay, "etcdir"));
  await Deno.symlink("pxelinux.cfg/default", join(overlay, "inside-link"));
  await Deno.symlink(join(base, "missing"), join(overlay, "dangling"));
  const fs = await NetbootFs.open({ overlay, embedded });
  return { base, fs, cleanup: () => Deno.remove(base, { recursive: true }) };
}

Deno.test("hostile paths are refused with the right code", async () => {
  const { fs, cleanup } = await makeTrees();
  try {
    const table: [string, string][] = [
      ["../secret.txt", "forbidden"],
      ["pxelinux.cfg/../../secret.txt", "forbidden"],
      ["..\\secret.txt", "forbidden"],
      ["..", "forbidden"],
      ["/../secret.txt", "forbidden"],
      ["a/b/../../../secret.txt", "forbidden"],
      ["pxelinux.0\0.txt", "forbidden"],
      ["C:\\windows\\system32", "forbidden"],
      ["escape.txt", "forbidden"],
      ["etcdir/passwd", "forbidden"],
      ["/etc/passwd", "not-found"],
      ["dangling", "not-found"],
      ["nothing-here", "not-found"],
      ["pxelinux.cfg", "is-directory"],
      ["/", "is-directory"],
      ["", "is-directory"],
      ["EFI/Boot", "is-directory"],
    ];
    for (const [path, code] of table) {
      await assert.rejects(
        () => fs.resolve(path),
        (err: unknown) => err instanceof NetbootError && err.code === code,
        `${JSON.stringify(path)} should be ${code}`,
      );
    }
  } finally {
    await cleanup();
  }
});

Deno.test("overlay wins, embedded fills in, separators and case are forgiven", async () => {
  const { fs, cleanup } = await makeTrees();
  try {
    const user = await fs.resolve("pxelinux.cfg/default");
    assert.equal(user.layer, "overlay");
    assert.equal(await Deno.readTextFile(user.path), "user menu");
    const embedded = await fs.resolve("/pxelinux.0");
    assert.equal(embedded.layer, "embedded");
    assert.equal(embedded.name, "pxelinux.0");
    assert.equal(embedded.size, 8);
    assert.equal((await fs.resolve("\\EFI\\Boot\\bootx64.efi")).name, "EFI/Boot/bootx64.efi");
    assert.equal((await fs.resolve("efi/boot/BOOTX64.EFI")).name, "EFI/Boot/bootx64.efi");
    assert.equal((await fs.resolve("//pxelinux.0")).name, "pxelinux.0");
    assert.equal((await fs.resolve("./pxelinux.0")).name, "pxelinux.0");
    const link = await fs.resolve("inside-link");
    assert.equal(await Deno.readTextFile(link.path), "user menu");
    const names = (await fs.list()).map((f) => f.name);
    assert.deepEqual(names, ["EFI/Boot/bootx64.efi", "inside-link", "pxelinux.0", "pxelinux.cfg/default"]);
  } finally {
    await cleanup();
  }
});

Deno.test("a missing --netboot-dir is an error", async () => {
  await assert.rejects(
    () => NetbootFs.open({ overlay: "/nonexistent/pypxe-netboot" }),
    (err: unknown) => err instanceof NetbootError && /does not exist/.test(err.message),
  );
});

Deno.test("the embedded tree holds the project-written defaults", async () => {
  const fs = await NetbootFs.open();
  assert.match(await Deno.readTextFile((await fs.resolve("boot.ipxe")).path), /^#!ipxe/);
  assert.match(await Deno.readTextFile((await fs.resolve("boot.http.ipxe")).path), /\$\{next-server\}/);
  assert.match(await Deno.readTextFile((await fs.resolve("pxelinux.cfg/default")).path), /LOCALBOOT 0/);
});

Deno.test("normaliseName strips and splits", () => {
  assert.deepEqual(normaliseName("\\a\\b/c"), ["a", "b", "c"]);
  assert.deepEqual(normaliseName("/a/./b//c"), ["a", "b", "c"]);
});

Deno.test("the embedded iPXE menus pass the iPXE syntax check", async () => {
  const { checkIpxeScript } = await import("../http/ipxe_syntax.ts");
  const fs = await NetbootFs.open();
  for (const name of ["boot.ipxe", "boot.http.ipxe"]) {
    const problems = checkIpxeScript(await Deno.readTextFile((await fs.resolve(name)).path));
    assert.deepEqual(problems, [], `${name}: ${problems.join("; ")}`);
  }
});
