/**
 * One NBD client connection: the fixed newstyle option haggling, then the transmission phase. Requests
 * are served in arrival order, one at a time (each awaits its store I/O, so the event loop stays free),
 * while the client may keep many in flight (pipelining); replies to requests that are already buffered
 * are gathered into one socket write. Every request gets exactly one reply; a protocol violation or a
 * closed socket ends the session, never the server.
 * @module
 */
import { getLogger } from "@logtape/logtape";
import type { ByteStream } from "./io.ts";
import { LoopTurns, ReplyBuffer, StreamReader, writeAll } from "./io.ts";
import {
  commandName,
  decodeClientFlags,
  decodeExportName,
  decodeInfoRequest,
  decodeOptionHeader,
  decodeRequest,
  encodeErrorMessage,
  encodeExportNameReply,
  encodeInfoBlockSize,
  encodeInfoExport,
  encodeInfoString,
  encodeOptionReply,
  encodeServerEntry,
  encodeServerGreeting,
  NbdClientFlag,
  NbdCmd,
  NbdCmdFlag,
  NbdError,
  NbdHandshakeFlag,
  NbdInfo,
  NbdOpt,
  NbdProtocolError,
  NbdRep,
  OPTION_HEADER_SIZE,
  optionName,
  REQUEST_SIZE,
  SIMPLE_REPLY_SIZE,
  writeSimpleReply,
} from "./protocol.ts";
import { type BlockStore, NbdStoreError } from "./store.ts";

/** Largest READ or WRITE accepted (the protocol's default maximum block size). */
export const MAX_REQUEST = 32 << 20;
/** Preferred block size advertised in NBD_INFO_BLOCK_SIZE. */
export const PREFERRED_BLOCK = 4096;
/** Longest option payload read; anything longer ends the session. */
export const MAX_OPTION_PAYLOAD = 64 * 1024;
/** Most options accepted before entering transmission. */
export const MAX_OPTIONS = 1000;
/** Replies are written once this many bytes are gathered. */
const FLUSH_AT = 1 << 20;

/** An export as a session sees it. */
export interface SessionExport {
  readonly name: string;
  readonly description: string;
  readonly size: number;
  /** Transmission flags sent to the client. */
  readonly flags: number;
  /** Opens the store this connection reads and writes (a fresh overlay for copy-on-write). */
  open(): BlockStore;
  /** Releases a store returned by `open`. */
  release(store: BlockStore): void;
}

/** What a session may look up and report. */
export interface SessionHost {
  /** The export named `name` ("" is the default export), or undefined. */
  find(name: string): SessionExport | undefined;
  /** Every export, for NBD_OPT_LIST. */
  list(): readonly SessionExport[];
  /** Called when the client enters transmission. */
  onOpen(exp: SessionExport): void;
}

/** How a session ended, for the transfer-end event and the log. */
export interface SessionResult {
  /** The export used, if transmission was reached. */
  export?: SessionExport;
  /** `ok` for NBD_CMD_DISC or NBD_OPT_ABORT, else why it ended. */
  outcome: string;
  /** Bytes sent as READ data. */
  bytesRead: number;
  /** Bytes received as WRITE data. */
  bytesWritten: number;
}

/** Options of {@linkcode runSession}. */
export interface SessionOptions {
  stream: ByteStream;
  host: SessionHost;
  /** `ip:port` for log lines. */
  client: string;
  /** Called once option haggling is over (to clear the caller's handshake timer); may be called twice. */
  onHandshakeDone?: () => void;
  /** Called when the client's handshake flags have arrived (it speaks NBD; haggling begins). */
  onClientFlags?: () => void;
  /**
   * Where the per-connection lines a flood repeats go (closed before its flags, not fixed newstyle,
   * unknown export): the server rate-limits them per `kind`; `label` names the kind in a summary line.
   * `message` is plain text, not a LogTape template. Default: logged as they are.
   */
  notice?: (kind: string, level: NoticeLevel, message: string, label: string) => void;
}

/** Levels of {@linkcode SessionOptions.notice} lines. */
export type NoticeLevel = "debug" | "info" | "warn" | "error";

const log = getLogger(["pypxe", "nbd"]);

/** Logs a notice line as it is: the default when the caller does not rate-limit them. */
function logNotice(_kind: string, level: NoticeLevel, message: string): void {
  log[level](escapeTemplate(message));
}

