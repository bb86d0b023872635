/**
 * `autopilot restore [NAME]`: restores a snapshot into the empty datadir of a stopped node, and leaves the
 * node's state as pre-start leaves it after a restore, so that the next `pre-start` keeps the datadir and
 * `health` starts replication from the snapshot's GTID position.
 *
 * @module
 */
import { getLogger } from "@logtape/logtape";
import type { Config } from "../config.ts";
import { CORRUPT_ADVICE, CorruptSnapshotError } from "../backup/errors.ts";
import { clusterPrefix, manifestKey } from "../backup/manifest.ts";
import { restoreConfiguredSnapshot } from "../snapshots.ts";
import { describeSource, findSnapshot, SERVER_BINARIES } from "../backup/verify.ts";
import { CommandFailedError, run } from "../exec.ts";
import { type Flavour, flavourFromBinaryVersion } from "../mysql/flavour.ts";
import { pidFilePath } from "../mysql/mycnf.ts";
import { readState, StateError, writeState } from "../state.ts";
import { openStore } from "../storage/open.ts";
import { openKeyring } from "../backup/encryption.ts";
import { lookupArchiveHead, lookupPublished, operatorError } from "../operator.ts";
import { type CommandContext, EXIT } from "../command.ts";
import { print, printError } from "../output.ts";
import {
  isoSecond,
  parseTargetGtid,
  parseTargetTime,
  RecoveryPointError,
  type RecoveryTarget,
} from "../binlog/plan.ts";
import { ReplayError, restoreToPoint } from "../binlog/replay.ts";

const log = getLogger(["autopilot", "restore"]);

/** A staging directory a crashed restore left inside the datadir (restoreSnapshot removes it). */
const LEFTOVER_STAGING = /^\.restore-[0-9a-f]{12}$/;

/** What `--to-time`, `--to-gtid` and `--to-end` ask for, GTID text not yet checked (the flavour is not known). */
type PointFlags = { kind: "end" } | { kind: "time"; at: Date } | { kind: "gtid"; text: string };

/** `autopilot restore [NAME | --to-time T | --to-gtid G | --to-end]`. */
export async function runRestore(ctx: CommandContext): Promise<number> {
  const { config } = ctx;
  const given = (["to-time", "to-gtid", "to-end"] as const).filter((f) => ctx.flags[f] !== undefined);
  if (given.length > 1 || (given.length === 1 && ctx.positionals.length > 0)) {
    printError(
      "autopilot restore: give a snapshot NAME or one of --to-time, --to-gtid, --to-end, not several: " +
        "run 'autopilot help restore'",
    );
    return EXIT.usage;
  }
  let point: PointFlags | undefined;
  try {
    if (ctx.flags["to-time"] !== undefined) {
      point = { kind: "time", at: parseTargetTime(String(ctx.flags["to-time"])) };
    }
    if (ctx.flags["to-gtid"] !== undefined) point = { kind: "gtid", text: String(ctx.flags["to-gtid"]) };
    if (ctx.flags["to-end"] === true) point = { kind: "end" };
  } catch (e) {
    printError(`autopilot restore: --to-time ${(e as Error).message}; nothing was touched`);
    return EXIT.usage;
  }
  if (ctx.positionals.length > 1) {
    printError(
      `autopilot restore: too many arguments: ${ctx.positionals.join(" ")}: run 'autopilot help restore'`,
    );
    return EXIT.usage;
  }
  const name = ctx.positionals[0];
  if (name !== undefined) {
    try {
      manifestKey(name);
    } catch (e) {
      printError(`autopilot restore: ${(e as Error).message}: run 'autopilot backup list' for the names`);
      return EXIT.usage;
    }
  }
  const refusal = await serverRunning(config) ?? await datadirInUse(config.mysql.datadir);
  if (refusal !== undefined) {
    printError(`autopilot restore: ${refusal}; nothing was touched`);
    return EXIT.failed;
  }
  try {
    return point === undefined ? await restore(config, name) : await restorePoint(config, point);
  } catch (e) {
    if (e instanceof RecoveryPointError || e instanceof ReplayError) {
      printError(`autopilot restore: ${e.message}`);
      return EXIT.failed;
    }
    if (e instanceof CorruptSnapshotError && e.message.endsWith(CORRUPT_ADVICE)) {
      printError(
        `autopilot restore: Snapshot '${e.snapshot}' is corrupt: ${e.problem}: the datadir was not touched; ` +
          "restore another snapshot (autopilot backup list), or take a new one on the primary",
      );
      return EXIT.failed;
    }
    const line = operatorError(e) ?? (e instanceof StateError ? e.message : undefined);
    if (line === undefined) throw e;
    printError(`autopilot restore: ${line}`);
    return EXIT.failed;
  }
}

