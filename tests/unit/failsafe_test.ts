/**
 * Failsafe mode (src/ha/failsafe.ts): the rule on the members' answers, the action on the fakes of the server
 * and Consul operators, the state file's members cache (src/ha/report.ts cacheOf), and a whole Consul outage
 * and return, pass by pass, on the fakes.
 */
import { assert, assertEquals } from "./assert.ts";
import { FakeServer } from "./fakes/fake_server.ts";
import { FakeClusterKv } from "./fakes/fake_cluster_kv.ts";
import { failsafeVerdict, type MemberAnswer, runFailsafe } from "../../src/ha/failsafe.ts";
import { cacheOf } from "../../src/ha/report.ts";
import { decideHealth, type HealthFacts } from "../../src/ha/decide.ts";
import { gatherFacts, keepSession, readCluster } from "../../src/ha/facts.ts";
import type { KnownMember, NodeState, StateStore } from "../../src/state.ts";
import type { ReplicaStatus } from "../../src/mysql/flavour.ts";
import type { ClusterView } from "../../src/cluster_kv.ts";

const n1 = { node: "n1", address: "10.0.0.11", port: 3306 };
const n2 = { node: "n2", address: "10.0.0.12", port: 3306 };
const n3 = { node: "n3", address: "10.0.0.13", port: 3306 };

class MemoryState implements StateStore {
  constructor(public current: NodeState = {}) {}
  patch(changes: Partial<NodeState>): Promise<void> {
    this.current = JSON.parse(JSON.stringify({ ...this.current, ...changes }));
    return Promise.resolve();
  }
}

function from(src: KnownMember, over: Partial<ReplicaStatus> = {}): ReplicaStatus {
  return {
    sourceHost: src.address,
    sourcePort: src.port,
    ioRunning: "yes",
    sqlRunning: true,
    lagSeconds: 0,
    retrievedGtids: "",
    lastIoError: "",
    lastSqlError: "",
    ...over,
  };
}

Deno.test("failsafeVerdict(): keeps writing only when every member replicates from this node, both threads running", () => {
  const ok = (m: KnownMember): MemberAnswer => ({ member: m, status: from(n1) });
  assertEquals(failsafeVerdict(n1, [ok(n2), ok(n3)], "refused"), {
    keep: true,
    reason:
      "Consul cannot be reached (refused): failsafe, 2 members replicate from this node, staying writable",
  });
  assertEquals(
    failsafeVerdict(n1, [ok(n2)], "refused").reason,
    "Consul cannot be reached (refused): " +
      "failsafe, 1 member replicates from this node, staying writable",
  );
  const cases: [MemberAnswer, string][] = [
    [
      { member: n3, error: "no answer within 2000 ms" },
      "does not answer over MySQL (no answer within 2000 ms)",
    ],
    [{ member: n3, status: undefined }, "replicates from nobody"],
    [{ member: n3, status: from(n2) }, "replicates from 10.0.0.12:3306, not from this node"],
    [
      { member: n3, status: from({ ...n1, port: 3307 }) },
      "replicates from 10.0.0.11:3307, not from this node",
    ],
    [
      { member: n3, status: from(n1, { ioRunning: "connecting", lastIoError: "timeout" }) },
      "its I/O thread from this node is not connected (timeout)",
    ],
    [{ member: n3, status: from(n1, { ioRunning: "no" }) }, "its I/O thread from this node is stopped"],
    [{ member: n3, status: from(n1, { sqlRunning: false }) }, "its SQL thread is stopped"],
  ];
  for (const [answer, why] of cases) {
    assertEquals(failsafeVerdict(n1, [ok(n2), answer], "refused"), {
      keep: false,
      reason: `Consul cannot be reached (refused) and member n3 (10.0.0.13:3306) ${why}: failsafe ends, ` +
        "turning read-only until Consul is back",
    });
  }
});

Deno.test("failsafeVerdict(): a primary that knows no other member keeps writing, as in a one-node cluster", () => {
  assertEquals(failsafeVerdict(n1, [], "timeout"), {
    keep: true,
    reason: "Consul cannot be reached (timeout): failsafe, no other member is known, staying writable",
  });
});

