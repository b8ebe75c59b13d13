/**
 * The live status table on a terminal: a few lines below the log tail, redrawn in place. Every log line
 * goes through {@linkcode TtyStatusView.writeLog}, which erases the table, prints the line and draws the
 * table again in one write, so nothing flickers or interleaves.
 * @module
 */
import { compactSize } from "./format.ts";
import type { ClientStatus, StatusBoard, StatusSnapshot } from "./status.ts";
import { sizeText } from "./status/timeline.ts";

const STAGE_TEXT: Record<ClientStatus["stage"], string> = {
  dhcp: "DHCP",
  nbp: "NBP",
  script: "script",
  kernel: "kernel",
  done: "done",
};

/** The column names, aligned with the rows. */
const HEADER_ROW = [
  "CLIENT".padEnd(17),
  "TYPE".padEnd(12),
  "IP".padEnd(15),
  "STAGE ",
  "FILE".padEnd(24),
  "PROGRESS".padEnd(12),
  "    ",
  "RATE".padStart(9),
  "SEEN",
].join(" ");

/** The services line: `-- pypxe · dhcp 0.0.0.0:67 · tftp 0.0.0.0:69 --` (first endpoint of each, no protocol). */
function servicesLine(snap: StatusSnapshot): string {
  const services = snap.server.services.map((s) => {
    const first = (s.endpoints[0] ?? "").replace(/^(UDP|TCP) /, "");
    return first ? `${s.name} ${first}` : s.name;
  });
  return `-- pypxe${services.map((s) => ` · ${s}`).join("")} --`;
}

/**
 * Renders the table (no escape codes): the services line, the totals, the column names, one row per
 * client and, under a client whose boot stopped, its hint (a line starting with `  ! `). `now` in Unix ms
 * (default the snapshot's time).
 */
export function renderStatusTable(
  snap: StatusSnapshot,
  opts: { now?: number; maxRows?: number } = {},
): string[] {
  const now = opts.now ?? snap.time;
  const maxRows = opts.maxRows ?? 8;
  const { clients, totals } = snap;
  const lines = [servicesLine(snap)];
  if (clients.length === 0) return [...lines, "   waiting for clients"];
  lines.push(
    `   ${totals.clients} client(s): ${totals.booting} booting, ${totals.done} done, ${totals.failed} failed · ` +
      `${totals.transfers} transfer(s) running · ${sizeText(totals.bytes)} served`,
    HEADER_ROW,
  );
  for (const c of clients.slice(0, maxRows)) {
    const pct = c.total ? Math.min(100, Math.round((100 * c.bytes) / c.total)) : c.stage === "done" ? 100 : 0;
    const filled = Math.round(pct / 10);
    const bar = `[${"#".repeat(filled)}${"-".repeat(10 - filled)}]`;
    const file = (c.file ?? "").length > 24 ? "…" + (c.file ?? "").slice(-23) : c.file ?? "";
    const rate = c.rate > 0 ? `${compactSize(c.rate)}B/s` : "";
    const seen = `${Math.max(0, Math.round((now - c.lastSeen) / 1000))}s`;
    lines.push(
      [
        (c.mac ?? c.ip ?? "?").padEnd(17),
        (c.label ?? "").padEnd(12).slice(0, 12),
        (c.ip ?? "").padEnd(15),
        (c.state === "failed" ? "FAILED" : STAGE_TEXT[c.stage]).padEnd(6),
        file.padEnd(24),
        bar,
        `${String(pct).padStart(3)}%`,
        rate.padStart(9),
        seen.padStart(4),
      ].join(" "),
    );
    if (c.hints.length > 0) lines.push(`  ! ${c.hints[0].short}`);
  }
  if (clients.length > maxRows) lines.push(`   … and ${clients.length - maxRows} more`);
  return lines;
}

/** The table under the log tail. */
export class TtyStatusView {
  readonly #board: StatusBoard;
  readonly #write: (text: string) => void;
  readonly #now: () => number;
  #height = 0;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #tick: ReturnType<typeof setInterval> | undefined;
  #off: () => void;
  #closed = false;

  /** Draws the table with `write` (the terminal) and keeps it current (at most 4 redraws a second). */
  constructor(board: StatusBoard, write: (text: string) => void, opts: { now?: () => number } = {}) {
    this.#board = board;
    this.#write = write;
    this.#now = opts.now ?? Date.now;
    this.#off = board.onChange(() => this.#schedule());
    this.#tick = setInterval(() => this.#redraw(), 1000); // "last seen" keeps counting
    this.#redraw();
  }

  /** Prints one log line above the table. */
  writeLog(line: string): void {
    if (this.#closed) return this.#write(line + "\n");
    this.#write(this.#erase() + line + "\n" + this.#draw());
  }

  /** Removes the table and stops redrawing. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#off();
    clearTimeout(this.#timer);
    clearInterval(this.#tick);
    this.#write(this.#erase());
  }

  #schedule(): void {
    if (this.#timer !== undefined || this.#closed) return;
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      this.#redraw();
    }, 250);
  }

  #redraw(): void {
    if (this.#closed) return;
    this.#write(this.#erase() + this.#draw());
  }

  /** Escape codes that move to the table's first line and clear to the end of the screen. */
  #erase(): string {
    const up = this.#height > 0 ? `\x1b[${this.#height}F` : "\r";
    this.#height = 0;
    return `${up}\x1b[J`;
  }

  #draw(): string {
    const lines = renderStatusTable(this.#board.snapshot(), { now: this.#now() });
    this.#height = lines.length;
    // the table is dim so the log above stays the eye-catcher; a stopped boot's hint is red
    return lines.map((l) => `${l.startsWith("  ! ") ? "\x1b[31m" : "\x1b[2m"}${l}\x1b[0m`).join("\n") + "\n";
  }
}
