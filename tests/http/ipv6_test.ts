/**
 * HTTP over IPv6 (`--ipv6`) with curl on loopback: GET, Range, HEAD and generated menus on `[::1]`,
 * IPv4 through the dual-stack `::` listener, the bind plans of `src/dual_stack.ts`, nothing on IPv6
 * without `USE_IPV6`, and (in network namespaces) a real IPv6 link with net.ipv6.bindv6only=1, where the
 * menus name the server by the address of the interface on the client's prefix.
 * @module
 */
import { deepStrictEqual, equal, match, notEqual, ok, throws } from "node:assert/strict";
import { DEFAULTS } from "../../src/config.ts";
import { BootEvents } from "../../src/events.ts";
import type { BootEvent } from "../../src/events.ts";
import { createHttpService, HttpServer } from "../../src/http/server.ts";
import { NetbootFs } from "../../src/netboot/fs.ts";
import type { StaticLeases } from "../../src/static_leases.ts";
import { curl, pseudoRandom, SANITIZE, sha256 } from "./helpers.ts";
import { freeTcpPort, serveHttpTree, spawnService } from "../helpers/servers.ts";
import { netnsAvailable } from "../helpers/netns.ts";
import { createBindV6OnlyPair } from "../helpers/netns6.ts";
import { run } from "../helpers/run.ts";
import { missingTools, requires } from "../helpers/tools.ts";

const SMALL = pseudoRandom(300 * 1024, 11); // answered from memory
const BIG = pseudoRandom(5 * 1024 * 1024 + 77, 12); // streamed

/** The clients named in transfer-end events, in order. */
function clientsOf(events: BootEvent[]): string[] {
  return events.flatMap((e) => e.kind === "transfer-end" ? [e.client] : []);
}

Deno.test(requires(missingTools("curl"), {
  name: "http ipv6: one dual-stack :: listener serves GET, Range and HEAD on [::1], and 127.0.0.1",
  ...SANITIZE,
  async fn() {
    const fx = await serveHttpTree({ "ipxe.efi": SMALL, "big.bin": BIG }, {}, {
      host: "0.0.0.0",
      ipv6: true,
    });
    const base6 = `http://[::1]:${fx.port}`;
    try {
      deepStrictEqual(fx.server.endpoints(), [`TCP 0.0.0.0:${fx.port}`, `TCP [::]:${fx.port}`]);
      for (const [name, bytes] of [["ipxe.efi", SMALL], ["big.bin", BIG]] as const) {
        const full = await curl(["-g", `${base6}/${name}`]);
        equal(full.status, 200, `${name}: ${full.stderr}`);
        equal(await sha256(full.body), await sha256(bytes), name);
        const size = bytes.length;
        for (const [spec, start, end] of [["100-1099", 100, 1099], [`-500`, size - 500, size - 1]] as const) {
          const part = await curl(["-g", "-r", spec, `${base6}/${name}`]);
          equal(part.status, 206, `${name} ${spec}`);
          equal(part.headers.get("content-range"), `bytes ${start}-${end}/${size}`);
          equal(part.headers.get("content-length"), String(end - start + 1));
          deepStrictEqual(part.body, bytes.slice(start, end + 1), `${name} ${spec}`);
        }
        const head = await curl(["-g", "-I", `${base6}/${name}`], " %{size_download}");
        equal(head.status, 200);
        equal(head.headers.get("content-length"), String(size));
        equal(head.extra, " 0");
      }
      // IPv4 reaches the same listener as ::ffff:127.0.0.1 and is named as plain IPv4
      const v4 = await curl([`http://127.0.0.1:${fx.port}/ipxe.efi`]);
      equal(v4.status, 200, v4.stderr);
      equal(await sha256(v4.body), await sha256(SMALL));
      const miss = await curl(["-g", `${base6}/missing.bin`]);
      equal(miss.status, 404);
      const clients = clientsOf(fx.events);
      equal(clients.length, 7); // 2 full GETs, 4 ranges, 1 IPv4 GET (HEAD sends no body)
      ok(clients.slice(0, 6).every((c) => /^\[::1\]:\d+$/.test(c)), clients.join(" "));
      match(clients[6], /^127\.0\.0\.1:\d+$/);
      const refused = fx.events.find((e) => e.kind === "file-refused");
      ok(refused?.kind === "file-refused" && /^\[::1\]:\d+$/.test(refused.client));
    } finally {
      await fx.close();
    }
  },
}));

