/** Profiles and groups on disk: every kind, every refusal with the file and key named, the directory rules. */
import { deepStrictEqual, equal, match, ok, rejects, throws } from "node:assert/strict";
import {
  loadMachines,
  MachinesError,
  MAX_MACHINE_FILE_BYTES,
  parseGroup,
  parseProfile,
} from "../../src/machines/profiles.ts";

const json = (v: unknown) => JSON.stringify(v);

Deno.test("profiles: every boot kind, with defaults", () => {
  deepStrictEqual(parseProfile("debian", json({ kernel: "debian/linux" })), {
    name: "debian",
    boot: { kind: "kernel", kernel: "debian/linux", initrd: [], cmdline: "" },
  });
  deepStrictEqual(
    parseProfile(
      "d",
      json({
        kernel: "http://10.0.0.5/linux?mac=${net0/mac}",
        initrd: ["./debian//initrd.gz", "https://x.example/fw.cpio"],
        cmdline: "priority=low BOOTIF=01-${net0/mac:hexhyp}",
        bootfile: "tftp://10.0.0.5/ipxe.efi",
        message: "Reinstalling Debian",
      }),
    ),
    {
      name: "d",
      boot: {
        kind: "kernel",
        kernel: "http://10.0.0.5/linux?mac=${net0/mac}",
        initrd: ["debian/initrd.gz", "https://x.example/fw.cpio"],
        cmdline: "priority=low BOOTIF=01-${net0/mac:hexhyp}",
      },
      bootfile: "tftp://10.0.0.5/ipxe.efi",
      message: "Reinstalling Debian",
    },
  );
  deepStrictEqual(parseProfile("k", json({ kernel: "k", initrd: "i.gz" })).boot, {
    kind: "kernel",
    kernel: "k",
    initrd: ["i.gz"],
    cmdline: "",
  });
  deepStrictEqual(parseProfile("r", json({ iso: "images/rescue.iso" })).boot, {
    kind: "iso",
    iso: "images/rescue.iso",
  });
  deepStrictEqual(parseProfile("s", json({ ipxe: "#!ipxe\necho hi\n" })).boot, {
    kind: "ipxe",
    script: "#!ipxe\necho hi\n",
  });
  deepStrictEqual(parseProfile("c", json({ chain: "http://10.0.0.5/boot.ipxe" })).boot, {
    kind: "chain",
    url: "http://10.0.0.5/boot.ipxe",
  });
  deepStrictEqual(parseProfile("l", json({ local: true, bootfile: "ipxe.efi" })), {
    name: "l",
    boot: { kind: "local" },
    bootfile: "ipxe.efi",
  });
  deepStrictEqual(parseProfile("m", json({ menu: true })).boot, { kind: "menu" });
});

/** [file text, expected message after `profiles/p.json: `]. */
const badProfiles: [unknown, string | RegExp][] = [
  [{ kernel: "k", initrd: [1] }, `"initrd" must be a list of paths or URLs (or {"url", "sha256"})`],
  [{ kernel: "k", initrd: {} }, `"initrd" must be a list of paths or URLs (or {"url", "sha256"})`],
  [{}, /needs one of "kernel", "iso", "ipxe", "chain", "local", "menu"/],
  [{ kernel: "k", iso: "x.iso" }, /"kernel" and "iso" cannot be combined/],
  [{ iso: "x.iso", cmdline: "quiet" }, `"cmdline" goes only with "kernel"`],
  [{ menu: true, initrd: [] }, `"initrd" goes only with "kernel"`],
  [{ kernal: "k" }, /unknown key "kernal"/],
  [{ local: false }, `"local" must be true`],
  [{ menu: "yes" }, `"menu" must be true`],
  [{ kernel: "../etc/passwd" }, `"kernel" must not leave the netboot tree ("..")`],
  [{ kernel: "debian/../../x" }, `"kernel" must not leave the netboot tree ("..")`],
  [{ kernel: "/boot/vmlinuz" }, /"kernel" must be relative to the netboot tree, not absolute/],
  [{ kernel: "debian\\linux" }, /"kernel" must use "\/" between folders/],
  [{ iso: "file:///etc/shadow" }, /"iso": "file:" is not allowed \(http:\/\/, https:\/\/ only\)/],
  [{ kernel: "tftp://10.0.0.5/linux" }, /"kernel": "tftp:" is not allowed/],
  [{ kernel: "C:/linux" }, /"kernel": "c:" is not allowed/],
  [{ chain: "http:///nohost" }, `"chain": the URL has no host: "http:///nohost"`],
  [{ chain: "https:boot.ipxe" }, `"chain": the URL has no host: "https:boot.ipxe"`],
  [{ kernel: "" }, `"kernel" is empty`],
  [{ kernel: "./" }, `"kernel" is empty`],
  [{ kernel: 5 }, `"kernel" must be a path in the netboot tree or an http(s) URL`],
  [{ kernel: "a b" }, /"kernel" must not contain spaces/],
  [{ kernel: { url: "http://x/k", sha256: "00" } }, /"kernel"\.sha256: .*must be 64 hex digits/],
  [{ kernel: { url: "ftp://x/k" } }, /"kernel"\.url: .*is not an http:\/\/ or https:\/\/ URL/],
  [{ kernel: "k", initrd: [{ url: "http://x/i", size: 1 }] }, /"initrd"\[0\]\.size: .*not a known key/],
  [{ kernel: "k", cmdline: "quiet\nshell" }, `"cmdline" must be one line without control characters`],
  [{ kernel: "k", cmdline: "x".repeat(4097) }, `"cmdline" is longer than 4096 characters`],
  [{ kernel: "k", cmdline: 3 }, `"cmdline" must be a string`],
  [{ kernel: "k", initrd: Array(33).fill("i") }, `"initrd" lists more than 32 files`],
  [{ ipxe: "echo hi" }, `"ipxe" must start with "#!ipxe" and a new line`],
  [{ ipxe: 1 }, `"ipxe" must be a string (an iPXE script)`],
  [{ menu: true, message: "a\rb" }, `"message" must be one line without control characters`],
  [{ menu: true, bootfile: "ftp://x/y" }, /"bootfile": "ftp:" is not allowed/],
  [{ menu: true, bootfile: "x".repeat(256) }, `"bootfile" is longer than 255 characters (DHCP option 67)`],
  [[1], "must be a JSON object"],
  ["{", /^not valid JSON/],
];

