/**
 * The cluster's keys in Consul: every key name autopilot uses, the parse and format of every value kept
 * there, and the one read a pass makes of them. No other module names a key or parses a value.
 *
 * Keys (defaults; each can be renamed by its variable, see src/config.ts):
 * - `SERVICE_NAME-primary` (PRIMARY_KEY): the primary lock, held by the primary's session; its value is a
 *   {@link PrimaryRecord}, kept after the session ends ("release" behaviour).
 * - `SERVICE_NAME-failover-lock` (FAILOVER_LOCK_KEY): held while a failover or a switchover runs; its value
 *   is a {@link FailoverRecord}, kept as the record of the last one.
 * - `SERVICE_NAME-failover-paused` (FAILOVER_PAUSE_KEY): exists ⇒ no automatic failover.
 * - `SERVICE_NAME-members/NODE`: each node's {@link MemberRecord}, held by its session.
 * - `SERVICE_NAME-cluster`: the cluster's identity ({@link ClusterIdentityRecord}), written once by the first
 *   primary (or the one that recovered the cluster after Consul lost its keys) and never changed.
 * - `SERVICE_NAME-backup-running`, `-last-backup`, `-last-binlog`, `-last-verified`: the snapshot keys.
 *
 * `ClusterKv` is the interface the HA actions take (unit tests pass a fake); `ConsulClusterKv` is the real one
 * over a {@link ConsulStore}.
 *
 * Every default key starts with `SERVICE_NAME-`, so {@link ClusterKv.read} gets them all with one recursive
 * read of that prefix and picks its keys out by their exact names (another service whose name starts the same,
 * `mysql-shop` beside `mysql`, shares the prefix but none of the names). A key an operator renamed to a name
 * outside the prefix (a legacy `PRIMARY_KEY`) costs one more `get`, made alongside.
 *
 * The snapshot manifest in LAST_BACKUP_KEY is written and read here as text; src/snapshots.ts parses it, so
 * that a health pass loads no backup code (tests/unit/imports_test.ts).
 *
 * @module
 */
import type { Config } from "./config.ts";
import { type ConsulStore, type KvEntry, SessionGoneError } from "./consul.ts";
import type { MemberRecord } from "./ha/failover_plan.ts";
import type { Manifest } from "./backup/manifest.ts";

export type { MemberRecord };

/** The primary lock's value: who holds (or last held) the primary role, and where to reach it. */
export interface PrimaryRecord {
  readonly node: string;
  readonly address: string;
  readonly port: number;
  /**
   * Set once the holder has applied everything it received and turned writable; until then nobody follows it
   * (a follower asking for transactions it has not applied yet would be refused).
   */
  readonly ready?: boolean;
  /**
   * FAILSAFE_MODE: the members whose replication this primary checks while it cannot reach Consul, as its last
   * heartbeat published them. Only these may take a silent primary's lock over (src/ha/takeover.ts): their
   * stopping replicating from it is what makes its failsafe check fail. Absent: written by a version (or a
   * configuration) without failsafe mode, whose lease never outlives its heartbeat.
   */
  readonly checks?: readonly string[];
  /**
   * The holder made itself unwritable and said so: it gave the lock up read-only or with its mysqld gone
   * (actions.ts `fence`), or its pre-stop shut mysqld down cleanly while it still held the lock
   * (hooks/pre_stop.ts). Its server restarts read-only and turns writable only after this node's heartbeat or
   * a new appointment rewrites the record (which drops the mark), so while the mark stands, an old primary that
   * does not answer, or refuses the connection, is out of the way (src/ha/takeover.ts).
   */
  readonly fenced?: boolean;
  /**
   * With `fenced` from pre-stop: what the node had executed when it stopped (read-only by then). A clean stop
   * is no accepted loss: a failover never promotes a node that lacks these (src/ha/failover_plan.ts).
   */
  readonly executed?: string;
}

/** The primary lock as read from Consul. */
export interface PrimaryLock {
  /** The record in the key (kept after the holder's session ends: "release" behaviour). */
  readonly record?: PrimaryRecord;
  /** The session holding the lock now; absent when nobody holds it. */
  readonly session?: string;
  /**
   * The key's ModifyIndex, when it exists: it moves with every write, so the holder's rewrite of its record
   * each pass (its heartbeat, src/ha/heartbeat.ts) is seen by every other node as a new index.
   */
  readonly modifyIndex?: number;
}

