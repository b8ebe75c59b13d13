/**
 * `--secure-boot`: the DHCP policy hands UEFI x64 clients the signed shim (`shimx64.efi`, which loads
 * `grubx64.efi`), the setting travels through flags, JSON and the program, the start-up warnings name
 * what the tree lacks, and the real binary's `--check` and banner show the chain.
 * @module
 */
import assert from "node:assert/strict";
import { FS, HTTP, IPXE, IPXE_HTTP, PLAIN } from "../dhcp/helpers.ts";
import { join } from "node:path";
import { type AppIo, runPypxe } from "../../src/app.ts";
import { startupWarnings } from "../../src/banner.ts";
import { parseArgs } from "../../src/cli.ts";
import {
  buildConfig,
  ConfigError,
  DEFAULTS,
  parseConfigJson,
  type PxeConfig,
  SETTINGS,
} from "../../src/config.ts";
import { BootEvents } from "../../src/events.ts";
import { getString, messageType } from "../../src/dhcp/options.ts";
import { decodeDhcp } from "../../src/dhcp/packet.ts";
import {
  bootFileFor,
  type BootPolicyOptions,
  type ClientInfo,
  describeClient,
  policyOptionsFrom,
  SHIM_FILE,
} from "../../src/dhcp/policy.ts";
import { createDhcpService, DhcpServer } from "../../src/dhcp/server.ts";
import { parseMenuFile } from "../../src/netboot/menu.ts";
import { grubConfig } from "../../src/netboot/grub.ts";
import { NetbootFs, PI_MAX_FILE_SIZE } from "../../src/netboot/fs.ts";
import { fixture, MessageType, Opt, refConfig } from "../dhcp/helpers.ts";
import { run } from "../helpers/run.ts";
import { runPypxeOnce, startDhcp, startPypxe } from "../helpers/servers.ts";
import { missingTools, requires } from "../helpers/tools.ts";

const sb = (o: BootPolicyOptions): BootPolicyOptions => ({ ...o, secureBoot: true });

const pxe = (arch: number): ClientInfo => ({
  arch,
  vendorClass: `PXEClient:Arch:${String(arch).padStart(5, "0")}:UNDI:003000`,
  ipxe: false,
});
const ipxe = (arch: number): ClientInfo => ({ ...pxe(arch), ipxe: true });
const httpClient = (arch: number): ClientInfo => ({
  arch,
  vendorClass: `HTTPClient:Arch:${String(arch).padStart(5, "0")}:UNDI:003000`,
  ipxe: false,
});

/** Reads a DHCP fixture and describes its client as the policy sees it. */
const fixtureClient = (name: string): ClientInfo => describeClient(decodeDhcp(fixture(name)));

// ---------------------------------------------------------------------------------------------------
// policy

Deno.test("secure boot policy: SHIM_FILE is shimx64.efi", () => {
  assert.equal(SHIM_FILE, "shimx64.efi");
});

