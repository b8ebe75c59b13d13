import assert from "node:assert/strict";
import { helpText, parseArgs } from "../../src/cli.ts";
import {
  buildConfig,
  checkValue,
  ConfigError,
  type ConfigKey,
  configToJson,
  DEFAULTS,
  KEY_ALIASES,
  leaseRangeFor,
  parseConfigJson,
  type PxeConfig,
  serviceSelected,
  type Setting,
  SETTINGS,
  type SettingsTable,
} from "../../src/config.ts";
import { runPypxeOnce } from "../helpers/servers.ts";

const noInterfaces = () => [];
const build = (args: string[], fileJson?: string, interfaces = noInterfaces) => {
  const file = fileJson === undefined ? {} : parseConfigJson(fileJson, "test.json").values;
  return buildConfig({ file, flags: parseArgs(args).flags, interfaces }).config;
};
const throwsConfig = (fn: () => unknown, pattern: RegExp) =>
  assert.throws(
    fn,
    (err: unknown) => err instanceof ConfigError && pattern.test(err.message) && !err.message.includes("\n"),
  );

// PyPXE's example_cfg.json, key for key (it says NBD_SERVER_PORT where the code reads NBD_PORT).
const PYPXE_EXAMPLE = `{   "NETBOOT_DIR" : "netboot", "NETBOOT_FILE" : "", "DHCP_SERVER_IP" : "192.168.2.2",
  "DHCP_SERVER_PORT" : 67, "DHCP_OFFER_BEGIN" : "192.168.2.100", "DHCP_OFFER_END" : "192.168.2.150",
  "DHCP_SUBNET" : "255.255.255.0", "DHCP_ROUTER" : "192.168.2.1", "DHCP_DNS" : "8.8.8.8",
  "DHCP_BROADCAST" : "", "DHCP_FILESERVER" : "192.168.2.2", "SYSLOG_SERVER" : null, "SYSLOG_PORT" : 514,
  "USE_IPXE" : false, "USE_HTTP" : false, "USE_TFTP" : true, "USE_DHCP" : true, "DHCP_MODE_PROXY" : false,
  "NBD_BLOCK_DEVICE" : "", "NBD_WRITE" : false, "NBD_COW" : true, "NBD_COW_IN_MEM" : false,
  "NBD_COPY_TO_RAM" : false, "NBD_SERVER_IP" : "0.0.0.0", "NBD_SERVER_PORT" : 10809,
  "MODE_DEBUG" : "", "MODE_VERBOSE" : ""   }`;

Deno.test("PyPXE's 34 keys are all settings with PyPXE's defaults", () => {
  const pypxeKeys = [
    "USE_IPXE",
    "USE_HTTP",
    "USE_TFTP",
    "USE_DHCP",
    "DHCP_MODE_PROXY",
    "MODE_DEBUG",
    "MODE_VERBOSE",
    "STATIC_CONFIG",
    "LEASES_FILE",
    "SYSLOG_SERVER",
    "SYSLOG_PORT",
    "DHCP_SERVER_IP",
    "DHCP_SERVER_PORT",
    "DHCP_OFFER_BEGIN",
    "DHCP_OFFER_END",
    "DHCP_SUBNET",
    "DHCP_ROUTER",
    "DHCP_DNS",
    "DHCP_BROADCAST",
    "DHCP_FILESERVER",
    "DHCP_WHITELIST",
    "HTTP_PORT",
    "HTTP_SERVER_IP",
    "TFTP_PORT",
    "TFTP_SERVER_IP",
    "NETBOOT_DIR",
    "NETBOOT_FILE",
    "NBD_BLOCK_DEVICE",
    "NBD_WRITE",
    "NBD_COW",
    "NBD_COW_IN_MEM",
    "NBD_COPY_TO_RAM",
    "NBD_SERVER_IP",
    "NBD_PORT",
  ];
  assert.equal(pypxeKeys.length, 34);
  for (const key of pypxeKeys) assert.ok(key in SETTINGS, key);
  assert.equal(DEFAULTS.DHCP_SERVER_IP, "192.168.2.2");
  assert.equal(DEFAULTS.USE_TFTP, true);
  assert.equal(DEFAULTS.NBD_COW, true);
  assert.equal(DEFAULTS.NBD_PORT, 10809);
  assert.equal(DEFAULTS.HTTP_PORT, 80);
});

