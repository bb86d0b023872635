import { assert, assertEquals, assertThrows } from "./assert.ts";
import {
  flavourFromBinaryVersion,
  parseServerVersion,
  replicationStartedThisRun,
  sqlFor,
  type Statement,
  UnsupportedServerError,
} from "../../src/mysql/flavour.ts";

const source = {
  host: "10.0.0.2",
  port: 3306,
  user: "repl",
  password: "pw'x",
  connectRetry: 1,
  heartbeatPeriod: 1,
};

Deno.test("parseServerVersion() recognises MariaDB, MySQL and Percona version strings", () => {
  assertEquals(parseServerVersion("10.11.19-MariaDB-0+deb12u1"), {
    flavour: "mariadb",
    major: 10,
    minor: 11,
    patch: 19,
    text: "10.11.19-MariaDB-0+deb12u1",
  });
  assertEquals(parseServerVersion("11.4.5-MariaDB-ubu2404-log").flavour, "mariadb");
  assertEquals(parseServerVersion("8.4.3").flavour, "mysql");
  assertEquals(parseServerVersion("8.4.3-3", "Percona Server (GPL), Release 3").flavour, "mysql");
});

Deno.test("parseServerVersion() refuses servers too old to manage", () => {
  assertThrows(
    () => parseServerVersion("10.6.18-MariaDB"),
    UnsupportedServerError,
    "10.11 or later is required",
  );
  assertThrows(() => parseServerVersion("5.7.44-log"), UnsupportedServerError, "too old");
  assertThrows(() => parseServerVersion("8.0.22"), UnsupportedServerError, "too old");
  assertThrows(() => parseServerVersion("banana"), UnsupportedServerError, "current value is 'banana'");
});

Deno.test("flavourFromBinaryVersion() reads mysqld --version output", () => {
  assertEquals(
    flavourFromBinaryVersion("mariadbd  Ver 10.11.19-MariaDB-0+deb12u1 for debian-linux-gnu on x86_64"),
    "mariadb",
  );
  assertEquals(
    flavourFromBinaryVersion(
      "/usr/sbin/mysqld  Ver 8.4.3-3 for Linux on x86_64 (Percona Server (GPL), Release 3)",
    ),
    "mysql",
  );
  assertEquals(
    flavourFromBinaryVersion(
      "/usr/sbin/mysqld  Ver 8.4.3 for Linux on x86_64 (MySQL Community Server - GPL)",
    ),
    "mysql",
  );
  assertEquals(flavourFromBinaryVersion("command not found"), undefined);
});

Deno.test("sqlFor('mysql').changeSource() uses CHANGE REPLICATION SOURCE with GTID auto-positioning", () => {
  const s = sqlFor("mysql").changeSource(source);
  assertEquals(
    s.sql,
    "CHANGE REPLICATION SOURCE TO SOURCE_HOST=?, SOURCE_PORT=?, SOURCE_USER=?, SOURCE_PASSWORD=?, " +
      "SOURCE_AUTO_POSITION=1, SOURCE_CONNECT_RETRY=?, SOURCE_HEARTBEAT_PERIOD=?, GET_SOURCE_PUBLIC_KEY=1",
  );
  assertEquals(s.values, ["10.0.0.2", 3306, "repl", "pw'x", 1, 1]);
  assert(!s.sql.includes("pw'x"), "the password travels as a value, never in the SQL text");
});

Deno.test("sqlFor('mariadb').changeSource() uses CHANGE MASTER with MASTER_USE_GTID=slave_pos", () => {
  const s = sqlFor("mariadb").changeSource(source);
  assertEquals(
    s.sql,
    "CHANGE MASTER TO MASTER_HOST=?, MASTER_PORT=?, MASTER_USER=?, MASTER_PASSWORD=?, " +
      "MASTER_USE_GTID=slave_pos, MASTER_CONNECT_RETRY=?, MASTER_HEARTBEAT_PERIOD=?",
  );
  assert(
    sqlFor("mariadb").changeSource({ ...source, demote: true }).sql.endsWith(", MASTER_DEMOTE_TO_SLAVE=1"),
  );
  assert(!sqlFor("mysql").changeSource({ ...source, demote: true }).sql.includes("DEMOTE"));
});

