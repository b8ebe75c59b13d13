/**
 * Per-machine boot as a service of the server: it reloads `--machines DIR` on SIGHUP, serves the machine
 * API when `--api-listen` is set, and saves the store on stop. The {@linkcode MachineBoot} itself is
 * opened before the services (DHCP and the netboot layer use it), so a broken profile stops start-up.
 * @module
 */
import type { Service, ServiceFactory } from "../server.ts";
import { MachineApiServer, readTokenFile } from "./api.ts";
import type { MachineBoot } from "./runtime.ts";

/** The `machines` service around an opened {@linkcode MachineBoot}. */
export class MachinesService implements Service {
  readonly name = "machines";
  readonly #machines: MachineBoot;
  readonly #listen: string;
  readonly #tokenFile: string;
  #api: MachineApiServer | null = null;

  constructor(machines: MachineBoot, opts: { listen: string; tokenFile: string }) {
    this.#machines = machines;
    this.#listen = opts.listen;
    this.#tokenFile = opts.tokenFile;
  }

  async start(): Promise<void> {
    if (this.#listen === "") return;
    const token = this.#tokenFile === "" ? null : await readTokenFile(this.#tokenFile);
    const api = new MachineApiServer({ listen: this.#listen, registry: this.#machines, token });
    await api.start();
    this.#api = api;
  }

  async stop(): Promise<void> {
    await this.#api?.stop();
    this.#api = null;
    await this.#machines.close();
  }

  endpoints(): string[] {
    if (this.#api === null) return [];
    const host = this.#listen.replace(/:\d+$/, "");
    return [`TCP ${host}:${this.#api.port} (machine API${this.#tokenFile === "" ? ", read-only" : ""})`];
  }

  reload(): Promise<void> {
    return this.#machines.reload();
  }
}

/** The machines service when per-machine boot or the machine API is configured; else null. */
export const createMachinesService: ServiceFactory = (ctx) => {
  if (ctx.machines === undefined) return null;
  return new MachinesService(ctx.machines, {
    listen: ctx.config.API_LISTEN,
    tokenFile: ctx.config.API_TOKEN_FILE,
  });
};
