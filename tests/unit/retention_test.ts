import { assert, assertEquals, assertThrows } from "./assert.ts";
import {
  DEFAULT_INCOMPLETE_GRACE_MS,
  formatDuration,
  inventorySnapshots,
  planRetention,
  pruneSnapshots,
  type RetentionCandidate,
  type RetentionPlan,
  retentionPolicy,
} from "../../src/backup/retention.ts";
import { dataKey, formatManifest, type Manifest, manifestKey } from "../../src/backup/manifest.ts";
import { addSnapshot, MemoryStore, testManifest } from "./memory_store.ts";

const DAY = 86_400_000;
const HOUR = 3_600_000;
const NOW = new Date("2026-11-25T12:00:00.000Z");

/** A candidate taken `days` days before NOW. */
function snap(
  name: string,
  days: number,
  state: RetentionCandidate["state"] = "complete",
): RetentionCandidate {
  return { name, state, time: new Date(NOW.getTime() - days * DAY) };
}

function summary<T extends RetentionCandidate>(plan: RetentionPlan<T>): { keep: string[]; delete: string[] } {
  return {
    keep: plan.keep.map((d) => `${d.snapshot.name}: ${d.reason}`),
    delete: plan.delete.map((d) => `${d.snapshot.name}: ${d.reason}`),
  };
}

Deno.test("planRetention() keeps the newest retainCount complete snapshots and deletes the older ones", () => {
  const plan = planRetention(
    [snap("d3", 3), snap("d1", 1), snap("d4", 4), snap("d2", 2)],
    { retainCount: 2 },
    NOW,
  );
  assertEquals(summary(plan), {
    keep: ["d1: one of the newest 2", "d2: one of the newest 2"],
    delete: ["d3: older than the newest 2", "d4: older than the newest 2"],
  });
});

Deno.test("planRetention() also keeps every snapshot newer than retainAgeMs", () => {
  const plan = planRetention(
    [snap("d1", 1), snap("d2", 2), snap("d3", 3), snap("d5", 5)],
    { retainCount: 1, retainAgeMs: 2.5 * DAY },
    NOW,
  );
  assertEquals(summary(plan), {
    keep: ["d1: one of the newest 1", "d2: newer than 60h"],
    delete: [
      "d3: older than the newest 1 and not newer than 60h",
      "d5: older than the newest 1 and not newer than 60h",
    ],
  });
});

Deno.test("planRetention() never deletes the protected snapshot, however old, and it counts among the newest", () => {
  const plan = planRetention(
    [snap("d1", 1), snap("d2", 2), snap("d30", 30), snap("d40", 40)],
    { retainCount: 2 },
    NOW,
    ["d30"],
  );
  assertEquals(summary(plan), {
    keep: ["d1: one of the newest 2", "d2: one of the newest 2", "d30: the last snapshot (protected)"],
    delete: ["d40: older than the newest 2"],
  });
  const newest = planRetention([snap("d1", 1), snap("d2", 2), snap("d3", 3)], { retainCount: 2 }, NOW, [
    "d1",
  ]);
  assertEquals(summary(newest), {
    keep: ["d1: the last snapshot (protected)", "d2: one of the newest 2"],
    delete: ["d3: older than the newest 2"],
  });
});

Deno.test("planRetention() deletes incomplete snapshots and orphaned manifests only after the grace period", () => {
  const plan = planRetention(
    [
      snap("d1", 1),
      { name: "uploading", state: "incomplete", time: new Date(NOW.getTime() - HOUR) },
      snap("stale", 2, "incomplete"),
      { name: "orphan-new", state: "orphaned", time: new Date(NOW.getTime() - HOUR) },
      snap("orphan-old", 3, "orphaned"),
    ],
    { retainCount: 1 },
    NOW,
  );
  assertEquals(summary(plan), {
    keep: [
      "uploading: data without a manifest, newer than 24h (maybe still being written)",
      "orphan-new: a manifest without its data, newer than 24h (maybe still being written)",
      "d1: one of the newest 1",
    ],
    delete: [
      "stale: data without a manifest, older than 24h",
      "orphan-old: a manifest without its data, older than 24h",
    ],
  });
  const short = planRetention(
    [snap("x", 0.1, "incomplete")],
    { retainCount: 1, incompleteGraceMs: HOUR },
    NOW,
  );
  assertEquals(summary(short).delete, ["x: data without a manifest, older than 1h"]);
});

