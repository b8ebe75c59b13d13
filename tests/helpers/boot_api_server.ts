/**
 * A fake pixiecore-compatible boot API for tests, e2e runs and benchmarks: answers
 * `GET <prefix>v1/boot/<mac>` per MAC (status, JSON or raw body, a streamed huge body, a delay), counts
 * requests and the most in flight at once, and serves static files (kernels, initrds) at other paths.
 *
 * ```ts
 * const api = await startFakeBootApi({ answers: { "52:54:00:00:00:01": { json: { kernel: "/k" } } } });
 * // ... new BootApi({ url: api.url }) ...
 * await api.close();
 * ```
 *
 * As a process (e.g. inside a network namespace): `deno run -A tests/helpers/boot_api_server.ts
 * '{"hostname": "10.0.0.1", "port": 0, "answers": {...}, "files": {"/kernel": "/path/on/disk"}}'` prints
 * `ready PORT` and serves until SIGTERM/SIGINT or EOF on stdin.
 * @module
 */

/** How the fake API answers one MAC. */
export interface FakeAnswer {
  /** HTTP status; default 200. */
  readonly status?: number;
  /** Body, serialised as JSON. */
  readonly json?: unknown;
  /** Body as it is (wins over `json`), e.g. malformed JSON. */
  readonly body?: string | Uint8Array<ArrayBuffer>;
  /** Streams this many filler bytes without a content-length (wins over `body` and `json`). */
  readonly streamBytes?: number;
  /** Waits this long before answering (even if the client gave up); cut short when the server closes. */
  readonly delayMs?: number;
  /** Extra response headers. */
  readonly headers?: Readonly<Record<string, string>>;
}

/** One request the fake API received on its boot endpoint. */
export interface FakeRequest {
  /** The MAC path segment as sent. */
  readonly mac: string;
  readonly path: string;
  /** Query parameters as sent. */
  readonly query: Readonly<Record<string, string>>;
  readonly headers: Readonly<Record<string, string>>;
  /** performance.now() at arrival. */
  readonly at: number;
}

/** Options of {@linkcode startFakeBootApi}. */
export interface FakeBootApiOptions {
  /** Default 127.0.0.1. */
  readonly hostname?: string;
  /** Default 0 (any free port). */
  readonly port?: number;
  /** Path before `v1/boot/`, with slashes at both ends; default `/`. */
  readonly prefix?: string;
  /** Answers by MAC (any spelling; matched lower case, colon-separated). */
  readonly answers?: Readonly<Record<string, FakeAnswer>>;
  /** The answer for other MACs; default 404. */
  readonly fallback?: FakeAnswer;
  /** Static files by path: bytes or text (in-process), or a file path to read (from a process spec). */
  readonly files?: Readonly<Record<string, string | Uint8Array<ArrayBuffer>>>;
  /** In a process spec: `files` values are paths on disk (else they are the contents). */
  readonly filesFromDisk?: boolean;
}

/** A running fake boot API. */
export interface FakeBootApi {
  /** The URL to give `--boot-api` (`http://127.0.0.1:PORT<prefix>`). */
  readonly url: string;
  readonly port: number;
  /** Every boot request so far, in arrival order. */
  readonly requests: FakeRequest[];
  /** Boot requests so far, for one MAC or all. */
  count(mac?: string): number;
  /** Requests being answered now, and the most at once so far. */
  inFlight(): number;
  maxInFlight(): number;
  /** Sets (or with undefined removes) the answer for one MAC. */
  answer(mac: string, answer: FakeAnswer | undefined): void;
  /** Sets the answer for other MACs. */
  setFallback(answer: FakeAnswer): void;
  /** Stops delays, closes the listener, waits for handlers. */
  close(): Promise<void>;
}

const NOT_FOUND: FakeAnswer = { status: 404, body: "not ours\n" };

