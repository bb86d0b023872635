/**
 * `autopilot health`: ContainerPilot's health check for the `mysql` service, every few seconds; also what
 * `autopilot on-change` runs when the primary changes.
 *
 * Each pass gathers the facts (the local server, the primary lock, this node's session), lets `decideHealth()`
 * pick what to do, does it, publishes this node's member record, and exits 0 only when this node is healthy in
 * its role. The first pass of the first node bootstraps the cluster; a later node sets up replication; when
 * the primary is gone, the node that wins the failover lock appoints the most advanced replica.
 *
 * The pass that finds this node the writable primary also keeps it in the `SERVICE_NAME-primary` service
 * (src/services.ts). `autopilot health --primary` changes nothing and passes only on the node that holds the
 * primary lock and is writable: a check for scripts and operators.
 *
 * @module
 */
import { getLogger } from "@logtape/logtape";
import type { Config } from "../src/config.ts";
import { ConsulStore, ConsulUnavailableError, SessionGoneError } from "../src/consul.ts";
import { type MemberRecord, planFailover } from "../src/ha/failover_plan.ts";
import { takeFailoverLock } from "../src/ha/failover_lock.ts";
import {
  type ConsulFacts,
  decideHealth,
  type HealthDecision,
  type HealthFacts,
  holdsLock,
  type MysqlFacts,
  type PrimaryLock,
  primaryLockFrom,
  type PrimaryRecord,
  quietPeriodReason,
} from "../src/ha/decide.ts";
import { connectLocal, connectPeer, delay, flavourOf, gatherMysqlFacts } from "../src/local.ts";
import { type LiveMember, liveMembers, memberRecords, probeMember, publishMember } from "../src/members.ts";
import { bootstrapStatements } from "../src/mysql/bootstrap.ts";
import { MysqlClient, MysqlUnavailableError } from "../src/mysql/client.ts";
import { type Flavour, type FlavourSql, sqlFor } from "../src/mysql/flavour.ts";
import { clearLease, extendLease, installLease, leaseLeftMs, leaseMsFor } from "../src/mysql/lease.ts";
import { subtractGtids } from "../src/mysql/gtid.ts";
import { nodeAddress } from "../src/node.ts";
import { lockPasses, type NodeState, readState, writeFileAtomic, writeState } from "../src/state.ts";
import {
  clearRestoredMark,
  readRestoredMark,
  type RestoredMark,
  RestoredMarkError,
} from "../src/restored.ts";
import type { CommandContext } from "../src/cli/command.ts";
import { EXIT } from "../src/cli/exit.ts";
import { putMetrics } from "../src/metrics.ts";
import {
  advertisePrimary,
  planSweep,
  primaryServiceName,
  SWEEP_GRACE_MS,
  withdrawPrimary,
} from "../src/services.ts";

const log = getLogger(["autopilot", "health"]);

/**
 * `autopilot health` (`primaryOnly`: `health --primary`) and `autopilot on-change`: one pass, under the node's
 * pass lock unless it only reads.
 */
export async function runHealth(ctx: CommandContext, primaryOnly: boolean): Promise<number> {
  // One acting pass at a time on a node (`health --primary` only reads).
  using lock = primaryOnly ? undefined : await lockPasses(ctx.config.node.stateDir, PASS_LOCK_WAIT_MS);
  if (!primaryOnly && lock === undefined) {
    log.warn("Another health or on-change pass still runs on this node after {s} s: this one is skipped", {
      s: PASS_LOCK_WAIT_MS / 1000,
    });
    return EXIT.failed;
  }
  const state = await readState(ctx.config.node.stateDir);
  const flavour = flavourOf(ctx.config, state);
  const address = nodeAddress(ctx.config, ctx.env, Deno.networkInterfaces());
  if (address === undefined) {
    log.error("Cannot tell this node's address: set NODE_ADDRESS");
    return EXIT.failed;
  }
  const self: PrimaryRecord = { node: ctx.config.node.name, address, port: ctx.config.mysql.port };
  const consul = new ConsulStore(ctx.config.consul);
  try {
    return primaryOnly ? await primaryCheck(ctx.config, flavour, consul, state) : await healthPass({
      config: ctx.config,
      consul,
      state,
      self,
      flavour,
      sql: sqlFor(flavour),
      db: undefined,
    });
  } finally {
    consul.close();
  }
}

/** How long a pass waits for another one on the same node to finish. */
const PASS_LOCK_WAIT_MS = 30_000;

interface PassContext {
  readonly config: Config;
  readonly consul: ConsulStore;
  /** This node's state; actions replace it as they save it. */
  state: NodeState;
  readonly self: PrimaryRecord;
  readonly flavour: Flavour;
  readonly sql: FlavourSql;
  db: MysqlClient | undefined;
  /** The datadir was restored from a snapshot and replication has not started from it yet: from where. */
  restored?: RestoredMark;
  /** Why the local server could not be reached this pass, if it could not. */
  dbError?: MysqlUnavailableError;
  /** Set by an action after which the situation has changed: decide once more in the same pass. */
  again?: boolean;
  /** Set once this pass has made this node, or found it, the writable primary with a ready lock. */
  serving?: boolean;
  /** What the pass reports instead of the decision's reason, when an action found out more (an errant node). */
  outcome?: { readonly level: "warn" | "error"; readonly text: string };
}

