/**
 * `--ra`: router advertisements on a segment without a router, so IPv6 PXE clients (iPXE, EDK2) learn
 * that addresses and boot options come from DHCPv6. pypxe is not a router: every advertisement has
 * router lifetime 0 (no default route) and carries the M and O flags and the served interface's /64 (on
 * link; autonomous only when pypxe does not hand out addresses itself).
 *
 * Timing (RFC 4861 §6.2.4, §6.2.6): three initial advertisements 4 s apart, then one every 200-300 s;
 * each valid Router Solicitation is answered by a multicast advertisement after 0-500 ms, at most one
 * every 3 s (solicitations in between share it). `stop()` sends a final advertisement (router lifetime
 * 0, RFC 4861 §6.2.5) before closing the socket. The schedule is the pure {@linkcode RaSchedule}; the
 * socket is a raw ICMPv6 socket through libc (`icmp6_socket.ts`: `--allow-ffi`, root or CAP_NET_RAW).
 *
 * @example
 * ```ts
 * const ra = new RaService({ iface: "eth0", mac: "52:54:00:12:34:56", prefix: "2001:db8::",
 *   managed: true, other: true, autonomous: false });
 * await ra.start(); // advertises 2001:db8::/64 with M and O
 * await ra.stop();
 * ```
 * @module
 */
import { getLogger } from "@logtape/logtape";
import { errText } from "../errors.ts";
import { literal, LogThrottle } from "../log_throttle.ts";
import { deriveIpv6, type Ipv6Address, ipv6Interfaces } from "../net6.ts";
import type { Service, ServiceFactory } from "../server.ts";
import { formatIpv6, parseIpv6 } from "./address.ts";
import { Icmp6Socket, type Icmp6SocketOptions } from "./icmp6_socket.ts";
import {
  decodeNd,
  encodeRouterAdvert,
  macBytes,
  NdDecodeError,
  type NdOption,
  type RouterAdvert,
} from "./ra.ts";

const log = getLogger(["pypxe", "dhcp6", "ra"]);

/** All nodes on the link: where advertisements go. */
export const ALL_NODES = "ff02::1";
/** All routers on the link: where solicitations go. */
export const ALL_ROUTERS = "ff02::2";

/** Timing of the advertisements, in milliseconds (RFC 4861 names in the comments). */
export interface RaTiming {
  /** Advertisements sent `initialIntervalMs` apart at start (MAX_INITIAL_RTR_ADVERTISEMENTS: 3). */
  initialCount: number;
  /** Interval between the initial ones (at most MAX_INITIAL_RTR_ADVERT_INTERVAL, 16 s). */
  initialIntervalMs: number;
  /** Interval afterwards: random in [min, max] (MinRtrAdvInterval, MaxRtrAdvInterval). */
  minIntervalMs: number;
  maxIntervalMs: number;
  /** Least time between two multicast advertisements (MIN_DELAY_BETWEEN_RAS: 3 s). */
  minDelayMs: number;
  /** Most delay of an answer to a solicitation (MAX_RA_DELAY_TIME: 500 ms). */
  maxResponseDelayMs: number;
}

/** The defaults: 3 initial advertisements 4 s apart, then every 200-300 s; answers within 0.5 s. */
export const RA_TIMING: Readonly<RaTiming> = Object.freeze({
  initialCount: 3,
  initialIntervalMs: 4000,
  minIntervalMs: 200_000,
  maxIntervalMs: 300_000,
  minDelayMs: 3000,
  maxResponseDelayMs: 500,
});

/**
 * When to send the next multicast advertisement. Pure: every method takes the time (ms) and, where
 * chance is involved, a number in [0, 1).
 */
export class RaSchedule {
  readonly #t: RaTiming;
  #sent = 0;
  #lastSentAt = -Infinity;
  #periodicAt: number;
  #solicitedAt = Infinity;

  /** A schedule whose first advertisement is due at `now`. */
  constructor(now: number, timing: RaTiming = RA_TIMING) {
    this.#t = timing;
    this.#periodicAt = now;
  }

