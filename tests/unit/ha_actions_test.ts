/**
 * The HA actions (src/ha/actions.ts, failover.ts, switchover.ts) and fact gathering (facts.ts), each on the
 * fakes of the server and Consul operators (tests/unit/fakes/), which follow the real ones' contracts.
 */
import { assert, assertEquals, assertRejects } from "./assert.ts";
import { FakeServer } from "./fakes/fake_server.ts";
import { FakeClusterKv } from "./fakes/fake_cluster_kv.ts";
import {
  bootstrapPrimary,
  endSwitchover,
  type ErrantFound,
  fence,
  follow,
  heartbeat,
  type Me,
  renewLease,
  serveAsPrimary,
  startReplication,
  takePrimaryLock,
} from "../../src/ha/actions.ts";
import { runFailover, waitForAppointment } from "../../src/ha/failover.ts";
import { checkedMembers, publishedFor } from "../../src/ha/failsafe.ts";
import { switchover } from "../../src/ha/switchover.ts";
import {
  gatherFacts,
  holdsLockIn,
  keepSession,
  readCluster,
  SWITCHOVER_STALE_MS,
  watchHeartbeat,
} from "../../src/ha/facts.ts";
import type { MemberRecord } from "../../src/ha/failover_plan.ts";
import type { NodeState, StateStore } from "../../src/state.ts";
import { Secret } from "../../src/config.ts";
import type { ReplicaStatus } from "../../src/mysql/flavour.ts";

const n1 = { node: "n1", address: "10.0.0.11", port: 3306 };
const n2 = { node: "n2", address: "10.0.0.12", port: 3306 };
const n3 = { node: "n3", address: "10.0.0.13", port: 3306 };

/** This node's state in memory. */
class MemoryState implements StateStore {
  saves: NodeState[] = [];
  constructor(public current: NodeState = {}) {}
  patch(changes: Partial<NodeState>): Promise<void> {
    this.current = JSON.parse(JSON.stringify({ ...this.current, ...changes }));
    this.saves.push(this.current);
    return Promise.resolve();
  }
}

function member(r: typeof n1, over: Partial<MemberRecord> = {}): MemberRecord {
  return {
    ...r,
    priority: 1,
    flavour: "mariadb",
    role: "replica",
    executed: "",
    retrieved: "",
    updatedAt: Date.now(),
    ...over,
  };
}

function replicating(from: typeof n1, over: Partial<ReplicaStatus> = {}): ReplicaStatus {
  return {
    sourceHost: from.address,
    sourcePort: from.port,
    ioRunning: "yes",
    sqlRunning: true,
    lagSeconds: 0,
    retrievedGtids: "",
    lastIoError: "",
    lastSqlError: "",
    ...over,
  };
}

/** A state store in memory. */
function memoryState(initial: NodeState = {}): StateStore {
  let current = initial;
  return {
    get current() {
      return current;
    },
    patch: (p) => (current = { ...current, ...p }, Promise.resolve()),
  };
}

/** A cluster of fakes: the keys, and this node (n2) with a session. */
function cluster() {
  const kv = new FakeClusterKv();
  const me: Me = { self: n2, session: kv.createSession() };
  return { kv, me };
}

Deno.test("fence() turns the server read-only and, asked to, releases the lock keeping the ready record", async () => {
  const { kv, me } = cluster();
  assert(await kv.acquirePrimary(me.session, { ...n2, ready: true }));
  const server = new FakeServer("mariadb", { readOnly: false });
  server.state.leaseUntil = Date.now() + 10_000;
  const r = await fence({ server, kv, self: n2, session: me.session, releaseLock: true });
  assertEquals(r.healthy, false);
  assertEquals(server.state.readOnly, true);
  assertEquals(server.state.leaseUntil, undefined, "no live lease left");
  const lock = await kv.primary();
  assertEquals(lock.session, undefined);
  assertEquals(
    lock.record,
    { ...n2, ready: true, fenced: true },
    "released by itself, marked fenced",
  );
});

Deno.test("fence() keeps the lock unless told, and never throws when the server or Consul fails", async () => {
  const { kv, me } = cluster();
  assert(await kv.acquirePrimary(me.session, n2));
  const server = new FakeServer("mariadb", { readOnly: false }).failOn("setReadOnly");
  assertEquals(
    (await fence({ server, kv, self: n2, session: me.session, releaseLock: false })).healthy,
    false,
  );
  assertEquals((await kv.primary()).session, me.session);
  kv.down();
  const r = await fence({ server: undefined, kv, self: n2, session: me.session, releaseLock: true });
  assertEquals(r.healthy, false);
});

Deno.test("takePrimaryLock() takes a free lock, and refuses one another session holds", async () => {
  const { kv, me } = cluster();
  assertEquals(await takePrimaryLock(kv, me), true);
  const other = { self: n3, session: kv.createSession() };
  assertEquals(await takePrimaryLock(kv, other), false);
  assertEquals((await kv.primary()).record?.node, "n2");
  // Refused with nobody holding it (an older session's lock-delay): false too, and nothing taken.
  kv.endSession(me.session, { lockDelay: true });
  assertEquals(await takePrimaryLock(kv, other), false);
  assertEquals((await kv.primary()).session, undefined);
});

Deno.test("serveAsPrimary() applies what it received, stops replicating, turns writable, then marks the lock ready", async () => {
  const { kv, me } = cluster();
  assert(await kv.acquirePrimary(me.session, n2));
  const server = new FakeServer("mariadb", { replica: replicating(n1, { retrievedGtids: "0-1-9" }) });
  const r = await serveAsPrimary({ server, kv, me, semiSync: true, leaseMs: 10_000, restore: undefined });
  assertEquals(r, { healthy: true, serving: true });
  assertEquals(server.methods(), [
    "replicaStatus",
    "waitForGtids",
    "resetReplicaAll",
    "setSemiSyncSource",
    "installLease",
    "extendLease",
    "setReadOnly",
  ]);
  const lease = server.calls.find((c) => c.method === "extendLease")!.args[0] as number;
  assert(lease > 9_000 && lease <= 10_000, `the lease runs from the session's renewal: ${lease}`);
  assertEquals(server.calls[1].args, ["0-1-9", 60]);
  assertEquals(server.state.readOnly, false);
  assertEquals(server.state.replica, undefined);
  assertEquals((await kv.primary()).record, { ...n2, ready: true });
});

