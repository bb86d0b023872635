// deno-lint-ignore-file no-console
/**
 * A local autopilot-mysql cluster for developers, without Docker and without ContainerPilot: a Consul agent and
 * N MariaDB nodes, each in its own network namespace, every node driven the way `containerpilot.json5` says
 * (`pre-start`, then mysqld, restarted whenever it exits; `health` every 5 s, reported to a Consul TTL check as
 * ContainerPilot does; `on-change` when the passing `SERVICE_NAME-primary` instances, which the health pass
 * registers itself, change; `snapshot` every 5 minutes; `pre-stop` before mysqld is stopped),
 * with the settings of an env file read as compose's `env_file` (`env_file.ts`, `local_cluster_env.ts`). It
 * reuses the integration test harness (`Harness`, `Cluster`), so the CLI runs under `-P=autopilot` exactly as
 * in the tests.
 *
 *   deno run -A scripts/local_cluster.ts [--env-file FILE] [--nodes 3] [...]   (as root; see --help)
 *
 * The process re-executes itself under `setsid`, so a Ctrl-C on the terminal reaches only this launcher, which
 * then asks the cluster to stop in order (pre-stop, mysqld, Consul, namespaces) instead of every server
 * getting the SIGINT at once.
 *
 * @module
 */
import { type CliResult } from "../tests/integration/autopilot_cli.ts";
import { Cluster, type TestNode } from "../tests/integration/cluster.ts";
import {
  autopilotRunFlags,
  Harness,
  randomSecret,
  REPO_ROOT,
  systemTool,
} from "../tests/integration/harness/mod.ts";
import { type Config, ConfigError, loadConfig } from "../src/config.ts";
import { EnvFileError, parseEnvFile } from "./env_file.ts";
import {
  type ClusterSettings,
  clusterSettings,
  shellEnvFile,
  shellWord,
  validationEnv,
} from "./local_cluster_env.ts";

const USAGE =
  `usage: deno run -A scripts/local_cluster.ts [options]        (or: bash scripts/cluster.sh [options])

Brings up a local autopilot-mysql cluster without Docker or ContainerPilot: a Consul agent and N MariaDB
nodes, each in its own network namespace (10.99.X.0/24, reachable from this host), every node driven as
containerpilot.json5 says, with the settings of an env file. Prints how to connect once the cluster is
healthy, where each node's log is and how to run 'autopilot' on a node, then 'autopilot status' every
--status-interval seconds, and runs until Ctrl-C / SIGTERM or until --duration has elapsed; then it stops
everything it started and removes its namespaces. Needs root (network namespaces).

options:
  --env-file FILE            every node's settings, read as compose's env_file reads them (default: _env in
                             the repository root if it exists, else none); FILE is relative to the current
                             directory and must exist
  --nodes N                  number of MariaDB nodes, 1..9 (default 3)
  --duration SECONDS         stop this long after the cluster became healthy (default: run until stopped)
  --snapshot-interval SECS   run 'autopilot snapshot' on every node this often (default 300, as ContainerPilot)
  --status-interval SECS     print 'autopilot status' this often (default 60; 0: only on request)
  --ready-timeout SECS       give up if the cluster is not healthy after this long (default 300)
  --log-level LEVEL          LOG_LEVEL of the autopilot hooks (default: the env file's, else INFO)
  --keep                     keep the run dir (logs, datadirs, snapshots) after stopping
  -h, --help                 this text

The env file: every variable of the README's configuration table applies to every node, as compose.yml's
'env_file: _env' does, except the wiring the local cluster owns and sets itself (a value for one of these
in the file is not used, with a notice): NODE_NAME, NODE_ADDRESS, CONSUL, CONSUL_AGENT,
CONTAINERPILOT_MYSQL_IP, STATE_DIR, MYSQL_DATADIR, MYSQL_CNF, MYSQL_SOCKET, MYSQL_TMPDIR, MYSQL_OS_USER, and
SNAPSHOT_DIR unless SNAPSHOT_BACKEND is s3 or manta (that store must then be reachable from the namespaces).
Variables autopilot does not read are ignored, with a notice. The local cluster's own defaults, which the
file overrides: MYSQL_USER=app, MYSQL_DATABASE=app, INNODB_BUFFER_POOL_SIZE=64M, LOG_LEVEL=INFO.
Before anything starts, node 1's settings are checked as 'autopilot config' checks them: each problem is
printed as it prints it, and the script exits 2.

Syntax (compose's documented rules, without interpolation): KEY=VALUE or KEY: VALUE lines, optionally
after 'export '; blank lines and lines starting with # are ignored; spaces around the key and the value
are ignored; an unquoted value ends at the end of the line or at ' #' (a space, then #: a comment);
'single quotes' keep the text as it is (\\' is a quote); "double quotes" read \\n \\r \\t \\a \\b \\f \\v \\\\ \\"
and \\$ as escapes; quoted values may span lines and be followed by a comment. Refused, with the line number:
a '$NAME' or '\${...}' in an unquoted or double-quoted value (compose would substitute it, this script does
not: use single quotes, or $$ for a literal $), a line without '=', an octal escape.

Passwords: MYSQL_REPL_PASSWORD, MYSQL_PASSWORD (app user) and MYSQL_ROOT_PASSWORD are taken from the
environment when set there, else from the env file, else generated for this run (no root password is
generated when MYSQL_RANDOM_ROOT_PASSWORD is set, no app password when MYSQL_USER is empty). A generated app
password is printed once, on the terminal only; no other secret is ever printed: the commands shown for
'autopilot' on a node read the node's environment, passwords included, from a 0600 file in the run dir. Press Enter (or send
SIGUSR1 to the printed pid) to print the status now.`;

