/**
 * A cluster assembling itself: `autopilot pre-start` and `autopilot health` run exactly as ContainerPilot's
 * jobs would run them (the CLI under -P=autopilot, inside each node's network namespace), against a real Consul
 * agent and real MariaDB servers started from the my.cnf that pre-start wrote.
 *
 * CI cannot install ContainerPilot (see docs/DEVELOPING.md, "ContainerPilot"), so these tests start mysqld and
 * call the hooks themselves; what ContainerPilot adds (scheduling, registration) is not exercised here.
 */
import { assert, assertEquals } from "../unit/assert.ts";
import { MysqlQueryError } from "../../src/mysql/client.ts";
import { Cluster, SECRETS } from "./cluster.ts";
import { freePort, Harness, waitFor } from "./harness/mod.ts";

Deno.test("autopilot pre-start and health assemble a primary and two replicas restored from its snapshot", async (t) => {
  await using h = await Harness.create({ nodes: 3 });
  const c = await Cluster.create(h);
  // An errant node stays as it is here (REBUILD_ERRANT_NODE's rebuild is tests/integration/failover_test.ts's).
  const keep = { REBUILD_ERRANT_NODE: "false" };
  const [n1, n2, n3] = [c.node(1, keep), c.node(2, keep), c.node(3, keep)];

  await t.step("the first node initialises an empty datadir and becomes primary", async () => {
    const health = await c.boot(n1);
    assertEquals(health.code, 0, health.stderr);
    assertEquals(await c.primaryName(), "n1");
    assertEquals((await c.run(n1, ["health", "--primary"])).code, 0);
    const [ro] = await c.sql(n1, "SELECT @@read_only AS ro");
    assertEquals(Number(ro.ro), 0);
  });

  await t.step("the primary has the app user and database, and published its first snapshot", async () => {
    await using app = await c.app(n1);
    await app.run(["CREATE TABLE app.t (id INT PRIMARY KEY)", "INSERT INTO app.t VALUES (1), (2), (3)"]);
    const consul = c.consul();
    try {
      const entry = await consul.get("mysql-last-backup");
      assert(entry !== undefined, "LAST_BACKUP_KEY not written");
      const manifest = JSON.parse(entry.value);
      const stored = [...Deno.readDirSync(c.snapshots)].map((e) => e.name);
      assert(stored.includes(`${manifest.name}.xbstream.zst`), stored.join());
      assert(stored.includes(`${manifest.name}.manifest.json`), stored.join());
      assert((await consul.get("mysql-last-binlog"))?.value.startsWith("mysql-bin."));
    } finally {
      consul.close();
    }
    const [root] = await c.sql(
      n1,
      "SELECT JSON_VALUE(Priv, '$.plugin_auth_alternatives') IS NOT NULL OR " +
        "Priv LIKE '%mysql_native_password%' AS has_password FROM mysql.global_priv WHERE User='root' AND Host='localhost'",
    );
    assertEquals(Number(root.has_password), 1, "MYSQL_ROOT_PASSWORD was not set");
    // The binlog, which every replica copies, holds password hashes, never the passwords.
    const binlogs = [...Deno.readDirSync(n1.env.MYSQL_DATADIR)].filter((e) =>
      /^mysql-bin\.\d+$/.test(e.name)
    );
    assert(binlogs.length > 0, "no binlog found");
    for (const { name } of binlogs) {
      const text = new TextDecoder("latin1").decode(Deno.readFileSync(`${n1.env.MYSQL_DATADIR}/${name}`));
      for (const secret of Object.values(SECRETS)) assert(!text.includes(secret), `a password is in ${name}`);
    }
  });

  await t.step("two more nodes restore the snapshot and replicate with GTID", async () => {
    for (const node of [n2, n3]) {
      if (node === n3) {
        // n3 restores a snapshot that holds app.t and its rows, which n1's binlog also holds from its start
        const now = await c.run(n1, ["backup", "now"]);
        assertEquals(now.code, 0, now.stderr);
      }
      const pre = await c.preStart(node);
      assertEquals(pre.code, 0, pre.stderr);
      assert(pre.stderr.includes("Restoring snapshot"), pre.stderr);
      // n3 as if its pre-start had been killed right after the restored datadir appeared, before it wrote
      // anything more: the position replication starts from is in the datadir. (Replicating from the start
      // instead would replay n1's whole binlog over the restored data, which MariaDB's idempotent DDL hides
      // here, and which fails once n1 has purged old binlogs.)
      if (node === n3) await Deno.remove(`${n3.env.STATE_DIR}/state.json`);
      const restoredAt = pre.stderr.match(/replication will start after (\S+)/)?.[1];
      await c.startMysqld(node);
      const health = await c.run(node, ["health"]);
      assertEquals(health.code, 0, health.stderr);
      assert(
        health.stderr.includes(`Replicating from n1 (${n1.address}:3306) after ${restoredAt}`),
        health.stderr,
      );
      assertEquals((await c.run(node, ["health", "--primary"])).code, 1);
    }
    await using app = await c.app(n1);
    await app.query("INSERT INTO app.t VALUES (4)");
    for (const node of [n2, n3]) {
      await waitFor(`row 4 on ${node.name}`, async () => (await c.rows(node)) === 4);
    }
    const [status] = await c.sql(n2, "SHOW SLAVE STATUS");
    assertEquals([status.Master_Host, status.Using_Gtid], [n1.address, "Slave_Pos"]);
  });

  await t.step("the application user cannot write on a replica", async () => {
    await using app = await c.app(n2);
    let refused: MysqlQueryError | undefined;
    try {
      await app.query("INSERT INTO app.t VALUES (99)");
    } catch (e) {
      if (e instanceof MysqlQueryError) refused = e;
    }
    assertEquals(refused?.errno, 1290);
  });

  await t.step("a stopped replication thread turns the replica's health red", async () => {
    await c.sql(n2, "STOP SLAVE SQL_THREAD");
    const r = await c.run(n2, ["health"]);
    assertEquals(r.code, 1);
    assert(r.stderr.includes("is not running (I/O thread: yes, SQL thread: no)"), r.stderr);
    await c.sql(n2, "START SLAVE SQL_THREAD");
    assertEquals((await c.run(n2, ["health"])).code, 0);
  });

  await t.step("a replica lagging more than MAX_REPLICATION_LAG is unhealthy", async () => {
    await c.sql(n3, "STOP SLAVE");
    await c.sql(n3, "CHANGE MASTER TO MASTER_DELAY=30");
    await c.sql(n3, "START SLAVE");
    await using app = await c.app(n1);
    await app.query("INSERT INTO app.t VALUES (5)");
    await app.query("INSERT INTO app.t VALUES (6)");
    const r = await waitFor("the lag to show", async () => {
      const res = await c.run(n3, ["health"], { MAX_REPLICATION_LAG: "1s" });
      return res.code === 1 && res.stderr.includes("lags") ? res : undefined;
    }, { timeoutMs: 15_000, intervalMs: 500 });
    assert(r.stderr.includes("(limit 1 s)"), r.stderr);
    await c.sql(n3, "STOP SLAVE");
    await c.sql(n3, "CHANGE MASTER TO MASTER_DELAY=0");
    await c.sql(n3, "START SLAVE");
    await waitFor("n3 healthy again", async () => (await c.run(n3, ["health"])).code === 0, {
      timeoutMs: 15_000,
    });
  });

  await t.step("a restarted replica keeps its data and rejoins", async () => {
    await c.stopMysqld(n2);
    assertEquals((await c.run(n2, ["health"])).code, 1, "healthy with mysqld stopped");
    const pre = await c.preStart(n2);
    assertEquals(pre.code, 0, pre.stderr);
    assert(pre.stderr.includes("already holds a database: left untouched"), pre.stderr);
    await c.startMysqld(n2);
    const r = await c.run(n2, ["health"]);
    assertEquals(r.code, 0, r.stderr);
    // A crash right after that start, and ContainerPilot's restart: the two runs of mysqld began within a
    // second or two of each other, and replication must start again all the same.
    const crashed = n2.mysqld!;
    Deno.kill(crashed.pid, "SIGKILL");
    await crashed.status;
    await c.startMysqld(n2);
    const again = await c.run(n2, ["health"]);
    assertEquals(again.code, 0, again.stderr);
    assert(again.stderr.includes("mysqld restarted: starting replication from"), again.stderr);
    await using app = await c.app(n1);
    await app.query("INSERT INTO app.t VALUES (7)");
    await waitFor("row 7 on n2", async () => (await c.rows(n2)) === 7);
  });

  await t.step("a replication stopped by hand is reported and left stopped", async () => {
    await c.sql(n2, "STOP SLAVE");
    const r = await c.run(n2, ["health"]);
    assertEquals(r.code, 1);
    assert(r.stderr.includes("is not running (I/O thread: no, SQL thread: no)"), r.stderr);
    const [status] = await c.sql(n2, "SHOW SLAVE STATUS");
    assertEquals([status.Slave_IO_Running, status.Slave_SQL_Running], ["No", "No"]);
    // Where a pass killed while re-pointing replication leaves it: stopped by autopilot, which starts it again.
    const statePath = `${n2.env.STATE_DIR}/state.json`;
    const state = JSON.parse(await Deno.readTextFile(statePath));
    await Deno.writeTextFile(statePath, JSON.stringify({ ...state, repointing: `${n1.address}:3306` }));
    const resumed = await c.run(n2, ["health"]);
    assertEquals(resumed.code, 0, resumed.stderr);
    assert(resumed.stderr.includes("stopped before starting it: starting it"), resumed.stderr);
    assertEquals(JSON.parse(await Deno.readTextFile(statePath)).repointing, undefined);
  });

  await t.step("a node that replicates from nobody but lacks nothing rejoins the primary", async () => {
    await c.sql(n3, "STOP SLAVE");
    await c.sql(n3, "RESET SLAVE ALL");
    const r = await c.run(n3, ["health"]);
    assertEquals(r.code, 0, r.stderr);
    assert(r.stderr.includes("rejoining n1"), r.stderr);
    await using app = await c.app(n1);
    await app.query("INSERT INTO app.t VALUES (8)");
    await waitFor("row 8 on n3", async () => (await c.rows(n3)) === 8);
  });

  await t.step(
    "a node with a transaction the primary lacks is reported errant and not rejoined",
    async () => {
      await c.sql(n2, "STOP SLAVE");
      await c.sql(n2, "RESET SLAVE ALL");
      await c.sql(n2, "INSERT INTO app.t VALUES (100)"); // root bypasses read_only: an errant GTID
      const [mine] = await c.sql(n2, "SELECT @@gtid_binlog_pos AS pos");
      const r = await c.run(n2, ["health"]);
      assertEquals(r.code, 1);
      assert(r.stderr.includes("Errant node"), r.stderr);
      assert(r.stderr.includes(String(mine.pos)), `the extra GTID ${mine.pos} is named: ${r.stderr}`);
      assertEquals(
        (await c.sql(n2, "SHOW SLAVE STATUS")).length,
        0,
        "an errant node is never silently rejoined",
      );
    },
  );

  await t.step("a restarted primary keeps its data and its role", async () => {
    await c.stopMysqld(n1);
    const down = await c.run(n1, ["health"]);
    assertEquals(down.code, 1);
    assertEquals(await c.primaryName(), undefined, "the primary lock is released when mysqld is down");
    await c.preStart(n1);
    await c.startMysqld(n1);
    const r = await c.run(n1, ["health"]);
    assertEquals(r.code, 0, r.stderr);
    assertEquals(await c.primaryName(), "n1");
    assertEquals(await c.rows(n1), 8);
  });
});

