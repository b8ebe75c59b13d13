/** The machine store: one-shots, once-markers, inventory, the journal throttle and cap, crash safety. */
import { deepStrictEqual, equal, ok, throws } from "node:assert/strict";
import { MachinesError } from "../../src/machines/keys.ts";
import { MachineStore, type MachineStoreOptions } from "../../src/machines/store.ts";

const T0 = 1_700_000_000_000;
const MAC = "52:54:00:77:00:10";

async function withDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "pypxe-machine-store-" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** A loaded store over `file` with a settable clock and the warnings collected. */
async function open(file: string, over: Partial<MachineStoreOptions> = {}) {
  const clock = { now: T0 };
  const warnings: string[] = [];
  const store = new MachineStore({
    file,
    now: () => clock.now,
    saveInterval: 3_600_000,
    warn: (m) => warnings.push(m),
    ...over,
  });
  await store.load();
  return { store, clock, warnings };
}

const journalLines = (file: string): unknown[] => {
  try {
    return Deno.readTextFileSync(`${file}.journal`).split("\n").filter((l) => l !== "").map((l) =>
      JSON.parse(l)
    );
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return [];
    throw err;
  }
};

Deno.test("store: one-shots by any MAC spelling; set, clear, consume; refusals", async () => {
  const store = new MachineStore({ now: () => T0 });
  store.setNext("52-54-00-77-00-10", "debian");
  equal(store.pendingNext("525400770010"), "debian");
  equal(store.pendingNext(MAC.toUpperCase()), "debian");
  store.setNext(MAC, "rescue"); // replaces
  equal(store.pendingNext(MAC), "rescue");
  equal(store.consumeNext(MAC), "rescue");
  equal(store.pendingNext(MAC), null);
  equal(store.consumeNext(MAC), null);
  store.setNext(MAC, "debian");
  equal(store.clearNext(MAC), true);
  equal(store.clearNext(MAC), false);
  equal(store.pendingNext("not a mac"), null);
  throws(
    () => store.setNext("52:54:00", "debian"),
    (e) => e instanceof MachinesError && /not a MAC/.test(e.message),
  );
  throws(() => store.setNext(MAC, "../etc"), /"profile": not a profile name/);
  const small = new MachineStore({ now: () => T0, maxNext: 1 });
  small.setNext(MAC, "debian");
  small.setNext(MAC, "rescue"); // same MAC: not a new one
  throws(() => small.setNext("02:00:00:00:00:01", "debian"), /too many pending one-shots \(1\)/);
  await store.close();
});

Deno.test("store: every acknowledged change is in the journal when the method returns", async () => {
  await withDir(async (dir) => {
    const file = `${dir}/machines.json`;
    const { store } = await open(file);
    store.setNext(MAC, "debian");
    deepStrictEqual(journalLines(file), [{ op: "next", mac: MAC, profile: "debian" }]);
    store.consumeNext(MAC);
    store.markOnceConsumed("wipe", MAC);
    store.outcome(MAC, "wipe", "kernel");
    const lines = journalLines(file) as { op: string; mac?: string; profile?: string | null }[];
    deepStrictEqual(lines.map((l) => [l.op, l.profile ?? null]), [
      ["next", "debian"],
      ["next", null],
      ["machine", null],
      ["machine", null],
    ]);
    await store.close();
  });
});

Deno.test("store: state survives close and reopen (snapshot), and a crash (journal only)", async () => {
  await withDir(async (dir) => {
    const file = `${dir}/machines.json`;
    const a = await open(file);
    a.store.seen({ mac: MAC, arch: "efi64", client: "pxe", uuid: "77777777-7777-4777-8777-777777770010" });
    a.clock.now += 1000;
    a.store.setNext(MAC, "debian");
    a.store.markOnceConsumed("wipe", MAC);
    a.store.outcome(MAC, "debian", "nbp");
    a.store.setNext("02:00:00:00:00:01", "rescue");
    const before = a.store.list();
    // no close(): what a crash leaves (the snapshot from load() is empty, the journal has it all)
    const b = await open(file);
    deepStrictEqual(b.store.list(), before);
    deepStrictEqual(b.warnings, []);
    await b.store.close();
    const saved = JSON.parse(Deno.readTextFileSync(file));
    equal(saved.format, "pypxe-machines/1");
    deepStrictEqual(saved.next, { [MAC]: "debian", "02:00:00:00:00:01": "rescue" });
    const c = await open(file);
    deepStrictEqual(c.store.list(), before);
    equal(c.store.onceConsumed("wipe", MAC), true);
    equal(c.store.onceConsumed("other", MAC), false);
    await c.store.close();
    await a.store.close();
  });
});

