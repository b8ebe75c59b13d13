/**
 * Typed boot events. Every service reports client progress here; the per-boot INFO lines, the live
 * status view and /metrics subscribe to this one stream.
 * @module
 */
import { errText } from "./errors.ts";
import { getLogger } from "@logtape/logtape";

/** The service an event came from. */
export type ServiceName = "dhcp" | "tftp" | "http" | "nbd";

/** A DHCP exchange step (OFFER, ACK, NAK, proxy answer...). */
export interface DhcpEvent {
  readonly kind: "dhcp";
  /** Client MAC, lower case with colons. */
  readonly mac: string;
  /** Message received, e.g. `DISCOVER`. */
  readonly received: string;
  /** Reply sent, e.g. `OFFER`, or `none` when the server stayed silent. */
  readonly sent: string;
  /** Human client type, e.g. `UEFI x64`. */
  readonly client?: string;
  /** Address offered or acknowledged. */
  readonly ip?: string;
  /** Boot file or URL handed out. */
  readonly bootFile?: string;
  /** Why the reply (or silence) happened, when noteworthy. */
  readonly reason?: string;
  /** The DHCP server the client chose instead of this one (its REQUEST named another server id). */
  readonly server?: string;
}

/** A file transfer began (TFTP, HTTP) or a block export was opened (NBD). */
export interface TransferStartEvent {
  readonly kind: "transfer-start";
  readonly service: ServiceName;
  /** Transfer id, unique within the process. */
  readonly id: number;
  /** Client address `ip:port`. */
  readonly client: string;
  readonly file: string;
  /** Total bytes when known. */
  readonly size?: number;
  /** Negotiated options, e.g. `blksize=1468 windowsize=4`. */
  readonly options?: string;
}

/** Periodic progress of a running transfer. */
export interface TransferProgressEvent {
  readonly kind: "transfer-progress";
  readonly service: ServiceName;
  readonly id: number;
  readonly bytes: number;
}

/** A transfer finished, successfully or not. */
export interface TransferEndEvent {
  readonly kind: "transfer-end";
  readonly service: ServiceName;
  readonly id: number;
  readonly client: string;
  readonly file: string;
  readonly bytes: number;
  readonly ms: number;
  /** `ok`, or the reason it failed (timeout, client error, ...). */
  readonly outcome: "ok" | string;
}

/** A TCP connection the service ended on its own: refused at the cap, or timed out before a request. */
export interface ConnectionEvent {
  readonly kind: "connection";
  readonly service: ServiceName;
  /** `refused`: over the connection cap (or evicted for a newer one); `timed-out`: header/handshake/idle. */
  readonly outcome: "refused" | "timed-out";
}

/** A file request answered with an error before any transfer began (TFTP ERROR, HTTP 403/404). */
export interface FileRefusedEvent {
  readonly kind: "file-refused";
  readonly service: ServiceName;
  /** Client address `ip:port`. */
  readonly client: string;
  /** The name the client asked for. */
  readonly file: string;
  /** `not-found`, or `forbidden` (outside the tree, unreadable). */
  readonly reason: "not-found" | "forbidden";
  /** True for misses that are part of a normal boot (PXELINUX config probes, optional files). */
  readonly routine: boolean;
}

/** Everything a service can report. */
export type BootEvent =
  | DhcpEvent
  | TransferStartEvent
  | TransferProgressEvent
  | TransferEndEvent
  | FileRefusedEvent
  | ConnectionEvent;

/** A subscriber callback. */
export type BootEventListener = (event: BootEvent) => void;

/** A synchronous fan-out of boot events; a throwing listener never disturbs the emitter. */
export class BootEvents {
  #listeners = new Set<BootEventListener>();
  #nextId = 1;

  /** Adds a listener and returns the function that removes it. */
  subscribe(listener: BootEventListener): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** Delivers `event` to every listener. */
  emit(event: BootEvent): void {
    for (const listener of this.#listeners) {
      try {
        listener(event);
      } catch (err) {
        getLogger(["pypxe", "main"]).error("event listener failed: {err}", {
          err: errText(err),
        });
      }
    }
  }

  /** Returns a fresh transfer id. */
  nextId(): number {
    return this.#nextId++;
  }
}
