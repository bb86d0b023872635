/**
 * Member records: reading a member's server directly ({@link probeMember}). The records themselves (the key
 * `SERVICE_NAME-members/NODE`, the value's format, the reads) belong to src/cluster_kv.ts.
 *
 * @module
 */
import type { Config } from "./config.ts";
import type { MemberRecord } from "./ha/failover_plan.ts";
import type { Flavour } from "./mysql/flavour.ts";
import { openPeerServer } from "./mysql/server.ts";

/**
 * Reads a member's replication state directly, over TCP as the replication user: fresher than its published
 * record, which is only rewritten by its own passes.
 *
 * @param cluster The cluster's flavour (a `MysqlServer` or a `FlavourSql` will do): every member runs it.
 * @returns The record with what the server says now, or `undefined` if the server does not answer in time.
 */
export async function probeMember(
  config: Config,
  cluster: { readonly flavour: Flavour },
  record: MemberRecord,
): Promise<MemberRecord | undefined> {
  try {
    await using server = await openPeerServer(config, record, Math.min(config.mysql.connectTimeoutMs, 1500), {
      flavour: cluster.flavour,
    });
    const state = await server.gtidState();
    const replica = await server.replicaStatus();
    return {
      ...record,
      executed: state.executed,
      retrieved: replica?.retrievedGtids ?? "",
      role: record.role === "primary" ? "primary" : replica ? "replica" : "none",
      updatedAt: Date.now(),
    };
  } catch {
    return undefined;
  }
}
