/**
 * `autopilot health`: ContainerPilot's health check for the `mysql` service, every few seconds.
 *
 * Each pass gathers the facts (the local server, the primary lock, this node's session), lets `decideHealth()`
 * pick what to do, does it, and exits 0 only when this node is healthy in its role. The first pass of the first
 * node bootstraps the cluster; the first pass of a later node sets up replication; later passes keep the role.
 *
 * `autopilot health --primary` is the check of the `mysql-primary` service: it changes nothing and passes
 * only on the node that holds the primary lock and is writable.
 *
 * @module
 */
import { getLogger } from "@logtape/logtape";
import type { Config } from "../src/config.ts";
import { ConsulStore, ConsulUnavailableError } from "../src/consul.ts";
import {
  type ConsulFacts,
  decideHealth,
  type HealthDecision,
  type HealthFacts,
  primaryLockFrom,
  type PrimaryRecord,
} from "../src/ha.ts";
import { connectLocal, gatherMysqlFacts } from "../src/local.ts";
import { bootstrapStatements } from "../src/mysql/bootstrap.ts";
import { MysqlClient, MysqlUnavailableError } from "../src/mysql/client.ts";
import { type Flavour, type FlavourSql, sqlFor } from "../src/mysql/flavour.ts";
import { subtractGtids } from "../src/mysql/gtid.ts";
import { nodeAddress } from "../src/node.ts";
import { type NodeState, readState, writeFileAtomic, writeState } from "../src/state.ts";
import { takeAndPublishSnapshot } from "../src/snapshots.ts";
import type { Command, CommandContext } from "../src/cli/commands.ts";
import { EXIT } from "../src/cli/exit.ts";

const log = getLogger(["autopilot", "health"]);

/** The `health` command. */
export const healthCommand: Command = {
  name: "health",
  summary: "check this node and keep it in its role; exit 0 only when healthy (ContainerPilot's check)",
  details: "The first pass of the first node bootstraps the primary; a later node starts replicating.\n" +
    "--primary: change nothing; exit 0 only on the node that holds the primary lock and is writable.",
  options: { primary: { type: "boolean" } },
  async run(ctx: CommandContext): Promise<number> {
    const state = await readState(ctx.config.node.stateDir);
    const flavour = state.flavour ?? (ctx.config.mysql.flavour === "mysql" ? "mysql" : "mariadb");
    const address = nodeAddress(ctx.config, ctx.env, Deno.networkInterfaces());
    if (address === undefined) {
      log.error("Cannot tell this node's address: set NODE_ADDRESS");
      return EXIT.failed;
    }
    const self: PrimaryRecord = { node: ctx.config.node.name, address, port: ctx.config.mysql.port };
    const consul = new ConsulStore(ctx.config.consul);
    try {
      return ctx.flags.primary
        ? await primaryCheck(ctx.config, flavour, consul, state)
        : await healthPass(ctx.config, flavour, consul, state, self);
    } finally {
      consul.close();
    }
  },
};

async function healthPass(
  config: Config,
  flavour: Flavour,
  consul: ConsulStore,
  state: NodeState,
  self: PrimaryRecord,
): Promise<number> {
  const sql = sqlFor(flavour);
  let db: MysqlClient | undefined;
  try {
    db = await connectLocal(config, flavour);
  } catch (e) {
    if (!(e instanceof MysqlUnavailableError)) throw e;
  }
  try {
    const facts = await gatherFacts(config, consul, state, self, db, sql);
    const decision = decideHealth(facts);
    const healthy = await act(decision, { config, consul, state, self, db, sql, flavour });
    const fields = { reason: decision.reason, action: decision.action, healthy };
    if (healthy) log.debug("{reason}", fields);
    else log.warn("{reason}", fields);
    return healthy ? EXIT.ok : EXIT.failed;
  } finally {
    await db?.close();
  }
}

async function gatherFacts(
  config: Config,
  consul: ConsulStore,
  state: NodeState,
  self: PrimaryRecord,
  db: MysqlClient | undefined,
  sql: FlavourSql,
): Promise<HealthFacts> {
  const mysql = db
    ? await gatherMysqlFacts(db, sql).catch((e) => ({ up: false as const, error: (e as Error).message }))
    : { up: false as const, error: `no answer on ${config.mysql.socket}` };
  let consulFacts: ConsulFacts;
  try {
    const lock = primaryLockFrom(await consul.get(config.keys.primary));
    const alive = state.sessionId !== undefined && await consul.renewSession(state.sessionId);
    consulFacts = { up: true, lock, ...(alive ? { session: state.sessionId } : {}) };
  } catch (e) {
    if (!(e instanceof ConsulUnavailableError)) throw e;
    consulFacts = { up: false, error: e.message };
  }
  return {
    node: self,
    mysql,
    consul: consulFacts,
    ...(state.restored ? { restoredGtid: state.restored.gtid } : {}),
    ...(state.replication ? { startedReplication: state.replication } : {}),
    maxLagSeconds: config.mysql.maxLagSeconds,
  };
}