// [what, client, options, file, vendor class, reason (undefined: not checked)]
type Row = [string, ClientInfo, BootPolicyOptions, string | undefined, string | undefined, string?];
const TABLE: Row[] = [
  ["UEFI x64 arch 7, plain", pxe(7), sb(PLAIN), "shimx64.efi", "PXEClient", "Secure Boot (shim)"],
  ["UEFI x64 arch 9, plain", pxe(9), sb(PLAIN), "shimx64.efi", "PXEClient", "Secure Boot (shim)"],
  ["UEFI x64 arch 7, --ipxe", pxe(7), sb(IPXE), "shimx64.efi", "PXEClient", "Secure Boot (shim)"],
  ["UEFI x64 arch 9, --ipxe --http", pxe(9), sb(IPXE_HTTP), "shimx64.efi", "PXEClient", "Secure Boot (shim)"],
  ["UEFI x64 arch 7, off", pxe(7), PLAIN, "ipxe.efi", "PXEClient", "first stage"],
  ["UEFI x64 arch 9, off", pxe(9), PLAIN, "ipxe.efi", "PXEClient", "first stage"],
  ["UEFI x64, secureBoot false", pxe(7), { ...PLAIN, secureBoot: false }, "ipxe.efi", "PXEClient"],
  // HTTP boot keeps ipxe.efi under --secure-boot (e4d29cd: GRUB 2.06 cannot continue from HTTP boot)
  [
    "UEFI HTTP arch 16, --http: ipxe.efi, no shim",
    httpClient(16),
    sb(HTTP),
    `http://${FS}/ipxe.efi`,
    "HTTPClient",
    "UEFI HTTP boot",
  ],
  [
    "UEFI HTTP arch 16, --http port 8080: ipxe.efi, no shim",
    httpClient(16),
    sb({ ...HTTP, httpPort: 8080 }),
    `http://${FS}:8080/ipxe.efi`,
    "HTTPClient",
    "UEFI HTTP boot",
  ],
  ["UEFI HTTP arch 16, off", httpClient(16), HTTP, `http://${FS}/ipxe.efi`, "HTTPClient", "UEFI HTTP boot"],
  ["UEFI HTTP without --http: nothing", httpClient(16), sb(PLAIN), undefined, "HTTPClient"],
  ["iPXE UEFI arch 7: iPXE script", ipxe(7), sb(IPXE), `tftp://${FS}/boot.ipxe`, "PXEClient", "iPXE script"],
  ["iPXE UEFI arch 9: iPXE script", ipxe(9), sb(PLAIN), `tftp://${FS}/boot.ipxe`, "PXEClient", "iPXE script"],
  [
    "iPXE UEFI, --ipxe --http: HTTP script",
    ipxe(7),
    sb(IPXE_HTTP),
    `http://${FS}:8080/boot.http.ipxe`,
    "PXEClient",
    "iPXE script",
  ],
  [
    "iPXE UEFI HTTP arch 16: script",
    { ...httpClient(16), ipxe: true },
    sb(IPXE_HTTP),
    `http://${FS}:8080/boot.http.ipxe`,
    "HTTPClient",
    "iPXE script",
  ],
  [
    "explicit efi64 file wins (PXE)",
    pxe(7),
    sb({ ...IPXE, bootFiles: { efi64: "snponly.efi" } }),
    "snponly.efi",
    "PXEClient",
    "first stage",
  ],
  [
    "explicit efi64 file wins (arch 9)",
    pxe(9),
    sb({ ...PLAIN, bootFiles: { efi64: "ipxe.efi" } }),
    "ipxe.efi",
    "PXEClient",
    "first stage",
  ],
  [
    "explicit efi64 file wins (HTTP)",
    httpClient(16),
    sb({ ...HTTP, bootFiles: { efi64: "snponly.efi" } }),
    `http://${FS}/snponly.efi`,
    "HTTPClient",
    "UEFI HTTP boot",
  ],
  [
    "explicit efi64 = shimx64.efi without --secure-boot",
    pxe(7),
    { ...PLAIN, bootFiles: { efi64: "shimx64.efi" } },
    "shimx64.efi",
    "PXEClient",
    "first stage",
  ],
  ["static rom wins over shim", pxe(7), { ...sb(PLAIN), staticRom: "custom.efi" }, "custom.efi", "PXEClient"],
  ["BIOS, plain: unchanged", pxe(0), sb(PLAIN), "pxelinux.0", "PXEClient", "first stage"],
  ["BIOS, --ipxe: unchanged", pxe(0), sb(IPXE), "undionly.kpxe", "PXEClient", "first stage"],
  ["iPXE BIOS: unchanged", ipxe(0), sb(IPXE), `tftp://${FS}/boot.ipxe`, "PXEClient", "iPXE script"],
];

for (const [what, client, opts, file, vc, reason] of TABLE) {
  Deno.test(`secure boot policy: ${what}`, () => {
    const d = bootFileFor(client, opts);
    assert.equal(d.file, file);
    assert.equal(d.vendorClass, vc);
    if (reason !== undefined) assert.equal(d.reason, reason);
    assert.ok(d.booting);
  });
}

