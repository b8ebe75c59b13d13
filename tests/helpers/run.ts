/**
 * The one way tests and benchmarks run a command to completion and capture its output: a timeout (the
 * child is killed with SIGKILL when it expires), env, cwd, stdin text, and optionally inside a network
 * namespace (`ip netns exec NS`). A non-zero exit is a result, not an error, unless `check` is set.
 *
 * ```ts
 * const r = await run(["curl", "-sS", url], { timeoutMs: 10_000, netns: pair.client });
 * assert.equal(r.code, 0, r.stderr);
 * ```
 * @module
 */

/** Options of {@linkcode run}. */
export interface RunOptions {
  /** Kills the child with SIGKILL after this long (default 60 s); the result then has `timedOut`. */
  timeoutMs?: number;
  /** Extra environment variables (added to the inherited environment). */
  env?: Record<string, string>;
  /** Working directory. */
  cwd?: string;
  /** Runs the command inside this network namespace (`ip netns exec NS ...`). */
  netns?: string;
  /** Text written to the command's stdin, which is then closed (default: no stdin at all). */
  stdin?: string;
  /** Throw when the command exits non-zero or times out (default false: the caller looks at `code`). */
  check?: boolean;
}

/** A finished command. */
export interface RunResult {
  code: number;
  /** The signal that ended it, or null. */
  signal: Deno.Signal | null;
  /** True when the exit code was 0. */
  success: boolean;
  stdout: string;
  stderr: string;
  /** stdout as bytes (for binary output). */
  bytes: Uint8Array;
  /** True when it was killed because `timeoutMs` expired. */
  timedOut: boolean;
  /** Wall time in milliseconds. */
  ms: number;
}

/** The argv that runs `cmd` inside network namespace `ns`. */
export function inNetns(ns: string, cmd: readonly string[]): string[] {
  return ["ip", "netns", "exec", ns, ...cmd];
}

/** Runs `cmd` (argv, `cmd[0]` found on PATH) to completion; see {@linkcode RunOptions}. */
export async function run(cmd: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
  const argv = opts.netns === undefined ? [...cmd] : inNetns(opts.netns, cmd);
  const started = performance.now();
  const child = new Deno.Command(argv[0], {
    args: argv.slice(1),
    cwd: opts.cwd,
    env: opts.env,
    stdin: opts.stdin === undefined ? "null" : "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    try {
      child.kill("SIGKILL");
    } catch {
      // already gone
    }
  }, opts.timeoutMs ?? 60_000);
  try {
    const feed = opts.stdin === undefined ? Promise.resolve() : (async () => {
      const writer = child.stdin.getWriter();
      try {
        await writer.write(new TextEncoder().encode(opts.stdin));
        await writer.close();
      } catch {
        // the command exited without reading it all
      }
    })();
    const [out] = await Promise.all([child.output(), feed]);
    const decoder = new TextDecoder();
    const result: RunResult = {
      code: out.code,
      signal: out.signal,
      success: out.success,
      stdout: decoder.decode(out.stdout),
      stderr: decoder.decode(out.stderr),
      bytes: out.stdout,
      timedOut,
      ms: performance.now() - started,
    };
    if (opts.check === true && (!result.success || timedOut)) {
      const why = timedOut ? `was killed after ${opts.timeoutMs ?? 60_000} ms` : `exited ${result.code}`;
      throw new Error(`${argv.join(" ")} ${why}: ${result.stderr.trim()}`);
    }
    return result;
  } finally {
    clearTimeout(timer);
  }
}
