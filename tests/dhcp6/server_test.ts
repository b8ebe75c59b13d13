/**
 * pypxe's DHCPv6 server as a real process (`main.ts --ipv6`) in a network namespace, driven by raw UDP from
 * a client namespace: proxy mode (`--dhcp-proxy`: an Advertise with boot options and no address for the
 * OVMF PXE Solicit, a Reply on port 4011), and hostile input in full mode (over 10,000 seeded mutations
 * of the golden packets, every truncation of the client goldens, an empty and a 5,000-byte datagram),
 * after which a Solicit is still answered. Needs root; skipped with the reason otherwise, unless
 * PYPXE_REQUIRE_E2E=1 (then it fails).
 * @module
 */
import { deepEqual, equal, ok } from "node:assert/strict";
import { bootFileUrl, iaAddresses, iaNas, vendorClasses } from "../../src/dhcp6/accessors.ts";
import { getOption6, MessageType6, Opt6, setOption6 } from "../../src/dhcp6/options.ts";
import { decodeDhcp6, type Dhcp6Message, encodeDhcp6 } from "../../src/dhcp6/packet.ts";
import { ipv6ToBig } from "../../src/dhcp6/leases6.ts";
import { netnsAvailable } from "../helpers/netns.ts";
import {
  createPair6,
  type DatagramRecord,
  fromHex,
  linkLocalOf,
  type Pair6,
  sendDatagrams,
  type SendResult,
} from "../helpers/netns6.ts";
import * as fz from "../helpers/fuzz.ts";
import { xorshift } from "../helpers/random.ts";
import { inNetns } from "../helpers/run.ts";
import { type PypxeProcess, startPypxe } from "../helpers/servers.ts";
import { requires } from "../helpers/tools.ts";
import { fixture6, fixture6Names } from "./helpers.ts";

const SERVER_IP = "10.213.7.1";
const SERVER_IP6 = "fd00:217::1";
const CLIENT_IP6 = "fd00:217::2";
const T = { sanitizeResources: true, sanitizeOps: true };

/** Runs `fn` with a namespace pair (client with `CLIENT_IP6`), a temp dir and pypxe started with `args`. */
async function withPypxe(
  tag: string,
  args: string[],
  fn: (ctx: { dir: string; pair: Pair6; pypxe: PypxeProcess }) => Promise<void>,
): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "pypxe-dhcp6-server-" });
  const pair = await createPair6({ tag, serverIp: SERVER_IP, serverIp6: SERVER_IP6, clientIp6: CLIENT_IP6 });
  let pypxe: PypxeProcess | undefined;
  try {
    pypxe = await startPypxe(
      ["--ipv6", "--interface", pair.serverIf, "--no-tftp", "--no-status", ...args],
      { prefix: inNetns(pair.server, []) },
    );
    await fn({ dir, pair, pypxe });
  } finally {
    await pypxe?.stop("SIGTERM").catch(() => {});
    await pair.destroy();
    await Deno.remove(dir, { recursive: true });
  }
}

/** Decodes a reply that must be a client/server message. */
function message(hex: string): Dhcp6Message {
  const pkt = decodeDhcp6(fromHex(hex));
  ok(pkt.type !== MessageType6.RELAY_FORW && pkt.type !== MessageType6.RELAY_REPL, `relay ${pkt.type}`);
  return pkt as Dhcp6Message;
}

const text = (bytes: Uint8Array) => new TextDecoder().decode(bytes);

/** The boot URL must name the server by its bracketed IPv6 address. */
const URL_OF_SERVER = new RegExp(`^(tftp|http)://\\[${SERVER_IP6}\\](:\\d+)?/\\S+$`);

const netnsMissing = netnsAvailable();

