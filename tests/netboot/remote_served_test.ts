/**
 * Remote boot files served by a real pypxe process (issue 17): `menu.json` in a temp netboot tree names
 * kernels and initrds on a real HTTP origin (tests/helpers/origin_server.ts, on loopback); pypxe runs as
 * `deno task start` runs it, with TFTP and HTTP on 127.0.0.1 and `--cache-dir` in the temp dir, and real
 * clients fetch the `remote/<key>/<name>` files it serves:
 *
 * - cold fetches over TFTP (curl, atftp, tftp-hpa) and HTTP (curl) give the origin's bytes, one origin GET
 *   per file, and the generated menu names `remote/...`, never the origin;
 * - a TFTP client of a cold file gets tsize from Content-Length before the download ends;
 * - 20 curl clients at once on a cold 100 MiB file: one origin GET, 20 identical copies, and the download
 *   shows on /status.json meanwhile;
 * - offline with a warm cache (origin closed, pypxe restarted on the same cache): still served, a stale
 *   line after the revalidation interval;
 * - a sha256 mismatch and an origin 404: the client gets an error (HTTP 502 or a cut connection, a TFTP
 *   error), pypxe logs it clearly and keeps serving;
 * - LRU eviction at `--cache-max`, as `pypxe cache list` shows it;
 * - `pypxe cache fetch` pre-fetches, then pypxe serves with the origin down (the USB stick case);
 * - a `{"url": "ftp://..."}` entry: a menu notice naming the entry.
 * @module
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { remoteName } from "../../src/netboot/remote_url.ts";
import { sha256, sha256File } from "../helpers/hash.ts";
import { OriginServer, randomBytes } from "../helpers/origin_server.ts";
import { run, type RunResult } from "../helpers/run.ts";
import { freeTcpPort, freeUdpPort, type PypxeProcess, runPypxeOnce, startPypxe } from "../helpers/servers.ts";
import { tftpGet } from "../helpers/tftp_client.ts";
import { missingTools, requires } from "../helpers/tools.ts";

const MiB = 1 << 20;
const NEEDS = missingTools("curl", "atftp", "tftp", "bash", "sha256sum");

/** A menu.json entry: kernel and initrds as menu.json takes them (a URL string or `{"url","sha256"}`). */
interface Entry {
  id: string;
  kernel: unknown;
  initrd?: unknown[];
}

/** One run: a temp netboot tree and cache, an origin, and pypxe (started and restarted on fixed ports). */
class Bed {
  readonly tree: string;
  readonly cache: string;
  readonly out: string;
  readonly httpPort = freeTcpPort();
  readonly tftpPort = freeUdpPort();
  pypxe: PypxeProcess | null = null;
  /** Every pypxe line of the run, over restarts. */
  readonly log: string[] = [];

  private constructor(readonly dir: string, readonly origin: OriginServer) {
    this.tree = join(dir, "tree");
    this.cache = join(dir, "cache");
    this.out = join(dir, "out");
  }

  static async create(): Promise<Bed> {
    const dir = await Deno.makeTempDir({ prefix: "pypxe-remote-served-" });
    await Deno.mkdir(join(dir, "tree"));
    await Deno.mkdir(join(dir, "out"));
    return new Bed(dir, await OriginServer.start());
  }

  /** Writes the tree's menu.json (a 1 s timeout, so nothing waits for a person). */
  async menu(entries: Entry[]): Promise<void> {
    const full = entries.map((e) => ({ label: `Entry ${e.id}`, cmdline: "console=ttyS0", ...e }));
    await Deno.writeTextFile(join(this.tree, "menu.json"), JSON.stringify({ timeout: 1, entries: full }));
  }

  /** Serves `body` at origin `path`; returns its URL and the name pypxe serves it under. */
  put(path: string, body: Uint8Array, route: Parameters<OriginServer["put"]>[2] = {}): Remote {
    this.origin.put(path, body, route);
    const url = this.origin.url(path);
    return { path, url, name: remoteName(url), sha256: sha256(body), size: body.length };
  }

