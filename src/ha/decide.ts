/**
 * What the `health` hook should do, decided from facts gathered first. Pure: no I/O, no clock.
 *
 * The primary lock in Consul is the only source of truth for who may write. Each situation this node can be
 * in has one named branch below; each returns one {@link HealthDecision} with a reason that says what was
 * seen and what is done about it.
 *
 * @module
 */
import type { FailoverRecord, PrimaryLock, PrimaryRecord } from "../cluster_kv.ts";

export type { PrimaryLock, PrimaryRecord };
import type { ReplicaStatus } from "../mysql/flavour.ts";
import { type LastReplicated, replicaHealth } from "../replica_health.ts";
import { bootstrapHeldBack, othersHoldData, type RecoveryFacts, recoveryStep } from "./recovery.ts";

/** The local server, as seen this pass. */
export type MysqlFacts =
  | {
    readonly up: false;
    readonly error: string;
    /**
     * Nothing listens on the socket (it is missing, or refuses): mysqld is not running. Otherwise (a timeout,
     * a failing query) it may still be running, and accepting writes.
     */
    readonly gone: boolean;
  }
  | {
    readonly up: true;
    readonly readOnly: boolean;
    /** The configured replication source and thread state; absent when this server replicates from nobody. */
    readonly replica?: ReplicaStatus;
    /** Whether this server holds any transaction (GTIDs of its own or replicated). */
    readonly hasTransactions: boolean;
    /** Its executed GTIDs as text (MariaDB `gtid_binlog_state`, MySQL `gtid_executed`). */
    readonly executed: string;
    /**
     * Whether START REPLICA ran since this run of mysqld began: false right after a restart, as replication
     * never starts by itself (skip_replica_start); undefined when a FLUSH STATUS reset the count.
     */
    readonly replicationStartedThisRun?: boolean;
    /** The cluster identity its data carries (src/mysql/identity.ts); absent when none. */
    readonly identity?: string;
  };

/** Consul, as seen this pass. */
export type ConsulFacts =
  | { readonly up: false; readonly error: string }
  | {
    readonly up: true;
    readonly lock: PrimaryLock;
    /** This node's session id, if it has one that Consul still knows (renewed this pass). */
    readonly session?: string;
    /** A switchover away from this node is under way (it holds the failover lock for it): stay read-only. */
    readonly switchingOver?: boolean;
    /**
     * This node holds the failover lock for a switchover that started then (epoch ms) and never finished: the
     * switchover died, and its lock is to be released.
     */
    readonly staleSwitchoverAt?: number;
  };

/** Everything `decideHealth` needs. */
export interface HealthFacts {
  readonly node: PrimaryRecord;
  readonly mysql: MysqlFacts;
  readonly consul: ConsulFacts;
  /** pre-start restored a snapshot and replication has not been set up from it yet. */
  readonly restoredGtid?: string;
  /** A pass that stopped replication to re-point it was cut short before it started it again. */
  readonly repointing?: boolean;
  readonly maxLagSeconds: number;
  /**
   * SEMI_SYNC: a restarted primary's crash recovery may have cut an unacknowledged tail that a replica received,
   * so it does not take its lock back by itself but through a failover's plan (src/mysql/mycnf.ts).
   */
  readonly semiSync?: boolean;
  /**
   * TLS settings are set: a replica whose receiver is not configured for verified TLS (set up before they
   * were, e.g.) is re-pointed, never restarted in plain text.
   */
  readonly tls?: boolean;
  /** What holds automatic failover back: FAILOVER_PAUSE_KEY, or the quiet period after the last failover. */
  readonly failover?: { readonly paused: boolean; readonly quietReason?: string };
  /**
   * FAILSAFE_MODE is on; `heldLock`: the last pass that read Consul's keys found this node holding the primary
   * lock (the state file's members cache).
   */
  readonly failsafe?: { readonly heldLock: boolean };
  /** The last pass that saw this replica's threads running, and the boot clock now (src/replica_health.ts). */
  readonly replicaSeen?: { readonly last: LastReplicated; readonly now: number };
  /** The cluster identity Consul's `SERVICE_NAME-cluster` names, when the key holds one. */
  readonly cluster?: string;
  /** Whole-cluster recovery's facts: only when Consul has no primary lock record at all (src/ha/recovery.ts). */
  readonly recovery?: RecoveryFacts;
  /**
   * Another node holds the primary lock and its heartbeat (the lock's ModifyIndex) has not moved for this
   * long on this node's boot clock, longer than the lease and its margin (src/ha/heartbeat.ts).
   */
  readonly staleHolderMs?: number;
}

