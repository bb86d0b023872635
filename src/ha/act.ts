/**
 * From a decision to its action: which function of actions.ts / failover.ts carries out each decision of
 * decide.ts, and with what. Everything an action may need is in {@link PassDeps}, read-only; nothing here
 * decides.
 *
 * @module
 */
import { getLogger } from "@logtape/logtape";
import type { Statement } from "../mysql/flavour.ts";
import { requireTlsStatements } from "../mysql/bootstrap.ts";
import type { MysqlServer } from "../mysql/server.ts";
import { subtractGtids } from "../mysql/gtid.ts";
import {
  type ActionResult,
  bootstrapPrimary,
  endSwitchover,
  type ErrantFound,
  fence,
  follow,
  type Me,
  type Outcome,
  type Restore,
  serveAsPrimary,
  startReplication,
  takePrimaryLock,
} from "./actions.ts";
import type { HealthDecision, PrimaryRecord } from "./decide.ts";
import { runFailover, waitForAppointment } from "./failover.ts";
import { recoverPrimary } from "./recovery_action.ts";
import type { MemberRecord } from "./failover_plan.ts";
import type { ClusterView } from "../cluster_kv.ts";
import type { OldPrimaryGuard, PrimaryAnswer } from "./takeover.ts";
import type { PassNode } from "./facts.ts";
import { failsafe, publishedFor, withPublished } from "./failsafe.ts";
import type { KnownMember } from "../state.ts";
import type { ReplicaStatus } from "../mysql/flavour.ts";

const log = getLogger(["autopilot", "health"]);

/** What the actions of one pass work with. */
export interface PassDeps extends PassNode {
  /** The in-server lease's length: SESSION_TTL/2. */
  readonly leaseMs: number;
  /** The local server, when it answered. */
  readonly server?: MysqlServer;
  /** This node's session, when Consul was reached. */
  readonly session?: string;
  /** The restore mark of the datadir, while replication has not started from it. */
  readonly restore: () => Restore | undefined;
  readonly bootstrapStatements: () => Promise<readonly (string | Statement)[]>;
  readonly takeFirstSnapshot: (server: MysqlServer) => Promise<string>;
  readonly primaryExecuted: (primary: PrimaryRecord) => Promise<string>;
  readonly probe: (m: MemberRecord) => Promise<MemberRecord | undefined>;
  readonly answersWritable: (node: PrimaryRecord) => Promise<boolean>;
  /** What a node's server answers over TCP (the takeover of a stale primary lock asks the old primary). */
  readonly askPrimary: (node: PrimaryRecord) => Promise<PrimaryAnswer>;
  /** A member's replication status over MySQL as the replication account (failsafe mode). */
  readonly replicaStatusOf: (m: KnownMember, signal: AbortSignal) => Promise<ReplicaStatus | undefined>;
  /** Before a fence while another node is primary: a semi-sync tail nobody acknowledged, discarded. */
  readonly discardUnacknowledgedTail: (
    lock: ClusterView["primary"] | undefined,
  ) => Promise<Outcome | undefined>;
  /** An errant node: its semi-sync tail discarded, or its extra transactions saved, then rebuilt. */
  readonly handleErrant: (
    server: MysqlServer,
    primary: PrimaryRecord,
    e: ErrantFound,
  ) => Promise<Outcome | undefined>;
}