/** Escapes LogTape's template braces, so that a client-chosen name cannot look like a placeholder. */
export function escapeTemplate(text: string): string {
  return text.replace(/[{}]/g, (c) => c + c);
}

class SessionEnd extends Error {
  constructor(readonly outcome: string) {
    super(outcome);
  }
}

/** Runs one client connection to its end; never throws. */
export async function runSession(opts: SessionOptions): Promise<SessionResult> {
  const result: SessionResult = { outcome: "ok", bytesRead: 0, bytesWritten: 0 };
  const reader = new StreamReader(opts.stream);
  const turns = new LoopTurns();
  let store: BlockStore | undefined;
  try {
    const chosen = await handshake(opts, reader);
    opts.onHandshakeDone?.();
    if (chosen === null) return result;
    result.export = chosen;
    store = chosen.open();
    opts.host.onOpen(chosen);
    await transmission(opts, reader, store, result, turns);
  } catch (err) {
    if (err instanceof SessionEnd) {
      result.outcome = err.outcome;
    } else if (err instanceof NbdProtocolError) {
      result.outcome = `protocol error: ${err.message}`;
    } else if (isSocketError(err)) {
      result.outcome = `connection lost: ${(err as Error).message}`;
    } else {
      result.outcome = `internal error: ${err instanceof Error ? err.message : String(err)}`;
      log.error("{client}: {outcome}", { client: opts.client, outcome: result.outcome });
    }
  } finally {
    turns.close();
    opts.onHandshakeDone?.();
    if (store !== undefined && result.export !== undefined) {
      try {
        result.export.release(store);
      } catch (err) {
        log.error("{client}: releasing the store failed: {err}", { client: opts.client, err: String(err) });
      }
    }
  }
  return result;
}

function isSocketError(err: unknown): boolean {
  return err instanceof Deno.errors.BrokenPipe || err instanceof Deno.errors.ConnectionReset ||
    err instanceof Deno.errors.ConnectionAborted || err instanceof Deno.errors.BadResource ||
    err instanceof Deno.errors.Interrupted || err instanceof Deno.errors.NotConnected;
}

function eofOutcome(reader: StreamReader, where: string): SessionEnd {
  const why = reader.error instanceof Error ? `: ${reader.error.message}` : "";
  return new SessionEnd(`client closed the connection ${where}${why}`);
}

