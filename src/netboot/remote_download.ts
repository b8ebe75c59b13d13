/**
 * One upstream download shared by every reader of a URL: the body is appended to a `.part` file as it
 * arrives (readers read that file by offset while it grows, see `remote_file.ts`), hashed on the way, and
 * verified against the expected sha256 before it counts as complete.
 *
 * A broken connection, a timeout, a 5xx or a body shorter than its Content-Length is resumed with
 * `Range: bytes=N-` (and `If-Range` with the strong ETag or Last-Modified), up to `maxRetries` failures in
 * a row without progress, with doubling back-off. An origin that ignores Range (200 instead of 206) is read
 * again from the start and its first N bytes are skipped: they are already on disk, so no reader's offset
 * moves and the hash stays incremental. If its validators differ from the first response the file changed
 * upstream: the download fails ("changed"), since readers may already hold bytes of the old version; the
 * next open starts afresh. A 416 on a resume means the origin has no more bytes: the body was short, fatal.
 * @module
 */
import { createHash, type Hash } from "node:crypto";
import { errText } from "../errors.ts";
import { formatSize } from "../format.ts";
import { isRetryable, type OriginResponse, RemoteError, requestOrigin } from "./remote_fetch.ts";
import { displayUrl } from "./remote_url.ts";

/** Where remote-cache lines go (a LogTape logger fits). */
export interface RemoteLog {
  debug(message: string): void;
  info(message: string): void;
  warn(message: string): void;
  error(message: string): void;
}

/** The part of a file a download writes to (`Deno.FsFile` fits; tests inject failing ones). */
export interface RemoteWriter {
  write(bytes: Uint8Array): Promise<number>;
  close(): void;
}

/** Creates (truncating) the file at `path` for writing. */
export type OpenWriter = (path: string) => Promise<RemoteWriter>;

/** The default {@linkcode OpenWriter}: a new or truncated file. */
export const openFileWriter: OpenWriter = (path) =>
  Deno.open(path, { write: true, create: true, truncate: true });

/** Options of {@linkcode Download}. */
export interface DownloadOptions {
  readonly url: string;
  readonly partPath: string;
  /** The sha256 (lower-case hex) the bytes must have; a mismatch fails the download. */
  readonly expectedSha256?: string;
  /** Validators of a copy already held: the first request is conditional and a 304 ends it. */
  readonly conditional?: { readonly etag: string | null; readonly lastModified: string | null };
  readonly timeoutMs: number;
  readonly maxRedirects: number;
  readonly maxRetries: number;
  readonly retryDelayMs: number;
  readonly signal: AbortSignal;
  readonly log: RemoteLog;
  readonly openWriter: OpenWriter;
  /** Called once the first body is coming, with its announced size (to make room in the cache). */
  readonly onStart?: (size: number | undefined) => void;
  /** Called once the bytes are verified, before the download counts as complete (rename, index entry). */
  readonly onVerified: (download: Download) => Promise<void>;
  /** Log a failure at debug only (the caller reports it, e.g. as "serving stale"); default false. */
  readonly quietFailure?: boolean;
}

/** Where a download is. */
export type DownloadState = "connecting" | "receiving" | "complete" | "failed" | "not-modified";

/** Absolute cap on resumes of one download, whatever progress they make. */
const MAX_RESUMES = 100;
const MAX_BACKOFF_MS = 10_000;
/** Bytes gathered for writing before the body is read further. */
const STAGED_MAX = 4 << 20;
/** Below this many gathered bytes a write waits GATHER_MS for more (unless the body ended). */
const WRITE_MIN = 1 << 20;
const GATHER_MS = 2;

/** The shared download of one URL; it starts when constructed. */
export class Download {
  readonly url: string;
  readonly partPath: string;
  readonly expectedSha256: string | undefined;
  readonly startedAt: number = performance.now();
  state: DownloadState = "connecting";
  /** Bytes on disk, in order from 0. */
  received = 0;
  /** Total size, from Content-Length / Content-Range when announced; set at completion otherwise. */
  size: number | undefined;
  etag: string | null = null;
  lastModified: string | null = null;
  /** The sha256 of the complete bytes (lower-case hex). */
  sha256: string | null = null;
  error: RemoteError | null = null;
  /** True once the origin's body is coming (a `.part` exists); false after a 304. */
  readonly ready: Promise<boolean>;
  /** Resolves once complete (or not modified); rejects with the RemoteError that ended it. */
  readonly done: Promise<void>;
  readonly #o: DownloadOptions;
  readonly #hash: Hash = createHash("sha256");
  #wake = Promise.withResolvers<void>();
  #staged: Uint8Array[] = [];
  #stagedBytes = 0;
  #flushing: Promise<void> | null = null;
  #writeFailure: RemoteError | null = null;
  #bodyEnded = false;
  #readyResolvers = Promise.withResolvers<boolean>();

