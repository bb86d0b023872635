/**
 * The one rule for whether a replica is healthy: both replication threads run and it lags no more than
 * MAX_REPLICATION_LAG. The health decision (src/ha/decide.ts), `autopilot status` and the snapshot task
 * (which replica may take a snapshot) all ask it. Pure.
 *
 * While its source is being replaced (killed, cut, failed over) a replica's I/O thread reconnects. The health
 * decision passes the last pass's observation of running threads ({@link LastReplicated}): such a replica stays
 * healthy (readable, in the `mysql` service) while its SQL thread runs and the time since that observation
 * plus the lag it had then stays within MAX_REPLICATION_LAG, a bound on how old its newest missing write can
 * be. `autopilot status` and the snapshot task pass none: to them a reconnecting replica is not running.
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

/** A pass's observation of a replica with both threads running and a known lag. */
export interface LastReplicated {
  /** `host:port` it replicated from. */
  readonly source: string;
  readonly lagSeconds: number;
  /** When, on a clock comparable with `now` (the boot clock, ms). */
  readonly at: number;
}

/**
 * Whether a replica is healthy.
 *
 * @param status Its replication status; undefined (or no source host) when it replicates from nobody.
 * @param maxLagSeconds MAX_REPLICATION_LAG.
 * @param seen The last observation of its threads running, and the same clock now: a replica whose I/O thread
 *   reconnects stays healthy on it while `(now - at) / 1000 + lagSeconds` is within the limit.
 * @returns The verdict and its reason.
 */
export function replicaHealth(
  status: ReplicaStatus | undefined,
  maxLagSeconds: number,
  seen?: { readonly last: LastReplicated; readonly now: number },
): ReplicaHealth {
  if (status === undefined || status.sourceHost === "") {
    return { healthy: false, problem: "not-replicating", reason: "replicates from nobody" };
  }
  const source = `${status.sourceHost}:${status.sourcePort}`;
  const stale = seen && reconnecting(status) ? staleSeconds(seen.last, seen.now) : undefined;
  if (stale !== undefined && stale <= maxLagSeconds) {
    return {
      healthy: true,
      reason: `replica of ${source} reconnecting ${threadsOf(status)}; its data is at most ${
        Math.ceil(stale)
      } s old (limit ${maxLagSeconds} s)`,
    };
  }
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

/** Its SQL thread runs and its I/O thread is connecting, or stopped by an error (not by a STOP REPLICA). */
function reconnecting(s: ReplicaStatus): boolean {
  return s.sqlRunning && (s.ioRunning === "connecting" || (s.ioRunning === "no" && s.lastIoError !== ""));
}

/** How old the replica's newest missing write can be: seconds since it was seen, plus its lag then. */
function staleSeconds(last: LastReplicated, now: number): number | undefined {
  const ago = (now - last.at) / 1000;
  // A clock that went backwards (another boot) says nothing.
  if (!Number.isFinite(ago) || ago < 0 || !(last.lagSeconds >= 0)) return undefined;
  return ago + last.lagSeconds;
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
