/**
 * `--auto`: make the safe choice on an unknown network. Pick the wired IPv4 interface, ask the segment
 * whether a DHCP server already answers (a DHCPDISCOVER from port 68 with a locally administered MAC),
 * then run proxyDHCP beside it, or full DHCP with a range derived from the interface when nobody
 * answered. TFTP, HTTP and iPXE are turned on in both cases.
 * @module
 */
import { allInterfaceNames, ConfigError, type PxeConfig } from "./config.ts";
import { getIp, MessageType, messageType, Opt, setOption } from "./dhcp/options.ts";
import { createDhcpPacket, decodeDhcp, DhcpDecodeError, encodeDhcp } from "./dhcp/packet.ts";
import { describeBindError, type Ipv4Interface, ipv4Interfaces } from "./net.ts";

/** A DHCP server that answered the probe. */
export interface ProbeAnswer {
  /** Its server identifier (option 54), or the sender address. */
  readonly server: string;
  /** The address it offered the probe. */
  readonly offered: string;
}

/** Chooses the interface: `--interface`, else the only IPv4 one, else the only wired-looking (`e*`) one. */
export function chooseInterface(name: string, list?: Ipv4Interface[]): Ipv4Interface {
  const own = list === undefined;
  list ??= ipv4Interfaces();
  if (name !== "") {
    const found = list.find((i) => i.name === name);
    if (found === undefined) {
      const every = own ? allInterfaceNames() : null;
      const what = every !== null && !every.includes(name)
        ? `no such interface (this host has ${every.join(", ") || "none"})`
        : "no IPv4 address on that interface";
      throw new ConfigError(`--interface ${name}: ${what}`);
    }
    return found;
  }
  if (list.length === 1) return list[0];
  const wired = list.filter((i) => /^(eth|en)/.test(i.name));
  if (wired.length === 1) return wired[0];
  const names = list.map((i) => i.name).join(", ") || "none";
  throw new ConfigError(
    `--auto: cannot choose among the IPv4 interfaces (${names}): name one with --interface`,
  );
}

/**
 * Broadcasts one DHCPDISCOVER out of `iface` from port 68 and collects OFFERs for `timeoutMs`.
 * Needs root (port 68). The probe's MAC is locally administered, so no real client is disturbed.
 */
export async function probeDhcpServers(opts: {
  iface: Ipv4Interface;
  timeoutMs: number;
  /** Client port (68; tests may use another). */
  clientPort?: number;
  /** Server port (67). */
  serverPort?: number;
}): Promise<ProbeAnswer[]> {
  const clientPort = opts.clientPort ?? 68;
  const xid = crypto.getRandomValues(new Uint32Array(1))[0];
  const macBytes = crypto.getRandomValues(new Uint8Array(6));
  macBytes[0] = (macBytes[0] & 0xfc) | 0x02; // locally administered, unicast
  const mac = [...macBytes].map((b) => b.toString(16).padStart(2, "0")).join(":");
  const discover = createDhcpPacket({ op: 1, xid, flags: 0x8000, mac });
  setOption(discover, Opt.MESSAGE_TYPE, MessageType.DISCOVER);
  setOption(discover, Opt.PARAMETER_LIST, [1, 3, 6, 54]);
  let recv: Deno.DatagramConn;
  let send: Deno.DatagramConn;
  const where = { service: "auto", proto: "UDP" as const, port: clientPort };
  try {
    recv = Deno.listenDatagram({
      transport: "udp",
      hostname: "0.0.0.0",
      port: clientPort,
      reuseAddress: true,
    });
  } catch (err) {
    throw new Error(describeBindError(err, { ...where, host: "0.0.0.0" }));
  }
  try {
    send = Deno.listenDatagram({
      transport: "udp",
      hostname: opts.iface.address,
      port: clientPort,
      reuseAddress: true,
    });
  } catch (err) {
    recv.close();
    throw new Error(describeBindError(err, { ...where, host: opts.iface.address }));
  }
  const answers = new Map<string, ProbeAnswer>();
  const deadline = Date.now() + opts.timeoutMs;
  try {
    await send.send(encodeDhcp(discover), {
      transport: "udp",
      hostname: "255.255.255.255",
      port: opts.serverPort ?? 67,
    });
    const buf = new Uint8Array(1500);
    // bounded by the deadline: each wait ends with a datagram or the timer
    while (Date.now() < deadline) {
      let timer: ReturnType<typeof setTimeout> | undefined;
      const timeout = new Promise<null>((r) =>
        timer = setTimeout(() => r(null), Math.max(0, deadline - Date.now()))
      );
      const got = await Promise.race([recv.receive(buf), timeout]);
      clearTimeout(timer);
      if (got === null) break;
      try {
        const reply = decodeDhcp(got[0]);
        if (reply.op !== 2 || reply.xid !== xid || messageType(reply) !== MessageType.OFFER) continue;
        const server = getIp(reply, Opt.SERVER_ID) ?? (got[1] as Deno.NetAddr).hostname;
        answers.set(server, { server, offered: reply.yiaddr });
      } catch (err) {
        if (!(err instanceof DhcpDecodeError)) throw err;
      }
    }
  } finally {
    recv.close();
    send.close();
  }
  return [...answers.values()];
}