Deno.test("sqlFor() uses each flavour's replica statements", () => {
  const my = sqlFor("mysql");
  const ma = sqlFor("mariadb");
  assertEquals([my.startReplica, my.stopReplica, my.resetReplicaAll, my.replicaStatus], [
    "START REPLICA",
    "STOP REPLICA",
    "RESET REPLICA ALL",
    "SHOW REPLICA STATUS",
  ]);
  assertEquals([ma.startReplica, ma.stopReplica, ma.resetReplicaAll, ma.replicaStatus], [
    "START SLAVE",
    "STOP SLAVE",
    "RESET SLAVE ALL",
    "SHOW SLAVE STATUS",
  ]);
});

Deno.test("sqlFor() counts START REPLICA with each flavour's status counter, next to the uptimes", () => {
  const my = sqlFor("mysql").replicaStartsQuery;
  const ma = sqlFor("mariadb").replicaStartsQuery;
  // MySQL 8.4 removed Com_slave_start; Com_replica_start counts START REPLICA (manual, "Server Status Variables")
  assert(my.includes("'COM_REPLICA_START'") && my.includes("FROM performance_schema.global_status"), my);
  assert(ma.includes("'COM_START_SLAVE'") && ma.includes("FROM information_schema.GLOBAL_STATUS"), ma);
  for (const q of [my, ma]) {
    for (const column of ["AS starts", "AS uptime", "AS since_flush"]) assert(q.includes(column), q);
    assert(q.includes("'UPTIME_SINCE_FLUSH_STATUS'"), q);
  }
});

Deno.test("replicationStartedThisRun() tells a fresh mysqld from a STOP REPLICA, and says so when it cannot", () => {
  assertEquals(replicationStartedThisRun({ starts: "0", uptime: "3", since_flush: "3" }), false);
  assertEquals(replicationStartedThisRun({ starts: "2", uptime: "900", since_flush: "900" }), true);
  assertEquals(replicationStartedThisRun({ starts: "1", uptime: "900", since_flush: "10" }), true);
  // FLUSH STATUS reset the counter: nobody can tell
  assertEquals(replicationStartedThisRun({ starts: "0", uptime: "900", since_flush: "10" }), undefined);
  assertEquals(replicationStartedThisRun({ starts: null, uptime: "3", since_flush: "3" }), undefined);
  assertEquals(replicationStartedThisRun(undefined), undefined);
});

Deno.test("sqlFor() waits for GTIDs with each flavour's function and reads its success value", () => {
  assertEquals(sqlFor("mysql").waitForGtids("uuid:1-5", 3), {
    sql: "SELECT WAIT_FOR_EXECUTED_GTID_SET(?, ?) AS waited",
    values: ["uuid:1-5", 3],
  });
  assertEquals(sqlFor("mariadb").waitForGtids("0-1-5", 3).sql, "SELECT MASTER_GTID_WAIT(?, ?) AS waited");
  for (const f of ["mysql", "mariadb"] as const) {
    assertEquals(sqlFor(f).waitSucceeded(0), true);
    assertEquals(sqlFor(f).waitSucceeded("0"), true);
    assertEquals(sqlFor(f).waitSucceeded(1), false);
    assertEquals(sqlFor(f).waitSucceeded(-1), false);
    assertEquals(sqlFor(f).waitSucceeded(null), false);
  }
});

Deno.test("sqlFor() turns read-only on with super_read_only on MySQL and read_only on MariaDB", () => {
  assertEquals(sqlFor("mysql").setReadOnly(true), ["SET GLOBAL super_read_only = ON"]);
  assertEquals(sqlFor("mysql").setReadOnly(false), ["SET GLOBAL read_only = OFF"]);
  // A commit waiting for a semi-sync ack would hold SET GLOBAL read_only for ever: bounded.
  assertEquals(sqlFor("mariadb").setReadOnly(true), [
    "SET SESSION lock_wait_timeout = 5",
    "SET GLOBAL read_only = ON",
  ]);
  assertEquals(sqlFor("mariadb").setReadOnly(false), ["SET GLOBAL read_only = OFF"]);
});

