/**
 * One MySQL-family server as autopilot operates it: every statement the hooks run, in the server's own
 * flavour, with typed answers, so that no caller writes SQL or parses rows. `MysqlServer` is the interface the
 * HA actions take (unit tests pass a fake); `ServerOperator` is the real one over a {@link MysqlClient}.
 *
 * @module
 */
import type { Config } from "../config.ts";
import { localAdminUser } from "./bootstrap.ts";
import { MysqlClient, MysqlQueryError, type MysqlTarget } from "./client.ts";
import { clearLease, extendLease, installLease, leaseState } from "./lease.ts";
import { ensureIdentity, readIdentity } from "./identity.ts";
import {
  type Flavour,
  type FlavourSql,
  type GtidState,
  type RelayStart,
  type ReplicaStatus,
  replicationStartedThisRun,
  type ServerVersion,
  type SourceSpec,
  sqlFor,
  type Statement,
} from "./flavour.ts";

/** Options of every call that waits on the server. */
export interface CallOptions {
  /** Aborts the call: the pass's deadline. */
  readonly signal?: AbortSignal;
}

/** What a health pass reads from its local server, in as few round trips as the flavour allows. */
export interface ServerStatus {
  readonly readOnly: boolean;
  /** The configured replication source and thread state; absent when it replicates from nobody. */
  readonly replica?: ReplicaStatus;
  readonly gtid: GtidState;
  /** Whether the server holds any transaction (GTIDs of its own or replicated). */
  readonly hasTransactions: boolean;
  /**
   * Whether START REPLICA ran since this run of mysqld began (see `replicationStartedThisRun` in flavour.ts);
   * undefined when a FLUSH STATUS reset the count.
   */
  readonly replicationStartedThisRun?: boolean;
  /** The cluster identity its data carries (src/mysql/identity.ts); absent when it has none. */
  readonly identity?: string;
}

/** A server's binlog files (SHOW BINARY LOGS), oldest first, and their directory. */
export interface BinaryLogs {
  /** Absolute directory of the files; `""` when the server does not say. */
  readonly dir: string;
  readonly files: readonly { readonly file: string; readonly size: number }[];
}

/** The operations autopilot runs on one server. `await using` closes it. */
export interface MysqlServer extends AsyncDisposable {
  readonly flavour: Flavour;
  /** `SELECT VERSION()`, read once per connection. */
  version(o?: CallOptions): Promise<ServerVersion>;
  /** Read-only state, replication, GTIDs: everything a pass decides on. */
  status(o?: CallOptions): Promise<ServerStatus>;
  gtidState(o?: CallOptions): Promise<GtidState>;
  /** The replication status; undefined when no source is configured. */
  replicaStatus(o?: CallOptions): Promise<ReplicaStatus | undefined>;
  readOnly(o?: CallOptions): Promise<boolean>;
  /** read_only (and super_read_only on MySQL) on or off. */
  setReadOnly(on: boolean, o?: CallOptions): Promise<void>;
  setSemiSyncSource(on: boolean, o?: CallOptions): Promise<void>;
  /** CHANGE MASTER / CHANGE REPLICATION SOURCE (GTID auto-position). */
  changeSource(spec: SourceSpec, o?: CallOptions): Promise<void>;
  startReplica(o?: CallOptions): Promise<void>;
  /** Stops both threads; no error when none runs. */
  stopReplica(o?: CallOptions): Promise<void>;
  /** STOP REPLICA IO_THREAD: the receiver stops, the applier goes on with what it has. */
  stopReplicaIo(o?: CallOptions): Promise<void>;
  /** Stops replication and forgets the source. */
  resetReplicaAll(o?: CallOptions): Promise<void>;
  /** A datadir restored from a snapshot: its GTID position (and MariaDB binlog state) before replicating. */
  startReplicationAfter(gtid: string, binlogState?: string, o?: CallOptions): Promise<void>;
  /** Waits until the server has applied `gtids`; false when it has not within `timeoutSeconds`. */
  waitForGtids(gtids: string, timeoutSeconds: number, o?: CallOptions): Promise<boolean>;
  /** The binary log file the server writes now; undefined when binary logging is off. */
  binlogFile(o?: CallOptions): Promise<string | undefined>;
  /** Runs statements in order, stopping at the first failure (bootstrap-style batches). */
  run(statements: readonly (string | Statement)[], o?: CallOptions): Promise<void>;
  /**
   * Asks the server to shut down (SQL `SHUTDOWN`: InnoDB flushes, the binlog is closed) and closes the
   * connection; it does not wait for mysqld to exit. Never throws: the connection may drop before the answer.
   */
  shutdown(o?: CallOptions): Promise<void>;
  /**
   * The in-server lease (src/mysql/lease.ts): the table and the fence event, created idempotently without the
   * binlog. Before a server may turn writable; a datadir restored from a snapshot has them already.
   */
  installLease(o?: CallOptions): Promise<void>;
  /**
   * The lease to end `ms` from now (server time), without the binlog; `turningWritable`: the caller turns the
   * server writable next (MySQL: super_read_only is lifted for the write).
   *
   * @returns Whether it was written (not when `ms` ≤ 0, nor on a MySQL server fenced by super_read_only).
   */
  extendLease(ms: number, o?: CallOptions & { readonly turningWritable?: boolean }): Promise<boolean>;
  /** No live lease left: for a node that is not (or no longer) primary. */
  clearLease(o?: CallOptions): Promise<void>;
  /** What is left of the lease in ms (negative once lapsed); undefined when there is none. */
  leaseLeft(o?: CallOptions): Promise<number | undefined>;
  /** Closes the connection; never throws. */
  close(): Promise<void>;
}

