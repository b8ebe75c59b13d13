/**
 * pypxe entry point: parse flags -> load config -> start services -> wait for signals.
 * @module
 */
import { runPypxe } from "./src/app.ts";

if (import.meta.main) {
  Deno.exit(await runPypxe(Deno.args));
}
