/** The HTTP connection layer under attack: caps, header/idle timeouts, listener failures. */
import { equal, match, ok } from "node:assert/strict";
import { curl, SANITIZE, sha256 } from "./helpers.ts";
import { serveHttpTree } from "../helpers/servers.ts";
import { pseudoRandom } from "./helpers.ts";

const BODY = pseudoRandom(100_000, 7);

/** Opens `n` connections that send half a request head and wait. */
async function halfOpen(port: number, n: number): Promise<Deno.TcpConn[]> {
  const conns: Deno.TcpConn[] = [];
  const partial = new TextEncoder().encode("GET /file.bin HTTP/1.1\r\nHost: x\r\n");
  for (let i = 0; i < n; i++) {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    await conn.write(partial);
    conns.push(conn);
  }
  return conns;
}

/** Resolves with true once the server closed `conn` (EOF or reset), false after `ms`. */
async function closedWithin(conn: Deno.TcpConn, ms: number): Promise<boolean> {
  const buf = new Uint8Array(4096);
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<false>((resolve) => timer = setTimeout(() => resolve(false), ms));
  const read = (async () => {
    for (let i = 0; i < 100; i++) {
      const n = await conn.read(buf).catch(() => null);
      if (n === null) return true;
    }
    return false;
  })();
  const result = await Promise.race([read, timeout]);
  clearTimeout(timer);
  return result;
}

function closeAll(conns: Deno.Conn[]): void {
  for (const c of conns) {
    try {
      c.close();
    } catch {
      // closed by the server already
    }
  }
}

Deno.test(
  { name: "http connections: at the cap the oldest half-open connection makes room", ...SANITIZE },
  async () => {
    const fx = await serveHttpTree({ "file.bin": BODY }, {}, { maxConnections: 20 });
    let conns: Deno.TcpConn[] = [];
    try {
      conns = await halfOpen(fx.port, 200);
      // a real client gets through while 200 half-open connections press on a cap of 20
      const r = await curl([`${fx.base}/file.bin`]);
      equal(r.status, 200);
      equal(await sha256(r.body), await sha256(BODY));
      ok(fx.server.connections <= 20, `${fx.server.connections} open`);
      // the first connections were the ones closed
      ok(await closedWithin(conns[0], 2000), "oldest connection closed");
      const refused = fx.events.filter((e) => e.kind === "connection" && e.outcome === "refused").length;
      ok(refused >= 180, `refused ${refused}`);
    } finally {
      closeAll(conns);
      await fx.close();
    }
  },
);

Deno.test(
  { name: "http connections: a half-sent head is closed after the header timeout", ...SANITIZE },
  async () => {
    const fx = await serveHttpTree({ "file.bin": BODY }, {}, { headerTimeoutMs: 300 });
    let conns: Deno.TcpConn[] = [];
    try {
      conns = await halfOpen(fx.port, 5);
      const started = performance.now();
      for (const c of conns) ok(await closedWithin(c, 3000), "closed by the header timeout");
      const took = performance.now() - started;
      ok(took >= 200 && took < 2500, `closed after ${took.toFixed(0)} ms`);
      const timedOut = fx.events.filter((e) => e.kind === "connection" && e.outcome === "timed-out").length;
      equal(timedOut, 5);
      // a slow but complete request inside the timeout is answered
      const slow = await Deno.connect({ hostname: "127.0.0.1", port: fx.port });
      conns.push(slow);
      await slow.write(new TextEncoder().encode("GET /file.bin HTTP/1.1\r\n"));
      await new Promise((r) => setTimeout(r, 100));
      await slow.write(new TextEncoder().encode("Host: x\r\nConnection: close\r\n\r\n"));
      const buf = new Uint8Array(200_000);
      let got = 0;
      for (let i = 0; i < 1000; i++) {
        const n = await slow.read(buf.subarray(got));
        if (n === null) break;
        got += n;
      }
      match(new TextDecoder().decode(buf.subarray(0, 20)), /^HTTP\/1\.1 200 OK/);
    } finally {
      closeAll(conns);
      await fx.close();
    }
  },
);

