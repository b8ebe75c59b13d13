/**
 * The generated GRUB menu (`src/netboot/grub.ts`), the netboot tree's generated `grub/grub.cfg`, the
 * routine-miss table and the Raspberry Pi size warnings (`src/netboot/fs.ts`).
 *
 * Every rendered config is checked with GRUB's own parser, `grub-script-check` (grub-common); without the
 * tool those checks are skipped with a message, and fail under PYPXE_REQUIRE_E2E=1 (tests/helpers/tools.ts).
 * @module
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { type MenuEntry, type MenuFile, MenuFileError, parseMenuFile } from "../../src/netboot/menu.ts";
import { BootFiles, GENERATED_FILES } from "../../src/netboot/files.ts";
import { missingTools, requires } from "../helpers/tools.ts";
import { GRUB_CONFIG_NAME, grubConfig, grubPath, grubQuote } from "../../src/netboot/grub.ts";
import {
  isRoutineMiss,
  NetbootError,
  NetbootFs,
  PI_MAX_FILE_SIZE,
  piSizeWarnings,
} from "../../src/netboot/fs.ts";
import { assertGrubSyntax, grubScriptCheck } from "../helpers/grub_syntax.ts";

// ---------------------------------------------------------------------------------------------------
// helpers

/** The lines of `text` (without the trailing empty one). */
const linesOf = (text: string) => text.replace(/\n$/, "").split("\n");

/** Asserts that `needle` lines occur in `text` as consecutive lines. */
function assertBlock(text: string, needle: string[], what: string): void {
  const lines = linesOf(text);
  const at = lines.findIndex((_, i) => needle.every((n, j) => lines[i + j] === n));
  assert.ok(at >= 0, `${what}: expected the lines\n${needle.join("\n")}\nin\n${text}`);
}

/** The `linux` line of the menu entry whose `--id` is `id`, or undefined. */
function linuxLineOf(text: string, id: string): string | undefined {
  const lines = linesOf(text);
  const start = lines.findIndex((l) => l.includes(` --id ${grubQuote(id)} {`));
  if (start < 0) return undefined;
  for (let i = start + 1; i < lines.length && i < start + 10; i++) {
    if (/^\s*linux /.test(lines[i])) return lines[i].trim();
    if (/^\s*}/.test(lines[i])) break;
  }
  return undefined;
}

/**
 * The characters of `line` that GRUB's lexer would act on rather than pass through: `;`, `&`, `|`, `<`,
 * `>` and `#` (at a word start) outside quotes, and `$` outside single quotes (GRUB expands variables
 * unquoted and in double quotes). Backslash escapes the next character outside single quotes.
 */
function grubActiveChars(line: string): string[] {
  const found: string[] = [];
  let quote: "'" | '"' | null = null;
  for (let i = 0; i < line.length; i++) {
    const ch = line[i];
    if (quote === "'") {
      if (ch === "'") quote = null;
      continue;
    }
    if (ch === "\\") {
      i++;
      continue;
    }
    if (quote === '"') {
      if (ch === '"') quote = null;
      else if (ch === "$") found.push(ch);
      continue;
    }
    if (ch === "'" || ch === '"') quote = ch;
    else if (";&|<>$".includes(ch)) found.push(ch);
    else if (ch === "#" && (i === 0 || /\s/.test(line[i - 1]))) found.push(ch);
  }
  return found;
}

/** A menu entry with defaults for what a test does not care about. */
function entry(over: Partial<MenuEntry> & { id: string }): MenuEntry {
  return {
    label: over.id,
    kernel: "vmlinuz",
    initrd: [],
    cmdline: "",
    platform: "any",
    arch: "any",
    ...over,
  };
}

/** The menu.json used by most tests: every feature of the GRUB menu. */
const LAB_MENU = JSON.stringify({
  title: "Lab menu: 'quoted' $HOME; rm -rf / # not a comment",
  timeout: 7,
  default: "deb",
  entries: [
    {
      id: "deb",
      label: `Debian 12 "bookworm" $arch; it's {braced} & piped | <in> #hash \\back`,
      kernel: "debian/linux",
      initrd: ["debian/initrd.gz", "/firmware.cpio.gz"],
      cmdline: "priority=low console=ttyS0,115200n8",
      platform: "any",
    },
    { id: "bios_only", label: "Memtest (BIOS)", kernel: "memtest/memtest86+.bin", platform: "pcbios" },
    {
      id: "efi_only",
      label: "EFI only",
      kernel: "/x64/vmlinuz",
      initrd: "x64/initrd.img",
      cmdline: "quiet",
      platform: "efi",
    },
    {
      id: "arm",
      label: "ARM64 rescue over HTTP",
      kernel: "http://mirror.example/arm64/linux",
      initrd: ["http://mirror.example/arm64/initrd.gz"],
      arch: "arm64",
    },
    { id: "i386_any", label: "i386", kernel: "i386/linux", arch: "i386" },
    { id: "port", label: "Other port", kernel: "http://mirror.example:8080/linux" },
    { id: "https", label: "TLS", kernel: "https://mirror.example/linux" },
    { id: "tftpurl", label: "TFTP URL", kernel: "tftp://10.0.0.1/linux" },
    {
      id: "badinitrd",
      label: "Bad initrd",
      kernel: "ok/linux",
      initrd: ["ok/initrd", "https://x.example/i"],
    },
    { id: "ipxevar", label: "iPXE variable", kernel: "k", cmdline: "BOOTIF=01-${net0/mac:hexhyp}" },
    {
      id: "grubvar",
      label: "With grub_cmdline",
      kernel: "k2",
      cmdline: "BOOTIF=01-${net0/mac:hexhyp} ip=${next-server}",
      grub_cmdline: "BOOTIF=01-$net_default_mac ip=dhcp",
    },
  ],
});