async function healthPass(c: PassContext): Promise<number> {
  const started = performance.now();
  if (c.state.rebuilding) return await finishRebuild(c);
  try {
    c.restored = await readRestoredMark(c.config.mysql.datadir);
  } catch (e) {
    if (!(e instanceof RestoredMarkError)) throw e;
    log.error("{message}", { message: e.message });
    return EXIT.failed;
  }
  try {
    c.db = await connectLocal(c.config, c.flavour);
  } catch (e) {
    if (!(e instanceof MysqlUnavailableError)) throw e;
    c.dbError = e;
  }
  try {
    let facts = await gatherFacts(c);
    let healthy = false;
    let outcome: NonNullable<PassContext["outcome"]> = { level: "warn", text: "" };
    // A failover changes the situation within the pass: the appointed node promotes itself at once and the
    // others follow it at once, instead of waiting for their next pass.
    for (let round = 0; round < 3; round++) {
      c.again = false;
      c.outcome = undefined;
      const decision = decideHealth(facts);
      healthy = await act(decision, c);
      outcome = c.outcome ?? { level: "warn", text: decision.reason };
      // A healthy report while holding the lock is the steady primary: writable, ready.
      if (healthy && decision.action === "report" && holdsLock(facts)) c.serving = true;
      if (!c.again) break;
      facts = await gatherFacts(c);
    }
    if (healthy && c.serving && c.state.firstSnapshotPending !== undefined) {
      healthy = await firstSnapshotStored(c, c.state.firstSnapshotPending);
      if (c.outcome) outcome = c.outcome;
    }
    await report(c, healthy, outcome);
    if (facts.consul.up) await showPrimaryService(c, healthy && c.serving === true);
    await publishSelf(c, facts).catch((e) =>
      log.warn("Cannot publish this node's record: {e}", { e: String(e) })
    );
    await putMetrics({
      health_checks_total: 1,
      health_check_failures_total: healthy ? 0 : 1,
      health_check_seconds: (performance.now() - started) / 1000,
      healthy: healthy ? 1 : 0,
      role: roleMetric(c, facts),
      ...(facts.mysql.up && facts.mysql.replica?.lagSeconds != null
        ? { replication_lag_seconds: facts.mysql.replica.lagSeconds }
        : {}),
    });
    return healthy ? EXIT.ok : EXIT.failed;
  } finally {
    await c.db?.close();
  }
}

/** The `role` metric: 2 the writable lock holder, 1 a replica with both threads running, 0 anything else. */
function roleMetric(c: PassContext, f: HealthFacts): number {
  if (!f.mysql.up) return 0;
  if (f.consul.up && f.consul.lock.session !== undefined && f.consul.lock.session === c.state.sessionId) {
    return f.mysql.readOnly ? 0 : 2;
  }
  return f.mysql.replica?.ioRunning === "yes" && f.mysql.replica.sqlRunning ? 1 : 0;
}

/** How long a switchover may hold the failover lock before a health pass takes it for abandoned. */
const SWITCHOVER_STALE_MS = 120_000;

/**
 * Whether `autopilot switchover` (or pre-stop) is moving the role away from this node right now: it holds the
 * failover lock with this node's session. One left behind by a switchover that died is released.
 */
async function switchingOver(c: PassContext, session: string): Promise<boolean> {
  const entry = await c.consul.get(c.config.keys.failoverLock);
  if (entry?.session !== session) return false;
  let value: { switchover?: boolean; at?: number } = {};
  try {
    value = JSON.parse(entry.value);
  } catch {
    // not ours
  }
  if (value.switchover !== true) return false;
  if (Date.now() - (value.at ?? 0) < SWITCHOVER_STALE_MS) return true;
  log.warn("A switchover started at {at} never finished: releasing its failover lock", {
    at: new Date(value.at ?? 0).toISOString(),
  });
  await c.consul.releaseLock(c.config.keys.failoverLock, session, entry.value);
  return false;
}

