/**
 * NBD wire format (fixed newstyle handshake and transmission), per the NBD protocol document
 * (https://github.com/NetworkBlockDevice/nbd/blob/master/doc/proto.md). Pure codecs: no sockets, no
 * clocks, no logging. Every decoder throws {@linkcode NbdProtocolError} naming the field and the reason.
 * The file is long because it is the whole codec, both sides of the handshake and of transmission with the
 * constants they share, so an encoder and its decoder always read side by side.
 *
 * @example
 * ```ts
 * const req = decodeRequest(encodeRequest({ flags: 0, type: NbdCmd.READ, handle: 7n, offset: 0, length: 512 }));
 * ```
 * @module
 */

/** `NBDMAGIC`, the first 8 bytes the server sends. */
export const NBD_MAGIC = 0x4e42444d41474943n;
/** `IHAVEOPT`: the newstyle magic, also prefixed to every option request. */
export const NBD_OPTS_MAGIC = 0x49484156454f5054n;
/** Prefix of every option reply. */
export const NBD_REP_MAGIC = 0x0003e889045565a9n;
/** Prefix of every transmission request. */
export const NBD_REQUEST_MAGIC = 0x25609513;
/** Prefix of every simple reply. */
export const NBD_SIMPLE_REPLY_MAGIC = 0x67446698;

/** Bytes of a transmission request header. */
export const REQUEST_SIZE = 28;
/** Bytes of a simple reply header. */
export const SIMPLE_REPLY_SIZE = 16;
/** Bytes of an option request header (magic, option, length). */
export const OPTION_HEADER_SIZE = 16;
/** Longest string (export name, description) the protocol allows. */
export const MAX_STRING = 4096;

/** Handshake flags (server). */
export const NbdHandshakeFlag = { FIXED_NEWSTYLE: 1 << 0, NO_ZEROES: 1 << 1 } as const;
/** Client flags. */
export const NbdClientFlag = { C_FIXED_NEWSTYLE: 1 << 0, C_NO_ZEROES: 1 << 1 } as const;

/** Option request types. */
export const NbdOpt = {
  EXPORT_NAME: 1,
  ABORT: 2,
  LIST: 3,
  PEEK_EXPORT: 4,
  STARTTLS: 5,
  INFO: 6,
  GO: 7,
  STRUCTURED_REPLY: 8,
  LIST_META_CONTEXT: 9,
  SET_META_CONTEXT: 10,
  EXTENDED_HEADERS: 11,
} as const;

const ERR = 0x80000000;
/** Option reply types. */
export const NbdRep = {
  ACK: 1,
  SERVER: 2,
  INFO: 3,
  META_CONTEXT: 4,
  ERR_UNSUP: ERR + 1,
  ERR_POLICY: ERR + 2,
  ERR_INVALID: ERR + 3,
  ERR_PLATFORM: ERR + 4,
  ERR_TLS_REQD: ERR + 5,
  ERR_UNKNOWN: ERR + 6,
  ERR_SHUTDOWN: ERR + 7,
  ERR_BLOCK_SIZE_REQD: ERR + 8,
  ERR_TOO_BIG: ERR + 9,
} as const;

/** `NBD_REP_INFO` item types. */
export const NbdInfo = { EXPORT: 0, NAME: 1, DESCRIPTION: 2, BLOCK_SIZE: 3 } as const;

/** Transmission flags. */
export const NbdFlag = {
  HAS_FLAGS: 1 << 0,
  READ_ONLY: 1 << 1,
  SEND_FLUSH: 1 << 2,
  SEND_FUA: 1 << 3,
  ROTATIONAL: 1 << 4,
  SEND_TRIM: 1 << 5,
  SEND_WRITE_ZEROES: 1 << 6,
  SEND_DF: 1 << 7,
  CAN_MULTI_CONN: 1 << 8,
  SEND_RESIZE: 1 << 9,
  SEND_CACHE: 1 << 10,
  SEND_FAST_ZERO: 1 << 11,
} as const;

