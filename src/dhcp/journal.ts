/**
 * Persistence of the lease table: a snapshot file plus an append-only journal of the changes since.
 *
 * - `append(record)` writes one JSON line to `FILE.journal` synchronously (a write(2): it survives
 *   SIGKILL), before the caller answers the client, and schedules a snapshot.
 * - A snapshot writes the whole table (from the `snapshot` callback) to FILE atomically: temp file, fsync,
 *   rename, the previous FILE kept as `FILE.bak`. At most one per `saveInterval`, and on `flush()` and
 *   `close()`. The journal is rotated to `FILE.journal.old` when the snapshot is taken and removed once
 *   the snapshot is safely on disk.
 * - `replay()` reads FILE (or `FILE.bak` when FILE is unreadable), then the lines of `FILE.journal.old`
 *   and `FILE.journal`; a line cut short by a crash mid-write is skipped with a warning.
 *
 * The journal knows nothing of leases beyond "a JSON object" and "a JSON line": the lease store checks
 * what it reads back. Time comes from the injected clock.
 *
 * @example
 * ```ts
 * const journal = new LeaseJournal({ file: "leases.json", now: Date.now, snapshot: () => store.toJson() });
 * const { table, records } = await journal.replay();
 * journal.append({ mac: "aa:bb:cc:dd:ee:01", ip: "10.0.0.10", expire: 1_700_003_600, ipxe: false });
 * await journal.close();
 * ```
 * @module
 */

/** Options of {@linkcode LeaseJournal}. */
export interface LeaseJournalOptions {
  /** The snapshot file (LEASES_FILE); the journal is `FILE.journal`. */
  file: string;
  /** The table to write in a snapshot (called when one is written). */
  snapshot: () => Record<string, unknown>;
  /** Clock in Unix milliseconds, for spacing the snapshots. */
  now: () => number;
  /** Minimum milliseconds between two snapshot writes (default 1000). */
  saveInterval?: number;
  /** Warnings (unreadable files or lines, failed writes); default: ignored. */
  warn?: (message: string) => void;
}

/** One journal line read back, with where it came from (`FILE.journal:LINE`) for warnings. */
export interface ReplayedRecord {
  value: unknown;
  source: string;
}

/** What `replay()` found: the last snapshot (or `{}`) and the journal lines after it, in order. */
export interface Replayed {
  table: Record<string, unknown>;
  /** The file the table came from (FILE or `FILE.bak`). */
  tableSource: string;
  records: ReplayedRecord[];
}

/** A snapshot file and its journal. */
export class LeaseJournal {
  readonly #file: string;
  readonly #snapshot: () => Record<string, unknown>;
  readonly #now: () => number;
  readonly #saveInterval: number;
  readonly #warn: (message: string) => void;
  #journal: Deno.FsFile | null = null;
  #dirty = false;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #lastSave = 0;
  #saving: Promise<void> | null = null;
  #closed = false;

  /** Opens nothing yet: the journal file is created by the first `append()`. */
  constructor(opts: LeaseJournalOptions) {
    this.#file = opts.file;
    this.#snapshot = opts.snapshot;
    this.#now = opts.now;
    this.#saveInterval = opts.saveInterval ?? 1000;
    this.#warn = opts.warn ?? (() => {});
  }

  /**
   * Reads the snapshot (FILE, else `FILE.bak`) and the journal lines after it. Marks a snapshot due, so
   * the next `flush()` folds the journals into FILE.
   */
  async replay(): Promise<Replayed> {
    const file = this.#file;
    let text = await readOptional(file);
    let tableSource = file;
    let table = text === null ? null : this.#parseTable(text, tableSource);
    if (table === null) {
      const bak = await readOptional(file + ".bak");
      if (bak !== null) {
        if (text !== null) this.#warn(`${file}: unreadable, using ${file}.bak`);
        text = bak;
        tableSource = file + ".bak";
        table = this.#parseTable(bak, tableSource);
      }
    }
    const records: ReplayedRecord[] = [];
    for (const journal of [file + ".journal.old", file + ".journal"]) {
      const lines = await readOptional(journal);
      if (lines === null) continue;
      for (const [i, line] of lines.split("\n").entries()) {
        if (line.trim() === "") continue;
        try {
          records.push({ value: JSON.parse(line), source: `${journal}:${i + 1}` });
        } catch {
          // the last line of a journal may be cut short by a crash mid-write: nothing else is lost
          this.#warn(`${journal}:${i + 1}: unreadable journal line skipped`);
        }
      }
    }
    this.#dirty = true;
    return { table: table ?? {}, tableSource, records };
  }

