// deno-lint-ignore-file no-control-regex -- the bar is drawn with terminal escape codes
import assert from "node:assert/strict";
import { join } from "node:path";
import { formatProgress, terminalProgress } from "../../src/progress.ts";
import { missingTools, requires } from "../helpers/tools.ts";
import { run } from "../helpers/run.ts";

Deno.test("progress: the bar, the percentage and the sizes; silent off a terminal", () => {
  assert.equal(formatProgress("copying", 1e9, 2e9, 10), "copying [#####-----]  50%  1.0/2.0 GB");
  assert.equal(formatProgress("copying", 0, 0, 4), "copying [####] 100%  0.0/0.0 GB");
  const writes: string[] = [];
  const silent = terminalProgress("x", { isTerminal: false, write: (t) => writes.push(t) });
  silent(5, 10);
  assert.equal(writes.length, 0);
  const bar = terminalProgress("x", { isTerminal: true, write: (t) => writes.push(t) });
  bar(5, 10); // the first call draws, even within 100 ms of the process start
  bar(6, 10); // within 100 ms: skipped
  bar(10, 10); // the end is always drawn, with a newline
  assert.equal(writes.length, 2);
  assert.match(writes[1], /^\r\x1b\[Kx \[#{20}\] 100%.*\n$/);
});

Deno.test(requires(missingTools("script"), {
  name: "progress: --nbd-copy-to-ram shows a bar on a real terminal",
  fn: async () => {
    const dir = await Deno.makeTempDir({ prefix: "pypxe-progress-" });
    try {
      const image = join(dir, "disk.img");
      await Deno.truncate(image, 300 << 20).catch(async () => {
        await Deno.writeFile(image, new Uint8Array(0));
        await Deno.truncate(image, 300 << 20);
      });
      const main = new URL("../../main.ts", import.meta.url).pathname;
      const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
      const port = (l.addr as Deno.NetAddr).port;
      l.close();
      // wait for the NBD port (it opens once the copy is done) instead of a fixed sleep: under load the
      // copy can take longer than any fixed guess
      const runner = join(dir, "run.sh");
      await Deno.writeTextFile(
        runner,
        `${Deno.execPath()} run -P --no-prompt ${main} --no-tftp --nbd ${image} --nbd-copy-to-ram ` +
          `--nbd-server 127.0.0.1 --nbd-port ${port} & P=$!\n` +
          `for i in $(seq 1 600); do (exec 3<>/dev/tcp/127.0.0.1/${port}) 2>/dev/null && break; sleep 0.1; done\n` +
          `kill -TERM $P; wait $P\n`,
      );
      const inner = `bash ${runner}`;
      const out = await run(["script", "-qfec", inner, "/dev/null"], {
        env: { NO_COLOR: "1", TERM: "xterm" },
      });
      const text = out.stdout;
      assert.equal(out.code, 0, text);
      assert.match(text, /copying \S+disk\.img to RAM \[#{20}\] 100% {2}0\.3\/0\.3 GB/);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
}));