  /** Starts pypxe (TFTP + HTTP on 127.0.0.1, this tree and cache) with `extra` flags. */
  async start(extra: readonly string[] = []): Promise<PypxeProcess> {
    assert.equal(this.pypxe, null, "pypxe is already running");
    this.pypxe = await startPypxe([
      ...["--tftp-server-ip", "127.0.0.1", "--tftp-port", String(this.tftpPort)],
      ...["--http", "--http-server-ip", "127.0.0.1", "--http-port", String(this.httpPort)],
      ...["--netboot-dir", this.tree, "--cache-dir", this.cache, "--verbose", "all"],
      ...extra,
    ]);
    return this.pypxe;
  }

  /** Stops pypxe (SIGTERM; it must exit 0) and keeps its lines in `log`. */
  async stop(): Promise<void> {
    const p = this.pypxe;
    if (p === null) return;
    this.pypxe = null;
    const code = await p.stop("SIGTERM");
    this.log.push(...p.lines, `(exit ${code})`);
    assert.equal(code, 0, `pypxe exited ${code}:\n${p.lines.slice(-30).join("\n")}`);
  }

  /** pypxe's lines so far (earlier runs too). */
  lines(): string {
    return [...this.log, ...(this.pypxe?.lines ?? [])].join("\n");
  }

  /** Waits (at most `ms`) for a line of the running pypxe matching `pattern`. */
  async logs(pattern: RegExp, what: string, ms = 10_000): Promise<string> {
    assert.ok(this.pypxe, "pypxe is not running");
    try {
      return await this.pypxe.waitFor(pattern, ms);
    } catch {
      assert.fail(`${what}: pypxe's log lacks ${pattern}:\n${this.pypxe.lines.slice(-40).join("\n")}`);
    }
  }

  httpUrl(name: string): string {
    return `http://127.0.0.1:${this.httpPort}/${name}`;
  }

  tftpUrl(name: string): string {
    return `tftp://127.0.0.1:${this.tftpPort}/${name}`;
  }

  async close(): Promise<void> {
    try {
      await this.stop();
    } finally {
      await this.origin.close();
      await Deno.remove(this.dir, { recursive: true });
    }
  }
}

/** A file on the origin as the test knows it. */
interface Remote {
  path: string;
  url: string;
  /** `remote/<16 hex>/<basename>`: what pypxe serves it as. */
  name: string;
  sha256: string;
  size: number;
}

/** Runs `fn` on a fresh bed, closing it after (pypxe's log is printed when `fn` fails). */
async function withBed(fn: (bed: Bed) => Promise<void>): Promise<void> {
  const bed = await Bed.create();
  try {
    await fn(bed);
  } catch (err) {
    console.log(`pypxe log:\n${bed.lines()}`);
    throw err;
  } finally {
    await bed.close();
  }
}

/** `cmd` within 60 s; asserts it exited 0. */
async function ok(cmd: string[], what: string): Promise<RunResult> {
  const r = await run(cmd, { timeoutMs: 60_000 });
  assert.equal(
    r.code,
    0,
    `${what}: ${cmd.join(" ")} exited ${r.code}${r.timedOut ? " (timed out)" : ""}\n${r.stderr}`,
  );
  return r;
}

/** The sha256 of a file the client wrote. */
async function hashOf(path: string): Promise<string> {
  return await sha256File(path);
}

/** curl over HTTP into `out`: the HTTP status and curl's exit code. */
async function curlHttp(url: string, out: string): Promise<{ status: number; code: number; stderr: string }> {
  const r = await run(["curl", "-sS", "--max-time", "60", "-o", out, "-w", "%{http_code}", url], {
    timeoutMs: 70_000,
  });
  return { status: Number(r.stdout.trim()), code: r.code, stderr: r.stderr };
}

