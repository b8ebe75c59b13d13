/**
 * The generated `grub/grub.cfg` over the wire: a real TftpServer fetched by curl, tftp-hpa, atftp and the
 * test client (octet and netascii), and a real HttpServer fetched by curl (validators, conditional GET,
 * edits of menu.json). The expected bytes are `grubConfig()` of the same `menu.json`.
 * @module
 */
import assert from "node:assert/strict";
import { parseMenuFile } from "../../src/netboot/menu.ts";
import { grubConfig } from "../../src/netboot/grub.ts";
import { curl, SANITIZE } from "../http/helpers.ts";
import { tftpGet } from "../helpers/tftp_client.ts";
import { waitFor } from "./helpers.ts";
import { captureLogs } from "../helpers/logs.ts";
import { run } from "../helpers/run.ts";
import { serveHttpTree, serveTftpTree } from "../helpers/servers.ts";
import { missingTools, requires } from "../helpers/tools.ts";

const MENU = JSON.stringify({
  title: "Lab 'menu'",
  timeout: 8,
  default: "deb",
  entries: [
    {
      id: "deb",
      label: 'Debian 12 "bookworm" it\'s $fine',
      kernel: "debian/linux",
      initrd: ["debian/initrd.gz"],
      cmdline: "priority=low",
    },
    { id: "bios", label: "BIOS only", kernel: "memtest.bin", platform: "pcbios" },
    { id: "arm", label: "ARM64", kernel: "http://mirror.example/arm64/linux", arch: "arm64" },
    { id: "port", label: "Port", kernel: "http://mirror.example:8080/linux" },
    { id: "ipxevar", label: "iPXE var", kernel: "k", cmdline: "BOOTIF=01-${net0/mac:hexhyp}" },
    {
      id: "grubvar",
      label: "GRUB cmdline",
      kernel: "k",
      cmdline: "BOOTIF=01-${net0/mac:hexhyp}",
      grub_cmdline: "BOOTIF=01-$net_default_mac",
    },
  ],
});
/** Another menu.json: what an edit turns the menu into. */
const EDITED = JSON.stringify({
  timeout: 2,
  entries: [{ id: "rescue", label: "Rescue system", kernel: "rescue/vmlinuz", cmdline: "single" }],
});

const expected = (menuText: string) => grubConfig({ menu: parseMenuFile(menuText) });
/** Bytes on the wire for `text`: as is (octet) or with CRLF line ends (netascii). */
const wireLength = (text: string, netascii: boolean) =>
  new TextEncoder().encode(netascii ? text.replaceAll("\n", "\r\n") : text).length;
/** The byte counts of the finished transfers so far. */
const endBytes = (events: { kind: string }[]) =>
  events.flatMap((e) => e.kind === "transfer-end" && "bytes" in e ? [e.bytes as number] : []);
const dec = new TextDecoder();
const T = { sanitizeResources: true, sanitizeOps: true };

// ---------------------------------------------------------------------------------------------------
// TFTP

Deno.test(requires(missingTools("curl"), {
  name:
    "tftp generated: curl fetches grub/grub.cfg (and /GRUB/grub.cfg) = grubConfig(menu.json) at every blksize",
  ...T,
  async fn() {
    const t = await serveTftpTree({ "menu.json": MENU, "debian/linux": "kernel" });
    try {
      const want = expected(MENU);
      assert.match(want, /--id 'deb'/);
      for (const path of ["grub/grub.cfg", "GRUB/grub.cfg", "grub/GRUB.CFG"]) {
        for (const bs of [512, 1468, 8192]) {
          const out = `${t.dir}/out-${bs}`;
          const r = await run([
            "curl",
            "-sS",
            "--max-time",
            "20",
            "-o",
            out,
            "--tftp-blksize",
            String(bs),
            `tftp://127.0.0.1:${t.port}/${path}`,
          ]);
          assert.equal(r.code, 0, `curl ${path} ${bs}: ${r.stderr}`);
          assert.equal(await Deno.readTextFile(out), want, `${path} at blksize ${bs}`);
        }
      }
      assert.ok(await waitFor(() => t.server.activeTransfers === 0));
      const ends = t.events.filter((e) => e.kind === "transfer-end");
      assert.equal(ends.length, 9);
      for (const e of ends) {
        assert.ok(e.kind === "transfer-end");
        assert.equal(e.file, "grub/grub.cfg");
        assert.equal(e.outcome, "ok");
        assert.equal(e.bytes, new TextEncoder().encode(want).length);
      }
    } finally {
      await t.close();
    }
  },
}));

