/**
 * Generated iPXE boot menus: local disk, iPXE shell, every `*.iso` of the netboot tree (sanboot over
 * HTTP, memdisk on BIOS for small ones), and kernel/initrd entries from `menu.json`.
 *
 * Everything here is pure: the server gathers the inputs (ISO list, menu file text) and renders.
 *
 * ## `menu.json` (in the netboot tree, any layer)
 *
 * ```json
 * {
 *   "title": "Lab boot menu",
 *   "timeout": 10,
 *   "default": "debian",
 *   "entries": [
 *     {
 *       "id": "debian",
 *       "label": "Debian 12 installer",
 *       "kernel": "debian/linux",
 *       "initrd": ["debian/initrd.gz"],
 *       "cmdline": "priority=low BOOTIF=01-${net0/mac:hexhyp}",
 *       "platform": "any"
 *     }
 *   ]
 * }
 * ```
 *
 * `kernel` and `initrd` are paths inside the netboot tree (or absolute `http://` URLs); `initrd` may be
 * one string or a list; `cmdline` is passed verbatim, so iPXE variables such as `${net0/mac}` work;
 * `platform` is `any` (default), `pcbios` or `efi`; `arch` is `any` (default), `x86_64`, `i386` or
 * `arm64`; `grub_cmdline` replaces `cmdline` in the generated `grub/grub.cfg` (GRUB cannot expand iPXE
 * variables, so entries whose `cmdline` uses them need it there); `timeout` is in seconds (0 or absent: wait);
 * `default` is an entry id, `local`, `shell` or `iso:PATH` (an ISO of the tree, e.g. `iso:images/rescue.iso`).
 * Every field except `label` and `kernel` is optional.
 * @module
 */

/** One kernel/initrd entry of the menu file. */
export interface MenuEntry {
  /** Label target, letters/digits/`-`/`_`; derived from the position when absent. */
  readonly id: string;
  /** Text shown in the menu. */
  readonly label: string;
  /** Kernel path in the netboot tree, or an absolute URL. */
  readonly kernel: string;
  /** Initrd paths (or URLs), loaded in order. */
  readonly initrd: readonly string[];
  /** Kernel command line, iPXE variables allowed. */
  readonly cmdline: string;
  /** Which firmware shows the entry. */
  readonly platform: "any" | "pcbios" | "efi";
  /** Which CPU architecture shows the entry (iPXE's `${buildarch}`, GRUB's `$grub_cpu`). */
  readonly arch: "any" | MenuArch;
  /** Kernel command line for GRUB (`grub/grub.cfg`), when `cmdline` uses iPXE variables. */
  readonly grubCmdline?: string;
}

/** CPU architectures a menu entry can be limited to. */
export type MenuArch = "x86_64" | "i386" | "arm64";

/** The values of a menu entry's `arch` field. */
export const MENU_ARCHES: readonly MenuArch[] = ["x86_64", "i386", "arm64"];

/** The parsed menu file. */
export interface MenuFile {
  readonly title?: string;
  /** Seconds before the default item boots; 0 waits for the user. */
  readonly timeout: number;
  /** Item booted when the timeout expires or Enter is pressed. */
  readonly default?: string;
  readonly entries: readonly MenuEntry[];
}

/** A menu file that cannot be used, naming the field and the reason. */
export class MenuFileError extends Error {
  /** Creates the error for `field` (e.g. `entries[2].kernel`). */
  constructor(readonly field: string, reason: string) {
    super(`menu.json: ${field}: ${reason}`);
    this.name = "MenuFileError";
  }
}

/** The name of the menu file looked up in the netboot tree. */
export const MENU_FILE_NAME = "menu.json";

/** ISOs up to this size get a memdisk item on BIOS (memdisk copies the whole image into RAM). */
export const MEMDISK_MAX_ISO = 512 * 1024 * 1024;

const ID_RE = /^[A-Za-z0-9_-]{1,64}$/;
const RESERVED_IDS = new Set(["menu", "local", "shell", "failed", "cancel", "reboot"]);

