/**
 * TFTP over IPv6 (`--ipv6`) with real clients on loopback: curl, tftp-hpa and atftp on `[::1]`, every
 * option, block-number rollover, IPv4 through the dual-stack `::` socket, the three bind plans of
 * `src/dual_stack.ts`, nothing on IPv6 without `USE_IPV6`, and (in network namespaces) a real IPv6 link
 * with net.ipv6.bindv6only=1, where `::` is IPv6-only and `0.0.0.0` is bound beside it.
 * @module
 */
import assert from "node:assert/strict";
import { DEFAULTS } from "../../src/config.ts";
import { BootEvents } from "../../src/events.ts";
import type { BootEvent } from "../../src/events.ts";
import type { StaticLeases } from "../../src/static_leases.ts";
import { NetbootFs } from "../../src/netboot/fs.ts";
import { createTftpService, TftpServer } from "../../src/tftp/server.ts";
import { sha256File, waitFor } from "./helpers.ts";
import { writeRandomFile } from "../helpers/random.ts";
import { run } from "../helpers/run.ts";
import { freeUdpPort, serveTftpTree, spawnService } from "../helpers/servers.ts";
import { netnsAvailable } from "../helpers/netns.ts";
import { createBindV6OnlyPair } from "../helpers/netns6.ts";
import { missingTools, requires } from "../helpers/tools.ts";

const T = { sanitizeResources: true, sanitizeOps: true };

/** The clients named in transfer-end events, in order. */
function clientsOf(events: BootEvent[]): string[] {
  return events.flatMap((e) => e.kind === "transfer-end" ? [e.client] : []);
}

/** The outcomes of transfer-end events. */
function outcomesOf(events: BootEvent[]): string[] {
  return events.flatMap((e) => e.kind === "transfer-end" ? [e.outcome] : []);
}

Deno.test(requires(missingTools("curl"), {
  name: "tftp ipv6: one dual-stack :: socket serves curl on [::1] (every blksize) and on 127.0.0.1",
  ...T,
  async fn() {
    const t = await serveTftpTree({}, { host: "0.0.0.0", ipv6: true });
    try {
      assert.deepEqual(t.server.endpoints(), [`UDP 0.0.0.0:${t.port}`, `UDP [::]:${t.port}`]);
      await writeRandomFile(`${t.dir}/root/big.bin`, 5 * 1024 * 1024 + 333, 3); // above the cache limit
      await writeRandomFile(`${t.dir}/root/small.bin`, 70_000, 4); // cached
      for (const file of ["big.bin", "small.bin"]) {
        const want = await sha256File(`${t.dir}/root/${file}`);
        for (const bs of [512, 1468, 8192, 65464]) {
          const out = `${t.dir}/out-${bs}`;
          const url = `tftp://[::1]:${t.port}/${file}`;
          const r = await run(["curl", "-sS", "-o", out, "--tftp-blksize", String(bs), url]);
          assert.equal(r.code, 0, `curl ${url} blksize ${bs}: ${r.stderr}`);
          assert.equal(await sha256File(out), want, `${file} blksize ${bs}`);
        }
      }
      // IPv4 reaches the same socket as ::ffff:127.0.0.1 and is named as plain IPv4
      const r = await run(["curl", "-sS", "-o", `${t.dir}/v4`, `tftp://127.0.0.1:${t.port}/small.bin`]);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(await sha256File(`${t.dir}/v4`), await sha256File(`${t.dir}/root/small.bin`));
      // a miss over IPv6 is refused with ERROR 1 (curl exit 68) and named [::1]:port
      const miss = await run(["curl", "-sS", "-o", `${t.dir}/m`, `tftp://[::1]:${t.port}/missing.bin`]);
      assert.equal(miss.code, 68, miss.stderr);
      assert.ok(await waitFor(() => t.server.activeTransfers === 0));
      const clients = clientsOf(t.events);
      assert.equal(clients.length, 9);
      assert.ok(clients.slice(0, 8).every((c) => /^\[::1\]:\d+$/.test(c)), clients.join(" "));
      assert.match(clients[8], /^127\.0\.0\.1:\d+$/);
      assert.ok(outcomesOf(t.events).every((o) => o === "ok"));
      const refused = t.events.find((e) => e.kind === "file-refused");
      assert.ok(refused?.kind === "file-refused" && /^\[::1\]:\d+$/.test(refused.client));
    } finally {
      await t.close();
    }
  },
}));

