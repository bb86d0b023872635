/**
 * Runs the CLI the way ContainerPilot runs it: `deno run` with the very permission set `deno compile` uses
 * (-P=autopilot from deno.json), never -A, so a permission the program lacks fails the test. Optionally inside
 * a node's network namespace, and inside a memory cgroup.
 *
 * @module
 */
import { autopilotRunFlags, ip, REPO_ROOT } from "./harness/mod.ts";

/** What one run of the CLI left. */
export interface CliResult {
  readonly code: number;
  readonly stdout: string;
  /** stderr without Deno's warning that permission sets in deno.json are experimental. */
  readonly stderr: string;
}

/**
 * Runs `autopilot ARGS` with exactly the given environment (plus PATH and DENO_DIR).
 *
 * @param netns Run inside this network namespace.
 * @param wrapper A command prefix that execs its arguments, e.g. `MemoryCgroup.wrapper`.
 */
export async function autopilot(
  args: readonly string[],
  env: Record<string, string> = {},
  netns?: string,
  wrapper: readonly string[] = [],
): Promise<CliResult> {
  const deno = [Deno.execPath(), "run", ...autopilotRunFlags(), "mod.ts", ...args];
  const [program, ...argv] = [...wrapper, ...(netns ? [await ip(), "netns", "exec", netns] : []), ...deno];
  const out = await new Deno.Command(program, {
    args: argv,
    cwd: REPO_ROOT,
    clearEnv: true,
    env: {
      PATH: Deno.env.get("PATH") ?? "/usr/sbin:/usr/bin:/sbin:/bin",
      DENO_DIR: Deno.env.get("DENO_DIR") ?? "",
      NO_COLOR: "1",
      ...env,
    },
    stdin: "null",
  }).output();
  const dec = new TextDecoder();
  const stderr = dec.decode(out.stderr).split("\n").filter((l) => !l.includes("experimental feature")).join(
    "\n",
  );
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: stderr.trim() };
}
