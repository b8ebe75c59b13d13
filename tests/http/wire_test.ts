/** The HTTP/1.1 head codec: golden heads, every rejection, and a seeded fuzz. */
import { deepEqual, equal, ok, throws } from "node:assert/strict";
import {
  bodyFraming,
  encodeResponseHead,
  findHeadEnd,
  HttpWireError,
  parseRequestHead,
  wantsKeepAlive,
} from "../../src/http/wire.ts";
import { xorshift } from "../helpers/random.ts";

const enc = (s: string) => new TextEncoder().encode(s);

Deno.test("http wire: finding the end of a head, also across reads", () => {
  const head = enc("GET / HTTP/1.1\r\nHost: a\r\n\r\nNEXT");
  equal(findHeadEnd(head, head.length), head.length - 4);
  equal(findHeadEnd(head, 20), -1);
  // resuming from where the last search stopped still finds a terminator split across reads
  equal(findHeadEnd(head, head.length, 25), head.length - 4);
  equal(findHeadEnd(enc("\r\n\r"), 3), -1);
});

Deno.test("http wire: a captured iPXE request parses", () => {
  const h = parseRequestHead(
    enc(
      "GET /boot.http.ipxe HTTP/1.1\r\nConnection: keep-alive\r\nUser-Agent: iPXE/1.21.1+\r\nHost: 192.168.2.2\r\n\r\n",
    ),
  );
  equal(h.method, "GET");
  equal(h.target, "/boot.http.ipxe");
  equal(h.minor, 1);
  deepEqual(h.headers, [["connection", "keep-alive"], ["user-agent", "iPXE/1.21.1+"], [
    "host",
    "192.168.2.2",
  ]]);
  ok(wantsKeepAlive(h));
  deepEqual(bodyFraming(h), { kind: "none" });
});

Deno.test("http wire: persistence by version and Connection tokens", () => {
  const ka = (s: string) => wantsKeepAlive(parseRequestHead(enc(s)));
  ok(ka("GET / HTTP/1.1\r\n\r\n"));
  ok(!ka("GET / HTTP/1.1\r\nConnection: close\r\n\r\n"));
  ok(!ka("GET / HTTP/1.0\r\n\r\n"));
  ok(ka("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n"));
  ok(!ka("GET / HTTP/1.1\r\nConnection: upgrade, close\r\n\r\n"));
});

Deno.test("http wire: body framing, smuggling guards", () => {
  const framing = (s: string) => bodyFraming(parseRequestHead(enc(s)));
  deepEqual(framing("PUT / HTTP/1.1\r\nContent-Length: 12\r\n\r\n"), { kind: "length", length: 12 });
  deepEqual(framing("PUT / HTTP/1.1\r\nContent-Length: 12, 12\r\n\r\n"), { kind: "length", length: 12 });
  deepEqual(framing("PUT / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"), { kind: "chunked" });
  const status = (s: string) => {
    try {
      framing(s);
    } catch (err) {
      if (err instanceof HttpWireError) return err.status;
      throw err;
    }
    return 0;
  };
  equal(status("PUT / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"), 400);
  equal(status("PUT / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"), 400);
  equal(status("PUT / HTTP/1.1\r\nContent-Length: -5\r\n\r\n"), 400);
  equal(status("PUT / HTTP/1.1\r\nContent-Length: 0x10\r\n\r\n"), 400);
  equal(status("PUT / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"), 501);
});

Deno.test("http wire: malformed heads are rejected with the status to answer", () => {
  const cases: [string, number][] = [
    ["GET / HTTP/1.1 extra\r\n\r\n", 400],
    ["GET  / HTTP/1.1\r\n\r\n", 400],
    ["G(T / HTTP/1.1\r\n\r\n", 400],
    ["GET / HTTP/2.0\r\n\r\n", 505],
    ["GET / HTCPCP/1.0\r\n\r\n", 400],
    ["GET /a\x7fb HTTP/1.1\r\n\r\n", 400],
    ["GET / HTTP/1.1\r\nNo colon here\r\n\r\n", 400],
    ["GET / HTTP/1.1\r\n: empty name\r\n\r\n", 400],
    ["GET / HTTP/1.1\r\nBad Name: x\r\n\r\n", 400],
    ["GET / HTTP/1.1\r\nA: b\r\n folded\r\n\r\n", 400],
    ["GET / HTTP/1.1\r\nA: b\x00c\r\n\r\n", 400],
    ["GET / HTTP/1.1\r\n" + "A: b\r\n".repeat(101) + "\r\n", 431],
    ["GET /" + "a".repeat(40_000) + " HTTP/1.1\r\n\r\n", 431],
  ];
  for (const [head, status] of cases) {
    throws(
      () => parseRequestHead(enc(head)),
      (err) => err instanceof HttpWireError && err.status === status,
      head.slice(0, 40),
    );
  }
  // leading empty lines are allowed before the request line
  equal(parseRequestHead(enc("\r\n\r\nGET /x HTTP/1.1\r\n\r\n")).target, "/x");
});

Deno.test("http wire: response heads never let a value split the head", () => {
  const text = new TextDecoder().decode(
    encodeResponseHead(206, [["content-range", "bytes 0-1/2"], ["x-evil", "a\r\nset-cookie: b"]]),
  );
  equal(text, "HTTP/1.1 206 Partial Content\r\ncontent-range: bytes 0-1/2\r\n\r\n");
  equal(new TextDecoder().decode(encodeResponseHead(799, [])), "HTTP/1.1 799 \r\n\r\n");
});

Deno.test("http wire: 20,000 seeded mutations of real heads throw only HttpWireError", () => {
  const rng = xorshift(20261129);
  const seeds = [
    "GET /boot.http.ipxe HTTP/1.1\r\nConnection: keep-alive\r\nUser-Agent: iPXE/1.21.1+\r\nHost: 10.0.0.1\r\n\r\n",
    "GET /images/rescue.iso HTTP/1.1\r\nRange: bytes=1048576-2097151\r\nHost: 10.0.0.1:8080\r\n\r\n",
    "PUT /api/machines/aa:bb/next HTTP/1.1\r\nContent-Length: 19\r\nAuthorization: Bearer x\r\n\r\n",
  ].map(enc);
  let parsed = 0;
  for (let i = 0; i < 20_000; i++) {
    const bytes = new Uint8Array(seeds[i % seeds.length]);
    const edits = 1 + (rng.next() % 8);
    for (let e = 0; e < edits; e++) bytes[rng.next() % bytes.length] = rng.next() & 0xff;
    const cut = rng.next() % 4 === 0 ? bytes.subarray(0, rng.next() % bytes.length) : bytes;
    try {
      const head = parseRequestHead(cut);
      bodyFraming(head);
      wantsKeepAlive(head);
      parsed++;
    } catch (err) {
      if (!(err instanceof HttpWireError)) throw err;
      ok(err.status >= 400 && err.status < 600);
    }
  }
  ok(parsed > 100, `some mutations still parse (${parsed})`);
});
