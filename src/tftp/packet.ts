/**
 * TFTP packet codec (RFC 1350 with RFC 2347 options): pure `decodePacket`/`encodePacket`, plus
 * allocation-free helpers for the hot path (`writeDataHeader`, `encodeAckInto`).
 *
 * @example
 * ```ts
 * const rrq = decodePacket(bytes);
 * if (rrq.op === "rrq") console.log(rrq.filename, rrq.options);
 * encodePacket({ op: "ack", block: 0 }); // Uint8Array [0, 4, 0, 0]
 * ```
 * @module
 */

/** Wire opcodes. */
export const Opcode = { RRQ: 1, WRQ: 2, DATA: 3, ACK: 4, ERROR: 5, OACK: 6 } as const;

/** RFC 1350 / 2347 error codes. */
export const ErrorCode = {
  NOT_DEFINED: 0,
  FILE_NOT_FOUND: 1,
  ACCESS_VIOLATION: 2,
  DISK_FULL: 3,
  ILLEGAL_OPERATION: 4,
  UNKNOWN_TID: 5,
  FILE_EXISTS: 6,
  NO_SUCH_USER: 7,
  OPTION_REFUSED: 8,
} as const;

/** One option as sent: the name keeps its case; values are text. */
export type TftpOption = readonly [name: string, value: string];

/** A read or write request. */
export interface RequestPacket {
  readonly op: "rrq" | "wrq";
  readonly filename: string;
  readonly mode: string;
  readonly options: readonly TftpOption[];
}

/** A data block (`data` is a view into the decoded bytes). */
export interface DataPacket {
  readonly op: "data";
  readonly block: number;
  readonly data: Uint8Array;
}

/** An acknowledgement. */
export interface AckPacket {
  readonly op: "ack";
  readonly block: number;
}

/** An error. */
export interface ErrorPacket {
  readonly op: "error";
  readonly code: number;
  readonly message: string;
}

/** An option acknowledgement (RFC 2347). */
export interface OackPacket {
  readonly op: "oack";
  readonly options: readonly TftpOption[];
}

/** Any TFTP packet. */
export type TftpPacket = RequestPacket | DataPacket | AckPacket | ErrorPacket | OackPacket;

/** A datagram that is not a valid TFTP packet; `field` names the part that is wrong. */
export class TftpDecodeError extends Error {
  /** Creates the error for `field` with a human `reason`. */
  constructor(readonly field: string, readonly reason: string) {
    super(`${field}: ${reason}`);
    this.name = "TftpDecodeError";
  }
}

const utf8 = new TextDecoder("utf-8", { fatal: true });
const encoder = new TextEncoder();

/** Size of a DATA/ACK header. */
export const HEADER_SIZE = 4;

/** Decodes one datagram; throws {@linkcode TftpDecodeError} when it is not a TFTP packet. */
export function decodePacket(bytes: Uint8Array): TftpPacket {
  if (bytes.length < 2) throw new TftpDecodeError("opcode", `packet of ${bytes.length} byte(s) is too short`);
  const opcode = (bytes[0] << 8) | bytes[1];
  switch (opcode) {
    case Opcode.RRQ:
    case Opcode.WRQ:
      return decodeRequest(bytes, opcode === Opcode.RRQ ? "rrq" : "wrq");
    case Opcode.DATA:
      if (bytes.length < 4) throw new TftpDecodeError("block", "DATA shorter than 4 bytes");
      return { op: "data", block: (bytes[2] << 8) | bytes[3], data: bytes.subarray(4) };
    case Opcode.ACK:
      if (bytes.length < 4) throw new TftpDecodeError("block", "ACK shorter than 4 bytes");
      return { op: "ack", block: (bytes[2] << 8) | bytes[3] };
    case Opcode.ERROR: {
      if (bytes.length < 4) throw new TftpDecodeError("code", "ERROR shorter than 4 bytes");
      const code = (bytes[2] << 8) | bytes[3];
      // a missing terminator or bad text is tolerated: the code alone is what matters
      let end = bytes.indexOf(0, 4);
      if (end < 0) end = bytes.length;
      const message = new TextDecoder().decode(bytes.subarray(4, Math.min(end, 4 + 512)));
      return { op: "error", code, message };
    }
    case Opcode.OACK: {
      const { strings } = readStrings(bytes, 2, "options");
      return { op: "oack", options: pairOptions(strings) };
    }
    default:
      throw new TftpDecodeError("opcode", `unknown opcode ${opcode}`);
  }
}

function decodeRequest(bytes: Uint8Array, op: "rrq" | "wrq"): RequestPacket {
  const { strings } = readStrings(bytes, 2, "filename");
  if (strings.length < 1 || strings[0] === "") throw new TftpDecodeError("filename", "empty file name");
  if (strings.length < 2) throw new TftpDecodeError("mode", "request has no mode");
  if (strings[1] === "") throw new TftpDecodeError("mode", "empty mode");
  return { op, filename: strings[0], mode: strings[1], options: pairOptions(strings.slice(2)) };
}

