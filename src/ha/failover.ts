/**
 * Running a failover: the primary is gone. The node that wins the failover lock reads every live member's
 * GTIDs (over TCP, or the record it published since the primary was lost), chooses the node that has every
 * transaction any of them has (failover_plan.ts), and gives the primary lock to that node's own session. The
 * appointed node finishes its promotion at once if it is this one, otherwise in its own pass, which waits for
 * the appointment; the others follow it once it is ready. Every step can be repeated: if this node dies half
 * way, its failover lock goes with its session and another node starts over.
 *
 * @module
 */
import { getLogger } from "@logtape/logtape";
import type { ClusterKv, MemberEntry } from "../cluster_kv.ts";
import { SessionGoneError } from "../consul.ts";
import { putMetrics } from "../metrics.ts";
import { delay } from "../abort.ts";
import type { Me } from "./actions.ts";
import type { PrimaryLock, PrimaryRecord } from "./decide.ts";
import { type FailoverPlan, type MemberRecord, planFailover } from "./failover_plan.ts";
import { takeFailoverLock } from "./failover_lock.ts";
import {
  clearOldPrimary,
  type OldPrimaryGuard,
  startIoAgain,
  takeOver,
  type TakeOverArgs,
} from "./takeover.ts";

const log = getLogger(["autopilot", "health"]);

/** How long the planner waits for every live member to report since the primary was lost. */
const PLAN_WAIT_MS = 8000;
/**
 * How long appointing may be tried again. Sessions have no lock-delay now (SessionOptions); a session made by
 * an older version may still have one, and retrying a refused appointment is harmless.
 */
const APPOINT_WAIT_MS = 5000;
/** How long a node that is not running the failover waits for the appointment. */
const APPOINTMENT_WAIT_MS = 10_000;

/** What a failover needs. */
export interface FailoverArgs {
  readonly kv: ClusterKv;
  readonly me: Me;
  readonly failedPrimary: string;
  /** A member's record with what its server says now (over TCP); undefined if it does not answer in time. */
  readonly probe: (m: MemberRecord) => Promise<MemberRecord | undefined>;
  /** Whether a node's server answers over TCP with read_only off (false when it does not answer). */
  readonly answersWritable: (node: PrimaryRecord) => Promise<boolean>;
  /**
   * The failed primary still holds the lock but its heartbeat stands still: take the lock over first
   * (src/ha/takeover.ts); absent when nobody holds the lock.
   */
  readonly takeOver?: Omit<TakeOverArgs, "kv">;
  /**
   * FAILSAFE_MODE: nobody holds the lock, but the old primary may still be writable on a lease it extends without
   * Consul; it is made sure of first (src/ha/takeover.ts `clearOldPrimary`), before the plan is read. Absent:
   * `answersWritable` is asked after the plan, as without failsafe mode no lease outlives the session.
   */
  readonly guard?: OldPrimaryGuard;
}

/** How a failover attempt ended: the node appointed; or none, `wait`ing when another node appoints one. */
export interface FailoverOutcome {
  readonly appointed?: string;
  readonly wait?: boolean;
}

/** Runs a failover from `failedPrimary` if this node wins the failover lock. */
export async function runFailover(a: FailoverArgs, signal?: AbortSignal): Promise<FailoverOutcome> {
  const start = Date.now();
  const hold = await takeFailoverLock(a.kv, a.me.session, (promoted) => ({
    node: a.me.self.node,
    at: start,
    failedPrimary: a.failedPrimary,
    ...(promoted === undefined ? {} : { promoted }),
  }));
  if (hold === undefined) {
    log.info("Another node is running the failover: waiting for it to appoint a primary");
    return { wait: true };
  }
  let promoted: string | undefined;
  let stoppedIo = false;
  try {
    // A stale holder's lock is freed first, holding the failover lock, so only one node ever takes it over.
    if (a.takeOver !== undefined) {
      const taken = await takeOver({ ...a.takeOver, kv: a.kv }, signal);
      stoppedIo = taken.stoppedIo;
      if (!taken.free) return {};
    }
    // This pass decided on what it read before it held the failover lock: another node may have finished a
    // failover since. Then there is nothing to do (and the record of that failover stays).
    const primary = await a.kv.primary();
    if (primary.session !== undefined) {
      log.info("{node} was appointed primary meanwhile: no failover needed", {
        node: primary.record?.node ?? "another node",
      });
      return { wait: true };
    }
    // FAILSAFE_MODE: the old primary may be writable on a lease kept without Consul. Made sure of before the
    // plan is read, since it may write (and its replicas receive) until it is out of the way.
    const guarded = a.takeOver === undefined && a.guard?.failsafe === true;
    if (guarded) {
      const cleared = await clearOldPrimary(a.guard!, primary.record, signal);
      stoppedIo = cleared.stoppedIo;
      if (!cleared.go) return {};
    }
    const excluded = excludedNode(primary, a.failedPrimary);
    // A primary taken over never counts (it stood still); otherwise a live last primary may (decision D6).
    const lastCounts = excluded !== undefined && a.takeOver === undefined;
    // A failed primary that stopped cleanly said what it had: no node lacking that is promoted.
    const stoppedWith = primary.record?.fenced === true && primary.record.node === excluded
      ? primary.record.executed
      : undefined;
    const { plan, live } = await planFromMembers(a, { excluded, lastCounts, stoppedWith }, start, signal);
    if (plan.kind !== "promote") {
      log.error("Cannot fail over from {failedPrimary}: {reason}", {
        failedPrimary: a.failedPrimary,
        reason: plan.reason,
      });
      return {};
    }
    const { candidate } = plan;
    log.warn("Failing over from {failedPrimary} to {candidate}: {reason}", {
      failedPrimary: a.failedPrimary,
      candidate: candidate.node,
      reason: plan.reason,
    });
    const old = primary.record;
    // A taken over primary was asked already; the last primary chosen again may well be writable.
    if (
      old !== undefined && a.takeOver === undefined && !guarded && old.node !== candidate.node &&
      await a.answersWritable(old)
    ) {
      log.error(
        "{failedPrimary} lost its lock but still answers writable: not appointing anyone until it fences",
        { failedPrimary: a.failedPrimary },
      );
      return {};
    }
    const session = live.find((m) => m.record.node === candidate.node)!.session!;
    if (!(await appoint(a.kv, session, candidate, signal))) {
      log.error("Could not appoint {candidate}: the primary lock was taken or the candidate is gone", {
        candidate: candidate.node,
      });
      return {};
    }
    promoted = candidate.node;
    log.warn("Appointed {candidate} primary", { candidate: candidate.node });
    await putMetrics({ failovers_total: 1, failover_seconds: (Date.now() - start) / 1000 });
    return { appointed: promoted };
  } finally {
    await hold.release(promoted);
    // Nobody appointed: nothing re-points this node's replication, which the takeover stopped.
    // Nobody appointed, or the old primary appointed again: nothing re-points this node's replication.
    const g = a.takeOver ?? a.guard;
    if (stoppedIo && g !== undefined && (promoted === undefined || promoted === a.failedPrimary)) {
      await startIoAgain(g.server, g.state);
    }
  }
}

