/**
 * One request to an HTTP origin, for the remote-file cache: redirects followed by hand (bounded, loops
 * named, never to a non-HTTP scheme), a deadline for the response head, an idle deadline per body chunk,
 * and every failure as a {@linkcode RemoteError} whose message names the URL and the reason.
 * @module
 */
import { errText } from "../errors.ts";
import { VERSION } from "../version.ts";
import { checkRemoteUrl, displayUrl, RemoteUrlError } from "./remote_url.ts";

/** Why a remote file could not be fetched or served. */
export type RemoteErrorCode =
  | "scheme" // not http(s), also as a redirect target
  | "status" // the origin answered 4xx/5xx (see `status`)
  | "network" // the origin cannot be reached, or the connection broke
  | "timeout" // no response head, or no body bytes, within the timeout
  | "redirects" // too many redirects, or a loop
  | "short" // the body ended before Content-Length and the rest cannot be had
  | "changed" // the origin's file changed in the middle of a download
  | "mismatch" // the bytes do not have the configured sha256
  | "write" // the cache file could not be written (disk full, permissions)
  | "closed"; // the cache is shutting down

/** The one error type of remote files: a code, the URL, and the HTTP status when there was one. */
export class RemoteError extends Error {
  /** Creates the error; `message` already names the URL. */
  constructor(
    readonly code: RemoteErrorCode,
    readonly url: string,
    message: string,
    readonly status?: number,
  ) {
    super(message);
    this.name = "RemoteError";
  }
}

/** True for failures a resume may get past: broken connections, timeouts, short bodies, 5xx. */
export function isRetryable(err: unknown): boolean {
  if (!(err instanceof RemoteError)) return false;
  if (err.status !== undefined) return err.status >= 500;
  return err.code === "network" || err.code === "timeout" || err.code === "short";
}

/** What {@linkcode requestOrigin} sends. */
export interface OriginRequest {
  readonly url: string;
  /** Extra request headers (Range, If-Range, If-None-Match...). */
  readonly headers?: Readonly<Record<string, string>>;
  /** Deadline for each response head and, later, between body chunks (ms). */
  readonly timeoutMs: number;
  /** Redirects followed before giving up. */
  readonly maxRedirects: number;
  /** Aborts the request and its body (the cache closing). */
  readonly signal?: AbortSignal;
}

/** A response head from the origin, its body still to read through {@linkcode OriginResponse.next}. */
export interface OriginResponse {
  readonly status: number;
  readonly headers: Headers;
  /** The URL that answered (after redirects). */
  readonly url: string;
  /** The next body chunk, null at the end; rejects with a RemoteError (timeout, network). */
  next(): Promise<Uint8Array | null>;
  /** Drops the rest of the body and the connection. */
  cancel(): void;
}

const REDIRECTS = new Set([301, 302, 303, 307, 308]);

/**
 * GETs `req.url`, following redirects itself. Resolves with any 2xx, 304 or 416 head; rejects with a
 * RemoteError for other statuses, unreachable origins, timeouts and redirect trouble.
 */
export async function requestOrigin(req: OriginRequest): Promise<OriginResponse> {
  const seen = [req.url];
  let url = req.url;
  // bounded: at most maxRedirects + 1 requests
  for (let hop = 0;; hop++) {
    const res = await fetchHead(url, req);
    if (!REDIRECTS.has(res.response.status)) return checked(req, url, res);
    res.cancel();
    const location = res.response.headers.get("location");
    if (location === null) {
      throw new RemoteError(
        "status",
        req.url,
        `${displayUrl(url)}: redirect ${res.response.status} without a Location`,
        res.response.status,
      );
    }
    const next = new URL(location, url).href;
    try {
      checkRemoteUrl(next, `${displayUrl(url)} redirects to`);
    } catch (err) {
      throw new RemoteError("scheme", req.url, err instanceof RemoteUrlError ? err.message : errText(err));
    }
    if (seen.includes(next)) {
      const chain = [...seen, next].map(displayUrl).join(" -> ");
      throw new RemoteError("redirects", req.url, `redirect loop: ${chain}`);
    }
    if (hop >= req.maxRedirects) {
      throw new RemoteError(
        "redirects",
        req.url,
        `${displayUrl(req.url)}: more than ${req.maxRedirects} redirects (last to ${displayUrl(next)})`,
      );
    }
    seen.push(next);
    url = next;
  }
}

