/**
 * `autopilot status`: the cluster as one report, gathered from Consul and from every node's server.
 *
 * Three parts, kept apart so the verdict is testable on plain data:
 *
 * 1. {@link readConsulView} and {@link probeNode} do the I/O: what Consul says (the primary lock, member records,
 *    the instances of SERVICE_NAME and their checks, the pause and failover keys, the last snapshot), what the
 *    node it runs on recorded of a failing pre-start (STATE_DIR), and what each node's
 *    server says over TCP as the replication user (read-only, replica threads, lag, executed GTIDs), with short
 *    timeouts so a dead node is a row saying "unreachable" rather than a hang. {@link gatherStatus} runs both.
 * 2. {@link summariseStatus} is pure: it turns those facts into one row per node, the roles, the errant
 *    transactions (what a node has that the primary lacks) and the verdict with its reasons.
 * 3. {@link renderStatusTable} is pure: the report as text for people. The report itself is the JSON for scripts
 *    (`autopilot status --json`), a documented shape ({@link StatusReport}, `format: 1`).
 *
 * @module
 */
import type { Config } from "./config.ts";
import { ConsulStore, type InstanceHealth } from "./consul.ts";
import type { MemberRecord } from "./ha/failover_plan.ts";
import { type PrimaryLock, quietPeriodReason } from "./ha/decide.ts";
import {
  type ArchiveRecord,
  ConsulClusterKv,
  type FailoverRecord,
  type VerificationRecord,
} from "./cluster_kv.ts";
import { ERRANT_PREFIX, type ErrantSave, type Manifest, parseErrantKey } from "./backup/manifest.ts";
import type { Flavour, ReplicaStatus } from "./mysql/flavour.ts";
import { openPeerServer } from "./mysql/server.ts";
import { leaseMsFor } from "./mysql/lease.ts";
import { subtractGtids } from "./mysql/gtid.ts";
import { publishedManifest } from "./snapshots.ts";
import { replicaHealth, threadsOf } from "./replica_health.ts";
import { type PreStartFailure, readPreStartFailure, readState } from "./state.ts";
import { planRecovery, sameBoot, settleWindowMs } from "./ha/recovery.ts";
import { bootClockNow } from "./ha/recovery_action.ts";
import { describePreStartFailure } from "./pre_start_retry.ts";
import { errorMessage, formatBytes } from "./text.ts";

// --- facts ---------------------------------------------------------------------------------------------

/** A member record found under `SERVICE_NAME-members/`, and whether a live session still holds it. */
export interface MemberEntry {
  /** The record as published (only node, address and port are sure to be there). */
  readonly record: Pick<MemberRecord, "node" | "address" | "port"> & Partial<MemberRecord>;
  /** A session holds the key: the node's autopilot is renewing it. */
  readonly live: boolean;
}

/** What the last snapshot's manifest says (LAST_BACKUP_KEY). */
export type SnapshotFacts = Pick<Manifest, "name" | "createdAt" | "size" | "nodeName" | "gtid">;

/** Everything status reads from Consul, in one go. */
export interface ConsulView {
  /** PRIMARY_KEY. */
  readonly lock: PrimaryLock;
  /** Every member record, held or not (a record whose session ended stays behind). */
  readonly members: readonly MemberEntry[];
  /** Every registered instance of the SERVICE_NAME service and its checks (ContainerPilot registers them). */
  readonly instances: readonly InstanceHealth[];
  /** The value of FAILOVER_PAUSE_KEY, if the key exists. */
  readonly pause?: string;
  /**
   * FAILOVER_LOCK_KEY, if the key exists: its record (the last failover or switchover; absent when the value
   * is not one) and whether a session holds it now.
   */
  readonly failoverLock?: { readonly record?: FailoverRecord; readonly held: boolean };
  /** LAST_BACKUP_KEY, if it names a snapshot. */
  readonly snapshot?: SnapshotFacts;
  /** Why LAST_BACKUP_KEY could not be read as a manifest, if it could not. */
  readonly snapshotError?: string;
  /** LAST_VERIFIED_KEY (BACKUP_VERIFY): the last snapshot a replica verified, and the outcome. */
  readonly verified?: VerificationRecord;
  /** The identity `SERVICE_NAME-cluster` names, if the key holds one. */
  readonly cluster?: string;
  /** `SERVICE_NAME-binlog-archive`: how far the binlog archive reaches, if anything was archived. */
  readonly archive?: ArchiveRecord;
}

/** A node to probe: where its server listens, as Consul knows it. */
export interface NodeTarget {
  readonly node: string;
  readonly address: string;
  readonly port: number;
}

/** What one node's server said, or why it said nothing. */
export type NodeProbe =
  | { readonly reachable: false; readonly error: string }
  | {
    readonly reachable: true;
    readonly flavour: Flavour;
    /** `SELECT VERSION()`. */
    readonly version: string;
    readonly readOnly: boolean;
    /** The replication source and threads; absent when it replicates from nobody. */
    readonly replica?: ReplicaStatus;
    /** The TLS cipher of the probe's own connection to it; absent: plain text. */
    readonly cipher?: string;
    /** Executed GTIDs as text (MariaDB `gtid_binlog_state`, MySQL `gtid_executed`). */
    readonly executed: string;
  };

/** Everything {@link summariseStatus} needs. */
export interface StatusFacts {
  /** When the facts were gathered (epoch ms). */
  readonly now: number;
  /** SERVICE_NAME. */
  readonly serviceName: string;
  /** MAX_REPLICATION_LAG, in seconds. */
  readonly maxLagSeconds: number;
  /** FAILOVER_QUIET_PERIOD. */
  readonly quietPeriodMs: number;
  /** What Consul said. */
  readonly consul: ConsulView;
  /** Per node name (see {@link nodeTargets}); a node missing here counts as unreachable. */
  readonly probes: Readonly<Record<string, NodeProbe>>;
  /** What pre-start recorded on the node status runs on (its NODE_NAME) while it retries a failure. */
  readonly preStart?: PreStartFailure;
  /** RECOVERY_SETTLE_WINDOW (default 30 s). */
  readonly settleMs?: number;
  /**
   * How long the node status runs on has waited in a whole-cluster recovery (its state file, on its boot
   * clock); absent when it does not wait, or status runs elsewhere.
   */
  readonly recoveryWaitedMs?: number;
  /**
   * The keys under `errant-transactions/` in the snapshot store (errant nodes' extra transactions, saved before
   * a rebuild); undefined when the store could not be listed.
   */
  readonly errantKeys?: readonly string[];
}

