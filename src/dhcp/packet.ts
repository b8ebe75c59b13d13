/**
 * BOOTP/DHCP message codec (RFC 951, RFC 2131, RFC 3396 long options, option 52 overload).
 * Pure: `decodeDhcp(bytes)` throws `DhcpDecodeError`, `encodeDhcp(packet)` throws `DhcpEncodeError`.
 *
 * Decoding is strict about structure and lenient about content: a missing END option (255) is accepted
 * (the options end with the datagram, as many servers do), bytes after END are padding, option 53 is not
 * required (BOOTP), and option values are only checked when read through the typed accessors.
 *
 * @example
 * ```ts
 * const req = decodeDhcp(bytes);
 * const reply = newReply(req);
 * setOption(reply, Opt.MESSAGE_TYPE, MessageType.OFFER);
 * setBootFile(reply, "ipxe.efi");
 * const wire = encodeDhcp(reply, { maxSize: maxReplySize(req) });
 * ```
 * @module
 */

import {
  concat,
  DhcpDecodeError,
  DhcpEncodeError,
  formatIp,
  Opt,
  type OptionMap,
  parseIp,
} from "./options.ts";

export { DhcpDecodeError, DhcpEncodeError } from "./options.ts";

/** One BOOTP/DHCP message. Addresses are dotted strings; `options` holds raw values in arrival order. */
export interface DhcpPacket {
  /** 1 BOOTREQUEST, 2 BOOTREPLY. */
  op: number;
  /** Hardware type, 1 = Ethernet. */
  htype: number;
  /** Hardware address length, at most 16. */
  hlen: number;
  hops: number;
  xid: number;
  secs: number;
  /** Bit 15 (0x8000) is the broadcast flag. */
  flags: number;
  ciaddr: string;
  yiaddr: string;
  siaddr: string;
  giaddr: string;
  /** The first `hlen` bytes of the 16-byte chaddr field; the encoder writes these. */
  chaddr: Uint8Array;
  /** `chaddr` as lowercase colon-separated hex ("aa:bb:cc:dd:ee:ff"); informational, not encoded. */
  mac: string;
  /** Server host name, NUL-trimmed ("" when option 52 overloads the field). */
  sname: string;
  /** Boot file name, NUL-trimmed ("" when option 52 overloads the field). */
  file: string;
  /** Raw option values; repeated options arrive concatenated (RFC 3396). */
  options: OptionMap;
}

/** Options for `encodeDhcp`. */
export interface EncodeOptions {
  /** Largest message to produce, in bytes of UDP payload (see `maxReplySize`). Default: no limit. */
  maxSize?: number;
  /** Zero-pad shorter messages to this size; BOOTP relays expect 300 (the default). */
  minSize?: number;
}

const COOKIE = [99, 130, 83, 99];
const HEADER = 236;
const OPTIONS_START = 240;
const SNAME = { at: 44, size: 64 };
const FILE = { at: 108, size: 128 };
const BROADCAST = 0x8000;
const utf8 = new TextEncoder();
const fromUtf8 = new TextDecoder();

/** Formats hardware address bytes as lowercase colon-separated hex. */
export function formatMac(bytes: Uint8Array): string {
  let out = "";
  for (let i = 0; i < bytes.length; i++) out += (i === 0 ? "" : ":") + HEX[bytes[i]];
  return out;
}

const HEX = Array.from({ length: 256 }, (_, b) => b.toString(16).padStart(2, "0"));

/** Parses "aa:bb:cc:dd:ee:ff" (or "-" separated) into bytes; throws DhcpEncodeError when malformed. */
export function parseMac(mac: string): Uint8Array {
  const parts = mac.split(/[:-]/);
  if (parts.length > 16 || !parts.every((p) => /^[0-9a-fA-F]{1,2}$/.test(p))) {
    throw new DhcpEncodeError("chaddr", `not a hardware address: ${mac}`);
  }
  return Uint8Array.from(parts, (p) => parseInt(p, 16));
}

/** True when the client asked for broadcast replies (flags bit 15). */
export function isBroadcast(pkt: DhcpPacket): boolean {
  return (pkt.flags & BROADCAST) !== 0;
}

type Chunks = Map<number, Uint8Array[]>;

/** Reads options from `bytes[start, end)` into `into`; returns true when END was seen. */
function readOptions(bytes: Uint8Array, start: number, end: number, area: string, into: Chunks): boolean {
  let at = start;
  while (at < end) {
    const code = bytes[at];
    if (code === Opt.END) return true;
    if (code === Opt.PAD) {
      at++;
      continue;
    }
    const field = `option ${code}`;
    if (at + 1 >= end) throw new DhcpDecodeError(field, `no length byte at the end of ${area}`);
    const len = bytes[at + 1];
    if (at + 2 + len > end) {
      throw new DhcpDecodeError(
        field,
        `length ${len} runs ${at + 2 + len - end} bytes past the end of ${area}`,
      );
    }
    const list = into.get(code);
    const value = bytes.slice(at + 2, at + 2 + len);
    if (list) list.push(value);
    else into.set(code, [value]);
    at += 2 + len;
  }
  return false;
}

