/**
 * Point-in-time recovery as pure decisions over the archive's index: which snapshot and which archived
 * binlogs reach a point, which windows of time the archive can restore to (and where it has gaps), and which
 * archived binlogs no retained snapshot needs.
 *
 * Histories are told apart by full binlog states (MariaDB: the last seq_no per domain *and server_id*; MySQL:
 * GTID sets), never by positions: two primaries that wrote the same seq_no after a failover have different
 * states. Along one history, states only grow, so "segment B continues from state X" reads as "B's start is
 * contained in X and B's end strictly contains X". The point to stop at is a position (MariaDB: the last GTID
 * per domain, what `mariadb-binlog --stop-position` takes; MySQL: a set).
 *
 * @module
 */
import type { Flavour } from "../mysql/flavour.ts";
import {
  type GtidComparison,
  type GtidSet,
  MariadbGtidSet,
  MysqlGtidSet,
  parseGtidSet,
} from "../mysql/gtid.ts";
import type { Segment } from "./segment.ts";
import type { Manifest } from "../backup/manifest.ts";

/** What a restore aims at. */
export type RecoveryTarget =
  | { readonly kind: "end" }
  | { readonly kind: "time"; readonly at: Date }
  | { readonly kind: "gtid"; readonly gtid: string };

/** A snapshot as the planner sees it. */
export interface SnapshotPoint {
  readonly name: string;
  /** When its backup started (ISO 8601). */
  readonly createdAt: string;
  /** Its full binlog state (MariaDB: the manifest's binlogState, else its gtid); MySQL: its GTID set. */
  readonly state: string;
}

/** A snapshot as the planner sees it: MariaDB's full binlog state when the manifest has it. */
export function snapshotPoint(m: Manifest): SnapshotPoint {
  return { name: m.name, createdAt: m.createdAt, state: m.binlogState ?? m.gtid };
}

/** Replay one archived binlog: the transactions after `after` (what is applied already), up to `until`. */
export interface ReplayStep {
  readonly segment: Segment;
  /** The position applied before this step (MariaDB: `--start-position`; MySQL: `--exclude-gtids`). */
  readonly after: string;
  /** The last step's stop position, inclusive (MariaDB: `--stop-position`; MySQL: `--include-gtids`). */
  readonly until?: string;
}

/** How to reach a point. */
export interface RecoveryPlan {
  readonly snapshot: SnapshotPoint;
  readonly steps: readonly ReplayStep[];
  /** The position the restore reaches (the target's, or the archive's end). */
  readonly position: string;
  /** The Unix second of the last transaction it replays (the snapshot's own time when it replays none). */
  readonly lastTime?: number;
  /** A line to print beside the restore, e.g. when the time asked for is past the archive's end. */
  readonly note?: string;
}

/** No point of the archive matches the target; the message says what can be reached instead. */
export class RecoveryPointError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "RecoveryPointError";
  }
}

function parse(flavour: Flavour, text: string): GtidSet {
  return parseGtidSet(flavour, text);
}

function compare(flavour: Flavour, a: string, b: string): GtidComparison {
  const x = parse(flavour, a);
  const y = parse(flavour, b);
  return x instanceof MariadbGtidSet
    ? x.compare(y as MariadbGtidSet)
    : (x as MysqlGtidSet).compare(y as MysqlGtidSet);
}

function within(flavour: Flavour, a: string, b: string): boolean {
  const c = compare(flavour, a, b);
  return c === "subset" || c === "equal";
}

/** A state's position: MariaDB the last GTID per domain; MySQL the set itself. */
export function positionOf(flavour: Flavour, state: string): string {
  const s = parse(flavour, state);
  return s instanceof MariadbGtidSet ? s.toPosition().toString() : s.toString();
}

/** Whether every transaction up to position `p` is in `state` (MariaDB: per domain, by seq_no). */
function reaches(flavour: Flavour, state: string, p: string): boolean {
  if (flavour === "mysql") return within(flavour, p, state);
  const have = new Map<number, bigint>();
  for (const g of MariadbGtidSet.parse(positionOf(flavour, state)).entries()) have.set(g.domain, g.seqNo);
  return MariadbGtidSet.parse(p).entries().every((g) => (have.get(g.domain) ?? -1n) >= g.seqNo);
}