// --- the report (the JSON shape of `status --json`) ----------------------------------------------------

/** A node's role as status sees it. */
export type NodeRole =
  /** Holds the primary lock (its server may still be unreachable or read-only: see problems). */
  | "primary"
  /** Replicates from some source. */
  | "replica"
  /** Has transactions the primary lacks: never rejoined silently. */
  | "errant"
  /** Answers, replicates from nobody and does not hold the lock. */
  | "none"
  /** Its server does not answer: nothing is known. */
  | "unknown";

/** One node's row. Every field is always present; `null` means "not known" or "not applicable". */
export interface NodeStatus {
  /** NODE_NAME, as its member record (or the primary lock, or its service id) gives it. */
  readonly node: string;
  /** Where its server listens (NODE_ADDRESS, MYSQL_PORT). */
  readonly address: string;
  readonly port: number;
  /** See {@link NodeRole}. */
  readonly role: NodeRole;
  /** Consul's check for the SERVICE_NAME service on this node. */
  readonly check: "passing" | "not passing";
  /**
   * The same in detail: the worst of its instance's checks in Consul, or `missing` when no instance of
   * SERVICE_NAME is registered at its address.
   */
  readonly checkStatus: "passing" | "warning" | "critical" | "missing";
  /** Its member record is held by a live session (its health checks run). */
  readonly session: boolean;
  /** When it last published its member record (ISO 8601), if it has one. */
  readonly lastSeen: string | null;
  /** Its server answered over TCP as the replication user. */
  readonly reachable: boolean;
  /** Why it did not answer. */
  readonly error: string | null;
  /** `mysql` or `mariadb`, as the server says (`SELECT VERSION()`). */
  readonly flavour: Flavour | null;
  /** `SELECT VERSION()`. */
  readonly version: string | null;
  /** `@@read_only`: every node but the primary should be read-only. */
  readonly readOnly: boolean | null;
  /** Replication from a source; `null` when it replicates from nobody (or is unreachable). */
  readonly replication: {
    /** `host:port`. */
    readonly source: string;
    /** The node at that address, if known. */
    readonly sourceNode: string | null;
    /** The receiver (I/O) thread. */
    readonly io: "yes" | "no" | "connecting";
    /** The applier (SQL) thread runs. */
    readonly sql: boolean;
    /** The last I/O or SQL thread error, if any. */
    readonly error: string | null;
    /** Over TLS (`verified`: the source's certificate checked against the CA and its address); absent: plain. */
    readonly tls?: "verified" | "unverified";
  } | null;
  /** The TLS cipher of autopilot's connection to this node's server; absent: plain text (or unreachable). */
  readonly tlsCipher?: string;
  /** Seconds behind its source; `null` when unknown or not a replica. */
  readonly lagSeconds: number | null;
  /** Its executed GTIDs (MariaDB `gtid_binlog_state`, MySQL `gtid_executed`); `null` when unreachable. */
  readonly gtidExecuted: string | null;
  /** GTIDs it has that the primary lacks: `""` none, `null` unknown (no reachable primary to compare with). */
  readonly errant: string | null;
  /** What is wrong with this node (empty when nothing is). */
  readonly problems: readonly string[];
}

