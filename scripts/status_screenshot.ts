/**
 * Renders the live status page in headless Chromium from a recorded real boot (by default
 * tests/fixtures/status/bios_boot_events.json: a BIOS machine that boots through and a UEFI machine
 * whose boot file is missing): `deno run -A scripts/status_screenshot.ts [--at SECONDS] [out.png]`
 * (default docs/status.png; `--at` shows the page as it was that long after the first event; the docs
 * picture is `--at 22.6`, mid-way through the BIOS machine's kernel). The tests call
 * {@linkcode renderStatusPage} and {@linkcode replayBoot} the same way.
 * @module
 */
import type { BootEvent } from "../src/events.ts";
import { BootEvents } from "../src/events.ts";
import { HttpServer } from "../src/http/server.ts";
import { NetbootFs } from "../src/netboot/fs.ts";
import { type ServerSummary, StatusBoard } from "../src/status.ts";

/** A recorded boot (see tests/fixtures/status/record.ts, which writes it). */
export interface RecordedBoot {
  /** How the events were recorded. */
  about: string;
  /** pypxe's arguments. */
  args: string[];
  /** What the status board was told at start. */
  server: ServerSummary;
  /** Every boot event with its Unix ms time, in order. */
  events: { t: number; event: BootEvent }[];
  /** The clients and how their boots ended. */
  clients: { mac: string; firmware: string; result: string }[];
}

/** The recorded real boot the tests and the screenshot use. */
export const RECORDED_BOOT =
  new URL("../tests/fixtures/status/bios_boot_events.json", import.meta.url).pathname;

/** Reads a recorded boot (default {@linkcode RECORDED_BOOT}). */
export async function loadRecordedBoot(path = RECORDED_BOOT): Promise<RecordedBoot> {
  return JSON.parse(await Deno.readTextFile(path)) as RecordedBoot;
}

/** A board fed a recorded boot, with the clock it reads. */
export interface Replay {
  readonly events: BootEvents;
  readonly board: StatusBoard;
  /** The board's clock (Unix ms); set `now` to look at the board later. */
  readonly clock: { now: number };
}

/**
 * Replays `boot` into a new board, each event at its recorded time; the clock then stands `afterMs`
 * (default 3 s) after the last event.
 */
export function replayBoot(boot: RecordedBoot, opts: { afterMs?: number; quietMs?: number } = {}): Replay {
  const clock = { now: boot.events[0]?.t ?? Date.now() };
  const events = new BootEvents();
  const board = new StatusBoard(events, { now: () => clock.now, quietMs: opts.quietMs });
  board.describe(boot.server);
  for (const { t, event } of boot.events) {
    clock.now = t;
    events.emit(event);
  }
  clock.now += opts.afterMs ?? 3000;
  return { events, board, clock };
}

/** Chromium flags for a closed network (no background fetches) as root. */
const CHROMIUM_FLAGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  "--hide-scrollbars",
  "--force-device-scale-factor=1",
  "--remote-debugging-address=127.0.0.1",
  "--remote-debugging-port=0",
];

/** Options of {@linkcode renderStatusPage}. */
export interface RenderOptions {
  /** Where the PNG goes. */
  screenshot: string;
  /** The browser binary (default `chromium`). */
  chromium?: string;
  /** The boot to show (default the recorded one). */
  boot?: RecordedBoot;
  /** Width of the view in CSS pixels (default 900). */
  width?: number;
  /** Height of the view (default: the page's, measured once it is live). */
  height?: number;
  /** A page expression (a promise is awaited) run once the page is live; the DOM is read after it. */
  script?: string;
  /** How long after the last event the page is looked at (default 3 s). */
  afterMs?: number;
  /** Limit for the whole browser session (default 30 s). */
  timeoutMs?: number;
}

/**
 * Serves /status for a replayed boot and loads it in headless Chromium, driven over the DevTools
 * protocol: once the page's script has received its first live update (the corner reads `live`) and
 * `opts.script` ran, it takes the screenshot and returns the DOM as the browser has it then.
 */
