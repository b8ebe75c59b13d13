/**
 * TFTP under hostile load (issue 18): a request socket whose receive fails (EMFILE injected) backs off
 * and comes back, one that is closed underneath is re-bound, floods of malformed or refused requests
 * cost a handful of log lines, and DHCP keeps answering while TFTP's socket fails. All on 127.0.0.1.
 * @module
 */
import * as assert from "node:assert/strict";
import { DEFAULTS, type PxeConfig } from "../../src/config.ts";
import { MessageType } from "../../src/dhcp/options.ts";
import { BootEvents } from "../../src/events.ts";
import { connectionCaps } from "../../src/limits.ts";
import { NetbootFs } from "../../src/netboot/fs.ts";
import { encodePacket } from "../../src/tftp/packet.ts";
import { createTftpService, type ListenDatagram, type TftpServer } from "../../src/tftp/server.ts";
import { macOf, request } from "../dhcp/helpers.ts";
import { EMFILE, Faults } from "../helpers/faults.ts";
import { captureLogs, summarised } from "../helpers/logs.ts";
import { freeUdpPort, serveTftpTree, startDhcp } from "../helpers/servers.ts";
import { tftpGet } from "../helpers/tftp_client.ts";
import { waitFor } from "./helpers.ts";

const T = { sanitizeResources: true, sanitizeOps: true };
const FILE = new Uint8Array(3000).map((_, i) => (i * 7) & 255);

/** A DHCP server on 127.0.0.1 (random high ports) and a DISCOVER for MAC number `n`. */
async function startLoopbackDhcp() {
  const d = await startDhcp({}, { server: () => ({ listenAddress: "127.0.0.1" }) });
  return {
    discover: (n: number) =>
      d.ask(request(MessageType.DISCOVER, macOf(n), { arch: 7, vendorClass: "PXEClient:Arch:00007" }), 2000),
    close: () => d.close(),
  };
}

Deno.test({
  name:
    "tftp resilience: EMFILE on receive backs off (no spin, one line) and recovers; DHCP answers meanwhile",
  ...T,
  async fn() {
    const logs = await captureLogs();
    const port = freeUdpPort();
    const faults = new Faults(port);
    const t = await serveTftpTree({ "f.bin": FILE }, { port, listenDatagram: faults.listen });
    const dhcp = await startLoopbackDhcp();
    const sock = Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port: 0 });
    try {
      assert.deepEqual((await tftpGet({ port, file: "f.bin", deadlineMs: 5000 })).bytes, FILE);
      faults.failReceives = Infinity;
      // wakes the pending receive; every later receive throws EMFILE
      await sock.send(new Uint8Array([0, 9]), { transport: "udp", hostname: "127.0.0.1", port });
      assert.ok(await waitFor(() => faults.receiveFailures >= 3, 3000), "receive never failed");
      // TFTP's socket is failing now: DHCP does not notice
      const offer = await dhcp.discover(1);
      assert.ok(offer, "DHCP did not answer while TFTP was failing");
      assert.equal(offer.yiaddr, "127.0.0.100");
      const before = faults.receiveFailures;
      await new Promise((r) => setTimeout(r, 1500));
      // backoff 50 ms doubling to 1 s: a handful of attempts, not a spin (the old loop: 1000 and out)
      assert.ok(faults.receiveFailures - before <= 6, `${faults.receiveFailures - before} attempts in 1.5 s`);
      assert.ok(faults.receiveFailures > before, "the loop gave up");
      faults.failReceives = 0;
      const got = await tftpGet({ port, file: "f.bin", deadlineMs: 5000 });
      assert.deepEqual(got.bytes, FILE);
      const receiveLines = logs.lines.filter((l) => l.includes("receive on"));
      assert.equal(receiveLines.length, 1, receiveLines.join("\n"));
      assert.match(receiveLines[0], /^warning receive on UDP 127\.0\.0\.1:\d+ failed: Too many open files/);
    } finally {
      sock.close();
      await dhcp.close();
      await t.close();
      await logs.stop();
    }
    // the suppressed failures are reported once, when the service stops
    assert.ok(
      summarised(logs.lines, "receive failures (out of descriptors or buffers)") >= 3,
      logs.lines.join("\n"),
    );
  },
});

