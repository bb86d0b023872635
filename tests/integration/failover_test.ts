/**
 * Automatic failover on real servers: the primary is killed or cut off, the hooks run on every node (as
 * ContainerPilot's health checks would, concurrently), and exactly one new primary emerges, chosen by the
 * transactions it has, with the others following it and the old primary rejoining or reported errant.
 */
import { assert, assertEquals } from "../unit/assert.ts";
import { ConsulStore } from "../../src/consul.ts";
import { Cluster, converge, type TestNode, writer } from "./cluster.ts";
import { Harness, kill9, pathExists, waitFor } from "./harness/mod.ts";

/** Three nodes: n1 primary, n2 and n3 replicas restored from its snapshot, a table with 3 rows. */
async function threeNodes(h: Harness, env: Record<string, string> = {}): Promise<Cluster> {
  const c = await Cluster.create(h);
  for (const k of [1, 2, 3]) {
    const node = c.node(k, env);
    const r = await c.boot(node);
    assertEquals(r.code, 0, `${node.name}: ${r.stderr}`);
  }
  await using app = await c.app(c.node(1));
  await app.run(["CREATE TABLE app.t (id INT PRIMARY KEY)", "INSERT INTO app.t VALUES (1), (2), (3)"]);
  for (const k of [2, 3]) await waitFor(`rows on n${k}`, async () => (await c.rows(c.node(k))) === 3);
  return c;
}

/** Runs health passes until one of `among` is primary and ready (its `health --primary` passes). */
async function newPrimary(
  c: Cluster,
  nodes: TestNode[],
  among: TestNode[],
  timeoutMs = 40_000,
): Promise<TestNode> {
  let found: TestNode | undefined;
  await converge(c, nodes, async () => {
    const name = await c.primaryName();
    const node = among.find((n) => n.name === name);
    if (node === undefined || (await c.run(node, ["health", "--primary"])).code !== 0) return false;
    found = node;
    return true;
  }, timeoutMs);
  return found!;
}

async function readOnly(c: Cluster, node: TestNode): Promise<boolean> {
  return Number((await c.sql(node, "SELECT @@read_only AS ro"))[0].ro) === 1;
}

async function source(c: Cluster, node: TestNode): Promise<string | undefined> {
  const [s] = await c.sql(node, "SHOW SLAVE STATUS");
  return s ? String(s.Master_Host) : undefined;
}

Deno.test("failover after kill -9 of the primary promotes the replica with the most, never a lagging one", async () => {
  await using h = await Harness.create({ nodes: 3 });
  const c = await threeNodes(h);
  const [n1, n2, n3] = [c.node(1), c.node(2), c.node(3)];
  // n3 falls behind: it misses rows 4 and 5, which n2 has.
  await c.sql(n3, "STOP SLAVE");
  await using app = await c.app(n1);
  await app.run(["INSERT INTO app.t VALUES (4)", "INSERT INTO app.t VALUES (5)"]);
  await waitFor("rows on n2", async () => (await c.rows(n2)) === 5);
  await app.close();
  await kill9(n1.mysqld!.pid);

  assertEquals(
    (await newPrimary(c, [n1, n2, n3], [n2, n3])).name,
    "n2",
    "the caught-up replica, not the lagging one",
  );
  await converge(c, [n2, n3], async () => (await source(c, n3)) === n2.address && (await c.rows(n3)) === 5);
  assertEquals(await readOnly(c, n2), false);
  assertEquals(await readOnly(c, n3), true);
  assertEquals((await c.run(n2, ["health", "--primary"])).code, 0);
  assertEquals((await c.run(n3, ["health"])).code, 0);

  await using app2 = await c.app(n2);
  await app2.query("INSERT INTO app.t VALUES (6)");
  await waitFor("row 6 on n3", async () => (await c.rows(n3)) === 6);

  // The old primary comes back, read-only, and rejoins: it has nothing the new primary lacks.
  await c.preStart(n1);
  await c.startMysqld(n1);
  assertEquals(await readOnly(c, n1), true, "a restarted old primary starts read-only");
  await converge(c, [n1], async () => (await source(c, n1)) === n2.address && (await c.rows(n1)) === 6);
  assertEquals((await c.run(n1, ["health"])).code, 0);
  assertEquals(await c.primaryName(), "n2");
});

