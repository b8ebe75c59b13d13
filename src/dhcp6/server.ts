/**
 * The DHCPv6 socket server: binds UDP [::]:547 joined to ff02::1:2 on the served interface (and port 4011 of
 * the server's address in proxy mode, where EDK2's PXEv6 sends its Request to the boot server), feeds each datagram to a
 * {@linkcode Dhcp6Responder} and sends what it returns. Deno gives a datagram no arrival interface and
 * reports link-local sources without their zone, so the server serves one interface and scopes every
 * link-local reply with `%iface`. The receive loops never give up while the service runs: failures back
 * off, lost sockets are re-bound (and re-joined), per-packet lines are throttled.
 *
 * @example
 * ```ts
 * const server = new Dhcp6Server({ config, iface: "eth0", index: 2, mac: "52:54:00:12:34:56", events });
 * await server.start();
 * await server.stop(); // closes the sockets and saves the leases
 * ```
 * @module
 */
import { getLogger } from "@logtape/logtape";
import { errText } from "../errors.ts";
import type { BootEvents } from "../events.ts";
import { backoff, BACKOFF_LAST_MS, isResourceExhaustion, nextBackoff, socketGone } from "../limits.ts";
import { literal, LogThrottle, type ThrottledLevel } from "../log_throttle.ts";
import { describeBindError } from "../net.ts";
import {
  deriveIpv6,
  type Ipv6Address,
  type Ipv6Derived,
  ipv6Interfaces,
  isLinkLocal6,
  leases6FileFor,
} from "../net6.ts";
import type { Service, ServiceFactory } from "../server.ts";
import type { PxeConfig } from "../settings.ts";
import type { StaticLeases } from "../static_leases.ts";
import { loadStaticLeases } from "../static_leases.ts";
import { type BootFiles, policyOptionsFrom } from "../dhcp/policy.ts";
import type { DhcpMachines } from "../dhcp/machine.ts";
import { Dhcp6Responder, type Incoming6, type Log6, type Outgoing6, serverDuidFromMac } from "./responder.ts";

const log = getLogger(["pypxe", "dhcp6"]);

/** All DHCP relay agents and servers (RFC 8415 §7.1). */
export const ALL_DHCP_SERVERS = "ff02::1:2";

/** Options of {@linkcode Dhcp6Server}. */
export interface Dhcp6ServerOptions {
  config: PxeConfig;
  /** The served interface: its name scopes link-local replies, its index the multicast join. */
  iface: string;
  index: number;
  /** The interface's MAC, for the server DUID (DUID-LL). */
  mac: string;
  events?: BootEvents;
  staticLeases?: StaticLeases;
  /** DHCP server port (default 547) and boot-server port (default 4011), for tests. */
  serverPort?: number;
  proxyPort?: number;
  /** Bind address (default `::`). */
  listenAddress?: string;
  /** Opens the sockets; default `Deno.listenDatagram`. */
  listenDatagram?: (options: Deno.UdpListenOptions & { transport: "udp" }) => Deno.DatagramConn;
  /** Per-client-type boot files (the IPv4 policy's). */
  bootFiles?: BootFiles;
  /** Clock in Unix ms (default Date.now). */
  now?: () => number;
  /** Per-machine boot, as for IPv4. */
  machines?: DhcpMachines;
}

type Slot = "dhcp" | "proxy";

/** The static IPv6 addresses of a static-leases table: MAC -> `ipv6addr`. */
export function staticAddresses6(leases: StaticLeases | undefined): Map<string, string> {
  const out = new Map<string, string>();
  for (const [mac, b] of leases ?? []) if (b.ipv6addr) out.set(mac, b.ipv6addr);
  return out;
}

/** The DHCPv6 service: sockets on 547 (and 4011 in proxy mode) around a {@linkcode Dhcp6Responder}. */
export class Dhcp6Server implements Service {
  readonly name = "dhcp6";
  readonly responder: Dhcp6Responder;
  readonly #o: Dhcp6ServerOptions;
  readonly #ports: Record<Slot, number>;
  readonly #listenAddress: string;
  readonly #sockets: Record<Slot, Deno.DatagramConn | null> = { dhcp: null, proxy: null };
  readonly #listen: NonNullable<Dhcp6ServerOptions["listenDatagram"]>;
  readonly #throttle = new LogThrottle({ log });
  readonly #sending = new Set<Promise<void>>();
  #loops: Promise<void>[] = [];
  #stopping = false;
  #abort = new AbortController();

