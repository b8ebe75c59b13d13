/**
 * Lease store: the address pool, offers held briefly, bound leases, declined addresses, and their
 * persistence in PyPXE's `--save-leases` format `{"AA:BB:CC:DD:EE:01": {"ip", "expire", "ipxe"}}`
 * (expire in Unix seconds).
 *
 * Crash safety: every change is appended synchronously to `FILE.journal` before the caller answers the
 * client (a write(2), so it survives SIGKILL), and the whole table is written to FILE atomically (temp
 * file, fsync, rename; the previous FILE kept as `FILE.bak`) at most once per second, on `flush()` and on
 * `close()`. Loading reads FILE (or `FILE.bak` when FILE is unreadable), then replays the journals.
 * Time is injected (`now`, milliseconds) so every rule is testable.
 * @module
 */
import { intToIp, ipToInt } from "../net.ts";

/** One client's address: offered (held briefly), bound (leased) or free (expired/released, kept for reuse). */
export interface Lease {
  /** Client MAC, lower case with colons. */
  readonly mac: string;
  readonly ip: string;
  state: "offered" | "bound" | "free";
  /** Unix milliseconds when the offer or lease ends. */
  expires: number;
  /** The client was iPXE when it was last seen (PyPXE's `ipxe` field). */
  ipxe: boolean;
}

/** Options of {@linkcode LeaseStore}. */
export interface LeaseStoreOptions {
  /** First pool address (inclusive). */
  begin: string;
  /** Last pool address (inclusive). */
  end: string;
  /** Addresses never handed out from the pool (the server, the router...). */
  exclude?: readonly string[];
  /** Static reservations: MAC -> address; these addresses are only ever given to their MAC. */
  reserved?: ReadonlyMap<string, string>;
  /** Bound lease length in seconds (DHCP_LEASE_TIME). */
  leaseTime: number;
  /** How long an OFFER holds its address, seconds (default 60). */
  offerTime?: number;
  /** How long a DECLINEd address is kept out of the pool, seconds (default 600). */
  declineTime?: number;
  /** Clock in Unix milliseconds (default `Date.now`). */
  now?: () => number;
  /** Lease file (LEASES_FILE); "" or undefined: leases live in memory only. */
  file?: string;
  /** Minimum milliseconds between two snapshot writes (default 1000). */
  saveInterval?: number;
  /** Warnings (bad entries in the file, failed writes); default: ignored. */
  warn?: (message: string) => void;
}

/** Why an address cannot be bound for a client. */
export type BindRefusal = "not-ours" | "taken" | "declined" | "reserved";

interface SavedLease {
  ip: string;
  expire: number;
  ipxe: boolean;
}

/** Pool, offers, leases and their file. */
export class LeaseStore {
  readonly #begin: number;
  readonly #end: number;
  readonly #exclude: Set<number>;
  #reservedIps: Map<string, string>; // ip -> mac
  #reserved: ReadonlyMap<string, string>;
  readonly #leaseMs: number;
  readonly #offerMs: number;
  readonly #declineMs: number;
  readonly #now: () => number;
  readonly #file: string;
  readonly #saveInterval: number;
  readonly #warn: (message: string) => void;
  readonly #byMac = new Map<string, Lease>();
  readonly #byIp = new Map<string, Lease>();
  readonly #declined = new Map<string, number>(); // ip -> until (ms)
  #cursor: number;
  #journal: Deno.FsFile | null = null;
  #dirty = false;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #lastSave = 0;
  #saving: Promise<void> | null = null;
  #closed = false;

  /** Replaces the static reservations (MAC -> IP), e.g. after the static-leases file was reloaded. */
  setReserved(reserved: ReadonlyMap<string, string>): void {
    this.#reserved = reserved;
    this.#reservedIps = new Map([...reserved].map(([mac, ip]) => [ip, mac]));
  }

  /** Creates an empty store; call `load()` to read the lease file. */
  constructor(opts: LeaseStoreOptions) {
    this.#begin = ipToInt(opts.begin) ?? 0;
    this.#end = ipToInt(opts.end) ?? -1;
    this.#exclude = new Set((opts.exclude ?? []).map((ip) => ipToInt(ip) ?? -1));
    this.#reserved = opts.reserved ?? new Map();
    this.#reservedIps = new Map([...this.#reserved].map(([mac, ip]) => [ip, mac]));
    this.#leaseMs = opts.leaseTime * 1000;
    this.#offerMs = (opts.offerTime ?? 60) * 1000;
    this.#declineMs = (opts.declineTime ?? 600) * 1000;
    this.#now = opts.now ?? Date.now;
    this.#file = opts.file ?? "";
    this.#saveInterval = opts.saveInterval ?? 1000;
    this.#warn = opts.warn ?? (() => {});
    this.#cursor = this.#begin;
  }

