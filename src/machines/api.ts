/**
 * The machine API (`--api-listen ADDR:PORT`): the inventory and one-shot next boots over HTTP/JSON.
 *
 * - `GET /api/machines` → `{"machines": [MACHINE...]}`, `GET /api/machines/MAC` → MACHINE (404 unknown)
 * - `PUT /api/machines/MAC/next` `{"profile": "NAME"}` → MACHINE: NAME boots once, on the next boot
 * - `DELETE /api/machines/MAC/next` → MACHINE: the pending one-shot is dropped
 * - `GET /api/profiles` → `{"profiles": ["NAME"...]}`
 *
 * MACHINE is the inventory entry (store.ts `MachineView`) plus `profile`: what it would boot now (null:
 * the generated menu). Writes need `Authorization: Bearer TOKEN` (`--api-token-file`); with no token
 * configured they are refused (403). Errors are `{"error": "reason"}` with 400/401/403/404/405/413.
 * The router ({@linkcode routeApi}) is pure; {@linkcode MachineApiServer} puts it on a socket.
 * @module
 */
import { timingSafeEqual } from "node:crypto";
import { getLogger } from "@logtape/logtape";
import { errText } from "../errors.ts";
import { HttpConnections, type IncomingRequest, rawResponse, type Reply } from "../http/connections.ts";
import { LogThrottle } from "../log_throttle.ts";
import { describeBindError } from "../net.ts";
import { machineMac, MachinesError } from "./keys.ts";
import type { MachineView } from "./store.ts";

const log = getLogger(["pypxe", "api"]);

/** An inventory entry as the API shows it. */
export interface MachineApiView extends MachineView {
  /** The profile the machine would boot now (one-shot, group or boot API), null for the menu. */
  readonly profile: string | null;
}

/** What the API reads and changes. */
export interface MachineRegistry {
  list(): MachineApiView[];
  get(mac: string): MachineApiView | null;
  /** Throws {@linkcode MachinesError} for an unknown profile. */
  setNext(mac: string, profile: string): MachineApiView;
  clearNext(mac: string): MachineApiView;
  profileNames(): string[];
}

/** A request as the router sees it. */
export interface ApiRequest {
  readonly method: string;
  /** Path without the query. */
  readonly path: string;
  readonly authorization: string | null;
  /** The body as text (writes only). */
  readonly body: () => Promise<string>;
}

/** The router's answer. */
export interface ApiAnswer {
  readonly status: number;
  readonly body: unknown;
}

/** The largest request body read. */
export const MAX_API_BODY = 64 * 1024;

const fail = (status: number, error: string): ApiAnswer => ({ status, body: { error } });

/** True when `header` carries exactly `token` (compared in constant time). */
export function bearerMatches(header: string | null, token: string): boolean {
  const m = header === null ? null : /^Bearer\s+(\S+)\s*$/i.exec(header);
  if (m === null) return false;
  const a = new TextEncoder().encode(m[1]);
  const b = new TextEncoder().encode(token);
  // length differs: still compare something of equal length so timing says nothing about the token
  return a.length === b.length ? timingSafeEqual(a, b) : (timingSafeEqual(b, b), false);
}

/** Answers one API request. `token` null: writes are refused. */
export async function routeApi(
  req: ApiRequest,
  registry: MachineRegistry,
  token: string | null,
): Promise<ApiAnswer> {
  const parts = req.path.split("/").filter((p) => p !== "");
  if (parts[0] !== "api") return fail(404, `no such endpoint ${req.path}`);
  if (parts.length === 2 && parts[1] === "profiles") {
    if (req.method !== "GET") return fail(405, "use GET");
    return { status: 200, body: { profiles: registry.profileNames() } };
  }
  if (parts[1] !== "machines" || parts.length > 4 || (parts.length === 4 && parts[3] !== "next")) {
    return fail(404, `no such endpoint ${req.path}`);
  }
  if (parts.length === 2) {
    if (req.method !== "GET") return fail(405, "use GET");
    return { status: 200, body: { machines: registry.list() } };
  }
  const mac = machineMac(decodeURIComponent(parts[2]));
  if (mac === null) return fail(400, `${JSON.stringify(parts[2])} is not a MAC address`);
  if (parts.length === 3) {
    if (req.method !== "GET") return fail(405, "use GET");
    const machine = registry.get(mac);
    return machine === null ? fail(404, `machine ${mac} has not been seen`) : { status: 200, body: machine };
  }
  if (req.method !== "PUT" && req.method !== "DELETE") return fail(405, "use PUT or DELETE");
  if (token === null) return fail(403, "writes are disabled: start pypxe with --api-token-file FILE");
  if (!bearerMatches(req.authorization, token)) return fail(401, "missing or wrong bearer token");
  if (req.method === "DELETE") return { status: 200, body: registry.clearNext(mac) };
  let data: unknown;
  try {
    const text = await req.body();
    if (text.length > MAX_API_BODY) return fail(413, `body over ${MAX_API_BODY} bytes`);
    data = JSON.parse(text);
  } catch (err) {
    return fail(400, `body is not valid JSON (${errText(err)})`);
  }
  const profile = (data as { profile?: unknown } | null)?.profile;
  if (typeof data !== "object" || data === null || Array.isArray(data) || typeof profile !== "string") {
    return fail(400, 'expected {"profile": "NAME"}');
  }
  const extra = Object.keys(data).filter((k) => k !== "profile");
  if (extra.length > 0) return fail(400, `unknown key ${JSON.stringify(extra[0])} (only "profile")`);
  try {
    return { status: 200, body: registry.setNext(mac, profile) };
  } catch (err) {
    if (err instanceof MachinesError) return fail(400, err.message);
    throw err;
  }
}

