/**
 * Logging setup: LogTape with categories `["pypxe", service]`, INFO by default, per-service levels from
 * PyPXE's `--verbose`/`--debug` lists, a console sink and an optional RFC 5424 syslog sink.
 * @module
 */
import { configure, type LogLevel, type LogRecord, reset, type Sink } from "@logtape/logtape";
import { getSyslogSink } from "@logtape/syslog";
import { SERVICE_NAMES, serviceSelected } from "./config.ts";

/** Options of {@linkcode setupLogging}. */
export interface LoggingOptions {
  /** PyPXE `--debug` list: these services log everything, every packet included. */
  debug?: string;
  /** PyPXE `--verbose` list: these services log at DEBUG. */
  verbose?: string;
  /** Remote syslog server, in addition to the console. */
  syslog?: { host: string; port: number } | null;
  /** Where console lines go (tests capture them); default stderr. */
  write?: (line: string) => void;
}

/** The LogTape level of `service` for the given lists: `--debug` wins over `--verbose`. */
export function levelFor(service: string, opts: { debug?: string; verbose?: string }): LogLevel {
  if (serviceSelected(opts.debug ?? "", service)) return "trace";
  if (serviceSelected(opts.verbose ?? "", service)) return "debug";
  return "info";
}

const LEVEL_TEXT: Record<LogLevel, string> = {
  trace: "TRACE",
  debug: "DEBUG",
  info: "INFO",
  warning: "WARN",
  error: "ERROR",
  fatal: "FATAL",
};

/** Renders a record as `2026-11-27 10:00:00.123 INFO  tftp  message`. */
export function formatLine(record: LogRecord): string {
  const time = new Date(record.timestamp).toISOString().replace("T", " ").slice(0, 23);
  const service = record.category.slice(1).join(".") || "main";
  const message = record.message.map((part) => typeof part === "string" ? part : String(part)).join("");
  return `${time} ${LEVEL_TEXT[record.level].padEnd(5)} ${service.padEnd(5)} ${message}`;
}

function consoleSink(write: (line: string) => void): Sink {
  return (record) => write(formatLine(record));
}

const encoder = new TextEncoder();
function writeStderr(line: string): void {
  try {
    Deno.stderr.writeSync(encoder.encode(line + "\n"));
  } catch {
    // stderr closed: nothing else to tell
  }
}

/** The logger of the program itself (banner, lifecycle); services use `["pypxe", service]`. */
export const MAIN_CATEGORY: readonly string[] = ["pypxe", "main"];

/** Log categories that are not services, and the service whose `--debug`/`--verbose` they follow. */
const CATEGORY_SERVICE: Readonly<Record<string, (typeof SERVICE_NAMES)[number]>> = {
  machines: "dhcp",
  dhcp6: "dhcp",
  api: "http",
  remote: "http",
  netboot: "tftp",
};

/** Configures LogTape for the whole process; call {@linkcode teardownLogging} to flush the sinks. */
export async function setupLogging(opts: LoggingOptions = {}): Promise<void> {
  const sinks: Record<string, Sink> = { console: consoleSink(opts.write ?? writeStderr) };
  const used = ["console"];
  if (opts.syslog) {
    sinks.syslog = getSyslogSink({
      hostname: opts.syslog.host,
      port: opts.syslog.port,
      protocol: "udp",
      facility: "daemon",
      appName: "pypxe",
    });
    used.push("syslog");
  }
  await configure({
    reset: true,
    sinks,
    loggers: [
      { category: ["logtape", "meta"], sinks: [], lowestLevel: "warning" },
      // the parent passes everything; each child category sets its own level
      { category: ["pypxe"], sinks: used, lowestLevel: "trace" },
      { category: ["pypxe", "main"], lowestLevel: "info" },
      ...SERVICE_NAMES.map((service) => ({
        category: ["pypxe", service],
        lowestLevel: levelFor(service, opts),
      })),
      // the other categories follow the service they serve (`--debug dhcp` shows the boot API's lines)
      ...Object.entries(CATEGORY_SERVICE).map(([category, service]) => ({
        category: ["pypxe", category],
        lowestLevel: levelFor(service, opts),
      })),
    ],
  });
}

/** Flushes and disposes every sink (the syslog socket included). */
export async function teardownLogging(): Promise<void> {
  await reset();
}
