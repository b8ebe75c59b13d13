/**
 * A real HTTP origin for the remote-file cache tests (`src/netboot/remote.ts`): a raw HTTP/1.1 server on
 * 127.0.0.1 (one request per connection, `connection: close`) written on `Deno.listen`, so it can do what
 * a well-behaved server never does: cut a connection mid-body, declare a Content-Length longer than the
 * body, stall, ignore Range. Per path it serves bytes with ETag / Last-Modified, answers Range (206/416),
 * If-None-Match / If-Modified-Since (304) and If-Range, or a fixed status, or a redirect; it throttles to
 * a byte rate and records every request (method, Range, conditional headers).
 *
 * ```ts
 * await using origin = await OriginServer.start();
 * origin.put("/vmlinuz", bytes, { rate: 200e6, cut: { afterBytes: 1 << 20, times: 1 } });
 * const url = origin.url("/vmlinuz");
 * origin.count("/vmlinuz"); origin.requests("/vmlinuz")[1].range; // "bytes=1048576-"
 * ```
 * @module
 */
import { createHash } from "node:crypto";

/** How one path answers. */
export interface OriginRoute {
  /** The body (for a file route). */
  body?: Uint8Array;
  /** ETag sent and matched (default `"<size>-<n>"`, unique per put); null sends none. */
  etag?: string | null;
  /** Last-Modified sent and compared (default: the put time, whole seconds); null sends none. */
  lastModified?: Date | null;
  /** Bytes per second for this path (default: the server's `rate`, 0 = unthrottled). */
  rate?: number;
  /** Ignore Range and If-Range: always 200 with the whole body. */
  noRanges?: boolean;
  /** Close the connection after this many body bytes, for the next `times` responses (Infinity: always). */
  cut?: { afterBytes: number; times: number };
  /** Declare `extra` more bytes in Content-Length than are sent, then close (`times` responses). */
  lie?: { extra: number; times: number };
  /** Send the head and `afterBytes` body bytes, then send nothing until the client gives up. */
  stall?: { afterBytes: number; times: number };
  /** Answer with this status and a short text body instead of the file. */
  status?: number;
  /** Answer 302 with this Location (relative or absolute). */
  redirect?: string;
}

/** One request the origin saw. */
export interface SeenRequest {
  method: string;
  path: string;
  range: string | null;
  ifRange: string | null;
  ifNoneMatch: string | null;
  ifModifiedSince: string | null;
  /** The status answered. */
  status: number;
}

/** Options of {@linkcode OriginServer.start}. */
export interface OriginOptions {
  /** Default bytes per second for every path (0: unthrottled). */
  rate?: number;
  /** Port on 127.0.0.1 (default: any free one). */
  port?: number;
}

const REASONS: Record<number, string> = {
  200: "OK",
  206: "Partial Content",
  302: "Found",
  304: "Not Modified",
  404: "Not Found",
  416: "Range Not Satisfiable",
  500: "Internal Server Error",
  503: "Service Unavailable",
};

const enc = new TextEncoder();
let etagCounter = 0;

/** The HTTP origin; {@linkcode OriginServer.close} (or `await using`) stops it and every connection. */
export class OriginServer {
  readonly #listener: Deno.TcpListener;
  readonly #routes = new Map<string, OriginRoute>();
  readonly #seen: SeenRequest[] = [];
  readonly #conns = new Set<Deno.TcpConn>();
  readonly #tasks = new Set<Promise<void>>();
  readonly #accepting: Promise<void>;
  #closed = false;
  /** Default rate for paths that set none (bytes/s, 0 = unthrottled). */
  rate: number;

  private constructor(listener: Deno.TcpListener, opts: OriginOptions) {
    this.#listener = listener;
    this.rate = opts.rate ?? 0;
    this.#accepting = this.#accept();
  }

  /** Starts listening on 127.0.0.1. */
  static start(opts: OriginOptions = {}): Promise<OriginServer> {
    const listener = Deno.listen({ hostname: "127.0.0.1", port: opts.port ?? 0 });
    return Promise.resolve(new OriginServer(listener, opts));
  }

  /** The port listened on. */
  get port(): number {
    return this.#listener.addr.port;
  }

  /** `http://127.0.0.1:PORT/path`. */
  url(path: string): string {
    return `http://127.0.0.1:${this.port}${path}`;
  }

