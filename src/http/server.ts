/**
 * The HTTP file server: GET/HEAD of the netboot tree with Range and conditional requests, read through
 * the netboot layer's {@linkcode BootFiles} (the same lookups, generated menus and in-memory small files
 * TFTP uses), small files answered from memory, big ones sent by the connection in 1 MiB chunks.
 *
 * Connections are accepted and timed by `connections.ts` (not Deno.serve, which has no connection cap,
 * no header or keep-alive timeout, and ends the process when accept() hits EMFILE): a cap on open
 * connections, a header timeout, an idle timeout, and a write timeout for a client that stops reading
 * (`stallTimeoutMs`, which also ends the transfer and closes its file). `stop()` lets running
 * downloads finish for `stopGraceMs`, then closes every connection.
 * @module
 */
import { getLogger } from "@logtape/logtape";
import { errText } from "../errors.ts";
import type { BootEvents } from "../events.ts";
import { describeBindError } from "../net.ts";
import { BindFailure, bracketHost, hostPort } from "../dual_stack.ts";
import { isRoutineMiss, NetbootError, type NetbootFile, type NetbootFs } from "../netboot/fs.ts";
import { BootFiles } from "../netboot/files.ts";
import { isResourceExhaustion } from "../limits.ts";
import { LogThrottle } from "../log_throttle.ts";
import { RequestLogLevel } from "./request_log.ts";
import type { Service, ServiceFactory } from "../server.ts";
import {
  HttpConnections,
  type IncomingRequest,
  rawResponse,
  type Reply,
  type ServeInfo,
} from "./connections.ts";
import { type FileMeta, fileMeta, ifRangeHolds, notModified, parseRange, requestPath } from "./range.ts";
import { reasonPhrase } from "./wire.ts";

const log = getLogger(["pypxe", "http"]);
/** Options of {@linkcode HttpServer}. */
export interface HttpServerOptions {
  /** Address to bind, e.g. `0.0.0.0` or `127.0.0.1`. */
  host: string;
  /** Port to bind; 0 picks a free one (see {@linkcode HttpServer.port}). */
  port: number;
  /** Also serve IPv6 (`--ipv6`): on `::`, or on `host6` beside a specific `host`; default false. */
  ipv6?: boolean;
  /** The server's IPv6 address (DHCP6_SERVER_IP), bound beside a specific IPv4 `host`; "" = `::`. */
  host6?: string;
  netboot: NetbootFs;
  /**
   * The served view of the tree (lookups, generated menus, small files in memory), shared with TFTP.
   * Default: one made from `netboot`, with generated iPXE menus on this server's port unless `menus`
   * is false.
   */
  files?: BootFiles;
  events?: BootEvents;
  /** Address put into generated menus when no local interface shares the client's subnet. */
  advertiseHost?: string;
  /** Cut off a response whose client has not read for this long (ms); default 60 s, 0 disables. */
  stallTimeoutMs?: number;
  /** Serve generated iPXE menus (only when `files` is not given); default true. */
  menus?: boolean;
  /** Without `files`: a lookup is reused for this long (ms); default 1000. */
  revalidateMs?: number;
  /** One log line per request (INFO; range reads of disk images: see request_log.ts); default true. Benchmarks turn it off. */
  requestLog?: boolean;
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

/** A file about to be served: its lookup, derived fields and, when in memory, its bytes. */
interface Served {
  /** The name it was asked for (forgotten when the file vanished meanwhile). */
  readonly name: string;
  readonly file: NetbootFile;
  readonly meta: FileMeta;
  readonly body: Uint8Array | null;
}

/** A finished request, for the INFO line and the boot events. */
interface Outcome {
  status: number;
  bytes: number;
  outcome: string;
}

const ALLOW = "GET, HEAD";

/** A plain-text error response with a one-line body. */
function errorResponse(status: number, detail: string, extra: Record<string, string> = {}): Reply {
  return rawResponse(
    status,
    [["content-type", "text/plain; charset=utf-8"], ...Object.entries(extra)],
    TEXT.encode(`${status} ${reasonPhrase(status)}: ${detail}\n`),
  );
}

const TEXT = new TextEncoder();

/** The netboot tree over HTTP. */
export class HttpServer implements Service {
  readonly name = "http";
  readonly #opts:
    & Required<
      Omit<
        HttpServerOptions,
        "events" | "advertiseHost" | "routes" | "listen" | "files" | "revalidateMs" | "ipv6" | "host6"
      >
    >
    & {
      ipv6?: boolean;
      host6?: string;
      events?: BootEvents;
      advertiseHost?: string;
      routes?: HttpServerOptions["routes"];
      listen?: HttpServerOptions["listen"];
    };
  readonly #files: BootFiles;
  /** True when this server made `#files` itself (it then sets the menus' port once bound). */
  readonly #ownFiles: boolean;
  #server: HttpConnections | null = null;
  #throttle: LogThrottle | null = null;
  #closing = false;
  readonly #logLevel = new RequestLogLevel();

