/**
 * REBUILD_ERRANT_NODE as a health pass runs it: move the errant datadir aside and restore the latest snapshot
 * (the mechanics are src/rebuild.ts, loaded only when a rebuild runs). mysqld is stopped once the datadir is
 * moved; ContainerPilot restarts it on the restored datadir, and a later pass replicates from the snapshot's
 * position. A refusal leaves everything as it was and the node errant.
 *
 * @module
 */
import { getLogger } from "@logtape/logtape";
import type { Config } from "../config.ts";
import type { ClusterKv } from "../cluster_kv.ts";
import type { MysqlServer } from "../mysql/server.ts";
import type { Flavour } from "../mysql/flavour.ts";
import { readRestoredMark } from "../restored.ts";
import type { StateStore } from "../state.ts";
import type { ErrantFound, Outcome } from "./actions.ts";
import type { PrimaryRecord } from "./decide.ts";

const log = getLogger(["autopilot", "health"]);

/** What a rebuild needs. */
export interface RebuildArgs {
  readonly config: Config;
  readonly kv: ClusterKv;
  readonly flavour: Flavour;
  readonly state: StateStore;
  /** This node's address, reported to the source by the restored server. */
  readonly address: string;
}

/**
 * A node that must turn read-only while another node holds the primary lock (an old primary back from a cut),
 * with SEMI_SYNC on, MariaDB, and commits waiting for an acknowledgement that can never come: SET GLOBAL
 * read_only would wait for those commits for ever (measured on 10.11.19), and they were never acknowledged.
 * mysqld is killed instead; it restarts read-only and in the replica role, its crash recovery discards the
 * tail (src/errant.ts says why that is safe), and the node rejoins the new primary.
 *
 * @returns The outcome to report when mysqld was killed; undefined when this does not apply (fence as usual).
 */
export async function discardUnacknowledgedTail(
  a: {
    readonly config: Config;
    readonly flavour: Flavour;
    readonly self: PrimaryRecord;
    readonly session?: string;
  },
  lock: { readonly session?: string; readonly record?: PrimaryRecord } | undefined,
): Promise<Outcome | undefined> {
  const errant = await import("../errant.ts");
  const applies = errant.tailDiscardApplies({
    flavour: a.flavour,
    semiSync: a.config.mysql.semiSync,
    self: a.self.node,
    ...(a.session === undefined ? {} : { session: a.session }),
    ...(lock === undefined ? {} : { lock }),
  });
  if (!applies) return undefined;
  const waiting = await errant.commitsWaitingForAck(a.config, a.flavour);
  if (waiting === 0) return undefined;
  try {
    const pid = await errant.killLocalServer(a.config);
    return {
      level: "warn",
      text:
        `${lock!.record!.node} is primary and ${waiting} commit${
          waiting === 1 ? "" : "s"
        } here still wait for ` +
        "a semi-sync acknowledgement, so they were never acknowledged and read_only cannot be set while they " +
        `wait: killed mysqld (pid ${pid}); its crash recovery, in the replica role, discards them, and the node ` +
        "rejoins when it restarts",
    };
  } catch (e) {
    log.error("Cannot kill mysqld to discard the unacknowledged semi-sync tail: {e}", {
      e: (e as Error).message,
    });
    return undefined;
  }
}

/**
 * What is done with an errant node (src/errant.ts says why): a semi-sync tail nobody acknowledged is discarded
 * by a crash restart of mysqld; otherwise the extra transactions are saved to the snapshot store first, and
 * only once they are, REBUILD_ERRANT_NODE rebuilds the node. A save that fails leaves everything as it was.
 *
 * @returns The outcome the pass reports (one line, pointing to the saved objects).
 */
