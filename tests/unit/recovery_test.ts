/**
 * Whole-cluster recovery on plain data: the planner, the settle window, the decisions of a node that finds no
 * primary lock record, the identity upkeep of a serving primary, and the chosen node's take of the lock.
 */
import { assert, assertEquals } from "./assert.ts";
import { memberRecord } from "./member_record.ts";
import { decideHealth, type HealthFacts, type MysqlFacts } from "../../src/ha/decide.ts";
import {
  type BootInstant,
  bootstrapHeldBack,
  identityUpkeep,
  planRecovery,
  type RecoveryFacts,
  sameBoot,
  settleWindowMs,
  waitedMs,
} from "../../src/ha/recovery.ts";
import { keepRecoveryMark, recoverPrimary } from "../../src/ha/recovery_action.ts";
import { memberRecord as recordOf } from "../../src/ha/report.ts";
import { formatClusterIdentity, parseClusterIdentity } from "../../src/cluster_kv.ts";
import { bootstrapStatements } from "../../src/mysql/bootstrap.ts";
import { identityStatements, isClusterIdentity, newClusterIdentity } from "../../src/mysql/identity.ts";
import { loadConfig } from "../../src/config.ts";
import type { NodeState, StateStore } from "../../src/state.ts";
import { FakeClusterKv } from "./fakes/fake_cluster_kv.ts";
import { FakeServer } from "./fakes/fake_server.ts";
import { gatherFacts, readCluster } from "../../src/ha/facts.ts";

const ID = "0f6e2b1c-7d1a-4c57-9a3e-5b2d8f0c1a22";
const me = { node: "n2", address: "10.0.0.2", port: 3306 };
const boot = (ms: number): BootInstant => ({ bootAt: 1_000_000, ms });
const m = (node: string, executed: string, over = {}) =>
  memberRecord(node, { executed, cluster: ID, ...over });

const up = (over: Partial<Extract<MysqlFacts, { up: true }>> = {}): MysqlFacts => ({
  up: true,
  readOnly: true,
  hasTransactions: true,
  executed: "0-1-10",
  identity: ID,
  ...over,
});
const recovery = (over: Partial<RecoveryFacts> = {}): RecoveryFacts => ({
  key: "mysql-cluster",
  settleMs: 30_000,
  now: boot(100_000),
  since: boot(60_000),
  live: [m("n1", "0-1-8"), m("n2", "0-1-10"), m("n3", "0-1-9")],
  departed: [],
  ...over,
});
const facts = (over: Partial<HealthFacts> = {}): HealthFacts => ({
  node: me,
  mysql: up(),
  consul: { up: true, lock: {}, session: "s-n2" },
  maxLagSeconds: 30,
  recovery: recovery(),
  ...over,
});

Deno.test("planRecovery() chooses the node that holds every transaction any reporting node holds", () => {
  const plan = planRecovery(ID, "n2", [m("n1", "0-1-8"), m("n2", "0-1-10"), m("n3", "0-1-9")]);
  assertEquals(plan.kind, "promote");
  assert(plan.kind === "promote");
  assertEquals(plan.candidate.node, "n2");
  assertEquals(
    plan.reason,
    "n2 holds every transaction the 3 reporting node(s) hold: n1 has 0-1-8; n2 has 0-1-10; n3 has 0-1-9",
  );
});

Deno.test("planRecovery() counts received transactions, and breaks ties by FAILOVER_PRIORITY, then the name", () => {
  const relay = planRecovery(ID, "n1", [m("n1", "0-1-8", { retrieved: "0-1-10" }), m("n2", "0-1-10")]);
  assert(relay.kind === "promote");
  assertEquals(relay.candidate.node, "n1", "equal once n1 applies its relay log: the name decides");
  const prio = planRecovery(ID, "n1", [m("n1", "0-1-10"), m("n2", "0-1-10", { priority: 5 })]);
  assert(prio.kind === "promote");
  assertEquals(prio.candidate.node, "n2");
  const zero = planRecovery(ID, "n1", [m("n1", "0-1-8"), m("n2", "0-1-10", { priority: 0 })]);
  assertEquals(zero.kind, "impossible");
  assert(zero.reason.includes("only n2 (FAILOVER_PRIORITY=0) holds every transaction"), zero.reason);
});