Deno.test("store: seen merges facts, keeps firstSeen; views include one-shot-only machines", async () => {
  const clock = { now: T0 };
  const store = new MachineStore({ now: () => clock.now });
  store.seen({ mac: MAC, arch: "bios", client: "pxe", vendorClass: "PXEClient", ip: "10.0.0.5" });
  clock.now += 5000;
  store.seen({ mac: MAC.toUpperCase(), client: "ipxe", hostname: "web1" }); // no arch: the old one stays
  store.setNext("02-00-00-00-00-01", "rescue");
  deepStrictEqual(store.get(MAC), {
    mac: MAC,
    arch: "bios",
    client: "ipxe",
    vendorClass: "PXEClient",
    hostname: "web1",
    ip: "10.0.0.5",
    firstSeen: T0,
    lastSeen: T0 + 5000,
    lastBoot: null,
    next: null,
    onceConsumed: [],
  });
  deepStrictEqual(store.get("02:00:00:00:00:01"), {
    mac: "02:00:00:00:00:01",
    firstSeen: null,
    lastSeen: null,
    lastBoot: null,
    next: { profile: "rescue" },
    onceConsumed: [],
  });
  deepStrictEqual(store.list().map((m) => m.mac), ["02:00:00:00:00:01", MAC]);
  equal(store.get("02:00:00:00:00:02"), null);
  equal(store.get("garbage"), null);
  store.seen({ mac: "garbage" }); // ignored, never thrown
  equal(store.size, 1);
  await store.close();
});

Deno.test("store: a DHCP flood journals lastSeen at most once a minute per machine", async () => {
  await withDir(async (dir) => {
    const file = `${dir}/machines.json`;
    const { store, clock } = await open(file);
    for (let i = 0; i < 5000; i++) {
      clock.now += 10; // 50 s in all
      store.seen({ mac: MAC, arch: "bios", client: "pxe" });
      store.outcome(MAC, "local", "dhcp");
    }
    equal(journalLines(file).length, 2, "the first sighting and the first outcome");
    clock.now += 60_000;
    store.seen({ mac: MAC, arch: "bios", client: "pxe" });
    equal(journalLines(file).length, 3);
    store.seen({ mac: MAC, arch: "efi64", client: "pxe" }); // a changed fact: at once
    equal(journalLines(file).length, 4);
    store.outcome(MAC, "local", "nbp"); // a new stage: at once
    equal(journalLines(file).length, 5);
    const last = clock.now += 1000;
    store.seen({ mac: MAC });
    store.outcome(MAC, "local", "nbp");
    equal(journalLines(file).length, 5, "time-only: held back");
    await store.flush(); // the held-back times go into the snapshot
    const saved = JSON.parse(Deno.readTextFileSync(file)).machines[MAC];
    equal(saved.lastSeen, last);
    deepStrictEqual(saved.lastBoot, { profile: "local", stage: "nbp", at: last });
    await store.close();
  });
});

Deno.test("store: held-back times survive a crash as a touch line written by flush()", async () => {
  await withDir(async (dir) => {
    const file = `${dir}/machines.json`;
    const a = await open(file, { touchInterval: 60_000 });
    a.store.seen({ mac: MAC, arch: "bios" });
    a.clock.now += 5000;
    a.store.seen({ mac: MAC, arch: "bios" });
    // the snapshot write fails (a directory in the way), so only the journal holds the touch
    Deno.mkdirSync(`${file}.tmp`);
    Deno.writeTextFileSync(`${file}.tmp/x`, "");
    await a.store.flush();
    const b = await open(file);
    equal(b.store.get(MAC)?.lastSeen, T0 + 5000);
    Deno.removeSync(`${file}.tmp`, { recursive: true });
    await b.store.close();
    await a.store.close();
  });
});

Deno.test("store: the inventory is capped, dropping the least recently seen", async () => {
  await withDir(async (dir) => {
    const file = `${dir}/machines.json`;
    const { store, clock } = await open(file, { maxMachines: 3 });
    const mac = (n: number) => `02:00:00:00:00:0${n}`;
    for (const n of [1, 2, 3]) {
      clock.now += 1000;
      store.seen({ mac: mac(n) });
    }
    clock.now += 1000;
    store.seen({ mac: mac(1) }); // 1 is recent again
    store.seen({ mac: mac(4) }); // 2 goes
    deepStrictEqual(store.list().map((m) => m.mac), [mac(1), mac(3), mac(4)]);
    store.setNext(mac(2), "debian"); // a one-shot is not inventory: it is kept
    store.outcome(mac(5), "debian", "dhcp"); // an outcome for a new machine adds it: 3 goes
    deepStrictEqual(store.list().map((m) => m.mac), [mac(1), mac(2), mac(4), mac(5)]);
    equal(store.size, 3);
    await store.close();
    const again = await open(file, { maxMachines: 3 });
    deepStrictEqual(again.store.list().map((m) => m.mac), [mac(1), mac(2), mac(4), mac(5)]);
    await again.store.close();
  });
});

