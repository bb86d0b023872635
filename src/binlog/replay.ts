/**
 * Restoring to a point in time: the plan (src/binlog/plan.ts) names a snapshot and the archived binlogs to
 * replay after it. Every binlog is downloaded, checked against its index entry (size, SHA-256) and
 * decompressed into a work directory under MYSQL_TMPDIR *before anything else*: a corrupt or missing one
 * stops the restore with the datadir untouched and names the last point that can be reached. Then the
 * snapshot is restored into its staging directory, a throwaway server opens that copy (no networking, grant
 * tables on, a binlog of its own in the work directory, a server_id no replayed event carries), its binlog
 * state is set to the snapshot's, and the binlogs are applied from what is applied up to the point:
 *
 * - MariaDB: as relay logs, by the SQL thread alone. The fetched files are the relay logs
 *   (`relay-bin.000001`… in the work directory, in history order, with their index); for each step the file
 *   is scanned (src/binlog/scan.ts) for the byte range of its transactions after the step's start and up to
 *   its stop, then `CHANGE MASTER TO … RELAY_LOG_FILE, RELAY_LOG_POS` and `START SLAVE SQL_THREAD UNTIL
 *   RELAY_LOG_FILE, RELAY_LOG_POS` apply exactly that range (one run per file: after a failover the next
 *   file is another server's and may start with transactions already applied). `RESET SLAVE ALL` after the
 *   last leaves no replication configured. A step whose transactions are not one byte range (several domains
 *   with a stop that cuts them apart) goes through `mariadb-binlog | mariadb` instead.
 * - MySQL: through `mysqlbinlog --exclude-gtids … --include-gtids … | mysql` per file.
 *
 * The server's GTID state afterwards is written into the restore mark, the throwaway binlog is dropped, and
 * only then is the copy moved into place: the node starts from the point, as the primary of a new cluster or
 * as a replica. Why relay logs: about 3.3 times as fast as `mariadb-binlog | mariadb` on MariaDB 10.11, and
 * what they need; docs/DEVELOPING.md has the measurement.
 *
 * @module
 */
import { getLogger } from "@logtape/logtape";
import { CommandFailedError, pipeline, run } from "../exec.ts";
import type { Flavour } from "../mysql/flavour.ts";
import type { MysqlClient } from "../mysql/client.ts";
import { ServerOperator } from "../mysql/server.ts";
import { localAdminUser } from "../mysql/bootstrap.ts";
import { NotFoundError, type SnapshotStore } from "../storage/store.ts";
import { hashedSource } from "../backup/digest.ts";
import { listSnapshots } from "../backup/backup.ts";
import { ofCluster } from "../backup/manifest.ts";
import type { Manifest } from "../backup/manifest.ts";
import { restoreSnapshot } from "../backup/restore.ts";
import {
  cannotRestore,
  decryptCommand,
  isDecryptFailure,
  type Keyring,
  withIdentityFile,
} from "../backup/encryption.ts";
import { decompressCommand } from "../backup/tools.ts";
import {
  MAX_SOCKET_PATH,
  type ReplayServerCnf,
  scratchServerCnf,
  ScratchServerError,
  withScratchServer,
} from "../backup/scratch_server.ts";
import { RestoreError } from "../backup/errors.ts";
import { delay } from "../abort.ts";
import { MariadbGtidSet } from "../mysql/gtid.ts";
import { type BinlogTransaction, scanBinlog } from "./scan.ts";
import { writeRestoredMark } from "../restored.ts";
import { errorMessage } from "../text.ts";
import { replayableSegments } from "./catalog.ts";
import {
  isoSecond,
  planRecovery,
  type RecoveryPlan,
  type RecoveryTarget,
  type ReplayStep,
  snapshotPoint,
} from "./plan.ts";

const log = getLogger(["autopilot", "restore"]);

/** Which archived binlog a replay stopped at, and where. */
export interface ReplayFault {
  /** Its index in the plan's steps. */
  readonly step: number;
  /** The position reached before it (what is applied, or can be, without it). */
  readonly reached: string;
  /** What is wrong, naming the binlog, e.g. `Archived binlog K is corrupt (…)`. */
  readonly problem: string;
}

