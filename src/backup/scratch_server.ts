/**
 * The throwaway server that opens a restored snapshot in a scratch directory, for a verification
 * (src/backup/verify.ts) or a point-in-time restore's binlog replay (src/binlog/replay.ts): its option file
 * and its life (started, handed to the caller over its socket, shut down, killed if it will not stop).
 *
 * The server reads only the option file written into the scratch directory (`--defaults-file`, so never the
 * node's my.cnf): no networking, no replication, no event scheduler, its own socket, pid file, tmpdir and
 * error log. It cannot join the cluster or touch the real datadir.
 *
 * @module
 */
import { getLogger } from "@logtape/logtape";
import { CommandFailedError, run } from "../exec.ts";
import type { Flavour } from "../mysql/flavour.ts";
import { MysqlClient } from "../mysql/client.ts";
import { ServerOperator } from "../mysql/server.ts";
import { CorruptSnapshotError, withoutLogPrefixes } from "./errors.ts";
import type { Manifest } from "./manifest.ts";
import { errorMessage } from "../text.ts";

const log = getLogger(["autopilot", "verify"]);
/** The server binaries a throwaway server runs (the `autopilot` permission set allows exactly these). */
export const SERVER_BINARIES: Readonly<Record<Flavour, string>> = Object.freeze({
  mariadb: "/usr/sbin/mariadbd",
  mysql: "/usr/sbin/mysqld",
});

/** Longest unix socket path Linux accepts (sun_path is 108 bytes, NUL included). */
export const MAX_SOCKET_PATH = 107;

/** A snapshot could not be verified for a local reason (not the snapshot's fault): scratch space, the server. */
export class VerifyError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "VerifyError";
  }
}

/** How the throwaway server replays archived binlogs (src/binlog/replay.ts `prepareReplay`). */
export interface ReplayServerCnf {
  /** A server_id no replayed event carries (events with the server's own are skipped). */
  readonly serverId: number;
  /** MariaDB: the relay log base path (`DIR/relay-bin`, its index `DIR/relay-bin.index`). */
  readonly relayLog?: string;
}

/**
 * The option file of the throwaway server: everything in the scratch directory, nothing on the network, no
 * binlog, no replication, no events, no grant tables.
 *
 * @param flavour The snapshot's flavour.
 * @param scratch The scratch directory (absolute).
 * @param osUser The OS account the server runs as.
 * @param opts `datadir` (default `scratch/data`); `replay`: grant tables on and a binlog of its own, with the
 *   server_id and relay logs given ({@link ReplayServerCnf}; `true`: server_id 1, no relay logs).
 * @returns The file's text (`[mysqld]` section, read by mariadbd and mysqld alike).
 */
export function scratchServerCnf(
  flavour: Flavour,
  scratch: string,
  osUser: string,
  opts: { readonly datadir?: string; readonly replay?: boolean | ReplayServerCnf } = {},
): string {
  // Replaying binlogs: grant tables on (a replayed CREATE USER or GRANT needs them; autopilot logs in over the
  // socket as its local admin, authenticated by the OS user) and a binlog of its own in the scratch directory,
  // so that the server's GTID state after the replay is exactly the binlogs'.
  const r = typeof opts.replay === "object" ? opts.replay : undefined;
  // As relay logs (MariaDB, src/binlog/replay.ts): the files stay where they were fetched; no recovery (it
  // would drop them), no purge, log_slave_updates so that the binlog (and gtid_binlog_state) gets every event.
  const relay = r?.relayLog === undefined ? [] : [
    `relay_log = ${r.relayLog}`,
    `relay_log_index = ${r.relayLog}.index`,
    `relay_log_info_file = ${scratch}/relay-log.info`,
    `master_info_file = ${scratch}/master.info`,
    "relay_log_recovery = OFF",
    "relay_log_purge = OFF",
    "log_slave_updates = ON",
  ];
  const replay = opts.replay !== undefined && opts.replay !== false
    ? [
      `log-bin = ${scratch}/replay-bin`,
      `server_id = ${r?.serverId ?? 1}`,
      ...relay,
      "binlog_format = ROW",
      ...(flavour === "mariadb"
        ? ["gtid_strict_mode = ON"]
        : ["gtid_mode = ON", "enforce_gtid_consistency = ON"]),
    ]
    : ["skip-grant-tables", "skip-log-bin"];
  return [
    "# Written by autopilot for a throwaway server on a restored snapshot; removed after it.",
    "[mysqld]",
    `user = ${osUser}`,
    `datadir = ${opts.datadir ?? `${scratch}/data`}`,
    `tmpdir = ${scratch}/tmp`,
    `socket = ${scratch}/mysqld.sock`,
    `pid-file = ${scratch}/mysqld.pid`,
    `log-error = ${scratch}/error.log`,
    "skip-networking",
    "skip-name-resolve",
    ...replay,
    flavour === "mariadb" ? "skip-slave-start" : "skip-replica-start",
    "event-scheduler = DISABLED",
    "performance_schema = OFF",
    "innodb_buffer_pool_size = 64M",
    ...(flavour === "mysql" ? ["mysqlx = OFF"] : []),
    "",
  ].join("\n");
}

