/**
 * The SQL that differs between MySQL 8.4 (and Percona Server 8.4) and MariaDB 10.11+, kept in one place.
 *
 * Everything here is pure: functions return SQL text with `?` placeholders plus their values (mysql2's
 * `query()` escapes them on the client), or turn a result row into a flavour-neutral value. Callers never
 * build replication SQL themselves.
 *
 * MySQL references: MySQL 8.4 Reference Manual, "CHANGE REPLICATION SOURCE TO", "SHOW REPLICA STATUS",
 * "WAIT_FOR_EXECUTED_GTID_SET()", "super_read_only", "Semisynchronous Replication".
 * MariaDB references: "CHANGE MASTER TO", "SHOW REPLICA STATUS", "MASTER_GTID_WAIT", "Global Transaction ID".
 * The in-server lease (see {@link LeaseSql}): MySQL 8.4 "CREATE EVENT", "ALTER EVENT", "Event Scheduler
 * Configuration", "super_read_only"; MariaDB "CREATE EVENT", "read_only".
 *
 * @module
 */

/** The two server families autopilot supports. */
export type Flavour = "mysql" | "mariadb";

/** A server version, as `SELECT VERSION()` reports it. */
export interface ServerVersion {
  readonly flavour: Flavour;
  readonly major: number;
  readonly minor: number;
  readonly patch: number;
  /** The full text, e.g. `10.11.19-MariaDB-0+deb12u1` or `8.4.3-3`. */
  readonly text: string;
}

/** Thrown for a server this program cannot manage. */
export class UnsupportedServerError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "UnsupportedServerError";
  }
}

/**
 * Detects the flavour and version from `SELECT VERSION()`.
 *
 * @param text The value of `VERSION()`.
 * @param comment `@@version_comment`, which names Percona/MariaDB when the version text does not.
 * @returns The parsed version.
 * @throws {UnsupportedServerError} for a version string it cannot read or a version too old.
 */
export function parseServerVersion(text: string, comment = ""): ServerVersion {
  const m = /^(\d+)\.(\d+)\.(\d+)/.exec(text.trim());
  if (!m) {
    throw new UnsupportedServerError(`Cannot read the server version: current value is '${text}'`);
  }
  const [major, minor, patch] = [Number(m[1]), Number(m[2]), Number(m[3])];
  const flavour: Flavour = /mariadb/i.test(text) || /mariadb/i.test(comment) ? "mariadb" : "mysql";
  const version = { flavour, major, minor, patch, text: text.trim() };
  if (flavour === "mariadb" && (major < 10 || (major === 10 && minor < 11))) {
    throw new UnsupportedServerError(`MariaDB ${text} is too old: 10.11 or later is required`);
  }
  if (flavour === "mysql" && (major < 8 || (major === 8 && minor === 0 && patch < 23))) {
    throw new UnsupportedServerError(
      `MySQL ${text} is too old: 8.4 is supported (8.0.23 or later may work); 5.7 and earlier are not`,
    );
  }
  return Object.freeze(version);
}

/**
 * Detects the flavour of an installed server binary from its `--version` output, before it runs.
 *
 * @param output What `mysqld --version` printed, e.g. `mariadbd  Ver 10.11.19-MariaDB-0+deb12u1 for ...`.
 * @returns The flavour, or `undefined` if the output names no known server.
 */
export function flavourFromBinaryVersion(output: string): Flavour | undefined {
  if (/MariaDB/i.test(output)) return "mariadb";
  if (/\bVer\s+\d+\.\d+\.\d+/.test(output) || /MySQL|Percona/i.test(output)) return "mysql";
  return undefined;
}

/** An SQL statement with `?` placeholders and their values. */
export interface Statement {
  readonly sql: string;
  readonly values: readonly (string | number)[];
}

