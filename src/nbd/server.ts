/**
 * The NBD service: one TCP listener serving the exports of an {@linkcode ExportSet} (`exports.ts`), with
 * a connection cap that evicts unfinished handshakes, a handshake timeout, and backoff and listening
 * again after accept failures. Read-only unless writes are enabled; with writes, each connection gets its
 * own copy-on-write overlay unless copy-on-write is turned off, in which case writes go to the image.
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
import { closeQuietly, errText } from "../errors.ts";
import type { BootEvents } from "../events.ts";
import { backoff, isResourceExhaustion } from "../limits.ts";
import { LogThrottle } from "../log_throttle.ts";
import { describeBindError } from "../net.ts";
import type { Service, ServiceFactory } from "../server.ts";
import { ExportSet, type ExportSetOptions } from "./exports.ts";
import { NbdFlag } from "./protocol.ts";
import { escapeTemplate, runSession, type SessionHost } from "./session.ts";

export type { NbdExportOptions } from "./exports.ts";

/** Options of {@linkcode NbdServer}: the exports (see {@linkcode ExportSetOptions}) and the listener. */
export interface NbdServerOptions extends ExportSetOptions {
  /** Address to bind (default 0.0.0.0). */
  hostname?: string;
  /** TCP port (default 10809; 0 picks a free one, see {@linkcode NbdServer.port}). */
  port?: number;
  /** Boot events sink (transfer-start/-end per connection). */
  events?: BootEvents;
  /**
   * Milliseconds a client may take from connecting to the end of option haggling (default 10 s): a
   * client that never finishes holds one descriptor for at most this long.
   */
  handshakeTimeoutMs?: number;
  /**
   * Open connections at most (default 256). At the cap a new connection evicts the oldest one still in
   * its handshake (one that has not even sent its flags first); when every connection is past its
   * handshake, the new one is closed at once. Either way a `connection` `refused` event is emitted.
   */
  maxConnections?: number;
  /** Opens the listener (default `Deno.listen`); tests inject accept failures through it. */
  listen?: (opts: Deno.TcpListenOptions & { transport: "tcp" }) => Deno.TcpListener;
}

/** Default of {@linkcode NbdServerOptions.maxConnections}. */
export const DEFAULT_MAX_CONNECTIONS = 256;
/** Default of {@linkcode NbdServerOptions.handshakeTimeoutMs}. */
export const DEFAULT_HANDSHAKE_TIMEOUT_MS = 10_000;
/** First and longest pause after a failed accept or listen. */
const BACKOFF_FIRST_MS = 50;
const BACKOFF_MAX_MS = 1000;

const log = getLogger(["pypxe", "nbd"]);

interface Connection {
  readonly conn: Deno.TcpConn;
  readonly client: string;
  /** `greeted`: no client flags yet; `haggling`: options under way; `done`: past the handshake. */
  stage: "greeted" | "haggling" | "done";
  /** Set when the server closed it itself: the session's own end is then not logged again. */
  closedBy: "timeout" | "evicted" | "stop" | null;
  /** The session logged (rate-limited) why it ended: the debug outcome line would repeat it. */
  noticed: boolean;
  timer: ReturnType<typeof setTimeout> | undefined;
}

/** The NBD server (a {@linkcode Service}). */
export class NbdServer implements Service {
  readonly name = "nbd";
  readonly #opts: NbdServerOptions;
  #listener: Deno.TcpListener | null = null;
  /** Where the listener is bound (the port picked when 0 was asked), for listening again. */
  #bound: { hostname: string; port: number } | null = null;
  #acceptLoop: Promise<void> | null = null;
  #abort = new AbortController();
  readonly #exports: ExportSet;
  /** Open connections, oldest first; the two subsets hold those still in their handshake. */
  #connections = new Set<Connection>();
  #greeted = new Set<Connection>();
  #haggling = new Set<Connection>();
  /** Every running session, including those of connections already closed, awaited by stop(). */
  #sessions = new Set<Promise<void>>();
  readonly #throttle = new LogThrottle({ log });
  readonly #maxConnections: number;
  readonly #handshakeTimeoutMs: number;
  #nextConn = 1;
  #stopping = false;

  /** Creates the server; nothing is opened until {@linkcode NbdServer.start}. */
  constructor(opts: NbdServerOptions) {
    this.#opts = opts;
    this.#exports = new ExportSet(opts, () => `${Deno.pid}-${this.#nextConn}`);
    this.#maxConnections = Math.max(1, opts.maxConnections ?? DEFAULT_MAX_CONNECTIONS);
    this.#handshakeTimeoutMs = opts.handshakeTimeoutMs ?? DEFAULT_HANDSHAKE_TIMEOUT_MS;
  }

  /** The bound port (after start). */
  get port(): number {
    return this.#bound?.port ?? this.#opts.port ?? 10809;
  }

  /** The connection cap in force. */
  get maxConnections(): number {
    return this.#maxConnections;
  }

