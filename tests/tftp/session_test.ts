import assert from "node:assert/strict";
import { decodePacket, type RequestPacket } from "../../src/tftp/packet.ts";
import {
  negotiateOptions,
  type NegotiationLimits,
  type SessionStep,
  TftpSession,
} from "../../src/tftp/session.ts";
import { readFixture } from "./helpers.ts";

const LIMITS: NegotiationLimits = { maxBlksize: 65464, maxWindowsize: 64 };

function session(size: number, options: [string, string][], limits = LIMITS, maxRetries = 6): TftpSession {
  return new TftpSession({ size, negotiated: negotiateOptions(options, size, limits), maxRetries });
}

function blocks(step: SessionStep): number[] {
  const out: number[] = [];
  for (let b = step.from; b > 0 && b <= step.to; b++) out.push(b);
  return out;
}

Deno.test("negotiate: OVMF's size probe gets blksize, tsize and windowsize; names are case-insensitive", () => {
  const rrq = decodePacket(readFixture("ovmf-rrq-tsize.bin")) as RequestPacket;
  const n = negotiateOptions(rrq.options, 850528, LIMITS);
  assert.deepEqual(n.oack, [["tsize", "850528"], ["blksize", "1468"], ["windowsize", "4"]]);
  const upper = negotiateOptions([["BlkSize", "1468"], ["TSIZE", "0"]], 10, LIMITS);
  assert.deepEqual(upper.oack, [["blksize", "1468"], ["tsize", "10"]]);
});

Deno.test("negotiate: blksize clamps, invalid values and unknown options are ignored, no empty OACK", () => {
  assert.equal(negotiateOptions([["blksize", "70000"]], 1, LIMITS).blksize, 65464);
  assert.equal(negotiateOptions([["blksize", "9000"]], 1, { ...LIMITS, maxBlksize: 1468 }).blksize, 1468);
  for (const bad of ["0", "7", "abc", "", "-5", "1e3"]) {
    const n = negotiateOptions([["blksize", bad]], 1, LIMITS);
    assert.equal(n.blksize, 512, bad);
    assert.equal(n.oack, null, bad);
    assert.equal(n.ignored.length, 1);
  }
  assert.equal(negotiateOptions([["multicast", ""], ["foo", "1"]], 1, LIMITS).oack, null);
  assert.equal(negotiateOptions([["timeout", "0"]], 1, LIMITS).oack, null);
  assert.equal(negotiateOptions([["timeout", "256"]], 1, LIMITS).oack, null);
  const t = negotiateOptions([["timeout", "3"]], 1, LIMITS);
  assert.equal(t.timeoutMs, 3000);
  assert.deepEqual(t.oack, [["timeout", "3"]]);
  assert.equal(negotiateOptions([["tsize", "x"]], 1, LIMITS).oack, null);
});

Deno.test("negotiate: windowsize is capped by the max and by 64 KiB of payload per window", () => {
  assert.equal(negotiateOptions([["windowsize", "4"], ["blksize", "1468"]], 1, LIMITS).windowsize, 4);
  assert.equal(negotiateOptions([["windowsize", "100"]], 1, LIMITS).windowsize, 64);
  assert.equal(negotiateOptions([["windowsize", "16"]], 1, { ...LIMITS, maxWindowsize: 8 }).windowsize, 8);
  // 16 x 8192 stalled atftp: the window is cut to 8 x 8192 = 64 KiB
  const w = negotiateOptions([["windowsize", "16"], ["blksize", "8192"]], 1, LIMITS);
  assert.equal(w.windowsize, 8);
  assert.deepEqual(w.oack, [["windowsize", "8"], ["blksize", "8192"]]);
  assert.equal(negotiateOptions([["blksize", "65464"], ["windowsize", "4"]], 1, LIMITS).windowsize, 1);
  assert.equal(negotiateOptions([["windowsize", "0"]], 1, LIMITS).oack, null);
});

Deno.test("session: no options means DATA 1 first; lock-step to the final ACK, with a short last block", () => {
  const s = session(1024, []);
  const first = s.handle({ type: "start" }, 0);
  assert.equal(first.oack, false);
  assert.deepEqual(blocks(first), [1]);
  assert.equal(s.lastBlock, 3); // 512 + 512 + empty block
  assert.deepEqual(blocks(s.handle({ type: "ack", block: 1 }, 1)), [2]);
  assert.deepEqual(blocks(s.handle({ type: "ack", block: 2 }, 2)), [3]);
  assert.equal(s.lengthOf(3), 0);
  const end = s.handle({ type: "ack", block: 3 }, 3);
  assert.equal(end.done, "ok");
  assert.equal(end.timerAt, null);
  assert.equal(s.bytesAcked, 1024);
});

