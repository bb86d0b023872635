/**
 * Snapshot retention: which snapshots a store keeps and which it deletes (a pure plan over plain data), and the
 * pruning that carries the plan out.
 *
 * The rules, in order:
 * 1. a snapshot named as the last one (Consul's LAST_BACKUP_KEY) is never deleted, whatever its age or state;
 * 2. the newest `retainCount` complete snapshots are kept, and, if `retainAgeMs` is set, every complete snapshot
 *    newer than that; older complete snapshots are deleted;
 * 3. an incomplete snapshot (a data object without a manifest: a backup that failed or was killed before its
 *    manifest was written) is deleted once it is older than `incompleteGraceMs` (24 h by default), so that an
 *    upload in progress is never touched (S3 dates a multipart upload from its start, so the grace is long);
 * 4. an orphaned manifest (its data object is gone) is deleted after the same grace: nothing can restore it;
 * 5. an unusable snapshot (a manifest that cannot be read, or whose data object is of another size) is kept and
 *    reported, never deleted automatically: it may be evidence of a store problem an operator should see.
 *
 * Only keys ending in `.xbstream.zst` or `.manifest.json` are considered; anything else in the store is left
 * alone. A snapshot is deleted manifest first, so an interrupted deletion leaves an incomplete snapshot that the
 * next pass removes, never a manifest that names missing data.
 *
 * The binlog archive (`binlogs/`, src/binlog/segment.ts) is pruned with the snapshots: an archived binlog goes
 * once no snapshot left in the store needs it ({@link prunableBinlogs}), index entry first (it is the
 * segment's commit marker: an interrupted deletion leaves a data object without an index entry, which nothing
 * reads, never an index entry that names missing data).
 *
 * @module
 */
import { getLogger } from "@logtape/logtape";
import type { BackupConfig } from "../config.ts";
import type { ObjectInfo, SnapshotStore } from "../storage/store.ts";
import { CorruptSnapshotError } from "./errors.ts";
import {
  clusterPrefix,
  DATA_SUFFIX,
  type Manifest,
  MANIFEST_SUFFIX,
  ofCluster,
  parseManifest,
} from "./manifest.ts";
import { errorMessage } from "../text.ts";
import type { Flavour } from "../mysql/flavour.ts";
import { listSegments } from "../binlog/catalog.ts";
import { prunableSegments, snapshotPoint } from "../binlog/plan.ts";
import { archivePrefix, indexKeyOf, type Segment } from "../binlog/segment.ts";

const log = getLogger(["autopilot", "retention"]);

/** How long an incomplete snapshot is left alone by default: 24 hours. */
export const DEFAULT_INCOMPLETE_GRACE_MS = 24 * 3_600_000;

/**
 * An archived binlog's data object without its index entry is an upload that never finished once it is older
 * than this: an archiving run ends before BINLOG_ARCHIVE_INTERVAL (at most 1 d) is over (its deadline), so no
 * upload lasts a day; twice that is left.
 */
export const ORPHANED_BINLOG_GRACE_MS = 2 * 24 * 3_600_000;

/** Manifests larger than this are not manifests (as in `listSnapshots()`). */
const MAX_MANIFEST_BYTES = 64 * 1024;

/**
 * What a store holds under one snapshot name:
 * - `complete`: a valid manifest and its data object, of the size the manifest states;
 * - `incomplete`: a data object without a manifest (failed, killed, or still uploading);
 * - `orphaned`: a valid manifest whose data object is missing;
 * - `invalid`: a manifest that cannot be read or parsed, names another snapshot, or describes a data object of
 *   another size.
 */
export type SnapshotState = "complete" | "incomplete" | "orphaned" | "invalid";

/** The plain data {@link planRetention} decides over. */
export interface RetentionCandidate {
  /** The snapshot's name (its keys without their suffix). */
  readonly name: string;
  readonly state: SnapshotState;
  /** When it was taken: the manifest's `createdAt`, else the modification time of what is stored. */
  readonly time: Date;
}

