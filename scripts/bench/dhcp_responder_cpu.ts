/**
 * What `--boot-api` costs pypxe per DORA once the boot API's answers are cached, without sockets: the
 * DhcpResponder as the DHCP server drives it (`prepare()`, then `handle()`; boot events delivered to
 * the machines' `onEvent`, as src/app.ts subscribes it), (a) without per-machine boot and (b) with
 * MachineBoot and a warm boot API cache (a fake API on 127.0.0.1 in this process, asked only while
 * warming). Same PXE clients, alternating (a) and (b) passes, median µs per DORA. Companion of
 * `deno task bench dhcp --boot-api`, whose DORA/s on a busy machine is noisy.
 *
 * Usage: deno run -A scripts/bench/dhcp_responder_cpu.ts [--macs 2000] [--passes 10] [--only a|b]
 * @module
 */
import { parseArgs } from "node:util";
import { DEFAULTS, type PxeConfig } from "../../src/config.ts";
import { MessageType, Opt, setOption } from "../../src/dhcp/options.ts";
import { createDhcpPacket, decodeDhcp, encodeDhcp } from "../../src/dhcp/packet.ts";
import { DhcpResponder, type Incoming } from "../../src/dhcp/responder.ts";
import { BootEvents } from "../../src/events.ts";
import { MachineBoot } from "../../src/machines/runtime.ts";
import { startFakeBootApi } from "../../tests/helpers/boot_api_server.ts";

const SERVER_IP = "10.214.0.1";
const FROM: Incoming = { hostname: "0.0.0.0", port: 68, on: "dhcp" };

const CONFIG: PxeConfig = {
  ...DEFAULTS,
  USE_DHCP: true,
  DHCP_SERVER_IP: SERVER_IP,
  DHCP_FILESERVER: SERVER_IP,
  DHCP_ROUTER: SERVER_IP,
  DHCP_OFFER_BEGIN: "10.214.1.0",
  DHCP_OFFER_END: "10.214.40.255",
  DHCP_SUBNET: "255.255.0.0",
  DHCP_BROADCAST: "10.214.255.255",
  DHCP_DNS: SERVER_IP,
  DHCP_LEASE_TIME: 3600,
  LEASES_FILE: "",
};

function mac(i: number): string {
  const hex = (n: number) => (n & 255).toString(16).padStart(2, "0");
  return `02:77:00:${hex(i >> 16)}:${hex(i >> 8)}:${hex(i)}`;
}

/** A BIOS PXE ROM's DISCOVER or REQUEST, as the network benchmark sends it. */
function packet(i: number, type: number, requested?: string): Uint8Array {
  const pkt = createDhcpPacket({ mac: mac(i), xid: 0x1000 + i, flags: 0x8000 });
  setOption(pkt, Opt.MESSAGE_TYPE, type);
  setOption(pkt, Opt.PARAMETER_LIST, [1, 2, 3, 5, 6, 11, 12, 13, 15, 16, 17, 18, 43, 54, 60, 66, 67]);
  setOption(pkt, Opt.MAX_MESSAGE_SIZE, 1260);
  setOption(pkt, Opt.CLIENT_ARCH, [0]);
  setOption(pkt, Opt.CLIENT_NDI, new Uint8Array([1, 2, 1]));
  setOption(
    pkt,
    Opt.CLIENT_UUID,
    new Uint8Array([0, 0x5e, 0xed, 0x77, (i >> 16) & 255, (i >> 8) & 255, i & 255]),
  );
  setOption(pkt, Opt.VENDOR_CLASS, "PXEClient:Arch:00000:UNDI:002001");
  if (requested !== undefined) {
    setOption(pkt, Opt.REQUESTED_IP, requested);
    setOption(pkt, Opt.SERVER_ID, SERVER_IP);
  }
  return encodeDhcp(pkt);
}

/** One responder and the datagrams of its clients. */
interface Setup {
  responder: DhcpResponder;
  discovers: Uint8Array[];
  requests: Uint8Array[];
}

async function setup(macs: number, machines?: MachineBoot): Promise<Setup> {
  const events = new BootEvents();
  if (machines !== undefined) events.subscribe((e) => machines.onEvent(e));
  const responder = new DhcpResponder({ config: CONFIG, events, machines });
  await responder.leases.load();
  const discovers = Array.from({ length: macs }, (_, i) => packet(i, MessageType.DISCOVER));
  const requests: Uint8Array[] = [];
  const dora = async (i: number) => {
    await responder.prepare(discovers[i]);
    const offer = decodeDhcp(responder.handle(discovers[i], FROM)[0].bytes);
    requests[i] = packet(i, MessageType.REQUEST, offer.yiaddr);
    await responder.prepare(requests[i]);
    responder.handle(requests[i], FROM);
  };
  // bounded: one DORA per client, 16 at a time (at most the boot API client's 32 requests in flight)
  let next = 0;
  await Promise.all(Array.from({ length: 16 }, async () => {
    while (next < macs) await dora(next++);
  }));
  return { responder, discovers, requests };
}

/** µs per DORA of one pass over every client; throws if the boot API had to be waited for. */
function pass(s: Setup): number {
  const t0 = performance.now();
  for (let i = 0; i < s.discovers.length; i++) {
    for (const bytes of [s.discovers[i], s.requests[i]]) {
      if (s.responder.prepare(bytes) !== null) throw new Error("boot API answer not cached");
      if (s.responder.handle(bytes, FROM).length !== 1) throw new Error("no answer");
    }
  }
  return (performance.now() - t0) * 1000 / s.discovers.length;
}

function median(v: number[]): number {
  const s = [...v].sort((a, b) => a - b);
  return s.length % 2 ? s[s.length >> 1] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: { macs: { type: "string" }, passes: { type: "string" }, only: { type: "string" } },
  });
  const macs = Math.min(10_000, Math.max(1, Number(values.macs ?? 2000)));
  const passes = Math.min(100, Math.max(1, Number(values.passes ?? 10)));
  const api = await startFakeBootApi({
    fallback: { json: { kernel: "/bench/vmlinuz", initrd: ["/bench/initrd.img"], cmdline: "console=ttyS0" } },
  });
  // the cache (5 s) must outlive warm-up and passes: each pass is timed and they are few
  const machines = await MachineBoot.open({ dir: "", bootApi: api.url, bootApiTimeoutMs: 2000 });
  try {
    // `--only a|b` (for a profiler, or to keep the JIT's view of the other out): the other is not set up
    const a = values.only === "b" ? null : await setup(macs);
    const warming = performance.now();
    const b = values.only === "a" ? null : await setup(macs, machines);
    const started = performance.now();
    const warmMs = started - warming;
    if (warmMs > 2500) throw new Error(`warming took ${warmMs.toFixed(0)} ms: the 5 s cache would expire`);
    const [ta, tb]: number[][] = [[], []];
    for (let p = 0; p < passes && performance.now() - started < 5000 - warmMs - 500; p++) {
      if (a !== null) ta.push(pass(a));
      if (b !== null) tb.push(pass(b));
    }
    console.log(
      `responder, ${macs} PXE clients, ${Math.max(ta.length, tb.length)} passes (µs per DORA, median): ` +
        `(a) no --boot-api ${median(ta).toFixed(1)}, (b) --boot-api warm ${median(tb).toFixed(1)}, ` +
        `(b)/(a) ${(median(tb) / median(ta)).toFixed(2)}x; boot API requests ${api.count()} (warm-up only, ` +
        `${warmMs.toFixed(0)} ms)`,
    );
  } finally {
    await machines.close();
    await api.close();
  }
}
