/**
 * The netboot file tree: the embedded default `netboot/` overlaid by a user's `--netboot-dir`.
 *
 * One resolver is shared by TFTP and HTTP, so both refuse the same hostile paths: `..`, NUL, absolute
 * paths outside the root, and symlinks whose target leaves the root. `\` is mapped to `/`, a leading `/`
 * is stripped, and a path that does not exist as typed falls back to a case-insensitive match.
 * @module
 */
import type { RemoteFile } from "./remote_file.ts";
import { join, resolve as resolvePath, sep } from "node:path";

/** Why a path could not be served. */
export type NetbootErrorCode = "not-found" | "forbidden" | "is-directory" | "unavailable";

/** A path that cannot be served, with the reason as a code. */
export class NetbootError extends Error {
  /** Creates the error for `path` with a reason code. */
  constructor(readonly code: NetbootErrorCode, readonly path: string, detail: string) {
    super(`${path}: ${detail}`);
    this.name = "NetbootError";
  }
}

/** A file found in the tree. */
export interface NetbootFile {
  /** The normalised relative name, with `/` separators and no leading slash. */
  readonly name: string;
  /** The absolute path on disk (after following symlinks inside the root). */
  readonly path: string;
  /** Size in bytes. */
  readonly size: number;
  /** Modification time, when the file system reports one. */
  readonly mtime: Date | null;
  /**
   * Which layer the file came from; `generated` files have no path, only `content`; `remote` files come
   * from the remote cache (`remote.ts`): a complete one has a path, one still downloading has `remote`.
   */
  readonly layer: "overlay" | "embedded" | "generated" | "remote";
  /** The bytes of a generated file (see `GENERATED_FILES` in `files.ts`). */
  readonly content?: Uint8Array<ArrayBuffer>;
  /** A remote file still downloading: read it through this (the server closes it when done). */
  readonly remote?: RemoteFile;
}

/** Where the embedded default tree lives: `netboot/` beside `src/` (also inside a compiled binary). */
export const EMBEDDED_ROOT: string = resolvePath(import.meta.dirname ?? ".", "..", "..", "netboot");

/**
 * Turns a client-supplied name into safe relative path segments, or throws `NetbootError("forbidden")`.
 *
 * @example
 * ```ts
 * normaliseName("\\pxelinux.cfg\\default"); // ["pxelinux.cfg", "default"]
 * ```
 */
export function normaliseName(raw: string): string[] {
  if (raw.includes("\0")) throw new NetbootError("forbidden", raw, "NUL byte in path");
  const segments: string[] = [];
  for (const seg of raw.replaceAll("\\", "/").split("/")) {
    if (seg === "" || seg === ".") continue;
    if (seg === "..") throw new NetbootError("forbidden", raw, "'..' is not allowed");
    if (/^[a-zA-Z]:$/.test(seg) && segments.length === 0) {
      throw new NetbootError("forbidden", raw, "drive letters are not allowed");
    }
    segments.push(seg);
  }
  if (segments.length === 0) throw new NetbootError("is-directory", raw, "is the root directory");
  return segments;
}

/**
 * Raspberry Pi boot ROMs and EEPROM bootloaders ask for `<serial>/file` (8 hex digits) or
 * `<MAC with dashes>/file` first. Returns the name without that prefix (to fall back to the root), or
 * null when `name` has no such prefix.
 *
 * @example
 * ```ts
 * piPrefixFallback("1234abcd/start4.elf"); // "start4.elf"
 * piPrefixFallback("dc-a6-32-01-02-03/config.txt"); // "config.txt"
 * ```
 */