/** One snapshot as found in a store. */
export interface StoredSnapshot extends RetentionCandidate {
  /** The parsed manifest (`complete` and `orphaned` snapshots). */
  readonly manifest?: Manifest;
  /** Size of the data object in bytes, if it exists. */
  readonly size?: number;
  /** The keys the store holds for it, manifest first. */
  readonly keys: readonly string[];
  /** What is wrong with it, for every state but `complete`. */
  readonly problem?: string;
}

/** What to keep. */
export interface RetentionPolicy {
  /** Keep at least the newest N complete snapshots (at least 1). */
  readonly retainCount: number;
  /** Also keep every complete snapshot newer than this. @default unset: count only */
  readonly retainAgeMs?: number;
  /** Delete incomplete snapshots and orphaned manifests only once older than this. @default 24 h */
  readonly incompleteGraceMs?: number;
  /**
   * Only snapshots whose name starts with this are this cluster's (BACKUP_NAME up to its first directive):
   * another cluster's in a shared store are neither counted nor deleted. @default every snapshot
   */
  readonly namePrefix?: string;
}

/** One decision of a {@link RetentionPlan}, with its reason in words. */
export interface RetentionDecision<T extends RetentionCandidate> {
  readonly snapshot: T;
  /** e.g. `one of the newest 7`, `older than the newest 7`, `the last snapshot (protected)`. */
  readonly reason: string;
}

/** Which snapshots to keep and which to delete; each list newest first. */
export interface RetentionPlan<T extends RetentionCandidate> {
  readonly keep: readonly RetentionDecision<T>[];
  readonly delete: readonly RetentionDecision<T>[];
}

/**
 * Decides which snapshots to keep and which to delete (see the module's rules). Pure: no I/O, no clock.
 *
 * @param snapshots Everything the store holds, in any order.
 * @param policy How many and how recent to keep.
 * @param now The current time.
 * @param protectedNames Names never to delete (the snapshot Consul names as the last).
 * @returns The plan; every snapshot appears in exactly one list.
 * @throws {RangeError} for a `retainCount` below 1, or a negative age or grace.
 */
export function planRetention<T extends RetentionCandidate>(
  snapshots: readonly T[],
  policy: RetentionPolicy,
  now: Date,
  protectedNames: readonly string[] = [],
): RetentionPlan<T> {
  const { retainCount, retainAgeMs } = policy;
  const grace = policy.incompleteGraceMs ?? DEFAULT_INCOMPLETE_GRACE_MS;
  if (!Number.isSafeInteger(retainCount) || retainCount < 1) {
    throw new RangeError(
      `Cannot plan retention as 'retainCount' must be an integer of at least 1: current value is ${retainCount}`,
    );
  }
  for (const [field, value] of [["retainAgeMs", retainAgeMs], ["incompleteGraceMs", grace]] as const) {
    if (value !== undefined && !(value >= 0)) {
      throw new RangeError(
        `Cannot plan retention as '${field}' must be a duration of 0 or more: current value is ${value}`,
      );
    }
  }
  const keep: RetentionDecision<T>[] = [];
  const remove: RetentionDecision<T>[] = [];
  const protect = new Set(protectedNames);
  let completeSeen = 0;
  for (const s of [...snapshots].sort(newestFirst)) {
    const age = now.getTime() - s.time.getTime();
    if (policy.namePrefix !== undefined && !ofCluster(policy.namePrefix, s.name)) {
      keep.push({
        snapshot: s,
        reason: `not this cluster's (its name does not start with ${policy.namePrefix})`,
      });
      continue;
    }
    if (protect.has(s.name)) {
      keep.push({ snapshot: s, reason: "the last snapshot (protected)" });
      if (s.state === "complete") completeSeen++;
      continue;
    }
    switch (s.state) {
      case "complete": {
        completeSeen++;
        if (completeSeen <= retainCount) {
          keep.push({ snapshot: s, reason: `one of the newest ${retainCount}` });
        } else if (retainAgeMs !== undefined && age < retainAgeMs) {
          keep.push({ snapshot: s, reason: `newer than ${formatDuration(retainAgeMs)}` });
        } else {
          const also = retainAgeMs === undefined ? "" : ` and not newer than ${formatDuration(retainAgeMs)}`;
          remove.push({ snapshot: s, reason: `older than the newest ${retainCount}${also}` });
        }
        break;
      }
      case "incomplete":
      case "orphaned": {
        const what = s.state === "incomplete" ? "data without a manifest" : "a manifest without its data";
        if (age >= grace) {
          remove.push({ snapshot: s, reason: `${what}, older than ${formatDuration(grace)}` });
        } else {
          keep.push({
            snapshot: s,
            reason: `${what}, newer than ${formatDuration(grace)} (maybe still being written)`,
          });
        }
        break;
      }
      case "invalid":
        keep.push({ snapshot: s, reason: "unusable: left for an operator to look at" });
        break;
      default: {
        const never: never = s.state;
        throw new RangeError(`Cannot plan retention for a snapshot in state '${never}'`);
      }
    }
  }
  return { keep, delete: remove };
}

