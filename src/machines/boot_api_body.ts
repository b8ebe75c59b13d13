/**
 * The body of a boot API answer (pixiecore's API, `GET <api>/v1/boot/<mac>` answered 200): JSON text to a
 * {@linkcode Profile}, following pixiecore's `apibooter.BootSpec` (danderson/netboot, pixiecore/booters.go
 * and pixiecore/README.api.md) rule by rule:
 *
 * - Fields `kernel` (string), `initrd` (list of strings), `cmdline` (string or object), `message` (string),
 *   `ipxe-script` (string). Unknown fields are ignored; names match case-insensitively (Go's
 *   `encoding/json`); `null` is the same as absent. A field of the wrong type makes the answer malformed.
 * - A non-empty `ipxe-script` wins over everything else (kernel, initrd, cmdline and message are ignored).
 * - URLs without a scheme resolve against `<api>/v1` (the API URL with a trailing slash, plus `v1`), so
 *   `/kernel` is the API host's `/kernel` and `kernel` is a sibling of `v1`, as Go's `ResolveReference`
 *   does there.
 * - `cmdline` as a string is a Go `text/template`: `{{ URL "..." }}` becomes that URL made absolute (and
 *   passed through `opts.proxyUrl`, where pixiecore put its proxy URL). The result is trimmed and must not
 *   contain a newline.
 * - `cmdline` as an object (deprecated in pixiecore, still honoured): keys sorted; a boolean (pixiecore
 *   treats `false` like `true`) is the bare key; a string is `key="value"` quoted as Go's `%q`; an object
 *   `{"url": "..."}` is `key=<that URL as above>`; anything else is malformed.
 *
 * Where pypxe is stricter than pixiecore (each is a malformed answer here):
 * - the body must be one JSON object and nothing else (Go reads the first value and ignores the rest);
 * - `kernel` is required unless `ipxe-script` is given (pixiecore would boot the API prefix itself);
 *   empty or `null` initrd entries are refused;
 * - only `http:` and `https:` URLs: pixiecore's `file://` (a file on the pixiecore host, chosen by the
 *   remote API) is refused;
 * - relative URLs resolve against the API URL without its `user:password@`, because pypxe may hand them
 *   to the booting machine (pixiecore only ever showed clients its own proxy URLs).
 *
 * Pure: no I/O, no clock, no logging.
 * @module
 */
import type { Profile } from "./model.ts";

/** A 200 answer pypxe cannot use: which field and why. */
export class BootApiBodyError extends Error {
  /** The JSON field at fault (`body` for the document itself), e.g. `cmdline.console`. */
  readonly field: string;
  /** What is wrong with it. */
  readonly reason: string;

  /** Builds the error; the message is `field: reason`. */
  constructor(field: string, reason: string) {
    super(`${field}: ${reason}`);
    this.name = "BootApiBodyError";
    this.field = field;
    this.reason = reason;
  }
}

/** Options of {@linkcode parseBootApiBody}. */
export interface ParseBootApiBodyOptions {
  /**
   * Rewrites an absolute URL named in `cmdline` by `{{ URL "..." }}` or `{"url": ...}`, e.g. to a URL
   * pypxe's HTTP server proxies (pixiecore's `/_/file?name=...`). Default: the URL itself.
   */
  readonly proxyUrl?: (url: string) => string;
}

/** The profile name of every boot API answer. */
export const BOOT_API_PROFILE = "boot-api";

const FIELDS = ["kernel", "initrd", "cmdline", "message", "ipxe-script"] as const;
type Field = typeof FIELDS[number];

/**
 * The prefix pixiecore builds from its API URL: a trailing slash, then `v1` (requests go to
 * `<prefix>/boot/<mac>`, relative URLs resolve against it). `user:password@` is dropped.
 *
 * @example
 * ```ts
 * bootApiPrefix("http://api.lan:8080/pxe"); // "http://api.lan:8080/pxe/v1"
 * ```
 */
export function bootApiPrefix(apiUrl: string): string {
  const url = new URL(apiUrl);
  url.username = "";
  url.password = "";
  const href = url.href;
  return `${href.endsWith("/") ? href : `${href}/`}v1`;
}

