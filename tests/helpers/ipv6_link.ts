/**
 * IPv6 on a namespace pair (tests/helpers/netns.ts) and pypxe's raw-socket code running inside one:
 *
 * - {@linkcode addIpv6}: an address on a link (no DAD) and the wait until the link-local address is no
 *   longer tentative (a raw socket cannot send from a tentative address);
 * - {@linkcode startRaIn}: the `--ra` service (src/dhcp6/ra_service.ts) alone in a namespace, as a child
 *   process (raw sockets belong to the namespace of the process that opens them);
 * - {@linkcode probeIpv6In}: `probeIpv6` (src/dhcp6/probe6.ts) run once in a namespace, its result parsed.
 *
 * Run as a script it is that child: `deno run -A tests/helpers/ipv6_link.ts '{"mode": "ra", ...}'` prints
 * `ready`, then `stopped sent=N` after SIGTERM or EOF on stdin; `{"mode": "probe", ...}` prints
 * `result {json}` and exits.
 * @module
 */
import { RaService, type RaServiceOptions } from "../../src/dhcp6/ra_service.ts";
import { type Ipv6Probe, probeIpv6 } from "../../src/dhcp6/probe6.ts";
import { addAddress6, linkLocalOf, waitDad } from "./netns6.ts";
import { run } from "./run.ts";
import { type Daemon, startDaemon } from "./servers.ts";

const SCRIPT = new URL(import.meta.url).pathname;

/** What the child is asked to do. */
type ChildSpec =
  | { mode: "ra"; options: RaServiceOptions }
  | { mode: "probe"; iface: string; timeoutMs: number };

/**
 * Adds `cidr` (e.g. `fd00::1/64`, without DAD) to `dev` in `ns` unless null, then waits (at most 10 s)
 * until `dev` has no tentative address left (the address helpers are tests/helpers/netns6.ts's).
 */
export async function addIpv6(ns: string, dev: string, cidr: string | null): Promise<void> {
  if (cidr !== null) await addAddress6(ns, dev, cidr);
  await waitDad(ns, dev);
}

export { linkLocalOf };

/** The `--ra` service running in a namespace. */
export interface RaProcess extends Daemon {
  /** Stops it (SIGTERM) and resolves with the number of advertisements it sent, the final one included. */
  finish(): Promise<number>;
}

function childArgv(spec: ChildSpec): string[] {
  return [Deno.execPath(), "run", "--allow-all", "--no-prompt", SCRIPT, JSON.stringify(spec)];
}

/** Starts the RA service in `ns` and resolves once it advertises (its start() returned). */
export async function startRaIn(ns: string, options: RaServiceOptions): Promise<RaProcess> {
  const daemon = await startDaemon(childArgv({ mode: "ra", options }), {
    netns: ns,
    env: { NO_COLOR: "1" },
    ready: /^(ready|failed)/,
    stdin: true,
    name: "ra service",
  });
  const failed = daemon.lines.find((l) => l.startsWith("failed "));
  if (failed !== undefined) {
    await daemon.stop();
    throw new Error(failed.slice(7));
  }
  return {
    ...daemon,
    async finish() {
      await daemon.stop("SIGTERM", 10_000);
      const line = daemon.lines.find((l) => l.startsWith("stopped sent="));
      if (line === undefined) throw new Error(`ra service did not stop cleanly:\n${daemon.lines.join("\n")}`);
      return Number(line.slice(13));
    },
  };
}

/**
 * Runs `probeIpv6(iface, timeoutMs)` inside `ns` (under the command `prefix`, e.g. capsh dropping
 * capabilities); rejects with its output when it prints no result.
 */
export async function probeIpv6In(
  ns: string,
  iface: string,
  timeoutMs: number,
  prefix: readonly string[] = [],
): Promise<Ipv6Probe> {
  const r = await run([...prefix, ...childArgv({ mode: "probe", iface, timeoutMs })], {
    netns: ns,
    env: { NO_COLOR: "1" },
    timeoutMs: timeoutMs + 30_000,
  });
  const line = r.stdout.split("\n").find((l) => l.startsWith("result "));
  if (line === undefined) throw new Error(`probe in ${ns} printed no result:\n${r.stdout}\n${r.stderr}`);
  return JSON.parse(line.slice(7)) as Ipv6Probe;
}

/** The argv of the RA child with other Deno flags (for the error lines: no FFI permission, no root). */
export function raChildArgv(options: RaServiceOptions, denoFlags: readonly string[]): string[] {
  return [
    Deno.execPath(),
    "run",
    ...denoFlags,
    "--no-prompt",
    SCRIPT,
    JSON.stringify({ mode: "ra", options }),
  ];
}

async function main(spec: ChildSpec): Promise<void> {
  if (spec.mode === "probe") {
    console.log(`result ${JSON.stringify(await probeIpv6(spec.iface, spec.timeoutMs))}`);
    return;
  }
  const ra = new RaService(spec.options);
  try {
    await ra.start();
  } catch (err) {
    console.log(`failed ${(err as Error).message}`);
    return;
  }
  console.log("ready");
  const { promise, resolve } = Promise.withResolvers<void>();
  for (const sig of ["SIGTERM", "SIGINT"] as const) Deno.addSignalListener(sig, () => resolve());
  (async () => {
    const buf = new Uint8Array(64);
    while ((await Deno.stdin.read(buf)) !== null) {
      // only EOF matters
    }
    resolve();
  })();
  await promise;
  await ra.stop();
  console.log(`stopped sent=${ra.sent}`);
  Deno.exit(0);
}

if (import.meta.main) await main(JSON.parse(Deno.args[0]) as ChildSpec);