/** Where a replica replicates from. */
export interface SourceSpec {
  readonly host: string;
  readonly port: number;
  readonly user: string;
  readonly password: string;
  /** Seconds between reconnection attempts. */
  readonly connectRetry: number;
  /** Seconds between heartbeats from the source (a silent link is noticed after `replica_net_timeout`). */
  readonly heartbeatPeriod: number;
  /**
   * MariaDB only: the server was a primary and is being demoted, so its own binlog position becomes its
   * replication position (`MASTER_DEMOTE_TO_SLAVE=1`). MySQL needs nothing: gtid_executed already covers it.
   */
  readonly demote?: boolean;
  /**
   * Connect over TLS with these PEM files (paths on the replica), the source's certificate verified against
   * the CA and the source's address. Unset: no TLS option is sent, so the server's defaults (and what an
   * earlier CHANGE set) stay, as before TLS settings existed: MariaDB 11.4's own default is TLS with its
   * self-signed certificates, which an explicit MASTER_SSL=0 would turn off.
   */
  readonly tls?: { readonly ca: string; readonly cert: string; readonly key: string };
}

/** The per-flavour SQL. Obtain one with {@link sqlFor}. */
export interface FlavourSql {
  readonly flavour: Flavour;
  /** Point replication at a source with GTID auto-positioning. */
  changeSource(spec: SourceSpec): Statement;
  readonly startReplica: string;
  readonly stopReplica: string;
  /** Forget the replication source entirely (used on promotion). */
  readonly resetReplicaAll: string;
  readonly replicaStatus: string;
  /** This server's current binary log; the file name is the `File` column. */
  readonly binlogStatus: string;
  /** Reads this server's GTID state; the row is turned into a value by {@link FlavourSql.gtidState}. */
  readonly gtidStateQuery: string;
  gtidState(row: Record<string, unknown>): GtidState;
  /** Waits until the given GTID set is applied; the single column is 0 on success. */
  waitForGtids(gtids: string, timeoutSeconds: number): Statement;
  /** Whether the value returned by {@link FlavourSql.waitForGtids} means "reached". */
  waitSucceeded(value: unknown): boolean;
  /** Statements that turn read-only on or off (super_read_only too, on MySQL). */
  setReadOnly(on: boolean): readonly string[];
  readonly readOnlyQuery: string;
  /** Statements that make this server a semi-sync source (AFTER_SYNC) or stop it being one. */
  setSemiSyncSource(on: boolean): readonly string[];
  replicaStatusFromRow(row: Record<string, unknown>): ReplicaStatus;
  /**
   * Statements that make a freshly restored server start replicating right after `gtid`, the position the
   * backup itself recorded (the restored datadir has no binlog, and MariaDB's copied gtid_slave_pos is stale).
   */
  startReplicationAfter(gtid: string, binlogState?: string): readonly (string | Statement)[];
  /**
   * How many START REPLICA statements this run of the server has executed, as `starts`, with `uptime` and
   * `since_flush` (seconds since start, since the last FLUSH STATUS). Status counters start at 0 with mysqld,
   * so `starts` = 0 means nobody started replication since mysqld (re)started, unless FLUSH STATUS reset it.
   */
  readonly replicaStartsQuery: string;
  /** The in-server lease and the event that fences the server when it lapses (src/mysql/lease.ts). */
  readonly lease: LeaseSql;
  /**
   * MariaDB: applying archived binlogs as relay logs with the SQL thread alone (src/binlog/replay.ts); MySQL
   * replays them through `mysqlbinlog | mysql` and has none.
   */
  readonly relayReplay?: RelayReplaySql;
}

/** Where the SQL thread applies a relay log from, and the binlog file it was copied from. */
export interface RelayStart {
  /** The relay log's name (`relay-bin.000001`: the server prefixes its relay log directory). */
  readonly relayFile: string;
  /** Byte offset of the first event to apply (a GTID event). */
  readonly relayPos: number;
  /** The source's file name and the same offset (MariaDB's parallel workers need a source position). */
  readonly sourceFile: string;
  readonly sourcePos: number;
  /** A port nothing listens on: no receiver (I/O) thread is ever started. */
  readonly port: number;
}

/** The statements of a relay-log replay (MariaDB 10.11; measured in docs/DEVELOPING.md). */
export interface RelayReplaySql {
  /** Points the SQL thread at a relay log position, without GTID positioning (`MASTER_USE_GTID` would purge). */
  pointAt(start: RelayStart): Statement;
  /** Starts the SQL thread alone, to stop by itself after the event that ends at `pos` in `file`. */
  applyUntil(file: string, pos: number): Statement;
}

/** How long turning read_only on may wait for commits in progress (MariaDB's lock_wait_timeout), in seconds. */
export const READ_ONLY_WAIT_SECONDS = 5;