/** The primary n1 and its replicas n2, n3 as fakes; `ask` reads a replica's fake. */
function failsafeCluster() {
  const kv = new FakeClusterKv();
  const server = new FakeServer("mariadb", { readOnly: false });
  const replicas: Record<string, FakeServer> = {
    n2: new FakeServer("mariadb", { replica: from(n1) }),
    n3: new FakeServer("mariadb", { replica: from(n1) }),
  };
  const state = new MemoryState({ members: { heldLock: true, others: [n2, n3] } });
  const args = {
    server,
    kv,
    self: n1,
    state,
    members: [n2, n3],
    leaseMs: 10_000,
    consulError: "refused",
    ask: (m: KnownMember, signal: AbortSignal) => replicas[m.node].replicaStatus({ signal }),
  };
  return { kv, server, replicas, state, args };
}

Deno.test("runFailsafe(): every member replicates: the lease is extended, the node stays writable and healthy", async () => {
  const { server, state, args } = failsafeCluster();
  const before = Date.now();
  const r = await runFailsafe(args);
  assertEquals(r.healthy, true);
  assertEquals(
    r.outcome?.text,
    "Consul cannot be reached (refused): failsafe, 2 members replicate from " +
      "this node, staying writable",
  );
  assertEquals(server.state.readOnly, false);
  assert(
    server.state.leaseUntil !== undefined && server.state.leaseUntil >= before + 9_000,
    "lease extended",
  );
  assert(server.state.leaseUntil <= Date.now() + 10_000, "from when the check started, never longer");
  assert(state.current.failsafeSince !== undefined, "the start of failsafe is recorded (and logged once)");
});

Deno.test("runFailsafe(): one member that does not replicate from it fences the node, naming the member", async () => {
  const { server, replicas, state, args } = failsafeCluster();
  server.state.leaseUntil = Date.now() + 10_000;
  state.current = { ...state.current, failsafeSince: 1 };
  replicas.n3.state.replica = from(n2);
  const r = await runFailsafe(args);
  assertEquals(r.healthy, false);
  assertEquals(r.outcome, {
    level: "error",
    text:
      "Consul cannot be reached (refused) and member n3 (10.0.0.13:3306) replicates from 10.0.0.12:3306, " +
      "not from this node: failsafe ends, turning read-only until Consul is back",
  });
  assertEquals(server.state.readOnly, true);
  assertEquals(server.state.leaseUntil, undefined, "no live lease left");
  assertEquals(state.current.failsafeSince, undefined);
});

Deno.test("runFailsafe(): a member that does not answer within the timeout fences the node in time", async () => {
  const { server, replicas, args } = failsafeCluster();
  replicas.n2.failOn("replicaStatus");
  const hang = (_m: KnownMember, signal: AbortSignal) =>
    new Promise<ReplicaStatus | undefined>((_, reject) =>
      signal.addEventListener("abort", () => reject(signal.reason))
    );
  const started = performance.now();
  const r = await runFailsafe({ ...args, timeoutMs: 200, ask: hang });
  const took = performance.now() - started;
  assertEquals(r.healthy, false);
  assert(
    r.outcome?.text.includes(
      "member n2 (10.0.0.12:3306) does not answer over MySQL (no answer within 200 ms)",
    ),
  );
  assert(took < 1000, `asked in parallel, each bounded: took ${took} ms`);
  assertEquals(server.state.readOnly, true);
  // Never answering at all (a call that ignores its signal) is bounded the same way.
  server.state.readOnly = false;
  const deaf = () => new Promise<ReplicaStatus | undefined>(() => {});
  assertEquals((await runFailsafe({ ...args, timeoutMs: 200, ask: deaf })).healthy, false);
  assertEquals(server.state.readOnly, true);
});

Deno.test("runFailsafe(): a lease that cannot be extended fences the node", async () => {
  const { server, args } = failsafeCluster();
  server.failOn("extendLease", new Error("lost connection"), 1);
  const r = await runFailsafe(args);
  assertEquals(r.healthy, false);
  assertEquals(server.state.readOnly, true);
  assert(r.outcome?.text.endsWith("but the in-server lease could not be extended: turning read-only"));
});

function viewOf(kv: FakeClusterKv): Promise<ClusterView> {
  return kv.read();
}

