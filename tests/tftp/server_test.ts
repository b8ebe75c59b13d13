import assert from "node:assert/strict";
import { BootEvents } from "../../src/events.ts";
import { DEFAULTS } from "../../src/config.ts";
import type { NetbootFs } from "../../src/netboot/fs.ts";
import type { StaticLeases } from "../../src/static_leases.ts";
import { decodePacket, encodePacket, type TftpPacket } from "../../src/tftp/packet.ts";
import { createTftpService, TftpServer } from "../../src/tftp/server.ts";
import { tftpGet } from "../helpers/tftp_client.ts";
import { readFixture, sha256, sha256File, waitFor } from "./helpers.ts";
import { writeRandomFile } from "../helpers/random.ts";
import { run } from "../helpers/run.ts";
import { serveTftpTree } from "../helpers/servers.ts";
import { missingTools, requires, toolAvailable } from "../helpers/tools.ts";

const T = { sanitizeResources: true, sanitizeOps: true };
const enc = new TextEncoder();

/** A raw UDP socket with a bounded receive. */
class Raw {
  readonly sock = Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port: 0 });
  #pending: Promise<[Uint8Array, Deno.Addr]> | null = null;
  send(bytes: Uint8Array, port: number): Promise<number> {
    return this.sock.send(bytes, { transport: "udp", hostname: "127.0.0.1", port });
  }
  /** The next datagram within `ms`, or null. */
  async recv(ms = 2000): Promise<{ packet: TftpPacket; port: number } | null> {
    this.#pending ??= this.sock.receive(new Uint8Array(65536));
    let timer: ReturnType<typeof setTimeout> | undefined;
    const got = await Promise.race([
      this.#pending,
      new Promise<null>((r) => timer = setTimeout(r, ms, null)),
    ]);
    clearTimeout(timer);
    if (got === null) return null;
    this.#pending = null;
    return { packet: decodePacket(got[0]), port: (got[1] as Deno.NetAddr).port };
  }
  async close(): Promise<void> {
    this.sock.close();
    if (this.#pending) await this.#pending.catch(() => null);
  }
}

function rrq(file: string, options: [string, string][] = [], mode = "octet"): Uint8Array {
  return encodePacket({ op: "rrq", filename: file, mode, options });
}

Deno.test(requires(missingTools("curl"), {
  name: "server: curl fetches at blksize 512, 1468, 8192 and 65464 with matching sha256",
  ...T,
  async fn() {
    const t = await serveTftpTree({});
    try {
      await writeRandomFile(`${t.dir}/root/big.bin`, 5 * 1024 * 1024 + 333, 3); // above the cache limit
      await writeRandomFile(`${t.dir}/root/small.bin`, 70_000, 4); // cached
      for (const file of ["big.bin", "small.bin"]) {
        const want = await sha256File(`${t.dir}/root/${file}`);
        for (const bs of [512, 1468, 8192, 65464]) {
          const out = `${t.dir}/out-${bs}`;
          const r = await run([
            "curl",
            "-sS",
            "-o",
            out,
            "--tftp-blksize",
            String(bs),
            `tftp://127.0.0.1:${t.port}/${file}`,
          ]);
          assert.equal(r.code, 0, `curl ${file} ${bs}: ${r.stderr}`);
          assert.equal(await sha256File(out), want, `${file} blksize ${bs}`);
        }
      }
      assert.ok(await waitFor(() => t.server.activeTransfers === 0));
      const ends = t.events.filter((e) => e.kind === "transfer-end");
      assert.equal(ends.length, 8);
      assert.ok(ends.every((e) => e.kind === "transfer-end" && e.outcome === "ok"));
    } finally {
      await t.close();
    }
  },
}));

Deno.test(requires(missingTools("atftp"), {
  name: "server: atftp with blksize, tsize and windowsize 1/4/8/16 matches",
  ...T,
  async fn() {
    const t = await serveTftpTree({});
    try {
      await writeRandomFile(`${t.dir}/root/f.bin`, 3 * 1024 * 1024 + 17, 5);
      const want = await sha256File(`${t.dir}/root/f.bin`);
      const cases: [number, number][] = [[512, 1], [1468, 1], [1468, 4], [1468, 16], [8192, 8], [8192, 16]];
      for (const [bs, ws] of cases) {
        const out = `${t.dir}/out`;
        const args = ["--option", `blksize ${bs}`, "--option", "tsize 0", "--option", `windowsize ${ws}`];
        const r = await run([
          "atftp",
          "--get",
          "-r",
          "f.bin",
          "-l",
          out,
          ...args,
          "127.0.0.1",
          String(t.port),
        ], {
          timeoutMs: 60_000,
        });
        assert.equal(r.code, 0, `atftp ${bs}/${ws}: ${r.stderr}`);
        assert.equal(await sha256File(out), want, `atftp blksize ${bs} windowsize ${ws}`);
      }
      const starts = t.events.filter((e) => e.kind === "transfer-start");
      // 8192 x 16 is cut to 8 so the window stays within 64 KiB
      assert.match(
        starts.at(-1)!.kind === "transfer-start" ? starts.at(-1)!.options ?? "" : "",
        /windowsize=8/,
      );
    } finally {
      await t.close();
    }
  },
}));