Deno.test("sqlFor() enables semi-sync with AFTER_SYNC under each flavour's variable names", () => {
  assertEquals(sqlFor("mysql").setSemiSyncSource(true), [
    "SET GLOBAL rpl_semi_sync_source_wait_point = 'AFTER_SYNC'",
    "SET GLOBAL rpl_semi_sync_source_enabled = ON",
  ]);
  assertEquals(sqlFor("mariadb").setSemiSyncSource(false), ["SET GLOBAL rpl_semi_sync_master_enabled = OFF"]);
});

Deno.test("sqlFor('mysql').replicaStatusFromRow() reads SHOW REPLICA STATUS columns of MySQL 8.4", () => {
  const row = {
    Source_Host: "10.0.0.2",
    Source_Port: 3306,
    Replica_IO_Running: "Connecting",
    Replica_SQL_Running: "Yes",
    Seconds_Behind_Source: null,
    Retrieved_Gtid_Set: "3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5",
    Source_Log_File: "binlog.000007",
    Last_IO_Error: "error connecting to source",
    Last_SQL_Error: "",
  };
  assertEquals(sqlFor("mysql").replicaStatusFromRow(row), {
    sourceHost: "10.0.0.2",
    sourcePort: 3306,
    ioRunning: "connecting",
    sqlRunning: true,
    lagSeconds: null,
    retrievedGtids: "3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5",
    sourceLogFile: "binlog.000007",
    lastIoError: "error connecting to source",
    lastSqlError: "",
  });
});

Deno.test("sqlFor('mariadb').replicaStatusFromRow() reads SHOW SLAVE STATUS columns of MariaDB", () => {
  const row = {
    Master_Host: "10.99.0.11",
    Master_Port: 3306,
    Slave_IO_Running: "Yes",
    Slave_SQL_Running: "No",
    Seconds_Behind_Master: "7",
    Gtid_IO_Pos: "0-1-11",
    Master_Log_File: "mysql-bin.000003",
    Last_IO_Error: "",
    Last_SQL_Error: "Error 1950",
  };
  const s = sqlFor("mariadb").replicaStatusFromRow(row);
  assertEquals([s.ioRunning, s.sqlRunning, s.lagSeconds, s.retrievedGtids, s.lastSqlError, s.sourceLogFile], [
    "yes",
    false,
    7,
    "0-1-11",
    "Error 1950",
    "mysql-bin.000003",
  ]);
});

Deno.test("sqlFor().gtidState() reads gtid_executed on MySQL and the binlog state and positions on MariaDB", () => {
  assertEquals(sqlFor("mysql").gtidState({ executed: "u:1-3,\nv:1" }), { executed: "u:1-3,\nv:1" });
  assertEquals(
    sqlFor("mariadb").gtidState({
      executed: "0-1-3,0-2-4",
      current_pos: "0-2-4",
      slave_pos: "0-1-3",
      binlog_pos: "0-2-4",
    }),
    { executed: "0-1-3,0-2-4", currentPos: "0-2-4", slavePos: "0-1-3", binlogPos: "0-2-4" },
  );
  assert(sqlFor("mysql").gtidStateQuery.includes("gtid_executed"));
  assert(sqlFor("mariadb").gtidStateQuery.includes("gtid_binlog_state"));
});

Deno.test("sqlFor().binlogStatus: SHOW BINARY LOG STATUS on MySQL 8.4 (SHOW MASTER STATUS is gone), SHOW MASTER STATUS on MariaDB", () => {
  assertEquals(sqlFor("mysql").binlogStatus, "SHOW BINARY LOG STATUS");
  assertEquals(sqlFor("mariadb").binlogStatus, "SHOW MASTER STATUS");
});

Deno.test("startReplicationAfter(): the restored position becomes the binlog's starting point and the replica's position", () => {
  assertEquals(sqlFor("mysql").startReplicationAfter("u:1-5"), [
    "RESET BINARY LOGS AND GTIDS",
    { sql: "SET GLOBAL gtid_purged = ?", values: ["u:1-5"] },
  ]);
  assertEquals(sqlFor("mariadb").startReplicationAfter("0-1-6"), [
    "RESET MASTER",
    { sql: "SET GLOBAL gtid_binlog_state = ?", values: ["0-1-6"] },
    { sql: "SET GLOBAL gtid_slave_pos = ?", values: ["0-1-6"] },
  ]);
});

