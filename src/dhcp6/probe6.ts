/**
 * What `--auto` asks an IPv6 segment: does something advertise or route (a Router Advertisement in
 * answer to a Router Solicitation, or a default route out of the interface), and does a DHCPv6 server
 * answer a Solicit? Sending the solicitation needs a raw ICMPv6 socket (`icmp6_socket.ts`: root and
 * `--allow-ffi`) and the Solicit UDP port 546 (root); what cannot be checked is reported in `problems`,
 * not thrown. The Solicit's DUID-LL uses a random locally administered MAC, so no real client's lease or
 * reservation is touched, and it asks for no Rapid Commit, so no server commits a lease for it.
 *
 * @example
 * ```ts
 * const found = await probeIpv6("eth0", 3000);
 * // { router: true, advertisers: [...], defaultRoute: false, dhcp6Server: null, problems: [] }
 * ```
 * @module
 */
import { errText } from "../errors.ts";
import { describeBindError } from "../net.ts";
import { ipv6Interfaces } from "../net6.ts";
import { type Duid, DuidType, encodeDuid, HW_ETHERNET } from "./duid.ts";
import { Icmp6Socket, type Icmp6SocketOptions, readProcFile } from "./icmp6_socket.ts";
import { MessageType6, Opt6 } from "./options.ts";
import { decodeDhcp6, Dhcp6DecodeError, type Dhcp6Message, encodeDhcp6, isRelay } from "./packet.ts";
import { decodeNd, encodeRouterSolicit, macBytes, NdDecodeError, type NdOption } from "./ra.ts";
import { encodeIaNa, encodeU16List, encodeUint } from "./values.ts";

/** A Router Advertisement heard during the probe. */
export interface Advertiser {
  /** Its link-local source address. */
  from: string;
  managed: boolean;
  other: boolean;
  /** Seconds; 0 when the sender is not a default router (such as pypxe's own `--ra`). */
  routerLifetime: number;
  /** The prefixes it advertises, as `2001:db8::/64`. */
  prefixes: string[];
}

/** What {@linkcode probeIpv6} found. */
export interface Ipv6Probe {
  /** Something advertises on the link (an RA was heard) or a default route leaves through the interface. */
  router: boolean;
  /** Every Router Advertisement heard, one per sender. */
  advertisers: Advertiser[];
  /** A default route (::/0) uses the interface; null when the routing table could not be read. */
  defaultRoute: boolean | null;
  /** The source address of the first DHCPv6 server that answered the Solicit, or null. */
  dhcp6Server: string | null;
  /** What could not be checked, one line each (no root, no FFI permission, port 546 in use...). */
  problems: string[];
}

/** Options of {@linkcode probeIpv6}, for tests. */
export interface ProbeIpv6Options {
  /** Client port (546). */
  clientPort?: number;
  /** Server port (547). */
  serverPort?: number;
  /** Opens the raw socket; default {@linkcode Icmp6Socket.open}. */
  openSocket?: (opts: Icmp6SocketOptions) => {
    send(data: Uint8Array, to: string): void;
    receive(): Promise<{ data: Uint8Array; from: string; hopLimit: number } | null>;
    close(): Promise<void>;
  };
  /** The text of /proc/net/ipv6_route; default read through the C library (Deno refuses /proc/net). */
  readRoutes?: () => string;
}

const RTF_UP = 0x0001;
const RTF_REJECT = 0x0200;

/**
 * True when /proc/net/ipv6_route text has a usable default route (::/0, up, not a reject route)
 * through `iface`.
 */
export function defaultRouteVia(routes: string, iface: string): boolean {
  return routes.split("\n").some((line) => {
    const f = line.trim().split(/\s+/);
    if (f.length < 10 || f[9] !== iface) return false;
    const flags = parseInt(f[8], 16);
    return /^0{32}$/.test(f[0]) && f[1] === "00" && (flags & RTF_UP) !== 0 && (flags & RTF_REJECT) === 0;
  });
}

/** The Solicit the probe sends: DUID-LL of `mac`, elapsed time, ORO (DNS, boot file URL), one IA_NA. */
export function probeSolicit(transactionId: number, mac: Uint8Array, elapsedCs: number): Dhcp6Message {
  const duid: Duid = { type: DuidType.LL, hardwareType: HW_ETHERNET, linkLayer: mac };
  const iaid = ((mac[2] << 24) | (mac[3] << 16) | (mac[4] << 8) | mac[5]) >>> 0;
  return {
    type: MessageType6.SOLICIT,
    transactionId,
    options: [
      { code: Opt6.CLIENTID, data: encodeDuid(duid) },
      { code: Opt6.ELAPSED_TIME, data: encodeUint(2, Math.min(0xffff, elapsedCs)) },
      { code: Opt6.ORO, data: encodeU16List([Opt6.DNS_SERVERS, Opt6.BOOTFILE_URL]) },
      { code: Opt6.IA_NA, data: encodeIaNa({ iaid, t1: 0, t2: 0, options: [] }) },
    ],
  };
}

/** The advertiser described by a valid Router Advertisement, or null for anything else. */
export function advertiserOf(data: Uint8Array, from: string, hopLimit: number): Advertiser | null {
  if (hopLimit !== -1 && hopLimit !== 255) return null;
  try {
    const ra = decodeNd(data);
    if (ra.type !== 134) return null;
    const prefixes = ra.options.flatMap((o: NdOption) =>
      o.kind === "prefix" ? [`${o.prefix}/${o.prefixLength}`] : []
    );
    return { from, managed: ra.managed, other: ra.other, routerLifetime: ra.routerLifetime, prefixes };
  } catch (err) {
    if (err instanceof NdDecodeError) return null;
    throw err;
  }
}

