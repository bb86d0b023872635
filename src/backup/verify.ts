/**
 * Verifying a snapshot end to end: download it, check its SHA-256 and size, restore and prepare it in a scratch
 * directory under MYSQL_TMPDIR, start a throwaway server on that copy and check that it opens, then shut the
 * server down and remove the scratch directory, whatever happened.
 *
 * The throwaway server reads only the option file written into the scratch directory (`--defaults-file`, so
 * never the node's my.cnf): no networking, no binlog, no replication, no event scheduler, no grant tables, its
 * own socket, pid file, tmpdir and error log. It cannot join the cluster or touch the real datadir.
 *
 * @module
 */
import { getLogger } from "@logtape/logtape";
import { CommandFailedError, run } from "../exec.ts";
import type { Flavour } from "../mysql/flavour.ts";
import { MysqlClient } from "../mysql/client.ts";
import { ServerOperator } from "../mysql/server.ts";
import { NotFoundError, type SnapshotStore } from "../storage/store.ts";
import { latestSnapshot } from "./backup.ts";
import { CorruptSnapshotError, withoutLogPrefixes } from "./errors.ts";
import { type Manifest, manifestKey, parseManifest } from "./manifest.ts";
import { restoreSnapshot } from "./restore.ts";
import { errorMessage } from "../text.ts";

const log = getLogger(["autopilot", "verify"]);

/** The server binaries a throwaway server runs (the `autopilot` permission set allows exactly these). */
export const SERVER_BINARIES: Readonly<Record<Flavour, string>> = Object.freeze({
  mariadb: "/usr/sbin/mariadbd",
  mysql: "/usr/sbin/mysqld",
});

/** Longest unix socket path Linux accepts (sun_path is 108 bytes, NUL included). */
const MAX_SOCKET_PATH = 107;

/** No snapshot of that name, or none at all, in the store. */
export class SnapshotNotFoundError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "SnapshotNotFoundError";
  }
}

/** A snapshot could not be verified for a local reason (not the snapshot's fault): scratch space, the server. */
export class VerifyError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "VerifyError";
  }
}

/** Where {@link findSnapshot} found the manifest. */
export type SnapshotSource = "named" | "consul" | "newest";

/** How a log line names where {@link findSnapshot} found the snapshot. */
export function describeSource(source: SnapshotSource): string {
  return source === "consul" ? "the last, as Consul names it" : source === "newest" ? "the newest" : "named";
}

/** Options of {@link findSnapshot}. */
export interface FindSnapshotOptions {
  /** The snapshot's name; unset means the latest. */
  readonly name?: string;
  /** The manifest Consul's LAST_BACKUP_KEY holds, if it was read. */
  readonly published?: Manifest;
  readonly signal?: AbortSignal;
}

/**
 * Picks the snapshot a command works on: the named one (its manifest read from the store; Consul's copy if the
 * store lacks it), else the one Consul names as the last, else the newest complete snapshot in the store.
 *
 * @param store The store.
 * @param opts The name, Consul's manifest.
 * @returns The manifest and where it came from.
 * @throws {SnapshotNotFoundError} when the named snapshot, or any complete snapshot, is not in the store.
 * @throws {CorruptSnapshotError} when the named snapshot's manifest is malformed.
 * @throws {RangeError} when the name cannot be a snapshot name.
 * @throws {Error} whatever the store throws when it cannot be read.
 */
export async function findSnapshot(
  store: SnapshotStore,
  opts: FindSnapshotOptions = {},
): Promise<{ manifest: Manifest; source: SnapshotSource }> {
  const { name, published, signal } = opts;
  if (name !== undefined) {
    const key = manifestKey(name);
    let text: string;
    try {
      text = await new Response(await store.get(key, signal)).text();
    } catch (e) {
      if (!(e instanceof NotFoundError)) throw e;
      if (published?.name === name) return { manifest: published, source: "consul" };
      throw new SnapshotNotFoundError(
        `No snapshot named '${name}' in the ${store.kind} store at ${store.location}: ` +
          "run 'autopilot backup list' to see the snapshots it holds",
      );
    }
    const manifest = parseManifest(text, key);
    if (manifest.name !== name) {
      throw new CorruptSnapshotError(name, `its manifest names the snapshot '${manifest.name}'`);
    }
    return { manifest, source: "named" };
  }
  if (published !== undefined) return { manifest: published, source: "consul" };
  const newest = await latestSnapshot(store, signal ? { signal } : {});
  if (newest === undefined) {
    throw new SnapshotNotFoundError(
      `The ${store.kind} store at ${store.location} holds no complete snapshot: take one with 'autopilot backup now'`,
    );
  }
  return { manifest: newest, source: "newest" };
}