/** tftp-hpa `get` in binary mode: its exit code and output (it prints server errors). */
function tftpHpa(bed: Bed, name: string, out: string): Promise<RunResult> {
  return run(["tftp", "127.0.0.1", String(bed.tftpPort), "-m", "binary", "-c", "get", name, out], {
    timeoutMs: 60_000,
  });
}

/** atftp `--get` with tsize and blksize options (`--trace` prints the OACK it got). */
function atftpGet(bed: Bed, name: string, out: string, trace = false): Promise<RunResult> {
  return run([
    ...["atftp", "--get", "-r", name, "-l", out, "--option", "tsize 0", "--option", "blksize 1428"],
    ...(trace ? ["--trace"] : []),
    ...["127.0.0.1", String(bed.tftpPort)],
  ], { timeoutMs: 60_000 });
}

/** GET requests the origin saw for `path`. */
function gets(origin: OriginServer, path: string): number {
  return origin.requests(path).filter((r) => r.method === "GET").length;
}

/** Escapes `text` for a RegExp. */
const re = (text: string) => text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");

Deno.test(requires(NEEDS, {
  name: "remote served: cold files over TFTP (curl, atftp, tftp-hpa) and HTTP (curl) match the origin; " +
    "the menu names remote/..., one origin GET per file",
  async fn() {
    await withBed(async (bed) => {
      // throttled so each cold transfer streams while pypxe downloads
      const files = ["curl-tftp", "atftp", "hpa", "http"].map((tag) =>
        bed.put(`/${tag}/vmlinuz`, randomBytes(3 * MiB), { rate: 8e6 })
      );
      const initrd = bed.put("/http/initrd.img", randomBytes(2 * MiB));
      await bed.menu([
        ...files.slice(0, 3).map((f, i) => ({ id: `t${i}`, kernel: f.url })),
        { id: "h", kernel: files[3].url, initrd: [{ url: initrd.url, sha256: initrd.sha256 }] },
      ]);
      await bed.start();

      // the generated menus hand out pypxe's names, never the origin
      const menu = await (await fetch(bed.httpUrl("boot.http.ipxe"))).text();
      for (const f of [...files, initrd]) {
        assert.match(f.name, /^remote\/[0-9a-f]{16}\/(vmlinuz|initrd\.img)$/);
        assert.ok(menu.includes(`\${pypxe-files}/${f.name}`), `boot.http.ipxe lacks ${f.name}:\n${menu}`);
      }
      assert.ok(!menu.includes(`:${bed.origin.port}/`), `boot.http.ipxe names the origin:\n${menu}`);
      assert.equal(bed.origin.requests().length, 0, "nothing is fetched before a client asks");

      const [curlTftp, atftp, hpa, http] = files;
      const t0 = performance.now();
      await ok(
        ["curl", "-sS", "--max-time", "60", "-o", `${bed.out}/1`, bed.tftpUrl(curlTftp.name)],
        "curl tftp",
      );
      const curlSecs = (performance.now() - t0) / 1000;
      assert.equal(await hashOf(`${bed.out}/1`), curlTftp.sha256, "curl tftp bytes");

      const a = await atftpGet(bed, atftp.name, `${bed.out}/2`);
      assert.equal(a.code, 0, a.stdout + a.stderr);
      assert.equal(await hashOf(`${bed.out}/2`), atftp.sha256, "atftp bytes");

      const h = await tftpHpa(bed, hpa.name, `${bed.out}/3`);
      assert.equal(h.code, 0, h.stdout + h.stderr);
      assert.doesNotMatch(h.stdout + h.stderr, /error/i);
      assert.equal(await hashOf(`${bed.out}/3`), hpa.sha256, "tftp-hpa bytes");

      for (const [f, out] of [[http, "4"], [initrd, "5"]] as const) {
        const got = await curlHttp(bed.httpUrl(f.name), `${bed.out}/${out}`);
        assert.equal(got.status, 200, got.stderr);
        assert.equal(await hashOf(`${bed.out}/${out}`), f.sha256, `HTTP ${f.path} bytes`);
      }

      // warm: a file fetched over TFTP is read over HTTP from the cache (and the reverse)
      const warmHttp = await curlHttp(bed.httpUrl(curlTftp.name), `${bed.out}/6`);
      assert.equal(warmHttp.status, 200);
      assert.equal(await hashOf(`${bed.out}/6`), curlTftp.sha256);
      await ok(
        ["curl", "-sS", "--max-time", "60", "-o", `${bed.out}/7`, bed.tftpUrl(http.name)],
        "warm tftp",
      );
      assert.equal(await hashOf(`${bed.out}/7`), http.sha256);

      for (const f of [...files, initrd]) {
        assert.equal(gets(bed.origin, f.path), 1, `origin GETs of ${f.path}`);
      }
      for (const f of [curlTftp, atftp, hpa]) {
        await bed.logs(new RegExp(` tftp .* ${re(f.name)} [\\d.]+ MB in `), `TFTP of ${f.path}`);
      }
      await bed.logs(new RegExp(` http .*/${re(http.name)} 200 ${http.size} `), "HTTP of the kernel");
      await bed.logs(/remote .*initrd\.img .* \(sha256 verified\)/, "the initrd's hash was checked");
      console.log(`cold 3 MiB over curl tftp (origin at 8 MB/s): ${curlSecs.toFixed(2)} s`);
    });
  },
}));