Deno.test("autopilot health elects exactly one primary among three empty nodes started at once", async () => {
  await using h = await Harness.create({ nodes: 3 });
  const c = await Cluster.create(h);
  const nodes = [c.node(1), c.node(2), c.node(3)];
  const pre = await Promise.all(nodes.map((n) => c.preStart(n)));
  assertEquals(pre.map((r) => r.code), [0, 0, 0], pre.map((r) => r.stderr).join("\n"));
  await Promise.all(nodes.map((n) => c.startMysqld(n)));
  const first = await Promise.all(nodes.map((n) => c.run(n, ["health"])));
  const primary = await c.primaryName();
  assert(primary !== undefined, "nobody became primary");
  const winners = nodes.filter((n, i) => first[i].code === 0 && n.name === primary);
  assertEquals(winners.length, 1, first.map((r) => r.stderr).join("\n"));
  const primaries = await Promise.all(nodes.map((n) => c.run(n, ["health", "--primary"])));
  assertEquals(primaries.filter((r) => r.code === 0).length, 1);
  // The others follow on their next pass.
  for (const node of nodes) {
    await waitFor(`${node.name} healthy`, async () => (await c.run(node, ["health"])).code === 0, {
      timeoutMs: 20_000,
      intervalMs: 500,
    });
  }
  const p = nodes.find((n) => n.name === primary)!;
  await using app = await c.app(p);
  await app.run(["CREATE TABLE app.t (id INT PRIMARY KEY)", "INSERT INTO app.t VALUES (1)"]);
  for (const node of nodes) await waitFor(`row on ${node.name}`, async () => (await c.rows(node)) === 1);
});

