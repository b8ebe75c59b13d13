/** The HTTP server under a raw TCP client: captured firmware requests, malformed and split requests,
 * slowloris-style idle connections, clients that stop reading or vanish, and stop() under load. */
import { deepStrictEqual, equal, match, ok } from "node:assert/strict";
import { curl, parseHeaders, pseudoRandom, rawRequest, SANITIZE, sha256 } from "./helpers.ts";
import { serveHttpTree } from "../helpers/servers.ts";
import { checkIpxeScript } from "./ipxe_syntax.ts";
import { fixturesDir } from "../helpers/fixtures.ts";

const FIXTURES = new URL(`file://${fixturesDir()}http/`);
const EFI = pseudoRandom(700 * 1024, 5);
const BIG = pseudoRandom(32 * 1024 * 1024, 11);

/** Reads one response (head + content-length body, none for HEAD/304) from an open connection. */
async function readResponse(
  conn: Deno.Conn,
  opts: { head?: boolean } = {},
): Promise<{ status: number; headers: Headers; body: Uint8Array<ArrayBuffer> }> {
  let buf = new Uint8Array(0);
  const chunk = new Uint8Array(65536);
  let headEnd = -1;
  for (let i = 0; i < 10_000 && headEnd < 0; i++) {
    const n = await conn.read(chunk);
    if (n === null) throw new Error(`connection closed before the response head (${buf.length} bytes)`);
    buf = concat(buf, chunk.subarray(0, n));
    headEnd = new TextDecoder("latin1").decode(buf).indexOf("\r\n\r\n");
  }
  const head = new TextDecoder("latin1").decode(buf.subarray(0, headEnd));
  const status = Number(head.slice(9, 12));
  const headers = parseHeaders(head);
  const length = opts.head || status === 304 ? 0 : Number(headers.get("content-length") ?? "0");
  let body = buf.slice(headEnd + 4);
  for (let i = 0; i < 100_000 && body.length < length; i++) {
    const n = await conn.read(chunk);
    if (n === null) break;
    body = concat(body, chunk.subarray(0, n));
  }
  equal(body.length, length, "body length matches content-length");
  return { status, headers, body };
}

function concat(a: Uint8Array<ArrayBuffer>, b: Uint8Array): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}

async function writeAll(conn: Deno.Conn, bytes: Uint8Array): Promise<void> {
  let off = 0;
  while (off < bytes.length) off += await conn.write(bytes.subarray(off));
}

async function waitFor(cond: () => boolean, ms: number): Promise<void> {
  for (let waited = 0; waited < ms && !cond(); waited += 20) await new Promise((r) => setTimeout(r, 20));
}

Deno.test({ name: "http raw: captured firmware requests, byte-exact", ...SANITIZE }, async () => {
  const fx = await serveHttpTree({ "ipxe.efi": EFI });
  const conn = await Deno.connect({ hostname: "127.0.0.1", port: fx.port });
  try {
    // iPXE (BIOS ROM) asks for boot.ipxe with keep-alive: the generated menu, on the same connection
    const ipxe = await Deno.readFile(new URL("ipxe-bios-get-boot-ipxe.txt", FIXTURES));
    equal(ipxe.length, 120);
    await writeAll(conn, ipxe);
    const menu = await readResponse(conn);
    equal(menu.status, 200);
    const script = new TextDecoder().decode(menu.body);
    deepStrictEqual(checkIpxeScript(script), []);
    // the address of the local interface on the client's subnet (loopback here), not the Host header
    // (192.168.77.1): the menu is the same bytes whichever server or name the client used
    match(script, new RegExp(`set pypxe-files http://127\\.0\\.0\\.1:${fx.port}\n`));

    // OVMF HTTP boot: HEAD then GET of ipxe.efi, still on the same keep-alive connection
    const head = await Deno.readFile(new URL("ovmf-http-head.txt", FIXTURES));
    await writeAll(conn, head);
    const h = await readResponse(conn, { head: true });
    equal(h.status, 200);
    equal(h.headers.get("content-length"), String(EFI.length));
    equal(h.headers.get("content-type"), "application/octet-stream");
    const get = await Deno.readFile(new URL("ovmf-http-get.txt", FIXTURES));
    await writeAll(conn, get);
    const g = await readResponse(conn);
    equal(g.status, 200);
    equal(await sha256(g.body), await sha256(EFI));
    equal(g.headers.get("location"), null);
  } finally {
    conn.close();
    await fx.close();
  }
});

