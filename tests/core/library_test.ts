/** The README's library example, for real: a TftpServer from the library face serves a directory. */
import assert from "node:assert/strict";
import { join } from "node:path";
import { BootEvents, NetbootFs, TftpServer } from "../../src/mod.ts";
import { run } from "../helpers/run.ts";

Deno.test({
  name: "library: TftpServer from src/mod.ts serves an overlay directory to curl",
  sanitizeResources: true,
  sanitizeOps: true,
  fn: async () => {
    const dir = await Deno.makeTempDir({ prefix: "pypxe-lib-" });
    await Deno.writeTextFile(join(dir, "hello.txt"), "hello from the library\n");
    const netboot = await NetbootFs.open({ overlay: dir });
    const tftp = new TftpServer({ host: "127.0.0.1", port: 0, netboot, events: new BootEvents() });
    await tftp.start();
    try {
      const out = await run(["curl", "-sS", "--max-time", "5", `tftp://127.0.0.1:${tftp.port}/hello.txt`]);
      assert.equal(out.stdout, "hello from the library\n");
    } finally {
      await tftp.stop();
      await Deno.remove(dir, { recursive: true });
    }
  },
});