export async function renderStatusPage(opts: RenderOptions): Promise<string> {
  const { board } = replayBoot(opts.boot ?? await loadRecordedBoot(), { afterMs: opts.afterMs });
  const dir = await Deno.makeTempDir({ prefix: "pypxe-status-" });
  const netboot = await NetbootFs.open({ overlay: dir, embedded: dir });
  const server = new HttpServer({
    host: "127.0.0.1",
    port: 0,
    netboot,
    routes: (req, path) => board.route(req, path),
    stopGraceMs: 100,
    requestLog: false,
  });
  await server.start();
  const [width, height] = [opts.width ?? 900, opts.height ?? 1000];
  const browser = new Deno.Command(opts.chromium ?? "chromium", {
    args: [
      ...CHROMIUM_FLAGS,
      `--user-data-dir=${dir}/profile`,
      `--window-size=${width},${height}`,
      "about:blank",
    ],
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const timer = setTimeout(() => browser.kill("SIGKILL"), opts.timeoutMs ?? 30_000);
  let cdp: Cdp | undefined;
  try {
    cdp = await Cdp.connect(await devtoolsUrl(browser.stderr));
    const { targetId } = await cdp.send("Target.createTarget", { url: "about:blank" });
    const { sessionId } = await cdp.send("Target.attachToTarget", { targetId, flatten: true });
    const metrics = { width, height, deviceScaleFactor: 1, mobile: width < 600 };
    await cdp.send("Emulation.setDeviceMetricsOverride", metrics, sessionId);
    await cdp.send("Page.enable", {}, sessionId);
    const loaded = cdp.once("Page.loadEventFired", sessionId);
    await cdp.send("Page.navigate", { url: `http://127.0.0.1:${server.port}/status` }, sessionId);
    await loaded;
    const { result } = await cdp.send("Runtime.evaluate", {
      expression: WAIT_FOR_LIVE,
      awaitPromise: true,
      returnByValue: true,
    }, sessionId);
    let dom = result.value as string;
    if (opts.script) {
      const after = { expression: opts.script, awaitPromise: true, returnByValue: true };
      await cdp.send("Runtime.evaluate", after, sessionId);
      const now = { expression: "document.documentElement.outerHTML", returnByValue: true };
      dom = (await cdp.send("Runtime.evaluate", now, sessionId)).result.value;
    }
    if (opts.height === undefined) {
      // the screenshot ends where the page ends
      const bottom = `Math.ceil(document.getElementById("app").getBoundingClientRect().bottom) + 2`;
      const measure = { expression: bottom, returnByValue: true };
      const used = (await cdp.send("Runtime.evaluate", measure, sessionId)).result.value as number;
      const fitted = { ...metrics, height: Math.min(4000, Math.max(200, Math.ceil(used))) };
      await cdp.send("Emulation.setDeviceMetricsOverride", fitted, sessionId);
    }
    const shot = await cdp.send("Page.captureScreenshot", { format: "png" }, sessionId);
    await Deno.writeFile(opts.screenshot, Uint8Array.from(atob(shot.data), (c) => c.charCodeAt(0)));
    await cdp.send("Browser.close", {}).catch(() => {}); // it may close before it answers
    return dom;
  } finally {
    clearTimeout(timer);
    cdp?.close();
    try {
      browser.kill("SIGTERM");
    } catch {
      // already gone (Browser.close)
    }
    await browser.status;
    await server.stop();
    board.close();
    await Deno.remove(dir, { recursive: true });
  }
}

/** Page script: the DOM once the live update arrived (or after 5 s, as it is then). */
const WAIT_FOR_LIVE = `new Promise((done) => {
  const t0 = Date.now();
  (function poll() {
    const conn = document.getElementById("conn");
    if ((conn && conn.textContent === "live") || Date.now() - t0 > 5000) {
      done(document.documentElement.outerHTML);
    } else setTimeout(poll, 50);
  })();
})`;

/** The browser's DevTools WebSocket address, from the line Chromium prints on stderr. */
async function devtoolsUrl(stderr: ReadableStream<Uint8Array>): Promise<string> {
  const decoder = new TextDecoder();
  let text = "";
  const reader = stderr.getReader();
  while (true) {
    const { value, done } = await reader.read();
    if (done) throw new Error(`chromium exited: ${text.slice(-500)}`);
    text += decoder.decode(value, { stream: true });
    const m = /DevTools listening on (ws:\/\/\S+)/.exec(text);
    if (m) {
      // keep draining stderr so Chromium never blocks on a full pipe
      (async () => {
        while (!(await reader.read()).done) { /* discard */ }
      })().catch(() => {});
      return m[1];
    }
  }
}

/** A minimal Chrome DevTools protocol client: commands with replies, and waiting for one event. */
class Cdp {
  #ws: WebSocket;
  #id = 0;
  #pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  #waiters: { method: string; sessionId?: string; resolve: (v: unknown) => void }[] = [];

  private constructor(ws: WebSocket) {
    this.#ws = ws;
    ws.onmessage = (m) => {
      const msg = JSON.parse(m.data);
      if (msg.id !== undefined) {
        const p = this.#pending.get(msg.id);
        this.#pending.delete(msg.id);
        if (msg.error) p?.reject(new Error(`${msg.error.message} (${msg.error.code})`));
        else p?.resolve(msg.result);
        return;
      }
      const i = this.#waiters.findIndex((w) => w.method === msg.method && w.sessionId === msg.sessionId);
      if (i >= 0) this.#waiters.splice(i, 1)[0].resolve(msg.params);
    };
    ws.onclose = () => {
      for (const p of this.#pending.values()) p.reject(new Error("DevTools connection closed"));
      this.#pending.clear();
    };
  }

  /** Connects to `url`. */
  static connect(url: string): Promise<Cdp> {
    const ws = new WebSocket(url);
    return new Promise((resolve, reject) => {
      ws.onopen = () => resolve(new Cdp(ws));
      ws.onerror = () => reject(new Error(`cannot connect to ${url}`));
    });
  }

  /** Sends a command (to a page when `sessionId` is given) and resolves with its result. */
  // deno-lint-ignore no-explicit-any -- protocol results are JSON of many shapes
  send(method: string, params: Record<string, unknown>, sessionId?: string): Promise<any> {
    const id = ++this.#id;
    return new Promise((resolve, reject) => {
      this.#pending.set(id, { resolve, reject });
      this.#ws.send(JSON.stringify({ id, method, params, sessionId }));
    });
  }

  /** Resolves with the params of the next `method` event (of the page `sessionId`). */
  once(method: string, sessionId?: string): Promise<unknown> {
    return new Promise((resolve) => this.#waiters.push({ method, sessionId, resolve }));
  }

  /** Closes the connection. */
  close(): void {
    this.#ws.close();
  }
}

/** `boot` up to `seconds` after its first event: the page as it looked at that moment. */
export function cutBoot(boot: RecordedBoot, seconds: number): RecordedBoot {
  const t0 = boot.events[0]?.t ?? 0;
  return { ...boot, events: boot.events.filter((e) => e.t - t0 <= seconds * 1000) };
}

if (import.meta.main) {
  // docs/status.png: `--at 22.6`, the BIOS machine loading its kernel while the UEFI one has failed
  const at = Deno.args.indexOf("--at");
  const seconds = at >= 0 ? Number(Deno.args[at + 1]) : undefined;
  const rest = at >= 0 ? Deno.args.toSpliced(at, 2) : Deno.args;
  const out = rest[0] ?? new URL("../docs/status.png", import.meta.url).pathname;
  const boot = await loadRecordedBoot();
  const shown = seconds === undefined ? boot : cutBoot(boot, seconds);
  const dom = await renderStatusPage({
    screenshot: out,
    boot: shown,
    afterMs: seconds === undefined ? 3000 : 300,
  });
  console.log(`status page rendered (${dom.length} bytes of DOM), screenshot: ${out}`);
}
