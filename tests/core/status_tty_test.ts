// deno-lint-ignore-file no-control-regex -- these tests check the terminal escape codes themselves
import assert from "node:assert/strict";
import { BootEvents } from "../../src/events.ts";
import { StatusBoard, type StatusSnapshot } from "../../src/status.ts";
import { renderStatusTable, TtyStatusView } from "../../src/status_tty.ts";
import { missingTools, requires } from "../helpers/tools.ts";
import { run } from "../helpers/run.ts";

Deno.test("tty status: log lines print above the table, which is erased and redrawn in one write", () => {
  const events = new BootEvents();
  const board = new StatusBoard(events, { now: () => 5_000 });
  const writes: string[] = [];
  const view = new TtyStatusView(board, (t) => writes.push(t), { now: () => 6_000 });
  try {
    assert.equal(writes.length, 1);
    assert.match(
      writes[0],
      /^\r\x1b\[J\x1b\[2m-- pypxe --\x1b\[0m\n\x1b\[2m {3}waiting for clients\x1b\[0m\n$/,
    );
    events.emit({
      kind: "dhcp",
      mac: "aa:bb:cc:dd:ee:01",
      received: "DISCOVER",
      sent: "OFFER",
      client: "BIOS",
      ip: "10.0.0.5",
    });
    view.writeLog("INFO dhcp aa:bb:cc:dd:ee:01 DISCOVER -> OFFER");
    const last = writes[writes.length - 1];
    // up two lines (the old table), clear, the log line, then the new table
    assert.match(last, /^\x1b\[2F\x1b\[JINFO dhcp aa:bb:cc:dd:ee:01 DISCOVER -> OFFER\n\x1b\[2m-- pypxe --/);
    assert.match(last, /1 client\(s\): 1 booting, 0 done, 0 failed · 0 transfer\(s\) running · 0 B served/);
    assert.match(last, /\x1b\[2mCLIENT +TYPE +IP +STAGE +FILE +PROGRESS +RATE SEEN\x1b\[0m/);
    assert.match(last, /aa:bb:cc:dd:ee:01 BIOS +10\.0\.0\.5 +DHCP .*\[----------\] +0% +1s\x1b\[0m\n$/);
  } finally {
    view.close();
    board.close();
  }
  assert.match(writes[writes.length - 1], /^\x1b\[4F\x1b\[J$/, "close() erases the table");
});

Deno.test("tty status: services line, totals, column names; rows show stage, file, bar and rate; hints", () => {
  const base = { firstSeen: 0, timeline: [], hints: [] };
  const snap: StatusSnapshot = {
    time: 3000,
    server: {
      services: [
        { name: "dhcp", endpoints: ["UDP 0.0.0.0:67", "UDP 10.0.0.1:67"] },
        { name: "tftp", endpoints: ["UDP 0.0.0.0:69"] },
      ],
    },
    totals: { clients: 3, booting: 1, done: 0, failed: 1, transfers: 1, bytes: 12_345_678 },
    clients: [
      {
        ...base,
        mac: "aa:bb:cc:dd:ee:02",
        ip: "10.0.0.6",
        label: "UEFI x64",
        stage: "kernel",
        file: "vmlinuz",
        bytes: 5e6,
        total: 1e7,
        rate: 2.5e6,
        lastSeen: 1000,
        state: "booting",
      },
      {
        ...base,
        mac: "aa:bb:cc:dd:ee:03",
        ip: "10.0.0.8",
        label: "UEFI x64",
        stage: "dhcp",
        bytes: 0,
        rate: 0,
        lastSeen: 1000,
        state: "failed",
        hints: [{
          code: "missing-file",
          stage: "nbp",
          at: 1000,
          short: "asked for ipxe.efi, which is missing",
          text: "",
        }],
      },
      { ...base, ip: "10.0.0.7", stage: "nbp", bytes: 0, rate: 0, lastSeen: 1000, state: "booting" },
    ],
  };
  const rows = renderStatusTable(snap, { maxRows: 2 });
  assert.deepEqual(rows.slice(0, 2), [
    "-- pypxe · dhcp 0.0.0.0:67 · tftp 0.0.0.0:69 --",
    "   3 client(s): 1 booting, 0 done, 1 failed · 1 transfer(s) running · 12.3 MB served",
  ]);
  assert.match(rows[2], /^CLIENT +TYPE +IP +STAGE +FILE +PROGRESS +RATE SEEN$/);
  assert.match(
    rows[3],
    /aa:bb:cc:dd:ee:02 UEFI x64 +10\.0\.0\.6 +kernel vmlinuz +\[#####-----\] +50% +2\.5MB\/s +2s/,
  );
  // the column names sit above their columns
  assert.equal(rows[2].indexOf("STAGE"), rows[3].indexOf("kernel"));
  assert.equal(rows[2].indexOf("FILE"), rows[3].indexOf("vmlinuz"));
  assert.equal(rows[2].length, rows[3].length);
  assert.match(rows[4], /aa:bb:cc:dd:ee:03 UEFI x64 +10\.0\.0\.8 +FAILED/);
  assert.equal(rows[5], "  ! asked for ipxe.efi, which is missing");
  assert.match(rows[6], /and 1 more/);
  assert.equal(rows.length, 7);
});

Deno.test(requires(missingTools("script"), {
  name: "tty status: on a real terminal (script's pty) the table shows a TFTP client live",
  fn: async () => {
    const l = Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port: 0 });
    const port = (l.addr as Deno.NetAddr).port;
    l.close();
    const main = new URL("../../main.ts", import.meta.url).pathname;
    const inner =
      `${Deno.execPath()} run -P --no-prompt ${main} --tftp-port ${port} --tftp-server-ip 127.0.0.1 & ` +
      `P=$!; sleep 4; kill -TERM $P; wait $P`;
    const tty = run(["script", "-qfec", inner, "/dev/null"], { env: { NO_COLOR: "1", TERM: "xterm" } });
    await new Promise((r) => setTimeout(r, 2500));
    const curl = await run([
      "curl",
      "-sS",
      "--max-time",
      "5",
      "-o",
      "/dev/null",
      `tftp://127.0.0.1:${port}/pxelinux.cfg/default`,
    ]);
    assert.equal(curl.code, 0);
    const out = await tty;
    const text = out.stdout;
    assert.equal(out.code, 0, text);
    assert.match(text, /-- pypxe · tftp 127\.0\.0\.1:\d+ --/, "the services line");
    assert.match(text, /waiting for clients/);
    assert.match(text, /1 client\(s\): 1 booting/);
    assert.match(text, /CLIENT +TYPE +IP +STAGE +FILE/);
    assert.match(text, /127\.0\.0\.1 +script +pxelinux\.cfg\/default/);
    assert.match(text, /\x1b\[\d+F\x1b\[J/, "the table is redrawn in place");
    assert.match(text, /INFO {2}tftp {2}127\.0\.0\.1:\d+ pxelinux\.cfg\/default/);
  },
}));
