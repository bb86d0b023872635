import { assert, assertEquals } from "./assert.ts";
import {
  type ConsulView,
  type NodeProbe,
  nodeTargets,
  renderStatusTable,
  type StatusFacts,
  type StatusReport,
  summariseStatus,
  TABLE_COLUMNS,
} from "../../src/status.ts";
import type { ReplicaStatus } from "../../src/mysql/flavour.ts";
import { type InstanceHealth, instancesFromHealthRows } from "../../src/consul.ts";
import { failureRecord } from "../../src/pre_start_retry.ts";

const NOW = Date.parse("2026-11-25T12:00:00Z");
const addr = (k: number) => `10.0.0.${10 + k}`;
const member = (k: number, live = true, updatedAt = NOW - 2000) => ({
  record: { node: `n${k}`, address: addr(k), port: 3306, updatedAt },
  live,
});
/** Node k's mysql instance in Consul, its checks in the given state (every one passing by default). */
const instance = (
  k: number,
  status: InstanceHealth["status"] = "passing",
  failing?: InstanceHealth["failing"],
) => ({
  id: `mysql-n${k}`,
  address: addr(k),
  port: 3306,
  status,
  ...(failing ? { failing } : {}),
});
const passing = (...ks: number[]) => ks.map((k) => instance(k));
const lockedBy = (k: number, ready = true) => ({
  record: { node: `n${k}`, address: addr(k), port: 3306, ...(ready ? { ready: true } : {}) },
  session: `s${k}`,
});

/** A replica of node `k`, both threads running. */
const replicaOf = (k: number, over: Partial<ReplicaStatus> = {}): ReplicaStatus => ({
  sourceHost: addr(k),
  sourcePort: 3306,
  ioRunning: "yes",
  sqlRunning: true,
  lagSeconds: 0,
  retrievedGtids: "",
  lastIoError: "",
  lastSqlError: "",
  ...over,
});

const mariadb = (
  executed: string,
  over: Partial<Extract<NodeProbe, { reachable: true }>> = {},
): NodeProbe => ({
  reachable: true,
  flavour: "mariadb",
  version: "10.11.19-MariaDB-0+deb12u1",
  readOnly: true,
  executed,
  ...over,
});
const U1 = "3e11fa47-71ca-11e1-9e33-c80aa9429562";
const U3 = "8a94f357-aab4-11df-86ab-c80aa9429563";
const mysql = (executed: string, over: Partial<Extract<NodeProbe, { reachable: true }>> = {}): NodeProbe => ({
  reachable: true,
  flavour: "mysql",
  version: "8.4.3",
  readOnly: true,
  executed,
  ...over,
});

const view = (over: Partial<ConsulView> = {}): ConsulView => ({
  lock: lockedBy(1),
  members: [member(1), member(2), member(3)],
  instances: passing(1, 2, 3),
  snapshot: {
    name: "mysql-backup-2026-11-25T11-50-00Z",
    createdAt: "2026-11-25T11:50:00.000Z",
    size: 5_767_168,
    nodeName: "n1",
    gtid: "0-1-3",
  },
  ...over,
});

/** A healthy MariaDB cluster: n1 primary at 0-1-7, n2 and n3 replicating, caught up. */
const healthyMariadb = (over: Partial<StatusFacts> = {}): StatusFacts => ({
  now: NOW,
  serviceName: "mysql",
  maxLagSeconds: 30,
  quietPeriodMs: 300_000,
  consul: view(),
  probes: {
    n1: mariadb("0-1-7", { readOnly: false }),
    n2: mariadb("0-1-7", { replica: replicaOf(1) }),
    n3: mariadb("0-1-7", { replica: replicaOf(1, { lagSeconds: 2 }) }),
  },
  ...over,
});

const row = (r: StatusReport, node: string) => r.nodes.find((n) => n.node === node)!;

Deno.test("summariseStatus() reports a healthy MariaDB cluster: one primary, two replicas, no errant GTIDs", () => {
  const r = summariseStatus(healthyMariadb());
  assertEquals(r.problems, []);
  assertEquals(r.healthy, true);
  assertEquals(r.primary, { node: "n1", address: addr(1), port: 3306, held: true, ready: true });
  assertEquals(r.nodes.map((n) => [n.node, n.role, n.errant]), [
    ["n1", "primary", ""],
    ["n2", "replica", ""],
    ["n3", "replica", ""],
  ]);
  assertEquals(row(r, "n3"), {
    node: "n3",
    address: addr(3),
    port: 3306,
    role: "replica",
    check: "passing",
    checkStatus: "passing",
    session: true,
    lastSeen: "2026-11-25T11:59:58.000Z",
    reachable: true,
    error: null,
    flavour: "mariadb",
    version: "10.11.19-MariaDB-0+deb12u1",
    readOnly: true,
    replication: { source: `${addr(1)}:3306`, sourceNode: "n1", io: "yes", sql: true, error: null },
    lagSeconds: 2,
    gtidExecuted: "0-1-7",
    errant: "",
    problems: [],
  });
  assertEquals(r.snapshot, {
    name: "mysql-backup-2026-11-25T11-50-00Z",
    createdAt: "2026-11-25T11:50:00.000Z",
    ageSeconds: 600,
    size: 5_767_168,
    node: "n1",
    gtid: "0-1-3",
    verified: null,
  });
  assertEquals(r.failover, {
    paused: false,
    pauseNote: null,
    running: null,
    last: null,
    quietUntil: null,
    heldBack: null,
  });
});

