/**
 * The HTTP/1.1 connection layer under the file server: its own accept loop and connections, because
 * Deno.serve (2.9.6) exposes neither. What it enforces, whatever a client does:
 *
 * - a cap on open connections: at the cap the connection waiting longest for a request head is closed
 *   to make room (then the longest-idle keep-alive one); when every connection is busy the newcomer is
 *   closed at once. A flood of half-open connections can therefore never lock a real client out;
 * - a header timeout (a whole request head within `headerTimeoutMs` of its first byte or of connecting)
 *   and an idle timeout between keep-alive requests, both enforced by one sweep timer, not a timer per
 *   connection;
 * - a write timeout: a client that stops reading a response is disconnected;
 * - an accept loop that never ends while running: out of descriptors (EMFILE/ENFILE) it closes the
 *   oldest waiting connection and backs off; if the listener itself fails it is bound again.
 *
 * The handler gets a standard `Request` and returns a `Response`, as with Deno.serve.
 * @module
 */
import { backoff, isResourceExhaustion } from "../limits.ts";
import type { LogThrottle } from "../log_throttle.ts";
import {
  bodyFraming,
  encodeResponseHead,
  findHeadEnd,
  headerValue,
  HttpWireError,
  MAX_HEAD_BYTES,
  parseRequestHead,
  type RequestHead,
  statusHasNoBody,
  wantsKeepAlive,
} from "./wire.ts";

/**
 * A request as the handler sees it: method, raw target and header lookup, parsed once. Building a
 * standard `Request` costs more than serving a small file from memory, so it is made only on demand
 * ({@linkcode IncomingRequest.request}).
 */
export interface IncomingRequest {
  readonly method: string;
  /** The request target exactly as sent (`Request.url` would normalise `/../x` to `/x`). */
  readonly target: string;
  /** Header lookup by (case-insensitive) name; repeated fields are joined with `, `. */
  readonly headers: { get(name: string): string | null };
  /** The same request as a standard `Request` (with its body), built on first use. */
  request(): Request;
}

/** A response with its whole body in memory: written without a stream. */
export interface RawResponse {
  readonly raw: true;
  readonly status: number;
  /** Field names in lower case; `content-length` is set from `body`. */
  readonly headers: readonly (readonly [string, string])[];
  readonly body: Uint8Array | null;
}

/** What a handler answers. */
export type Reply = Response | RawResponse;

/** What the handler learns about the connection, as in Deno.serve. */
export interface ServeInfo {
  readonly remoteAddr: Deno.NetAddr;
  /** Resolves when the response was sent completely; rejects when the connection ended first. */
  readonly completed: Promise<void>;
}

/** A request handler. */
export type HttpHandler = (req: IncomingRequest, info: ServeInfo) => Reply | Promise<Reply>;

/** A {@linkcode RawResponse}. */
export function rawResponse(
  status: number,
  headers: readonly (readonly [string, string])[],
  body: Uint8Array | null,
): RawResponse {
  return { raw: true, status, headers, body };
}

class HeaderList {
  constructor(readonly fields: readonly [string, string][]) {}
  get(name: string): string | null {
    const key = name.toLowerCase();
    let out: string | null = null;
    for (const [n, v] of this.fields) if (n === key) out = out === null ? v : `${out}, ${v}`;
    return out;
  }
}

/** Options of {@linkcode HttpConnections}. */
export interface HttpConnectionsOptions {
  readonly hostname: string;
  readonly port: number;
  readonly handler: HttpHandler;
  /** Open connections at most. */
  readonly maxConnections: number;
  /** A request head must be complete this long after its first byte (or after connecting). */
  readonly headerTimeoutMs: number;
  /** A keep-alive connection may wait this long for the next request. */
  readonly idleTimeoutMs: number;
  /** A response write that makes no progress for this long ends the connection; 0 disables. */
  readonly writeTimeoutMs: number;
  /** Largest request body read (Content-Length); larger ones get 413. Default 1 MiB. */
  readonly maxBodyBytes?: number;
  /** Turns a handler failure into a response. */
  readonly onError: (err: unknown) => Reply;
  /** Called for each connection the server ended on its own. */
  readonly onDropped?: (outcome: "refused" | "timed-out") => void;
  /** Throttled log lines (refusals, timeouts, accept failures). */
  readonly log: LogThrottle;
  /** Binds the listener; tests inject failures here. Default `Deno.listen`. */
  readonly listen?: (opts: Deno.TcpListenOptions & { transport?: "tcp" }) => Deno.Listener;
}