/**
 * Parses a 200 answer of the boot API into the machine's profile (named `boot-api`); throws a
 * {@linkcode BootApiBodyError} naming the field when the answer is malformed (pixiecore then ignores the
 * machine).
 *
 * @example
 * ```ts
 * const profile = parseBootApiBody('{"kernel": "/k", "initrd": ["/i"]}', "http://api.lan/x");
 * // profile.boot: { kind: "kernel", kernel: "http://api.lan/k", initrd: ["http://api.lan/i"], cmdline: "" }
 * ```
 */
export function parseBootApiBody(body: string, apiUrl: string, opts: ParseBootApiBodyOptions = {}): Profile {
  let doc: unknown;
  try {
    doc = JSON.parse(body);
  } catch (err) {
    throw new BootApiBodyError("body", `not JSON (${err instanceof Error ? err.message : String(err)})`);
  }
  if (typeof doc !== "object" || doc === null || Array.isArray(doc)) {
    throw new BootApiBodyError("body", `not a JSON object but ${jsonType(doc)}`);
  }
  const fields = pickFields(doc as Record<string, unknown>);
  // type checks first, for every field, as Go's decoder does before pixiecore looks at any value
  const kernel = optionalString(fields, "kernel");
  const initrd = optionalStringList(fields, "initrd");
  const message = optionalString(fields, "message");
  const script = optionalString(fields, "ipxe-script");
  if (script !== undefined && script !== "") {
    return { name: BOOT_API_PROFILE, boot: { kind: "ipxe", script } };
  }
  if (kernel === undefined || kernel === "") {
    throw new BootApiBodyError("kernel", "missing (give kernel, or ipxe-script)");
  }
  const prefix = bootApiPrefix(apiUrl);
  const proxyUrl = opts.proxyUrl ?? ((url: string) => url);
  const boot = {
    kind: "kernel" as const,
    kernel: absoluteUrl(kernel, prefix, "kernel"),
    initrd: (initrd ?? []).map((ref, i) => absoluteUrl(ref, prefix, `initrd[${i}]`)),
    cmdline: expandCmdline(
      cmdlineTemplate(fields.get("cmdline")),
      (ref) => proxyUrl(absoluteUrl(ref, prefix, "cmdline")),
    ),
  };
  return message === undefined || message === ""
    ? { name: BOOT_API_PROFILE, boot }
    : { name: BOOT_API_PROFILE, boot, message };
}

/** The known fields of `doc`, matched like Go's decoder: exact name first, else case-insensitively. */
function pickFields(doc: Record<string, unknown>): Map<Field, unknown> {
  const fields = new Map<Field, unknown>();
  for (const [key, value] of Object.entries(doc)) {
    const field = FIELDS.find((f) => f === key) ?? FIELDS.find((f) => f === key.toLowerCase());
    if (field !== undefined && value !== null) fields.set(field, value);
    else if (field !== undefined) fields.delete(field);
  }
  return fields;
}

function optionalString(fields: Map<Field, unknown>, field: Field): string | undefined {
  const value = fields.get(field);
  if (value === undefined || typeof value === "string") return value;
  throw new BootApiBodyError(field, `must be a string, not ${jsonType(value)}`);
}

function optionalStringList(fields: Map<Field, unknown>, field: Field): string[] | undefined {
  const value = fields.get(field);
  if (value === undefined) return undefined;
  if (!Array.isArray(value)) {
    throw new BootApiBodyError(field, `must be a list of strings, not ${jsonType(value)}`);
  }
  return value.map((item, i) => {
    if (typeof item !== "string") {
      throw new BootApiBodyError(`${field}[${i}]`, `must be a string, not ${jsonType(item)}`);
    }
    return item;
  });
}

/** `ref` resolved against the API prefix; only non-empty http(s) URLs pass. */
function absoluteUrl(ref: string, prefix: string, field: string): string {
  if (ref.trim() === "") throw new BootApiBodyError(field, "empty URL");
  let url: URL;
  try {
    url = new URL(ref, prefix);
  } catch {
    throw new BootApiBodyError(field, `${JSON.stringify(ref)} is not a URL`);
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    throw new BootApiBodyError(
      field,
      `${JSON.stringify(ref)}: pypxe boots only http: and https: URLs from a boot API, not ${url.protocol}`,
    );
  }
  return url.href;
}

