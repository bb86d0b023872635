/**
 * The snapshot task: what `autopilot snapshot` (ContainerPilot's periodic task, every few minutes on every
 * node) runs, and `autopilot backup now` and pre-stop's BACKUP_ON_STOP snapshot with `force`.
 *
 * 1. Find out what this node is: the writable primary that holds the primary lock, a healthy replica of it, or
 *    neither (which never backs up). Consul is asked first: when it alone settles that nothing is to be done
 *    here (nobody holds the lock; another node does and BACKUP_FROM=primary) the local server is not asked at
 *    all, and a local server that does not answer (not started yet, or down: its health check says so) means
 *    this node is neither. Both end the run quietly (DEBUG, exit 0), as ContainerPilot runs the task at once
 *    when a container starts, before mysqld is up.
 * 2. Ask `decideSnapshot()` whether a snapshot is due here: none yet, the last one older than BACKUP_TTL, or a
 *    gap in the binlog archive since; and whether this kind of node takes them (BACKUP_FROM).
 * 3. Take the backup lock with a session created for this run alone (never a cached id that may have expired),
 *    renewed while the backup runs; if another node holds it, that node is backing up and this one stops.
 * 4. Holding the lock, check again that no other node published a snapshot meanwhile, then stream the backup
 *    to the store, read it back to check its SHA-256, and only then name it in Consul.
 * 5. Apply retention: keep the newest BACKUP_RETAIN_COUNT (and those younger than BACKUP_RETAIN_AGE), never the
 *    one Consul names, and the archived binlogs the snapshots kept need. Deletion errors are reported, not
 *    fatal.
 *
 * With BACKUP_VERIFY, a healthy replica with no snapshot to take verifies the last one instead, once per
 * snapshot, under the same lock: it restores it into MYSQL_TMPDIR, opens it with a throwaway server, runs
 * CHECK TABLE on every table, replays the archived binlogs after it to the archive's end, and records the
 * outcome in LAST_VERIFIED_KEY (`autopilot status` shows it).
 *
 * `autopilot backup now` runs the same steps with the schedule and BACKUP_FROM skipped.
 *
 * @module
 */
import { getLogger } from "@logtape/logtape";
import type { Config } from "./config.ts";
import { ConsulRequestError, ConsulStore, ConsulUnavailableError } from "./consul.ts";
import type { PrimaryLock } from "./ha/decide.ts";
import { type ClusterKv, ConsulClusterKv, otherLiveReplicas } from "./cluster_kv.ts";
import { flavourOf } from "./local.ts";
import { MysqlUnavailableError } from "./mysql/client.ts";
import { type MysqlServer, openLocalServer } from "./mysql/server.ts";
import { replicaHealth } from "./replica_health.ts";
import { readState } from "./state.ts";
import {
  decideSnapshot,
  decideVerify,
  decideWithoutServer,
  duration,
  type SnapshotRole,
} from "./backup/schedule.ts";
import { pruneSnapshots, retentionPolicy } from "./backup/retention.ts";
import { publishedSnapshot, takeAndPublishSnapshot, type VerificationRecord } from "./snapshots.ts";
import { ArchiveReplayError, verifySnapshot } from "./backup/verify.ts";
import { openStore } from "./storage/open.ts";
import { cannotRestore, openKeyring } from "./backup/encryption.ts";
import { EXIT } from "./command.ts";
import { putMetrics } from "./metrics.ts";
import { clusterPrefix, type Manifest } from "./backup/manifest.ts";
import { CorruptSnapshotError } from "./backup/errors.ts";
import { errorMessage } from "./text.ts";

const log = getLogger(["autopilot", "snapshot"]);

/**
 * Takes a snapshot now if this node should (or always, with `force`), under the backup lock, stores it,
 * publishes it in Consul and applies retention. Shared by the periodic task and `autopilot backup now`.
 *
 * @returns The exit code.
 */
