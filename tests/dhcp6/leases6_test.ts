import { deepEqual, equal, ok } from "node:assert/strict";
import { bigToIpv6, ipv6ToBig, Leases6 } from "../../src/dhcp6/leases6.ts";

const A = "52:54:00:00:00:0a";
const B = "52:54:00:00:00:0b";

function store(over: Partial<ConstructorParameters<typeof Leases6>[0]> = {}, clock = { t: 1_000_000 }) {
  return new Leases6({ begin: "2001:db8::10", end: "2001:db8::11", now: () => clock.t, ...over });
}

Deno.test("leases6: address arithmetic round-trips", () => {
  equal(bigToIpv6(ipv6ToBig("2001:db8::ffff")! + 1n), "2001:db8::1:0");
  equal(ipv6ToBig("nope"), undefined);
});

Deno.test("leases6: offers expire, bound addresses are not given to others, pool runs out", () => {
  const clock = { t: 1_000_000 };
  const s = store({}, clock);
  equal(s.offer(A, 1), "2001:db8::10");
  equal(s.offer(B, 1), "2001:db8::11");
  equal(s.offer(B, 2), null); // both held
  clock.t += 61_000; // offers lapse
  equal(s.bind(B, 2)?.ip, "2001:db8::10");
  equal(s.offer(A, 1), "2001:db8::11");
});

Deno.test("leases6: hint honoured when free, release keeps the address for its client", () => {
  const s = store();
  equal(s.bind(A, 1, { hint: "2001:db8:0::11" })?.ip, "2001:db8::11");
  ok(s.release(A, 1, "2001:db8::11"));
  ok(!s.release(A, 1, "2001:db8::11"));
  equal(s.offer(A, 1), "2001:db8::11");
  equal(s.bind(B, 1, { hint: "2001:db8::99" })?.ip, "2001:db8::10"); // hint outside the pool ignored
});

Deno.test("leases6: a declined address stays out for the decline time", () => {
  const clock = { t: 1_000_000 };
  const s = store({ begin: "2001:db8::10", end: "2001:db8::10", declineTime: 10 }, clock);
  equal(s.bind(A, 1)?.ip, "2001:db8::10");
  ok(s.decline(A, 1, "2001:db8::10"));
  equal(s.offer(B, 1), null);
  clock.t += 11_000;
  equal(s.offer(B, 1), "2001:db8::10");
});

Deno.test("leases6: a /64-sized pool allocates at once (bounded scan)", () => {
  const s = store({ begin: "2001:db8::", end: "2001:db8::ffff:ffff:ffff:ffff" });
  const t = performance.now();
  for (let i = 0; i < 100; i++) ok(s.bind(`k${i}`, 1) !== null);
  ok(performance.now() - t < 500);
});

Deno.test("leases6: reservations go to their MAC only, to each of its IAs", () => {
  const s = store({ reserved: new Map([[A, "2001:db8::5"]]) });
  equal(s.bind(A, 1)?.ip, "2001:db8::5");
  equal(s.bind(A, 2)?.ip, "2001:db8::5");
  equal(s.bind(B, 1, { hint: "2001:db8::5" })?.ip, "2001:db8::10");
  ok(s.isOurs("2001:db8::5"));
});

Deno.test("leases6: bad file entries are skipped with a warning", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const file = `${dir}/l6.json`;
    await Deno.writeTextFile(
      file,
      JSON.stringify({
        [`${A}/1`]: { ip: "2001:db8::10", expire: 2000 },
        [`${B}/1`]: { ip: "2001:db8::99", expire: 2000 },
        "nokey": { ip: "2001:db8::11", expire: 2000 },
      }),
    );
    const warnings: string[] = [];
    const s = store({ file, warn: (m) => warnings.push(m) });
    await s.load();
    equal(s.bindingFor(A, 1)?.ip, "2001:db8::10");
    equal(s.bindingFor(B, 1), undefined);
    equal(warnings.length, 2, warnings.join("\n"));
    await s.close();
    deepEqual(Object.keys(JSON.parse(await Deno.readTextFile(file))), [`${A}/1`]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