Deno.test(requires(NEEDS, {
  name: "remote served: a TFTP client of a cold file gets tsize from Content-Length before the download ends",
  async fn() {
    await withBed(async (bed) => {
      // 6 MiB at 1.5 MB/s: about 4 s upstream
      const slow = bed.put("/slow/vmlinuz", randomBytes(6 * MiB), { rate: 1.5e6 });
      await bed.menu([{ id: "s", kernel: slow.url }]);
      await bed.start();
      const t0 = performance.now();
      const probe = await tftpGet({
        port: bed.tftpPort,
        file: slow.name,
        options: [["tsize", "0"]],
        abortAfterOack: true,
        deadlineMs: 10_000,
      });
      const oackSecs = (performance.now() - t0) / 1000;
      assert.equal(probe.error, null);
      assert.deepEqual(probe.oack, [["tsize", String(slow.size)]]);
      assert.ok(oackSecs < 2, `the OACK came after ${oackSecs.toFixed(2)} s: tsize waited for the download`);

      // a real client on the same file while it still downloads: curl reports the tsize it got
      const r = await ok(
        ["curl", "-v", "-sS", "--max-time", "60", "-o", `${bed.out}/slow`, bed.tftpUrl(slow.name)],
        "curl tftp",
      );
      assert.match(r.stderr, new RegExp(`got option=\\(tsize\\) value=\\(${slow.size}\\)`));
      assert.equal(await hashOf(`${bed.out}/slow`), slow.sha256);
      // atftp with the tsize option, on the now warm file
      const a = await atftpGet(bed, slow.name, `${bed.out}/slow-atftp`, true);
      assert.equal(a.code, 0, a.stderr);
      assert.match(a.stdout + a.stderr, new RegExp(`received OACK <tsize: ${slow.size}, blksize: 1428\\b`));
      assert.equal(await hashOf(`${bed.out}/slow-atftp`), slow.sha256);
      assert.equal(gets(bed.origin, slow.path), 1, "one origin GET (the aborted probe did not stop it)");
      console.log(`cold tsize: OACK after ${oackSecs.toFixed(2)} s of a ~4 s download`);
    });
  },
}));