/** The command line, parsed. */
export interface Options {
  /** --env-file, as given. */
  readonly envFile: string | undefined;
  readonly nodes: number;
  /** Seconds to run after becoming healthy; undefined: until a signal. */
  readonly durationS: number | undefined;
  readonly snapshotIntervalS: number;
  readonly statusIntervalS: number;
  readonly readyTimeoutS: number;
  /** --log-level; undefined: the env file's LOG_LEVEL, else INFO. */
  readonly logLevel: string | undefined;
  readonly keep: boolean;
}

/** Bad command-line input: one line saying what is wrong. */
export class UsageError extends Error {}

const LOG_LEVELS = ["TRACE", "DEBUG", "INFO", "WARNING", "WARN", "ERROR", "CRITICAL", "FATAL"];

/** Parses the arguments; `"help"` for -h/--help. Throws {@linkcode UsageError} on bad input. */
export function parseArgs(args: readonly string[]): Options | "help" {
  let envFile: string | undefined;
  let nodes = 3;
  let durationS: number | undefined;
  let snapshotIntervalS = 300;
  let statusIntervalS = 60;
  let readyTimeoutS = 300;
  let logLevel: string | undefined;
  let keep = false;
  const number = (flag: string, value: string | undefined, min: number, max: number): number => {
    if (value === undefined) throw new UsageError(`${flag} needs a value`);
    const n = Number(value);
    if (!/^\d+$/.test(value) || n < min || n > max) {
      throw new UsageError(`${flag} must be a whole number from ${min} to ${max}, got '${value}'`);
    }
    return n;
  };
  for (let i = 0; i < args.length; i++) {
    const arg = args[i];
    const eq = arg.indexOf("=");
    const [flag, inline] = arg.startsWith("--") && eq > 0
      ? [arg.slice(0, eq), arg.slice(eq + 1)]
      : [arg, undefined];
    const value = (): string | undefined => inline ?? args[++i];
    switch (flag) {
      case "-h":
      case "--help":
        return "help";
      case "--env-file": {
        const v = value();
        if (v === undefined || v === "") throw new UsageError("--env-file needs a file name");
        envFile = v;
        break;
      }
      case "--nodes":
        nodes = number(flag, value(), 1, 9);
        break;
      case "--duration":
        durationS = number(flag, value(), 1, 10 * 365 * 86400);
        break;
      case "--snapshot-interval":
        snapshotIntervalS = number(flag, value(), 1, 7 * 86400);
        break;
      case "--status-interval":
        statusIntervalS = number(flag, value(), 0, 86400);
        break;
      case "--ready-timeout":
        readyTimeoutS = number(flag, value(), 10, 86400);
        break;
      case "--log-level": {
        const v = value();
        if (v === undefined || !LOG_LEVELS.includes(v.toUpperCase())) {
          throw new UsageError(`--log-level must be one of ${LOG_LEVELS.join(", ")}, got '${v ?? ""}'`);
        }
        logLevel = v.toUpperCase();
        break;
      }
      case "--keep":
        if (inline !== undefined) throw new UsageError("--keep takes no value");
        keep = true;
        break;
      default:
        throw new UsageError(`unknown argument '${arg}' (see --help)`);
    }
  }
  return { envFile, nodes, durationS, snapshotIntervalS, statusIntervalS, readyTimeoutS, logLevel, keep };
}

// ---------------------------------------------------------------------------------------------------------
// small helpers

function hhmmss(): string {
  return new Date().toISOString().slice(11, 19);
}

/** A line on the terminal, with the time. */
function say(line: string): void {
  console.log(`[${hhmmss()}] ${line}`);
}

/** Sleeps `ms`, returning early when `signal` aborts. */
function sleep(ms: number, signal: AbortSignal): Promise<void> {
  if (signal.aborted) return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener("abort", done);
  });
}

function lastLine(text: string): string {
  return text.trim().split("\n").at(-1) ?? "";
}

/** A hook's log line without its time, level and category (`2026-… +00 [INF] autopilot·x: `). */
function logMessage(line: string): string {
  return line.replace(/^\d{4}-\d\d-\d\d \S+ \S+ \[\w+\] \S+: /, "");
}

// ---------------------------------------------------------------------------------------------------------
// ContainerPilot's part: Consul registration, TTL checks, the mysql-primary watch

/** A Consul service as ContainerPilot registers it: ID `<name>-<node>`, a TTL check, passing once healthy. */
interface Service {
  readonly name: string;
  readonly ttlS: number;
  registered: boolean;
}