Deno.test("failover after the primary's whole node stops: its heartbeat stands still and a replica takes it over", async () => {
  await using h = await Harness.create({ nodes: 3 });
  const c = await threeNodes(h);
  const [n1, n2, n3] = [c.node(1), c.node(2), c.node(3)];
  // A round of passes, as ContainerPilot runs every 5 s: n1's heartbeat names its replicas (the members its
  // failsafe checks, the only ones that may act on it once it is silent).
  for (const n of [n1, n2, n3]) assertEquals((await c.run(n, ["health"])).code, 0, n.name);
  // mysqld dies and no autopilot runs on n1 any more: nobody releases the lock; its heartbeat stands still.
  await kill9(n1.mysqld!.pid);
  const primary = await newPrimary(c, [n2, n3], [n2, n3], 70_000);
  const replica = primary === n2 ? n3 : n2;
  await converge(c, [n2, n3], async () => (await source(c, replica)) === primary.address);
  await using app = await c.app(primary);
  await app.query("INSERT INTO app.t VALUES (20)");
  await waitFor(`row 20 on ${replica.name}`, async () => (await c.rows(replica)) === 4);
});

Deno.test("failover after the primary's link is cut: the old primary fences itself, then rejoins when healed", async () => {
  await using h = await Harness.create({ nodes: 3 });
  const c = await threeNodes(h);
  const [n1, n2, n3] = [c.node(1), c.node(2), c.node(3)];
  // A round of passes, as ContainerPilot runs every 5 s: n1 now knows its replicas (failsafe mode's members).
  for (const n of [n1, n2, n3]) assertEquals((await c.run(n, ["health"])).code, 0, n.name);
  await h.net.cut(1);
  // Cut off from Consul and from its replicas, the old primary turns read-only on its next pass (failsafe mode
  // finds no replica answering), before its session can expire.
  const r = await c.run(n1, ["health"]);
  assertEquals(r.code, 1);
  assert(
    /Consul cannot be reached .* and member n\d .* failsafe ends, turning read-only/.test(r.stderr),
    r.stderr,
  );
  assertEquals(await readOnly(c, n1), true);

  // The others wait for its session to expire (SESSION_TTL 20 s, up to twice that), then elect one of them.
  const primary = await newPrimary(c, [n2, n3], [n2, n3], 70_000);
  const replica = primary === n2 ? n3 : n2;
  await converge(c, [n2, n3], async () => (await source(c, replica)) === primary.address);
  assertEquals(await readOnly(c, n1), true, "the cut-off old primary never became writable again");

  await h.net.heal(1);
  await converge(c, [n1, n2, n3], async () => (await source(c, n1)) === primary.address);
  await using app = await c.app(primary);
  await app.query("INSERT INTO app.t VALUES (10)");
  for (const node of [n1, replica]) {
    await waitFor(`row 10 on ${node.name}`, async () => (await c.rows(node)) === 4);
  }
});

/** n1, the primary, acknowledges row 99 that no replica receives, then is killed (-9): it comes back errant. */
async function killWithUnreplicatedWrite(c: Cluster): Promise<void> {
  const [n1, n2, n3] = [c.node(1), c.node(2), c.node(3)];
  for (const node of [n2, n3]) await c.sql(node, "STOP SLAVE");
  {
    await using app = await c.app(n1);
    await app.query("INSERT INTO app.t VALUES (99)"); // acknowledged, then lost: asynchronous replication
  }
  await kill9(n1.mysqld!.pid);
  for (const node of [n2, n3]) await c.sql(node, "START SLAVE");
}

