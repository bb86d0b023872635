/**
 * Running programs: the only module that calls `Deno.Command`.
 *
 * Programs get an argv array (never a shell string) and an explicit, minimal environment; secrets travel in
 * 0600 option files or on stdin, never in argv. stdout and stderr are drained while waiting for the exit code,
 * so a chatty child cannot block on a full pipe. A pipeline fails if any stage fails (pipefail), and the
 * other stages are killed.
 *
 * @module
 */

/** A program exited with a code the caller did not allow, or could not be started. */
export class CommandFailedError extends Error {
  readonly program: string;
  /** Exit code; 127 when the program was not found, 124 when it was killed on the caller's deadline. */
  readonly code: number;
  readonly stderrTail: string;
  constructor(program: string, code: number, stderrTail: string) {
    const why = code === 127 ? "not found" : code === 124 ? "killed: deadline passed" : `exit code ${code}`;
    super(`${program} failed (${why})${stderrTail ? `: ${stderrTail}` : ""}`);
    this.name = "CommandFailedError";
    this.program = program;
    this.code = code;
    this.stderrTail = stderrTail;
  }
}

/** How to run one program. */
export interface RunOptions {
  /** The whole environment of the child (nothing is inherited but PATH). @default {} */
  readonly env?: Record<string, string>;
  readonly cwd?: string;
  /** Bytes written to the child's stdin, then closed. */
  readonly stdin?: Uint8Array | string;
  /** Kills the child (SIGKILL) when aborted; the result is then code 124. */
  readonly signal?: AbortSignal;
  /** Exit codes that are not failures. @default [0] */
  readonly allowCodes?: readonly number[];
}

