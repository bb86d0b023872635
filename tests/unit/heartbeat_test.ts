/** The heartbeat as observers see it (src/ha/heartbeat.ts) and the boot clock (src/boot_clock.ts). */
import { assert, assertEquals } from "./assert.ts";
import { bootClock, bootTimeOf } from "../../src/boot_clock.ts";
import { heartbeatStale, type LockObservation, observeLock, staleAfterMs } from "../../src/ha/heartbeat.ts";

/** A reading of a clock with whole seconds (as the real one), or exact (`resolutionMs` 0). */
const at = (ms: number, resolutionMs = 1000) => ({ ms, resolutionMs });
const held = (index: number, session = "s1") => ({ session, modifyIndex: index });

Deno.test("bootTimeOf() reads an uptime in seconds as ms, one second coarse; anything else is no clock", () => {
  assertEquals(bootTimeOf(22_952), { ms: 22_952_000, resolutionMs: 1000 });
  assertEquals(bootTimeOf(0.5), { ms: 500, resolutionMs: 1000 });
  assertEquals(bootTimeOf(NaN), undefined);
  assertEquals(bootTimeOf(-1), undefined);
});

const mayReadUptime = (await Deno.permissions.query({ name: "sys", kind: "osUptime" })).state === "granted";

Deno.test({ name: "bootClock() reads the system's uptime", ignore: !mayReadUptime }, () => {
  const a = bootClock();
  assert(a !== undefined && a.ms > 0, JSON.stringify(a));
  assert(bootClock()!.ms >= a.ms);
});

Deno.test("observeLock() keeps the first sight of an index and starts again when it or the holder moves", () => {
  assertEquals(observeLock(undefined, {}, at(5)), undefined, "nobody holds the lock");
  assertEquals(observeLock(undefined, { session: "s1" }, at(5)), undefined, "no index");
  const first = observeLock(undefined, held(7), at(1_000))!;
  assertEquals(first, { session: "s1", index: 7, seenAt: 1_000 });
  assert(observeLock(first, held(7), at(9_000)) === first, "the same index: the first sight is kept");
  assertEquals(observeLock(first, held(8), at(9_000))?.seenAt, 9_000, "the heartbeat moved");
  assertEquals(observeLock(first, held(7, "s2"), at(9_000))?.seenAt, 9_000, "another holder");
  assertEquals(observeLock(first, held(7), at(500))?.seenAt, 500, "a clock that went back: a reboot");
});

Deno.test("heartbeatStale() once the index has stood still longer than the lease and 2 s, as this node's clock proves", () => {
  const leaseMs = 10_000;
  assertEquals(staleAfterMs(leaseMs), 12_000);
  const seen: LockObservation = { session: "s1", index: 7, seenAt: 1_000 };
  assertEquals(heartbeatStale(seen, held(7), at(13_000, 0), leaseMs), undefined, "exactly at the threshold");
  assertEquals(heartbeatStale(seen, held(7), at(13_001, 0), leaseMs), 12_001);
  assertEquals(
    heartbeatStale(seen, held(7), at(13_500), leaseMs),
    undefined,
    "within the clock's resolution",
  );
  assertEquals(heartbeatStale(seen, held(7), at(14_500), leaseMs), 12_500, "the resolution counted out");
  assertEquals(heartbeatStale(seen, held(8), at(60_000), leaseMs), undefined, "it moved");
  assertEquals(heartbeatStale(seen, held(7, "s2"), at(60_000), leaseMs), undefined, "another holder");
  assertEquals(heartbeatStale(seen, {}, at(60_000), leaseMs), undefined, "nobody holds it");
  assertEquals(heartbeatStale(seen, held(7), at(500), leaseMs), undefined, "the clock went back");
  assertEquals(heartbeatStale(undefined, held(7), at(60_000), leaseMs), undefined, "never seen");
});