interface ActContext {
  readonly config: Config;
  readonly consul: ConsulStore;
  /** This node's state; actions replace it as they save it. */
  state: NodeState;
  readonly self: PrimaryRecord;
  readonly db: MysqlClient | undefined;
  readonly sql: FlavourSql;
  readonly flavour: Flavour;
}

/** Carries out one decision; returns whether the node is healthy afterwards. */
async function act(d: HealthDecision, c: ActContext): Promise<boolean> {
  switch (d.action) {
    case "report":
      return d.healthy;
    case "fence":
      return await fence(c, d.releaseLock);
    case "bootstrap-primary":
      return await takePrimaryLock(c) && await bootstrapPrimary(c);
    case "resume-primary":
      return await takePrimaryLock(c) && await serveAsPrimary(c);
    case "serve-as-primary":
      return await serveAsPrimary(c);
    case "follow":
      return await follow(c, d.primary, d.fromGtid, d.demote);
    case "restart-replication":
      return await startReplication(c, c.state.replication?.source ?? "");
  }
}

async function fence(c: ActContext, releaseLock: boolean): Promise<false> {
  if (c.db) {
    await c.db.run(c.sql.setReadOnly(true)).catch((e) =>
      log.error("Cannot turn read-only: {e}", { e: String(e) })
    );
  }
  if (releaseLock && c.state.sessionId) {
    // Leave our record in the key: it tells a restarted node that it was the last primary.
    await c.consul.releaseLock(c.config.keys.primary, c.state.sessionId, JSON.stringify(c.self)).catch((e) =>
      log.error("Cannot release the primary lock: {e}", { e: String(e) })
    );
  }
  return false;
}

/** Creates or renews this node's session and tries to take the primary lock; false if another node has it. */
async function takePrimaryLock(c: ActContext): Promise<boolean> {
  const { id, created } = await c.consul.ensureSession(c.state.sessionId, {
    name: c.config.session.name,
    ttlSeconds: c.config.session.ttlSeconds,
  });
  // Remember the session before taking the lock: a crash right after must not orphan a held lock.
  if (created || id !== c.state.sessionId) await saveState(c, { ...c.state, sessionId: id });
  const taken = await c.consul.tryAcquireLock(c.config.keys.primary, id, JSON.stringify(c.self));
  if (!taken) log.info("Another node took the primary lock first; this node will follow it");
  else log.info("Took the primary lock as {node} ({address}:{port})", { ...c.self });
  c.state = { ...c.state, sessionId: id };
  return taken;
}

async function bootstrapPrimary(c: ActContext): Promise<boolean> {
  const db = c.db!;
  const rootPassword = await rootPasswordFor(c.config);
  log.info("Bootstrapping the first primary: accounts, database, root password");
  await db.run(bootstrapStatements(c.config, c.flavour, rootPassword));
  await serveAsPrimary(c);
  try {
    const manifest = await takeAndPublishSnapshot(c.config, c.consul, c.flavour, db);
    log.info("First snapshot {name} stored and published for replicas", { name: manifest.name });
  } catch (e) {
    // The primary is fine without it; new replicas then replicate from the first binlog.
    log.error("First snapshot failed: {e}", { e: (e as Error).message });
  }
  return true;
}

/** The root password to set at bootstrap: the given one, or a generated one kept in a 0600 file. */
async function rootPasswordFor(config: Config): Promise<string | undefined> {
  if (config.mysql.rootPassword) return config.mysql.rootPassword.reveal();
  if (!config.mysql.randomRootPassword) return undefined;
  const bytes = crypto.getRandomValues(new Uint8Array(24));
  const password = btoa(String.fromCharCode(...bytes)).replace(/[+/=]/g, "");
  const path = `${config.node.stateDir}/root-password`;
  await writeFileAtomic(path, password + "\n", 0o600);
  log.info("Generated a random root password: it is in {path} (mode 0600), never in the log", { path });
  return password;
}