Deno.test("session: the final block's ACK is awaited and its DATA retransmitted", () => {
  const s = session(100, []);
  s.handle({ type: "start" }, 0);
  assert.equal(s.finished, false);
  const again = s.handle({ type: "timeout" }, 1000);
  assert.deepEqual(blocks(again), [1]);
  assert.equal(again.retransmit, true);
  assert.equal(s.handle({ type: "ack", block: 1 }, 1001).done, "ok");
});

Deno.test("session: OACK is retransmitted on timeout, DATA starts on ACK 0 only", () => {
  const s = session(3000, [["blksize", "1468"], ["tsize", "0"]]);
  const start = s.handle({ type: "start" }, 0);
  assert.equal(start.oack, true);
  assert.equal(start.timerAt, 1000);
  assert.equal(s.handle({ type: "timeout" }, 500).oack, false); // early wake-up: nothing
  const re = s.handle({ type: "timeout" }, 1000);
  assert.equal(re.oack, true);
  assert.equal(re.retransmit, true);
  assert.equal(re.timerAt, 3000); // timeout doubled
  assert.equal(s.handle({ type: "ack", block: 1 }, 1100).from, 0); // not ACK 0: ignored
  assert.deepEqual(blocks(s.handle({ type: "ack", block: 0 }, 1200)), [1]);
});

Deno.test("session: OVMF's ERROR 8 after the OACK ends the transfer quietly", () => {
  const rrq = decodePacket(readFixture("ovmf-rrq-tsize.bin")) as RequestPacket;
  const abort = decodePacket(readFixture("ovmf-error-abort.bin"));
  assert.equal(abort.op, "error");
  const s = new TftpSession({ size: 850528, negotiated: negotiateOptions(rrq.options, 850528, LIMITS) });
  assert.equal(s.handle({ type: "start" }, 0).oack, true);
  const end = s.handle({ type: "error", code: abort.code, message: abort.message }, 10);
  assert.equal(end.done, "client error 8: User aborted the transfer");
  assert.equal(end.oack, false);
  assert.equal(end.from, 0);
  assert.equal(s.handle({ type: "timeout" }, 5000).from, 0); // nothing after the end
});

Deno.test("session: retries are bounded, the timeout grows, progress resets it", () => {
  const s = session(10_000, [], LIMITS, 3);
  s.handle({ type: "start" }, 0);
  const t1 = s.handle({ type: "timeout" }, 1000);
  assert.equal(t1.timerAt, 3000);
  const t2 = s.handle({ type: "timeout" }, 3000);
  assert.equal(t2.timerAt, 7000);
  assert.equal(s.handle({ type: "ack", block: 1 }, 3500).timerAt, 4500); // back to 1 s
  s.handle({ type: "timeout" }, 4500);
  s.handle({ type: "timeout" }, 6500);
  s.handle({ type: "timeout" }, 10500);
  const end = s.handle({ type: "timeout" }, 18500);
  assert.match(end.done ?? "", /^timeout: no ACK for block 2/);
  assert.equal(s.finished, true);
});

Deno.test("session: duplicate and old ACKs are ignored (no Sorcerer's Apprentice)", () => {
  const s = session(5000, []);
  s.handle({ type: "start" }, 0);
  s.handle({ type: "ack", block: 1 }, 1);
  const dup = s.handle({ type: "ack", block: 1 }, 2);
  assert.equal(dup.from, 0);
  assert.equal(s.handle({ type: "ack", block: 7 }, 3).from, 0); // ahead of what was sent
  assert.deepEqual(blocks(s.handle({ type: "ack", block: 2 }, 4)), [3]);
});

Deno.test("session: block numbers roll over to 0 after 65535 through 65536+ blocks", () => {
  const blksize = 512;
  const size = 65537 * blksize + 100; // 65538 blocks
  const s = session(size, [["blksize", String(blksize)]]);
  s.handle({ type: "start" }, 0);
  let step = s.handle({ type: "ack", block: 0 }, 0);
  let wireSeen = 0;
  for (let i = 0; i < 70_000 && step.done === null; i++) {
    assert.equal(step.from, step.to);
    const wire = TftpSession.wireBlock(step.from);
    assert.equal(s.offsetOf(step.from), (step.from - 1) * blksize);
    if (step.from === 65536) assert.equal(wire, 0);
    if (step.from === 65537) assert.equal(wire, 1);
    wireSeen++;
    step = s.handle({ type: "ack", block: wire }, i);
  }
  assert.equal(step.done, "ok");
  assert.equal(wireSeen, 65538);
  assert.equal(s.lengthOf(65538), 100);
});