type Phase = "head" | "idle" | "busy";

interface Conn {
  readonly conn: Deno.Conn;
  readonly remote: Deno.NetAddr;
  buf: Uint8Array;
  len: number;
  phase: Phase;
  /** performance.now() when the current phase began. */
  since: number;
  /** performance.now() when the pending write began, 0 when none is pending. */
  writeSince: number;
  closed: boolean;
  /** Why the server closed it, for the handler's `completed` and the counters. */
  closedBy: "timed-out" | "refused" | "stopping" | null;
}

const INITIAL_BUFFER = 1024;
const INLINE_BODY_MAX = 64 * 1024;
const encoder = new TextEncoder();
const CONTINUE = encoder.encode("HTTP/1.1 100 Continue\r\n\r\n");
const CHUNK_END = encoder.encode("\r\n");
const LAST_CHUNK = encoder.encode("0\r\n\r\n");

let dateSecond = -1;
let dateText = "";
/** The `date` header, formatted once a second. */
function httpDate(): string {
  const now = Date.now();
  const second = Math.floor(now / 1000);
  if (second !== dateSecond) {
    dateSecond = second;
    dateText = new Date(now).toUTCString();
  }
  return dateText;
}

/** HTTP/1.1 connections with caps and timeouts; see the module doc. */
export class HttpConnections {
  readonly #o: HttpConnectionsOptions;
  #listener: Deno.Listener | null = null;
  #acceptLoop: Promise<void> | null = null;
  readonly #all = new Map<Conn, Promise<void>>();
  /** Connections waiting for a request head, oldest first. */
  readonly #heads = new Set<Conn>();
  /** Keep-alive connections between requests, oldest first. */
  readonly #idles = new Set<Conn>();
  /** Connections with a response under way. */
  readonly #busy = new Set<Conn>();
  #sweeper: ReturnType<typeof setInterval> | undefined;
  #stopping = false;
  /** The port bound first (a rebind after a failure reuses it, also when 0 was asked for). */
  #boundPort = 0;
  #stopAccepting = new AbortController();

  /** Creates the layer; nothing is bound until {@linkcode start}. */
  constructor(opts: HttpConnectionsOptions) {
    this.#o = opts;
  }

