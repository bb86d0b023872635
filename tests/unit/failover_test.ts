import { assert, assertEquals } from "./assert.ts";
import { planFailover } from "../../src/ha/failover_plan.ts";
import { memberRecord } from "./member_record.ts";

const member = memberRecord;

Deno.test("planFailover() promotes the replica that received the most, even if it applied less", () => {
  const plan = planFailover(
    [
      member("n1", { role: "primary", executed: "0-1-20" }),
      member("n2", { executed: "0-1-9", retrieved: "0-1-11" }),
      member("n3", { executed: "0-1-10", retrieved: "0-1-10" }),
    ],
    "n1",
    50,
  );
  assertEquals(plan.kind === "promote" && plan.candidate.node, "n2");
  assertEquals(
    plan.kind === "promote" && plan.reason,
    "n2 has every transaction the others have: n2 has 0-1-11; n3 has 0-1-10",
  );
});

Deno.test("planFailover() does not promote a lagging replica over a caught-up one, whatever its priority", () => {
  const plan = planFailover(
    [member("n2", { executed: "0-1-6", priority: 100 }), member("n3", { executed: "0-1-11" })],
    "n1",
    50,
  );
  assertEquals(plan.kind === "promote" && plan.candidate.node, "n3");
});

Deno.test("planFailover() breaks a tie by priority, then by name", () => {
  const same = { executed: "0-1-11" };
  const byPriority = planFailover([member("n2", same), member("n3", { ...same, priority: 5 })], "n1", 50);
  assertEquals(byPriority.kind === "promote" && byPriority.candidate.node, "n3");
  const byName = planFailover([member("n3", same), member("n2", same)], "n1", 50);
  assertEquals(byName.kind === "promote" && byName.candidate.node, "n2");
});

Deno.test("planFailover() never promotes a priority-0 node, and refuses if only it has everything", () => {
  const skip = planFailover(
    [member("n2", { executed: "0-1-5" }), member("n3", { executed: "0-1-5", priority: 0 })],
    "n1",
    50,
  );
  assertEquals(skip.kind === "promote" && skip.candidate.node, "n2");
  const only = planFailover(
    [member("n2", { executed: "0-1-4" }), member("n3", { executed: "0-1-5", priority: 0 })],
    "n1",
    50,
  );
  assertEquals(only, {
    kind: "impossible",
    reason: "only n3 (FAILOVER_PRIORITY=0) has every transaction: n2 has 0-1-4; n3 has 0-1-5",
  });
});

Deno.test("planFailover() refuses when no node has every transaction (diverged histories)", () => {
  const plan = planFailover(
    [member("n2", { executed: "0-1-5,0-2-7" }), member("n3", { executed: "0-1-6" })],
    "n1",
    50,
  );
  assertEquals(plan.kind, "impossible");
});

Deno.test("planFailover() waits for members that have not reported since the primary was lost", () => {
  const plan = planFailover([member("n2", { updatedAt: 200 }), member("n3", { updatedAt: 100 })], "n1", 150);
  assertEquals(plan, { kind: "wait", reason: "waiting for n3 to report its GTIDs" });
});

Deno.test("planFailover() ignores the failed primary's own transactions (lost without semi-sync)", () => {
  const plan = planFailover(
    [member("n1", { executed: "0-1-99", updatedAt: 0 }), member("n2", { executed: "0-1-50" })],
    "n1",
    50,
  );
  assertEquals(plan.kind === "promote" && plan.candidate.node, "n2");
});

Deno.test("planFailover() works on MySQL GTID sets, counting received transactions", () => {
  const u = "3e11fa47-71ca-11e1-9e33-c80aa9429562";
  const plan = planFailover(
    [
      member("n2", { flavour: "mysql", executed: `${u}:1-10`, retrieved: `${u}:1-12` }),
      member("n3", { flavour: "mysql", executed: `${u}:1-11`, retrieved: `${u}:1-11` }),
    ],
    "n1",
    50,
  );
  assertEquals(plan.kind === "promote" && plan.candidate.node, "n2");
});

Deno.test("planFailover() has nothing to promote when no other node is alive", () => {
  assertEquals(planFailover([member("n1", { role: "primary" })], "n1", 50), {
    kind: "impossible",
    reason: "no other live node to promote",
  });
});