Deno.test("PyPXE's example_cfg.json loads unchanged, without warnings", () => {
  const file = parseConfigJson(PYPXE_EXAMPLE, "example_cfg.json");
  assert.deepEqual(file.warnings, []);
  assert.equal(file.values.NBD_PORT, 10809);
  const config = buildConfig({ file: file.values, interfaces: noInterfaces }).config;
  assert.equal(config.USE_DHCP, true);
  assert.equal(config.NETBOOT_FILE, "pxelinux.0");
  assert.equal(config.DHCP_BROADCAST, "192.168.2.255");
});

Deno.test("precedence: defaults < JSON file < flags", () => {
  const json = `{"DHCP_SERVER_PORT": 6767, "TFTP_PORT": 6969, "USE_HTTP": true}`;
  const fromFile = build([], json);
  assert.equal(fromFile.DHCP_SERVER_PORT, 6767);
  assert.equal(fromFile.TFTP_PORT, 6969);
  assert.equal(fromFile.USE_HTTP, true);
  assert.equal(fromFile.HTTP_PORT, 80);
  const withFlags = build(["--tftp-port", "7000", "--no-http"], json);
  assert.equal(withFlags.TFTP_PORT, 7000);
  assert.equal(withFlags.USE_HTTP, false);
  assert.equal(withFlags.DHCP_SERVER_PORT, 6767);
});

Deno.test("derived values: proxy implies DHCP, boot file by iPXE/HTTP, broadcast from ip and mask", () => {
  assert.equal(build(["--dhcp-proxy"]).USE_DHCP, true);
  assert.equal(build([]).NETBOOT_FILE, "pxelinux.0");
  assert.equal(build(["--ipxe"]).NETBOOT_FILE, "boot.ipxe");
  assert.equal(build(["--ipxe", "--http"]).NETBOOT_FILE, "boot.http.ipxe");
  assert.equal(build(["--ipxe", "--netboot-file", "my.ipxe"]).NETBOOT_FILE, "my.ipxe");
  assert.equal(
    build(["--dhcp-server-ip", "10.1.2.3", "--dhcp-subnet", "255.255.0.0"]).DHCP_BROADCAST,
    "10.1.255.255",
  );
});

Deno.test("flags: --x/--no-x pairs, aliases, = form, exclusive groups", () => {
  assert.equal(parseArgs(["--dhcp-fileserver-ip", "10.0.0.9"]).flags.DHCP_FILESERVER, "10.0.0.9");
  assert.equal(parseArgs(["--dhcp-fileserver=10.0.0.8"]).flags.DHCP_FILESERVER, "10.0.0.8");
  assert.equal(parseArgs(["--no-nbd-cow"]).flags.NBD_COW, false);
  throwsConfig(() => parseArgs(["--tftp", "--no-tftp"]), /--no-tftp: not allowed with --tftp/);
  throwsConfig(() => parseArgs(["--dhcp", "--dhcp-proxy"]), /--dhcp-proxy: not allowed with --dhcp/);
  throwsConfig(() => parseArgs(["--dhpc"]), /unknown flag --dhpc \(did you mean --dhcp\?\)/);
  throwsConfig(() => parseArgs(["--tftp-port"]), /--tftp-port: expected a value/);
  throwsConfig(
    () => parseArgs(["--tftp-port", "abc"]),
    /--tftp-port: expected an integer 1-65535, got "abc"/,
  );
  throwsConfig(() => parseArgs(["--http=yes"]), /--http: takes no value/);
  throwsConfig(() => parseArgs(["stray"]), /unexpected argument "stray"/);
  const req = parseArgs(["--config", "x.json", "--dump-config-merged"]);
  assert.equal(req.configFile, "x.json");
  assert.equal(req.dumpConfigMerged, true);
});

