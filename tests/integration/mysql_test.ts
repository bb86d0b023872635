/**
 * The MySQL layer against real MariaDB servers: our client, our flavour SQL, our GTID values and our my.cnf.
 */
import { assert, assertEquals, assertRejects } from "../unit/assert.ts";
import { loadConfig, Secret } from "../../src/config.ts";
import { MysqlClient, MysqlQueryError, MysqlUnavailableError } from "../../src/mysql/client.ts";
import { sqlFor } from "../../src/mysql/flavour.ts";
import { MariadbGtidSet } from "../../src/mysql/gtid.ts";
import { renderMyCnf, serverIdFor } from "../../src/mysql/mycnf.ts";
import {
  freePort,
  Harness,
  type MariadbNode,
  mariadbTemplate,
  NODE_PORT,
  runOk,
  waitFor,
} from "./harness/mod.ts";

const maria = sqlFor("mariadb");

function local(node: MariadbNode): Promise<MysqlClient> {
  return MysqlClient.connect({ socketPath: node.socket, user: "root", connectTimeoutMs: 2000 });
}

function peer(node: MariadbNode, host = node.address): Promise<MysqlClient> {
  return MysqlClient.connect({
    host,
    port: node.port,
    user: node.admin.user,
    password: new Secret(node.admin.password),
    connectTimeoutMs: 1500,
  });
}

Deno.test("MysqlClient.version() detects MariaDB over the local unix socket", async () => {
  await using h = await Harness.create();
  const node = await h.startNode(1);
  await using db = await local(node);
  const v = await db.version();
  assertEquals(v.flavour, "mariadb");
  assert(v.major > 10 || (v.major === 10 && v.minor >= 11), v.text);
});

Deno.test("sqlFor('mariadb') sets up GTID replication between namespaces that MASTER_GTID_WAIT confirms", async () => {
  await using h = await Harness.create({ nodes: 2 });
  const [primary, replica] = [await h.startNode(1), await h.startNode(2, { readOnly: true })];
  await using p = await peer(primary);
  await using r = await local(replica);
  await r.run([
    maria.changeSource({
      host: primary.address,
      port: NODE_PORT,
      user: primary.repl.user,
      password: primary.repl.password,
      connectRetry: 1,
      heartbeatPeriod: 1,
    }),
    maria.startReplica,
  ]);
  await p.run([
    "CREATE DATABASE app",
    "CREATE TABLE app.t (id INT PRIMARY KEY)",
    "INSERT INTO app.t VALUES (1), (2)",
  ]);
  const [pState] = await p.query(maria.gtidStateQuery);
  const primaryGtids = maria.gtidState(pState);
  const [waited] = await r.query(maria.waitForGtids(primaryGtids.binlogPos!, 10));
  assert(maria.waitSucceeded(waited.waited), `MASTER_GTID_WAIT returned ${waited.waited}`);

  const status = maria.replicaStatusFromRow((await r.query(maria.replicaStatus))[0]);
  assertEquals([status.ioRunning, status.sqlRunning, status.sourceHost], ["yes", true, primary.address]);
  assertEquals(status.lagSeconds, 0);
  const rows = await r.query("SELECT COUNT(*) AS n FROM app.t");
  assertEquals(Number(rows[0].n), 2);

  const replicaGtids = maria.gtidState((await r.query(maria.gtidStateQuery))[0]);
  const ps = MariadbGtidSet.parse(primaryGtids.executed);
  const rs = MariadbGtidSet.parse(replicaGtids.executed);
  assertEquals(rs.compare(ps), "equal", `${rs} vs ${ps}`);
  assertEquals(ps.toString(), `0-${primary.serverId}-3`);
});

