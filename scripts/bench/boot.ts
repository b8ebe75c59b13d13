/**
 * `deno task bench boot [--runs N]`: the same QEMU BIOS and UEFI network boots served by dnsmasq (DHCP +
 * TFTP, same files) and by pypxe, alternating, in network namespaces. Prints seconds from QEMU start to
 * the payload's marker, and the pypxe/dnsmasq ratio (below 1.0 means pypxe boots faster).
 * Needs root, qemu-system-x86, ovmf, ipxe-qemu, dnsmasq, busybox-static and a Debian kernel.
 * @module
 */
import { join } from "node:path";
import { netnsAvailable, Segment } from "../../tests/helpers/netns.ts";
import { bootVm, buildPayload, type Firmware } from "../../tests/helpers/qemu.ts";
import { startDnsmasqDhcp, startPypxe } from "../../tests/helpers/servers.ts";

const ROOT = new URL("../..", import.meta.url).pathname;
const CMDLINE = "console=ttyS0 panic=-1 quiet";

async function prepareTree(dir: string, marker: string): Promise<void> {
  await buildPayload(dir, marker);
  for (const f of ["pxelinux.0", "ldlinux.c32", "undionly.kpxe", "ipxe.efi"]) {
    await Deno.copyFile(join(ROOT, "netboot", f), join(dir, f));
  }
  await Deno.mkdir(join(dir, "pxelinux.cfg"), { recursive: true });
  await Deno.writeTextFile(
    join(dir, "pxelinux.cfg", "default"),
    `DEFAULT m\nPROMPT 0\nLABEL m\n  KERNEL vmlinuz\n  INITRD initrd.img\n  APPEND ${CMDLINE}\n`,
  );
  await Deno.writeTextFile(
    join(dir, "boot.ipxe"),
    `#!ipxe\nkernel tftp://\${next-server}/vmlinuz initrd=initrd.img ${CMDLINE}\ninitrd tftp://\${next-server}/initrd.img\nboot\n`,
  );
}

async function bootWith(server: "dnsmasq" | "pypxe", firmware: Firmware, dir: string, marker: string) {
  const seg = await Segment.create(`bb${server[0]}`);
  let stop: () => Promise<void> = async () => {};
  try {
    if (server === "dnsmasq") {
      const dnsmasq = await startDnsmasqDhcp(seg.serverNs, seg.serverIf, seg.subnet, [
        "--enable-tftp",
        `--tftp-root=${dir}`,
        "--dhcp-match=set:efi,option:client-arch,7",
        "--dhcp-match=set:efi,option:client-arch,9",
        "--dhcp-match=set:ipxe,175",
        "--dhcp-boot=tag:efi,tag:!ipxe,ipxe.efi",
        "--dhcp-boot=tag:efi,tag:ipxe,boot.ipxe",
        "--dhcp-boot=tag:!efi,pxelinux.0",
      ]);
      stop = async () => void (await dnsmasq.stop());
    } else {
      const pypxe = await startPypxe(["--dhcp", "--interface", seg.serverIf, "--netboot-dir", dir], {
        prefix: seg.inServer(),
      });
      stop = async () => void (await pypxe.stop("SIGTERM"));
    }
    const log = await Deno.makeTempFile({ prefix: "pypxe-bench-serial-" });
    const result = await bootVm({ segment: seg, firmware, uefiStack: "pxe", marker, serialLog: log });
    await Deno.remove(log);
    return result;
  } finally {
    await stop();
    await seg.destroy();
  }
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length === 0 ? NaN : s[Math.floor(s.length / 2)];
}

if (import.meta.main) {
  const reason = netnsAvailable(["qemu-system-x86_64", "cpio", "dnsmasq"]);
  if (reason !== null) {
    console.error(`bench boot: cannot run: ${reason}`);
    Deno.exit(1);
  }
  const i = Deno.args.indexOf("--runs");
  const runs = i >= 0 ? Number(Deno.args[i + 1]) : 2;
  const dir = await Deno.makeTempDir({ prefix: "pypxe-bench-boot-" });
  const marker = `PYPXE-BENCH-${crypto.randomUUID().slice(0, 8)}`;
  await prepareTree(dir, marker);
  const times: Record<string, number[]> = {};
  try {
    for (let run = 0; run < runs; run++) {
      for (const firmware of ["bios", "uefi"] as const) {
        for (const server of run % 2 === 0 ? ["dnsmasq", "pypxe"] as const : ["pypxe", "dnsmasq"] as const) {
          const r = await bootWith(server, firmware, dir, marker);
          const key = `${firmware} ${server}`;
          (times[key] ??= []).push(r.ok ? r.seconds : NaN);
          console.log(`run ${run + 1} ${key}: ${r.ok ? `${r.seconds.toFixed(1)} s` : "FAILED"}`);
        }
      }
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
  console.log("\nfirmware  dnsmasq s  pypxe s  ratio (pypxe/dnsmasq, <= 1.10 is the target)");
  for (const firmware of ["bios", "uefi"]) {
    const d = median(times[`${firmware} dnsmasq`]);
    const p = median(times[`${firmware} pypxe`]);
    console.log(
      `${firmware.padEnd(8)}  ${d.toFixed(1).padStart(9)}  ${p.toFixed(1).padStart(7)}  ${
        (p / d).toFixed(2)
      }`,
    );
  }
}
