/**
 * Real firmware boots over IPv6 end to end (issue 14): QEMU OVMF clients on an IPv6 segment (a bridge in
 * network namespaces, the server at fd00:1::1/64, no DHCPv4: pypxe runs with --no-dhcp4) boot the same
 * kernel + busybox initramfs as tests/e2e/boot_test.ts and must print this run's marker on their serial
 * console:
 *
 * 1. full DHCPv6: OVMF PXE over IPv6 -> TFTP ipxe.efi over IPv6 -> iPXE DHCPv6 -> generated
 *    boot.http.ipxe over HTTP on IPv6 -> kernel over HTTP on IPv6;
 * 2. UEFI HTTP boot over IPv6 (arch 16): OVMF's HTTPv4 attempt times out (no DHCPv4 on the segment), its
 *    HTTPv6 one fetches ipxe.efi from pypxe -> then as in 1;
 * 3. proxyDHCPv6 beside dnsmasq (addresses and router advertisements, no boot options): OVMF takes the
 *    address from dnsmasq and the boot file from pypxe's Advertise and its Reply on port 4011 -> TFTP
 *    ipxe.efi over IPv6 from pypxe; Debian's iPXE (1.0.0+git-20190125) has no proxyDHCPv6: it takes
 *    dnsmasq's Advertise (the only one with an address) and stops at "Nothing to boot", a documented limit
 *    this test pins (an iPXE that learns it would boot on and show up here);
 * 4. the same with Debian's signed network GRUB (grubx64.efi) as the boot file: GRUB 2.06 takes its
 *    address from the site's Reply but no server or prefix (it reads no proxy offer) and stops at its
 *    prompt without requesting grub/grub.cfg, another documented limit pinned here.
 *
 * Router advertisements (iPXE configures IPv6 only after one: M for DHCPv6) come from pypxe's `--ra` in
 * 1 and 2, from dnsmasq (`--enable-ra`) in 3, as a site's router would.
 * Each test prints the time from QEMU's start to the marker. Logs (serial, pypxe, dnsmasq, packet
 * capture) of every run are kept under $PYPXE_E2E_LOGS (default /tmp/pypxe-e2e-logs)/ipv6-*.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { EMBEDDED_ROOT } from "../../src/netboot/fs.ts";
import { netnsAvailable, Segment } from "../helpers/netns.ts";
import { buildPayload, envOr } from "../helpers/qemu.ts";
import { run } from "../helpers/run.ts";
import { addHost6, bootVm6, enableIpv6, SERVER6, type Uefi6Stack } from "../helpers/segment6.ts";
import { type Daemon, type PypxeProcess, startDaemon, startPypxe } from "../helpers/servers.ts";
import { requires } from "../helpers/tools.ts";

const LOGS = envOr("PYPXE_E2E_LOGS", "/tmp/pypxe-e2e-logs");
/** How long one QEMU boot may take (TCG; the HTTP boot spends about a minute on its HTTPv4 attempt). */
const BOOT_TIMEOUT_MS = Number(envOr("PYPXE_E2E_IPV6_TIMEOUT_MS", "210000"));
const HTTP_PORT = 8080;
const OVMF_CODE = "/usr/share/OVMF/OVMF_CODE_4M.fd";
const CMDLINE = "console=ttyS0 panic=-1 quiet";
/** The server in URLs. */
const SRV = `[${SERVER6}]`;
/** An address of the segment's /64 (a client's, in log lines). */
const V6 = String.raw`\[fd00:1::[0-9a-f:]+\]`;

function isFile(path: string): boolean {
  try {
    return Deno.statSync(path).isFile;
  } catch {
    return false;
  }
}
const missing = [OVMF_CODE, join(EMBEDDED_ROOT, "ipxe.efi")].filter((p) => !isFile(p));
const unavailable = [
  netnsAvailable(["qemu-system-x86_64", "cpio", "tcpdump", "dnsmasq", "busybox"]),
  missing.length > 0 ? `missing ${missing.join(", ")}: apt-get install ovmf ipxe; deno task netboot` : null,
];