/** Replaying archived binlogs failed, or one of them is missing or corrupt. The message names the last point. */
export class ReplayError extends Error {
  /** The binlog at fault, when one is. */
  readonly fault?: ReplayFault;
  constructor(message: string, options?: ErrorOptions & { readonly fault?: ReplayFault }) {
    super(message, options);
    this.name = "ReplayError";
    if (options?.fault !== undefined) this.fault = options.fault;
  }
}

/**
 * The program that prints one archived binlog's transactions after `step.after`, up to `step.until`.
 *
 * @returns MariaDB `mariadb-binlog --start-position=… --stop-position=… FILE`; MySQL `mysqlbinlog
 *   --exclude-gtids=… --include-gtids=… FILE`.
 */
export function readerCommand(
  flavour: Flavour,
  file: string,
  step: Pick<ReplayStep, "after" | "until">,
): string[] {
  if (flavour === "mariadb") {
    return [
      "mariadb-binlog",
      ...(step.after !== "" ? [`--start-position=${step.after}`] : []),
      ...(step.until !== undefined && step.until !== "" ? [`--stop-position=${step.until}`] : []),
      file,
    ];
  }
  return [
    "mysqlbinlog",
    ...(step.after !== "" ? [`--exclude-gtids=${step.after}`] : []),
    ...(step.until !== undefined && step.until !== "" ? [`--include-gtids=${step.until}`] : []),
    file,
  ];
}

/** The client that applies what the reader prints, over the throwaway server's socket; stops at the first error. */
export function clientCommand(flavour: Flavour, socket: string): string[] {
  return [
    flavour === "mariadb" ? "mariadb" : "mysql",
    "--no-defaults",
    `--socket=${socket}`,
    `--user=${localAdminUser(flavour)}`,
    "--binary-mode",
  ];
}

/** A transaction of a binlog file, as the scanner gives it. */
export type ScannedTransaction = Pick<BinlogTransaction, "gtid" | "startPosition" | "endPosition">;

/** What the SQL thread applies of one step's file ({@link relayRange}). */
export type RelayRange =
  /** Nothing: every transaction is applied already, or past the stop. */
  | { readonly kind: "none" }
  /** The bytes `[start, end)`: from the first transaction's GTID event to the end of the last one. */
  | { readonly kind: "range"; readonly start: number; readonly end: number; readonly last: string }
  /** The transactions to apply are not one byte range (domains interleaved, a stop cutting them apart). */
  | { readonly kind: "scattered" };

/** A MariaDB position as domain → seq_no. */
function seqNos(position: string): Map<number, bigint> {
  return new Map(MariadbGtidSet.parse(position).entries().map((g) => [g.domain, g.seqNo]));
}

/**
 * Which bytes of a step's MariaDB binlog the SQL thread applies: the transactions after `step.after` (per
 * domain, by seq_no, as `mariadb-binlog --start-position` skips them) and, when the step has a stop, at or
 * before `step.until` (a domain it does not name: none, as `--stop-position` prints none of it).
 *
 * @param transactions The file's complete transactions, in file order (src/binlog/scan.ts).
 */
export function relayRange(
  transactions: readonly ScannedTransaction[],
  step: Pick<ReplayStep, "after" | "until">,
): RelayRange {
  const after = seqNos(step.after);
  const until = step.until !== undefined && step.until !== "" ? seqNos(step.until) : undefined;
  let first = -1;
  let last = -1;
  for (const [i, t] of transactions.entries()) {
    const [domain, , seq] = t.gtid.split("-");
    const d = Number(domain);
    const n = BigInt(seq);
    const wanted = n > (after.get(d) ?? -1n) && (until === undefined || n <= (until.get(d) ?? -1n));
    if (!wanted) continue;
    if (first === -1) first = i;
    else if (last !== i - 1) return { kind: "scattered" };
    last = i;
  }
  if (first === -1) return { kind: "none" };
  return {
    kind: "range",
    start: transactions[first].startPosition,
    end: transactions[last].endPosition,
    last: transactions[last].gtid,
  };
}