Deno.test("store: once-markers are bounded per machine; bad names refused", async () => {
  const store = new MachineStore({ now: () => T0 });
  for (let i = 0; i < 70; i++) store.markOnceConsumed(`g${i}`, MAC);
  equal(store.get(MAC)?.onceConsumed.length, 64);
  equal(store.onceConsumed("g0", MAC), false);
  equal(store.onceConsumed("g69", MAC), true);
  throws(() => store.markOnceConsumed("a b", MAC), /"group": not a group name/);
  throws(
    () => store.outcome(MAC, "debian", "booted" as "done"),
    /"stage" must be one of dhcp, nbp, kernel, done/,
  );
  await store.close();
});

Deno.test("store: a cut last journal line and bad entries are skipped with warnings; the rest is kept", async () => {
  await withDir(async (dir) => {
    const file = `${dir}/machines.json`;
    const a = await open(file);
    a.store.setNext(MAC, "debian");
    a.store.seen({ mac: "02:00:00:00:00:01", arch: "bios" });
    await a.store.close();
    // a snapshot with one bad machine, then a journal with bad lines and a line cut by the crash
    const saved = JSON.parse(Deno.readTextFileSync(file));
    saved.machines["02:00:00:00:00:02"] = { firstSeen: "yesterday", lastSeen: 1 };
    saved.next["nonsense"] = "debian";
    Deno.writeTextFileSync(file, JSON.stringify(saved));
    Deno.writeTextFileSync(
      `${file}.journal`,
      [
        JSON.stringify({ op: "next", mac: "02:00:00:00:00:03", profile: "rescue" }),
        JSON.stringify({ op: "launch", mac: MAC }),
        JSON.stringify({
          op: "machine",
          mac: "02:00:00:00:00:04",
          machine: { firstSeen: 1, lastSeen: 2, arch: "vax" },
        }),
        `{"op":"next","mac":"02:00:00:00:00:05","prof`,
      ].join("\n"),
    );
    const b = await open(file);
    equal(b.store.pendingNext(MAC), "debian");
    equal(b.store.pendingNext("02:00:00:00:00:03"), "rescue");
    equal(b.store.pendingNext("02:00:00:00:00:05"), null);
    deepStrictEqual(b.store.list().map((m) => m.mac), ["02:00:00:00:00:01", "02:00:00:00:00:03", MAC]);
    equal(b.warnings.length, 5, b.warnings.join("\n"));
    ok(b.warnings.some((w) => /machine "02:00:00:00:00:02" skipped: bad firstSeen\/lastSeen/.test(w)));
    ok(b.warnings.some((w) => /one-shot "nonsense"/.test(w)));
    ok(b.warnings.some((w) => /unknown journal line/.test(w)));
    ok(b.warnings.some((w) => /machine "02:00:00:00:00:04" skipped: bad arch/.test(w)));
    ok(b.warnings.some((w) => /machines\.json\.journal:4: unreadable journal line skipped/.test(w)));
    await b.store.close();
  });
});

Deno.test({
  name: "store: kill -9 right after setNext returns: the one-shot is pending after reopening",
  sanitizeResources: true,
  sanitizeOps: true,
  async fn() {
    await withDir(async (dir) => {
      const file = `${dir}/machines.json`;
      const script = `${dir}/child.ts`;
      const storeUrl = new URL("../../src/machines/store.ts", import.meta.url).href;
      Deno.writeTextFileSync(
        script,
        `import { MachineStore } from ${JSON.stringify(storeUrl)};
const store = new MachineStore({ file: Deno.args[0], now: Date.now, saveInterval: 3_600_000 });
await store.load();
store.setNext("52-54-00-77-00-10", "debian");
console.log("ok");
setTimeout(() => Deno.exit(3), 30_000); // never reached: the test kills it first
`,
      );
      const child = new Deno.Command(Deno.execPath(), {
        args: [
          "run",
          "--no-config",
          "--no-lock",
          "--allow-read",
          "--allow-write",
          "--no-prompt",
          script,
          file,
        ],
        cwd: dir,
        stdout: "piped",
        stderr: "piped",
        env: { NO_COLOR: "1" },
      }).spawn();
      const stderr = new Response(child.stderr).text();
      const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
      let out = "";
      const kill = () => {
        try {
          child.kill("SIGKILL");
        } catch (err) {
          if (!(err instanceof TypeError)) throw err; // TypeError: it has already exited
        }
      };
      const deadline = setTimeout(kill, 30_000);
      try {
        for (let reads = 0; reads < 100 && !out.includes("ok\n"); reads++) {
          const { value, done } = await reader.read();
          if (done) break;
          out += value;
        }
      } finally {
        kill(); // right after "ok": setNext has returned, nothing else was flushed
        clearTimeout(deadline);
        await reader.cancel();
      }
      if (!out.includes("ok\n")) throw new Error(`the child never said ok: ${out} ${await stderr}`);
      const status = await child.status;
      equal(status.signal, "SIGKILL");
      await stderr;
      // the snapshot (written by load() before setNext) does not have it: the journal line does
      equal(JSON.parse(Deno.readTextFileSync(file)).next[MAC], undefined);
      const { store, warnings } = await open(file);
      equal(store.pendingNext(MAC), "debian");
      deepStrictEqual(warnings, []);
      await store.close();
    });
  },
});