Deno.test("startReplicationAfter(): on MariaDB the binlog state can carry every server's place, the position one per domain", () => {
  assertEquals(sqlFor("mariadb").startReplicationAfter("0-2-9", "0-1-5,0-2-9")[1], {
    sql: "SET GLOBAL gtid_binlog_state = ?",
    values: ["0-1-5,0-2-9"],
  });
});

const FENCE_CONDITION =
  "NOT EXISTS (SELECT 1 FROM autopilot.lease WHERE id = 1 AND expires_at > UTC_TIMESTAMP(6))";

Deno.test("lease.install on MariaDB: schema, one-row table and CREATE OR REPLACE EVENT that sets read_only", () => {
  const [schema, table, event, ...rest] = sqlFor("mariadb").lease.install;
  assertEquals(rest, []);
  assertEquals(schema, "CREATE DATABASE IF NOT EXISTS autopilot");
  assert(table.startsWith("CREATE TABLE IF NOT EXISTS autopilot.lease ("), table);
  assert(table.includes("id TINYINT UNSIGNED NOT NULL PRIMARY KEY CHECK (id = 1)"), table);
  assert(table.includes("expires_at DATETIME(6) NOT NULL") && table.includes("ENGINE=InnoDB"), table);
  assertEquals(
    event,
    "CREATE OR REPLACE EVENT autopilot.lease_fence ON SCHEDULE EVERY 1 SECOND ENABLE " +
      "COMMENT 'autopilot: read-only once the lease in autopilot.lease has lapsed' DO BEGIN " +
      `IF @@GLOBAL.read_only = 0 AND ${FENCE_CONDITION} THEN SET GLOBAL read_only = ON; END IF; END`,
  );
  assertEquals(sqlFor("mariadb").lease.liftSuperReadOnly, undefined, "MariaDB has no super_read_only");
});

Deno.test("lease.install on MySQL 8.4: no CREATE OR REPLACE EVENT, so CREATE IF NOT EXISTS then ALTER; super_read_only", () => {
  const lease = sqlFor("mysql").lease;
  const [schema, table, create, alter, ...rest] = lease.install;
  assertEquals(rest, []);
  assertEquals([schema, table], sqlFor("mariadb").lease.install.slice(0, 2));
  const definition = "ON SCHEDULE EVERY 1 SECOND ENABLE " +
    "COMMENT 'autopilot: read-only once the lease in autopilot.lease has lapsed' DO BEGIN " +
    `IF @@GLOBAL.super_read_only = 0 AND ${FENCE_CONDITION} THEN SET GLOBAL super_read_only = ON; END IF; END`;
  assertEquals(create, `CREATE EVENT IF NOT EXISTS autopilot.lease_fence ${definition}`);
  assertEquals(alter, `ALTER EVENT autopilot.lease_fence ${definition}`);
  assertEquals(lease.liftSuperReadOnly, "SET GLOBAL super_read_only = OFF");
  assertEquals(lease.restoreSuperReadOnly, "SET GLOBAL super_read_only = ON");
});

Deno.test("lease.extend/clear/state: server time in UTC, microseconds as a placeholder, the binlog off and back", () => {
  for (const flavour of ["mysql", "mariadb"] as const) {
    const lease = sqlFor(flavour).lease;
    assertEquals(lease.extend(10_000), {
      sql:
        "REPLACE INTO autopilot.lease (id, expires_at) VALUES (1, UTC_TIMESTAMP(6) + INTERVAL ? MICROSECOND)",
      values: [10_000_000],
    });
    assertEquals(lease.extend(1.2345).values, [1235]);
    assertEquals(lease.extend(-5).values, [0]);
    assertEquals(lease.clear, "DELETE FROM autopilot.lease");
    assertEquals(
      lease.state,
      "SELECT TIMESTAMPDIFF(MICROSECOND, UTC_TIMESTAMP(6), expires_at) AS remaining_us FROM autopilot.lease WHERE id = 1",
    );
    assertEquals(
      lease.binlogOff,
      "SET @autopilot_sql_log_bin = @@SESSION.sql_log_bin, SESSION sql_log_bin = 0",
    );
    assertEquals(lease.binlogRestore, "SET SESSION sql_log_bin = @autopilot_sql_log_bin");
  }
});