/** One IPv6 boot scenario. */
interface Scenario6 {
  readonly name: string;
  readonly tag: string;
  readonly stack: Uefi6Stack;
  /** pypxe flags besides --interface/--netboot-dir/--verbose. */
  readonly args: readonly string[];
  /** A site's DHCPv6 server and router on the segment: dnsmasq with these flags. */
  readonly dnsmasq?: readonly string[];
  /** Serial text that ends a boot expected to stop short of the payload (a documented limit). */
  readonly stopAt?: string;
  /** Lines pypxe's log must show, in this order. */
  readonly expectLog: readonly RegExp[];
  /** Lines the serial console must show. */
  readonly expectSerial: readonly RegExp[];
  /** tcpdump filters the capture must match at least once. */
  readonly expectPackets?: readonly string[];
}

/** A menu.json whose default entry boots the payload at once: pypxe generates boot.http.ipxe from it. */
const MENU = JSON.stringify({
  timeout: 1,
  default: "marker",
  entries: [{
    id: "marker",
    label: "Marker payload",
    kernel: "vmlinuz",
    initrd: "initrd.img",
    cmdline: CMDLINE,
  }],
});

const esc = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
const URL_IPXE = esc(`http://${SRV}:${HTTP_PORT}/ipxe.efi`);
const URL_MENU = esc(`http://${SRV}:${HTTP_PORT}/boot.http.ipxe`);

/** pypxe's `--ra` at work: M (addresses from DHCPv6) and O, the server's /64. */
const RA_LINE = /dhcp6\.ra +advertising fd00:1::\/64 on srv0, flags MO,/;

/** pypxe's log lines of the iPXE stage: DHCPv6, the generated menu and the payload, all over IPv6. */
const IPXE_STAGE = [
  new RegExp(String.raw`SOLICIT \(iPXE UEFI x64 \(IPv6\)\) -> ADVERTISE fd00:1::\S+ ${URL_MENU}`),
  new RegExp(String.raw`REQUEST \(iPXE UEFI x64 \(IPv6\)\) -> REPLY fd00:1::\S+ ${URL_MENU}`),
  new RegExp(String.raw`http +${V6}:\d+ /boot\.http\.ipxe 200 `),
  new RegExp(String.raw`http +${V6}:\d+ /vmlinuz 200 `),
  new RegExp(String.raw`http +${V6}:\d+ /initrd\.img 200 `),
];

