/**
 * A small TFTP read client for tests, with RFC 7440 windowsize: it ACKs the last block of each window,
 * reports a gap by ACKing the last block received in order, and re-ACKs on its own timeout. Every loop
 * is bounded by a deadline.
 * @module
 */
import { decodePacket, encodePacket, type TftpOption } from "../../src/tftp/packet.ts";

/** Options of {@linkcode tftpGet}. */
export interface TftpGetOptions {
  host?: string;
  port: number;
  file: string;
  mode?: string;
  options?: TftpOption[];
  /** Give up after this long; default 30 s. */
  deadlineMs?: number;
  /** Re-ACK after this much silence; default 500 ms. */
  ackTimeoutMs?: number;
  /** Drop these absolute DATA blocks once when first received (simulated loss). */
  dropOnce?: Set<number>;
  /** Stop after the OACK (sends ERROR 8 like OVMF's size probe). */
  abortAfterOack?: boolean;
}

/** The outcome of {@linkcode tftpGet}. */
export interface TftpGetResult {
  bytes: Uint8Array;
  oack: TftpOption[] | null;
  error: { code: number; message: string } | null;
  serverPort: number;
  /** ACKs sent, in order (wire block numbers). */
  acks: number[];
}

/** Fetches a file; resolves with the bytes (or the server's ERROR), rejects on deadline. */
export async function tftpGet(opts: TftpGetOptions): Promise<TftpGetResult> {
  const host = opts.host ?? "127.0.0.1";
  const sock = Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port: 0 });
  const deadline = performance.now() + (opts.deadlineMs ?? 30_000);
  const ackTimeout = opts.ackTimeoutMs ?? 500;
  const options = opts.options ?? [];
  const wanted = new Map(options.map(([k, v]) => [k.toLowerCase(), v]));
  let blksize = 512;
  let windowsize = 1;
  const chunks: Uint8Array[] = [];
  const acks: number[] = [];
  let oack: TftpOption[] | null = null;
  let server: Deno.NetAddr | null = null;
  let received = 0; // absolute blocks received in order
  let sinceAck = 0;
  const dropped = new Set<number>();
  const buf = new Uint8Array(65536);
  let pending: Promise<[Uint8Array, Deno.Addr]> | null = null;
  const ack = async (block: number) => {
    acks.push(block & 0xffff);
    sinceAck = 0;
    await sock.send(encodePacket({ op: "ack", block: block & 0xffff }), server!);
  };
  try {
    const request = encodePacket({ op: "rrq", filename: opts.file, mode: opts.mode ?? "octet", options });
    await sock.send(request, { transport: "udp", hostname: host, port: opts.port });
    while (performance.now() < deadline) {
      pending ??= sock.receive(buf);
      let timer: ReturnType<typeof setTimeout> | undefined;
      const timeout = new Promise<null>((r) => timer = setTimeout(() => r(null), ackTimeout));
      const got = await Promise.race([pending, timeout]);
      clearTimeout(timer);
      if (got === null) {
        if (server === null) await sock.send(request, { transport: "udp", hostname: host, port: opts.port });
        else await ack(received);
        continue;
      }
      pending = null;
      const from = got[1] as Deno.NetAddr;
      if (server === null) server = from;
      else if (from.port !== server.port) continue;
      const packet = decodePacket(got[0]);
      if (packet.op === "error") {
        return { bytes: new Uint8Array(0), oack, error: packet, serverPort: from.port, acks };
      }
      if (packet.op === "oack") {
        if (received > 0) continue;
        oack = [...packet.options];
        for (const [k, v] of packet.options) {
          if (!wanted.has(k.toLowerCase())) throw new Error(`OACK has option ${k} that was not asked for`);
          if (k.toLowerCase() === "blksize") blksize = Number(v);
          if (k.toLowerCase() === "windowsize") windowsize = Number(v);
        }
        if (opts.abortAfterOack) {
          await sock.send(
            encodePacket({ op: "error", code: 8, message: "User aborted the transfer" }),
            server,
          );
          return { bytes: new Uint8Array(0), oack, error: null, serverPort: from.port, acks };
        }
        await ack(0);
        continue;
      }
      if (packet.op !== "data") continue;
      const expected = received + 1;
      if (packet.block !== (expected & 0xffff)) {
        // a gap: report the last block received in order (RFC 7440), once per window
        if (sinceAck > 0 || windowsize === 1) await ack(received);
        continue;
      }
      if (opts.dropOnce?.has(expected) && !dropped.has(expected)) {
        dropped.add(expected);
        continue;
      }
      chunks.push(packet.data.slice());
      received = expected;
      sinceAck++;
      const last = packet.data.length < blksize;
      if (last || sinceAck >= windowsize) await ack(received);
      if (last) {
        const total = chunks.reduce((n, c) => n + c.length, 0);
        const bytes = new Uint8Array(total);
        let pos = 0;
        for (const c of chunks) {
          bytes.set(c, pos);
          pos += c.length;
        }
        return { bytes, oack, error: null, serverPort: from.port, acks };
      }
    }
    throw new Error(`tftpGet ${opts.file}: deadline passed after ${received} blocks`);
  } finally {
    sock.close();
    if (pending !== null) await pending.catch(() => null);
  }
}
