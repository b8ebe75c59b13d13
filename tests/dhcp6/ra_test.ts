/**
 * `--ra`: the Router Advertisement codec (goldens, malformed input), the schedule, the service over a
 * fake socket, and the real thing in network namespaces: rdisc6 (ndisc6) in a peer namespace receives
 * pypxe's advertisement (M, O, the /64, router lifetime 0, hop limit 255), tcpdump counts the initial and
 * final ones, a peer with accept_ra=2 installs the prefix (and a SLAAC address only when A is on), and
 * the start-up errors are one clear line each (no such interface, no --allow-ffi, no CAP_NET_RAW).
 */
import { deepEqual, equal, match, ok, rejects, throws } from "node:assert/strict";
import { DEFAULTS } from "../../src/config.ts";
import {
  decodeNd,
  encodeNd,
  encodeRouterAdvert,
  encodeRouterSolicit,
  findNdOption,
  NdDecodeError,
  NdEncodeError,
  type RouterAdvert,
} from "../../src/dhcp6/ra.ts";
import {
  buildRouterAdvert,
  createRaService,
  invalidSolicitation,
  prefix64,
  RA_TIMING,
  RaSchedule,
  RaService,
  type RaServiceOptions,
  type RaSocket,
} from "../../src/dhcp6/ra_service.ts";
import type { ServiceContext } from "../../src/server.ts";
import { linkLocalOf, raChildArgv, startRaIn } from "../helpers/ipv6_link.ts";
import { netnsAvailable, type NetnsPair } from "../helpers/netns.ts";
import { createPair6 } from "../helpers/netns6.ts";
import { run } from "../helpers/run.ts";
import { startDaemon } from "../helpers/servers.ts";
import { findTool, firstReason, requires } from "../helpers/tools.ts";

const hex = (s: string) => Uint8Array.from(s.replace(/\s+/g, "").match(/../g) ?? [], (b) => parseInt(b, 16));
const toHex = (b: Uint8Array) => [...b].map((x) => x.toString(16).padStart(2, "0")).join("");

/** An RA as radvd would send it: hop limit 64, M and O, SLLA, fd00::/64 (L, A), MTU 1500. */
const GOLDEN_RA = hex(`
  86 00 1234 40 c0 0708 0000ea60 000003e8
  01 01 525400123456
  03 04 40 c0 00015180 00003840 00000000 fd000000000000000000000000000000
  05 01 0000 000005dc`);

/** An RS with a source link-layer address option. */
const GOLDEN_RS = hex(`85 00 abcd 00000000 01 01 525400123456`);

Deno.test("ra codec: the golden RA decodes field by field and re-encodes to the same bytes", () => {
  const ra = decodeNd(GOLDEN_RA);
  equal(ra.type, 134);
  if (ra.type !== 134) return;
  deepEqual({ ...ra, options: [] }, {
    type: 134,
    checksum: 0x1234,
    curHopLimit: 64,
    managed: true,
    other: true,
    otherFlags: 0,
    routerLifetime: 1800,
    reachableTime: 60000,
    retransTimer: 1000,
    options: [],
  });
  deepEqual(ra.options, [
    { kind: "source-ll", address: hex("525400123456") },
    {
      kind: "prefix",
      prefixLength: 64,
      onLink: true,
      autonomous: true,
      otherFlags: 0,
      validLifetime: 86400,
      preferredLifetime: 14400,
      reserved: 0,
      prefix: "fd00::",
    },
    { kind: "mtu", reserved: 0, mtu: 1500 },
  ]);
  equal(toHex(encodeNd(ra)), toHex(GOLDEN_RA));
  equal(findNdOption(ra, "mtu")?.mtu, 1500);
  // what an encoder gets without the optional fields: checksum 0, reserved bits 0
  const plain: RouterAdvert = {
    curHopLimit: 64,
    managed: true,
    other: true,
    routerLifetime: 1800,
    reachableTime: 60000,
    retransTimer: 1000,
    options: ra.options,
  };
  equal(toHex(encodeRouterAdvert(plain)), `8600000040c0` + toHex(GOLDEN_RA).slice(12));
});

