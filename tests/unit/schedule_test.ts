import { assert, assertEquals } from "./assert.ts";
import {
  decideSnapshot,
  decideVerify,
  decideWithoutServer,
  duration,
  type EarlyFacts,
  type SnapshotFacts,
} from "../../src/backup/schedule.ts";

const now = new Date("2026-11-25T12:00:00Z");
const base: SnapshotFacts = {
  force: false,
  role: { kind: "primary" },
  backupFrom: "primary",
  healthyPeers: 2,
  last: { name: "mysql-backup-1", createdAt: "2026-11-25T11:00:00Z" },
  lastBinlog: "mysql-bin.000004",
  currentBinlog: "mysql-bin.000004",
  ttlSeconds: 86400,
  now,
};

Deno.test("decideSnapshot: the primary takes the first snapshot when none exists", () => {
  const d = decideSnapshot({ ...base, last: undefined, lastBinlog: undefined });
  assertEquals(d, { take: true, reason: "no snapshot exists yet" });
});

Deno.test("decideSnapshot: nothing is due within BACKUP_TTL while the binlog stays the same", () => {
  const d = decideSnapshot(base);
  assertEquals(d.take, false);
  assert(d.reason.includes("not due") && d.reason.includes("1h old") && d.reason.includes("24h"), d.reason);
});

Deno.test("decideSnapshot: due once the last snapshot is as old as BACKUP_TTL", () => {
  assertEquals(decideSnapshot({ ...base, ttlSeconds: 3601 }).take, false);
  const d = decideSnapshot({ ...base, ttlSeconds: 3600 });
  assertEquals(d.take, true);
  assert(d.reason.includes("is 1h old (BACKUP_TTL is 1h)"), d.reason);
});

Deno.test("decideSnapshot: a rotated binlog alone is not due (the archiver rotates it every interval)", () => {
  assertEquals(decideSnapshot({ ...base, currentBinlog: "mysql-bin.000005" }).take, false);
  assertEquals(decideSnapshot({ ...base, lastBinlog: undefined }).take, false);
});

Deno.test("decideSnapshot: due when the binlog archive found a gap after the last snapshot", () => {
  const last = { name: "s1", createdAt: "2026-11-25T18:00:00.000Z" };
  const d = decideSnapshot({ ...base, last, archiveGapAt: "2026-11-25T18:30:00.000Z" });
  assertEquals(d.take, true);
  assert(d.reason.includes("found a gap") && d.reason.includes("new recoverable span"), d.reason);
  // a gap before the last snapshot is behind it already
  assertEquals(decideSnapshot({ ...base, last, archiveGapAt: "2026-11-25T17:00:00.000Z" }).take, false);
});

Deno.test("decideSnapshot: a last snapshot with an unreadable date is treated as due", () => {
  const d = decideSnapshot({ ...base, last: { name: "x", createdAt: "yesterday" } });
  assertEquals(d.take, true);
  assert(d.reason.includes("no valid date"), d.reason);
});

Deno.test("decideSnapshot: BACKUP_FROM=primary: a replica never takes one, even when due", () => {
  const d = decideSnapshot({ ...base, role: { kind: "replica" }, last: undefined });
  assertEquals(d, { take: false, reason: "BACKUP_FROM=primary: the primary takes the snapshots" });
});

Deno.test("decideSnapshot: BACKUP_FROM=replica: a healthy replica takes it and the primary leaves it", () => {
  const facts = { ...base, backupFrom: "replica" as const, last: undefined };
  assertEquals(decideSnapshot({ ...facts, role: { kind: "replica" } }).take, true);
  assertEquals(decideSnapshot(facts), {
    take: false,
    reason: "BACKUP_FROM=replica: a healthy replica takes the snapshots",
  });
});

Deno.test("decideSnapshot: BACKUP_FROM=replica with no healthy replica: the primary takes it and says why", () => {
  const d = decideSnapshot({ ...base, backupFrom: "replica", healthyPeers: 0, last: undefined });
  assertEquals(d.take, true);
  assert(d.reason.includes("no healthy replica exists: the primary takes it"), d.reason);
  assertEquals(decideSnapshot({ ...base, backupFrom: "replica", healthyPeers: 0 }).take, false);
});

Deno.test("decideSnapshot: a node that is neither primary nor healthy replica never takes one, even forced", () => {
  const role = { kind: "none" as const, why: "it lags 90 s" };
  assertEquals(decideSnapshot({ ...base, role, last: undefined }), {
    take: false,
    reason: "this node takes no snapshot: it lags 90 s",
  });
  assertEquals(decideSnapshot({ ...base, role, force: true }).take, false);
});

