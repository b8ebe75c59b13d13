/**
 * The Prometheus counters behind /metrics, fed by the boot event stream, and their text exposition.
 * @module
 */
import type { BootEvent, ServiceName } from "../events.ts";

/** Counters and gauges of DHCP messages, transfers, bytes and dropped connections. */
export class BootCounters {
  readonly #dhcpReceived = new Map<string, number>();
  readonly #dhcpSent = new Map<string, number>();
  readonly #transfers = new Map<string, number>(); // `${service}\0${ok|failed}`
  readonly #bytes = new Map<ServiceName, number>();
  readonly #active = new Map<ServiceName, number>();
  readonly #connections = new Map<string, number>(); // `${service}\0${refused|timed-out}`
  /** Transfer ids counted as running, so an end without a start does not drive the gauge below zero. */
  readonly #running = new Set<number>();

  /** Counts one event. */
  apply(e: BootEvent): void {
    switch (e.kind) {
      case "connection":
        bump(this.#connections, `${e.service}\0${e.outcome}`);
        break;
      case "dhcp":
        bump(this.#dhcpReceived, e.received);
        if (e.sent !== "none") bump(this.#dhcpSent, e.sent);
        break;
      case "transfer-start":
        this.#running.add(e.id);
        bump(this.#active, e.service);
        break;
      case "transfer-end":
        bump(this.#transfers, `${e.service}\0${e.outcome === "ok" ? "ok" : "failed"}`);
        bump(this.#bytes, e.service, e.bytes);
        if (this.#running.delete(e.id)) bump(this.#active, e.service, -1);
        break;
    }
  }

  /** Transfers running now, all services. */
  active(): number {
    return sum(this.#active);
  }

  /** Bytes sent by finished transfers, all services. */
  bytes(): number {
    return sum(this.#bytes);
  }

  /** Prometheus text exposition; `clients` is the number of clients in the status view. */
  text(clients: number): string {
    const out: string[] = [];
    const family = (name: string, type: string, help: string) =>
      out.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`);
    family("pypxe_dhcp_messages_received_total", "counter", "DHCP messages received, by type.");
    for (const [type, n] of this.#dhcpReceived) {
      out.push(`pypxe_dhcp_messages_received_total{type="${type}"} ${n}`);
    }
    family("pypxe_dhcp_replies_sent_total", "counter", "DHCP replies sent, by type.");
    for (const [type, n] of this.#dhcpSent) out.push(`pypxe_dhcp_replies_sent_total{type="${type}"} ${n}`);
    family("pypxe_transfers_total", "counter", "Finished file transfers, by service and outcome.");
    for (const [key, n] of this.#transfers) {
      const [service, outcome] = key.split("\0");
      out.push(`pypxe_transfers_total{service="${service}",outcome="${outcome}"} ${n}`);
    }
    family("pypxe_transfer_bytes_total", "counter", "Bytes sent by finished transfers, by service.");
    for (const [service, n] of this.#bytes) out.push(`pypxe_transfer_bytes_total{service="${service}"} ${n}`);
    family("pypxe_active_transfers", "gauge", "Transfers running now, by service.");
    for (const [service, n] of this.#active) out.push(`pypxe_active_transfers{service="${service}"} ${n}`);
    for (
      const [outcome, name, help] of [
        [
          "refused",
          "pypxe_connections_refused_total",
          "TCP connections refused or evicted at the cap, by service.",
        ],
        [
          "timed-out",
          "pypxe_connections_timed_out_total",
          "TCP connections closed by a header/handshake/idle timeout.",
        ],
      ]
    ) {
      family(name, "counter", help);
      for (const [key, n] of this.#connections) {
        const [service, o] = key.split("\0");
        if (o === outcome) out.push(`${name}{service="${service}"} ${n}`);
      }
    }
    family("pypxe_clients", "gauge", "Clients seen (kept in the status view).");
    out.push(`pypxe_clients ${clients}`);
    return out.join("\n") + "\n";
  }
}

function bump<K>(map: Map<K, number>, key: K, by = 1): void {
  map.set(key, Math.max(0, (map.get(key) ?? 0) + by));
}

function sum(map: Map<unknown, number>): number {
  let n = 0;
  for (const v of map.values()) n += v;
  return n;
}