/** What to do this pass. Every variant carries the reason that is logged. */
export type HealthDecision =
  /** Nothing to change: report healthy or not. */
  | { readonly action: "report"; readonly healthy: boolean; readonly reason: string }
  /** Nobody has ever been primary and this node is empty: take the lock and set up the first primary. */
  | { readonly action: "bootstrap-primary"; readonly reason: string }
  /** This node was the last primary and the lock is free: take it again and carry on writing. */
  | { readonly action: "resume-primary"; readonly reason: string }
  /** Consul cannot be reached by this writable lock holder: keep writing while every member replicates from it. */
  | { readonly action: "failsafe"; readonly consulError: string; readonly reason: string }
  /** Consul lost its keys and this node holds every transaction of its cluster: take the lock, keep the data. */
  | { readonly action: "recover-primary"; readonly identity: string; readonly reason: string }
  /** This node holds the lock: make sure it is writable and replicates from nobody. */
  | { readonly action: "serve-as-primary"; readonly reason: string }
  /** Writable without the right to be: turn read-only now, and give up the lock if this node holds it. */
  | { readonly action: "fence"; readonly releaseLock: boolean; readonly reason: string }
  /** Replicate from the primary (from the restored position, if any); `demote`: this node has written. */
  | {
    readonly action: "follow";
    readonly primary: PrimaryRecord;
    readonly fromGtid?: string;
    readonly demote: boolean;
    readonly reason: string;
  }
  /** mysqld restarted since autopilot started replication (it never starts by itself): start it again. */
  | { readonly action: "restart-replication"; readonly source: string; readonly reason: string }
  /**
   * The primary is gone: try the failover lock and, holding it, choose and appoint a new primary. `takeOver`:
   * it still holds the lock but its heartbeat stands still; free the lock first (src/ha/takeover.ts), only if
   * it is still held by `session` at `index`.
   */
  | {
    readonly action: "failover";
    readonly failedPrimary: string;
    readonly takeOver?: { readonly session: string; readonly index: number };
    readonly reason: string;
  }
  /** A switchover away from this node died holding the failover lock: release it, then decide again. */
  | { readonly action: "end-switchover"; readonly reason: string };

/**
 * Decides what the health hook does.
 *
 * @param f The facts gathered this pass.
 * @returns One decision.
 */
export function decideHealth(f: HealthFacts): HealthDecision {
  if (f.consul.up && f.consul.staleSwitchoverAt !== undefined) {
    // First, whatever else: the lock it holds would hold back every failover.
    return {
      action: "end-switchover",
      reason: `A switchover started at ${
        new Date(f.consul.staleSwitchoverAt).toISOString()
      } never finished: releasing its failover lock`,
    };
  }
  if (!f.mysql.up) return mysqlIsDown(f, f.mysql.error, f.mysql.gone);
  if (!f.consul.up) return consulIsDown(f, f.mysql, f.consul.error);
  const { lock } = f.consul;
  if (holdsLock(f)) {
    if (f.consul.switchingOver) {
      return {
        action: "report",
        healthy: false,
        reason:
          "a switchover away from this node is under way: staying read-only until it hands the lock over",
      };
    }
    return holdsPrimaryLock(f.mysql, lock);
  }
  if (lock.session !== undefined && lock.record !== undefined) return anotherNodeIsPrimary(f, lock.record);
  return nobodyIsPrimary(f, lock);
}

type Up = Extract<MysqlFacts, { up: true }>;

