import { assertEquals } from "./assert.ts";
import {
  type Ack,
  gapText,
  longestRefusal,
  lost,
  markdownTable,
  outcomes,
  percentile,
  refusalsOver,
  summarize,
  type TrialFigures,
  twoWritable,
  writeGap,
  writeOutage,
} from "../../bench/failover_figures.ts";

const acks = (...ts: number[]): Ack[] => ts.map((t, i) => ({ id: i + 1, t, node: t < 1000 ? "n1" : "n2" }));

Deno.test("writeGap: to the first write acknowledged after the disruption; none after it: undefined", () => {
  assertEquals(writeGap(acks(100, 200, 4300, 4400), 250), 4050);
  assertEquals(writeGap(acks(100, 200), 250), undefined);
  assertEquals(writeGap([], 0), undefined);
});

Deno.test("longestRefusal: the longest stretch without an ack in the window, its ends included", () => {
  const a = acks(100, 200, 1500, 1600, 5000);
  assertEquals(longestRefusal(a, 150, 5100), 3400); // 1600 -> 5000
  assertEquals(longestRefusal(a, 150, 9000), 4000); // 5000 -> the window's end
  assertEquals(longestRefusal(a, 1550, 1700), 100); // 1600 -> 1700 (acks outside the window ignored)
  assertEquals(longestRefusal([], 0, 800), 800);
});

Deno.test("writeOutage: an ack in flight at the disruption does not hide the outage; never resumed: undefined", () => {
  assertEquals(writeOutage(acks(100, 200, 210, 4300, 4400), 205, 4500), 4090);
  assertEquals(writeOutage(acks(100, 200, 210), 205, 4500), undefined);
  assertEquals(writeOutage([], 0, 4500), undefined);
  assertEquals(writeOutage(acks(100, 150, 200, 250), 90, 260), 50);
});

Deno.test("refusalsOver: counts the stretches without an ack longer than the limit", () => {
  const a = acks(100, 200, 2500, 2600, 5000);
  assertEquals(refusalsOver(a, 0, 5100, 2000), 2); // 200 -> 2500 and 2600 -> 5000
  assertEquals(refusalsOver(a, 0, 8000, 2000), 3); // and 5000 -> the end
  assertEquals(refusalsOver(a, 0, 5100, 3000), 0);
});

Deno.test("twoWritable: two nodes answering writable in one round; unknown never counts", () => {
  const samples = [
    { t: 0, writable: [true, false, false] },
    { t: 100, writable: [true, undefined, undefined] },
    { t: 200, writable: [true, true, false] },
    { t: 300, writable: [false, true, true] },
  ];
  assertEquals(twoWritable(samples).map((s) => s.t), [200, 300]);
  assertEquals(twoWritable(samples, 250).map((s) => s.t), [300]);
  assertEquals(twoWritable(samples, 0, 150), []);
});

Deno.test("lost: acknowledged keys the final primary lacks", () => {
  assertEquals(lost(acks(1, 2, 3, 4), [1, 3]), [2, 4]);
  assertEquals(lost(acks(1, 2), [1, 2, 7]), []);
});

Deno.test("percentile: nearest rank", () => {
  assertEquals(percentile([5, 1, 3, 2, 4], 0.5), 3);
  assertEquals(percentile([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 0.95), 10);
  assertEquals(percentile([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 0.5), 5);
  assertEquals(percentile([7], 0.95), 7);
  assertEquals(percentile([], 0.5), undefined);
});

Deno.test("summarize, gapText, markdownTable: trials that never resumed are a figure, not a crash", () => {
  const t = (gapMs: number | undefined, lostN: number | undefined): TrialFigures => ({
    gapMs,
    longestRefusedMs: gapMs ?? 0,
    twoWritable: 0,
    acked: 10,
    lost: lostN,
    extra: "",
    outcome: "",
  });
  const s = summarize([t(4000, 0), t(undefined, 1), t(6000, undefined)]);
  assertEquals([s.trials, s.never, s.p50, s.worst, s.lost, s.unread, s.acked], [3, 1, 4000, 6000, 1, 1, 30]);
  assertEquals(gapText(s, 120_000), "4.0 s / 6.0 s / 6.0 s; 1 of 3 never within 120.0 s");
  const none = summarize([t(undefined, 0)]);
  assertEquals(gapText(none, 300_000), "never within 300.0 s (1 of 1)");
  assertEquals(
    markdownTable([{ event: "kill", summary: none, boundMs: 300_000, extra: "x" }]).split("\n").at(-1),
    "| kill | never within 300.0 s (1 of 1) | 1 | 0 | 0 of 10 | x |",
  );
});

Deno.test("outcomes: each outcome counted over the trials, timed ones with p50 and worst", () => {
  assertEquals(
    outcomes([
      { outcome: "replica again after the heal", outcomeMs: 3000 },
      { outcome: "kept the role" },
      { outcome: "replica again after the heal", outcomeMs: 9000 },
      { outcome: "replica again after the heal", outcomeMs: 5000 },
    ]),
    "replica again after the heal: 3 of 4 (p50 5.0 s, worst 9.0 s); kept the role: 1 of 4",
  );
  assertEquals(outcomes([{ outcome: "exit 0", outcomeMs: 1500 }]), "exit 0: 1 of 1 (1.5 s)");
  assertEquals(outcomes([]), "");
});