Deno.test("planRecovery() promotes nobody when the nodes diverged, and says so with every GTID set", () => {
  const plan = planRecovery(ID, "n1", [m("n1", "0-1-10"), m("n2", "0-1-9,1-2-3")]);
  assertEquals(plan, {
    kind: "impossible",
    reason:
      "no node holds every transaction the others hold (diverged): n1 has 0-1-10; n2 has 0-1-9,1-2-3; " +
      "nobody is promoted",
  });
});

Deno.test("planRecovery() counts only members of its identity, and waits for this node's own record", () => {
  const foreign = m("n9", "0-1-99", { cluster: "another" });
  const legacy = memberRecord("n8", { executed: "0-1-99" }); // no identity
  const plan = planRecovery(ID, "n1", [m("n1", "0-1-5"), foreign, legacy]);
  assert(plan.kind === "promote");
  assertEquals(plan.candidate.node, "n1");
  assertEquals(planRecovery(ID, "n1", [m("n2", "0-1-5")]), {
    kind: "wait",
    reason: "this node's member record is not published yet",
  });
});

Deno.test("planRecovery() is blocked by a departed member of its identity that held more", () => {
  const gone = m("n3", "0-1-12", { updatedAt: Date.parse("2026-12-02T10:00:00Z") });
  const plan = planRecovery(ID, "n1", [m("n1", "0-1-10")], [gone]);
  assertEquals(plan.kind, "impossible");
  assert(
    plan.reason.startsWith("n3 (gone since 2026-12-02T10:00:00.000Z) had 0-1-12, which no live node has"),
  );
  assert(plan.reason.includes("delete its member record"), plan.reason);
  // One that held no more does not block, nor one of another cluster.
  assertEquals(planRecovery(ID, "n1", [m("n1", "0-1-10")], [m("n3", "0-1-9")]).kind, "promote");
  assertEquals(planRecovery(ID, "n1", [m("n1", "0-1-10")], [{ ...gone, cluster: "x" }]).kind, "promote");
});

Deno.test("the settle window is never shorter than the in-server lease and 2 s", () => {
  assertEquals(settleWindowMs(30_000, 10_000), 30_000);
  assertEquals(settleWindowMs(5_000, 10_000), 12_000, "SESSION_TTL=20s: a frozen old primary fences at 10 s");
});

Deno.test("the settle window counts on this machine's boot clock, and starts again after a reboot", () => {
  assertEquals(waitedMs(recovery()), 39_000, "one tick less: the uptime comes in whole seconds");
  assertEquals(waitedMs(recovery({ since: undefined })), 0);
  assertEquals(waitedMs(recovery({ since: { bootAt: 5_000_000, ms: 60_000 } })), 0, "another boot");
  assertEquals(waitedMs(recovery({ since: boot(200_000) })), 0, "an uptime that went back: another boot");
  assert(sameBoot(boot(1), { bootAt: 1_000_000 + 30_000, ms: 2 }), "a wall clock stepped by 30 s: same boot");
});

Deno.test("decideHealth(): no lock record, this cluster's data, the window over: the most advanced node recovers", () => {
  assertEquals(decideHealth(facts()), {
    action: "recover-primary",
    identity: ID,
    reason:
      "recovering the cluster: n2 holds every transaction the 3 reporting node(s) hold: n1 has 0-1-8; " +
      "n2 has 0-1-10; n3 has 0-1-9",
  });
  // The same with Consul's key naming this cluster.
  assertEquals(decideHealth(facts({ cluster: ID })).action, "recover-primary");
});