/** The value of the failover lock: the attempt running now, or the last one that moved the role. */
export interface FailoverRecord {
  /** The node that ran it. */
  readonly node: string;
  /** When it started (epoch ms). */
  readonly at: number;
  /** A failover: the primary that was lost. */
  readonly failedPrimary?: string;
  /** `autopilot switchover` or pre-stop's hand-over. */
  readonly switchover?: boolean;
  /** The node given the primary role, once it has been. */
  readonly promoted?: string;
  /** A whole-cluster recovery after Consul lost its keys (src/ha/recovery.ts): no primary was lost. */
  readonly recovery?: boolean;
}

/** The failover lock as read: who holds it now (if anyone) and the record in it. */
export interface FailoverLock {
  readonly session?: string;
  readonly record?: FailoverRecord;
  /** The raw value, kept as found when an attempt moves nothing. */
  readonly value?: string;
  /** For a check-and-set take. */
  readonly modifyIndex: number;
}

/**
 * The value of `SERVICE_NAME-cluster`: the identity every datadir of this cluster carries (src/mysql/identity.ts),
 * the node that published it and when (epoch ms).
 */
export interface ClusterIdentityRecord {
  readonly id: string;
  readonly node: string;
  readonly at: number;
}

/** A member's record and the session holding it; `session` is absent for a departed member. */
export interface MemberEntry {
  readonly record: MemberRecord;
  readonly session?: string;
}

/** A live member: its key is held by a session. */
export type LiveMember = MemberEntry & { readonly session: string };

/** LAST_VERIFIED_KEY: the last snapshot a replica verified (BACKUP_VERIFY), and how that went. */
export interface VerificationRecord {
  /** The snapshot's name. */
  readonly name: string;
  /**
   * Whether it restored, opened and passed CHECK TABLE on every table, and the archived binlogs after it
   * replayed to the archive's end.
   */
  readonly ok: boolean;
  /** The node that verified it. */
  readonly node: string;
  /** When the verification ended (ISO 8601). */
  readonly at: string;
  /** Why it failed, when it did. */
  readonly error?: string;
  /** How many archived binlogs were replayed after the snapshot (absent: the snapshot itself failed). */
  readonly binlogs?: number;
  /** The GTID position that replay reached (the archive's end when `ok`; the last point reached when not). */
  readonly replayedTo?: string;
}

/**
 * `SERVICE_NAME-binlog-archive`: how far the binlog archive reaches, written by the primary's archiver after
 * each run (src/binlog/archiver.ts), read by the next run (on this or a new primary), `autopilot status` and
 * the snapshot schedule (a gap makes a snapshot due).
 */
export interface ArchiveRecord {
  /** The node, server_id and file of the newest archived binlog, and when the server created that file. */
  readonly node: string;
  readonly serverId: number;
  readonly file: string;
  readonly createdAt: string;
  /** The binlog state the archive holds along that primary's history (the file's end state). */
  readonly endState: string;
  /** Unix second of the newest archived transaction. */
  readonly lastTime?: number;
  /** When the archive last held every transaction the primary had executed (ISO 8601). */
  readonly caughtUpAt: string;
  /** At the last run: how old the oldest transaction not yet archived was (seconds), 0 when none was. */
  readonly lagSeconds: number;
  /** The newest gap: the archive lacks transactions after `after` up to `resumes` (positions), seen `at`. */
  readonly gap?: { readonly after: string; readonly resumes: string; readonly at: string };
}

/** BACKUP_LOCK_KEY's value while a node holds it: who, for what, since when. */
export interface BackupLockRecord {
  readonly node: string;
  readonly job: "snapshot" | "verify";
  /** ISO 8601. */
  readonly startedAt: string;
}

/** Everything a pass reads from Consul's keys, from one recursive read. */
export interface ClusterView {
  readonly primary: PrimaryLock;
  readonly failoverLock: FailoverLock;
  readonly failoverPaused: boolean;
  /** Live members (their key held by a session). */
  readonly live: readonly (MemberEntry & { readonly session: string })[];
  /** The last records of members whose session has ended. */
  readonly departed: readonly MemberRecord[];
  /** Whether LAST_BACKUP_KEY names a snapshot (the manifest itself is src/snapshots.ts's to parse). */
  readonly snapshotPublished: boolean;
  /** Every member record, held or not, in key order (`live` and `departed` together). */
  readonly members: readonly MemberEntry[];
  /** FAILOVER_PAUSE_KEY's value when the key exists (an operator's note; often empty). */
  readonly failoverPause?: string;
  /** LAST_BACKUP_KEY's value, a manifest as text, when it is not empty (src/snapshots.ts parses it). */
  readonly lastBackup?: string;
  /** LAST_BINLOG_KEY's value when the key exists: the primary's binlog file at the last snapshot. */
  readonly lastBinlog?: string;
  /** LAST_VERIFIED_KEY, when it holds a verification record. */
  readonly lastVerified?: VerificationRecord;
  /** `SERVICE_NAME-cluster`, when it holds an identity record. */
  readonly cluster?: ClusterIdentityRecord;
  /** `SERVICE_NAME-binlog-archive`, when it holds an archive record. */
  readonly archive?: ArchiveRecord;
}

