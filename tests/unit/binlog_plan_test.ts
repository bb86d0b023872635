/**
 * The point-in-time planner (src/binlog/plan.ts) on plain data: segments and snapshots built here.
 *
 * Times are Unix seconds from T0; a segment's marks are `[second, position]` as MarkBuilder writes them.
 */
import { assert, assertEquals, assertThrows } from "./assert.ts";
import {
  followArchive,
  parseTargetGtid,
  parseTargetTime,
  planRecovery,
  positionAt,
  prunableSegments,
  recoverableWindows,
  type RecoveryPlan,
  RecoveryPointError,
  type SnapshotPoint,
} from "../../src/binlog/plan.ts";
import type { Segment } from "../../src/binlog/segment.ts";
import type { Flavour } from "../../src/mysql/flavour.ts";

const T0 = 1_800_000_000;
const iso = (s: number) => new Date((T0 + s) * 1000).toISOString();
const at = (s: number) => new Date((T0 + s) * 1000);

let archived = 0;
function seg(
  key: string,
  startState: string,
  endState: string,
  marks: [number, string][] | undefined,
  o: { flavour?: Flavour; serverId?: number; archivedAt?: number; first?: number; last?: number } = {},
): Segment {
  const secs = marks?.map(([s]) => s) ?? [];
  const first = o.first ?? secs[0];
  const last = o.last ?? secs[secs.length - 1];
  archived += 1;
  return {
    format: 1,
    key: `binlogs/n/${key}.zst`,
    node: "n",
    serverId: o.serverId ?? 1,
    file: key,
    createdAt: iso(first ?? 0),
    flavour: o.flavour ?? "mariadb",
    startState,
    endState,
    transactions: marks?.length ?? 0,
    ...(first !== undefined ? { firstTime: T0 + first } : {}),
    ...(last !== undefined ? { lastTime: T0 + last } : {}),
    ...(marks !== undefined ? { marks: marks.map(([s, p]) => [T0 + s, p] as const) } : {}),
    rawBytes: 100,
    size: 50,
    sha256: "0".repeat(64),
    archivedAt: iso(10_000 + (o.archivedAt ?? archived)),
  };
}

const snap = (name: string, created: number, state: string): SnapshotPoint => ({
  name,
  createdAt: iso(created),
  state,
});

/** The plan's steps as `file after→until`. */
function steps(p: RecoveryPlan): string[] {
  return p.steps.map((s) => `${s.segment.file} ${s.after}→${s.until ?? ""}`);
}

// ---------------------------------------------------------------------------------------------------------
// One history: a segment before the snapshot (A), then B and C.
// ---------------------------------------------------------------------------------------------------------

const A = seg("A", "", "0-1-10", [[900, "0-1-5"], [990, "0-1-10"]], { archivedAt: 1 });
const B = seg("B", "0-1-10", "0-1-20", [[1010, "0-1-12"], [1015, "0-1-16"], [1019, "0-1-20"]], {
  archivedAt: 2,
});
const C = seg("C", "0-1-20", "0-1-30", [[1030, "0-1-25"], [1040, "0-1-30"]], { archivedAt: 3 });
const S = snap("s1", 1000, "0-1-10");
const one = [A, B, C];

Deno.test("one history: restore to the end replays every segment after the snapshot", () => {
  const p = planRecovery("mariadb", [S], one, { kind: "end" });
  assertEquals(p.snapshot.name, "s1");
  assertEquals(steps(p), ["B 0-1-10→", "C 0-1-20→"]);
  assertEquals(p.position, "0-1-30");
  assertEquals(p.lastTime, T0 + 1040);
  assertEquals(p.note, undefined);
});