Deno.test("serveAsPrimary() with REQUIRE_TLS alters the accounts before turning writable, and stays read-only if that fails", async () => {
  const requireTls = [{ sql: "ALTER USER IF EXISTS ?@'%' REQUIRE SSL", values: ["repl"] }];
  const { kv, me } = cluster();
  assert(await kv.acquirePrimary(me.session, n2));
  const server = new FakeServer();
  const args = { server, kv, me, semiSync: false, leaseMs: 10_000, restore: undefined, requireTls };
  assertEquals(await serveAsPrimary(args), { healthy: true, serving: true });
  assertEquals(server.methods(), ["replicaStatus", "installLease", "extendLease", "run", "setReadOnly"]);
  assertEquals(server.statements, requireTls);
  assertEquals(server.state.readOnly, false);
  // A failure is the step's: read-only, the lock not marked ready, one reason line; the next pass retries.
  const { kv: kv2, me: me2 } = cluster();
  assert(await kv2.acquirePrimary(me2.session, n2));
  const refused = new FakeServer().failOn(
    "run",
    new Error("Access denied; you need the CREATE USER privilege"),
  );
  const r = await serveAsPrimary({ ...args, server: refused, kv: kv2, me: me2 });
  assertEquals(r, {
    healthy: false,
    outcome: {
      level: "error",
      text: "Cannot make the accounts require TLS (REQUIRE_TLS): Access denied; you need the CREATE USER " +
        "privilege; staying read-only, tried again next pass",
    },
  });
  assertEquals(refused.state.readOnly, true);
  assert(!refused.methods().includes("setReadOnly"), refused.methods().join(", "));
  assertEquals((await kv2.primary()).record?.ready, undefined);
});

Deno.test("serveAsPrimary() never turns writable without a renewed session and a lease", async () => {
  const { kv, me } = cluster();
  assert(await kv.acquirePrimary(me.session, n2));
  kv.endSession(me.session);
  const server = new FakeServer();
  const r = await serveAsPrimary({ server, kv, me, semiSync: false, leaseMs: 10_000, restore: undefined });
  assertEquals(r.healthy, false);
  assertEquals(server.state.readOnly, true);
  assert(!server.methods().includes("setReadOnly"), server.methods().join(", "));
  const { kv: kv2, me: me2 } = cluster();
  assert(await kv2.acquirePrimary(me2.session, n2));
  const refused = new FakeServer().failOn("extendLease");
  const args = { server: refused, kv: kv2, me: me2, semiSync: false, leaseMs: 10_000, restore: undefined };
  await assertRejects(() => serveAsPrimary(args), Error, "the fake server was told to fail");
  assertEquals(refused.state.readOnly, true);
});

Deno.test("renewLease() writes the heartbeat, then extends the lease from the session's renewal", async () => {
  const { kv, me } = cluster();
  assert(await kv.acquirePrimary(me.session, { ...n2, ready: true }));
  const lock = await kv.primary();
  const server = new FakeServer("mariadb", { readOnly: false });
  await renewLease({ server, kv, me, lock, leaseMs: 10_000, renewedAt: performance.now() - 4_000 });
  const left = (await server.leaseLeft())!;
  assert(left > 5_000 && left <= 6_000, `what is left of SESSION_TTL/2 after the renewal: ${left}`);
  const beat = await kv.primary();
  assert(beat.modifyIndex! > lock.modifyIndex!, "the heartbeat moved the lock's index");
  assertEquals([beat.session, beat.record], [me.session, { ...n2, ready: true }], "the same record");
  await renewLease({
    server: server.failOn("extendLease"),
    kv,
    me,
    lock: beat,
    leaseMs: 10_000,
    renewedAt: performance.now(),
  });
});

Deno.test("renewLease() extends nothing when the heartbeat fails: the lock moved, went elsewhere, or the session is gone", async () => {
  const { kv, me } = cluster();
  assert(await kv.acquirePrimary(me.session, { ...n2, ready: true }));
  const read = await kv.primary();
  const server = new FakeServer("mariadb", { readOnly: false });
  const renew = (lock: typeof read) =>
    renewLease({ server, kv, me, lock, leaseMs: 10_000, renewedAt: performance.now() });
  assert(await kv.acquirePrimary(me.session, n2)); // written since the pass read it
  await renew(read);
  assertEquals(server.methods(), [], "moved since read: no lease");
  await kv.releasePrimary(me.session, n2);
  const other = kv.createSession();
  assert(await kv.acquirePrimary(other, n3));
  await renew(await kv.primary());
  assertEquals(server.methods(), [], "another node's lock: no lease");
  assertEquals((await kv.primary()).session, other, "and nothing written");
  const { kv: kv2, me: me2 } = cluster();
  assert(await kv2.acquirePrimary(me2.session, n2));
  const held = await kv2.primary();
  kv2.endSession(me2.session);
  await renewLease({ server, kv: kv2, me: me2, lock: held, leaseMs: 10_000, renewedAt: performance.now() });
  assertEquals(server.methods(), [], "session gone: no lease");
});

Deno.test("serveAsPrimary() does not undo a switchover that blocked writes since the keys were read", async () => {
  const { kv, me } = cluster();
  assert(await kv.acquirePrimary(me.session, { ...n2, ready: true }));
  assert(
    await kv.acquireFailoverLock(
      me.session,
      { node: "n2", at: Date.now(), switchover: true },
      await kv.failoverLock(),
    ),
  );
  const server = new FakeServer();
  const r = await serveAsPrimary({ server, kv, me, semiSync: false, leaseMs: 10_000, restore: undefined });
  assertEquals(r.healthy, false);
  assertEquals(server.state.readOnly, true);
  assert(!server.methods().includes("setReadOnly"), server.methods().join(", "));
});

Deno.test("serveAsPrimary() stays read-only when the received transactions cannot be applied in time", async () => {
  const { kv, me } = cluster();
  assert(await kv.acquirePrimary(me.session, n2));
  const server = new FakeServer("mariadb", {
    replica: replicating(n1, { retrievedGtids: "0-1-9" }),
    waitAnswer: false,
  });
  assertEquals(
    (await serveAsPrimary({ server, kv, me, semiSync: false, leaseMs: 10_000, restore: undefined })).healthy,
    false,
  );
  assertEquals(server.state.readOnly, true);
  assertEquals((await kv.primary()).record?.ready, undefined);
});