Deno.test("decideSnapshot: forced (backup now) skips the schedule and BACKUP_FROM", () => {
  assertEquals(decideSnapshot({ ...base, force: true }), { take: true, reason: "requested (backup now)" });
  assertEquals(decideSnapshot({ ...base, force: true, role: { kind: "replica" } }).take, true);
});

Deno.test("duration() prints hours, minutes and seconds compactly", () => {
  assertEquals([duration(0), duration(59), duration(90), duration(3600), duration(86400), duration(3725)], [
    "0s",
    "59s",
    "1m30s",
    "1h",
    "24h",
    "1h2m5s",
  ]);
});

Deno.test("decideSnapshot: BACKUP_FROM=replica: the primary steps in when replicas let it grow twice BACKUP_TTL old", () => {
  const facts = { ...base, backupFrom: "replica" as const, ttlSeconds: 1800 }; // last is 1h old: twice the TTL
  const d = decideSnapshot(facts);
  assertEquals(d.take, true);
  assert(d.reason.includes("no replica took one within twice BACKUP_TTL: the primary takes it"), d.reason);
  assertEquals(decideSnapshot({ ...facts, ttlSeconds: 1801 }).take, false);
});

Deno.test("decideVerify(): with BACKUP_VERIFY, a healthy replica verifies each new snapshot once", () => {
  const replica = { kind: "replica" } as const;
  const base = { enabled: true, role: replica, last: "s2", lastVerified: "s1" };
  assertEquals(decideVerify(base), {
    take: true,
    reason: "snapshot s2 has not been verified (BACKUP_VERIFY)",
  });
  assertEquals(decideVerify({ ...base, lastVerified: undefined }).take, true);
  assertEquals(decideVerify({ ...base, lastVerified: "s2" }), {
    take: false,
    reason: "snapshot s2 was verified already",
  });
  assertEquals(decideVerify({ ...base, enabled: false }), { take: false, reason: "BACKUP_VERIFY is off" });
  assertEquals(decideVerify({ ...base, role: { kind: "primary" } }), {
    take: false,
    reason: "only a healthy replica verifies snapshots",
  });
  assertEquals(decideVerify({ ...base, role: { kind: "none", why: "it lags" } }).take, false);
  assertEquals(decideVerify({ ...base, last: undefined }), { take: false, reason: "no snapshot to verify" });
  // A node whose keys cannot restore it (BACKUP_ENCRYPTION_RECIPIENTS only) skips it, every run, with a WARN.
  const keyProblem = "snapshot s2 is encrypted (age, to age1…) but BACKUP_ENCRYPTION_KEY is not set: set it";
  assertEquals(decideVerify({ ...base, keyProblem }), {
    take: false,
    reason: `BACKUP_VERIFY is set but this node cannot verify: ${keyProblem}`,
    misconfigured: true,
  });
  assertEquals(decideVerify({ ...base, lastVerified: "s2", keyProblem }).misconfigured, undefined);
});

const early: EarlyFacts = { backupFrom: "primary", verify: false, lock: "another node" };

Deno.test("decideWithoutServer(): Consul alone says a node has nothing to do when nobody holds the lock", () => {
  for (const backupFrom of ["primary", "replica"] as const) {
    for (const verify of [false, true]) {
      assertEquals(decideWithoutServer({ backupFrom, verify, lock: "nobody" }), {
        take: false,
        reason: "this node takes no snapshot: no node holds the primary lock",
      });
    }
  }
});

Deno.test("decideWithoutServer(): BACKUP_FROM=primary leaves a node without the lock alone, unless it may verify", () => {
  assertEquals(decideWithoutServer(early), {
    take: false,
    reason: "BACKUP_FROM=primary: the primary takes the snapshots, and another node holds the primary lock",
  });
  // a replica may take it (BACKUP_FROM=replica) or verify the last one (BACKUP_VERIFY): ask its server
  assertEquals(decideWithoutServer({ ...early, backupFrom: "replica" }), undefined);
  assertEquals(decideWithoutServer({ ...early, verify: true }), undefined);
});

Deno.test("decideWithoutServer(): the lock holder asks its server (writable? binlog rotated?)", () => {
  for (const backupFrom of ["primary", "replica"] as const) {
    assertEquals(decideWithoutServer({ ...early, backupFrom, lock: "this node" }), undefined);
  }
});
