/**
 * Failsafe mode (FAILSAFE_MODE, on by default): a primary that cannot reach Consul keeps writing only while
 * every other member it knows of (the other live members of the last cluster view it read, cached in its state
 * file) answers over MySQL, as the replication account, within {@link MEMBER_TIMEOUT_MS}, and replicates from
 * it: source = this node's address:port, I/O thread running, SQL thread running. Then it extends its in-server
 * lease, counted from when the check started; as soon as one member does not, it turns read-only. A primary
 * with no other member known keeps writing (as Patroni's failsafe mode does for a one-node cluster): nobody
 * else can have been appointed. A primary fenced while Consul is out of reach stays read-only until it reaches
 * Consul again: the decision for a read-only node without Consul only reports.
 *
 * Why that is safe: a replica that still replicates from this node, with its I/O thread connected, has not been
 * promoted and follows no other primary; a replica that cannot reach Consul never promotes itself. A failover
 * elsewhere makes the known members stop replicating from this node (the promoted one resets its replication,
 * the others re-point to it), which the next check sees; the lease bounds how long this node may write after
 * its last passing check. README "Failsafe mode" says what it does not cover.
 *
 * @module
 */
import { getLogger } from "@logtape/logtape";
import { raceAbort } from "../abort.ts";
import { bootClockMs } from "../boot_clock.ts";
import type { ReplicaStatus } from "../mysql/flavour.ts";
import { leaseLeftMs } from "../mysql/lease.ts";
import type { MysqlServer } from "../mysql/server.ts";
import type { KnownMember, NodeState, StateStore } from "../state.ts";
import { type ActionResult, fence, type Published } from "./actions.ts";
import type { ClusterKv, ClusterView } from "../cluster_kv.ts";
import type { HealthDecision, PrimaryRecord } from "./decide.ts";

const log = getLogger(["autopilot", "health"]);

/** How long one member may take to connect and answer. */
export const MEMBER_TIMEOUT_MS = 2000;

/** What one member answered: its replication status (undefined: it replicates from nobody), or why not. */
export type MemberAnswer =
  | { readonly member: KnownMember; readonly status: ReplicaStatus | undefined }
  | { readonly member: KnownMember; readonly error: string };

/** Keep writing, or fence; `reason` is the line that is logged. */
export type FailsafeVerdict = { readonly keep: boolean; readonly reason: string };

/**
 * Why a member's answer does not show it replicating from this node, or undefined when it does.
 *
 * @param self This node's address and port, as the members replicate from it.
 */
export function notReplicatingFrom(
  self: { address: string; port: number },
  a: MemberAnswer,
): string | undefined {
  if ("error" in a) return `does not answer over MySQL (${a.error})`;
  const s = a.status;
  if (s === undefined || s.sourceHost === "") return "replicates from nobody";
  if (s.sourceHost !== self.address || s.sourcePort !== self.port) {
    return `replicates from ${s.sourceHost}:${s.sourcePort}, not from this node`;
  }
  if (s.ioRunning !== "yes") {
    return `its I/O thread from this node is ${s.ioRunning === "no" ? "stopped" : "not connected"}` +
      (s.lastIoError ? ` (${s.lastIoError})` : "");
  }
  if (!s.sqlRunning) return `its SQL thread is stopped${s.lastSqlError ? ` (${s.lastSqlError})` : ""}`;
  return undefined;
}

/**
 * The failsafe rule on the members' answers: keep writing only when every one replicates from this node.
 * Pure.
 *
 * @param self This node's address and port.
 * @param answers One answer per known member (none: no other member is known).
 * @param consulError Why Consul cannot be reached, for the reason.
 */
export function failsafeVerdict(
  self: { address: string; port: number },
  answers: readonly MemberAnswer[],
  consulError: string,
): FailsafeVerdict {
  for (const a of answers) {
    const why = notReplicatingFrom(self, a);
    if (why !== undefined) {
      return {
        keep: false,
        reason: `Consul cannot be reached (${consulError}) and member ${a.member.node} ` +
          `(${a.member.address}:${a.member.port}) ${why}: failsafe ends, turning read-only until Consul is back`,
      };
    }
  }
  if (answers.length === 0) {
    return {
      keep: true,
      reason:
        `Consul cannot be reached (${consulError}): failsafe, no other member is known, staying writable`,
    };
  }
  const n = answers.length;
  return {
    keep: true,
    reason: `Consul cannot be reached (${consulError}): failsafe, ${n} member${n === 1 ? "" : "s"} replicate${
      n === 1 ? "s" : ""
    } from this node, staying writable`,
  };
}

/**
 * The members the failsafe checks: the other live members of the last view read, and those the last heartbeat
 * published (PrimaryRecord.checks), which may take the lock over if this node falls silent. By node name.
 */
export function checkedMembers(members: NodeState["members"]): KnownMember[] {
  const all = new Map<string, KnownMember>();
  for (const m of [...(members?.published ?? []), ...(members?.others ?? [])]) all.set(m.node, m);
  return [...all.values()].sort((a, b) => a.node < b.node ? -1 : a.node > b.node ? 1 : 0);
}

/** The other live members of a view, by name: what the failsafe checks. */
export function liveOthers(view: ClusterView, self: string): KnownMember[] {
  return view.live
    .filter((m) => m.record.node !== self)
    .map((m) => ({ node: m.record.node, address: m.record.address, port: m.record.port }))
    .sort((a, b) => a.node < b.node ? -1 : a.node > b.node ? 1 : 0);
}