Deno.test("session: windowsize follows the RFC 7440 example, restarting after a partial ACK", () => {
  // RFC 7440 section 4: windowsize 4; DATA 7 is lost, the client ACKs 6, the sender resumes at 7
  const s = session(512 * 11 + 10, [["windowsize", "4"]]);
  assert.equal(s.handle({ type: "start" }, 0).oack, true);
  assert.deepEqual(blocks(s.handle({ type: "ack", block: 0 }, 1)), [1, 2, 3, 4]);
  assert.deepEqual(blocks(s.handle({ type: "ack", block: 4 }, 2)), [5, 6, 7, 8]);
  const partial = s.handle({ type: "ack", block: 6 }, 3);
  assert.deepEqual(blocks(partial), [7, 8, 9, 10]);
  assert.equal(partial.retransmit, true);
  assert.equal(s.handle({ type: "ack", block: 6 }, 4).from, 0); // late duplicate: ignored
  assert.deepEqual(blocks(s.handle({ type: "ack", block: 10 }, 5)), [11, 12]);
  assert.equal(s.handle({ type: "ack", block: 12 }, 6).done, "ok");
});

Deno.test("session: a window timeout resends from the first unacknowledged block", () => {
  const s = session(512 * 20, [["windowsize", "8"]]);
  s.handle({ type: "start" }, 0);
  s.handle({ type: "ack", block: 0 }, 0);
  const re = s.handle({ type: "timeout" }, 1000);
  assert.deepEqual(blocks(re), [1, 2, 3, 4, 5, 6, 7, 8]);
  assert.equal(s.retransmits, 8);
});

Deno.test("session: windows across the rollover map ACKs correctly", () => {
  const s = session(512 * 65540, [["windowsize", "16"]]);
  s.handle({ type: "start" }, 0);
  let step = s.handle({ type: "ack", block: 0 }, 0);
  for (let i = 0; i < 10_000 && step.done === null; i++) {
    step = s.handle({ type: "ack", block: TftpSession.wireBlock(step.to) }, i);
  }
  assert.equal(step.done, "ok");
  assert.equal(s.acked, 65541);
});

Deno.test("session: tsize reports the real size and a zero-byte file is one empty block", () => {
  const n = negotiateOptions([["tsize", "0"]], 0, LIMITS);
  assert.deepEqual(n.oack, [["tsize", "0"]]);
  const s = new TftpSession({ size: 0, negotiated: n });
  s.handle({ type: "start" }, 0);
  const first = s.handle({ type: "ack", block: 0 }, 0);
  assert.deepEqual(blocks(first), [1]);
  assert.equal(s.lengthOf(1), 0);
  assert.equal(s.handle({ type: "ack", block: 1 }, 0).done, "ok");
});

Deno.test("session: the timeout adapts to fast ACKs (RFC 6298, floor 50 ms) and a lost block costs little", () => {
  const s = session(100 * 512, []);
  s.handle({ type: "start" }, 0);
  assert.equal(s.deadline, 1000, "no sample yet: the base timeout");
  let now = 0;
  for (let block = 1; block <= 20; block++) {
    now += 1; // a LAN round trip of 1 ms
    s.ack(block, now);
  }
  assert.equal(s.timeoutMs, 50, "the estimate settles at the floor");
  assert.equal(s.deadline, now + 50);
  // block 21 is lost: resent after 50 ms, then 100 ms (backed off), and these short tries are free
  const r1 = s.handle({ type: "timeout" }, now + 50);
  assert.deepEqual([r1.from, r1.to, r1.retransmit, r1.timerAt], [21, 21, true, now + 150]);
  // Karn's rule: the ACK of a retransmitted block gives no sample, the estimate stays
  s.ack(21, now + 60);
  assert.equal(s.timeoutMs, 50);
});

Deno.test("session: a client's timeout option is used as is, never adapted", () => {
  const s = session(100 * 512, [["timeout", "3"]]);
  s.handle({ type: "start" }, 0);
  s.ack(0, 1);
  for (let block = 1; block <= 10; block++) s.ack(block, 1 + block);
  assert.equal(s.timeoutMs, 3000);
  assert.equal(s.deadline, 11 + 3000);
});

Deno.test("session: short adaptive retries are free; only full-length ones count towards giving up", () => {
  const s = session(100 * 512, [], LIMITS, 2);
  s.handle({ type: "start" }, 0);
  let now = 0;
  for (let block = 1; block <= 10; block++) s.ack(block, ++now);
  // 50, 100, 200, 400, 800 ms are free; 1600 and 3200 count (2 retries); the next timeout ends it
  const waits = [50, 100, 200, 400, 800, 1600, 3200];
  for (const wait of waits) {
    now += wait;
    assert.equal(s.handle({ type: "timeout" }, now).done, null, `still running after ${wait} ms`);
  }
  now += 6400;
  assert.match(s.handle({ type: "timeout" }, now).done ?? "", /^timeout: no ACK for block 11 after 3 tries/);
});