Deno.test("autopilot pre-start with a missing variable exits 2 and touches nothing", async () => {
  await using h = await Harness.create({ nodes: 1 });
  const c = await Cluster.create(h);
  const n = c.node(1);
  const r = await c.run(n, ["pre-start"], { MYSQL_REPL_PASSWORD: "" });
  assertEquals(r.code, 2);
  assertEquals(
    r.stderr,
    "autopilot: invalid configuration: MYSQL_REPL_PASSWORD is required (replication user's password)",
  );
  for (const path of [n.env.MYSQL_CNF, n.env.MYSQL_DATADIR, n.env.STATE_DIR]) {
    assertEquals(await Deno.stat(path).then(() => true, () => false), false, `${path} was created`);
  }
});

Deno.test("autopilot pre-start with an unreachable Consul exits 1 with one clear line and no datadir", async () => {
  await using h = await Harness.create({ nodes: 1 });
  const c = new Cluster(h, `127.0.0.1:${freePort()}`, `${h.dir}/snapshots`);
  const n = c.node(1);
  const r = await c.preStart(n);
  assertEquals(r.code, 1);
  const errors = r.stderr.split("\n").filter((l) => l.includes("[ERR]"));
  assertEquals(errors.length, 1, r.stderr);
  assert(errors[0].includes("Cannot reach Consul"), errors[0]);
  assert(errors[0].includes("nothing was changed"), errors[0]);
  assertEquals(await Deno.stat(n.env.MYSQL_DATADIR).then(() => true, () => false), false);
});

