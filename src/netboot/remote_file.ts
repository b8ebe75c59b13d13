/**
 * One reader of a remote file ({@linkcode RemoteFile}): reads by offset from its own handle on the cache
 * file while the shared download may still be filling it, waiting for bytes not yet there.
 *
 * A read never returns the last bytes of the file before the download is complete and verified: a read
 * that reaches the announced end (or, with no announced size, any read past the bytes on disk) waits for
 * completion. So a client is never handed a whole file that later turns out short or with the wrong
 * sha256: it gets an error instead (the read rejects, a stream errors, the HTTP connection is cut).
 * @module
 */
import { closeQuietly } from "../errors.ts";
import { RemoteError } from "./remote_fetch.ts";
import type { DownloadState } from "./remote_download.ts";
import { displayUrl } from "./remote_url.ts";

/** What a reader follows: a download in progress (`Download` fits) or a complete file. */
export interface FileProgress {
  readonly state: DownloadState;
  readonly received: number;
  readonly size: number | undefined;
  readonly error: RemoteError | null;
  readonly done: Promise<void>;
  /** Resolves at the next change (more bytes, completion, failure). */
  changed(): Promise<void>;
}

/** The progress of a file already complete in the cache. */
export function heldProgress(size: number): FileProgress {
  return {
    state: "complete",
    received: size,
    size,
    error: null,
    done: Promise.resolve(),
    changed: () => Promise.resolve(),
  };
}

/** Where the complete file is and what the origin said about it. */
export interface RemoteMeta {
  /** The complete cache file (null while downloading, or for a file too large to keep). */
  readonly path: string | null;
  readonly etag: string | null;
  /** The origin's Last-Modified header text. */
  readonly lastModified: string | null;
  /** sha256 hex of the bytes, once complete. */
  readonly sha256: string | null;
}

/** What the cache hands {@linkcode RemoteFile}. */
export interface RemoteFileInit {
  readonly url: string;
  readonly key: string;
  readonly progress: FileProgress;
  /** This reader's own handle on the cache file (`.part` while downloading). */
  readonly file: Deno.FsFile;
  /** The sha256 this reader was opened with (another opener may have started the download). */
  readonly expectedSha256?: string;
  readonly meta: () => RemoteMeta;
  /** Called once when the reader is closed. */
  readonly release: () => void;
}

/** Options of {@linkcode RemoteFile.stream}. */
export interface RemoteStreamOptions {
  /** Close the RemoteFile when the stream ends, fails or is cancelled. */
  readonly close?: boolean;
  /** Bytes per chunk; default 1 MiB. */
  readonly chunkBytes?: number;
}

/** A remote file opened for reading; call {@linkcode RemoteFile.close} (or `using`) when done. */
export class RemoteFile {
  /** The URL as opened. */
  readonly url: string;
  /** sha256 hex of the URL: the cache file's name. */
  readonly key: string;
  /** Resolves when the bytes are complete and verified; rejects with the RemoteError that ended the download. */
  readonly done: Promise<void>;
  readonly #init: RemoteFileInit;
  readonly #file: Deno.FsFile;
  #position = 0;
  #chain: Promise<unknown> = Promise.resolve();
  #closed = false;