/** Whether Consul was reached and the primary lock is held by this node's session. */
export function holdsLock(f: HealthFacts): boolean {
  return f.consul.up && f.consul.lock.session !== undefined && f.consul.lock.session === f.consul.session;
}

function mysqlIsDown(f: HealthFacts, error: string, gone: boolean): HealthDecision {
  const ours = holdsLock(f);
  if (ours && !gone) {
    // A slow or stuck server may still take writes: giving the lock away now could make two primaries.
    return {
      action: "report",
      healthy: false,
      reason: `mysqld does not answer in time (${error}): keeping the primary lock while it may still take ` +
        "writes; if it stays so, stop mysqld and the lock is released",
    };
  }
  if (ours) {
    return {
      action: "fence",
      releaseLock: true,
      reason: `mysqld does not answer (${error}): releasing the primary lock so another node can take over`,
    };
  }
  return { action: "report", healthy: false, reason: `mysqld does not answer: ${error}` };
}

function consulIsDown(f: HealthFacts, mysql: Up, error: string): HealthDecision {
  if (!mysql.readOnly) {
    if (f.failsafe?.heldLock && !mysql.replica) {
      return {
        action: "failsafe",
        consulError: error,
        reason: `Consul cannot be reached (${error}): failsafe mode, asking the other members whether they ` +
          "replicate from this node",
      };
    }
    return {
      action: "fence",
      releaseLock: false,
      reason: f.failsafe
        ? `Consul cannot be reached (${error}): turning read-only, since this node was not the writable lock ` +
          "holder when Consul was last read (failsafe mode keeps only that one writable)"
        : `Consul cannot be reached (${error}): turning read-only, since the primary lock cannot be renewed`,
    };
  }
  // Read-only (a replica, or a primary failsafe mode fenced): it only reports until Consul is back.
  if (mysql.replica) {
    return replicationHealth(mysql.replica, f.maxLagSeconds, " (Consul cannot be reached)", f.replicaSeen);
  }
  return { action: "report", healthy: false, reason: `Consul cannot be reached: ${error}` };
}

function holdsPrimaryLock(mysql: Up, lock: PrimaryLock): HealthDecision {
  if (mysql.readOnly || mysql.replica || !lock.record?.ready) {
    return {
      action: "serve-as-primary",
      reason: "this node holds the primary lock: applying what it received, then turning writable",
    };
  }
  return { action: "report", healthy: true, reason: "primary: holds the lock and is writable" };
}

function anotherNodeIsPrimary(f: HealthFacts, primary: PrimaryRecord): HealthDecision {
  const mysql = f.mysql as Up;
  const source = `${primary.address}:${primary.port}`;
  if (primary.node === f.node.node) {
    // Our name on a lock held by a session we do not know: a previous run's session, lost with its state.
    return {
      action: "fence",
      releaseLock: false,
      reason: `the primary lock names this node but is held by a session this node does not have: read-only`,
    };
  }
  if (!mysql.readOnly) {
    return {
      action: "fence",
      releaseLock: false,
      reason: `${primary.node} holds the primary lock: turning read-only`,
    };
  }
  if (f.staleHolderMs !== undefined && primary.ready) return holderIsStale(f, primary, f.staleHolderMs);
  if (!primary.ready) {
    return {
      action: "report",
      healthy: false,
      reason: `${primary.node} holds the primary lock and is not ready yet (applying its relay log): waiting`,
    };
  }
  const replica = mysql.replica;
  const followsPrimary = replica !== undefined && replica.sourceHost === primary.address &&
    replica.sourcePort === primary.port;
  const plainWhileTls = f.tls === true && followsPrimary && replica.tls !== "verified";
  if (!followsPrimary || plainWhileTls) {
    const demote = f.restoredGtid === undefined && mysql.hasTransactions && replica === undefined;
    return {
      action: "follow",
      primary,
      ...(f.restoredGtid !== undefined ? { fromGtid: f.restoredGtid } : {}),
      demote,
      reason: plainWhileTls
        ? `replicating from ${primary.node} (${source}) without verified TLS while MYSQL_TLS_CA, MYSQL_TLS_CERT ` +
          "and MYSQL_TLS_KEY are set: re-pointing it over TLS"
        : replica
        ? `replicating from ${replica.sourceHost}:${replica.sourcePort}, but ${primary.node} (${source}) is primary`
        : f.restoredGtid !== undefined
        ? `restored from a snapshot at ${f.restoredGtid}: replicating from ${primary.node} (${source})`
        : demote
        ? `this node has transactions and replicates from nobody: rejoining ${primary.node} (${source}) if it has them all`
        : `new empty node: replicating from ${primary.node} (${source}) from the start`,
    };
  }
  // Stopped without an error and nobody started it since mysqld came up: mysqld restarted. Stopped by a pass
  // of ours cut short while it re-pointed replication: that pass meant to start it. Stopped otherwise is
  // somebody's STOP REPLICA, which is left alone (and reported).
  const ioStopped = replica.ioRunning === "no" && !replica.lastIoError && !replica.lastSqlError;
  const stopped = ioStopped && !replica.sqlRunning;
  // A takeover stops the I/O thread only (repointing marks it), a re-pointing pass both threads.
  if ((stopped && mysql.replicationStartedThisRun === false) || (ioStopped && f.repointing)) {
    return {
      action: "restart-replication",
      source,
      reason: f.repointing
        ? `a pass re-pointing replication to ${source} stopped before starting it: starting it`
        : `mysqld restarted: starting replication from ${source} again`,
    };
  }
  return replicationHealth(replica, f.maxLagSeconds, "", f.replicaSeen);
}

