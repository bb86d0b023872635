/**
 * `autopilot switchover [--to NODE]`: planned move of the primary role, run on the current primary.
 *
 * 1. Take the failover lock, so that no automatic failover starts meanwhile.
 * 2. Choose the target: `--to NODE`, or the replica that has the most (as a failover would).
 * 3. While still writable, wait until the target is nearly caught up, so the blocked phase is short.
 * 4. Block writes (read-only), read the final GTID set, wait until the target has executed all of it.
 * 5. Hand the primary lock to the target's own session. The target applies, turns writable and marks the lock
 *    ready in its own pass (ContainerPilot's watch fires `on-change` there as soon as this node leaves the
 *    primary service, which it does right after the hand-over); this node then rejoins as its replica. If anything fails before step 5, this node
 *    turns writable again and keeps the role.
 *
 * @module
 */
import { getLogger } from "@logtape/logtape";
import type { Config } from "../src/config.ts";
import { ConsulStore } from "../src/consul.ts";
import { type MemberRecord, planFailover } from "../src/ha/failover_plan.ts";
import { takeFailoverLock } from "../src/ha/failover_lock.ts";
import { primaryLockFrom } from "../src/ha/decide.ts";
import { connectLocal, connectPeer, delay, flavourOf } from "../src/local.ts";
import { liveMembers } from "../src/members.ts";
import { MysqlClient } from "../src/mysql/client.ts";
import { type Flavour, type FlavourSql, sqlFor } from "../src/mysql/flavour.ts";
import { clearLease, extendLease, leaseLeftMs, leaseMsFor } from "../src/mysql/lease.ts";
import { subtractGtids } from "../src/mysql/gtid.ts";
import { readState } from "../src/state.ts";
import { withdrawPrimary } from "../src/services.ts";
import type { CommandContext } from "../src/cli/command.ts";
import { EXIT } from "../src/cli/exit.ts";
import { print, printError } from "../src/cli/output.ts";

const log = getLogger(["autopilot", "switchover"]);

/** `autopilot switchover [--to NODE] [--timeout SECONDS]`. */
export async function runSwitchover(ctx: CommandContext): Promise<number> {
  const config = ctx.config;
  const state = await readState(config.node.stateDir);
  const flavour = flavourOf(config, state);
  const timeoutMs = Number(ctx.flags.timeout ?? 30) * 1000;
  if (!Number.isFinite(timeoutMs) || timeoutMs <= 0) {
    printError(
      `autopilot switchover: --timeout must be a number of seconds: current value is '${ctx.flags.timeout}'`,
    );
    return EXIT.usage;
  }
  const consul = new ConsulStore(config.consul);
  try {
    const lock = primaryLockFrom(await consul.get(config.keys.primary));
    if (lock.session === undefined || lock.session !== state.sessionId) {
      log.error(
        "This node ({node}) does not hold the primary lock (the primary is {primary}): run it there",
        {
          node: config.node.name,
          primary: lock.session ? lock.record?.node ?? "unknown" : "nobody",
        },
      );
      return EXIT.failed;
    }
    await using db = await connectLocal(config, flavour);
    return await switchover(config, consul, db, sqlFor(flavour), flavour, state.sessionId, {
      to: typeof ctx.flags.to === "string" ? ctx.flags.to : undefined,
      timeoutMs,
    });
  } finally {
    consul.close();
  }
}

/**
 * Moves the primary role from this node (which holds the lock with `session`) to the named or best replica.
 *
 * @returns The exit code: 0 once the lock is the target's; 1 when nothing changed (this node stays primary).
 */