/** The whole report: what `autopilot status --json` prints. */
export interface StatusReport {
  /** The shape's version; bumped only when a field changes meaning or goes away. */
  readonly format: 1;
  /** When the facts were gathered (ISO 8601). */
  readonly generatedAt: string;
  /** SERVICE_NAME. */
  readonly service: string;
  /**
   * One writable primary holding the lock, every node reachable, replicating from it within the lag limit and
   * passing its Consul check, none errant.
   */
  readonly healthy: boolean;
  /** Why it is not healthy, one sentence each (cluster-wide first, then per node). */
  readonly problems: readonly string[];
  /** MAX_REPLICATION_LAG, in seconds. */
  readonly maxLagSeconds: number;
  /** The primary lock's record: `held` false means nobody holds it now and this was the last holder. */
  readonly primary: {
    readonly node: string;
    readonly address: string;
    readonly port: number;
    /** A session holds the lock now. */
    readonly held: boolean;
    /** The holder finished its promotion (applied its relay log, turned writable). */
    readonly ready: boolean;
  } | null;
  /** Automatic failover: paused, running, or within its quiet period. */
  readonly failover: {
    /** FAILOVER_PAUSE_KEY exists: no automatic failover. */
    readonly paused: boolean;
    /** The pause key's value (e.g. why it was paused), if it has one. */
    readonly pauseNote: string | null;
    /** The node running a failover or switchover now (it holds FAILOVER_LOCK_KEY). */
    readonly running: string | null;
    /** The last failover or switchover, from FAILOVER_LOCK_KEY. */
    readonly last: {
      readonly at: string;
      readonly by: string | null;
      readonly failedPrimary: string | null;
      readonly promoted: string | null;
      readonly switchover: boolean;
      /** A whole-cluster recovery after Consul lost its keys: `promoted` took the lock keeping its data. */
      readonly recovery: boolean;
    } | null;
    /** The end of FAILOVER_QUIET_PERIOD after the last promotion, while it lasts. */
    readonly quietUntil: string | null;
    /** Why an automatic failover is held back right now by the quiet period, if it is. */
    readonly heldBack: string | null;
  };
  /** The last snapshot, from LAST_BACKUP_KEY. */
  readonly snapshot: {
    readonly name: string;
    readonly createdAt: string;
    readonly ageSeconds: number;
    /** Stored (compressed) bytes. */
    readonly size: number;
    readonly node: string;
    readonly gtid: string;
    /** Its verification (BACKUP_VERIFY), when a replica verified this snapshot; null when none did. */
    readonly verified: {
      readonly ok: boolean;
      readonly node: string;
      readonly at: string;
      readonly error?: string;
      /** How many archived binlogs the verification replayed after the snapshot, and the position reached. */
      readonly binlogs?: number;
      readonly replayedTo?: string;
    } | null;
  } | null;
  /** The binlog archive, from `SERVICE_NAME-binlog-archive`; null when nothing was archived yet. */
  readonly archive: {
    /** The primary that archived last, and the position the archive reaches. */
    readonly node: string;
    readonly position: string;
    /** The newest archived transaction (ISO 8601), if any. */
    readonly lastTransaction: string | null;
    /** When the archive last held everything the primary had executed, and how long ago. */
    readonly caughtUpAt: string;
    readonly caughtUpSecondsAgo: number;
    /**
     * How far behind the primary the archive is now, in seconds: 0 when it holds everything the primary
     * executed (as probed), else the time since it last did (an upper bound on the age of what is not
     * archived); null when the primary's GTIDs are unknown.
     */
    readonly lagSeconds: number | null;
    /** The newest gap, if the archive ever found one. */
    readonly gap: { readonly after: string; readonly resumes: string; readonly at: string } | null;
  } | null;
  /** One row per node, sorted by name. */
  readonly nodes: readonly NodeStatus[];
  /**
   * The failure pre-start recorded on the node status ran on, while it retries: that node's mysqld has not
   * started. `null` when there is none (or status ran elsewhere).
   */
  readonly preStart: PreStartFailure | null;
  /**
   * Whole-cluster recovery (src/ha/recovery.ts): Consul has no primary lock record at all while members hold
   * data (Consul lost its keys). `null` otherwise (a cluster with a lock record, or a new empty one).
   */
  readonly recovery: {
    /** The identity Consul's `SERVICE_NAME-cluster` names; null when the key is missing too. */
    readonly cluster: string | null;
    /** RECOVERY_SETTLE_WINDOW, seconds. */
    readonly settleWindowSeconds: number;
    /** How long the node status ran on has waited (its own state and clock); null elsewhere or not waiting. */
    readonly waitedSeconds: number | null;
    /** The node the live members' records choose (once the window is over); null when none can be. */
    readonly chosen: string | null;
    /** Why it, or why nobody: every reporting node's GTID set. */
    readonly reason: string;
    /** Live members holding data without this cluster's identity (none, or another): never chosen. */
    readonly refused: readonly string[];
  } | null;
  /**
   * Extra transactions of errant nodes, saved to the snapshot store before they were rebuilt (never merged:
   * someone should look at them), newest first; `null` when the store could not be listed.
   */
  readonly errantSaved: readonly ErrantSave[] | null;
}

// --- pure: which nodes --------------------------------------------------------------------------------

/**
 * The nodes Consul knows: every member record (live, or left behind by a node whose session ended, unless a live
 * node now uses its address), the primary lock's record, and passing SERVICE_NAME instances that match no member
 * by address and port (named from their service id, `SERVICE_NAME-NODE` as ContainerPilot registers it; an
 * instance that does not pass and matches no member is not a node to show).
 *
 * @returns One target per node name, sorted by name.
 */
export function nodeTargets(view: ConsulView, serviceName: string): NodeTarget[] {
  const byName = new Map<string, NodeTarget>();
  const add = (t: NodeTarget) => {
    if (!byName.has(t.node)) byName.set(t.node, { node: t.node, address: t.address, port: t.port });
  };
  const live = view.members.filter((m) => m.live);
  // A record left behind at an address a live node now uses (a replaced container) is superseded.
  const superseded = (m: MemberEntry) =>
    !m.live && live.some((l) => l.record.address === m.record.address && l.record.port === m.record.port);
  for (const m of view.members) if (!superseded(m)) add(m.record);
  if (view.lock.record) add(view.lock.record);
  for (const i of view.instances.filter((i) => i.status === "passing")) {
    const known = [...byName.values()].some((t) => t.address === i.address && t.port === i.port);
    if (!known) add({ node: instanceNodeName(i.id, serviceName), address: i.address, port: i.port });
  }
  return [...byName.values()].sort((a, b) => byNodeName(a.node, b.node));
}

function instanceNodeName(id: string, serviceName: string): string {
  return id.startsWith(`${serviceName}-`) ? id.slice(serviceName.length + 1) : id;
}

function byNodeName(a: string, b: string): number {
  return a.localeCompare(b, "en", { numeric: true });
}

// --- pure: the verdict --------------------------------------------------------------------------------

/**
 * Turns gathered facts into the report: rows, roles, errant transactions and the verdict.
 *
 * @param f The facts (see {@link gatherStatus}).
 * @returns The report; `healthy` is true exactly when `problems` is empty.
 */
export function summariseStatus(f: StatusFacts): StatusReport {
  const { lock } = f.consul;
  const targets = nodeTargets(f.consul, f.serviceName);
  const holder = lock.session !== undefined ? lock.record : undefined;
  const holderProbe = holder ? f.probes[holder.node] : undefined;
  const primaryFacts = holderProbe?.reachable ? holderProbe : undefined;
  const nameAt = (address: string, port: number) =>
    targets.find((t) => t.address === address && t.port === port)?.node ?? null;

  const nodes = targets.map((t) => nodeStatus(t, f, holder, primaryFacts, nameAt));
  // pre-start's failure belongs to its node's row; a node that never started has none
  const preStart = f.preStart ? describePreStartFailure(f.preStart, f.now) : undefined;
  const preStartRow = preStart !== undefined && nodes.some((n) => n.node === f.preStart!.node);
  const problems = [
    ...(preStart !== undefined && !preStartRow ? [preStart] : []),
    ...clusterProblems(f, targets, holder, nodes),
    ...nodes.flatMap((n) => n.problems),
  ];
  return {
    format: 1,
    generatedAt: iso(f.now),
    service: f.serviceName,
    healthy: problems.length === 0,
    problems,
    maxLagSeconds: f.maxLagSeconds,
    primary: lock.record
      ? {
        node: lock.record.node,
        address: lock.record.address,
        port: lock.record.port,
        held: holder !== undefined,
        ready: holder !== undefined && lock.record.ready === true,
      }
      : null,
    failover: failoverStatus(f),
    snapshot: f.consul.snapshot
      ? {
        name: f.consul.snapshot.name,
        createdAt: f.consul.snapshot.createdAt,
        ageSeconds: Math.max(0, Math.round((f.now - Date.parse(f.consul.snapshot.createdAt)) / 1000)),
        size: f.consul.snapshot.size,
        node: f.consul.snapshot.nodeName,
        gtid: f.consul.snapshot.gtid,
        verified: verificationOf(f.consul),
      }
      : null,
    archive: archiveStatus(f),
    nodes,
    preStart: f.preStart ?? null,
    errantSaved: f.errantKeys === undefined ? null : errantSavesOf(f.errantKeys),
    recovery: recoveryStatus(f),
  };
}