Deno.test("validation errors are one line naming the flag or key", () => {
  throwsConfig(
    () => build(["--dhcp-server-ip", "300.1.1.1"]),
    /--dhcp-server-ip.*IPv4 address, got "300.1.1.1"/,
  );
  throwsConfig(() => build(["--tftp-port", "0"]), /--tftp-port.*0 is outside 1-65535/);
  throwsConfig(() => build(["--http-port", "70000"]), /--http-port.*70000 is outside 1-65535/);
  throwsConfig(() => build(["--dhcp-subnet", "255.0.255.0"]), /--dhcp-subnet.*netmask/);
  throwsConfig(
    () => build(["--dhcp", "--dhcp-begin", "192.168.2.200", "--dhcp-end", "192.168.2.150"]),
    /--dhcp-begin.*192\.168\.2\.200 is after .*--dhcp-end/,
  );
  throwsConfig(
    () => build(["--dhcp", "--dhcp-begin", "10.0.0.5", "--dhcp-end", "10.0.0.9"]),
    /--dhcp-begin.*10\.0\.0\.5 is outside the subnet 192\.168\.2\.0\/255\.255\.255\.0/,
  );
  throwsConfig(
    () => build(["--dhcp", "--dhcp-server-ip", "192.168.2.120"]),
    /--dhcp-server-ip.*192\.168\.2\.120 lies inside the lease range/,
  );
  throwsConfig(() => build(["--debug", "all,-dhpc"]), /--debug.*unknown service "-dhpc"/);
  throwsConfig(() => build(["--tftp-max-blksize", "70000"]), /--tftp-max-blksize.*outside 512-65464/);
  throwsConfig(() => build(["--dhcp-dns", "8.8.8.8,nope"]), /--dhcp-dns.*"nope"/);
  throwsConfig(
    () => parseConfigJson(`{"TFTP_PORT": true}`, "c.json"),
    /^c\.json: TFTP_PORT: expected an integer/,
  );
  throwsConfig(
    () => parseConfigJson(`{"USE_DHCP": "yes"}`, "c.json"),
    /^c\.json: USE_DHCP: expected true or false/,
  );
  throwsConfig(() => parseConfigJson(`{"DHCP_SUBNET": 24}`, "c.json"), /DHCP_SUBNET: expected a netmask/);
  throwsConfig(() => parseConfigJson(`{"USE_DHCP": true,}`, "c.json"), /^c\.json: not valid JSON/);
  throwsConfig(() => parseConfigJson(`[1]`, "c.json"), /expected a JSON object/);
});

Deno.test("an unknown JSON key warns and names the closest valid key", () => {
  const file = parseConfigJson(`{"DHCP_SEVER_IP": "10.0.0.1", "USE_DHCP": true}`, "c.json");
  assert.deepEqual(file.warnings, [
    "c.json: unknown key DHCP_SEVER_IP ignored (did you mean DHCP_SERVER_IP?)",
  ]);
  assert.equal(file.values.USE_DHCP, true);
  assert.equal("DHCP_SEVER_IP" in file.values, false);
});

Deno.test("JSON accepts numeric strings for ports and a list for DNS", () => {
  const file = parseConfigJson(`{"TFTP_PORT": "6969", "DHCP_DNS": ["1.1.1.1", "9.9.9.9"]}`, "c.json");
  assert.equal(file.values.TFTP_PORT, 6969);
  assert.equal(file.values.DHCP_DNS, "1.1.1.1,9.9.9.9");
});