/**
 * The throwaway server's server_id: one that no replayed event carries (neither a file's writer nor any
 * server_id in the states along the plan, which name every server that wrote a GTID there), since a server
 * skips, silently, the relay log events that carry its own. The highest free id, counting down from 2^32-1.
 */
export function replayServerId(flavour: Flavour, plan: RecoveryPlan): number {
  const taken = new Set<number>();
  const states = [plan.snapshot.state];
  for (const step of plan.steps) {
    taken.add(step.segment.serverId);
    states.push(step.segment.startState, step.segment.endState);
  }
  // MySQL states are sets of source UUIDs: no server_id in them.
  if (flavour === "mariadb") {
    for (const state of states) for (const g of MariadbGtidSet.parse(state).entries()) taken.add(g.serverId);
  }
  let id = 4294967295;
  while (taken.has(id)) id--;
  return id;
}

/** The name of step `i`'s file as a relay log (the server puts the relay log directory before it). */
export function relayLogName(i: number): string {
  return `relay-bin.${String(i + 1).padStart(6, "0")}`;
}

/**
 * Gets the fetched binlogs ready for the throwaway server, before it starts: MariaDB, each linked in `dir`
 * as a relay log ({@link relayLogName}, in step order) with their index, all given to `osUser`.
 *
 * @returns What the server's option file needs (`scratchServerCnf(…, { replay })`).
 */
export async function prepareReplay(
  flavour: Flavour,
  plan: RecoveryPlan,
  files: readonly string[],
  dir: string,
  osUser: string,
  signal?: AbortSignal,
): Promise<ReplayServerCnf> {
  const serverId = replayServerId(flavour, plan);
  if (flavour !== "mariadb") return { serverId };
  const relayLog = `${dir}/relay-bin`;
  const names = files.map((file, i) => ({ file, relay: `${dir}/${relayLogName(i)}` }));
  for (const { file, relay } of names) {
    await Deno.remove(relay).catch(() => {});
    await Deno.link(file, relay);
  }
  await Deno.writeTextFile(`${relayLog}.index`, names.map((n) => `${n.relay}\n`).join(""), { mode: 0o600 });
  const owner = osUser.includes(":") ? osUser : `${osUser}:`;
  await run(["chown", owner, dir, `${relayLog}.index`, ...files], signal ? { signal } : {});
  return { serverId, relayLog };
}

/** Where a step leaves the restore, for messages: its start position and time. */
function describePoint(position: string, unix?: number): string {
  return `${position || "(the snapshot alone)"}${unix !== undefined ? ` (${isoSecond(unix)})` : ""}`;
}

/** Where {@link fetchSegments} puts step `i`'s binlog in `dir`. */
export function stepFile(dir: string, i: number): string {
  return `${dir}/${String(i).padStart(4, "0")}.binlog`;
}

/**
 * Downloads each step's binlog into `dir` ({@link stepFile}), checking size and SHA-256 on the way, and
 * decrypting the encrypted ones with `keyring` (every one's key is checked before the first download).
 *
 * @returns The files, in step order.
 * @throws {ReplayError} naming the binlog at fault and the last point reachable before it (`fault` says
 *   which step; the files of the steps before it are complete); without `fault` when a binlog is
 *   encrypted and `keyring` holds no identity of its recipients, or is not and `keyring` holds an identity
 *   without BACKUP_ALLOW_UNENCRYPTED (nothing downloaded).
 */
export async function fetchSegments(
  store: SnapshotStore,
  plan: RecoveryPlan,
  dir: string,
  signal?: AbortSignal,
  keyring?: Keyring,
): Promise<string[]> {
  // Every key is checked before any download: a missing or wrong key stops the restore before it starts.
  for (const step of plan.steps) {
    const problem = cannotRestore(step.segment.encryption, keyring, `archived binlog ${step.segment.key}`);
    if (problem !== undefined) throw new ReplayError(`${capitalise(problem)}; nothing was touched`);
  }
  return plan.steps.some((s) => s.segment.encryption !== undefined) && keyring !== undefined
    ? await withIdentityFile(keyring, (identity) => fetchEach(store, plan, dir, signal, identity))
    : await fetchEach(store, plan, dir, signal);
}

