/** The HTTP file server driven by real curl: full/HEAD/ranges/conditional/traversal/parallel ranges. */
import { deepStrictEqual, equal, match, ok } from "node:assert/strict";
import { HttpServer } from "../../src/http/server.ts";
import { NetbootFs } from "../../src/netboot/fs.ts";
import { curl, pseudoRandom, SANITIZE, sha256 } from "./helpers.ts";
import { captureLogs } from "../helpers/logs.ts";
import { run } from "../helpers/run.ts";
import { serveHttpTree } from "../helpers/servers.ts";

const SMALL = pseudoRandom(300 * 1024, 7); // cached in memory
const BIG = pseudoRandom(5 * 1024 * 1024 + 123, 9); // streamed

Deno.test({ name: "http: full GET and HEAD, cached and streamed files", ...SANITIZE }, async () => {
  const fx = await serveHttpTree({ "ipxe.efi": SMALL, "big.bin": BIG, "empty.txt": "" });
  try {
    for (
      const [name, bytes, type] of [
        ["ipxe.efi", SMALL, "application/octet-stream"],
        ["big.bin", BIG, "application/octet-stream"],
      ] as const
    ) {
      const r = await curl([`${fx.base}/${name}`]);
      equal(r.status, 200, name);
      equal(await sha256(r.body), await sha256(bytes), name);
      equal(r.headers.get("content-length"), String(bytes.length));
      equal(r.headers.get("content-type"), type);
      equal(r.headers.get("accept-ranges"), "bytes");
      match(r.headers.get("etag") ?? "", /^"[0-9a-f]+-[0-9a-f]+"$/);
      ok(Date.parse(r.headers.get("last-modified") ?? "") > 0);

      const head = await curl(["-I", `${fx.base}/${name}`], " %{size_download}");
      equal(head.status, 200);
      equal(head.headers.get("content-length"), String(bytes.length), `HEAD ${name}`);
      equal(head.headers.get("etag"), r.headers.get("etag"));
      equal(head.extra, " 0");
    }
    const empty = await curl([`${fx.base}/empty.txt`]);
    equal(empty.status, 200);
    equal(empty.headers.get("content-length"), "0");
    equal(empty.headers.get("content-type"), "text/plain; charset=utf-8");
    // second GET of the streamed file hits the cache of metadata and still streams correctly
    const again = await curl([`${fx.base}/big.bin`]);
    equal(await sha256(again.body), await sha256(BIG));
    const starts = fx.events.filter((e) => e.kind === "transfer-start").length;
    const ends = fx.events.filter((e) => e.kind === "transfer-end");
    equal(starts, 4);
    equal(ends.length, 4);
    ok(ends.every((e) => e.kind === "transfer-end" && e.outcome === "ok" && e.service === "http"));
  } finally {
    await fx.close();
  }
});

Deno.test(
  { name: "http: ranges (single, open, suffix, past end, several, If-Range)", ...SANITIZE },
  async () => {
    const fx = await serveHttpTree({ "ipxe.efi": SMALL, "big.bin": BIG });
    try {
      for (const [name, bytes] of [["ipxe.efi", SMALL], ["big.bin", BIG]] as const) {
        const size = bytes.length;
        const cases: [string, number, number][] = [
          ["0-99", 0, 99],
          ["100-", 100, size - 1],
          ["-500", size - 500, size - 1],
          [`${size - 10}-${size + 1000}`, size - 10, size - 1],
          [`${size - 1}-${size - 1}`, size - 1, size - 1],
          ["1048570-1048600", 1048570, 1048600],
        ];
        for (const [spec, start, end] of cases) {
          if (end >= size) continue;
          const r = await curl(["-r", spec, `${fx.base}/${name}`]);
          equal(r.status, 206, `${name} ${spec}`);
          equal(r.headers.get("content-range"), `bytes ${start}-${end}/${size}`, `${name} ${spec}`);
          equal(r.headers.get("content-length"), String(end - start + 1));
          deepStrictEqual(r.body, bytes.slice(start, end + 1), `${name} ${spec}`);
        }
        const past = await curl(["-r", `${size}-`, `${fx.base}/${name}`]);
        equal(past.status, 416);
        equal(past.headers.get("content-range"), `bytes */${size}`);
        match(new TextDecoder().decode(past.body), /^416 Range Not Satisfiable/);
        const several = await curl(["-r", "0-1,5-6", `${fx.base}/${name}`]);
        equal(several.status, 200);
        equal(several.body.length, size);

        const etag = (await curl(["-I", `${fx.base}/${name}`])).headers.get("etag")!;
        const same = await curl(["-r", "0-9", "-H", `If-Range: ${etag}`, `${fx.base}/${name}`]);
        equal(same.status, 206);
        const stale = await curl(["-r", "0-9", "-H", 'If-Range: "0-0"', `${fx.base}/${name}`]);
        equal(stale.status, 200);
        equal(stale.body.length, size);
        const garbage = await curl(["-H", "Range: bytes=abc", `${fx.base}/${name}`]);
        equal(garbage.status, 200);
      }
    } finally {
      await fx.close();
    }
  },
);