Deno.test("planFailover() never promotes a node that lacks what a recently departed replica had", () => {
  const lagging = member("n3", { executed: "0-1-5", updatedAt: 1000 });
  const gone = member("n2", { executed: "0-1-9", updatedAt: 900 });
  const plan = planFailover([lagging], "n1", 950, [gone]);
  assertEquals(plan.kind, "impossible");
  assert(
    plan.reason.startsWith("n2 (gone since 1970-01-01T00:00:00.900Z) had 0-1-9, which no live node has"),
    plan.reason,
  );
  assert(plan.reason.includes("delete its member record"), plan.reason);
});

Deno.test("planFailover() ignores departed records it has, old ones, and the failed primary's own tail", () => {
  const live = member("n3", { executed: "0-1-9", updatedAt: 1_000_000 });
  // n2 had less than n3: no obstacle.
  assertEquals(planFailover([live], "n1", 999_000, [member("n2", { executed: "0-1-7" })]).kind, "promote");
  // The failed primary's unreplicated transactions are the accepted loss of asynchronous replication.
  const primaryTail = member("n1", { executed: "0-1-12", role: "primary", updatedAt: 998_000 });
  assertEquals(planFailover([live], "n1", 999_000, [primaryTail]).kind, "promote");
  // An earlier primary's record (role primary) and records from long before the loss do not count either.
  const oldPrimary = member("n0", { executed: "0-0-3", role: "primary", updatedAt: 998_000 });
  const ancient = member("n4", { executed: "0-1-20", updatedAt: 999_000 - 11 * 60_000 });
  assertEquals(planFailover([live], "n1", 999_000, [oldPrimary, ancient]).kind, "promote");
});

Deno.test("planFailover() with lastPrimaryCounts: a fresh last primary counts and is preferred; a stale one is left out", () => {
  const members = [
    member("n1", { role: "primary", executed: "0-1-9", updatedAt: 100 }),
    member("n2", { executed: "0-1-9", updatedAt: 100, priority: 5 }),
    member("n3", { executed: "0-1-8", updatedAt: 100 }),
  ];
  const plan = planFailover(members, "n1", 50, [], true);
  assertEquals(plan.kind === "promote" && plan.candidate.node, "n1", "preferred over a higher priority");
  assert(plan.kind === "promote" && plan.reason.startsWith("n1, the last primary, is alive"), plan.reason);
  // It has transactions no replica has: only it has everything.
  const ahead = [{ ...members[0], executed: "0-1-12" }, members[1], members[2]];
  const planAhead = planFailover(ahead, "n1", 50, [], true);
  assertEquals(planAhead.kind === "promote" && planAhead.candidate.node, "n1");
  assertEquals(planFailover(ahead, "n1", 50).kind === "promote" && planFailover(ahead, "n1", 50), {
    kind: "promote",
    candidate: members[1],
    reason: "n2 has every transaction the others have: n2 has 0-1-9; n3 has 0-1-8",
  }, "without it: left out, as before");
  const stale = [{ ...members[0], updatedAt: 10 }, members[1], members[2]];
  const planStale = planFailover(stale, "n1", 50, [], true);
  assertEquals(
    planStale.kind === "promote" && planStale.candidate.node,
    "n2",
    "not fresh: left out, no wait",
  );
  const never = [{ ...members[0], priority: 0 }, members[1], members[2]];
  const planNever = planFailover(never, "n1", 50, [], true);
  assertEquals(planNever.kind === "promote" && planNever.candidate.node, "n2", "priority 0 still never");
});

Deno.test("planFailover() never promotes a node that lacks what a primary stopped cleanly recorded; a live one counts itself", () => {
  const live = [member("n2", { executed: "0-1-50" }), member("n3", { executed: "0-1-50" })];
  const refused = planFailover(live, "n1", 50, [], false, "0-1-60");
  assertEquals(refused.kind, "impossible");
  assert(
    refused.kind === "impossible" &&
      refused.reason.startsWith("n1 stopped cleanly with 0-1-60, which no live node has (n2 has 0-1-50; ") &&
      refused.reason.includes("Start n1 again"),
    refused.kind === "impossible" ? refused.reason : "",
  );
  const had = planFailover(live, "n1", 50, [], false, "0-1-50");
  assertEquals(had.kind === "promote" && had.candidate.node, "n2", "every node has what n1 had");
  const nothing = planFailover(live, "n1", 50, [], false, "");
  assertEquals(nothing.kind === "promote" && nothing.candidate.node, "n2", "n1 had nothing");
  // n1 is back (a fresh record): it counts like any member, and is preferred.
  const back = planFailover([...live, member("n1", { executed: "0-1-60" })], "n1", 50, [], true, "0-1-60");
  assertEquals(back.kind === "promote" && back.candidate.node, "n1");
});
