/**
 * Verifying a snapshot end to end: download it, check its SHA-256 and size, restore and prepare it in a scratch
 * directory under MYSQL_TMPDIR, start a throwaway server on that copy and check that it opens, then replay the
 * archived binlogs after it (src/binlog/) on that server and check that they reach the archive's end, then
 * shut the server down and remove the scratch directory, whatever happened.
 *
 * The throwaway server (src/backup/scratch_server.ts) reads only the option file written into the scratch
 * directory (`--defaults-file`, so never the node's my.cnf): no networking, no replication, no event
 * scheduler, its own socket, pid file, tmpdir and error log. It cannot join the cluster or touch the real
 * datadir. Without archived binlogs to replay it runs without grant tables and without a binlog; with them, as
 * a point-in-time restore's replay server does (grant tables on, a binlog of its own in the scratch directory).
 *
 * @module
 */
import { getLogger } from "@logtape/logtape";
import { run } from "../exec.ts";
import type { Flavour } from "../mysql/flavour.ts";
import type { MysqlClient } from "../mysql/client.ts";
import { ServerOperator } from "../mysql/server.ts";
import { localAdminUser } from "../mysql/bootstrap.ts";
import { type GtidComparison, MariadbGtidSet, MysqlGtidSet } from "../mysql/gtid.ts";
import { NotFoundError, type SnapshotStore } from "../storage/store.ts";
import { latestSnapshot } from "./backup.ts";
import { CorruptSnapshotError } from "./errors.ts";
import { type Manifest, manifestKey, parseManifest } from "./manifest.ts";
import { restoreSnapshot } from "./restore.ts";
import type { Keyring } from "./encryption.ts";
import {
  errorLogTail,
  MAX_SOCKET_PATH,
  scratchServerCnf,
  VerifyError,
  withScratchServer,
} from "./scratch_server.ts";
import { replayableSegments } from "../binlog/catalog.ts";
import {
  followArchive,
  fullState,
  historyHead,
  positionOf,
  type RecoveryPlan,
  type ReplayStep,
  type SnapshotPoint,
  snapshotPoint,
} from "../binlog/plan.ts";
import {
  fetchSegments,
  prepareReplay,
  ReplayError,
  type ReplayFault,
  replaySteps,
  stepFile,
} from "../binlog/replay.ts";
import type { Segment } from "../binlog/segment.ts";
import { errorMessage } from "../text.ts";

export { scratchServerCnf, SERVER_BINARIES, VerifyError, withScratchServer } from "./scratch_server.ts";

const log = getLogger(["autopilot", "verify"]);

/** No snapshot of that name, or none at all, in the store. */
export class SnapshotNotFoundError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "SnapshotNotFoundError";
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
  /** The cluster's snapshot name prefix: its binlog archive is the one replayed. @default "" */
  readonly cluster?: string;
  /** The archive record's endState in Consul, when read: the history replayed to its end. */
  readonly head?: string;
  /** The node's age keys (BACKUP_ENCRYPTION_KEY), for an encrypted snapshot and encrypted binlogs. */
  readonly keyring?: Keyring;
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
  /** How many archived binlogs were replayed after the snapshot (0 when none follows it). */
  readonly binlogs: number;
  /** The GTID position the replay reached: the archive's end (the snapshot's own when nothing was replayed). */
  readonly replayedTo: string;
}

/**
 * The archived binlogs after a snapshot do not replay to the archive's end: one is corrupt, missing or lost,
 * the archive has a gap, the snapshot is on another history, or the replay failed or stopped short. The
 * snapshot itself is good; point-in-time restores from it cannot pass `replayedTo`.
 */
export class ArchiveReplayError extends Error {
  readonly snapshot: string;
  /** What is wrong, naming the binlog at fault when one is. */
  readonly problem: string;
  /** How many archived binlogs were replayed before it, and the GTID position they reached. */
  readonly binlogs: number;
  readonly replayedTo: string;
  constructor(snapshot: string, problem: string, binlogs: number, replayedTo: string, end: string) {
    super(
      `the archived binlogs after snapshot '${snapshot}' do not replay to the archive's end (${
        end || "(empty)"
      }): ${problem}; ${binlogs} replayed, the last point reached is ${replayedTo || "(the snapshot alone)"}`,
    );
    this.name = "ArchiveReplayError";
    this.snapshot = snapshot;
    this.problem = problem;
    this.binlogs = binlogs;
    this.replayedTo = replayedTo;
  }
}

