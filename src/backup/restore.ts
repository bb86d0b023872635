/**
 * Restoring a snapshot into an empty datadir: stream it from the store through `age -d` (when it is
 * encrypted) and `zstd -d` into the unpacker
 * in a staging directory beside the datadir, verify its SHA-256 and size against the manifest, prepare it,
 * read the GTID position from the backup's own binlog info file, then move it into place with one rename.
 * Until that rename the datadir is never touched; on any failure the staging directory is removed.
 *
 * @module
 */

import { CommandFailedError, pipeline, run } from "../exec.ts";
import { newServerId, writeServerId } from "../server_id.ts";
import { writeRestoredMark } from "../restored.ts";
import type { Flavour } from "../mysql/flavour.ts";
import { parseGtidSet } from "../mysql/gtid.ts";
import { NotFoundError, type SnapshotStore } from "../storage/store.ts";
import { type Digest, hashedSource } from "./digest.ts";
import { CorruptSnapshotError, RestoreError, withoutLogPrefixes } from "./errors.ts";
import {
  backupTool,
  BINLOG_INFO_FILES,
  type BinlogPosition,
  type Manifest,
  parseBinlogInfo,
} from "./manifest.ts";
import { decompressCommand, extractCommand, prepareCommand } from "./tools.ts";
import {
  cannotRestore,
  decryptCommand,
  isDecryptFailure,
  type Keyring,
  withIdentityFile,
} from "./encryption.ts";
import { errorMessage } from "../text.ts";

/** What {@link restoreSnapshot} needs. */
export interface RestoreSnapshotOptions {
  /** Where the snapshot is. */
  readonly store: SnapshotStore;
  /** The snapshot to restore (from `listSnapshots()` or Consul). */
  readonly manifest: Manifest;
  /** The datadir to create (absolute path): it must be missing or empty. Its parent is created if needed. */
  readonly datadir: string;
  /** The flavour of the server that will run on it; must be the snapshot's. */
  readonly flavour: Flavour;
  /** Stops the restore (nothing is left behind) when aborted. */
  readonly signal?: AbortSignal;
  /**
   * The node's age keys (BACKUP_ENCRYPTION_KEY): an encrypted snapshot needs the identity of one of its
   * recipients, checked before anything is touched. @default none: only unencrypted snapshots restore
   */
  readonly keyring?: Keyring;
  /** The OS account (`mysql`, or `user:group`) that gets the restored files (`chown -R`). */
  readonly chownTo?: string;
  /**
   * Runs on the complete, prepared copy (its directory is the argument) just before it is moved into place:
   * e.g. to write the server's configuration for it, so that a server started the moment it appears uses it.
   */
  readonly beforeMove?: (staged: string) => Promise<void>;
}

/** Where a restored datadir stands: what to tell replication. */
export interface RestoreResult {
  /**
   * The backup's GTID position, from its own binlog info file, in the flavour's format; on MariaDB, set it
   * with `SET GLOBAL gtid_slave_pos` (the restored `mysql.gtid_slave_pos` is the source's, and stale).
   */
  readonly gtid: string;
  /** The source's binlog position at the backup (valid on the source only). */
  readonly binlog: BinlogPosition;
  /** MariaDB: the snapshot's binlog state, when its manifest records one (see {@link Manifest}). */
  readonly binlogState?: string;
}

/**
 * Restores a snapshot into a missing or empty datadir (the server must not be running on it).
 *
 * The data is extracted into a staging directory on the datadir's filesystem, hashed on the way, compared with
 * the manifest before it is prepared, prepared, and then moved into place. The staging directory is
 * `<datadir>.restore-<random>`, renamed into place in one step; it is `<datadir>/.restore-<random>`, whose
 * entries are moved up one by one (`mysql/` last, so a datadir with `mysql/` is complete), when the datadir is
 * a mount point (a container volume) or this process may not write beside it (Deno permissions). A datadir
 * holding nothing but such a directory, left by a crashed restore, counts as empty.
 *
 * @param opts The store, the snapshot, the datadir.
 * @returns The GTID and binlog position the backup itself recorded.
 * @throws {CorruptSnapshotError} when the data object is missing, differs from the manifest (SHA-256 or
 *   size), cannot be decrypted or decompressed, or lacks a readable binlog info file matching the manifest.
 * @throws {RestoreError} when the datadir is not empty or not a directory, the snapshot is of another
 *   flavour, it is encrypted and `keyring` holds no identity of its recipients, or it is not and `keyring` holds an identity without BACKUP_ALLOW_UNENCRYPTED (both checked first), the data cannot be read from the store or unpacked, the prepare step or `chown` fails, or
 *   `signal` aborts. In every case the datadir is as it was and no staging directory is left.
 * @throws {RangeError} for a relative datadir or an invalid `chownTo`.
 */
