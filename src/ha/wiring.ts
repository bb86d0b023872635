/**
 * What a health pass hands its actions (src/ha/act.ts): the local server, the cluster's keys, and the few
 * operations that need the configuration (bootstrap statements, the first snapshot, probes of other nodes,
 * a rebuild), loaded only when an action needs them. Also the pass's own connections: the local server, and
 * the fail-safe turn to read-only after a pass that failed.
 *
 * @module
 */
import { getLogger } from "@logtape/logtape";
import { DeadlineError, delay } from "../abort.ts";
import { putMetrics } from "../metrics.ts";
import type { Config } from "../config.ts";
import { probeMember } from "../members.ts";
import { bootstrapStatements } from "../mysql/bootstrap.ts";
import { newClusterIdentity } from "../mysql/identity.ts";
import { MysqlUnavailableError } from "../mysql/client.ts";
import type { Flavour } from "../mysql/flavour.ts";
import { openLocalServer, openPeerServer } from "../mysql/server.ts";
import { leaseMsFor } from "../mysql/lease.ts";
import { writeFileAtomic } from "../state.ts";
import type { PassDeps } from "./act.ts";
import type { Restore } from "./actions.ts";
import type { KeptSession, LocalServer, PassNode } from "./facts.ts";
import { discardUnacknowledgedTail, handleErrant, type RebuildArgs } from "./rebuild.ts";
import { MEMBER_TIMEOUT_MS } from "./failsafe.ts";
import type { PrimaryAnswer } from "./takeover.ts";

const log = getLogger(["autopilot", "health"]);

/** The actions' dependencies for one pass. */
export function passDeps(
  w: PassNode & {
    readonly local: LocalServer;
    readonly session: KeptSession;
    readonly rebuild: RebuildArgs;
    readonly signal: AbortSignal;
  },
  restore: () => Restore | undefined,
): PassDeps {
  const { config, consul, flavour, local, session, signal } = w;
  return {
    config,
    consul,
    kv: w.kv,
    flavour,
    self: w.self,
    state: w.state,
    leaseMs: leaseMsFor(config.session.ttlSeconds),
    ...(local.server ? { server: local.server } : {}),
    ...("id" in session ? { session: session.id } : {}),
    restore,
    bootstrapStatements: async () =>
      bootstrapStatements(config, flavour, await rootPasswordFor(config), newClusterIdentity()),
    takeFirstSnapshot: async (server) =>
      (await (await import("../snapshots.ts")).takeAndPublishSnapshot(config, w.kv, flavour, server)).name,
    primaryExecuted: async (primary) => {
      await using peer = await openPeerServer(config, primary, undefined, { flavour, signal });
      return (await peer.gtidState({ signal })).executed;
    },
    probe: (m) => probeMember(config, { flavour }, m),
    answersWritable: (node) => answersWritable(config, flavour, node),
    askPrimary: (node) => askPrimary(config, flavour, node),
    replicaStatusOf: async (m, s) => {
      await using peer = await openPeerServer(config, m, MEMBER_TIMEOUT_MS, { flavour, signal: s });
      return await peer.replicaStatus({ signal: s });
    },
    handleErrant: (server, primary, e) => handleErrant(w.rebuild, server, primary, e),
    discardUnacknowledgedTail: (lock) =>
      discardUnacknowledgedTail({
        config,
        flavour,
        self: w.self,
        ...("id" in session ? { session: session.id } : {}),
      }, lock),
  };
}

/** The local server over its socket, or why it does not answer. */
export async function openLocal(config: Config, flavour: Flavour, signal: AbortSignal): Promise<LocalServer> {
  try {
    return { server: await openLocalServer(config, flavour, signal) };
  } catch (e) {
    if (!(e instanceof MysqlUnavailableError)) throw e;
    // Nothing listens on the socket: mysqld is not running. Otherwise (a timeout) it may still take writes.
    return { error: e.message, gone: ["ENOENT", "ECONNREFUSED"].includes(e.code) };
  }
}

/** How long a pass cut short by its deadline may still take to release what it holds. */
const ABANDONED_PASS_GRACE_MS = 3000;

/**
 * The error boundary of a pass that threw or ran out of time: the local server read-only ({@link failSafe}), a
 * moment for the abandoned pass to finish its own cleanup (a failover lock it holds is released in a
 * `finally`) before the process exits, one line saying what failed and what was done, the failed-check metrics.
 */
export async function endFailedPass(a: {
  readonly config: Config;
  readonly flavour: Flavour;
  readonly error: unknown;
  readonly step: { readonly now: string };
  /** When the run started (performance.now()). */
  readonly started: number;
  readonly pass: Promise<unknown>;
}): Promise<void> {
  const why = a.error instanceof DeadlineError
    ? a.error.message
    : (a.error as Error)?.message ?? String(a.error);
  const done = await failSafe(a.config, a.flavour);
  await Promise.race([a.pass.catch(() => {}), delay(ABANDONED_PASS_GRACE_MS)]);
  log.error("Health pass failed while {step}: {why}; {done}", { step: a.step.now, why, done });
  await putMetrics({
    health_checks_total: 1,
    health_check_failures_total: 1,
    health_check_seconds: (performance.now() - a.started) / 1000,
    healthy: 0,
  });
}

/**
 * After a failed pass: the local server read-only, over a connection of its own (the pass's may be what hung).
 *
 * @returns What was done, for the log line.
 */
export async function failSafe(config: Config, flavour: Flavour): Promise<string> {
  // Bounded too: a hung server is the usual reason a pass runs out of time.
  const signal = AbortSignal.timeout(FAIL_SAFE_MS);
  try {
    await using server = await openLocalServer(config, flavour, signal);
    if (await server.readOnly({ signal })) {
      return "the local server is read-only already; the next pass starts over";
    }
    await server.setReadOnly(true, { signal });
    return "turned the local server read-only (fail safe); the next pass makes it writable again if it " +
      "still holds the primary lock";
  } catch (e) {
    return `could not turn the local server read-only (${
      (e as Error).message
    }); the in-server lease fences it`;
  }
}

/** How long the fail-safe turn to read-only may take. */
const FAIL_SAFE_MS = 5000;

/** Whether a node's server answers over TCP with read_only off; false when it does not answer within 1 s. */
async function answersWritable(
  config: Config,
  flavour: Flavour,
  node: { address: string; port: number },
): Promise<boolean> {
  try {
    await using peer = await openPeerServer(config, node, 1000, { flavour });
    return !(await peer.readOnly({ signal: AbortSignal.timeout(1000) }));
  } catch {
    return false;
  }
}

/**
 * What a node's server answers over TCP within 1 s: writable, read-only, the connection refused (nothing
 * listens: mysqld is not running), or nothing (a cut link, a frozen machine, an error).
 */
async function askPrimary(
  config: Config,
  flavour: Flavour,
  node: { address: string; port: number },
): Promise<PrimaryAnswer> {
  try {
    await using peer = await openPeerServer(config, node, 1000, { flavour });
    return (await peer.readOnly({ signal: AbortSignal.timeout(1000) })) ? "read-only" : "writable";
  } catch (e) {
    return e instanceof MysqlUnavailableError && e.code === "ECONNREFUSED" ? "refused" : "silent";
  }
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
