/**
 * The boot clock: a monotonic clock that every process on this machine shares, so that one hook run can
 * measure time from what an earlier one recorded in the state file (Deno's `performance.now()` starts again in
 * each process; the wall clock can be stepped). It is the system's uptime (`Deno.osUptime()`, the `sysinfo`
 * call on Linux: whole seconds, the same in every container of the machine). Readings are compared on this
 * machine only, never across machines.
 *
 * A reboot between two readings makes the later one smaller than the time that really passed (uptime starts
 * again at 0), never larger: a duration measured across a reboot is too short, which only ever delays what
 * waits for it. A reading smaller than an earlier one says a reboot happened.
 *
 * (`/proc/uptime` has hundredths, but Deno grants no read of `/proc` short of every permission.)
 *
 * @module
 */

/** A reading of the boot clock. */
export interface BootTime {
  /** Milliseconds since boot, as read: the real time is within `resolutionMs` above it. */
  readonly ms: number;
  /** How coarse the reading is: a duration between two readings may be this much shorter than it seems. */
  readonly resolutionMs: number;
}

/** The clock's resolution: `Deno.osUptime()` counts whole seconds. */
export const BOOT_CLOCK_RESOLUTION_MS = 1000;

/**
 * A reading from an uptime in seconds (pure, for tests).
 *
 * @returns The reading, or `undefined` for a value that is not an uptime.
 */
export function bootTimeOf(uptimeSeconds: number): BootTime | undefined {
  if (!Number.isFinite(uptimeSeconds) || uptimeSeconds < 0) return undefined;
  return { ms: Math.floor(uptimeSeconds * 1000), resolutionMs: BOOT_CLOCK_RESOLUTION_MS };
}

/**
 * Reads the boot clock.
 *
 * @returns The reading, or `undefined` where there is none (not permitted, not supported): then nothing that
 *   needs it is done (a stale heartbeat is never seen, and the Consul session's expiry is what remains).
 */
export function bootClock(): BootTime | undefined {
  try {
    return bootTimeOf(Deno.osUptime());
  } catch {
    return undefined;
  }
}

/**
 * The boot clock in milliseconds, for timestamps kept in the state file (the failsafe's start, a replica's
 * last good observation). Where the clock cannot be read, the wall clock stands in: such timestamps then only
 * bound how long a replica reconnecting is taken as healthy, never whether a primary may write.
 */
export function bootClockMs(): number {
  return bootClock()?.ms ?? Date.now();
}

/** A reading with when this machine booted (epoch ms by its wall clock), to tell two boots apart. */
export interface BootInstant {
  /** When this machine booted (epoch ms, its own wall clock: now minus the uptime). */
  readonly bootAt: number;
  /** The uptime (ms; whole seconds, see {@link BOOT_CLOCK_RESOLUTION_MS}). */
  readonly ms: number;
}

/** The boot clock now, with the boot's start. */
export function bootInstant(): BootInstant {
  const ms = Deno.osUptime() * 1000;
  return { bootAt: Date.now() - ms, ms };
}
