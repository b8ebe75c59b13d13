/**
 * The replies of full DHCP, built from a request and the boot policy's decision: OFFER/ACK (address,
 * network options, lease times, boot file) and NAK. Pure: the responder decides, these only build.
 * The proxyDHCP replies are in `pxe.ts`.
 * @module
 */
import type { PxeConfig } from "../config.ts";
import type { StaticBinding } from "../static_leases.ts";
import { broadcastOf } from "../net.ts";
import { getU8List, MessageType, Opt, setOption } from "./options.ts";
import { type DhcpPacket, newReply, setBootFile } from "./packet.ts";
import type { BootDecision } from "./policy.ts";
import { pxeVendorOptions } from "./pxe.ts";

/** What a lease reply needs besides the request and the decision. */
export interface LeaseReplyOptions {
  config: Pick<
    PxeConfig,
    | "DHCP_SERVER_IP"
    | "DHCP_FILESERVER"
    | "DHCP_LEASE_TIME"
    | "DHCP_SUBNET"
    | "DHCP_BROADCAST"
    | "DHCP_ROUTER"
  >;
  /** The client's static lease, whose subnet, router and DNS win over the config's. */
  binding?: StaticBinding;
  /** Option 6 servers (DHCP_DNS, split). */
  dns: readonly string[];
  /** Option 15 domain name, sent when set. */
  domain?: string;
}

/**
 * OFFER/ACK with address `ip` (or, for INFORM, none: ciaddr echoed, no lease times): subnet, broadcast,
 * router, DNS, domain, and for a booting client the boot file, next-server and its PXE options.
 */
export function leaseReply(
  req: DhcpPacket,
  type: number,
  ip: string | undefined,
  decision: BootDecision,
  opts: LeaseReplyOptions,
): DhcpPacket {
  const c = opts.config;
  const binding = opts.binding;
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
  const router = binding?.router ?? c.DHCP_ROUTER;
  if (router !== "") setOption(reply, Opt.ROUTER, router);
  const dns = binding?.dns ? [...binding.dns] : [...opts.dns];
  if (dns.length > 0) setOption(reply, Opt.DNS, dns);
  if (opts.domain) setOption(reply, Opt.DOMAIN_NAME, opts.domain);
  const asked = getU8List(req, Opt.PARAMETER_LIST) ?? [];
  if (booting) {
    if (decision.vendorClass === "HTTPClient") setOption(reply, Opt.VENDOR_CLASS, "HTTPClient");
    const pxe = pxeVendorOptions(req, decision, false);
    if (pxe) reply.options.set(Opt.VENDOR_SPECIFIC, pxe);
    if (asked.includes(Opt.TFTP_SERVER)) setOption(reply, Opt.TFTP_SERVER, c.DHCP_FILESERVER);
    setBootFile(reply, decision.file!);
  }
  copyClientId(req, reply);
  return reply;
}

/** A NAK from `serverIp` with the reason in option 56. */
export function nakReply(req: DhcpPacket, serverIp: string, why: string): DhcpPacket {
  const reply = newReply(req);
  setOption(reply, Opt.MESSAGE_TYPE, MessageType.NAK);
  setOption(reply, Opt.SERVER_ID, serverIp);
  setOption(reply, Opt.MESSAGE, why);
  copyClientId(req, reply);
  return reply;
}

/** Echoes the client identifier (option 61), as RFC 6842 asks. */
function copyClientId(req: DhcpPacket, reply: DhcpPacket): void {
  const clientId = req.options.get(Opt.CLIENT_ID);
  if (clientId) reply.options.set(Opt.CLIENT_ID, clientId.slice());
}
