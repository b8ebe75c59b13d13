/**
 * MachineBoot: SIGHUP reload is all or nothing (a broken set keeps the previous one and says why); the
 * decision order is one-shot, then boot API, then groups; an unreachable API falls back to the groups.
 */
import { equal, match } from "node:assert/strict";
import { MachineBoot } from "../../src/machines/runtime.ts";
import { startFakeBootApi } from "../helpers/boot_api_server.ts";
import { captureLogs } from "../helpers/logs.ts";
import { writeTree } from "../helpers/servers.ts";

const MAC = "52:54:00:00:00:01";

async function dir(): Promise<string> {
  const root = await Deno.makeTempDir({ prefix: "pypxe-runtime-" });
  await writeTree(root, {
    "profiles/a.json": JSON.stringify({ local: true }),
    "profiles/b.json": JSON.stringify({ menu: true }),
    "groups/all.json": JSON.stringify({ profile: "a" }),
  });
  return root;
}

const chosen = async (m: MachineBoot) => {
  const d = await m.decideFor(MAC);
  return d.kind === "profile" ? `${d.via}:${d.profile.name}` : d.kind;
};

Deno.test("machines runtime: a reload takes a whole new set or keeps the old one", async () => {
  const root = await dir();
  const logs = await captureLogs("info");
  const m = await MachineBoot.open({ dir: root, bootApi: "", bootApiTimeoutMs: 500 });
  try {
    equal(await chosen(m), "group:a");
    await Deno.writeTextFile(`${root}/groups/all.json`, JSON.stringify({ profile: "b" }));
    await Deno.writeTextFile(`${root}/profiles/broken.json`, "{ not json");
    await m.reload();
    equal(await chosen(m), "group:a", "the broken reload changed nothing");
    match(logs.lines.join("\n"), /machines not reloaded, keeping the previous set: .*profiles\/broken\.json/);
    await Deno.remove(`${root}/profiles/broken.json`);
    await m.reload();
    equal(await chosen(m), "group:b");
  } finally {
    await m.close();
    await logs.stop();
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("machines runtime: one-shot, then the boot API, then the groups; unreachable falls back", async () => {
  const root = await dir();
  const api = await startFakeBootApi({ answers: { [MAC]: { json: { kernel: "http://10.0.0.1/k" } } } });
  const m = await MachineBoot.open({ dir: root, bootApi: api.url, bootApiTimeoutMs: 300 });
  try {
    equal(await chosen(m), "api:boot-api");
    m.setNext(MAC, "b");
    equal(await chosen(m), "next:b", "an admin's one-shot beats the API");
    m.clearNext(MAC);
    api.answer(MAC, { status: 404 });
    await m.reload(); // drops the API cache
    equal(await chosen(m), "not-ours");
    await api.close();
    await m.reload();
    equal(await chosen(m), "group:a", "API gone: the groups decide");
  } finally {
    await m.close();
    await Deno.remove(root, { recursive: true });
  }
});