/**
 * A snapshot's state as a full binlog state along `goal`'s history. A MariaDB manifest without binlogState
 * gives a position only (the last GTID per domain), which no segment's start state (per server_id) is
 * contained in once a domain has had two primaries; so the start state of every segment on that history that
 * holds the position (starts at or before it, ends at or after it) is added: each is a state the history
 * passed through before the position. A full state is returned as it is; MySQL states are sets already.
 */
export function fullState(
  flavour: Flavour,
  state: string,
  segments: readonly Segment[],
  goal: string,
): string {
  if (flavour === "mysql") return state;
  const p = positionOf(flavour, state);
  let full = MariadbGtidSet.parse(state);
  for (const s of segments) {
    if (!within(flavour, s.endState, goal) || !within(flavour, p, s.endState)) continue;
    if (!reaches(flavour, p, positionOf(flavour, s.startState))) continue;
    full = full.union(MariadbGtidSet.parse(s.startState));
  }
  return full.toString();
}

/** The union of positions (MariaDB: the highest seq_no per domain). */
function unionPositions(flavour: Flavour, ps: readonly string[]): string {
  if (flavour === "mysql") {
    return ps.reduce((acc, p) => acc.union(MysqlGtidSet.parse(p)), MysqlGtidSet.empty()).toString();
  }
  const best = new Map<number, string>();
  const seq = new Map<number, bigint>();
  for (const p of ps) {
    for (const g of MariadbGtidSet.parse(p).entries()) {
      if ((seq.get(g.domain) ?? -1n) < g.seqNo) {
        seq.set(g.domain, g.seqNo);
        best.set(g.domain, `${g.domain}-${g.serverId}-${g.seqNo}`);
      }
    }
  }
  return [...best.keys()].sort((a, b) => a - b).map((d) => best.get(d)).join(",");
}

/** The newest segment: the current primary's history ends there. */
export function newestSegment(segments: readonly Segment[]): Segment | undefined {
  let newest: Segment | undefined;
  for (const s of segments) {
    if (
      newest === undefined || s.archivedAt > newest.archivedAt ||
      (s.archivedAt === newest.archivedAt && (s.lastTime ?? 0) > (newest.lastTime ?? 0))
    ) newest = s;
  }
  return newest;
}

/**
 * Where the current history ends: the archive record's end state when Consul's record is given (the current
 * primary's archiver wrote it last), else the newest segment's (by archivedAt, a guess an old primary's late
 * upload of its lost tail can fool). The segment returned is the newest on that history.
 *
 * @param head The archive record's endState (`SERVICE_NAME-binlog-archive`), if it was read.
 */
export function historyHead(
  flavour: Flavour,
  segments: readonly Segment[],
  head?: string,
): { goal?: string; newest?: Segment } {
  if (head === undefined) {
    const newest = newestSegment(segments);
    return newest === undefined ? {} : { goal: newest.endState, newest };
  }
  const newest = newestSegment(segments.filter((s) => within(flavour, s.endState, head)));
  return { goal: head, ...(newest !== undefined ? { newest } : {}) };
}

/** Where a chain of segments from a state ended. */
export interface Chain {
  readonly segments: readonly Segment[];
  /** The state reached. */
  readonly state: string;
  /** The last transaction's Unix second, if the chain holds any. */
  readonly lastTime?: number;
  /** Whether it reached the goal (else: no archived binlog continues from `state`: a gap). */
  readonly complete: boolean;
}

/**
 * Follows the archive from `from` along the history that leads to `goal`, until `done` says the point is
 * reached or no segment continues (a gap).
 *
 * @param goal A full state on the history to follow (segments diverging from it are never taken).
 * @param done Whether the state reached is far enough. @default reaching `goal`
 */
