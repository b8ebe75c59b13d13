/**
 * The /status page, rendered on the server: a header with the services, their addresses and the totals,
 * then one card per client with its labelled stage bar, the hint when its boot stopped, the running
 * transfer and an expandable timeline. The page is complete without JavaScript; with it, server-sent
 * events replace the content as the boot goes on (the open timelines stay open). No external assets.
 * @module
 */
import type { ClientStatus, StatusSnapshot } from "./model.ts";
import { describeEntry, durationText, sizeText, STAGE_NAMES, STAGES } from "./timeline.ts";

/** Client cards on the page at most (all of them are in /status.json). */
const MAX_CARDS = 40;

/** Escapes text for HTML content and attribute values. */
export function esc(text: unknown): string {
  return String(text ?? "").replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

/** `5 s ago`, `3 min ago`, `2 h ago`. */
function ago(ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 60) return `${s} s ago`;
  if (s < 7200) return `${Math.round(s / 60)} min ago`;
  return `${Math.round(s / 3600)} h ago`;
}

/** `14:02:31` in the server's time zone. */
function clock(t: number): string {
  return new Date(t).toTimeString().slice(0, 8);
}

/** The page content (header, totals, client cards) for `snap`: what /status serves and each update sends. */
export function renderStatus(snap: StatusSnapshot): string {
  const { server, totals } = snap;
  const services = server.services.length === 0
    ? `<span class="svc">no services reported</span>`
    : server.services.map((s) =>
      `<span class="svc"><b>${esc(s.name.toUpperCase())}</b> ${esc(s.endpoints.join(", "))}</span>`
    ).join("");
  const notes = (server.notes ?? []).map((n) => `<div>${esc(n)}</div>`).join("");
  const since = server.started ? ` · up since ${clock(server.started)}` : "";
  const tile = (n: number | string, label: string, cls = "") =>
    `<div class="tile${cls}"><b>${esc(n)}</b><span>${esc(label)}</span></div>`;
  const tiles = [
    tile(totals.clients, "clients seen"),
    tile(totals.booting, "booting now"),
    tile(totals.done, "done", totals.done > 0 ? " good" : ""),
    tile(totals.failed, "failed", totals.failed > 0 ? " bad" : ""),
    tile(totals.transfers, "transfers now"),
    tile(sizeText(totals.bytes), "served"),
  ].join("");
  const shown = snap.clients.slice(0, MAX_CARDS);
  const cards = shown.length === 0
    ? `<div class="empty">No client has asked for anything yet. Power on a machine set to network boot.</div>`
    : shown.map((c) => renderClient(c, snap.time, shown.length <= 3)).join("");
  const more = snap.clients.length > MAX_CARDS
    ? `<div class="empty">… and ${
      snap.clients.length - MAX_CARDS
    } more in <a href="/status.json">/status.json</a></div>`
    : "";
  return `<header><div class="title">pypxe${server.version ? ` <small>${esc(server.version)}</small>` : ""}` +
    `<small>${since}</small></div><div class="services">${services}</div>` +
    (notes ? `<div class="notes">${notes}</div>` : "") +
    `</header><section class="tiles">${tiles}</section><main>${renderDownloads(snap)}${cards}${more}${
      renderMachines(snap)
    }</main>`;
}

/** Remote boot files being fetched into the cache: how far each has come. */
function renderDownloads(snap: StatusSnapshot): string {
  const downloads = snap.downloads ?? [];
  if (downloads.length === 0) return "";
  const rows = downloads.map((d) => {
    const of = d.size === null ? "" : ` of ${sizeText(d.size)}`;
    const pct = d.size ? ` (${Math.floor((100 * d.received) / d.size)}%)` : "";
    return `<tr><td>${esc(d.url)}</td><td>${esc(sizeText(d.received))}${esc(of)}${esc(pct)}</td></tr>`;
  }).join("");
  return `<section class="machines"><h2>Downloading into the cache (${downloads.length})</h2>` +
    `<table><tr><th>URL</th><th>received</th></tr>${rows}</table></section>`;
}

/** The per-machine inventory as a table: what each machine boots now, its one-shot, its last boot. */
function renderMachines(snap: StatusSnapshot): string {
  if (snap.machines === undefined) return "";
  const rows = snap.machines.slice(0, MAX_CARDS).map((m) =>
    `<tr><td class="mono">${esc(m.mac)}</td><td>${esc(m.arch ?? "-")} ${esc(m.client ?? "")}</td>` +
    `<td>${esc(m.ip ?? "-")}</td><td>${esc(m.profile ?? "menu")}</td><td>${
      esc(m.next?.profile ?? "-")
    }</td>` +
    `<td>${m.lastBoot ? `${esc(m.lastBoot.profile)}: ${esc(m.lastBoot.stage)}` : "-"}</td></tr>`
  ).join("");
  return `<section class="machines"><h2>Machines (${snap.machines.length})</h2>` +
    (rows === ""
      ? `<div class="empty">No machine seen yet.</div>`
      : `<table><tr><th>MAC</th><th>type</th><th>IP</th><th>boots</th><th>next (once)</th><th>last boot</th></tr>${rows}</table>`) +
    `</section>`;
}

