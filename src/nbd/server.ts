/**
 * The NBD service: one TCP listener serving one or more image files or block devices. Read-only unless
 * writes are enabled; with writes, each connection gets its own copy-on-write overlay (in a file under a
 * state directory, or in memory within a byte budget) unless copy-on-write is turned off, in which case
 * writes go to the image itself.
 *
 * @example
 * ```ts
 * const server = new NbdServer({ exports: ["disk.img"], hostname: "127.0.0.1", port: 10809 });
 * await server.start();
 * // nbdinfo nbd://127.0.0.1/disk.img
 * await server.stop();
 * ```
 * @module
 */
import { getLogger } from "@logtape/logtape";
import { basename } from "node:path";
import type { BootEvents } from "../events.ts";
import { describeBindError } from "../net.ts";
import type { Service, ServiceFactory } from "../server.ts";
import { NbdFlag } from "./protocol.ts";
import { runSession, type SessionExport, type SessionHost } from "./session.ts";
import {
  type BlockStore,
  FileCowStore,
  FileStore,
  MemoryBudget,
  MemoryCowStore,
  RamStore,
  removeStaleCowFiles,
} from "./store.ts";
import { terminalProgress } from "../progress.ts";

/** One export: an image path, with an optional name (default: the file's base name) and description. */
export interface NbdExportOptions {
  path: string;
  name?: string;
  description?: string;
}

/** Options of {@linkcode NbdServer}. */
export interface NbdServerOptions {
  /** Images to serve; the first is also the default ("") export. */
  exports: readonly (string | NbdExportOptions)[];
  /** Address to bind (default 0.0.0.0). */
  hostname?: string;
  /** TCP port (default 10809; 0 picks a free one, see {@linkcode NbdServer.port}). */
  port?: number;
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
  /** Boot events sink (transfer-start/-end per connection). */
  events?: BootEvents;
  /** Milliseconds a client may take to finish option haggling (default 30 s). */
  handshakeTimeoutMs?: number;
}

const log = getLogger(["pypxe", "nbd"]);
const DEFAULT_COW_MEMORY = 1 << 30;

interface OpenExport extends SessionExport {
  readonly path: string;
  readonly base: BlockStore;
}

interface Connection {
  readonly conn: Deno.TcpConn;
  readonly done: Promise<void>;
}

/** The NBD server (a {@linkcode Service}). */
export class NbdServer implements Service {
  readonly name = "nbd";
  readonly #opts: NbdServerOptions;
  #listener: Deno.TcpListener | null = null;
  #acceptLoop: Promise<void> | null = null;
  #exports: OpenExport[] = [];
  #connections = new Set<Connection>();
  #budget: MemoryBudget;
  #stateDir: string | null = null;
  #ownsStateDir = false;
  #nextConn = 1;
  #stopping = false;

  /** Creates the server; nothing is opened until {@linkcode NbdServer.start}. */
  constructor(opts: NbdServerOptions) {
    this.#opts = opts;
    this.#budget = new MemoryBudget(opts.cowMemoryLimit ?? DEFAULT_COW_MEMORY);
  }

  /** The bound port (after start). */
  get port(): number {
    return this.#listener?.addr.port ?? this.#opts.port ?? 10809;
  }

  /** The directory holding overlay files (after start, when file overlays are in use). */
  get stateDir(): string | null {
    return this.#stateDir;
  }

  /** Bytes in use by in-memory overlays. */
  get cowMemoryUsed(): number {
    return this.#budget.used;
  }

  /** Number of open client connections. */
  get connections(): number {
    return this.#connections.size;
  }

  endpoints(): string[] {
    const names = this.#exports.map((e) => e.name).join(", ");
    return [`TCP ${this.#opts.hostname ?? "0.0.0.0"}:${this.port}${names ? ` (${names})` : ""}`];
  }

  /** Opens the images (copying them to RAM if asked), prepares the state directory, then listens. */
  async start(): Promise<void> {
    const hostname = this.#opts.hostname ?? "0.0.0.0";
    const port = this.#opts.port ?? 10809;
    this.#stopping = false;
    try {
      await this.#openExports();
    } catch (err) {
      this.#closeExports();
      throw new Error(`nbd: ${err instanceof Error ? err.message : String(err)}`);
    }
    try {
      this.#listener = Deno.listen({ hostname, port, transport: "tcp" });
    } catch (err) {
      this.#closeExports();
      await this.#removeStateDir();
      throw new Error(describeBindError(err, { service: "nbd", proto: "TCP", host: hostname, port }));
    }
    this.#acceptLoop = this.#accept(this.#listener);
    log.info("NBD on {where}: {exports}", {
      where: `${hostname}:${this.port}`,
      exports: this.#exports.map((e) => `${e.name} (${e.size} bytes, ${this.#modeText()})`).join(", "),
    });
  }