Deno.test(requires(missingTools("tftp"), {
  name: "server: tftp-hpa fetches binary, and netascii converts line ends",
  ...T,
  async fn() {
    const text = "line one\nline two\r\nend";
    const t = await serveTftpTree({ "boot/menu.txt": text });
    try {
      await writeRandomFile(`${t.dir}/root/f.bin`, 1_000_000, 6);
      const r = await run([
        "tftp",
        "127.0.0.1",
        String(t.port),
        "-m",
        "binary",
        "-c",
        "get",
        "f.bin",
        `${t.dir}/o`,
      ]);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(await sha256File(`${t.dir}/o`), await sha256File(`${t.dir}/root/f.bin`));
      const got = await tftpGet({
        port: t.port,
        file: "boot\\menu.txt",
        mode: "NETASCII",
        options: [["tsize", "0"]],
      });
      const want = "line one\r\nline two\r\0\r\nend";
      assert.equal(new TextDecoder().decode(got.bytes), want);
      assert.deepEqual(got.oack, [["tsize", String(want.length)]]);
    } finally {
      await t.close();
    }
  },
}));

Deno.test(requires(missingTools("curl"), {
  name: "server: a 100 MiB file at blksize 512 (block numbers roll over) matches by sha256",
  ...T,
  async fn() {
    const t = await serveTftpTree({});
    try {
      const path = `${t.dir}/root/huge.bin`;
      await writeRandomFile(path, 100 * 1024 * 1024, 9);
      const r = await run([
        "curl",
        "-sS",
        "-o",
        `${t.dir}/o`,
        "--tftp-blksize",
        "512",
        `tftp://127.0.0.1:${t.port}/huge.bin`,
      ], {
        timeoutMs: 300_000,
      });
      assert.equal(r.code, 0, r.stderr);
      assert.equal(await sha256File(`${t.dir}/o`), await sha256File(path));
    } finally {
      await t.close();
    }
  },
}));

Deno.test({
  name: "server: windowsize with the test client, with losses inside windows",
  ...T,
  async fn() {
    const t = await serveTftpTree({});
    try {
      await writeRandomFile(`${t.dir}/root/w.bin`, 400_000, 8);
      const want = await sha256File(`${t.dir}/root/w.bin`);
      for (const ws of [4, 16, 64]) {
        const got = await tftpGet({
          port: t.port,
          file: "w.bin",
          options: [["blksize", "1024"], ["windowsize", String(ws)], ["tsize", "0"]],
          dropOnce: new Set([3, 17, 100, 101, 250]),
        });
        assert.equal(got.error, null);
        assert.equal(sha256(got.bytes), want, `windowsize ${ws}`);
        assert.deepEqual(got.oack, [["blksize", "1024"], ["windowsize", String(ws)], ["tsize", "400000"]]);
      }
    } finally {
      await t.close();
    }
  },
});

Deno.test({
  name: "server: missing file, directory, traversal, WRQ and bad mode get the right ERROR",
  ...T,
  async fn() {
    const t = await serveTftpTree({ "dir/a.txt": "a" });
    const raw = new Raw();
    try {
      const expectError = async (bytes: Uint8Array, code: number) => {
        await raw.send(bytes, t.port);
        const got = await raw.recv();
        assert.ok(got !== null, `no answer, wanted ERROR ${code}`);
        assert.equal(got.packet.op, "error");
        assert.equal(got.packet.op === "error" && got.packet.code, code);
      };
      await expectError(rrq("nope.bin"), 1);
      await expectError(rrq("pxelinux.cfg/01-aa-bb"), 1);
      await expectError(rrq("dir"), 1);
      await expectError(rrq("../../../etc/passwd"), 2);
      await expectError(rrq("..\\..\\etc\\passwd"), 2);
      await expectError(encodePacket({ op: "wrq", filename: "x", mode: "octet", options: [] }), 2);
      await expectError(rrq("dir/a.txt", [], "mail"), 4);
      if (toolAvailable("curl: a missing file is exit 68", "curl")) {
        const r = await run(["curl", "-sS", "-o", `${t.dir}/o`, `tftp://127.0.0.1:${t.port}/missing`]);
        assert.equal(r.code, 68, r.stderr); // CURLE_TFTP_NOTFOUND
      }
      if (toolAvailable("tftp-hpa: a put gets ERROR 2", "tftp")) {
        await Deno.writeTextFile(`${t.dir}/up.txt`, "x");
        const r = await run(["tftp", "127.0.0.1", String(t.port), "-c", "put", `${t.dir}/up.txt`, "up.txt"]);
        assert.match(r.stdout + r.stderr, /Error code 2/);
      }
      assert.equal(t.events.filter((e) => e.kind === "transfer-start").length, 0);
    } finally {
      await raw.close();
      await t.close();
    }
  },
});

