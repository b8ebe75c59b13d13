/**
 * The boot API client against a real HTTP server on loopback (tests/helpers/boot_api_server.ts), and the
 * body parser's pixiecore rules as tables.
 */
import assert from "node:assert/strict";
import type { Logger } from "@logtape/logtape";
import type { ThrottledLevel } from "../../src/log_throttle.ts";
import {
  BootApi,
  type BootApiAnswer,
  type BootApiOptions,
  normalizeMac,
  parseBootApiBody,
} from "../../src/machines/boot_api.ts";
import { BootApiBodyError, goQuote } from "../../src/machines/boot_api_body.ts";
import type { ProfileBoot } from "../../src/machines/model.ts";
import { type FakeBootApi, type FakeBootApiOptions, startFakeBootApi } from "../helpers/boot_api_server.ts";

const MAC = "52:54:00:12:34:56";

/** A logger that keeps `level text` lines. */
function memoryLog() {
  const lines: string[] = [];
  const at = (level: string) => (message: string) => void lines.push(`${level} ${message}`);
  const log = { debug: at("debug"), info: at("info"), warn: at("warn"), error: at("error") };
  return { lines, log: log as unknown as Pick<Logger, ThrottledLevel> };
}

/** Runs `fn` with a fake API and a client on it; closes both. */
async function withApi(
  serverOpts: FakeBootApiOptions,
  clientOpts: Partial<BootApiOptions>,
  fn: (api: FakeBootApi, client: BootApi, lines: string[]) => Promise<void>,
): Promise<void> {
  const api = await startFakeBootApi(serverOpts);
  const { lines, log } = memoryLog();
  const client = new BootApi({ url: api.url, log, ...clientOpts });
  try {
    await fn(api, client, lines);
  } finally {
    await client.close();
    await api.close();
  }
}

function bootOf(answer: BootApiAnswer): ProfileBoot {
  assert.equal(answer.kind, "profile", JSON.stringify(answer));
  return (answer as Extract<BootApiAnswer, { kind: "profile" }>).profile.boot;
}

async function timed<T>(p: Promise<T>): Promise<[T, number]> {
  const t0 = performance.now();
  const value = await p;
  return [value, performance.now() - t0];
}

Deno.test("200: kernel, initrd, string cmdline with URL(), message; relative URLs as pixiecore", async () => {
  await withApi(
    {
      prefix: "/pxe/",
      answers: {
        [MAC]: {
          json: {
            kernel: "/boot/vmlinuz",
            initrd: ["initrd.img", "https://mirror.example/extra.cpio"],
            cmdline: 'console=ttyS0 ks={{ URL "/ks.cfg" }} rel={{ URL `cfg/a b` }} plain=https://x/y',
            message: "Installing Debian",
          },
        },
      },
    },
    {},
    async (api, client) => {
      const answer = await client.lookup({ mac: MAC });
      const origin = new URL(api.url).origin;
      assert.deepEqual(bootOf(answer), {
        kind: "kernel",
        kernel: `${origin}/boot/vmlinuz`, // a naked path is not rooted in the API path
        initrd: [`${origin}/pxe/initrd.img`, "https://mirror.example/extra.cpio"], // sibling of v1
        cmdline: `console=ttyS0 ks=${origin}/ks.cfg rel=${origin}/pxe/cfg/a%20b plain=https://x/y`,
      });
      assert.equal(answer.kind === "profile" && answer.profile.message, "Installing Debian");
      assert.equal(answer.kind === "profile" && answer.profile.name, "boot-api");
    },
  );
});