Deno.test(requires(missingTools("tftp"), {
  name: "tftp generated: tftp-hpa gets grub/grub.cfg in binary and in netascii (converted back to LF)",
  ...T,
  async fn() {
    const t = await serveTftpTree({ "menu.json": MENU });
    try {
      const want = expected(MENU);
      for (const mode of ["binary", "ascii"]) {
        const out = `${t.dir}/hpa-${mode}`;
        const r = await run(
          ["tftp", "127.0.0.1", String(t.port), "-m", mode, "-c", "get", "grub/grub.cfg", out],
          { timeoutMs: 30_000 },
        );
        assert.equal(r.code, 0, `${mode}: ${r.stderr}`);
        assert.doesNotMatch(r.stdout + r.stderr, /Error|not found/i);
        assert.equal(await Deno.readTextFile(out), want, mode);
      }
      // the second transfer really was netascii: the server sent the CRLF form
      assert.ok(await waitFor(() => endBytes(t.events).length === 2));
      assert.deepEqual(endBytes(t.events), [wireLength(want, false), wireLength(want, true)]);
    } finally {
      await t.close();
    }
  },
}));

Deno.test(requires(missingTools("atftp"), {
  name: "tftp generated: atftp gets grub/grub.cfg with tsize and blksize, and in netascii",
  ...T,
  async fn() {
    const t = await serveTftpTree({ "menu.json": MENU });
    try {
      const want = expected(MENU);
      const out = `${t.dir}/atftp`;
      const r = await run([
        "atftp",
        "--get",
        "-r",
        "grub/grub.cfg",
        "-l",
        out,
        "--option",
        "tsize 0",
        "--option",
        "blksize 1024",
        "127.0.0.1",
        String(t.port),
      ], { timeoutMs: 30_000 });
      assert.equal(r.code, 0, r.stderr);
      assert.equal(await Deno.readTextFile(out), want);

      // atftp's netascii mode is set in its command interpreter
      const ascii = `${t.dir}/atftp-ascii`;
      const done = await run(["atftp", "127.0.0.1", String(t.port)], {
        stdin: `mode netascii\nget grub/grub.cfg ${ascii}\nquit\n`,
        timeoutMs: 30_000,
      });
      assert.equal(done.code, 0, done.stderr);
      assert.equal(await Deno.readTextFile(ascii), want, "atftp netascii converts CRLF back");
      assert.ok(await waitFor(() => endBytes(t.events).length === 2));
      assert.deepEqual(endBytes(t.events), [wireLength(want, false), wireLength(want, true)]);
    } finally {
      await t.close();
    }
  },
}));

Deno.test({
  name: "tftp generated: netascii puts CRLF on the wire and tsize counts it; octet tsize is the byte length",
  ...T,
  async fn() {
    const t = await serveTftpTree({ "menu.json": MENU });
    try {
      const want = expected(MENU);
      const octet = await tftpGet({ port: t.port, file: "grub/grub.cfg", options: [["tsize", "0"]] });
      assert.equal(octet.error, null);
      assert.equal(dec.decode(octet.bytes), want);
      assert.deepEqual(octet.oack, [["tsize", String(new TextEncoder().encode(want).length)]]);

      const ascii = await tftpGet({
        port: t.port,
        file: "\\GRUB\\grub.cfg",
        mode: "netascii",
        options: [["tsize", "0"], ["blksize", "1428"]],
      });
      assert.equal(ascii.error, null);
      const wire = want.replaceAll("\n", "\r\n");
      assert.equal(dec.decode(ascii.bytes), wire);
      assert.deepEqual(ascii.oack, [["tsize", String(new TextEncoder().encode(wire).length)], [
        "blksize",
        "1428",
      ]]);
    } finally {
      await t.close();
    }
  },
});