/** The name of every key, from the configuration. */
export interface ClusterKeys {
  /** What every default key starts with: `SERVICE_NAME-`. */
  readonly prefix: string;
  readonly primary: string;
  readonly failoverLock: string;
  readonly failoverPause: string;
  /** Member records are `members + NODE`: `SERVICE_NAME-members/`. */
  readonly members: string;
  readonly backupLock: string;
  readonly lastBackup: string;
  readonly lastBinlog: string;
  readonly lastVerified: string;
  /** The cluster's identity: `SERVICE_NAME-cluster`. */
  readonly cluster: string;
  /** How far the binlog archive reaches: `SERVICE_NAME-binlog-archive`. */
  readonly archive: string;
}

/** The cluster's keys, as the HA code uses them. Every method throws ConsulUnavailableError when Consul is down. */
export interface ClusterKv {
  /** The key names (for messages: which key says what). */
  readonly keys: ClusterKeys;
  /**
   * This node's session: renews `known` if Consul still has it, else creates one (SESSION_NAME, SESSION_TTL).
   * It holds the node's member record, and the primary lock when the node is appointed.
   */
  ensureSession(known: string | undefined): Promise<{ readonly id: string; readonly created: boolean }>;
  /** Renews this node's session; false when Consul no longer has it. */
  renewSession(id: string): Promise<boolean>;
  /** One recursive read of the cluster's keys. */
  read(): Promise<ClusterView>;
  /** The primary lock alone (a cheaper read when only it is needed). */
  primary(): Promise<PrimaryLock>;
  /**
   * Takes the primary lock for `session` with `record` (also: rewrites it, e.g. `ready`); false if held by another.
   * @throws {SessionGoneError} when the session does not exist.
   */
  acquirePrimary(session: string, record: PrimaryRecord): Promise<boolean>;
  /** Releases the primary lock held by `session`, leaving `record` in the key; nothing if it does not hold it. */
  releasePrimary(session: string, record: PrimaryRecord): Promise<void>;
  /**
   * The takeover of a stale holder: frees the primary lock from the session that held it when `found` was read,
   * keeping its record, only if the key has not been written since (its ModifyIndex is still `found`'s), in one
   * Consul transaction. The holder's session lives on (Consul 1.14's /txn cannot delete a session); its next
   * heartbeat fails, since it no longer holds the lock.
   *
   * @returns Whether the lock was freed; false when it moved (a heartbeat, a release) or is held by another.
   */
  takeOverPrimary(found: PrimaryLock): Promise<boolean>;
  /**
   * The holder's heartbeat: rewrites the primary lock with `record` for `session` only if the key is still as
   * it was read (`modifyIndex`), in one Consul transaction, so the rewrite moves its ModifyIndex and can never
   * retake a lock released meanwhile (a switchover handing it over).
   *
   * @returns Whether it was written; false when the key moved, another session holds it, or the session is gone.
   */
  heartbeatPrimary(session: string, record: PrimaryRecord, modifyIndex: number): Promise<boolean>;
  /** The failover lock alone (what {@link ClusterKv.acquireFailoverLock} takes `found` from). */
  failoverLock(): Promise<FailoverLock>;
  /**
   * Takes the failover lock if nobody holds it and its value is unchanged since `found` was read.
   * @throws {SessionGoneError} when the session does not exist.
   */
  acquireFailoverLock(session: string, record: FailoverRecord, found: FailoverLock): Promise<boolean>;
  /** Releases the failover lock, leaving `value` (a record, or the raw value found). */
  releaseFailoverLock(session: string, value: FailoverRecord | string): Promise<void>;
  /** Writes this node's member record under its session; false if the session is gone. */
  publishMember(session: string, record: MemberRecord): Promise<boolean>;
  /** Every member record, held or not, in key order (one read of the members' prefix). */
  members(): Promise<readonly MemberEntry[]>;
  /** LAST_BACKUP_KEY's manifest as text; undefined when the key is missing or empty. */
  lastBackup(): Promise<string | undefined>;
  /** LAST_BINLOG_KEY's value, if the key exists. */
  lastBinlog(): Promise<string | undefined>;
  /** Names `manifest` as the latest snapshot (LAST_BACKUP_KEY), then records `binlog` (LAST_BINLOG_KEY). */
  publishSnapshot(manifest: Manifest, binlog: string): Promise<void>;
  /** LAST_VERIFIED_KEY; a value that is not a verification record counts as none. */
  lastVerification(): Promise<VerificationRecord | undefined>;
  /** Writes LAST_VERIFIED_KEY. */
  recordVerification(record: VerificationRecord): Promise<void>;
  /** `SERVICE_NAME-binlog-archive`; a value that is not an archive record counts as none. */
  archiveRecord(): Promise<ArchiveRecord | undefined>;
  /**
   * `SERVICE_NAME-binlog-archive` with its ModifyIndex (0 when the key does not exist), for
   * {@link recordArchive}'s check-and-set.
   */
  archiveRecordEntry(): Promise<{ readonly record?: ArchiveRecord; readonly modifyIndex: number }>;
  /**
   * Writes `SERVICE_NAME-binlog-archive` only if the key has not been written since it was read with
   * ModifyIndex `modifyIndex` (0: only if it does not exist), so two archivers racing at a switchover never
   * overwrite each other's record with an older one.
   *
   * @returns false when the key changed meanwhile (nothing written).
   */
  recordArchive(record: ArchiveRecord, modifyIndex: number): Promise<boolean>;
  /**
   * Takes BACKUP_LOCK_KEY for `session`; false if another session holds it.
   * @throws {SessionGoneError} when the session does not exist.
   */
  acquireBackupLock(session: string, record: BackupLockRecord): Promise<boolean>;
  /** BACKUP_LOCK_KEY's value as found (who holds it, for a message); undefined when the key is missing. */
  backupLockHolder(): Promise<string | undefined>;
  /** Releases BACKUP_LOCK_KEY held by `session`, leaving it empty. */
  releaseBackupLock(session: string): Promise<void>;
  /**
   * Writes `SERVICE_NAME-cluster` if the key does not exist (check-and-set on its absence).
   *
   * @returns The record the key holds afterwards: `record`, or the one that was there (undefined if that one
   *   is not an identity record).
   */
  publishClusterIdentity(record: ClusterIdentityRecord): Promise<ClusterIdentityRecord | undefined>;
}

