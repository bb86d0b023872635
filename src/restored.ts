/**
 * The mark a restore leaves inside the datadir it made: which snapshot, and the GTID position replication
 * must start from. It is written into the staged copy before that copy is moved into place, so a datadir
 * that appears restored always says where it came from, whatever happens to the process afterwards; the
 * health pass removes it once replication (or the primary's binlog) has started from that position.
 *
 * Keeping it in the datadir rather than in the node's state file closes a gap: a pre-start killed between
 * moving the datadir into place and writing its state left a restored datadir that looked like an empty
 * node's, which then replicated from the start on top of the restored data.
 *
 * @module
 */
import { syncDir, writeFileAtomic } from "./state.ts";

/** The file, in a datadir, that marks it as restored and not yet replicated from. */
export const RESTORED_FILE = "autopilot-restored.json";

/** Where a restored datadir starts. */
export interface RestoredMark {
  /** The snapshot's name. */
  readonly snapshot: string;
  /** The snapshot's GTID position, in the flavour's format. */
  readonly gtid: string;
  /** MariaDB: the snapshot's binlog state, when its manifest records one. */
  readonly binlogState?: string;
}

/** The restored datadir's mark is unreadable. */
export class RestoredMarkError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "RestoredMarkError";
  }
}

/** Writes the mark into `dir` (a staged datadir, before it is moved into place), synced to disk. */
export async function writeRestoredMark(dir: string, mark: RestoredMark): Promise<void> {
  await writeFileAtomic(`${dir}/${RESTORED_FILE}`, JSON.stringify(mark) + "\n");
}

/**
 * The datadir's mark, or undefined when it has none (never restored, or replicating already).
 *
 * @throws {RestoredMarkError} if the file exists but does not hold a mark.
 */
export async function readRestoredMark(datadir: string): Promise<RestoredMark | undefined> {
  let text: string;
  try {
    text = await Deno.readTextFile(`${datadir}/${RESTORED_FILE}`);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound || e instanceof Deno.errors.NotADirectory) return undefined;
    throw e;
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    value = undefined;
  }
  const v = value as Record<string, unknown> | undefined;
  if (
    v === undefined || v === null || typeof v !== "object" || typeof v.snapshot !== "string" ||
    typeof v.gtid !== "string" || (v.binlogState !== undefined && typeof v.binlogState !== "string")
  ) {
    throw new RestoredMarkError(
      `${datadir}/${RESTORED_FILE} is not a restore mark: if this datadir already replicates, remove the file; ` +
        "otherwise restore the node again",
    );
  }
  return {
    snapshot: v.snapshot,
    gtid: v.gtid,
    ...(typeof v.binlogState === "string" ? { binlogState: v.binlogState } : {}),
  };
}

/** Removes the mark: replication has started from it. A datadir without one is left as it is. */
export async function clearRestoredMark(datadir: string): Promise<void> {
  try {
    await Deno.remove(`${datadir}/${RESTORED_FILE}`);
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
    return;
  }
  await syncDir(datadir); // a mark that came back after a crash would send replication back to the snapshot
}
