/**
 * DHCPv6 message codec (RFC 8415 §8, §9): client/server messages (type, 3-byte transaction id, options)
 * and relay messages (RELAY-FORW / RELAY-REPL: hop count, link and peer address, options carrying the
 * relayed message in option 9). Pure: `decodeDhcp6(bytes)` throws only `Dhcp6DecodeError`,
 * `encodeDhcp6(packet)` only `Dhcp6EncodeError`.
 *
 * Decoding is strict about structure (headers, option lengths, the relay chain: exactly one Relay Message
 * option per relay, at most MAX_RELAY_DEPTH relays, MAX_OPTIONS options per list) and lenient about
 * content: option values are checked only when read through the typed accessors in `accessors.ts`.
 * Every input that decodes re-encodes to the same bytes.
 *
 * @example
 * ```ts
 * const pkt = decodeDhcp6(bytes);
 * const { message, relays } = unwrapRelay(pkt); // the client's message and the relays it came through
 * const reply: Dhcp6Message = { type: MessageType6.ADVERTISE, transactionId: message.transactionId,
 *   options: [] };
 * const wire = encodeDhcp6(relays.length ? wrapReply(relays, reply) : reply);
 * ```
 * @module
 */

import { formatIpv6, parseIpv6 } from "./address.ts";
import {
  checkUint,
  decodeOptionList,
  Dhcp6DecodeError,
  Dhcp6EncodeError,
  type Dhcp6Option,
  encodeOptionList,
  MessageType6,
  Opt6,
} from "./options.ts";

export { Dhcp6DecodeError, Dhcp6EncodeError } from "./options.ts";

/** A client/server message (every type but RELAY-FORW and RELAY-REPL). */
export interface Dhcp6Message {
  /** Message type, see `MessageType6`. */
  type: number;
  /** The 24-bit transaction id. */
  transactionId: number;
  /** Options in wire order. */
  options: Dhcp6Option[];
}

/** A RELAY-FORW (12) or RELAY-REPL (13) message. */
export interface Dhcp6Relay {
  type: 12 | 13;
  /** Relays the message passed through before this one (0 for the relay next to the client). */
  hopCount: number;
  /** An address on the client's link (`::` when the relay has none), telling the server which link. */
  linkAddress: string;
  /** The address of the client or relay the message came from. */
  peerAddress: string;
  /** Options in wire order, including the Relay Message option (9) as raw bytes. */
  options: Dhcp6Option[];
  /**
   * The relayed message, decoded. The encoder writes this (not the raw option 9 bytes) as the Relay
   * Message option, at the place of the first option 9 in `options`, or appended when there is none.
   */
  message: Dhcp6Packet;
}

/** Any DHCPv6 message. */
export type Dhcp6Packet = Dhcp6Message | Dhcp6Relay;

/** Most relay messages nested in one datagram (RFC 8415's HOP_COUNT_LIMIT). */
export const MAX_RELAY_DEPTH = 8;

const RELAY_HEADER = 34;

/** True for RELAY-FORW and RELAY-REPL. */
export function isRelay(pkt: Dhcp6Packet): pkt is Dhcp6Relay {
  return pkt.type === MessageType6.RELAY_FORW || pkt.type === MessageType6.RELAY_REPL;
}

function decodeAt(bytes: Uint8Array, depth: number): Dhcp6Packet {
  if (bytes.length === 0) throw new Dhcp6DecodeError("header", "empty message");
  const type = bytes[0];
  if (type === 0) throw new Dhcp6DecodeError("msg-type", "0 is reserved");
  if (type !== MessageType6.RELAY_FORW && type !== MessageType6.RELAY_REPL) {
    if (bytes.length < 4) {
      throw new Dhcp6DecodeError("header", `${bytes.length} bytes, a message has at least 4`);
    }
    return {
      type,
      transactionId: (bytes[1] << 16) | (bytes[2] << 8) | bytes[3],
      options: decodeOptionList(bytes, 4, bytes.length, "options"),
    };
  }
  if (depth >= MAX_RELAY_DEPTH) {
    throw new Dhcp6DecodeError("relay-msg", `relay messages nested more than ${MAX_RELAY_DEPTH} deep`);
  }
  if (bytes.length < RELAY_HEADER) {
    throw new Dhcp6DecodeError(
      "header",
      `${bytes.length} bytes, a relay message has at least ${RELAY_HEADER}`,
    );
  }
  const options = decodeOptionList(bytes, RELAY_HEADER, bytes.length, "relay options");
  const inner = options.filter((o) => o.code === Opt6.RELAY_MSG);
  if (inner.length !== 1) {
    throw new Dhcp6DecodeError(
      "relay-msg",
      `a relay message needs one Relay Message option, found ${inner.length}`,
    );
  }
  let message: Dhcp6Packet;
  try {
    message = decodeAt(inner[0].data, depth + 1);
  } catch (e) {
    if (!(e instanceof Dhcp6DecodeError)) throw e;
    const field = e.field.startsWith("relayed ") ? e.field : `relayed ${e.field}`;
    throw new Dhcp6DecodeError(field, e.reason);
  }
  return {
    type,
    hopCount: bytes[1],
    linkAddress: formatIpv6(bytes, 2),
    peerAddress: formatIpv6(bytes, 18),
    options,
    message,
  };
}

