import { assertEquals, assertThrows } from "./assert.ts";
import {
  describePreStartFailure,
  failureRecord,
  RETRY_FIRST_SECONDS,
  RETRY_MAX_SECONDS,
  retryDelaySeconds,
} from "../../src/pre_start_retry.ts";

Deno.test("retryDelaySeconds(): 2 s after the first failure, doubling, at most 60 s for ever", () => {
  const waits = Array.from({ length: 9 }, (_, i) => retryDelaySeconds(i + 1));
  assertEquals(waits, [2, 4, 8, 16, 32, 60, 60, 60, 60]);
  assertEquals([RETRY_FIRST_SECONDS, RETRY_MAX_SECONDS], [2, 60]);
  // a pre-start that fails for days stays at the cap instead of overflowing
  assertEquals(retryDelaySeconds(10_000), 60);
  assertThrows(() => retryDelaySeconds(0), RangeError);
  assertThrows(() => retryDelaySeconds(1.5), RangeError);
});

const T0 = Date.parse("2026-11-25T12:00:00Z");

Deno.test("failureRecord(): keeps when the failures began, and when the next attempt starts", () => {
  assertEquals(failureRecord("n2", T0, 1, "Snapshot 'x' is corrupt", T0), {
    node: "n2",
    since: "2026-11-25T12:00:00.000Z",
    attempt: 1,
    reason: "Snapshot 'x' is corrupt",
    nextAttemptAt: "2026-11-25T12:00:02.000Z",
  });
  // the fourth failure, 30 s after the first: the next attempt comes 16 s later, `since` stays
  assertEquals(failureRecord("n2", T0, 4, "again", T0 + 30_000), {
    node: "n2",
    since: "2026-11-25T12:00:00.000Z",
    attempt: 4,
    reason: "again",
    nextAttemptAt: "2026-11-25T12:00:46.000Z",
  });
});

Deno.test("describePreStartFailure(): the node, how long it has failed, why, and when it tries again", () => {
  const record = failureRecord("n2", T0, 4, "Snapshot 'x' is corrupt: bad", T0 + 30_000);
  assertEquals(
    describePreStartFailure(record, T0 + 36_000),
    "n2: pre-start cannot finish (4 attempts failed since 2026-11-25T12:00:00Z): Snapshot 'x' is corrupt: bad; " +
      "next attempt in 10 s",
  );
  assertEquals(
    describePreStartFailure(failureRecord("n2", T0, 1, "Cannot reach Consul", T0), T0),
    "n2: pre-start cannot finish (attempt 1 failed at 2026-11-25T12:00:00Z): Cannot reach Consul; " +
      "next attempt in 2 s",
  );
  // a record whose next attempt never came: pre-start was killed without clearing it
  assertEquals(
    describePreStartFailure(record, T0 + 120_000),
    "n2: pre-start cannot finish (4 attempts failed since 2026-11-25T12:00:00Z): Snapshot 'x' is corrupt: bad; " +
      "its next attempt was due 74 s ago: is pre-start still running?",
  );
});