/** The schema that holds the lease: created on each server by autopilot, never replicated. */
export const LEASE_SCHEMA = "autopilot";

/**
 * The in-server lease: a one-row table `autopilot.lease` holding the moment (server time, UTC) until which
 * this server may stay writable, and an event `autopilot.lease_fence`, every second, that turns the server
 * read-only (super_read_only on MySQL) when it is writable and that moment has passed or the row is missing.
 * The primary's health pass moves the moment forward right after each renewal of its Consul session. Every
 * statement here that writes runs with the binlog off for its session (`binlogOff`), so nothing replicates and
 * no GTID is made. UTC_TIMESTAMP(6) and a DATETIME column: no time zone or daylight-saving change can move it.
 */
export interface LeaseSql {
  /** Idempotent: the schema, the table, and the fence event (created, or replaced by this definition). */
  readonly install: readonly string[];
  /** Sets the lease to end `ms` milliseconds from now, server time. */
  extend(ms: number): Statement;
  /** Removes the lease: a writable server without one is fenced within a second. */
  readonly clear: string;
  /** One row, `remaining_us`: microseconds until the lease ends (negative once it has); no row: no lease. */
  readonly state: string;
  /** Saves the session's sql_log_bin and turns it off, for the statements above that write. */
  readonly binlogOff: string;
  /** Puts sql_log_bin back as {@link LeaseSql.binlogOff} found it. */
  readonly binlogRestore: string;
  /**
   * MySQL only: super_read_only blocks the admin account too, so writing the lease on a super-read-only server
   * takes super_read_only off first, leaving read_only on (only accounts with SUPER or CONNECTION_ADMIN, never
   * the application's, may write meanwhile). Turning it off explicitly also restarts the event scheduler,
   * which MySQL stops while super_read_only is on (it cannot record an event's last execution then).
   */
  readonly liftSuperReadOnly?: string;
  /** MySQL only: super_read_only back on after {@link LeaseSql.liftSuperReadOnly}. */
  readonly restoreSuperReadOnly?: string;
}

/** The statements that create the lease's schema and table; the event is the flavour's. */
function leaseTable(): string[] {
  return [
    `CREATE DATABASE IF NOT EXISTS ${LEASE_SCHEMA}`,
    `CREATE TABLE IF NOT EXISTS ${LEASE_SCHEMA}.lease (` +
    "id TINYINT UNSIGNED NOT NULL PRIMARY KEY CHECK (id = 1), " +
    "expires_at DATETIME(6) NOT NULL" +
    ") ENGINE=InnoDB COMMENT='autopilot: until when this server may stay writable (UTC); see lease_fence'",
  ];
}

/** The fence event's schedule, comment and body, for CREATE and ALTER EVENT alike. */
function fenceEvent(writable: string, fence: string): string {
  return "ON SCHEDULE EVERY 1 SECOND ENABLE " +
    "COMMENT 'autopilot: read-only once the lease in autopilot.lease has lapsed' DO BEGIN " +
    `IF ${writable} = 0 AND NOT EXISTS (SELECT 1 FROM ${LEASE_SCHEMA}.lease ` +
    "WHERE id = 1 AND expires_at > UTC_TIMESTAMP(6)) " +
    `THEN ${fence}; END IF; END`;
}

/** What both flavours share: extend, clear, read, and the binlog switch. */
const LEASE_COMMON = {
  extend(ms: number): Statement {
    return {
      sql: `REPLACE INTO ${LEASE_SCHEMA}.lease (id, expires_at) ` +
        "VALUES (1, UTC_TIMESTAMP(6) + INTERVAL ? MICROSECOND)",
      values: [Math.max(0, Math.round(ms * 1000))],
    };
  },
  clear: `DELETE FROM ${LEASE_SCHEMA}.lease`,
  state: "SELECT TIMESTAMPDIFF(MICROSECOND, UTC_TIMESTAMP(6), expires_at) AS remaining_us " +
    `FROM ${LEASE_SCHEMA}.lease WHERE id = 1`,
  binlogOff: "SET @autopilot_sql_log_bin = @@SESSION.sql_log_bin, SESSION sql_log_bin = 0",
  binlogRestore: "SET SESSION sql_log_bin = @autopilot_sql_log_bin",
};

