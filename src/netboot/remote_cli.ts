/**
 * `pypxe cache fetch` and `pypxe cache list`: the remote-file cache from the command line, with the same
 * flags and `--config` as the server (so the same `--cache-dir`, `--netboot-dir`, `--machines`).
 *
 * - `fetch`: downloads every `http(s)://` file the config names (`--netboot-file*`), `menu.json` names and
 *   the machine profiles name, into the cache (a progress bar per file on a terminal), so a USB stick
 *   can boot machines with no uplink later. Exit 1 when any failed.
 * - `list`: what the cache holds: size, age, hash status, URL.
 * @module
 */
import { parseArgs } from "../cli.ts";
import { buildConfig, ConfigError, DEFAULTS, loadConfigFile } from "../config.ts";
import { errText } from "../errors.ts";
import { formatSize } from "../format.ts";
import { loadMachines, MachinesError } from "../machines/profiles.ts";
import { terminalProgress } from "../progress.ts";
import { NETBOOT_FILE_KEYS } from "../settings.ts";
import { BootFiles } from "./files.ts";
import { NetbootFs } from "./fs.ts";
import { RemoteCache } from "./remote.ts";
import { remoteCacheDir } from "./remote_open.ts";
import { displayUrl } from "./remote_url.ts";
import { readIndex } from "./remote_index.ts";
import { heldInfo, type RemoteEntryInfo } from "./remote_list.ts";
import { getLogger } from "@logtape/logtape";

/** Where the command writes. */
export interface CacheCliIo {
  stdout(text: string): void;
  stderr(text: string): void;
}

/** Runs `cache fetch` or `cache list` (`args` without the leading `cache`); resolves with the exit code. */
export async function runCacheCommand(args: readonly string[], io: CacheCliIo): Promise<number> {
  const [sub, ...flags] = args;
  try {
    if (sub !== "fetch" && sub !== "list") {
      throw new ConfigError("usage: pypxe cache fetch|list [--config FILE] [--cache-dir DIR] [flags]");
    }
    const request = parseArgs(flags);
    const file = request.configFile !== undefined ? await loadConfigFile(request.configFile) : { values: {} };
    const { config } = buildConfig({ file: file.values, flags: request.flags, interfaces: () => [] });
    if (sub === "list") {
      // read only: a running server may be downloading into this directory
      const dir = remoteCacheDir(config);
      const now = Date.now();
      const entries = (await readIndex(dir, getLogger(["pypxe", "remote"]))).map((e) => heldInfo(e, now));
      io.stdout(listText(entries, dir));
      return 0;
    }
    const cache = await RemoteCache.create({
      dir: remoteCacheDir(config),
      maxBytes: config.CACHE_MAX,
      revalidateMs: config.CACHE_REVALIDATE * 1000,
    });
    try {
      // the files the server would serve from the cache: the same registry the server builds
      const overlay = config.NETBOOT_DIR === DEFAULTS.NETBOOT_DIR &&
          !(await Deno.stat(config.NETBOOT_DIR).then(() => true, () => false))
        ? undefined
        : config.NETBOOT_DIR;
      const files = new BootFiles({
        netboot: await NetbootFs.open({ overlay }),
        remoteCache: () => Promise.resolve(cache),
      });
      const profiles = config.MACHINES_DIR === ""
        ? []
        : [...(await loadMachines(config.MACHINES_DIR)).profiles.values()];
      await files.prime(profiles);
      for (const key of NETBOOT_FILE_KEYS) files.localName(config[key]);
      const refs = files.remoteRefs();
      if (refs.length === 0) {
        io.stdout(
          "nothing to fetch: no http(s):// boot file in the config, menu.json or the machine profiles\n",
        );
        return 0;
      }
      const bars = new Map<string, (done: number, total: number) => void>();
      const results = await cache.fetchAll(refs, (p) => {
        if (p.size === undefined) return;
        let bar = bars.get(p.url);
        if (bar === undefined) {
          bar = terminalProgress(displayUrl(p.url).replace(/^.*\//, "").slice(0, 24).padEnd(24));
          bars.set(p.url, bar);
        }
        bar(p.received, p.size);
      });
      let failed = 0;
      for (const r of results) {
        if (r.ok) {
          io.stdout(
            `${r.cached ? "held   " : "fetched"} ${formatSize(r.size ?? 0).padStart(9)}  ${
              displayUrl(r.url)
            }\n`,
          );
        } else {
          failed++;
          io.stdout(`FAILED  ${displayUrl(r.url)}: ${r.error}\n`);
        }
      }
      io.stdout(
        `cache ${remoteCacheDir(config)}: ${results.length - failed} of ${results.length} files held\n`,
      );
      return failed === 0 ? 0 : 1;
    } finally {
      await cache.close();
    }
  } catch (err) {
    if (err instanceof ConfigError || err instanceof MachinesError) {
      io.stderr(`pypxe: error: ${err.message}\n`);
      return 2;
    }
    io.stderr(`pypxe: error: ${errText(err)}\n`);
    return 1;
  }
}

/** The held files as a table. */
function listText(entries: readonly RemoteEntryInfo[], dir: string): string {
  if (entries.length === 0) return `cache ${dir}: empty\n`;
  const age = (ms: number | null) =>
    ms === null
      ? "-"
      : ms < 3_600_000
      ? `${Math.round(ms / 60_000)} min`
      : ms < 172_800_000
      ? `${(ms / 3_600_000).toFixed(1)} h`
      : `${Math.round(ms / 86_400_000)} d`;
  const rows = [["SIZE", "AGE", "HASH", "STATE", "URL"]];
  let total = 0;
  for (const e of entries) {
    total += e.size ?? 0;
    rows.push([e.size === null ? "-" : formatSize(e.size), age(e.ageMs), e.hash, e.state, displayUrl(e.url)]);
  }
  const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
  const lines = rows.map((r) =>
    r.map((c, i) => (i === 0 ? c.padStart(widths[i]) : c.padEnd(widths[i]))).join("  ").trimEnd()
  );
  return `${lines.join("\n")}\ncache ${dir}: ${entries.length} file(s), ${formatSize(total)}\n`;
}