  /** Stops listening, closes every connection (their overlays are deleted) and the images. */
  async stop(): Promise<void> {
    this.#stopping = true;
    try {
      this.#listener?.close();
    } catch {
      // already closed
    }
    this.#listener = null;
    await this.#acceptLoop;
    this.#acceptLoop = null;
    for (const c of this.#connections) closeQuietly(c.conn);
    await Promise.all([...this.#connections].map((c) => c.done));
    this.#closeExports();
    await this.#removeStateDir();
  }

  #modeText(): string {
    const o = this.#opts;
    const where = o.copyToRam ? ", in RAM" : "";
    if (!o.write) return `read-only${where}`;
    if (o.cow === false) return `writable: writes go to the image${where}`;
    return `copy-on-write per client ${o.cowInMemory ? "in memory" : `in ${this.#stateDir}`}${where}`;
  }

  async #openExports(): Promise<void> {
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
          const ram = RamStore.load({
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
      return FileCowStore.create({ base, dir: this.#stateDir!, tag: `${Deno.pid}-${this.#nextConn}` });
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

  async #removeStateDir(): Promise<void> {
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

  #closeExports(): void {
    for (const exp of this.#exports) {
      try {
        exp.base.close();
      } catch (err) {
        log.warn("closing {path} failed: {err}", { path: exp.path, err: errText(err) });
      }
    }
    this.#exports = [];
  }

  async #accept(listener: Deno.TcpListener): Promise<void> {
    // ends when stop() closes the listener
    for (;;) {
      let conn: Deno.TcpConn;
      try {
        conn = await listener.accept();
      } catch (err) {
        if (!this.#stopping) log.error("accept failed, no longer listening: {err}", { err: errText(err) });
        return;
      }
      if (this.#stopping) {
        closeQuietly(conn);
        return;
      }
      const entry: Connection = { conn, done: Promise.resolve() };
      const done = this.#serve(conn).finally(() => this.#connections.delete(entry));
      (entry as { done: Promise<void> }).done = done;
      this.#connections.add(entry);
    }
  }

  async #serve(conn: Deno.TcpConn): Promise<void> {
    const id = this.#nextConn++;
    const addr = conn.remoteAddr;
    const client = `${addr.hostname}:${addr.port}`;
    const events = this.#opts.events;
    const transferId = events?.nextId() ?? id;
    try {
      conn.setNoDelay(true);
    } catch {
      // not fatal: replies are gathered into large writes anyway
    }
    const timer = setTimeout(() => {
      log.warn("{client}: handshake not finished in time, closing", { client });
      closeQuietly(conn);
    }, this.#opts.handshakeTimeoutMs ?? 30_000);
    const started = performance.now();
    const host: SessionHost = {
      find: (name) => name === "" ? this.#exports[0] : this.#exports.find((e) => e.name === name),
      list: () => this.#exports,
      onOpen: (exp) => {
        log.debug("{client}: export {name} opened", { client, name: exp.name });
        events?.emit({
          kind: "transfer-start",
          service: "nbd",
          id: transferId,
          client,
          file: exp.name,
          size: exp.size,
          options: (exp.flags & NbdFlag.READ_ONLY) ? "read-only" : "writable",
        });
      },
    };
    const result = await runSession({
      stream: conn,
      host,
      client,
      onHandshakeDone: () => clearTimeout(timer),
    });
    clearTimeout(timer);
    closeQuietly(conn);
    if (result.export !== undefined) {
      events?.emit({
        kind: "transfer-end",
        service: "nbd",
        id: transferId,
        client,
        file: result.export.name,
        bytes: result.bytesRead + result.bytesWritten,
        ms: performance.now() - started,
        outcome: result.outcome === "ok" || this.#stopping ? "ok" : result.outcome,
      });
    } else if (result.outcome !== "ok") {
      log.debug("{client}: {outcome}", { client, outcome: result.outcome });
    }
  }
}

function closeQuietly(conn: Deno.Conn): void {
  try {
    conn.close();
  } catch {
    // already closed by the other side of the session
  }
}

function errText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
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

/** Builds the NBD service from the config; null when no image is configured. */
export const createNbdService: ServiceFactory = (ctx) => {
  const c = ctx.config;
  const devices = [c.NBD_BLOCK_DEVICE].flat().filter((d) => d !== "");
  if (devices.length === 0) return null;
  return new NbdServer({
    exports: devices,
    hostname: c.NBD_SERVER_IP,
    port: c.NBD_PORT,
    write: c.NBD_WRITE,
    cow: c.NBD_COW,
    cowInMemory: c.NBD_COW_IN_MEM,
    copyToRam: c.NBD_COPY_TO_RAM,
    stateDir: c.NBD_STATE_DIR || undefined,
    cowMemoryLimit: c.NBD_COW_MEM_LIMIT,
    events: ctx.events,
  });
};