function capitalise(s: string): string {
  return s.charAt(0).toUpperCase() + s.slice(1);
}

async function fetchEach(
  store: SnapshotStore,
  plan: RecoveryPlan,
  dir: string,
  signal: AbortSignal | undefined,
  identityFile?: string,
): Promise<string[]> {
  const files: string[] = [];
  for (const [i, step] of plan.steps.entries()) {
    const seg = step.segment;
    const file = stepFile(dir, i);
    const reachable = i === 0 ? plan.steps[0].after : plan.steps[i - 1].segment.endState;
    const stop = (problem: string, cause?: unknown): never => {
      const before = i === 0 ? undefined : plan.steps[i - 1].segment.lastTime;
      const fault = { step: i, reached: reachable, problem: `Archived binlog ${seg.key} ${problem}` };
      throw new ReplayError(
        `Archived binlog ${seg.key} ${problem}: the restore stops before it, nothing was touched; the last point ` +
          `it can reach from snapshot ${plan.snapshot.name} is ${
            describePoint(reachable, before)
          }: restore with ` +
          `--to-gtid ${reachable || "(none: restore the snapshot alone)"}`,
        cause === undefined ? { fault } : { cause, fault },
      );
    };
    let body: ReadableStream<Uint8Array>;
    try {
      body = await store.get(seg.key, signal);
    } catch (e) {
      if (e instanceof NotFoundError) stop("is missing from the store");
      throw e;
    }
    const source = hashedSource(body, signal);
    let unpack: unknown;
    try {
      // zstd writes the file itself: the decompressed bytes never pass through this process.
      const unzstd = { argv: [...decompressCommand().filter((a) => a !== "-c"), "-f", "-o", file] };
      const decrypt = seg.encryption !== undefined && identityFile !== undefined
        ? [{ argv: decryptCommand(identityFile) }]
        : [];
      await pipeline([...decrypt, unzstd], {
        source: source.readable,
        ...(signal ? { signal } : {}),
      });
    } catch (e) {
      unpack = e;
    }
    const digest = await source.done;
    if (digest.size !== seg.size || digest.sha256 !== seg.sha256) {
      stop(
        `is corrupt (${digest.size} bytes with SHA-256 ${
          digest.sha256.slice(0, 12)
        }…, its index says ${seg.size} bytes, ${seg.sha256.slice(0, 12)}…)`,
      );
    }
    if (unpack !== undefined) {
      if (signal?.aborted) throw unpack;
      stop(
        `does not ${isDecryptFailure(unpack) ? "decrypt" : "decompress"} (${errorMessage(unpack)})`,
        unpack,
      );
    }
    const bytes = (await Deno.stat(file)).size;
    if (bytes !== seg.rawBytes) stop(`decompresses to ${bytes} bytes, its index says ${seg.rawBytes}`);
    files.push(file);
  }
  return files;
}

/** What {@link restoreToPoint} needs. */
export interface PointRestoreOptions {
  readonly store: SnapshotStore;
  readonly flavour: Flavour;
  /** The (missing or empty) datadir to create. */
  readonly datadir: string;
  readonly target: RecoveryTarget;
  /** The cluster's snapshot name prefix: only its snapshots and its binlog archive are used. @default "" */
  readonly cluster?: string;
  /** The archive record's endState in Consul, when read: the current history (`historyHead` in plan.ts). */
  readonly head?: string;
  /** MYSQL_TMPDIR: room for the binlogs, decompressed. */
  readonly tmpdir: string;
  /** MYSQL_OS_USER: owns the restored files and runs the throwaway server. */
  readonly osUser: string;
  readonly signal?: AbortSignal;
  /** The node's age keys (BACKUP_ENCRYPTION_KEY), for an encrypted snapshot and encrypted binlogs. */
  readonly keyring?: Keyring;
  /** How long the throwaway server may take to open. @default 120000 */
  readonly startTimeoutMs?: number;
}