const FIXED_TAIL = [
  "menuentry 'Boot from local disk' --id 'local' {",
  "  exit 1",
  "}",
  "",
  `if [ "$grub_platform" = "efi" ]; then`,
  "  menuentry 'UEFI firmware settings' --id 'fwsetup' {",
  "    fwsetup",
  "  }",
  "fi",
  "",
  "menuentry 'Reboot' --id 'reboot' {",
  "  reboot",
  "}",
];

// ---------------------------------------------------------------------------------------------------
// grub-script-check itself

Deno.test(requires(missingTools("grub-script-check"), {
  name: "grub-script-check: the checker is there and rejects a broken config (control)",
  async fn() {
    const bad = await grubScriptCheck("menuentry 'x' {\n  linux '/k'\n");
    assert.ok(bad !== null);
    assert.notEqual(bad.code, 0, "an unclosed menuentry must be a syntax error");
    const quote = await grubScriptCheck("echo 'unclosed\n");
    assert.notEqual(quote!.code, 0, "an unclosed quote must be a syntax error");
    const good = await grubScriptCheck("set timeout=1\nmenuentry 'x' {\n  linux '/k'\n}\n");
    assert.equal(good!.code, 0, good!.output);
  },
}));

// ---------------------------------------------------------------------------------------------------
// grubConfig

Deno.test("grubConfig: no menu.json -> local, firmware setup and reboot; local after 10 s", async () => {
  const text = grubConfig({ menu: null });
  assert.ok(text.endsWith("}\n"));
  assert.equal(
    linesOf(text)[0],
    "# Generated by pypxe from menu.json. To replace it, put your own grub/grub.cfg in --netboot-dir.",
  );
  assertBlock(text, ["set default='local'", "set timeout=10", "set timeout_style=menu"], "header");
  assertBlock(text, FIXED_TAIL, "fixed entries");
  assert.doesNotMatch(text, /NOTE|echo/);
  assert.equal((text.match(/^\s*menuentry /gm) ?? []).length, 3);
  await assertGrubSyntax(text, "the menu without menu.json");
});

Deno.test("grubConfig: a notice without a menu is a NOTE comment and an echo, still valid GRUB", async () => {
  const notice = `menu.json: (file): not valid JSON: Expected ',' or '}' after "x" \$HOME; \`rm\`\nline two`;
  const text = grubConfig({ menu: null, notice });
  assert.ok(linesOf(text).includes(`# NOTE: ${notice.replace("\n", " ")}`), text);
  assert.ok(linesOf(text).includes(`echo ${grubQuote("pypxe: " + notice)}`), text);
  assert.ok(!linesOf(text).some((l) => l === "line two"), "the newline must not start a GRUB line");
  assertBlock(text, ["set default='local'", "set timeout=10"], "header");
  await assertGrubSyntax(text, "the menu with a notice");
});

