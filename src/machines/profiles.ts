/**
 * Machine profiles and groups on disk (`--machines DIR`): `DIR/profiles/NAME.json` says what to boot,
 * `DIR/groups/NAME.json` which machines boot which profile. `parseProfile` and `parseGroup` are pure;
 * `loadMachines` reads the directory (bounded: {@linkcode MAX_MACHINE_FILES} files per folder, each at most
 * {@linkcode MAX_MACHINE_FILE_BYTES}) and returns a complete set or throws a {@linkcode MachinesError}
 * naming the file and the key, so a reload either swaps in a whole new set or keeps the old one.
 *
 * ## Profile files (exactly one boot kind)
 *
 * ```json
 * {"kernel": "debian/linux", "initrd": ["debian/initrd.gz"], "cmdline": "priority=low"}
 * {"iso": "images/rescue.iso"}
 * {"ipxe": "#!ipxe\nchain http://10.0.0.5/boot.ipxe"}
 * {"chain": "http://10.0.0.5/boot.ipxe"}
 * {"local": true}
 * {"menu": true}
 * ```
 *
 * `initrd` (a path or a list, default none) and `cmdline` (default "") go only with `kernel`. Optional on
 * any kind: `bootfile` (the DHCP boot file for machines on this profile) and `message` (one line shown
 * before booting). A boot source (`kernel`, `initrd`, `iso`, `chain`) is a path inside the netboot tree
 * (no `..`, not absolute, `/` separators) or an `http://`/`https://` URL; any other `scheme:` prefix is
 * refused (iPXE would read `name:rest` as a URI too). `bootfile` may also be a `tftp://` URL. Text that
 * ends up in a generated script (sources, `cmdline`, `message`) may hold no control characters, so a
 * profile cannot inject script lines. `profiles/boot-api.json` is refused: that name labels boot-API
 * answers.
 *
 * ## Group files
 *
 * ```json
 * {"profile": "debian", "selector": {"mac": "52-54-00-77-00-10", "arch": "efi64"}, "once": true}
 * ```
 *
 * `profile` must name a profile file; `selector` (default `{}`, which matches every machine) has the keys
 * `mac` (any spelling), `uuid` (any case, dashes optional), `arch` (`bios`, `efi32`, `efi64`,
 * `efi-arm64`, `efi-http`, `rpi`), `client` (`pxe`, `ipxe`, `http`) and `hostname` (compared without
 * case); `once` (default false) applies the profile to one boot per machine.
 *
 * Only `*.json` files count; hidden files (`.name.json`, editor swap files) and other names are skipped.
 * Missing `profiles/` or `groups/` folders mean none; a missing DIR is an error.
 * @module
 */
import { parseRemoteRef } from "../netboot/remote_url.ts";
import type {
  BootSource,
  Group,
  MachineArch,
  MachineClient,
  Profile,
  ProfileBoot,
  Selector,
} from "./model.ts";
import { errText } from "../errors.ts";
import {
  MACHINE_ARCHES,
  MACHINE_CLIENTS,
  MACHINE_NAME,
  machineMac,
  MachinesError,
  machineUuid,
} from "./keys.ts";

export { MachinesError } from "./keys.ts";

/** Profiles by name and groups sorted by name: one consistent reading of `--machines DIR`. */
export interface MachineSet {
  /** Profiles by name, in name order. */
  readonly profiles: ReadonlyMap<string, Profile>;
  /** Groups in name order (the order ties are broken in). */
  readonly groups: readonly Group[];
}

/** An empty set: no profiles, no groups (today's behaviour for every machine). */
export const EMPTY_MACHINE_SET: MachineSet = { profiles: new Map(), groups: [] };

/** At most this many entries in `profiles/` or in `groups/`. */
export const MAX_MACHINE_FILES = 10_000;
/** A profile or group file may be at most this many bytes. */
export const MAX_MACHINE_FILE_BYTES = 1024 * 1024;
/** Longest `cmdline` (Linux's COMMAND_LINE_SIZE is 2048 on x86, 4096 on some arches). */
export const MAX_CMDLINE = 4096;
/** Most initrds in one profile. */
export const MAX_INITRDS = 32;
/** Longest boot source, `bootfile`, `message` or hostname. */
const MAX_TEXT = 2048;

/** The name reserved for profiles that come from the boot API (`--boot-api`). */
export const BOOT_API_PROFILE = "boot-api";

const KINDS = ["kernel", "iso", "ipxe", "chain", "local", "menu"] as const;
const PROFILE_KEYS = new Set<string>([...KINDS, "initrd", "cmdline", "bootfile", "message"]);
const GROUP_KEYS = new Set(["profile", "selector", "once"]);
const SELECTOR_KEYS = new Set(["mac", "uuid", "arch", "client", "hostname"]);