/** Command flags. */
export const NbdCmdFlag = {
  FUA: 1 << 0,
  NO_HOLE: 1 << 1,
  DF: 1 << 2,
  REQ_ONE: 1 << 3,
  FAST_ZERO: 1 << 4,
} as const;

/** Command types. */
export const NbdCmd = {
  READ: 0,
  WRITE: 1,
  DISC: 2,
  FLUSH: 3,
  TRIM: 4,
  CACHE: 5,
  WRITE_ZEROES: 6,
  BLOCK_STATUS: 7,
  RESIZE: 8,
} as const;

/** Error values of replies. */
export const NbdError = {
  EPERM: 1,
  EIO: 5,
  ENOMEM: 12,
  EINVAL: 22,
  ENOSPC: 28,
  EOVERFLOW: 75,
  ENOTSUP: 95,
  ESHUTDOWN: 108,
} as const;

/** A malformed or unexpected NBD message. */
export class NbdProtocolError extends Error {
  /** Which field was wrong, e.g. `option magic`. */
  readonly field: string;
  /** Creates the error for `field` with a human `reason`. */
  constructor(field: string, reason: string) {
    super(`${field}: ${reason}`);
    this.name = "NbdProtocolError";
    this.field = field;
  }
}

const encoder = new TextEncoder();
const decoder = new TextDecoder("utf-8", { fatal: true });

function view(b: Uint8Array): DataView {
  return new DataView(b.buffer, b.byteOffset, b.byteLength);
}

function need(b: Uint8Array, n: number, what: string): void {
  if (b.length < n) throw new NbdProtocolError(what, `${b.length} bytes, need ${n}`);
}

/** Reads a 64-bit big-endian unsigned number as a JS number (exact below 2^53, larger values saturate). */
export function getU64(dv: DataView, at: number): number {
  return dv.getUint32(at) * 4294967296 + dv.getUint32(at + 4);
}

/** Writes a non-negative integer as 64-bit big-endian. */
export function setU64(dv: DataView, at: number, value: number): void {
  dv.setUint32(at, Math.floor(value / 4294967296));
  dv.setUint32(at + 4, value >>> 0);
}

function decodeString(b: Uint8Array, what: string): string {
  if (b.length > MAX_STRING) throw new NbdProtocolError(what, `${b.length} bytes, longer than ${MAX_STRING}`);
  let s: string;
  try {
    s = decoder.decode(b);
  } catch {
    throw new NbdProtocolError(what, "not valid UTF-8");
  }
  if (s.includes("\0")) throw new NbdProtocolError(what, "contains NUL");
  return s;
}

/** The 18-byte server greeting: NBDMAGIC, IHAVEOPT, handshake flags. */
export function encodeServerGreeting(flags: number): Uint8Array {
  const out = new Uint8Array(18);
  const dv = view(out);
  dv.setBigUint64(0, NBD_MAGIC);
  dv.setBigUint64(8, NBD_OPTS_MAGIC);
  dv.setUint16(16, flags);
  return out;
}

/** Decodes the 18-byte server greeting (client side; tests). */
export function decodeServerGreeting(b: Uint8Array): { flags: number } {
  need(b, 18, "server greeting");
  const dv = view(b);
  if (dv.getBigUint64(0) !== NBD_MAGIC) throw new NbdProtocolError("server magic", "not NBDMAGIC");
  if (dv.getBigUint64(8) !== NBD_OPTS_MAGIC) throw new NbdProtocolError("newstyle magic", "not IHAVEOPT");
  return { flags: dv.getUint16(16) };
}

/** The 4-byte client flags. */
export function encodeClientFlags(flags: number): Uint8Array {
  const out = new Uint8Array(4);
  view(out).setUint32(0, flags);
  return out;
}

