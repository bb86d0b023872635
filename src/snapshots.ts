/**
 * Taking a snapshot and telling the cluster about it: the store gets the data and its manifest; the stored
 * bytes are read back and checked against the manifest's SHA-256; only then Consul's LAST_BACKUP_KEY gets the
 * manifest (what new replicas restore) and LAST_BINLOG_KEY the primary's binlog file at the snapshot.
 * Restoring one the way the configuration says (its store, its key, its owner), for pre-start, a rebuild and
 * `autopilot restore`.
 *
 * @module
 */
import { cannotStorePlaintext, openKeyring } from "./backup/encryption.ts";
import type { Config } from "./config.ts";
import type { ClusterKv, VerificationRecord } from "./cluster_kv.ts";
import { takeSnapshot } from "./backup/backup.ts";
import { type RestoreResult, restoreSnapshot, type RestoreSnapshotOptions } from "./backup/restore.ts";
import { DigestStream } from "./backup/digest.ts";
import { BackupError, CorruptSnapshotError } from "./backup/errors.ts";
import { type Manifest, manifestKey, parseManifest, renderBackupName } from "./backup/manifest.ts";
import type { MysqlServer } from "./mysql/server.ts";
import { localAdminUser } from "./mysql/bootstrap.ts";
import type { Flavour } from "./mysql/flavour.ts";
import { openStore } from "./storage/open.ts";
import type { SnapshotStore } from "./storage/store.ts";

/** Options of {@link takeAndPublishSnapshot}. */
export interface PublishOptions {
  /**
   * The primary's binlog file to record in LAST_BINLOG_KEY. Needed when the snapshot is taken on a replica,
   * whose own binlog names say nothing about the primary's. @default the snapshot's own binlog file
   */
  readonly sourceBinlog?: string;
  /** Kills the backup and publishes nothing when aborted. */
  readonly signal?: AbortSignal;
}

/**
 * Takes a hot snapshot of the local server, stores it, checks the stored bytes, and publishes it in Consul.
 *
 * @returns The snapshot's manifest.
 * @throws {BackupError} when the backup fails (nothing stored), or this node has no key variable while the
 *   cluster's published snapshot is encrypted (nothing run: {@link cannotStorePlaintext}); {@link CorruptSnapshotError} when the stored
 *   bytes do not match (the snapshot is deleted, nothing published).
 */
export async function takeAndPublishSnapshot(
  config: Config,
  kv: ClusterKv,
  flavour: Flavour,
  server: MysqlServer,
  opts: PublishOptions = {},
): Promise<Manifest> {
  const { signal } = opts;
  const store = await openStore(config);
  const version = await server.version({ signal });
  // MariaDB: every server's last GTID (gtid_binlog_state), so a node restored from the snapshot keeps them
  // (see Manifest).
  const binlogStateBefore = flavour === "mariadb" ? (await server.gtidState({ signal })).executed : undefined;
  const keyring = await openKeyring(config.backup.encryption, signal);
  if (keyring === undefined) {
    const published = await publishedSnapshot(kv).catch(() => undefined);
    const allow = config.backup.encryption?.allowUnencrypted === true;
    const problem = cannotStorePlaintext(published?.encryption, keyring, allow, "the snapshot");
    if (problem !== undefined) {
      throw new BackupError(renderBackupName(config.backup.name, new Date()), problem, "nothing was stored");
    }
  }
  const manifest = await takeSnapshot({
    store,
    flavour,
    cnfPath: config.mysql.cnfPath,
    socket: config.mysql.socket,
    user: localAdminUser(flavour),
    nodeName: config.node.name,
    serverVersion: version.text,
    namePattern: config.backup.name,
    datadir: config.mysql.datadir,
    ...(binlogStateBefore ? { binlogStateBefore } : {}),
    ...(keyring ? { keyring } : {}),
    ...(signal ? { signal } : {}),
  });
  try {
    await checkStoredBytes(store, manifest, signal);
  } catch (e) {
    await store.delete([manifestKey(manifest.name), manifest.key]).catch(() => {});
    throw e;
  }
  await kv.publishSnapshot(manifest, opts.sourceBinlog ?? manifest.binlog.file);
  return manifest;
}

/**
 * Reads a stored snapshot's data object back and compares its size and SHA-256 with the manifest.
 *
 * @throws {CorruptSnapshotError} naming what differs.
 */
export async function checkStoredBytes(
  store: SnapshotStore,
  manifest: Manifest,
  signal?: AbortSignal,
): Promise<void> {
  const digest = new DigestStream();
  await (await store.get(manifest.key, signal)).pipeThrough(digest).pipeTo(new WritableStream(), { signal });
  const { sha256, size } = digest.digest;
  if (size !== manifest.size || sha256 !== manifest.sha256) {
    throw new CorruptSnapshotError(
      manifest.name,
      `the ${store.kind} store returned ${size} bytes with SHA-256 ${sha256} right after storing ` +
        `${manifest.size} bytes with SHA-256 ${manifest.sha256}`,
      "it was deleted and not published; check the store",
    );
  }
}

/**
 * The snapshot Consul names as the latest, if any.
 *
 * @throws {CorruptSnapshotError} if the key holds something that is not a valid manifest.
 */
export async function publishedSnapshot(kv: ClusterKv): Promise<Manifest | undefined> {
  return publishedManifest(await kv.lastBackup(), kv.keys.lastBackup);
}

/**
 * LAST_BACKUP_KEY's value (as {@link ClusterKv.lastBackup} or {@link ClusterView.lastBackup} give it) as a
 * manifest.
 *
 * @param key LAST_BACKUP_KEY, for the error.
 * @throws {CorruptSnapshotError} if the value is not a valid manifest.
 */
export function publishedManifest(value: string | undefined, key: string): Manifest | undefined {
  return value === undefined ? undefined : parseManifest(value, `Consul key ${key}`);
}

/** LAST_VERIFIED_KEY's record (src/cluster_kv.ts reads and writes it). */
/** What {@link restoreConfiguredSnapshot} takes besides the configuration. */
export type ConfiguredRestoreOptions =
  & Pick<RestoreSnapshotOptions, "manifest" | "datadir" | "flavour" | "signal" | "beforeMove">
  & {
    /** The configured store, when the caller has opened it already. @default opened here */
    readonly store?: SnapshotStore;
  };

/**
 * Restores a snapshot from the configured store into `datadir`, decrypting it with BACKUP_ENCRYPTION_KEY when
 * it is encrypted, and gives the files to MYSQL_OS_USER.
 *
 * @throws {Error} one line naming BACKUP_ENCRYPTION_KEY when the key is not valid ({@link openKeyring}).
 * @throws {CorruptSnapshotError | RestoreError} as {@link restoreSnapshot} does.
 */
export async function restoreConfiguredSnapshot(
  config: Config,
  opts: ConfiguredRestoreOptions,
): Promise<RestoreResult> {
  const { store, ...rest } = opts;
  const keyring = await openKeyring(config.backup.encryption, opts.signal);
  return await restoreSnapshot({
    ...rest,
    store: store ?? await openStore(config),
    chownTo: config.mysql.osUser,
    ...(keyring ? { keyring } : {}),
  });
}

export type { VerificationRecord };
