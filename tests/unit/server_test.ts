/**
 * ServerOperator (src/mysql/server.ts) over a recording connection: the statements it sends in each flavour
 * (MySQL 8.4 cannot run on these machines; tests/integration/server_test.ts runs MariaDB) and how it reads the
 * rows that come back.
 */
import { assert, assertEquals, assertRejects } from "./assert.ts";
import { MysqlQueryError, type Row } from "../../src/mysql/client.ts";
import { type Flavour, parseServerVersion, type Statement } from "../../src/mysql/flavour.ts";
import { ServerOperator, type SqlConnection } from "../../src/mysql/server.ts";
import { mysqlFactsOf } from "../../src/local.ts";
import { FakeServer } from "./fakes/fake_server.ts";

/** A connection that records what it is sent and answers from `rows` (SQL text prefix to rows). */
class RecordingConnection implements SqlConnection {
  readonly where = "recorded";
  readonly sent: { sql: string; values: readonly (string | number)[]; signal?: AbortSignal }[] = [];
  versions = 0;
  closed = false;
  constructor(readonly rows: Record<string, Row[]> = {}, readonly fail?: Error) {}

  query(statement: string | Statement, options: { signal?: AbortSignal } = {}): Promise<Row[]> {
    const { sql, values } = typeof statement === "string" ? { sql: statement, values: [] } : statement;
    this.sent.push({ sql, values, ...(options.signal ? { signal: options.signal } : {}) });
    if (this.fail) return Promise.reject(this.fail);
    const key = Object.keys(this.rows).find((k) => sql.startsWith(k));
    return Promise.resolve(key === undefined ? [] : this.rows[key]);
  }

  version() {
    this.versions++;
    return Promise.resolve(parseServerVersion("10.11.19-MariaDB-0+deb12u1"));
  }

  close(): Promise<void> {
    this.closed = true;
    return Promise.resolve();
  }

  /** What was sent: SQL text, and values after a ` <- ` when there are any. */
  get log(): string[] {
    return this.sent.map((s) => s.values.length ? `${s.sql} <- ${s.values.join(", ")}` : s.sql);
  }
}

const source = {
  host: "10.0.0.2",
  port: 3306,
  user: "repl",
  password: "pw",
  connectRetry: 1,
  heartbeatPeriod: 2,
};

/** Every operation that writes, in one order, for each flavour. */
async function operate(flavour: Flavour): Promise<string[]> {
  const db = new RecordingConnection();
  const server = new ServerOperator(db, flavour);
  await server.setReadOnly(true);
  await server.setReadOnly(false);
  await server.setSemiSyncSource(true);
  await server.setSemiSyncSource(false);
  await server.changeSource({ ...source, demote: true });
  await server.startReplica();
  await server.stopReplica();
  await server.resetReplicaAll();
  await server.startReplicationAfter("G", "B");
  await server.waitForGtids("G", 5);
  await server.binlogFile();
  return db.log;
}

Deno.test("ServerOperator sends MySQL 8.4's statements", async () => {
  assertEquals(await operate("mysql"), [
    "SET GLOBAL super_read_only = ON",
    "SET GLOBAL read_only = OFF",
    "SET GLOBAL rpl_semi_sync_source_wait_point = 'AFTER_SYNC'",
    "SET GLOBAL rpl_semi_sync_source_enabled = ON",
    "SET GLOBAL rpl_semi_sync_source_enabled = OFF",
    "CHANGE REPLICATION SOURCE TO SOURCE_HOST=?, SOURCE_PORT=?, SOURCE_USER=?, SOURCE_PASSWORD=?, " +
    "SOURCE_AUTO_POSITION=1, SOURCE_CONNECT_RETRY=?, SOURCE_HEARTBEAT_PERIOD=?, GET_SOURCE_PUBLIC_KEY=1 " +
    "<- 10.0.0.2, 3306, repl, pw, 1, 2",
    "START REPLICA",
    "STOP REPLICA",
    "STOP REPLICA",
    "RESET REPLICA ALL",
    "RESET BINARY LOGS AND GTIDS",
    "SET GLOBAL gtid_purged = ? <- G",
    "SELECT WAIT_FOR_EXECUTED_GTID_SET(?, ?) AS waited <- G, 5",
    "SHOW BINARY LOG STATUS",
  ]);
});

