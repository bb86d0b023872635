import { assertEquals, assertThrows } from "./assert.ts";
import { coreShare, median, medianCost, p95, parseTimeOutput, verdict } from "../../bench/costs.ts";

Deno.test("parseTimeOutput() reads GNU time's last line, after its note on a failed command", () => {
  assertEquals(parseTimeOutput("0.08 0.02 51200\n"), { cpuMs: 100, peakKiB: 51200 });
  assertEquals(parseTimeOutput("Command exited with non-zero status 1\n0.11 0.03 60000\n"), {
    cpuMs: 140,
    peakKiB: 60000,
  });
  assertThrows(() => parseTimeOutput("real 0.1\n"), Error, "GNU time wrote 'real 0.1'");
});

Deno.test("median() and p95() do not reorder their input and refuse no values", () => {
  const xs = [30, 10, 20, 40];
  assertEquals(median(xs), 30);
  assertEquals(median([5]), 5);
  assertEquals(xs, [30, 10, 20, 40]);
  assertEquals(p95(Array.from({ length: 20 }, (_, i) => i + 1)), 19);
  assertEquals(p95([7, 3]), 7);
  assertThrows(() => median([]), RangeError);
  assertThrows(() => p95([]), RangeError);
});

Deno.test("medianCost() takes each figure's median on its own", () => {
  assertEquals(
    medianCost([
      { wallMs: 100, cpuMs: 90, peakKiB: 3 },
      { wallMs: 300, cpuMs: 10, peakKiB: 1 },
      { wallMs: 200, cpuMs: 50, peakKiB: 2 },
    ]),
    { wallMs: 200, wallP95Ms: 300, cpuMs: 50, peakKiB: 2 },
  );
});

Deno.test("coreShare() adds each check's CPU time over its interval", () => {
  // 100 ms every 5 s is 2 %; 600 ms every 5 min is 0.2 %
  const share = coreShare([
    { name: "health", cpuMs: 100, intervalSeconds: 5 },
    { name: "snapshot", cpuMs: 600, intervalSeconds: 300 },
  ]);
  assertEquals(Math.round(share * 10_000), 220);
  assertEquals(coreShare([]), 0);
});

Deno.test("verdict() is reached at the limit and not past it", () => {
  assertEquals(verdict(120, 120), "reached");
  assertEquals(verdict(120.5, 120), "not reached");
});
