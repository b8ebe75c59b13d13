/**
 * End-to-end harness: an isolated Ethernet segment made of network namespaces, a Linux payload that
 * prints a per-run marker, and QEMU clients (SeaBIOS + iPXE ROM, or OVMF) that PXE-boot from it.
 *
 * Topology per segment `<tag>`: namespace `pxe-<tag>-s` holds the server's veth end (10.<n>.0.1/24);
 * namespace `pxe-<tag>-c` holds a bridge joining the veth's other end and one tap per QEMU client.
 * Nothing is routed; everything is removed by `destroy()` (and by name at the start of the next run).
 * @module
 */
import { join } from "node:path";
import { missingTools, needsRoot } from "../helpers/tools.ts";

/** Result of a finished command. */
export interface ShResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs a command to completion within `timeoutMs` (killed after). */
export async function sh(
  cmd: string[],
  opts: { timeoutMs?: number; check?: boolean } = {},
): Promise<ShResult> {
  const child = new Deno.Command(cmd[0], {
    args: cmd.slice(1),
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const timer = setTimeout(() => child.kill("SIGKILL"), opts.timeoutMs ?? 30_000);
  try {
    const out = await child.output();
    const result = {
      code: out.code,
      stdout: new TextDecoder().decode(out.stdout),
      stderr: new TextDecoder().decode(out.stderr),
    };
    if (opts.check !== false && result.code !== 0) {
      throw new Error(`${cmd.join(" ")} exited ${result.code}: ${result.stderr.trim()}`);
    }
    return result;
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Returns why the e2e tier cannot run here, or null when it can. Pass it to `requires` (tests/helpers/
 * tools.ts): with `PYPXE_REQUIRE_E2E=1` the test then fails instead of skipping.
 */
export async function e2eUnavailable(
  tools: string[] = ["qemu-system-x86_64", "ip", "cpio"],
): Promise<string | null> {
  if (needsRoot() !== null) return "needs root (network namespaces, taps)";
  const missing = missingTools(...tools);
  if (missing !== null) return missing;
  const probe = await sh(["ip", "netns", "add", "pxe-probe"], { check: false });
  if (probe.code !== 0) return `ip netns does not work here: ${probe.stderr.trim()}`;
  await sh(["ip", "netns", "del", "pxe-probe"], { check: false });
  return null;
}

/** True when missing tools must fail the run instead of skipping (from tests/helpers/tools.ts). */
export { REQUIRE_E2E } from "../helpers/tools.ts";

let segmentCounter = 0;

/** An isolated segment: server namespace, client namespace with a bridge, taps for QEMU. */
export class Segment {
  readonly serverNs: string;
  readonly clientNs: string;
  readonly serverIp: string;
  readonly subnet: string;
  readonly serverIf = "srv0";
  #taps = 0;
  #hosts = 0;
  #extra: string[] = [];

  private constructor(readonly tag: string, readonly index: number) {
    this.serverNs = `pxe-${tag}-s`;
    this.clientNs = `pxe-${tag}-c`;
    this.subnet = `10.${200 + index}.0`;
    this.serverIp = `${this.subnet}.1`;
  }

  /** Creates the namespaces, veth, bridge; IPv6 off so iPXE does not wait for router adverts. */
  static async create(tag: string): Promise<Segment> {
    const seg = new Segment(tag, segmentCounter++ % 50);
    await seg.destroy();
    const s = (args: string) => sh(["sh", "-c", args]);
    await s(`ip netns add ${seg.serverNs} && ip netns add ${seg.clientNs}`);
    try {
      for (const ns of [seg.serverNs, seg.clientNs]) {
        await s(
          `ip netns exec ${ns} sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1`,
        );
        await s(`ip -n ${ns} link set lo up`);
      }
      await s(`ip link add ${seg.serverIf}-${tag} type veth peer name up0-${tag}`);
      await s(`ip link set ${seg.serverIf}-${tag} netns ${seg.serverNs} name ${seg.serverIf}`);
      await s(`ip link set up0-${tag} netns ${seg.clientNs} name up0`);
      await s(`ip -n ${seg.serverNs} addr add ${seg.serverIp}/24 dev ${seg.serverIf}`);
      await s(`ip -n ${seg.serverNs} link set ${seg.serverIf} up`);
      await s(
        `ip -n ${seg.clientNs} link add br0 type bridge && ip -n ${seg.clientNs} link set br0 type bridge stp_state 0`,
      );
      await s(`ip -n ${seg.clientNs} link set up0 master br0 && ip -n ${seg.clientNs} link set up0 up`);
      await s(`ip -n ${seg.clientNs} link set br0 up`);
    } catch (err) {
      await seg.destroy();
      throw err;
    }
    return seg;
  }

  /** Adds a tap in the client namespace, on the bridge; returns its name. */
  async addTap(): Promise<string> {
    const name = `tap${this.#taps++}`;
    await sh([
      "sh",
      "-c",
      `ip -n ${this.clientNs} tuntap add dev ${name} mode tap && ip -n ${this.clientNs} link set ${name} master br0 && ip -n ${this.clientNs} link set ${name} up`,
    ]);
    return name;
  }

  /** Adds another host namespace on the bridge with address `ip`/24 (e.g. a second DHCP server). */
  async addHost(ip: string): Promise<{ ns: string; ifname: string }> {
    const n = this.#hosts++;
    const ns = `pxe-${this.tag}-h${n}`;
    this.#extra.push(ns);
    const s = (args: string) => sh(["sh", "-c", args]);
    await s(`ip netns add ${ns}`);
    await s(
      `ip netns exec ${ns} sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1`,
    );
    await s(`ip link add h${n}-${this.tag} type veth peer name hup${n}-${this.tag}`);
    await s(`ip link set h${n}-${this.tag} netns ${ns} name eth0`);
    await s(`ip link set hup${n}-${this.tag} netns ${this.clientNs} name hup${n}`);
    await s(
      `ip -n ${this.clientNs} link set hup${n} master br0 && ip -n ${this.clientNs} link set hup${n} up`,
    );
    await s(
      `ip -n ${ns} addr add ${ip}/24 dev eth0 && ip -n ${ns} link set eth0 up && ip -n ${ns} link set lo up`,
    );
    return { ns, ifname: "eth0" };
  }

  /**
   * Drops `percent`% of the frames the server sends, at random, like `tc netem loss` on its link (this
   * kernel has no sch_netem): an nftables bridge rule in the client namespace, so the server's own
   * sends still succeed and only the wire loses them.
   */
  async loss(percent: number): Promise<void> {
    const nft = (rule: string) => sh([...this.inClient(), "nft", rule]);
    await nft("add table bridge pypxe_loss");
    await nft("add chain bridge pypxe_loss forward { type filter hook forward priority 0; }");
    await nft(`add rule bridge pypxe_loss forward iifname "up0" numgen random mod 100 < ${percent} drop`);
  }

  /** Applies `tc netem` (e.g. `loss 5%`, `delay 0.5ms`) on the server's link. */
  async netem(spec: string): Promise<void> {
    await sh([
      "sh",
      "-c",
      `ip netns exec ${this.serverNs} tc qdisc replace dev ${this.serverIf} root netem ${spec}`,
    ]);
  }

  /** Command prefix that runs a program inside the server namespace. */
  inServer(): string[] {
    return ["ip", "netns", "exec", this.serverNs];
  }

  /** Command prefix that runs a program inside the client namespace. */
  inClient(): string[] {
    return ["ip", "netns", "exec", this.clientNs];
  }

  /** Deletes both namespaces (which removes their links); never throws. */
  async destroy(): Promise<void> {
    for (const ns of [...this.#extra, this.serverNs, this.clientNs, `pxe-${this.tag}-h0`]) {
      await sh(["ip", "netns", "pids", ns], { check: false }).then(async (r) => {
        for (const pid of r.stdout.split("\n").filter((p) => p.trim() !== "")) {
          await sh(["kill", "-9", pid.trim()], { check: false });
        }
      });
      await sh(["ip", "netns", "del", ns], { check: false });
    }
  }
}

/** The boot payload: a Debian kernel and a busybox initramfs whose /init prints `marker` and powers off. */
export interface Payload {
  readonly kernel: string;
  readonly initrd: string;
  readonly marker: string;
}

/** Finds the newest installed Debian kernel image. */
export async function findKernel(): Promise<string | null> {
  const names: string[] = [];
  for await (const e of Deno.readDir("/boot")) if (/^vmlinuz-/.test(e.name)) names.push(e.name);
  names.sort();
  return names.length > 0 ? `/boot/${names[names.length - 1]}` : null;
}

/** Copies the kernel and builds the initramfs into `dir` (as `vmlinuz` and `initrd.img`). */
export async function buildPayload(dir: string, marker: string): Promise<Payload> {
  const kernel = await findKernel();
  if (kernel === null) throw new Error("no /boot/vmlinuz-*: apt-get install linux-image-amd64");
  const busybox = ["/bin/busybox", "/usr/bin/busybox"].find((p) => {
    try {
      return Deno.statSync(p).isFile;
    } catch {
      return false;
    }
  });
  if (busybox === undefined) throw new Error("no busybox: apt-get install busybox-static");
  const root = await Deno.makeTempDir({ prefix: "pypxe-initrd-" });
  try {
    await Deno.mkdir(join(root, "bin"));
    await Deno.mkdir(join(root, "proc"));
    await Deno.mkdir(join(root, "dev"));
    await Deno.copyFile(busybox, join(root, "bin", "busybox"));
    await Deno.chmod(join(root, "bin", "busybox"), 0o755);
    await Deno.symlink("busybox", join(root, "bin", "sh"));
    await Deno.writeTextFile(
      join(root, "init"),
      `#!/bin/sh\n/bin/busybox mount -t proc proc /proc\n/bin/busybox echo "${marker}"\n/bin/busybox echo "${marker}" > /dev/ttyS0\n/bin/busybox sync\n/bin/busybox poweroff -f\n`,
    );
    await Deno.chmod(join(root, "init"), 0o755);
    const initrd = join(dir, "initrd.img");
    await sh(["sh", "-c", `cd '${root}' && find . | cpio -o -H newc --quiet > '${initrd}'`]);
    await Deno.copyFile(kernel, join(dir, "vmlinuz"));
  } finally {
    await Deno.remove(root, { recursive: true });
  }
  return { kernel: join(dir, "vmlinuz"), initrd: join(dir, "initrd.img"), marker };
}

/** Builds a BIOS-bootable ISO (isolinux) at `iso` that boots the payload in `payloadDir`. */
export async function buildIso(payloadDir: string, iso: string): Promise<void> {
  const root = await Deno.makeTempDir({ prefix: "pypxe-iso-" });
  try {
    await Deno.mkdir(join(root, "isolinux"));
    await Deno.copyFile("/usr/lib/ISOLINUX/isolinux.bin", join(root, "isolinux", "isolinux.bin"));
    await Deno.copyFile("/usr/lib/syslinux/modules/bios/ldlinux.c32", join(root, "isolinux", "ldlinux.c32"));
    await Deno.copyFile(join(payloadDir, "vmlinuz"), join(root, "vmlinuz"));
    await Deno.copyFile(join(payloadDir, "initrd.img"), join(root, "initrd.img"));
    await Deno.writeTextFile(
      join(root, "isolinux", "isolinux.cfg"),
      "DEFAULT m\nPROMPT 0\nLABEL m\n  KERNEL /vmlinuz\n  INITRD /initrd.img\n  APPEND console=ttyS0 panic=-1 quiet\n",
    );
    await sh([
      "xorriso",
      "-as",
      "mkisofs",
      "-quiet",
      "-o",
      iso,
      "-b",
      "isolinux/isolinux.bin",
      "-c",
      "isolinux/boot.cat",
      "-no-emul-boot",
      "-boot-load-size",
      "4",
      "-boot-info-table",
      root,
    ], { timeoutMs: 60_000 });
  } finally {
    await Deno.remove(root, { recursive: true });
  }
}

/** OVMF built with Secure Boot and SMM (Debian's ovmf package). */
export const SECBOOT_CODE = "/usr/share/OVMF/OVMF_CODE_4M.secboot.fd";

/** Which firmware boots the VM: SeaBIOS, OVMF (x86_64 UEFI) or AAVMF (ARM64 UEFI on QEMU `virt`). */
export type Firmware = "bios" | "uefi" | "arm64";

/** The AAVMF (ARM64 OVMF) firmware images of Debian's qemu-efi-aarch64 package. */
export const AAVMF_CODE = "/usr/share/AAVMF/AAVMF_CODE.fd";
/** The AAVMF variable store template (copied per VM). */
export const AAVMF_VARS = "/usr/share/AAVMF/AAVMF_VARS.fd";

/** Options of {@linkcode bootVm}. */
export interface BootVmOptions {
  readonly segment: Segment;
  readonly firmware: Firmware;
  readonly marker: string;
  /** Where the serial console goes. */
  readonly serialLog: string;
  /**
   * For UEFI: `pxe` (OVMF's PxeBcDxe, no option ROM), `http` (OVMF's HttpBootDxe: PXE switched off
   * through OVMF's fw_cfg knobs) or `ipxe-rom` (iPXE's EFI ROM).
   */
  readonly uefiStack?: "pxe" | "http" | "ipxe-rom";
  /**
   * UEFI with Secure Boot enforced: Debian's `OVMF_CODE_4M.secboot.fd` with the Microsoft keys enrolled
   * (`OVMF_VARS_4M.ms.fd`), on q35 with SMM so the variable store is protected.
   */
  readonly secureBoot?: boolean;
  readonly mac?: string;
  readonly timeoutMs?: number;
}

/** Boots one QEMU client on the segment; resolves with whether the marker appeared and how long it took. */
export async function bootVm(
  opts: BootVmOptions,
): Promise<{ ok: boolean; seconds: number; serial: string; qemuStderr: string }> {
  // a log left by an earlier run must not be read as this boot's console
  await Deno.writeTextFile(opts.serialLog, "");
  const tap = await opts.segment.addTap();
  const mac = opts.mac ??
    `52:54:00:${
      [0, 0, 0].map(() => Math.floor(Math.random() * 256).toString(16).padStart(2, "0")).join(":")
    }`;
  // /dev/kvm may exist yet fail ("emulation failure" in nested setups): TCG unless asked for KVM
  const arm = opts.firmware === "arm64";
  const args = arm
    ? [
      "qemu-system-aarch64",
      "-M",
      "virt",
      "-cpu",
      envOr("PYPXE_E2E_ARM64_CPU", "cortex-a57"),
      "-accel",
      envOr("PYPXE_E2E_ARM64_ACCEL", "tcg"),
      "-m",
      "1024",
    ]
    : ["qemu-system-x86_64", "-accel", envOr("PYPXE_E2E_ACCEL", "tcg"), "-m", "512"];
  args.push(
    "-nodefaults",
    "-display",
    "none",
    "-no-reboot",
    "-serial",
    `file:${opts.serialLog}`,
    "-netdev",
    `tap,id=n0,ifname=${tap},script=no,downscript=no`,
  );
  let varsCopy: string | undefined;
  if (opts.firmware === "bios") {
    args.push("-device", `e1000,netdev=n0,mac=${mac}`, "-boot", "n");
  } else if (arm) {
    // UEFI's own PXE stack (no option ROM) answers DHCP with arch 11
    varsCopy = await Deno.makeTempFile({ prefix: "pypxe-aavmf-vars-" });
    await Deno.copyFile(AAVMF_VARS, varsCopy);
    args.push(
      "-drive",
      `if=pflash,format=raw,readonly=on,file=${AAVMF_CODE}`,
      "-drive",
      `if=pflash,format=raw,file=${varsCopy}`,
      "-device",
      `virtio-net-pci,netdev=n0,mac=${mac},romfile=`,
    );
  } else {
    const sb = opts.secureBoot === true;
    varsCopy = await Deno.makeTempFile({ prefix: "pypxe-ovmf-vars-" });
    await Deno.copyFile(`/usr/share/OVMF/OVMF_VARS_4M${sb ? ".ms" : ""}.fd`, varsCopy);
    const rom = opts.uefiStack === "ipxe-rom" ? "" : ",romfile=";
    if (sb) args.push("-machine", "q35,smm=on", "-global", "driver=cfi.pflash01,property=secure,value=on");
    args.push(
      "-drive",
      `if=pflash,format=raw,readonly=on,file=${sb ? SECBOOT_CODE : "/usr/share/OVMF/OVMF_CODE_4M.fd"}`,
      "-drive",
      `if=pflash,format=raw,file=${varsCopy}`,
      "-device",
      `virtio-net-pci,netdev=n0,mac=${mac}${rom}`,
    );
    if (opts.uefiStack === "http") {
      args.push(
        "-fw_cfg",
        "name=opt/org.tianocore/IPv4PXESupport,string=n",
        "-fw_cfg",
        "name=opt/org.tianocore/IPv6PXESupport,string=n",
      );
    }
  }
  const started = performance.now();
  const child = new Deno.Command(opts.segment.inClient()[0], {
    args: [...opts.segment.inClient().slice(1), ...args],
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const deadline = started + (opts.timeoutMs ?? 180_000);
  let serial = "";
  let ok = false;
  let exited = false;
  let qemuStderr = "";
  const status = child.status.then(() => (exited = true));
  const stderrText = new Response(child.stderr).text();
  try {
    while (performance.now() < deadline) {
      try {
        serial = await Deno.readTextFile(opts.serialLog);
      } catch {
        serial = "";
      }
      if (serial.includes(opts.marker)) {
        ok = true;
        break;
      }
      if (exited) break;
      await new Promise((r) => setTimeout(r, 250));
    }
  } finally {
    try {
      if (!exited) child.kill("SIGKILL");
    } catch {
      // QEMU exited (the guest powered off) between the check and the kill
    }
    await status;
    qemuStderr = await stderrText;
    if (varsCopy) await Deno.remove(varsCopy).catch(() => {});
  }
  try {
    serial = await Deno.readTextFile(opts.serialLog);
    ok ||= serial.includes(opts.marker);
  } catch {
    // no serial output at all
  }
  return { ok, seconds: (performance.now() - started) / 1000, serial, qemuStderr };
}

/** An environment variable, or `fallback` when unset or unreadable. */
export function envOr(name: string, fallback: string): string {
  try {
    return Deno.env.get(name) ?? fallback;
  } catch {
    return fallback;
  }
}

/** Runs dnsmasq as a plain DHCP server (addresses only, no PXE options) on another host of the segment. */
export async function plainDhcpServer(seg: Segment): Promise<() => Promise<void>> {
  const host = await seg.addHost(`${seg.subnet}.2`);
  const dnsmasq = new Deno.Command("ip", {
    args: [
      "netns",
      "exec",
      host.ns,
      "dnsmasq",
      "-d",
      "--port=0",
      `--interface=${host.ifname}`,
      "--bind-interfaces",
      `--dhcp-range=${seg.subnet}.100,${seg.subnet}.150,1h`,
      "--no-ping",
      "-z",
      "--pid-file=",
    ],
    stdout: "null",
    stderr: "null",
  }).spawn();
  return async () => {
    try {
      dnsmasq.kill("SIGTERM");
    } catch {
      // gone
    }
    await dnsmasq.status;
  };
}