Deno.test("summariseStatus() reads MySQL GTID sets and names the errant transactions of a node", () => {
  const r = summariseStatus(healthyMariadb({
    probes: {
      n1: mysql(`${U1}:1-20`, { readOnly: false }),
      n2: mysql(`${U1}:1-20`, { replica: replicaOf(1) }),
      // n3 wrote two transactions of its own (its own server UUID) that the primary never saw.
      n3: mysql(`${U1}:1-20,${U3}:1-2`, { replica: replicaOf(1) }),
    },
  }));
  assertEquals(r.healthy, false);
  assertEquals(row(r, "n2").role, "replica");
  assertEquals(row(r, "n3").role, "errant");
  assertEquals(row(r, "n3").errant, `${U3}:1-2`);
  assertEquals(r.problems, [`n3: errant: it has transactions the primary n1 lacks: ${U3}:1-2`]);
});

Deno.test("summariseStatus() finds a MariaDB node's errant GTIDs per domain and server id", () => {
  const r = summariseStatus(healthyMariadb({
    probes: {
      n1: mariadb("0-1-7,0-2-9", { readOnly: false }),
      n2: mariadb("0-1-7,0-2-9", { replica: replicaOf(1) }),
      // An old primary that kept a transaction (0-3-10) nobody else received; not rejoined.
      n3: mariadb("0-1-7,0-2-9,0-3-10"),
    },
  }));
  assertEquals(row(r, "n3").role, "errant");
  assertEquals(row(r, "n3").errant, "0-3-10");
  assertEquals(row(r, "n3").replication, null);
  assertEquals(r.problems, ["n3: errant: it has transactions the primary n1 lacks: 0-3-10"]);
  // A replica that is merely behind (a subset) is not errant.
  const behind = summariseStatus(healthyMariadb({
    probes: {
      n1: mariadb("0-1-7,0-2-9", { readOnly: false }),
      n2: mariadb("0-1-7,0-2-5", { replica: replicaOf(1) }),
      n3: mariadb("0-1-7", { replica: replicaOf(1) }),
    },
  }));
  assertEquals(behind.healthy, true);
  assertEquals(behind.nodes.map((n) => n.errant), ["", "", ""]);
});

Deno.test("summariseStatus() flags a replica lagging beyond MAX_REPLICATION_LAG, or of unknown lag", () => {
  const r = summariseStatus(healthyMariadb({
    probes: {
      n1: mariadb("0-1-7", { readOnly: false }),
      n2: mariadb("0-1-5", { replica: replicaOf(1, { lagSeconds: 31 }) }),
      n3: mariadb("0-1-7", { replica: replicaOf(1, { lagSeconds: 30 }) }),
    },
  }));
  assertEquals(r.problems, ["n2: lags 31 s behind the primary (limit 30 s)"]);
  assertEquals(row(r, "n2").lagSeconds, 31);
  assertEquals(row(r, "n2").role, "replica");
  const unknown = summariseStatus(healthyMariadb({
    probes: {
      ...healthyMariadb().probes,
      n3: mariadb("0-1-7", { replica: replicaOf(1, { lagSeconds: null }) }),
    },
  }));
  assertEquals(unknown.problems, ["n3: replication lag is unknown"]);
});

Deno.test("summariseStatus() says which replication thread stopped, and with what error", () => {
  const r = summariseStatus(healthyMariadb({
    probes: {
      ...healthyMariadb().probes,
      n2: mariadb("0-1-7", {
        replica: replicaOf(1, { ioRunning: "no", sqlRunning: false, lagSeconds: null }),
      }),
      n3: mariadb("0-1-6", {
        replica: replicaOf(1, {
          ioRunning: "connecting",
          lagSeconds: null,
          lastIoError: "error connecting to master 'repl@10.0.0.11:3306'",
        }),
      }),
    },
  }));
  assertEquals(r.problems, [
    "n2: replication is not running (I/O thread: no, SQL thread: no)",
    "n3: replication is not running (I/O thread: connecting, SQL thread: yes): I/O: error connecting to master " +
    "'repl@10.0.0.11:3306'",
  ]);
  assertEquals(row(r, "n3").replication?.error, "I/O: error connecting to master 'repl@10.0.0.11:3306'");
});

