/**
 * `autopilot health`: ContainerPilot's health check for the `mysql` service, every few seconds; also what
 * `autopilot on-change` runs when the primary changes.
 *
 * A pass: keep this node's session, gather the facts (the local server, the cluster's keys), let
 * `decideHealth()` pick what to do, do it (src/ha/act.ts), then report: the log line, the primary service,
 * this node's member record, the metrics. It exits 0 only when this node is healthy in its role. The pass has
 * one error boundary and a deadline below ContainerPilot's timeout: a pass that fails or runs out of time
 * logs one line saying what it was doing, counts as a failed check, and leaves the local server read-only (a
 * primary's next pass makes it writable again if it still holds the lock).
 *
 * `autopilot health --primary` changes nothing and passes only on the node that holds the primary lock and is
 * writable: a check for scripts and operators.
 *
 * @module
 */
import { getLogger } from "@logtape/logtape";
import { deadline, raceAbort } from "../src/abort.ts";
import { ConsulClusterKv } from "../src/cluster_kv.ts";
import type { Config } from "../src/config.ts";
import { ConsulStore } from "../src/consul.ts";
import { act } from "../src/ha/act.ts";
import { type ActionResult, type Outcome, renewLease, type Restore } from "../src/ha/actions.ts";
import { decideHealth, holdsLock } from "../src/ha/decide.ts";
import { gatherFacts, holdsLockIn, keepSession, readCluster, watchHeartbeat } from "../src/ha/facts.ts";
import { bootClock } from "../src/boot_clock.ts";
import { publishedFor, withPublished } from "../src/ha/failsafe.ts";
import { primaryCheck } from "../src/ha/primary_check.ts";
import { settleWindowMs } from "../src/ha/recovery.ts";
import { finishRebuild, type RebuildArgs } from "../src/ha/rebuild.ts";
import { reportPass } from "../src/ha/report.ts";
import { endFailedPass, openLocal, passDeps } from "../src/ha/wiring.ts";
import { flavourOf } from "../src/local.ts";
import { nodeAddress } from "../src/node.ts";
import { clearRestoredMark, readRestoredMark, RestoredMarkError } from "../src/restored.ts";
import { lockPasses, readState, StateFile } from "../src/state.ts";
import { type CommandContext, EXIT } from "../src/command.ts";

const log = getLogger(["autopilot", "health"]);

/** How long a pass waits for another one on the same node to finish. */
const PASS_LOCK_WAIT_MS = 30_000;
/** A pass's deadline: below ContainerPilot's timeout for `health` (120 s) and `on-change` (60 s). */
export const PASS_DEADLINE_MS = { health: 110_000, onChange: 50_000 } as const;

/** `autopilot health` (`--primary`: the read-only check) and `autopilot on-change`: one pass. */
export async function runHealth(
  ctx: CommandContext,
  primaryOnly: boolean,
  deadlineMs: number = PASS_DEADLINE_MS.health,
  serviceCheck = true,
): Promise<number> {
  const { config } = ctx;
  if (primaryOnly) return (await primaryCheck(config)) ? EXIT.ok : EXIT.failed;
  // The deadline counts the wait for the pass lock too: the whole run stays below ContainerPilot's timeout.
  const signal = deadline(deadlineMs);
  const started = performance.now();
  using lock = await lockPasses(config.node.stateDir, PASS_LOCK_WAIT_MS);
  if (lock === undefined) {
    log.warn("Another health or on-change pass still runs on this node after {s} s: this one is skipped", {
      s: PASS_LOCK_WAIT_MS / 1000,
    });
    return EXIT.failed;
  }
  const address = nodeAddress(config, ctx.env, Deno.networkInterfaces());
  if (address === undefined) {
    log.error("Cannot tell this node's address: set NODE_ADDRESS");
    return EXIT.failed;
  }
  const state = new StateFile(config.node.stateDir, await readState(config.node.stateDir));
  const consul = new ConsulStore(config.consul);
  const step = { now: "starting" };
  // Only under ContainerPilot: elsewhere nobody would keep the service's TTL check passing.
  const underContainerPilot = ctx.env("CONTAINERPILOT_PID") !== undefined;
  const pass = healthPass(config, consul, state, address, step, signal, serviceCheck && underContainerPilot);
  try {
    const healthy = await raceAbort(pass, signal);
    return healthy ? EXIT.ok : EXIT.failed;
  } catch (e) {
    await endFailedPass({ config, flavour: flavourOf(config, state.current), error: e, step, started, pass });
    return EXIT.failed;
  } finally {
    consul.close();
  }
}

