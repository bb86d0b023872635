/**
 * `autopilot pre-stop`: ContainerPilot runs it when the `mysql` job is stopping, before it signals mysqld.
 *
 * On the primary:
 * 1. With BACKUP_ON_STOP, take a last snapshot while the server still has every write (so a cluster that is
 *    stopped entirely comes back from its latest state).
 * 2. Withdraw the `SERVICE_NAME-primary` service and hand the primary role to the best replica, as
 *    `autopilot switchover` does: no transaction lost, writes blocked only while it catches up. Without this,
 *    the cluster would wait for this node's Consul session to expire before failing over. With no replica to
 *    hand over to, the node stays primary until it stops: its session then expires and it resumes the role
 *    when it comes back.
 *
 * Then, on every node, mysqld is shut down cleanly (SQL SHUTDOWN) and waited for. ContainerPilot signals
 * mysqld only after this hook and then sleeps its top-level `stopTimeout` before it kills what is left, so
 * this hook is what gives mysqld its time to stop; it is bounded (PRE_STOP_BUDGET_MS, in
 * src/pre_stop_budget.ts) below the job's `timeout` in containerpilot.json5, so it always gets to the
 * shutdown.
 *
 * Once mysqld is down, Consul is told:
 * - A node that still holds the primary lock (no replica took it) says so in the lock record (`fenced`), and
 *   keeps the lock until its session expires: with FAILSAFE_MODE, a node that then finds it silent knows
 *   mysqld is down, not cut off, and need not wait for it (src/ha/takeover.ts), even if that node is not one
 *   the old primary's failsafe checked, as when every node of a cluster is replaced.
 * - Any other node destroys its session: its member record leaves the live members at once (its last GTIDs
 *   still count as a departed member's), so no hand-over is tried towards it and no failover plan waits for
 *   it to report.
 *
 * Failures are logged and the exit code says so, but nothing here stops the container from stopping.
 *
 * @module
 */
import { getLogger } from "@logtape/logtape";
import { deadline, raceAbort } from "../src/abort.ts";
import type { Config } from "../src/config.ts";
import { ConsulStore, ConsulUnavailableError } from "../src/consul.ts";
import { ConsulClusterKv, otherLiveReplicas } from "../src/cluster_kv.ts";
import { flavourOf, shutDownLocalServer } from "../src/local.ts";
import { MysqlUnavailableError } from "../src/mysql/client.ts";
import { lockPasses, type NodeState, readState } from "../src/state.ts";
import { withdrawPrimary } from "../src/services.ts";
import { EXIT } from "../src/command.ts";
import { runSnapshot } from "../src/snapshot_task.ts";
import { switchover, switchoverLine } from "../src/ha/switchover.ts";
import { leaseMsFor } from "../src/mysql/lease.ts";
import { print } from "../src/output.ts";
import { type MysqlServer, openLocalServer, openPeerServer } from "../src/mysql/server.ts";
import {
  HANDOVER_BUDGET_MS,
  HANDOVER_TIMEOUT_MS,
  MARK_BUDGET_MS,
  PASS_LOCK_WAIT_MS,
  PRE_STOP_BUDGET_MS,
  SHUTDOWN_WAIT_MS,
} from "../src/pre_stop_budget.ts";

const log = getLogger(["autopilot", "pre-stop"]);

export { PRE_STOP_BUDGET_MS };

/** `autopilot pre-stop`. */
export async function runPreStop(config: Config): Promise<number> {
  // A health pass still running here would race the hand-over and the shutdown: wait for it, briefly.
  using pass = await lockPasses(config.node.stateDir, PASS_LOCK_WAIT_MS);
  if (pass === undefined) {
    log.warn("A health pass still runs here after {s} s: stopping without waiting for it", {
      s: PASS_LOCK_WAIT_MS / 1000,
    });
  }
  const state = await readState(config.node.stateDir);
  const flavour = flavourOf(config, state);
  let server: MysqlServer;
  try {
    server = await openLocalServer(config, flavour);
  } catch (e) {
    if (!(e instanceof MysqlUnavailableError)) throw e;
    log.info("Stopping a node whose mysqld does not answer ({e}): nothing to hand over or shut down", {
      e: e.message,
    });
    return EXIT.ok;
  }
  let code: number = EXIT.ok;
  try {
    code = await handOver(config, state, server);
  } finally {
    // What the server has, read-only: a node that still holds the primary lock records it once mysqld is down.
    const executed = await lastExecuted(server);
    log.info("Shutting mysqld down");
    const started = performance.now();
    if (await shutDownLocalServer(config, server, SHUTDOWN_WAIT_MS)) {
      log.info("mysqld shut down cleanly in {s} s", {
        s: ((performance.now() - started) / 1000).toFixed(1),
      });
      if (state.sessionId !== undefined) {
        await leaveConsul(config, { session: state.sessionId, executed, passesStopped: pass !== undefined });
      }
    } else {
      log.error("mysqld still runs {s} s after SHUTDOWN: ContainerPilot signals it next", {
        s: SHUTDOWN_WAIT_MS / 1000,
      });
      code = EXIT.failed;
    }
  }
  return code;
}

/**
 * The server turned read-only (the node is stopping: a write now would be cut off by the shutdown anyway),
 * then what it has executed; undefined when it does not answer.
 */
