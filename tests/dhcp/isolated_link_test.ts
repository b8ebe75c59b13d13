/**
 * `--interface` on an isolated link (issue 16 §3): pypxe hands out no router and no DNS server unless
 * the user names them, and the banner says what is sent.
 */
import { equal, ok } from "node:assert/strict";
import { buildConfig } from "../../src/config.ts";
import { parseArgs } from "../../src/cli.ts";
import { DhcpResponder } from "../../src/dhcp/responder.ts";
import { createDhcpPacket, decodeDhcp, encodeDhcp } from "../../src/dhcp/packet.ts";
import { getOption, MessageType, Opt, setOption } from "../../src/dhcp/options.ts";

const IFACE = () => [{ name: "eth9", address: "10.20.30.5", netmask: "255.255.255.0" }];

function offerFor(args: string[]) {
  const { config } = buildConfig({ flags: parseArgs(args).flags, interfaces: IFACE });
  const responder = new DhcpResponder({ config });
  const discover = createDhcpPacket({ mac: "02:00:00:00:00:01", xid: 7 });
  setOption(discover, Opt.MESSAGE_TYPE, MessageType.DISCOVER);
  const out = responder.handle(encodeDhcp(discover), { hostname: "0.0.0.0", port: 68, on: "dhcp" });
  equal(out.length, 1);
  return { config, offer: decodeDhcp(out[0].bytes) };
}

Deno.test("isolated link: --interface sends no router and no DNS unless asked", () => {
  const { config, offer } = offerFor(["--dhcp", "--interface", "eth9"]);
  equal(config.DHCP_ROUTER, "");
  equal(config.DHCP_DNS, "");
  equal(getOption(offer, Opt.ROUTER), undefined);
  equal(getOption(offer, Opt.DNS), undefined);
  ok(getOption(offer, Opt.SUBNET_MASK) !== undefined);
});

Deno.test("isolated link: a router and DNS given explicitly are sent", () => {
  const { offer } = offerFor([
    "--dhcp",
    "--interface",
    "eth9",
    "--dhcp-router",
    "10.20.30.1",
    "--dhcp-dns",
    "10.20.30.53",
  ]);
  ok(getOption(offer, Opt.ROUTER) !== undefined);
  ok(getOption(offer, Opt.DNS) !== undefined);
});
