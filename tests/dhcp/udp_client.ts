/**
 * Moved to tests/helpers/udp_client.ts (import it from there, or from tests/helpers/servers.ts). This
 * re-export stays only while tests/nbd/latency_test.ts still imports this path.
 * @module
 */
export * from "../helpers/udp_client.ts";
