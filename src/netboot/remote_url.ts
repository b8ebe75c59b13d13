/**
 * Remote boot-file references, pure: telling a URL from a local name, refusing non-HTTP schemes at
 * start-up with the entry named, the `{"url", "sha256"}` JSON form, and the names a remote file has in
 * the cache directory (`<sha256 of the URL>`) and in the served tree (`remote/<key16>/<basename>`).
 *
 * @example
 * ```ts
 * parseRemoteRef({ url: "https://example.org/vmlinuz", sha256: "ab".repeat(32) }, "menu.json entries[0].kernel");
 * // { url: "https://example.org/vmlinuz", sha256: "abab..." }
 * parseRemoteRef("vmlinuz", "menu.json entries[0].kernel"); // null: a local name
 * remoteName("https://example.org/boot/vmlinuz?x=1"); // "remote/3f1c.../vmlinuz"
 * ```
 * @module
 */
import { createHash } from "node:crypto";

/** A boot file that lives at an HTTP origin, with the hash it must have when given. */
export interface RemoteRef {
  readonly url: string;
  /** Lower-case hex sha256 the bytes must match before they are served as complete. */
  readonly sha256?: string;
}

/** A remote reference that cannot be used, naming where it was written. */
export class RemoteUrlError extends Error {
  /** Creates the error: `where` names the config entry (`menu.json entries[2].initrd[0]`). */
  constructor(readonly where: string, readonly value: string, reason: string) {
    super(`${where}: ${JSON.stringify(value)} ${reason}`);
    this.name = "RemoteUrlError";
  }
}

/** True when `name` is written as a URL (`scheme://...`), any scheme: it is not a local file name. */
export function isRemoteUrl(name: string): boolean {
  return /^[a-z][a-z0-9+.-]*:\/\//i.test(name.trim());
}

/**
 * The URL when `url` is a usable http:// or https:// URL with a host; else throws
 * {@linkcode RemoteUrlError} naming `where`.
 *
 * @example
 * ```ts
 * checkRemoteUrl("ftp://mirror/vmlinuz", "--netboot-file-efi64"); // throws: ... is not an http:// or https:// URL
 * ```
 */
export function checkRemoteUrl(url: string, where = "URL"): URL {
  let parsed: URL;
  try {
    parsed = new URL(url.trim());
  } catch {
    throw new RemoteUrlError(where, url, "is not a valid URL");
  }
  if (parsed.protocol !== "http:" && parsed.protocol !== "https:") {
    throw new RemoteUrlError(where, url, `is not an http:// or https:// URL (scheme ${parsed.protocol})`);
  }
  if (parsed.hostname === "") throw new RemoteUrlError(where, url, "has no host");
  return parsed;
}

/**
 * A boot-file value from JSON as a remote reference: an http(s) URL string or `{"url", "sha256"?}`;
 * null for a local name (a string that is not a URL). Throws {@linkcode RemoteUrlError} naming `where`
 * for a refused scheme, a malformed object or a sha256 that is not 64 hex digits.
 */
export function parseRemoteRef(value: unknown, where: string): RemoteRef | null {
  if (typeof value === "string") {
    if (!isRemoteUrl(value)) return null;
    return { url: checkRemoteUrl(value, where).href };
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new RemoteUrlError(
      where,
      String(value),
      'must be a file name, a URL or {"url": ..., "sha256": ...}',
    );
  }
  const { url, sha256, ...rest } = value as Record<string, unknown>;
  const extra = Object.keys(rest);
  if (extra.length > 0) {
    throw new RemoteUrlError(
      `${where}.${extra[0]}`,
      String(rest[extra[0]]),
      'is not a known key (use "url", "sha256")',
    );
  }
  if (typeof url !== "string") throw new RemoteUrlError(`${where}.url`, String(url), "must be a URL string");
  const href = checkRemoteUrl(url, `${where}.url`).href;
  if (sha256 === undefined) return { url: href };
  if (typeof sha256 !== "string" || !/^[0-9a-f]{64}$/i.test(sha256)) {
    throw new RemoteUrlError(`${where}.sha256`, String(sha256), "must be 64 hex digits");
  }
  return { url: href, sha256: sha256.toLowerCase() };
}

/** The cache key of a URL: the lower-case hex sha256 of its text (the file name in the cache dir). */
export function remoteKey(url: string): string {
  return createHash("sha256").update(url).digest("hex");
}

/**
 * The name a remote file has in the served tree: `remote/<first 16 hex of its key>/<basename>` (the
 * basename of the URL path, `file` when it has none), so clients and menus see a readable file name.
 */
export function remoteName(url: string): string {
  let base = "";
  try {
    const path = new URL(url).pathname;
    base = decodeURIComponent(path.slice(path.lastIndexOf("/") + 1));
  } catch {
    // not a parseable URL or a bad %-escape: the generic name below
  }
  if (!/^[\w.+-]{1,100}$/.test(base) || base === "." || base === "..") base = "file";
  return `remote/${remoteKey(url).slice(0, 16)}/${base}`;
}

/** The URL for log lines and listings: a password in it is replaced by `***`. */
export function displayUrl(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password === "") return url;
    parsed.password = "***";
    return parsed.href;
  } catch {
    return url;
  }
}
