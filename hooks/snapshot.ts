/**
 * `autopilot snapshot`: ContainerPilot's periodic task (every few minutes on every node). It takes a snapshot
 * if one is due here, or, with BACKUP_VERIFY, verifies the last one; the steps are in src/snapshot_task.ts,
 * which `autopilot backup now` and pre-stop run too.
 *
 * @module
 */
import type { CommandContext } from "../src/command.ts";
import { runSnapshot } from "../src/snapshot_task.ts";

/** `autopilot snapshot`: the schedule and BACKUP_FROM decide whether this node takes one now. */
export function runSnapshotTask(ctx: CommandContext): Promise<number> {
  return runSnapshot(ctx.config, { force: false });
}
