/**
 * The boot clock: a monotonic clock that every process on this machine shares, so that one hook run can
 * measure time from what an earlier one recorded in the state file (Deno's `performance.now()` starts again in
 * each process; the wall clock can be stepped). Linux: `/proc/uptime` (seconds since boot, counting suspend, in
 * hundredths), with the boot's id (`/proc/sys/kernel/random/boot_id`) so a reading from before a reboot is
 * never compared with one after it. Readings are compared on this machine only, never across machines.
 *
 * @module
 */

/** A reading of the boot clock. */
export interface BootTime {
  /** Which boot the reading belongs to: readings of different boots cannot be compared. */
  readonly boot: string;
  /** Milliseconds since that boot. */
  readonly ms: number;
}

/**
 * `/proc/uptime`'s text as milliseconds since boot: its first field, seconds with two decimals.
 *
 * @returns The milliseconds, or `undefined` when the text is not that.
 */
export function parseUptime(text: string): number | undefined {
  const m = /^\s*(\d+(?:\.\d+)?)\s/.exec(`${text} `);
  if (m === null) return undefined;
  const ms = Math.round(Number(m[1]) * 1000);
  return Number.isFinite(ms) ? ms : undefined;
}

/**
 * Reads the boot clock.
 *
 * @returns The reading, or `undefined` where there is no such clock (not Linux, no /proc): then nothing that
 *   needs it is done (a stale heartbeat is never seen, and the Consul session's expiry is what remains).
 */
export async function bootClock(): Promise<BootTime | undefined> {
  try {
    const [uptime, boot] = await Promise.all([
      Deno.readTextFile("/proc/uptime"),
      Deno.readTextFile("/proc/sys/kernel/random/boot_id").catch(() => "unknown"),
    ]);
    const ms = parseUptime(uptime);
    return ms === undefined ? undefined : { boot: boot.trim(), ms };
  } catch {
    return undefined;
  }
}