/** The recovery section: what the live members' records choose, as every node's planner would. Pure. */
export function recoveryStatus(f: StatusFacts): StatusReport["recovery"] {
  const { lock } = f.consul;
  if (lock.record !== undefined || lock.session !== undefined) return null;
  const live = f.consul.members.filter((m) => m.live).map((m) => m.record);
  const withData = live.filter((r) => r.cluster !== undefined || (r.executed ?? "") !== "");
  if (withData.length === 0) return null;
  const records = live.filter((r): r is MemberRecord =>
    typeof r.executed === "string" && typeof r.flavour === "string" && typeof r.priority === "number"
  ).map((r) => ({ ...r, retrieved: r.retrieved ?? "" }));
  // The identity to recover: Consul's key, else the one the members' data carries (the most common).
  const counts = new Map<string, number>();
  for (const r of records) {
    if (r.cluster !== undefined) counts.set(r.cluster, (counts.get(r.cluster) ?? 0) + 1);
  }
  const identity = f.consul.cluster ?? [...counts.entries()].sort((a, b) => b[1] - a[1])[0]?.[0];
  const refused = withData.filter((r) => r.cluster === undefined || r.cluster !== identity).map((r) =>
    r.node
  );
  const ofIt = identity === undefined ? [] : records.filter((r) => r.cluster === identity);
  const departed = f.consul.members.filter((m) => !m.live).map((m) => m.record).filter((
    r,
  ): r is MemberRecord => typeof r.executed === "string" && typeof r.flavour === "string").map((r) => ({
    ...r,
    retrieved: r.retrieved ?? "",
  }));
  const plan = ofIt.length === 0 ? undefined : planRecovery(identity!, ofIt[0].node, ofIt, departed);
  return {
    cluster: f.consul.cluster ?? null,
    settleWindowSeconds: Math.round((f.settleMs ?? 30_000) / 1000),
    waitedSeconds: f.recoveryWaitedMs === undefined ? null : Math.round(f.recoveryWaitedMs / 1000),
    chosen: plan?.kind === "promote" ? plan.candidate.node : null,
    reason: plan === undefined
      ? "no live member's data carries a cluster identity: nothing can be recovered automatically"
      : plan.reason,
    refused: refused.sort(byNodeName),
  };
}

/** One entry per save (its three objects share a base), newest first. */
export function errantSavesOf(keys: readonly string[]): ErrantSave[] {
  const byBase = new Map<string, ErrantSave>();
  for (const key of keys) {
    const save = parseErrantKey(key);
    if (save) byBase.set(save.base, save);
  }
  return [...byBase.values()].sort((a, b) => b.at.localeCompare(a.at) || a.base.localeCompare(b.base));
}

type Reachable = Extract<NodeProbe, { reachable: true }>;

function nodeStatus(
  t: NodeTarget,
  f: StatusFacts,
  holder: PrimaryLock["record"],
  primary: Reachable | undefined,
  nameAt: (address: string, port: number) => string | null,
): NodeStatus {
  const probe: NodeProbe = f.probes[t.node] ?? { reachable: false, error: "not probed" };
  const member = f.consul.members.find((m) => m.record.node === t.node);
  const session = member?.live === true;
  const lastSeen = typeof member?.record.updatedAt === "number" ? iso(member.record.updatedAt) : null;
  const instances = f.consul.instances.filter((i) => i.address === t.address && i.port === t.port);
  const checkStatus = checkOf(instances);
  const check: NodeStatus["check"] = checkStatus === "passing" ? "passing" : "not passing";
  const isHolder = holder !== undefined && holder.node === t.node;
  const preStart = f.preStart?.node === t.node ? describePreStartFailure(f.preStart, f.now) : undefined;
  /**
   * The row's problems: pre-start's failure first; a check that does not pass only if nothing explains it
   * (`explained`: a cluster-wide problem of the lock holder does).
   */
  const withCheck = (problems: string[], explained = false): string[] => {
    const all = preStart !== undefined ? [preStart, ...problems] : problems;
    if (all.length > 0 || explained || checkStatus === "passing") return all;
    if (checkStatus === "missing") {
      return member === undefined ? [] : [
        `${t.node}: has a member record but no ${f.serviceName} service in Consul's catalog ` +
        "(ContainerPilot registers it on that node: is it running there?)",
      ];
    }
    const failing = instances.find((i) => i.status === checkStatus)?.failing;
    const detail = failing ? ` (check '${failing.name}'${failing.output ? `: ${failing.output}` : ""})` : "";
    return [
      `${t.node}: its ${f.serviceName} check in Consul is ${checkStatus}${detail}; its server looks sound ` +
      "from here: see that node's ContainerPilot log",
    ];
  };
  // The JSON lists fields in this order: identity and role first.
  const head = (role: NodeRole) => ({
    node: t.node,
    address: t.address,
    port: t.port,
    role,
    check,
    checkStatus,
    session,
    lastSeen,
  });

  if (!probe.reachable) {
    // the lock holder's own problems are cluster-wide ones (see clusterProblems): they explain its check too
    const problems = isHolder ? [] : [unreachableProblem(t.node, probe.error, session, member, f.now)];
    return {
      ...head(isHolder ? "primary" : "unknown"),
      reachable: false,
      error: probe.error,
      flavour: null,
      version: null,
      readOnly: null,
      replication: null,
      lagSeconds: null,
      gtidExecuted: null,
      errant: null,
      problems: withCheck(problems, isHolder),
    };
  }

  const r = probe.replica;
  const replication = r
    ? {
      source: `${r.sourceHost}:${r.sourcePort}`,
      sourceNode: nameAt(r.sourceHost, r.sourcePort),
      io: r.ioRunning,
      sql: r.sqlRunning,
      error: [r.lastIoError && `I/O: ${r.lastIoError}`, r.lastSqlError && `SQL: ${r.lastSqlError}`]
        .filter(Boolean).join("; ") || null,
      ...(r.tls ? { tls: r.tls } : {}),
    }
    : null;
  const errant = isHolder ? "" : errantOf(probe, primary);
  const role: NodeRole = isHolder ? "primary" : errant ? "errant" : r ? "replica" : "none";
  const problems: string[] = [];
  const name = t.node;
  if (!isHolder) {
    if (!session) {
      problems.push(
        member
          ? `${name}: its member record has no live Consul session: its health checks are not running`
          : `${name}: has no member record in Consul: its health checks are not running`,
      );
    }
    if (!probe.readOnly) problems.push(`${name}: writable without holding the primary lock`);
    if (errant) {
      problems.push(`${name}: errant: it has transactions the primary ${holder!.node} lacks: ${errant}`);
    } else if (primary && probe.flavour !== primary.flavour) {
      problems.push(`${name}: runs ${probe.flavour} but the primary ${holder!.node} runs ${primary.flavour}`);
    }
    if (holder !== undefined && !errant) {
      problems.push(...replicationProblems(name, r, holder, f.maxLagSeconds));
    }
  }
  // The lock holder's read-only server or unfinished promotion is a cluster-wide problem that explains its check.
  const holderExplained = isHolder && (probe.readOnly || holder.ready !== true);
  return {
    ...head(role),
    reachable: true,
    error: null,
    flavour: probe.flavour,
    version: probe.version,
    readOnly: probe.readOnly,
    replication,
    ...(probe.cipher ? { tlsCipher: probe.cipher } : {}),
    lagSeconds: r ? r.lagSeconds : null,
    gtidExecuted: probe.executed,
    errant,
    problems: withCheck(problems, holderExplained),
  };
}