Deno.test({
  name: "tftp generated: an edited menu.json is served at once; no menu.json -> default; a user's file wins",
  ...T,
  async fn() {
    const t = await serveTftpTree({ "menu.json": MENU });
    try {
      const get = async (file = "grub/grub.cfg") => {
        const r = await tftpGet({ port: t.port, file });
        assert.equal(r.error, null, `${file}: ${r.error?.message}`);
        return dec.decode(r.bytes);
      };
      assert.equal(await get(), expected(MENU));
      await Deno.writeTextFile(`${t.dir}/root/menu.json`, EDITED);
      assert.equal(await get(), expected(EDITED), "the next transfer has the edit");
      await Deno.writeTextFile(`${t.dir}/root/menu.json`, "{ broken");
      const broken = await get();
      assert.match(broken, /^# NOTE: menu\.json: \(file\): not valid JSON/m);
      assert.match(broken, /^set timeout=10$/m);
      await Deno.remove(`${t.dir}/root/menu.json`);
      assert.equal(await get(), grubConfig({ menu: null }));
      await Deno.mkdir(`${t.dir}/root/grub`);
      await Deno.writeTextFile(`${t.dir}/root/grub/grub.cfg`, "set timeout=1\n");
      assert.equal(await get(), "set timeout=1\n");
      assert.equal(await get("/GRUB/GRUB.CFG"), "set timeout=1\n");
    } finally {
      await t.close();
    }
  },
});

Deno.test({
  name:
    "tftp generated: GRUB's optional files stay 'File not found', logged at DEBUG (routine), others at INFO",
  ...T,
  async fn() {
    const logs = await captureLogs();
    const records = logs.records;
    const t = await serveTftpTree({ "menu.json": MENU });
    try {
      for (
        const file of [
          "/grub/x86_64-efi/command.lst",
          "grub/x86_64-efi/grub.cfg",
          "grub/arm64-efi/fs.lst",
          "grub/fonts/unicode.pf2",
          "grub.cfg",
        ]
      ) {
        const r = await tftpGet({ port: t.port, file, deadlineMs: 5000 });
        assert.equal(r.error?.code, 1, file);
        assert.equal(r.error?.message, "File not found", file);
      }
      const miss = await tftpGet({ port: t.port, file: "debian/vmlinuz-missing", deadlineMs: 5000 });
      assert.equal(miss.error?.code, 1);
      const refused = records.filter((r) => r.text.includes("refused"));
      const at = (name: string) => refused.filter((r) => r.text.includes(`'${name}'`)).map((r) => r.level);
      for (
        const name of ["/grub/x86_64-efi/command.lst", "grub/arm64-efi/fs.lst", "grub/fonts/unicode.pf2"]
      ) {
        assert.deepEqual(at(name), ["debug"], `${name}: ${JSON.stringify(refused)}`);
      }
      // not a routine miss: a user looking for a missing grub.cfg or kernel sees it at INFO
      assert.deepEqual(at("grub.cfg"), ["info"]);
      assert.deepEqual(at("debian/vmlinuz-missing"), ["info"]);
    } finally {
      await t.close();
      await logs.stop();
    }
  },
});

// ---------------------------------------------------------------------------------------------------
// HTTP

Deno.test(requires(missingTools("curl"), {
  name:
    "http generated: curl GET /grub/grub.cfg = grubConfig(menu.json), text/plain, validators from menu.json",
  ...SANITIZE,
  async fn() {
    const fx = await serveHttpTree({ "menu.json": MENU });
    try {
      const want = new TextEncoder().encode(expected(MENU));
      const mtime = new Date(1_700_000_000_000);
      await Deno.utime(`${fx.overlay}/menu.json`, mtime, mtime);
      for (const path of ["/grub/grub.cfg", "/GRUB/grub.cfg", "//grub//grub.cfg"]) {
        const r = await curl([`${fx.base}${path}`]);
        assert.equal(r.status, 200, `${path}: ${dec.decode(r.body)}`);
        assert.deepEqual(r.body, want, path);
        assert.equal(r.headers.get("content-type"), "text/plain; charset=utf-8");
        assert.equal(r.headers.get("content-length"), String(want.length));
        assert.equal(r.headers.get("last-modified"), mtime.toUTCString());
        assert.match(r.headers.get("etag") ?? "", /^"[0-9a-f]+-[0-9a-f]+"$/);
      }
      const head = await curl(["-I", `${fx.base}/grub/grub.cfg`], " %{size_download}");
      assert.equal(head.status, 200);
      assert.equal(head.headers.get("content-length"), String(want.length));
      assert.equal(head.extra, " 0");
      const range = await curl(["-r", "0-9", `${fx.base}/grub/grub.cfg`]);
      assert.equal(range.status, 206);
      assert.deepEqual(range.body, want.subarray(0, 10));
      assert.equal(range.headers.get("content-range"), `bytes 0-9/${want.length}`);
    } finally {
      await fx.close();
    }
  },
}));

Deno.test(requires(missingTools("curl"), {
  name: "http generated: If-None-Match with the returned ETag (and If-Modified-Since) -> 304",
  ...SANITIZE,
  async fn() {
    const fx = await serveHttpTree({ "menu.json": MENU });
    try {
      const first = await curl([`${fx.base}/grub/grub.cfg`]);
      assert.equal(first.status, 200);
      const etag = first.headers.get("etag")!;
      const lastModified = first.headers.get("last-modified")!;
      const inm = await curl(["-H", `If-None-Match: ${etag}`, `${fx.base}/grub/grub.cfg`]);
      assert.equal(inm.status, 304);
      assert.equal(inm.body.length, 0);
      assert.equal(inm.headers.get("etag"), etag);
      const other = await curl(["-H", `If-None-Match: "0-0"`, `${fx.base}/grub/grub.cfg`]);
      assert.equal(other.status, 200);
      const ims = await curl(["-H", `If-Modified-Since: ${lastModified}`, `${fx.base}/grub/grub.cfg`]);
      assert.equal(ims.status, 304);
    } finally {
      await fx.close();
    }
  },
}));

Deno.test(requires(missingTools("curl"), {
  name: "http generated: editing menu.json changes the served body and ETag; the old ETag then gets 200",
  ...SANITIZE,
  async fn() {
    const fx = await serveHttpTree({ "menu.json": MENU });
    try {
      const path = `${fx.overlay}/menu.json`;
      const t1 = new Date(1_700_000_000_000);
      await Deno.utime(path, t1, t1);
      const before = await curl([`${fx.base}/grub/grub.cfg`]);
      assert.equal(dec.decode(before.body), expected(MENU));
      const oldTag = before.headers.get("etag")!;

      await Deno.writeTextFile(path, EDITED);
      const t2 = new Date(1_700_000_060_000);
      await Deno.utime(path, t2, t2);
      // the server re-checks a cached file after its revalidation delay (1 s by default): poll, bounded
      let after = await curl([`${fx.base}/grub/grub.cfg`]);
      for (let i = 0; i < 30 && dec.decode(after.body) !== expected(EDITED); i++) {
        await new Promise((r) => setTimeout(r, 200));
        after = await curl([`${fx.base}/grub/grub.cfg`]);
      }
      assert.equal(after.status, 200);
      assert.equal(dec.decode(after.body), expected(EDITED));
      assert.notEqual(after.headers.get("etag"), oldTag);
      assert.equal(after.headers.get("last-modified"), t2.toUTCString());

      const stale = await curl(["-H", `If-None-Match: ${oldTag}`, `${fx.base}/grub/grub.cfg`]);
      assert.equal(stale.status, 200, "an old ETag must not get 304 after the edit");
      assert.equal(dec.decode(stale.body), expected(EDITED));
      const fresh = await curl([
        "-H",
        `If-None-Match: ${after.headers.get("etag")}`,
        `${fx.base}/grub/grub.cfg`,
      ]);
      assert.equal(fresh.status, 304);

      // a user's grub/grub.cfg replaces the generated one
      await Deno.mkdir(`${fx.overlay}/grub`);
      await Deno.writeTextFile(`${fx.overlay}/grub/grub.cfg`, "set timeout=1\n");
      let mine = await curl([`${fx.base}/grub/grub.cfg`]);
      for (let i = 0; i < 30 && dec.decode(mine.body) !== "set timeout=1\n"; i++) {
        await new Promise((r) => setTimeout(r, 200));
        mine = await curl([`${fx.base}/grub/grub.cfg`]);
      }
      assert.equal(dec.decode(mine.body), "set timeout=1\n");
    } finally {
      await fx.close();
    }
  },
}));
