/**
 * Boot files from anywhere (issue 17): {@linkcode RemoteCache} turns an http(s) URL into a verified file
 * in an on-disk cache directory, served at local speed once held.
 *
 * - First open: ONE upstream GET per URL; every concurrent open joins it and reads the `.part` file as it
 *   grows ({@linkcode RemoteFile.read} waits for bytes still coming). Broken connections, timeouts and
 *   short bodies resume with Range (`remote_download.ts`). The sha256, when given, is checked before the
 *   file counts as complete; a mismatch discards it and every reader's read rejects. Then the file is
 *   renamed to `dir/<sha256 of the URL>` and recorded in `dir/index.json` (`remote_index.ts`).
 *   Readers that go away do not stop the download: it goes on to fill the cache for the next client.
 * - Later opens: the held file, at once. At most every `revalidateMs` an open starts a conditional
 *   request in the background (If-None-Match / If-Modified-Since) while the held copy is served: a 304
 *   keeps it, a 200 downloads the new version beside it and swaps it in when complete and verified
 *   (readers of the old copy keep their handle on it). An unreachable origin, a 4xx or a 5xx keeps the
 *   held copy: "serving the cached copy" is logged once until a revalidation succeeds again. A file whose
 *   configured sha256 matched is never revalidated: its content is pinned.
 * - Eviction: least recently used files go when the held bytes exceed `maxBytes` (on completion, on
 *   close of a reader, before a download of announced size starts); a file being read, downloaded or
 *   revalidated is never evicted. A file larger than `maxBytes` on its own is downloaded and served to
 *   its readers, but not kept: its `.part` is removed when its last reader closes.
 *
 * @example
 * ```ts
 * const cache = await RemoteCache.create({ dir: "/var/lib/pypxe/cache", maxBytes: 20e9 });
 * using file = await cache.open("https://mirror.example/vmlinuz", { sha256: "..." });
 * const buf = new Uint8Array(512);
 * const n = await file.read(0, buf); // waits while the first bytes download
 * await cache.close();
 * ```
 * @module
 */
import { getLogger } from "@logtape/logtape";
import { join } from "node:path";
import { errText } from "../errors.ts";
import { formatSize } from "../format.ts";
import { Download, openFileWriter, type OpenWriter, type RemoteLog, removePart } from "./remote_download.ts";
import { RemoteError } from "./remote_fetch.ts";
import { heldProgress, RemoteFile } from "./remote_file.ts";
import { CacheIndex, type IndexEntry } from "./remote_index.ts";
import {
  downloadInfo,
  failedInfo,
  type FetchProgress,
  type FetchResult,
  heldInfo,
  type RemoteEntryInfo,
} from "./remote_list.ts";
import { checkRemoteUrl, displayUrl, remoteKey, type RemoteRef } from "./remote_url.ts";

export { RemoteError, type RemoteErrorCode } from "./remote_fetch.ts";
export { RemoteFile, type RemoteStreamOptions } from "./remote_file.ts";
export type { RemoteLog, RemoteWriter } from "./remote_download.ts";
export type { FetchProgress, FetchResult, HashStatus, RemoteEntryInfo } from "./remote_list.ts";
export {
  checkRemoteUrl,
  displayUrl,
  isRemoteUrl,
  parseRemoteRef,
  remoteKey,
  remoteName,
  type RemoteRef,
  RemoteUrlError,
} from "./remote_url.ts";

/** Options of {@linkcode RemoteCache.create}. */
export interface RemoteCacheOptions {
  /** The cache directory (created if missing). */
  readonly dir: string;
  /** Bytes of complete files kept; least recently used ones are evicted beyond it. */
  readonly maxBytes: number;
  /** An open revalidates a held file at most this often (ms); default 1 h. */
  readonly revalidateMs?: number;
  /** Deadline for a response head, and between body chunks (ms); default 30 s. */
  readonly timeoutMs?: number;
  /** Redirects followed; default 5. */
  readonly maxRedirects?: number;
  /** Failures in a row (without progress) a download resumes after; default 5. */
  readonly maxRetries?: number;
  /** First back-off before a resume, doubled each time (ms); default 500. */
  readonly retryDelayMs?: number;
  /** Gathered index writes (last-used times) wait this long (ms); default 1000. */
  readonly indexFlushMs?: number;
  /** Clock for fetched / used / checked times and revalidation (ms since the epoch); default Date.now. */
  readonly now?: () => number;
  /** Default: the LogTape logger `["pypxe", "remote"]`. */
  readonly log?: RemoteLog;
  /** Opens `.part` files for writing (tests inject failing writers); default a plain file. */
  readonly openWriter?: OpenWriter;
}

