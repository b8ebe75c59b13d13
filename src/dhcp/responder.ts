/**
 * The DHCP responder: one datagram in, the datagrams to send out. Full DHCP (RFC 2131) or proxyDHCP
 * (PXE 2.1), with the PXE boot-server port 4011. No sockets: its only state is the injected
 * {@linkcode LeaseStore} and clock, so every exchange is testable in-process. The boot file comes from
 * the boot policy (`policy.ts`), where a reply goes from `replyDestination` (`destination.ts`).
 *
 * @example
 * ```ts
 * const responder = new DhcpResponder({ config, now: () => clock });
 * await responder.leases.load();
 * for (const out of responder.handle(bytes, { hostname: "0.0.0.0", port: 68, on: "dhcp" })) send(out);
 * ```
 * @module
 */
import type { PxeConfig } from "../config.ts";
import type { BootEvents } from "../events.ts";
import type { LogThrottle, ThrottledLevel } from "../log_throttle.ts";
import { broadcastOf, inSubnet, networkOf } from "../net.ts";
import type { StaticLeases } from "../static_leases.ts";
import { type Destination, type Incoming, replyDestination, type ReplyKind } from "./destination.ts";
import { type BindRefusal, LeaseStore } from "./leases.ts";
import { errText, literal, log } from "./log.ts";
import {
  DhcpDecodeError,
  getIp,
  maxReplySize,
  MessageType,
  messageType,
  messageTypeName,
  Opt,
} from "./options.ts";
import { decodeDhcp, type DhcpPacket, encodeDhcp } from "./packet.ts";
import {
  type BootDecision,
  bootFileFor,
  type BootFiles,
  type BootPolicyOptions,
  type ClientInfo,
  describeClient,
  type PolicyConfig,
  policyOptionsFrom,
} from "./policy.ts";
import { proxyReply } from "./pxe.ts";
import { applyMachineDecision, type DhcpMachines } from "./machine.ts";
import { machineFacts } from "../machines/facts.ts";
import { leaseReply, nakReply } from "./replies.ts";

export type { Destination, Incoming } from "./destination.ts";

/** The config keys the DHCP service reads. */
export type DhcpConfig =
  & Pick<
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
  >
  & PolicyConfig;

/** Options of {@linkcode DhcpResponder}. */
export interface DhcpResponderOptions {
  config: DhcpConfig;
  staticLeases?: StaticLeases;
  events?: BootEvents;
  /** Per-family first-stage boot files; default from the config's NETBOOT_FILE_* keys. */
  bootFiles?: BootFiles;
  /** UEFI x64 clients get the signed shim; default the config's SECURE_BOOT. */
  secureBoot?: boolean;
  /** Answer only network-boot clients, like PyPXE (`--dhcp-pxe-only`). Default false. */
  pxeOnly?: boolean;
  /** Option 15 domain name, sent when set. */
  domain?: string;
  /** Port replies go to (default 68). */
  clientPort?: number;
  /** Port of the server and of relay agents (default DHCP_SERVER_PORT). */
  serverPort?: number;
  /** Where broadcast replies go (default 255.255.255.255; tests use 127.0.0.1). */
  broadcastAddress?: string;
  /** Clock in Unix milliseconds (default Date.now). */
  now?: () => number;
  /** Seconds an OFFER holds its address (default 60). */
  offerTime?: number;
  /** Seconds a DECLINEd address stays out of the pool (default 600). */
  declineTime?: number;
  /** The lease store; default {@linkcode leaseStoreFor} these options. */
  leases?: LeaseStore;
  /** Per-machine boot (`--machines`, `--boot-api`): its decision changes the boot file (`machine.ts`). */
  machines?: DhcpMachines;
}

/** One datagram to send. */
export interface Outgoing extends Destination {
  bytes: Uint8Array;
}

/** The text of a lease-store refusal, after the address. */
const REFUSED: Record<BindRefusal, string> = {
  "not-ours": "is not in our pool",
  taken: "is leased to another client",
  declined: "was declined",
  reserved: "is reserved for another client",
};

/**
 * The lease store of a DHCP config: the pool DHCP_OFFER_BEGIN..END minus the server, router, file server
 * and the subnet's network and broadcast addresses; static addresses reserved; LEASES_FILE (none in proxy
 * mode). Call `load()` before serving.
 */
