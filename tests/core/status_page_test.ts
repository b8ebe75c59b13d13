/**
 * The status page from a real boot's events (tests/fixtures/status/bios_boot_events.json, recorded by
 * tests/fixtures/status/record.ts from QEMU boots against pypxe), replayed into a board: the model, the
 * server-rendered page, and the page as headless Chromium shows it (scripts and live updates running).
 */
import assert from "node:assert/strict";
import type { BootEvent } from "../../src/events.ts";
import { renderStatus } from "../../src/status.ts";
import { sizeText } from "../../src/status/timeline.ts";
import {
  cutBoot,
  loadRecordedBoot,
  type RecordedBoot,
  renderStatusPage,
  replayBoot,
} from "../../scripts/status_screenshot.ts";
import { missingTools, requires } from "../helpers/tools.ts";

const BIOS = "52:54:00:5e:00:10";
const UEFI = "52:54:00:5e:00:11";
const boot = await loadRecordedBoot();

/** The bytes of the recorded transfer of `file`. */
function recordedSize(file: string): number {
  const end = boot.events.find((e) => e.event.kind === "transfer-end" && e.event.file === file);
  assert.ok(end && end.event.kind === "transfer-end", `no transfer of ${file} in the recording`);
  return end.event.bytes;
}

Deno.test("status page: a real BIOS boot and a real failed UEFI boot replay into the board", () => {
  const { board } = replayBoot(boot);
  try {
    const snap = board.snapshot();
    const bios = snap.clients.find((c) => c.mac === BIOS)!;
    const uefi = snap.clients.find((c) => c.mac === UEFI)!;
    assert.deepEqual([bios.state, bios.stage, bios.ip, bios.label], [
      "done",
      "done",
      "10.200.0.128",
      "iPXE BIOS",
    ]);
    assert.deepEqual(bios.hints, []);
    const lines = bios.timeline.map((e) =>
      e.kind === "dhcp"
        ? `dhcp ${e.received}>${e.sent} x${e.count}`
        : e.kind === "transfer"
        ? `${e.service} ${e.file} ${e.bytes} ${e.outcome}`
        : `refused ${e.file} x${e.count} ${e.routine ? "routine" : ""}`
    );
    assert.deepEqual(lines, [
      "dhcp DISCOVER>OFFER x2",
      "dhcp REQUEST>ACK x1",
      `tftp pxelinux.0 ${recordedSize("pxelinux.0")} ok`,
      `tftp ldlinux.c32 ${recordedSize("ldlinux.c32")} ok`,
      "refused pxelinux.cfg/01-52-54-00-5e-00-10 x9 routine",
      `tftp pxelinux.cfg/default ${recordedSize("pxelinux.cfg/default")} ok`,
      `tftp vmlinuz ${recordedSize("vmlinuz")} ok`,
      `tftp initrd.img ${recordedSize("initrd.img")} ok`,
    ]);
    assert.equal(uefi.state, "failed");
    assert.deepEqual(uefi.hints.map((h) => [h.code, h.stage]), [["missing-file", "nbp"]]);
    assert.match(uefi.hints[0].text, /"ipxe-x64\.efi", which is not in the netboot tree/);
    const served = ["pxelinux.0", "ldlinux.c32", "pxelinux.cfg/default", "vmlinuz", "initrd.img"]
      .reduce((n, f) => n + recordedSize(f), 0);
    assert.deepEqual(snap.totals, {
      clients: 2,
      booting: 0,
      done: 1,
      failed: 1,
      transfers: 0,
      bytes: served,
    });
    assert.deepEqual(snap.server.services.map((s) => s.name), ["tftp", "dhcp"]);
  } finally {
    board.close();
  }
});

Deno.test("status page: the real boot cut after its boot program says so once 30 s have passed", () => {
  const cut = boot.events.findIndex((e) => e.event.kind === "transfer-end" && e.event.file === "pxelinux.0");
  const bios = (e: BootEvent) =>
    e.kind === "dhcp" ? e.mac === BIOS : "client" in e && e.client.startsWith("10.200.0.128:");
  const partial: RecordedBoot = {
    ...boot,
    events: boot.events.slice(0, cut + 1).filter((e) => bios(e.event)),
  };
  for (const [afterMs, expect] of [[29_000, []], [30_000, ["stopped-after-nbp"]]] as const) {
    const { board } = replayBoot(partial, { afterMs });
    try {
      const [c] = board.clients();
      assert.deepEqual(c.hints.map((h) => h.code), expect, `${afterMs} ms after pxelinux.0`);
      if (expect.length > 0) {
        assert.match(
          c.hints[0].text,
          /"pxelinux\.0" was sent 30\.0 s ago.*\(the client said it is iPXE BIOS\)/,
        );
      }
    } finally {
      board.close();
    }
  }
});

