/**
 * Test helper: runs one DhcpServer alone (no TFTP, HTTP or banner) until SIGTERM/SIGINT, for the
 * crash-safety and namespace tests. Prints "ready" once listening, one `event {json}` line per DHCP event,
 * and "stopped" after a clean stop.
 * Usage: deno run -A tests/dhcp/serve_dhcp.ts '{"config": {...}, "clientPort": N, ...}'
 */
import { DEFAULTS } from "../../src/config.ts";
import { BootEvents } from "../../src/events.ts";
import { DhcpServer } from "../../src/dhcp/server.ts";

const opts = JSON.parse(Deno.args[0] ?? "{}");
const events = new BootEvents();
events.subscribe((e) => console.log(`event ${JSON.stringify(e)}`));
const server = new DhcpServer({ ...opts, events, config: { ...DEFAULTS, USE_DHCP: true, ...opts.config } });
await server.start();
console.log("ready");
const keepAlive = setInterval(() => {}, 60_000);
await new Promise<void>((resolve) => {
  Deno.addSignalListener("SIGTERM", () => resolve());
  Deno.addSignalListener("SIGINT", () => resolve());
});
clearInterval(keepAlive);
await server.stop();
console.log("stopped");
Deno.exit(0);