/**
 * Another node holds the lock, served as primary, and its heartbeat has stood still longer than its lease can
 * last: it is frozen or cut off, and read-only by its own fence. Take the lock over and fail over, unless
 * failover is paused or the quiet period holds it back. A holder that is not ready yet is left alone: it has
 * never been writable under this lock, and its promotion may take a while (its relay log).
 */
function holderIsStale(f: HealthFacts, primary: PrimaryRecord, stillMs: number): HealthDecision {
  const still = `${primary.node} holds the primary lock but its heartbeat has not moved for ${
    Math.round(stillMs / 100) / 10
  } s`;
  const lock = (f.consul as Extract<ConsulFacts, { up: true }>).lock;
  if (f.failover?.paused) {
    return { action: "report", healthy: false, reason: `${still} and automatic failover is paused` };
  }
  if (f.failover?.quietReason) return { action: "report", healthy: false, reason: f.failover.quietReason };
  return {
    action: "failover",
    failedPrimary: primary.node,
    takeOver: { session: lock.session!, index: lock.modifyIndex! },
    reason: `${still}: taking the lock over and failing over`,
  };
}

function nobodyIsPrimary(f: HealthFacts, lock: PrimaryLock): HealthDecision {
  const mysql = f.mysql as Up;
  if (lock.record === undefined) {
    if (!mysql.hasTransactions && !mysql.replica && f.restoredGtid === undefined) {
      const held = bootstrapHeldBack(f.node.node, f.cluster, f.recovery);
      if (held !== undefined) return { action: "report", healthy: false, reason: held };
      return {
        action: "bootstrap-primary",
        reason: "no primary has ever been elected and this node is empty",
      };
    }
    const restoredAlone = mysql.identity === undefined ||
      !othersHoldData(f.node.node, mysql.identity, f.recovery);
    if (f.restoredGtid !== undefined && !mysql.replica && restoredAlone) {
      // A cluster brought back from a snapshot (a new Consul, `autopilot restore` on a stopped node). With
      // other nodes of its cluster holding data, the recovery below chooses among them all instead.
      return {
        action: "resume-primary",
        reason:
          `no primary has ever been elected and this node was restored from a snapshot at ${f.restoredGtid}: ` +
          "it becomes primary with the restored data",
      };
    }
    // Consul lost its keys under a running primary: it is writable, so its in-server lease runs and no other
    // node can be; it takes the lock back at once instead of waiting out the settle window with the others.
    if (
      !mysql.readOnly && !mysql.replica && mysql.identity !== undefined &&
      (f.cluster === undefined || f.cluster === mysql.identity) && f.failsafe?.heldLock !== false
    ) {
      return {
        action: "resume-primary",
        reason:
          `Consul has no primary lock record (its keys were lost) and this node is the writable primary of ` +
          `cluster ${mysql.identity}: taking the lock again`,
      };
    }
    // Consul lost its keys (or never had this cluster's): whole-cluster recovery, src/ha/recovery.ts.
    const step = recoveryStep({
      self: f.node.node,
      ...(mysql.identity !== undefined ? { identity: mysql.identity } : {}),
      readOnly: mysql.readOnly,
      ...(f.cluster !== undefined ? { cluster: f.cluster } : {}),
      ...(f.recovery !== undefined ? { recovery: f.recovery } : {}),
    });
    if (step.kind === "recover") {
      return { action: "recover-primary", identity: step.identity, reason: step.reason };
    }
    return mysql.readOnly
      ? { action: "report", healthy: false, reason: step.reason }
      : { action: "fence", releaseLock: false, reason: `${step.reason}; turning read-only` };
  }
  if (lock.record.node === f.node.node && !mysql.replica) {
    if (f.semiSync && mysql.readOnly) {
      // Read-only: mysqld restarted (or was fenced). Its recovery may have cut a tail a replica holds: the plan
      // keeps this node if it holds everything, else appoints the one that does.
      return {
        action: "failover",
        failedPrimary: f.node.node,
        reason: "this node was the last primary and the lock is free; with SEMI_SYNC a replica may hold a " +
          "transaction its restart cut: failing over, which keeps this node if it holds every transaction",
      };
    }
    return {
      action: "resume-primary",
      reason: "this node was the last primary and the lock is free: taking it",
    };
  }
  if (!mysql.readOnly) {
    return {
      action: "fence",
      releaseLock: false,
      reason: `nobody holds the primary lock (last: ${lock.record.node}): turning read-only until one does`,
    };
  }
  const held = f.failover;
  if (held?.paused) {
    return {
      action: "report",
      healthy: false,
      reason:
        `nobody holds the primary lock (last holder: ${lock.record.node}) and automatic failover is paused`,
    };
  }
  if (held?.quietReason) return { action: "report", healthy: false, reason: held.quietReason };
  return {
    action: "failover",
    failedPrimary: lock.record.node,
    reason: `nobody holds the primary lock (last holder: ${lock.record.node}): failing over`,
  };
}

