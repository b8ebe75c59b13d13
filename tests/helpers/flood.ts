/**
 * A connection flood for the hostile-load tests (issue 18): opens `count` TCP connections to HOST:PORT
 * (at most `concurrency` connects in flight), sends each a partial payload (half an HTTP request head,
 * or nothing for NBD), holds them, and counts how many the server closed (end of stream) or reset. It
 * never reconnects, so it is bounded in connections and, by `maxSeconds`, in time.
 *
 * It runs as its own process so that its open-file limit can be raised above the server's
 * (`sh -c 'ulimit -n 65536 && exec deno run -A tests/helpers/flood.ts ...'`; {@linkcode startFlood} does
 * that, and splits a count beyond one process's limit over several processes). Output: JSON lines on
 * stdout, `{"event":"progress",...}` every `progressMs`, one `{"event":"connected",...}` when every
 * connect has finished, and a last `{"event":"summary",...}`.
 * It ends when its stdin closes, after `maxSeconds`, or (with `--exit-when-all-closed`) once the server
 * has closed every connection.
 *
 * ```sh
 * deno run -A tests/helpers/flood.ts --host 10.0.0.1 --port 80 --count 22000 --payload http \
 *   --max-seconds 60 --ignore-stdin
 * ```
 * @module
 */
import { parseArgs } from "node:util";

/** Half an HTTP request head: the final blank line never comes. */
export const HTTP_PARTIAL = "GET / HTTP/1.1\r\nHost: x\r\n";

/** What the flood does. */
export interface FloodOptions {
  readonly host: string;
  readonly port: number;
  /** Connections opened in all (never more). */
  readonly count: number;
  /** `http` ({@linkcode HTTP_PARTIAL}), `none` (connect only: an NBD client that never handshakes), or literal text. */
  readonly payload?: string;
  /** Connects in flight at most (default 256). */
  readonly concurrency?: number;
  /** A connect that has not completed by then is abandoned and counted (default 3000 ms). */
  readonly connectTimeoutMs?: number;
  /** The flood ends after this long whatever happens (default 120 s). */
  readonly maxSeconds?: number;
  /** Interval of the progress lines (default 1000 ms; 0: none). */
  readonly progressMs?: number;
  /** End once every connect finished and the server closed every connection. */
  readonly exitWhenAllClosed?: boolean;
}

/** Counters of a flood; each progress, `connected` and `summary` line carries them. */
export interface FloodStats {
  readonly event: "progress" | "connected" | "summary";
  /** Milliseconds since the flood started. */
  readonly t: number;
  /** Connects started. */
  readonly attempted: number;
  /** Connects that completed. */
  readonly connected: number;
  /** Connects refused or failed (ECONNREFUSED, EADDRNOTAVAIL, ...). */
  readonly connectFailed: number;
  /** Connects still pending after `connectTimeoutMs` (the server's accept queue was full). */
  readonly connectTimedOut: number;
  /** Connections held open now. */
  readonly open: number;
  /** The most connections held at once. */
  readonly peakOpen: number;
  /** Connections the server ended: `closedEof` + `closedReset`. */
  readonly closed: number;
  /** Ended with a FIN (read returned null). */
  readonly closedEof: number;
  /** Ended with an error (ECONNRESET: the server closed with our payload unread). */
  readonly closedReset: number;
  /** Connections on which the server sent bytes (an error status, an NBD greeting). */
  readonly withData: number;
  /** Milliseconds from connect to close, over the closed connections (null when none closed). */
  readonly heldMs: { min: number; p50: number; p95: number; max: number } | null;
  /** Every connect has finished (connected, failed or timed out). */
  readonly doneConnecting: boolean;
  /** Error names seen on connect or read, with counts. */
  readonly errors: Record<string, number>;
  /** This process's open-file limit (the smallest of the processes' when added up). */
  readonly fileLimit?: number;
  /** Why the flood ended (summary only). */
  readonly reason?: StopReason;
}

/** Why a flood ended. */
export type StopReason = "stdin" | "max-seconds" | "all-closed" | "stopped";

function payloadBytes(payload: string | undefined): Uint8Array {
  if (payload === undefined || payload === "http") return new TextEncoder().encode(HTTP_PARTIAL);
  if (payload === "none" || payload === "") return new Uint8Array(0);
  return new TextEncoder().encode(payload);
}