Deno.test(
  { name: "http raw: malformed, split, pipelined and absolute-form requests", ...SANITIZE },
  async () => {
    const fx = await serveHttpTree({ "ipxe.efi": EFI });
    try {
      for (
        const bad of [
          "GARBAGE\r\n\r\n",
          "GET\r\n\r\n",
          "GET /ipxe.efi HTTP/9.9\r\nHost: x\r\n\r\n",
          "GET /ipxe.efi HTTP/1.1\r\nno colon here\r\n\r\n",
          "GET /ipx\x00e.efi HTTP/1.1\r\nHost: x\r\n\r\n",
          "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 tls hello\r\n\r\n",
          `GET /${"a".repeat(200_000)} HTTP/1.1\r\nHost: x\r\n\r\n`,
        ]
      ) {
        const r = await rawRequest(fx.port, [bad], { timeoutMs: 5000 });
        ok(!r.timedOut, `answered: ${JSON.stringify(bad.slice(0, 30))}`);
        match(r.text, /^HTTP\/1\.[01] (4\d\d|505) /, JSON.stringify(bad.slice(0, 30)));
      }
      const bodyStart = (text: string) => text.indexOf("\r\n\r\n") + 4;
      const split = await rawRequest(
        fx.port,
        ["GE", "T /ipxe.e", "fi HTTP/1.1\r\nHo", "st: 127.0.0.1\r\nConnec", "tion: close\r\n", "\r\n"],
        { gapMs: 60 },
      );
      match(split.text, /^HTTP\/1\.1 200 OK\r\n/);
      equal(await sha256(split.bytes.slice(bodyStart(split.text))), await sha256(EFI));

      const pipelined = await rawRequest(fx.port, [
        "HEAD /ipxe.efi HTTP/1.1\r\nHost: x\r\n\r\nGET /missing HTTP/1.1\r\nHost: x\r\n\r\n" +
        "GET /ipxe.efi HTTP/1.1\r\nHost: x\r\nRange: bytes=0-3\r\nConnection: close\r\n\r\n",
      ]);
      const statuses = [...pipelined.text.matchAll(/HTTP\/1\.1 (\d{3})/g)].map((m) => m[1]);
      deepStrictEqual(statuses, ["200", "404", "206"]);
      deepStrictEqual(pipelined.bytes.slice(-4), EFI.slice(0, 4));

      const absolute = await rawRequest(fx.port, [
        "GET http://other.example:8080/ipxe.efi?x=1 HTTP/1.1\r\nHost: other.example:8080\r\nConnection: close\r\n\r\n",
      ]);
      match(absolute.text, /^HTTP\/1\.1 200 OK\r\n/);
      equal(absolute.bytes.length - bodyStart(absolute.text), EFI.length);

      const http10 = await rawRequest(fx.port, ["GET /ipxe.efi HTTP/1.0\r\n\r\n"]);
      match(http10.text, /^HTTP\/1\.[01] 200 OK\r\n/);
      // the server still works after all of that
      equal((await curl([`${fx.base}/ipxe.efi`])).status, 200);
    } finally {
      await fx.close();
    }
  },
);

Deno.test({ name: "http raw: slowloris connections never block other clients", ...SANITIZE }, async () => {
  const fx = await serveHttpTree({ "ipxe.efi": EFI, "big.bin": BIG });
  const idle: Deno.Conn[] = [];
  try {
    for (let i = 0; i < 20; i++) {
      const conn = await Deno.connect({ hostname: "127.0.0.1", port: fx.port });
      idle.push(conn);
      if (i % 2 === 0) await writeAll(conn, new TextEncoder().encode("GET /ipxe.efi HTTP/1.1\r\nX-Slow: "));
    }
    const t0 = performance.now();
    for (let round = 0; round < 5; round++) {
      // the slow ones trickle one byte per round, never finishing their headers
      for (const [i, conn] of idle.entries()) if (i % 2 === 0) await writeAll(conn, new Uint8Array([0x61]));
      const r = await curl([`${fx.base}/big.bin`]);
      equal(r.status, 200);
      equal(r.body.length, BIG.length);
    }
    ok(performance.now() - t0 < 10_000, "served promptly beside 20 stalled connections");
    // stop() closes the idle connections at once
    const s0 = performance.now();
    await fx.server.stop();
    ok(performance.now() - s0 < 3000, `stop took ${performance.now() - s0} ms`);
    const buf = new Uint8Array(16);
    for (const conn of idle) equal(await conn.read(buf).catch(() => null), null);
  } finally {
    for (const conn of idle) conn.close();
    await fx.close();
  }
});

