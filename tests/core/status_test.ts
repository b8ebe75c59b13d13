import assert from "node:assert/strict";
import { BootEvents } from "../../src/events.ts";
import { MAX_TIMELINE, stageOfFile, StatusBoard } from "../../src/status.ts";
import { sizeText } from "../../src/status/timeline.ts";
import { startPypxe } from "../helpers/servers.ts";
import { run } from "../helpers/run.ts";
import { DhcpResponder } from "../../src/dhcp/responder.ts";
import { MessageType, refConfig, wire } from "../dhcp/helpers.ts";

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
    [c] = board.clients();
    assert.equal(c.stage, "done");
    assert.equal(c.state, "done");
    // the transfer seen before DHCP and the DHCP exchange are one timeline, in time order
    assert.deepEqual(
      c.timeline.map((e) => [e.kind, e.kind === "dhcp" ? e.sent : e.file, e.at - 1_000_000]),
      [
        ["transfer", "ipxe.efi", 0],
        ["dhcp", "ACK", 0],
        ["transfer", "boot.http.ipxe", 500],
        ["transfer", "initrd.img", 500],
      ],
    );
    const ipxe = c.timeline[0];
    assert.ok(ipxe.kind === "transfer");
    assert.deepEqual([ipxe.bytes, ipxe.ms, ipxe.outcome], [1000, 500, "ok"]);
    assert.equal(c.timeline[2].kind === "transfer" && c.timeline[2].outcome, undefined, "still running");
    const snap = board.snapshot();
    assert.deepEqual(snap.totals, { clients: 1, booting: 0, done: 1, failed: 0, transfers: 1, bytes: 6000 });
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
    // a name that is not in the tree: TFTP error 1, and the page says what it means
    const missing = await run([
      "curl",
      "-sS",
      "--max-time",
      "10",
      "-o",
      "/dev/null",
      `tftp://127.0.0.1:${tftpPort}/no-such-kernel`,
    ]);
    assert.notEqual(missing.code, 0);
    const base = `http://127.0.0.1:${httpPort}`;
    const json = await (await fetch(`${base}/status.json`)).json();
    const client = json.clients.find((c: { ip?: string }) => c.ip === "127.0.0.1");
    assert.ok(client, JSON.stringify(json));
    assert.equal(client.file, "pxelinux.cfg/default");
    assert.equal(client.stage, "script");
    assert.equal(client.state, "failed");
    assert.deepEqual(
      client.timeline.map((
        e: { kind: string; file: string; outcome?: string },
      ) => [e.kind, e.file, e.outcome]),
      [["transfer", "pxelinux.cfg/default", "ok"], ["refused", "no-such-kernel", undefined]],
    );
    assert.equal(client.hints[0].code, "missing-file");
    assert.match(client.hints[0].text, /"no-such-kernel", which is not in the netboot tree/);
    // the header: what runs where (told by the program at start), and the totals
    assert.deepEqual(
      json.server.services.map((s: { name: string; endpoints: string[] }) => [s.name, s.endpoints]),
      [["tftp", [`UDP 127.0.0.1:${tftpPort}`]], ["http", [`TCP 127.0.0.1:${httpPort}`]]],
    );
    assert.match(json.server.notes.join("\n"), /^netboot: /m);
    assert.equal(json.totals.clients, 1);
    assert.equal(json.totals.failed, 1);
    const metrics = await (await fetch(`${base}/metrics`)).text();
    assert.match(metrics, /^pypxe_transfers_total\{service="tftp",outcome="ok"\} 1$/m);
    const page = await (await fetch(`${base}/status`)).text();
    assert.match(page, /new EventSource\("\/status\/live"\)/);
    const size = sizeText(client.timeline[0].bytes);
    assert.ok(page.includes(`pxelinux.cfg/default · ${size} in `), "the first view is in the page");
    assert.ok(
      page.includes(
        '<ol class="stages"><li class="ok">✓ DHCP</li><li class="ok">✓ boot program</li>' +
          '<li class="ok">✓ script</li><li class="bad">✕ kernel/<wbr>initrd</li><li class="todo">done</li></ol>',
      ),
      "labelled stages, the failed one marked",
    );
    assert.match(page, /Why it stopped:/);
    assert.match(page, /<b>TFTP<\/b> UDP 127\.0\.0\.1:\d+/);
    for (
      const [path, start] of [["/status/events", /^data: \{"time":\d+,"server":/], [
        "/status/live",
        /^data: "<header>/,
      ]] as const
    ) {
      const stream = await fetch(`${base}${path}`);
      assert.equal(stream.headers.get("content-type"), "text/event-stream");
      const reader = stream.body!.getReader();
      const first = new TextDecoder().decode((await reader.read()).value);
      assert.match(first, start);
      await reader.cancel();
    }
  } finally {
    assert.equal(await pypxe.stop("SIGTERM"), 0);
  }
});

