/**
 * Per-machine boot at run time: the profiles and groups of `--machines DIR` (reloaded on SIGHUP), the
 * one-shots and inventory (store.ts) and the boot API (boot_api.ts), behind one question: "what does
 * this machine boot?" ({@linkcode MachineBoot.decide}). DHCP asks it per client; the netboot layer asks
 * it again when the machine's loader fetches its per-machine script or config (`machine/MAC.ipxe`,
 * `grub/machine/MAC.cfg`, `pxelinux.cfg/01-MAC`).
 *
 * Order of the answer: a pending one-shot (the admin said so), then the boot API, then the groups; the
 * API's "not ours" stops there, "unreachable" falls through to the groups.
 *
 * A boot counts (a one-shot is used up, a `once` group is marked) when the machine's per-machine file and
 * every local file its profile names (kernel and initrds, or the ISO) were sent completely to the
 * address that fetched that file: {@linkcode MachineBoot.expect} + the transfer-end events.
 * @module
 */
import { getLogger } from "@logtape/logtape";
import { errText } from "../errors.ts";
import type { BootEvent } from "../events.ts";
import { literal } from "../log_throttle.ts";
import type { MachineApiView, MachineRegistry } from "./api.ts";
import { BootApi } from "./boot_api.ts";
import { machineMac, MachinesError } from "./keys.ts";
import type { MachineFacts, Profile } from "./model.ts";
import { EMPTY_MACHINE_SET, loadMachines, type MachineSet } from "./profiles.ts";
import { resolveProfile } from "./select.ts";
import { type BootStage, MachineStore } from "./store.ts";

const log = getLogger(["pypxe", "machines"]);

/** What a machine boots. */
export type MachineDecision =
  /** A profile: from a one-shot, a group, or the boot API. */
  | {
    readonly kind: "profile";
    readonly profile: Profile;
    readonly via: "next" | "group" | "api";
    readonly group?: string;
    readonly once?: boolean;
  }
  /** Nothing decided: today's behaviour (the generated menu and the policy's boot file). */
  | { readonly kind: "default" }
  /** The boot API does not boot this machine: no PXE answer in proxy mode, no boot file in full mode. */
  | { readonly kind: "not-ours"; readonly reason: string };

/** Options of {@linkcode MachineBoot.open}. */
export interface MachineBootOptions {
  /** `--machines DIR`; "" for none. */
  readonly dir: string;
  /** `--boot-api URL`; "" for none. */
  readonly bootApi: string;
  readonly bootApiTimeoutMs: number;
  /** Clock (Unix ms). */
  readonly now?: () => number;
}

/** A boot in progress: what must still be sent before it counts. */
interface Expected {
  readonly mac: string;
  readonly decision: MachineDecision & { kind: "profile" };
  /** Tree paths (no leading `/`) still to be sent completely. */
  readonly waiting: Set<string>;
  readonly since: number;
}

/** Where the one-shots and the inventory are kept: `DIR/state.json` ("" without a DIR: memory only). */
export function machinesStateFile(dir: string): string {
  return dir === "" ? "" : `${dir.replace(/\/+$/, "")}/state.json`;
}

/** Machines whose boots are followed at most (the oldest are forgotten). */
const MAX_EXPECTED = 4096;

/** The per-machine boot state of one server. */
export class MachineBoot implements MachineRegistry {
  readonly #opts: MachineBootOptions;
  readonly #now: () => number;
  readonly store: MachineStore;
  readonly #api: BootApi | null;
  #set: MachineSet;
  /** Boots in progress by client IP. */
  readonly #expected = new Map<string, Expected>();
  /** Last DHCP address seen per MAC and the reverse, for the outcome stages. */
  readonly #macOfIp = new Map<string, string>();

  private constructor(opts: MachineBootOptions, set: MachineSet, store: MachineStore) {
    this.#opts = opts;
    this.#now = opts.now ?? Date.now;
    this.#set = set;
    this.store = store;
    this.#api = opts.bootApi === ""
      ? null
      : new BootApi({ url: opts.bootApi, timeoutMs: opts.bootApiTimeoutMs });
  }

  /** Reads the profiles and groups (a broken file rejects with {@linkcode MachinesError}) and the store. */
  static async open(opts: MachineBootOptions & { dryRun?: boolean }): Promise<MachineBoot> {
    const set = opts.dir === "" ? EMPTY_MACHINE_SET : await loadMachines(opts.dir);
    const now = opts.now ?? Date.now;
    const file = machinesStateFile(opts.dir);
    const store = new MachineStore({ file, now, warn: (m) => log.warn(literal(m)) });
    await store.load({ dryRun: opts.dryRun });
    return new MachineBoot(opts, set, store);
  }

