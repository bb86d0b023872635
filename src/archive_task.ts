/**
 * The archiving task: what `autopilot archive` (ContainerPilot's `binlog-archive` task, every
 * BINLOG_ARCHIVE_INTERVAL on every node) runs. Only the writable primary that holds the primary lock archives;
 * on every other node the run ends quietly after one Consul read, without asking the local server.
 *
 * 1. Consul: who holds the primary lock, and the archive record (how far the archive reaches).
 * 2. The local server: writable? Then src/binlog/archiver.ts closes the open binlog if it holds transactions
 *    and uploads every closed binlog the archive lacks.
 * 3. The record goes back to Consul, by check-and-set on the ModifyIndex it was read with; metrics: the lag,
 *    files archived, gaps.
 *
 * A switchover can happen during a run: before each upload and before the record is written, the primary lock
 * is read again and must still be held by this node's session, else the run stops (the new primary archives
 * from the record on). The record is what the restore planner takes as the current history
 * (`historyHead` in src/binlog/plan.ts), so an old primary's late upload of its lost tail never becomes it.
 *
 * A run that fails logs one line and exits 1; what it uploaded before the failure stays archived, and the next
 * run continues from the record.
 *
 * @module
 */
import { getLogger } from "@logtape/logtape";
import type { Config } from "./config.ts";
import { cannotStorePlaintext, openKeyring } from "./backup/encryption.ts";
import { ConsulRequestError, ConsulStore, ConsulUnavailableError } from "./consul.ts";
import { ConsulClusterKv } from "./cluster_kv.ts";
import { flavourOf } from "./local.ts";
import { MysqlUnavailableError } from "./mysql/client.ts";
import { openLocalServer } from "./mysql/server.ts";
import { readState } from "./state.ts";
import { openStore } from "./storage/open.ts";
import { archiveBinlogs, ArchiveError } from "./binlog/archiver.ts";
import { listSegments } from "./binlog/catalog.ts";
import { EXIT } from "./command.ts";
import { clusterPrefix } from "./backup/manifest.ts";
import { publishedManifest } from "./snapshots.ts";
import { putMetrics } from "./metrics.ts";
import { errorMessage } from "./text.ts";
import { deadline, DeadlineError, raceAbort } from "./abort.ts";

const log = getLogger(["autopilot", "archive"]);

/**
 * The deadline of one archiving run: below BINLOG_ARCHIVE_INTERVAL, so that a run has ended (its uploads
 * stopped) before ContainerPilot starts the next; a tenth of the interval, 1 to 30 s (half of an interval
 * under 2 s), is left as the margin.
 * What a stopped run uploaded completely stays archived (each file's index entry is its commit), so a backlog
 * is worked off over several runs.
 *
 * @param intervalSeconds BINLOG_ARCHIVE_INTERVAL in seconds.
 */
export function archiveDeadlineMs(intervalSeconds: number): number {
  const interval = intervalSeconds * 1000;
  return interval - Math.min(30_000, Math.max(Math.min(1000, interval / 2), Math.round(interval / 10)));
}

/** `autopilot archive`: {@link runArchive} under its deadline ({@link archiveDeadlineMs}). */
export function runArchiveTask(config: Config): Promise<number> {
  return runArchive(config, { signal: deadline(archiveDeadlineMs(config.backup.archiveIntervalSeconds)) });
}

/**
 * Archives the primary's binlogs if this node is the writable primary.
 *
 * @param opts.signal The run's deadline ({@link archiveDeadlineMs}): every wait takes it.
 * @returns The exit code: 0 when archived or nothing to do here, 1 when archiving failed.
 */