export async function restoreSnapshot(opts: RestoreSnapshotOptions): Promise<RestoreResult> {
  const { manifest, flavour, signal } = opts;
  const datadir = opts.datadir.replace(/(.)\/+$/, "$1");
  const name = manifest.name;
  const refuse = (problem: string, advice?: string): never => {
    throw new RestoreError(name, datadir, problem, advice);
  };
  if (!datadir.startsWith("/") || datadir === "/") {
    throw new RangeError(
      `Cannot restore into '${opts.datadir}': the datadir must be an absolute path below /`,
    );
  }
  if (opts.chownTo !== undefined && !/^[A-Za-z0-9_.-]{1,32}(:[A-Za-z0-9_.-]{1,32})?$/.test(opts.chownTo)) {
    throw new RangeError(
      `Cannot give the restored files to '${opts.chownTo}': use an account name, or 'user:group'`,
    );
  }
  if (manifest.flavour !== flavour) {
    refuse(
      `it was taken from a ${manifest.flavour} server but this node runs ${flavour}`,
      `the datadir was not touched; restore a ${flavour} snapshot, or run the ${manifest.flavour} image`,
    );
  }
  const keyProblem = cannotRestore(manifest.encryption, opts.keyring, "it");
  if (keyProblem !== undefined) refuse(keyProblem, "nothing was touched");
  signal?.throwIfAborted();

  let target: Target | undefined;
  let staging: string;
  try {
    target = await inspect(datadir, refuse);
    const suffix = crypto.randomUUID().replaceAll("-", "").slice(0, 12);
    if (target.stageInside) {
      await Deno.mkdir(datadir, { recursive: true });
      staging = `${datadir}/.restore-${suffix}`;
    } else {
      await Deno.mkdir(datadir.slice(0, datadir.lastIndexOf("/")) || "/", { recursive: true });
      staging = `${datadir}.restore-${suffix}`;
    }
    await Deno.mkdir(staging, { mode: 0o750 });
  } catch (e) {
    if (e instanceof RestoreError) throw e;
    if (target?.stageInside && !target.exists) await Deno.remove(datadir).catch(() => {});
    throw new RestoreError(name, datadir, `cannot make a staging directory: ${errorMessage(e)}`, undefined, {
      cause: e,
    });
  }
  const { exists, stageInside } = target;
  try {
    await extract(opts, datadir, staging);
    const tool = backupTool(flavour);
    try {
      await run(prepareCommand(flavour, staging), { signal });
    } catch (e) {
      if (!(e instanceof CommandFailedError) || signal?.aborted) throw e;
      refuse(
        `${tool} --prepare failed: ${withoutLogPrefixes(e.message)}`,
        "the datadir was not touched; fix the cause, or restore an older snapshot",
      );
    }
    const info = await readBinlogInfo(staging, manifest);
    await writeServerId(staging, newServerId()); // never the source's id: see src/server_id.ts
    // where replication starts, inside the copy: it appears with the datadir (see src/restored.ts)
    await writeRestoredMark(staging, {
      snapshot: name,
      gtid: info.gtid,
      ...(manifest.binlogState !== undefined ? { binlogState: manifest.binlogState } : {}),
    });
    if (opts.chownTo !== undefined) {
      const owner = opts.chownTo.includes(":") ? opts.chownTo : `${opts.chownTo}:`;
      try {
        await run(["chown", "-R", owner, staging], { signal });
      } catch (e) {
        if (!(e instanceof CommandFailedError) || signal?.aborted) throw e;
        refuse(`cannot give the files to '${opts.chownTo}': ${withoutLogPrefixes(e.message)}`);
      }
    }
    await opts.beforeMove?.(staging);
    signal?.throwIfAborted();
    if (stageInside) {
      await moveEntries(staging, datadir);
      await Deno.remove(staging);
    } else {
      if (exists) await Deno.remove(datadir); // empty: checked above, and remove() refuses otherwise
      await Deno.rename(staging, datadir);
    }
    return {
      gtid: info.gtid,
      binlog: { file: info.file, position: info.position },
      ...(manifest.binlogState !== undefined ? { binlogState: manifest.binlogState } : {}),
    };
  } catch (e) {
    await Deno.remove(staging, { recursive: true }).catch(() => {});
    if (!exists) await Deno.remove(datadir).catch(() => {}); // made for an inside staging dir
    if (e instanceof CorruptSnapshotError || e instanceof RestoreError) throw e;
    if (signal?.aborted) {
      throw new RestoreError(name, datadir, "it was cancelled", undefined, { cause: e });
    }
    throw new RestoreError(name, datadir, errorMessage(e), undefined, { cause: e });
  }
}

