import assert from "node:assert/strict";
import { sha256File } from "./helpers.ts";
import { createPair, netnsAvailable } from "../helpers/netns.ts";
import { writeRandomFile } from "../helpers/random.ts";
import { run } from "../helpers/run.ts";
import { serveTftpTree, type ServiceProcess, spawnService } from "../helpers/servers.ts";
import { missingTools, requires } from "../helpers/tools.ts";
import { startLossyRelay } from "./lossy_relay.ts";

/** Why the namespace loss test cannot run here (it needs root, ip netns, nft, curl and atftp), or null. */
const missing = netnsAvailable(["nft", "curl", "atftp"]);

/**
 * Runs one client. atftp 0.8 aborts with "unexpected OACK" when the server rightly retransmits an OACK
 * whose ACK 0 was lost (RFC 2347); that is atftp's bug, so an atftp run that hit it gets one more try.
 */
async function runClient(name: string, cmd: string[]) {
  const first = await run(cmd, { timeoutMs: 150_000 });
  if (first.code === 0 || !name.startsWith("atftp") || !/unexpected OACK/.test(first.stderr)) return first;
  return await run(cmd, { timeoutMs: 150_000 });
}

Deno.test(requires(missing, {
  name: "loss: curl and atftp complete and match through a 10% lossy link between namespaces",
  sanitizeResources: true,
  sanitizeOps: true,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "pypxe-loss-" });
    const pair = await createPair({ tag: "loss", lossPercent: 10 });
    let server: ServiceProcess | null = null;
    try {
      await writeRandomFile(`${dir}/f.bin`, 120_000, 21);
      await writeRandomFile(`${dir}/c.bin`, 24_000, 23);
      const want = await sha256File(`${dir}/f.bin`);
      const wantC = await sha256File(`${dir}/c.bin`);
      server = await spawnService({ service: "tftp", host: pair.serverIp, port: 6969, dir }, {
        netns: pair.server,
      });
      const url = `tftp://${pair.serverIp}:6969/c.bin`;
      const clients: [string, string[]][] = [
        ["curl 1468", ["curl", "-sS", "--max-time", "120", "-o", `${dir}/o1`, "--tftp-blksize", "1468", url]],
        ["curl 8192", ["curl", "-sS", "--max-time", "120", "-o", `${dir}/o2`, "--tftp-blksize", "8192", url]],
        ["atftp 1468", [
          "atftp",
          "--get",
          "-r",
          "f.bin",
          "-l",
          `${dir}/o3`,
          "--option",
          "blksize 1468",
          "--option",
          "tsize 0",
          pair.serverIp,
          "6969",
        ]],
        ["atftp window 4", [
          "atftp",
          "--get",
          "-r",
          "f.bin",
          "-l",
          `${dir}/o4`,
          "--option",
          "blksize 1468",
          "--option",
          "windowsize 4",
          pair.serverIp,
          "6969",
        ]],
      ];
      // the clients run in parallel: each loss costs about one timeout (curl asks for timeout=5)
      const results = await Promise.all(
        clients.map(([name, cmd]) => runClient(name, pair.exec(pair.client, cmd))),
      );
      for (let i = 0; i < clients.length; i++) {
        assert.equal(results[i].code, 0, `${clients[i][0]}: ${results[i].stderr}`);
        const expected = clients[i][0].startsWith("curl") ? wantC : want;
        assert.equal(await sha256File(`${dir}/o${i + 1}`), expected, clients[i][0]);
      }
    } finally {
      await server?.stop();
      await pair.destroy();
      await Deno.remove(dir, { recursive: true });
    }
  },
}));

Deno.test(requires(missingTools("curl", "atftp", "tftp"), {
  name: "loss: curl, atftp and tftp-hpa complete and match through a 10% lossy relay on loopback",
  sanitizeResources: true,
  sanitizeOps: true,
  async fn() {
    const t = await serveTftpTree({});
    const relay = startLossyRelay({ serverPort: t.port, loss: 0.1, seed: 7 });
    try {
      await writeRandomFile(`${t.dir}/root/f.bin`, 120_000, 22);
      await writeRandomFile(`${t.dir}/root/c.bin`, 24_000, 24);
      const want = await sha256File(`${t.dir}/root/f.bin`);
      const wantC = await sha256File(`${t.dir}/root/c.bin`);
      const url = `tftp://127.0.0.1:${relay.port}/c.bin`;
      const o = (n: number) => `${t.dir}/o${n}`;
      const clients: [string, string[]][] = [
        ["curl 1468", ["curl", "-sS", "--max-time", "120", "-o", o(1), "--tftp-blksize", "1468", url]],
        ["curl 512", ["curl", "-sS", "--max-time", "120", "-o", o(2), "--tftp-blksize", "512", url]],
        ["atftp 1468", [
          "atftp",
          "--get",
          "-r",
          "f.bin",
          "-l",
          o(3),
          "--option",
          "blksize 1468",
          "--option",
          "tsize 0",
          "127.0.0.1",
          String(relay.port),
        ]],
        ["atftp window 4", [
          "atftp",
          "--get",
          "-r",
          "f.bin",
          "-l",
          o(4),
          "--option",
          "blksize 1468",
          "--option",
          "windowsize 4",
          "127.0.0.1",
          String(relay.port),
        ]],
      ];
      clients.push(["tftp-hpa", [
        "tftp",
        "127.0.0.1",
        String(relay.port),
        "-m",
        "binary",
        "-c",
        "get",
        "f.bin",
        o(5),
      ]]);
      const results = await Promise.all(clients.map(([name, cmd]) => runClient(name, cmd)));
      for (let i = 0; i < clients.length; i++) {
        assert.equal(results[i].code, 0, `${clients[i][0]}: ${results[i].stderr}`);
        const expected = clients[i][0].startsWith("curl") ? wantC : want;
        assert.equal(await sha256File(o(i + 1)), expected, clients[i][0]);
      }
      assert.ok(relay.dropped > 10, `only ${relay.dropped} datagrams dropped`);
    } finally {
      await relay.stop();
      await t.close();
    }
  },
}));