interface Head {
  response: Response;
  controller: AbortController;
  cancel(): void;
}

async function fetchHead(url: string, req: OriginRequest): Promise<Head> {
  const controller = new AbortController();
  const onAbort = () => controller.abort();
  req.signal?.addEventListener("abort", onAbort, { once: true });
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    controller.abort();
  }, req.timeoutMs);
  const cancel = () => {
    req.signal?.removeEventListener("abort", onAbort);
    controller.abort();
  };
  try {
    const response = await fetch(url, {
      redirect: "manual",
      signal: controller.signal,
      headers: { "accept-encoding": "identity", "user-agent": `pypxe/${VERSION}`, ...req.headers },
    });
    return { response, controller, cancel };
  } catch (err) {
    cancel();
    if (req.signal?.aborted) {
      throw new RemoteError("closed", req.url, `${displayUrl(url)}: cancelled (the cache is closing)`);
    }
    if (timedOut) {
      throw new RemoteError(
        "timeout",
        req.url,
        `${displayUrl(url)}: no answer from the origin within ${req.timeoutMs} ms`,
      );
    }
    throw new RemoteError("network", req.url, `${displayUrl(url)}: cannot reach the origin: ${errText(err)}`);
  } finally {
    clearTimeout(timer);
  }
}

function checked(req: OriginRequest, url: string, head: Head): OriginResponse {
  const { response, controller } = head;
  const original = req.url;
  const status = response.status;
  if (!(status >= 200 && status < 300) && status !== 304 && status !== 416) {
    head.cancel();
    const reason = response.statusText ? ` ${response.statusText}` : "";
    throw new RemoteError(
      "status",
      original,
      `${displayUrl(url)}: the origin answered ${status}${reason}`,
      status,
    );
  }
  const reader = response.body?.getReader() ?? null;
  let finished = reader === null;
  return {
    status,
    headers: response.headers,
    url,
    cancel() {
      if (!finished) reader?.cancel().catch(() => {}); // the connection is being dropped on purpose
      finished = true;
      head.cancel();
    },
    async next() {
      if (finished || reader === null) return null;
      let timer: ReturnType<typeof setTimeout> | undefined;
      let timedOut = false;
      const idle = new Promise<never>((_, reject) => {
        timer = setTimeout(() => {
          timedOut = true;
          controller.abort();
          reject(
            new RemoteError(
              "timeout",
              original,
              `${displayUrl(url)}: no body bytes from the origin for ${req.timeoutMs} ms`,
            ),
          );
        }, req.timeoutMs);
      });
      try {
        const { value, done } = await Promise.race([reader.read(), idle]);
        if (done) {
          finished = true;
          head.cancel();
          return null;
        }
        return value;
      } catch (err) {
        finished = true;
        head.cancel();
        if (err instanceof RemoteError) throw err;
        if (timedOut) {
          throw new RemoteError(
            "timeout",
            original,
            `${displayUrl(url)}: no body bytes from the origin for ${req.timeoutMs} ms`,
          );
        }
        if (req.signal?.aborted) {
          throw new RemoteError("closed", original, `${displayUrl(url)}: cancelled (the cache is closing)`);
        }
        throw new RemoteError(
          "network",
          original,
          `${displayUrl(url)}: the connection broke: ${errText(err)}`,
        );
      } finally {
        clearTimeout(timer);
      }
    },
  };
}