export async function runSnapshot(config: Config, opts: { force: boolean }): Promise<number> {
  const state = await readState(config.node.stateDir);
  const flavour = flavourOf(config, state);
  const consul = new ConsulStore(config.consul);
  const kv = new ConsulClusterKv(config, consul);
  try {
    const lock = await kv.primary();
    const last = await publishedSnapshot(kv).catch((e) => {
      if (!(e instanceof CorruptSnapshotError)) throw e; // Consul unreachable or refusing: nothing is known
      log.warn("LAST_BACKUP_KEY holds no valid manifest ({e}): counting as no snapshot", { e: e.message });
      return undefined;
    });
    if (last) await putLastBackupMetrics(last);
    if (!opts.force) {
      const early = decideWithoutServer({
        backupFrom: config.backup.from,
        verify: config.backup.verify,
        lock: lock.session === undefined
          ? "nobody"
          : lock.session === state.sessionId
          ? "this node"
          : "another node",
      });
      if (early !== undefined) {
        log.debug("No snapshot: {reason}", { reason: early.reason });
        return EXIT.ok;
      }
    }
    // `backup now` reports a server that does not answer as the error it is (below).
    await using server = await openLocalServer(config, flavour).catch((e) => {
      if (opts.force || !(e instanceof MysqlUnavailableError)) throw e;
      log.debug("No snapshot: this node takes no snapshot: its MySQL server does not answer ({e})", {
        e: e.message,
      });
      return undefined;
    });
    if (server === undefined) return EXIT.ok;
    const role = await roleOf(config, lock, server, state.sessionId);
    const decision = decideSnapshot({
      force: opts.force,
      role,
      backupFrom: config.backup.from,
      healthyPeers: role.kind === "primary" && config.backup.from === "replica"
        ? otherLiveReplicas(await kv.members(), config.node.name).length
        : 0,
      ...(last ? { last: { name: last.name, createdAt: last.createdAt } } : {}),
      ...optional("lastBinlog", await kv.lastBinlog()),
      ...optional("currentBinlog", await primaryBinlog(server, role)),
      ...optional("archiveGapAt", (await kv.archiveRecord())?.gap?.at),
      ttlSeconds: config.backup.ttlSeconds,
      now: new Date(),
    });
    if (!decision.take) {
      if (opts.force) {
        log.error("Cannot take a snapshot: {reason}", { reason: decision.reason });
        return EXIT.failed;
      }
      log.debug("No snapshot: {reason}", { reason: decision.reason });
      const keyProblem = config.backup.verify && last !== undefined
        ? await openKeyring(config.backup.encryption).then(
          (keyring) => cannotRestore(last.encryption, keyring, `snapshot ${last.name}`),
          (e) => errorMessage(e),
        )
        : undefined;
      const verify = decideVerify({
        enabled: config.backup.verify,
        role,
        ...optional("last", last?.name),
        ...optional(
          "lastVerified",
          config.backup.verify ? (await kv.lastVerification())?.name : "",
        ),
        ...optional("keyProblem", keyProblem),
      });
      if (!verify.take || last === undefined) {
        if (verify.misconfigured) log.warn("No verification: {reason}", { reason: verify.reason });
        else log.debug("No verification: {reason}", { reason: verify.reason });
        return EXIT.ok;
      }
      log.info("Verifying: {reason}", { reason: verify.reason });
      return await withBackupLock(
        config,
        consul,
        kv,
        "verify",
        false,
        (signal) => verifyLast(config, kv, last, signal),
      );
    }
    log.info("Snapshot due: {reason}", { reason: decision.reason });
    return await withBackupLock(config, consul, kv, "snapshot", opts.force, async (signal) => {
      if (!opts.force) {
        const now = await publishedSnapshot(kv).catch(() => undefined);
        if (now !== undefined && now.name !== last?.name) {
          log.info("{node} published snapshot {name} meanwhile: none taken here", {
            node: now.nodeName,
            name: now.name,
          });
          return EXIT.ok;
        }
      }
      // On a replica, record the primary's binlog file (the one its receiver reads). On the primary, the
      // snapshot's own binlog position is it, read by the tool at its consistent point, after the binlog flush
      // xtrabackup makes: reading it before the backup would make every snapshot look rotated past.
      const sourceBinlog = role.kind === "replica" ? await primaryBinlog(server, role) : undefined;
      const started = performance.now();
      const manifest = await takeAndPublishSnapshot(config, kv, flavour, server, {
        signal,
        ...optional("sourceBinlog", sourceBinlog),
      });
      await putMetrics({ backups_total: 1, backup_seconds: (performance.now() - started) / 1000 });
      await putLastBackupMetrics(manifest);
      log.info("Snapshot {name} published: {mb} MB (compressed) in {s} s, GTID {gtid}", {
        name: manifest.name,
        mb: (manifest.size / 1e6).toFixed(1),
        s: ((performance.now() - started) / 1000).toFixed(1),
        gtid: manifest.gtid,
      });
      await prune(config, kv, manifest.name);
      return EXIT.ok;
    });
  } catch (e) {
    if (
      e instanceof MysqlUnavailableError || e instanceof ConsulUnavailableError ||
      e instanceof ConsulRequestError
    ) {
      log.error("No snapshot: {e}", { e: e.message });
      return EXIT.failed;
    }
    if (
      e instanceof Error && ["BackupError", "CorruptSnapshotError", "StoreUnavailableError"].includes(e.name)
    ) {
      await putMetrics({ backup_failures_total: 1 });
      log.error("Snapshot failed, nothing published: {e}", { e: e.message });
      return EXIT.failed;
    }
    throw e;
  } finally {
    consul.close();
  }
}

