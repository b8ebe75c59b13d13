/**
 * The images an NBD server serves: opening each one (as a file, or copied into RAM), the state directory
 * that holds copy-on-write files, and for each export its transmission flags and the store a connection
 * reads and writes (the image itself, or a private overlay in a file or in memory). The server in
 * `server.ts` only accepts connections and hands each one this set.
 *
 * @example
 * ```ts
 * const exports = new ExportSet({ exports: ["disk.img"] }, () => "tag");
 * await exports.open();
 * exports.find("")?.size; // the default export: the first image
 * exports.close();
 * await exports.removeStateDir();
 * ```
 * @module
 */
import { getLogger } from "@logtape/logtape";
import { basename } from "node:path";
import { errText } from "../errors.ts";
import { terminalProgress } from "../progress.ts";
import { FileCowStore, MemoryBudget, MemoryCowStore, removeStaleCowFiles } from "./cow.ts";
import { NbdFlag } from "./protocol.ts";
import type { SessionExport } from "./session.ts";
import { type BlockStore, FileStore, RamStore } from "./store.ts";

const log = getLogger(["pypxe", "nbd"]);
const DEFAULT_COW_MEMORY = 1 << 30;

/** One export: an image path, with an optional name (default: the file's base name) and description. */
export interface NbdExportOptions {
  path: string;
  name?: string;
  description?: string;
}

/** Options of {@linkcode ExportSet}: the images and how connections may change them. */
export interface ExportSetOptions {
  /** Images to serve; the first is also the default ("") export. */
  exports: readonly (string | NbdExportOptions)[];
  /** Accept writes (default false: read-only). */
  write?: boolean;
  /** With `write`, give each connection a private copy-on-write overlay (default true). */
  cow?: boolean;
  /** Keep overlays in memory instead of files (default false). */
  cowInMemory?: boolean;
  /** Bytes all in-memory overlays may use together before writes fail with ENOSPC (default 1 GiB). */
  cowMemoryLimit?: number;
  /** Directory for overlay files (default: a temporary directory made at start, removed at stop). */
  stateDir?: string;
  /** Copy every image into RAM at start (default false). */
  copyToRam?: boolean;
}

/** An export with the image it serves. */
export interface OpenExport extends SessionExport {
  readonly path: string;
  readonly base: BlockStore;
}

/** The open exports of one server, with the state directory and the memory budget their overlays use. */
export class ExportSet {
  readonly #opts: ExportSetOptions;
  readonly #overlayTag: () => string;
  readonly #budget: MemoryBudget;
  #exports: OpenExport[] = [];
  #stateDir: string | null = null;
  #ownsStateDir = false;

  /** Creates the set; `overlayTag` names each new overlay file. Nothing is opened until `open()`. */
  constructor(opts: ExportSetOptions, overlayTag: () => string) {
    this.#opts = opts;
    this.#overlayTag = overlayTag;
    this.#budget = new MemoryBudget(opts.cowMemoryLimit ?? DEFAULT_COW_MEMORY);
  }

  /** The open exports, in the order given. */
  get list(): readonly OpenExport[] {
    return this.#exports;
  }

  /** The export named `name`; "" is the first one. */
  find(name: string): OpenExport | undefined {
    return name === "" ? this.#exports[0] : this.#exports.find((e) => e.name === name);
  }

  /** The directory holding overlay files (while open, when file overlays are in use). */
  get stateDir(): string | null {
    return this.#stateDir;
  }

  /** Bytes in use by in-memory overlays. */
  get cowMemoryUsed(): number {
    return this.#budget.used;
  }

  /** Each export with its size and mode, for the start line. */
  describe(): string {
    return this.#exports.map((e) => `${e.name} (${e.size} bytes, ${this.#modeText()})`).join(", ");
  }

  #modeText(): string {
    const o = this.#opts;
    const where = o.copyToRam ? ", in RAM" : "";
    if (!o.write) return `read-only${where}`;
    if (o.cow === false) return `writable: writes go to the image${where}`;
    return `copy-on-write per client ${o.cowInMemory ? "in memory" : `in ${this.#stateDir}`}${where}`;
  }

