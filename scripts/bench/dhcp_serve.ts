/**
 * The pypxe DHCP service of the boot-API benchmark (`deno task bench dhcp --boot-api`), run alone in the
 * server namespace: a {@linkcode DhcpServer}, with per-machine boot ({@linkcode MachineBoot}, wired as
 * src/app.ts wires it for `--boot-api URL --boot-api-timeout MS`) when `bootApi` is given, else none (what
 * pypxe does without `--boot-api`). Logs INFO and above to stderr for every category (src/log.ts's
 * setupLogging leaves `["pypxe", "machines"]` at TRACE, which would log each boot API request). Prints
 * `ready 67` once listening, `stopped` after a clean stop; stops on SIGTERM/SIGINT or at EOF of stdin.
 *
 * Usage: deno run -A scripts/bench/dhcp_serve.ts '{"config": {...}, "bootApi": "http://127.0.0.1:PORT/",
 * "bootApiTimeoutMs": 2000}'
 * @module
 */
import { configure } from "@logtape/logtape";
import { DEFAULTS, type PxeConfig } from "../../src/config.ts";
import { DhcpServer } from "../../src/dhcp/server.ts";
import { BootEvents } from "../../src/events.ts";
import { formatLine } from "../../src/log.ts";
import { MachineBoot } from "../../src/machines/runtime.ts";

/** What {@linkcode main} serves. */
export interface DhcpServeSpec {
  /** Over DEFAULTS with USE_DHCP. */
  readonly config: Partial<PxeConfig>;
  /** `--boot-api URL`; absent or "": no per-machine boot at all. */
  readonly bootApi?: string;
  /** `--boot-api-timeout` in ms; default DEFAULTS.BOOT_API_TIMEOUT. */
  readonly bootApiTimeoutMs?: number;
}

async function main(spec: DhcpServeSpec): Promise<void> {
  // INFO and above to stderr, as pypxe logs by default (src/log.ts), for every category
  await configure({
    reset: true,
    sinks: { console: (record) => console.error(formatLine(record)) },
    loggers: [
      { category: ["logtape", "meta"], sinks: [], lowestLevel: "warning" },
      { category: ["pypxe"], sinks: ["console"], lowestLevel: "info" },
    ],
  });
  const config = { ...DEFAULTS, USE_DHCP: true, ...spec.config };
  const events = new BootEvents();
  let machines: MachineBoot | undefined;
  if (spec.bootApi) {
    machines = await MachineBoot.open({
      dir: "",
      bootApi: spec.bootApi,
      bootApiTimeoutMs: spec.bootApiTimeoutMs ?? config.BOOT_API_TIMEOUT,
    });
    const m = machines;
    events.subscribe((e) => m.onEvent(e));
  }
  const dhcp = new DhcpServer({ config, events, machines });
  await dhcp.start();
  console.log(`ready ${config.DHCP_SERVER_PORT}`);
  const stop = Promise.withResolvers<void>();
  for (const sig of ["SIGTERM", "SIGINT"] as const) Deno.addSignalListener(sig, () => stop.resolve());
  (async () => {
    const buf = new Uint8Array(64);
    // bounded: ends at EOF of stdin (the parent closed it, or died)
    while ((await Deno.stdin.read(buf)) !== null) { /* keep waiting */ }
    stop.resolve();
  })();
  await stop.promise;
  await dhcp.stop();
  await machines?.close();
  console.log("stopped");
  Deno.exit(0);
}

if (import.meta.main) await main(JSON.parse(Deno.args[0] ?? "{}") as DhcpServeSpec);
