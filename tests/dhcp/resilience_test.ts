/**
 * DHCP under hostile load (issue 18): a socket whose receive fails (EMFILE injected) backs off and comes
 * back, sockets closed underneath are re-bound, floods of malformed datagrams and failing sends cost a
 * handful of log lines, and TFTP keeps serving while DHCP's socket fails. All on 127.0.0.1 high ports.
 * @module
 */
import * as assert from "node:assert/strict";
import type { PxeConfig } from "../../src/config.ts";
import { messageType } from "../../src/dhcp/options.ts";
import { createDhcpPacket, encodeDhcp } from "../../src/dhcp/packet.ts";
import { Faults } from "../helpers/faults.ts";
import { captureLogs, summarised } from "../helpers/logs.ts";
import { serveTftpTree, startDhcp } from "../helpers/servers.ts";
import { tftpGet } from "../helpers/tftp_client.ts";
import { waitFor } from "../tftp/helpers.ts";
import { macOf, MessageType, request } from "./helpers.ts";

const T = { sanitizeResources: true, sanitizeOps: true };

/**
 * A DHCP server on 127.0.0.1 random high ports (67 and, in proxy mode, 4011) with faults injected on
 * both, and a client on 127.0.0.1.
 */
async function startFaultyDhcp(over: Partial<PxeConfig> = {}) {
  let faults = new Faults();
  const d = await startDhcp(over, {
    server: ({ port, proxyPort }) => {
      faults = new Faults(port, proxyPort);
      return { listenAddress: "127.0.0.1", listenDatagram: faults.listen };
    },
  });
  return {
    ...d,
    faults,
    /** Sends a DISCOVER for MAC number `n`; the OFFER or undefined after `ms`. */
    discover: (n: number, ms = 2000) =>
      d.ask(request(MessageType.DISCOVER, macOf(n), { arch: 7, vendorClass: "PXEClient:Arch:00007" }), ms),
  };
}

Deno.test({
  name:
    "dhcp resilience: EMFILE on receive backs off (no spin, one line) and recovers; TFTP serves meanwhile",
  ...T,
  async fn() {
    const logs = await captureLogs();
    const file = new Uint8Array(5000).map((_, i) => i & 255);
    const tftp = await serveTftpTree({ "f.bin": file });
    const d = await startFaultyDhcp();
    try {
      assert.equal((await d.discover(1))?.yiaddr, "127.0.0.100");
      d.faults.failReceives = Infinity;
      // wakes the pending receive; every later receive throws EMFILE
      await d.client.send(new Uint8Array([1, 2, 3]), d.port);
      assert.ok(await waitFor(() => d.faults.receiveFailures >= 3, 3000), "receive never failed");
      // DHCP's socket is failing now: TFTP does not notice
      assert.deepEqual((await tftpGet({ port: tftp.port, file: "f.bin", deadlineMs: 5000 })).bytes, file);
      const before = d.faults.receiveFailures;
      await new Promise((r) => setTimeout(r, 1500));
      // backoff 50 ms doubling to 1 s (the old loop: a WARN line every 10 ms)
      const attempts = d.faults.receiveFailures - before;
      assert.ok(attempts >= 1 && attempts <= 6, `${attempts} attempts in 1.5 s`);
      d.faults.failReceives = 0;
      // answered within one backoff step (the client retries like a PXE ROM would)
      let offer;
      for (let i = 0; i < 4 && !offer; i++) offer = await d.discover(2, 1000);
      assert.equal(offer?.yiaddr, "127.0.0.101");
      const receiveLines = logs.lines.filter((l) => l.includes("receive on"));
      assert.equal(receiveLines.length, 1, receiveLines.join("\n"));
      assert.match(receiveLines[0], /^warning receive on UDP 127\.0\.0\.1:\d+ failed: Too many open files/);
    } finally {
      await d.close();
      await tftp.close();
      await logs.stop();
    }
    assert.ok(summarised(logs.lines, "(out of descriptors or buffers)") >= 3, logs.lines.join("\n"));
  },
});