Deno.test("profiles: broken files are refused, naming the file and the key", () => {
  for (const [raw, expected] of badProfiles) {
    const text = typeof raw === "string" ? raw : json(raw);
    throws(() => parseProfile("p", text), (err: unknown) => {
      ok(err instanceof MachinesError, String(err));
      const msg = err.message;
      ok(msg.startsWith("profiles/p.json: "), msg);
      const rest = msg.slice("profiles/p.json: ".length);
      if (typeof expected === "string") equal(rest, expected, text);
      else match(rest, expected, text);
      return true;
    });
  }
});

Deno.test("profiles: names are checked; boot-api is reserved; source names the file", () => {
  throws(() => parseProfile("my profile", json({ menu: true })), /the name "my profile" must be a letter/);
  throws(() => parseProfile("boot-api", json({ menu: true })), /reserved for boot-API answers/);
  throws(
    () => parseProfile("d", json({ kernel: "k", initrd: 5 }), "machines/profiles/debian.json"),
    {
      message:
        `machines/profiles/debian.json: "initrd" must be a list of paths or URLs (or {"url", "sha256"})`,
    },
  );
});

Deno.test("groups: profile, selector normalised, once", () => {
  const names = new Set(["debian", "rescue"]);
  deepStrictEqual(parseGroup("default", json({ profile: "rescue" }), names), {
    name: "default",
    profile: "rescue",
    selector: {},
    once: false,
  });
  deepStrictEqual(
    parseGroup(
      "lab",
      json({
        profile: "debian",
        selector: {
          mac: "52-54-00-77-00-1A",
          uuid: "{77777777777747778777777777770010}",
          arch: "efi-arm64",
          client: "ipxe",
          hostname: "Web1.Lab",
        },
        once: true,
      }),
      names,
    ),
    {
      name: "lab",
      profile: "debian",
      selector: {
        mac: "52:54:00:77:00:1a",
        uuid: "77777777-7777-4777-8777-777777770010",
        arch: "efi-arm64",
        client: "ipxe",
        hostname: "web1.lab",
      },
      once: true,
    },
  );
  for (const mac of ["525400770010", "5254.0077.0010", "52:54:00:77:00:10", "52-54-00-77-00-10"]) {
    equal(
      parseGroup("g", json({ profile: "debian", selector: { mac } }), names).selector.mac,
      "52:54:00:77:00:10",
    );
  }
});

const badGroups: [unknown, string | RegExp][] = [
  [{ profile: "nope" }, `"profile": no profile "nope" (profiles/nope.json)`],
  [{}, `"profile" must be the name of a profile (profiles/NAME.json)`],
  [{ profile: "debian", selector: { ip: "10.0.0.1" } }, /unknown selector key "ip"/],
  [
    { profile: "debian", selector: { mac: "52:54:00:77:00" } },
    `"selector.mac": not a MAC address: "52:54:00:77:00"`,
  ],
  [{ profile: "debian", selector: { uuid: "1234" } }, `"selector.uuid": not a UUID (32 hex digits): "1234"`],
  [{ profile: "debian", selector: { arch: "x86_64" } }, /"selector.arch" must be one of bios, efi32, efi64/],
  [
    { profile: "debian", selector: { client: "grub" } },
    `"selector.client" must be one of pxe, ipxe, http (not "grub")`,
  ],
  [{ profile: "debian", selector: { hostname: " " } }, `"selector.hostname" is empty`],
  [{ profile: "debian", selector: { mac: 5 } }, `"selector.mac" must be a string`],
  [{ profile: "debian", selector: [] }, `"selector" must be an object`],
  [{ profile: "debian", once: "yes" }, `"once" must be true or false`],
  [{ profile: "debian", priority: 1 }, /unknown key "priority"/],
];