  /** Used by the cache; open files with `RemoteCache.open`. */
  constructor(init: RemoteFileInit) {
    this.#init = init;
    this.#file = init.file;
    this.url = init.url;
    this.key = init.key;
    this.done = init.progress.done.then(() => this.#checkOwnHash());
    this.done.catch(() => {}); // readers see the failure through read(); awaiting `done` rethrows it
  }

  /** Total size: announced by the origin (Content-Length), or the complete size; undefined until known. */
  get size(): number | undefined {
    return this.#init.progress.size;
  }

  /** Bytes available so far (all of them once complete). */
  get received(): number {
    return this.#init.progress.received;
  }

  /** True once every byte is on disk and verified. */
  get complete(): boolean {
    return this.#init.progress.state === "complete" && this.#ownHashError() === null;
  }

  /** The complete cache file (for the fast file-serving paths), else null; see also {@linkcode openHeld}. */
  get path(): string | null {
    return this.complete ? this.#init.meta().path : null;
  }

  /** The origin's ETag. */
  get etag(): string | null {
    return this.#init.meta().etag;
  }

  /** The origin's Last-Modified, when it sent one. */
  get mtime(): Date | null {
    const text = this.#init.meta().lastModified;
    const ms = text === null ? NaN : Date.parse(text);
    return Number.isNaN(ms) ? null : new Date(ms);
  }

  /** sha256 hex of the bytes, once complete. */
  get sha256(): string | null {
    return this.complete ? this.#init.meta().sha256 : null;
  }

  /**
   * A new handle on the complete cache file for the fast serving paths (the caller closes it), or null
   * while downloading, for a file not kept, or when the path was replaced since this reader opened it
   * (a newer version after revalidation): then read with {@linkcode read} / {@linkcode stream}.
   */
  async openHeld(): Promise<Deno.FsFile | null> {
    const path = this.path;
    if (path === null) return null;
    const mine = await this.#file.stat();
    let other: Deno.FsFile;
    try {
      other = await Deno.open(path);
    } catch (err) {
      if (err instanceof Deno.errors.NotFound) return null;
      throw err;
    }
    const theirs = await other.stat();
    if (mine.ino !== theirs.ino || mine.dev !== theirs.dev || theirs.size !== this.size) {
      other.close();
      return null;
    }
    return other;
  }

  /**
   * Fills `buf` with the bytes at `offset`, waiting for bytes still downloading. Returns the count read:
   * `buf.length`, less only at the end of the file, 0 at or past the end. Rejects when the download failed
   * (404, cut for good, sha256 mismatch, disk full...) or the reader is closed.
   */
  read(offset: number, buf: Uint8Array): Promise<number> {
    const result = this.#chain.then(() => this.#read(offset, buf));
    this.#chain = result.catch(() => {}); // the next read runs after this one, whatever it did
    return result;
  }

  /**
   * The bytes from `start` to `end` (exclusive; default: the end of the file) as a pull stream, for HTTP
   * bodies and Range responses. Cancelling it does not stop the shared download.
   */
  stream(start = 0, end?: number, opts: RemoteStreamOptions = {}): ReadableStream<Uint8Array> {
    const chunk = opts.chunkBytes ?? 1 << 20;
    let pos = start;
    const finish = () => {
      if (opts.close) this.close();
    };
    return new ReadableStream<Uint8Array>({
      pull: async (controller) => {
        try {
          const limit = end ?? this.size ?? Infinity;
          const want = Math.min(chunk, limit - pos);
          if (want <= 0) {
            controller.close();
            return finish();
          }
          const buf = new Uint8Array(want);
          const n = await this.read(pos, buf);
          if (n > 0) controller.enqueue(n === want ? buf : buf.subarray(0, n));
          pos += n;
          if (n < want) {
            if (end !== undefined && pos < end) {
              throw new RemoteError(
                "short",
                this.url,
                `${displayUrl(this.url)}: ended at byte ${pos}, before ${end}`,
              );
            }
            controller.close();
            finish();
          }
        } catch (err) {
          controller.error(err);
          finish();
        }
      },
      cancel: () => finish(),
    }, { highWaterMark: 0 });
  }

  /** Releases the reader now; its file handle closes once a read in progress ends. Idempotent. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#init.release(); // at once, so the cache's accounting (eviction, idle()) sees it
    this.#chain.then(() => closeQuietly(this.#file));
  }

  [Symbol.dispose](): void {
    this.close();
  }

  async #read(offset: number, buf: Uint8Array): Promise<number> {
    const p = this.#init.progress;
    // bounded in time by the download's deadlines: every pass returns, throws, or waits for a change
    while (true) {
      if (this.#closed) {
        throw new RemoteError("closed", this.url, `${displayUrl(this.url)}: read after close`);
      }
      if (p.state === "failed") throw p.error!;
      if (p.state === "complete") {
        const ownError = this.#ownHashError();
        if (ownError !== null) throw ownError;
        const size = p.size ?? p.received;
        if (offset >= size) return 0;
        const n = Math.min(buf.length, size - offset);
        await this.#readAt(offset, buf.subarray(0, n));
        return n;
      }
      const need = offset + buf.length;
      const beforeEnd = p.size === undefined || need < p.size;
      if (beforeEnd && p.received >= need) {
        await this.#readAt(offset, buf);
        return buf.length;
      }
      await p.changed();
    }
  }

  /** Reads exactly `buf.length` bytes at `offset` from the cache file (they are known to be on disk). */
  async #readAt(offset: number, buf: Uint8Array): Promise<void> {
    if (this.#position !== offset) {
      await this.#file.seek(offset, Deno.SeekMode.Start);
      this.#position = offset;
    }
    let filled = 0;
    // bounded: every pass reads at least one byte or throws
    while (filled < buf.length) {
      const n = await this.#file.read(buf.subarray(filled));
      if (n === null || n === 0) {
        this.#position = -1;
        throw new RemoteError(
          "short",
          this.url,
          `${displayUrl(this.url)}: the cache file ended at byte ${offset + filled}`,
        );
      }
      filled += n;
    }
    this.#position = offset + filled;
  }

  #checkOwnHash(): void {
    const err = this.#ownHashError();
    if (err !== null) throw err;
  }

  /** A mismatch between this reader's sha256 and the bytes another opener's download produced. */
  #ownHashError(): RemoteError | null {
    const expected = this.#init.expectedSha256;
    const got = this.#init.meta().sha256;
    if (expected === undefined || got === null || got === expected) return null;
    return new RemoteError(
      "mismatch",
      this.url,
      `${displayUrl(this.url)}: sha256 mismatch: expected ${expected} got ${got}`,
    );
  }
}
