/**
 * One function per health decision (see decide.ts): each takes what it needs as arguments (the local server,
 * the cluster's keys, who this node is) and returns whether the node is healthy afterwards. The pass
 * (hooks/health.ts) picks the function; failover.ts holds the failover's.
 *
 * @module
 */
import { getLogger } from "@logtape/logtape";
import type { ClusterKv } from "../cluster_kv.ts";
import type { Secret, TlsFiles } from "../config.ts";
import type { Statement } from "../mysql/flavour.ts";
import { subtractGtids } from "../mysql/gtid.ts";
import type { MysqlServer } from "../mysql/server.ts";
import type { RestoredMark } from "../restored.ts";
import type { KnownMember, StateStore } from "../state.ts";
import { delay } from "../abort.ts";
import { leaseLeftMs } from "../mysql/lease.ts";
import type { PrimaryLock, PrimaryRecord } from "./decide.ts";

const log = getLogger(["autopilot", "health"]);

/** What the pass reports instead of the decision's reason, when an action found out more. */
export interface Outcome {
  readonly level: "warn" | "error";
  readonly text: string;
}

/** How an action left the node. */
export interface ActionResult {
  readonly healthy: boolean;
  /** This node is now the writable primary with a ready lock. */
  readonly serving?: boolean;
  /** The situation changed (a primary was appointed): decide once more in the same pass. */
  readonly again?: boolean;
  readonly outcome?: Outcome;
}

/** This node, as every action that touches the cluster's keys needs it. */
export interface Me {
  readonly self: PrimaryRecord;
  /** This node's session (kept this pass). */
  readonly session: string;
  /**
   * FAILSAFE_MODE: the members this node's failsafe checks, published with each heartbeat
   * (PrimaryRecord.checks), and how to keep what was published in the state file (the failsafe then checks
   * those too, so that every member that may take the lock over is checked).
   */
  readonly published?: Published;
}

/** The members a primary's heartbeat publishes, and the record of what it published (see {@link Me}). */
export interface Published {
  readonly members: readonly KnownMember[];
  record(members: readonly KnownMember[]): Promise<void>;
}

/** The datadir was restored from a snapshot and replication has not started from it yet. */
export interface Restore {
  readonly mark: RestoredMark;
  /** Removes the datadir's restore mark: replication (or the primary's binlog) now starts from it. */
  forget(): Promise<void>;
}

/**
 * Turns the local server read-only (when there is one) and, if `releaseLock`, gives up the primary lock,
 * leaving this node's record in the key: it tells a restarted node that it was the last primary, and (ready)
 * that it did serve, so a failover counts it as the failed primary. Never throws: each failure is logged.
 */
export async function fence(
  a: {
    readonly server: MysqlServer | undefined;
    readonly kv: ClusterKv;
    readonly self: PrimaryRecord;
    readonly session: string | undefined;
    readonly releaseLock: boolean;
  },
  signal?: AbortSignal,
): Promise<ActionResult> {
  if (a.server) {
    await a.server.setReadOnly(true, { signal }).catch((e) =>
      log.error("Cannot turn read-only: {e}", { e: String(e) })
    );
    await dropLease(a.server, signal); // read-only first, then no lease left
  }
  if (a.releaseLock && a.session !== undefined) {
    const session = a.session;
    await (async () => {
      const ready = (await a.kv.primary()).record?.ready === true;
      await a.kv.releasePrimary(session, { ...a.self, ...(ready ? { ready } : {}), fenced: true });
    })().catch((e) => log.error("Cannot release the primary lock: {e}", { e: String(e) }));
  }
  return { healthy: false };
}

/** Tries to take the primary lock with this node's session; false if another node has it. */
export async function takePrimaryLock(kv: ClusterKv, me: Me): Promise<boolean> {
  const taken = await kv.acquirePrimary(me.session, me.self);
  if (taken) {
    log.info("Took the primary lock as {node} ({address}:{port})", { ...me.self });
    return true;
  }
  // Said only when it is so: a refusal with nobody holding it (a lock-delay of an older session) is not that.
  const now = await kv.primary().catch(() => undefined);
  if (now?.session !== undefined && now.session !== me.session) {
    log.info("Another node took the primary lock first; this node will follow it");
  } else {
    log.warn("Consul refused the free primary lock to this node's session: trying again next pass");
  }
  return false;
}

