/**
 * DHCPv6 basics (RFC 8415): the codec's error types, option and message-type codes with their names, the
 * option-list codec shared by messages, IA_NA, IA Address and vendor options, and raw accessors over a
 * message's option list. Options are a list in wire order, so repeated options (several IA_NA, several
 * vendor classes) and their order survive a round trip. Typed values live in `values.ts`. Pure.
 *
 * @example
 * ```ts
 * const oro = getOption6(msg, Opt6.ORO); // raw bytes of the first ORO, or undefined
 * setOption6(reply, Opt6.BOOTFILE_URL, new TextEncoder().encode("tftp://[2001:db8::1]/ipxe.efi"));
 * ```
 * @module
 */

/** One option as on the wire: a 16-bit code and its raw value. */
export interface Dhcp6Option {
  code: number;
  data: Uint8Array;
}

/** Anything carrying an option list (a decoded message, a relay message, an IA_NA, an IA Address). */
export interface HasOptions6 {
  options: Dhcp6Option[];
}

/** Thrown for any malformed DHCPv6 input: the message header, the option list or an option value. */
export class Dhcp6DecodeError extends Error {
  /** Which part of the input is wrong, e.g. `"header"` or `"option 3 (ia-na)"`. */
  readonly field: string;
  /** What is wrong with it. */
  readonly reason: string;
  constructor(field: string, reason: string) {
    super(`bad DHCPv6 ${field}: ${reason}`);
    this.name = "Dhcp6DecodeError";
    this.field = field;
    this.reason = reason;
  }
}

/** Thrown when a value cannot be put on the wire (out of range, too long, not an address). */
export class Dhcp6EncodeError extends Error {
  /** Which part of the output is wrong, e.g. `"transactionId"` or `"option 59"`. */
  readonly field: string;
  /** What is wrong with it. */
  readonly reason: string;
  constructor(field: string, reason: string) {
    super(`cannot encode DHCPv6 ${field}: ${reason}`);
    this.name = "Dhcp6EncodeError";
    this.field = field;
    this.reason = reason;
  }
}

/** Option codes pypxe reads or writes (RFC 8415, RFC 3646, RFC 5970, RFC 6939). */
export const Opt6 = {
  CLIENTID: 1,
  SERVERID: 2,
  IA_NA: 3,
  IA_TA: 4,
  IAADDR: 5,
  ORO: 6,
  PREFERENCE: 7,
  ELAPSED_TIME: 8,
  RELAY_MSG: 9,
  AUTH: 11,
  UNICAST: 12,
  STATUS_CODE: 13,
  RAPID_COMMIT: 14,
  USER_CLASS: 15,
  VENDOR_CLASS: 16,
  VENDOR_OPTS: 17,
  INTERFACE_ID: 18,
  RECONF_MSG: 19,
  RECONF_ACCEPT: 20,
  DNS_SERVERS: 23,
  DOMAIN_LIST: 24,
  IA_PD: 25,
  IAPREFIX: 26,
  INFORMATION_REFRESH_TIME: 32,
  BOOTFILE_URL: 59,
  BOOTFILE_PARAM: 60,
  CLIENT_ARCH_TYPE: 61,
  NII: 62,
  CLIENT_LINKLAYER_ADDR: 79,
  SOL_MAX_RT: 82,
  INF_MAX_RT: 83,
} as const;

const OPTION_NAMES: ReadonlyMap<number, string> = new Map([
  [1, "client-id"],
  [2, "server-id"],
  [3, "ia-na"],
  [4, "ia-ta"],
  [5, "iaaddr"],
  [6, "oro"],
  [7, "preference"],
  [8, "elapsed-time"],
  [9, "relay-msg"],
  [11, "auth"],
  [12, "unicast"],
  [13, "status-code"],
  [14, "rapid-commit"],
  [15, "user-class"],
  [16, "vendor-class"],
  [17, "vendor-opts"],
  [18, "interface-id"],
  [19, "reconf-msg"],
  [20, "reconf-accept"],
  [23, "dns-servers"],
  [24, "domain-list"],
  [25, "ia-pd"],
  [26, "iaprefix"],
  [32, "information-refresh-time"],
  [59, "bootfile-url"],
  [60, "bootfile-param"],
  [61, "client-arch-type"],
  [62, "nii"],
  [79, "client-linklayer-addr"],
  [82, "sol-max-rt"],
  [83, "inf-max-rt"],
]);

/** The option's name (`"option-N"` for codes not in the table). */
export function optionName6(code: number): string {
  return OPTION_NAMES.get(code) ?? `option-${code}`;
}

/** DHCPv6 message types (RFC 8415 §7.3). */
export const MessageType6 = {
  SOLICIT: 1,
  ADVERTISE: 2,
  REQUEST: 3,
  CONFIRM: 4,
  RENEW: 5,
  REBIND: 6,
  REPLY: 7,
  RELEASE: 8,
  DECLINE: 9,
  RECONFIGURE: 10,
  INFORMATION_REQUEST: 11,
  RELAY_FORW: 12,
  RELAY_REPL: 13,
} as const;

const MESSAGE_NAMES = [
  "",
  "SOLICIT",
  "ADVERTISE",
  "REQUEST",
  "CONFIRM",
  "RENEW",
  "REBIND",
  "REPLY",
  "RELEASE",
  "DECLINE",
  "RECONFIGURE",
  "INFORMATION-REQUEST",
  "RELAY-FORW",
  "RELAY-REPL",
];

