/**
 * The primary's heartbeat, as the other nodes see it. Pure: plain values in, plain values out.
 *
 * The lock holder rewrites the primary lock every pass (`heartbeatPrimary`, src/cluster_kv.ts), which moves the
 * key's ModifyIndex, and extends its in-server lease only from such a write that succeeded (src/ha/actions.ts).
 * Every other node records, in its state file, the index it last saw and when it first saw it on its own boot
 * clock (src/boot_clock.ts). A holder whose index has not moved for {@link staleAfterMs} on that clock is stale:
 * its lease, which began before the write that made that index, has lapsed and the fence event has turned it
 * read-only (see src/ha/takeover.ts for the argument). No clock is ever compared across machines.
 *
 * @module
 */
import type { BootTime } from "../boot_clock.ts";
import type { PrimaryLock } from "../cluster_kv.ts";

/** What an observer recorded of the primary lock: the holder, the index, and when it first saw that index. */
export interface LockObservation {
  readonly session: string;
  readonly index: number;
  /** The boot clock at the first sight (ms since boot, as read). */
  readonly seenAt: number;
}

/** How much longer than the lease an observer waits: the fence event's 1 s period, and a second of margin. */
export const STALE_MARGIN_MS = 2000;

/** How long a holder's heartbeat may stand still before it is stale: the lease, and {@link STALE_MARGIN_MS}. */
export function staleAfterMs(leaseMs: number): number {
  return leaseMs + STALE_MARGIN_MS;
}

/**
 * The observation to keep after this pass's read: the one recorded while the same session holds the lock at
 * the same index (with a clock that did not go back: no reboot since), else a new one from now.
 *
 * @returns `undefined` when nobody holds the lock, or the lock has no index (nothing to watch).
 */
export function observeLock(
  recorded: LockObservation | undefined,
  lock: PrimaryLock,
  now: BootTime,
): LockObservation | undefined {
  if (lock.session === undefined || lock.modifyIndex === undefined) return undefined;
  if (
    recorded !== undefined && recorded.session === lock.session && recorded.index === lock.modifyIndex &&
    recorded.seenAt <= now.ms
  ) {
    return recorded;
  }
  return { session: lock.session, index: lock.modifyIndex, seenAt: now.ms };
}

/**
 * Whether the holder's heartbeat has stood still for longer than {@link staleAfterMs}, counting only what the
 * clock proves: the time between the readings less the clock's resolution.
 *
 * @param recorded What this node recorded (in an earlier pass) of the lock.
 * @param lock The lock as read now.
 * @param now The boot clock now.
 * @returns How long the index has not moved at the least (ms) when it is stale; `undefined` when it is not (or
 *   cannot be told: another index or holder, a clock that went back).
 */
export function heartbeatStale(
  recorded: LockObservation | undefined,
  lock: PrimaryLock,
  now: BootTime,
  leaseMs: number,
): number | undefined {
  if (recorded === undefined || lock.session === undefined) return undefined;
  if (recorded.session !== lock.session || recorded.index !== lock.modifyIndex) return undefined;
  const still = now.ms - recorded.seenAt - now.resolutionMs;
  return still > staleAfterMs(leaseMs) ? still : undefined;
}
