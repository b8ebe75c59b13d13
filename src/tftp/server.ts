/**
 * The TFTP service: each datagram on the request socket (port 69 by default, kept alive by
 * {@linkcode RequestSocket}) that is a read request becomes a {@linkcode Transfer} on its own socket;
 * writes and bad paths are refused with the right ERROR, anything malformed is dropped with a DEBUG line.
 * Nothing a client sends can stop the service. With `ipv6` it serves IPv6 too, on the request sockets of
 * `dual_stack.ts`'s bind plan; an IPv6 client's transfer gets an IPv6 socket, an IPv4 client (also one
 * that reached a dual-stack `::` socket) an IPv4 one, and is named as plain IPv4.
 *
 * @example
 * ```ts
 * const tftp = new TftpServer({ host: "0.0.0.0", port: 69, netboot, events });
 * await tftp.start();
 * // ...
 * await tftp.stop();
 * ```
 * @module
 */
import { errText } from "../errors.ts";
import { getLogger } from "@logtape/logtape";
import type { BootEvents } from "../events.ts";
import { literal, LogThrottle, type ThrottledLevel } from "../log_throttle.ts";
import { describeBindError } from "../net.ts";
import {
  bindAll,
  BindFailure,
  type BindPlan,
  bindPlan,
  type BindSpec,
  bracketHost,
  hostPort,
  isMapped,
  plainAddr,
} from "../dual_stack.ts";
import {
  isRoutineMiss,
  NetbootError,
  type NetbootFile,
  type NetbootFs,
  piPrefixFallback,
} from "../netboot/fs.ts";
import type { Service, ServiceFactory } from "../server.ts";
import { BootFiles } from "../netboot/files.ts";
import {
  decodePacket,
  describePacket,
  encodePacket,
  ErrorCode,
  type RequestPacket,
  TftpDecodeError,
} from "./packet.ts";
import { MAX_BLKSIZE, negotiateOptions, TftpSession } from "./session.ts";
import { type ListenDatagram, RequestSocket } from "./request_socket.ts";
import { type ByteSource, openSource } from "./source.ts";
import { Transfer } from "./transfer.ts";

const log = getLogger(["pypxe", "tftp"]);

export type { ListenDatagram } from "./request_socket.ts";

/** Options of {@linkcode TftpServer}. */
export interface TftpServerOptions {
  /** Address to bind, e.g. `0.0.0.0`. */
  host: string;
  /** Request port; 0 picks a free one (tests). */
  port: number;
  /** Also serve IPv6 (`--ipv6`): on `::`, or on `host6` beside a specific `host`; default false. */
  ipv6?: boolean;
  /** The server's IPv6 address (DHCP6_SERVER_IP), bound beside a specific IPv4 `host`; "" = `::`. */
  host6?: string;
  netboot: NetbootFs;
  /**
   * The served view of the tree (lookups, generated menus, small files in memory), shared with HTTP so
   * a name reads the same over both; default: one made from `netboot` and the cache options below.
   */
  files?: BootFiles;
  events: BootEvents;
  /** Largest blksize granted; default 65464. */
  maxBlksize?: number;
  /** Largest windowsize granted; default 64. */
  maxWindowsize?: number;
  /** Retransmission timeout without a `timeout` option; default 1000 ms. */
  defaultTimeoutMs?: number;
  /** Retransmissions before a transfer is dropped; default 6. */
  maxRetries?: number;
  /** Transfers running at once; further requests get ERROR 0; default 1000. */
  maxTransfers?: number;
  /** Without `files`: files up to this size are kept in memory; default 4 MiB (0 disables it). */
  cacheFileBytes?: number;
  /** Without `files`: total bytes kept in memory; default 64 MiB. */
  cacheTotalBytes?: number;
  /** Largest file served in netascii mode (converted in memory); default 16 MiB. */
  netasciiMaxBytes?: number;
  /** Opens the request and transfer sockets; default `Deno.listenDatagram` (tests inject failures). */
  listenDatagram?: ListenDatagram;
}