Deno.test("one history: a time on a second boundary excludes that second; a fractional time includes it", () => {
  let p = planRecovery("mariadb", [S], one, { kind: "time", at: at(1015) });
  assertEquals(steps(p), ["B 0-1-10→0-1-12"]);
  assertEquals(p.position, "0-1-12");
  assertEquals(p.lastTime, T0 + 1010);
  p = planRecovery("mariadb", [S], one, { kind: "time", at: new Date((T0 + 1015) * 1000 + 1) });
  assertEquals(steps(p), ["B 0-1-10→0-1-16"]);
  assertEquals(p.lastTime, T0 + 1015);
  p = planRecovery("mariadb", [S], one, { kind: "time", at: new Date((T0 + 1035.5) * 1000) });
  assertEquals(steps(p), ["B 0-1-10→", "C 0-1-20→0-1-25"]);
  assertEquals(p.position, "0-1-25");
});

Deno.test("one history: a time before every snapshot is refused, naming the oldest", () => {
  const e = assertThrows(
    () => planRecovery("mariadb", [S], one, { kind: "time", at: at(999) }),
    RecoveryPointError,
    "No snapshot precedes",
  );
  assert(e.message.includes("s1"), e.message);
  // The snapshot's own second does not precede it either.
  assertThrows(() => planRecovery("mariadb", [S], one, { kind: "time", at: at(1000) }), RecoveryPointError);
});

Deno.test("one history: a time after the archive's end restores everything, with a note", () => {
  const p = planRecovery("mariadb", [S], one, { kind: "time", at: at(5000) });
  assertEquals(p.position, "0-1-30");
  assertEquals(p.steps.map((s) => s.segment.file), ["B", "C"]);
  assert(p.note?.includes("after the archive's last transaction"), p.note);
  // Within the last second: no note.
  assertEquals(planRecovery("mariadb", [S], one, { kind: "time", at: at(1040.5) }).note, undefined);
});

Deno.test("one history: a time after the snapshot but before any archived transaction is the snapshot alone", () => {
  // The archive starts at the snapshot (nothing before it archived): the snapshot precedes the time.
  let p = planRecovery("mariadb", [S], [B, C], { kind: "time", at: at(1005) });
  assertEquals(p.snapshot.name, "s1");
  assertEquals(p.steps, []);
  assertEquals(p.position, "0-1-10");
  // Also when what the archive holds before the time is older than the snapshot (a gap before it).
  const old = seg("old", "", "0-1-3", [[100, "0-1-3"]], { archivedAt: 0 });
  p = planRecovery("mariadb", [S], [old, B, C], { kind: "time", at: at(1005) });
  assertEquals(p.steps, []);
  assertEquals(p.position, "0-1-10");
  p = planRecovery("mariadb", [S], [old, B, C], { kind: "time", at: at(1012) });
  assertEquals(steps(p), ["B 0-1-10→0-1-12"]);
  // A snapshot begun before the time whose consistent point the archive shows after it: an older one is used.
  p = planRecovery("mariadb", [S, snap("late", 1011, "0-1-16")], one, { kind: "time", at: at(1012) });
  assertEquals(p.snapshot.name, "s1");
  assertEquals(steps(p), ["B 0-1-10→0-1-12"]);
});

Deno.test("one history: a GTID inside a segment stops the last step there; the snapshot's own needs no step", () => {
  let p = planRecovery("mariadb", [S], one, { kind: "gtid", gtid: "0-1-25" });
  assertEquals(steps(p), ["B 0-1-10→", "C 0-1-20→0-1-25"]);
  assertEquals(p.position, "0-1-25");
  assertEquals(p.lastTime, T0 + 1030);
  p = planRecovery("mariadb", [S], one, { kind: "gtid", gtid: "0-1-10" });
  assertEquals(p.steps, []);
  assertEquals(p.position, "0-1-10");
  p = planRecovery("mariadb", [S], one, { kind: "gtid", gtid: "0-1-20" });
  assertEquals(steps(p), ["B 0-1-10→0-1-20"]);
});