async function gatherFacts(c: PassContext): Promise<HealthFacts> {
  const { config, consul } = c;
  let consulFacts: ConsulFacts;
  let failover: HealthFacts["failover"];
  try {
    const lock = primaryLockFrom(await consul.get(config.keys.primary));
    const renewalSentAt = performance.now(); // lease: it runs SESSION_TTL/2 from this renewal
    // Every node keeps a session: it holds the node's member record, and the primary lock if it is appointed.
    const session = await ensureSession(c);
    // lease: the lock holder's session was just renewed: extend the in-server lease before anything can hang.
    if (lock.session !== undefined && lock.session === session) await extendLeaseFrom(c, renewalSentAt);
    consulFacts = {
      up: true,
      lock,
      session,
      ...(lock.session !== undefined && lock.session === session && await switchingOver(c, session)
        ? { switchingOver: true }
        : {}),
    };
    if (lock.session === undefined && lock.record !== undefined && lock.record.node !== c.self.node) {
      failover = await failoverHold(c, lock);
    }
  } catch (e) {
    if (!(e instanceof ConsulUnavailableError)) throw e;
    consulFacts = { up: false, error: e.message };
  }
  // lease: read after the extension above, so that a fence by a lease that lapsed is seen in this pass.
  const mysql: MysqlFacts = c.db
    ? await gatherMysqlFacts(c.db, c.sql).catch((e) => ({
      up: false as const,
      error: (e as Error).message,
      gone: false,
    }))
    : {
      up: false,
      error: c.dbError?.message ?? `no answer on ${config.mysql.socket}`,
      gone: c.dbError === undefined || ["ENOENT", "ECONNREFUSED"].includes(c.dbError.code),
    };
  return {
    node: c.self,
    mysql,
    consul: consulFacts,
    ...(c.restored ? { restoredGtid: c.restored.gtid } : {}),
    ...(c.state.repointing ? { repointing: true } : {}),
    maxLagSeconds: config.mysql.maxLagSeconds,
    ...(failover ? { failover } : {}),
  };
}

async function ensureSession(c: PassContext): Promise<string> {
  const { id, created } = await c.consul.ensureSession(c.state.sessionId, {
    name: c.config.session.name,
    ttlSeconds: c.config.session.ttlSeconds,
  });
  if (created) {
    log.info("Created Consul session {id}", { id });
    await saveState(c, { ...c.state, sessionId: id });
  }
  return id;
}

/** Whether automatic failover is held back: paused by key, or inside the quiet period of the last one. */
async function failoverHold(c: PassContext, lock: PrimaryLock): Promise<HealthFacts["failover"]> {
  const paused = (await c.consul.get(c.config.keys.failoverPause)) !== undefined;
  const last = await c.consul.get(c.config.keys.failoverLock);
  const quietReason = quietPeriodReason(
    last?.value,
    lock.record!.node,
    Date.now(),
    c.config.failover.quietPeriodMs,
    (await liveMembers(c.config, c.consul)).map((m) => m.record.node),
  );
  return { paused, ...(quietReason ? { quietReason } : {}) };
}

/** Carries out one decision; returns whether the node is healthy afterwards. */
async function act(d: HealthDecision, c: PassContext): Promise<boolean> {
  switch (d.action) {
    case "report":
      return d.healthy;
    case "fence":
      return await fence(c, d.releaseLock);
    case "bootstrap-primary":
      return await takePrimaryLock(c) && await bootstrapPrimary(c);
    case "resume-primary":
      return await takePrimaryLock(c) && await serveAsPrimary(c);
    case "serve-as-primary":
      return await serveAsPrimary(c);
    case "follow":
      return await follow(c, d.primary, d.fromGtid, d.demote);
    case "restart-replication":
      log.info("{reason}", { reason: d.reason });
      return await startReplication(c, d.source);
    case "failover":
      return await runFailover(c, d.failedPrimary);
  }
}

async function fence(c: PassContext, releaseLock: boolean): Promise<false> {
  if (c.db) {
    await c.db.run(c.sql.setReadOnly(true)).catch((e) =>
      log.error("Cannot turn read-only: {e}", { e: String(e) })
    );
    await dropLease(c); // lease: read-only first, then no lease left
  }
  if (releaseLock && c.state.sessionId) {
    // Leave our record in the key: it tells a restarted node that it was the last primary, and (ready) that
    // it did serve as primary, so a failover counts it as the failed primary.
    const session = c.state.sessionId;
    await (async () => {
      const ready = primaryLockFrom(await c.consul.get(c.config.keys.primary)).record?.ready === true;
      await c.consul.releaseLock(
        c.config.keys.primary,
        session,
        JSON.stringify({ ...c.self, ...(ready ? { ready } : {}) }),
      );
    })().catch((e) => log.error("Cannot release the primary lock: {e}", { e: String(e) }));
  }
  return false;
}

/** Tries to take the primary lock with this node's session; false if another node has it. */
async function takePrimaryLock(c: PassContext): Promise<boolean> {
  const session = await ensureSession(c);
  const taken = await c.consul.tryAcquireLock(c.config.keys.primary, session, JSON.stringify(c.self));
  if (!taken) log.info("Another node took the primary lock first; this node will follow it");
  else log.info("Took the primary lock as {node} ({address}:{port})", { ...c.self });
  return taken;
}

async function bootstrapPrimary(c: PassContext): Promise<boolean> {
  const db = c.db!;
  const rootPassword = await rootPasswordFor(c.config);
  log.info("Bootstrapping the first primary: accounts, database, root password");
  await db.run(bootstrapStatements(c.config, c.flavour, rootPassword));
  if (!(await serveAsPrimary(c))) return false;
  return await takeFirstSnapshot(c);
}

