/**
 * Member records: reading a member's server directly ({@link probeMember}). The records themselves (the key
 * `SERVICE_NAME-members/NODE`, the value's format, the reads) belong to src/cluster_kv.ts; the three functions
 * over a ConsulStore below are what the HA hooks (hooks/health.ts, hooks/switchover.ts) call until they take a
 * ClusterKv, each one call of it.
 *
 * @module
 */
import type { Config } from "./config.ts";
import type { ConsulStore } from "./consul.ts";
import { ConsulClusterKv, type LiveMember, splitMembers } from "./cluster_kv.ts";
import type { MemberRecord } from "./ha/failover_plan.ts";
import { connectPeer } from "./local.ts";
import type { FlavourSql } from "./mysql/flavour.ts";

export type { LiveMember };

/** Writes this node's record under its session. @returns false if the session no longer exists. */
export async function publishMember(
  config: Config,
  consul: ConsulStore,
  session: string,
  record: MemberRecord,
): Promise<boolean> {
  return await new ConsulClusterKv(config, consul).publishMember(session, record);
}

/** The records of live members (keys still held by a session); unreadable records are skipped. */
export async function liveMembers(config: Config, consul: ConsulStore): Promise<LiveMember[]> {
  return (await memberRecords(config, consul)).live;
}

/**
 * Live members, and the last records of members whose session has ended (the key outlives it, with its last
 * value), from one read.
 */
export async function memberRecords(
  config: Config,
  consul: ConsulStore,
): Promise<{ live: LiveMember[]; departed: MemberRecord[] }> {
  return splitMembers(await new ConsulClusterKv(config, consul).members());
}

/**
 * Reads a member's replication state directly, over TCP as the replication user: fresher than its published
 * record, which is only rewritten by its own passes.
 *
 * @returns The record with what the server says now, or `undefined` if the server does not answer in time.
 */
export async function probeMember(
  config: Config,
  sql: FlavourSql,
  record: MemberRecord,
): Promise<MemberRecord | undefined> {
  try {
    await using db = await connectPeer(config, record, Math.min(config.mysql.connectTimeoutMs, 1500));
    const state = sql.gtidState((await db.query(sql.gtidStateQuery))[0]);
    const [row] = await db.query(sql.replicaStatus);
    const replica = row ? sql.replicaStatusFromRow(row) : undefined;
    return {
      ...record,
      executed: state.executed,
      retrieved: replica?.retrievedGtids ?? "",
      role: record.role === "primary" ? "primary" : replica && replica.sourceHost !== "" ? "replica" : "none",
      updatedAt: Date.now(),
    };
  } catch {
    return undefined;
  }
}
