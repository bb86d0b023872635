/**
 * Whether this node should take a snapshot now: a pure decision over plain facts, so every case is unit-tested
 * and the periodic task (`autopilot snapshot`) only gathers facts and acts.
 *
 * A snapshot is due when there is none yet, when the last one is older than `BACKUP_TTL`, or when the binlog
 * archive found a gap since it was taken (a binlog purged before it was archived: only a new snapshot starts a
 * new recoverable span). A rotated binlog alone no longer makes one due: the archiver rotates the primary's
 * binlog every BINLOG_ARCHIVE_INTERVAL, and archived binlogs are what a point-in-time restore replays. Only one
 * kind of node takes them: by default (`BACKUP_FROM=replica`) a healthy replica, which spares the primary, and
 * the primary when no healthy replica exists, or when the replicas let the last snapshot grow twice BACKUP_TTL
 * old (a replica that counts as healthy but cannot back up must not stop snapshots altogether); with
 * `BACKUP_FROM=primary` the primary alone.
 *
 * @module
 */

/** The node's part in the cluster, as far as snapshots are concerned. */
export type SnapshotRole =
  | { readonly kind: "primary" }
  | { readonly kind: "replica" }
  /** Neither the writable lock holder nor a healthy replica (starting, errant, lagging...): never backs up. */
  | { readonly kind: "none"; readonly why: string };

/** What the decision reads. */
export interface SnapshotFacts {
  /** `autopilot backup now`: skip the schedule and the BACKUP_FROM rule, but not the role check. */
  readonly force: boolean;
  readonly role: SnapshotRole;
  /** BACKUP_FROM. */
  readonly backupFrom: "primary" | "replica";
  /** Other nodes whose health check passes in Consul (they are replicas when this node is the primary). */
  readonly healthyPeers: number;
  /** The snapshot Consul names as the last one, if any. */
  readonly last?: { readonly name: string; readonly createdAt: string };
  /** LAST_BINLOG_KEY: the primary's binlog file when the last snapshot was taken (shown in reasons). */
  readonly lastBinlog?: string;
  /** The primary's binlog file now (on a replica: the file its receiver reads); undefined when unknown. */
  readonly currentBinlog?: string;
  /** When the binlog archive last found a gap (ISO 8601), from its record in Consul. */
  readonly archiveGapAt?: string;
  /** BACKUP_TTL in seconds. */
  readonly ttlSeconds: number;
  readonly now: Date;
}

/** Take one (and why), or not (and why). The reason is logged as it stands. */
export interface SnapshotDecision {
  readonly take: boolean;
  readonly reason: string;
  /** Not taken because of a setting the operator should fix: worth a WARN line, not DEBUG. */
  readonly misconfigured?: true;
}

/** Decides whether to take a snapshot now. */
export function decideSnapshot(f: SnapshotFacts): SnapshotDecision {
  if (f.role.kind === "none") return { take: false, reason: `this node takes no snapshot: ${f.role.why}` };
  if (f.force) return { take: true, reason: "requested (backup now)" };
  if (f.backupFrom === "primary" && f.role.kind === "replica") {
    return { take: false, reason: "BACKUP_FROM=primary: the primary takes the snapshots" };
  }
  const fallback = f.backupFrom === "replica" && f.role.kind === "primary";
  const overdue = f.last !== undefined && (ageOf(f) ?? Infinity) >= 2 * f.ttlSeconds;
  if (fallback && f.healthyPeers > 0 && !overdue) {
    return { take: false, reason: "BACKUP_FROM=replica: a healthy replica takes the snapshots" };
  }
  const due = whyDue(f);
  if (due === undefined) {
    return { take: false, reason: notDueReason(f) };
  }
  return {
    take: true,
    reason: fallback
      ? `${due} (BACKUP_FROM=replica, but ${
        f.healthyPeers === 0 ? "no healthy replica exists" : "no replica took one within twice BACKUP_TTL"
      }: the primary takes it)`
      : due,
  };
}

/** Who holds the primary lock, as this node sees it (its own session, another one, or none). */
export type LockHolder = "this node" | "another node" | "nobody";

/** What Consul alone tells the periodic task, before it asks the local server anything. */
export interface EarlyFacts {
  /** BACKUP_FROM. */
  readonly backupFrom: "primary" | "replica";
  /** BACKUP_VERIFY: a replica may have a snapshot to verify. */
  readonly verify: boolean;
  readonly lock: LockHolder;
}