Deno.test("autopilot pre-start refuses a corrupt snapshot and leaves no datadir behind", async () => {
  await using h = await Harness.create({ nodes: 2 });
  const c = await Cluster.create(h);
  const [n1, n2] = [c.node(1), c.node(2)];
  assertEquals((await c.boot(n1)).code, 0);
  await c.corruptLastSnapshot(); // the newest snapshot's bytes are damaged in the store
  const r = await c.preStart(n2);
  assertEquals(r.code, 1, r.stderr);
  assert(/corrupt|SHA-256/i.test(r.stderr), r.stderr);
  assertEquals(await Deno.stat(n2.env.MYSQL_DATADIR).then(() => true, () => false), false);
  const leftovers = [...Deno.readDirSync(n2.dir)].filter((e) => e.name.includes(".restore-"));
  assertEquals(leftovers, []);
});

Deno.test("autopilot health generates a random root password into a 0600 file and never logs it", async () => {
  await using h = await Harness.create({ nodes: 1 });
  const c = await Cluster.create(h);
  const n = c.node(1, { MYSQL_ROOT_PASSWORD: "" });
  const r = await c.boot(n);
  assertEquals(r.code, 0, r.stderr);
  const file = `${n.env.STATE_DIR}/root-password`;
  assertEquals((await Deno.stat(file)).mode! & 0o777, 0o600);
  const password = (await Deno.readTextFile(file)).trim();
  assert(password.length >= 24, "too short");
  assert(!r.stderr.includes(password), "the password reached the log");
  assert(r.stderr.includes(file), "the log says where the password is");
  const [row] = await c.sql(
    n,
    `SELECT JSON_VALUE(Priv, '$.authentication_string') = PASSWORD('${password}') AS ok ` +
      "FROM mysql.global_priv WHERE User = 'root' AND Host = 'localhost'",
  );
  assertEquals(Number(row.ok), 1, "the file's password is not root's");
});
