/**
 * Lifecycle: the `Service` shape every protocol server has, starting the enabled services together,
 * graceful shutdown on signals, the process guard against uncaught errors, and the per-boot log lines.
 * (The start-up banner is in `banner.ts`.)
 * @module
 */
import { transferSize } from "./format.ts";
import { errText } from "./errors.ts";
import { getLogger } from "@logtape/logtape";
import type { PxeConfig } from "./config.ts";
import { MAIN_CATEGORY } from "./log.ts";
import type { BootEvents } from "./events.ts";
import type { ConnectionCaps } from "./limits.ts";
import { LogThrottle } from "./log_throttle.ts";
import type { NetbootFs } from "./netboot/fs.ts";
import type { BootFiles } from "./netboot/files.ts";
import type { StaticLeases } from "./static_leases.ts";
import type { StatusBoard } from "./status.ts";
import type { MachineBoot } from "./machines/runtime.ts";

/** A protocol server that can be started and stopped. */
export interface Service {
  /** Short name: `tftp`, `dhcp`, `http`, `nbd`. */
  readonly name: string;
  /** Binds its sockets; rejects with an `Error` whose message is one clear line. */
  start(): Promise<void>;
  /** Closes its sockets and finishes or abandons running work; never rejects. */
  stop(): Promise<void>;
  /** What it listens on, e.g. `UDP 0.0.0.0:69`, for the banner. */
  endpoints(): string[];
  /** Saves state (leases) and reloads what can be reloaded (static leases); SIGHUP calls it. */
  reload?(): Promise<void>;
}

/** What every service is built from. */
export interface ServiceContext {
  readonly config: PxeConfig;
  readonly netboot: NetbootFs;
  /** What TFTP and HTTP serve: the tree, generated menus and the file cache (see `netboot/files.ts`). */
  readonly files?: BootFiles;
  readonly events: BootEvents;
  readonly staticLeases: StaticLeases;
  /** The live status model, served by the HTTP service at /status, /status.json and /metrics. */
  readonly status?: StatusBoard;
  /** Connection caps sized from the open-file limit (see `src/limits.ts`); absent: each service's default. */
  readonly caps?: ConnectionCaps;
  /** Per-machine boot (`--machines`, `--boot-api`), when configured. */
  readonly machines?: MachineBoot;
}

/** A service factory; returns null when the service is off in `config`. */
export type ServiceFactory = (ctx: ServiceContext) => Service | null;

/** A failure to start: the one-line message is meant for the user. */
export class StartupError extends Error {
  /** Creates the error with a one-line message. */
  constructor(message: string) {
    super(message);
    this.name = "StartupError";
  }
}

/** Services started together; if one fails to start, those already started are stopped. */
export class ServiceGroup {
  readonly #services: Service[];
  #started: Service[] = [];

  /** Groups `services` in start order. */
  constructor(services: Service[]) {
    this.#services = services;
  }

  /** Starts every service in order; rejects with the first failure after stopping the others. */
  async start(): Promise<void> {
    for (const service of this.#services) {
      try {
        await service.start();
      } catch (err) {
        await this.stop();
        throw new StartupError(errText(err));
      }
      this.#started.push(service);
    }
  }

  /** Stops the started services in reverse order. */
  async stop(): Promise<void> {
    const started = this.#started.reverse();
    this.#started = [];
    for (const service of started) await service.stop();
  }