/** What {@link verifySnapshot} needs. */
export interface VerifySnapshotOptions {
  /** Where the snapshot is. */
  readonly store: SnapshotStore;
  /** The snapshot (from {@link findSnapshot}). */
  readonly manifest: Manifest;
  /** The directory the scratch directory is made in (MYSQL_TMPDIR); it needs room for the whole datadir. */
  readonly tmpdir: string;
  /** The OS account the throwaway server runs as (MYSQL_OS_USER); it gets the scratch directory. */
  readonly osUser: string;
  /** How long the throwaway server may take to open. @default 120000 */
  readonly startTimeoutMs?: number;
  /** Stops everything (the server is killed, the scratch directory removed) when aborted. */
  readonly signal?: AbortSignal;
}

/** What a verified snapshot holds. */
export interface VerifyResult {
  readonly name: string;
  /** The GTID position the backup itself recorded (it matches the manifest's). */
  readonly gtid: string;
  /** `SELECT VERSION()` of the throwaway server. */
  readonly serverVersion: string;
  /** Databases, system ones included (`mysql`, …), but not information_schema, performance_schema, sys. */
  readonly databases: number;
  /** Base tables in those databases; every one passed CHECK TABLE. */
  readonly tables: number;
}

/**
 * Verifies a snapshot: restores it (SHA-256 and size checked against the manifest, unpacked, prepared, the GTID
 * of its binlog info compared with the manifest's) into a scratch directory under `tmpdir`, starts a throwaway
 * server on it, lists its tables and runs CHECK TABLE on every one, then shuts the server down. The scratch
 * directory is removed in every case.
 *
 * @param opts The store, the snapshot, the scratch location.
 * @returns What the snapshot holds.
 * @throws {CorruptSnapshotError} when the snapshot differs from its manifest, does not unpack or prepare, or the
 *   server does not open it, or a table fails CHECK TABLE (the message says which, with the server's log).
 * @throws {RestoreError} when the snapshot cannot be read from the store or unpacked for a local reason.
 * @throws {VerifyError} when the scratch directory cannot be made or used, or the server cannot be started.
 */
export async function verifySnapshot(opts: VerifySnapshotOptions): Promise<VerifyResult> {
  const { store, manifest, signal } = opts;
  const name = manifest.name;
  const tmpdir = opts.tmpdir.replace(/(.)\/+$/, "$1");
  let scratch: string;
  try {
    scratch = await Deno.makeTempDir({ dir: tmpdir, prefix: "autopilot-verify-" });
  } catch (e) {
    throw new VerifyError(
      `Cannot verify snapshot '${name}': cannot make a scratch directory in ${tmpdir} (MYSQL_TMPDIR): ${
        errorMessage(e)
      }`,
      { cause: e },
    );
  }
  try {
    const socket = `${scratch}/mysqld.sock`;
    if (socket.length > MAX_SOCKET_PATH) {
      throw new VerifyError(
        `Cannot verify snapshot '${name}': the scratch server's socket path ${socket} is longer than ` +
          `${MAX_SOCKET_PATH} characters: set MYSQL_TMPDIR to a shorter path`,
      );
    }
    log.info("Restoring snapshot {name} into {scratch} to verify it", { name, scratch });
    const restored = await restoreSnapshot({
      store,
      manifest,
      datadir: `${scratch}/data`,
      flavour: manifest.flavour,
      chownTo: opts.osUser,
      ...(signal ? { signal } : {}),
    });
    await Deno.mkdir(`${scratch}/tmp`, { mode: 0o700 });
    await giveTo(opts.osUser, [scratch, `${scratch}/tmp`], name, signal);
    const cnf = `${scratch}/my.cnf`;
    await Deno.writeTextFile(cnf, scratchServerCnf(manifest.flavour, scratch, opts.osUser), { mode: 0o600 });
    const opened = await withScratchServer(
      manifest,
      scratch,
      opts.startTimeoutMs ?? 120_000,
      (db) => inspect(db, manifest, scratch, signal),
      signal,
    );
    return { name, gtid: restored.gtid, ...opened };
  } finally {
    await Deno.remove(scratch, { recursive: true }).catch((e) => {
      log.error("Cannot remove the scratch directory {scratch}: {error}; remove it by hand", {
        scratch,
        error: errorMessage(e),
      });
    });
  }
}