Deno.test("REBUILD_ERRANT_NODE=false: an old primary with a transaction no replica received is reported errant, its transaction saved, never rejoined", async () => {
  await using h = await Harness.create({ nodes: 3 });
  const c = await threeNodes(h, { REBUILD_ERRANT_NODE: "false" });
  const [n1, n2, n3] = [c.node(1), c.node(2), c.node(3)];
  await killWithUnreplicatedWrite(c);

  await newPrimary(c, [n1, n2, n3], [n2, n3]);
  await c.preStart(n1);
  await c.startMysqld(n1);
  const r = await c.run(n1, ["health"]);
  assertEquals(r.code, 1);
  assert(
    r.stderr.includes("Errant node") && r.stderr.includes("not rebuilt (REBUILD_ERRANT_NODE=false)"),
    r.stderr,
  );
  assertEquals(await source(c, n1), undefined, "not silently rejoined");
  assertEquals(await readOnly(c, n1), true);
  const saved = [...Deno.readDirSync(`${c.snapshots}/errant-transactions/n1`)].map((e) => e.name);
  assertEquals(saved.length, 3, saved.join(" "));
  // Saved once: the next pass reports the same save without writing another.
  await c.run(n1, ["health"]);
  assertEquals([...Deno.readDirSync(`${c.snapshots}/errant-transactions/n1`)].length, 3);
});

Deno.test("REBUILD_ERRANT_NODE: an errant old primary moves its datadir aside and rebuilds from the snapshot", async () => {
  await using h = await Harness.create({ nodes: 3 });
  const c = await threeNodes(h, { REBUILD_ERRANT_NODE: "true" });
  const [n1, n2, n3] = [c.node(1), c.node(2), c.node(3)];
  await killWithUnreplicatedWrite(c);
  const primary = await newPrimary(c, [n1, n2, n3], [n2, n3]);
  await c.preStart(n1);
  await c.startMysqld(n1);
  const datadir = n1.env.MYSQL_DATADIR;
  const aside = () => [...Deno.readDirSync(`${n1.dir}`)].filter((e) => e.name.startsWith("data.errant-"));

  const consul = c.consul();
  try {
    // With no snapshot to rebuild from, nothing is touched and the node stays errant.
    const published = (await consul.get("mysql-last-backup"))!.value;
    await consul.delete("mysql-last-backup");
    const refused = await c.run(n1, ["health"]);
    assertEquals(refused.code, 1);
    assert(refused.stderr.includes("not rebuilt: no snapshot exists"), refused.stderr);
    assertEquals(aside(), []);
    assertEquals(await c.rows(n1), 4, "the errant datadir was touched");
    await consul.put("mysql-last-backup", published);
  } finally {
    consul.close();
  }

  const r = await c.run(n1, ["health"]);
  assertEquals(r.code, 1);
  assert(r.stderr.includes("Errant node") && r.stderr.includes("Rebuilt from snapshot"), r.stderr);
  assert(r.stderr.includes("saved to"), r.stderr);
  await waitFor("n1's mysqld to stop", () => Promise.resolve(n1.mysqld!.exited));
  const kept = aside();
  assertEquals(kept.length, 1, "the errant datadir was not kept");
  assert(Deno.statSync(`${n1.dir}/${kept[0].name}/app/t.ibd`).isFile, "the errant datadir lost its tables");

  // ContainerPilot restarts mysqld: it starts on the restored datadir and the node replicates. The restored
  // position is the snapshot's, older than anything in the new primary's own binlog.
  await c.startMysqld(n1);
  const stopChecking = c.keepChecking([n2, n3]);
  try {
    await waitFor("n1 rebuilt and following the new primary", async () => {
      await c.run(n1, ["health"]);
      return (await source(c, n1)) === primary.address && (await c.rows(n1).catch(() => 0)) === 3;
    }, { timeoutMs: 30_000, intervalMs: 500 });
  } finally {
    await stopChecking();
  }
  assert(Deno.statSync(`${datadir}/mysql`).isDirectory);
  assertEquals(await readOnly(c, n1), true);
  await using onPrimary = await c.app(primary);
  await onPrimary.query("INSERT INTO app.t VALUES (100)");
  await waitFor("n1 applies new writes", async () => (await c.rows(n1)) === 4);
  const [errantRow] = await c.sql(n1, "SELECT COUNT(*) AS n FROM app.t WHERE id = 99");
  assertEquals(Number(errantRow.n), 0, "the errant transaction came back");
  // The new copy's server_id is in my.cnf (written before the copy was moved into place).
  const id = (await Deno.readTextFile(`${datadir}/autopilot-server-id`)).trim();
  assert(
    (await Deno.readTextFile(n1.env.MYSQL_CNF)).includes(`server_id = ${id}\n`),
    "my.cnf has another id",
  );
  assertEquals(String((await c.sql(n1, "SELECT @@server_id AS id"))[0].id), id);
});

