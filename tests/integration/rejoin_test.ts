/**
 * An old primary rejoins by itself, and nothing it held is thrown away unseen (issue 12, item 4), on real
 * servers: without semi-sync its extra transactions are saved to the snapshot store (binlog events and readable
 * SQL) before it is rebuilt; with semi-sync a tail nobody acknowledged is discarded by crash recovery in the
 * replica role (init_rpl_role = SLAVE), after a kill -9 and after a cut alike, and the node rejoins as is.
 *
 * SESSION_TTL is 10 s (the least Consul takes) so that a cut primary's session expires within 20 s.
 */
import { assert, assertEquals } from "../unit/assert.ts";
import { Cluster, converge, type TestNode, writer } from "./cluster.ts";
import { Harness, kill9, waitFor } from "./harness/mod.ts";

const FAST = { SESSION_TTL: "10s" };

/** Three nodes: n1 primary, n2 and n3 replicas restored from its snapshot, a table with 3 rows. */
async function threeNodes(h: Harness, env: Record<string, string> = {}): Promise<Cluster> {
  const c = await Cluster.create(h);
  const nodes = [1, 2, 3].map((k) => c.node(k, { ...FAST, ...env }));
  assertEquals((await c.boot(nodes[0])).code, 0);
  // The primary's lease lasts SESSION_TTL/2 = 5 s: its passes go on while the replicas restore.
  const stopChecking = c.keepChecking([nodes[0]], 1000);
  try {
    for (const node of nodes.slice(1)) {
      const r = await c.boot(node);
      assertEquals(r.code, 0, `${node.name}: ${r.stderr}`);
    }
  } finally {
    await stopChecking();
  }
  await servingPrimary(c, nodes[0]);
  await using app = await c.app(c.node(1));
  await app.run([
    "CREATE TABLE app.t (id INT PRIMARY KEY)",
    "CREATE TABLE app.acked (id INT PRIMARY KEY)",
    "INSERT INTO app.t VALUES (1), (2), (3)",
  ]);
  for (const k of [2, 3]) await waitFor(`rows on n${k}`, async () => (await c.rows(c.node(k))) === 3);
  return c;
}

/** Runs `node`'s health pass until it serves as the writable primary: its lease then lasts 5 s more. */
async function servingPrimary(c: Cluster, node: TestNode): Promise<void> {
  await waitFor(`${node.name} serving as primary`, async () => {
    await c.run(node, ["health"]);
    return (await c.run(node, ["health", "--primary"])).code === 0;
  }, { timeoutMs: 20_000, intervalMs: 200 });
}