Deno.test("ra codec: the golden RS and unknown options round-trip", () => {
  const rs = decodeNd(GOLDEN_RS);
  deepEqual(rs, {
    type: 133,
    checksum: 0xabcd,
    reserved: 0,
    options: [{ kind: "source-ll", address: hex("525400123456") }],
  });
  equal(toHex(encodeNd(rs)), toHex(GOLDEN_RS));
  // an RDNSS option (25) and a 2-unit link-layer option stay as they were
  const more = hex(
    `85 00 0000 00000000 19 03 0000 00000e10 20010db8000000000000000000000053 01 02 0102030405060708090a0b0c0d0e`,
  );
  const back = decodeNd(more);
  equal(back.options[0].kind, "raw");
  equal(toHex(encodeNd(back)), toHex(more));
  equal(toHex(encodeRouterSolicit({ options: [] })), "8500000000000000");
});

Deno.test("ra codec: malformed input throws NdDecodeError naming the field", () => {
  const cases: [string, string, RegExp][] = [
    ["", "header", /0 bytes/],
    ["8600000040c0000000000000000000", "header", /15 bytes, a Router Advertisement has at least 16/],
    ["85000000000000", "header", /7 bytes, a Router Solicitation has at least 8/],
    ["87000000000000000000000000000000", "type", /135 is not/],
    ["86010000000000000000000000000000", "code", /1, must be 0/],
    ["850000000000000001005254", "option 1 (source-ll)", /length 0/],
    ["850000000000000001025254", "option 1 (source-ll)", /runs 12 bytes past the end/],
    ["85000000000000000a", "options", /stray byte/],
    ["850000000000000003014000000000ff", "option 3 (prefix)", /length 1, must be 4/],
    [
      "85000000000000000304" + "81" + "c0" + "00".repeat(28),
      "option 3 (prefix) prefix length",
      /129 is over 128/,
    ],
    ["85000000000000000502000000000000" + "00".repeat(8), "option 5 (mtu)", /length 2, must be 1/],
  ];
  for (const [bytes, field, reason] of cases) {
    throws(() => decodeNd(hex(bytes)), (e) => {
      ok(e instanceof NdDecodeError, `${bytes}: ${e}`);
      equal(e.field, field, bytes);
      match(e.reason, reason, bytes);
      return true;
    });
  }
});

Deno.test("ra codec: encode errors name the field", () => {
  const base = buildRouterAdvert({
    mac: "",
    prefix: "fd00::",
    managed: true,
    other: true,
    autonomous: false,
  });
  const cases: [RouterAdvert, string][] = [
    [{ ...base, routerLifetime: 70000 }, "routerLifetime"],
    [{ ...base, curHopLimit: -1 }, "curHopLimit"],
    [{ ...base, otherFlags: 0x80 }, "otherFlags"],
    [{ ...base, options: [{ ...findNdOption(base, "prefix")!, prefix: "fd00::x" }] }, "options[0].prefix"],
    [
      { ...base, options: [{ ...findNdOption(base, "prefix")!, prefixLength: 129 }] },
      "options[0].prefixLength",
    ],
    [{ ...base, options: [{ kind: "mtu", mtu: 2 ** 32 }] }, "options[0].mtu"],
    [{ ...base, options: [{ kind: "raw", type: 300, data: new Uint8Array(6) }] }, "options[0].type"],
    [{ ...base, options: [{ kind: "raw", type: 9, data: new Uint8Array(2040) }] }, "options[0]"],
  ];
  for (const [ra, field] of cases) {
    throws(() => encodeRouterAdvert(ra), (e) => e instanceof NdEncodeError && e.field === field, field);
  }
});