  /** When the next advertisement is due. */
  nextAt(): number {
    return Math.min(this.#periodicAt, this.#solicitedAt);
  }

  /** How many advertisements were sent. */
  get sent(): number {
    return this.#sent;
  }

  /** A valid solicitation arrived: schedules an answer (0..maxResponseDelay later, 3 s after the last). */
  solicited(now: number, random: number): void {
    const at = Math.max(now + random * this.#t.maxResponseDelayMs, this.#lastSentAt + this.#t.minDelayMs);
    if (at < this.nextAt()) this.#solicitedAt = at;
  }

  /** An advertisement went out at `now`: the next periodic one is scheduled. */
  sentAt(now: number, random: number): void {
    this.#sent++;
    this.#lastSentAt = now;
    this.#solicitedAt = Infinity;
    const t = this.#t;
    this.#periodicAt = now +
      (this.#sent < t.initialCount
        ? t.initialIntervalMs
        : t.minIntervalMs + random * (t.maxIntervalMs - t.minIntervalMs));
  }
}

/** What an advertisement says. */
export interface RaContent {
  /** The interface's MAC (the Source Link-Layer Address option); omitted when "" or all zero. */
  mac: string;
  /** The advertised /64, e.g. `2001:db8::` (any address in it will do). */
  prefix: string;
  /** M: addresses come from DHCPv6. */
  managed: boolean;
  /** O: other configuration (the boot file URL) comes from DHCPv6. */
  other: boolean;
  /** A: hosts may form their own addresses in the prefix (SLAAC). */
  autonomous: boolean;
  /** Prefix lifetimes in seconds (default 86400 and 14400, as radvd). */
  validLifetime?: number;
  preferredLifetime?: number;
}

/** The /64 of `address` as text (`2001:db8:1:2::`); undefined when it is not IPv6. */
export function prefix64(address: string): string | undefined {
  const b = parseIpv6(address.replace(/%.*$/, ""));
  if (b === undefined) return undefined;
  b.fill(0, 8);
  return formatIpv6(b);
}

/** The advertisement pypxe sends: router lifetime 0, M/O as given, the /64 on link, the source MAC. */
export function buildRouterAdvert(c: RaContent): RouterAdvert {
  const options: NdOption[] = [];
  if (c.mac !== "" && !/^(00:){5}00$/.test(c.mac)) {
    options.push({ kind: "source-ll", address: macBytes(c.mac) });
  }
  options.push({
    kind: "prefix",
    prefixLength: 64,
    onLink: true,
    autonomous: c.autonomous,
    validLifetime: c.validLifetime ?? 86400,
    preferredLifetime: c.preferredLifetime ?? 14400,
    prefix: prefix64(c.prefix) ?? c.prefix,
  });
  return {
    curHopLimit: 64,
    managed: c.managed,
    other: c.other,
    routerLifetime: 0,
    reachableTime: 0,
    retransTimer: 0,
    options,
  };
}

/**
 * Why a received packet is not a valid Router Solicitation (RFC 4861 §6.1.1), or null when it is one.
 * `hopLimit` -1 (not reported) passes.
 */
export function invalidSolicitation(data: Uint8Array, from: string, hopLimit: number): string | null {
  if (hopLimit !== -1 && hopLimit !== 255) return `hop limit ${hopLimit}, not 255 (not from this link)`;
  let msg;
  try {
    msg = decodeNd(data);
  } catch (err) {
    if (err instanceof NdDecodeError) return err.message;
    throw err;
  }
  if (msg.type !== 133) return `ICMPv6 type ${msg.type}, not a Router Solicitation`;
  if (from === "::" && msg.options.some((o) => o.kind === "source-ll")) {
    return "a link-layer address option from the unspecified address";
  }
  return null;
}

/** The socket the service needs (a fake in tests). */
export interface RaSocket {
  send(data: Uint8Array, to: string): void;
  receive(): Promise<{ data: Uint8Array; from: string; hopLimit: number } | null>;
  close(): Promise<void>;
}

/** Options of {@linkcode RaService}. */
export interface RaServiceOptions extends RaContent {
  /** The interface to advertise on. */
  iface: string;
  /** Timing (tests shorten it); default {@linkcode RA_TIMING}. */
  timing?: Partial<RaTiming>;
  /** Opens the socket; default a raw ICMPv6 socket ({@linkcode Icmp6Socket.open}). */
  openSocket?: (opts: Icmp6SocketOptions) => RaSocket;
  /** Chance in [0, 1); default Math.random. */
  random?: () => number;
}

/** The `ra` service: see the module doc. */
export class RaService implements Service {
  readonly name = "ra";
  readonly #o: RaServiceOptions;
  readonly #timing: RaTiming;
  readonly #random: () => number;
  readonly #wire: Uint8Array;
  /** The advertised /64, as text. */
  readonly #net: string;
  readonly #throttle = new LogThrottle({ log });
  #socket: RaSocket | null = null;
  #schedule: RaSchedule | null = null;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #timerAt = Infinity;
  #loop: Promise<void> | null = null;
  #stopping = false;
  #sent = 0;
  /** Ends the receive loop's pause after an error (stop() calls it). */
  #wake: (() => void) | null = null;

  /** Builds the service; nothing is opened until {@linkcode start}. Throws on a bad prefix or MAC. */
  constructor(opts: RaServiceOptions) {
    this.#o = opts;
    this.#timing = { ...RA_TIMING, ...opts.timing };
    this.#random = opts.random ?? Math.random;
    const net = prefix64(opts.prefix);
    if (net === undefined) throw new Error(`ra: not an IPv6 prefix: ${opts.prefix}`);
    this.#net = net;
    this.#wire = encodeRouterAdvert(buildRouterAdvert(opts));
  }

  /** The advertisement as sent (checksum 0: the kernel fills it in). */
  get advertisement(): Uint8Array {
    return this.#wire.slice();
  }

  /** How many advertisements went out (the final one included). */
  get sent(): number {
    return this.#sent;
  }

  /** Opens the socket, sends the first advertisement and answers solicitations from now on. */
  start(): Promise<void> {
    const open = this.#o.openSocket ?? ((o: Icmp6SocketOptions) => Icmp6Socket.open(o));
    this.#stopping = false;
    try {
      this.#socket = open({ iface: this.#o.iface, receiveTypes: [133], groups: [ALL_ROUTERS], who: "ra" });
    } catch (err) {
      return Promise.reject(err instanceof Error ? err : new Error(String(err)));
    }
    this.#schedule = new RaSchedule(Date.now(), this.#timing);
    log.info(`advertising ${this.#net}/64 on ${this.#o.iface}, flags ${this.#flags()}, router lifetime 0`);
    this.#loop = this.#receiveLoop(this.#socket);
    this.#tick();
    return Promise.resolve();
  }

  #flags(): string {
    const o = this.#o;
    return `${o.managed ? "M" : ""}${o.other ? "O" : ""}${o.autonomous ? "A" : ""}` || "none";
  }

  /** Sends what is due and sets the timer for the next one. */
  #tick(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#timerAt = Infinity;
    const schedule = this.#schedule;
    if (this.#stopping || schedule === null) return;
    const now = Date.now();
    if (schedule.nextAt() <= now) {
      this.#send("advertisement");
      schedule.sentAt(now, this.#random());
    }
    this.#arm();
  }

  #arm(): void {
    const at = this.#schedule?.nextAt() ?? Infinity;
    if (this.#stopping || at >= this.#timerAt) return;
    clearTimeout(this.#timer);
    this.#timerAt = at;
    this.#timer = setTimeout(() => this.#tick(), Math.max(0, at - Date.now()));
  }

  #send(what: string): void {
    try {
      this.#socket?.send(this.#wire, ALL_NODES);
      this.#sent++;
      log.debug(`${what} sent to ${ALL_NODES} on ${this.#o.iface}`);
    } catch (err) {
      this.#throttle.note(
        "send",
        "warn",
        literal(`${errText(err)} (the interface may be down or without link-local address)`),
      );
    }
  }

  async #receiveLoop(socket: RaSocket): Promise<void> {
    for (;;) {
      let got;
      try {
        got = await socket.receive();
      } catch (err) {
        if (this.#stopping) return;
        // the advertisements go on; solicitations are heard again once the socket recovers
        this.#throttle.note("recv", "warn", literal(`receiving router solicitations: ${errText(err)}`));
        await this.#pause(1000);
        continue;
      }
      if (got === null) return;
      const why = invalidSolicitation(got.data, got.from, got.hopLimit);
      if (why !== null) {
        this.#throttle.note(
          "invalid",
          "debug",
          literal(`ignored a packet from ${got.from}: ${why}`),
          "invalid solicitations",
        );
        continue;
      }
      this.#throttle.note("rs", "debug", `router solicitation from ${got.from}`, "router solicitations", 20);
      this.#schedule?.solicited(Date.now(), this.#random());
      this.#arm();
    }
  }