Deno.test("cacheOf(): the other live members and whether this node held the lock, written only when changed", async () => {
  const kv = new FakeClusterKv();
  const s1 = kv.createSession();
  const s3 = kv.createSession();
  assert(await kv.acquirePrimary(s1, { ...n1, ready: true }));
  const record = (m: KnownMember) => ({
    ...m,
    priority: 1,
    flavour: "mariadb" as const,
    role: "replica" as const,
    executed: "",
    retrieved: "",
    updatedAt: 0,
  });
  await kv.publishMember(s1, record(n1));
  await kv.publishMember(s3, record(n3));
  const gone = kv.createSession();
  await kv.publishMember(gone, record(n2));
  kv.endSession(gone);
  const view = await viewOf(kv);
  const facts: HealthFacts = {
    node: n1,
    mysql: { up: true, readOnly: false, hasTransactions: true, executed: "" },
    consul: { up: true, lock: view.primary, session: s1 },
    maxLagSeconds: 30,
  };
  const changes = cacheOf({ facts, view, serving: false, self: n1 }, {}, 5);
  assertEquals(changes, { members: { heldLock: true, others: [n3] } }, "live only; this node left out");
  assertEquals(cacheOf({ facts, view, serving: false, self: n1 }, changes, 5), {}, "nothing changed");
  assertEquals(cacheOf({ facts, view, serving: false, self: n1 }, { ...changes, failsafeSince: 3 }, 5), {
    failsafeSince: undefined,
  }, "Consul read again: failsafe is over");
  const down: HealthFacts = { ...facts, consul: { up: false, error: "refused" } };
  assertEquals(
    cacheOf({ facts: down, serving: false, self: n1 }, changes, 5),
    {},
    "kept while Consul is down",
  );
  const replica: HealthFacts = {
    ...facts,
    node: n3,
    mysql: {
      up: true,
      readOnly: true,
      hasTransactions: true,
      executed: "",
      replica: from(n1, { lagSeconds: 2 }),
    },
    consul: { up: true, lock: view.primary, session: s3 },
  };
  assertEquals(cacheOf({ facts: replica, view, serving: false, self: n3 }, {}, 77), {
    members: { heldLock: false, others: [n1] },
    replicated: { source: "10.0.0.11:3306", lagSeconds: 2, at: 77 },
  });
  const reconnecting = {
    ...replica,
    mysql: { ...replica.mysql, replica: from(n1, { ioRunning: "connecting" as const, lagSeconds: null }) },
  } as HealthFacts;
  assertEquals(
    cacheOf({ facts: reconnecting, serving: false, self: n3 }, {
      replicated: { source: "10.0.0.11:3306", lagSeconds: 2, at: 77 },
    }, 99),
    {},
    "the last good observation is kept while the I/O thread reconnects",
  );
});

Deno.test("a Consul outage, pass by pass: failsafe keeps the primary writable, and it resumes without a failover", async () => {
  const { kv, server, state, args } = failsafeCluster();
  state.current = {};
  const passFacts = async () => {
    const session = await keepSession(kv, state, () => {});
    const cluster = await readCluster(kv, session);
    const { facts, view } = await gatherFacts({
      self: n1,
      local: { server },
      session,
      cluster,
      state: state.current,
      restored: undefined,
      maxLagSeconds: 30,
      quietPeriodMs: 0,
      now: Date.now(),
      failsafe: true,
    });
    return { facts, view };
  };
  // The steady primary: it holds the lock; the pass caches the members.
  const first = await keepSession(kv, state, () => {});
  assert("id" in first);
  assert(await kv.acquirePrimary(first.id, { ...n1, ready: true }));
  for (const [m, s] of [[n2, kv.createSession()], [n3, kv.createSession()]] as const) {
    await kv.publishMember(s, {
      ...m,
      priority: 1,
      flavour: "mariadb",
      role: "replica",
      executed: "",
      retrieved: "",
      updatedAt: 0,
    });
  }
  let { facts, view } = await passFacts();
  assertEquals(decideHealth(facts).action, "report");
  await state.patch(cacheOf({ facts, view, serving: true, self: n1 }, state.current, 1));
  assertEquals(state.current.members, { heldLock: true, others: [n2, n3] });

  // Consul goes away: the primary asks its replicas and stays writable.
  kv.down();
  ({ facts } = await passFacts());
  const d = decideHealth(facts);
  assertEquals(d.action, "failsafe");
  assertEquals((await runFailsafe({ ...args, members: state.current.members!.others })).healthy, true);
  assertEquals(server.state.readOnly, false);

  // Consul comes back having expired every session: a new session, the lock free, its record naming n1.
  kv.endSession(first.id);
  kv.up();
  ({ facts, view } = await passFacts());
  assert(facts.consul.up && facts.consul.session !== first.id, "a new session");
  assertEquals(facts.consul.up && facts.consul.lock.session, undefined);
  assertEquals(decideHealth(facts), {
    action: "resume-primary",
    reason: "this node was the last primary and the lock is free: taking it",
  }, "resumes at once: never fenced first");
});
