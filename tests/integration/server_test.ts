/**
 * The per-server operator (src/mysql/server.ts) against real MariaDB servers: what the hooks read and run on a
 * server, through `ServerOperator`, and the fake's scenario (tests/unit/fakes/server_contract.ts) on the real
 * thing.
 */
import { assert, assertEquals, assertRejects } from "../unit/assert.ts";
import { type Config, loadConfig } from "../../src/config.ts";
import { MysqlClient, MysqlUnavailableError } from "../../src/mysql/client.ts";
import type { SourceSpec } from "../../src/mysql/flavour.ts";
import { openLocalServer, openPeerServer, ServerOperator } from "../../src/mysql/server.ts";
import { serverContract } from "../unit/fakes/server_contract.ts";
import { Harness, type MariadbNode, waitFor } from "./harness/mod.ts";

async function local(node: MariadbNode): Promise<ServerOperator> {
  const db = await MysqlClient.connect({ socketPath: node.socket, user: "root", connectTimeoutMs: 2000 });
  return new ServerOperator(db, "mariadb");
}

function sourceOf(node: MariadbNode): SourceSpec {
  return {
    host: node.address,
    port: node.port,
    user: node.repl.user,
    password: node.repl.password,
    connectRetry: 1,
    heartbeatPeriod: 1,
  };
}

/** A configuration whose local server is `node`, with the replication account {@link addReplAccount} makes. */
function configFor(node: MariadbNode): Config {
  return loadConfig((n) =>
    ({
      NODE_NAME: node.name,
      MYSQL_SOCKET: node.socket,
      MYSQL_DATADIR: node.dataDir,
      MYSQL_REPL_USER: "probe",
      MYSQL_REPL_PASSWORD: "probe-pw",
    })[n], { hostname: () => "unused" });
}

/** The replication account with the privileges bootstrap.ts grants it on MariaDB (the harness's has others). */
async function addReplAccount(node: MariadbNode): Promise<void> {
  await node.sql(
    "SET SESSION sql_log_bin = 0; CREATE USER 'probe'@'%' IDENTIFIED BY 'probe-pw'; " +
      "GRANT REPLICATION SLAVE, SLAVE MONITOR ON *.* TO 'probe'@'%'",
  );
}

Deno.test("ServerOperator passes the fake's scenario on real MariaDB", async () => {
  await using h = await Harness.create();
  const [primary, replica] = await Promise.all([h.startNode(1), h.startNode(2, { readOnly: true })]);
  await using server = await local(replica);
  await serverContract(server, sourceOf(primary));
});

Deno.test("ServerOperator.status() reads read_only, GTIDs, replication and whether it started this run", async () => {
  await using h = await Harness.create();
  const [primary, replica] = await Promise.all([h.startNode(1), h.startNode(2, { readOnly: true })]);
  await using p = await local(primary);
  await using r = await local(replica);

  const fresh = await r.status();
  assertEquals(fresh, {
    readOnly: true,
    gtid: { executed: "", currentPos: "", slavePos: "", binlogPos: "" },
    hasTransactions: false,
    replicationStartedThisRun: false,
  });

  await p.setReadOnly(false);
  await p.run([
    "CREATE DATABASE app",
    "CREATE TABLE app.t (id INT PRIMARY KEY)",
    "INSERT INTO app.t VALUES (1)",
  ]);
  const written = await p.status();
  assertEquals([written.readOnly, written.hasTransactions, written.replica], [false, true, undefined]);
  assertEquals(written.gtid.executed, `0-${primary.serverId}-3`);
  assertEquals(written.gtid.binlogPos, `0-${primary.serverId}-3`);
  assertEquals(await p.gtidState(), written.gtid);
  assert(/^mysql-bin\.\d{6}$/.test((await p.binlogFile()) ?? ""), `binlog file ${await p.binlogFile()}`);

  await r.changeSource(sourceOf(primary));
  await r.startReplica();
  assert(await r.waitForGtids(written.gtid.binlogPos!, 10), "the replica did not apply the primary's GTIDs");
  const following = await r.status();
  assertEquals(following.gtid.executed, written.gtid.executed);
  assertEquals(following.replicationStartedThisRun, true);
  const rs = following.replica!;
  assertEquals([rs.sourceHost, rs.sourcePort, rs.sqlRunning], [primary.address, primary.port, true]);
  await waitFor("the I/O thread to run", async () => (await r.replicaStatus())?.ioRunning === "yes");
  assertEquals((await r.replicaStatus())?.retrievedGtids, written.gtid.binlogPos);
});

