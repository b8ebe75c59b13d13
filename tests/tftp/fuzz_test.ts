import assert from "node:assert/strict";
import { encodePacket } from "../../src/tftp/packet.ts";
import { readFixture, sha256File, waitFor } from "./helpers.ts";
import { prng, writeRandomFile } from "../helpers/random.ts";
import { run } from "../helpers/run.ts";
import { serveTftpTree } from "../helpers/servers.ts";
import { missingTools, requires } from "../helpers/tools.ts";

const FIXTURES = [
  "ipxe-bios-rrq-pxelinux0.bin",
  "ovmf-rrq-tsize.bin",
  "ovmf-rrq-no-tsize.bin",
  "pxelinux-rrq-ldlinux.bin",
  "ovmf-error-abort.bin",
  "dnsmasq-oack-ovmf-tsize.bin",
].map(readFixture);

/** A random or mutated datagram: raw noise, fixture mutations, and near-valid requests with odd options. */
function fuzzDatagram(rand: () => number, names: string[]): Uint8Array {
  const kind = Math.floor(rand() * 5);
  if (kind === 0) return Uint8Array.from({ length: Math.floor(rand() * 80) }, () => Math.floor(rand() * 256));
  if (kind === 1 || kind === 2) {
    const base = FIXTURES[Math.floor(rand() * FIXTURES.length)];
    const bytes = base.slice(0, Math.floor(rand() * (base.length + 8)));
    const flips = 1 + Math.floor(rand() * 4);
    for (let i = 0; i < flips && bytes.length > 0; i++) {
      bytes[Math.floor(rand() * bytes.length)] = Math.floor(rand() * 256);
    }
    return bytes;
  }
  if (kind === 3) {
    const opts: [string, string][] = [];
    const names2 = ["blksize", "BLKSIZE", "tsize", "timeout", "windowsize", "x", ""];
    const values = ["0", "8", "7", "65464", "65465", "99999999999", "-1", "abc", "", "1", "64", "255"];
    for (let i = Math.floor(rand() * 4); i > 0; i--) {
      opts.push([
        names2[Math.floor(rand() * names2.length)] || "y",
        values[Math.floor(rand() * values.length)],
      ]);
    }
    const modes = ["octet", "OCTET", "netascii", "mail", "x"];
    return encodePacket({
      op: rand() < 0.9 ? "rrq" : "wrq",
      filename: names[Math.floor(rand() * names.length)],
      mode: modes[Math.floor(rand() * modes.length)],
      options: opts,
    });
  }
  const op = 3 + Math.floor(rand() * 4);
  return Uint8Array.from([
    0,
    op,
    Math.floor(rand() * 256),
    Math.floor(rand() * 256),
    ...[1, 2, 3].slice(0, Math.floor(rand() * 4)),
  ]);
}

Deno.test(requires(missingTools("curl"), {
  name:
    "fuzz: thousands of random datagrams to the request port and a transfer socket, then curl still matches",
  sanitizeResources: true,
  sanitizeOps: true,
  async fn() {
    const t = await serveTftpTree({ "small.txt": "hello\n" }, { defaultTimeoutMs: 100, maxRetries: 2 });
    const attacker = Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port: 0 });
    const victim = Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port: 0 });
    try {
      await writeRandomFile(`${t.dir}/root/f.bin`, 2_000_000, 31);
      const want = await sha256File(`${t.dir}/root/f.bin`);
      const rand = prng(20240601);
      const names = ["f.bin", "small.txt", "nope", "../etc/passwd", "dir/..", "\\f.bin", "F.BIN"];
      const to = (port: number) => ({ transport: "udp" as const, hostname: "127.0.0.1", port });
      for (let i = 0; i < 3000; i++) await attacker.send(fuzzDatagram(rand, names), to(t.port));
      // open a real transfer from `victim`, then hit its socket from the wrong TID and from the right one
      // (the flood may have overflowed the request socket's buffer: retry the RRQ, bounded)
      const pending = victim.receive(new Uint8Array(1024));
      let tidAddr: Deno.Addr | null = null;
      for (let attempt = 0; attempt < 20 && tidAddr === null; attempt++) {
        await victim.send(
          encodePacket({ op: "rrq", filename: "f.bin", mode: "octet", options: [] }),
          to(t.port),
        );
        let timer: ReturnType<typeof setTimeout> | undefined;
        const got = await Promise.race([pending, new Promise<null>((r) => timer = setTimeout(r, 250, null))]);
        clearTimeout(timer);
        if (got !== null) tidAddr = got[1];
      }
      assert.ok(tidAddr !== null, "the server never answered the victim's RRQ");
      const tid = (tidAddr as Deno.NetAddr).port;
      for (let i = 0; i < 2000; i++) await attacker.send(fuzzDatagram(rand, names), to(tid));
      for (let i = 0; i < 500; i++) await victim.send(fuzzDatagram(rand, names), to(tid));
      for (const bs of ["512", "1468"]) {
        const out = `${t.dir}/out${bs}`;
        const r = await run([
          "curl",
          "-sS",
          "--max-time",
          "60",
          "-o",
          out,
          "--tftp-blksize",
          bs,
          `tftp://127.0.0.1:${t.port}/f.bin`,
        ]);
        assert.equal(r.code, 0, r.stderr);
        assert.equal(await sha256File(out), want);
      }
      // every fuzz-started transfer ends by itself (nobody ACKs): no state survives
      assert.ok(
        await waitFor(() => t.server.activeTransfers === 0, 10_000),
        `${t.server.activeTransfers} left`,
      );
    } finally {
      attacker.close();
      victim.close();
      await t.close();
    }
  },
}));