/**
 * Every snapshot a store holds, complete or not, found with one listing. Each manifest is read and checked as
 * `listSnapshots()` does (parsed, names its own snapshot, its data object exists with the size it states).
 *
 * @param store The store.
 * @param signal Stops reading manifests when aborted.
 * @returns The snapshots, newest first (by time, then by name).
 * @throws {Error} whatever the store throws when listing or reading fails.
 */
export async function inventorySnapshots(
  store: SnapshotStore,
  signal?: AbortSignal,
): Promise<StoredSnapshot[]> {
  const byName = new Map<string, { data?: ObjectInfo; manifest?: ObjectInfo }>();
  for await (const o of store.list()) {
    const [suffix, slot] = o.key.endsWith(DATA_SUFFIX)
      ? [DATA_SUFFIX, "data" as const]
      : o.key.endsWith(MANIFEST_SUFFIX)
      ? [MANIFEST_SUFFIX, "manifest" as const]
      : [undefined, undefined];
    if (suffix === undefined) continue;
    const name = o.key.slice(0, -suffix.length);
    const entry = byName.get(name) ?? {};
    entry[slot] = o;
    byName.set(name, entry);
  }
  const found: StoredSnapshot[] = [];
  for (const [name, { data, manifest: m }] of byName) {
    signal?.throwIfAborted();
    const size = data === undefined ? {} : { size: data.size };
    if (m === undefined) {
      found.push({
        name,
        state: "incomplete",
        time: data!.modified,
        keys: [data!.key],
        ...size,
        problem: "its data object has no manifest (the backup did not finish, or is still being written)",
      });
      continue;
    }
    const keys = data === undefined ? [m.key] : [m.key, data.key];
    const invalid = (problem: string, time = m.modified): StoredSnapshot => ({
      name,
      state: "invalid",
      time,
      keys,
      ...size,
      problem,
    });
    if (m.size > MAX_MANIFEST_BYTES) {
      found.push(
        invalid(`its manifest is ${m.size} bytes, more than a manifest can be (${MAX_MANIFEST_BYTES})`),
      );
      continue;
    }
    let manifest: Manifest;
    try {
      manifest = parseManifest(await new Response(await store.get(m.key, signal)).text(), m.key);
    } catch (e) {
      if (e instanceof CorruptSnapshotError) {
        found.push(invalid(e.problem));
        continue;
      }
      throw e;
    }
    const time = new Date(manifest.createdAt);
    if (manifest.name !== name) {
      found.push(invalid(`its manifest names the snapshot '${manifest.name}'`, time));
    } else if (data === undefined) {
      found.push({
        name,
        state: "orphaned",
        time,
        manifest,
        keys,
        problem: `its data object '${manifest.key}' is missing`,
      });
    } else if (data.size !== manifest.size) {
      found.push({
        ...invalid(`its data object is ${data.size} bytes but the manifest says ${manifest.size}`, time),
        manifest,
      });
    } else {
      found.push({ name, state: "complete", time, manifest, keys, size: data.size });
    }
  }
  return found.sort(newestFirst);
}