Deno.test(requires(missingTools("curl"), {
  name: "http ipv6: generated menus give an IPv6 client bracketed URLs ([::1]:port)",
  ...SANITIZE,
  async fn() {
    const fx = await serveHttpTree(
      { "top.iso": new Uint8Array(10), "memdisk": "memdisk" },
      {},
      { host: "127.0.0.1", ipv6: true, host6: "::1" },
    );
    try {
      deepStrictEqual(fx.server.endpoints(), [`TCP 127.0.0.1:${fx.port}`, `TCP [::1]:${fx.port}`]);
      const r6 = await curl(["-g", `http://[::1]:${fx.port}/boot.http.ipxe`]);
      equal(r6.status, 200, r6.stderr);
      const script6 = new TextDecoder().decode(r6.body);
      match(script6, new RegExp(`sanboot --no-describe --drive 0x80 http://\\[::1\\]:${fx.port}/top\\.iso`));
      match(script6, new RegExp(`kernel http://\\[::1\\]:${fx.port}/memdisk iso raw`));
      // the IPv4 client of the same server still gets plain IPv4 URLs
      const r4 = await curl([`http://127.0.0.1:${fx.port}/boot.http.ipxe`]);
      const script4 = new TextDecoder().decode(r4.body);
      match(script4, new RegExp(`http://127\\.0\\.0\\.1:${fx.port}/top\\.iso`));
      ok(!script4.includes("["));
    } finally {
      await fx.close();
    }
  },
}));

Deno.test(requires(missingTools("curl"), {
  name: "http ipv6: a specific IPv4 address beside :: serves ::1 and that address, not other IPv4 ones",
  ...SANITIZE,
  async fn() {
    const fx = await serveHttpTree({ "f.txt": "both families\n" }, {}, { host: "127.0.0.1", ipv6: true });
    try {
      deepStrictEqual(fx.server.endpoints(), [`TCP 127.0.0.1:${fx.port}`, `TCP [::]:${fx.port}`]);
      for (const url of [`http://[::1]:${fx.port}/f.txt`, `http://127.0.0.1:${fx.port}/f.txt`]) {
        const r = await curl(["-g", url]);
        equal(r.status, 200, `${url}: ${r.stderr}`);
        equal(new TextDecoder().decode(r.body), "both families\n");
      }
      // 127.0.0.2 is loopback too but not the bound address: `::` accepts it and closes it at once
      const other = await curl([`http://127.0.0.2:${fx.port}/f.txt`]);
      notEqual(other.code, 0, "127.0.0.2 must not be served");
      equal(other.status, 0);
      const clients = clientsOf(fx.events);
      equal(clients.length, 2);
      ok(!clients.some((c) => c.includes("127.0.0.2") || c.includes("ffff")));
    } finally {
      await fx.close();
    }
  },
}));

Deno.test(requires(missingTools("curl"), {
  name:
    "http ipv6: without USE_IPV6 nothing listens on IPv6; the factory passes USE_IPV6 and DHCP6_SERVER_IP",
  ...SANITIZE,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "pypxe-http6-" });
    await Deno.mkdir(`${dir}/root`);
    await Deno.writeTextFile(`${dir}/root/f.txt`, "x\n");
    const ctx = {
      netboot: await NetbootFs.open({ overlay: `${dir}/root`, embedded: `${dir}/none` }),
      events: new BootEvents(),
      staticLeases: new Map() as StaticLeases,
    };
    const port = freeTcpPort();
    const base = { ...DEFAULTS, USE_HTTP: true, HTTP_SERVER_IP: "127.0.0.1", HTTP_PORT: port };
    const off = createHttpService({ ...ctx, config: { ...base, USE_IPV6: false } }) as HttpServer;
    const on = createHttpService({
      ...ctx,
      config: { ...base, USE_IPV6: true, DHCP6_SERVER_IP: "::1" },
    }) as HttpServer;
    try {
      await off.start();
      deepStrictEqual(off.endpoints(), [`TCP 127.0.0.1:${port}`]);
      equal((await curl([`http://127.0.0.1:${port}/f.txt`])).status, 200);
      const v6 = await curl(["-g", `http://[::1]:${port}/f.txt`]);
      equal(v6.code, 7, `nothing may answer on [::1]: ${v6.stderr}`); // curl 7: connection refused
      const probe = Deno.listen({ hostname: "::1", port });
      probe.close();
      await off.stop();

      await on.start();
      deepStrictEqual(on.endpoints(), [`TCP 127.0.0.1:${port}`, `TCP [::1]:${port}`]);
      throws(() => Deno.listen({ hostname: "::1", port }), Deno.errors.AddrInUse);
      const r = await curl(["-g", `http://[::1]:${port}/f.txt`]);
      equal(r.status, 200, r.stderr);
      equal(new TextDecoder().decode(r.body), "x\n");
    } finally {
      await off.stop();
      await on.stop();
      await Deno.remove(dir, { recursive: true });
    }
  },
}));