Deno.test("summariseStatus() shows an unreachable node as a row, not an error", () => {
  const r = summariseStatus(healthyMariadb({
    probes: {
      ...healthyMariadb().probes,
      n3: { reachable: false, error: "connection timed out (host down or link cut?)" },
    },
  }));
  assertEquals(r.healthy, false);
  assertEquals(r.problems, ["n3: unreachable: connection timed out (host down or link cut?)"]);
  const n3 = row(r, "n3");
  assertEquals([n3.role, n3.reachable, n3.gtidExecuted, n3.errant, n3.replication, n3.readOnly], [
    "unknown",
    false,
    null,
    null,
    null,
    null,
  ]);
  // A node that was never probed counts as unreachable too.
  const { n3: _, ...rest } = healthyMariadb().probes;
  assertEquals(summariseStatus(healthyMariadb({ probes: rest })).problems, ["n3: unreachable: not probed"]);
});

Deno.test("summariseStatus() reports a node with no session and no answer as down, with when it was last seen", () => {
  const r = summariseStatus(healthyMariadb({
    consul: view({
      members: [member(1), member(2), member(3, false, NOW - 95_000)],
      instances: passing(1, 2),
    }),
    probes: {
      ...healthyMariadb().probes,
      n3: { reachable: false, error: "connection refused (is mysqld running?)" },
    },
  }));
  assertEquals(r.problems, [
    "n3: down: unreachable (connection refused (is mysqld running?)) and no Consul session (last seen 1m35s ago)",
  ]);
  assertEquals([row(r, "n3").session, row(r, "n3").check, row(r, "n3").checkStatus], [
    false,
    "not passing",
    "missing",
  ]);
});

Deno.test("summariseStatus() after a failover: the new primary holds the lock, the old one is unreachable", () => {
  const r = summariseStatus(healthyMariadb({
    consul: view({
      lock: lockedBy(2),
      instances: passing(2, 3),
      failoverLock: {
        record: { node: "n3", at: NOW - 60_000, failedPrimary: "n1", promoted: "n2" },
        held: false,
      },
    }),
    probes: {
      n1: { reachable: false, error: "connection refused (is mysqld running?)" },
      n2: mariadb("0-1-7,0-2-8", { readOnly: false }),
      n3: mariadb("0-1-7,0-2-8", { replica: replicaOf(2) }),
    },
  }));
  assertEquals(r.nodes.map((n) => [n.node, n.role, n.reachable]), [
    ["n1", "unknown", false],
    ["n2", "primary", true],
    ["n3", "replica", true],
  ]);
  assertEquals(r.problems, ["n1: unreachable: connection refused (is mysqld running?)"]);
  assertEquals(r.failover.last, {
    at: "2026-11-25T11:59:00.000Z",
    by: "n3",
    failedPrimary: "n1",
    promoted: "n2",
    switchover: false,
    recovery: false,
  });
  assertEquals(r.failover.quietUntil, "2026-11-25T12:04:00.000Z");
  assertEquals(r.failover.heldBack, null);
});

Deno.test("summariseStatus() with no primary: says who held the lock last and that the failover is paused", () => {
  const facts = healthyMariadb({
    consul: view({ lock: { record: lockedBy(1).record }, pause: "maintenance" }),
    probes: {
      n1: { reachable: false, error: "connection refused (is mysqld running?)" },
      n2: mariadb("0-1-7", { replica: replicaOf(1, { ioRunning: "connecting" }) }),
      n3: mariadb("0-1-7", { replica: replicaOf(1, { ioRunning: "connecting" }) }),
    },
  });
  const r = summariseStatus(facts);
  assertEquals(r.primary, { node: "n1", address: addr(1), port: 3306, held: false, ready: false });
  assertEquals(r.failover.paused, true);
  assertEquals(r.failover.pauseNote, "maintenance");
  assertEquals(r.problems, [
    "nobody holds the primary lock (last holder: n1) and automatic failover is paused",
    "n1: unreachable: connection refused (is mysqld running?)",
  ]);
  // Without a reachable primary, nobody's errant transactions can be told.
  assertEquals(r.nodes.map((n) => n.errant), [null, null, null]);
  assertEquals(r.nodes.map((n) => n.role), ["unknown", "replica", "replica"]);
});

Deno.test("summariseStatus() shows a quiet period that holds a failover back", () => {
  const r = summariseStatus(healthyMariadb({
    consul: view({
      lock: { record: lockedBy(2).record },
      failoverLock: {
        record: { node: "n3", at: NOW - 30_000, failedPrimary: "n1", promoted: "n2" },
        held: false,
      },
    }),
    probes: { ...healthyMariadb().probes, n2: { reachable: false, error: "connection refused" } },
  }));
  assert(r.failover.heldBack?.includes("promoted n2, which is still alive"), r.failover.heldBack ?? "");
  assertEquals(r.problems[0], `nobody holds the primary lock (last holder: n2); ${r.failover.heldBack}`);
});

