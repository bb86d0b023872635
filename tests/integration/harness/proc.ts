/**
 * Long-running server processes for integration tests: spawn (optionally inside a network namespace), stop by
 * pid, a registry so that everything started can be stopped, and a state dir so that a crashed run's
 * leftovers (processes, namespaces, run dirs) are cleaned by the next run.
 *
 * State dir layout (`$AUTOPILOT_TEST_STATE`, default `/tmp/autopilot-test-state`):
 * - `pids`: one line per started process, `pid<TAB>starttime<TAB>program<TAB>owner`
 * - `tags`: one line per harness run, `tag<TAB>owner` (namespaces `apt<tag>_*`, dir `runs/<tag>`)
 * - `lock`: flock(2) guarding both files
 *
 * Memory cgroups a run makes are named `apt<tag>_…` (see cgroup.ts); each path is listed in the run dir's
 * `cgroups` file before it is made, and a dead run's are removed by that path.
 *
 * `owner` is `pid:starttime` of the Deno process that started it. Leftovers are only touched when that owner
 * is gone, so two test runs on one machine do not clean each other up, and a pid is only killed when its
 * start time and program name still match what was recorded.
 *
 * @module
 */

import { systemTool } from "./tools.ts";

/** Prefix of every network namespace and host link the harness creates (`apt<tag>_n1`, `apt<tag>-host`). */
export const NETNS_PREFIX = "apt";

/** A run tag: 4 characters of [a-z0-9], unique per harness run. */
export const TAG_PATTERN: RegExp = /^[a-z0-9]{4}$/;

/** The harness state dir: `$AUTOPILOT_TEST_STATE` or `/tmp/autopilot-test-state`. */
export function stateDir(): string {
  return Deno.env.get("AUTOPILOT_TEST_STATE") || "/tmp/autopilot-test-state";
}

/** Whether run dirs are kept after dispose (`AUTOPILOT_TEST_KEEP=1`) for debugging. */
export function keepFiles(): boolean {
  return Deno.env.get("AUTOPILOT_TEST_KEEP") === "1";
}

/** Creates the state dir (mode 0700) if needed and returns its path. */
export async function ensureStateDir(): Promise<string> {
  const dir = stateDir();
  await Deno.mkdir(dir, { recursive: true, mode: 0o700 });
  return dir;
}

/** Resolves after `ms` milliseconds. */
export function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Random lower-case alphanumeric string of the given length. */
export function randomId(length: number): string {
  const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789";
  const bytes = crypto.getRandomValues(new Uint8Array(length));
  return Array.from(bytes, (b) => alphabet[b % alphabet.length]).join("");
}

/** A random hex secret (for passwords and keys). */
export function randomSecret(bytes = 18): string {
  return Array.from(crypto.getRandomValues(new Uint8Array(bytes)), (b) => b.toString(16).padStart(2, "0"))
    .join("");
}

// ---------------------------------------------------------------------------------------------------------
// /proc helpers

interface ProcStat {
  state: string;
  starttime: string;
}

function readStat(pid: number): ProcStat | undefined {
  try {
    const s = Deno.readTextFileSync(`/proc/${pid}/stat`);
    const rest = s.slice(s.lastIndexOf(")") + 2).split(" ");
    return { state: rest[0], starttime: rest[19] };
  } catch {
    return undefined;
  }
}

function readArgv0(pid: number): string | undefined {
  try {
    const raw = Deno.readTextFileSync(`/proc/${pid}/cmdline`);
    return raw.split("\0")[0];
  } catch {
    return undefined;
  }
}

function basename(path: string): string {
  return path.slice(path.lastIndexOf("/") + 1);
}

/** True when `pid` exists and is not a zombie. */
export function isAlive(pid: number): boolean {
  const st = readStat(pid);
  return st !== undefined && st.state !== "Z" && st.state !== "X";
}

let ownerCache: string | undefined;

/** Identity of this Deno process, `pid:starttime`, as recorded in the state files. */
export function ownerId(): string {
  ownerCache ??= `${Deno.pid}:${readStat(Deno.pid)?.starttime ?? "0"}`;
  return ownerCache;
}