Deno.test("200: cmdline object as pixiecore (sorted, bare flags, %q strings, proxied url objects)", async () => {
  await withApi(
    {
      answers: {
        [MAC]: {
          json: {
            kernel: "http://files.lan/k",
            cmdline: {
              quiet: true,
              "b.flag": false, // pixiecore treats any boolean as a bare flag
              console: "ttyS0,115200n8",
              "x.quote": 'a "b" \\c',
              "cloud-config-url": { url: "/cloud.yaml" },
            },
          },
        },
      },
    },
    { proxyUrl: (u) => `http://pypxe/_/file?name=${encodeURIComponent(u)}` },
    async (api, client) => {
      const boot = bootOf(await client.lookup({ mac: MAC }));
      const cloud = encodeURIComponent(`${new URL(api.url).origin}/cloud.yaml`);
      assert.equal(
        boot.kind === "kernel" && boot.cmdline,
        `b.flag cloud-config-url=http://pypxe/_/file?name=${cloud} console="ttyS0,115200n8" quiet ` +
          `x.quote="a \\"b\\" \\\\c"`,
      );
    },
  );
});

Deno.test("200: ipxe-script overrides everything else", async () => {
  await withApi(
    {
      answers: {
        [MAC]: { json: { "ipxe-script": "#!ipxe\nexit\n", kernel: "/k", cmdline: 7, message: "m" } },
      },
    },
    {},
    async (_api, client) => {
      const answer = await client.lookup({ mac: MAC });
      assert.deepEqual(bootOf(answer), { kind: "ipxe", script: "#!ipxe\nexit\n" });
      assert.equal(answer.kind === "profile" && answer.profile.message, undefined);
    },
  );
});

Deno.test("404 and 500 are not-ours (pixiecore: any non-200 ignores the machine)", async () => {
  const other = "52:54:00:00:00:02";
  await withApi(
    {
      answers: { [other]: { status: 500, body: "boom" } },
    },
    {},
    async (_api, client) => {
      assert.deepEqual(await client.lookup({ mac: MAC }), { kind: "not-ours", reason: "HTTP 404" });
      assert.deepEqual(await client.lookup({ mac: other }), { kind: "not-ours", reason: "HTTP 500" });
    },
  );
});

Deno.test("request: GET <url>/v1/boot/<mac> with arch, uuid, client, ip; MAC normalised; Basic auth", async () => {
  const api = await startFakeBootApi({ prefix: "/api/", fallback: { json: { kernel: "/k" } } });
  const { log } = memoryLog();
  const base = new URL(api.url);
  // no trailing slash: pixiecore adds one
  const client = new BootApi({ url: `http://u%40x:p%3Aw@${base.host}/api`, log });
  try {
    const uuid = "01234567-89ab-cdef-0123-456789abcdef";
    await client.lookup({
      mac: "AA-BB-CC-0D-0E-0F",
      arch: "efi64",
      client: "ipxe",
      uuid,
      ip: "192.168.2.101",
      hostname: "node1",
    });
    await client.lookup({ mac: "aabb.cc00.0001" });
    assert.equal(api.requests.length, 2);
    const [first, second] = api.requests;
    assert.equal(first.path, "/api/v1/boot/aa:bb:cc:0d:0e:0f");
    assert.deepEqual(first.query, { arch: "efi64", uuid, client: "ipxe", ip: "192.168.2.101" });
    assert.equal(first.headers.authorization, `Basic ${btoa("u@x:p:w")}`);
    assert.equal(second.path, "/api/v1/boot/aa:bb:cc:00:00:01");
    assert.deepEqual(second.query, {});
    assert.equal(
      client.requestUrl({ mac: MAC, arch: "bios" }),
      `http://${base.host}/api/v1/boot/${MAC}?arch=bios`,
    );
  } finally {
    await client.close();
    await api.close();
  }
});

Deno.test("slow answer: unreachable at the timeout, and other machines are not delayed", async () => {
  const fast = "52:54:00:00:00:03";
  await withApi(
    {
      answers: { [MAC]: { delayMs: 5000, json: { kernel: "/k" } }, [fast]: { json: { kernel: "/fast" } } },
    },
    { timeoutMs: 300 },
    async (api, client, lines) => {
      const slow = timed(client.lookup({ mac: MAC }));
      const [fastAnswer, fastMs] = await timed(client.lookup({ mac: fast }));
      assert.equal(fastAnswer.kind, "profile");
      assert.ok(fastMs < 250, `fast lookup took ${fastMs} ms`);
      const [answer, ms] = await slow;
      assert.deepEqual(answer, { kind: "unreachable", reason: "timed out after 300 ms" });
      assert.ok(ms >= 290 && ms < 300 + 250, `slow lookup settled after ${ms} ms`);
      assert.equal(api.count(MAC), 1);
      assert.equal(lines.filter((l) => l.startsWith("warn") && l.includes("unreachable")).length, 1);
      assert.match(lines.find((l) => l.startsWith("warn"))!, /timed out after 300 ms.*falling back/);
    },
  );
});

