import assert from "node:assert/strict";
import { BootEvents } from "../../src/events.ts";
import { stageOfFile, StatusBoard } from "../../src/status.ts";
import { startPypxe } from "../helpers/servers.ts";
import { renderStatusPage } from "../../scripts/status_screenshot.ts";
import { missingTools, requires } from "../helpers/tools.ts";
import { run } from "../helpers/run.ts";

Deno.test("status: stages follow the files a client fetches; DHCP and transfers merge by IP", () => {
  let now = 1_000_000;
  const events = new BootEvents();
  const board = new StatusBoard(events, { now: () => now });
  try {
    // a transfer seen before the DHCP event that names its MAC merges into that client
    events.emit({
      kind: "transfer-start",
      service: "tftp",
      id: 1,
      client: "10.0.0.9:1000",
      file: "ipxe.efi",
      size: 1000,
    });
    events.emit({
      kind: "dhcp",
      mac: "aa:bb:cc:dd:ee:01",
      received: "REQUEST",
      sent: "ACK",
      client: "UEFI x64",
      ip: "10.0.0.9",
    });
    now += 500;
    events.emit({
      kind: "transfer-end",
      service: "tftp",
      id: 1,
      client: "10.0.0.9:1000",
      file: "ipxe.efi",
      bytes: 1000,
      ms: 500,
      outcome: "ok",
    });
    let [c] = board.clients();
    assert.deepEqual([c.mac, c.ip, c.label, c.stage, c.bytes, c.rate], [
      "aa:bb:cc:dd:ee:01",
      "10.0.0.9",
      "UEFI x64",
      "nbp",
      1000,
      2000,
    ]);
    events.emit({
      kind: "transfer-start",
      service: "http",
      id: 2,
      client: "10.0.0.9:2000",
      file: "boot.http.ipxe",
    });
    assert.equal(board.clients()[0].stage, "script");
    events.emit({
      kind: "transfer-start",
      service: "http",
      id: 3,
      client: "10.0.0.9:2000",
      file: "initrd.img",
      size: 5000,
    });
    events.emit({ kind: "transfer-progress", service: "http", id: 3, bytes: 2500 });
    [c] = board.clients();
    assert.deepEqual([c.stage, c.file, c.bytes, c.total], ["kernel", "initrd.img", 2500, 5000]);
    events.emit({
      kind: "transfer-end",
      service: "http",
      id: 3,
      client: "10.0.0.9:2000",
      file: "initrd.img",
      bytes: 5000,
      ms: 10,
      outcome: "ok",
    });
    assert.equal(board.clients()[0].stage, "done");
    const metrics = board.metrics();
    assert.match(metrics, /^pypxe_dhcp_messages_received_total\{type="REQUEST"\} 1$/m);
    assert.match(metrics, /^pypxe_dhcp_replies_sent_total\{type="ACK"\} 1$/m);
    assert.match(metrics, /^pypxe_transfers_total\{service="tftp",outcome="ok"\} 1$/m);
    assert.match(metrics, /^pypxe_transfer_bytes_total\{service="http"\} 5000$/m);
    assert.match(metrics, /^pypxe_active_transfers\{service="http"\} 1$/m, "boot.http.ipxe never ended");
    assert.match(metrics, /^# TYPE pypxe_transfers_total counter$/m);
  } finally {
    board.close();
  }
  assert.equal(stageOfFile("pxelinux.cfg/01-52-54-00-77-00-10"), "script");
  assert.equal(stageOfFile("undionly.kpxe"), "nbp");
  assert.equal(stageOfFile("images/rescue.iso"), "kernel");
  assert.equal(stageOfFile("README"), null);
});

Deno.test("status: a real TFTP transfer reaches /status.json, /metrics and the event stream", async () => {
  const free = () => {
    const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const port = (l.addr as Deno.NetAddr).port;
    l.close();
    return port;
  };
  const [httpPort, tftpPort] = [free(), free()];
  const pypxe = await startPypxe([
    "--http",
    "--http-port",
    String(httpPort),
    "--http-server-ip",
    "127.0.0.1",
    "--tftp-port",
    String(tftpPort),
    "--tftp-server-ip",
    "127.0.0.1",
  ]);
  try {
    const got = await run([
      "curl",
      "-sS",
      "--max-time",
      "10",
      "-o",
      "/dev/null",
      `tftp://127.0.0.1:${tftpPort}/pxelinux.cfg/default`,
    ]);
    assert.equal(got.code, 0);
    const base = `http://127.0.0.1:${httpPort}`;
    const json = await (await fetch(`${base}/status.json`)).json();
    const client = json.clients.find((c: { ip?: string }) => c.ip === "127.0.0.1");
    assert.ok(client, JSON.stringify(json));
    assert.equal(client.file, "pxelinux.cfg/default");
    assert.equal(client.stage, "script");
    const metrics = await (await fetch(`${base}/metrics`)).text();
    assert.match(metrics, /^pypxe_transfers_total\{service="tftp",outcome="ok"\} 1$/m);
    const page = await (await fetch(`${base}/status`)).text();
    assert.match(page, /new EventSource\("\/status\/events"\)/);
    assert.match(page, /pxelinux\.cfg\/default/, "the first view is in the page");
    const stream = await fetch(`${base}/status/events`);
    const reader = stream.body!.getReader();
    const first = new TextDecoder().decode((await reader.read()).value);
    assert.match(first, /^data: \{"clients":\[/);
    await reader.cancel();
  } finally {
    assert.equal(await pypxe.stop("SIGTERM"), 0);
  }
});

Deno.test(requires(missingTools("chromium"), {
  name: "status: the page renders in headless Chromium with two clients in different stages",
  sanitizeResources: false, // Chromium's pipes
  sanitizeOps: false,
  fn: async () => {
    const png = await Deno.makeTempFile({ suffix: ".png" });
    try {
      const dom = await renderStatusPage({ screenshot: png });
      assert.match(dom, /52:54:00:12:34:56/);
      assert.match(dom, /52:54:00:ab:cd:ef/);
      assert.match(dom, /kernel\/initrd · debian\/linux/);
      assert.match(dom, /boot program · pxelinux\.0/);
      const bytes = await Deno.readFile(png);
      assert.deepEqual([...bytes.subarray(1, 4)], [0x50, 0x4e, 0x47], "a PNG");
      assert.ok(bytes.length > 2000);
    } finally {
      await Deno.remove(png);
    }
  },
}));
