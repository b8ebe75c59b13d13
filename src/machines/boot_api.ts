/**
 * The boot API client (`--boot-api URL`): asks an HTTP API what one machine boots, with pixiecore's
 * contract (danderson/netboot, pixiecore/README.api.md and `apibooter` in pixiecore/booters.go), so a
 * server written for pixiecore's API mode drives pypxe unchanged.
 *
 * The request is pixiecore's `GET <URL>/v1/boot/<mac>` (a slash is added to URL when missing; the MAC
 * lower case, colon-separated, as Go prints a `net.HardwareAddr`). pixiecore sends no query string;
 * pypxe adds `arch` (`bios`, `efi32`, `efi64`, `efi-arm64`, `efi-http`, `rpi`), `uuid`, `client`
 * (`pxe`, `ipxe`, `http`) and `ip`, each only when known, which a pixiecore API server ignores.
 * `http://user:pass@host/` becomes a Basic `Authorization` header, as Go's client does.
 *
 * The answer ({@linkcode BootApiAnswer}):
 * - 200 with a valid body: `profile` (see boot_api_body.ts for the field and cmdline rules);
 * - any other final status (redirects are followed), or a 200 whose body is malformed, not JSON or
 *   larger than `maxBodyBytes`: `not-ours`, pixiecore's "ignore this machine" (in proxy mode no PXE
 *   answer, in full mode an address without a boot file). A malformed 200 is logged as a warning;
 * - no answer (connection refused, DNS, TLS, reset, timeout) or no free request slot: `unreachable`, on
 *   which pypxe falls back to groups/default. pixiecore ignores the machine here; pypxe boots it as if
 *   there were no API. Logged as a warning at most once a minute, with a count of the rest.
 *
 * Never blocking DHCP:
 * - `lookup()` never throws and settles within `timeoutMs` (plus a timer tick) whatever the API does: one
 *   timer aborts the request (connect, headers and body alike) and settles the answer even if the fetch
 *   ignores the abort. Each client's lookup is its own promise; a DHCP server awaits it per packet, never
 *   in its receive loop, so one slow answer delays only that machine.
 * - Answers are cached per machine (`cacheMs`, default 5 s, for `profile` and `not-ours`;
 *   `unreachableCacheMs`, default 5 s or the timeout if longer, for `unreachable`), so a DISCOVER/REQUEST pair or a PXE-then-iPXE
 *   chain asks once. The cache key is the MAC with arch, client and uuid (the API may answer by them); the
 *   IP is sent but not part of the key, as it changes during one DORA.
 * - Concurrent lookups with the same key share one request.
 * - At most `maxConcurrent` requests (default 32) are in flight. Beyond that a lookup answers
 *   `unreachable` (reason `busy`) at once instead of queueing: a queue would make a DHCP flood of new MACs
 *   wait behind each other, and the fallback answer is the right one for a machine the API cannot be asked
 *   about in time. Busy answers are not cached.
 *
 * @example
 * ```ts
 * const api = new BootApi({ url: "http://cmdb.lan:8080/pxe" });
 * const answer = await api.lookup({ mac: "52:54:00:12:34:56", arch: "efi64", client: "pxe" });
 * if (answer.kind === "profile") console.log(answer.profile.boot);
 * await api.close();
 * ```
 * @module
 */
import { getLogger, type Logger } from "@logtape/logtape";
import { errText } from "../errors.ts";
import { literal, LogThrottle, type ThrottledLevel } from "../log_throttle.ts";
import { VERSION } from "../version.ts";
import { BootApiBodyError, bootApiPrefix, parseBootApiBody } from "./boot_api_body.ts";
import type { MachineFacts, Profile } from "./model.ts";

export { BOOT_API_PROFILE, BootApiBodyError, parseBootApiBody } from "./boot_api_body.ts";
export type { ParseBootApiBodyOptions } from "./boot_api_body.ts";

/** What the boot API said about one machine. */
export type BootApiAnswer =
  | { readonly kind: "profile"; readonly profile: Profile }
  /** The API does not boot this machine (non-200 or malformed 200); `reason` e.g. `HTTP 404`. */
  | { readonly kind: "not-ours"; readonly reason: string }
  /** No answer: fall back to groups/default. `reason` e.g. `timed out after 2000 ms`, `busy: ...`. */
  | { readonly kind: "unreachable"; readonly reason: string };