async function consulPut(consulAddr: string, path: string, body?: unknown): Promise<void> {
  const res = await fetch(`http://${consulAddr}${path}`, {
    method: "PUT",
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    signal: AbortSignal.timeout(5000),
  });
  const text = await res.text();
  if (!res.ok) throw new Error(`PUT ${path}: HTTP ${res.status} ${text.trim()}`);
}

/** The passing instances of a service, as `ID address:port` strings sorted by ID (ContainerPilot's compare). */
async function passingInstances(consulAddr: string, service: string): Promise<string[]> {
  const res = await fetch(`http://${consulAddr}/v1/health/service/${service}?passing=1`, {
    signal: AbortSignal.timeout(5000),
  });
  if (!res.ok) throw new Error(`GET health/service/${service}: HTTP ${res.status}`);
  const list = await res.json() as { Service: { ID: string; Address: string; Port: number } }[];
  return list.map((e) => `${e.Service.ID} ${e.Service.Address}:${e.Service.Port}`).sort();
}

/** Counters of one node's jobs, for the summary at the end. */
interface Counts {
  health: number;
  healthFailed: number;
  snapshot: number;
  snapshotFailed: number;
  onChange: number;
  mysqldRestarts: number;
}

/** What containerpilot.json5 takes from the environment for its jobs: SERVICE_NAME and MYSQL_PORT. */
interface Jobs {
  /** The `mysql` job's name and service (SERVICE_NAME); the primary's is `<service>-primary`. */
  readonly service: string;
  readonly port: number;
}

/**
 * One node's ContainerPilot: the SERVICE_NAME job (mysqld, restarted when it exits, with `health` every 5 s),
 * the watch on `SERVICE_NAME-primary` (which autopilot's health pass registers itself) and `on-change`,
 * `snapshot` on an interval, and `pre-stop` before mysqld is stopped. Hook output goes to
 * `<node dir>/autopilot.log`.
 */
class NodeSupervisor {
  readonly counts: Counts = {
    health: 0,
    healthFailed: 0,
    snapshot: 0,
    snapshotFailed: 0,
    onChange: 0,
    mysqldRestarts: 0,
  };
  /** Whether the last `health` passed. */
  healthy = false;
  /** Resolves at the first `health` that passes. */
  readonly firstHealthy: Promise<void>;
  #resolveFirst: () => void = () => {};
  readonly #stopLoops = new AbortController();
  readonly #loops: Promise<void>[] = [];
  readonly #log: Deno.FsFile;
  readonly #mysql: Service;
  #stopping = false;
  #everHealthy = false;

  private constructor(
    readonly c: Cluster,
    readonly node: TestNode,
    readonly opts: Options,
    readonly jobs: Jobs,
    readonly onPrimaryChange: (instances: string[]) => void,
    log: Deno.FsFile,
  ) {
    this.#log = log;
    this.#mysql = { name: jobs.service, ttlS: 15, registered: false };
    this.firstHealthy = new Promise((resolve) => this.#resolveFirst = resolve);
  }

  static async create(
    c: Cluster,
    node: TestNode,
    opts: Options,
    jobs: Jobs,
    onPrimaryChange: (instances: string[]) => void,
  ): Promise<NodeSupervisor> {
    await Deno.mkdir(node.dir, { recursive: true });
    const log = await Deno.open(`${node.dir}/autopilot.log`, { append: true, create: true, mode: 0o600 });
    return new NodeSupervisor(c, node, opts, jobs, onPrimaryChange, log);
  }

  get logFile(): string {
    return `${this.node.dir}/autopilot.log`;
  }

  #write(text: string): void {
    try {
      this.#log.writeSync(new TextEncoder().encode(text));
    } catch {
      // the log is best effort
    }
  }