/** What {@link ServerOperator} needs of a connection: a {@link MysqlClient}, or a recording one in unit tests. */
export type SqlConnection = Pick<MysqlClient, "query" | "version" | "close" | "where">;

/** The real {@link MysqlServer}: the flavour's SQL over one connection, which it owns. */
export class ServerOperator implements MysqlServer {
  readonly flavour: Flavour;
  readonly #db: SqlConnection;
  readonly #sql: FlavourSql;
  #version: ServerVersion | undefined;

  /**
   * @param db The connection; {@link close} closes it.
   * @param flavour The server's flavour (see `flavourOf` in src/local.ts, or ask with `db.version()`).
   * @param version The server's version, when it was read already.
   */
  constructor(db: SqlConnection, flavour: Flavour, version?: ServerVersion) {
    this.#db = db;
    this.flavour = flavour;
    this.#sql = sqlFor(flavour);
    this.#version = version;
  }

  /** `host:port` or the socket path, for messages. */
  get where(): string {
    return this.#db.where;
  }

  async version(o: CallOptions = {}): Promise<ServerVersion> {
    return this.#version ??= await this.#db.version(o.signal);
  }

  /** The TLS cipher of this connection (the same status variable on both flavours); undefined: plain text. */
  async tlsCipher(o: CallOptions = {}): Promise<string | undefined> {
    const [row] = await this.#db.query("SHOW SESSION STATUS LIKE 'Ssl_cipher'", { signal: o.signal });
    const cipher = row === undefined ? "" : String(row.Value ?? "");
    return cipher === "" ? undefined : cipher;
  }

