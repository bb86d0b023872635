import { assert, assertEquals } from "./assert.ts";
import { decideHealth, type HealthFacts, type MysqlFacts, quietPeriodReason } from "../../src/ha/decide.ts";
import { parseFailoverRecord } from "../../src/cluster_kv.ts";
import type { ReplicaStatus } from "../../src/mysql/flavour.ts";

const me = { node: "n2", address: "10.0.0.12", port: 3306 };
const p1 = { node: "n1", address: "10.0.0.11", port: 3306, ready: true };
const running: ReplicaStatus = {
  sourceHost: p1.address,
  sourcePort: 3306,
  ioRunning: "yes",
  sqlRunning: true,
  lagSeconds: 0,
  retrievedGtids: "0-1-5",
  lastIoError: "",
  lastSqlError: "",
};
const up = (over: Partial<Extract<MysqlFacts, { up: true }>> = {}): MysqlFacts => ({
  up: true,
  readOnly: true,
  hasTransactions: false,
  executed: "",
  replicationStartedThisRun: true,
  ...over,
});
const facts = (over: Partial<HealthFacts> = {}): HealthFacts => ({
  node: me,
  mysql: up(),
  consul: { up: true, lock: {} },
  maxLagSeconds: 30,
  ...over,
});
const heldBy = (record: typeof p1, session: string) => ({ up: true as const, lock: { record, session } });

Deno.test("decideHealth() bootstraps an empty node when no primary was ever elected", () => {
  assertEquals(decideHealth(facts()), {
    action: "bootstrap-primary",
    reason: "no primary has ever been elected and this node is empty",
  });
});

Deno.test("decideHealth() refuses to bootstrap a node that has data when no lock record exists", () => {
  assertEquals(decideHealth(facts({ mysql: up({ hasTransactions: true }) })).action, "report");
  assertEquals(
    decideHealth(facts({ mysql: up({ hasTransactions: true, readOnly: false }) })).action,
    "fence",
  );
});

Deno.test("decideHealth() makes the lock holder writable, then reports it healthy", () => {
  const consul = {
    up: true as const,
    lock: { record: { ...me, ready: true }, session: "s-me" },
    session: "s-me",
  };
  assertEquals(
    decideHealth(
      facts({ consul: { ...consul, lock: { record: me, session: "s-me" } }, mysql: up({ readOnly: false }) }),
    )
      .action,
    "serve-as-primary",
    "a holder that has not marked itself ready finishes its promotion",
  );
  assertEquals(decideHealth(facts({ consul })).action, "serve-as-primary");
  assertEquals(decideHealth(facts({ consul, mysql: up({ readOnly: false, hasTransactions: true }) })), {
    action: "report",
    healthy: true,
    reason: "primary: holds the lock and is writable",
  });
  assertEquals(
    decideHealth(facts({ consul, mysql: up({ readOnly: false, replica: running }) })).action,
    "serve-as-primary",
    "a primary must not replicate from anyone",
  );
});

Deno.test("decideHealth() fences a writable node when another node holds the lock", () => {
  const d = decideHealth(facts({ consul: heldBy(p1, "s1"), mysql: up({ readOnly: false }) }));
  assertEquals(d, {
    action: "fence",
    releaseLock: false,
    reason: "n1 holds the primary lock: turning read-only",
  });
});

Deno.test("decideHealth() follows the primary from the restored snapshot's position", () => {
  assertEquals(decideHealth(facts({ consul: heldBy(p1, "s1"), restoredGtid: "0-1-7" })), {
    action: "follow",
    primary: p1,
    fromGtid: "0-1-7",
    demote: false,
    reason: "restored from a snapshot at 0-1-7: replicating from n1 (10.0.0.11:3306)",
  });
});

Deno.test("decideHealth() follows from the start on an empty node, and demotes a node that has written", () => {
  const empty = decideHealth(facts({ consul: heldBy(p1, "s1") }));
  assertEquals(empty.action === "follow" && [empty.demote, empty.fromGtid], [false, undefined]);
  const old = decideHealth(facts({ consul: heldBy(p1, "s1"), mysql: up({ hasTransactions: true }) }));
  assertEquals(old.action === "follow" && old.demote, true);
});