Deno.test("summariseStatus() with no primary ever elected and no nodes", () => {
  const r = summariseStatus(healthyMariadb({ consul: { lock: {}, members: [], instances: [] }, probes: {} }));
  assertEquals(r.problems, [
    "no nodes found in Consul (no member records under mysql-members/, no passing mysql instances)",
    "no primary has been elected yet",
  ]);
  assertEquals([r.primary, r.snapshot, r.nodes], [null, null, []]);
});

Deno.test("summariseStatus() flags a writable node without the lock and a primary that is still read-only", () => {
  const r = summariseStatus(healthyMariadb({
    consul: view({ lock: lockedBy(1, false) }),
    probes: { ...healthyMariadb().probes, n1: mariadb("0-1-7"), n2: mariadb("0-1-7", { readOnly: false }) },
  }));
  assertEquals(r.problems, [
    "the primary n1 holds the lock but is read-only (promotion not finished?)",
    "n2: writable without holding the primary lock",
    "n2: replicates from nobody (the primary is n1, 10.0.0.11:3306)",
  ]);
  assertEquals(row(r, "n2").role, "none");
});

Deno.test("summariseStatus() flags a replica of the wrong source, and a live node whose checks do not run", () => {
  const r = summariseStatus(healthyMariadb({
    consul: view({ members: [member(1), member(2), member(3, false)] }),
    probes: { ...healthyMariadb().probes, n2: mariadb("0-1-7", { replica: replicaOf(3) }) },
  }));
  assertEquals(r.problems, [
    "n2: replicates from 10.0.0.13:3306, not from the primary n1 (10.0.0.11:3306)",
    "n3: its member record has no live Consul session: its health checks are not running",
  ]);
  assertEquals(row(r, "n2").replication?.sourceNode, "n3");
});

Deno.test("summariseStatus() reports an unreadable last-snapshot key", () => {
  const r = summariseStatus(healthyMariadb({
    consul: { ...view(), snapshot: undefined, snapshotError: "Snapshot 'x' is corrupt: bad" },
  }));
  assertEquals(r.problems, ["the last snapshot cannot be read: Snapshot 'x' is corrupt: bad"]);
});

Deno.test("summariseStatus() shows the last snapshot's verification (BACKUP_VERIFY); a failed one is a problem", () => {
  const snapshot = view().snapshot!.name;
  const at = "2026-11-25T11:55:00.000Z";
  const good = summariseStatus(healthyMariadb({
    consul: view({ verified: { name: snapshot, ok: true, node: "n2", at } }),
  }));
  assertEquals([good.snapshot?.verified, good.healthy], [{ ok: true, node: "n2", at }, true]);
  assert(renderStatusTable(good).split("\n")[1].endsWith(", from n1 at 0-1-3, verified on n2"));
  // a verification of an older snapshot says nothing about this one
  const older = summariseStatus(healthyMariadb({
    consul: view({ verified: { name: "mysql-backup-old", ok: false, node: "n2", at, error: "bad" } }),
  }));
  assertEquals([older.snapshot?.verified, older.problems], [null, []]);
  const bad = summariseStatus(healthyMariadb({
    consul: view({
      verified: { name: snapshot, ok: false, node: "n3", at, error: "CHECK TABLE failed on app.t" },
    }),
  }));
  assertEquals(bad.healthy, false);
  assertEquals(bad.problems, [
    `the last snapshot ${snapshot} failed verification on n3: CHECK TABLE failed on app.t; take a new one ` +
    "('autopilot backup now' on the primary)",
  ]);
  assert(renderStatusTable(bad).split("\n")[1].endsWith(", from n1 at 0-1-3, FAILED verification on n3"));
});

Deno.test("summariseStatus() shows how far a verification replayed the archived binlogs, and where one failed", () => {
  const snapshot = view().snapshot!.name;
  const at = "2026-11-25T11:55:00.000Z";
  const good = summariseStatus(healthyMariadb({
    consul: view({
      verified: { name: snapshot, ok: true, node: "n2", at, binlogs: 3, replayedTo: "0-1-42" },
    }),
  }));
  assertEquals(good.snapshot?.verified, { ok: true, node: "n2", at, binlogs: 3, replayedTo: "0-1-42" });
  const line = renderStatusTable(good).split("\n")[1];
  assert(line.endsWith(", verified on n2 (3 archived binlogs replayed to 0-1-42)"), line);
  const error = "the archived binlogs after snapshot 'x' do not replay to the archive's end (0-1-42): " +
    "Archived binlog binlogs/n1/b.zst is corrupt (…); 1 replayed, the last point reached is 0-1-20";
  const bad = summariseStatus(healthyMariadb({
    consul: view({
      verified: { name: snapshot, ok: false, node: "n3", at, error, binlogs: 1, replayedTo: "0-1-20" },
    }),
  }));
  assertEquals(bad.healthy, false);
  assert(bad.problems[0].includes("binlogs/n1/b.zst is corrupt"), bad.problems[0]);
  const badLine = renderStatusTable(bad).split("\n")[1];
  assert(badLine.endsWith(", FAILED verification on n3 (1 archived binlog replayed to 0-1-20)"), badLine);
});