Deno.test("decideHealth(): within the settle window every node waits, counting down", () => {
  const d = decideHealth(facts({ recovery: recovery({ since: boot(90_000) }) }));
  assertEquals(d.action, "report");
  assert(d.action === "report" && !d.healthy);
  assert(d.reason.includes("waiting 21 s more (RECOVERY_SETTLE_WINDOW)"), d.reason);
  // The first pass that sees no record has waited nothing.
  const first = decideHealth(facts({ recovery: recovery({ since: undefined }) }));
  assert(first.action === "report" && first.reason.includes("waiting 30 s more"), JSON.stringify(first));
});

Deno.test("decideHealth(): a node that is not the chosen one waits for it; a diverged cluster promotes nobody", () => {
  const other = decideHealth(facts({ mysql: up({ executed: "0-1-8" }), node: { ...me, node: "n1" } }));
  assert(
    other.action === "report" && other.reason.endsWith("waiting for n2 to take the lock"),
    JSON.stringify(other),
  );
  const diverged = decideHealth(
    facts({ recovery: recovery({ live: [m("n1", "0-1-10,1-5-1"), m("n2", "0-1-10,2-7-1")] }) }),
  );
  assertEquals(diverged.action, "report");
  assert(
    diverged.action === "report" && diverged.reason.startsWith("Cannot recover the cluster: no node holds"),
  );
  assert(diverged.reason.includes("n1 has 0-1-10,1-5-1; n2 has 0-1-10,2-7-1"), diverged.reason);
});

Deno.test("decideHealth(): data without an identity, or with another cluster's, is refused with one line", () => {
  const none = decideHealth(facts({ mysql: up({ identity: undefined }) }));
  assertEquals(none, {
    action: "report",
    healthy: false,
    reason: "No primary lock exists and this node's data carries no cluster identity (made before this " +
      "version, or not by this cluster): refusing to recover the cluster from it; run 'autopilot restore' on " +
      "a stopped node to bring the cluster back from a snapshot, or move MYSQL_DATADIR aside",
  });
  const other = decideHealth(facts({ cluster: "another-cluster" }));
  assertEquals(other.action, "report");
  assert(
    other.action === "report" &&
      other.reason.startsWith(
        `No primary lock exists and this node's data belongs to cluster ${ID}, but ` +
          "Consul's mysql-cluster names cluster another-cluster: refusing to use it",
      ),
    other.reason,
  );
  // Writable: fenced first, whatever the reason.
  assertEquals(decideHealth(facts({ mysql: up({ identity: undefined, readOnly: false }) })).action, "fence");
  // Writable with this cluster's identity: the running primary, whose keys Consul lost, takes its lock back.
  assertEquals(decideHealth(facts({ mysql: up({ readOnly: false }) })).action, "resume-primary");
});

Deno.test("decideHealth(): an empty node bootstraps only when no other node holds data and Consul names no cluster", () => {
  const empty = up({ hasTransactions: false, executed: "", identity: undefined });
  const alone = recovery({ live: [memberRecord("n1"), memberRecord("n3")] });
  assertEquals(decideHealth(facts({ mysql: empty, recovery: alone })).action, "bootstrap-primary");
  const held = decideHealth(facts({ mysql: empty }));
  assert(held.action === "report" && held.reason.includes("n1, n3 hold data"), JSON.stringify(held));
  assertEquals(decideHealth(facts({ mysql: empty, recovery: alone, cluster: ID })).action, "report");
  assertEquals(bootstrapHeldBack("n2", undefined, undefined), undefined);
});

Deno.test("decideHealth(): with Consul's data kept, the last primary resumes (no recovery, no failover)", () => {
  const lock = { record: { node: "n2", address: me.address, port: 3306, ready: true } };
  assertEquals(
    decideHealth(facts({ consul: { up: true, lock, session: "s-n2" }, recovery: undefined })).action,
    "resume-primary",
  );
});

