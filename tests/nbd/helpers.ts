/**
 * Shared helpers for the NBD tests: seeded data, temporary images, a server on a random loopback port,
 * external tools (libnbd-bin, qemu-utils) and a small raw NBD client for protocol-level checks.
 * @module
 */
import { NbdServer, type NbdServerOptions } from "../../src/nbd/server.ts";
import {
  decodeInfoItem,
  decodeOptionReplyHeader,
  decodeServerGreeting,
  decodeSimpleReply,
  encodeClientFlags,
  encodeInfoRequest,
  encodeOption,
  encodeRequest,
  NbdClientFlag,
  NbdOpt,
  NbdRep,
  type NbdRequest,
} from "../../src/nbd/protocol.ts";

import { xorshift } from "../helpers/random.ts";
export { type Rng, xorshift } from "../helpers/random.ts";
export { sha256 } from "../helpers/hash.ts";

/** Deterministic pseudo-random bytes (fast: 32 bits per step). */
export function seededBytes(n: number, seed: number): Uint8Array {
  const out = new Uint8Array(n);
  const words = new Uint32Array(out.buffer, 0, Math.floor(n / 4));
  const rng = xorshift(seed);
  for (let i = 0; i < words.length; i++) words[i] = rng.next();
  for (let i = words.length * 4; i < n; i++) out[i] = rng.next() & 255;
  return out;
}

/** Writes an image of `size` seeded bytes in a new temp dir; returns its path and contents. */
export async function makeImage(
  opts: { size: number; seed: number; name?: string; dir?: string },
): Promise<{ path: string; dir: string; data: Uint8Array }> {
  const dir = opts.dir ?? await Deno.makeTempDir({ prefix: "pypxe-nbd-test-" });
  const data = seededBytes(opts.size, opts.seed);
  const path = `${dir}/${opts.name ?? "disk.img"}`;
  await Deno.writeFile(path, data);
  return { path, dir, data };
}

/** Starts a server on 127.0.0.1 and a random port, runs `fn`, always stops it. */
export async function withServer(
  opts: Omit<NbdServerOptions, "hostname" | "port">,
  fn: (server: NbdServer, url: string) => Promise<void>,
): Promise<void> {
  const server = new NbdServer({ handshakeTimeoutMs: 5000, ...opts, hostname: "127.0.0.1", port: 0 });
  await server.start();
  try {
    await fn(server, `nbd://127.0.0.1:${server.port}`);
  } finally {
    await server.stop();
  }
}

/** Result of an external command. */
export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs a command and captures its output. */
export async function run(cmd: string, args: string[]): Promise<RunResult> {
  const out = await new Deno.Command(cmd, { args, stdout: "piped", stderr: "piped", stdin: "null" }).output();
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

/** Tools the integration tests drive. */
export const TOOLS = ["nbdinfo", "nbdcopy", "qemu-img", "qemu-io"];

/** A bare-bones NBD client speaking the wire protocol directly. */
export class RawClient {
  readonly conn: Deno.TcpConn;
  #buf = new Uint8Array(0);

  private constructor(conn: Deno.TcpConn) {
    this.conn = conn;
  }

  /** Connects to 127.0.0.1:`port`. */
  static async connect(port: number): Promise<RawClient> {
    return new RawClient(await Deno.connect({ hostname: "127.0.0.1", port }));
  }

  /** Reads exactly `n` bytes, or null on EOF. */
  async readExact(n: number): Promise<Uint8Array | null> {
    while (this.#buf.length < n) {
      const chunk = new Uint8Array(Math.max(65536, n - this.#buf.length));
      let got: number | null;
      try {
        got = await this.conn.read(chunk);
      } catch {
        got = null;
      }
      if (got === null) return null;
      const joined = new Uint8Array(this.#buf.length + got);
      joined.set(this.#buf);
      joined.set(chunk.subarray(0, got), this.#buf.length);
      this.#buf = joined;
    }
    const out = this.#buf.slice(0, n);
    this.#buf = this.#buf.slice(n);
    return out;
  }

  /** Writes all bytes. */
  async send(data: Uint8Array): Promise<void> {
    let done = 0;
    while (done < data.length) done += await this.conn.write(data.subarray(done));
  }

  /** Reads the greeting and sends client flags. */
  async greet(flags = NbdClientFlag.C_FIXED_NEWSTYLE | NbdClientFlag.C_NO_ZEROES): Promise<number> {
    const greeting = await this.readExact(18);
    if (greeting === null) throw new Error("no greeting");
    await this.send(encodeClientFlags(flags));
    return decodeServerGreeting(greeting).flags;
  }

  /** Reads one option reply: header fields and data. */
  async optionReply(): Promise<{ option: number; type: number; data: Uint8Array }> {
    const head = await this.readExact(20);
    if (head === null) throw new Error("connection closed before an option reply");
    const h = decodeOptionReplyHeader(head);
    const data = await this.readExact(h.length);
    if (data === null) throw new Error("connection closed inside an option reply");
    return { option: h.option, type: h.type, data };
  }

  /** Sends NBD_OPT_GO for `name`; returns size and flags, or throws with the error reply type. */
  async go(name = ""): Promise<{ size: number; flags: number }> {
    await this.send(encodeOption(NbdOpt.GO, encodeInfoRequest({ name, infos: [] })));
    let size = -1;
    let flags = -1;
    for (let i = 0; i < 10; i++) {
      const r = await this.optionReply();
      if (r.type === NbdRep.ACK) return { size, flags };
      if (r.type !== NbdRep.INFO) throw new Error(`GO failed with reply 0x${r.type.toString(16)}`);
      const item = decodeInfoItem(r.data);
      if ("size" in item) [size, flags] = [item.size, item.flags];
    }
    throw new Error("too many INFO replies");
  }

  /** Sends a request (with its payload for writes). */
  async request(req: NbdRequest, payload?: Uint8Array): Promise<void> {
    if (payload === undefined) return await this.send(encodeRequest(req));
    const both = new Uint8Array(28 + payload.length);
    both.set(encodeRequest(req));
    both.set(payload, 28);
    await this.send(both);
  }

  /** Reads a simple reply, and `dataLength` bytes of data when it succeeded. */
  async reply(dataLength = 0): Promise<{ error: number; handle: bigint; data: Uint8Array } | null> {
    const head = await this.readExact(16);
    if (head === null) return null;
    const { error, handle } = decodeSimpleReply(head);
    if (error !== 0 || dataLength === 0) return { error, handle, data: new Uint8Array(0) };
    const data = await this.readExact(dataLength);
    if (data === null) throw new Error("connection closed inside read data");
    return { error, handle, data };
  }

  /** True when the server closed the connection (reads EOF within `ms`). */
  async closedByServer(ms = 3000): Promise<boolean> {
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      this.close();
    }, ms);
    try {
      for (let i = 0; i < 1000; i++) {
        const b = await this.readExact(1);
        if (b === null) return !timedOut;
      }
      return false;
    } finally {
      clearTimeout(timer);
    }
  }

  /** Closes the connection (idempotent). */
  close(): void {
    try {
      this.conn.close();
    } catch {
      // already closed
    }
  }
}

/** Polls `cond` every 20 ms up to `ms`. */
export async function waitFor(cond: () => boolean, ms = 3000): Promise<boolean> {
  for (let waited = 0; waited < ms; waited += 20) {
    if (cond()) return true;
    await new Promise((r) => setTimeout(r, 20));
  }
  return cond();
}
