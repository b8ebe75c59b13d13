import assert from "node:assert/strict";
import { ConfigError } from "../../src/config.ts";
import { loadStaticLeases, normaliseMac, parseStaticLeases } from "../../src/static_leases.ts";

const throwsConfig = (fn: () => unknown, pattern: RegExp) =>
  assert.throws(fn, (err: unknown) => err instanceof ConfigError && pattern.test(err.message));

Deno.test("PyPXE's example-leases.json shape loads; MACs in any case with : or -", () => {
  const leases = parseStaticLeases(
    JSON.stringify({
      dhcp: {
        binding: {
          "5C:9A:D8:5E:F2:E5": {
            ipaddr: "192.168.0.123",
            subnet: "255.255.255.0",
            router: "192.168.0.1",
            dns: ["8.8.8.8", "8.8.4.4"],
            rom: "pxelinux.0",
          },
          "aa-bb-cc-dd-ee-0f": { rom: "ipxe.efi" },
          "AA:bb:CC:dd:EE:10": {},
        },
      },
    }),
    "leases.json",
  );
  assert.deepEqual(leases.get("5c:9a:d8:5e:f2:e5"), {
    ipaddr: "192.168.0.123",
    subnet: "255.255.255.0",
    router: "192.168.0.1",
    dns: ["8.8.8.8", "8.8.4.4"],
    rom: "pxelinux.0",
  });
  assert.equal(leases.get("aa:bb:cc:dd:ee:0f")?.rom, "ipxe.efi");
  assert.ok(leases.has("aa:bb:cc:dd:ee:10"));
});

Deno.test("a bad entry is reported with its MAC and field", () => {
  const wrap = (binding: unknown) => JSON.stringify({ dhcp: { binding } });
  throwsConfig(
    () => parseStaticLeases(wrap({ "5C:9A:D8:5E:F2:E5": { ipaddr: "192.168.0.300" } }), "l.json"),
    /l\.json: 5C:9A:D8:5E:F2:E5: ipaddr: expected an IPv4 address/,
  );
  throwsConfig(
    () => parseStaticLeases(wrap({ "5C:9A:D8:5E:F2:E5": { subnet: "255.0.255.0" } }), "l.json"),
    /5C:9A:D8:5E:F2:E5: subnet: expected a netmask/,
  );
  throwsConfig(
    () => parseStaticLeases(wrap({ "5C:9A:D8:5E:F2:E5": { dns: ["8.8.8.8", 5] } }), "l.json"),
    /5C:9A:D8:5E:F2:E5: dns: expected IPv4/,
  );
  throwsConfig(
    () => parseStaticLeases(wrap({ "5C:9A:D8:5E:F2:E5": { rom: 7 } }), "l.json"),
    /5C:9A:D8:5E:F2:E5: rom: expected a string/,
  );
  throwsConfig(
    () => parseStaticLeases(wrap({ "5C:9A:D8:5E:F2:E5": { ipadr: "1.2.3.4" } }), "l.json"),
    /5C:9A:D8:5E:F2:E5: unknown field ipadr/,
  );
  throwsConfig(
    () => parseStaticLeases(wrap({ "5C:9A:D8:5E:F2": {} }), "l.json"),
    /"5C:9A:D8:5E:F2" is not a MAC address/,
  );
  throwsConfig(
    () => parseStaticLeases(wrap({ "5C:9A:D8:5E:F2:E5": {}, "5c-9a-d8-5e-f2-e5": {} }), "l.json"),
    /5c-9a-d8-5e-f2-e5: listed twice/,
  );
  throwsConfig(
    () =>
      parseStaticLeases(
        wrap({ "5C:9A:D8:5E:F2:E5": { ipaddr: "10.0.0.1" }, "5C:9A:D8:5E:F2:E6": { ipaddr: "10.0.0.1" } }),
        "l.json",
      ),
    /ipaddr 10\.0\.0\.1 is also given to 5C:9A:D8:5E:F2:E5/,
  );
  throwsConfig(() => parseStaticLeases(`{"dhcp": {}}`, "l.json"), /expected \{"dhcp": \{"binding"/);
  throwsConfig(() => parseStaticLeases(`{nope`, "l.json"), /l\.json: not valid JSON/);
});

Deno.test("a missing static-leases file is a clear error", async () => {
  await assert.rejects(
    () => loadStaticLeases("/nonexistent/leases.json"),
    /--static-config \/nonexistent\/leases\.json: cannot read \(no such file\)/,
  );
});

Deno.test("the shipped config/ examples load", async () => {
  const leases = await loadStaticLeases(new URL("../../config/static-leases.json", import.meta.url).pathname);
  assert.ok(leases.size >= 2);
  for (const mac of leases.keys()) assert.equal(normaliseMac(mac), mac);
});
