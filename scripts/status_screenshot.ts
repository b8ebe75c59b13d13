/**
 * Renders the live status page in headless Chromium with two clients in different boot stages:
 * `deno run -A scripts/status_screenshot.ts [out.png]` (default docs/status.png). The test suite calls
 * {@linkcode renderStatusPage} the same way to prove the page renders.
 * @module
 */
import { BootEvents } from "../src/events.ts";
import { HttpServer } from "../src/http/server.ts";
import { NetbootFs } from "../src/netboot/fs.ts";
import { StatusBoard } from "../src/status.ts";

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
];

/** Feeds a board two clients: a UEFI machine loading its kernel, a BIOS machine at its boot program. */
export function demoEvents(events: BootEvents): void {
  events.emit({
    kind: "dhcp",
    mac: "52:54:00:12:34:56",
    received: "REQUEST",
    sent: "ACK",
    client: "UEFI x64",
    ip: "192.168.2.101",
    bootFile: "ipxe.efi",
  });
  events.emit({
    kind: "transfer-start",
    service: "tftp",
    id: 1,
    client: "192.168.2.101:1025",
    file: "ipxe.efi",
    size: 1_031_680,
  });
  events.emit({
    kind: "transfer-end",
    service: "tftp",
    id: 1,
    client: "192.168.2.101:1025",
    file: "ipxe.efi",
    bytes: 1_031_680,
    ms: 400,
    outcome: "ok",
  });
  events.emit({
    kind: "transfer-start",
    service: "http",
    id: 2,
    client: "192.168.2.101:40000",
    file: "debian/linux",
    size: 8_247_232,
  });
  events.emit({ kind: "transfer-progress", service: "http", id: 2, bytes: 5_100_000 });
  events.emit({
    kind: "dhcp",
    mac: "52:54:00:ab:cd:ef",
    received: "REQUEST",
    sent: "ACK",
    client: "BIOS",
    ip: "192.168.2.102",
    bootFile: "pxelinux.0",
  });
  events.emit({
    kind: "transfer-start",
    service: "tftp",
    id: 3,
    client: "192.168.2.102:2070",
    file: "pxelinux.0",
    size: 42_430,
  });
  events.emit({ kind: "transfer-progress", service: "tftp", id: 3, bytes: 21_000 });
}

/** Serves /status with the demo clients and runs Chromium on it; returns the DOM Chromium rendered. */
export async function renderStatusPage(opts: { screenshot: string; chromium?: string }): Promise<string> {
  const events = new BootEvents();
  const board = new StatusBoard(events);
  const dir = await Deno.makeTempDir({ prefix: "pypxe-status-" });
  const netboot = await NetbootFs.open({ overlay: dir, embedded: dir });
  const server = new HttpServer({
    host: "127.0.0.1",
    port: 0,
    netboot,
    routes: (req, path) => board.route(req, path),
    stopGraceMs: 100,
  });
  await server.start();
  demoEvents(events);
  const url = `http://127.0.0.1:${server.port}/status`;
  const chromium = opts.chromium ?? "chromium";
  const run = async (extra: string[]) => {
    const out = await new Deno.Command(chromium, {
      args: [
        ...CHROMIUM_FLAGS,
        `--user-data-dir=${dir}/profile`,
        "--timeout=4000",
        ...extra,
        url,
      ],
      stdout: "piped",
      stderr: "piped",
    }).output();
    if (!out.success) throw new Error(`chromium failed: ${new TextDecoder().decode(out.stderr).slice(-500)}`);
    return new TextDecoder().decode(out.stdout);
  };
  try {
    await run([`--screenshot=${opts.screenshot}`, "--window-size=420,520"]);
    return await run(["--dump-dom"]);
  } finally {
    await server.stop();
    board.close();
    await Deno.remove(dir, { recursive: true });
  }
}

if (import.meta.main) {
  const out = Deno.args[0] ?? new URL("../docs/status.png", import.meta.url).pathname;
  const dom = await renderStatusPage({ screenshot: out });
  console.log(`status page rendered (${dom.length} bytes of DOM), screenshot: ${out}`);
}
