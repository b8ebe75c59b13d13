/** The lease journal: synchronous appends, replay after a crash (torn last line), atomic snapshots. */
import { deepStrictEqual, equal, ok } from "node:assert/strict";
import { LeaseJournal, type LeaseJournalOptions } from "../../src/dhcp/journal.ts";

async function withDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "pypxe-journal-" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** A journal over `file` whose snapshot is `table`, with a fixed clock and the warnings collected. */
function journal(file: string, table: Record<string, unknown> = {}, over: Partial<LeaseJournalOptions> = {}) {
  const warnings: string[] = [];
  const j = new LeaseJournal({
    file,
    snapshot: () => structuredClone(table),
    now: () => 1_700_000_000_000,
    saveInterval: 60_000,
    warn: (m) => warnings.push(m),
    ...over,
  });
  return { j, warnings, table };
}

const names = (dir: string) => [...Deno.readDirSync(dir)].map((e) => e.name).sort();

Deno.test("journal: append writes one JSON line at once, before any snapshot", async () => {
  await withDir(async (dir) => {
    const file = `${dir}/leases.json`;
    const { j } = journal(file);
    j.append({ mac: "02:00:00:00:00:01", ip: "10.0.0.10", expire: 1, ipxe: false });
    j.append({ mac: "02:00:00:00:00:01", ip: "10.0.0.10", free: true });
    const lines = Deno.readTextFileSync(`${file}.journal`).split("\n");
    deepStrictEqual(lines.slice(0, 2).map((l) => JSON.parse(l)), [
      { mac: "02:00:00:00:00:01", ip: "10.0.0.10", expire: 1, ipxe: false },
      { mac: "02:00:00:00:00:01", ip: "10.0.0.10", free: true },
    ]);
    equal(lines[2], "");
    deepStrictEqual(names(dir), ["leases.json.journal"], "no snapshot within the save interval");
    await j.close();
  });
});

Deno.test("journal: replay after a crash returns the snapshot, then the journal lines; a torn line is skipped", async () => {
  await withDir(async (dir) => {
    const file = `${dir}/leases.json`;
    const table = { "02:00:00:00:00:01": { ip: "10.0.0.10", expire: 5, ipxe: false } };
    const a = journal(file, table);
    a.j.append({ n: 0 });
    await a.j.flush(); // snapshot of `table`; the journal is folded in and removed
    deepStrictEqual(names(dir), ["leases.json"]);
    a.j.append({ n: 1 });
    a.j.append({ n: 2 });
    // the crash: no close(), and the last write was cut short
    Deno.writeTextFileSync(`${file}.journal`, '{"n":3,"mac":"02:00', { append: true });

    const b = journal(file);
    const got = await b.j.replay();
    deepStrictEqual(got.table, table);
    equal(got.tableSource, file);
    deepStrictEqual(got.records, [
      { value: { n: 1 }, source: `${file}.journal:1` },
      { value: { n: 2 }, source: `${file}.journal:2` },
    ]);
    deepStrictEqual(b.warnings, [`${file}.journal:3: unreadable journal line skipped`]);
    await a.j.close();
    await b.j.close();
  });
});

Deno.test("journal: a journal rotated by a snapshot that never finished is replayed first", async () => {
  await withDir(async (dir) => {
    const file = `${dir}/leases.json`;
    Deno.writeTextFileSync(`${file}.journal.old`, '{"n":1}\n');
    Deno.writeTextFileSync(`${file}.journal`, '{"n":2}\n\n');
    const { j, warnings } = journal(file);
    const got = await j.replay();
    deepStrictEqual(got.table, {});
    deepStrictEqual(got.records.map((r) => r.value), [{ n: 1 }, { n: 2 }]);
    deepStrictEqual(warnings, []);
    await j.close();
  });
});

Deno.test("journal: replay falls back to FILE.bak when FILE is not a JSON object", async () => {
  await withDir(async (dir) => {
    const file = `${dir}/leases.json`;
    Deno.writeTextFileSync(`${file}.bak`, '{"A": 1}');
    for (const [text, warning] of [["{ torn", "not valid JSON"], ["[1, 2]", "expected an object"]]) {
      Deno.writeTextFileSync(file, text);
      const { j, warnings } = journal(file);
      const got = await j.replay();
      deepStrictEqual(got.table, { A: 1 });
      equal(got.tableSource, `${file}.bak`);
      ok(warnings.some((w) => w.includes(warning)), warnings.join("\n"));
      ok(warnings.some((w) => w.includes("unreadable, using")), warnings.join("\n"));
    }
  });
});

Deno.test("journal: a snapshot is written atomically, keeps the previous file as .bak and drops the journal", async () => {
  await withDir(async (dir) => {
    const file = `${dir}/leases.json`;
    const table: Record<string, unknown> = { first: 1 };
    const { j } = journal(file, table);
    await j.flush();
    deepStrictEqual(names(dir), [], "nothing changed: no snapshot");
    j.append({ n: 1 });
    await j.flush();
    deepStrictEqual(JSON.parse(Deno.readTextFileSync(file)), { first: 1 });
    deepStrictEqual(names(dir), ["leases.json"], "no previous file: no .bak");
    table.second = 2;
    j.append({ n: 2 });
    await j.flush();
    deepStrictEqual(JSON.parse(Deno.readTextFileSync(file)), { first: 1, second: 2 });
    deepStrictEqual(JSON.parse(Deno.readTextFileSync(`${file}.bak`)), { first: 1 });
    deepStrictEqual(names(dir), ["leases.json", "leases.json.bak"]);
    await j.close();
  });
});

Deno.test("journal: snapshots are spaced by the save interval on the injected clock", async () => {
  await withDir(async (dir) => {
    const file = `${dir}/leases.json`;
    let now = 1_700_000_000_000;
    const table: Record<string, unknown> = {};
    const { j } = journal(file, table, { now: () => now, saveInterval: 150 });
    await j.replay();
    await j.flush(); // the snapshot at load time
    table.a = 1;
    j.append({ n: 1 });
    await new Promise((r) => setTimeout(r, 20));
    deepStrictEqual(JSON.parse(Deno.readTextFileSync(file)), {}, "within the interval: not written yet");
    await new Promise((r) => setTimeout(r, 250));
    deepStrictEqual(JSON.parse(Deno.readTextFileSync(file)), { a: 1 });
    // the clock moved on past the interval: the next change is written at once
    now += 10_000;
    table.b = 2;
    j.append({ n: 2 });
    await new Promise((r) => setTimeout(r, 50));
    deepStrictEqual(JSON.parse(Deno.readTextFileSync(file)), { a: 1, b: 2 });
    await j.close();
  });
});

Deno.test("journal: close() writes what is pending; later appends are not written", async () => {
  await withDir(async (dir) => {
    const file = `${dir}/leases.json`;
    const table: Record<string, unknown> = { a: 1 };
    const { j } = journal(file, table);
    j.append({ n: 1 });
    await j.close();
    deepStrictEqual(JSON.parse(Deno.readTextFileSync(file)), { a: 1 });
    j.append({ n: 2 });
    deepStrictEqual(names(dir), ["leases.json"]);
  });
});
