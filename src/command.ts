/**
 * What an `autopilot` command is, what it receives and the exit codes it returns. The command table
 * (commands.ts), the commands (hooks/, src/cli/) and mod.ts share these without importing each other; the
 * module loads nothing at run time (its only import is a type), so `--help` stays cheap.
 *
 * @module
 */
import type { Config, EnvReader } from "./config.ts";
import type { MetricName } from "./metrics.ts";

/** Exit codes: ContainerPilot reads 0 as healthy/success. */
export const EXIT = Object.freeze({
  /** Success (for `health`: healthy). */
  ok: 0,
  /** The command ran and failed (for `health`: unhealthy). */
  failed: 1,
  /** Bad usage or bad configuration: nothing was touched. */
  usage: 2,
});

/** What a command receives. */
export interface CommandContext {
  readonly config: Config;
  readonly env: EnvReader;
  readonly flags: Readonly<Record<string, string | boolean | undefined>>;
  readonly positionals: readonly string[];
}

/** Metric values to send (src/metrics.ts): a counter grows by the value, a gauge is set to it. */
export type MetricValues = Readonly<Partial<Record<MetricName, number>>>;

/** One `autopilot` subcommand. */
export interface Command {
  readonly name: string;
  readonly args?: string;
  readonly summary: string;
  readonly details?: string;
  readonly options: Record<string, { type: "boolean" | "string"; short?: string }>;
  /**
   * What the error boundary (src/command_boundary.ts) sends when an exception escapes `run` with this context:
   * the command's failure counter, if it has one. Unset: nothing.
   */
  readonly failureMetrics?: (ctx: CommandContext) => MetricValues;
  /** Loads the command's implementation (a dynamic import) and runs it; returns the exit code. */
  run(ctx: CommandContext): Promise<number>;
}
