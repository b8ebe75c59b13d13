/**
 * `--check --ipv6`: the DHCPv6 boot URLs per client type, and the IPv6 problems the real start would
 * meet (server address not local, static ipv6addr outside the /64, saved leases it would drop), read
 * without writing the lease file.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { parseArgs } from "../../src/cli.ts";
import { buildConfig } from "../../src/config.ts";
import { checkIpv6 } from "../../src/check6.ts";
import type { Ipv6Address } from "../../src/net6.ts";
import { parseStaticLeases } from "../../src/static_leases.ts";

const six: Ipv6Address[] = [
  { name: "eth0", address: "fd00:1::1", prefix: 64, index: 2, mac: "52:54:00:12:34:56" },
];
const config = (args: string[]) =>
  buildConfig({
    flags: parseArgs([args.includes("--dhcp-proxy") ? "" : "--dhcp", "--ipv6", "--interface", "eth0", ...args]
      .filter((a) => a !== "")).flags,
    interfaces: () => [{ name: "eth0", address: "192.168.7.1", netmask: "255.255.255.0" }],
    interfaces6: () => six,
  }).config;

Deno.test("check ipv6: boot URLs per client type, bracketed server address", async () => {
  const { lines, problems } = await checkIpv6(config(["--http", "--ipxe"]), new Map(), six);
  assert.deepEqual(problems, []);
  assert.match(lines[0], /over DHCPv6 \(range fd00:1::1:0-fd00:1::1:ffff\)/);
  assert.match(lines.join("\n"), /UEFI x64 \(PXEv6\)\s+59=tftp:\/\/\[fd00:1::1\]\/ipxe\.efi$/m);
  assert.match(lines.join("\n"), /UEFI HTTP \(IPv6\)\s+59=http:\/\/\[fd00:1::1\]\/ipxe\.efi\s+16=HTTPClient/);
  assert.match(lines.join("\n"), /iPXE UEFI \(IPv6\)\s+59=http:\/\/\[fd00:1::1\]\/boot\.http\.ipxe/);
  const proxy = await checkIpv6(config(["--dhcp-proxy"]), new Map(), six);
  assert.match(proxy.lines[0], /proxyDHCPv6/);
  assert.match(
    proxy.lines.join("\n"),
    /UEFI x64 \(PXEv6\)\s+59=tftp:\/\/\[fd00:1::1\]\/ipxe\.efi\s+16=PXEClient/,
  );
});

Deno.test("check ipv6: foreign server address, static lease off the /64, saved lease outside the pool", async () => {
  const dir = await Deno.makeTempDir({ prefix: "pypxe-check6-" });
  try {
    const saved = JSON.stringify({ "52:54:00:00:00:02/1": { ip: "fd00:77::5", expire: 4e12 } });
    await Deno.writeTextFile(join(dir, "leases6.json"), saved);
    const statics = parseStaticLeases(
      JSON.stringify({ dhcp: { binding: { "52:54:00:00:00:01": { ipv6addr: "fd00:99::5" } } } }),
      "static.json",
    );
    const c = config(["--save-leases", join(dir, "leases.json"), "--dhcp6-server-ip", "fd00:1::9"]);
    const { problems } = await checkIpv6(c, statics, six);
    assert.equal(problems.length, 3, problems.join("\n"));
    assert.match(problems[0], /fd00:1::9 is not an address of this host \(this host has fd00:1::1\)/);
    assert.match(problems[1], /static lease 52:54:00:00:00:01 .*ipv6addr fd00:99::5 is outside the \/64/);
    assert.match(
      problems[2],
      /saved IPv6 lease .*leases6\.json: lease "52:54:00:00:00:02\/1" skipped: fd00:77::5/,
    );
    assert.equal(
      await Deno.readTextFile(join(dir, "leases6.json")),
      saved,
      "the lease file is not rewritten",
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