/** An archived binlog retention deletes, and why. */
export interface BinlogDeletion {
  readonly segment: Segment;
  /** Its index entry's binlog is missing or of another size (`listSegments`' `onLost`). */
  readonly lost: boolean;
  readonly reason: string;
}

/**
 * Which archived binlogs no retained snapshot needs (`prunableSegments`, per flavour): for every snapshot kept,
 * everything the binlog holds is in the snapshot already, or it lies on another history. Index entries whose
 * binlog is lost follow the same rule. With no snapshot of a flavour kept, no binlog of that flavour goes. Pure.
 *
 * @param retained Every snapshot that stays in the store: kept by the plan (another cluster's too) or whose
 *   deletion failed.
 * @param segments The archive's complete segments.
 * @param lost Index entries whose binlog is missing or damaged.
 * @returns What to delete, oldest first (by creation time, then key).
 */
export function prunableBinlogs(
  retained: readonly Manifest[],
  segments: readonly Segment[],
  lost: readonly Segment[] = [],
): BinlogDeletion[] {
  const out: BinlogDeletion[] = [];
  const lostKeys = new Set(lost.map((s) => s.key));
  for (const flavour of ["mariadb", "mysql"] as const satisfies readonly Flavour[]) {
    const points = retained.filter((m) => m.flavour === flavour).map(snapshotPoint);
    const candidates = [...segments, ...lost].filter((s) => s.flavour === flavour);
    if (points.length === 0 || candidates.length === 0) continue;
    const oldest = points.reduce((a, b) => (b.createdAt < a.createdAt ? b : a));
    for (const segment of prunableSegments(flavour, points, candidates)) {
      const isLost = lostKeys.has(segment.key);
      out.push({
        segment,
        lost: isLost,
        reason: `${
          isLost ? "its binlog is lost, and " : ""
        }no snapshot kept needs it (the oldest of the ${points.length} kept, ${oldest.name}, holds everything it does, or it lies on another history)`,
      });
    }
  }
  return out.sort((a, b) =>
    a.segment.createdAt < b.segment.createdAt
      ? -1
      : a.segment.createdAt > b.segment.createdAt
      ? 1
      : a.segment.key < b.segment.key
      ? -1
      : a.segment.key > b.segment.key
      ? 1
      : 0
  );
}

/** What {@link pruneSnapshots} did. */
export interface PruneResult {
  /** The plan it carried out. */
  readonly plan: RetentionPlan<StoredSnapshot>;
  /** Names of the snapshots deleted. */
  readonly deleted: readonly string[];
  /** Snapshots that could not be deleted (or only in part), with the store's error. */
  readonly failed: readonly {
    readonly name: string;
    readonly keys: readonly string[];
    readonly error: string;
  }[];
  /** Data keys of the archived binlogs deleted (index entry and data). */
  readonly binlogsDeleted: readonly string[];
  /** Archived binlogs that could not be deleted (or only in part), with the store's error. */
  readonly binlogsFailed: readonly { readonly key: string; readonly error: string }[];
  /** Why the binlog archive was not pruned at all (it could not be listed), if it was not. */
  readonly binlogsError?: string;
}

/** Options of {@link pruneSnapshots}. */
export interface PruneOptions {
  /** Names never to delete: the snapshot Consul names as the last one. @default none */
  readonly protect?: string | readonly string[];
  /** The current time. @default new Date() */
  readonly now?: Date;
  /** Stops before the next deletion when aborted. */
  readonly signal?: AbortSignal;
}