Deno.test("nodeTargets() merges member records, the lock record and passing instances by address", () => {
  const targets = nodeTargets(
    {
      lock: { record: { node: "n10", address: addr(10), port: 3306 } },
      // "old" is a record left behind at n2's address by a container n2 replaced.
      members: [member(2), member(1, false), {
        record: { node: "old", address: addr(2), port: 3306 },
        live: false,
      }],
      // n1 is known by address; the instance at .14 is known only to the catalogue; the one at .15 does not
      // pass and matches no member: not a node to show.
      instances: [...passing(1, 4), instance(5, "critical")],
    },
    "mysql",
  );
  assertEquals(targets.map((t) => `${t.node}@${t.address}`), [
    `n1@${addr(1)}`,
    `n2@${addr(2)}`,
    `n4@${addr(4)}`,
    `n10@${addr(10)}`,
  ]);
});

Deno.test("summariseStatus() output survives a JSON round trip unchanged", () => {
  const r = summariseStatus(healthyMariadb());
  const text = JSON.stringify(r, null, 2);
  assertEquals(JSON.stringify(JSON.parse(text), null, 2), text);
  assertEquals(JSON.parse(text), r);
});

Deno.test("renderStatusTable() prints one row per node, splittable on runs of spaces, and the verdict", () => {
  const r = summariseStatus(healthyMariadb({
    probes: {
      ...healthyMariadb().probes,
      n3: { reachable: false, error: "connection refused" },
    },
  }));
  const text = renderStatusTable(r);
  const lines = text.split("\n");
  assertEquals(lines[0], `primary:   n1 (${addr(1)}:3306)`);
  assertEquals(
    lines[1],
    "snapshot:  mysql-backup-2026-11-25T11-50-00Z, 10m old (2026-11-25T11:50:00Z), 5.5 MiB, from n1 at 0-1-3",
  );
  assertEquals(
    lines[2],
    "archive:   nothing archived yet (the primary's binlog-archive task uploads its binlogs)",
  );
  assertEquals(lines[3], "failover:  automatic");
  const header = lines.findIndex((l) => l.startsWith("NODE"));
  assertEquals(lines[header].split(/\s{2,}/), [...TABLE_COLUMNS]);
  const cells = lines.slice(header + 1, header + 4).map((l) => l.split(/\s{2,}/));
  assertEquals(cells, [
    ["n1", `${addr(1)}:3306`, "primary", "passing", "writable", "-", "-", "-", "0-1-7", "-"],
    ["n2", `${addr(2)}:3306`, "replica", "passing", "read-only", "n1", "yes/yes", "0s", "0-1-7", "-"],
    ["n3", `${addr(3)}:3306`, "unknown", "passing", "unreachable", "-", "-", "-", "?", "?"],
  ]);
  assertEquals(lines.slice(header + 5), ["unhealthy: 1 problem:", "  - n3: unreachable: connection refused"]);
  const healthy = renderStatusTable(summariseStatus(healthyMariadb())).split("\n");
  assertEquals(
    healthy.at(-1),
    "healthy: n1 is the writable primary; every node answers and replicates from it within 30 s, none errant",
  );
});

Deno.test("renderStatusTable() shows a paused failover, the quiet period and the last failover", () => {
  const r = summariseStatus(healthyMariadb({
    consul: view({
      pause: "",
      failoverLock: {
        record: { node: "n2", at: NOW - 60_000, switchover: true, promoted: "n1" },
        held: false,
      },
    }),
  }));
  assertEquals(
    renderStatusTable(r).split("\n")[3],
    "failover:  PAUSED (FAILOVER_PAUSE_KEY exists); quiet period until 2026-11-25T12:04:00Z; " +
      "last switchover: n2 -> n1 at 2026-11-25T11:59:00Z",
  );
  assertEquals(r.healthy, true, "a pause alone does not make the cluster unhealthy");
});