/**
 * What a primary's heartbeat publishes with FAILSAFE_MODE on: the members its failsafe checks (the other live
 * members of the view this pass read, else the state file's cache), and, once written, the record of them in
 * the state file (only when it changed), so that the failsafe checks every member the lock record names.
 * Undefined when off.
 */
export function publishedFor(
  state: StateStore,
  failsafe: boolean,
  view?: { readonly view: ClusterView; readonly self: string },
): Published | undefined {
  if (!failsafe) return undefined;
  return {
    members: view ? liveOthers(view.view, view.self) : (state.current.members?.others ?? []),
    record: async (members) => {
      const current = state.current.members;
      if (JSON.stringify(current?.published ?? []) === JSON.stringify(members)) return;
      await state.patch({ members: { heldLock: true, others: current?.others ?? [], published: members } });
    },
  };
}

/** `{ published }` for a {@link Me}, or nothing when failsafe mode is off. */
export function withPublished(p: Published | undefined): { readonly published?: Published } {
  return p === undefined ? {} : { published: p };
}

/** What the failsafe action works with. */
export interface Failsafe {
  readonly server: MysqlServer;
  readonly kv: ClusterKv;
  readonly self: PrimaryRecord;
  readonly state: StateStore;
  /** The other members, from the state file's cache. */
  readonly members: readonly KnownMember[];
  /** The in-server lease's length. */
  readonly leaseMs: number;
  readonly consulError: string;
  /** Asks a member for its replication status over MySQL as the replication account, within the signal. */
  readonly ask: (m: KnownMember, signal: AbortSignal) => Promise<ReplicaStatus | undefined>;
  /** How long each member may take ({@link MEMBER_TIMEOUT_MS} by default). */
  readonly timeoutMs?: number;
}

/** The `failsafe` decision, with what the pass has: the members from the state file's cache. */
export async function failsafe(
  p: Pick<Failsafe, "kv" | "self" | "state" | "leaseMs"> & { readonly replicaStatusOf: Failsafe["ask"] },
  server: MysqlServer,
  d: Extract<HealthDecision, { action: "failsafe" }>,
  signal?: AbortSignal,
): Promise<ActionResult> {
  return await runFailsafe({
    server,
    kv: p.kv,
    self: p.self,
    state: p.state,
    members: checkedMembers(p.state.current.members),
    leaseMs: p.leaseMs,
    consulError: d.consulError,
    ask: p.replicaStatusOf,
  }, signal);
}

/**
 * Asks every known member at once (each within {@link MEMBER_TIMEOUT_MS} and the pass's signal), then either
 * extends the in-server lease (from when the check started) and stays writable, or fences.
 *
 * @returns Healthy while it stays writable: the primary keeps serving, so its `mysql` service stays passing.
 */
export async function runFailsafe(a: Failsafe, signal?: AbortSignal): Promise<ActionResult> {
  const started = performance.now();
  const answers = await Promise.all(a.members.map(async (member): Promise<MemberAnswer> => {
    const timeoutMs = a.timeoutMs ?? MEMBER_TIMEOUT_MS;
    const timeout = AbortSignal.timeout(timeoutMs);
    const s = signal ? AbortSignal.any([signal, timeout]) : timeout;
    try {
      // Raced: closing a connection to a member that hangs may take a while longer.
      return { member, status: await raceAbort(a.ask(member, s), s) };
    } catch (e) {
      if (signal?.aborted) throw signal.reason;
      return {
        member,
        error: timeout.aborted ? `no answer within ${timeoutMs} ms` : (e as Error)?.message ?? String(e),
      };
    }
  }));
  const verdict = failsafeVerdict(a.self, answers, a.consulError);
  if (!verdict.keep) {
    await fence({ server: a.server, kv: a.kv, self: a.self, session: undefined, releaseLock: false }, signal);
    if (a.state.current.failsafeSince !== undefined) await a.state.patch({ failsafeSince: undefined });
    return { healthy: false, outcome: { level: "error", text: verdict.reason } };
  }
  const ms = leaseLeftMs(a.leaseMs, started, performance.now());
  const extended = ms > 0 && await a.server.extendLease(ms, { signal }).catch((e) => {
    if (!signal?.aborted) log.warn("Cannot extend the in-server lease: {e}", { e: (e as Error).message });
    return false;
  });
  if (!extended) {
    // The fence lapses by itself; turning read-only now says so at once, and the node stays so.
    const text = `${verdict.reason}; but the in-server lease could not be extended: turning read-only`;
    await fence({ server: a.server, kv: a.kv, self: a.self, session: undefined, releaseLock: false }, signal);
    if (a.state.current.failsafeSince !== undefined) await a.state.patch({ failsafeSince: undefined });
    return { healthy: false, outcome: { level: "error", text } };
  }
  if (a.state.current.failsafeSince === undefined) {
    // Healthy passes log at DEBUG only: the start of failsafe is said once, here.
    log.warn("{reason}", { reason: verdict.reason });
    await a.state.patch({ failsafeSince: bootClockMs() });
  }
  return { healthy: true, outcome: { level: "warn", text: verdict.reason } };
}
