/**
 * Shared helpers of the HTTP tests: curl, raw TCP, sha256, seeded bytes. The server over a temp tree is
 * `serveHttpTree` (tests/helpers/servers.ts).
 */
import { run } from "../helpers/run.ts";

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
    const out = await run([
      "curl",
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
    ]);
    const text = out.stdout;
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
      stderr: out.stderr,
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
