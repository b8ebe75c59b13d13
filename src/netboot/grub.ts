/**
 * The generated GRUB menu, `grub/grub.cfg`: what Debian's signed network GRUB (`grubnetx64.efi`, loaded
 * by shim in the Secure Boot chain, and `grubnetaa64.efi` on ARM64) reads over TFTP. Its embedded
 * prefix is `/grub` on the boot server, and it sources `grub/<cpu>-efi/grub.cfg` when present, else
 * `grub/grub.cfg`.
 *
 * The menu has the kernel/initrd entries of `menu.json` (the same file the iPXE menu uses) and the tree's
 * kernel folders (`dropins.ts`; iPXE scripts and ISOs are iPXE-only), then local boot, firmware setup and
 * reboot. Entries are filtered at run time on GRUB's own `$grub_platform` and
 * `$grub_cpu`, so one file serves every client. Pure: the caller reads `menu.json`.
 * @module
 */
import { dropInDefault, type DropInKernel } from "./dropins.ts";
import type { MenuEntry, MenuFile } from "./menu.ts";

/** Where GRUB looks for its configuration in the netboot tree. */
export const GRUB_CONFIG_NAME = "grub/grub.cfg";

/** Inputs of {@linkcode grubConfig}. */
export interface GrubConfigOptions {
  /** The parsed `menu.json`, or null when there is none (or it is broken, see `notice`). */
  menu: MenuFile | null;
  /** A note shown when the menu starts (e.g. a `menu.json` error). */
  notice?: string;
  /** Kernel folders of the tree, after the `menu.json` entries. */
  kernels?: readonly DropInKernel[];
  /** Drop-ins left out and why, shown like `notice`. */
  warnings?: readonly string[];
}

