/**
 * Pure HTTP helpers of the file server: Range (RFC 9110 §14) and conditional-request evaluation,
 * entity tags, content types and request-target decoding. No I/O, no clocks.
 * @module
 */
import type { NetbootFile } from "../netboot/fs.ts";

/** A satisfiable byte range, inclusive `start`..`end`. */
export interface ByteRange {
  readonly start: number;
  readonly end: number;
}

/** What a `Range` header asks for, measured against a representation of `size` bytes. */
export type RangeResult =
  | { readonly kind: "full" }
  | { readonly kind: "partial"; readonly range: ByteRange }
  | { readonly kind: "unsatisfiable" };

const RANGE_SPEC = /^(\d*)-(\d*)$/;

/**
 * Evaluates a `Range` header value: one satisfiable range gives `partial`, a syntactically valid set
 * with no satisfiable range gives `unsatisfiable`, anything else (absent, malformed, other units,
 * several ranges) gives `full`, which RFC 9110 allows.
 *
 * @example
 * ```ts
 * parseRange("bytes=-500", 1000); // { kind: "partial", range: { start: 500, end: 999 } }
 * ```
 */
export function parseRange(header: string | null, size: number): RangeResult {
  if (header === null) return { kind: "full" };
  const eq = header.indexOf("=");
  if (eq < 0 || header.slice(0, eq).trim().toLowerCase() !== "bytes") return { kind: "full" };
  const specs = header.slice(eq + 1).split(",").map((s) => s.trim()).filter((s) => s !== "");
  if (specs.length === 0) return { kind: "full" };
  const satisfiable: ByteRange[] = [];
  for (const spec of specs) {
    const m = RANGE_SPEC.exec(spec);
    if (m === null || (m[1] === "" && m[2] === "")) return { kind: "full" };
    if (m[1] === "") {
      const suffix = Number(m[2]);
      if (suffix > 0 && size > 0) satisfiable.push({ start: Math.max(0, size - suffix), end: size - 1 });
      continue;
    }
    const start = Number(m[1]);
    const last = m[2] === "" ? size - 1 : Number(m[2]);
    if (m[2] !== "" && last < start) return { kind: "full" };
    if (start < size) satisfiable.push({ start, end: Math.min(last, size - 1) });
  }
  if (satisfiable.length === 0) return { kind: "unsatisfiable" };
  if (satisfiable.length > 1) return { kind: "full" };
  return { kind: "partial", range: satisfiable[0] };
}

/** A strong entity tag from size and modification time, like nginx's: `"mtimehex-sizehex"`. */
export function entityTag(size: number, mtime: Date | null): string {
  // milliseconds: two edits within one second that keep the size still get different tags
  const ms = mtime === null ? 0 : Math.floor(mtime.getTime());
  return `"${ms.toString(16)}-${size.toString(16)}"`;
}