/** What a finished program left. */
export interface RunResult {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

const decoder = new TextDecoder();

/**
 * Runs a program to completion.
 *
 * @param argv Program and arguments.
 * @returns Exit code and output.
 * @throws {CommandFailedError} when the exit code is not allowed (stderr's last lines in the message).
 */
export async function run(argv: readonly string[], options: RunOptions = {}): Promise<RunResult> {
  const program = argv[0];
  const child = spawn(argv, { env: options.env, cwd: options.cwd, stdin: options.stdin !== undefined });
  const killer = onAbort(options.signal, () => kill(child));
  try {
    const writing = options.stdin === undefined ? Promise.resolve() : writeAll(child.stdin, options.stdin);
    const [out, status] = await Promise.all([child.output(), writing.then(() => child.status)]);
    const result = {
      code: options.signal?.aborted ? 124 : status.code,
      stdout: decoder.decode(out.stdout),
      stderr: decoder.decode(out.stderr),
    };
    if (!(options.allowCodes ?? [0]).includes(result.code)) {
      throw new CommandFailedError(program, result.code, tail(result.stderr));
    }
    return result;
  } finally {
    killer.dispose();
  }
}

/** One stage of a {@link pipeline}. */
export interface Stage {
  readonly argv: readonly string[];
  readonly env?: Record<string, string>;
  readonly cwd?: string;
}

/**
 * Runs `a | b | … | sink`: each stage's stdout feeds the next stage's stdin, the last stage's stdout goes to
 * `sink` (or is discarded), and `source` (if given) feeds the first stage. Every stage's stderr is kept apart.
 * If any stage, the source or the sink fails, the other stages are killed and the first failure is thrown.
 *
 * @param stages The programs, in order.
 * @param io `source` feeds the first stage's stdin; `sink` consumes the last stage's stdout.
 * @returns Each stage's stderr, in order, when every stage succeeded.
 * @throws {CommandFailedError} for the first stage that failed (pipefail).
 */
export async function pipeline(
  stages: readonly Stage[],
  io: {
    source?: ReadableStream<Uint8Array>;
    sink?: (out: ReadableStream<Uint8Array>) => Promise<void>;
    signal?: AbortSignal;
  } = {},
): Promise<string[]> {
  const children: Deno.ChildProcess[] = [];
  const killAll = () => children.forEach(kill);
  const killer = onAbort(io.signal, killAll);
  const tasks: Promise<void>[] = [];
  const stderrs: Promise<string>[] = [];
  try {
    for (const [i, stage] of stages.entries()) {
      let child: Deno.ChildProcess;
      try {
        child = spawn(stage.argv, {
          env: stage.env,
          cwd: stage.cwd,
          stdin: i > 0 || io.source !== undefined,
        });
      } catch (e) {
        killAll();
        throw e;
      }
      children.push(child);
      stderrs.push(new Response(child.stderr).text());
    }
    const failures: Error[] = [];
    const fail = (e: Error) => {
      failures.push(e);
      killAll();
    };
    if (io.source) tasks.push(io.source.pipeTo(children[0].stdin).catch((e) => fail(asError(e, "source"))));
    for (let i = 0; i + 1 < children.length; i++) {
      tasks.push(
        children[i].stdout.pipeTo(children[i + 1].stdin).catch(() => {/* reported by exit codes */}),
      );
    }
    const last = children[children.length - 1];
    tasks.push(
      io.sink
        ? io.sink(last.stdout).catch((e) => fail(asError(e, "sink")))
        : last.stdout.pipeTo(new WritableStream()).catch(() => {}),
    );
    const statuses = await Promise.all(children.map((c) => c.status));
    await Promise.all(tasks);
    const errors = await Promise.all(stderrs);
    const failed = statuses.findIndex((s) => !s.success);
    if (failures.length > 0 && failed < 0) throw failures[0];
    if (failed >= 0) {
      const code = io.signal?.aborted ? 124 : statuses[failed].code || 1;
      // A stage killed because another failed is not the cause: report the first that failed by itself.
      const cause = statuses.findIndex((s) => !s.success && s.signal === null);
      const index = cause >= 0 ? cause : failed;
      if (failures.length > 0 && cause < 0) throw failures[0];
      throw new CommandFailedError(
        stages[index].argv[0],
        cause >= 0 ? statuses[index].code : code,
        tail(errors[index]),
      );
    }
    return errors;
  } finally {
    killer.dispose();
  }
}

/** Starts a program with piped stdout and stderr; a missing program is code 127. */
function spawn(
  argv: readonly string[],
  o: { env?: Record<string, string>; cwd?: string; stdin: boolean },
): Deno.ChildProcess {
  const [program, ...args] = argv;
  try {
    return new Deno.Command(program, {
      args,
      env: baseEnv(o.env),
      clearEnv: true,
      cwd: o.cwd,
      stdin: o.stdin ? "piped" : "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) throw new CommandFailedError(program, 127, "");
    throw e;
  }
}

function baseEnv(env: Record<string, string> = {}): Record<string, string> {
  return { PATH: "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", ...env };
}

function kill(child: Deno.ChildProcess): void {
  try {
    child.kill("SIGKILL");
  } catch {
    // already gone
  }
}

function onAbort(signal: AbortSignal | undefined, fn: () => void): { dispose(): void } {
  if (!signal) return { dispose() {} };
  if (signal.aborted) fn();
  signal.addEventListener("abort", fn, { once: true });
  return { dispose: () => signal.removeEventListener("abort", fn) };
}

async function writeAll(stdin: WritableStream<Uint8Array>, data: Uint8Array | string): Promise<void> {
  const writer = stdin.getWriter();
  try {
    await writer.write(typeof data === "string" ? new TextEncoder().encode(data) : data);
    await writer.close();
  } catch {
    // the child closed its stdin early; its exit code tells what happened
  }
}

function asError(e: unknown, what: string): Error {
  return e instanceof Error ? e : new Error(`${what} failed: ${String(e)}`);
}

/** The last lines of a program's stderr, one line, for error messages. */
function tail(stderr: string, lines = 3): string {
  return stderr.trim().split("\n").slice(-lines).map((l) => l.trim()).filter(Boolean).join(" | ").slice(
    0,
    500,
  );
}