  /** Calls `reload()` on every service that has one. */
  async reload(): Promise<void> {
    for (const service of this.#started) await service.reload?.();
  }

  /** Every service of the group, in start order (started or not). */
  get services(): readonly Service[] {
    return this.#services;
  }
}

/** Options of {@linkcode runUntilSignal}. */
export interface RunOptions {
  /** Called once the group is stopped, before the promise settles. */
  onStopped?: () => Promise<void> | void;
  /** Ends the run without a signal (tests, library use). */
  signal?: AbortSignal;
}

/**
 * Waits for SIGINT/SIGTERM (or `opts.signal`) and stops the group; SIGHUP reloads. SIGUSR1 is never
 * used: Deno opens its inspector on it. Resolves with the name of what ended the run.
 */
export function runUntilSignal(group: ServiceGroup, opts: RunOptions = {}): Promise<string> {
  const log = getLogger(MAIN_CATEGORY);
  return new Promise((resolve) => {
    let stopping = false;
    const listeners: [Deno.Signal, () => void][] = [];
    // signal listeners alone do not keep the process alive; this timer does, until the run ends
    const keepAlive = setInterval(() => {}, 3_600_000);
    const finish = async (reason: string) => {
      if (stopping) return;
      stopping = true;
      clearInterval(keepAlive);
      for (const [sig, fn] of listeners) Deno.removeSignalListener(sig, fn);
      log.info("{reason}: stopping", { reason });
      await group.stop();
      await opts.onStopped?.();
      resolve(reason);
    };
    const onSignal = (sig: Deno.Signal, fn: () => void) => {
      try {
        Deno.addSignalListener(sig, fn);
        listeners.push([sig, fn]);
      } catch {
        // Windows has no SIGTERM/SIGHUP listeners; Ctrl-C still works
      }
    };
    onSignal("SIGINT", () => void finish("SIGINT"));
    onSignal("SIGTERM", () => void finish("SIGTERM"));
    onSignal("SIGHUP", () => {
      log.info("SIGHUP: saving state and reloading");
      group.reload().catch((err) => log.error("reload failed: {err}", { err: String(err) }));
    });
    if (opts.signal?.aborted) void finish("stop requested");
    opts.signal?.addEventListener("abort", () => void finish("stop requested"), { once: true });
  });
}

/**
 * Keeps the process alive through errors no service caught (a promise rejected outside a handler, an
 * exception thrown by a timer or by the runtime's own code): each is logged, at most one line per kind
 * per 10 s, instead of ending DHCP, TFTP, HTTP and NBD together. Returns the function that removes the
 * guard.
 */
export function guardProcess(): () => void {
  const throttle = new LogThrottle({ log: getLogger(MAIN_CATEGORY) });
  const describe = (what: unknown) => what instanceof Error ? `${what.name}: ${what.message}` : String(what);
  const onRejection = (e: PromiseRejectionEvent) => {
    e.preventDefault();
    const text = describe(e.reason);
    throttle.note(
      `rejection ${text.slice(0, 80)}`,
      "error",
      `uncaught (kept running): ${text}`,
      "uncaught errors",
    );
  };
  const onError = (e: ErrorEvent) => {
    e.preventDefault();
    const text = describe(e.error ?? e.message);
    throttle.note(
      `error ${text.slice(0, 80)}`,
      "error",
      `uncaught (kept running): ${text}`,
      "uncaught errors",
    );
  };
  globalThis.addEventListener("unhandledrejection", onRejection);
  globalThis.addEventListener("error", onError);
  return () => {
    globalThis.removeEventListener("unhandledrejection", onRejection);
    globalThis.removeEventListener("error", onError);
    throttle.close();
  };
}

/** Boot-step lines of one service logged per 10 s before the rest are summarised (a flood). */
export const BOOT_LINES_PER_WINDOW = 300;

/** Subscribes the per-boot INFO lines (one per DHCP answer and per finished transfer) to `events`. */
export function logBootEvents(events: BootEvents): () => void {
  // a flood (10,000 MACs DISCOVERing) must not become 10,000 lines: past BOOT_LINES_PER_WINDOW lines of
  // one service in 10 s the rest are counted into one summary line
  const throttles = new Map<string, LogThrottle>();
  const line = (service: string, level: "debug" | "info" | "warn", text: string) => {
    let throttle = throttles.get(service);
    if (throttle === undefined) {
      throttle = new LogThrottle({ log: getLogger(["pypxe", service]) });
      throttles.set(service, throttle);
    }
    throttle.note(`boot ${level}`, level, text, "boot lines (flood)", BOOT_LINES_PER_WINDOW);
  };
  const unsubscribe = events.subscribe((event) => {
    switch (event.kind) {
      case "dhcp": {
        const client = event.client ? ` (${event.client})` : "";
        const what = [event.ip, event.bootFile].filter((x) => x !== undefined).join(" ");
        const reason = event.reason ? ` [${event.reason}]` : "";
        line(
          "dhcp",
          "info",
          `${event.mac} ${event.received}${client} -> ${event.sent}${what ? " " + what : ""}${reason}`,
        );
        break;
      }
      case "transfer-end": {
        if (event.service === "http") break; // the HTTP server logs each request itself, with its status
        const mb = event.bytes / 1e6;
        const secs = event.ms / 1000;
        const size = transferSize(event.bytes);
        const rate = secs > 0 ? ` (${(mb / secs).toFixed(1)} MB/s)` : "";
        if (event.outcome === "ok") {
          line(event.service, "info", `${event.client} ${event.file} ${size} in ${secs.toFixed(2)} s${rate}`);
        } else if (event.outcome.startsWith("client error")) {
          // firmware aborts on purpose (OVMF reads tsize, sends ERROR 8, then asks again)
          line(
            event.service,
            "debug",
            `${event.client} ${event.file} ended by the client after ${size}: ${event.outcome}`,
          );
        } else {
          line(event.service, "warn", `${event.client} ${event.file} failed after ${size}: ${event.outcome}`);
        }
        break;
      }
    }
  });
  return () => {
    unsubscribe();
    for (const throttle of throttles.values()) throttle.close();
  };
}
