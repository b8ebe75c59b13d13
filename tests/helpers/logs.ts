/**
 * Captures pypxe's log records (LogTape) in a test: {@linkcode captureLogs} configures a sink that keeps
 * every record of the `pypxe` category at `lowestLevel` and above until `stop()` resets LogTape.
 * @module
 */
import { configure, type LogLevel, reset } from "@logtape/logtape";

/** One captured record: its level and its message as text. */
export interface LogRecordText {
  level: LogLevel;
  text: string;
}

/** The captured records so far. */
export interface CapturedLogs {
  /** Every record as `<level> <message>`, e.g. `warning receive on UDP ... failed`. */
  readonly lines: string[];
  /** Every record, level and message apart. */
  readonly records: LogRecordText[];
  /** Resets LogTape (no sink any more). */
  stop(): Promise<void>;
}

/** Starts capturing `pypxe` log records at `lowestLevel` (default debug) and above. */
export async function captureLogs(lowestLevel: LogLevel = "debug"): Promise<CapturedLogs> {
  const lines: string[] = [];
  const records: LogRecordText[] = [];
  await configure({
    reset: true,
    sinks: {
      capture: (r) => {
        const text = r.message.map(String).join("");
        records.push({ level: r.level, text });
        lines.push(`${r.level} ${text}`);
      },
    },
    loggers: [
      { category: ["pypxe"], sinks: ["capture"], lowestLevel },
      { category: ["logtape", "meta"], sinks: [], lowestLevel: "warning" },
    ],
  });
  return { lines, records, stop: () => reset() };
}

/** The count of a summary line `<label>: N more in the last 10 s` among `lines`, or 0. */
export function summarised(lines: readonly string[], label: string): number {
  const line = lines.find((l) => l.includes(`${label}: `) && l.includes(" more in the last "));
  return line === undefined ? 0 : Number(/: ([\d,]+) more/.exec(line)![1].replaceAll(",", ""));
}
