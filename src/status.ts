/**
 * Live boot status: per client (MAC, type, IP, stage, current file, bytes/total, rate, last seen) and
 * Prometheus counters, fed only by the boot event stream. Served over HTTP as `/status` (a page that
 * updates itself through server-sent events), `/status.json`, `/status/events` and `/metrics`.
 * @module
 */
import type { BootEvent, BootEvents, ServiceName } from "./events.ts";

/** How far a client has come: DHCP → network boot program → script/config → kernel/initrd → done. */
export type Stage = "dhcp" | "nbp" | "script" | "kernel" | "done";

const STAGE_ORDER: readonly Stage[] = ["dhcp", "nbp", "script", "kernel", "done"];

/** One client as the status view shows it. */
export interface ClientStatus {
  /** MAC when DHCP saw the client, else undefined. */
  mac?: string;
  /** Its IPv4 address (from DHCP or from its transfers). */
  ip?: string;
  /** Client type from DHCP, e.g. `UEFI x64`. */
  label?: string;
  stage: Stage;
  /** The file being (or last) transferred. */
  file?: string;
  bytes: number;
  total?: number;
  /** Bytes per second of the current or last transfer. */
  rate: number;
  /** Unix milliseconds of the last event. */
  lastSeen: number;
}

/** The stage a file name implies, or null when it says nothing. */
export function stageOfFile(name: string): Stage | null {
  const base = name.toLowerCase().replace(/^.*\//, "");
  if (/(^vmlinuz|^linux$|kernel|bzimage|initrd|\.iso$|\.img$|\.gz$|\.xz$|\.zst$|\.squashfs$)/.test(base)) {
    return "kernel";
  }
  if (/\.(ipxe|cfg|conf)$/.test(base) || name.toLowerCase().includes("pxelinux.cfg/") || base === "default") {
    return "script";
  }
  if (/\.(0|kpxe|kkpxe|pxe|efi|c32|com|n12|bin)$/.test(base) || base === "memdisk") return "nbp";
  return null;
}

/** Counters and gauges for /metrics. */
interface Counters {
  dhcpReceived: Map<string, number>;
  dhcpSent: Map<string, number>;
  transfers: Map<string, number>; // `${service}\0${ok|failed}`
  bytes: Map<ServiceName, number>;
  active: Map<ServiceName, number>;
  connections: Map<string, number>; // `${service}\0${refused|timed-out}`
}

/** Clients kept at most; the least recently seen go first. */
const MAX_CLIENTS = 256;

/** The status model: subscribe it to the events once; read it from the HTTP routes and the TTY view. */
export class StatusBoard {
  readonly #clients = new Map<string, ClientStatus>(); // by MAC, else by IP
  readonly #byIp = new Map<string, string>(); // IP -> key
  /** Running transfers; the client is found by IP at each event (DHCP may re-key it meanwhile). */
  readonly #transfers = new Map<number, { ip: string; service: ServiceName; started: number }>();
  readonly #counters: Counters = {
    dhcpReceived: new Map(),
    dhcpSent: new Map(),
    transfers: new Map(),
    bytes: new Map(),
    active: new Map(),
    connections: new Map(),
  };
  readonly #now: () => number;
  readonly #unsubscribe: () => void;
  readonly #listeners = new Set<() => void>();

  /** Subscribes to `events`; `now` is injectable for tests. */
  constructor(events: BootEvents, opts: { now?: () => number } = {}) {
    this.#now = opts.now ?? Date.now;
    this.#unsubscribe = events.subscribe((e) => this.#apply(e));
  }

  /** Stops listening to the events. */
  close(): void {
    this.#unsubscribe();
    this.#listeners.clear();
  }

  /** Calls `fn` after every change; returns the function that removes it. */
  onChange(fn: () => void): () => void {
    this.#listeners.add(fn);
    return () => this.#listeners.delete(fn);
  }

  /** The clients, most recently seen first. */
  clients(): ClientStatus[] {
    return [...this.#clients.values()].sort((a, b) => b.lastSeen - a.lastSeen).map((c) => ({ ...c }));
  }

  #client(key: string): ClientStatus {
    let c = this.#clients.get(key);
    if (c === undefined) {
      if (this.#clients.size >= MAX_CLIENTS) {
        const oldest = [...this.#clients.entries()].sort((a, b) => a[1].lastSeen - b[1].lastSeen)[0];
        this.#clients.delete(oldest[0]);
        if (oldest[1].ip) this.#byIp.delete(oldest[1].ip);
      }
      c = { stage: "dhcp", bytes: 0, rate: 0, lastSeen: this.#now() };
      this.#clients.set(key, c);
    }
    return c;
  }

  #keyForIp(ip: string): string {
    return this.#byIp.get(ip) ?? ip;
  }

  #advance(c: ClientStatus, stage: Stage): void {
    if (STAGE_ORDER.indexOf(stage) > STAGE_ORDER.indexOf(c.stage)) c.stage = stage;
  }

  #apply(e: BootEvent): void {
    const now = this.#now();
    const k = this.#counters;
    switch (e.kind) {
      case "connection": {
        const key = `${e.service}\0${e.outcome}`;
        k.connections.set(key, (k.connections.get(key) ?? 0) + 1);
        return; // counters only: the client view did not change
      }
      case "dhcp": {
        k.dhcpReceived.set(e.received, (k.dhcpReceived.get(e.received) ?? 0) + 1);
        if (e.sent !== "none") k.dhcpSent.set(e.sent, (k.dhcpSent.get(e.sent) ?? 0) + 1);
        const c = this.#client(e.mac);
        c.mac = e.mac;
        if (e.client) c.label = e.client;
        if (e.ip) {
          if (c.ip && c.ip !== e.ip) this.#byIp.delete(c.ip);
          c.ip = e.ip;
          // transfers seen before DHCP told us the MAC merge into this client
          const byIp = this.#clients.get(e.ip);
          if (byIp !== undefined && byIp !== c) {
            Object.assign(c, {
              ...byIp,
              mac: c.mac,
              label: c.label,
              ip: c.ip,
              stage: maxStage(c.stage, byIp.stage),
            });
            this.#clients.delete(e.ip);
          }
          this.#byIp.set(e.ip, e.mac);
        }
        c.lastSeen = now;
        break;
      }
      case "transfer-start": {
        const ip = e.client.replace(/:\d+$/, "");
        const key = this.#keyForIp(ip);
        const c = this.#client(key);
        c.ip ??= ip;
        c.file = e.file;
        c.bytes = 0;
        c.total = e.size;
        c.rate = 0;
        c.lastSeen = now;
        const stage = stageOfFile(e.file);
        if (stage) this.#advance(c, stage);
        this.#transfers.set(e.id, { ip, service: e.service, started: now });
        k.active.set(e.service, (k.active.get(e.service) ?? 0) + 1);
        break;
      }
      case "transfer-progress": {
        const t = this.#transfers.get(e.id);
        const c = t && this.#clients.get(this.#keyForIp(t.ip));
        if (!t || !c) return;
        c.bytes = e.bytes;
        c.rate = rateOf(e.bytes, now - t.started);
        c.lastSeen = now;
        break;
      }
      case "transfer-end": {
        const t = this.#transfers.get(e.id);
        this.#transfers.delete(e.id);
        const ok = e.outcome === "ok";
        const key = `${e.service}\0${ok ? "ok" : "failed"}`;
        k.transfers.set(key, (k.transfers.get(key) ?? 0) + 1);
        k.bytes.set(e.service, (k.bytes.get(e.service) ?? 0) + e.bytes);
        if (t) k.active.set(e.service, Math.max(0, (k.active.get(e.service) ?? 1) - 1));
        const c = t && this.#clients.get(this.#keyForIp(t.ip));
        if (!c) break;
        c.bytes = e.bytes;
        c.rate = rateOf(e.bytes, e.ms);
        c.lastSeen = now;
        // the initrd (or a booted image) is the last thing a network boot fetches
        if (ok && /initrd|\.iso$|\.img$/i.test(e.file)) this.#advance(c, "done");
        break;
      }
    }
    for (const fn of this.#listeners) fn();
  }

  /** Prometheus text exposition of the counters. */
  metrics(): string {
    const k = this.#counters;
    const out: string[] = [];
    const family = (name: string, type: string, help: string) =>
      out.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`);
    family("pypxe_dhcp_messages_received_total", "counter", "DHCP messages received, by type.");
    for (const [type, n] of k.dhcpReceived) {
      out.push(`pypxe_dhcp_messages_received_total{type="${type}"} ${n}`);
    }
    family("pypxe_dhcp_replies_sent_total", "counter", "DHCP replies sent, by type.");
    for (const [type, n] of k.dhcpSent) out.push(`pypxe_dhcp_replies_sent_total{type="${type}"} ${n}`);
    family("pypxe_transfers_total", "counter", "Finished file transfers, by service and outcome.");
    for (const [key, n] of k.transfers) {
      const [service, outcome] = key.split("\0");
      out.push(`pypxe_transfers_total{service="${service}",outcome="${outcome}"} ${n}`);
    }
    family("pypxe_transfer_bytes_total", "counter", "Bytes sent by finished transfers, by service.");
    for (const [service, n] of k.bytes) out.push(`pypxe_transfer_bytes_total{service="${service}"} ${n}`);
    family("pypxe_active_transfers", "gauge", "Transfers running now, by service.");
    for (const [service, n] of k.active) out.push(`pypxe_active_transfers{service="${service}"} ${n}`);
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
      for (const [key, n] of k.connections) {
        const [service, o] = key.split("\0");
        if (o === outcome) out.push(`${name}{service="${service}"} ${n}`);
      }
    }
    family("pypxe_clients", "gauge", "Clients seen (kept in the status view).");
    out.push(`pypxe_clients ${this.#clients.size}`);
    return out.join("\n") + "\n";
  }

  /** Answers the status routes; null for any other path (the file server handles it). */
  route(req: { readonly method: string }, path: string): Response | null {
    if (req.method !== "GET" && req.method !== "HEAD") return null;
    switch (path) {
      case "/status": {
        // the first view is in the page itself (rendered at once, also without a live connection)
        const initial = JSON.stringify({ clients: this.clients() }).replaceAll("<", "\\u003c");
        const page = STATUS_PAGE.replace("/*INITIAL*/null", initial);
        return new Response(page, { headers: { "content-type": "text/html; charset=utf-8" } });
      }
      case "/status.json":
        return Response.json({ clients: this.clients(), time: this.#now() });
      case "/metrics":
        return new Response(this.metrics(), { headers: { "content-type": "text/plain; version=0.0.4" } });
      case "/status/events":
        return this.#eventStream();
      default:
        return null;
    }
  }

  #eventStream(): Response {
    const encoder = new TextEncoder();
    let timer: ReturnType<typeof setInterval> | undefined;
    let off: (() => void) | undefined;
    let pending = false;
    const stop = () => {
      clearInterval(timer);
      off?.();
    };
    const body = new ReadableStream<Uint8Array>({
      start: (controller) => {
        const push = () => {
          pending = false;
          try {
            controller.enqueue(encoder.encode(`data: ${JSON.stringify({ clients: this.clients() })}\n\n`));
          } catch {
            stop();
          }
        };
        push();
        // at most 4 updates a second while events flow, and a heartbeat every 2 s
        off = this.onChange(() => {
          if (pending) return;
          pending = true;
          setTimeout(push, 250);
        });
        timer = setInterval(push, 2000);
      },
      // Deno cancels the body when the client goes away or the server stops
      cancel: stop,
    });
    return new Response(body, {
      headers: { "content-type": "text/event-stream", "cache-control": "no-store" },
    });
  }
}

function maxStage(a: Stage, b: Stage): Stage {
  return STAGE_ORDER.indexOf(a) >= STAGE_ORDER.indexOf(b) ? a : b;
}

function rateOf(bytes: number, ms: number): number {
  return ms > 0 ? Math.round(bytes / (ms / 1000)) : 0;
}

/** The status page: no external assets, readable on a phone, updated by server-sent events. */
const STATUS_PAGE = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>pypxe status</title>
<style>
body{font:15px system-ui,sans-serif;margin:0;background:#f4f5f7;color:#1d2330}
header{background:#1d2330;color:#fff;padding:12px 16px;font-weight:600}
header span{font-weight:400;opacity:.7;margin-left:8px}
main{padding:12px}
.card{background:#fff;border-radius:8px;padding:12px;margin-bottom:10px;box-shadow:0 1px 2px #0002}
.top{display:flex;justify-content:space-between;gap:8px;flex-wrap:wrap}
.mac{font-family:ui-monospace,monospace;font-weight:600}
.meta{color:#5b6475;font-size:13px}
.stages{display:flex;gap:4px;margin:8px 0}
.stages i{flex:1;height:6px;border-radius:3px;background:#dde1e7}
.stages i.on{background:#2f7d4f}
.bar{height:14px;background:#dde1e7;border-radius:7px;overflow:hidden}
.bar b{display:block;height:100%;background:#3a6fd8}
.empty{color:#5b6475;text-align:center;padding:24px}
</style></head><body>
<header>pypxe<span id="state">connecting…</span></header>
<main id="list"><div class="empty">No client has asked for anything yet.</div></main>
<script>
const STAGES=["dhcp","nbp","script","kernel","done"];
const NAMES={dhcp:"DHCP",nbp:"boot program",script:"script",kernel:"kernel/initrd",done:"done"};
function size(n){return n>=1e9?(n/1e9).toFixed(2)+" GB":n>=1e6?(n/1e6).toFixed(1)+" MB":n>=1e3?(n/1e3).toFixed(0)+" kB":n+" B"}
function ago(t){const s=Math.max(0,Math.round((Date.now()-t)/1000));return s<60?s+" s ago":Math.round(s/60)+" min ago"}
function esc(s){return String(s??"").replace(/[&<>"]/g,c=>({"&":"&amp;","<":"&lt;",">":"&gt;",'"':"&quot;"}[c]))}
function render(d){
  const list=document.getElementById("list");
  if(!d.clients.length){list.innerHTML='<div class="empty">No client has asked for anything yet.</div>';return}
  list.innerHTML=d.clients.map(c=>{
    const at=STAGES.indexOf(c.stage);
    const pct=c.total?Math.min(100,Math.round(100*c.bytes/c.total)):(c.stage==="done"?100:0);
    return '<div class="card"><div class="top"><span class="mac">'+esc(c.mac||c.ip)+'</span>'+
      '<span class="meta">'+esc(c.label||"")+' '+esc(c.ip||"")+' · '+ago(c.lastSeen)+'</span></div>'+
      '<div class="stages">'+STAGES.map((s,i)=>'<i class="'+(i<=at?"on":"")+'" title="'+NAMES[s]+'"></i>').join("")+'</div>'+
      '<div class="meta">'+NAMES[c.stage]+(c.file?' · '+esc(c.file)+' '+size(c.bytes)+(c.total?' / '+size(c.total):'')+
      (c.rate?' · '+size(c.rate)+'/s':''):'')+'</div>'+
      '<div class="bar"><b style="width:'+pct+'%"></b></div></div>'}).join("")}
render(/*INITIAL*/null);
const es=new EventSource("/status/events");
es.onmessage=e=>{document.getElementById("state").textContent="live";render(JSON.parse(e.data))};
es.onerror=()=>{document.getElementById("state").textContent="reconnecting…"};
</script></body></html>
`;