function ownerAlive(owner: string): boolean {
  const [pid, start] = owner.split(":");
  const st = readStat(Number(pid));
  return st !== undefined && st.state !== "Z" && st.starttime === start;
}

// ---------------------------------------------------------------------------------------------------------
// state files

/** Runs `fn` while holding the exclusive state-dir lock (flock), so runs on one machine serialize. */
export async function withStateLock<T>(fn: () => Promise<T>): Promise<T> {
  const dir = await ensureStateDir();
  const file = await Deno.open(`${dir}/lock`, { create: true, write: true, mode: 0o600 });
  try {
    await file.lock(true);
    return await fn();
  } finally {
    file.close(); // closing releases the lock
  }
}

async function appendLine(name: string, line: string): Promise<void> {
  await withStateLock(async () => {
    await Deno.writeTextFile(`${stateDir()}/${name}`, line + "\n", {
      append: true,
      create: true,
      mode: 0o600,
    });
  });
}

async function readLines(name: string): Promise<string[][]> {
  try {
    const text = await Deno.readTextFile(`${stateDir()}/${name}`);
    return text.split("\n").filter((l) => l !== "").map((l) => l.split("\t"));
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return [];
    throw e;
  }
}

const recordedTags = new Set<string>();

/**
 * Records a harness run tag for this process, before any of its namespaces or files exist, so that a later
 * `cleanupLeftovers()` can remove them if this process dies.
 */
export async function recordRun(tag: string): Promise<void> {
  if (!TAG_PATTERN.test(tag)) throw new Error(`invalid run tag ${JSON.stringify(tag)}`);
  if (recordedTags.has(tag)) return;
  await appendLine("tags", `${tag}\t${ownerId()}`);
  recordedTags.add(tag);
}

/** A harness run: a recorded tag and its private dir `$AUTOPILOT_TEST_STATE/runs/<tag>` (mode 0700). */
export interface RunDir {
  tag: string;
  dir: string;
}

/**
 * Starts a new run: records a fresh tag for this process (so a crash leaves it to `cleanupLeftovers()`) and
 * creates its dir.
 */
export async function newRun(): Promise<RunDir> {
  const tag = randomId(4);
  await recordRun(tag);
  const dir = `${stateDir()}/runs/${tag}`;
  await Deno.mkdir(dir, { recursive: true, mode: 0o700 });
  return { tag, dir };
}

let processRun: Promise<RunDir> | undefined;

/**
 * This process's default run dir (created once), for servers started outside a Harness. It is
 * removed by the first `cleanupLeftovers()` after this process has exited.
 */
export function processRunDir(): Promise<string> {
  processRun ??= newRun();
  return processRun.then((r) => r.dir);
}

// ---------------------------------------------------------------------------------------------------------
// running commands

/** Absolute path of iproute2's `ip`. */
export function ip(): Promise<string> {
  return systemTool("ip", "iproute2");
}

/** Result of a finished command. */
export interface RunResult {
  code: number;
  success: boolean;
  stdout: string;
  stderr: string;
}

/** Options for {@linkcode run}. */
export interface RunOptions {
  /** Text written to the command's stdin (use this for secrets, never argv). */
  stdin?: string;
  /** Extra environment variables (merged into the inherited environment, unless `clearEnv`). */
  env?: Record<string, string>;
  /** Start from an empty environment: the command gets `env` and nothing inherited (default false). */
  clearEnv?: boolean;
  cwd?: string;
  /** Kill the command (SIGKILL) after this many milliseconds; default 60 s. */
  timeoutMs?: number;
}

/** Runs a short command to completion and captures its output. Never throws on a non-zero exit. */
export async function run(program: string, args: string[], opts: RunOptions = {}): Promise<RunResult> {
  const ctl = new AbortController();
  const timer = setTimeout(() => ctl.abort(), opts.timeoutMs ?? 60_000);
  try {
    const child = new Deno.Command(program, {
      args,
      env: opts.env,
      clearEnv: opts.clearEnv ?? false,
      cwd: opts.cwd,
      stdin: opts.stdin === undefined ? "null" : "piped",
      stdout: "piped",
      stderr: "piped",
      signal: ctl.signal,
    }).spawn();
    if (opts.stdin !== undefined) {
      const w = child.stdin.getWriter();
      try {
        await w.write(new TextEncoder().encode(opts.stdin));
        await w.close();
      } catch {
        // the command exited without reading its stdin; its status tells the rest
      }
    }
    const out = await child.output();
    const dec = new TextDecoder();
    return {
      code: out.code,
      success: out.success,
      stdout: dec.decode(out.stdout),
      stderr: dec.decode(out.stderr),
    };
  } finally {
    clearTimeout(timer);
  }
}