Deno.test(requires(NEEDS, {
  name: "remote served: 20 curl clients at once on a cold 100 MiB file over HTTP: one origin GET, " +
    "20 identical copies; /status.json shows the download meanwhile",
  async fn() {
    await withBed(async (bed) => {
      const big = bed.put("/images/big.iso", randomBytes(100 * MiB), { rate: 60e6 });
      await bed.menu([{ id: "big", kernel: big.url }]);
      await bed.start();
      const t0 = performance.now();
      const clients = Array.from(
        { length: 20 },
        () =>
          run([
            "bash",
            "-c",
            'set -o pipefail; curl -sS --fail --max-time 120 "$0" | sha256sum',
            bed.httpUrl(big.name),
          ], {
            timeoutMs: 150_000,
          }),
      );
      // while they read, the status page lists the download (its size once the origin's head is in)
      type Listed = { url: string; state: string; size: number | null; received: number };
      let seen: Listed | undefined;
      for (let i = 0; i < 100 && !(seen && seen.size !== null); i++) {
        const status = await (await fetch(`http://127.0.0.1:${bed.httpPort}/status.json`)).json();
        seen = (status.downloads ?? []).find((d: Listed) => d.url === big.url);
        if (!(seen && seen.size !== null)) await new Promise((r) => setTimeout(r, 20));
      }
      assert.ok(seen, "/status.json never listed the download");
      assert.equal(seen.state, "downloading");
      assert.equal(seen.size, big.size);
      assert.ok(seen.received < big.size);
      const results = await Promise.all(clients);
      const secs = (performance.now() - t0) / 1000;
      for (const [i, r] of results.entries()) {
        assert.equal(r.code, 0, `client ${i}: ${r.stderr}`);
        assert.equal(r.stdout.split(" ")[0], big.sha256, `client ${i} bytes`);
      }
      assert.equal(bed.origin.count(big.path), 1, "exactly one origin request");
      assert.equal(bed.origin.requests(big.path)[0].range, null);
      const done = await (await fetch(`http://127.0.0.1:${bed.httpPort}/status.json`)).json();
      assert.deepEqual(done.downloads, [], "no download left once complete");
      console.log(
        `20 cold HTTP clients of 100 MiB (origin at 60 MB/s, ~1.7 s): all done in ${secs.toFixed(1)} s`,
      );
    });
  },
}));

Deno.test(requires(NEEDS, {
  name: "remote served: offline with a warm cache: pypxe restarted on the same cache serves over TFTP and " +
    "HTTP with the origin gone, and logs that the copy is stale",
  async fn() {
    await withBed(async (bed) => {
      const kernel = bed.put("/k/vmlinuz", randomBytes(2 * MiB));
      const initrd = bed.put("/k/initrd.img", randomBytes(MiB));
      await bed.menu([{ id: "k", kernel: kernel.url, initrd: [{ url: initrd.url, sha256: initrd.sha256 }] }]);
      await bed.start(["--cache-revalidate", "0"]);
      for (const f of [kernel, initrd]) {
        assert.equal((await curlHttp(bed.httpUrl(f.name), `${bed.out}/warm`)).status, 200);
        assert.equal(await hashOf(`${bed.out}/warm`), f.sha256);
      }
      await bed.stop();
      await bed.origin.close();

      const pypxe = await bed.start(["--cache-revalidate", "0"]);
      for (const f of [kernel, initrd]) {
        const h = await curlHttp(bed.httpUrl(f.name), `${bed.out}/h`);
        assert.equal(h.status, 200, h.stderr);
        assert.equal(await hashOf(`${bed.out}/h`), f.sha256, `HTTP ${f.path} offline`);
        await ok(
          ["curl", "-sS", "--max-time", "30", "-o", `${bed.out}/t`, bed.tftpUrl(f.name)],
          "tftp offline",
        );
        assert.equal(await hashOf(`${bed.out}/t`), f.sha256, `TFTP ${f.path} offline`);
      }
      // the unpinned kernel was revalidated (interval 0) and could not be: served stale, said once
      await bed.logs(
        new RegExp(`WARN .*cannot revalidate ${re(kernel.url)} .*serving the cached copy fetched`),
        "the stale line",
      );
      const stale = pypxe.lines.filter((l) => l.includes("cannot revalidate"));
      assert.equal(stale.length, 1, `one stale line per file:\n${stale.join("\n")}`);
      // the pinned initrd is never revalidated; nothing was downloaded again
      assert.ok(!stale.some((l) => l.includes(initrd.url)));
      assert.ok(!pypxe.lines.some((l) => / fetching http/.test(l)), "the restarted pypxe fetched again");
      assert.equal(gets(bed.origin, kernel.path) + gets(bed.origin, initrd.path), 2);
    });
  },
}));

