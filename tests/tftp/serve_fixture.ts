/**
 * Runs a TftpServer over a directory until stdin closes or SIGTERM/SIGINT arrives (used by the
 * namespace loss test and the benchmark). Prints `ready PORT` once listening.
 * Usage: deno run -A tests/tftp/serve_fixture.ts HOST PORT DIR [--cache-off]
 * @module
 */
import { BootEvents } from "../../src/events.ts";
import { NetbootFs } from "../../src/netboot/fs.ts";
import { TftpServer } from "../../src/tftp/server.ts";

const [host = "127.0.0.1", port = "0", dir = "."] = Deno.args;
const netboot = await NetbootFs.open({ overlay: dir, embedded: `${dir}/.no-embedded` });
const server = new TftpServer({
  host,
  port: Number(port),
  netboot,
  events: new BootEvents(),
  cacheFileBytes: Deno.args.includes("--cache-off") ? 0 : undefined,
});
await server.start();
console.log(`ready ${server.port}`);
const { promise, resolve } = Promise.withResolvers<void>();
for (const sig of ["SIGTERM", "SIGINT"] as const) Deno.addSignalListener(sig, () => resolve());
(async () => {
  const buf = new Uint8Array(64);
  // bounded: ends at EOF of stdin
  while ((await Deno.stdin.read(buf)) !== null) { /* keep waiting */ }
  resolve();
})();
await promise;
await server.stop();
Deno.exit(0);
