/** Crash safety: a server killed with SIGKILL right after an ACK keeps the lease across a restart. */
import { equal, ok } from "node:assert/strict";
import { messageType } from "../../src/dhcp/options.ts";
import { encodeDhcp } from "../../src/dhcp/packet.ts";
import { macOf, MessageType, request } from "./helpers.ts";
import { dhcpEvents, loopbackDhcpConfig, randomPort, spawnService, UdpClient } from "../helpers/servers.ts";

Deno.test({
  name:
    "crash safety: SIGKILL right after the ACK, restart: the lease is in the file and the client keeps its address",
  sanitizeResources: true,
  sanitizeOps: true,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "pypxe-crash-" });
    const client = new UdpClient({ hostname: "0.0.0.0" });
    try {
      const port = randomPort();
      const file = `${dir}/leases.json`;
      const spec = {
        service: "dhcp" as const,
        config: loopbackDhcpConfig({ DHCP_SERVER_PORT: port, LEASES_FILE: file }),
        clientPort: client.port,
        broadcastAddress: "127.0.0.1",
      };
      const ask = async (pkt: ReturnType<typeof request>) => {
        await client.send(encodeDhcp(pkt), port);
        return await client.reply(pkt.xid, 2000);
      };
      const mac = macOf(77);
      // two clients, so "same address" is not just "the first address"
      let run = await spawnService(spec, { events: true });
      for (const m of [macOf(76), mac]) {
        const offer = await ask(request(MessageType.DISCOVER, m));
        ok(offer, "no OFFER");
        const ack = await ask(
          request(MessageType.REQUEST, m, { requested: offer.yiaddr, serverId: "127.0.0.1" }),
        );
        equal(messageType(ack!), MessageType.ACK);
      }
      equal((await run.stop("SIGKILL")).signal, "SIGKILL");
      const before = await Deno.readTextFile(`${file}.journal`);
      ok(before.includes(mac), "lease journalled before the ACK");

      run = await spawnService(spec, { events: true });
      const saved = JSON.parse(await Deno.readTextFile(file));
      const ip = saved[mac.toUpperCase()]?.ip;
      equal(ip, "127.0.0.101", JSON.stringify(saved));
      const offer = await ask(request(MessageType.DISCOVER, mac));
      equal(offer?.yiaddr, ip);
      const other = await ask(request(MessageType.DISCOVER, macOf(99)));
      ok(other && other.yiaddr !== ip && other.yiaddr !== "127.0.0.100");
      equal((await run.stop("SIGTERM")).code, 0);
      ok(run.output().includes("stopped"));
      ok(dhcpEvents(run).some((e) => e.mac === mac && e.sent === "OFFER" && e.ip === ip));
      const after = JSON.parse(await Deno.readTextFile(file));
      equal(after[mac.toUpperCase()].ip, ip);
    } finally {
      await client.close();
      await Deno.remove(dir, { recursive: true });
    }
  },
});