Deno.test("one history: a GTID on no history is refused, saying so", () => {
  for (const gtid of ["0-9-5", "0-1-31", "5-1-1"]) {
    assertThrows(
      () => planRecovery("mariadb", [S], one, { kind: "gtid", gtid }),
      RecoveryPointError,
      `GTID ${gtid} is in no archived binlog and no snapshot: the archive ends at 0-1-30`,
    );
  }
  // Before the only snapshot: on the history, but no snapshot precedes it.
  assertThrows(
    () => planRecovery("mariadb", [S], one, { kind: "gtid", gtid: "0-1-5" }),
    RecoveryPointError,
    "No snapshot precedes 0-1-5",
  );
});

Deno.test("no snapshot at all is refused", () => {
  assertThrows(
    () => planRecovery("mariadb", [], one, { kind: "end" }),
    RecoveryPointError,
    "no complete snapshot",
  );
});

Deno.test("with nothing archived, restoring to the end is the newest snapshot alone", () => {
  const p = planRecovery("mariadb", [S, snap("s0", 500, "0-1-4")], [], { kind: "end" });
  assertEquals(p.snapshot.name, "s1");
  assertEquals(p.steps, []);
  assertEquals(p.position, "0-1-10");
});

// ---------------------------------------------------------------------------------------------------------
// A failover: server 1 wrote up to 0-1-100 (archived), and a tail 0-1-101..105 the new primary never saw
// (archived too: a diverged branch); server 2's files start at 0-1-50 (they also hold the replicated
// 0-1-51..100) and go on with 0-2-101..
// ---------------------------------------------------------------------------------------------------------

const A1 = seg("A1", "", "0-1-50", [[100, "0-1-25"], [150, "0-1-50"]], { archivedAt: 11 });
const B1 = seg("B1", "0-1-50", "0-1-100", [[160, "0-1-75"], [200, "0-1-100"]], { archivedAt: 12 });
const C1 = seg("C1", "0-1-100", "0-1-105", [[201, "0-1-102"], [205, "0-1-105"]], { archivedAt: 13 });
const A2 = seg("A2", "0-1-50", "0-1-100,0-2-110", [
  [160, "0-1-75"],
  [200, "0-1-100"],
  [250, "0-2-105"],
  [260, "0-2-110"],
], { serverId: 2, archivedAt: 21 });
const B2 = seg("B2", "0-1-100,0-2-110", "0-1-100,0-2-120", [[270, "0-2-115"], [280, "0-2-120"]], {
  serverId: 2,
  archivedAt: 22,
});
const failover = [A1, B1, C1, A2, B2];
const S20 = snap("s20", 120, "0-1-20");

Deno.test("failover: restore to the end follows the new primary, never the lost tail", () => {
  for (const segs of [failover, [B2, A2, C1, B1, A1]]) {
    const p = planRecovery("mariadb", [S20], segs, { kind: "end" });
    assertEquals(steps(p), ["A1 0-1-20→", "A2 0-1-50→", "B2 0-2-110→"]);
    assertEquals(p.position, "0-2-120");
    assertEquals(p.lastTime, T0 + 280);
  }
});

Deno.test("failover: a GTID of the lost tail follows that branch", () => {
  const p = planRecovery("mariadb", [S20], failover, { kind: "gtid", gtid: "0-1-103" });
  assertEquals(steps(p), ["A1 0-1-20→", "B1 0-1-50→", "C1 0-1-100→0-1-103"]);
  assertEquals(p.position, "0-1-103");
});

Deno.test("failover: a GTID of the new primary stops inside its file", () => {
  const p = planRecovery("mariadb", [S20], failover, { kind: "gtid", gtid: "0-2-105" });
  assertEquals(steps(p), ["A1 0-1-20→", "A2 0-1-50→0-2-105"]);
  assertEquals(p.position, "0-2-105");
  assertEquals(p.lastTime, T0 + 250);
});

Deno.test("failover: a time while the old primary wrote its lost tail stops where the new history left it", () => {
  const p = planRecovery("mariadb", [S20], failover, { kind: "time", at: at(203) });
  assertEquals(p.position, "0-1-100");
  assert(!p.steps.some((s) => s.segment.file === "C1"), steps(p).join(" "));
  assertEquals(p.steps.at(-1)?.until, "0-1-100");
  const q = planRecovery("mariadb", [S20], failover, { kind: "time", at: at(255) });
  assertEquals(q.position, "0-2-105");
});

