/**
 * Whole-cluster recovery on real servers: Consul loses its data (the dev agent restarted: an empty store)
 * while every node keeps its datadir. The nodes' health passes wait RECOVERY_SETTLE_WINDOW (12 s here), then
 * the node that holds every transaction any reporting node holds becomes primary and the others follow it;
 * a node absent for the window is not waited for, and comes back errant if it held more; data without this
 * cluster's identity, or with another one than Consul's key, is refused with one line. Also: a cluster made
 * before the identity existed gets one from its primary, by replication; every node restarted with Consul's
 * data kept is no recovery (the last primary carries on).
 */
import { assert, assertEquals } from "../unit/assert.ts";
import { Cluster, converge as convergeEvery, type TestNode } from "./cluster.ts";
import { type ConsulServer, Harness, startConsul, waitFor } from "./harness/mod.ts";

// The settle window is never shorter than the lease (SESSION_TTL/2, 10 s here) and 2 s.
const SETTLE_MS = 12_000;
// CONTAINERPILOT_PID: the health passes act as ContainerPilot's check (they register its `mysql` service again).
const ENV = { RECOVERY_SETTLE_WINDOW: `${SETTLE_MS / 1000}s`, CONTAINERPILOT_PID: "1" };

/** The Consul agent running now: the harness's, then each restarted one. */
let agentNow: ConsulServer | undefined;

/** Consul loses its data: the agent stopped and started again, on the same port, with an empty store. */
async function emptyConsul(h: Harness, round: number): Promise<void> {
  const old = agentNow ?? h.consul;
  await old.stop();
  agentNow = await startConsul({
    bindAddrs: [...old.bindAddrs],
    httpPort: old.port,
    dir: `${h.dir}/consul-${round}`,
    group: h.group,
  });
}

/** Health rounds half a second apart until `done` holds. */
function converge(
  c: Cluster,
  nodes: TestNode[],
  done: () => Promise<boolean>,
  timeoutMs: number,
): Promise<void> {
  return convergeEvery(c, nodes, done, timeoutMs, 500);
}

/** Health passes until a node is the ready, writable primary; returns it and how long that took (ms). */
async function recovered(c: Cluster, nodes: TestNode[], timeoutMs: number): Promise<[TestNode, number]> {
  const t0 = performance.now();
  let found: TestNode | undefined;
  await converge(c, nodes, async () => {
    const name = await c.primaryName();
    found = nodes.find((n) => n.name === name);
    return found !== undefined && (await c.run(found, ["health", "--primary"])).code === 0;
  }, timeoutMs);
  return [found!, performance.now() - t0];
}

async function identity(c: Cluster, node: TestNode): Promise<string | undefined> {
  const rows = await c.sql(node, "SELECT cluster_id FROM autopilot.cluster WHERE id = 1");
  return rows[0]?.cluster_id as string | undefined;
}

async function consulIdentity(c: Cluster): Promise<string | undefined> {
  const consul = c.consul();
  try {
    const entry = await consul.get("mysql-cluster");
    return entry ? JSON.parse(entry.value).id : undefined;
  } finally {
    consul.close();
  }
}

async function rowsEverywhere(c: Cluster, nodes: TestNode[], n: number): Promise<void> {
  for (const node of nodes) {
    await waitFor(`${n} rows on ${node.name}`, async () => (await c.rows(node).catch(() => -1)) === n);
  }
}