  /** Runs a hook in the node's namespace and appends its output to the node's log. */
  async hook(job: string, args: string[]): Promise<CliResult> {
    const started = new Date().toISOString();
    const r = await this.c.run(this.node, args);
    const out = [r.stdout.trimEnd(), r.stderr].filter((s) => s !== "").join("\n");
    this.#write(
      `${started} ${job}: autopilot ${args.join(" ")} -> exit ${r.code}\n` +
        (out === "" ? "" : out.split("\n").map((l) => `  ${l}`).join("\n") + "\n"),
    );
    return r;
  }

  note(line: string): void {
    this.#write(`${new Date().toISOString()} ${line}\n`);
  }

  /** `pre-start`, then mysqld (as the `mysql` job, after pre-start exits 0). */
  async boot(): Promise<void> {
    // As Cluster.preStart, with the hook's output in the node's log.
    await Deno.mkdir(`${this.node.dir}/run`, { recursive: true });
    await Deno.mkdir(`${this.node.dir}/tmp`, { recursive: true });
    const pre = await this.hook("pre-start", ["pre-start"]);
    if (pre.code !== 0) {
      throw new Error(
        `${this.node.name}: pre-start failed (exit ${pre.code}): ${logMessage(lastLine(pre.stderr))}`,
      );
    }
    say(`${this.node.name}: pre-start done: ${logMessage(lastLine(pre.stderr)) || "ok"}`);
    await this.c.startMysqld(this.node);
    say(`${this.node.name}: mysqld running (pid ${this.node.mysqld?.pid})`);
  }

  /** Starts the jobs that run while the node is up. */
  start(): void {
    const signal = this.#stopLoops.signal;
    this.#loops.push(this.#superviseMysqld(signal));
    this.#loops.push(this.#every(5_000, signal, () => this.#health()));
    this.#loops.push(this.#watchPrimary(signal));
    this.#loops.push(this.#snapshots(signal));
  }

  async #every(intervalMs: number, signal: AbortSignal, fn: () => Promise<void>): Promise<void> {
    while (!signal.aborted) {
      const t0 = Date.now();
      try {
        await fn();
      } catch (e) {
        this.note(`error: ${e instanceof Error ? e.message : e}`);
      }
      await sleep(Math.max(0, intervalMs - (Date.now() - t0)), signal);
    }
  }

  /** ContainerPilot's heartbeat: register on the first pass, then pass the TTL check after every pass. */
  async #heartbeat(s: Service): Promise<void> {
    const id = `${s.name}-${this.node.name}`;
    try {
      if (!s.registered) {
        await consulPut(this.c.consulAddr, "/v1/agent/service/register", {
          ID: id,
          Name: s.name,
          Address: this.node.address,
          Port: this.jobs.port,
          Check: { TTL: `${s.ttlS}s`, Status: "passing", Notes: `TTL for ${s.name} set by local_cluster.ts` },
        });
        s.registered = true;
      } else {
        await consulPut(this.c.consulAddr, `/v1/agent/check/update/service:${id}`, {
          Status: "passing",
          Output: "ok",
        });
      }
    } catch (e) {
      this.note(`warning: ${s.name} heartbeat: ${e instanceof Error ? e.message : e}`);
    }
  }

  async #health(): Promise<void> {
    const r = await this.hook("health", ["health"]);
    this.counts.health++;
    if (r.code === 0) {
      await this.#heartbeat(this.#mysql);
      if (!this.healthy) say(`${this.node.name}: ${this.#everHealthy ? "health passes again" : "healthy"}`);
      this.healthy = true;
      this.#everHealthy = true;
      this.#resolveFirst();
    } else {
      this.counts.healthFailed++;
      if (this.healthy) {
        say(`${this.node.name}: health failed: ${logMessage(lastLine(r.stderr))} (see ${this.logFile})`);
      }
      this.healthy = false;
    }
  }

  /** The watch on `<service>-primary` (every 2 s): `on-change` whenever the passing instances change. */
  async #watchPrimary(signal: AbortSignal): Promise<void> {
    let last: string[] = [];
    await this.#every(2_000, signal, async () => {
      let now: string[];
      try {
        now = await passingInstances(this.c.consulAddr, `${this.jobs.service}-primary`);
      } catch (e) {
        this.note(`warning: watch ${this.jobs.service}-primary: ${e instanceof Error ? e.message : e}`);
        return;
      }
      // The initial state is empty, so the first poll with an instance counts as a change.
      const changed = now.length !== last.length || now.some((x, i) => x !== last[i]);
      last = now;
      if (!changed) return;
      this.onPrimaryChange(now);
      const r = await this.hook("on-change", ["on-change"]);
      this.counts.onChange++;
      if (r.code !== 0) say(`${this.node.name}: on-change exit ${r.code}: ${logMessage(lastLine(r.stderr))}`);
    });
  }

  async #snapshots(signal: AbortSignal): Promise<void> {
    const ms = this.opts.snapshotIntervalS * 1000;
    await sleep(ms, signal);
    await this.#every(ms, signal, async () => {
      const r = await this.hook("snapshot", ["snapshot"]);
      this.counts.snapshot++;
      if (r.code !== 0) {
        this.counts.snapshotFailed++;
        say(
          `${this.node.name}: snapshot exit ${r.code}: ${
            logMessage(lastLine(r.stderr))
          } (see ${this.logFile})`,
        );
      } else if (r.stdout.trim() !== "") {
        say(`${this.node.name}: snapshot: ${lastLine(r.stdout)}`);
      }
    });
  }

  /** `restarts: "unlimited"`: mysqld is started again whenever it exits, until the node stops. */
  async #superviseMysqld(signal: AbortSignal): Promise<void> {
    while (!signal.aborted && !this.#stopping) {
      const proc = this.node.mysqld;
      if (!proc) return;
      const status = await Promise.race([
        proc.status,
        new Promise<undefined>((resolve) =>
          signal.addEventListener("abort", () => resolve(undefined), { once: true })
        ),
      ]);
      if (status === undefined || signal.aborted || this.#stopping) return;
      const how = status.signal ? `signal ${status.signal}` : `exit code ${status.code}`;
      say(`${this.node.name}: mysqld (pid ${proc.pid}) exited with ${how}: restarting it`);
      this.note(`mysqld (pid ${proc.pid}) exited with ${how}: restarting it`);
      while (!signal.aborted && !this.#stopping) {
        try {
          this.counts.mysqldRestarts++;
          await this.c.startMysqld(this.node);
          say(`${this.node.name}: mysqld restarted (pid ${this.node.mysqld?.pid})`);
          break;
        } catch (e) {
          this.note(`mysqld restart failed: ${e instanceof Error ? e.message : e}`);
          await sleep(1000, signal);
        }
      }
    }
  }

  /** Stops the jobs (waiting for the runs under way). */
  async stopJobs(): Promise<void> {
    this.#stopLoops.abort();
    await Promise.allSettled(this.#loops);
  }

  /**
   * The `mysql` job is stopping: the jobs stop, the service is deregistered and `pre-stop` runs: on the
   * primary it hands the role over (so the replicas' mysqld must still run), then on every node it shuts mysqld
   * down (see {@linkcode stopMysqld} for what is left).
   */
  async preStop(): Promise<void> {
    this.#stopping = true;
    await this.stopJobs();
    const s = this.#mysql;
    if (s.registered) {
      await consulPut(this.c.consulAddr, `/v1/agent/service/deregister/${s.name}-${this.node.name}`).catch((
        e,
      ) => this.note(`warning: deregister ${s.name}: ${e instanceof Error ? e.message : e}`));
    }
    if (this.node.mysqld && !this.node.mysqld.exited) {
      const r = await this.hook("pre-stop", ["pre-stop"]);
      const said = lastLine(r.stdout) || logMessage(lastLine(r.stderr));
      say(`${this.node.name}: pre-stop exit ${r.code}${said ? `: ${said}` : ""}`);
    }
  }

  /** After pre-stop: SIGTERM to mysqld (by pid), SIGKILL if it has not stopped after 10 s. */
  async stopMysqld(): Promise<void> {
    this.#stopping = true;
    await this.c.stopMysqld(this.node);
  }

  close(): void {
    try {
      this.#log.close();
    } catch {
      // already closed
    }
  }
}

