/**
 * The boot-menu model: `menu.json` (entries with kernel/initrd/cmdline, title, timeout, default), the
 * ISO images of the tree and its drop-in entries (kernel folders, iPXE scripts: `dropins.ts`). One model,
 * rendered by `ipxe.ts` (iPXE), `grub.ts` (GRUB) and served through `files.ts`.
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
 * `default` is an entry id, `local`, `shell`, `iso:PATH` (an ISO of the tree, e.g. `iso:images/rescue.iso`),
 * `kernel:FOLDER` (a kernel folder of the tree, e.g. `kernel:debian`) or `script:NAME` (an iPXE script in
 * the tree root, e.g. `script:boot.ipxe`); see `dropins.ts` for those drop-in entries.
 * Every field except `label` and `kernel` is optional, and so is `entries` (a menu.json of
 * `{"default": "kernel:debian", "timeout": 5}` only picks what the generated menu boots). Ids starting
 * with `iso` or `dropin` are the generated menu's own.
 * @module
 */
import { errText } from "../errors.ts";
import { parseRemoteRef, RemoteUrlError } from "./remote_url.ts";
import { DROPIN_ID_PREFIX, KERNEL_DEFAULT_PREFIX, SCRIPT_DEFAULT_PREFIX } from "./dropins.ts";

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
  /** Expected sha256 of remote kernels and initrds (`{"url", "sha256"}`), by URL. */
  readonly hashes?: ReadonlyMap<string, string>;
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
    throw new MenuFileError("(file)", `not valid JSON: ${errText(err)}`);
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
  const rawEntries = data.entries === undefined ? [] : data.entries;
  if (!Array.isArray(rawEntries)) throw new MenuFileError("entries", "must be a list of entries");
  if (rawEntries.length > 500) throw new MenuFileError("entries", "more than 500 entries");
  const entries: MenuEntry[] = [];
  const hashes = new Map<string, string>();
  const ids = new Set<string>();
  rawEntries.forEach((raw: unknown, i: number) => {
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
    if (RESERVED_IDS.has(id) || id.startsWith("iso") || id.startsWith(DROPIN_ID_PREFIX)) {
      throw new MenuFileError(`${at}.id`, `'${id}' is reserved by the generated menu`);
    }
    if (ids.has(id)) throw new MenuFileError(`${at}.id`, `duplicate id '${id}'`);
    ids.add(id);
    const label = requiredString(raw, "label", `${at}.label`);
    const kernel = bootSource(raw.kernel, `${at}.kernel`, hashes);
    let initrd: string[] = [];
    if (typeof raw.initrd === "string" || isObject(raw.initrd)) {
      initrd = [bootSource(raw.initrd, `${at}.initrd`, hashes)];
    } else if (Array.isArray(raw.initrd)) {
      initrd = raw.initrd.map((v: unknown, j: number) => bootSource(v, `${at}.initrd[${j}]`, hashes));
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
  const prefixed = def !== undefined &&
    ["iso:", KERNEL_DEFAULT_PREFIX, SCRIPT_DEFAULT_PREFIX].some((p) => def.startsWith(p));
  if (def !== undefined && def !== "local" && def !== "shell" && !ids.has(def) && !prefixed) {
    throw new MenuFileError(
      "default",
      `'${def}' is not an entry id, 'local', 'shell', 'iso:PATH', 'kernel:FOLDER' or 'script:NAME'`,
    );
  }
  return { title, timeout, default: def, entries, ...(hashes.size > 0 ? { hashes } : {}) };
}

/**
 * A kernel or initrd: a tree path, an `http(s)://` URL, or `{"url": "...", "sha256": "..."}` (the
 * expected hash recorded in `hashes`). Other URL schemes are refused, naming the field.
 */
function bootSource(value: unknown, field: string, hashes: Map<string, string>): string {
  // a URL with iPXE settings in it (`http://${next-server}/k`) is for iPXE to expand: passed through
  if (typeof value === "string" && value.includes("${")) return value;
  // other schemes iPXE fetches itself (tftp://...) are passed through too; only http(s) is cached
  if (typeof value === "string" && /^[a-z][a-z0-9+.-]*:\/\//i.test(value) && !/^https?:/i.test(value)) {
    return value;
  }
  if (value === undefined || (typeof value === "string" && value.trim() === "")) {
    throw new MenuFileError(field, "is required (a non-empty string)");
  }
  let ref;
  try {
    ref = parseRemoteRef(value, field);
  } catch (err) {
    if (err instanceof RemoteUrlError) {
      throw new MenuFileError(err.where, err.message.slice(err.where.length + 2));
    }
    throw new MenuFileError(field, errText(err).replace(`${field}: `, ""));
  }
  if (ref !== null) {
    if (ref.sha256 !== undefined) hashes.set(ref.url, ref.sha256);
    return ref.url;
  }
  if (typeof value !== "string" || value.trim() === "") {
    throw new MenuFileError(field, 'must be a non-empty string (a path or URL) or {"url", "sha256"}');
  }
  return value;
}

/** An ISO image found in the netboot tree. */
export interface IsoImage {
  /** Relative path in the tree, `/`-separated. */
  readonly name: string;
  readonly size: number;
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