  /** Milliseconds a client has to finish its handshake. */
  get handshakeTimeoutMs(): number {
    return this.#handshakeTimeoutMs;
  }

  /** The directory holding overlay files (after start, when file overlays are in use). */
  get stateDir(): string | null {
    return this.#exports.stateDir;
  }

  /** Bytes in use by in-memory overlays. */
  get cowMemoryUsed(): number {
    return this.#exports.cowMemoryUsed;
  }

  /** Number of open client connections. */
  get connections(): number {
    return this.#connections.size;
  }

  endpoints(): string[] {
    const names = this.#exports.list.map((e) => e.name).join(", ");
    return [`TCP ${this.#opts.hostname ?? "0.0.0.0"}:${this.port}${names ? ` (${names})` : ""}`];
  }

  /** Opens the images (copying them to RAM if asked), prepares the state directory, then listens. */
  async start(): Promise<void> {
    const hostname = this.#opts.hostname ?? "0.0.0.0";
    const port = this.#opts.port ?? 10809;
    this.#stopping = false;
    this.#abort = new AbortController();
    try {
      await this.#exports.open();
    } catch (err) {
      this.#exports.close();
      await this.#exports.removeStateDir(); // a temp dir made for the overlays must not leak
      throw new Error(`nbd: ${errText(err)}`);
    }
    try {
      this.#listener = this.#listen(hostname, port);
    } catch (err) {
      this.#exports.close();
      await this.#exports.removeStateDir();
      throw new Error(describeBindError(err, { service: "nbd", proto: "TCP", host: hostname, port }));
    }
    this.#bound = { hostname, port: this.#listener.addr.port };
    this.#acceptLoop = this.#accept();
    log.info("NBD on {where}: {exports}", {
      where: `${hostname}:${this.port}`,
      exports: this.#exports.describe(),
    });
  }

  /** Stops listening, closes every connection (their overlays are deleted) and the images. */
  async stop(): Promise<void> {
    this.#stopping = true;
    this.#abort.abort();
    this.#closeListener();
    await this.#acceptLoop;
    this.#acceptLoop = null;
    for (const c of [...this.#connections]) this.#drop(c, "stop");
    await Promise.all([...this.#sessions]);
    this.#throttle.close();
    this.#exports.close();
    await this.#exports.removeStateDir();
    this.#bound = null;
  }

  #listen(hostname: string, port: number): Deno.TcpListener {
    const opts = { hostname, port, transport: "tcp" as const };
    return this.#opts.listen ? this.#opts.listen(opts) : Deno.listen(opts);
  }

  #closeListener(): void {
    try {
      this.#listener?.close();
    } catch {
      // already closed
    }
    this.#listener = null;
  }

  /**
   * Accepts until stop(). It never gives up while the server runs: out of descriptors (EMFILE, ENFILE,
   * ENOBUFS) it frees the oldest connection still in its handshake and backs off; any other failure
   * (the listener closed under it) backs off and listens again on the same address.
   */
  async #accept(): Promise<void> {
    let delay = 0;
    const pause = () => {
      delay = delay === 0 ? BACKOFF_FIRST_MS : Math.min(delay * 2, BACKOFF_MAX_MS);
      return backoff(delay, this.#abort.signal);
    };
    while (!this.#stopping) {
      if (this.#listener === null) {
        const { hostname, port } = this.#bound!;
        try {
          this.#listener = this.#listen(hostname, port);
          log.info("listening again on {where}", { where: `${hostname}:${port}` });
        } catch (err) {
          this.#note(
            "listen-failed",
            "error",
            `cannot listen on ${hostname}:${port} again (${errText(err)}); retrying`,
            "NBD listen retries",
          );
          await pause();
          continue;
        }
      }
      const listener = this.#listener;
      let conn: Deno.TcpConn;
      try {
        conn = await listener.accept();
      } catch (err) {
        if (this.#stopping) return;
        if (isResourceExhaustion(err)) {
          this.#note(
            "accept-exhausted",
            "error",
            `accept failed: ${errText(err)}; closing the oldest unfinished handshake and backing off`,
            "NBD accept failures for lack of descriptors",
          );
          const victim = this.#oldestPending();
          if (victim !== undefined) this.#evict(victim, "descriptors exhausted");
        } else if (
          err instanceof Deno.errors.ConnectionAborted || err instanceof Deno.errors.ConnectionReset
        ) {
          // a client gave up while queued: the listener is fine
          continue;
        } else {
          this.#note(
            "accept-failed",
            "error",
            `accept failed: ${errText(err)}; listening again`,
            "NBD accept failures",
          );
          if (this.#listener === listener) this.#closeListener();
        }
        await pause();
        continue;
      }
      delay = 0;
      if (this.#stopping) {
        closeQuietly(conn);
        return;
      }
      try {
        this.#admit(conn);
      } catch (err) {
        closeQuietly(conn);
        this.#note(
          "admit-failed",
          "error",
          `cannot serve a connection: ${errText(err)}`,
          "NBD admit failures",
        );
      }
    }
  }

