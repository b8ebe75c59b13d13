/**
 * The DHCPv6 responder (RFC 8415): one datagram in, the datagrams to send out. Full mode hands out IA_NA
 * addresses from a pool (`Leases6`) plus boot options; proxy mode sends boot options only (no IA_NA: the
 * site's DHCPv6 server gives the address) and answers boot clients' Requests on port 4011 as EDK2's PXEv6
 * sends them. Relayed messages are answered through the relay in RELAY-REPL. No sockets: its only state is
 * the injected lease store and clock. The boot file comes from the IPv4 boot policy (`bootFileFor`), fed
 * by `describeClient6`.
 *
 * @example
 * ```ts
 * const responder = new Dhcp6Responder({ mode: "full", serverDuid: serverDuidFromMac("02:00:00:77:00:01"),
 *   fileServer: "2001:db8::1", useHttp: false, useIpxe: true, netbootFile: "boot.ipxe",
 *   pool: { begin: "2001:db8::100", end: "2001:db8::1ff" } });
 * await responder.leases?.load();
 * for (const out of responder.handle(bytes, { address: "fe80::5054:ff:fe77:66", port: 546 })) send(out);
 * ```
 * @module
 */
import { getLogger } from "@logtape/logtape";
import type { BootEvents } from "../events.ts";
import { applyMachineDecision, type DhcpMachines } from "../dhcp/machine.ts";
import { machineFacts6 } from "../machines/facts.ts";
import { type BootDecision, bootFileFor, type BootFiles, type BootPolicyOptions } from "../dhcp/policy.ts";
import { clientId, iaAddresses, iaNas, rapidCommit, requestedOptions } from "./accessors.ts";
import { canonicalIpv6, ipv6ToBig, Leases6 } from "./leases6.ts";
import { encodeDuid, HW_ETHERNET } from "./duid.ts";
import {
  type Dhcp6Option,
  getOption6,
  MessageType6,
  messageTypeName6,
  Opt6,
  StatusCode6,
} from "./options.ts";
import {
  decodeDhcp6,
  Dhcp6DecodeError,
  type Dhcp6Message,
  type Dhcp6Packet,
  encodeDhcp6,
  unwrapRelay,
  wrapReply,
} from "./packet.ts";
import { type Client6Info, describeClient6 } from "./policy.ts";
import {
  bootOptions,
  iaWithAddress,
  iaWithStatus,
  type Lifetimes,
  statusOption,
  urlHost,
} from "./replies6.ts";
import { encodeAddressList } from "./values.ts";

/** Where a datagram came from. */
export interface Incoming6 {
  /** Source address: the client's link-local address, or the relay's address (zone `%if` allowed). */
  address: string;
  port: number;
  /** The arrival interface (name or index), passed through to the reply for link-local scoping. */
  iface?: string;
  /** `"proxy"` for the boot-server port 4011; default `"dhcp"` (547). */
  on?: "dhcp" | "proxy";
}

/** One datagram to send. */
export interface Outgoing6 {
  bytes: Uint8Array;
  address: string;
  port: number;
  /** The interface the request came in on (scope for a link-local destination). */
  iface?: string;
}

/** The per-packet logger (LogTape's `["pypxe","dhcp6"]` by default). */
export interface Log6 {
  debug(message: string): void;
  info(message: string): void;
  warn(message: string): void;
}

