/**
 * The DHCP socket server: binds UDP 67 (and 4011 in proxy mode), feeds each datagram to a
 * {@linkcode DhcpResponder} and sends what it returns. Deno gives a datagram no arrival interface, so it
 * receives on 0.0.0.0:67 and sends from a second socket bound to the server's address (port 67, both with
 * `reuseAddress`): Linux then sends 255.255.255.255 out of that interface, where the 0.0.0.0 socket fails
 * with NetworkUnreachable when there is no default route. The receive loops never give up while the
 * service runs: failures back off, lost sockets are re-bound, per-packet lines are throttled.
 *
 * @example
 * ```ts
 * const server = new DhcpServer({ config, events, staticLeases });
 * await server.start();
 * // ...
 * await server.stop(); // closes the sockets and saves the leases
 * ```
 * @module
 */
import { backoff, BACKOFF_LAST_MS, isResourceExhaustion, nextBackoff, socketGone } from "../limits.ts";
import { LogThrottle, type ThrottledLevel } from "../log_throttle.ts";
import { describeBindError } from "../net.ts";
import type { Service, ServiceFactory } from "../server.ts";
import { loadStaticLeases } from "../static_leases.ts";
import { errText, literal, log } from "./log.ts";
import {
  DhcpResponder,
  type DhcpResponderOptions,
  type Incoming,
  leaseStoreFor,
  type Outgoing,
} from "./responder.ts";

/** Options of {@linkcode DhcpServer}: the responder's, plus the sockets'. */
export interface DhcpServerOptions extends DhcpResponderOptions {
  /** The static-leases file, reloaded on SIGHUP. */
  staticConfigPath?: string;
  /** PXE boot-server port opened in proxy mode (default 4011). */
  proxyPort?: number;
  /** Address of the receiving socket (default 0.0.0.0). */
  listenAddress?: string;
  /** Opens the sockets; default `Deno.listenDatagram` (tests wrap it to inject failures). */
  listenDatagram?: ListenDatagram;
}

/** Datagrams waiting for the boot API at most; beyond it the client's retransmission is answered. */
const MAX_WAITING = 256;

/** Opens a UDP socket, like `Deno.listenDatagram`. */
export type ListenDatagram = (options: Deno.UdpListenOptions & { transport: "udp" }) => Deno.DatagramConn;

/** The DHCP service: sockets on 67 (and 4011 in proxy mode) around a {@linkcode DhcpResponder}. */
export class DhcpServer implements Service {
  readonly name = "dhcp";
  readonly responder: DhcpResponder;
  readonly #opts: DhcpServerOptions;
  readonly #serverPort: number;
  readonly #proxyPort: number;
  readonly #listen: string;
  #recv: Deno.DatagramConn | null = null;
  #send: Deno.DatagramConn | null = null;
  #proxy: Deno.DatagramConn | null = null;
  #loops: Promise<void>[] = [];
  readonly #sending = new Set<Promise<void>>();
  /** Datagrams waiting for the boot API's answer. */
  #waiting = 0;
  #stopping = false;
  readonly #listenDatagram: ListenDatagram;
  /** Aborted by `stop()`: ends backoff waits at once. */
  #abort = new AbortController();
  /** Per-packet lines of the sockets and the responder: one per kind per 10 s, then a count. */
  readonly #throttle = new LogThrottle({ log });

  /** Creates the server; nothing is bound until `start()`. */
  constructor(opts: DhcpServerOptions) {
    this.#opts = opts;
    this.#listenDatagram = opts.listenDatagram ?? ((o) => Deno.listenDatagram(o));
    this.responder = new DhcpResponder(
      { ...opts, leases: opts.leases ?? leaseStoreFor(opts) },
      this.#throttle,
    );
    this.#serverPort = opts.serverPort ?? opts.config.DHCP_SERVER_PORT;
    this.#proxyPort = opts.proxyPort ?? 4011;
    this.#listen = opts.listenAddress ?? "0.0.0.0";
  }