export function followArchive(
  flavour: Flavour,
  from: string,
  segments: readonly Segment[],
  goal: string,
  done: (state: string) => boolean = (s) => within(flavour, goal, s),
): Chain {
  const taken: Segment[] = [];
  let state = from;
  let lastTime: number | undefined;
  while (!done(state)) {
    let best: Segment | undefined;
    for (const s of segments) {
      if (!within(flavour, s.startState, state) || compare(flavour, s.endState, state) !== "superset") {
        continue;
      }
      if (!within(flavour, s.endState, goal)) continue;
      if (best === undefined || compare(flavour, s.endState, best.endState) === "superset") best = s;
    }
    if (best === undefined) return { segments: taken, state, ...time(lastTime), complete: false };
    taken.push(best);
    state = best.endState;
    if (best.lastTime !== undefined) lastTime = Math.max(lastTime ?? 0, best.lastTime);
  }
  return { segments: taken, state, ...time(lastTime), complete: true };
}

function time(t: number | undefined): { lastTime?: number } {
  return t === undefined ? {} : { lastTime: t };
}

/** `1764669000` → `2026-12-02T09:50:00Z`. */
export function isoSecond(unix: number): string {
  return new Date(unix * 1000).toISOString().replace(/\.000Z$/, "Z");
}

/**
 * The position at time `at` along the history of `goal`: after every transaction whose binlog timestamp (a
 * whole second) is before `at`, as the segments' per-second marks give it; `""` when none is.
 *
 * @throws {RecoveryPointError} when a segment on that history that holds transactions near `at` has no marks.
 */
export function positionAt(flavour: Flavour, segments: readonly Segment[], goal: string, at: Date): string {
  const before: string[] = [];
  for (const s of segments) {
    if (!within(flavour, s.endState, goal) || s.firstTime === undefined) continue;
    if (s.firstTime * 1000 >= at.getTime()) continue;
    if (s.marks === undefined) {
      if ((s.lastTime ?? 0) * 1000 < at.getTime()) {
        before.push(positionOf(flavour, s.endState));
        continue;
      }
      throw new RecoveryPointError(
        `Cannot restore to ${at.toISOString()}: the archived binlog ${s.key} spans it and has no time marks ` +
          `(too many seconds of writes); restore to a GTID instead (--to-gtid)`,
      );
    }
    before.push(positionOf(flavour, s.startState));
    for (const [second, position] of s.marks) if (second * 1000 < at.getTime()) before.push(position);
  }
  return before.length === 0 ? "" : unionPositions(flavour, before);
}

/**
 * Whether the archive holds, along `goal`'s history, a transaction that is in `state` but not at or before
 * position `p`.
 */
function archivedBetween(
  flavour: Flavour,
  segments: readonly Segment[],
  goal: string,
  p: string,
  state: string,
): boolean {
  const held = segments.filter((s) => s.transactions > 0 && within(flavour, s.endState, goal));
  if (flavour === "mysql") {
    const wanted = MysqlGtidSet.parse(state).subtract(MysqlGtidSet.parse(p));
    return held.some((s) => {
      const d = MysqlGtidSet.parse(s.endState).subtract(MysqlGtidSet.parse(s.startState));
      return !d.subtract(wanted).equals(d);
    });
  }
  const seqs = (text: string) => {
    const m = new Map<number, bigint>();
    for (const g of MariadbGtidSet.parse(positionOf(flavour, text)).entries()) m.set(g.domain, g.seqNo);
    return m;
  };
  const from = seqs(p);
  const to = seqs(state);
  return held.some((s) => {
    const start = seqs(s.startState);
    return [...seqs(s.endState)].some(([d, end]) =>
      (start.get(d) ?? -1n) < (to.get(d) ?? -1n) && end > (from.get(d) ?? -1n)
    );
  });
}

/** MariaDB position `p` with only the domains `named` names. */
function onlyDomains(p: string, named: string): string {
  const domains = new Set(MariadbGtidSet.parse(named).domains());
  return MariadbGtidSet.parse(p).entries().filter((g) => domains.has(g.domain))
    .map((g) => `${g.domain}-${g.serverId}-${g.seqNo}`).join(",");
}