/**
 * The first primary of a new cluster: its accounts, database and root password, then writable, then its first
 * snapshot (which new replicas are restored from). Until a snapshot is stored the primary writes, but reports
 * unhealthy and is not advertised (a store that cannot be written would otherwise go unnoticed until the first
 * replica); the snapshot task (every 5 minutes) tries again, and each pass checks whether one is published.
 */
export async function bootstrapPrimary(
  a: {
    readonly server: MysqlServer;
    readonly kv: ClusterKv;
    readonly me: Me;
    readonly semiSync: boolean;
    readonly leaseMs: number;
    readonly state: StateStore;
    /** The bootstrap statements (accounts, database, root password). */
    readonly statements: () => Promise<readonly (string | Statement)[]>;
    /** Takes and publishes the first snapshot; returns its name. */
    readonly takeFirstSnapshot: () => Promise<string>;
  },
  signal?: AbortSignal,
): Promise<ActionResult> {
  log.info("Bootstrapping the first primary: accounts, database, root password");
  await a.server.run(await a.statements(), { signal });
  const served = await serveAsPrimary({ ...a, restore: undefined }, signal);
  if (!served.healthy) return served;
  try {
    const name = await a.takeFirstSnapshot();
    log.info("First snapshot {name} stored and published for replicas", { name });
    return served;
  } catch (e) {
    const why = (e as Error).message;
    await a.state.patch({ firstSnapshotPending: why });
    return { healthy: false, serving: true, outcome: firstSnapshotMissing(why) };
  }
}

/** The outcome while no snapshot is stored: the same line every pass, so it is logged once. */
export function firstSnapshotMissing(why: string): Outcome {
  return {
    level: "error",
    text: `First snapshot failed: ${why}; this primary is not advertised until a snapshot is stored (the ` +
      "snapshot task tries again every 5 minutes; or run 'autopilot backup now')",
  };
}

/** After a failed first snapshot: whether one has been published since; the flag goes once one has. */
export async function firstSnapshotStored(
  a: { readonly state: StateStore; readonly why: string; readonly published: () => Promise<boolean> },
): Promise<ActionResult> {
  if (!(await a.published())) return { healthy: false, outcome: firstSnapshotMissing(a.why) };
  log.info("A snapshot is stored now: this primary is advertised");
  await a.state.patch({ firstSnapshotPending: undefined });
  return { healthy: true };
}

/**
 * Makes the lock holder the primary: apply everything the receiver fetched, stop replicating, turn writable,
 * then mark the lock record ready so that the others follow.
 */
