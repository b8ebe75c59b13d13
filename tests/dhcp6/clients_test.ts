/**
 * Real DHCPv6 clients (ISC `dhclient -6`, dhcpcd) against pypxe (`main.ts --ipv6 --dhcp`, a real process)
 * across a veth pair between two network namespaces: Solicit/Advertise/Request/Reply, Confirm and Renew,
 * Release, the leases6 file across a restart, Rapid Commit, and a static `ipv6addr`. Needs root and the
 * clients; skipped with the reason otherwise, unless PYPXE_REQUIRE_E2E=1 (then it fails).
 * @module
 */
import { deepEqual, equal, notEqual, ok } from "node:assert/strict";
import { iaAddresses, iaNas, serverId } from "../../src/dhcp6/accessors.ts";
import { encodeDuid, HW_ETHERNET } from "../../src/dhcp6/duid.ts";
import { getOption6, MessageType6, Opt6 } from "../../src/dhcp6/options.ts";
import { decodeDhcp6, type Dhcp6Message, encodeDhcp6 } from "../../src/dhcp6/packet.ts";
import { encodeIaAddress, encodeIaNa } from "../../src/dhcp6/values.ts";
import { ipv6ToBig } from "../../src/dhcp6/leases6.ts";
import { netnsAvailable } from "../helpers/netns.ts";
import { createPair6, fromHex, macOf, type Pair6, sendDatagrams } from "../helpers/netns6.ts";
import { inNetns, run } from "../helpers/run.ts";
import { type Daemon, type PypxeProcess, startDaemon, startPypxe } from "../helpers/servers.ts";
import { requires } from "../helpers/tools.ts";

const SERVER_IP = "10.213.6.1";
const SERVER_IP6 = "fd00:213::1";
/** pypxe's default pool: the interface's /64 with `::1:0`-`::1:ffff`. */
const POOL = { begin: "fd00:213::1:0", end: "fd00:213::1:ffff" };
const T = { sanitizeResources: true, sanitizeOps: true };

/** True when `ip` lies in the default pool. */
function inPool(ip: string): boolean {
  const n = ipv6ToBig(ip);
  return n !== undefined && n >= ipv6ToBig(POOL.begin)! && n <= ipv6ToBig(POOL.end)!;
}

async function until(check: () => boolean | Promise<boolean>, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (await check()) return true;
    await new Promise((r) => setTimeout(r, 100));
  }
  return await check();
}

const readText = async (path: string) => {
  try {
    return await Deno.readTextFile(path);
  } catch {
    return "";
  }
};

/** What one test gets: the namespaces, a temp dir, and pypxe starters. */
interface Bed {
  dir: string;
  pair: Pair6;
  /** Starts pypxe in the server namespace with `--ipv6 --interface vs --no-tftp` and `args`. */
  pypxe(args: string[]): Promise<PypxeProcess>;
  /** Starts a client daemon in the client namespace (killed at the end). */
  client(cmd: string[]): Promise<Daemon>;
}

/** Runs `fn` with a namespace pair and a temp dir; stops every process it started and removes it all. */
async function withBed(tag: string, fn: (bed: Bed) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "pypxe-dhcp6-clients-" });
  const pair = await createPair6({ tag, serverIp: SERVER_IP, serverIp6: SERVER_IP6 });
  const servers: PypxeProcess[] = [];
  const clients: Daemon[] = [];
  try {
    await fn({
      dir,
      pair,
      async pypxe(args) {
        const p = await startPypxe(
          ["--ipv6", "--interface", pair.serverIf, "--no-tftp", "--no-status", ...args],
          { prefix: inNetns(pair.server, []) },
        );
        servers.push(p);
        return p;
      },
      async client(cmd) {
        const d = await startDaemon(cmd, { netns: pair.client });
        clients.push(d);
        return d;
      },
    });
  } finally {
    for (const c of clients) await c.stop("SIGKILL");
    for (const s of servers) await s.stop("SIGTERM").catch(() => {});
    await pair.destroy();
    await Deno.remove(dir, { recursive: true });
  }
}

/** A dhclient-script that only records each event: `<reason> new=<addr> old=<addr>`. */
function dhclientScript(log: string): string {
  return `#!/bin/sh\necho "$reason new=$new_ip6_address old=$old_ip6_address" >> ${log}\nexit 0\n`;
}