/** Streams the data object into `staging` and checks it against the manifest. */
async function extract(opts: RestoreSnapshotOptions, datadir: string, staging: string): Promise<void> {
  const { store, manifest, flavour, signal } = opts;
  const name = manifest.name;
  const failed = (problem: string, cause: unknown, advice?: string): RestoreError =>
    new RestoreError(name, datadir, signal?.aborted ? "it was cancelled" : problem, advice, { cause });
  let body: ReadableStream<Uint8Array>;
  try {
    body = await store.get(manifest.key, signal);
  } catch (e) {
    if (!(e instanceof NotFoundError)) {
      throw failed(`cannot read it from the ${store.kind} store: ${errorMessage(e)}`, e);
    }
    throw new CorruptSnapshotError(
      name,
      `its data object '${manifest.key}' is missing from the ${store.kind} store`,
    );
  }
  const source = hashedSource(body, signal);
  let unpackError: unknown;
  const unpack = async (identityFile?: string) => {
    try {
      await pipeline([
        ...(identityFile !== undefined ? [{ argv: decryptCommand(identityFile) }] : []),
        { argv: decompressCommand() },
        { argv: extractCommand(flavour, staging) },
      ], { source: source.readable, signal });
    } catch (e) {
      unpackError = e;
    }
  };
  if (manifest.encryption !== undefined && opts.keyring !== undefined) {
    await withIdentityFile(opts.keyring, unpack);
  } else {
    await unpack();
  }
  let digest: Digest;
  try {
    digest = await source.done;
  } catch (e) {
    throw failed(`cannot read it from the ${store.kind} store: ${errorMessage(e)}`, e);
  }
  if (digest.size !== manifest.size) {
    throw new CorruptSnapshotError(
      name,
      `its data object is ${digest.size} bytes but the manifest says ${manifest.size}`,
    );
  }
  if (digest.sha256 !== manifest.sha256) {
    throw new CorruptSnapshotError(
      name,
      `its SHA-256 is ${digest.sha256.slice(0, 12)}… but the manifest says ${manifest.sha256.slice(0, 12)}…`,
    );
  }
  if (unpackError === undefined) return;
  // The bytes are the manifest's and the identity is one of its recipients: age rejecting them means they
  // were bad from the start.
  if (!signal?.aborted && isDecryptFailure(unpackError)) {
    const problem = `it does not decrypt: ${withoutLogPrefixes(unpackError.message)}`;
    throw new CorruptSnapshotError(name, problem, undefined, { cause: unpackError });
  }
  // These are the bytes the manifest describes: zstd rejecting them means they were bad from the start, while
  // the unpacker failing on sound input is most likely a local problem (disk full, permissions).
  if (
    !signal?.aborted && unpackError instanceof CommandFailedError &&
    unpackError.program === decompressCommand()[0]
  ) {
    const problem = `it does not decompress: ${withoutLogPrefixes(unpackError.message)}`;
    throw new CorruptSnapshotError(name, problem, undefined, { cause: unpackError });
  }
  throw failed(
    `cannot unpack it: ${withoutLogPrefixes(errorMessage(unpackError))}`,
    unpackError,
    "the datadir was not touched; if the cause is local (disk full, permissions) fix it and restore again, " +
      "else restore an older snapshot",
  );
}