Deno.test("failover: a snapshot on the lost branch is not used for the new history", () => {
  const lostSnap = snap("lost", 204, "0-1-104");
  const p = planRecovery("mariadb", [S20, lostSnap], failover, { kind: "end" });
  assertEquals(p.snapshot.name, "s20");
  const q = planRecovery("mariadb", [S20, lostSnap], failover, { kind: "gtid", gtid: "0-1-105" });
  assertEquals(q.snapshot.name, "lost");
  assertEquals(steps(q), ["C1 0-1-104→0-1-105"]);
});

Deno.test("failover: a snapshot with a full binlog state on the new primary chains on", () => {
  const p = planRecovery("mariadb", [S20, snap("s2", 255, "0-1-100,0-2-105")], failover, { kind: "end" });
  assertEquals(p.snapshot.name, "s2");
  assertEquals(steps(p), ["A2 0-2-105→", "B2 0-2-110→"]);
});

Deno.test("failover: a snapshot whose state is a position only (no binlogState) still chains on", () => {
  // A MariaDB manifest without binlogState holds its gtid only: one GTID per domain.
  const s2 = snap("s2", 255, "0-2-105");
  let p = planRecovery("mariadb", [S20, s2], failover, { kind: "end" });
  assertEquals(p.snapshot.name, "s2");
  assertEquals(steps(p), ["A2 0-2-105→", "B2 0-2-110→"]);
  assertEquals(p.position, "0-2-120");
  p = planRecovery("mariadb", [S20, s2], failover, { kind: "gtid", gtid: "0-2-115" });
  assertEquals(p.snapshot.name, "s2");
  assertEquals(steps(p), ["A2 0-2-105→", "B2 0-2-110→0-2-115"]);
  p = planRecovery("mariadb", [S20, s2], failover, { kind: "time", at: at(275) });
  assertEquals(p.snapshot.name, "s2");
  assertEquals(p.position, "0-2-115");
  // At a file boundary.
  p = planRecovery("mariadb", [snap("s3", 265, "0-2-110")], failover, { kind: "end" });
  assertEquals(steps(p), ["B2 0-2-110→"]);
  const w = recoverableWindows("mariadb", [s2], failover);
  assertEquals(w.length, 1);
  assertEquals(w[0].complete, true);
  assertEquals(w[0].toPosition, "0-2-120");
});

// ---------------------------------------------------------------------------------------------------------
// Gaps.
// ---------------------------------------------------------------------------------------------------------

Deno.test("a missing middle segment is a gap: the error names the last point reached", () => {
  const e = assertThrows(
    () => planRecovery("mariadb", [S], [A, C], { kind: "end" }),
    RecoveryPointError,
    "The archive has a gap: no archived binlog continues from 0-1-10",
  );
  assert(e.message.includes("snapshot s1 reaches is 0-1-10"), e.message);
  assert(e.message.includes("--to-gtid 0-1-10"), e.message);
});

Deno.test("a gap after some steps names the point reached, with its time", () => {
  const D = seg("D", "0-1-35", "0-1-40", [[1050, "0-1-40"]]);
  const e = assertThrows(
    () => planRecovery("mariadb", [S], [A, B, D], { kind: "end" }),
    RecoveryPointError,
    "no archived binlog continues from 0-1-20",
  );
  assert(e.message.includes(`(${iso(1019).replace(".000Z", "Z")})`), e.message);
});

Deno.test("a lost newest index entry is a gap at the end too", () => {
  const lostD = seg("D", "0-1-30", "0-1-40", [[1050, "0-1-40"]], { archivedAt: 99 });
  assertThrows(
    () => planRecovery("mariadb", [S], one, { kind: "end" }, [lostD]),
    RecoveryPointError,
    "no archived binlog continues from 0-1-30",
  );
  // A lost middle entry: a gap from where it starts.
  assertThrows(
    () => planRecovery("mariadb", [S], [A, C], { kind: "end" }, [B]),
    RecoveryPointError,
    "no archived binlog continues from 0-1-10",
  );
  // Points before the gap are still reachable.
  const p = planRecovery("mariadb", [S], one, { kind: "gtid", gtid: "0-1-25" }, [lostD]);
  assertEquals(p.position, "0-1-25");
});