const scenarios: Scenario6[] = [
  {
    name: "OVMF PXE over IPv6, full DHCPv6: TFTP ipxe.efi -> iPXE DHCPv6 -> HTTP boot.http.ipxe -> kernel",
    tag: "v6full",
    stack: "pxe6",
    args: ["--ipv6", "--no-dhcp4", "--dhcp", "--ra", "--ipxe", "--http", "--http-port", String(HTTP_PORT)],
    expectLog: [
      RA_LINE,
      // OVMF's PXE Solicit: an address and the TFTP URL (no vendor class: see src/dhcp6/responder.ts)
      /SOLICIT \(UEFI x64 \(IPv6\)\) -> ADVERTISE fd00:1::\S+ ipxe\.efi/,
      /REQUEST \(UEFI x64 \(IPv6\)\) -> REPLY fd00:1::\S+ ipxe\.efi/,
      new RegExp(String.raw`tftp +${V6}:\d+ ipxe\.efi [\d.]+ MB in `),
      ...IPXE_STAGE,
    ],
    expectSerial: [
      /Start PXE over IPv6/,
      /NBP filename is ipxe\.efi/,
      new RegExp(`Filename: ${URL_MENU}`),
    ],
  },
  {
    name: "OVMF UEFI HTTP boot over IPv6 (arch 16): HTTP ipxe.efi -> iPXE DHCPv6 -> boot.http.ipxe -> kernel",
    tag: "v6http",
    stack: "http",
    args: ["--ipv6", "--no-dhcp4", "--dhcp", "--ra", "--ipxe", "--http", "--http-port", String(HTTP_PORT)],
    expectLog: [
      RA_LINE,
      new RegExp(String.raw`SOLICIT \(UEFI HTTP x64 \(IPv6\)\) -> ADVERTISE fd00:1::\S+ ${URL_IPXE}`),
      new RegExp(String.raw`REQUEST \(UEFI HTTP x64 \(IPv6\)\) -> REPLY fd00:1::\S+ ${URL_IPXE}`),
      new RegExp(String.raw`http +${V6}:\d+ /ipxe\.efi 200 \d+ `),
      ...IPXE_STAGE,
    ],
    expectSerial: [/Start HTTP Boot over IPv6/, new RegExp(`URI: ${URL_IPXE}`)],
  },
  {
    name:
      "proxyDHCPv6 beside dnsmasq: OVMF PXE over IPv6 -> pypxe Advertise + 4011 Reply -> TFTP ipxe.efi; " +
      "iPXE 2019 has no proxyDHCPv6 (documented stop)",
    tag: "v6proxy",
    stack: "pxe6",
    args: ["--ipv6", "--no-dhcp4", "--dhcp-proxy", "--ipxe", "--http", "--http-port", String(HTTP_PORT)],
    // the site's server: addresses only, M+O router advertisements for the /64, no DNS (port 0)
    dnsmasq: ["--enable-ra", "--dhcp-range=fd00:1::100,fd00:1::1ff,64,1h"],
    stopAt: "Nothing to boot",
    expectLog: [
      /SOLICIT \(UEFI x64 \(IPv6\)\) -> proxy ADVERTISE ipxe\.efi/,
      // EDK2's boot-server Request, unicast to port 4011 (the capture proves the port)
      /REQUEST \(UEFI x64 \(IPv6\)\) -> proxy REPLY ipxe\.efi/,
      new RegExp(String.raw`tftp +\[fd00:1::1[0-9a-f]{2}\]:\d+ ipxe\.efi [\d.]+ MB in `),
      // pypxe offers iPXE its script too, but iPXE takes only an Advertise with an address
      new RegExp(String.raw`SOLICIT \(iPXE UEFI x64 \(IPv6\)\) -> proxy ADVERTISE ${URL_MENU}`),
    ],
    expectSerial: [
      /Start PXE over IPv6/,
      // the address is dnsmasq's, the server and file pypxe's
      /Station IP address is FD00:1:0:0:0:0:0:1[0-9A-F]{2}\b/,
      /Server IP address is FD00:1:0:0:0:0:0:1\b/,
      /NBP filename is ipxe\.efi/,
      /net0: fd00:1::1[0-9a-f]{2}\/64/,
    ],
    expectPackets: [
      `udp dst port 4011 and dst host ${SERVER6}`,
      `udp src port 4011 and src host ${SERVER6}`,
    ],
  },
  {
    // GRUB as the second stage: Debian's signed network GRUB 2.06 (efinet) configures its interface from
    // the PXE base code's DhcpAck only, which in proxy mode is the site server's Reply (an address, no
    // boot file URL): it never sees pypxe's proxy Advertise / 4011 Reply, so $root, $prefix and
    // $net_default_server stay empty, it requests nothing more and stops at its prompt. A documented
    // limit this test pins (as boot_test.ts does for IPv4 proxyDHCP + Secure Boot).
    name:
      "proxyDHCPv6 beside dnsmasq: OVMF PXE over IPv6 -> pypxe Advertise + 4011 Reply -> TFTP grubx64.efi; " +
      "GRUB 2.06 reads only the site's DHCPv6 Reply (documented stop)",
    tag: "v6grub",
    stack: "pxe6",
    args: ["--ipv6", "--no-dhcp4", "--dhcp-proxy", "--netboot-file-efi64", "grubx64.efi"],
    dnsmasq: ["--enable-ra", "--dhcp-range=fd00:1::100,fd00:1::1ff,64,1h"],
    stopAt: "grub> ",
    expectLog: [
      /SOLICIT \(UEFI x64 \(IPv6\)\) -> proxy ADVERTISE grubx64\.efi/,
      /REQUEST \(UEFI x64 \(IPv6\)\) -> proxy REPLY grubx64\.efi/,
      new RegExp(String.raw`tftp +\[fd00:1::1[0-9a-f]{2}\]:\d+ grubx64\.efi [\d.]+ MB in `),
    ],
    expectSerial: [
      /Station IP address is FD00:1:0:0:0:0:0:1[0-9A-F]{2}\b/,
      /NBP filename is grubx64\.efi/,
      /Welcome to GRUB!/,
    ],
  },
];