// ---------------------------------------------------------------------------------------------------------
// the cluster

function printStatus(r: CliResult): void {
  console.log(`[${hhmmss()}] --- autopilot status (exit ${r.code}) ---`);
  if (r.stdout.trim() !== "") console.log(r.stdout.trimEnd());
  if (r.stderr !== "") console.log(r.stderr);
  console.log("---");
}

/** Prints `autopilot status` (one run at a time) once the cluster has told it where to run it. */
class StatusPrinter {
  #run: (() => Promise<CliResult>) | undefined;
  #running: Promise<void> | undefined;

  /** From now on, status runs this way. */
  target(run: () => Promise<CliResult>): void {
    this.#run = run;
  }

  /** Runs and prints the status now (joins a run under way); nothing before the cluster is up. */
  print(): Promise<void> {
    const run = this.#run;
    if (!run) return Promise.resolve();
    this.#running ??= run().then(printStatus).finally(() => {
      this.#running = undefined;
    });
    return this.#running;
  }
}

/** The env file read and merged, and node 1's settings checked: what the cluster starts from. */
interface Prepared {
  /** The env file read; undefined when there was none. */
  readonly envFile: string | undefined;
  /** How many variables it set. */
  readonly count: number;
  readonly cluster: ClusterSettings;
}

/** Why the cluster cannot start: the lines to print (on stderr), exit 2. */
class SetupError extends Error {
  constructor(readonly lines: readonly string[]) {
    super(lines.join("\n"));
  }
}

/**
 * Reads the env file (--env-file, else `_env` in the repository root if it exists), merges it and checks
 * node 1's settings with autopilot's own loadConfig(). Starts nothing.
 *
 * @throws {SetupError} a missing --env-file, a line compose would read differently, or bad settings.
 */
async function prepare(opts: Options): Promise<Prepared> {
  const envFile = opts.envFile ?? (await isFile(`${REPO_ROOT}/_env`) ? `${REPO_ROOT}/_env` : undefined);
  let text: string | undefined;
  if (envFile !== undefined) {
    try {
      text = await Deno.readTextFile(envFile);
    } catch (e) {
      const why = e instanceof Deno.errors.NotFound
        ? "no such file"
        : e instanceof Deno.errors.IsADirectory
        ? "is a directory"
        : `cannot be read (${e instanceof Error ? e.message : e})`;
      throw new SetupError([`local_cluster: env file ${envFile}: ${why}`]);
    }
  }
  let file;
  try {
    file = text === undefined ? undefined : parseEnvFile(text);
  } catch (e) {
    if (!(e instanceof EnvFileError)) throw e;
    throw new SetupError([`local_cluster: env file ${envFile}: ${e.message}`]);
  }
  const cluster = clusterSettings({
    file,
    fileName: envFile,
    environment: (name) => Deno.env.get(name),
    logLevel: opts.logLevel,
    generate: () => randomSecret(12),
  });
  try {
    const env = validationEnv(cluster.settings);
    loadConfig((name) => env[name], { hostname: () => "n1" });
  } catch (e) {
    if (!(e instanceof ConfigError)) throw e;
    // exactly as `autopilot config` prints them (mod.ts)
    throw new SetupError(e.problems.map((p) => `autopilot: invalid configuration: ${p}`));
  }
  return { envFile, count: file?.size ?? 0, cluster };
}

async function isFile(path: string): Promise<boolean> {
  try {
    return (await Deno.stat(path)).isFile;
  } catch {
    return false;
  }
}