Deno.test("a rebuild cut short after its datadir was moved aside is finished by the next health pass", async () => {
  await using h = await Harness.create({ nodes: 2 });
  const c = await Cluster.create(h);
  const [n1, n2] = [c.node(1), c.node(2)];
  for (const n of [n1, n2]) assertEquals((await c.boot(n)).code, 0);
  // Where a pass killed by its timeout leaves it: datadir aside, mysqld stopped, the rebuild recorded.
  await c.stopMysqld(n2);
  const datadir = n2.env.MYSQL_DATADIR;
  const aside = `${datadir}.errant-test`;
  await Deno.rename(datadir, aside);
  await Deno.mkdir(`${datadir}.restore-0123456789ab`); // a staging dir the killed pass left behind
  const statePath = `${n2.env.STATE_DIR}/state.json`;
  const state = JSON.parse(await Deno.readTextFile(statePath));
  await Deno.writeTextFile(
    statePath,
    JSON.stringify({ ...state, rebuilding: { aside } }),
  );

  const r = await c.run(n2, ["health"]);
  assertEquals(r.code, 1);
  assert(r.stderr.includes("Rebuilt from snapshot"), r.stderr);
  assert(await pathExists(`${datadir}/mysql`), "no datadir restored");
  assertEquals(await pathExists(`${datadir}.restore-0123456789ab`), false, "the leftover staging dir stayed");
  assert(await pathExists(`${aside}/mysql`), "the old datadir was not kept");
  // The same pass killed after the restored datadir appeared but before it said so: the next pass sees the
  // restore's mark in the datadir and finishes, rather than restoring again into a datadir that is not empty.
  await Deno.writeTextFile(statePath, JSON.stringify({ ...state, rebuilding: { aside } }));
  const again = await c.run(n2, ["health"]);
  assertEquals(again.code, 1);
  assert(again.stderr.includes("Rebuilt from snapshot") && !again.stderr.includes("ERR"), again.stderr);
  assertEquals(JSON.parse(await Deno.readTextFile(statePath)).rebuilding, undefined);
  await c.startMysqld(n2);
  await waitFor("n2 replicates again", async () => (await c.run(n2, ["health"])).code === 0);
});

Deno.test("a lagging replica is not promoted when the caught-up one is gone too, until its record is deleted", async () => {
  await using h = await Harness.create({ nodes: 3 });
  const c = await threeNodes(h);
  const [n1, n2, n3] = [c.node(1), c.node(2), c.node(3)];
  await c.sql(n3, "STOP SLAVE"); // n3 lags: it will miss rows 4 and 5, which n2 receives
  {
    await using app = await c.app(n1);
    await app.run(["INSERT INTO app.t VALUES (4)", "INSERT INTO app.t VALUES (5)"]);
  }
  await waitFor("rows on n2", async () => (await c.rows(n2)) === 5);
  for (const n of [n1, n2, n3]) await c.run(n, ["health"]); // every member publishes what it has
  // n2 and the primary go down together; n2's session then expires, leaving its last record.
  await kill9(n2.mysqld!.pid);
  await kill9(n1.mysqld!.pid);
  let refused = "";
  await waitFor("n3 to refuse the failover", async () => {
    const [, r3] = await Promise.all([c.run(n1, ["health"]), c.run(n3, ["health"])]);
    if (r3.stderr.includes("which no live node has")) refused = r3.stderr;
    else throw new Error(r3.stderr.split("\n").slice(-4).join(" / "));
    return true;
  }, { timeoutMs: 60_000, intervalMs: 1000 });
  assert(refused.includes("n2 (gone since") && refused.includes("delete its member record"), refused);
  assertEquals(await c.primaryName(), undefined, "a lagging node was promoted");

  // The operator says n2 is gone for good: n3 is promoted with what it has.
  const consul = c.consul();
  try {
    await consul.delete("mysql-members/n2");
  } finally {
    consul.close();
  }
  await newPrimary(c, [n1, n3], [n3]);
  assertEquals(await c.rows(n3), 3);
});

