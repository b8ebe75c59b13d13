/**
 * The I/O side of one TFTP read: its own UDP socket (the server's transfer ID), the receive loop that
 * feeds {@linkcode TftpSession}, positioned chunk reads into reusable buffers, the retransmission timer
 * and the boot events. Everything is released when the transfer ends, however it ends. The bytes it sends
 * come from a {@linkcode ByteSource} (`source.ts`).
 * @module
 */
import { errText } from "../errors.ts";
import { hostPort } from "../dual_stack.ts";
import { getLogger } from "@logtape/logtape";
import type { BootEvents } from "../events.ts";
import { encodePacket, ErrorCode, HEADER_SIZE, Opcode, TftpDecodeError, writeDataHeader } from "./packet.ts";
import { decodePacket, describePacket, type TftpPacket } from "./packet.ts";
import { describeOptions, type SessionInput, type SessionStep, TftpSession } from "./session.ts";
import type { ByteSource } from "./source.ts";

const log = getLogger(["pypxe", "tftp"]);

/** Everything a transfer is made of. */
export interface TransferOptions {
  /** Transfer id from `events.nextId()`. */
  id: number;
  socket: Deno.DatagramConn;
  client: Deno.NetAddr;
  /** The file name as normalised by the netboot tree. */
  file: string;
  source: ByteSource;
  session: TftpSession;
  events: BootEvents;
  /** Bytes per positioned read for file sources; default 256 KiB. */
  chunkBytes?: number;
}

const PROGRESS_EVERY_MS = 1000;

/** One running read transfer. `run()` resolves once the socket, file and timer are released. */
export class Transfer {
  readonly id: number;
  readonly client: Deno.NetAddr;
  readonly clientText: string;
  readonly #o: TransferOptions;
  readonly #session: TftpSession;
  readonly #socket: Deno.DatagramConn;
  readonly #source: ByteSource;
  readonly #packets: Uint8Array[] = [];
  readonly #fullViews: Uint8Array[] = [];
  readonly #oackBytes: Uint8Array | null;
  #chunk: Uint8Array;
  #chunkStart = 0;
  #chunkLen = 0;
  #timer: ReturnType<typeof setTimeout> | null = null;
  #timerAt = 0;
  #busy: Promise<void> | null = null;
  #closed = false;
  #trace = false;
  #startedAt = 0;
  #lastProgress = 0;

  /** Prepares a transfer; nothing is sent until `run()`. */
  constructor(opts: TransferOptions) {
    this.#o = opts;
    this.id = opts.id;
    this.client = opts.client;
    this.clientText = hostPort(opts.client);
    this.#session = opts.session;
    this.#socket = opts.socket;
    this.#source = opts.source;
    const { blksize, windowsize } = opts.session;
    for (let i = 0; i < windowsize; i++) {
      const pkt = new Uint8Array(HEADER_SIZE + blksize);
      this.#packets.push(pkt);
      this.#fullViews.push(pkt);
    }
    const oack = opts.session.negotiated.oack;
    this.#oackBytes = oack === null ? null : encodePacket({ op: "oack", options: oack });
    if (opts.source.bytes !== null) {
      this.#chunk = opts.source.bytes;
      this.#chunkLen = opts.source.size;
    } else {
      const want = Math.max(opts.chunkBytes ?? 64 * 1024, blksize);
      this.#chunk = new Uint8Array(Math.max(1, Math.min(want, opts.source.size)));
    }
  }