Deno.test("a fetch that ignores the abort still settles at the timeout", async () => {
  const { promise: never } = Promise.withResolvers<Response>();
  const { log } = memoryLog();
  const client = new BootApi({ url: "http://127.0.0.1:9/", timeoutMs: 100, fetch: () => never, log });
  try {
    const [answer, ms] = await timed(client.lookup({ mac: MAC }));
    assert.equal(answer.kind, "unreachable");
    assert.ok(ms < 100 + 200, `settled after ${ms} ms`);
  } finally {
    await client.close();
  }
});

Deno.test("malformed JSON in a 200 is not-ours, with one clear warning", async () => {
  await withApi(
    {
      answers: { [MAC]: { body: '{"kernel": "/k",' } },
    },
    {},
    async (_api, client, lines) => {
      const answer = await client.lookup({ mac: MAC });
      assert.equal(answer.kind, "not-ours");
      assert.match(answer.kind === "not-ours" ? answer.reason : "", /^malformed answer: body: not JSON/);
      const warn = lines.filter((l) => l.startsWith("warn"));
      assert.equal(warn.length, 1);
      assert.match(warn[0], new RegExp(`malformed answer: body: not JSON.* for ${MAC}; .*not booted`));
    },
  );
});

Deno.test("huge body is refused: declared length and streamed without one", async () => {
  const streamed = "52:54:00:00:00:04";
  await withApi(
    {
      answers: {
        [MAC]: { body: new Uint8Array(2 << 20).fill(0x20) },
        [streamed]: { streamBytes: 64 << 20 },
      },
    },
    {},
    async (_api, client, lines) => {
      const declared = await client.lookup({ mac: MAC });
      assert.deepEqual(declared, {
        kind: "not-ours",
        reason: "answer of 2097152 bytes is larger than the 1048576-byte limit",
      });
      const [answer, ms] = await timed(client.lookup({ mac: streamed }));
      assert.deepEqual(answer, { kind: "not-ours", reason: "answer larger than the 1048576-byte limit" });
      assert.ok(ms < 1000, `refusing the stream took ${ms} ms (it must stop reading at the cap)`);
      assert.equal(lines.filter((l) => l.startsWith("warn")).length, 1, "second one throttled");
    },
  );
});

Deno.test("connection refused is unreachable, logged once per window", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  const { lines, log } = memoryLog();
  const client = new BootApi({ url: `http://127.0.0.1:${port}/`, log, unreachableCacheMs: 0 });
  try {
    for (let i = 0; i < 5; i++) {
      const [answer, ms] = await timed(client.lookup({ mac: MAC }));
      assert.equal(answer.kind, "unreachable");
      assert.ok(ms < 1000, `refused after ${ms} ms`);
    }
    assert.equal(client.stats().requests, 5);
    assert.equal(lines.filter((l) => l.startsWith("warn")).length, 1);
  } finally {
    await client.close();
  }
  // close() reports what the throttle held back
  assert.match(lines.at(-1)!, /unreachable: 4 more in the last 60 s/);
});

