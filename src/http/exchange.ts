/**
 * One HTTP/1.1 connection: its read buffer, reading a request head and body, calling the handler and
 * writing the response (from memory, with a length, chunked, or until close). `connections.ts` owns the
 * accept loop, the caps and the timers; this file owns the bytes of one connection. It is a little over
 * 450 lines because the response is written in its four forms (in memory, a file range, a stream with a
 * length, chunked) by the same connection state the request was read with.
 * @module
 */
import { hostPort, plainAddr } from "../dual_stack.ts";
import { errText } from "../errors.ts";
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

/** A byte range of an open file, sent by the connection itself (two reused buffers, no stream). */
export interface FileBody {
  /** The open file; the connection closes it when done, whatever happens. */
  readonly file: Deno.FsFile;
  /** First byte offset. */
  readonly start: number;
  /** Bytes to send. */
  readonly length: number;
  /** Called once with the bytes sent and `ok` or why it ended early (`stalled`, `server stopping`...). */
  readonly onDone: (bytes: number, outcome: string) => void;
}

/** A response written without a stream: a body in memory, or a range of a file. */
export interface RawResponse {
  readonly raw: true;
  readonly status: number;
  /** Field names in lower case; `content-length` is set from `body` unless given. */
  readonly headers: readonly (readonly [string, string])[];
  readonly body: Uint8Array | null;
  /** With `body` null: the file range to send (give `content-length`). */
  readonly file?: FileBody;
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
  file?: FileBody,
): RawResponse {
  return { raw: true, status, headers, body, file };
}

/** Bytes read from a file per write to the client. */
export const FILE_CHUNK = 1 << 20;

class HeaderList {
  constructor(readonly fields: readonly [string, string][]) {}
  get(name: string): string | null {
    const key = name.toLowerCase();
    let out: string | null = null;
    for (const [n, v] of this.fields) if (n === key) out = out === null ? v : `${out}, ${v}`;
    return out;
  }
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

/** What a connection needs from the server it belongs to. */
export interface ExchangeContext {
  readonly handler: HttpHandler;
  /** Turns a handler failure into a response. */
  readonly onError: (err: unknown) => Reply;
  /** Throttled log lines (malformed requests, failed bodies). */
  readonly log: LogThrottle;
  /** Largest request body read (Content-Length); larger ones get 413. Default 1 MiB. */
  readonly maxBodyBytes?: number;
  /** True once the server is stopping: responses then close their connection. */
  stopping(): boolean;
}

/** Where a connection is: waiting for a request head, idle between requests, or answering one. */
export type Phase = "head" | "idle" | "busy";

/** One accepted connection and its request/response exchanges. */
export class HttpConnection {
  readonly conn: Deno.Conn;
  readonly remote: Deno.NetAddr;
  buf: Uint8Array = new Uint8Array(INITIAL_BUFFER);
  len = 0;
  phase: Phase = "head";
  /** performance.now() when the current phase began. */
  since: number = performance.now();
  /** performance.now() when the pending write began, 0 when none is pending. */
  writeSince = 0;
  closed = false;
  /** Why the server closed it. */
  closedBy: "timed-out" | "refused" | "stopping" | null = null;
  readonly #ctx: ExchangeContext;

  /** Wraps an accepted connection. */
  constructor(conn: Deno.Conn, ctx: ExchangeContext) {
    this.conn = conn;
    // a dual-stack `::` listener reports IPv4 clients as ::ffff:a.b.c.d: name them as IPv4
    this.remote = plainAddr(conn.remoteAddr as Deno.NetAddr);
    this.#ctx = ctx;
  }

  /** Closes the socket (a pending read or write then fails); `by` says why, for the counters. */
  close(by: HttpConnection["closedBy"]): void {
    if (this.closed) return;
    this.closed = true;
    this.closedBy ??= by;
    try {
      this.conn.close();
    } catch {
      // already closed
    }
  }