export async function serveAsPrimary(
  a: {
    readonly server: MysqlServer;
    readonly kv: ClusterKv;
    readonly me: Me;
    readonly semiSync: boolean;
    readonly restore: Restore | undefined;
    /** The in-server lease's length (SESSION_TTL/2). */
    readonly leaseMs: number;
    /**
     * REQUIRE_TLS: the statements that make the accounts refuse plain logins, run just before turning writable
     * (binlogged, so every replica gets them; a cluster that turns REQUIRE_TLS on gets them from its next
     * primary). If they fail, the node stays read-only and the next pass tries again.
     */
    readonly requireTls?: readonly Statement[];
    /**
     * SEMI_SYNC: which live member, if any, holds transactions this node lacks (over TCP). Asked before a
     * read-only node that replicates from nobody (a restarted primary) turns writable: its crash recovery may
     * have cut a tail a replica received.
     */
    readonly aheadOf?: () => Promise<string | undefined>;
  },
  signal?: AbortSignal,
): Promise<ActionResult> {
  const { server, me } = a;
  const replica = await server.replicaStatus({ signal });
  if (replica === undefined && a.aheadOf && await server.readOnly({ signal })) {
    const ahead = await a.aheadOf();
    if (ahead !== undefined) {
      await fence({ server, kv: a.kv, self: me.self, session: me.session, releaseLock: true }, signal);
      return {
        healthy: false,
        outcome: {
          level: "error",
          text: `${ahead} that this primary lacks (its restart cut an unacknowledged tail): not turning ` +
            "writable; the primary lock is released so that the node holding everything is appointed",
        },
      };
    }
  }
  if (replica) {
    const received = replica.retrievedGtids;
    if (received !== "" && !(await server.waitForGtids(received, 60, { signal }))) {
      log.error("Cannot apply the received transactions {received} within 60 s: not turning writable", {
        received,
      });
      return { healthy: false };
    }
    await server.resetReplicaAll({ signal });
  }
  if (a.restore) {
    // Restored from a snapshot and never replicated: new transactions continue from the snapshot's position,
    // so that nodes restored from the same snapshot can follow this one.
    await server.startReplicationAfter(a.restore.mark.gtid, a.restore.mark.binlogState, { signal });
    await a.restore.forget();
  }
  if (a.semiSync) await server.setSemiSyncSource(true, { signal });
  if (!(await leaseForWriting(a, signal))) return { healthy: false };
  // A switchover from this node may have blocked writes since the keys were read: never undo that.
  if (await switchoverUnderWay(a)) return { healthy: false };
  if (a.requireTls) {
    // Before turning writable, so that the application never reaches a writable primary whose accounts still
    // take plain logins. The admin account may write while read_only is on (MariaDB's READ ONLY ADMIN; on
    // MySQL the lease above left super_read_only off and read_only on), and the lease fences this node.
    const failed = await server.run(a.requireTls, { signal }).then(() => undefined, (e: unknown) => e);
    if (failed !== undefined) {
      if (signal?.aborted) throw failed;
      const why = failed instanceof Error ? failed.message : String(failed);
      const text =
        `Cannot make the accounts require TLS (REQUIRE_TLS): ${why}; staying read-only, tried again ` +
        "next pass";
      return { healthy: false, outcome: { level: "error", text } };
    }
  }
  await server.setReadOnly(false, { signal });
  if (await switchoverUnderWay(a)) {
    await server.setReadOnly(true, { signal });
    return { healthy: false };
  }
  if (
    !(await a.kv.acquirePrimary(me.session, { ...me.self, ready: true, ...checksOf(me) }).catch(() => false))
  ) {
    // The lock went elsewhere meanwhile (or Consul cannot say): never stay writable without it.
    await server.setReadOnly(true, { signal });
    await dropLease(server, signal);
    log.error("Lost the primary lock while turning writable: read-only again");
    return { healthy: false };
  }
  log.info("Primary: writable");
  return { healthy: true, serving: true };
}

/**
 * Whether a switchover away from this node holds the failover lock now (read again, just before and after
 * turning writable: `autopilot switchover` runs beside the health pass and may have started since its read).
 * When Consul cannot say, it is taken as under way.
 */
async function switchoverUnderWay(a: { readonly kv: ClusterKv; readonly me: Me }): Promise<boolean> {
  try {
    const f = await a.kv.failoverLock();
    const under = f.session === a.me.session && f.record?.switchover === true;
    if (under) log.info("A switchover away from this node is under way: staying read-only");
    return under;
  } catch {
    return true;
  }
}

/** What follow() found on an errant node. */
export interface ErrantFound {
  /** The primary's executed GTIDs. */
  readonly primaryExecuted: string;
  /** This node's. */
  readonly mine: string;
  /** What this node has that the primary lacks. */
  readonly extra: string;
  /** The plain outcome's text ("Errant node: ..."). */
  readonly text: string;
}

/** Replication from a source, as the replication account. */
export interface Follow {
  readonly primary: PrimaryRecord;
  /** Restored from a snapshot: replicate from its position. */
  readonly fromGtid?: string;
  /** This node has written: it rejoins only if the primary has everything it has. */
  readonly demote: boolean;
}

/**
 * Replicates from the primary. Unless it was just restored from a snapshot, a node proves first that it has
 * nothing the new source lacks: an old primary coming back, but also a replica being re-pointed (it may have
 * got ahead of the new primary). One that has is errant: it is not rejoined (`errant` says what to do).
 */
