/**
 * DHCPv6 lease store: IA_NA bindings from an IPv6 address pool, keyed by client (its MAC when one is
 * known, else its DUID text) and IAID, so one machine's several IAs (OVMF's Ip6Config and its PXE stack
 * use different IAIDs) each get their own address. Advertised addresses are held briefly, bound ones for
 * the valid lifetime; declined addresses stay out of the pool for a while. Static reservations (MAC ->
 * address) are only ever given to their MAC. Persisted through the same {@linkcode LeaseJournal} as the
 * IPv4 leases: every change to a bound binding is journalled before the client is answered. Time is
 * injected (`now`, milliseconds).
 *
 * File format: `{"52:54:00:77:00:66/4208208799": {"ip": "2001:db8::100", "expire": 1700003600,
 * "duid": "llt:1:31e51145:525400770066"}}` (expire in Unix seconds).
 *
 * @example
 * ```ts
 * const leases = new Leases6({ begin: "2001:db8::100", end: "2001:db8::1ff", now: Date.now });
 * await leases.load();
 * leases.bind("52:54:00:77:00:66", 1)?.ip; // "2001:db8::100"
 * ```
 * @module
 */
import { LeaseJournal } from "../dhcp/journal.ts";
import { formatIpv6, parseIpv6 } from "./address.ts";

/** One IA_NA binding: offered (held briefly), bound, or free (released/expired, kept for reuse). */
export interface Binding6 {
  /** The client: its MAC (lower case, colons) or, without one, its DUID text. */
  readonly key: string;
  readonly iaid: number;
  readonly ip: string;
  state: "offered" | "bound" | "free";
  /** Unix milliseconds when the offer or the valid lifetime ends. */
  expires: number;
  /** The client DUID as text, for logs and the lease file. */
  duid?: string;
}

/** Options of {@linkcode Leases6}. */
export interface Leases6Options {
  /** First pool address (inclusive). */
  begin: string;
  /** Last pool address (inclusive). */
  end: string;
  /** Preferred lifetime in seconds (default 3600). */
  preferred?: number;
  /** Valid lifetime in seconds (default 3600, at least `preferred`). */
  valid?: number;
  /** How long an Advertise holds its address, seconds (default 60). */
  offerTime?: number;
  /** How long a declined address is kept out of the pool, seconds (default 600). */
  declineTime?: number;
  /** Static reservations: MAC -> IPv6 address. */
  reserved?: ReadonlyMap<string, string>;
  /** Addresses never handed out from the pool (the server's own). */
  exclude?: readonly string[];
  /** Clock in Unix milliseconds. */
  now: () => number;
  /** Lease file; "" or undefined: in memory only. */
  file?: string;
  /** Minimum milliseconds between two snapshot writes (default 1000). */
  saveInterval?: number;
  /** Warnings (bad file entries, failed writes); default: ignored. */
  warn?: (message: string) => void;
}

/** Most pool addresses one allocation looks at before falling back to expired bindings. */
export const MAX_SCAN = 65_536;

/** The address as a 128-bit number, or undefined when it is not IPv6 text. */
export function ipv6ToBig(ip: string): bigint | undefined {
  const b = parseIpv6(ip);
  if (b === undefined) return undefined;
  let n = 0n;
  for (const x of b) n = (n << 8n) | BigInt(x);
  return n;
}

/** The canonical text of a 128-bit number. */
export function bigToIpv6(n: bigint): string {
  const b = new Uint8Array(16);
  for (let i = 15; i >= 0; i--, n >>= 8n) b[i] = Number(n & 255n);
  return formatIpv6(b);
}

/** The canonical (RFC 5952) form of an IPv6 address, or undefined. */
export function canonicalIpv6(ip: string): string | undefined {
  const b = parseIpv6(ip);
  return b === undefined ? undefined : formatIpv6(b);
}

interface SavedBinding {
  ip: string;
  expire: number;
  duid?: string;
}

const id = (key: string, iaid: number) => `${key}/${iaid}`;

