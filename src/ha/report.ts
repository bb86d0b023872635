/**
 * The end of a health pass: how it is logged, the `SERVICE_NAME-primary` service, this node's member record and
 * the metrics. Each step logs its own failure and never fails the pass.
 *
 * @module
 */
import { getLogger } from "@logtape/logtape";
import type { ClusterKv } from "../cluster_kv.ts";
import type { Config } from "../config.ts";
import type { ConsulStore } from "../consul.ts";
import type { Flavour } from "../mysql/flavour.ts";
import {
  advertisePrimary,
  ensureContainerPilotService,
  planSweep,
  primaryServiceName,
  SWEEP_GRACE_MS,
  withdrawPrimary,
} from "../services.ts";
import type { NodeState, StateStore } from "../state.ts";
import type { ClusterView } from "../cluster_kv.ts";
import { bootClockMs } from "../boot_clock.ts";
import { liveOthers } from "./failsafe.ts";
import { type ActionResult, firstSnapshotStored, type Outcome } from "./actions.ts";
import { putMetrics } from "../metrics.ts";
import { type HealthFacts, holdsLock, type PrimaryRecord } from "./decide.ts";
import type { MemberRecord } from "./failover_plan.ts";
import { newClusterIdentity } from "../mysql/identity.ts";
import { openLocalServer } from "../mysql/server.ts";
import { identityUpkeep } from "./recovery.ts";
import { keepRecoveryMark } from "./recovery_action.ts";

import type { KeptSession, PassNode } from "./facts.ts";

const log = getLogger(["autopilot", "health"]);

/** What the end of a pass reports on. */
export interface PassEnd extends PassNode {
  readonly session: KeptSession;
  /** The last facts the pass decided on. */
  readonly facts: HealthFacts;
  /** This pass made this node, or found it, the writable primary with a ready lock. */
  readonly serving: boolean;
  /** When the pass started (performance.now()). */
  readonly started: number;
  /** The cluster's keys the last facts came from (absent when Consul was down). */
  readonly view?: ClusterView;
  /**
   * This pass is ContainerPilot's health check of the `SERVICE_NAME` job (`autopilot health`, not `on-change`):
   * a healthy one registers that service again when the agent lost it (src/services.ts).
   */
  readonly serviceCheck?: boolean;
}

/**
 * Ends a pass: a primary whose first snapshot failed is healthy only once one is stored; then the log line,
 * the primary service, this node's member record and the metrics.
 *
 * @returns Whether the node is healthy.
 */
export async function reportPass(p: PassEnd, result: ActionResult, decided: Outcome): Promise<boolean> {
  const { config, state, facts } = p;
  let healthy = result.healthy;
  let outcome = decided;
  const pending = state.current.firstSnapshotPending;
  if (healthy && p.serving && pending !== undefined) {
    const { publishedSnapshot } = await import("../snapshots.ts");
    const stored = await firstSnapshotStored({
      state,
      why: pending,
      // Consul or the manifest failing to answer is "not stored yet": never a failed pass over it.
      published: async () => (await publishedSnapshot(p.kv).catch(() => undefined)) !== undefined,
    });
    healthy = stored.healthy;
    if (stored.outcome) outcome = stored.outcome;
  }
  await reportOutcome(state, healthy, outcome);
  await remember(state, cacheOf(p, state.current, bootClockMs())).catch((e) =>
    log.warn("Cannot save this node's state: {e}", { e: String(e) })
  );
  const session = "id" in p.session ? p.session.id : undefined;
  if (facts.consul.up) {
    await keepRecoveryMark(state, facts);
    if (healthy && p.serving) await keepIdentity(p);
    if (healthy && p.serviceCheck) {
      await ensureContainerPilotService(config, p.consul, {
        hostname: Deno.hostname(),
        address: p.self.address,
      }).then(
        (registered) => {
          if (registered) {
            log.warn(
              "The Consul agent had lost the {service} service: registered it again as ContainerPilot " +
                "does, so its TTL updates pass again",
              { service: config.serviceName },
            );
          }
        },
        (e) =>
          log.warn("Cannot check the {service} service in Consul: {e}", {
            service: config.serviceName,
            e: (e as Error).message,
          }),
      );
    }
    await showPrimaryService({ ...p, session, serving: healthy && p.serving });
    const record = memberRecord(facts, {
      priority: config.node.priority,
      flavour: p.flavour,
      hostname: Deno.hostname(),
      now: Date.now(),
    });
    if (record && session) {
      await p.kv.publishMember(session, record).catch((e) =>
        log.warn("Cannot publish this node's record: {e}", { e: String(e) })
      );
    }
  }
  await putMetrics({
    health_checks_total: 1,
    health_check_failures_total: healthy ? 0 : 1,
    health_check_seconds: (performance.now() - p.started) / 1000,
    healthy: healthy ? 1 : 0,
    role: roleMetric(facts),
    ...(facts.mysql.up && facts.mysql.replica?.lagSeconds != null
      ? { replication_lag_seconds: facts.mysql.replica.lagSeconds }
      : {}),
  });
  return healthy;
}

