/**
 * What TFTP and HTTP serve: the netboot tree plus the files pypxe generates from its one boot-menu model
 * (`menu.ts`), behind one cache. Both servers read through {@linkcode BootFiles}, so a name fetched over
 * TFTP and over HTTP returns the same bytes.
 *
 * Lookup order for a name: the overlay's file; then a generated iPXE menu (`boot.http.ipxe`,
 * `boot.ipxe`, when HTTP is on: the menu links ISOs and kernels over HTTP; without HTTP only
 * `boot.ipxe`, over TFTP, and only when the tree has something to list: a `menu.json`, a kernel folder
 * or an iPXE script, see `dropins.ts`); then the embedded tree; then the generated `grub/grub.cfg`.
 * Generated menus name the server by the address the client can reach (the local interface on the
 * client's subnet, else the advertised address; for an IPv6 client the bracketed IPv6 address of the
 * interface whose prefix holds it, else `[advertiseHost6]`). With per-machine boot on (`machines`), the per-machine
 * files of `machine.ts` come first (after the overlay's file of the same name).
 * @module
 */
import { getLogger } from "@logtape/logtape";
import { inSubnet, ipToInt, type Ipv4Interface, ipv4Interfaces } from "../net.ts";
import { type Ipv6Address, ipv6Interfaces, isRoutable6 } from "../net6.ts";
import { parseIpv6 } from "../dhcp6/address.ts";
import { plainIp } from "../dual_stack.ts";
import { FileCache } from "./cache.ts";
import { type DropIns, DropInScanner } from "./dropins.ts";
import { NetbootError, type NetbootFile, type NetbootFs, normaliseName } from "./fs.ts";
import { GRUB_CONFIG_NAME, grubConfig } from "./grub.ts";
import { ipxeMenu } from "./ipxe.ts";
import type { MachineDecision } from "../machines/runtime.ts";
import type { Profile } from "../machines/model.ts";
import { errText } from "../errors.ts";
import type { RemoteCache } from "./remote.ts";
import type { RemoteFile } from "./remote_file.ts";
import { displayUrl, remoteName, type RemoteRef } from "./remote_url.ts";
import {
  GRUB_MACHINE_HOOK,
  grubMachineConfig,
  ipxeMachineScript,
  type MachineFileName,
  machineFileName,
  profileFiles,
  pxelinuxMachineConfig,
} from "./machine.ts";
import {
  type IsoImage,
  MENU_FILE_NAME,
  type MenuEntry,
  type MenuFile,
  MenuFileError,
  parseMenuFile,
} from "./menu.ts";

/** Names answered with a generated iPXE menu (when HTTP is on) unless the overlay holds that file. */
export const IPXE_MENU_NAMES: readonly string[] = ["boot.http.ipxe", "boot.ipxe"];

/** The menu generated without HTTP (over TFTP), when the tree has something to list. */
export const TFTP_MENU_NAME = "boot.ipxe";

/** Every name pypxe may generate (compared case-insensitively). */
export const GENERATED_FILES: readonly string[] = [GRUB_CONFIG_NAME, ...IPXE_MENU_NAMES];

/** Options of {@linkcode BootFiles}. */
export interface BootFilesOptions {
  readonly netboot: NetbootFs;
  /** Port of the HTTP service; null (the default) when HTTP is off: no iPXE menus are generated. */
  readonly httpPort?: number | null;
  /** The server's address in generated menus when no local interface shares the client's subnet. */
  readonly advertiseHost?: string;
  /** Files up to this size are kept in memory; default 4 MiB (0: no file bodies are kept). */
  readonly cacheFileMax?: number;
  /** Total bytes of kept file bodies; default 64 MiB. */
  readonly cacheTotalMax?: number;
  /** A lookup and the menu inputs are reused for this long (ms) before the tree is asked again; default 1000. */
  readonly revalidateMs?: number;
  /** Local IPv4 interfaces (tests inject them); default: the host's, plus loopback. */
  readonly interfaces?: () => readonly Ipv4Interface[];
  /**
   * The server's IPv6 address (DHCP6_SERVER_IP) in menus for an IPv6 client no local interface shares a
   * prefix with; "" or absent: the IPv4 `advertiseHost`.
   */
  readonly advertiseHost6?: string;
  /** Local IPv6 interface addresses (tests inject them); default: the host's (`net6.ts`). */
  readonly interfaces6?: () => readonly Ipv6Address[];
  /** Per-machine boot (`--machines`, `--boot-api`): per-machine files are generated from its answers. */
  readonly machines?: MachineChooser;
  /**
   * The remote-file cache (`remote.ts`), opened on first use: `http(s)://` kernels, initrds and ISOs of
   * menus and profiles are then served by pypxe as `remote/<key>/<name>` over TFTP and HTTP. Without it
   * such URLs are handed to the client as they are.
   */
  readonly remoteCache?: () => Promise<RemoteCache>;
}