/** The story of one pass. */
async function healthPass(
  config: Config,
  consul: ConsulStore,
  state: StateFile,
  address: string,
  step: { now: string },
  signal: AbortSignal,
  serviceCheck: boolean,
): Promise<boolean> {
  const started = performance.now();
  const flavour = flavourOf(config, state.current);
  const self = { node: config.node.name, address, port: config.mysql.port };
  const kv = new ConsulClusterKv(config, consul);
  const rebuild: RebuildArgs = { config, kv, flavour, state, address };
  if (state.current.rebuilding) return (await finishRebuild(rebuild), false);
  let restore: Restore | undefined;
  try {
    const mark = await readRestoredMark(config.mysql.datadir);
    const forget = async () => (await clearRestoredMark(config.mysql.datadir), restore = undefined);
    restore = mark && { mark, forget };
  } catch (e) {
    if (!(e instanceof RestoredMarkError)) throw e;
    log.error("{message}", { message: e.message });
    return false;
  }
  step.now = "connecting to the local server";
  const local = await openLocal(config, flavour, signal);
  try {
    step.now = "keeping this node's Consul session";
    const session = await keepSession(kv, state, (id) => log.info("Created Consul session {id}", { id }));
    const deps = passDeps(
      { config, consul, kv, flavour, self, state, local, session, rebuild, signal },
      () => restore,
    );
    // The cluster's keys first: a lock holder extends its in-server lease, from this renewal, before the
    // local server is read (or anything else can hang).
    const gather = async () => {
      const cluster = await readCluster(kv, session);
      if (local.server && "id" in session && "view" in cluster && holdsLockIn(cluster, session)) {
        step.now = "writing the heartbeat and extending the in-server lease";
        await renewLease({
          server: local.server,
          kv,
          me: {
            self,
            session: session.id,
            ...withPublished(
              publishedFor(state, config.failover.failsafe, { view: cluster.view, self: self.node }),
            ),
          },
          lock: cluster.view.primary,
          leaseMs: deps.leaseMs,
          renewedAt: session.renewedAt,
        }, signal);
      }
      step.now = "watching the primary's heartbeat";
      const staleHolderMs = await watchHeartbeat({
        state,
        cluster,
        session,
        clock: bootClock(),
        leaseMs: deps.leaseMs,
      });
      step.now = "gathering facts";
      return await gatherFacts({
        self,
        local,
        session,
        cluster,
        state: state.current,
        restored: restore?.mark,
        maxLagSeconds: config.mysql.maxLagSeconds,
        failsafe: config.failover.failsafe,
        semiSync: config.mysql.semiSync,
        ...(config.mysql.tls ? { tls: true } : {}),
        quietPeriodMs: config.failover.quietPeriodMs,
        now: Date.now(),
        recoverySettleMs: settleWindowMs(config.failover.recoverySettleMs, deps.leaseMs),
        clusterKey: kv.keys.cluster,
        ...(staleHolderMs === undefined ? {} : { staleHolderMs }),
      }, signal);
    };
    step.now = "reading the cluster's keys";
    let { facts, view } = await gather();
    // A failover changes the situation within the pass: the appointed node promotes itself at once and the
    // others follow it at once, instead of waiting for their next pass.
    let result: ActionResult = { healthy: false };
    let outcome: Outcome = { level: "warn", text: "" };
    let serving = false;
    for (let round = 0; round < 3; round++) {
      const decision = decideHealth(facts);
      step.now = `acting (${decision.action}: ${decision.reason})`;
      result = await act(decision, deps, view, signal);
      outcome = result.outcome ?? { level: "warn", text: decision.reason };
      // A healthy report while holding the lock is the steady primary: writable, ready.
      serving ||= result.serving === true ||
        (result.healthy && decision.action === "report" && holdsLock(facts));
      if (!result.again) break;
      ({ facts, view } = await gather());
    }
    step.now = "reporting";
    return await reportPass(
      { config, consul, kv, flavour, self, state, session, facts, view, serving, started, serviceCheck },
      result,
      outcome,
    );
  } finally {
    await local.server?.close();
  }
}