  /** Takes a new connection in, making room at the cap (or refusing it when no room can be made). */
  #admit(conn: Deno.TcpConn): void {
    const client = clientText(conn);
    const events = this.#opts.events;
    if (this.#connections.size >= this.#maxConnections) {
      const victim = this.#oldestPending();
      if (victim === undefined) {
        closeQuietly(conn);
        events?.emit({ kind: "connection", service: "nbd", outcome: "refused" });
        this.#note(
          "refused",
          "warn",
          `${client}: refused: ${this.#maxConnections} connections open, all serving clients`,
          "NBD connections refused at the cap",
        );
        return;
      }
      this.#evict(victim, `${this.#maxConnections} connections open`);
    }
    const entry: Connection = {
      conn,
      client,
      stage: "greeted",
      closedBy: null,
      noticed: false,
      timer: undefined,
    };
    this.#connections.add(entry);
    this.#greeted.add(entry);
    entry.timer = setTimeout(() => {
      if (entry.stage === "done" || entry.closedBy !== null) return;
      events?.emit({ kind: "connection", service: "nbd", outcome: "timed-out" });
      this.#note(
        "handshake-timeout",
        "warn",
        `${client}: handshake not finished in ${this.#handshakeTimeoutMs / 1000} s, closing`,
        "NBD handshake timeouts",
      );
      this.#drop(entry, "timeout");
    }, this.#handshakeTimeoutMs);
    const session: Promise<void> = this.#serve(entry)
      .catch((err) => log.error("{client}: {err}", { client, err: errText(err) }))
      .finally(() => {
        this.#drop(entry, null);
        this.#sessions.delete(session);
      });
    this.#sessions.add(session);
  }

  /** The oldest connection still in its handshake, preferring those that never sent their flags. */
  #oldestPending(): Connection | undefined {
    for (const c of this.#greeted) return c;
    for (const c of this.#haggling) return c;
    return undefined;
  }

  #evict(victim: Connection, why: string): void {
    this.#opts.events?.emit({ kind: "connection", service: "nbd", outcome: "refused" });
    this.#note(
      "evicted",
      "info",
      `${victim.client}: closed before finishing its handshake (${why})`,
      "NBD unfinished handshakes closed to make room",
    );
    this.#drop(victim, "evicted");
  }

  /** Forgets a connection and closes it; `why` marks the server as the one that ended it. */
  #drop(entry: Connection, why: Connection["closedBy"]): void {
    clearTimeout(entry.timer);
    entry.timer = undefined;
    if (why !== null && entry.closedBy === null && this.#connections.has(entry)) entry.closedBy = why;
    this.#connections.delete(entry);
    this.#greeted.delete(entry);
    this.#haggling.delete(entry);
    closeQuietly(entry.conn);
  }

  /** A rate-limited line (see {@linkcode LogThrottle}); `message` is plain text. */
  #note(kind: string, level: "debug" | "info" | "warn" | "error", message: string, label: string): void {
    this.#throttle.note(kind, level, escapeTemplate(message), label);
  }

  async #serve(entry: Connection): Promise<void> {
    const { conn, client } = entry;
    const id = this.#nextConn++;
    const events = this.#opts.events;
    const transferId = events?.nextId() ?? id;
    try {
      conn.setNoDelay(true);
    } catch {
      // not fatal: replies are gathered into large writes anyway
    }
    const started = performance.now();
    const host: SessionHost = {
      find: (name) => this.#exports.find(name),
      list: () => this.#exports.list,
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
      onClientFlags: () => {
        if (entry.stage !== "greeted") return;
        entry.stage = "haggling";
        if (this.#greeted.delete(entry)) this.#haggling.add(entry);
      },
      onHandshakeDone: () => {
        entry.stage = "done";
        clearTimeout(entry.timer);
        entry.timer = undefined;
        this.#greeted.delete(entry);
        this.#haggling.delete(entry);
      },
      notice: (kind, level, message, label) => {
        // a connection the server closed itself was reported when it did so
        entry.noticed = true;
        if (entry.closedBy === null) this.#note(kind, level, message, label);
      },
    });
    this.#drop(entry, null);
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
    } else if (result.outcome !== "ok" && entry.closedBy === null && !entry.noticed) {
      this.#note("handshake-failed", "debug", `${client}: ${result.outcome}`, "NBD handshakes that failed");
    }
  }
}

function clientText(conn: Deno.TcpConn): string {
  try {
    const addr = conn.remoteAddr;
    return `${addr.hostname}:${addr.port}`;
  } catch {
    return "?";
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
    handshakeTimeoutMs: c.NBD_HANDSHAKE_TIMEOUT * 1000,
    maxConnections: c.NBD_MAX_CONNECTIONS || ctx.caps?.nbd,
    events: ctx.events,
  });
};