  /** Loads the leases and binds the sockets; rejects with a one-line message. */
  async start(): Promise<void> {
    const c = this.#opts.config;
    await this.responder.leases.load();
    this.#stopping = false;
    this.#abort = new AbortController();
    const listen = this.#listenDatagram;
    try {
      this.#recv = bind(listen, this.#listen, this.#serverPort);
      if (c.DHCP_SERVER_IP !== this.#listen) this.#send = bind(listen, c.DHCP_SERVER_IP, this.#serverPort);
      if (c.DHCP_MODE_PROXY) this.#proxy = bind(listen, this.#listen, this.#proxyPort);
    } catch (err) {
      this.#closeSockets();
      await this.responder.leases.close();
      throw err;
    }
    this.#loops = [
      this.#supervise("recv", "dhcp"),
      ...(this.#send ? [this.#supervise("send", "dhcp")] : []),
      ...(this.#proxy ? [this.#supervise("proxy", "proxy")] : []),
    ];
    log.debug("DHCP {mode} listening on {endpoints}", {
      mode: c.DHCP_MODE_PROXY ? "proxy" : "server",
      endpoints: this.endpoints().join(", "),
    });
  }

  /** Closes the sockets, waits for the receive loops and saves the leases. */
  async stop(): Promise<void> {
    this.#stopping = true;
    this.#abort.abort();
    this.#closeSockets();
    await Promise.allSettled(this.#loops);
    await Promise.allSettled(this.#sending);
    this.#loops = [];
    this.#throttle.close();
    await this.responder.leases.close();
    const c = this.#opts.config;
    if (c.LEASES_FILE !== "" && !c.DHCP_MODE_PROXY) {
      const n = this.responder.leases.boundLeases().length;
      log.info(`stopped: ${n} lease${n === 1 ? "" : "s"} saved to ${literal(c.LEASES_FILE)}`);
    }
  }

  /** Saves the leases now and reloads the static leases file (SIGHUP); a bad file keeps the old ones. */
  async reload(): Promise<void> {
    await this.responder.leases.flush();
    const path = this.#opts.staticConfigPath ?? "";
    if (path === "") return;
    try {
      const leases = await loadStaticLeases(path);
      this.responder.setStaticLeases(leases);
      log.info(`reloaded ${leases.size} static lease(s) from ${path}`);
    } catch (err) {
      log.error(`static leases not reloaded, keeping the previous ones: ${errText(err)}`);
    }
  }

  /** The bound endpoints, for the banner. */
  endpoints(): string[] {
    const c = this.#opts.config;
    const out = [`UDP ${this.#listen}:${this.#serverPort}`];
    if (this.#send || c.DHCP_SERVER_IP !== this.#listen) {
      out.push(`UDP ${c.DHCP_SERVER_IP}:${this.#serverPort}`);
    }
    if (c.DHCP_MODE_PROXY) out.push(`UDP ${this.#listen}:${this.#proxyPort} (PXE)`);
    return out;
  }

  #closeSockets(): void {
    for (const conn of [this.#recv, this.#send, this.#proxy]) {
      try {
        conn?.close();
      } catch (err) {
        log.debug("closing a socket: {err}", { err: String(err) });
      }
    }
    this.#recv = this.#send = this.#proxy = null;
  }

  /** The socket of `slot`; null before start, after stop, or while it is being re-bound. */
  #socketOf(slot: Slot): Deno.DatagramConn | null {
    return slot === "recv" ? this.#recv : slot === "send" ? this.#send : this.#proxy;
  }

  #setSocket(slot: Slot, conn: Deno.DatagramConn | null): void {
    if (slot === "recv") this.#recv = conn;
    else if (slot === "send") this.#send = conn;
    else this.#proxy = conn;
  }

  /** The address `slot` is bound to. */
  #addressOf(slot: Slot): { hostname: string; port: number } {
    if (slot === "send") return { hostname: this.#opts.config.DHCP_SERVER_IP, port: this.#serverPort };
    return { hostname: this.#listen, port: slot === "proxy" ? this.#proxyPort : this.#serverPort };
  }

  #note(kind: string, level: ThrottledLevel, message: () => string, label?: string): void {
    this.#throttle.note(kind, level, () => literal(message()), label);
  }

  /** Runs the receive loop of `slot` until `stop()`; a bug that escapes it restarts it after a second. */
  async #supervise(slot: Slot, on: Incoming["on"]): Promise<void> {
    while (!this.#stopping) {
      try {
        await this.#serve(slot, on);
      } catch (err) {
        if (this.#stopping) return;
        this.#note(`loop:${slot}`, "error", () => `receive loop failed, restarting it: ${errText(err)}`);
        await backoff(BACKOFF_LAST_MS, this.#abort.signal);
      }
    }
  }

  /** Binds `slot` again, backing off, until it works (the socket) or `stop()` (null). */
  async #rebind(slot: Slot): Promise<Deno.DatagramConn | null> {
    const { hostname, port } = this.#addressOf(slot);
    let delay = 0;
    while (!this.#stopping) {
      try {
        const conn = this.#listenDatagram({ transport: "udp", hostname, port, reuseAddress: true });
        this.#setSocket(slot, conn);
        this.#note(`rebound:${slot}`, "info", () => `socket UDP ${hostname}:${port} is back`);
        return conn;
      } catch (err) {
        this.#note(
          `rebind:${slot}`,
          "warn",
          () => `cannot re-bind UDP ${hostname}:${port} yet: ${errText(err)}; retrying`,
          `failed re-binds of UDP ${hostname}:${port}`,
        );
      }
      delay = nextBackoff(delay);
      await backoff(delay, this.#abort.signal);
    }
    return null;
  }

  /**
   * The receive loop of one socket. It never gives up while the service runs: a failing receive
   * (EMFILE, ENOBUFS, ...) backs off 50 ms doubling to 1 s; a socket that is gone is re-bound.
   */
  async #serve(slot: Slot, on: Incoming["on"]): Promise<void> {
    const buf = new Uint8Array(65_535); // whole datagrams: a longer one is never cut into a shorter message
    let delay = 0;
    while (!this.#stopping) {
      const conn = this.#socketOf(slot) ?? await this.#rebind(slot);
      if (conn === null) return; // stopping
      let data: Uint8Array;
      let addr: Deno.NetAddr;
      try {
        const [d, a] = await conn.receive(buf);
        data = d;
        addr = a as Deno.NetAddr;
        delay = 0;
      } catch (err) {
        if (this.#stopping) return;
        delay = nextBackoff(delay);
        const { hostname, port } = this.#addressOf(slot);
        const where = `UDP ${hostname}:${port}`;
        if (socketGone(err)) {
          this.#note(`lost:${slot}`, "warn", () => `socket ${where} is gone (${errText(err)}): re-binding`);
          if (this.#socketOf(slot) === conn) this.#setSocket(slot, null);
          try {
            conn.close();
          } catch {
            // already closed
          }
        } else {
          this.#note(
            `receive:${slot}`,
            "warn",
            () => `receive on ${where} failed: ${errText(err)}; backing off`,
            isResourceExhaustion(err)
              ? `receive failures on ${where} (out of descriptors or buffers)`
              : `receive failures on ${where}`,
          );
        }
        await backoff(delay, this.#abort.signal);
        continue;
      }
      const from = { hostname: addr.hostname, port: addr.port, on };
      const wait = this.responder.prepare(data);
      if (wait !== null) {
        // the boot API is asked for this machine: answer when it has (within its timeout), meanwhile
        // read on; beyond MAX_WAITING such datagrams the client's retransmission is answered instead
        if (this.#waiting >= MAX_WAITING) continue;
        const copy = data.slice();
        this.#waiting++;
        const answered: Promise<void> = wait.then(() => {
          if (!this.#stopping) return this.#sendAll(this.responder.handle(copy, from));
        }).finally(() => {
          this.#waiting--;
          this.#sending.delete(answered);
        });
        this.#sending.add(answered);
        continue;
      }
      await this.#sendAll(this.responder.handle(data, from));
    }
  }

  /** Sends replies without awaiting each one (the next datagram is read while the kernel sends). */
  async #sendAll(replies: readonly Outgoing[]): Promise<void> {
    for (const out of replies) {
      const sock = out.via === "proxy" ? this.#proxy : (this.#send ?? this.#recv);
      if (!sock) continue;
      // not awaited one by one: the next datagram is read while the kernel sends this one
      const sending: Promise<void> = sock.send(out.bytes, {
        transport: "udp",
        hostname: out.hostname,
        port: out.port,
      })
        .then(() => {}, (err) => {
          if (this.#stopping) return;
          this.#note(
            "send",
            "warn",
            () => `DHCP send to ${out.hostname}:${out.port} failed: ${errText(err)}`,
            "DHCP sends failed",
          );
        })
        .finally(() => this.#sending.delete(sending));
      this.#sending.add(sending);
      if (this.#sending.size > 256) await Promise.race(this.#sending);
    }
  }
}

/** The sockets of {@linkcode DhcpServer}: 67 on the listen address, 67 on the server address, 4011. */
type Slot = "recv" | "send" | "proxy";

function bind(listen: ListenDatagram, hostname: string, port: number): Deno.DatagramConn {
  try {
    return listen({ transport: "udp", hostname, port, reuseAddress: true });
  } catch (err) {
    throw new Error(describeBindError(err, { service: "dhcp", proto: "UDP", host: hostname, port }));
  }
}

/** Builds the DHCP service from the shared context; null when DHCP is off (USE_DHCP false). */
export const createDhcpService: ServiceFactory = (ctx) => {
  const c = ctx.config;
  if (!c.USE_DHCP || !c.USE_DHCP4) return null; // --no-dhcp4: DHCPv6 only
  return new DhcpServer({
    config: c,
    staticLeases: ctx.staticLeases,
    staticConfigPath: c.STATIC_CONFIG,
    events: ctx.events,
    pxeOnly: c.DHCP_PXE_ONLY,
    domain: c.DHCP_DOMAIN === "" ? undefined : c.DHCP_DOMAIN,
    machines: ctx.machines,
  });
};
