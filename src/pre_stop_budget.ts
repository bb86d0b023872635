/**
 * pre-stop's time limits, on their own so that the command table's help text (commands.ts) can
 * name them without loading pre-stop itself.
 *
 * @module
 */

/** How long the stopping primary waits for a replica to catch up before it gives up handing over. */
export const HANDOVER_TIMEOUT_MS = 20_000;
/** How long pre-stop waits for a health pass still running on this node to finish (none starts after it). */
export const PASS_LOCK_WAIT_MS = 5_000;
/** How long pre-stop waits for mysqld to exit after SHUTDOWN. */
export const SHUTDOWN_WAIT_MS = 25_000;
/**
 * How long the hand-over may take in all (Consul calls, the switchover's wait, its queries) before pre-stop
 * goes on to the shutdown without it.
 */
export const HANDOVER_BUDGET_MS = HANDOVER_TIMEOUT_MS + 3_000;
/**
 * How long pre-stop may take to tell Consul that mysqld is down (hooks/pre_stop.ts): the lock record marked
 * `fenced` on a node that still holds it, the session ended on any other.
 */
export const MARK_BUDGET_MS = 3_000;
/**
 * The most pre-stop takes without BACKUP_ON_STOP (the pass lock, the hand-over, the shutdown, the mark): the
 * `pre-stop` job's timeout in containerpilot.json5 (60 s) is above it, so pre-stop always gets to the shutdown.
 */
export const PRE_STOP_BUDGET_MS = PASS_LOCK_WAIT_MS + HANDOVER_BUDGET_MS + SHUTDOWN_WAIT_MS + MARK_BUDGET_MS;