Deno.test(requires(missingTools("tftp"), {
  name: "tftp ipv6: tftp-hpa -6 fetches binary and netascii from a ::1 socket beside 127.0.0.1",
  ...T,
  async fn() {
    const text = "line one\nline two\r\nend";
    const t = await serveTftpTree({ "menu.txt": text }, { host: "127.0.0.1", ipv6: true, host6: "::1" });
    try {
      assert.deepEqual(t.server.endpoints(), [`UDP 127.0.0.1:${t.port}`, `UDP [::1]:${t.port}`]);
      await writeRandomFile(`${t.dir}/root/f.bin`, 1_000_000, 6);
      const get = (mode: string, file: string, out: string, host = ["-6", "::1"]) =>
        run(["tftp", ...host, String(t.port), "-m", mode, "-c", "get", file, out], { timeoutMs: 30_000 });
      const r = await get("binary", "f.bin", `${t.dir}/o`);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(await sha256File(`${t.dir}/o`), await sha256File(`${t.dir}/root/f.bin`));
      const a = await get("ascii", "menu.txt", `${t.dir}/menu.txt`);
      assert.equal(a.code, 0, a.stderr);
      // tftp-hpa turns the CR LF on the wire back into local line ends
      assert.equal(await Deno.readTextFile(`${t.dir}/menu.txt`), "line one\nline two\r\nend");
      // IPv4 still works on its own socket
      const v4 = await get("binary", "f.bin", `${t.dir}/o4`, ["127.0.0.1"]);
      assert.equal(v4.code, 0, v4.stderr);
      assert.ok(await waitFor(() => t.server.activeTransfers === 0));
      const clients = clientsOf(t.events);
      assert.equal(clients.length, 3);
      assert.match(clients[0], /^\[::1\]:\d+$/);
      assert.match(clients[2], /^127\.0\.0\.1:\d+$/);
    } finally {
      await t.close();
    }
  },
}));

Deno.test(requires(missingTools("atftp"), {
  name: "tftp ipv6: atftp on ::1 with blksize, tsize and windowsize 1/4/8/16 matches",
  ...T,
  async fn() {
    const t = await serveTftpTree({}, { host: "0.0.0.0", ipv6: true });
    try {
      await writeRandomFile(`${t.dir}/root/f.bin`, 3 * 1024 * 1024 + 17, 5);
      const want = await sha256File(`${t.dir}/root/f.bin`);
      const cases: [number, number][] = [[512, 1], [1468, 1], [1468, 4], [1468, 16], [8192, 8], [8192, 16]];
      for (const [bs, ws] of cases) {
        const out = `${t.dir}/out`;
        const args = ["--option", `blksize ${bs}`, "--option", "tsize 0", "--option", `windowsize ${ws}`];
        const r = await run(
          ["atftp", "--get", "-r", "f.bin", "-l", out, ...args, "::1", String(t.port)],
          { timeoutMs: 60_000 },
        );
        assert.equal(r.code, 0, `atftp ${bs}/${ws}: ${r.stderr}`);
        assert.equal(await sha256File(out), want, `atftp blksize ${bs} windowsize ${ws}`);
      }
      const starts = t.events.filter((e) => e.kind === "transfer-start");
      assert.equal(starts.length, cases.length);
      const last = starts.at(-1)!;
      // 8192 x 16 is cut to 8 so the window stays within 64 KiB, as over IPv4
      assert.match(last.kind === "transfer-start" ? last.options ?? "" : "", /windowsize=8/);
      assert.ok(starts.every((e) => e.kind === "transfer-start" && /^\[::1\]:\d+$/.test(e.client)));
    } finally {
      await t.close();
    }
  },
}));

