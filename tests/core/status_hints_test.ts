/** The plain-language hints read from a client's timeline, as a table of timelines and what they say. */
import assert from "node:assert/strict";
import { type HintCode, hintsFor, type TimelineEntry } from "../../src/status.ts";

const S = 1000;

function dhcp(at: number, received: string, sent: string, more: Partial<TimelineEntry> = {}): TimelineEntry {
  return { kind: "dhcp", at, last: at, count: 1, received, sent, ...more } as TimelineEntry;
}

function xfer(at: number, file: string, outcome: string | undefined, more: Record<string, unknown> = {}) {
  return {
    kind: "transfer",
    at,
    last: at + 100,
    count: 1,
    service: "tftp",
    id: at,
    file,
    size: 50_000,
    bytes: outcome === "ok" ? 50_000 : 20_000,
    ms: outcome === undefined ? undefined : 100,
    outcome,
    ...more,
  } as TimelineEntry;
}

function refused(at: number, file: string, routine = false, reason = "not-found"): TimelineEntry {
  return { kind: "refused", at, last: at, count: 1, service: "tftp", file, reason, routine } as TimelineEntry;
}

interface Case {
  name: string;
  timeline: TimelineEntry[];
  /** Seconds after the last entry. */
  after?: number;
  label?: string;
  /** The hint codes expected, most recent first. */
  expect: HintCode[];
  /** Text the first hint must contain. */
  says?: RegExp;
  /** The stage the first hint marks as failed. */
  stage?: string;
}

const OFFERED = [dhcp(0, "DISCOVER", "OFFER", { ip: "10.0.0.100", bootFile: "pxelinux.0" })];
const CHOSE_OTHER = dhcp(1 * S, "REQUEST", "none", {
  server: "10.0.0.254",
  reason: "chose the DHCP server 10.0.0.254",
});
const PROXY_OFFER = dhcp(0, "DISCOVER", "proxy OFFER", { client: "UEFI x64", bootFile: "ipxe.efi" });