Deno.test("status page: the server-rendered page has labelled stages, the timeline with sizes, and the hint", () => {
  const { board } = replayBoot(boot);
  try {
    const html = renderStatus(board.snapshot());
    assert.match(html, /<b>TFTP<\/b> UDP 0\.0\.0\.0:69/);
    assert.match(html, /<b>DHCP<\/b> UDP 0\.0\.0\.0:67, UDP 10\.200\.0\.1:67/);
    assert.match(html, /<b>2<\/b><span>clients seen<\/span>/);
    assert.match(html, /<div class="tile bad"><b>1<\/b><span>failed<\/span>/);
    assert.ok(
      html.includes(
        '<li class="ok">✓ DHCP</li><li class="bad">✕ boot program</li><li class="todo">script</li>' +
          '<li class="todo">kernel/<wbr>initrd</li><li class="todo">done</li>',
      ),
      "the UEFI client failed at its boot program",
    );
    assert.ok(html.includes('<li class="ok">✓ kernel/<wbr>initrd</li><li class="ok">✓ done</li>'));
    assert.match(
      html,
      new RegExp(`vmlinuz · ${sizeText(recordedSize("vmlinuz"))} in 7\\.44 s \\(1\\.1 MB/s\\)`),
    );
    assert.match(
      html,
      /pxelinux\.cfg\/01-52-54-00-5e-00-10 and 8 more optional name\(s\) · not found \(normal probing\)/,
    );
    assert.match(html, /ipxe-x64\.efi · not found/);
    // markup in a file name stays text
    assert.doesNotMatch(html, /<script/);
  } finally {
    board.close();
  }
});

/** A synthetic boot: one client per classic failure, at made-up but plausible times. */
function failures(): RecordedBoot {
  const t0 = Date.UTC(2026, 0, 5, 9, 0, 0);
  const events: { t: number; event: BootEvent }[] = [];
  const at = (s: number, event: BootEvent) => events.push({ t: t0 + s * 1000, event });
  const mac = (n: number) => `52:54:00:00:00:0${n}`;
  // another DHCP server answered first
  at(0, { kind: "dhcp", mac: mac(1), received: "DISCOVER", sent: "OFFER", client: "BIOS", ip: "10.0.0.101" });
  at(1, {
    kind: "dhcp",
    mac: mac(1),
    received: "REQUEST",
    sent: "none",
    client: "BIOS",
    reason: "chose the DHCP server 10.0.0.254",
    server: "10.0.0.254",
  });
  // a UEFI client that never came back on 4011 (proxy mode)
  at(2, { kind: "dhcp", mac: mac(2), received: "DISCOVER", sent: "proxy OFFER", client: "UEFI x64" });
  // a transfer that timed out
  at(3, { kind: "dhcp", mac: mac(3), received: "REQUEST", sent: "ACK", client: "BIOS", ip: "10.0.0.103" });
  at(4, {
    kind: "transfer-start",
    service: "tftp",
    id: 1,
    client: "10.0.0.103:2000",
    file: "vmlinuz",
    size: 8e6,
  });
  at(20, {
    kind: "transfer-end",
    service: "tftp",
    id: 1,
    client: "10.0.0.103:2000",
    file: "vmlinuz",
    bytes: 3_100_000,
    ms: 16_000,
    outcome: "timeout: no ACK for block 2202 after 6 tries",
  });
  // a file name with markup in it is shown as text
  at(21, {
    kind: "file-refused",
    service: "http",
    client: "10.0.0.104:40000",
    file: "<b>oops</b>.ipxe",
    reason: "not-found",
    routine: false,
  });
  return { about: "synthetic", args: [], server: { services: [] }, events, clients: [] };
}

/** Page script: closes the BIOS client's timeline, then waits for the next update to re-render. */
const CLOSE_BIOS_AND_WAIT = `new Promise((done) => {
  document.querySelector('details[data-key="${BIOS}"] > summary').click();
  for (const a of document.querySelectorAll("article")) a.dataset.old = "1";
  const t0 = Date.now();
  (function poll() {
    if (!document.querySelector("article[data-old]") || Date.now() - t0 > 5000) done(true);
    else setTimeout(poll, 50);
  })();
})`;

