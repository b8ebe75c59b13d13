/**
 * The NBD service under a connection flood (issue 18): the connection cap evicts unfinished handshakes
 * so a real client still gets in, idle connections time out, the log stays a few lines, and the accept
 * loop survives EMFILE and a listener closed under it. Real sockets on 127.0.0.1; nbdinfo (libnbd-bin)
 * as the real client.
 */
import { missingTools, requires } from "../helpers/tools.ts";
import { equal, ok } from "node:assert/strict";
import { configure, reset } from "@logtape/logtape";
import { type BootEvent, BootEvents } from "../../src/events.ts";
import { DEFAULTS } from "../../src/config.ts";
import { connectionCaps } from "../../src/limits.ts";
import { NbdCmd } from "../../src/nbd/protocol.ts";
import { createNbdService, NbdServer } from "../../src/nbd/server.ts";
import { makeImage, RawClient, run, waitFor, withServer } from "./helpers.ts";

const SIZE = 1 << 20;

const nbdinfoMissing = missingTools("nbdinfo");

const test = (name: string, fn: () => void | Promise<void>, needsNbdinfo = false) =>
  Deno.test(requires(needsNbdinfo ? nbdinfoMissing : null, {
    name: `nbd limits: ${name}`,
    sanitizeResources: true,
    sanitizeOps: true,
    fn,
  }));

/** Runs nbdinfo on `url`; returns the export size it reported. */
async function nbdinfoSize(url: string): Promise<number> {
  const r = await run("nbdinfo", ["--json", url]);
  equal(r.code, 0, r.stderr);
  return JSON.parse(r.stdout).exports[0]["export-size"];
}

/** Collects the `connection` events by outcome. */
function connectionCounter(): { events: BootEvents; refused: () => number; timedOut: () => number } {
  const events = new BootEvents();
  const seen: BootEvent[] = [];
  events.subscribe((e) => {
    if (e.kind === "connection" && e.service === "nbd") seen.push(e);
  });
  const count = (outcome: string) =>
    seen.filter((e) => e.kind === "connection" && e.outcome === outcome).length;
  return { events, refused: () => count("refused"), timedOut: () => count("timed-out") };
}

/** Captures every pypxe log line (down to DEBUG) until the returned function is called. */
async function captureLogs(): Promise<{ lines: string[]; stop: () => Promise<void> }> {
  const lines: string[] = [];
  await configure({
    sinks: { capture: (r) => lines.push(`${r.level} ${r.message.map(String).join("")}`) },
    loggers: [
      { category: ["pypxe"], sinks: ["capture"], lowestLevel: "debug" },
      { category: ["logtape", "meta"], sinks: [], lowestLevel: "warning" },
    ],
  });
  return { lines, stop: () => reset() };
}

/** Opens `n` connections that never send anything. */
async function openIdle(port: number, n: number): Promise<RawClient[]> {
  const out: RawClient[] = [];
  // sequential: the server accepts them in this order, so "oldest" is well defined
  for (let i = 0; i < n; i++) out.push(await RawClient.connect(port));
  return out;
}

function closeQuietly(conn: Deno.Conn): void {
  try {
    conn.close();
  } catch {
    // already closed
  }
}

test("50 never-handshaking connections at a cap of 8: nbdinfo still gets in", async () => {
  const img = await makeImage({ size: SIZE, seed: 18 });
  const counter = connectionCounter();
  try {
    await withServer(
      { exports: [img.path], maxConnections: 8, events: counter.events },
      async (server, url) => {
        equal(server.maxConnections, 8);
        let most = 0;
        const watch = setInterval(() => most = Math.max(most, server.connections), 1);
        const flood = await openIdle(server.port, 50);
        try {
          ok(await waitFor(() => counter.refused() === 42), `refused ${counter.refused()}`);
          equal(server.connections, 8);
          equal(await nbdinfoSize(url), SIZE);
          // nbdinfo evicted the oldest idle connection to get in, then left
          equal(counter.refused(), 43);
          ok(await waitFor(() => server.connections === 7));
          const closed = await Promise.all(flood.map((c) => c.closedByServer(300)));
          equal(closed.filter((x) => x).length, 43);
          // the oldest went first
          ok(closed.slice(0, 43).every((x) => x), JSON.stringify(closed));
        } finally {
          clearInterval(watch);
          for (const c of flood) c.close();
        }
        ok(most <= 8, `held ${most} connections`);
        equal(counter.timedOut(), 0);
      },
    );
  } finally {
    await Deno.remove(img.dir, { recursive: true });
  }
}, true);

test("at the cap with every connection past its handshake, a new one is refused at once", async () => {
  const img = await makeImage({ size: SIZE, seed: 19 });
  const counter = connectionCounter();
  try {
    await withServer(
      { exports: [img.path], maxConnections: 2, events: counter.events },
      async (server) => {
        const a = await RawClient.connect(server.port);
        const b = await RawClient.connect(server.port);
        let late: RawClient | undefined;
        try {
          for (const c of [a, b]) {
            await c.greet();
            equal((await c.go()).size, SIZE);
          }
          late = await RawClient.connect(server.port);
          equal(await late.readExact(1), null, "closed without a greeting");
          ok(await waitFor(() => counter.refused() === 1));
          // the serving clients never noticed
          for (const [i, c] of [a, b].entries()) {
            await c.request({ type: NbdCmd.READ, flags: 0, handle: BigInt(i + 1), offset: 0, length: 512 });
            equal((await c.reply(512))?.error, 0);
          }
          equal(server.connections, 2);
        } finally {
          for (const c of [a, b, late]) c?.close();
        }
      },
    );
  } finally {
    await Deno.remove(img.dir, { recursive: true });
  }
});

