/** Driving `Dhcp6Responder` in tests: a responder on the golden captures' network and client messages. */
import { decodeDhcp6, type Dhcp6Message, encodeDhcp6 } from "../../src/dhcp6/packet.ts";
import { type Dhcp6Option, getOption6, MessageType6, Opt6 } from "../../src/dhcp6/options.ts";
import {
  Dhcp6Responder,
  type Dhcp6ResponderOptions,
  type Log6,
  type Outgoing6,
  serverDuidFromMac,
} from "../../src/dhcp6/responder.ts";
import {
  bootFileUrl,
  clientId,
  iaAddresses,
  iaNas,
  statusCode,
  vendorClasses,
} from "../../src/dhcp6/accessors.ts";
import { fixture6 } from "./helpers.ts";

export { bootFileUrl, clientId, iaAddresses, iaNas, statusCode, vendorClasses };

/** The captures' client: OVMF/iPXE on QEMU, MAC 52:54:00:77:00:66. */
export const CLIENT = { address: "fe80::5054:ff:fe77:66", port: 546 };
/** The captures' file server. */
export const FS = "2001:db8:77::1";
/** The server DUID of capture-responder.ts (DUID-LL 02:00:00:77:00:01). */
export const SERVER_DUID = serverDuidFromMac("02:00:00:77:00:01");

/** A log that keeps its lines. */
export function memoryLog(): Log6 & { lines: string[] } {
  const lines: string[] = [];
  return {
    lines,
    debug: (m) => lines.push(`debug ${m}`),
    info: (m) => lines.push(`info ${m}`),
    warn: (m) => lines.push(`warn ${m}`),
  };
}

/** A responder like capture-responder.ts: pool from 2001:db8:77::1a0, lifetimes 3600, clock at `clock.t`. */
export function responder(over: Partial<Dhcp6ResponderOptions> = {}, clock = { t: 1_700_000_000_000 }) {
  return new Dhcp6Responder({
    mode: "full",
    serverDuid: SERVER_DUID,
    fileServer: FS,
    useHttp: true,
    useIpxe: true,
    netbootFile: "boot.ipxe",
    pool: { begin: "2001:db8:77::1a0", end: "2001:db8:77::1ff" },
    now: () => clock.t,
    log: memoryLog(),
    ...over,
  });
}

/** The one answer of `handle()`, decoded (fails the test when there is not exactly one). */
export function only(out: Outgoing6[]): Dhcp6Message {
  if (out.length !== 1) throw new Error(`expected one answer, got ${out.length}`);
  return decodeDhcp6(out[0].bytes) as Dhcp6Message;
}

/** A golden message, decoded. */
export function golden(name: string): Dhcp6Message {
  return decodeDhcp6(fixture6(name)) as Dhcp6Message;
}

/**
 * The client's next message after `answer`: `base`'s options (minus server id, IA_NA, rapid commit) with
 * `answer`'s server id and IA_NAs (or `ias`), as a Request/Renew/Release... would carry them.
 */
export function follow(
  base: Dhcp6Message,
  type: number,
  answer?: Dhcp6Message,
  over: { serverId?: Uint8Array | null; ias?: Dhcp6Option[] } = {},
): Uint8Array {
  const drop: number[] = [Opt6.SERVERID, Opt6.IA_NA, Opt6.RAPID_COMMIT];
  const options = base.options.filter((o) => !drop.includes(o.code));
  const sid = over.serverId === undefined ? answer && getOption6(answer, Opt6.SERVERID) : over.serverId;
  if (sid) options.splice(1, 0, { code: Opt6.SERVERID, data: sid });
  const ias = over.ias ?? answer?.options.filter((o) => o.code === Opt6.IA_NA) ?? [];
  options.push(...ias);
  return encodeDhcp6({ type, transactionId: (base.transactionId + type) & 0xffffff, options });
}

/** The address of the answer's first IA_NA, if any. */
export function addressOf(msg: Dhcp6Message): string | undefined {
  const ia = iaNas(msg)[0];
  return ia && iaAddresses(ia)[0]?.address;
}

export { MessageType6, Opt6 };
