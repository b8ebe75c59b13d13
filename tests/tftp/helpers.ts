/**
 * Shared helpers of the TFTP tests: fixtures, a served temp tree, sha256, commands with a timeout.
 * @module
 */
import { type BootEvent, BootEvents } from "../../src/events.ts";
import { NetbootFs } from "../../src/netboot/fs.ts";
import { TftpServer, type TftpServerOptions } from "../../src/tftp/server.ts";

export { fixturesDir } from "../helpers/fixtures.ts";
import { fixturesDir } from "../helpers/fixtures.ts";

/** Reads one TFTP fixture by file name. */
export function readFixture(name: string): Uint8Array {
  return Deno.readFileSync(fixturesDir() + "tftp/" + name);
}

export { sha256, sha256File } from "../helpers/hash.ts";

/** Deterministic pseudo-random generator (mulberry32). */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Writes `size` deterministic pseudo-random bytes to `path` in 1 MiB pieces. */
export async function writeRandomFile(path: string, size: number, seed = 1): Promise<void> {
  const next = prng(seed);
  using file = await Deno.open(path, { write: true, create: true, truncate: true });
  const piece = new Uint8Array(1 << 20);
  const words = new Uint32Array(piece.buffer);
  for (let done = 0; done < size;) {
    for (let i = 0; i < words.length; i++) words[i] = (next() * 4294967296) >>> 0;
    const n = Math.min(piece.length, size - done);
    let written = 0;
    while (written < n) written += await file.write(piece.subarray(written, n));
    done += n;
  }
}

/** Result of {@linkcode run}. */
export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
  timedOut: boolean;
}

/** Runs a command with a timeout (the child is killed when it expires). */
export async function run(
  cmd: string[],
  opts: { timeoutMs?: number; cwd?: string } = {},
): Promise<RunResult> {
  const child = new Deno.Command(cmd[0], {
    args: cmd.slice(1),
    stdout: "piped",
    stderr: "piped",
    stdin: "null",
    cwd: opts.cwd,
  }).spawn();
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    try {
      child.kill("SIGKILL");
    } catch { /* already gone */ }
  }, opts.timeoutMs ?? 60_000);
  try {
    const out = await child.output();
    const dec = new TextDecoder();
    return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr), timedOut };
  } finally {
    clearTimeout(timer);
  }
}

/** A free UDP port on 127.0.0.1 (bound then released). */
export function freeUdpPort(): number {
  const sock = Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port: 0 });
  const port = (sock.addr as Deno.NetAddr).port;
  sock.close();
  return port;
}

/** A running server over a temp tree, with its collected events. */
export interface ServedTree {
  server: TftpServer;
  port: number;
  dir: string;
  events: BootEvent[];
  /** Stops the server and removes the tree. */
  close(): Promise<void>;
}

/** Creates a temp tree with `files`, serves it on 127.0.0.1 (port 0) and returns the handle. */
export async function serveTree(
  files: Record<string, Uint8Array | string>,
  opts: Partial<TftpServerOptions> = {},
): Promise<ServedTree> {
  const dir = await Deno.makeTempDir({ prefix: "pypxe-tftp-" });
  const root = `${dir}/root`;
  await Deno.mkdir(root);
  for (const [name, content] of Object.entries(files)) {
    const path = `${root}/${name}`;
    await Deno.mkdir(path.slice(0, path.lastIndexOf("/")), { recursive: true });
    if (typeof content === "string") await Deno.writeTextFile(path, content);
    else await Deno.writeFile(path, content);
  }
  const netboot = await NetbootFs.open({ overlay: root, embedded: `${dir}/no-embedded` });
  const events = new BootEvents();
  const seen: BootEvent[] = [];
  events.subscribe((e) => seen.push(e));
  const server = new TftpServer({ host: "127.0.0.1", port: 0, netboot, events, ...opts });
  await server.start();
  return {
    server,
    port: server.port,
    dir,
    events: seen,
    async close() {
      await server.stop();
      await Deno.remove(dir, { recursive: true });
    },
  };
}

/** Waits until `cond()` holds, polling every 10 ms, at most `ms`. */
export async function waitFor(cond: () => boolean, ms = 5000): Promise<boolean> {
  const end = performance.now() + ms;
  while (performance.now() < end) {
    if (cond()) return true;
    await new Promise((r) => setTimeout(r, 10));
  }
  return cond();
}
