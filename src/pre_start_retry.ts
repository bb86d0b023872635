/**
 * `autopilot pre-start` retries by itself: ContainerPilot runs it once (`restarts: "never"`) and starts mysqld
 * only after it succeeds, so a pre-start that gave up would leave the container idle for ever, even after the
 * cause is gone (a good snapshot published, Consul reachable again, a directory made writable). These are the
 * pure parts of that loop: when to try again, what to record, and how `autopilot status` words it.
 *
 * The wait after attempt N is 2 s doubled N-1 times, at most 60 s: 2, 4, 8, 16, 32, 60, 60, … A cause fixed
 * within the first minute is noticed within seconds; a node that fails for hours asks Consul and the store
 * about once a minute. There is no jitter: nodes fail at different moments anyway, and a fixed schedule is
 * what the log and `autopilot status` can state exactly.
 *
 * @module
 */
import type { PreStartFailure } from "./state.ts";

/** The first wait, in seconds. */
export const RETRY_FIRST_SECONDS = 2;
/** The longest wait, in seconds. */
export const RETRY_MAX_SECONDS = 60;

/**
 * How long to wait after a failed attempt before the next one.
 *
 * @param attempt The number of the attempt that failed (1 for the first).
 * @returns Seconds: 2, 4, 8, 16, 32, then 60 for every later attempt.
 */
export function retryDelaySeconds(attempt: number): number {
  if (!Number.isInteger(attempt) || attempt < 1) {
    throw new RangeError(`attempt must be 1 or more: ${attempt}`);
  }
  // 2^30 s is far beyond the cap: stop doubling there rather than overflow to Infinity
  return Math.min(RETRY_MAX_SECONDS, RETRY_FIRST_SECONDS * 2 ** Math.min(attempt - 1, 30));
}

/**
 * The record of a failed attempt (written to the state dir for `autopilot status`).
 *
 * @param node NODE_NAME.
 * @param since When the first failed attempt of this run ended (epoch ms).
 * @param attempt The number of the attempt that failed.
 * @param reason The line logged for it.
 * @param now When it failed (epoch ms).
 */
export function failureRecord(
  node: string,
  since: number,
  attempt: number,
  reason: string,
  now: number,
): PreStartFailure {
  return {
    node,
    since: new Date(since).toISOString(),
    attempt,
    reason,
    nextAttemptAt: new Date(now + retryDelaySeconds(attempt) * 1000).toISOString(),
  };
}

/** The line pre-start logs for a failed attempt: number, reason, and when it tries again. */
export function failureLine(attempt: number, reason: string): string {
  return `Attempt ${attempt} failed: ${reason}; trying again in ${retryDelaySeconds(attempt)} s`;
}

/**
 * How `autopilot status` states a node's pre-start failure.
 *
 * @param f The record pre-start wrote.
 * @param now Epoch ms.
 */
export function describePreStartFailure(f: PreStartFailure, now: number): string {
  const next = Date.parse(f.nextAttemptAt);
  const inSeconds = Math.round((next - now) / 1000);
  const when = Number.isNaN(next) ? "" : inSeconds >= 0
    ? `; next attempt in ${inSeconds} s`
    // a record left by a pre-start that was killed (kill -9) says so itself: its next attempt never came
    : `; its next attempt was due ${-inSeconds} s ago: is pre-start still running?`;
  const failing = f.attempt === 1
    ? `attempt 1 failed at ${f.since.replace(/\.\d+Z$/, "Z")}`
    : `${f.attempt} attempts failed since ${f.since.replace(/\.\d+Z$/, "Z")}`;
  return `${f.node}: pre-start cannot finish (${failing}): ${f.reason}${when}`;
}