export function leaseStoreFor(
  opts: DhcpResponderOptions,
  warn: (message: string) => void = (m) => log.warn(m),
): LeaseStore {
  const c = opts.config;
  const subnetBcast = broadcastOf(c.DHCP_SERVER_IP, c.DHCP_SUBNET);
  const network = networkOf(c.DHCP_SERVER_IP, c.DHCP_SUBNET);
  return new LeaseStore({
    begin: c.DHCP_OFFER_BEGIN,
    end: c.DHCP_OFFER_END,
    exclude: [c.DHCP_SERVER_IP, c.DHCP_ROUTER, c.DHCP_FILESERVER, c.DHCP_BROADCAST, subnetBcast, network]
      .filter((ip) => ip !== ""),
    reserved: reservationsOf(opts.staticLeases ?? new Map()),
    leaseTime: c.DHCP_LEASE_TIME,
    offerTime: opts.offerTime,
    declineTime: opts.declineTime,
    now: opts.now ?? Date.now,
    file: c.DHCP_MODE_PROXY ? "" : c.LEASES_FILE,
    warn,
  });
}

/** Answers single DHCP datagrams: the state handling of RFC 2131 and the PXE proxy, without sockets. */
export class DhcpResponder {
  readonly leases: LeaseStore;
  readonly #cfg: DhcpConfig;
  readonly #opts: DhcpResponderOptions;
  #static: StaticLeases;
  readonly #dns: string[];
  readonly #policy: BootPolicyOptions;
  readonly #net: { serverPort: number; clientPort: number; broadcast: string };
  readonly #now: () => number;
  #lastPoolWarning = -Infinity;
  readonly #throttle: LogThrottle | undefined;