Deno.test("summariseStatus() makes a node whose Consul check does not pass a problem, naming the check", () => {
  const r = summariseStatus(healthyMariadb({
    consul: view({
      instances: [
        instance(1),
        instance(2, "critical", { name: "Service 'mysql' check", output: "TTL expired" }),
        instance(3, "warning", { name: "disk", output: "" }),
      ],
    }),
  }));
  assertEquals(r.healthy, false);
  assertEquals(r.problems, [
    "n2: its mysql check in Consul is critical (check 'Service 'mysql' check': TTL expired); its server looks " +
    "sound from here: see that node's ContainerPilot log",
    "n3: its mysql check in Consul is warning (check 'disk'); its server looks sound from here: see that " +
    "node's ContainerPilot log",
  ]);
  assertEquals(r.nodes.map((n) => [n.check, n.checkStatus]), [
    ["passing", "passing"],
    ["not passing", "critical"],
    ["not passing", "warning"],
  ]);
  assertEquals(row(r, "n2").problems.length, 1);
});

Deno.test("summariseStatus() after Consul lost its data: every check critical is unhealthy, whatever the servers say", () => {
  const critical = { name: "Serf Health Status", output: "Agent not live or unreachable" };
  const r = summariseStatus(healthyMariadb({
    consul: view({ instances: [1, 2, 3].map((k) => instance(k, "critical", critical)) }),
  }));
  assertEquals(r.healthy, false);
  assertEquals(
    r.problems,
    [1, 2, 3].map((k) =>
      `n${k}: its mysql check in Consul is critical (check 'Serf Health Status': Agent not live or unreachable); ` +
      "its server looks sound from here: see that node's ContainerPilot log"
    ),
  );
  const lines = renderStatusTable(r).split("\n");
  const header = lines.findIndex((l) => l.startsWith("NODE"));
  assertEquals(lines.slice(header + 1, header + 4).map((l) => l.split(/\s{2,}/)[3]), [
    "critical",
    "critical",
    "critical",
  ]);
});

Deno.test("summariseStatus() makes a node with a member record but no service in Consul's catalog a problem", () => {
  const r = summariseStatus(healthyMariadb({ consul: view({ instances: passing(1, 2) }) }));
  assertEquals(r.problems, [
    "n3: has a member record but no mysql service in Consul's catalog (ContainerPilot registers it on that " +
    "node: is it running there?)",
  ]);
  assertEquals([row(r, "n3").check, row(r, "n3").checkStatus], ["not passing", "missing"]);
  // the lock holder too
  const primary = summariseStatus(healthyMariadb({ consul: view({ instances: passing(2, 3) }) }));
  assertEquals(primary.problems, [
    "n1: has a member record but no mysql service in Consul's catalog (ContainerPilot registers it on that " +
    "node: is it running there?)",
  ]);
});

Deno.test("summariseStatus() gives one reason per node: a check that fails because of a problem status sees adds nothing", () => {
  const critical = { name: "Service 'mysql' check", output: "" };
  const r = summariseStatus(healthyMariadb({
    consul: view({
      lock: lockedBy(1, false),
      instances: [1, 2, 3].map((k) => instance(k, "critical", critical)),
    }),
    probes: {
      n1: mariadb("0-1-7", { readOnly: false }),
      n2: mariadb("0-1-7", { replica: replicaOf(1, { ioRunning: "no", sqlRunning: false }) }),
      n3: { reachable: false, error: "connection refused" },
    },
  }));
  assertEquals(r.problems, [
    "the primary n1 holds the lock but has not finished its promotion",
    "n2: replication is not running (I/O thread: no, SQL thread: no)",
    "n3: unreachable: connection refused",
  ]);
  assertEquals(r.nodes.map((n) => n.checkStatus), ["critical", "critical", "critical"]);
  // An unreachable lock holder: the cluster-wide problem is its one reason.
  const down = summariseStatus(healthyMariadb({
    consul: view({ instances: [instance(1, "critical", critical), ...passing(2, 3)] }),
    probes: { ...healthyMariadb().probes, n1: { reachable: false, error: "connection refused" } },
  }));
  assertEquals(down.problems, [
    "the primary n1 holds the lock but its server does not answer: connection refused",
  ]);
});

Deno.test("summariseStatus() shows why this node's pre-start keeps failing, on its row or on its own", () => {
  const record = failureRecord("n4", NOW - 60_000, 5, "Snapshot 'x' is corrupt: bad", NOW - 10_000);
  // n4 never started mysqld: Consul does not know it; the problem stands on its own, first.
  const alone = summariseStatus(healthyMariadb({ preStart: record }));
  assertEquals(alone.problems, [
    "n4: pre-start cannot finish (5 attempts failed since 2026-11-25T11:59:00Z): Snapshot 'x' is corrupt: bad; " +
    "next attempt in 22 s",
  ]);
  assertEquals(alone.preStart, record);
  assertEquals(alone.nodes.map((n) => n.node), ["n1", "n2", "n3"]);
  assertEquals(summariseStatus(healthyMariadb()).preStart, null);
  // n3 was known (its old member record stays): the reason leads its row.
  const known = summariseStatus(healthyMariadb({
    consul: view({ members: [member(1), member(2), member(3, false)], instances: passing(1, 2) }),
    probes: { ...healthyMariadb().probes, n3: { reachable: false, error: "connection refused" } },
    preStart: { ...record, node: "n3" },
  }));
  assertEquals(row(known, "n3").problems[0], known.problems[0]);
  assert(
    known.problems[0].startsWith("n3: pre-start cannot finish (5 attempts failed since "),
    known.problems[0],
  );
  assertEquals(known.problems.length, 2);
  assert(known.problems[1].startsWith("n3: down: unreachable (connection refused)"), known.problems[1]);
});