/**
 * A MariaDB GTID target as a full stop position for the last step: `mariadb-binlog --stop-position` prints
 * nothing of a domain it does not name, while the earlier steps replay every domain whole; so a domain the
 * target leaves out stays where the last step starts, which is where it stood when the target was written
 * only if the last binlog holds none of its transactions.
 *
 * @throws {RecoveryPointError} when the last binlog holds transactions of a domain the target does not name.
 */
function completeTarget(gtid: string, last: ReplayStep): string {
  const named = new Set(MariadbGtidSet.parse(gtid).domains());
  const before = new Map(MariadbGtidSet.parse(last.after).entries().map((g) => [g.domain, g]));
  const after = MariadbGtidSet.parse(positionOf("mariadb", last.segment.endState)).entries();
  const parts = [gtid];
  for (const g of after) {
    if (named.has(g.domain)) continue;
    const b = before.get(g.domain);
    if (b === undefined || b.seqNo !== g.seqNo) {
      const from = b === undefined ? "none" : `${b.domain}-${b.serverId}-${b.seqNo}`;
      throw new RecoveryPointError(
        `--to-gtid ${gtid} names no GTID of domain ${g.domain}, and the archived binlog that holds it ` +
          `(${last.segment.key}) also holds transactions of domain ${g.domain} (from ${from} to ` +
          `${g.domain}-${g.serverId}-${g.seqNo}): give the last GTID of every domain, e.g. ${gtid},` +
          `${g.domain}-${g.serverId}-${g.seqNo}`,
      );
    }
    parts.push(`${b.domain}-${b.serverId}-${b.seqNo}`);
  }
  return MariadbGtidSet.parse(parts.join(",")).toString();
}

/** The Unix second of the last transaction at or before position `p` along `goal`'s history, if marked. */
function timeOf(flavour: Flavour, segments: readonly Segment[], goal: string, p: string): number | undefined {
  let t: number | undefined;
  for (const s of segments) {
    if (!within(flavour, s.endState, goal)) continue;
    for (const [second, position] of s.marks ?? []) {
      if (reaches(flavour, p, position)) t = Math.max(t ?? 0, second);
    }
  }
  return t;
}

/**
 * Plans a restore: the newest snapshot before the point, and the archived binlogs to replay after it.
 *
 * @param snapshots The complete snapshots, any order.
 * @param segments Every segment the archive holds (complete ones only).
 * @param lost Index entries whose binlog is missing or damaged: they say where the history goes, not how.
 * @param head The archive record's endState in Consul, when read: the current history ({@link historyHead}).
 * @throws {RecoveryPointError} when no snapshot precedes the point, the archive never saw the GTID, or a gap
 *   keeps every snapshot from reaching it; the message names the latest point that can be reached.
 */
