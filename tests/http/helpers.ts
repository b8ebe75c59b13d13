/** Shared helpers of the HTTP tests: temp netboot trees, a started server, curl, raw TCP, sha256. */
import { type BootEvent, BootEvents } from "../../src/events.ts";
import { HttpServer, type HttpServerOptions } from "../../src/http/server.ts";
import { NetbootFs } from "../../src/netboot/fs.ts";

/** Deterministic pseudo-random bytes (xorshift), so failures reproduce. */
export function pseudoRandom(size: number, seed = 1): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(size);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < size; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 255;
  }
  return out;
}

export { sha256 } from "../helpers/hash.ts";

/** A running server on 127.0.0.1 over a temp tree, with the files it was given. */
export interface Fixture {
  server: HttpServer;
  port: number;
  base: string;
  overlay: string;
  embedded: string;
  events: BootEvent[];
  /** Stops the server and removes the temp dirs. */
  close(): Promise<void>;
}

/** Creates overlay/embedded temp trees with `files` (path -> bytes or text) and starts a server. */
export async function startFixture(
  files: Record<string, Uint8Array<ArrayBuffer> | string>,
  embeddedFiles: Record<string, Uint8Array<ArrayBuffer> | string> = {},
  opts: Partial<HttpServerOptions> = {},
): Promise<Fixture> {
  const overlay = await Deno.makeTempDir({ prefix: "pypxe-http-overlay-" });
  const embedded = await Deno.makeTempDir({ prefix: "pypxe-http-embedded-" });
  const write = async (root: string, tree: Record<string, Uint8Array<ArrayBuffer> | string>) => {
    for (const [name, content] of Object.entries(tree)) {
      const path = `${root}/${name}`;
      await Deno.mkdir(path.slice(0, path.lastIndexOf("/")), { recursive: true });
      if (typeof content === "string") await Deno.writeTextFile(path, content);
      else await Deno.writeFile(path, content);
    }
  };
  await write(overlay, files);
  await write(embedded, embeddedFiles);
  const netboot = await NetbootFs.open({ overlay, embedded });
  const bootEvents = new BootEvents();
  const events: BootEvent[] = [];
  bootEvents.subscribe((e) => events.push(e));
  const server = new HttpServer({ host: "127.0.0.1", port: 0, netboot, events: bootEvents, ...opts });
  await server.start();
  const port = server.port;
  return {
    server,
    port,
    base: `http://127.0.0.1:${port}`,
    overlay,
    embedded,
    events,
    async close() {
      await server.stop();
      await Deno.remove(overlay, { recursive: true });
      await Deno.remove(embedded, { recursive: true });
    },
  };
}

/** The result of one curl run. */
export interface CurlResult {
  code: number;
  status: number;
  headers: Headers;
  body: Uint8Array<ArrayBuffer>;
  stderr: string;
  /** curl's `-w` output after the status code. */
  extra: string;
}

/** Runs curl with `args` (URL included); body and headers are captured through temp files. */
export async function curl(args: string[], writeOut = ""): Promise<CurlResult> {
  const dir = await Deno.makeTempDir({ prefix: "pypxe-curl-" });
  try {
    const out = await new Deno.Command("curl", {
      args: [
        "-sS",
        "--max-time",
        "30",
        "-o",
        `${dir}/body`,
        "-D",
        `${dir}/headers`,
        "-w",
        `%{http_code}${writeOut}`,
        ...args,
      ],
      stdout: "piped",
      stderr: "piped",
    }).output();
    const text = new TextDecoder().decode(out.stdout);
    let body = new Uint8Array(0);
    try {
      body = await Deno.readFile(`${dir}/body`);
    } catch (err) {
      if (!(err instanceof Deno.errors.NotFound)) throw err;
    }
    let rawHeaders = "";
    try {
      rawHeaders = await Deno.readTextFile(`${dir}/headers`);
    } catch (err) {
      if (!(err instanceof Deno.errors.NotFound)) throw err;
    }
    return {
      code: out.code,
      status: Number(text.slice(0, 3)),
      headers: parseHeaders(lastResponseHead(rawHeaders)),
      body,
      stderr: new TextDecoder().decode(out.stderr),
      extra: text.slice(3),
    };
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

function lastResponseHead(raw: string): string {
  const heads = raw.split(/\r\n\r\n/).filter((h) => h.startsWith("HTTP/"));
  return heads.at(-1) ?? "";
}

/** Parses a response head (status line + header lines) into Headers. */
export function parseHeaders(head: string): Headers {
  const headers = new Headers();
  for (const line of head.split("\r\n").slice(1)) {
    const colon = line.indexOf(":");
    if (colon > 0) headers.append(line.slice(0, colon).trim(), line.slice(colon + 1).trim());
  }
  return headers;
}

/** A raw HTTP/1.1 exchange over TCP: sends `chunks` (with `gapMs` between) and reads until close. */
export async function rawRequest(
  port: number,
  chunks: (string | Uint8Array)[],
  opts: { gapMs?: number; timeoutMs?: number; maxBytes?: number } = {},
): Promise<{ text: string; bytes: Uint8Array; timedOut: boolean }> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  const received: Uint8Array[] = [];
  let total = 0;
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    try {
      conn.close();
    } catch (err) {
      if (!(err instanceof Deno.errors.BadResource)) throw err;
    }
  }, opts.timeoutMs ?? 10_000);
  try {
    for (const [i, chunk] of chunks.entries()) {
      if (i > 0 && opts.gapMs) await new Promise((r) => setTimeout(r, opts.gapMs));
      const bytes = typeof chunk === "string" ? new TextEncoder().encode(chunk) : chunk;
      let off = 0;
      while (off < bytes.length) off += await conn.write(bytes.subarray(off));
    }
    const buf = new Uint8Array(65536);
    for (let i = 0; i < 100_000 && total < (opts.maxBytes ?? Infinity); i++) {
      const n = await conn.read(buf).catch((err) => {
        if (timedOut || err instanceof Deno.errors.ConnectionReset) return null;
        throw err;
      });
      if (n === null) break;
      received.push(buf.slice(0, n));
      total += n;
    }
  } finally {
    clearTimeout(timer);
    if (!timedOut) conn.close();
  }
  const bytes = new Uint8Array(total);
  let off = 0;
  for (const part of received) {
    bytes.set(part, off);
    off += part.length;
  }
  return { text: new TextDecoder("latin1").decode(bytes), bytes, timedOut };
}

/** Sanitizer options for server tests. */
export const SANITIZE = { sanitizeResources: true, sanitizeOps: true } as const;