Deno.test({
  name:
    "dhcp resilience: proxy mode's 67 and 4011 sockets closed underneath are re-bound through failed binds",
  ...T,
  async fn() {
    const logs = await captureLogs();
    const d = await startFaultyDhcp({ DHCP_MODE_PROXY: true });
    const pxe = { arch: 7, vendorClass: "PXEClient:Arch:00007" };
    /** A proxy OFFER on 67, then an ACK from 4011. */
    const boot = async (n: number) => {
      const discover = request(MessageType.DISCOVER, macOf(n), pxe);
      await d.client.send(encodeDhcp(discover), d.port);
      const offer = await d.client.reply(discover.xid, 2000);
      assert.ok(offer, "no proxy OFFER");
      assert.equal(messageType(offer), MessageType.OFFER);
      const req = request(MessageType.REQUEST, macOf(n), { ...pxe, ciaddr: "127.0.0.1" });
      await d.client.send(encodeDhcp(req), d.proxyPort);
      const ack = await d.client.reply(req.xid, 2000);
      assert.ok(ack, "no ACK from 4011");
      assert.equal(messageType(ack), MessageType.ACK);
      assert.equal(ack.from.port, d.proxyPort);
    };
    try {
      assert.equal(d.server.endpoints().length, 2);
      assert.equal(d.faults.binds, 2);
      await boot(1);
      d.faults.failBinds = 3;
      d.faults.closeUnderneath();
      assert.ok(await waitFor(() => d.faults.binds === 4, 5000), `binds ${d.faults.binds}`);
      assert.equal(d.faults.bindFailures, 3);
      await boot(2);
      const gone = logs.lines.filter((l) => l.includes("is gone"));
      assert.equal(gone.length, 2, gone.join("\n")); // one per socket
      assert.equal(logs.lines.filter((l) => / is back$/.test(l)).length, 2, logs.lines.join("\n"));
      const warn = logs.lines.filter((l) => l.startsWith("warning") || l.startsWith("error"));
      assert.ok(warn.length <= 4, warn.join("\n"));
    } finally {
      await d.close();
      await logs.stop();
    }
  },
});

Deno.test({
  name:
    "dhcp resilience: 5,000 malformed or dropped datagrams log fewer than 20 lines at DEBUG; a DISCOVER is answered",
  ...T,
  async fn() {
    const logs = await captureLogs();
    const d = await startFaultyDhcp();
    try {
      const reply = createDhcpPacket({ mac: macOf(9), xid: 1, flags: 0 });
      reply.op = 2; // a BOOTREPLY: decodes, then dropped
      const bootReply = encodeDhcp(reply);
      for (let i = 0; i < 5000; i++) {
        const bytes = i % 2 === 0
          ? new Uint8Array(1 + (i % 300)).map((_, j) => (i * 13 + j * 7) & 255) // not DHCP
          : bootReply;
        await d.client.send(bytes, d.port);
        // paced so that the kernel buffer does not drop most of them
        if (i % 50 === 49) await new Promise((r) => setTimeout(r, 1));
      }
      const offer = await d.discover(1);
      assert.equal(offer?.yiaddr, "127.0.0.100");
    } finally {
      await d.close();
      await logs.stop();
    }
    assert.ok(logs.lines.length < 20, `${logs.lines.length} lines:\n${logs.lines.join("\n")}`);
    const counted = summarised(logs.lines, "malformed datagrams dropped") +
      summarised(logs.lines, "messages dropped");
    assert.ok(counted > 2500, `only ${counted} of 5,000 datagrams accounted for:\n${logs.lines.join("\n")}`);
  },
});

Deno.test({
  name: "dhcp resilience: 1,000 failing sends log one line and a count; sends work again after",
  ...T,
  async fn() {
    const logs = await captureLogs();
    const d = await startFaultyDhcp();
    try {
      d.faults.failSends = Infinity;
      for (let i = 0; i < 1000; i++) {
        const pkt = request(MessageType.DISCOVER, macOf(1), { arch: 7, vendorClass: "PXEClient:Arch:00007" });
        await d.client.send(encodeDhcp(pkt), d.port);
        if (i % 50 === 49) await new Promise((r) => setTimeout(r, 1));
      }
      assert.ok(await waitFor(() => d.faults.sendFailures > 500, 3000), `${d.faults.sendFailures} sends`);
      d.faults.failSends = 0;
      assert.equal((await d.discover(1))?.yiaddr, "127.0.0.100");
      const sendLines = logs.lines.filter((l) => l.includes("DHCP send to"));
      assert.equal(sendLines.length, 1, sendLines.join("\n"));
      assert.match(sendLines[0], /^warning DHCP send to 127\.0\.0\.1:\d+ failed: Too many open files/);
    } finally {
      await d.close();
      await logs.stop();
    }
    assert.ok(summarised(logs.lines, "DHCP sends failed") > 500, logs.lines.join("\n"));
    assert.ok(logs.lines.length < 20, logs.lines.join("\n"));
  },
});