Deno.test(requires(missingTools("curl", "atftp"), {
  name:
    "tftp ipv6: a 40 MiB file at blksize 512 over [::1] (block numbers roll over), curl and atftp windowsize 8",
  ...T,
  async fn() {
    const t = await serveTftpTree({}, { host: "0.0.0.0", ipv6: true });
    try {
      const path = `${t.dir}/root/huge.bin`;
      await writeRandomFile(path, 40 * 1024 * 1024 + 100, 9); // 81921 blocks of 512
      const want = await sha256File(path);
      const c = await run(
        ["curl", "-sS", "-o", `${t.dir}/c`, "--tftp-blksize", "512", `tftp://[::1]:${t.port}/huge.bin`],
        { timeoutMs: 300_000 },
      );
      assert.equal(c.code, 0, c.stderr);
      assert.equal(await sha256File(`${t.dir}/c`), want);
      const a = await run([
        "atftp",
        "--get",
        "-r",
        "huge.bin",
        "-l",
        `${t.dir}/a`,
        "--option",
        "blksize 512",
        "--option",
        "windowsize 8",
        "::1",
        String(t.port),
      ], { timeoutMs: 300_000 });
      assert.equal(a.code, 0, a.stderr);
      assert.equal(await sha256File(`${t.dir}/a`), want);
      assert.ok(await waitFor(() => t.server.activeTransfers === 0));
      assert.deepEqual(outcomesOf(t.events), ["ok", "ok"]);
    } finally {
      await t.close();
    }
  },
}));

Deno.test(requires(missingTools("curl"), {
  name: "tftp ipv6: a specific IPv4 address beside :: serves ::1 and that address, not other IPv4 ones",
  ...T,
  async fn() {
    const t = await serveTftpTree({ "f.txt": "hello over two families\n" }, {
      host: "127.0.0.1",
      ipv6: true,
    });
    try {
      assert.deepEqual(t.server.endpoints(), [`UDP 127.0.0.1:${t.port}`, `UDP [::]:${t.port}`]);
      for (const host of ["[::1]", "127.0.0.1"]) {
        const r = await run(["curl", "-sS", `tftp://${host}:${t.port}/f.txt`], { timeoutMs: 20_000 });
        assert.equal(r.code, 0, `${host}: ${r.stderr}`);
        assert.equal(r.stdout, "hello over two families\n");
      }
      // 127.0.0.2 is loopback too but not the bound address: it reaches `::` only and is dropped there
      const other = await run(
        ["curl", "-sS", "--max-time", "3", `tftp://127.0.0.2:${t.port}/f.txt`],
        { timeoutMs: 20_000 },
      );
      assert.notEqual(other.code, 0, "127.0.0.2 must not be served");
      assert.ok(await waitFor(() => t.server.activeTransfers === 0));
      assert.equal(clientsOf(t.events).length, 2);
      assert.ok(!clientsOf(t.events).some((c) => c.includes("127.0.0.2") || c.includes("ffff")));
    } finally {
      await t.close();
    }
  },
}));

