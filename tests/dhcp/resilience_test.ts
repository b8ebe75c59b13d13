/**
 * DHCP under hostile load (issue 18): a socket whose receive fails (EMFILE injected) backs off and comes
 * back, sockets closed underneath are re-bound, floods of malformed datagrams and failing sends cost a
 * handful of log lines, and TFTP keeps serving while DHCP's socket fails. All on 127.0.0.1 high ports.
 * @module
 */
import * as assert from "node:assert/strict";
import { configure, reset } from "@logtape/logtape";
import type { PxeConfig } from "../../src/config.ts";
import { messageType } from "../../src/dhcp/options.ts";
import { createDhcpPacket, encodeDhcp } from "../../src/dhcp/packet.ts";
import { DhcpServer, type ListenDatagram } from "../../src/dhcp/server.ts";
import { tftpGet } from "../helpers/tftp_client.ts";
import { serveTree, waitFor } from "../tftp/helpers.ts";
import { macOf, MessageType, refConfig, request } from "./helpers.ts";
import { randomPort, UdpClient } from "./udp_client.ts";

const T = { sanitizeResources: true, sanitizeOps: true };
const EMFILE = "Too many open files (os error 24)";

/**
 * Wraps `Deno.listenDatagram` for the sockets bound to `ports`: their receives or sends can be made to
 * throw, binds to fail with EMFILE, and the real sockets can be closed under the service.
 */
class Faults {
  /** receive() calls that throw `error` from now on (Infinity: until set back to 0). */
  failReceives = 0;
  /** send() calls that throw `error`. */
  failSends = 0;
  /** listen() calls for `ports` that throw EMFILE. */
  failBinds = 0;
  error: Error = new Error(EMFILE);
  receiveFailures = 0;
  sendFailures = 0;
  bindFailures = 0;
  /** Successful binds of `ports`. */
  binds = 0;
  readonly #live = new Set<Deno.DatagramConn>();

  readonly ports: number[];

  constructor(...ports: number[]) {
    this.ports = ports;
  }

  readonly listen: ListenDatagram = (o) => {
    if (!this.ports.includes(o.port ?? 0)) return Deno.listenDatagram(o);
    if (this.failBinds > 0) {
      this.failBinds--;
      this.bindFailures++;
      throw new Error(EMFILE);
    }
    const real = Deno.listenDatagram(o);
    this.binds++;
    this.#live.add(real);
    return this.#wrap(real);
  };

  /** Closes the real sockets: the service's pending receives fail, later ones find no socket. */
  closeUnderneath(): void {
    for (const s of this.#live) s.close();
    this.#live.clear();
  }

  #wrap(real: Deno.DatagramConn): Deno.DatagramConn {
    const wrapper = {
      get addr() {
        return real.addr;
      },
      receive: (buf?: Uint8Array) => {
        if (this.failReceives > 0) {
          this.failReceives--;
          this.receiveFailures++;
          return Promise.reject(this.error);
        }
        return real.receive(buf);
      },
      send: (bytes: Uint8Array, to: Deno.Addr) => {
        if (this.failSends > 0) {
          this.failSends--;
          this.sendFailures++;
          return Promise.reject(this.error);
        }
        return real.send(bytes, to);
      },
      close: () => {
        this.#live.delete(real);
        real.close();
      },
    };
    return wrapper as unknown as Deno.DatagramConn;
  }
}

/** Captures every `pypxe` log line at DEBUG and above until `stop()`. */
async function captureLogs(): Promise<{ lines: string[]; stop(): Promise<void> }> {
  const lines: string[] = [];
  await configure({
    reset: true,
    sinks: { capture: (r) => lines.push(`${r.level} ${r.message.map(String).join("")}`) },
    loggers: [
      { category: ["pypxe"], sinks: ["capture"], lowestLevel: "debug" },
      { category: ["logtape", "meta"], sinks: [], lowestLevel: "warning" },
    ],
  });
  return { lines, stop: () => reset() };
}

/** The count of a summary line `label: N more in the last 10 s`, or 0. */
function summarised(lines: string[], label: string): number {
  const line = lines.find((l) => l.includes(`${label}: `) && l.includes(" more in the last "));
  return line === undefined ? 0 : Number(/: ([\d,]+) more/.exec(line)![1].replaceAll(",", ""));
}

/**
 * A DHCP server on 127.0.0.1 random high ports (67 and, in proxy mode, 4011) with faults injected on
 * both, and a client on 127.0.0.1.
 */
async function startDhcp(over: Partial<PxeConfig> = {}) {
  const client = new UdpClient({ hostname: "127.0.0.1" });
  for (let attempt = 0;; attempt++) {
    const port = randomPort();
    const proxyPort = randomPort();
    const faults = new Faults(port, proxyPort);
    const config: PxeConfig = refConfig({
      DHCP_SERVER_IP: "127.0.0.1",
      DHCP_FILESERVER: "127.0.0.1",
      DHCP_ROUTER: "127.0.0.1",
      DHCP_OFFER_BEGIN: "127.0.0.100",
      DHCP_OFFER_END: "127.0.0.150",
      DHCP_BROADCAST: "127.0.0.255",
      DHCP_SERVER_PORT: port,
      ...over,
    });
    const server = new DhcpServer({
      config,
      clientPort: client.port,
      proxyPort,
      listenAddress: "127.0.0.1",
      broadcastAddress: "127.0.0.1",
      listenDatagram: faults.listen,
    });
    try {
      await server.start();
    } catch (err) {
      if (attempt < 4) continue;
      await client.close();
      throw err;
    }
    return {
      server,
      client,
      faults,
      port,
      proxyPort,
      /** Sends a DISCOVER for MAC number `n`; the OFFER or undefined after `ms`. */
      async discover(n: number, ms = 2000) {
        const pkt = request(MessageType.DISCOVER, macOf(n), { arch: 7, vendorClass: "PXEClient:Arch:00007" });
        await client.send(encodeDhcp(pkt), port);
        return await client.reply(pkt.xid, ms);
      },
      async close() {
        await server.stop();
        await client.close();
      },
    };
  }
}

Deno.test({
  name:
    "dhcp resilience: EMFILE on receive backs off (no spin, one line) and recovers; TFTP serves meanwhile",
  ...T,
  async fn() {
    const logs = await captureLogs();
    const file = new Uint8Array(5000).map((_, i) => i & 255);
    const tftp = await serveTree({ "f.bin": file });
    const d = await startDhcp();
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
    const d = await startDhcp({ DHCP_MODE_PROXY: true });
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
    const d = await startDhcp();
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
    const d = await startDhcp();
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