Deno.test("a gap: a newer snapshot after it is used; an older one is not preferred", () => {
  const old = snap("s0", 950, "0-1-5");
  const newer = snap("s2", 1025, "0-1-20");
  // A gap between 0-1-10 and 0-1-20 (B missing): the older snapshots cannot reach the end, the newer can.
  let p = planRecovery("mariadb", [old, S, newer], [A, C], { kind: "end" });
  assertEquals(p.snapshot.name, "s2");
  assertEquals(steps(p), ["C 0-1-20→"]);
  // No gap: still the newest.
  p = planRecovery("mariadb", [old, S, newer], one, { kind: "end" });
  assertEquals(p.snapshot.name, "s2");
  // A point before the gap: an older snapshot that reaches it.
  p = planRecovery("mariadb", [old, S, newer], [A, C], { kind: "gtid", gtid: "0-1-8" });
  assertEquals(p.snapshot.name, "s0");
  assertEquals(steps(p), ["A 0-1-5→0-1-8"]);
  // The gap error names the newest snapshot's reach.
  const e = assertThrows(
    () => planRecovery("mariadb", [old, S], [A, C], { kind: "end" }),
    RecoveryPointError,
    "snapshot s1 reaches is 0-1-10",
  );
  assert(e.message.includes("0-1-10"), e.message);
});

// ---------------------------------------------------------------------------------------------------------
// Two domains.
// ---------------------------------------------------------------------------------------------------------

const M1 = seg("M1", "", "0-1-10,1-1-5", [[900, "0-1-8,1-1-5"], [990, "0-1-10,1-1-5"]]);
const M2 = seg("M2", "0-1-10,1-1-5", "0-1-20,1-1-9", [
  [1010, "0-1-12,1-1-5"],
  [1012, "0-1-12,1-1-7"],
  [1019, "0-1-20,1-1-9"],
]);
const M3 = seg("M3", "0-1-20,1-1-9", "0-1-30,1-1-9", [[1030, "0-1-25,1-1-9"], [1040, "0-1-30,1-1-9"]]);
const multi = [M1, M2, M3];
const SM = snap("sm", 1000, "0-1-10,1-1-5");

Deno.test("two domains: positions, marks and the stop name every domain", () => {
  assertEquals(positionAt("mariadb", multi, M3.endState, at(1012)), "0-1-12,1-1-5");
  assertEquals(positionAt("mariadb", multi, M3.endState, at(1013)), "0-1-12,1-1-7");
  assertEquals(positionAt("mariadb", multi, M3.endState, at(1035)), "0-1-25,1-1-9");
  let p = planRecovery("mariadb", [SM], multi, { kind: "time", at: at(1013) });
  assertEquals(steps(p), ["M2 0-1-10,1-1-5→0-1-12,1-1-7"]);
  assertEquals(p.position, "0-1-12,1-1-7");
  p = planRecovery("mariadb", [SM], multi, { kind: "time", at: at(1035) });
  assertEquals(steps(p), ["M2 0-1-10,1-1-5→", "M3 0-1-20,1-1-9→0-1-25,1-1-9"]);
  p = planRecovery("mariadb", [SM], multi, { kind: "end" });
  assertEquals(p.position, "0-1-30,1-1-9");
  p = planRecovery("mariadb", [SM], multi, { kind: "gtid", gtid: "0-1-15,1-1-6" });
  assertEquals(steps(p), ["M2 0-1-10,1-1-5→0-1-15,1-1-6"]);
  assertEquals(p.position, "0-1-15,1-1-6");
});