Deno.test("buildRouterAdvert: router lifetime 0, M and O as given, the /64 on link, A per mode, the MAC", () => {
  const full = buildRouterAdvert({
    mac: "52:54:00:12:34:56",
    prefix: "fd00::1:2:3:4",
    managed: true,
    other: true,
    autonomous: false,
  });
  equal(full.routerLifetime, 0);
  ok(full.managed && full.other);
  deepEqual(findNdOption(full, "source-ll")?.address, hex("525400123456"));
  const p = findNdOption(full, "prefix")!;
  deepEqual([p.prefix, p.prefixLength, p.onLink, p.autonomous], ["fd00::", 64, true, false]);
  deepEqual([p.validLifetime, p.preferredLifetime], [86400, 14400]);
  const slaac = buildRouterAdvert({
    mac: "00:00:00:00:00:00",
    prefix: "2001:db8:1:2::",
    managed: false,
    other: true,
    autonomous: true,
  });
  equal(findNdOption(slaac, "source-ll"), undefined);
  equal(findNdOption(slaac, "prefix")!.autonomous, true);
  equal(prefix64("2001:db8:1:2:aaaa::1%eth0"), "2001:db8:1:2::");
  equal(prefix64("nope"), undefined);
});

Deno.test("RaSchedule: 3 initial advertisements 4 s apart, then 200-300 s; answers within 0.5 s, 3 s apart", () => {
  const s = new RaSchedule(1000);
  equal(s.nextAt(), 1000);
  s.sentAt(1000, 0.5);
  equal(s.nextAt(), 5000);
  s.sentAt(5000, 0.5);
  equal(s.nextAt(), 9000);
  s.sentAt(9000, 0.5);
  equal(s.nextAt(), 9000 + 250_000);
  // a solicitation 1 s after the last advertisement waits until 3 s after it
  s.solicited(10_000, 0);
  equal(s.nextAt(), 12_000);
  // a second one in between does not move it
  s.solicited(10_500, 0.9);
  equal(s.nextAt(), 12_000);
  s.sentAt(12_000, 0);
  equal(s.nextAt(), 212_000);
  // long after: within MAX_RA_DELAY_TIME
  s.solicited(100_000, 0.5);
  equal(s.nextAt(), 100_000 + RA_TIMING.maxResponseDelayMs / 2);
  equal(s.sent, 4);
});

Deno.test("invalidSolicitation: hop limit 255, type 133, no link-layer option from ::", () => {
  equal(invalidSolicitation(GOLDEN_RS, "fe80::1", 255), null);
  equal(invalidSolicitation(GOLDEN_RS, "fe80::1", -1), null);
  match(invalidSolicitation(GOLDEN_RS, "fe80::1", 64)!, /hop limit 64/);
  match(invalidSolicitation(GOLDEN_RA, "fe80::1", 255)!, /type 134/);
  match(invalidSolicitation(GOLDEN_RS, "::", 255)!, /unspecified/);
  equal(invalidSolicitation(hex("8500000000000000"), "::", 255), null);
  match(invalidSolicitation(hex("8501000000000000"), "fe80::1", 255)!, /code/);
});