/** Options of {@linkcode MachineApiServer}. */
export interface MachineApiOptions {
  /** `ADDR:PORT` (port 0 picks one). */
  readonly listen: string;
  readonly registry: MachineRegistry;
  /** Bearer token for writes; null refuses them. */
  readonly token: string | null;
}

/** The machine API on its own TCP listener. */
export class MachineApiServer {
  readonly #opts: MachineApiOptions;
  #server: HttpConnections | null = null;
  #throttle: LogThrottle | null = null;

  constructor(opts: MachineApiOptions) {
    this.#opts = opts;
  }

  /** The bound port. */
  get port(): number {
    return this.#server?.port ?? 0;
  }

  /** Binds the listener; rejects with one line when the address is busy or not local. */
  start(): Promise<void> {
    const m = /^(.+):(\d+)$/.exec(this.#opts.listen);
    if (m === null) return Promise.reject(new Error(`--api-listen ${this.#opts.listen}: expected ADDR:PORT`));
    const host = m[1].replace(/^\[(.*)\]$/, "$1");
    const port = Number(m[2]);
    const throttle = new LogThrottle({ log });
    const server = new HttpConnections({
      hostname: host,
      port,
      handler: (req) => this.#handle(req),
      maxConnections: 64,
      headerTimeoutMs: 10_000,
      idleTimeoutMs: 30_000,
      writeTimeoutMs: 30_000,
      maxBodyBytes: MAX_API_BODY,
      onError: (err) => {
        log.error("internal error: {err}", { err: errText(err) });
        return json(500, { error: "internal error" });
      },
      log: throttle,
    });
    try {
      server.start();
    } catch (err) {
      throttle.close();
      return Promise.reject(new Error(describeBindError(err, { service: "api", proto: "TCP", host, port })));
    }
    this.#server = server;
    this.#throttle = throttle;
    return Promise.resolve();
  }

  async stop(): Promise<void> {
    const server = this.#server;
    this.#server = null;
    await server?.stop(1000);
    this.#throttle?.close();
    this.#throttle = null;
  }

  async #handle(req: IncomingRequest): Promise<Reply> {
    const path = req.target.replace(/[?#].*$/, "");
    const answer = await routeApi(
      {
        method: req.method,
        path,
        authorization: req.headers.get("authorization"),
        body: () => req.request().text(),
      },
      this.#opts.registry,
      this.#opts.token,
    );
    // never log the token: method, path and status only
    const level = answer.status < 400 ? "info" : "warn";
    if (req.method !== "GET" || answer.status >= 400) {
      log[level]("{method} {path} {status}", { method: req.method, path, status: answer.status });
    }
    return json(answer.status, answer.body);
  }
}

function json(status: number, body: unknown): Reply {
  return rawResponse(
    status,
    [["content-type", "application/json"], ["cache-control", "no-store"]],
    new TextEncoder().encode(JSON.stringify(body) + "\n"),
  );
}

/** Reads the token file: its first line, trimmed; an empty or unreadable file is an error naming it. */
export async function readTokenFile(path: string): Promise<string> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (err) {
    throw new MachinesError(`--api-token-file ${path}: cannot read (${errText(err)})`);
  }
  const token = text.split("\n")[0].trim();
  if (token.length < 16) {
    throw new MachinesError(`--api-token-file ${path}: the token must be at least 16 characters`);
  }
  return token;
}