Deno.test("cache: positive and negative answers reused for cacheMs, then asked again", async () => {
  let now = 0;
  const other = "52:54:00:00:00:05";
  await withApi(
    {
      answers: { [MAC]: { json: { kernel: "/k" } } },
    },
    { cacheMs: 5000, now: () => now },
    async (api, client) => {
      assert.equal((await client.lookup({ mac: MAC })).kind, "profile");
      assert.equal((await client.lookup({ mac: other })).kind, "not-ours");
      now = 4999;
      assert.equal((await client.lookup({ mac: MAC })).kind, "profile");
      assert.equal((await client.lookup({ mac: other })).kind, "not-ours");
      assert.equal(client.cached({ mac: MAC })?.kind, "profile");
      assert.equal(api.count(), 2);
      // other facts, other key: the API may answer by arch or client
      await client.lookup({ mac: MAC, client: "ipxe" });
      assert.equal(api.count(), 3);
      now = 5000;
      await client.lookup({ mac: MAC });
      await client.lookup({ mac: other });
      assert.equal(api.count(), 5);
      client.invalidate(MAC.toUpperCase());
      await client.lookup({ mac: MAC });
      assert.equal(api.count(), 6);
      assert.equal(client.stats().cacheHits, 2);
    },
  );
});

Deno.test("unreachable answers are cached briefly (unreachableCacheMs)", async () => {
  let now = 0;
  await withApi(
    {
      answers: { [MAC]: { delayMs: 2000 } },
    },
    { timeoutMs: 100, unreachableCacheMs: 1000, now: () => now },
    async (api, client) => {
      assert.equal((await client.lookup({ mac: MAC })).kind, "unreachable");
      now = 900;
      assert.equal((await client.lookup({ mac: MAC })).kind, "unreachable");
      assert.equal(api.count(), 1);
      now = 1200;
      assert.equal((await client.lookup({ mac: MAC })).kind, "unreachable");
      assert.equal(api.count(), 2);
    },
  );
});

Deno.test("in-flight de-duplication: 10 concurrent lookups of one machine make one request", async () => {
  await withApi(
    {
      answers: { [MAC]: { delayMs: 100, json: { kernel: "/k" } } },
    },
    {},
    async (api, client) => {
      const answers = await Promise.all(Array.from({ length: 10 }, () => client.lookup({ mac: MAC })));
      assert.ok(answers.every((a) => a.kind === "profile"));
      assert.equal(api.count(), 1);
      assert.equal(client.stats().joined, 9);
    },
  );
});

Deno.test("concurrency bound: beyond maxConcurrent lookups answer busy at once, no queue", async () => {
  await withApi(
    {
      fallback: { delayMs: 300, json: { kernel: "/k" } },
    },
    { maxConcurrent: 2 },
    async (api, client, lines) => {
      const macs = Array.from({ length: 6 }, (_, i) => `52:54:00:00:01:0${i}`);
      const pending = macs.map((mac) => timed(client.lookup({ mac })));
      const results = await Promise.all(pending);
      const busy = results.filter(([a]) => a.kind === "unreachable");
      assert.equal(busy.length, 4);
      for (const [answer, ms] of busy) {
        assert.match(answer.kind === "unreachable" ? answer.reason : "", /^busy: 2 requests in flight/);
        assert.ok(ms < 100, `busy answer took ${ms} ms`);
      }
      assert.equal(results.filter(([a]) => a.kind === "profile").length, 2);
      assert.equal(api.count(), 2);
      assert.equal(api.maxInFlight(), 2);
      assert.equal(lines.filter((l) => l.startsWith("warn")).length, 1);
      // busy answers are not cached: asked again once a slot is free
      assert.equal((await client.lookup({ mac: macs[5] })).kind, "profile");
      assert.equal(client.stats().busy, 4);
    },
  );
});

Deno.test("close() aborts requests in flight; later lookups answer unreachable without a request", async () => {
  const api = await startFakeBootApi({ fallback: { delayMs: 5000, json: { kernel: "/k" } } });
  const { lines, log } = memoryLog();
  const client = new BootApi({ url: api.url, log });
  try {
    const pending = timed(client.lookup({ mac: MAC }));
    await new Promise((r) => setTimeout(r, 50));
    await client.close();
    const [answer, ms] = await pending;
    assert.equal(answer.kind, "unreachable");
    assert.ok(ms < 1000);
    assert.equal((await client.lookup({ mac: "52:54:00:00:00:09" })).kind, "unreachable");
    assert.equal(api.count(), 1);
    assert.equal(lines.filter((l) => l.startsWith("warn")).length, 0, "stopping is not an API failure");
  } finally {
    await api.close();
  }
});

