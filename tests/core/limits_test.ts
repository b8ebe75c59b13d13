import { equal, match, ok } from "node:assert/strict";
import { getLogger } from "@logtape/logtape";
import { connectionCaps, describeCaps, isResourceExhaustion, parseOpenFileLimit } from "../../src/limits.ts";
import { LogThrottle } from "../../src/log_throttle.ts";
import { setupLogging, teardownLogging } from "../../src/log.ts";
import { BootEvents } from "../../src/events.ts";
import { BOOT_LINES_PER_WINDOW, logBootEvents } from "../../src/server.ts";
import { run } from "../helpers/run.ts";

const LIMITS = `Limit                     Soft Limit           Hard Limit           Units
Max cpu time              unlimited            unlimited            seconds
Max open files            4096                 524288               files
Max locked memory         8388608              8388608              bytes
`;

Deno.test("limits: the soft open-file limit from /proc/self/limits text", () => {
  equal(parseOpenFileLimit(LIMITS), 4096);
  equal(parseOpenFileLimit(LIMITS.replace("4096  ", "unlimited")), Infinity);
  equal(parseOpenFileLimit("nothing here"), null);
  // this process: a number (Linux) or null elsewhere
  const own = Deno.build.os === "linux"
    ? parseOpenFileLimit(Deno.readTextFileSync("/proc/self/limits"))
    : null;
  ok(own === null || own > 0);
});

Deno.test("limits: caps are sized from the limit and leave room for every service", () => {
  for (const limit of [256, 1024, 4096, 65536, 1 << 20]) {
    const caps = connectionCaps(limit);
    // HTTP: one fd per connection; NBD two (socket + overlay); TFTP two (socket + file)
    ok(caps.http + 2 * caps.nbd + 2 * caps.tftp <= Math.max(limit, 200), `limit ${limit}`);
    ok(caps.http >= 16 && caps.nbd >= 4 && caps.tftp >= 16);
    ok(caps.tftp <= 1000);
  }
  equal(connectionCaps(65536).tftp, 1000);
  equal(connectionCaps(null).fileLimit, null);
  equal(connectionCaps(4096, { http: 50, nbd: 7 }).http, 50);
  equal(connectionCaps(4096, { http: 50, nbd: 7 }).nbd, 7);
  equal(connectionCaps(Infinity).http, connectionCaps(1 << 20).http);
  match(
    describeCaps(connectionCaps(4096)),
    /^open files 4096: HTTP \d+ connections, NBD \d+ connections, TFTP \d+/,
  );
  match(describeCaps(connectionCaps(null)), /unknown \(assumed 1024\)/);
});

Deno.test("limits: EMFILE, ENFILE and ENOBUFS are recognised, other errors are not", () => {
  ok(isResourceExhaustion(new Error("Too many open files (os error 24)")));
  ok(isResourceExhaustion(new Error("Too many open files in system (os error 23)")));
  ok(isResourceExhaustion(new Error("No buffer space available (os error 105)")));
  ok(!isResourceExhaustion(new Error("Connection reset by peer (os error 104)")));
  ok(!isResourceExhaustion(new Deno.errors.AddrInUse("Address already in use (os error 98)")));
});

Deno.test("log throttle: one line per kind per window, then one summary", async () => {
  const lines: string[] = [];
  await setupLogging({ write: (line) => lines.push(line) });
  try {
    const throttle = new LogThrottle({ log: getLogger(["pypxe", "http"]), windowMs: 200 });
    for (let i = 0; i < 2314; i++) throttle.note("refused", "info", `client ${i}: refused`, "refused");
    throttle.note("timeout", "warn", "client x: timed out");
    equal(lines.length, 2);
    match(lines[0], /INFO {2}http {2}client 0: refused$/);
    match(lines[1], /WARN {2}http {2}client x: timed out$/);
    equal(throttle.pending("refused"), 2313);
    await new Promise((r) => setTimeout(r, 350));
    equal(lines.length, 3);
    match(lines[2], /INFO {2}http {2}refused: 2,313 more in the last 0\.2 s$/);
    // a new window logs the next event in full again
    throttle.note("refused", "info", "client y: refused");
    match(lines[3], /client y: refused$/);
    throttle.note("refused", "info", "client z: refused");
    throttle.close(); // flushes the pending count, clears the timers
    match(lines[4], /refused: 1 more in the last 0\.2 s$/);
    equal(lines.length, 5);
  } finally {
    await teardownLogging();
  }
});

Deno.test("process guard: an uncaught rejection or exception is logged, the process keeps serving", async () => {
  const script = `
    import { guardProcess } from "${new URL("../../src/server.ts", import.meta.url).href}";
    import { setupLogging } from "${new URL("../../src/log.ts", import.meta.url).href}";
    await setupLogging();
    const unguard = guardProcess();
    Promise.reject(new Error("Http: Too many open files (os error 24)"));
    setTimeout(() => { throw new Error("thrown from a timer"); }, 10);
    await new Promise((r) => setTimeout(r, 200));
    console.log("alive");
    unguard();
  `;
  const { code, stdout, stderr } = await run([Deno.execPath(), "eval", "--no-check", script], {
    cwd: new URL("../..", import.meta.url).pathname,
    env: { NO_COLOR: "1" },
  });
  equal(code, 0, stderr);
  equal(stdout.trim(), "alive");
  match(stderr, /ERROR main {2}uncaught \(kept running\): Error: Http: Too many open files/);
  match(stderr, /ERROR main {2}uncaught \(kept running\): Error: thrown from a timer/);
});

Deno.test("boot lines: a DISCOVER flood is cut to BOOT_LINES_PER_WINDOW lines and one summary", async () => {
  const lines: string[] = [];
  await setupLogging({ write: (line) => lines.push(line) });
  try {
    const events = new BootEvents();
    const stop = logBootEvents(events);
    for (let i = 0; i < 10_000; i++) {
      const mac = `02:00:00:00:${(i >> 8).toString(16).padStart(2, "0")}:${
        (i & 255).toString(16).padStart(2, "0")
      }`;
      events.emit({ kind: "dhcp", mac, received: "DISCOVER", sent: "OFFER", ip: "192.168.2.100" });
    }
    equal(lines.length, BOOT_LINES_PER_WINDOW);
    match(lines[0], /INFO {2}dhcp {2}02:00:00:00:00:00 DISCOVER -> OFFER 192\.168\.2\.100$/);
    stop(); // flushes the count
    equal(lines.length, BOOT_LINES_PER_WINDOW + 1);
    match(lines.at(-1)!, /boot lines \(flood\): 9,700 more in the last 10 s$/);
  } finally {
    await teardownLogging();
  }
});
