/**
 * The DHCP service: full DHCP (RFC 2131) or proxyDHCP (PXE 2.1) on UDP 67, plus the PXE boot-server port
 * 4011 in proxy mode. `DhcpResponder` turns one datagram into the datagrams to send (no sockets: testable
 * in-process); `DhcpServer` binds the sockets (DESIGN.md §4: receive on 0.0.0.0:67, send broadcasts from a
 * socket bound to the server's address), feeds the responder and sends what it returns.
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
import { getLogger } from "@logtape/logtape";
import type { PxeConfig } from "../config.ts";
import type { BootEvents } from "../events.ts";
import { backoff, isResourceExhaustion } from "../limits.ts";
import { LogThrottle, type ThrottledLevel } from "../log_throttle.ts";
import { broadcastOf, describeBindError, inSubnet, ipToInt } from "../net.ts";
import type { Service, ServiceFactory } from "../server.ts";
import { loadStaticLeases, type StaticBinding, type StaticLeases } from "../static_leases.ts";
import { LeaseStore } from "./leases.ts";
import {
  DhcpDecodeError,
  getIp,
  getU8List,
  maxReplySize,
  MessageType,
  messageType,
  messageTypeName,
  Opt,
  setOption,
} from "./options.ts";
import { decodeDhcp, type DhcpPacket, encodeDhcp, newReply, setBootFile } from "./packet.ts";
import {
  type BootDecision,
  bootFileFor,
  type BootFiles,
  describeClient,
  policyOptionsFrom,
} from "./policy.ts";
import { proxyReply, pxeVendorOptions } from "./pxe.ts";

/** The config keys the DHCP service reads. */
export type DhcpConfig = Pick<
  PxeConfig,
  | "DHCP_MODE_PROXY"
  | "DHCP_SERVER_IP"
  | "DHCP_SERVER_PORT"
  | "DHCP_OFFER_BEGIN"
  | "DHCP_OFFER_END"
  | "DHCP_SUBNET"
  | "DHCP_ROUTER"
  | "DHCP_DNS"
  | "DHCP_BROADCAST"
  | "DHCP_FILESERVER"
  | "DHCP_WHITELIST"
  | "DHCP_LEASE_TIME"
  | "LEASES_FILE"
  | "USE_IPXE"
  | "USE_HTTP"
  | "HTTP_PORT"
  | "NETBOOT_FILE"
>;

/** Options of {@linkcode DhcpResponder} and {@linkcode DhcpServer}. */
export interface DhcpServerOptions {
  config: DhcpConfig;
  /** The static-leases file, reloaded on SIGHUP. */
  staticConfigPath?: string;
  staticLeases?: StaticLeases;
  events?: BootEvents;
  /** Per-family first-stage boot files (NETBOOT_FILE_BIOS, _EFI32, _EFI64, _ARM32, _ARM64 when wired). */
  bootFiles?: BootFiles;
  /** SECURE_BOOT: UEFI x64 clients get the signed shim. */
  secureBoot?: boolean;
  /** Answer only network-boot clients, like PyPXE (`--dhcp-pxe-only`). Default false. */
  pxeOnly?: boolean;
  /** Option 15 domain name, sent when set. */
  domain?: string;
  /** Port replies go to (default 68). */
  clientPort?: number;
  /** Port to listen on (default DHCP_SERVER_PORT). */
  serverPort?: number;
  /** PXE boot-server port opened in proxy mode (default 4011). */
  proxyPort?: number;
  /** Address of the receiving socket (default 0.0.0.0). */
  listenAddress?: string;
  /** Where broadcast replies go (default 255.255.255.255; tests use 127.0.0.1). */
  broadcastAddress?: string;
  /** Clock in Unix milliseconds (default Date.now). */
  now?: () => number;
  /** Seconds an OFFER holds its address (default 60). */
  offerTime?: number;
  /** Seconds a DECLINEd address stays out of the pool (default 600). */
  declineTime?: number;
  /** Opens the sockets; default `Deno.listenDatagram` (tests wrap it to inject failures). */
  listenDatagram?: ListenDatagram;
}

/** Opens a UDP socket, like `Deno.listenDatagram`. */
export type ListenDatagram = (options: Deno.UdpListenOptions & { transport: "udp" }) => Deno.DatagramConn;

