/**
 * Member records in Consul: each node's own `SERVICE_NAME-members/NODE` key, held by its session and rewritten
 * by every hook pass. When the node's session ends the key stays, unheld, with its last record: the failover
 * planner reads those too (a departed replica may have had transactions the live nodes lack).
 *
 * @module
 */
import type { Config } from "./config.ts";
import type { ConsulStore } from "./consul.ts";
import type { MemberRecord } from "./ha/failover_plan.ts";
import type { Flavour } from "./mysql/flavour.ts";
import { openPeerServer } from "./mysql/server.ts";

/** The key prefix of member records. */
export function membersPrefix(config: Config): string {
  return `${config.serviceName}-members/`;
}

/** Writes this node's record under its session. @returns false if the session no longer exists. */
export async function publishMember(
  config: Config,
  consul: ConsulStore,
  session: string,
  record: MemberRecord,
): Promise<boolean> {
  return await consul.tryAcquireLock(
    `${membersPrefix(config)}${record.node}`,
    session,
    JSON.stringify(record),
  );
}

/** A live member: its record and the session that holds it. */
export interface LiveMember {
  readonly record: MemberRecord;
  readonly session: string;
}

/** The records of live members (keys still held by a session); unreadable records are skipped. */
export async function liveMembers(config: Config, consul: ConsulStore): Promise<LiveMember[]> {
  return (await memberRecords(config, consul)).live;
}

/** The live members, other than this node, that replicate. */
export async function otherLiveReplicas(config: Config, consul: ConsulStore): Promise<LiveMember[]> {
  return (await liveMembers(config, consul)).filter((m) =>
    m.record.node !== config.node.name && m.record.role === "replica"
  );
}

/**
 * Live members, and the last records of members whose session has ended (the key outlives it, with its last
 * value), from one read.
 */
export async function memberRecords(
  config: Config,
  consul: ConsulStore,
): Promise<{ live: LiveMember[]; departed: MemberRecord[] }> {
  const all = await readMembers(config, consul);
  return {
    live: all.filter((m): m is LiveMember => m.session !== undefined),
    departed: all.filter((m) => m.session === undefined).map((m) => m.record),
  };
}

/**
 * Every member record, held or not, in key order, with the session holding it if any; values that are not
 * member records are skipped.
 */
export async function readMembers(
  config: Config,
  consul: ConsulStore,
): Promise<{ record: MemberRecord; session?: string }[]> {
  const out: { record: MemberRecord; session?: string }[] = [];
  for (const entry of await consul.getPrefix(membersPrefix(config))) {
    try {
      const record = JSON.parse(entry.value) as MemberRecord;
      if (
        typeof record?.node === "string" && typeof record.address === "string" &&
        Number.isInteger(record.port) && typeof record.executed === "string"
      ) {
        out.push({ record, ...(entry.session === undefined ? {} : { session: entry.session }) });
      }
    } catch {
      // not a member record
    }
  }
  return out;
}

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