/** A GRUB word in single quotes: nothing inside is expanded; `'` itself is closed, escaped, reopened. */
export function grubQuote(text: string): string {
  return `'${printable(text).replaceAll("'", `'\\''`)}'`;
}

/** `text` with control characters (line breaks included) as spaces. */
function printable(text: string): string {
  return [...text].map((ch) => (ch.charCodeAt(0) < 0x20 || ch === "\x7f" ? " " : ch)).join("");
}

/** A word of a kernel command line for GRUB: bare when plain, else quoted (as typed, no expansion). */
export function grubWord(word: string): string {
  return /^[A-Za-z0-9_.\/:,=+@%^~-]+$/.test(word) ? word : grubQuote(word);
}

/** iPXE settings (`${net0/mac}`, `${next-server}`, `${ip}`), which GRUB cannot expand. */
const IPXE_VARIABLE = /\$\{[^}]*\}/;

/**
 * How GRUB names a file of an entry: a tree path is read from the boot server (`/path`), an
 * `http://host/path` URL becomes `(http,host)/path`. Returns null for what GRUB cannot fetch.
 */
export function grubPath(path: string): string | null {
  if (IPXE_VARIABLE.test(path)) return null;
  const url = /^([a-z][a-z0-9+.-]*):\/\/([^/]*)(\/.*)?$/i.exec(path);
  if (url === null) return grubQuote("/" + path.replace(/^\/+/, ""));
  // GRUB 2.06 has no port syntax in device names, nor HTTPS or TFTP URLs to other hosts than ours
  if (url[1].toLowerCase() !== "http" || !/^[A-Za-z0-9.-]+$/.test(url[2])) return null;
  return `(http,${url[2]})${grubQuote(url[3] ?? "/")}`;
}

/** Why an entry cannot be in the GRUB menu, or null when it can. */
function unusable(entry: MenuEntry): string | null {
  for (const path of [entry.kernel, ...entry.initrd]) {
    if (IPXE_VARIABLE.test(path)) return `${path} uses iPXE variables`;
    if (grubPath(path) === null) return `GRUB cannot fetch ${path} (use a tree path or http://host/path)`;
  }
  if (entry.grubCmdline === undefined && IPXE_VARIABLE.test(entry.cmdline)) {
    return "its cmdline uses iPXE variables: give it a grub_cmdline";
  }
  return null;
}

/** Why GRUB cannot boot `entry` (iPXE variables, a URL GRUB cannot fetch), or null when it can. */
export function grubUnusable(entry: MenuEntry): string | null {
  return unusable(entry);
}

/**
 * The `linux` and `initrd` lines that load `entry` (call only when {@linkcode grubUnusable} is null).
 * `cmdline` reaches the kernel as typed (each word quoted: no `;`, `$`, `#`, `&` surprises);
 * `grub_cmdline` is GRUB syntax, so `$net_default_mac` and friends expand.
 */
export function grubLoadLines(entry: MenuEntry): string[] {
  const cmdline = entry.grubCmdline ??
    entry.cmdline.split(/\s+/).filter((w) => w !== "").map(grubWord).join(" ");
  const lines = [`linux ${grubPath(entry.kernel)}${cmdline.trim() === "" ? "" : " " + cmdline}`];
  if (entry.initrd.length > 0) lines.push(`initrd ${entry.initrd.map((p) => grubPath(p)).join(" ")}`);
  return lines;
}

/** GRUB conditions under which an entry is shown (nested `if`s: GRUB's script has no `&&`). */
function conditions(entry: MenuEntry): string[] {
  const tests: string[] = [];
  if (entry.platform === "pcbios") tests.push(`[ "$grub_platform" = "pc" ]`);
  if (entry.platform === "efi") tests.push(`[ "$grub_platform" = "efi" ]`);
  if (entry.arch !== "any") tests.push(`[ "$grub_cpu" = ${grubQuote(entry.arch)} ]`);
  return tests;
}

/**
 * Renders `grub/grub.cfg`.
 *
 * @example
 * ```ts
 * grubConfig({ menu: null }); // local boot, firmware setup and reboot, local after 10 s
 * ```
 */
export function grubConfig(opts: GrubConfigOptions): string {
  const menu = opts.menu;
  const out: string[] = [
    "# Generated by pypxe from menu.json. To replace it, put your own grub/grub.cfg in --netboot-dir.",
  ];
  const skipped: string[] = [];
  const entries = (menu?.entries ?? []).filter((entry) => {
    const why = unusable(entry);
    if (why !== null) skipped.push(`entry '${entry.id}' left out: ${why}`);
    return why === null;
  });
  const kernels = (opts.kernels ?? []).filter((kernel) => {
    const why = unusable(kernel);
    if (why !== null) skipped.push(`kernel folder '${kernel.folder}' left out: ${why}`);
    return why === null;
  });
  const ids = new Set(entries.map((e) => e.id));
  const def = dropInDefault(menu?.default, kernels, []) ??
    (menu?.default !== undefined && ids.has(menu.default) ? menu.default : "local");
  // without menu.json the menu boots the local disk after 10 s, like the default boot.ipxe
  const timeout = menu === null ? 10 : menu.timeout > 0 ? Math.round(menu.timeout) : -1;
  out.push(
    `set default=${grubQuote(def)}`,
    `set timeout=${timeout}`,
    "set timeout_style=menu",
  );
  const notes = [...(opts.notice === undefined ? [] : [opts.notice]), ...(opts.warnings ?? []), ...skipped];
  for (const line of notes) {
    out.push(`# NOTE: ${printable(line)}`, `echo ${grubQuote("pypxe: " + line)}`);
  }
  if (menu?.title !== undefined) out.push(`echo ${grubQuote(menu.title)}`);
  for (const entry of [...entries, ...kernels]) {
    const tests = conditions(entry);
    const indent = "  ".repeat(tests.length);
    out.push("");
    tests.forEach((test, i) => out.push(`${"  ".repeat(i)}if ${test}; then`));
    out.push(
      `${indent}menuentry ${grubQuote(entry.label)} --id ${grubQuote(entry.id)} {`,
      `${indent}  echo ${grubQuote(`Loading ${entry.label}...`)}`,
      ...grubLoadLines(entry).map((line) => `${indent}  ${line}`),
    );
    out.push(`${indent}}`);
    for (let i = tests.length - 1; i >= 0; i--) out.push(`${"  ".repeat(i)}fi`);
  }
  out.push(
    "",
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
  );
  return out.join("\n") + "\n";
}
