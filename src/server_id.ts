/**
 * Which server_id a copy of the data runs with.
 *
 * A server skips replicated events that carry its own server_id (they look like its own writes coming back).
 * A datadir restored from a snapshot lacks whatever its source wrote after the snapshot; if it ran with that
 * source's server_id, or with the id of an earlier copy on the same node, it would silently skip those writes
 * when it replicates them. So every new datadir, restored or initialised, gets a fresh random id, kept in a
 * file inside the datadir; a datadir without that file (from an earlier version) uses the id derived from
 * NODE_NAME.
 *
 * @module
 */
import { serverIdFor } from "./mysql/mycnf.ts";

/** The file, in a datadir, that names the server_id of that copy of the data. */
export const SERVER_ID_FILE = "autopilot-server-id";

/** A random server id in 1..2^32-1 (0 disables replication). */
export function newServerId(): number {
  const [n] = crypto.getRandomValues(new Uint32Array(1));
  return (n % 0xfffffffe) + 1;
}

/** Writes `id` into `dir`'s server id file. */
export async function writeServerId(dir: string, id: number): Promise<void> {
  await Deno.writeTextFile(`${dir}/${SERVER_ID_FILE}`, `${id}\n`, { mode: 0o644 });
}

/**
 * The server id for the datadir: the one its file names, else the one derived from the node's name.
 *
 * @throws {Error} if the file exists but does not hold a valid id.
 */
export async function serverIdOf(datadir: string, nodeName: string): Promise<number> {
  let text: string;
  try {
    text = await Deno.readTextFile(`${datadir}/${SERVER_ID_FILE}`);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return serverIdFor(nodeName);
    throw e;
  }
  const id = Number(text.trim());
  if (!/^\d+$/.test(text.trim()) || id < 1 || id > 0xffffffff) {
    throw new Error(
      `${datadir}/${SERVER_ID_FILE} does not hold a server id (1 to 4294967295): fix or remove it`,
    );
  }
  return id;
}