  /** Builds the server; nothing is bound until `start()`. */
  constructor(opts: Dhcp6ServerOptions) {
    this.#o = opts;
    const c = opts.config;
    this.#listen = opts.listenDatagram ?? ((o) => Deno.listenDatagram(o));
    this.#ports = { dhcp: opts.serverPort ?? 547, proxy: opts.proxyPort ?? 4011 };
    this.#listenAddress = opts.listenAddress ?? "::";
    const responderLog: Log6 = {
      debug: (m) => log.debug(literal(m)),
      info: (m) => log.info(literal(m)),
      warn: (m) => this.#note("responder", "warn", () => m),
    };
    this.responder = new Dhcp6Responder({
      mode: c.DHCP_MODE_PROXY ? "proxy" : "full",
      serverDuid: serverDuidFromMac(opts.mac),
      fileServer: c.DHCP6_SERVER_IP,
      httpPort: c.HTTP_PORT,
      useHttp: c.USE_HTTP,
      useIpxe: c.USE_IPXE,
      netbootFile: c.NETBOOT_FILE,
      bootFiles: opts.bootFiles ?? policyOptionsFrom(c).bootFiles,
      secureBoot: c.SECURE_BOOT,
      pool: { begin: c.DHCP6_OFFER_BEGIN, end: c.DHCP6_OFFER_END },
      preferredLifetime: Math.max(60, Math.floor(c.DHCP_LEASE_TIME / 2)),
      validLifetime: c.DHCP_LEASE_TIME,
      leasesFile: c.DHCP_MODE_PROXY ? "" : leases6FileFor(c.LEASES_FILE),
      static: staticAddresses6(opts.staticLeases),
      dns: c.DHCP_DNS.split(",").filter((d) => d.includes(":")),
      now: opts.now,
      events: opts.events,
      log: responderLog,
      machines: opts.machines,
    });
  }

  /** Loads the leases, binds the sockets and joins ff02::1:2; rejects with a one-line message. */
  async start(): Promise<void> {
    await this.responder.leases?.load();
    this.#stopping = false;
    this.#abort = new AbortController();
    try {
      this.#sockets.dhcp = this.#bind("dhcp");
      await this.#join(this.#sockets.dhcp);
      if (this.#o.config.DHCP_MODE_PROXY) this.#sockets.proxy = this.#bind("proxy");
    } catch (err) {
      this.#closeSockets();
      await this.responder.leases?.close();
      throw err;
    }
    this.#loops = [this.#supervise("dhcp"), ...(this.#sockets.proxy ? [this.#supervise("proxy")] : [])];
    log.debug(literal(`DHCPv6 listening on ${this.endpoints().join(", ")}`));
  }

  /** Closes the sockets, waits for the loops and saves the leases. */
  async stop(): Promise<void> {
    this.#stopping = true;
    this.#abort.abort();
    this.#closeSockets();
    await Promise.allSettled(this.#loops);
    await Promise.allSettled(this.#sending);
    this.#loops = [];
    this.#throttle.close();
    const leases = this.responder.leases;
    if (leases === undefined) return;
    await leases.close();
    const file = leases6FileFor(this.#o.config.LEASES_FILE);
    if (file !== "") {
      const n = leases.boundBindings().length;
      log.info(literal(`stopped: ${n} IPv6 lease${n === 1 ? "" : "s"} saved to ${file}`));
    }
  }

  /** Saves the leases and reloads the static leases' IPv6 addresses (SIGHUP); a bad file keeps the old. */
  async reload(): Promise<void> {
    await this.responder.leases?.flush();
    const path = this.#o.config.STATIC_CONFIG;
    if (path === "" || this.responder.leases === undefined) return;
    try {
      this.responder.leases.setReserved(staticAddresses6(await loadStaticLeases(path)));
    } catch (err) {
      log.error(literal(`static IPv6 leases not reloaded, keeping the previous ones: ${errText(err)}`));
    }
  }

  /** The bound endpoints, for the banner. */
  endpoints(): string[] {
    const out = [
      `UDP [${this.#hostOf("dhcp")}]:${this.#ports.dhcp} (${ALL_DHCP_SERVERS} on ${this.#o.iface})`,
    ];
    if (this.#o.config.DHCP_MODE_PROXY) out.push(`UDP [${this.#hostOf("proxy")}]:${this.#ports.proxy} (PXE)`);
    return out;
  }

  /**
   * The address `slot` binds. The boot-server socket (4011) binds the server's own address: EDK2 sends its
   * Request to the boot URL's address and takes only a reply from that address, which a `::` socket
   * would not guarantee (a reply to the client's link-local address leaves from ours).
   */
  #hostOf(slot: Slot): string {
    const server = this.#o.config.DHCP6_SERVER_IP;
    return slot === "proxy" && this.#listenAddress === "::" && server !== "" ? server : this.#listenAddress;
  }

  #bind(slot: Slot): Deno.DatagramConn {
    const port = this.#ports[slot];
    const hostname = this.#hostOf(slot);
    try {
      return this.#listen({ transport: "udp", hostname, port, reuseAddress: true });
    } catch (err) {
      throw new Error(
        describeBindError(err, { service: "dhcp6", proto: "UDP", host: `[${hostname}]`, port }),
      );
    }
  }

  async #join(conn: Deno.DatagramConn): Promise<void> {
    try {
      await conn.joinMulticastV6(ALL_DHCP_SERVERS, this.#o.index);
    } catch (err) {
      throw new Error(`dhcp6: cannot join ${ALL_DHCP_SERVERS} on ${this.#o.iface}: ${errText(err)}`);
    }
  }

  #closeSockets(): void {
    for (const slot of ["dhcp", "proxy"] as const) {
      try {
        this.#sockets[slot]?.close();
      } catch (err) {
        log.debug(literal(`closing a socket: ${errText(err)}`));
      }
      this.#sockets[slot] = null;
    }
  }

  #note(kind: string, level: ThrottledLevel, message: () => string, label?: string): void {
    this.#throttle.note(kind, level, () => literal(message()), label);
  }

  /** Runs the receive loop of `slot` until `stop()`; a bug that escapes it restarts it after a second. */
  async #supervise(slot: Slot): Promise<void> {
    while (!this.#stopping) {
      try {
        await this.#serve(slot);
      } catch (err) {
        if (this.#stopping) return;
        this.#note(`loop:${slot}`, "error", () => `receive loop failed, restarting it: ${errText(err)}`);
        await backoff(BACKOFF_LAST_MS, this.#abort.signal);
      }
    }
  }

  /** Binds `slot` again (and re-joins the group), backing off, until it works or `stop()`. */
  async #rebind(slot: Slot): Promise<Deno.DatagramConn | null> {
    let delay = 0;
    while (!this.#stopping) {
      try {
        const conn = this.#bind(slot);
        if (slot === "dhcp") {
          try {
            await this.#join(conn);
          } catch (err) {
            conn.close();
            throw err;
          }
        }
        this.#sockets[slot] = conn;
        this.#note(
          `rebound:${slot}`,
          "info",
          () => `socket UDP [${this.#hostOf(slot)}]:${this.#ports[slot]} is back`,
        );
        return conn;
      } catch (err) {
        this.#note(`rebind:${slot}`, "warn", () => `cannot re-bind yet: ${errText(err)}; retrying`);
      }
      delay = nextBackoff(delay);
      await backoff(delay, this.#abort.signal);
    }
    return null;
  }

  /** The receive loop of one socket: never gives up while the service runs. */
  async #serve(slot: Slot): Promise<void> {
    // the largest UDP payload: a datagram past 4 KiB (a relay chain, a long option list) is read whole,
    // never cut into a different, shorter message
    const buf = new Uint8Array(65_535);
    let delay = 0;
    while (!this.#stopping) {
      const conn = this.#sockets[slot] ?? await this.#rebind(slot);
      if (conn === null) return;
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
        const where = `UDP [${this.#hostOf(slot)}]:${this.#ports[slot]}`;
        if (socketGone(err)) {
          this.#note(`lost:${slot}`, "warn", () => `socket ${where} is gone (${errText(err)}): re-binding`);
          if (this.#sockets[slot] === conn) this.#sockets[slot] = null;
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
              : undefined,
          );
        }
        await backoff(delay, this.#abort.signal);
        continue;
      }
      const from: Incoming6 = {
        address: addr.hostname.replace(/%.*$/, ""),
        port: addr.port,
        iface: this.#o.iface,
        on: slot,
      };
      this.#sendAll(conn, this.responder.handle(data, from));
    }
  }

