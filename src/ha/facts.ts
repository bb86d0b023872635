/**
 * What a health pass knows before it decides: the local server's status and the cluster's keys, read and never
 * written (this node's session is kept before, by the pass; see `keepSession`).
 *
 * @module
 */
import { ConsulUnavailableError } from "../consul.ts";
import { mysqlFactsOf } from "../local.ts";
import type { ClusterKv, ClusterView } from "../cluster_kv.ts";
import type { Config } from "../config.ts";
import type { ConsulStore } from "../consul.ts";
import type { Flavour } from "../mysql/flavour.ts";
import type { MysqlServer } from "../mysql/server.ts";
import type { RestoredMark } from "../restored.ts";
import type { NodeState, StateStore } from "../state.ts";
import type { ConsulFacts, HealthFacts, MysqlFacts, PrimaryRecord } from "./decide.ts";
import { quietPeriodReason } from "./decide.ts";
import { bootClockMs } from "../boot_clock.ts";
import type { BootInstant, RecoveryFacts } from "./recovery.ts";
import { bootClockNow } from "./recovery_action.ts";

/** RECOVERY_SETTLE_WINDOW's default, for callers that do not pass it. */
const DEFAULT_RECOVERY_SETTLE_MS = 30_000;
import type { BootTime } from "../boot_clock.ts";
import { heartbeatStale, observeLock } from "./heartbeat.ts";

/** How long a switchover may hold the failover lock before a health pass takes it for abandoned. */
export const SWITCHOVER_STALE_MS = 120_000;

/** The local server as the pass found it: a connection, or why there is none. */
export type LocalServer =
  | { readonly server: MysqlServer }
  | { readonly server?: undefined; readonly error: string; readonly gone: boolean };

/** Everything facts are gathered from. */
export interface FactSources {
  readonly self: PrimaryRecord;
  readonly local: LocalServer;
  /** This node's session, kept this pass; an error when Consul could not be reached. */
  readonly session: { readonly id: string } | { readonly error: string };
  /** The cluster's keys, read this pass ({@link readCluster}). */
  readonly cluster: ClusterRead;
  readonly state: NodeState;
  readonly restored: RestoredMark | undefined;
  readonly maxLagSeconds: number;
  /** SEMI_SYNC. */
  readonly semiSync?: boolean;
  /** MYSQL_TLS_CA, MYSQL_TLS_CERT and MYSQL_TLS_KEY are set: replication must use verified TLS. */
  readonly tls?: boolean;
  readonly quietPeriodMs: number;
  readonly now: number;
  /** FAILSAFE_MODE. */
  readonly failsafe?: boolean;
  /** The boot clock now ({@link bootClockMs} by default). */
  readonly clockMs?: number;
  /** The identity key's name, for messages (`SERVICE_NAME-cluster`). */
  readonly clusterKey?: string;
  /** RECOVERY_SETTLE_WINDOW (default 30 s). */
  readonly recoverySettleMs?: number;
  /** This machine's boot clock (tests pass their own). */
  readonly bootClock?: () => Promise<BootInstant>;
  /** Another node holds the lock and its heartbeat has not moved for this long (ms): it is stale. */
  readonly staleHolderMs?: number;
}

/** Who and what a pass runs with: the configuration, Consul and the cluster's keys, this node and its state. */
export interface PassNode {
  readonly config: Config;
  readonly consul: ConsulStore;
  readonly kv: ClusterKv;
  readonly flavour: Flavour;
  readonly self: PrimaryRecord;
  readonly state: StateStore;
}

/** This node's session, kept this pass (when the renewal was sent, by performance.now()), or why not. */
export type KeptSession = { readonly id: string; readonly renewedAt: number } | { readonly error: string };

/** The facts, and the cluster's keys they came from (absent when Consul was down). */
export interface PassFacts {
  readonly facts: HealthFacts;
  readonly view?: ClusterView;
}

/**
 * This node's session: the one in its state renewed, or a new one saved there. Every node keeps one: it holds
 * the node's member record, and the primary lock if it is appointed.
 *
 * @returns The session id, or why Consul could not be reached.
 */
export async function keepSession(
  kv: ClusterKv,
  state: StateStore,
  log: (id: string) => void,
): Promise<KeptSession> {
  try {
    const renewedAt = performance.now();
    const { id, created } = await kv.ensureSession(state.current.sessionId);
    if (created) {
      log(id);
      await state.patch({ sessionId: id });
    }
    return { id, renewedAt };
  } catch (e) {
    if (e instanceof ConsulUnavailableError) return { error: e.message };
    throw e;
  }
}

/** The cluster's keys as one pass read them, or why Consul could not be reached. */
export type ClusterRead = { readonly view: ClusterView } | { readonly error: string };

/** One recursive read of the cluster's keys (none when the session could not be kept: Consul is down). */
export async function readCluster(kv: ClusterKv, session: KeptSession): Promise<ClusterRead> {
  if ("error" in session) return { error: session.error };
  try {
    return { view: await kv.read() };
  } catch (e) {
    if (e instanceof ConsulUnavailableError) return { error: e.message };
    throw e;
  }
}

/**
 * Watches the lock holder's heartbeat: records in the state file the lock's index when it moves (or the holder
 * changes), on the boot clock, and says how long it has stood still once that is longer than the lease allows.
 * A node that holds the lock itself, or reads no lock holder, keeps no record.
 *
 * @returns The milliseconds the holder's heartbeat has stood still, when it is stale.
 */
