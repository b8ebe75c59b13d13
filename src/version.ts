/** The pypxe version, from deno.json. */
import meta from "../deno.json" with { type: "json" };

/** The version string printed by `--version` and the banner. */
export const VERSION: string = meta.version;