// --- key names --------------------------------------------------------------------------------------------

/** The key prefix of member records. */
export function membersPrefix(config: Pick<Config, "serviceName">): string {
  return `${config.serviceName}-members/`;
}

/** The key of the cluster's identity: `SERVICE_NAME-cluster`. */
export function clusterIdentityKey(config: Pick<Config, "serviceName">): string {
  return `${config.serviceName}-cluster`;
}

/** Every key's name, from SERVICE_NAME and the key variables. */
export function clusterKeys(config: Pick<Config, "serviceName" | "keys">): ClusterKeys {
  const k = config.keys;
  return Object.freeze({
    prefix: `${config.serviceName}-`,
    primary: k.primary,
    failoverLock: k.failoverLock,
    failoverPause: k.failoverPause,
    members: membersPrefix(config),
    backupLock: k.backupLock,
    lastBackup: k.lastBackup,
    lastBinlog: k.lastBinlog,
    lastVerified: k.lastVerified,
    cluster: clusterIdentityKey(config),
    archive: `${config.serviceName}-binlog-archive`,
  });
}

/** The keys {@link ClusterView} holds. */
function viewKeys(keys: ClusterKeys): string[] {
  return [
    keys.primary,
    keys.failoverLock,
    keys.failoverPause,
    keys.lastBackup,
    keys.lastBinlog,
    keys.lastVerified,
  ];
}

/**
 * The keys of the view that the recursive read of `keys.prefix` does not return (renamed outside it), each
 * read with one `get` of its own.
 */
export function keysOutsidePrefix(keys: ClusterKeys): string[] {
  return [...new Set(viewKeys(keys).filter((k) => !k.startsWith(keys.prefix)))];
}

// --- values -----------------------------------------------------------------------------------------------