Deno.test("status: routine misses fold into one entry, a stranger's favicon.ico is no client, timelines are bounded", () => {
  let now = 2_000_000;
  const events = new BootEvents();
  const board = new StatusBoard(events, { now: () => now });
  try {
    events.emit({
      kind: "file-refused",
      service: "http",
      client: "10.0.0.200:5000",
      file: "favicon.ico",
      reason: "not-found",
      routine: true,
    });
    assert.equal(board.clients().length, 0, "a browser looking at /status is not a booting client");
    events.emit({
      kind: "dhcp",
      mac: "aa:bb:cc:dd:ee:02",
      received: "REQUEST",
      sent: "ACK",
      client: "BIOS",
      ip: "10.0.0.10",
      bootFile: "pxelinux.0",
    });
    for (const name of ["01-aa-bb-cc-dd-ee-02", "0A00000A", "0A00000", "0A0000"]) {
      now += 10;
      events.emit({
        kind: "file-refused",
        service: "tftp",
        client: "10.0.0.10:2000",
        file: `pxelinux.cfg/${name}`,
        reason: "not-found",
        routine: true,
      });
    }
    let [c] = board.clients();
    assert.equal(c.timeline.length, 2);
    const probes = c.timeline[1];
    assert.ok(probes.kind === "refused");
    assert.deepEqual([probes.file, probes.count, probes.last - probes.at], [
      "pxelinux.cfg/01-aa-bb-cc-dd-ee-02",
      4,
      30,
    ]);
    assert.deepEqual(c.hints, [], "routine misses are no problem");
    events.emit({
      kind: "file-refused",
      service: "tftp",
      client: "10.0.0.10:2001",
      file: "vmlinuz-missing",
      reason: "not-found",
      routine: false,
    });
    [c] = board.clients();
    assert.equal(c.state, "failed");
    assert.deepEqual(c.hints.map((h) => h.code), ["missing-file"]);
    for (let i = 0; i < MAX_TIMELINE + 10; i++) {
      now += 1000;
      events.emit({
        kind: "dhcp",
        mac: "aa:bb:cc:dd:ee:02",
        received: "DISCOVER",
        sent: i % 2 ? "OFFER" : "none",
      });
    }
    [c] = board.clients();
    assert.equal(c.timeline.length, MAX_TIMELINE);
    assert.equal(c.timeline[c.timeline.length - 1].at, now);
  } finally {
    board.close();
  }
});

Deno.test("status: a REQUEST naming another DHCP server reaches the board and is explained", () => {
  const events = new BootEvents();
  const board = new StatusBoard(events);
  const responder = new DhcpResponder({ config: refConfig(), events });
  const from = { hostname: "0.0.0.0", port: 68, on: "dhcp" } as const;
  const mac = "52:54:00:aa:00:01";
  try {
    const pxe = { arch: 0, vendorClass: "PXEClient:Arch:00000:UNDI:002001" };
    assert.equal(responder.handle(wire(MessageType.DISCOVER, mac, pxe), from).length, 1, "pypxe offers");
    // ...but the client took the other server's offer
    const req = { ...pxe, serverId: "192.168.77.254", requested: "192.168.77.20" };
    assert.deepEqual(responder.handle(wire(MessageType.REQUEST, mac, req), from), []);
    const [c] = board.clients();
    const last = c.timeline[c.timeline.length - 1];
    assert.ok(last.kind === "dhcp");
    assert.deepEqual([last.received, last.sent, last.server, last.bootFile], [
      "REQUEST",
      "none",
      "192.168.77.254",
      undefined,
    ]);
    assert.equal(c.state, "failed");
    assert.deepEqual(c.hints.map((h) => h.code), ["other-dhcp-server"]);
    assert.match(c.hints[0].text, /Another DHCP server \(192\.168\.77\.254\) answered first/);
  } finally {
    board.close();
  }
});

Deno.test("status: an IPv6 client's DHCPv6 address and its [addr]:port transfers are one client", () => {
  const events = new BootEvents();
  const board = new StatusBoard(events, { now: () => 1_000_000 });
  try {
    events.emit({
      kind: "dhcp",
      mac: "52:54:00:77:00:66",
      received: "REQUEST",
      sent: "REPLY",
      client: "UEFI x64 (IPv6)",
      ip: "fd00:1::1:0",
      bootFile: "ipxe.efi",
    });
    events.emit({
      kind: "transfer-start",
      service: "tftp",
      id: 1,
      client: "[fd00:1::1:0]:1500",
      file: "ipxe.efi",
      size: 1000,
    });
    const clients = board.clients();
    assert.equal(clients.length, 1);
    assert.deepEqual([clients[0].mac, clients[0].ip, clients[0].label, clients[0].stage], [
      "52:54:00:77:00:66",
      "fd00:1::1:0",
      "UEFI x64 (IPv6)",
      "nbp",
    ]);
  } finally {
    board.close();
  }
});