function putLastBackupMetrics(m: Manifest): Promise<void> {
  return putMetrics({
    last_backup_timestamp_seconds: Date.parse(m.createdAt) / 1000,
    last_backup_size_bytes: m.size,
  });
}

/** What this node is, for snapshots: the writable lock holder, a healthy replica of it, or neither. */
export async function roleOf(
  config: Config,
  lock: PrimaryLock,
  server: MysqlServer,
  sessionId: string | undefined,
): Promise<SnapshotRole> {
  const writable = !(await server.readOnly());
  if (lock.session !== undefined && lock.session === sessionId) {
    return writable && lock.record?.ready
      ? { kind: "primary" }
      : { kind: "none", why: "it holds the primary lock but is not writable yet" };
  }
  const primary = lock.session !== undefined ? lock.record : undefined;
  if (primary === undefined) return { kind: "none", why: "no node holds the primary lock" };
  const r = await server.replicaStatus();
  if (r === undefined) return { kind: "none", why: "it is not replicating" };
  if (r.sourceHost !== primary.address || r.sourcePort !== primary.port) {
    return {
      kind: "none",
      why: `it replicates from ${r.sourceHost}:${r.sourcePort}, not from ${primary.node}`,
    };
  }
  const health = replicaHealth(r, config.mysql.maxLagSeconds);
  return health.healthy ? { kind: "replica" } : { kind: "none", why: health.reason };
}

/** The primary's current binlog file: its own on the primary, the one the receiver reads on a replica. */
async function primaryBinlog(server: MysqlServer, role: SnapshotRole): Promise<string | undefined> {
  if (role.kind === "primary") return await server.binlogFile();
  if (role.kind === "replica") return (await server.replicaStatus())?.sourceLogFile;
  return undefined;
}

/**
 * Runs `fn` holding BACKUP_LOCK_KEY with a session made for this run and renewed every TTL/3 while `fn` runs.
 * If the session is lost, `fn`'s signal aborts (another node may then take the lock) and nothing is published.
 *
 * @returns `fn`'s exit code; when another node holds the lock, 0 (1 with `force`: the caller asked for one).
 */
async function withBackupLock(
  config: Config,
  consul: ConsulStore,
  kv: ClusterKv,
  job: "snapshot" | "verify",
  force: boolean,
  fn: (signal: AbortSignal) => Promise<number>,
): Promise<number> {
  const ttl = config.session.ttlSeconds;
  const session = await consul.createSession({ name: `${config.session.name}-backup`, ttlSeconds: ttl });
  const abort = new AbortController();
  const renew = setInterval(() => {
    consul.renewSession(session).then((alive) => {
      if (!alive) abort.abort(new Error("the backup lock's Consul session expired"));
    }, (e) => log.warn("Cannot renew the backup lock's session: {e}", { e: String(e) }));
  }, Math.max(1000, (ttl * 1000) / 3));
  let held = false;
  try {
    held = await kv.acquireBackupLock(session, {
      node: config.node.name,
      job,
      startedAt: new Date().toISOString(),
    });
    if (!held) {
      const holder = (await kv.backupLockHolder()) ?? "";
      if (force) {
        log.error(
          "Another node is taking a snapshot (BACKUP_LOCK_KEY: {holder}): try again when it is done",
          {
            holder,
          },
        );
        return EXIT.failed;
      }
      log.info("Another node is taking or verifying a snapshot (BACKUP_LOCK_KEY: {holder}): no {job} here", {
        holder,
        job,
      });
      return EXIT.ok;
    }
    return await fn(abort.signal);
  } finally {
    clearInterval(renew);
    // Release first: a released lock is free at once, while destroying the session holding it would keep it
    // from everyone for the session's lock-delay.
    if (held) await kv.releaseBackupLock(session).catch(() => {});
    await consul.destroySession(session).catch((e) =>
      log.warn("Cannot destroy the backup lock's session (it expires in {s}): {e}", {
        s: duration(ttl),
        e: String(e),
      })
    );
  }
}