Deno.test({ name: "http: 50 parallel range requests reassemble to the file", ...SANITIZE }, async () => {
  const data = pseudoRandom(12 * 1024 * 1024 + 77, 3);
  const fx = await serveHttpTree({ "disk.iso": data });
  try {
    const parts = 50;
    const step = Math.ceil(data.length / parts);
    const results = await Promise.all(
      Array.from({ length: parts }, (_, i) => {
        const start = i * step;
        const end = Math.min(data.length, start + step) - 1;
        return curl(["-r", `${start}-${end}`, `${fx.base}/disk.iso`]);
      }),
    );
    const whole = new Uint8Array(data.length);
    let off = 0;
    for (const r of results) {
      equal(r.status, 206);
      whole.set(r.body, off);
      off += r.body.length;
    }
    equal(off, data.length);
    equal(await sha256(whole), await sha256(data));
    equal(results[0].headers.get("content-type"), "application/x-iso9660-image");
  } finally {
    await fx.close();
  }
});

Deno.test({ name: "http: traversal, odd paths, errors and methods", ...SANITIZE }, async () => {
  const fx = await serveHttpTree({
    "ipxe.efi": SMALL,
    "with space.cfg": "hello",
    "sub/Menu.TXT": "case",
    "sub/dir/x.kpxe": "k",
  }, { "pxelinux.0": "embedded" });
  try {
    await Deno.symlink("/etc/passwd", `${fx.overlay}/escape`);
    const sha = await sha256(SMALL);
    const expect: [string[], number][] = [
      [["--path-as-is", `${fx.base}/../../etc/passwd`], 403],
      [["--path-as-is", `${fx.base}/%2e%2e/%2e%2e/etc/passwd`], 403],
      [["--path-as-is", `${fx.base}/sub/..%2f..%2fetc/passwd`], 403],
      [[`${fx.base}/a%00b`], 403],
      [[`${fx.base}/escape`], 403],
      [[`${fx.base}/%zz`], 400],
      [[`${fx.base}/sub`], 404],
      [[`${fx.base}/`], 404],
      [[`${fx.base}/missing.efi`], 404],
      [["-X", "POST", `${fx.base}/ipxe.efi`], 405],
      [["-X", "DELETE", `${fx.base}/ipxe.efi`], 405],
      [[`${fx.base}/with%20space.cfg`], 200],
      [[`${fx.base}/sub/menu.txt`], 200],
      [[`${fx.base}/sub%2Fdir%2Fx.kpxe`], 200],
      [[`${fx.base}/pxelinux.0`], 200],
    ];
    for (const [args, status] of expect) {
      const r = await curl(args);
      equal(r.status, status, args.join(" "));
      if (status >= 400) {
        match(new TextDecoder().decode(r.body), new RegExp(`^${status} [A-Z]`), args.join(" "));
        equal(r.headers.get("content-type"), "text/plain; charset=utf-8");
        equal(r.headers.get("location"), null);
      }
      if (status === 405) equal(r.headers.get("allow"), "GET, HEAD");
    }
    for (
      const path of ["//ipxe.efi", "/ipxe.efi?x=1&y=../../z", "/./ipxe.efi", "///ipxe.efi#frag", "/IPXE.EFI"]
    ) {
      const r = await curl(["--path-as-is", `${fx.base}${path}`]);
      equal(r.status, 200, path);
      equal(await sha256(r.body), sha, path);
    }
    equal(
      (await curl([`${fx.base}/with%20space.cfg`])).headers.get("content-type"),
      "text/plain; charset=utf-8",
    );
    equal(
      (await curl([`${fx.base}/sub/dir/x.kpxe`])).headers.get("content-type"),
      "application/octet-stream",
    );
  } finally {
    await fx.close();
  }
});