Deno.test("instancesFromHealthRows() takes each instance's worst check, the node's own included", () => {
  const rows = [
    {
      Node: { Address: "10.0.0.12" },
      Service: { ID: "mysql-n2", Address: "", Port: 3306 },
      Checks: [
        { Name: "Serf Health Status", Status: "critical", Output: "Agent not live or unreachable\nmore" },
        { Name: "Service 'mysql' check", Status: "warning", Output: "slow" },
      ],
    },
    {
      Node: { Address: "10.0.0.99" },
      Service: { ID: "mysql-n1", Address: "10.0.0.11", Port: 3306 },
      Checks: [
        { Name: "Serf Health Status", Status: "passing", Output: "Agent alive and reachable" },
        { Name: "Service 'mysql' check", Status: "passing", Output: "ok" },
      ],
    },
    {
      Service: { ID: "mysql-n3", Address: "10.0.0.13", Port: 3306 },
      Checks: [{ Name: "Service 'mysql' check", Status: "warning", Output: "x".repeat(300) }],
    },
    {
      Service: { ID: "mysql-n4", Address: "10.0.0.14", Port: 3306 },
      Checks: [{ Name: "m", Status: "maint" }],
    },
    { Checks: [] }, // not a service row
  ];
  const instances = instancesFromHealthRows(rows);
  assertEquals(instances.map((i) => [i.id, i.address, i.status, i.failing?.name]), [
    ["mysql-n1", "10.0.0.11", "passing", undefined],
    ["mysql-n2", "10.0.0.12", "critical", "Serf Health Status"],
    ["mysql-n3", "10.0.0.13", "warning", "Service 'mysql' check"],
    ["mysql-n4", "10.0.0.14", "critical", "m"],
  ]);
  assertEquals(instances[1].failing?.output, "Agent not live or unreachable");
  assertEquals(instances[2].failing?.output.length, 160);
  assertEquals(instances[0].failing, undefined);
});

const CLUSTER = "0f6e2b1c-7d1a-4c57-9a3e-5b2d8f0c1a22";
/** A live member record with data, as a node of a cluster that lost Consul's keys publishes it. */
const withData = (k: number, executed: string, cluster: string | null = CLUSTER) => ({
  record: {
    node: `n${k}`,
    address: addr(k),
    port: 3306,
    updatedAt: NOW - 1000,
    priority: 1,
    flavour: "mariadb" as const,
    role: "none" as const,
    executed,
    retrieved: "",
    ...(cluster === null ? {} : { cluster }),
  },
  live: true,
});

Deno.test("summariseStatus(): Consul lost its keys: the recovery section says who the records choose, and why", () => {
  const facts = healthyMariadb({
    consul: view({
      lock: {},
      members: [withData(1, "0-1-8"), withData(2, "0-1-9"), withData(3, "0-1-9", null)],
    }),
    settleMs: 30_000,
    recoveryWaitedMs: 12_400,
  });
  const r = summariseStatus(facts);
  assertEquals(r.recovery, {
    cluster: null,
    settleWindowSeconds: 30,
    waitedSeconds: 12,
    chosen: "n2",
    reason: "n2 holds every transaction the 2 reporting node(s) hold: n1 has 0-1-8; n2 has 0-1-9",
    refused: ["n3"],
  });
  assert(r.problems[0].startsWith("Consul has no primary lock record (its keys were lost?)"), r.problems[0]);
  const line = renderStatusTable(r).split("\n").find((l) => l.startsWith("recovery:"));
  assertEquals(
    line,
    "recovery:  Consul names no cluster identity; this node waits: 12s of the 30s settle window; n2 is chosen: " +
      "n2 holds every transaction the 2 reporting node(s) hold: n1 has 0-1-8; n2 has 0-1-9; refused (no or " +
      "another identity): n3",
  );
});

Deno.test("summariseStatus(): a diverged cluster: nobody is chosen, and the section names every GTID set", () => {
  const r = summariseStatus(healthyMariadb({
    consul: view({ lock: {}, cluster: CLUSTER, members: [withData(1, "0-1-8,1-4-2"), withData(2, "0-1-9")] }),
  }));
  assertEquals(r.recovery?.chosen, null);
  assertEquals(r.recovery?.cluster, CLUSTER);
  assert(r.recovery!.reason.includes("(diverged): n1 has 0-1-8,1-4-2; n2 has 0-1-9"), r.recovery!.reason);
  assert(renderStatusTable(r).includes("nobody can be chosen: no node holds every transaction"));
});