/**
 * The bootstrapped primary's first snapshot, which new replicas are restored from. Until one is stored the
 * primary writes, but reports unhealthy and is not advertised (a store that cannot be written would otherwise
 * go unnoticed until the first replica). The bootstrap takes it at once; if that fails, the snapshot task
 * (every 5 minutes, under the backup lock, due at once since none is named) tries again, and each pass only
 * checks whether one is published.
 */
async function takeFirstSnapshot(c: PassContext): Promise<boolean> {
  try {
    const { takeAndPublishSnapshot } = await import("../src/snapshots.ts");
    const manifest = await takeAndPublishSnapshot(c.config, c.consul, c.flavour, c.db!);
    log.info("First snapshot {name} stored and published for replicas", { name: manifest.name });
    return true;
  } catch (e) {
    const why = (e as Error).message;
    await saveState(c, { ...c.state, firstSnapshotPending: why });
    c.outcome = firstSnapshotMissing(why);
    return false;
  }
}

/** The outcome while no snapshot is stored: the same line every pass, so it is logged once (see report()). */
function firstSnapshotMissing(why: string): NonNullable<PassContext["outcome"]> {
  return {
    level: "error",
    text: `First snapshot failed: ${why}; this primary is not advertised until a snapshot is stored (the ` +
      "snapshot task tries again every 5 minutes; or run 'autopilot backup now')",
  };
}

/** Whether a snapshot has been published since a failed first one; the flag goes once one has. */
async function firstSnapshotStored(c: PassContext, why: string): Promise<boolean> {
  const { publishedSnapshot } = await import("../src/snapshots.ts");
  if ((await publishedSnapshot(c.config, c.consul)) === undefined) {
    c.outcome = firstSnapshotMissing(why);
    return false;
  }
  log.info("A snapshot is stored now: this primary is advertised");
  await saveState(c, { ...c.state, firstSnapshotPending: undefined });
  return true;
}

/** The root password to set at bootstrap: the given one, or a generated one kept in a 0600 file. */
async function rootPasswordFor(config: Config): Promise<string | undefined> {
  if (config.mysql.rootPassword) return config.mysql.rootPassword.reveal();
  if (!config.mysql.randomRootPassword) return undefined;
  const bytes = crypto.getRandomValues(new Uint8Array(24));
  const password = btoa(String.fromCharCode(...bytes)).replace(/[+/=]/g, "");
  const path = `${config.node.stateDir}/root-password`;
  await writeFileAtomic(path, password + "\n", 0o600);
  log.info("Generated a random root password: it is in {path} (mode 0600), never in the log", { path });
  return password;
}

/**
 * Makes the lock holder the primary: apply everything the receiver fetched, stop replicating, turn writable,
 * then mark the lock record ready so that the others follow.
 */
async function serveAsPrimary(c: PassContext): Promise<boolean> {
  const db = c.db!;
  const [row] = await db.query(c.sql.replicaStatus);
  if (row) {
    const received = c.sql.replicaStatusFromRow(row).retrievedGtids;
    if (received !== "") {
      const [waited] = await db.query(c.sql.waitForGtids(received, 60));
      if (!c.sql.waitSucceeded(waited?.waited)) {
        log.error("Cannot apply the received transactions {received} within 60 s: not turning writable", {
          received,
        });
        return false;
      }
    }
    await db.run([c.sql.stopReplica, c.sql.resetReplicaAll]);
  }
  if (c.restored) {
    // Restored from a snapshot and never replicated: new transactions continue from the snapshot's position,
    // so that nodes restored from the same snapshot can follow this one.
    await db.run(c.sql.startReplicationAfter(c.restored.gtid, c.restored.binlogState));
    await forgetRestore(c);
  }
  if (c.config.mysql.semiSync) await db.run(c.sql.setSemiSyncSource(true));
  if (!(await leaseForWriting(c))) return false; // lease: extended first, then writable
  await db.run(c.sql.setReadOnly(false));
  const marked = c.state.sessionId !== undefined &&
    await c.consul.tryAcquireLock(
      c.config.keys.primary,
      c.state.sessionId,
      JSON.stringify({ ...c.self, ready: true }),
    );
  if (!marked) {
    // The lock went elsewhere meanwhile: never stay writable without it.
    await db.run(c.sql.setReadOnly(true));
    await dropLease(c); // lease: not primary, so no lease
    log.error("Lost the primary lock while turning writable: read-only again");
    return false;
  }
  log.info("Primary: writable");
  c.serving = true;
  return true;
}

