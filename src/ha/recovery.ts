/**
 * Whole-cluster recovery: Consul lost its keys (no primary lock record at all, not merely a free lock) while
 * the nodes kept their data. Every datadir this cluster made carries its identity (src/mysql/identity.ts) and
 * every node publishes it in its member record, so the nodes can tell their own cluster's data from any other.
 *
 * The rule, for a node whose data carries an identity, when Consul has no primary lock record and its
 * `SERVICE_NAME-cluster` key is missing or names that same identity:
 * 1. wait RECOVERY_SETTLE_WINDOW, counted on this node's own boot clock from the first pass that saw no lock
 *    record (kept in its state file; never compared with another machine's clock), so that the nodes that are
 *    coming publish their member records (executed and received GTIDs, identity);
 * 2. then {@link planRecovery} picks, among the live members of that identity, the node that holds every
 *    transaction any of them holds (FAILOVER_PRIORITY, then the node name, break ties; priority 0 never);
 * 3. that node takes the failover lock (so only one recovery or failover runs), checks the plan again on a
 *    fresh read, takes the primary lock keeping its data (like a last primary resuming), publishes the
 *    identity key if it is missing, and turns writable; the others follow it as after a failover.
 *
 * Nobody is promoted when no node holds everything (diverged: the reason names every node's GTID set), when a
 * departed member of that identity held transactions the candidate lacks, or when only priority-0 nodes hold
 * everything. Data without an identity, or with another one than Consul's key, is refused with one line.
 *
 * What this cannot see: a node that has not started (or not reported) by the end of the window. Its data is
 * not waited for: if it holds transactions the chosen node lacks, it comes back errant, and its extra
 * transactions are not in the cluster.
 *
 * @module
 */
import type { BootInstant } from "../boot_clock.ts";
import { GtidParseError } from "../mysql/gtid.ts";

export type { BootInstant };
import { contains, type MemberRecord, transactionsOf } from "./failover_plan.ts";

/** How far two boot times may differ and still be the same boot (the wall clock may be stepped meanwhile). */
export const SAME_BOOT_MS = 60_000;

/** Whether two moments are of the same boot of the same machine, so that their difference means something. */
export function sameBoot(a: BootInstant, b: BootInstant): boolean {
  return Math.abs(a.bootAt - b.bootAt) < SAME_BOOT_MS && b.ms >= a.ms;
}

/** What a pass knows for recovery: gathered only when Consul has no primary lock record at all. */
export interface RecoveryFacts {
  /** The name of the identity key, for messages (`SERVICE_NAME-cluster`). */
  readonly key: string;
  /** RECOVERY_SETTLE_WINDOW. */
  readonly settleMs: number;
  /** The boot clock now. */
  readonly now: BootInstant;
  /** When this node first saw no lock record (its state file), if it did before on this boot. */
  readonly since?: BootInstant;
  /** The live members' records. */
  readonly live: readonly MemberRecord[];
  /** The last records of departed members. */
  readonly departed: readonly MemberRecord[];
}

/**
 * The settle window in force: RECOVERY_SETTLE_WINDOW, but never shorter than the in-server lease and 2 s, so
 * that an old primary frozen when Consul lost its keys (it reports nothing, and cannot be chosen) has fenced
 * itself before another node turns writable. Pure.
 *
 * @param leaseMs The lease's length (SESSION_TTL/2).
 */
export function settleWindowMs(configuredMs: number, leaseMs: number): number {
  return Math.max(configuredMs, leaseMs + 2000);
}

/** The boot clock's resolution: the kernel's uptime comes in whole seconds. */
export const BOOT_CLOCK_RESOLUTION_MS = 1000;

/**
 * How long this node has surely waited since it first saw no primary lock record: 0 the first time, and one
 * tick of the clock less than the two readings differ (so the window is never cut short by the rounding).
 */
export function waitedMs(r: RecoveryFacts): number {
  if (r.since === undefined || !sameBoot(r.since, r.now)) return 0;
  return Math.max(0, r.now.ms - r.since.ms - BOOT_CLOCK_RESOLUTION_MS);
}

