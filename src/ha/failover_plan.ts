/**
 * Who becomes primary when the primary is gone: pure functions over the member records every node publishes.
 *
 * Each node keeps a member record in Consul (`SERVICE_NAME-members/NODE`), held by its own session so that it
 * disappears when the node does, and refreshed by every hook pass: its address, priority, and the GTIDs it has
 * executed and received. The node that holds the failover lock plans from these records alone and hands the
 * primary lock to the chosen node's own session; every node then carries out its own part (the candidate
 * applies its relay log and turns writable, the others follow it). No node needs to log in to another.
 *
 * @module
 */
import type { Flavour } from "../mysql/flavour.ts";
import { type GtidSet, parseGtidSet } from "../mysql/gtid.ts";

/** What one node publishes about itself. */
export interface MemberRecord {
  readonly node: string;
  /** The node's host name, which ContainerPilot's service ids end with (records before 0.2 lack it). */
  readonly hostname?: string;
  readonly address: string;
  readonly port: number;
  /** FAILOVER_PRIORITY: higher wins among equally advanced nodes; 0 never becomes primary. */
  readonly priority: number;
  readonly flavour: Flavour;
  /** Whether this node holds the primary lock, replicates, or neither. */
  readonly role: "primary" | "replica" | "none";
  /** Everything this server has applied (MariaDB `gtid_binlog_state`, MySQL `gtid_executed`). */
  readonly executed: string;
  /** What its receiver thread has fetched (MariaDB `Gtid_IO_Pos`, MySQL `Retrieved_Gtid_Set`); "" if none. */
  readonly retrieved: string;
  /** When the record was written (epoch ms). */
  readonly updatedAt: number;
  /** The cluster identity the node's data carries (src/mysql/identity.ts); absent when none (records of earlier versions lack it). */
  readonly cluster?: string;
}

/** The outcome of planning a failover. */
export type FailoverPlan =
  /** Promote `candidate`; `reason` names the GTID sets the choice was based on. */
  | { readonly kind: "promote"; readonly candidate: MemberRecord; readonly reason: string }
  /** Not yet: some members have not reported since the primary was lost. */
  | { readonly kind: "wait"; readonly reason: string }
  /** No node can safely become primary. */
  | { readonly kind: "impossible"; readonly reason: string };

/**
 * The transactions a member has, executed or only received.
 *
 * @throws {GtidParseError} if a record holds a malformed set.
 */
export function transactionsOf(m: MemberRecord): GtidSet {
  const executed = parseGtidSet(m.flavour, m.executed);
  const retrieved = parseGtidSet(m.flavour, m.retrieved);
  return executed.flavour === "mysql" && retrieved.flavour === "mysql"
    ? executed.union(retrieved)
    : executed.flavour === "mariadb" && retrieved.flavour === "mariadb"
    ? executed.union(retrieved)
    : executed;
}

/** Whether `a` holds every transaction of `b` (false across flavours). */
export function contains(a: GtidSet, b: GtidSet): boolean {
  return a.flavour === "mysql" && b.flavour === "mysql"
    ? a.contains(b)
    : a.flavour === "mariadb" && b.flavour === "mariadb"
    ? a.contains(b)
    : false;
}

/**
 * How far back a departed member's record counts: a replica whose session ended within this time before the
 * primary was lost may have held transactions the live nodes lack.
 */
export const DEPARTED_WINDOW_MS = 10 * 60_000;

/**
 * Chooses the node to promote.
 *
 * The candidate must have every transaction any live member has (received counts, since a candidate applies
 * its relay log before it turns writable): the node that received the most wins, then the highest
 * FAILOVER_PRIORITY, then the lowest node name. A node with priority 0, the failed primary, and any member
 * that has not reported since `freshSince` cannot be chosen; a member that has not reported blocks the plan
 * (`wait`), because it might hold transactions the others lack.
 *
 * Departed members (their session ended, their last record is still in Consul) count too: a replica that was
 * last seen within {@link DEPARTED_WINDOW_MS} before the primary's loss with transactions the candidate lacks
 * blocks the promotion, since promoting would lose them (a partition that left one lagging node talking to
 * Consul). Deleting that member's record tells the cluster it is gone for good. The failed primary's own last
 * transactions do not block: with asynchronous replication they are the accepted loss.
 *
 * @param members The live members' records (the failed primary's too, if it is still published).
 * @param failedPrimary The node that held the primary lock last.
 * @param freshSince Records older than this (epoch ms) do not count: they predate the primary's loss.
 * With `lastPrimaryCounts` the failed primary is not left out when its record among `members` is fresh (it is
 * a live member that reported, or answered, since the primary was lost: the lock was lost while the node
 * lives, as when Consul expired every session at once): it counts like any member and, among the nodes that
 * have everything, is chosen first, so the role does not move for nothing. A record of it that is not fresh is
 * left out as before, and never holds the plan back.
 *
 * A failed primary that stopped cleanly (its pre-stop recorded what it had executed, read-only, in the lock
 * record: PrimaryRecord.executed) is no accepted loss: a candidate that lacks any of those transactions is not
 * promoted, as for a departed member.
 *
 * @param departed The last records of members whose session has ended.
 * @param lastPrimaryCounts Count a fresh record of the failed primary, and prefer it.
 * @param stoppedWith What the failed primary had executed when it stopped cleanly, if it recorded it.
 * @returns The plan.
 */
