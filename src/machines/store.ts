/**
 * One-shot next boots and the machine inventory, persisted crash-safely with the lease store's
 * {@linkcode LeaseJournal} (a JSON snapshot plus an append-only journal): every acknowledged change
 * (`setNext`, `clearNext`, `consumeNext`, `markOnceConsumed`, a new machine or a changed fact, a boot
 * outcome) is one journal line written synchronously before the method returns, so kill -9 at any moment
 * loses nothing that was acknowledged.
 *
 * Bounded: at most `maxMachines` inventory entries (default 10,000; the least recently seen is dropped) and
 * `maxNext` pending one-shots (default 10,000; more is refused). A DHCP flood cannot grow the journal
 * without bound: an update that only moves a time forward (`lastSeen`, or the time of the same boot
 * outcome) is journalled at most once per `touchInterval` (default one minute) per machine; the latest
 * times are folded into the snapshot on `flush()` and `close()`. Time is injected (`now`).
 *
 * The snapshot file:
 * ```json
 * {"format": "pypxe-machines/1",
 *  "next": {"52:54:00:77:00:10": "debian"},
 *  "machines": {"52:54:00:77:00:10": {"arch": "efi64", "client": "pxe", "firstSeen": 1700000000000,
 *    "lastSeen": 1700000060000, "lastBoot": {"profile": "debian", "stage": "kernel", "at": 1700000050000},
 *    "once": ["reinstall"]}}}
 * ```
 *
 * @example
 * ```ts
 * const store = new MachineStore({ file: "state/machines.json", now: Date.now });
 * await store.load();
 * store.setNext("52-54-00-77-00-10", "debian"); // journalled before it returns
 * store.seen(machineFacts(request));
 * store.consumeNext("52:54:00:77:00:10"); // the boot counted: "debian"
 * await store.close();
 * ```
 * @module
 */
import { LeaseJournal } from "../dhcp/journal.ts";
import { MACHINE_ARCHES, MACHINE_CLIENTS, MACHINE_NAME, machineMac, MachinesError } from "./keys.ts";
import type { MachineArch, MachineClient, MachineFacts } from "./model.ts";
import type { BootMemory } from "./select.ts";

/** How far a boot got: address given, boot program sent, kernel (or ISO, chain target) sent, done. */
export type BootStage = "dhcp" | "nbp" | "kernel" | "done";

/** The stages, in boot order. */
export const BOOT_STAGES: readonly BootStage[] = ["dhcp", "nbp", "kernel", "done"];

/** A machine's last boot: the profile it was given and how far it got, at what time (Unix ms). */
export interface BootOutcome {
  readonly profile: string;
  readonly stage: BootStage;
  readonly at: number;
}

/** One inventory entry with its pending one-shot, as the API and the status page show it. */
export interface MachineView {
  /** Lower case, colon-separated. */
  readonly mac: string;
  readonly arch?: MachineArch;
  readonly client?: MachineClient;
  readonly uuid?: string;
  readonly vendorClass?: string;
  readonly hostname?: string;
  readonly ip?: string;
  /** Unix ms; null for a machine that only has a one-shot and was never seen. */
  readonly firstSeen: number | null;
  readonly lastSeen: number | null;
  readonly lastBoot: BootOutcome | null;
  /** The pending one-shot, or null. */
  readonly next: { readonly profile: string } | null;
  /** `once` groups this machine has already booted. */
  readonly onceConsumed: readonly string[];
}

/** Options of {@linkcode MachineStore}. */
export interface MachineStoreOptions {
  /** Snapshot file (the journal is `FILE.journal`); "" or undefined: memory only. */
  file?: string;
  /** Clock in Unix milliseconds. */
  now: () => number;
  /** Minimum milliseconds between two snapshot writes (default 10,000). */
  saveInterval?: number;
  /** Minimum milliseconds between two journalled time-only updates of one machine (default 60,000). */
  touchInterval?: number;
  /** Inventory size; the least recently seen machine is dropped beyond it (default 10,000). */
  maxMachines?: number;
  /** Most pending one-shots (default 10,000). */
  maxNext?: number;
  /** Warnings (unreadable entries, failed writes); default: ignored. */
  warn?: (message: string) => void;
}

/** Most `once` groups remembered per machine (the oldest is forgotten beyond it). */
const MAX_ONCE = 64;
const FORMAT = "pypxe-machines/1";
const FACT_KEYS = ["arch", "client", "uuid", "vendorClass", "hostname", "ip"] as const;

interface Machine {
  mac: string;
  arch?: MachineArch;
  client?: MachineClient;
  uuid?: string;
  vendorClass?: string;
  hostname?: string;
  ip?: string;
  firstSeen: number;
  lastSeen: number;
  lastBoot?: BootOutcome;
  once: string[];
}