Deno.test("lookup never throws: invalid MAC, bad options rejected at construction", async () => {
  const { log } = memoryLog();
  const client = new BootApi({ url: "http://127.0.0.1:9/", log });
  try {
    const answer = await client.lookup({ mac: "not-a-mac" });
    assert.equal(answer.kind, "unreachable");
  } finally {
    await client.close();
  }
  assert.throws(() => new BootApi({ url: "ftp://x/" }), /only http/);
  assert.throws(() => new BootApi({ url: "http://x/?a=1" }), /no query/);
  assert.throws(() => new BootApi({ url: "nonsense" }), /not a URL/);
  assert.throws(() => new BootApi({ url: "http://x/", maxConcurrent: 0 }), /positive/);
});

Deno.test("normalizeMac spellings", () => {
  assert.equal(normalizeMac("AA:BB:CC:DD:EE:FF"), "aa:bb:cc:dd:ee:ff");
  assert.equal(normalizeMac("aa-bb-cc-dd-ee-ff"), "aa:bb:cc:dd:ee:ff");
  assert.equal(normalizeMac("aabb.ccdd.eeff"), "aa:bb:cc:dd:ee:ff");
  assert.equal(normalizeMac("aabbccddeeff"), "aa:bb:cc:dd:ee:ff");
  assert.equal(normalizeMac("aa:bb:cc:dd:ee:f"), undefined);
  assert.equal(normalizeMac(""), undefined);
  assert.equal(normalizeMac("zz:bb:cc:dd:ee:ff"), undefined);
});

const API = "http://api.lan:8080/base";

Deno.test("parseBootApiBody: accepted forms", () => {
  const cases: [string, unknown, ProfileBoot][] = [
    ["minimal", { kernel: "/k" }, {
      kind: "kernel",
      kernel: "http://api.lan:8080/k",
      initrd: [],
      cmdline: "",
    }],
    ["nulls are absent", { kernel: "k", initrd: null, cmdline: null, message: null, "ipxe-script": null }, {
      kind: "kernel",
      kernel: "http://api.lan:8080/base/k",
      initrd: [],
      cmdline: "",
    }],
    ["field names case-insensitive", { KERNEL: "http://a/k", Initrd: ["http://a/i"], CmdLine: " x=1 " }, {
      kind: "kernel",
      kernel: "http://a/k",
      initrd: ["http://a/i"],
      cmdline: "x=1",
    }],
    ["unknown fields ignored; empty ipxe-script ignored", {
      kernel: "http://a/k",
      other: 1,
      "ipxe-script": "",
    }, {
      kind: "kernel",
      kernel: "http://a/k",
      initrd: [],
      cmdline: "",
    }],
    ["scheme-relative URL", { kernel: "//cdn.lan/k" }, {
      kind: "kernel",
      kernel: "http://cdn.lan/k",
      initrd: [],
      cmdline: "",
    }],
    ["template: trim markers, comments, bare literals", {
      kernel: "http://a/k",
      cmdline: 'a=1  {{- /* c */ -}}  b={{ "lit\\x41" }} u={{URL "http://x/\\u00e9"}}',
    }, { kind: "kernel", kernel: "http://a/k", initrd: [], cmdline: "a=1b=litA u=http://x/%C3%A9" }],
    ["object: non-ASCII and control characters quoted as Go's %q", {
      kernel: "http://a/k",
      cmdline: { a: "é\t\u0001\u00a0", b: "😀" },
    }, { kind: "kernel", kernel: "http://a/k", initrd: [], cmdline: 'a="é\\t\\x01\\u00a0" b="😀"' }],
  ];
  for (const [name, body, boot] of cases) {
    assert.deepEqual(parseBootApiBody(JSON.stringify(body), API).boot, boot, name);
  }
  // credentials of the API URL are not copied into URLs a booting machine may see
  assert.equal(
    parseBootApiBody('{"kernel": "/k"}', "http://user:secret@api.lan/").boot.kind === "kernel" &&
      (parseBootApiBody('{"kernel": "/k"}', "http://user:secret@api.lan/").boot as { kernel: string }).kernel,
    "http://api.lan/k",
  );
});