/**
 * Runs the throwaway server (`scratch/my.cnf`), hands a connection to `use`, then shuts it down (killed if it
 * will not stop).
 *
 * @param user The account to connect as over the socket: any without grant tables; the local admin with them.
 */
export async function withScratchServer<T>(
  manifest: Manifest,
  scratch: string,
  startTimeoutMs: number,
  use: (db: MysqlClient) => Promise<T>,
  signal: AbortSignal | undefined,
  user = "root",
): Promise<T> {
  const name = manifest.name;
  const binary = SERVER_BINARIES[manifest.flavour];
  const kill = new AbortController();
  const onAbort = () => kill.abort();
  signal?.addEventListener("abort", onAbort, { once: true });
  let exit: { error?: unknown } | undefined;
  const server = run([binary, `--defaults-file=${scratch}/my.cnf`], { signal: kill.signal }).then(
    () => exit = {},
    (error) => exit = { error },
  );
  const failed = async (problem: string): Promise<CorruptSnapshotError> =>
    new ScratchServerError(
      name,
      `${problem}${await errorLogTail(`${scratch}/error.log`)}`,
      "its bytes match the manifest, so the backup itself is bad: take a new snapshot on the primary",
    );
  let shutdownSent = false;
  try {
    const deadline = Date.now() + startTimeoutMs;
    let db: MysqlClient | undefined;
    while (db === undefined) {
      signal?.throwIfAborted();
      if (exit !== undefined) {
        const e = exit.error;
        if (e instanceof CommandFailedError && e.code === 127) {
          throw new VerifyError(`Cannot verify snapshot '${name}': ${binary} is not installed`, { cause: e });
        }
        throw await failed(`a server started on it exited at once${e ? ` (${errorMessage(e)})` : ""}`);
      }
      try {
        db = await MysqlClient.connect({
          socketPath: `${scratch}/mysqld.sock`,
          user,
          connectTimeoutMs: 1000,
        });
      } catch {
        if (Date.now() > deadline) {
          throw await failed(
            `a server started on it did not open within ${Math.round(startTimeoutMs / 1000)} s`,
          );
        }
        await new Promise((r) => setTimeout(r, 100));
      }
    }
    try {
      return await use(db);
    } catch (e) {
      // A replay's own failures (src/binlog/replay.ts) say what they are: not the snapshot's fault.
      if (e instanceof CorruptSnapshotError || signal?.aborted || (e as Error)?.name === "ReplayError") {
        throw e;
      }
      throw await failed(`the server started on it failed: ${errorMessage(e)}`);
    } finally {
      // The connection may drop as the server goes down: shutdown() ignores that, and closes the connection.
      await new ServerOperator(db, manifest.flavour).shutdown();
      shutdownSent = true;
    }
  } finally {
    if (shutdownSent && exit === undefined) {
      let timer: ReturnType<typeof setTimeout> | undefined;
      const stopped = await Promise.race([
        server.then(() => true),
        new Promise<false>((r) => timer = setTimeout(() => r(false), 60_000)),
      ]);
      clearTimeout(timer);
      if (!stopped) {
        log.warn("The throwaway server on snapshot {name} did not stop within 60 s: killing it", { name });
      }
    }
    kill.abort();
    await server;
    signal?.removeEventListener("abort", onAbort);
  }
}

/**
 * The throwaway server on a restored snapshot would not open, or failed while in use: a verification counts
 * that against the snapshot (it is a {@link CorruptSnapshotError}); a point-in-time restore, whose server runs
 * with its own settings and replays binlogs, reports it as a failure of the restore instead
 * (src/binlog/replay.ts), since the cause may be local.
 */
export class ScratchServerError extends CorruptSnapshotError {
  constructor(snapshot: string, problem: string, advice: string) {
    super(snapshot, problem, advice);
    this.name = "CorruptSnapshotError";
  }
}

/** The last error lines of the throwaway server's log, as ` (server log: …)`, or "" when there are none. */
export async function errorLogTail(path: string): Promise<string> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch {
    return "";
  }
  const lines = text.trim().split("\n").filter((l) => l.trim() !== "");
  const errors = lines.filter((l) => /\[ERROR\]/i.test(l));
  const picked = (errors.length > 0 ? errors : lines).slice(-3)
    .map((l) => withoutLogPrefixes(l.replace(/^\d{4}-\d\d-\d\d\s+\d\d?:\d\d:\d\d\s+\d+\s+/, "")).trim());
  return picked.length > 0 ? ` (server log: ${picked.join(" | ").slice(0, 600)})` : "";
}
