/**
 * `autopilot snapshot`: not written yet (a placeholder so the command table stays stable while it is built).
 *
 * @module
 */
import type { Config } from "../src/config.ts";
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

/**
 * Takes a snapshot now if this node should (or always, with `force`), under the backup lock, stores it,
 * publishes it in Consul and applies retention. Shared by the periodic task and `autopilot backup now`.
 *
 * @returns The exit code.
 */
export function runSnapshot(_config: Config, _opts: { force: boolean }): Promise<number> {
  printError("autopilot snapshot: not implemented yet");
  return Promise.resolve(EXIT.failed);
}