async function lastExecuted(server: MysqlServer): Promise<string | undefined> {
  try {
    await server.setReadOnly(true);
    return (await server.gtidState()).executed;
  } catch (e) {
    log.warn("Cannot read what this server has before it stops ({e})", { e: (e as Error).message });
    return undefined;
  }
}

/**
 * Once mysqld is down: if this node's session still holds the primary lock, its record says the node fenced
 * itself and what it had executed (the heartbeat's check-and-set, so a lock taken over or handed on meanwhile
 * is left alone; not without `executed`, since a failover counts on it); otherwise the session is destroyed,
 * unless a health pass may still run under it (pre-stop went on without the pass lock: it may hold the
 * failover lock). Bounded by MARK_BUDGET_MS; never throws.
 */
async function leaveConsul(
  config: Config,
  o: { readonly session: string; readonly executed: string | undefined; readonly passesStopped: boolean },
): Promise<void> {
  const { session, executed } = o;
  const consul = new ConsulStore(config.consul);
  try {
    const kv = new ConsulClusterKv(config, consul);
    const mark = (async () => {
      const lock = await kv.primary();
      if (lock.session !== session) {
        if (!o.passesStopped) return;
        await consul.destroySession(session);
        log.info("Session ended: this node has left the cluster's live members");
        return;
      }
      if (lock.record === undefined || lock.modifyIndex === undefined || executed === undefined) return;
      const record = { ...lock.record, fenced: true, executed };
      if (await kv.heartbeatPrimary(session, record, lock.modifyIndex)) {
        log.info(
          "This node still holds the primary lock with mysqld down: its record says so (fenced at {e})",
          {
            e: executed || "no transaction",
          },
        );
      }
    })();
    await raceAbort(mark, deadline(MARK_BUDGET_MS));
  } catch (e) {
    log.warn("Cannot tell Consul that mysqld is down ({e}): the session expires on its own", {
      e: (e as Error).message,
    });
  } finally {
    consul.close();
  }
}

/** On the primary: the last snapshot if configured, then the hand-over. A replica has nothing to do. */
async function handOver(
  config: Config,
  state: NodeState,
  server: MysqlServer,
): Promise<number> {
  const consul = new ConsulStore(config.consul);
  try {
    const lock = await new ConsulClusterKv(config, consul).primary();
    if (lock.session === undefined || lock.session !== state.sessionId) {
      log.info("Stopping a node that is not the primary: nothing to hand over");
      return EXIT.ok;
    }
    let code: number = EXIT.ok;
    if (config.backup.onStop) {
      log.info("BACKUP_ON_STOP: taking a last snapshot before stopping");
      code = await runSnapshot(config, { force: true });
    }
    // The snapshot takes what it takes (the job's 12 h timeout bounds it); the hand-over after it has a budget.
    const handed = await withinBudget(
      transfer(config, consul, server, lock.session),
      HANDOVER_BUDGET_MS,
    );
    return handed === EXIT.ok ? code : EXIT.failed;
  } catch (e) {
    if (e instanceof ConsulUnavailableError || e instanceof MysqlUnavailableError) {
      log.error("Cannot hand over before stopping: {e}", { e: e.message });
      return EXIT.failed;
    }
    throw e;
  } finally {
    consul.close();
  }
}

/** Out of the primary service, then the role to the best replica; with none, the node keeps the role. */
async function transfer(
  config: Config,
  consul: ConsulStore,
  server: MysqlServer,
  session: string,
): Promise<number> {
  await withdrawPrimary(config, consul, config.node.name).catch((e) =>
    log.warn("Cannot withdraw the primary service: {e}; its check lapses on its own", { e: String(e) })
  );
  const replicas = otherLiveReplicas(await new ConsulClusterKv(config, consul).members(), config.node.name);
  if (replicas.length === 0) {
    log.info("Stopping the primary with no live replica: it keeps the role until its session expires");
    return EXIT.ok;
  }
  log.info("Stopping the primary: handing the role over to a replica");
  const lock = await new ConsulClusterKv(config, consul).primary();
  const done = await switchover({
    kv: new ConsulClusterKv(config, consul),
    server,
    openPeer: (target) => openPeerServer(config, target, undefined, { flavour: server.flavour }),
    me: {
      self: lock.record ?? { node: config.node.name, address: "", port: config.mysql.port },
      session,
    },
    withdraw: () => withdrawPrimary(config, consul, config.node.name),
    timeoutMs: HANDOVER_TIMEOUT_MS,
    leaseMs: leaseMsFor(config.session.ttlSeconds),
  });
  if (done === undefined) return EXIT.failed;
  print(switchoverLine(config.node.name, done));
  return EXIT.ok;
}

/**
 * The hand-over's exit code, or EXIT.failed once `ms` have passed without one: the shutdown must not wait for
 * a hand-over stuck on a peer that does not answer (what it left half done is what a failover handles).
 */
async function withinBudget(work: Promise<number>, ms: number): Promise<number> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<number>((resolve) => {
    timer = setTimeout(() => {
      log.error("The hand-over did not finish within {s} s: shutting down without it", { s: ms / 1000 });
      resolve(EXIT.failed);
    }, ms);
  });
  try {
    return await Promise.race([work, late]);
  } finally {
    clearTimeout(timer);
  }
}
