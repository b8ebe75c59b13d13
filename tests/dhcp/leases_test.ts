import { deepStrictEqual, equal, ok } from "node:assert/strict";
import { LeaseStore, type LeaseStoreOptions } from "../../src/dhcp/leases.ts";

const T0 = 1_700_000_000_000;

function store(over: Partial<LeaseStoreOptions> = {}) {
  let now = T0;
  const warnings: string[] = [];
  const s = new LeaseStore({
    begin: "10.0.0.10",
    end: "10.0.0.14",
    leaseTime: 3600,
    now: () => now,
    warn: (m) => warnings.push(m),
    ...over,
  });
  return { s, warnings, advance: (ms: number) => (now += ms), at: () => now };
}

Deno.test("leases: pool is begin..end inclusive minus exclusions and reservations", () => {
  const { s } = store({
    exclude: ["10.0.0.10", "10.0.0.12"],
    reserved: new Map([["aa:00:00:00:00:01", "10.0.0.13"]]),
  });
  equal(s.poolSize, 2);
  const got = [s.offer("02:00:00:00:00:01"), s.offer("02:00:00:00:00:02"), s.offer("02:00:00:00:00:03")];
  deepStrictEqual(got, ["10.0.0.11", "10.0.0.14", null]);
  equal(s.offer("aa:00:00:00:00:01"), "10.0.0.13");
  ok(!s.isOurs("10.0.0.15") && !s.isOurs("10.0.0.9") && !s.isOurs("10.0.0.10"));
  ok(s.isOurs("10.0.0.13", "aa:00:00:00:00:01") && !s.isOurs("10.0.0.13", "02:00:00:00:00:09"));
});

Deno.test("leases: offers expire, bound leases last the lease time, renew refreshes", () => {
  const { s, advance, at } = store({ end: "10.0.0.10", offerTime: 30 });
  equal(s.offer("02:00:00:00:00:01"), "10.0.0.10");
  equal(s.offer("02:00:00:00:00:02"), null);
  advance(31_000);
  equal(s.offer("02:00:00:00:00:02"), "10.0.0.10");
  equal(s.bind("02:00:00:00:00:02", "10.0.0.10"), null);
  equal(s.bind("02:00:00:00:00:01", "10.0.0.10"), "taken");
  equal(s.leaseFor("02:00:00:00:00:02")?.expires, at() + 3600_000);
  advance(3000_000);
  equal(s.bind("02:00:00:00:00:02", "10.0.0.10"), null); // renew
  advance(3000_000);
  equal(s.offer("02:00:00:00:00:01"), null, "renewed lease still held");
  advance(700_000);
  equal(s.offer("02:00:00:00:00:01"), "10.0.0.10", "expired lease reusable");
});

Deno.test("leases: a returning client gets its old address, even after expiry or release", () => {
  const { s, advance } = store();
  const a = "02:00:00:00:00:0a";
  s.offer(a);
  s.offer("02:00:00:00:00:0b");
  const ip = s.offer("02:00:00:00:00:0c")!;
  s.bind("02:00:00:00:00:0c", ip);
  advance(5000_000);
  for (let i = 0; i < 3; i++) s.offer(`02:00:00:00:01:0${i}`); // other clients take the never-used ones
  equal(s.offer("02:00:00:00:00:0c"), ip);
  s.bind("02:00:00:00:00:0c", ip);
  ok(s.release("02:00:00:00:00:0c", ip));
  equal(s.leaseFor("02:00:00:00:00:0c")?.state, "free");
  equal(s.offer("02:00:00:00:00:0c"), ip);
  equal(s.offer(a), s.leaseFor(a)?.ip);
});

Deno.test("leases: the requested address is honoured when free; DECLINE quarantines", () => {
  const { s, advance } = store({ declineTime: 600 });
  equal(s.offer("02:00:00:00:00:01", { requested: "10.0.0.13" }), "10.0.0.13");
  equal(s.offer("02:00:00:00:00:02", { requested: "10.0.0.13" }), "10.0.0.10");
  equal(s.offer("02:00:00:00:00:03", { requested: "10.9.9.9" }), "10.0.0.11");
  s.bind("02:00:00:00:00:01", "10.0.0.13");
  ok(s.decline("02:00:00:00:00:01", "10.0.0.13"));
  equal(s.leaseFor("02:00:00:00:00:01"), undefined);
  equal(s.check("02:00:00:00:00:09", "10.0.0.13"), "declined");
  advance(601_000);
  equal(s.check("02:00:00:00:00:09", "10.0.0.13"), null);
});

async function tempDir(): Promise<string> {
  return await Deno.makeTempDir({ prefix: "pypxe-leases-" });
}