Deno.test("grubConfig: menu.json entries by platform and arch, initrd lists, HTTP kernels, quoting", async () => {
  const menu = parseMenuFile(LAB_MENU);
  const text = grubConfig({ menu });
  await assertGrubSyntax(text, "the lab menu");

  assertBlock(text, ["set default='deb'", "set timeout=7", "set timeout_style=menu"], "header");
  assert.ok(linesOf(text).includes(`echo ${grubQuote(menu.title!)}`), "title echoed, quoted");
  assert.ok(
    linesOf(text).includes(`echo 'Lab menu: '\\''quoted'\\'' $HOME; rm -rf / # not a comment'`),
    "title quoted as GRUB single-quoted words",
  );

  // an "any" entry is not wrapped in a condition; labels are single-quoted with ' escaped
  assertBlock(text, [
    "",
    `menuentry ${grubQuote(menu.entries[0].label)} --id 'deb' {`,
    `  echo ${grubQuote(`Loading ${menu.entries[0].label}...`)}`,
    "  linux '/debian/linux' priority=low console=ttyS0,115200n8",
    "  initrd '/debian/initrd.gz' '/firmware.cpio.gz'",
    "}",
  ], "deb entry");
  assert.ok(text.includes(`it'\\''s`), "the apostrophe closes, escapes and reopens the quote");

  assertBlock(text, [
    `if [ "$grub_platform" = "pc" ]; then`,
    "  menuentry 'Memtest (BIOS)' --id 'bios_only' {",
    "    echo 'Loading Memtest (BIOS)...'",
    "    linux '/memtest/memtest86+.bin'",
    "  }",
    "fi",
  ], "pcbios entry");

  assertBlock(text, [
    `if [ "$grub_platform" = "efi" ]; then`,
    "  menuentry 'EFI only' --id 'efi_only' {",
    "    echo 'Loading EFI only...'",
    "    linux '/x64/vmlinuz' quiet",
    "    initrd '/x64/initrd.img'",
    "  }",
    "fi",
  ], "efi entry");

  assertBlock(text, [
    `if [ "$grub_cpu" = 'arm64' ]; then`,
    "  menuentry 'ARM64 rescue over HTTP' --id 'arm' {",
    "    echo 'Loading ARM64 rescue over HTTP...'",
    "    linux (http,mirror.example)'/arm64/linux'",
    "    initrd (http,mirror.example)'/arm64/initrd.gz'",
    "  }",
    "fi",
  ], "arm64 HTTP entry");
  assert.ok(linesOf(text).includes(`if [ "$grub_cpu" = 'i386' ]; then`), "i386 condition");

  // what GRUB cannot fetch or expand is left out, each with a NOTE and an echo
  const notes: [string, string][] = [
    ["port", "GRUB cannot fetch http://mirror.example:8080/linux (use a tree path or http://host/path)"],
    ["https", "GRUB cannot fetch https://mirror.example/linux (use a tree path or http://host/path)"],
    ["tftpurl", "GRUB cannot fetch tftp://10.0.0.1/linux (use a tree path or http://host/path)"],
    ["badinitrd", "GRUB cannot fetch https://x.example/i (use a tree path or http://host/path)"],
    ["ipxevar", "its cmdline uses iPXE variables: give it a grub_cmdline"],
  ];
  for (const [id, why] of notes) {
    const line = `entry '${id}' left out: ${why}`;
    assert.ok(linesOf(text).includes(`# NOTE: ${line}`), `NOTE for ${id}`);
    assert.ok(linesOf(text).includes(`echo ${grubQuote("pypxe: " + line)}`), `echo for ${id}`);
    assert.ok(!text.includes(`--id '${id}'`), `${id} must not be a menu entry`);
  }
  assert.doesNotMatch(text, /\(http,[^)]*:/, "no port syntax reaches a GRUB device name");
  assert.ok(!text.includes("${net0/mac"), "iPXE variables never reach GRUB");

  // grub_cmdline replaces cmdline
  assert.equal(linuxLineOf(text, "grubvar"), "linux '/k2' BOOTIF=01-$net_default_mac ip=dhcp");

  // entries keep the order of menu.json; the fixed entries come last
  const ids = [...text.matchAll(/--id '([^']+)'/g)].map((m) => m[1]);
  assert.deepEqual(ids, [
    "deb",
    "bios_only",
    "efi_only",
    "arm",
    "i386_any",
    "grubvar",
    "local",
    "fwsetup",
    "reboot",
  ]);
  assert.ok(text.endsWith(FIXED_TAIL.join("\n") + "\n"));
  // NOTEs come before the title and the entries
  assert.ok(text.indexOf("# NOTE:") < text.indexOf("echo 'Lab menu"));
  assert.ok(text.indexOf("echo 'Lab menu") < text.indexOf("menuentry"));
});

Deno.test("grubConfig: platform and arch together guard the entry with both tests, in valid GRUB", async () => {
  const entries: MenuEntry[] = [];
  for (const platform of ["pcbios", "efi"] as const) {
    for (const arch of ["x86_64", "i386", "arm64"] as const) {
      entries.push(entry({ id: `${platform}_${arch}`, label: `${platform} ${arch}`, platform, arch }));
    }
  }
  const text = grubConfig({ menu: { timeout: 5, entries } });
  const lines = linesOf(text);
  for (const e of entries) {
    const at = lines.findIndex((l) => l.includes(`--id '${e.id}' {`));
    assert.ok(at > 0, `${e.id} is in the menu`);
    let from = at;
    while (from > 0 && lines[from - 1] !== "") from--;
    const guard = lines.slice(from, at).join("\n");
    const platform = e.platform === "efi" ? "efi" : "pc";
    assert.ok(guard.includes(`"$grub_platform" = "${platform}"`), `${e.id}: platform test in\n${guard}`);
    assert.ok(guard.includes(`"$grub_cpu" = '${e.arch}'`), `${e.id}: arch test in\n${guard}`);
  }
  // GRUB's script language has no && or || (grub-script-check: "syntax error")
  await assertGrubSyntax(text, "entries limited by platform and arch");
});

Deno.test("grubConfig: default is an entry id, else local; timeout 0 waits (-1), fractions round", async () => {
  const base = { title: undefined, entries: [entry({ id: "a" }), entry({ id: "b", kernel: "https://x/k" })] };
  const cases: [Partial<MenuFile>, string, number][] = [
    [{ default: "a", timeout: 5 }, "a", 5],
    [{ default: undefined, timeout: 0 }, "local", -1],
    [{ default: "shell", timeout: 3 }, "local", 3], // an iPXE-only item
    [{ default: "iso:images/rescue.iso", timeout: 1 }, "local", 1], // iPXE sanboot: not in GRUB
    [{ default: "b", timeout: 2 }, "local", 2], // b is left out (https)
    [{ default: "nonexistent", timeout: 2.6 }, "local", 3],
    [{ default: "local", timeout: 86400 }, "local", 86400],
  ];
  for (const [over, def, timeout] of cases) {
    const menu = { ...base, timeout: 0, ...over } as MenuFile;
    const text = grubConfig({ menu });
    assertBlock(text, [`set default=${grubQuote(def)}`, `set timeout=${timeout}`], JSON.stringify(over));
    await assertGrubSyntax(text, `default ${over.default}`);
  }
  // through parseMenuFile: "shell" and iso: are valid menu.json defaults
  const parsed = parseMenuFile(JSON.stringify({
    default: "shell",
    entries: [{ id: "x", label: "x", kernel: "k" }],
  }));
  assertBlock(
    grubConfig({ menu: parsed }),
    ["set default='local'", "set timeout=-1"],
    "parsed shell default",
  );
});

