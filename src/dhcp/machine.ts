/**
 * Per-machine boot in DHCP: how a machine's decision (`machines/runtime.ts`) changes the policy's boot
 * file. Pure.
 *
 * - a profile, for a client already running iPXE: its per-machine script (`machine/MAC.ipxe`, over HTTP
 *   when HTTP is on), which renders the profile; except an iPXE ROM the policy sends to PXELINUX (BIOS
 *   without `--ipxe`) for a kernel or local profile: PXELINUX boots it from `pxelinux.cfg/01-MAC`;
 * - a profile with `bootfile`, for a first-stage client: that boot file (a URL as given; for a UEFI HTTP
 *   client a tree name becomes an `http://` URL); an iPXE client only gets it when it is a script or URL
 *   (anything else would load iPXE again and loop);
 * - "not ours" (the boot API declined the machine): no boot file; in proxy mode no answer at all;
 * - otherwise the policy's answer is unchanged.
 * @module
 */
import type { MachineDecision } from "../machines/runtime.ts";
import type { MachineFacts } from "../machines/model.ts";
import { ipxeMachineName } from "../netboot/machine.ts";
import { type BootDecision, bootUrl, type ClientInfo } from "./policy.ts";

/** What the DHCP responder asks the per-machine boot state. */
export interface DhcpMachines {
  /** False when neither profiles nor a boot API are configured. */
  readonly enabled: boolean;
  /**
   * The decision when it is known without waiting; null while only the boot API can tell (with
   * `orLocal`: the groups' decision then).
   */
  decideNow(facts: MachineFacts, orLocal?: boolean): MachineDecision | null;
  /** The decision, waiting for the boot API (settles within its timeout). */
  decide(facts: MachineFacts): Promise<MachineDecision>;
  /** Records the client in the inventory. */
  seen(facts: MachineFacts): void;
}

/** Where the boot files are served, as the policy sees it. */
export interface MachineServing {
  readonly useHttp: boolean;
  readonly fileServer: string;
  readonly httpPort: number;
}

/** The policy's `decision` for `client`, changed by the machine's decision (see the module doc). */
export function applyMachineDecision(
  decision: BootDecision,
  machine: MachineDecision,
  client: ClientInfo & { mac: string },
  serving: MachineServing,
): BootDecision {
  if (!decision.booting) return decision;
  if (machine.kind === "not-ours") {
    return {
      ...decision,
      file: undefined,
      reason: `boot API: not this server's machine (${machine.reason})`,
    };
  }
  if (machine.kind !== "profile") return decision;
  const { profile } = machine;
  const http = decision.vendorClass === "HTTPClient";
  if (client.ipxe) {
    if (profile.bootfile !== undefined && /(\.ipxe$|:\/\/)/i.test(profile.bootfile)) {
      return {
        ...decision,
        file: url(profile.bootfile, serving, serving.useHttp),
        reason: `profile ${profile.name}`,
      };
    }
    if (profile.boot.kind === "menu") return decision;
    // an iPXE ROM the policy sends on to a first stage (BIOS without --ipxe: pxelinux.0) keeps it: that
    // loader renders the profile from its own per-machine file (pxelinux.cfg/01-MAC); only what PXELINUX
    // cannot boot (an iPXE script, a chain URL, an ISO over HTTP) goes to the per-machine iPXE script
    const firstStage = decision.file !== undefined && !/(\.ipxe$|:\/\/)/i.test(decision.file);
    if (firstStage && !["ipxe", "chain", "iso"].includes(profile.boot.kind)) return decision;
    const file = url(ipxeMachineName(client.mac), serving, serving.useHttp);
    return { ...decision, file, reason: `profile ${profile.name}` };
  }
  if (profile.bootfile !== undefined) {
    return {
      ...decision,
      file: http ? url(profile.bootfile, serving, true) : profile.bootfile,
      reason: `profile ${profile.name}`,
    };
  }
  return decision;
}

function url(name: string, serving: MachineServing, http: boolean): string {
  return bootUrl(name, { http, fileServer: serving.fileServer, httpPort: serving.httpPort });
}