export function piPrefixFallback(name: string): string | null {
  const m = /^\/*([0-9a-f]{8}|(?:[0-9a-f]{2}-){5}[0-9a-f]{2})\/+(.+)$/i.exec(name);
  return m === null ? null : m[2];
}

/** Files a Raspberry Pi asks for that are often absent (not-found is routine for them). */
export const PI_OPTIONAL_FILES: ReadonlySet<string> = new Set([
  "bootsig.bin",
  "autoboot.txt",
  "recovery.elf",
  "pieeprom.sig",
  "pieeprom.upd",
  "recovery.bin",
]);

/**
 * True for a missing file that clients ask for routinely and do without: PXELINUX's config probes, a
 * Raspberry Pi's optional files, shim's optional revocation lists and certificates, GRUB's module
 * lists, fonts and locales.
 *
 * @example
 * ```ts
 * isRoutineMiss("pxelinux.cfg/01-52-54-00-12-34-56"); // true
 * isRoutineMiss("/grub/x86_64-efi/command.lst"); // true
 * isRoutineMiss("vmlinuz"); // false
 * ```
 */
export function isRoutineMiss(name: string): boolean {
  const path = name.replaceAll("\\", "/").replace(/^\/+/, "").toLowerCase();
  const base = path.slice(path.lastIndexOf("/") + 1);
  return path.startsWith("pxelinux.cfg/") || PI_OPTIONAL_FILES.has(base) ||
    /^(revocations\w*|shim_certificate\w*)\.efi$/.test(base) ||
    /^grub\/(?:[a-z0-9_]+-(?:efi|pc)\/(?:[^/]+\.(?:lst|mod)|grub\.cfg)|fonts\/.*|locale\/.*)$/.test(path);
}

/**
 * The largest file a Raspberry Pi boot ROM can read: 65535 blocks of 1024 bytes (it does not roll the
 * block number over).
 */
export const PI_MAX_FILE_SIZE = 65535 * 1024;

/** Files whose presence says the tree serves Raspberry Pis. */
const PI_FIRMWARE = ["bootcode.bin", "start.elf", "start4.elf"];

/**
 * Warnings for a tree that serves Raspberry Pis (it has their firmware): the files a Pi cannot fetch
 * because they exceed {@linkcode PI_MAX_FILE_SIZE}. Empty for other trees.
 */
export async function piSizeWarnings(netboot: NetbootFs): Promise<string[]> {
  let pi = false;
  for (const name of PI_FIRMWARE) {
    pi ||= await netboot.resolve(name).then(() => true, () => false);
  }
  if (!pi) return [];
  const big = (await netboot.list()).filter((f) => f.size > PI_MAX_FILE_SIZE);
  return big.map((f) =>
    `netboot: ${f.name} is ${(f.size / 2 ** 20).toFixed(1)} MiB: a Raspberry Pi cannot fetch it over TFTP ` +
    `(at most ${PI_MAX_FILE_SIZE} bytes: 65535 blocks of 1024 bytes, no rollover)`
  );
}

/** Options of {@linkcode NetbootFs}. */
export interface NetbootFsOptions {
  /** The user's directory, searched first; omitted means the embedded tree only. */
  overlay?: string;
  /** The embedded default tree (tests may point this elsewhere). */
  embedded?: string;
}

/** The two-layer netboot tree with traversal-proof lookups. */
export class NetbootFs {
  /** Roots in search order, each as its real (symlink-free) absolute path. */
  readonly roots: readonly { dir: string; layer: "overlay" | "embedded" }[];

  private constructor(roots: { dir: string; layer: "overlay" | "embedded" }[]) {
    this.roots = roots;
  }

  /**
   * Opens the tree. A missing overlay directory is an error; a missing embedded tree is tolerated
   * (the overlay then serves alone).
   */
  static async open(opts: NetbootFsOptions = {}): Promise<NetbootFs> {
    const roots: { dir: string; layer: "overlay" | "embedded" }[] = [];
    if (opts.overlay !== undefined) {
      let info: Deno.FileInfo;
      try {
        info = await Deno.stat(opts.overlay);
      } catch {
        throw new NetbootError("not-found", opts.overlay, "netboot directory does not exist");
      }
      if (!info.isDirectory) throw new NetbootError("not-found", opts.overlay, "is not a directory");
      roots.push({ dir: await Deno.realPath(opts.overlay), layer: "overlay" });
    }
    const embedded = opts.embedded ?? EMBEDDED_ROOT;
    try {
      const real = await Deno.realPath(embedded);
      // `--netboot-dir netboot` run from the source tree is the embedded tree itself
      const same = roots.findIndex((r) => r.dir === real);
      if (same >= 0) roots.splice(same, 1);
      roots.push({ dir: real, layer: "embedded" });
    } catch (err) {
      if (!(err instanceof Deno.errors.NotFound)) throw err;
    }
    return new NetbootFs(roots);
  }

  /** Finds `name` in the overlay, then in the embedded tree; throws `NetbootError` when it cannot. */
  async resolve(name: string): Promise<NetbootFile> {
    const segments = normaliseName(name);
    let lastError: NetbootError | undefined;
    for (const root of this.roots) {
      try {
        return await this.resolveIn(root.dir, root.layer, segments, name);
      } catch (err) {
        if (!(err instanceof NetbootError)) throw err;
        if (err.code !== "not-found") throw err;
        lastError = err;
      }
    }
    throw lastError ?? new NetbootError("not-found", name, "no such file");
  }

  private async resolveIn(
    root: string,
    layer: "overlay" | "embedded",
    segments: string[],
    name: string,
  ): Promise<NetbootFile> {
    let candidate = join(root, ...segments);
    let info = await lstatOrNull(candidate);
    if (info === null) {
      const found = await findCaseInsensitive(root, segments);
      if (found === null) throw new NetbootError("not-found", name, "no such file");
      candidate = found;
      info = await lstatOrNull(candidate);
      if (info === null) throw new NetbootError("not-found", name, "no such file");
    }
    let real: string;
    try {
      real = await Deno.realPath(candidate);
    } catch {
      throw new NetbootError("not-found", name, "dangling symlink");
    }
    if (real !== root && !real.startsWith(root + sep)) {
      throw new NetbootError("forbidden", name, "resolves outside the netboot root");
    }
    const stat = await Deno.stat(real);
    if (stat.isDirectory) throw new NetbootError("is-directory", name, "is a directory");
    if (!stat.isFile) throw new NetbootError("forbidden", name, "is not a regular file");
    return {
      name: real.slice(root.length + 1).split(sep).join("/"),
      path: real,
      size: stat.size,
      mtime: stat.mtime,
      layer,
    };
  }

  /** Lists every regular file of the merged tree (overlay wins), as relative names, depth-first. */
  async list(opts: { maxEntries?: number } = {}): Promise<NetbootFile[]> {
    const limit = opts.maxEntries ?? 100_000;
    const seen = new Map<string, NetbootFile>();
    for (const root of this.roots) {
      const stack: string[] = [""];
      while (stack.length > 0 && seen.size < limit) {
        const rel = stack.pop()!;
        let entries: Deno.DirEntry[];
        try {
          entries = await Array.fromAsync(Deno.readDir(join(root.dir, rel)));
        } catch {
          continue;
        }
        for (const entry of entries) {
          const childRel = rel === "" ? entry.name : `${rel}/${entry.name}`;
          if (entry.isDirectory) stack.push(childRel);
          else if (!seen.has(childRel)) {
            try {
              const file = await this.resolveIn(root.dir, root.layer, childRel.split("/"), childRel);
              seen.set(childRel, { ...file, name: childRel });
            } catch (err) {
              if (!(err instanceof NetbootError)) throw err;
            }
          }
        }
      }
    }
    return [...seen.values()].sort((a, b) => a.name.localeCompare(b.name));
  }

  /** Describes the tree for the banner: `overlay DIR over embedded DIR` or `embedded DIR`. */
  describe(): string {
    return this.roots.map((r) => `${r.layer} ${r.dir}`).join(" over ");
  }
}

async function lstatOrNull(path: string): Promise<Deno.FileInfo | null> {
  try {
    return await Deno.lstat(path);
  } catch (err) {
    if (err instanceof Deno.errors.NotFound || err instanceof Deno.errors.NotADirectory) return null;
    throw err;
  }
}

/** Walks `segments` under `root`, matching each one case-insensitively; bounded by directory sizes. */
async function findCaseInsensitive(root: string, segments: string[]): Promise<string | null> {
  let dir = root;
  for (const seg of segments) {
    const wanted = seg.toLowerCase();
    let match: string | null = null;
    try {
      for await (const entry of Deno.readDir(dir)) {
        if (entry.name === seg) {
          match = entry.name;
          break;
        }
        if (match === null && entry.name.toLowerCase() === wanted) match = entry.name;
      }
    } catch {
      return null;
    }
    if (match === null) return null;
    dir = join(dir, match);
  }
  return dir;
}
