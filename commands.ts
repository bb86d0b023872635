/**
 * The command table: every command `autopilot` understands, with its help text and options. Part of the entry
 * (with mod.ts), so it may name the commands in hooks/ and src/cli/. It imports no command's implementation:
 * each entry's `run` loads its module with a dynamic `import()` (a string literal, so `deno compile` still
 * embeds it), so `--help`, `--version` and each command load only what they use.
 *
 * @module
 */
import type { Command, MetricValues } from "./src/command.ts";
import { HANDOVER_TIMEOUT_MS, MARK_BUDGET_MS, SHUTDOWN_WAIT_MS } from "./src/pre_stop_budget.ts";

export type { Command, CommandContext } from "./src/command.ts";
export { EXIT } from "./src/command.ts";

/** A health or on-change pass that threw: a check that ran and failed. */
const HEALTH_CHECK_FAILED: MetricValues = {
  health_checks_total: 1,
  health_check_failures_total: 1,
  healthy: 0,
};
/** A snapshot task (or `backup now`) that threw: a snapshot not taken. */
const SNAPSHOT_FAILED: MetricValues = { backup_failures_total: 1 };

/** Every command, in the order `--help` lists them. */
export const COMMANDS: readonly Command[] = Object.freeze<Command[]>([
  {
    name: "pre-start",
    args: "[--once]",
    summary:
      "before mysqld starts: write my.cnf, then keep, restore (from the last snapshot) or create the datadir",
    details: "An attempt that fails logs one line (attempt number, why, when it tries again), leaves the\n" +
      "datadir as it was, and is tried again 2 s later, the wait doubling to at most 60 s, until one succeeds:\n" +
      "ContainerPilot starts mysqld only after pre-start succeeds. While it retries, 'autopilot status --self'\n" +
      "shows why (STATE_DIR/pre-start-failure.json). SIGTERM or SIGINT stops it at once (exit 1, the datadir as\n" +
      "it was). Invalid configuration is not retried (exit 2).\n" +
      "--once: one attempt; exit 1 if it fails.",
    options: { once: { type: "boolean" } },
    run: async (ctx) => (await import("./hooks/pre_start.ts")).runPreStart(ctx, ctx.flags.once === true),
  },
  {
    name: "health",
    summary: "check this node and keep it in its role; exit 0 only when healthy (ContainerPilot's check)",
    details:
      "The first pass of the first node bootstraps the primary; a later node starts replicating; when the\n" +
      "primary is gone, one node appoints the most advanced replica.\n" +
      "The writable primary's pass also keeps it in the SERVICE_NAME-primary service in Consul.\n" +
      "--primary: change nothing; exit 0 only on the node that holds the primary lock and is writable.",
    options: { primary: { type: "boolean" } },
    // `--primary` only reads, and is not the check the health metrics count.
    failureMetrics: (ctx) => ctx.flags.primary ? {} : HEALTH_CHECK_FAILED,
    run: async (ctx) => (await import("./hooks/health.ts")).runHealth(ctx, Boolean(ctx.flags.primary)),
  },
  {
    name: "on-change",
    summary: "the primary changed: follow the new one, or fail over if there is none (same pass as health)",
    options: {},
    failureMetrics: () => HEALTH_CHECK_FAILED,
    run: async (ctx) => {
      const health = await import("./hooks/health.ts");
      return await health.runHealth(ctx, false, health.PASS_DEADLINE_MS.onChange, false);
    },
  },
  {
    name: "snapshot",
    summary: "take a snapshot if one is due, or verify the last one (ContainerPilot's periodic task)",
    details: "A snapshot is due when none exists, the last one is older than BACKUP_TTL, or the binlog\n" +
      "archive found a gap since (a binlog purged before it was archived). A healthy replica takes it, the\n" +
      "primary only when none exists (BACKUP_FROM=primary: always the primary), under the backup lock in\n" +
      "Consul, so one node at a time. Exit 0 when nothing was due or the snapshot was published; a node whose\n" +
      "MySQL server does not answer yet (starting) or any more takes none, and exits 0 too.\n" +
      "BACKUP_VERIFY=true: a healthy replica with nothing to take verifies the last snapshot, once per snapshot.",
    options: {},
    failureMetrics: () => SNAPSHOT_FAILED,
    run: async (ctx) => (await import("./hooks/snapshot.ts")).runSnapshotTask(ctx),
  },
  {
    name: "archive",
    summary: "archive the primary's binlogs to the snapshot store (ContainerPilot's binlog-archive task)",
    details:
      "On the writable primary only: closes the open binlog when it holds transactions (FLUSH BINARY\n" +
      "LOGS), then uploads every closed binlog the archive lacks to binlogs/CLUSTER/NODE/ in the snapshot\n" +
      "store (CLUSTER: BACKUP_NAME before its first %), compressed and checksummed, each with an index entry\n" +
      "(GTID states, first and last transaction times), and records how far the archive reaches in Consul\n" +
      "(SERVICE_NAME-binlog-archive). After a failover the new primary continues from there. A binlog purged\n" +
      "before it was archived is a gap: logged, counted, and the next snapshot starts a new recoverable span.\n" +
      "A run stops before BINLOG_ARCHIVE_INTERVAL is over (less a tenth, 1-30 s); what it uploaded stays.\n" +
      "Every other node exits 0 after one Consul read.",
    options: {},
    failureMetrics: () => ({ binlog_archive_failures_total: 1 }),
    run: async (ctx) => (await import("./src/archive_task.ts")).runArchiveTask(ctx.config),
  },
  {
    name: "pre-stop",
    summary: "the container is stopping: hand over the primary role, then shut mysqld down cleanly",
    details:
      "On the primary: with BACKUP_ON_STOP=true, a last snapshot first; then the primary role moves to the\n" +
      "replica that has the most, as 'autopilot switchover' does (writes blocked until it has caught up, at\n" +
      `most ${
        HANDOVER_TIMEOUT_MS / 1000
      } s). Then, on every node, mysqld is turned read-only, shut down cleanly and waited for\n` +
      `(at most ${SHUTDOWN_WAIT_MS / 1000} s), and Consul is told (at most ${
        MARK_BUDGET_MS / 1000
      } s): a node still holding the primary lock marks its\n` +
      "record fenced with what it had executed; any other ends its session. Exit 1 if a step failed; the\n" +
      "stop goes on.",
    options: {},
    run: async ({ config }) => (await import("./hooks/pre_stop.ts")).runPreStop(config),
  },
  {
    name: "switchover",
    args: "[--to NODE] [--timeout SECONDS]",
    summary: "move the primary role to another node with no transaction lost (run it on the primary)",
    details:
      "Writes are refused from the moment this node turns read-only until the target, having applied the\n" +
      "last transactions, turns writable in its next pass; the old primary becomes a replica. --to NODE picks\n" +
      "the target; by default the replica that has the most. --timeout SECONDS bounds the wait for the target to\n" +
      "catch up (default 30); on timeout this node turns writable again and nothing changes.",
    options: { to: { type: "string" }, timeout: { type: "string" } },
    run: async (ctx) => (await import("./hooks/switchover.ts")).runSwitchover(ctx),
  },
  {
    name: "status",
    args: "[--json] [--self]",
    summary: "show the cluster as a table (--json for scripts); exit 0 only if it is healthy",
    details:
      "Learns the nodes from Consul (member records, the SERVICE_NAME service) and reads each node's\n" +
      "server over TCP as the replication user (MYSQL_REPL_USER/MYSQL_REPL_PASSWORD), so it runs on any node or\n" +
      "any machine that reaches Consul and the nodes. A node that does not answer within MYSQL_CONNECT_TIMEOUT\n" +
      "(at most 2 s) is shown as unreachable.\n" +
      "Healthy: one writable primary holding the lock, every node answering and replicating from it within\n" +
      "MAX_REPLICATION_LAG and passing its SERVICE_NAME check in Consul, none with transactions the primary\n" +
      "lacks (errant). Run on a node, it also shows why that node's pre-start keeps failing, if it does.\n" +
      "Exit codes: 0 healthy, 1 unhealthy (the reasons in one line on stderr), 2 bad usage or Consul unreachable.\n" +
      "--json: the same report as one JSON object (format 1: see src/status.ts, StatusReport).\n" +
      "--self: only this node (NODE_NAME): exit 0 when it is healthy in its role, whatever the others do (the\n" +
      "image's HEALTHCHECK); while its pre-start retries, the reason it fails.",
    options: { json: { type: "boolean" }, self: { type: "boolean" } },
    run: async (ctx) => (await import("./src/cli/status_command.ts")).runStatus(ctx),
  },
  {
    name: "backup",
    args: "now | list [--json] | verify [NAME]",
    summary: "take, list or verify snapshots",
    details: [
      "backup now            take a snapshot now, whatever BACKUP_TTL says: store it, publish it in",
      "                      LAST_BACKUP_KEY and apply retention (BACKUP_RETAIN_COUNT, BACKUP_RETAIN_AGE; the",
      "                      archived binlogs go once no snapshot kept needs them).",
      "backup list [--json]  every complete snapshot in the store, newest first: name, time, size, GTID, node;",
      "                      '*' marks the one Consul names as the last (the one new nodes restore). Works",
      "                      without Consul (it then says on stderr that it cannot tell which is the last).",
      "                      Incomplete or unusable objects in the store are named on stderr.",
      "backup verify [NAME]  check a snapshot end to end (default: the last, as Consul names it, else the",
      "                      newest in the store): download it, compare its SHA-256 and size with its manifest,",
      "                      unpack and prepare it in a scratch directory under MYSQL_TMPDIR (room for a whole",
      "                      datadir is needed), start a throwaway server on it (no network, no",
      "                      replication; the node's own server and datadir are not touched), run CHECK TABLE",
      "                      on every table, replay the archived binlogs after it (autopilot archive) on that",
      "                      server and check that they reach the archive's end, stop the server and remove",
      "                      the scratch directory (room for those binlogs, decompressed, is needed too).",
      "                      Exit 0 only when the snapshot is good and its binlogs replay; 1 with one line",
      "                      saying what is wrong (a corrupt, missing or lost binlog, or a gap: named, with",
      "                      the last point reached).",
    ].join("\n"),
    options: { json: { type: "boolean" } },
    failureMetrics: (ctx) => ctx.positionals[0] === "now" ? SNAPSHOT_FAILED : {},
    run: async (ctx) => (await import("./src/cli/backup_command.ts")).runBackup(ctx),
  },
  {
    name: "restore",
    args: "[NAME | --to-time TIME | --to-gtid GTID | --to-end]",
    summary: "restore a snapshot, or a point in time, into the empty datadir of a stopped node",
    details: [
      "Restores NAME, or by default the last snapshot as Consul's LAST_BACKUP_KEY names it (the newest complete",
      "snapshot in the store when Consul cannot be read or names none), into MYSQL_DATADIR: its SHA-256 and size",
      "are checked against the manifest, it is unpacked and prepared beside the datadir and moved into place, and",
      "the files are given to MYSQL_OS_USER. Prints the snapshot's name and GTID position.",
      "",
      "Point in time, from the snapshots and the archived binlogs (autopilot backup list shows the windows):",
      "  --to-time TIME   every transaction the binlog stamps before TIME (ISO 8601, e.g. 2026-12-02T14:03:12Z;",
      "                   without a zone it is UTC; binlog times are whole seconds)",
      "  --to-gtid GTID   up to and including GTID (MariaDB 0-1-42, one per domain; MySQL a GTID set)",
      "  --to-end         everything the archive holds",
      "The newest snapshot before the point is restored, then the archived binlogs after it are replayed on a",
      "throwaway server in MYSQL_TMPDIR (which needs room for them, decompressed). Every binlog is downloaded and",
      "checked first: a missing or corrupt one stops the restore before anything is touched, naming the last",
      "point that can be reached. A time before the first snapshot, a GTID the archive never saw or a gap",
      "between the snapshot and the point: one line saying so, nothing touched.",
      "",
      "Refuses, touching nothing, when a server answers on MYSQL_SOCKET, when mysqld's pid file (mysqld.pid",
      "beside the socket) exists, or when the datadir holds anything. Stop mysqld and move the datadir aside",
      "first.",
      "",
      "Afterwards start the node as usual: pre-start keeps the restored datadir, and health replicates from the",
      "primary starting after the restored position, or, with no primary (a new cluster: empty Consul), makes",
      "it the primary, its binlog continuing from that position.",
    ].join("\n"),
    options: { "to-time": { type: "string" }, "to-gtid": { type: "string" }, "to-end": { type: "boolean" } },
    run: async (ctx) => (await import("./src/cli/restore_command.ts")).runRestore(ctx),
  },
  {
    name: "config",
    summary: "print the effective configuration (secrets redacted) and exit",
    details:
      "Every variable is listed with its effective value and whether it was set or defaulted; a secret\n" +
      "read from a file (its NAME_FILE twin, e.g. MYSQL_PASSWORD_FILE=/run/secrets/db) says which file.\n" +
      "Exit code 2 and one line per problem if the configuration is invalid.",
    options: { json: { type: "boolean" } },
    run: async (ctx) => (await import("./src/cli/config_command.ts")).runConfig(ctx),
  },
]);

/** The top-level help text. */
export function usage(): string {
  const width = Math.max(...COMMANDS.map((c) => c.name.length));
  return [
    "autopilot: MySQL that runs itself (called by ContainerPilot at each point of a container's life)",
    "",
    "usage: autopilot COMMAND [options]",
    "",
    "commands:",
    ...COMMANDS.map((c) => `  ${c.name.padEnd(width)}  ${c.summary}`),
    "",
    "  help [COMMAND]  show this help, or one command's",
    "  version         print the version",
    "",
    "Settings come from environment variables (each secret also from a file: NAME_FILE);",
    "run 'autopilot config' to see them all.",
    "Exit codes: 0 success, 1 failure, 2 bad usage or configuration (nothing was touched).",
  ].join("\n");
}
