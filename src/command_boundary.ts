/**
 * The error boundary around each command: an exception that escapes a command becomes one logged line, the
 * command's failure metric and a non-zero exit, never a stack trace on stderr. mod.ts runs every command
 * through {@link runCommand}, after logging is set up.
 *
 * @module
 */
import { getLogger } from "@logtape/logtape";
import { type Command, type CommandContext, EXIT, type MetricValues } from "./command.ts";
import { METRIC_PREFIX, putMetrics } from "./metrics.ts";

/**
 * Runs `command` with `ctx` inside its error boundary.
 *
 * What the command returns is passed on unchanged. An exception that escapes it is logged as one line at ERROR
 * (the command, the error and what was done about it), with the stack at DEBUG only (LOG_LEVEL=DEBUG); the
 * command's failure metrics ({@link Command.failureMetrics}) are sent; the exit code is {@link EXIT.failed}.
 *
 * @param send Sends metric values (ContainerPilot's control socket; tests pass their own). Never throws.
 * @returns The command's exit code, or EXIT.failed when it threw.
 */
export async function runCommand(
  command: Command,
  ctx: CommandContext,
  send: (values: MetricValues) => Promise<void> = putMetrics,
): Promise<number> {
  try {
    return await command.run(ctx);
  } catch (e) {
    const log = getLogger(["autopilot", command.name]);
    const metrics = command.failureMetrics?.(ctx) ?? {};
    const counted = Object.entries(metrics).filter(([name, value]) => name.endsWith("_total") && value);
    // What failed (the command, the error) and what was done about it (stopped there, the exit code, counted).
    const line = { command: command.name, error: describeError(e), exit: EXIT.failed };
    if (counted.length === 0) {
      log.error("autopilot {command} stopped on an error: {error} (exit {exit})", line);
    } else {
      log.error("autopilot {command} stopped on an error: {error} (exit {exit}; counted in {metrics})", {
        ...line,
        metrics: counted.map(([name]) => METRIC_PREFIX + name).join(", "),
      });
    }
    if (e instanceof Error && e.stack) log.debug("Where it was thrown: {stack}", { stack: e.stack });
    if (Object.keys(metrics).length > 0) await send(metrics);
    return EXIT.failed;
  }
}

/** A thrown value as one line: the error's name (when not plain `Error`) and message, whitespace folded. */
export function describeError(e: unknown): string {
  const text = e instanceof Error
    ? [e.name === "Error" ? "" : e.name, e.message].filter((p) => p).join(": ") || e.name || "(no message)"
    : String(e);
  return text.replace(/\s*\n\s*/g, " ").trim();
}