/** The best state among the instances at a node's address (any passing one passes), or `missing`. */
function checkOf(instances: readonly InstanceHealth[]): NodeStatus["checkStatus"] {
  for (const state of ["passing", "warning", "critical"] as const) {
    if (instances.some((i) => i.status === state)) return state;
  }
  return "missing";
}

/** What the node has that the primary lacks; `null` when that cannot be told. */
function errantOf(node: Reachable, primary: Reachable | undefined): string | null {
  if (primary === undefined || primary.flavour !== node.flavour) return null;
  try {
    return subtractGtids(node.flavour, node.executed, primary.executed).toString();
  } catch {
    return null; // a malformed set: unknown rather than a guess
  }
}

function replicationProblems(
  name: string,
  r: ReplicaStatus | undefined,
  primary: NonNullable<PrimaryLock["record"]>,
  maxLag: number,
): string[] {
  const wanted = `${primary.address}:${primary.port}`;
  const nobody = `${name}: replicates from nobody (the primary is ${primary.node}, ${wanted})`;
  if (r === undefined) return [nobody];
  const source = `${r.sourceHost}:${r.sourcePort}`;
  if (source !== wanted) {
    return [`${name}: replicates from ${source}, not from the primary ${primary.node} (${wanted})`];
  }
  const health = replicaHealth(r, maxLag);
  if (health.healthy) return [];
  switch (health.problem) {
    case "stopped":
      return [`${name}: replication is not running ${threadsOf(r)}`];
    case "lag-unknown":
      return [`${name}: replication lag is unknown`];
    case "lagging":
      return [`${name}: lags ${r.lagSeconds} s behind the primary (limit ${maxLag} s)`];
    case "not-replicating":
      return [nobody];
  }
}

function unreachableProblem(
  name: string,
  error: string,
  session: boolean,
  member: MemberEntry | undefined,
  now: number,
): string {
  if (session || member === undefined) return `${name}: unreachable: ${error}`;
  const seen = typeof member.record.updatedAt === "number"
    ? ` (last seen ${duration(Math.max(0, now - member.record.updatedAt) / 1000)} ago)`
    : "";
  return `${name}: down: unreachable (${error}) and no Consul session${seen}`;
}

function clusterProblems(
  f: StatusFacts,
  targets: readonly NodeTarget[],
  holder: PrimaryLock["record"],
  nodes: readonly NodeStatus[],
): string[] {
  const out: string[] = [];
  const { lock } = f.consul;
  if (targets.length === 0) {
    out.push(
      `no nodes found in Consul (no member records under ${f.serviceName}-members/, no passing ` +
        `${f.serviceName} instances)`,
    );
  }
  if (holder === undefined) {
    const held = failoverStatus(f);
    const why = held.paused
      ? " and automatic failover is paused"
      : held.running
      ? `; ${held.running} is running a failover`
      : held.heldBack
      ? `; ${held.heldBack}`
      : "";
    out.push(
      lock.session !== undefined
        ? `the primary lock is held, but its value names no node: ${f.serviceName}'s primary is unknown`
        : lock.record
        ? `nobody holds the primary lock (last holder: ${lock.record.node})${why}`
        : recoveryStatus(f) !== null
        ? `Consul has no primary lock record (its keys were lost?) while nodes hold data: whole-cluster ` +
          `recovery${why}`
        : `no primary has been elected yet${why}`,
    );
  } else {
    const row = nodes.find((n) => n.node === holder.node)!;
    if (!row.reachable) {
      out.push(`the primary ${holder.node} holds the lock but its server does not answer: ${row.error}`);
    } else if (row.readOnly) {
      out.push(`the primary ${holder.node} holds the lock but is read-only (promotion not finished?)`);
    } else if (!holder.ready) {
      out.push(`the primary ${holder.node} holds the lock but has not finished its promotion`);
    }
  }
  if (f.consul.snapshotError) out.push(`the last snapshot cannot be read: ${f.consul.snapshotError}`);
  const verified = verificationOf(f.consul);
  if (verified !== null && !verified.ok) {
    out.push(
      `the last snapshot ${f.consul.snapshot?.name} failed verification on ${verified.node}: ${verified.error}; ` +
        "take a new one ('autopilot backup now' on the primary)",
    );
  }
  return out;
}

