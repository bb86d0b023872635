/**
 * `autopilot config`: print the effective configuration, secrets redacted.
 *
 * @module
 */
import { describeConfig } from "../config.ts";
import type { Command } from "./commands.ts";
import { print } from "./output.ts";

/** The `config` command. */
export const configCommand: Command = {
  name: "config",
  summary: "print the effective configuration (secrets redacted) and exit",
  details: "Every variable is listed with its effective value and whether it was set or defaulted.\n" +
    "Exit code 2 and one line per problem if the configuration is invalid.",
  options: { json: { type: "boolean" } },
  run({ config, env, flags }) {
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
  },
};