  /** Reads until a whole head is buffered; returns its bytes (removed from the buffer) or null at EOF. */
  async readHead(onFirstByte: () => void): Promise<Uint8Array | null> {
    let scanned = 0;
    for (;;) {
      const end = findHeadEnd(this.buf, this.len, scanned);
      if (end >= 0) return this.#take(end);
      scanned = this.len;
      if (this.len >= MAX_HEAD_BYTES) {
        await this.#fail(new HttpWireError(431, "request head too large"));
        return null;
      }
      if (!(await this.#fill())) return null;
      if (this.phase === "idle") onFirstByte(); // the header timeout starts at the first byte
    }
  }

  /** Reads more bytes into the buffer (growing it); false at EOF or when the connection was closed. */
  async #fill(): Promise<boolean> {
    if (this.len === this.buf.length) {
      const bigger = new Uint8Array(
        Math.min(Math.max(this.buf.length * 4, INITIAL_BUFFER), MAX_HEAD_BYTES * 2),
      );
      bigger.set(this.buf.subarray(0, this.len));
      this.buf = bigger;
    }
    let n: number | null;
    try {
      n = await this.conn.read(this.buf.subarray(this.len));
    } catch {
      return false; // reset by the peer, or closed by a timeout or eviction
    }
    if (n === null || this.closed) return false;
    this.len += n;
    return true;
  }

  /** Removes and returns the first `n` buffered bytes. */
  #take(n: number): Uint8Array {
    const out = this.buf.slice(0, n);
    this.buf.copyWithin(0, n, this.len);
    this.len -= n;
    return out;
  }

  /** One request and its response; true when the connection stays open. */
  async exchange(headBytes: Uint8Array): Promise<boolean> {
    let head: RequestHead;
    let body: Uint8Array | null = null;
    try {
      head = parseRequestHead(headBytes);
      const framing = bodyFraming(head);
      if (framing.kind === "chunked") throw new HttpWireError(411, "send the body with a Content-Length");
      if (framing.kind === "length") {
        const max = this.#ctx.maxBodyBytes ?? 1 << 20;
        if (framing.length > max) throw new HttpWireError(413, `request body over ${max} bytes`);
        if (headerValue(head, "expect")?.toLowerCase() === "100-continue" && this.len < framing.length) {
          await this.write(CONTINUE);
        }
        while (this.len < framing.length) {
          if (this.buf.length < framing.length) {
            const bigger = new Uint8Array(framing.length);
            bigger.set(this.buf.subarray(0, this.len));
            this.buf = bigger;
          }
          if (!(await this.#fill())) return false;
        }
        body = this.#take(framing.length);
      }
    } catch (err) {
      if (!(err instanceof HttpWireError)) throw err;
      await this.#fail(err);
      return false;
    }

    if (!head.target.startsWith("/") && !/^https?:\/\//i.test(head.target)) {
      await this.#fail(new HttpWireError(400, "malformed request target"));
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
      response = await this.#ctx.handler(incoming, { remoteAddr: this.remote, completed });
    } catch (err) {
      response = this.#ctx.onError(err);
    }
    const keep = wantsKeepAlive(head) && !this.#ctx.stopping();
    const sent = await this.#respond(head, response, keep);
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
  async #fail(err: HttpWireError): Promise<void> {
    this.#ctx.log.note(
      "malformed",
      "debug",
      `${hostPort(this.remote)}: ${err.status} ${err.message}`,
      "malformed requests",
    );
    const text = encoder.encode(`${err.status} ${err.message}\n`);
    const headBytes = encodeResponseHead(err.status, [
      ["content-type", "text/plain; charset=utf-8"],
      ["content-length", String(text.length)],
      ["date", httpDate()],
      ["connection", "close"],
    ]);
    await this.write(concat(headBytes, text));
  }

  /** Writes `response`; `ok` false when the connection failed before the end. */
  async #respond(
    req: RequestHead,
    response: Reply,
    wantKeep: boolean,
  ): Promise<{ ok: boolean; keep: boolean }> {
    if ("raw" in response) return { ok: await this.#respondRaw(req, response, wantKeep), keep: wantKeep };
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
      return { ok: await this.write(headBytes), keep };
    }
    if (framing === "length" && length !== null && length <= INLINE_BODY_MAX) {
      let bytes: Uint8Array;
      try {
        bytes = new Uint8Array(await response.arrayBuffer());
      } catch (err) {
        this.#ctx.log.note("body-failed", "warn", `response body failed: ${errText(err)}`);
        return { ok: false, keep: false };
      }
      if (bytes.length !== length) return { ok: false, keep: false };
      return { ok: await this.write(concat(headBytes, bytes)), keep };
    }
    if (!(await this.write(headBytes))) {
      body.cancel().catch(() => {});
      return { ok: false, keep: false };
    }
    return await this.#pipe(body, framing, length, keep);
  }