/** Decodes the client flags and checks that every bit is known (the spec says: otherwise disconnect). */
export function decodeClientFlags(b: Uint8Array): number {
  need(b, 4, "client flags");
  const flags = view(b).getUint32(0);
  const known = NbdClientFlag.C_FIXED_NEWSTYLE | NbdClientFlag.C_NO_ZEROES;
  if ((flags & ~known) !== 0) {
    throw new NbdProtocolError("client flags", `unknown bits 0x${(flags & ~known).toString(16)}`);
  }
  return flags;
}

/** An option request header. */
export interface OptionHeader {
  readonly option: number;
  readonly length: number;
}

/** Encodes an option request: IHAVEOPT, option, length, payload. */
export function encodeOption(option: number, payload: Uint8Array = new Uint8Array(0)): Uint8Array {
  const out = new Uint8Array(OPTION_HEADER_SIZE + payload.length);
  const dv = view(out);
  dv.setBigUint64(0, NBD_OPTS_MAGIC);
  dv.setUint32(8, option);
  dv.setUint32(12, payload.length);
  out.set(payload, OPTION_HEADER_SIZE);
  return out;
}

/** Decodes the 16-byte option header; a wrong magic is a fatal protocol error. */
export function decodeOptionHeader(b: Uint8Array): OptionHeader {
  need(b, OPTION_HEADER_SIZE, "option header");
  const dv = view(b);
  if (dv.getBigUint64(0) !== NBD_OPTS_MAGIC) {
    throw new NbdProtocolError("option magic", `0x${dv.getBigUint64(0).toString(16)} is not IHAVEOPT`);
  }
  return { option: dv.getUint32(8), length: dv.getUint32(12) };
}

/** Decodes the NBD_OPT_EXPORT_NAME payload (the whole payload is the name). */
export function decodeExportName(payload: Uint8Array): string {
  return decodeString(payload, "export name");
}

/** An NBD_OPT_INFO / NBD_OPT_GO request. */
export interface InfoRequest {
  readonly name: string;
  readonly infos: number[];
}

/** Encodes an NBD_OPT_INFO / NBD_OPT_GO payload. */
export function encodeInfoRequest(req: InfoRequest): Uint8Array {
  const name = encoder.encode(req.name);
  const out = new Uint8Array(4 + name.length + 2 + 2 * req.infos.length);
  const dv = view(out);
  dv.setUint32(0, name.length);
  out.set(name, 4);
  dv.setUint16(4 + name.length, req.infos.length);
  req.infos.forEach((t, i) => dv.setUint16(6 + name.length + 2 * i, t));
  return out;
}

/** Decodes an NBD_OPT_INFO / NBD_OPT_GO payload; lengths must add up exactly. */
export function decodeInfoRequest(payload: Uint8Array): InfoRequest {
  need(payload, 6, "info request");
  const dv = view(payload);
  const nameLen = dv.getUint32(0);
  if (nameLen > payload.length - 6) {
    throw new NbdProtocolError("info request name length", `${nameLen} exceeds the payload`);
  }
  const name = decodeString(payload.subarray(4, 4 + nameLen), "export name");
  const count = dv.getUint16(4 + nameLen);
  if (payload.length !== 6 + nameLen + 2 * count) {
    throw new NbdProtocolError(
      "info request",
      `payload is ${payload.length} bytes, ${count} info requests need ${6 + nameLen + 2 * count}`,
    );
  }
  const infos: number[] = [];
  for (let i = 0; i < count; i++) infos.push(dv.getUint16(6 + nameLen + 2 * i));
  return { name, infos };
}

/** An option reply. */
export interface OptionReply {
  readonly option: number;
  readonly type: number;
  readonly data?: Uint8Array;
}