Deno.test("leases: saved in PyPXE's format, atomically, with a .bak; loaded back", async () => {
  const dir = await tempDir();
  try {
    const file = `${dir}/leases.json`;
    const a = store({ file });
    await a.s.load();
    a.s.offer("02:00:00:00:00:01");
    equal(a.s.bind("02:00:00:00:00:01", "10.0.0.10", { ipxe: true }), null);
    await a.s.close();
    const saved = JSON.parse(await Deno.readTextFile(file));
    deepStrictEqual(saved, {
      "02:00:00:00:00:01": { ip: "10.0.0.10", expire: (T0 + 3600_000) / 1000, ipxe: true },
    });
    ok((await Deno.stat(`${file}.bak`)).isFile);
    const names = [...Deno.readDirSync(dir)].map((e) => e.name).sort();
    deepStrictEqual(names, ["leases.json", "leases.json.bak"]);
    const b = store({ file });
    await b.s.load();
    equal(b.s.leaseFor("02:00:00:00:00:01")?.ip, "10.0.0.10");
    equal(b.s.leaseFor("02:00:00:00:00:01")?.state, "bound");
    equal(b.s.offer("02:00:00:00:00:02"), "10.0.0.11");
    await b.s.close();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("leases: PyPXE file with bad entries: good ones kept, bad ones named in warnings", async () => {
  const dir = await tempDir();
  try {
    const file = `${dir}/leases.json`;
    const exp = (T0 + 1000_000) / 1000;
    await Deno.writeTextFile(
      file,
      JSON.stringify({
        "AA:BB:CC:DD:EE:01": { ip: "10.0.0.12", expire: exp, ipxe: false },
        "aa-bb-cc-dd-ee-02": { ip: "10.0.0.13", expire: exp, ipxe: true },
        "NOT-A-MAC": { ip: "10.0.0.11", expire: exp },
        "AA:BB:CC:DD:EE:03": { ip: "10.0.0.300", expire: exp },
        "AA:BB:CC:DD:EE:04": { ip: "10.0.0.11", expire: "soon" },
        "AA:BB:CC:DD:EE:05": { ip: "192.168.1.1", expire: exp },
        "AA:BB:CC:DD:EE:06": "x",
      }),
    );
    const t = store({ file });
    await t.s.load();
    equal(t.s.leaseFor("aa:bb:cc:dd:ee:01")?.ip, "10.0.0.12");
    equal(t.s.leaseFor("aa:bb:cc:dd:ee:02")?.ip, "10.0.0.13");
    equal(t.warnings.length, 5, t.warnings.join("\n"));
    for (const key of ["NOT-A-MAC", "EE:03", "EE:04", "EE:05", "EE:06"]) {
      ok(t.warnings.some((w) => w.includes(key)), key);
    }
    await t.s.close();
    // not JSON at all: fall back to the .bak written by the save above
    await Deno.writeTextFile(file, "{ corrupt");
    const u = store({ file });
    await u.s.load();
    ok(u.warnings.some((w) => w.includes("not valid JSON")));
    equal(u.s.leaseFor("aa:bb:cc:dd:ee:01")?.ip, "10.0.0.12");
    await u.s.close();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("leases: journal replay: changes not yet in the snapshot survive a crash", async () => {
  const dir = await tempDir();
  try {
    const file = `${dir}/leases.json`;
    const a = store({ file, saveInterval: 60_000 });
    await a.s.load();
    a.s.bind("02:00:00:00:00:01", "10.0.0.10");
    a.s.bind("02:00:00:00:00:02", "10.0.0.11");
    a.s.release("02:00:00:00:00:02", "10.0.0.11");
    // simulate a crash: no close(); the journal is on disk, the snapshot is not
    const journal = await Deno.readTextFile(`${file}.journal`);
    equal(journal.trim().split("\n").length, 3);
    await Deno.writeTextFile(`${file}.journal`, journal + '{"mac":"02:00:00:00:00:03","ip":"10.0.0.1'); // torn write
    const b = store({ file });
    await b.s.load();
    equal(b.s.leaseFor("02:00:00:00:00:01")?.state, "bound");
    equal(b.s.leaseFor("02:00:00:00:00:02")?.state, "free");
    equal(b.s.leaseFor("02:00:00:00:00:03"), undefined);
    ok(b.warnings.some((w) => w.includes("journal")));
    await b.s.close();
    deepStrictEqual(Object.keys(JSON.parse(await Deno.readTextFile(file))), ["02:00:00:00:00:01"]);
    await a.s.close();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("leases: writes are coalesced to at most one per interval", async () => {
  const dir = await tempDir();
  try {
    const file = `${dir}/leases.json`;
    const t = store({ file, saveInterval: 200 });
    await t.s.load();
    const before = (await Deno.stat(file)).mtime!.getTime();
    for (let i = 0; i < 5; i++) t.s.bind(`02:00:00:00:00:0${i}`, `10.0.0.1${i}`);
    equal(Object.keys(JSON.parse(await Deno.readTextFile(file))).length, 0, "not written synchronously");
    await new Promise((r) => setTimeout(r, 400));
    equal(Object.keys(JSON.parse(await Deno.readTextFile(file))).length, 5);
    ok((await Deno.stat(file)).mtime!.getTime() >= before);
    await t.s.close();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
