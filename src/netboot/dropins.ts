/**
 * Drop-in boot entries: what the netboot tree holds that boots without being written into `menu.json`.
 * Besides ISOs (listed by `files.ts`), two kinds:
 *
 * - **Kernel folders**: a folder below the tree root (at most {@linkcode DROPIN_MAX_DEPTH} deep) holding
 *   a kernel (`vmlinuz*`, or `linux` as in Debian's netboot tree) and an initrd (`initrd*` or
 *   `initramfs*`), with an optional `cmdline.txt` for the kernel command line. One entry per folder,
 *   titled with the folder's path. When a folder holds several: a plain `vmlinuz` (or `linux`) wins,
 *   else the highest version (`vmlinuz-6.1.0-18-amd64` over `vmlinuz-6.1.0-9-amd64`); the initrd is the
 *   one with the kernel's version (`initrd.img-6.1.0-18-amd64`, `initramfs-linux.img` for
 *   `vmlinuz-linux`), else the highest. Signatures, checksums and backups (`.sig`, `.sha256`, `~`...)
 *   are never taken for a kernel or an initrd.
 * - **iPXE scripts**: the user's own `*.ipxe` files in the root of `--netboot-dir` (not the embedded
 *   tree's, which are pypxe's): an entry that chains the script. A PyPXE tree's `boot.ipxe` thus shows
 *   in the generated `boot.http.ipxe`. A generated menu never lists itself.
 *
 * `cmdline.txt` is read as one line: lines starting with `#` are comments, line breaks and runs of
 * blanks become one space. It is passed like `menu.json`'s `cmdline` (iPXE variables work in iPXE
 * menus; GRUB leaves such an entry out). A `cmdline.txt` over {@linkcode CMDLINE_MAX} bytes, or one that
 * cannot be read, leaves its folder out with a warning (booting without the arguments its owner wrote
 * would surprise).
 *
 * Entries have generated ids (`dropin-kernel0`, `dropin-script0`); `menu.json`'s `default` names them
 * by path: `kernel:FOLDER` (e.g. `kernel:debian`), `script:NAME` (e.g. `script:boot.ipxe`).
 * @module
 */
import { errText } from "../errors.ts";
import type { NetbootFile } from "./fs.ts";
import type { MenuEntry } from "./menu.ts";

/** A kernel folder of the tree, as a menu entry (kernel, one initrd, `cmdline.txt`). */
export interface DropInKernel extends MenuEntry {
  /** The folder's path in the tree, `/`-separated: the entry's title and its `kernel:` name. */
  readonly folder: string;
}

/** What the tree holds besides `menu.json` (ISOs aside). */
export interface DropIns {
  /** Kernel folders, in path order. */
  readonly kernels: readonly DropInKernel[];
  /** The user's `*.ipxe` scripts in the overlay's root, in name order. */
  readonly scripts: readonly string[];
  /** Folders left out and why (a too big or unreadable `cmdline.txt`, too many folders). */
  readonly warnings: readonly string[];
  /** The newest modification time (ms) of the files the entries use; 0 without entries. */
  readonly mtime: number;
}

/** The optional kernel command line of a kernel folder. */
export const CMDLINE_FILE = "cmdline.txt";
/** A larger `cmdline.txt` is refused (Linux takes at most 2048 bytes on x86 anyway). */
export const CMDLINE_MAX = 4096;
/** Kernel folders deeper than this many levels below the root are not looked at. */
export const DROPIN_MAX_DEPTH = 8;
/** At most this many kernel folders become entries. */
export const DROPIN_MAX_KERNELS = 200;
/** At most this many scripts become entries. */
export const DROPIN_MAX_SCRIPTS = 100;
/** `menu.json` `default` prefix naming a kernel folder. */
export const KERNEL_DEFAULT_PREFIX = "kernel:";
/** `menu.json` `default` prefix naming an iPXE script. */
export const SCRIPT_DEFAULT_PREFIX = "script:";
/** Menu item ids starting with this are generated here (and reserved in `menu.json`). */
export const DROPIN_ID_PREFIX = "dropin";

/** Files that accompany a kernel or initrd but are none. */
const NOT_AN_IMAGE = /(?:\.(?:sig|asc|gpg|p7s|sha\d*|md5|sums?|txt|cfg|conf|bak|old|orig|tmp|swp|part)|~)$/i;
const KERNEL_RE = /^(?:vmlinuz(?:[-._+].*)?|linux)$/i;
const INITRD_RE = /^(?:initrd|initramfs)(?:[-._+].*)?$/i;
const COMPRESSION = /(?:\.(?:img|gz|xz|zst|lz|lz4|lzma|lzo|bz2|cpio))+$/i;
const collator = new Intl.Collator("en", { numeric: true });

