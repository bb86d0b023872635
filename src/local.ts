/**
 * The local server as autopilot sees it: how to log in over the unix socket, and the facts one hook pass
 * gathers before deciding anything.
 *
 * @module
 */
import type { Logger } from "@logtape/logtape";
import { delay } from "./abort.ts";
import type { Config, EnvReader } from "./config.ts";
import type { Flavour } from "./mysql/flavour.ts";
import type { MysqlServer, ServerStatus } from "./mysql/server.ts";
import type { MysqlFacts } from "./ha/decide.ts";
import { type NodeState, writeFileAtomic } from "./state.ts";
import { pidFilePath, renderMyCnf } from "./mysql/mycnf.ts";
import { type BufferPoolChoice, chooseBufferPool, describeBufferPool, readMemory } from "./node.ts";
import { serverIdOf } from "./server_id.ts";

/** The server family: what pre-start found installed, else MYSQL_FLAVOUR, else MariaDB. */
export function flavourOf(config: Config, state: NodeState): Flavour {
  return state.flavour ?? (config.mysql.flavour === "mysql" ? "mysql" : "mariadb");
}

/** The health decision's view of a server's status. */
export function mysqlFactsOf(status: ServerStatus): MysqlFacts {
  return {
    up: true,
    readOnly: status.readOnly,
    ...(status.replica ? { replica: status.replica } : {}),
    hasTransactions: status.hasTransactions,
    executed: status.gtid.executed,
    ...(status.replicationStartedThisRun === undefined
      ? {}
      : { replicationStartedThisRun: status.replicationStartedThisRun }),
    ...(status.identity === undefined ? {} : { identity: status.identity }),
  };
}

/**
 * Chooses innodb_buffer_pool_size for this node (reading the container's memory limit only when
 * INNODB_BUFFER_POOL_SIZE is unset) and logs the size and where it came from: a warning when the limit could
 * not be read, so that a size taken from the machine's memory is never chosen silently.
 */
export function chooseBufferPoolLogged(
  config: Config,
  log: Logger,
  env: EnvReader = (name) => Deno.env.get(name),
): BufferPoolChoice {
  const choice = chooseBufferPool(config.mysql.bufferPoolSize, () => readMemory(env));
  const { warn, text } = describeBufferPool(choice);
  if (warn) log.warn("{message}", { message: text });
  else log.info("{message}", { message: text });
  return choice;
}

/**
 * Writes MYSQL_CNF for the datadir as it is now: its server_id comes from the datadir (src/server_id.ts), so
 * call it again after a restore. `datadir`: read the id from a copy about to be moved into place instead.
 *
 * @param pool The buffer pool size, from {@link chooseBufferPoolLogged}.
 * @returns The server_id written.
 */
export async function writeServerConfig(
  config: Config,
  flavour: Flavour,
  reportHost: string,
  pool: BufferPoolChoice,
  datadir: string = config.mysql.datadir,
): Promise<number> {
  const serverId = await serverIdOf(datadir, config.node.name);
  const cnf = renderMyCnf(config, { flavour, reportHost, bufferPoolBytes: pool.bytes, serverId });
  await writeFileAtomic(config.mysql.cnfPath, cnf, 0o644);
  return serverId;
}

/**
 * Shuts the local mysqld down cleanly (SQL `SHUTDOWN`, so InnoDB flushes and the binlog is closed) and waits
 * for it to exit. Closes `server`'s connection.
 *
 * @returns false if it still runs after `timeoutMs` (the shutdown goes on in the server).
 */
export async function shutDownLocalServer(
  config: Config,
  server: MysqlServer,
  timeoutMs: number,
): Promise<boolean> {
  await server.shutdown();
  return await waitForServerExit(config, timeoutMs);
}

/**
 * Waits until mysqld has removed its pid file and no longer answers on its socket.
 *
 * @returns false if it has not within `timeoutMs`.
 */
export async function waitForServerExit(config: Config, timeoutMs: number): Promise<boolean> {
  const socket = config.mysql.socket;
  const pidFile = pidFilePath(socket);
  const deadline = Date.now() + timeoutMs;
  while (true) {
    const pidGone = await Deno.stat(pidFile).then(() => false, () => true);
    const socketGone = await Deno.connect({ transport: "unix", path: socket }).then(
      (conn) => (conn.close(), false),
      () => true,
    );
    if (pidGone && socketGone) return true;
    if (Date.now() >= deadline) return false;
    await delay(100);
  }
}
