/** Generated iPXE menus: the pure renderer, the menu file parser, and the menus served over HTTP. */
import { equal, match, ok, throws } from "node:assert/strict";
import { ipxeMenu, type IpxeMenuOptions } from "../../src/netboot/ipxe.ts";
import { MenuFileError, parseMenuFile } from "../../src/netboot/menu.ts";
import { curl, SANITIZE } from "./helpers.ts";
import { serveHttpTree } from "../helpers/servers.ts";
import { checkIpxeScript } from "./ipxe_syntax.ts";

const MENU_JSON = JSON.stringify({
  title: "Lab menu",
  timeout: 5,
  default: "debian",
  entries: [
    {
      id: "debian",
      label: "Debian installer",
      kernel: "debian/linux",
      initrd: ["debian/initrd.gz", "firmware.cpio.gz"],
      cmdline: "priority=low BOOTIF=01-${net0/mac:hexhyp}",
    },
    { label: "BIOS only", kernel: "http://mirror.example/vmlinuz", platform: "pcbios" },
    { id: "efi-tool", label: "EFI tool", kernel: "tools/tool.efi", initrd: "tools/x.img", platform: "efi" },
  ],
});

function assertValid(script: string): void {
  const problems = checkIpxeScript(script);
  equal(problems.length, 0, `${problems.join("\n")}\n---\n${script}`);
}

Deno.test("ipxe: every generated variant passes the syntax check", () => {
  const entries = parseMenuFile(MENU_JSON).entries;
  const isos = [
    { name: "small.iso", size: 20_000_000 },
    { name: "linux/big $weird name.iso", size: 5_000_000_000 },
  ];
  const variants: IpxeMenuOptions[] = [
    { serverIp: "192.168.2.2", httpPort: 80, isos: [], entries: [], transport: "http" },
    { serverIp: "192.168.2.2", httpPort: 8080, isos, entries, transport: "http", memdisk: "memdisk" },
    { serverIp: "10.0.0.1", httpPort: 80, isos, entries, transport: "tftp", memdisk: null, timeout: 3 },
    { serverIp: "10.0.0.1", httpPort: null, isos, entries, transport: "tftp", default: "shell" },
    {
      serverIp: "[fd00::1]",
      httpPort: 80,
      isos,
      entries: [],
      transport: "http",
      notice: "menu.json: x: bad",
    },
  ];
  for (const v of variants) assertValid(ipxeMenu(v));
});