/** The argv of `dhclient -6` with its own files in `dir` (`tag` tells runs apart). */
function dhclient(dir: string, tag: string, ...extra: string[]): string[] {
  return [
    "dhclient",
    "-6",
    "-v",
    ...extra,
    "-lf",
    `${dir}/${tag}.leases`,
    "-pf",
    `${dir}/${tag}.pid`,
    "-cf",
    `${dir}/empty.conf`,
    "-sf",
    `${dir}/dhclient.sh`,
    "vc",
  ];
}

/** Writes the empty dhclient.conf and the recording script; returns the script's log path. */
async function prepareDhclient(dir: string): Promise<string> {
  const log = `${dir}/dhclient.log`;
  await Deno.writeTextFile(`${dir}/empty.conf`, "");
  await Deno.writeTextFile(`${dir}/dhclient.sh`, dhclientScript(log));
  await Deno.chmod(`${dir}/dhclient.sh`, 0o755);
  return log;
}

/** The address of the first `<reason> new=ADDR` line after line `from` of the script log, once there. */
async function waitEvent(log: string, reason: string, from: number, ms = 20_000): Promise<string> {
  let found: string | undefined;
  const seen = await until(async () => {
    const lines = (await readText(log)).split("\n").slice(from);
    found = lines.find((l) => l.startsWith(`${reason} `));
    return found !== undefined;
  }, ms);
  ok(seen, `no ${reason} within ${ms} ms; script log:\n${await readText(log)}`);
  return /new=(\S*)/.exec(found!)![1];
}

const lineCount = async (path: string) => (await readText(path)).split("\n").length - 1;

/** Waits for a pypxe log line matching `pattern` (the DHCP event lines are INFO). */
async function logged(p: PypxeProcess, pattern: RegExp, ms = 10_000): Promise<string> {
  return await p.waitFor(pattern, ms).catch((err) => {
    throw new Error(`${err.message}\n${p.lines.join("\n")}`);
  });
}

/** The saved IPv6 leases: `{"MAC/IAID": {ip, expire, duid}}`. */
async function leases6(path: string): Promise<Record<string, { ip: string }>> {
  return JSON.parse(await Deno.readTextFile(path));
}

/** A DUID-LL for `mac`. */
function duidLl(mac: string): Uint8Array {
  return encodeDuid({
    type: 3,
    hardwareType: HW_ETHERNET,
    linkLayer: Uint8Array.from(mac.split(":").map((h) => parseInt(h, 16))),
  });
}

/** A Solicit with Rapid Commit for IA_NA 1 of `mac` (DUID-LL). */
function rapidSolicit(mac: string, xid: number): Uint8Array {
  const msg: Dhcp6Message = {
    type: MessageType6.SOLICIT,
    transactionId: xid,
    options: [
      { code: Opt6.CLIENTID, data: duidLl(mac) },
      { code: Opt6.ELAPSED_TIME, data: new Uint8Array(2) },
      { code: Opt6.IA_NA, data: encodeIaNa({ iaid: 1, t1: 0, t2: 0, options: [] }) },
      { code: Opt6.RAPID_COMMIT, data: new Uint8Array(0) },
    ],
  };
  return encodeDhcp6(msg);
}

/** A Release of `ip` in IA_NA 1 of `mac` to the server whose DUID is `server`. */
function release(mac: string, xid: number, server: Uint8Array, ip: string): Uint8Array {
  const ia = encodeIaNa({
    iaid: 1,
    t1: 0,
    t2: 0,
    options: [{
      code: Opt6.IAADDR,
      data: encodeIaAddress({ address: ip, preferred: 0, valid: 0, options: [] }),
    }],
  });
  return encodeDhcp6({
    type: MessageType6.RELEASE,
    transactionId: xid,
    options: [
      { code: Opt6.CLIENTID, data: duidLl(mac) },
      { code: Opt6.SERVERID, data: server },
      { code: Opt6.ELAPSED_TIME, data: new Uint8Array(2) },
      { code: Opt6.IA_NA, data: ia },
    ],
  });
}

/** Sends `bytes` to ff02::1:2 from the client namespace; the one reply, decoded (fails without one). */
async function ask(bed: Bed, bytes: Uint8Array): Promise<Dhcp6Message> {
  const r = await sendDatagrams(bed.pair.client, bed.dir, [{ target: 0, bytes }], {
    targets: [{ hostname: `ff02::1:2%${bed.pair.clientIf}`, port: 547 }],
    waitMs: 5000,
    untilReplies: 1,
    maxSeconds: 15,
  });
  equal(r.received, 1, JSON.stringify(r));
  const pkt = decodeDhcp6(fromHex(r.replies[0].hex));
  ok(pkt.type !== 12 && pkt.type !== 13, "a relay message");
  return pkt as Dhcp6Message;
}

