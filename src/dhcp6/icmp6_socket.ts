/**
 * A raw ICMPv6 socket on one interface, through the C library (`Deno.dlopen("libc.so.6")`): Deno has no
 * raw sockets. Linux with glibc only (x86_64 and aarch64 share every constant and struct layout used
 * here); needs `--allow-ffi` and root or CAP_NET_RAW.
 *
 * The socket sends with hop limit 255 (RFC 4861 requires it and receivers check it), out of the
 * interface (SO_BINDTODEVICE and the destination's scope id; not IPV6_MULTICAST_IF, which user-mode
 * QEMU, where the aarch64 build is tested, refuses), without looping its own multicasts back; the kernel
 * computes the ICMPv6 checksum. It receives only the ICMPv6 types asked for (ICMP6_FILTER), from that
 * interface, with each packet's hop limit (IPV6_RECVHOPLIMIT).
 *
 * Receiving never blocks the event loop: `poll()` runs as a `nonblocking` FFI call on a worker thread (up
 * to 1 s each), then `recvmsg(MSG_DONTWAIT)` runs on the main thread so `errno` is read on the thread
 * that set it. `close()` shuts the socket down, which wakes a pending `poll()` at once, waits for it, and
 * only then closes the descriptor (so a worker never polls a reused descriptor number).
 *
 * @example
 * ```ts
 * const sock = Icmp6Socket.open({ iface: "eth0", receiveTypes: [133], groups: ["ff02::2"], who: "ra" });
 * sock.send(encodeRouterAdvert(ra), "ff02::1");
 * const got = await sock.receive(); // { data, from: "fe80::...", hopLimit: 255 } or null once closed
 * await sock.close();
 * ```
 * @module
 */
import { formatIpv6, parseIpv6 } from "./address.ts";

const AF_INET6 = 10;
const SOCK_RAW = 3;
const SOCK_CLOEXEC = 0o2000000;
const SOL_SOCKET = 1;
const SO_BINDTODEVICE = 25;
const IPPROTO_IPV6 = 41;
const IPPROTO_ICMPV6 = 58;
const ICMP6_FILTER = 1;
const IPV6_UNICAST_HOPS = 16;
const IPV6_MULTICAST_HOPS = 18;
const IPV6_MULTICAST_LOOP = 19;
const IPV6_ADD_MEMBERSHIP = 20;
const IPV6_RECVHOPLIMIT = 51;
const IPV6_HOPLIMIT = 52;
const MSG_DONTWAIT = 0x40;
const MSG_TRUNC = 0x20;
const POLLIN = 0x1;
const POLLNVAL = 0x20;
const SHUT_RDWR = 2;
const EAGAIN = 11;
const EINTR = 4;
const EPERM = 1;
const EACCES = 13;
/** How long one `poll()` waits; a close is noticed at the latest after this. */
const POLL_MS = 1000;
/** Largest packet kept (an RA fits in an Ethernet frame; longer ones are dropped as truncated). */
const MAX_PACKET = 2048;

const SYMBOLS = {
  socket: { parameters: ["i32", "i32", "i32"], result: "i32" },
  setsockopt: { parameters: ["i32", "i32", "i32", "buffer", "u32"], result: "i32" },
  sendto: { parameters: ["i32", "buffer", "usize", "i32", "buffer", "u32"], result: "isize" },
  recvmsg: { parameters: ["i32", "buffer", "i32"], result: "isize" },
  poll: { parameters: ["buffer", "u64", "i32"], result: "i32", nonblocking: true },
  shutdown: { parameters: ["i32", "i32"], result: "i32" },
  close: { parameters: ["i32"], result: "i32" },
  open: { parameters: ["buffer", "i32"], result: "i32" },
  read: { parameters: ["i32", "buffer", "usize"], result: "isize" },
  if_nametoindex: { parameters: ["buffer"], result: "u32" },
  __errno_location: { parameters: [], result: "pointer" },
  strerror: { parameters: ["i32"], result: "pointer" },
} as const;

type Libc = Deno.DynamicLibrary<typeof SYMBOLS>;

/** Why a raw ICMPv6 socket cannot be opened or used: one line for the user. */
export class Icmp6SocketError extends Error {
  /** Creates the error. */
  constructor(message: string) {
    super(message);
    this.name = "Icmp6SocketError";
  }
}