/**
 * Logs how the pass ended: an unhealthy outcome once, when it first appears or changes (a lasting state is not
 * repeated every pass; numbers such as a lag in seconds do not count as a change), a return to health at INFO
 * once, and a steady healthy pass at DEBUG only.
 */
export async function reportOutcome(state: StateStore, healthy: boolean, outcome: Outcome): Promise<void> {
  const reason = outcome.text;
  const shape = healthy ? undefined : reason.replace(/\d+(\.\d+)?/g, "#");
  const reported = state.current.reported;
  if (shape !== undefined && shape !== reported) log[outcome.level]("{reason}", { reason, healthy });
  else if (shape === undefined && reported !== undefined) log.info("Healthy again: {reason}", { reason });
  else log.debug("{reason}", { reason, healthy });
  if (shape !== reported) {
    await state.patch({ reported: shape }).catch((e) =>
      log.warn("Cannot save this node's state: {e}", { e: String(e) })
    );
  }
}

/**
 * The `SERVICE_NAME-primary` service (src/services.ts): passed by every pass that finds this node the writable
 * primary, withdrawn by the first that does not. The primary's pass also removes dead nodes' entries.
 */
export async function showPrimaryService(
  a: {
    readonly config: Config;
    readonly consul: ConsulStore;
    readonly kv: ClusterKv;
    readonly self: PrimaryRecord;
    readonly session: string | undefined;
    readonly state: StateStore;
    readonly serving: boolean;
  },
): Promise<void> {
  const { config, consul, self, state } = a;
  try {
    if (a.serving && a.session !== undefined) {
      const at = `${self.address}:${self.port}`;
      const moved = state.current.advertised !== at; // first pass as primary, or a new address: register anew
      // Saved first: a pass cut short right after registering still withdraws it later.
      if (moved) await state.patch({ advertised: at });
      await advertisePrimary(config, consul, self, a.session, { register: moved });
    } else if (state.current.advertised) {
      await withdrawPrimary(config, consul, self.node);
      await state.patch({ advertised: undefined });
    }
  } catch (e) {
    log.warn("Cannot update the {service} service in Consul: {e}", {
      service: primaryServiceName(config),
      e: (e as Error).message,
    });
  }
  if (a.serving) {
    await sweepDeadEntries(a).catch((e) =>
      log.warn("Cannot remove dead nodes' entries from Consul: {e}", { e: (e as Error).message })
    );
  }
}

/** Removes the catalog entries of nodes that are gone (see planSweep); reads members only when one is critical. */
async function sweepDeadEntries(
  a: {
    readonly config: Config;
    readonly consul: ConsulStore;
    readonly kv: ClusterKv;
    readonly state: StateStore;
  },
): Promise<void> {
  const critical = await a.consul.criticalServiceChecks();
  const seen = a.state.current.deadEntries ?? {};
  if (critical.length === 0 && Object.keys(seen).length === 0) return;
  const { live, departed } = await a.kv.read();
  const plan = planSweep(a.config, critical, { live: live.map((m) => m.record), departed }, seen, Date.now());
  for (const check of plan.remove) {
    await a.consul.deregisterService(check.serviceId, check.node);
    log.info("Removed {service} from Consul: its node has been gone for over {minutes} minutes", {
      service: check.serviceId,
      minutes: SWEEP_GRACE_MS / 60_000,
    });
  }
  if (JSON.stringify(plan.seen) !== JSON.stringify(seen)) {
    await a.state.patch({ deadEntries: Object.keys(plan.seen).length ? plan.seen : undefined });
  }
}

/**
 * What a pass leaves in the state file for passes that cannot read Consul or whose replication reconnects:
 * the members cache (failsafe mode), the end of failsafe once Consul is read again, and the last observation of
 * this replica's threads running. Only the fields that change. Pure.
 */
