/**
 * What {@link ClusterKv} promises, as one suite that runs against real Consul (ConsulClusterKv, in
 * tests/integration/cluster_kv_test.ts) and against the in-memory fake the HA unit tests use
 * (tests/unit/fake_cluster_kv_test.ts): so the fake keeps Consul's semantics, checked on every run.
 *
 * Each case gets a cluster of its own (its own SERVICE_NAME, so its own keys) from the backend.
 *
 * @module
 */
import { assert, assertEquals, assertRejects } from "../assert.ts";
import { ConsulUnavailableError, type KvEntry, SessionGoneError } from "../../../src/consul.ts";
import type {
  ClusterKv,
  FailoverRecord,
  MemberRecord,
  PrimaryLock,
  VerificationRecord,
} from "../../../src/cluster_kv.ts";
import { memberRecord } from "../member_record.ts";
import { testManifest } from "../memory_store.ts";

/** One cluster's keys, and what a test needs to do besides the interface. */
export interface KvCluster {
  /** The ClusterKv under test, for this cluster's SERVICE_NAME and key variables. */
  readonly kv: ClusterKv;
  /** A new live session (another node's). */
  newSession(): Promise<string>;
  /** Ends a session as Consul does when it expires or is destroyed (no lock-delay). */
  endSession(id: string): Promise<void>;
  /** A plain write of a key, by anyone (an operator, another program). */
  put(key: string, value: string): Promise<void>;
  /** The key as Consul holds it. */
  get(key: string): Promise<KvEntry | undefined>;
  /** The same ClusterKv, over a Consul that cannot be reached. */
  unreachable(): ClusterKv;
}

/** Makes clusters; disposing it stops what it started. */
export interface KvBackend extends AsyncDisposable {
  /**
   * A cluster with this SERVICE_NAME and these key variables (`PRIMARY_KEY`, …; the rest by default).
   */
  cluster(serviceName: string, env?: Record<string, string>): Promise<KvCluster>;
}

type Case = (c: KvCluster, serviceName: string, backend: KvBackend) => Promise<void>;

/**
 * Registers the suite for one backend: one Deno test, one step per case.
 *
 * @param name The backend, as in the test's name.
 * @param open Starts the backend.
 */
export function clusterKvContract(name: string, open: () => Promise<KvBackend>): void {
  Deno.test(`ClusterKv contract: ${name}`, async (t) => {
    await using backend = await open();
    let n = 0;
    for (const [title, run] of CASES) {
      const serviceName = `kv${++n}x`;
      await t.step(title, async () => await run(await backend.cluster(serviceName), serviceName, backend));
    }
  });
}

const p1 = { node: "n1", address: "10.0.0.1", port: 3306 };
const p2 = { node: "n2", address: "10.0.0.2", port: 3306 };

/** A primary lock without its ModifyIndex (which only the takeover case compares). */
function bare({ modifyIndex: _, ...lock }: PrimaryLock): PrimaryLock {
  return lock;
}