/** A card per client; its timeline starts open when the boot failed or only `few` cards show. */
function renderClient(c: ClientStatus, now: number, few: boolean): string {
  const key = c.mac ?? c.ip ?? "?";
  const hint = c.hints[0];
  const failedAt = hint ? STAGES.indexOf(hint.stage) : -1;
  const reached = STAGES.indexOf(c.stage);
  const stages = STAGES.map((s, i) => {
    let cls: string;
    let mark = "";
    if (c.state === "done") [cls, mark] = ["ok", "✓ "];
    else if (c.state === "failed") {
      [cls, mark] = i < failedAt ? ["ok", "✓ "] : i === failedAt ? ["bad", "✕ "] : ["todo", ""];
    } else [cls, mark] = i < reached ? ["ok", "✓ "] : i === reached ? ["now", ""] : ["todo", ""];
    return `<li class="${cls}">${mark}${esc(STAGE_NAMES[s]).replace("/", "/<wbr>")}</li>`;
  }).join("");
  const hints = c.hints.map((h, i) =>
    `<div class="hint${i > 0 ? " more" : ""}"><b>${i === 0 ? "Why it stopped" : "Also"}:</b> ${
      esc(h.text)
    }</div>`
  ).join("");
  const last = c.timeline[c.timeline.length - 1];
  const running = last?.kind === "transfer" && last.outcome === undefined;
  let progress = "";
  if (running && c.file) {
    const pct = c.total ? Math.min(100, Math.round((100 * c.bytes) / c.total)) : 0;
    const of = c.total ? ` of ${sizeText(c.total)}` : "";
    const rate = c.rate > 0 ? ` · ${sizeText(c.rate)}/s` : "";
    progress = `<div class="xfer"><span>${esc(c.file)} · ${sizeText(c.bytes)}${of}${rate}</span>` +
      `<div class="bar"><b style="width:${pct}%"></b></div></div>`;
  } else if (c.state === "done" && c.timeline.some((e) => e.kind === "transfer" && e.outcome === "ok")) {
    const files = c.timeline.filter((e) => e.kind === "transfer" && e.outcome === "ok");
    const bytes = files.reduce((n, e) => n + (e.kind === "transfer" ? e.bytes : 0), 0);
    const end = Math.max(...files.map((e) => e.last));
    const since = c.timeline[0].kind === "dhcp" ? "its first DHCP message" : "its first request";
    progress = `<div class="xfer">Reached the kernel ${durationText(end - c.firstSeen)} after ${since} · ` +
      `${files.length} file${files.length === 1 ? "" : "s"}, ${sizeText(bytes)}</div>`;
  }
  const rows = c.timeline.map((e) => {
    const d = describeEntry(e);
    const t = ((e.at - c.firstSeen) / 1000).toFixed(1);
    return `<tr class="${d.tone}"><td class="t" title="${clock(e.at)}">+${t} s</td><td class="w">${
      esc(d.what)
    }</td><td>${esc(d.text)}</td></tr>`;
  }).join("");
  const open = c.state === "failed" || few ? " open" : "";
  const badge = { booting: "booting", done: "done", failed: "failed" }[c.state];
  return `<article class="client ${c.state}"><div class="head"><span class="mac">${esc(key)}</span>` +
    (c.label ? `<span class="label">${esc(c.label)}</span>` : "") +
    (c.ip && c.mac ? `<span class="ip">${esc(c.ip)}</span>` : "") +
    `<span class="badge ${c.state}">${badge}</span>` +
    `<span class="seen" title="first seen ${clock(c.firstSeen)}">${ago(now - c.lastSeen)}</span></div>` +
    `<ol class="stages">${stages}</ol>${hints}${progress}` +
    `<details data-key="${esc(key)}"${open}><summary>Timeline · ${c.timeline.length} event${
      c.timeline.length === 1 ? "" : "s"
    } since ${clock(c.firstSeen)}</summary><table class="timeline">${rows}</table></details></article>`;
}

