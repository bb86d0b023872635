/**
 * Rebuilding an errant node (REBUILD_ERRANT_NODE, opt-in): its datadir holds transactions the primary lacks, so
 * it cannot rejoin. The datadir is moved aside, never deleted, and a fresh one is restored from the latest
 * snapshot; the node then replicates from the snapshot's position like any new replica.
 *
 * The order avoids ever running two servers on one datadir, or one server on a half-moved one, even though
 * ContainerPilot restarts mysqld the moment it exits:
 * 1. Check everything first (the snapshot has nothing the primary lacks; this node's BACKUP_ENCRYPTION_KEY
 *    decrypts it; the datadir can be renamed in one step), so a refusal touches nothing.
 * 2. Rename the datadir to `<datadir>.errant-<time>` while mysqld still runs. mysqld works relative to the
 *    directory it changed into at start, so it goes on in the renamed directory.
 * 3. Shut mysqld down cleanly and wait until it has exited. Any restart ContainerPilot makes meanwhile finds
 *    no datadir and stops at once.
 * 4. Restore the snapshot; its last step renames a complete, prepared datadir into place, so the next restart
 *    of mysqld starts on it. MYSQL_CNF is rewritten with the new copy's server_id (src/server_id.ts) just
 *    before that rename. This step is repeated by the next health pass if a pass is cut short (it runs inside
 *    ContainerPilot's health check, so a dataset must restore within that check's timeout).
 *
 * @module
 */
import { getLogger } from "@logtape/logtape";
import type { Config } from "./config.ts";
import { restoreConfiguredSnapshot } from "./snapshots.ts";
import type { Manifest } from "./backup/manifest.ts";
import type { MysqlServer } from "./mysql/server.ts";
import type { Flavour } from "./mysql/flavour.ts";
import { subtractGtids } from "./mysql/gtid.ts";
import { cannotRestore, openKeyring } from "./backup/encryption.ts";
import { errorMessage } from "./text.ts";
import {
  chooseBufferPoolLogged,
  shutDownLocalServer,
  waitForServerExit,
  writeServerConfig,
} from "./local.ts";

const log = getLogger(["autopilot", "rebuild"]);

/** The rebuild was refused before anything was touched. */
export class RebuildRefusedError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "RebuildRefusedError";
  }
}

/** How long mysqld may take to shut down. */
const SHUTDOWN_TIMEOUT_MS = 100_000;

function notStopped(): Error {
  return new Error(`mysqld did not stop within ${SHUTDOWN_TIMEOUT_MS / 1000} s after SHUTDOWN`);
}

/**
 * Step 1: checks that the rebuild can be done, then moves the errant datadir aside and stops mysqld.
 *
 * @param primaryExecuted The primary's executed GTIDs: the snapshot must hold nothing beyond them.
 * @param onMoved Runs right after the rename, before mysqld is stopped (to record the rebuild in progress).
 * @returns Where the old datadir went; mysqld is stopped on return.
 * @throws {RebuildRefusedError} before anything is touched; other errors after the datadir was moved aside.
 */
export async function moveErrantDatadirAside(
  config: Config,
  flavour: Flavour,
  server: MysqlServer,
  manifest: Manifest | undefined,
  primaryExecuted: string,
  onMoved: (aside: string) => Promise<void>,
): Promise<string> {
  const datadir = config.mysql.datadir.replace(/(.)\/+$/, "$1");
  if (manifest === undefined) {
    throw new RebuildRefusedError("no snapshot exists to rebuild from (LAST_BACKUP_KEY is empty)");
  }
  if (manifest.flavour !== flavour) {
    throw new RebuildRefusedError(
      `the last snapshot ${manifest.name} is of ${manifest.flavour}, not ${flavour}`,
    );
  }
  const beyond = subtractGtids(flavour, manifest.gtid, primaryExecuted).toString();
  if (beyond !== "") {
    throw new RebuildRefusedError(
      `the last snapshot ${manifest.name} has transactions ${beyond} the primary lacks: take a new one there`,
    );
  }
  // The keys before anything moves: a node that cannot decrypt the snapshot would be left without a datadir.
  const keyring = await openKeyring(config.backup.encryption).catch((e: unknown) => {
    throw new RebuildRefusedError(errorMessage(e));
  });
  const keyProblem = cannotRestore(manifest.encryption, keyring, `the last snapshot ${manifest.name}`);
  if (keyProblem !== undefined) throw new RebuildRefusedError(keyProblem);
  const aside = `${datadir}.errant-${new Date().toISOString().replace(/[:.]/g, "-")}`;
  await checkMovable(datadir, aside);

  log.warn("Moving the errant datadir {datadir} aside to {aside} (kept, never deleted)", { datadir, aside });
  await Deno.rename(datadir, aside);
  await onMoved(aside);
  log.info("Shutting mysqld down; it restarts on the datadir restored from {name}", { name: manifest.name });
  if (!(await shutDownLocalServer(config, server, SHUTDOWN_TIMEOUT_MS))) {
    throw notStopped();
  }
  return aside;
}

/**
 * Step 2, safe to repeat (a health pass cut short by its timeout leaves it to the next one): restores the
 * snapshot into the missing datadir. MYSQL_CNF is rewritten with the new copy's server_id before the copy is
 * moved into place, so a mysqld that ContainerPilot starts the moment it appears already uses that id.
 *
 * @returns The GTID position the restored datadir starts from.
 */
export async function restoreRebuiltDatadir(
  config: Config,
  flavour: Flavour,
  manifest: Manifest,
  reportHost: string,
): Promise<string> {
  const datadir = config.mysql.datadir.replace(/(.)\/+$/, "$1");
  if (!(await waitForServerExit(config, SHUTDOWN_TIMEOUT_MS))) {
    throw notStopped();
  }
  // What a restore cut short left beside the datadir (nothing else restores into it while this one runs).
  const parent = datadir.slice(0, datadir.lastIndexOf("/")) || "/";
  const base = datadir.slice(datadir.lastIndexOf("/") + 1);
  for await (const entry of Deno.readDir(parent)) {
    if (entry.isDirectory && entry.name.startsWith(`${base}.restore-`)) {
      await Deno.remove(`${parent}/${entry.name}`, { recursive: true });
    }
  }
  const pool = chooseBufferPoolLogged(config, log);
  const restored = await restoreConfiguredSnapshot(config, {
    manifest,
    datadir,
    flavour,
    beforeMove: async (staged) => {
      await writeServerConfig(config, flavour, reportHost, pool, staged);
    },
  });
  return restored.gtid;
}

/** Refuses unless `datadir` can be renamed to `aside` in one step (same filesystem, permitted, free name). */
async function checkMovable(datadir: string, aside: string): Promise<void> {
  const parent = datadir.slice(0, datadir.lastIndexOf("/")) || "/";
  const advice = "make MYSQL_DATADIR a subdirectory of the volume (for example /var/lib/mysql/data)";
  if (Deno.permissions.querySync({ name: "write", path: aside }).state !== "granted") {
    throw new RebuildRefusedError(`autopilot may not write ${aside} beside the datadir: ${advice}`);
  }
  const [here, above] = await Promise.all([Deno.stat(datadir), Deno.stat(parent)]);
  if (here.dev !== above.dev) {
    throw new RebuildRefusedError(`${datadir} is a mount point, so it cannot be moved aside: ${advice}`);
  }
  const taken = await Deno.stat(aside).then(() => true, () => false);
  if (taken) throw new RebuildRefusedError(`${aside} already exists`);
}
