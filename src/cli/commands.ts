/**
 * The command table: every command `autopilot` understands, with its help text and options.
 *
 * @module
 */
import type { Config, EnvReader } from "../config.ts";
import { configCommand } from "./config_command.ts";
import { preStartCommand } from "../../hooks/pre_start.ts";
import { healthCommand, onChangeCommand } from "../../hooks/health.ts";
import { switchoverCommand } from "../../hooks/switchover.ts";
import { snapshotCommand } from "../../hooks/snapshot.ts";
import { preStopCommand } from "../../hooks/pre_stop.ts";
import { backupCommand } from "./backup_command.ts";
import { restoreCommand } from "./restore_command.ts";
import { statusCommand } from "./status_command.ts";

export { EXIT } from "./exit.ts";

/** What a command receives. */
export interface CommandContext {
  readonly config: Config;
  readonly env: EnvReader;
  readonly flags: Readonly<Record<string, string | boolean | undefined>>;
  readonly positionals: readonly string[];
}

/** One `autopilot` subcommand. */
export interface Command {
  readonly name: string;
  readonly args?: string;
  readonly summary: string;
  readonly details?: string;
  readonly options: Record<string, { type: "boolean" | "string"; short?: string }>;
  run(ctx: CommandContext): Promise<number>;
}

/** Every command, in the order `--help` lists them. */
export const COMMANDS: readonly Command[] = Object.freeze([
  preStartCommand,
  healthCommand,
  onChangeCommand,
  snapshotCommand,
  preStopCommand,
  switchoverCommand,
  statusCommand,
  backupCommand,
  restoreCommand,
  configCommand,
]);

/** The top-level help text. */
export function usage(): string {
  const width = Math.max(...COMMANDS.map((c) => c.name.length));
  return [
    "autopilot: MySQL that runs itself (called by ContainerPilot at each point of a container's life)",
    "",
    "usage: autopilot COMMAND [options]",
    "",
    "commands:",
    ...COMMANDS.map((c) => `  ${c.name.padEnd(width)}  ${c.summary}`),
    "",
    "  help [COMMAND]  show this help, or one command's",
    "  version         print the version",
    "",
    "Settings come from environment variables: run 'autopilot config' to see them all.",
    "Exit codes: 0 success, 1 failure, 2 bad usage or configuration (nothing was touched).",
  ].join("\n");
}
