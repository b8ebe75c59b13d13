/**
 * Log lines under attack: the first event of a kind is logged as it is; further events of that kind
 * within the window are counted and reported once at its end (`... 2,314 more in the last 10 s`), so a
 * flood of refused connections, timeouts or malformed packets costs a handful of lines (and syslog
 * datagrams), not one per event.
 * @module
 */
import type { Logger } from "@logtape/logtape";

/** Levels a throttled line can have. */
export type ThrottledLevel = "debug" | "info" | "warn" | "error";

interface KindState {
  readonly level: ThrottledLevel;
  readonly label: string;
  logged: number;
  suppressed: number;
  timer: ReturnType<typeof setTimeout> | undefined;
}

/** Options of {@linkcode LogThrottle}. */
export interface LogThrottleOptions {
  /** Where lines go. */
  readonly log: Pick<Logger, ThrottledLevel>;
  /** Window per kind; default 10 s. */
  readonly windowMs?: number;
}

/** One summary line per kind per window. Call {@linkcode LogThrottle.close} when the service stops. */
export class LogThrottle {
  readonly #log: Pick<Logger, ThrottledLevel>;
  readonly #windowMs: number;
  readonly #kinds = new Map<string, KindState>();

  /** Creates the throttle; nothing is scheduled until an event is suppressed. */
  constructor(opts: LogThrottleOptions) {
    this.#log = opts.log;
    this.#windowMs = opts.windowMs ?? 10_000;
  }

  /**
   * Logs `message` at `level` unless `allowance` events of `kind` (default 1) were already logged in the
   * current window; then it is only counted. `label` names the kind in the summary (default: `kind`).
   */
  note(
    kind: string,
    level: ThrottledLevel,
    message: string | (() => string),
    label?: string,
    allowance = 1,
  ): void {
    let state = this.#kinds.get(kind);
    if (state === undefined) {
      state = { level, label: label ?? kind, logged: 0, suppressed: 0, timer: undefined };
      // the window starts with its first event
      state.timer = setTimeout(() => this.#summarise(kind), this.#windowMs);
      Deno.unrefTimer(state.timer as unknown as number);
      this.#kinds.set(kind, state);
    }
    if (state.logged < allowance) {
      state.logged++;
      this.#log[level](typeof message === "string" ? message : message());
    } else {
      state.suppressed++;
    }
  }

  /** Events of `kind` counted but not yet reported. */
  pending(kind: string): number {
    return this.#kinds.get(kind)?.suppressed ?? 0;
  }

  #summarise(kind: string): void {
    const state = this.#kinds.get(kind);
    if (state === undefined) return;
    clearTimeout(state.timer);
    this.#kinds.delete(kind);
    if (state.suppressed > 0) {
      const n = state.suppressed.toLocaleString("en-US");
      this.#log[state.level](`${state.label}: ${n} more in the last ${this.#windowMs / 1000} s`);
    }
  }

  /** Reports what is pending and cancels every timer. */
  close(): void {
    for (const kind of [...this.#kinds.keys()]) this.#summarise(kind);
  }
}

/** `text` as a LogTape message without placeholders (client-sent names may contain braces). */
export function literal(text: string): string {
  return text.includes("{") ? text.replace(/[{}]/g, "$&$&") : text;
}