/** Encodes an option reply: magic, option, reply type, length, data. */
export function encodeOptionReply(reply: OptionReply): Uint8Array {
  const data = reply.data ?? new Uint8Array(0);
  const out = new Uint8Array(20 + data.length);
  const dv = view(out);
  dv.setBigUint64(0, NBD_REP_MAGIC);
  dv.setUint32(8, reply.option);
  dv.setUint32(12, reply.type);
  dv.setUint32(16, data.length);
  out.set(data, 20);
  return out;
}

/** Decodes the 20-byte option reply header (client side; tests). Returns the data length to read next. */
export function decodeOptionReplyHeader(b: Uint8Array): { option: number; type: number; length: number } {
  need(b, 20, "option reply");
  const dv = view(b);
  if (dv.getBigUint64(0) !== NBD_REP_MAGIC) throw new NbdProtocolError("option reply magic", "wrong");
  return { option: dv.getUint32(8), type: dv.getUint32(12), length: dv.getUint32(16) };
}

/** An error reply's data: an optional human-readable message. */
export function encodeErrorMessage(message: string): Uint8Array {
  return encoder.encode(message.slice(0, MAX_STRING));
}

/** NBD_REP_SERVER data for NBD_OPT_LIST: name length, name, then the description. */
export function encodeServerEntry(name: string, description = ""): Uint8Array {
  const n = encoder.encode(name);
  const d = encoder.encode(description);
  const out = new Uint8Array(4 + n.length + d.length);
  view(out).setUint32(0, n.length);
  out.set(n, 4);
  out.set(d, 4 + n.length);
  return out;
}

/** Decodes NBD_REP_SERVER data (client side; tests). */
export function decodeServerEntry(data: Uint8Array): { name: string; description: string } {
  need(data, 4, "server entry");
  const len = view(data).getUint32(0);
  if (len > data.length - 4) throw new NbdProtocolError("server entry name length", "exceeds the data");
  return {
    name: decodeString(data.subarray(4, 4 + len), "export name"),
    description: decodeString(data.subarray(4 + len), "export description"),
  };
}

/** NBD_INFO_EXPORT: type, size, transmission flags. */
export function encodeInfoExport(size: number, flags: number): Uint8Array {
  const out = new Uint8Array(12);
  const dv = view(out);
  dv.setUint16(0, NbdInfo.EXPORT);
  setU64(dv, 2, size);
  dv.setUint16(10, flags);
  return out;
}

/** NBD_INFO_NAME or NBD_INFO_DESCRIPTION: type, string. */
export function encodeInfoString(
  type: typeof NbdInfo.NAME | typeof NbdInfo.DESCRIPTION,
  s: string,
): Uint8Array {
  const b = encoder.encode(s);
  const out = new Uint8Array(2 + b.length);
  view(out).setUint16(0, type);
  out.set(b, 2);
  return out;
}

/** NBD_INFO_BLOCK_SIZE: minimum, preferred and maximum block sizes. */
export function encodeInfoBlockSize(min: number, preferred: number, max: number): Uint8Array {
  const out = new Uint8Array(14);
  const dv = view(out);
  dv.setUint16(0, NbdInfo.BLOCK_SIZE);
  dv.setUint32(2, min);
  dv.setUint32(6, preferred);
  dv.setUint32(10, max);
  return out;
}

/** A decoded NBD_REP_INFO item (client side; tests). */
export type InfoItem =
  | { type: 0; size: number; flags: number }
  | { type: 1 | 2; text: string }
  | { type: 3; min: number; preferred: number; max: number }
  | { type: number };

/** Decodes NBD_REP_INFO data. */
export function decodeInfoItem(data: Uint8Array): InfoItem {
  need(data, 2, "info item");
  const dv = view(data);
  const type = dv.getUint16(0);
  if (type === NbdInfo.EXPORT) {
    need(data, 12, "NBD_INFO_EXPORT");
    return { type, size: getU64(dv, 2), flags: dv.getUint16(10) };
  }
  if (type === NbdInfo.NAME || type === NbdInfo.DESCRIPTION) {
    return { type, text: decodeString(data.subarray(2), "info string") };
  }
  if (type === NbdInfo.BLOCK_SIZE) {
    need(data, 14, "NBD_INFO_BLOCK_SIZE");
    return { type, min: dv.getUint32(2), preferred: dv.getUint32(6), max: dv.getUint32(10) };
  }
  return { type };
}