const dhclientMissing = netnsAvailable(["dhclient"]);
const dhcpcdMissing = netnsAvailable(["dhcpcd", "unshare"]);

Deno.test(requires(dhclientMissing, {
  name:
    "dhcp6 netns: dhclient -6 binds, confirms and renews the same address; the leases6 file keeps it across a restart; release empties it",
  ...T,
  async fn() {
    await withBed("d6cl", async (bed) => {
      const { dir } = bed;
      const log = await prepareDhclient(dir);
      const leasesFile = `${dir}/leases.json`;
      const leases6File = `${dir}/leases6.json`;
      let pypxe = await bed.pypxe(["--dhcp", "--save-leases", leasesFile]);

      // 1. Solicit -> Advertise, Request -> Reply
      let client = await bed.client(dhclient(dir, "a", "-d"));
      const ip = await waitEvent(log, "BOUND6", 0);
      ok(inPool(ip), `${ip} is outside ${POOL.begin}-${POOL.end}`);
      const mac = await macOf(bed.pair.client, bed.pair.clientIf);
      await logged(pypxe, new RegExp(`${mac} SOLICIT -> ADVERTISE ${ip}$`));
      await logged(pypxe, new RegExp(`${mac} REQUEST -> REPLY ${ip}$`));

      // 2. dhclient -6 again, its lease past T1: Confirm -> Reply, then Renew -> Reply, same address
      await client.stop("SIGKILL");
      const stored = await Deno.readTextFile(`${dir}/a.leases`);
      ok(/renew \d+;/.test(stored), stored);
      await Deno.writeTextFile(`${dir}/a.leases`, stored.replace(/renew \d+;/, "renew 1;"));
      let from = await lineCount(log);
      client = await bed.client(dhclient(dir, "a", "-d"));
      equal(await waitEvent(log, "RENEW6", from), ip);
      const renew = (await readText(log)).split("\n").slice(from).find((l) => l.startsWith("RENEW6"))!;
      ok(renew.includes(`old=${ip}`), renew);
      await logged(pypxe, new RegExp(`${mac} CONFIRM -> REPLY \\[confirmed\\]$`));
      await logged(pypxe, new RegExp(`${mac} RENEW -> REPLY \\[renew\\]$`));

      // 3. stopped while the client holds it: the leases6 file has the binding
      await client.stop("SIGKILL");
      equal(await pypxe.stop(), 0);
      ok(
        pypxe.lines.some((l) => l.includes(`stopped: 1 IPv6 lease saved to ${leases6File}`)),
        pypxe.lines.join("\n"),
      );
      const saved = await leases6(leases6File);
      deepEqual(Object.values(saved).map((b) => b.ip), [ip], JSON.stringify(saved));
      ok(Object.keys(saved)[0].startsWith(`${mac}/`), JSON.stringify(saved));

      // 4. restarted on the same file: another client does not get that address, dhclient (fresh
      // state, so a new Solicit) gets it back
      pypxe = await bed.pypxe(["--dhcp", "--save-leases", leasesFile]);
      const other = "02:00:00:00:0b:01";
      const reply = await ask(bed, rapidSolicit(other, 0x0b0001));
      equal(reply.type, MessageType6.REPLY);
      const otherIp = iaAddresses(iaNas(reply)[0])[0]?.address;
      ok(otherIp !== undefined && inPool(otherIp), `other client got ${otherIp}`);
      notEqual(otherIp, ip);
      from = await lineCount(log);
      client = await bed.client(dhclient(dir, "b", "-d"));
      equal(await waitEvent(log, "BOUND6", from), ip);

      // 5. dhclient -r releases it; the other client releases too: the file is empty after the stop
      from = await lineCount(log);
      const r = await run(dhclient(dir, "b", "-r"), { netns: bed.pair.client, timeoutMs: 30_000 });
      equal(r.code, 0, r.stderr);
      await logged(pypxe, new RegExp(`${mac} RELEASE -> REPLY \\[released\\]$`));
      ok(await until(() => client.exited(), 10_000), "dhclient -r did not stop the running dhclient");
      const released = await ask(bed, release(other, 0x0b0002, getOption6(reply, Opt6.SERVERID)!, otherIp));
      equal(released.type, MessageType6.REPLY);
      ok(serverId(released) !== undefined);
      await logged(pypxe, new RegExp(`${other} RELEASE -> REPLY \\[released\\]$`));
      equal(await pypxe.stop(), 0);
      ok(pypxe.lines.some((l) => l.includes(`stopped: 0 IPv6 leases saved`)), pypxe.lines.join("\n"));
      deepEqual(await leases6(leases6File), {});
    });
  },
}));