const CASES: [string, Case][] = [
  ["ensureSession() renews a live session and replaces one that has ended", async (c) => {
    const first = await c.kv.ensureSession(undefined);
    assertEquals(first.created, true);
    assertEquals(await c.kv.ensureSession(first.id), { id: first.id, created: false });
    await c.endSession(first.id);
    const next = await c.kv.ensureSession(first.id);
    assertEquals(next.created, true);
    assert(next.id !== first.id);
  }],

  ["read() of a cluster with no keys", async (c) => {
    assertEquals(await c.kv.read(), {
      primary: {},
      failoverLock: { modifyIndex: 0 },
      failoverPaused: false,
      live: [],
      departed: [],
      snapshotPublished: false,
      members: [],
    });
  }],

  ["the primary lock: held by one session; released, it keeps the record given and is free", async (c) => {
    const [a, b] = [await c.newSession(), await c.newSession()];
    assertEquals(await c.kv.acquirePrimary(a, p1), true);
    assertEquals(await c.kv.acquirePrimary(b, p2), false, "held by a");
    assertEquals(bare(await c.kv.primary()), { record: p1, session: a });
    assertEquals((await c.get(c.kv.keys.primary))?.value, '{"node":"n1","address":"10.0.0.1","port":3306}');
    assertEquals(await c.kv.acquirePrimary(a, { ...p1, ready: true }), true, "the holder rewrites it");
    assertEquals(bare(await c.kv.primary()), { record: { ...p1, ready: true }, session: a });
    await c.kv.releasePrimary(b, p2);
    assertEquals(
      bare((await c.kv.read()).primary),
      { record: { ...p1, ready: true }, session: a },
      "b never held it",
    );
    await c.kv.releasePrimary(a, p1);
    assertEquals(bare((await c.kv.read()).primary), { record: p1 });
    assertEquals(await c.kv.acquirePrimary(b, p2), true, "released: free at once");
    assertEquals(bare(await c.kv.primary()), { record: p2, session: b });
  }],

  ["a session that ended released the primary lock with its record, and cannot take it again", async (c) => {
    const [a, b] = [await c.newSession(), await c.newSession()];
    assertEquals(await c.kv.acquirePrimary(a, { ...p1, ready: true }), true);
    await c.endSession(a);
    assertEquals(bare(await c.kv.primary()), { record: { ...p1, ready: true } });
    await assertRejects(() => c.kv.acquirePrimary(a, p1), SessionGoneError);
    await c.kv.releasePrimary(a, p2);
    assertEquals(
      bare(await c.kv.primary()),
      { record: { ...p1, ready: true } },
      "a release by it changes nothing",
    );
    assertEquals(await c.kv.acquirePrimary(b, p2), true);
  }],

  ["a stale holder's primary lock is taken over only at the index read, keeping its record", async (c) => {
    const [a, b] = [await c.newSession(), await c.newSession()];
    assertEquals(await c.kv.takeOverPrimary({}), false, "nothing to take over");
    assertEquals(await c.kv.acquirePrimary(a, { ...p1, ready: true }), true);
    const seen = await c.kv.primary();
    assertEquals(await c.kv.acquirePrimary(a, { ...p1, ready: true }), true, "the same value again");
    assertEquals(
      (await c.kv.primary()).modifyIndex,
      seen.modifyIndex,
      "Consul wrote nothing: the index stays",
    );
    assert(seen.modifyIndex !== undefined && seen.modifyIndex > 0, `an index: ${seen.modifyIndex}`);
    assertEquals((await c.kv.read()).primary.modifyIndex, seen.modifyIndex, "read() has it too");
    assertEquals(await c.kv.heartbeatPrimary(b, p2, seen.modifyIndex!), false, "b does not hold it");
    assertEquals(
      await c.kv.heartbeatPrimary(a, { ...p1, ready: true }, seen.modifyIndex! + 1),
      false,
      "moved",
    );
    assertEquals(
      await c.kv.heartbeatPrimary(a, { ...p1, ready: true }, seen.modifyIndex!),
      true,
      "a's heartbeat",
    );
    const beat = await c.kv.primary();
    assert(beat.modifyIndex! > seen.modifyIndex!, "the heartbeat moved the index");
    assertEquals(beat.record, { ...p1, ready: true }, "the same record");
    assertEquals(await c.kv.heartbeatPrimary(a, { ...p1, ready: true }, beat.modifyIndex!), true, "again");
    const again = await c.kv.primary();
    assert(again.modifyIndex! > beat.modifyIndex!, "each heartbeat moves it");
    assertEquals(await c.kv.takeOverPrimary(beat), false, "moved since it was seen");
    assertEquals(await c.kv.takeOverPrimary({ ...again, session: b }), false, "b does not hold it");
    assertEquals(bare(await c.kv.primary()), { record: { ...p1, ready: true }, session: a }, "unchanged");
    assertEquals(await c.kv.takeOverPrimary(again), true);
    assertEquals(bare(await c.kv.primary()), { record: { ...p1, ready: true } }, "free, record kept");
    assertEquals(await c.kv.takeOverPrimary(again), false, "once");
    assertEquals(await c.kv.acquirePrimary(b, p2), true, "free at once for another session");
    const taken = (await c.kv.primary()).modifyIndex!;
    assertEquals(
      await c.kv.heartbeatPrimary(a, { ...p1, ready: true }, taken),
      false,
      "a's is refused",
    );
    const gone = await c.newSession();
    assertEquals(await c.kv.acquirePrimary(gone, p2), false);
    await c.endSession(gone);
    const now = await c.kv.primary();
    assertEquals(await c.kv.heartbeatPrimary(gone, p2, now.modifyIndex!), false, "an ended session: false");
  }],

  [
    "the failover lock is taken by check-and-set: held, or written since it was read, it is refused",
    async (c) => {
      const [a, b] = [await c.newSession(), await c.newSession()];
      const none = await c.kv.failoverLock();
      assertEquals(none, { modifyIndex: 0 });
      const r1: FailoverRecord = { node: "n1", at: 1_000, failedPrimary: "n0" };
      const r2: FailoverRecord = { node: "n2", at: 2_000, failedPrimary: "n0" };
      assertEquals(await c.kv.acquireFailoverLock(a, r1, none), true);
      const held = await c.kv.failoverLock();
      assertEquals([held.session, held.record, held.value], [
        a,
        r1,
        '{"node":"n1","at":1000,"failedPrimary":"n0"}',
      ]);
      assert(held.modifyIndex > 0);
      assertEquals(await c.kv.acquireFailoverLock(b, r2, none), false, "it exists now");
      assertEquals(await c.kv.acquireFailoverLock(b, r2, held), false, "a holds it");
      await c.kv.releaseFailoverLock(a, { ...r1, promoted: "n3" });
      const done = await c.kv.failoverLock();
      assertEquals([done.session, done.record], [undefined, { ...r1, promoted: "n3" }]);
      assertEquals(
        await c.kv.acquireFailoverLock(b, r2, held),
        false,
        "free, but released since it was read",
      );
      await c.put(c.kv.keys.failoverLock, "operator was here");
      assertEquals(await c.kv.acquireFailoverLock(b, r2, done), false, "written since it was read");
      const foreign = await c.kv.failoverLock();
      assertEquals([foreign.record, foreign.value], [undefined, "operator was here"]);
      assertEquals(await c.kv.acquireFailoverLock(b, r2, foreign), true);
      assertEquals((await c.kv.failoverLock()).record, r2);
      await c.kv.releaseFailoverLock(b, foreign.value!);
      const kept = await c.kv.failoverLock();
      assertEquals([kept.session, kept.value], [undefined, "operator was here"], "the raw value found, kept");
    },
  ],

  ["a session that ended cannot take the failover lock", async (c) => {
    const a = await c.newSession();
    const found = await c.kv.failoverLock();
    await c.endSession(a);
    await assertRejects(() => c.kv.acquireFailoverLock(a, { node: "n1", at: 1 }, found), SessionGoneError);
    assertEquals(await c.kv.failoverLock(), { modifyIndex: 0 });
  }],

  [
    "member records: live while their session lasts, departed after, in key order, foreign values skipped",
    async (c) => {
      const [a, b] = [await c.newSession(), await c.newSession()];
      const n1 = memberRecord("n1", { role: "primary" });
      const n2 = memberRecord("n2");
      assertEquals(await c.kv.publishMember(b, n2), true);
      assertEquals(await c.kv.publishMember(a, n1), true);
      await c.put(`${c.kv.keys.members}n0`, JSON.stringify({ node: "n0", address: "10.0.0.9" }));
      await c.put(`${c.kv.keys.members}n3`, "not json");
      let view = await c.kv.read();
      assertEquals(view.live, [{ record: n1, session: a }, { record: n2, session: b }]);
      assertEquals(view.departed, []);
      await c.endSession(b);
      view = await c.kv.read();
      assertEquals(view.live, [{ record: n1, session: a }]);
      assertEquals(view.departed, [n2]);
      assertEquals(view.members, [{ record: n1, session: a }, { record: n2 }]);
      assertEquals(await c.kv.members(), view.members);
      assertEquals(await c.kv.publishMember(b, { ...n2, updatedAt: 200 }), false, "its session is gone");
      const later: MemberRecord = { ...n1, executed: "0-1-9", updatedAt: 300 };
      assertEquals(await c.kv.publishMember(a, later), true);
      assertEquals((await c.kv.members())[0], { record: later, session: a });
      assertEquals(JSON.parse((await c.get(`${c.kv.keys.members}n1`))!.value), later);
    },
  ],

  ["the pause key: its existence pauses failover, whatever its value", async (c) => {
    await c.put(c.kv.keys.failoverPause, "maintenance until 14:00");
    let view = await c.kv.read();
    assertEquals([view.failoverPaused, view.failoverPause], [true, "maintenance until 14:00"]);
    await c.put(c.kv.keys.failoverPause, "");
    view = await c.kv.read();
    assertEquals([view.failoverPaused, view.failoverPause], [true, ""]);
  }],

  ["the snapshot keys: the manifest and binlog published, the last verification", async (c) => {
    const manifest = testManifest("kv-backup-1", "2026-11-25T12:00:00.000Z");
    assertEquals(await c.kv.lastBackup(), undefined);
    await c.kv.publishSnapshot(manifest, "mysql-bin.000007");
    assertEquals(JSON.parse((await c.kv.lastBackup())!), manifest);
    assertEquals(await c.kv.lastBinlog(), "mysql-bin.000007");
    let view = await c.kv.read();
    assertEquals([view.snapshotPublished, view.lastBackup, view.lastBinlog], [
      true,
      JSON.stringify(manifest),
      "mysql-bin.000007",
    ]);
    await c.put(c.kv.keys.lastBackup, "  ");
    assertEquals(await c.kv.lastBackup(), undefined, "a blank value names nothing");
    assertEquals((await c.kv.read()).snapshotPublished, false);
    const verified: VerificationRecord = {
      name: manifest.name,
      ok: false,
      node: "n2",
      at: "x",
      error: "bad",
    };
    assertEquals(await c.kv.lastVerification(), undefined);
    await c.kv.recordVerification(verified);
    assertEquals(await c.kv.lastVerification(), verified);
    assertEquals((await c.kv.read()).lastVerified, verified);
    await c.put(c.kv.keys.lastVerified, '{"name":"kv-backup-1"}');
    assertEquals(await c.kv.lastVerification(), undefined, "not a record: as if none");
    view = await c.kv.read();
    assertEquals(view.lastVerified, undefined);
  }],

  ["the archive record: written by check-and-set on the ModifyIndex it was read with", async (c) => {
    const rec = {
      node: "n1",
      serverId: 1,
      file: "mysql-bin.000004",
      createdAt: "2026-12-02T10:00:00Z",
      endState: "0-1-10",
      caughtUpAt: "2026-12-02T10:01:00.000Z",
      lagSeconds: 0,
    };
    const none = await c.kv.archiveRecordEntry();
    assertEquals(none, { modifyIndex: 0 });
    assertEquals(await c.kv.recordArchive(rec, 0), true);
    const read = await c.kv.archiveRecordEntry();
    assertEquals(read.record, rec);
    assertEquals(await c.kv.archiveRecord(), rec);
    // Another archiver writes after this one read: this one's stale write is refused and changes nothing.
    assertEquals(
      await c.kv.recordArchive({ ...rec, node: "n2", endState: "0-1-12" }, read.modifyIndex),
      true,
    );
    assertEquals(await c.kv.recordArchive({ ...rec, endState: "0-1-11" }, read.modifyIndex), false);
    assertEquals(await c.kv.recordArchive(rec, 0), false, "0 creates only");
    assertEquals((await c.kv.archiveRecord())?.node, "n2");
  }],

  ["the backup lock: one session at a time; released, it is empty and free", async (c) => {
    const [a, b] = [await c.newSession(), await c.newSession()];
    const mine = { node: "n1", job: "snapshot" as const, startedAt: "2026-11-25T12:00:00.000Z" };
    assertEquals(await c.kv.backupLockHolder(), undefined);
    assertEquals(await c.kv.acquireBackupLock(a, mine), true);
    assertEquals(await c.kv.acquireBackupLock(b, { ...mine, node: "n2", job: "verify" }), false);
    assertEquals(
      await c.kv.backupLockHolder(),
      '{"node":"n1","job":"snapshot","startedAt":"2026-11-25T12:00:00.000Z"}',
    );
    await c.kv.releaseBackupLock(b);
    assertEquals((await c.get(c.kv.keys.backupLock))?.session, a, "b never held it");
    await c.kv.releaseBackupLock(a);
    const released = await c.get(c.kv.keys.backupLock);
    assertEquals([released?.session, released?.value], [undefined, ""]);
    assertEquals(await c.kv.acquireBackupLock(b, { ...mine, node: "n2" }), true);
    await c.endSession(a);
    await assertRejects(() => c.kv.acquireBackupLock(a, mine), SessionGoneError);
  }],

  [
    "keys by exact name: a service sharing the prefix is not read, a key renamed outside it is",
    async (_, svc, backend) => {
      const c = await backend.cluster(svc, {
        PRIMARY_KEY: `legacy/${svc}/primary`,
        FAILOVER_PAUSE_KEY: `ops/${svc}-paused`,
      });
      const a = await c.newSession();
      // Another service whose name starts with this one's, and the default names this cluster does not use.
      await c.put(`${svc}-shop-primary`, JSON.stringify(p2));
      await c.put(`${svc}-shop-failover-paused`, "");
      await c.put(`${svc}-shop-members/n9`, JSON.stringify(memberRecord("n9")));
      await c.put(`${svc}-primary`, JSON.stringify(p2));
      await c.put(`${svc}-failover-paused`, "");
      assertEquals(await c.kv.read(), {
        primary: {},
        failoverLock: { modifyIndex: 0 },
        failoverPaused: false,
        live: [],
        departed: [],
        snapshotPublished: false,
        members: [],
      });
      assertEquals(await c.kv.acquirePrimary(a, p1), true);
      assertEquals((await c.get(`legacy/${svc}/primary`))?.session, a);
      await c.put(`ops/${svc}-paused`, "");
      const n1 = memberRecord("n1");
      assertEquals(await c.kv.publishMember(a, n1), true);
      const view = await c.kv.read();
      assertEquals([bare(view.primary), view.failoverPaused, view.live], [
        { record: p1, session: a },
        true,
        [{ record: n1, session: a }],
      ]);
    },
  ],

  ["the cluster identity is written once: the first record stays, and the view reads it", async (c) => {
    const first = { id: "0f6e2b1c-7d1a-4c57-9a3e-5b2d8f0c1a22", node: "n1", at: 1700000000000 };
    assertEquals(await c.kv.publishClusterIdentity(first), first);
    assertEquals(await c.kv.publishClusterIdentity({ ...first, id: "another", node: "n2" }), first);
    assertEquals((await c.kv.read()).cluster, first);
    await c.put(c.kv.keys.cluster, "not a record");
    assertEquals(await c.kv.publishClusterIdentity(first), undefined, "a foreign value is left as it is");
    assertEquals((await c.kv.read()).cluster, undefined);
  }],

  ["every method says ConsulUnavailableError when Consul cannot be reached", async (c) => {
    const kv = c.unreachable();
    const s = "00000000-0000-0000-0000-000000000000";
    const calls: [string, () => Promise<unknown>][] = [
      ["ensureSession", () => kv.ensureSession(undefined)],
      ["read", () => kv.read()],
      ["primary", () => kv.primary()],
      ["acquirePrimary", () => kv.acquirePrimary(s, p1)],
      ["releasePrimary", () => kv.releasePrimary(s, p1)],
      ["takeOverPrimary", () => kv.takeOverPrimary({ session: s, modifyIndex: 1 })],
      ["heartbeatPrimary", () => kv.heartbeatPrimary(s, p1, 1)],
      ["failoverLock", () => kv.failoverLock()],
      ["acquireFailoverLock", () => kv.acquireFailoverLock(s, { node: "n1", at: 1 }, { modifyIndex: 0 })],
      ["releaseFailoverLock", () => kv.releaseFailoverLock(s, "")],
      ["publishMember", () => kv.publishMember(s, memberRecord("n1"))],
      ["members", () => kv.members()],
      ["lastBackup", () => kv.lastBackup()],
      ["lastBinlog", () => kv.lastBinlog()],
      ["publishSnapshot", () => kv.publishSnapshot(testManifest("x", "2026-11-25T12:00:00.000Z"), "b")],
      ["lastVerification", () => kv.lastVerification()],
      ["recordVerification", () => kv.recordVerification({ name: "x", ok: true, node: "n1", at: "t" })],
      ["acquireBackupLock", () => kv.acquireBackupLock(s, { node: "n1", job: "verify", startedAt: "t" })],
      ["backupLockHolder", () => kv.backupLockHolder()],
      ["releaseBackupLock", () => kv.releaseBackupLock(s)],
      ["publishClusterIdentity", () => kv.publishClusterIdentity({ id: "c1", node: "n1", at: 1 })],
      ["archiveRecordEntry", () => kv.archiveRecordEntry()],
    ];
    for (const [name, call] of calls) {
      const e = await call().then(() => undefined, (e: unknown) => e);
      assert(e instanceof ConsulUnavailableError, `${name}: ${e}`);
    }
  }],
];
