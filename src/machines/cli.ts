/**
 * `pypxe machines` and `pypxe next MAC PROFILE`: the command-line client of a running server's machine
 * API (`--api-listen`). It takes the same `--config`, `--api-listen` and `--api-token-file` as the
 * server, so `pypxe next aa:bb:cc:dd:ee:ff debian --config pypxe.json` reaches the server that file runs.
 *
 * - `pypxe machines [--json]`: the inventory as a table (or the API's JSON).
 * - `pypxe next MAC PROFILE`: the machine boots PROFILE once, on its next boot.
 * - `pypxe next MAC --clear`: drops a pending one-shot.
 *
 * MAC and PROFILE come first, the flags after them.
 * @module
 */
import { parseArgs } from "../cli.ts";
import { buildConfig, ConfigError, loadConfigFile } from "../config.ts";
import { errText } from "../errors.ts";
import { machineMac } from "./keys.ts";
import type { MachineApiView as MachineView } from "./api.ts";

/** Where the client writes. */
export interface CliIo {
  stdout(text: string): void;
  stderr(text: string): void;
}

/** The subcommands this module answers. */
export const MACHINE_COMMANDS: readonly string[] = ["machines", "next"];

/** Runs `machines` or `next` (args[0]); resolves with the exit code (0 ok, 1 API error, 2 usage). */
export async function runMachineCommand(args: readonly string[], io: CliIo): Promise<number> {
  const [command, ...rest] = args;
  // positional arguments first (`next MAC PROFILE`), then the server's flags
  const firstFlag = rest.findIndex((a) => a.startsWith("-"));
  const positional = firstFlag < 0 ? rest : rest.slice(0, firstFlag);
  const flags = firstFlag < 0 ? [] : rest.slice(firstFlag);
  const json = takeSwitch(flags, "--json");
  const clear = takeSwitch(flags, "--clear");
  try {
    const api = await apiOf(flags);
    if (command === "machines") {
      if (positional.length > 0) throw new ConfigError(`machines takes no arguments (got ${positional[0]})`);
      const body = await call(api, "GET", "/api/machines") as { machines: MachineView[] };
      io.stdout(json ? JSON.stringify(body, null, 2) + "\n" : machinesTable(body.machines));
      return 0;
    }
    const [rawMac, profile] = positional;
    const mac = rawMac === undefined ? null : machineMac(rawMac);
    if (mac === null) throw new ConfigError("usage: pypxe next MAC PROFILE | pypxe next MAC --clear");
    if (clear === (profile !== undefined) || positional.length > 2) {
      throw new ConfigError("usage: pypxe next MAC PROFILE | pypxe next MAC --clear");
    }
    const path = `/api/machines/${mac}/next`;
    const body = clear
      ? await call(api, "DELETE", path)
      : await call(api, "PUT", path, JSON.stringify({ profile }));
    const view = body as MachineView;
    io.stdout(
      json
        ? JSON.stringify(view, null, 2) + "\n"
        : clear
        ? `${mac}: no pending next boot\n`
        : `${mac}: next boot ${view.next?.profile}, once\n`,
    );
    return 0;
  } catch (err) {
    if (err instanceof ConfigError) {
      io.stderr(`pypxe: error: ${err.message}\n`);
      return 2;
    }
    io.stderr(`pypxe: error: ${errText(err)}\n`);
    return 1;
  }
}

function takeSwitch(flags: string[], name: string): boolean {
  const i = flags.indexOf(name);
  if (i < 0) return false;
  flags.splice(i, 1);
  return true;
}

interface ApiTarget {
  readonly base: string;
  readonly token: string | null;
}

/** The API's URL and token from the same flags and config file the server reads. */
async function apiOf(flags: readonly string[]): Promise<ApiTarget> {
  const request = parseArgs(flags);
  const file = request.configFile !== undefined ? await loadConfigFile(request.configFile) : { values: {} };
  const { config } = buildConfig({ file: file.values, flags: request.flags, interfaces: () => [] });
  if (config.API_LISTEN === "") {
    throw new ConfigError(
      "no machine API to talk to: give --api-listen ADDR:PORT (or API_LISTEN in --config)",
    );
  }
  const m = /^(.+):(\d+)$/.exec(config.API_LISTEN)!;
  let host = m[1].replace(/^\[(.*)\]$/, "$1");
  if (host === "0.0.0.0" || host === "::") host = host === "::" ? "::1" : "127.0.0.1";
  const base = `http://${host.includes(":") ? `[${host}]` : host}:${m[2]}`;
  let token: string | null = null;
  if (config.API_TOKEN_FILE !== "") {
    try {
      token = (await Deno.readTextFile(config.API_TOKEN_FILE)).trim();
    } catch (err) {
      throw new ConfigError(`--api-token-file ${config.API_TOKEN_FILE}: cannot read (${errText(err)})`);
    }
  }
  return { base, token };
}

/** One API call; the parsed JSON body, or an Error with the API's reason. */
async function call(api: ApiTarget, method: string, path: string, body?: string): Promise<unknown> {
  const headers: Record<string, string> = {};
  if (api.token !== null && method !== "GET") headers.authorization = `Bearer ${api.token}`;
  if (body !== undefined) headers["content-type"] = "application/json";
  let res: Response;
  try {
    res = await fetch(api.base + path, { method, headers, body, signal: AbortSignal.timeout(10_000) });
  } catch (err) {
    throw new Error(`machine API at ${api.base} is not reachable (${errText(err)})`);
  }
  const text = await res.text();
  let parsed: unknown = null;
  try {
    parsed = JSON.parse(text);
  } catch {
    parsed = null;
  }
  if (!res.ok) {
    const reason = (parsed as { error?: string } | null)?.error ?? text.slice(0, 200);
    throw new Error(`${method} ${path}: ${res.status} ${reason}`);
  }
  return parsed;
}

/** The inventory as a text table, newest first. */
export function machinesTable(machines: readonly MachineView[]): string {
  if (machines.length === 0) return "no machines seen yet\n";
  const rows = [["MAC", "ARCH", "CLIENT", "IP", "HOSTNAME", "PROFILE", "NEXT", "LAST BOOT", "LAST SEEN"]];
  for (const m of machines) {
    rows.push([
      m.mac,
      m.arch ?? "-",
      m.client ?? "-",
      m.ip ?? "-",
      m.hostname ?? "-",
      m.profile ?? "(menu)",
      m.next?.profile ?? "-",
      m.lastBoot ? `${m.lastBoot.profile}: ${m.lastBoot.stage}` : "-",
      m.lastSeen === null ? "-" : new Date(m.lastSeen).toISOString().slice(0, 19).replace("T", " "),
    ]);
  }
  const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
  return rows.map((r) => r.map((c, i) => c.padEnd(widths[i])).join("  ").trimEnd()).join("\n") + "\n";
}
