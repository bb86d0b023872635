/**
 * The archiving task: what `autopilot archive` (ContainerPilot's `binlog-archive` task, every
 * BINLOG_ARCHIVE_INTERVAL on every node) runs. Only the writable primary that holds the primary lock archives;
 * on every other node the run ends quietly after one Consul read, without asking the local server.
 *
 * 1. Consul: who holds the primary lock, and the archive record (how far the archive reaches).
 * 2. The local server: writable? Then src/binlog/archiver.ts closes the open binlog if it holds transactions
 *    and uploads every closed binlog the archive lacks.
 * 3. The record goes back to Consul; metrics: the lag, files archived, gaps.
 *
 * A run that fails logs one line and exits 1; what it uploaded before the failure stays archived, and the next
 * run continues from the record.
 *
 * @module
 */
import { getLogger } from "@logtape/logtape";
import type { Config } from "./config.ts";
import { openKeyring } from "./backup/encryption.ts";
import { ConsulRequestError, ConsulStore, ConsulUnavailableError } from "./consul.ts";
import { ConsulClusterKv } from "./cluster_kv.ts";
import { flavourOf } from "./local.ts";
import { MysqlUnavailableError } from "./mysql/client.ts";
import { openLocalServer } from "./mysql/server.ts";
import { readState } from "./state.ts";
import { openStore } from "./storage/open.ts";
import { archiveBinlogs } from "./binlog/archiver.ts";
import { listSegments } from "./binlog/catalog.ts";
import { EXIT } from "./command.ts";
import { putMetrics } from "./metrics.ts";
import { errorMessage } from "./text.ts";

const log = getLogger(["autopilot", "archive"]);

/**
 * Archives the primary's binlogs if this node is the writable primary.
 *
 * @returns The exit code: 0 when archived or nothing to do here, 1 when archiving failed.
 */
export async function runArchive(config: Config, opts: { signal?: AbortSignal } = {}): Promise<number> {
  const state = await readState(config.node.stateDir);
  const flavour = flavourOf(config, state);
  const consul = new ConsulStore(config.consul);
  const kv = new ConsulClusterKv(config, consul);
  try {
    const lock = await kv.primary();
    if (lock.session === undefined || lock.session !== state.sessionId || !lock.record?.ready) {
      log.debug("No archiving: only the primary archives its binlogs, and this node is not it");
      return EXIT.ok;
    }
    await using server = await openLocalServer(config, flavour);
    if (await server.readOnly()) {
      log.debug("No archiving: this node holds the primary lock but is read-only");
      return EXIT.ok;
    }
    const store = await openStore(config);
    const last = await kv.archiveRecord();
    await putMetrics({ binlog_archive_runs_total: 1 });
    const started = performance.now();
    const keyring = await openKeyring(config.backup.encryption, opts.signal);
    const outcome = await archiveBinlogs({
      store,
      ...(keyring ? { keyring } : {}),
      server,
      flavour,
      node: config.node.name,
      ...(last ? { last } : {}),
      listSegments: () =>
        listSegments(store, {
          onInvalid: (key, problem) => log.warn("Archived binlog {key} skipped: {problem}", { key, problem }),
        }),
      ...(opts.signal ? { signal: opts.signal } : {}),
    });
    await kv.recordArchive(outcome.record);
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