async function follow(
  c: PassContext,
  primary: PrimaryRecord,
  fromGtid: string | undefined,
  demote: boolean,
): Promise<boolean> {
  const db = c.db!;
  const source = `${primary.address}:${primary.port}`;
  // Unless it was just restored from a snapshot, a node proves it has nothing the new source lacks: an old
  // primary coming back, but also a replica being re-pointed (it may have got ahead of the new primary).
  if (fromGtid === undefined) {
    const { extra, primaryExecuted } = await transactionsPrimaryLacks(c, primary);
    if (extra !== "") {
      c.outcome = {
        level: "error",
        text:
          `Errant node: this node has transactions ${extra} that the primary ${primary.node} (${source}) ` +
          "lacks; not rejoining" +
          (c.config.failover.rebuildErrant
            ? ""
            : " (REBUILD_ERRANT_NODE=true rebuilds it from the last snapshot)"),
      };
      if (c.config.failover.rebuildErrant) await rebuildErrant(c, primaryExecuted);
      return false;
    }
  }
  await dropLease(c, true); // lease: a replica never runs with a live lease, and has the fence too
  await saveState(c, { ...c.state, repointing: source }); // until START REPLICA, see NodeState
  await db.query(c.sql.stopReplica).catch(() => {});
  if (fromGtid !== undefined) {
    await db.run(c.sql.startReplicationAfter(fromGtid, c.restored?.binlogState));
  }
  await db.run([
    c.sql.changeSource({
      host: primary.address,
      port: primary.port,
      user: c.config.mysql.replUser,
      password: c.config.mysql.replPassword.reveal(),
      connectRetry: 1,
      heartbeatPeriod: 1,
      demote,
    }),
  ]);
  await forgetRestore(c); // the position is in the server now (gtid_slave_pos)
  log.info("Replicating from {node} ({source}){from}", {
    node: primary.node,
    source,
    from: fromGtid
      ? ` after ${fromGtid}`
      : demote
      ? " (rejoined: nothing this node has is missing there)"
      : "",
  });
  return await startReplication(c, source);
}

/**
 * lease: extends the in-server lease (src/mysql/lease.ts) to end SESSION_TTL/2 after the renewal sent at
 * `sentAt`. A failure is logged: the server then fences itself when the lease lapses, and a pass that finds
 * it read-only with the lock makes it writable again.
 */
async function extendLeaseFrom(c: PassContext, sentAt: number): Promise<void> {
  if (c.db === undefined) return;
  const ms = leaseLeftMs(leaseMsFor(c.config.session.ttlSeconds), sentAt, performance.now());
  await extendLease(c.db, c.flavour, ms).catch((e) => {
    // A server that does not answer is reported by the facts read next.
    if (e instanceof MysqlUnavailableError) {
      log.debug("Cannot extend the in-server lease: {e}", { e: e.message });
    } else log.warn("Cannot extend the in-server lease: {e}", { e: (e as Error).message });
  });
}

/**
 * lease: before a primary turns writable: the fence event installed, the session renewed, and the lease
 * extended from that renewal. False (logged) when the session is gone or the lease could not be written.
 */
async function leaseForWriting(c: PassContext): Promise<boolean> {
  const db = c.db!;
  await installLease(db, c.flavour);
  const sentAt = performance.now();
  if (c.state.sessionId === undefined || !(await c.consul.renewSession(c.state.sessionId))) {
    log.error("This node's Consul session is gone: not turning writable");
    return false;
  }
  const ms = leaseLeftMs(leaseMsFor(c.config.session.ttlSeconds), sentAt, performance.now());
  if (!(await extendLease(db, c.flavour, ms, { turningWritable: true }))) {
    log.error("The session's renewal took longer than the lease (SESSION_TTL/2): not turning writable");
    return false;
  }
  return true;
}

/**
 * lease: removes the in-server lease of a node that is not (or no longer) primary (`install`: installs the
 * fence event first, so that a replica turned writable by hand is fenced too); a failure is logged.
 */
async function dropLease(c: PassContext, install = false): Promise<void> {
  const db = c.db;
  if (db === undefined) return;
  await (async () => {
    if (install) await installLease(db, c.flavour);
    await clearLease(db, c.flavour);
  })().catch((e) =>
    log.warn("Cannot {what}: {e}", {
      what: install ? "install the in-server fence and remove its lease" : "remove the in-server lease",
      e: (e as Error).message,
    })
  );
}

/** What this node has that the primary lacks (empty when it can rejoin), asked over TCP as the repl user. */
async function transactionsPrimaryLacks(
  c: PassContext,
  primary: PrimaryRecord,
): Promise<{ extra: string; primaryExecuted: string }> {
  await using peer = await connectPeer(c.config, primary);
  const theirs = c.sql.gtidState((await peer.query(c.sql.gtidStateQuery))[0]).executed;
  const mine = c.sql.gtidState((await c.db!.query(c.sql.gtidStateQuery))[0]).executed;
  return { extra: subtractGtids(c.flavour, mine, theirs).toString(), primaryExecuted: theirs };
}

