/**
 * PXE 2.1 specifics of the replies: option 43 (vendor-encapsulated PXE sub-options) for proxyDHCP and
 * Raspberry Pi boot ROMs, and the proxyDHCP OFFER (port 67) and ACK (port 4011) builders. Pure.
 * The sub-option codec itself (`encodePxeOptions`/`decodePxeOptions`) lives in options.ts.
 * @module
 */
import {
  decodePxeOptions,
  encodePxeOptions,
  MessageType,
  Opt,
  type PxeOptions,
  setOption,
} from "./options.ts";
import { type DhcpPacket, newReply, setBootFile } from "./packet.ts";
import type { BootDecision } from "./policy.ts";

/** The menu prompt PyPXE sends (timeout 0: boot at once). */
const PROMPT = { timeout: 0, prompt: "PXE" };

/** The option 43 a PXE client is given, or undefined when it needs none (full DHCP, non-Pi clients). */
export function pxeVendorOptions(
  request: DhcpPacket,
  decision: BootDecision,
  proxy: boolean,
): Uint8Array | undefined {
  if (decision.family === "rpi") {
    // the Pi boot ROM only boots when it finds this menu entry
    return encodePxeOptions({
      discoveryControl: 3,
      bootMenu: [{ type: 0, description: "Raspberry Pi Boot" }],
      menuPrompt: { timeout: 0, prompt: "PXE" },
    });
  }
  if (!proxy || decision.vendorClass !== "PXEClient") return undefined;
  const p: PxeOptions = { discoveryControl: 8, menuPrompt: PROMPT }; // 8: use the boot file given here
  const asked = requestedBootItem(request);
  if (asked) p.bootItem = asked;
  return encodePxeOptions(p);
}

/** Boot item (43.71) the client asked for on 4011, if any; never throws. */
export function requestedBootItem(request: DhcpPacket): { type: number; layer: number } | undefined {
  const raw = request.options.get(Opt.VENDOR_SPECIFIC);
  if (
    raw === undefined || !/^PXEClient/.test(new TextDecoder().decode(request.options.get(Opt.VENDOR_CLASS)))
  ) {
    return undefined;
  }
  try {
    return decodePxeOptions(raw).bootItem;
  } catch {
    return undefined; // a malformed 43 from the client only means no boot item is echoed
  }
}

/** Settings for the proxy replies. */
export interface ProxyReplyOptions {
  /** Our address (option 54). */
  serverIp: string;
  /** Next server (siaddr): where TFTP lives. */
  fileServer: string;
}

/**
 * A proxyDHCP answer: OFFER to a DISCOVER on 67 (broadcast flag set, as PyPXE) or ACK to a REQUEST on 4011.
 * yiaddr stays 0: the address comes from the site's DHCP server. Throws DhcpEncodeError for a name too long.
 */
export function proxyReply(
  request: DhcpPacket,
  decision: BootDecision & { file: string },
  type: typeof MessageType.OFFER | typeof MessageType.ACK,
  opts: ProxyReplyOptions,
): DhcpPacket {
  const reply = newReply(request);
  if (type === MessageType.OFFER) reply.flags |= 0x8000;
  else reply.ciaddr = request.ciaddr;
  reply.siaddr = opts.fileServer;
  setOption(reply, Opt.MESSAGE_TYPE, type);
  setOption(reply, Opt.SERVER_ID, opts.serverIp);
  setOption(reply, Opt.VENDOR_CLASS, decision.vendorClass ?? "PXEClient");
  const uuid = request.options.get(Opt.CLIENT_UUID);
  if (uuid) reply.options.set(Opt.CLIENT_UUID, uuid.slice());
  const clientId = request.options.get(Opt.CLIENT_ID);
  if (clientId) reply.options.set(Opt.CLIENT_ID, clientId.slice());
  const pxe = pxeVendorOptions(request, decision, true);
  if (pxe) reply.options.set(Opt.VENDOR_SPECIFIC, pxe);
  setBootFile(reply, decision.file);
  return reply;
}