/** One datagram to send. */
export interface Outgoing {
  bytes: Uint8Array;
  hostname: string;
  port: number;
  /** `broadcast`/`unicast` go out of the port-67 sockets, `proxy` out of the 4011 socket. */
  via: "broadcast" | "unicast" | "proxy";
}

/** Where a datagram came in. */
export interface Incoming {
  hostname: string;
  port: number;
  /** `dhcp` for port 67, `proxy` for 4011. */
  on: "dhcp" | "proxy";
}

const log = getLogger(["pypxe", "dhcp"]);

/** Backoff after a failed receive or re-bind: doubles from the first to the last, reset by a datagram. */
const BACKOFF_FIRST_MS = 50;
const BACKOFF_LAST_MS = 1000;

function nextBackoff(delay: number): number {
  return delay === 0 ? BACKOFF_FIRST_MS : Math.min(BACKOFF_LAST_MS, delay * 2);
}

/** True when a receive failed because the socket itself is gone (closed underneath, cancelled). */
function socketGone(err: unknown): boolean {
  return err instanceof Deno.errors.BadResource || err instanceof Deno.errors.Interrupted ||
    err instanceof Deno.errors.NotConnected;
}

/** `text` as a LogTape message without placeholders (client-sent strings may contain braces). */
function literal(text: string): string {
  return text.includes("{") ? text.replace(/[{}]/g, "$&$&") : text;
}

function errText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** Answers single DHCP datagrams: the state handling of RFC 2131 and the PXE proxy, without sockets. */
export class DhcpResponder {
  readonly leases: LeaseStore;
  readonly #cfg: DhcpConfig;
  readonly #opts: DhcpServerOptions;
  #static: StaticLeases;
  readonly #dns: string[];
  readonly #clientPort: number;
  readonly #serverPort: number;
  readonly #bcast: string;
  readonly #now: () => number;
  #lastPoolWarning = -Infinity;
  readonly #throttle: LogThrottle | undefined;