Deno.test("--interface derives server IP, mask, broadcast, router and range; explicit values win", () => {
  const interfaces = () => [{ name: "eth9", address: "10.20.30.5", netmask: "255.255.255.0" }];
  const built = buildConfig({ flags: parseArgs(["--dhcp", "--interface", "eth9"]).flags, interfaces });
  const c: PxeConfig = built.config;
  assert.equal(built.iface?.reason, "--interface");
  assert.equal(c.DHCP_SERVER_IP, "10.20.30.5");
  assert.equal(c.DHCP_SUBNET, "255.255.255.0");
  assert.equal(c.DHCP_BROADCAST, "10.20.30.255");
  assert.equal(c.DHCP_ROUTER, ""); // an isolated link has no router unless the user names one
  assert.equal(c.DHCP_DNS, "");
  assert.equal(c.DHCP_FILESERVER, "10.20.30.5");
  assert.deepEqual([c.DHCP_OFFER_BEGIN, c.DHCP_OFFER_END], ["10.20.30.128", "10.20.30.227"]);
  const explicit = buildConfig({
    flags: parseArgs(["--dhcp", "--interface", "eth9", "--dhcp-router", "10.20.30.1"]).flags,
    interfaces,
  }).config;
  assert.equal(explicit.DHCP_ROUTER, "10.20.30.1");
  throwsConfig(
    () => buildConfig({ flags: parseArgs(["--interface", "wlan7"]).flags, interfaces }),
    /--interface wlan7: no IPv4 address on that interface \(with IPv4: eth9\)/,
  );
});

Deno.test("the only IPv4 interface is the DHCP default; two interfaces keep PyPXE's defaults", () => {
  const one = () => [{ name: "enp1s0", address: "172.16.5.200", netmask: "255.255.0.0" }];
  const built = buildConfig({ flags: parseArgs(["--dhcp"]).flags, interfaces: one });
  assert.equal(built.iface?.name, "enp1s0");
  assert.equal(built.iface?.reason, "only interface");
  assert.equal(built.config.DHCP_SERVER_IP, "172.16.5.200");
  assert.deepEqual([built.config.DHCP_OFFER_BEGIN, built.config.DHCP_OFFER_END], [
    "172.16.128.1",
    "172.16.128.100",
  ]);
  const two = () => [...one(), { name: "eth1", address: "10.0.0.1", netmask: "255.0.0.0" }];
  assert.equal(
    buildConfig({ flags: parseArgs(["--dhcp"]).flags, interfaces: two }).config.DHCP_SERVER_IP,
    "192.168.2.2",
  );
  assert.equal(buildConfig({ flags: parseArgs([]).flags, interfaces: one }).iface, undefined);
});

Deno.test("lease range for small and large subnets avoids the server", () => {
  assert.deepEqual(leaseRangeFor("192.168.1.200", "255.255.255.0"), ["192.168.1.1", "192.168.1.100"]);
  assert.deepEqual(leaseRangeFor("192.168.1.1", "255.255.255.0"), ["192.168.1.128", "192.168.1.227"]);
  assert.deepEqual(leaseRangeFor("10.0.0.2", "255.255.255.248"), ["10.0.0.4", "10.0.0.6"]);
  assert.deepEqual(leaseRangeFor("10.0.0.5", "255.255.255.248"), ["10.0.0.1", "10.0.0.3"]);
});

Deno.test("--debug/--verbose service selection uses PyPXE's syntax", () => {
  assert.equal(serviceSelected("all,-dhcp", "dhcp"), false);
  assert.equal(serviceSelected("all,-dhcp", "tftp"), true);
  assert.equal(serviceSelected("tftp,http", "http"), true);
  assert.equal(serviceSelected("tftp", "dhcp"), false);
  assert.equal(serviceSelected("", "tftp"), false);
  assert.equal(serviceSelected("ALL", "nbd"), true);
});