Deno.test({
  name:
    "tftp resilience: a request socket closed underneath is re-bound through failed binds and serves again",
  ...T,
  async fn() {
    const logs = await captureLogs();
    const port = freeUdpPort();
    const faults = new Faults(port);
    const t = await serveTftpTree({ "f.bin": FILE }, { port, listenDatagram: faults.listen });
    try {
      assert.deepEqual((await tftpGet({ port, file: "f.bin", deadlineMs: 5000 })).bytes, FILE);
      faults.failBinds = 3;
      faults.closeUnderneath();
      assert.ok(await waitFor(() => faults.binds === 2, 5000), `binds ${faults.binds}`);
      assert.equal(faults.bindFailures, 3);
      assert.equal(t.server.port, port);
      assert.deepEqual((await tftpGet({ port, file: "f.bin", deadlineMs: 5000 })).bytes, FILE);
      const warn = logs.lines.filter((l) => l.startsWith("warning") || l.startsWith("error"));
      assert.equal(warn.length, 2, warn.join("\n")); // "is gone", then one "cannot re-bind" for three
      assert.match(warn[0], /request socket UDP 127\.0\.0\.1:\d+ is gone .*: re-binding/);
      assert.match(warn[1], /cannot re-bind UDP 127\.0\.0\.1:\d+ yet: Too many open files/);
      assert.ok(logs.lines.some((l) => /^info request socket UDP 127\.0\.0\.1:\d+ is back$/.test(l)));
    } finally {
      await t.close();
      await logs.stop();
    }
    assert.equal(summarised(logs.lines, "failed re-binds"), 2);
  },
});

/** 5,000 datagrams that are not requests: garbage, unknown opcodes, stray DATA/ACK, WRQs, bad modes. */
function junk(i: number): Uint8Array {
  switch (i % 6) {
    case 0:
      return new Uint8Array(i % 40).map((_, j) => (i * 31 + j * 17) & 255);
    case 1:
      return new Uint8Array([0, 6 + (i % 200), 1, 2, 3]);
    case 2:
      return encodePacket({ op: "ack", block: i & 0xffff });
    case 3:
      return new Uint8Array([0, 1, 0x61, 0x62]); // RRQ without terminators
    case 4:
      return encodePacket({ op: "wrq", filename: `{x}/${i}`, mode: "octet", options: [] });
    default:
      return encodePacket({ op: "rrq", filename: "f.bin", mode: "mail", options: [] });
  }
}

Deno.test({
  name:
    "tftp resilience: 5,000 malformed datagrams log fewer than 20 lines at DEBUG; the next RRQ is answered",
  ...T,
  async fn() {
    const logs = await captureLogs();
    const t = await serveTftpTree({ "f.bin": FILE });
    const sock = Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port: 0 });
    const drain = (async () => {
      try {
        for (;;) await sock.receive(new Uint8Array(1024)); // the ERRORs to WRQs and bad modes
      } catch { /* closed */ }
    })();
    try {
      const to = { transport: "udp" as const, hostname: "127.0.0.1", port: t.port };
      for (let i = 0; i < 5000; i++) {
        await sock.send(junk(i), to);
        // paced so that the kernel buffer does not drop most of them
        if (i % 50 === 49) await new Promise((r) => setTimeout(r, 1));
      }
      assert.deepEqual((await tftpGet({ port: t.port, file: "f.bin", deadlineMs: 5000 })).bytes, FILE);
    } finally {
      sock.close();
      await drain;
      await t.close();
      await logs.stop();
    }
    assert.ok(logs.lines.length < 20, `${logs.lines.length} lines:\n${logs.lines.join("\n")}`);
    const counted = summarised(logs.lines, "malformed datagrams dropped") +
      summarised(logs.lines, "stray packets to the request port dropped") +
      summarised(logs.lines, "write requests refused") +
      summarised(logs.lines, "RRQs with a bad mode refused");
    assert.ok(counted > 2500, `only ${counted} of 5,000 datagrams accounted for:\n${logs.lines.join("\n")}`);
    // a client-sent name with braces is printed as sent, not taken for a placeholder
    assert.ok(logs.lines.some((l) => l.includes("write request for '{x}/")), logs.lines.join("\n"));
  },
});