Deno.test("sqlFor('mariadb').setReadOnly() refuses application writes with error 1290", async () => {
  await using h = await Harness.create();
  const node = await h.startNode(1);
  await using root = await local(node);
  await root.run([
    "CREATE DATABASE app",
    "CREATE TABLE app.t (id INT PRIMARY KEY)",
    "CREATE USER 'app'@'%' IDENTIFIED BY 'apppw'",
    "GRANT SELECT, INSERT, UPDATE, DELETE ON app.* TO 'app'@'%'",
    ...maria.setReadOnly(true),
  ]);
  await using app = await MysqlClient.connect({
    host: "127.0.0.1",
    port: node.port,
    user: "app",
    password: new Secret("apppw"),
    connectTimeoutMs: 2000,
  });
  const e = await assertRejects(() => app.query("INSERT INTO app.t VALUES (1)"), MysqlQueryError);
  assertEquals(e.errno, 1290);
  await root.run(maria.setReadOnly(false));
  await app.query("INSERT INTO app.t VALUES (1)");
  assertEquals(Number((await root.query(maria.readOnlyQuery))[0].read_only), 0);
});

Deno.test("MysqlClient.connect() to a cut node fails within its connect timeout, naming no secret", async () => {
  await using h = await Harness.create({ nodes: 1 });
  const node = await h.startNode(1);
  await (await peer(node)).close(); // reachable before the cut
  await h.net.cut(1);
  const t0 = performance.now();
  const e = await assertRejects(
    () => peer(node),
    MysqlUnavailableError,
    `Cannot reach MySQL at ${node.address}:3306`,
  );
  const elapsed = performance.now() - t0;
  assert(elapsed >= 1000 && elapsed < 6000, `gave up after ${elapsed} ms`);
  assert(!e.message.includes(node.admin.password));
  await h.net.heal(1);
  await waitFor("node reachable again", async () => {
    await (await peer(node)).close();
    return true;
  });
});

Deno.test("MysqlClient.close() returns within about a second when the link was cut under an open connection", async () => {
  await using h = await Harness.create({ nodes: 1 });
  const node = await h.startNode(1);
  const db = await peer(node);
  await db.query("SELECT 1");
  await h.net.cut(1);
  // A statement is under way when the link goes: mysql2 would queue its goodbye behind it, forever, and
  // never settle the statement itself.
  let settled = false;
  const pending = db.query("SELECT 1").catch((e) => e).finally(() => settled = true);
  const t0 = performance.now();
  await db.close();
  const took = performance.now() - t0;
  assert(took < 2500, `close() took ${took} ms on a cut link`);
  await new Promise((r) => setTimeout(r, 50));
  assert(settled, "the statement in flight was left pending");
  assert((await pending) instanceof MysqlUnavailableError);
  await h.net.heal(1);
});

Deno.test("MysqlClient.query() gives up after its timeout when the link was cut under an open connection", async () => {
  await using h = await Harness.create({ nodes: 1 });
  const node = await h.startNode(1);
  await using db = await peer(node);
  await h.net.cut(1);
  const t0 = performance.now();
  await assertRejects(() => db.query("SELECT 1", { timeoutMs: 1000 }), MysqlUnavailableError);
  assert(performance.now() - t0 < 3000);
  await h.net.heal(1);
});

Deno.test("MysqlClient.connect() reports a refused port and a missing socket as unavailable", async () => {
  await assertRejects(
    () => MysqlClient.connect({ host: "127.0.0.1", port: freePort(), user: "x", connectTimeoutMs: 1000 }),
    MysqlUnavailableError,
    "connection refused",
  );
  await assertRejects(
    () =>
      MysqlClient.connect({ socketPath: "/nonexistent/mysqld.sock", user: "root", connectTimeoutMs: 1000 }),
    MysqlUnavailableError,
    "/nonexistent/mysqld.sock",
  );
});

Deno.test("MysqlClient.query() reports a refused statement without its SQL text or values", async () => {
  await using h = await Harness.create();
  const node = await h.startNode(1);
  await using db = await local(node);
  const e = await assertRejects(
    () => db.query({ sql: "CHANGE MASTER TO MASTER_PASSWORD=?, BOGUS=1", values: ["very-secret"] }),
    MysqlQueryError,
  );
  assertEquals(e.errno, 1064);
  assert(!e.message.includes("very-secret"), e.message);
  assert(!JSON.stringify(e).includes("very-secret"));
});