export async function watchHeartbeat(
  a: {
    readonly state: StateStore;
    readonly cluster: ClusterRead;
    readonly session: KeptSession;
    readonly clock: BootTime | undefined;
    readonly leaseMs: number;
  },
): Promise<number | undefined> {
  if (!("view" in a.cluster) || !("id" in a.session)) {
    // Consul out of reach: what was seen before says nothing about the holder's heartbeat meanwhile, so the
    // watch starts again from the first read after Consul answers (else its return would look like staleness).
    if (a.state.current.lockSeen !== undefined) await a.state.patch({ lockSeen: undefined });
    return undefined;
  }
  const lock = a.cluster.view.primary;
  const recorded = a.state.current.lockSeen;
  const watched = lock.session === a.session.id || a.clock === undefined
    ? undefined
    : observeLock(recorded, lock, a.clock);
  if (watched !== recorded) await a.state.patch({ lockSeen: watched });
  return watched === undefined ? undefined : heartbeatStale(watched, lock, a.clock!, a.leaseMs);
}

/** Whether the keys read say this node's session holds the primary lock. */
export function holdsLockIn(cluster: ClusterRead, session: KeptSession): boolean {
  return "view" in cluster && "id" in session && cluster.view.primary.session === session.id;
}

/** Reads the local server and puts it together with the cluster's keys for the decision. */
export async function gatherFacts(s: FactSources, signal?: AbortSignal): Promise<PassFacts> {
  const mysql = await mysqlFacts(s.local, signal);
  let consul: ConsulFacts;
  let view: ClusterView | undefined;
  let failover: HealthFacts["failover"];
  let recovery: RecoveryFacts | undefined;
  if ("error" in s.session) {
    consul = { up: false, error: s.session.error };
  } else if ("error" in s.cluster) {
    consul = { up: false, error: s.cluster.error };
  } else {
    view = s.cluster.view;
    consul = consulFacts(view, s.session.id, s.now);
    const lock = view.primary;
    const free = lock.session === undefined;
    if (
      lock.record !== undefined && lock.record.node !== s.self.node && (free || s.staleHolderMs !== undefined)
    ) {
      const quietReason = quietPeriodReason(
        view.failoverLock.record,
        lock.record.node,
        s.now,
        s.quietPeriodMs,
        view.live.map((m) => m.record.node),
      );
      failover = {
        paused: view.failoverPaused,
        ...(quietReason === undefined ? {} : { quietReason }),
      };
    }
    if (lock.record === undefined && lock.session === undefined) recovery = await recoveryFacts(s, view);
  }
  return {
    facts: {
      node: s.self,
      mysql,
      consul,
      ...(s.restored ? { restoredGtid: s.restored.gtid } : {}),
      ...(s.state.repointing ? { repointing: true } : {}),
      maxLagSeconds: s.maxLagSeconds,
      ...(s.semiSync ? { semiSync: true } : {}),
      ...(s.tls ? { tls: true } : {}),
      ...(failover ? { failover } : {}),
      ...(s.failsafe ? { failsafe: { heldLock: s.state.members?.heldLock === true } } : {}),
      ...(s.state.replicated
        ? { replicaSeen: { last: s.state.replicated, now: s.clockMs ?? bootClockMs() } }
        : {}),
      ...(view?.cluster ? { cluster: view.cluster.id } : {}),
      ...(recovery ? { recovery } : {}),
      ...(view?.primary.session !== undefined && s.staleHolderMs !== undefined
        ? { staleHolderMs: s.staleHolderMs }
        : {}),
    },
    ...(view ? { view } : {}),
  };
}

/** Whole-cluster recovery's facts: the members, the settle window, and this node's boot clock and mark. */
async function recoveryFacts(s: FactSources, view: ClusterView): Promise<RecoveryFacts> {
  const since = s.state.recoverySince;
  return {
    key: s.clusterKey ?? "SERVICE_NAME-cluster",
    settleMs: s.recoverySettleMs ?? DEFAULT_RECOVERY_SETTLE_MS,
    now: await (s.bootClock ?? bootClockNow)(),
    ...(since ? { since } : {}),
    live: view.live.map((m) => m.record),
    departed: view.departed,
  };
}

async function mysqlFacts(local: LocalServer, signal?: AbortSignal): Promise<MysqlFacts> {
  if (local.server === undefined) return { up: false, error: local.error, gone: local.gone };
  try {
    return mysqlFactsOf(await local.server.status({ signal }));
  } catch (e) {
    if (signal?.aborted) throw signal.reason;
    return { up: false, error: (e as Error).message, gone: false };
  }
}

/**
 * Consul as the decision sees it. A switchover away from this node holds the failover lock with this node's
 * session: while it is fresh the node stays read-only; one older than {@link SWITCHOVER_STALE_MS} was left
 * behind by a switchover that died, and is released by its own decision.
 */
function consulFacts(view: ClusterView, session: string, now: number): ConsulFacts {
  const lock = view.primary;
  const f = view.failoverLock;
  // A switchover this node runs (or ran) holds the failover lock with this node's session.
  const mine = f.session === session && f.record?.switchover === true;
  const holds = lock.session !== undefined && lock.session === session;
  const at = f.record?.at ?? 0;
  return {
    up: true,
    lock,
    session,
    ...(mine && holds && now - at < SWITCHOVER_STALE_MS ? { switchingOver: true } : {}),
    // Stale whether or not this node still holds the primary lock: a switchover that died after handing the
    // lock over, or on a node whose mysqld is gone, would otherwise hold back every failover.
    ...(mine && now - at >= SWITCHOVER_STALE_MS ? { staleSwitchoverAt: at } : {}),
  };
}