/** The TFTP service (RFC 1350 read-only, with RFC 2347/2348/2349/7440 options). */
export class TftpServer implements Service {
  readonly name = "tftp";
  readonly #o: TftpServerOptions;
  readonly #files: BootFiles;
  readonly #listen: ListenDatagram;
  /** The sockets to bind (one unless `ipv6`; see dual_stack.ts). */
  readonly #plan: BindPlan;
  /** The bound request sockets with what they are for; empty until `start()`. */
  #requests: { spec: BindSpec; socket: RequestSocket }[] = [];
  #port = 0;
  #stopping = false;
  /** Per-packet warnings: one line per kind per 10 s, then a count. */
  readonly #throttle = new LogThrottle({ log });
  /** Running and starting transfers by client `ip:port`. */
  readonly #active = new Map<string, Transfer | null>();
  readonly #tasks = new Set<Promise<void>>();

  /** Creates the service; nothing is bound until `start()`. */
  constructor(opts: TftpServerOptions) {
    this.#o = opts;
    this.#listen = opts.listenDatagram ?? ((o) => Deno.listenDatagram(o));
    this.#files = opts.files ?? new BootFiles({
      netboot: opts.netboot,
      cacheFileMax: opts.cacheFileBytes,
      cacheTotalMax: opts.cacheTotalBytes,
    });
    this.#plan = bindPlan(opts.host, opts.ipv6 ?? false, opts.host6 ?? "");
  }

  /** The bound request port (useful with port 0). */
  get port(): number {
    return this.#port;
  }

  /** Number of transfers running now. */
  get activeTransfers(): number {
    return this.#active.size;
  }

  /** Binds the request socket(s); rejects with a one-line message when it cannot. */
  start(): Promise<void> {
    if (this.#requests.length > 0) return Promise.resolve();
    const { port } = this.#o;
    let bound;
    try {
      bound = bindAll(this.#plan, port, {
        open: (hostname, port, reuse) => this.#listenOn(hostname, port, reuse),
        portOf: (socket) => (socket.addr as Deno.NetAddr).port,
        close: (socket) => socket.close(),
      });
    } catch (err) {
      const [host, cause] = err instanceof BindFailure
        ? [bracketHost(err.host), err.cause]
        : [this.#o.host, err];
      return Promise.reject(
        new Error(describeBindError(cause, { service: "tftp", proto: "UDP", host, port })),
      );
    }
    this.#port = bound.port;
    this.#stopping = false;
    for (const { spec, socket: first } of bound.bound) {
      let adopt: Deno.DatagramConn | null = first;
      const requests: RequestSocket = new RequestSocket({
        host: spec.host,
        port: bound.port,
        // the first open() takes the socket bound above; a re-bind after a loss binds the same way
        listen: (o) => {
          const socket = adopt ?? this.#listenOn(o.hostname ?? spec.host, o.port ?? bound.port, spec.reuse);
          adopt = null;
          return socket;
        },
        note: (kind, level, message, label) => this.#note(kind, level, message, label),
        onDatagram: (bytes, from) => this.#onDatagram(bytes, from, spec, requests),
      });
      requests.open();
      this.#requests.push({ spec, socket: requests });
      log.debug("listening on UDP {host}:{port}", { host: bracketHost(spec.host), port: bound.port });
    }
    return Promise.resolve();
  }

  /** Closes every socket, aborts running transfers and waits until all is released. */
  async stop(): Promise<void> {
    if (this.#requests.length === 0) return;
    this.#stopping = true;
    for (const r of this.#requests) r.socket.halt();
    const aborts: Promise<void>[] = [];
    for (const transfer of this.#active.values()) {
      if (transfer !== null) aborts.push(transfer.abort("server stopping"));
    }
    await Promise.allSettled(aborts);
    await Promise.allSettled(this.#requests.map((r) => r.socket.close()));
    this.#requests = [];
    // bounded: every task ends once its socket is closed; new ones are not started while stopping
    while (this.#tasks.size > 0) await Promise.allSettled([...this.#tasks]);
    this.#throttle.close();
  }

  /** What the service listens on (`UDP 0.0.0.0:69`, plus `UDP [::]:69` with IPv6). */
  endpoints(): string[] {
    const port = this.#port || this.#o.port;
    const list = [`UDP ${this.#o.host}:${port}`];
    if (this.#plan.host6 !== "") list.push(`UDP ${bracketHost(this.#plan.host6)}:${port}`);
    return list;
  }

  /** Opens a UDP socket, with port reuse when the bind plan needs it. */
  #listenOn(hostname: string, port: number, reuse: boolean): Deno.DatagramConn {
    return this.#listen(
      reuse ? { transport: "udp", hostname, port, reuseAddress: true } : { transport: "udp", hostname, port },
    );
  }

  /** Logs through the throttle; `message` is plain text (braces are escaped). */
  #note(kind: string, level: ThrottledLevel, message: () => string, label?: string): void {
    this.#throttle.note(kind, level, () => literal(message()), label);
  }

  #onDatagram(bytes: Uint8Array, raw: Deno.NetAddr, spec: BindSpec, via: RequestSocket): void {
    if (spec.refuseMapped && isMapped(raw.hostname)) {
      // an IPv4 client of an address this service does not bind, reaching the `::` socket
      this.#note(
        "not-bound",
        "debug",
        () => `${hostPort(raw)}: datagram to an IPv4 address other than ${this.#o.host} dropped`,
        "datagrams to unserved IPv4 addresses dropped",
      );
      return;
    }
    const from = plainAddr(raw);
    const client = hostPort(from);
    let packet;
    try {
      packet = decodePacket(bytes);
    } catch (err) {
      if (!(err instanceof TftpDecodeError)) throw err;
      this.#note(
        "malformed",
        "debug",
        () => `${client}: malformed datagram (${bytes.length} bytes) dropped: ${err.message}`,
        "malformed datagrams dropped",
      );
      return;
    }
    if (packet.op === "wrq") {
      this.#note(
        "wrq",
        "debug",
        () => `${client}: write request for '${packet.filename}' refused`,
        "write requests refused",
      );
      this.#reply(via, from, ErrorCode.ACCESS_VIOLATION, "Write requests are not allowed");
      return;
    }
    if (packet.op !== "rrq") {
      this.#note(
        "stray",
        "debug",
        () => `${client}: stray ${describePacket(packet)} to the request port dropped`,
        "stray packets to the request port dropped",
      );
      return;
    }
    if (this.#active.has(client)) {
      this.#note(
        "duplicate",
        "debug",
        () => `${client}: duplicate RRQ for '${packet.filename}' ignored (transfer running)`,
        "duplicate RRQs ignored",
      );
      return;
    }
    const mode = packet.mode.toLowerCase();
    if (mode !== "octet" && mode !== "netascii") {
      this.#note(
        "mode",
        "debug",
        () => `${client}: mode '${packet.mode}' refused`,
        "RRQs with a bad mode refused",
      );
      this.#reply(via, from, ErrorCode.ILLEGAL_OPERATION, `Unsupported mode '${packet.mode}'`);
      return;
    }
    const max = this.#o.maxTransfers ?? 1000;
    if (this.#active.size >= max) {
      this.#note(
        "busy",
        "warn",
        () => `${client}: '${packet.filename}' refused: too many transfers (${max} running)`,
        "RRQs refused (too many transfers)",
      );
      this.#reply(via, from, ErrorCode.NOT_DEFINED, "Server busy, try again");
      return;
    }
    log.trace("{client} <- {packet}", { client, packet: describePacket(packet) });
    this.#active.set(client, null);
    const task = this.#startTransfer(packet, from, client, mode === "netascii", spec, via)
      .catch((err) =>
        this.#note(
          "failed",
          "warn",
          () => `${client}: '${packet.filename}' failed: ${errText(err)}`,
          "transfers failed to start",
        )
      )
      .finally(() => {
        this.#active.delete(client);
        this.#tasks.delete(task);
      });
    this.#tasks.add(task);
  }

  /**
   * Resolves a requested name; a Raspberry Pi's `<serial>/file` or `<MAC>/file` falls back to `file`
   * in the root when that directory does not exist.
   */
  async #resolve(name: string, clientIp: string): Promise<NetbootFile> {
    try {
      return await this.#files.resolve(name, clientIp);
    } catch (err) {
      const fallback = err instanceof NetbootError && err.code === "not-found"
        ? piPrefixFallback(name)
        : null;
      if (fallback === null) throw err;
      return await this.#files.resolve(fallback, clientIp);
    }
  }

  async #startTransfer(
    request: RequestPacket,
    from: Deno.NetAddr,
    client: string,
    netascii: boolean,
    spec: BindSpec,
    via: RequestSocket,
  ): Promise<void> {
    let file: NetbootFile;
    try {
      file = await this.#resolve(request.filename, from.hostname);
    } catch (err) {
      if (!(err instanceof NetbootError)) throw err;
      const [code, text] = err.code === "forbidden"
        ? [ErrorCode.ACCESS_VIOLATION, "Access violation"]
        : err.code === "unavailable"
        ? [ErrorCode.NOT_DEFINED, "Cannot fetch the file from its origin"]
        : [ErrorCode.FILE_NOT_FOUND, "File not found"];
      // PXELINUX probes many config names, a Raspberry Pi, shim and GRUB ask for optional files:
      // those misses are routine
      const routine = err.code === "not-found" && isRoutineMiss(request.filename);
      const line = "{client}: '{file}' refused: {reason}";
      const props = { client, file: request.filename, reason: err.message };
      if (err.code === "unavailable") log.warn(line, props);
      else if (routine || err.code !== "not-found") log.debug(line, props);
      else log.info(line, props);
      this.#reply(via, from, code, text);
      const reason = err.code === "forbidden" ? "forbidden" : "not-found";
      this.#o.events.emit({
        kind: "file-refused",
        service: "tftp",
        client,
        file: request.filename,
        reason,
        routine,
      });
      return;
    }
    if (this.#stopping) {
      file.remote?.close();
      return;
    }
    let source: ByteSource;
    try {
      source = await openSource(file, {
        files: this.#files,
        netascii,
        netasciiMaxBytes: this.#o.netasciiMaxBytes,
      });
    } catch (err) {
      this.#note(
        "read",
        "warn",
        () => `${client}: cannot read '${file.name}': ${errText(err)}`,
        "RRQs refused (cannot read the file)",
      );
      this.#reply(via, from, ErrorCode.NOT_DEFINED, "Cannot read file");
      return;
    }
    let transferSocket: Deno.DatagramConn;
    try {
      // an IPv6 client gets an IPv6 socket (on the address it reached); an IPv4 one the IPv4 host's
      const hostname = from.hostname.includes(":") ? spec.host : this.#o.host;
      transferSocket = this.#listen({ transport: "udp", hostname, port: 0 });
    } catch (err) {
      source.close();
      this.#note(
        "no-socket",
        "warn",
        () => `${client}: no socket for the transfer: ${errText(err)}`,
        "RRQs refused (no socket for the transfer)",
      );
      this.#reply(via, from, ErrorCode.NOT_DEFINED, "Server out of sockets");
      return;
    }
    if (this.#stopping) {
      source.close();
      transferSocket.close();
      return;
    }
    const negotiated = negotiateOptions(request.options, source.size, {
      maxBlksize: this.#o.maxBlksize ?? MAX_BLKSIZE,
      maxWindowsize: this.#o.maxWindowsize ?? 64,
      defaultTimeoutMs: this.#o.defaultTimeoutMs,
    });
    const session = new TftpSession({ size: source.size, negotiated, maxRetries: this.#o.maxRetries });
    const transfer = new Transfer({
      id: this.#o.events.nextId(),
      socket: transferSocket,
      client: from,
      file: file.name,
      source,
      session,
      events: this.#o.events,
    });
    this.#active.set(client, transfer);
    await transfer.run();
  }

  /** Sends an ERROR from request socket `via`; failures are logged, never thrown. */
  #reply(via: RequestSocket, to: Deno.NetAddr, code: number, message: string): void {
    const socket = via.socket;
    if (this.#stopping || socket === null) return;
    const task = socket.send(encodePacket({ op: "error", code, message }), to)
      .then(() => {}, (err) =>
        this.#note(
          "reply",
          "debug",
          () => `ERROR ${code} to ${hostPort(to)} not sent: ${errText(err)}`,
          "ERROR replies not sent",
        ))
      .finally(() => this.#tasks.delete(task));
    this.#tasks.add(task);
  }
}

/** Builds the TFTP service from the config, or returns null when `USE_TFTP` is off. */
export const createTftpService: ServiceFactory = (ctx) => {
  if (!ctx.config.USE_TFTP) return null;
  return new TftpServer({
    host: ctx.config.TFTP_SERVER_IP,
    port: ctx.config.TFTP_PORT,
    ipv6: ctx.config.USE_IPV6,
    host6: ctx.config.DHCP6_SERVER_IP,
    netboot: ctx.netboot,
    files: ctx.files,
    events: ctx.events,
    maxBlksize: ctx.config.TFTP_MAX_BLKSIZE,
    maxWindowsize: ctx.config.TFTP_MAX_WINDOWSIZE,
    maxTransfers: ctx.caps?.tftp,
  });
};