/** The cmdline template: the string itself, or the object form turned into one as pixiecore does. */
function cmdlineTemplate(cmdline: unknown): string {
  if (cmdline === undefined || typeof cmdline === "string") return cmdline ?? "";
  if (typeof cmdline !== "object" || cmdline === null || Array.isArray(cmdline)) {
    throw new BootApiBodyError("cmdline", `must be a string or an object, not ${jsonType(cmdline)}`);
  }
  const entries = Object.entries(cmdline as Record<string, unknown>);
  // Go's sort.Strings: byte order of UTF-8, which is code point order
  entries.sort(([a], [b]) => compareCodePoints(a, b));
  return entries.map(([key, value]) => {
    if (typeof value === "boolean") return key;
    if (typeof value === "string") return `${key}=${goQuote(value)}`;
    if (typeof value === "object" && value !== null && !Array.isArray(value)) {
      const url = (value as Record<string, unknown>).url;
      if (typeof url !== "string") {
        throw new BootApiBodyError(`cmdline.${key}`, "an object value needs a string 'url'");
      }
      return `${key}={{ URL ${goQuote(url)} }}`;
    }
    throw new BootApiBodyError(
      `cmdline.${key}`,
      `must be true, a string or {"url": ...}, not ${jsonType(value)}`,
    );
  }).join(" ");
}

function compareCodePoints(a: string, b: string): number {
  const x = [...a];
  const y = [...b];
  for (let i = 0; i < Math.min(x.length, y.length); i++) {
    const d = x[i].codePointAt(0)! - y[i].codePointAt(0)!;
    if (d !== 0) return d;
  }
  return x.length - y.length;
}

/**
 * Expands pixiecore's cmdline template: text with `{{ URL "..." }}` actions (Go string literals, double
 * or back quotes; `{{-`/`-}}` trim markers; `{{/* comments *\/}}`; a bare string literal prints itself).
 * Other template actions are refused: pixiecore's template has no data and only the URL function.
 */
export function expandCmdline(template: string, url: (ref: string) => string): string {
  let out = "";
  let pos = 0;
  let trimNext = false;
  while (pos < template.length) {
    const open = template.indexOf("{{", pos);
    let text = template.slice(pos, open < 0 ? template.length : open);
    if (trimNext) text = text.replace(/^[ \t\r\n]+/, "");
    trimNext = false;
    if (open < 0) {
      out += text;
      break;
    }
    let i = open + 2;
    if (template[i] === "-" && /[ \t\r\n]/.test(template[i + 1] ?? "")) {
      text = text.replace(/[ \t\r\n]+$/, "");
      i += 2;
    }
    out += text;
    const action = parseAction(template, i, url);
    out += action.text;
    trimNext = action.trimNext;
    pos = action.end;
  }
  const cmdline = out.trim();
  if (cmdline.includes("\n")) throw new BootApiBodyError("cmdline", "contains a newline");
  return cmdline;
}

/** One action from `start` (just inside `{{` and any trim marker) to just after its `}}`. */
function parseAction(
  tpl: string,
  start: number,
  url: (ref: string) => string,
): { text: string; end: number; trimNext: boolean } {
  let i = skipSpace(tpl, start);
  let text = "";
  if (tpl.startsWith("/*", i)) {
    const close = tpl.indexOf("*/", i + 2);
    if (close < 0) throw new BootApiBodyError("cmdline", "unclosed template comment");
    i = skipSpace(tpl, close + 2);
  } else {
    let call = false;
    if (tpl.startsWith("URL", i) && /[ \t\r\n]/.test(tpl[i + 3] ?? "")) {
      call = true;
      i = skipSpace(tpl, i + 3);
    }
    const literal = goStringLiteral(tpl, i);
    if (literal === undefined) {
      throw new BootApiBodyError(
        "cmdline",
        `unsupported template action at ${JSON.stringify(tpl.slice(start - 2, start + 30))} ` +
          `(pixiecore's cmdline knows only {{ URL "..." }})`,
      );
    }
    text = call ? url(literal.value) : literal.value;
    i = skipSpace(tpl, literal.end);
  }
  let trimNext = false;
  if (tpl[i] === "-" && tpl.startsWith("}}", i + 1) && /[ \t\r\n]/.test(tpl[i - 1])) {
    trimNext = true;
    i++;
  }
  if (!tpl.startsWith("}}", i)) {
    throw new BootApiBodyError("cmdline", `template action not closed by }} at offset ${i}`);
  }
  return { text, end: i + 2, trimNext };
}

function skipSpace(text: string, i: number): number {
  while (i < text.length && /[ \t\r\n]/.test(text[i])) i++;
  return i;
}