/** Parses and validates `menu.json` text; throws {@linkcode MenuFileError} naming the bad field. */
export function parseMenuFile(text: string): MenuFile {
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (err) {
    throw new MenuFileError("(file)", `not valid JSON: ${err instanceof Error ? err.message : err}`);
  }
  if (!isObject(data)) throw new MenuFileError("(file)", "must be a JSON object with an `entries` list");
  const known = new Set(["title", "timeout", "default", "entries"]);
  for (const key of Object.keys(data)) {
    if (!known.has(key)) throw new MenuFileError(key, `unknown key (known: ${[...known].join(", ")})`);
  }
  const title = optionalString(data, "title", "title");
  const timeout = data.timeout ?? 0;
  if (typeof timeout !== "number" || !Number.isFinite(timeout) || timeout < 0 || timeout > 86400) {
    throw new MenuFileError("timeout", "must be a number of seconds between 0 and 86400");
  }
  if (!Array.isArray(data.entries)) throw new MenuFileError("entries", "must be a list of entries");
  if (data.entries.length > 500) throw new MenuFileError("entries", "more than 500 entries");
  const entries: MenuEntry[] = [];
  const ids = new Set<string>();
  data.entries.forEach((raw: unknown, i: number) => {
    const at = `entries[${i}]`;
    if (!isObject(raw)) throw new MenuFileError(at, "must be an object");
    const entryKeys = new Set([
      "id",
      "label",
      "kernel",
      "initrd",
      "cmdline",
      "grub_cmdline",
      "platform",
      "arch",
    ]);
    for (const key of Object.keys(raw)) {
      if (!entryKeys.has(key)) {
        throw new MenuFileError(`${at}.${key}`, `unknown key (known: ${[...entryKeys].join(", ")})`);
      }
    }
    const id = optionalString(raw, "id", `${at}.id`) ?? `entry${i}`;
    if (!ID_RE.test(id)) throw new MenuFileError(`${at}.id`, "use 1-64 letters, digits, '-' or '_'");
    if (RESERVED_IDS.has(id) || id.startsWith("iso")) {
      throw new MenuFileError(`${at}.id`, `'${id}' is reserved by the generated menu`);
    }
    if (ids.has(id)) throw new MenuFileError(`${at}.id`, `duplicate id '${id}'`);
    ids.add(id);
    const label = requiredString(raw, "label", `${at}.label`);
    const kernel = requiredString(raw, "kernel", `${at}.kernel`);
    let initrd: string[] = [];
    if (typeof raw.initrd === "string") initrd = [raw.initrd];
    else if (Array.isArray(raw.initrd)) {
      initrd = raw.initrd.map((v: unknown, j: number) => {
        if (typeof v !== "string" || v.trim() === "") {
          throw new MenuFileError(`${at}.initrd[${j}]`, "must be a non-empty string");
        }
        return v;
      });
    } else if (raw.initrd !== undefined) {
      throw new MenuFileError(`${at}.initrd`, "must be a path or a list of paths");
    }
    const cmdline = optionalString(raw, "cmdline", `${at}.cmdline`) ?? "";
    const platform = raw.platform ?? "any";
    if (platform !== "any" && platform !== "pcbios" && platform !== "efi") {
      throw new MenuFileError(`${at}.platform`, "must be 'any', 'pcbios' or 'efi'");
    }
    const arch = raw.arch ?? "any";
    if (arch !== "any" && !MENU_ARCHES.includes(arch as MenuArch)) {
      throw new MenuFileError(`${at}.arch`, `must be 'any', ${MENU_ARCHES.map((a) => `'${a}'`).join(", ")}`);
    }
    const grubCmdline = optionalString(raw, "grub_cmdline", `${at}.grub_cmdline`);
    for (
      const [field, value] of [
        ["label", label],
        ["kernel", kernel],
        ["cmdline", cmdline],
        ["grub_cmdline", grubCmdline ?? ""],
        ...initrd.map((v, j) => [`initrd[${j}]`, v]),
      ]
    ) {
      if (/[\r\n]/.test(value)) throw new MenuFileError(`${at}.${field}`, "must be one line");
    }
    entries.push({
      id,
      label,
      kernel,
      initrd,
      cmdline,
      platform,
      arch: arch as "any" | MenuArch,
      grubCmdline,
    });
  });
  const def = optionalString(data, "default", "default");
  if (def !== undefined && def !== "local" && def !== "shell" && !ids.has(def) && !def.startsWith("iso:")) {
    throw new MenuFileError("default", `'${def}' is not an entry id, 'local', 'shell' or 'iso:PATH'`);
  }
  return { title, timeout, default: def, entries };
}

