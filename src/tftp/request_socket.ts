/**
 * The TFTP request socket (port 69 by default) and the loop that receives on it. It never gives up while
 * the service runs: a failing receive backs off, a socket that is gone is bound again on the same
 * address, and a bug that escapes the loop restarts it. What a datagram means is the server's business
 * (`server.ts`): each one is handed to `onDatagram`.
 *
 * @example
 * ```ts
 * const requests = new RequestSocket({ host: "0.0.0.0", port: 69, listen, note, onDatagram });
 * requests.open();
 * // ...
 * requests.halt();
 * await requests.close();
 * ```
 * @module
 */
import { getLogger } from "@logtape/logtape";
import { errText } from "../errors.ts";
import { backoff, BACKOFF_LAST_MS, isResourceExhaustion, nextBackoff, socketGone } from "../limits.ts";
import type { ThrottledLevel } from "../log_throttle.ts";

const log = getLogger(["pypxe", "tftp"]);

const REQUEST_BUFFER = 65536;

/** Opens a UDP socket; `Deno.listenDatagram` unless a test wraps it to inject failures. */
export type ListenDatagram = (options: Deno.UdpListenOptions & { transport: "udp" }) => Deno.DatagramConn;

/** Options of {@linkcode RequestSocket}. */
export interface RequestSocketOptions {
  /** Address to bind, e.g. `0.0.0.0`. */
  host: string;
  /** Request port; 0 picks a free one (tests). */
  port: number;
  /** Opens the socket (and opens it again after it is lost). */
  listen: ListenDatagram;
  /** Logs a rate-limited line; `message` is plain text. */
  note: (kind: string, level: ThrottledLevel, message: () => string, label?: string) => void;
  /** Handles one received datagram; what it throws is logged and the loop goes on. */
  onDatagram: (bytes: Uint8Array, from: Deno.NetAddr) => void;
}

/** The request socket and its receive loop. */
export class RequestSocket {
  readonly #o: RequestSocketOptions;
  /** The request socket; null while it is being re-bound, and once stopping. */
  #socket: Deno.DatagramConn | null = null;
  /** The socket `halt()` took away, closed by `close()`. */
  #halted: Deno.DatagramConn | null = null;
  #loop: Promise<void> | null = null;
  #port = 0;
  #stopping = false;
  /** Aborted by `halt()`: ends backoff waits at once. */
  #abort = new AbortController();

  /** Creates the socket's owner; nothing is bound until `open()`. */
  constructor(opts: RequestSocketOptions) {
    this.#o = opts;
  }

  /** The bound port (useful with port 0). */
  get port(): number {
    return this.#port;
  }

  /** True from `open()` until `close()` has returned. */
  get running(): boolean {
    return this.#loop !== null;
  }

  /** True once `halt()` was called (until the next `open()`). */
  get stopping(): boolean {
    return this.#stopping;
  }

  /** The socket to send replies from; null while it is being re-bound or once halted. */
  get socket(): Deno.DatagramConn | null {
    return this.#socket;
  }

  /** Binds the socket and starts the loop; throws what the bind threw. */
  open(): void {
    const { host, port } = this.#o;
    this.#socket = this.#o.listen({ transport: "udp", hostname: host, port });
    this.#port = (this.#socket.addr as Deno.NetAddr).port;
    this.#stopping = false;
    this.#abort = new AbortController();
    this.#loop = this.#supervise();
  }

  /** First half of a stop: no more requests are taken and backoff waits end; the socket stays open. */
  halt(): void {
    this.#stopping = true;
    this.#abort.abort();
    this.#halted = this.#socket;
    this.#socket = null;
  }

  /** Second half of a stop: closes the socket and waits until the loop has ended. */
  async close(): Promise<void> {
    const socket = this.#halted;
    this.#halted = null;
    try {
      socket?.close();
    } catch (err) {
      log.debug("close: {err}", { err: String(err) });
    }
    await this.#loop;
    this.#loop = null;
  }

  /** Runs the request loop until `halt()`; a bug that escapes it restarts it after a second. */
  async #supervise(): Promise<void> {
    while (!this.#stopping) {
      try {
        await this.#serve();
      } catch (err) {
        if (this.#stopping) return;
        this.#o.note("loop", "error", () => `request loop failed, restarting it: ${errText(err)}`);
        await backoff(BACKOFF_LAST_MS, this.#abort.signal);
      }
    }
  }

  /**
   * The request loop. It never gives up while the service runs: a failing receive (EMFILE, ENOBUFS, ...)
   * backs off 50 ms doubling to 1 s; a request socket that is gone is re-bound on the same address.
   */
  async #serve(): Promise<void> {
    const buf = new Uint8Array(REQUEST_BUFFER);
    let delay = 0;
    while (!this.#stopping) {
      const socket = this.#socket ?? await this.#rebind();
      if (socket === null) return; // stopping
      let bytes: Uint8Array;
      let from: Deno.NetAddr;
      try {
        const got = await socket.receive(buf);
        bytes = got[0];
        from = got[1] as Deno.NetAddr;
        delay = 0;
      } catch (err) {
        if (this.#stopping) return;
        delay = nextBackoff(delay);
        const where = `UDP ${this.#o.host}:${this.#port}`;
        if (socketGone(err)) {
          this.#o.note(
            "socket-lost",
            "warn",
            () => `request socket ${where} is gone (${errText(err)}): re-binding`,
          );
          this.#forget(socket);
        } else if (isResourceExhaustion(err)) {
          this.#o.note(
            "exhausted",
            "warn",
            () => `receive on ${where} failed: ${errText(err)}; backing off`,
            "receive failures (out of descriptors or buffers)",
          );
        } else {
          this.#o.note(
            "receive",
            "warn",
            () => `receive on ${where} failed: ${errText(err)}; backing off`,
            "receive failures",
          );
        }
        await backoff(delay, this.#abort.signal);
        continue;
      }
      try {
        this.#o.onDatagram(bytes, from);
      } catch (err) {
        this.#o.note(
          "request",
          "warn",
          () => `request from ${from.hostname}:${from.port} failed: ${errText(err)}`,
          "failed requests",
        );
      }
    }
  }

  /** Drops a dead request socket so that the loop binds a new one. */
  #forget(socket: Deno.DatagramConn): void {
    if (this.#socket === socket) this.#socket = null;
    try {
      socket.close();
    } catch {
      // already closed
    }
  }

  /** Binds the request address again, backing off, until it works (the socket) or `halt()` (null). */
  async #rebind(): Promise<Deno.DatagramConn | null> {
    const host = this.#o.host;
    const port = this.#port;
    let delay = 0;
    while (!this.#stopping) {
      try {
        const socket = this.#o.listen({ transport: "udp", hostname: host, port });
        this.#socket = socket;
        this.#o.note("rebound", "info", () => `request socket UDP ${host}:${port} is back`);
        return socket;
      } catch (err) {
        this.#o.note(
          "rebind",
          "warn",
          () => `cannot re-bind UDP ${host}:${port} yet: ${errText(err)}; retrying`,
          "failed re-binds",
        );
      }
      delay = nextBackoff(delay);
      await backoff(delay, this.#abort.signal);
    }
    return null;
  }
}