/** One row: a START REPLICA counter and the uptimes that say whether it counts from mysqld's start. */
function replicaStartsQuery(table: string, counter: string): string {
  const value = (name: string) =>
    `MAX(IF(UPPER(VARIABLE_NAME) = '${name.toUpperCase()}', VARIABLE_VALUE, NULL))`;
  return `SELECT ${value(counter)} AS starts, ${value("Uptime")} AS uptime, ` +
    `${value("Uptime_since_flush_status")} AS since_flush FROM ${table} ` +
    `WHERE UPPER(VARIABLE_NAME) IN ('${counter.toUpperCase()}', 'UPTIME', 'UPTIME_SINCE_FLUSH_STATUS')`;
}

/**
 * Reads {@link FlavourSql.replicaStartsQuery}'s row: whether START REPLICA ran in this run of mysqld;
 * undefined when a FLUSH STATUS reset the counter after mysqld started, or the row is missing.
 */
export function replicationStartedThisRun(row: Record<string, unknown> | undefined): boolean | undefined {
  const starts = Number(row?.starts ?? NaN);
  if (starts > 0) return true;
  // both uptimes come from one read, so they differ only when FLUSH STATUS ran in this run
  const flushed = Math.abs(Number(row?.uptime ?? NaN) - Number(row?.since_flush ?? NaN));
  return starts === 0 && flushed <= 1 ? false : undefined;
}

/** This server's GTID state, as text in the flavour's own format. */
export interface GtidState {
  /**
   * Everything this server has, local writes included: MySQL `gtid_executed`; MariaDB `gtid_binlog_state`
   * (last seq_no per domain and server), which is what errant-transaction checks compare.
   */
  readonly executed: string;
  /** MariaDB only: `gtid_current_pos`, `gtid_slave_pos`, `gtid_binlog_pos`. */
  readonly currentPos?: string;
  readonly slavePos?: string;
  readonly binlogPos?: string;
}

/** Replication thread state, flavour-neutral. */
export interface ReplicaStatus {
  readonly sourceHost: string;
  readonly sourcePort: number;
  /** The receiver (I/O) thread: `Yes`, `No` or `Connecting`. */
  readonly ioRunning: "yes" | "no" | "connecting";
  readonly sqlRunning: boolean;
  /** Seconds behind the source; `null` when unknown (a thread stopped). */
  readonly lagSeconds: number | null;
  /** Transactions received: MySQL `Retrieved_Gtid_Set`; MariaDB `Gtid_IO_Pos`. */
  readonly retrievedGtids: string;
  /** The source's binary log file the receiver reads (MySQL `Source_Log_File`, MariaDB `Master_Log_File`). */
  readonly sourceLogFile?: string;
  /**
   * The receiver connects over TLS: `verified` when the source's certificate is checked against the CA and
   * its address (`Master_SSL_Allowed`/`Source_SSL_Allowed` and `..._SSL_Verify_Server_Cert` both `Yes`),
   * `unverified` when not; absent: plain text.
   */
  readonly tls?: "verified" | "unverified";
  /** The receiver's last error; a failed TLS handshake is said so, in one line ({@link explainIoError}). */
  readonly lastIoError: string;
  readonly lastSqlError: string;
  /** MariaDB: the relay log the SQL thread reads and its offset there (`Relay_Log_File`, `Relay_Log_Pos`). */
  readonly relayLogFile?: string;
  readonly relayLogPos?: number;
}

/**
 * What both dialects' CHANGE statements bind, in the order of their placeholders: host, port, user,
 * password, connect retry, heartbeat period, then the CA, certificate and key files when `tls` is set.
 */
function changeSourceValues(spec: SourceSpec): (string | number)[] {
  const t = spec.tls;
  return [
    spec.host,
    spec.port,
    spec.user,
    spec.password,
    spec.connectRetry,
    spec.heartbeatPeriod,
    ...(t ? [t.ca, t.cert, t.key] : []),
  ];
}