Deno.test("planRetention() keeps an unusable snapshot and does not count it among the newest", () => {
  const plan = planRetention(
    [snap("bad", 0, "invalid"), snap("d1", 1), snap("d2", 2)],
    { retainCount: 1 },
    NOW,
  );
  assertEquals(summary(plan), {
    keep: ["bad: unusable: left for an operator to look at", "d1: one of the newest 1"],
    delete: ["d2: older than the newest 1"],
  });
});

Deno.test("planRetention() orders equal times by name, newest name first, and handles an empty store", () => {
  const plan = planRetention([snap("a", 1), snap("b", 1)], { retainCount: 1 }, NOW);
  assertEquals(summary(plan), { keep: ["b: one of the newest 1"], delete: ["a: older than the newest 1"] });
  assertEquals(summary(planRetention([], { retainCount: 3 }, NOW)), { keep: [], delete: [] });
});

Deno.test("planRetention() keeps a snapshot dated in the future (clock skew) as the newest", () => {
  const plan = planRetention([snap("future", -1), snap("d1", 1)], { retainCount: 1 }, NOW);
  assertEquals(summary(plan), {
    keep: ["future: one of the newest 1"],
    delete: ["d1: older than the newest 1"],
  });
});

Deno.test("planRetention() refuses a retainCount below 1 and a negative age", () => {
  assertThrows(
    () => planRetention([], { retainCount: 0 }, NOW),
    RangeError,
    "'retainCount' must be an integer of at least 1: current value is 0",
  );
  assertThrows(
    () => planRetention([], { retainCount: 1, retainAgeMs: -1 }, NOW),
    RangeError,
    "'retainAgeMs' must be a duration of 0 or more: current value is -1",
  );
});

Deno.test("formatDuration() spells durations as the configuration does", () => {
  assertEquals(formatDuration(DEFAULT_INCOMPLETE_GRACE_MS), "24h");
  assertEquals(formatDuration(7 * DAY), "168h");
  assertEquals(formatDuration(90 * 60_000), "1h30m");
  assertEquals(formatDuration(90_000), "1m30s");
  assertEquals(formatDuration(1500), "1s500ms");
  assertEquals(formatDuration(0), "0s");
});

Deno.test("retentionPolicy() takes BACKUP_RETAIN_COUNT, BACKUP_RETAIN_AGE and BACKUP_NAME's fixed prefix", () => {
  const backup = {
    name: "db-backup-%Y-%m-%d",
    ttlSeconds: 60,
    from: "primary",
    retainCount: 3,
    onStop: false,
    verify: false,
    archiveIntervalSeconds: 60,
  } as const;
  assertEquals(retentionPolicy(backup), { retainCount: 3, namePrefix: "db-backup-" });
  assertEquals(retentionPolicy({ ...backup, retainAgeMs: DAY }), {
    retainCount: 3,
    namePrefix: "db-backup-",
    retainAgeMs: DAY,
  });
  assertEquals(retentionPolicy({ ...backup, name: "%Y%m%d" }), { retainCount: 3 });
});

/** A manifest of a snapshot taken `daysAgo` days before NOW. */
function manifest(name: string, daysAgo: number, size = 10): Manifest {
  return testManifest(name, new Date(NOW.getTime() - daysAgo * DAY).toISOString(), size);
}