/**
 * The node left out of the plan: the failed primary, unless it is a last holder that never finished its
 * promotion (not ready): that one never wrote, its transactions count like any member's, and it may be
 * chosen again.
 */
function excludedNode(primary: PrimaryLock, failedPrimary: string): string | undefined {
  const last = primary.record;
  return last?.node === failedPrimary && last.ready !== true ? undefined : failedPrimary;
}

/**
 * Plans from what each live member's server says now (over TCP, as the replication account); a member that
 * does not answer counts with the record it published, which must be newer than the primary's loss. Tries
 * again while the plan says to wait, for at most {@link PLAN_WAIT_MS}. With `lastCounts` the failed primary is
 * asked too, and counts (preferred) if it answers or reported since.
 */
async function planFromMembers(
  a: FailoverArgs,
  o: { excluded: string | undefined; lastCounts: boolean; stoppedWith: string | undefined },
  start: number,
  signal?: AbortSignal,
): Promise<{ plan: FailoverPlan; live: readonly MemberEntry[] }> {
  const { excluded, lastCounts, stoppedWith } = o;
  let plan = planFailover([], excluded, start);
  let live: readonly MemberEntry[] = [];
  // The wait counts from here, not from the failover's start: a takeover may have waited a lease out before.
  // At least one read is made whatever the time.
  for (let until = Date.now() + PLAN_WAIT_MS, first = true; first || Date.now() < until; first = false) {
    if (!first) await delay(250, { signal });
    // One read: a member whose session ends meanwhile moves from one list to the other, never out of both.
    const view = await a.kv.read();
    live = view.live;
    const probed = await Promise.all(
      live.map(async (m) =>
        m.record.node === excluded && !lastCounts ? m.record : (await a.probe(m.record)) ?? m.record
      ),
    );
    plan = planFailover(probed, excluded, start, view.departed, lastCounts, stoppedWith);
    if (plan.kind !== "wait") break;
  }
  return { plan, live };
}

/**
 * Gives the primary lock to the candidate's session. The failed primary's lock-delay may refuse it for a
 * moment: tried again for at most {@link APPOINT_WAIT_MS}, unless the lock is taken meanwhile or the candidate's
 * session ends (its node died: the next pass plans again).
 */
async function appoint(
  kv: ClusterKv,
  session: string,
  candidate: MemberRecord,
  signal?: AbortSignal,
): Promise<boolean> {
  const record = { node: candidate.node, address: candidate.address, port: candidate.port };
  for (const until = Date.now() + APPOINT_WAIT_MS; Date.now() < until; await delay(100, { signal })) {
    try {
      if (await kv.acquirePrimary(session, record)) return true;
    } catch (e) {
      if (e instanceof SessionGoneError) return false;
      throw e;
    }
    if ((await kv.primary()).session !== undefined) return false;
  }
  return false;
}

/**
 * Waits (at most {@link APPOINTMENT_WAIT_MS}) until a primary is appointed: this node, or another one that is
 * ready to be followed.
 *
 * @returns Whether one was: then the pass decides again, so this node promotes itself or follows without
 *   waiting for its next pass.
 */
export async function waitForAppointment(
  kv: ClusterKv,
  session: string,
  signal?: AbortSignal,
): Promise<boolean> {
  for (const until = Date.now() + APPOINTMENT_WAIT_MS; Date.now() < until; await delay(100, { signal })) {
    const lock = await kv.primary();
    if (lock.session !== undefined && (lock.session === session || lock.record?.ready)) return true;
  }
  return false;
}
