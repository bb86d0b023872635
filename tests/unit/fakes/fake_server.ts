/**
 * An in-memory {@link MysqlServer} for unit tests of code that operates a server (the HA actions): its state
 * is plain data the test sets and reads, every call is logged, and any method can be made to fail.
 *
 * It follows the real server where callers could get it wrong (tests/unit/fakes/server_contract.ts runs the
 * same scenario against it and against real MariaDB): CHANGE MASTER is refused while a replication thread
 * runs, START REPLICA without a source is refused, STOP REPLICA with nothing running is not, and a closed or
 * aborted call fails as `MysqlUnavailableError`. What it simplifies: replication starts at once, with no lag
 * and no error (set `state.replica` to model anything else); `waitForGtids` answers `state.waitAnswer`.
 *
 * @module
 */
import { MysqlQueryError, MysqlUnavailableError } from "../../../src/mysql/client.ts";
import {
  type Flavour,
  type GtidState,
  parseServerVersion,
  type ReplicaStatus,
  type ServerVersion,
  type SourceSpec,
  type Statement,
} from "../../../src/mysql/flavour.ts";
import type { CallOptions, MysqlServer, ServerStatus } from "../../../src/mysql/server.ts";

/** The methods of {@link MysqlServer}, as logged. */
export type ServerMethod = Exclude<keyof MysqlServer, "flavour" | typeof Symbol.asyncDispose>;

/** One call: the method and its arguments, options left out (a password in a SourceSpec stays in memory). */
export interface ServerCall {
  readonly method: ServerMethod;
  readonly args: readonly unknown[];
}

/** What the fake server holds; tests set it directly. */
export interface FakeServerState {
  readOnly: boolean;
  gtid: GtidState;
  /** The replication source and threads; undefined when none is configured. */
  replica?: ReplicaStatus;
  /** What `status()` reports; START REPLICA sets it to true. */
  replicationStartedThisRun?: boolean;
  semiSyncSource: boolean;
  /** The binary log file `binlogFile()` reports. */
  binlogFile?: string;
  /** `SELECT VERSION()`. */
  version: string;
  /** What `waitForGtids()` answers: a value, or a function of its arguments. */
  waitAnswer: boolean | ((gtids: string, timeoutSeconds: number) => boolean);
  /** False after `shutdown()`. */
  running: boolean;
  /** Whether the lease's table and fence event exist. */
  leaseInstalled: boolean;
  /** When the lease ends (Date.now() ms); undefined: no lease. */
  leaseUntil?: number;
}

/** A {@link MysqlServer} in memory. */
export class FakeServer implements MysqlServer {
  readonly flavour: Flavour;
  readonly state: FakeServerState;
  /** Every call, in order, failed ones included. */
  readonly calls: ServerCall[] = [];
  /** The statements `run()` received, in order. */
  readonly statements: (string | Statement)[] = [];
  /** Set by `close()` and `shutdown()`: every later call fails as the real client's would. */
  closed = false;
  readonly #failures = new Map<ServerMethod, { error: Error; times: number }>();

  /**
   * @param flavour Default `mariadb`.
   * @param state Overrides of the initial state: read-only, no transactions, replicating from nobody.
   */
  constructor(flavour: Flavour = "mariadb", state: Partial<FakeServerState> = {}) {
    this.flavour = flavour;
    this.state = {
      readOnly: true,
      gtid: flavour === "mariadb"
        ? { executed: "", currentPos: "", slavePos: "", binlogPos: "" }
        : { executed: "" },
      semiSyncSource: false,
      binlogFile: "mysql-bin.000001",
      version: flavour === "mariadb" ? "10.11.19-MariaDB-0+deb12u1" : "8.4.3",
      waitAnswer: true,
      running: true,
      leaseInstalled: false,
      ...state,
    };
  }

  /**
   * Makes `method` fail with `error` (by default the server not answering), for its next `times` calls.
   * `close()` and `shutdown()` never fail, like the real ones.
   */
  failOn(
    method: ServerMethod,
    error: Error = new MysqlUnavailableError("fake", "ECONNRESET", "the fake server was told to fail"),
    times = Infinity,
  ): this {
    this.#failures.set(method, { error, times });
    return this;
  }

  /** The methods called, in order (e.g. `["status", "setReadOnly"]`). */
  methods(): ServerMethod[] {
    return this.calls.map((c) => c.method);
  }

  version(o?: CallOptions): Promise<ServerVersion> {
    return this.#call("version", [], o, () => parseServerVersion(this.state.version));
  }