Deno.test("identityUpkeep(): a serving primary's data and Consul's key end up with the same identity", () => {
  assertEquals(identityUpkeep(ID, ID), { kind: "none" });
  assertEquals(identityUpkeep(ID, undefined), { kind: "publish", id: ID });
  assertEquals(identityUpkeep(undefined, ID), { kind: "write-server", id: ID });
  assertEquals(
    identityUpkeep(undefined, undefined),
    { kind: "write-server" },
    "a cluster made before this version",
  );
  assertEquals(identityUpkeep(ID, "x"), { kind: "mismatch", server: ID, consul: "x" });
});

Deno.test("the identity: a random UUID, written last at bootstrap with the binlog, published as a record", () => {
  const id = newClusterIdentity();
  assert(isClusterIdentity(id) && id !== newClusterIdentity());
  const config = loadConfig((n) => ({ MYSQL_REPL_PASSWORD: "r" })[n], { hostname: () => "n1" });
  const statements = bootstrapStatements(config, "mariadb", undefined, id);
  assertEquals(statements.slice(-3), identityStatements(id));
  assert(!statements.some((s) => /sql_log_bin/i.test(s.sql)), "the identity must replicate");
  assertEquals(statements.at(-1)!.values, [id]);
  assertEquals(bootstrapStatements(config, "mariadb").length, statements.length - 3);
  const record = { id, node: "n1", at: 1700000000000 };
  assertEquals(parseClusterIdentity(formatClusterIdentity(record)), record);
  assertEquals(parseClusterIdentity('{"id":"bad id","node":"n1","at":1}'), undefined);
  assertEquals(parseClusterIdentity("not json"), undefined);
});

Deno.test("memberRecord() carries the data's identity when it has one", () => {
  const f = facts();
  const a = { priority: 1, flavour: "mariadb" as const, hostname: "h", now: 5 };
  assertEquals(recordOf(f, a)?.cluster, ID);
  assertEquals("cluster" in recordOf(facts({ mysql: up({ identity: undefined }) }), a)!, false);
});

class MemoryState implements StateStore {
  current: NodeState = {};
  patch(changes: Partial<NodeState>): Promise<void> {
    this.current = JSON.parse(JSON.stringify({ ...this.current, ...changes }));
    return Promise.resolve();
  }
}

Deno.test("keepRecoveryMark(): set by the first pass without a lock record, kept after, removed once there is one", async () => {
  const state = new MemoryState();
  await keepRecoveryMark(state, facts({ recovery: recovery({ now: boot(5000), since: undefined }) }));
  assertEquals(state.current.recoverySince, boot(5000));
  await keepRecoveryMark(state, facts({ recovery: recovery({ now: boot(9000), since: boot(5000) }) }));
  assertEquals(state.current.recoverySince, boot(5000), "the window counts from the first pass");
  const lock = { record: { node: "n1", address: "a", port: 1 } };
  await keepRecoveryMark(state, facts({ consul: { up: true, lock }, recovery: undefined }));
  assertEquals(state.current.recoverySince, undefined);
});

Deno.test("recoverPrimary(): under the failover lock, the plan again, then the lock and the identity key", async () => {
  const kv = new FakeClusterKv();
  const [s1, s2] = [kv.createSession(), kv.createSession()];
  await kv.publishMember(s1, m("n1", "0-1-8"));
  await kv.publishMember(s2, m("n2", "0-1-10"));
  const me2 = { self: me, session: s2 };
  // n1 is not the one on a fresh read: it takes nothing.
  const wrong = await recoverPrimary({ kv, me: { self: { ...me, node: "n1" }, session: s1 }, identity: ID });
  assertEquals(wrong.taken, false);
  assertEquals((await kv.primary()).session, undefined);
  assertEquals(kv.entry(kv.keys.failoverLock)?.session, undefined, "the failover lock is released");
  // Another node holds the failover lock: wait.
  const s3 = kv.createSession();
  assert(await kv.acquireFailoverLock(s3, { node: "n3", at: 1 }, await kv.failoverLock()));
  assertEquals((await recoverPrimary({ kv, me: me2, identity: ID })).taken, false);
  await kv.releaseFailoverLock(s3, "");
  // n2 is: it takes the primary lock and publishes the identity, and the failover lock records it.
  assertEquals(await recoverPrimary({ kv, me: me2, identity: ID }), { taken: true });
  const lock = await kv.primary();
  assertEquals([lock.session, lock.record?.node], [s2, "n2"]);
  assertEquals(parseClusterIdentity(kv.entry(kv.keys.cluster)?.value)?.id, ID);
  assertEquals((await kv.failoverLock()).record?.promoted, "n2");
  assertEquals((await kv.failoverLock()).record?.recovery, true, "status names it a recovery");
  assertEquals((await kv.failoverLock()).session, undefined);
});