export function planRecovery(
  flavour: Flavour,
  snapshots: readonly SnapshotPoint[],
  segments: readonly Segment[],
  target: RecoveryTarget,
  lost: readonly Segment[] = [],
  head?: string,
): RecoveryPlan {
  const newestFirst = [...snapshots].sort((a, b) =>
    a.createdAt < b.createdAt ? 1 : a.createdAt > b.createdAt ? -1 : 0
  );
  if (newestFirst.length === 0) {
    throw new RecoveryPointError("The store holds no complete snapshot to start from");
  }
  // Where the history ends is known from every index entry, also those whose binlog is lost (a gap then).
  const current = historyHead(flavour, [...segments, ...lost], head);
  const newest = current.newest;
  // The history to follow: the one the target lies on, else the current primary's (the record's, else the
  // newest segment's).
  let goal: string;
  let targetStop: string | undefined;
  let note: string | undefined;
  if (target.kind === "gtid") {
    const holders = segments.filter((s) => within(flavour, target.gtid, s.endState));
    const holder = newestSegment(holders);
    const inSnapshot = newestFirst.find((s) =>
      reaches(flavour, s.state, target.gtid) && within(flavour, target.gtid, s.state)
    );
    if (holder === undefined && inSnapshot === undefined) {
      throw new RecoveryPointError(
        `GTID ${target.gtid} is in no archived binlog and no snapshot: the archive ends at ${
          newest ? positionOf(flavour, newest.endState) : "(nothing archived)"
        }; run 'autopilot backup list' for the points it can reach`,
      );
    }
    goal = holder?.endState ?? inSnapshot!.state;
    targetStop = target.gtid;
  } else {
    goal = current.goal ?? newestFirst[0].state;
    if (target.kind === "time") {
      targetStop = positionAt(flavour, segments, goal, target.at);
      const end = newest?.lastTime;
      if (end !== undefined && (end + 1) * 1000 <= target.at.getTime()) {
        note = `${target.at.toISOString()} is after the archive's last transaction (${isoSecond(end)}): ` +
          "restoring everything the archive holds";
      }
    }
  }
  let best: { plan: RecoveryPlan; reached: string } | undefined;
  // The newest snapshot begun before the time whose state goes past the archive's end (skipped: see below).
  let beyond: { snap: SnapshotPoint; state: string } | undefined;
  for (const snap of newestFirst) {
    const state = fullState(flavour, snap.state, segments, goal);
    if (!within(flavour, state, goal) && compare(flavour, state, goal) !== "superset") continue;
    if (target.kind === "time" && Date.parse(snap.createdAt) >= target.at.getTime()) continue;
    if (
      target.kind === "time" && (current.goal === undefined || compare(flavour, state, goal) === "superset")
    ) {
      // The snapshot holds transactions the archive does not (it lags the snapshot): when they were written
      // is unknown, so its consistent point may be after the time: an older snapshot is used, or none.
      beyond ??= { snap, state };
      continue;
    }
    let stop = targetStop;
    // A MariaDB GTID target names the domains it stops; the others are free (checked below).
    const snapPos = target.kind === "gtid" && flavour === "mariadb"
      ? onlyDomains(positionOf(flavour, state), target.gtid)
      : positionOf(flavour, state);
    if (stop !== undefined && !reaches(flavour, stop, snapPos)) {
      // The snapshot holds transactions past the point the archive gives for the time: either the archive
      // shows them written at or after it (the snapshot is too new), or it does not hold them at all (they
      // were never archived), and then a snapshot taken before the time is where the time lies.
      if (target.kind !== "time" || archivedBetween(flavour, segments, goal, stop, state)) continue;
      stop = unionPositions(flavour, [stop, positionOf(flavour, state)]);
    }
    const done = stop === undefined ? undefined : (s: string) => stop === "" || reaches(flavour, s, stop!);
    const chain = followArchive(flavour, state, segments, goal, done);
    const steps: ReplayStep[] = [];
    let applied = positionOf(flavour, state);
    for (const seg of chain.segments) {
      steps.push({ segment: seg, after: applied });
      applied = positionOf(flavour, seg.endState);
    }
    if (target.kind === "gtid" && flavour === "mariadb" && chain.complete) {
      stop = steps.length === 0 ? positionOf(flavour, state) : completeTarget(target.gtid, steps.at(-1)!);
    }
    if (stop !== undefined && steps.length > 0) {
      const last = steps[steps.length - 1];
      steps[steps.length - 1] = { ...last, until: stop };
    }
    const position = stop !== undefined && chain.complete
      ? (stop === "" ? positionOf(flavour, state) : stop)
      : positionOf(flavour, chain.state);
    const lastTime = stop !== undefined && chain.complete
      ? timeOf(flavour, segments, goal, position) ?? chain.lastTime
      : chain.lastTime;
    const plan: RecoveryPlan = {
      snapshot: snap,
      steps,
      position,
      ...(lastTime !== undefined ? { lastTime } : {}),
      ...(note !== undefined ? { note } : {}),
    };
    if (chain.complete) return plan;
    if (best === undefined) best = { plan, reached: chain.state };
  }
  if (best !== undefined) {
    const p = best.plan;
    throw new RecoveryPointError(
      `The archive has a gap: no archived binlog continues from ${p.position}${
        p.lastTime !== undefined ? ` (${isoSecond(p.lastTime)})` : ""
      } (a binlog purged or lost before it was archived); the latest point snapshot ${p.snapshot.name} reaches ` +
        `is ${p.position}: restore with --to-gtid ${
          p.position || "(the snapshot alone)"
        }, or to a point after a later snapshot`,
    );
  }
  if (beyond !== undefined && target.kind === "time") {
    throw new RecoveryPointError(
      `Cannot restore to ${target.at.toISOString()}: the consistent point of snapshot ${beyond.snap.name} ` +
        `(${positionOf(flavour, beyond.state)}) is past the archive's end (${
          current.goal === undefined ? "nothing is archived" : positionOf(flavour, goal) || "nothing archived"
        }), so it may be later than the time asked, and no older snapshot precedes that time: choose an ` +
        "earlier snapshot's window or a later time (autopilot backup list shows the windows), or restore --to-end",
    );
  }
  const oldest = newestFirst[newestFirst.length - 1];
  const oldestAt = windowStart(flavour, segments, goal, fullState(flavour, oldest.state, segments, goal));
  throw new RecoveryPointError(
    target.kind === "time"
      ? `No snapshot precedes ${target.at.toISOString()}: the oldest, ${oldest.name} (taken at ${oldest.createdAt}), ` +
        `reaches its consistent point at ${
          oldestAt !== undefined ? isoSecond(oldestAt) : "an unknown time after that"
        }; restore to a later time (autopilot backup list shows the windows)`
      : `No snapshot precedes ${
        targetStop ?? "the end of the archive"
      } on its history: the oldest is ${oldest.name} ` +
        `(${oldest.createdAt}); run 'autopilot backup list' for the points the archive can reach`,
  );
}