  /**
   * Four statements, one round trip each. Measured on MariaDB 10.11 over the socket, a round trip costs
   * 30-50 µs, while reading the START REPLICA counter (a status table) costs 350-500 µs by itself; the
   * three SELECTs as derived tables of one statement took longer than the three apart (the server
   * materialises each), and several statements in one query would need `multipleStatements`, which the
   * client keeps off. So the four stay apart: about 0.7 ms in all. A fifth reads the cluster identity (a
   * primary-key read of a one-row table, src/mysql/identity.ts).
   */
  async status(o: CallOptions = {}): Promise<ServerStatus> {
    const readOnly = await this.readOnly(o);
    const replica = await this.replicaStatus(o);
    const gtid = await this.gtidState(o);
    const [starts] = await this.#db.query(this.#sql.replicaStartsQuery, o);
    const started = replicationStartedThisRun(starts);
    // Only shown and compared: a server that refuses this one read is not a server that does not answer.
    const identity = await readIdentity(this.#db, o).catch((e) => {
      if (e instanceof MysqlQueryError) return undefined;
      throw e;
    });
    return {
      readOnly,
      ...(replica ? { replica } : {}),
      gtid,
      hasTransactions: gtid.executed !== "" || (gtid.currentPos ?? "") !== "",
      ...(started === undefined ? {} : { replicationStartedThisRun: started }),
      ...(identity === undefined ? {} : { identity }),
    };
  }

  /** The cluster identity the data carries (src/mysql/identity.ts); undefined when none. */
  clusterIdentity(o: CallOptions = {}): Promise<string | undefined> {
    return readIdentity(this.#db, o);
  }

  /** Writes `candidate` as the identity (with the binlog) unless one is there; returns the one kept. */
  ensureClusterIdentity(candidate: string, o: CallOptions = {}): Promise<string> {
    return ensureIdentity(this.#db, candidate, o);
  }

  async gtidState(o: CallOptions = {}): Promise<GtidState> {
    const [row] = await this.#db.query(this.#sql.gtidStateQuery, o);
    return this.#sql.gtidState(row ?? {});
  }

  async replicaStatus(o: CallOptions = {}): Promise<ReplicaStatus | undefined> {
    const [row] = await this.#db.query(this.#sql.replicaStatus, o);
    const status = row === undefined ? undefined : this.#sql.replicaStatusFromRow(row);
    return status?.sourceHost ? status : undefined;
  }

  async readOnly(o: CallOptions = {}): Promise<boolean> {
    const [row] = await this.#db.query(this.#sql.readOnlyQuery, o);
    return Number(row?.read_only) === 1;
  }

  setReadOnly(on: boolean, o: CallOptions = {}): Promise<void> {
    return this.run(this.#sql.setReadOnly(on), o);
  }

  setSemiSyncSource(on: boolean, o: CallOptions = {}): Promise<void> {
    return this.run(this.#sql.setSemiSyncSource(on), o);
  }

  changeSource(spec: SourceSpec, o: CallOptions = {}): Promise<void> {
    return this.run([this.#sql.changeSource(spec)], o);
  }

  startReplica(o: CallOptions = {}): Promise<void> {
    return this.run([this.#sql.startReplica], o);
  }

  stopReplica(o: CallOptions = {}): Promise<void> {
    return this.run([this.#sql.stopReplica], o);
  }

  stopReplicaIo(o: CallOptions = {}): Promise<void> {
    return this.run([`${this.#sql.stopReplica} IO_THREAD`], o);
  }

  resetReplicaAll(o: CallOptions = {}): Promise<void> {
    return this.run([this.#sql.stopReplica, this.#sql.resetReplicaAll], o);
  }

  startReplicationAfter(gtid: string, binlogState?: string, o: CallOptions = {}): Promise<void> {
    return this.run(this.#sql.startReplicationAfter(gtid, binlogState), o);
  }

  /**
   * Points the SQL thread at a relay log position and starts it alone, to stop by itself after the event
   * that ends at `untilPos` in the same relay log (MariaDB; src/binlog/replay.ts).
   *
   * @throws {RangeError} on a flavour that has no relay-log replay (MySQL).
   */
  async applyRelayLog(start: RelayStart, untilPos: number, o: CallOptions = {}): Promise<void> {
    const relay = this.#sql.relayReplay;
    if (relay === undefined) throw new RangeError(`${this.flavour} servers replay no relay logs here`);
    await this.run([relay.pointAt(start), relay.applyUntil(start.relayFile, untilPos)], o);
  }

  async waitForGtids(gtids: string, timeoutSeconds: number, o: CallOptions = {}): Promise<boolean> {
    const [row] = await this.#db.query(this.#sql.waitForGtids(gtids, timeoutSeconds), o);
    return this.#sql.waitSucceeded(row?.waited);
  }

  installLease(o: CallOptions = {}): Promise<void> {
    return installLease(this.#db, this.flavour, o);
  }

  extendLease(ms: number, o: CallOptions & { readonly turningWritable?: boolean } = {}): Promise<boolean> {
    return extendLease(this.#db, this.flavour, ms, o);
  }

  clearLease(o: CallOptions = {}): Promise<void> {
    return clearLease(this.#db, this.flavour, o);
  }

  leaseLeft(o: CallOptions = {}): Promise<number | undefined> {
    return leaseState(this.#db, this.flavour, o);
  }

  async binlogFile(o: CallOptions = {}): Promise<string | undefined> {
    const [row] = await this.#db.query(this.#sql.binlogStatus, o);
    return typeof row?.File === "string" && row.File !== "" ? row.File : undefined;
  }

  /** The server's binlog files, oldest first, and the directory they are in (from `@@log_bin_basename`). */
  async binaryLogs(o: CallOptions = {}): Promise<BinaryLogs> {
    const rows = await this.#db.query("SHOW BINARY LOGS", o);
    const [dir] = await this.#db.query("SELECT @@GLOBAL.log_bin_basename AS base", o);
    const base = typeof dir?.base === "string" ? dir.base : "";
    return {
      dir: base.includes("/") ? base.slice(0, base.lastIndexOf("/")) : "",
      files: rows.flatMap((r) =>
        typeof r.Log_name === "string" ? [{ file: r.Log_name, size: Number(r.File_size ?? 0) }] : []
      ),
    };
  }

  /** Closes the current binlog file and opens a new one (not written to the binlog, so no GTID). */
  flushBinaryLogs(o: CallOptions = {}): Promise<void> {
    return this.run(["FLUSH BINARY LOGS"], o);
  }

  async run(statements: readonly (string | Statement)[], o: CallOptions = {}): Promise<void> {
    for (const s of statements) await this.#db.query(s, o);
  }

  async shutdown(o: CallOptions = {}): Promise<void> {
    await this.#db.query("SHUTDOWN", o).catch(() => {}); // the connection may drop before the answer
    await this.#db.close();
  }

  close(): Promise<void> {
    return this.#db.close();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}

/** How autopilot logs in to the local server: its admin account, OS-authenticated over the socket. */
export function localTarget(config: Config, flavour: Flavour): MysqlTarget {
  return { socketPath: config.mysql.socket, user: localAdminUser(flavour), connectTimeoutMs: 2000 };
}

/** How autopilot logs in to another node's server: over TCP, as the replication account. */
export function peerTarget(
  config: Config,
  peer: { readonly address: string; readonly port: number },
  connectTimeoutMs: number,
): MysqlTarget {
  return {
    host: peer.address,
    port: peer.port,
    user: config.mysql.replUser,
    password: config.mysql.replPassword,
    connectTimeoutMs,
    ...(config.mysql.tls ? { tls: config.mysql.tls } : {}),
  };
}

/**
 * Connects to the local server as autopilot's administrative account.
 *
 * @throws {MysqlUnavailableError} when mysqld does not answer.
 */
export async function openLocalServer(
  config: Config,
  flavour: Flavour,
  signal?: AbortSignal,
): Promise<ServerOperator> {
  return new ServerOperator(await MysqlClient.connect(localTarget(config, flavour), signal), flavour);
}

/**
 * Connects to another node's server over TCP as the replication account (it may read GTIDs, read_only and
 * replica status there, nothing more).
 *
 * @param connectTimeoutMs Defaults to MYSQL_CONNECT_TIMEOUT.
 * @param opts `flavour`: the peer's, when known (every node of a cluster has this node's); otherwise it is
 *   asked (`SELECT VERSION()`, one more round trip). `signal` aborts connecting and that question.
 * @throws {MysqlUnavailableError} when the peer does not answer in time.
 * @throws {UnsupportedServerError} when asked, for a server this program cannot manage.
 */
export async function openPeerServer(
  config: Config,
  peer: { readonly address: string; readonly port: number },
  connectTimeoutMs: number = config.mysql.connectTimeoutMs,
  opts: { readonly flavour?: Flavour; readonly signal?: AbortSignal } = {},
): Promise<ServerOperator> {
  const db = await MysqlClient.connect(peerTarget(config, peer, connectTimeoutMs), opts.signal);
  if (opts.flavour !== undefined) return new ServerOperator(db, opts.flavour);
  try {
    const version = await db.version(opts.signal);
    return new ServerOperator(db, version.flavour, version);
  } catch (e) {
    await db.close();
    throw e;
  }
}