Deno.test("two domains: a GTID of one domain keeps the other where it stood, when that is certain", () => {
  // Domain 1 does not move in M3: 0-1-25 alone means 0-1-25,1-1-9.
  let p = planRecovery("mariadb", [SM], multi, { kind: "gtid", gtid: "0-1-25" });
  assertEquals(p.snapshot.name, "sm");
  assertEquals(steps(p), ["M2 0-1-10,1-1-5→", "M3 0-1-20,1-1-9→0-1-25,1-1-9"]);
  assertEquals(p.position, "0-1-25,1-1-9");
  // The snapshot's own GTID in one domain: the snapshot alone.
  p = planRecovery("mariadb", [SM], multi, { kind: "gtid", gtid: "0-1-10" });
  assertEquals(p.steps, []);
  assertEquals(p.position, "0-1-10,1-1-5");
  // Domain 1 moves inside M2: where it stood at 0-1-15 is not known, so the target must name it.
  assertThrows(
    () => planRecovery("mariadb", [SM], multi, { kind: "gtid", gtid: "0-1-15" }),
    RecoveryPointError,
    "domain 1",
  );
});

// ---------------------------------------------------------------------------------------------------------
// followArchive, windows, pruning.
// ---------------------------------------------------------------------------------------------------------

Deno.test("followArchive stops at a gap and reports where", () => {
  const c = followArchive("mariadb", "0-1-10", [A, C], C.endState);
  assertEquals(c.complete, false);
  assertEquals(c.state, "0-1-10");
  assertEquals(c.segments, []);
  const d = followArchive("mariadb", "0-1-10", one, C.endState);
  assertEquals(d.complete, true);
  assertEquals(d.segments.map((s) => s.file), ["B", "C"]);
  assertEquals(d.lastTime, T0 + 1040);
});

Deno.test("recoverableWindows: two snapshots with a gap between them are two windows; no gap, one", () => {
  const old = snap("s0", 950, "0-1-5");
  const newer = snap("s2", 1025, "0-1-20");
  let w = recoverableWindows("mariadb", [newer, old], [A, C]);
  assertEquals(w.length, 2);
  assertEquals(w[0].from.name, "s0");
  assertEquals(w[0].toPosition, "0-1-10");
  assertEquals(w[0].toTime, T0 + 990);
  assertEquals(w[0].complete, false);
  assertEquals(w[1].from.name, "s2");
  assertEquals(w[1].toPosition, "0-1-30");
  assertEquals(w[1].complete, true);
  w = recoverableWindows("mariadb", [newer, old], one);
  assertEquals(w.length, 1);
  assertEquals(w[0].from.name, "s0");
  assertEquals(w[0].toPosition, "0-1-30");
  assertEquals(w[0].toTime, T0 + 1040);
  assertEquals(w[0].complete, true);
  // A snapshot and nothing archived: a window of the snapshot alone.
  w = recoverableWindows("mariadb", [S], []);
  assertEquals(w, [{ from: S, fromTime: S.createdAt, toPosition: "0-1-10", complete: true }]);
});

Deno.test("recoverableWindows: after a failover, along the new primary's history", () => {
  const w = recoverableWindows("mariadb", [S20], failover);
  assertEquals(w.length, 1);
  assertEquals(w[0].toPosition, "0-2-120");
  assertEquals(w[0].complete, true);
});

Deno.test("prunableSegments keeps what a retained snapshot needs, drops what every one holds and lost tails", () => {
  const keys = (segs: Segment[]) => segs.map((s) => s.file).sort();
  // Retaining s1 (0-1-10): A is inside it; B, C are needed.
  assertEquals(keys(prunableSegments("mariadb", [S], one)), ["A"]);
  // Retaining nothing: nothing is pruned.
  assertEquals(prunableSegments("mariadb", [], one), []);
  // After the failover, a snapshot on the new history at 0-1-100,0-2-110: A1, B1 inside it; C1 diverged.
  const s = snap("s", 265, "0-1-100,0-2-110");
  assertEquals(keys(prunableSegments("mariadb", [s], failover)), ["A1", "A2", "B1", "C1"]);
  // With the old snapshot retained too, everything after it stays (C1 is reachable from it by --to-gtid).
  assertEquals(keys(prunableSegments("mariadb", [s, S20], failover)), []);
  // A segment that holds the snapshot's point stays.
  assertEquals(keys(prunableSegments("mariadb", [snap("m", 255, "0-1-100,0-2-105")], failover)), [
    "A1",
    "B1",
    "C1",
  ]);
});