/** Options of {@linkcode Dhcp6Responder}. */
export interface Dhcp6ResponderOptions {
  /** `"full"`: addresses and boot options; `"proxy"`: boot options only. */
  mode: "full" | "proxy";
  /** The server's DUID as on the wire (see {@linkcode serverDuidFromMac}). */
  serverDuid: Uint8Array;
  /** The file server's IPv6 address (bracketed in URLs by the responder). */
  fileServer: string;
  /** HTTP_PORT (default 80). */
  httpPort?: number;
  useHttp: boolean;
  useIpxe: boolean;
  /** NETBOOT_FILE (pxelinux.0, boot.ipxe, boot.http.ipxe). */
  netbootFile: string;
  bootFiles?: BootFiles;
  secureBoot?: boolean;
  /** Full mode's address pool; ignored when `leases` is given. */
  pool?: { begin: string; end: string };
  /** Preferred and valid lifetimes in seconds (default 3600 each); ignored when `leases` is given. */
  preferredLifetime?: number;
  validLifetime?: number;
  /** Lease file for a store built here ("" or undefined: memory only). */
  leasesFile?: string;
  /** The lease store (full mode); default one built from `pool`. */
  leases?: Leases6;
  /** Static addresses by MAC (lower case, colons). */
  static?: ReadonlyMap<string, string>;
  /** DNS servers (option 23), sent in full mode to clients that ask for them. */
  dns?: readonly string[];
  /** Prefix length of the pool's link, for Confirm (default 64). */
  prefixLength?: number;
  /** Clock in Unix milliseconds (default Date.now). */
  now?: () => number;
  events?: BootEvents;
  log?: Log6;
  /** Per-machine boot (`--machines`, `--boot-api`): its decision changes the boot file, as for IPv4. */
  machines?: DhcpMachines;
}

/** DHCPv6 server port, where relays listen too. */
export const SERVER_PORT6 = 547;

/** A DUID-LL for an Ethernet MAC (`"02:00:00:77:00:01"`), encoded for option 2. */
export function serverDuidFromMac(mac: string): Uint8Array {
  const bytes = mac.split(/[:-]/).map((h) => parseInt(h, 16));
  if (bytes.length !== 6 || bytes.some((b) => !(b >= 0 && b <= 255))) {
    throw new TypeError(`not a MAC: ${mac}`);
  }
  return encodeDuid({ type: 3, hardwareType: HW_ETHERNET, linkLayer: Uint8Array.from(bytes) });
}

const defaultLog = getLogger(["pypxe", "dhcp6"]);

const equalBytes = (a: Uint8Array, b: Uint8Array) => a.length === b.length && a.every((x, i) => x === b[i]);

/** Client messages a server answers (RFC 8415 §7.3); the rest (Advertise, Reply, Reconfigure...) are dropped. */
const CLIENT_TYPES: ReadonlySet<number> = new Set([1, 3, 4, 5, 6, 8, 9, 11]);

/** What one message is about: the client, its identity key and the parsed essentials. */
interface Exchange {
  msg: Dhcp6Message;
  client: Client6Info;
  /** The lease key: the MAC, else the DUID text. */
  key: string;
  /** Options every answer starts with: client id (echoed) and server id. */
  head: Dhcp6Option[];
  from: Incoming6;
  /** The client's link as its nearest relay names it (link-address); undefined when not relayed or `::`. */
  link?: string;
}

/** Answers single DHCPv6 datagrams without sockets. */
export class Dhcp6Responder {
  /** The lease store (full mode only). */
  readonly leases: Leases6 | undefined;
  readonly #o: Dhcp6ResponderOptions;
  readonly #policy: BootPolicyOptions;
  readonly #log: Log6;
  readonly #now: () => number;
  readonly #life: Lifetimes;
  #lastPoolWarning = -Infinity;
  #lastLinkWarning = -Infinity;