/** IPv6 pool, IA_NA bindings and their file. */
export class Leases6 {
  /** Preferred lifetime, seconds. */
  readonly preferred: number;
  /** Valid lifetime, seconds. */
  readonly valid: number;
  readonly #begin: bigint;
  readonly #end: bigint;
  readonly #exclude: Set<string>;
  #reserved: ReadonlyMap<string, string>; // key -> ip
  #reservedIps: Map<string, string>; // ip -> key
  readonly #offerMs: number;
  readonly #declineMs: number;
  readonly #now: () => number;
  readonly #journal: LeaseJournal | null;
  readonly #warn: (message: string) => void;
  readonly #byId = new Map<string, Binding6>();
  readonly #byIp = new Map<string, Binding6>();
  readonly #declined = new Map<string, number>(); // ip -> until (ms)
  #cursor: bigint;

  /** Creates an empty store; call `load()` to read the lease file. */
  constructor(opts: Leases6Options) {
    this.#begin = ipv6ToBig(opts.begin) ?? 1n;
    this.#end = ipv6ToBig(opts.end) ?? 0n;
    this.#exclude = new Set((opts.exclude ?? []).map((ip) => canonicalIpv6(ip) ?? ip));
    this.preferred = opts.preferred ?? 3600;
    this.valid = Math.max(opts.valid ?? 3600, this.preferred);
    this.#offerMs = (opts.offerTime ?? 60) * 1000;
    this.#declineMs = (opts.declineTime ?? 600) * 1000;
    this.#now = opts.now;
    this.#warn = opts.warn ?? (() => {});
    this.#reserved = new Map();
    this.#reservedIps = new Map();
    this.setReserved(opts.reserved ?? new Map());
    this.#journal = (opts.file ?? "") === "" ? null : new LeaseJournal({
      file: opts.file!,
      snapshot: () => this.toJson(),
      now: opts.now,
      saveInterval: opts.saveInterval,
      warn: this.#warn,
    });
    this.#cursor = this.#begin;
  }

  /** Replaces the static reservations (MAC -> IPv6 address). */
  setReserved(reserved: ReadonlyMap<string, string>): void {
    const canon = new Map<string, string>();
    for (const [key, ip] of reserved) {
      const c = canonicalIpv6(ip);
      if (c === undefined) this.#warn(`static IPv6 address ${JSON.stringify(ip)} of ${key} ignored`);
      else canon.set(key, c);
    }
    this.#reserved = canon;
    this.#reservedIps = new Map([...canon].map(([key, ip]) => [ip, key]));
  }

  /** True when `ip` is in the pool (and not excluded) or is a static reservation. */
  isOurs(ip: string): boolean {
    const c = canonicalIpv6(ip);
    if (c === undefined) return false;
    if (this.#reservedIps.has(c)) return true;
    const n = ipv6ToBig(c)!;
    return n >= this.#begin && n <= this.#end && !this.#exclude.has(c);
  }

  /** The binding of `key`'s IA `iaid` (offered, bound or free), if any. */
  bindingFor(key: string, iaid: number): Binding6 | undefined {
    return this.#byId.get(id(key, iaid));
  }

  /** The binding holding `ip`, if any. */
  holderOf(ip: string): Binding6 | undefined {
    return this.#byIp.get(canonicalIpv6(ip) ?? ip);
  }

  /** Bound, unexpired bindings. */
  boundBindings(): Binding6[] {
    const now = this.#now();
    return [...this.#byId.values()].filter((b) => b.state === "bound" && b.expires > now);
  }

  #active(b: Binding6, now: number): boolean {
    return b.state !== "free" && b.expires > now;
  }

  #isDeclined(ip: string, now: number): boolean {
    const until = this.#declined.get(ip);
    if (until === undefined) return false;
    if (until > now) return true;
    this.#declined.delete(ip);
    return false;
  }

  /** True when `ip` (canonical) may be given to `key`'s IA `iaid` now. */
  #usable(key: string, iaid: number, ip: string, now: number): boolean {
    if (!this.isOurs(ip)) return false;
    const reservedFor = this.#reservedIps.get(ip);
    if (reservedFor !== undefined && reservedFor !== key) return false;
    if (this.#isDeclined(ip, now)) return false;
    const holder = this.#byIp.get(ip);
    if (holder === undefined || !this.#active(holder, now)) return true;
    // a static address may serve several IAs of its machine; a pool address only one IA
    return holder.key === key && (holder.iaid === iaid || reservedFor === key);
  }

  /** The address for a new or renewed IA: reservation, own, hint, never-used, longest-expired. */
  #choose(key: string, iaid: number, hint: string | undefined, now: number): string | null {
    const reserved = this.#reserved.get(key);
    if (reserved !== undefined) return this.#usable(key, iaid, reserved, now) ? reserved : null;
    const own = this.#byId.get(id(key, iaid));
    if (own && this.#usable(key, iaid, own.ip, now)) return own.ip;
    const h = hint === undefined ? undefined : canonicalIpv6(hint);
    if (h !== undefined && this.#usable(key, iaid, h, now)) return h;
    return this.#freeAddress(now);
  }

  #freeAddress(now: number): string | null {
    if (this.#end < this.#begin) return null;
    const size = this.#end - this.#begin + 1n;
    const scan = size < BigInt(MAX_SCAN) ? Number(size) : MAX_SCAN;
    for (let i = 0; i < scan; i++) {
      const n = this.#cursor;
      this.#cursor = n >= this.#end ? this.#begin : n + 1n;
      const ip = bigToIpv6(n);
      if (this.#exclude.has(ip) || this.#reservedIps.has(ip)) continue;
      if (!this.#byIp.has(ip) && !this.#isDeclined(ip, now)) return ip;
    }
    let best: Binding6 | undefined;
    for (const b of this.#byIp.values()) {
      if (this.#active(b, now) || this.#isDeclined(b.ip, now) || this.#reservedIps.has(b.ip)) continue;
      if (!this.isOurs(b.ip)) continue;
      if (!best || b.expires < best.expires) best = b;
    }
    return best ? best.ip : null;
  }

  /** Chooses an address for an Advertise and holds it for the offer time; null when the pool is empty. */
  offer(key: string, iaid: number, opts: { hint?: string; duid?: string } = {}): string | null {
    const now = this.#now();
    const ip = this.#choose(key, iaid, opts.hint, now);
    if (ip === null) return null;
    const own = this.#byId.get(id(key, iaid));
    if (own?.state === "bound" && own.ip === ip && own.expires > now) return ip; // keep the lease
    this.#set({ key, iaid, ip, state: "offered", expires: now + this.#offerMs, duid: opts.duid }, false);
    return ip;
  }

  /** Binds an address to `key`'s IA for the valid lifetime (Request, Rapid Commit); null when none is free. */
  bind(key: string, iaid: number, opts: { hint?: string; duid?: string } = {}): Binding6 | null {
    const now = this.#now();
    const ip = this.#choose(key, iaid, opts.hint, now);
    if (ip === null) return null;
    return this.#set(
      { key, iaid, ip, state: "bound", expires: now + this.valid * 1000, duid: opts.duid },
      true,
    );
  }

  /**
   * Extends `key`'s IA binding (Renew, Rebind). With `recover` and no binding, `ip` (the address the
   * client holds) is bound again when it is usable, so clients survive a server that lost its table.
   * Null: no binding to extend.
   */
  renew(key: string, iaid: number, opts: { ip?: string; recover?: boolean } = {}): Binding6 | null {
    const now = this.#now();
    const own = this.#byId.get(id(key, iaid));
    const expires = now + this.valid * 1000;
    if (own && own.state !== "free" && this.#usable(key, iaid, own.ip, now)) {
      return this.#set({ ...own, state: "bound", expires }, true);
    }
    const c = opts.ip === undefined ? undefined : canonicalIpv6(opts.ip);
    if (!opts.recover || c === undefined || !this.#usable(key, iaid, c, now)) return null;
    const reserved = this.#reserved.get(key);
    if (reserved !== undefined && reserved !== c) return null;
    return this.#set({ key, iaid, ip: c, state: "bound", expires, duid: own?.duid }, true);
  }

  /** Ends `key`'s IA binding of `ip` (Release). Returns true when it was held. */
  release(key: string, iaid: number, ip: string): boolean {
    const b = this.#byId.get(id(key, iaid));
    if (!b || b.ip !== canonicalIpv6(ip) || b.state === "free") return false;
    this.#set({ ...b, state: "free", expires: this.#now() }, b.state === "bound");
    return true;
  }

  /** Keeps `ip` out of the pool for the decline time (Decline: another host uses it). */
  decline(key: string, iaid: number, ip: string): boolean {
    const c = canonicalIpv6(ip);
    if (c === undefined || !this.isOurs(c)) return false;
    const now = this.#now();
    this.#declined.set(c, now + this.#declineMs);
    const b = this.#byId.get(id(key, iaid));
    if (b?.ip === c) {
      this.#byId.delete(id(key, iaid));
      if (this.#byIp.get(c) === b) this.#byIp.delete(c);
      if (b.state === "bound") this.#record({ ...b, state: "free" });
    }
    return true;
  }

  #set(b: Binding6, persist: boolean): Binding6 {
    const old = this.#byId.get(id(b.key, b.iaid));
    if (old && old.ip !== b.ip && this.#byIp.get(old.ip) === old) this.#byIp.delete(old.ip);
    const other = this.#byIp.get(b.ip);
    if (other && id(other.key, other.iaid) !== id(b.key, b.iaid) && !this.#reservedIps.has(b.ip)) {
      this.#byId.delete(id(other.key, other.iaid));
    }
    const binding: Binding6 = { ...b, duid: b.duid ?? old?.duid };
    this.#byId.set(id(b.key, b.iaid), binding);
    this.#byIp.set(b.ip, binding);
    if (persist) this.#record(binding);
    return binding;
  }

  // ---- persistence ----

  /** The table as saved: bound bindings only, by `key/iaid`. */
  toJson(): Record<string, SavedBinding> {
    const out: Record<string, SavedBinding> = {};
    for (const b of this.#byId.values()) {
      if (b.state !== "bound") continue;
      out[id(b.key, b.iaid)] = { ip: b.ip, expire: Math.round(b.expires / 10) / 100, duid: b.duid };
    }
    return out;
  }

  /** Reads the lease file and its journals (bad entries skipped with a warning), then folds them. */
  async load(opts: { dryRun?: boolean } = {}): Promise<void> {
    if (this.#journal === null) return;
    const { table, tableSource, records } = await this.#journal.replay();
    for (const [k, entry] of Object.entries(table)) this.#restore(k, entry, tableSource);
    for (const { value, source } of records) {
      const r = value as { key?: unknown; iaid?: unknown; ip?: unknown; free?: unknown } | null;
      if (typeof r !== "object" || r === null || typeof r.key !== "string" || typeof r.iaid !== "number") {
        this.#warn(`${source}: not a DHCPv6 lease record; skipped`);
        continue;
      }
      if (r.free === true) {
        const b = this.#byId.get(id(r.key, r.iaid));
        if (b && b.ip === r.ip) b.state = "free";
        continue;
      }
      this.#restore(id(r.key, r.iaid), r, source);
    }
    if (!opts.dryRun) await this.flush();
  }

  #restore(k: string, entry: unknown, source: string): void {
    const m = /^(.+)\/(\d{1,10})$/.exec(k);
    const iaid = m ? Number(m[2]) : NaN;
    const e = entry as Partial<SavedBinding> | null;
    const ip = typeof e?.ip === "string" ? canonicalIpv6(e.ip) : undefined;
    const why = !m || iaid > 0xffffffff
      ? "not KEY/IAID"
      : typeof e !== "object" || e === null
      ? "not an object"
      : ip === undefined
      ? `bad ip ${JSON.stringify(e.ip)}`
      : typeof e.expire !== "number" || !Number.isFinite(e.expire)
      ? `bad expire ${JSON.stringify(e.expire)}`
      : !this.isOurs(ip) || (this.#reservedIps.get(ip) ?? m[1]) !== m[1]
      ? `${ip} is outside the pool or reserved for another client`
      : null;
    if (why !== null) {
      this.#warn(`${source}: lease ${JSON.stringify(k)} skipped: ${why}`);
      return;
    }
    const expires = e!.expire! * 1000;
    const state = expires > this.#now() ? "bound" : "free";
    const duid = typeof e!.duid === "string" ? e!.duid : undefined;
    this.#set({ key: m![1], iaid, ip: ip!, state, expires, duid }, false);
  }

  #record(b: Binding6): void {
    this.#journal?.append(
      b.state === "bound"
        ? { key: b.key, iaid: b.iaid, ip: b.ip, expire: b.expires / 1000, duid: b.duid }
        : { key: b.key, iaid: b.iaid, ip: b.ip, free: true },
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
