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
 * - `SERVICE_NAME-backup-running`, `-last-backup`, `-last-binlog`, `-last-verified`: the snapshot keys.
 *
 * `ClusterKv` is the interface the HA actions take (unit tests pass a fake); `ConsulClusterKv` is the real one
 * over a {@link ConsulStore}.
 *
 * @module
 */
import type { PrimaryLock, PrimaryRecord } from "./ha/decide.ts";
import type { MemberRecord } from "./ha/failover_plan.ts";

export type { MemberRecord, PrimaryLock, PrimaryRecord };

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

/** A member's record and the session holding it; `session` is absent for a departed member. */
export interface MemberEntry {
  readonly record: MemberRecord;
  readonly session?: string;
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
}

/** The cluster's keys, as the HA code uses them. Every method throws ConsulUnavailableError when Consul is down. */
export interface ClusterKv {
  /**
   * This node's session: renews `known` if Consul still has it, else creates one (SESSION_NAME, SESSION_TTL).
   * It holds the node's member record, and the primary lock when the node is appointed.
   */
  ensureSession(known: string | undefined): Promise<{ readonly id: string; readonly created: boolean }>;
  /** One recursive read of the cluster's keys. */
  read(): Promise<ClusterView>;
  /** The primary lock alone (a cheaper read when only it is needed). */
  primary(): Promise<PrimaryLock>;
  /** The failover lock alone. */
  failoverLock(): Promise<FailoverLock>;
  /** Takes the primary lock for `session` with `record` (also: rewrites it, e.g. `ready`); false if held by another. */
  acquirePrimary(session: string, record: PrimaryRecord): Promise<boolean>;
  /** Releases the primary lock held by `session`, leaving `record` in the key. */
  releasePrimary(session: string, record: PrimaryRecord): Promise<void>;
  /**
   * Takes the failover lock if nobody holds it and its value is unchanged since `found` was read.
   * @throws {SessionGoneError} when the session does not exist.
   */
  acquireFailoverLock(session: string, record: FailoverRecord, found: FailoverLock): Promise<boolean>;
  /** Releases the failover lock, leaving `value` (a record, or the raw value found). */
  releaseFailoverLock(session: string, value: FailoverRecord | string): Promise<void>;
  /** Writes this node's member record under its session; false if the session is gone. */
  publishMember(session: string, record: MemberRecord): Promise<boolean>;
}
