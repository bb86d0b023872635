import { assertEquals } from "./assert.ts";
import { leaseLeftMs, leaseMsFor } from "../../src/mysql/lease.ts";

Deno.test("leaseMsFor(): half the session TTL (the default 20 s gives 10 s, twice the 5 s health interval)", () => {
  assertEquals(leaseMsFor(20), 10_000);
  assertEquals(leaseMsFor(10), 5_000);
  assertEquals(leaseMsFor(86_400), 43_200_000);
});

Deno.test("leaseLeftMs(): counted from when the renewal was sent, never negative", () => {
  assertEquals(leaseLeftMs(10_000, 1000, 1000), 10_000);
  assertEquals(leaseLeftMs(10_000, 1000, 1250.7), 9749, "a pass delayed after the renewal gets less");
  assertEquals(leaseLeftMs(10_000, 1000, 11_000), 0, "nothing left: the renewal is a lease ago");
  assertEquals(leaseLeftMs(10_000, 1000, 60_000), 0);
  assertEquals(
    leaseLeftMs(10_000, 1000, 900),
    10_000,
    "a clock that went backwards gives no more than a lease",
  );
});