/** True for a kernel image name: `vmlinuz`, `vmlinuz-<version>`, `linux`. */
export function isKernelName(name: string): boolean {
  return KERNEL_RE.test(name) && !NOT_AN_IMAGE.test(name) && !name.startsWith(".");
}

/** True for an initrd name: `initrd*`, `initramfs*` (not a signature or checksum file). */
export function isInitrdName(name: string): boolean {
  return INITRD_RE.test(name) && !NOT_AN_IMAGE.test(name);
}

/** The version in a kernel or initrd name: `vmlinuz-6.1`, `initrd.img-6.1` -> `6.1`; `vmlinuz` -> empty. */
export function imageVersion(name: string): string {
  return name.replace(COMPRESSION, "").replace(/^(?:vmlinuz|linux|initrd|initramfs)/i, "")
    .replace(/^\.img(?=[-._+]|$)/i, "").replace(/^[-._+]+/, "");
}

/** The kernel of a folder: a plain `vmlinuz`/`linux`, else the highest version. */
export function pickKernel(names: readonly string[]): string {
  const sorted = [...names].sort(collator.compare);
  return sorted.find((n) => imageVersion(n) === "") ?? sorted[sorted.length - 1];
}

/** The initrd for `kernel`: the one of the same version, else the highest. */
export function pickInitrd(kernel: string, names: readonly string[]): string {
  const sorted = [...names].sort(collator.compare);
  const version = imageVersion(kernel);
  return sorted.findLast((n) => imageVersion(n) === version) ?? sorted[sorted.length - 1];
}

/** `cmdline.txt` as one kernel command line: `#` comment lines dropped, blanks collapsed, trimmed. */
export function parseCmdline(text: string): string {
  return text.replace(/^\uFEFF/, "").split(/\r?\n|\r/)
    .filter((line) => !line.trimStart().startsWith("#"))
    .join(" ")
    // control characters (tabs included) become blanks: nothing can end the line early
    .split("").map((ch) => (ch.charCodeAt(0) < 0x20 || ch === "\x7f" ? " " : ch)).join("")
    .replace(/ {2,}/g, " ")
    .trim();
}

/** The item id of the `index`th kernel folder. */
export function kernelId(index: number): string {
  return `${DROPIN_ID_PREFIX}-kernel${index}`;
}

/** The item id of the `index`th script. */
export function scriptId(index: number): string {
  return `${DROPIN_ID_PREFIX}-script${index}`;
}

/**
 * The item id that a `menu.json` `default` of `kernel:FOLDER` or `script:NAME` names among `kernels` and
 * `scripts` (the lists as rendered); undefined for other defaults or when nothing matches.
 */
export function dropInDefault(
  def: string | undefined,
  kernels: readonly DropInKernel[],
  scripts: readonly string[],
): string | undefined {
  if (def === undefined) return undefined;
  const wanted = (prefix: string) => def.slice(prefix.length).replace(/^\/+|\/+$/g, "");
  if (def.startsWith(KERNEL_DEFAULT_PREFIX)) {
    const folder = wanted(KERNEL_DEFAULT_PREFIX);
    return (kernels.find((k) => k.folder === folder) ??
      kernels.find((k) => k.folder.toLowerCase() === folder.toLowerCase()))?.id;
  }
  if (def.startsWith(SCRIPT_DEFAULT_PREFIX)) {
    const name = wanted(SCRIPT_DEFAULT_PREFIX);
    let i = scripts.indexOf(name);
    if (i < 0) i = scripts.findIndex((s) => s.toLowerCase() === name.toLowerCase());
    return i < 0 ? undefined : scriptId(i);
  }
  return undefined;
}

/** Reads a file's bytes, at most `max + 1` of them (tests inject failures). */
export type ReadHead = (path: string, max: number) => Promise<Uint8Array>;

/** Options of {@linkcode DropInScanner}. */
export interface DropInScannerOptions {
  /** How `cmdline.txt` is read; default: the file system. */
  readonly readHead?: ReadHead;
}

interface CmdlineRead {
  readonly key: string;
  readonly cmdline: string | null;
  readonly warning?: string;
}

/** Finds the drop-ins of a tree listing; keeps each `cmdline.txt` read until its size or mtime changes. */
export class DropInScanner {
  readonly #readHead: ReadHead;
  readonly #cmdlines = new Map<string, CmdlineRead>();

  /** Creates a scanner with nothing read yet. */
  constructor(opts: DropInScannerOptions = {}) {
    this.#readHead = opts.readHead ?? readHead;
  }

