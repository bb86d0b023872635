/**
 * Taking a snapshot and telling the cluster about it: the store gets the data and its manifest, then Consul's
 * LAST_BACKUP_KEY gets the manifest (what new replicas restore) and LAST_BINLOG_KEY the binlog file current at
 * the snapshot. Consul is written only after the snapshot is completely stored.
 *
 * @module
 */
import type { Config } from "./config.ts";
import type { ConsulStore } from "./consul.ts";
import { takeSnapshot } from "./backup/backup.ts";
import { type Manifest, parseManifest } from "./backup/manifest.ts";
import type { MysqlClient } from "./mysql/client.ts";
import { localAdminUser } from "./mysql/bootstrap.ts";
import type { Flavour } from "./mysql/flavour.ts";
import { openStore } from "./storage/open.ts";

/**
 * Takes a hot snapshot of the local server, stores it, and publishes it in Consul.
 *
 * @returns The snapshot's manifest.
 */
export async function takeAndPublishSnapshot(
  config: Config,
  consul: ConsulStore,
  flavour: Flavour,
  db: MysqlClient,
  signal?: AbortSignal,
): Promise<Manifest> {
  const store = await openStore(config);
  const version = await db.version(signal);
  const manifest = await takeSnapshot({
    store,
    flavour,
    cnfPath: config.mysql.cnfPath,
    socket: config.mysql.socket,
    user: localAdminUser(flavour),
    nodeName: config.node.name,
    serverVersion: version.text,
    namePattern: config.backup.name,
    ...(signal ? { signal } : {}),
  });
  await consul.putJson(config.keys.lastBackup, manifest);
  await consul.put(config.keys.lastBinlog, manifest.binlog.file);
  return manifest;
}

/**
 * The snapshot Consul names as the latest, if any.
 *
 * @throws {CorruptSnapshotError} if the key holds something that is not a valid manifest.
 */
export async function publishedSnapshot(config: Config, consul: ConsulStore): Promise<Manifest | undefined> {
  const entry = await consul.get(config.keys.lastBackup);
  if (entry === undefined || entry.value.trim() === "") return undefined;
  return parseManifest(entry.value, `Consul key ${config.keys.lastBackup}`);
}
