/**
 * The binlog archive's side of retention, on plain data: which archived binlogs pruning deletes with the
 * snapshots (`prunableBinlogs`), and `pruneSnapshots` on a store in memory (index entry before data); and what
 * the catalogue hands a replay plan (`replayableSegments`).
 */
import { assert, assertEquals } from "./assert.ts";
import { ORPHANED_BINLOG_GRACE_MS, prunableBinlogs, pruneSnapshots } from "../../src/backup/retention.ts";
import { listSegments, replayableSegments } from "../../src/binlog/catalog.ts";
import { planRecovery, snapshotPoint } from "../../src/binlog/plan.ts";
import { formatSegment, indexKeyOf, type Segment, segmentKeys } from "../../src/binlog/segment.ts";
import { addSnapshot, MemoryStore } from "./memory_store.ts";
import { NOW, segment as seg, snapshot } from "./segments.ts";

const A = seg("", "0-1-5", 1);
const B = seg("0-1-5", "0-1-10", 2);
const C = seg("0-1-10", "0-1-15", 3);
const D = seg("0-1-15", "0-1-20", 4);

Deno.test("prunableBinlogs() deletes exactly what every snapshot kept holds already, oldest first", () => {
  const kept = [snapshot("s2", 2, "0-1-12"), snapshot("s3", 1, "0-1-18")];
  assertEquals(prunableBinlogs(kept, [D, C, B, A]).map((d) => d.segment.key), [A.key, B.key]);
  // C straddles the oldest kept snapshot: it holds 0-1-13..15, which s2 needs.
  const exact = [snapshot("s2", 2, "0-1-10")];
  assertEquals(prunableBinlogs(exact, [A, B, C, D]).map((d) => d.segment.key), [A.key, B.key]);
  const r = prunableBinlogs(kept, [A])[0];
  assert(r.reason.includes("s2"), r.reason);
  assertEquals(r.lost, false);
});

Deno.test("prunableBinlogs() deletes nothing when no snapshot is kept, nor binlogs of another flavour", () => {
  assertEquals(prunableBinlogs([], [A, B, C, D]), []);
  const mysql = seg("", "3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5", 5, { flavour: "mysql" });
  assertEquals(prunableBinlogs([snapshot("s3", 1, "0-1-18")], [mysql]), []);
});

Deno.test("prunableBinlogs() deletes lost index entries by the same rule, and another history's binlogs", () => {
  const lostOld = seg("0-1-5", "0-1-10", 6);
  const lostNew = seg("0-1-15", "0-1-20", 7);
  // A primary's tail that a failover lost: 0-2-… never reached the snapshots kept.
  const tail = seg("0-1-10", "0-1-10,0-2-13", 8);
  const out = prunableBinlogs([snapshot("s2", 2, "0-1-12")], [A, C, tail], [lostOld, lostNew]);
  assertEquals(out.map((d) => [d.segment.key, d.lost]), [[A.key, false], [lostOld.key, true], [
    tail.key,
    false,
  ]]);
});

Deno.test("prunableBinlogs() compares with a MariaDB snapshot's full binlog state, not its position alone", () => {
  // The manifest's binlogState (every server_id) is what counts, not its gtid position alone.
  const m = { ...snapshot("s", 1, "0-1-12"), binlogState: "0-2-3,0-1-12" };
  const other = seg("0-2-1", "0-2-3,0-1-12", 9);
  assertEquals(prunableBinlogs([m], [other]).map((d) => d.segment.key), [other.key]);
  assertEquals(snapshotPoint(m).state, "0-2-3,0-1-12");
});

/** Stores a segment: its data (size bytes) and its index entry. */
function addSegment(store: MemoryStore, s: Segment, withData = true): void {
  if (withData) store.set(s.key, new Uint8Array(s.size));
  store.set(indexKeyOf(s.key)!, formatSegment(s));
}

Deno.test("pruneSnapshots() prunes the binlogs the snapshots kept do not need, index entry first", async () => {
  const store = new MemoryStore(NOW);
  const deletes: string[][] = [];
  const del = store.delete.bind(store);
  store.delete = (keys) => {
    deletes.push([...keys]);
    return del(keys);
  };
  addSnapshot(store, snapshot("s1", 3, "0-1-5"));
  addSnapshot(store, snapshot("s2", 2, "0-1-12"));
  addSnapshot(store, snapshot("s3", 1, "0-1-18"));
  for (const s of [A, B, C, D]) addSegment(store, s);
  const lost = seg("", "0-1-4", 0);
  addSegment(store, lost, false);
  const r = await pruneSnapshots(store, { retainCount: 2 }, { now: NOW });
  assertEquals(r.deleted, ["s1"]);
  assertEquals(r.binlogsDeleted, [lost.key, A.key, B.key]);
  assertEquals(r.binlogsFailed, []);
  const binlogCalls = deletes.filter((k) => k[0].startsWith("binlogs/"));
  assertEquals(binlogCalls, [lost, A, B].flatMap((s) => [[indexKeyOf(s.key)!], [s.key]]));
  const left = [...store.objects.keys()].filter((k) => k.startsWith("binlogs/")).sort();
  assertEquals(left, [C, D].flatMap((s) => [s.key, indexKeyOf(s.key)!]).sort());
});