/** The message type's name as RFC 8415 spells it (`"SOLICIT"`, `"RELAY-FORW"`), `"TYPE-N"` otherwise. */
export function messageTypeName6(type: number): string {
  return MESSAGE_NAMES[type] || `TYPE-${type}`;
}

/** Status codes (option 13, RFC 8415 §21.13). */
export const StatusCode6 = {
  SUCCESS: 0,
  UNSPEC_FAIL: 1,
  NO_ADDRS_AVAIL: 2,
  NO_BINDING: 3,
  NOT_ON_LINK: 4,
  USE_MULTICAST: 5,
  NO_PREFIX_AVAIL: 6,
} as const;

/** Checks that `v` is an unsigned integer of `bits` bits; throws Dhcp6EncodeError naming `field`. */
export function checkUint(v: unknown, bits: 8 | 16 | 24 | 32, field: string): number {
  if (typeof v !== "number" || !Number.isInteger(v) || v < 0 || v >= 2 ** bits) {
    throw new Dhcp6EncodeError(field, `${String(v)} is not an unsigned ${bits}-bit integer`);
  }
  return v;
}

/** Most options one option list may hold (a full 64 KiB datagram of empty options would be 16,384). */
export const MAX_OPTIONS = 512;

/** `"option 3 (ia-na)"`: how errors name an option. */
export function optionField(code: number): string {
  return `option ${code} (${optionName6(code)})`;
}

/**
 * Decodes the option list in `bytes[start, end)`; `where` names the area in errors. Throws
 * Dhcp6DecodeError for a cut-off header, a length past the end, or more than MAX_OPTIONS options.
 * Values are copies, so a kept option does not pin the receive buffer.
 */
export function decodeOptionList(
  bytes: Uint8Array,
  start: number,
  end: number,
  where: string,
): Dhcp6Option[] {
  const out: Dhcp6Option[] = [];
  let at = start;
  while (at < end) {
    if (out.length === MAX_OPTIONS) {
      throw new Dhcp6DecodeError(where, `more than ${MAX_OPTIONS} options`);
    }
    if (at + 4 > end) {
      throw new Dhcp6DecodeError(where, `${end - at} stray bytes where a 4-byte option header should be`);
    }
    const code = (bytes[at] << 8) | bytes[at + 1];
    const len = (bytes[at + 2] << 8) | bytes[at + 3];
    if (at + 4 + len > end) {
      throw new Dhcp6DecodeError(
        optionField(code),
        `length ${len} runs ${at + 4 + len - end} bytes past the end of ${where}`,
      );
    }
    out.push({ code, data: bytes.slice(at + 4, at + 4 + len) });
    at += 4 + len;
  }
  return out;
}

/** Encodes an option list in order; throws Dhcp6EncodeError for a bad code or a value over 65,535 bytes. */
export function encodeOptionList(options: readonly Dhcp6Option[]): Uint8Array {
  let size = 0;
  for (const o of options) {
    if (!Number.isInteger(o.code) || o.code < 0 || o.code > 0xffff) {
      throw new Dhcp6EncodeError("option code", `${o.code} is not an unsigned 16-bit integer`);
    }
    if (!(o.data instanceof Uint8Array)) {
      throw new Dhcp6EncodeError(optionField(o.code), "value is not bytes");
    }
    if (o.data.length > 0xffff) {
      throw new Dhcp6EncodeError(optionField(o.code), `value of ${o.data.length} bytes is over 65535`);
    }
    size += 4 + o.data.length;
  }
  const out = new Uint8Array(size);
  let at = 0;
  for (const o of options) {
    out.set([o.code >> 8, o.code & 255, o.data.length >> 8, o.data.length & 255], at);
    out.set(o.data, at + 4);
    at += 4 + o.data.length;
  }
  return out;
}

/** The raw value of the first option `code`, or undefined. */
export function getOption6(pkt: HasOptions6, code: number): Uint8Array | undefined {
  return pkt.options.find((o) => o.code === code)?.data;
}

/** The raw values of every option `code`, in wire order. */
export function getOptions6(pkt: HasOptions6, code: number): Uint8Array[] {
  return pkt.options.filter((o) => o.code === code).map((o) => o.data);
}

/** True when option `code` is present (e.g. Rapid Commit, which has no value). */
export function hasOption6(pkt: HasOptions6, code: number): boolean {
  return pkt.options.some((o) => o.code === code);
}

/** Sets option `code`: replaces the first one in place (dropping any repeats), or appends it. */
export function setOption6(pkt: HasOptions6, code: number, data: Uint8Array): void {
  const at = pkt.options.findIndex((o) => o.code === code);
  if (at < 0) {
    pkt.options.push({ code, data });
    return;
  }
  pkt.options = pkt.options.filter((o, i) => i <= at || o.code !== code);
  pkt.options[at] = { code, data };
}

/** Appends option `code` (another instance of a repeatable option such as IA_NA or vendor class). */
export function addOption6(pkt: HasOptions6, code: number, data: Uint8Array): void {
  pkt.options.push({ code, data });
}

/** Removes every option `code`. */
export function removeOption6(pkt: HasOptions6, code: number): void {
  pkt.options = pkt.options.filter((o) => o.code !== code);
}