/** Where a point-in-time restore left the datadir. */
export interface PointRestoreResult {
  readonly plan: RecoveryPlan;
  readonly manifest: Manifest;
  /** The GTID position reached (MariaDB gtid_binlog_pos, MySQL gtid_executed). */
  readonly gtid: string;
  /** MariaDB: the binlog state reached. */
  readonly binlogState?: string;
  /** Bytes of binlog replayed, and how long the replay took. */
  readonly replayedBytes: number;
  readonly replayMs: number;
}

/**
 * Plans and runs a point-in-time restore into an empty datadir.
 *
 * @throws {RecoveryPointError} when no point of the archive matches the target (nothing touched).
 * @throws {ReplayError} when an archived binlog is missing or corrupt (nothing touched), or the replay fails
 *   (the staging copy is removed; the datadir as it was).
 * @throws {CorruptSnapshotError | RestoreError} as {@link restoreSnapshot} does.
 */
export async function restoreToPoint(o: PointRestoreOptions): Promise<PointRestoreResult> {
  const { store, flavour, signal } = o;
  const cluster = o.cluster ?? "";
  const manifests = (await listSnapshots(store, signal ? { signal } : {})).filter((m) =>
    m.flavour === flavour && ofCluster(cluster, m.name)
  );
  const { segments, lost } = await replayableSegments(store, { cluster, flavour, log, signal });
  const plan = planRecovery(flavour, manifests.map(snapshotPoint), segments, o.target, lost, o.head);
  const manifest = manifests.find((m) => m.name === plan.snapshot.name)!;
  if (plan.note) log.warn("{note}", { note: plan.note });
  log.info("Restoring snapshot {name} and replaying {n} archived binlog(s) up to {position}", {
    name: manifest.name,
    n: plan.steps.length,
    position: plan.position || "(the snapshot's own)",
  });
  const work = await Deno.makeTempDir({ dir: o.tmpdir.replace(/(.)\/+$/, "$1"), prefix: "autopilot-pitr-" });
  const socket = `${work}/mysqld.sock`;
  if (socket.length > MAX_SOCKET_PATH) {
    await Deno.remove(work, { recursive: true }).catch(() => {});
    throw new RestoreError(
      manifest.name,
      o.datadir,
      `the throwaway server's socket path ${socket} is longer than ${MAX_SOCKET_PATH} characters`,
      "nothing was touched: set MYSQL_TMPDIR to a shorter path",
    );
  }
  // The binlogs are fetched and checked while the snapshot is restored into its staging directory: the datadir
  // is touched only after both, so a bad binlog still stops the restore before anything is touched.
  const stop = new AbortController();
  const both = signal ? AbortSignal.any([signal, stop.signal]) : stop.signal;
  let fetchFailed: { error: unknown } | undefined;
  const fetching = fetchSegments(store, plan, work, both, o.keyring).catch((e) => {
    fetchFailed = { error: e };
    stop.abort(e);
    throw e;
  });
  fetching.catch(() => {}); // awaited below, or its failure reported instead of the restore's
  try {
    let reached: { gtid: string; binlogState?: string } | undefined;
    let replayMs = 0;
    const replayedBytes = plan.steps.reduce((n, s) => n + s.segment.rawBytes, 0);
    try {
      await restoreSnapshot({
        store,
        manifest,
        datadir: o.datadir,
        flavour,
        chownTo: o.osUser,
        signal: both,
        ...(o.keyring ? { keyring: o.keyring } : {}),
        beforeMove: async (staged) => {
          const files = await fetching;
          try {
            reached = await replayInto(o, manifest, plan, files, work, staged, (ms) => replayMs = ms);
          } catch (e) {
            // The throwaway server runs with the replay's settings: its failure is the restore's, not proof
            // that the snapshot is bad (a verification tells).
            if (!(e instanceof ScratchServerError)) throw e;
            throw new RestoreError(
              manifest.name,
              o.datadir,
              `the throwaway server that replays the archived binlogs on it failed: ${e.problem}`,
              `the datadir was not touched; 'autopilot backup verify ${manifest.name}' tells whether the snapshot ` +
                "itself is good (else the cause is local: MYSQL_TMPDIR, MYSQL_OS_USER, the server's settings)",
              { cause: e },
            );
          }
          await writeRestoredMark(staged, {
            snapshot: manifest.name,
            gtid: reached.gtid,
            ...(reached.binlogState !== undefined ? { binlogState: reached.binlogState } : {}),
          });
        },
      });
    } catch (e) {
      if (fetchFailed !== undefined) throw fetchFailed.error;
      throw e;
    } finally {
      stop.abort(); // a restore that failed first ends the fetching too
      await fetching.catch(() => {});
    }
    return { plan, manifest, ...reached!, replayedBytes, replayMs };
  } finally {
    await Deno.remove(work, { recursive: true }).catch(() => {});
  }
}

