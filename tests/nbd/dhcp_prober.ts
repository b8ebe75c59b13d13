/**
 * A DHCP prober run as a Worker by latency_test.ts: it has its own event loop, so a stall of the
 * server's loop shows in the reply latency it measures and never delays its own sending. Protocol:
 * the worker posts `{ port }` (its UDP port, where the server must reply); the test posts
 * `{ start: serverPort, intervalMs }`, then `{ mark: true }` (answered with the latencies so far, which
 * are then forgotten) and `{ stop: true }`; the worker answers that with `{ latencies, lost }`
 * (milliseconds per answered DISCOVER, and how many got no reply) and closes.
 * @module
 */
/// <reference lib="deno.worker" />
import { decodeDhcp, encodeDhcp } from "../../src/dhcp/packet.ts";
import { MessageType, request } from "../dhcp/helpers.ts";

/** How long after `stop` a late reply still counts. */
const GRACE_MS = 500;
/** One MAC for every probe: the server re-offers the same address, so the pool never runs out. */
const MAC = "02:00:00:00:0d:15";

const conn = Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port: 0 });
const sent = new Map<number, number>();
const latencies: number[] = [];

async function receive(): Promise<void> {
  for (;;) {
    let bytes: Uint8Array;
    try {
      [bytes] = await conn.receive(new Uint8Array(2048));
    } catch {
      return; // closed
    }
    const at = performance.now();
    let xid: number;
    try {
      xid = decodeDhcp(bytes).xid;
    } catch {
      continue;
    }
    const t = sent.get(xid);
    if (t === undefined) continue;
    sent.delete(xid);
    latencies.push(at - t);
  }
}
const receiving = receive();
let timer: ReturnType<typeof setInterval> | undefined;

self.onmessage = async (
  e: MessageEvent<{ start?: number; intervalMs?: number; mark?: boolean; stop?: boolean }>,
) => {
  if (e.data.start !== undefined) {
    const port = e.data.start;
    timer = setInterval(() => {
      const pkt = request(MessageType.DISCOVER, MAC, { arch: 7, vendorClass: "PXEClient:Arch:00007" });
      sent.set(pkt.xid, performance.now());
      conn.send(encodeDhcp(pkt), { transport: "udp", hostname: "127.0.0.1", port }).catch(() => {});
    }, e.data.intervalMs ?? 10);
  } else if (e.data.mark) {
    self.postMessage({ latencies: latencies.splice(0), lost: 0 });
  } else if (e.data.stop) {
    clearInterval(timer);
    for (let waited = 0; sent.size > 0 && waited < GRACE_MS; waited += 10) {
      await new Promise((r) => setTimeout(r, 10));
    }
    conn.close();
    await receiving;
    self.postMessage({ latencies, lost: sent.size });
    self.close();
  }
};
self.postMessage({ port: (conn.addr as Deno.NetAddr).port });