/** Journal lines (each carries whole values, so replaying one twice is harmless). */
type JournalLine =
  | { op: "next"; mac: string; profile: string | null }
  | { op: "machine"; mac: string; machine: Omit<Machine, "mac"> }
  | { op: "touch"; seen: Record<string, [number, number | null]> };

/** Pending one-shots, once-markers and the inventory, journalled. */
export class MachineStore implements BootMemory {
  readonly #now: () => number;
  readonly #touchMs: number;
  readonly #maxMachines: number;
  readonly #maxNext: number;
  readonly #warn: (message: string) => void;
  readonly #journal: LeaseJournal | null;
  /** In least-recently-seen first order (a `seen` moves the machine to the end). */
  readonly #machines = new Map<string, Machine>();
  readonly #next = new Map<string, string>();
  /** When each machine was last journalled; time-only updates wait `touchInterval` after it. */
  readonly #journalled = new Map<string, number>();
  /** Machines with time-only changes not yet journalled. */
  readonly #untouched = new Set<string>();

  /** Creates an empty store; call `load()` to read the file (`load({ dryRun: true })` writes nothing). */
  constructor(opts: MachineStoreOptions) {
    this.#now = opts.now;
    this.#touchMs = opts.touchInterval ?? 60_000;
    this.#maxMachines = Math.max(1, opts.maxMachines ?? 10_000);
    this.#maxNext = Math.max(1, opts.maxNext ?? 10_000);
    this.#warn = opts.warn ?? (() => {});
    this.#journal = (opts.file ?? "") === "" ? null : new LeaseJournal({
      file: opts.file!,
      snapshot: () => this.toJson(),
      now: opts.now,
      saveInterval: opts.saveInterval ?? 10_000,
      warn: this.#warn,
    });
  }

  // ---- one-shots ----

  /** Sets `mac`'s one-shot to `profile` (journalled before it returns). Throws MachinesError when invalid. */
  setNext(mac: string, profile: string): void {
    const key = macKey(mac);
    checkName("profile", profile);
    if (!this.#next.has(key) && this.#next.size >= this.#maxNext) {
      throw new MachinesError(`too many pending one-shots (${this.#maxNext}); clear some first`);
    }
    this.#next.set(key, profile);
    this.#append({ op: "next", mac: key, profile });
  }

  /** Removes `mac`'s pending one-shot; true when there was one. */
  clearNext(mac: string): boolean {
    const key = macKey(mac);
    if (!this.#next.delete(key)) return false;
    this.#append({ op: "next", mac: key, profile: null });
    return true;
  }

  /** The profile name of `mac`'s pending one-shot, or null (an invalid MAC has none). */
  pendingNext(mac: string): string | null {
    const key = machineMac(mac);
    return key === null ? null : this.#next.get(key) ?? null;
  }

  /** The boot counted: removes and returns `mac`'s one-shot (journalled), or null when none was pending. */
  consumeNext(mac: string): string | null {
    const key = machineMac(mac);
    const profile = key === null ? undefined : this.#next.get(key);
    if (key === null || profile === undefined) return null;
    this.#next.delete(key);
    this.#append({ op: "next", mac: key, profile: null });
    return profile;
  }

  // ---- once groups ----

  /** Records that `mac` booted the `once` group `group` (journalled); later selections skip that group. */
  markOnceConsumed(group: string, mac: string): void {
    checkName("group", group);
    const m = this.#entry(macKey(mac));
    if (m.once.includes(group)) return;
    m.once.push(group);
    if (m.once.length > MAX_ONCE) m.once.splice(0, m.once.length - MAX_ONCE);
    this.#save(m);
  }

  /** True when `mac` has already booted the `once` group `group`. */
  onceConsumed(group: string, mac: string): boolean {
    const key = machineMac(mac);
    return key !== null && (this.#machines.get(key)?.once.includes(group) ?? false);
  }

  // ---- inventory ----

  /** Records a sighting: new or changed facts are journalled now, a later `lastSeen` at most once a minute. */
  seen(facts: MachineFacts): void {
    const key = machineMac(facts.mac);
    if (key === null) return;
    const now = this.#now();
    const existing = this.#machines.get(key);
    const m = this.#entry(key, now);
    this.#machines.delete(key); // most recently seen last
    this.#machines.set(key, m);
    let changed = existing === undefined;
    for (const k of FACT_KEYS) {
      const value = facts[k];
      if (value === undefined || m[k] === value) continue;
      (m as unknown as Record<string, unknown>)[k] = value;
      changed = true;
    }
    m.lastSeen = Math.max(m.lastSeen, now);
    this.#changed(m, changed, now);
  }

  /** Records how far `mac`'s boot on `profile` got (a new profile or stage is journalled at once). */
  outcome(mac: string, profile: string, stage: BootStage): void {
    checkName("profile", profile);
    if (!BOOT_STAGES.includes(stage)) {
      throw new MachinesError(`"stage" must be one of ${BOOT_STAGES.join(", ")}`);
    }
    const now = this.#now();
    const m = this.#entry(macKey(mac), now);
    const material = m.lastBoot?.profile !== profile || m.lastBoot.stage !== stage;
    m.lastBoot = { profile, stage, at: now };
    this.#changed(m, material, now);
  }

  /** Every known machine (inventory and pending one-shots), sorted by MAC. */
  list(): MachineView[] {
    const macs = new Set([...this.#machines.keys(), ...this.#next.keys()]);
    return [...macs].sort().map((mac) => this.#view(mac));
  }

  /** One machine (any MAC spelling), or null when it is neither in the inventory nor has a one-shot. */
  get(mac: string): MachineView | null {
    const key = machineMac(mac);
    if (key === null || (!this.#machines.has(key) && !this.#next.has(key))) return null;
    return this.#view(key);
  }

  /** Number of machines in the inventory. */
  get size(): number {
    return this.#machines.size;
  }

  #view(mac: string): MachineView {
    const m = this.#machines.get(mac);
    const next = this.#next.get(mac);
    const facts: Partial<Record<(typeof FACT_KEYS)[number], string>> = {};
    for (const k of FACT_KEYS) if (m?.[k] !== undefined) facts[k] = m[k];
    return {
      mac,
      ...facts as Partial<Pick<MachineView, (typeof FACT_KEYS)[number]>>,
      firstSeen: m?.firstSeen ?? null,
      lastSeen: m?.lastSeen ?? null,
      lastBoot: m?.lastBoot ?? null,
      next: next === undefined ? null : { profile: next },
      onceConsumed: [...(m?.once ?? [])],
    };
  }

  /** The entry for `mac`, created (seen now) when new; the least recently seen is dropped beyond the cap. */
  #entry(mac: string, now = this.#now()): Machine {
    let m = this.#machines.get(mac);
    if (m !== undefined) return m;
    m = { mac, firstSeen: now, lastSeen: now, once: [] };
    this.#machines.set(mac, m);
    this.#evict();
    return m;
  }

  #evict(): void {
    for (const mac of this.#machines.keys()) {
      if (this.#machines.size <= this.#maxMachines) break;
      this.#machines.delete(mac);
      this.#journalled.delete(mac);
      this.#untouched.delete(mac);
    }
  }

  /** Journals `m` now when something material changed or its last journal line is old; else later. */
  #changed(m: Machine, material: boolean, now: number): void {
    const last = this.#journalled.get(m.mac);
    if (material || last === undefined || now - last >= this.#touchMs) this.#save(m, now);
    else this.#untouched.add(m.mac);
  }

  #save(m: Machine, now = this.#now()): void {
    const { mac, ...machine } = m;
    this.#append({ op: "machine", mac, machine: { ...machine, once: [...machine.once] } });
    this.#journalled.set(mac, now);
    this.#untouched.delete(mac);
  }

  #append(record: JournalLine): void {
    this.#journal?.append(record);
  }

  /** Journals the times held back by the throttle as one line (so the next snapshot has them). */
  #touchAll(): void {
    if (this.#untouched.size === 0) return;
    const seen: Record<string, [number, number | null]> = {};
    const now = this.#now();
    for (const mac of this.#untouched) {
      const m = this.#machines.get(mac);
      if (m) seen[mac] = [m.lastSeen, m.lastBoot?.at ?? null];
      this.#journalled.set(mac, now);
    }
    this.#untouched.clear();
    this.#append({ op: "touch", seen });
  }

  // ---- persistence ----

  /** The snapshot: format tag, pending one-shots, and the inventory in least-recently-seen-first order. */
  toJson(): Record<string, unknown> {
    const machines: Record<string, unknown> = {};
    for (const { mac, ...m } of this.#machines.values()) machines[mac] = { ...m, once: [...m.once] };
    return { format: FORMAT, next: Object.fromEntries(this.#next), machines };
  }

  /** Reads the snapshot and journals; unreadable entries and lines are skipped with a warning naming them. */
  async load(opts: { dryRun?: boolean } = {}): Promise<void> {
    if (this.#journal === null) return;
    const { table, tableSource, records } = await this.#journal.replay();
    if (Object.keys(table).length > 0 && table.format !== FORMAT) {
      this.#warn(
        `${tableSource}: not a ${FORMAT} file (format ${JSON.stringify(table.format)}); read anyway`,
      );
    }
    for (const [mac, profile] of Object.entries(objectOr(table.next))) {
      this.#restoreNext(mac, profile, tableSource);
    }
    for (const [mac, m] of Object.entries(objectOr(table.machines))) {
      this.#restoreMachine(mac, m, tableSource);
    }
    for (const { value, source } of records) this.#replay(value, source);
    this.#evict();
    if (!opts.dryRun) await this.flush(); // fold the journals into the snapshot (not for --check)
  }

  #replay(value: unknown, source: string): void {
    const r = objectOr(value);
    if (r.op === "next") {
      if (r.profile === null) {
        const mac = typeof r.mac === "string" ? machineMac(r.mac) : null;
        if (mac !== null) this.#next.delete(mac);
        else this.#warn(`${source}: bad MAC ${JSON.stringify(r.mac)}; line skipped`);
      } else this.#restoreNext(r.mac, r.profile, source);
    } else if (r.op === "machine") {
      this.#restoreMachine(r.mac, r.machine, source);
    } else if (r.op === "touch") {
      for (const [mac, times] of Object.entries(objectOr(r.seen))) {
        const m = this.#machines.get(mac);
        if (m === undefined || !Array.isArray(times)) continue;
        if (isTime(times[0])) m.lastSeen = Math.max(m.lastSeen, times[0]);
        if (isTime(times[1]) && m.lastBoot) {
          m.lastBoot = { ...m.lastBoot, at: Math.max(m.lastBoot.at, times[1]) };
        }
      }
    } else {
      this.#warn(`${source}: unknown journal line ${JSON.stringify(value).slice(0, 80)}; skipped`);
    }
  }

  #restoreNext(rawMac: unknown, profile: unknown, source: string): void {
    const mac = typeof rawMac === "string" ? machineMac(rawMac) : null;
    if (mac === null || typeof profile !== "string" || !MACHINE_NAME.test(profile)) {
      this.#warn(`${source}: one-shot ${JSON.stringify(rawMac)} -> ${JSON.stringify(profile)} skipped`);
      return;
    }
    this.#next.set(mac, profile);
  }

  #restoreMachine(rawMac: unknown, raw: unknown, source: string): void {
    const mac = typeof rawMac === "string" ? machineMac(rawMac) : null;
    const why = mac === null ? "not a MAC address" : checkMachine(raw);
    if (why !== null) {
      this.#warn(`${source}: machine ${JSON.stringify(rawMac)} skipped: ${why}`);
      return;
    }
    const m = raw as Omit<Machine, "mac">;
    const machine: Machine = {
      mac: mac!,
      firstSeen: m.firstSeen,
      lastSeen: m.lastSeen,
      once: [...(m.once ?? [])],
    };
    for (const k of FACT_KEYS) {
      if (m[k] !== undefined) (machine as unknown as Record<string, unknown>)[k] = m[k];
    }
    if (m.lastBoot) {
      machine.lastBoot = { profile: m.lastBoot.profile, stage: m.lastBoot.stage, at: m.lastBoot.at };
    }
    this.#machines.delete(mac!);
    this.#machines.set(mac!, machine);
  }

  /** Writes the snapshot now if anything changed, including times held back by the throttle. */
  async flush(): Promise<void> {
    this.#touchAll();
    await this.#journal?.flush();
  }

  /** Saves everything and stops the save timer; the store stays usable in memory. */
  async close(): Promise<void> {
    this.#touchAll();
    await this.#journal?.close();
  }
}

function macKey(mac: string): string {
  const key = machineMac(mac);
  if (key === null) throw new MachinesError(`not a MAC address: "${mac}"`);
  return key;
}

function checkName(what: string, name: string): void {
  if (!MACHINE_NAME.test(name)) throw new MachinesError(`"${what}": not a ${what} name: "${name}"`);
}

function objectOr(value: unknown): Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value)
    ? value as Record<string, unknown>
    : {};
}

function isTime(value: unknown): value is number {
  return typeof value === "number" && Number.isFinite(value) && value >= 0;
}

/** Why a stored machine entry cannot be used, or null. */
function checkMachine(raw: unknown): string | null {
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) return "not an object";
  const m = raw as Record<string, unknown>;
  if (!isTime(m.firstSeen) || !isTime(m.lastSeen)) return "bad firstSeen/lastSeen";
  if (m.arch !== undefined && !MACHINE_ARCHES.includes(m.arch as MachineArch)) return `bad arch`;
  if (m.client !== undefined && !MACHINE_CLIENTS.includes(m.client as MachineClient)) return `bad client`;
  for (const k of ["uuid", "vendorClass", "hostname", "ip"]) {
    if (m[k] !== undefined && typeof m[k] !== "string") return `bad ${k}`;
  }
  if (m.once !== undefined && (!Array.isArray(m.once) || m.once.some((g) => typeof g !== "string"))) {
    return "bad once";
  }
  if (m.lastBoot !== undefined) {
    const b = objectOr(m.lastBoot);
    if (typeof b.profile !== "string" || !BOOT_STAGES.includes(b.stage as BootStage) || !isTime(b.at)) {
      return "bad lastBoot";
    }
  }
  return null;
}
