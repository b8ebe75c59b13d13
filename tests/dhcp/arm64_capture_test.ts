/**
 * The DHCP answer to a real ARM64 UEFI client: AAVMF's DISCOVER and REQUEST, captured by the arm64
 * end-to-end test (see tests/dhcp/captured/README.md).
 */
import { deepStrictEqual, equal } from "node:assert/strict";
import { decodeDhcp } from "../../src/dhcp/packet.ts";
import { getIp, getString, messageType } from "../../src/dhcp/options.ts";
import { bootFileFor, describeClient, policyOptionsFrom } from "../../src/dhcp/policy.ts";
import { DhcpResponder } from "../../src/dhcp/responder.ts";
import { MessageType, Opt, refConfig } from "./helpers.ts";

const captured = (name: string) => Deno.readFileSync(new URL(`./captured/${name}`, import.meta.url));
const DHCP = { hostname: "0.0.0.0", port: 68, on: "dhcp" } as const;

Deno.test("AAVMF arm64 DISCOVER: arch 11 from option 93 and option 60, UEFI arm64 family", () => {
  const pkt = decodeDhcp(captured("aavmf-arm64-discover.bin"));
  equal(pkt.mac, "52:54:00:e2:a6:40");
  const client = describeClient(pkt);
  equal(client.arch, 11);
  equal(client.vendorClass?.startsWith("PXEClient:Arch:00011:"), true);
  equal(client.ipxe, false);
  const decision = bootFileFor(client, policyOptionsFrom(refConfig()));
  deepStrictEqual([decision.file, decision.family, decision.label], ["grubaa64.efi", "arm64", "UEFI arm64"]);
  // --secure-boot is about x64 shim: ARM64 keeps its file
  equal(bootFileFor(client, { ...policyOptionsFrom(refConfig()), secureBoot: true }).file, "grubaa64.efi");
  equal(
    bootFileFor(client, policyOptionsFrom(refConfig({ NETBOOT_FILE_ARM64: "arm/grub.efi" }))).file,
    "arm/grub.efi",
  );
});

Deno.test("AAVMF arm64 DORA: OFFER and ACK carry grubaa64.efi and next-server", () => {
  // the network of the capture: the REQUEST names server 10.200.0.1 and address 10.200.0.128
  const config = refConfig({
    DHCP_SERVER_IP: "10.200.0.1",
    DHCP_FILESERVER: "10.200.0.1",
    DHCP_OFFER_BEGIN: "10.200.0.128",
    DHCP_OFFER_END: "10.200.0.227",
    DHCP_ROUTER: "10.200.0.1",
    DHCP_BROADCAST: "10.200.0.255",
  });
  const r = new DhcpResponder({ config });
  const [offer] = r.handle(captured("aavmf-arm64-discover.bin"), DHCP).map((o) => decodeDhcp(o.bytes));
  equal(messageType(offer), MessageType.OFFER);
  equal(offer.file, "grubaa64.efi");
  equal(getString(offer, Opt.BOOTFILE), "grubaa64.efi");
  equal(offer.siaddr, config.DHCP_FILESERVER);
  const [ack] = r.handle(captured("aavmf-arm64-request.bin"), DHCP).map((o) => decodeDhcp(o.bytes));
  equal(messageType(ack), MessageType.ACK);
  equal(ack.file, "grubaa64.efi");
  equal(ack.yiaddr, "10.200.0.128");
  equal(getIp(ack, Opt.SERVER_ID), config.DHCP_SERVER_IP);
});