  /** Creates the server; nothing is bound until {@linkcode start}. */
  constructor(opts: HttpServerOptions) {
    this.#opts = {
      stallTimeoutMs: 60_000,
      menus: true,
      requestLog: true,
      stopGraceMs: 2000,
      maxConnections: 1024,
      headerTimeoutMs: 30_000,
      idleTimeoutMs: 60_000,
      ...opts,
    };
    this.#ownFiles = opts.files === undefined;
    this.#files = opts.files ?? new BootFiles({
      netboot: opts.netboot,
      advertiseHost: opts.advertiseHost,
      advertiseHost6: opts.ipv6 ? opts.host6 : undefined,
      revalidateMs: opts.revalidateMs,
    });
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
    const throttle = new LogThrottle({ log });
    const events = this.#opts.events;
    const server = new HttpConnections({
      hostname: host,
      port,
      ipv6: this.#opts.ipv6,
      host6: this.#opts.host6,
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
      const [where, cause] = err instanceof BindFailure ? [bracketHost(err.host), err.cause] : [host, err];
      return Promise.reject(
        new Error(describeBindError(cause, { service: "http", proto: "TCP", host: where, port })),
      );
    }
    this.#server = server;
    this.#throttle = throttle;
    if (this.#ownFiles && this.#opts.menus) this.#files.httpPort = server.port;
    return Promise.resolve();
  }

  /** Stops accepting, closes idle connections, gives running downloads `stopGraceMs`, then cuts them. */
  async stop(): Promise<void> {
    const server = this.#server;
    if (server === null) return;
    this.#server = null;
    this.#closing = true;
    await server.stop(this.#opts.stopGraceMs);
    this.#throttle?.close();
    this.#throttle = null;
  }

  /** The listening endpoints for the banner (`TCP 0.0.0.0:80`, plus `TCP [::]:80` with IPv6). */
  endpoints(): string[] {
    const list = [`TCP ${this.#opts.host}:${this.port}`];
    const host6 = this.#server?.host6 ?? (this.#opts.ipv6 ? this.#opts.host6 || "::" : "");
    if (host6 !== "") list.push(`TCP ${bracketHost(host6)}:${this.port}`);
    return list;
  }

  /** Drops remembered lookups and menu inputs (SIGHUP). */
  reload(): Promise<void> {
    this.#files.reload();
    return Promise.resolve();
  }

  #handle(req: IncomingRequest, info: ServeInfo): Reply | Promise<Reply> {
    const started = performance.now();
    const path = requestPath(req.target);
    // remoteAddr is lazy and unreadable once the request closed: read it before any await
    let client: string | undefined;
    const who = () => client ??= hostPort(info.remoteAddr);
    const done = (o: Outcome) => {
      if (!this.#opts.requestLog) return;
      const secs = ((performance.now() - started) / 1000).toFixed(3);
      const shown = path ?? req.target;
      const from = who();
      const level = this.#logLevel.levelOf(o.status, from.slice(0, from.lastIndexOf(":")), shown);
      log[level]("{client} {path} {status} {bytes} {secs}s", () => ({
        client: from,
        path: shown,
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
        const name = path.charCodeAt(1) === 47 ? path.replace(/^\/+/, "") : path.slice(1);
        const hit = this.#files.peek(name);
        if (hit !== null) {
          return this.#serveEntry(req, info, {
            name,
            file: hit.file,
            meta: fileMeta(hit.file),
            body: hit.bytes,
          }, done);
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

    let served: Served;
    try {
      const file = await this.#files.resolve(name, info.remoteAddr.hostname);
      served = { name, file, meta: fileMeta(file), body: await this.#files.bytes(file) };
    } catch (err) {
      if (!(err instanceof NetbootError)) throw err;
      this.#opts.events?.emit({
        kind: "file-refused",
        service: "http",
        client: hostPort(info.remoteAddr),
        file: name,
        reason: err.code === "forbidden" ? "forbidden" : "not-found",
        routine: isRoutineMiss(name) || name === "favicon.ico",
      });
      if (err.code === "forbidden") return fail(403, "access denied");
      if (err.code === "unavailable") return fail(502, err.message);
      return fail(404, err.code === "is-directory" ? "is a directory" : "no such file");
    }
    if (served.file.remote !== undefined) return this.#serveDownloading(req, info, served.file, done);
    return await this.#serveEntry(req, info, served, done);
  }

  /**
   * A remote file still downloading (`netboot/remote.ts`): streamed as its bytes arrive, with Range; a
   * failed download cuts the response (the client never sees a partial file as complete).
   */
  #serveDownloading(
    req: IncomingRequest,
    info: ServeInfo,
    file: NetbootFile,
    done: (o: Outcome) => void,
  ): Reply {
    const remote = file.remote!;
    const size = file.size;
    const headers: Record<string, string> = {
      "content-type": "application/octet-stream",
      "accept-ranges": "bytes",
      "cache-control": "no-cache",
    };
    let start = 0;
    let length = size;
    let status = 200;
    const rangeHeader = req.method === "HEAD" ? null : req.headers.get("range");
    if (rangeHeader !== null) {
      const range = parseRange(rangeHeader, size);
      if (range.kind === "unsatisfiable") {
        remote.close();
        done({ status: 416, bytes: 0, outcome: "range outside the file" });
        return errorResponse(416, "range outside the file", { "content-range": `bytes */${size}` });
      }
      if (range.kind === "partial") {
        start = range.range.start;
        length = range.range.end - start + 1;
        status = 206;
        headers["content-range"] = `bytes ${start}-${range.range.end}/${size}`;
      }
    }
    headers["content-length"] = String(length);
    if (req.method === "HEAD" || this.#closing) {
      remote.close();
      done({ status, bytes: 0, outcome: "ok" });
      return rawResponse(status, Object.entries(headers), null);
    }
    const client = hostPort(info.remoteAddr);
    const end = this.#transfer(
      client,
      file.name,
      length,
      (bytes, outcome) => done({ status, bytes, outcome }),
    );
    return new Response(countedStream(remote.stream(start, start + length, { close: true }), end), {
      status,
      headers,
    });
  }

  /** Answers GET/HEAD for a resolved file: 304, 416, 206 or 200, from memory or from the file. */
  #serveEntry(
    req: IncomingRequest,
    info: ServeInfo,
    entry: Served,
    done: (o: Outcome) => void,
  ): Reply | Promise<Reply> {
    const isHead = req.method === "HEAD";
    const { file } = entry;
    const { etag, lastModified } = entry.meta;
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
      if (isHead) return rawResponse(200, entry.meta.fullHeaders, entry.body);
      this.#emitSmall(info, file.name, size);
      return rawResponse(200, entry.meta.fullHeaders, entry.body);
    }

    const headers: Record<string, string> = {
      "content-type": entry.meta.contentType,
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

  /**
   * Emits transfer-start now; returns the function that ends the transfer once (`finished` first, then
   * transfer-end with the bytes and time).
   */
  #transfer(
    client: string,
    file: string,
    size: number,
    finished: (bytes: number, outcome: string) => void,
  ): (bytes: number, outcome: string) => void {
    const events = this.#opts.events;
    const id = events?.nextId() ?? 0;
    events?.emit({ kind: "transfer-start", service: "http", id, client, file, size });
    const t0 = performance.now();
    return (bytes, outcome) => {
      finished(bytes, outcome);
      const ms = performance.now() - t0;
      events?.emit({ kind: "transfer-end", service: "http", id, client, file, bytes, ms, outcome });
    };
  }

  /** transfer-start/transfer-end of a file answered from memory in one piece. */
  #emitSmall(info: ServeInfo, file: string, size: number): void {
    const events = this.#opts.events;
    if (events === undefined) return;
    const id = events.nextId();
    const client = hostPort(info.remoteAddr);
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
    entry: Served,
    answer: { status: number; headers: Record<string, string>; start: number; length: number },
    done: (o: Outcome) => void,
  ): Promise<Reply> {
    const { status, headers, start, length } = answer;
    const { file } = entry;
    const isHead = req.method === "HEAD";
    const client = hostPort(info.remoteAddr);
    const fail = (status: number, detail: string) => {
      done({ status, bytes: 0, outcome: detail });
      return errorResponse(status, detail);
    };
    if (isHead) {
      done({ status, bytes: 0, outcome: "ok" });
      return rawResponse(status, Object.entries(headers), null);
    }
    const end = this.#transfer(
      client,
      file.name,
      length,
      (bytes, outcome) => done({ status, bytes, outcome }),
    );

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
      this.#files.forget(entry.name);
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
    return rawResponse(status, Object.entries(headers), null, {
      file: fh,
      start,
      length,
      onDone: (bytes, outcome) => end(bytes, outcome),
    });
  }
}