Deno.test("decideHealth() repoints a replica that follows a node which is not the primary", () => {
  const elsewhere = { ...running, sourceHost: "10.0.0.13" };
  const d = decideHealth(
    facts({ consul: heldBy(p1, "s1"), mysql: up({ replica: elsewhere, hasTransactions: true }) }),
  );
  assertEquals(d.action === "follow" && [d.demote, d.reason], [
    false,
    "replicating from 10.0.0.13:3306, but n1 (10.0.0.11:3306) is primary",
  ]);
});

Deno.test("decideHealth() reports a replica healthy when both threads run within the lag limit", () => {
  assertEquals(decideHealth(facts({ consul: heldBy(p1, "s1"), mysql: up({ replica: running }) })), {
    action: "report",
    healthy: true,
    reason: "replica of 10.0.0.11:3306, 0 s behind",
  });
});

Deno.test("decideHealth() reports a replica unhealthy when a thread stopped or it lags too much", () => {
  const sqlStopped = { ...running, sqlRunning: false, lastSqlError: "Error 1950 out-of-order" };
  const d = decideHealth(facts({ consul: heldBy(p1, "s1"), mysql: up({ replica: sqlStopped }) }));
  assertEquals(d, {
    action: "report",
    healthy: false,
    reason:
      "replication from 10.0.0.11:3306 is not running (I/O thread: yes, SQL thread: no): SQL: Error 1950 out-of-order",
  });
  const lagging = { ...running, lagSeconds: 31 };
  const l = decideHealth(facts({ consul: heldBy(p1, "s1"), mysql: up({ replica: lagging }) }));
  assertEquals(l.action === "report" && [l.healthy, l.reason], [
    false,
    "replica of 10.0.0.11:3306 lags 31 s (limit 30 s)",
  ]);
});

Deno.test("decideHealth() restarts replication after a mysqld restart but not after a manual stop", () => {
  const stopped = { ...running, ioRunning: "no" as const, sqlRunning: false, lagSeconds: null };
  const consul = heldBy(p1, "s1");
  // nobody started replication in this run of mysqld, however soon after the last run it started
  assertEquals(
    decideHealth(facts({ consul, mysql: up({ replica: stopped, replicationStartedThisRun: false }) })),
    {
      action: "restart-replication",
      source: "10.0.0.11:3306",
      reason: "mysqld restarted: starting replication from 10.0.0.11:3306 again",
    },
  );
  // started in this run and stopped since: somebody's STOP REPLICA, reported and left alone
  const manual = decideHealth(
    facts({ consul, mysql: up({ replica: stopped, replicationStartedThisRun: true }) }),
  );
  assertEquals(manual.action === "report" && manual.healthy, false);
  // stopped by a pass of ours that was cut short while re-pointing: started
  const cut = decideHealth(
    facts({ consul, mysql: up({ replica: stopped, replicationStartedThisRun: true }), repointing: true }),
  );
  assertEquals(cut, {
    action: "restart-replication",
    source: "10.0.0.11:3306",
    reason: "a pass re-pointing replication to 10.0.0.11:3306 stopped before starting it: starting it",
  });
  // FLUSH STATUS reset the count: unknown, so left alone too
  const unknown = decideHealth(
    facts({ consul, mysql: up({ replica: stopped, replicationStartedThisRun: undefined }) }),
  );
  assertEquals(unknown.action, "report");
  // stopped by an error: reported with the error, never restarted blindly
  const failed = { ...stopped, lastIoError: "error connecting to master" };
  const e = decideHealth(facts({ consul, mysql: up({ replica: failed, replicationStartedThisRun: false }) }));
  assertEquals(e.action === "report" && e.reason.includes("error connecting to master"), true);
});

Deno.test("decideHealth() takes the free lock again when this node was the last primary", () => {
  const consul = { up: true as const, lock: { record: me } };
  assertEquals(
    decideHealth(facts({ consul, mysql: up({ hasTransactions: true }) })).action,
    "resume-primary",
  );
});