Deno.test("serveAsPrimary() turns read-only again when the lock went elsewhere meanwhile", async () => {
  const { kv, me } = cluster();
  const other = kv.createSession();
  assert(await kv.acquirePrimary(other, n3));
  const server = new FakeServer();
  const args = { server, kv, me, semiSync: false, leaseMs: 10_000, restore: undefined };
  assertEquals((await serveAsPrimary(args)).healthy, false);
  assertEquals(server.state.readOnly, true);
  assert(!server.methods().includes("setReadOnly"), "held elsewhere: no heartbeat, never writable");
  // Taken away after the heartbeat, while turning writable.
  class Stolen extends FakeClusterKv {
    override async heartbeatPrimary(session: string, record: typeof n2, index: number): Promise<boolean> {
      const ok = await super.heartbeatPrimary(session, record, index);
      await this.releasePrimary(session, record);
      assert(await this.acquirePrimary(this.other, n3));
      return ok;
    }
    readonly other = this.createSession();
  }
  const stolen = new Stolen();
  const me2 = { self: n2, session: stolen.createSession() };
  assert(await stolen.acquirePrimary(me2.session, n2));
  const server2 = new FakeServer();
  assertEquals((await serveAsPrimary({ ...args, server: server2, kv: stolen, me: me2 })).healthy, false);
  assertEquals(server2.state.readOnly, true);
  assertEquals(server2.methods().filter((m) => m === "setReadOnly").length, 2);
});

Deno.test("serveAsPrimary() of a restored datadir continues from the snapshot's position and forgets the mark", async () => {
  const { kv, me } = cluster();
  assert(await kv.acquirePrimary(me.session, n2));
  const server = new FakeServer();
  let forgotten = 0;
  const restore = {
    mark: { snapshot: "s1", gtid: "0-1-5", binlogState: "0-1-5,1-2-3" },
    forget: () => Promise.resolve(void forgotten++),
  };
  assertEquals(
    (await serveAsPrimary({ server, kv, me, semiSync: false, leaseMs: 10_000, restore })).healthy,
    true,
  );
  assertEquals(server.calls.find((c) => c.method === "startReplicationAfter")?.args, [
    "0-1-5",
    "0-1-5,1-2-3",
  ]);
  assertEquals(forgotten, 1);
});

Deno.test("bootstrapPrimary() runs the bootstrap, serves, and takes the first snapshot", async () => {
  const { kv, me } = cluster();
  assert(await kv.acquirePrimary(me.session, n2));
  const server = new FakeServer();
  const state = new MemoryState();
  const r = await bootstrapPrimary({
    server,
    kv,
    me,
    semiSync: false,
    leaseMs: 10_000,
    state,
    statements: () => Promise.resolve(["CREATE DATABASE app"]),
    takeFirstSnapshot: () => Promise.resolve("snap-1"),
  });
  assertEquals(r, { healthy: true, serving: true });
  assertEquals(server.statements, ["CREATE DATABASE app"]);
  assertEquals(state.current.firstSnapshotPending, undefined);
});

Deno.test("bootstrapPrimary() whose first snapshot fails writes, but is unhealthy and remembers why", async () => {
  const { kv, me } = cluster();
  assert(await kv.acquirePrimary(me.session, n2));
  const server = new FakeServer();
  const state = new MemoryState();
  const r = await bootstrapPrimary({
    server,
    kv,
    me,
    semiSync: false,
    leaseMs: 10_000,
    state,
    statements: () => Promise.resolve([]),
    takeFirstSnapshot: () => Promise.reject(new Error("the store refused the upload")),
  });
  assertEquals(r.healthy, false);
  assertEquals(r.serving, true);
  assertEquals(r.outcome?.level, "error");
  assert(r.outcome?.text.startsWith("First snapshot failed: the store refused the upload"), r.outcome?.text);
  assertEquals(state.current.firstSnapshotPending, "the store refused the upload");
  assertEquals(server.state.readOnly, false);
});

const repl = { user: "repl", password: new Secret("pw") };
const noRebuild = { hint: " (REBUILD_ERRANT_NODE=true rebuilds it)" };

Deno.test("follow() re-points replication after checking the node has nothing the primary lacks", async () => {
  const server = new FakeServer("mariadb", { gtid: { executed: "0-1-5" }, replica: replicating(n3) });
  const state = new MemoryState();
  const r = await follow({
    primary: { ...n1, ready: true },
    demote: false,
    server,
    state,
    restore: undefined,
    repl,
    primaryExecuted: () => Promise.resolve("0-1-7"),
    errant: noRebuild,
  });
  assertEquals(r.healthy, true);
  assertEquals(
    [server.state.leaseInstalled, server.state.leaseUntil],
    [true, undefined],
    "a replica: no lease",
  );
  assertEquals(server.state.replica?.sourceHost, n1.address);
  assertEquals(server.state.replica?.ioRunning, "yes");
  assertEquals(state.saves.map((s) => s.repointing), ["10.0.0.11:3306", undefined]);
  const spec = server.calls.find((c) => c.method === "changeSource")?.args[0] as {
    user: string;
    demote: boolean;
  };
  assertEquals([spec.user, spec.demote], ["repl", false]);
});

Deno.test("follow() refuses an errant node and says what it has that the primary lacks", async () => {
  const server = new FakeServer("mariadb", { gtid: { executed: "0-1-5,0-2-3" }, readOnly: true });
  let found: ErrantFound | undefined;
  const r = await follow({
    primary: { ...n1, ready: true },
    demote: true,
    server,
    state: new MemoryState(),
    restore: undefined,
    repl,
    primaryExecuted: () => Promise.resolve("0-1-5"),
    errant: { hint: "", handle: (e) => Promise.resolve(void (found = e)) },
  });
  assertEquals(r.healthy, false);
  assert(r.outcome?.text.includes("this node has transactions 0-2-3 that the primary n1"), r.outcome?.text);
  assertEquals(
    [found?.primaryExecuted, found?.mine, found?.extra],
    ["0-1-5", "0-1-5,0-2-3", "0-2-3"],
  );
  assertEquals(found?.text, r.outcome?.text, "no handler outcome: the plain one is reported");
  assert(!server.methods().includes("changeSource"));
});