Deno.test({ name: "http: conditional requests answer 304", ...SANITIZE }, async () => {
  const fx = await serveHttpTree({ "ipxe.efi": SMALL, "big.bin": BIG });
  try {
    const old = new Date(Date.now() - 3_600_000);
    await Deno.utime(`${fx.overlay}/ipxe.efi`, old, old);
    await Deno.utime(`${fx.overlay}/big.bin`, old, old);
    for (const name of ["ipxe.efi", "big.bin"]) {
      const first = await curl([`${fx.base}/${name}`]);
      const etag = first.headers.get("etag")!;
      const lastModified = first.headers.get("last-modified")!;
      equal(lastModified, new Date(Math.floor(old.getTime() / 1000) * 1000).toUTCString());
      const notMod = await curl(["-z", lastModified, `${fx.base}/${name}`]);
      equal(notMod.status, 304, `-z ${name}`);
      equal(notMod.body.length, 0);
      equal(notMod.headers.get("etag"), etag);
      const newer = await curl([
        "-z",
        new Date(old.getTime() - 86_400_000).toUTCString(),
        `${fx.base}/${name}`,
      ]);
      equal(newer.status, 200);
      const inm = await curl(["-H", `If-None-Match: "x", ${etag}`, `${fx.base}/${name}`]);
      equal(inm.status, 304);
      const weak = await curl(["-H", `If-None-Match: W/${etag}`, `${fx.base}/${name}`]);
      equal(weak.status, 304);
      // If-None-Match wins over If-Modified-Since (sent with -H: curl -z turns a 200 it deems old into 304)
      const both = await curl([
        "-H",
        'If-None-Match: "other"',
        "-H",
        `If-Modified-Since: ${lastModified}`,
        `${fx.base}/${name}`,
      ]);
      equal(both.status, 200);
    }
  } finally {
    await fx.close();
  }
});

Deno.test({ name: "http: keep-alive reuses one connection", ...SANITIZE }, async () => {
  const fx = await serveHttpTree({ "ipxe.efi": SMALL, "big.bin": BIG });
  try {
    const out = await run([
      "curl",
      "-sS",
      "-o",
      "/dev/null",
      "-o",
      "/dev/null",
      "-o",
      "/dev/null",
      "-w",
      "%{http_code} %{num_connects}\n",
      `${fx.base}/ipxe.efi`,
      `${fx.base}/big.bin`,
      `${fx.base}/missing`,
    ]);
    const lines = out.stdout.trim().split("\n");
    deepStrictEqual(lines, ["200 1", "200 0", "404 0"]);
  } finally {
    await fx.close();
  }
});

Deno.test({ name: "http: small-file cache notices changed files", ...SANITIZE }, async () => {
  const fx = await serveHttpTree({ "boot.cfg": "one" }, {}, { revalidateMs: 0 });
  try {
    equal(new TextDecoder().decode((await curl([`${fx.base}/boot.cfg`])).body), "one");
    await Deno.writeTextFile(`${fx.overlay}/boot.cfg`, "second");
    equal(new TextDecoder().decode((await curl([`${fx.base}/boot.cfg`])).body), "second");
    await Deno.remove(`${fx.overlay}/boot.cfg`);
    equal((await curl([`${fx.base}/boot.cfg`])).status, 404);
  } finally {
    await fx.close();
  }
});