/** True when an `If-None-Match` value matches `etag` (weak comparison, `*` matches anything). */
export function noneMatchHits(header: string, etag: string): boolean {
  const bare = etag.replace(/^W\//, "");
  for (const raw of header.split(",")) {
    const tag = raw.trim();
    if (tag === "*") return true;
    if (tag.replace(/^W\//, "") === bare) return true;
  }
  return false;
}

/** The request's conditional outcome: `true` when the server should answer 304 Not Modified. */
export function notModified(
  headers: { ifNoneMatch: string | null; ifModifiedSince: string | null },
  etag: string,
  mtime: Date | null,
): boolean {
  if (headers.ifNoneMatch !== null) return noneMatchHits(headers.ifNoneMatch, etag);
  if (headers.ifModifiedSince === null || mtime === null) return false;
  const since = Date.parse(headers.ifModifiedSince);
  if (Number.isNaN(since)) return false;
  return Math.floor(mtime.getTime() / 1000) * 1000 <= since;
}

/** True when an `If-Range` value still names this representation (strong etag or exact date). */
export function ifRangeHolds(header: string | null, etag: string, lastModified: string | null): boolean {
  if (header === null) return true;
  const value = header.trim();
  if (value.startsWith("W/")) return false;
  if (value.startsWith('"')) return value === etag;
  return lastModified !== null && Date.parse(value) === Date.parse(lastModified);
}

const CONTENT_TYPES: Record<string, string> = {
  efi: "application/octet-stream",
  kpxe: "application/octet-stream",
  kkpxe: "application/octet-stream",
  pxe: "application/octet-stream",
  lkrn: "application/octet-stream",
  "0": "application/octet-stream",
  c32: "application/octet-stream",
  bin: "application/octet-stream",
  img: "application/octet-stream",
  gz: "application/gzip",
  xz: "application/x-xz",
  zst: "application/zstd",
  iso: "application/x-iso9660-image",
  ipxe: "text/plain; charset=utf-8",
  cfg: "text/plain; charset=utf-8",
  conf: "text/plain; charset=utf-8",
  txt: "text/plain; charset=utf-8",
  json: "application/json",
  html: "text/html; charset=utf-8",
  htm: "text/html; charset=utf-8",
  css: "text/css",
  js: "text/javascript",
  png: "image/png",
  jpg: "image/jpeg",
  jpeg: "image/jpeg",
  svg: "image/svg+xml",
  sig: "application/pgp-signature",
  asc: "application/pgp-signature",
};

/** The `content-type` for a file name by its extension; unknown ones are `application/octet-stream`. */
export function contentTypeFor(name: string): string {
  const base = name.slice(name.lastIndexOf("/") + 1);
  const dot = base.lastIndexOf(".");
  if (dot < 0) return "application/octet-stream";
  return CONTENT_TYPES[base.slice(dot + 1).toLowerCase()] ?? "application/octet-stream";
}

/**
 * Extracts the path of a request URL as sent (no dot-segment normalisation), percent-decoded, without
 * query or fragment. Works for origin-form (`http://host/p` as Deno reports it) and absolute-form
 * targets. Returns null when the percent-encoding is invalid.
 *
 * @example
 * ```ts
 * requestPath("http://h//ipxe.efi?x=1"); // "//ipxe.efi"
 * ```
 */
export function requestPath(url: string): string | null {
  const scheme = url.indexOf("://");
  const slash = scheme < 0 ? url.indexOf("/") : url.indexOf("/", scheme + 3);
  if (slash < 0) return "/";
  let end = url.length;
  const q = url.indexOf("?", slash);
  if (q >= 0) end = q;
  const h = url.indexOf("#", slash);
  if (h >= 0 && h < end) end = h;
  const raw = url.slice(slash, end);
  if (!raw.includes("%")) return raw;
  try {
    return decodeURIComponent(raw);
  } catch {
    return null;
  }
}

/** What a response needs to know about a file, derived once per looked-up file object. */
export interface FileMeta {
  readonly etag: string;
  readonly lastModified: string | null;
  readonly contentType: string;
  /** Fields of a full 200 answer (the length comes from the body). */
  readonly fullHeaders: [string, string][];
}

const metaOf = new WeakMap<NetbootFile, FileMeta>();

/** The derived response fields of `file` (computed once per file object). */
export function fileMeta(file: NetbootFile): FileMeta {
  let meta = metaOf.get(file);
  if (meta === undefined) {
    const etag = entityTag(file.size, file.mtime);
    const lastModified = file.mtime === null ? null : file.mtime.toUTCString();
    const contentType = contentTypeFor(file.name);
    const fullHeaders: [string, string][] = [["content-type", contentType], ["accept-ranges", "bytes"], [
      "etag",
      etag,
    ]];
    if (lastModified !== null) fullHeaders.push(["last-modified", lastModified]);
    meta = { etag, lastModified, contentType, fullHeaders };
    metaOf.set(file, meta);
  }
  return meta;
}