/** The outcome of planning a recovery. */
export type RecoveryPlan =
  | { readonly kind: "promote"; readonly candidate: MemberRecord; readonly reason: string }
  | { readonly kind: "wait"; readonly reason: string }
  | { readonly kind: "impossible"; readonly reason: string };

/**
 * Chooses the node that recovers the cluster, among the live members whose data carries `identity`: the one
 * that holds every transaction any of them holds (executed or received); FAILOVER_PRIORITY (higher), then the
 * node name, break ties; priority 0 never. A departed member of that identity with transactions the candidate
 * lacks blocks it (promoting would lose them). Pure.
 *
 * @param self This node: its record must be among the live ones (it is published by its first pass).
 */
export function planRecovery(
  identity: string,
  self: string,
  live: readonly MemberRecord[],
  departed: readonly MemberRecord[] = [],
): RecoveryPlan {
  const members = live.filter((m) => m.cluster === identity);
  if (!members.some((m) => m.node === self)) {
    return { kind: "wait", reason: "this node's member record is not published yet" };
  }
  try {
    const have = new Map(members.map((m) => [m.node, transactionsOf(m)]));
    const basis = members.map((m) => `${m.node} has ${have.get(m.node)!.toString() || "(nothing)"}`).join(
      "; ",
    );
    const complete = members.filter((m) =>
      members.every((o) => contains(have.get(m.node)!, have.get(o.node)!))
    );
    if (complete.length === 0) {
      return {
        kind: "impossible",
        reason: `no node holds every transaction the others hold (diverged): ${basis}; nobody is promoted`,
      };
    }
    const eligible = complete.filter((m) => m.priority > 0);
    if (eligible.length === 0) {
      return {
        kind: "impossible",
        reason: `only ${
          complete.map((m) => m.node).join(", ")
        } (FAILOVER_PRIORITY=0) holds every transaction: ${basis}`,
      };
    }
    const [candidate] = [...eligible].sort((a, b) => b.priority - a.priority || a.node.localeCompare(b.node));
    const lost = departed.filter((d) =>
      d.cluster === identity && !members.some((m) => m.node === d.node) &&
      !contains(have.get(candidate.node)!, transactionsOf(d))
    );
    if (lost.length > 0) {
      return {
        kind: "impossible",
        reason: `${
          lost.map((d) =>
            `${d.node} (gone since ${new Date(d.updatedAt).toISOString()}) had ${transactionsOf(d)}`
          )
            .join("; ")
        }, which no live node has (${basis}): bring ${
          lost.map((d) => d.node).join(", ")
        } back, or delete its member record (SERVICE_NAME-members/NODE) to accept the loss`,
      };
    }
    return {
      kind: "promote",
      candidate,
      reason:
        `${candidate.node} holds every transaction the ${members.length} reporting node(s) hold: ${basis}`,
    };
  } catch (e) {
    if (e instanceof GtidParseError) return { kind: "impossible", reason: `a member record: ${e.message}` };
    throw e;
  }
}

/** What the recovery step needs of the pass's facts. */
export interface RecoveryInput {
  /** This node's name. */
  readonly self: string;
  /** The identity the local data carries. */
  readonly identity?: string;
  readonly readOnly: boolean;
  /** The identity Consul's key names. */
  readonly cluster?: string;
  readonly recovery?: RecoveryFacts;
}

/** What recovery says a node with data does: wait (and say why), or recover the cluster itself. */
export type RecoveryStep =
  | { readonly kind: "wait"; readonly reason: string }
  | { readonly kind: "recover"; readonly identity: string; readonly reason: string };

/**
 * Whether an empty node must not bootstrap a new cluster although Consul has no primary lock record: Consul
 * names a cluster identity, or another live member has data (a recovery is under way). The reason, or
 * undefined to bootstrap. Pure.
 */
