/** Selection as a table: specificity, ties, arch, MAC spellings, default, no match, once; one-shots first. */
import { deepStrictEqual, equal } from "node:assert/strict";
import type { Group, MachineFacts, Profile } from "../../src/machines/model.ts";
import { parseGroup, parseProfile } from "../../src/machines/profiles.ts";
import { type BootMemory, resolveProfile, selectGroup, selectorScore } from "../../src/machines/select.ts";

const PROFILES = ["debian", "rescue", "local", "arm", "web", "wipe"];
const names = new Set(PROFILES);

/** A group as its file would say it (parsed, so selectors are normalised like on disk). */
const group = (name: string, raw: Record<string, unknown>): Group =>
  parseGroup(name, JSON.stringify(raw), names);

const GROUPS: Group[] = [
  group("default", { profile: "local", selector: {} }),
  group("bios", { profile: "rescue", selector: { arch: "bios" } }),
  group("arm", { profile: "arm", selector: { arch: "efi-arm64" } }),
  group("lab-mac", { profile: "debian", selector: { mac: "52-54-00-77-00-10" } }),
  group("lab-mac-efi", { profile: "web", selector: { mac: "525400770011", arch: "efi64" } }),
  group("b-tie", { profile: "web", selector: { client: "ipxe" } }),
  group("a-tie", { profile: "debian", selector: { hostname: "WEB1" } }),
  group("uuid", { profile: "debian", selector: { uuid: "77777777-7777-4777-8777-777777770099" } }),
  group("wipe-once", { profile: "wipe", selector: { mac: "02:00:00:00:00:aa" }, once: true }),
];

const facts = (mac: string, more: Omit<MachineFacts, "mac"> = {}): MachineFacts => ({ mac, ...more });

/** [what, facts, expected group name or null, groups (default GROUPS)]. */
const table: [string, MachineFacts, string | null, Group[]?][] = [
  ["default: nothing else matches", facts("02:00:00:00:00:01"), "default"],
  ["arch beats default", facts("02:00:00:00:00:01", { arch: "bios" }), "bios"],
  ["arch: efi-arm64", facts("02:00:00:00:00:01", { arch: "efi-arm64", client: "pxe" }), "arm"],
  ["arch: no group for efi32, default", facts("02:00:00:00:00:01", { arch: "efi32" }), "default"],
  [
    "MAC and arch tie at one key: the name sorting first wins",
    facts("52:54:00:77:00:10", { arch: "bios" }),
    "bios",
  ],
  ["MAC alone", facts("52:54:00:77:00:10", { arch: "efi64" }), "lab-mac"],
  [
    "MAC given with dashes in the file, upper case in the facts",
    facts("52:54:00:77:00:10".toUpperCase()),
    "lab-mac",
  ],
  ["two keys beat one", facts("52:54:00:77:00:11", { arch: "efi64", client: "ipxe" }), "lab-mac-efi"],
  ["every key must match", facts("52:54:00:77:00:11", { arch: "bios" }), "bios"],
  [
    "tie of one-key groups: the first name wins",
    facts("02:00:00:00:00:01", { client: "ipxe", hostname: "web1" }),
    "a-tie",
  ],
  ["hostname without case", facts("02:00:00:00:00:01", { hostname: "Web1" }), "a-tie"],
  ["uuid", facts("02:00:00:00:00:01", { uuid: "77777777-7777-4777-8777-777777770099" }), "uuid"],
  [
    "uuid: upper-case facts",
    facts("02:00:00:00:00:01", { uuid: "77777777-7777-4777-8777-777777770099".toUpperCase() }),
    "uuid",
  ],
  ["once group, not consumed", facts("02:00:00:00:00:aa"), "wipe-once"],
  ["once group, consumed: falls through", facts("02:00:00:00:00:aa", { arch: "bios" }), "bios"],
  [
    "no default: no match is null",
    facts("02:00:00:00:00:01"),
    null,
    GROUPS.filter((g) => g.name !== "default"),
  ],
  ["no groups", facts("02:00:00:00:00:01", { arch: "bios" }), null, []],
];

Deno.test("selectGroup: the table", () => {
  const consumed = (g: Group, mac: string) => g.name === "wipe-once" && mac === "02:00:00:00:00:aa";
  for (const [what, f, expected, groups] of table) {
    const only = what.startsWith("once group, not") ? undefined : consumed;
    equal(selectGroup(groups ?? GROUPS, f, only)?.name ?? null, expected, what);
    // the answer does not depend on the order of the list
    equal(
      selectGroup([...(groups ?? GROUPS)].reverse(), f, only)?.name ?? null,
      expected,
      `${what} (reversed)`,
    );
  }
});

Deno.test("selectorScore: keys counted, a missing fact does not match", () => {
  equal(selectorScore({}, facts("02:00:00:00:00:01")), 0);
  equal(
    selectorScore(
      { arch: "bios", client: "pxe" },
      facts("02:00:00:00:00:01", { arch: "bios", client: "pxe" }),
    ),
    2,
  );
  equal(selectorScore({ hostname: "web1" }, facts("02:00:00:00:00:01")), -1);
  equal(selectorScore({ uuid: "77777777-7777-4777-8777-777777770099" }, facts("02:00:00:00:00:01")), -1);
});

/** An in-memory BootMemory. */
function memory(next: Record<string, string> = {}, once: [string, string][] = []): BootMemory {
  return {
    pendingNext: (mac) => next[mac] ?? null,
    onceConsumed: (g, mac) => once.some(([og, om]) => og === g && om === mac),
  };
}

Deno.test("resolveProfile: a one-shot first, else the group, else null", () => {
  const profiles = new Map<string, Profile>(
    PROFILES.map((name) => [name, parseProfile(name, JSON.stringify({ menu: true }))]),
  );
  const set = { profiles, groups: GROUPS };
  const m = "52:54:00:77:00:10";
  deepStrictEqual(resolveProfile(set, facts(m), memory({ [m]: "wipe" })), {
    via: "next",
    profile: profiles.get("wipe"),
  });
  const byGroup = resolveProfile(set, facts(m), memory());
  equal(byGroup?.via, "group");
  equal(byGroup?.profile.name, "debian");
  equal(byGroup?.via === "group" && byGroup.group.name, "lab-mac");
  // a one-shot whose profile was removed by a reload falls through to the groups
  equal(resolveProfile(set, facts(m), memory({ [m]: "gone" }))?.profile.name, "debian");
  // once consumed through the memory
  equal(resolveProfile(set, facts("02:00:00:00:00:aa"), memory())?.profile.name, "wipe");
  equal(
    resolveProfile(set, facts("02:00:00:00:00:aa"), memory({}, [["wipe-once", "02:00:00:00:00:aa"]]))?.profile
      .name,
    "local",
  );
  // no memory at all, and no groups: today's behaviour
  equal(resolveProfile({ profiles, groups: [] }, facts(m)), null);
});
