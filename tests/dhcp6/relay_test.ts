import { deepStrictEqual, equal, ok, throws } from "node:assert/strict";
import {
  decodeDhcp6,
  Dhcp6DecodeError,
  Dhcp6EncodeError,
  type Dhcp6Message,
  type Dhcp6Packet,
  type Dhcp6Relay,
  encodeDhcp6,
  isRelay,
  MAX_RELAY_DEPTH,
  unwrapRelay,
  wrapReply,
} from "../../src/dhcp6/packet.ts";
import { MessageType6, Opt6 } from "../../src/dhcp6/options.ts";
import { encodeLinkLayerAddress } from "../../src/dhcp6/values.ts";
import { fixture6, fromHex, toHex } from "./helpers.ts";

const solicit = () => decodeDhcp6(fixture6("ovmf-pxe6-solicit.bin")) as Dhcp6Message;

/** A RELAY-FORW as a relay next to the client would send it. */
function forw(inner: Dhcp6Packet, hopCount = 0): Dhcp6Relay {
  return {
    type: MessageType6.RELAY_FORW,
    hopCount,
    linkAddress: "2001:db8:77::1",
    peerAddress: hopCount === 0 ? "fe80::5054:ff:fe77:66" : "2001:db8:1::2",
    options: [
      { code: Opt6.INTERFACE_ID, data: new TextEncoder().encode("eth1") },
      { code: Opt6.RELAY_MSG, data: encodeDhcp6(inner) },
      {
        code: Opt6.CLIENT_LINKLAYER_ADDR,
        data: encodeLinkLayerAddress({ hardwareType: 1, address: fromHex("525400770066") }),
      },
    ],
    message: inner,
  };
}

/** `n` relays around `inner`. */
function nest(inner: Dhcp6Packet, n: number): Dhcp6Packet {
  let p = inner;
  for (let i = 0; i < n; i++) p = forw(p, i);
  return p;
}

Deno.test("relay: RELAY-FORW header, options in order and the relayed Solicit round trip", () => {
  const relay = forw(solicit());
  const wire = encodeDhcp6(relay);
  equal(
    toHex(wire.subarray(0, 34)),
    "0c00" + "20010db8007700000000000000000001" + "fe80000000000000505400fffe770066",
  );
  deepStrictEqual(decodeDhcp6(wire), relay);
  equal(toHex(encodeDhcp6(decodeDhcp6(wire))), toHex(wire));
  const { message, relays } = unwrapRelay(decodeDhcp6(wire));
  deepStrictEqual(message, solicit());
  equal(relays.length, 1);
  deepStrictEqual(decodeDhcp6(fixture6("ovmf-pxe6-solicit.bin")), solicit());
});

Deno.test("relay: nesting up to MAX_RELAY_DEPTH decodes; one more is rejected, as is a bomb", () => {
  const deep = nest(solicit(), MAX_RELAY_DEPTH);
  const { message, relays } = unwrapRelay(decodeDhcp6(encodeDhcp6(deep)));
  deepStrictEqual(message, solicit());
  equal(relays.length, MAX_RELAY_DEPTH);
  deepStrictEqual(relays.map((r) => r.hopCount), [7, 6, 5, 4, 3, 2, 1, 0]);
  throws(() => encodeDhcp6(nest(solicit(), MAX_RELAY_DEPTH + 1)), Dhcp6EncodeError);
  // hand-built: relay headers nested 1,000 deep, each option 9 holding the next
  let bomb = encodeDhcp6(solicit());
  const header = fromHex("0c00" + "00".repeat(32));
  for (let i = 0; i < 1000 && bomb.length < 60_000; i++) {
    const next = new Uint8Array(34 + 4 + bomb.length);
    next.set(header);
    next.set([0, 9, bomb.length >> 8, bomb.length & 255], 34);
    next.set(bomb, 38);
    bomb = next;
  }
  throws(
    () => decodeDhcp6(bomb),
    (e) => e instanceof Dhcp6DecodeError && /nested more than 8 deep/.test(e.message),
  );
});

Deno.test("relay: a relay needs exactly one Relay Message; inner errors name the relayed field", () => {
  const relay = forw(solicit());
  const without = { ...relay, options: relay.options.filter((o) => o.code !== Opt6.RELAY_MSG) };
  // the encoder appends option 9 from `message` when `options` has none...
  const appended = decodeDhcp6(encodeDhcp6(without)) as Dhcp6Relay;
  deepStrictEqual(appended.options.map((o) => o.code), [18, 79, 9]);
  // ...but on the wire a relay without it, or with two, is malformed
  const bare = fromHex("0c00" + "00".repeat(32) + "00120001aa");
  throws(() => decodeDhcp6(bare), /needs one Relay Message option, found 0/);
  const twice = fromHex("0c00" + "00".repeat(32) + "0009000401000000" + "0009000401000000");
  throws(() => decodeDhcp6(twice), /found 2/);
  const badInner = fromHex("0c00" + "00".repeat(32) + "0009000701000000000305");
  throws(() => decodeDhcp6(badInner), (e) => e instanceof Dhcp6DecodeError && e.field === "relayed options");
  throws(() => decodeDhcp6(fromHex("0c00" + "00".repeat(31))), /at least 34/);
});

Deno.test("relay: wrapReply mirrors the chain, echoes Interface-Id and encodes the reply inside", () => {
  const chain = decodeDhcp6(encodeDhcp6(nest(solicit(), 2)));
  const { message, relays } = unwrapRelay(chain);
  const reply: Dhcp6Message = {
    type: MessageType6.ADVERTISE,
    transactionId: message.transactionId,
    options: [],
  };
  const wrapped = wrapReply(relays, reply);
  ok(isRelay(wrapped));
  const back = decodeDhcp6(encodeDhcp6(wrapped));
  const unwrapped = unwrapRelay(back);
  deepStrictEqual(unwrapped.message, reply);
  deepStrictEqual(
    unwrapped.relays.map((
      r,
    ) => [r.type, r.hopCount, r.linkAddress, r.peerAddress, r.options.map((o) => o.code)]),
    relays.map((r) => [MessageType6.RELAY_REPL, r.hopCount, r.linkAddress, r.peerAddress, [18, 9]]),
  );
  deepStrictEqual(wrapReply([], reply), reply);
});

Deno.test("message: header limits on decode and encode", () => {
  throws(() => decodeDhcp6(new Uint8Array(0)), /empty message/);
  throws(() => decodeDhcp6(fromHex("010000")), /at least 4/);
  throws(() => decodeDhcp6(fromHex("00000000")), /reserved/);
  deepStrictEqual(decodeDhcp6(fromHex("0b123456")), { type: 11, transactionId: 0x123456, options: [] });
  deepStrictEqual(decodeDhcp6(fromHex("ff000000")), { type: 255, transactionId: 0, options: [] });
  const ok1: Dhcp6Message = { type: 1, transactionId: 0xffffff, options: [] };
  equal(toHex(encodeDhcp6(ok1)), "01ffffff");
  throws(() => encodeDhcp6({ ...ok1, transactionId: 0x1000000 }), Dhcp6EncodeError);
  throws(() => encodeDhcp6({ ...ok1, type: 0 }), Dhcp6EncodeError);
  throws(() => encodeDhcp6({ ...ok1, type: 256 }), Dhcp6EncodeError);
  throws(() => encodeDhcp6({ ...forw(ok1), peerAddress: "fe80::1%eth0" }), Dhcp6EncodeError);
  throws(() => encodeDhcp6({ ...forw(ok1), hopCount: 256 }), Dhcp6EncodeError);
});
