/**
 * The HTTP/1.1 connection layer under the file server: its own accept loop and connections, because
 * Deno.serve (2.9.6) exposes neither. What it enforces, whatever a client does:
 *
 * - a cap on open connections: at the cap the connection waiting longest for a request head is closed
 *   to make room (then the longest-idle keep-alive one); when every connection is busy the newcomer is
 *   closed at once. A flood of half-open connections can therefore never lock a real client out;
 * - a header timeout (a whole request head within `headerTimeoutMs` of its first byte or of connecting)
 *   and an idle timeout between keep-alive requests, both enforced by one sweep timer, not a timer per
 *   connection;
 * - a write timeout: a client that stops reading a response is disconnected;
 * - an accept loop that never ends while running: out of descriptors (EMFILE/ENFILE) it closes the
 *   oldest waiting connection and backs off; if the listener itself fails it is bound again.
 *
 * With `ipv6` it listens on IPv6 too, on the sockets of `dual_stack.ts`'s bind plan (one accept loop
 * each, one set of connections and caps); IPv4 clients of a dual-stack `::` listener are named as IPv4.
 *
 * The bytes of each connection (request heads and bodies, responses) are `exchange.ts`'s.
 * @module
 */
import { closeQuietly, errText } from "../errors.ts";
import {
  bindAll,
  type BindPlan,
  bindPlan,
  type BindSpec,
  bracketHost,
  hostPort,
  isMapped,
} from "../dual_stack.ts";
import { backoff, isResourceExhaustion, nextBackoff } from "../limits.ts";
import type { LogThrottle } from "../log_throttle.ts";
import {
  type ExchangeContext,
  HttpConnection,
  type HttpHandler,
  type Phase,
  type Reply,
} from "./exchange.ts";

export {
  type HttpHandler,
  type IncomingRequest,
  type RawResponse,
  rawResponse,
  type Reply,
  type ServeInfo,
} from "./exchange.ts";

/** Options of {@linkcode HttpConnections}. */
export interface HttpConnectionsOptions {
  readonly hostname: string;
  readonly port: number;
  /** Also listen on IPv6: on `::`, or on `host6` beside a specific `hostname`; default false. */
  readonly ipv6?: boolean;
  /** The server's IPv6 address, bound beside a specific IPv4 `hostname`; "" = `::`. */
  readonly host6?: string;
  readonly handler: HttpHandler;
  /** Open connections at most. */
  readonly maxConnections: number;
  /** A request head must be complete this long after its first byte (or after connecting). */
  readonly headerTimeoutMs: number;
  /** A keep-alive connection may wait this long for the next request. */
  readonly idleTimeoutMs: number;
  /** A response write that makes no progress for this long ends the connection; 0 disables. */
  readonly writeTimeoutMs: number;
  /** Largest request body read (Content-Length); larger ones get 413. Default 1 MiB. */
  readonly maxBodyBytes?: number;
  /** Turns a handler failure into a response. */
  readonly onError: (err: unknown) => Reply;
  /** Called for each connection the server ended on its own. */
  readonly onDropped?: (outcome: "refused" | "timed-out") => void;
  /** Throttled log lines (refusals, timeouts, accept failures). */
  readonly log: LogThrottle;
  /** Binds the listener; tests inject failures here. Default `Deno.listen`. */
  readonly listen?: (opts: Deno.TcpListenOptions & { transport?: "tcp" }) => Deno.Listener;
}

/** One listening socket of the bind plan; `listener` is null while it is being bound again. */
interface Slot {
  readonly spec: BindSpec;
  listener: Deno.Listener | null;
  loop: Promise<void> | null;
}

/** HTTP/1.1 connections with caps and timeouts; see the module doc. */
export class HttpConnections {
  readonly #o: HttpConnectionsOptions;
  /** The sockets to bind (one unless `ipv6`). */
  readonly #plan: BindPlan;
  #slots: Slot[] = [];
  readonly #all = new Map<HttpConnection, Promise<void>>();
  /** Connections waiting for a request head, oldest first. */
  readonly #heads = new Set<HttpConnection>();
  /** Keep-alive connections between requests, oldest first. */
  readonly #idles = new Set<HttpConnection>();
  /** Connections with a response under way. */
  readonly #busy = new Set<HttpConnection>();
  #sweeper: ReturnType<typeof setInterval> | undefined;
  #stopping = false;
  /** The port bound first (a rebind after a failure reuses it, also when 0 was asked for). */
  #boundPort = 0;
  #stopAccepting = new AbortController();

  /** What every connection of this server is given. */
  readonly #exchange: ExchangeContext;