/** A Go string literal (`"..."` with escapes, or `` `raw` ``) at `start`, or undefined when none is. */
function goStringLiteral(text: string, start: number): { value: string; end: number } | undefined {
  if (text[start] === "`") {
    const close = text.indexOf("`", start + 1);
    if (close < 0) return undefined;
    return { value: text.slice(start + 1, close).replaceAll("\r", ""), end: close + 1 };
  }
  if (text[start] !== '"') return undefined;
  const bytes: number[] = [];
  const encoder = new TextEncoder();
  let i = start + 1;
  for (let guard = 0; guard <= text.length; guard++) {
    const ch = text[i];
    if (ch === undefined || ch === "\n") {
      throw new BootApiBodyError("cmdline", "unterminated string in template");
    }
    if (ch === '"') {
      return { value: new TextDecoder().decode(new Uint8Array(bytes)), end: i + 1 };
    }
    if (ch !== "\\") {
      const cp = text.codePointAt(i)!;
      bytes.push(...encoder.encode(String.fromCodePoint(cp)));
      i += cp > 0xffff ? 2 : 1;
      continue;
    }
    const esc = text[i + 1];
    const simple: Record<string, number> = {
      a: 7,
      b: 8,
      f: 12,
      n: 10,
      r: 13,
      t: 9,
      v: 11,
      "\\": 92,
      '"': 34,
    };
    if (esc !== undefined && esc in simple) {
      bytes.push(simple[esc]);
      i += 2;
    } else if (esc === "x" && /^[0-9a-fA-F]{2}$/.test(text.slice(i + 2, i + 4))) {
      bytes.push(parseInt(text.slice(i + 2, i + 4), 16));
      i += 4;
    } else if (esc !== undefined && /^[0-7]{3}$/.test(text.slice(i + 1, i + 4))) {
      const value = parseInt(text.slice(i + 1, i + 4), 8);
      if (value > 255) throw new BootApiBodyError("cmdline", "octal escape above \\377 in template string");
      bytes.push(value);
      i += 4;
    } else if ((esc === "u" || esc === "U") && /^[0-9a-fA-F]+$/.test(hexRun(text, i + 2, esc))) {
      const digits = esc === "u" ? 4 : 8;
      const cp = parseInt(text.slice(i + 2, i + 2 + digits), 16);
      if (cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) {
        throw new BootApiBodyError("cmdline", "invalid \\u escape in template string");
      }
      bytes.push(...encoder.encode(String.fromCodePoint(cp)));
      i += 2 + digits;
    } else {
      throw new BootApiBodyError("cmdline", `invalid escape \\${esc ?? ""} in template string`);
    }
  }
  throw new BootApiBodyError("cmdline", "unterminated string in template");
}

function hexRun(text: string, at: number, esc: string): string {
  const digits = esc === "u" ? 4 : 8;
  const run = text.slice(at, at + digits);
  return run.length === digits ? run : "";
}

/** `value` quoted as Go's `%q` (strconv.Quote): printable runes as they are, the rest escaped. */
export function goQuote(value: string): string {
  let out = '"';
  for (const ch of value) {
    const cp = ch.codePointAt(0)!;
    if (ch === '"' || ch === "\\") out += `\\${ch}`;
    else if (ch === " " || /[\p{L}\p{M}\p{N}\p{P}\p{S}]/u.test(ch)) out += ch;
    else if (GO_ESCAPES[ch] !== undefined) out += GO_ESCAPES[ch];
    else if (cp < 0x20 || cp === 0x7f) out += `\\x${hex(cp, 2)}`;
    else if (cp >= 0xd800 && cp <= 0xdfff) out += "\ufffd"; // Go's decoder made a lone surrogate U+FFFD
    else if (cp < 0x10000) out += `\\u${hex(cp, 4)}`;
    else out += `\\U${hex(cp, 8)}`;
  }
  return `${out}"`;
}

const GO_ESCAPES: Record<string, string> = {
  "\x07": "\\a",
  "\b": "\\b",
  "\f": "\\f",
  "\n": "\\n",
  "\r": "\\r",
  "\t": "\\t",
  "\v": "\\v",
};

function hex(n: number, width: number): string {
  return n.toString(16).padStart(width, "0");
}

function jsonType(value: unknown): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return "a list";
  if (typeof value === "object") return "an object";
  return `a ${typeof value}`;
}