  /** Number of addresses in the pool (begin..end minus exclusions and reservations). */
  get poolSize(): number {
    let n = 0;
    for (let i = this.#begin; i <= this.#end; i++) if (this.#poolAddress(i)) n++;
    return n;
  }

  #poolAddress(n: number): boolean {
    return !this.#exclude.has(n) && !this.#reservedIps.has(intToIp(n));
  }

  /** True when `ip` is one this store may hand out to `mac` (pool address or `mac`'s reservation). */
  isOurs(ip: string, mac?: string): boolean {
    const reservedFor = this.#reservedIps.get(ip);
    if (reservedFor !== undefined) return mac === undefined || reservedFor === mac;
    const n = ipToInt(ip);
    return n !== null && n >= this.#begin && n <= this.#end && !this.#exclude.has(n);
  }

  /** The client's current record (offered, bound or free), if any. */
  leaseFor(mac: string): Lease | undefined {
    return this.#byMac.get(mac);
  }

  /** The record holding `ip`, if any. */
  holderOf(ip: string): Lease | undefined {
    return this.#byIp.get(ip);
  }

  /** Bound, unexpired leases. */
  boundLeases(): Lease[] {
    const now = this.#now();
    return [...this.#byMac.values()].filter((l) => l.state === "bound" && l.expires > now);
  }

  /** True while `lease` holds its address against other clients. */
  #active(lease: Lease, now: number): boolean {
    return lease.state !== "free" && lease.expires > now;
  }