/** Options of {@linkcode BootApi}. */
export interface BootApiOptions {
  /** The API URL as given to `--boot-api` (pixiecore's `api` argument): http(s), no query. */
  readonly url: string;
  /** Whole-request timeout (connect, headers, body); default 2000 ms (pixiecore: 5 s). */
  readonly timeoutMs?: number;
  /** How long a `profile` or `not-ours` answer is reused; default 5000 ms; 0 turns caching off. */
  readonly cacheMs?: number;
  /** How long an `unreachable` answer is reused; default 1000 ms. */
  readonly unreachableCacheMs?: number;
  /** Requests in flight at most; beyond that lookups answer `unreachable` (busy); default 32. */
  readonly maxConcurrent?: number;
  /** Largest accepted body; default 1 MiB. */
  readonly maxBodyBytes?: number;
  /** Cached answers kept at most (the oldest go first); default 10,000. */
  readonly maxCacheEntries?: number;
  /** Rewrites cmdline URLs (see {@linkcode parseBootApiBody}); default: unchanged. */
  readonly proxyUrl?: (url: string) => string;
  /** Clock for cache expiry, in ms; default `performance.now`. */
  readonly now?: () => number;
  /** Replaces `fetch`, for unit tests of the client's own logic; real tests use a real server. */
  readonly fetch?: typeof fetch;
  /** Where lines go; default LogTape `["pypxe", "machines"]`. */
  readonly log?: Pick<Logger, ThrottledLevel>;
  /** Window of the warning throttle; default 60 s. */
  readonly logWindowMs?: number;
}

/** Counters since start, for /status and benchmarks. */
export interface BootApiStats {
  /** Requests sent to the API. */
  readonly requests: number;
  /** Lookups answered from the cache. */
  readonly cacheHits: number;
  /** Lookups that joined a request already in flight. */
  readonly joined: number;
  /** Lookups answered `unreachable` because `maxConcurrent` requests were in flight. */
  readonly busy: number;
  /** Request outcomes. */
  readonly profiles: number;
  readonly notOurs: number;
  readonly unreachable: number;
  /** Requests in flight now. */
  readonly inFlight: number;
  /** Cached answers now (expired ones included until touched). */
  readonly cached: number;
}

interface CacheEntry {
  readonly answer: BootApiAnswer;
  readonly expires: number;
}

class BodyTooLarge extends Error {}

/** The pixiecore-compatible boot API client. Call {@linkcode BootApi.close} when the service stops. */
export class BootApi {
  readonly #apiUrl: string;
  readonly #prefix: string;
  /** The API URL without credentials, for log lines. */
  readonly #shown: string;
  readonly #headers: Record<string, string>;
  readonly #timeoutMs: number;
  readonly #cacheMs: number;
  readonly #unreachableCacheMs: number;
  readonly #maxConcurrent: number;
  readonly #maxBodyBytes: number;
  readonly #maxCacheEntries: number;
  readonly #proxyUrl?: (url: string) => string;
  readonly #now: () => number;
  readonly #fetch: typeof fetch;
  readonly #client?: Deno.HttpClient;
  readonly #log: Pick<Logger, ThrottledLevel>;
  readonly #throttle: LogThrottle;
  readonly #cache = new Map<string, CacheEntry>();
  readonly #inFlight = new Map<string, Promise<BootApiAnswer>>();
  readonly #aborts = new Set<AbortController>();
  #closed = false;
  #stats = { requests: 0, cacheHits: 0, joined: 0, busy: 0, profiles: 0, notOurs: 0, unreachable: 0 };

