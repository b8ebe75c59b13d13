/**
 * Which profile a machine boots: a pending one-shot first, else the best-matching group, else none
 * (today's behaviour: the policy table and the generated menu). Pure: the one-shots and once-markers are
 * read through {@linkcode BootMemory}, which the machine store implements.
 *
 * Group rules: every key of a group's selector must match the machine's facts; the group with the most
 * keys wins (an empty selector matches everything, so it is the default); ties go to the group whose name
 * sorts first (plain code-unit order, as `Array.prototype.sort`); a `once` group the machine has already
 * used is skipped, so the machine falls through to the next best group.
 *
 * @example
 * ```ts
 * const set = await loadMachines("machines");
 * const chosen = resolveProfile(set, facts, store);
 * if (chosen) console.log(`${facts.mac} boots ${chosen.profile.name} (${chosen.via})`);
 * ```
 * @module
 */
import type { Group, MachineFacts, Profile, Selector } from "./model.ts";
import type { MachineSet } from "./profiles.ts";

/** What selection needs to know of the past: one-shots and `once` groups already used. */
export interface BootMemory {
  /** The profile name of the machine's pending one-shot, or null. */
  pendingNext(mac: string): string | null;
  /** True when the machine has already booted the `once` group `group`. */
  onceConsumed(group: string, mac: string): boolean;
}

/** A chosen profile and where the choice came from. */
export type Resolution =
  | { readonly via: "next"; readonly profile: Profile }
  | { readonly via: "group"; readonly profile: Profile; readonly group: Group };

/** The number of selector keys that match `facts`, or -1 when any key does not. */
export function selectorScore(selector: Selector, facts: MachineFacts): number {
  let score = 0;
  if (selector.mac !== undefined) {
    if (selector.mac !== facts.mac.toLowerCase()) return -1;
    score++;
  }
  if (selector.uuid !== undefined) {
    if (selector.uuid !== facts.uuid?.toLowerCase()) return -1;
    score++;
  }
  if (selector.arch !== undefined) {
    if (selector.arch !== facts.arch) return -1;
    score++;
  }
  if (selector.client !== undefined) {
    if (selector.client !== facts.client) return -1;
    score++;
  }
  if (selector.hostname !== undefined) {
    if (selector.hostname.toLowerCase() !== facts.hostname?.trim().toLowerCase()) return -1;
    score++;
  }
  return score;
}

/**
 * The group for `facts`: the most specific matching selector, ties to the first name; `once` groups for
 * which `consumedOnce(group, mac)` is true are skipped. Null when no group matches.
 */
export function selectGroup(
  groups: readonly Group[],
  facts: MachineFacts,
  consumedOnce?: (group: Group, mac: string) => boolean,
): Group | null {
  let best: Group | null = null;
  let bestScore = -1;
  for (const group of groups) {
    const score = selectorScore(group.selector, facts);
    if (score < 0 || score < bestScore) continue;
    if (score === bestScore && best !== null && best.name <= group.name) continue;
    if (group.once && consumedOnce?.(group, facts.mac)) continue;
    best = group;
    bestScore = score;
  }
  return best;
}

/**
 * The profile `facts.mac` boots: its pending one-shot (when that profile still exists), else its group's
 * profile, else null (today's behaviour).
 */
export function resolveProfile(set: MachineSet, facts: MachineFacts, memory?: BootMemory): Resolution | null {
  const next = memory?.pendingNext(facts.mac) ?? null;
  const nextProfile = next === null ? undefined : set.profiles.get(next);
  if (nextProfile !== undefined) return { via: "next", profile: nextProfile };
  const group = selectGroup(set.groups, facts, (g, mac) => memory?.onceConsumed(g.name, mac) ?? false);
  const profile = group === null ? undefined : set.profiles.get(group.profile);
  return group === null || profile === undefined ? null : { via: "group", profile, group };
}