export async function runArchive(config: Config, opts: { signal?: AbortSignal } = {}): Promise<number> {
  const state = await readState(config.node.stateDir);
  const flavour = flavourOf(config, state);
  const consul = new ConsulStore(config.consul);
  const kv = new ConsulClusterKv(config, consul);
  const signal = opts.signal;
  try {
    const lock = await raceAbort(kv.primary(), signal);
    if (lock.session === undefined || lock.session !== state.sessionId || !lock.record?.ready) {
      log.debug("No archiving: only the primary archives its binlogs, and this node is not it");
      return EXIT.ok;
    }
    await using server = await openLocalServer(config, flavour, signal);
    if (await server.readOnly(signal ? { signal } : {})) {
      log.debug("No archiving: this node holds the primary lock but is read-only");
      return EXIT.ok;
    }
    const store = await raceAbort(openStore(config), signal);
    const cluster = clusterPrefix(config.backup.name);
    const { record: last, modifyIndex } = await raceAbort(kv.archiveRecordEntry(), signal);
    // The published snapshot: one taken after the record's gap started a new window, and the gap is dropped.
    const published = await raceAbort(kv.lastBackup(), signal)
      .then((v) => publishedManifest(v, kv.keys.lastBackup))
      .catch((e) => {
        if (signal?.aborted) throw e;
        return undefined;
      });
    // A switchover may happen during the run: before each upload and before the record is written, this node
    // must still hold the primary lock with the same session.
    const stillPrimary = async () => {
      const now = await raceAbort(kv.primary(), signal);
      if (now.session === undefined || now.session !== lock.session) {
        throw new ArchiveError(
          "this node no longer holds the primary lock (a switchover during the run): the new primary archives " +
            "from here on",
        );
      }
    };
    await putMetrics({ binlog_archive_runs_total: 1 });
    const started = performance.now();
    const keyring = await openKeyring(config.backup.encryption, opts.signal);
    const plaintext = cannotStorePlaintext(
      published?.encryption,
      keyring,
      config.backup.encryption?.allowUnencrypted === true,
      "each binlog",
    );
    if (plaintext !== undefined) throw new ArchiveError(`${plaintext}; nothing was archived`);
    const outcome = await archiveBinlogs({
      store,
      ...(keyring ? { keyring } : {}),
      server,
      flavour,
      node: config.node.name,
      cluster,
      beforeUpload: stillPrimary,
      ...(published !== undefined ? { lastSnapshotAt: published.createdAt } : {}),
      ...(last ? { last } : {}),
      listSegments: () =>
        listSegments(store, {
          cluster,
          ...(signal ? { signal } : {}),
          onInvalid: (key, problem) => log.warn("Archived binlog {key} skipped: {problem}", { key, problem }),
        }),
      ...(signal ? { signal } : {}),
    });
    await stillPrimary();
    if (!await raceAbort(kv.recordArchive(outcome.record, modifyIndex), signal)) {
      throw new ArchiveError(
        "the archive record in Consul changed during the run (another archiver wrote it): not overwritten; the " +
          "next run continues from it",
      );
    }
    await putMetrics({
      binlog_archive_lag_seconds: outcome.record.lagSeconds,
      binlog_archived_files_total: outcome.uploaded.length,
      ...(outcome.gap ? { binlog_archive_gaps_total: 1 } : {}),
    });
    if (outcome.gap) {
      log.error(
        "The binlog archive has a gap: the transactions after {after} up to {resumes} were purged before they " +
          "were archived; a point-in-time restore cannot cross it, and the next snapshot starts a new " +
          "recoverable span (autopilot backup list shows the windows)",
        { after: outcome.gap.after || "(nothing)", resumes: outcome.gap.resumes },
      );
    }
    for (const s of outcome.uploaded.filter((s) => s.truncatedByCrash)) {
      log.warn(
        "Binlog {file} was left by a crash (no rotate or stop event): archived up to its last committed " +
          "transaction ({state})",
        { file: s.file, state: s.endState },
      );
    }
    if (outcome.uploaded.length > 0) {
      log.info("Archived {n} binlog file(s) ({files}) in {s} s; the archive reaches {state}", {
        n: outcome.uploaded.length,
        files: outcome.uploaded.map((s) => s.file).join(", "),
        s: ((performance.now() - started) / 1000).toFixed(1),
        state: outcome.record.endState,
      });
    } else {
      log.debug("Nothing to archive: the archive reaches {state}", { state: outcome.record.endState });
    }
    return EXIT.ok;
  } catch (e) {
    if (e instanceof DeadlineError || (signal?.aborted && e === signal.reason)) {
      await putMetrics({ binlog_archive_failures_total: 1 });
      log.error(
        "Archiving stopped: the run {e} (BINLOG_ARCHIVE_INTERVAL less a margin); what it uploaded whole stays " +
          "archived and the next run goes on from there",
        { e: errorMessage(signal?.reason ?? e) },
      );
      return EXIT.failed;
    }
    if (
      e instanceof MysqlUnavailableError || e instanceof ConsulUnavailableError ||
      e instanceof ConsulRequestError
    ) {
      log.error("No archiving: {e}", { e: e.message });
      return EXIT.failed;
    }
    if (e instanceof Error && ["ArchiveError", "StoreUnavailableError", "BinlogScanError"].includes(e.name)) {
      await putMetrics({ binlog_archive_failures_total: 1 });
      log.error("Archiving failed: {e}; the next run tries again from where the archive stands", {
        e: errorMessage(e),
      });
      return EXIT.failed;
    }
    throw e;
  } finally {
    consul.close();
  }
}
