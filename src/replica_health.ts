/**
 * The one rule for whether a replica is healthy: both replication threads run and it lags no more than
 * MAX_REPLICATION_LAG. The health decision (src/ha/decide.ts), `autopilot status` and the snapshot task
 * (which replica may take a snapshot) all ask it. Pure.
 *
 * Whether the replica follows the right source is not part of it: each caller knows what it expects.
 *
 * @module
 */
import type { ReplicaStatus } from "./mysql/flavour.ts";

/** What is wrong with a replica, for callers that word it their own way. */
export type ReplicaProblem =
  /** No replication source is configured. */
  | "not-replicating"
  /** The I/O or the SQL thread does not run. */
  | "stopped"
  /** Both threads run but the server does not know how far behind it is. */
  | "lag-unknown"
  /** Behind by more than the limit. */
  | "lagging";

/** The verdict; `reason` is one sentence, the one the health check logs. */
export type ReplicaHealth =
  | { readonly healthy: true; readonly reason: string }
  | { readonly healthy: false; readonly problem: ReplicaProblem; readonly reason: string };

/**
 * Whether a replica is healthy.
 *
 * @param status Its replication status; undefined (or no source host) when it replicates from nobody.
 * @param maxLagSeconds MAX_REPLICATION_LAG.
 * @returns The verdict and its reason.
 */
export function replicaHealth(status: ReplicaStatus | undefined, maxLagSeconds: number): ReplicaHealth {
  if (status === undefined || status.sourceHost === "") {
    return { healthy: false, problem: "not-replicating", reason: "replicates from nobody" };
  }
  const source = `${status.sourceHost}:${status.sourcePort}`;
  if (status.ioRunning !== "yes" || !status.sqlRunning) {
    return {
      healthy: false,
      problem: "stopped",
      reason: `replication from ${source} is not running ${threadsOf(status)}`,
    };
  }
  if (status.lagSeconds === null || status.lagSeconds > maxLagSeconds) {
    return {
      healthy: false,
      problem: status.lagSeconds === null ? "lag-unknown" : "lagging",
      reason: `replica of ${source} lags ${
        status.lagSeconds ?? "an unknown number of"
      } s (limit ${maxLagSeconds} s)`,
    };
  }
  return { healthy: true, reason: `replica of ${source}, ${status.lagSeconds} s behind` };
}

/**
 * The threads' state and their last errors, e.g. `(I/O thread: yes, SQL thread: no): SQL: Error 1950 ...`.
 */
export function threadsOf(status: ReplicaStatus): string {
  const errors = [
    status.lastIoError && `I/O: ${status.lastIoError}`,
    status.lastSqlError && `SQL: ${status.lastSqlError}`,
  ].filter(Boolean).join("; ");
  return `(I/O thread: ${status.ioRunning}, SQL thread: ${status.sqlRunning ? "yes" : "no"})${
    errors ? `: ${errors}` : ""
  }`;
}