/** The archive's line of the report: how far it reaches, and how far behind the primary it is. */
function archiveStatus(f: StatusFacts): StatusReport["archive"] {
  const a = f.consul.archive;
  if (a === undefined) return null;
  const holder = f.consul.lock.session !== undefined ? f.consul.lock.record?.node : undefined;
  const probe = holder !== undefined ? f.probes[holder] : undefined;
  const ago = Math.max(0, Math.round((f.now - Date.parse(a.caughtUpAt)) / 1000));
  let lagSeconds: number | null = null;
  if (probe?.reachable) {
    try {
      lagSeconds = subtractGtids(probe.flavour, probe.executed, a.endState).isEmpty() ? 0 : ago;
    } catch {
      lagSeconds = null;
    }
  }
  return {
    node: a.node,
    position: a.endState,
    lastTransaction: a.lastTime !== undefined ? new Date(a.lastTime * 1000).toISOString() : null,
    caughtUpAt: a.caughtUpAt,
    caughtUpSecondsAgo: ago,
    lagSeconds,
    // A gap matters until a snapshot taken after it starts a new recoverable window.
    gap: a.gap !== undefined && !(f.consul.snapshot !== undefined && f.consul.snapshot.createdAt > a.gap.at)
      ? a.gap
      : null,
  };
}

/**
 * ` (3 archived binlogs replayed to 0-1-42)`; "" when none was (no archive after the snapshot, or the first one
 * failed: the problem names it) or the record does not say (an older autopilot's).
 */
function replayedLine(v: { readonly binlogs?: number; readonly replayedTo?: string }): string {
  if (v.binlogs === undefined || v.binlogs === 0 || v.replayedTo === undefined) return "";
  return ` (${v.binlogs} archived binlog${v.binlogs === 1 ? "" : "s"} replayed${
    v.replayedTo !== "" ? ` to ${v.replayedTo}` : ""
  })`;
}

/** The verification of the snapshot Consul names now, if one was recorded for it. */
function verificationOf(c: ConsulView): NonNullable<StatusReport["snapshot"]>["verified"] {
  const v = c.verified;
  if (v === undefined || c.snapshot === undefined || v.name !== c.snapshot.name) return null;
  return {
    ok: v.ok,
    node: v.node,
    at: v.at,
    ...(v.error !== undefined ? { error: v.error } : {}),
    ...(v.binlogs !== undefined ? { binlogs: v.binlogs } : {}),
    ...(v.replayedTo !== undefined ? { replayedTo: v.replayedTo } : {}),
  };
}

function failoverStatus(f: StatusFacts): StatusReport["failover"] {
  const { lock, failoverLock, pause } = f.consul;
  let last: StatusReport["failover"]["last"] = null;
  let quietUntil: string | null = null;
  let by: string | null = null;
  const record = failoverLock?.record;
  if (record) {
    by = record.node;
    const at = record.at;
    if (at > 0) {
      const promoted = record.promoted ?? null;
      last = {
        at: iso(at),
        by,
        failedPrimary: record.failedPrimary ?? null,
        promoted,
        switchover: record.switchover === true,
        recovery: record.recovery === true,
      };
      if (promoted !== null && f.now < at + f.quietPeriodMs) quietUntil = iso(at + f.quietPeriodMs);
    }
  }
  const heldBack = lock.session === undefined && lock.record !== undefined && failoverLock
    ? quietPeriodReason(
      record,
      lock.record.node,
      f.now,
      f.quietPeriodMs,
      f.consul.members.filter((m) => m.live).map((m) => m.record.node),
    ) ?? null
    : null;
  return {
    paused: pause !== undefined,
    pauseNote: pause !== undefined && pause.trim() !== "" ? pause.trim() : null,
    running: failoverLock?.held ? by ?? "unknown" : null,
    last,
    quietUntil,
    heldBack,
  };
}

function iso(ms: number): string {
  return new Date(ms).toISOString();
}

// --- pure: the table ----------------------------------------------------------------------------------

/** The table's column headers, in order (`status` prints them; tests read rows by them). */
export const TABLE_COLUMNS = [
  "NODE",
  "ADDRESS",
  "ROLE",
  "CHECK",
  "SERVER",
  "SOURCE",
  "IO/SQL",
  "LAG",
  "GTID EXECUTED",
  "ERRANT",
] as const;

/**
 * The report as text: the primary, the last snapshot and the failover state, then one row per node, then the
 * verdict. Cells never contain two spaces in a row and are never empty (`-`: not applicable, `?`: unknown), so
 * columns can be split on runs of two or more spaces.
 *
 * @param report What {@link summariseStatus} returned.
 * @returns Lines joined with newlines (no trailing newline).
 */