/** Starts the fake API on loopback (by default) and returns once it listens. */
export async function startFakeBootApi(opts: FakeBootApiOptions = {}): Promise<FakeBootApi> {
  const hostname = opts.hostname ?? "127.0.0.1";
  const prefix = opts.prefix ?? "/";
  if (!prefix.startsWith("/") || !prefix.endsWith("/")) {
    throw new TypeError("prefix must start and end with /");
  }
  const answers = new Map<string, FakeAnswer>();
  for (const [mac, answer] of Object.entries(opts.answers ?? {})) answers.set(macKey(mac), answer);
  let fallback = opts.fallback ?? NOT_FOUND;
  const files = new Map(Object.entries(opts.files ?? {}));
  const requests: FakeRequest[] = [];
  const closing = new AbortController();
  let active = 0;
  let most = 0;
  const listening = Promise.withResolvers<Deno.NetAddr>();
  const bootPath = `${prefix}v1/boot/`;

  const server = Deno.serve({
    hostname,
    port: opts.port ?? 0,
    onListen: (addr) => listening.resolve(addr as Deno.NetAddr),
  }, async (request) => {
    const url = new URL(request.url);
    if (!url.pathname.startsWith(bootPath)) return await serveFile(files, url.pathname, opts.filesFromDisk);
    const mac = decodeURIComponent(url.pathname.slice(bootPath.length));
    requests.push({
      mac,
      path: url.pathname,
      query: Object.fromEntries(url.searchParams),
      headers: Object.fromEntries(request.headers),
      at: performance.now(),
    });
    active++;
    most = Math.max(most, active);
    try {
      const answer = answers.get(macKey(mac)) ?? fallback;
      if (answer.delayMs !== undefined && answer.delayMs > 0) {
        await sleep(answer.delayMs, closing.signal);
      }
      return respond(answer);
    } finally {
      active--;
    }
  });
  const addr = await listening.promise;
  const host = addr.hostname.includes(":") ? `[${addr.hostname}]` : addr.hostname;
  return {
    url: `http://${host}:${addr.port}${prefix}`,
    port: addr.port,
    requests,
    count: (mac) =>
      mac === undefined ? requests.length : requests.filter((r) => macKey(r.mac) === macKey(mac)).length,
    inFlight: () => active,
    maxInFlight: () => most,
    answer: (mac, answer) => {
      if (answer === undefined) answers.delete(macKey(mac));
      else answers.set(macKey(mac), answer);
    },
    setFallback: (answer) => {
      fallback = answer;
    },
    close: async () => {
      closing.abort();
      await server.shutdown();
    },
  };
}

function macKey(mac: string): string {
  return mac.toLowerCase().replace(/[-.]/g, ":");
}

function respond(answer: FakeAnswer): Response {
  const headers = new Headers(answer.headers);
  const status = answer.status ?? 200;
  if (answer.streamBytes !== undefined) {
    let left = answer.streamBytes;
    const chunk = new Uint8Array(64 * 1024).fill(0x20);
    const body = new ReadableStream<Uint8Array>({
      pull(controller) {
        if (left <= 0) return controller.close();
        const n = Math.min(left, chunk.length);
        left -= n;
        controller.enqueue(chunk.slice(0, n));
      },
    });
    return new Response(body, { status, headers });
  }
  if (answer.body !== undefined) return new Response(answer.body, { status, headers });
  if (answer.json !== undefined) {
    headers.set("content-type", "application/json");
    return new Response(JSON.stringify(answer.json), { status, headers });
  }
  return new Response(null, { status, headers });
}

async function serveFile(
  files: Map<string, string | Uint8Array<ArrayBuffer>>,
  path: string,
  fromDisk = false,
): Promise<Response> {
  const file = files.get(path);
  if (file === undefined) return new Response("no such file\n", { status: 404 });
  if (fromDisk && typeof file === "string") return new Response(await Deno.readFile(file));
  return new Response(file);
}

/** Resolves after `ms`, or as soon as `signal` aborts. */
function sleep(ms: number, signal: AbortSignal): Promise<void> {
  if (signal.aborted) return Promise.resolve();
  const { promise, resolve } = Promise.withResolvers<void>();
  const done = () => {
    clearTimeout(timer);
    signal.removeEventListener("abort", done);
    resolve();
  };
  const timer = setTimeout(done, ms);
  signal.addEventListener("abort", done, { once: true });
  return promise;
}

if (import.meta.main) {
  const spec = JSON.parse(Deno.args[0] ?? "{}") as FakeBootApiOptions;
  const api = await startFakeBootApi({ filesFromDisk: true, ...spec });
  console.log(`ready ${api.port}`);
  const stop = Promise.withResolvers<void>();
  for (const sig of ["SIGTERM", "SIGINT"] as const) Deno.addSignalListener(sig, () => stop.resolve());
  (async () => {
    const buf = new Uint8Array(64);
    // EOF on stdin (the parent went away) stops the server too
    while ((await Deno.stdin.read(buf)) !== null) { /* ignore input */ }
    stop.resolve();
  })();
  await stop.promise;
  await api.close();
  console.log("stopped");
  Deno.exit(0);
}
