/**
 * The boot API of the DHCP boot-API benchmark: tests/helpers/boot_api_server.ts's fake pixiecore API as a
 * process that, when stopped, also prints when each boot request arrived, so the benchmark can count the
 * requests of its measured pass (zero with a warm cache). Prints `ready PORT`; on SIGTERM/SIGINT or EOF
 * of stdin prints `requests [[epochMs, "mac"], ...]`, `max-in-flight N` and `stopped`.
 *
 * Usage: deno run -A scripts/bench/boot_api_fake.ts '{"hostname": "127.0.0.1", "fallback": {...}, ...}'
 * (a FakeBootApiOptions).
 * @module
 */
import { type FakeBootApiOptions, startFakeBootApi } from "../../tests/helpers/boot_api_server.ts";

async function main(spec: FakeBootApiOptions): Promise<void> {
  const api = await startFakeBootApi(spec);
  console.log(`ready ${api.port}`);
  const stop = Promise.withResolvers<void>();
  for (const sig of ["SIGTERM", "SIGINT"] as const) Deno.addSignalListener(sig, () => stop.resolve());
  (async () => {
    const buf = new Uint8Array(64);
    // bounded: ends at EOF of stdin (the parent closed it, or died)
    while ((await Deno.stdin.read(buf)) !== null) { /* keep waiting */ }
    stop.resolve();
  })();
  await stop.promise;
  const arrivals = api.requests.map((r) => [Math.round(performance.timeOrigin + r.at), r.mac]);
  console.log(`requests ${JSON.stringify(arrivals)}`);
  console.log(`max-in-flight ${api.maxInFlight()}`);
  await api.close();
  console.log("stopped");
  Deno.exit(0);
}

if (import.meta.main) await main(JSON.parse(Deno.args[0] ?? "{}") as FakeBootApiOptions);