/** The interface's MAC as bytes, or null when unknown (then the solicitation has no link-layer option). */
function interfaceMac(iface: string): Uint8Array | null {
  try {
    const mac = ipv6Interfaces().find((a) => a.name === iface)?.mac;
    return mac === undefined || /^(00:){5}00$/.test(mac) ? null : macBytes(mac);
  } catch {
    return null; // no --allow-sys: the option is optional
  }
}

/**
 * Probes `iface` for `timeoutMs` (ends early once both a router and a DHCPv6 server are known): sends a
 * Router Solicitation to ff02::2 and a DHCPv6 Solicit to ff02::1:2, each again halfway, and reads the
 * routing table. Never throws for what it cannot check: see `problems`.
 */
export async function probeIpv6(
  iface: string,
  timeoutMs: number,
  opts: ProbeIpv6Options = {},
): Promise<Ipv6Probe> {
  const result: Ipv6Probe = {
    router: false,
    advertisers: [],
    defaultRoute: null,
    dhcp6Server: null,
    problems: [],
  };
  try {
    result.defaultRoute = defaultRouteVia(
      (opts.readRoutes ?? (() => readProcFile("/proc/net/ipv6_route", "probe6")))(),
      iface,
    );
  } catch (err) {
    result.problems.push(errText(err));
  }
  const started = Date.now();
  const { promise: finished, resolve: finish } = Promise.withResolvers<void>();
  const done = () =>
    (result.defaultRoute === true || result.advertisers.length > 0) && result.dhcp6Server !== null;
  const timer = setTimeout(finish, timeoutMs);
  const resends: (() => void)[] = [];
  const closers: (() => Promise<void>)[] = [];
  const loops: Promise<void>[] = [];

  // the router solicitation, over a raw ICMPv6 socket
  try {
    const open = opts.openSocket ?? ((o: Icmp6SocketOptions) => Icmp6Socket.open(o));
    const sock = open({ iface, receiveTypes: [134], who: "probe6" });
    closers.push(() => sock.close());
    const mac = interfaceMac(iface);
    const rs = encodeRouterSolicit({ options: mac === null ? [] : [{ kind: "source-ll", address: mac }] });
    const solicit = () => {
      try {
        sock.send(rs, "ff02::2");
      } catch (err) {
        result.problems.push(errText(err));
      }
    };
    solicit();
    resends.push(solicit);
    loops.push(
      (async () => {
        for (;;) {
          const got = await sock.receive();
          if (got === null) return;
          const adv = advertiserOf(got.data, got.from, got.hopLimit);
          if (adv === null || result.advertisers.some((a) => a.from === adv.from)) continue;
          result.advertisers.push(adv);
          if (done()) finish();
        }
      })().catch((err) => void result.problems.push(errText(err))),
    );
  } catch (err) {
    result.problems.push(errText(err));
  }

  // the DHCPv6 Solicit, from UDP port 546
  const clientPort = opts.clientPort ?? 546;
  try {
    const conn = Deno.listenDatagram({
      transport: "udp",
      hostname: "::",
      port: clientPort,
      reuseAddress: true,
    });
    closers.push(() => Promise.resolve(conn.close()));
    const xid = crypto.getRandomValues(new Uint32Array(1))[0] & 0xffffff;
    const mac = crypto.getRandomValues(new Uint8Array(6));
    mac[0] = (mac[0] & 0xfc) | 0x02; // locally administered, unicast
    const solicit = () => {
      const wire = encodeDhcp6(probeSolicit(xid, mac, Math.round((Date.now() - started) / 10)));
      conn.send(wire, { transport: "udp", hostname: `ff02::1:2%${iface}`, port: opts.serverPort ?? 547 })
        .catch((err) =>
          void result.problems.push(`probe6: sending a DHCPv6 Solicit on ${iface}: ${errText(err)}`)
        );
    };
    solicit();
    resends.push(solicit);
    loops.push(
      (async () => {
        for (;;) {
          let got: [Uint8Array, Deno.Addr];
          try {
            got = await conn.receive();
          } catch (err) {
            if (err instanceof Deno.errors.BadResource || err instanceof Deno.errors.Interrupted) return;
            throw err;
          }
          try {
            const reply = decodeDhcp6(got[0]);
            if (isRelay(reply) || reply.transactionId !== xid) continue;
            if (reply.type !== MessageType6.ADVERTISE && reply.type !== MessageType6.REPLY) continue;
            result.dhcp6Server ??= (got[1] as Deno.NetAddr).hostname.replace(/%.*$/, "");
            if (done()) finish();
          } catch (err) {
            if (!(err instanceof Dhcp6DecodeError)) throw err;
          }
        }
      })().catch((err) => void result.problems.push(`probe6: DHCPv6: ${errText(err)}`)),
    );
  } catch (err) {
    result.problems.push(
      describeBindError(err, { service: "probe6", proto: "UDP", host: "[::]", port: clientPort }),
    );
  }

  const again = setTimeout(() => resends.forEach((f) => f()), timeoutMs / 2);
  if (loops.length > 0 && !done()) await finished;
  clearTimeout(timer);
  clearTimeout(again);
  for (const close of closers) await close();
  await Promise.all(loops);
  result.router = result.defaultRoute === true || result.advertisers.length > 0;
  return result;
}