Deno.test({
  name: "server: a datagram from a wrong TID gets ERROR 5 and the transfer goes on; duplicate RRQ ignored",
  ...T,
  async fn() {
    const content = new Uint8Array(3000).map((_, i) => i * 7);
    const t = await serveTftpTree({ "f.bin": content });
    const client = new Raw();
    const intruder = new Raw();
    try {
      await client.send(rrq("f.bin"), t.port);
      await client.send(rrq("f.bin"), t.port); // duplicate while running: ignored
      const first = await client.recv();
      assert.ok(first !== null && first.packet.op === "data" && first.packet.block === 1);
      const tid = first.port;
      assert.notEqual(tid, t.port);
      await intruder.send(encodePacket({ op: "ack", block: 1 }), tid);
      const err = await intruder.recv();
      assert.ok(err !== null && err.packet.op === "error" && err.packet.code === 5);
      const parts = [first.packet.op === "data" ? first.packet.data.slice() : new Uint8Array()];
      for (let block = 1; block < 10; block++) {
        await client.send(encodePacket({ op: "ack", block }), tid);
        const next = await client.recv();
        assert.ok(next !== null && next.packet.op === "data", `block ${block + 1}`);
        assert.equal(next.port, tid);
        if (next.packet.op !== "data") break;
        parts.push(next.packet.data.slice());
        if (next.packet.data.length < 512) {
          await client.send(encodePacket({ op: "ack", block: next.packet.block }), tid);
          break;
        }
      }
      const got = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
      parts.reduce((pos, p) => (got.set(p, pos), pos + p.length), 0);
      assert.deepEqual(got, content);
      assert.equal(await client.recv(300), null); // no second transfer answered the duplicate
      assert.ok(await waitFor(() => t.server.activeTransfers === 0));
      assert.equal(t.events.filter((e) => e.kind === "transfer-start").length, 1);
    } finally {
      await client.close();
      await intruder.close();
      await t.close();
    }
  },
});

Deno.test({
  name: "server: every malformed datagram from PyPXE's list is dropped and a transfer right after works",
  ...T,
  async fn() {
    const t = await serveTftpTree({ "ok.bin": new Uint8Array(5000).fill(0x5a) });
    const raw = new Raw();
    try {
      const garbage = new Uint8Array(60 * 1024).map((_, i) => (i * 31) & 0xff);
      const cases: [string, Uint8Array][] = [
        ["1-byte packet", new Uint8Array([1])],
        ["stray ACK", encodePacket({ op: "ack", block: 1 })],
        ["stray DATA", encodePacket({ op: "data", block: 1, data: new Uint8Array(10) })],
        ["ERROR to port 69", encodePacket({ op: "error", code: 0, message: "x" })],
        ["stray OACK", encodePacket({ op: "oack", options: [["blksize", "512"]] })],
        ["RRQ without mode", new Uint8Array([0, 1, ...enc.encode("ok.bin"), 0])],
        ["non-ASCII name", new Uint8Array([0, 1, 0xc3, 0x28, 0xff, 0, ...enc.encode("octet"), 0])],
        ["option without value", new Uint8Array([0, 1, ...enc.encode("ok.bin\0octet\0blksize\0")])],
        ["60 KiB garbage", garbage],
        ["unknown opcode", new Uint8Array([0, 99, 1, 2, 3])],
      ];
      for (const [what, bytes] of cases) {
        await raw.send(bytes, t.port);
        assert.equal(await raw.recv(100), null, `${what}: no answer expected`);
        const got = await tftpGet({ port: t.port, file: "ok.bin", options: [["blksize", "1468"]] });
        assert.equal(got.bytes.length, 5000, what);
      }
      // well-formed requests with bad option values: served, the option ignored
      for (
        const opts of [[["blksize", "0"]], [["blksize", "abc"]], [["tsize", "x"], ["timeout", "0"]]] as [
          string,
          string,
        ][][]
      ) {
        const got = await tftpGet({ port: t.port, file: "ok.bin", options: opts });
        assert.equal(got.oack, null);
        assert.equal(got.bytes.length, 5000);
      }
      // a non-ASCII but valid UTF-8 name is simply not found
      await raw.send(rrq("ünïcode.bin"), t.port);
      const nf = await raw.recv();
      assert.ok(nf !== null && nf.packet.op === "error" && nf.packet.code === 1);
    } finally {
      await raw.close();
      await t.close();
    }
  },
});