  /** Serves `body` at `path` (replacing what was there; a new default ETag). */
  put(path: string, body: Uint8Array, route: Omit<OriginRoute, "body"> = {}): OriginRoute {
    const r: OriginRoute = {
      etag: `"${body.length}-${++etagCounter}"`,
      lastModified: new Date(Math.floor(Date.now() / 1000) * 1000),
      ...route,
      body,
    };
    this.#routes.set(path, r);
    return r;
  }

  /** Sets or replaces the whole route of `path` (status, redirect...). */
  route(path: string, route: OriginRoute): void {
    this.#routes.set(path, route);
  }

  /** The route at `path`, to change its faults between requests. */
  get(path: string): OriginRoute | undefined {
    return this.#routes.get(path);
  }

  /** Every request seen for `path` (all paths when omitted), in order. */
  requests(path?: string): SeenRequest[] {
    return this.#seen.filter((r) => path === undefined || r.path === path);
  }

  /** How many requests `path` got (GET and HEAD). */
  count(path: string): number {
    return this.requests(path).length;
  }

  /** Requests for `path` that carried a conditional header (If-None-Match or If-Modified-Since). */
  conditionalCount(path: string): number {
    return this.requests(path).filter((r) => r.ifNoneMatch !== null || r.ifModifiedSince !== null).length;
  }

  /** Connections open now. */
  get openConnections(): number {
    return this.#conns.size;
  }

