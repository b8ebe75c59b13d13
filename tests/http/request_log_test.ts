/** RequestLogLevel: which finished requests are INFO and which DEBUG (injected clock). */
import { deepStrictEqual } from "node:assert/strict";
import { RequestLogLevel } from "../../src/http/request_log.ts";

Deno.test("http request log: boot files INFO, image ranges INFO once a minute per client", () => {
  let now = 1_000_000;
  const level = new RequestLogLevel(() => now);
  const seq = (status: number, ip: string, path: string, n: number) =>
    Array.from({ length: n }, () => level.levelOf(status, ip, path));
  deepStrictEqual(seq(206, "10.0.0.5", "/vmlinuz", 3), ["info", "info", "info"]);
  deepStrictEqual(seq(200, "10.0.0.5", "/images/a.iso", 2), ["info", "info"]);
  deepStrictEqual(seq(206, "10.0.0.5", "/images/a.iso", 3), ["info", "debug", "debug"]);
  deepStrictEqual(seq(206, "10.0.0.6", "/images/a.iso", 2), ["info", "debug"], "per client");
  deepStrictEqual(seq(206, "10.0.0.5", "/disk.IMG", 2), ["info", "debug"], "any case");
  now += 59_999;
  deepStrictEqual(seq(206, "10.0.0.5", "/images/a.iso", 1), ["debug"]);
  now += 1;
  deepStrictEqual(seq(206, "10.0.0.5", "/images/a.iso", 2), ["info", "debug"], "again after a minute");
  // bounded memory: 5,000 distinct clients, then the first is forgotten (INFO again)
  for (let i = 0; i < 5000; i++) level.levelOf(206, `10.1.${i >> 8}.${i & 255}`, "/x.iso");
  deepStrictEqual(seq(206, "10.1.0.0", "/x.iso", 1), ["info"]);
});
