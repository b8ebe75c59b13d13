/**
 * Real DHCP clients (ISC dhclient, busybox udhcpc) against pypxe across a veth pair between two network
 * namespaces. Needs root; skipped with the reason otherwise, unless PYPXE_REQUIRE_E2E=1 (then it fails).
 */
import { equal, ok } from "node:assert/strict";
import { refConfig } from "./helpers.ts";
import { createPair, netnsAvailable, type NetnsPair } from "../helpers/netns.ts";
import { run } from "../helpers/run.ts";
import {
  type Daemon,
  dhcpEvents,
  type ServiceProcess,
  spawnService,
  startDaemon,
} from "../helpers/servers.ts";
import { requires } from "../helpers/tools.ts";

const SERVER_IP = "10.213.0.1";
const LEASE_TIME = 8; // short, so the clients renew by themselves at T1 = 4 s

function serverSpec(leasesFile: string) {
  return {
    service: "dhcp" as const,
    config: refConfig({
      DHCP_SERVER_IP: SERVER_IP,
      DHCP_SERVER_PORT: 67,
      DHCP_FILESERVER: SERVER_IP,
      DHCP_ROUTER: SERVER_IP,
      DHCP_OFFER_BEGIN: "10.213.0.100",
      DHCP_OFFER_END: "10.213.0.150",
      DHCP_BROADCAST: "10.213.0.255",
      DHCP_DNS: SERVER_IP,
      DHCP_LEASE_TIME: LEASE_TIME,
      LEASES_FILE: leasesFile,
    }),
  };
}

async function until(check: () => boolean | Promise<boolean>, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (await check()) return true;
    await new Promise((r) => setTimeout(r, 100));
  }
  return await check();
}

const readLog = async (path: string) => {
  try {
    return await Deno.readTextFile(path);
  } catch {
    return "";
  }
};

/**
 * Runs `fn` with a namespace pair, a temp dir and a DHCP server in the server namespace; afterwards
 * kills the client processes `fn` started, stops the server and removes everything, even on failure.
 */
async function withServerInNamespaces(
  fn: (ctx: {
    dir: string;
    pair: NetnsPair;
    server: ServiceProcess;
    /** Starts a DHCP client in the client namespace. */
    client: (cmd: string[]) => Promise<Daemon>;
  }) => Promise<void>,
): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "pypxe-netns-" });
  const pair = await createPair({ tag: "dhcp", serverIp: SERVER_IP, clientIp: null });
  const clients: Daemon[] = [];
  let server: ServiceProcess | undefined;
  try {
    server = await spawnService(serverSpec(`${dir}/leases.json`), { netns: pair.server, events: true });
    const client = async (cmd: string[]) => {
      const daemon = await startDaemon(cmd, { netns: pair.client });
      clients.push(daemon);
      return daemon;
    };
    await fn({ dir, pair, server, client });
  } finally {
    for (const client of clients) await client.stop("SIGKILL");
    await server?.stop();
    await pair.destroy();
    await Deno.remove(dir, { recursive: true });
  }
}

const udhcpcMissing = netnsAvailable(["busybox"]);
const dhclientMissing = netnsAvailable(["dhclient"]);