Deno.test(requires(NEEDS, {
  name: "remote served: a sha256 mismatch fails the HTTP and TFTP clients, is logged, never cached; " +
    "pypxe keeps serving",
  async fn() {
    await withBed(async (bed) => {
      const bad = bed.put("/bad/vmlinuz", randomBytes(2 * MiB), { rate: 8e6 });
      const good = bed.put("/good/vmlinuz", randomBytes(MiB));
      await bed.menu([
        { id: "bad", kernel: { url: bad.url, sha256: "0".repeat(64) } },
        { id: "good", kernel: good.url },
      ]);
      await bed.start();
      // HTTP: the body is cut before its last bytes (or 502 once the failure is known)
      const h = await curlHttp(bed.httpUrl(bad.name), `${bed.out}/bad-http`);
      assert.ok(h.code !== 0 || h.status === 502, `curl got the whole file: status ${h.status}`);
      const got = await Deno.stat(`${bed.out}/bad-http`).then((s) => s.size, () => 0);
      assert.ok(got < bad.size, `the client got all ${got} bytes of a file that failed its hash`);
      await bed.logs(
        new RegExp(`ERROR .*${re(bad.url)}: sha256 mismatch: expected 0{64} got ${bad.sha256}`),
        "the mismatch line",
      );
      // TFTP (another client, after the failure: the mismatch is remembered for a minute, so no new
      // download of a file known to be bad): an error naming the mismatch
      const t = await tftpHpa(bed, bad.name, `${bed.out}/bad-tftp`);
      assert.match(t.stdout + t.stderr, /Error code 0: Cannot fetch the file from its origin/);
      await bed.logs(
        new RegExp(`WARN .*tftp .*${re(bad.name)}' refused: .*sha256 mismatch`),
        "the TFTP refusal",
      );
      assert.equal(bed.origin.count(bad.path), 1, "the bad file was downloaded once");
      const c = await run([
        "curl",
        "-sS",
        "--max-time",
        "30",
        "-o",
        `${bed.out}/bad-curl`,
        bed.tftpUrl(bad.name),
      ]);
      assert.notEqual(c.code, 0, "curl tftp got a file that failed its hash");
      // never held
      const files = [];
      for await (const e of Deno.readDir(bed.cache)) if (/^[0-9a-f]{64}$/.test(e.name)) files.push(e.name);
      assert.deepEqual(files, []);
      // pypxe keeps serving
      assert.equal((await curlHttp(bed.httpUrl(good.name), `${bed.out}/good`)).status, 200);
      assert.equal(await hashOf(`${bed.out}/good`), good.sha256);
    });
  },
}));

Deno.test(requires(NEEDS, {
  name:
    "remote served: an origin 404 answers HTTP 502 and a TFTP error naming the origin; pypxe keeps serving",
  async fn() {
    await withBed(async (bed) => {
      const url = bed.origin.url("/gone/vmlinuz");
      const name = remoteName(url);
      const good = bed.put("/good/vmlinuz", randomBytes(MiB));
      await bed.menu([{ id: "gone", kernel: url }, { id: "good", kernel: good.url }]);
      await bed.start();
      const h = await curlHttp(bed.httpUrl(name), `${bed.out}/gone`);
      assert.equal(h.status, 502);
      assert.match(await Deno.readTextFile(`${bed.out}/gone`), /404/);
      const t = await tftpHpa(bed, name, `${bed.out}/gone-tftp`);
      assert.match(t.stdout + t.stderr, /Error code 0: Cannot fetch the file from its origin/);
      await bed.logs(
        new RegExp(`WARN .*tftp .*'${re(name)}' refused: .*${re(url)}.*404`),
        "the TFTP refusal",
      );
      assert.equal((await curlHttp(bed.httpUrl(good.name), `${bed.out}/good`)).status, 200);
      assert.equal(await hashOf(`${bed.out}/good`), good.sha256);
    });
  },
}));