/** A span of time a restore can reach any second of. */
export interface RecoveryWindow {
  /** The snapshot it starts from (the oldest one in it), and when that was taken. */
  readonly from: SnapshotPoint;
  /**
   * The first second a `--to-time` restore from it reaches (ISO 8601): after the last transaction the
   * snapshot holds, as the archive's marks date it; its start time when the archive cannot date it.
   */
  readonly fromTime: string;
  /** The last transaction it reaches: Unix second (absent if no transaction after the snapshot is archived). */
  readonly toTime?: number;
  /** The position it reaches. */
  readonly toPosition: string;
  /** Whether the archive continues past it to the current primary's history end; else a gap follows. */
  readonly complete: boolean;
}

/**
 * The archive's recoverable windows along the current primary's history, oldest first: each begins at a
 * snapshot and ends where the archived binlogs stop (the end of the archive, or a gap).
 */
export function recoverableWindows(
  flavour: Flavour,
  snapshots: readonly SnapshotPoint[],
  segments: readonly Segment[],
  lost: readonly Segment[] = [],
  head?: string,
): RecoveryWindow[] {
  const current = historyHead(flavour, [...segments, ...lost], head).goal;
  const oldestFirst = [...snapshots].sort((a, b) =>
    a.createdAt < b.createdAt ? -1 : a.createdAt > b.createdAt ? 1 : 0
  );
  const windows: RecoveryWindow[] = [];
  let reached: string | undefined; // the state the last window reaches
  for (const snap of oldestFirst) {
    const goal = current ?? snap.state;
    const state = fullState(flavour, snap.state, segments, goal);
    if (!within(flavour, state, goal) && compare(flavour, state, goal) !== "superset") continue;
    const chain = followArchive(flavour, state, segments, goal);
    const start = windowStart(flavour, segments, goal, state);
    const w: RecoveryWindow = {
      from: snap,
      fromTime: start !== undefined ? isoSecond(start) : snap.createdAt,
      ...toTime(chain.lastTime),
      toPosition: positionOf(flavour, chain.state),
      complete: chain.complete,
    };
    const prev = windows[windows.length - 1];
    // A snapshot inside the previous window extends it rather than starting a new one.
    if (prev !== undefined && reached !== undefined && within(flavour, state, reached)) {
      windows[windows.length - 1] = {
        ...w,
        from: prev.from,
        fromTime: prev.fromTime,
        ...toTime(w.toTime ?? prev.toTime),
      };
    } else {
      windows.push(w);
    }
    reached = chain.state;
  }
  return windows;
}

/**
 * The first whole second T (Unix) at which a restore to time T from a snapshot at `state` along `goal` reaches
 * the snapshot's own position (`positionAt` at T holds it), or undefined when the archive's marks do not show
 * when the snapshot's last transaction was written.
 */
