/**
 * An in-memory {@link ClusterKv} with Consul's lock semantics, for unit tests of the HA actions:
 *
 * - a key taken as a lock is held by one session; the holder may take it again (rewriting the value; the
 *   very same value changes nothing, not even the ModifyIndex), any other session is refused (`false`);
 * - a release by the holder frees the key and leaves the value given; a release by anyone else changes nothing;
 * - a session that has ended cannot take anything ({@link SessionGoneError}); ending it releases what it held
 *   and keeps the values (Consul's "release" behaviour), so its member record stays, departed;
 * - the failover lock is taken by check-and-set on the ModifyIndex read (0: the key must not exist);
 * - the primary lock is taken over (freed from its holder, record kept) only at the ModifyIndex read;
 * - with `lockDelay`, a key released by an ended session refuses every session until {@link endLockDelay}.
 *
 * Keys are stored under their real names (from `SERVICE_NAME` and the key variables), and `read()` builds its
 * view with the same pure code as the real one, so a test can plant a foreign value with {@link put}.
 * {@link down} makes every method throw {@link ConsulUnavailableError}, at once or after some calls.
 * tests/unit/fakes/cluster_kv_contract.ts runs the same cases against this fake and against real Consul.
 *
 * @module
 */
import { type Config, loadConfig } from "../../../src/config.ts";
import { ConsulUnavailableError, type KvEntry, SessionGoneError } from "../../../src/consul.ts";
import type { Manifest } from "../../../src/backup/manifest.ts";
import {
  type ArchiveRecord,
  type BackupLockRecord,
  type ClusterIdentityRecord,
  type ClusterKeys,
  clusterKeys,
  type ClusterKv,
  type ClusterView,
  clusterViewFrom,
  type FailoverLock,
  failoverLockFrom,
  type FailoverRecord,
  formatArchiveRecord,
  formatBackupLockRecord,
  formatClusterIdentity,
  formatFailoverRecord,
  formatManifestValue,
  formatMemberRecord,
  formatPrimaryRecord,
  formatVerificationRecord,
  keysOutsidePrefix,
  lastBackupFrom,
  type MemberEntry,
  type MemberRecord,
  membersFrom,
  parseArchiveRecord,
  parseClusterIdentity,
  parseVerificationRecord,
  type PrimaryLock,
  primaryLockFrom,
  type PrimaryRecord,
  type VerificationRecord,
} from "../../../src/cluster_kv.ts";

interface Stored {
  value: string;
  session?: string;
  lockIndex: number;
  modifyIndex: number;
}

/** SERVICE_NAME and the key variables of a configuration loaded from `env` (the real loader's defaults). */
export function kvConfig(env: Record<string, string> = {}): Pick<Config, "serviceName" | "keys" | "session"> {
  return loadConfig((n) => ({ MYSQL_REPL_PASSWORD: "unused", ...env })[n], { hostname: () => "fake" });
}

/** See the module's documentation. */
export class FakeClusterKv implements ClusterKv {
  readonly keys: ClusterKeys;
  /** Every method called, in order (`read`, `acquirePrimary`, …), the failed ones included. */
  readonly calls: string[] = [];
  readonly #kv = new Map<string, Stored>();
  readonly #sessions = new Set<string>();
  readonly #delayed = new Set<string>();
  #index = 0;
  #sessionCount = 0;
  /** Calls that still succeed before Consul is down; undefined: up. */
  #callsLeft: number | undefined;

  /** @param config SERVICE_NAME and the key variables (default: SERVICE_NAME=mysql, every key by default). */
  constructor(config: Pick<Config, "serviceName" | "keys"> = kvConfig()) {
    this.keys = clusterKeys(config);
  }

  // --- helpers for tests ----------------------------------------------------------------------------------

  /** A new live session (as another node's `ensureSession` would make). */
  createSession(): string {
    const id = `fake-session-${++this.#sessionCount}`;
    this.#sessions.add(id);
    return id;
  }

  /** Whether Consul still has the session. */
  sessionAlive(id: string): boolean {
    return this.#sessions.has(id);
  }

  /**
   * Ends a session (it expired, or was destroyed): the keys it held are released with their values kept. With
   * `lockDelay`, those keys refuse every session until {@link endLockDelay}, as Consul's lock-delay does.
   */
  endSession(id: string, opts: { lockDelay?: boolean } = {}): void {
    this.#sessions.delete(id);
    for (const [key, e] of this.#kv) {
      if (e.session !== id) continue;
      delete e.session;
      e.modifyIndex = ++this.#index;
      if (opts.lockDelay) this.#delayed.add(key);
    }
  }

  /** The lock-delay of ended sessions is over. */
  endLockDelay(): void {
    this.#delayed.clear();
  }

