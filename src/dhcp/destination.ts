/**
 * Where a DHCP reply goes (RFC 2131 §4.1), as one pure function of the request's `giaddr`/`ciaddr`, the
 * kind of reply and the socket the request came in on.
 *
 * - Port 4011 (PXE boot server): back to the sender's address and port (its `ciaddr` when the sender is
 *   0.0.0.0), out of the 4011 socket.
 * - `giaddr` set: to the relay agent, server port 67; a NAK also sets the broadcast flag so the relay
 *   broadcasts it on the client's segment.
 * - `ciaddr` set (renewing, INFORM): unicast to `ciaddr`, client port 68. Not for a NAK ("when giaddr is
 *   zero, the server broadcasts any DHCPNAK") nor for a proxyDHCP answer on 67 (PyPXE broadcasts it).
 * - Otherwise broadcast. The client's broadcast flag is not consulted: unicasting to a client with no
 *   address needs an ARP entry injected for `yiaddr`, which userland cannot do, so both flag values
 *   broadcast.
 *
 * @example
 * ```ts
 * replyDestination({ giaddr: "10.0.0.1", ciaddr: "0.0.0.0" }, "nak", from, net);
 * // { hostname: "10.0.0.1", port: 67, via: "unicast", broadcastFlag: true }
 * ```
 * @module
 */

/** Where a datagram came in. */
export interface Incoming {
  hostname: string;
  port: number;
  /** `dhcp` for port 67, `proxy` for 4011. */
  on: "dhcp" | "proxy";
}

/** Where a reply goes. */
export interface Destination {
  hostname: string;
  port: number;
  /** `broadcast`/`unicast` go out of the port-67 sockets, `proxy` out of the 4011 socket. */
  via: "broadcast" | "unicast" | "proxy";
}

/** What is being answered: an OFFER/ACK of full DHCP, a NAK, or a proxyDHCP OFFER/ACK. */
export type ReplyKind = "lease" | "nak" | "proxy";

/** The ports and broadcast address of the service. */
export interface ReplyNetwork {
  /** The server port (67), where relay agents listen. */
  serverPort: number;
  /** The client port (68). */
  clientPort: number;
  /** Where broadcasts go (255.255.255.255; tests use 127.0.0.1). */
  broadcast: string;
}

/** The destination of a reply to `request`, and whether the reply must carry the broadcast flag. */
export function replyDestination(
  request: { readonly giaddr: string; readonly ciaddr: string },
  kind: ReplyKind,
  from: Incoming,
  net: ReplyNetwork,
): Destination & { broadcastFlag: boolean } {
  if (from.on === "proxy") {
    const hostname = from.hostname === "0.0.0.0" ? request.ciaddr : from.hostname;
    return { hostname, port: from.port, via: "proxy", broadcastFlag: false };
  }
  if (request.giaddr !== "0.0.0.0") {
    return { hostname: request.giaddr, port: net.serverPort, via: "unicast", broadcastFlag: kind === "nak" };
  }
  if (kind === "lease" && request.ciaddr !== "0.0.0.0") {
    return { hostname: request.ciaddr, port: net.clientPort, via: "unicast", broadcastFlag: false };
  }
  return { hostname: net.broadcast, port: net.clientPort, via: "broadcast", broadcastFlag: false };
}
