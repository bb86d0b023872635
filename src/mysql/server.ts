/**
 * One MySQL-family server as autopilot operates it: every statement the hooks run, in the server's own
 * flavour, with typed answers, so that no caller writes SQL or parses rows. `MysqlServer` is the interface the
 * HA actions take (unit tests pass a fake); `ServerOperator` is the real one over a {@link MysqlClient}.
 *
 * @module
 */
import type { Flavour, GtidState, ReplicaStatus, SourceSpec, Statement } from "./flavour.ts";

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
}

/** The operations autopilot runs on one server. */
export interface MysqlServer extends AsyncDisposable {
  readonly flavour: Flavour;
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
  /** Stops replication and forgets the source. */
  resetReplicaAll(o?: CallOptions): Promise<void>;
  /** A datadir restored from a snapshot: its GTID position (and MariaDB binlog state) before replicating. */
  startReplicationAfter(gtid: string, binlogState?: string, o?: CallOptions): Promise<void>;
  /** Waits until the server has applied `gtids`; false when it has not within `timeoutSeconds`. */
  waitForGtids(gtids: string, timeoutSeconds: number, o?: CallOptions): Promise<boolean>;
  /** Runs statements in order (a batch such as the bootstrap's). */
  run(statements: readonly (string | Statement)[], o?: CallOptions): Promise<void>;
  close(): Promise<void>;
}