export async function follow(
  a: Follow & {
    readonly server: MysqlServer;
    readonly state: StateStore;
    readonly restore: Restore | undefined;
    readonly repl: { readonly user: string; readonly password: Secret; readonly tls?: TlsFiles };
    /** The primary's executed GTIDs, asked over TCP as the replication account. */
    readonly primaryExecuted: () => Promise<string>;
    /**
     * An errant node: what is done about it (src/ha/rebuild.ts handleErrant: a semi-sync tail discarded, or the
     * extra transactions saved, then REBUILD_ERRANT_NODE), returning the outcome to report instead of the
     * plain one; and the hint when nothing is done.
     */
    readonly errant: {
      readonly hint: string;
      readonly handle?: (e: ErrantFound) => Promise<Outcome | undefined>;
    };
  },
  signal?: AbortSignal,
): Promise<ActionResult> {
  const { server, primary } = a;
  const source = `${primary.address}:${primary.port}`;
  if (a.fromGtid === undefined) {
    const theirs = await a.primaryExecuted();
    const mine = (await server.gtidState({ signal })).executed;
    const extra = subtractGtids(server.flavour, mine, theirs).toString();
    if (extra !== "") {
      const outcome: Outcome = {
        level: "error",
        text:
          `Errant node: this node has transactions ${extra} that the primary ${primary.node} (${source}) ` +
          `lacks; not rejoining${a.errant.hint}`,
      };
      const handled = await a.errant.handle?.({ primaryExecuted: theirs, mine, extra, text: outcome.text });
      return { healthy: false, outcome: handled ?? outcome };
    }
  }
  await dropLease(server, signal, true); // a replica never runs with a live lease, and has the fence too
  await a.state.patch({ repointing: source }); // until START REPLICA, see NodeState
  await server.stopReplica({ signal }).catch(() => {});
  if (a.fromGtid !== undefined) {
    await server.startReplicationAfter(a.fromGtid, a.restore?.mark.binlogState, { signal });
  }
  await server.changeSource({
    host: primary.address,
    port: primary.port,
    user: a.repl.user,
    password: a.repl.password.reveal(),
    connectRetry: 1,
    heartbeatPeriod: 1,
    demote: a.demote,
    ...(a.repl.tls ? { tls: a.repl.tls } : {}),
  }, { signal });
  await a.restore?.forget(); // the position is in the server now (gtid_slave_pos)
  log.info("Replicating from {node} ({source}){from}", {
    node: primary.node,
    source,
    from: a.fromGtid
      ? ` after ${a.fromGtid}`
      : a.demote
      ? " (rejoined: nothing this node has is missing there)"
      : "",
  });
  return await startReplication({ server, state: a.state, source }, signal);
}

/** Starts replication, and gives the receiver a moment to connect so a good pass reports healthy at once. */
export async function startReplication(
  a: { readonly server: MysqlServer; readonly state: StateStore; readonly source: string },
  signal?: AbortSignal,
): Promise<ActionResult> {
  await a.server.startReplica({ signal });
  if (a.state.current.repointing !== undefined) await a.state.patch({ repointing: undefined });
  for (let i = 0; i < 20; i++) {
    const status = await a.server.replicaStatus({ signal });
    if (status?.ioRunning === "yes" && status.sqlRunning) return { healthy: true };
    if (status?.lastIoError || status?.lastSqlError) break;
    await delay(100, { signal });
  }
  log.warn("Replication from {source} started but is not running yet", { source: a.source });
  return { healthy: false };
}

/**
 * The holder's heartbeat: rewrites the primary lock as it was read (`lock`, same record) only if it has not
 * moved since, which moves its ModifyIndex for every other node to see (src/ha/heartbeat.ts).
 *
 * @returns When the write was sent (performance.now()), if it succeeded; `undefined` if it failed (the lock
 *   moved or went elsewhere, the session is gone, Consul did not answer): then no lease may rest on it.
 */
export async function heartbeat(
  kv: ClusterKv,
  me: Me,
  lock: PrimaryLock,
): Promise<number | undefined> {
  const { session, self, published } = me;
  if (lock.session !== session || lock.modifyIndex === undefined) return undefined;
  const { checks: _, fenced: __, executed: ___, ...base } = lock.record ?? self;
  const record = { ...base, ...checksOf(me) };
  const sentAt = performance.now();
  try {
    if (!(await kv.heartbeatPrimary(session, record, lock.modifyIndex))) return undefined;
  } catch (e) {
    log.warn("The heartbeat (a rewrite of the primary lock) got no answer: {e}", { e: (e as Error).message });
    return undefined;
  }
  // Only the Consul write decides: a state file that cannot be written is its own problem, not the lease's.
  await published?.record(published.members).catch((e) =>
    log.error("Cannot keep the published members in the state file: {e}", { e: (e as Error).message })
  );
  return sentAt;
}

