/**
 * HTTP/1.1 on the wire (RFC 9112), the part a file server needs: finding and parsing a request head,
 * deciding the body framing and persistence, and writing a response head. Pure: bytes in, values out;
 * every malformed input throws {@linkcode HttpWireError} carrying the status to answer with.
 * @module
 */

/** A request head that cannot be served; `status` is the answer (400, 413, 431, 501, 505). */
export class HttpWireError extends Error {
  /** Creates the error with the status to answer and a one-line reason. */
  constructor(readonly status: number, message: string) {
    super(message);
    this.name = "HttpWireError";
  }
}

/** A parsed request line and header fields. */
export interface RequestHead {
  readonly method: string;
  /** The request target as sent: origin-form (`/path?q`) or absolute-form (`http://host/path`). */
  readonly target: string;
  /** 0 for HTTP/1.0, 1 for HTTP/1.1. */
  readonly minor: 0 | 1;
  /** Field names lower-cased, values trimmed, in order. */
  readonly headers: [string, string][];
}

/** How the request body is delimited. */
export type BodyFraming = { readonly kind: "none" } | { readonly kind: "length"; readonly length: number } | {
  readonly kind: "chunked";
};

/** Largest request head accepted (request line and fields). */
export const MAX_HEAD_BYTES = 32 * 1024;
/** Most header fields accepted. */
export const MAX_HEADER_FIELDS = 100;

const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
// visible ASCII, space, tab and obs-text; no CR, LF or NUL
const FIELD_VALUE = /^[\t\x20-\x7e\x80-\xff]*$/;
const TARGET = /^[\x21-\x7e]+$/;

/**
 * The offset just past the blank line ending a head in `buf[0, len)`, or -1 when it is not complete.
 * `from` is where the previous search stopped (so a slow sender is not rescanned from the start).
 * Leading empty lines before a request line are allowed (RFC 9112 §2.2) and skipped by the parser.
 */
export function findHeadEnd(buf: Uint8Array, len: number, from = 0): number {
  for (let i = Math.max(0, from - 3); i + 3 < len; i++) {
    if (buf[i + 3] === 10 && buf[i + 2] === 13 && buf[i + 1] === 10 && buf[i] === 13) return i + 4;
  }
  return -1;
}

/** Parses a complete head (up to and including the blank line). */
export function parseRequestHead(bytes: Uint8Array): RequestHead {
  if (bytes.length > MAX_HEAD_BYTES) throw new HttpWireError(431, "request head too large");
  // latin1: every byte maps to one code unit, so obs-text survives and offsets stay byte offsets
  const text = latin1(bytes);
  const lines = text.split("\r\n");
  let first = 0;
  while (first < lines.length && lines[first] === "") first++;
  const requestLine = lines[first] ?? "";
  const parts = requestLine.split(" ");
  if (parts.length !== 3) throw new HttpWireError(400, "malformed request line");
  const [method, target, version] = parts;
  if (!TOKEN.test(method)) throw new HttpWireError(400, "malformed method");
  if (!TARGET.test(target)) throw new HttpWireError(400, "malformed request target");
  let minor: 0 | 1;
  if (version === "HTTP/1.1") minor = 1;
  else if (version === "HTTP/1.0") minor = 0;
  else if (/^HTTP\/\d\.\d$/.test(version)) throw new HttpWireError(505, `${version} is not supported`);
  else throw new HttpWireError(400, "malformed HTTP version");
  const headers: [string, string][] = [];
  for (let i = first + 1; i < lines.length; i++) {
    const line = lines[i];
    if (line === "") continue; // the terminating blank line(s)
    if (line.charCodeAt(0) === 32 || line.charCodeAt(0) === 9) {
      throw new HttpWireError(400, "obsolete line folding is not accepted");
    }
    const colon = line.indexOf(":");
    if (colon <= 0) throw new HttpWireError(400, "malformed header field");
    const name = line.slice(0, colon);
    if (!TOKEN.test(name)) throw new HttpWireError(400, "malformed header field name");
    const value = line.slice(colon + 1).trim();
    if (!FIELD_VALUE.test(value)) throw new HttpWireError(400, `malformed value of ${name}`);
    if (headers.length >= MAX_HEADER_FIELDS) throw new HttpWireError(431, "too many header fields");
    headers.push([name.toLowerCase(), value]);
  }
  return { method, target, minor, headers };
}