  /**
   * `--check`'s view: the set, and per known machine the profile it would get from a one-shot or the
   * groups (the boot API is not asked). Reads the store without writing.
   */
  static async preview(dir: string): Promise<{ set: MachineSet; lines: string[] }> {
    const machines = await MachineBoot.open({ dir, bootApi: "", bootApiTimeoutMs: 1, dryRun: true });
    const lines = machines.list().map((m) => {
      const d = machines.decideNow(machines.factsOf(m.mac), true);
      const what = d?.kind === "profile"
        ? `${d.profile.name} (${d.via === "next" ? "one-shot" : `group ${d.group}`})`
        : "the menu (no group matches)";
      return `${m.mac}${m.arch ? ` ${m.arch}` : ""}: ${what}`;
    });
    return { set: machines.set, lines };
  }

  /** Always true: a MachineBoot exists only when `--machines`, `--boot-api` or `--api-listen` is set. */
  readonly enabled = true;

  /** The profiles and groups in use. */
  get set(): MachineSet {
    return this.#set;
  }

  /** Re-reads `--machines DIR` (SIGHUP): all or nothing; a broken set keeps the previous one. */
  async reload(): Promise<void> {
    if (this.#opts.dir === "") return;
    try {
      this.#set = await loadMachines(this.#opts.dir);
      this.#api?.invalidate();
      log.info(`reloaded ${this.#set.profiles.size} profile(s) and ${this.#set.groups.length} group(s)`);
    } catch (err) {
      log.error(literal(`machines not reloaded, keeping the previous set: ${errText(err)}`));
    }
  }

  /** What `facts.mac` boots. Never rejects; settles within the boot API's timeout. */
  async decide(facts: MachineFacts): Promise<MachineDecision> {
    const next = this.#local(facts);
    if (next?.kind === "profile" && next.via === "next") return next;
    if (this.#api !== null) {
      const answer = await this.#api.lookup(facts);
      if (answer.kind === "profile") return { kind: "profile", profile: answer.profile, via: "api" };
      if (answer.kind === "not-ours") return { kind: "not-ours", reason: answer.reason };
    }
    return next ?? { kind: "default" };
  }

  /** What `mac` boots, from what the inventory knows of it (the netboot layer's question). */
  decideFor(mac: string): Promise<MachineDecision> {
    return this.decide(this.factsOf(mac));
  }

  /**
   * The answer without waiting: null when only the boot API can tell and its answer is not cached, or,
   * with `orLocal`, the groups' answer then.
   */
  decideNow(facts: MachineFacts, orLocal = false): MachineDecision | null {
    const local = this.#local(facts);
    if (local?.kind === "profile" && local.via === "next") return local;
    if (this.#api !== null) {
      const answer = this.#api.cached(facts);
      if (answer === undefined) return orLocal ? local ?? { kind: "default" } : null;
      if (answer.kind === "profile") return { kind: "profile", profile: answer.profile, via: "api" };
      if (answer.kind === "not-ours") return { kind: "not-ours", reason: answer.reason };
    }
    return local ?? { kind: "default" };
  }

  #local(facts: MachineFacts): MachineDecision | null {
    const r = resolveProfile(this.#set, facts, this.store);
    if (r === null) return null;
    return r.via === "next"
      ? { kind: "profile", profile: r.profile, via: "next" }
      : { kind: "profile", profile: r.profile, via: "group", group: r.group.name, once: r.group.once };
  }

  /** The facts the inventory holds for `mac` (at least the MAC). */
  factsOf(mac: string): MachineFacts {
    const m = this.store.get(mac);
    return {
      mac,
      ...(m?.arch ? { arch: m.arch } : {}),
      ...(m?.client ? { client: m.client } : {}),
      ...(m?.uuid ? { uuid: m.uuid } : {}),
      ...(m?.hostname ? { hostname: m.hostname } : {}),
      ...(m?.ip ? { ip: m.ip } : {}),
    };
  }

  /** A DHCP sighting: inventory, and the address the later transfers come from. */
  seen(facts: MachineFacts): void {
    this.store.seen(facts);
    if (facts.ip !== undefined) this.#remember(facts.ip, facts.mac);
  }

  #remember(ip: string, mac: string): void {
    this.#macOfIp.delete(ip);
    this.#macOfIp.set(ip, mac);
    if (this.#macOfIp.size > MAX_EXPECTED) this.#macOfIp.delete(this.#macOfIp.keys().next().value!);
  }

  /**
   * The machine at `clientIp` was handed its per-machine file for `decision`: the boot counts once that
   * file and `files` (tree paths of the kernel, initrds or ISO) were all sent completely to it.
   */
  expect(
    clientIp: string,
    mac: string,
    decision: MachineDecision & { kind: "profile" },
    files: string[],
  ): void {
    this.#remember(clientIp, mac);
    this.#expected.delete(clientIp);
    this.#expected.set(clientIp, {
      mac,
      decision,
      waiting: new Set(files.map((f) => f.replace(/^\/+/, ""))),
      since: this.#now(),
    });
    if (this.#expected.size > MAX_EXPECTED) this.#expected.delete(this.#expected.keys().next().value!);
    this.#outcome(mac, decision.profile.name, "nbp");
  }

