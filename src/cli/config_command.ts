/**
 * `autopilot config`: print the effective configuration, secrets redacted.
 *
 * @module
 */
import { describeConfig, fileTwin } from "../config.ts";
import type { CommandContext } from "../command.ts";
import { print } from "../output.ts";

/** `autopilot config [--json]`. */
export function runConfig({ config, env, flags }: CommandContext): Promise<number> {
  const rows = describeConfig(config, env);
  if (flags.json) {
    // A secret read from a file: its `_FILE` twin with the path, next to the redacted value.
    const entries = rows.flatMap((r) => [[r.name, r.value], ...(r.file ? [[fileTwin(r.name), r.file]] : [])]);
    print(JSON.stringify(Object.fromEntries(entries), null, 2));
  } else {
    const width = Math.max(...rows.map((r) => r.name.length));
    for (const r of rows) {
      const from = r.source === "default" ? "  (default)" : r.file ? `  (from the file ${r.file})` : "";
      print(`${r.name.padEnd(width)}  ${r.value}${from}`);
    }
  }
  return Promise.resolve(0);
}
