/**
 * `autopilot`: the one program ContainerPilot calls at each point of a MySQL container's life.
 *
 * This file only parses argv, loads the configuration and dispatches to a command; each command lives in
 * `hooks/` (lifecycle hooks) or `src/cli/` (operator commands), and the command table (`commands.ts`) names
 * them. `--help` and `--version` need only the command table; the argument parser, the configuration, logging
 * and the command itself are loaded with dynamic imports once a command is to run, so each run loads only
 * what it uses.
 *
 * @module
 */
import { print, printError } from "./src/output.ts";
import { type Command, COMMANDS, EXIT, usage } from "./commands.ts";
import type { EnvReader } from "./src/config.ts";

/** What {@link main} reads besides its arguments; tests pass their own. */
export interface MainOptions {
  /** The command table (default: COMMANDS). */
  readonly commands?: readonly Command[];
  /** The environment (default: the process's). */
  readonly env?: EnvReader;
}

/** Runs the CLI with the given arguments and returns the process exit code. */
export async function main(args: string[], options: MainOptions = {}): Promise<number> {
  const commands = options.commands ?? COMMANDS;
  const [name, ...rest] = args;
  if (name === undefined || name === "help" || name === "--help" || name === "-h") {
    const topic = name === "help" ? rest[0] : undefined;
    const command = commands.find((c) => c.name === topic);
    print(command ? commandHelp(command) : usage());
    return EXIT.ok;
  }
  if (name === "--version" || name === "version") {
    print(`autopilot ${VERSION}`);
    return EXIT.ok;
  }
  const command = commands.find((c) => c.name === name);
  if (command === undefined) {
    printError(`autopilot: unknown command '${name}': run 'autopilot --help' for the list of commands`);
    return EXIT.usage;
  }
  const { parseArgs } = await import("node:util");
  let flags: Record<string, string | boolean | undefined>;
  let positionals: string[];
  try {
    const parsed = parseArgs({
      args: rest,
      options: { ...command.options, help: { type: "boolean", short: "h" } },
      allowPositionals: true,
      strict: true,
    });
    flags = parsed.values as Record<string, string | boolean | undefined>;
    positionals = parsed.positionals;
  } catch (e) {
    printError(`autopilot ${name}: ${(e as Error).message}: run 'autopilot help ${name}'`);
    return EXIT.usage;
  }
  if (flags.help) {
    print(commandHelp(command));
    return EXIT.ok;
  }
  const env = options.env ?? ((n: string) => Deno.env.get(n));
  const { ConfigError, loadConfig } = await import("./src/config.ts");
  let config;
  try {
    config = loadConfig(env, { hostname: () => Deno.hostname(), readFile: (p) => Deno.readTextFileSync(p) });
  } catch (e) {
    if (e instanceof ConfigError) {
      for (const problem of e.problems) printError(`autopilot: invalid configuration: ${problem}`);
      return EXIT.usage;
    }
    throw e;
  }
  const [{ setupLogging }, { runCommand }] = await Promise.all([
    import("./src/log.ts"),
    import("./src/command_boundary.ts"),
  ]);
  setupLogging(config.log.level, config.log.format);
  // The error boundary: whatever escapes the command is one logged line, its failure metric and exit 1.
  return await runCommand(command, { config, env, flags, positionals });
}

function commandHelp(c: Command): string {
  const opts = Object.entries(c.options).map(([k, o]) => `  --${k}${o.type === "string" ? " VALUE" : ""}`);
  return [
    `usage: autopilot ${c.name}${c.args ? " " + c.args : ""}`,
    "",
    c.summary,
    ...(c.details ? ["", c.details] : []),
    ...(opts.length ? ["", "options:", ...opts] : []),
  ].join("\n");
}

/** The program version, printed by `autopilot --version`. */
export const VERSION = "0.1.0";

if (import.meta.main) {
  Deno.exit(await main(Deno.args));
}
