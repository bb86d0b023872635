/**
 * The failover lock (FAILOVER_LOCK_KEY): held while a failover or a switchover moves the primary role, so that
 * only one runs at a time. When released it keeps the record of the last attempt that moved the role
 * (`{node, at, promoted, …}`): the quiet period (FAILOVER_QUIET_PERIOD) and `autopilot status` read it.
 *
 * An attempt that moves nothing (it found a primary already appointed, the target lacked transactions, no node
 * could be chosen) leaves the record it found. Before, such an attempt wrote its own record without `promoted`:
 * a second node's failover, decided a moment before the first appointed a primary, erased the first one's
 * record, and with it the quiet period that should have held back a second failover.
 *
 * @module
 */
import type { ClusterKv, FailoverRecord } from "../cluster_kv.ts";

/** A held failover lock. */
export interface FailoverLockHold {
  /**
   * Releases the lock (never throws: a lock that cannot be released goes with the session). It keeps
   * `record(promoted)` when the attempt gave the primary role to `promoted`, else the record it found. Only the
   * first call does anything.
   */
  release(promoted?: string): Promise<void>;
}

/**
 * Takes the failover lock if no one holds it and nobody wrote it since it was read (one Consul transaction).
 *
 * @param kv The cluster's keys.
 * @param session This node's session.
 * @param record The value to write: while running (no argument), and once the role moved (`promoted`).
 * @returns The hold, or `undefined` when another node holds it or has just changed it.
 * @throws {SessionGoneError} when the session does not exist.
 */
export async function takeFailoverLock(
  kv: ClusterKv,
  session: string,
  record: (promoted?: string) => FailoverRecord,
): Promise<FailoverLockHold | undefined> {
  const found = await kv.failoverLock();
  if (!(await kv.acquireFailoverLock(session, record(), found))) return undefined;
  let released = false;
  return {
    async release(promoted?: string): Promise<void> {
      if (released) return;
      released = true;
      const value = promoted !== undefined || found.value === undefined ? record(promoted) : found.value;
      await kv.releaseFailoverLock(session, value).catch(() => {});
    },
  };
}