/** `text` without terminal escapes and carriage returns, as lines (OVMF and iPXE draw on the console). */
function consoleLines(text: string): string[] {
  // deno-lint-ignore no-control-regex
  return text.replace(/\x1b\[[0-9;=?]*[A-Za-z]/g, "").split(/\r?\n|\r/).filter((l) => l.trim() !== "");
}

/** How many packets of the capture match `filter`. */
async function countPackets(pcap: string, filter: string): Promise<number> {
  const r = await run(["tcpdump", "-nr", pcap, filter], { timeoutMs: 30_000 });
  return r.stdout.split("\n").filter((l) => l.trim() !== "").length;
}

async function runScenario(s: Scenario6): Promise<void> {
  const logDir = join(LOGS, `ipv6-${s.tag}`);
  await Deno.mkdir(logDir, { recursive: true });
  const overlay = await Deno.makeTempDir({ prefix: "pypxe-e2e6-netboot-" });
  const marker = `PYPXE-E2E6-${crypto.randomUUID().slice(0, 8)}`;
  const serialLog = join(logDir, "serial.log");
  const pcapFile = join(logDir, "segment.pcap");
  let seg: Segment | undefined;
  let pcap: Daemon | undefined;
  let dnsmasq: Daemon | undefined;
  let pypxe: PypxeProcess | undefined;
  let serial = "";
  let ok = false;
  try {
    await buildPayload(overlay, marker);
    await Deno.writeTextFile(join(overlay, "menu.json"), MENU);
    seg = await Segment.create(s.tag);
    await enableIpv6(seg);
    pcap = await startDaemon(["tcpdump", "-q", "-U", "-i", seg.serverIf, "-w", pcapFile], {
      netns: seg.serverNs,
      ready: /listening on/,
    });
    if (s.dnsmasq) {
      const host = await addHost6(seg, `${seg.subnet}.2`, "fd00:1::2");
      dnsmasq = await startDaemon([
        "dnsmasq",
        "-d",
        "--port=0",
        `--interface=${host.ifname}`,
        "--bind-interfaces",
        "--no-resolv",
        "--no-hosts",
        "--log-dhcp",
        "--pid-file=",
        ...s.dnsmasq,
      ], { netns: host.ns, ready: /DHCPv6, IP range/ });
    }
    pypxe = await startPypxe(
      ["--interface", seg.serverIf, "--netboot-dir", overlay, "--verbose", "all", ...s.args],
      { prefix: seg.inServer() },
    );
    const boot = () =>
      bootVm6({
        segment: seg!,
        stack: s.stack,
        marker: s.stopAt ?? marker,
        mac: "52:54:00:e6:06:10",
        serialLog,
        timeoutMs: BOOT_TIMEOUT_MS,
      });
    let result = await boot();
    if (
      !result.ok && s.dnsmasq && /PXE-E16/.test(result.serial) &&
      pypxe.lines.some((l) => /proxy REPLY/.test(l))
    ) {
      // OVMF race beside a site server whose RA has the M flag: its IP6 stack holds a second DHCPv6 address
      // and the 4011 Request can leave from that one, while PXE takes the reply only on its own address
      // (the Request carries no IA_NA to tell which): PXE-E16 although pypxe answered. Seen in 2 of ~20 runs.
      console.log(`${s.tag}: PXE-E16 after pypxe's 4011 Reply (OVMF source-address race): booting once more`);
      result = await boot();
    }
    serial = result.serial;
    const what = s.stopAt ? `stopped at "${s.stopAt}" (documented)` : "booted (marker seen)";
    console.log(
      `${s.tag}: ${result.ok ? what : "NOT booted"} after ${result.seconds.toFixed(1)} s from QEMU start`,
    );
    assert.ok(
      result.ok,
      `${s.tag}: ${s.stopAt ?? `marker ${marker}`} not on the serial console\n${result.qemuStderr}`,
    );
    await pypxe.stop("SIGTERM");
    await pcap.stop();
    const log = pypxe.lines.join("\n");
    let from = 0;
    for (const re of s.expectLog) {
      const at = pypxe.lines.findIndex((l, i) => i >= from && re.test(l));
      assert.ok(at >= 0, `${s.tag}: pypxe's log lacks ${re} (after line ${from})`);
      from = at + 1;
    }
    // IPv6 only: no IPv4 client in pypxe's log, no IPv4 packet from the server on the wire
    assert.doesNotMatch(
      log,
      /(dhcp|tftp|http) +\d+\.\d+\.\d+\.\d+/,
      `${s.tag}: an IPv4 client in pypxe's log`,
    );
    assert.equal(await countPackets(pcapFile, `ip and src host ${seg.serverIp}`), 0, "pypxe sent IPv4");
    for (const re of s.expectSerial) assert.match(serial, re, `${s.tag}: serial console lacks ${re}`);
    for (const filter of s.expectPackets ?? []) {
      assert.ok((await countPackets(pcapFile, filter)) > 0, `${s.tag}: no packet matches "${filter}"`);
    }
    ok = true;
  } finally {
    const pypxeCode = pypxe ? await pypxe.stop("SIGTERM") : null;
    await dnsmasq?.stop();
    await pcap?.stop();
    await seg?.destroy();
    await Deno.remove(overlay, { recursive: true });
    if (pypxe) {
      await Deno.writeTextFile(join(logDir, "pypxe.log"), `${pypxe.lines.join("\n")}\nexit ${pypxeCode}\n`);
    }
    if (dnsmasq) await Deno.writeTextFile(join(logDir, "dnsmasq.log"), dnsmasq.lines.join("\n") + "\n");
    if (!ok) {
      if (serial === "") serial = await Deno.readTextFile(serialLog).catch(() => "");
      console.log(`--- ${s.tag}: serial console (last 30 lines; logs in ${logDir}) ---`);
      console.log(consoleLines(serial).slice(-30).map((l) => l.slice(0, 200)).join("\n"));
      console.log(`--- ${s.tag}: pypxe's log (last 40 lines) ---`);
      console.log((pypxe?.lines ?? []).slice(-40).join("\n"));
      if (dnsmasq) {
        console.log(`--- ${s.tag}: dnsmasq (last 20 lines) ---`);
        console.log(dnsmasq.lines.slice(-20).join("\n"));
      }
    }
  }
}

for (const scenario of scenarios) {
  // the GRUB scenario needs Debian's signed network GRUB in the tree (grub-efi-amd64-signed)
  const grub = join(EMBEDDED_ROOT, "grubx64.efi");
  const lacking = scenario.args.includes("grubx64.efi") && !isFile(grub)
    ? `missing ${grub}: apt-get install grub-efi-amd64-signed; deno task netboot`
    : null;
  Deno.test(requires([...unavailable, lacking], {
    name: `e2e ipv6: ${scenario.name}`,
    fn: () => runScenario(scenario),
  }));
}