Deno.test("ipxe: menu content (ISOs, memdisk on BIOS only, entries, variables pass through)", () => {
  const entries = parseMenuFile(MENU_JSON).entries;
  const script = ipxeMenu({
    serverIp: "192.168.2.2",
    httpPort: 8080,
    isos: [{ name: "distro/small.iso", size: 20_000_000 }, { name: "big.iso", size: 5_000_000_000 }],
    entries,
    transport: "http",
    memdisk: "tools/memdisk",
    timeout: 5,
    default: "debian",
  });
  match(script, /^#!ipxe\n/);
  match(script, /item iso0 distro\/small\.iso \(20\.0 MB\)/);
  match(script, /item iso1 big\.iso \(5\.0 GB\)/);
  match(
    script,
    /sanboot --no-describe --drive 0x80 http:\/\/192\.168\.2\.2:8080\/distro\/small\.iso \|\| goto failed/,
  );
  match(script, /sanboot --no-describe --drive 0x80 http:\/\/192\.168\.2\.2:8080\/big\.iso/);
  // memdisk only for the small ISO, only on BIOS
  match(script, /iseq \$\{platform\} pcbios \|\| goto menu-memdisk-end\n/);
  match(script, /kernel http:\/\/192\.168\.2\.2:8080\/tools\/memdisk iso raw/);
  ok(!script.includes("iso1-memdisk"));
  // local disk: sanboot on BIOS, exit on EFI
  match(script, /:local\n.*\niseq \$\{platform\} pcbios \|\| exit\nsanboot --no-describe --drive 0x80/);
  match(script, /\$\{platform\} \$\{buildarch\} \$\{net0\/mac\}/);
  match(script, /choose --default debian --timeout 5000 target && goto \$\{target\} \|\| goto cancel/);
  match(
    script,
    /kernel \$\{pypxe-files\}\/debian\/linux initrd=initrd\.gz initrd=firmware\.cpio\.gz priority=low BOOTIF=01-\$\{net0\/mac:hexhyp\}/,
  );
  match(script, /initrd --name initrd\.gz \$\{pypxe-files\}\/debian\/initrd\.gz/);
  match(script, /set pypxe-files http:\/\/192\.168\.2\.2:8080\n/);
  match(script, /kernel http:\/\/mirror\.example\/vmlinuz/);
  match(script, /iseq \$\{platform\} efi && item efi-tool EFI tool \|\| echo -n/);
  match(script, /item shell iPXE shell/);

  const tftp = ipxeMenu({ serverIp: "10.0.0.1", httpPort: 80, isos: [], entries, transport: "tftp" });
  match(tftp, /set pypxe-files tftp:\/\/10\.0\.0\.1\n/);
  const noHttp = ipxeMenu({
    serverIp: "10.0.0.1",
    httpPort: null,
    isos: [{ name: "a.iso", size: 1 }],
    entries: [],
    transport: "tftp",
  });
  ok(!noHttp.includes("a.iso"), "ISOs need HTTP");
  const weird = ipxeMenu({
    serverIp: "h",
    httpPort: 80,
    isos: [{ name: "a b/$x.iso", size: 1 }],
    entries: [],
    transport: "http",
  });
  match(weird, /http:\/\/h\/a%20b\/%24x\.iso/);
  ok(!weird.includes("${x"), "file names never expand as iPXE variables");
});

Deno.test("ipxe: menu.json errors name the field", () => {
  const cases: [string, RegExp][] = [
    ["{", /^menu\.json: \(file\): not valid JSON/],
    ["[]", /\(file\): must be a JSON object/],
    ['{"entries": [], "colour": 1}', /colour: unknown key/],
    ['{"entries": {}}', /entries: must be a list/],
    ['{"entries": [{"label": "x"}]}', /entries\[0\]\.kernel: is required/],
    ['{"entries": [{"kernel": "k"}]}', /entries\[0\]\.label: is required/],
    ['{"entries": [{"label": "x", "kernel": "k", "initrd": 3}]}', /entries\[0\]\.initrd: must be a path/],
    ['{"entries": [{"label": "x", "kernel": "k", "initrd": ["a", ""]}]}', /entries\[0\]\.initrd\[1\]/],
    ['{"entries": [{"label": "x", "kernel": "k", "platform": "arm"}]}', /entries\[0\]\.platform/],
    ['{"entries": [{"id": "a b", "label": "x", "kernel": "k"}]}', /entries\[0\]\.id: use 1-64/],
    ['{"entries": [{"id": "local", "label": "x", "kernel": "k"}]}', /'local' is reserved/],
    [
      '{"entries": [{"id": "a", "label": "x", "kernel": "k"}, {"id": "a", "label": "y", "kernel": "k"}]}',
      /entries\[1\]\.id: duplicate/,
    ],
    ['{"entries": [], "default": "nope"}', /default: 'nope' is not an entry id/],
    ['{"entries": [], "timeout": -1}', /timeout: must be a number/],
    ['{"entries": [{"label": "x\\ny", "kernel": "k"}]}', /entries\[0\]\.label: must be one line/],
  ];
  for (const [text, re] of cases) {
    throws(
      () => parseMenuFile(text),
      (err: unknown) => err instanceof MenuFileError && re.test(err.message),
      text,
    );
  }
  const ok1 = parseMenuFile('{"entries": [{"label": "x", "kernel": "k"}]}');
  equal(ok1.entries[0].id, "entry0");
  equal(ok1.timeout, 0);
});

Deno.test(
  { name: "ipxe: /boot.http.ipxe names the server as the client reaches it, ISOs at any depth", ...SANITIZE },
  async () => {
    const fx = await serveHttpTree({
      "menu.json": MENU_JSON,
      "isos/deep/er/rescue.iso": new Uint8Array(4096),
      "top.iso": new Uint8Array(10),
      "memdisk": "memdisk",
    }, { "boot.http.ipxe": "#!ipxe\necho embedded must not win\n" });
    try {
      for (const name of ["boot.http.ipxe", "boot.ipxe"]) {
        const r = await curl([`${fx.base}/${name}`]);
        equal(r.status, 200);
        equal(r.headers.get("content-type"), "text/plain; charset=utf-8");
        const script = new TextDecoder().decode(r.body);
        assertValid(script);
        match(
          script,
          new RegExp(
            `sanboot --no-describe --drive 0x80 http://127\\.0\\.0\\.1:${fx.port}/isos/deep/er/rescue\\.iso`,
          ),
        );
        match(script, /item iso\d top\.iso \(1 KB\)/);
        match(script, /item debian Debian installer/);
        match(script, new RegExp(`kernel http://127\\.0\\.0\\.1:${fx.port}/memdisk iso raw`));
      }
      // the Host header does not change the menu: it names the interface on the client's subnet, so
      // TFTP (which has no Host header) serves the same bytes
      const plain = await curl([`${fx.base}/boot.http.ipxe`]);
      const viaName = await curl(["-H", "Host: pxe.example:8080", `${fx.base}/boot.http.ipxe`]);
      equal(new TextDecoder().decode(viaName.body), new TextDecoder().decode(plain.body));
      const head = await curl(["-I", `${fx.base}/boot.http.ipxe`], " %{size_download}");
      equal(head.status, 200);
      ok(Number(head.headers.get("content-length")) > 100);
    } finally {
      await fx.close();
    }
  },
);

Deno.test(
  { name: "ipxe: a user boot.http.ipxe in the overlay replaces the generated one", ...SANITIZE },
  async () => {
    const user = "#!ipxe\necho user script\n";
    const fx = await serveHttpTree({ "boot.http.ipxe": user, "menu.json": "{ broken" });
    try {
      const r = await curl([`${fx.base}/boot.http.ipxe`]);
      equal(new TextDecoder().decode(r.body), user);
      equal(r.headers.get("accept-ranges"), "bytes");
      // boot.ipxe is still generated, and shows the menu.json error instead of failing
      const gen = new TextDecoder().decode((await curl([`${fx.base}/boot.ipxe`])).body);
      assertValid(gen);
      match(gen, /item --gap menu\.json: \(file\): not valid JSON/);
    } finally {
      await fx.close();
    }
  },
);

Deno.test("ipxe: menu.json default 'iso:PATH' boots that ISO when the timeout expires", () => {
  const menu = parseMenuFile(JSON.stringify({ timeout: 2, default: "iso:images/b.iso", entries: [] }));
  const script = ipxeMenu({
    serverIp: "10.0.0.1",
    httpPort: 8080,
    isos: [{ name: "a.iso", size: 1000 }, { name: "images/b.iso", size: 2000 }],
    entries: menu.entries,
    timeout: menu.timeout,
    default: menu.default,
    transport: "http",
  });
  match(script, /choose --default iso1 --timeout 2000 /);
  match(
    script,
    /:iso1\n[^\n]*\nsanboot --no-describe --drive 0x80 http:\/\/10\.0\.0\.1:8080\/images\/b\.iso/,
  );
  const unknown = ipxeMenu({
    serverIp: "10.0.0.1",
    httpPort: 80,
    isos: [],
    entries: [],
    default: "iso:none.iso",
    transport: "http",
  });
  match(unknown, /choose --default local /);
});