Deno.test("pruneSnapshots() keeps the binlogs of a snapshot it could not delete, and reports a binlog it could not", async () => {
  const store = new MemoryStore(NOW);
  addSnapshot(store, snapshot("s1", 3, "0-1-5"));
  addSnapshot(store, snapshot("s2", 2, "0-1-12"));
  store.failDelete.add("s1.manifest.json");
  for (const s of [A, B, C]) addSegment(store, s);
  let r = await pruneSnapshots(store, { retainCount: 1 }, { now: NOW });
  assertEquals(r.failed.map((f) => f.name), ["s1"]);
  assertEquals(r.binlogsDeleted, [A.key], "s1 is still there: B, which it needs, stays");
  store.failDelete.clear();
  store.failDelete.add(indexKeyOf(B.key)!);
  r = await pruneSnapshots(store, { retainCount: 1 }, { now: NOW });
  assertEquals(r.deleted, ["s1"]);
  assertEquals(r.binlogsDeleted, []);
  assertEquals(r.binlogsFailed, [{ key: B.key, error: `permission denied: ${indexKeyOf(B.key)}` }]);
  assert(store.objects.has(B.key), "the data went before its index entry");
});

Deno.test("a store shared by two clusters: each lists, plans and prunes only its own binlog archive", async () => {
  const store = new MemoryStore(NOW);
  // Cluster a- (BACKUP_NAME a-%Y…) and cluster b- (b-%Y…), both server_id 1, domain 0.
  const a1 = seg("0-1-10", "0-1-20", 1, {
    key: segmentKeys("n1", 1, "mysql-bin.000001", NOW.toISOString(), "a-").data,
  });
  const b1 = seg("0-1-100", "0-1-200", 2, {
    key: segmentKeys("n1", 1, "mysql-bin.000001", NOW.toISOString(), "b-").data,
    archivedAt: new Date(NOW.getTime() + 60_000).toISOString(),
  });
  const b0 = seg("0-1-50", "0-1-100", 0, {
    key: segmentKeys("n1", 1, "mysql-bin.000000", NOW.toISOString(), "b-").data,
  });
  for (const s of [a1, b0, b1]) addSegment(store, s);
  assertEquals((await listSegments(store, { cluster: "a-" })).map((s) => s.key), [a1.key]);
  assertEquals(
    (await listSegments(store, { cluster: "b-" })).map((s) => s.key).sort(),
    [b0.key, b1.key].sort(),
  );
  // Cluster a- restores to its own end, not to cluster b-'s newer segment.
  const p = planRecovery(
    "mariadb",
    [{ name: "a-snap", createdAt: NOW.toISOString(), state: "0-1-10" }],
    await listSegments(store, { cluster: "a-" }),
    { kind: "end" },
  );
  assertEquals(p.position, "0-1-20");
  // Pruning as cluster a- (its snapshot at 0-1-200 would make b-'s binlogs prunable) leaves b-'s archive alone.
  addSnapshot(store, snapshot("a-1", 1, "0-1-200"));
  addSnapshot(store, snapshot("b-1", 2, "0-1-60"));
  const r = await pruneSnapshots(store, { retainCount: 1, namePrefix: "a-" }, { now: NOW });
  assertEquals(r.binlogsDeleted, [a1.key]);
  assert(store.objects.has(b0.key) && store.objects.has(b1.key));
});

Deno.test("pruneSnapshots() deletes a binlog data object without an index entry once older than the grace", async () => {
  const store = new MemoryStore(NOW);
  addSnapshot(store, snapshot("s1", 1, "0-1-5"));
  addSegment(store, C);
  const old = segmentKeys("n1", 1, "mysql-bin.000090", "2026-11-01T00:00:00Z").data;
  const recent = segmentKeys("n1", 1, "mysql-bin.000091", "2026-11-25T00:00:00Z").data;
  store.set(old, new Uint8Array(5), new Date(NOW.getTime() - ORPHANED_BINLOG_GRACE_MS - 1));
  store.set(recent, new Uint8Array(5), new Date(NOW.getTime() - 3_600_000)); // an upload under way
  const r = await pruneSnapshots(store, { retainCount: 2 }, { now: NOW });
  assertEquals(r.binlogsDeleted, [old]);
  assert(!store.objects.has(old));
  assert(store.objects.has(recent) && store.objects.has(C.key) && store.objects.has(indexKeyOf(C.key)!));
  assert(ORPHANED_BINLOG_GRACE_MS >= 24 * 3_600_000);
});

Deno.test("replayableSegments() keeps one flavour's segments and lost ones, and warns of each entry skipped", async () => {
  const store = new MemoryStore(NOW);
  const mysql = seg("", "3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5", 5, { flavour: "mysql" });
  const lostB = seg("0-1-5", "0-1-10", 2);
  for (const s of [A, C, mysql]) addSegment(store, s);
  addSegment(store, lostB, false);
  store.set(indexKeyOf(D.key)!, "not an index entry");
  const warned: string[] = [];
  const log = { warn: (_: string, p: Record<string, unknown>) => warned.push(`${p.key}: ${p.problem}`) };
  const r = await replayableSegments(store, { cluster: "", flavour: "mariadb", log });
  assertEquals(r.segments.map((s) => s.key).sort(), [A.key, C.key].sort());
  assertEquals(r.lost.map((s) => s.key), [lostB.key]);
  assertEquals(warned.length, 2, warned.join("; "));
  assert(
    warned.some((w) => w.startsWith(`${indexKeyOf(lostB.key)}: its binlog ${lostB.key} is missing`)),
    warned[0],
  );
  assert(warned.some((w) => w.startsWith(`${indexKeyOf(D.key)}: `)), warned.join("; "));
  const mine = await replayableSegments(store, { cluster: "", flavour: "mysql", log });
  assertEquals([mine.segments.map((s) => s.key), mine.lost], [[mysql.key], []]);
});