/** Carries out one decision. */
export async function act(
  d: HealthDecision,
  p: PassDeps,
  view: ClusterView | undefined,
  signal?: AbortSignal,
): Promise<ActionResult> {
  if (d.action === "report") return { healthy: d.healthy };
  if (d.action === "fence") {
    const killed = await p.discardUnacknowledgedTail(view?.primary);
    if (killed) return { healthy: false, outcome: killed };
    return await fence(
      { server: p.server, kv: p.kv, self: p.self, session: p.session, releaseLock: d.releaseLock },
      signal,
    );
  }
  if (d.action === "failsafe") return await failsafe(p, required(p.server, "the local server"), d, signal);
  if (d.action === "end-switchover") {
    return await endSwitchover({
      kv: p.kv,
      session: required(p.session, "a session"),
      value: view?.failoverLock.value,
      reason: d.reason,
    });
  }
  // Every other decision is taken only with the server up and Consul reached.
  const server = required(p.server, "the local server");
  const me: Me = {
    self: p.self,
    session: required(p.session, "a session"),
    ...withPublished(
      publishedFor(p.state, p.config.failover.failsafe, view ? { view, self: p.self.node } : undefined),
    ),
  };
  const primary = {
    server,
    kv: p.kv,
    me,
    semiSync: p.config.mysql.semiSync,
    leaseMs: p.leaseMs,
    ...(p.config.mysql.requireTls ? { requireTls: requireTlsStatements(p.config) } : {}),
    ...(p.config.mysql.semiSync && view ? { aheadOf: () => membersAhead(p, server, view, signal) } : {}),
  };
  switch (d.action) {
    case "bootstrap-primary":
      if (!(await takePrimaryLock(p.kv, me))) return { healthy: false };
      return await bootstrapPrimary({
        ...primary,
        state: p.state,
        statements: p.bootstrapStatements,
        takeFirstSnapshot: () => p.takeFirstSnapshot(server),
      }, signal);
    case "resume-primary":
      if (!(await takePrimaryLock(p.kv, me))) return { healthy: false };
      return await serveAsPrimary({ ...primary, restore: p.restore() }, signal);
    case "recover-primary": {
      const r = await recoverPrimary(
        { kv: p.kv, me, identity: d.identity, guard: guardOf(p, server) },
        signal,
      );
      if (!r.taken) return r.result;
      return await serveAsPrimary({ ...primary, restore: p.restore() }, signal);
    }
    case "serve-as-primary":
      return await serveAsPrimary({ ...primary, restore: p.restore() }, signal);
    case "follow":
      return await follow({
        primary: d.primary,
        ...(d.fromGtid === undefined ? {} : { fromGtid: d.fromGtid }),
        demote: d.demote,
        server,
        state: p.state,
        restore: p.restore(),
        repl: {
          user: p.config.mysql.replUser,
          password: p.config.mysql.replPassword,
          ...(p.config.mysql.tls ? { tls: p.config.mysql.tls } : {}),
        },
        primaryExecuted: () => p.primaryExecuted(d.primary),
        errant: { hint: "", handle: (e) => p.handleErrant(server, d.primary, e) },
      }, signal);
    case "restart-replication":
      log.info("{reason}", { reason: d.reason });
      return await startReplication({ server, state: p.state, source: d.source }, signal);
    case "failover": {
      const r = await runFailover({
        kv: p.kv,
        me,
        failedPrimary: d.failedPrimary,
        probe: p.probe,
        answersWritable: p.answersWritable,
        guard: guardOf(p, server),
        ...(d.takeOver === undefined ? {} : { takeOver: { ...guardOf(p, server), found: d.takeOver } }),
      }, signal);
      if (r.appointed === p.self.node) {
        return await serveAsPrimary({ ...primary, restore: p.restore() }, signal);
      }
      if (r.appointed === undefined && !r.wait) return { healthy: false };
      return { healthy: false, again: await waitForAppointment(p.kv, me.session, signal) };
    }
  }
}

function required<T>(value: T | undefined, what: string): T {
  if (value === undefined) {
    throw new Error(`internal error: a decision that needs ${what} was taken without it`);
  }
  return value;
}

/** What the failover, the takeover and the recovery do about an old primary (src/ha/takeover.ts). */
function guardOf(p: PassDeps, server: MysqlServer): OldPrimaryGuard {
  return {
    leaseMs: p.leaseMs,
    failsafe: p.config.failover.failsafe,
    ask: p.askPrimary,
    server,
    self: p.self.node,
    state: p.state,
  };
}

/**
 * The first live member (asked over TCP, else its published record) holding transactions, executed or
 * received, that this node's server lacks: "N holds X"; undefined when none does.
 */
async function membersAhead(
  p: PassDeps,
  server: MysqlServer,
  view: ClusterView,
  signal?: AbortSignal,
): Promise<string | undefined> {
  const mine = (await server.gtidState({ signal })).executed;
  for (const m of view.live) {
    if (m.record.node === p.self.node) continue;
    const r = (await p.probe(m.record)) ?? m.record;
    for (const theirs of [r.executed, r.retrieved]) {
      const extra = subtractGtids(server.flavour, theirs, mine).toString();
      if (extra !== "") return `${r.node} holds ${extra}`;
    }
  }
  return undefined;
}