/** What the netboot layer asks the per-machine boot state (`machines/runtime.ts`). */
export interface MachineChooser {
  /** False when neither profiles nor a boot API are configured. */
  readonly enabled: boolean;
  /** What `mac` boots (never rejects). */
  decideFor(mac: string): Promise<MachineDecision>;
  /** The machine at `clientIp` got its per-machine file: the boot counts once `files` were all sent. */
  expect(
    clientIp: string,
    mac: string,
    decision: MachineDecision & { kind: "profile" },
    files: string[],
  ): void;
}

/** The tree's ISO images, memdisk and drop-ins, listed at most every `revalidateMs`. */
interface TreeInputs {
  readonly isos: IsoImage[];
  readonly memdisk: string | null;
  readonly dropins: DropIns;
  /** The newest modification time of the ISOs and the drop-ins' files. */
  readonly mtime: number;
  readonly at: number;
}

const log = getLogger(["pypxe", "netboot"]);

/** `menu.json` as read for one lookup (re-parsed only when its path, size or mtime changed). */
interface MenuInput {
  /** The parsed menu file, null when there is none or it is broken (see `notice`). */
  readonly menu: MenuFile | null;
  readonly notice?: string;
  /** Its modification time, or 1970 without one. */
  readonly mtime: Date;
  /** `path size mtime` of the file parsed. */
  readonly key: string;
}

interface Lookup {
  readonly file: NetbootFile;
  readonly at: number;
}

/** The served view of the tree: lookups, generated files, and the in-memory bodies of small files. */
export class BootFiles {
  /** Port put into generated iPXE menus; null: HTTP is off (no iPXE menus are generated). */
  httpPort: number | null;
  readonly netboot: NetbootFs;
  readonly #advertise: string | undefined;
  readonly #revalidateMs: number;
  readonly #interfaces: () => readonly Ipv4Interface[];
  readonly #advertise6: string;
  readonly #interfaces6: () => readonly Ipv6Address[];
  readonly #bodies: FileCache;
  readonly #lookups = new Map<string, Lookup>();
  #tree: TreeInputs | null = null;
  #treeListing: Promise<TreeInputs> | null = null;
  #menu: MenuInput | null = null;
  readonly #scanner = new DropInScanner();
  /** The drop-in warnings last logged, so a listing logs them once, not at every revalidation. */
  #warned = "";
  readonly #machines: MachineChooser | undefined;
  readonly #remoteCache: (() => Promise<RemoteCache>) | undefined;
  /** Remote files the menus and profiles named, by served name (lower case). */
  readonly #remotes = new Map<string, RemoteRef>();