/**
 * REBUILD_ERRANT_NODE: move the datadir aside and restore the latest snapshot (src/rebuild.ts). mysqld is
 * stopped on return; ContainerPilot restarts it on the restored datadir, and the next pass replicates from the
 * snapshot's position. A refusal leaves everything as it was and the node errant.
 */
async function rebuildErrant(c: PassContext, primaryExecuted: string): Promise<void> {
  const { publishedSnapshot } = await import("../src/snapshots.ts");
  const { moveErrantDatadirAside, RebuildRefusedError } = await import("../src/rebuild.ts");
  try {
    const manifest = await publishedSnapshot(c.config, c.consul);
    await moveErrantDatadirAside(c.config, c.flavour, c.db!, manifest, primaryExecuted, async (aside) => {
      await saveState(c, { ...c.state, rebuilding: { aside } });
    });
    c.db = undefined; // closed by the rebuild, with mysqld
    await finishRebuild(c);
  } catch (e) {
    if (e instanceof RebuildRefusedError) {
      log.error("REBUILD_ERRANT_NODE is set but the node was not rebuilt: {why}; nothing was touched", {
        why: e.message,
      });
      return;
    }
    log.error("Rebuilding the errant node failed: {e}", { e: (e as Error).message });
  }
}

/**
 * The restore half of a rebuild: from rebuildErrant(), or from the next pass when a pass was cut short (by
 * ContainerPilot's health timeout) after the datadir was moved aside. Never healthy: the restarted mysqld
 * replicates from the snapshot's position in a later pass.
 */
async function finishRebuild(c: PassContext): Promise<number> {
  const aside = c.state.rebuilding?.aside;
  try {
    const done = await readRestoredMark(c.config.mysql.datadir);
    if (done !== undefined) {
      // the restore finished but the pass that ran it was cut short before it could say so
      await saveState(c, { ...c.state, rebuilding: undefined });
      log.warn("Rebuilt from snapshot {name} (GTID {gtid}); the errant datadir is kept in {aside}", {
        name: done.snapshot,
        gtid: done.gtid,
        aside,
      });
      return EXIT.failed;
    }
    const { publishedSnapshot } = await import("../src/snapshots.ts");
    const manifest = await publishedSnapshot(c.config, c.consul);
    if (manifest === undefined) {
      log.error(
        "Rebuilding: no snapshot is named in LAST_BACKUP_KEY any more; the old datadir is in {aside}",
        {
          aside,
        },
      );
      return EXIT.failed;
    }
    const { restoreRebuiltDatadir } = await import("../src/rebuild.ts");
    const gtid = await restoreRebuiltDatadir(c.config, c.flavour, manifest, c.self.address);
    await saveState(c, { ...c.state, rebuilding: undefined });
    log.warn(
      "Rebuilt from snapshot {name} (GTID {gtid}); the errant datadir is kept in {aside}. mysqld restarts on the " +
        "new datadir and replicates from there",
      { name: manifest.name, gtid, aside },
    );
  } catch (e) {
    log.error("Rebuilding the errant node failed ({e}); the next health pass tries again", {
      e: (e as Error).message,
    });
  }
  return EXIT.failed;
}

/**
 * Replication (or, on a primary, its binlog) now starts from the restored position: the datadir's restore mark
 * goes, so that a later re-pointing never goes back to the snapshot's position.
 */
async function forgetRestore(c: PassContext): Promise<void> {
  if (c.restored === undefined) return;
  await clearRestoredMark(c.config.mysql.datadir);
  c.restored = undefined;
}

async function startReplication(c: PassContext, source: string): Promise<boolean> {
  const db = c.db!;
  await db.query(c.sql.startReplica);
  if (c.state.repointing !== undefined) await saveState(c, { ...c.state, repointing: undefined });
  // Give the receiver a moment to connect, so a good first pass reports healthy rather than "connecting".
  for (let i = 0; i < 20; i++) {
    const [row] = await db.query(c.sql.replicaStatus);
    const status = row ? c.sql.replicaStatusFromRow(row) : undefined;
    if (status?.ioRunning === "yes" && status.sqlRunning) return true;
    if (status?.lastIoError || status?.lastSqlError) break;
    await delay(100);
  }
  log.warn("Replication from {source} started but is not running yet", { source });
  return false;
}

/**
 * The primary is gone. The node that wins the failover lock reads every live member's GTIDs (over TCP, or the
 * record it published since the primary was lost), chooses the node that has every transaction any of them
 * has (see planFailover), and gives the primary lock to that node's own session. The appointed node finishes
 * its promotion at once if it is this one, otherwise in its own pass, which waits for the appointment; the
 * others follow it once it is ready. Every step can be repeated: if this node dies half way, its failover
 * lock goes with its session and another node starts over.
 */