Deno.test({
  name:
    "tftp resilience: 2,000 RRQs over the cap (from ctx.caps) and EMFILE on transfer sockets: a few lines",
  ...T,
  async fn() {
    const logs = await captureLogs();
    const dir = await Deno.makeTempDir({ prefix: "pypxe-tftp-" });
    await Deno.mkdir(`${dir}/root`);
    await Deno.writeFile(`${dir}/root/big.bin`, new Uint8Array(256 * 1024));
    await Deno.writeFile(`${dir}/root/f.bin`, FILE);
    const netboot = await NetbootFs.open({ overlay: `${dir}/root`, embedded: `${dir}/no-embedded` });
    const port = freeUdpPort();
    let noSockets = false;
    const listen: ListenDatagram = (o) => {
      if (noSockets && o.port === 0) throw new Error(EMFILE);
      return Deno.listenDatagram(o);
    };
    const config: PxeConfig = { ...DEFAULTS, USE_TFTP: true, TFTP_SERVER_IP: "127.0.0.1", TFTP_PORT: port };
    const caps = { ...connectionCaps(1024), tftp: 2 };
    const server = createTftpService({
      config,
      netboot,
      events: new BootEvents(),
      staticLeases: new Map(),
      caps,
    });
    assert.ok(server !== null);
    const tftp = server as TftpServer;
    // the factory has no listenDatagram option: transfer-socket failures use a second server below
    await tftp.start();
    const clients: Deno.DatagramConn[] = [];
    const open = () => {
      const c = Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port: 0 });
      clients.push(c);
      return c;
    };
    const to = { transport: "udp" as const, hostname: "127.0.0.1", port };
    const rrq = (file: string) => encodePacket({ op: "rrq", filename: file, mode: "octet", options: [] });
    let second: Awaited<ReturnType<typeof serveTftpTree>> | undefined;
    try {
      // two transfers that are never ACKed hold the cap of 2
      for (let i = 0; i < 2; i++) await open().send(rrq("big.bin"), to);
      assert.ok(await waitFor(() => tftp.activeTransfers === 2, 3000));
      const flood = Array.from({ length: 50 }, open);
      for (let i = 0; i < 40; i++) {
        for (const c of flood) await c.send(rrq("f.bin"), to);
        await new Promise((r) => setTimeout(r, 1));
      }
      const [busy] = await flood[0].receive(new Uint8Array(512));
      assert.match(new TextDecoder().decode(busy.subarray(4)), /Server busy/);
      await new Promise((r) => setTimeout(r, 100));
      const capLines = logs.lines.filter((l) => l.includes("too many transfers"));
      assert.equal(capLines.length, 1, capLines.join("\n"));
      assert.match(
        capLines[0],
        /^warning 127\.0\.0\.1:\d+: 'f\.bin' refused: too many transfers \(2 running\)$/,
      );

      // EMFILE for every transfer socket: each RRQ is refused, the log gets one line
      const port2 = freeUdpPort();
      second = await serveTftpTree({ "f.bin": FILE }, { port: port2, listenDatagram: listen });
      noSockets = true;
      const more = Array.from({ length: 20 }, open);
      for (let i = 0; i < 50; i++) {
        for (const c of more) await c.send(rrq("f.bin"), { ...to, port: port2 });
        await new Promise((r) => setTimeout(r, 1));
      }
      const [out] = await more[0].receive(new Uint8Array(512));
      assert.match(new TextDecoder().decode(out.subarray(4)), /Server out of sockets/);
      await new Promise((r) => setTimeout(r, 100));
      const sockLines = logs.lines.filter((l) => l.includes("no socket for the transfer"));
      assert.equal(sockLines.length, 1, sockLines.join("\n"));
      noSockets = false;
      assert.deepEqual((await tftpGet({ port: port2, file: "f.bin", deadlineMs: 5000 })).bytes, FILE);
    } finally {
      for (const c of clients) c.close();
      await tftp.stop();
      await second?.close();
      await Deno.remove(dir, { recursive: true });
      await logs.stop();
    }
    assert.ok(summarised(logs.lines, "RRQs refused (too many transfers)") > 1000, logs.lines.join("\n"));
    assert.ok(
      summarised(logs.lines, "RRQs refused (no socket for the transfer)") > 300,
      logs.lines.join("\n"),
    );
    const warnings = logs.lines.filter((l) => l.startsWith("warning"));
    assert.ok(warnings.length <= 6, warnings.join("\n"));
  },
});
