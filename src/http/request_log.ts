/**
 * Which level a finished HTTP request is logged at. Every request gets one line; boot files (boot
 * programs, scripts, kernels, initrds) at INFO even when fetched in ranges. Disk images read by sanboot or
 * UEFI's RAM disk (`.iso`, `.img`...) arrive as thousands of small range requests: the first range per
 * client and image is INFO (once a minute), the rest DEBUG, so the log shows that the image is being read
 * without drowning in it.
 * @module
 */

/** Files read in many small ranges. */
const IMAGE = /\.(iso|img|raw|qcow2|vhd|vhdx|vmdk|dd)$/i;

/** At most this many (client, image) pairs remembered; the oldest go first. */
const MAX_REMEMBERED = 1024;

/** How often a range read of one image by one client is repeated at INFO. */
const RANGE_INFO_EVERY_MS = 60_000;

/** Decides INFO or DEBUG for each finished request. */
export class RequestLogLevel {
  readonly #lastInfo = new Map<string, number>();
  readonly #now: () => number;

  constructor(now: () => number = Date.now) {
    this.#now = now;
  }

  /** The level for a response `status` to `clientIp` for `path`. */
  levelOf(status: number, clientIp: string, path: string): "info" | "debug" {
    if (status !== 206 || !IMAGE.test(path)) return "info";
    const key = `${clientIp} ${path}`;
    const now = this.#now();
    const last = this.#lastInfo.get(key);
    if (last !== undefined && now - last < RANGE_INFO_EVERY_MS) return "debug";
    this.#lastInfo.delete(key);
    this.#lastInfo.set(key, now);
    if (this.#lastInfo.size > MAX_REMEMBERED) {
      this.#lastInfo.delete(this.#lastInfo.keys().next().value!);
    }
    return "info";
  }
}