Deno.test(
  { name: "http raw: a client that stops reading is cut off; others go on", ...SANITIZE },
  async () => {
    const fx = await serveHttpTree({ "big.bin": BIG, "ipxe.efi": EFI }, {}, { stallTimeoutMs: 400 });
    const conn = await Deno.connect({ hostname: "127.0.0.1", port: fx.port });
    try {
      await writeAll(conn, new TextEncoder().encode("GET /big.bin HTTP/1.1\r\nHost: x\r\n\r\n"));
      await waitFor(() => fx.events.some((e) => e.kind === "transfer-start"), 3000);
      equal((await curl([`${fx.base}/ipxe.efi`])).status, 200);
      const ended = () =>
        fx.events.find((e) => e.kind === "transfer-end" && e.file === "big.bin") as
          | { outcome: string; bytes: number }
          | undefined;
      await waitFor(() => ended() !== undefined, 8000);
      match(ended()?.outcome ?? "(no end event)", /stalled/);
      ok((ended()?.bytes ?? BIG.length) < BIG.length);
    } finally {
      conn.close();
      await fx.close();
    }
  },
);

Deno.test(
  { name: "http raw: a client that disconnects mid-download releases the file", ...SANITIZE },
  async () => {
    const fx = await serveHttpTree({ "big.bin": BIG });
    try {
      const r = await rawRequest(fx.port, ["GET /big.bin HTTP/1.1\r\nHost: x\r\n\r\n"], {
        maxBytes: 100_000,
      });
      ok(r.bytes.length >= 100_000);
      const ended = () => fx.events.find((e) => e.kind === "transfer-end");
      await waitFor(() => ended() !== undefined, 5000);
      const end = ended();
      ok(end?.kind === "transfer-end" && end.outcome !== "ok", JSON.stringify(end));
    } finally {
      await fx.close();
    }
  },
);

Deno.test(
  { name: "http raw: stop() cuts a stalled download after the grace period", ...SANITIZE },
  async () => {
    const fx = await serveHttpTree({ "big.bin": BIG }, {}, { stallTimeoutMs: 0, stopGraceMs: 200 });
    const conn = await Deno.connect({ hostname: "127.0.0.1", port: fx.port });
    try {
      await writeAll(conn, new TextEncoder().encode("GET /big.bin HTTP/1.1\r\nHost: x\r\n\r\n"));
      await waitFor(() => fx.events.some((e) => e.kind === "transfer-start"), 3000);
      await new Promise((r) => setTimeout(r, 100));
      const t0 = performance.now();
      await fx.server.stop();
      ok(performance.now() - t0 < 3000, `stop took ${performance.now() - t0} ms`);
      const end = fx.events.find((e) => e.kind === "transfer-end");
      ok(end?.kind === "transfer-end" && end.outcome === "server stopping", JSON.stringify(end));
    } finally {
      conn.close();
      await fx.close();
    }
  },
);

Deno.test(
  { name: "http raw: stop() also closes a socket whose stalled stream already ended", ...SANITIZE },
  async () => {
    const fx = await serveHttpTree({ "big.bin": BIG }, {}, { stallTimeoutMs: 200, stopGraceMs: 200 });
    const conn = await Deno.connect({ hostname: "127.0.0.1", port: fx.port });
    try {
      await writeAll(conn, new TextEncoder().encode("GET /big.bin HTTP/1.1\r\nHost: x\r\n\r\n"));
      await waitFor(() => fx.events.some((e) => e.kind === "transfer-end"), 5000);
      const t0 = performance.now();
      await fx.server.stop();
      ok(performance.now() - t0 < 3000, `stop took ${performance.now() - t0} ms`);
    } finally {
      conn.close();
      await fx.close();
    }
  },
);