/** What a verification replays after a snapshot ({@link archiveReplayPlan}). */
export interface ArchiveReplayPlan {
  /** The snapshot and the archived binlogs to replay after it; `position` is where they lead. */
  readonly plan: RecoveryPlan;
  /** The archive's end on the current primary's history (the newest index entry's), as a position. */
  readonly end: string;
  /** Why the binlogs to replay stop short of `end` (a gap, a lost binlog, another history), when they do. */
  readonly problem?: string;
}

/**
 * What a verification replays after a snapshot: the archive followed from the snapshot's state toward the
 * newest segment's end state (lost index entries count for where the history ends), as
 * `planRecovery(…, { kind: "end" })` would from that snapshot alone, and, where it stops short, why. Pure.
 *
 * @param snapshot The snapshot verified.
 * @param segments The archive's complete segments of the snapshot's flavour.
 * @param lost Index entries of that flavour whose binlog is missing or of another size.
 * @param head The archive record's endState in Consul, when read: the current history (`historyHead`).
 */
export function archiveReplayPlan(
  flavour: Flavour,
  snapshot: SnapshotPoint,
  segments: readonly Segment[],
  lost: readonly Segment[] = [],
  head?: string,
): ArchiveReplayPlan {
  const { goal, newest } = historyHead(flavour, [...segments, ...lost], head);
  const own = positionOf(flavour, snapshot.state);
  if (goal === undefined) return { plan: { snapshot, steps: [], position: own }, end: own };
  // As planRecovery and the windows do: a MariaDB manifest without binlogState gives a position only.
  const state = fullState(flavour, snapshot.state, segments, goal);
  const end = positionOf(flavour, goal);
  if (compare(flavour, state, goal) === "diverged") {
    return {
      plan: { snapshot, steps: [], position: own },
      end,
      problem: `snapshot ${snapshot.name} is not on the archive's history: it holds transactions that the ` +
        `${
          newest !== undefined ? `newest archived binlog ${newest.key}` : "archive record in Consul"
        } does not`,
    };
  }
  const chain = followArchive(flavour, state, segments, goal);
  const steps: ReplayStep[] = [];
  let applied = own;
  for (const segment of chain.segments) {
    steps.push({ segment, after: applied });
    applied = positionOf(flavour, segment.endState);
  }
  const position = positionOf(flavour, chain.state);
  const plan: RecoveryPlan = {
    snapshot,
    steps,
    position,
    ...(chain.lastTime !== undefined ? { lastTime: chain.lastTime } : {}),
  };
  if (chain.complete) return { plan, end };
  const next = followArchive(flavour, chain.state, lost, goal, (s) => s !== chain.state).segments[0];
  return {
    plan,
    end,
    problem: next !== undefined
      ? `the archived binlog after ${position || "the snapshot"}, ${next.key}, is lost (its index entry is ` +
        "there, its data is missing or of another size)"
      : `the archive has a gap: no archived binlog continues from ${
        position || "the snapshot"
      } (a binlog purged or lost before it was archived)`,
  };
}