/** Reads the binlog info file the backup wrote, and checks it against the manifest. */
async function readBinlogInfo(dir: string, manifest: Manifest): Promise<ReturnType<typeof parseBinlogInfo>> {
  let text: string | undefined;
  let file = "";
  for (const candidate of BINLOG_INFO_FILES) {
    try {
      text = await Deno.readTextFile(`${dir}/${candidate}`);
      file = candidate;
      break;
    } catch (e) {
      if (!(e instanceof Deno.errors.NotFound)) throw e;
    }
  }
  if (text === undefined) {
    throw new CorruptSnapshotError(
      manifest.name,
      `it holds no ${BINLOG_INFO_FILES.join(" or ")}, so its GTID position is unknown`,
    );
  }
  let info: ReturnType<typeof parseBinlogInfo>;
  try {
    info = parseBinlogInfo(text);
  } catch (e) {
    throw new CorruptSnapshotError(manifest.name, `its ${file} is unreadable (${errorMessage(e)})`);
  }
  if (!sameGtid(manifest.flavour, info.gtid, manifest.gtid)) {
    throw new CorruptSnapshotError(
      manifest.name,
      `its ${file} says GTID '${info.gtid}' but the manifest says '${manifest.gtid}'`,
    );
  }
  return info;
}

function sameGtid(flavour: Flavour, a: string, b: string): boolean {
  try {
    return parseGtidSet(flavour, a).toString() === parseGtidSet(flavour, b).toString();
  } catch {
    return false;
  }
}

interface Target {
  readonly exists: boolean;
  /** Stage inside the datadir: it is a mount point, or this process may not write beside it. */
  readonly stageInside: boolean;
}

/** A staging directory this module makes inside a datadir. */
const INSIDE_STAGING = /^\.restore-[0-9a-f]{12}$/;

async function inspect(
  datadir: string,
  refuse: (problem: string, advice?: string) => never,
): Promise<Target> {
  const parent = datadir.slice(0, datadir.lastIndexOf("/")) || "/";
  const besideAllowed = (["read", "write"] as const).every((name) =>
    Deno.permissions.querySync({ name, path: `${datadir}.restore-x` }).state === "granted"
  );
  let stat: Deno.FileInfo;
  try {
    stat = await Deno.stat(datadir);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return { exists: false, stageInside: !besideAllowed };
    throw e;
  }
  if (!stat.isDirectory) {
    refuse("it is not a directory", "nothing was touched; move it aside, then restore again");
  }
  const names: string[] = [];
  const leftovers: string[] = [];
  for await (const entry of Deno.readDir(datadir)) {
    if (entry.isDirectory && INSIDE_STAGING.test(entry.name)) {
      leftovers.push(entry.name);
      continue;
    }
    names.push(entry.name);
    if (names.length === 3) break;
  }
  if (names.length > 0) {
    const shown = names.map((n) => `'${n}'`).join(", ");
    refuse(
      `the datadir is not empty (it holds ${shown}${names.length === 3 ? ", …" : ""})`,
      "nothing was touched; move it aside or empty it, then restore again",
    );
  }
  for (const n of leftovers) await Deno.remove(`${datadir}/${n}`, { recursive: true });
  const mountPoint = stat.dev !== (await Deno.stat(parent)).dev;
  return { exists: true, stageInside: mountPoint || !besideAllowed };
}

/**
 * Moves every entry of `from` into `to` (same filesystem), `mysql/` last; on failure moves back what was
 * moved.
 */
async function moveEntries(from: string, to: string): Promise<void> {
  const names = (await Array.fromAsync(Deno.readDir(from))).map((e) => e.name)
    .sort((a, b) => Number(a === "mysql") - Number(b === "mysql"));
  const moved: string[] = [];
  try {
    for (const n of names) {
      await Deno.rename(`${from}/${n}`, `${to}/${n}`);
      moved.push(n);
    }
  } catch (e) {
    for (const n of moved.reverse()) await Deno.rename(`${to}/${n}`, `${from}/${n}`).catch(() => {});
    throw e;
  }
}