function printPrepared(p: Prepared): void {
  say(
    p.envFile === undefined
      ? `no env file (${REPO_ROOT}/_env does not exist): the local cluster's defaults (see --help)`
      : `env file ${p.envFile}: ${p.count} variable${p.count === 1 ? "" : "s"} read`,
  );
  for (const notice of p.cluster.notices) say(`notice: ${notice}`);
}

/** The environment `autopilot` gets on a node: what the hooks get (autopilot_cli.ts), and nothing else. */
function hookEnv(node: TestNode): Record<string, string> {
  return {
    PATH: Deno.env.get("PATH") ?? "/usr/sbin:/usr/bin:/sbin:/bin",
    DENO_DIR: Deno.env.get("DENO_DIR") ?? "",
    NO_COLOR: "1",
    ...node.env,
  };
}

/** The node's environment for `autopilot` by hand (sh syntax, mode 0600). */
function envFileOf(node: TestNode): string {
  return `${node.dir}/autopilot.env`;
}

/** The command line that runs `autopilot ARGS` on `node`: its namespace, its environment from its file. */
function autopilotCommand(node: TestNode, args: string): string {
  const run = `exec ${shellWord(Deno.execPath())} run ${autopilotRunFlags().map(shellWord).join(" ")} ${
    shellWord(`${REPO_ROOT}/mod.ts`)
  } ${args}`;
  return `ip netns exec ${node.ns} sh -c ${shellWord(`. ${shellWord(envFileOf(node))} && ${run}`)}`;
}

/** How to connect as the application user, and where its password comes from (shown only if generated). */
function connectLines(
  node: TestNode,
  port: number,
  cluster: ClusterSettings,
  envFile: string | undefined,
): string {
  const user = node.env.MYSQL_USER?.trim() ?? "";
  if (user === "") return "  (no application user: MYSQL_USER is empty)";
  const db = node.env.MYSQL_DATABASE?.trim() ?? "";
  const password = cluster.generated.includes("MYSQL_PASSWORD")
    ? `${node.env.MYSQL_PASSWORD}   (generated; shown once, here only, and kept in the nodes' 0600 env files)`
    : cluster.fromEnvironment.includes("MYSQL_PASSWORD")
    ? "the MYSQL_PASSWORD set in the environment"
    : `the MYSQL_PASSWORD in ${envFile}`;
  return [
    `  mariadb -h ${node.address}${port === 3306 ? "" : ` -P ${port}`} -u ${shellWord(user)} -p${
      db === "" ? "" : ` ${shellWord(db)}`
    }`,
    `  ${user} password: ${password}`,
  ].join("\n");
}

