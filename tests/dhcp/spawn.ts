/** Starts tests/dhcp/serve_dhcp.ts as a child process (optionally inside a network namespace). */
import type { DhcpEvent } from "../../src/events.ts";

const SCRIPT = new URL("./serve_dhcp.ts", import.meta.url).pathname;

/** A running server process. */
export interface ServerProcess {
  child: Deno.ChildProcess;
  /** Everything printed on stdout so far. */
  stdout(): string;
  /** DHCP events printed so far. */
  events(): DhcpEvent[];
  /** Waits until stdout contains `text`; false after `ms`. */
  waitFor(text: string | RegExp, ms?: number): Promise<boolean>;
  /** Sends `signal` and waits for the exit; returns the status. */
  stop(signal?: Deno.Signal): Promise<Deno.CommandStatus>;
}

/** Spawns the server with `args` (the JSON options of serve_dhcp.ts); resolves once it prints "ready". */
export async function spawnServer(args: unknown, opts: { netns?: string } = {}): Promise<ServerProcess> {
  const deno = ["run", "--allow-all", "--no-prompt", SCRIPT, JSON.stringify(args)];
  const cmd = opts.netns
    ? new Deno.Command("ip", {
      args: ["netns", "exec", opts.netns, Deno.execPath(), ...deno],
      stdout: "piped",
      stderr: "piped",
      env: { NO_COLOR: "1" },
    })
    : new Deno.Command(Deno.execPath(), {
      args: deno,
      stdout: "piped",
      stderr: "piped",
      env: { NO_COLOR: "1" },
    });
  const child = cmd.spawn();
  let text = "";
  let errText = "";
  const decoder = new TextDecoder();
  const pump = (async () => {
    for await (const chunk of child.stdout) text += decoder.decode(chunk, { stream: true });
  })();
  const pumpErr = (async () => {
    for await (const chunk of child.stderr) errText += decoder.decode(chunk, { stream: true });
  })();
  let status: Deno.CommandStatus | undefined;
  const exited = child.status.then(async (s) => {
    status = s;
    await Promise.all([pump, pumpErr]);
    return s;
  });
  const waitFor = async (what: string | RegExp, ms = 10_000) => {
    const deadline = Date.now() + ms;
    const has = () => (typeof what === "string" ? text.includes(what) : what.test(text));
    while (!has() && Date.now() < deadline && status === undefined) {
      await new Promise((r) => setTimeout(r, 20));
    }
    return has();
  };
  const proc: ServerProcess = {
    child,
    stdout: () => text,
    events: () =>
      text.split("\n").filter((l) => l.startsWith("event ")).map((l) => JSON.parse(l.slice(6)) as DhcpEvent),
    waitFor,
    async stop(signal: Deno.Signal = "SIGTERM") {
      if (status === undefined) {
        try {
          child.kill(signal);
        } catch {
          // already gone
        }
      }
      return await exited;
    },
  };
  if (!(await waitFor("ready", 15_000))) {
    await proc.stop("SIGKILL");
    throw new Error(`server did not start: ${text} ${errText}`);
  }
  return proc;
}