Deno.test("follow() reports what the errant handler did instead of the plain outcome", async () => {
  const server = new FakeServer("mariadb", { gtid: { executed: "0-1-5,0-2-3" }, readOnly: true });
  const r = await follow({
    primary: { ...n1, ready: true },
    demote: true,
    server,
    state: new MemoryState(),
    restore: undefined,
    repl,
    primaryExecuted: () => Promise.resolve("0-1-5"),
    errant: { hint: "", handle: (e) => Promise.resolve({ level: "error", text: `${e.text}; saved` }) },
  });
  assertEquals(r.healthy, false);
  assert(r.outcome?.text.endsWith("lacks; not rejoining; saved"), r.outcome?.text);
  assert(!server.methods().includes("changeSource"));
});

Deno.test("follow() from a restored snapshot starts after its position, without asking the primary", async () => {
  const server = new FakeServer();
  let asked = 0;
  let forgotten = 0;
  const r = await follow({
    primary: { ...n1, ready: true },
    fromGtid: "0-1-5",
    demote: false,
    server,
    state: new MemoryState(),
    restore: { mark: { snapshot: "s", gtid: "0-1-5" }, forget: () => Promise.resolve(void forgotten++) },
    repl,
    primaryExecuted: () => Promise.resolve(String(asked++)),
    errant: noRebuild,
  });
  assertEquals(r.healthy, true);
  assertEquals(asked, 0);
  assertEquals(forgotten, 1);
  assertEquals(server.calls.find((c) => c.method === "startReplicationAfter")?.args, ["0-1-5", undefined]);
});

Deno.test("startReplication() reports a receiver that fails at once as not running", async () => {
  const server = new FakeServer("mariadb", {
    replica: replicating(n1, { ioRunning: "no", sqlRunning: false }),
  });
  const state = new MemoryState({ repointing: "10.0.0.11:3306" });
  // The fake starts replication at once; a failing receiver is one whose status then shows an error.
  server.startReplica = () => {
    server.state.replica = replicating(n1, { ioRunning: "no", lastIoError: "Access denied" });
    return Promise.resolve();
  };
  const r = await startReplication({ server, state, source: "10.0.0.11:3306" });
  assertEquals(r.healthy, false);
  assertEquals(state.current.repointing, undefined);
});

Deno.test("endSwitchover() releases the failover lock, keeping its record, and asks for another decision", async () => {
  const { kv, me } = cluster();
  const found = await kv.failoverLock();
  const record = { node: "n2", at: 1, switchover: true };
  assert(await kv.acquireFailoverLock(me.session, record, found));
  const value = (await kv.failoverLock()).value;
  const r = await endSwitchover({ kv, session: me.session, value, reason: "stale" });
  assertEquals(r, { healthy: false, again: true });
  const after = await kv.failoverLock();
  assertEquals(after.session, undefined);
  assertEquals(after.record, record);
});

/** A failed primary n1 (its session ended) and two live replicas n2 (this node) and n3. */
async function failedPrimary(n2Executed: string, n3Executed: string) {
  const { kv, me } = cluster();
  const s1 = kv.createSession();
  assert(await kv.acquirePrimary(s1, { ...n1, ready: true }));
  assert(await kv.publishMember(s1, member(n1, { role: "primary", executed: "0-1-9" })));
  const s3 = kv.createSession();
  assert(
    await kv.publishMember(me.session, member(n2, { executed: n2Executed, updatedAt: Date.now() + 1000 })),
  );
  assert(await kv.publishMember(s3, member(n3, { executed: n3Executed, updatedAt: Date.now() + 1000 })));
  kv.endSession(s1);
  return { kv, me, s3 };
}

const noProbe = () => Promise.resolve(undefined);
const notWritable = () => Promise.resolve(false);

/** n1 holds the lock (ready) with a live session but its heartbeat stands still; n2 (this node), n3 replicate. */
async function staleHolder(n2Executed: string, n3Executed: string) {
  const { kv, me } = cluster();
  const s1 = kv.createSession();
  assert(await kv.acquirePrimary(s1, { ...n1, ready: true }));
  assert(await kv.publishMember(s1, member(n1, { role: "primary", executed: "0-1-9" })));
  const s3 = kv.createSession();
  const later = Date.now() + 1000;
  assert(await kv.publishMember(me.session, member(n2, { executed: n2Executed, updatedAt: later })));
  assert(await kv.publishMember(s3, member(n3, { executed: n3Executed, updatedAt: later })));
  const seen = await kv.primary();
  const found = { session: s1, index: seen.modifyIndex! };
  const server = new FakeServer("mariadb", { replica: replicating(n1) });
  return { kv, me, s1, s3, found, server };
}

Deno.test("runFailover() appoints the member that has every transaction, to its own session", async () => {
  const { kv, me, s3 } = await failedPrimary("0-1-7", "0-1-9");
  const r = await runFailover({ kv, me, failedPrimary: "n1", probe: noProbe, answersWritable: notWritable });
  assertEquals(r, { appointed: "n3" });
  const lock = await kv.primary();
  assertEquals([lock.session, lock.record?.node, lock.record?.ready], [s3, "n3", undefined]);
  const record = (await kv.failoverLock()).record;
  assertEquals([record?.node, record?.failedPrimary, record?.promoted], ["n2", "n1", "n3"]);
});

Deno.test("runFailover() appoints nobody while the failed primary still answers writable", async () => {
  const { kv, me } = await failedPrimary("0-1-9", "0-1-7");
  const r = await runFailover({
    kv,
    me,
    failedPrimary: "n1",
    probe: noProbe,
    answersWritable: () => Promise.resolve(true),
  });
  assertEquals(r, {});
  assertEquals((await kv.primary()).session, undefined);
  assertEquals((await kv.failoverLock()).session, undefined, "the failover lock is released");
});

Deno.test("runFailover() waits for another node's failover, and for one that finished meanwhile", async () => {
  const { kv, me, s3 } = await failedPrimary("0-1-9", "0-1-9");
  assert(await kv.acquireFailoverLock(s3, { node: "n3", at: Date.now() }, await kv.failoverLock()));
  assertEquals(
    await runFailover({ kv, me, failedPrimary: "n1", probe: noProbe, answersWritable: notWritable }),
    { wait: true },
  );
  await kv.releaseFailoverLock(s3, { node: "n3", at: Date.now(), failedPrimary: "n1", promoted: "n3" });
  assert(await kv.acquirePrimary(s3, { ...n3, ready: true }));
  assertEquals(
    await runFailover({ kv, me, failedPrimary: "n1", probe: noProbe, answersWritable: notWritable }),
    { wait: true },
  );
  assertEquals((await kv.failoverLock()).record?.promoted, "n3", "the record of the real failover stays");
  assertEquals(await waitForAppointment(kv, me.session), true);
});