export function cacheOf(
  p: Pick<PassEnd, "facts" | "view" | "serving" | "self">,
  current: NodeState,
  clockMs: number,
): Partial<NodeState> {
  const changes: { -readonly [K in keyof NodeState]?: NodeState[K] | undefined } = {};
  if (p.view !== undefined && p.facts.consul.up) {
    const others = liveOthers(p.view, p.self.node);
    const published = current.members?.published;
    const members = {
      heldLock: holdsLock(p.facts) || p.serving,
      others,
      ...(published ? { published } : {}),
    };
    if (JSON.stringify(members) !== JSON.stringify(current.members)) changes.members = members;
    if (current.failsafeSince !== undefined) changes.failsafeSince = undefined;
  }
  const r = p.facts.mysql.up ? p.facts.mysql.replica : undefined;
  if (r && r.ioRunning === "yes" && r.sqlRunning && r.lagSeconds !== null) {
    changes.replicated = { source: `${r.sourceHost}:${r.sourcePort}`, lagSeconds: r.lagSeconds, at: clockMs };
  } else if (p.facts.mysql.up && r === undefined && current.replicated !== undefined) {
    changes.replicated = undefined;
  }
  return changes;
}

async function remember(state: StateStore, changes: Partial<NodeState>): Promise<void> {
  if (Object.keys(changes).length === 0) return;
  if ("failsafeSince" in changes && state.current.failsafeSince !== undefined) {
    log.info("Consul can be reached again: failsafe mode ends, the primary lock decides as before");
  }
  await state.patch(changes);
}

/**
 * A serving primary keeps the cluster's identity in its data and in Consul's `SERVICE_NAME-cluster` alike
 * (src/ha/recovery.ts `identityUpkeep`): a cluster made before this version gets one on its primary's first
 * pass (written with the binlog, so it replicates), and a Consul that lost its keys gets it back. Never throws.
 */
async function keepIdentity(p: PassEnd): Promise<void> {
  const { facts } = p;
  const step = identityUpkeep(facts.mysql.up ? facts.mysql.identity : undefined, facts.cluster);
  if (step.kind === "none") return;
  if (step.kind === "mismatch") {
    log.error(
      "This primary's data belongs to cluster {server}, but Consul's {key} names cluster {consul}: two clusters " +
        "share SERVICE_NAME and Consul, or the key was changed; check which is right",
      { server: step.server, consul: step.consul, key: p.kv.keys.cluster },
    );
    return;
  }
  try {
    let id: string;
    if (step.kind === "write-server") {
      await using server = await openLocalServer(p.config, p.flavour);
      id = await server.ensureClusterIdentity(step.id ?? newClusterIdentity());
      log.info("This cluster's data carries the identity {id} (in the primary's data, replicated)", { id });
    } else id = step.id;
    const kept = await p.kv.publishClusterIdentity({ id, node: p.self.node, at: Date.now() });
    if (kept?.id === id) {
      if (facts.cluster === undefined) {
        log.info("Published the cluster identity {id} in {key}", { id, key: p.kv.keys.cluster });
      }
    } else {
      log.error(
        "This primary's data belongs to cluster {id}, but Consul's {key} holds {found}: check which is right",
        {
          id,
          key: p.kv.keys.cluster,
          found: kept?.id ?? "a value that is not an identity record",
        },
      );
    }
  } catch (e) {
    log.warn("Cannot keep the cluster identity: {e}", { e: (e as Error).message });
  }
}

/** This node's member record (what the failover planner reads), from the facts of the pass. */
export function memberRecord(
  f: HealthFacts,
  a: {
    readonly priority: number;
    readonly flavour: Flavour;
    readonly hostname: string;
    readonly now: number;
  },
): MemberRecord | undefined {
  if (!f.mysql.up) return undefined;
  return {
    ...f.node,
    hostname: a.hostname,
    priority: a.priority,
    flavour: a.flavour,
    role: holdsLock(f) ? "primary" : f.mysql.replica ? "replica" : "none",
    executed: f.mysql.executed,
    retrieved: f.mysql.replica?.retrievedGtids ?? "",
    updatedAt: a.now,
    ...(f.mysql.identity !== undefined ? { cluster: f.mysql.identity } : {}),
  };
}

/** The `role` metric: 2 the writable lock holder, 1 a replica with both threads running, 0 anything else. */
export function roleMetric(f: HealthFacts): number {
  if (!f.mysql.up) return 0;
  if (holdsLock(f)) return f.mysql.readOnly ? 0 : 2;
  return f.mysql.replica?.ioRunning === "yes" && f.mysql.replica.sqlRunning ? 1 : 0;
}