export async function switchover(
  config: Config,
  consul: ConsulStore,
  db: MysqlClient,
  sql: FlavourSql,
  flavour: Flavour,
  session: string,
  opts: { to?: string; timeoutMs: number },
): Promise<number> {
  const me = config.node.name;
  const failoverValue = (promoted?: string) =>
    JSON.stringify({ node: me, at: Date.now(), switchover: true, promoted });
  const hold = await takeFailoverLock(consul, config.keys.failoverLock, session, failoverValue);
  if (hold === undefined) {
    log.error("A failover is running (FAILOVER_LOCK_KEY is held): try again when it has finished");
    return EXIT.failed;
  }
  let promoted: string | undefined;
  try {
    const members = (await liveMembers(config, consul)).filter((m) => m.record.node !== me);
    const target = chooseTarget(members.map((m) => m.record), opts.to);
    if (typeof target === "string") {
      log.error("{reason}", { reason: target });
      return EXIT.failed;
    }
    const targetSession = members.find((m) => m.record.node === target.node)!.session;
    await using peer = await connectPeer(config, target);
    const deadline = Date.now() + opts.timeoutMs;
    const missing = async () => {
      const mine = sql.gtidState((await db.query(sql.gtidStateQuery))[0]).executed;
      const theirs = sql.gtidState((await peer.query(sql.gtidStateQuery))[0]).executed;
      return subtractGtids(flavour, mine, theirs).toString();
    };
    // While still writable: let the target catch up, so the blocked phase is short.
    while ((await missing()) !== "" && Date.now() < deadline - opts.timeoutMs / 2) await delay(20);

    const blockedAt = performance.now();
    await db.run(sql.setReadOnly(true));
    log.info("Writes blocked on {me}; waiting for {target} to apply the last transactions", {
      me,
      target: target.node,
    });
    let lacking = await missing();
    while (lacking !== "" && Date.now() < deadline) {
      await delay(10);
      lacking = await missing();
    }
    if (lacking !== "") {
      // lease: renewed and extended first, then writable again (a session gone meanwhile stays read-only)
      const sentAt = performance.now();
      const renewed = await consul.renewSession(session);
      const ms = leaseLeftMs(leaseMsFor(config.session.ttlSeconds), sentAt, performance.now());
      if (!renewed || !(await extendLease(db, flavour, ms, { turningWritable: true }))) {
        log.error(
          "Switchover abandoned ({target} still lacks {lacking}), and this node's session is gone or its " +
            "lease could not be renewed: it stays read-only",
          { target: target.node, lacking },
        );
        return EXIT.failed;
      }
      await db.run(sql.setReadOnly(false));
      log.error("{target} still lacks {lacking} after {s} s: switchover abandoned, {me} stays primary", {
        target: target.node,
        lacking,
        s: opts.timeoutMs / 1000,
        me,
      });
      return EXIT.failed;
    }
    const [ro] = await db.query(sql.readOnlyQuery);
    if (Number(ro.read_only) !== 1) {
      log.error("{me} turned writable during the switchover (something else changed read_only): abandoned", {
        me,
      });
      return EXIT.failed;
    }
    // Hand the lock over: release it (no lock-delay on an explicit release) and take it for the target at once,
    // all while holding the failover lock, so nobody else can step in between.
    const record = JSON.stringify({ node: target.node, address: target.address, port: target.port });
    await consul.releaseLock(config.keys.primary, session, record);
    if (!(await consul.tryAcquireLock(config.keys.primary, targetSession, record))) {
      log.error("Could not give the primary lock to {target}; the next health passes will fail over", {
        target: target.node,
      });
      return EXIT.failed;
    }
    promoted = target.node;
    // lease: the role has moved away: no lease left here (already read-only)
    await clearLease(db, flavour).catch((e) =>
      log.warn("Cannot remove the in-server lease: {e}; it lapses by itself", { e: String(e) })
    );
    // This node is no longer the primary: out of the primary service now, not at its next pass.
    await withdrawPrimary(config, consul, me).catch((e) =>
      log.warn("Cannot withdraw the primary service: {e}; the next health pass does", { e: String(e) })
    );
    const blockedMs = Math.round(performance.now() - blockedAt);
    log.info(
      "Handed the primary role to {target} after {ms} ms with writes blocked here; it turns writable in " +
        "its next pass, and this node follows it",
      { target: target.node, ms: blockedMs },
    );
    print(`switchover: ${me} -> ${target.node} (writes blocked ${blockedMs} ms on ${me} so far)`);
    return EXIT.ok;
  } finally {
    await hold.release(promoted);
  }
}

/** The target: the named node, or the replica that has the most; a string says why there is none. */
function chooseTarget(members: readonly MemberRecord[], to: string | undefined): MemberRecord | string {
  if (to !== undefined) {
    const named = members.find((m) => m.node === to);
    if (named === undefined) {
      return `No live node named '${to}' (live: ${members.map((m) => m.node).join(", ")})`;
    }
    if (named.priority === 0) return `${to} has FAILOVER_PRIORITY=0 and is never made primary`;
    return named;
  }
  // The failover planner's rules, with this (healthy) primary left out: replicas of one primary are never
  // diverged, so the one that has the most is found; anything else means there is no safe target.
  const plan = planFailover(members.filter((m) => m.role === "replica"), undefined, 0);
  return plan.kind === "promote" ? plan.candidate : `No replica to switch over to: ${plan.reason}`;
}