Deno.test("runFailover() plans from what the members' servers say now, over their published records", async () => {
  const { kv, me } = await failedPrimary("0-1-9", "0-1-7");
  // n3 published less than n2, but its server says it has received more since.
  const probe = (m: MemberRecord) =>
    Promise.resolve(m.node === "n3" ? { ...m, executed: "0-1-7", retrieved: "0-1-12" } : m);
  const r = await runFailover({ kv, me, failedPrimary: "n1", probe, answersWritable: notWritable });
  assertEquals(r.appointed, "n3");
});

Deno.test("runFailover() takes a stale lock over from a holder that answers read-only, then appoints another node", async () => {
  const { kv, me, s1, s3, found, server } = await staleHolder("0-1-7", "0-1-9");
  const asked: string[] = [];
  const ask = (node: typeof n1) => (asked.push(node.node), Promise.resolve("read-only" as const));
  // n1 answers its probe fresh, and has the most: taken over, it still never counts.
  const probe = (m: MemberRecord) => Promise.resolve({ ...m, updatedAt: Date.now() + 5000 });
  const r = await runFailover({
    kv,
    me,
    failedPrimary: "n1",
    probe,
    answersWritable: () => Promise.resolve(true),
    takeOver: { found, leaseMs: 100, failsafe: true, ask, server, self: "n2" },
  });
  assertEquals(r, { appointed: "n3" });
  assertEquals(asked, ["n1"]);
  assertEquals((await kv.primary()).session, s3);
  assert(kv.sessionAlive(s1), "the holder's session lives on; only its lock was taken");
  assertEquals(server.methods(), [], "an old primary that answers: replication is left alone");
  assertEquals((await kv.failoverLock()).record?.promoted, "n3");
});

Deno.test("runFailover() takes nothing over when the heartbeat moved, or the holder answers writable (failsafe)", async () => {
  const { kv, me, s1, found, server } = await staleHolder("0-1-9", "0-1-9");
  const readOnly = () => Promise.resolve("read-only" as const);
  const args = { kv, me, failedPrimary: "n1", probe: noProbe, answersWritable: notWritable };
  assert(await kv.heartbeatPrimary(s1, { ...n1, ready: true }, found.index)); // n1's heartbeat came after all
  assertEquals(
    await runFailover({
      ...args,
      takeOver: { found, leaseMs: 100, failsafe: true, ask: readOnly, server, self: "n2" },
    }),
    {},
  );
  assertEquals((await kv.primary()).session, s1);
  const now = { session: s1, index: (await kv.primary()).modifyIndex! };
  const writable = () => Promise.resolve("writable" as const);
  assertEquals(
    await runFailover({
      ...args,
      takeOver: { found: now, leaseMs: 100, failsafe: true, ask: writable, server, self: "n2" },
    }),
    {},
  );
  assertEquals((await kv.primary()).session, s1, "alive and writable without Consul: left alone");
  assertEquals((await kv.failoverLock()).session, undefined, "the failover lock is released");
});

Deno.test("runFailover() from a silent holder stops replicating from it and waits its lease out before taking over", async () => {
  const { kv, me, s3, found, server } = await staleHolder("0-1-7", "0-1-9");
  const silent = () => Promise.resolve("silent" as const);
  const t0 = performance.now();
  const r = await runFailover({
    kv,
    me,
    failedPrimary: "n1",
    probe: noProbe,
    answersWritable: notWritable,
    takeOver: { found, leaseMs: 100, failsafe: true, ask: silent, server, self: "n2" },
  });
  const waited = performance.now() - t0;
  assertEquals(r, { appointed: "n3" });
  assertEquals((await kv.primary()).session, s3);
  assert(server.methods().includes("stopReplicaIo"), server.methods().join(", "));
  assertEquals([server.state.replica?.ioRunning, server.state.replica?.sqlRunning], ["no", true]);
  assert(waited >= 2_100, `waited the lease and 2 s: ${Math.round(waited)} ms`);
  // FAILSAFE_MODE off: no lease without a heartbeat, so the stale heartbeat is enough.
  const off = await staleHolder("0-1-7", "0-1-9");
  const t1 = performance.now();
  assertEquals(
    await runFailover({
      kv: off.kv,
      me: off.me,
      failedPrimary: "n1",
      probe: noProbe,
      answersWritable: notWritable,
      takeOver: {
        found: off.found,
        leaseMs: 100,
        failsafe: false,
        ask: silent,
        server: off.server,
        self: "n2",
      },
    }),
    { appointed: "n3" },
  );
  assert(performance.now() - t1 < 2_000, "no wait");
  assertEquals(off.server.methods(), [], "replication left alone");
});

Deno.test("runFailover() whose takeover finds the lock moved after the wait starts replication again", async () => {
  const { kv, me, s1, found, server } = await staleHolder("0-1-9", "0-1-9");
  const silent = async () => {
    // n1 comes back during the wait: its heartbeat moves the index.
    setTimeout(() => kv.heartbeatPrimary(s1, { ...n1, ready: true }, found.index), 100);
    return await Promise.resolve("silent" as const);
  };
  const r = await runFailover({
    kv,
    me,
    failedPrimary: "n1",
    probe: noProbe,
    answersWritable: notWritable,
    takeOver: { found, leaseMs: 0, failsafe: true, ask: silent, server, self: "n2" },
  });
  assertEquals(r, {});
  assertEquals((await kv.primary()).session, s1);
  assertEquals(server.methods().slice(-1), ["startReplica"]);
  assertEquals(server.state.replica?.ioRunning, "yes");
});

