/**
 * The HTTP file server: GET/HEAD of the netboot tree with Range, conditional requests, a small-file
 * cache, 1 MiB pull streams for big files, and generated iPXE menus at `/boot.http.ipxe` and
 * `/boot.ipxe`.
 *
 * Connections are accepted and timed by `connections.ts` (not Deno.serve, which has no connection cap,
 * no header or keep-alive timeout, and ends the process when accept() hits EMFILE): a cap on open
 * connections, a header timeout, an idle timeout, and a write timeout for a client that stops reading
 * (`stallTimeoutMs`, which also ends the file stream and closes its file). `stop()` lets running
 * downloads finish for `stopGraceMs`, then closes every connection.
 * @module
 */
import { getConfig, getLogger } from "@logtape/logtape";
import type { BootEvents } from "../events.ts";
import { describeBindError } from "../net.ts";
import { NetbootError, type NetbootFile, type NetbootFs } from "../netboot/fs.ts";
import { isResourceExhaustion } from "../limits.ts";
import { LogThrottle } from "../log_throttle.ts";
import type { Service, ServiceFactory } from "../server.ts";
import {
  HttpConnections,
  type IncomingRequest,
  rawResponse,
  type Reply,
  type ServeInfo,
} from "./connections.ts";
import { ipxeMenu, type IsoImage, MENU_FILE_NAME, MenuFileError, parseMenuFile } from "./ipxe.ts";
import { contentTypeFor, entityTag, ifRangeHolds, notModified, parseRange, requestPath } from "./range.ts";
import { fileRangeStream } from "./stream.ts";

const log = getLogger(["pypxe", "http"]);
const LOG_CATEGORY = ["pypxe", "http"];
let logConfigSeen: ReturnType<typeof getConfig> | undefined;
let requestLogOn = false;

/**
 * True when an INFO record of `pypxe.http` reaches a sink under the current LogTape configuration.
 * LogTape builds and dispatches a record even when no sink listens, which costs about a third of the
 * small-file request rate, so the per-request line is skipped when nobody would see it.
 */
function requestLogEnabled(): boolean {
  const config = getConfig();
  if (config === logConfigSeen) return requestLogOn;
  logConfigSeen = config;
  requestLogOn = false;
  if (config === null) return false;
  let sinks = 0;
  for (const logger of config.loggers) {
    const category = typeof logger.category === "string" ? [logger.category] : logger.category;
    if (!category.every((part, i) => LOG_CATEGORY[i] === part)) continue;
    const level = logger.lowestLevel ?? "trace";
    if (level !== "trace" && level !== "debug" && level !== "info") return false;
    sinks += logger.sinks?.length ?? 0;
  }
  requestLogOn = sinks > 0;
  return requestLogOn;
}

/** Names answered with a generated iPXE menu unless the overlay holds a file of that name. */
export const MENU_NAMES: readonly string[] = ["boot.http.ipxe", "boot.ipxe"];

/** Options of {@linkcode HttpServer}. */
export interface HttpServerOptions {
  /** Address to bind, e.g. `0.0.0.0` or `127.0.0.1`. */
  host: string;
  /** Port to bind; 0 picks a free one (see {@linkcode HttpServer.port}). */
  port: number;
  netboot: NetbootFs;
  events?: BootEvents;
  /** Address put into generated menus when a request carries no Host header. */
  advertiseHost?: string;
  /** Cut off a response whose client has not read for this long (ms); default 60 s, 0 disables. */
  stallTimeoutMs?: number;
  /** Files up to this size are kept in memory; default 1 MiB. */
  cacheFileMax?: number;
  /** Total bytes of cached file bodies; default 64 MiB. */
  cacheTotalMax?: number;
  /** Cached files are re-checked (path, size, mtime) after this many ms; default 1000. */
  revalidateMs?: number;
  /** Serve generated iPXE menus; default true. */
  menus?: boolean;
  /** On stop, running downloads may finish for this long (ms) before they are cut; default 2000. */
  stopGraceMs?: number;
  /** Extra routes tried before the file tree (the status pages); null means "not mine". */
  routes?: (req: IncomingRequest, path: string) => Response | null;
  /** Open connections at most; default 1024 (the service factory sizes it from the fd limit). */
  maxConnections?: number;
  /** A request head must arrive within this many ms; default 30 s. */
  headerTimeoutMs?: number;
  /** Keep-alive connections idle this long are closed; default 60 s. */
  idleTimeoutMs?: number;
  /** Binds the listener (tests inject failures); default `Deno.listen`. */
  listen?: (opts: Deno.TcpListenOptions & { transport?: "tcp" }) => Deno.Listener;
}