Deno.test(requires(missingTools("chromium"), {
  name: "status page: headless Chromium shows the real boot's stages, timeline, sizes and hint, live",
  sanitizeResources: false, // Chromium's pipes
  sanitizeOps: false,
  fn: async () => {
    const png = await Deno.makeTempFile({ suffix: ".png" });
    try {
      const dom = await renderStatusPage({ screenshot: png, boot, script: CLOSE_BIOS_AND_WAIT });
      assert.match(dom, /<div id="conn">live<\/div>/, "the page connected to /status/live and re-rendered");
      for (const name of ["DHCP", "boot program", "script", "kernel/<wbr>initrd", "done"]) {
        assert.ok(dom.includes(`<li class="ok">✓ ${name}</li>`), `the stage ${name} is labelled`);
      }
      assert.ok(dom.includes('<li class="bad">✕ boot program</li>'));
      assert.match(dom, new RegExp(`pxelinux\\.0 · ${sizeText(recordedSize("pxelinux.0"))} in `));
      assert.match(dom, new RegExp(`initrd\\.img · ${sizeText(recordedSize("initrd.img"))} in `));
      assert.match(dom, /DISCOVER → OFFER · 10\.200\.0\.128 · boot file pxelinux\.0 \(×2\)/);
      assert.match(dom, /Why it stopped:<\/b> The client asked for "ipxe-x64\.efi"/);
      assert.match(
        dom,
        /<details data-key="52:54:00:5e:00:11" open="">/,
        "a short list shows every timeline",
      );
      // a timeline the technician closed stays closed when the next live update replaces the content
      assert.match(dom, /<details data-key="52:54:00:5e:00:10">/, "closed by the click");
      assert.doesNotMatch(dom, /data-old/, "the content was replaced by a later update");
      const bytes = await Deno.readFile(png);
      assert.deepEqual([...bytes.subarray(1, 4)], [0x50, 0x4e, 0x47], "a PNG");
      assert.ok(bytes.length > 20_000, `a PNG with something on it (${bytes.length} bytes)`);
    } finally {
      await Deno.remove(png);
    }
  },
}));

Deno.test(requires(missingTools("chromium"), {
  name: "status page: headless Chromium shows a plain-language hint for each classic failure",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    const png = await Deno.makeTempFile({ suffix: ".png" });
    try {
      const dom = await renderStatusPage({ screenshot: png, boot: failures(), afterMs: 40_000 });
      assert.match(dom, /Another DHCP server \(10\.0\.0\.254\) answered first/);
      assert.match(dom, /never asked on port 4011/);
      assert.match(dom, /The transfer of "vmlinuz" timed out after 3\.1 MB of 8\.0 MB/);
      assert.match(
        dom,
        /The client asked for "&lt;b&gt;oops&lt;\/b&gt;\.ipxe", which is not in the netboot tree/,
      );
      assert.doesNotMatch(dom, /<b>oops<\/b>/);
      assert.equal(dom.match(/<article class="client failed">/g)?.length, 4);
    } finally {
      await Deno.remove(png);
    }
  },
}));

Deno.test(requires(missingTools("chromium"), {
  name: "status page: mid-boot (the real boot 22.6 s in), the running stage and the transfer show live",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    const png = await Deno.makeTempFile({ suffix: ".png" });
    try {
      const dom = await renderStatusPage({ screenshot: png, boot: cutBoot(boot, 22.6), afterMs: 300 });
      assert.ok(
        dom.includes(
          '<li class="ok">✓ script</li><li class="now">kernel/<wbr>initrd</li><li class="todo">done</li>',
        ),
        "the current stage is highlighted",
      );
      assert.match(dom, /<span class="badge booting">booting<\/span>/);
      assert.match(
        dom,
        /vmlinuz · 5\.1 MB of 8\.2 MB · [\d.]+ kB\/s<\/span><div class="bar"><b style="width:62%">/,
      );
      assert.match(dom, /vmlinuz · 5\.1 MB of 8\.2 MB so far…/);
      assert.match(dom, /<b>1<\/b><span>transfers now<\/span>/);
    } finally {
      await Deno.remove(png);
    }
  },
}));