Deno.test(requires(NEEDS, {
  name: "remote served: --cache-max evicts the least recently used file; pypxe cache list shows what is held",
  async fn() {
    await withBed(async (bed) => {
      const [a, b, c] = ["a", "b", "c"].map((n) => bed.put(`/${n}/image.iso`, randomBytes(40 * MiB)));
      await bed.menu([a, b, c].map((f, i) => ({ id: `e${i}`, kernel: f.url })));
      await bed.start(["--cache-max", "100M"]);
      const fetchOne = async (f: Remote) => {
        const r = await ok(
          [
            "bash",
            "-c",
            'set -o pipefail; curl -sS --fail --max-time 60 "$0" | sha256sum',
            bed.httpUrl(f.name),
          ],
          `GET ${f.path}`,
        );
        assert.equal(r.stdout.split(" ")[0], f.sha256, f.path);
      };
      // a, b, then a again: b is now the least recently used when c arrives
      await fetchOne(a);
      await fetchOne(b);
      await new Promise((r) => setTimeout(r, 200)); // distinct last-used times, and time to evict
      assert.ok(!bed.lines().includes(" evicted "), `two 40 MiB files fit in 100M:\n${bed.lines()}`);
      await fetchOne(a);
      assert.equal(gets(bed.origin, a.path), 1, "a was not served from the cache the second time");
      await fetchOne(c);
      await bed.logs(new RegExp(`evicted ${re(b.url)} \\(.*least recently used\\)`), "the eviction");
      assert.ok(!bed.lines().includes(`evicted ${a.url}`), "a (used again) was evicted");
      await bed.stop();

      const list = await runPypxeOnce(["cache", "list", "--cache-dir", bed.cache, "--cache-max", "100M"]);
      assert.equal(list.code, 0, list.stderr);
      assert.match(list.stdout, /^ *SIZE +AGE +HASH +STATE +URL$/m);
      for (const f of [a, c]) assert.match(list.stdout, new RegExp(`complete +${re(f.url)}$`, "m"));
      assert.ok(!list.stdout.includes(b.url), `b is still listed:\n${list.stdout}`);
      assert.match(list.stdout, /cache .*: 2 file\(s\)/);
      // served again from the origin when asked for
      await bed.start(["--cache-max", "100M"]);
      await fetchOne(b);
      assert.deepEqual([a, b, c].map((f) => gets(bed.origin, f.path)), [1, 2, 1]);
    });
  },
}));

Deno.test(requires(NEEDS, {
  name: "remote served: pypxe cache fetch pre-fetches what menu.json names; pypxe then serves it with the " +
    "origin down",
  async fn() {
    await withBed(async (bed) => {
      const kernel = bed.put("/usb/vmlinuz", randomBytes(3 * MiB));
      const initrd = bed.put("/usb/initrd.img", randomBytes(MiB));
      await bed.menu([{
        id: "usb",
        kernel: kernel.url,
        initrd: [{ url: initrd.url, sha256: initrd.sha256 }],
      }]);
      const flags = ["--netboot-dir", bed.tree, "--cache-dir", bed.cache];
      const fetched = await runPypxeOnce(["cache", "fetch", ...flags], { timeoutMs: 60_000 });
      assert.equal(fetched.code, 0, fetched.stdout + fetched.stderr);
      for (const f of [kernel, initrd]) {
        assert.match(fetched.stdout, new RegExp(`^fetched .* ${re(f.url)}$`, "m"));
      }
      assert.match(fetched.stdout, /: 2 of 2 files held$/m);
      const list = await runPypxeOnce(["cache", "list", "--cache-dir", bed.cache]);
      assert.match(list.stdout, new RegExp(`verified +complete +${re(initrd.url)}$`, "m"));
      assert.match(list.stdout, new RegExp(`complete +${re(kernel.url)}$`, "m"));
      await bed.origin.close();

      await bed.start();
      for (const f of [kernel, initrd]) {
        await ok(
          ["curl", "-sS", "--max-time", "30", "-o", `${bed.out}/t`, bed.tftpUrl(f.name)],
          "tftp offline",
        );
        assert.equal(await hashOf(`${bed.out}/t`), f.sha256, `TFTP ${f.path}`);
        assert.equal((await curlHttp(bed.httpUrl(f.name), `${bed.out}/h`)).status, 200);
        assert.equal(await hashOf(`${bed.out}/h`), f.sha256, `HTTP ${f.path}`);
      }
      assert.ok(!bed.lines().includes(" fetching http"), "pypxe downloaded again");
      assert.deepEqual([gets(bed.origin, kernel.path), gets(bed.origin, initrd.path)], [1, 1]);
    });
  },
}));