Deno.test(requires(dhcpcdMissing, {
  name: "dhcp6 netns: dhcpcd gets an address of the pool with Rapid Commit (Solicit -> Reply)",
  ...T,
  async fn() {
    await withBed("d6cd", async (bed) => {
      const { dir } = bed;
      const pypxe = await bed.pypxe(["--dhcp"]);
      const log = `${dir}/dhcpcd.log`;
      await Deno.writeTextFile(
        `${dir}/dhcpcd.sh`,
        `#!/bin/sh\necho "$reason $new_dhcp6_ia_na1_ia_addr1" >> ${log}\nexit 0\n`,
      );
      await Deno.chmod(`${dir}/dhcpcd.sh`, 0o755);
      // DHCPv6 only, no router solicitation: ia_na starts DHCPv6 without a router advert
      await Deno.writeTextFile(
        `${dir}/dhcpcd.conf`,
        `ipv6only\nnoipv6rs\nduid\nia_na 1\noption rapid_commit\nscript ${dir}/dhcpcd.sh\n`,
      );
      // its DUID, leases and pid files go to tmpfs mounts private to this run, not the host's
      const mounts = "mkdir -p /run/dhcpcd && mount -t tmpfs tmpfs /run/dhcpcd && " +
        "mount -t tmpfs tmpfs /var/lib/dhcpcd";
      const r = await run([
        "unshare",
        "-m",
        "sh",
        "-c",
        `${mounts} && exec dhcpcd -f ${dir}/dhcpcd.conf -6 -1 -B -d -t 20 vc`,
      ], { netns: bed.pair.client, timeoutMs: 40_000 });
      equal(r.code, 0, `${r.stdout}\n${r.stderr}`);
      const bound = (await readText(log)).split("\n").find((l) => l.startsWith("BOUND6 "));
      ok(bound, `${await readText(log)}\n${r.stderr}`);
      const ip = bound.split(" ")[1];
      ok(inPool(ip), `${ip} is outside ${POOL.begin}-${POOL.end}`);
      const mac = await macOf(bed.pair.client, bed.pair.clientIf);
      await logged(pypxe, new RegExp(`${mac} SOLICIT -> REPLY ${ip} \\[rapid commit\\]$`));
    });
  },
}));

Deno.test(requires(dhclientMissing, {
  name: "dhcp6 netns: a static ipv6addr for the client's MAC is exactly the address dhclient -6 gets",
  ...T,
  async fn() {
    await withBed("d6st", async (bed) => {
      const { dir } = bed;
      const log = await prepareDhclient(dir);
      const mac = await macOf(bed.pair.client, bed.pair.clientIf);
      const fixed = "fd00:213::50"; // outside the pool: given only because of the static lease
      await Deno.writeTextFile(
        `${dir}/static.json`,
        JSON.stringify({ dhcp: { binding: { [mac.toUpperCase()]: { ipv6addr: fixed } } } }),
      );
      const pypxe = await bed.pypxe(["--dhcp", "--static-config", `${dir}/static.json`]);
      // another machine is given a pool address, never the reserved one (asked first: dhclient's
      // socket on port 546 would take the reply)
      const reply = await ask(bed, rapidSolicit("02:00:00:00:0c:01", 0x0c0001));
      const otherIp = iaAddresses(iaNas(reply)[0])[0]?.address;
      ok(otherIp !== undefined && inPool(otherIp), `other client got ${otherIp}`);
      await bed.client(dhclient(dir, "s", "-d"));
      equal(await waitEvent(log, "BOUND6", 0), fixed);
      await logged(pypxe, new RegExp(`${mac} SOLICIT -> ADVERTISE ${fixed}$`));
      await logged(pypxe, new RegExp(`${mac} REQUEST -> REPLY ${fixed}$`));
    });
  },
}));