/**
 * Whether Consul alone settles that the periodic task has nothing to do on this node, so that it need not ask
 * the local server, which at a container's start is not up yet (ContainerPilot runs the task at once, while
 * pre-start may still be restoring). Not for `backup now`, which checks the server's role itself.
 *
 * @returns The decision not to take one, with its reason; `undefined` when the local server must be asked.
 */
export function decideWithoutServer(f: EarlyFacts): SnapshotDecision | undefined {
  if (f.lock === "nobody") {
    return { take: false, reason: "this node takes no snapshot: no node holds the primary lock" };
  }
  if (f.lock === "another node" && f.backupFrom === "primary" && !f.verify) {
    return {
      take: false,
      reason: "BACKUP_FROM=primary: the primary takes the snapshots, and another node holds the primary lock",
    };
  }
  return undefined;
}

/** What {@link decideVerify} reads. */
export interface VerifyFacts {
  /** BACKUP_VERIFY. */
  readonly enabled: boolean;
  readonly role: SnapshotRole;
  /** The snapshot Consul names as the last one, if any. */
  readonly last?: string;
  /** The snapshot LAST_VERIFIED_KEY names, if any (verified, passed or failed). */
  readonly lastVerified?: string;
  /**
   * Why this node's keys cannot restore the last snapshot, if they cannot (`cannotRestore()` in
   * src/backup/encryption.ts): a node with BACKUP_ENCRYPTION_RECIPIENTS only, or with another key.
   */
  readonly keyProblem?: string;
}

/**
 * Whether this node should verify the last snapshot now: with BACKUP_VERIFY, a healthy replica verifies each
 * snapshot once (the primary never spends its disk and I/O on it), when its keys can restore it.
 */
export function decideVerify(f: VerifyFacts): SnapshotDecision {
  if (!f.enabled) return { take: false, reason: "BACKUP_VERIFY is off" };
  if (f.role.kind !== "replica") return { take: false, reason: "only a healthy replica verifies snapshots" };
  if (f.last === undefined) return { take: false, reason: "no snapshot to verify" };
  if (f.last === f.lastVerified) return { take: false, reason: `snapshot ${f.last} was verified already` };
  if (f.keyProblem !== undefined) {
    // Verifying would fail the same way on every run: skipped, and the job left to a node that can.
    return {
      take: false,
      reason: `BACKUP_VERIFY is set but this node cannot verify: ${f.keyProblem}`,
      misconfigured: true,
    };
  }
  return { take: true, reason: `snapshot ${f.last} has not been verified (BACKUP_VERIFY)` };
}

function whyDue(f: SnapshotFacts): string | undefined {
  if (f.last === undefined) return "no snapshot exists yet";
  const ageSeconds = ageOf(f);
  if (ageSeconds === undefined) return `the last snapshot ${f.last.name} has no valid date`;
  if (ageSeconds >= f.ttlSeconds) {
    return `the last snapshot ${f.last.name} is ${duration(ageSeconds)} old (BACKUP_TTL is ${
      duration(f.ttlSeconds)
    })`;
  }
  if (f.archiveGapAt !== undefined && f.archiveGapAt > f.last.createdAt) {
    return `the binlog archive found a gap at ${f.archiveGapAt}, after the last snapshot ${f.last.name}: a new ` +
      "snapshot starts a new recoverable span";
  }
  return undefined;
}

function notDueReason(f: SnapshotFacts): string {
  const age = ageOf(f) ?? 0;
  return `not due: the last snapshot ${f.last?.name} is ${duration(age)} old (BACKUP_TTL is ${
    duration(f.ttlSeconds)
  }) and the binlog archive has no gap since`;
}

function ageOf(f: SnapshotFacts): number | undefined {
  const created = Date.parse(f.last?.createdAt ?? "");
  return Number.isNaN(created) ? undefined : Math.max(0, Math.floor((f.now.getTime() - created) / 1000));
}

/** `90` → `1m30s`; `86400` → `24h`. */
export function duration(seconds: number): string {
  const h = Math.floor(seconds / 3600);
  const m = Math.floor((seconds % 3600) / 60);
  const s = seconds % 60;
  const parts = [h ? `${h}h` : "", m ? `${m}m` : "", s || (!h && !m) ? `${s}s` : ""];
  return parts.join("");
}
