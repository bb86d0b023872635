/**
 * The local server as autopilot sees it: how to log in over the unix socket, and the facts one hook pass
 * gathers before deciding anything.
 *
 * @module
 */
import type { Config } from "./config.ts";
import { MysqlClient } from "./mysql/client.ts";
import { localAdminUser } from "./mysql/bootstrap.ts";
import type { Flavour, FlavourSql } from "./mysql/flavour.ts";
import type { MysqlFacts } from "./ha.ts";

/**
 * Connects to the local server as autopilot's administrative account (OS-authenticated over the socket).
 *
 * @throws {MysqlUnavailableError} when mysqld does not answer.
 */
export function connectLocal(config: Config, flavour: Flavour, signal?: AbortSignal): Promise<MysqlClient> {
  return MysqlClient.connect(
    { socketPath: config.mysql.socket, user: localAdminUser(flavour), connectTimeoutMs: 2000 },
    signal,
  );
}

/**
 * Reads what the health decision needs from the local server.
 *
 * @returns The facts (`up: true`); connection failures are the caller's to turn into `up: false`.
 */
export async function gatherMysqlFacts(
  db: MysqlClient,
  sql: FlavourSql,
  signal?: AbortSignal,
): Promise<MysqlFacts> {
  const [ro] = await db.query(sql.readOnlyQuery, { signal });
  const status = await db.query(sql.replicaStatus, { signal });
  const [gtid] = await db.query(sql.gtidStateQuery, { signal });
  const [started] = await db.query(sql.serverStartedQuery, { signal });
  const replica = status.length > 0 ? sql.replicaStatusFromRow(status[0]) : undefined;
  const state = sql.gtidState(gtid);
  return {
    up: true,
    readOnly: Number(ro.read_only) === 1,
    ...(replica && replica.sourceHost !== "" ? { replica } : {}),
    hasTransactions: state.executed !== "" || (state.currentPos ?? "") !== "",
    executed: state.executed,
    serverStartedAt: Math.round(Number(started?.started ?? 0)),
  };
}
