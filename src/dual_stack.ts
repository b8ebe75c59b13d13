/**
 * Which sockets a TFTP or HTTP service binds for its IPv4 address and, with `--ipv6`, for IPv6 too; and
 * the address helpers that keep client names unambiguous (`[fd00::5]:1234`) and IPv4 clients plain IPv4.
 *
 * Linux (net.ipv6.bindv6only=0, the default) makes a `::` socket dual-stack, and Deno 2.9.6 cannot set
 * IPV6_V6ONLY: `::` and any IPv4 address on the same port then conflict (AddrInUse, UDP and TCP, in
 * either order) unless both sockets set SO_REUSEADDR/SO_REUSEPORT (`reuseAddress` for UDP, `reusePort`
 * for TCP). So, for an IPv4 address `host`:
 *
 * - `0.0.0.0`: one `::` socket serves both families (IPv4 clients arrive as `::ffff:a.b.c.d`, see
 *   {@linkcode plainAddr}); `0.0.0.0` is bound as well only if it is free, that is where `::` is
 *   IPv6-only (bindv6only=1);
 * - a specific address and a given IPv6 address: both, plainly (they do not conflict);
 * - a specific address alone: the address and `::`, both with port reuse (the kernel prefers the
 *   specific socket for its address), after a plain `::` probe that reports a busy port like any bind;
 *   IPv4 clients reaching `::` on other addresses are refused there (`refuseMapped`).
 *
 * @example
 * ```ts
 * bindPlan("0.0.0.0", true); // { probe: false, sockets: [{ host: "::", ... }, { host: "0.0.0.0", ifFree: true, ... }] }
 * hostPort({ transport: "udp", hostname: "::ffff:10.0.0.5", port: 1234 }); // "10.0.0.5:1234"
 * hostPort({ transport: "udp", hostname: "fd00::5", port: 1234 }); // "[fd00::5]:1234"
 * ```
 * @module
 */

/** One socket of a {@linkcode BindPlan}. */
export interface BindSpec {
  /** Address to bind. */
  readonly host: string;
  /** Bind with port reuse (needed for `::` beside a specific IPv4 address). */
  readonly reuse: boolean;
  /** Bound only when free: AddrInUse means the `::` socket bound before it serves IPv4 already. */
  readonly ifFree: boolean;
  /** IPv4 clients on this socket reached an address the service does not serve: refuse them. */
  readonly refuseMapped: boolean;
}

/** The sockets a service binds, in order, on one port. */
export interface BindPlan {
  /** Bind `::` plainly once and release it before the sockets (busy-port check, port 0 choice). */
  readonly probe: boolean;
  readonly sockets: readonly BindSpec[];
  /** The IPv6 address served ("" when IPv6 is off), for the banner. */
  readonly host6: string;
}

function spec(host: string, more: Partial<BindSpec> = {}): BindSpec {
  return { host, reuse: false, ifFree: false, refuseMapped: false, ...more };
}

/**
 * The sockets for IPv4 address `host` and, when `ipv6`, IPv6 (`host6`, the server's IPv6 address, is
 * used beside a specific IPv4 address; `::` otherwise). See the module doc.
 */
export function bindPlan(host: string, ipv6: boolean, host6 = ""): BindPlan {
  if (!ipv6 || host.includes(":")) return { probe: false, sockets: [spec(host)], host6: "" };
  if (host === "0.0.0.0") {
    return { probe: false, sockets: [spec("::"), spec("0.0.0.0", { ifFree: true })], host6: "::" };
  }
  if (host6 !== "") return { probe: false, sockets: [spec(host), spec(host6)], host6 };
  return {
    probe: true,
    sockets: [spec(host, { reuse: true }), spec("::", { reuse: true, refuseMapped: true })],
    host6: "::",
  };
}

/** A bind of a {@linkcode BindPlan} that failed: the address and the error thrown. */
export class BindFailure extends Error {
  /** Wraps `cause`, thrown binding `host`. */
  constructor(readonly host: string, override readonly cause: unknown) {
    super(`cannot bind ${host}: ${cause instanceof Error ? cause.message : String(cause)}`);
    this.name = "BindFailure";
  }
}

/** How {@linkcode bindAll} opens, measures and closes one socket. */
export interface Binder<T> {
  open(host: string, port: number, reuse: boolean): T;
  portOf(socket: T): number;
  close(socket: T): void;
}

/**
 * Binds the plan's sockets on `port` (0: the first bind picks it); returns the bound ones with their
 * spec. On a failure closes what it bound and throws {@linkcode BindFailure}.
 */
export function bindAll<T>(
  plan: BindPlan,
  port: number,
  binder: Binder<T>,
): { port: number; bound: { spec: BindSpec; socket: T }[] } {
  let p = port;
  if (plan.probe) {
    let probe: T;
    try {
      probe = binder.open("::", p, false);
    } catch (err) {
      throw new BindFailure("::", err);
    }
    p = binder.portOf(probe);
    binder.close(probe);
  }
  const bound: { spec: BindSpec; socket: T }[] = [];
  for (const s of plan.sockets) {
    let socket: T;
    try {
      socket = binder.open(s.host, p, s.reuse);
    } catch (err) {
      if (s.ifFree && err instanceof Deno.errors.AddrInUse) continue;
      for (const b of bound) binder.close(b.socket);
      throw new BindFailure(s.host, err);
    }
    if (p === 0) p = binder.portOf(socket);
    bound.push({ spec: s, socket });
  }
  return { port: p, bound };
}

const MAPPED = /^::ffff:(\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3})$/i;

/** True for an IPv4-mapped IPv6 address (`::ffff:10.0.0.5`). */
export function isMapped(hostname: string): boolean {
  return MAPPED.test(hostname);
}

/** `::ffff:10.0.0.5` -> `10.0.0.5`; any other address unchanged. */
export function plainIp(hostname: string): string {
  return MAPPED.exec(hostname)?.[1] ?? hostname;
}

/** The address with an IPv4-mapped hostname made plain IPv4 (the same object when nothing changes). */
export function plainAddr<T extends { hostname: string }>(addr: T): T {
  const ip = plainIp(addr.hostname);
  return ip === addr.hostname ? addr : { ...addr, hostname: ip };
}

/** `10.0.0.5` -> `10.0.0.5`, `fd00::1` -> `[fd00::1]` (for URLs and `host:port` text). */
export function bracketHost(host: string): string {
  return host.includes(":") && !host.startsWith("[") ? `[${host}]` : host;
}

/** `10.0.0.5:1234`, `[fd00::5]:1234`: a client or endpoint name (IPv4-mapped shown as IPv4). */
export function hostPort(addr: { hostname: string; port: number }): string {
  return `${bracketHost(plainIp(addr.hostname))}:${addr.port}`;
}