  /** Creates the view; nothing is read until the first lookup. */
  constructor(opts: BootFilesOptions) {
    this.netboot = opts.netboot;
    this.httpPort = opts.httpPort ?? null;
    this.#advertise = opts.advertiseHost;
    this.#revalidateMs = opts.revalidateMs ?? 1000;
    this.#interfaces = opts.interfaces ?? localInterfaces;
    this.#advertise6 = opts.advertiseHost6 ?? "";
    this.#interfaces6 = opts.interfaces6 ?? localInterfaces6;
    this.#machines = opts.machines;
    this.#remoteCache = opts.remoteCache;
    this.#bodies = new FileCache({
      maxFileBytes: opts.cacheFileMax ?? 4 << 20,
      maxTotalBytes: opts.cacheTotalMax ?? 64 << 20,
    });
  }

  /**
   * Resolves `name` for the client at `clientIp` (see the module doc for the order); throws
   * `NetbootError` when nothing of that name can be served.
   */
  async resolve(name: string, clientIp?: string): Promise<NetbootFile> {
    const key = normaliseName(name).join("/").toLowerCase();
    if (key.startsWith("remote/") && this.#remoteCache !== undefined) {
      return await this.#remoteFile(key, name);
    }
    const perMachine = this.#machines?.enabled ? machineFileName(key) : null;
    if (perMachine !== null) {
      const real = await this.#lookup(name);
      if (real !== null && real.layer === "overlay") return real;
      const file = await this.#machineFile(key, perMachine, clientIp);
      if (file !== null) return file;
      throw new NetbootError("not-found", name, "no per-machine file for this machine");
    }
    if (this.httpPort !== null && IPXE_MENU_NAMES.includes(key)) {
      const real = await this.#lookup(name);
      if (real !== null && real.layer === "overlay") return real;
      return await this.#ipxeMenu(key, "http", clientIp);
    }
    const real = await this.#lookup(name);
    if (key === TFTP_MENU_NAME && this.httpPort === null && real?.layer !== "overlay") {
      // without HTTP, the menu loads kernels over TFTP; a tree with nothing to list keeps the embedded one
      const [tree, menu] = await Promise.all([this.#treeInputs(), this.#menuInput()]);
      const scripts = tree.dropins.scripts.filter((s) => s.toLowerCase() !== key);
      if (menu.key !== "" || tree.dropins.kernels.length > 0 || scripts.length > 0) {
        return await this.#ipxeMenu(key, "tftp", clientIp);
      }
    }
    if (real !== null) return real;
    if (key === GRUB_CONFIG_NAME) return await this.#grubMenu();
    throw new NetbootError("not-found", name, "no such file");
  }

  /**
   * A regular file looked up less than `revalidateMs` ago whose bytes are in memory, without awaiting
   * anything (the HTTP fast path for small files); null otherwise.
   */
  peek(name: string): { file: NetbootFile; bytes: Uint8Array } | null {
    const hit = this.#lookups.get(name);
    if (hit === undefined || performance.now() - hit.at >= this.#revalidateMs) return null;
    const bytes = this.#bodies.get(hit.file);
    return bytes === null ? null : { file: hit.file, bytes };
  }

  /**
   * The whole content of `file` when it is generated or small enough to keep (read once, then served
   * from memory while its size and mtime stay the same); null for a file to be streamed from disk.
   */
  async bytes(file: NetbootFile): Promise<Uint8Array | null> {
    if (file.content !== undefined) return file.content;
    if (file.remote !== undefined) return null;
    if (!this.#bodies.accepts(file)) return null;
    const kept = this.#bodies.get(file);
    if (kept !== null) return kept;
    const bytes = await Deno.readFile(file.path);
    if (bytes.length === file.size) this.#bodies.put(file, bytes);
    else this.forget(file.name); // changed between stat and read: looked up afresh next time
    return bytes;
  }

  /** Drops the remembered lookup of `name` (the file vanished or changed under a request). */
  forget(name: string): void {
    this.#lookups.delete(name);
  }

  /** Drops every remembered lookup and the menu inputs (SIGHUP); kept bodies revalidate themselves. */
  reload(): void {
    this.#lookups.clear();
    this.#tree = null;
    this.#menu = null;
  }

  /**
   * The address generated menus give a client at `clientIp`, ready for a URL: `192.168.0.2`, or for an
   * IPv6 client `[fd00::1]` (the local address whose prefix holds the client, else `[advertiseHost6]`).
   */
  hostFor(clientIp?: string): string {
    const ip = clientIp === undefined ? undefined : plainIp(clientIp.replace(/%.*$/, ""));
    if (ip !== undefined && ipToInt(ip) !== null) {
      for (const i of this.#interfaces()) if (inSubnet(ip, i.address, i.netmask)) return i.address;
    } else if (ip !== undefined && ip.includes(":")) {
      const local = this.#hostFor6(ip);
      if (local !== null) return `[${local}]`;
    }
    return this.#advertise ?? "127.0.0.1";
  }

  /** The local IPv6 address sharing a prefix with `clientIp` (`::1` for `::1`), else `advertiseHost6`. */
  #hostFor6(clientIp: string): string | null {
    const client = parseIpv6(clientIp);
    if (client === undefined) return null;
    if (clientIp === "::1") return "::1";
    // a link-local client matches every interface's fe80::/64; such an address needs a zone in a URL
    if (isRoutable6(clientIp)) {
      for (const i of this.#interfaces6()) {
        if (!isRoutable6(i.address)) continue;
        const local = parseIpv6(i.address);
        if (local !== undefined && samePrefix(client, local, i.prefix)) return i.address;
      }
    }
    return this.#advertise6 === "" ? null : this.#advertise6;
  }

  async #lookup(name: string): Promise<NetbootFile | null> {
    const now = performance.now();
    const hit = this.#lookups.get(name);
    if (hit !== undefined && now - hit.at < this.#revalidateMs) return hit.file;
    let file: NetbootFile;
    try {
      file = await this.netboot.resolve(name);
    } catch (err) {
      this.#lookups.delete(name);
      if (err instanceof NetbootError && err.code === "not-found") return null;
      throw err;
    }
    // the same object while it is unchanged, so what servers derive from it (headers) stays valid
    const same = hit !== undefined && hit.file.path === file.path && hit.file.size === file.size &&
      hit.file.mtime?.getTime() === file.mtime?.getTime();
    const kept = same ? hit.file : file;
    if (this.#lookups.size >= 10_000) this.#lookups.delete(this.#lookups.keys().next().value!);
    this.#lookups.set(name, { file: kept, at: now });
    return kept;
  }

  async #ipxeMenu(name: string, transport: "http" | "tftp", clientIp?: string): Promise<NetbootFile> {
    const [tree, menu] = await Promise.all([this.#treeInputs(), this.#menuInput()]);
    const text = ipxeMenu({
      serverIp: this.hostFor(clientIp),
      httpPort: this.httpPort,
      isos: tree.isos,
      memdisk: tree.memdisk,
      entries: (menu.menu?.entries ?? []).map((e) => this.#localEntry(e, menu.menu?.hashes)),
      transport,
      title: menu.menu?.title,
      timeout: menu.menu?.timeout,
      default: menu.menu?.default,
      notice: menu.notice,
      kernels: tree.dropins.kernels,
      // a menu never lists itself (a user's script of that name is served instead of it)
      scripts: tree.dropins.scripts.filter((s) => s.toLowerCase() !== name),
      warnings: tree.dropins.warnings,
    });
    return generated(name, text, new Date(Math.max(tree.mtime, menu.mtime.getTime())));
  }

  /**
   * The name pypxe serves `url` under (`remote/<key>/<name>`), remembered so a request for it finds the
   * URL; `url` itself when there is no remote cache or it holds iPXE settings (`${...}`).
   */
  localName(url: string, sha256?: string): string {
    if (this.#remoteCache === undefined || !/^https?:\/\//i.test(url) || url.includes("${")) return url;
    const name = remoteName(url);
    const key = name.toLowerCase();
    this.#remotes.delete(key);
    this.#remotes.set(key, sha256 === undefined ? { url } : { url, sha256 });
    if (this.#remotes.size > 10_000) this.#remotes.delete(this.#remotes.keys().next().value!);
    return name;
  }

  /** Registers the remote files of `menu.json` and of `profiles` (at start, before any request). */
  async prime(profiles: readonly Profile[] = []): Promise<void> {
    const menu = (await this.#menuInput()).menu;
    for (const entry of menu?.entries ?? []) this.#localEntry(entry, menu?.hashes);
    for (const profile of profiles) this.#localProfile(profile);
  }

  /** Why `menu.json` cannot be used (its error, naming the entry), or undefined when it is fine or absent. */
  async menuProblem(): Promise<string | undefined> {
    return (await this.#menuInput()).notice;
  }

  /** Every remote file named so far, for `pypxe cache fetch` and the status page. */
  remoteRefs(): RemoteRef[] {
    return [...this.#remotes.values()];
  }

  /** A menu entry with its remote kernel and initrds served by pypxe. */
  #localEntry<T extends MenuEntry>(entry: T, hashes?: ReadonlyMap<string, string>): T {
    if (this.#remoteCache === undefined) return entry;
    const local = (p: string) => this.localName(p, hashes?.get(p));
    return { ...entry, kernel: local(entry.kernel), initrd: entry.initrd.map(local) };
  }

  /** A profile with its remote files served by pypxe. */
  #localProfile(profile: Profile): Profile {
    const boot = profile.boot;
    const local = (p: string) => this.localName(p, profile.sha256?.get(p));
    if (boot.kind === "kernel") {
      return { ...profile, boot: { ...boot, kernel: local(boot.kernel), initrd: boot.initrd.map(local) } };
    }
    if (boot.kind === "iso") return { ...profile, boot: { ...boot, iso: local(boot.iso) } };
    return profile;
  }

  async #remoteFile(key: string, name: string): Promise<NetbootFile> {
    // a complete copy looked up less than `revalidateMs` ago is served like a local file (and peek()ed)
    const hit = this.#lookups.get(key);
    if (hit !== undefined && performance.now() - hit.at < this.#revalidateMs) return hit.file;
    const ref = this.#remotes.get(key);
    if (ref === undefined) {
      throw new NetbootError("not-found", name, "no menu entry or profile names this remote file");
    }
    const cache = await this.#remoteCache!();
    let rf: RemoteFile;
    try {
      rf = await cache.open(ref.url, ref.sha256 === undefined ? {} : { sha256: ref.sha256 });
      // without a Content-Length the size (TFTP's tsize, HTTP's length) is only known at the end
      if (rf.size === undefined) await rf.done;
    } catch (err) {
      throw new NetbootError("unavailable", name, `${displayUrl(ref.url)}: ${errText(err)}`);
    }
    if (rf.complete && rf.path !== null) {
      const file: NetbootFile = {
        name: key,
        path: rf.path,
        size: rf.size!,
        mtime: rf.mtime,
        layer: "remote",
      };
      rf.close();
      const kept = hit !== undefined && hit.file.path === file.path && hit.file.size === file.size
        ? hit.file
        : file;
      if (this.#lookups.size >= 10_000) this.#lookups.delete(this.#lookups.keys().next().value!);
      this.#lookups.set(key, { file: kept, at: performance.now() });
      return kept;
    }
    return { name: key, path: "", size: rf.size!, mtime: rf.mtime, layer: "remote", remote: rf };
  }

  /** A machine's generated file (see `machine.ts`); null when the loader should look further. */
  async #machineFile(key: string, wanted: MachineFileName, clientIp?: string): Promise<NetbootFile | null> {
    const decision = await this.#machines!.decideFor(wanted.mac);
    if (decision.kind === "not-ours") return null;
    const profile = decision.kind === "profile" ? this.#localProfile(decision.profile) : null;
    const why = decision.kind !== "profile"
      ? "no profile"
      : decision.via === "next"
      ? "one-shot"
      : decision.via === "api"
      ? "boot API"
      : `group ${decision.group}`;
    const count = (files: string[]) => {
      if (decision.kind === "profile" && clientIp !== undefined) {
        this.#machines!.expect(clientIp, wanted.mac, decision, [key, ...files]);
      }
    };
    let text: string | null;
    if (wanted.loader === "ipxe") {
      const host = this.hostFor(clientIp);
      const httpBase = this.httpPort === null
        ? null
        : `http://${host}${this.httpPort === 80 ? "" : `:${this.httpPort}`}`;
      text = profile === null ? null : ipxeMachineScript({
        mac: wanted.mac,
        profile,
        why,
        fileBase: httpBase ?? `tftp://${host}`,
        httpBase,
      });
      if (text === null) {
        // no profile, or the menu: what boot(.http).ipxe would be for this client
        const menuName = this.httpPort !== null ? "boot.http.ipxe" : TFTP_MENU_NAME;
        const menu = await this.resolve(menuName, clientIp);
        const bytes = await this.bytes(menu);
        if (bytes === null) return null;
        count([]);
        return generated(key, new TextDecoder().decode(bytes), menu.mtime ?? new Date());
      }
    } else if (wanted.loader === "grub") {
      text = grubMachineConfig(wanted.mac, profile, why);
    } else {
      const tree = await this.#treeInputs();
      text = profile === null ? null : pxelinuxMachineConfig(wanted.mac, profile, { memdisk: tree.memdisk });
    }
    if (text === null) return null;
    count(profile === null ? [] : profileFiles(profile));
    return generated(key, text, new Date());
  }

  async #grubMenu(): Promise<NetbootFile> {
    const [tree, menu] = await Promise.all([this.#treeInputs(), this.#menuInput()]);
    const { kernels, warnings, mtime } = tree.dropins;
    const local = menu.menu === null
      ? null
      : { ...menu.menu, entries: menu.menu.entries.map((e) => this.#localEntry(e, menu.menu?.hashes)) };
    let text = grubConfig({ menu: local, notice: menu.notice, kernels, warnings });
    if (this.#machines?.enabled) text = [...GRUB_MACHINE_HOOK, text].join("\n");
    // dated like menu.json and the kernel folders, so HTTP validators and caches see a change
    return generated(GRUB_CONFIG_NAME, text, new Date(Math.max(menu.mtime.getTime(), mtime)));
  }

  /** `menu.json`, looked up at every call (an edit shows at once) and parsed when it changed. */
  async #menuInput(): Promise<MenuInput> {
    let file: NetbootFile | null = null;
    try {
      file = await this.netboot.resolve(MENU_FILE_NAME);
    } catch (err) {
      if (!(err instanceof NetbootError)) throw err;
    }
    const key = file === null ? "" : `${file.path} ${file.size} ${file.mtime?.getTime()}`;
    if (this.#menu !== null && this.#menu.key === key) return this.#menu;
    let menu: MenuFile | null = null;
    let notice: string | undefined;
    if (file !== null) {
      try {
        menu = parseMenuFile(await Deno.readTextFile(file.path));
      } catch (err) {
        if (!(err instanceof MenuFileError) && !(err instanceof Deno.errors.NotFound)) throw err;
        notice = err.message;
      }
    }
    this.#menu = { menu, notice, mtime: file?.mtime ?? new Date(0), key };
    return this.#menu;
  }

  /** The ISO list and memdisk, re-listed at most every `revalidateMs` (one listing at a time). */
  #treeInputs(): Promise<TreeInputs> {
    const now = performance.now();
    if (this.#tree !== null && now - this.#tree.at < this.#revalidateMs) return Promise.resolve(this.#tree);
    this.#treeListing ??= this.#listTree(now).finally(() => this.#treeListing = null);
    return this.#treeListing;
  }

  async #listTree(now: number): Promise<TreeInputs> {
    const files = await this.netboot.list();
    const isoFiles = files.filter((f) => f.name.toLowerCase().endsWith(".iso"));
    const memdisk = files.find((f) => f.name === "memdisk" || f.name.endsWith("/memdisk"))?.name ?? null;
    const dropins = await this.#scanner.scan(files);
    let mtime = dropins.mtime;
    for (const f of isoFiles) mtime = Math.max(mtime, f.mtime?.getTime() ?? 0);
    const warned = dropins.warnings.join("\n");
    if (warned !== this.#warned) {
      for (const warning of dropins.warnings) log.warn("drop-in {warning}", { warning });
      this.#warned = warned;
    }
    this.#tree = {
      isos: isoFiles.map((f) => ({ name: f.name, size: f.size })),
      memdisk,
      dropins,
      mtime,
      at: now,
    };
    return this.#tree;
  }
}

function generated(name: string, text: string, mtime: Date): NetbootFile {
  const content = new TextEncoder().encode(text);
  return { name, path: "", size: content.length, mtime, layer: "generated", content };
}

/** True when `a` and `b` agree in their first `bits` bits. */
function samePrefix(a: Uint8Array, b: Uint8Array, bits: number): boolean {
  const full = Math.min(16, Math.floor(bits / 8));
  for (let i = 0; i < full; i++) if (a[i] !== b[i]) return false;
  const rest = bits % 8;
  if (rest === 0 || full >= 16) return true;
  const mask = (0xff << (8 - rest)) & 0xff;
  return (a[full] & mask) === (b[full] & mask);
}

function localInterfaces6(): readonly Ipv6Address[] {
  try {
    return ipv6Interfaces();
  } catch (err) {
    log.debug("cannot list IPv6 interfaces: {err}", { err: errText(err) });
    return [];
  }
}

function localInterfaces(): readonly Ipv4Interface[] {
  try {
    return [{ name: "lo", address: "127.0.0.1", netmask: "255.0.0.0" }, ...ipv4Interfaces()];
  } catch {
    return [{ name: "lo", address: "127.0.0.1", netmask: "255.0.0.0" }];
  }
}