async function restore(config: Config, name: string | undefined): Promise<number> {
  const datadir = config.mysql.datadir;
  const state = await readState(config.node.stateDir);
  const flavour = state.flavour ?? await installedFlavour(config);
  if (flavour === undefined) return noServer();
  const store = await openStore(config);
  const lookup = name === undefined ? await lookupPublished(config) : {};
  if (lookup.error !== undefined) {
    printError(
      `autopilot restore: cannot read the last snapshot from Consul (${lookup.error}): ` +
        "restoring the newest snapshot in the store instead",
    );
  }
  const { manifest, source } = await findSnapshot(store, {
    ...(name !== undefined ? { name } : {}),
    ...(lookup.manifest ? { published: lookup.manifest } : {}),
  });
  log.info("Restoring snapshot {name} ({source}, GTID {gtid}) into {datadir}", {
    name: manifest.name,
    source: describeSource(source),
    gtid: manifest.gtid,
    datadir,
  });
  const restored = await restoreConfiguredSnapshot(config, { store, manifest, datadir, flavour });
  // As after pre-start's own restore, health starts replication from the mark the restore left in the datadir.
  await writeState(config.node.stateDir, { ...state, flavour });
  print(
    `Restored snapshot '${manifest.name}' (taken ${manifest.createdAt} on ${manifest.nodeName}) into ${datadir}: ` +
      `GTID ${
        restored.gtid || "(none)"
      }; start the node: health will replicate from the primary after that position`,
  );
  return EXIT.ok;
}

function optionalHead(head: string | undefined): { head?: string } {
  return head === undefined ? {} : { head };
}

/** A point-in-time restore: the newest snapshot before the point, then the archived binlogs up to it. */
async function restorePoint(config: Config, point: PointFlags): Promise<number> {
  const state = await readState(config.node.stateDir);
  const flavour = state.flavour ?? await installedFlavour(config);
  if (flavour === undefined) return noServer();
  let target: RecoveryTarget;
  try {
    target = point.kind === "gtid" ? { kind: "gtid", gtid: parseTargetGtid(flavour, point.text) } : point;
  } catch (e) {
    printError(`autopilot restore: --to-gtid ${(e as Error).message}; nothing was touched`);
    return EXIT.usage;
  }
  // Ctrl-C or a stop signal: stop the throwaway server and remove the staging and work directories first, as
  // `backup verify` does.
  const interrupted = new AbortController();
  const stop = () => interrupted.abort(new Error("interrupted by a signal"));
  const signals = ["SIGINT", "SIGTERM"] as const;
  for (const s of signals) Deno.addSignalListener(s, stop);
  const keyring = await openKeyring(config.backup.encryption);
  let r;
  try {
    r = await restoreToPoint({
      store: await openStore(config),
      ...(keyring ? { keyring } : {}),
      flavour,
      datadir: config.mysql.datadir,
      target,
      cluster: clusterPrefix(config.backup.name),
      ...optionalHead(await lookupArchiveHead(config)),
      tmpdir: config.mysql.tmpdir,
      osUser: config.mysql.osUser,
      signal: interrupted.signal,
    });
  } catch (e) {
    if (interrupted.signal.aborted) {
      printError(
        "autopilot restore: interrupted; the throwaway server was stopped and the staging and work " +
          "directories removed",
      );
      return EXIT.failed;
    }
    throw e;
  } finally {
    for (const s of signals) Deno.removeSignalListener(s, stop);
  }
  await writeState(config.node.stateDir, { ...state, flavour });
  const mib = r.replayedBytes / 2 ** 20;
  print(
    `Restored snapshot '${r.manifest.name}' (taken ${r.manifest.createdAt}) and ${r.plan.steps.length} archived ` +
      `binlog(s) (${mib.toFixed(1)} MiB replayed in ${
        (r.replayMs / 1000).toFixed(1)
      } s) into ${config.mysql.datadir}: ` +
      `GTID ${r.gtid || "(none)"}${
        r.plan.lastTime !== undefined ? `, last transaction at ${isoSecond(r.plan.lastTime)}` : ""
      }; ` +
      "start the node: with no primary in Consul it becomes the primary of a new cluster",
  );
  if (r.plan.note) print(`Note: ${r.plan.note}`);
  return EXIT.ok;
}