/**
 * The option file of the throwaway server: everything in the scratch directory, nothing on the network, no
 * binlog, no replication, no events, no grant tables.
 *
 * @param flavour The snapshot's flavour.
 * @param scratch The scratch directory (absolute).
 * @param osUser The OS account the server runs as.
 * @returns The file's text (`[mysqld]` section, read by mariadbd and mysqld alike).
 */
export function scratchServerCnf(
  flavour: Flavour,
  scratch: string,
  osUser: string,
  opts: { readonly datadir?: string; readonly replay?: boolean } = {},
): string {
  // Replaying binlogs: grant tables on (a replayed CREATE USER or GRANT needs them; autopilot logs in over the
  // socket as its local admin, authenticated by the OS user) and a binlog of its own in the scratch directory,
  // so that the server's GTID state after the replay is exactly the binlogs'.
  const replay = opts.replay === true
    ? [
      `log-bin = ${scratch}/replay-bin`,
      "server_id = 1",
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
    new CorruptSnapshotError(
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

/** Lists the databases and tables and runs CHECK TABLE on every table. */
async function inspect(
  db: MysqlClient,
  manifest: Manifest,
  scratch: string,
  signal: AbortSignal | undefined,
): Promise<Omit<VerifyResult, "name" | "gtid">> {
  const version = await db.version(signal);
  const rows = await db.query(
    "SELECT TABLE_SCHEMA AS s, TABLE_NAME AS t FROM information_schema.TABLES " +
      "WHERE TABLE_TYPE = 'BASE TABLE' AND TABLE_SCHEMA NOT IN ('information_schema', 'performance_schema', 'sys') " +
      "ORDER BY TABLE_SCHEMA, TABLE_NAME",
    { signal },
  );
  const tables = rows.map((r) => ({ schema: String(r.s), table: String(r.t) }));
  if (!tables.some((t) => t.schema === "mysql")) {
    throw new CorruptSnapshotError(
      manifest.name,
      "a server started on it sees no mysql system tables",
      "take a new snapshot on the primary",
    );
  }
  const bad: string[] = [];
  for (let i = 0; i < tables.length; i += 50) {
    const batch = tables.slice(i, i + 50).map((t) => `${quote(t.schema)}.${quote(t.table)}`);
    for (const r of await db.query(`CHECK TABLE ${batch.join(", ")}`, { signal })) {
      const type = String(r.Msg_type ?? "").toLowerCase();
      const text = String(r.Msg_text ?? "");
      if (type === "error" || (type === "status" && !/^(OK|Table is already up to date)$/i.test(text))) {
        bad.push(`${r.Table}: ${text}`);
      }
    }
  }
  if (bad.length > 0) {
    throw new CorruptSnapshotError(
      manifest.name,
      `CHECK TABLE failed on a server started on it: ${bad.slice(0, 3).join("; ")}${
        bad.length > 3 ? ` (and ${bad.length - 3} more)` : ""
      }${await errorLogTail(`${scratch}/error.log`)}`,
      "take a new snapshot on the primary",
    );
  }
  return {
    serverVersion: version.text,
    databases: new Set(tables.map((t) => t.schema)).size,
    tables: tables.length,
  };
}

/** Gives directories to the server's OS account (`chown`, not recursive). */
async function giveTo(
  osUser: string,
  paths: readonly string[],
  name: string,
  signal: AbortSignal | undefined,
): Promise<void> {
  if (!/^[A-Za-z0-9_.-]{1,32}(:[A-Za-z0-9_.-]{1,32})?$/.test(osUser)) {
    throw new RangeError(`Cannot run a server as '${osUser}': use an account name, or 'user:group'`);
  }
  try {
    await run(["chown", osUser.includes(":") ? osUser : `${osUser}:`, ...paths], signal ? { signal } : {});
  } catch (e) {
    throw new VerifyError(
      `Cannot verify snapshot '${name}': cannot give the scratch directory to '${osUser}': ${
        errorMessage(e)
      }`,
      { cause: e },
    );
  }
}

/** The last error lines of the throwaway server's log, as ` (server log: …)`, or "" when there are none. */
async function errorLogTail(path: string): Promise<string> {
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

function quote(identifier: string): string {
  return `\`${identifier.replaceAll("`", "``")}\``;
}