  /** Sends replies from `conn` without awaiting each one; link-local destinations get `%iface`. */
  #sendAll(conn: Deno.DatagramConn, replies: readonly Outgoing6[]): void {
    for (const out of replies) {
      const hostname = isLinkLocal6(out.address) && !out.address.includes("%")
        ? `${out.address}%${out.iface ?? this.#o.iface}`
        : out.address;
      const sending: Promise<void> = conn.send(out.bytes, { transport: "udp", hostname, port: out.port })
        .then(() => {}, (err) => {
          if (this.#stopping) return;
          this.#note(
            "send",
            "warn",
            () => `DHCPv6 send to [${hostname}]:${out.port} failed: ${errText(err)}`,
            "DHCPv6 sends failed",
          );
        })
        .finally(() => this.#sending.delete(sending));
      this.#sending.add(sending);
    }
  }
}

/**
 * Builds the DHCPv6 service from the shared context; null unless `--ipv6` with `--dhcp`/`--dhcp-proxy`.
 * The interface comes from `--interface` or the one interface with a routable IPv6 address.
 */
export const createDhcp6Service: ServiceFactory = (ctx) => {
  const c = ctx.config;
  if (!c.USE_IPV6 || !c.USE_DHCP) return null;
  let all: Ipv6Address[];
  let d: Ipv6Derived;
  try {
    all = ipv6Interfaces();
    d = deriveIpv6({
      iface: c.INTERFACE,
      server: c.DHCP6_SERVER_IP,
      begin: c.DHCP6_OFFER_BEGIN,
      end: c.DHCP6_OFFER_END,
      full: false,
    }, all);
  } catch (err) {
    const message = `dhcp6: ${errText(err)}`;
    return {
      name: "dhcp6",
      start: () => Promise.reject(new Error(message)),
      stop: async () => {},
      endpoints: () => [],
    };
  }
  const mac = all.find((a) => a.name === d.iface)?.mac ?? "02:00:00:00:00:01";
  return new Dhcp6Server({
    config: c,
    iface: d.iface,
    index: d.index,
    mac: mac === "00:00:00:00:00:00" ? "02:00:00:00:00:01" : mac,
    events: ctx.events,
    staticLeases: ctx.staticLeases,
    machines: ctx.machines,
  });
};
