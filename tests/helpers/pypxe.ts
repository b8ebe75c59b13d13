/**
 * Runs pypxe as a real subprocess (`deno run` with the permission set of deno.json, exactly like
 * `deno task start`), collects its log lines, and stops it with a signal.
 * @module
 */
const ROOT = new URL("../..", import.meta.url).pathname;

/** A running pypxe process. */
export interface PypxeProcess {
  readonly child: Deno.ChildProcess;
  /** Every stderr line so far. */
  readonly lines: string[];
  /** Sends `signal` and resolves with the exit code (kills after `timeoutMs`). */
  stop(signal?: Deno.Signal, timeoutMs?: number): Promise<number>;
  /** Resolves with the first line matching `pattern`, or rejects after `timeoutMs`. */
  waitFor(pattern: RegExp, timeoutMs?: number): Promise<string>;
}

/** The command prefix that runs pypxe from source, as `deno task start` does. */
export function pypxeCommand(args: readonly string[], opts: { prefix?: string[] } = {}): Deno.Command {
  const deno = Deno.execPath();
  const argv = [deno, "run", "-P", "--no-prompt", `${ROOT}main.ts`, ...args];
  // a prefix runs pypxe inside something: `ip netns exec NS`, `capsh ... -- -c 'exec "$0" "$@"'`
  const [cmd, ...rest] = [...(opts.prefix ?? []), ...argv];
  return new Deno.Command(cmd, {
    args: rest,
    cwd: ROOT,
    env: { NO_COLOR: "1", RUST_BACKTRACE: "0" },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  });
}

/** Runs pypxe to completion (for --help, bad flags...) within `timeoutMs`. */
export async function runPypxeOnce(
  args: readonly string[],
  opts: { timeoutMs?: number; prefix?: string[] } = {},
): Promise<{ code: number; stdout: string; stderr: string }> {
  const child = pypxeCommand(args, opts).spawn();
  const timer = setTimeout(() => child.kill("SIGKILL"), opts.timeoutMs ?? 20_000);
  try {
    const out = await child.output();
    const decoder = new TextDecoder();
    return {
      code: out.code,
      stdout: decoder.decode(out.stdout),
      stderr: stripNoise(decoder.decode(out.stderr)),
    };
  } finally {
    clearTimeout(timer);
  }
}

/** Drops Deno's own notices (the config-permissions warning) from stderr text. */
export function stripNoise(text: string): string {
  return text.split("\n").filter((l) => !/^Warning Permissions in the config file/.test(l)).join("\n");
}

/** Starts pypxe and resolves once it printed its `ready` banner. */
export async function startPypxe(
  args: readonly string[],
  opts: { readyTimeoutMs?: number; prefix?: string[] } = {},
): Promise<PypxeProcess> {
  const child = pypxeCommand(args, opts).spawn();
  const lines: string[] = [];
  const waiters: { pattern: RegExp; resolve: (l: string) => void }[] = [];
  const pump = (async () => {
    const decoder = new TextDecoder();
    let buf = "";
    for await (const chunk of child.stderr) {
      buf += decoder.decode(chunk, { stream: true });
      let nl: number;
      while ((nl = buf.indexOf("\n")) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        if (stripNoise(line) === "") continue;
        lines.push(line);
        for (const w of [...waiters]) {
          if (w.pattern.test(line)) {
            waiters.splice(waiters.indexOf(w), 1);
            w.resolve(line);
          }
        }
      }
    }
  })();
  const stdoutDone = child.stdout.cancel();
  const waitFor = (pattern: RegExp, timeoutMs = 20_000) => {
    const seen = lines.find((l) => pattern.test(l));
    if (seen !== undefined) return Promise.resolve(seen);
    return new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => {
        waiters.splice(waiters.findIndex((w) => w.resolve === done), 1);
        reject(
          new Error(
            `pypxe did not print ${pattern} within ${timeoutMs} ms; it printed:\n${lines.join("\n")}`,
          ),
        );
      }, timeoutMs);
      const done = (line: string) => {
        clearTimeout(timer);
        resolve(line);
      };
      waiters.push({ pattern, resolve: done });
    });
  };
  let exited: number | undefined;
  const status = child.status.then((s) => (exited = s.code));
  const stop = async (signal: Deno.Signal = "SIGTERM", timeoutMs = 10_000) => {
    if (exited === undefined) {
      try {
        child.kill(signal);
      } catch {
        // already gone
      }
    }
    const timer = setTimeout(() => {
      try {
        child.kill("SIGKILL");
      } catch {
        // already gone
      }
    }, timeoutMs);
    const code = await status;
    clearTimeout(timer);
    await pump;
    await stdoutDone;
    return code;
  };
  const ready = waitFor(/ main {2}ready$/, opts.readyTimeoutMs ?? 20_000).then(
    () => true,
    (err: Error) => err,
  );
  const outcome = await Promise.race([ready, status.then(() => false)]);
  if (outcome !== true) {
    await stop("SIGKILL");
    await ready;
    throw outcome === false
      ? new Error(`pypxe exited with ${exited} before it was ready:\n${lines.join("\n")}`)
      : outcome;
  }
  return { child, lines, stop, waitFor };
}