const MYSQL: FlavourSql = Object.freeze({
  flavour: "mysql",
  changeSource(spec: SourceSpec): Statement {
    // GET_SOURCE_PUBLIC_KEY: caching_sha2_password over a connection without TLS needs the source's RSA key.
    // TLS (MySQL 8.4 manual, CHANGE REPLICATION SOURCE TO): SOURCE_SSL=1 with SOURCE_SSL_VERIFY_SERVER_CERT=1
    // checks the source's certificate against SOURCE_SSL_CA and its host name against SOURCE_HOST.
    const t = spec.tls;
    return {
      sql: "CHANGE REPLICATION SOURCE TO SOURCE_HOST=?, SOURCE_PORT=?, SOURCE_USER=?, SOURCE_PASSWORD=?, " +
        "SOURCE_AUTO_POSITION=1, SOURCE_CONNECT_RETRY=?, SOURCE_HEARTBEAT_PERIOD=?, GET_SOURCE_PUBLIC_KEY=1" +
        (t
          ? ", SOURCE_SSL=1, SOURCE_SSL_CA=?, SOURCE_SSL_CERT=?, SOURCE_SSL_KEY=?, SOURCE_SSL_VERIFY_SERVER_CERT=1"
          : ""),
      values: changeSourceValues(spec),
    };
  },
  startReplica: "START REPLICA",
  stopReplica: "STOP REPLICA",
  resetReplicaAll: "RESET REPLICA ALL",
  replicaStatus: "SHOW REPLICA STATUS",
  // MySQL 8.4 removed SHOW MASTER STATUS.
  binlogStatus: "SHOW BINARY LOG STATUS",
  gtidStateQuery: "SELECT @@GLOBAL.gtid_executed AS executed",
  gtidState(row: Record<string, unknown>): GtidState {
    return { executed: text(row.executed) };
  },
  waitForGtids(gtids: string, timeoutSeconds: number): Statement {
    // Returns 0 when reached, 1 on timeout (MySQL 8.4 manual, WAIT_FOR_EXECUTED_GTID_SET).
    return { sql: "SELECT WAIT_FOR_EXECUTED_GTID_SET(?, ?) AS waited", values: [gtids, timeoutSeconds] };
  },
  waitSucceeded: (value: unknown) => Number(value) === 0 && value !== null,
  setReadOnly(on: boolean): readonly string[] {
    // super_read_only=ON implies read_only=ON; read_only=OFF implies super_read_only=OFF.
    return on ? ["SET GLOBAL super_read_only = ON"] : ["SET GLOBAL read_only = OFF"];
  },
  readOnlyQuery: "SELECT @@GLOBAL.read_only AS read_only, @@GLOBAL.super_read_only AS super_read_only",
  setSemiSyncSource(on: boolean): readonly string[] {
    return on
      ? [
        "SET GLOBAL rpl_semi_sync_source_wait_point = 'AFTER_SYNC'",
        "SET GLOBAL rpl_semi_sync_source_enabled = ON",
      ]
      : ["SET GLOBAL rpl_semi_sync_source_enabled = OFF"];
  },
  startReplicationAfter(gtid: string): readonly (string | Statement)[] {
    // MySQL 8.4: RESET BINARY LOGS AND GTIDS replaced RESET MASTER; gtid_purged must be empty before SET.
    return ["RESET BINARY LOGS AND GTIDS", { sql: "SET GLOBAL gtid_purged = ?", values: [gtid] }];
  },
  // Com_replica_start counts START REPLICA (Com_slave_start was removed in 8.4).
  replicaStartsQuery: replicaStartsQuery("performance_schema.global_status", "Com_replica_start"),
  lease: Object.freeze({
    ...LEASE_COMMON,
    // MySQL has no CREATE OR REPLACE EVENT: create it if missing, then ALTER it to this definition (no moment
    // without the event, and ENABLE undoes a REPLICA_SIDE_DISABLED). super_read_only=ON implies read_only=ON.
    install: Object.freeze([
      ...leaseTable(),
      `CREATE EVENT IF NOT EXISTS ${LEASE_SCHEMA}.lease_fence ` +
      fenceEvent("@@GLOBAL.super_read_only", "SET GLOBAL super_read_only = ON"),
      `ALTER EVENT ${LEASE_SCHEMA}.lease_fence ` +
      fenceEvent("@@GLOBAL.super_read_only", "SET GLOBAL super_read_only = ON"),
    ]),
    liftSuperReadOnly: "SET GLOBAL super_read_only = OFF",
    restoreSuperReadOnly: "SET GLOBAL super_read_only = ON",
  }),
  replicaStatusFromRow(row: Record<string, unknown>): ReplicaStatus {
    return {
      sourceHost: text(row.Source_Host),
      sourcePort: Number(row.Source_Port ?? 0),
      ioRunning: ioState(row.Replica_IO_Running),
      sqlRunning: text(row.Replica_SQL_Running) === "Yes",
      lagSeconds: lag(row.Seconds_Behind_Source),
      retrievedGtids: text(row.Retrieved_Gtid_Set),
      sourceLogFile: text(row.Source_Log_File),
      ...tlsOf(row.Source_SSL_Allowed, row.Source_SSL_Verify_Server_Cert),
      lastIoError: explainIoError(text(row.Last_IO_Error)),
      lastSqlError: text(row.Last_SQL_Error),
    };
  },
});