Deno.test(requires(udhcpcMissing, {
  name: "netns: busybox udhcpc obtains, renews (unicast) and releases a lease",
  sanitizeResources: true,
  sanitizeOps: true,
  async fn() {
    await withServerInNamespaces(async ({ dir, server, client: start }) => {
      const log = `${dir}/udhcpc.log`;
      const script = `${dir}/udhcpc.sh`;
      await Deno.writeTextFile(
        script,
        `#!/bin/sh\necho "$1 $ip" >> ${log}\ncase "$1" in\n  bound|renew) ip addr flush dev "$interface"; ip addr add "$ip/$mask" dev "$interface";;\n  deconfig) ip addr flush dev "$interface";;\nesac\nexit 0\n`,
      );
      await Deno.chmod(script, 0o755);
      const client = await start([
        "busybox",
        "udhcpc",
        "-f",
        "-i",
        "vc",
        "-s",
        script,
        "-t",
        "5",
        "-T",
        "1",
        "-n",
      ]);
      ok(
        await until(async () => /bound 10\.213\.0\.1\d\d/.test(await readLog(log)), 15_000),
        await readLog(log),
      );
      const ip = /bound (\S+)/.exec(await readLog(log))![1];
      // SIGUSR1: renew now (unicast REQUEST with ciaddr)
      client.child.kill("SIGUSR1");
      ok(await until(async () => (await readLog(log)).includes(`renew ${ip}`), 10_000), await readLog(log));
      ok(
        dhcpEvents(server).some((e) =>
          e.received === "REQUEST" && e.sent === "ACK" && e.reason === "renewing"
        ),
      );
      // SIGUSR2: release
      client.child.kill("SIGUSR2");
      ok(await until(() => dhcpEvents(server).some((e) => e.received === "RELEASE" && e.ip === ip), 10_000));
    });
  },
}));

const DHCLIENT_SCRIPT = (log: string) =>
  `#!/bin/sh\necho "$reason $new_ip_address" >> ${log}\ncase "$reason" in\n  BOUND|RENEW|REBIND|REBOOT) ip addr flush dev "$interface"; ip addr add "$new_ip_address/$new_subnet_mask" dev "$interface";;\n  EXPIRE|FAIL|RELEASE|STOP) ip addr flush dev "$interface";;\nesac\nexit 0\n`;

Deno.test(requires(dhclientMissing, {
  name: "netns: ISC dhclient obtains, renews at T1, releases; is NAKed for an address of another subnet",
  sanitizeResources: true,
  sanitizeOps: true,
  async fn() {
    await withServerInNamespaces(async ({ dir, pair, server, client: start }) => {
      const log = `${dir}/dhclient.log`;
      const script = `${dir}/dhclient.sh`;
      const lf = `${dir}/dhclient.leases`;
      const pf = `${dir}/dhclient.pid`;
      await Deno.writeTextFile(script, DHCLIENT_SCRIPT(log));
      await Deno.chmod(script, 0o755);
      // a remembered lease from another network: INIT-REBOOT asks for it and must be NAKed
      await Deno.writeTextFile(
        lf,
        `lease {\n  interface "vc";\n  fixed-address 10.99.0.55;\n  option subnet-mask 255.255.255.0;\n` +
          `  option dhcp-lease-time 3600;\n  option dhcp-server-identifier 10.99.0.1;\n` +
          `  renew 4 2037/01/01 00:00:00;\n  rebind 4 2037/01/01 00:00:00;\n  expire 4 2037/01/01 00:00:00;\n}\n`,
      );
      const args = ["-v", "-d", "-1", "-sf", script, "-lf", lf, "-pf", pf, "vc"];
      const client = await start(["dhclient", ...args]);
      ok(
        await until(async () => /BOUND 10\.213\.0\.1\d\d/.test(await readLog(log)), 20_000),
        await readLog(log),
      );
      const ip = /BOUND (\S+)/.exec(await readLog(log))![1];
      const events = dhcpEvents(server);
      ok(events.some((e) => e.sent === "NAK" && e.ip === "10.99.0.55"), JSON.stringify(events));
      // renewal at T1 (lease 8 s): unicast REQUEST
      ok(await until(async () => (await readLog(log)).includes(`RENEW ${ip}`), 12_000), await readLog(log));
      ok(dhcpEvents(server).some((e) => e.received === "REQUEST" && e.reason === "renewing" && e.ip === ip));
      // release: dhclient -r signals the running one and sends DHCPRELEASE
      const rel = await run(["dhclient", "-v", "-r", "-sf", script, "-lf", lf, "-pf", pf, "vc"], {
        netns: pair.client,
      });
      equal(rel.code, 0, rel.stderr);
      ok(await until(() => dhcpEvents(server).some((e) => e.received === "RELEASE" && e.ip === ip), 10_000));
      await client.status;
      ok(client.lines.join("\n").includes("DHCPNAK from 10.213.0.1"));
    });
  },
}));