async function runFailover(c: PassContext, failedPrimary: string): Promise<boolean> {
  const { config, consul } = c;
  const session = c.state.sessionId!;
  const start = Date.now();
  const lockValue = (promoted?: string) =>
    JSON.stringify({ node: c.self.node, at: start, failedPrimary, promoted });
  const hold = await takeFailoverLock(consul, config.keys.failoverLock, session, lockValue);
  if (hold === undefined) {
    log.info("Another node is running the failover: waiting for it to appoint a primary");
    await waitForAppointment(c);
    return false;
  }
  let promoted: string | undefined;
  try {
    // This pass decided on what it read before it held the failover lock: another node may have finished a
    // failover since. Then there is nothing to do (and the record of that failover stays).
    const primaryLock = primaryLockFrom(await consul.get(config.keys.primary));
    if (primaryLock.session !== undefined) {
      log.info("{node} was appointed primary meanwhile: no failover needed", {
        node: primaryLock.record?.node ?? "another node",
      });
      await hold.release(); // at once: others need not wait for this pass's wait below
      await waitForAppointment(c);
      return false;
    }
    // A last holder that never finished its promotion (not ready) never wrote: its transactions count like
    // any member's, and it may be chosen again.
    const lastHolder = primaryLock.record;
    const excluded = lastHolder?.node === failedPrimary && lastHolder.ready !== true
      ? undefined
      : failedPrimary;
    // Plan from what each live member's server says now (over TCP, as the replication user); a member that
    // does not answer counts with the record it published, which must be newer than the primary's loss.
    let plan = planFailover([], excluded, start);
    let members: LiveMember[] = [];
    let departed: MemberRecord[] = [];
    for (const deadline = start + 8000; Date.now() < deadline; await delay(250)) {
      // One read: a member whose session ends meanwhile moves from one list to the other, never out of both.
      ({ live: members, departed } = await memberRecords(config, consul));
      const probed = await Promise.all(members.map(async (m) => ({
        ...m,
        record: m.record.node === excluded
          ? m.record
          : (await probeMember(config, c.sql, m.record)) ?? m.record,
      })));
      plan = planFailover(probed.map((m) => m.record), excluded, start, departed);
      if (plan.kind !== "wait") break;
    }
    if (plan.kind !== "promote") {
      log.error("Cannot fail over from {failedPrimary}: {reason}", { failedPrimary, reason: plan.reason });
      return false;
    }
    const { candidate } = plan;
    log.warn("Failing over from {failedPrimary} to {candidate}: {reason}", {
      failedPrimary,
      candidate: candidate.node,
      reason: plan.reason,
    });
    if (lastHolder !== undefined && await answersWritable(c, lastHolder)) {
      log.error(
        "{failedPrimary} lost its lock but still answers writable: not appointing anyone until it fences",
        {
          failedPrimary,
        },
      );
      return false;
    }
    const candidateSession = members.find((m) => m.record.node === candidate.node)!.session;
    const record = JSON.stringify({ node: candidate.node, address: candidate.address, port: candidate.port });
    // The failed primary's lock-delay may refuse the lock for a moment.
    for (const deadline = Date.now() + 5000; Date.now() < deadline; await delay(100)) {
      try {
        if (await consul.tryAcquireLock(config.keys.primary, candidateSession, record)) {
          promoted = candidate.node;
          break;
        }
      } catch (e) {
        if (e instanceof SessionGoneError) break; // the candidate died meanwhile: the next pass plans again
        throw e;
      }
      if (primaryLockFrom(await consul.get(config.keys.primary)).session !== undefined) break;
    }
    if (promoted === undefined) {
      log.error("Could not appoint {candidate}: the primary lock was taken or the candidate is gone", {
        candidate: candidate.node,
      });
      return false;
    }
    log.warn("Appointed {candidate} primary", { candidate: candidate.node });
    await putMetrics({ failovers_total: 1, failover_seconds: (Date.now() - start) / 1000 });
  } finally {
    await hold.release(promoted);
  }
  if (promoted === c.self.node) return c.db !== undefined && await serveAsPrimary(c);
  await waitForAppointment(c);
  return false;
}

/** Whether a node's server answers over TCP with read_only off; false when it does not answer within 1 s. */
async function answersWritable(c: PassContext, node: PrimaryRecord): Promise<boolean> {
  try {
    await using peer = await connectPeer(c.config, node, 1000);
    const [ro] = await peer.query(c.sql.readOnlyQuery, { timeoutMs: 1000 });
    return Number(ro?.read_only) === 0;
  } catch {
    return false;
  }
}

/**
 * Waits (at most 10 s) until a primary is appointed: this node, or another one that is ready to be followed.
 * Then the pass decides again, so this node promotes itself or follows without waiting for its next pass.
 */
async function waitForAppointment(c: PassContext): Promise<void> {
  for (const deadline = Date.now() + 10_000; Date.now() < deadline; await delay(100)) {
    const lock = primaryLockFrom(await c.consul.get(c.config.keys.primary));
    if (lock.session !== undefined && (lock.session === c.state.sessionId || lock.record?.ready)) {
      c.again = true;
      return;
    }
  }
}

