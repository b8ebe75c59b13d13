/**
 * IPv6 on a namespace pair (tests/helpers/netns.ts) for the DHCPv6 tests: {@linkcode createPair6} (a pair
 * with IPv6 addresses, past duplicate address detection), a link's MAC and link-local address, and sending
 * datagrams from inside a namespace.
 *
 * A test process cannot enter a namespace itself, so {@linkcode sendDatagrams} runs this file as a
 * subprocess (`ip netns exec NS deno run -A tests/helpers/netns6.ts SPEC`): it binds a UDP socket (default
 * `[::]:546`, the DHCPv6 client port), sends every datagram of a record file ({@linkcode encodeRecords}) to
 * its target, paced, keeps receiving for `waitMs` after the last send and prints one JSON line
 * ({@linkcode SendResult}). It is bounded by `maxSeconds` whatever happens.
 *
 * ```ts
 * await addAddress6(pair.server, "vs", "fd00:213::1/64");
 * await waitDad(pair.client, "vc");
 * const r = await sendDatagrams(pair.client, dir, [{ target: 0, bytes: solicit }], {
 *   targets: [{ hostname: "ff02::1:2%vc", port: 547 }],
 *   waitMs: 2000,
 *   untilReplies: 1,
 * });
 * ```
 * @module
 */
import { createPair, type NetnsPair } from "./netns.ts";
import { run } from "./run.ts";

/** Where a datagram goes. */
export interface Target {
  /** An IPv6 address; a link-local or multicast one with `%iface`. */
  hostname: string;
  port: number;
}

/** What the sender subprocess does. */
export interface SendSpec {
  /** Bind address (default `::`). */
  bind?: string;
  /** Bind port (default 546). */
  port?: number;
  /** The record file ({@linkcode encodeRecords}). */
  packets: string;
  targets: Target[];
  /** Keeps receiving this long after the last send (default 1000 ms). */
  waitMs?: number;
  /** Stops waiting once this many replies arrived (default: waits the whole `waitMs`). */
  untilReplies?: number;
  /** Sleeps `pauseMs` after every `every` datagrams, so the receiver's buffer keeps up (default 50 / 1). */
  every?: number;
  pauseMs?: number;
  /** Replies whose bytes are kept in the result (the rest are only counted); default 50. */
  keep?: number;
  /** Hard bound on the whole run (default 120 s). */
  maxSeconds?: number;
}

/** One datagram that came back. */
export interface Reply {
  hex: string;
  from: string;
  port: number;
}

/** What the sender printed. */
export interface SendResult {
  /** Datagrams handed to the kernel. */
  sent: number;
  /** Sends that failed, by error name. */
  failed: Record<string, number>;
  /** Datagrams received in all. */
  received: number;
  /** The first `keep` of them. */
  replies: Reply[];
  /** Milliseconds spent sending. */
  sendMs: number;
  /** Milliseconds in all. */
  ms: number;
}

/** One datagram to send: the index of its target and its bytes. */
export interface DatagramRecord {
  target: number;
  bytes: Uint8Array;
}

/** The record file: per datagram one target byte, a 4-byte big-endian length, the bytes. */
export function encodeRecords(records: readonly DatagramRecord[]): Uint8Array {
  const out = new Uint8Array(records.reduce((n, r) => n + 5 + r.bytes.length, 0));
  const view = new DataView(out.buffer);
  let at = 0;
  for (const r of records) {
    out[at] = r.target;
    view.setUint32(at + 1, r.bytes.length);
    out.set(r.bytes, at + 5);
    at += 5 + r.bytes.length;
  }
  return out;
}

/** The records of a record file. */
export function decodeRecords(file: Uint8Array): DatagramRecord[] {
  const view = new DataView(file.buffer, file.byteOffset, file.byteLength);
  const out: DatagramRecord[] = [];
  for (let at = 0; at + 5 <= file.length;) {
    const length = view.getUint32(at + 1);
    out.push({ target: file[at], bytes: file.subarray(at + 5, at + 5 + length) });
    at += 5 + length;
  }
  return out;
}

/** Bytes from lower-case hex. */
export function fromHex(hex: string): Uint8Array {
  return Uint8Array.from({ length: hex.length / 2 }, (_, i) => parseInt(hex.slice(2 * i, 2 * i + 2), 16));
}

