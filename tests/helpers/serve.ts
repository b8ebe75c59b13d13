/**
 * Runs one service alone (no banner, no other service) until SIGTERM/SIGINT or EOF on stdin: the
 * subprocess that `spawnService` (tests/helpers/servers.ts) starts. Prints `ready PORT` once listening,
 * with `printEvents` one `event {json}` line per boot event, and `stopped` after a clean stop.
 *
 * Usage: deno run -A tests/helpers/serve.ts '{"service": "dhcp"|"tftp"|"http", "printEvents": bool, ...}'
 * (the rest is a ServiceSpec of servers.ts).
 * @module
 */
import { DEFAULTS } from "../../src/config.ts";
import { DhcpServer } from "../../src/dhcp/server.ts";
import { BootEvents } from "../../src/events.ts";
import { HttpServer } from "../../src/http/server.ts";
import { NetbootFs } from "../../src/netboot/fs.ts";
import { TftpServer } from "../../src/tftp/server.ts";
import type { ServiceSpec } from "./servers.ts";

const spec = JSON.parse(Deno.args[0] ?? "{}") as ServiceSpec & { printEvents?: boolean };
const events = new BootEvents();
if (spec.printEvents) events.subscribe((e) => console.log(`event ${JSON.stringify(e)}`));

let server: { start(): Promise<void>; stop(): Promise<void> };
let port: () => number;
if (spec.service === "dhcp") {
  const { service: _service, printEvents: _print, config, ...opts } = spec;
  const config_ = { ...DEFAULTS, USE_DHCP: true, ...config };
  const dhcp = new DhcpServer({ ...opts, events, config: config_ });
  server = dhcp;
  port = () => config_.DHCP_SERVER_PORT;
} else if (spec.service === "tftp") {
  const netboot = await NetbootFs.open({ overlay: spec.dir, embedded: `${spec.dir}/.no-embedded` });
  const tftp = new TftpServer({
    host: spec.host,
    port: spec.port,
    ipv6: spec.ipv6,
    netboot,
    events,
    cacheFileBytes: spec.cacheOff ? 0 : undefined,
  });
  server = tftp;
  port = () => tftp.port;
} else {
  // like nginx's `access_log off`: no request log, no generated menus (unless `menus`)
  const netboot = await NetbootFs.open({ overlay: spec.dir, embedded: spec.dir });
  const http = new HttpServer({
    host: spec.host,
    port: spec.port,
    ipv6: spec.ipv6,
    netboot,
    menus: spec.menus ?? false,
    requestLog: false,
    ...(spec.printEvents ? { events } : {}),
  });
  server = http;
  port = () => http.port;
}
await server.start();
console.log(`ready ${port()}`);
const { promise, resolve } = Promise.withResolvers<void>();
for (const sig of ["SIGTERM", "SIGINT"] as const) Deno.addSignalListener(sig, () => resolve());
(async () => {
  const buf = new Uint8Array(64);
  // bounded: ends at EOF of stdin (the parent closed it, or died)
  while ((await Deno.stdin.read(buf)) !== null) { /* keep waiting */ }
  resolve();
})();
await promise;
await server.stop();
console.log("stopped");
Deno.exit(0);