interface CacheEntry {
  /** The request name it is cached under. */
  readonly key: string;
  readonly file: NetbootFile;
  readonly etag: string;
  readonly lastModified: string | null;
  readonly contentType: string;
  /** The whole file when it is small enough to cache. */
  readonly body: Uint8Array<ArrayBuffer> | null;
  /** Response fields of a full 200 answer, built once (the length comes from the body). */
  readonly fullHeaders: [string, string][];
  checkedAt: number;
}

interface MenuInputs {
  readonly isos: IsoImage[];
  readonly memdisk: string | null;
  readonly menuText: string | null;
  readonly at: number;
}

/** A finished request, for the INFO line and the boot events. */
interface Outcome {
  status: number;
  bytes: number;
  outcome: string;
}

const ALLOW = "GET, HEAD";
const REASONS: Record<number, string> = {
  400: "Bad Request",
  403: "Forbidden",
  404: "Not Found",
  405: "Method Not Allowed",
  416: "Range Not Satisfiable",
  500: "Internal Server Error",
  503: "Service Unavailable",
};

/** A plain-text error response with a one-line body. */
function errorResponse(status: number, detail: string, extra: Record<string, string> = {}): Reply {
  return rawResponse(
    status,
    [["content-type", "text/plain; charset=utf-8"], ...Object.entries(extra)],
    TEXT.encode(`${status} ${REASONS[status] ?? ""}: ${detail}\n`),
  );
}

const TEXT = new TextEncoder();