const MARIADB: FlavourSql = Object.freeze({
  flavour: "mariadb",
  changeSource(spec: SourceSpec): Statement {
    // TLS (MariaDB, CHANGE MASTER TO): MASTER_SSL_VERIFY_SERVER_CERT=1 checks the source's certificate against
    // MASTER_SSL_CA and its Common Name or SAN against MASTER_HOST.
    const t = spec.tls;
    return {
      sql: "CHANGE MASTER TO MASTER_HOST=?, MASTER_PORT=?, MASTER_USER=?, MASTER_PASSWORD=?, " +
        "MASTER_USE_GTID=slave_pos, MASTER_CONNECT_RETRY=?, MASTER_HEARTBEAT_PERIOD=?" +
        (t
          ? ", MASTER_SSL=1, MASTER_SSL_CA=?, MASTER_SSL_CERT=?, MASTER_SSL_KEY=?, MASTER_SSL_VERIFY_SERVER_CERT=1"
          : "") +
        (spec.demote ? ", MASTER_DEMOTE_TO_SLAVE=1" : ""),
      values: changeSourceValues(spec),
    };
  },
  startReplica: "START SLAVE",
  stopReplica: "STOP SLAVE",
  resetReplicaAll: "RESET SLAVE ALL",
  replicaStatus: "SHOW SLAVE STATUS",
  // SHOW BINLOG STATUS exists from 10.5.2 on; SHOW MASTER STATUS works on every MariaDB.
  binlogStatus: "SHOW MASTER STATUS",
  gtidStateQuery:
    "SELECT @@GLOBAL.gtid_binlog_state AS executed, @@GLOBAL.gtid_current_pos AS current_pos, " +
    "@@GLOBAL.gtid_slave_pos AS slave_pos, @@GLOBAL.gtid_binlog_pos AS binlog_pos",
  gtidState(row: Record<string, unknown>): GtidState {
    return {
      executed: text(row.executed),
      currentPos: text(row.current_pos),
      slavePos: text(row.slave_pos),
      binlogPos: text(row.binlog_pos),
    };
  },
  waitForGtids(gtids: string, timeoutSeconds: number): Statement {
    // Returns 0 when reached, -1 on timeout.
    return { sql: "SELECT MASTER_GTID_WAIT(?, ?) AS waited", values: [gtids, timeoutSeconds] };
  },
  waitSucceeded: (value: unknown) => Number(value) === 0 && value !== null,
  setReadOnly(on: boolean): readonly string[] {
    // Turning read_only on waits for every commit in progress, and a commit waiting for a semi-sync ack that
    // cannot come (a cut old primary) never ends: bounded by lock_wait_timeout (error 1205 after it, measured
    // on 10.11.19), the pass goes on instead of hanging to its deadline (src/errant.ts discards such a tail).
    return on
      ? [`SET SESSION lock_wait_timeout = ${READ_ONLY_WAIT_SECONDS}`, "SET GLOBAL read_only = ON"]
      : ["SET GLOBAL read_only = OFF"];
  },
  readOnlyQuery: "SELECT @@GLOBAL.read_only AS read_only",
  setSemiSyncSource(on: boolean): readonly string[] {
    return on
      ? [
        "SET GLOBAL rpl_semi_sync_master_wait_point = 'AFTER_SYNC'",
        "SET GLOBAL rpl_semi_sync_master_enabled = ON",
      ]
      : ["SET GLOBAL rpl_semi_sync_master_enabled = OFF"];
  },
  startReplicationAfter(gtid: string, binlogState: string = gtid): readonly (string | Statement)[] {
    // SET GLOBAL gtid_slave_pos is refused below the binlog's own GTIDs in strict mode: empty the binlog first.
    // The new binlog then starts from the snapshot's position (gtid_binlog_state), so that this node, if it is
    // made primary, can serve a replica restored from the same snapshot: in strict mode a source refuses a
    // position its binlog neither holds nor lists as its starting point.
    return [
      "RESET MASTER",
      { sql: "SET GLOBAL gtid_binlog_state = ?", values: [binlogState] },
      { sql: "SET GLOBAL gtid_slave_pos = ?", values: [gtid] },
    ];
  },
  relayReplay: Object.freeze({
    pointAt(start: RelayStart): Statement {
      return {
        sql: "CHANGE MASTER TO MASTER_HOST='127.0.0.1', MASTER_PORT=?, RELAY_LOG_FILE=?, RELAY_LOG_POS=?, " +
          "MASTER_LOG_FILE=?, MASTER_LOG_POS=?",
        values: [start.port, start.relayFile, start.relayPos, start.sourceFile, start.sourcePos],
      };
    },
    applyUntil(file: string, pos: number): Statement {
      return { sql: "START SLAVE SQL_THREAD UNTIL RELAY_LOG_FILE=?, RELAY_LOG_POS=?", values: [file, pos] };
    },
  }),
  // Com_start_slave counts START SLAVE and START REPLICA alike.
  replicaStartsQuery: replicaStartsQuery("information_schema.GLOBAL_STATUS", "Com_start_slave"),
  lease: Object.freeze({
    ...LEASE_COMMON,
    // The admin account (root, with READ_ONLY ADMIN) writes through read_only: no lifting needed.
    install: Object.freeze([
      ...leaseTable(),
      `CREATE OR REPLACE EVENT ${LEASE_SCHEMA}.lease_fence ` +
      fenceEvent("@@GLOBAL.read_only", "SET GLOBAL read_only = ON"),
    ]),
  }),
  replicaStatusFromRow(row: Record<string, unknown>): ReplicaStatus {
    return {
      sourceHost: text(row.Master_Host),
      sourcePort: Number(row.Master_Port ?? 0),
      ioRunning: ioState(row.Slave_IO_Running),
      sqlRunning: text(row.Slave_SQL_Running) === "Yes",
      lagSeconds: lag(row.Seconds_Behind_Master),
      retrievedGtids: text(row.Gtid_IO_Pos),
      sourceLogFile: text(row.Master_Log_File),
      ...tlsOf(row.Master_SSL_Allowed, row.Master_SSL_Verify_Server_Cert),
      lastIoError: explainIoError(text(row.Last_IO_Error)),
      lastSqlError: text(row.Last_SQL_Error),
      relayLogFile: text(row.Relay_Log_File),
      relayLogPos: Number(row.Relay_Log_Pos ?? 0),
    };
  },
});

