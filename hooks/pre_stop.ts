/**
 * `autopilot pre-stop`: not written yet (a placeholder so the command table stays stable while it is built).
 *
 * @module
 */
import type { Command } from "../src/cli/commands.ts";
import { printError } from "../src/cli/output.ts";
import { EXIT } from "../src/cli/exit.ts";

/** The `pre-stop` command. */
export const preStopCommand: Command = {
  name: "pre-stop",
  summary: "the container is stopping: hand over the primary role and take a last snapshot if configured",
  options: {},
  run() {
    printError("autopilot pre-stop: not implemented yet");
    return Promise.resolve(EXIT.failed);
  },
};