Deno.test(requires(netnsMissing, {
  name:
    "dhcp6 netns: --dhcp-proxy --ipv6 answers OVMF's PXE Solicit with boot options and no address, and its Request on 4011",
  ...T,
  async fn() {
    await withPypxe("d6px", ["--dhcp-proxy"], async ({ dir, pair, pypxe }) => {
      const multicast = { hostname: `ff02::1:2%${pair.clientIf}`, port: 547 };
      const solicit = fixture6("ovmf-pxe6-solicit.bin");
      const xid = (solicit[1] << 16) | (solicit[2] << 8) | solicit[3];
      const r = await sendDatagrams(pair.client, dir, [{ target: 0, bytes: solicit }], {
        targets: [multicast],
        waitMs: 5000,
        untilReplies: 1,
        maxSeconds: 15,
      });
      equal(r.received, 1, JSON.stringify(r));
      equal(r.replies[0].port, 547);
      const advertise = message(r.replies[0].hex);
      equal(advertise.type, MessageType6.ADVERTISE);
      equal(advertise.transactionId, xid);
      ok(URL_OF_SERVER.test(bootFileUrl(advertise) ?? ""), `option 59: ${bootFileUrl(advertise)}`);
      deepEqual(
        vendorClasses(advertise).map((v) => ({ enterprise: v.enterprise, data: v.data.map(text) })),
        [{ enterprise: 343, data: ["PXEClient"] }],
      );
      deepEqual(iaNas(advertise).flatMap((ia) => iaAddresses(ia)), [], "proxy mode gave an address");
      equal(getOption6(advertise, Opt6.IA_NA), undefined);
      await pypxe.waitFor(/52:54:00:77:00:66 SOLICIT \(UEFI x64 \(IPv6\)\) -> proxy ADVERTISE /, 5000);

      // OVMF's Request (captured with dnsmasq's server id) for this server, unicast to port 4011
      const request = decodeDhcp6(fixture6("ovmf-pxe6-request.bin")) as Dhcp6Message;
      setOption6(request, Opt6.SERVERID, getOption6(advertise, Opt6.SERVERID)!);
      // a Solicit of OVMF's IP stack (no arch, no vendor class): not a boot client, no answer
      const plain = fixture6("ovmf-ip6-solicit.bin");
      const r2 = await sendDatagrams(pair.client, dir, [
        { target: 0, bytes: encodeDhcp6(request) },
        { target: 1, bytes: plain },
      ], {
        targets: [{ hostname: SERVER_IP6, port: 4011 }, multicast],
        waitMs: 3000,
        maxSeconds: 15,
      });
      equal(r2.received, 1, JSON.stringify(r2));
      equal(r2.replies[0].port, 4011);
      const reply = message(r2.replies[0].hex);
      equal(reply.type, MessageType6.REPLY);
      equal(reply.transactionId, request.transactionId);
      ok(URL_OF_SERVER.test(bootFileUrl(reply) ?? ""), `option 59: ${bootFileUrl(reply)}`);
      equal(bootFileUrl(reply), bootFileUrl(advertise));
      deepEqual(iaNas(reply).flatMap((ia) => iaAddresses(ia)), []);
      await pypxe.waitFor(/52:54:00:77:00:66 REQUEST \(UEFI x64 \(IPv6\)\) -> proxy REPLY /, 5000);
      equal(r2.replies[0].from, SERVER_IP6, "the reply comes from the address the Request went to");
      // sent from the client's link-local address (a firmware whose global address is still tentative):
      // the reply must still come from the boot URL's address, which is all EDK2 accepts
      const linkLocal = await linkLocalOf(pair.client, pair.clientIf);
      const r3 = await sendDatagrams(pair.client, dir, [{ target: 0, bytes: encodeDhcp6(request) }], {
        bind: `${linkLocal}%${pair.clientIf}`,
        targets: [{ hostname: SERVER_IP6, port: 4011 }],
        waitMs: 3000,
        untilReplies: 1,
        maxSeconds: 15,
      });
      equal(r3.received, 1, JSON.stringify(r3));
      deepEqual([r3.replies[0].from, r3.replies[0].port], [SERVER_IP6, 4011]);
    });
  },
}));