Deno.test({
  name: "http ipv6: a busy port is one line naming the address that failed",
  ...SANITIZE,
  async fn() {
    const blocker = Deno.listen({ hostname: "::1", port: 0 });
    const port = blocker.addr.port;
    const dir = await Deno.makeTempDir({ prefix: "pypxe-http6-" });
    try {
      const netboot = await NetbootFs.open({ overlay: dir, embedded: `${dir}/none` });
      const server = new HttpServer({ host: "127.0.0.1", port, ipv6: true, host6: "::1", netboot });
      let message = "";
      await server.start().catch((err: Error) => message = err.message);
      match(message, new RegExp(`^http: TCP \\[::1\\]:${port} is in use`));
      ok(!message.includes("\n"));
      // the IPv4 socket bound before the failure was released
      Deno.listen({ hostname: "127.0.0.1", port }).close();
    } finally {
      blocker.close();
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test(requires(netnsAvailable(["curl", "sysctl"]), {
  name:
    "http ipv6: over a veth with bindv6only=1: fd00:6::2 gets files, a range and menus naming [fd00:6::1]",
  ...SANITIZE,
  async fn() {
    const pair = await createBindV6OnlyPair("http6");
    const dir = await Deno.makeTempDir({ prefix: "pypxe-http6-ns-" });
    let svc: Awaited<ReturnType<typeof spawnService>> | undefined;
    try {
      await Deno.writeFile(`${dir}/big.bin`, BIG);
      await Deno.writeFile(`${dir}/top.iso`, new Uint8Array(10));
      svc = await spawnService(
        { service: "http", host: "0.0.0.0", port: 0, dir, ipv6: true, menus: true },
        { netns: pair.server, events: true },
      );
      const base6 = `http://[fd00:6::1]:${svc.port}`;
      const get = async (...args: string[]) => {
        const r = await run(["curl", "-sS", "-g", "--max-time", "30", ...args], { netns: pair.client });
        equal(r.code, 0, `${args.join(" ")}: ${r.stderr}`);
        return r;
      };
      equal(await sha256((await get(`${base6}/big.bin`)).bytes), await sha256(BIG));
      deepStrictEqual((await get("-r", "1000-1999", `${base6}/big.bin`)).bytes, BIG.slice(1000, 2000));
      equal(
        await sha256((await get(`http://${pair.serverIp}:${svc.port}/big.bin`)).bytes),
        await sha256(BIG),
      );
      const menu6 = (await get(`${base6}/boot.http.ipxe`)).stdout;
      match(
        menu6,
        new RegExp(`sanboot --no-describe --drive 0x80 http://\\[fd00:6::1\\]:${svc.port}/top\\.iso`),
      );
      const menu4 = (await get(`http://${pair.serverIp}:${svc.port}/boot.http.ipxe`)).stdout;
      match(menu4, new RegExp(`http://${pair.serverIp.replaceAll(".", "\\.")}:${svc.port}/top\\.iso`));
      const clients = svc.events().flatMap((e) =>
        e.kind === "transfer-end" ? [e.client.replace(/:\d+$/, "")] : []
      );
      deepStrictEqual(clients.slice(0, 3), ["[fd00:6::2]", "[fd00:6::2]", pair.clientIp]);
    } finally {
      await svc?.stop();
      await pair.destroy();
      await Deno.remove(dir, { recursive: true });
    }
  },
}));
