/**
 * A planned move of the primary role, run on the current primary (`autopilot switchover`, pre-stop):
 *
 * 1. Take the failover lock, so that no automatic failover starts meanwhile.
 * 2. Choose the target: the named node, or the replica that has the most (as a failover would).
 * 3. While still writable, wait until the target is nearly caught up, so the blocked phase is short.
 * 4. Block writes (read-only), wait until the target has executed everything this node has.
 * 5. Hand the primary lock to the target's own session. The target applies, turns writable and marks the lock
 *    ready in its own pass (ContainerPilot's watch fires `on-change` there as soon as this node leaves the
 *    primary service, which it does right after the hand-over); this node then rejoins as its replica. If
 *    anything fails before step 5, this node turns writable again and keeps the role.
 *
 * @module
 */
import { getLogger } from "@logtape/logtape";
import { delay } from "../abort.ts";
import type { ClusterKv } from "../cluster_kv.ts";
import { subtractGtids } from "../mysql/gtid.ts";
import type { MysqlServer } from "../mysql/server.ts";
import { leaseForWriting, type Me } from "./actions.ts";
import { type MemberRecord, planFailover } from "./failover_plan.ts";
import { takeFailoverLock } from "./failover_lock.ts";

const log = getLogger(["autopilot", "switchover"]);

/** What a switchover needs. */
export interface SwitchoverArgs {
  readonly kv: ClusterKv;
  /** This node's server. */
  readonly server: MysqlServer;
  /** The target's server, over TCP as the replication account. */
  readonly openPeer: (target: MemberRecord) => Promise<MysqlServer>;
  /** This node, which holds the primary lock with `me.session`. */
  readonly me: Me;
  /** Takes this node out of the primary service. */
  readonly withdraw: () => Promise<void>;
  /** The target node; by default the replica that has the most. */
  readonly to?: string;
  /** How long the target may take to catch up. */
  readonly timeoutMs: number;
  /** The in-server lease's length (SESSION_TTL/2). */
  readonly leaseMs: number;
}

/** A switchover that handed the role over: to whom, and how long writes were blocked here. */
export interface SwitchedOver {
  readonly target: string;
  readonly blockedMs: number;
}

/**
 * Moves the primary role from this node to the named or best replica.
 *
 * @returns What was done, or undefined when nothing changed (this node stays primary; the reason is logged).
 */
export async function switchover(a: SwitchoverArgs, signal?: AbortSignal): Promise<SwitchedOver | undefined> {
  const me = a.me.self.node;
  const hold = await takeFailoverLock(a.kv, a.me.session, (promoted) => ({
    node: me,
    at: Date.now(),
    switchover: true,
    ...(promoted === undefined ? {} : { promoted }),
  }));
  if (hold === undefined) {
    log.error("A failover is running (FAILOVER_LOCK_KEY is held): try again when it has finished");
    return undefined;
  }
  let promoted: string | undefined;
  try {
    const members = (await a.kv.read()).live.filter((m) => m.record.node !== me);
    const target = chooseTarget(members.map((m) => m.record), a.to);
    if (typeof target === "string") {
      log.error("{reason}", { reason: target });
      return undefined;
    }
    const targetSession = members.find((m) => m.record.node === target.node)!.session;
    await using peer = await a.openPeer(target);
    const deadline = Date.now() + a.timeoutMs;
    const missing = async () => {
      const mine = (await a.server.gtidState({ signal })).executed;
      const theirs = (await peer.gtidState({ signal })).executed;
      return subtractGtids(a.server.flavour, mine, theirs).toString();
    };
    // While still writable: let the target catch up, so the blocked phase is short.
    while ((await missing()) !== "" && Date.now() < deadline - a.timeoutMs / 2) await delay(20, { signal });

    const blockedAt = performance.now();
    await a.server.setReadOnly(true, { signal });
    log.info("Writes blocked on {me}; waiting for {target} to apply the last transactions", {
      me,
      target: target.node,
    });
    let lacking = await missing();
    while (lacking !== "" && Date.now() < deadline) {
      await delay(10, { signal });
      lacking = await missing();
    }
    if (lacking !== "") {
      // Writable again only with a renewed session and a lease extended from it.
      if (!(await leaseForWriting(a, signal))) {
        log.error(
          "Switchover abandoned ({target} still lacks {lacking}), and this node's session is gone or its " +
            "lease could not be renewed: it stays read-only",
          { target: target.node, lacking },
        );
        return undefined;
      }
      await a.server.setReadOnly(false, { signal });
      log.error("{target} still lacks {lacking} after {s} s: switchover abandoned, {me} stays primary", {
        target: target.node,
        lacking,
        s: a.timeoutMs / 1000,
        me,
      });
      return undefined;
    }
    if (!(await a.server.readOnly({ signal }))) {
      log.error("{me} turned writable during the switchover (something else changed read_only): abandoned", {
        me,
      });
      return undefined;
    }
    // Hand the lock over: release it (no lock-delay on an explicit release) and take it for the target at once,
    // all while holding the failover lock, so nobody else can step in between.
    const record = { node: target.node, address: target.address, port: target.port };
    await a.kv.releasePrimary(a.me.session, record);
    if (!(await a.kv.acquirePrimary(targetSession, record))) {
      log.error("Could not give the primary lock to {target}; the next health passes will fail over", {
        target: target.node,
      });
      return undefined;
    }
    promoted = target.node;
    // The role has moved away: no lease left here (read-only already).
    await a.server.clearLease({ signal }).catch((e) =>
      log.warn("Cannot remove the in-server lease: {e}; it lapses by itself", { e: String(e) })
    );
    // This node is no longer the primary: out of the primary service now, not at its next pass.
    await a.withdraw().catch((e) =>
      log.warn("Cannot withdraw the primary service: {e}; the next health pass does", { e: String(e) })
    );
    const blockedMs = Math.round(performance.now() - blockedAt);
    log.info(
      "Handed the primary role to {target} after {ms} ms with writes blocked here; it turns writable in " +
        "its next pass, and this node follows it",
      { target: target.node, ms: blockedMs },
    );
    return { target: target.node, blockedMs };
  } finally {
    await hold.release(promoted);
  }
}

/** The line both commands print on stdout for a switchover done. */
export function switchoverLine(from: string, done: SwitchedOver): string {
  return `switchover: ${from} -> ${done.target} (writes blocked ${done.blockedMs} ms on ${from} so far)`;
}

/** The target: the named node, or the replica that has the most; a string says why there is none. */
function chooseTarget(members: readonly MemberRecord[], to: string | undefined): MemberRecord | string {
  if (to !== undefined) {
    const named = members.find((m) => m.node === to);
    if (named === undefined) {
      return `No live node named '${to}' (live: ${members.map((m) => m.node).join(", ")})`;
    }
    if (named.priority === 0) return `${to} has FAILOVER_PRIORITY=0 and is never made primary`;
    return named;
  }
  // The failover planner's rules, with this (healthy) primary left out: replicas of one primary are never
  // diverged, so the one that has the most is found; anything else means there is no safe target.
  const plan = planFailover(members.filter((m) => m.role === "replica"), undefined, 0);
  return plan.kind === "promote" ? plan.candidate : `No replica to switch over to: ${plan.reason}`;
}
