/**
 * `autopilot restore`: not written yet (a placeholder so the command table stays stable while it is built).
 *
 * @module
 */
import type { Command } from "./commands.ts";
import { printError } from "./output.ts";
import { EXIT } from "./exit.ts";

/** The `restore` command. */
export const restoreCommand: Command = {
  name: "restore",
  args: "[NAME]",
  summary: "restore a snapshot into the empty datadir of a stopped node",
  options: {},
  run() {
    printError("autopilot restore: not implemented yet");
    return Promise.resolve(EXIT.failed);
  },
};
