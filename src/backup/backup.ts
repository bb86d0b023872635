/**
 * Taking snapshots: a hot backup streamed through zstd into the store, hashed and counted on the way (no
 * temporary file, nothing held whole in memory), then the manifest, written last as the commit marker. Also
 * finding the snapshots a store holds.
 *
 * @module
 */

import { CommandFailedError, pipeline } from "../exec.ts";
import type { Flavour } from "../mysql/flavour.ts";
import { parseGtidSet } from "../mysql/gtid.ts";
import type { ObjectInfo, SnapshotStore } from "../storage/store.ts";
import { DigestStream } from "./digest.ts";
import { BackupError, CorruptSnapshotError, withoutLogPrefixes } from "./errors.ts";
import {
  backupTool,
  dataKey,
  formatManifest,
  type Manifest,
  MANIFEST_FORMAT,
  MANIFEST_SUFFIX,
  manifestKey,
  parseBackupLog,
  parseManifest,
  renderBackupName,
} from "./manifest.ts";
import { backupCommand, compressCommand, includeOptionFiles } from "./tools.ts";
import { encryptCommand, encryptionInfo, type Keyring } from "./encryption.ts";
import { errorMessage } from "../text.ts";

/** What {@link takeSnapshot} needs. */
export interface TakeSnapshotOptions {
  /** Where the snapshot goes. */
  readonly store: SnapshotStore;
  /** The flavour of the running server; chooses mariabackup or xtrabackup. */
  readonly flavour: Flavour;
  /** The server's option file (absolute path), read by the backup tool. */
  readonly cnfPath: string;
  /** The server's unix socket (absolute path). */
  readonly socket: string;
  /** The account the backup tool connects as. */
  readonly user: string;
  /**
   * A 0600 option file with the account's password (`[client]` `password=…`), if it needs one. The password
   * never goes on a command line.
   */
  readonly optionFile?: string;
  /** This node's name, recorded in the manifest. */
  readonly nodeName: string;
  /** `SELECT VERSION()` of the server, recorded in the manifest. */
  readonly serverVersion: string;
  /** The snapshot name pattern (`BACKUP_NAME`), with strftime directives rendered in UTC. */
  readonly namePattern: string;
  /**
   * MariaDB: `@@gtid_binlog_state` read just before the backup. Merged with the backup's own position it gives
   * the manifest's `binlogState`.
   */
  readonly binlogStateBefore?: string;
  /**
   * The server's datadir: its size bounds the snapshot's, which a store may need to know in advance (Manta,
   * for streamed objects over 5 GB). Without it, no bound is given.
   */
  readonly datadir?: string;
  /**
   * Encrypts the snapshot (`age`, after zstd, to the keyring's recipients) before it leaves the node; the
   * manifest records the recipients. @default not encrypted
   */
  readonly keyring?: Keyring;
  /** The backup's start time (names it and dates the manifest). @default new Date() */
  readonly now?: Date;
  /** Kills the backup and publishes nothing when aborted. */
  readonly signal?: AbortSignal;
}

/**
 * Takes a hot backup of the running server into the store: `mariabackup --backup --stream=xbstream | zstd`
 * (xtrabackup on MySQL; `| age --encrypt` with a keyring) flows into `store.put()` through a hashing stream, then the manifest is written. Every
 * stage must succeed (pipefail) and the tool must report `completed OK!` and a binlog position; otherwise the
 * data object is deleted, no manifest is written, and the error is thrown.
 *
 * @param opts The store, the server and how to name the snapshot.
 * @returns The manifest written.
 * @throws {BackupError} when a snapshot of that name is already committed, a stage fails, the tool's log
 *   lacks `completed OK!` or the binlog position, the store refuses the data or the manifest, or `signal`
 *   aborts; the cause is attached.
 * @throws {RangeError} when the name pattern renders an invalid name, or the user or a path is invalid
 *   (nothing is run then).
 */
