/**
 * Logging setup: one line a record on stderr (ContainerPilot collects it), as text or JSON lines.
 *
 * Modules get their logger with `getLogger(["autopilot", "<module>"])` from `@logtape/logtape`; nothing is
 * written until {@link setupLogging} runs, so importing a module never prints.
 *
 * @module
 */
import {
  configureSync,
  getTextFormatter,
  jsonLinesFormatter,
  type LogRecord,
  resetSync,
} from "@logtape/logtape";
import type { LogLevel } from "./config.ts";

/** Where formatted lines go; stderr unless a test passes its own. */
export type LineWriter = (line: string) => void;

const encoder = new TextEncoder();

function writeStderr(line: string): void {
  const bytes = encoder.encode(line);
  let written = 0;
  while (written < bytes.length) written += Deno.stderr.writeSync(bytes.subarray(written));
}

/**
 * Configures logging for this process. Safe to call again (the previous setup is replaced).
 *
 * @param level The lowest level written.
 * @param format `text` (`2026-11-25 19:40:00.000 +00:00 [INF] autopilot·health: message`) or `json`.
 * @param write Receives each formatted line, newline included.
 */
export function setupLogging(
  level: LogLevel,
  format: "text" | "json",
  write: LineWriter = writeStderr,
): void {
  const formatter = format === "json"
    ? jsonLinesFormatter
    : getTextFormatter({ timestamp: "date-time-tz", value: "bare" });
  resetSync();
  configureSync({
    sinks: { stderr: (record: LogRecord) => write(formatter(record)) },
    loggers: [
      { category: ["autopilot"], lowestLevel: level, sinks: ["stderr"] },
      { category: ["logtape", "meta"], lowestLevel: "warning", sinks: ["stderr"] },
    ],
  });
}