/** The reply to NBD_OPT_EXPORT_NAME: size, flags, and 124 zero bytes unless NO_ZEROES was agreed. */
export function encodeExportNameReply(size: number, flags: number, noZeroes: boolean): Uint8Array {
  const out = new Uint8Array(noZeroes ? 10 : 134);
  const dv = view(out);
  setU64(dv, 0, size);
  dv.setUint16(8, flags);
  return out;
}

/** A transmission request. `handle` is the client's opaque cookie. */
export interface NbdRequest {
  readonly flags: number;
  readonly type: number;
  readonly handle: bigint;
  /** Byte offset; values above 2^53 lose precision but stay far beyond any export. */
  readonly offset: number;
  readonly length: number;
}

/** Encodes a request header (client side; tests, fuzz). */
export function encodeRequest(req: NbdRequest): Uint8Array {
  const out = new Uint8Array(REQUEST_SIZE);
  const dv = view(out);
  dv.setUint32(0, NBD_REQUEST_MAGIC);
  dv.setUint16(4, req.flags);
  dv.setUint16(6, req.type);
  dv.setBigUint64(8, req.handle);
  setU64(dv, 16, req.offset);
  dv.setUint32(24, req.length);
  return out;
}

/** Decodes the 28-byte request header at `at` in `b`; a wrong magic is fatal (the stream is lost). */
export function decodeRequest(b: Uint8Array, at = 0): NbdRequest {
  need(b, at + REQUEST_SIZE, "request");
  const dv = new DataView(b.buffer, b.byteOffset + at, REQUEST_SIZE);
  const magic = dv.getUint32(0);
  if (magic !== NBD_REQUEST_MAGIC) {
    throw new NbdProtocolError("request magic", `0x${magic.toString(16)} is not 0x25609513`);
  }
  return {
    flags: dv.getUint16(4),
    type: dv.getUint16(6),
    handle: dv.getBigUint64(8),
    offset: getU64(dv, 16),
    length: dv.getUint32(24),
  };
}

/** Writes a 16-byte simple reply header at `at` in `out` (so read data can follow in the same buffer). */
export function writeSimpleReply(out: Uint8Array, at: number, error: number, handle: bigint): void {
  const dv = new DataView(out.buffer, out.byteOffset + at, SIMPLE_REPLY_SIZE);
  dv.setUint32(0, NBD_SIMPLE_REPLY_MAGIC);
  dv.setUint32(4, error);
  dv.setBigUint64(8, handle);
}

/** Encodes a 16-byte simple reply header. */
export function encodeSimpleReply(error: number, handle: bigint): Uint8Array {
  const out = new Uint8Array(SIMPLE_REPLY_SIZE);
  writeSimpleReply(out, 0, error, handle);
  return out;
}

/** Decodes a simple reply header (client side; tests). */
export function decodeSimpleReply(b: Uint8Array): { error: number; handle: bigint } {
  need(b, SIMPLE_REPLY_SIZE, "simple reply");
  const dv = view(b);
  if (dv.getUint32(0) !== NBD_SIMPLE_REPLY_MAGIC) throw new NbdProtocolError("reply magic", "wrong");
  return { error: dv.getUint32(4), handle: dv.getBigUint64(8) };
}

/** Names of options, commands and errors for log lines. */
export function optionName(option: number): string {
  return Object.entries(NbdOpt).find(([, v]) => v === option)?.[0] ?? `option ${option}`;
}

/** Name of a command type for log lines. */
export function commandName(type: number): string {
  return Object.entries(NbdCmd).find(([, v]) => v === type)?.[0] ?? `command ${type}`;
}
