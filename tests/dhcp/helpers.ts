/** Shared helpers of the DHCP tests: fixtures, a config, request builders. */
import { DEFAULTS, type PxeConfig } from "../../src/config.ts";
import { MessageType, Opt, setOption } from "../../src/dhcp/options.ts";
import { createDhcpPacket, type DhcpPacket, encodeDhcp } from "../../src/dhcp/packet.ts";
import type { BootPolicyOptions } from "../../src/dhcp/policy.ts";
import { fixturesDir } from "../helpers/fixtures.ts";

/** The DHCP fixtures. */
export function fixtureDir(): string {
  return fixturesDir() + "dhcp/";
}

/** Reads one DHCP fixture. */
export const fixture = (name: string): Uint8Array => Deno.readFileSync(fixtureDir() + name);

/** dnsmasq's reference setup (fixtures README, config A) as our config. */
export function refConfig(over: Partial<PxeConfig> = {}): PxeConfig {
  return {
    ...DEFAULTS,
    USE_DHCP: true,
    DHCP_SERVER_IP: "192.168.77.1",
    DHCP_OFFER_BEGIN: "192.168.77.100",
    DHCP_OFFER_END: "192.168.77.150",
    DHCP_SUBNET: "255.255.255.0",
    DHCP_ROUTER: "192.168.77.1",
    DHCP_DNS: "",
    DHCP_BROADCAST: "192.168.77.255",
    DHCP_FILESERVER: "192.168.77.1",
    DHCP_LEASE_TIME: 3600,
    NETBOOT_FILE: "pxelinux.0",
    ...over,
  };
}

let xid = 1;

/** A client request: message type, MAC, and extra options/fields. */
export function request(
  type: number,
  mac: string,
  init: {
    requested?: string;
    serverId?: string;
    ciaddr?: string;
    giaddr?: string;
    arch?: number;
    vendorClass?: string;
    ipxe?: boolean;
    params?: number[];
    clientId?: Uint8Array;
    flags?: number;
  } = {},
): DhcpPacket {
  const p = createDhcpPacket({
    mac,
    xid: xid++,
    flags: init.flags ?? 0,
  });
  if (init.ciaddr) p.ciaddr = init.ciaddr;
  if (init.giaddr) p.giaddr = init.giaddr;
  setOption(p, Opt.MESSAGE_TYPE, type);
  if (init.requested) setOption(p, Opt.REQUESTED_IP, init.requested);
  if (init.serverId) setOption(p, Opt.SERVER_ID, init.serverId);
  if (init.arch !== undefined) setOption(p, Opt.CLIENT_ARCH, [init.arch]);
  if (init.vendorClass) setOption(p, Opt.VENDOR_CLASS, init.vendorClass);
  if (init.ipxe) p.options.set(Opt.USER_CLASS, new TextEncoder().encode("iPXE"));
  if (init.params) setOption(p, Opt.PARAMETER_LIST, init.params);
  if (init.clientId) p.options.set(Opt.CLIENT_ID, init.clientId);
  return p;
}

/** Encoded request. */
export const wire = (type: number, mac: string, init: Parameters<typeof request>[2] = {}): Uint8Array =>
  encodeDhcp(request(type, mac, init));

/** A MAC from a number. */
export function macOf(n: number, prefix = "02:00"): string {
  const b = [(n >>> 24) & 255, (n >>> 16) & 255, (n >>> 8) & 255, n & 255];
  return `${prefix}:${b.map((x) => x.toString(16).padStart(2, "0")).join(":")}`;
}

export { MessageType, Opt };

/** The file server of the policy tables. */
export const FS = "192.168.2.2";
/** Policy settings: PyPXE's defaults (no iPXE, no HTTP). */
export const PLAIN: BootPolicyOptions = {
  useIpxe: false,
  useHttp: false,
  httpPort: 80,
  fileServer: FS,
  netbootFile: "pxelinux.0",
};
/** `--ipxe`. */
export const IPXE: BootPolicyOptions = { ...PLAIN, useIpxe: true, netbootFile: "boot.ipxe" };
/** `--http`. */
export const HTTP: BootPolicyOptions = { ...PLAIN, useHttp: true };
/** `--ipxe --http --http-port 8080`. */
export const IPXE_HTTP: BootPolicyOptions = {
  ...IPXE,
  useHttp: true,
  httpPort: 8080,
  netbootFile: "boot.http.ipxe",
};
