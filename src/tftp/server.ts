/**
 * The TFTP service: the request socket (port 69 by default) turns each read request into a
 * {@linkcode Transfer} on its own socket, refuses writes and bad paths with the right ERROR, and drops
 * anything malformed with a DEBUG line. Nothing a client sends can stop the service.
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
import { getLogger } from "@logtape/logtape";
import type { BootEvents } from "../events.ts";
import { describeBindError } from "../net.ts";
import {
  isRoutineMiss,
  NetbootError,
  type NetbootFile,
  type NetbootFs,
  piPrefixFallback,
} from "../netboot/fs.ts";
import type { Service, ServiceFactory } from "../server.ts";
import { FileCache } from "./cache.ts";
import { toNetascii } from "./netascii.ts";
import {
  decodePacket,
  describePacket,
  encodePacket,
  ErrorCode,
  type RequestPacket,
  TftpDecodeError,
} from "./packet.ts";
import { MAX_BLKSIZE, negotiateOptions, TftpSession } from "./session.ts";
import { type ByteSource, fileSource, memorySource, Transfer } from "./transfer.ts";

const log = getLogger(["pypxe", "tftp"]);

/** Options of {@linkcode TftpServer}. */
export interface TftpServerOptions {
  /** Address to bind, e.g. `0.0.0.0`. */
  host: string;
  /** Request port; 0 picks a free one (tests). */
  port: number;
  netboot: NetbootFs;
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
  /** Files up to this size are kept in memory; default 4 MiB (0 disables the cache). */
  cacheFileBytes?: number;
  /** Total bytes of the in-memory cache; default 32 MiB. */
  cacheTotalBytes?: number;
  /** Largest file served in netascii mode (converted in memory); default 16 MiB. */
  netasciiMaxBytes?: number;
}

const REQUEST_BUFFER = 65536;

/** The TFTP service (RFC 1350 read-only, with RFC 2347/2348/2349/7440 options). */
export class TftpServer implements Service {
  readonly name = "tftp";
  readonly #o: TftpServerOptions;
  readonly #cache: FileCache;
  #socket: Deno.DatagramConn | null = null;
  #loop: Promise<void> | null = null;
  #port = 0;
  #stopping = false;
  /** Running and starting transfers by client `ip:port`. */
  readonly #active = new Map<string, Transfer | null>();
  readonly #tasks = new Set<Promise<void>>();

