/**
 * The DHCP service's logger, with the helpers its per-packet lines need.
 * @module
 */
import { getLogger } from "@logtape/logtape";

export { errText } from "../errors.ts";
export { literal } from "../log_throttle.ts";

/** The `["pypxe", "dhcp"]` logger. */
export const log = getLogger(["pypxe", "dhcp"]);