/**
 * Verifies `manifest` (BACKUP_VERIFY) holding the backup lock, and records the outcome in LAST_VERIFIED_KEY, with
 * how far the archived binlogs after it replayed. A snapshot found bad, or whose archived binlogs do not replay
 * to the archive's end (one corrupt, missing or lost, a gap), is recorded as failed, so no replica verifies it
 * again and `autopilot status` reports it;
 * a verification that could not run (no room in MYSQL_TMPDIR, the store unreachable) records nothing and is
 * tried again on the next run.
 *
 * @returns 0 when the snapshot is good (or another node verified it meanwhile), 1 otherwise.
 */
async function verifyLast(
  config: Config,
  kv: ClusterKv,
  manifest: Manifest,
  signal: AbortSignal,
): Promise<number> {
  const meanwhile = await kv.lastVerification();
  if (meanwhile?.name === manifest.name) {
    log.info("{node} verified snapshot {name} meanwhile", { node: meanwhile.node, name: manifest.name });
    return EXIT.ok;
  }
  const started = performance.now();
  let error: string | undefined;
  let replay: { binlogs: number; replayedTo: string } | undefined;
  try {
    const keyring = await openKeyring(config.backup.encryption, signal);
    const r = await verifySnapshot({
      store: await openStore(config),
      ...(keyring ? { keyring } : {}),
      manifest,
      tmpdir: config.mysql.tmpdir,
      osUser: config.mysql.osUser,
      cluster: clusterPrefix(config.backup.name),
      ...optional("head", (await kv.archiveRecord().catch(() => undefined))?.endState),
      signal,
    });
    replay = { binlogs: r.binlogs, replayedTo: r.replayedTo };
    log.info(
      "Snapshot {name} verified in {s} s: it restores, a server opens it, its {tables} tables pass CHECK TABLE, " +
        "and the {binlogs} archived binlog(s) after it replay to the archive's end, {replayedTo}",
      {
        name: r.name,
        s: ((performance.now() - started) / 1000).toFixed(1),
        tables: r.tables,
        binlogs: r.binlogs,
        replayedTo: r.replayedTo || "(empty)",
      },
    );
  } catch (e) {
    if (e instanceof ArchiveReplayError) replay = { binlogs: e.binlogs, replayedTo: e.replayedTo };
    if (!(e instanceof CorruptSnapshotError || e instanceof ArchiveReplayError) || signal.aborted) {
      await putMetrics({ backup_verifications_total: 1, backup_verification_failures_total: 1 });
      log.error("Could not verify snapshot {name}: {e}; trying again on the next run", {
        name: manifest.name,
        e: errorMessage(e),
      });
      return EXIT.failed;
    }
    error = e.message;
    log.error("Snapshot {name} FAILED verification: {e}", { name: manifest.name, e: e.message });
  }
  const record: VerificationRecord = {
    name: manifest.name,
    ok: error === undefined,
    node: config.node.name,
    at: new Date().toISOString(),
    ...(error !== undefined ? { error } : {}),
    ...(replay ?? {}),
  };
  await kv.recordVerification(record);
  await putMetrics({ backup_verifications_total: 1, backup_verification_failures_total: record.ok ? 0 : 1 });
  return record.ok ? EXIT.ok : EXIT.failed;
}

/** Applies retention after a new snapshot; failures are logged, never fatal: the snapshot is published. */
async function prune(config: Config, kv: ClusterKv, published: string): Promise<void> {
  try {
    const store = await openStore(config);
    // Whatever Consul names now is kept too, should another node have published meanwhile. Each deletion, and
    // each failure, is logged by pruneSnapshots itself.
    const named = (await publishedSnapshot(kv))?.name;
    await pruneSnapshots(store, retentionPolicy(config.backup), {
      protect: named === undefined || named === published ? published : [published, named],
    });
  } catch (e) {
    log.error("Retention did not run: {e}; the snapshots stay until the next run", { e: String(e) });
  }
}

function optional<K extends string>(key: K, value: string | undefined): { [P in K]?: string } {
  return (value === undefined || value === "" ? {} : { [key]: value }) as { [P in K]?: string };
}