/** Options of {@linkcode RemoteCache.open}. */
export interface RemoteOpenOptions {
  /** The sha256 (hex) the bytes must have. */
  readonly sha256?: string;
}

interface Failure {
  readonly url: string;
  readonly error: RemoteError;
  /** When it failed (the clock of the cache) and the sha256 the download was checked against. */
  readonly at: number;
  readonly expected: string | undefined;
}

/** A download whose sha256 did not match is not tried again for this long (50 machines, one bad ISO). */
const MISMATCH_HOLD_MS = 60_000;

/** The on-disk cache of remote boot files. */
export class RemoteCache {
  readonly dir: string;
  readonly #o: RemoteCacheOptions;
  readonly #log: RemoteLog;
  readonly #now: () => number;
  readonly #index: CacheIndex;
  readonly #abort = new AbortController();
  /** First downloads (and re-downloads after a sha256 change), by key. */
  readonly #downloads = new Map<string, Download>();
  /** Background revalidations (and the replacement downloads they start), by key. */
  readonly #revalidations = new Map<string, { download: Download; task: Promise<void> }>();
  /** Open readers per key (held file or download): never evicted while > 0. */
  readonly #inUse = new Map<string, number>();
  /** Open readers per download (for files too large to keep). */
  readonly #readers = new Map<Download, number>();
  readonly #transient = new Set<Download>();
  readonly #failures = new Map<string, Failure>();
  readonly #staleLogged = new Set<string>();
  readonly #tasks = new Set<Promise<unknown>>();
  #evicting: Promise<void> = Promise.resolve();
  #partSeq = 0;
  #closed = false;

  private constructor(opts: RemoteCacheOptions, index: CacheIndex, log: RemoteLog) {
    this.#o = opts;
    this.dir = opts.dir;
    this.#index = index;
    this.#log = log;
    this.#now = opts.now ?? Date.now;
  }

  /** Opens (creating) the cache directory: loads its index, removes leftovers, evicts down to maxBytes. */
  static async create(opts: RemoteCacheOptions): Promise<RemoteCache> {
    const log = opts.log ?? getLogger(["pypxe", "remote"]);
    const index = await CacheIndex.load(opts.dir, log, opts.indexFlushMs ?? 1000);
    const cache = new RemoteCache(opts, index, log);
    await cache.#evict(0);
    return cache;
  }

  /** Bytes held by complete files. */
  get totalBytes(): number {
    return this.#index.totalBytes;
  }

