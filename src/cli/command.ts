/**
 * What an `autopilot` command is and what it receives: types only, so that the command table
 * (src/cli/commands.ts) and the commands' implementations can share them without importing each other.
 *
 * @module
 */
import type { Config, EnvReader } from "../config.ts";

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
  /** Loads the command's implementation (a dynamic import) and runs it; returns the exit code. */
  run(ctx: CommandContext): Promise<number>;
}