/**
 * Opens the C library `for` a purpose (`"a raw ICMPv6 socket"`); throws Icmp6SocketError saying what is
 * missing (`--allow-ffi`, Linux with glibc).
 */
function openLibc(who: string, purpose: string): Libc {
  if (Deno.build.os !== "linux") throw new Icmp6SocketError(`${who}: ${purpose} needs Linux`);
  try {
    return Deno.dlopen("libc.so.6", SYMBOLS);
  } catch (err) {
    if (err instanceof Deno.errors.NotCapable) {
      throw new Icmp6SocketError(
        `${who}: needs FFI permission for ${purpose} (run with --allow-ffi, or the compiled binary)`,
      );
    }
    throw new Icmp6SocketError(
      `${who}: cannot load the C library libc.so.6 for ${purpose} (Linux with glibc only): ${
        (err as Error).message
      }`,
    );
  }
}

const cString = (s: string) => new TextEncoder().encode(`${s}\0`);
const int32 = (v: number) => new Uint8Array(new Int32Array([v]).buffer);

function errno(lib: Libc): number {
  const p = lib.symbols.__errno_location();
  return p === null ? 0 : new Deno.UnsafePointerView(p).getInt32();
}

function strerror(lib: Libc, code: number): string {
  const p = lib.symbols.strerror(code);
  return p === null ? `errno ${code}` : Deno.UnsafePointerView.getCString(p);
}

/** A pointer to the start of `buf` as a 64-bit integer (for a struct field). */
function address(buf: ArrayBuffer): bigint {
  return BigInt(Deno.UnsafePointer.value(Deno.UnsafePointer.of(buf)));
}

/** A struct sockaddr_in6 for `addr` scoped to interface `index`. */
function sockaddr6(addr: Uint8Array, index: number): Uint8Array {
  const out = new Uint8Array(28);
  const dv = new DataView(out.buffer);
  dv.setUint16(0, AF_INET6, true);
  out.set(addr, 8);
  dv.setUint32(24, index, true);
  return out;
}

/** Options of {@linkcode Icmp6Socket.open}. */
export interface Icmp6SocketOptions {
  /** The interface name. */
  iface: string;
  /** ICMPv6 types to receive (133 Router Solicitation, 134 Router Advertisement); default none. */
  receiveTypes?: readonly number[];
  /** Multicast groups to join on the interface (ff02::2 to hear Router Solicitations). */
  groups?: readonly string[];
  /** Who opens it, the start of every error line (`"ra"`, `"probe6"`). */
  who: string;
}

/** A received packet. */
export interface Icmp6Received {
  /** The ICMPv6 message (type, code, checksum, body). */
  data: Uint8Array;
  /** The sender's address, without zone. */
  from: string;
  /** The IPv6 hop limit it arrived with (-1 if the kernel did not say). */
  hopLimit: number;
}

/** A raw ICMPv6 socket bound to one interface; see the module doc. */
export class Icmp6Socket {
  /** The interface's index. */
  readonly index: number;
  readonly #lib: Libc;
  readonly #fd: number;
  readonly #who: string;
  #closed = false;
  #polling: Promise<number> | null = null;
  #receiving = false;
  // receive buffers, allocated once: recvmsg writes through pointers to them
  readonly #pollfd = new ArrayBuffer(8);
  readonly #name = new ArrayBuffer(28);
  readonly #data = new ArrayBuffer(MAX_PACKET);
  readonly #iov = new ArrayBuffer(16);
  readonly #control = new ArrayBuffer(64);
  readonly #msghdr = new ArrayBuffer(56);