Deno.test("secure boot policy: only UEFI x64 PXE (7, 9) changes; every other client type is unchanged", () => {
  const rpi: ClientInfo = { ...pxe(0), mac: "b8:27:eb:12:34:56" };
  const others: ClientInfo[] = [
    pxe(0),
    ipxe(0),
    rpi,
    { vendorClass: "PXEClient", ipxe: false },
    { ipxe: false },
    ...[6, 10, 11, 27, 999].map(pxe),
    ...[6, 10, 11].map(ipxe),
    ...[15, 16, 18, 19].map(httpClient),
    { ...httpClient(16), ipxe: true },
    ipxe(7),
    ipxe(9),
  ];
  for (const opts of [PLAIN, IPXE, HTTP, IPXE_HTTP]) {
    for (const client of others) {
      assert.deepEqual(bootFileFor(client, sb(opts)), bootFileFor(client, opts), JSON.stringify(client));
    }
    for (const arch of [7, 9]) {
      const on = bootFileFor(pxe(arch), sb(opts));
      const off = bootFileFor(pxe(arch), opts);
      assert.equal(on.file, SHIM_FILE);
      assert.notEqual(off.file, SHIM_FILE);
      assert.equal(on.label, off.label);
      assert.equal(on.family, "efi64");
    }
  }
});

Deno.test("secure boot policy: the real firmware's packets (OVMF PXE and HTTP, iPXE EFI and BIOS)", () => {
  const ovmf = fixtureClient("ovmf-pxe-discover.bin");
  assert.equal(ovmf.arch, 7);
  assert.equal(bootFileFor(ovmf, sb(PLAIN)).file, "shimx64.efi");
  assert.equal(bootFileFor(ovmf, sb(PLAIN)).label, "UEFI x64");
  assert.equal(bootFileFor(ovmf, PLAIN).file, "ipxe.efi");
  assert.equal(bootFileFor(fixtureClient("ovmf-pxe-proxy-request-4011.bin"), sb(IPXE)).file, "shimx64.efi");

  const http = fixtureClient("ovmf-http-discover.bin");
  assert.equal(http.arch, 16);
  assert.equal(bootFileFor(http, sb(HTTP)).file, `http://${FS}/ipxe.efi`, "HTTP boot: no shim");
  assert.equal(bootFileFor(http, sb(HTTP)).vendorClass, "HTTPClient");
  assert.deepEqual(bootFileFor(http, sb(HTTP)), bootFileFor(http, HTTP));

  for (const name of ["ipxe-efi-snp-discover.bin", "ipxe-efi-rom-discover.bin"]) {
    const c = fixtureClient(name);
    assert.equal(c.ipxe, true, name);
    assert.equal(bootFileFor(c, sb(IPXE)).file, `tftp://${FS}/boot.ipxe`, name);
  }
  const bios = fixtureClient("ipxe-bios-discover.bin");
  assert.equal(bootFileFor(bios, sb(IPXE)).file, `tftp://${FS}/boot.ipxe`);
  assert.equal(bootFileFor(bios, sb(PLAIN)).file, "pxelinux.0");
});

// ---------------------------------------------------------------------------------------------------
// DHCP: the responder and a real server on loopback

const DHCP_IN = { hostname: "0.0.0.0", port: 68, on: "dhcp" } as const;

Deno.test("secure boot DHCP: createDhcpService wires SECURE_BOOT into the OFFER's file and option 67", async () => {
  const netboot = await NetbootFs.open({ embedded: "/nonexistent-pypxe-embedded" });
  const make = (config: PxeConfig) =>
    createDhcpService({ config, netboot, events: new BootEvents(), staticLeases: new Map() }) as DhcpServer;
  const on = make(refConfig({ SECURE_BOOT: true }));
  const off = make(refConfig({ SECURE_BOOT: false }));
  const offer = (s: DhcpServer, name: string) =>
    decodeDhcp(s.responder.handle(fixture(name), DHCP_IN)[0].bytes);

  const sbOffer = offer(on, "ovmf-pxe-discover.bin");
  assert.equal(messageType(sbOffer), MessageType.OFFER);
  assert.equal(sbOffer.file, "shimx64.efi");
  assert.equal(getString(sbOffer, Opt.BOOTFILE), "shimx64.efi");
  assert.equal(offer(off, "ovmf-pxe-discover.bin").file, "ipxe.efi");
  // iPXE already running: its script, as without --secure-boot
  assert.equal(offer(on, "ipxe-efi-snp-discover.bin").file, offer(off, "ipxe-efi-snp-discover.bin").file);
  // UEFI HTTP boot with --http keeps ipxe.efi
  const http = make(refConfig({ SECURE_BOOT: true, USE_HTTP: true, HTTP_PORT: 8080 }));
  const httpOffer = offer(http, "ovmf-http-discover.bin");
  assert.equal(httpOffer.file, "http://192.168.77.1:8080/ipxe.efi");
  assert.equal(getString(httpOffer, Opt.VENDOR_CLASS), "HTTPClient");
  // an explicit --netboot-file-efi64 wins
  const explicit = make(refConfig({ SECURE_BOOT: true, NETBOOT_FILE_EFI64: "snponly.efi" }));
  assert.equal(offer(explicit, "ovmf-pxe-discover.bin").file, "snponly.efi");
});