Deno.test("groups: broken files are refused, naming the file and the key", () => {
  for (const [raw, expected] of badGroups) {
    throws(() => parseGroup("g", json(raw), new Set(["debian"])), (err: unknown) => {
      ok(err instanceof MachinesError, String(err));
      const rest = err.message.slice("groups/g.json: ".length);
      ok(err.message.startsWith("groups/g.json: "), err.message);
      if (typeof expected === "string") equal(rest, expected);
      else match(rest, expected);
      return true;
    });
  }
});

async function withDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "pypxe-machines-" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

async function write(dir: string, files: Record<string, unknown>): Promise<void> {
  for (const [path, content] of Object.entries(files)) {
    const full = `${dir}/${path}`;
    await Deno.mkdir(full.slice(0, full.lastIndexOf("/")), { recursive: true });
    await Deno.writeTextFile(full, typeof content === "string" ? content : json(content));
  }
}

Deno.test("loadMachines: reads profiles and groups sorted by name, skips hidden and non-JSON files", async () => {
  await withDir(async (dir) => {
    await write(dir, {
      "profiles/rescue.json": { iso: "rescue.iso" },
      "profiles/debian.json": { kernel: "debian/linux" },
      "profiles/.debian.json.swp": "junk",
      "profiles/README.md": "notes",
      "profiles/debian.json~": "{",
      "groups/z-default.json": { profile: "rescue" },
      "groups/a-lab.json": { profile: "debian", selector: { arch: "bios" } },
    });
    await Deno.mkdir(`${dir}/groups/folder.json`);
    const set = await loadMachines(dir + "/");
    deepStrictEqual([...set.profiles.keys()], ["debian", "rescue"]);
    deepStrictEqual(set.groups.map((g) => g.name), ["a-lab", "z-default"]);
    equal(set.profiles.get("rescue")?.boot.kind, "iso");
  });
});

Deno.test("loadMachines: missing subfolders are empty; a missing or non-directory DIR is an error", async () => {
  await withDir(async (dir) => {
    const set = await loadMachines(dir);
    equal(set.profiles.size, 0);
    equal(set.groups.length, 0);
    await rejects(loadMachines(`${dir}/nope`), (err: unknown) => {
      ok(err instanceof MachinesError);
      match(err.message, new RegExp(`^${dir}/nope: cannot read the machines directory`));
      return true;
    });
    await Deno.writeTextFile(`${dir}/file`, "");
    await rejects(loadMachines(`${dir}/file`), /the machines directory is not a directory/);
  });
});

Deno.test("loadMachines: the first broken file is named with the DIR as given", async () => {
  await withDir(async (dir) => {
    await write(dir, {
      "profiles/debian.json": { kernel: "debian/linux", initrd: 5 },
      "groups/g.json": { profile: "debian" },
    });
    await rejects(loadMachines(dir), {
      message: `${dir}/profiles/debian.json: "initrd" must be a list of paths or URLs (or {"url", "sha256"})`,
    });
    await write(dir, {
      "profiles/debian.json": { kernel: "debian/linux" },
      "groups/g.json": { profile: "ubuntu" },
    });
    await rejects(loadMachines(dir), {
      message: `${dir}/groups/g.json: "profile": no profile "ubuntu" (profiles/ubuntu.json)`,
    });
    await write(dir, {
      "groups/g.json": { profile: "debian" },
      "groups/bad name.json": { profile: "debian" },
    });
    await rejects(loadMachines(dir), /groups\/bad name\.json: the name "bad name" must be/);
  });
});

Deno.test("loadMachines: files over 1 MiB and non-UTF-8 files are refused", async () => {
  await withDir(async (dir) => {
    await write(dir, {
      "profiles/big.json": json({ ipxe: "#!ipxe\n" + "#".repeat(MAX_MACHINE_FILE_BYTES) }),
    });
    await rejects(
      loadMachines(dir),
      new RegExp(`profiles/big.json: larger than ${MAX_MACHINE_FILE_BYTES} bytes`),
    );
    await Deno.remove(`${dir}/profiles/big.json`);
    await Deno.writeFile(`${dir}/profiles/bin.json`, Uint8Array.of(0xff, 0xfe, 0x7b));
    await rejects(loadMachines(dir), /profiles\/bin\.json: not UTF-8 text/);
  });
});

Deno.test('profiles: {"url", "sha256"} sources carry the hash to check', () => {
  const hash = "ab".repeat(32);
  const p = parseProfile(
    "remote",
    JSON.stringify({
      kernel: { url: "http://origin.lab/k", sha256: hash.toUpperCase() },
      initrd: [{ url: "http://origin.lab/i" }],
    }),
  );
  deepStrictEqual(p.boot, {
    kind: "kernel",
    kernel: "http://origin.lab/k",
    initrd: ["http://origin.lab/i"],
    cmdline: "",
  });
  equal(p.sha256?.get("http://origin.lab/k"), hash);
  equal(p.sha256?.size, 1);
});