Deno.test("runFailover() that took a silent holder's lock over but appoints nobody starts its replication again", async () => {
  const { kv, me, s3, found, server } = await staleHolder("0-1-9", "0-1-9");
  // Nobody can be chosen: both replicas have FAILOVER_PRIORITY=0.
  const later = Date.now() + 1000;
  assert(
    await kv.publishMember(me.session, member(n2, { executed: "0-1-9", priority: 0, updatedAt: later })),
  );
  assert(await kv.publishMember(s3, member(n3, { executed: "0-1-9", priority: 0, updatedAt: later })));
  const r = await runFailover({
    kv,
    me,
    failedPrimary: "n1",
    probe: noProbe,
    answersWritable: notWritable,
    takeOver: {
      found,
      leaseMs: 0,
      failsafe: true,
      ask: () => Promise.resolve("silent" as const),
      server,
      self: "n2",
    },
  });
  assertEquals(r, {});
  assertEquals((await kv.primary()).session, undefined, "taken over, nobody appointed");
  assertEquals(server.methods().filter((m) => m === "stopReplicaIo" || m === "startReplica"), [
    "stopReplicaIo",
    "startReplica",
  ]);
  assertEquals(server.state.replica?.ioRunning, "yes");
});

Deno.test("runFailover() appoints a live last primary again when it has everything (its lock lost, not its node)", async () => {
  const { kv, me } = cluster();
  const old = kv.createSession();
  assert(await kv.acquirePrimary(old, { ...n1, ready: true }));
  kv.endSession(old); // Consul expired every session at once
  const s1 = kv.createSession(); // n1's new session, its member record published again
  const s3 = kv.createSession();
  assert(await kv.publishMember(s1, member(n1, { role: "primary", executed: "0-1-9" })));
  assert(await kv.publishMember(me.session, member(n2, { executed: "0-1-9" })));
  assert(await kv.publishMember(s3, member(n3, { executed: "0-1-9", priority: 9 })));
  const probe = (m: MemberRecord) => Promise.resolve({ ...m, updatedAt: Date.now() + 5000 });
  const r = await runFailover({
    kv,
    me,
    failedPrimary: "n1",
    probe,
    answersWritable: () => Promise.resolve(true), // n1 may be writable still: it is the one chosen
  });
  assertEquals(r, { appointed: "n1" }, "preferred over n3's higher priority");
  assertEquals((await kv.primary()).session, s1);
  // One that does not answer (and published nothing since) is left out, and holds nothing back.
  const { kv: kv2, me: me2, s3: s3b } = await failedPrimary("0-1-7", "0-1-9");
  assertEquals(
    await runFailover({
      kv: kv2,
      me: me2,
      failedPrimary: "n1",
      probe: noProbe,
      answersWritable: notWritable,
    }),
    { appointed: "n3" },
  );
  assertEquals((await kv2.primary()).session, s3b);
});

Deno.test("watchHeartbeat() records the holder's index on the boot clock and says when it stood still too long", async () => {
  const { kv, me } = cluster();
  const s1 = kv.createSession();
  assert(await kv.acquirePrimary(s1, { ...n1, ready: true }));
  const state = new MemoryState();
  const session = { id: me.session, renewedAt: performance.now() };
  const watch = async (ms: number) =>
    await watchHeartbeat({
      state,
      cluster: await readCluster(kv, session),
      session,
      clock: { ms, resolutionMs: 0 },
      leaseMs: 10_000,
    });
  assertEquals(await watch(1_000), undefined);
  const seen = state.current.lockSeen!;
  assertEquals([seen.session, seen.seenAt], [s1, 1_000]);
  assertEquals(await watch(12_000), undefined);
  assertEquals(state.saves.length, 1, "an unchanged index is not written again");
  assertEquals(await watch(13_500), 12_500, "stale");
  // Consul out of reach for a while: the watch starts again from the first read after it answers.
  const down = { error: "Consul cannot be reached" };
  assertEquals(
    await watchHeartbeat({
      state,
      cluster: down,
      session: down,
      clock: { ms: 14_000, resolutionMs: 0 },
      leaseMs: 10_000,
    }),
    undefined,
  );
  assertEquals(state.current.lockSeen, undefined, "nothing seen while Consul was away counts");
  assertEquals(await watch(60_000), undefined, "back: not stale at once");
  assertEquals(await watch(73_000), 13_000, "stale again, counted from the return");
  assert(await kv.heartbeatPrimary(s1, { ...n1, ready: true }, seen.index));
  assertEquals(await watch(14_000), undefined, "it moved");
  assertEquals(state.current.lockSeen?.seenAt, 14_000);
  await kv.releasePrimary(s1, { ...n1, ready: true });
  assert(await kv.acquirePrimary(me.session, n2));
  assertEquals(await watch(99_000), undefined);
  assertEquals(state.current.lockSeen, undefined, "the holder itself keeps no record");
});

Deno.test("switchover() hands the lock to the target once it has everything, and records it", async () => {
  const { kv, me } = cluster();
  assert(await kv.acquirePrimary(me.session, { ...n2, ready: true }));
  const s3 = kv.createSession();
  assert(await kv.publishMember(s3, member(n3, { executed: "0-2-4" })));
  const server = new FakeServer("mariadb", { readOnly: false, gtid: { executed: "0-2-5" } });
  const peer = new FakeServer("mariadb", { gtid: { executed: "0-2-4" } });
  // The target catches up once this node is read-only.
  peer.gtidState = () => Promise.resolve({ executed: server.state.readOnly ? "0-2-5" : "0-2-4" });
  let withdrawn = 0;
  const done = await switchover({
    kv,
    server,
    openPeer: () => Promise.resolve(peer),
    me,
    withdraw: () => Promise.resolve(void withdrawn++),
    timeoutMs: 2000,
    leaseMs: 10_000,
  });
  assertEquals(done?.target, "n3");
  assertEquals((await kv.primary()).session, s3);
  assertEquals(server.state.readOnly, true);
  assertEquals(withdrawn, 1);
  assertEquals(server.state.leaseUntil, undefined, "no lease left on the old primary");
  const record = (await kv.failoverLock()).record;
  assertEquals([record?.switchover, record?.promoted], [true, "n3"]);
  assert(peer.closed, "the connection to the target is closed");
});

Deno.test("switchover() to a target that cannot catch up leaves this node the writable primary", async () => {
  const { kv, me } = cluster();
  assert(await kv.acquirePrimary(me.session, { ...n2, ready: true }));
  const s3 = kv.createSession();
  assert(await kv.publishMember(s3, member(n3, { executed: "0-2-4" })));
  const server = new FakeServer("mariadb", { readOnly: false, gtid: { executed: "0-2-5" } });
  const peer = new FakeServer("mariadb", { gtid: { executed: "0-2-4" } });
  const done = await switchover({
    kv,
    server,
    openPeer: () => Promise.resolve(peer),
    me,
    withdraw: () => Promise.resolve(),
    to: "n3",
    timeoutMs: 200,
    leaseMs: 10_000,
  });
  assertEquals(done, undefined);
  assertEquals(server.state.readOnly, false);
  assert((server.state.leaseUntil ?? 0) > Date.now(), "writable again only with a lease");
  assertEquals((await kv.primary()).session, me.session);
  assertEquals((await kv.failoverLock()).session, undefined);
});