/** The first value of field `name` (lower case), or null. */
export function headerValue(head: RequestHead, name: string): string | null {
  for (const [n, v] of head.headers) if (n === name) return v;
  return null;
}

/** How the body is delimited; conflicting or invalid framing throws (request smuggling guard). */
export function bodyFraming(head: RequestHead): BodyFraming {
  const lengths = head.headers.filter(([n]) => n === "content-length").map(([, v]) => v);
  const encodings = head.headers.filter(([n]) => n === "transfer-encoding").map(([, v]) => v.toLowerCase());
  if (encodings.length > 0) {
    if (lengths.length > 0) throw new HttpWireError(400, "both Content-Length and Transfer-Encoding");
    const codings = encodings.join(",").split(",").map((s) => s.trim()).filter((s) => s !== "");
    if (codings.length === 1 && codings[0] === "chunked") return { kind: "chunked" };
    throw new HttpWireError(501, `transfer coding ${encodings.join(", ")} is not supported`);
  }
  if (lengths.length === 0) return { kind: "none" };
  const values = new Set(lengths.join(",").split(",").map((s) => s.trim()));
  if (values.size !== 1) throw new HttpWireError(400, "conflicting Content-Length values");
  const [value] = values;
  if (!/^\d{1,15}$/.test(value)) throw new HttpWireError(400, "malformed Content-Length");
  const length = Number(value);
  return length === 0 ? { kind: "none" } : { kind: "length", length };
}

/** True when the client wants the connection kept open after this request. */
export function wantsKeepAlive(head: RequestHead): boolean {
  const tokens = head.headers.filter(([n]) => n === "connection")
    .flatMap(([, v]) => v.toLowerCase().split(",").map((s) => s.trim()));
  if (tokens.includes("close")) return false;
  return head.minor === 1 || tokens.includes("keep-alive");
}

const REASONS: Record<number, string> = {
  100: "Continue",
  200: "OK",
  204: "No Content",
  206: "Partial Content",
  304: "Not Modified",
  400: "Bad Request",
  403: "Forbidden",
  404: "Not Found",
  405: "Method Not Allowed",
  408: "Request Timeout",
  411: "Length Required",
  413: "Content Too Large",
  416: "Range Not Satisfiable",
  431: "Request Header Fields Too Large",
  500: "Internal Server Error",
  501: "Not Implemented",
  503: "Service Unavailable",
  505: "HTTP Version Not Supported",
};

/** The reason phrase of `status` (empty for unknown codes, which HTTP allows). */
export function reasonPhrase(status: number): string {
  return REASONS[status] ?? "";
}

/** True for statuses that never carry a body (1xx, 204, 304). */
export function statusHasNoBody(status: number): boolean {
  return status < 200 || status === 204 || status === 304;
}

/** Serialises a status line and header fields, ending with the blank line. */
export function encodeResponseHead(status: number, headers: Iterable<readonly [string, string]>): Uint8Array {
  let head = `HTTP/1.1 ${status} ${reasonPhrase(status)}\r\n`;
  for (const [name, value] of headers) {
    if (/[\r\n]/.test(value)) continue; // never let a value split the head
    head += `${name}: ${value}\r\n`;
  }
  head += "\r\n";
  return latin1Bytes(head);
}

function latin1(bytes: Uint8Array): string {
  let out = "";
  for (let i = 0; i < bytes.length; i += 8192) {
    out += String.fromCharCode.apply(null, bytes.subarray(i, i + 8192) as unknown as number[]);
  }
  return out;
}

const encoder = new TextEncoder();
function latin1Bytes(text: string): Uint8Array {
  // fast path: ASCII heads (the usual case) encode the same in UTF-8
  // deno-lint-ignore no-control-regex
  if (/^[\x00-\x7f]*$/.test(text)) return encoder.encode(text);
  const out = new Uint8Array(text.length);
  for (let i = 0; i < text.length; i++) out[i] = text.charCodeAt(i) & 0xff;
  return out;
}