/** The soft open-file limit of this process (from /proc/self/limits), when it can be read. */
const FILE_LIMIT = (() => {
  try {
    const m = /^Max open files\s+(\d+)/m.exec(Deno.readTextFileSync("/proc/self/limits"));
    return m === null ? undefined : Number(m[1]);
  } catch {
    return undefined;
  }
})();

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((sorted.length - 1) * p))];
}

/** A flood running in this process (the script's engine; tests use {@linkcode startFlood}). */
export class Flood {
  readonly #opts: FloodOptions;
  readonly #payload: Uint8Array;
  readonly #started = performance.now();
  readonly #conns = new Set<Deno.TcpConn>();
  readonly #held: number[] = [];
  readonly #errors: Record<string, number> = {};
  readonly #stopped: Promise<StopReason>;
  #stop!: (reason: StopReason) => void;
  #attempted = 0;
  #connected = 0;
  #connectFailed = 0;
  #connectTimedOut = 0;
  #closedEof = 0;
  #closedReset = 0;
  #withData = 0;
  #peakOpen = 0;
  #pending = 0;
  #doneConnecting = false;
  #ending = false;

  /** Prepares the flood; {@linkcode run} starts it. */
  constructor(opts: FloodOptions) {
    this.#opts = opts;
    this.#payload = payloadBytes(opts.payload);
    this.#stopped = new Promise((resolve) => (this.#stop = resolve));
    this.#stopped.then(() => (this.#ending = true));
  }

