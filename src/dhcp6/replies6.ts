/**
 * Building blocks of the DHCPv6 responder's answers: IA_NA options (with an address, with a status, with
 * addresses withdrawn), the Status Code option and the boot options (16 vendor class, 59 boot-file-url)
 * a boot client gets. Pure.
 *
 * @example
 * ```ts
 * iaWithAddress(1, "2001:db8::100", { preferred: 3600, valid: 3600 }); // option 3: T1 1800, T2 2880
 * bootOptions(decision, { fileServer: "[2001:db8::1]", httpPort: 80 }); // [16 (343 "PXEClient"), 59]
 * ```
 * @module
 */
import { type BootDecision, bootUrl } from "../dhcp/policy.ts";
import { type Dhcp6Option, Opt6 } from "./options.ts";
import { encodeIaAddress, encodeIaNa, encodeStatusCode, encodeText, encodeVendorClass } from "./values.ts";
import { PXE_ENTERPRISE } from "./policy.ts";

/** Lifetimes of a binding, seconds. */
export interface Lifetimes {
  preferred: number;
  valid: number;
}

const utf8 = new TextEncoder();

/** T1 (renew) and T2 (rebind) for a preferred lifetime: 0.5 and 0.8 of it (RFC 8415 §21.4). */
export function renewTimes(preferred: number): { t1: number; t2: number } {
  return { t1: Math.floor(preferred / 2), t2: Math.floor(preferred * 0.8) };
}

/** A Status Code option (13). */
export function statusOption(code: number, message: string): Dhcp6Option {
  return { code: Opt6.STATUS_CODE, data: encodeStatusCode({ code, message }) };
}

/** IA_NA `iaid` holding `ip` with `life`, plus `withdrawn` addresses at lifetime 0 (RFC 8415 §18.3.4). */
export function iaWithAddress(
  iaid: number,
  ip: string,
  life: Lifetimes,
  withdrawn: readonly string[] = [],
): Dhcp6Option {
  const options: Dhcp6Option[] = [
    { code: Opt6.IAADDR, data: encodeIaAddress({ address: ip, ...life, options: [] }) },
    ...withdrawn.map((address) => ({
      code: Opt6.IAADDR,
      data: encodeIaAddress({ address, preferred: 0, valid: 0, options: [] }),
    })),
  ];
  return { code: Opt6.IA_NA, data: encodeIaNa({ iaid, ...renewTimes(life.preferred), options }) };
}

/** IA_NA `iaid` with no address and a status (NoAddrsAvail, NoBinding), or its addresses at lifetime 0. */
export function iaWithStatus(
  iaid: number,
  status: { code: number; message: string },
  withdrawn: readonly string[] = [],
): Dhcp6Option {
  const options: Dhcp6Option[] = withdrawn.map((address) => ({
    code: Opt6.IAADDR,
    data: encodeIaAddress({ address, preferred: 0, valid: 0, options: [] }),
  }));
  if (withdrawn.length === 0 || status.code !== 0) options.push(statusOption(status.code, status.message));
  return { code: Opt6.IA_NA, data: encodeIaNa({ iaid, t1: 0, t2: 0, options }) };
}

/** Where boot URLs point. */
export interface BootUrlOptions {
  /** The file server's host as it goes in a URL: a bracketed IPv6 address, `[2001:db8::1]`. */
  fileServer: string;
  /** HTTP port (omitted from URLs when 80). */
  httpPort: number;
}

/** `[addr]` for a bare IPv6 address; anything already bracketed (or a host name) as it is. */
export function urlHost(address: string): string {
  return address.includes(":") && !address.startsWith("[") ? `[${address}]` : address;
}

/** The boot-file-url (59) of a decision: its URL, or a `tftp://[server]/file` for a plain file name. */
export function bootFileUrl(file: string, opts: BootUrlOptions): string {
  return bootUrl(file, { http: false, fileServer: opts.fileServer, httpPort: opts.httpPort });
}

/**
 * Options 16 (vendor class: enterprise 343 and `PXEClient` or `HTTPClient`, which EDK2 needs to accept
 * an offer) and 59 (boot-file-url) for a boot decision with a file; none without one.
 */
export function bootOptions(decision: BootDecision, opts: BootUrlOptions): Dhcp6Option[] {
  if (decision.file === undefined) return [];
  const vc = decision.vendorClass ?? "PXEClient";
  return [
    {
      code: Opt6.VENDOR_CLASS,
      data: encodeVendorClass({ enterprise: PXE_ENTERPRISE, data: [utf8.encode(vc)] }),
    },
    { code: Opt6.BOOTFILE_URL, data: encodeText(bootFileUrl(decision.file, opts)) },
  ];
}