Deno.test("ServerOperator sends MariaDB's statements", async () => {
  assertEquals(await operate("mariadb"), [
    "SET SESSION lock_wait_timeout = 5",
    "SET GLOBAL read_only = ON",
    "SET GLOBAL read_only = OFF",
    "SET GLOBAL rpl_semi_sync_master_wait_point = 'AFTER_SYNC'",
    "SET GLOBAL rpl_semi_sync_master_enabled = ON",
    "SET GLOBAL rpl_semi_sync_master_enabled = OFF",
    "CHANGE MASTER TO MASTER_HOST=?, MASTER_PORT=?, MASTER_USER=?, MASTER_PASSWORD=?, " +
    "MASTER_USE_GTID=slave_pos, MASTER_CONNECT_RETRY=?, MASTER_HEARTBEAT_PERIOD=?, MASTER_DEMOTE_TO_SLAVE=1 " +
    "<- 10.0.0.2, 3306, repl, pw, 1, 2",
    "START SLAVE",
    "STOP SLAVE",
    "STOP SLAVE",
    "RESET SLAVE ALL",
    "RESET MASTER",
    "SET GLOBAL gtid_binlog_state = ? <- B",
    "SET GLOBAL gtid_slave_pos = ? <- G",
    "SELECT MASTER_GTID_WAIT(?, ?) AS waited <- G, 5",
    "SHOW MASTER STATUS",
  ]);
});

Deno.test("ServerOperator.status() on MySQL reads read_only, SHOW REPLICA STATUS, gtid_executed and Com_replica_start", async () => {
  const db = new RecordingConnection({
    "SELECT @@GLOBAL.read_only": [{ read_only: "1", super_read_only: "1" }],
    "SHOW REPLICA STATUS": [{
      Source_Host: "10.0.0.2",
      Source_Port: "3306",
      Replica_IO_Running: "Connecting",
      Replica_SQL_Running: "Yes",
      Seconds_Behind_Source: null,
      Retrieved_Gtid_Set: "u:1-9",
      Source_Log_File: "binlog.000004",
      Last_IO_Error: "error connecting to source",
      Last_SQL_Error: "",
    }],
    "SELECT @@GLOBAL.gtid_executed": [{ executed: "u:1-7\n" }],
    "SELECT MAX(": [{ starts: "0", uptime: "50", since_flush: "50" }],
    "SELECT cluster_id FROM autopilot.cluster": [{ cluster_id: "c0ffee-1" }],
  });
  const signal = new AbortController().signal;
  const status = await new ServerOperator(db, "mysql").status({ signal });
  assertEquals(status, {
    readOnly: true,
    replica: {
      sourceHost: "10.0.0.2",
      sourcePort: 3306,
      ioRunning: "connecting",
      sqlRunning: true,
      lagSeconds: null,
      retrievedGtids: "u:1-9",
      sourceLogFile: "binlog.000004",
      lastIoError: "error connecting to source",
      lastSqlError: "",
    },
    gtid: { executed: "u:1-7" },
    hasTransactions: true,
    replicationStartedThisRun: false,
    identity: "c0ffee-1",
  });
  assertEquals(db.sent.length, 5, db.log.join("\n"));
  assert(db.log[3].includes("FROM performance_schema.global_status"), db.log[3]);
  assert(db.log[3].includes("'COM_REPLICA_START'"), db.log[3]);
  assert(db.sent.every((s) => s.signal === signal), "a statement was sent without the caller's signal");
});

Deno.test("ServerOperator.status() on MariaDB: no source, GTIDs only in gtid_current_pos, START SLAVE counted", async () => {
  const db = new RecordingConnection({
    "SELECT @@GLOBAL.read_only": [{ read_only: "0" }],
    "SELECT @@GLOBAL.gtid_binlog_state": [{
      executed: "",
      current_pos: "0-1-5",
      slave_pos: "0-1-5",
      binlog_pos: "",
    }],
    "SELECT MAX(": [{ starts: "2", uptime: "50", since_flush: "3" }],
  });
  const server = new ServerOperator(db, "mariadb");
  assertEquals(await server.status(), {
    readOnly: false,
    gtid: { executed: "", currentPos: "0-1-5", slavePos: "0-1-5", binlogPos: "" },
    hasTransactions: true,
    replicationStartedThisRun: true,
  });
  assert(db.log[1] === "SHOW SLAVE STATUS", db.log.join("\n"));
  assert(db.log[3].includes("FROM information_schema.GLOBAL_STATUS"), db.log[3]);
  assert(db.log[3].includes("'COM_START_SLAVE'"), db.log[3]);
});

Deno.test("ServerOperator.replicaStatus() is undefined without a row or without a source host", async () => {
  assertEquals(await new ServerOperator(new RecordingConnection(), "mariadb").replicaStatus(), undefined);
  const hostless = new RecordingConnection({
    "SHOW SLAVE STATUS": [{ Master_Host: "", Slave_IO_Running: "No" }],
  });
  assertEquals(await new ServerOperator(hostless, "mariadb").replicaStatus(), undefined);
});