Deno.test("keepSession() creates a session when the node has none and saves it; Consul down is a fact", async () => {
  const { kv } = cluster();
  const state = new MemoryState();
  const created: string[] = [];
  const s = await keepSession(kv, state, (id) => created.push(id));
  assert("id" in s);
  assertEquals(state.current.sessionId, s.id);
  assertEquals(created, [s.id]);
  const again = await keepSession(kv, state, (id) => created.push(id));
  assertEquals("id" in again && again.id, s.id);
  assertEquals(created.length, 1);
  kv.down();
  const down = await keepSession(kv, state, () => {});
  assert("error" in down);
});

Deno.test("readCluster() and gatherFacts() only read: one read of the keys, one status of the server", async () => {
  const { kv, me } = cluster();
  assert(await kv.acquirePrimary(me.session, { ...n2, ready: true }));
  const found = await kv.failoverLock();
  const at = Date.now() - SWITCHOVER_STALE_MS - 1;
  assert(await kv.acquireFailoverLock(me.session, { node: "n2", at, switchover: true }, found));
  const server = new FakeServer("mariadb", { readOnly: false, gtid: { executed: "0-2-5" } });
  kv.calls.length = 0;
  const session = { id: me.session, renewedAt: performance.now() };
  const read = await readCluster(kv, session);
  assert(holdsLockIn(read, session));
  const { facts, view } = await gatherFacts({
    self: n2,
    local: { server },
    session,
    cluster: read,
    state: {},
    restored: undefined,
    maxLagSeconds: 30,
    quietPeriodMs: 300_000,
    now: Date.now(),
  });
  assertEquals(server.methods(), ["status"]);
  assertEquals(kv.calls, ["read"]);
  assert(view !== undefined);
  assertEquals(facts.mysql.up && facts.mysql.executed, "0-2-5");
  assertEquals(facts.consul.up && facts.consul.staleSwitchoverAt, at);
  assertEquals(facts.consul.up && facts.consul.switchingOver, undefined);
});

Deno.test("gatherFacts() holds a failover back while paused, and says Consul is down when it is", async () => {
  const { kv, me } = await failedPrimary("0-1-9", "0-1-9");
  kv.put(kv.keys.failoverPause, "maintenance");
  const session = { id: me.session, renewedAt: performance.now() };
  const sources = {
    self: n2,
    local: { server: new FakeServer() },
    session,
    cluster: await readCluster(kv, session),
    state: {},
    restored: undefined,
    maxLagSeconds: 30,
    quietPeriodMs: 300_000,
    now: Date.now(),
  };
  assertEquals((await gatherFacts(sources)).facts.failover, { paused: true });
  kv.down();
  const down = (await gatherFacts({ ...sources, cluster: await readCluster(kv, session) })).facts;
  assertEquals(down.consul.up, false);
  assertEquals(holdsLockIn(await readCluster(kv, session), session), false);
  const gone = await gatherFacts({ ...sources, local: { error: "no socket", gone: true } });
  assertEquals(gone.facts.mysql, { up: false, error: "no socket", gone: true });
});

Deno.test("runFailover() with failsafe leaves a silent holder to the members its failsafe checks", async () => {
  const { kv, me, s1, server } = await staleHolder("0-1-7", "0-1-9");
  // n1's last heartbeat published that its failsafe checks n3 only: n2 stopping replicating would not fence it.
  const seen = await kv.primary();
  assert(await kv.heartbeatPrimary(s1, { ...n1, ready: true, checks: ["n3"] }, seen.modifyIndex!));
  const found = { session: s1, index: (await kv.primary()).modifyIndex! };
  const silent = () => Promise.resolve("silent" as const);
  const r = await runFailover({
    kv,
    me,
    failedPrimary: "n1",
    probe: noProbe,
    answersWritable: notWritable,
    takeOver: { found, leaseMs: 0, failsafe: true, ask: silent, server, self: "n2" },
  });
  assertEquals(r, {});
  assertEquals((await kv.primary()).session, s1, "not taken over");
  assertEquals(server.methods(), [], "n2 replicates on: nothing was stopped");
});

Deno.test("runFailover() takes over a silent holder whose record says it fenced itself, at once, unless a live node lacks what it had", async () => {
  // n1's failsafe checks n3 only, but its pre-stop shut mysqld down and said so: nothing to wait for.
  for (
    const [answer, executed] of [["silent", "0-1-9"], ["refused", "0-1-9"], ["silent", "0-1-12"]] as const
  ) {
    const { kv, me, s1, server } = await staleHolder("0-1-7", "0-1-9");
    const seen = await kv.primary();
    const record = { ...n1, ready: true, checks: ["n3"], fenced: true, executed };
    assert(await kv.heartbeatPrimary(s1, record, seen.modifyIndex!));
    const r = await runFailover({
      kv,
      me,
      failedPrimary: "n1",
      probe: noProbe,
      answersWritable: notWritable,
      takeOver: {
        found: { session: s1, index: (await kv.primary()).modifyIndex! },
        leaseMs: 60_000,
        failsafe: true,
        ask: () => Promise.resolve(answer),
        server,
        self: "n2",
      },
    });
    assertEquals(server.methods(), [], "no wait: replication was not stopped");
    if (executed === "0-1-9") {
      assertEquals(r, { appointed: "n3" }, "n3 has everything n1 had");
    } else {
      assertEquals(r, {}, "n1 stopped with 0-1-12, which nobody has: nobody is appointed");
      assertEquals((await kv.primary()).session, undefined, "taken over, but not given to anyone");
    }
  }
});

Deno.test("heartbeat() drops the fenced mark and the recorded GTIDs: a holder turns writable only with a record without them", async () => {
  const { kv, me } = cluster();
  assert(await kv.acquirePrimary(me.session, { ...n2, ready: true }));
  const lock = await kv.primary();
  assert(
    await kv.heartbeatPrimary(
      me.session,
      { ...n2, ready: true, fenced: true, executed: "0-1-9" },
      lock.modifyIndex!,
    ),
  );
  assert((await heartbeat(kv, me, await kv.primary())) !== undefined, "the heartbeat was written");
  const after = (await kv.primary()).record!;
  assertEquals(after.fenced, undefined);
  assertEquals(after.executed, undefined);
  assertEquals(after.ready, true);
});