  /** The bound port. */
  get port(): number {
    return (this.#listener?.addr as Deno.NetAddr | undefined)?.port ?? this.#o.port;
  }

  /** Open connections now. */
  get size(): number {
    return this.#all.size;
  }

  /** Binds (throws what `Deno.listen` throws) and starts accepting. */
  start(): void {
    this.#stopping = false;
    this.#stopAccepting = new AbortController();
    this.#boundPort = 0;
    this.#listener = this.#bind();
    this.#boundPort = (this.#listener.addr as Deno.NetAddr).port;
    this.#acceptLoop = this.#accept();
    const tick = Math.max(50, Math.min(1000, this.#o.headerTimeoutMs / 4, this.#o.idleTimeoutMs / 4));
    this.#sweeper = setInterval(() => this.#sweep(), tick);
  }

  /**
   * Stops accepting and closes waiting connections at once; responses under way may finish for
   * `graceMs`, then `cut()` is called (to end their bodies) and every connection is closed.
   */
  async stop(graceMs: number, cut: () => void): Promise<void> {
    if (this.#stopping) return;
    this.#stopping = true;
    this.#stopAccepting.abort();
    try {
      this.#listener?.close();
    } catch {
      // already closed
    }
    this.#listener = null;
    await this.#acceptLoop;
    for (const c of [...this.#heads, ...this.#idles]) this.#close(c, "stopping");
    if (this.#busy.size > 0) {
      let timer: ReturnType<typeof setTimeout> | undefined;
      await Promise.race([
        Promise.allSettled(this.#all.values()),
        new Promise((resolve) => timer = setTimeout(resolve, graceMs)),
      ]);
      clearTimeout(timer);
    }
    if (this.#all.size > 0) {
      cut();
      for (const c of this.#all.keys()) this.#close(c, "stopping");
      await Promise.allSettled(this.#all.values());
    }
    clearInterval(this.#sweeper);
    this.#sweeper = undefined;
  }

  #bind(): Deno.Listener {
    const listen = this.#o.listen ?? ((o) => Deno.listen(o));
    return listen({ hostname: this.#o.hostname, port: this.#boundPort || this.#o.port, transport: "tcp" });
  }

  async #accept(): Promise<void> {
    let delay = 0;
    const wait = async () => {
      delay = Math.min(1000, Math.max(50, delay * 2));
      await backoff(delay, this.#stopAccepting.signal);
    };
    while (!this.#stopping) {
      const listener = this.#listener;
      if (listener === null) {
        // the listener failed: bind again until it works
        try {
          this.#listener = this.#bind();
          this.#o.log.note("rebound", "info", `listening again on ${this.#o.hostname}:${this.port}`);
          delay = 0;
        } catch (err) {
          this.#o.log.note("rebind", "error", `cannot listen again: ${errText(err)}; retrying`);
          await wait();
        }
        continue;
      }
      let conn: Deno.Conn;
      try {
        conn = await listener.accept();
        delay = 0;
      } catch (err) {
        if (this.#stopping) return;
        if (isResourceExhaustion(err)) {
          this.#o.log.note(
            "accept-exhausted",
            "warn",
            `accept failed: ${errText(err)}; closing the oldest waiting connection and retrying`,
            "accept failed (out of descriptors)",
          );
          this.#evictOne();
        } else {
          this.#o.log.note("accept-failed", "error", `listener failed: ${errText(err)}; binding again`);
          try {
            listener.close();
          } catch {
            // already closed
          }
          if (this.#listener === listener) this.#listener = null;
        }
        await wait();
        continue;
      }
      if (this.#stopping) {
        closeQuietly(conn);
        return;
      }
      if (this.#all.size >= this.#o.maxConnections && !this.#evictOne()) {
        closeQuietly(conn);
        this.#dropped("refused", conn.remoteAddr as Deno.NetAddr, "refused: every connection is busy");
        continue;
      }
      const c: Conn = {
        conn,
        remote: conn.remoteAddr as Deno.NetAddr,
        buf: new Uint8Array(INITIAL_BUFFER),
        len: 0,
        phase: "head",
        since: performance.now(),
        writeSince: 0,
        closed: false,
        closedBy: null,
      };
      this.#heads.add(c);
      this.#all.set(c, this.#serve(c));
    }
  }

  /** Closes the connection waiting longest for a request (else the longest idle one); false if none. */
  #evictOne(): boolean {
    const victim = first(this.#heads) ?? first(this.#idles);
    if (victim === undefined) return false;
    this.#close(victim, "refused");
    this.#dropped("refused", victim.remote, "at the connection cap: closed the oldest waiting connection");
    return true;
  }

  #dropped(outcome: "refused" | "timed-out", remote: Deno.NetAddr, why: string): void {
    this.#o.onDropped?.(outcome);
    const label = outcome === "refused" ? "connections refused at the cap" : "connections timed out";
    this.#o.log.note(outcome, "info", `${remote.hostname}:${remote.port}: ${why}`, label);
  }

  #sweep(): void {
    const now = performance.now();
    const { headerTimeoutMs, idleTimeoutMs, writeTimeoutMs } = this.#o;
    for (const c of this.#heads) {
      if (now - c.since < headerTimeoutMs) break; // oldest first: the rest are younger
      this.#close(c, "timed-out");
      this.#dropped("timed-out", c.remote, `no complete request head within ${headerTimeoutMs / 1000} s`);
    }
    for (const c of this.#idles) {
      if (now - c.since < idleTimeoutMs) break;
      this.#close(c, "timed-out"); // an idle keep-alive connection closing is routine: not counted
    }
    if (writeTimeoutMs > 0) {
      for (const c of this.#busy) {
        if (c.writeSince > 0 && now - c.writeSince >= writeTimeoutMs) {
          this.#close(c, "timed-out");
          this.#dropped("timed-out", c.remote, `did not read the response for ${writeTimeoutMs / 1000} s`);
        }
      }
    }
  }

  #setPhase(c: Conn, phase: Phase): void {
    this.#heads.delete(c);
    this.#idles.delete(c);
    this.#busy.delete(c);
    c.phase = phase;
    c.since = performance.now();
    if (c.closed) return;
    (phase === "head" ? this.#heads : phase === "idle" ? this.#idles : this.#busy).add(c);
  }

  #close(c: Conn, by: Conn["closedBy"]): void {
    if (c.closed) return;
    c.closed = true;
    c.closedBy ??= by;
    this.#heads.delete(c);
    this.#idles.delete(c);
    this.#busy.delete(c);
    closeQuietly(c.conn);
  }

  async #serve(c: Conn): Promise<void> {
    try {
      while (!c.closed) {
        const head = await this.#readHead(c);
        if (head === null) return;
        this.#setPhase(c, "busy");
        const keep = await this.#exchange(c, head);
        if (!keep || this.#stopping) return;
        this.#setPhase(c, c.len > 0 ? "head" : "idle");
      }
    } catch (err) {
      if (!c.closed) this.#o.log.note("connection-error", "warn", `connection error: ${errText(err)}`);
    } finally {
      this.#close(c, null);
      this.#all.delete(c);
    }
  }

  /** Reads until a whole head is buffered; returns its bytes (removed from the buffer) or null at EOF. */
  async #readHead(c: Conn): Promise<Uint8Array | null> {
    let scanned = 0;
    for (;;) {
      const end = findHeadEnd(c.buf, c.len, scanned);
      if (end >= 0) return this.#take(c, end);
      scanned = c.len;
      if (c.len >= MAX_HEAD_BYTES) {
        await this.#fail(c, new HttpWireError(431, "request head too large"));
        return null;
      }
      if (!(await this.#fill(c))) return null;
      if (c.phase === "idle") this.#setPhase(c, "head"); // the header timeout starts at the first byte
    }
  }

  /** Reads more bytes into the buffer (growing it); false at EOF or when the connection was closed. */
  async #fill(c: Conn): Promise<boolean> {
    if (c.len === c.buf.length) {
      const bigger = new Uint8Array(Math.min(Math.max(c.buf.length * 4, INITIAL_BUFFER), MAX_HEAD_BYTES * 2));
      bigger.set(c.buf.subarray(0, c.len));
      c.buf = bigger;
    }
    let n: number | null;
    try {
      n = await c.conn.read(c.buf.subarray(c.len));
    } catch {
      return false; // reset by the peer, or closed by a timeout or eviction
    }
    if (n === null || c.closed) return false;
    c.len += n;
    return true;
  }

  /** Removes and returns the first `n` buffered bytes. */
  #take(c: Conn, n: number): Uint8Array {
    const out = c.buf.slice(0, n);
    c.buf.copyWithin(0, n, c.len);
    c.len -= n;
    return out;
  }

  /** One request and its response; true when the connection stays open. */
  async #exchange(c: Conn, headBytes: Uint8Array): Promise<boolean> {
    let head: RequestHead;
    let body: Uint8Array | null = null;
    try {
      head = parseRequestHead(headBytes);
      const framing = bodyFraming(head);
      if (framing.kind === "chunked") throw new HttpWireError(411, "send the body with a Content-Length");
      if (framing.kind === "length") {
        const max = this.#o.maxBodyBytes ?? 1 << 20;
        if (framing.length > max) throw new HttpWireError(413, `request body over ${max} bytes`);
        if (headerValue(head, "expect")?.toLowerCase() === "100-continue" && c.len < framing.length) {
          await this.#write(c, CONTINUE);
        }
        while (c.len < framing.length) {
          if (c.buf.length < framing.length) {
            const bigger = new Uint8Array(framing.length);
            bigger.set(c.buf.subarray(0, c.len));
            c.buf = bigger;
          }
          if (!(await this.#fill(c))) return false;
        }
        body = this.#take(c, framing.length);
      }
    } catch (err) {
      if (!(err instanceof HttpWireError)) throw err;
      await this.#fail(c, err);
      return false;
    }

    if (!head.target.startsWith("/") && !/^https?:\/\//i.test(head.target)) {
      await this.#fail(c, new HttpWireError(400, "malformed request target"));
      return false;
    }
    let built: Request | undefined;
    const incoming: IncomingRequest = {
      method: head.method,
      target: head.target,
      headers: new HeaderList(head.headers),
      request: () => built ??= this.#request(head, body),
    };
    let settle!: { resolve: () => void; reject: (err: Error) => void };
    const completed = new Promise<void>((resolve, reject) => settle = { resolve, reject });
    completed.catch(() => {}); // a handler that never looks must not see an unhandled rejection
    let response: Reply;
    try {
      response = await this.#o.handler(incoming, { remoteAddr: c.remote, completed });
    } catch (err) {
      response = this.#o.onError(err);
    }
    const keep = wantsKeepAlive(head) && !this.#stopping;
    const sent = await this.#respond(c, head, response, keep);
    if (sent.ok) settle.resolve();
    else settle.reject(new Deno.errors.ConnectionReset("connection closed before the response was sent"));
    return sent.ok && sent.keep;
  }

  /** The standard `Request`; throws when the URL or a field is invalid (the handler then answers 500). */
  #request(head: RequestHead, body: Uint8Array | null): Request {
    let url = head.target;
    if (head.target.startsWith("/")) {
      const host = headerValue(head, "host");
      const safe = host !== null && /^[A-Za-z0-9.\-:[\]]+$/.test(host) ? host : "localhost";
      url = `http://${safe}${head.target}`;
    }
    const withBody = body !== null && head.method !== "GET" && head.method !== "HEAD";
    return new Request(url, {
      method: head.method,
      headers: head.headers,
      body: withBody ? body as Uint8Array<ArrayBuffer> : undefined,
    });
  }

  /** Answers a malformed request and ends the connection. */
  async #fail(c: Conn, err: HttpWireError): Promise<void> {
    this.#o.log.note(
      "malformed",
      "debug",
      `${c.remote.hostname}:${c.remote.port}: ${err.status} ${err.message}`,
      "malformed requests",
    );
    const text = encoder.encode(`${err.status} ${err.message}\n`);
    const headBytes = encodeResponseHead(err.status, [
      ["content-type", "text/plain; charset=utf-8"],
      ["content-length", String(text.length)],
      ["date", httpDate()],
      ["connection", "close"],
    ]);
    await this.#write(c, concat(headBytes, text));
  }

  /** Writes `response`; `ok` false when the connection failed before the end. */
  async #respond(
    c: Conn,
    req: RequestHead,
    response: Reply,
    wantKeep: boolean,
  ): Promise<{ ok: boolean; keep: boolean }> {
    if ("raw" in response) return { ok: await this.#respondRaw(c, req, response, wantKeep), keep: wantKeep };
    const status = response.status;
    const isHead = req.method === "HEAD";
    const headers: [string, string][] = [];
    let length: number | null = null;
    for (const [name, value] of response.headers) {
      if (name === "content-length") {
        if (/^\d{1,15}$/.test(value)) length = Number(value);
      } else if (name !== "connection" && name !== "transfer-encoding" && name !== "keep-alive") {
        headers.push([name, value]);
      }
    }
    headers.push(["date", httpDate()]);
    const body = response.body;
    let keep = wantKeep;
    let framing: "none" | "length" | "chunked" | "close";
    if (statusHasNoBody(status)) {
      framing = "none";
      if (status === 304 && length !== null) headers.push(["content-length", String(length)]);
    } else if (length !== null) {
      framing = isHead ? "none" : "length";
      headers.push(["content-length", String(length)]);
    } else if (body === null) {
      framing = "none";
      headers.push(["content-length", "0"]);
    } else if (isHead) {
      framing = "none"; // like Deno.serve: HEAD of a stream of unknown length carries no length
    } else if (req.minor === 1) {
      framing = "chunked";
      headers.push(["transfer-encoding", "chunked"]);
    } else {
      framing = "close";
      keep = false;
    }
    if (!keep) headers.push(["connection", "close"]);
    else if (req.minor === 0) headers.push(["connection", "keep-alive"]);
    const headBytes = encodeResponseHead(status, headers);

    if (framing === "none" || body === null) {
      body?.cancel().catch(() => {});
      return { ok: await this.#write(c, headBytes), keep };
    }
    if (framing === "length" && length !== null && length <= INLINE_BODY_MAX) {
      let bytes: Uint8Array;
      try {
        bytes = new Uint8Array(await response.arrayBuffer());
      } catch (err) {
        this.#o.log.note("body-failed", "warn", `response body failed: ${errText(err)}`);
        return { ok: false, keep: false };
      }
      if (bytes.length !== length) return { ok: false, keep: false };
      return { ok: await this.#write(c, concat(headBytes, bytes)), keep };
    }
    if (!(await this.#write(c, headBytes))) {
      body.cancel().catch(() => {});
      return { ok: false, keep: false };
    }
    return await this.#pipe(c, body, framing, length, keep);
  }

  /** Writes a response whose body is in memory: head and body in one write. */
  #respondRaw(c: Conn, req: RequestHead, response: RawResponse, keep: boolean): Promise<boolean> {
    const { status, body } = response;
    const headers: (readonly [string, string])[] = [...response.headers, ["date", httpDate()]];
    const noBody = statusHasNoBody(status);
    // an explicit length (HEAD of a file not held in memory) wins over the body's
    if (!noBody && !response.headers.some(([name]) => name === "content-length")) {
      headers.push(["content-length", String(body?.length ?? 0)]);
    }
    if (!keep) headers.push(["connection", "close"]);
    else if (req.minor === 0) headers.push(["connection", "keep-alive"]);
    const headBytes = encodeResponseHead(status, headers);
    if (noBody || req.method === "HEAD" || body === null || body.length === 0) {
      return this.#write(c, headBytes);
    }
    // one write for small bodies; big ones are not copied just to save a write
    if (body.length <= INLINE_BODY_MAX) return this.#write(c, concat(headBytes, body));
    return this.#write(c, headBytes).then((ok) => ok && this.#write(c, body));
  }

  /** Streams a body; a stream error or a short/long body ends the connection (the client sees it cut). */
  async #pipe(
    c: Conn,
    body: ReadableStream<Uint8Array>,
    framing: "length" | "chunked" | "close",
    length: number | null,
    keep: boolean,
  ): Promise<{ ok: boolean; keep: boolean }> {
    const reader = body.getReader();
    let sent = 0;
    try {
      for (;;) {
        let chunk: ReadableStreamReadResult<Uint8Array>;
        try {
          chunk = await reader.read();
        } catch {
          return { ok: false, keep: false }; // the body failed (file stalled, server stopping)
        }
        if (chunk.done) break;
        const bytes = chunk.value;
        if (bytes.length === 0) continue;
        sent += bytes.length;
        if (framing === "length" && length !== null && sent > length) return { ok: false, keep: false };
        const out = framing === "chunked"
          ? concat(encoder.encode(bytes.length.toString(16) + "\r\n"), bytes, CHUNK_END)
          : bytes;
        if (!(await this.#write(c, out))) {
          reader.cancel().catch(() => {});
          return { ok: false, keep: false };
        }
      }
      if (framing === "chunked" && !(await this.#write(c, LAST_CHUNK))) return { ok: false, keep: false };
      if (framing === "length" && sent !== length) return { ok: false, keep: false };
      return { ok: true, keep: keep && framing !== "close" };
    } finally {
      reader.releaseLock();
    }
  }

  /** Writes every byte; false when the connection failed or was closed (write timeout). */
  async #write(c: Conn, bytes: Uint8Array): Promise<boolean> {
    if (c.closed) return false;
    c.writeSince = performance.now();
    try {
      let off = 0;
      while (off < bytes.length) {
        off += await c.conn.write(off === 0 ? bytes : bytes.subarray(off));
        if (c.closed) return false;
      }
      return true;
    } catch {
      return false;
    } finally {
      c.writeSince = 0;
    }
  }
}

function first<T>(set: Set<T>): T | undefined {
  for (const item of set) return item;
  return undefined;
}

function concat(...parts: Uint8Array[]): Uint8Array {
  let n = 0;
  for (const p of parts) n += p.length;
  const out = new Uint8Array(n);
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.length;
  }
  return out;
}

function closeQuietly(conn: Deno.Conn): void {
  try {
    conn.close();
  } catch {
    // already closed
  }
}

function errText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