Deno.test({
  name: "http connections: an idle keep-alive connection is closed after the idle timeout",
  ...SANITIZE,
}, async () => {
  const fx = await serveHttpTree({ "small.txt": "hello" }, {}, { idleTimeoutMs: 300, headerTimeoutMs: 5000 });
  const conn = await Deno.connect({ hostname: "127.0.0.1", port: fx.port });
  try {
    await conn.write(new TextEncoder().encode("GET /small.txt HTTP/1.1\r\nHost: x\r\n\r\n"));
    const buf = new Uint8Array(4096);
    const n = await conn.read(buf);
    ok(n !== null);
    const text = new TextDecoder().decode(buf.subarray(0, n!));
    match(text, /^HTTP\/1\.1 200 OK\r\n/);
    ok(!/connection: close/i.test(text), "kept alive");
    ok(text.endsWith("\r\n\r\nhello"));
    const started = performance.now();
    ok(await closedWithin(conn, 3000), "idle connection closed");
    ok(performance.now() - started >= 150);
    // idle closes are routine: not counted as timeouts
    equal(fx.events.filter((e) => e.kind === "connection").length, 0);
  } finally {
    closeAll([conn]);
    await fx.close();
  }
});

Deno.test({
  name: "http connections: a failing listener (EMFILE, then closed) comes back on its own",
  ...SANITIZE,
}, async () => {
  let failures = 2;
  let first: Deno.Listener | null = null;
  const listen = (o: Deno.TcpListenOptions) => {
    const real = Deno.listen({ ...o, transport: "tcp" });
    if (first !== null) return real; // the rebind: a healthy listener
    first = real;
    // a listener whose accept() first runs out of descriptors, then fails for good (closed under it)
    return new Proxy(real, {
      get(target, prop) {
        if (prop === "accept") {
          return () => {
            if (failures-- > 0) return Promise.reject(new Error("Too many open files (os error 24)"));
            target.close();
            return Promise.reject(new Deno.errors.BadResource("listener closed"));
          };
        }
        const v = Reflect.get(target, prop, target);
        return typeof v === "function" ? v.bind(target) : v;
      },
    }) as Deno.Listener;
  };
  const fx = await serveHttpTree({ "file.bin": BODY }, {}, { listen });
  try {
    // the first connect lands in the failed listener's backlog or is refused while it rebinds: retry
    let r = await curl([
      "--retry",
      "20",
      "--retry-connrefused",
      "--retry-delay",
      "0",
      "-m",
      "10",
      `${fx.base}/file.bin`,
    ]);
    for (let i = 0; i < 20 && r.status !== 200; i++) {
      await new Promise((res) => setTimeout(res, 100));
      r = await curl(["-m", "5", `${fx.base}/file.bin`]);
    }
    equal(r.status, 200);
    equal(await sha256(r.body), await sha256(BODY));
    ok(failures < 0, "the injected failures happened");
  } finally {
    await fx.close();
  }
});

Deno.test(
  { name: "http connections: pipelined requests, HTTP/1.0, HEAD and chunked streams", ...SANITIZE },
  async () => {
    const fx = await serveHttpTree({ "a.txt": "AAA", "b.txt": "BB" }, {}, {
      routes: (_req, path) =>
        path === "/stream"
          ? new Response(
            new ReadableStream({
              start(c) {
                c.enqueue(new TextEncoder().encode("hello "));
                c.enqueue(new TextEncoder().encode("world"));
                c.close();
              },
            }),
          )
          : null,
    });
    try {
      const conn = await Deno.connect({ hostname: "127.0.0.1", port: fx.port });
      await conn.write(new TextEncoder().encode(
        "GET /a.txt HTTP/1.1\r\nHost: x\r\n\r\nHEAD /b.txt HTTP/1.1\r\nHost: x\r\n\r\n" +
          "GET /stream HTTP/1.1\r\nHost: x\r\n\r\nGET /b.txt HTTP/1.0\r\n\r\n",
      ));
      const buf = new Uint8Array(8192);
      let text = "";
      for (let i = 0; i < 100; i++) {
        const n = await conn.read(buf);
        if (n === null) break;
        text += new TextDecoder().decode(buf.subarray(0, n));
      }
      conn.close();
      const responses = text.split(/(?=HTTP\/1\.1 )/);
      equal(responses.length, 4, text);
      ok(responses[0].endsWith("\r\n\r\nAAA"));
      match(responses[1], /content-length: 2\r\n/);
      ok(responses[1].endsWith("\r\n\r\n"), "HEAD has no body");
      match(responses[2], /transfer-encoding: chunked\r\n/);
      ok(responses[2].endsWith("\r\n\r\n6\r\nhello \r\n5\r\nworld\r\n0\r\n\r\n"));
      match(responses[3], /connection: close\r\n/); // HTTP/1.0 without keep-alive
      ok(responses[3].endsWith("\r\n\r\nBB"));
    } finally {
      await fx.close();
    }
  },
);