  /** Starts downloading `opts.url` into `opts.partPath`. */
  constructor(opts: DownloadOptions) {
    this.#o = opts;
    this.url = opts.url;
    this.partPath = opts.partPath;
    this.expectedSha256 = opts.expectedSha256;
    this.ready = this.#readyResolvers.promise;
    this.ready.catch(() => {}); // observed through `done` and by readers
    this.done = this.#run();
    this.done.catch(() => {}); // readers and the cache observe it; an unobserved failure is logged below
  }

  /** Resolves at the next change: more bytes, completion or failure. */
  changed(): Promise<void> {
    return this.#wake.promise;
  }

  #notify(): void {
    const wake = this.#wake;
    this.#wake = Promise.withResolvers<void>();
    wake.resolve();
  }

  async #run(): Promise<void> {
    let writer: RemoteWriter | null = null;
    try {
      let first: OriginResponse | null = await this.#request(true);
      if (first.status === 304) {
        first.cancel();
        this.state = "not-modified";
        this.#readyResolvers.resolve(false);
        return;
      }
      if (first.status !== 200) {
        first.cancel();
        throw new RemoteError(
          "status",
          this.url,
          `${displayUrl(this.url)}: the origin answered ${first.status} to a plain GET`,
          first.status,
        );
      }
      this.#takeHead(first);
      try {
        writer = await this.#o.openWriter(this.partPath);
      } catch (err) {
        first.cancel();
        throw this.#writeError(err);
      }
      this.state = "receiving";
      this.#o.onStart?.(this.size);
      this.#readyResolvers.resolve(true);
      this.#o.log.info(
        `fetching ${displayUrl(this.url)}${this.size === undefined ? "" : ` (${formatSize(this.size)})`}`,
      );
      await this.#receive(writer, first);
      first = null;
      writer.close();
      writer = null;
      this.#verify();
      await this.#o.onVerified(this);
      this.state = "complete";
    } catch (err) {
      this.#fail(err);
      if (writer !== null) closeWriter(writer);
      await removePart(this.partPath, this.#o.log);
      throw this.error;
    } finally {
      this.#notify();
    }
  }

  /** Reads bodies until the whole file is on disk, resuming after failures (bounded). */
  async #receive(writer: RemoteWriter, first: OriginResponse): Promise<void> {
    let response: OriginResponse | null = first;
    let failures = 0;
    // bounded: each pass ends the download, or counts a failure (maxRetries in a row) or a resume (MAX_RESUMES)
    for (let resume = 0;; resume++) {
      const before = this.received;
      try {
        response ??= await this.#resumeRequest();
        await this.#pump(response, writer);
        response = null;
        await this.#drain();
        if (this.size === undefined) this.size = this.received;
        if (this.received === this.size) return;
        throw new RemoteError(
          "short",
          this.url,
          `${displayUrl(this.url)}: the body ended at ${this.received} of ${this.size} bytes`,
        );
      } catch (err) {
        response?.cancel();
        response = null;
        await this.#drain(); // a failed write ends the download here, whatever broke the body
        if (this.received > before) failures = 0;
        failures++;
        if (
          !isRetryable(err) || failures > this.#o.maxRetries || resume >= MAX_RESUMES ||
          this.#o.signal.aborted
        ) {
          throw err;
        }
        const delay = Math.min(this.#o.retryDelayMs * 2 ** (failures - 1), MAX_BACKOFF_MS);
        this.#o.log.warn(
          `${
            errText(err)
          }; resuming at byte ${this.received} in ${delay} ms (attempt ${failures} of ${this.#o.maxRetries})`,
        );
        await abortableSleep(delay, this.#o.signal);
      }
    }
  }

  /** The request that continues at `received`: a Range request, or the whole file when ranges are ignored. */
  async #resumeRequest(): Promise<OriginResponse> {
    const res = await this.#request(false);
    if (res.status === 416) {
      res.cancel();
      throw new RemoteError(
        "short",
        this.url,
        `${
          displayUrl(this.url)
        }: the body was shorter than its Content-Length (${this.received} of ${this.size} bytes) and the origin has no more (416)`,
        416,
      );
    }
    if (this.received === 0) {
      this.#takeHead(res); // nothing kept yet: whatever the origin holds now is the file
      return res;
    }
    const etag = res.headers.get("etag");
    const lastModified = res.headers.get("last-modified");
    if (
      (this.etag !== null && etag !== null && etag !== this.etag) ||
      (this.lastModified !== null && lastModified !== null && lastModified !== this.lastModified)
    ) {
      res.cancel();
      throw new RemoteError(
        "changed",
        this.url,
        `${displayUrl(this.url)}: the file changed at the origin during the download`,
      );
    }
    return res;
  }

  /** Sends the first request (conditional when revalidating) or a resume (`Range`, `If-Range`). */
  #request(first: boolean): Promise<OriginResponse> {
    const headers: Record<string, string> = {};
    if (first && this.#o.conditional) {
      if (this.#o.conditional.etag) headers["if-none-match"] = this.#o.conditional.etag;
      if (this.#o.conditional.lastModified) headers["if-modified-since"] = this.#o.conditional.lastModified;
    }
    if (!first && this.received > 0) {
      headers["range"] = `bytes=${this.received}-`;
      const strongEtag = this.etag !== null && !this.etag.startsWith("W/") ? this.etag : null;
      const ifRange = strongEtag ?? this.lastModified;
      if (ifRange !== null) headers["if-range"] = ifRange;
    }
    return requestOrigin({
      url: this.url,
      headers,
      timeoutMs: this.#o.timeoutMs,
      maxRedirects: this.#o.maxRedirects,
      signal: this.#o.signal,
    });
  }

  /** Size and validators from the first response. */
  #takeHead(res: OriginResponse): void {
    this.etag = res.headers.get("etag");
    this.lastModified = res.headers.get("last-modified");
    this.size = announcedSize(res);
  }

  /** Appends one response body at `received`, skipping the bytes it repeats. */
  async #pump(res: OriginResponse, writer: RemoteWriter): Promise<void> {
    const skip = this.received - bodyStart(res);
    if (skip < 0) {
      throw new RemoteError(
        "changed",
        this.url,
        `${displayUrl(this.url)}: the origin answered a range after byte ${this.received}`,
      );
    }
    const total = announcedSize(res);
    if (total !== undefined && this.size !== undefined && total !== this.size) {
      throw new RemoteError(
        "changed",
        this.url,
        `${displayUrl(this.url)}: the size changed at the origin (${this.size} -> ${total})`,
      );
    }
    this.#bodyEnded = false;
    try {
      await this.#pumpChunks(res, writer, skip);
    } finally {
      this.#bodyEnded = true;
    }
  }

  async #pumpChunks(res: OriginResponse, writer: RemoteWriter, skip: number): Promise<void> {
    // bounded: one pass per body chunk; next() has an idle deadline
    while (true) {
      let chunk = await res.next();
      if (chunk === null) break;
      if (skip > 0) {
        const dropped = Math.min(skip, chunk.length);
        skip -= dropped;
        chunk = chunk.subarray(dropped);
        if (chunk.length === 0) continue;
      }
      if (this.size !== undefined && this.received + this.#stagedBytes + chunk.length > this.size) {
        throw new RemoteError(
          "changed",
          this.url,
          `${displayUrl(this.url)}: the origin sent more than its Content-Length`,
        );
      }
      await this.#stage(writer, chunk);
    }
  }

  /**
   * Hands a chunk to the writer: chunks arriving while a write is in flight are gathered and written
   * together (64 KiB writes cost ~10x more than 1 MiB ones), so a fast origin gets large writes and a slow
   * one still reaches readers chunk by chunk. Waits when more than STAGED_MAX bytes are gathered.
   */
  async #stage(writer: RemoteWriter, chunk: Uint8Array): Promise<void> {
    if (this.#writeFailure !== null) throw this.#writeFailure;
    this.#hash.update(chunk);
    this.#staged.push(chunk);
    this.#stagedBytes += chunk.length;
    this.#flushing ??= this.#flush(writer);
    if (this.#stagedBytes >= STAGED_MAX) await this.#drain();
  }

  /** Writes what is gathered until nothing is; never rejects (a failure is kept in #writeFailure). */
  async #flush(writer: RemoteWriter): Promise<void> {
    try {
      // bounded: every pass writes the bytes gathered so far; the pump stops gathering at STAGED_MAX
      while (this.#staged.length > 0) {
        if (this.#stagedBytes < WRITE_MIN && !this.#bodyEnded) await gatherPause();
        const parts = this.#staged;
        const n = this.#stagedBytes;
        this.#staged = [];
        this.#stagedBytes = 0;
        const bytes = parts.length === 1 ? parts[0] : concat(parts, n);
        // bounded: every pass writes at least one byte or throws
        for (let off = 0; off < n;) {
          const wrote = await writer.write(bytes.subarray(off));
          if (wrote <= 0) throw new Error("the write made no progress");
          off += wrote;
        }
        this.received += n;
        this.#notify();
      }
    } catch (err) {
      this.#writeFailure = this.#writeError(err);
      this.#staged = [];
      this.#stagedBytes = 0;
    } finally {
      this.#flushing = null;
    }
  }

  /** Waits until everything gathered is written; throws the write failure if there was one. */
  async #drain(): Promise<void> {
    await this.#flushing;
    if (this.#writeFailure !== null) throw this.#writeFailure;
  }

  #verify(): void {
    const got = this.#hash.digest("hex");
    const expected = this.expectedSha256;
    if (expected !== undefined && expected !== got) {
      throw new RemoteError(
        "mismatch",
        this.url,
        `${
          displayUrl(this.url)
        }: sha256 mismatch: expected ${expected} got ${got}; the download is discarded`,
      );
    }
    this.sha256 = got;
    this.size = this.received;
    const seconds = (performance.now() - this.startedAt) / 1000;
    this.#o.log.info(
      `${displayUrl(this.url)} ${formatSize(this.received)} in ${seconds.toFixed(1)} s` +
        (expected === undefined ? "" : " (sha256 verified)"),
    );
  }

  #writeError(err: unknown): RemoteError {
    return new RemoteError(
      "write",
      this.url,
      `${displayUrl(this.url)}: cannot write the cache file ${this.partPath}: ${errText(err)}`,
    );
  }

  #fail(err: unknown): void {
    this.error = err instanceof RemoteError
      ? err
      : new RemoteError("network", this.url, `${displayUrl(this.url)}: ${errText(err)}`);
    this.state = "failed";
    this.#readyResolvers.reject(this.error);
    const code = this.error.code;
    if (code === "closed" || this.#o.quietFailure) return this.#o.log.debug(`${this.error.message}`);
    const level = code === "mismatch" || code === "write" ? "error" : "warn";
    this.#o.log[level](`download failed: ${this.error.message}`);
  }
}