export async function takeSnapshot(opts: TakeSnapshotOptions): Promise<Manifest> {
  const { store, flavour, signal } = opts;
  const now = opts.now ?? new Date();
  const name = renderBackupName(opts.namePattern, now);
  const key = dataKey(name);
  const mKey = manifestKey(name);
  const tool = backupTool(flavour);
  let work: string | undefined;
  let attempted = false;
  try {
    signal?.throwIfAborted();
    let exists: boolean;
    try {
      exists = await hasKey(store, mKey);
    } catch (e) {
      throw new BackupError(name, `cannot list the ${store.kind} store: ${errorMessage(e)}`, undefined, {
        cause: e,
      });
    }
    if (exists) {
      throw new BackupError(
        name,
        `a snapshot of that name already exists in the ${store.kind} store at ${store.location}`,
        "nothing was stored; make BACKUP_NAME give each snapshot a new name (e.g. with %Y-%m-%dT%H-%M-%SZ)",
      );
    }
    let defaultsFile = opts.cnfPath;
    if (opts.optionFile !== undefined || flavour === "mysql") {
      work = await Deno.makeTempDir({ prefix: "autopilot-backup-" });
    }
    if (opts.optionFile !== undefined) {
      defaultsFile = `${work}/defaults.cnf`;
      await Deno.writeTextFile(defaultsFile, includeOptionFiles([opts.cnfPath, opts.optionFile]), {
        mode: 0o600,
      });
    }
    const argv = backupCommand(flavour, {
      defaultsFile,
      user: opts.user,
      socket: opts.socket,
      targetDir: flavour === "mysql" ? `${work}/xtrabackup` : undefined,
    });
    // no bound when the datadir cannot be read: the store's default applies
    const maxBytes = opts.datadir === undefined
      ? undefined
      : await directoryBytes(opts.datadir).then(snapshotSizeBound, () => undefined);
    const digest = new DigestStream();
    let stored: ObjectInfo | undefined;
    let stderrs: string[];
    try {
      const stages = [{ argv }, { argv: compressCommand() }];
      if (opts.keyring) stages.push({ argv: encryptCommand(opts.keyring.recipients) });
      stderrs = await pipeline(stages, {
        sink: async (out) => {
          attempted = true;
          stored = await store.put(key, out.pipeThrough(digest), signal, maxBytes ? { maxBytes } : {});
        },
        signal,
      });
    } catch (e) {
      if (signal?.aborted) throw new BackupError(name, "it was cancelled", undefined, { cause: e });
      if (e instanceof CommandFailedError) {
        throw new BackupError(name, withoutLogPrefixes(e.message), undefined, { cause: e });
      }
      throw new BackupError(name, `the ${store.kind} store refused the data: ${errorMessage(e)}`, undefined, {
        cause: e,
      });
    }
    const log = parseBackupLog(stderrs[0]);
    if (!log.completedOk) {
      throw new BackupError(name, `${tool} exited with code 0 but its log lacks 'completed OK!'`);
    }
    if (!log.binlog) {
      throw new BackupError(
        name,
        `${tool} reported no binlog position`,
        "nothing was stored; run the server with log_bin on, which replicas need anyway",
      );
    }
    try {
      parseGtidSet(flavour, log.gtid);
    } catch (e) {
      throw new BackupError(name, `${tool} reported a GTID position it cannot parse: ${errorMessage(e)}`);
    }
    const { sha256, size } = digest.digest;
    if (!stored || stored.size !== size) {
      throw new BackupError(
        name,
        `the ${store.kind} store holds ${stored?.size ?? 0} bytes of its data but ${size} bytes were sent`,
      );
    }
    const manifest: Manifest = Object.freeze({
      format: MANIFEST_FORMAT,
      name,
      key,
      createdAt: now.toISOString(),
      nodeName: opts.nodeName,
      flavour,
      serverVersion: opts.serverVersion,
      tool,
      compression: "zstd",
      ...(opts.keyring ? { encryption: encryptionInfo(opts.keyring) } : {}),
      sha256,
      size,
      gtid: log.gtid,
      binlog: Object.freeze({ ...log.binlog }),
      ...(flavour === "mariadb" && opts.binlogStateBefore !== undefined
        ? { binlogState: mariadbState(opts.binlogStateBefore, log.gtid) }
        : {}),
    });
    signal?.throwIfAborted();
    try {
      await store.put(
        mKey,
        ReadableStream.from([new TextEncoder().encode(formatManifest(manifest))]),
        signal,
      );
    } catch (e) {
      const problem = `the ${store.kind} store refused its manifest: ${errorMessage(e)}`;
      throw new BackupError(name, problem, undefined, { cause: e });
    }
    return manifest;
  } catch (e) {
    if (attempted) {
      try {
        await store.delete([mKey, key]);
      } catch (d) {
        const err = e instanceof BackupError
          ? e
          : new BackupError(name, errorMessage(e), undefined, { cause: e });
        const advice = `its incomplete data object '${key}' could not be deleted (${errorMessage(d)}); ` +
          "without a manifest it is ignored, but delete it by hand";
        throw new BackupError(name, err.problem, advice, { cause: e });
      }
    }
    if (e instanceof BackupError || e instanceof RangeError) throw e;
    if (signal?.aborted) throw new BackupError(name, "it was cancelled", undefined, { cause: e });
    throw new BackupError(name, errorMessage(e), undefined, { cause: e });
  } finally {
    if (work) await Deno.remove(work, { recursive: true }).catch(() => {});
  }
}

