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