/** `stream` with `onDone(bytes, outcome)` called once: at its end (`ok`), on an error, or when cancelled. */
function countedStream(
  stream: ReadableStream<Uint8Array>,
  onDone: (bytes: number, outcome: string) => void,
): ReadableStream<Uint8Array> {
  let bytes = 0;
  let ended = false;
  const finish = (outcome: string) => {
    if (ended) return;
    ended = true;
    onDone(bytes, outcome);
  };
  const reader = stream.getReader();
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      try {
        const { done, value } = await reader.read();
        if (done) {
          finish("ok");
          controller.close();
          return;
        }
        bytes += value.length;
        controller.enqueue(value);
      } catch (err) {
        finish(errText(err));
        controller.error(err);
      }
    },
    async cancel(reason) {
      finish(reason === undefined ? "client went away" : String(reason));
      await reader.cancel(reason).catch(() => {});
    },
  });
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
    ipv6: ctx.config.USE_IPV6,
    host6: ctx.config.DHCP6_SERVER_IP,
    netboot: ctx.netboot,
    files: ctx.files,
    events: ctx.events,
    advertiseHost: bound !== "0.0.0.0" ? bound : ctx.config.DHCP_FILESERVER || ctx.config.DHCP_SERVER_IP,
    routes: ctx.status ? (req, path) => ctx.status!.route(req, path) : undefined,
    maxConnections: ctx.config.HTTP_MAX_CONNECTIONS || ctx.caps?.http,
    headerTimeoutMs: ctx.config.HTTP_HEADER_TIMEOUT * 1000,
    idleTimeoutMs: ctx.config.HTTP_IDLE_TIMEOUT * 1000,
  });
};