test("an idle connection is closed after the handshake timeout, with a timed-out event", async () => {
  const img = await makeImage({ size: SIZE, seed: 20 });
  const counter = connectionCounter();
  try {
    await withServer(
      { exports: [img.path], handshakeTimeoutMs: 300, events: counter.events },
      async (server) => {
        const idle = await RawClient.connect(server.port);
        const stalled = await RawClient.connect(server.port);
        try {
          const started = performance.now();
          // one never sends its flags; the other sends them and then stalls in option haggling
          await stalled.greet();
          ok(await idle.readExact(18), "greeting");
          ok(await idle.closedByServer(1500), "idle connection closed");
          ok(await stalled.closedByServer(1500), "stalled connection closed");
          const ms = performance.now() - started;
          ok(ms >= 250 && ms < 1000, `closed after ${ms.toFixed(0)} ms`);
          equal(counter.timedOut(), 2);
          equal(counter.refused(), 0);
          ok(await waitFor(() => server.connections === 0));
        } finally {
          idle.close();
          stalled.close();
        }
      },
    );
  } finally {
    await Deno.remove(img.dir, { recursive: true });
  }
});

test("2,000 never-handshaking connections write fewer than 20 log lines", async () => {
  const img = await makeImage({ size: SIZE, seed: 21 });
  const counter = connectionCounter();
  const logs = await captureLogs();
  const TOTAL = 2000;
  const BATCH = 100;
  try {
    await withServer(
      { exports: [img.path], maxConnections: 64, handshakeTimeoutMs: 200, events: counter.events },
      async (server) => {
        const held: Deno.TcpConn[][] = [];
        try {
          for (let sent = 0; sent < TOTAL; sent += BATCH) {
            const batch = await Promise.all(
              Array.from({ length: BATCH }, () => Deno.connect({ hostname: "127.0.0.1", port: server.port })),
            );
            // half hang up at once (closed before their flags), half stay idle (evicted or timed out)
            for (const c of batch.slice(0, BATCH / 2)) closeQuietly(c);
            held.push(batch.slice(BATCH / 2));
            if (held.length > 2) { for (const c of held.shift()!) closeQuietly(c); }
          }
          // the last ones time out
          ok(await waitFor(() => counter.timedOut() > 0 && server.connections === 0, 3000));
        } finally {
          for (const batch of held) for (const c of batch) closeQuietly(c);
        }
        ok(counter.refused() > 500, `refused ${counter.refused()}`);
      },
    );
    // stop() flushed the summaries
    ok(logs.lines.length < 20, `${logs.lines.length} lines:\n${logs.lines.join("\n")}`);
    ok(logs.lines.some((l) => /more in the last 10 s$/.test(l)), logs.lines.join("\n"));
  } finally {
    await logs.stop();
    await Deno.remove(img.dir, { recursive: true });
  }
});

test("accept failing with EMFILE, then the listener closed under it: the server comes back", async () => {
  const img = await makeImage({ size: SIZE, seed: 22 });
  const counter = connectionCounter();
  const logs = await captureLogs();
  let listens = 0;
  let accepts = 0;
  const listen = (opts: Deno.TcpListenOptions & { transport: "tcp" }): Deno.TcpListener => {
    listens++;
    const real = Deno.listen(opts);
    if (listens > 1) return real;
    // the first listener: one real accept, then EMFILE, then closed under the server
    const faulty = {
      get addr() {
        return real.addr;
      },
      accept: async () => {
        accepts++;
        if (accepts === 1) return await real.accept();
        if (accepts === 2) throw new Error("Too many open files (os error 24)");
        real.close();
        return await real.accept();
      },
      close: () => real.close(),
    };
    return faulty as unknown as Deno.TcpListener;
  };
  try {
    await withServer({ exports: [img.path], listen, events: counter.events }, async (server, url) => {
      const port = server.port;
      // admitted by the one good accept; the EMFILE that follows frees it (the oldest unfinished one)
      const idle = await RawClient.connect(port);
      try {
        ok(await idle.closedByServer(2000), "the unfinished handshake was closed for descriptors");
        equal(counter.refused(), 1);
        ok(await waitFor(() => listens === 2, 3000), `listened ${listens} times`);
        equal(server.port, port);
        equal(await nbdinfoSize(url), SIZE);
      } finally {
        idle.close();
      }
    });
    const text = logs.lines.join("\n");
    ok(/accept failed: Too many open files/.test(text), text);
    ok(/accept failed: .*listening again/.test(text), text);
    ok(/listening again on 127\.0\.0\.1:\d+/.test(text), text);
  } finally {
    await logs.stop();
    await Deno.remove(img.dir, { recursive: true });
  }
}, true);

test("createNbdService: NBD_MAX_CONNECTIONS, else the cap sized from the file limit; handshake timeout", () => {
  const make = (config: Partial<typeof DEFAULTS>, caps?: ReturnType<typeof connectionCaps>) => {
    const ctx = {
      config: { ...DEFAULTS, NBD_BLOCK_DEVICE: "disk.img", ...config },
      events: new BootEvents(),
      caps,
    };
    const service = createNbdService(ctx as unknown as Parameters<typeof createNbdService>[0]);
    ok(service instanceof NbdServer);
    return service;
  };
  const caps = connectionCaps(2048);
  equal(make({}, caps).maxConnections, caps.nbd);
  equal(make({ NBD_MAX_CONNECTIONS: 3 }, caps).maxConnections, 3);
  equal(make({}).maxConnections, 256);
  equal(make({}).handshakeTimeoutMs, 10_000);
  equal(make({ NBD_HANDSHAKE_TIMEOUT: 2 }).handshakeTimeoutMs, 2000);
});