Deno.test("ServerOperator reads each flavour's answers: a wait that timed out, the binlog file, the version once", async () => {
  for (
    const [flavour, timedOut] of [["mysql", "1"], ["mariadb", "-1"]] as const
  ) {
    const db = new RecordingConnection({
      "SELECT WAIT_FOR": [{ waited: timedOut }],
      "SELECT MASTER_GTID_WAIT": [{ waited: timedOut }],
      "SHOW": [{ File: "mysql-bin.000007", Position: "4" }],
    });
    const server = new ServerOperator(db, flavour);
    assertEquals(await server.waitForGtids("G", 1), false, flavour);
    assertEquals(await server.binlogFile(), "mysql-bin.000007");
  }
  const reached = new RecordingConnection({ "SELECT MASTER_GTID_WAIT": [{ waited: "0" }] });
  assertEquals(await new ServerOperator(reached, "mariadb").waitForGtids("G", 1), true);
  const nulled = new RecordingConnection({ "SELECT MASTER_GTID_WAIT": [{ waited: null }] });
  assertEquals(await new ServerOperator(nulled, "mariadb").waitForGtids("G", 1), false);
  assertEquals(await new ServerOperator(new RecordingConnection(), "mariadb").binlogFile(), undefined);

  const db = new RecordingConnection();
  const server = new ServerOperator(db, "mariadb");
  assertEquals((await server.version()).flavour, "mariadb");
  await server.version();
  assertEquals(db.versions, 1);
});

Deno.test("ServerOperator.run() stops at the first failure; shutdown() swallows it and closes; close() closes", async () => {
  const refused = new MysqlQueryError("recorded", "ER_X", 1290, "read-only");
  const db = new RecordingConnection({}, refused);
  const server = new ServerOperator(db, "mariadb");
  await assertRejects(() => server.run(["A", "B"]), MysqlQueryError);
  assertEquals(db.log, ["A"]);
  await server.shutdown();
  assertEquals([db.log.at(-1), db.closed], ["SHUTDOWN", true]);

  const other = new RecordingConnection();
  {
    await using _ = new ServerOperator(other, "mysql");
  }
  assertEquals(other.closed, true);
});

Deno.test("mysqlFactsOf() is the health decision's view of status(), as before", async () => {
  const replica = {
    sourceHost: "10.0.0.2",
    sourcePort: 3306,
    ioRunning: "yes" as const,
    sqlRunning: true,
    lagSeconds: 0,
    retrievedGtids: "0-1-5",
    lastIoError: "",
    lastSqlError: "",
  };
  const fake = new FakeServer("mariadb", {
    gtid: { executed: "0-1-5", currentPos: "0-1-5", slavePos: "0-1-5", binlogPos: "0-1-5" },
    replica,
    replicationStartedThisRun: true,
  });
  assertEquals(mysqlFactsOf(await fake.status()), {
    up: true,
    readOnly: true,
    replica,
    hasTransactions: true,
    executed: "0-1-5",
    replicationStartedThisRun: true,
  });
  assertEquals(
    mysqlFactsOf({ readOnly: false, gtid: { executed: "" }, hasTransactions: false }),
    { up: true, readOnly: false, hasTransactions: false, executed: "" },
  );
});

Deno.test("ServerOperator.status(): the cluster identity when the data has one; none when the table is missing or refused", async () => {
  const rows = { "SELECT @@GLOBAL.read_only": [{ read_only: "1" }] };
  const refusing = (errno: number) =>
    new (class extends RecordingConnection {
      override query(statement: string | Statement, options: { signal?: AbortSignal } = {}): Promise<Row[]> {
        const sql = typeof statement === "string" ? statement : statement.sql;
        if (sql.includes("autopilot.cluster")) {
          return Promise.reject(new MysqlQueryError("recorded", "E", errno, `refused (error ${errno})`));
        }
        return super.query(statement, options);
      }
    })(rows);
  for (const errno of [1146, 1049, 1142]) {
    const status = await new ServerOperator(refusing(errno), "mariadb").status();
    assertEquals(status.identity, undefined, `error ${errno}`);
    assertEquals(status.readOnly, true);
  }
  const found = await new ServerOperator(
    new RecordingConnection({
      ...rows,
      "SELECT cluster_id FROM autopilot.cluster": [{ cluster_id: "abc-1" }],
    }),
    "mariadb",
  ).status();
  assertEquals(found.identity, "abc-1");
  const facts = mysqlFactsOf(found);
  assertEquals(facts.up && facts.identity, "abc-1");
});
