/**
 * The DHCP service's logger and the two helpers its per-packet lines need.
 * @module
 */
import { getLogger } from "@logtape/logtape";

/** The `["pypxe", "dhcp"]` logger. */
export const log = getLogger(["pypxe", "dhcp"]);

/** `text` as a LogTape message without placeholders (client-sent strings may contain braces). */
export function literal(text: string): string {
  return text.includes("{") ? text.replace(/[{}]/g, "$&$&") : text;
}

/** An error's message, or the thrown value as text. */
export function errText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
