/**
 * A UDP relay on 127.0.0.1 that drops a share of the datagrams in each direction (seeded), standing in
 * for `tc netem loss` where the kernel has no netem. One back socket per client follows the server's
 * transfer ID, so real clients (curl, atftp) can be driven through it unchanged.
 * @module
 */
import { prng } from "../helpers/random.ts";

/** A running relay. */
export interface LossyRelay {
  port: number;
  dropped: number;
  forwarded: number;
  stop(): Promise<void>;
}

/** Starts a relay in front of `serverPort` dropping `loss` (0..1) of the datagrams each way. */
export function startLossyRelay(opts: { serverPort: number; loss: number; seed?: number }): LossyRelay {
  const rand = prng(opts.seed ?? 42);
  const front = Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port: 0 });
  const backs = new Map<string, { sock: Deno.DatagramConn; serverPort: number; loop: Promise<void> }>();
  const loops: Promise<void>[] = [];
  let stopped = false;
  const relay: LossyRelay = {
    port: (front.addr as Deno.NetAddr).port,
    dropped: 0,
    forwarded: 0,
    async stop() {
      stopped = true;
      front.close();
      for (const b of backs.values()) b.sock.close();
      await Promise.allSettled([...loops, ...[...backs.values()].map((b) => b.loop)]);
    },
  };
  const pass = () => {
    if (rand() < opts.loss) {
      relay.dropped++;
      return false;
    }
    relay.forwarded++;
    return true;
  };
  const backLoop = async (key: string, client: Deno.NetAddr) => {
    const entry = backs.get(key)!;
    const buf = new Uint8Array(65536);
    while (!stopped) {
      let got: [Uint8Array, Deno.Addr];
      try {
        got = await entry.sock.receive(buf);
      } catch {
        return;
      }
      entry.serverPort = (got[1] as Deno.NetAddr).port;
      if (pass()) await front.send(got[0], client).catch(() => 0);
    }
  };
  loops.push((async () => {
    const buf = new Uint8Array(65536);
    while (!stopped) {
      let got: [Uint8Array, Deno.Addr];
      try {
        got = await front.receive(buf);
      } catch {
        return;
      }
      const client = got[1] as Deno.NetAddr;
      const key = `${client.hostname}:${client.port}`;
      let entry = backs.get(key);
      if (entry === undefined) {
        const sock = Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port: 0 });
        entry = { sock, serverPort: opts.serverPort, loop: Promise.resolve() };
        backs.set(key, entry);
        entry.loop = backLoop(key, client);
      }
      if (pass()) {
        await entry.sock.send(got[0], { transport: "udp", hostname: "127.0.0.1", port: entry.serverPort })
          .catch(() => 0);
      }
    }
  })());
  return relay;
}