function nulTrimmed(bytes: Uint8Array): string {
  const nul = bytes.indexOf(0);
  return fromUtf8.decode(nul < 0 ? bytes : bytes.subarray(0, nul));
}

/** Decodes one BOOTP/DHCP message (the UDP payload); throws DhcpDecodeError when malformed. */
export function decodeDhcp(bytes: Uint8Array): DhcpPacket {
  if (bytes.length < OPTIONS_START) {
    throw new DhcpDecodeError(
      "length",
      `${bytes.length} bytes, a DHCP message has at least ${OPTIONS_START}`,
    );
  }
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const op = bytes[0];
  if (op !== 1 && op !== 2) throw new DhcpDecodeError("op", `${op} is neither 1 (request) nor 2 (reply)`);
  const hlen = bytes[2];
  if (hlen > 16) throw new DhcpDecodeError("hlen", `${hlen} is more than 16`);
  if (COOKIE.some((b, i) => bytes[HEADER + i] !== b)) {
    throw new DhcpDecodeError("cookie", `${formatIp(bytes, HEADER)} is not 99.130.83.99`);
  }

  const chunks: Chunks = new Map();
  readOptions(bytes, OPTIONS_START, bytes.length, "options", chunks);
  let overload = 0;
  const ov = chunks.get(Opt.OVERLOAD);
  if (ov) {
    if (ov.length !== 1 || ov[0].length !== 1 || ov[0][0] < 1 || ov[0][0] > 3) {
      throw new DhcpDecodeError("option 52", "overload must be one byte of 1, 2 or 3");
    }
    overload = ov[0][0];
    const extra: Chunks = new Map();
    if (overload & 1) readOptions(bytes, FILE.at, FILE.at + FILE.size, "file", extra);
    if (overload & 2) readOptions(bytes, SNAME.at, SNAME.at + SNAME.size, "sname", extra);
    extra.delete(Opt.OVERLOAD);
    for (const [code, list] of extra) chunks.set(code, [...(chunks.get(code) ?? []), ...list]);
  }
  const options: OptionMap = new Map();
  for (const [code, list] of chunks) options.set(code, list.length === 1 ? list[0] : concat(list));

  const chaddr = bytes.slice(28, 28 + hlen);
  return {
    op,
    htype: bytes[1],
    hlen,
    hops: bytes[3],
    xid: dv.getUint32(4),
    secs: dv.getUint16(8),
    flags: dv.getUint16(10),
    ciaddr: formatIp(bytes, 12),
    yiaddr: formatIp(bytes, 16),
    siaddr: formatIp(bytes, 20),
    giaddr: formatIp(bytes, 24),
    chaddr,
    mac: formatMac(chaddr),
    sname: overload & 2 ? "" : nulTrimmed(bytes.subarray(SNAME.at, SNAME.at + SNAME.size)),
    file: overload & 1 ? "" : nulTrimmed(bytes.subarray(FILE.at, FILE.at + FILE.size)),
    options,
  };
}

function checkUint(
  pkt: DhcpPacket,
  key: "op" | "htype" | "hlen" | "hops" | "xid" | "secs" | "flags",
  bits: number,
) {
  const v = pkt[key];
  if (!Number.isInteger(v) || v < 0 || v >= 2 ** bits) {
    throw new DhcpEncodeError(key, `${v} is not an unsigned ${bits}-bit integer`);
  }
}

function nameBytes(name: string, field: string, size: number): Uint8Array {
  const b = utf8.encode(name);
  if (b.length > size - 1) {
    throw new DhcpEncodeError(field, `${b.length} bytes, the ${field} field holds at most ${size - 1}`);
  }
  return b;
}

/** Splits every option into wire instances (code, len, <= 255 bytes), RFC 3396 style. */
function optionInstances(options: OptionMap): Uint8Array[] {
  const out: Uint8Array[] = [];
  for (const [code, value] of options) {
    if (code === Opt.OVERLOAD) continue; // the encoder decides about overload itself
    if (!Number.isInteger(code) || code <= 0 || code >= 255) {
      throw new DhcpEncodeError(`option ${code}`, "option codes are 1..254");
    }
    if (!(value instanceof Uint8Array)) {
      throw new DhcpEncodeError(`option ${code}`, "value is not a Uint8Array");
    }
    let at = 0;
    do {
      const part = value.subarray(at, at + 255);
      out.push(concat([Uint8Array.of(code, part.length), part]));
      at += 255;
    } while (at < value.length);
  }
  return out;
}

interface Area {
  at: number;
  room: number;
  used: number;
  flag: number;
}

