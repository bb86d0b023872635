/**
 * `autopilot snapshot`: not written yet (a placeholder so the command table stays stable while it is built).
 *
 * @module
 */
import type { Command } from "../src/cli/commands.ts";
import { printError } from "../src/cli/output.ts";
import { EXIT } from "../src/cli/exit.ts";

/** The `snapshot` command. */
export const snapshotCommand: Command = {
  name: "snapshot",
  summary: "take a snapshot if one is due (ContainerPilot's periodic task)",
  options: {},
  run() {
    printError("autopilot snapshot: not implemented yet");
    return Promise.resolve(EXIT.failed);
  },
};