  /**
   * Builds the responder and its lease store (call `leases.load()` before serving). With `throttle`
   * (owned and closed by the caller), per-packet lines are rate-limited per kind.
   */
  constructor(opts: DhcpServerOptions, throttle?: LogThrottle) {
    const c = opts.config;
    this.#throttle = throttle;
    this.#cfg = c;
    this.#opts = opts;
    this.#static = opts.staticLeases ?? new Map();
    this.#dns = c.DHCP_DNS.split(",").map((s) => s.trim()).filter((s) => s !== "");
    this.#clientPort = opts.clientPort ?? 68;
    this.#serverPort = opts.serverPort ?? c.DHCP_SERVER_PORT;
    this.#bcast = opts.broadcastAddress ?? "255.255.255.255";
    this.#now = opts.now ?? Date.now;
    const reserved = reservationsOf(this.#static);
    const subnetBcast = broadcastOf(c.DHCP_SERVER_IP, c.DHCP_SUBNET);
    const network = intNetwork(c.DHCP_SERVER_IP, c.DHCP_SUBNET);
    this.leases = new LeaseStore({
      begin: c.DHCP_OFFER_BEGIN,
      end: c.DHCP_OFFER_END,
      exclude: [c.DHCP_SERVER_IP, c.DHCP_ROUTER, c.DHCP_FILESERVER, c.DHCP_BROADCAST, subnetBcast, network],
      reserved,
      leaseTime: c.DHCP_LEASE_TIME,
      offerTime: opts.offerTime,
      declineTime: opts.declineTime,
      now: this.#now,
      file: c.DHCP_MODE_PROXY ? "" : c.LEASES_FILE,
      warn: (m) => log.warn(m),
    });
  }

  /** Swaps in new static leases (SIGHUP reload); their addresses become reservations at once. */
  setStaticLeases(leases: StaticLeases): void {
    this.#static = leases;
    this.leases.setReserved(reservationsOf(leases));
  }

  /** A per-packet line: through the throttle when there is one, else logged as it is. */
  #note(kind: string, level: ThrottledLevel, message: () => string, label?: string): void {
    if (this.#throttle) this.#throttle.note(kind, level, () => literal(message()), label);
    else log[level](literal(message()));
  }

  /** Handles one datagram; returns what to send. Never throws: bad input is logged at DEBUG and dropped. */
  handle(bytes: Uint8Array, from: Incoming): Outgoing[] {
    let req: DhcpPacket;
    try {
      req = decodeDhcp(bytes);
    } catch (err) {
      this.#note(
        "malformed",
        "debug",
        () => `dropped ${bytes.length}-byte datagram from ${from.hostname}:${from.port}: ${errText(err)}`,
        "malformed datagrams dropped",
      );
      return [];
    }
    try {
      return this.#dispatch(req, from);
    } catch (err) {
      const reason = errText(err);
      if (err instanceof DhcpDecodeError) {
        this.#note(
          "dropped",
          "debug",
          () => `dropped message from ${req.mac}: ${reason}`,
          "messages dropped",
        );
      } else {
        this.#note(
          "failed",
          "warn",
          () => `dropped message from ${req.mac}: ${reason}`,
          "messages dropped (handling failed)",
        );
      }
      return [];
    }
  }

  #dispatch(req: DhcpPacket, from: Incoming): Outgoing[] {
    const type = messageType(req);
    log.trace("{from} {type} from {mac} xid {xid}", () => ({
      from: `${from.hostname}:${from.port}`,
      type: type === undefined ? "BOOTP" : messageTypeName(type),
      mac: req.mac,
      xid: req.xid,
    }));
    if (req.op !== 1) return this.#drop(req, "not a BOOTREQUEST");
    if (type === undefined) return this.#drop(req, "no DHCP message type (option 53)");
    if (req.hlen === 0 || req.chaddr.every((b) => b === 0)) {
      return this.#drop(req, "no client hardware address");
    }
    if (this.#cfg.DHCP_WHITELIST && !this.#static.has(req.mac)) {
      this.#emit(req, "none", { reason: "not in the whitelist" });
      return [];
    }
    if (from.on === "proxy") return this.#proxyRequest(req, from);
    if (this.#cfg.DHCP_MODE_PROXY) return this.#proxyDiscover(req);
    switch (type) {
      case MessageType.DISCOVER:
        return this.#discover(req);
      case MessageType.REQUEST:
        return this.#request(req);
      case MessageType.DECLINE:
        return this.#decline(req);
      case MessageType.RELEASE:
        return this.#release(req);
      case MessageType.INFORM:
        return this.#inform(req);
      default:
        return this.#drop(req, `${messageTypeName(type)} is not a client message`);
    }
  }

  #drop(req: DhcpPacket, reason: string): Outgoing[] {
    this.#note("dropped", "debug", () => `dropped message from ${req.mac}: ${reason}`, "messages dropped");
    return [];
  }

  #emit(
    req: DhcpPacket,
    sent: string,
    extra: { decision?: BootDecision; ip?: string; reason?: string },
  ): void {
    const type = messageType(req);
    this.#opts.events?.emit({
      kind: "dhcp",
      mac: req.mac,
      received: type === undefined ? "BOOTP" : messageTypeName(type),
      sent,
      client: extra.decision?.booting ? extra.decision.label : undefined,
      ip: extra.ip,
      bootFile: extra.decision?.file,
      reason: extra.reason,
    });
  }

  #decide(req: DhcpPacket): BootDecision {
    const c = this.#cfg;
    const decision = bootFileFor(describeClient(req), {
      useIpxe: c.USE_IPXE,
      useHttp: c.USE_HTTP,
      httpPort: c.HTTP_PORT,
      fileServer: c.DHCP_FILESERVER,
      netbootFile: c.NETBOOT_FILE,
      bootFiles: this.#opts.bootFiles,
      secureBoot: this.#opts.secureBoot,
      staticRom: this.#static.get(req.mac)?.rom,
    });
    if (decision.warning) {
      const warning = decision.warning;
      this.#note("policy", "warn", () => `${req.mac}: ${warning}`, "boot-policy warnings");
    }
    return decision;
  }

  // ---- full DHCP ----

  #discover(req: DhcpPacket): Outgoing[] {
    const decision = this.#decide(req);
    if (this.#opts.pxeOnly && !decision.booting) return this.#drop(req, "not a PXE client (--dhcp-pxe-only)");
    const ip = this.leases.offer(req.mac, {
      requested: safeIp(req, Opt.REQUESTED_IP),
      ipxe: isIpxeDecision(decision),
    });
    if (ip === null) {
      const now = this.#now();
      if (now - this.#lastPoolWarning > 10_000) {
        this.#lastPoolWarning = now;
        log.warn("address pool {begin}-{end} is exhausted: not answering DISCOVERs", {
          begin: this.#cfg.DHCP_OFFER_BEGIN,
          end: this.#cfg.DHCP_OFFER_END,
        });
      }
      this.#emit(req, "none", { decision, reason: "pool exhausted" });
      return [];
    }
    const reply = this.#leaseReply(req, MessageType.OFFER, ip, decision);
    this.#emit(req, "OFFER", { decision, ip });
    return [this.#route(req, reply)];
  }

  #request(req: DhcpPacket): Outgoing[] {
    const c = this.#cfg;
    const serverId = safeIp(req, Opt.SERVER_ID);
    const requested = safeIp(req, Opt.REQUESTED_IP);
    const decision = this.#decide(req);
    if (this.#opts.pxeOnly && !decision.booting) return this.#drop(req, "not a PXE client (--dhcp-pxe-only)");
    const binding = this.#static.get(req.mac);
    let ip: string;
    let state: string;
    if (serverId !== undefined) {
      if (serverId !== c.DHCP_SERVER_IP) {
        this.leases.cancelOffer(req.mac);
        log.debug("{mac} chose server {server}", { mac: req.mac, server: serverId });
        return [];
      }
      state = "selecting";
      ip = requested ?? req.ciaddr;
    } else if (req.ciaddr === "0.0.0.0") {
      if (requested === undefined) return this.#drop(req, "REQUEST without requested address or ciaddr");
      state = "init-reboot";
      ip = requested;
    } else {
      state = "renewing";
      ip = req.ciaddr;
    }
    const subnet = binding?.subnet ?? c.DHCP_SUBNET;
    const onSubnet = inSubnet(ip, binding?.ipaddr ?? c.DHCP_SERVER_IP, subnet) ||
      inSubnet(ip, c.DHCP_SERVER_IP, c.DHCP_SUBNET);
    if (state === "renewing" && !onSubnet) {
      return this.#drop(req, `renewing ${ip}, which is not on our network`);
    }
    let refusal: string | null = null;
    if (!onSubnet) refusal = `${ip} is not on this network`;
    else if (binding?.ipaddr && binding.ipaddr !== ip) {
      refusal = `${req.mac} has the static address ${binding.ipaddr}`;
    } else refusal = this.leases.bind(req.mac, ip, { ipxe: isIpxeDecision(decision) });
    if (refusal !== null) {
      const why = refusal === "not-ours"
        ? `${ip} is not in our pool`
        : refusal === "taken"
        ? `${ip} is leased to another client`
        : refusal === "declined"
        ? `${ip} was declined`
        : refusal === "reserved"
        ? `${ip} is reserved for another client`
        : refusal;
      this.#emit(req, "NAK", { decision, ip, reason: why });
      return [this.#nak(req, why)];
    }
    const reply = this.#leaseReply(req, MessageType.ACK, ip, decision);
    this.#emit(req, "ACK", { decision, ip, reason: state === "selecting" ? undefined : state });
    return [this.#route(req, reply)];
  }

  #decline(req: DhcpPacket): Outgoing[] {
    const serverId = safeIp(req, Opt.SERVER_ID);
    if (serverId !== undefined && serverId !== this.#cfg.DHCP_SERVER_IP) return [];
    const ip = safeIp(req, Opt.REQUESTED_IP);
    if (ip === undefined) return this.#drop(req, "DECLINE without requested address (option 50)");
    if (this.leases.decline(req.mac, ip)) {
      log.warn("{mac} declined {ip} (another host uses it?): kept out of the pool for a while", {
        mac: req.mac,
        ip,
      });
      this.#emit(req, "none", { ip, reason: "address declined" });
    }
    return [];
  }

  #release(req: DhcpPacket): Outgoing[] {
    const serverId = safeIp(req, Opt.SERVER_ID);
    if (serverId !== undefined && serverId !== this.#cfg.DHCP_SERVER_IP) return [];
    if (this.leases.release(req.mac, req.ciaddr)) {
      this.#emit(req, "none", { ip: req.ciaddr, reason: "released" });
    }
    return [];
  }

  #inform(req: DhcpPacket): Outgoing[] {
    const decision = this.#decide(req);
    const reply = this.#leaseReply(req, MessageType.ACK, undefined, decision);
    this.#emit(req, "ACK", { decision, ip: req.ciaddr, reason: "inform" });
    return [this.#route(req, reply)];
  }

  /** OFFER/ACK with an address (or, for INFORM, none): network options, lease times, boot file. */
  #leaseReply(req: DhcpPacket, type: number, ip: string | undefined, decision: BootDecision): DhcpPacket {
    const c = this.#cfg;
    const binding: StaticBinding | undefined = this.#static.get(req.mac);
    const reply = newReply(req);
    if (ip === undefined) reply.ciaddr = req.ciaddr;
    else reply.yiaddr = ip;
    const booting = decision.booting && decision.file !== undefined;
    if (booting) reply.siaddr = c.DHCP_FILESERVER;
    setOption(reply, Opt.MESSAGE_TYPE, type);
    setOption(reply, Opt.SERVER_ID, c.DHCP_SERVER_IP);
    if (ip !== undefined) {
      const lease = c.DHCP_LEASE_TIME;
      setOption(reply, Opt.LEASE_TIME, lease);
      setOption(reply, Opt.RENEWAL_TIME, Math.floor(lease / 2));
      setOption(reply, Opt.REBINDING_TIME, Math.floor(lease * 7 / 8));
    }
    const subnet = binding?.subnet ?? c.DHCP_SUBNET;
    setOption(reply, Opt.SUBNET_MASK, subnet);
    const bcast = binding?.subnet || binding?.ipaddr
      ? broadcastOf(binding.ipaddr ?? ip ?? c.DHCP_SERVER_IP, subnet)
      : c.DHCP_BROADCAST;
    setOption(reply, Opt.BROADCAST, bcast);
    setOption(reply, Opt.ROUTER, binding?.router ?? c.DHCP_ROUTER);
    const dns = binding?.dns ? [...binding.dns] : this.#dns;
    if (dns.length > 0) setOption(reply, Opt.DNS, dns);
    if (this.#opts.domain) setOption(reply, Opt.DOMAIN_NAME, this.#opts.domain);
    const asked = safeList(req, Opt.PARAMETER_LIST);
    if (booting) {
      if (decision.vendorClass === "HTTPClient") setOption(reply, Opt.VENDOR_CLASS, "HTTPClient");
      const pxe = pxeVendorOptions(req, decision, false);
      if (pxe) reply.options.set(Opt.VENDOR_SPECIFIC, pxe);
      if (asked.includes(Opt.TFTP_SERVER)) setOption(reply, Opt.TFTP_SERVER, c.DHCP_FILESERVER);
      setBootFile(reply, decision.file!);
    }
    const clientId = req.options.get(Opt.CLIENT_ID);
    if (clientId) reply.options.set(Opt.CLIENT_ID, clientId.slice());
    return reply;
  }

  #nak(req: DhcpPacket, why: string): Outgoing {
    const reply = newReply(req);
    setOption(reply, Opt.MESSAGE_TYPE, MessageType.NAK);
    setOption(reply, Opt.SERVER_ID, this.#cfg.DHCP_SERVER_IP);
    setOption(reply, 56, why);
    const clientId = req.options.get(Opt.CLIENT_ID);
    if (clientId) reply.options.set(Opt.CLIENT_ID, clientId.slice());
    if (req.giaddr !== "0.0.0.0") {
      reply.flags |= 0x8000;
      return this.#out(req, reply, req.giaddr, this.#serverPort, "unicast");
    }
    return this.#out(req, reply, this.#bcast, this.#clientPort, "broadcast");
  }

  /** RFC 2131 4.1: relay -> relay:67; ciaddr -> unicast; else broadcast (no ARP injection from userland). */
  #route(req: DhcpPacket, reply: DhcpPacket): Outgoing {
    if (req.giaddr !== "0.0.0.0") return this.#out(req, reply, req.giaddr, this.#serverPort, "unicast");
    if (req.ciaddr !== "0.0.0.0") return this.#out(req, reply, req.ciaddr, this.#clientPort, "unicast");
    return this.#out(req, reply, this.#bcast, this.#clientPort, "broadcast");
  }

  #out(req: DhcpPacket, reply: DhcpPacket, hostname: string, port: number, via: Outgoing["via"]): Outgoing {
    return { bytes: encodeDhcp(reply, { maxSize: maxReplySize(req) }), hostname, port, via };
  }

  // ---- proxyDHCP ----

  #proxyDiscover(req: DhcpPacket): Outgoing[] {
    const type = messageType(req);
    if (type !== MessageType.DISCOVER && type !== MessageType.REQUEST) return [];
    if (type === MessageType.REQUEST && safeIp(req, Opt.SERVER_ID) !== this.#cfg.DHCP_SERVER_IP) return [];
    const decision = this.#decide(req);
    if (!decision.booting) return this.#drop(req, "proxy mode: not a PXE client");
    if (decision.file === undefined) {
      this.#emit(req, "none", { decision, reason: decision.warning });
      return [];
    }
    const replyType = type === MessageType.DISCOVER ? MessageType.OFFER : MessageType.ACK;
    const reply = proxyReply(req, { ...decision, file: decision.file }, replyType, {
      serverIp: this.#cfg.DHCP_SERVER_IP,
      fileServer: this.#cfg.DHCP_FILESERVER,
    });
    this.#emit(req, replyType === MessageType.OFFER ? "proxy OFFER" : "proxy ACK", { decision });
    if (req.giaddr !== "0.0.0.0") return [this.#out(req, reply, req.giaddr, this.#serverPort, "unicast")];
    return [this.#out(req, reply, this.#bcast, this.#clientPort, "broadcast")];
  }

  #proxyRequest(req: DhcpPacket, from: Incoming): Outgoing[] {
    const type = messageType(req);
    if (type !== MessageType.REQUEST && type !== MessageType.INFORM) {
      return this.#drop(req, "port 4011 takes REQUESTs");
    }
    const decision = this.#decide(req);
    if (!decision.booting) return this.#drop(req, "port 4011: not a PXE client");
    if (decision.file === undefined) {
      this.#emit(req, "none", { decision, reason: decision.warning });
      return [];
    }
    const reply = proxyReply(req, { ...decision, file: decision.file }, MessageType.ACK, {
      serverIp: this.#cfg.DHCP_SERVER_IP,
      fileServer: this.#cfg.DHCP_FILESERVER,
    });
    this.#emit(req, "ACK (4011)", { decision, ip: req.ciaddr === "0.0.0.0" ? undefined : req.ciaddr });
    const host = from.hostname === "0.0.0.0" ? req.ciaddr : from.hostname;
    return [this.#out(req, reply, host, from.port, "proxy")];
  }
}

function intNetwork(ip: string, mask: string): string {
  const n = ((ipToInt(ip) ?? 0) & (ipToInt(mask) ?? 0)) >>> 0;
  return [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join(".");
}

/** An IP option, or undefined when absent or malformed. */
function safeIp(req: DhcpPacket, code: number): string | undefined {
  try {
    return getIp(req, code);
  } catch (err) {
    log.debug("{mac}: option {code} ignored: {reason}", { mac: req.mac, code, reason: String(err) });
    return undefined;
  }
}

function safeList(req: DhcpPacket, code: number): number[] {
  return getU8List(req, code) ?? [];
}

function isIpxeDecision(d: BootDecision): boolean {
  return d.label.startsWith("iPXE");
}

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
    this.responder = new DhcpResponder(opts, this.#throttle);
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
      log.error(
        `static leases not reloaded, keeping the previous ones: ${err instanceof Error ? err.message : err}`,
      );
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
    const buf = new Uint8Array(4096);
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
      const replies = this.responder.handle(data, { hostname: addr.hostname, port: addr.port, on });
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

/** MAC -> IP of the static leases that fix an address. */
function reservationsOf(leases: StaticLeases): Map<string, string> {
  const reserved = new Map<string, string>();
  for (const [mac, b] of leases) if (b.ipaddr) reserved.set(mac, b.ipaddr);
  return reserved;
}

/** Builds the DHCP service from the shared context; null when DHCP is off (USE_DHCP false). */
export const createDhcpService: ServiceFactory = (ctx) => {
  const c = ctx.config;
  if (!c.USE_DHCP) return null;
  return new DhcpServer({
    config: c,
    staticLeases: ctx.staticLeases,
    staticConfigPath: c.STATIC_CONFIG,
    events: ctx.events,
    pxeOnly: c.DHCP_PXE_ONLY,
    domain: c.DHCP_DOMAIN === "" ? undefined : c.DHCP_DOMAIN,
    bootFiles: policyOptionsFrom(c).bootFiles,
    secureBoot: c.SECURE_BOOT,
  });
};