  /** The drop-ins of `files` (a `NetbootFs.list()`: regular files inside the roots, sorted by name). */
  async scan(files: readonly NetbootFile[]): Promise<DropIns> {
    const warnings: string[] = [];
    let mtime = 0;
    const seen = (f: NetbootFile) => (mtime = Math.max(mtime, f.mtime?.getTime() ?? 0));

    const folders = new Map<string, Map<string, NetbootFile>>();
    for (const file of files) {
      const cut = file.name.lastIndexOf("/");
      if (cut < 0) continue; // the root holds the loaders; kernels there belong to their configs
      const folder = file.name.slice(0, cut);
      if (folder.split("/").length > DROPIN_MAX_DEPTH) continue;
      const base = file.name.slice(cut + 1);
      if (!isKernelName(base) && !isInitrdName(base) && base.toLowerCase() !== CMDLINE_FILE) continue;
      let entries = folders.get(folder);
      if (entries === undefined) folders.set(folder, entries = new Map());
      entries.set(base, file);
    }
    const kernels: DropInKernel[] = [];
    const live = new Set<string>();
    const names = [...folders.keys()].sort(collator.compare);
    for (const folder of names) {
      const entries = folders.get(folder)!;
      const kernelNames = [...entries.keys()].filter(isKernelName);
      const initrdNames = [...entries.keys()].filter(isInitrdName);
      if (kernelNames.length === 0 || initrdNames.length === 0) continue;
      if (kernels.length >= DROPIN_MAX_KERNELS) {
        warnings.push(`more than ${DROPIN_MAX_KERNELS} kernel folders: ${folder} and the rest left out`);
        break;
      }
      const kernel = entries.get(pickKernel(kernelNames))!;
      const initrd = entries.get(pickInitrd(kernel.name.slice(folder.length + 1), initrdNames))!;
      const cmdlineFile = [...entries.entries()].find(([n]) => n.toLowerCase() === CMDLINE_FILE)?.[1];
      let cmdline = "";
      if (cmdlineFile !== undefined) {
        live.add(cmdlineFile.path);
        const read = await this.#cmdline(cmdlineFile);
        if (read.cmdline === null) {
          warnings.push(`${folder} left out: ${read.warning}`);
          continue;
        }
        cmdline = read.cmdline;
        seen(cmdlineFile);
      }
      seen(kernel);
      seen(initrd);
      kernels.push({
        id: kernelId(kernels.length),
        folder,
        label: folder,
        kernel: kernel.name,
        initrd: [initrd.name],
        cmdline,
        platform: "any",
        arch: "any",
      });
    }
    for (const path of this.#cmdlines.keys()) if (!live.has(path)) this.#cmdlines.delete(path);

    const scripts: string[] = [];
    for (const file of files) {
      if (file.layer !== "overlay" || file.name.includes("/") || file.name.startsWith(".")) continue;
      if (!file.name.toLowerCase().endsWith(".ipxe")) continue;
      if (scripts.length >= DROPIN_MAX_SCRIPTS) {
        warnings.push(`more than ${DROPIN_MAX_SCRIPTS} iPXE scripts: ${file.name} and the rest left out`);
        break;
      }
      scripts.push(file.name);
      seen(file);
    }
    return { kernels, scripts, warnings, mtime };
  }

  async #cmdline(file: NetbootFile): Promise<CmdlineRead> {
    const key = `${file.size} ${file.mtime?.getTime()}`;
    const kept = this.#cmdlines.get(file.path);
    if (kept !== undefined && kept.key === key) return kept;
    let read: CmdlineRead;
    if (file.size > CMDLINE_MAX) {
      read = { key, cmdline: null, warning: `${file.name} is ${file.size} bytes (at most ${CMDLINE_MAX})` };
    } else {
      try {
        const bytes = await this.#readHead(file.path, CMDLINE_MAX);
        read = bytes.length > CMDLINE_MAX
          ? { key, cmdline: null, warning: `${file.name} is over ${CMDLINE_MAX} bytes` }
          : { key, cmdline: parseCmdline(new TextDecoder().decode(bytes)) };
      } catch (err) {
        // not kept: fixing the permissions changes no mtime, so the next listing tries again
        return { key, cmdline: null, warning: `${file.name} cannot be read: ${errText(err)}` };
      }
    }
    this.#cmdlines.set(file.path, read);
    return read;
  }
}

/** Reads at most `max + 1` bytes of `path` (enough to tell that it is too long). */
async function readHead(path: string, max: number): Promise<Uint8Array> {
  using file = await Deno.open(path, { read: true });
  const buf = new Uint8Array(max + 1);
  let filled = 0;
  // bounded: each read adds at least one byte, or ends the loop
  while (filled < buf.length) {
    const n = await file.read(buf.subarray(filled));
    if (n === null || n === 0) break;
    filled += n;
  }
  return buf.subarray(0, filled);
}
