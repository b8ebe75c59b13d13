/**
 * The shared vocabulary of the machines module: its one error type, the value lists of the selector keys
 * and the normal forms of the identifiers a selector, a one-shot or the inventory is keyed by (MAC, UUID,
 * profile and group names). Pure: no I/O.
 *
 * @example
 * ```ts
 * machineMac("AA-BB-CC-DD-EE-FF"); // "aa:bb:cc:dd:ee:ff"
 * machineMac("aabb.ccdd.eeff"); // "aa:bb:cc:dd:ee:ff"
 * machineUuid("{77777777-7777-4777-8777-777777770010}"); // "77777777-7777-4777-8777-777777770010"
 * ```
 * @module
 */
import { normaliseMac } from "../net.ts";
import type { MachineArch, MachineClient } from "./model.ts";

/**
 * A machine profile, group, one-shot or inventory entry that cannot be used. The message names the file
 * and the key (`machines/profiles/debian.json: "initrd" must be a list of strings`); start-up turns it
 * into exit 2, the machine API into a 400 answer.
 */
export class MachinesError extends Error {
  /** Creates the error; `message` already names the file (or the request) and the key. */
  constructor(message: string) {
    super(message);
    this.name = "MachinesError";
  }
}

/** Every {@linkcode MachineArch}, in the order the docs list them. */
export const MACHINE_ARCHES: readonly MachineArch[] = [
  "bios",
  "efi32",
  "efi64",
  "efi-arm64",
  "efi-http",
  "rpi",
];

/** Every {@linkcode MachineClient}. */
export const MACHINE_CLIENTS: readonly MachineClient[] = ["pxe", "ipxe", "http"];

/**
 * Profile and group names (the file name without `.json`): a letter or digit, then letters, digits, `.`,
 * `_` or `-`, at most 64 characters, so a name is safe in a URL path, a log line and a file name.
 */
export const MACHINE_NAME: RegExp = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

/**
 * A MAC address in any usual spelling (`AA:BB:..`, `aa-bb-..`, `aabb.ccdd.eeff`, `aabbccddeeff`) as
 * `aa:bb:cc:dd:ee:ff`, or null when it is not one.
 */
export function machineMac(raw: string): string | null {
  const bare = raw.trim();
  if (/^[0-9a-f]{12}$/i.test(bare) || /^[0-9a-f]{4}\.[0-9a-f]{4}\.[0-9a-f]{4}$/i.test(bare)) {
    const hex = bare.replaceAll(".", "");
    return normaliseMac(hex.match(/../g)!.join(":"));
  }
  return normaliseMac(bare);
}

/**
 * A UUID (any case, with or without dashes or braces) as lower-case `8-4-4-4-12` hex, or null when it is
 * not 32 hex digits.
 */
export function machineUuid(raw: string): string | null {
  const hex = raw.trim().replace(/^\{(.*)\}$/, "$1").replaceAll("-", "").toLowerCase();
  if (!/^[0-9a-f]{32}$/.test(hex)) return null;
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}
