/** The heartbeat as observers see it (src/ha/heartbeat.ts) and the boot clock's parse (src/boot_clock.ts). */
import { assert, assertEquals } from "./assert.ts";
import { bootClock, parseUptime } from "../../src/boot_clock.ts";
import { heartbeatStale, type LockObservation, observeLock, staleAfterMs } from "../../src/ha/heartbeat.ts";

const boot = "b-1";
const at = (ms: number) => ({ boot, ms });
const held = (index: number, session = "s1") => ({ session, modifyIndex: index });

Deno.test("parseUptime() reads /proc/uptime's first field as ms; anything else is no clock", () => {
  assertEquals(parseUptime("12345.67 54321.00\n"), 12_345_670);
  assertEquals(parseUptime("0.01 0.00"), 10);
  assertEquals(parseUptime(""), undefined);
  assertEquals(parseUptime("up 3 days"), undefined);
});

const mayReadProc =
  (await Deno.permissions.query({ name: "read", path: "/proc/uptime" })).state === "granted";

Deno.test({
  name: "bootClock() on Linux: a boot id and a clock that does not go back",
  ignore: Deno.build.os !== "linux" || !mayReadProc,
}, async () => {
  const a = await bootClock();
  await new Promise((r) => setTimeout(r, 30));
  const b = await bootClock();
  assert(a !== undefined && b !== undefined, "Linux has /proc/uptime");
  assertEquals(a.boot, b.boot);
  assert(a.boot.length > 0 && b.ms >= a.ms, `${a.ms} then ${b.ms}`);
});

Deno.test("observeLock() keeps the first sight of an index and starts again when it or the holder moves", () => {
  assertEquals(observeLock(undefined, {}, at(5)), undefined, "nobody holds the lock");
  assertEquals(observeLock(undefined, { session: "s1" }, at(5)), undefined, "no index");
  const first = observeLock(undefined, held(7), at(1_000))!;
  assertEquals(first, { session: "s1", index: 7, boot, seenAt: 1_000 });
  assert(observeLock(first, held(7), at(9_000)) === first, "the same index: the first sight is kept");
  assertEquals(observeLock(first, held(8), at(9_000))?.seenAt, 9_000, "the heartbeat moved");
  assertEquals(observeLock(first, held(7, "s2"), at(9_000))?.seenAt, 9_000, "another holder");
  assertEquals(observeLock(first, held(7), { boot: "b-2", ms: 50 })?.seenAt, 50, "another boot");
  assertEquals(observeLock(first, held(7), at(500))?.seenAt, 500, "a clock that went back");
});

Deno.test("heartbeatStale() once the index has stood still longer than the lease and 2 s, on this node's clock", () => {
  const leaseMs = 10_000;
  assertEquals(staleAfterMs(leaseMs), 12_000);
  const seen: LockObservation = { session: "s1", index: 7, boot, seenAt: 1_000 };
  assertEquals(heartbeatStale(seen, held(7), at(13_000), leaseMs), undefined, "exactly at the threshold");
  assertEquals(heartbeatStale(seen, held(7), at(13_001), leaseMs), 12_001);
  assertEquals(heartbeatStale(seen, held(8), at(60_000), leaseMs), undefined, "it moved");
  assertEquals(heartbeatStale(seen, held(7, "s2"), at(60_000), leaseMs), undefined, "another holder");
  assertEquals(heartbeatStale(seen, {}, at(60_000), leaseMs), undefined, "nobody holds it");
  assertEquals(heartbeatStale(seen, held(7), { boot: "b-2", ms: 60_000 }, leaseMs), undefined, "rebooted");
  assertEquals(heartbeatStale(undefined, held(7), at(60_000), leaseMs), undefined, "never seen");
});