  private constructor(lib: Libc, fd: number, index: number, who: string) {
    this.#lib = lib;
    this.#fd = fd;
    this.index = index;
    this.#who = who;
    new DataView(this.#pollfd).setInt32(0, fd, true);
    new DataView(this.#pollfd).setInt16(4, POLLIN, true);
    const iov = new DataView(this.#iov);
    iov.setBigUint64(0, address(this.#data), true);
    iov.setBigUint64(8, BigInt(MAX_PACKET), true);
  }

  /**
   * Opens the socket on `opts.iface`; throws {@linkcode Icmp6SocketError} with one line: no FFI
   * permission, not Linux/glibc, not root, no such interface, or a failing socket option.
   */
  static open(opts: Icmp6SocketOptions): Icmp6Socket {
    const { who, iface } = opts;
    const groups = (opts.groups ?? []).map((group) => {
      const addr = parseIpv6(group);
      if (addr === undefined) throw new Icmp6SocketError(`${who}: not an IPv6 group: ${group}`);
      return { group, addr };
    });
    const lib = openLibc(who, "a raw ICMPv6 socket");
    const index = lib.symbols.if_nametoindex(cString(iface));
    if (index === 0) {
      lib.close();
      throw new Icmp6SocketError(`${who}: no such interface ${iface}`);
    }
    const fd = lib.symbols.socket(AF_INET6, SOCK_RAW | SOCK_CLOEXEC, IPPROTO_ICMPV6);
    if (fd < 0) {
      const code = errno(lib);
      const why = strerror(lib, code);
      lib.close();
      throw new Icmp6SocketError(
        code === EPERM || code === EACCES
          ? `${who}: cannot open a raw ICMPv6 socket: ${why}; run as root (or give the binary cap_net_raw: setcap cap_net_raw,cap_net_bind_service=+ep ./pypxe)`
          : `${who}: cannot open a raw ICMPv6 socket: ${why}`,
      );
    }
    const set = (level: number, name: number, value: Uint8Array, what: string) => {
      if (lib.symbols.setsockopt(fd, level, name, value, value.length) === 0) return;
      const why = strerror(lib, errno(lib));
      lib.symbols.close(fd);
      lib.close();
      throw new Icmp6SocketError(`${who}: raw ICMPv6 socket on ${iface}: ${what} failed: ${why}`);
    };
    set(SOL_SOCKET, SO_BINDTODEVICE, cString(iface), `binding to ${iface}`);
    set(IPPROTO_IPV6, IPV6_MULTICAST_HOPS, int32(255), "IPV6_MULTICAST_HOPS 255");
    set(IPPROTO_IPV6, IPV6_UNICAST_HOPS, int32(255), "IPV6_UNICAST_HOPS 255");
    set(IPPROTO_IPV6, IPV6_MULTICAST_LOOP, int32(0), "IPV6_MULTICAST_LOOP 0");
    set(IPPROTO_IPV6, IPV6_RECVHOPLIMIT, int32(1), "IPV6_RECVHOPLIMIT");
    // struct icmp6_filter: a set bit blocks that type
    const filter = new Uint32Array(8).fill(0xffffffff);
    for (const t of opts.receiveTypes ?? []) filter[t >> 5] &= ~(1 << (t & 31));
    set(IPPROTO_ICMPV6, ICMP6_FILTER, new Uint8Array(filter.buffer), "ICMP6_FILTER");
    for (const { group, addr } of groups) {
      const mreq = new Uint8Array(20);
      mreq.set(addr);
      new DataView(mreq.buffer).setUint32(16, index, true);
      set(IPPROTO_IPV6, IPV6_ADD_MEMBERSHIP, mreq, `joining ${group}`);
    }
    return new Icmp6Socket(lib, fd, index, who);
  }

  /** Sends `data` (an ICMPv6 message; the kernel fills in the checksum) to `to` on the interface. */
  send(data: Uint8Array, to: string): void {
    if (this.#closed) throw new Icmp6SocketError(`${this.#who}: socket closed`);
    const addr = parseIpv6(to.replace(/%.*$/, ""));
    if (addr === undefined) throw new Icmp6SocketError(`${this.#who}: not an IPv6 address: ${to}`);
    const sa = sockaddr6(addr, this.index);
    const n = this.#lib.symbols.sendto(this.#fd, data, BigInt(data.length), MSG_DONTWAIT, sa, sa.length);
    if (Number(n) < 0) {
      throw new Icmp6SocketError(`${this.#who}: sending to ${to}: ${strerror(this.#lib, errno(this.#lib))}`);
    }
  }

  /**
   * The next packet, or null once the socket is closed. One call at a time. Throws Icmp6SocketError when
   * the socket fails (not for a truncated packet, which is skipped).
   */
  async receive(): Promise<Icmp6Received | null> {
    if (this.#receiving) throw new Icmp6SocketError(`${this.#who}: receive() is already waiting`);
    this.#receiving = true;
    try {
      while (!this.#closed) {
        this.#polling = this.#lib.symbols.poll(new Uint8Array(this.#pollfd), 1n, POLL_MS);
        const ready = await this.#polling;
        this.#polling = null;
        if (this.#closed) break;
        const revents = new DataView(this.#pollfd).getInt16(6, true);
        if (ready <= 0 || (revents & POLLIN) === 0) {
          if ((revents & POLLNVAL) !== 0) throw new Icmp6SocketError(`${this.#who}: socket is gone`);
          continue;
        }
        const got = this.#recvmsg();
        if (got !== null) return got;
      }
      return null;
    } finally {
      this.#receiving = false;
    }
  }

  /** One non-blocking recvmsg; null when nothing was there or the packet was truncated. */
  #recvmsg(): Icmp6Received | null {
    const msg = new DataView(this.#msghdr);
    msg.setBigUint64(0, address(this.#name), true);
    msg.setUint32(8, 28, true);
    msg.setBigUint64(16, address(this.#iov), true);
    msg.setBigUint64(24, 1n, true);
    msg.setBigUint64(32, address(this.#control), true);
    msg.setBigUint64(40, BigInt(this.#control.byteLength), true);
    msg.setInt32(48, 0, true);
    const n = Number(this.#lib.symbols.recvmsg(this.#fd, new Uint8Array(this.#msghdr), MSG_DONTWAIT));
    if (n < 0) {
      const code = errno(this.#lib);
      if (code === EAGAIN || code === EINTR) return null;
      throw new Icmp6SocketError(`${this.#who}: receiving: ${strerror(this.#lib, code)}`);
    }
    if ((msg.getInt32(48, true) & MSG_TRUNC) !== 0) return null;
    return {
      data: new Uint8Array(this.#data, 0, n).slice(),
      from: formatIpv6(new Uint8Array(this.#name), 8),
      hopLimit: this.#hopLimit(Number(msg.getBigUint64(40, true))),
    };
  }

  /** The IPV6_HOPLIMIT control message among the first `length` bytes of the control buffer. */
  #hopLimit(length: number): number {
    const dv = new DataView(this.#control);
    for (let at = 0; at + 20 <= Math.min(length, this.#control.byteLength);) {
      const len = Number(dv.getBigUint64(at, true));
      if (len < 16) break;
      if (dv.getInt32(at + 8, true) === IPPROTO_IPV6 && dv.getInt32(at + 12, true) === IPV6_HOPLIMIT) {
        return dv.getInt32(at + 16, true);
      }
      at += (len + 7) & ~7;
    }
    return -1;
  }

  /** Stops a pending receive (it resolves null), then closes the socket and the library; never throws. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    // shutdown() on a raw socket returns ENOTCONN but still marks it shut and wakes a poll() on it
    this.#lib.symbols.shutdown(this.#fd, SHUT_RDWR);
    await this.#polling;
    this.#lib.symbols.close(this.#fd);
    this.#lib.close();
  }
}

/**
 * Reads a small kernel file (such as /proc/net/ipv6_route) through the C library: Deno refuses /proc/net
 * (a link to /proc/self/net) without --allow-all. Throws Icmp6SocketError when it cannot.
 */
export function readProcFile(path: string, who: string, maxBytes = 1 << 20): string {
  const lib = openLibc(who, `reading ${path}`);
  try {
    const fd = lib.symbols.open(cString(path), 0o2000000); // O_RDONLY | O_CLOEXEC
    if (fd < 0) throw new Icmp6SocketError(`${who}: cannot read ${path}: ${strerror(lib, errno(lib))}`);
    const chunks: Uint8Array[] = [];
    let total = 0;
    try {
      const buf = new Uint8Array(16384);
      while (total < maxBytes) {
        const n = Number(lib.symbols.read(fd, buf, BigInt(buf.length)));
        if (n < 0) throw new Icmp6SocketError(`${who}: cannot read ${path}: ${strerror(lib, errno(lib))}`);
        if (n === 0) break;
        chunks.push(buf.slice(0, n));
        total += n;
      }
    } finally {
      lib.symbols.close(fd);
    }
    const all = new Uint8Array(total);
    let at = 0;
    for (const c of chunks) {
      all.set(c, at);
      at += c.length;
    }
    return new TextDecoder().decode(all);
  } finally {
    lib.close();
  }
}