const CASES: Case[] = [
  {
    name: "a boot that went through says nothing",
    timeline: [
      ...OFFERED,
      dhcp(1 * S, "REQUEST", "ACK", { ip: "10.0.0.100" }),
      xfer(2 * S, "pxelinux.0", "ok"),
      xfer(3 * S, "ldlinux.c32", "ok"),
      refused(4 * S, "pxelinux.cfg/01-52-54-00-00-00-01", true),
      xfer(5 * S, "pxelinux.cfg/default", "ok"),
      xfer(6 * S, "vmlinuz", "ok"),
      xfer(9 * S, "initrd.img", "ok"),
    ],
    after: 600,
    expect: [],
  },
  {
    name: "another DHCP server answered first: the REQUEST named its server id",
    timeline: [...OFFERED, CHOSE_OTHER],
    expect: ["other-dhcp-server"],
    says: /Another DHCP server \(10\.0\.0\.254\) answered first.*--dhcp-proxy/,
    stage: "dhcp",
  },
  {
    name: "another server's offer first, then pypxe's ACK (the client retried): no hint",
    timeline: [...OFFERED, CHOSE_OTHER, dhcp(9 * S, "REQUEST", "ACK", { ip: "10.0.0.100" })],
    expect: [],
  },
  {
    name: "the client asked for a file that is missing",
    timeline: [...OFFERED, dhcp(1 * S, "REQUEST", "ACK"), refused(2 * S, "ipxe-x64.efi")],
    expect: ["missing-file"],
    says: /"ipxe-x64\.efi", which is not in the netboot tree/,
    stage: "nbp",
  },
  {
    name: "a missing kernel fails the kernel stage",
    timeline: [...OFFERED, xfer(1 * S, "pxelinux.0", "ok"), refused(2 * S, "images/vmlinuz-6.1")],
    expect: ["missing-file"],
    stage: "kernel",
  },
  {
    name: "a file outside the tree is refused, not missing",
    timeline: [...OFFERED, refused(2 * S, "../etc/shadow", false, "forbidden")],
    expect: ["missing-file"],
    says: /will not serve/,
  },
  {
    name: "routine misses (PXELINUX config probes) are no problem",
    timeline: [...OFFERED, xfer(1 * S, "ldlinux.c32", "ok"), refused(2 * S, "pxelinux.cfg/C0A80264", true)],
    after: 5,
    expect: [],
  },
  {
    name: "a miss the client got past (an iPXE script's fallback) is no problem",
    timeline: [...OFFERED, refused(2 * S, "52-54-00-00-00-01.ipxe"), xfer(3 * S, "default.ipxe", "ok")],
    expect: [],
  },
  {
    name: "stopped after the boot program: 30 s of silence after the NBP",
    timeline: [...OFFERED, dhcp(1 * S, "REQUEST", "ACK"), xfer(2 * S, "ipxe.efi", "ok")],
    after: 30,
    label: "UEFI x64",
    expect: ["stopped-after-nbp"],
    says:
      /"ipxe\.efi" was sent 30\.0 s ago.*wrong program for this machine \(the client said it is UEFI x64\)/,
    stage: "nbp",
  },
  {
    name: "not yet stopped 29 s after the NBP",
    timeline: [...OFFERED, xfer(2 * S, "ipxe.efi", "ok")],
    after: 29,
    expect: [],
  },
  {
    name: "the NBP ran: iPXE asked for DHCP again, so no stop is reported",
    timeline: [...OFFERED, xfer(2 * S, "undionly.kpxe", "ok"), dhcp(4 * S, "DISCOVER", "OFFER")],
    after: 300,
    expect: [],
  },
  {
    name: "a UEFI client never came back on 4011 after the proxy offer",
    timeline: [PROXY_OFFER],
    after: 30,
    expect: ["uefi-no-4011"],
    says: /never asked on port 4011.*UDP port 4011/,
    stage: "dhcp",
  },
  {
    name: "UEFI proxy offer, 4011 not yet overdue",
    timeline: [PROXY_OFFER],
    after: 10,
    expect: [],
  },
  {
    name: "UEFI proxy offer answered on 4011: fine",
    timeline: [PROXY_OFFER, dhcp(1 * S, "REQUEST", "ACK (4011)", { ip: "10.0.0.50" })],
    after: 60,
    expect: [],
  },
  {
    name: "UEFI proxy offer, then a transfer (the file came anyway): fine",
    timeline: [PROXY_OFFER, xfer(1 * S, "ipxe.efi", "ok"), dhcp(3 * S, "DISCOVER", "proxy OFFER")],
    after: 5,
    expect: [],
  },
  {
    name: "a BIOS client's proxy offer is not about 4011",
    timeline: [{ ...PROXY_OFFER, client: "BIOS" } as TimelineEntry],
    after: 60,
    expect: [],
  },
  {
    name: "a TFTP transfer timed out",
    timeline: [...OFFERED, xfer(1 * S, "vmlinuz", "timeout: no ACK for block 120 after 6 tries")],
    expect: ["transfer-timeout"],
    says: /"vmlinuz" timed out after 20\.0 kB of 50\.0 kB.*--tftp-max-blksize/,
    stage: "kernel",
  },
  {
    name: "an HTTP transfer stalled",
    timeline: [
      ...OFFERED,
      xfer(1 * S, "debian/linux", "client stalled: it stopped reading the response", { service: "http" }),
    ],
    expect: ["transfer-timeout"],
    says: /stopped reading/,
  },
  {
    name: "a timeout retried with success is forgotten",
    timeline: [...OFFERED, xfer(1 * S, "vmlinuz", "timeout: no ACK"), xfer(5 * S, "vmlinuz", "ok")],
    expect: [],
  },
  {
    name: "OVMF's size probe (it ends the transfer with ERROR 8) is no failure",
    timeline: [...OFFERED, xfer(1 * S, "ipxe.efi", "client error 8: tsize"), xfer(2 * S, "ipxe.efi", "ok")],
    after: 3,
    expect: [],
  },
  {
    name: "several problems: the most recent first",
    timeline: [...OFFERED, xfer(1 * S, "initrd.img", "timeout: no ACK"), refused(5 * S, "memtest.bin")],
    expect: ["missing-file", "transfer-timeout"],
  },
];

for (const c of CASES) {
  Deno.test(`status hints: ${c.name}`, () => {
    const lastAt = Math.max(...c.timeline.map((e) => e.last));
    const hints = hintsFor(c.timeline, { now: lastAt + (c.after ?? 0) * S, label: c.label });
    assert.deepEqual(hints.map((h) => h.code), c.expect, JSON.stringify(hints, null, 1));
    if (c.says) assert.match(hints[0].text, c.says);
    if (c.stage) assert.equal(hints[0].stage, c.stage);
    for (const h of hints) assert.ok(h.short.length <= 70, `short hint too long: ${h.short}`);
  });
}

Deno.test("status hints: the quiet time is a parameter", () => {
  const timeline = [...OFFERED, xfer(2 * S, "ipxe.efi", "ok")];
  const now = 2 * S + 100 + 5 * S;
  assert.deepEqual(hintsFor(timeline, { now }).map((h) => h.code), []);
  assert.deepEqual(hintsFor(timeline, { now, quietMs: 5 * S }).map((h) => h.code), ["stopped-after-nbp"]);
});