/** Splits NUL-terminated strings from `start`; every string must be terminated and valid UTF-8. */
function readStrings(bytes: Uint8Array, start: number, field: string): { strings: string[] } {
  const strings: string[] = [];
  let pos = start;
  while (pos < bytes.length) {
    const end = bytes.indexOf(0, pos);
    if (end < 0) {
      const which = strings.length === 0 ? field : strings.length === 1 ? "mode" : "options";
      throw new TftpDecodeError(which, "string is not NUL-terminated");
    }
    try {
      strings.push(utf8.decode(bytes.subarray(pos, end)));
    } catch {
      const which = strings.length === 0 ? field : strings.length === 1 ? "mode" : "options";
      throw new TftpDecodeError(which, "not valid UTF-8 text");
    }
    pos = end + 1;
    if (strings.length > 256) throw new TftpDecodeError("options", "more than 128 options");
  }
  return { strings };
}

/** Pairs name/value strings; trailing empty strings (padding some ROMs send) are ignored. */
function pairOptions(strings: string[]): TftpOption[] {
  let n = strings.length;
  while (n > 0 && strings[n - 1] === "") n--;
  const options: TftpOption[] = [];
  for (let i = 0; i < n; i += 2) {
    if (strings[i] === "") throw new TftpDecodeError("options", "empty option name");
    if (i + 1 >= n) throw new TftpDecodeError("options", `option '${strings[i]}' has no value`);
    options.push([strings[i], strings[i + 1]]);
  }
  return options;
}

/** Encodes any packet into a fresh buffer. */
export function encodePacket(packet: TftpPacket): Uint8Array {
  switch (packet.op) {
    case "rrq":
    case "wrq":
      return encodeStrings(
        packet.op === "rrq" ? Opcode.RRQ : Opcode.WRQ,
        [packet.filename, packet.mode, ...packet.options.flat()],
      );
    case "data": {
      const out = new Uint8Array(HEADER_SIZE + packet.data.length);
      writeDataHeader(out, packet.block);
      out.set(packet.data, HEADER_SIZE);
      return out;
    }
    case "ack":
      return encodeAckInto(new Uint8Array(4), packet.block);
    case "error": {
      const msg = encoder.encode(packet.message);
      const out = new Uint8Array(5 + msg.length);
      out[1] = Opcode.ERROR;
      out[2] = (packet.code >> 8) & 0xff;
      out[3] = packet.code & 0xff;
      out.set(msg, 4);
      return out;
    }
    case "oack":
      return encodeStrings(Opcode.OACK, packet.options.flat());
  }
}

function encodeStrings(opcode: number, strings: string[]): Uint8Array {
  const parts = strings.map((s) => encoder.encode(s));
  const out = new Uint8Array(2 + parts.reduce((n, p) => n + p.length + 1, 0));
  out[1] = opcode;
  let pos = 2;
  for (const p of parts) {
    out.set(p, pos);
    pos += p.length + 1;
  }
  return out;
}

/** Writes a DATA header for wire block `block` (taken mod 65536) at the start of `buf`. */
export function writeDataHeader(buf: Uint8Array, block: number): void {
  buf[0] = 0;
  buf[1] = Opcode.DATA;
  buf[2] = (block >> 8) & 0xff;
  buf[3] = block & 0xff;
}

/** Writes an ACK for wire block `block` (mod 65536) into `buf` (>= 4 bytes) and returns its first 4 bytes. */
export function encodeAckInto(buf: Uint8Array, block: number): Uint8Array {
  buf[0] = 0;
  buf[1] = Opcode.ACK;
  buf[2] = (block >> 8) & 0xff;
  buf[3] = block & 0xff;
  return buf.subarray(0, 4);
}

/** Reads the opcode of a datagram without decoding it (0 when shorter than 2 bytes). */
export function peekOpcode(bytes: Uint8Array): number {
  return bytes.length < 2 ? 0 : (bytes[0] << 8) | bytes[1];
}

/** Describes a packet in one short line for TRACE/DEBUG logs. */
export function describePacket(packet: TftpPacket): string {
  switch (packet.op) {
    case "rrq":
    case "wrq": {
      const opts = packet.options.map(([k, v]) => ` ${k}=${v}`).join("");
      return `${packet.op.toUpperCase()} '${packet.filename}' ${packet.mode}${opts}`;
    }
    case "data":
      return `DATA ${packet.block} (${packet.data.length} bytes)`;
    case "ack":
      return `ACK ${packet.block}`;
    case "error":
      return `ERROR ${packet.code} '${packet.message}'`;
    case "oack":
      return `OACK${packet.options.map(([k, v]) => ` ${k}=${v}`).join("")}`;
  }
}