/** A socket that records what is sent and hands out queued packets. */
class FakeSocket implements RaSocket {
  sent: { data: Uint8Array; to: string; at: number }[] = [];
  #queue: { data: Uint8Array; from: string; hopLimit: number }[] = [];
  #waiter: ((v: { data: Uint8Array; from: string; hopLimit: number } | null) => void) | null = null;
  closed = false;
  send(data: Uint8Array, to: string): void {
    this.sent.push({ data, to, at: Date.now() });
  }
  receive() {
    const next = this.#queue.shift();
    if (next !== undefined || this.closed) return Promise.resolve(next ?? null);
    return new Promise<{ data: Uint8Array; from: string; hopLimit: number } | null>((r) => this.#waiter = r);
  }
  deliver(p: { data: Uint8Array; from: string; hopLimit: number }): void {
    if (this.#waiter === null) this.#queue.push(p);
    else this.#waiter(p);
    this.#waiter = null;
  }
  close(): Promise<void> {
    this.closed = true;
    this.#waiter?.(null);
    return Promise.resolve();
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Waits up to `ms` for `check` to hold, polling every 10 ms. */
async function waitUntil(check: () => boolean, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (!check() && Date.now() < deadline) await sleep(10);
  return check();
}

Deno.test("RaService over a fake socket: first RA at start, initial ones, answers, final RA on stop", async () => {
  const sock = new FakeSocket();
  let opened: unknown;
  const ra = new RaService({
    iface: "eth9",
    mac: "52:54:00:12:34:56",
    prefix: "fd00::1",
    managed: true,
    other: true,
    autonomous: false,
    timing: {
      initialIntervalMs: 150,
      minIntervalMs: 60_000,
      maxIntervalMs: 60_000,
      minDelayMs: 100,
      maxResponseDelayMs: 20,
    },
    openSocket: (o) => {
      opened = o;
      return sock;
    },
  });
  await ra.start();
  deepEqual(opened, { iface: "eth9", receiveTypes: [133], groups: ["ff02::2"], who: "ra" });
  equal(sock.sent.length, 1, "the first advertisement goes out at start");
  equal(sock.sent[0].to, "ff02::1");
  equal(toHex(sock.sent[0].data), toHex(ra.advertisement));
  deepEqual(ra.endpoints(), ["ICMPv6 eth9 RA fd00::/64 flags MO"]);
  ok(await waitUntil(() => sock.sent.length >= 3, 5000), "three initial advertisements");
  await sleep(100);
  equal(sock.sent.length, 3, "then the long interval");
  // a valid solicitation is answered; an invalid one (hop limit 64) is not
  sock.deliver({ data: GOLDEN_RS, from: "fe80::2", hopLimit: 64 });
  await sleep(150);
  equal(sock.sent.length, 3);
  sock.deliver({ data: GOLDEN_RS, from: "fe80::2", hopLimit: 255 });
  sock.deliver({ data: GOLDEN_RS, from: "fe80::3", hopLimit: 255 });
  ok(await waitUntil(() => sock.sent.length >= 4, 5000), "the solicitation is answered");
  await sleep(150);
  equal(sock.sent.length, 4, "two solicitations within minDelay share one answer");
  await ra.stop();
  equal(sock.sent.length, 5, "a final advertisement");
  equal(ra.sent, 5);
  ok(sock.closed);
  const final = decodeNd(sock.sent[4].data);
  equal(final.type === 134 && final.routerLifetime, 0);
  await ra.stop(); // twice is fine
});

Deno.test("RaService: a socket that cannot open rejects start() with its line; a bad prefix throws", async () => {
  const ra = new RaService({
    iface: "eth9",
    mac: "",
    prefix: "fd00::",
    managed: false,
    other: true,
    autonomous: true,
    openSocket: () => {
      throw new Error("ra: no such interface eth9");
    },
  });
  await rejects(ra.start(), /^Error: ra: no such interface eth9$/);
  await ra.stop();
  throws(
    () =>
      new RaService({ iface: "x", mac: "", prefix: "nope", managed: false, other: false, autonomous: false }),
    /not an IPv6 prefix/,
  );
});

Deno.test("RaService: a receive error pauses the loop, which then hears solicitations again", async () => {
  const sock = new FakeSocket();
  let failures = 1;
  const receive = sock.receive.bind(sock);
  sock.receive = () => failures-- > 0 ? Promise.reject(new Error("recv: Network is down")) : receive();
  const ra = new RaService({
    iface: "eth9",
    mac: "",
    prefix: "fd00::",
    managed: true,
    other: true,
    autonomous: false,
    timing: {
      initialCount: 1,
      minIntervalMs: 60_000,
      maxIntervalMs: 60_000,
      minDelayMs: 0,
      maxResponseDelayMs: 0,
    },
    openSocket: () => sock,
  });
  await ra.start();
  equal(sock.sent.length, 1);
  await sleep(1100); // the pause after the error
  sock.deliver({ data: GOLDEN_RS, from: "fe80::2", hopLimit: 255 });
  ok(await waitUntil(() => sock.sent.length === 2, 3000), "answered after the error");
  await ra.stop();
  equal(sock.sent.length, 3);
});

Deno.test("RaService: stop() during the pause after a receive error ends at once", async () => {
  const sock = new FakeSocket();
  sock.receive = () => Promise.reject(new Error("recv: broken"));
  const ra = new RaService({
    iface: "eth9",
    mac: "",
    prefix: "fd00::",
    managed: true,
    other: true,
    autonomous: false,
    openSocket: () => sock,
  });
  await ra.start();
  await sleep(20);
  const t = Date.now();
  await ra.stop();
  ok(Date.now() - t < 500, `stop took ${Date.now() - t} ms`);
});

Deno.test("createRaService: null unless --ipv6 and --ra; a missing interface is a one-line start error", async () => {
  const ctx = (over: Partial<typeof DEFAULTS>) =>
    ({ config: { ...DEFAULTS, ...over } }) as unknown as ServiceContext;
  equal(createRaService(ctx({ USE_IPV6: true })), null);
  equal(createRaService(ctx({ USE_RA: true })), null);
  const svc = createRaService(
    ctx({ USE_IPV6: true, USE_RA: true, INTERFACE: "pypxe-none0", DHCP6_SERVER_IP: "fd00::1" }),
  );
  ok(svc !== null);
  equal(svc.name, "ra");
  await rejects(svc.start(), (e: Error) => /^ra: .*pypxe-none0/.test(e.message) && !e.message.includes("\n"));
  await svc.stop();
});

// ---------- real clients in network namespaces ----------

const rdisc6Missing = findTool("rdisc6") === null ? "missing tool rdisc6 (apt-get install ndisc6)" : null;
const nsMissing = netnsAvailable(["tcpdump"]);

/** A pair with IPv6: fd00::1/64 on the server's vs, only link-local on the client's vc (accept_ra=2). */
function ipv6Pair(tag: string): Promise<NetnsPair> {
  return createPair6({ tag, serverIp6: "fd00::1", acceptRa: true });
}

function raOptions(over: Partial<RaServiceOptions> = {}): RaServiceOptions {
  return {
    iface: "vs",
    mac: "02:00:00:00:00:01",
    prefix: "fd00::1",
    managed: true,
    other: true,
    autonomous: false,
    ...over,
  };
}

Deno.test(requires(firstReason(nsMissing, rdisc6Missing), {
  name:
    "ra: rdisc6 in a peer namespace receives M, O, fd00::/64, lifetime 0; tcpdump sees 3 initial + final RAs at hop limit 255",
  sanitizeResources: true,
  sanitizeOps: true,
  fn: async () => {
    const pair = await ipv6Pair("ra");
    try {
      const serverLl = await linkLocalOf(pair.server, "vs");
      const dump = await startDaemon([
        "tcpdump",
        "-l",
        "-n",
        "-vv",
        "-i",
        "vc",
        "icmp6 and ip6[40] == 134",
      ], { netns: pair.client, ready: /listening on/, name: "tcpdump" });
      try {
        const ra = await startRaIn(pair.server, raOptions({ timing: { initialIntervalMs: 300 } }));
        const r = await run(["rdisc6", "-1", "-w", "1500", "-r", "4", "vc"], {
          netns: pair.client,
          timeoutMs: 20_000,
        });
        equal(r.code, 0, r.stdout + r.stderr);
        match(r.stdout, /Stateful address conf\.\s*:\s*Yes/);
        match(r.stdout, /Stateful other conf\.\s*:\s*Yes/);
        match(r.stdout, /Router lifetime\s*:\s*0 /);
        match(r.stdout, /Source link-layer address:\s*02:00:00:00:00:01/);
        match(r.stdout, /Prefix\s*:\s*fd00::\/64/);
        match(r.stdout, /On-link\s*:\s*Yes/);
        match(r.stdout, /Autonomous address conf\.:\s*No/);
        ok(r.stdout.includes(`from ${serverLl}`), r.stdout);
        await sleep(1000); // the three initial ones (300 ms apart) are out
        const sent = await ra.finish();
        ok(sent >= 4, `sent ${sent}`);
        // tcpdump prints each RA on two lines or more; count the headers
        const deadline = Date.now() + 5000;
        const headers = () => dump.lines.filter((l) => /router advertisement/.test(l));
        while (headers().length < sent && Date.now() < deadline) await sleep(50);
        equal(headers().length, sent, dump.lines.join("\n"));
        ok(dump.lines.filter((l) => /hlim 255/.test(l)).length >= sent, dump.lines.join("\n"));
        ok(headers().every((l) => l.includes(`${serverLl} > ff02::1`)), dump.lines.join("\n"));
      } finally {
        await dump.stop();
      }
    } finally {
      await pair.destroy();
    }
  },
}));

/** Waits up to `ms` for `check` to hold, polling every 100 ms. */
async function until(check: () => Promise<boolean>, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (await check()) return true;
    await sleep(100);
  }
  return await check();
}

Deno.test(requires(nsMissing, {
  name: "ra: a peer with accept_ra=2 installs fd00::/64 on link; it forms a SLAAC address only when A is on",
  sanitizeResources: true,
  sanitizeOps: true,
  fn: async () => {
    const pair = await ipv6Pair("slaac");
    const routes = async () =>
      (await run(["ip", "-6", "route", "show", "dev", "vc"], { netns: pair.client })).stdout;
    const addrs = async () =>
      (await run(["ip", "-6", "-o", "addr", "show", "dev", "vc", "scope", "global"], { netns: pair.client }))
        .stdout;
    try {
      // full DHCPv6: A off, so the prefix is on link (a route that expires: it came from an RA) but no
      // address is formed
      const full = await startRaIn(pair.server, raOptions());
      ok(
        await until(async () => /^fd00::\/64 .* expires \d+sec/m.test(await routes()), 10_000),
        await routes(),
      );
      await sleep(500);
      equal((await addrs()).trim(), "", "no SLAAC address with A off");
      ok(!/^default/m.test(await routes()), "router lifetime 0: no default route");
      await full.finish();
      // DHCPv6 proxy or none: A on, the peer forms fd00::<eui64>
      const slaac = await startRaIn(pair.server, raOptions({ managed: false, autonomous: true }));
      ok(
        await until(async () => /inet6 fd00::[0-9a-f:]+\/64 .*dynamic/.test(await addrs()), 10_000),
        await addrs(),
      );
      ok(!/^default/m.test(await routes()));
      await slaac.finish();
    } finally {
      await pair.destroy();
    }
  },
}));

Deno.test(requires(netnsAvailable(["capsh"]), {
  name: "ra: start-up errors are one line: no such interface, no --allow-ffi, no CAP_NET_RAW",
  sanitizeResources: true,
  sanitizeOps: true,
  fn: async () => {
    const pair = await ipv6Pair("raerr");
    const failure = async (argv: string[], prefix: string[] = []) => {
      const r = await run([...prefix, ...argv], {
        netns: pair.server,
        env: { NO_COLOR: "1" },
        timeoutMs: 30_000,
      });
      const line = r.stdout.split("\n").find((l) => l.startsWith("failed "));
      ok(line !== undefined, r.stdout + r.stderr);
      return line.slice(7);
    };
    try {
      equal(
        await failure(raChildArgv(raOptions({ iface: "nosuch0" }), ["--allow-all"])),
        "ra: no such interface nosuch0",
      );
      match(
        await failure(raChildArgv(raOptions(), ["--allow-read", "--allow-env", "--allow-sys"])),
        /^ra: needs FFI permission for a raw ICMPv6 socket \(run with --allow-ffi/,
      );
      const argv = raChildArgv(raOptions(), ["--allow-all"]);
      match(
        await failure(["capsh", "--drop=cap_net_raw", "--", "-c", 'exec "$0" "$@"', ...argv]),
        /^ra: cannot open a raw ICMPv6 socket: Operation not permitted; run as root/,
      );
    } finally {
      await pair.destroy();
    }
  },
}));
