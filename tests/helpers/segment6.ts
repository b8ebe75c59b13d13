/**
 * IPv6 on a {@linkcode Segment} (tests/helpers/netns.ts builds it with IPv6 off): {@linkcode enableIpv6}
 * turns it on in the server namespace with a ULA address (no duplicate address detection, so the address
 * and the link-local one are usable at once) and stops the bridge from snooping multicast (so ff02::1:2
 * reaches every DHCPv6 server on the segment whatever MLD reports got lost); {@linkcode addHost6} adds a
 * further host namespace with IPv6 on (a site's DHCPv6 server or router); {@linkcode bootVm6} boots an
 * OVMF client whose IPv4 PXE stack is off and IPv6 one on (`pxe6`), or which does UEFI HTTP boot with
 * both PXE stacks off (`http`, the HTTPv4 attempt times out before HTTPv6).
 * @module
 */
import { bootVm, type BootVmOptions } from "./qemu.ts";
import type { Segment } from "./netns.ts";
import { run } from "./run.ts";

/** The segment's /64 (every segment lives in its own namespaces, so they can share it). */
export const PREFIX6 = "fd00:1::";
/** The server's IPv6 address on the segment. */
export const SERVER6 = "fd00:1::1";

async function step(cmd: string[], netns: string): Promise<void> {
  await run(cmd, { netns, check: true, timeoutMs: 30_000 });
}

/** Turns IPv6 on for `ifname` in `ns` without DAD and adds `address`/64 (none when null). */
async function ipv6On(ns: string, ifname: string, address: string | null): Promise<void> {
  await step([
    "sysctl",
    "-qw",
    "net.ipv6.conf.all.accept_dad=0",
    "net.ipv6.conf.default.accept_dad=0",
    `net.ipv6.conf.${ifname}.accept_dad=0`,
    "net.ipv6.conf.all.disable_ipv6=0",
    "net.ipv6.conf.default.disable_ipv6=0",
    `net.ipv6.conf.${ifname}.disable_ipv6=0`,
    // a host, not a router: take no RA's prefix or route for itself
    `net.ipv6.conf.${ifname}.accept_ra=0`,
  ], ns);
  if (address !== null) await step(["ip", "-6", "addr", "add", `${address}/64`, "dev", ifname, "nodad"], ns);
  // the link-local address is what DHCPv6 replies come from: wait until the kernel has it
  const deadline = Date.now() + 5000;
  for (;;) {
    const r = await run(["ip", "-6", "-o", "addr", "show", "dev", ifname, "scope", "link"], {
      netns: ns,
      timeoutMs: 5000,
    });
    if (/inet6 fe80::/.test(r.stdout) && !/tentative/.test(r.stdout)) return;
    if (Date.now() > deadline) throw new Error(`${ifname} in ${ns} has no link-local address: ${r.stdout}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** IPv6 on the segment: {@linkcode SERVER6}/64 on the server's `srv0`, multicast snooping off. */
export async function enableIpv6(seg: Segment): Promise<void> {
  await ipv6On(seg.serverNs, seg.serverIf, SERVER6);
  await step(["ip", "link", "set", "br0", "type", "bridge", "mcast_snooping", "0"], seg.clientNs);
}

/** A further host on the segment with `ip4`/24 and `ip6`/64 on its `eth0`. */
export async function addHost6(
  seg: Segment,
  ip4: string,
  ip6: string,
): Promise<{ ns: string; ifname: string }> {
  const host = await seg.addHost(ip4);
  await ipv6On(host.ns, host.ifname, ip6);
  return host;
}

/** OVMF's network boot stacks: PXE over IPv6 only, or UEFI HTTP boot (IPv4 then IPv6). */
export type Uefi6Stack = "pxe6" | "http";

/**
 * Boots one OVMF client (see `bootVm`): `pxe6` switches OVMF's PXE over IPv4 off and over IPv6 on
 * through its fw_cfg knobs; `http` is `bootVm`'s UEFI HTTP boot (both PXE stacks off).
 */
export function bootVm6(
  opts: Omit<BootVmOptions, "firmware" | "uefiStack"> & { stack: Uefi6Stack },
): ReturnType<typeof bootVm> {
  const { stack, ...rest } = opts;
  if (stack === "http") return bootVm({ ...rest, firmware: "uefi", uefiStack: "http" });
  // bootVm runs QEMU through segment.inClient(): a shell there appends the fw_cfg knobs and execs QEMU
  // (so QEMU keeps the child's pid)
  const seg = opts.segment;
  const knobs = "-fw_cfg name=opt/org.tianocore/IPv4PXESupport,string=n " +
    "-fw_cfg name=opt/org.tianocore/IPv6PXESupport,string=y";
  const segment = Object.create(seg, {
    inClient: { value: () => [...seg.inClient(), "sh", "-c", `exec "$0" "$@" ${knobs}`] },
    addTap: { value: () => seg.addTap() },
  }) as Segment;
  return bootVm({ ...rest, segment, firmware: "uefi", uefiStack: "pxe" });
}
