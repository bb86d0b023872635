/**
 * What a verification (BACKUP_VERIFY, `autopilot backup verify`) replays after a snapshot, on plain data:
 * `archiveReplayPlan`, the archive followed from the snapshot to its end, and where it stops short.
 */
import { assert, assertEquals } from "./assert.ts";
import { archiveReplayPlan } from "../../src/backup/verify.ts";
import { planRecovery, recoverableWindows } from "../../src/binlog/plan.ts";
import { snapshotPoint } from "../../src/binlog/plan.ts";
import { segment as seg, snapshot } from "./segments.ts";

const A = seg("", "0-1-5", 1);
const B = seg("0-1-5", "0-1-10", 2);
const C = seg("0-1-10", "0-1-15", 3);
const D = seg("0-1-15", "0-1-20", 4);

Deno.test("archiveReplayPlan() replays the archive from the snapshot to its end, as planRecovery() plans it", () => {
  const snap = snapshotPoint(snapshot("s", 1, "0-1-10"));
  const p = archiveReplayPlan("mariadb", snap, [A, B, C, D]);
  assertEquals(p.problem, undefined);
  assertEquals(p.end, "0-1-20");
  assertEquals(p.plan.position, "0-1-20");
  assertEquals(p.plan.steps.map((s) => [s.segment.key, s.after, s.until]), [
    [C.key, "0-1-10", undefined],
    [D.key, "0-1-15", undefined],
  ]);
  const r = planRecovery("mariadb", [snap], [A, B, C, D], { kind: "end" });
  assertEquals(p.plan.steps, r.steps);
  assertEquals(p.plan.position, r.position);
});

Deno.test("archiveReplayPlan() with nothing to replay: no archive, or a snapshot past its end", () => {
  const snap = snapshotPoint(snapshot("s", 1, "0-1-10"));
  assertEquals(archiveReplayPlan("mariadb", snap, []), {
    plan: { snapshot: snap, steps: [], position: "0-1-10" },
    end: "0-1-10",
  });
  const late = snapshotPoint(snapshot("s", 1, "0-1-25"));
  const p = archiveReplayPlan("mariadb", late, [A, B, C, D]);
  assertEquals([p.plan.steps.length, p.plan.position, p.problem], [0, "0-1-25", undefined]);
});

Deno.test("archiveReplayPlan() says where the binlogs stop short: a gap, a lost binlog, another history", () => {
  const snap = snapshotPoint(snapshot("s", 1, "0-1-5"));
  const gap = archiveReplayPlan("mariadb", snap, [A, B, D]);
  assertEquals(gap.plan.steps.map((s) => s.segment.key), [B.key]);
  assertEquals(gap.plan.position, "0-1-10");
  assertEquals(gap.end, "0-1-20");
  assert(
    gap.problem?.startsWith("the archive has a gap: no archived binlog continues from 0-1-10"),
    gap.problem,
  );

  const lost = archiveReplayPlan("mariadb", snap, [A, B, D], [C]);
  assertEquals(lost.plan.steps.map((s) => s.segment.key), [B.key]);
  assert(lost.problem?.includes(`${C.key}, is lost`), lost.problem);

  const lostLast = archiveReplayPlan("mariadb", snap, [A, B, C], [D]);
  assertEquals([lostLast.plan.position, lostLast.end], ["0-1-15", "0-1-20"]);
  assert(lostLast.problem?.includes(D.key), lostLast.problem);

  const other = archiveReplayPlan("mariadb", snapshotPoint(snapshot("s", 1, "0-1-7,0-3-4")), [A, B, C, D]);
  assertEquals(other.plan.steps, []);
  assert(other.problem?.includes("not on the archive's history"), other.problem);
});

Deno.test("planRecovery and archiveReplayPlan: the archive record's history, not the newest upload", () => {
  // After a failover from A to b, A's run that was still uploading archives its lost tail last.
  const common = seg("0-1-90", "0-1-100", 1, { archivedAt: "2026-11-20T10:00:00.000Z" });
  const b = seg("0-1-100", "0-1-100,0-2-103", 2, { node: "b", archivedAt: "2026-11-20T10:01:00.000Z" });
  const aTail = seg("0-1-100", "0-1-105", 3, { archivedAt: "2026-11-20T10:01:30.000Z" });
  const snapB = { name: "on-b", createdAt: "2026-11-20T10:00:30.000Z", state: "0-1-100,0-2-101" };
  const snapA = { name: "before-failover", createdAt: "2026-11-20T09:00:00.000Z", state: "0-1-95" };
  const all = [common, b, aTail];
  // Consul's record names b's end: that is the current history.
  const p = planRecovery("mariadb", [snapA, snapB], all, { kind: "end" }, [], b.endState);
  assertEquals([p.snapshot.name, p.position], ["on-b", "0-2-103"]);
  assertEquals(archiveReplayPlan("mariadb", snapB, all, [], b.endState).problem, undefined);
  assertEquals(
    recoverableWindows("mariadb", [snapA, snapB], all, [], b.endState).at(-1)?.toPosition,
    "0-2-103",
  );
  // Without a record, the newest upload still decides (the fallback).
  assertEquals(planRecovery("mariadb", [snapA, snapB], all, { kind: "end" }).position, "0-1-105");
});

Deno.test("archiveReplayPlan: a MariaDB manifest without binlogState chains on as planRecovery does", () => {
  // Domain 0 had two primaries; the manifest gives the position 0-2-140 only.
  const s1 = seg("0-1-100,0-2-130", "0-1-100,0-2-150", 1);
  const s2 = seg("0-1-100,0-2-150", "0-1-100,0-2-170", 2);
  const snap = { name: "old", createdAt: "2026-11-01T00:00:00Z", state: "0-2-140" };
  assertEquals(planRecovery("mariadb", [snap], [s1, s2], { kind: "end" }).steps.length, 2);
  const v = archiveReplayPlan("mariadb", snap, [s1, s2]);
  assertEquals(v.problem, undefined);
  assertEquals([v.plan.steps.length, v.plan.position], [2, "0-2-170"]);
});