const tlsFiles = { ca: "/tls/ca.pem", cert: "/tls/n1.pem", key: "/tls/n1-key.pem" };

/** Both dialects bind `source` and then the TLS files, one value per placeholder, in the same order. */
function assertTlsValues(s: Statement): void {
  assertEquals(s.values, [
    "10.0.0.2",
    3306,
    "repl",
    "pw'x",
    1,
    1,
    "/tls/ca.pem",
    "/tls/n1.pem",
    "/tls/n1-key.pem",
  ]);
  assertEquals(s.sql.split("?").length - 1, s.values.length);
}

Deno.test("changeSource() with TLS: MySQL 8.4's SOURCE_SSL options, the source's certificate verified", () => {
  // MySQL 8.4 manual, CHANGE REPLICATION SOURCE TO: SOURCE_SSL = {0|1}, SOURCE_SSL_CA = 'ca_file_name',
  // SOURCE_SSL_CERT = 'cert_file_name', SOURCE_SSL_KEY = 'key_file_name', SOURCE_SSL_VERIFY_SERVER_CERT = {0|1}.
  const s = sqlFor("mysql").changeSource({ ...source, tls: tlsFiles });
  assertEquals(
    s.sql,
    "CHANGE REPLICATION SOURCE TO SOURCE_HOST=?, SOURCE_PORT=?, SOURCE_USER=?, SOURCE_PASSWORD=?, " +
      "SOURCE_AUTO_POSITION=1, SOURCE_CONNECT_RETRY=?, SOURCE_HEARTBEAT_PERIOD=?, GET_SOURCE_PUBLIC_KEY=1, " +
      "SOURCE_SSL=1, SOURCE_SSL_CA=?, SOURCE_SSL_CERT=?, SOURCE_SSL_KEY=?, SOURCE_SSL_VERIFY_SERVER_CERT=1",
  );
  assertTlsValues(s);
});

Deno.test("changeSource() with TLS: MariaDB's MASTER_SSL options, the source's certificate verified", () => {
  const s = sqlFor("mariadb").changeSource({ ...source, tls: tlsFiles, demote: true });
  assertEquals(
    s.sql,
    "CHANGE MASTER TO MASTER_HOST=?, MASTER_PORT=?, MASTER_USER=?, MASTER_PASSWORD=?, " +
      "MASTER_USE_GTID=slave_pos, MASTER_CONNECT_RETRY=?, MASTER_HEARTBEAT_PERIOD=?, " +
      "MASTER_SSL=1, MASTER_SSL_CA=?, MASTER_SSL_CERT=?, MASTER_SSL_KEY=?, MASTER_SSL_VERIFY_SERVER_CERT=1, " +
      "MASTER_DEMOTE_TO_SLAVE=1",
  );
  assertTlsValues(s);
});

Deno.test("replicaStatusFromRow() says whether the receiver uses TLS, and a failed handshake in words", () => {
  const ma = sqlFor("mariadb").replicaStatusFromRow({
    Master_Host: "10.0.0.2",
    Master_Port: "3306",
    Slave_IO_Running: "Connecting",
    Slave_SQL_Running: "Yes",
    Master_SSL_Allowed: "Yes",
    Master_SSL_Verify_Server_Cert: "Yes",
    Last_IO_Error:
      "error connecting to master 'repl@10.0.0.2:3306' - retry-time: 1  maximum-retries: 100000  " +
      "message: SSL connection error: error:00000000:lib(0)::reason(0)",
  });
  assertEquals(ma.tls, "verified");
  assert(ma.lastIoError.startsWith("TLS handshake with the source failed"), ma.lastIoError);
  assert(ma.lastIoError.endsWith("reason(0)"), "the server's own words are kept");
  const my = sqlFor("mysql").replicaStatusFromRow({
    Source_SSL_Allowed: "Yes",
    Source_SSL_Verify_Server_Cert: "No",
    Last_IO_Error: "",
  });
  assertEquals([my.tls, my.lastIoError], ["unverified", ""]);
  const plain = sqlFor("mariadb").replicaStatusFromRow({
    Master_SSL_Allowed: "No",
    Last_IO_Error: "Access denied",
  });
  assertEquals([plain.tls, plain.lastIoError], [undefined, "Access denied"]);
});