/**
 * Logs how the pass ended: an unhealthy outcome at WARN once, when it first appears or changes (a lasting
 * state is not repeated every pass; numbers such as a lag in seconds do not count as a change), a return to
 * health at INFO once, and a steady healthy pass at DEBUG only.
 */
async function report(
  c: PassContext,
  healthy: boolean,
  outcome: { level: "warn" | "error"; text: string },
): Promise<void> {
  const reason = outcome.text;
  const shape = healthy ? undefined : reason.replace(/\d+(\.\d+)?/g, "#");
  if (shape !== undefined && shape !== c.state.reported) log[outcome.level]("{reason}", { reason, healthy });
  else if (shape === undefined && c.state.reported !== undefined) {
    log.info("Healthy again: {reason}", { reason });
  } else log.debug("{reason}", { reason, healthy });
  if (shape !== c.state.reported) {
    await saveState(c, { ...c.state, reported: shape }).catch((e) =>
      log.warn("Cannot save this node's state: {e}", { e: String(e) })
    );
  }
}

/**
 * The `SERVICE_NAME-primary` service (src/services.ts): passed by every pass that finds this node the writable
 * primary, withdrawn by the first that does not. The primary's pass also removes dead nodes' entries.
 */
async function showPrimaryService(c: PassContext, serving: boolean): Promise<void> {
  const service = primaryServiceName(c.config);
  try {
    if (serving) {
      const at = `${c.self.address}:${c.self.port}`;
      const moved = c.state.advertised !== at; // first pass as primary, or a new address: register anew
      // Saved first: a pass cut short right after registering still withdraws it later.
      if (moved) await saveState(c, { ...c.state, advertised: at });
      await advertisePrimary(c.config, c.consul, c.self, c.state.sessionId!, { register: moved });
    } else if (c.state.advertised) {
      await withdrawPrimary(c.config, c.consul, c.self.node);
      await saveState(c, { ...c.state, advertised: undefined });
    }
  } catch (e) {
    log.warn("Cannot update the {service} service in Consul: {e}", { service, e: (e as Error).message });
  }
  if (serving) {
    await sweepDeadEntries(c).catch((e) =>
      log.warn("Cannot remove dead nodes' entries from Consul: {e}", { e: (e as Error).message })
    );
  }
}

/** Removes the catalog entries of nodes that are gone (see planSweep); reads members only when one is critical. */
async function sweepDeadEntries(c: PassContext): Promise<void> {
  const critical = await c.consul.criticalServiceChecks();
  const seen = c.state.deadEntries ?? {};
  if (critical.length === 0 && Object.keys(seen).length === 0) return;
  const { live, departed } = await memberRecords(c.config, c.consul);
  const plan = planSweep(c.config, critical, { live: live.map((m) => m.record), departed }, seen, Date.now());
  for (const check of plan.remove) {
    await c.consul.deregisterService(check.serviceId, check.node);
    log.info("Removed {service} from Consul: its node has been gone for over {minutes} minutes", {
      service: check.serviceId,
      minutes: SWEEP_GRACE_MS / 60_000,
    });
  }
  if (JSON.stringify(plan.seen) !== JSON.stringify(seen)) {
    await saveState(c, { ...c.state, deadEntries: Object.keys(plan.seen).length ? plan.seen : undefined });
  }
}

/** Publishes this node's member record (what the failover planner reads). */
async function publishSelf(c: PassContext, facts: HealthFacts): Promise<void> {
  if (!facts.consul.up || !facts.mysql.up || c.state.sessionId === undefined) return;
  const mysql = facts.mysql;
  const mine = holdsLock(facts);
  const record: MemberRecord = {
    ...c.self,
    hostname: Deno.hostname(),
    priority: c.config.node.priority,
    flavour: c.flavour,
    role: mine ? "primary" : mysql.replica ? "replica" : "none",
    executed: mysql.executed,
    retrieved: mysql.replica?.retrievedGtids ?? "",
    updatedAt: Date.now(),
  };
  await publishMember(c.config, c.consul, c.state.sessionId, record);
}

async function saveState(c: PassContext, next: NodeState): Promise<void> {
  const clean = JSON.parse(JSON.stringify(next)) as NodeState; // drops the undefined fields
  await writeState(c.config.node.stateDir, clean);
  c.state = clean;
}

async function primaryCheck(
  config: Config,
  flavour: Flavour,
  consul: ConsulStore,
  state: NodeState,
): Promise<number> {
  try {
    const lock = primaryLockFrom(await consul.get(config.keys.primary));
    if (lock.session === undefined || lock.session !== state.sessionId || !lock.record?.ready) {
      return EXIT.failed;
    }
    await using db = await connectLocal(config, flavour);
    const [ro] = await db.query(sqlFor(flavour).readOnlyQuery);
    return Number(ro.read_only) === 0 ? EXIT.ok : EXIT.failed;
  } catch (e) {
    if (e instanceof ConsulUnavailableError || e instanceof MysqlUnavailableError) return EXIT.failed;
    throw e;
  }
}