// ---------- hostile input ----------

/** DHCPv6 options: 2-byte code, 2-byte length, the value; after a relay's 34-byte header or a message's 4. */
const DHCP6_OPTIONS = fz.tlvLayout((b) => b[0] === 12 || b[0] === 13 ? 34 : 4, 2, 2, (n) => 4 + n);

/** The mutations of tests/dhcp6/fuzz_test.ts, as datagrams for the wire. */
const MUTATIONS: fz.Mutation[] = [
  // repeat an option, or append a flood of empty options
  ...fz.tlvMutations(DHCP6_OPTIONS, { size: 4, min: 400, spread: 200, header: (r) => [0, r.below(100)] }, 4),
  // a length byte inside an option value (IA_NA sub-options, vendor class strings) lies
  fz.setByte((c, r) => c.length > 8 ? 8 + r.below(c.length - 8) : undefined, [0, 1, 0xff, fz.ANY_BYTE]),
  (b, r) => { // relay headers around it (1..10), sometimes one lying about option 9's length
    let c = b;
    const lieAt = r.below(3) === 0 ? r.below(10) : -1;
    for (let i = 0, n = 1 + r.below(10); i < n; i++) {
      const out = new Uint8Array(38 + c.length);
      out.set([12, r.below(256)]);
      out.set(r.bytes(32), 2);
      const len = i === lieAt ? r.below(0x10000) : c.length;
      out.set([0, 9, len >> 8, len & 255], 34);
      out.set(c, 38);
      c = out;
    }
    return c;
  },
  // the message type becomes another (a relay type, a server type, 0, 255)
  fz.setByte((c) => c.length > 0 ? 0 : undefined, [0, 1, 2, 3, 5, 7, 8, 12, 13, 255]),
  (_b, r) => r.bytes(r.below(600)), // random bytes
];

const SEED = 0x6d686370;
const MUTATED = 12_000;
/** Client messages among the goldens (those a server answers). */
const CLIENT_GOLDENS = [
  "ipxe-efi-request6.bin",
  "ipxe-efi-solicit6.bin",
  "ovmf-http6-request.bin",
  "ovmf-http6-solicit.bin",
  "ovmf-ip6-solicit.bin",
  "ovmf-pxe6-request.bin",
  "ovmf-pxe6-solicit.bin",
  "ovmf-release6.bin",
];

/**
 * The hostile datagrams, targets 0 (ff02::1:2) and 1 (the server's address) alternating: `MUTATED`
 * seeded mutations of every golden, every truncation of the client goldens, an empty datagram and a
 * 5,000-byte one (a Solicit followed by an option padding it past 4 KiB).
 */
function hostileDatagrams(): { records: DatagramRecord[]; mutated: number; truncated: number } {
  const r = xorshift(SEED);
  const goldens = fixture6Names().map((n) => fixture6(n));
  const records: DatagramRecord[] = [];
  const add = (bytes: Uint8Array) => records.push({ target: records.length % 2, bytes });
  for (let i = 0; i < MUTATED; i++) {
    const golden = goldens[r.below(goldens.length)];
    add(MUTATIONS[r.below(MUTATIONS.length)](golden, r));
  }
  let truncated = 0;
  for (const name of CLIENT_GOLDENS) {
    const b = fixture6(name);
    for (let n = 0; n < b.length; n++, truncated++) add(b.subarray(0, n));
  }
  add(new Uint8Array(0));
  add(bigSolicit(0x0b16));
  return { records, mutated: MUTATED, truncated };
}

/** OVMF's PXE Solicit with transaction id `xid`, padded to 5,000 bytes by an unknown option (65280). */
function bigSolicit(xid: number): Uint8Array {
  const solicit = fixture6("ovmf-pxe6-solicit.bin");
  const big = new Uint8Array(5000);
  big.set(solicit);
  big.set([xid >> 16, (xid >> 8) & 255, xid & 255], 1);
  const padLength = big.length - solicit.length - 4;
  big.set([0xff, 0x00, padLength >> 8, padLength & 255], solicit.length);
  return big;
}