export function bootstrapHeldBack(
  self: string,
  cluster: string | undefined,
  recovery: RecoveryFacts | undefined,
): string | undefined {
  const others = (recovery?.live ?? []).filter((m) =>
    m.node !== self && (m.cluster !== undefined || m.executed !== "")
  );
  if (cluster === undefined && others.length === 0) return undefined;
  const who = others.length > 0
    ? `${others.map((m) => m.node).join(", ")} hold data`
    : `Consul names cluster ${cluster}`;
  return `no primary lock exists, but ${who}: this empty node waits for a primary instead of bootstrapping a ` +
    "new cluster";
}

/** Whether another live member's data carries `identity` and holds transactions. Pure. */
export function othersHoldData(self: string, identity: string, recovery: RecoveryFacts | undefined): boolean {
  return (recovery?.live ?? []).some((m) => m.node !== self && m.cluster === identity && m.executed !== "");
}

/**
 * What a node with data (not restored from a snapshot, or restored while others of its cluster hold data) does when Consul has no primary lock record. Pure:
 * decide.ts's `nobodyIsPrimary` turns a wait into a report (or a fence, when the node is writable).
 */
export function recoveryStep(i: RecoveryInput): RecoveryStep {
  const r = i.recovery;
  const wait = (reason: string): RecoveryStep => ({ kind: "wait", reason });
  const key = r?.key ?? "SERVICE_NAME-cluster";
  if (i.identity === undefined) {
    return wait(
      "No primary lock exists and this node's data carries no cluster identity (made before this version, or " +
        "not by this cluster): refusing to recover the cluster from it; run 'autopilot restore' on a stopped " +
        "node to bring the cluster back from a snapshot, or move MYSQL_DATADIR aside",
    );
  }
  if (i.cluster !== undefined && i.cluster !== i.identity) {
    return wait(
      `No primary lock exists and this node's data belongs to cluster ${i.identity}, but Consul's ${key} ` +
        `names cluster ${i.cluster}: refusing to use it; move MYSQL_DATADIR aside, or point this node at its ` +
        "own cluster's Consul or SERVICE_NAME",
    );
  }
  if (!i.readOnly) return wait("no primary lock exists (Consul lost its keys?) and this node is writable");
  if (r === undefined) return wait("the primary lock is held but its value names no node: waiting");
  const waited = waitedMs(r);
  if (waited < r.settleMs) {
    return wait(
      `Consul has no primary lock (its keys were lost?): waiting ${
        Math.ceil((r.settleMs - waited) / 1000)
      } s more (RECOVERY_SETTLE_WINDOW) for the nodes of cluster ${i.identity} to report, then the one ` +
        "holding every transaction becomes primary",
    );
  }
  const plan = planRecovery(i.identity, i.self, r.live, r.departed);
  if (plan.kind === "wait") return wait(`recovering the cluster: ${plan.reason}`);
  if (plan.kind === "impossible") return wait(`Cannot recover the cluster: ${plan.reason}`);
  if (plan.candidate.node !== i.self) {
    return wait(
      `recovering the cluster: ${plan.reason}; waiting for ${plan.candidate.node} to take the lock`,
    );
  }
  return { kind: "recover", identity: i.identity, reason: `recovering the cluster: ${plan.reason}` };
}

/** The identity the pass should publish or write, on a serving primary (see report.ts `keepIdentity`). */
export type IdentityUpkeep =
  | { readonly kind: "none" }
  | { readonly kind: "publish"; readonly id: string }
  | { readonly kind: "write-server"; readonly id?: string }
  | { readonly kind: "mismatch"; readonly server: string; readonly consul: string };

/**
 * What a serving primary does about the identity: its data's and Consul's key must be the same. A server
 * without one (a cluster made before this version) gets Consul's, or a new one; Consul without one gets the
 * server's. Pure.
 */
export function identityUpkeep(server: string | undefined, consul: string | undefined): IdentityUpkeep {
  if (server !== undefined && consul === undefined) return { kind: "publish", id: server };
  if (server === undefined) return { kind: "write-server", ...(consul === undefined ? {} : { id: consul }) };
  if (server !== consul) return { kind: "mismatch", server, consul: consul! };
  return { kind: "none" };
}