export async function handleErrant(
  a: RebuildArgs,
  server: MysqlServer,
  primary: PrimaryRecord,
  e: ErrantFound,
): Promise<Outcome> {
  const errant = await import("../errant.ts");
  const { config, flavour } = a;
  const plan = errant.planErrant({
    flavour,
    semiSync: config.mysql.semiSync,
    waitingForAck: config.mysql.semiSync ? await errant.commitsWaitingForAck(config, flavour) : 0,
    rebuild: config.failover.rebuildErrant,
    extra: e.extra,
    ...(a.state.current.errantSaved ? { savedGtids: a.state.current.errantSaved.gtids } : {}),
  });
  if (plan.kind === "discard-tail") {
    try {
      const pid = await errant.killLocalServer(config);
      return {
        level: "warn",
        text:
          `${e.text}; they were never acknowledged (${plan.reason}): killed mysqld (pid ${pid}) so that ` +
          "its crash recovery, in the replica role, discards them; it restarts and rejoins",
      };
    } catch (err) {
      log.error("Cannot kill mysqld to discard the unacknowledged semi-sync tail: {e}; saving it instead", {
        e: (err as Error).message,
      });
    }
  }
  let saved = a.state.current.errantSaved;
  if (plan.kind !== "saved" || saved === undefined) {
    try {
      const s = await errant.saveErrantTransactions(config, flavour, {
        mine: e.mine,
        theirs: e.primaryExecuted,
        primary: primary.node,
      });
      saved = { gtids: e.extra, base: s.keys.base, location: s.location, at: new Date().toISOString() };
      await a.state.patch({ errantSaved: saved });
    } catch (err) {
      return {
        level: "error",
        text:
          `${e.text}; saving them to the snapshot store failed (${(err as Error).message}): not rebuilt, ` +
          "nothing was touched; the next health pass tries again",
      };
    }
  }
  const where = `${saved.location}: ${saved.base}.events.sql (binlog events) and .readable.sql`;
  if (!config.failover.rebuildErrant) {
    return {
      level: "error",
      text: `${e.text}; saved to ${where}; not rebuilt (REBUILD_ERRANT_NODE=false): rebuild it by hand`,
    };
  }
  const rebuilt = await rebuildErrant(a, server, e.primaryExecuted);
  return {
    level: "error",
    text: `${e.text}; saved to ${where}; nothing was merged; ` +
      (rebuilt ? "rebuilding it from the last snapshot" : "not rebuilt (see the line above)"),
  };
}

/**
 * Moves the errant datadir aside (refused, with nothing touched, when no snapshot fits), then restores.
 *
 * @returns false when the rebuild was refused (logged) and nothing was touched.
 */
export async function rebuildErrant(
  a: RebuildArgs,
  server: MysqlServer,
  primaryExecuted: string,
): Promise<boolean> {
  const { publishedSnapshot } = await import("../snapshots.ts");
  const { moveErrantDatadirAside, RebuildRefusedError } = await import("../rebuild.ts");
  try {
    const manifest = await publishedSnapshot(a.kv);
    await moveErrantDatadirAside(a.config, a.flavour, server, manifest, primaryExecuted, async (aside) => {
      await a.state.patch({ rebuilding: { aside } });
    });
    await finishRebuild(a);
    return true;
  } catch (e) {
    if (e instanceof RebuildRefusedError) {
      log.error("REBUILD_ERRANT_NODE is set but the node was not rebuilt: {why}; nothing was touched", {
        why: e.message,
      });
      return false;
    }
    log.error("Rebuilding the errant node failed: {e}", { e: (e as Error).message });
    return true; // the datadir was moved aside: the next passes finish the rebuild
  }
}

/**
 * The restore half of a rebuild: from rebuildErrant(), or from the next pass when a pass was cut short after
 * the datadir was moved aside. Never healthy: the restarted mysqld replicates in a later pass.
 */
export async function finishRebuild(a: RebuildArgs): Promise<void> {
  const aside = a.state.current.rebuilding?.aside;
  try {
    const done = await readRestoredMark(a.config.mysql.datadir);
    if (done !== undefined) {
      // the restore finished but the pass that ran it was cut short before it could say so
      await a.state.patch({ rebuilding: undefined });
      log.warn("Rebuilt from snapshot {name} (GTID {gtid}); the errant datadir is kept in {aside}", {
        name: done.snapshot,
        gtid: done.gtid,
        aside,
      });
      return;
    }
    const { publishedSnapshot } = await import("../snapshots.ts");
    const manifest = await publishedSnapshot(a.kv);
    if (manifest === undefined) {
      log.error(
        "Rebuilding: no snapshot is named in LAST_BACKUP_KEY any more; the old datadir is in {aside}",
        {
          aside,
        },
      );
      return;
    }
    const { restoreRebuiltDatadir } = await import("../rebuild.ts");
    const gtid = await restoreRebuiltDatadir(a.config, a.flavour, manifest, a.address);
    await a.state.patch({ rebuilding: undefined });
    log.warn(
      "Rebuilt from snapshot {name} (GTID {gtid}); the errant datadir is kept in {aside}. mysqld restarts on the " +
        "new datadir and replicates from there",
      { name: manifest.name, gtid, aside },
    );
  } catch (e) {
    log.error("Rebuilding the errant node failed ({e}); the next health pass tries again", {
      e: (e as Error).message,
    });
  }
}