Deno.test("recoverPrimary(): takes nothing when Consul's key names another cluster meanwhile", async () => {
  const kv = new FakeClusterKv();
  const s2 = kv.createSession();
  await kv.publishMember(s2, m("n2", "0-1-10"));
  kv.put(kv.keys.cluster, formatClusterIdentity({ id: "other", node: "x", at: 1 }));
  assertEquals((await recoverPrimary({ kv, me: { self: me, session: s2 }, identity: ID })).taken, false);
  assertEquals((await kv.primary()).session, undefined);
});

Deno.test("decideHealth(): a node restored from a snapshot resumes alone, but joins the recovery when others hold data", () => {
  const restored = { restoredGtid: "0-1-7", mysql: up({ executed: "0-1-7" }) };
  const alone = recovery({ live: [m("n2", "0-1-7")] });
  assertEquals(decideHealth(facts({ ...restored, recovery: alone })).action, "resume-primary");
  assertEquals(decideHealth(facts({ ...restored, recovery: undefined })).action, "resume-primary");
  // n1 holds more than the snapshot: it is the one, and the restored node waits for it.
  const d = decideHealth(
    facts({ ...restored, recovery: recovery({ live: [m("n1", "0-1-10"), m("n2", "0-1-7")] }) }),
  );
  assert(d.action === "report" && d.reason.endsWith("waiting for n1 to take the lock"), JSON.stringify(d));
});

Deno.test("gatherFacts(): with no primary lock record, the recovery facts: members, window, this node's clock and mark", async () => {
  const kv = new FakeClusterKv();
  const s2 = kv.createSession();
  await kv.publishMember(s2, m("n2", "0-1-10"));
  kv.put(kv.keys.cluster, formatClusterIdentity({ id: ID, node: "n1", at: 1 }));
  const session = { id: s2, renewedAt: performance.now() };
  const { facts } = await gatherFacts({
    self: me,
    local: { server: new FakeServer("mariadb", { gtid: { executed: "0-1-10" } }) },
    session,
    cluster: await readCluster(kv, session),
    state: { recoverySince: boot(1000) },
    restored: undefined,
    maxLagSeconds: 30,
    quietPeriodMs: 300_000,
    now: Date.now(),
    clusterKey: kv.keys.cluster,
    recoverySettleMs: 5000,
    bootClock: () => Promise.resolve(boot(4000)),
  });
  assertEquals(facts.cluster, ID);
  assertEquals(facts.recovery, {
    key: "mysql-cluster",
    settleMs: 5000,
    now: boot(4000),
    since: boot(1000),
    live: [m("n2", "0-1-10")],
    departed: [],
  });
  // With a lock record there are none.
  assert(await kv.acquirePrimary(s2, me));
  const again = await gatherFacts({
    self: me,
    local: { server: new FakeServer() },
    session,
    cluster: await readCluster(kv, session),
    state: {},
    restored: undefined,
    maxLagSeconds: 30,
    quietPeriodMs: 300_000,
    now: Date.now(),
    bootClock: () => Promise.reject(new Error("not read")),
  });
  assertEquals(again.facts.recovery, undefined);
});