Deno.test("no node is appointed while the old primary, its lock lost, still answers writable", async () => {
  await using h = await Harness.create({ nodes: 3 });
  const c = await threeNodes(h);
  const [n1, n2, n3] = [c.node(1), c.node(2), c.node(3)];
  // This is the failover runner's own check, behind n1's in-server fence: that fence (its lease event, see
  // lease_test.ts) is switched off here, as on a server without it, so that n1 stays writable without its
  // hooks. A pass first, so that n1 is writable with its lock whatever the boots above took.
  assertEquals((await c.run(n1, ["health"])).code, 0);
  {
    await using db = await c.root(n1);
    await db.run(["SET SESSION sql_log_bin = 0", "ALTER EVENT autopilot.lease_fence DISABLE"]);
  }
  // n1's session ends (as if its health checks had stopped) while its mysqld still takes writes.
  const session = JSON.parse(await Deno.readTextFile(`${n1.env.STATE_DIR}/state.json`)).sessionId;
  const consul = c.consul();
  try {
    await consul.destroySession(session);
  } finally {
    consul.close();
  }
  let refused = "";
  await waitFor("a failover refused while n1 is writable", async () => {
    const results = await Promise.all([n2, n3].map((n) => c.run(n, ["health"])));
    refused = results.map((r) =>
      r.stderr
    ).find((e) => /still answers writable|but answers writable/.test(e)) ??
      "";
    return refused !== "";
  }, { timeoutMs: 30_000, intervalMs: 500 });
  assertEquals(await c.primaryName(), undefined, "a second primary was appointed while n1 was writable");
  assertEquals(await readOnly(c, n1), false);

  // Once n1 is read-only (its own pass would fence it), the failover goes ahead.
  await c.sql(n1, "SET GLOBAL read_only = 1");
  await newPrimary(c, [n2, n3], [n2, n3]);
});

Deno.test("a node restored after a failover keeps every server's place in the binlog state, so later failovers work", async () => {
  await using h = await Harness.create({ nodes: 4 });
  const c = await threeNodes(h, { FAILOVER_QUIET_PERIOD: "0" });
  const [n1, n2, n3, n4] = [c.node(1), c.node(2), c.node(3), c.node(4, { FAILOVER_QUIET_PERIOD: "0" })];
  await kill9(n1.mysqld!.pid);
  const first = await newPrimary(c, [n1, n2, n3], [n2, n3]);
  {
    await using app = await c.app(first);
    await app.query("INSERT INTO app.t VALUES (10)"); // domain 0 now has two servers' GTIDs
  }
  await new Promise((r) => setTimeout(r, 1100));
  assertEquals((await c.run(first, ["backup", "now"])).code, 0);
  const stop = c.keepChecking([first, first === n2 ? n3 : n2]);
  try {
    assertEquals((await c.boot(n4)).code, 0, "n4 did not join");
  } finally {
    await stop();
  }
  const state = String((await c.sql(n4, "SELECT @@gtid_binlog_state AS s"))[0].s);
  assertEquals(state.split(",").length, 2, `n4 lost a server's place: ${state}`);

  // The primary fails again: the other old replica and the restored node agree on who has everything.
  await kill9(first.mysqld!.pid);
  const other = first === n2 ? n3 : n2;
  await newPrimary(c, [first, other, n4], [other, n4]);
});

Deno.test("no automatic failover while FAILOVER_PAUSE_KEY exists; it proceeds once the key is gone", async () => {
  await using h = await Harness.create({ nodes: 3 });
  const c = await threeNodes(h);
  const [n1, n2, n3] = [c.node(1), c.node(2), c.node(3)];
  const consul = c.consul();
  try {
    await consul.put("mysql-failover-paused", "maintenance");
    await kill9(n1.mysqld!.pid);
    for (let round = 0; round < 3; round++) {
      const results = await Promise.all([n1, n2, n3].map((n) => c.run(n, ["health"])));
      assert(results.every((r) => r.code === 1));
    }
    const r = await c.run(n2, ["health"]);
    assert(r.stderr.includes("automatic failover is paused"), r.stderr);
    assertEquals(await c.primaryName(), undefined);
    await consul.delete("mysql-failover-paused");
    await newPrimary(c, [n1, n2, n3], [n2, n3]);
  } finally {
    consul.close();
  }
});