/** Option haggling; returns the export to serve, or null when the client aborted. */
async function handshake(opts: SessionOptions, reader: StreamReader): Promise<SessionExport | null> {
  const { stream, host, client } = opts;
  const notice = opts.notice ?? logNotice;
  await writeAll(stream, encodeServerGreeting(NbdHandshakeFlag.FIXED_NEWSTYLE | NbdHandshakeFlag.NO_ZEROES));
  if (!(await reader.fill(4))) {
    notice(
      "no-flags",
      "info",
      `${client}: closed before sending its handshake flags (an oldstyle-only client? pypxe speaks ` +
        "fixed newstyle only)",
      "NBD connections closed before sending handshake flags",
    );
    throw eofOutcome(reader, "during the handshake");
  }
  const clientFlags = decodeClientFlags(reader.take(4));
  if ((clientFlags & NbdClientFlag.C_FIXED_NEWSTYLE) === 0) {
    notice(
      "not-newstyle",
      "warn",
      `${client}: refused: the client does not speak fixed newstyle NBD`,
      "NBD clients refused for not speaking fixed newstyle",
    );
    throw new SessionEnd("client does not support fixed newstyle");
  }
  opts.onClientFlags?.();
  const noZeroes = (clientFlags & NbdClientFlag.C_NO_ZEROES) !== 0;
  const reply = (option: number, type: number, data?: Uint8Array) =>
    writeAll(stream, encodeOptionReply({ option, type, data }));

  for (let count = 0; count < MAX_OPTIONS; count++) {
    if (!(await reader.fill(OPTION_HEADER_SIZE))) throw eofOutcome(reader, "during option haggling");
    const { option, length } = decodeOptionHeader(reader.take(OPTION_HEADER_SIZE));
    if (length > MAX_OPTION_PAYLOAD) {
      throw new NbdProtocolError(optionName(option), `payload of ${length} bytes is too long`);
    }
    const payload = new Uint8Array(length);
    if (!(await reader.readInto(payload))) throw eofOutcome(reader, "inside an option");
    log.debug("{client}: option {name} ({length} bytes)", { client, name: optionName(option), length });

    switch (option) {
      case NbdOpt.EXPORT_NAME: {
        const name = decodeExportName(payload);
        const exp = host.find(name);
        if (exp === undefined) {
          // this option has no error reply: the protocol says to drop the connection
          notice(
            "unknown-export",
            "warn",
            `${client}: unknown export ${JSON.stringify(name)}`,
            "NBD requests for unknown exports",
          );
          throw new SessionEnd(`unknown export ${JSON.stringify(name)}`);
        }
        await writeAll(stream, encodeExportNameReply(exp.size, exp.flags, noZeroes));
        return exp;
      }
      case NbdOpt.INFO:
      case NbdOpt.GO: {
        let req;
        try {
          req = decodeInfoRequest(payload);
        } catch (err) {
          if (!(err instanceof NbdProtocolError)) throw err;
          await reply(option, NbdRep.ERR_INVALID, encodeErrorMessage(err.message));
          continue;
        }
        const exp = host.find(req.name);
        if (exp === undefined) {
          await reply(option, NbdRep.ERR_UNKNOWN, encodeErrorMessage(`no export named "${req.name}"`));
          continue;
        }
        await reply(option, NbdRep.INFO, encodeInfoExport(exp.size, exp.flags));
        const infos = new Set(req.infos);
        if (infos.has(NbdInfo.NAME)) {
          await reply(option, NbdRep.INFO, encodeInfoString(NbdInfo.NAME, exp.name));
        }
        if (infos.has(NbdInfo.DESCRIPTION)) {
          await reply(option, NbdRep.INFO, encodeInfoString(NbdInfo.DESCRIPTION, exp.description));
        }
        if (infos.has(NbdInfo.BLOCK_SIZE)) {
          await reply(option, NbdRep.INFO, encodeInfoBlockSize(1, PREFERRED_BLOCK, MAX_REQUEST));
        }
        await reply(option, NbdRep.ACK);
        if (option === NbdOpt.GO) return exp;
        continue;
      }
      case NbdOpt.LIST: {
        if (length !== 0) {
          await reply(option, NbdRep.ERR_INVALID, encodeErrorMessage("NBD_OPT_LIST takes no data"));
          continue;
        }
        for (const exp of host.list()) {
          await reply(option, NbdRep.SERVER, encodeServerEntry(exp.name, exp.description));
        }
        await reply(option, NbdRep.ACK);
        continue;
      }
      case NbdOpt.ABORT: {
        try {
          await reply(option, NbdRep.ACK);
        } catch {
          // the client may close without reading the acknowledgement
        }
        return null;
      }
      default: {
        const msg = option === NbdOpt.STARTTLS
          ? "TLS is not supported"
          : `${optionName(option)} is not supported`;
        await reply(option, NbdRep.ERR_UNSUP, encodeErrorMessage(msg));
        continue;
      }
    }
  }
  throw new SessionEnd(`more than ${MAX_OPTIONS} options`);
}

const KNOWN_FLAGS: Record<number, number> = {
  [NbdCmd.READ]: NbdCmdFlag.DF,
  [NbdCmd.WRITE]: NbdCmdFlag.FUA,
  [NbdCmd.DISC]: 0,
  [NbdCmd.FLUSH]: 0,
  [NbdCmd.TRIM]: NbdCmdFlag.FUA,
  [NbdCmd.CACHE]: 0,
  [NbdCmd.WRITE_ZEROES]: NbdCmdFlag.FUA | NbdCmdFlag.NO_HOLE,
};

/** The error value for a request before any I/O, or 0 when it may run. */
function validate(type: number, flags: number, offset: number, length: number, store: BlockStore): number {
  const allowed = KNOWN_FLAGS[type];
  if (allowed === undefined || (flags & ~allowed) !== 0) return NbdError.EINVAL;
  const writes = type === NbdCmd.WRITE || type === NbdCmd.WRITE_ZEROES || type === NbdCmd.TRIM;
  if (writes && !store.writable) return NbdError.EPERM;
  if (type === NbdCmd.FLUSH || type === NbdCmd.DISC) return 0;
  if ((type === NbdCmd.READ || type === NbdCmd.WRITE) && length > MAX_REQUEST) return NbdError.EINVAL;
  if (offset + length > store.size) {
    return type === NbdCmd.WRITE || type === NbdCmd.WRITE_ZEROES ? NbdError.ENOSPC : NbdError.EINVAL;
  }
  return 0;
}

