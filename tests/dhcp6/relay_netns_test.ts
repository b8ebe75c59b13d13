/**
 * A relayed IPv6 boot client, for real: three namespaces (client, relay, server), dnsmasq as the DHCPv6
 * relay agent between the client's link fd00:a::/64 and pypxe's link fd00:b::/64. OVMF's captured PXE
 * Solicit sent to ff02::1:2 on the client's link reaches pypxe as RELAY-FORW; pypxe (proxyDHCPv6) answers
 * with RELAY-REPL to the relay, which hands the client an Advertise with the boot URL. In full mode the
 * client's link is not pypxe's, so it gets no address (NoAddrsAvail) rather than an off-link one.
 */
import { equal, match, ok } from "node:assert/strict";
import { bootFileUrl, iaAddresses, iaNas, statusCode } from "../../src/dhcp6/accessors.ts";
import { MessageType6, StatusCode6 } from "../../src/dhcp6/options.ts";
import { decodeDhcp6, type Dhcp6Message } from "../../src/dhcp6/packet.ts";
import { netnsAvailable } from "../helpers/netns.ts";
import { addAddress6, fromHex, sendDatagrams, waitDad } from "../helpers/netns6.ts";
import { inNetns, run } from "../helpers/run.ts";
import { type Daemon, startDaemon, startPypxe } from "../helpers/servers.ts";
import { requires } from "../helpers/tools.ts";
import { fixture6 } from "./helpers.ts";

const T = { sanitizeResources: true, sanitizeOps: true };

/** Client -- relay -- server namespaces; `destroy()` removes them. */
async function relayChain(tag: string) {
  const [client, relay, server] = ["c", "r", "s"].map((n) => `pypxe-rl${n}-${tag}-${Deno.pid}`);
  const ok = async (ns: string, cmd: string[]) =>
    void await run(cmd, { netns: ns, check: true, timeoutMs: 10_000 });
  const destroy = async () => {
    for (const ns of [client, relay, server]) await run(["ip", "netns", "del", ns], { timeoutMs: 10_000 });
  };
  try {
    for (const ns of [client, relay, server]) {
      await run(["ip", "netns", "add", ns], { check: true, timeoutMs: 10_000 });
      await ok(ns, ["ip", "link", "set", "lo", "up"]);
    }
    await run([
      "ip",
      "link",
      "add",
      "rc0",
      "netns",
      client,
      "type",
      "veth",
      "peer",
      "name",
      "rr0",
      "netns",
      relay,
    ], {
      check: true,
      timeoutMs: 10_000,
    });
    await run([
      "ip",
      "link",
      "add",
      "rr1",
      "netns",
      relay,
      "type",
      "veth",
      "peer",
      "name",
      "rs0",
      "netns",
      server,
    ], {
      check: true,
      timeoutMs: 10_000,
    });
    for (const [ns, dev] of [[client, "rc0"], [relay, "rr0"], [relay, "rr1"], [server, "rs0"]]) {
      await ok(ns, ["ip", "link", "set", dev, "up"]);
    }
    await addAddress6(relay, "rr0", "fd00:a::1/64");
    await addAddress6(relay, "rr1", "fd00:b::2/64");
    await addAddress6(server, "rs0", "fd00:b::1/64");
    await ok(server, ["ip", "-6", "route", "add", "fd00:a::/64", "via", "fd00:b::2"]);
    await ok(relay, ["sysctl", "-qw", "net.ipv6.conf.all.forwarding=1"]);
    for (const [ns, dev] of [[client, "rc0"], [relay, "rr0"], [relay, "rr1"], [server, "rs0"]]) {
      await waitDad(ns, dev);
    }
  } catch (err) {
    await destroy();
    throw err;
  }
  return { client, relay, server, destroy };
}

/** Runs `fn` with the chain, dnsmasq relaying fd00:a::1 -> fd00:b::1 and pypxe started with `args`. */
async function withRelay(
  tag: string,
  args: string[],
  fn: (send: () => Promise<Dhcp6Message[]>, log: () => string) => Promise<void>,
): Promise<void> {
  const chain = await relayChain(tag);
  const dir = await Deno.makeTempDir({ prefix: "pypxe-dhcp6-relay-" });
  let relay: Daemon | undefined;
  let pypxe: Awaited<ReturnType<typeof startPypxe>> | undefined;
  try {
    relay = await startDaemon(
      [
        "dnsmasq",
        "--no-daemon",
        "--port=0",
        "--dhcp-relay=fd00:a::1,fd00:b::1",
        "--log-dhcp",
        "--log-facility=-",
      ],
      { netns: chain.relay, ready: "DHCP relay from fd00:a::1 to fd00:b::1", name: "dnsmasq relay" },
    );
    pypxe = await startPypxe(
      ["--ipv6", "--no-dhcp4", "--interface", "rs0", "--no-tftp", "--no-status", ...args],
      { prefix: inNetns(chain.server, []) },
    );
    const send = async () => {
      const r = await sendDatagrams(chain.client, dir, [{
        target: 0,
        bytes: fixture6("ovmf-pxe6-solicit.bin"),
      }], {
        targets: [{ hostname: "ff02::1:2%rc0", port: 547 }],
        waitMs: 3000,
        untilReplies: 1,
        maxSeconds: 20,
      });
      return r.replies.map((reply) => decodeDhcp6(fromHex(reply.hex)) as Dhcp6Message);
    };
    await fn(send, () => pypxe!.lines.join("\n"));
  } finally {
    await pypxe?.stop("SIGTERM").catch(() => {});
    await relay?.stop().catch(() => {});
    await chain.destroy();
    await Deno.remove(dir, { recursive: true });
  }
}

const missing = netnsAvailable(["dnsmasq"]);

Deno.test(requires(missing, {
  name: "dhcp6 relay: proxyDHCPv6 answers a client behind dnsmasq's relay through RELAY-REPL",
  ...T,
  fn: () =>
    withRelay("p", ["--dhcp-proxy"], async (send, log) => {
      const [adv] = await send();
      ok(adv !== undefined, `no answer through the relay; pypxe:\n${log()}`);
      equal(adv.type, MessageType6.ADVERTISE);
      equal(bootFileUrl(adv), "tftp://[fd00:b::1]/ipxe.efi");
      equal(iaNas(adv).length, 0, "proxy: no IA_NA");
      match(log(), /52:54:00:77:00:66 SOLICIT \(UEFI x64 \(IPv6\)\) -> proxy ADVERTISE ipxe\.efi/);
    }),
}));

Deno.test(requires(missing, {
  name:
    "dhcp6 relay: full mode gives a client relayed from another link NoAddrsAvail, not an off-link address",
  ...T,
  fn: () =>
    withRelay("f", ["--dhcp"], async (send, log) => {
      const [adv] = await send();
      ok(adv !== undefined, `no answer through the relay; pypxe:\n${log()}`);
      const [ia] = iaNas(adv);
      equal(iaAddresses(ia).length, 0);
      equal(statusCode(ia)?.code, StatusCode6.NO_ADDRS_AVAIL);
      match(log(), /relay forwards clients from link fd00:a::1, outside the DHCPv6 range's \/64/);
    }),
}));
