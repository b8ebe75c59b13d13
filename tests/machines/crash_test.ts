/**
 * kill -9 right after the machine API acknowledged a one-shot (issue 13: "kill -9 at any moment loses
 * nothing that was acknowledged"), with the real process and a real HTTP client: pypxe runs with
 * `--machines` (tests/fixtures/machines, copied) and `--api-listen` on loopback; curl sets, overwrites and
 * clears one-shots, then PUTs one more, and pypxe is SIGKILLed as soon as curl has its 200. After a
 * restart on the same directory, the API (and `pypxe machines --json`) shows every acknowledged one-shot
 * pending, the cleared one gone, and nothing from the refused requests (no token, unknown profile,
 * malformed JSON).
 * @module
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { run } from "../helpers/run.ts";
import { freeTcpPort, type PypxeProcess, runPypxeOnce, startPypxe } from "../helpers/servers.ts";
import { missingTools, requires } from "../helpers/tools.ts";

const FIXTURE = new URL("../fixtures/machines/", import.meta.url).pathname;

/** A machine as the API shows it (the fields this test reads). */
interface MachineJson {
  mac: string;
  next: { profile: string } | null;
}

/** One curl request; the status and the body. */
async function curl(
  url: string,
  opts: { method?: string; token?: string; body?: string } = {},
): Promise<{ status: number; body: string }> {
  const args = ["curl", "-sS", "--max-time", "10", "-X", opts.method ?? "GET", "-w", "\n%{http_code}"];
  if (opts.token !== undefined) args.push("-H", `Authorization: Bearer ${opts.token}`);
  if (opts.body !== undefined) args.push("-H", "Content-Type: application/json", "--data-binary", opts.body);
  const r = await run([...args, url], { timeoutMs: 20_000 });
  assert.equal(r.code, 0, `curl ${url}: ${r.stderr}`);
  const nl = r.stdout.lastIndexOf("\n");
  return { status: Number(r.stdout.slice(nl + 1)), body: r.stdout.slice(0, nl) };
}

Deno.test(requires(missingTools("curl"), {
  name: "machines: kill -9 right after PUT /api/machines/MAC/next: acknowledged one-shots survive a restart",
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "pypxe-machines-crash-" });
    let pypxe: PypxeProcess | undefined;
    try {
      for (const sub of ["profiles", "groups"]) {
        await Deno.mkdir(join(dir, sub));
        for await (const e of Deno.readDir(join(FIXTURE, sub))) {
          await Deno.copyFile(join(FIXTURE, sub, e.name), join(dir, sub, e.name));
        }
      }
      const token = crypto.randomUUID();
      const tokenFile = join(dir, "api-token");
      await Deno.writeTextFile(tokenFile, token + "\n", { mode: 0o600 });
      const port = freeTcpPort();
      const listen = `127.0.0.1:${port}`;
      const args = ["--no-tftp", "--machines", dir, "--api-listen", listen, "--api-token-file", tokenFile];
      const api = `http://${listen}/api/machines`;
      const next = (mac: string) => `${api}/${mac}/next`;

      pypxe = await startPypxe(args);
      // refused writes change nothing
      const refused = [
        await curl(next("52:54:00:e2:ee:05"), { method: "PUT", body: '{"profile": "alpha"}' }),
        await curl(next("52:54:00:e2:ee:05"), {
          method: "PUT",
          token: "wrong",
          body: '{"profile": "alpha"}',
        }),
        await curl(next("52:54:00:e2:ee:05"), { method: "PUT", token, body: '{"profile": "nosuch"}' }),
        await curl(next("52:54:00:e2:ee:05"), { method: "PUT", token, body: '{"profile": "alpha"' }),
      ];
      assert.deepEqual(refused.map((r) => r.status), [401, 401, 400, 400], JSON.stringify(refused));
      // acknowledged: set, overwrite, set then clear (any MAC spelling)
      const acked: [string, string | undefined, number][] = [];
      const write = async (mac: string, method: "PUT" | "DELETE", profile?: string) => {
        const body = profile === undefined ? undefined : JSON.stringify({ profile });
        const r = await curl(next(mac), { method, token, body });
        assert.equal(r.status, 200, `${method} ${mac} ${profile ?? ""}: ${r.body}`);
        acked.push([mac, profile, r.status]);
        return r;
      };
      await write("52:54:00:e2:ee:01", "PUT", "alpha");
      await write("52-54-00-E2-EE-02", "PUT", "beta");
      await write("52:54:00:e2:ee:02", "PUT", "fallback");
      await write("5254.00e2.ee03", "PUT", "alpha");
      await write("52:54:00:e2:ee:03", "DELETE");
      // the last one: pypxe dies the moment curl has the 200
      const last = await write("52:54:00:e2:ee:04", "PUT", "beta");
      const ackedAt = performance.now();
      const code = await pypxe.stop("SIGKILL");
      const killMs = performance.now() - ackedAt;
      assert.equal(code, 137, "pypxe was not killed by SIGKILL");
      assert.deepEqual((JSON.parse(last.body) as MachineJson).next, { profile: "beta" });
      console.log(`crash: SIGKILL sent and pypxe gone ${killMs.toFixed(1)} ms after curl got the last 200`);

      pypxe = await startPypxe(args);
      const byGet = async (mac: string) => {
        const r = await curl(`${api}/${mac}`);
        return {
          status: r.status,
          next: r.status === 200 ? (JSON.parse(r.body) as MachineJson).next : undefined,
        };
      };
      assert.deepEqual(await byGet("52:54:00:e2:ee:01"), { status: 200, next: { profile: "alpha" } });
      assert.deepEqual(await byGet("52:54:00:e2:ee:02"), { status: 200, next: { profile: "fallback" } });
      assert.deepEqual(await byGet("52:54:00:e2:ee:04"), { status: 200, next: { profile: "beta" } });
      // cleared, and never seen: not in the inventory at all; the refused one never existed
      assert.equal((await byGet("52:54:00:e2:ee:03")).status, 404);
      assert.equal((await byGet("52:54:00:e2:ee:05")).status, 404);
      const list = await curl(api);
      assert.equal(list.status, 200);
      const pending = Object.fromEntries(
        (JSON.parse(list.body) as { machines: MachineJson[] }).machines.map((m) => [m.mac, m.next?.profile]),
      );
      const expected = {
        "52:54:00:e2:ee:01": "alpha",
        "52:54:00:e2:ee:02": "fallback",
        "52:54:00:e2:ee:04": "beta",
      };
      assert.deepEqual(pending, expected);
      // the CLI reads the same
      const cli = await runPypxeOnce(["machines", "--json", "--api-listen", listen]);
      assert.equal(cli.code, 0, cli.stderr);
      const viaCli = Object.fromEntries(
        (JSON.parse(cli.stdout) as { machines: MachineJson[] }).machines.map((m) => [m.mac, m.next?.profile]),
      );
      assert.deepEqual(viaCli, expected);
      assert.equal(await pypxe.stop("SIGTERM"), 0, pypxe.lines.join("\n"));
      pypxe = undefined;
    } finally {
      await pypxe?.stop("SIGKILL");
      await Deno.remove(dir, { recursive: true });
    }
  },
}));