Deno.test("a failover whose runner dies holding the failover lock is finished by another node", async () => {
  await using h = await Harness.create({ nodes: 3 });
  const c = await threeNodes(h);
  const [n1, n2, n3] = [c.node(1), c.node(2), c.node(3)];
  const consul: ConsulStore = c.consul();
  try {
    // A runner takes the failover lock and dies before appointing anyone: its session goes with it.
    const runner = await consul.createSession({ name: "dying-runner", ttlSeconds: 10 });
    assert(
      await consul.tryAcquireLock("mysql-failover-lock", runner, JSON.stringify({ node: "ghost", at: 0 })),
    );
    await kill9(n1.mysqld!.pid);
    assertEquals((await c.run(n1, ["health"])).code, 1, "the old primary releases the lock: mysqld is down");
    assertEquals(await c.primaryName(), undefined);
    const blocked = await Promise.all([n2, n3].map((n) => c.run(n, ["health"])));
    assert(blocked.some((r) => r.stderr.includes("Another node is running the failover")), blocked[0].stderr);
    await consul.destroySession(runner);
    await newPrimary(c, [n1, n2, n3], [n2, n3]);
  } finally {
    consul.close();
  }
});

Deno.test("SEMI_SYNC: commits wait for a replica's acknowledgement and never fall back to asynchronous", async () => {
  await using h = await Harness.create({ nodes: 3 });
  const c = await threeNodes(h, { SEMI_SYNC: "on" });
  const [n1, n2, n3] = [c.node(1), c.node(2), c.node(3)];
  const status = async (name: string) =>
    String((await c.sql(n1, `SHOW GLOBAL STATUS LIKE '${name}'`))[0]?.Value ?? "");
  await waitFor(
    "both replicas acknowledging",
    async () => (await status("Rpl_semi_sync_master_clients")) === "2",
  );
  assertEquals(await status("Rpl_semi_sync_master_status"), "ON");
  const before = Number(await status("Rpl_semi_sync_master_yes_tx"));
  await using app = await c.app(n1);
  await app.query("INSERT INTO app.t VALUES (4)");
  assertEquals(Number(await status("Rpl_semi_sync_master_yes_tx")), before + 1, "acknowledged by a replica");

  // With no replica to acknowledge, a commit waits instead of silently becoming asynchronous.
  for (const node of [n2, n3]) await c.sql(node, "STOP SLAVE");
  await waitFor("no replica connected", async () => (await status("Rpl_semi_sync_master_clients")) === "0");
  let committed = false;
  const pending = app.query("INSERT INTO app.t VALUES (5)").then(() => committed = true, () => {});
  await new Promise((r) => setTimeout(r, 3000));
  assertEquals(committed, false, "the commit returned without any replica");
  assertEquals(await status("Rpl_semi_sync_master_no_tx"), "0", "no transaction fell back to asynchronous");
  await c.sql(n2, "START SLAVE");
  await pending;
  assertEquals(committed, true);
  await c.sql(n3, "START SLAVE");
});

/** Kills a just-promoted primary's mysqld (its node lives) and checks that `other` waits instead of failing over. */
async function crashIsWaitedFor(c: Cluster, promoted: TestNode, other: TestNode): Promise<void> {
  await kill9(promoted.mysqld!.pid);
  for (let round = 0; round < 3; round++) {
    await Promise.all([promoted, other].map((n) => c.run(n, ["health"])));
  }
  const r = await c.run(other, ["health"]);
  assert(r.stderr.includes(`promoted ${promoted.name}, which is still alive`), r.stderr);
  assertEquals(await c.primaryName(), undefined);
}