  /** Follows the boot events: DHCP answers, finished transfers. Subscribe once. */
  onEvent(event: BootEvent): void {
    if (event.kind === "dhcp" && event.ip !== undefined && (event.sent === "ACK" || event.sent === "OFFER")) {
      this.#remember(event.ip, event.mac);
      if (event.sent === "ACK") this.store.seen({ mac: event.mac, ip: event.ip });
      return;
    }
    if (event.kind !== "transfer-end" || event.outcome !== "ok") return;
    const ip = event.client.replace(/:\d+$/, "").replace(/^\[(.*)\]$/, "$1");
    const file = event.file.replace(/^\/+/, "");
    const expected = this.#expected.get(ip);
    if (expected === undefined) return;
    if (!expected.waiting.delete(file)) return;
    if (expected.waiting.size > 0) {
      this.#outcome(expected.mac, expected.decision.profile.name, "kernel");
      return;
    }
    this.#expected.delete(ip);
    this.#counted(expected);
  }

  #counted(expected: Expected): void {
    const { mac, decision } = expected;
    const name = decision.profile.name;
    try {
      if (decision.via === "next" && this.store.pendingNext(mac) === name) {
        this.store.consumeNext(mac);
        log.info(literal(`${mac}: one-shot ${name} booted; next boots go back to the usual choice`));
      } else if (decision.via === "group" && decision.once && decision.group !== undefined) {
        this.store.markOnceConsumed(decision.group, mac);
        log.info(literal(`${mac}: once group ${decision.group} booted; it will not be chosen again`));
      }
    } catch (err) {
      log.warn(literal(`${mac}: could not record the boot: ${errText(err)}`));
    }
    this.#outcome(mac, name, "done");
  }

  #outcome(mac: string, profile: string, stage: BootStage): void {
    try {
      this.store.outcome(mac, profile, stage);
    } catch (err) {
      log.debug(literal(`${mac}: outcome not recorded: ${errText(err)}`));
    }
  }

  // ---- MachineRegistry (the machine API) ----

  list(): MachineApiView[] {
    return this.store.list().map((m) => this.#view(m.mac)!);
  }

  get(mac: string): MachineApiView | null {
    return this.#view(mac);
  }

  setNext(mac: string, profile: string): MachineApiView {
    if (!this.#set.profiles.has(profile)) {
      const known = [...this.#set.profiles.keys()];
      throw new MachinesError(
        `unknown profile ${JSON.stringify(profile)} (known: ${known.length ? known.join(", ") : "none"})`,
      );
    }
    const key = machineMac(mac);
    if (key === null) throw new MachinesError(`${JSON.stringify(mac)} is not a MAC address`);
    this.store.setNext(key, profile);
    log.info(literal(`${key}: next boot set to ${profile}`));
    return this.#view(key)!;
  }

  clearNext(mac: string): MachineApiView {
    const key = machineMac(mac);
    if (key === null) throw new MachinesError(`${JSON.stringify(mac)} is not a MAC address`);
    if (this.store.clearNext(key)) log.info(literal(`${key}: pending next boot cleared`));
    return this.#view(key) ?? emptyView(key);
  }

  profileNames(): string[] {
    return [...this.#set.profiles.keys()];
  }

  #view(mac: string): MachineApiView | null {
    const m = this.store.get(mac);
    if (m === null) return null;
    const decision = this.decideNow(this.factsOf(m.mac));
    return { ...m, profile: decision?.kind === "profile" ? decision.profile.name : null };
  }

  /** Saves the store and stops the boot API client. */
  async close(): Promise<void> {
    await this.store.close();
    await this.#api?.close();
  }
}

function emptyView(mac: string): MachineApiView {
  return {
    mac,
    firstSeen: null,
    lastSeen: null,
    lastBoot: null,
    next: null,
    onceConsumed: [],
    profile: null,
  };
}