function replicationHealth(
  r: ReplicaStatus,
  maxLag: number,
  suffix: string,
  seen: HealthFacts["replicaSeen"],
): HealthDecision {
  const { healthy, reason } = replicaHealth(r, maxLag, seen);
  return { action: "report", healthy, reason: `${reason}${suffix}` };
}

/**
 * Whether the quiet period after the last failover holds a new one back: only a failover that promoted the node
 * now failing counts (an attempt that promoted nobody does not), only within `quietPeriodMs` of it, and only
 * while that node is still alive (its member record exists); a primary that is truly gone is replaced at once.
 *
 * @param lastFailover The failover lock's record (`{at, promoted}`), if it holds one.
 * @param failed The node that held the primary lock last.
 * @param liveNodes The nodes whose member records exist.
 * @returns The reason to wait, or `undefined` to go ahead.
 */
export function quietPeriodReason(
  lastFailover: FailoverRecord | undefined,
  failed: string,
  now: number,
  quietPeriodMs: number,
  liveNodes: readonly string[],
): string | undefined {
  if (lastFailover === undefined) return undefined;
  const ago = now - lastFailover.at;
  if (lastFailover.promoted !== failed || !Number.isFinite(ago) || ago >= quietPeriodMs) return undefined;
  if (!liveNodes.includes(failed)) return undefined;
  return `the last failover, ${Math.round(ago / 1000)} s ago, promoted ${failed}, which is still alive ` +
    `(FAILOVER_QUIET_PERIOD ${quietPeriodMs / 1000} s): waiting for it to come back`;
}