/** Options of {@link listSnapshots} and {@link latestSnapshot}. */
export interface ListSnapshotsOptions {
  /**
   * Called for each manifest that is skipped because it is unreadable, malformed, or does not match its
   * data object (missing, or of another size). @default ignore them
   */
  readonly onInvalid?: (manifestKey: string, error: CorruptSnapshotError) => void;
  /** Stops reading manifests when aborted. */
  readonly signal?: AbortSignal;
}

/** Manifests larger than this are not manifests. */
const MAX_MANIFEST_BYTES = 64 * 1024;

/**
 * The complete snapshots a store holds: each manifest parsed and checked against the listing (its data
 * object must exist with the size it states). A data object without a manifest is an incomplete backup and
 * is not listed.
 *
 * @param store The store to list.
 * @param opts What to do with invalid manifests; a signal.
 * @returns The manifests, newest first (by `createdAt`, then by name).
 * @throws {Error} whatever the store throws when listing or reading fails.
 */
export async function listSnapshots(
  store: SnapshotStore,
  opts: ListSnapshotsOptions = {},
): Promise<Manifest[]> {
  const objects = new Map<string, ObjectInfo>();
  for await (const o of store.list()) objects.set(o.key, o);
  const manifests: Manifest[] = [];
  for (const [key, info] of objects) {
    if (!key.endsWith(MANIFEST_SUFFIX)) continue;
    opts.signal?.throwIfAborted();
    const name = key.slice(0, -MANIFEST_SUFFIX.length);
    const invalid = (problem: string) =>
      opts.onInvalid?.(
        key,
        new CorruptSnapshotError(name, problem, "it is skipped; delete it, or take a new snapshot"),
      );
    if (info.size > MAX_MANIFEST_BYTES) {
      invalid(`its manifest is ${info.size} bytes, more than a manifest can be (${MAX_MANIFEST_BYTES})`);
      continue;
    }
    let manifest: Manifest;
    try {
      manifest = parseManifest(await new Response(await store.get(key, opts.signal)).text(), key);
    } catch (e) {
      if (e instanceof CorruptSnapshotError) {
        opts.onInvalid?.(key, e);
        continue;
      }
      throw e;
    }
    const data = objects.get(manifest.key);
    if (manifest.name !== name) {
      invalid(`its manifest names the snapshot '${manifest.name}'`);
    } else if (!data) {
      invalid(`its data object '${manifest.key}' is missing`);
    } else if (data.size !== manifest.size) {
      invalid(
        `its data object '${manifest.key}' is ${data.size} bytes but the manifest says ${manifest.size}`,
      );
    } else {
      manifests.push(manifest);
    }
  }
  return manifests.sort((a, b) =>
    a.createdAt === b.createdAt
      ? (a.name < b.name ? 1 : a.name > b.name ? -1 : 0)
      : (a.createdAt < b.createdAt ? 1 : -1)
  );
}

/**
 * The newest complete snapshot in a store.
 *
 * @param store The store to look in.
 * @param opts What to do with invalid manifests; a signal.
 * @returns Its manifest, or `undefined` when the store holds no complete snapshot.
 * @throws {Error} whatever the store throws when listing or reading fails.
 */
export async function latestSnapshot(
  store: SnapshotStore,
  opts: ListSnapshotsOptions = {},
): Promise<Manifest | undefined> {
  return (await listSnapshots(store, opts))[0];
}

async function hasKey(store: SnapshotStore, key: string): Promise<boolean> {
  for await (const o of store.list(key)) if (o.key === key) return true;
  return false;
}

/**
 * The binlog state at the snapshot: the state read before the backup (every server's last GTID then; with
 * strict GTIDs, none is past the snapshot) with the snapshot's own position on top.
 */
function mariadbState(before: string, position: string): string {
  const a = parseGtidSet("mariadb", before);
  const b = parseGtidSet("mariadb", position);
  return a.flavour === "mariadb" && b.flavour === "mariadb" ? a.union(b).toString() : position;
}

/**
 * An upper bound on a snapshot's stored size, from its datadir's: compression only shrinks, and what the
 * backup adds (the redo written while it runs, the stream's framing) stays well inside the margin.
 */
export function snapshotSizeBound(datadirBytes: number): number {
  return Math.ceil(datadirBytes * 1.5) + 1024 ** 3;
}

/**
 * The bytes of every regular file below `dir` (symbolic links are not followed). What vanishes during the walk
 * (a running server drops temporary files) counts as nothing.
 *
 * @throws {Deno.errors.NotFound} etc. when `dir` itself cannot be read.
 */
export async function directoryBytes(dir: string): Promise<number> {
  let total = 0;
  for await (const entry of Deno.readDir(dir)) {
    const path = `${dir}/${entry.name}`;
    if (entry.isDirectory) total += await directoryBytes(path).catch(() => 0);
    else if (entry.isFile) total += await Deno.lstat(path).then((s) => s.size, () => 0);
  }
  return total;
}
