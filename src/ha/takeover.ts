/**
 * The takeover of a stale primary lock: another node holds it, but its heartbeat (the lock's ModifyIndex,
 * src/ha/heartbeat.ts) has not moved for longer than its lease can last on this node's boot clock. Run by the
 * node holding the failover lock, before the normal failover (which then finds nobody holding the lock).
 *
 * Why this never makes two writable primaries:
 * 1. A primary is writable only while its in-server lease runs (the fence event, every second, turns it
 *    read-only as soon as the lease has lapsed), and it extends the lease only after a heartbeat write that
 *    succeeded, to end at most `leaseMs` after that write was sent (src/ha/actions.ts, renewLease).
 * 2. The observer saw index I no sooner than the write that made it, so no sooner than it was sent. Stale means
 *    I has not moved for `leaseMs + 2 s` on the observer's clock since: the holder's lease, resting on I or an
 *    older write, ended at least 2 s ago, and the fence event (1 s period) has turned it read-only.
 * 3. The lock is freed only in one Consul transaction that checks the index is still I (ConsulStore
 *    `unlockIfUnchanged`): any heartbeat written after I makes it fail. After it, the old holder no longer holds
 *    the lock, so its next heartbeat (a check-and-set rewrite of a lock it holds) fails, and it never extends its
 *    lease again; a new primary is appointed only after the lock is free, and turns writable only with its own
 *    heartbeat and lease.
 * What remains assumed: each machine's clock runs at the right RATE (the holder's lease is measured by its
 * mysqld's clock and its autopilot's monotonic clock, the staleness by the observer's boot clock; their offsets
 * never matter, only that 2 s of margin covers their drift over one lease), and the fence event runs on time
 * (its 1 s period is in the margin).
 *
 * FAILSAFE_MODE (decision D5): a primary that cannot reach Consul may keep extending its lease without moving
 * its heartbeat, as long as every member replicates from it. So the old primary is asked first, over MySQL:
 * writable means no takeover; read-only, or a record in which it said it fenced itself (`fenced`: it released
 * the lock read-only or with mysqld gone, or its pre-stop shut mysqld down), means go; no answer, or a refused
 * connection (a cut made with REJECT refuses too), means this node stops its own replication I/O thread from it
 * (so that the old primary's failsafe check fails, and it fences itself), waits `leaseMs + 2 s` more, then
 * goes. With FAILSAFE_MODE off no lease is ever
 * extended without a heartbeat, so the stale heartbeat is enough and it goes at once.
 *
 * @module
 */
import { getLogger } from "@logtape/logtape";
import { delay } from "../abort.ts";
import type { ClusterKv } from "../cluster_kv.ts";
import type { MysqlServer } from "../mysql/server.ts";
import type { StateStore } from "../state.ts";
import type { PrimaryRecord } from "./decide.ts";
import { STALE_MARGIN_MS } from "./heartbeat.ts";

const log = getLogger(["autopilot", "health"]);

/** What the old primary answered over MySQL: read_only off or on, connection refused, or nothing in time. */
export type PrimaryAnswer = "writable" | "read-only" | "refused" | "silent";

/**
 * What is done about the old primary before its lock is freed (a takeover) or given to another node (a failover
 * with FAILSAFE_MODE on): see {@link clearOldPrimary}.
 */
export interface OldPrimaryGuard {
  readonly leaseMs: number;
  /**
   * FAILSAFE_MODE: an old primary may extend its lease without a heartbeat, so a silent one is waited out.
   * Off, a stale heartbeat alone proves its lease lapsed.
   */
  readonly failsafe: boolean;
  /** Asks a node's server over TCP, as the replication account, whether it is writable. */
  readonly ask: (node: PrimaryRecord) => Promise<PrimaryAnswer>;
  /** This node's server: its replication I/O thread from the old primary is stopped when that one is silent. */
  readonly server: MysqlServer;
  /** This node's name: only a member the old primary's failsafe checks may act on a silent one. */
  readonly self: string;
  /**
   * This node's state: a stop of its I/O thread is marked there (`repointing`) before it is made, so that a pass
   * cut short afterwards leaves it to the next pass to start replication again.
   */
  readonly state?: StateStore;
}

/** What a takeover needs. */
export interface TakeOverArgs extends OldPrimaryGuard {
  readonly kv: ClusterKv;
  /** The holder's session and the index this node saw stand still. */
  readonly found: { readonly session: string; readonly index: number };
}

/** Whether the old primary is out of the way, and whether this node's replication I/O thread was stopped. */
export interface Cleared {
  readonly go: boolean;
  readonly stoppedIo: boolean;
  readonly answer: PrimaryAnswer;
}

/**
 * Makes sure the old primary cannot be writable any more (the module's documentation, D5): it is asked over
 * MySQL; writable means no (logged); read-only, or a record that says it fenced itself (`fenced`), means yes;
 * a refused connection or no answer means yes with FAILSAFE_MODE off, and with it on (a cut made with REJECT
 * refuses too), only on a member its failsafe checks (PrimaryRecord.checks: another node's
 * replication is not what its failsafe looks at), after this node stopped replicating from it and waited
 * `leaseMs + 2 s`.
 */