  /**
   * Opens `url` for reading: the held file, or the shared download (started if none). Resolves once the
   * origin's response head is in (`size` known when announced); rejects with a RemoteError for a refused
   * scheme, an origin error (404, 500, unreachable, timeout, redirect loop) or a failing cache directory.
   */
  async open(url: string, opts: RemoteOpenOptions = {}): Promise<RemoteFile> {
    if (this.#closed) throw new RemoteError("closed", url, `${displayUrl(url)}: the remote cache is closed`);
    let href: string;
    try {
      href = checkRemoteUrl(url).href;
    } catch (err) {
      throw new RemoteError("scheme", url, errText(err));
    }
    const expected = opts.sha256?.toLowerCase();
    if (expected !== undefined && !/^[0-9a-f]{64}$/.test(expected)) {
      throw new RemoteError(
        "mismatch",
        href,
        `${displayUrl(href)}: sha256 ${JSON.stringify(opts.sha256)} is not 64 hex digits`,
      );
    }
    const key = remoteKey(href);
    const failed = this.#failures.get(key);
    if (
      failed !== undefined && failed.error.code === "mismatch" && failed.expected === expected &&
      this.#now() - failed.at < MISMATCH_HOLD_MS && !this.#downloads.has(key)
    ) {
      throw failed.error;
    }
    const entry = this.#index.get(key);
    if (
      !this.#downloads.has(key) && entry !== undefined &&
      (expected === undefined || entry.sha256 === expected)
    ) {
      const held = await this.#openHeld(entry, expected);
      if (held !== null) return held;
    }
    return await this.#join(key, href, expected);
  }

  /** Every held file, download in progress and last failure. */
  list(): RemoteEntryInfo[] {
    const now = this.#now();
    const out = this.#index.entries().map((e) => heldInfo(e, now));
    for (const [key, d] of this.#downloads) {
      if (d.state === "connecting" || d.state === "receiving") out.push(downloadInfo(key, d, false));
    }
    for (const [key, r] of this.#revalidations) {
      if (r.download.state === "receiving") out.push(downloadInfo(key, r.download, true));
    }
    for (const [key, f] of this.#failures) {
      if (this.#index.get(key) === undefined && !this.#downloads.has(key)) {
        out.push(failedInfo(key, f.url, f.error));
      }
    }
    return out;
  }

  /**
   * Fetches every URL into the cache (`pypxe cache fetch`), `concurrency` at a time (default 2), calling
   * `onProgress` about every `progressMs` (default 250) while a download runs and once at its end. Never
   * rejects: each URL gets a result.
   */
  async fetchAll(
    refs: readonly (string | RemoteRef)[],
    onProgress: (p: FetchProgress) => void = () => {},
    opts: { concurrency?: number; progressMs?: number } = {},
  ): Promise<FetchResult[]> {
    const results: FetchResult[] = new Array(refs.length);
    let next = 0;
    const worker = async () => {
      // bounded: one pass per URL
      while (next < refs.length) {
        const i = next++;
        const ref = typeof refs[i] === "string" ? { url: refs[i] as string } : refs[i] as RemoteRef;
        results[i] = await this.#fetchOne(ref, onProgress, opts.progressMs ?? 250);
      }
    };
    const workers = Math.max(1, Math.min(opts.concurrency ?? 2, refs.length));
    await Promise.all(Array.from({ length: workers }, worker));
    return results;
  }

  /** Waits until no download or revalidation is running (bounded: 1,000 rounds). */
  async idle(): Promise<void> {
    for (let round = 0; round < 1000 && this.#tasks.size > 0; round++) {
      await Promise.allSettled([...this.#tasks]);
    }
    await this.#evicting;
  }

  /** Stops every download (their readers get "closed" errors), waits for them and writes the index. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#abort.abort();
    await this.idle();
    await this.#index.flush();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  #finalPath(key: string): string {
    return join(this.dir, key);
  }

  #newPartPath(key: string): string {
    return join(this.dir, `${key}.${++this.#partSeq}.part`);
  }

  #track<T>(task: Promise<T>): void {
    const t = task.finally(() => this.#tasks.delete(t));
    t.catch(() => {}); // each task reports its own failure
    this.#tasks.add(t);
  }

  /** A reader of the held file of `entry`, or null when its file vanished (the entry is dropped). */
  async #openHeld(entry: IndexEntry, expected: string | undefined): Promise<RemoteFile | null> {
    const key = entry.key;
    this.#use(key, 1);
    let file: Deno.FsFile;
    try {
      file = await Deno.open(this.#finalPath(key));
    } catch (err) {
      this.#use(key, -1);
      this.#log.warn(
        `the cached copy of ${displayUrl(entry.url)} is gone (${errText(err)}); fetching it again`,
      );
      await this.#index.delete(key);
      return null;
    }
    entry.lastUsedAt = this.#now();
    this.#index.touch();
    this.#maybeRevalidate(entry);
    const path = this.#finalPath(key);
    return new RemoteFile({
      url: entry.url,
      key,
      progress: heldProgress(entry.size),
      file,
      expectedSha256: expected,
      meta: () => ({ path, etag: entry.etag, lastModified: entry.lastModified, sha256: entry.sha256 }),
      release: () => this.#release(key, null),
    });
  }

  /** A reader of the running download of `key`, started if none runs. */
  async #join(key: string, url: string, expected: string | undefined): Promise<RemoteFile> {
    let download = this.#downloads.get(key);
    // a finished download too large to keep may already have lost its file: start another
    if (download === undefined || this.#transient.has(download)) {
      download = this.#startDownload(key, url, expected);
    }
    const d = download;
    this.#use(key, 1);
    this.#readers.set(d, (this.#readers.get(d) ?? 0) + 1);
    let file: Deno.FsFile;
    try {
      await d.ready;
      file = await this.#openDownloaded(d, key);
    } catch (err) {
      this.#release(key, d);
      throw err;
    }
    return new RemoteFile({
      url,
      key,
      progress: d,
      file,
      expectedSha256: expected,
      meta: () => ({
        path: d.state === "complete" && !this.#transient.has(d) ? this.#finalPath(key) : null,
        etag: d.etag,
        lastModified: d.lastModified,
        sha256: d.sha256,
      }),
      release: () => this.#release(key, d),
    });
  }

  /** The `.part` of a download, or its final file if it completed (and was renamed) meanwhile. */
  async #openDownloaded(d: Download, key: string): Promise<Deno.FsFile> {
    try {
      return await Deno.open(d.partPath);
    } catch (err) {
      if (!(err instanceof Deno.errors.NotFound)) throw err;
      // the .part is gone: renamed into place (the download is storing or stored it) or removed after a
      // failure; the download's end says which (a small file can finish before its first reader opens it)
      await d.done.catch(() => {});
      if (d.state === "complete") return await Deno.open(this.#finalPath(key));
      if (d.state === "failed") throw d.error;
      throw err;
    }
  }

  #startDownload(key: string, url: string, expected: string | undefined): Download {
    const d = new Download({
      ...this.#downloadOptions(key, url),
      expectedSha256: expected,
      onVerified: (done) => this.#store(key, done),
    });
    this.#downloads.set(key, d);
    this.#track(
      d.done.then(
        () => this.#failures.delete(key),
        (err: RemoteError) => this.#failures.set(key, { url, error: err, at: this.#now(), expected }),
      ).finally(() => {
        if (this.#downloads.get(key) === d) this.#downloads.delete(key);
        this.#dropTransient(d);
      }),
    );
    return d;
  }