Deno.test({
  name: "secure boot DHCP: a real server on loopback answers OVMF with shimx64.efi (DHCP and proxy 4011)",
  sanitizeResources: true,
  sanitizeOps: true,
  async fn() {
    const d = await startDhcp(
      { DHCP_MODE_PROXY: true, USE_IPXE: true, NETBOOT_FILE: "boot.ipxe" },
      { clientHost: "0.0.0.0", server: () => ({ secureBoot: true }) },
    );
    const { client, port, proxyPort } = d;
    try {
      await client.send(fixture("ovmf-pxe-discover.bin"), port);
      const offer = await client.next(2000);
      assert.ok(offer, "no OFFER");
      const o = decodeDhcp(offer.bytes);
      assert.equal(messageType(o), MessageType.OFFER);
      assert.equal(o.file, "shimx64.efi");
      await client.send(fixture("ovmf-pxe-proxy-request-4011.bin"), proxyPort);
      const ack = await client.next(2000);
      assert.ok(ack, "no 4011 ACK");
      const a = decodeDhcp(ack.bytes);
      assert.equal(messageType(a), MessageType.ACK);
      assert.equal(getString(a, Opt.BOOTFILE), "shimx64.efi");
      // iPXE over SNP still gets its script
      await client.send(fixture("ipxe-efi-snp-proxy-request-4011.bin"), proxyPort);
      const snp = await client.next(2000);
      assert.ok(snp, "no ACK for iPXE");
      assert.equal(getString(decodeDhcp(snp.bytes), Opt.BOOTFILE), "tftp://127.0.0.1/boot.ipxe");
    } finally {
      await d.close();
    }
  },
});

// ---------------------------------------------------------------------------------------------------
// config

const noInterfaces = () => [];
const build = (args: string[], fileJson?: string) =>
  buildConfig({
    file: fileJson === undefined ? {} : parseConfigJson(fileJson, "test.json").values,
    flags: parseArgs(args).flags,
    interfaces: noInterfaces,
  }).config;

Deno.test("secure boot config: default false; --secure-boot / --no-secure-boot; JSON SECURE_BOOT; precedence", () => {
  assert.equal(DEFAULTS.SECURE_BOOT, false);
  assert.equal(SETTINGS.SECURE_BOOT.kind, "bool");
  assert.equal(SETTINGS.SECURE_BOOT.flag, "--secure-boot");
  assert.equal(SETTINGS.SECURE_BOOT.noFlag, "--no-secure-boot");
  assert.equal(build([]).SECURE_BOOT, false);
  assert.equal(build(["--secure-boot"]).SECURE_BOOT, true);
  assert.equal(build(["--no-secure-boot"]).SECURE_BOOT, false);
  assert.equal(build([], `{"SECURE_BOOT": true}`).SECURE_BOOT, true);
  assert.equal(build([], `{"SECURE_BOOT": false}`).SECURE_BOOT, false);
  assert.equal(build(["--no-secure-boot"], `{"SECURE_BOOT": true}`).SECURE_BOOT, false, "flags win");
  assert.equal(build(["--secure-boot"], `{"SECURE_BOOT": false}`).SECURE_BOOT, true, "flags win");
  assert.equal(policyOptionsFrom(build(["--secure-boot"])).secureBoot, true);
  assert.equal(policyOptionsFrom(build([])).secureBoot, false);

  const bad = (fn: () => unknown, pattern: RegExp) =>
    assert.throws(fn, (err: unknown) => err instanceof ConfigError && pattern.test(err.message));
  bad(() => parseArgs(["--secure-boot=yes"]), /--secure-boot: takes no value/);
  bad(
    () => parseArgs(["--secure-boot", "--no-secure-boot"]),
    /--no-secure-boot: not allowed with --secure-boot/,
  );
  bad(() => parseArgs(["--secureboot"]), /unknown flag --secureboot \(did you mean --secure-boot\?\)/);
  bad(
    () => parseConfigJson(`{"SECURE_BOOT": "yes"}`, "c.json"),
    /c\.json: SECURE_BOOT: expected true or false/,
  );
  bad(() => parseConfigJson(`{"SECURE_BOOT": 1}`, "c.json"), /SECURE_BOOT: expected true or false, got 1/);
});