const STYLE = `
*{box-sizing:border-box}
body{font:15px/1.4 system-ui,-apple-system,"Segoe UI",sans-serif;margin:0;background:#eef0f3;color:#1d2330}
header{background:#1d2330;color:#fff;padding:12px 16px 10px}
.title{font-weight:700;font-size:17px}
.title small{font-weight:400;opacity:.65;margin-left:6px;font-size:13px}
.services{margin-top:6px;display:flex;flex-wrap:wrap;gap:6px}
.svc{background:#2e3648;border-radius:4px;padding:2px 8px;font:13px ui-monospace,Menlo,Consolas,monospace}
.svc b{color:#9cc3ff;margin-right:4px}
.notes{margin-top:6px;font-size:12.5px;opacity:.75}
.tiles{display:grid;grid-template-columns:repeat(auto-fit,minmax(96px,1fr));gap:8px;padding:10px 12px 0}
.tile{background:#fff;border-radius:8px;padding:6px 10px;box-shadow:0 1px 2px #0002}
.tile b{display:block;font-size:20px}
.tile span{color:#5b6475;font-size:12px}
.tile.good b{color:#2f7d4f}.tile.bad b{color:#c0392b}
main{padding:10px 12px}
.client{background:#fff;border-radius:8px;padding:10px 12px;margin-bottom:10px;box-shadow:0 1px 2px #0002;border-left:4px solid #3a6fd8}
.client.done{border-left-color:#2f7d4f}.client.failed{border-left-color:#c0392b}
.head{display:flex;flex-wrap:wrap;align-items:baseline;gap:4px 10px}
.mac{font:600 14px ui-monospace,Menlo,Consolas,monospace}
.label,.ip{color:#5b6475;font-size:13px}
.seen{color:#5b6475;font-size:12px;margin-left:auto}
.badge{font-size:11px;font-weight:700;text-transform:uppercase;letter-spacing:.04em;border-radius:3px;padding:1px 6px;background:#dfe8fb;color:#2a56b0}
.badge.done{background:#dcf1e3;color:#236b40}.badge.failed{background:#f9dedb;color:#a93226}
.stages{display:flex;list-style:none;margin:8px 0;padding:0;gap:3px}
.stages li{flex:1;text-align:center;font-size:12px;padding:3px 2px;background:#e4e7ec;color:#7a8294;white-space:nowrap;overflow:hidden;text-overflow:ellipsis}
.stages li:first-child{border-radius:4px 0 0 4px}.stages li:last-child{border-radius:0 4px 4px 0}
.stages li.ok{background:#2f7d4f;color:#fff}
.stages li.now{background:#3a6fd8;color:#fff;font-weight:700}
.stages li.bad{background:#c0392b;color:#fff;font-weight:700}
.hint{background:#fdf1e4;border:1px solid #f0c99a;border-radius:6px;padding:6px 9px;margin:6px 0;font-size:13.5px}
.client.failed .hint:not(.more){background:#fbe9e7;border-color:#eeb2aa}
.xfer{font-size:13px;color:#3d4656;margin:6px 0}
.bar{height:8px;background:#e4e7ec;border-radius:4px;overflow:hidden;margin-top:3px}
.bar b{display:block;height:100%;background:#3a6fd8}
details{margin-top:6px}
summary{cursor:pointer;color:#3d4656;font-size:13px}
.timeline{border-collapse:collapse;table-layout:fixed;width:100%;margin-top:4px;font-size:12.5px}
.timeline td{padding:2px 6px;border-top:1px solid #eef0f3;vertical-align:top}
.timeline td.t{width:4.6em;color:#7a8294;white-space:nowrap;text-align:right;font-variant-numeric:tabular-nums}
.timeline td.w{width:4.4em;font-weight:600;white-space:nowrap}
.timeline td:last-child{word-break:break-word}
.timeline tr.muted td{color:#8b93a3}
.timeline tr.error td{color:#b03022}
.timeline tr.running td:last-child{color:#2a56b0}
.empty{color:#5b6475;text-align:center;padding:24px}
.machines h2{font-size:15px;margin:18px 4px 6px}
.machines table{border-collapse:collapse;width:100%;font-size:12.5px;background:#fff;border-radius:8px}
.machines th,.machines td{text-align:left;padding:5px 8px;border-bottom:1px solid #eef0f4}
@media (max-width:520px){.stages li{font-size:11px;white-space:normal;line-height:1.2;padding:3px 1px;display:flex;align-items:center;justify-content:center}}
#conn{position:absolute;top:12px;right:16px;color:#fff;font-size:12px;opacity:.7}
`;

/** The whole /status document around `content` (from {@linkcode renderStatus}). */
export function statusPage(content: string): string {
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>pypxe status</title><style>${STYLE}</style></head><body>
<div id="conn">static view</div>
<div id="app">${content}</div>
<noscript><div class="empty">Reload the page for fresh data.</div></noscript>
<script>
const app=document.getElementById("app"),conn=document.getElementById("conn");
const chosen={};
app.addEventListener("click",e=>{const s=e.target.closest("summary");if(s)chosen[s.parentElement.dataset.key]=!s.parentElement.open});
function show(html){app.innerHTML=html;for(const d of app.querySelectorAll("details[data-key]")){const k=d.dataset.key;if(k in chosen)d.open=chosen[k]}}
conn.textContent="connecting…";
const es=new EventSource("/status/live");
es.onmessage=e=>{conn.textContent="live";show(JSON.parse(e.data))};
es.onerror=()=>{conn.textContent="reconnecting…"};
</script></body></html>
`;
}