function storeErrno(err: unknown, client: string, what: string): number {
  if (err instanceof NbdStoreError) {
    if (err.errno !== NbdError.ENOSPC) {
      log.warn("{client}: {what} failed: {err}", { client, what, err: err.message });
    }
    return err.errno;
  }
  log.error("{client}: {what} failed: {err}", { client, what, err: String(err) });
  return NbdError.EIO;
}

async function transmission(
  opts: SessionOptions,
  reader: StreamReader,
  store: BlockStore,
  result: SessionResult,
  turns: LoopTurns,
): Promise<void> {
  const { stream, client } = opts;
  const out = new ReplyBuffer();
  let payload = new Uint8Array(0);
  const simple = (error: number, handle: bigint) =>
    writeSimpleReply(out.reserve(SIMPLE_REPLY_SIZE), 0, error, handle);

  // bounded by the client: each pass consumes one request or ends the session
  for (;;) {
    if (reader.buffered < REQUEST_SIZE) {
      await out.flush(stream);
      if (!(await reader.fill(REQUEST_SIZE))) {
        throw reader.buffered === 0 && reader.error === null
          ? new SessionEnd("client closed the connection without NBD_CMD_DISC")
          : eofOutcome(reader, "inside a request");
      }
    }
    const req = decodeRequest(reader.take(REQUEST_SIZE));
    const { type, flags, handle, offset, length } = req;
    const error = validate(type, flags, offset, length, store);

    if (type === NbdCmd.WRITE) {
      // the payload always follows, even when the request is refused: consume it to stay in sync
      if (error !== 0) {
        if (!(await reader.skip(length))) throw eofOutcome(reader, "inside a write payload");
        simple(error, handle);
      } else {
        let data: Uint8Array;
        if (reader.buffered >= length) {
          data = reader.take(length);
        } else {
          await out.flush(stream);
          if (payload.length < length) payload = new Uint8Array(Math.max(length, 64 * 1024));
          data = payload.subarray(0, length);
          if (!(await reader.readInto(data))) throw eofOutcome(reader, "inside a write payload");
        }
        let errno = 0;
        try {
          await store.write(offset, data);
          if (flags & NbdCmdFlag.FUA) await store.flush();
          result.bytesWritten += length;
        } catch (err) {
          errno = storeErrno(err, client, `WRITE ${length}@${offset}`);
        }
        simple(errno, handle);
      }
    } else if (error !== 0) {
      log.debug("{client}: {cmd} {length}@{offset} refused with error {error}", {
        client,
        cmd: commandName(type),
        length,
        offset,
        error,
      });
      if (type === NbdCmd.DISC) {
        await out.flush(stream);
        throw new SessionEnd("client sent NBD_CMD_DISC with flags");
      }
      simple(error, handle);
    } else {
      switch (type) {
        case NbdCmd.READ: {
          const space = out.reserve(SIMPLE_REPLY_SIZE + length);
          try {
            await store.read(offset, space.subarray(SIMPLE_REPLY_SIZE));
            writeSimpleReply(space, 0, 0, handle);
            result.bytesRead += length;
          } catch (err) {
            out.unreserve(SIMPLE_REPLY_SIZE + length);
            simple(storeErrno(err, client, `READ ${length}@${offset}`), handle);
          }
          break;
        }
        case NbdCmd.DISC:
          await out.flush(stream);
          return;
        case NbdCmd.FLUSH:
        case NbdCmd.TRIM:
        case NbdCmd.WRITE_ZEROES: {
          let errno = 0;
          try {
            if (type === NbdCmd.TRIM) await store.trim(offset, length);
            if (type === NbdCmd.WRITE_ZEROES) await store.writeZeroes(offset, length);
            if (type === NbdCmd.FLUSH || (flags & NbdCmdFlag.FUA)) await store.flush();
          } catch (err) {
            errno = storeErrno(err, client, `${commandName(type)} ${length}@${offset}`);
          }
          simple(errno, handle);
          break;
        }
        case NbdCmd.CACHE:
          simple(0, handle);
          break;
      }
    }
    if (out.length >= FLUSH_AT) await out.flush(stream);
    const turn = turns.check();
    if (turn !== undefined) await turn;
  }
}