function toHex(bytes: Uint8Array): string {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

let fileCounter = 0;

/**
 * Sends `records` from inside namespace `netns` (the record file goes in `dir`) and resolves with what the
 * sender printed; throws when it fails or prints nothing.
 */
export async function sendDatagrams(
  netns: string,
  dir: string,
  records: readonly DatagramRecord[],
  spec: Omit<SendSpec, "packets">,
): Promise<SendResult> {
  const packets = `${dir}/datagrams-${fileCounter++}.bin`;
  await Deno.writeFile(packets, encodeRecords(records));
  const script = new URL(import.meta.url).pathname;
  const full: SendSpec = { ...spec, packets };
  const bound = (spec.maxSeconds ?? 120) * 1000 + 20_000;
  try {
    const r = await run([Deno.execPath(), "run", "-A", "--no-prompt", script, JSON.stringify(full)], {
      netns,
      env: { NO_COLOR: "1" },
      timeoutMs: bound,
    });
    const line = r.stdout.trim().split("\n").at(-1) ?? "";
    if (!r.success || !line.startsWith("{")) {
      throw new Error(
        `datagram sender in ${netns} failed (${r.code}): ${r.stderr.trim()} ${r.stdout.trim()}`,
      );
    }
    return JSON.parse(line) as SendResult;
  } finally {
    await Deno.remove(packets).catch(() => {});
  }
}

/** Adds `cidr` (e.g. `fd00:213::1/64`) to `dev` in `netns`, without duplicate address detection. */
export async function addAddress6(netns: string, dev: string, cidr: string): Promise<void> {
  await run(["ip", "-6", "addr", "add", cidr, "dev", dev, "nodad"], {
    netns,
    check: true,
    timeoutMs: 10_000,
  });
}

/** Waits (at most `timeoutMs`, default 10 s) until `dev` in `netns` has a link-local address past DAD. */
export async function waitDad(netns: string, dev: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const r = await run(["ip", "-6", "-o", "addr", "show", "dev", dev], { netns, timeoutMs: 5000 });
    const lines = r.stdout.split("\n").filter((l) => l.includes("inet6"));
    const ready = lines.some((l) => / scope link/.test(l)) && !lines.some((l) => /tentative/.test(l));
    if (ready) return;
    if (Date.now() > deadline) throw new Error(`${dev} in ${netns}: IPv6 not ready: ${r.stdout.trim()}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** The MAC of `dev` in `netns`, lower case with colons. */
export async function macOf(netns: string, dev: string): Promise<string> {
  const r = await run(["ip", "-j", "link", "show", "dev", dev], { netns, check: true, timeoutMs: 10_000 });
  return (JSON.parse(r.stdout) as { address: string }[])[0].address.toLowerCase();
}

/** The link-local address of `dev` in `netns` (no zone). */
export async function linkLocalOf(netns: string, dev: string): Promise<string> {
  const r = await run(["ip", "-j", "-6", "addr", "show", "dev", dev], {
    netns,
    check: true,
    timeoutMs: 10_000,
  });
  const infos = (JSON.parse(r.stdout) as { addr_info: { local: string; scope: string }[] }[])[0].addr_info;
  const ll = infos.find((a) => a.scope === "link");
  if (ll === undefined) throw new Error(`${dev} in ${netns} has no link-local address`);
  return ll.local;
}

/** A namespace pair with IPv6: the server's `vs` has `serverIp6`/64, both link-locals are past DAD. */
export interface Pair6 extends NetnsPair {
  /** The server's global (ULA) address, no prefix length. */
  readonly serverIp6: string;
  /** The client's global address, or null when it has none (DHCPv6 clients get one). */
  readonly clientIp6: string | null;
}

/**
 * {@linkcode createPair} (IPv4 `serverIp` on the server, none on the client) plus `serverIp6`/64 on the
 * server's `vs` and, when given, `clientIp6`/64 on the client's `vc`; resolves once both link-local
 * addresses are usable (a datagram sent from a tentative address is lost).
 */
export async function createPair6(opts: {
  tag: string;
  serverIp?: string;
  serverIp6: string;
  clientIp6?: string;
  /** Sets net.ipv6.conf.vc.accept_ra=2 in the client first (it takes router advertisements). */
  acceptRa?: boolean;
}): Promise<Pair6> {
  const pair = await createPair({ tag: opts.tag, serverIp: opts.serverIp, clientIp: null });
  try {
    if (opts.acceptRa) {
      await run(["sysctl", "-qw", `net.ipv6.conf.${pair.clientIf}.accept_ra=2`], {
        netns: pair.client,
        check: true,
      });
    }
    await addAddress6(pair.server, pair.serverIf, `${opts.serverIp6}/64`);
    if (opts.clientIp6 !== undefined) await addAddress6(pair.client, pair.clientIf, `${opts.clientIp6}/64`);
    await waitDad(pair.server, pair.serverIf);
    await waitDad(pair.client, pair.clientIf);
  } catch (err) {
    await pair.destroy();
    throw err;
  }
  return { ...pair, serverIp6: opts.serverIp6, clientIp6: opts.clientIp6 ?? null };
}

/**
 * The dual-stack bed of the HTTP and TFTP IPv6 tests: {@linkcode createPair} (IPv4 on both ends) with
 * net.ipv6.bindv6only=1 in the server namespace (`::` is IPv6-only there), `fd00:6::1/64` on the server's
 * `vs` and `fd00:6::2/64` on the client's `vc` (no duplicate address detection).
 */
export async function createBindV6OnlyPair(tag: string): Promise<Pair6> {
  const pair = await createPair({ tag });
  try {
    await run(["sysctl", "-qw", "net.ipv6.bindv6only=1"], {
      netns: pair.server,
      check: true,
      timeoutMs: 10_000,
    });
    await addAddress6(pair.server, pair.serverIf, "fd00:6::1/64");
    await addAddress6(pair.client, pair.clientIf, "fd00:6::2/64");
  } catch (err) {
    await pair.destroy();
    throw err;
  }
  return { ...pair, serverIp6: "fd00:6::1", clientIp6: "fd00:6::2" };
}

async function main(spec: SendSpec): Promise<SendResult> {
  const started = performance.now();
  const deadline = started + (spec.maxSeconds ?? 120) * 1000;
  const records = decodeRecords(await Deno.readFile(spec.packets));
  const conn = Deno.listenDatagram({
    transport: "udp",
    hostname: spec.bind ?? "::",
    port: spec.port ?? 546,
    reuseAddress: true,
  });
  const keep = spec.keep ?? 50;
  const replies: Reply[] = [];
  let received = 0;
  const waiter: { wake: (() => void) | null } = { wake: null };
  const receiving = (async () => {
    const buf = new Uint8Array(65536);
    for (;;) {
      try {
        const [bytes, from] = await conn.receive(buf);
        received++;
        const addr = from as Deno.NetAddr;
        if (replies.length < keep) replies.push({ hex: toHex(bytes), from: addr.hostname, port: addr.port });
        waiter.wake?.();
      } catch {
        return; // closed
      }
    }
  })();
  const failed: Record<string, number> = {};
  let sent = 0;
  const every = Math.max(1, spec.every ?? 50);
  const pauseMs = spec.pauseMs ?? 1;
  for (const [i, r] of records.entries()) {
    if (performance.now() > deadline) break;
    const to = spec.targets[r.target];
    try {
      await conn.send(r.bytes, { transport: "udp", hostname: to.hostname, port: to.port });
      sent++;
    } catch (err) {
      const name = err instanceof Error ? `${err.name}: ${err.message}` : String(err);
      failed[name] = (failed[name] ?? 0) + 1;
    }
    if (i % every === every - 1) await new Promise((resolve) => setTimeout(resolve, pauseMs));
  }
  const sendMs = performance.now() - started;
  const waitUntil = Math.min(deadline, performance.now() + (spec.waitMs ?? 1000));
  while (performance.now() < waitUntil) {
    if (spec.untilReplies !== undefined && received >= spec.untilReplies) break;
    let timer: ReturnType<typeof setTimeout> | undefined;
    await new Promise<void>((resolve) => {
      waiter.wake = resolve;
      timer = setTimeout(resolve, Math.max(1, waitUntil - performance.now()));
    });
    clearTimeout(timer);
    waiter.wake = null;
  }
  conn.close();
  await receiving;
  return {
    sent,
    failed,
    received,
    replies,
    sendMs: Math.round(sendMs),
    ms: Math.round(performance.now() - started),
  };
}

if (import.meta.main) {
  const result = await main(JSON.parse(Deno.args[0] ?? "{}") as SendSpec);
  console.log(JSON.stringify(result));
}