Deno.test({
  name: "server: OVMF's tsize probe (ERROR 8 after OACK) then the real download",
  ...T,
  async fn() {
    const efi = new Uint8Array(850528).map((_, i) => (i * 13) & 0xff);
    const t = await serveTftpTree({ "ipxe.efi": efi });
    const raw = new Raw();
    try {
      await raw.send(readFixture("ovmf-rrq-tsize.bin"), t.port);
      const oack = await raw.recv();
      assert.ok(oack !== null && oack.packet.op === "oack");
      assert.deepEqual(oack.packet.op === "oack" && oack.packet.options, [
        ["tsize", "850528"],
        ["blksize", "1468"],
        ["windowsize", "4"],
      ]);
      await raw.sock.send(readFixture("ovmf-error-abort.bin"), {
        transport: "udp",
        hostname: "127.0.0.1",
        port: oack.port,
      });
      assert.ok(await waitFor(() => t.events.some((e) => e.kind === "transfer-end")));
      const end = t.events.find((e) => e.kind === "transfer-end");
      assert.equal(end?.kind === "transfer-end" && end.outcome, "client error 8: User aborted the transfer");
      assert.equal(await raw.recv(1200), null, "nothing is retransmitted after the abort");
      const got = await tftpGet({
        port: t.port,
        file: "ipxe.efi",
        options: [["blksize", "1468"], ["windowsize", "4"]],
      });
      assert.equal(sha256(got.bytes), sha256(efi));
    } finally {
      await raw.close();
      await t.close();
    }
  },
});

Deno.test({
  name: "server: an abandoned transfer is retransmitted, then dropped with its socket",
  ...T,
  async fn() {
    const t = await serveTftpTree({ "f.bin": new Uint8Array(2000) }, { defaultTimeoutMs: 50, maxRetries: 3 });
    const raw = new Raw();
    try {
      await raw.send(rrq("f.bin", [["blksize", "1000"]]), t.port);
      let oacks = 0;
      for (let i = 0; i < 10; i++) {
        const got = await raw.recv(1500);
        if (got === null) break;
        if (got.packet.op === "oack") oacks++;
      }
      assert.equal(oacks, 4); // first send + 3 retries
      assert.ok(await waitFor(() => t.server.activeTransfers === 0));
      const end = t.events.find((e) => e.kind === "transfer-end");
      assert.match(end?.kind === "transfer-end" ? end.outcome : "", /^timeout/);
    } finally {
      await raw.close();
      await t.close();
    }
  },
});

Deno.test({
  name: "server: stop() during a transfer releases everything; the client gets an ERROR",
  ...T,
  async fn() {
    const t = await serveTftpTree({ "f.bin": new Uint8Array(100_000) });
    const raw = new Raw();
    try {
      await raw.send(rrq("f.bin"), t.port);
      const first = await raw.recv();
      assert.ok(first !== null && first.packet.op === "data");
      await t.server.stop();
      const err = await raw.recv();
      assert.ok(err !== null && err.packet.op === "error");
      assert.equal(t.server.activeTransfers, 0);
    } finally {
      await raw.close();
      await t.close();
    }
  },
});

Deno.test({
  name: "server: bind failure rejects with one line; the factory honours USE_TFTP",
  ...T,
  async fn() {
    const t = await serveTftpTree({});
    try {
      const other = new TftpServer({
        host: "127.0.0.1",
        port: t.port,
        netboot: await netboot(t.dir),
        events: new BootEvents(),
      });
      await assert.rejects(other.start(), (err: Error) => {
        assert.match(err.message, /^tftp: UDP 127\.0\.0\.1:\d+ is in use/);
        assert.ok(!err.message.includes("\n"));
        return true;
      });
      const ctx = {
        config: { ...DEFAULTS, USE_TFTP: false },
        netboot: await netboot(t.dir),
        events: new BootEvents(),
        staticLeases: new Map() as StaticLeases,
      };
      assert.equal(createTftpService(ctx), null);
      const svc = createTftpService({ ...ctx, config: { ...DEFAULTS, TFTP_PORT: 6969 } });
      assert.ok(svc instanceof TftpServer);
      assert.deepEqual(svc.endpoints(), ["UDP 0.0.0.0:6969"]);
    } finally {
      await t.close();
    }
  },
});

async function netboot(dir: string): Promise<NetbootFs> {
  const { NetbootFs } = await import("../../src/netboot/fs.ts");
  return NetbootFs.open({ overlay: `${dir}/root`, embedded: `${dir}/none` });
}