export function windowStart(
  flavour: Flavour,
  segments: readonly Segment[],
  goal: string,
  state: string,
): number | undefined {
  const p = positionOf(flavour, state);
  if (p === "") return undefined;
  const seconds = new Set<number>();
  for (const s of segments) {
    if (!within(flavour, s.endState, goal) || s.firstTime === undefined) continue;
    seconds.add(s.firstTime);
    if (s.lastTime !== undefined) seconds.add(s.lastTime);
    for (const [second] of s.marks ?? []) seconds.add(second);
  }
  const sorted = [...seconds].sort((a, b) => a - b);
  const at = (second: number) => {
    try {
      const q = positionAt(flavour, segments, goal, new Date((second + 1) * 1000));
      return q !== "" && reaches(flavour, q, p);
    } catch {
      return false; // a segment without marks spans it: not datable there
    }
  };
  // positionAt only grows with the time: the first candidate second after which it holds the position.
  let lo = 0;
  let hi = sorted.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (at(sorted[mid])) hi = mid;
    else lo = mid + 1;
  }
  return lo < sorted.length ? sorted[lo] + 1 : undefined;
}

function toTime(t: number | undefined): { toTime?: number } {
  return t === undefined ? {} : { toTime: t };
}

/**
 * The segments no retained snapshot needs: for every retained snapshot, everything the segment holds is in
 * the snapshot already, or the segment lies on another history (a primary's lost tail). With no retained
 * snapshot, none.
 */
export function prunableSegments(
  flavour: Flavour,
  retained: readonly SnapshotPoint[],
  segments: readonly Segment[],
): Segment[] {
  if (retained.length === 0) return [];
  return segments.filter((seg) =>
    retained.every((snap) => {
      const c = compare(flavour, seg.endState, snap.state);
      return c === "subset" || c === "equal" || c === "diverged";
    })
  );
}

/**
 * Parses the time `--to-time` takes: ISO 8601 (`2026-12-02T14:03:12Z`, `2026-12-02T14:03:12.5+01:00`), or the
 * same with a space for the `T`; without a zone it is UTC.
 *
 * @throws {RangeError} with one line saying what is accepted.
 */
export function parseTargetTime(text: string): Date {
  const t = text.trim();
  const m = /^(\d{4}-\d\d-\d\d)[T ](\d\d:\d\d(?::\d\d(?:\.\d{1,9})?)?)(Z|[+-]\d\d:?\d\d)?$/i.exec(t);
  const d = m ? new Date(`${m[1]}T${m[2]}${m[3] ? m[3].toUpperCase() : "Z"}`) : undefined;
  if (d === undefined || !Number.isFinite(d.getTime())) {
    throw new RangeError(
      `'${text}' is not a time: give an ISO 8601 time such as 2026-12-02T14:03:12Z (without a zone it is UTC)`,
    );
  }
  return d;
}

/**
 * Checks the GTID `--to-gtid` takes: MariaDB a position (`0-1-42`, at most one per domain); MySQL a GTID set.
 *
 * @throws {RangeError} with one line saying what is wrong.
 */
export function parseTargetGtid(flavour: Flavour, text: string): string {
  let set: GtidSet;
  try {
    set = parse(flavour, text.trim());
  } catch (e) {
    throw new RangeError(
      `'${text}' is not a ${flavour === "mariadb" ? "MariaDB GTID" : "MySQL GTID set"}: ${
        (e as Error).message
      }`,
    );
  }
  if (set.isEmpty()) throw new RangeError("--to-gtid needs a GTID, e.g. 0-1-42");
  if (set instanceof MysqlGtidSet) {
    // A single MySQL GTID `uuid:N` means up to and including it: every transaction of that uuid to N.
    const single = /^([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}):(\d+)$/i.exec(
      text.trim(),
    );
    if (single) return MysqlGtidSet.parse(`${single[1]}:1-${single[2]}`).toString();
  }
  if (set instanceof MariadbGtidSet && !set.isPosition()) {
    throw new RangeError(`'${text}' names a domain twice: give one GTID per domain (the last to include)`);
  }
  return set.toString();
}