export function planFailover(
  members: readonly MemberRecord[],
  failedPrimary: string | undefined,
  freshSince: number,
  departed: readonly MemberRecord[] = [],
  lastPrimaryCounts = false,
  stoppedWith?: string,
): FailoverPlan {
  const others = members.filter((m) =>
    m.node !== failedPrimary || (lastPrimaryCounts && m.updatedAt >= freshSince)
  );
  const stale = others.filter((m) => m.updatedAt < freshSince);
  if (stale.length > 0) {
    return { kind: "wait", reason: `waiting for ${stale.map((m) => m.node).join(", ")} to report its GTIDs` };
  }
  if (others.length === 0) return { kind: "impossible", reason: "no other live node to promote" };
  const have = new Map(others.map((m) => [m.node, transactionsOf(m)]));
  const basis = others.map((m) => `${m.node} has ${have.get(m.node)!.toString() || "(nothing)"}`).join("; ");
  const complete = others.filter((m) => others.every((o) => contains(have.get(m.node)!, have.get(o.node)!)));
  if (complete.length === 0) {
    return {
      kind: "impossible",
      reason: `no node has every transaction the others have (diverged): ${basis}`,
    };
  }
  const eligible = complete.filter((m) => m.priority > 0);
  if (eligible.length === 0) {
    return {
      kind: "impossible",
      reason: `only ${
        complete.map((m) => m.node).join(", ")
      } (FAILOVER_PRIORITY=0) has every transaction: ${basis}`,
    };
  }
  const lostWith = departed.filter((d) =>
    d.node !== failedPrimary && d.role === "replica" && d.updatedAt >= freshSince - DEPARTED_WINDOW_MS &&
    !others.some((m) => m.node === d.node)
  );
  // Complete nodes have the same transactions, so checking one covers them all.
  const gone = lostWith.filter((d) => !contains(have.get(eligible[0].node)!, transactionsOf(d)));
  if (gone.length > 0) {
    return {
      kind: "impossible",
      reason: `${
        gone.map((d) =>
          `${d.node} (gone since ${new Date(d.updatedAt).toISOString()}) had ${transactionsOf(d).toString()}`
        ).join("; ")
      }, which no live node has (${basis}): promoting would lose them. Bring ${
        gone.map((d) => d.node).join(", ")
      } back, or delete its member record (SERVICE_NAME-members/NODE) to accept the loss`,
    };
  }
  // A live failed primary counts itself among `others`; a stopped one only through what it recorded.
  if (
    stoppedWith !== undefined && !others.some((m) => m.node === failedPrimary) &&
    !contains(have.get(eligible[0].node)!, parseGtidSet(eligible[0].flavour, stoppedWith))
  ) {
    const stopped = failedPrimary ?? "the old primary";
    return {
      kind: "impossible",
      reason: `${stopped} stopped cleanly with ${stoppedWith}, which no live node has (${basis}): ` +
        `promoting would lose them. Start ${stopped} again (it resumes as primary), or delete the ` +
        "primary lock key (PRIMARY_KEY) to accept the loss",
    };
  }
  const last = (m: MemberRecord) => (lastPrimaryCounts && m.node === failedPrimary ? 1 : 0);
  const [candidate] = [...eligible].sort((a, b) =>
    last(b) - last(a) || b.priority - a.priority || a.node.localeCompare(b.node)
  );
  return {
    kind: "promote",
    candidate,
    reason: last(candidate)
      ? `${candidate.node}, the last primary, is alive and has every transaction the others have: ${basis}`
      : `${candidate.node} has every transaction the others have: ${basis}`,
  };
}