function compare(flavour: Flavour, a: string, b: string): GtidComparison {
  return flavour === "mariadb"
    ? MariadbGtidSet.parse(a).compare(MariadbGtidSet.parse(b))
    : MysqlGtidSet.parse(a).compare(MysqlGtidSet.parse(b));
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
      ...(opts.keyring ? { keyring: opts.keyring } : {}),
    });
    const archive = await fetchArchive(
      store,
      manifest,
      `${scratch}/binlogs`,
      signal,
      opts.cluster ?? "",
      opts.head,
      opts.keyring,
    );
    const { plan } = archive.replay;
    const replay = archive.files.length > 0;
    await Deno.mkdir(`${scratch}/tmp`, { mode: 0o700 });
    await giveTo(opts.osUser, [scratch, `${scratch}/tmp`], name, signal);
    const cnf = `${scratch}/my.cnf`;
    const server = replay
      ? await prepareReplay(manifest.flavour, plan, archive.files, `${scratch}/binlogs`, opts.osUser, signal)
      : false;
    await Deno.writeTextFile(
      cnf,
      scratchServerCnf(manifest.flavour, scratch, opts.osUser, { replay: server }),
      {
        mode: 0o600,
      },
    );
    const { opened, replayed } = await withScratchServer(
      manifest,
      scratch,
      opts.startTimeoutMs ?? 120_000,
      async (db) => {
        const opened = await inspect(db, manifest, scratch, signal);
        if (!replay) return { opened, replayed: undefined };
        log.info("Replaying the {n} archived binlog(s) after snapshot {name}", {
          n: archive.files.length,
          name,
        });
        return { opened, replayed: await replayArchive(db, manifest, plan, archive.files, socket, signal) };
      },
      signal,
      replay ? localAdminUser(manifest.flavour) : "root",
    );
    const binlogs = replayed?.fault?.step ?? archive.files.length;
    const replayedTo = replayed?.gtid ?? plan.position;
    const fail = (problem: string): never => {
      throw new ArchiveReplayError(name, problem, binlogs, replayedTo, archive.replay.end);
    };
    if (replayed?.fault) fail(replayed.fault.problem);
    if (archive.fault) fail(archive.fault.problem);
    if (archive.replay.problem) fail(archive.replay.problem);
    if (replay && !samePosition(manifest.flavour, replayedTo, plan.position)) {
      fail(
        `the replay reached ${
          replayedTo || "(nothing)"
        }, not ${plan.position}, where the archived binlogs end`,
      );
    }
    return { name, gtid: restored.gtid, ...opened, binlogs, replayedTo };
  } finally {
    await Deno.remove(scratch, { recursive: true }).catch((e) => {
      log.error("Cannot remove the scratch directory {scratch}: {error}; remove it by hand", {
        scratch,
        error: errorMessage(e),
      });
    });
  }
}

/** The archived binlogs after the snapshot: planned, and downloaded up to the first that is missing or corrupt. */
async function fetchArchive(
  store: SnapshotStore,
  manifest: Manifest,
  dir: string,
  signal: AbortSignal | undefined,
  cluster: string,
  head: string | undefined,
  keyring: Keyring | undefined,
): Promise<{ replay: ArchiveReplayPlan; files: string[]; fault?: ReplayFault }> {
  const flavour = manifest.flavour;
  const { segments, lost } = await replayableSegments(store, { cluster, flavour, log, signal });
  const replay = archiveReplayPlan(flavour, snapshotPoint(manifest), segments, lost, head);
  if (replay.plan.steps.length === 0) return { replay, files: [] };
  await Deno.mkdir(dir, { mode: 0o700 });
  try {
    return { replay, files: await fetchSegments(store, replay.plan, dir, signal, keyring) };
  } catch (e) {
    if (!(e instanceof ReplayError) || e.fault === undefined || signal?.aborted) throw e;
    const fault = e.fault;
    return { replay, files: Array.from({ length: fault.step }, (_, i) => stepFile(dir, i)), fault };
  }
}

/** Replays the downloaded binlogs; a binlog that fails is returned with the position the server reached. */
async function replayArchive(
  db: MysqlClient,
  manifest: Manifest,
  plan: RecoveryPlan,
  files: readonly string[],
  socket: string,
  signal: AbortSignal | undefined,
): Promise<{ gtid: string; fault?: ReplayFault }> {
  try {
    return { gtid: (await replaySteps(db, { manifest, plan, files, socket, signal })).gtid };
  } catch (e) {
    if (!(e instanceof ReplayError) || e.fault === undefined || signal?.aborted) throw e;
    const fault = e.fault;
    const state = await new ServerOperator(db, manifest.flavour).gtidState({ signal });
    return { gtid: (manifest.flavour === "mariadb" ? state.binlogPos : state.executed) ?? "", fault };
  }
}

/** Whether two GTID positions are the same, whatever their order. */
function samePosition(flavour: Flavour, a: string, b: string): boolean {
  return compare(flavour, a, b) === "equal";
}

/** Lists the databases and tables and runs CHECK TABLE on every table. */
async function inspect(
  db: MysqlClient,
  manifest: Manifest,
  scratch: string,
  signal: AbortSignal | undefined,
): Promise<Omit<VerifyResult, "name" | "gtid" | "binlogs" | "replayedTo">> {
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

function quote(identifier: string): string {
  return `\`${identifier.replaceAll("`", "``")}\``;
}