Deno.test("--nbd repeats into a list; JSON takes a string or a list", () => {
  assert.equal(parseArgs(["--nbd", "a.img"]).flags.NBD_BLOCK_DEVICE, "a.img");
  assert.deepEqual(parseArgs(["--nbd", "a.img", "--nbd", "b.iso"]).flags.NBD_BLOCK_DEVICE, [
    "a.img",
    "b.iso",
  ]);
  assert.deepEqual(
    parseConfigJson(`{"NBD_BLOCK_DEVICE": ["x.img", "y.img"]}`, "c.json").values.NBD_BLOCK_DEVICE,
    [
      "x.img",
      "y.img",
    ],
  );
  throwsConfig(
    () => parseConfigJson(`{"NBD_BLOCK_DEVICE": [1]}`, "c.json"),
    /NBD_BLOCK_DEVICE: expected a file name/,
  );
  throwsConfig(() => parseArgs(["--nbd", ""]), /--nbd: expected a file or block device/);
});

type Row<K extends ConfigKey> = SettingsTable[K];

Deno.test("the table's type demands every PxeConfig key, with a default and kind of its type", () => {
  // each assignment below must fail to type-check (deno test checks this file first)
  const { USE_IPXE: _dropped, ...withoutOneKey } = SETTINGS;
  // @ts-expect-error: a table without the USE_IPXE row is not a SettingsTable
  const missing: SettingsTable = withoutOneKey;
  // @ts-expect-error: a row's default has its key's type (USE_IPXE is a boolean)
  const wrongDefault: Row<"USE_IPXE"> = { kind: "bool", group: "main", default: "yes", help: "" };
  // @ts-expect-error: a row's kind yields its key's type ("int" is not a boolean)
  const wrongKind: Row<"USE_IPXE"> = { kind: "int", group: "main", default: false, help: "" };
  // @ts-expect-error: "string" cannot hold SYSLOG_SERVER's null
  const notNullable: Row<"SYSLOG_SERVER"> = { kind: "string", group: "main", default: null, help: "" };
  assert.ok([missing, wrongDefault, wrongKind, notNullable].every((v) => typeof v === "object"));
});

const rows = () => Object.entries(SETTINGS) as [ConfigKey, Setting][];

Deno.test("the table has one row per PxeConfig key; DEFAULTS and KEY_ALIASES derive from it", () => {
  assert.deepEqual(Object.keys(DEFAULTS), Object.keys(SETTINGS));
  assert.ok(Object.isFrozen(DEFAULTS));
  for (const [key, s] of rows()) {
    assert.equal(DEFAULTS[key], s.default, key);
    // every default passes its own row's check, unchanged
    const checked = checkValue(s.kind, s.default, s);
    assert.deepEqual(checked, { ok: true, value: s.default }, key);
  }
  assert.deepEqual(KEY_ALIASES, { NBD_SERVER_PORT: "NBD_PORT" });
  // a merged config has exactly the table's keys
  assert.deepEqual(Object.keys(build([])).sort(), Object.keys(SETTINGS).sort());
});

/** `--help` as [flag column, description] rows (a long flag column puts its description on the next line). */
function helpRows(text: string): [string, string][] {
  const lines = text.split("\n");
  const out: [string, string][] = [];
  for (let i = 0; i < lines.length; i++) {
    const m = /^ {2}(-\S.*?)(?: {2,}(\S.*))?$/.exec(lines[i]);
    if (m === null) continue;
    out.push([m[1], m[2] ?? lines[++i].trim()]);
  }
  return out;
}