Deno.test("grubConfig: plain cmdline words stay bare; others are quoted so GRUB passes them as typed", async () => {
  const cmdline = `console=ttyS0,115200n8 root=/dev/nfs nfsroot=10.0.0.1:/srv/nfs,vers=3 ip=dhcp ` +
    `rd.break=pre-mount foo="a b" -- init=/bin/sh`;
  const text = grubConfig({
    menu: { timeout: 0, entries: [entry({ id: "nfs", kernel: "nfs/vmlinuz", cmdline })] },
  });
  // GRUB joins its arguments with one space: `'foo="a' 'b"'` reaches the kernel as `foo="a b"`
  assert.equal(
    linuxLineOf(text, "nfs"),
    `linux '/nfs/vmlinuz' console=ttyS0,115200n8 root=/dev/nfs nfsroot=10.0.0.1:/srv/nfs,vers=3 ip=dhcp ` +
      `rd.break=pre-mount 'foo="a' 'b"' -- init=/bin/sh`,
  );
  // blank cmdline: nothing after the kernel
  const blank = grubConfig({ menu: { timeout: 0, entries: [entry({ id: "b", cmdline: "   " })] } });
  assert.equal(linuxLineOf(blank, "b"), "linux '/vmlinuz'");
  // grub_cmdline "" wins over an iPXE cmdline (no arguments, entry kept)
  const empty = grubConfig({
    menu: { timeout: 0, entries: [entry({ id: "e", cmdline: "x=${net0/ip}", grubCmdline: "" })] },
  });
  assert.equal(linuxLineOf(empty, "e"), "linux '/vmlinuz'");
  await assertGrubSyntax(text, "an ordinary cmdline");
  await assertGrubSyntax(blank, "a blank cmdline");
  await assertGrubSyntax(empty, "an empty grub_cmdline");
});