/** Encodes a message; throws DhcpEncodeError for bad fields, long names or options beyond `maxSize`. */
export function encodeDhcp(pkt: DhcpPacket, opts: EncodeOptions = {}): Uint8Array {
  const minSize = opts.minSize ?? 300;
  const maxSize = opts.maxSize ?? Infinity;
  if (maxSize < OPTIONS_START + 1) {
    throw new DhcpEncodeError("maxSize", `${maxSize} is below ${OPTIONS_START + 1}`);
  }
  checkUint(pkt, "op", 8);
  checkUint(pkt, "htype", 8);
  checkUint(pkt, "hops", 8);
  checkUint(pkt, "xid", 32);
  checkUint(pkt, "secs", 16);
  checkUint(pkt, "flags", 16);
  checkUint(pkt, "hlen", 8);
  if (pkt.hlen > 16) throw new DhcpEncodeError("hlen", `${pkt.hlen} is more than 16`);
  if (!(pkt.chaddr instanceof Uint8Array) || pkt.chaddr.length > 16) {
    throw new DhcpEncodeError("chaddr", "must be a Uint8Array of at most 16 bytes");
  }
  const sname = nameBytes(pkt.sname, "sname", SNAME.size);
  const file = nameBytes(pkt.file, "file", FILE.size);
  const instances = optionInstances(pkt.options);
  const total = instances.reduce((n, b) => n + b.length, 0);

  // Place option instances in order: options field, then (overloaded) file, then sname (RFC 3396).
  const main: Area = { at: OPTIONS_START, room: maxSize - OPTIONS_START - 1, used: 0, flag: 0 };
  const placed: [Area, Uint8Array][] = [];
  if (total <= main.room) {
    for (const b of instances) placed.push([main, b]);
    main.used = total;
  } else {
    main.room -= 3; // option 52 itself
    const areas = [main];
    if (file.length === 0) areas.push({ at: FILE.at, room: FILE.size - 1, used: 0, flag: 1 });
    if (sname.length === 0) areas.push({ at: SNAME.at, room: SNAME.size - 1, used: 0, flag: 2 });
    let i = 0;
    for (const b of instances) {
      while (i < areas.length && areas[i].used + b.length > areas[i].room) i++;
      if (i === areas.length) {
        throw new DhcpEncodeError("options", `${total} bytes of options do not fit in maxSize ${maxSize}`);
      }
      placed.push([areas[i], b]);
      areas[i].used += b.length;
    }
    const overload = areas.reduce((f, a) => (a.used > 0 ? f | a.flag : f), 0);
    placed.unshift([main, Uint8Array.of(Opt.OVERLOAD, 1, overload)]);
    main.used += 3;
  }

  const size = Math.min(Math.max(OPTIONS_START + main.used + 1, minSize), maxSize);
  const out = new Uint8Array(size);
  const dv = new DataView(out.buffer);
  out.set([pkt.op, pkt.htype, pkt.hlen, pkt.hops]);
  dv.setUint32(4, pkt.xid);
  dv.setUint16(8, pkt.secs);
  dv.setUint16(10, pkt.flags);
  for (const [i, key] of (["ciaddr", "yiaddr", "siaddr", "giaddr"] as const).entries()) {
    const ip = parseIp(pkt[key]);
    if (!ip) throw new DhcpEncodeError(key, `not an IPv4 address: ${pkt[key]}`);
    out.set(ip, 12 + i * 4);
  }
  out.set(pkt.chaddr, 28);
  out.set(sname, SNAME.at);
  out.set(file, FILE.at);
  out.set(COOKIE, HEADER);
  const cursor = new Map<Area, number>();
  for (const [area, b] of placed) {
    const at = cursor.get(area) ?? area.at;
    out.set(b, at);
    cursor.set(area, at + b.length);
  }
  for (const at of cursor.values()) out[at] = Opt.END;
  if (!cursor.has(main)) out[OPTIONS_START] = Opt.END;
  return out;
}

/** Sets the boot file name in both the `file` field and option 67 (no trailing NUL), so they agree. */
export function setBootFile(pkt: DhcpPacket, name: string): void {
  const bytes = nameBytes(name, "file", FILE.size);
  pkt.file = name;
  pkt.options.set(Opt.BOOTFILE, bytes);
}

/** Builds a packet with BOOTP defaults (a request from 00:00:00:00:00:00, no options) and `init` applied. */
export function createDhcpPacket(init: Partial<DhcpPacket> = {}): DhcpPacket {
  const chaddr = init.chaddr ?? (init.mac !== undefined ? parseMac(init.mac) : new Uint8Array(6));
  return {
    op: 1,
    htype: 1,
    hops: 0,
    xid: 0,
    secs: 0,
    flags: 0,
    ciaddr: "0.0.0.0",
    yiaddr: "0.0.0.0",
    siaddr: "0.0.0.0",
    giaddr: "0.0.0.0",
    sname: "",
    file: "",
    ...init,
    hlen: init.hlen ?? chaddr.length,
    chaddr,
    mac: formatMac(chaddr),
    options: init.options ?? new Map(),
  };
}

/** Starts a BOOTREPLY to `request` (RFC 2131 table 3): same xid, flags, giaddr, chaddr; no options. */
export function newReply(request: DhcpPacket): DhcpPacket {
  return createDhcpPacket({
    op: 2,
    htype: request.htype,
    hlen: request.hlen,
    xid: request.xid,
    flags: request.flags,
    giaddr: request.giaddr,
    chaddr: request.chaddr.slice(),
  });
}
