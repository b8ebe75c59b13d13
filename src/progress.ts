/**
 * A one-line progress bar on the terminal for slow start-up work (copying an NBD image to RAM). Silent
 * when stderr is not a terminal: logs and files never get carriage returns.
 * @module
 */

/** Renders `label [#####-----]  50%  1.0/2.0 GB`. */
export function formatProgress(label: string, done: number, total: number, width = 20): string {
  const ratio = total > 0 ? Math.min(1, done / total) : 1;
  const filled = Math.round(ratio * width);
  const gb = (n: number) => (n / 1e9).toFixed(n >= 1e10 ? 0 : 1);
  return `${label} [${"#".repeat(filled)}${"-".repeat(width - filled)}] ${
    String(Math.round(ratio * 100)).padStart(3)
  }%  ` +
    `${gb(done)}/${gb(total)} GB`;
}

/**
 * A progress callback that redraws one terminal line (at most 10 times a second, the first call always)
 * and ends it at 100%.
 */
export function terminalProgress(
  label: string,
  opts: { write?: (text: string) => void; isTerminal?: boolean } = {},
): (done: number, total: number) => void {
  let tty = opts.isTerminal;
  if (tty === undefined) {
    try {
      tty = Deno.stderr.isTerminal();
    } catch {
      tty = false;
    }
  }
  if (!tty) return () => {};
  const encoder = new TextEncoder();
  const write = opts.write ?? ((text: string) => Deno.stderr.writeSync(encoder.encode(text)));
  let last = -Infinity; // the first call always draws, however soon after the process started
  return (done, total) => {
    const now = performance.now();
    const finished = done >= total;
    if (!finished && now - last < 100) return;
    last = now;
    write(`\r\x1b[K${formatProgress(label, done, total)}${finished ? "\n" : ""}`);
  };
}
