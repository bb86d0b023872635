/**
 * `autopilot health --primary`: changes nothing; passes only on the node that holds the primary lock (ready)
 * and is writable.
 *
 * @module
 */
import { ConsulClusterKv } from "../cluster_kv.ts";
import type { Config } from "../config.ts";
import { ConsulStore, ConsulUnavailableError } from "../consul.ts";
import { flavourOf } from "../local.ts";
import { MysqlUnavailableError } from "../mysql/client.ts";
import { openLocalServer } from "../mysql/server.ts";
import { readState } from "../state.ts";

/** `health --primary`: 0 only on the node that holds the primary lock (ready) and is writable. */
export async function primaryCheck(config: Config): Promise<boolean> {
  const state = await readState(config.node.stateDir);
  const flavour = flavourOf(config, state);
  const consul = new ConsulStore(config.consul);
  try {
    const lock = await new ConsulClusterKv(config, consul).primary();
    if (lock.session === undefined || lock.session !== state.sessionId || !lock.record?.ready) return false;
    await using server = await openLocalServer(config, flavour);
    return !(await server.readOnly());
  } catch (e) {
    if (e instanceof ConsulUnavailableError || e instanceof MysqlUnavailableError) return false;
    throw e;
  } finally {
    consul.close();
  }
}