Deno.test("decideHealth() fails over when the lock is free and another node was the last primary", () => {
  const consul = { up: true as const, lock: { record: p1 } };
  const d = decideHealth(facts({ consul, mysql: up({ replica: running }) }));
  assertEquals(d, {
    action: "failover",
    failedPrimary: "n1",
    reason: "nobody holds the primary lock (last holder: n1): failing over",
  });
  assertEquals(
    decideHealth(facts({ consul, mysql: up({ readOnly: false }) })).action,
    "fence",
    "read-only first",
  );
});

Deno.test("decideHealth() does not fail over while paused or in the quiet period", () => {
  const consul = { up: true as const, lock: { record: p1 } };
  const paused = decideHealth(facts({ consul, mysql: up({ replica: running }), failover: { paused: true } }));
  assertEquals(paused, {
    action: "report",
    healthy: false,
    reason: "nobody holds the primary lock (last holder: n1) and automatic failover is paused",
  });
  const quiet = decideHealth(
    facts({
      consul,
      mysql: up({ replica: running }),
      failover: { paused: false, quietReason: "quiet: n1 is alive" },
    }),
  );
  assertEquals(quiet, { action: "report", healthy: false, reason: "quiet: n1 is alive" });
});

Deno.test("decideHealth() waits for a new primary to be ready before following it", () => {
  const notReady = { up: true as const, lock: { record: { ...p1, ready: undefined }, session: "s1" } };
  assertEquals(decideHealth(facts({ consul: notReady, mysql: up({ replica: running }) })), {
    action: "report",
    healthy: false,
    reason: "n1 holds the primary lock and is not ready yet (applying its relay log): waiting",
  });
});

Deno.test("decideHealth() releases the lock when this primary's mysqld is down", () => {
  const consul = { up: true as const, lock: { record: me, session: "s-me" }, session: "s-me" };
  const d = decideHealth(facts({ consul, mysql: { up: false, error: "connection refused", gone: true } }));
  assertEquals(d.action === "fence" && d.releaseLock, true);
  const replica = decideHealth(
    facts({ consul: heldBy(p1, "s1"), mysql: { up: false, error: "connection refused", gone: true } }),
  );
  assertEquals(replica, {
    action: "report",
    healthy: false,
    reason: "mysqld does not answer: connection refused",
  });
});

Deno.test("decideHealth() fences a writable node when Consul cannot be reached", () => {
  const consul = { up: false as const, error: "ECONNREFUSED" };
  assertEquals(decideHealth(facts({ consul, mysql: up({ readOnly: false }) })), {
    action: "fence",
    releaseLock: false,
    reason:
      "Consul cannot be reached (ECONNREFUSED): turning read-only, since the primary lock cannot be renewed",
  });
  const r = decideHealth(facts({ consul, mysql: up({ replica: running }) }));
  assertEquals(r.action === "report" && r.healthy, true, "a replica keeps replicating without Consul");
});

Deno.test("decideHealth() fences when the lock names this node under a session it does not have", () => {
  const d = decideHealth(
    facts({ consul: { up: true, lock: { record: me, session: "old" }, session: "new" } }),
  );
  assertEquals(d.action === "fence" && d.releaseLock, false);
});

Deno.test("quietPeriodReason() holds back only a repeat failover of a node promoted recently and still alive", () => {
  const last = parseFailoverRecord(
    JSON.stringify({ node: "n3", at: 1_000, failedPrimary: "n1", promoted: "n2" }),
  );
  assertEquals(
    quietPeriodReason(last, "n2", 61_000, 300_000, ["n2", "n3"]),
    "the last failover, 60 s ago, promoted n2, which is still alive (FAILOVER_QUIET_PERIOD 300 s): waiting for it " +
      "to come back",
  );
  assertEquals(quietPeriodReason(last, "n2", 400_000, 300_000, ["n2"]), undefined, "after the period");
  assertEquals(quietPeriodReason(last, "n2", 61_000, 300_000, ["n3"]), undefined, "n2 is truly gone");
  assertEquals(
    quietPeriodReason(last, "n3", 61_000, 300_000, ["n3"]),
    undefined,
    "n3 was not the one promoted",
  );
  const attempt = parseFailoverRecord(JSON.stringify({ node: "n3", at: 1_000, failedPrimary: "n1" }));
  assertEquals(
    quietPeriodReason(attempt, "n1", 2_000, 300_000, ["n1"]),
    undefined,
    "an attempt that promoted nobody",
  );
  assertEquals(quietPeriodReason(undefined, "n1", 2_000, 300_000, ["n1"]), undefined);
  assertEquals(quietPeriodReason(parseFailoverRecord("not json"), "n1", 2_000, 300_000, ["n1"]), undefined);
});