  /** The counters now. */
  stats(event: FloodStats["event"] = "progress"): FloodStats {
    const sorted = [...this.#held].sort((a, b) => a - b);
    return {
      event,
      t: Math.round(performance.now() - this.#started),
      attempted: this.#attempted,
      connected: this.#connected,
      connectFailed: this.#connectFailed,
      connectTimedOut: this.#connectTimedOut,
      open: this.#conns.size,
      peakOpen: this.#peakOpen,
      closed: this.#closedEof + this.#closedReset,
      closedEof: this.#closedEof,
      closedReset: this.#closedReset,
      withData: this.#withData,
      heldMs: sorted.length === 0 ? null : {
        min: Math.round(sorted[0]),
        p50: Math.round(percentile(sorted, 0.5)),
        p95: Math.round(percentile(sorted, 0.95)),
        max: Math.round(sorted[sorted.length - 1]),
      },
      doneConnecting: this.#doneConnecting,
      errors: { ...this.#errors },
      fileLimit: FILE_LIMIT,
    };
  }

  /** Ends the flood early (the summary's reason is `stopped`). */
  stop(): void {
    this.#stop("stopped");
  }

  /**
   * Opens the connections and holds them until `until` resolves, `maxSeconds` pass or (with
   * `exitWhenAllClosed`) the server closed them all; then closes what is left and returns the summary.
   */
  async run(
    opts: { until?: Promise<unknown>; onStats?: (stats: FloodStats) => void } = {},
  ): Promise<FloodStats> {
    const emit = opts.onStats ?? (() => {});
    opts.until?.then(() => this.#stop("stdin"));
    const timer = setTimeout(() => this.#stop("max-seconds"), (this.#opts.maxSeconds ?? 120) * 1000);
    const ended = this.#stopped.finally(() => clearTimeout(timer));
    const progressMs = this.#opts.progressMs ?? 1000;
    const ticker = progressMs > 0 ? setInterval(() => emit(this.stats("progress")), progressMs) : undefined;
    try {
      await Promise.race([this.#connectAll(), ended]);
      if (!this.#ending) {
        this.#doneConnecting = true;
        emit(this.stats("connected"));
        this.#maybeAllClosed();
      }
      await ended;
    } finally {
      clearInterval(ticker);
    }
    const summary = { ...this.stats("summary"), reason: await ended };
    for (const conn of this.#conns) this.#closeQuietly(conn);
    this.#conns.clear();
    return summary;
  }

  async #connectAll(): Promise<void> {
    const limit = Math.max(1, this.#opts.concurrency ?? 256);
    const workers: Promise<void>[] = [];
    for (let w = 0; w < limit; w++) {
      workers.push((async () => {
        while (!this.#ending && this.#attempted < this.#opts.count) {
          this.#attempted++;
          await this.#openOne();
        }
      })());
    }
    await Promise.all(workers);
  }

  async #openOne(): Promise<void> {
    const timeoutMs = this.#opts.connectTimeoutMs ?? 3000;
    let conn: Deno.TcpConn;
    this.#pending++;
    try {
      conn = await Deno.connect({
        hostname: this.#opts.host,
        port: this.#opts.port,
        signal: AbortSignal.timeout(timeoutMs),
      });
    } catch (err) {
      const name = err instanceof Error ? err.name : String(err);
      if (name === "TimeoutError" || name === "AbortError") this.#connectTimedOut++;
      else this.#connectFailed++;
      this.#count(`connect ${name}`);
      return;
    } finally {
      this.#pending--;
    }
    if (this.#ending) {
      this.#closeQuietly(conn);
      return;
    }
    this.#connected++;
    this.#conns.add(conn);
    this.#peakOpen = Math.max(this.#peakOpen, this.#conns.size);
    const since = performance.now();
    try {
      if (this.#payload.length > 0) await conn.write(this.#payload);
    } catch (err) {
      this.#ended(conn, since, err);
      return;
    }
    // held: the read resolves only when the server ends the connection
    void this.#hold(conn, since);
  }

  async #hold(conn: Deno.TcpConn, since: number): Promise<void> {
    const buf = new Uint8Array(512);
    let sawData = false;
    try {
      for (;;) {
        const n = await conn.read(buf);
        if (n === null) break;
        if (!sawData) {
          sawData = true;
          this.#withData++;
        }
      }
    } catch (err) {
      this.#ended(conn, since, err);
      return;
    }
    this.#ended(conn, since, null);
  }

  #ended(conn: Deno.TcpConn, since: number, err: unknown): void {
    if (!this.#conns.delete(conn)) return; // closed by us at the end: not the server's doing
    this.#held.push(performance.now() - since);
    if (err === null) this.#closedEof++;
    else {
      this.#closedReset++;
      this.#count(`read ${err instanceof Error ? err.name : String(err)}`);
    }
    this.#closeQuietly(conn);
    this.#maybeAllClosed();
  }

  #maybeAllClosed(): void {
    if (
      this.#opts.exitWhenAllClosed && this.#doneConnecting && this.#pending === 0 && this.#conns.size === 0
    ) {
      this.#stop("all-closed");
    }
  }

  #count(kind: string): void {
    this.#errors[kind] = (this.#errors[kind] ?? 0) + 1;
  }

  #closeQuietly(conn: Deno.TcpConn): void {
    try {
      conn.close();
    } catch {
      // already closed
    }
  }
}

/** A flood running as one or more subprocesses (see {@linkcode startFlood}). */
export interface FloodProcess {
  readonly children: readonly Deno.ChildProcess[];
  /** The last stats of every process, added up (null before each has reported once). */
  latest(): FloodStats | null;
  /** Resolves with the first (added-up) stats for which `check` holds; rejects after `timeoutMs`. */
  waitFor(check: (stats: FloodStats) => boolean, timeoutMs: number): Promise<FloodStats>;
  /** Closes every flood's stdin and resolves with the added-up summary (kills after `timeoutMs`). */
  stop(timeoutMs?: number): Promise<FloodStats>;
  /** Resolves with the added-up summary once every process ended by itself (max-seconds, all closed). */
  readonly summary: Promise<FloodStats>;
}

/** The command line of the flood script for `opts`. */
export function floodArgs(opts: FloodOptions): string[] {
  const args = ["--host", opts.host, "--port", String(opts.port), "--count", String(opts.count)];
  if (opts.payload !== undefined) args.push("--payload", opts.payload);
  if (opts.concurrency !== undefined) args.push("--concurrency", String(opts.concurrency));
  if (opts.connectTimeoutMs !== undefined) args.push("--connect-timeout-ms", String(opts.connectTimeoutMs));
  if (opts.maxSeconds !== undefined) args.push("--max-seconds", String(opts.maxSeconds));
  if (opts.progressMs !== undefined) args.push("--progress-ms", String(opts.progressMs));
  if (opts.exitWhenAllClosed) args.push("--exit-when-all-closed");
  return args;
}

/**
 * Adds up the stats of several flood processes: counts are summed (so `peakOpen` is an upper bound),
 * `heldMs.min`/`max` are exact, `p50`/`p95` are the largest of the processes' (an upper bound).
 */
export function addStats(parts: readonly FloodStats[]): FloodStats {
  const sum = (key: keyof FloodStats) => parts.reduce((n, p) => n + (p[key] as number), 0);
  const held = parts.map((p) => p.heldMs).filter((h) => h !== null);
  const errors: Record<string, number> = {};
  for (const p of parts) for (const [k, n] of Object.entries(p.errors)) errors[k] = (errors[k] ?? 0) + n;
  const all = (event: FloodStats["event"]) => parts.every((p) => p.event === event);
  const notAllClosed = parts.find((p) => p.reason !== "all-closed");
  return {
    event: all("summary") ? "summary" : parts.every((p) => p.doneConnecting) ? "connected" : "progress",
    t: Math.max(...parts.map((p) => p.t)),
    attempted: sum("attempted"),
    connected: sum("connected"),
    connectFailed: sum("connectFailed"),
    connectTimedOut: sum("connectTimedOut"),
    open: sum("open"),
    peakOpen: sum("peakOpen"),
    closed: sum("closed"),
    closedEof: sum("closedEof"),
    closedReset: sum("closedReset"),
    withData: sum("withData"),
    heldMs: held.length === 0 ? null : {
      min: Math.min(...held.map((h) => h.min)),
      p50: Math.max(...held.map((h) => h.p50)),
      p95: Math.max(...held.map((h) => h.p95)),
      max: Math.max(...held.map((h) => h.max)),
    },
    doneConnecting: parts.every((p) => p.doneConnecting),
    errors,
    fileLimit: Math.min(...parts.map((p) => p.fileLimit ?? Infinity)),
    ...(all("summary") ? { reason: notAllClosed?.reason ?? "all-closed" } : {}),
  };
}

/** Connections one flood process opens at most: its file limit (20,000 here) minus some headroom. */
export const CONNECTIONS_PER_PROCESS = 15_000;

interface OneFlood {
  child: Deno.ChildProcess;
  summary: Promise<FloodStats>;
  closeStdin(): Promise<void>;
}

function spawnOne(
  opts: FloodOptions,
  run: { prefix?: string[]; fileLimit?: number },
  onStats: (stats: FloodStats) => void,
): OneFlood {
  const script = new URL(import.meta.url).pathname;
  const limit = run.fileLimit ?? 65536;
  // raising the hard limit needs CAP_SYS_RESOURCE, which a container's root may lack: then take the hard limit
  const argv = [
    ...(run.prefix ?? []),
    "sh",
    "-c",
    `ulimit -n ${limit} 2>/dev/null || ulimit -n "$(ulimit -Hn)"; exec "$0" "$@"`,
    Deno.execPath(),
    "run",
    "-A",
    "--no-prompt",
    script,
    ...floodArgs(opts),
  ];
  const child = new Deno.Command(argv[0], {
    args: argv.slice(1),
    env: { NO_COLOR: "1" },
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const stderr = new Response(child.stderr).text();
  const summary = (async () => {
    const decoder = new TextDecoder();
    let buf = "";
    let final: FloodStats | null = null;
    for await (const chunk of child.stdout) {
      buf += decoder.decode(chunk, { stream: true });
      let nl: number;
      while ((nl = buf.indexOf("\n")) >= 0) {
        const line = buf.slice(0, nl).trim();
        buf = buf.slice(nl + 1);
        if (line === "") continue;
        const stats = JSON.parse(line) as FloodStats;
        if (stats.event === "summary") final = stats;
        onStats(stats);
      }
    }
    const status = await child.status;
    const errText = await stderr.catch(() => "");
    if (final === null) {
      throw new Error(`flood exited with ${status.code} without a summary: ${errText.trim()}`);
    }
    return final;
  })();
  summary.catch(() => {}); // observed through stop()/waitFor()
  const writer = child.stdin.getWriter();
  let closed = false;
  return {
    child,
    summary,
    async closeStdin() {
      if (closed) return;
      closed = true;
      await writer.close().catch(() => {});
    },
  };
}

/**
 * Starts the flood as its own process(es), each with `fileLimit` open files (default 65536, else the
 * hard limit), inside whatever `prefix` runs them in (`ip netns exec NS`). A count beyond
 * {@linkcode CONNECTIONS_PER_PROCESS} is split over several processes (connects and concurrency too),
 * whose stats are added up.
 */
export function startFlood(
  opts: FloodOptions,
  run: { prefix?: string[]; fileLimit?: number; processes?: number } = {},
): FloodProcess {
  const n = Math.max(1, run.processes ?? Math.ceil(opts.count / CONNECTIONS_PER_PROCESS));
  const latest: (FloodStats | null)[] = new Array(n).fill(null);
  const waiters: { check: (s: FloodStats) => boolean; resolve: (s: FloodStats) => void }[] = [];
  const current = () => latest.every((s) => s !== null) ? addStats(latest as FloodStats[]) : null;
  const shards: OneFlood[] = [];
  for (let i = 0; i < n; i++) {
    const count = Math.floor(opts.count / n) + (i < opts.count % n ? 1 : 0);
    const concurrency = Math.max(1, Math.ceil((opts.concurrency ?? 256) / n));
    shards.push(spawnOne({ ...opts, count, concurrency }, run, (stats) => {
      latest[i] = stats;
      const sum = current();
      if (sum === null) return;
      for (const w of [...waiters]) if (w.check(sum)) w.resolve(sum); // resolve() removes it
    }));
  }
  const summary = Promise.all(shards.map((s) => s.summary)).then(addStats);
  summary.catch(() => {});
  return {
    children: shards.map((s) => s.child),
    summary,
    latest: current,
    waitFor(check, timeoutMs) {
      const now = current();
      if (now !== null && check(now)) return Promise.resolve(now);
      return new Promise<FloodStats>((resolve, reject) => {
        const settle = (err: Error | null, stats?: FloodStats) => {
          if (!waiters.includes(entry)) return;
          waiters.splice(waiters.indexOf(entry), 1);
          clearTimeout(timer);
          if (err === null) resolve(stats!);
          else reject(err);
        };
        const entry = { check, resolve: (s: FloodStats) => settle(null, s) };
        const timer = setTimeout(
          () =>
            settle(
              new Error(
                `flood: condition not met within ${timeoutMs} ms; last: ${JSON.stringify(current())}`,
              ),
            ),
          timeoutMs,
        );
        waiters.push(entry);
        summary.then(
          () =>
            settle(new Error(`flood ended before the condition held; last: ${JSON.stringify(current())}`)),
          (err) => settle(err instanceof Error ? err : new Error(String(err))),
        );
      });
    },
    async stop(timeoutMs = 10_000) {
      await Promise.all(shards.map((s) => s.closeStdin()));
      const timer = setTimeout(() => {
        for (const s of shards) {
          try {
            s.child.kill("SIGKILL");
          } catch {
            // already gone
          }
        }
      }, timeoutMs);
      try {
        return await summary;
      } finally {
        clearTimeout(timer);
        await Promise.all(shards.map((s) => s.child.status));
      }
    },
  };
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      host: { type: "string", default: "127.0.0.1" },
      port: { type: "string" },
      count: { type: "string", default: "1000" },
      payload: { type: "string", default: "http" },
      concurrency: { type: "string", default: "256" },
      "connect-timeout-ms": { type: "string", default: "3000" },
      "max-seconds": { type: "string", default: "120" },
      "progress-ms": { type: "string", default: "1000" },
      "exit-when-all-closed": { type: "boolean", default: false },
      "ignore-stdin": { type: "boolean", default: false },
    },
  });
  const num = (name: string, text: string | undefined): number => {
    const n = Number(text);
    if (text === undefined || !Number.isFinite(n) || n < 0) {
      console.error(`flood: --${name} needs a non-negative number`);
      Deno.exit(2);
    }
    return n;
  };
  const flood = new Flood({
    host: values.host,
    port: num("port", values.port),
    count: num("count", values.count),
    payload: values.payload,
    concurrency: num("concurrency", values.concurrency),
    connectTimeoutMs: num("connect-timeout-ms", values["connect-timeout-ms"]),
    maxSeconds: num("max-seconds", values["max-seconds"]),
    progressMs: num("progress-ms", values["progress-ms"]),
    exitWhenAllClosed: values["exit-when-all-closed"],
  });
  const stdinClosed = values["ignore-stdin"] ? undefined : (async () => {
    const buf = new Uint8Array(1024);
    while ((await Deno.stdin.read(buf)) !== null) {
      // anything written is ignored: only the end of stdin matters
    }
  })();
  const print = (stats: FloodStats) => console.log(JSON.stringify(stats));
  const summary = await flood.run({ until: stdinClosed, onStats: print });
  print(summary);
  // the held reads and pending connects are abandoned: exiting closes every descriptor at once
  Deno.exit(0);
}

if (import.meta.main) await main();