  /**
   * Builds the responder (call `leases.load()` before serving). With `throttle` (owned and closed by the
   * caller), per-packet lines are rate-limited per kind.
   */
  constructor(opts: DhcpResponderOptions, throttle?: LogThrottle) {
    const c = opts.config;
    this.#throttle = throttle;
    this.#cfg = c;
    this.#opts = opts;
    this.#static = opts.staticLeases ?? new Map();
    this.#dns = c.DHCP_DNS.split(",").map((s) => s.trim()).filter((s) => s !== "");
    const policy = policyOptionsFrom(c);
    this.#policy = {
      ...policy,
      bootFiles: opts.bootFiles ?? policy.bootFiles,
      secureBoot: opts.secureBoot ?? policy.secureBoot,
    };
    this.#net = {
      serverPort: opts.serverPort ?? c.DHCP_SERVER_PORT,
      clientPort: opts.clientPort ?? 68,
      broadcast: opts.broadcastAddress ?? "255.255.255.255",
    };
    this.#now = opts.now ?? Date.now;
    this.leases = opts.leases ?? leaseStoreFor({ ...opts, now: this.#now });
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

  /**
   * What `handle(bytes)` must wait for first: the boot API's answer for this machine, when per-machine
   * boot asks one that is not cached; null when `handle` can answer at once. Never rejects.
   */
  prepare(bytes: Uint8Array): Promise<unknown> | null {
    const machines = this.#opts.machines;
    if (machines === undefined || !machines.enabled) return null;
    try {
      const facts = machineFacts(decodeDhcp(bytes));
      return machines.decideNow(facts) === null ? machines.decide(facts) : null;
    } catch {
      return null; // handle() reports the malformed datagram
    }
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
      const [kind, level, label] = err instanceof DhcpDecodeError
        ? ["dropped", "debug", "messages dropped"] as const
        : ["failed", "warn", "messages dropped (handling failed)"] as const;
      this.#note(kind, level, () => `dropped message from ${req.mac}: ${reason}`, label);
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
    if (this.#cfg.DHCP_MODE_PROXY) return this.#proxyDiscover(req, from);
    switch (type) {
      case MessageType.DISCOVER:
        return this.#discover(req, from);
      case MessageType.REQUEST:
        return this.#request(req, from);
      case MessageType.DECLINE:
        return this.#decline(req);
      case MessageType.RELEASE:
        return this.#release(req);
      case MessageType.INFORM:
        return this.#inform(req, from);
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
    extra: { decision?: BootDecision; ip?: string; reason?: string; server?: string },
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
      ...(extra.server === undefined ? {} : { server: extra.server }),
    });
  }

  /** The client as the policy sees it and the policy's answer for it (warnings logged). */
  #decide(req: DhcpPacket): { client: ClientInfo; decision: BootDecision } {
    const client = describeClient(req);
    let decision = bootFileFor(client, { ...this.#policy, staticRom: this.#static.get(req.mac)?.rom });
    const machines = this.#opts.machines;
    if (machines?.enabled) {
      const facts = machineFacts(req, req.ciaddr === "0.0.0.0" ? {} : { ip: req.ciaddr });
      machines.seen(facts);
      // not cached (the boot API's answer was not there in time): the groups decide this once
      const machine = machines.decideNow(facts, true) ?? { kind: "default" as const };
      decision = applyMachineDecision(decision, machine, { ...client, mac: req.mac }, this.#policy);
    }
    if (decision.warning) {
      const warning = decision.warning;
      this.#note("policy", "warn", () => `${req.mac}: ${warning}`, "boot-policy warnings");
    }
    return { client, decision };
  }

  /** `reply` encoded for `req`'s size limit and addressed by the RFC 2131 §4.1 rule. */
  #send(req: DhcpPacket, reply: DhcpPacket, kind: ReplyKind, from: Incoming): Outgoing {
    const { broadcastFlag, ...to } = replyDestination(req, kind, from, this.#net);
    if (broadcastFlag) reply.flags |= 0x8000;
    return { bytes: encodeDhcp(reply, { maxSize: maxReplySize(req) }), ...to };
  }

  // ---- full DHCP ----

  #discover(req: DhcpPacket, from: Incoming): Outgoing[] {
    const { client, decision } = this.#decide(req);
    if (this.#opts.pxeOnly && !decision.booting) return this.#drop(req, "not a PXE client (--dhcp-pxe-only)");
    const ip = this.leases.offer(req.mac, { requested: safeIp(req, Opt.REQUESTED_IP), ipxe: client.ipxe });
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
    return [this.#send(req, reply, "lease", from)];
  }

  #request(req: DhcpPacket, from: Incoming): Outgoing[] {
    const c = this.#cfg;
    const serverId = safeIp(req, Opt.SERVER_ID);
    const requested = safeIp(req, Opt.REQUESTED_IP);
    const { client, decision } = this.#decide(req);
    if (this.#opts.pxeOnly && !decision.booting) return this.#drop(req, "not a PXE client (--dhcp-pxe-only)");
    const binding = this.#static.get(req.mac);
    let ip: string;
    let state: string;
    if (serverId !== undefined) {
      if (serverId !== c.DHCP_SERVER_IP) {
        this.leases.cancelOffer(req.mac);
        log.debug("{mac} chose server {server}", { mac: req.mac, server: serverId });
        const other = { decision: { ...decision, file: undefined }, server: serverId };
        this.#emit(req, "none", { ...other, reason: `chose the DHCP server ${serverId}` });
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
    let why: string | null = null;
    if (!onSubnet) why = `${ip} is not on this network`;
    else if (binding?.ipaddr && binding.ipaddr !== ip) {
      why = `${req.mac} has the static address ${binding.ipaddr}`;
    } else {
      const refusal = this.leases.bind(req.mac, ip, { ipxe: client.ipxe });
      if (refusal !== null) why = `${ip} ${REFUSED[refusal]}`;
    }
    if (why !== null) {
      this.#emit(req, "NAK", { decision, ip, reason: why });
      return [this.#send(req, nakReply(req, this.#cfg.DHCP_SERVER_IP, why), "nak", from)];
    }
    const reply = this.#leaseReply(req, MessageType.ACK, ip, decision);
    this.#emit(req, "ACK", { decision, ip, reason: state === "selecting" ? undefined : state });
    return [this.#send(req, reply, "lease", from)];
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

  #inform(req: DhcpPacket, from: Incoming): Outgoing[] {
    const { decision } = this.#decide(req);
    const reply = this.#leaseReply(req, MessageType.ACK, undefined, decision);
    this.#emit(req, "ACK", { decision, ip: req.ciaddr, reason: "inform" });
    return [this.#send(req, reply, "lease", from)];
  }

  /** OFFER/ACK with an address (or, for INFORM, none): see {@linkcode leaseReply}. */
  #leaseReply(req: DhcpPacket, type: number, ip: string | undefined, decision: BootDecision): DhcpPacket {
    const opts = { config: this.#cfg, binding: this.#static.get(req.mac), dns: this.#dns };
    return leaseReply(req, type, ip, decision, { ...opts, domain: this.#opts.domain });
  }

  // ---- proxyDHCP ----

  /** Port 67 in proxy mode: a proxy OFFER to a PXE DISCOVER, a proxy ACK to a REQUEST naming us. */
  #proxyDiscover(req: DhcpPacket, from: Incoming): Outgoing[] {
    const type = messageType(req);
    if (type !== MessageType.DISCOVER && type !== MessageType.REQUEST) return [];
    if (type === MessageType.REQUEST && safeIp(req, Opt.SERVER_ID) !== this.#cfg.DHCP_SERVER_IP) return [];
    const { decision } = this.#decide(req);
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
    return [this.#send(req, reply, "proxy", from)];
  }

  /** Port 4011: the boot server's ACK to a PXE REQUEST (or INFORM). */
  #proxyRequest(req: DhcpPacket, from: Incoming): Outgoing[] {
    const type = messageType(req);
    if (type !== MessageType.REQUEST && type !== MessageType.INFORM) {
      return this.#drop(req, "port 4011 takes REQUESTs");
    }
    const { decision } = this.#decide(req);
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
    return [this.#send(req, reply, "proxy", from)];
  }
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

/** MAC -> IP of the static leases that fix an address. */
function reservationsOf(leases: StaticLeases): Map<string, string> {
  const reserved = new Map<string, string>();
  for (const [mac, b] of leases) if (b.ipaddr) reserved.set(mac, b.ipaddr);
  return reserved;
}
