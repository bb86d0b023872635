/**
 * `autopilot status`: not written yet (a placeholder so the command table stays stable while it is built).
 *
 * @module
 */
import type { Command } from "./commands.ts";
import { printError } from "./output.ts";
import { EXIT } from "./exit.ts";

/** The `status` command. */
export const statusCommand: Command = {
  name: "status",
  summary: "show the cluster as a table (--json for scripts); exit 0 only if it is healthy",
  options: {},
  run() {
    printError("autopilot status: not implemented yet");
    return Promise.resolve(EXIT.failed);
  },
};
