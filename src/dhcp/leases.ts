/**
 * Lease store: the address pool, offers held briefly, bound leases, declined addresses. Persisted in
 * PyPXE's `--save-leases` format `{"AA:BB:CC:DD:EE:01": {"ip", "expire", "ipxe"}}` (expire in Unix
 * seconds) through a {@linkcode LeaseJournal}: every change to a bound lease is journalled before the
 * client is answered, the whole table is snapshotted at most once per second, on `flush()` and `close()`.
 * Time is injected (`now`, milliseconds) so every rule is testable.
 * @module
 */
import { intToIp, ipToInt, normaliseMac } from "../net.ts";
import { LeaseJournal } from "./journal.ts";

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
  /** Clock in Unix milliseconds (the server passes `Date.now`). */
  now: () => number;
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
  readonly #journal: LeaseJournal | null;
  readonly #warn: (message: string) => void;
  readonly #byMac = new Map<string, Lease>();
  readonly #byIp = new Map<string, Lease>();
  readonly #declined = new Map<string, number>(); // ip -> until (ms)
  #cursor: number;

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
    this.#now = opts.now;
    this.#warn = opts.warn ?? (() => {});
    this.#journal = (opts.file ?? "") === "" ? null : new LeaseJournal({
      file: opts.file!,
      snapshot: () => this.toJson(),
      now: opts.now,
      saveInterval: opts.saveInterval,
      warn: this.#warn,
    });
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

  /**
   * Reads the lease file, its backup and journals; bad entries are skipped with a warning naming them.
   * Then folds the journals into the file, unless `dryRun` (`--check`: read, warn, write nothing).
   */
  async load(opts: { dryRun?: boolean } = {}): Promise<void> {
    if (this.#journal === null) return;
    const { table, tableSource, records } = await this.#journal.replay();
    for (const [key, entry] of Object.entries(table)) this.#restore(key, entry, tableSource);
    for (const { value, source } of records) {
      if (typeof value !== "object" || value === null) continue;
      const r = value as { mac?: unknown; ip?: unknown; free?: unknown };
      if (typeof r.mac !== "string") continue;
      if (r.free === true) {
        const lease = this.#byMac.get(r.mac);
        if (lease && lease.ip === r.ip) lease.state = "free";
        continue;
      }
      this.#restore(r.mac, r, source);
    }
    if (!opts.dryRun) await this.flush(); // fold the journals into the file
  }

  #restore(key: string, entry: unknown, source: string): void {
    const mac = normaliseMac(key);
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

  /** Journals one change (synchronously: done before the client hears the answer). */
  #record(lease: Lease): void {
    this.#journal?.append(
      lease.state === "bound"
        ? { mac: lease.mac, ip: lease.ip, expire: lease.expires / 1000, ipxe: lease.ipxe }
        : { mac: lease.mac, ip: lease.ip, free: true },
    );
  }

  /** Writes the lease file now if it changed. */
  async flush(): Promise<void> {
    await this.#journal?.flush();
  }

  /** Saves pending changes and stops the save timer; the store stays usable in memory. */
  async close(): Promise<void> {
    await this.#journal?.close();
  }
}
