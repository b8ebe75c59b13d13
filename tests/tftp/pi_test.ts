/** Raspberry Pi network boot on the TFTP side: per-board directories with a fallback to the root. */
import assert from "node:assert/strict";
import { piPrefixFallback } from "../../src/netboot/fs.ts";
import { run } from "../helpers/run.ts";
import { serveTftpTree } from "../helpers/servers.ts";
import { missingTools, requires } from "../helpers/tools.ts";

Deno.test("pi: serial and MAC prefixes are recognised, other paths are not", () => {
  assert.equal(piPrefixFallback("1234abcd/start4.elf"), "start4.elf");
  assert.equal(piPrefixFallback("/DC-A6-32-01-02-03/config.txt"), "config.txt");
  assert.equal(piPrefixFallback("1234abcd/overlays/vc4.dtbo"), "overlays/vc4.dtbo");
  assert.equal(piPrefixFallback("pxelinux.cfg/default"), null);
  assert.equal(piPrefixFallback("1234abc/start.elf"), null);
  assert.equal(piPrefixFallback("start.elf"), null);
});

Deno.test(requires(missingTools("curl"), {
  name: "pi: <serial>/file and <MAC>/file are served from their directory, else from the root",
  sanitizeResources: true,
  sanitizeOps: true,
  fn: async () => {
    const t = await serveTftpTree({
      "start4.elf": "root start4\n",
      "config.txt": "root config\n",
      "1234abcd/config.txt": "board 1234abcd config\n",
      "dc-a6-32-01-02-03/config.txt": "board by MAC config\n",
    });
    try {
      const get = async (name: string) => {
        const r = await run(["curl", "-sS", "--max-time", "10", `tftp://127.0.0.1:${t.port}/${name}`]);
        return { code: r.code, body: r.stdout };
      };
      assert.deepEqual(await get("1234abcd/config.txt"), { code: 0, body: "board 1234abcd config\n" });
      assert.deepEqual(await get("1234abcd/start4.elf"), { code: 0, body: "root start4\n" });
      assert.deepEqual(await get("dc-a6-32-01-02-03/config.txt"), { code: 0, body: "board by MAC config\n" });
      assert.deepEqual(await get("ffffffff/config.txt"), { code: 0, body: "root config\n" });
      const missing = await get("1234abcd/bootsig.bin");
      assert.equal(missing.code, 68, "bootsig.bin is normally absent: ERROR 1 (curl exits 68)");
    } finally {
      await t.close();
    }
  },
}));