export function renderStatusTable(report: StatusReport): string {
  const lines: string[] = [];
  const p = report.primary;
  lines.push(
    `primary:   ${
      p === null
        ? "none (no primary has been elected yet)"
        : p.held
        ? `${p.node} (${p.address}:${p.port})${p.ready ? "" : ", promotion not finished"}`
        : `none: the lock is free (last holder: ${p.node}, ${p.address}:${p.port})`
    }`,
  );
  const s = report.snapshot;
  lines.push(
    `snapshot:  ${
      s === null
        ? "none published"
        : `${s.name}, ${duration(s.ageSeconds)} old (${s.createdAt.replace(/\.\d+Z$/, "Z")}), ${
          formatBytes(s.size)
        }, from ${s.node}${s.gtid ? ` at ${s.gtid}` : ""}${
          s.verified === null
            ? ""
            : s.verified.ok
            ? `, verified on ${s.verified.node}${replayedLine(s.verified)}`
            : `, FAILED verification on ${s.verified.node}${replayedLine(s.verified)}`
        }`
    }`,
  );
  const a = report.archive;
  lines.push(
    `archive:   ${
      a === null
        ? "nothing archived yet (the primary's binlog-archive task uploads its binlogs)"
        : `reaches ${a.position}${
          a.lastTransaction ? ` (last transaction ${a.lastTransaction.replace(/\.\d+Z$/, "Z")})` : ""
        }, ` +
          `archived by ${a.node}; ${
            a.lagSeconds === null
              ? `caught up with the primary ${duration(a.caughtUpSecondsAgo)} ago`
              : a.lagSeconds === 0
              ? "holds everything the primary executed"
              : `lag ${duration(a.lagSeconds)} (the primary has transactions not archived yet)`
          }${
            a.gap ? `; GAP after ${a.gap.after || "(nothing)"} up to ${a.gap.resumes} (seen ${a.gap.at})` : ""
          }`
    }`,
  );
  lines.push(`failover:  ${failoverLine(report.failover)}`);
  if (report.recovery !== null) lines.push(`recovery:  ${recoveryLine(report.recovery)}`);
  for (const e of report.errantSaved ?? []) {
    lines.push(
      `errant:    ${e.node}'s extra transactions ${e.gtids.replace(/_/g, ",")} saved at ${e.at}: ` +
        `${e.base}.events.sql, .readable.sql (never merged: review them)`,
    );
  }
  lines.push("");
  const rows = [
    [...TABLE_COLUMNS],
    ...report.nodes.map((n) =>
      [
        n.node,
        `${n.address}:${n.port}`,
        n.role,
        n.session ? n.checkStatus : `${n.checkStatus}, no session`,
        n.reachable ? (n.readOnly ? "read-only" : "writable") : "unreachable",
        n.replication
          ? `${n.replication.sourceNode ?? n.replication.source}${
            n.replication.tls
              ? ` (TLS${n.replication.tls === "verified" ? ", verified" : ", NOT verified"})`
              : ""
          }`
          : "-",
        n.replication ? `${n.replication.io}/${n.replication.sql ? "yes" : "no"}` : "-",
        n.replication ? (n.lagSeconds === null ? "?" : `${n.lagSeconds}s`) : "-",
        n.gtidExecuted === null ? "?" : n.gtidExecuted || "-",
        n.errant === null ? "?" : n.errant || "-",
      ].map(cell)
    ),
  ];
  const widths = TABLE_COLUMNS.map((_, i) => Math.max(...rows.map((r) => r[i].length)));
  for (const r of rows) lines.push(r.map((c, i) => c.padEnd(widths[i])).join("  ").trimEnd());
  const ciphers = report.nodes.filter((n) => n.tlsCipher).map((n) => `${n.node} ${n.tlsCipher}`);
  if (ciphers.length > 0) lines.push(`tls:       autopilot's connections: ${ciphers.join(", ")}`);
  lines.push("");
  lines.push(
    report.healthy
      ? `healthy: ${report.primary?.node} is the writable primary; every node answers and replicates from it ` +
        `within ${report.maxLagSeconds} s, none errant`
      : `unhealthy: ${report.problems.length} problem${report.problems.length === 1 ? "" : "s"}:`,
  );
  for (const problem of report.healthy ? [] : report.problems) lines.push(`  - ${problem}`);
  return lines.join("\n");
}

function recoveryLine(r: NonNullable<StatusReport["recovery"]>): string {
  const parts = [
    r.cluster === null ? "Consul names no cluster identity" : `cluster ${r.cluster}`,
    r.waitedSeconds === null
      ? `settle window ${r.settleWindowSeconds}s`
      : r.waitedSeconds < r.settleWindowSeconds
      ? `this node waits: ${r.waitedSeconds}s of the ${r.settleWindowSeconds}s settle window`
      : `the ${r.settleWindowSeconds}s settle window is over on this node`,
    r.chosen !== null ? `${r.chosen} is chosen: ${r.reason}` : `nobody can be chosen: ${r.reason}`,
  ];
  if (r.refused.length > 0) parts.push(`refused (no or another identity): ${r.refused.join(", ")}`);
  return parts.join("; ");
}

function failoverLine(fo: StatusReport["failover"]): string {
  const parts: string[] = [];
  parts.push(
    fo.paused ? `PAUSED (FAILOVER_PAUSE_KEY exists${fo.pauseNote ? `: ${fo.pauseNote}` : ""})` : "automatic",
  );
  if (fo.running) parts.push(`a failover is running on ${fo.running}`);
  if (fo.quietUntil) parts.push(`quiet period until ${fo.quietUntil.replace(/\.\d+Z$/, "Z")}`);
  if (fo.heldBack) parts.push(`held back: ${fo.heldBack}`);
  if (fo.last) {
    const what = fo.last.switchover ? "switchover" : fo.last.recovery ? "recovery" : "failover";
    const moved = fo.last.promoted
      ? fo.last.recovery
        ? `${fo.last.promoted} became primary (Consul had lost its keys)`
        : `${fo.last.failedPrimary ?? fo.last.by ?? "?"} -> ${fo.last.promoted}`
      : "nobody promoted";
    parts.push(`last ${what}: ${moved} at ${fo.last.at.replace(/\.\d+Z$/, "Z")}`);
  }
  return parts.join("; ");
}

function cell(text: string): string {
  const t = text.replace(/\s+/g, " ").trim();
  return t === "" ? "-" : t;
}