/** Decodes one DHCPv6 message (the UDP payload); throws Dhcp6DecodeError when malformed. */
export function decodeDhcp6(bytes: Uint8Array): Dhcp6Packet {
  return decodeAt(bytes, 0);
}

function address(text: string, field: string): Uint8Array {
  const b = typeof text === "string" ? parseIpv6(text) : undefined;
  if (b === undefined) throw new Dhcp6EncodeError(field, `not an IPv6 address: ${String(text)}`);
  return b;
}

function encodeAt(pkt: Dhcp6Packet, depth: number): Uint8Array {
  const type = checkUint(pkt.type, 8, "type");
  if (type === 0) throw new Dhcp6EncodeError("type", "0 is reserved");
  if (!isRelay(pkt)) {
    const xid = checkUint(pkt.transactionId, 24, "transactionId");
    const options = encodeOptionList(pkt.options);
    const out = new Uint8Array(4 + options.length);
    out.set([type, xid >> 16, (xid >> 8) & 255, xid & 255]);
    out.set(options, 4);
    return out;
  }
  if (depth >= MAX_RELAY_DEPTH) {
    throw new Dhcp6EncodeError("message", `relay messages nested more than ${MAX_RELAY_DEPTH} deep`);
  }
  const inner: Dhcp6Option = { code: Opt6.RELAY_MSG, data: encodeAt(pkt.message, depth + 1) };
  const at = pkt.options.findIndex((o) => o.code === Opt6.RELAY_MSG);
  const list = at < 0
    ? [...pkt.options, inner]
    : pkt.options.flatMap((o, i) => i === at ? [inner] : o.code === Opt6.RELAY_MSG ? [] : [o]);
  const options = encodeOptionList(list);
  const out = new Uint8Array(RELAY_HEADER + options.length);
  out[0] = type;
  out[1] = checkUint(pkt.hopCount, 8, "hopCount");
  out.set(address(pkt.linkAddress, "linkAddress"), 2);
  out.set(address(pkt.peerAddress, "peerAddress"), 18);
  out.set(options, RELAY_HEADER);
  return out;
}

/** Encodes a DHCPv6 message; throws Dhcp6EncodeError when a field is out of range. */
export function encodeDhcp6(pkt: Dhcp6Packet): Uint8Array {
  return encodeAt(pkt, 0);
}

/** The client's message inside any relays, and the relays outermost (next to the server) first. */
export function unwrapRelay(pkt: Dhcp6Packet): { message: Dhcp6Message; relays: Dhcp6Relay[] } {
  const relays: Dhcp6Relay[] = [];
  let at = pkt;
  for (let depth = 0; isRelay(at) && depth <= MAX_RELAY_DEPTH; depth++) {
    relays.push(at);
    at = at.message;
  }
  if (isRelay(at)) {
    throw new Dhcp6DecodeError("relay-msg", `relay messages nested more than ${MAX_RELAY_DEPTH} deep`);
  }
  return { message: at, relays };
}

/**
 * Wraps a server's reply in RELAY-REPL messages mirroring `relays` (outermost first, as `unwrapRelay`
 * returns them): same hop count, link and peer address, Interface-Id echoed (RFC 8415 §19.3). Each
 * relay's option 9 entry is an empty placeholder that `encodeDhcp6` fills from its `message`.
 */
export function wrapReply(relays: readonly Dhcp6Relay[], reply: Dhcp6Message): Dhcp6Packet {
  let out: Dhcp6Packet = reply;
  for (let i = relays.length - 1; i >= 0; i--) {
    const forw = relays[i];
    const echoed = forw.options.filter((o) => o.code === Opt6.INTERFACE_ID);
    out = {
      type: MessageType6.RELAY_REPL,
      hopCount: forw.hopCount,
      linkAddress: forw.linkAddress,
      peerAddress: forw.peerAddress,
      options: [...echoed, { code: Opt6.RELAY_MSG, data: new Uint8Array(0) }],
      message: out,
    };
  }
  return out;
}