Deno.test("grubConfig: iPXE variable forms that GRUB cannot expand are detected in cmdline", () => {
  for (
    const v of ["${net0/mac}", "${net0/mac:hexhyp}", "${next-server}", "${ip:ipv4}", "${239.1}", "${a.b}"]
  ) {
    const text = grubConfig({ menu: { timeout: 0, entries: [entry({ id: "v", cmdline: `x=${v}` })] } });
    assert.ok(!text.includes("--id 'v'"), `${v} must leave the entry out`);
    assert.match(text, /# NOTE: entry 'v' left out: its cmdline uses iPXE variables/);
  }
});

Deno.test("grubConfig: hostile labels, ids and titles (quotes, $, ;, braces, control chars) stay valid GRUB", async () => {
  // deterministic pseudo-random labels over GRUB's special characters; 300 entries in one config
  let seed = 0x9e3779b9;
  const next = () => {
    seed ^= seed << 13;
    seed ^= seed >>> 17;
    seed ^= seed << 5;
    return (seed >>> 0) / 4294967296;
  };
  const alphabet = [..."'\"$\\;&|<>{}()[]#*?!`~ \t\x01\x7fabcXYZ09-_.:/=", "é", "😀", "${", "$(", "'\\''"];
  const entries: MenuEntry[] = [];
  for (let i = 0; i < 300; i++) {
    const n = 1 + Math.floor(next() * 24);
    let label = "";
    for (let j = 0; j < n; j++) label += alphabet[Math.floor(next() * alphabet.length)];
    if (label.trim() === "") label = "x" + label;
    entries.push(entry({ id: `e${i}`, label, kernel: `dir ${i}/it's $k;{}.img` }));
  }
  const text = grubConfig({ menu: { title: "t'\"$;{}#\x02", timeout: 3, default: "e7", entries } });
  assert.equal((text.match(/^\s*menuentry /gm) ?? []).length, 303);
  for (const line of linesOf(text)) {
    assert.ok(
      ![...line].some((ch) => ch.charCodeAt(0) < 0x20 || ch === "\x7f"),
      `control characters reach GRUB: ${JSON.stringify(line)}`,
    );
  }
  await assertGrubSyntax(text, "300 hostile labels");
});

Deno.test("grubConfig: every entry of a parsed menu.json with many entries is valid GRUB", async () => {
  const raw = {
    timeout: 10,
    entries: Array.from({ length: 500 }, (_, i) => ({
      id: `n${i}`,
      label: `Entry ${i}: it's "${i}"`,
      kernel: i % 3 === 0 ? `http://h${i}.example/k` : `k/${i}`,
      initrd: i % 2 === 0 ? [`i/${i}.gz`, `i/${i}b.gz`] : `i/${i}.gz`,
      cmdline: i % 5 === 0 ? "" : `n=${i} console=tty0`,
      // one condition each (both together: see the platform-and-arch test)
      platform: i % 2 === 0 ? (["any", "pcbios", "efi"] as const)[i % 3] : "any",
      arch: i % 2 === 1 ? (["any", "x86_64", "i386", "arm64"] as const)[i % 4] : "any",
    })),
  };
  const text = grubConfig({ menu: parseMenuFile(JSON.stringify(raw)) });
  assert.equal((text.match(/^\s*menuentry /gm) ?? []).length, 503);
  assert.equal(
    (text.match(/^if /gm) ?? []).length,
    1 + raw.entries.filter((e) => e.platform !== "any" || e.arch !== "any").length,
  );
  await assertGrubSyntax(text, "500 entries");
});

// Found while writing these tests: cmdline is pasted into the GRUB script unquoted. What iPXE passes
// through verbatim, GRUB's lexer acts on. These two tests accept either fix: the entry left out with a
// NOTE, or the characters quoted so that they reach the kernel as typed.

Deno.test("grubConfig: cmdline with & | < > (a preseed URL query) does not break grub.cfg's syntax", async () => {
  const cmdlines = [
    "url=http://10.0.0.1/preseed.cfg?a=1&b=2 auto=true",
    "ks=http://10.0.0.1/ks.cfg|x",
    "console=ttyS0 quiet <x>",
  ];
  const failures: string[] = [];
  for (const cmdline of cmdlines) {
    const text = grubConfig({ menu: { timeout: 0, entries: [entry({ id: "m", label: "M", cmdline })] } });
    const check = await grubScriptCheck(text);
    if (check !== null && check.code !== 0) {
      failures.push(
        `${cmdline}: grub-script-check exit ${check.code}: ${check.output.trim().replace(/\n/g, " / ")}`,
      );
    }
    const line = linuxLineOf(text, "m");
    if (line === undefined) {
      if (!/# NOTE: entry 'm' left out/.test(text)) failures.push(`${cmdline}: left out without a NOTE`);
    } else if (grubActiveChars(line).length > 0) {
      failures.push(`${cmdline} -> \`${line}\`: GRUB acts on ${grubActiveChars(line).join(" ")}`);
    }
  }
  assert.deepEqual(failures, []);
});

Deno.test("grubConfig: cmdline ; $ # reach the kernel as typed (GRUB does not split, expand or cut them)", () => {
  const cmdlines = [
    // Ubuntu's documented autoinstall argument: GRUB would run `s=http://...` as a second command
    "autoinstall ds=nocloud-net;s=http://10.0.0.1:3003/",
    // iPXE settings without a scope (${ip}, ${gateway}, ${netmask}): GRUB expands them to ""
    "ip=${ip}::${gateway}:${netmask}",
    // a crypted password in a preseed argument: GRUB expands $6, $salt to ""
    "passwd/root-password-crypted=$6$salt$hash",
    // a word starting with # is a GRUB comment: the rest of the line is dropped
    "console=ttyS0 #1 quiet",
  ];
  const failures: string[] = [];
  for (const cmdline of cmdlines) {
    const text = grubConfig({ menu: { timeout: 0, entries: [entry({ id: "m", label: "M", cmdline })] } });
    const line = linuxLineOf(text, "m");
    if (line === undefined) {
      if (!/# NOTE: entry 'm' left out/.test(text)) failures.push(`${cmdline}: left out without a NOTE`);
      continue;
    }
    const active = grubActiveChars(line);
    if (active.length > 0) failures.push(`${cmdline} -> \`${line}\`: GRUB acts on ${active.join(" ")}`);
  }
  assert.deepEqual(failures, []);
});

Deno.test("grubConfig: a kernel URL with an iPXE variable (http://${next-server}/...) keeps grub.cfg valid", async () => {
  // valid for iPXE (the URL is used verbatim and iPXE expands the setting)
  const menu = parseMenuFile(JSON.stringify({
    entries: [
      { id: "ok", label: "ok", kernel: "k" },
      {
        id: "ns",
        label: "Next server",
        kernel: "http://${next-server}/vmlinuz",
        initrd: "http://${next-server}/i",
      },
    ],
  }));
  const text = grubConfig({ menu });
  const failures: string[] = [];
  const check = await grubScriptCheck(text);
  if (check !== null && check.code !== 0) {
    failures.push(`grub-script-check exit ${check.code}: ${check.output.trim().replace(/\n/g, " / ")}`);
  }
  const line = linuxLineOf(text, "ns");
  if (line === undefined) {
    if (!/# NOTE: entry 'ns' left out/.test(text)) failures.push("left out without a NOTE");
  } else if (grubActiveChars(line).length > 0) failures.push(`GRUB expands the host: ${line}`);
  assert.deepEqual(failures, []);
});

// ---------------------------------------------------------------------------------------------------
// grubQuote / grubPath

Deno.test("grubQuote: single quotes, ' closed/escaped/reopened, control characters become spaces", async () => {
  const table: [string, string][] = [
    ["", "''"],
    ["plain", "'plain'"],
    ["it's", `'it'\\''s'`],
    ["'", `''\\'''`],
    ["''", `''\\'''\\'''`],
    ["$HOME ${x} $(id) `id`", "'$HOME ${x} $(id) `id`'"],
    [`a"b\\c;d&e|f<g>h{i}j#k`, `'a"b\\c;d&e|f<g>h{i}j#k'`],
    ["tab\there\nnl\rcr\x00nul\x1fus\x7fdel", "'tab here nl cr nul us del'"],
    ["é 😀 ü", "'é 😀 ü'"],
  ];
  for (const [input, want] of table) assert.equal(grubQuote(input), want, JSON.stringify(input));
  // GRUB reads each back as one word: `echo` with all of them is valid
  await assertGrubSyntax(table.map(([input]) => `echo ${grubQuote(input)}`).join("\n") + "\n", "echo quoted");
});

Deno.test("grubPath: tree paths from the server root, http://host/path as (http,host), else null", async () => {
  const table: [string, string | null][] = [
    ["vmlinuz", "'/vmlinuz'"],
    ["/boot/vmlinuz", "'/boot/vmlinuz'"],
    ["///boot//x", "'/boot//x'"],
    ["dir with space/it's.img", `'/dir with space/it'\\''s.img'`],
    ["$x;{y}", "'/$x;{y}'"],
    ["http://host/path", "(http,host)'/path'"],
    ["HTTP://Mirror.Example/a b", "(http,Mirror.Example)'/a b'"],
    ["http://10.0.0.1/x?y=1&z=2", "(http,10.0.0.1)'/x?y=1&z=2'"],
    ["http://host", "(http,host)'/'"],
    ["http://host/", "(http,host)'/'"],
    ["http://host:8080/x", null],
    ["http://host:80/x", null],
    ["http://user@host/x", null],
    ["http://user:pw@host/x", null],
    ["http:///x", null],
    ["http://[::1]/x", null],
    ["https://host/x", null],
    ["tftp://host/x", null],
    ["ftp://host/x", null],
    ["nfs://host/x", null],
  ];
  for (const [input, want] of table) assert.equal(grubPath(input), want, input);
  const valid = table.filter(([, want]) => want !== null).map(([, want]) => `linux ${want}`);
  await assertGrubSyntax(valid.join("\n") + "\n", "linux with every grubPath form");
});

// ---------------------------------------------------------------------------------------------------
// NetbootFs: the generated grub/grub.cfg

/** An overlay and an (empty) embedded tree in one temp dir. */
async function trees(files: Record<string, string> = {}, embeddedFiles: Record<string, string> = {}) {
  const base = await Deno.makeTempDir({ prefix: "pypxe-grub-" });
  const overlay = join(base, "overlay");
  const embedded = join(base, "embedded");
  for (const [root, tree] of [[overlay, files], [embedded, embeddedFiles]] as const) {
    await Deno.mkdir(root, { recursive: true });
    for (const [name, content] of Object.entries(tree)) {
      const path = join(root, name);
      await Deno.mkdir(path.slice(0, path.lastIndexOf("/")), { recursive: true });
      await Deno.writeTextFile(path, content);
    }
  }
  const fs = await NetbootFs.open({ overlay, embedded });
  // what TFTP and HTTP serve: the tree plus the generated files; no reuse window, so edits show at once
  const served = new BootFiles({ netboot: fs, revalidateMs: 0 });
  return { base, overlay, embedded, fs, served, cleanup: () => Deno.remove(base, { recursive: true }) };
}

const decode = (bytes: Uint8Array | undefined) => new TextDecoder().decode(bytes);

Deno.test("BootFiles: grub/grub.cfg is generated from the overlay's menu.json, under any spelling", async () => {
  const t = await trees({ "menu.json": LAB_MENU, "debian/linux": "k" });
  try {
    assert.ok(GENERATED_FILES.includes(GRUB_CONFIG_NAME));
    assert.equal(GRUB_CONFIG_NAME, "grub/grub.cfg");
    const want = grubConfig({ menu: parseMenuFile(LAB_MENU) });
    for (
      const name of [
        "grub/grub.cfg",
        "/GRUB/grub.cfg",
        "GRUB/GRUB.CFG",
        "\\grub\\grub.cfg",
        "grub//./grub.cfg",
      ]
    ) {
      const file = await t.served.resolve(name);
      assert.equal(file.layer, "generated", name);
      assert.equal(file.name, "grub/grub.cfg", name);
      assert.equal(file.path, "", name);
      assert.equal(decode(file.content), want, name);
      assert.equal(file.size, file.content!.length, name);
    }
    await assertGrubSyntax(want, "the generated file");
    // only that name is generated
    for (const name of ["grub.cfg", "grub/x86_64-efi/grub.cfg", "grub/grub.cfg.bak", "boot/grub/grub.cfg"]) {
      await assert.rejects(
        () => t.served.resolve(name),
        (err: unknown) => err instanceof NetbootError && err.code === "not-found",
        name,
      );
    }
    // and it does not appear in listings of the real files
    assert.ok(!(await t.fs.list()).some((f) => f.name.toLowerCase().includes("grub.cfg")));
  } finally {
    await t.cleanup();
  }
});

Deno.test("BootFiles: without menu.json the generated menu is the default one, dated 1970", async () => {
  const t = await trees({ "vmlinuz": "k" });
  try {
    const file = await t.served.resolve("grub/grub.cfg");
    assert.equal(file.layer, "generated");
    assert.equal(decode(file.content), grubConfig({ menu: null }));
    assert.equal(file.mtime?.getTime(), 0);
  } finally {
    await t.cleanup();
  }
});

Deno.test("BootFiles: menu.json from the embedded layer feeds the generated menu too", async () => {
  const menu = JSON.stringify({ timeout: 4, entries: [{ id: "emb", label: "Embedded", kernel: "e/k" }] });
  const t = await trees({}, { "menu.json": menu });
  try {
    const file = await t.served.resolve("grub/grub.cfg");
    assert.equal(file.layer, "generated");
    assert.equal(decode(file.content), grubConfig({ menu: parseMenuFile(menu) }));
    assert.match(decode(file.content), /--id 'emb'/);
  } finally {
    await t.cleanup();
  }
});

Deno.test("BootFiles: a user's grub/grub.cfg (overlay or embedded, any case) wins over the generated one", async () => {
  const mine = "set timeout=1\nmenuentry 'mine' {\n  linux /mine\n}\n";
  const t = await trees({ "menu.json": LAB_MENU, "grub/grub.cfg": mine });
  try {
    for (const name of ["grub/grub.cfg", "/GRUB/grub.cfg"]) {
      const file = await t.served.resolve(name);
      assert.equal(file.layer, "overlay", name);
      assert.equal(file.content, undefined);
      assert.equal(await Deno.readTextFile(file.path), mine);
    }
  } finally {
    await t.cleanup();
  }
  const mixed = await trees({ "menu.json": LAB_MENU, "Grub/GRUB.cfg": mine });
  try {
    const file = await mixed.served.resolve("grub/grub.cfg");
    assert.equal(file.layer, "overlay");
    assert.equal(await Deno.readTextFile(file.path), mine);
  } finally {
    await mixed.cleanup();
  }
  const embedded = await trees({ "menu.json": LAB_MENU }, { "grub/grub.cfg": mine });
  try {
    const file = await embedded.served.resolve("grub/grub.cfg");
    assert.equal(file.layer, "embedded");
    assert.equal(await Deno.readTextFile(file.path), mine);
  } finally {
    await embedded.cleanup();
  }
});

Deno.test("BootFiles: a broken menu.json gives the default menu with the error as NOTE/echo, valid GRUB", async () => {
  const broken: string[] = [
    "{ not json",
    JSON.stringify({ entries: [{ label: "no kernel" }] }),
    JSON.stringify({ entries: [{ id: "x", label: "x", kernel: "k", platform: "uefi" }] }),
    JSON.stringify({ entries: [{ id: "x", label: "x", kernel: "k", arch: "riscv64" }] }),
    JSON.stringify({ entries: [{ id: "x", label: "x", kernel: "k", initrd: ["a\nb"] }] }),
    JSON.stringify({ entries: [], default: "nope" }),
    JSON.stringify({ entries: [{ id: "x", label: "x", kernel: "k", grub_cmdline: 3 }] }),
    "[]",
    "",
  ];
  for (const text of broken) {
    const t = await trees({ "menu.json": text });
    try {
      let message = "";
      try {
        parseMenuFile(text);
        assert.fail(`parseMenuFile accepted ${text}`);
      } catch (err) {
        assert.ok(err instanceof MenuFileError, String(err));
        message = err.message;
      }
      const file = await t.served.resolve("grub/grub.cfg");
      assert.equal(file.layer, "generated");
      const cfg = decode(file.content);
      assert.equal(cfg, grubConfig({ menu: null, notice: message }), text);
      assert.ok(linesOf(cfg).includes(`# NOTE: ${message.replace(/[\r\n]/g, " ")}`), cfg);
      assert.ok(linesOf(cfg).includes(`echo ${grubQuote("pypxe: " + message)}`), cfg);
      assert.match(cfg, /^set default='local'$/m);
      assert.match(cfg, /^set timeout=10$/m);
      await assertGrubSyntax(cfg, `the menu for broken menu.json ${JSON.stringify(text)}`);
    } finally {
      await t.cleanup();
    }
  }
});

Deno.test("BootFiles: a menu.json directory is no menu (default config, no error)", async () => {
  const t = await trees({ "menu.json/inner": "x" });
  try {
    const file = await t.served.resolve("grub/grub.cfg");
    assert.equal(decode(file.content), grubConfig({ menu: null }));
  } finally {
    await t.cleanup();
  }
});

Deno.test("BootFiles: the generated file's mtime follows menu.json and its content follows edits", async () => {
  const t = await trees({ "menu.json": LAB_MENU });
  try {
    const path = join(t.overlay, "menu.json");
    const first = new Date(1_700_000_000_000);
    await Deno.utime(path, first, first);
    const a = await t.served.resolve("grub/grub.cfg");
    assert.equal(a.mtime?.getTime(), first.getTime());

    const edited = JSON.stringify({
      timeout: 3,
      entries: [{ id: "new", label: "New entry", kernel: "n/k" }],
    });
    await Deno.writeTextFile(path, edited);
    const second = new Date(1_700_000_100_000);
    await Deno.utime(path, second, second);
    const b = await t.served.resolve("/GRUB/grub.cfg");
    assert.equal(b.mtime?.getTime(), second.getTime());
    assert.equal(decode(b.content), grubConfig({ menu: parseMenuFile(edited) }));
    assert.notEqual(decode(b.content), decode(a.content));
    assert.equal(b.size, b.content!.length);

    // the real stat time, not a fixed one
    await Deno.writeTextFile(path, LAB_MENU);
    const stat = await Deno.stat(path);
    const c = await t.served.resolve("grub/grub.cfg");
    assert.equal(c.mtime?.getTime(), stat.mtime?.getTime());

    // menu.json removed: back to the default menu, dated 1970
    await Deno.remove(path);
    const d = await t.served.resolve("grub/grub.cfg");
    assert.equal(d.mtime?.getTime(), 0);
    assert.equal(decode(d.content), grubConfig({ menu: null }));
  } finally {
    await t.cleanup();
  }
});

// ---------------------------------------------------------------------------------------------------
// isRoutineMiss

Deno.test("isRoutineMiss: PXELINUX probes, Pi optional files, shim and GRUB extras yes; boot files no", () => {
  const routine = [
    "pxelinux.cfg/01-52-54-00-12-34-56",
    "pxelinux.cfg/C0A8020A",
    "pxelinux.cfg/default",
    "/pxelinux.cfg/C0A80",
    "\\pxelinux.cfg\\default",
    "PXELINUX.CFG/Default",
    "bootsig.bin",
    "autoboot.txt",
    "1234abcd/bootsig.bin",
    "dc-a6-32-01-02-03/recovery.elf",
    "pieeprom.sig",
    "pieeprom.upd",
    "recovery.bin",
    "revocations_sbat.efi",
    "revocations.efi",
    "/EFI/BOOT/revocations_sbat.efi",
    "shim_certificate_0.efi",
    "\\EFI\\debian\\shim_certificate_0.efi",
    "/grub/x86_64-efi/command.lst",
    "grub/x86_64-efi/fs.lst",
    "grub/x86_64-efi/crypto.lst",
    "grub/x86_64-efi/terminal.lst",
    "grub/x86_64-efi/normal.mod",
    "grub/x86_64-efi/grub.cfg",
    "grub/arm64-efi/fs.lst",
    "grub/arm64-efi/grub.cfg",
    "grub/i386-pc/command.lst",
    "GRUB/X86_64-EFI/COMMAND.LST",
    "grub/fonts/unicode.pf2",
    "/grub/locale/en.mo",
  ];
  const notRoutine = [
    "vmlinuz",
    "grub/grub.cfg",
    "/grub/grub.cfg",
    "grubx64.efi",
    "grubaa64.efi",
    "shimx64.efi",
    "mmx64.efi",
    "pxelinux.0",
    "ipxe.efi",
    "boot.ipxe",
    "start4.elf",
    "bootcode.bin",
    "config.txt",
    "debian/initrd.gz",
    "pxelinux.cfg",
    "grub/x86_64-efi/linux.efi",
    "grub/x86_64-efi/sub/fs.lst",
    "revocations_sbat.efi.bak",
    "my-revocations.efi",
    "menu.json",
  ];
  for (const name of routine) assert.equal(isRoutineMiss(name), true, `${name} should be routine`);
  for (const name of notRoutine) assert.equal(isRoutineMiss(name), false, `${name} should not be routine`);
});

// ---------------------------------------------------------------------------------------------------
// piSizeWarnings

/** Creates a sparse file of `size` bytes (no data written). */
async function sparse(path: string, size: number): Promise<void> {
  await Deno.mkdir(path.slice(0, path.lastIndexOf("/")), { recursive: true });
  using file = await Deno.open(path, { write: true, create: true, truncate: true });
  await file.truncate(size);
}

Deno.test("piSizeWarnings: only trees with Pi firmware; one warning per file above 65535 KiB", async () => {
  assert.equal(PI_MAX_FILE_SIZE, 65535 * 1024);
  // no Pi firmware: a huge file is fine
  const plain = await trees({ "vmlinuz": "k" });
  try {
    await sparse(join(plain.overlay, "big.img"), PI_MAX_FILE_SIZE + 1);
    assert.deepEqual(await piSizeWarnings(plain.fs), []);
  } finally {
    await plain.cleanup();
  }

  for (const firmware of ["bootcode.bin", "start4.elf", "start.elf"]) {
    const t = await trees({ [firmware]: "firmware" });
    try {
      assert.deepEqual(await piSizeWarnings(t.fs), [], `${firmware}: no big file, no warning`);
      await sparse(join(t.overlay, "exact.img"), PI_MAX_FILE_SIZE);
      assert.deepEqual(await piSizeWarnings(t.fs), [], `${firmware}: exactly the limit is fine`);
      await sparse(join(t.overlay, "images", "big.img"), PI_MAX_FILE_SIZE + 1);
      const warnings = await piSizeWarnings(t.fs);
      assert.equal(warnings.length, 1, `${firmware}: ${warnings.join("\n")}`);
      assert.equal(
        warnings[0],
        `netboot: images/big.img is 64.0 MiB: a Raspberry Pi cannot fetch it over TFTP ` +
          `(at most ${PI_MAX_FILE_SIZE} bytes: 65535 blocks of 1024 bytes, no rollover)`,
      );
      assert.ok(!warnings[0].includes("exact.img"));
    } finally {
      await t.cleanup();
    }
  }
});

Deno.test("piSizeWarnings: firmware in the embedded layer counts; several big files, each named", async () => {
  const t = await trees({}, { "bootcode.bin": "fw" });
  try {
    await sparse(join(t.overlay, "a.img"), PI_MAX_FILE_SIZE + 1);
    await sparse(join(t.embedded, "kernels", "b.img"), 100 * 1024 * 1024);
    const warnings = await piSizeWarnings(t.fs);
    assert.equal(warnings.length, 2, warnings.join("\n"));
    assert.match(warnings[0], /^netboot: a\.img is 64\.0 MiB:/);
    assert.match(warnings[1], /^netboot: kernels\/b\.img is 100\.0 MiB:/);
  } finally {
    await t.cleanup();
  }
});