  /** Validates the URL (throws a TypeError naming the problem: a start-up error) and sets up the client. */
  constructor(opts: BootApiOptions) {
    let url: URL;
    try {
      url = new URL(opts.url);
    } catch {
      throw new TypeError(`boot API URL ${JSON.stringify(opts.url)} is not a URL`);
    }
    if (url.protocol !== "http:" && url.protocol !== "https:") {
      throw new TypeError(
        `boot API URL ${JSON.stringify(opts.url)}: only http:// and https:// are supported`,
      );
    }
    if (url.search !== "" || url.hash !== "") {
      throw new TypeError(`boot API URL ${JSON.stringify(opts.url)}: no query or fragment, please`);
    }
    this.#apiUrl = opts.url;
    this.#prefix = bootApiPrefix(opts.url);
    this.#shown = this.#prefix.slice(0, -"v1".length);
    this.#headers = { accept: "application/json", "user-agent": `pypxe/${VERSION}` };
    if (url.username !== "" || url.password !== "") {
      const user = decodeURIComponent(url.username);
      const pass = decodeURIComponent(url.password);
      const bytes = new TextEncoder().encode(`${user}:${pass}`);
      this.#headers.authorization = `Basic ${btoa(String.fromCharCode(...bytes))}`;
    }
    this.#timeoutMs = positive(opts.timeoutMs, 2000, "timeoutMs");
    this.#cacheMs = nonNegative(opts.cacheMs, 5000, "cacheMs");
    // at least the timeout: a hung API costs a machine one timeout, not one per DHCP step
    this.#unreachableCacheMs = nonNegative(
      opts.unreachableCacheMs,
      Math.max(5000, this.#timeoutMs),
      "unreachableCacheMs",
    );
    this.#maxConcurrent = positive(opts.maxConcurrent, 32, "maxConcurrent");
    this.#maxBodyBytes = positive(opts.maxBodyBytes, 1 << 20, "maxBodyBytes");
    this.#maxCacheEntries = positive(opts.maxCacheEntries, 10_000, "maxCacheEntries");
    this.#proxyUrl = opts.proxyUrl;
    this.#now = opts.now ?? (() => performance.now());
    if (opts.fetch !== undefined) {
      this.#fetch = opts.fetch;
    } else {
      // an own pool, so close() drops its kept-alive connections
      this.#client = Deno.createHttpClient({ poolIdleTimeout: 30_000 });
      this.#fetch = fetch;
    }
    this.#log = opts.log ?? getLogger(["pypxe", "machines"]);
    this.#throttle = new LogThrottle({ log: this.#log, windowMs: opts.logWindowMs ?? 60_000 });
  }

  /** The request URL for a machine, e.g. `http://api/v1/boot/aa:bb:cc:dd:ee:ff?arch=efi64&client=pxe`. */
  requestUrl(facts: MachineFacts): string | undefined {
    const mac = normalizeMac(facts.mac);
    if (mac === undefined) return undefined;
    const query = new URLSearchParams();
    if (facts.arch !== undefined) query.set("arch", facts.arch);
    if (facts.uuid !== undefined) query.set("uuid", facts.uuid);
    if (facts.client !== undefined) query.set("client", facts.client);
    if (facts.ip !== undefined) query.set("ip", facts.ip);
    const search = query.toString();
    return `${this.#prefix}/boot/${mac}${search === "" ? "" : `?${search}`}`;
  }