  /** Stops listening, closes every connection and waits for the handlers. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#listener.close();
    for (const c of this.#conns) closeConn(c);
    await this.#accepting;
    await Promise.allSettled([...this.#tasks]);
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  async #accept(): Promise<void> {
    // bounded by close(): the listener stops yielding connections once closed
    try {
      for await (const conn of this.#listener) {
        if (this.#closed) {
          closeConn(conn);
          break;
        }
        this.#conns.add(conn);
        const task = this.#serve(conn).finally(() => {
          this.#conns.delete(conn);
          closeConn(conn);
          this.#tasks.delete(task);
        });
        this.#tasks.add(task);
      }
    } catch (err) {
      if (!this.#closed) throw err;
    }
  }

  async #serve(conn: Deno.TcpConn): Promise<void> {
    try {
      const head = await readHead(conn);
      if (head === null) return;
      await this.#answer(conn, head);
    } catch (err) {
      // the client went away or close() closed the connection: both are routine here
      if (!this.#closed && !isConnError(err)) throw err;
    }
  }

  async #answer(conn: Deno.TcpConn, req: RequestHead): Promise<void> {
    const path = req.target.split("?")[0];
    const route = this.#routes.get(path);
    const seen: SeenRequest = {
      method: req.method,
      path,
      range: req.headers.get("range") ?? null,
      ifRange: req.headers.get("if-range") ?? null,
      ifNoneMatch: req.headers.get("if-none-match") ?? null,
      ifModifiedSince: req.headers.get("if-modified-since") ?? null,
      status: 0,
    };
    this.#seen.push(seen);
    const reply = (status: number, headers: [string, string][], body: Uint8Array | null = null) => {
      seen.status = status;
      return writeAll(
        conn,
        enc.encode(headText(status, headers)),
        body === null || req.method === "HEAD" ? null : body,
      );
    };
    if (route === undefined) {
      return void await reply(404, [["content-length", "10"]], enc.encode("not found\n"));
    }
    if (route.redirect !== undefined) {
      return void await reply(302, [["location", route.redirect], ["content-length", "0"]]);
    }
    if (route.status !== undefined || route.body === undefined) {
      const status = route.status ?? 500;
      const text = enc.encode(`status ${status}\n`);
      return void await reply(status, [["content-length", String(text.length)]], text);
    }
    const body = route.body;
    const validators: [string, string][] = [];
    if (route.etag) validators.push(["etag", route.etag]);
    if (route.lastModified) validators.push(["last-modified", route.lastModified.toUTCString()]);
    if (notModified(route, seen)) return void await reply(304, validators);

    let start = 0;
    let end = body.length; // exclusive
    let status = 200;
    const headers: [string, string][] = [...validators];
    if (!route.noRanges) headers.push(["accept-ranges", "bytes"]);
    const range = route.noRanges ? null : parseRange(seen.range, body.length);
    if (range !== null && ifRangeHolds(route, seen.ifRange)) {
      if (range === "unsatisfiable") {
        return void await reply(416, [["content-range", `bytes */${body.length}`], ["content-length", "0"]]);
      }
      [start, end] = range;
      status = 206;
      headers.push(["content-range", `bytes ${start}-${end - 1}/${body.length}`]);
    }
    let declared = end - start;
    let stopAfter = Infinity;
    let stall = false;
    if (route.lie && route.lie.times > 0) {
      route.lie.times--;
      declared += route.lie.extra;
    }
    if (route.cut && route.cut.times > 0) {
      route.cut.times--;
      stopAfter = route.cut.afterBytes;
    }
    if (route.stall && route.stall.times > 0) {
      route.stall.times--;
      stopAfter = route.stall.afterBytes;
      stall = true;
    }
    headers.push(["content-length", String(declared)]);
    seen.status = status;
    await writeAll(conn, enc.encode(headText(status, headers)), null);
    if (req.method === "HEAD") return;
    const rate = route.rate ?? this.rate;
    await this.#sendBody(conn, body.subarray(start, Math.min(end, start + stopAfter)), rate);
    if (stall) await this.#stall(conn);
  }

  /** Writes `bytes` in 64 KiB pieces, sleeping to keep under `rate` bytes/s (0: no limit). */
  async #sendBody(conn: Deno.TcpConn, bytes: Uint8Array, rate: number): Promise<void> {
    const piece = 64 * 1024;
    const started = performance.now();
    // bounded: one pass per piece of the body
    for (let sent = 0; sent < bytes.length && !this.#closed;) {
      const n = Math.min(piece, bytes.length - sent);
      await writeAll(conn, bytes.subarray(sent, sent + n), null);
      sent += n;
      if (rate > 0) {
        const due = (sent / rate) * 1000 - (performance.now() - started);
        if (due > 1) await sleep(due);
      }
    }
  }

  /** Holds a connection open without sending until the client closes it or the origin stops. */
  async #stall(conn: Deno.TcpConn): Promise<void> {
    const buf = new Uint8Array(1024);
    // bounded: ends when the peer closes (read gives null) or close() closes the connection (read throws)
    for (let i = 0; i < 1000 && !this.#closed; i++) {
      if (await conn.read(buf) === null) return;
    }
  }
}

interface RequestHead {
  method: string;
  target: string;
  headers: Headers;
}

/** Reads a request head (up to 64 KiB); null when the client closed first. */
async function readHead(conn: Deno.TcpConn): Promise<RequestHead | null> {
  const buf = new Uint8Array(64 * 1024);
  let used = 0;
  // bounded: every pass reads at least one byte into a 64 KiB buffer, or returns
  while (used < buf.length) {
    const n = await conn.read(buf.subarray(used));
    if (n === null) return null;
    used += n;
    const text = new TextDecoder().decode(buf.subarray(0, used));
    const endAt = text.indexOf("\r\n\r\n");
    if (endAt < 0) continue;
    const [requestLine, ...lines] = text.slice(0, endAt).split("\r\n");
    const [method, target] = requestLine.split(" ");
    const headers = new Headers();
    for (const line of lines) {
      const colon = line.indexOf(":");
      if (colon > 0) headers.append(line.slice(0, colon).trim(), line.slice(colon + 1).trim());
    }
    return { method, target, headers };
  }
  return null;
}

function headText(status: number, headers: [string, string][]): string {
  const lines = [
    `HTTP/1.1 ${status} ${REASONS[status] ?? "Status"}`,
    ...headers.map(([k, v]) => `${k}: ${v}`),
  ];
  lines.push("connection: close");
  return lines.join("\r\n") + "\r\n\r\n";
}

function notModified(route: OriginRoute, seen: SeenRequest): boolean {
  if (seen.ifNoneMatch !== null) {
    return route.etag != null && seen.ifNoneMatch.split(",").map((s) => s.trim()).includes(route.etag);
  }
  if (seen.ifModifiedSince !== null && route.lastModified) {
    const since = Date.parse(seen.ifModifiedSince);
    return !Number.isNaN(since) && route.lastModified.getTime() <= since;
  }
  return false;
}

function ifRangeHolds(route: OriginRoute, ifRange: string | null): boolean {
  if (ifRange === null) return true;
  if (ifRange.startsWith('"') || ifRange.startsWith("W/")) return route.etag === ifRange;
  return route.lastModified != null && Date.parse(ifRange) === route.lastModified.getTime();
}

/** `bytes=a-b`, `bytes=a-`, `bytes=-n` (one range) as [start, end exclusive]; null when absent. */
function parseRange(header: string | null, size: number): [number, number] | "unsatisfiable" | null {
  if (header === null) return null;
  const m = /^bytes=(\d*)-(\d*)$/.exec(header.trim());
  if (m === null || (m[1] === "" && m[2] === "")) return null;
  if (m[1] === "") {
    const n = Math.min(Number(m[2]), size);
    return n === 0 ? "unsatisfiable" : [size - n, size];
  }
  const start = Number(m[1]);
  const end = m[2] === "" ? size : Math.min(Number(m[2]) + 1, size);
  return start >= size || end <= start ? "unsatisfiable" : [start, end];
}

async function writeAll(conn: Deno.TcpConn, head: Uint8Array, body: Uint8Array | null): Promise<void> {
  for (const bytes of body === null ? [head] : [head, body]) {
    // bounded: every pass writes at least one byte or throws
    for (let off = 0; off < bytes.length;) off += await conn.write(bytes.subarray(off));
  }
}

function closeConn(conn: Deno.TcpConn): void {
  try {
    conn.close();
  } catch {
    // already closed by the other side of the handler or by close()
  }
}

function isConnError(err: unknown): boolean {
  return err instanceof Deno.errors.BrokenPipe || err instanceof Deno.errors.ConnectionReset ||
    err instanceof Deno.errors.BadResource || err instanceof Deno.errors.Interrupted ||
    err instanceof Deno.errors.NotConnected;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

// ---- small helpers shared by the remote-cache tests (tests/netboot/remote_*_test.ts) ----

/** A log that keeps `<level> <message>` lines (the shape of `RemoteLog`). */
export interface MemoryLog {
  readonly lines: string[];
  debug(message: string): void;
  info(message: string): void;
  warn(message: string): void;
  error(message: string): void;
}

/** A {@linkcode MemoryLog}; set `PYPXE_TEST_ECHO=1` to also print the lines. */
export function memoryLog(): MemoryLog {
  const lines: string[] = [];
  const echo = (() => {
    try {
      return Deno.env.get("PYPXE_TEST_ECHO") === "1";
    } catch {
      return false; // no env permission
    }
  })();
  const add = (level: string) => (message: string) => {
    lines.push(`${level} ${message}`);
    if (echo) console.log(`${level} ${message}`);
  };
  return { lines, debug: add("debug"), info: add("info"), warn: add("warn"), error: add("error") };
}

/** `n` random bytes (crypto.getRandomValues in 64 KiB steps). */
export function randomBytes(n: number): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(n);
  for (let off = 0; off < n; off += 65536) {
    crypto.getRandomValues(out.subarray(off, Math.min(n, off + 65536)));
  }
  return out;
}

/** Anything read by offset that fills the buffer unless at the end (a `RemoteFile`, a TFTP ByteSource). */
export interface OffsetReader {
  read(offset: number, buf: Uint8Array): Promise<number>;
}

/** Reads `reader` from 0 to its end in `chunk`-byte reads; the sha256 and length of what it gave. */
export async function hashReader(
  reader: OffsetReader,
  chunk = 1 << 20,
): Promise<{ sha256: string; length: number }> {
  const hash = createHash("sha256");
  const buf = new Uint8Array(chunk);
  let offset = 0;
  // bounded: every pass advances by a full chunk, or it is the last
  while (true) {
    const n = await reader.read(offset, buf);
    hash.update(buf.subarray(0, n));
    offset += n;
    if (n < chunk) break;
  }
  return { sha256: hash.digest("hex"), length: offset };
}

/** sha256 and length of a byte stream, read to its end. */
export async function hashStream(
  stream: ReadableStream<Uint8Array>,
): Promise<{ sha256: string; length: number }> {
  const hash = createHash("sha256");
  let length = 0;
  // bounded by the stream's length
  for await (const chunk of stream) {
    hash.update(chunk);
    length += chunk.length;
  }
  return { sha256: hash.digest("hex"), length };
}