Deno.test("--help lists every flag once, each setting with exactly one default, taken from the table", () => {
  const listed = helpRows(helpText("9.9.9"));
  const byFlag = new Map<string, string>();
  for (const [names, description] of listed) {
    for (const name of names.split(", ").map((n) => n.split(" ")[0])) {
      assert.ok(!byFlag.has(name), `${name} listed twice`);
      byFlag.set(name, description);
    }
  }
  const commands = ["--config", "--dump-config", "--dump-config-merged", "--check", "--version", "--help"];
  const flags = rows().flatMap(([, s]) => [s.flag, ...(s.aliases ?? []), s.noFlag]).filter((f) =>
    f !== undefined
  );
  assert.deepEqual([...byFlag.keys()].sort(), [...commands, ...flags].sort());
  for (const name of commands) assert.doesNotMatch(byFlag.get(name)!, /default:/, name);
  for (const [key, s] of rows()) {
    if (s.flag === undefined) continue;
    const description = byFlag.get(s.flag)!;
    const shown = s.defaultText ??
      (s.default === "" ? "''" : s.default === null ? "none" : String(s.default));
    assert.equal(description.match(/default:/g)?.length, 1, `${key}: ${description}`);
    assert.ok(description.includes(`(default: ${shown})`), `${key}: ${description}`);
    assert.doesNotMatch(description, /by default/, key);
  }
  assert.match(byFlag.get("--status")!, /\(default: on for a terminal without --debug\) \[pypxe\]$/);
  assert.match(byFlag.get("--tftp")!, /^Enable built-in TFTP server \(default: true\)$/);
  assert.match(byFlag.get("--syslog")!, /\(default: none\)$/);
});

Deno.test("--dump-config prints the table's defaults, and nothing else", async () => {
  const { code, stdout } = await runPypxeOnce(["--dump-config"]);
  assert.equal(code, 0);
  const fromTable = Object.fromEntries(rows().map(([key, s]) => [key, s.default]));
  assert.equal(stdout, configToJson(fromTable) + "\n");
  assert.equal(stdout, configToJson(DEFAULTS) + "\n");
});

Deno.test("host-or-null (--syslog) takes a host name, IPv4 or IPv6 address, and nothing else", () => {
  const host = (value: unknown) => checkValue("host-or-null", value);
  for (
    const ok of [
      "syslog",
      "log.example.com",
      "log.example.com.",
      "log-1.lan",
      "10.0.0.5",
      "::1",
      "fe80::a00:27ff:fe4e:66a1",
      "2001:db8:0:0:0:0:0:1",
      "::ffff:192.0.2.1",
      `${"a".repeat(63)}.example`,
    ]
  ) {
    assert.deepEqual(host(ok), { ok: true, value: ok }, ok);
  }
  assert.deepEqual(host(null), { ok: true, value: null });
  assert.deepEqual(host(""), { ok: true, value: null });
  for (
    const bad of [
      "log server",
      " syslog",
      "syslog ",
      "syslog\n",
      "log\tserver",
      "log_server",
      "user@host",
      "host:514",
      "host/24",
      "-syslog",
      "syslog-",
      "log..example",
      ".",
      "...",
      "-",
      "300.1.1.1",
      "1.2.3",
      "10",
      ":::",
      "1::2::3",
      "1:2:3:4:5:6:7:8:9",
      "12345::1",
      "::ffff:300.0.0.1",
      "fe80::1%eth0",
      `${"a".repeat(64)}.example`,
      `${"abc.".repeat(64)}com`,
      "syslög",
      42,
      true,
    ]
  ) {
    const checked = host(bad);
    assert.equal(checked.ok, false, JSON.stringify(bad));
    if (!checked.ok) assert.match(checked.reason, /^expected a host name or IP address, got /);
  }
  throwsConfig(
    () => build(["--syslog", "log server"]),
    /^SYSLOG_SERVER \(--syslog\): expected a host name or IP address, got "log server"$/,
  );
  throwsConfig(
    () => parseConfigJson(`{"SYSLOG_SERVER": "log server"}`, "c.json"),
    /^c\.json: SYSLOG_SERVER: expected a host name or IP address, got "log server"$/,
  );
  assert.equal(build(["--syslog", "log.lan"]).SYSLOG_SERVER, "log.lan");
  assert.equal(build([], `{"SYSLOG_SERVER": null}`).SYSLOG_SERVER, null);
});