  /** What the API says about this machine; never throws, settles within the timeout. */
  lookup(facts: MachineFacts): Promise<BootApiAnswer> {
    try {
      return this.#lookup(facts);
    } catch (err) {
      return Promise.resolve(this.#unreachable(facts.mac, `internal error: ${errText(err)}`));
    }
  }

  /** The cached answer for this machine, if one is still fresh (no request, no promise). */
  cached(facts: MachineFacts): BootApiAnswer | undefined {
    const mac = normalizeMac(facts.mac);
    return mac === undefined ? undefined : this.#fresh(cacheKey(mac, facts));
  }

  /** Forgets cached answers: of one machine (any facts), or all. */
  invalidate(mac?: string): void {
    if (mac === undefined) {
      this.#cache.clear();
      return;
    }
    const normal = normalizeMac(mac);
    if (normal === undefined) return;
    for (const key of [...this.#cache.keys()]) if (key.startsWith(`${normal}|`)) this.#cache.delete(key);
  }

  /** Counters since start. */
  stats(): BootApiStats {
    return { ...this.#stats, inFlight: this.#aborts.size, cached: this.#cache.size };
  }

  /** Aborts requests in flight (their lookups answer `unreachable`), reports pending log counts. */
  async close(): Promise<void> {
    this.#closed = true;
    for (const abort of this.#aborts) abort.abort(new Error("boot API client closed"));
    await Promise.allSettled([...this.#inFlight.values()]);
    this.#throttle.close();
    this.#client?.close();
  }

  #lookup(facts: MachineFacts): Promise<BootApiAnswer> {
    const mac = normalizeMac(facts.mac);
    if (mac === undefined) {
      return Promise.resolve({
        kind: "unreachable",
        reason: `${JSON.stringify(facts.mac)} is not a MAC address`,
      });
    }
    const key = cacheKey(mac, facts);
    const hit = this.#fresh(key);
    if (hit !== undefined) {
      this.#stats.cacheHits++;
      return Promise.resolve(hit);
    }
    const pending = this.#inFlight.get(key);
    if (pending !== undefined) {
      this.#stats.joined++;
      return pending;
    }
    if (this.#closed) return Promise.resolve({ kind: "unreachable", reason: "boot API client closed" });
    if (this.#aborts.size >= this.#maxConcurrent) {
      this.#stats.busy++;
      const reason = `busy: ${this.#aborts.size} requests in flight`;
      this.#throttle.note(
        "busy",
        "warn",
        () =>
          literal(
            `boot API ${this.#shown}: ${this.#aborts.size} requests in flight (maxConcurrent), ` +
              `${mac} and others fall back to groups/default`,
          ),
        `boot API ${this.#shown} busy`,
      );
      return Promise.resolve({ kind: "unreachable", reason });
    }
    const abort = new AbortController();
    this.#aborts.add(abort);
    const request = this.#ask(mac, this.requestUrl(facts)!, abort).then((answer) => {
      this.#remember(key, answer);
      return answer;
    }).catch((err): BootApiAnswer => ({ kind: "unreachable", reason: `internal error: ${errText(err)}` }))
      .finally(() => {
        this.#aborts.delete(abort);
        this.#inFlight.delete(key);
      });
    this.#inFlight.set(key, request);
    return request;
  }

  /** One request with its deadline; always resolves. Counts and logs the outcome. */
  async #ask(mac: string, url: string, abort: AbortController): Promise<BootApiAnswer> {
    this.#stats.requests++;
    const started = this.#now();
    const deadline = Promise.withResolvers<BootApiAnswer>();
    const timer = setTimeout(() => {
      // settle first: the answer must not wait for the fetch to notice the abort
      deadline.resolve({ kind: "unreachable", reason: `timed out after ${this.#timeoutMs} ms` });
      abort.abort(new Error("timed out"));
    }, this.#timeoutMs);
    let answer: BootApiAnswer;
    try {
      answer = await Promise.race([this.#fetchAnswer(mac, url, abort.signal), deadline.promise]);
    } finally {
      clearTimeout(timer);
    }
    const ms = Math.round(this.#now() - started);
    this.#log.debug(literal(`boot API GET ${url} -> ${describe(answer)} (${ms} ms)`));
    if (answer.kind === "profile") this.#stats.profiles++;
    else if (answer.kind === "not-ours") this.#stats.notOurs++;
    else if (!this.#closed) this.#unreachable(mac, answer.reason);
    return answer;
  }

  /** The request and its answer, without counting or logging `unreachable` (the caller does). */
  async #fetchAnswer(mac: string, url: string, signal: AbortSignal): Promise<BootApiAnswer> {
    let response: Response;
    try {
      const init: RequestInit & { client?: Deno.HttpClient } = { signal, headers: this.#headers };
      if (this.#client !== undefined) init.client = this.#client;
      response = await this.#fetch(url, init);
    } catch (err) {
      return { kind: "unreachable", reason: signal.aborted ? abortReason(signal) : errText(err) };
    }
    try {
      if (response.status !== 200) {
        await response.body?.cancel();
        return { kind: "not-ours", reason: `HTTP ${response.status}` };
      }
      const text = await readCapped(response, this.#maxBodyBytes);
      const profile = parseBootApiBody(text, this.#apiUrl, { proxyUrl: this.#proxyUrl });
      return { kind: "profile", profile };
    } catch (err) {
      if (err instanceof BootApiBodyError || err instanceof BodyTooLarge) {
        const reason = err instanceof BodyTooLarge ? err.message : `malformed answer: ${err.message}`;
        this.#throttle.note(
          "malformed",
          "warn",
          () =>
            literal(
              `boot API ${this.#shown}: ${reason} for ${mac}; as in pixiecore that machine is not booted`,
            ),
          `boot API ${this.#shown} malformed answers`,
        );
        return { kind: "not-ours", reason };
      }
      const reason = signal.aborted ? abortReason(signal) : `reading the answer: ${errText(err)}`;
      return { kind: "unreachable", reason };
    }
  }

  /** Counts and logs (throttled) an `unreachable` answer. */
  #unreachable(mac: string, reason: string): BootApiAnswer {
    this.#stats.unreachable++;
    this.#throttle.note(
      "unreachable",
      "warn",
      () =>
        literal(
          `boot API ${this.#shown} unreachable (${reason}) for ${mac}; ` +
            `falling back to groups/default (this is logged once a minute)`,
        ),
      `boot API ${this.#shown} unreachable`,
    );
    return { kind: "unreachable", reason };
  }

  #fresh(key: string): BootApiAnswer | undefined {
    const entry = this.#cache.get(key);
    if (entry === undefined) return undefined;
    if (entry.expires > this.#now()) return entry.answer;
    this.#cache.delete(key);
    return undefined;
  }

  #remember(key: string, answer: BootApiAnswer): void {
    if (this.#closed) return;
    const ttl = answer.kind === "unreachable" ? this.#unreachableCacheMs : this.#cacheMs;
    if (ttl <= 0) return;
    this.#cache.delete(key);
    for (const oldest of this.#cache.keys()) {
      if (this.#cache.size < this.#maxCacheEntries) break;
      this.#cache.delete(oldest);
    }
    this.#cache.set(key, { answer, expires: this.#now() + ttl });
  }
}

/**
 * A MAC address as pixiecore puts it in the path (lower case, colon-separated), from any common spelling
 * (`AA-BB-..`, `aabb.ccdd.eeff`, `aabbccddeeff`); undefined when it is not 1..20 bytes of hex.
 */
export function normalizeMac(mac: string): string | undefined {
  const hex = mac.replace(/[:\-.]/g, "").toLowerCase();
  if (!/^(?:[0-9a-f]{2}){1,20}$/.test(hex)) return undefined;
  return hex.match(/../g)!.join(":");
}

function cacheKey(mac: string, facts: MachineFacts): string {
  return `${mac}|${facts.arch ?? ""}|${facts.client ?? ""}|${facts.uuid ?? ""}`;
}

/** The body as text, refusing (and cancelling) it beyond `max` bytes. */
async function readCapped(response: Response, max: number): Promise<string> {
  const declared = Number(response.headers.get("content-length") ?? "");
  if (Number.isFinite(declared) && declared > max) {
    await response.body?.cancel();
    throw new BodyTooLarge(`answer of ${declared} bytes is larger than the ${max}-byte limit`);
  }
  if (response.body === null) return "";
  const reader = response.body.getReader();
  const chunks: Uint8Array[] = [];
  let total = 0;
  // each read returns at least one byte, so the loop ends by max + one chunk
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    total += value.byteLength;
    if (total > max) {
      await reader.cancel();
      throw new BodyTooLarge(`answer larger than the ${max}-byte limit`);
    }
    chunks.push(value);
  }
  const body = new Uint8Array(total);
  let at = 0;
  for (const chunk of chunks) {
    body.set(chunk, at);
    at += chunk.byteLength;
  }
  return new TextDecoder().decode(body);
}

function abortReason(signal: AbortSignal): string {
  return signal.reason instanceof Error ? signal.reason.message : "aborted";
}

function describe(answer: BootApiAnswer): string {
  if (answer.kind === "profile") return `profile (${answer.profile.boot.kind})`;
  return `${answer.kind} (${answer.reason})`;
}

function positive(value: number | undefined, fallback: number, name: string): number {
  const n = value ?? fallback;
  if (!(n > 0) || !Number.isFinite(n)) throw new TypeError(`boot API ${name} must be a positive number`);
  return n;
}

function nonNegative(value: number | undefined, fallback: number, name: string): number {
  const n = value ?? fallback;
  if (!(n >= 0) || !Number.isFinite(n)) throw new TypeError(`boot API ${name} must be 0 or more`);
  return n;
}