  /** Creates the service; nothing is bound until `start()`. */
  constructor(opts: TftpServerOptions) {
    this.#o = opts;
    this.#cache = new FileCache({
      maxFileBytes: opts.cacheFileBytes ?? 4 * 1024 * 1024,
      maxTotalBytes: opts.cacheTotalBytes ?? 32 * 1024 * 1024,
    });
  }

  /** The bound request port (useful with port 0). */
  get port(): number {
    return this.#port;
  }

  /** Number of transfers running now. */
  get activeTransfers(): number {
    return this.#active.size;
  }

  /** Binds the request socket; rejects with a one-line message when it cannot. */
  start(): Promise<void> {
    if (this.#socket !== null) return Promise.resolve();
    const { host, port } = this.#o;
    try {
      this.#socket = Deno.listenDatagram({ transport: "udp", hostname: host, port });
    } catch (err) {
      return Promise.reject(new Error(describeBindError(err, { service: "tftp", proto: "UDP", host, port })));
    }
    this.#port = (this.#socket.addr as Deno.NetAddr).port;
    this.#stopping = false;
    this.#loop = this.#serve(this.#socket);
    log.debug("listening on UDP {host}:{port}", { host, port: this.#port });
    return Promise.resolve();
  }

  /** Closes every socket, aborts running transfers and waits until all is released. */
  async stop(): Promise<void> {
    if (this.#socket === null) return;
    this.#stopping = true;
    const socket = this.#socket;
    this.#socket = null;
    const aborts: Promise<void>[] = [];
    for (const transfer of this.#active.values()) {
      if (transfer !== null) aborts.push(transfer.abort("server stopping"));
    }
    await Promise.allSettled(aborts);
    try {
      socket.close();
    } catch (err) {
      log.debug("close: {err}", { err: String(err) });
    }
    await this.#loop;
    this.#loop = null;
    // bounded: every task ends once its socket is closed; new ones are not started while stopping
    while (this.#tasks.size > 0) await Promise.allSettled([...this.#tasks]);
  }

  /** What the service listens on. */
  endpoints(): string[] {
    return [`UDP ${this.#o.host}:${this.#port || this.#o.port}`];
  }

  async #serve(socket: Deno.DatagramConn): Promise<void> {
    const buf = new Uint8Array(REQUEST_BUFFER);
    let errors = 0;
    while (!this.#stopping) {
      let bytes: Uint8Array;
      let from: Deno.NetAddr;
      try {
        const got = await socket.receive(buf);
        bytes = got[0];
        from = got[1] as Deno.NetAddr;
        errors = 0;
      } catch (err) {
        if (this.#stopping) return;
        if (err instanceof Deno.errors.BadResource || err instanceof Deno.errors.Interrupted) {
          log.warn("request socket closed: {err}", { err: String(err) });
          return;
        }
        log.debug("receive error: {err}", { err: String(err) });
        if (++errors > 1000) {
          log.error("request socket keeps failing, TFTP stops: {err}", { err: String(err) });
          return;
        }
        continue;
      }
      try {
        this.#onDatagram(socket, bytes, from);
      } catch (err) {
        log.warn("request from {from} failed: {err}", {
          from: `${from.hostname}:${from.port}`,
          err: String(err),
        });
      }
    }
  }

  #onDatagram(socket: Deno.DatagramConn, bytes: Uint8Array, from: Deno.NetAddr): void {
    const client = `${from.hostname}:${from.port}`;
    let packet;
    try {
      packet = decodePacket(bytes);
    } catch (err) {
      if (!(err instanceof TftpDecodeError)) throw err;
      log.debug("{client}: malformed datagram ({len} bytes) dropped: {reason}", {
        client,
        len: bytes.length,
        reason: err.message,
      });
      return;
    }
    if (packet.op === "wrq") {
      log.debug("{client}: write request for '{file}' refused", { client, file: packet.filename });
      this.#reply(socket, from, ErrorCode.ACCESS_VIOLATION, "Write requests are not allowed");
      return;
    }
    if (packet.op !== "rrq") {
      log.debug("{client}: stray {packet} to the request port dropped", {
        client,
        packet: describePacket(packet),
      });
      return;
    }
    if (this.#active.has(client)) {
      log.debug("{client}: duplicate RRQ for '{file}' ignored (transfer running)", {
        client,
        file: packet.filename,
      });
      return;
    }
    const mode = packet.mode.toLowerCase();
    if (mode !== "octet" && mode !== "netascii") {
      log.debug("{client}: mode '{mode}' refused", { client, mode: packet.mode });
      this.#reply(socket, from, ErrorCode.ILLEGAL_OPERATION, `Unsupported mode '${packet.mode}'`);
      return;
    }
    if (this.#active.size >= (this.#o.maxTransfers ?? 1000)) {
      log.warn("{client}: '{file}' refused: too many transfers", { client, file: packet.filename });
      this.#reply(socket, from, ErrorCode.NOT_DEFINED, "Server busy, try again");
      return;
    }
    log.trace("{client} <- {packet}", { client, packet: describePacket(packet) });
    this.#active.set(client, null);
    const task = this.#startTransfer(socket, packet, from, client, mode === "netascii")
      .catch((err) =>
        log.warn("{client}: '{file}' failed: {err}", { client, file: packet.filename, err: String(err) })
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
  async #resolve(name: string): Promise<NetbootFile> {
    try {
      return await this.#o.netboot.resolve(name);
    } catch (err) {
      const fallback = err instanceof NetbootError && err.code === "not-found"
        ? piPrefixFallback(name)
        : null;
      if (fallback === null) throw err;
      return await this.#o.netboot.resolve(fallback);
    }
  }

  async #startTransfer(
    socket: Deno.DatagramConn,
    request: RequestPacket,
    from: Deno.NetAddr,
    client: string,
    netascii: boolean,
  ): Promise<void> {
    let file: NetbootFile;
    try {
      file = await this.#resolve(request.filename);
    } catch (err) {
      if (!(err instanceof NetbootError)) throw err;
      const [code, text] = err.code === "forbidden"
        ? [ErrorCode.ACCESS_VIOLATION, "Access violation"]
        : [ErrorCode.FILE_NOT_FOUND, "File not found"];
      // PXELINUX probes many config names, a Raspberry Pi, shim and GRUB ask for optional files:
      // those misses are routine
      const routine = err.code === "not-found" && isRoutineMiss(request.filename);
      const line = "{client}: '{file}' refused: {reason}";
      const props = { client, file: request.filename, reason: err.message };
      if (routine || err.code !== "not-found") log.debug(line, props);
      else log.info(line, props);
      this.#reply(socket, from, code, text);
      return;
    }
    if (this.#stopping) return;
    let source: ByteSource;
    try {
      source = await this.#openSource(file, netascii);
    } catch (err) {
      log.warn("{client}: cannot read '{file}': {err}", { client, file: file.name, err: String(err) });
      this.#reply(socket, from, ErrorCode.NOT_DEFINED, "Cannot read file");
      return;
    }
    let transferSocket: Deno.DatagramConn;
    try {
      transferSocket = Deno.listenDatagram({ transport: "udp", hostname: this.#o.host, port: 0 });
    } catch (err) {
      source.close();
      log.warn("{client}: no socket for the transfer: {err}", { client, err: String(err) });
      this.#reply(socket, from, ErrorCode.NOT_DEFINED, "Server out of sockets");
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

  async #openSource(file: NetbootFile, netascii: boolean): Promise<ByteSource> {
    if (file.content !== undefined) return memorySource(netascii ? toNetascii(file.content) : file.content);
    if (netascii) {
      const limit = this.#o.netasciiMaxBytes ?? 16 * 1024 * 1024;
      if (file.size > limit) throw new Error(`netascii is limited to ${limit} bytes; ask for octet`);
      return memorySource(toNetascii(await Deno.readFile(file.path)));
    }
    if (this.#cache.accepts(file)) {
      const cached = this.#cache.get(file);
      if (cached !== null) return memorySource(cached);
      const bytes = await Deno.readFile(file.path);
      this.#cache.put(file, bytes);
      return memorySource(bytes);
    }
    return fileSource(await Deno.open(file.path, { read: true }), file.size);
  }

  /** Sends an ERROR from the request socket; failures are logged, never thrown. */
  #reply(socket: Deno.DatagramConn, to: Deno.NetAddr, code: number, message: string): void {
    if (this.#stopping) return;
    const task = socket.send(encodePacket({ op: "error", code, message }), to)
      .then(() => {}, (err) =>
        log.debug("ERROR {code} to {to} not sent: {err}", {
          code,
          to: `${to.hostname}:${to.port}`,
          err: String(err),
        }))
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
    netboot: ctx.netboot,
    events: ctx.events,
    maxBlksize: ctx.config.TFTP_MAX_BLKSIZE,
    maxWindowsize: ctx.config.TFTP_MAX_WINDOWSIZE,
  });
};