/** Opens the staged copy with a throwaway server, sets its state to the snapshot's and replays the steps. */
async function replayInto(
  o: PointRestoreOptions,
  manifest: Manifest,
  plan: RecoveryPlan,
  files: readonly string[],
  work: string,
  staged: string,
  took: (ms: number) => void,
): Promise<{ gtid: string; binlogState?: string }> {
  const { flavour, signal } = o;
  await Deno.mkdir(`${work}/tmp`, { recursive: true, mode: 0o700 });
  const replay = await prepareReplay(flavour, plan, files, work, o.osUser, signal);
  await Deno.writeTextFile(
    `${work}/my.cnf`,
    scratchServerCnf(flavour, work, o.osUser, { datadir: staged, replay }),
    { mode: 0o600 },
  );
  const owner = o.osUser.includes(":") ? o.osUser : `${o.osUser}:`;
  await run(["chown", owner, work, `${work}/tmp`], signal ? { signal } : {});
  return await withScratchServer(
    manifest,
    work,
    o.startTimeoutMs ?? 120_000,
    async (db) => {
      try {
        const r = await replaySteps(db, { manifest, plan, files, socket: `${work}/mysqld.sock`, signal });
        took(r.ms);
        return r.binlogState !== undefined ? { gtid: r.gtid, binlogState: r.binlogState } : { gtid: r.gtid };
      } catch (e) {
        if (!(e instanceof ReplayError) || e.fault === undefined) throw e;
        throw new ReplayError(
          `${e.message}; the datadir was not touched; the last point replayed before it is ${
            describePoint(e.fault.reached)
          }`,
          { cause: e.cause, fault: e.fault },
        );
      }
    },
    signal,
    localAdminUser(flavour),
  );
}

/** What {@link replaySteps} needs. */
export interface ReplayStepsOptions {
  /** The snapshot the server opened. */
  readonly manifest: Manifest;
  readonly plan: RecoveryPlan;
  /** The binlogs of the plan's first `files.length` steps ({@link fetchSegments}), which are replayed. */
  readonly files: readonly string[];
  /** The server's socket. */
  readonly socket: string;
  readonly signal?: AbortSignal | undefined;
}

/** Where {@link replaySteps} left the server. */
export interface ReplayedState {
  /** The GTID position reached (MariaDB gtid_binlog_pos, MySQL gtid_executed). */
  readonly gtid: string;
  /** MariaDB: the binlog state reached. */
  readonly binlogState?: string;
  /** How long the replay itself took. */
  readonly ms: number;
}

/**
 * On a throwaway server opened on a restored snapshot with `scratchServerCnf(…, { replay })` from
 * {@link prepareReplay}, connected as the local admin: sets its GTID state to the snapshot's, then applies
 * each step's file from what is applied up to the step's stop, stopping at the first that fails: MariaDB as
 * relay logs by the SQL thread ({@link relayRange}; `RESET SLAVE ALL` at the end), MySQL through
 * `mysqlbinlog | mysql`.
 *
 * @returns The server's GTID state afterwards.
 * @throws {ReplayError} `Cannot replay archived binlog KEY: …`, its `fault` naming the step and the point
 *   replayed before it.
 */