export async function clearOldPrimary(
  g: OldPrimaryGuard,
  old: PrimaryRecord | undefined,
  signal?: AbortSignal,
): Promise<Cleared> {
  const holder = old?.node ?? "the old primary";
  // A record with `checks` was written with failsafe mode on there, whatever this node's setting.
  const failsafe = g.failsafe || old?.checks !== undefined;
  const answer = old === undefined ? "silent" : await g.ask(old);
  if (answer === "writable") {
    log.error(
      "{holder} has no live heartbeat but answers writable: alive and writable without Consul " +
        "(FAILSAFE_MODE), so nobody else is made primary",
      { holder },
    );
    return { go: false, stoppedIo: false, answer };
  }
  // The old primary said it is out of the way (PrimaryRecord.fenced: read-only or mysqld stopped, writable
  // again only with a rewrite of this record, which the caller's check of the lock's index or its free state
  // rules out): nothing to wait for.
  if (old?.fenced === true) return { go: true, stoppedIo: false, answer };
  // A refused connection proves mysqld is down only where nothing else can refuse it: a cut made with REJECT
  // refuses too, so with failsafe it counts as no answer.
  if (answer === "read-only" || !failsafe) return { go: true, stoppedIo: false, answer };
  const how = answer === "refused" ? "refuses connections" : "does not answer over MySQL";
  if (old?.checks !== undefined && !old.checks.includes(g.self)) {
    log.warn(
      "{holder} {how}, and its failsafe does not check this node ({checks}): leaving " +
        "it to one of those, whose stopping replicating from it is what fences it. If {holder} and those " +
        "are gone for good, delete the primary lock key (PRIMARY_KEY) in Consul: the nodes then recover " +
        "as from an empty Consul",
      { holder, how, checks: old.checks.join(", ") || "no member" },
    );
    return { go: false, stoppedIo: false, answer };
  }
  const stoppedIo = await stopIoFrom(g.server, old, g.state, signal);
  const waitMs = g.leaseMs + STALE_MARGIN_MS;
  log.warn(
    "{holder} {how}: {io}waiting {s} s more (its lease, if it keeps one without Consul, " +
      "then lapses) before another node is made primary",
    { holder, how, io: stoppedIo ? "stopped replicating from it, " : "", s: waitMs / 1000 },
  );
  await delay(waitMs, { signal });
  return { go: true, stoppedIo, answer };
}

/**
 * Frees the stale holder's lock (see the module's documentation).
 *
 * @returns `free`: whether the lock is free now (freed here, or by its holder meanwhile); not when the takeover
 *   is off (logged): the heartbeat moved, another node holds the lock, or the old primary answers writable.
 *   `stoppedIo`: this node's replication I/O thread from the old primary was stopped and is still (the caller
 *   starts it again if nobody is appointed; a node appointed, or following the one appointed, re-points it).
 */
export async function takeOver(a: TakeOverArgs, signal?: AbortSignal): Promise<TakeOverResult> {
  const lock = await a.kv.primary();
  if (lock.session === undefined) return { free: true, stoppedIo: false };
  const holder = lock.record?.node ?? "the holder";
  if (lock.session !== a.found.session || lock.modifyIndex !== a.found.index) {
    log.info("{holder}'s heartbeat moved since it was seen standing still: no takeover", { holder });
    return { free: false, stoppedIo: false };
  }
  const { go, stoppedIo, answer } = await clearOldPrimary(a, lock.record, signal);
  if (!go) return { free: false, stoppedIo: false };
  if (!(await a.kv.takeOverPrimary(lock))) {
    log.info("{holder}'s primary lock moved meanwhile (a heartbeat, a release): no takeover", { holder });
    if (stoppedIo) await startIoAgain(a.server, a.state);
    return { free: false, stoppedIo: false };
  }
  log.warn("Took the primary lock over from {holder} ({answer}): its heartbeat had stood still", {
    holder,
    answer: answer === "silent" ? "no answer" : answer,
  });
  return { free: true, stoppedIo };
}

/** How a takeover ended (see {@link takeOver}). */
export interface TakeOverResult {
  readonly free: boolean;
  readonly stoppedIo: boolean;
}

/**
 * Starts this node's replication again after a stop of its I/O thread that led nowhere, within 5 s of its own
 * (the pass's deadline may be what ended it); a failure is logged, and the state's mark leaves it to the next
 * pass.
 */
export async function startIoAgain(server: MysqlServer, state?: StateStore): Promise<void> {
  try {
    await server.startReplica({ signal: AbortSignal.timeout(5000) });
    if (state?.current.repointing !== undefined) await state.patch({ repointing: undefined });
  } catch (e) {
    log.warn("Cannot start replication again (the next pass does): {e}", { e: (e as Error).message });
  }
}

/** Stops this node's replication I/O thread if it replicates from `primary`; whether it did. */
async function stopIoFrom(
  server: MysqlServer,
  primary: PrimaryRecord | undefined,
  state: StateStore | undefined,
  signal?: AbortSignal,
): Promise<boolean> {
  if (primary === undefined) return false;
  try {
    const r = await server.replicaStatus({ signal });
    if (r === undefined || r.sourceHost !== primary.address || r.sourcePort !== primary.port) return false;
    await state?.patch({ repointing: `${primary.address}:${primary.port}` }); // see NodeState
    await server.stopReplicaIo({ signal });
    return true;
  } catch (e) {
    if (signal?.aborted) throw signal.reason;
    log.warn("Cannot stop the replication I/O thread: {e}", { e: (e as Error).message });
    return false;
  }
}