/** `{ checks }` for a lock record this node writes: the members its failsafe checks (FAILSAFE_MODE on). */
function checksOf(me: Me): { readonly checks?: readonly string[] } {
  return me.published === undefined ? {} : { checks: me.published.members.map((m) => m.node) };
}

/**
 * The steady primary's pass: its session was renewed at `renewedAt` (performance.now()), then its heartbeat
 * written (a rewrite of the primary lock as this pass read it). Only a heartbeat that was written extends the
 * in-server lease, to end `leaseMs` after the earlier of the two was sent: the renewal, so the lease also ends
 * well before Consul can expire the session (SESSION_TTL after the renewal), and before the heartbeat, so it
 * ends before any other node can find the heartbeat stale (leaseMs + 2 s after it first sees that write). This
 * runs before anything else in the pass can hang. A failure is logged: the server then fences itself when the
 * lease lapses, and the next pass finds it read-only with the lock and serves again.
 */
export async function renewLease(
  a: {
    readonly server: MysqlServer;
    readonly kv: ClusterKv;
    readonly me: Me;
    /** The primary lock as this pass read it. */
    readonly lock: PrimaryLock;
    readonly leaseMs: number;
    readonly renewedAt: number;
  },
  signal?: AbortSignal,
): Promise<void> {
  const beat = await heartbeat(a.kv, a.me, a.lock);
  if (beat === undefined) {
    log.warn(
      "The heartbeat could not be written (the primary lock moved, or the session or Consul is gone): the " +
        "lease is not extended, and the server fences itself when it lapses",
    );
    return;
  }
  const ms = leaseLeftMs(a.leaseMs, Math.min(a.renewedAt, beat), performance.now());
  if (ms <= 0) {
    log.warn(
      "This pass kept its session longer than the lease lasts: the lease is not extended, and the " +
        "server fences itself when it lapses",
    );
    return;
  }
  await a.server.extendLease(ms, { signal }).catch((e) => {
    if (!signal?.aborted) log.warn("Cannot extend the in-server lease: {e}", { e: (e as Error).message });
  });
}

/**
 * Before a primary turns writable: the fence event installed, the session renewed, the heartbeat written (the
 * primary lock rewritten as read just now), and the lease extended from the renewal (sent before the
 * heartbeat; see {@link renewLease}). False (logged) when the session is gone, the lock is not this node's any
 * more, or the lease could not be written in time.
 */
export async function leaseForWriting(
  a: { readonly server: MysqlServer; readonly kv: ClusterKv; readonly me: Me; readonly leaseMs: number },
  signal?: AbortSignal,
): Promise<boolean> {
  await a.server.installLease({ signal });
  const sentAt = performance.now();
  if (!(await a.kv.renewSession(a.me.session))) {
    log.error("This node's Consul session is gone: not turning writable");
    return false;
  }
  if ((await heartbeat(a.kv, a.me, await a.kv.primary())) === undefined) {
    log.error(
      "The heartbeat could not be written (this node does not hold the primary lock): not turning writable",
    );
    return false;
  }
  const ms = leaseLeftMs(a.leaseMs, sentAt, performance.now());
  if (!(await a.server.extendLease(ms, { signal, turningWritable: true }))) {
    log.error("The session's renewal took longer than the lease (SESSION_TTL/2): not turning writable");
    return false;
  }
  return true;
}

/**
 * No live lease on a node that is not (or no longer) primary (`install`: the fence event first, so that a
 * replica turned writable by hand is fenced too). A failure is logged: a lease left lapses by itself.
 */
async function dropLease(server: MysqlServer, signal?: AbortSignal, install = false): Promise<void> {
  await (async () => {
    if (install) await server.installLease({ signal });
    await server.clearLease({ signal });
  })().catch((e) =>
    log.warn("Cannot {what}: {e}", {
      what: install ? "install the in-server fence and remove its lease" : "remove the in-server lease",
      e: (e as Error).message,
    })
  );
}

/** A switchover that died left the failover lock held by this node's session: release it, keeping its record. */
export async function endSwitchover(
  a: { readonly kv: ClusterKv; readonly session: string; readonly value: string | undefined; reason: string },
): Promise<ActionResult> {
  log.warn("{reason}", { reason: a.reason });
  await a.kv.releaseFailoverLock(a.session, a.value ?? "");
  return { healthy: false, again: true };
}