// ---------------------------------------------------------------------------------------------------------
// MySQL.
// ---------------------------------------------------------------------------------------------------------

const U = "3e11fa47-71ca-11e1-9e33-c80aa9429562";
const V = "4e11fa47-71ca-11e1-9e33-c80aa9429562";

Deno.test("MySQL: sets chain, stop and mark", () => {
  const my = { flavour: "mysql" as const };
  const X = seg("X", `${U}:1-10`, `${U}:1-20`, [[1010, `${U}:1-12`], [1019, `${U}:1-20`]], my);
  const Y = seg("Y", `${U}:1-20`, `${U}:1-20,${V}:1-5`, [[1030, `${U}:1-20,${V}:1-3`], [
    1040,
    `${U}:1-20,${V}:1-5`,
  ]], my);
  const s = snap("m", 1000, `${U}:1-10`);
  let p = planRecovery("mysql", [s], [X, Y], { kind: "end" });
  assertEquals(steps(p), [`X ${U}:1-10→`, `Y ${U}:1-20→`]);
  assertEquals(p.position, `${U}:1-20,${V}:1-5`);
  p = planRecovery("mysql", [s], [X, Y], { kind: "time", at: at(1035) });
  assertEquals(steps(p), [`X ${U}:1-10→`, `Y ${U}:1-20→${U}:1-20,${V}:1-3`]);
  p = planRecovery("mysql", [s], [X, Y], { kind: "gtid", gtid: `${U}:1-15` });
  assertEquals(steps(p), [`X ${U}:1-10→${U}:1-15`]);
  p = planRecovery("mysql", [s], [X, Y], { kind: "time", at: at(1005) });
  assertEquals(p.steps, []);
  assertEquals(p.position, `${U}:1-10`);
  assertThrows(
    () => planRecovery("mysql", [s], [Y], { kind: "end" }),
    RecoveryPointError,
    "The archive has a gap",
  );
});

// ---------------------------------------------------------------------------------------------------------
// Parsing the target.
// ---------------------------------------------------------------------------------------------------------

Deno.test("parseTargetTime takes ISO 8601 with or without a zone", () => {
  assertEquals(parseTargetTime("2026-12-02T14:03:12Z").toISOString(), "2026-12-02T14:03:12.000Z");
  assertEquals(parseTargetTime(" 2026-12-02 14:03:12 ").toISOString(), "2026-12-02T14:03:12.000Z");
  assertEquals(parseTargetTime("2026-12-02T14:03:12.5+01:00").toISOString(), "2026-12-02T13:03:12.500Z");
  assertEquals(parseTargetTime("2026-12-02T14:03:12-0130").toISOString(), "2026-12-02T15:33:12.000Z");
  assertEquals(parseTargetTime("2026-12-02t14:03z").toISOString(), "2026-12-02T14:03:00.000Z");
  for (
    const bad of ["yesterday", "", "2026-12-02", "2026-13-02T00:00:00Z", "2026-12-02T25:00:00Z", "1764669000"]
  ) {
    assertThrows(() => parseTargetTime(bad), RangeError, "is not a time");
  }
});