async function runCluster(
  opts: Options,
  prepared: Prepared,
  shutdown: AbortSignal,
  status: StatusPrinter,
): Promise<number> {
  const { settings } = prepared.cluster;
  if (opts.keep) Deno.env.set("AUTOPILOT_TEST_KEEP", "1"); // the harness then leaves the run dir in place
  const started = Date.now();
  const h = await Harness.create({ nodes: opts.nodes });
  const sups: NodeSupervisor[] = [];
  /** The node that holds the primary lock now (set once the cluster exists). */
  let currentPrimary: () => Promise<string | undefined> = () => Promise.resolve(undefined);
  let code = 0;
  try {
    say(`run dir ${h.dir}, namespaces ${h.net.prefix}_*, network 10.99.${h.net.subnet}.0/24`);
    const c = await Cluster.create(h);
    say(`consul: pid ${h.consul.pid}, http://${c.consulAddr} (UI http://127.0.0.1:${h.consul.port}/ui)`);
    // Every node gets the settings; the harness adds its wiring (names, addresses, paths, Consul).
    const nodes = Array.from({ length: opts.nodes }, (_, i) => c.node(i + 1, { ...settings }));
    const config: Config = loadConfig((name) => nodes[0].env[name], { hostname: () => nodes[0].name });
    const jobs: Jobs = { service: config.serviceName, port: config.mysql.port };
    currentPrimary = () => c.primaryName(config.keys.primary);
    let lastPrimary = "";
    const onPrimaryChange = (instances: string[]): void => {
      const names = instances.map((i) =>
        i.split(" ")[0].slice(`${jobs.service}-primary-`.length)
      ).join(", ") ||
        "none";
      if (names === lastPrimary) return;
      lastPrimary = names;
      say(`${jobs.service}-primary (passing): ${names}`);
    };
    for (const node of nodes) {
      sups.push(await NodeSupervisor.create(c, node, opts, jobs, onPrimaryChange));
      // `autopilot` by hand on this node: its environment, passwords included, in a 0600 file
      await Deno.writeTextFile(
        envFileOf(node),
        shellEnvFile(hookEnv(node), [
          `autopilot's environment on ${node.name} of the local cluster (passwords included: keep it 0600).`,
          `Use: ip netns exec ${node.ns} sh -c '. THIS_FILE && exec deno run ${
            autopilotRunFlags().join(" ")
          } mod.ts COMMAND'`,
        ]),
        { mode: 0o600 },
      );
    }

    // As `docker compose up` then `scale`: the first node bootstraps (primary, first snapshot), the others
    // then restore that snapshot.
    const [first, ...rest] = sups;
    await first.boot();
    first.start();
    await Promise.race([first.firstHealthy, sleep(opts.readyTimeoutS * 1000, shutdown)]);
    if (shutdown.aborted) return 0;
    if (!first.healthy) throw new Error(`n1 did not pass its health check: see ${first.logFile}`);
    await Promise.all(rest.map(async (s) => {
      await s.boot();
      s.start();
    }));

    // Healthy: every node passed its health check and `autopilot status` (on n1) exits 0.
    const statusOnFirst = () => c.run(first.node, ["status"]);
    const deadline = started + opts.readyTimeoutS * 1000;
    let last: CliResult | undefined;
    while (!shutdown.aborted) {
      if (sups.every((s) => s.healthy)) {
        last = await statusOnFirst();
        if (last.code === 0) break;
      }
      if (Date.now() > deadline) {
        if (last) printStatus(last);
        throw new Error(
          `the cluster is not healthy after ${opts.readyTimeoutS} s (${
            sups.filter((s) => !s.healthy).map((s) => s.node.name).join(", ") || "status"
          } failing): see the logs in ${h.dir}`,
        );
      }
      await sleep(2000, shutdown);
    }
    if (shutdown.aborted) return 0;

    status.target(statusOnFirst);
    const primary = await c.primaryName(config.keys.primary);
    const primaryNode = sups.find((s) => s.node.name === primary)?.node ?? first.node;
    const secs = Math.round((Date.now() - started) / 1000);
    console.log(`
cluster is healthy (${opts.nodes} node${
      opts.nodes === 1 ? "" : "s"
    }, up in ${secs} s, SERVICE_NAME ${jobs.service})
${
      sups.map((s) =>
        `  ${s.node.name}  ${s.node.address}:${jobs.port}  ${
          s.node.name === primary ? "primary" : "replica"
        }  netns ${s.node.ns}  mysqld pid ${s.node.mysqld?.pid}`
      ).join("\n")
    }
  consul    pid ${h.consul.pid}  http://${c.consulAddr}  (UI: http://127.0.0.1:${h.consul.port}/ui)

connect (from this host; the primary is writable, replicas are read-only):
${connectLines(primaryNode, jobs.port, prepared.cluster, prepared.envFile)}
  as root, over a node's socket: mariadb -S ${primaryNode.env.MYSQL_SOCKET} -u root
autopilot on a node, with that node's environment (passwords included) from its 0600 file:
  status:      ${autopilotCommand(primaryNode, "status")}
  switchover:  ${autopilotCommand(primaryNode, "switchover")}
  backup now:  ${autopilotCommand(primaryNode, "backup now")}
  (${primaryNode.name} is the primary now: switchover runs there; on node k use ${h.net.prefix}_n<k> and ${
      envFileOf(primaryNode).replace(`/node${primaryNode.k}/`, "/node<k>/")
    })
logs (removed at exit unless --keep):
${sups.map((s) => `  ${s.node.name}: ${s.logFile} (hooks), ${s.node.dir}/mysqld.log`).join("\n")}
  consul: ${h.consul.logFile}
stop: Ctrl-C, or kill -TERM ${Deno.pid}; status now: Enter, or kill -USR1 ${Deno.pid}${
      opts.durationS ? `\nstops by itself in ${opts.durationS} s (--duration)` : ""
    }
`);

    // Running: the status every --status-interval seconds, until the duration ends or a signal arrives.
    const end = opts.durationS ? Date.now() + opts.durationS * 1000 : Infinity;
    let nextStatus = opts.statusIntervalS > 0 ? Date.now() + opts.statusIntervalS * 1000 : Infinity;
    while (!shutdown.aborted && Date.now() < end) {
      await sleep(Math.max(0, Math.min(end, nextStatus, Date.now() + 60_000) - Date.now()), shutdown);
      if (shutdown.aborted || Date.now() >= end) break;
      if (Date.now() >= nextStatus) {
        await status.print();
        nextStatus = Date.now() + opts.statusIntervalS * 1000;
      }
    }
    say(shutdown.aborted ? "stopping (signal)" : `stopping (--duration ${opts.durationS} s elapsed)`);
  } catch (e) {
    console.error(`local_cluster: ${e instanceof Error ? e.message : e}`);
    code = 1;
  } finally {
    // The jobs stop first (no health pass races the stop), then every node as its container would stop:
    // pre-stop (which shuts mysqld down), then mysqld if it still runs. The replicas stop first, then the
    // primary, which then has nobody to hand over to and keeps the role for the next start. The harness then
    // stops Consul by pid and removes the namespaces and run dir.
    await Promise.allSettled(sups.map((s) => s.stopJobs()));
    const primaryNow = await currentPrimary().catch(() => undefined);
    const stopped: PromiseSettledResult<void>[] = [];
    for (
      const group of [
        sups.filter((s) => s.node.name !== primaryNow),
        sups.filter((s) => s.node.name === primaryNow),
      ]
    ) {
      stopped.push(
        ...await Promise.allSettled(group.map((s) => s.preStop())),
        ...await Promise.allSettled(group.map((s) => s.stopMysqld())),
      );
    }
    for (const r of stopped) {
      if (r.status === "rejected") {
        console.error(`local_cluster: stopping a node: ${r.reason}`);
        code = 1;
      }
    }
    for (const s of sups) {
      const n = s.counts;
      say(
        `${s.node.name}: health ${n.health} runs (${n.healthFailed} failed), snapshot ${n.snapshot} runs ` +
          `(${n.snapshotFailed} failed), on-change ${n.onChange} runs, mysqld restarts ${n.mysqldRestarts}`,
      );
      s.close();
    }
    const pids = h.pids();
    const namespaces = h.namespaces();
    try {
      await h.dispose();
      say(
        `stopped: pids ${pids.join(" ")}; removed namespaces ${namespaces.join(" ")}` +
          (opts.keep ? `; kept ${h.dir}` : `; removed ${h.dir}`),
      );
    } catch (e) {
      console.error(`local_cluster: cleanup: ${e instanceof Error ? e.message : e}`);
      code = 1;
    }
  }
  return code;
}