/** Like {@linkcode run} but throws (with the command's stderr) on a non-zero exit; returns stdout. */
export async function runOk(program: string, args: string[], opts: RunOptions = {}): Promise<string> {
  const r = await run(program, args, opts);
  if (!r.success) {
    const detail = (r.stderr.trim() || r.stdout.trim()).split("\n").slice(-5).join(" | ");
    throw new Error(`${basename(program)} ${args.join(" ")} failed with exit code ${r.code}: ${detail}`);
  }
  return r.stdout;
}

// ---------------------------------------------------------------------------------------------------------
// waiting

/** Thrown from a {@linkcode waitFor} check to stop waiting at once (e.g. the server process died). */
export class StopWaiting extends Error {}

/** Options for {@linkcode waitFor}. */
export interface WaitOptions {
  /** Deadline in milliseconds; default 10 s. */
  timeoutMs?: number;
  /** Poll interval in milliseconds; default 50 ms. */
  intervalMs?: number;
}

/**
 * Polls `check` until it returns a truthy value, and returns that value. A check that throws counts as "not
 * yet" (its last error is reported), except {@linkcode StopWaiting}, which is rethrown at once. On timeout,
 * throws `timed out after N ms waiting for <what>`.
 */
export async function waitFor<T>(
  what: string,
  check: () => T | Promise<T>,
  opts: WaitOptions = {},
): Promise<NonNullable<T>> {
  const timeoutMs = opts.timeoutMs ?? 10_000;
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  while (true) {
    try {
      const v = await check();
      if (v !== undefined && v !== null && v !== false) return v as NonNullable<T>;
    } catch (e) {
      if (e instanceof StopWaiting) throw e;
      lastError = e;
    }
    if (Date.now() >= deadline) break;
    await delay(Math.min(opts.intervalMs ?? 50, Math.max(1, deadline - Date.now())));
  }
  const last = lastError === undefined
    ? ""
    : ` (last error: ${lastError instanceof Error ? lastError.message : lastError})`;
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last}`);
}

// ---------------------------------------------------------------------------------------------------------
// server processes

/** A long-running server started by {@linkcode spawnServer}. */
export interface ServerProcess {
  /** Human-readable name (e.g. "mariadbd n1"). */
  readonly name: string;
  /** The server's pid (the shell and `ip netns exec` exec into it, so this is the server itself). */
  readonly pid: number;
  /** Absolute path of the server program. */
  readonly program: string;
  /** File receiving the server's stdout and stderr. */
  readonly logFile: string;
  /** Network namespace it runs in, if any. */
  readonly netns?: string;
  /** Resolves when the process has exited and been reaped. */
  readonly status: Promise<Deno.CommandStatus>;
  /** True once the process has exited. */
  readonly exited: boolean;
}

/** Options for {@linkcode spawnServer}. */
export interface SpawnOptions {
  /** Human-readable name for messages. */
  name: string;
  /** Absolute path of the program. */
  program: string;
  args: string[];
  /** stdout and stderr are appended here. */
  logFile: string;
  /** Run inside this network namespace (via `ip netns exec`). */
  netns?: string;
  /** Extra environment variables; put secrets here, never in `args`. */
  env?: Record<string, string>;
  /** Start from an empty environment: the server gets `env` and nothing inherited (default false). */
  clearEnv?: boolean;
  cwd?: string;
  /**
   * A command prefix that execs its arguments without forking (e.g. `MemoryCgroup.wrapper`, which starts the
   * server inside a memory cgroup).
   */
  wrapper?: readonly string[];
}

interface Entry {
  proc: ServerProcess;
}

const registry = new Map<number, Entry>();

/**
 * Starts a server in the background: stdin from /dev/null, stdout+stderr appended to `logFile`, optionally
 * inside a network namespace. Records its pid in the registry and in `$AUTOPILOT_TEST_STATE/pids`.
 */
export async function spawnServer(opts: SpawnOptions): Promise<ServerProcess> {
  const argv = [
    // SIGKILL the server when this Deno process dies (crash, kill -9, or Ctrl-C: deno test exits at once).
    await systemTool("setpriv", "util-linux"),
    "--pdeathsig",
    "KILL",
    "--",
    ...(opts.netns ? [await ip(), "netns", "exec", opts.netns] : []),
    ...(opts.wrapper ?? []),
    opts.program,
    ...opts.args,
  ];
  // sh, setpriv, `ip netns exec` and the wrapper all exec (no fork), so the child's pid is the server's pid.
  const child = new Deno.Command("/bin/sh", {
    args: ["-c", 'log=$1; shift; exec "$@" >>"$log" 2>&1', "sh", opts.logFile, ...argv],
    env: opts.env,
    clearEnv: opts.clearEnv,
    cwd: opts.cwd,
    stdin: "null",
    stdout: "null",
    stderr: "null",
  }).spawn();
  const pid = child.pid;
  const starttime = readStat(pid)?.starttime ?? "0";
  const state = { exited: false };
  const status = child.status.then((s) => {
    state.exited = true;
    return s;
  });
  const proc: ServerProcess = {
    name: opts.name,
    pid,
    program: opts.program,
    logFile: opts.logFile,
    netns: opts.netns,
    status,
    get exited() {
      return state.exited;
    },
  };
  registry.set(pid, { proc });
  await appendLine("pids", `${pid}\t${starttime}\t${opts.program}\t${ownerId()}`);
  return proc;
}

/** The registered server with this pid, if this process started it and has not stopped it yet. */
export function serverByPid(pid: number): ServerProcess | undefined {
  return registry.get(pid)?.proc;
}

function signal(pid: number, sig: Deno.Signal): void {
  try {
    Deno.kill(pid, sig);
  } catch {
    // already gone
  }
}

async function waitExit(pid: number, timeoutMs: number): Promise<boolean> {
  const entry = registry.get(pid);
  if (entry) {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<false>((resolve) => timer = setTimeout(() => resolve(false), timeoutMs));
    try {
      return await Promise.race([entry.proc.status.then(() => true), timeout]);
    } finally {
      clearTimeout(timer);
    }
  }
  const deadline = Date.now() + timeoutMs;
  while (isAlive(pid)) {
    if (Date.now() >= deadline) return false;
    await delay(20);
  }
  return true;
}

/** Options for {@linkcode stop}. */
export interface StopOptions {
  /** How long to wait after SIGTERM before SIGKILL; default 10 s. */
  timeoutMs?: number;
}

/**
 * Stops a process by pid: SIGTERM, wait up to the timeout, then SIGKILL, and wait until it is gone. Only for
 * pids this process started and has not stopped yet; any other pid is left alone.
 */
export async function stop(pid: number, opts: StopOptions = {}): Promise<void> {
  const entry = registry.get(pid);
  if (!entry) return;
  if (!entry.proc.exited) {
    signal(pid, "SIGTERM");
    signal(pid, "SIGCONT"); // a frozen process (freeze()) handles its SIGTERM only once it runs
    if (!(await waitExit(pid, opts.timeoutMs ?? 10_000))) {
      signal(pid, "SIGKILL");
      await entry.proc.status;
    }
  }
  registry.delete(pid);
}

/** Kills a started process with SIGKILL at once and waits until it is gone. */
export async function kill9(pid: number): Promise<void> {
  const entry = registry.get(pid);
  if (!entry) return;
  signal(pid, "SIGKILL");
  await entry.proc.status;
  registry.delete(pid);
}

/**
 * Freezes (SIGSTOP) or thaws (SIGCONT) a process this process started and has not stopped yet; any other pid is
 * left alone. A frozen process still ends with {@linkcode stop} (SIGKILL after the timeout) or {@linkcode kill9}.
 */
export function freeze(pid: number, frozen: boolean): void {
  const entry = registry.get(pid);
  if (!entry || entry.proc.exited) return;
  signal(pid, frozen ? "SIGSTOP" : "SIGCONT");
}

/** Stops every process this Deno process started and has not stopped yet (in parallel). */
export async function stopAll(): Promise<void> {
  await Promise.all([...registry.keys()].map((pid) => stop(pid)));
}

/** A set of started processes that can be stopped together (each Harness owns one). */
export class ProcessGroup {
  readonly #pids = new Set<number>();
  readonly #all: number[] = [];

  /** {@linkcode spawnServer} and remember the pid in this group. */
  async spawn(opts: SpawnOptions): Promise<ServerProcess> {
    const p = await spawnServer(opts);
    this.#pids.add(p.pid);
    this.#all.push(p.pid);
    return p;
  }

  /** Every pid ever started through this group, stopped or not. */
  get pids(): readonly number[] {
    return [...this.#all];
  }

  /** Stops every process of this group that is still running. */
  async stopAll(): Promise<void> {
    const pids = [...this.#pids];
    this.#pids.clear();
    await Promise.all(pids.map((pid) => stop(pid)));
  }
}

// ---------------------------------------------------------------------------------------------------------
// leftovers

/** What {@linkcode cleanupLeftovers} removed. */
export interface CleanupReport {
  killed: number[];
  namespaces: string[];
  links: string[];
  dirs: string[];
  /** Cgroup dirs a run listed in its `cgroups` file (see {@linkcode recordCgroup}). */
  cgroups: string[];
}

/** The file in a run dir that lists the cgroup dirs the run made, one per line. */
const CGROUPS_FILE = "cgroups";

/**
 * Records a cgroup dir for run `tag` (in `<run dir>/cgroups`) before it is made, so that `cleanupLeftovers()`
 * removes it if this process dies before it does. Only dirs below /sys/fs/cgroup whose name starts with
 * `apt<tag>_` are accepted, and removed.
 */
export async function recordCgroup(tag: string, runDir: string, path: string): Promise<void> {
  if (!cgroupOfRun(tag, path)) throw new Error(`recordCgroup: ${path} is not a cgroup dir named apt${tag}_*`);
  await Deno.writeTextFile(`${runDir}/${CGROUPS_FILE}`, path + "\n", {
    append: true,
    create: true,
    mode: 0o600,
  });
}

function cgroupOfRun(tag: string, path: string): boolean {
  return path.startsWith("/sys/fs/cgroup/") && !path.includes("/../") &&
    basename(path).startsWith(`${NETNS_PREFIX}${tag}_`);
}

/** The cgroup dirs run `tag` listed in its run dir (see {@linkcode recordCgroup}), whether or not they exist. */
export async function recordedCgroups(tag: string, runDir: string): Promise<string[]> {
  let text: string;
  try {
    text = await Deno.readTextFile(`${runDir}/${CGROUPS_FILE}`);
  } catch {
    return [];
  }
  return [...new Set(text.split("\n").filter((l) => cgroupOfRun(tag, l)))];
}

/** Removes the cgroup dirs a dead run listed (rmdir: only empty ones go); returns those removed. */
async function removeRunCgroups(tag: string, runDir: string): Promise<string[]> {
  const removed: string[] = [];
  for (const path of await recordedCgroups(tag, runDir)) {
    // Its processes were just killed; the kernel may need a moment before the dir can go.
    for (let attempt = 0; attempt < 20; attempt++) {
      try {
        await Deno.remove(path);
        removed.push(path);
        break;
      } catch (e) {
        if (e instanceof Deno.errors.NotFound) break;
        await delay(100);
      }
    }
  }
  return removed;
}

async function listNamespaces(): Promise<string[]> {
  const r = await run(await ip(), ["netns", "list"]);
  if (!r.success) return [];
  return r.stdout.split("\n").map((l) => l.trim().split(" ")[0]).filter((n) => n !== "");
}

async function listLinks(): Promise<string[]> {
  const r = await run(await ip(), ["-o", "link", "show"]);
  if (!r.success) return [];
  return r.stdout.split("\n").map((l) => l.split(": ")[1]?.split("@")[0]).filter((n): n is string => !!n);
}

/**
 * Cleans what crashed earlier runs left behind, touching only things whose recorded owner process is gone:
 * kills recorded pids whose start time and program name still match, deletes namespaces and host links named
 * `apt<tag>…`, the empty memory cgroups a run listed in its run dir, and run dirs `runs/<tag>`, then rewrites
 * the state files keeping only live owners' lines.
 */
export async function cleanupLeftovers(): Promise<CleanupReport> {
  const report: CleanupReport = { killed: [], namespaces: [], links: [], dirs: [], cgroups: [] };
  await withStateLock(async () => {
    const dir = stateDir();
    // processes
    const keepPids: string[] = [];
    const toKill: number[] = [];
    for (const f of await readLines("pids")) {
      const [pidS, starttime, program, owner] = f;
      if (owner === ownerId() || (owner !== undefined && ownerAlive(owner))) {
        keepPids.push(f.join("\t"));
        continue;
      }
      const pid = Number(pidS);
      if (!Number.isInteger(pid) || pid <= 1 || registry.has(pid)) continue;
      const st = readStat(pid);
      const argv0 = readArgv0(pid);
      if (
        st && st.state !== "Z" && st.starttime === starttime && argv0 !== undefined && program &&
        basename(argv0) === basename(program)
      ) {
        toKill.push(pid);
      }
    }
    for (const pid of toKill) signal(pid, "SIGTERM");
    for (const pid of toKill) {
      if (!(await waitExit(pid, 10_000))) {
        signal(pid, "SIGKILL");
        await waitExit(pid, 10_000);
      }
      report.killed.push(pid);
    }
    // runs: namespaces, host links, dirs
    const live = new Set<string>();
    const keepRuns: string[] = [];
    for (const f of await readLines("tags")) {
      const [tag, owner] = f;
      if (owner === ownerId() || (owner !== undefined && ownerAlive(owner))) {
        live.add(tag);
        keepRuns.push(f.join("\t"));
      }
    }
    const tagOf = (name: string): string | undefined => {
      const m = name.match(/^apt([a-z0-9]{4})[_-]/);
      return m && !live.has(m[1]) ? m[1] : undefined;
    };
    for (const ns of await listNamespaces()) {
      if (tagOf(ns) && (await run(await ip(), ["netns", "del", ns])).success) report.namespaces.push(ns);
    }
    for (const link of await listLinks()) {
      if (tagOf(link) && (await run(await ip(), ["link", "del", link])).success) report.links.push(link);
    }
    try {
      for await (const e of Deno.readDir(`${dir}/runs`)) {
        if (e.isDirectory && TAG_PATTERN.test(e.name) && !live.has(e.name)) {
          report.cgroups.push(...await removeRunCgroups(e.name, `${dir}/runs/${e.name}`));
          if (keepFiles()) continue;
          await Deno.remove(`${dir}/runs/${e.name}`, { recursive: true });
          report.dirs.push(`${dir}/runs/${e.name}`);
        }
      }
    } catch (e) {
      if (!(e instanceof Deno.errors.NotFound)) throw e;
    }
    const body = (lines: string[]) => lines.map((l) => l + "\n").join("");
    await Deno.writeTextFile(`${dir}/pids`, body(keepPids), { mode: 0o600 });
    await Deno.writeTextFile(`${dir}/tags`, body(keepRuns), { mode: 0o600 });
  });
  return report;
}

/** The last `lines` lines of a log file ("" if it cannot be read). */
export async function logTail(path: string, lines = 15): Promise<string> {
  try {
    return (await Deno.readTextFile(path)).trimEnd().split("\n").slice(-lines).join("\n");
  } catch {
    return "";
  }
}

/**
 * A server did not come up: stops it by pid and returns an error carrying the cause and its log's tail.
 *
 * @param hint Extra explanation chosen from the log (e.g. a known cause), appended to the message.
 */
export async function startupFailed(
  proc: ServerProcess,
  cause: unknown,
  hint: (log: string) => string = () => "",
): Promise<Error> {
  await stop(proc.pid);
  const log = await logTail(proc.logFile);
  return new Error(
    `${cause instanceof Error ? cause.message : cause}${hint(log)}\n--- ${proc.logFile} ---\n${log}`,
  );
}

/** Whether something exists at `path` (a dangling link counts); other errors than "not found" are thrown. */
export async function pathExists(path: string): Promise<boolean> {
  try {
    await Deno.lstat(path);
    return true;
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return false;
    throw e;
  }
}
