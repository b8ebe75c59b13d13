/** The reply-destination rule of RFC 2131 §4.1 (plus proxyDHCP and port 4011), as a table. */
import { deepStrictEqual } from "node:assert/strict";
import { type Incoming, replyDestination, type ReplyKind } from "../../src/dhcp/destination.ts";

const NET = { serverPort: 67, clientPort: 68, broadcast: "255.255.255.255" };
const ON_67: Incoming = { hostname: "0.0.0.0", port: 68, on: "dhcp" };
const RELAYED: Incoming = { hostname: "10.1.0.1", port: 67, on: "dhcp" };
const ON_4011: Incoming = { hostname: "10.0.0.50", port: 4011, on: "proxy" };
const ON_4011_NO_ADDR: Incoming = { hostname: "0.0.0.0", port: 4011, on: "proxy" };

const NONE = "0.0.0.0";
const RELAY = "10.1.0.1";
const CLIENT = "10.0.0.50";
const BCAST = { hostname: "255.255.255.255", port: 68, via: "broadcast", broadcastFlag: false };
const TO_RELAY = { hostname: RELAY, port: 67, via: "unicast", broadcastFlag: false };
const TO_CLIENT = { hostname: CLIENT, port: 68, via: "unicast", broadcastFlag: false };

const CASES: [string, ReplyKind, { giaddr: string; ciaddr: string }, Incoming, object][] = [
  ["OFFER to a client with no address: broadcast", "lease", { giaddr: NONE, ciaddr: NONE }, ON_67, BCAST],
  [
    "ACK to a renewing client: unicast to ciaddr",
    "lease",
    { giaddr: NONE, ciaddr: CLIENT },
    ON_67,
    TO_CLIENT,
  ],
  ["OFFER through a relay: to giaddr:67", "lease", { giaddr: RELAY, ciaddr: NONE }, RELAYED, TO_RELAY],
  ["ACK through a relay wins over ciaddr", "lease", { giaddr: RELAY, ciaddr: CLIENT }, RELAYED, TO_RELAY],
  ["NAK: broadcast", "nak", { giaddr: NONE, ciaddr: NONE }, ON_67, BCAST],
  ["NAK to a client with ciaddr: still broadcast", "nak", { giaddr: NONE, ciaddr: CLIENT }, ON_67, BCAST],
  [
    "NAK through a relay: to giaddr:67, broadcast flag set",
    "nak",
    { giaddr: RELAY, ciaddr: NONE },
    RELAYED,
    { ...TO_RELAY, broadcastFlag: true },
  ],
  ["proxy OFFER: broadcast", "proxy", { giaddr: NONE, ciaddr: NONE }, ON_67, BCAST],
  ["proxy ACK on 67 with ciaddr: broadcast", "proxy", { giaddr: NONE, ciaddr: CLIENT }, ON_67, BCAST],
  ["proxy OFFER through a relay: to giaddr:67", "proxy", { giaddr: RELAY, ciaddr: NONE }, RELAYED, TO_RELAY],
  [
    "4011 ACK: back to the sender's address and port",
    "proxy",
    { giaddr: NONE, ciaddr: NONE },
    ON_4011,
    { hostname: CLIENT, port: 4011, via: "proxy", broadcastFlag: false },
  ],
  [
    "4011 ACK from 0.0.0.0: to ciaddr, the sender's port",
    "proxy",
    { giaddr: NONE, ciaddr: "10.0.0.77" },
    ON_4011_NO_ADDR,
    { hostname: "10.0.0.77", port: 4011, via: "proxy", broadcastFlag: false },
  ],
  [
    "4011 ACK ignores giaddr (the client talks to 4011 directly)",
    "proxy",
    { giaddr: RELAY, ciaddr: NONE },
    ON_4011,
    { hostname: CLIENT, port: 4011, via: "proxy", broadcastFlag: false },
  ],
];

for (const [name, kind, request, from, want] of CASES) {
  Deno.test(`reply destination: ${name}`, () => {
    deepStrictEqual(replyDestination(request, kind, from, NET), want);
  });
}

Deno.test("reply destination: the configured broadcast address and ports are used", () => {
  const net = { serverPort: 6767, clientPort: 6868, broadcast: "127.0.0.1" };
  deepStrictEqual(replyDestination({ giaddr: NONE, ciaddr: NONE }, "lease", ON_67, net), {
    hostname: "127.0.0.1",
    port: 6868,
    via: "broadcast",
    broadcastFlag: false,
  });
  deepStrictEqual(replyDestination({ giaddr: RELAY, ciaddr: NONE }, "nak", RELAYED, net), {
    hostname: RELAY,
    port: 6767,
    via: "unicast",
    broadcastFlag: true,
  });
});