/** `75` -> `1m15s`, `3700` -> `1h1m`, `90000` -> `1d1h`. */
function duration(totalSeconds: number): string {
  const s = Math.round(totalSeconds);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${s % 60 ? `${s % 60}s` : ""}`;
  if (s < 86400) {
    return `${Math.floor(s / 3600)}h${Math.floor(s % 3600 / 60) ? `${Math.floor(s % 3600 / 60)}m` : ""}`;
  }
  return `${Math.floor(s / 86400)}d${Math.floor(s % 86400 / 3600) ? `${Math.floor(s % 86400 / 3600)}h` : ""}`;
}

// --- I/O ----------------------------------------------------------------------------------------------

/**
 * Reads what status needs from Consul: the cluster's keys in one recursive read, and the SERVICE_NAME
 * instances with their checks, together.
 *
 * @throws {ConsulUnavailableError} when Consul cannot be reached; {@link ConsulRequestError} when it refuses.
 */
export async function readConsulView(config: Config, consul: ConsulStore): Promise<ConsulView> {
  const kv = new ConsulClusterKv(config, consul);
  const [view, instances] = await Promise.all([kv.read(), consul.serviceHealth(config.serviceName)]);
  let snapshotFacts: SnapshotFacts | undefined;
  let snapshotError: string | undefined;
  try {
    const m = publishedManifest(view.lastBackup, kv.keys.lastBackup);
    if (m) {
      const { name, createdAt, size, nodeName, gtid } = m;
      snapshotFacts = { name, createdAt, size, nodeName, gtid };
    }
  } catch (e) {
    snapshotError = errorMessage(e);
  }
  const lock = view.failoverLock;
  return {
    lock: view.primary,
    members: view.members.map(({ record, session }) => ({ record, live: session !== undefined })),
    instances,
    ...(view.failoverPause !== undefined ? { pause: view.failoverPause } : {}),
    ...(lock.value !== undefined
      ? {
        failoverLock: { ...(lock.record ? { record: lock.record } : {}), held: lock.session !== undefined },
      }
      : {}),
    ...(snapshotFacts ? { snapshot: snapshotFacts } : {}),
    ...(snapshotError ? { snapshotError } : {}),
    ...(view.lastVerified ? { verified: view.lastVerified } : {}),
    ...(view.cluster ? { cluster: view.cluster.id } : {}),
    ...(view.archive ? { archive: view.archive } : {}),
  };
}

/**
 * Reads one node's server over TCP as the replication user (it may read GTIDs and replica status, nothing
 * more), asking the server which flavour it is.
 *
 * @param connectTimeoutMs Give up connecting after this long; the statements get 3 s more in all.
 * @returns What it said, or `reachable: false` with the reason; never throws.
 */
export async function probeNode(
  config: Config,
  target: NodeTarget,
  connectTimeoutMs: number,
): Promise<NodeProbe> {
  const signal = AbortSignal.timeout(connectTimeoutMs + 3000);
  try {
    await using server = await openPeerServer(config, target, connectTimeoutMs, { signal });
    const version = await server.version({ signal });
    const readOnly = await server.readOnly({ signal });
    const gtid = await server.gtidState({ signal });
    const replica = await server.replicaStatus({ signal });
    const cipher = config.mysql.tls ? await server.tlsCipher({ signal }) : undefined;
    return {
      reachable: true,
      ...(cipher ? { cipher } : {}),
      flavour: version.flavour,
      version: version.text,
      readOnly,
      ...(replica ? { replica } : {}),
      executed: gtid.executed,
    };
  } catch (e) {
    const message = errorMessage(e);
    return { reachable: false, error: message.replace(/^Cannot reach MySQL at \S+: /, "") };
  }
}

/**
 * Gathers everything: Consul first (which nodes exist), then every node's server, all at once.
 *
 * @throws {ConsulUnavailableError} when Consul cannot be reached; {@link ConsulRequestError} when it refuses.
 */
export async function gatherStatus(config: Config): Promise<StatusFacts> {
  const consul = new ConsulStore(config.consul);
  let view: ConsulView;
  try {
    view = await readConsulView(config, consul);
  } finally {
    consul.close();
  }
  const connectTimeoutMs = Math.min(config.mysql.connectTimeoutMs, 2000);
  const targets = nodeTargets(view, config.serviceName);
  // Only this node's own record, if status runs where pre-start does (the same STATE_DIR and NODE_NAME).
  const preStart = await readPreStartFailure(config.node.stateDir).then((r) =>
    r?.node === config.node.name ? r : undefined
  );
  const [probes, errantKeys] = await Promise.all([
    Promise.all(targets.map((t) => probeNode(config, t, connectTimeoutMs))),
    listErrantKeys(config),
  ]);
  // Read the primary once more, after every replica: under writes a replica read a moment after the primary
  // may already have applied the primary's next transaction, and would look errant.
  const holder = view.lock.session !== undefined
    ? targets.findIndex((t) => t.node === view.lock.record?.node)
    : -1;
  if (holder >= 0 && probes[holder].reachable) {
    probes[holder] = await probeNode(config, targets[holder], connectTimeoutMs);
  }
  const waited = view.lock.record === undefined ? await recoveryWaited(config) : undefined;
  return {
    now: Date.now(),
    serviceName: config.serviceName,
    maxLagSeconds: config.mysql.maxLagSeconds,
    quietPeriodMs: config.failover.quietPeriodMs,
    consul: view,
    probes: Object.fromEntries(targets.map((t, i) => [t.node, probes[i]])),
    ...(preStart ? { preStart } : {}),
    ...(errantKeys ? { errantKeys } : {}),
    settleMs: settleWindowMs(config.failover.recoverySettleMs, leaseMsFor(config.session.ttlSeconds)),
    ...(waited !== undefined ? { recoveryWaitedMs: waited } : {}),
  };
}

/** How long this node has waited in a recovery (its state file, its boot clock); undefined if it does not wait. */
async function recoveryWaited(config: Config): Promise<number | undefined> {
  try {
    const since = (await readState(config.node.stateDir)).recoverySince;
    if (since === undefined) return undefined;
    const now = await bootClockNow();
    return sameBoot(since, now) ? now.ms - since.ms : undefined;
  } catch {
    return undefined; // shown, never acted on
  }
}

/** The keys under `errant-transactions/` in the snapshot store; undefined when it cannot be listed in 5 s. */
async function listErrantKeys(config: Config): Promise<string[] | undefined> {
  const listing = (async () => {
    const { openStore } = await import("./storage/open.ts");
    const store = await openStore(config);
    const keys: string[] = [];
    for await (const o of store.list(ERRANT_PREFIX)) keys.push(o.key);
    return keys;
  })().catch(() => undefined);
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<undefined>((r) => timer = setTimeout(() => r(undefined), 5000));
  try {
    return await Promise.race([listing, late]);
  } finally {
    clearTimeout(timer);
  }
}