/** An ISO image found in the netboot tree. */
export interface IsoImage {
  /** Relative path in the tree, `/`-separated. */
  readonly name: string;
  readonly size: number;
}

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
  /** Default item id (an entry id, `local` or `shell`). */
  default?: string;
  /** A note rendered as a comment and shown in the menu (e.g. a menu.json error). */
  notice?: string;
}

/** Human size: `700.0 MB`, `4.2 GB`, `12 KB`. */
export function formatSize(bytes: number): string {
  if (bytes >= 1e9) return `${(bytes / 1e9).toFixed(1)} GB`;
  if (bytes >= 1e6) return `${(bytes / 1e6).toFixed(1)} MB`;
  return `${Math.max(1, Math.round(bytes / 1e3))} KB`;
}

/** Percent-encodes a relative path for a URL inside an iPXE script (no `${` expansion possible). */
export function encodePath(name: string): string {
  return name.split("/").map((seg) => encodeURIComponent(seg)).join("/");
}

/** Text safe to show as a menu item: one line, printable, no iPXE variable expansion. */
function displayText(text: string): string {
  const printable = [...text].map((ch) => (ch.charCodeAt(0) < 0x20 || ch === "\x7f" ? " " : ch)).join("");
  return printable.replaceAll("$", "S").slice(0, 120);
}

/** The URL a path of the tree is fetched from, or the path itself when it is already a URL. */
function urlOf(path: string, base: string): string {
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(path)) return path;
  return `${base}/${encodePath(path.replace(/^\/+/, ""))}`;
}

function basename(path: string): string {
  const clean = path.replace(/[?#].*$/, "");
  return clean.slice(clean.lastIndexOf("/") + 1) || "initrd";
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
  const ids = new Set(["local", "shell", ...opts.entries.map((e) => e.id)]);
  // `iso:PATH` picks an ISO of the tree by its path (its item id depends on the listing order)
  const isoDefault = opts.default?.startsWith("iso:")
    ? isos.findIndex((iso) => iso.name === opts.default!.slice(4).replace(/^\/+/, ""))
    : -1;
  const def = isoDefault >= 0
    ? `iso${isoDefault}`
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
  out.push(
    `set pypxe-files ${fileBase}`,
    "",
    ":menu",
    `menu ${title} - ${host} - \${platform} \${buildarch} \${net0/mac}`,
  );
  if (opts.notice !== undefined) out.push(`item --gap ${displayText(opts.notice)}`);
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
  for (const entry of opts.entries) {
    const initrdArgs = entry.initrd.map((p) => `initrd=${basename(p)}`).join(" ");
    const args = [initrdArgs, entry.cmdline].filter((s) => s !== "").join(" ");
    out.push("", `:${entry.id}`, `echo Booting ${displayText(entry.label)}...`);
    for (const test of entryTests(entry)) out.push(`${test} || goto failed`);
    out.push(`kernel ${urlOf(entry.kernel, "${pypxe-files}")}${args ? " " + args : ""} || goto failed`);
    for (const path of entry.initrd) {
      out.push(`initrd --name ${basename(path)} ${urlOf(path, "${pypxe-files}")} || goto failed`);
    }
    out.push("boot || goto failed");
  }
  return out.join("\n") + "\n";
}

/** The iPXE conditions under which an entry is shown and may boot. */
function entryTests(entry: MenuEntry): string[] {
  const tests: string[] = [];
  if (entry.platform !== "any") tests.push(`iseq \${platform} ${entry.platform}`);
  if (entry.arch !== "any") tests.push(`iseq \${buildarch} ${entry.arch}`);
  return tests;
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function optionalString(obj: Record<string, unknown>, key: string, field: string): string | undefined {
  const value = obj[key];
  if (value === undefined) return undefined;
  if (typeof value !== "string") throw new MenuFileError(field, "must be a string");
  return value;
}

function requiredString(obj: Record<string, unknown>, key: string, field: string): string {
  const value = optionalString(obj, key, field);
  if (value === undefined || value.trim() === "") {
    throw new MenuFileError(field, "is required (a non-empty string)");
  }
  return value;
}