Deno.test("inventorySnapshots() sorts what the store holds into complete, incomplete, orphaned and invalid", async () => {
  const store = new MemoryStore(NOW);
  addSnapshot(store, manifest("s1", 1));
  addSnapshot(store, manifest("s2", 2), 9);
  store.set(manifestKey("s3"), formatManifest(manifest("s3", 3)));
  store.set(dataKey("s4"), new Uint8Array(5), new Date(NOW.getTime() - 4 * DAY));
  store.set(manifestKey("s5"), "{not json", new Date(NOW.getTime() - 5 * DAY));
  store.set("notes.txt", "left alone");
  const found = await inventorySnapshots(store);
  assertEquals(
    found.map((s) => [s.name, s.state, s.keys, s.problem ?? ""]),
    [
      ["s1", "complete", [manifestKey("s1"), dataKey("s1")], ""],
      [
        "s2",
        "invalid",
        [manifestKey("s2"), dataKey("s2")],
        "its data object is 9 bytes but the manifest says 10",
      ],
      ["s3", "orphaned", [manifestKey("s3")], `its data object '${dataKey("s3")}' is missing`],
      [
        "s4",
        "incomplete",
        [dataKey("s4")],
        "its data object has no manifest (the backup did not finish, or is still being written)",
      ],
      ["s5", "invalid", [manifestKey("s5")], found[4].problem ?? ""],
    ],
  );
  assert(found[4].problem?.startsWith("its manifest is not valid JSON"), found[4].problem);
  assertEquals(found[0].manifest?.name, "s1");
  assertEquals(found[0].size, 10);
});

Deno.test("pruneSnapshots() deletes what the plan says, manifest first, and keeps the protected one", async () => {
  const store = new MemoryStore(NOW);
  for (let d = 1; d <= 5; d++) addSnapshot(store, manifest(`s${d}`, d));
  store.set(dataKey("old-incomplete"), new Uint8Array(3), new Date(NOW.getTime() - 2 * DAY));
  store.set(dataKey("uploading"), new Uint8Array(3), new Date(NOW.getTime() - HOUR));
  const result = await pruneSnapshots(store, { retainCount: 2 }, { protect: "s5", now: NOW });
  assertEquals(result.deleted, ["old-incomplete", "s3", "s4"]);
  assertEquals(result.failed, []);
  assertEquals(
    [...store.objects.keys()].sort(),
    [
      manifestKey("s1"),
      manifestKey("s2"),
      manifestKey("s5"),
      dataKey("s1"),
      dataKey("s2"),
      dataKey("s5"),
      dataKey("uploading"),
    ].sort(),
  );
});

Deno.test("pruneSnapshots() reports a deletion that fails and goes on with the others", async () => {
  const store = new MemoryStore(NOW);
  for (let d = 1; d <= 4; d++) addSnapshot(store, manifest(`s${d}`, d));
  store.failDelete.add(manifestKey("s3"));
  const result = await pruneSnapshots(store, { retainCount: 1 }, { now: NOW });
  assertEquals(result.deleted, ["s2", "s4"]);
  assertEquals(result.failed, [{
    name: "s3",
    keys: [manifestKey("s3"), dataKey("s3")],
    error: `permission denied: ${manifestKey("s3")}`,
  }]);
  assert(
    store.objects.has(dataKey("s3")),
    "the data of a snapshot whose manifest could not be deleted is gone",
  );
  assertEquals(result.plan.keep.map((d) => d.snapshot.name), ["s1"]);
});

Deno.test("planRetention() neither counts nor deletes another cluster's snapshots in a shared store", () => {
  const t = (h: number) => new Date(Date.UTC(2026, 10, 25, h));
  const snap = (name: string, h: number) => ({
    name,
    time: t(h),
    state: "complete" as const,
    keys: [`${name}.manifest.json`, `${name}.xbstream.zst`],
  });
  const mine = [snap("a-backup-1", 1), snap("a-backup-2", 2)];
  const theirs = [snap("b-backup-1", 3), snap("b-backup-2", 4)];
  const plan = planRetention([...mine, ...theirs], { retainCount: 1, namePrefix: "a-backup-" }, t(5));
  assertEquals(plan.delete.map((d) => d.snapshot.name), ["a-backup-1"]);
  assertEquals(plan.keep.map((d) => d.snapshot.name).sort(), ["a-backup-2", "b-backup-1", "b-backup-2"]);
});