Deno.test("MysqlClient.query() gives up when the caller's signal aborts", async () => {
  await using h = await Harness.create();
  const node = await h.startNode(1);
  await using db = await local(node);
  await assertRejects(
    () => db.query("SELECT SLEEP(5)", { signal: AbortSignal.timeout(200) }),
    MysqlUnavailableError,
    "deadline",
  );
});

Deno.test("MysqlClient.query() with a signal aborted before it starts sends nothing to the server", async () => {
  // Before, the statement was sent anyway and its outcome went nowhere: a refused one became an unhandled
  // rejection that ended the process (it cut 'autopilot backup verify' short when a signal came mid-connect).
  await using h = await Harness.create();
  const node = await h.startNode(1);
  await using db = await local(node);
  await db.run(["CREATE DATABASE app", "CREATE TABLE app.t (id INT PRIMARY KEY)"]);
  const gone = new AbortController();
  gone.abort();
  await assertRejects(
    () => db.query("INSERT INTO app.t VALUES (1)", { signal: gone.signal }),
    MysqlUnavailableError,
    "deadline",
  );
  await assertRejects(
    () => db.query("SELECT * FROM app.no_such_table", { signal: gone.signal }),
    MysqlUnavailableError,
    "deadline",
  );
  await assertRejects(
    () => MysqlClient.connect({ socketPath: node.socket, user: "root", connectTimeoutMs: 2000 }, gone.signal),
    MysqlUnavailableError,
    "deadline",
  );
  // The connection still works, and the INSERT never ran.
  assertEquals(await db.query("SELECT COUNT(*) AS n FROM app.t"), [{ n: "0" }]);
});

Deno.test("renderMyCnf() output is accepted by a real mariadbd, which starts read-only with our server id", async () => {
  await using h = await Harness.create();
  const template = await mariadbTemplate();
  const dir = `${h.dir}/rendered`;
  await Deno.mkdir(`${dir}/run`, { recursive: true });
  await runOk("cp", ["-a", template.dataDir, `${dir}/data`]);
  const port = freePort();
  const config = loadConfig((n) =>
    ({
      MYSQL_REPL_PASSWORD: "x",
      NODE_NAME: "render-test",
      MYSQL_DATADIR: `${dir}/data`,
      MYSQL_SOCKET: `${dir}/run/mysqld.sock`,
      MYSQL_PORT: String(port),
      MYSQL_OS_USER: "root",
      INNODB_BUFFER_POOL_SIZE: "64M",
      SEMI_SYNC: "on",
    })[n], { hostname: () => "unused" });
  const cnf = `${dir}/my.cnf`;
  await Deno.writeTextFile(
    cnf,
    renderMyCnf(config, {
      flavour: "mariadb",
      reportHost: "127.0.0.1",
      bufferPoolBytes: 64 * 2 ** 20,
      bindAddress: "127.0.0.1",
    }),
  );
  await h.group.spawn({
    name: "mariadbd rendered",
    program: "/usr/sbin/mariadbd",
    args: [`--defaults-file=${cnf}`, `--log-error=${dir}/error.log`],
    logFile: `${dir}/stdout.log`,
  });
  const db = await waitFor(
    "mariadbd with the rendered my.cnf",
    () => MysqlClient.connect({ socketPath: config.mysql.socket, user: "root", connectTimeoutMs: 500 }),
    { timeoutMs: 20_000 },
  );
  try {
    const [row] = await db.query(
      "SELECT @@server_id AS id, @@read_only AS ro, @@gtid_strict_mode AS strict, @@log_bin AS bin, " +
        "@@slave_ddl_exec_mode AS ddl, @@report_host AS host, @@rpl_semi_sync_slave_enabled AS semi, @@rpl_semi_sync_master_wait_point AS wp",
    );
    assertEquals(
      {
        ...row,
        id: Number(row.id),
        ro: Number(row.ro),
        strict: Number(row.strict),
        bin: Number(row.bin),
        semi: Number(row.semi),
      },
      {
        id: serverIdFor("render-test"),
        ro: 1,
        strict: 1,
        bin: 1,
        ddl: "STRICT",
        host: "127.0.0.1",
        semi: 1,
        wp: "AFTER_SYNC",
      },
    );
  } finally {
    await db.close();
  }
});