Deno.test({ name: "http: files over 4 GiB (sparse) serve exact ranges", ...SANITIZE }, async () => {
  const fx = await serveHttpTree({});
  const path = `${fx.overlay}/huge.iso`;
  try {
    const size = 5 * 1024 ** 3 + 17;
    const marker = new TextEncoder().encode("PYPXE-MARKER-AT-4.5GiB");
    const at = 4.5 * 1024 ** 3;
    const file = await Deno.open(path, { write: true, create: true });
    try {
      await file.truncate(size);
      await file.seek(at, Deno.SeekMode.Start);
      await file.write(marker);
    } finally {
      file.close();
    }
    const head = await curl(["-I", `${fx.base}/huge.iso`]);
    equal(head.headers.get("content-length"), String(size));
    const r = await curl(["-r", `${at}-${at + marker.length - 1}`, `${fx.base}/huge.iso`]);
    equal(r.status, 206);
    equal(r.headers.get("content-range"), `bytes ${at}-${at + marker.length - 1}/${size}`);
    deepStrictEqual(r.body, marker);
    const tail = await curl(["-r", "-5", `${fx.base}/huge.iso`]);
    equal(tail.headers.get("content-range"), `bytes ${size - 5}-${size - 1}/${size}`);
    deepStrictEqual(tail.body, new Uint8Array(5));
  } finally {
    await fx.close();
  }
});

Deno.test({ name: "http: start() on a busy port rejects with one clear line", ...SANITIZE }, async () => {
  const fx = await serveHttpTree({});
  try {
    const netboot = await NetbootFs.open({ overlay: fx.overlay, embedded: fx.embedded });
    const second = new HttpServer({ host: "127.0.0.1", port: fx.port, netboot });
    let message = "";
    await second.start().catch((err: Error) => message = err.message);
    match(message, new RegExp(`^http: TCP 127\\.0\\.0\\.1:${fx.port} is in use`));
    ok(!message.includes("\n"));
    await second.stop();
  } finally {
    await fx.close();
  }
});

Deno.test({ name: "http: one INFO line per request when logging is configured", ...SANITIZE }, async () => {
  const logs = await captureLogs("info");
  const fx = await serveHttpTree({ "ipxe.efi": SMALL, "big.bin": BIG });
  try {
    await curl([`${fx.base}/ipxe.efi`]);
    await curl([`${fx.base}/ipxe.efi`]); // the in-memory fast path logs too
    await curl([`${fx.base}/big.bin`]);
    await curl(["-g", `${fx.base}/{weird}`]);
    for (let i = 0; i < 100 && logs.records.length < 4; i++) await new Promise((r) => setTimeout(r, 10));
    const lines = logs.records.map((r) => r.text);
    match(lines[0], /^127\.0\.0\.1:\d+ \/ipxe\.efi 200 307200 \d+\.\d{3}s$/);
    match(lines[1], /^127\.0\.0\.1:\d+ \/ipxe\.efi 200 307200 /);
    match(lines[2], new RegExp(`^127\\.0\\.0\\.1:\\d+ /big\\.bin 200 ${BIG.length} `));
    match(lines[3], /^127\.0\.0\.1:\d+ \/\{weird\} 404 0 /);
  } finally {
    await fx.close();
    await logs.stop();
  }
});

Deno.test(
  { name: "http: range requests are logged, boot files at INFO, image ranges once", ...SANITIZE },
  async () => {
    const logs = await captureLogs("debug");
    const fx = await serveHttpTree({ "vmlinuz": BIG, "rescue.iso": BIG });
    try {
      // a kernel fetched in ranges: every range is a boot step, INFO
      for (const spec of ["0-1023", "1024-4095", "4096-"]) await curl(["-r", spec, `${fx.base}/vmlinuz`]);
      // an ISO read the sanboot way: many small ranges, the first at INFO and the rest at DEBUG
      for (let i = 0; i < 20; i++) {
        await curl([
          "-r",
          `${i * 2048}-${i * 2048 + 2047}`,
          `${fx.base}/rescue.iso`,
        ]);
      }
      const mine = (re: RegExp) => logs.records.filter((r) => re.test(r.text));
      for (let i = 0; i < 100 && mine(/ \/rescue\.iso 206 /).length < 20; i++) {
        await new Promise((r) => setTimeout(r, 10));
      }
      const kernel = mine(/^127\.0\.0\.1:\d+ \/vmlinuz 206 \d+ \d+\.\d{3}s$/);
      deepStrictEqual(kernel.map((r) => r.level), ["info", "info", "info"]);
      const iso = mine(/^127\.0\.0\.1:\d+ \/rescue\.iso 206 2048 /);
      equal(iso.length, 20, "one line per request");
      equal(iso.filter((r) => r.level === "info").length, 1);
      equal(iso[0].level, "info");
    } finally {
      await fx.close();
      await logs.stop();
    }
  },
);
