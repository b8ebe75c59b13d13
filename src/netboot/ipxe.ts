/**
 * Generated iPXE boot menus: local disk, iPXE shell, every `*.iso` of the netboot tree (sanboot over
 * HTTP, memdisk on BIOS for small ones), kernel/initrd entries from `menu.json`, and the tree's drop-in
 * kernel folders and iPXE scripts (`dropins.ts`). Pure: the inputs (ISO list, parsed menu file,
 * drop-ins) are gathered by `files.ts`.
 * @module
 */
import { formatSize } from "../format.ts";
import { dropInDefault, type DropInKernel, scriptId } from "./dropins.ts";
import { type IsoImage, MEMDISK_MAX_ISO, type MenuEntry } from "./menu.ts";

/** Inputs of {@linkcode ipxeMenu}. */
export interface IpxeMenuOptions {
  /** Address the client reached us on (IP or host name, IPv6 in brackets). */
  serverIp: string;
  /** HTTP port; null when HTTP is off (ISO items need HTTP and are then left out). */
  httpPort: number | null;
  isos: readonly IsoImage[];
  /** Entries of the menu file (see {@linkcode parseMenuFile}). */
  entries: readonly MenuEntry[];
  /** How the script itself was fetched; kernel/initrd paths load over the same transport. */
  transport: "http" | "tftp";
  /** Path of memdisk in the tree, when present (enables the BIOS memdisk alternative for ISOs). */
  memdisk?: string | null;
  title?: string;
  /** Seconds before the default item boots; 0 waits. */
  timeout?: number;
  /** Default item: an entry id, `local`, `shell`, `iso:PATH`, `kernel:FOLDER` or `script:NAME`. */
  default?: string;
  /** A note rendered as a comment and shown in the menu (e.g. a menu.json error). */
  notice?: string;
  /** Kernel folders of the tree (after the `menu.json` entries). */
  kernels?: readonly DropInKernel[];
  /** iPXE scripts of the tree root, chained over the menu's transport. */
  scripts?: readonly string[];
  /** Drop-ins left out and why, shown like `notice` (at most {@linkcode MAX_WARNINGS}). */
  warnings?: readonly string[];
}

/** At most this many drop-in warnings are shown in a menu. */
export const MAX_WARNINGS = 10;

export { formatSize } from "../format.ts";

/** Percent-encodes a relative path for a URL inside an iPXE script (no `${` expansion possible). */
export function encodePath(name: string): string {
  return name.split("/").map((seg) => encodeURIComponent(seg)).join("/");
}

/**
 * Text safe to show as a menu item: one line, printable, no iPXE variable expansion, and no word that
 * iPXE reads as a command separator (`||`, `&&`, `;`) or as the start of a comment (`#...`).
 */
export function displayText(text: string): string {
  const printable = [...text].map((ch) => (ch.charCodeAt(0) < 0x20 || ch === "\x7f" ? " " : ch)).join("");
  return printable.replaceAll("$", "S").split(" ").map((word) =>
    word === "||" || word === "&&"
      ? `${word[0]} ${word[1]}`
      : word === ";"
      ? ","
      : word.startsWith("#")
      ? `_${word}`
      : word
  ).join(" ").slice(0, 120);
}

/** True for an absolute URL (`http://...`), false for a path of the tree. */
function isUrl(path: string): boolean {
  return /^[a-z][a-z0-9+.-]*:\/\//i.test(path);
}

/** The URL a path of the tree is fetched from, or the path itself when it is already a URL. */
export function urlOf(path: string, base: string): string {
  if (isUrl(path)) return path;
  return `${base}/${encodePath(path.replace(/^\/+/, ""))}`;
}