  /** Writes a response whose body is in memory: head and body in one write. */
  #respondRaw(req: RequestHead, response: RawResponse, keep: boolean): Promise<boolean> {
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
    if (response.file !== undefined) return this.#sendFileBody(headBytes, response.file);
    if (noBody || req.method === "HEAD" || body === null || body.length === 0) {
      return this.write(headBytes);
    }
    // one write for small bodies; big ones are not copied just to save a write
    if (body.length <= INLINE_BODY_MAX) return this.write(concat(headBytes, body));
    return this.write(headBytes).then((ok) => ok && this.write(body));
  }

  /**
   * Writes the head, then the file range: the next chunk is read while the current one is written, into
   * two buffers reused for the whole transfer (a fresh 1 MiB buffer per chunk costs twice the CPU).
   */
  async #sendFileBody(headBytes: Uint8Array, body: FileBody): Promise<boolean> {
    const { file, length } = body;
    let sent = 0;
    let outcome = "ok";
    try {
      if (!(await this.write(headBytes))) {
        outcome = this.#endReason();
        return false;
      }
      if (body.start > 0) await file.seek(body.start, Deno.SeekMode.Start);
      let current = new Uint8Array(Math.min(FILE_CHUNK, length));
      let spare = length > FILE_CHUNK ? new Uint8Array(FILE_CHUNK) : current;
      let n = await readFull(file, current.subarray(0, Math.min(FILE_CHUNK, length)));
      for (;;) {
        const want = Math.min(FILE_CHUNK, length - sent);
        if (n < want) {
          outcome = `file shrank during transfer (${length - sent - n} bytes missing)`;
          this.close(null); // the client must see the response cut, not a short body on a live connection
          return false;
        }
        const rest = length - sent - n;
        const next = rest > 0 ? readFull(file, spare.subarray(0, Math.min(FILE_CHUNK, rest))) : null;
        next?.catch(() => {}); // awaited below, or abandoned when the write fails
        const ok = await this.write(current.subarray(0, n));
        if (!ok) {
          await next?.catch(() => {});
          outcome = this.#endReason();
          return false;
        }
        sent += n;
        if (next === null) return true;
        n = await next;
        [current, spare] = [spare, current];
      }
    } catch (err) {
      outcome = `read failed: ${errText(err)}`;
      this.close(null);
      return false;
    } finally {
      try {
        file.close();
      } catch {
        // already closed
      }
      body.onDone(sent, outcome);
    }
  }

  /** Why a write failed: the server's own doing (timeout, stop) or the client's. */
  #endReason(): string {
    if (this.closedBy === "timed-out") return "client stalled: it stopped reading the response";
    if (this.closedBy === "stopping" || this.#ctx.stopping()) return "server stopping";
    return "client closed the connection";
  }

  /** Streams a body; a stream error or a short/long body ends the connection (the client sees it cut). */
  async #pipe(
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
        if (!(await this.write(out))) {
          reader.cancel().catch(() => {});
          return { ok: false, keep: false };
        }
      }
      if (framing === "chunked" && !(await this.write(LAST_CHUNK))) return { ok: false, keep: false };
      if (framing === "length" && sent !== length) return { ok: false, keep: false };
      return { ok: true, keep: keep && framing !== "close" };
    } finally {
      reader.releaseLock();
    }
  }

  /** Writes every byte; false when the connection failed or was closed (write timeout). */
  async write(bytes: Uint8Array): Promise<boolean> {
    if (this.closed) return false;
    this.writeSince = performance.now();
    try {
      let off = 0;
      while (off < bytes.length) {
        off += await this.conn.write(off === 0 ? bytes : bytes.subarray(off));
        if (this.closed) return false;
      }
      return true;
    } catch {
      return false;
    } finally {
      this.writeSince = 0;
    }
  }
}

/** Concatenates byte arrays. */
export function concat(...parts: Uint8Array[]): Uint8Array {
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

/** Reads until `buf` is full or the file ends; the number of bytes read. */
async function readFull(file: Deno.FsFile, buf: Uint8Array): Promise<number> {
  let filled = 0;
  while (filled < buf.length) {
    const n = await file.read(buf.subarray(filled));
    if (n === null) break;
    filled += n;
  }
  return filled;
}