/** What `--auto` decided, with the reason to print. */
export interface AutoDecision {
  /** Flags to apply (only those the user did not give). */
  readonly flags: Partial<PxeConfig>;
  readonly reason: string;
}

/** Turns the probe result into settings: proxyDHCP beside a server that answered, else full DHCP. */
export function decideAuto(
  iface: Ipv4Interface,
  answers: readonly ProbeAnswer[],
  timeoutMs: number,
): AutoDecision {
  const common: Partial<PxeConfig> = {
    INTERFACE: iface.name,
    USE_TFTP: true,
    USE_HTTP: true,
    USE_IPXE: true,
  };
  if (answers.length > 0) {
    const who = answers.map((a) => a.server).join(", ");
    return {
      flags: { ...common, USE_DHCP: true, DHCP_MODE_PROXY: true },
      reason: `DHCP server(s) ${who} answered on ${iface.name}: running proxyDHCP beside them`,
    };
  }
  return {
    flags: { ...common, USE_DHCP: true, DHCP_MODE_PROXY: false },
    reason: `no DHCP server answered on ${iface.name} within ${
      (timeoutMs / 1000).toFixed(1)
    } s: running full DHCP`,
  };
}

/** What the IPv6 probe (`probeIpv6`) found, as {@linkcode decideAuto6} reads it. */
export interface Ipv6Findings {
  /** The interface has a global or ULA address (boot URLs need one). */
  readonly routable: boolean;
  /** A router advertises on the link, or a default route leaves through it. */
  readonly router: boolean;
  /** The DHCPv6 server that answered the Solicit, or null. */
  readonly dhcp6Server: string | null;
  /** What the probe could not check. */
  readonly problems: readonly string[];
}

/**
 * `--auto --ipv6`: IPv6 follows the IPv4 decision where that is safe. Beside a DHCPv4 and a DHCPv6 server:
 * proxyDHCP for both. On an isolated segment (neither answered): full DHCPv6 too, plus router
 * advertisements when no router is there. Mixed (only one family has a server) or no routable address:
 * IPv6 off with the reason, since pypxe's DHCPv6 would then compete with the site or could name no URL.
 */
export function decideAuto6(
  iface: string,
  v4: AutoDecision,
  six: Ipv6Findings,
): { flags: Partial<PxeConfig>; notes: string[] } {
  const notes = six.problems.map((p) => `auto: IPv6 probe on ${iface}: ${p}`);
  const proxy = v4.flags.DHCP_MODE_PROXY === true;
  const off = (why: string) => ({ flags: { USE_IPV6: false }, notes: [...notes, `auto: IPv6 off: ${why}`] });
  if (!six.routable) {
    return off(
      `${iface} has no global or ULA IPv6 address for the boot URLs (ip -6 addr add fd00::1/64 dev ${iface})`,
    );
  }
  if (proxy && six.dhcp6Server === null) {
    return off(
      "a DHCPv4 server answered but no DHCPv6 server did: a full DHCPv6 server would compete with the site",
    );
  }
  if (!proxy && six.dhcp6Server !== null) {
    return off(
      `DHCPv6 server ${six.dhcp6Server} answered but no DHCPv4 server did: run --dhcp-proxy --ipv6 --no-dhcp4 beside it`,
    );
  }
  if (proxy) {
    return {
      flags: { USE_IPV6: true },
      notes: [...notes, `auto: DHCPv6 server ${six.dhcp6Server} answered: proxyDHCPv6 beside it`],
    };
  }
  if (six.router) {
    return {
      flags: { USE_IPV6: true },
      notes: [...notes, "auto: no DHCPv6 server answered: running full DHCPv6"],
    };
  }
  return {
    flags: { USE_IPV6: true, USE_RA: true },
    notes: [
      ...notes,
      "auto: no DHCPv6 server and no router answered: running full DHCPv6 and advertising the /64 (--ra)",
    ],
  };
}