/** The name an initrd is loaded as (`initrd=NAME` on the kernel line): its file name, in safe characters. */
function basename(path: string): string {
  const clean = isUrl(path) ? path.replace(/[?#].*$/, "") : path;
  return clean.slice(clean.lastIndexOf("/") + 1).replace(/[^A-Za-z0-9._+-]/g, "_") || "initrd";
}

/**
 * Renders the iPXE menu script. Per-client variables (`${platform}`, `${buildarch}`, `${net0/mac}`)
 * are left for iPXE to expand, so one script serves BIOS and UEFI clients.
 *
 * @example
 * ```ts
 * ipxeMenu({ serverIp: "192.168.2.2", httpPort: 80, isos: [], entries: [], transport: "http" });
 * ```
 */
export function ipxeMenu(opts: IpxeMenuOptions): string {
  const host = opts.serverIp;
  const httpBase = opts.httpPort === null
    ? null
    : `http://${host}${opts.httpPort === 80 ? "" : `:${opts.httpPort}`}`;
  const fileBase = opts.transport === "http" && httpBase !== null ? httpBase : `tftp://${host}`;
  const isos = httpBase === null ? [] : opts.isos;
  const memdisk = opts.memdisk ?? null;
  const memdiskIsos = memdisk === null ? [] : isos.filter((iso) => iso.size <= MEMDISK_MAX_ISO);
  const kernels = opts.kernels ?? [];
  const scripts = opts.scripts ?? [];
  const warnings = (opts.warnings ?? []).slice(0, MAX_WARNINGS);
  const ids = new Set(["local", "shell", ...opts.entries.map((e) => e.id)]);
  // `iso:PATH` picks an ISO of the tree by its path (its item id depends on the listing order)
  const isoDefault = opts.default?.startsWith("iso:")
    ? isos.findIndex((iso) => iso.name === opts.default!.slice(4).replace(/^\/+/, ""))
    : -1;
  const dropIn = dropInDefault(opts.default, kernels, scripts);
  const def = isoDefault >= 0
    ? `iso${isoDefault}`
    : dropIn !== undefined
    ? dropIn
    : opts.default !== undefined && ids.has(opts.default)
    ? opts.default
    : "local";
  const timeoutMs = Math.round((opts.timeout ?? 0) * 1000);
  const title = displayText(opts.title ?? "pypxe boot menu");

  const out: string[] = [
    "#!ipxe",
    "# Generated by pypxe. To replace it, put your own script of this name in --netboot-dir.",
  ];
  if (opts.notice !== undefined) out.push(`# NOTE: ${displayText(opts.notice)}`);
  for (const warning of warnings) out.push(`# NOTE: ${displayText(warning)}`);
  out.push(
    `set pypxe-files ${fileBase}`,
    "",
    ":menu",
    `menu ${title} - ${host} - \${platform} \${buildarch} \${net0/mac}`,
  );
  if (opts.notice !== undefined) out.push(`item --gap ${displayText(opts.notice)}`);
  for (const warning of warnings) out.push(`item --gap ${displayText(warning)}`);
  out.push("item --gap Local", "item local Boot from local disk");
  if (isos.length > 0) {
    out.push("item --gap ISO images (sanboot over HTTP)");
    isos.forEach((iso, i) => out.push(`item iso${i} ${displayText(iso.name)} (${formatSize(iso.size)})`));
  }
  if (memdiskIsos.length > 0) {
    out.push("iseq ${platform} pcbios || goto menu-memdisk-end");
    out.push("item --gap ISO images (memdisk, BIOS only, loaded into RAM)");
    isos.forEach((iso, i) => {
      if (iso.size <= MEMDISK_MAX_ISO) {
        out.push(`item iso${i}-memdisk ${displayText(iso.name)} (${formatSize(iso.size)}, memdisk)`);
      }
    });
    out.push(":menu-memdisk-end");
  }
  if (opts.entries.length > 0) {
    out.push("item --gap Menu entries");
    for (const entry of opts.entries) {
      const item = `item ${entry.id} ${entry.label.replace(/[\r\n]/g, " ")}`;
      const tests = entryTests(entry);
      out.push(tests.length === 0 ? item : `${tests.join(" && ")} && ${item} || echo -n`);
    }
  }
  if (kernels.length > 0) {
    out.push("item --gap Kernel folders");
    for (const kernel of kernels) out.push(`item ${kernel.id} ${displayText(kernel.label)}`);
  }
  if (scripts.length > 0) {
    out.push("item --gap iPXE scripts");
    scripts.forEach((name, i) => out.push(`item ${scriptId(i)} ${displayText(name)}`));
  }
  out.push("item --gap Tools", "item shell iPXE shell", "item reboot Reboot");
  out.push(
    `choose --default ${def}${
      timeoutMs > 0 ? ` --timeout ${timeoutMs}` : ""
    } target && goto \${target} || goto cancel`,
    "",
    ":cancel",
    "echo Menu cancelled: dropping to the iPXE shell (type 'exit' to return to the menu)",
    "shell",
    "goto menu",
    "",
    ":local",
    "echo Booting from local disk...",
    "iseq ${platform} pcbios || exit",
    "sanboot --no-describe --drive 0x80 || goto failed",
    "",
    ":shell",
    "echo Type 'exit' to return to the menu",
    "shell",
    "goto menu",
    "",
    ":reboot",
    "reboot",
    "goto menu",
    "",
    ":failed",
    "echo Boot failed. Press a key to return to the menu.",
    "prompt",
    "goto menu",
  );
  isos.forEach((iso, i) => {
    const url = `${httpBase}/${encodePath(iso.name)}`;
    out.push("", `:iso${i}`, `echo Booting ${displayText(iso.name)} over HTTP...`);
    out.push(`sanboot --no-describe --drive 0x80 ${url} || goto failed`);
    if (memdisk !== null && iso.size <= MEMDISK_MAX_ISO) {
      out.push("", `:iso${i}-memdisk`, "iseq ${platform} pcbios || goto failed");
      out.push(`kernel ${httpBase}/${encodePath(memdisk)} iso raw || goto failed`);
      out.push(`initrd ${url} || goto failed`, "boot || goto failed");
    }
  });
  for (const entry of [...opts.entries, ...kernels]) out.push("", ...entryBlock(entry));
  scripts.forEach((name, i) => {
    out.push("", `:${scriptId(i)}`, `echo Chaining ${displayText(name)}...`);
    out.push(`chain \${pypxe-files}/${encodePath(name)} || goto failed`);
  });
  return out.join("\n") + "\n";
}

/**
 * The label and commands that boot a kernel/initrd entry (tree paths load from `${pypxe-files}`); on
 * failure it jumps to `:failed`. Also the body of a machine's kernel profile (`netboot/machine.ts`).
 */
export function entryBlock(entry: MenuEntry): string[] {
  const initrdArgs = entry.initrd.map((p) => `initrd=${basename(p)}`).join(" ");
  const args = [initrdArgs, entry.cmdline].filter((s) => s !== "").join(" ");
  const out = [`:${entry.id}`, `echo Booting ${displayText(entry.label)}...`];
  for (const test of entryTests(entry)) out.push(`${test} || goto failed`);
  out.push(`kernel ${urlOf(entry.kernel, "${pypxe-files}")}${args ? " " + args : ""} || goto failed`);
  for (const path of entry.initrd) {
    out.push(`initrd --name ${basename(path)} ${urlOf(path, "${pypxe-files}")} || goto failed`);
  }
  out.push("boot || goto failed");
  return out;
}

/** The iPXE conditions under which an entry is shown and may boot. */
function entryTests(entry: MenuEntry): string[] {
  const tests: string[] = [];
  if (entry.platform !== "any") tests.push(`iseq \${platform} ${entry.platform}`);
  if (entry.arch !== "any") tests.push(`iseq \${buildarch} ${entry.arch}`);
  return tests;
}