Deno.test("Consul loses its data: the nodes recover by themselves, the absent node's newer data is not waited for, foreign data is refused", async () => {
  await using h = await Harness.create({ nodes: 3 });
  const c = await Cluster.create(h);
  const nodes = [1, 2, 3].map((k) => c.node(k, ENV));
  const [n1, n2, n3] = nodes;
  for (const n of nodes) {
    const r = await c.boot(n);
    assertEquals(r.code, 0, `${n.name}: ${r.stderr}`);
  }
  {
    await using app = await c.app(n1);
    await app.run(["CREATE TABLE app.t (id INT PRIMARY KEY)", "INSERT INTO app.t VALUES (1), (2), (3)"]);
  }
  await rowsEverywhere(c, nodes, 3);
  // Every datadir carries the identity the first primary drew, and Consul's key names it (n2 and n3 got it
  // from the first snapshot, which they were restored from).
  await converge(c, nodes, async () => (await consulIdentity(c)) !== undefined, 20_000);
  const id = await identity(c, n1);
  assert(id !== undefined && /^[0-9a-f-]{36}$/.test(id), `n1's identity: ${id}`);
  for (const n of [n2, n3]) assertEquals(await identity(c, n), id, n.name);
  assertEquals(await consulIdentity(c), id);

  // A cluster made before this version: no identity in any datadir, nor in Consul. The primary's next pass
  // writes a new one, with the binlog: the replicas get it by replication, and Consul's key names it.
  for (const n of nodes) {
    await using db = await c.root(n);
    await db.run(["SET SESSION sql_log_bin = 0", "DROP TABLE autopilot.cluster"]);
  }
  {
    const consul = c.consul();
    try {
      await consul.delete("mysql-cluster");
    } finally {
      consul.close();
    }
  }
  await converge(c, nodes, async () => {
    const now = await consulIdentity(c);
    if (now === undefined || now === id) return false;
    for (const n of nodes) if ((await identity(c, n).catch(() => undefined)) !== now) return false;
    return true;
  }, 20_000);
  const legacy = (await consulIdentity(c))!;
  for (const n of [n2, n3]) {
    const [s] = await c.sql(n, "SHOW SLAVE STATUS");
    assertEquals([s.Slave_IO_Running, s.Slave_SQL_Running], ["Yes", "Yes"], `${n.name} replicated it`);
  }

  // 0. Every node stopped and started again, Consul's data kept: the last primary carries on, no failover.
  for (const n of nodes) await c.stopMysqld(n);
  for (const n of nodes) await c.startMysqld(n);
  const [kept] = await recovered(c, nodes, 20_000);
  assertEquals(kept.name, "n1");
  {
    const consul = c.consul();
    try {
      assertEquals(await consul.get("mysql-failover-lock"), undefined, "nobody ran a failover or a recovery");
    } finally {
      consul.close();
    }
  }

  // 1. Every node stopped, Consul emptied, every node started: a writable primary within the window + 15 s.
  for (const n of nodes) await c.stopMysqld(n);
  await emptyConsul(h, 1);
  for (const n of nodes) await c.startMysqld(n);
  const [first, took] = await recovered(c, nodes, SETTLE_MS + 15_000);
  assert(took <= SETTLE_MS + 15_000, `recovered in ${took} ms`);
  assertEquals(first.name, "n1", "every node holds the same: FAILOVER_PRIORITY, then the name, decide");
  assertEquals(await consulIdentity(c), legacy, "the recovered primary publishes the identity again");
  {
    await using app = await c.app(n1);
    await app.query("INSERT INTO app.t VALUES (4)");
  }
  await converge(c, nodes, async () => {
    for (const n of [n2, n3]) if ((await c.rows(n).catch(() => 0)) !== 4) return false;
    return true;
  }, 20_000);

  // ContainerPilot's `mysql` service was lost with Consul's data: the health check registered it again as the
  // fork does (same id, same check id), so the fork's own TTL update passes.
  const host = Deno.hostname();
  const agent = `http://${c.consulAddr}`;
  const service = await fetch(`${agent}/v1/agent/service/mysql-${host}`);
  assertEquals(service.status, 200, "the mysql service is registered again");
  const registered = await service.json();
  assertEquals([registered.Service, registered.Port], ["mysql", 3306]);
  const ttl = await fetch(`${agent}/v1/agent/check/update/service:mysql-${host}`, {
    method: "PUT",
    body: JSON.stringify({ Status: "passing", Output: "ok" }),
  });
  await ttl.body?.cancel();
  assertEquals(ttl.status, 200, "the fork's TTL update (PUT check/update/service:ID) is accepted");

  // 2. n2 falls behind (it misses row 5), then n3 too (it misses row 6): n1 holds the most.
  await c.sql(n2, "STOP SLAVE");
  {
    await using app = await c.app(n1);
    await app.query("INSERT INTO app.t VALUES (5)");
  }
  await waitFor("row 5 on n3", async () => (await c.rows(n3)) === 5);
  await c.sql(n3, "STOP SLAVE");
  {
    await using app = await c.app(n1);
    await app.query("INSERT INTO app.t VALUES (6)");
  }
  for (const n of nodes) await c.stopMysqld(n);
  await emptyConsul(h, 2);
  // Only n2 and n3 come back: after the window, n3 (which holds everything n2 holds) becomes primary, though
  // n2's name comes first; n2 follows it and gets row 5. n1's row 6 is not waited for.
  for (const n of [n2, n3]) await c.startMysqld(n);
  const [second] = await recovered(c, [n2, n3], SETTLE_MS + 15_000);
  assertEquals(second.name, "n3");
  await converge(c, [n2, n3], async () => (await c.rows(n2).catch(() => 0)) === 5, 20_000);
  // n1 comes back with row 6, which the new primary lacks: errant, never rejoined silently.
  await c.startMysqld(n1);
  const back = await c.run(n1, ["health"]);
  assertEquals(back.code, 1);
  assert(back.stderr.includes("Errant node: this node has transactions"), back.stderr);
  assertEquals(await c.primaryName(), "n3");

  // 3. Foreign data against an empty Consul: another cluster's identity in Consul's key, then none in the data.
  for (const n of nodes) await c.stopMysqld(n);
  await emptyConsul(h, 3);
  await c.startMysqld(n1);
  const consul = c.consul();
  try {
    await consul.put("mysql-cluster", JSON.stringify({ id: "another-cluster", node: "x", at: 1 }));
    const other = await c.run(n1, ["health"]);
    assertEquals(other.code, 1);
    assert(
      other.stderr.includes(
        `this node's data belongs to cluster ${legacy}, but Consul's mysql-cluster names cluster another-cluster`,
      ),
      other.stderr,
    );
    await consul.delete("mysql-cluster");
  } finally {
    consul.close();
  }
  // A datadir without an identity (made before this version, or outside autopilot).
  {
    await using db = await c.root(n1);
    await db.run(["SET SESSION sql_log_bin = 0", "DROP TABLE autopilot.cluster"]);
  }
  await new Promise((r) => setTimeout(r, SETTLE_MS)); // past the window too: still refused
  for (let pass = 0; pass < 2; pass++) {
    const none = await c.run(n1, ["health"]);
    assertEquals(none.code, 1);
    assert(none.stderr.includes("this node's data carries no cluster identity"), none.stderr);
  }
  assertEquals(await c.primaryName(), undefined, "nobody took the primary lock");
  const status = await c.run(n1, ["status"]);
  const line = status.stdout.split("\n").find((l) => l.startsWith("recovery:")) ?? status.stdout;
  assert(
    line.includes("nobody can be chosen") && line.includes("refused (no or another identity): n1"),
    line,
  );
});