  #downloadOptions(key: string, url: string) {
    return {
      url,
      partPath: this.#newPartPath(key),
      timeoutMs: this.#o.timeoutMs ?? 30_000,
      maxRedirects: this.#o.maxRedirects ?? 5,
      maxRetries: this.#o.maxRetries ?? 5,
      retryDelayMs: this.#o.retryDelayMs ?? 500,
      signal: this.#abort.signal,
      log: this.#log,
      openWriter: this.#o.openWriter ?? openFileWriter,
      onStart: (size: number | undefined) => {
        if (size !== undefined && size <= this.#o.maxBytes) this.#scheduleEvict(size);
      },
    };
  }

  /** Makes a verified download the held copy of `key` (or marks it transient when too large). */
  async #store(key: string, d: Download): Promise<void> {
    const size = d.received;
    if (size > this.#o.maxBytes) {
      this.#transient.add(d);
      this.#log.info(
        `${displayUrl(d.url)} (${formatSize(size)}) is larger than the cache (${
          formatSize(this.#o.maxBytes)
        }): served to its readers, not kept`,
      );
      return;
    }
    try {
      await Deno.rename(d.partPath, this.#finalPath(key));
    } catch (err) {
      throw new RemoteError(
        "write",
        d.url,
        `${displayUrl(d.url)}: cannot move ${d.partPath} into place: ${errText(err)}`,
      );
    }
    const now = this.#now();
    await this.#index.set({
      url: d.url,
      key,
      size,
      sha256: d.sha256!,
      verified: d.expectedSha256 !== undefined,
      etag: d.etag,
      lastModified: d.lastModified,
      fetchedAt: now,
      checkedAt: now,
      lastUsedAt: now,
    });
    this.#staleLogged.delete(key);
    this.#scheduleEvict(0);
  }

  /** Starts a background revalidation of `entry` when due (never for a sha256-pinned file). */
  #maybeRevalidate(entry: IndexEntry): void {
    const now = this.#now();
    const due = now - entry.checkedAt >= (this.#o.revalidateMs ?? 3_600_000);
    if (entry.verified || !due || this.#revalidations.has(entry.key) || this.#closed) return;
    entry.checkedAt = now; // one revalidation per period, whatever its outcome
    this.#index.touch();
    const download = new Download({
      ...this.#downloadOptions(entry.key, entry.url),
      conditional: { etag: entry.etag, lastModified: entry.lastModified },
      quietFailure: true,
      onVerified: (done) => this.#store(entry.key, done),
    });
    const task = this.#revalidate(entry, download).finally(() => {
      this.#revalidations.delete(entry.key);
      this.#dropTransient(download);
    });
    this.#revalidations.set(entry.key, { download, task });
    this.#track(task);
  }

  async #revalidate(entry: IndexEntry, download: Download): Promise<void> {
    try {
      if (!await download.ready) {
        this.#log.debug(`${displayUrl(entry.url)} not modified at the origin`);
        this.#staleLogged.delete(entry.key);
        return;
      }
      this.#log.info(`${displayUrl(entry.url)} changed at the origin; fetching the new version`);
      await download.done;
    } catch (err) {
      if (err instanceof RemoteError && err.code === "closed") return;
      if (this.#staleLogged.has(entry.key)) return;
      this.#staleLogged.add(entry.key);
      const hours = ((this.#now() - entry.fetchedAt) / 3_600_000).toFixed(1);
      this.#log.warn(
        `cannot revalidate ${displayUrl(entry.url)} (${
          errText(err)
        }); serving the cached copy fetched ${hours} h ago`,
      );
    }
  }

  #use(key: string, delta: number): void {
    const n = (this.#inUse.get(key) ?? 0) + delta;
    if (n > 0) this.#inUse.set(key, n);
    else this.#inUse.delete(key);
  }

  #release(key: string, d: Download | null): void {
    this.#use(key, -1);
    if (d !== null) {
      const n = (this.#readers.get(d) ?? 1) - 1;
      if (n > 0) this.#readers.set(d, n);
      else this.#readers.delete(d);
      this.#dropTransient(d);
    }
    if (this.#index.totalBytes > this.#o.maxBytes) this.#scheduleEvict(0);
  }

  /** Removes the `.part` of a finished download too large to keep once no reader holds it. */
  #dropTransient(d: Download): void {
    if (!this.#transient.has(d) || this.#readers.has(d) || d.state !== "complete") return;
    this.#transient.delete(d);
    this.#track(removePart(d.partPath, this.#log));
  }

  #scheduleEvict(extra: number): void {
    this.#evicting = this.#evicting.then(() => this.#evict(extra));
    this.#track(this.#evicting);
  }

  /** Evicts least recently used idle files until the held bytes plus `extra` fit in maxBytes. */
  async #evict(extra: number): Promise<void> {
    let total = this.#index.totalBytes + extra;
    if (total <= this.#o.maxBytes) return;
    const idle = this.#index.entries()
      .filter((e) =>
        !this.#inUse.has(e.key) && !this.#downloads.has(e.key) && !this.#revalidations.has(e.key)
      )
      .sort((a, b) => a.lastUsedAt - b.lastUsedAt);
    for (const e of idle) {
      if (total <= this.#o.maxBytes) break;
      try {
        await Deno.remove(this.#finalPath(e.key));
      } catch (err) {
        if (!(err instanceof Deno.errors.NotFound)) {
          this.#log.warn(`cannot evict ${displayUrl(e.url)}: ${errText(err)}`);
          continue;
        }
      }
      await this.#index.delete(e.key);
      total -= e.size;
      this.#log.info(`evicted ${displayUrl(e.url)} (${formatSize(e.size)}, least recently used)`);
    }
  }

  async #fetchOne(
    ref: RemoteRef,
    onProgress: (p: FetchProgress) => void,
    progressMs: number,
  ): Promise<FetchResult> {
    const url = ref.url;
    let file: RemoteFile;
    try {
      file = await this.open(url, { sha256: ref.sha256 });
    } catch (err) {
      onProgress({ url, state: "failed", received: 0, size: undefined, error: errText(err) });
      return { url, ok: false, error: errText(err) };
    }
    const cached = file.complete;
    const timer = setInterval(
      () => onProgress({ url, state: "downloading", received: file.received, size: file.size }),
      progressMs,
    );
    try {
      await file.done;
      await this.#revalidations.get(file.key)?.task; // a held copy that changed upstream: the new one
      onProgress({ url, state: "complete", received: file.received, size: file.size });
      const entry = this.#index.get(file.key);
      return {
        url,
        ok: true,
        size: file.size,
        sha256: entry?.sha256 ?? file.sha256 ?? undefined,
        cached,
        kept: entry !== undefined,
      };
    } catch (err) {
      onProgress({ url, state: "failed", received: file.received, size: file.size, error: errText(err) });
      return { url, ok: false, error: errText(err) };
    } finally {
      clearInterval(timer);
      file.close();
    }
  }
}