Deno.test("summariseStatus(): no recovery section for a cluster with a lock record, or a new empty one", () => {
  assertEquals(summariseStatus(healthyMariadb()).recovery, null);
  assertEquals(summariseStatus(healthyMariadb({ consul: view({ lock: {} }) })).recovery, null);
  assertEquals(
    summariseStatus(healthyMariadb({ consul: view({ lock: {}, members: [withData(1, "", null)] }) }))
      .recovery,
    null,
  );
});

Deno.test("renderStatusTable(): the last recovery is named as one, not as a failover from nobody", () => {
  const r = summariseStatus(healthyMariadb({
    consul: view({
      failoverLock: { record: { node: "n1", at: NOW - 60_000, recovery: true, promoted: "n1" }, held: false },
    }),
  }));
  assertEquals(r.failover.last?.recovery, true);
  assert(
    renderStatusTable(r).includes(
      "last recovery: n1 became primary (Consul had lost its keys) at 2026-11-25T11:59:00Z",
    ),
    renderStatusTable(r),
  );
});

Deno.test("summariseStatus() lists the errant transactions saved in the store, one per save, newest first", () => {
  const base1 = "errant-transactions/n1/2026-11-25T11-00-00Z_0-1-93";
  const base2 = "errant-transactions/n3/2026-11-25T11-30-00Z_0-3-7_0-3-8";
  const keys = [base1, base2].flatMap((b) => [`${b}.events.sql`, `${b}.readable.sql`, `${b}.json`]);
  const r = summariseStatus(healthyMariadb({ errantKeys: [...keys, "errant-transactions/stray.txt"] }));
  assertEquals(r.errantSaved?.map((e) => [e.node, e.at, e.base]), [
    ["n3", "2026-11-25T11:30:00Z", base2],
    ["n1", "2026-11-25T11:00:00Z", base1],
  ]);
  assertEquals(r.healthy, true, "saved and rebuilt: the cluster is whole again");
  const lines = renderStatusTable(r).split("\n");
  assert(
    lines.includes(
      `errant:    n1's extra transactions 0-1-93 saved at 2026-11-25T11:00:00Z: ${base1}.events.sql, ` +
        ".readable.sql (never merged: review them)",
    ),
    lines.join("\n"),
  );
  assertEquals(summariseStatus(healthyMariadb()).errantSaved, null, "the store was not listed");
  assertEquals(summariseStatus(healthyMariadb({ errantKeys: [] })).errantSaved, []);
});

Deno.test("summariseStatus() reports how far the binlog archive reaches and its lag behind the primary", () => {
  const archive = {
    node: "n1",
    serverId: 1,
    file: "mysql-bin.000004",
    createdAt: "2026-11-25T11:00:00Z",
    endState: "0-1-7",
    lastTime: Date.parse("2026-11-25T11:59:30Z") / 1000,
    caughtUpAt: new Date(NOW - 40_000).toISOString(),
    lagSeconds: 3,
  };
  const caughtUp = summariseStatus(healthyMariadb({ consul: view({ archive }) }));
  assertEquals(caughtUp.archive?.lagSeconds, 0, "the primary's 0-1-7 is all archived");
  assertEquals(
    renderStatusTable(caughtUp).split("\n")[2],
    "archive:   reaches 0-1-7 (last transaction 2026-11-25T11:59:30Z), archived by n1; holds everything the primary executed",
  );
  const behind = summariseStatus(
    healthyMariadb({ consul: view({ archive: { ...archive, endState: "0-1-5" } }) }),
  );
  assertEquals(behind.archive?.lagSeconds, 40);
  assert(renderStatusTable(behind).split("\n")[2].includes("lag 40s"), renderStatusTable(behind));
  const gap = { after: "0-1-2", resumes: "0-1-4", at: "2026-11-25T11:55:00Z" };
  const gapped = summariseStatus(healthyMariadb({ consul: view({ archive: { ...archive, gap } }) }));
  assert(renderStatusTable(gapped).includes("GAP after 0-1-2 up to 0-1-4"), renderStatusTable(gapped));
  // The snapshot published (11:50) after an older gap started a new window: the gap is no longer shown.
  const old = { ...gap, at: "2026-11-25T11:30:00Z" };
  const mended = summariseStatus(healthyMariadb({ consul: view({ archive: { ...archive, gap: old } }) }));
  assertEquals(mended.archive?.gap, null);
  assert(!renderStatusTable(mended).includes("GAP"), renderStatusTable(mended));
});
