import { assert, assertEquals, assertRejects } from "./assert.ts";
import { deadline, DeadlineError, delay, raceAbort } from "../../src/abort.ts";

Deno.test("deadline() aborts with a DeadlineError naming its length", async () => {
  const signal = deadline(20);
  assertEquals(signal.aborted, false);
  await new Promise((r) => setTimeout(r, 40));
  assert(signal.aborted);
  assert(signal.reason instanceof DeadlineError);
  assertEquals((signal.reason as DeadlineError).message, "did not finish within its deadline of 0.02 s");
});

Deno.test("delay() waits, and rejects with the signal's reason as soon as it aborts", async () => {
  const started = performance.now();
  await delay(20);
  assert(performance.now() - started >= 19);
  const controller = new AbortController();
  const waiting = delay(10_000, { signal: controller.signal });
  controller.abort(new DeadlineError(5));
  await assertRejects(() => waiting, DeadlineError);
  await assertRejects(() => delay(10, { signal: controller.signal }), DeadlineError);
});

Deno.test("raceAbort() settles with the work, or with the deadline when the work outlives it", async () => {
  assertEquals(await raceAbort(Promise.resolve(7), deadline(1000)), 7);
  await assertRejects(() => raceAbort(Promise.reject(new Error("boom")), deadline(1000)), Error, "boom");
  let finished = false;
  const slow = new Promise<void>((r) => setTimeout(() => r(void (finished = true)), 200));
  await assertRejects(() => raceAbort(slow, deadline(10)), DeadlineError);
  assertEquals(finished, false, "the race ends at the deadline, not when the work does");
  await slow;
});