Deno.test("ServerOperator.waitForGtids() is false for GTIDs it lacks after its timeout, and aborts on its signal", async () => {
  await using h = await Harness.create();
  const node = await h.startNode(1);
  await using server = await local(node);
  assert(await server.waitForGtids("", 1), "an empty set is always reached");
  const t0 = performance.now();
  assertEquals(await server.waitForGtids("0-99-1000", 1), false);
  const waited = performance.now() - t0;
  assert(waited >= 900, `gave up after ${waited} ms, before its 1 s timeout`);

  await using other = await local(node);
  const t1 = performance.now();
  await assertRejects(
    () => other.waitForGtids("0-99-1000", 30, { signal: AbortSignal.timeout(300) }),
    MysqlUnavailableError,
    "deadline",
  );
  const aborted = performance.now() - t1;
  assert(aborted < 5000, `the abort took ${aborted} ms`);
});

Deno.test("ServerOperator.startReplicationAfter() and setSemiSyncSource() set what a restored primary needs", async () => {
  await using h = await Harness.create();
  const node = await h.startNode(1);
  await using server = await local(node);
  await server.startReplicationAfter("0-7-42", "0-5-10,0-7-42");
  const gtid = await server.gtidState();
  assertEquals([gtid.slavePos, gtid.currentPos, gtid.executed, gtid.binlogPos], [
    "0-7-42",
    "0-7-42",
    "0-5-10,0-7-42",
    "0-7-42",
  ]);
  await server.setSemiSyncSource(true);
  assertEquals(await node.sql("SELECT @@rpl_semi_sync_master_enabled, @@rpl_semi_sync_master_wait_point"), [[
    "1",
    "AFTER_SYNC",
  ]]);
  await server.setSemiSyncSource(false);
  assertEquals(await node.sql("SELECT @@rpl_semi_sync_master_enabled"), [["0"]]);
});

Deno.test("openPeerServer() asks a peer's flavour over TCP as the replication account; openLocalServer() uses the socket", async () => {
  await using h = await Harness.create();
  const [n1, n2] = await Promise.all([h.startNode(1), h.startNode(2)]);
  await addReplAccount(n2);
  const config = configFor(n1);
  await using peer = await openPeerServer(config, n2, 1500);
  assertEquals(peer.flavour, "mariadb");
  assertEquals((await peer.version()).text, (await n2.sql("SELECT VERSION()"))[0][0]);
  assertEquals(await peer.readOnly(), false);
  assertEquals((await peer.gtidState()).executed, "");
  assertEquals(await peer.replicaStatus(), undefined);
  await using known = await openPeerServer(config, n2, 1500, { flavour: "mariadb" });
  assertEquals(await known.readOnly(), false);

  await using own = await openLocalServer(config, "mariadb");
  assertEquals(own.where, n1.socket);
  assertEquals(await own.readOnly(), false);
  await own.close();
  await assertRejects(() => own.readOnly(), MysqlUnavailableError);

  await assertRejects(
    () => openPeerServer(config, n2, 1500, { signal: AbortSignal.abort() }),
    MysqlUnavailableError,
    "deadline",
  );
});

Deno.test("ServerOperator.shutdown() stops mysqld cleanly and never throws", async () => {
  await using h = await Harness.create();
  const node = await h.startNode(1);
  const server = await local(node);
  await server.shutdown();
  await waitFor("mariadbd to exit after SHUTDOWN", () => Promise.resolve(!node.running), {
    timeoutMs: 20_000,
  });
  await server.shutdown(); // closed already: still no error
});