Deno.test(requires(missingTools("curl"), {
  name:
    "tftp ipv6: without USE_IPV6 nothing listens on IPv6; the factory passes USE_IPV6 and DHCP6_SERVER_IP",
  ...T,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "pypxe-tftp6-" });
    await Deno.mkdir(`${dir}/root`);
    await Deno.writeTextFile(`${dir}/root/f.txt`, "x\n");
    const ctx = {
      netboot: await NetbootFs.open({ overlay: `${dir}/root`, embedded: `${dir}/none` }),
      events: new BootEvents(),
      staticLeases: new Map() as StaticLeases,
    };
    const port = freeUdpPort();
    const off = createTftpService({
      ...ctx,
      config: { ...DEFAULTS, TFTP_SERVER_IP: "127.0.0.1", TFTP_PORT: port, USE_IPV6: false },
    }) as TftpServer;
    const on = createTftpService({
      ...ctx,
      config: {
        ...DEFAULTS,
        TFTP_SERVER_IP: "127.0.0.1",
        TFTP_PORT: port,
        USE_IPV6: true,
        DHCP6_SERVER_IP: "::1",
      },
    }) as TftpServer;
    try {
      await off.start();
      assert.deepEqual(off.endpoints(), [`UDP 127.0.0.1:${port}`]);
      const v4 = await run(["curl", "-sS", `tftp://127.0.0.1:${port}/f.txt`], { timeoutMs: 20_000 });
      assert.equal(v4.code, 0, v4.stderr);
      const v6 = await run(["curl", "-sS", "--max-time", "3", `tftp://[::1]:${port}/f.txt`], {
        timeoutMs: 20_000,
      });
      assert.notEqual(v6.code, 0, "nothing may answer on [::1]");
      // ::1 on that port is free, and so is ::1 on every port a plain bind can probe (`::` would clash)
      const probe = Deno.listenDatagram({ transport: "udp", hostname: "::1", port });
      probe.close();
      await off.stop();

      await on.start();
      assert.deepEqual(on.endpoints(), [`UDP 127.0.0.1:${port}`, `UDP [::1]:${port}`]);
      assert.throws(
        () => Deno.listenDatagram({ transport: "udp", hostname: "::1", port }),
        Deno.errors.AddrInUse,
      );
      const r = await run(["curl", "-sS", `tftp://[::1]:${port}/f.txt`], { timeoutMs: 20_000 });
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout, "x\n");
    } finally {
      await off.stop();
      await on.stop();
      await Deno.remove(dir, { recursive: true });
    }
  },
}));

Deno.test(requires(netnsAvailable(["curl", "tftp", "sysctl"]), {
  name: "tftp ipv6: over a veth with bindv6only=1, :: and 0.0.0.0 both bound: fd00:6::2 and 10.213.0.2 fetch",
  ...T,
  async fn() {
    const pair = await createBindV6OnlyPair("tftp6");
    const dir = await Deno.makeTempDir({ prefix: "pypxe-tftp6-ns-" });
    let svc: Awaited<ReturnType<typeof spawnService>> | undefined;
    try {
      const ns = (netns: string, ...cmd: string[]) => run(cmd, { netns, check: true, timeoutMs: 10_000 });
      assert.equal((await ns(pair.server, "sysctl", "-n", "net.ipv6.bindv6only")).stdout.trim(), "1");
      await writeRandomFile(`${dir}/f.bin`, 300_000, 21);
      const want = await sha256File(`${dir}/f.bin`);
      svc = await spawnService(
        { service: "tftp", host: "0.0.0.0", port: 0, dir, ipv6: true },
        { netns: pair.server, events: true },
      );
      const port = String(svc.port);
      const gets: [string, string[]][] = [
        ["curl v6", ["curl", "-sS", "-o", `${dir}/c6`, `tftp://[fd00:6::1]:${port}/f.bin`]],
        ["curl v4", ["curl", "-sS", "-o", `${dir}/c4`, `tftp://${pair.serverIp}:${port}/f.bin`]],
        ["tftp-hpa v6", ["tftp", "-6", "fd00:6::1", port, "-m", "binary", "-c", "get", "f.bin", `${dir}/t6`]],
      ];
      for (const [what, cmd] of gets) {
        const r = await run(cmd, { netns: pair.client, timeoutMs: 30_000 });
        assert.equal(r.code, 0, `${what}: ${r.stderr}`);
      }
      for (const out of ["c6", "c4", "t6"]) assert.equal(await sha256File(`${dir}/${out}`), want, out);
      const ends = () => svc!.events().filter((e) => e.kind === "transfer-end");
      assert.ok(await waitFor(() => ends().length === 3));
      assert.deepEqual(
        ends().map((e) => e.kind === "transfer-end" ? e.client.replace(/:\d+$/, "") : ""),
        ["[fd00:6::2]", pair.clientIp, "[fd00:6::2]"],
      );
    } finally {
      await svc?.stop();
      await pair.destroy();
      await Deno.remove(dir, { recursive: true });
    }
  },
}));