Deno.test("parseBootApiBody: malformed answers name the field", () => {
  const cases: [string, string, RegExp][] = [
    ["not JSON", "{", /^body: not JSON/],
    ["trailing garbage", '{"kernel": "/k"} x', /^body: not JSON/],
    ["not an object", "[]", /^body: not a JSON object but a list/],
    ["null document", "null", /^body: not a JSON object but null/],
    ["no kernel", "{}", /^kernel: missing/],
    ["empty kernel", '{"kernel": ""}', /^kernel: missing/],
    ["kernel type", '{"kernel": 5}', /^kernel: must be a string, not a number/],
    [
      "type error even with ipxe-script",
      '{"ipxe-script": "#!ipxe", "message": 1}',
      /^message: must be a string/,
    ],
    ["initrd type", '{"kernel": "/k", "initrd": "/i"}', /^initrd: must be a list/],
    ["initrd entry", '{"kernel": "/k", "initrd": ["/i", null]}', /^initrd\[1\]: must be a string, not null/],
    ["empty initrd entry", '{"kernel": "/k", "initrd": [""]}', /^initrd\[0\]: empty URL/],
    ["file URL", '{"kernel": "file:///mnt/kernel"}', /^kernel: .*only http: and https:.*not file:/],
    ["bad URL", '{"kernel": "http://[::1/k"}', /^kernel: .* is not a URL/],
    [
      "cmdline type",
      '{"kernel": "/k", "cmdline": 5}',
      /^cmdline: must be a string or an object, not a number/,
    ],
    [
      "cmdline list",
      '{"kernel": "/k", "cmdline": ["a"]}',
      /^cmdline: must be a string or an object, not a list/,
    ],
    ["object value type", '{"kernel": "/k", "cmdline": {"a": 1}}', /^cmdline\.a: must be true, a string/],
    ["object value null", '{"kernel": "/k", "cmdline": {"a": null}}', /^cmdline\.a: must be true/],
    ["object without url", '{"kernel": "/k", "cmdline": {"a": {"uri": "x"}}}', /^cmdline\.a: .*'url'/],
    ["newline", '{"kernel": "/k", "cmdline": "a\\nb"}', /^cmdline: contains a newline/],
    [
      "other template action",
      '{"kernel": "/k", "cmdline": "a={{ .Mac }}"}',
      /^cmdline: unsupported template/,
    ],
    [
      "unclosed action",
      '{"kernel": "/k", "cmdline": "a={{ URL \\"x\\" "}',
      /^cmdline: template action not closed/,
    ],
    ["bad escape", '{"kernel": "/k", "cmdline": "{{ URL \\"\\\\q\\" }}"}', /^cmdline: invalid escape/],
    [
      "template URL scheme",
      '{"kernel": "/k", "cmdline": "{{ URL \\"file:///x\\" }}"}',
      /^cmdline: .*not file:/,
    ],
  ];
  for (const [name, body, message] of cases) {
    assert.throws(() => parseBootApiBody(body, API), (err: unknown) => {
      assert.ok(err instanceof BootApiBodyError, name);
      assert.match(err.message, message, name);
      return true;
    }, name);
  }
});

Deno.test("goQuote matches Go's strconv.Quote on the usual characters", () => {
  assert.equal(goQuote(""), '""');
  assert.equal(goQuote('a"b\\c'), '"a\\"b\\\\c"');
  assert.equal(goQuote("\x07\b\f\n\r\t\v\x00\x7f"), '"\\a\\b\\f\\n\\r\\t\\v\\x00\\x7f"');
  assert.equal(goQuote("\u0085\u2028"), '"\\u0085\\u2028"');
  assert.equal(goQuote("\u{e0001}"), '"\\U000e0001"');
});