  /** Creates the layer; nothing is bound until {@linkcode start}. */
  constructor(opts: HttpConnectionsOptions) {
    this.#o = opts;
    this.#plan = bindPlan(opts.hostname, opts.ipv6 ?? false, opts.host6 ?? "");
    this.#exchange = {
      handler: opts.handler,
      onError: opts.onError,
      log: opts.log,
      maxBodyBytes: opts.maxBodyBytes,
      stopping: () => this.#stopping,
    };
  }

  /** The bound port. */
  get port(): number {
    return this.#boundPort || this.#o.port;
  }

  /** The IPv6 address listened on besides the IPv4 one ("" without `ipv6`). */
  get host6(): string {
    return this.#plan.host6;
  }

  /** Open connections now. */
  get size(): number {
    return this.#all.size;
  }

  /**
   * Binds (throws what `Deno.listen` throws; with several sockets a `BindFailure` naming the address,
   * see `dual_stack.ts`) and starts accepting.
   */
  start(): void {
    this.#stopping = false;
    this.#stopAccepting = new AbortController();
    this.#boundPort = 0;
    const bound = this.#plan.sockets.length === 1
      ? { port: 0, bound: [{ spec: this.#plan.sockets[0], socket: this.#bind(this.#plan.sockets[0]) }] }
      : bindAll(this.#plan, this.#o.port, {
        open: (hostname, port, reuse) => this.#listen(hostname, port, reuse),
        portOf: (listener) => (listener.addr as Deno.NetAddr).port,
        close: (listener) => listener.close(),
      });
    this.#boundPort = (bound.bound[0].socket.addr as Deno.NetAddr).port;
    this.#slots = bound.bound.map(({ spec, socket }) => ({ spec, listener: socket, loop: null }));
    for (const slot of this.#slots) slot.loop = this.#accept(slot);
    const tick = Math.max(50, Math.min(1000, this.#o.headerTimeoutMs / 4, this.#o.idleTimeoutMs / 4));
    this.#sweeper = setInterval(() => this.#sweep(), tick);
  }

  /**
   * Stops accepting and closes waiting connections at once; responses under way may finish for
   * `graceMs`, then every connection is closed (a transfer then ends as `server stopping`).
   */
  async stop(graceMs: number): Promise<void> {
    if (this.#stopping) return;
    this.#stopping = true;
    this.#stopAccepting.abort();
    for (const slot of this.#slots) {
      try {
        slot.listener?.close();
      } catch {
        // already closed
      }
      slot.listener = null;
    }
    await Promise.all(this.#slots.map((slot) => slot.loop));
    this.#slots = [];
    for (const c of [...this.#heads, ...this.#idles]) this.#close(c, "stopping");
    if (this.#busy.size > 0) {
      let timer: ReturnType<typeof setTimeout> | undefined;
      await Promise.race([
        Promise.allSettled(this.#all.values()),
        new Promise((resolve) => timer = setTimeout(resolve, graceMs)),
      ]);
      clearTimeout(timer);
    }
    if (this.#all.size > 0) {
      for (const c of this.#all.keys()) this.#close(c, "stopping");
      await Promise.allSettled(this.#all.values());
    }
    clearInterval(this.#sweeper);
    this.#sweeper = undefined;
  }

  #bind(spec: BindSpec): Deno.Listener {
    return this.#listen(spec.host, this.#boundPort || this.#o.port, spec.reuse);
  }

  #listen(hostname: string, port: number, reuse: boolean): Deno.Listener {
    const listen = this.#o.listen ?? ((o) => Deno.listen(o));
    return listen(
      reuse ? { hostname, port, transport: "tcp", reusePort: true } : { hostname, port, transport: "tcp" },
    );
  }

  async #accept(slot: Slot): Promise<void> {
    let delay = 0;
    let accepted = 0;
    const wait = async () => {
      delay = nextBackoff(delay);
      await backoff(delay, this.#stopAccepting.signal);
    };
    const where = `${bracketHost(slot.spec.host)}:${this.port}`;
    while (!this.#stopping) {
      const listener = slot.listener;
      if (listener === null) {
        // the listener failed: bind again until it works
        try {
          slot.listener = this.#bind(slot.spec);
          this.#o.log.note("rebound", "info", `listening again on ${where}`);
          delay = 0;
        } catch (err) {
          this.#o.log.note("rebind", "error", `cannot listen again: ${errText(err)}; retrying`);
          await wait();
        }
        continue;
      }
      let conn: Deno.Conn;
      // let the event loop run between accepts: with a flood queued in the kernel, accept() resolves at
      // once and the reads of connections already accepted (real requests) would never complete, so
      // they would look idle and be evicted
      if (++accepted % ACCEPTS_PER_TURN === 0) await yieldToEventLoop();
      try {
        conn = await listener.accept();
        delay = 0;
      } catch (err) {
        if (this.#stopping) return;
        if (isResourceExhaustion(err)) {
          this.#o.log.note(
            "accept-exhausted",
            "warn",
            `accept failed: ${errText(err)}; closing the oldest waiting connection and retrying`,
            "accept failed (out of descriptors)",
          );
          this.#evictOne();
        } else {
          this.#o.log.note("accept-failed", "error", `listener failed: ${errText(err)}; binding again`);
          try {
            listener.close();
          } catch {
            // already closed
          }
          if (slot.listener === listener) slot.listener = null;
        }
        await wait();
        continue;
      }
      if (this.#stopping) {
        closeQuietly(conn);
        return;
      }
      if (slot.spec.refuseMapped && isMapped((conn.remoteAddr as Deno.NetAddr).hostname)) {
        // an IPv4 client of an address this server does not bind, reaching the `::` listener
        closeQuietly(conn);
        this.#o.log.note(
          "not-bound",
          "debug",
          `${
            hostPort(conn.remoteAddr as Deno.NetAddr)
          }: connection to an IPv4 address other than ${this.#o.hostname} closed`,
          "connections to unserved IPv4 addresses closed",
        );
        continue;
      }
      if (this.#all.size >= this.#o.maxConnections && !this.#evictOne()) {
        closeQuietly(conn);
        this.#dropped("refused", conn.remoteAddr as Deno.NetAddr, "refused: every connection is busy");
        continue;
      }
      const c = new HttpConnection(conn, this.#exchange);
      this.#heads.add(c);
      this.#all.set(c, this.#serve(c));
    }
  }

  /** Closes the connection waiting longest for a request (else the longest idle one); false if none. */
  #evictOne(): boolean {
    const victim = first(this.#heads) ?? first(this.#idles);
    if (victim === undefined) return false;
    this.#close(victim, "refused");
    this.#dropped("refused", victim.remote, "at the connection cap: closed the oldest waiting connection");
    return true;
  }

  #dropped(outcome: "refused" | "timed-out", remote: Deno.NetAddr, why: string): void {
    this.#o.onDropped?.(outcome);
    const label = outcome === "refused" ? "connections refused at the cap" : "connections timed out";
    this.#o.log.note(outcome, "info", `${hostPort(remote)}: ${why}`, label);
  }

  #sweep(): void {
    const now = performance.now();
    const { headerTimeoutMs, idleTimeoutMs, writeTimeoutMs } = this.#o;
    for (const c of this.#heads) {
      if (now - c.since < headerTimeoutMs) break; // oldest first: the rest are younger
      this.#close(c, "timed-out");
      this.#dropped("timed-out", c.remote, `no complete request head within ${headerTimeoutMs / 1000} s`);
    }
    for (const c of this.#idles) {
      if (now - c.since < idleTimeoutMs) break;
      this.#close(c, "timed-out"); // an idle keep-alive connection closing is routine: not counted
    }
    if (writeTimeoutMs > 0) {
      for (const c of this.#busy) {
        if (c.writeSince > 0 && now - c.writeSince >= writeTimeoutMs) {
          this.#close(c, "timed-out");
          this.#dropped("timed-out", c.remote, `did not read the response for ${writeTimeoutMs / 1000} s`);
        }
      }
    }
  }

  #setPhase(c: HttpConnection, phase: Phase): void {
    this.#heads.delete(c);
    this.#idles.delete(c);
    this.#busy.delete(c);
    c.phase = phase;
    c.since = performance.now();
    if (c.closed) return;
    (phase === "head" ? this.#heads : phase === "idle" ? this.#idles : this.#busy).add(c);
  }

  #close(c: HttpConnection, by: HttpConnection["closedBy"]): void {
    this.#heads.delete(c);
    this.#idles.delete(c);
    this.#busy.delete(c);
    c.close(by);
  }

  async #serve(c: HttpConnection): Promise<void> {
    const toHead = () => this.#setPhase(c, "head");
    try {
      while (!c.closed) {
        const head = await c.readHead(toHead);
        if (head === null) return;
        this.#setPhase(c, "busy");
        const keep = await c.exchange(head);
        if (!keep || this.#stopping) return;
        this.#setPhase(c, c.len > 0 ? "head" : "idle");
      }
    } catch (err) {
      if (!c.closed) this.#o.log.note("connection-error", "warn", `connection error: ${errText(err)}`);
    } finally {
      this.#close(c, null);
      this.#all.delete(c);
    }
  }
}

/** Accepts between two turns of the event loop (reads and timers run in between). */
const ACCEPTS_PER_TURN = 4;

function yieldToEventLoop(): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, 0));
}

function first<T>(set: Set<T>): T | undefined {
  for (const item of set) return item;
  return undefined;
}