Deno.test(requires(NEEDS, {
  name: 'remote served: {"url": "ftp://..."} in menu.json: the menus carry a notice naming the entry',
  async fn() {
    await withBed(async (bed) => {
      const good = bed.put("/good/vmlinuz", randomBytes(1024));
      await bed.menu([{ id: "good", kernel: good.url }, {
        id: "ftp",
        kernel: { url: "ftp://mirror/vmlinuz" },
      }]);
      await bed.start();
      const menu = await (await fetch(bed.httpUrl("boot.http.ipxe"))).text();
      const notice = /^# NOTE: (.*)$/m.exec(menu)?.[1] ?? "";
      assert.match(
        notice,
        /menu\.json: entries\[1\]\.kernel.*"ftp:\/\/mirror\/vmlinuz" is not an http:\/\/ or https:\/\/ URL/,
      );
      assert.match(menu, /^item --gap menu\.json: entries\[1\]\.kernel/m);
      const grub = await (await fetch(bed.httpUrl("grub/grub.cfg"))).text();
      assert.match(grub, /entries\[1\]\.kernel.*ftp:\/\/mirror\/vmlinuz/);
      assert.equal(bed.origin.requests().length, 0);
    });
  },
}));

Deno.test(requires(NEEDS, {
  name: "remote served: pypxe cache list run while pypxe downloads leaves the download alone",
  async fn() {
    await withBed(async (bed) => {
      // 8 MiB at 4 MB/s: about 2 s upstream, `cache list` runs in the middle
      const iso = bed.put("/live/image.iso", randomBytes(8 * MiB), { rate: 4e6 });
      await bed.menu([{ id: "live", kernel: iso.url }]);
      await bed.start();
      const client = run(
        [
          "bash",
          "-c",
          'set -o pipefail; curl -sS --fail --max-time 60 "$0" | sha256sum',
          bed.httpUrl(iso.name),
        ],
        { timeoutMs: 70_000 },
      );
      await bed.logs(new RegExp(`fetching ${re(iso.url)}`), "the download start");
      await new Promise((r) => setTimeout(r, 300));
      const list = await runPypxeOnce(["cache", "list", "--cache-dir", bed.cache]);
      assert.equal(list.code, 0, list.stderr);
      const got = await client;
      assert.equal(got.code, 0, `the client's download broke when cache list ran: ${got.stderr}`);
      assert.equal(got.stdout.split(" ")[0], iso.sha256);
      await bed.logs(new RegExp(`remote ${re(iso.url)} [\\d.]+ MB in `), "the download's end");
      await bed.stop();
      const after = await runPypxeOnce(["cache", "list", "--cache-dir", bed.cache]);
      assert.match(after.stdout, new RegExp(`complete +${re(iso.url)}$`, "m"), "the file is not held");
      assert.ok(!bed.lines().includes("download failed"), bed.lines());
    });
  },
}));