  /** Waits `ms`, or less when the service stops. */
  #pause(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.#wake = null;
        resolve();
      }, ms);
      this.#wake = () => {
        clearTimeout(timer);
        this.#wake = null;
        resolve();
      };
    });
  }

  /** Sends the final advertisement (router lifetime 0) and closes the socket; never rejects. */
  async stop(): Promise<void> {
    if (this.#socket === null) return;
    this.#stopping = true;
    clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#timerAt = Infinity;
    this.#send("final advertisement");
    const socket = this.#socket;
    this.#socket = null;
    this.#wake?.();
    await socket.close();
    await this.#loop;
    this.#loop = null;
    this.#throttle.close();
  }

  /** What it sends on, for the banner. */
  endpoints(): string[] {
    return [`ICMPv6 ${this.#o.iface} RA ${this.#net}/64 flags ${this.#flags()}`];
  }
}

/**
 * Builds the RA service from the shared context; null unless `--ipv6` with `--ra`. The interface and
 * prefix are DHCPv6's (`--interface`, `--dhcp6-server-ip` or what `net6.ts` derives); M when a DHCPv6
 * service runs, O always, A unless pypxe hands out the addresses (full DHCPv6).
 */
export const createRaService: ServiceFactory = (ctx) => {
  const c = ctx.config;
  if (!c.USE_IPV6 || !c.USE_RA) return null;
  let all: Ipv6Address[];
  try {
    all = ipv6Interfaces();
    const d = deriveIpv6(
      { iface: c.INTERFACE, server: c.DHCP6_SERVER_IP, begin: "", end: "", full: false },
      all,
    );
    const full = c.USE_DHCP && !c.DHCP_MODE_PROXY;
    return new RaService({
      iface: d.iface,
      mac: all.find((a) => a.name === d.iface)?.mac ?? "",
      prefix: d.server,
      managed: c.USE_DHCP,
      other: true,
      autonomous: !full,
    });
  } catch (err) {
    const message = `ra: ${errText(err)}`;
    return {
      name: "ra",
      start: () => Promise.reject(new Error(message)),
      stop: async () => {},
      endpoints: () => [],
    };
  }
};
