/**
 * Running programs: the only module that calls `Deno.Command` (and `node:child_process`, for pipelines).
 *
 * Programs get an argv array (never a shell string) and an explicit, minimal environment; secrets travel in
 * 0600 option files or on stdin, never in argv. stdout and stderr are drained while waiting for the exit code,
 * so a chatty child cannot block on a full pipe. A pipeline fails if any stage fails (pipefail), and the
 * other stages are killed.
 *
 * @module
 */

import { type ChildProcess, spawn as spawnNode } from "node:child_process";
import { constants as osConstants } from "node:os";
import type { Readable, Writable } from "node:stream";

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
 * Stages are joined by the kernel: the pipe between two stages is the very pipe one writes and the other
 * reads (through `node:child_process`, whose `stdio` takes another child's stdout; `Deno.Command` cannot), so
 * the bytes between stages never pass through this process. Only `source` and `sink` do, and the sink gets
 * them in chunks of up to {@link SINK_CHUNK_BYTES} rather than the pipe's 64 KiB: each chunk costs the same
 * fixed work whatever its size (see docs/BENCHMARKS.md, Snapshots).
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
  const children: StageProcess[] = [];
  // Stops everything: the stages, and the feeding of the source (cancelled, so that its owner learns why).
  const feeding = new AbortController();
  const killAll = (reason?: unknown) => {
    children.forEach((c) => killNode(c.child));
    feeding.abort(reason);
  };
  const killer = onAbort(io.signal, () => killAll(io.signal?.reason));
  const tasks: Promise<void>[] = [];
  try {
    for (const [i, stage] of stages.entries()) {
      const previous = children[i - 1]?.child.stdout;
      let child: StageProcess;
      try {
        // A program that cannot be run fails the whole pipeline at once, as a failure to spawn does.
        child = spawnStage(
          stage,
          previous ?? (io.source !== undefined ? "pipe" : "ignore"),
          (e) => killAll(e),
        );
      } catch (e) {
        killAll(e);
        await io.source?.cancel(e).catch(() => {}); // nothing reads it now; its owner learns why
        throw e;
      }
      // The next stage holds the pipe now; this process lets go of its read end, so that the stage before
      // gets SIGPIPE if the next one dies.
      previous?.destroy();
      children.push(child);
    }
    const failures: Error[] = [];
    const fail = (e: Error) => {
      failures.push(e);
      killAll(e);
    };
    if (io.source) {
      const source = io.source;
      tasks.push(
        feed(source, children[0].child.stdin!, feeding.signal).catch((e) => {
          if (feeding.signal.aborted) return;
          // The first stage closed its stdin (it exited early): its exit status tells why, so the others are
          // not killed before it is known (a kill would hide the stage's own failure behind this EPIPE).
          if ((e as { code?: unknown }).code === "EPIPE") failures.push(asError(e, "source"));
          else fail(asError(e, "source"));
        }),
      );
    }
    const last = children[children.length - 1].child.stdout!;
    tasks.push(
      io.sink
        ? io.sink(coalesce(last, SINK_CHUNK_BYTES)).catch((e) => fail(asError(e, "sink")))
        : drain(last),
    );
    const statuses = await Promise.all(children.map((c) => c.status));
    await Promise.all(tasks);
    const errors = await Promise.all(children.map((c) => c.stderr));
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

/** The largest chunk a {@link pipeline}'s sink receives. */
export const SINK_CHUNK_BYTES = 1024 * 1024;

/** How a stage ended. */
interface StageStatus {
  readonly success: boolean;
  /** Exit code; 128 + n when killed by signal n; 127 when the program was not found. */
  readonly code: number;
  readonly signal: string | null;
}

/** A running stage of a {@link pipeline}. */
interface StageProcess {
  readonly child: ChildProcess;
  readonly status: Promise<StageStatus>;
  /** Its whole stderr, once it has closed it. */
  readonly stderr: Promise<string>;
}

/** Starts one stage; stdin is a pipe, nothing, or the stdout of the stage before. */
function spawnStage(
  stage: Stage,
  stdin: "pipe" | "ignore" | Readable,
  onSpawnError: (e: Error) => void,
): StageProcess {
  const [program, ...args] = stage.argv;
  const child = spawnNode(program, args, {
    env: baseEnv(stage.env),
    cwd: stage.cwd,
    stdio: [stdin, "pipe", "pipe"],
  });
  const status = new Promise<StageStatus>((resolve) => {
    child.once("error", (e: NodeJS.ErrnoException) => {
      resolve({ success: false, code: e.code === "ENOENT" ? 127 : 126, signal: null });
      // No process behind them: end its streams, so that nothing waits for them.
      for (const stream of [child.stdin, child.stdout, child.stderr]) stream?.destroy();
      onSpawnError(e);
    });
    child.once("exit", (code, signal) => {
      resolve({
        success: code === 0,
        code: code ?? 128 + (signal ? (osConstants.signals[signal] ?? 0) : 0),
        signal,
      });
    });
  });
  return { child, status, stderr: readText(child.stderr!) };
}

/** Writes a web stream into a stage's stdin, one chunk at a time, then closes it; `signal` cancels it. */
async function feed(source: ReadableStream<Uint8Array>, stdin: Writable, signal: AbortSignal): Promise<void> {
  stdin.on("error", () => {}); // a stage that exits early: the pending write fails, its exit code tells why
  const reader = source.getReader();
  const cancel = () => void reader.cancel(signal.reason).catch(() => {});
  if (signal.aborted) cancel();
  signal.addEventListener("abort", cancel, { once: true });
  try {
    while (true) {
      const { value, done } = await reader.read();
      if (done) break;
      await new Promise<void>((resolve, reject) => stdin.write(value, (e) => e ? reject(e) : resolve()));
    }
  } catch (e) {
    await reader.cancel(e).catch(() => {});
    stdin.destroy();
    throw e;
  } finally {
    signal.removeEventListener("abort", cancel);
  }
  await new Promise<void>((resolve) => {
    stdin.once("close", resolve); // a stage killed meanwhile: end() may never call back
    stdin.end(resolve);
  });
}

/**
 * A node stream as a web stream of chunks of up to `size` bytes: the pipe's small reads are copied together,
 * so that what reads the stream does its per-chunk work (a stream stage, a hash update, a write) less often.
 */
function coalesce(src: Readable, size: number): ReadableStream<Uint8Array> {
  const chunks = src[Symbol.asyncIterator]() as AsyncIterator<Uint8Array>;
  let rest: Uint8Array | undefined;
  let ended = false;
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      let buffer: Uint8Array | undefined;
      let filled = 0;
      while (filled < size) {
        let chunk = rest;
        rest = undefined;
        if (chunk === undefined) {
          if (ended) break;
          const r = await chunks.next();
          if (r.done) {
            ended = true;
            break;
          }
          chunk = r.value;
        }
        if (filled === 0 && chunk.byteLength >= size) {
          buffer = chunk.subarray(0, size);
          filled = size;
          if (chunk.byteLength > size) rest = chunk.subarray(size);
          break;
        }
        buffer ??= new Uint8Array(size);
        const take = Math.min(chunk.byteLength, size - filled);
        buffer.set(take === chunk.byteLength ? chunk : chunk.subarray(0, take), filled);
        filled += take;
        if (take < chunk.byteLength) rest = chunk.subarray(take);
      }
      if (filled > 0) controller.enqueue(buffer!.subarray(0, filled));
      else controller.close();
    },
    cancel() {
      src.destroy();
    },
  }, { highWaterMark: 0 });
}

/** Reads a node stream to its end and discards it. */
async function drain(src: Readable): Promise<void> {
  try {
    for await (const _ of src) { /* discarded */ }
  } catch {
    // the stage's exit code tells
  }
}

async function readText(src: Readable): Promise<string> {
  const parts: Uint8Array[] = [];
  try {
    for await (const chunk of src) parts.push(chunk as Uint8Array);
  } catch {
    // what was read is what there is
  }
  const all = new Uint8Array(parts.reduce((n, p) => n + p.byteLength, 0));
  let at = 0;
  for (const p of parts) {
    all.set(p, at);
    at += p.byteLength;
  }
  return decoder.decode(all);
}

function killNode(child: ChildProcess): void {
  try {
    if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
  } catch {
    // already gone
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