/** Runs health passes until one of `among` is primary and ready (its `health --primary` passes). */
async function newPrimary(c: Cluster, nodes: TestNode[], among: TestNode[], timeoutMs = 40_000) {
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

async function source(c: Cluster, node: TestNode): Promise<string | undefined> {
  const [s] = await c.sql(node, "SHOW SLAVE STATUS");
  return s ? String(s.Master_Host) : undefined;
}

async function ids(c: Cluster, node: TestNode, table = "t"): Promise<number[]> {
  return (await c.sql(node, `SELECT id FROM app.${table} ORDER BY id`)).map((r) => Number(r.id));
}

async function semiSyncStatus(c: Cluster, node: TestNode, name: string): Promise<string> {
  return String((await c.sql(node, `SHOW GLOBAL STATUS LIKE '${name}'`))[0]?.Value ?? "");
}

function errantDirs(node: TestNode): string[] {
  return [...Deno.readDirSync(node.dir)].filter((e) => e.name.startsWith("data.errant-")).map((e) => e.name);
}

/** Runs n1's health pass (the others' passes keep the new primary's lease) until its stderr has `text`. */
async function passUntil(c: Cluster, n1: TestNode, others: TestNode[], text: string): Promise<string> {
  let line = "";
  await converge(c, others, async () => {
    const r = await c.run(n1, ["health"]);
    if (r.stderr.includes(text)) line = r.stderr;
    return line !== "";
  });
  return line;
}

Deno.test("async cut under writes, then heal: the old primary's extra transactions are saved, then it is rebuilt and replicates", async () => {
  await using h = await Harness.create({ nodes: 3 });
  const c = await threeNodes(h);
  const [n1, n2, n3] = [c.node(1), c.node(2), c.node(3)];
  // Writes n1 acknowledges that reach no replica (their receivers are stopped), as the write in flight at a cut.
  for (const n of [n2, n3]) await c.sql(n, "STOP SLAVE IO_THREAD");
  await servingPrimary(c, n1);
  {
    await using app = await c.app(n1);
    await app.query("INSERT INTO app.t VALUES (97), (98)");
    await app.query("INSERT INTO app.t VALUES (99)");
  }
  const n1Executed = String((await c.sql(n1, "SELECT @@gtid_binlog_state AS s"))[0].s);
  await h.net.cut(1);
  for (const n of [n2, n3]) await c.sql(n, "START SLAVE IO_THREAD");
  const w = writer(c);
  let acked: number[] = [];
  try {
    const primary = await newPrimary(c, [n1, n2, n3], [n2, n3], 60_000);
    const replica = primary === n2 ? n3 : n2;
    // A store that cannot take the save: nothing is rebuilt (never throw away unseen data), one clear line.
    const blocker = `${c.snapshots}/errant-transactions`;
    await Deno.writeTextFile(blocker, "not a directory\n");
    await h.net.heal(1);
    const stopChecking = c.keepChecking([n2, n3], 1000);
    let line: string;
    try {
      const refused = await passUntil(c, n1, [], "Errant node");
      assert(refused.includes("saving them to the snapshot store failed"), refused);
      assert(refused.includes("not rebuilt, nothing was touched"), refused);
      assertEquals(errantDirs(n1), [], "rebuilt without its transactions saved");
      assertEquals(n1.mysqld!.exited, false);
      await Deno.remove(blocker);
      line = await passUntil(c, n1, [], "Errant node");
      await waitFor("n1's mysqld to stop for the rebuild", () => Promise.resolve(n1.mysqld!.exited));
    } finally {
      await stopChecking();
    }
    assert(line.includes("saved to") && line.includes("errant-transactions/n1/"), line);
    assert(line.includes("Rebuilt from snapshot"), line);
    assertEquals(errantDirs(n1).length, 1, "the errant datadir is kept beside the new one");

    // What was saved can be read back from the store, in both forms, named by node, time and GTIDs.
    const dir = `${c.snapshots}/errant-transactions/n1`;
    const files = [...Deno.readDirSync(dir)].map((e) => e.name).sort();
    assertEquals(files.length, 3, files.join(" "));
    const base = files[0].replace(/\.events\.sql$/, "");
    assertEquals(files, [`${base}.events.sql`, `${base}.json`, `${base}.readable.sql`]);
    const info = JSON.parse(await Deno.readTextFile(`${dir}/${base}.json`));
    assertEquals(info.node, "n1");
    assertEquals(info.thisNodeExecuted, n1Executed);
    assert(base.includes(info.gtids.replace(/,/g, "_")), `${base} does not name ${info.gtids}`);
    const readable = await Deno.readTextFile(`${dir}/${base}.readable.sql`);
    for (const id of [97, 98, 99]) assert(readable.includes(`###   @1=${id}\n`), `row ${id} not saved`);
    assert(readable.includes("### INSERT INTO `app`.`t`"), readable);
    assert(!readable.includes("@1=3\n"), "a transaction the primary has was saved too");
    const events = await Deno.readTextFile(`${dir}/${base}.events.sql`);
    assert(events.includes("BINLOG '"), "the binlog events are not in the events form");
    assertEquals((events.match(/^COMMIT\/\*!\*\/;$/gm) ?? []).length, 2, "two transactions, no more");

    // `autopilot status` points to them.
    const status = JSON.parse((await c.run(replica, ["status", "--json"])).stdout);
    assertEquals(status.errantSaved.map((e: { base: string }) => e.base), [`errant-transactions/n1/${base}`]);

    // ContainerPilot restarts mysqld: on the restored datadir, it replicates from the new primary.
    await c.startMysqld(n1);
    await converge(c, [n1, n2, n3], async () => (await source(c, n1)) === primary.address);
    acked = await w.stop();
    await waitFor("n1 and the replica caught up", async () => {
      const want = (await ids(c, primary, "acked")).length;
      return (await ids(c, n1, "acked")).length === want && (await ids(c, replica, "acked")).length === want;
    });
    assertEquals(await ids(c, n1), [1, 2, 3], "the rebuilt node merged the errant rows");
    assertEquals((await c.run(n1, ["health"])).code, 0);

    // A person may replay the saved events on the primary (without their old seq_nos, which strict mode
    // refuses): they are the real transactions, and reach every node.
    const replay = events.split("\n").filter((l) => !l.includes("gtid_seq_no")).join("\n");
    const client = new Deno.Command("/usr/bin/mariadb", {
      args: ["--no-defaults", "-S", primary.env.MYSQL_SOCKET, "-uroot"],
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const writerIn = client.stdin.getWriter();
    await writerIn.write(new TextEncoder().encode(replay));
    await writerIn.close();
    const out = await client.output();
    assertEquals(out.code, 0, new TextDecoder().decode(out.stderr));
    await waitFor("the replayed rows on n1", async () => (await ids(c, n1)).length === 6);
    assertEquals(await ids(c, n1), [1, 2, 3, 97, 98, 99]);
  } finally {
    acked = acked.length ? acked : await w.stop();
  }
  // The writer started after the cut: every write it got acknowledged came from the new primary.
  const onN1 = new Set(await ids(c, n1, "acked"));
  assert(acked.length > 0, "no write was acknowledged");
  assertEquals(acked.filter((id) => !onN1.has(id)), [], "acknowledged writes missing on the rebuilt node");
});

Deno.test("SEMI_SYNC: kill -9 of the primary while a commit waits for its ack: it rejoins without a rebuild, nothing acknowledged lost", async () => {
  await using h = await Harness.create({ nodes: 3 });
  const c = await threeNodes(h, { SEMI_SYNC: "on" });
  const [n1, n2, n3] = [c.node(1), c.node(2), c.node(3)];
  await waitFor(
    "both replicas acknowledging",
    async () => (await semiSyncStatus(c, n1, "Rpl_semi_sync_master_clients")) === "2",
  );
  await servingPrimary(c, n1);
  await using app = await c.app(n1);
  await app.query("INSERT INTO app.t VALUES (4)"); // acknowledged by a replica
  for (const n of [n2, n3]) await c.sql(n, "STOP SLAVE IO_THREAD");
  await waitFor(
    "no replica connected",
    async () => (await semiSyncStatus(c, n1, "Rpl_semi_sync_master_clients")) === "0",
  );
  let committed = false;
  const pending = app.query("INSERT INTO app.t VALUES (5)").then(() => committed = true, () => {});
  await waitFor(
    "the commit waiting",
    async () => (await semiSyncStatus(c, n1, "Rpl_semi_sync_master_wait_sessions")) === "1",
  );
  await kill9(n1.mysqld!.pid);
  await pending;
  assertEquals(committed, false, "the unacknowledged commit was reported as committed");
  for (const n of [n2, n3]) await c.sql(n, "START SLAVE IO_THREAD");

  const primary = await newPrimary(c, [n1, n2, n3], [n2, n3]);
  // ContainerPilot restarts mysqld with the same my.cnf: crash recovery in the replica role cuts the tail.
  await c.startMysqld(n1);
  const log = await Deno.readTextFile(`${n1.dir}/mysqld.log`);
  assert(
    /Successfully truncated binlog file.*to remove transactions starting from GTID 0-\d+-\d+/.test(log),
    log,
  );
  await converge(c, [n1, n2, n3], async () => (await source(c, n1)) === primary.address);
  assertEquals(errantDirs(n1), [], "rebuilt although nothing acknowledged was extra");
  await using onPrimary = await c.app(primary);
  await onPrimary.query("INSERT INTO app.t VALUES (6)");
  for (const n of [n1, n2, n3]) {
    await waitFor(`row 6 on ${n.name}`, async () => (await ids(c, n)).includes(6));
    assertEquals(await ids(c, n), [1, 2, 3, 4, 6], `${n.name}: the acknowledged row 4 kept, the tail 5 gone`);
  }
  assertEquals((await c.run(n1, ["health"])).code, 0);
});

Deno.test("SEMI_SYNC: a cut primary whose commit waits for its ack is healed: mysqld is crash-restarted and rejoins without a rebuild", async () => {
  await using h = await Harness.create({ nodes: 3 });
  const c = await threeNodes(h, { SEMI_SYNC: "on" });
  const [n1, n2, n3] = [c.node(1), c.node(2), c.node(3)];
  await waitFor(
    "both replicas acknowledging",
    async () => (await semiSyncStatus(c, n1, "Rpl_semi_sync_master_clients")) === "2",
  );
  for (const n of [n2, n3]) await c.sql(n, "STOP SLAVE IO_THREAD");
  await waitFor(
    "no replica connected",
    async () => (await semiSyncStatus(c, n1, "Rpl_semi_sync_master_clients")) === "0",
  );
  await servingPrimary(c, n1);
  await using app = await c.app(n1);
  let committed = false;
  const pending = app.query("INSERT INTO app.t VALUES (5)").then(() => committed = true, () => {});
  await waitFor(
    "the commit waiting",
    async () => (await semiSyncStatus(c, n1, "Rpl_semi_sync_master_wait_sessions")) === "1",
  );
  await h.net.cut(1);
  for (const n of [n2, n3]) await c.sql(n, "START SLAVE IO_THREAD");
  // n1's passes go on while it is cut off, on their own (as ContainerPilot runs each node's): SET GLOBAL
  // read_only waits for the waiting commit, bounded by lock_wait_timeout, so each fails to fence within
  // seconds instead of hanging to its deadline (110 s).
  const stopN1 = c.keepChecking([n1], 1000);
  let primary: TestNode;
  try {
    primary = await newPrimary(c, [n2, n3], [n2, n3], 60_000);
  } finally {
    await stopN1();
  }
  // The others' passes go on meanwhile, as ContainerPilot runs them: their sessions and the new primary's lease
  // are kept (a gap of over SESSION_TTL would end them and move the role again).
  const stopOthers = c.keepChecking([n2, n3], 3000);
  try {
    const started = Date.now();
    const cutPass = await c.run(n1, ["health"]);
    assert(cutPass.stderr.includes("Lock wait timeout exceeded"), cutPass.stderr);
    assert(Date.now() - started < 30_000, "a pass of the cut node hung");
    assertEquals(
      await semiSyncStatus(c, n1, "Rpl_semi_sync_master_wait_sessions"),
      "1",
      "the commit still waits",
    );
  } finally {
    await stopOthers();
  }

  await h.net.heal(1);
  const line = await passUntil(c, n1, [n2, n3], "never acknowledged");
  assert(line.includes("killed mysqld"), line);
  await waitFor("n1's mysqld killed", () => Promise.resolve(n1.mysqld!.exited));
  await pending;
  assertEquals(committed, false);
  await c.startMysqld(n1); // as ContainerPilot's `mysql` job does when mysqld exits
  assert((await Deno.readTextFile(`${n1.dir}/mysqld.log`)).includes("Successfully truncated binlog file"));
  await converge(c, [n1, n2, n3], async () => (await source(c, n1)) === primary.address);
  assertEquals(errantDirs(n1), [], "rebuilt although the tail was never acknowledged");
  await using onPrimary = await c.app(primary);
  await onPrimary.query("INSERT INTO app.t VALUES (6)");
  await waitFor("row 6 on n1", async () => (await ids(c, n1)).includes(6));
  assertEquals(await ids(c, n1), [1, 2, 3, 6]);
  assertEquals((await c.run(n1, ["health"])).code, 0);
});