  status(o?: CallOptions): Promise<ServerStatus> {
    return this.#call("status", [], o, () => {
      const { readOnly, gtid, replica, replicationStartedThisRun } = this.state;
      return {
        readOnly,
        ...(replica ? { replica: { ...replica } } : {}),
        gtid: { ...gtid },
        hasTransactions: gtid.executed !== "" || (gtid.currentPos ?? "") !== "",
        ...(replicationStartedThisRun === undefined ? {} : { replicationStartedThisRun }),
      };
    });
  }

  gtidState(o?: CallOptions): Promise<GtidState> {
    return this.#call("gtidState", [], o, () => ({ ...this.state.gtid }));
  }

  replicaStatus(o?: CallOptions): Promise<ReplicaStatus | undefined> {
    return this.#call("replicaStatus", [], o, () => this.state.replica && { ...this.state.replica });
  }

  readOnly(o?: CallOptions): Promise<boolean> {
    return this.#call("readOnly", [], o, () => this.state.readOnly);
  }

  setReadOnly(on: boolean, o?: CallOptions): Promise<void> {
    return this.#call("setReadOnly", [on], o, () => {
      this.state.readOnly = on;
    });
  }

  setSemiSyncSource(on: boolean, o?: CallOptions): Promise<void> {
    return this.#call("setSemiSyncSource", [on], o, () => {
      this.state.semiSyncSource = on;
    });
  }

  changeSource(spec: SourceSpec, o?: CallOptions): Promise<void> {
    return this.#call("changeSource", [spec], o, () => {
      const r = this.state.replica;
      if (r && (r.ioRunning !== "no" || r.sqlRunning)) {
        throw new MysqlQueryError(
          "fake",
          "ER_SLAVE_MUST_STOP",
          1198,
          "This operation cannot be performed as you have a running slave; run STOP SLAVE first",
        );
      }
      this.state.replica = {
        sourceHost: spec.host,
        sourcePort: spec.port,
        ioRunning: "no",
        sqlRunning: false,
        lagSeconds: null,
        retrievedGtids: r?.retrievedGtids ?? "",
        lastIoError: "",
        lastSqlError: "",
      };
    });
  }

  startReplica(o?: CallOptions): Promise<void> {
    return this.#call("startReplica", [], o, () => {
      const r = this.state.replica;
      if (r === undefined) {
        throw new MysqlQueryError(
          "fake",
          "ER_BAD_SLAVE",
          1200,
          "Misconfigured slave: MASTER_HOST was not set; Fix in config file or with CHANGE MASTER TO",
        );
      }
      this.state.replica = { ...r, ioRunning: "yes", sqlRunning: true, lagSeconds: 0 };
      this.state.replicationStartedThisRun = true;
    });
  }

  stopReplica(o?: CallOptions): Promise<void> {
    return this.#call("stopReplica", [], o, () => this.#stop());
  }

  stopReplicaIo(o?: CallOptions): Promise<void> {
    return this.#call("stopReplicaIo", [], o, () => {
      const r = this.state.replica;
      if (r) this.state.replica = { ...r, ioRunning: "no" };
    });
  }

  resetReplicaAll(o?: CallOptions): Promise<void> {
    return this.#call("resetReplicaAll", [], o, () => {
      this.state.replica = undefined;
    });
  }

  startReplicationAfter(gtid: string, binlogState?: string, o?: CallOptions): Promise<void> {
    return this.#call("startReplicationAfter", [gtid, binlogState], o, () => {
      this.state.gtid = this.flavour === "mariadb"
        ? { executed: binlogState ?? gtid, currentPos: gtid, slavePos: gtid, binlogPos: gtid }
        : { executed: gtid };
    });
  }

  waitForGtids(gtids: string, timeoutSeconds: number, o?: CallOptions): Promise<boolean> {
    return this.#call("waitForGtids", [gtids, timeoutSeconds], o, () => {
      const answer = this.state.waitAnswer;
      return typeof answer === "function" ? answer(gtids, timeoutSeconds) : answer;
    });
  }

  installLease(o?: CallOptions): Promise<void> {
    return this.#call("installLease", [], o, () => {
      this.state.leaseInstalled = true;
    });
  }

  extendLease(ms: number, o?: CallOptions & { readonly turningWritable?: boolean }): Promise<boolean> {
    return this.#call("extendLease", [ms], o, () => {
      if (!(ms > 0)) return false;
      this.state.leaseInstalled = true;
      this.state.leaseUntil = Date.now() + ms;
      return true;
    });
  }

  clearLease(o?: CallOptions): Promise<void> {
    return this.#call("clearLease", [], o, () => {
      this.state.leaseUntil = undefined;
    });
  }

  leaseLeft(o?: CallOptions): Promise<number | undefined> {
    return this.#call("leaseLeft", [], o, () => {
      const until = this.state.leaseUntil;
      return until === undefined ? undefined : until - Date.now();
    });
  }

  binlogFile(o?: CallOptions): Promise<string | undefined> {
    return this.#call("binlogFile", [], o, () => this.state.binlogFile);
  }

  run(statements: readonly (string | Statement)[], o?: CallOptions): Promise<void> {
    return this.#call("run", [statements], o, () => {
      this.statements.push(...statements);
    });
  }

  shutdown(): Promise<void> {
    this.calls.push({ method: "shutdown", args: [] });
    if (!this.closed) this.state.running = false;
    this.closed = true;
    return Promise.resolve();
  }

  close(): Promise<void> {
    this.calls.push({ method: "close", args: [] });
    this.closed = true;
    return Promise.resolve();
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  #stop(): void {
    const r = this.state.replica;
    if (r) this.state.replica = { ...r, ioRunning: "no", sqlRunning: false, lagSeconds: null };
  }

  /** Logs the call, then fails as configured or as the real client would, or runs `body`. */
  #call<T>(method: ServerMethod, args: unknown[], o: CallOptions | undefined, body: () => T): Promise<T> {
    this.calls.push({ method, args });
    try {
      if (this.closed) {
        throw new MysqlUnavailableError("fake", "CLOSED", "the connection was closed");
      }
      if (o?.signal?.aborted) {
        throw new MysqlUnavailableError("fake", "ABORTED", "gave up: the caller's deadline passed");
      }
      const failure = this.#failures.get(method);
      if (failure && failure.times > 0) {
        failure.times--;
        throw failure.error;
      }
      return Promise.resolve(body());
    } catch (e) {
      return Promise.reject(e);
    }
  }
}