Deno.test("runFailover() with failsafe makes sure of the old primary before it plans, when nobody holds the lock", async () => {
  const { kv, me, s3 } = await failedPrimary("0-1-7", "0-1-9");
  const server = new FakeServer("mariadb", { replica: replicating(n1) });
  const guard = (ask: () => Promise<"writable" | "silent">) => ({
    leaseMs: 0,
    failsafe: true,
    ask,
    server,
    self: "n2",
  });
  const probed: string[] = [];
  const probe = (m: MemberRecord) => (probed.push(m.node), Promise.resolve(undefined));
  const writable = () => Promise.resolve("writable" as const);
  const args = { kv, me, failedPrimary: "n1", probe, answersWritable: notWritable };
  assertEquals(await runFailover({ ...args, guard: guard(writable) }), {});
  assertEquals(probed, [], "an old primary writable on a failsafe lease: nothing planned");
  assertEquals((await kv.primary()).session, undefined);
  const silent = () => Promise.resolve("silent" as const);
  assertEquals(await runFailover({ ...args, guard: guard(silent) }), { appointed: "n3" });
  assertEquals((await kv.primary()).session, s3);
  assert(server.methods().includes("stopReplicaIo"), "a silent one: this node stopped replicating from it");
});

Deno.test("heartbeat() publishes the members the failsafe checks, and the failsafe then checks them too", async () => {
  const { kv, me } = cluster();
  assert(await kv.acquirePrimary(me.session, { ...n2, ready: true }));
  let current: NodeState = { members: { heldLock: true, others: [n1] } };
  const state: StateStore = {
    get current() {
      return current;
    },
    patch: (p) => (current = { ...current, ...p }, Promise.resolve()),
  };
  const published = publishedFor(state, true)!;
  assertEquals(await heartbeat(kv, { ...me, published }, await kv.primary()) !== undefined, true);
  assertEquals((await kv.primary()).record?.checks, ["n1"]);
  assertEquals(current.members?.published, [n1]);
  // n1 left the view; n3 joined: the failsafe checks both until a heartbeat publishes the new list.
  current = { members: { heldLock: true, others: [n3], published: [n1] } };
  assertEquals(checkedMembers(current.members).map((m) => m.node), ["n1", "n3"]);
  assertEquals(publishedFor(state, false), undefined, "FAILSAFE_MODE off: nothing is published");
});

Deno.test("runFailover() with failsafe takes a refused connection or no answer for a cut, unless the old primary's record says it fenced itself", async () => {
  for (const answer of ["refused", "silent"] as const) {
    for (const fenced of [false, true]) {
      const { kv, me, s3 } = await failedPrimary("0-1-7", "0-1-9");
      // n1's last record: it fenced itself (released read-only, or pre-stop shut mysqld down), or not.
      const lock = await kv.primary();
      assert(await kv.acquirePrimary(s3, { ...lock.record!, ...(fenced ? { fenced: true } : {}) }));
      await kv.releasePrimary(s3, { ...lock.record!, ...(fenced ? { fenced: true } : {}) });
      const server = new FakeServer("mariadb", { replica: replicating(n1) });
      const guard = { leaseMs: 0, failsafe: true, ask: () => Promise.resolve(answer), server, self: "n2" };
      const r = await runFailover({
        kv,
        me,
        failedPrimary: "n1",
        probe: noProbe,
        answersWritable: notWritable,
        guard,
      });
      assertEquals(r, { appointed: "n3" }, `${answer}, fenced ${fenced}`);
      assertEquals(
        server.methods().includes("stopReplicaIo"),
        !fenced,
        fenced
          ? `${answer}: it said it fenced itself, no wait`
          : `${answer}: a cut (REJECT refuses too), waited out`,
      );
    }
  }
});

Deno.test("runFailover() starts this node's replication again when the old primary is appointed again", async () => {
  const { kv, me } = await failedPrimary("0-1-7", "0-1-7");
  // n1 is alive again (a fresh record) and has the most: the plan prefers it.
  const s1b = kv.createSession();
  assert(
    await kv.publishMember(
      s1b,
      member(n1, { role: "none", executed: "0-1-9", updatedAt: Date.now() + 1000 }),
    ),
  );
  const server = new FakeServer("mariadb", { replica: replicating(n1) });
  const silent = () => Promise.resolve("silent" as const);
  const guard = { leaseMs: 0, failsafe: true, ask: silent, server, self: "n2", state: memoryState() };
  const r = await runFailover({
    kv,
    me,
    failedPrimary: "n1",
    probe: noProbe,
    answersWritable: notWritable,
    guard,
  });
  assertEquals(r, { appointed: "n1" });
  assertEquals(server.methods().filter((m) => m === "stopReplicaIo" || m === "startReplica"), [
    "stopReplicaIo",
    "startReplica",
  ]);
  assertEquals(guard.state.current.repointing, undefined, "the mark is gone once replication runs again");
});

Deno.test("serveAsPrimary() with SEMI_SYNC: a restarted primary a replica is ahead of hands its lock over instead", async () => {
  const { kv, me } = cluster();
  assert(await kv.acquirePrimary(me.session, { ...n2, ready: true }));
  const server = new FakeServer("mariadb", { readOnly: true, gtid: { executed: "0-2-7" } });
  const args = { server, kv, me, semiSync: true, leaseMs: 10_000, restore: undefined };
  const r = await serveAsPrimary({ ...args, aheadOf: () => Promise.resolve("n3 holds 0-2-8") }, undefined);
  assertEquals(r.healthy, false);
  assert(r.outcome?.text.startsWith("n3 holds 0-2-8 that this primary lacks"), r.outcome?.text);
  assertEquals(server.state.readOnly, true, "never writable");
  assertEquals((await kv.primary()).session, undefined, "the lock is released for the failover");
  // Nobody ahead: it serves.
  assert(await kv.acquirePrimary(me.session, { ...n2, ready: true }));
  const ok = await serveAsPrimary({ ...args, aheadOf: () => Promise.resolve(undefined) }, undefined);
  assertEquals(ok, { healthy: true, serving: true });
});