Deno.test("decideHealth() makes a node restored from a snapshot primary when no primary was ever elected", () => {
  const consul = { up: true as const, lock: {} };
  const restored = decideHealth(
    facts({ consul, mysql: up({ hasTransactions: true }), restoredGtid: "0-1-6" }),
  );
  assertEquals(restored.action, "resume-primary");
  assert(restored.reason.includes("restored from a snapshot at 0-1-6"), restored.reason);
  // Data that did not come from a restore is never taken for a cluster's: no bootstrap over it.
  const found = decideHealth(facts({ consul, mysql: up({ hasTransactions: true }) }));
  assertEquals(found.action, "report");
});

Deno.test("decideHealth() keeps the lock holder read-only while its own switchover is under way", () => {
  const consul = {
    up: true as const,
    lock: { record: { ...me, ready: true }, session: "s-me" },
    session: "s-me",
    switchingOver: true,
  };
  const d = decideHealth(facts({ consul, mysql: up({ readOnly: true }) }));
  assertEquals(d.action === "report" && d.healthy, false);
  assert(d.reason.includes("switchover away from this node is under way"), d.reason);
});

Deno.test("decideHealth() releases the failover lock of a switchover from this node that never finished", () => {
  const consul = {
    up: true as const,
    lock: { record: { ...me, ready: true }, session: "s-me" },
    session: "s-me",
    staleSwitchoverAt: Date.UTC(2026, 0, 2, 3, 4, 5),
  };
  const d = decideHealth(facts({ consul, mysql: up({ readOnly: true }) }));
  assertEquals(d, {
    action: "end-switchover",
    reason: "A switchover started at 2026-01-02T03:04:05.000Z never finished: releasing its failover lock",
  });
  // First, whatever else: with mysqld gone, or after the primary lock went elsewhere, it still holds back
  // every failover.
  assertEquals(
    decideHealth(facts({ consul, mysql: { up: false, error: "gone", gone: true } })).action,
    "end-switchover",
  );
  const handedOver = { ...consul, lock: { record: p1, session: "s-p1" } };
  assertEquals(decideHealth(facts({ consul: handedOver, mysql: up() })).action, "end-switchover");
});

Deno.test("decideHealth() keeps the lock when this primary's mysqld answers too slowly: it may still take writes", () => {
  const consul = { up: true as const, lock: { record: me, session: "s-me" }, session: "s-me" };
  const d = decideHealth(facts({ consul, mysql: { up: false, error: "connect timeout", gone: false } }));
  assertEquals(d.action === "report" && d.healthy, false);
  assert(d.reason.includes("keeping the primary lock"), d.reason);
});

Deno.test("decideHealth() without Consul: failsafe for the writable lock holder only, fence otherwise", () => {
  const down = { up: false as const, error: "connection refused" };
  const writable = up({ readOnly: false, hasTransactions: true });
  assertEquals(decideHealth(facts({ consul: down, mysql: writable, failsafe: { heldLock: true } })), {
    action: "failsafe",
    consulError: "connection refused",
    reason:
      "Consul cannot be reached (connection refused): failsafe mode, asking the other members whether " +
      "they replicate from this node",
  });
  assertEquals(decideHealth(facts({ consul: down, mysql: writable })), {
    action: "fence",
    releaseLock: false,
    reason:
      "Consul cannot be reached (connection refused): turning read-only, since the primary lock cannot " +
      "be renewed",
  }, "FAILSAFE_MODE=false: read-only at once");
  const notHolder = decideHealth(facts({ consul: down, mysql: writable, failsafe: { heldLock: false } }));
  assertEquals(notHolder.action, "fence", "writable without having held the lock: never failsafe");
  assertEquals(
    decideHealth(
      facts({ consul: down, mysql: up({ readOnly: false, replica: running }), failsafe: { heldLock: true } }),
    )
      .action,
    "fence",
    "a writable node that replicates is no primary to keep",
  );
});