  #parseTable(text: string, source: string): Record<string, unknown> | null {
    try {
      const data = JSON.parse(text);
      if (typeof data === "object" && data !== null && !Array.isArray(data)) return data;
      this.#warn(`${source}: expected an object of leases by MAC; ignored`);
    } catch (err) {
      this.#warn(`${source}: not valid JSON (${err instanceof Error ? err.message : err})`);
    }
    return null;
  }

  /** Appends one change (synchronous: done before the client hears the answer) and schedules a snapshot. */
  append(record: unknown): void {
    this.#dirty = true;
    if (this.#closed) return;
    try {
      this.#journal ??= Deno.openSync(this.#file + ".journal", { append: true, create: true });
      const bytes = encoder.encode(JSON.stringify(record) + "\n");
      let at = 0;
      while (at < bytes.length) at += this.#journal.writeSync(bytes.subarray(at));
    } catch (err) {
      this.#warn(`${this.#file}.journal: cannot append (${err instanceof Error ? err.message : err})`);
    }
    this.#schedule();
  }

  #schedule(): void {
    if (this.#timer !== undefined || this.#closed) return;
    const wait = Math.max(0, this.#lastSave + this.#saveInterval - this.#now());
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      this.flush().catch((err) => this.#warn(String(err)));
    }, wait);
  }

  /** Writes the snapshot now if anything changed (temp + fsync + rename, previous file kept as `.bak`). */
  async flush(): Promise<void> {
    while (this.#saving) await this.#saving;
    if (!this.#dirty) return;
    this.#saving = this.#write().finally(() => (this.#saving = null));
    await this.#saving;
  }

  async #write(): Promise<void> {
    this.#dirty = false;
    this.#lastSave = this.#now();
    const text = JSON.stringify(this.#snapshot(), null, 2) + "\n";
    const file = this.#file;
    // rotate the journal now (synchronously, with the snapshot taken): later changes go to a new one
    let rotated = false;
    if (this.#journal) {
      this.#journal.close();
      this.#journal = null;
      try {
        Deno.renameSync(file + ".journal", file + ".journal.old");
        rotated = true;
      } catch (err) {
        if (!(err instanceof Deno.errors.NotFound)) throw err;
      }
    }
    const tmp = `${file}.tmp`;
    try {
      const f = await Deno.open(tmp, { write: true, create: true, truncate: true });
      try {
        const bytes = encoder.encode(text);
        for (let at = 0; at < bytes.length;) at += await f.write(bytes.subarray(at));
        await f.sync();
      } finally {
        f.close();
      }
      try {
        await Deno.remove(file + ".bak");
      } catch (err) {
        if (!(err instanceof Deno.errors.NotFound)) throw err;
      }
      try {
        await Deno.link(file, file + ".bak");
      } catch (err) {
        if (!(err instanceof Deno.errors.NotFound)) await Deno.copyFile(file, file + ".bak").catch(() => {});
      }
      await Deno.rename(tmp, file);
      await syncDir(file);
      if (rotated) await Deno.remove(file + ".journal.old").catch(() => {});
    } catch (err) {
      this.#dirty = true;
      this.#warn(`${file}: cannot save leases (${err instanceof Error ? err.message : err})`);
    }
  }

  /** Writes a pending snapshot, stops the timer and closes the journal; later `append()`s are not written. */
  async close(): Promise<void> {
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
    await this.flush();
    this.#closed = true;
    this.#journal?.close();
    this.#journal = null;
  }
}

const encoder = new TextEncoder();

async function readOptional(path: string): Promise<string | null> {
  try {
    return await Deno.readTextFile(path);
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return null;
    throw err;
  }
}

/** fsyncs the directory holding `file` so the rename itself survives a power cut (best effort). */
async function syncDir(file: string): Promise<void> {
  const dir = file.includes("/") ? file.slice(0, file.lastIndexOf("/")) || "/" : ".";
  try {
    const d = await Deno.open(dir, { read: true });
    try {
      await d.sync();
    } finally {
      d.close();
    }
  } catch {
    // some platforms cannot open or sync a directory; the rename is still atomic
  }
}