/** The total size a response announces: Content-Range's total on 206, else Content-Length (not when encoded). */
function announcedSize(res: OriginResponse): number | undefined {
  if (res.status === 206) {
    const m = /\/(\d+)\s*$/.exec(res.headers.get("content-range") ?? "");
    return m === null ? undefined : Number(m[1]);
  }
  const encoding = res.headers.get("content-encoding");
  if (encoding !== null && encoding.toLowerCase() !== "identity") return undefined;
  const length = res.headers.get("content-length");
  return length !== null && /^\d+$/.test(length) ? Number(length) : undefined;
}

/** The offset a response body starts at: Content-Range's first byte on 206, else 0. */
function bodyStart(res: OriginResponse): number {
  if (res.status !== 206) return 0;
  const m = /bytes\s+(\d+)-/.exec(res.headers.get("content-range") ?? "");
  return m === null ? 0 : Number(m[1]);
}

function closeWriter(writer: RemoteWriter): void {
  try {
    writer.close();
  } catch {
    // closing a file whose write failed may fail again; the failure is already reported
  }
}

/** Removes a discarded `.part` file; a missing one is fine, other failures are logged. */
export async function removePart(path: string, log: RemoteLog): Promise<void> {
  try {
    await Deno.remove(path);
  } catch (err) {
    if (!(err instanceof Deno.errors.NotFound)) log.warn(`cannot remove ${path}: ${errText(err)}`);
  }
}

function abortableSleep(ms: number, signal: AbortSignal): Promise<void> {
  if (signal.aborted) return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener("abort", done, { once: true });
  });
}

function concat(parts: Uint8Array[], total: number): Uint8Array {
  const out = new Uint8Array(total);
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.length;
  }
  return out;
}

function gatherPause(): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, GATHER_MS));
}