/** Runs the program in-process and captures what it prints. */
async function runCaptured(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = "";
  let stderr = "";
  const io: AppIo = { stdout: (t) => stdout += t, stderr: (t) => stderr += t };
  const code = await runPypxe(args, io);
  return { code, stdout, stderr };
}

Deno.test("secure boot config: through the program (--help, --dump-config, --config + --dump-config-merged)", async () => {
  const dir = await Deno.makeTempDir({ prefix: "pypxe-sb-config-" });
  try {
    const help = await runCaptured(["--help"]);
    assert.equal(help.code, 0);
    assert.match(help.stdout, /--secure-boot/);
    assert.match(help.stdout, /shimx64\.efi/);

    const defaults = await runCaptured(["--dump-config"]);
    assert.equal(JSON.parse(defaults.stdout).SECURE_BOOT, false);

    const file = join(dir, "pypxe.json");
    await Deno.writeTextFile(file, `{"SECURE_BOOT": true, "USE_TFTP": true}`);
    const merged = await runCaptured(["--config", file, "--dump-config-merged"]);
    assert.equal(merged.code, 0, merged.stderr);
    assert.equal(JSON.parse(merged.stdout).SECURE_BOOT, true);
    const flagWins = await runCaptured(["--config", file, "--no-secure-boot", "--dump-config-merged"]);
    assert.equal(JSON.parse(flagWins.stdout).SECURE_BOOT, false);
    const flagOnly = await runCaptured(["--secure-boot", "--dump-config-merged"]);
    assert.equal(JSON.parse(flagOnly.stdout).SECURE_BOOT, true);

    await Deno.writeTextFile(file, `{"SECURE_BOOT": "on"}`);
    const bad = await runCaptured(["--config", file, "--dump-config-merged"]);
    assert.equal(bad.code, 2);
    assert.equal(bad.stdout, "");
    assert.match(
      bad.stderr,
      /^pypxe: error: .*pypxe\.json: SECURE_BOOT: expected true or false, got "on"\n$/,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

// ---------------------------------------------------------------------------------------------------
// startupWarnings

/** A netboot tree (overlay + empty embedded) holding `files`. */
async function tree(files: Record<string, string>) {
  const base = await Deno.makeTempDir({ prefix: "pypxe-sb-tree-" });
  const overlay = join(base, "overlay");
  await Deno.mkdir(overlay);
  await Deno.mkdir(join(base, "embedded"));
  for (const [name, content] of Object.entries(files)) {
    const path = join(overlay, name);
    await Deno.mkdir(path.slice(0, path.lastIndexOf("/")), { recursive: true });
    await Deno.writeTextFile(path, content);
  }
  const netboot = await NetbootFs.open({ overlay, embedded: join(base, "embedded") });
  return { overlay, netboot, cleanup: () => Deno.remove(base, { recursive: true }) };
}

const MISSING_BOTH =
  "--secure-boot: shimx64.efi (shim-signed), grubx64.efi (grub-efi-amd64-signed) not in the " +
  "netboot tree: install the packages and run deno task netboot";

Deno.test("startupWarnings: missing shimx64.efi / grubx64.efi are named with their packages", async () => {
  const empty = await tree({ "pxelinux.0": "p" });
  try {
    assert.deepEqual(await startupWarnings(build(["--secure-boot"]), empty.netboot), [MISSING_BOTH]);
    // an explicit UEFI x64 file replaces the shim, but the GRUB it would chain to is still named
    assert.deepEqual(
      await startupWarnings(build(["--secure-boot", "--netboot-file-efi64", "snponly.efi"]), empty.netboot),
      [
        "--secure-boot: grubx64.efi (grub-efi-amd64-signed) not in the netboot tree: install the packages " +
        "and run deno task netboot",
      ],
    );
    assert.deepEqual(await startupWarnings(build([]), empty.netboot), [], "no --secure-boot, no warning");
    assert.deepEqual(await startupWarnings(build(["--no-secure-boot"]), empty.netboot), []);
  } finally {
    await empty.cleanup();
  }
  const shimOnly = await tree({ "shimx64.efi": "shim" });
  try {
    assert.deepEqual(await startupWarnings(build(["--secure-boot"]), shimOnly.netboot), [
      "--secure-boot: grubx64.efi (grub-efi-amd64-signed) not in the netboot tree: install the packages " +
      "and run deno task netboot",
    ]);
  } finally {
    await shimOnly.cleanup();
  }
  const grubOnly = await tree({ "grubx64.efi": "grub" });
  try {
    assert.deepEqual(await startupWarnings(build(["--secure-boot"]), grubOnly.netboot), [
      "--secure-boot: shimx64.efi (shim-signed) not in the netboot tree: install the packages and run " +
      "deno task netboot",
    ]);
  } finally {
    await grubOnly.cleanup();
  }
});

Deno.test("startupWarnings: none when the chain is present (any case); the proxyDHCP note", async () => {
  const variants: Record<string, string>[] = [
    { "shimx64.efi": "s", "grubx64.efi": "g" },
    { "SHIMX64.EFI": "s", "GrubX64.efi": "g" },
  ];
  for (const files of variants) {
    const t = await tree(files);
    try {
      assert.deepEqual(await startupWarnings(build(["--secure-boot"]), t.netboot), [], JSON.stringify(files));
      assert.deepEqual(await startupWarnings(build(["--secure-boot", "--dhcp"]), t.netboot), []);
      const proxy = build(["--secure-boot", "--dhcp-proxy", "--dhcp-fileserver", "10.1.2.3"]);
      assert.equal(proxy.DHCP_MODE_PROXY, true);
      assert.deepEqual(await startupWarnings(proxy, t.netboot), [
        "--secure-boot with proxyDHCP: shim loads GRUB from pypxe, but Debian's GRUB 2.06 reads its server " +
        "from the other DHCP server's answer: set that server's next-server to 10.1.2.3, or use --dhcp",
      ]);
      assert.deepEqual(await startupWarnings(build(["--dhcp-proxy"]), t.netboot), [], "proxy alone: nothing");
    } finally {
      await t.cleanup();
    }
  }
});

Deno.test("startupWarnings: the Raspberry Pi size warning joins when TFTP is on", async () => {
  const t = await tree({ "bootcode.bin": "fw" });
  try {
    {
      using big = await Deno.open(join(t.overlay, "kernel8.img"), { write: true, create: true });
      await big.truncate(PI_MAX_FILE_SIZE + 1);
    }
    const tftp = await startupWarnings(build([]), t.netboot);
    assert.equal(tftp.length, 1, tftp.join("\n"));
    assert.match(tftp[0], /^netboot: kernel8\.img is 64\.0 MiB: a Raspberry Pi cannot fetch it over TFTP/);
    assert.deepEqual(await startupWarnings(build(["--no-tftp", "--http"]), t.netboot), []);
    const both = await startupWarnings(build(["--secure-boot"]), t.netboot);
    assert.equal(both.length, 2);
    assert.match(both[0], /^--secure-boot: shimx64\.efi/);
    assert.match(both[1], /^netboot: kernel8\.img/);
  } finally {
    await t.cleanup();
  }
});

// ---------------------------------------------------------------------------------------------------
// the real program as a subprocess

function freeUdpPort(): number {
  const probe = Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port: 0 });
  const port = (probe.addr as Deno.NetAddr).port;
  probe.close();
  return port;
}

function freeTcpPort(): number {
  const probe = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (probe.addr as Deno.NetAddr).port;
  probe.close();
  return port;
}

Deno.test("--check --secure-boot: the binary's table shows UEFI x64 -> shimx64.efi from the overlay", async () => {
  const dir = await Deno.makeTempDir({ prefix: "pypxe-sb-check-" });
  try {
    for (const f of ["pxelinux.0", "undionly.kpxe", "ipxe.efi"]) await Deno.writeTextFile(join(dir, f), f);
    await Deno.writeFile(join(dir, "shimx64.efi"), new Uint8Array([0x4d, 0x5a, 1, 2, 3, 4, 5]));
    const common = [
      "--netboot-dir",
      dir,
      "--tftp-server-ip",
      "127.0.0.1",
      "--tftp-port",
      String(freeUdpPort()),
    ];
    const on = await runPypxeOnce(["--check", "--secure-boot", ...common]);
    assert.equal(on.code, 0, on.stdout + on.stderr);
    assert.match(on.stdout, /^ {2}UEFI x64 +shimx64\.efi +\S+ +60=PXEClient +ok \(overlay, 7 bytes\)$/m);
    assert.match(on.stdout, /^ {2}BIOS +pxelinux\.0 .*ok \(overlay/m);
    assert.match(on.stdout, /^ {2}iPXE UEFI +tftp:\/\/\S+\/boot\.ipxe .* URL$/m);
    assert.match(on.stdout, /^check: ok$/m);

    const off = await runPypxeOnce(["--check", ...common]);
    assert.match(off.stdout, /^ {2}UEFI x64 +ipxe\.efi .*ok \(overlay, 8 bytes\)$/m);
    assert.doesNotMatch(off.stdout, /shimx64/);

    const http = await runPypxeOnce([
      "--check",
      "--secure-boot",
      "--http",
      "--http-server-ip",
      "127.0.0.1",
      "--http-port",
      String(freeTcpPort()),
      ...common,
    ]);
    assert.match(http.stdout, /^ {2}UEFI HTTP +http:\/\/\S+\/ipxe\.efi +\S+ +60=HTTPClient +URL$/m);
    assert.match(http.stdout, /^ {2}UEFI x64 +shimx64\.efi /m);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test(requires(missingTools("curl"), {
  name: "--secure-boot: the running binary's banner names shimx64.efi and TFTP serves shim and grub.cfg",
  sanitizeResources: true,
  sanitizeOps: true,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "pypxe-sb-run-" });
    try {
      const shim = new Uint8Array(3000).map((_, i) => (i * 7) & 255);
      await Deno.writeFile(join(dir, "shimx64.efi"), shim);
      const menu = JSON.stringify({ timeout: 5, entries: [{ id: "d", label: "Debian", kernel: "d/linux" }] });
      await Deno.writeTextFile(join(dir, "menu.json"), menu);
      const port = freeUdpPort();
      const pypxe = await startPypxe([
        "--secure-boot",
        "--no-status",
        "--netboot-dir",
        dir,
        "--tftp-server-ip",
        "127.0.0.1",
        "--tftp-port",
        String(port),
      ]);
      try {
        const boot = await pypxe.waitFor(/boot files: /);
        assert.match(boot, /UEFI x64: shimx64\.efi(,|$)/);
        // the embedded tree decides whether grubx64.efi is there: the warning says so exactly then
        const embeddedGrub = await NetbootFs.open().then((fs) => fs.resolve("grubx64.efi")).then(
          () => true,
          () => false,
        );
        const warned = pypxe.lines.some((l) =>
          /--secure-boot: grubx64\.efi \(grub-efi-amd64-signed\)/.test(l)
        );
        assert.equal(warned, !embeddedGrub, pypxe.lines.join("\n"));
        assert.ok(!pypxe.lines.some((l) => /--secure-boot: shimx64/.test(l)), "shim is in the overlay");

        const out = join(dir, "got");
        const cfg = new TextEncoder().encode(grubConfig({ menu: parseMenuFile(menu) }));
        for (const [name, want] of [["shimx64.efi", shim], ["grub/grub.cfg", cfg]] as const) {
          const r = await run([
            "curl",
            "-sS",
            "--max-time",
            "20",
            "-o",
            out,
            `tftp://127.0.0.1:${port}/${name}`,
          ]);
          assert.equal(r.code, 0, r.stderr);
          assert.deepEqual(await Deno.readFile(out), want, name);
        }
      } finally {
        assert.equal(await pypxe.stop(), 0);
      }
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
}));