  #isDeclined(ip: string, now: number): boolean {
    const until = this.#declined.get(ip);
    if (until === undefined) return false;
    if (until > now) return true;
    this.#declined.delete(ip);
    return false;
  }

  /** Whether `ip` can be given to `mac` now, or why not. */
  check(mac: string, ip: string): BindRefusal | null {
    if (!this.isOurs(ip)) return "not-ours";
    const reservedFor = this.#reservedIps.get(ip);
    if (reservedFor !== undefined && reservedFor !== mac) return "reserved";
    const now = this.#now();
    if (this.#isDeclined(ip, now)) return "declined";
    const holder = this.#byIp.get(ip);
    if (holder && holder.mac !== mac && this.#active(holder, now)) return "taken";
    return null;
  }

  /**
   * Chooses an address to OFFER and holds it: the client's reservation, its current or previous address,
   * the address it asks for (option 50), else a never-used pool address, else the longest-expired one.
   * Returns null when the pool is exhausted.
   */
  offer(mac: string, opts: { requested?: string; ipxe?: boolean } = {}): string | null {
    const now = this.#now();
    const reserved = this.#reserved.get(mac);
    const own = this.#byMac.get(mac);
    let ip: string | null = null;
    if (reserved !== undefined) ip = this.check(mac, reserved) === null ? reserved : null;
    else if (own && this.check(mac, own.ip) === null) ip = own.ip;
    else if (opts.requested && this.check(mac, opts.requested) === null) ip = opts.requested;
    else ip = this.#freeAddress(now);
    if (ip === null) return null;
    if (own?.state === "bound" && own.ip === ip && own.expires > now) return ip; // keep the lease as it is
    this.#set(mac, ip, "offered", now + this.#offerMs, opts.ipxe ?? own?.ipxe ?? false, false);
    return ip;
  }

  #freeAddress(now: number): string | null {
    const size = this.#end - this.#begin + 1;
    if (size <= 0) return null;
    // first pass: addresses nobody ever had, from a rotating cursor
    for (let i = 0; i < size; i++) {
      const n = this.#cursor;
      this.#cursor = n >= this.#end ? this.#begin : n + 1;
      if (!this.#poolAddress(n)) continue;
      const ip = intToIp(n);
      if (!this.#byIp.has(ip) && !this.#isDeclined(ip, now)) return ip;
    }
    // second pass: the record that ended longest ago
    let best: Lease | undefined;
    for (const lease of this.#byIp.values()) {
      if (this.#active(lease, now) || this.#isDeclined(lease.ip, now) || !this.isOurs(lease.ip)) continue;
      if (this.#reservedIps.has(lease.ip)) continue;
      if (!best || lease.expires < best.expires) best = lease;
    }
    return best ? best.ip : null;
  }

  /** Binds `ip` to `mac` for the lease time (REQUEST, renew, rebind); null on success, else the refusal. */
  bind(mac: string, ip: string, opts: { ipxe?: boolean } = {}): BindRefusal | null {
    const refusal = this.check(mac, ip);
    if (refusal) return refusal;
    const now = this.#now();
    this.#set(mac, ip, "bound", now + this.#leaseMs, opts.ipxe ?? false, true);
    return null;
  }

  /** Ends `mac`'s lease on `ip` (RELEASE); the address stays remembered for the client. Returns true if held. */
  release(mac: string, ip: string): boolean {
    const lease = this.#byMac.get(mac);
    if (!lease || lease.ip !== ip || lease.state === "free") return false;
    const wasBound = lease.state === "bound";
    this.#set(mac, ip, "free", this.#now(), lease.ipxe, wasBound);
    return true;
  }

  /** Drops an offer the client did not take (it chose another server). */
  cancelOffer(mac: string): void {
    const lease = this.#byMac.get(mac);
    if (lease?.state === "offered") this.#set(mac, lease.ip, "free", this.#now(), lease.ipxe, false);
  }

  /** Marks `ip` unusable for the decline time (DECLINE: someone else answers ARP for it). */
  decline(mac: string, ip: string): boolean {
    if (!this.isOurs(ip)) return false;
    const now = this.#now();
    this.#declined.set(ip, now + this.#declineMs);
    const lease = this.#byMac.get(mac);
    if (lease?.ip === ip) {
      const wasBound = lease.state === "bound";
      this.#byMac.delete(mac);
      this.#byIp.delete(ip);
      if (wasBound) this.#record({ mac, ip, state: "free", expires: now, ipxe: lease.ipxe });
    }
    return true;
  }

  #set(
    mac: string,
    ip: string,
    state: Lease["state"],
    expires: number,
    ipxe: boolean,
    persist: boolean,
  ): void {
    const old = this.#byMac.get(mac);
    if (old && old.ip !== ip && this.#byIp.get(old.ip) === old) this.#byIp.delete(old.ip);
    const other = this.#byIp.get(ip);
    if (other && other.mac !== mac) this.#byMac.delete(other.mac);
    const lease: Lease = { mac, ip, state, expires, ipxe };
    this.#byMac.set(mac, lease);
    this.#byIp.set(ip, lease);
    if (persist) this.#record(lease);
  }

  // ---- persistence ----

  /** The table in PyPXE's file format: bound leases only, MACs upper case. */
  toJson(): Record<string, SavedLease> {
    const out: Record<string, SavedLease> = {};
    for (const l of this.#byMac.values()) {
      if (l.state !== "bound") continue;
      out[l.mac.toUpperCase()] = { ip: l.ip, expire: Math.round(l.expires / 10) / 100, ipxe: l.ipxe };
    }
    return out;
  }

  /** Reads the lease file, its backup and journals; bad entries are skipped with a warning naming them. */
  async load(): Promise<void> {
    if (this.#file === "") return;
    let text = await readOptional(this.#file);
    let source = this.#file;
    let table = text === null ? null : this.#parseTable(text, source);
    if (table === null) {
      const bak = await readOptional(this.#file + ".bak");
      if (bak !== null) {
        if (text !== null) this.#warn(`${this.#file}: unreadable, using ${this.#file}.bak`);
        text = bak;
        source = this.#file + ".bak";
        table = this.#parseTable(bak, source);
      }
    }
    for (const [key, entry] of Object.entries(table ?? {})) this.#restore(key, entry, source);
    for (const journal of [this.#file + ".journal.old", this.#file + ".journal"]) {
      const lines = await readOptional(journal);
      if (lines === null) continue;
      for (const [i, line] of lines.split("\n").entries()) {
        if (line.trim() === "") continue;
        let rec: unknown;
        try {
          rec = JSON.parse(line);
        } catch {
          // the last line of a journal may be cut short by a crash mid-write: nothing else is lost
          this.#warn(`${journal}:${i + 1}: unreadable journal line skipped`);
          continue;
        }
        const r = rec as { mac?: unknown; ip?: unknown; expire?: unknown; ipxe?: unknown; free?: unknown };
        if (typeof r.mac !== "string") continue;
        if (r.free === true) {
          const lease = this.#byMac.get(r.mac);
          if (lease && lease.ip === r.ip) lease.state = "free";
          continue;
        }
        this.#restore(r.mac, r, `${journal}:${i + 1}`);
      }
    }
    this.#dirty = true;
    await this.flush(); // fold the journals into the file
  }

  #parseTable(text: string, source: string): Record<string, unknown> | null {
    try {
      const data = JSON.parse(text);
      if (typeof data === "object" && data !== null && !Array.isArray(data)) return data;
      this.#warn(`${source}: expected an object of leases by MAC; ignored`);
    } catch (err) {
      this.#warn(`${source}: not valid JSON (${err instanceof Error ? err.message : err})`);
    }
    return null;
  }

  #restore(key: string, entry: unknown, source: string): void {
    const mac = normalise(key);
    const e = entry as Partial<SavedLease> | null;
    const why = mac === null
      ? "not a MAC address"
      : typeof e !== "object" || e === null
      ? "not an object"
      : typeof e.ip !== "string" || ipToInt(e.ip) === null
      ? `bad ip ${JSON.stringify(e.ip)}`
      : typeof e.expire !== "number" || !Number.isFinite(e.expire)
      ? `bad expire ${JSON.stringify(e.expire)}`
      : !this.isOurs(e.ip, mac)
      ? `${e.ip} is outside the pool or reserved for another client`
      : null;
    if (why !== null) {
      this.#warn(`${source}: lease ${JSON.stringify(key)} skipped: ${why}`);
      return;
    }
    const { ip, expire, ipxe } = e as SavedLease;
    const expires = expire * 1000;
    const state = expires > this.#now() ? "bound" : "free";
    this.#set(mac!, ip, state, expires, ipxe === true, false);
  }

  /** Appends one change to the journal (synchronous: done before the client hears the answer). */
  #record(lease: Lease): void {
    this.#dirty = true;
    if (this.#file === "" || this.#closed) return;
    const rec = lease.state === "bound"
      ? { mac: lease.mac, ip: lease.ip, expire: lease.expires / 1000, ipxe: lease.ipxe }
      : { mac: lease.mac, ip: lease.ip, free: true };
    try {
      this.#journal ??= Deno.openSync(this.#file + ".journal", { append: true, create: true });
      const bytes = encoder.encode(JSON.stringify(rec) + "\n");
      let at = 0;
      while (at < bytes.length) at += this.#journal.writeSync(bytes.subarray(at));
    } catch (err) {
      this.#warn(`${this.#file}.journal: cannot append (${err instanceof Error ? err.message : err})`);
    }
    this.#schedule();
  }

  #schedule(): void {
    if (this.#timer !== undefined || this.#closed) return;
    const wait = Math.max(0, this.#lastSave + this.#saveInterval - Date.now());
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      this.flush().catch((err) => this.#warn(String(err)));
    }, wait);
  }

  /** Writes the table now if it changed (temp + fsync + rename, previous file kept as `.bak`). */
  async flush(): Promise<void> {
    while (this.#saving) await this.#saving;
    if (!this.#dirty || this.#file === "") return;
    this.#saving = this.#write().finally(() => (this.#saving = null));
    await this.#saving;
  }

  async #write(): Promise<void> {
    this.#dirty = false;
    this.#lastSave = Date.now();
    const text = JSON.stringify(this.toJson(), null, 2) + "\n";
    const file = this.#file;
    // rotate the journal now (synchronously, with the snapshot taken): later changes go to a new one
    let rotated = false;
    if (this.#journal) {
      this.#journal.close();
      this.#journal = null;
      try {
        Deno.renameSync(file + ".journal", file + ".journal.old");
        rotated = true;
      } catch (err) {
        if (!(err instanceof Deno.errors.NotFound)) throw err;
      }
    }
    const tmp = `${file}.tmp`;
    try {
      const f = await Deno.open(tmp, { write: true, create: true, truncate: true });
      try {
        const bytes = encoder.encode(text);
        for (let at = 0; at < bytes.length;) at += await f.write(bytes.subarray(at));
        await f.sync();
      } finally {
        f.close();
      }
      try {
        await Deno.remove(file + ".bak");
      } catch (err) {
        if (!(err instanceof Deno.errors.NotFound)) throw err;
      }
      try {
        await Deno.link(file, file + ".bak");
      } catch (err) {
        if (!(err instanceof Deno.errors.NotFound)) await Deno.copyFile(file, file + ".bak").catch(() => {});
      }
      await Deno.rename(tmp, file);
      await syncDir(file);
      if (rotated) await Deno.remove(file + ".journal.old").catch(() => {});
    } catch (err) {
      this.#dirty = true;
      this.#warn(`${file}: cannot save leases (${err instanceof Error ? err.message : err})`);
    }
  }

  /** Saves pending changes and stops the save timer; the store stays usable in memory. */
  async close(): Promise<void> {
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
    await this.flush();
    this.#closed = true;
    this.#journal?.close();
    this.#journal = null;
  }
}

const encoder = new TextEncoder();

function normalise(mac: string): string | null {
  const m = /^([0-9a-f]{2}[:-]){5}[0-9a-f]{2}$/i.exec(mac.trim());
  return m ? mac.trim().toLowerCase().replaceAll("-", ":") : null;
}

async function readOptional(path: string): Promise<string | null> {
  try {
    return await Deno.readTextFile(path);
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return null;
    throw err;
  }
}

/** fsyncs the directory holding `file` so the rename itself survives a power cut (best effort). */
async function syncDir(file: string): Promise<void> {
  const dir = file.includes("/") ? file.slice(0, file.lastIndexOf("/")) || "/" : ".";
  try {
    const d = await Deno.open(dir, { read: true });
    try {
      await d.sync();
    } finally {
      d.close();
    }
  } catch {
    // some platforms cannot open or sync a directory; the rename is still atomic
  }
}
