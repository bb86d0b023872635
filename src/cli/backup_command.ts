/**
 * `autopilot backup`: not written yet (a placeholder so the command table stays stable while it is built).
 *
 * @module
 */
import type { Command } from "./commands.ts";
import { printError } from "./output.ts";
import { EXIT } from "./exit.ts";

/** The `backup` command. */
export const backupCommand: Command = {
  name: "backup",
  args: "now | list | verify [NAME]",
  summary: "take, list or verify snapshots",
  options: {},
  run() {
    printError("autopilot backup: not implemented yet");
    return Promise.resolve(EXIT.failed);
  },
};