Deno.test("decideHealth() without Consul: a fenced primary only reports, and replicas never promote", () => {
  const down = { up: false as const, error: "timeout" };
  assertEquals(
    decideHealth(facts({ consul: down, mysql: up({ hasTransactions: true }), failsafe: { heldLock: true } })),
    { action: "report", healthy: false, reason: "Consul cannot be reached: timeout" },
    "read-only (fenced by failsafe or its lease): it stays so until Consul is back",
  );
  assertEquals(
    decideHealth(facts({ consul: down, mysql: up({ replica: running }), failsafe: { heldLock: false } }))
      .action,
    "report",
  );
});

Deno.test("decideHealth() after Consul returns: the writable last primary with a new session resumes at once", () => {
  const writable = up({ readOnly: false, hasTransactions: true });
  // Consul expired every session: this node has a new one, the lock is free and its record names this node.
  assertEquals(
    decideHealth(
      facts({
        mysql: writable,
        consul: { up: true, lock: { record: { ...me, ready: true } }, session: "s-new" },
      }),
    ),
    { action: "resume-primary", reason: "this node was the last primary and the lock is free: taking it" },
  );
  // The outage was shorter than the session: its own session still holds the lock.
  assertEquals(
    decideHealth(
      facts({ mysql: writable, consul: { ...heldBy({ ...me, ready: true }, "s-me"), session: "s-me" } }),
    ),
    { action: "report", healthy: true, reason: "primary: holds the lock and is writable" },
  );
});

Deno.test("decideHealth() keeps a replica whose I/O thread reconnects healthy within MAX_REPLICATION_LAG", () => {
  const reconnecting = {
    ...running,
    ioRunning: "connecting" as const,
    lagSeconds: null,
    lastIoError: "refused",
  };
  const last = { source: `${p1.address}:3306`, lagSeconds: 2, at: 1_000_000 };
  const f = (now: number) =>
    facts({ consul: heldBy(p1, "s1"), mysql: up({ replica: reconnecting }), replicaSeen: { last, now } });
  const d = decideHealth(f(1_010_000));
  assertEquals(d.action === "report" && d.healthy, true, "10 s ago + 2 s lag is within 30 s");
  const late = decideHealth(f(1_029_000));
  assertEquals(late.action === "report" && late.healthy, false, "29 s ago + 2 s lag is beyond 30 s");
});

Deno.test("decideHealth() takes over from a ready holder whose heartbeat stands still, unless held back", () => {
  const consul = { up: true as const, lock: { record: p1, session: "s1", modifyIndex: 42 } };
  const stale = facts({ consul, mysql: up({ replica: running }), staleHolderMs: 12_340 });
  assertEquals(decideHealth(stale), {
    action: "failover",
    failedPrimary: "n1",
    takeOver: { session: "s1", index: 42 },
    reason:
      "n1 holds the primary lock but its heartbeat has not moved for 12.3 s: taking the lock over and " +
      "failing over",
  });
  assertEquals(decideHealth({ ...stale, failover: { paused: true } }), {
    action: "report",
    healthy: false,
    reason:
      "n1 holds the primary lock but its heartbeat has not moved for 12.3 s and automatic failover is paused",
  });
  assertEquals(
    decideHealth({ ...stale, failover: { paused: false, quietReason: "quiet: n1 is alive" } }),
    { action: "report", healthy: false, reason: "quiet: n1 is alive" },
  );
  assertEquals(decideHealth({ ...stale, mysql: up({ readOnly: false }) }).action, "fence", "read-only first");
  const notReady = { up: true as const, lock: { ...consul.lock, record: { ...p1, ready: undefined } } };
  assertEquals(
    decideHealth({ ...stale, consul: notReady }).reason,
    "n1 holds the primary lock and is not ready yet (applying its relay log): waiting",
    "a holder still promoting is left alone",
  );
  // Without the fact, the holder is followed as before.
  assertEquals(decideHealth(facts({ consul, mysql: up({ replica: running }) })).action, "report");
});

