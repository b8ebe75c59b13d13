/** A small UDP test client: sends datagrams and queues what arrives, with timeouts. */
import { decodeDhcp, type DhcpPacket } from "../../src/dhcp/packet.ts";

/** One received datagram. */
export interface Received {
  bytes: Uint8Array;
  from: Deno.NetAddr;
}

/** A UDP socket with a background receive loop. */
export class UdpClient {
  readonly conn: Deno.DatagramConn;
  readonly port: number;
  readonly #queue: Received[] = [];
  #waiter: (() => void) | null = null;
  readonly #loop: Promise<void>;
  #closed = false;

  constructor(opts: { hostname?: string; port?: number } = {}) {
    this.conn = Deno.listenDatagram({
      transport: "udp",
      hostname: opts.hostname ?? "127.0.0.1",
      port: opts.port ?? 0,
      reuseAddress: true,
    });
    this.port = (this.conn.addr as Deno.NetAddr).port;
    this.#loop = this.#run();
  }

  async #run(): Promise<void> {
    while (!this.#closed) {
      try {
        const [bytes, from] = await this.conn.receive(new Uint8Array(4096));
        this.#queue.push({ bytes: bytes.slice(), from: from as Deno.NetAddr });
        this.#waiter?.();
      } catch {
        return; // closed
      }
    }
  }

  /** Sends `bytes` to `hostname:port`. */
  async send(bytes: Uint8Array, port: number, hostname = "127.0.0.1"): Promise<void> {
    await this.conn.send(bytes, { transport: "udp", hostname, port });
  }

  /** The next datagram, or undefined after `ms`. */
  async next(ms = 1000): Promise<Received | undefined> {
    const deadline = Date.now() + ms;
    while (this.#queue.length === 0) {
      const left = deadline - Date.now();
      if (left <= 0) return undefined;
      let timer: ReturnType<typeof setTimeout> | undefined;
      await new Promise<void>((resolve) => {
        this.#waiter = resolve;
        timer = setTimeout(resolve, left);
      });
      clearTimeout(timer);
      this.#waiter = null;
    }
    return this.#queue.shift();
  }

  /** The next datagram decoded as DHCP whose xid matches (others are skipped), or undefined. */
  async reply(xid: number, ms = 1000): Promise<(DhcpPacket & { from: Deno.NetAddr }) | undefined> {
    const deadline = Date.now() + ms;
    for (;;) {
      const got = await this.next(Math.max(0, deadline - Date.now()));
      if (!got) return undefined;
      const pkt = decodeDhcp(got.bytes);
      if (pkt.xid === xid) return { ...pkt, from: got.from };
    }
  }

  /** Drops everything queued. */
  drain(): number {
    const n = this.#queue.length;
    this.#queue.length = 0;
    return n;
  }

  /** Closes the socket and waits for the loop. */
  async close(): Promise<void> {
    this.#closed = true;
    this.conn.close();
    this.#waiter?.();
    await this.#loop;
  }
}

/** A random high port (the kernel picks for clients; servers need a known one). */
export function randomPort(): number {
  return 20_000 + Math.floor(Math.random() * 40_000);
}
