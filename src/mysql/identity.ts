/**
 * The cluster's identity inside the server: a one-row table `autopilot.cluster` holding the random id the
 * first primary drew when it bootstrapped the cluster. Unlike the lease (src/mysql/lease.ts), it is written
 * WITH the binlog: replicas that replicate from the start get it through replication, and every snapshot
 * carries it (so restored nodes and rebuilt ones have it too). Whole-cluster recovery (src/ha/recovery.ts)
 * trusts only data that carries the identity Consul's `SERVICE_NAME-cluster` key names (or any, when Consul lost
 * its keys): a datadir without it, or with another cluster's, is never made primary by itself.
 *
 * A cluster created before this version has no row: its primary writes one on its first pass (a new id, or
 * the one Consul's key names), and it replicates from there.
 *
 * Pure SQL and one small reader over a connection: the writes run only through {@link ensureIdentity}, which
 * creates the schema and table only when they are missing (DDL is binlogged even when it does nothing, so it
 * must not run each pass).
 *
 * @module
 */
import { type MysqlClient, MysqlQueryError } from "./client.ts";
import { LEASE_SCHEMA, type Statement } from "./flavour.ts";

/** What this module needs of a connection. */
export type IdentityConnection = Pick<MysqlClient, "query">;

const ER_BAD_DB_ERROR = 1049;
const ER_NO_SUCH_TABLE = 1146;

/** The table: schema `autopilot` (the lease's, see flavour.ts), binlogged unlike the lease's table. */
export const IDENTITY_TABLE = `${LEASE_SCHEMA}.cluster`;

/** Reads the identity: one row, `cluster_id`. */
export const IDENTITY_QUERY = `SELECT cluster_id FROM ${IDENTITY_TABLE} WHERE id = 1`;

/** A new random identity: a UUID (122 random bits). */
export function newClusterIdentity(): string {
  return crypto.randomUUID();
}

/** Whether a text is an identity as this module writes them (letters, digits, `-`, 1 to 64 characters). */
export function isClusterIdentity(v: unknown): v is string {
  return typeof v === "string" && /^[A-Za-z0-9-]{1,64}$/.test(v);
}

/**
 * The statements that create the table and write `id` into it, with the binlog (as the session has it): the
 * bootstrap's last statements, and a legacy primary's one-time write.
 */
export function identityStatements(id: string): Statement[] {
  return [
    { sql: `CREATE DATABASE IF NOT EXISTS ${LEASE_SCHEMA}`, values: [] },
    {
      sql: `CREATE TABLE IF NOT EXISTS ${IDENTITY_TABLE} (` +
        "id TINYINT UNSIGNED NOT NULL PRIMARY KEY CHECK (id = 1), " +
        "cluster_id VARCHAR(64) NOT NULL, " +
        "created_at DATETIME(6) NOT NULL" +
        ") ENGINE=InnoDB COMMENT='autopilot: the identity of the cluster this data belongs to (replicated)'",
      values: [],
    },
    {
      sql: `INSERT INTO ${IDENTITY_TABLE} (id, cluster_id, created_at) VALUES (1, ?, UTC_TIMESTAMP(6))`,
      values: [id],
    },
  ];
}

function isErrno(e: unknown, ...errnos: number[]): boolean {
  return e instanceof MysqlQueryError && errnos.includes(e.errno);
}

/**
 * The identity the server's data carries; undefined when it has none (no table, no row, or a value this
 * program did not write).
 */
export async function readIdentity(
  db: IdentityConnection,
  o: { readonly signal?: AbortSignal } = {},
): Promise<string | undefined> {
  try {
    const [row] = await db.query(IDENTITY_QUERY, { signal: o.signal });
    return isClusterIdentity(row?.cluster_id) ? row.cluster_id : undefined;
  } catch (e) {
    if (isErrno(e, ER_BAD_DB_ERROR, ER_NO_SUCH_TABLE)) return undefined;
    throw e;
  }
}

/**
 * Gives the server an identity if it has none: `candidate` is written (with the binlog, so it replicates);
 * one already there is kept. Only for a writable primary.
 *
 * @returns The identity the server holds afterwards.
 */
export async function ensureIdentity(
  db: IdentityConnection,
  candidate: string,
  o: { readonly signal?: AbortSignal } = {},
): Promise<string> {
  const found = await readIdentity(db, o);
  if (found !== undefined) return found;
  for (const s of identityStatements(candidate)) await db.query(s, { signal: o.signal });
  return (await readIdentity(db, o)) ?? candidate;
}