  /** Prepares the state directory, then opens the images (copying them to RAM if asked). */
  async open(): Promise<void> {
    const o = this.#opts;
    if (o.exports.length === 0) throw new Error("no export given");
    const write = o.write ?? false;
    const cow = write && (o.cow ?? true);
    const direct = write && !cow;
    if (direct) {
      log.warn("NBD writes go straight to the image(s) and are shared by every client (--no-nbd-cow)");
    }
    if (cow && !o.cowInMemory) await this.#prepareStateDir();

    const seen = new Set<string>();
    for (const spec of o.exports) {
      const { path, name = basename(path), description = "" } = typeof spec === "string"
        ? { path: spec }
        : spec;
      if (seen.has(name)) {
        throw new Error(`two exports are named "${name}"; give each image a distinct file name`);
      }
      seen.add(name);
      let base: BlockStore;
      try {
        base = FileStore.open({ path, writable: direct && !o.copyToRam });
      } catch (err) {
        throw new Error(`cannot open ${path}${direct ? " for writing" : ""}: ${errText(err)}`);
      }
      if (o.copyToRam) {
        try {
          checkFreeMemory(path, base.size);
          const started = performance.now();
          const ram = await RamStore.load({
            source: base,
            writable: direct,
            onProgress: terminalProgress(`copying ${path} to RAM`),
          });
          log.info("copied {path} to RAM ({mb} MB in {s} s)", {
            path,
            mb: (base.size / 1e6).toFixed(1),
            s: ((performance.now() - started) / 1000).toFixed(2),
          });
          base.close();
          base = ram;
        } catch (err) {
          base.close();
          throw err;
        }
      }
      this.#exports.push(this.#makeExport(path, name, description, base, cow));
    }
  }

  #makeExport(path: string, name: string, description: string, base: BlockStore, cow: boolean): OpenExport {
    const writable = cow || base.writable;
    let flags = NbdFlag.HAS_FLAGS | NbdFlag.SEND_FLUSH | NbdFlag.SEND_CACHE;
    if (writable) flags |= NbdFlag.SEND_FUA | NbdFlag.SEND_TRIM | NbdFlag.SEND_WRITE_ZEROES;
    else flags |= NbdFlag.READ_ONLY;
    // every connection sees the same bytes unless each has its own overlay
    if (!cow) flags |= NbdFlag.CAN_MULTI_CONN;
    const open = (): BlockStore => {
      if (!cow) return base;
      if (this.#opts.cowInMemory) return new MemoryCowStore({ base, budget: this.#budget });
      return FileCowStore.create({ base, dir: this.#stateDir!, tag: this.#overlayTag() });
    };
    const release = (store: BlockStore) => {
      if (store !== base) store.close();
    };
    return { path, name, description, size: base.size, flags, base, open, release };
  }

  async #prepareStateDir(): Promise<void> {
    if (this.#opts.stateDir) {
      await Deno.mkdir(this.#opts.stateDir, { recursive: true });
      const removed = removeStaleCowFiles(this.#opts.stateDir);
      if (removed > 0) log.info("removed {n} stale copy-on-write file(s)", { n: removed });
      this.#stateDir = this.#opts.stateDir;
      this.#ownsStateDir = false;
    } else {
      this.#stateDir = await Deno.makeTempDir({ prefix: "pypxe-nbd-" });
      this.#ownsStateDir = true;
    }
  }

  /** Removes the state directory when it was made at start (a given one is kept). */
  async removeStateDir(): Promise<void> {
    if (this.#ownsStateDir && this.#stateDir !== null) {
      try {
        await Deno.remove(this.#stateDir, { recursive: true });
      } catch (err) {
        log.warn("cannot remove {dir}: {err}", { dir: this.#stateDir, err: errText(err) });
      }
    }
    this.#stateDir = null;
    this.#ownsStateDir = false;
  }

  /** Closes every image; a failure is logged and the others are still closed. */
  close(): void {
    for (const exp of this.#exports) {
      try {
        exp.base.close();
      } catch (err) {
        log.warn("closing {path} failed: {err}", { path: exp.path, err: errText(err) });
      }
    }
    this.#exports = [];
  }
}

/** Refuses to copy an image into RAM when it would not fit in the available memory. */
function checkFreeMemory(path: string, size: number): void {
  let available: number;
  try {
    available = Deno.systemMemoryInfo().available;
  } catch (err) {
    log.debug("cannot read free memory ({err}); copying {path} to RAM unchecked", {
      err: errText(err),
      path,
    });
    return;
  }
  if (size > available * 0.9) {
    throw new Error(
      `cannot copy ${path} (${(size / 1e6).toFixed(0)} MB) to RAM: only ${
        (available / 1e6).toFixed(0)
      } MB available`,
    );
  }
}
