/**
 * `autopilot config`: print the effective configuration, secrets redacted.
 *
 * @module
 */
import { describeConfig } from "../config.ts";
import type { CommandContext } from "../command.ts";
import { print } from "../output.ts";

/** `autopilot config [--json]`. */
export function runConfig({ config, env, flags }: CommandContext): Promise<number> {
  const rows = describeConfig(config, env);
  if (flags.json) {
    print(JSON.stringify(Object.fromEntries(rows.map((r) => [r.name, r.value])), null, 2));
  } else {
    const width = Math.max(...rows.map((r) => r.name.length));
    for (const r of rows) {
      print(`${r.name.padEnd(width)}  ${r.value}${r.source === "default" ? "  (default)" : ""}`);
    }
  }
  return Promise.resolve(0);
}