/** Why a server may be running on this node (it answers on the socket, or its pid file exists), or undefined. */
async function serverRunning(config: Config): Promise<string | undefined> {
  const socket = config.mysql.socket;
  try {
    const conn = await Deno.connect({ transport: "unix", path: socket });
    conn.close();
    return `a server answers on ${socket}: stop mysqld first`;
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound || e instanceof Deno.errors.ConnectionRefused)) {
      return `cannot tell whether a server answers on ${socket} (${(e as Error).message}): stop mysqld first`;
    }
  }
  const pidFile = pidFilePath(socket);
  let pid: string;
  try {
    pid = (await Deno.readTextFile(pidFile)).trim();
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return undefined;
    return `cannot read mysqld's pid file ${pidFile} (${(e as Error).message})`;
  }
  return `mysqld's pid file ${pidFile} names process ${
    pid || "(none)"
  }: a server may be starting or stopping; ` +
    "stop it, or delete the file if no mysqld runs";
}

/** Why the datadir cannot take a restore (it holds something, or is not a directory), or undefined. */
async function datadirInUse(datadir: string): Promise<string | undefined> {
  const names: string[] = [];
  try {
    for await (const entry of Deno.readDir(datadir)) {
      if (entry.isDirectory && LEFTOVER_STAGING.test(entry.name)) continue;
      names.push(`'${entry.name}'`);
      if (names.length === 3) break;
    }
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return undefined;
    if (e instanceof Deno.errors.NotADirectory) return `${datadir} (MYSQL_DATADIR) is not a directory`;
    return `cannot read ${datadir} (MYSQL_DATADIR): ${(e as Error).message}`;
  }
  if (names.length === 0) return undefined;
  return `${datadir} (MYSQL_DATADIR) is not empty (it holds ${names.join(", ")}${
    names.length === 3 ? ", …" : ""
  }): restore only into the empty datadir of a stopped node; move it aside first`;
}

/** No flavour is known and no server is installed: one line, exit 1. */
function noServer(): number {
  printError(
    "autopilot restore: no MySQL or MariaDB server is installed (neither mariadbd nor mysqld runs): " +
      "set MYSQL_FLAVOUR, or run this where the server is installed",
  );
  return EXIT.failed;
}

/** The flavour MYSQL_FLAVOUR names, else the one whose server binary is installed. */
async function installedFlavour(config: Config): Promise<Flavour | undefined> {
  if (config.mysql.flavour !== "auto") return config.mysql.flavour;
  for (const binary of [SERVER_BINARIES.mariadb, SERVER_BINARIES.mysql]) {
    try {
      const flavour = flavourFromBinaryVersion((await run([binary, "--version"])).stdout);
      if (flavour) return flavour;
    } catch (e) {
      if (!(e instanceof CommandFailedError)) throw e;
    }
  }
  return undefined;
}
