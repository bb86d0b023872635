/**
 * Whole-cluster recovery's side effects (the rule and the planner are src/ha/recovery.ts's, pure): this node's
 * boot clock, the mark in its state file that the settle window counts from, and the chosen node's taking of
 * the primary lock under the failover lock.
 *
 * @module
 */
import { getLogger } from "@logtape/logtape";
import type { ClusterKv, ClusterView } from "../cluster_kv.ts";
import type { NodeState, StateStore } from "../state.ts";
import { type ActionResult, type Me, takePrimaryLock } from "./actions.ts";
import type { HealthFacts } from "./decide.ts";
import { takeFailoverLock } from "./failover_lock.ts";
import { type BootInstant, bootInstant } from "../boot_clock.ts";
import { planRecovery, sameBoot } from "./recovery.ts";
import { clearOldPrimary, type OldPrimaryGuard, startIoAgain } from "./takeover.ts";

const log = getLogger(["autopilot", "health"]);

/** This machine's boot clock now (whole seconds: enough for a settle window). */
export function bootClockNow(): Promise<BootInstant> {
  return Promise.resolve(bootInstant());
}

/**
 * The chosen node's recovery: under the failover lock (one recovery or failover at a time), the plan again
 * from a fresh read, then the primary lock (this node keeps its data) and the identity key if it is missing.
 * The caller then serves as primary (actions.ts `serveAsPrimary`).
 *
 * @returns Whether this node holds the primary lock now; if not, the pass's result.
 */
export async function recoverPrimary(
  a: {
    readonly kv: ClusterKv;
    readonly me: Me;
    readonly identity: string;
    /**
     * FAILSAFE_MODE: the source this node replicates from may be an old primary still writable on a lease it
     * extends without Consul (Consul lost its keys while that one could not reach it): made sure of first, as
     * a failover does (src/ha/takeover.ts).
     */
    readonly guard?: OldPrimaryGuard;
  },
  signal?: AbortSignal,
): Promise<{ readonly taken: true } | { readonly taken: false; readonly result: ActionResult }> {
  const { kv, me, identity } = a;
  const start = Date.now();
  const hold = await takeFailoverLock(kv, me.session, (promoted) => ({
    node: me.self.node,
    at: start,
    recovery: true,
    ...(promoted === undefined ? {} : { promoted }),
  }));
  if (hold === undefined) {
    log.info("Another node holds the failover lock (a failover or a recovery): waiting for it");
    return { taken: false, result: { healthy: false } };
  }
  let promoted: string | undefined;
  let stoppedIo = false;
  try {
    const source = a.guard?.failsafe ? await a.guard.server.replicaStatus({ signal }) : undefined;
    if (a.guard && source !== undefined && source.sourceHost !== "") {
      const old = {
        node: `${source.sourceHost}:${source.sourcePort}`,
        address: source.sourceHost,
        port: source.sourcePort,
      };
      const cleared = await clearOldPrimary(a.guard, old, signal);
      stoppedIo = cleared.stoppedIo;
      if (!cleared.go) return { taken: false, result: { healthy: false } };
    }
    const view: ClusterView = await kv.read();
    if (view.primary.record !== undefined) {
      log.info("A primary lock appeared meanwhile: no recovery needed");
      return { taken: false, result: { healthy: false, again: true } };
    }
    if (view.cluster !== undefined && view.cluster.id !== identity) {
      log.error("Consul's {key} names cluster {theirs} meanwhile, not this node's {ours}: not recovering", {
        key: kv.keys.cluster,
        theirs: view.cluster.id,
        ours: identity,
      });
      return { taken: false, result: { healthy: false } };
    }
    const plan = planRecovery(identity, me.self.node, view.live.map((m) => m.record), view.departed);
    if (plan.kind !== "promote" || plan.candidate.node !== me.self.node) {
      log.warn("Not recovering the cluster after all: {reason}", {
        reason: plan.kind === "promote"
          ? `${plan.candidate.node} is the one now (${plan.reason})`
          : plan.reason,
      });
      return { taken: false, result: { healthy: false } };
    }
    if (!(await takePrimaryLock(kv, me))) return { taken: false, result: { healthy: false, again: true } };
    promoted = me.self.node;
    const kept = await kv.publishClusterIdentity({ id: identity, node: me.self.node, at: Date.now() });
    log.warn("Recovered the cluster {identity} after Consul lost its keys: {reason}", {
      identity,
      reason: plan.reason,
    });
    if (kept?.id !== identity) {
      log.error("Consul's {key} does not name this cluster ({found}): check it", {
        key: kv.keys.cluster,
        found: kept?.id ?? "a value that is not an identity record",
      });
    }
    return { taken: true };
  } finally {
    await hold.release(promoted);
    if (stoppedIo && promoted === undefined && a.guard) await startIoAgain(a.guard.server, a.guard.state);
  }
}

/**
 * The recovery mark in the state file: set by the first pass that sees no primary lock record (the settle
 * window counts from it), removed by the first that sees one again. Never throws.
 */
export async function keepRecoveryMark(state: StateStore, f: HealthFacts): Promise<void> {
  const mark = state.current.recoverySince;
  let next: NodeState["recoverySince"] | null = null; // null: leave as it is
  if (f.recovery !== undefined) {
    if (mark === undefined || !sameBoot(mark, f.recovery.now)) next = f.recovery.now;
  } else if (f.consul.up && f.consul.lock.record !== undefined && mark !== undefined) {
    next = undefined;
  }
  if (next === null) return;
  await state.patch({ recoverySince: next }).catch((e) =>
    log.warn("Cannot save this node's state: {e}", { e: String(e) })
  );
}