Deno.test("parseTargetGtid checks a MariaDB position and a MySQL set", () => {
  assertEquals(parseTargetGtid("mariadb", " 0-1-42 "), "0-1-42");
  assertEquals(parseTargetGtid("mariadb", "1-1-5,0-1-42"), "0-1-42,1-1-5");
  assertThrows(() => parseTargetGtid("mariadb", "0-1-2,0-2-3"), RangeError, "names a domain twice");
  assertThrows(() => parseTargetGtid("mariadb", "0-1-2,0-1-3"), RangeError, "duplicate");
  assertThrows(() => parseTargetGtid("mariadb", "0-1"), RangeError, "is not a MariaDB GTID");
  assertThrows(() => parseTargetGtid("mariadb", ""), RangeError, "needs a GTID");
  assertEquals(parseTargetGtid("mysql", `${U}:1-5`), `${U}:1-5`);
  assertThrows(() => parseTargetGtid("mysql", "0-1-42"), RangeError, "is not a MySQL GTID set");
  assertThrows(() => parseTargetGtid("mysql", " "), RangeError, "needs a GTID");
});

Deno.test("--to-time: a snapshot past the archive's end may lie after the time: an older one, or refused", () => {
  // The archive holds 0-1-11 (at +60) and lags the snapshot, whose consistent point 0-1-12 it does not hold.
  const s1 = seg("L1", "0-1-10", "0-1-11", [[60, "0-1-11"]]);
  const late = snap("late", 0, "0-1-12");
  const e = assertThrows(
    () => planRecovery("mariadb", [late], [s1], { kind: "time", at: at(120) }),
    RecoveryPointError,
    "may be later than the time asked",
  );
  assert(e.message.includes("late") && e.message.includes("0-1-12"), e.message);
  // With nothing archived, the same.
  assertThrows(() => planRecovery("mariadb", [late], [], { kind: "time", at: at(120) }), RecoveryPointError);
  // An older snapshot whose point the archive holds is used instead.
  const p = planRecovery("mariadb", [late, snap("old", -100, "0-1-10")], [s1], { kind: "time", at: at(120) });
  assertEquals([p.snapshot.name, p.position], ["old", "0-1-11"]);
  // --to-end still restores the snapshot (nothing past it is archived).
  assertEquals(planRecovery("mariadb", [late], [s1], { kind: "end" }).position, "0-1-12");
});

Deno.test("windows start at the time of the snapshot's consistent point, and the refusal says the same", () => {
  // Transactions at +60, +240, +480; the backup started at 0, its consistent point is after 0-1-12 (+240).
  const s1 = seg("W1", "0-1-10", "0-1-13", [[60, "0-1-11"], [240, "0-1-12"], [480, "0-1-13"]]);
  const s = snap("s", 0, "0-1-12");
  const w = recoverableWindows("mariadb", [s], [s1]);
  assertEquals(w[0].fromTime, iso(241).replace(".000Z", "Z"));
  const e = assertThrows(
    () => planRecovery("mariadb", [s], [s1], { kind: "time", at: at(120) }),
    RecoveryPointError,
    "No snapshot precedes",
  );
  assert(e.message.includes(`consistent point at ${iso(241).replace(".000Z", "Z")}`), e.message);
  assertEquals(planRecovery("mariadb", [s], [s1], { kind: "time", at: at(241) }).position, "0-1-12");
});

Deno.test("parseTargetGtid: a single MySQL GTID means every transaction of its uuid up to it", () => {
  const U = "3e11fa47-71ca-11e1-9e33-c80aa9429562";
  const V = "4e11fa47-71ca-11e1-9e33-c80aa9429562";
  assertEquals(parseTargetGtid("mysql", `${U}:15`), `${U}:1-15`);
  assertEquals(parseTargetGtid("mysql", ` ${U}:15 `), `${U}:1-15`);
  assertEquals(parseTargetGtid("mysql", `${U}:1-15,${V}:1-3`), `${U}:1-15,${V}:1-3`);
  const s1 = seg("M1", `${U}:1-10`, `${U}:1-20`, [[10, `${U}:1-20`]], { flavour: "mysql" });
  const p = planRecovery("mysql", [snap("m", 0, `${U}:1-10`)], [s1], {
    kind: "gtid",
    gtid: parseTargetGtid("mysql", `${U}:15`),
  });
  assertEquals(p.position, `${U}:1-15`);
});