/** The netboot tree over HTTP. */
export class HttpServer implements Service {
  readonly name = "http";
  readonly #opts: Required<Omit<HttpServerOptions, "events" | "advertiseHost" | "routes" | "listen">> & {
    events?: BootEvents;
    advertiseHost?: string;
    routes?: HttpServerOptions["routes"];
    listen?: HttpServerOptions["listen"];
  };
  #server: HttpConnections | null = null;
  #throttle: LogThrottle | null = null;
  #cache = new Map<string, CacheEntry>();
  #cacheBytes = 0;
  #menuInputs: MenuInputs | null = null;
  /** Aborted when stop() gives up on running downloads: ends their streams. */
  #stopping = new AbortController();
  #closing = false;

  /** Creates the server; nothing is bound until {@linkcode start}. */
  constructor(opts: HttpServerOptions) {
    this.#opts = {
      stallTimeoutMs: 60_000,
      cacheFileMax: 1 << 20,
      cacheTotalMax: 64 << 20,
      revalidateMs: 1000,
      menus: true,
      stopGraceMs: 2000,
      maxConnections: 1024,
      headerTimeoutMs: 30_000,
      idleTimeoutMs: 60_000,
      ...opts,
    };
  }

  /** The bound port (the real one when 0 was asked for). */
  get port(): number {
    return this.#server?.port ?? this.#opts.port;
  }

  /** Open connections now. */
  get connections(): number {
    return this.#server?.size ?? 0;
  }

  /** Binds and starts serving; rejects with a one-line message when the port cannot be bound. */
  start(): Promise<void> {
    if (this.#server !== null) return Promise.resolve();
    const { host, port } = this.#opts;
    this.#closing = false;
    this.#stopping = new AbortController();
    const throttle = new LogThrottle({ log });
    const events = this.#opts.events;
    const server = new HttpConnections({
      hostname: host,
      port,
      handler: (req, info) => this.#handle(req, info),
      maxConnections: this.#opts.maxConnections,
      headerTimeoutMs: this.#opts.headerTimeoutMs,
      idleTimeoutMs: this.#opts.idleTimeoutMs,
      writeTimeoutMs: this.#opts.stallTimeoutMs,
      onError: (err) => {
        log.error("internal error: {err}", { err: String(err) });
        return errorResponse(500, "internal error");
      },
      onDropped: (outcome) => events?.emit({ kind: "connection", service: "http", outcome }),
      log: throttle,
      listen: this.#opts.listen,
    });
    try {
      server.start();
    } catch (err) {
      throttle.close();
      return Promise.reject(new Error(describeBindError(err, { service: "http", proto: "TCP", host, port })));
    }
    this.#server = server;
    this.#throttle = throttle;
    return Promise.resolve();
  }

  /** Stops accepting, closes idle connections, gives running downloads `stopGraceMs`, then cuts them. */
  async stop(): Promise<void> {
    const server = this.#server;
    if (server === null) return;
    this.#server = null;
    this.#closing = true;
    await server.stop(this.#opts.stopGraceMs, () => this.#stopping.abort());
    this.#throttle?.close();
    this.#throttle = null;
    this.#cache.clear();
    this.#cacheBytes = 0;
  }

  /** The listening endpoint for the banner. */
  endpoints(): string[] {
    return [`TCP ${this.#opts.host}:${this.port}`];
  }

  /** Drops cached files and menu inputs (SIGHUP). */
  reload(): Promise<void> {
    this.#cache.clear();
    this.#cacheBytes = 0;
    this.#menuInputs = null;
    return Promise.resolve();
  }

  #handle(req: IncomingRequest, info: ServeInfo): Reply | Promise<Reply> {
    const started = performance.now();
    const path = requestPath(req.target);
    // remoteAddr is lazy and unreadable once the request closed: read it before any await
    let client: string | undefined;
    const who = () => client ??= `${info.remoteAddr.hostname}:${info.remoteAddr.port}`;
    const done = (o: Outcome) => {
      if (!requestLogEnabled()) return;
      const secs = ((performance.now() - started) / 1000).toFixed(3);
      // partial content (sanboot reads an ISO in thousands of small ranges) is detail, not a boot step
      log[o.status === 206 ? "debug" : "info"]("{client} {path} {status} {bytes} {secs}s", () => ({
        client: who(),
        path: path ?? req.target,
        status: o.status,
        bytes: o.bytes,
        secs,
      }));
    };
    try {
      const routed = path !== null && this.#opts.routes ? this.#opts.routes(req, path) : null;
      if (routed !== null) return routed;
      // fast path: a small file already in memory and recently checked is answered without awaiting
      if (path !== null && (req.method === "GET" || req.method === "HEAD")) {
        const entry = this.#cache.get(path.charCodeAt(1) === 47 ? path.replace(/^\/+/, "") : path.slice(1));
        if (
          entry !== undefined && entry.body !== null &&
          performance.now() - entry.checkedAt < this.#opts.revalidateMs
        ) {
          return this.#serveEntry(req, info, entry, done);
        }
      }
      who();
      return this.#respond(req, info, path, done).catch((err) => this.#internalError(err, path, done));
    } catch (err) {
      return this.#internalError(err, path, done);
    }
  }

  #internalError(err: unknown, path: string | null, done: (o: Outcome) => void): Reply {
    log.error("{path}: {err}", { path, err: String(err) });
    done({ status: 500, bytes: 0, outcome: String(err) });
    return errorResponse(500, "internal error");
  }

  async #respond(
    req: IncomingRequest,
    info: ServeInfo,
    path: string | null,
    done: (o: Outcome) => void,
  ): Promise<Reply> {
    const isHead = req.method === "HEAD";
    const fail = (status: number, detail: string, extra?: Record<string, string>) => {
      done({ status, bytes: 0, outcome: detail });
      return errorResponse(status, detail, extra);
    };
    if (req.method !== "GET" && !isHead) return fail(405, `${req.method} is not supported`, { allow: ALLOW });
    if (path === null) return fail(400, "invalid percent-encoding in the path");
    const name = path.replace(/^\/+/, "");
    if (name === "") return fail(404, "no index: ask for a file by name");

    if (this.#opts.menus && MENU_NAMES.includes(name.toLowerCase())) {
      const menu = await this.#menu(req, name);
      if (menu !== null) {
        const body = new TextEncoder().encode(menu);
        done({ status: 200, bytes: isHead ? 0 : body.length, outcome: "ok" });
        return rawResponse(200, [
          ["content-type", "text/plain; charset=utf-8"],
          ["cache-control", "no-store"],
        ], body);
      }
    }

    let entry: CacheEntry;
    try {
      entry = await this.#lookup(name);
    } catch (err) {
      if (!(err instanceof NetbootError)) throw err;
      if (err.code === "forbidden") return fail(403, "access denied");
      return fail(404, err.code === "is-directory" ? "is a directory" : "no such file");
    }
    return await this.#serveEntry(req, info, entry, done);
  }

  /** Answers GET/HEAD for a resolved file: 304, 416, 206 or 200, from memory or as a stream. */
  #serveEntry(
    req: IncomingRequest,
    info: ServeInfo,
    entry: CacheEntry,
    done: (o: Outcome) => void,
  ): Reply | Promise<Reply> {
    const isHead = req.method === "HEAD";
    const { file, etag, lastModified } = entry;
    const size = file.size;
    const reqHeaders = req.headers;
    const ifNoneMatch = reqHeaders.get("if-none-match");
    const ifModifiedSince = reqHeaders.get("if-modified-since");
    if (
      (ifNoneMatch !== null || ifModifiedSince !== null) &&
      notModified({ ifNoneMatch, ifModifiedSince }, etag, file.mtime)
    ) {
      done({ status: 304, bytes: 0, outcome: "not modified" });
      return rawResponse(304, [["etag", etag], ...lastModifiedHeader(lastModified)], null);
    }
    const rangeHeader = isHead ? null : reqHeaders.get("range");
    if (rangeHeader === null && entry.body !== null) {
      done({ status: 200, bytes: isHead ? 0 : size, outcome: "ok" });
      if (isHead) return rawResponse(200, entry.fullHeaders, entry.body);
      this.#emitSmall(info, file.name, size);
      return rawResponse(200, entry.fullHeaders, entry.body);
    }

    const headers: Record<string, string> = {
      "content-type": entry.contentType,
      "accept-ranges": "bytes",
      etag,
    };
    if (lastModified !== null) headers["last-modified"] = lastModified;
    let start = 0;
    let length = size;
    let status = 200;
    if (rangeHeader !== null && ifRangeHolds(reqHeaders.get("if-range"), etag, lastModified)) {
      const range = parseRange(rangeHeader, size);
      if (range.kind === "unsatisfiable") {
        const detail = `range ${rangeHeader} is outside the file`;
        done({ status: 416, bytes: 0, outcome: detail });
        return errorResponse(416, detail, { "content-range": `bytes */${size}` });
      }
      if (range.kind === "partial") {
        start = range.range.start;
        length = range.range.end - start + 1;
        status = 206;
        headers["content-range"] = `bytes ${start}-${range.range.end}/${size}`;
      }
    }
    headers["content-length"] = String(length);
    return this.#sendFile(req, info, entry, { status, headers, start, length }, done);
  }

  /** transfer-start/transfer-end of a file answered from memory in one piece. */
  #emitSmall(info: ServeInfo, file: string, size: number): void {
    const events = this.#opts.events;
    if (events === undefined) return;
    const id = events.nextId();
    const client = `${info.remoteAddr.hostname}:${info.remoteAddr.port}`;
    events.emit({ kind: "transfer-start", service: "http", id, client, file, size });
    events.emit({
      kind: "transfer-end",
      service: "http",
      id,
      client,
      file,
      bytes: size,
      ms: 0,
      outcome: "ok",
    });
  }

  async #sendFile(
    req: IncomingRequest,
    info: ServeInfo,
    entry: CacheEntry,
    answer: { status: number; headers: Record<string, string>; start: number; length: number },
    done: (o: Outcome) => void,
  ): Promise<Reply> {
    const { status, headers, start, length } = answer;
    const { file } = entry;
    const isHead = req.method === "HEAD";
    const client = `${info.remoteAddr.hostname}:${info.remoteAddr.port}`;
    const fail = (status: number, detail: string) => {
      done({ status, bytes: 0, outcome: detail });
      return errorResponse(status, detail);
    };
    if (isHead) {
      done({ status, bytes: 0, outcome: "ok" });
      return rawResponse(status, Object.entries(headers), null);
    }
    const events = this.#opts.events;
    const id = events?.nextId() ?? 0;
    events?.emit({ kind: "transfer-start", service: "http", id, client, file: file.name, size: length });
    const t0 = performance.now();
    const end = (bytes: number, outcome: string) => {
      done({ status, bytes, outcome });
      events?.emit({
        kind: "transfer-end",
        service: "http",
        id,
        client,
        file: file.name,
        bytes,
        ms: performance.now() - t0,
        outcome,
      });
    };

    if (entry.body !== null) {
      const body = status === 206 ? entry.body.subarray(start, start + length) : entry.body;
      end(length, "ok");
      return rawResponse(status, Object.entries(headers), body);
    }
    if (length === 0) {
      end(0, "ok");
      return rawResponse(status, Object.entries(headers), null);
    }

    if (this.#closing) return fail(503, "server stopping");
    let fh: Deno.FsFile;
    try {
      fh = await Deno.open(file.path, { read: true });
    } catch (err) {
      this.#forget(entry.key);
      if (err instanceof Deno.errors.NotFound) return fail(404, "no such file");
      if (isResourceExhaustion(err)) {
        this.#throttle?.note(
          "open-exhausted",
          "warn",
          `cannot open ${file.name}: ${err}`,
          "files refused (503)",
        );
        return fail(503, "out of file descriptors, try again");
      }
      throw err;
    }
    if (this.#closing) {
      fh.close();
      return fail(503, "server stopping");
    }
    let streamOutcome: { bytes: number; outcome: string } | null = null;
    const stream = fileRangeStream({
      file: fh,
      start,
      length,
      stallTimeoutMs: this.#opts.stallTimeoutMs,
      signal: this.#stopping.signal,
      onDone: (bytes, outcome) => {
        streamOutcome = { bytes, outcome };
        if (outcome !== "ok") end(bytes, outcome);
      },
    });
    info.completed.then(
      () => {
        if (streamOutcome === null || streamOutcome.outcome === "ok") end(length, "ok");
      },
      () => {
        if (streamOutcome === null || streamOutcome.outcome === "ok") {
          end(streamOutcome?.bytes ?? 0, "client closed the connection");
        }
      },
    );
    return new Response(stream, { status, headers });
  }

  /** Resolves `name` through the cache; small files come with their body. */
  async #lookup(name: string): Promise<CacheEntry> {
    const now = performance.now();
    const cached = this.#cache.get(name);
    if (cached !== undefined && now - cached.checkedAt < this.#opts.revalidateMs) return cached;
    const file = await this.#opts.netboot.resolve(name);
    if (
      cached !== undefined && cached.file.path === file.path && cached.file.size === file.size &&
      cached.file.mtime?.getTime() === file.mtime?.getTime()
    ) {
      cached.checkedAt = now;
      return cached;
    }
    if (cached !== undefined) this.#forget(name);
    let body: Uint8Array<ArrayBuffer> | null = null;
    let current = file;
    if (file.content !== undefined) body = file.content;
    else if (file.size <= this.#opts.cacheFileMax) {
      body = await Deno.readFile(file.path);
      if (body.length !== file.size) {
        // changed between stat and read: describe what was read, re-checked on the next request
        current = { ...file, size: body.length, mtime: new Date(0) };
      }
    }
    const etag = entityTag(current.size, current.mtime);
    const lastModified = current.mtime === null ? null : current.mtime.toUTCString();
    const contentType = contentTypeFor(current.name);
    const fullHeaders: [string, string][] = [
      ["content-type", contentType],
      ["accept-ranges", "bytes"],
      ["etag", etag],
      ...(lastModified === null ? [] : [["last-modified", lastModified] as [string, string]]),
    ];
    const entry: CacheEntry = {
      key: name,
      file: current,
      etag,
      lastModified,
      contentType,
      fullHeaders,
      body,
      checkedAt: body !== null && body.length !== file.size ? -Infinity : now,
    };
    this.#remember(name, entry);
    return entry;
  }

  #remember(name: string, entry: CacheEntry): void {
    const bytes = entry.body?.length ?? 0;
    if (bytes > this.#opts.cacheTotalMax) return;
    while (this.#cacheBytes + bytes > this.#opts.cacheTotalMax || this.#cache.size >= 10_000) {
      const oldest = this.#cache.keys().next();
      if (oldest.done) break;
      this.#forget(oldest.value);
    }
    this.#cache.set(name, entry);
    this.#cacheBytes += bytes;
  }

  #forget(name: string): void {
    const entry = this.#cache.get(name);
    if (entry === undefined) return;
    this.#cache.delete(name);
    this.#cacheBytes -= entry.body?.length ?? 0;
  }

  /** The generated menu for `name`, or null when the overlay has its own file of that name. */
  async #menu(req: IncomingRequest, name: string): Promise<string | null> {
    try {
      const user = await this.#opts.netboot.resolve(name);
      if (user.layer === "overlay") return null;
    } catch (err) {
      if (!(err instanceof NetbootError)) throw err;
    }
    const inputs = await this.#gatherMenuInputs();
    const { host, port } = this.#hostOf(req);
    let entries: ReturnType<typeof parseMenuFile> | null = null;
    let notice: string | undefined;
    if (inputs.menuText !== null) {
      try {
        entries = parseMenuFile(inputs.menuText);
      } catch (err) {
        if (!(err instanceof MenuFileError)) throw err;
        notice = err.message;
        log.warn("{message}", { message: err.message });
      }
    }
    return ipxeMenu({
      serverIp: host,
      httpPort: port,
      isos: inputs.isos,
      memdisk: inputs.memdisk,
      entries: entries?.entries ?? [],
      transport: "http",
      title: entries?.title,
      timeout: entries?.timeout,
      default: entries?.default,
      notice,
    });
  }

  /** The ISO list, memdisk and menu file, re-read at most every 2 s. */
  async #gatherMenuInputs(): Promise<MenuInputs> {
    const now = performance.now();
    if (this.#menuInputs !== null && now - this.#menuInputs.at < 2000) return this.#menuInputs;
    const files = await this.#opts.netboot.list();
    const isos = files.filter((f) => f.name.toLowerCase().endsWith(".iso"))
      .map((f) => ({ name: f.name, size: f.size }));
    const memdisk = files.find((f) => f.name === "memdisk" || f.name.endsWith("/memdisk"))?.name ?? null;
    let menuText: string | null = null;
    const menuFile = files.find((f) => f.name === MENU_FILE_NAME);
    if (menuFile !== undefined) menuText = await Deno.readTextFile(menuFile.path);
    this.#menuInputs = { isos, memdisk, menuText, at: now };
    return this.#menuInputs;
  }

  /** The host and port the client used (Host header), else the advertised address and bound port. */
  #hostOf(req: IncomingRequest): { host: string; port: number } {
    const header = req.headers.get("host");
    const m = header === null ? null : /^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+)(?::(\d{1,5}))?$/.exec(header);
    if (m !== null) return { host: m[1], port: m[2] === undefined ? 80 : Number(m[2]) };
    const bound = this.#opts.host;
    const host = this.#opts.advertiseHost ?? (bound === "0.0.0.0" || bound === "::" ? "127.0.0.1" : bound);
    return { host, port: this.port };
  }
}

function lastModifiedHeader(lastModified: string | null): [string, string][] {
  return lastModified === null ? [] : [["last-modified", lastModified]];
}

/** Builds the HTTP service from the config; null when `USE_HTTP` is off. */
export const createHttpService: ServiceFactory = (ctx) => {
  if (!ctx.config.USE_HTTP) return null;
  const bound = ctx.config.HTTP_SERVER_IP;
  return new HttpServer({
    host: bound,
    port: ctx.config.HTTP_PORT,
    netboot: ctx.netboot,
    events: ctx.events,
    advertiseHost: bound !== "0.0.0.0" ? bound : ctx.config.DHCP_FILESERVER || ctx.config.DHCP_SERVER_IP,
    routes: ctx.status ? (req, path) => ctx.status!.route(req, path) : undefined,
    maxConnections: ctx.config.HTTP_MAX_CONNECTIONS || ctx.caps?.http,
    headerTimeoutMs: ctx.config.HTTP_HEADER_TIMEOUT * 1000,
    idleTimeoutMs: ctx.config.HTTP_IDLE_TIMEOUT * 1000,
  });
};