/**
 * Applies retention to a store: lists it once, plans ({@link planRetention}) and deletes what the plan says,
 * each snapshot's manifest before its data; then the archived binlogs no snapshot left needs
 * ({@link prunableBinlogs}), each index entry before its data. A deletion that fails is logged and reported in
 * the result, and the others go on; it never throws for one. A binlog archive that cannot be listed is logged
 * and reported too (the snapshots are pruned already).
 *
 * @param store The store.
 * @param policy What to keep ({@link retentionPolicy} builds it from the configuration).
 * @param opts The protected name(s), the time, a signal.
 * @returns The plan, what was deleted, and what could not be.
 * @throws {Error} whatever the store throws when listing it or reading a manifest fails (nothing is deleted
 *   then), `RangeError` for an invalid policy, or the signal's reason when aborted.
 */
export async function pruneSnapshots(
  store: SnapshotStore,
  policy: RetentionPolicy,
  opts: PruneOptions = {},
): Promise<PruneResult> {
  const now = opts.now ?? new Date();
  const protect = opts.protect === undefined ? [] : typeof opts.protect === "string" ? [opts.protect] : [
    ...opts.protect,
  ];
  const snapshots = await inventorySnapshots(store, opts.signal);
  const plan = planRetention(snapshots, policy, now, protect);
  for (const { snapshot, reason } of plan.keep) {
    if (snapshot.state === "invalid") {
      log.warn(
        "Snapshot {name} in the {kind} store is unusable ({problem}): not deleted; delete it by hand",
        {
          name: snapshot.name,
          kind: store.kind,
          problem: snapshot.problem,
        },
      );
    } else {
      log.debug("Keeping snapshot {name}: {reason}", { name: snapshot.name, reason });
    }
  }
  const deleted: string[] = [];
  const failed: { name: string; keys: readonly string[]; error: string }[] = [];
  for (const { snapshot, reason } of plan.delete) {
    opts.signal?.throwIfAborted();
    try {
      await store.delete(snapshot.keys);
      deleted.push(snapshot.name);
      log.info("Deleted snapshot {name} from the {kind} store: {reason}", {
        name: snapshot.name,
        kind: store.kind,
        reason,
      });
    } catch (e) {
      const error = errorMessage(e);
      failed.push({ name: snapshot.name, keys: snapshot.keys, error });
      log.error("Cannot delete snapshot {name} from the {kind} store ({reason}): {error}", {
        name: snapshot.name,
        kind: store.kind,
        reason,
        error,
      });
    }
  }
  // What stays: every snapshot kept (another cluster's and an unusable one too: an operator may mend it), and
  // those whose deletion failed. Only an orphaned manifest (no data) needs no binlog.
  const undeleted = new Set(failed.map((f) => f.name));
  const retained = [
    ...plan.keep.map((d) => d.snapshot),
    ...plan.delete.map((d) => d.snapshot).filter((s) => undeleted.has(s.name)),
  ].filter((s) => s.state !== "orphaned" && s.manifest !== undefined).map((s) => s.manifest!);
  // The binlog archive pruned is this cluster's, against this cluster's snapshots.
  const cluster = policy.namePrefix ?? "";
  return {
    plan,
    deleted,
    failed,
    ...(await pruneBinlogs(
      store,
      retained.filter((m) => ofCluster(cluster, m.name)),
      cluster,
      now,
      opts.signal,
    )),
  };
}