function parseJson(value: string | undefined): unknown {
  if (value === undefined) return undefined;
  try {
    return JSON.parse(value);
  } catch {
    return undefined;
  }
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/**
 * A primary lock record as stored: `{node, address, port}`, and `ready: true` once it is. A heartbeat adds
 * `beat`, the index it replaces: Consul leaves the ModifyIndex as it is when a holder rewrites the very same
 * value, so each heartbeat's value must differ from the last (parsing ignores it).
 */
export function formatPrimaryRecord(r: PrimaryRecord, beat?: number): string {
  return JSON.stringify({
    node: r.node,
    address: r.address,
    port: r.port,
    ...(r.ready ? { ready: true } : {}),
    ...(r.checks === undefined ? {} : { checks: r.checks }),
    // Only with the mark: a wider object (a member record) has an `executed` of its own.
    ...(r.fenced ? { fenced: true, ...(r.executed === undefined ? {} : { executed: r.executed }) } : {}),
    ...(beat === undefined ? {} : { beat }),
  });
}

/** A primary lock value as a record; undefined for an empty or foreign value. */
export function parsePrimaryRecord(value: string | undefined): PrimaryRecord | undefined {
  const v = parseJson(value);
  if (
    !isObject(v) || typeof v.node !== "string" || typeof v.address !== "string" || !Number.isInteger(v.port)
  ) {
    return undefined;
  }
  return {
    node: v.node,
    address: v.address,
    port: v.port as number,
    ...(v.ready === true ? { ready: true } : {}),
    ...(Array.isArray(v.checks) && v.checks.every((c) => typeof c === "string")
      ? { checks: v.checks as string[] }
      : {}),
    ...(v.fenced === true
      ? { fenced: true, ...(typeof v.executed === "string" ? { executed: v.executed } : {}) }
      : {}),
  };
}

/**
 * Reads the primary lock from its key.
 *
 * @returns The record (if the value is a valid one) and the holding session.
 */
export function primaryLockFrom(entry: KvEntry | undefined): PrimaryLock {
  if (entry === undefined) return {};
  const record = parsePrimaryRecord(entry.value);
  return {
    ...(record ? { record } : {}),
    ...(entry.session ? { session: entry.session } : {}),
    modifyIndex: entry.modifyIndex,
  };
}

/** A failover record as stored: `{node, at, failedPrimary?, switchover?, promoted?}`. */
export function formatFailoverRecord(r: FailoverRecord): string {
  return JSON.stringify({
    node: r.node,
    at: r.at,
    ...(r.failedPrimary !== undefined ? { failedPrimary: r.failedPrimary } : {}),
    ...(r.switchover ? { switchover: true } : {}),
    ...(r.promoted !== undefined ? { promoted: r.promoted } : {}),
    ...(r.recovery ? { recovery: true } : {}),
  });
}

/**
 * A failover lock value as a record: `node` and a numeric `at` are required, the other fields are kept only
 * when of the right type. Undefined for no value, or one that is not JSON or not a record.
 */
export function parseFailoverRecord(value: string | undefined): FailoverRecord | undefined {
  const v = parseJson(value);
  if (!isObject(v) || typeof v.node !== "string" || typeof v.at !== "number" || !Number.isFinite(v.at)) {
    return undefined;
  }
  return {
    node: v.node,
    at: v.at,
    ...(typeof v.failedPrimary === "string" ? { failedPrimary: v.failedPrimary } : {}),
    ...(v.switchover === true ? { switchover: true } : {}),
    ...(typeof v.promoted === "string" ? { promoted: v.promoted } : {}),
    ...(v.recovery === true ? { recovery: true } : {}),
  };
}

/** The failover lock from its key: modifyIndex 0 when the key does not exist (a check-and-set then creates it). */
export function failoverLockFrom(entry: KvEntry | undefined): FailoverLock {
  if (entry === undefined) return { modifyIndex: 0 };
  const record = parseFailoverRecord(entry.value);
  return {
    ...(entry.session ? { session: entry.session } : {}),
    ...(record ? { record } : {}),
    value: entry.value,
    modifyIndex: entry.modifyIndex,
  };
}

/** A member record as stored (JSON, every field the record has). */
export function formatMemberRecord(r: MemberRecord): string {
  return JSON.stringify(r);
}

/**
 * A member record value: it must name the node, its address, an integer port and its executed GTIDs (as text);
 * anything else is not a member record (undefined).
 */
export function parseMemberRecord(value: string | undefined): MemberRecord | undefined {
  const v = parseJson(value);
  if (
    !isObject(v) || typeof v.node !== "string" || typeof v.address !== "string" ||
    !Number.isInteger(v.port) ||
    typeof v.executed !== "string"
  ) {
    return undefined;
  }
  return v as unknown as MemberRecord;
}

/** The member records among `entries` (keys under `prefix`), in key order; values that are not records are skipped. */
export function membersFrom(entries: readonly KvEntry[], prefix: string): MemberEntry[] {
  const out: MemberEntry[] = [];
  const under = entries.filter((e) => e.key.startsWith(prefix)).sort((a, b) => (a.key < b.key ? -1 : 1));
  for (const entry of under) {
    const record = parseMemberRecord(entry.value);
    if (record) out.push({ record, ...(entry.session !== undefined ? { session: entry.session } : {}) });
  }
  return out;
}

/** Live members (held by a session) and the last records of departed ones. */
export function splitMembers(
  members: readonly MemberEntry[],
): { live: LiveMember[]; departed: MemberRecord[] } {
  return {
    live: members.filter((m): m is LiveMember => m.session !== undefined),
    departed: members.filter((m) => m.session === undefined).map((m) => m.record),
  };
}

/** The live members other than `self` that replicate. */
export function otherLiveReplicas(members: readonly MemberEntry[], self: string): LiveMember[] {
  return splitMembers(members).live.filter((m) => m.record.node !== self && m.record.role === "replica");
}

/** An identity record as stored: `{id, node, at}`. */
export function formatClusterIdentity(r: ClusterIdentityRecord): string {
  return JSON.stringify({ id: r.id, node: r.node, at: r.at });
}

/** `SERVICE_NAME-cluster`'s value as a record; undefined for anything else. */
export function parseClusterIdentity(value: string | undefined): ClusterIdentityRecord | undefined {
  const v = parseJson(value);
  if (
    !isObject(v) || typeof v.id !== "string" || !/^[A-Za-z0-9-]{1,64}$/.test(v.id) ||
    typeof v.node !== "string" || typeof v.at !== "number" || !Number.isFinite(v.at)
  ) {
    return undefined;
  }
  return { id: v.id, node: v.node, at: v.at };
}

/** A verification record as stored (JSON). */
export function formatVerificationRecord(r: VerificationRecord): string {
  return JSON.stringify(r);
}

/** LAST_VERIFIED_KEY's value as a record; undefined for anything else (then the snapshot is verified again). */
export function parseVerificationRecord(value: string | undefined): VerificationRecord | undefined {
  const v = parseJson(value);
  if (
    !isObject(v) || typeof v.name !== "string" || typeof v.ok !== "boolean" || typeof v.node !== "string" ||
    typeof v.at !== "string" || (v.error !== undefined && typeof v.error !== "string")
  ) {
    return undefined;
  }
  return {
    name: v.name,
    ok: v.ok,
    node: v.node,
    at: v.at,
    ...(typeof v.error === "string" ? { error: v.error } : {}),
    ...(typeof v.binlogs === "number" && Number.isSafeInteger(v.binlogs) && v.binlogs >= 0
      ? { binlogs: v.binlogs }
      : {}),
    ...(typeof v.replayedTo === "string" ? { replayedTo: v.replayedTo } : {}),
  };
}

/** The archive record as stored (JSON, fields in a fixed order). */
export function formatArchiveRecord(r: ArchiveRecord): string {
  return JSON.stringify({
    node: r.node,
    serverId: r.serverId,
    file: r.file,
    createdAt: r.createdAt,
    endState: r.endState,
    ...(r.lastTime !== undefined ? { lastTime: r.lastTime } : {}),
    caughtUpAt: r.caughtUpAt,
    lagSeconds: r.lagSeconds,
    ...(r.gap !== undefined ? { gap: { after: r.gap.after, resumes: r.gap.resumes, at: r.gap.at } } : {}),
  });
}

/** The archive record in a value, or undefined when it holds none. */
export function parseArchiveRecord(value: string | undefined): ArchiveRecord | undefined {
  const v = parseJson(value);
  const str = (x: unknown) => typeof x === "string";
  if (
    !isObject(v) || !str(v.node) || !Number.isSafeInteger(v.serverId) || !str(v.file) || !str(v.createdAt) ||
    !str(v.endState) || !str(v.caughtUpAt) || typeof v.lagSeconds !== "number" ||
    (v.lastTime !== undefined && !Number.isSafeInteger(v.lastTime))
  ) {
    return undefined;
  }
  const g = v.gap;
  const gap = isObject(g) && str(g.after) && str(g.resumes) && str(g.at)
    ? { after: g.after as string, resumes: g.resumes as string, at: g.at as string }
    : undefined;
  return {
    node: v.node as string,
    serverId: v.serverId as number,
    file: v.file as string,
    createdAt: v.createdAt as string,
    endState: v.endState as string,
    ...(v.lastTime !== undefined ? { lastTime: v.lastTime as number } : {}),
    caughtUpAt: v.caughtUpAt as string,
    lagSeconds: v.lagSeconds,
    ...(gap !== undefined ? { gap } : {}),
  };
}

/** The backup lock's value as stored: `{node, job, startedAt}`. */
export function formatBackupLockRecord(r: BackupLockRecord): string {
  return JSON.stringify({ node: r.node, job: r.job, startedAt: r.startedAt });
}

/** A manifest as LAST_BACKUP_KEY holds it (JSON; src/snapshots.ts parses it back). */
export function formatManifestValue(manifest: Manifest): string {
  return JSON.stringify(manifest);
}

/** LAST_BACKUP_KEY's value when it names something: an empty or blank value names nothing. */
export function lastBackupFrom(entry: KvEntry | undefined): string | undefined {
  return entry === undefined || entry.value.trim() === "" ? undefined : entry.value;
}

/**
 * The view from the entries read: pure, for tests. `entries` are those of the recursive read and of the gets
 * of keys outside the prefix; only exact key names (and keys under the members' prefix) count.
 */
export function clusterViewFrom(keys: ClusterKeys, entries: readonly KvEntry[]): ClusterView {
  const byKey = new Map(entries.map((e) => [e.key, e]));
  const members = membersFrom(entries, keys.members);
  const { live, departed } = splitMembers(members);
  const pause = byKey.get(keys.failoverPause);
  const lastBackup = lastBackupFrom(byKey.get(keys.lastBackup));
  const lastBinlog = byKey.get(keys.lastBinlog);
  const lastVerified = parseVerificationRecord(byKey.get(keys.lastVerified)?.value);
  const cluster = parseClusterIdentity(byKey.get(keys.cluster)?.value);
  const archive = parseArchiveRecord(byKey.get(keys.archive)?.value);
  return {
    primary: primaryLockFrom(byKey.get(keys.primary)),
    failoverLock: failoverLockFrom(byKey.get(keys.failoverLock)),
    failoverPaused: pause !== undefined,
    live,
    departed,
    snapshotPublished: lastBackup !== undefined,
    members,
    ...(pause !== undefined ? { failoverPause: pause.value } : {}),
    ...(lastBackup !== undefined ? { lastBackup } : {}),
    ...(lastBinlog !== undefined ? { lastBinlog: lastBinlog.value } : {}),
    ...(lastVerified !== undefined ? { lastVerified } : {}),
    ...(cluster !== undefined ? { cluster } : {}),
    ...(archive !== undefined ? { archive } : {}),
  };
}

// --- the real one -----------------------------------------------------------------------------------------

/** {@link ClusterKv} over Consul. */
export class ConsulClusterKv implements ClusterKv {
  readonly keys: ClusterKeys;
  readonly #consul: ConsulStore;
  readonly #session: Config["session"];
  readonly #outside: readonly string[];

  /**
   * @param config SERVICE_NAME, the key variables and the session's name and TTL.
   * @param consul The Consul client; the caller closes it.
   */
  constructor(config: Pick<Config, "serviceName" | "keys" | "session">, consul: ConsulStore) {
    this.keys = clusterKeys(config);
    this.#consul = consul;
    this.#session = config.session;
    this.#outside = keysOutsidePrefix(this.keys);
  }

  async ensureSession(known: string | undefined): Promise<{ id: string; created: boolean }> {
    return await this.#consul.ensureSession(known, {
      name: this.#session.name,
      ttlSeconds: this.#session.ttlSeconds,
    });
  }

  async renewSession(id: string): Promise<boolean> {
    return await this.#consul.renewSession(id);
  }

  async read(): Promise<ClusterView> {
    const [inside, ...outside] = await Promise.all([
      this.#consul.getPrefix(this.keys.prefix),
      ...this.#outside.map((k) => this.#consul.get(k)),
    ]);
    return clusterViewFrom(this.keys, [...inside, ...outside.filter((e): e is KvEntry => e !== undefined)]);
  }

  async primary(): Promise<PrimaryLock> {
    return primaryLockFrom(await this.#consul.get(this.keys.primary));
  }

  async acquirePrimary(session: string, record: PrimaryRecord): Promise<boolean> {
    return await this.#consul.tryAcquireLock(this.keys.primary, session, formatPrimaryRecord(record));
  }

  async releasePrimary(session: string, record: PrimaryRecord): Promise<void> {
    await this.#consul.releaseLock(this.keys.primary, session, formatPrimaryRecord(record));
  }

  async heartbeatPrimary(session: string, record: PrimaryRecord, modifyIndex: number): Promise<boolean> {
    try {
      return await this.#consul.tryAcquireLockIfUnchanged(
        this.keys.primary,
        session,
        formatPrimaryRecord(record, modifyIndex),
        modifyIndex,
      );
    } catch (e) {
      if (e instanceof SessionGoneError) return false;
      throw e;
    }
  }

  async takeOverPrimary(found: PrimaryLock): Promise<boolean> {
    if (found.session === undefined || found.modifyIndex === undefined) return false;
    const value = found.record === undefined ? "" : formatPrimaryRecord(found.record);
    return await this.#consul.unlockIfUnchanged(this.keys.primary, found.session, value, found.modifyIndex);
  }

  async failoverLock(): Promise<FailoverLock> {
    return failoverLockFrom(await this.#consul.get(this.keys.failoverLock));
  }

  async acquireFailoverLock(session: string, record: FailoverRecord, found: FailoverLock): Promise<boolean> {
    return await this.#consul.tryAcquireLockIfUnchanged(
      this.keys.failoverLock,
      session,
      formatFailoverRecord(record),
      found.modifyIndex,
    );
  }

  async releaseFailoverLock(session: string, value: FailoverRecord | string): Promise<void> {
    await this.#consul.releaseLock(
      this.keys.failoverLock,
      session,
      typeof value === "string" ? value : formatFailoverRecord(value),
    );
  }

  async publishMember(session: string, record: MemberRecord): Promise<boolean> {
    try {
      return await this.#consul.tryAcquireLock(
        `${this.keys.members}${record.node}`,
        session,
        formatMemberRecord(record),
      );
    } catch (e) {
      if (e instanceof SessionGoneError) return false;
      throw e;
    }
  }

  async members(): Promise<MemberEntry[]> {
    return membersFrom(await this.#consul.getPrefix(this.keys.members), this.keys.members);
  }

  async lastBackup(): Promise<string | undefined> {
    return lastBackupFrom(await this.#consul.get(this.keys.lastBackup));
  }

  async lastBinlog(): Promise<string | undefined> {
    return (await this.#consul.get(this.keys.lastBinlog))?.value;
  }

  async publishSnapshot(manifest: Manifest, binlog: string): Promise<void> {
    await this.#consul.put(this.keys.lastBackup, formatManifestValue(manifest));
    await this.#consul.put(this.keys.lastBinlog, binlog);
  }

  async lastVerification(): Promise<VerificationRecord | undefined> {
    return parseVerificationRecord((await this.#consul.get(this.keys.lastVerified))?.value);
  }

  async recordVerification(record: VerificationRecord): Promise<void> {
    await this.#consul.put(this.keys.lastVerified, formatVerificationRecord(record));
  }

  async archiveRecord(): Promise<ArchiveRecord | undefined> {
    return parseArchiveRecord((await this.#consul.get(this.keys.archive))?.value);
  }

  async archiveRecordEntry(): Promise<{ record?: ArchiveRecord; modifyIndex: number }> {
    const entry = await this.#consul.get(this.keys.archive);
    const record = parseArchiveRecord(entry?.value);
    return { ...(record !== undefined ? { record } : {}), modifyIndex: entry?.modifyIndex ?? 0 };
  }

  async recordArchive(record: ArchiveRecord, modifyIndex: number): Promise<boolean> {
    return await this.#consul.putIfUnchanged(this.keys.archive, formatArchiveRecord(record), modifyIndex);
  }

  async acquireBackupLock(session: string, record: BackupLockRecord): Promise<boolean> {
    return await this.#consul.tryAcquireLock(this.keys.backupLock, session, formatBackupLockRecord(record));
  }

  async backupLockHolder(): Promise<string | undefined> {
    return (await this.#consul.get(this.keys.backupLock))?.value;
  }

  async releaseBackupLock(session: string): Promise<void> {
    await this.#consul.releaseLock(this.keys.backupLock, session);
  }

  async publishClusterIdentity(record: ClusterIdentityRecord): Promise<ClusterIdentityRecord | undefined> {
    // Check-and-set with index 0: written only if the key does not exist.
    if (await this.#consul.putIfUnchanged(this.keys.cluster, formatClusterIdentity(record), 0)) return record;
    return parseClusterIdentity((await this.#consul.get(this.keys.cluster))?.value);
  }
}