// deno-lint-ignore no-control-regex
const CONTROL = /[\u0000-\u001f\u007f]/;

type Json = Record<string, unknown>;

/**
 * Parses one profile file's text; `source` names the file in errors (default `profiles/NAME.json`).
 * Throws {@linkcode MachinesError}.
 */
export function parseProfile(name: string, text: string, source = `profiles/${name}.json`): Profile {
  const fail = (msg: string): never => {
    throw new MachinesError(`${source}: ${msg}`);
  };
  checkName(name, source);
  if (name === BOOT_API_PROFILE) fail(`the name "${BOOT_API_PROFILE}" is reserved for boot-API answers`);
  const raw = parseObject(text, source);
  for (const key of Object.keys(raw)) {
    if (!PROFILE_KEYS.has(key)) fail(`unknown key "${key}" (known: ${[...PROFILE_KEYS].join(", ")})`);
  }
  const kinds = KINDS.filter((k) => k in raw);
  if (kinds.length === 0) fail(`needs one of ${KINDS.map((k) => `"${k}"`).join(", ")}`);
  if (kinds.length > 1) {
    fail(`${kinds.map((k) => `"${k}"`).join(" and ")} cannot be combined: a profile boots exactly one thing`);
  }
  const kind = kinds[0];
  for (const key of ["initrd", "cmdline"]) {
    if (key in raw && kind !== "kernel") fail(`"${key}" goes only with "kernel"`);
  }
  const hashes = new Map<string, string>();
  const source_ = (key: string, value: unknown) => bootSource(value, `"${key}"`, fail, HTTP, hashes);
  let boot: ProfileBoot;
  switch (kind) {
    case "kernel":
      boot = {
        kind,
        kernel: source_("kernel", raw.kernel),
        initrd: initrds(raw.initrd, fail, hashes),
        cmdline: raw.cmdline === undefined ? "" : line(raw.cmdline, `"cmdline"`, MAX_CMDLINE, fail),
      };
      break;
    case "iso":
      boot = { kind, iso: source_("iso", raw.iso) };
      break;
    case "chain":
      boot = { kind, url: source_("chain", raw.chain) };
      break;
    case "ipxe": {
      const script = raw.ipxe;
      if (typeof script !== "string") fail(`"ipxe" must be a string (an iPXE script)`);
      if (!/^#!ipxe\s/.test(script as string)) fail(`"ipxe" must start with "#!ipxe" and a new line`);
      boot = { kind, script: script as string };
      break;
    }
    case "local":
    case "menu":
      if (raw[kind] !== true) fail(`"${kind}" must be true`);
      boot = { kind };
      break;
  }
  const profile: {
    name: string;
    boot: ProfileBoot;
    bootfile?: string;
    message?: string;
    sha256?: ReadonlyMap<string, string>;
  } = { name, boot };
  if (hashes.size > 0) profile.sha256 = hashes;
  if (raw.bootfile !== undefined) profile.bootfile = bootFile(raw.bootfile, fail);
  if (raw.message !== undefined) profile.message = line(raw.message, `"message"`, MAX_TEXT, fail);
  return profile;
}

/**
 * Parses one group file's text against the known profile names; `source` names the file in errors
 * (default `groups/NAME.json`). Throws {@linkcode MachinesError}.
 */
export function parseGroup(
  name: string,
  text: string,
  profileNames: ReadonlySet<string> | ReadonlyMap<string, unknown>,
  source = `groups/${name}.json`,
): Group {
  const fail = (msg: string): never => {
    throw new MachinesError(`${source}: ${msg}`);
  };
  checkName(name, source);
  const raw = parseObject(text, source);
  for (const key of Object.keys(raw)) {
    if (!GROUP_KEYS.has(key)) fail(`unknown key "${key}" (known: ${[...GROUP_KEYS].join(", ")})`);
  }
  if (typeof raw.profile !== "string") fail(`"profile" must be the name of a profile (profiles/NAME.json)`);
  const profile = raw.profile as string;
  if (!profileNames.has(profile)) fail(`"profile": no profile "${profile}" (profiles/${profile}.json)`);
  if (raw.once !== undefined && typeof raw.once !== "boolean") fail(`"once" must be true or false`);
  return { name, profile, selector: selector(raw.selector ?? {}, fail), once: raw.once === true };
}

/**
 * Reads `dir/profiles/*.json` and `dir/groups/*.json` into a {@linkcode MachineSet}. Throws
 * {@linkcode MachinesError} naming the file and the key for the first broken file, or when `dir` is
 * missing; nothing is half-loaded.
 */
export async function loadMachines(dir: string): Promise<MachineSet> {
  const base = dir.replace(/(.)\/+$/, "$1");
  let info: Deno.FileInfo;
  try {
    info = await Deno.stat(base);
  } catch (err) {
    throw new MachinesError(`${base}: cannot read the machines directory (${errText(err)})`);
  }
  if (!info.isDirectory) throw new MachinesError(`${base}: the machines directory is not a directory`);
  const profiles = new Map<string, Profile>();
  for (const [name, file, text] of await readFolder(`${base}/profiles`)) {
    profiles.set(name, parseProfile(name, text, file));
  }
  const groups: Group[] = [];
  for (const [name, file, text] of await readFolder(`${base}/groups`)) {
    groups.push(parseGroup(name, text, profiles, file));
  }
  return { profiles, groups };
}

/** The `[name, file, text]` of every `*.json` file of `folder`, sorted by name; [] when it is missing. */
async function readFolder(folder: string): Promise<[string, string, string][]> {
  const names: string[] = [];
  try {
    for await (const entry of Deno.readDir(folder)) {
      if (names.length >= MAX_MACHINE_FILES) {
        throw new MachinesError(`${folder}: more than ${MAX_MACHINE_FILES} files`);
      }
      if (entry.name.startsWith(".") || !entry.name.endsWith(".json")) continue;
      names.push(entry.name);
    }
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return [];
    if (err instanceof MachinesError) throw err;
    throw new MachinesError(`${folder}: cannot list (${errText(err)})`);
  }
  names.sort();
  const out: [string, string, string][] = [];
  for (const fileName of names) {
    const file = `${folder}/${fileName}`;
    const name = fileName.slice(0, -".json".length);
    const text = await readBounded(file);
    if (text !== null) out.push([name, file, text]);
  }
  return out;
}

/** The text of `file` (at most MAX_MACHINE_FILE_BYTES), or null for a directory named `*.json`. */
async function readBounded(file: string): Promise<string | null> {
  let f: Deno.FsFile;
  try {
    f = await Deno.open(file, { read: true });
  } catch (err) {
    throw new MachinesError(`${file}: cannot read (${errText(err)})`);
  }
  try {
    const info = await f.stat();
    if (!info.isFile) return null;
    if (info.size > MAX_MACHINE_FILE_BYTES) {
      throw new MachinesError(`${file}: larger than ${MAX_MACHINE_FILE_BYTES} bytes`);
    }
    // one byte more than the size: a file that grew since the stat is noticed, not cut short
    const buf = new Uint8Array(info.size + 1);
    let at = 0;
    for (let reads = 0; reads < 1024 && at < buf.length; reads++) {
      const n = await f.read(buf.subarray(at));
      if (n === null) break;
      at += n;
    }
    if (at > info.size) throw new MachinesError(`${file}: changed while it was read; try again`);
    try {
      return new TextDecoder("utf-8", { fatal: true }).decode(buf.subarray(0, at));
    } catch {
      throw new MachinesError(`${file}: not UTF-8 text`);
    }
  } catch (err) {
    if (err instanceof MachinesError) throw err;
    throw new MachinesError(`${file}: cannot read (${errText(err)})`);
  } finally {
    f.close();
  }
}

function checkName(name: string, source: string): void {
  if (!MACHINE_NAME.test(name)) {
    throw new MachinesError(
      `${source}: the name "${name}" must be a letter or digit, then letters, digits, ".", "_" or "-" (at most 64)`,
    );
  }
}

function parseObject(text: string, source: string): Json {
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (err) {
    throw new MachinesError(`${source}: not valid JSON (${errText(err)})`);
  }
  if (typeof data !== "object" || data === null || Array.isArray(data)) {
    throw new MachinesError(`${source}: must be a JSON object`);
  }
  return data as Json;
}

/** One line of text: a string without control characters, at most `max` characters. */
function line(value: unknown, key: string, max: number, fail: (msg: string) => never): string {
  if (typeof value !== "string") return fail(`${key} must be a string`);
  if (CONTROL.test(value)) return fail(`${key} must be one line without control characters`);
  if (value.length > max) return fail(`${key} is longer than ${max} characters`);
  return value;
}

/**
 * A boot source: an `http(s)://` URL kept as written (iPXE variables such as `${net0/mac}` must survive),
 * or a path inside the netboot tree, normalised to `a/b/c`.
 */
function bootSource(
  value: unknown,
  key: string,
  fail: (msg: string) => never,
  schemes = HTTP,
  hashes?: Map<string, string>,
): BootSource {
  if (typeof value === "object" && value !== null && !Array.isArray(value) && hashes !== undefined) {
    // {"url": "http(s)://...", "sha256": "..."}: a remote file checked before it is served
    let ref;
    try {
      ref = parseRemoteRef(value, key);
    } catch (err) {
      return fail(errText(err));
    }
    if (ref === null) return fail(`${key} must be a path in the netboot tree or an http(s) URL`);
    if (ref.sha256 !== undefined) hashes.set(ref.url, ref.sha256);
    return ref.url;
  }
  if (typeof value !== "string") return fail(`${key} must be a path in the netboot tree or an http(s) URL`);
  const text = line(value, key, MAX_TEXT, fail);
  if (/\s/.test(text)) return fail(`${key} must not contain spaces ("${text}")`);
  const scheme = /^([a-z][a-z0-9+.-]*):/i.exec(text);
  if (scheme) {
    const name = scheme[1].toLowerCase();
    if (!schemes.includes(name)) {
      return fail(`${key}: "${name}:" is not allowed (${schemes.map((s) => s + "://").join(", ")} only)`);
    }
    // WHATWG URL parsing forgives `http:///x` and `http:x`: ask for `scheme://host` as written
    if (!/^[a-z][a-z0-9+.-]*:\/\/[^/?#@]/i.test(text)) return fail(`${key}: the URL has no host: "${text}"`);
    try {
      new URL(text);
    } catch {
      return fail(`${key}: not a valid URL: "${text}"`);
    }
    return text;
  }
  if (text.startsWith("/")) {
    return fail(`${key} must be relative to the netboot tree, not absolute ("${text}")`);
  }
  if (text.includes("\\")) return fail(`${key} must use "/" between folders ("${text}")`);
  const segments = text.split("/").filter((s) => s !== "" && s !== ".");
  if (segments.includes("..")) return fail(`${key} must not leave the netboot tree ("..")`);
  if (segments.length === 0) return fail(`${key} is empty`);
  return segments.join("/");
}

const HTTP = ["http", "https"];

function isUrlObject(value: unknown): boolean {
  return typeof value === "object" && value !== null && !Array.isArray(value) && "url" in value;
}

function initrds(value: unknown, fail: (msg: string) => never, hashes: Map<string, string>): BootSource[] {
  if (value === undefined) return [];
  const list = typeof value === "string" || isUrlObject(value) ? [value] : value;
  if (!Array.isArray(list) || list.some((v) => typeof v !== "string" && !isUrlObject(v))) {
    return fail(`"initrd" must be a list of paths or URLs (or {"url", "sha256"})`);
  }
  if (list.length > MAX_INITRDS) return fail(`"initrd" lists more than ${MAX_INITRDS} files`);
  return list.map((v, i) => bootSource(v, `"initrd"[${i}]`, fail, HTTP, hashes));
}

function bootFile(value: unknown, fail: (msg: string) => never): string {
  if (typeof value !== "string") return fail(`"bootfile" must be a string`);
  if (value.length > 255) return fail(`"bootfile" is longer than 255 characters (DHCP option 67)`);
  return bootSource(value, `"bootfile"`, fail, [...HTTP, "tftp"]);
}

function selector(value: unknown, fail: (msg: string) => never): Selector {
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    return fail(`"selector" must be an object`);
  }
  const raw = value as Json;
  const out: { -readonly [K in keyof Selector]: Selector[K] } = {};
  for (const [key, v] of Object.entries(raw)) {
    const at = `"selector.${key}"`;
    if (!SELECTOR_KEYS.has(key)) {
      return fail(`unknown selector key "${key}" (known: ${[...SELECTOR_KEYS].join(", ")})`);
    }
    if (typeof v !== "string") return fail(`${at} must be a string`);
    switch (key) {
      case "mac":
        out.mac = machineMac(v) ?? fail(`${at}: not a MAC address: "${v}"`);
        break;
      case "uuid":
        out.uuid = machineUuid(v) ?? fail(`${at}: not a UUID (32 hex digits): "${v}"`);
        break;
      case "arch":
        if (!MACHINE_ARCHES.includes(v as MachineArch)) {
          return fail(`${at} must be one of ${MACHINE_ARCHES.join(", ")} (not "${v}")`);
        }
        out.arch = v as MachineArch;
        break;
      case "client":
        if (!MACHINE_CLIENTS.includes(v as MachineClient)) {
          return fail(`${at} must be one of ${MACHINE_CLIENTS.join(", ")} (not "${v}")`);
        }
        out.client = v as MachineClient;
        break;
      case "hostname": {
        const host = line(v, at, 255, fail).trim().toLowerCase();
        if (host === "") return fail(`${at} is empty`);
        out.hostname = host;
        break;
      }
    }
  }
  return out;
}