  /** Builds the responder; call `leases.load()` before serving when it has a lease file. */
  constructor(opts: Dhcp6ResponderOptions) {
    this.#o = opts;
    this.#log = opts.log ?? {
      debug: (m) => defaultLog.debug(m),
      info: (m) => defaultLog.info(m),
      warn: (m) => defaultLog.warn(m),
    };
    this.#now = opts.now ?? Date.now;
    this.#policy = {
      useIpxe: opts.useIpxe,
      useHttp: opts.useHttp,
      httpPort: opts.httpPort ?? 80,
      fileServer: urlHost(opts.fileServer),
      netbootFile: opts.netbootFile,
      bootFiles: opts.bootFiles,
      secureBoot: opts.secureBoot,
    };
    this.leases = opts.leases ?? (opts.mode === "full" && opts.pool
      ? new Leases6({
        begin: opts.pool.begin,
        end: opts.pool.end,
        preferred: opts.preferredLifetime,
        valid: opts.validLifetime,
        reserved: opts.static,
        exclude: [opts.fileServer],
        file: opts.leasesFile,
        now: this.#now,
        warn: (m) => this.#log.warn(m),
      })
      : undefined);
    this.#life = { preferred: this.leases?.preferred ?? 3600, valid: this.leases?.valid ?? 3600 };
  }

  /** Handles one datagram; returns what to send. Never throws: bad input is logged at DEBUG and dropped. */
  handle(bytes: Uint8Array, from: Incoming6): Outgoing6[] {
    let pkt: Dhcp6Packet;
    try {
      pkt = decodeDhcp6(bytes);
    } catch (err) {
      this.#log.debug(
        `dropped ${bytes.length}-byte datagram from [${from.address}]:${from.port}: ${text(err)}`,
      );
      return [];
    }
    try {
      return this.#handle(pkt, from);
    } catch (err) {
      const level = err instanceof Dhcp6DecodeError ? "debug" : "warn";
      this.#log[level](`dropped ${messageTypeName6(pkt.type)} from [${from.address}]: ${text(err)}`);
      return [];
    }
  }

  #handle(pkt: Dhcp6Packet, from: Incoming6): Outgoing6[] {
    if (pkt.type === MessageType6.RELAY_REPL) return this.#drop(from, "RELAY-REPL is for relays");
    const { message, relays } = unwrapRelay(pkt);
    if (relays.some((r) => r.type !== MessageType6.RELAY_FORW)) return this.#drop(from, "RELAY-REPL inside");
    if (!CLIENT_TYPES.has(message.type)) {
      return this.#drop(from, `${messageTypeName6(message.type)} is not a client message`);
    }
    const source = from.address.split("%")[0];
    const client = describeClient6(pkt, { sourceAddress: source });
    const duid = clientId(message); // throws Dhcp6DecodeError when malformed
    const key = client.mac ?? client.duid ?? "";
    const rawId = getOption6(message, Opt6.CLIENTID);
    const head: Dhcp6Option[] = [];
    if (rawId) head.push({ code: Opt6.CLIENTID, data: rawId });
    head.push({ code: Opt6.SERVERID, data: this.#o.serverDuid });
    if (duid === undefined && message.type !== MessageType6.INFORMATION_REQUEST) {
      return this.#drop(from, `${messageTypeName6(message.type)} without a client id`);
    }
    const link = relays.at(-1)?.linkAddress;
    const x: Exchange = { msg: message, client, key, head, from, link: link === "::" ? undefined : link };
    const reply = this.#answer(x);
    if (reply === null) return [];
    const out = relays.length > 0 ? wrapReply(relays, reply) : reply;
    const to = relays.length > 0
      ? { address: from.address, port: SERVER_PORT6 }
      : { address: from.address, port: from.port };
    return [{ bytes: encodeDhcp6(out), ...to, ...(from.iface === undefined ? {} : { iface: from.iface }) }];
  }

  #drop(from: Incoming6, reason: string): Outgoing6[] {
    this.#log.debug(`dropped message from [${from.address}]: ${reason}`);
    return [];
  }

  /** `"ours"`, `"none"` or `"other"`: whose server id the message carries. */
  #serverIdOf(msg: Dhcp6Message): "ours" | "none" | "other" {
    const sid = getOption6(msg, Opt6.SERVERID);
    if (sid === undefined) return "none";
    return equalBytes(sid, this.#o.serverDuid) ? "ours" : "other";
  }

  #answer(x: Exchange): Dhcp6Message | null {
    const T = MessageType6;
    const sid = this.#serverIdOf(x.msg);
    const proxy = this.#o.mode === "proxy" || this.leases === undefined;
    const name = messageTypeName6(x.msg.type);
    if (x.from.on === "proxy") {
      // EDK2's PXEv6 boot-server discovery: a Request (or Information-Request) unicast to port 4011
      if ((x.msg.type !== T.REQUEST && x.msg.type !== T.INFORMATION_REQUEST) || sid === "other") {
        return this.#ignore(x, `${name} on port 4011`);
      }
      return this.#bootOnly(x, T.REPLY);
    }
    const needsOurs = [T.REQUEST, T.RENEW, T.RELEASE, T.DECLINE] as number[];
    const needsNone = [T.SOLICIT, T.REBIND, T.CONFIRM] as number[];
    if (needsOurs.includes(x.msg.type) && sid !== "ours") {
      if (sid === "other") this.#emit(x, "none", { reason: "for another server" });
      return this.#ignore(x, sid === "none" ? `${name} without a server id` : `${name} for another server`);
    }
    if (needsNone.includes(x.msg.type) && sid !== "none") return this.#ignore(x, `${name} with a server id`);
    if (x.msg.type === T.INFORMATION_REQUEST && sid === "other") {
      return this.#ignore(x, `${name} for another server`);
    }
    if (proxy) {
      if (x.msg.type === T.SOLICIT) return this.#bootOnly(x, T.ADVERTISE);
      if (x.msg.type === T.REQUEST || x.msg.type === T.INFORMATION_REQUEST) return this.#bootOnly(x, T.REPLY);
      return this.#ignore(x, `proxy mode: ${name} is for the address server`);
    }
    switch (x.msg.type) {
      case T.SOLICIT:
        return this.#assign(x, rapidCommit(x.msg) ? "rapid" : "advertise");
      case T.REQUEST:
        return this.#assign(x, "request");
      case T.RENEW:
      case T.REBIND:
        return this.#renew(x, x.msg.type === T.REBIND);
      case T.RELEASE:
        return this.#release(x);
      case T.DECLINE:
        return this.#decline(x);
      case T.CONFIRM:
        return this.#confirm(x);
      default: // Information-Request
        return this.#reply(x, T.REPLY, [], this.#boot(x));
    }
  }

  #ignore(x: Exchange, reason: string): null {
    this.#log.debug(`${x.key}: ${reason}: ignored`);
    return null;
  }

  /** The boot decision for a boot client (arch, PXEClient/HTTPClient, or iPXE), else undefined. */
  #boot(x: Exchange): BootDecision | undefined {
    const c = x.client;
    const booting = c.arch !== undefined || /^(PXEClient|HTTPClient)/.test(c.vendorClass ?? "") || c.ipxe;
    if (!booting) return undefined;
    const vendorClass = c.vendorClass ?? "PXEClient"; // iPXE without arch or vendor class still boots
    let decision = bootFileFor({ arch: c.arch, vendorClass, ipxe: c.ipxe, mac: c.mac }, this.#policy);
    const machines = this.#o.machines;
    if (machines?.enabled && c.mac !== undefined) {
      const facts = machineFacts6({ ...c, mac: c.mac });
      machines.seen(facts);
      // the groups decide when the boot API's answer is not cached yet (DHCPv6 clients retransmit)
      const machine = machines.decideNow(facts, true) ?? { kind: "default" as const };
      decision = applyMachineDecision(decision, machine, {
        arch: c.arch,
        vendorClass,
        ipxe: c.ipxe,
        mac: c.mac,
      }, {
        useHttp: this.#policy.useHttp,
        fileServer: this.#policy.fileServer,
        httpPort: this.#policy.httpPort,
      });
    }
    if (decision.warning) this.#log.warn(`${x.key}: ${decision.warning}`);
    return decision;
  }

  /**
   * An answer of `type`: client id, server id, `body`, DNS when asked (full mode), boot options. Vendor
   * class `PXEClient` goes only into boot-only answers (`proxy`): EDK2 takes an offer with an address and
   * `PXEClient` for a "DHCP + BINL" offer and asks port 4011 of the boot URL's server for the boot file
   * before it configures the offered address, which never leaves the firmware (OVMF: PXE-E16, no valid
   * offer); an offer with an address and a boot URL alone it boots from (what dnsmasq sends).
   */
  #reply(
    x: Exchange,
    type: number,
    body: Dhcp6Option[],
    decision: BootDecision | undefined,
    proxy = false,
  ): Dhcp6Message {
    const options = [...x.head, ...body];
    const dns = this.#o.dns ?? [];
    if (
      this.#o.mode === "full" && dns.length > 0 &&
      safe(() => requestedOptions(x.msg), []).includes(Opt6.DNS_SERVERS)
    ) {
      options.push({ code: Opt6.DNS_SERVERS, data: encodeAddressList(dns) });
    }
    if (decision) {
      const boot = bootOptions(decision, this.#policy);
      const dropPxeClass = !proxy && decision.vendorClass !== "HTTPClient";
      options.push(...(dropPxeClass ? boot.filter((o) => o.code !== Opt6.VENDOR_CLASS) : boot));
    }
    return { type, transactionId: x.msg.transactionId, options };
  }

  /** Proxy mode (and port 4011): boot options only, to boot clients with a boot file. */
  #bootOnly(x: Exchange, type: number): Dhcp6Message | null {
    const decision = this.#boot(x);
    if (decision?.file === undefined) return this.#ignore(x, "proxy mode: not a boot client");
    this.#emit(x, type === MessageType6.ADVERTISE ? "proxy ADVERTISE" : "proxy REPLY", { decision });
    return this.#reply(x, type, [], decision, true);
  }

  /** Solicit (Advertise, or Reply with Rapid Commit) and Request: an address for each IA_NA. */
  #assign(x: Exchange, how: "advertise" | "rapid" | "request"): Dhcp6Message {
    const leases = this.leases!;
    const body: Dhcp6Option[] = [];
    const given: string[] = [];
    const ias = iaNas(x.msg);
    if (x.link !== undefined && !this.#onLink(x.link)) {
      // relayed from another link: the one pool is this link's, an address from it would not work there
      this.#linkWarning(x.link);
      for (const ia of ias) {
        body.push(
          iaWithStatus(ia.iaid, { code: StatusCode6.NO_ADDRS_AVAIL, message: `no pool for link ${x.link}` }),
        );
      }
      body.push(statusOption(StatusCode6.NO_ADDRS_AVAIL, `no pool for link ${x.link}`));
      const type = how === "advertise" ? MessageType6.ADVERTISE : MessageType6.REPLY;
      this.#emit(x, how === "advertise" ? "ADVERTISE" : "REPLY", { reason: `no pool for link ${x.link}` });
      return this.#reply(x, type, body, undefined);
    }
    for (const ia of ias) {
      const hint = safe(() => iaAddresses(ia), [])[0]?.address;
      const opts = { hint, duid: x.client.duid };
      const ip = how === "advertise"
        ? leases.offer(x.key, ia.iaid, opts)
        : leases.bind(x.key, ia.iaid, opts)?.ip;
      if (ip === undefined || ip === null) {
        body.push(
          iaWithStatus(ia.iaid, { code: StatusCode6.NO_ADDRS_AVAIL, message: "no addresses available" }),
        );
      } else {
        body.push(iaWithAddress(ia.iaid, ip, this.#life));
        given.push(ip);
      }
    }
    if (ias.length > 0 && given.length === 0) {
      body.push(statusOption(StatusCode6.NO_ADDRS_AVAIL, "no addresses available"));
      this.#poolWarning();
    }
    if (how === "rapid") body.push({ code: Opt6.RAPID_COMMIT, data: new Uint8Array(0) });
    const decision = this.#boot(x);
    const type = how === "advertise" ? MessageType6.ADVERTISE : MessageType6.REPLY;
    const sent = how === "advertise" ? "ADVERTISE" : "REPLY";
    this.#emit(x, sent, { decision, ip: given[0], reason: how === "rapid" ? "rapid commit" : undefined });
    return this.#reply(x, type, body, decision);
  }

  #linkWarning(link: string): void {
    const now = this.#now();
    if (now - this.#lastLinkWarning < 60_000) return;
    this.#lastLinkWarning = now;
    this.#log.warn(
      `a relay forwards clients from link ${link}, outside the DHCPv6 range's /${
        this.#o.prefixLength ?? 64
      }: ` +
        `they get no address (serve that link with its own pypxe, or use --dhcp-proxy beside its DHCPv6 server)`,
    );
  }

  #poolWarning(): void {
    const now = this.#now();
    if (now - this.#lastPoolWarning < 10_000) return;
    this.#lastPoolWarning = now;
    const pool = this.#o.pool;
    this.#log.warn(`DHCPv6 address pool ${pool ? `${pool.begin}-${pool.end} ` : ""}is exhausted`);
  }

  /** Renew / Rebind: extend each IA's binding; withdraw other addresses; NoBinding when unknown. */
  #renew(x: Exchange, rebind: boolean): Dhcp6Message {
    const leases = this.leases!;
    const body: Dhcp6Option[] = [];
    for (const ia of iaNas(x.msg)) {
      const held = safe(() => iaAddresses(ia), []).map((a) => canonicalIpv6(a.address) ?? a.address);
      const b = leases.renew(x.key, ia.iaid, { ip: held[0], recover: rebind });
      const others = held.filter((ip) => ip !== b?.ip);
      if (b) body.push(iaWithAddress(ia.iaid, b.ip, this.#life, others));
      else if (rebind && held.length > 0 && held.every((ip) => !leases.isOurs(ip))) {
        body.push(iaWithStatus(ia.iaid, { code: StatusCode6.SUCCESS, message: "" }, held)); // not for this link
      } else body.push(iaWithStatus(ia.iaid, { code: StatusCode6.NO_BINDING, message: "no binding" }));
    }
    this.#emit(x, "REPLY", { reason: rebind ? "rebind" : "renew" });
    return this.#reply(x, MessageType6.REPLY, body, this.#boot(x));
  }

  /** Release: free the addresses; NoBinding for IAs we do not know. */
  #release(x: Exchange): Dhcp6Message {
    const body: Dhcp6Option[] = [];
    for (const ia of iaNas(x.msg)) {
      const freed = safe(() => iaAddresses(ia), []).filter((a) =>
        this.leases!.release(x.key, ia.iaid, a.address)
      );
      if (freed.length === 0) {
        body.push(iaWithStatus(ia.iaid, { code: StatusCode6.NO_BINDING, message: "no binding" }));
      }
    }
    body.push(statusOption(StatusCode6.SUCCESS, "released"));
    this.#emit(x, "REPLY", { reason: "released" });
    return this.#reply(x, MessageType6.REPLY, body, undefined);
  }

  /** Decline: keep the addresses out of the pool for a while. */
  #decline(x: Exchange): Dhcp6Message {
    for (const ia of iaNas(x.msg)) {
      for (const a of safe(() => iaAddresses(ia), [])) {
        if (this.leases!.decline(x.key, ia.iaid, a.address)) {
          this.#log.warn(`${x.key} declined ${a.address} (another host uses it?): kept out of the pool`);
        }
      }
    }
    this.#emit(x, "REPLY", { reason: "declined" });
    return this.#reply(x, MessageType6.REPLY, [statusOption(StatusCode6.SUCCESS, "declined")], undefined);
  }

  /** Confirm: Success when every address is on the pool's link, NotOnLink otherwise; silent without any. */
  #confirm(x: Exchange): Dhcp6Message | null {
    const addresses = iaNas(x.msg).flatMap((ia) => iaAddresses(ia).map((a) => a.address));
    if (addresses.length === 0) return this.#ignore(x, "Confirm without addresses");
    const onLink = addresses.every((a) => this.#onLink(a));
    const status = onLink
      ? statusOption(StatusCode6.SUCCESS, "all addresses on link")
      : statusOption(StatusCode6.NOT_ON_LINK, "not on link");
    this.#emit(x, "REPLY", { reason: onLink ? "confirmed" : "not on link" });
    return this.#reply(x, MessageType6.REPLY, [status], undefined);
  }

  #onLink(address: string): boolean {
    const begin = this.#o.pool && ipv6ToBig(this.#o.pool.begin);
    const a = ipv6ToBig(address);
    if (begin === undefined || a === undefined) return false;
    const shift = BigInt(128 - Math.min(128, Math.max(0, this.#o.prefixLength ?? 64)));
    return (begin >> shift) === (a >> shift);
  }

  #emit(x: Exchange, sent: string, extra: { decision?: BootDecision; ip?: string; reason?: string }): void {
    const d = extra.decision;
    this.#o.events?.emit({
      kind: "dhcp",
      mac: x.client.mac ?? x.key,
      received: messageTypeName6(x.msg.type),
      sent,
      client: d?.booting ? `${d.label} (IPv6)` : undefined,
      ip: extra.ip,
      bootFile: d?.file,
      reason: extra.reason,
    });
  }
}

/** `read()`, or `fallback` when an option it reads is malformed. */
function safe<T>(read: () => T, fallback: T): T {
  try {
    return read();
  } catch (e) {
    if (e instanceof Dhcp6DecodeError) return fallback;
    throw e;
  }
}

function text(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