  /** Runs the transfer to its end; never rejects. */
  async run(): Promise<void> {
    const session = this.#session;
    this.#startedAt = performance.now();
    this.#lastProgress = this.#startedAt;
    const options = describeOptions(session.negotiated);
    log.trace("transfer {id}: tracing packets", () => {
      this.#trace = true;
      return { id: this.id };
    });
    this.#o.events.emit({
      kind: "transfer-start",
      service: "tftp",
      id: this.id,
      client: this.clientText,
      file: this.#o.file,
      size: session.size,
      options: options || undefined,
    });
    if (session.negotiated.ignored.length > 0) {
      log.debug("{client} {file}: ignored options {ignored}", {
        client: this.clientText,
        file: this.#o.file,
        ignored: session.negotiated.ignored.join(", "),
      });
    }
    try {
      await this.#feed({ type: "start" });
      await this.#receiveLoop();
    } catch (err) {
      log.warn("{client} {file}: transfer failed: {err}", {
        client: this.clientText,
        file: this.#o.file,
        err: errText(err),
      });
      if (session.phase !== "done") {
        session.abort(`internal error: ${errText(err)}`);
        await this.#sendQuietly(
          encodePacket({ op: "error", code: ErrorCode.NOT_DEFINED, message: "read error" }),
        );
      }
    } finally {
      if (this.#busy !== null) await this.#busy;
      this.#release();
      const ok = session.outcome === "ok";
      this.#o.events.emit({
        kind: "transfer-end",
        service: "tftp",
        id: this.id,
        client: this.clientText,
        file: this.#o.file,
        bytes: ok ? session.size : session.bytesAcked,
        ms: performance.now() - this.#startedAt,
        outcome: session.outcome ?? "aborted",
      });
    }
  }

  /** Ends the transfer now (server stopping); the client gets an ERROR. */
  async abort(reason: string): Promise<void> {
    // bounded: each wait ends when the input being handled is done
    while (this.#busy !== null) await this.#busy;
    if (this.#session.phase === "done") return;
    this.#session.abort(reason);
    await this.#sendQuietly(encodePacket({ op: "error", code: ErrorCode.NOT_DEFINED, message: reason }));
    this.#release();
  }

  async #receiveLoop(): Promise<void> {
    const buf = new Uint8Array(1024);
    const session = this.#session;
    const client = this.client;
    let socketErrors = 0;
    while (!session.finished && !this.#closed) {
      let bytes: Uint8Array;
      let from: Deno.NetAddr;
      try {
        const got = await this.#socket.receive(buf);
        bytes = got[0];
        from = got[1] as Deno.NetAddr;
      } catch (err) {
        if (this.#closed || session.finished) return;
        if (err instanceof Deno.errors.BadResource || err instanceof Deno.errors.Interrupted) throw err;
        if (++socketErrors > 100) throw err;
        log.debug("{client}: receive error {err}", { client: this.clientText, err: String(err) });
        continue;
      }
      if (from.port !== client.port || from.hostname !== client.hostname) {
        await this.#wrongTid(bytes, from);
        continue;
      }
      // hot path: a well-formed ACK
      if (bytes.length >= 4 && bytes[0] === 0 && bytes[1] === Opcode.ACK) {
        const block = (bytes[2] << 8) | bytes[3];
        if (this.#trace) log.trace("{client} <- ACK {block}", { client: this.clientText, block });
        if (this.#busy === null) {
          // synchronous step; the common case (one or more blocks already in the chunk) sends inline
          const now = performance.now();
          const step = session.ack(block, now);
          if (step.from === 0 && step.done === null) {
            if (step.timerAt !== null) this.#armTimer(step.timerAt, now);
            continue;
          }
          if (step.from > 0 && !step.retransmit && this.#inChunk(step.from, step.to)) {
            const work = this.#sendBlocks(step.from, step.to);
            this.#busy = work; // keeps the timer out while the packet buffers are in flight
            try {
              await work;
            } finally {
              this.#busy = null;
            }
            this.#afterSend(step, now);
            continue;
          }
          await this.#runStep(step, now);
          continue;
        }
        await this.#feed({ type: "ack", block });
        continue;
      }
      const packet = this.#decodeOrNull(bytes);
      if (packet === null) continue;
      if (packet.op !== "error") {
        log.debug("{client} {file}: unexpected {packet} dropped", {
          client: this.clientText,
          file: this.#o.file,
          packet: describePacket(packet),
        });
        continue;
      }
      log.debug("{client} {file}: client sent ERROR {code} '{message}'", {
        client: this.clientText,
        file: this.#o.file,
        code: packet.code,
        message: packet.message,
      });
      await this.#feed({ type: "error", code: packet.code, message: packet.message });
    }
  }

  #decodeOrNull(bytes: Uint8Array): TftpPacket | null {
    try {
      return decodePacket(bytes);
    } catch (err) {
      if (!(err instanceof TftpDecodeError)) throw err;
      log.debug("{client} {file}: malformed datagram ({len} bytes) dropped: {reason}", {
        client: this.clientText,
        file: this.#o.file,
        len: bytes.length,
        reason: err.message,
      });
      return null;
    }
  }

  async #wrongTid(bytes: Uint8Array, from: Deno.NetAddr): Promise<void> {
    log.debug("{client} {file}: datagram from unknown TID {from}", {
      client: this.clientText,
      file: this.#o.file,
      from: hostPort(from),
    });
    // never answer an ERROR with an ERROR
    if (bytes.length >= 2 && bytes[0] === 0 && bytes[1] === Opcode.ERROR) return;
    const reply = encodePacket({ op: "error", code: ErrorCode.UNKNOWN_TID, message: "Unknown transfer ID" });
    try {
      await this.#socket.send(reply, from);
    } catch (err) {
      log.debug("ERROR 5 to {from} not sent: {err}", {
        from: hostPort(from),
        err: String(err),
      });
    }
  }

  /** Serialises inputs: the receive loop and the timer never drive the session at the same time. */
  async #feed(input: SessionInput): Promise<void> {
    // bounded: each wait ends when the previous input has been handled
    while (this.#busy !== null) await this.#busy;
    if (this.#session.phase === "done" || this.#closed) return;
    const now = performance.now();
    const step = this.#session.handle(input, now);
    if (step.done === null && step.oack === false && step.from === 0) {
      if (step.timerAt !== null) this.#armTimer(step.timerAt, now);
      return;
    }
    await this.#runStep(step, now);
  }

  async #runStep(step: SessionStep, now: number): Promise<void> {
    const work = this.#perform(step, now);
    this.#busy = work;
    try {
      await work;
    } finally {
      this.#busy = null;
    }
  }

  /** True when blocks `from..to` are all in the loaded chunk. */
  #inChunk(from: number, to: number): boolean {
    const session = this.#session;
    const start = session.offsetOf(from) - this.#chunkStart;
    const end = session.offsetOf(to) + session.lengthOf(to) - this.#chunkStart;
    return start >= 0 && end <= this.#chunkLen;
  }

  #afterSend(step: SessionStep, now: number): void {
    if (step.timerAt !== null) this.#armTimer(step.timerAt, now);
    if (now - this.#lastProgress >= PROGRESS_EVERY_MS) {
      this.#lastProgress = now;
      this.#o.events.emit({
        kind: "transfer-progress",
        service: "tftp",
        id: this.id,
        bytes: this.#session.bytesAcked,
      });
    }
  }

  async #perform(step: SessionStep, now: number): Promise<void> {
    if (step.done !== null) {
      if (step.done !== "ok" && !step.done.startsWith("client error")) {
        log.debug("{client} {file}: {outcome}", {
          client: this.clientText,
          file: this.#o.file,
          outcome: step.done,
        });
      }
      this.#release();
      return;
    }
    if (step.retransmit) {
      log.debug("{client} {file}: retransmit {what}", {
        client: this.clientText,
        file: this.#o.file,
        what: step.oack ? "OACK" : `blocks ${step.from}..${step.to}`,
      });
    }
    if (step.oack) {
      try {
        await this.#socket.send(this.#oackBytes!, this.client);
      } catch (err) {
        this.#sendFailed(err);
      }
    } else await this.#sendBlocks(step.from, step.to);
    this.#afterSend(step, now);
  }

  async #sendBlocks(from: number, to: number): Promise<void> {
    const session = this.#session;
    const count = to - from + 1;
    let pending: Promise<number>[] | null = null;
    for (let i = 0; i < count; i++) {
      const block = from + i;
      const offset = session.offsetOf(block);
      const length = session.lengthOf(block);
      let rel = offset - this.#chunkStart;
      if (rel < 0 || rel + length > this.#chunkLen) {
        await this.#loadChunk(offset, length);
        rel = 0;
      }
      const pkt = this.#packets[i];
      writeDataHeader(pkt, block);
      if (length > 0) pkt.set(this.#chunk.subarray(rel, rel + length), HEADER_SIZE);
      const view = length === session.blksize ? this.#fullViews[i] : pkt.subarray(0, HEADER_SIZE + length);
      if (this.#trace) {
        log.trace("{client} -> DATA {block} ({length} bytes)", {
          client: this.clientText,
          block: block & 0xffff,
          length,
        });
      }
      const sent = this.#socket.send(view, this.client);
      if (count === 1) {
        try {
          await sent;
        } catch (err) {
          this.#sendFailed(err); // treated like a lost packet: the timer resends
        }
        return;
      }
      (pending ??= []).push(sent);
    }
    if (pending !== null) {
      for (const result of await Promise.allSettled(pending)) {
        if (result.status === "rejected") this.#sendFailed(result.reason);
      }
    }
  }

  #sendFailed(err: unknown): void {
    log.debug("{client} {file}: send failed: {err}", {
      client: this.clientText,
      file: this.#o.file,
      err: String(err),
    });
  }

  async #loadChunk(offset: number, need: number): Promise<void> {
    const want = Math.min(this.#chunk.length, this.#source.size - offset);
    const n = await this.#source.readAt(offset, this.#chunk.subarray(0, want));
    if (n < need) throw new Error(`file shrank while being sent (read ${n} of ${need} bytes at ${offset})`);
    this.#chunkStart = offset;
    this.#chunkLen = n;
  }

  #armTimer(at: number, now: number): void {
    if (this.#closed) return;
    if (this.#timer !== null) {
      if (this.#timerAt <= at) return; // fires first, then re-arms for the later deadline
      clearTimeout(this.#timer);
    }
    this.#timerAt = at;
    this.#timer = setTimeout(() => this.#onTimer(), Math.max(0, Math.ceil(at - now)));
  }

  #onTimer(): void {
    this.#timer = null;
    const deadline = this.#session.deadline;
    if (deadline === null || this.#closed) return;
    const now = performance.now();
    if (now < deadline) {
      this.#armTimer(deadline, now);
      return;
    }
    this.#feed({ type: "timeout" }).catch((err) => {
      log.warn("{client} {file}: timeout handling failed: {err}", {
        client: this.clientText,
        file: this.#o.file,
        err: String(err),
      });
      this.#session.abort(`internal error: ${String(err)}`);
      this.#release();
    });
  }

  async #sendQuietly(bytes: Uint8Array): Promise<void> {
    if (this.#closed) return;
    try {
      await this.#socket.send(bytes, this.client);
    } catch (err) {
      log.debug("{client}: ERROR not sent: {err}", { client: this.clientText, err: String(err) });
    }
  }

  /** Closes the socket, the file and the timer; safe to call more than once. */
  #release(): void {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#timer !== null) {
      clearTimeout(this.#timer);
      this.#timer = null;
    }
    try {
      this.#socket.close();
    } catch (err) {
      log.debug("socket close: {err}", { err: String(err) });
    }
    try {
      this.#source.close();
    } catch (err) {
      log.debug("file close: {err}", { err: String(err) });
    }
  }
}