/**
 * The SQL for a flavour.
 *
 * @param flavour `mysql` or `mariadb`.
 * @returns The flavour's statements and row readers.
 */
export function sqlFor(flavour: Flavour): FlavourSql {
  return flavour === "mysql" ? MYSQL : MARIADB;
}

function text(value: unknown): string {
  if (value === null || value === undefined) return "";
  return String(value).trim();
}

function ioState(value: unknown): ReplicaStatus["ioRunning"] {
  const s = text(value);
  return s === "Yes" ? "yes" : s === "Connecting" ? "connecting" : "no";
}

function lag(value: unknown): number | null {
  if (value === null || value === undefined || value === "") return null;
  const n = Number(value);
  return Number.isFinite(n) ? n : null;
}

function tlsOf(allowed: unknown, verify: unknown): { tls?: "verified" | "unverified" } {
  if (text(allowed) !== "Yes") return {};
  return { tls: text(verify) === "Yes" ? "verified" : "unverified" };
}

/**
 * The receiver's error, with a failed TLS handshake said in words: MariaDB reports a source whose certificate
 * the CA did not sign as `SSL connection error: error:00000000:lib(0)::reason(0)` (error 2026).
 */
export function explainIoError(error: string): string {
  if (!/SSL connection error|TLS|certificate verify/i.test(error)) return error;
  return "TLS handshake with the source failed (is its certificate signed by MYSQL_TLS_CA, valid, and naming " +
    `the address it is reached on?): ${error}`;
}