Deno.test("within FAILOVER_QUIET_PERIOD a just-promoted primary that crashes while its node lives is waited for", async () => {
  await using h = await Harness.create({ nodes: 3 });
  const c = await threeNodes(h);
  const [n1, n2, n3] = [c.node(1), c.node(2), c.node(3)];
  await kill9(n1.mysqld!.pid);
  const promoted = await newPrimary(c, [n1, n2, n3], [n2, n3]);
  const other = promoted === n2 ? n3 : n2;

  // The new primary's mysqld crashes, but its node (and its session) lives: no second failover.
  await crashIsWaitedFor(c, promoted, other);

  // mysqld comes back (ContainerPilot restarts it): the node takes its lock again.
  await c.startMysqld(promoted);
  assertEquals((await newPrimary(c, [promoted, other], [promoted])).name, promoted.name);
});

Deno.test("an attempt that moves no primary keeps the record of the last failover, so its quiet period still holds", async () => {
  await using h = await Harness.create({ nodes: 3 });
  const c = await threeNodes(h);
  const [n1, n2, n3] = [c.node(1), c.node(2), c.node(3)];
  const consul: ConsulStore = c.consul();
  try {
    await kill9(n1.mysqld!.pid);
    const promoted = await newPrimary(c, [n1, n2, n3], [n2, n3]);
    const other = promoted === n2 ? n3 : n2;
    const record = await consul.get("mysql-failover-lock");
    assertEquals(JSON.parse(record!.value).promoted, promoted.name);

    // A switchover that hands the role to nobody takes the failover lock and gives it back unchanged.
    const r = await c.run(promoted, ["switchover", "--to", "n9"]);
    assertEquals(r.code, 1, r.stderr);
    const after = await consul.get("mysql-failover-lock");
    assertEquals([after?.value, after?.session], [record!.value, undefined]);

    // So the new primary's crash is still waited for, not failed over.
    await crashIsWaitedFor(c, promoted, other);
  } finally {
    consul.close();
  }
});

Deno.test("SEMI_SYNC under load through repeated kill -9 failovers: no acknowledged key lost or doubled", async () => {
  await using h = await Harness.create({ nodes: 3 });
  const c = await Cluster.create(h);
  const nodes = [1, 2, 3].map((k) => c.node(k, { SEMI_SYNC: "on", FAILOVER_QUIET_PERIOD: "0" }));
  for (const n of nodes) assertEquals((await c.boot(n)).code, 0);
  await using setup = await c.app(nodes[0]);
  await setup.query("CREATE TABLE app.acked (id INT PRIMARY KEY)");
  const w = writer(c);
  // A killed primary may hold one transaction it had written to its binlog but no replica had acknowledged
  // (AFTER_SYNC): no client was told it committed. Such a node must be reported errant and kept out;
  // otherwise it must rejoin.
  const errant: TestNode[] = [];
  for (let round = 0; round < 2; round++) {
    await new Promise((r) => setTimeout(r, 1500));
    const live = nodes.filter((n) => !errant.includes(n));
    const primaryName = await c.primaryName();
    const killed = live.find((n) => n.name === primaryName)!;
    const others = live.filter((n) => n !== killed);
    await kill9(killed.mysqld!.pid);
    await newPrimary(c, live, others);
    await c.preStart(killed);
    await c.startMysqld(killed);
    const outcome = await waitFor(`${killed.name} to rejoin or be reported errant`, async () => {
      await Promise.all(others.map((n) => c.run(n, ["health"])));
      const r = await c.run(killed, ["health"]);
      if (r.stderr.includes("Errant node")) return "errant";
      return r.code === 0 && (await source(c, killed)) !== undefined ? "rejoined" : undefined;
    }, { timeoutMs: 40_000, intervalMs: 300 });
    if (outcome === "errant") {
      errant.push(killed);
      assertEquals(await source(c, killed), undefined, "an errant node is never rejoined");
    }
  }
  await new Promise((r) => setTimeout(r, 1500));
  const acked = await w.stop();
  assert(acked.length > 20, `little progress: ${acked.length}`);
  const finalName = await c.primaryName();
  const final = nodes.find((n) => n.name === finalName)!;
  const stored = (await c.sql(final, "SELECT id FROM app.acked")).map((r) => Number(r.id));
  assertEquals(new Set(acked).size, acked.length, "a key was acknowledged twice");
  assertEquals(acked.filter((id) => !stored.includes(id)), [], "acknowledged keys were lost");
});
