/**
 * The machine API over a real socket with curl: inventory, one-shot PUT/DELETE, token rules, bad input;
 * the one-shot survives a restart of the store.
 */
import { deepEqual, equal, match, ok } from "node:assert/strict";
import { MachineApiServer, readTokenFile } from "../../src/machines/api.ts";
import { MachineBoot } from "../../src/machines/runtime.ts";
import { curl } from "../http/helpers.ts";

const TOKEN = "s3cret-token-0123456789";

async function machinesDir(): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix: "pypxe-api-" });
  await Deno.mkdir(`${dir}/profiles`);
  await Deno.mkdir(`${dir}/groups`);
  await Deno.writeTextFile(
    `${dir}/profiles/debian.json`,
    JSON.stringify({ kernel: "d/vmlinuz", initrd: ["d/initrd"] }),
  );
  await Deno.writeTextFile(`${dir}/profiles/disk.json`, JSON.stringify({ local: true }));
  await Deno.writeTextFile(`${dir}/groups/all.json`, JSON.stringify({ profile: "disk" }));
  return dir;
}

async function serve(dir: string, token: string | null) {
  const machines = await MachineBoot.open({ dir, bootApi: "", bootApiTimeoutMs: 2000 });
  const api = new MachineApiServer({ listen: "127.0.0.1:0", registry: machines, token });
  await api.start();
  const base = `http://127.0.0.1:${api.port}`;
  return {
    machines,
    base,
    async close() {
      await api.stop();
      await machines.close();
    },
  };
}

const json = (r: { body: Uint8Array }) => JSON.parse(new TextDecoder().decode(r.body));

Deno.test("machine api: inventory, one-shot set and cleared with the token, refusals with reasons", async () => {
  const dir = await machinesDir();
  const s = await serve(dir, TOKEN);
  try {
    s.machines.seen({ mac: "52:54:00:aa:00:01", arch: "bios", client: "pxe", ip: "10.0.0.5" });
    const list = json(await curl([`${s.base}/api/machines`]));
    equal(list.machines.length, 1);
    equal(list.machines[0].mac, "52:54:00:aa:00:01");
    equal(list.machines[0].profile, "disk", "the default group");
    equal(list.machines[0].next, null);

    const auth = ["-H", `Authorization: Bearer ${TOKEN}`, "-H", "content-type: application/json"];
    const put = await curl([
      "-X",
      "PUT",
      ...auth,
      "-d",
      '{"profile":"debian"}',
      `${s.base}/api/machines/52-54-00-AA-00-01/next`,
    ]);
    equal(put.status, 200, new TextDecoder().decode(put.body));
    deepEqual(json(put).next, { profile: "debian" });
    equal(json(put).profile, "debian", "the one-shot wins over the group");
    // a machine never seen yet can be given a one-shot (a new machine about to be racked)
    const fresh = await curl([
      "-X",
      "PUT",
      ...auth,
      "-d",
      '{"profile":"debian"}',
      `${s.base}/api/machines/52:54:00:aa:00:02/next`,
    ]);
    equal(fresh.status, 200);
    equal(json(await curl([`${s.base}/api/machines/52:54:00:aa:00:02`])).next.profile, "debian");

    const bad: [string[], number, RegExp][] = [
      [["-X", "PUT", "-d", '{"profile":"debian"}'], 401, /bearer token/],
      [
        ["-X", "PUT", "-H", "Authorization: Bearer wrong-token-0000000000", "-d", '{"profile":"debian"}'],
        401,
        /bearer/,
      ],
      [["-X", "PUT", ...auth, "-d", "{not json"], 400, /not valid JSON/],
      [
        ["-X", "PUT", ...auth, "-d", '{"profile":"nosuch"}'],
        400,
        /unknown profile "nosuch" \(known: debian, disk\)/,
      ],
      [["-X", "PUT", ...auth, "-d", '{"profile":"debian","x":1}'], 400, /unknown key "x"/],
      [["-X", "PUT", ...auth, "-d", '["debian"]'], 400, /expected \{"profile": "NAME"\}/],
      [["-X", "POST", ...auth, "-d", "{}"], 405, /PUT or DELETE/],
    ];
    for (const [args, status, reason] of bad) {
      const r = await curl([...args, `${s.base}/api/machines/52:54:00:aa:00:01/next`]);
      equal(r.status, status, args.join(" "));
      match(json(r).error, reason);
    }
    const badMac = await curl([
      "-X",
      "PUT",
      ...auth,
      "-d",
      '{"profile":"debian"}',
      `${s.base}/api/machines/zz:zz/next`,
    ]);
    equal(badMac.status, 400);
    match(json(badMac).error, /not a MAC address/);
    equal((await curl([`${s.base}/api/machines/52:54:00:aa:00:99`])).status, 404);
    equal((await curl([`${s.base}/api/nothing`])).status, 404);
    // nothing changed by the refused requests
    deepEqual(json(await curl([`${s.base}/api/machines/52:54:00:aa:00:01`])).next, { profile: "debian" });
    deepEqual(json(await curl([`${s.base}/api/profiles`])).profiles, ["debian", "disk"]);

    const del = await curl(["-X", "DELETE", ...auth, `${s.base}/api/machines/52:54:00:aa:00:01/next`]);
    equal(del.status, 200);
    equal(json(del).next, null);
    equal(json(del).profile, "disk");
  } finally {
    await s.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("machine api: without a token writes are refused (403); reads work", async () => {
  const dir = await machinesDir();
  const s = await serve(dir, null);
  try {
    const r = await curl([
      "-X",
      "PUT",
      "-H",
      "Authorization: Bearer x",
      "-d",
      '{"profile":"debian"}',
      `${s.base}/api/machines/52:54:00:aa:00:01/next`,
    ]);
    equal(r.status, 403);
    match(json(r).error, /--api-token-file/);
    equal((await curl([`${s.base}/api/machines`])).status, 200);
    equal(s.machines.store.pendingNext("52:54:00:aa:00:01"), null);
  } finally {
    await s.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("machine api: a one-shot set over the API is still pending after a restart", async () => {
  const dir = await machinesDir();
  let s = await serve(dir, TOKEN);
  try {
    const put = await curl([
      "-X",
      "PUT",
      "-H",
      `Authorization: Bearer ${TOKEN}`,
      "-d",
      '{"profile":"debian"}',
      `${s.base}/api/machines/52:54:00:aa:00:07/next`,
    ]);
    equal(put.status, 200);
    await s.close();
    s = await serve(dir, TOKEN);
    deepEqual(json(await curl([`${s.base}/api/machines/52:54:00:aa:00:07`])).next, { profile: "debian" });
  } finally {
    await s.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("machine api: the token file must hold a long enough token", async () => {
  const file = await Deno.makeTempFile();
  try {
    await Deno.writeTextFile(file, `${TOKEN}\n`);
    equal(await readTokenFile(file), TOKEN);
    await Deno.writeTextFile(file, "short\n");
    await readTokenFile(file).then(() => ok(false), (err) => match(String(err), /at least 16 characters/));
    await readTokenFile("/nonexistent/token").then(
      () => ok(false),
      (err) => match(String(err), /cannot read/),
    );
  } finally {
    await Deno.remove(file);
  }
});
