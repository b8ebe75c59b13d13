/**
 * Fault injection for a service's UDP sockets: pass {@linkcode Faults.listen} as the service's
 * `listenDatagram` option (DhcpServer, TftpServer) and the sockets it binds to the watched ports can be made
 * to fail their receives or sends, their binds to fail with EMFILE, or be closed underneath the service.
 * @module
 */

/** The text of the EMFILE error the faults throw. */
export const EMFILE = "Too many open files (os error 24)";

/** The shape of `Deno.listenDatagram` for UDP, as the services take it. */
export type ListenDatagram = (options: Deno.UdpListenOptions & { transport: "udp" }) => Deno.DatagramConn;

/** Wraps `Deno.listenDatagram` for the sockets bound to `ports`; other ports pass through untouched. */
export class Faults {
  /** receive() calls that throw `error` from now on (Infinity: until set back to 0). */
  failReceives = 0;
  /** send() calls that throw `error`. */
  failSends = 0;
  /** listen() calls for `ports` that throw EMFILE. */
  failBinds = 0;
  error: Error = new Error(EMFILE);
  receiveFailures = 0;
  sendFailures = 0;
  bindFailures = 0;
  /** Successful binds of `ports`. */
  binds = 0;
  readonly ports: number[];
  readonly #live = new Set<Deno.DatagramConn>();

  constructor(...ports: number[]) {
    this.ports = ports;
  }

  readonly listen: ListenDatagram = (o) => {
    if (!this.ports.includes(o.port ?? 0)) return Deno.listenDatagram(o);
    if (this.failBinds > 0) {
      this.failBinds--;
      this.bindFailures++;
      throw new Error(EMFILE);
    }
    const real = Deno.listenDatagram(o);
    this.binds++;
    this.#live.add(real);
    return this.#wrap(real);
  };

  /** Closes the real sockets: the service's pending receives fail, later ones find no socket. */
  closeUnderneath(): void {
    for (const s of this.#live) s.close();
    this.#live.clear();
  }

  #wrap(real: Deno.DatagramConn): Deno.DatagramConn {
    const wrapper = {
      get addr() {
        return real.addr;
      },
      receive: (buf?: Uint8Array) => {
        if (this.failReceives > 0) {
          this.failReceives--;
          this.receiveFailures++;
          return Promise.reject(this.error);
        }
        return real.receive(buf);
      },
      send: (bytes: Uint8Array, to: Deno.Addr) => {
        if (this.failSends > 0) {
          this.failSends--;
          this.sendFailures++;
          return Promise.reject(this.error);
        }
        return real.send(bytes, to);
      },
      close: () => {
        this.#live.delete(real);
        real.close();
      },
    };
    return wrapper as unknown as Deno.DatagramConn;
  }
}