/** Deletes the archived binlogs no retained snapshot needs; see {@link pruneSnapshots}. */
async function pruneBinlogs(
  store: SnapshotStore,
  retained: readonly Manifest[],
  cluster: string,
  now: Date,
  signal: AbortSignal | undefined,
): Promise<Pick<PruneResult, "binlogsDeleted" | "binlogsFailed" | "binlogsError">> {
  const lost: Segment[] = [];
  let segments: Segment[];
  const listing = new Map<string, ObjectInfo>();
  try {
    for await (const o of store.list(archivePrefix(cluster))) listing.set(o.key, o);
    segments = await listSegments(store, {
      cluster,
      onLost: (s) => lost.push(s),
      ...(signal ? { signal } : {}),
    }, listing);
  } catch (e) {
    signal?.throwIfAborted();
    const error = errorMessage(e);
    log.error(
      "Cannot list the binlog archive in the {kind} store: {error}; its binlogs stay until the next run",
      {
        kind: store.kind,
        error,
      },
    );
    return { binlogsDeleted: [], binlogsFailed: [], binlogsError: error };
  }
  const binlogsDeleted: string[] = [];
  const binlogsFailed: { key: string; error: string }[] = [];
  for (const { segment, reason } of prunableBinlogs(retained, segments, lost)) {
    signal?.throwIfAborted();
    try {
      // The index entry first: it is the commit marker; a data object alone is never read.
      await store.delete([indexKeyOf(segment.key)!]);
      await store.delete([segment.key]);
      binlogsDeleted.push(segment.key);
      log.info("Deleted archived binlog {key} from the {kind} store: {reason}", {
        key: segment.key,
        kind: store.kind,
        reason,
      });
    } catch (e) {
      const error = errorMessage(e);
      binlogsFailed.push({ key: segment.key, error });
      log.error("Cannot delete archived binlog {key} from the {kind} store ({reason}): {error}", {
        key: segment.key,
        kind: store.kind,
        reason,
        error,
      });
    }
  }
  // Data objects no index entry names, older than any upload lasts: uploads that never finished.
  for (const o of listing.values()) {
    const index = indexKeyOf(o.key);
    if (index === undefined || listing.has(index)) continue;
    if (now.getTime() - o.modified.getTime() <= ORPHANED_BINLOG_GRACE_MS) continue;
    signal?.throwIfAborted();
    const reason = `no index entry names it and it is older than ${
      formatDuration(ORPHANED_BINLOG_GRACE_MS)
    } (an upload that never finished)`;
    try {
      await store.delete([o.key]);
      binlogsDeleted.push(o.key);
      log.info("Deleted archived binlog {key} from the {kind} store: {reason}", {
        key: o.key,
        kind: store.kind,
        reason,
      });
    } catch (e) {
      const error = errorMessage(e);
      binlogsFailed.push({ key: o.key, error });
      log.error("Cannot delete archived binlog {key} from the {kind} store ({reason}): {error}", {
        key: o.key,
        kind: store.kind,
        reason,
        error,
      });
    }
  }
  return { binlogsDeleted, binlogsFailed };
}

/**
 * The retention policy the configuration sets (BACKUP_RETAIN_COUNT, BACKUP_RETAIN_AGE).
 *
 * @param backup The `backup` part of the configuration.
 * @returns The policy, with the default grace for incomplete snapshots.
 */
export function retentionPolicy(backup: BackupConfig): RetentionPolicy {
  const prefix = clusterPrefix(backup.name);
  return {
    retainCount: backup.retainCount,
    ...(prefix !== "" ? { namePrefix: prefix } : {}),
    ...(backup.retainAgeMs !== undefined ? { retainAgeMs: backup.retainAgeMs } : {}),
  };
}

/**
 * A duration as the configuration spells it: `24h`, `168h`, `1h30m`, `1m30s`, `500ms`.
 *
 * @param ms Milliseconds, 0 or more.
 * @returns The exact spelling in h, m, s (and ms for a remainder).
 */
export function formatDuration(ms: number): string {
  if (ms === 0) return "0s";
  const units: [string, number][] = [["h", 3_600_000], ["m", 60_000], ["s", 1000]];
  let rest = Math.round(ms);
  let out = "";
  for (const [unit, size] of units) {
    const n = Math.floor(rest / size);
    if (n > 0) out += `${n}${unit}`;
    rest -= n * size;
  }
  return rest > 0 ? `${out}${rest}ms` : out;
}

function newestFirst(a: RetentionCandidate, b: RetentionCandidate): number {
  const d = b.time.getTime() - a.time.getTime();
  return d !== 0 ? d : a.name < b.name ? 1 : a.name > b.name ? -1 : 0;
}