  /**
   * Consul cannot be reached: every method throws {@link ConsulUnavailableError}, at once or once `after`
   * more calls have succeeded (Consul lost in the middle of a pass).
   */
  down(opts: { after?: number } = {}): this {
    this.#callsLeft = opts.after ?? 0;
    return this;
  }

  /** Consul answers again. */
  up(): void {
    this.#callsLeft = undefined;
  }

  /** A plain write (an operator's, another program's, or a node of another version): no session involved. */
  put(key: string, value: string): void {
    const e = this.#kv.get(key);
    this.#kv.set(key, {
      value,
      ...(e?.session !== undefined ? { session: e.session } : {}),
      lockIndex: e?.lockIndex ?? 0,
      modifyIndex: ++this.#index,
    });
  }

  /** Deletes a key (an operator's `consul kv delete`). */
  delete(key: string): void {
    this.#kv.delete(key);
  }

  /** A key as Consul holds it. */
  entry(key: string): KvEntry | undefined {
    const e = this.#kv.get(key);
    return e === undefined ? undefined : toEntry(key, e);
  }

  /** Every key, in key order. */
  entries(): KvEntry[] {
    return [...this.#kv.keys()].sort().map((k) => toEntry(k, this.#kv.get(k)!));
  }

  // --- ClusterKv ------------------------------------------------------------------------------------------

  ensureSession(known: string | undefined): Promise<{ id: string; created: boolean }> {
    return this.#op(
      "ensureSession",
      () =>
        known !== undefined && this.#sessions.has(known)
          ? { id: known, created: false }
          : { id: this.createSession(), created: true },
    );
  }

  renewSession(id: string): Promise<boolean> {
    return this.#op("renewSession", () => this.#sessions.has(id));
  }

  read(): Promise<ClusterView> {
    return this.#op("read", () => {
      // What the real one reads: the prefix recursively, and each view key renamed outside it.
      const outside = new Set(keysOutsidePrefix(this.keys));
      const seen = this.entries().filter((e) => e.key.startsWith(this.keys.prefix) || outside.has(e.key));
      return clusterViewFrom(this.keys, seen);
    });
  }

  primary(): Promise<PrimaryLock> {
    return this.#op("primary", () => primaryLockFrom(this.entry(this.keys.primary)));
  }

  acquirePrimary(session: string, record: PrimaryRecord): Promise<boolean> {
    return this.#op(
      "acquirePrimary",
      () => this.#acquire(this.keys.primary, session, formatPrimaryRecord(record)),
    );
  }

  releasePrimary(session: string, record: PrimaryRecord): Promise<void> {
    return this.#op(
      "releasePrimary",
      () => this.#release(this.keys.primary, session, formatPrimaryRecord(record)),
    );
  }

  heartbeatPrimary(session: string, record: PrimaryRecord, modifyIndex: number): Promise<boolean> {
    return this.#op("heartbeatPrimary", () => {
      const e = this.#kv.get(this.keys.primary);
      if (!this.#sessions.has(session) || e === undefined || e.modifyIndex !== modifyIndex) return false;
      return this.#acquire(this.keys.primary, session, formatPrimaryRecord(record, modifyIndex));
    });
  }

  takeOverPrimary(found: PrimaryLock): Promise<boolean> {
    return this.#op("takeOverPrimary", () => {
      const e = this.#kv.get(this.keys.primary);
      if (found.session === undefined || e === undefined || e.modifyIndex !== found.modifyIndex) return false;
      if (e.session !== found.session) return false;
      const value = found.record === undefined ? "" : formatPrimaryRecord(found.record);
      this.#kv.set(this.keys.primary, { value, lockIndex: e.lockIndex, modifyIndex: ++this.#index });
      return true;
    });
  }

  failoverLock(): Promise<FailoverLock> {
    return this.#op("failoverLock", () => failoverLockFrom(this.entry(this.keys.failoverLock)));
  }

  acquireFailoverLock(session: string, record: FailoverRecord, found: FailoverLock): Promise<boolean> {
    return this.#op("acquireFailoverLock", () => {
      const e = this.#kv.get(this.keys.failoverLock);
      const unchanged = found.modifyIndex === 0 ? e === undefined : e?.modifyIndex === found.modifyIndex;
      if (!unchanged) return false;
      return this.#acquire(this.keys.failoverLock, session, formatFailoverRecord(record));
    });
  }

  releaseFailoverLock(session: string, value: FailoverRecord | string): Promise<void> {
    return this.#op("releaseFailoverLock", () =>
      this.#release(
        this.keys.failoverLock,
        session,
        typeof value === "string" ? value : formatFailoverRecord(value),
      ));
  }

  publishMember(session: string, record: MemberRecord): Promise<boolean> {
    return this.#op("publishMember", () => {
      if (!this.#sessions.has(session)) return false;
      return this.#acquire(`${this.keys.members}${record.node}`, session, formatMemberRecord(record));
    });
  }

  members(): Promise<readonly MemberEntry[]> {
    return this.#op("members", () => membersFrom(this.entries(), this.keys.members));
  }

  lastBackup(): Promise<string | undefined> {
    return this.#op("lastBackup", () => lastBackupFrom(this.entry(this.keys.lastBackup)));
  }

  lastBinlog(): Promise<string | undefined> {
    return this.#op("lastBinlog", () => this.entry(this.keys.lastBinlog)?.value);
  }

  publishSnapshot(manifest: Manifest, binlog: string): Promise<void> {
    return this.#op("publishSnapshot", () => {
      this.put(this.keys.lastBackup, formatManifestValue(manifest));
      this.put(this.keys.lastBinlog, binlog);
    });
  }

  lastVerification(): Promise<VerificationRecord | undefined> {
    return this.#op(
      "lastVerification",
      () => parseVerificationRecord(this.entry(this.keys.lastVerified)?.value),
    );
  }

  recordVerification(record: VerificationRecord): Promise<void> {
    return this.#op(
      "recordVerification",
      () => this.put(this.keys.lastVerified, formatVerificationRecord(record)),
    );
  }

  archiveRecord(): Promise<ArchiveRecord | undefined> {
    return this.#op("archiveRecord", () => parseArchiveRecord(this.entry(this.keys.archive)?.value));
  }

  archiveRecordEntry(): Promise<{ record?: ArchiveRecord; modifyIndex: number }> {
    return this.#op("archiveRecordEntry", () => {
      const e = this.#kv.get(this.keys.archive);
      const record = parseArchiveRecord(e?.value);
      return { ...(record !== undefined ? { record } : {}), modifyIndex: e?.modifyIndex ?? 0 };
    });
  }

  recordArchive(record: ArchiveRecord, modifyIndex: number): Promise<boolean> {
    return this.#op("recordArchive", () => {
      const e = this.#kv.get(this.keys.archive);
      if ((e?.modifyIndex ?? 0) !== modifyIndex) return false;
      this.put(this.keys.archive, formatArchiveRecord(record));
      return true;
    });
  }

  acquireBackupLock(session: string, record: BackupLockRecord): Promise<boolean> {
    return this.#op(
      "acquireBackupLock",
      () => this.#acquire(this.keys.backupLock, session, formatBackupLockRecord(record)),
    );
  }

  backupLockHolder(): Promise<string | undefined> {
    return this.#op("backupLockHolder", () => this.entry(this.keys.backupLock)?.value);
  }

  releaseBackupLock(session: string): Promise<void> {
    return this.#op("releaseBackupLock", () => this.#release(this.keys.backupLock, session, ""));
  }

  publishClusterIdentity(record: ClusterIdentityRecord): Promise<ClusterIdentityRecord | undefined> {
    return this.#op("publishClusterIdentity", () => {
      const found = this.entry(this.keys.cluster);
      if (found !== undefined) return parseClusterIdentity(found.value);
      this.put(this.keys.cluster, formatClusterIdentity(record));
      return record;
    });
  }

  // --- Consul's rules -------------------------------------------------------------------------------------

  #acquire(key: string, session: string, value: string): boolean {
    if (!this.#sessions.has(session)) throw new SessionGoneError(session);
    const e = this.#kv.get(key);
    if (e?.session !== undefined && e.session !== session) return false;
    if (e?.session === undefined && this.#delayed.has(key)) return false;
    if (e?.session === session && e.value === value) return true; // Consul writes nothing: the index stays
    this.#kv.set(key, {
      value,
      session,
      lockIndex: (e?.lockIndex ?? 0) + (e?.session === session ? 0 : 1),
      modifyIndex: ++this.#index,
    });
    return true;
  }

  #release(key: string, session: string, value: string): void {
    const e = this.#kv.get(key);
    if (e === undefined || e.session !== session) return;
    this.#kv.set(key, { value, lockIndex: e.lockIndex, modifyIndex: ++this.#index });
  }

  /** Runs one method as Consul would answer it: not at all when down. Async like the real one. */
  #op<T>(name: string, fn: () => T): Promise<T> {
    this.calls.push(name);
    if (this.#callsLeft !== undefined) {
      if (this.#callsLeft <= 0) {
        return Promise.reject(new ConsulUnavailableError(name, "connect ECONNREFUSED (fake Consul is down)"));
      }
      this.#callsLeft--;
    }
    try {
      return Promise.resolve(fn());
    } catch (e) {
      return Promise.reject(e);
    }
  }
}

function toEntry(key: string, e: Stored): KvEntry {
  return Object.freeze({
    key,
    value: e.value,
    ...(e.session !== undefined ? { session: e.session } : {}),
    lockIndex: e.lockIndex,
    modifyIndex: e.modifyIndex,
  });
}