async function serveAsPrimary(c: ActContext): Promise<boolean> {
  const db = c.db!;
  const [status] = await db.query(c.sql.replicaStatus);
  if (status) await db.run([c.sql.stopReplica, c.sql.resetReplicaAll]);
  if (c.config.mysql.semiSync) await db.run(c.sql.setSemiSyncSource(true));
  await db.run(c.sql.setReadOnly(false));
  if (c.state.replication || c.state.restored) {
    await saveState(c, { ...c.state, replication: undefined, restored: undefined });
  }
  log.info("Primary: writable");
  return true;
}

async function follow(
  c: ActContext,
  primary: PrimaryRecord,
  fromGtid: string | undefined,
  demote: boolean,
): Promise<boolean> {
  const db = c.db!;
  const source = `${primary.address}:${primary.port}`;
  if (demote) {
    const extra = await transactionsPrimaryLacks(c, primary);
    if (extra !== "") {
      log.error(
        "Errant node: this node has transactions {extra} that the primary {node} ({source}) lacks; not rejoining",
        { extra, node: primary.node, source },
      );
      return false;
    }
  }
  await db.query(c.sql.stopReplica).catch(() => {});
  if (fromGtid !== undefined) await db.run(c.sql.startReplicationAfter(fromGtid));
  await db.run([
    c.sql.changeSource({
      host: primary.address,
      port: primary.port,
      user: c.config.mysql.replUser,
      password: c.config.mysql.replPassword.reveal(),
      connectRetry: 1,
      heartbeatPeriod: 1,
      demote,
    }),
  ]);
  await saveState(c, { ...c.state, restored: undefined });
  log.info("Replicating from {node} ({source}){from}", {
    node: primary.node,
    source,
    from: fromGtid ? ` after ${fromGtid}` : "",
  });
  return await startReplication(c, source);
}

/** What this node has that the primary lacks (empty when it can rejoin), asked over TCP as the repl user. */
async function transactionsPrimaryLacks(c: ActContext, primary: PrimaryRecord): Promise<string> {
  await using peer = await MysqlClient.connect({
    host: primary.address,
    port: primary.port,
    user: c.config.mysql.replUser,
    password: c.config.mysql.replPassword,
    connectTimeoutMs: c.config.mysql.connectTimeoutMs,
  });
  const theirs = c.sql.gtidState((await peer.query(c.sql.gtidStateQuery))[0]).executed;
  const mine = c.sql.gtidState((await c.db!.query(c.sql.gtidStateQuery))[0]).executed;
  return subtractGtids(c.flavour, mine, theirs).toString();
}

async function startReplication(c: ActContext, source: string): Promise<boolean> {
  const db = c.db!;
  await db.query(c.sql.startReplica);
  const [started] = await db.query(c.sql.serverStartedQuery);
  await saveState(c, {
    ...c.state,
    restored: undefined,
    replication: { source, serverStartedAt: Math.round(Number(started?.started ?? 0)) },
  });
  // Give the receiver a moment to connect, so a good first pass reports healthy rather than "connecting".
  for (let i = 0; i < 20; i++) {
    const [row] = await db.query(c.sql.replicaStatus);
    const status = row ? c.sql.replicaStatusFromRow(row) : undefined;
    if (status?.ioRunning === "yes" && status.sqlRunning) return true;
    if (status?.lastIoError || status?.lastSqlError) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  log.warn("Replication from {source} started but is not running yet", { source });
  return false;
}

async function saveState(c: ActContext, next: NodeState): Promise<void> {
  const clean = JSON.parse(JSON.stringify(next)) as NodeState; // drops the undefined fields
  await writeState(c.config.node.stateDir, clean);
  c.state = clean;
}

async function primaryCheck(
  config: Config,
  flavour: Flavour,
  consul: ConsulStore,
  state: NodeState,
): Promise<number> {
  try {
    const lock = primaryLockFrom(await consul.get(config.keys.primary));
    if (lock.session === undefined || lock.session !== state.sessionId) return EXIT.failed;
    await using db = await connectLocal(config, flavour);
    const [ro] = await db.query(sqlFor(flavour).readOnlyQuery);
    return Number(ro.read_only) === 0 ? EXIT.ok : EXIT.failed;
  } catch (e) {
    if (e instanceof ConsulUnavailableError || e instanceof MysqlUnavailableError) return EXIT.failed;
    throw e;
  }
}