Deno.test("decideHealth() with Consul's keys lost under a running primary: it takes the lock back at once", () => {
  const consul = { up: true as const, lock: {}, session: "s-me" };
  const writable = up({ readOnly: false, hasTransactions: true, identity: "c-1" });
  assertEquals(
    decideHealth(facts({ consul, mysql: writable, failsafe: { heldLock: true } })).action,
    "resume-primary",
  );
  assertEquals(
    decideHealth(facts({ consul, mysql: writable })).action,
    "resume-primary",
    "FAILSAFE_MODE off",
  );
  assert(
    decideHealth(facts({ consul, mysql: writable, failsafe: { heldLock: false } })).action !==
      "resume-primary",
    "writable without having held the lock: no",
  );
  assert(
    decideHealth(facts({ consul, mysql: writable, cluster: "c-2" })).action !== "resume-primary",
    "another cluster's key: no",
  );
  assert(
    decideHealth(facts({ consul, mysql: up({ hasTransactions: true, identity: "c-1" }) })).action !==
      "resume-primary",
    "read-only: the recovery decides",
  );
});

Deno.test("decideHealth() with SEMI_SYNC: a restarted last primary takes its lock back only through a failover's plan", () => {
  const consul = { up: true as const, lock: { record: { ...me, ready: true } }, session: "s-me" };
  const restarted = up({ hasTransactions: true });
  const d = decideHealth(facts({ consul, mysql: restarted, semiSync: true }));
  assertEquals([d.action, d.action === "failover" && d.failedPrimary], ["failover", me.node]);
  assertEquals(decideHealth(facts({ consul, mysql: restarted })).action, "resume-primary", "async: at once");
  assertEquals(
    decideHealth(facts({ consul, mysql: up({ readOnly: false, hasTransactions: true }), semiSync: true }))
      .action,
    "resume-primary",
    "still writable (Consul came back): no restart cut anything",
  );
});

Deno.test("decideHealth() with TLS settings re-points a replica set up without verified TLS, never restarts it plain", () => {
  const consul = heldBy(p1, "s1");
  const stopped = { ...running, ioRunning: "no" as const, sqlRunning: false, lagSeconds: null };
  // Set up before TLS was turned on, mysqld restarted: re-pointed over TLS rather than started as it was.
  for (const replica of [stopped, running, { ...running, tls: "unverified" as const }]) {
    const d = decideHealth(
      facts({ consul, tls: true, mysql: up({ replica, replicationStartedThisRun: false }) }),
    );
    assertEquals(d.action === "follow" && [d.demote, d.reason], [
      false,
      "replicating from n1 (10.0.0.11:3306) without verified TLS while MYSQL_TLS_CA, MYSQL_TLS_CERT and " +
      "MYSQL_TLS_KEY are set: re-pointing it over TLS",
    ]);
  }
  // Already over verified TLS: as without TLS (healthy; restarted after a mysqld restart).
  const verified = { ...running, tls: "verified" as const };
  assertEquals(decideHealth(facts({ consul, tls: true, mysql: up({ replica: verified }) })).action, "report");
  assertEquals(
    decideHealth(
      facts({
        consul,
        tls: true,
        mysql: up({ replica: { ...stopped, tls: "verified" }, replicationStartedThisRun: false }),
      }),
    ).action,
    "restart-replication",
  );
  // Without TLS settings, a replica's TLS is left as it is.
  assertEquals(decideHealth(facts({ consul, mysql: up({ replica: running }) })).action, "report");
});