// ---------------------------------------------------------------------------------------------------------
// entry points: the launcher (on the terminal) and the cluster process (in its own session)

const CHILD_ENV = "AUTOPILOT_LOCAL_CLUSTER_CHILD";

/** The cluster process: runs the cluster until the launcher (or a signal) says stop, or it dies. */
async function clusterMain(opts: Options, prepared: Prepared): Promise<number> {
  const shutdown = new AbortController();
  const onStop = (): void => {
    if (!shutdown.signal.aborted) shutdown.abort();
  };
  const signals: Deno.Signal[] = ["SIGTERM", "SIGINT", "SIGHUP"];
  for (const s of signals) Deno.addSignalListener(s, onStop);
  // The launcher died (kill -9): stop too, rather than run on unattended.
  const parent = Deno.ppid;
  const watchParent = setInterval(() => {
    if (Deno.ppid !== parent) onStop();
  }, 1000);
  const status = new StatusPrinter();
  const onUsr1 = (): void => void status.print();
  Deno.addSignalListener("SIGUSR1", onUsr1);
  try {
    return await runCluster(opts, prepared, shutdown.signal, status);
  } finally {
    clearInterval(watchParent);
    for (const s of signals) Deno.removeSignalListener(s, onStop);
    Deno.removeSignalListener("SIGUSR1", onUsr1);
  }
}

/**
 * The launcher: starts the cluster process in its own session (so a terminal Ctrl-C reaches only this
 * process), turns SIGINT/SIGTERM/SIGHUP into one SIGTERM for it, Enter into SIGUSR1, and exits with its code.
 */
async function launcher(args: readonly string[]): Promise<number> {
  const setsid = await systemTool("setsid", "util-linux");
  const child = new Deno.Command(setsid, {
    args: ["--wait", Deno.execPath(), "run", "-A", new URL(import.meta.url).pathname, ...args],
    env: { [CHILD_ENV]: "1" },
    stdin: "null",
    stdout: "inherit",
    stderr: "inherit",
  }).spawn();
  let forwarded = false;
  const forward = (): void => {
    if (forwarded) {
      console.error("local_cluster: already stopping; wait for the cleanup to finish");
      return;
    }
    forwarded = true;
    try {
      child.kill("SIGTERM");
    } catch {
      // already gone
    }
  };
  const signals: Deno.Signal[] = ["SIGINT", "SIGTERM", "SIGHUP"];
  for (const s of signals) Deno.addSignalListener(s, forward);
  if (Deno.stdin.isTerminal()) {
    void (async () => {
      const buf = new Uint8Array(256);
      while (true) {
        const n = await Deno.stdin.read(buf).catch(() => null);
        if (n === null) return;
        if (buf.subarray(0, n).includes(10)) {
          try {
            child.kill("SIGUSR1");
          } catch {
            return;
          }
        }
      }
    })();
  }
  const status = await child.status;
  for (const s of signals) Deno.removeSignalListener(s, forward);
  return status.code;
}

if (import.meta.main) {
  let opts: Options | "help";
  try {
    opts = parseArgs(Deno.args);
  } catch (e) {
    if (!(e instanceof UsageError)) throw e;
    console.error(`local_cluster: ${e.message}`);
    Deno.exit(2);
  }
  if (opts === "help") {
    console.log(USAGE);
    Deno.exit(0);
  }
  // The env file is read and checked before anything starts (and again by the cluster process, which
  // starts from its own reading; only the launcher says what it read).
  let prepared: Prepared;
  try {
    prepared = await prepare(opts);
  } catch (e) {
    if (!(e instanceof SetupError)) throw e;
    for (const line of e.lines) console.error(line);
    Deno.exit(2);
  }
  const child = Deno.env.get(CHILD_ENV) === "1";
  if (!child) printPrepared(prepared);
  if (Deno.uid() !== 0) {
    console.error("local_cluster: must run as root (it creates network namespaces): run it with sudo");
    Deno.exit(2);
  }
  if (child) Deno.exit(await clusterMain(opts, prepared));
  Deno.exit(await launcher(Deno.args));
}
