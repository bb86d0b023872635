/**
 * The failover bench's figures, computed from plain records (acknowledged writes, read_only samples): no
 * server here, so tests/unit/failover_figures_test.ts checks them on plain data.
 *
 * @module
 */

/** One write the server acknowledged: its key, when (ms, one monotonic clock) and which node took it. */
export interface Ack {
  readonly id: number;
  readonly t: number;
  readonly node: string;
}

/** One round of the read_only sampler: per node, writable (true), read-only (false) or no answer (undefined). */
export interface Sample {
  readonly t: number;
  readonly writable: readonly (boolean | undefined)[];
}

/** Time from `t0` to the first write acknowledged after it; undefined when none was. */
export function writeGap(acks: readonly Ack[], t0: number): number | undefined {
  const first = acks.find((a) => a.t > t0);
  return first === undefined ? undefined : first.t - t0;
}

/**
 * The longest time in [from, to] without an acknowledged write: between `from` and the first ack, between two
 * consecutive acks, and between the last ack and `to`.
 */
export function longestRefusal(acks: readonly Ack[], from: number, to: number): number {
  let last = from;
  let longest = 0;
  for (const a of acks) {
    if (a.t <= from) continue;
    if (a.t > to) break;
    longest = Math.max(longest, a.t - last);
    last = a.t;
  }
  return Math.max(longest, to - last);
}

/**
 * The write gap: the longest run without an acknowledged write in [from, to] (so a write in flight at the
 * disruption, acknowledged just after it, does not hide the outage that follows); undefined when that run
 * lasts until `to` (writes never resumed).
 */
export function writeOutage(acks: readonly Ack[], from: number, to: number): number | undefined {
  const longest = longestRefusal(acks, from, to);
  const last = acks.filter((a) => a.t > from && a.t <= to).at(-1);
  return last === undefined || to - last.t >= longest ? undefined : longest;
}

/** How many runs without an acknowledged write in [from, to] lasted longer than `ms`. */
export function refusalsOver(acks: readonly Ack[], from: number, to: number, ms: number): number {
  let last = from;
  let n = 0;
  for (const a of acks) {
    if (a.t <= from) continue;
    if (a.t > to) break;
    if (a.t - last > ms) n++;
    last = a.t;
  }
  return to - last > ms ? n + 1 : n;
}

/** The samples in [from, to] in which two or more nodes answered writable (a node not answering is not). */
export function twoWritable(samples: readonly Sample[], from = -Infinity, to = Infinity): Sample[] {
  return samples.filter((s) => s.t >= from && s.t <= to && s.writable.filter((w) => w === true).length > 1);
}

/** The acknowledged keys missing from `stored`. */
export function lost(acks: readonly Ack[], stored: Iterable<number>): number[] {
  const have = new Set(stored);
  return acks.map((a) => a.id).filter((id) => !have.has(id));
}

/** The nearest-rank percentile (p in 0..1) of `xs`; undefined when empty. */
export function percentile(xs: readonly number[], p: number): number | undefined {
  if (xs.length === 0) return undefined;
  const sorted = [...xs].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(p * sorted.length) - 1))];
}

/** Milliseconds as seconds with one decimal, e.g. `4.2 s`; `-` for undefined. */
export function secs(ms: number | undefined): string {
  return ms === undefined ? "-" : `${(ms / 1000).toFixed(1)} s`;
}

/** What one trial measured. `gapMs` undefined: writes never resumed within the trial's bound. */
export interface TrialFigures {
  readonly gapMs: number | undefined;
  readonly longestRefusedMs: number;
  readonly twoWritable: number;
  readonly acked: number;
  /** Acknowledged keys not on the final primary; undefined when there was no primary to read them from. */
  readonly lost: number | undefined;
  /** The event's own figure, in words (e.g. "old primary a replica again after 6.1 s"). */
  readonly extra: string;
  /** The same as a category to count over trials (e.g. "old primary a replica again after the kill")... */
  readonly outcome: string;
  /** ...and its time, when it has one. */
  readonly outcomeMs?: number;
}

/**
 * The event's own figure over its trials: each outcome with how many trials had it, and for timed ones their
 * p50 / worst, e.g. `old primary a replica again after the heal 9 of 10 (p50 6.1 s, worst 14.0 s); not a
 * replica within 120 s 1 of 10`.
 */
export function outcomes(trials: readonly Pick<TrialFigures, "outcome" | "outcomeMs">[]): string {
  const by = new Map<string, number[]>();
  const counts = new Map<string, number>();
  for (const t of trials) {
    counts.set(t.outcome, (counts.get(t.outcome) ?? 0) + 1);
    if (t.outcomeMs !== undefined) by.set(t.outcome, [...(by.get(t.outcome) ?? []), t.outcomeMs]);
  }
  return [...counts].map(([o, n]) => {
    const times = by.get(o) ?? [];
    const timed = times.length === 0
      ? ""
      : times.length === 1
      ? ` (${secs(times[0])})`
      : ` (p50 ${secs(percentile(times, 0.5))}, worst ${secs(Math.max(...times))})`;
    return `${o}: ${n} of ${trials.length}${timed}`;
  }).join("; ");
}

/** One event's summary: the write gap's p50 / p95 / worst over its trials, and the counts summed. */
export interface EventSummary {
  readonly trials: number;
  /** Trials in which writes never resumed within the bound. */
  readonly never: number;
  readonly p50: number | undefined;
  readonly p95: number | undefined;
  readonly worst: number | undefined;
  readonly twoWritable: number;
  readonly acked: number;
  /** Summed over trials that could be read back; `unread` trials could not. */
  readonly lost: number;
  readonly unread: number;
}

export function summarize(trials: readonly TrialFigures[]): EventSummary {
  const gaps = trials.map((t) => t.gapMs).filter((g): g is number => g !== undefined);
  return {
    trials: trials.length,
    never: trials.length - gaps.length,
    p50: percentile(gaps, 0.5),
    p95: percentile(gaps, 0.95),
    worst: gaps.length === 0 ? undefined : Math.max(...gaps),
    twoWritable: trials.reduce((n, t) => n + t.twoWritable, 0),
    acked: trials.reduce((n, t) => n + t.acked, 0),
    lost: trials.reduce((n, t) => n + (t.lost ?? 0), 0),
    unread: trials.filter((t) => t.lost === undefined).length,
  };
}

/** `p50 / p95 / worst`, with the trials that never resumed said as such (a figure, not a crash). */
export function gapText(s: EventSummary, boundMs: number): string {
  const never = s.never > 0 ? `; ${s.never} of ${s.trials} never within ${secs(boundMs)}` : "";
  if (s.never === s.trials) return `never within ${secs(boundMs)} (${s.trials} of ${s.trials})`;
  return `${secs(s.p50)} / ${secs(s.p95)} / ${secs(s.worst)}${never}`;
}

/** One Markdown table row per event. */
export function markdownTable(
  rows: readonly { event: string; summary: EventSummary; boundMs: number; extra: string }[],
): string {
  const lines = [
    "| event | write gap p50 / p95 / worst | trials | two writable samples | acked lost | event figure |",
    "| --- | --- | --- | --- | --- | --- |",
  ];
  for (const r of rows) {
    const s = r.summary;
    const lostText = `${s.lost} of ${s.acked}${s.unread > 0 ? ` (${s.unread} trials unread)` : ""}`;
    lines.push(
      `| ${r.event} | ${gapText(s, r.boundMs)} | ${s.trials} | ${s.twoWritable} | ${lostText} | ${r.extra} |`,
    );
  }
  return lines.join("\n");
}