export async function replaySteps(db: MysqlClient, o: ReplayStepsOptions): Promise<ReplayedState> {
  const { manifest, plan, files, signal } = o;
  const flavour = manifest.flavour;
  const server = new ServerOperator(db, flavour);
  await server.startReplicationAfter(manifest.gtid, flavour === "mariadb" ? plan.snapshot.state : undefined, {
    signal,
  });
  const started = performance.now();
  for (const [i, step] of plan.steps.slice(0, files.length).entries()) {
    try {
      if (flavour === "mariadb") await applyAsRelayLog(server, step, files[i], i, o);
      else await applyPlain(flavour, step, files[i], o);
    } catch (e) {
      if (signal?.aborted) throw e;
      const reached = i === 0 ? step.after : plan.steps[i - 1].segment.endState;
      const problem = `Cannot replay archived binlog ${step.segment.key}: ${
        e instanceof CommandFailedError ? e.message : errorMessage(e)
      }`;
      throw new ReplayError(problem, { cause: e, fault: { step: i, reached, problem } });
    }
  }
  if (flavour === "mariadb") await server.resetReplicaAll({ signal });
  const ms = performance.now() - started;
  const state = await server.gtidState({ signal });
  return flavour === "mariadb"
    ? { gtid: state.binlogPos ?? "", binlogState: state.executed, ms }
    : { gtid: state.executed, ms };
}

/** `mariadb-binlog | mariadb` (`mysqlbinlog | mysql`) for one step. */
async function applyPlain(
  flavour: Flavour,
  step: ReplayStep,
  file: string,
  o: ReplayStepsOptions,
): Promise<void> {
  await pipeline([{ argv: readerCommand(flavour, file, step) }, { argv: clientCommand(flavour, o.socket) }], {
    ...(o.signal ? { signal: o.signal } : {}),
  });
}

/** The port CHANGE MASTER names: the server has no networking and no receiver thread ever starts. */
const NO_SOURCE_PORT = 1;

/** Applies step `i`'s file, relay log {@link relayLogName}(i), with the SQL thread up to the step's stop. */
async function applyAsRelayLog(
  server: ServerOperator,
  step: ReplayStep,
  file: string,
  i: number,
  o: ReplayStepsOptions,
): Promise<void> {
  const { signal } = o;
  const transactions: ScannedTransaction[] = [];
  const f = await Deno.open(file);
  await scanBinlog(f.readable, { onTransaction: (t) => transactions.push(t), ...(signal ? { signal } : {}) });
  const range = relayRange(transactions, step);
  if (range.kind === "none") return;
  if (range.kind === "scattered") {
    log.info(
      "Archived binlog {key}: its transactions up to {until} are not one byte range, replaying it plainly",
      {
        key: step.segment.key,
        until: step.until ?? "",
      },
    );
    return await applyPlain("mariadb", step, file, o);
  }
  const relayFile = relayLogName(i);
  await server.applyRelayLog(
    {
      relayFile,
      relayPos: range.start,
      sourceFile: step.segment.file,
      sourcePos: range.start,
      port: NO_SOURCE_PORT,
    },
    range.end,
    { signal },
  );
  for (let wait = 5;; wait = Math.min(wait * 2, 100)) {
    const st = await server.replicaStatus({ signal });
    if (st === undefined) throw new Error("the server lost its replication settings while applying it");
    if (!st.sqlRunning) {
      if (st.lastSqlError !== "") {
        throw new Error(`the SQL thread stopped: ${st.lastSqlError.replace(/\s+/g, " ").trim()}`);
      }
      const at = `${(st.relayLogFile ?? "").replace(/^.*\//, "")}:${st.relayLogPos ?? 0}`;
      if (at !== `${relayFile}:${range.end}`) {
        throw new Error(
          `the SQL thread stopped at ${at}, not at ${relayFile}:${range.end} (after ${range.last})`,
        );
      }
      return;
    }
    await delay(wait, signal ? { signal } : {});
  }
}