Deno.test(requires(netnsMissing, {
  name:
    "dhcp6 netns: over 10,000 mutated, truncated, empty and oversized datagrams to ff02::1:2 and unicast; the running server still answers a Solicit",
  ...T,
  async fn() {
    await withPypxe("d6fz", ["--dhcp"], async ({ dir, pair, pypxe }) => {
      const multicast = { hostname: `ff02::1:2%${pair.clientIf}`, port: 547 };
      const unicast = { hostname: SERVER_IP6, port: 547 };
      const { records, mutated, truncated } = hostileDatagrams();
      ok(records.length >= 10_000);
      const started = performance.now();
      const flood: SendResult = await sendDatagrams(pair.client, dir, records, {
        targets: [multicast, unicast],
        waitMs: 2000,
        every: 20,
        pauseMs: 1,
        keep: 0,
        maxSeconds: 120,
      });
      const floodMs = performance.now() - started;
      deepEqual(flood.failed, {}, JSON.stringify(flood));
      equal(flood.sent, records.length);
      console.log(
        `dhcp6 hostile: ${flood.sent} datagrams (${mutated} mutated, ${truncated} truncations, empty, ` +
          `5,000 bytes) sent in ${flood.sendMs} ms (${Math.round(floodMs)} ms with start and drain); ` +
          `${flood.received} replies`,
      );

      // still serving: the golden Solicit gets an Advertise with an address of the pool
      const solicit = fixture6("ovmf-pxe6-solicit.bin");
      const r = await sendDatagrams(pair.client, dir, [{ target: 0, bytes: solicit }], {
        targets: [multicast],
        waitMs: 5000,
        untilReplies: 1,
        maxSeconds: 15,
      });
      equal(r.received, 1, JSON.stringify(r));
      const advertise = message(r.replies[0].hex);
      equal(advertise.type, MessageType6.ADVERTISE);
      const ip = iaAddresses(iaNas(advertise)[0])[0]?.address ?? "";
      const n = ipv6ToBig(ip);
      ok(n !== undefined && n >= ipv6ToBig("fd00:217::1:0")! && n <= ipv6ToBig("fd00:217::1:ffff")!, ip);
      ok(URL_OF_SERVER.test(bootFileUrl(advertise) ?? ""), `option 59: ${bootFileUrl(advertise)}`);

      // a 5,000-byte Solicit is read whole (not cut at 4 KiB into a malformed one) and answered
      const big = await sendDatagrams(pair.client, dir, [{ target: 0, bytes: bigSolicit(0x0b17) }], {
        targets: [multicast],
        waitMs: 5000,
        untilReplies: 1,
        maxSeconds: 15,
      });
      equal(big.received, 1, JSON.stringify(big));
      const bigAdvertise = message(big.replies[0].hex);
      equal(bigAdvertise.type, MessageType6.ADVERTISE);
      equal(bigAdvertise.transactionId, 0x0b17);
      equal(iaAddresses(iaNas(bigAdvertise)[0])[0]?.address, ip); // the same machine: the same address

      // alive, and no error: malformed input is DEBUG, never a warning storm
      let timer: ReturnType<typeof setTimeout> | undefined;
      const exited = await Promise.race([
        pypxe.child.status.then(() => true),
        new Promise<boolean>((resolve) => timer = setTimeout(() => resolve(false), 200)),
      ]);
      clearTimeout(timer);
      equal(exited, false, "pypxe exited");
      const bad = pypxe.lines.filter((l) => / (ERROR|FATAL) /.test(l));
      deepEqual(bad, [], bad.join("\n"));
      const warnings = pypxe.lines.filter((l) => / WARN /.test(l));
      ok(warnings.length < 20, `${warnings.length} warnings:\n${warnings.slice(0, 40).join("\n")}`);
    });
  },
}));
