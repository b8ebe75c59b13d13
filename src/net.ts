/**
 * Address helpers shared by the services and the config: IPv4 parsing and arithmetic, interface
 * lookup, and the one place that turns a failed bind into a clear one-line message.
 * @module
 */
import { errText } from "./errors.ts";

/** Parses dotted-quad IPv4 into an unsigned 32-bit number, or returns null. */
export function ipToInt(ip: string): number | null {
  const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(ip);
  if (m === null) return null;
  let n = 0;
  for (let i = 1; i <= 4; i++) {
    const part = Number(m[i]);
    if (part > 255 || (m[i].length > 1 && m[i][0] === "0")) return null;
    n = n * 256 + part;
  }
  return n;
}

/** Formats an unsigned 32-bit number as dotted-quad IPv4. */
export function intToIp(n: number): string {
  return [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join(".");
}

/** True when `mask` is a contiguous IPv4 netmask (255.255.255.0, not 255.0.255.0). */
export function isNetmask(mask: string): boolean {
  const n = ipToInt(mask);
  if (n === null) return false;
  const inverted = ~n >>> 0;
  return (inverted & (inverted + 1)) === 0;
}

/** Prefix length of a contiguous netmask. */
export function maskToPrefix(mask: string): number {
  let n = ipToInt(mask) ?? 0;
  let bits = 0;
  while (n & 0x80000000) {
    bits++;
    n = (n << 1) >>> 0;
  }
  return bits;
}

/** Netmask for a prefix length 0..32. */
export function prefixToMask(prefix: number): string {
  return intToIp(prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0);
}

/** Broadcast address of `ip`/`mask`. */
export function broadcastOf(ip: string, mask: string): string {
  return intToIp(((ipToInt(ip) ?? 0) | ~(ipToInt(mask) ?? 0)) >>> 0);
}

/** Network address of `ip`/`mask`. */
export function networkOf(ip: string, mask: string): string {
  return intToIp(((ipToInt(ip) ?? 0) & (ipToInt(mask) ?? 0)) >>> 0);
}

/** True when `ip` lies in the subnet of `base`/`mask`. */
export function inSubnet(ip: string, base: string, mask: string): boolean {
  const m = ipToInt(mask) ?? 0;
  return (((ipToInt(ip) ?? 0) & m) >>> 0) === (((ipToInt(base) ?? 0) & m) >>> 0);
}

/** An IPv4 interface address as the config needs it. */
export interface Ipv4Interface {
  readonly name: string;
  readonly address: string;
  readonly netmask: string;
}

/** Lists non-loopback IPv4 interface addresses (needs `--allow-sys=networkInterfaces`). */
export function ipv4Interfaces(): Ipv4Interface[] {
  return Deno.networkInterfaces()
    .filter((i) => i.family === "IPv4" && !i.address.startsWith("127."))
    .map((i) => ({ name: i.name, address: i.address, netmask: i.netmask }));
}

/** Turns a bind failure into one line that says what to do. */
export function describeBindError(
  err: unknown,
  what: { service: string; proto: "UDP" | "TCP"; host: string; port: number },
): string {
  const where = `${what.proto} ${what.host}:${what.port}`;
  if (err instanceof Deno.errors.AddrInUse) {
    const hint = what.proto === "UDP" && what.port === 67
      ? "another DHCP server (dnsmasq?) is running; stop it or use --dhcp-proxy beside it"
      : what.port === 69
      ? "another TFTP server (tftpd-hpa, dnsmasq?) is running; stop it or use --no-tftp"
      : "another program is listening there; stop it or choose another port";
    return `${what.service}: ${where} is in use: ${hint}`;
  }
  if (err instanceof Deno.errors.PermissionDenied) {
    return `${what.service}: cannot bind ${where}: permission denied; ports below 1024 need root: run as root or give the binary cap_net_bind_service (setcap cap_net_bind_service=+ep ./pypxe)`;
  }
  if (err instanceof Deno.errors.NotCapable) {
    return `${what.service}: cannot bind ${where}: Deno permission missing (run with --allow-net)`;
  }
  if (err instanceof Deno.errors.AddrNotAvailable) {
    return `${what.service}: cannot bind ${where}: no interface has that address`;
  }
  return `${what.service}: cannot bind ${where}: ${errText(err)}`;
}

/** Normalises `AA-BB-CC-DD-EE-FF`, `aa:bb:...` to `aa:bb:cc:dd:ee:ff`, or returns null. */
export function normaliseMac(raw: string): string | null {
  const m =
    /^([0-9a-f]{2})[:-]([0-9a-f]{2})[:-]([0-9a-f]{2})[:-]([0-9a-f]{2})[:-]([0-9a-f]{2})[:-]([0-9a-f]{2})$/i
      .exec(raw.trim());
  return m === null ? null : m.slice(1).join(":").toLowerCase();
}
