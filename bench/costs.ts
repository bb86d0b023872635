/**
 * The arithmetic of the "what the checks cost" figures of `deno task bench` (bench/lifecycle_bench.ts), on
 * plain values: reading GNU time's output, medians, the share of one core the periodic checks take, and the
 * targets they are held against. Unit-tested in tests/unit/bench_costs_test.ts; nothing here measures.
 *
 * @module
 */

/** GNU time's format for one run: user seconds, system seconds, peak RSS in KiB. */
export const TIME_FORMAT = "%U %S %M";

/** What one process cost, as a whole (every thread, from exec to exit). */
export interface ProcessCost {
  /** Wall time, measured around the process by the caller. */
  readonly wallMs: number;
  /** CPU time, user + system. */
  readonly cpuMs: number;
  /** Peak resident set size (the kernel's ru_maxrss). */
  readonly peakKiB: number;
}

/**
 * Reads the last line GNU time wrote with {@link TIME_FORMAT} (it writes "Command exited with non-zero
 * status N" on a line of its own before it when the command failed).
 *
 * @throws {Error} when the text holds no such line.
 */
export function parseTimeOutput(text: string): { cpuMs: number; peakKiB: number } {
  const last = text.trim().split("\n").at(-1) ?? "";
  const m = /^(\d+(?:\.\d+)?) (\d+(?:\.\d+)?) (\d+)$/.exec(last.trim());
  if (!m) throw new Error(`GNU time wrote '${last}', not 'USER SYS MAXRSS': is /usr/bin/time GNU time?`);
  return { cpuMs: Math.round((Number(m[1]) + Number(m[2])) * 1000), peakKiB: Number(m[3]) };
}

/** The median (the upper one of an even count). */
export function median(xs: readonly number[]): number {
  if (xs.length === 0) throw new RangeError("median of no values");
  return [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
}

/** The 95th percentile (nearest rank). */
export function p95(xs: readonly number[]): number {
  if (xs.length === 0) throw new RangeError("p95 of no values");
  const sorted = [...xs].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil(sorted.length * 0.95) - 1)];
}

/** The median of each figure over several runs of one command. */
export function medianCost(runs: readonly ProcessCost[]): ProcessCost & { wallP95Ms: number } {
  return {
    wallMs: median(runs.map((r) => r.wallMs)),
    wallP95Ms: p95(runs.map((r) => r.wallMs)),
    cpuMs: median(runs.map((r) => r.cpuMs)),
    peakKiB: median(runs.map((r) => r.peakKiB)),
  };
}

/** A command ContainerPilot runs periodically on every node, with its CPU time per run. */
export interface PeriodicCheck {
  readonly name: string;
  readonly cpuMs: number;
  readonly intervalSeconds: number;
}

/**
 * The share of one core (0..1) that periodic commands take on one node: each one's CPU time per run over its
 * interval, summed.
 */
export function coreShare(checks: readonly PeriodicCheck[]): number {
  return checks.reduce((sum, c) => sum + c.cpuMs / (c.intervalSeconds * 1000), 0);
}

/**
 * The shipped intervals (containerpilot.json5): `health` every 5 s, the `snapshot` task every 5 min, the
 * `binlog-archive` task every BINLOG_ARCHIVE_INTERVAL (60 s by default), the watch
 * on `SERVICE_NAME-primary` every second (ContainerPilot's own poll of Consul; `on-change` runs only when it
 * sees a change, so it costs autopilot nothing in between).
 */
export const SHIPPED_INTERVALS = {
  healthSeconds: 5,
  snapshotSeconds: 300,
  watchSeconds: 1,
  archiveSeconds: 60,
} as const;

/** The targets the figures are held against. */
export const TARGETS = {
  /** A steady replica's `health` pass, wall time. */
  replicaHealthWallMs: 120,
  /** A steady replica's `health` pass, peak RSS. */
  replicaHealthPeakMiB: 55,
  /** `autopilot --version` and `autopilot --help`, wall time. */
  cliWallMs: 50,
  /** The periodic checks' share of one core per node. */
  coreShare: 0.03,
} as const;

/** "reached" when `value` is at most `limit`, else "not reached". */
export function verdict(value: number, limit: number): "reached" | "not reached" {
  return value <= limit ? "reached" : "not reached";
}
