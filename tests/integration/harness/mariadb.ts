/**
 * Real MariaDB servers for integration tests.
 *
 * A pristine template datadir is made once (mariadb-install-db with an init SQL file that creates the
 * `admin`@'%' and `repl`@'%' users with random passwords, then one start and clean stop), cached under
 * `$AUTOPILOT_TEST_STATE/templates/` keyed by the mariadbd version. Nodes are `cp -a` copies of it: the users
 * exist on every node without any binlog event, so no node has errant GTIDs.
 *
 * `root` has unix_socket authentication only (socket auth is the template's root method), so tests running as
 * root reach any node over its unix socket without a password, even when its network link is cut.
 *
 * @module
 */

import {
  isAlive,
  kill9 as killPid,
  logTail,
  ProcessGroup,
  processRunDir,
  randomId,
  randomSecret,
  run,
  runOk,
  ServerProcess,
  SpawnOptions,
  spawnServer,
  stateDir,
  stop as stopPid,
  StopWaiting,
  waitFor,
} from "./proc.ts";
import { systemTool } from "./tools.ts";

/** A MariaDB account. */
export interface MariadbCredentials {
  user: string;
  password: string;
}

/** The cached template datadir. */
export interface MariadbTemplate {
  /** Template dir (contains `data/`, `credentials.json`). */
  dir: string;
  dataDir: string;
  /** mariadbd version, e.g. `10.11.19-MariaDB-0+deb12u1`. */
  version: string;
  /** `admin`@'%': ALL PRIVILEGES WITH GRANT OPTION. */
  admin: MariadbCredentials;
  /** `repl`@'%': REPLICATION SLAVE, REPLICATION SLAVE ADMIN, BINLOG MONITOR. */
  repl: MariadbCredentials;
}

/** Bump when the template's contents change, so old caches are not reused. */
const TEMPLATE_FORMAT = "t1";

const INNODB_CNF = [
  "innodb_buffer_pool_size=64M",
  "innodb_log_file_size=32M",
  "innodb_flush_log_at_trx_commit=2",
  "sync_binlog=0",
  "performance_schema=OFF",
];

interface Binaries {
  mariadbd: string;
  installDb: string;
  client: string;
  admin: string;
}

async function binaries(): Promise<Binaries> {
  return {
    mariadbd: await systemTool("mariadbd", "mariadb-server"),
    installDb: await systemTool("mariadb-install-db", "mariadb-server"),
    client: await systemTool("mariadb", "mariadb-client"),
    admin: await systemTool("mariadb-admin", "mariadb-client"),
  };
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.lstat(path);
    return true;
  } catch {
    return false;
  }
}

async function tail(path: string, lines = 15): Promise<string> {
  return (await logTail(path, lines)) || `(no ${path})`;
}

/** Writes a file readable by its owner only (0600), for passwords. */
export async function writeSecretFile(path: string, text: string): Promise<void> {
  await Deno.writeTextFile(path, text, { mode: 0o600 });
  await Deno.chmod(path, 0o600); // mode is ignored when the file already existed
}

async function pingSocket(bin: Binaries, socket: string): Promise<boolean> {
  const r = await run(bin.admin, ["--no-defaults", "-S", socket, "-uroot", "--connect-timeout=2", "ping"], {
    timeoutMs: 5000,
  });
  return r.success;
}

async function waitReady(
  bin: Binaries,
  proc: ServerProcess,
  socket: string,
  errorLog: string,
): Promise<void> {
  try {
    await waitFor(`${proc.name} (pid ${proc.pid}) to answer ping on ${socket}`, async () => {
      if (proc.exited) throw new StopWaiting(`${proc.name} (pid ${proc.pid}) exited during startup`);
      return await pingSocket(bin, socket);
    }, { timeoutMs: 30_000, intervalMs: 50 });
  } catch (e) {
    const msg = e instanceof Error ? e.message : String(e);
    throw new Error(
      `${msg}\n--- ${errorLog} ---\n${await tail(errorLog)}\n--- ${proc.logFile} ---\n${await tail(
        proc.logFile,
        5,
      )}`,
    );
  }
}

let templatePromise: Promise<MariadbTemplate> | undefined;

/**
 * The template datadir, made once per test process and cached on disk under the state dir, keyed by the
 * mariadbd version. Concurrent builders are safe: each builds in its own dir and renames it into place.
 */
export function mariadbTemplate(): Promise<MariadbTemplate> {
  templatePromise ??= loadOrBuildTemplate();
  templatePromise.catch(() => templatePromise = undefined);
  return templatePromise;
}

async function loadOrBuildTemplate(): Promise<MariadbTemplate> {
  const bin = await binaries();
  const out = await runOk(bin.mariadbd, ["--version"]);
  const version = out.match(/Ver\s+(\S+)/)?.[1];
  if (!version) throw new Error(`cannot parse mariadbd --version output: ${out.trim()}`);
  const root = `${stateDir()}/templates`;
  const dir = `${root}/mariadb-${version.replace(/[^A-Za-z0-9.+_-]/g, "_")}-${TEMPLATE_FORMAT}`;
  if (!(await exists(`${dir}/ready`))) {
    await Deno.mkdir(root, { recursive: true, mode: 0o700 });
    const build = `${dir}.build-${randomId(6)}`;
    try {
      await buildTemplate(bin, build);
      try {
        await Deno.rename(build, dir);
      } catch (e) {
        // another process won the race; use its template
        if (!(await exists(`${dir}/ready`))) throw e;
      }
    } finally {
      await Deno.remove(build, { recursive: true }).catch(() => {});
    }
  }
  const creds = JSON.parse(await Deno.readTextFile(`${dir}/credentials.json`)) as {
    admin: MariadbCredentials;
    repl: MariadbCredentials;
  };
  return { dir, dataDir: `${dir}/data`, version, admin: creds.admin, repl: creds.repl };
}

async function buildTemplate(bin: Binaries, dir: string): Promise<void> {
  await Deno.mkdir(`${dir}/data`, { recursive: true, mode: 0o700 });
  await Deno.mkdir(`${dir}/tmp`, { recursive: true });
  const admin: MariadbCredentials = { user: "admin", password: randomSecret() };
  const repl: MariadbCredentials = { user: "repl", password: randomSecret() };
  const socket = `${dir}/mysqld.sock`;
  const cnf = `${dir}/my.cnf`;
  const errorLog = `${dir}/error.log`;
  await Deno.writeTextFile(
    cnf,
    [
      "[mariadbd]",
      "user=root",
      `datadir=${dir}/data`,
      `tmpdir=${dir}/tmp`,
      `socket=${socket}`,
      `pid-file=${dir}/mysqld.pid`,
      `log_error=${errorLog}`,
      "skip-networking",
      "skip-name-resolve",
      ...INNODB_CNF,
      "",
    ].join("\n"),
  );
  // FLUSH PRIVILEGES first: --extra-file runs under --skip-grant-tables, where CREATE USER fails with 1290.
  const initSql = `${dir}/init.sql`;
  await writeSecretFile(
    initSql,
    [
      "FLUSH PRIVILEGES;",
      `CREATE USER 'admin'@'%' IDENTIFIED BY '${admin.password}';`,
      "GRANT ALL PRIVILEGES ON *.* TO 'admin'@'%' WITH GRANT OPTION;",
      `CREATE USER 'repl'@'%' IDENTIFIED BY '${repl.password}';`,
      "GRANT REPLICATION SLAVE, REPLICATION SLAVE ADMIN, BINLOG MONITOR ON *.* TO 'repl'@'%';",
      "",
    ].join("\n"),
  );
  const r = await run(bin.installDb, [
    `--defaults-file=${cnf}`,
    "--auth-root-authentication-method=socket",
    "--skip-test-db",
    `--extra-file=${initSql}`,
  ], { timeoutMs: 120_000 });
  await Deno.remove(initSql);
  await Deno.writeTextFile(`${dir}/install.log`, r.stdout + r.stderr);
  if (!r.success || /Installation of system tables failed/.test(r.stdout + r.stderr)) {
    throw new Error(
      `mariadb-install-db failed (exit ${r.code}); see ${dir}/install.log:\n${
        (r.stdout + r.stderr).trim().split("\n").slice(-10).join("\n")
      }`,
    );
  }
  // One start and clean stop, so copies start like an ordinary restart.
  const proc = await spawnServer({
    name: "mariadbd template",
    program: bin.mariadbd,
    args: [`--defaults-file=${cnf}`],
    logFile: `${dir}/stdout.log`,
  });
  try {
    await waitReady(bin, proc, socket, errorLog);
  } finally {
    await stopPid(proc.pid, { timeoutMs: 30_000 });
  }
  const st = await proc.status;
  if (!st.success) throw new Error(`template mariadbd exited with ${st.code} on stop; see ${errorLog}`);
  for await (const e of Deno.readDir(`${dir}/data`)) {
    if (e.name.startsWith("mysql-bin.") || e.name.startsWith("relay-bin.")) {
      await Deno.remove(`${dir}/data/${e.name}`);
    }
  }
  await writeSecretFile(`${dir}/credentials.json`, JSON.stringify({ admin, repl }, null, 2) + "\n");
  await Deno.writeTextFile(`${dir}/ready`, new Date().toISOString() + "\n");
}

/** Options for {@linkcode startNode}. */
export interface StartNodeOptions {
  /** Node name, e.g. "n1" (also used in messages). */
  name: string;
  /** Node dir; default `<this process's run dir>/<name>`. Must not contain a datadir yet. */
  dir?: string;
  /** Run mariadbd inside this network namespace. */
  netns?: string;
  /** bind-address (e.g. the node's 10.99.X.1k address, or 127.0.0.1). */
  address: string;
  port: number;
  serverId: number;
  /** `read_only` in the cnf; default false. */
  readOnly?: boolean;
  /** Extra lines (or key=value pairs) appended to the `[mariadbd]` section. */
  extraCnf?: string | Record<string, string | number | boolean>;
  /** Extra mariadbd command-line arguments for the first start (never secrets). */
  extraArgs?: string[];
  /** Process group to start mariadbd in (a Harness passes its own). */
  group?: ProcessGroup;
}

/** Options for {@linkcode MariadbNode.sqlTcp}. */
export interface TcpSqlOptions {
  /** `--connect-timeout` in seconds; default 2. */
  connectTimeoutS?: number;
  /** Account; default admin. */
  credentials?: MariadbCredentials;
  /** Host to connect to; default the node's address. */
  host?: string;
}

/** A running (or stopped) MariaDB server made by {@linkcode startNode}. */
export interface MariadbNode {
  readonly name: string;
  readonly address: string;
  readonly port: number;
  readonly serverId: number;
  readonly netns?: string;
  /** Node dir containing data/, tmp/, my.cnf, mysqld.sock, error.log. */
  readonly dir: string;
  readonly dataDir: string;
  /** Absolute path of the unix socket. */
  readonly socket: string;
  /** The cnf mariadbd is started with (`--defaults-file`). */
  readonly cnf: string;
  readonly errorLog: string;
  /** `admin`@'%' (ALL WITH GRANT OPTION). */
  readonly admin: MariadbCredentials;
  /** `repl`@'%' (replication). */
  readonly repl: MariadbCredentials;
  /** A 0600 client option file with the admin user and password (for `mariadb --defaults-file=`). */
  readonly adminDefaultsFile: string;
  /** Pid of the current (or last) mariadbd process. */
  readonly pid: number;
  /** Every pid this node has had. */
  readonly pids: readonly number[];
  /** True while mariadbd is running. */
  readonly running: boolean;
  /** Starts mariadbd again on the same datadir and waits for ping. */
  start(opts?: { extraArgs?: string[] }): Promise<void>;
  /** SIGTERM by pid (SIGKILL after 30 s); waits until gone. */
  stop(): Promise<void>;
  /** SIGKILL by pid; waits until gone. */
  kill9(): Promise<void>;
  /** Runs SQL as root over the unix socket (via stdin, never argv); rows as string[][] (NULL is "NULL"). */
  sql(query: string): Promise<string[][]>;
  /** Runs SQL over TCP (admin by default, password from a 0600 option file); for reachability checks. */
  sqlTcp(query: string, opts?: TcpSqlOptions): Promise<string[][]>;
}

function cnfValue(v: string | number | boolean): string {
  return typeof v === "boolean" ? (v ? "ON" : "OFF") : String(v);
}

function parseRows(stdout: string): string[][] {
  if (stdout === "") return [];
  const unescape = (s: string) =>
    s.replace(
      /\\(.)/g,
      (_, c: string) => ({ t: "\t", n: "\n", "0": "\0", "\\": "\\" } as Record<string, string>)[c] ?? c,
    );
  return stdout.replace(/\n$/, "").split("\n").map((line) => line.split("\t").map(unescape));
}

/**
 * Makes a node from the template (copy, fresh cnf), starts mariadbd (in the netns if given) and waits until
 * `mariadb-admin ping` answers over the unix socket.
 */
export async function startNode(opts: StartNodeOptions): Promise<MariadbNode> {
  const bin = await binaries();
  const tmpl = await mariadbTemplate();
  const dir = opts.dir ?? `${await processRunDir()}/${opts.name}`;
  const dataDir = `${dir}/data`;
  const socket = `${dir}/mysqld.sock`;
  if (socket.length > 107) throw new Error(`socket path too long for a unix socket: ${socket}`);
  if (await exists(dataDir)) throw new Error(`startNode ${opts.name}: ${dataDir} already exists`);
  await Deno.mkdir(`${dir}/tmp`, { recursive: true, mode: 0o700 });
  await runOk("cp", ["-a", tmpl.dataDir, dataDir]);
  for await (const e of Deno.readDir(dataDir)) {
    if (e.name.startsWith("mysql-bin.")) await Deno.remove(`${dataDir}/${e.name}`);
  }
  const cnf = `${dir}/my.cnf`;
  const errorLog = `${dir}/error.log`;
  const extra = opts.extraCnf === undefined
    ? []
    : typeof opts.extraCnf === "string"
    ? [opts.extraCnf.trimEnd()]
    : Object.entries(opts.extraCnf).map(([k, v]) => `${k}=${cnfValue(v)}`);
  await Deno.writeTextFile(
    cnf,
    [
      "[client-server]",
      `socket=${socket}`,
      `port=${opts.port}`,
      "",
      "[mariadbd]",
      "user=root",
      `datadir=${dataDir}`,
      `tmpdir=${dir}/tmp`,
      `socket=${socket}`,
      `pid-file=${dir}/mysqld.pid`,
      `port=${opts.port}`,
      `bind-address=${opts.address}`,
      `log_error=${errorLog}`,
      `server_id=${opts.serverId}`,
      "log_bin=mysql-bin",
      "relay_log=relay-bin",
      "binlog_format=ROW",
      "gtid_strict_mode=ON",
      "log_slave_updates=ON",
      "gtid_domain_id=0",
      "skip-name-resolve",
      ...INNODB_CNF,
      `read_only=${opts.readOnly ? "ON" : "OFF"}`,
      ...extra,
      "",
    ].join("\n"),
  );
  const adminDefaultsFile = `${dir}/admin-client.cnf`;
  await writeSecretFile(
    adminDefaultsFile,
    `[client]\nuser=${tmpl.admin.user}\npassword=${tmpl.admin.password}\n`,
  );

  let proc: ServerProcess | undefined;
  const pids: number[] = [];
  const spawn = (o: SpawnOptions) => opts.group ? opts.group.spawn(o) : spawnServer(o);
  const running = () => proc !== undefined && !proc.exited;

  const start = async (startOpts: { extraArgs?: string[] } = {}): Promise<void> => {
    if (running()) throw new Error(`${opts.name}: mariadbd is already running (pid ${proc?.pid})`);
    proc = await spawn({
      name: `mariadbd ${opts.name}`,
      program: bin.mariadbd,
      args: [`--defaults-file=${cnf}`, ...(startOpts.extraArgs ?? [])],
      logFile: `${dir}/stdout.log`,
      netns: opts.netns,
    });
    pids.push(proc.pid);
    try {
      await waitReady(bin, proc, socket, errorLog);
    } catch (e) {
      await stopPid(proc.pid, { timeoutMs: 5000 });
      throw e;
    }
  };

  const mysqlRows = async (args: string[], query: string, what: string): Promise<string[][]> => {
    const r = await run(bin.client, [...args, "-N", "-B"], { stdin: query, timeoutMs: 60_000 });
    if (!r.success) {
      throw new Error(
        `${opts.name}: SQL over ${what} failed: ${r.stderr.trim()}\n  query: ${query.slice(0, 300)}`,
      );
    }
    return parseRows(r.stdout);
  };

  const node: MariadbNode = {
    name: opts.name,
    address: opts.address,
    port: opts.port,
    serverId: opts.serverId,
    netns: opts.netns,
    dir,
    dataDir,
    socket,
    cnf,
    errorLog,
    admin: tmpl.admin,
    repl: tmpl.repl,
    adminDefaultsFile,
    get pid() {
      return proc?.pid ?? 0;
    },
    get pids() {
      return [...pids];
    },
    get running() {
      return running() && isAlive(proc!.pid);
    },
    start,
    stop: async () => {
      if (proc) await stopPid(proc.pid, { timeoutMs: 30_000 });
    },
    kill9: async () => {
      if (proc) await killPid(proc.pid);
    },
    sql: (query: string) => mysqlRows(["--no-defaults", "-S", socket, "-uroot"], query, "the unix socket"),
    sqlTcp: (query: string, o: TcpSqlOptions = {}) => {
      const creds = o.credentials;
      const defaults = creds ? `${dir}/client-${creds.user}.cnf` : adminDefaultsFile;
      const prepare = creds
        ? writeSecretFile(defaults, `[client]\nuser=${creds.user}\npassword=${creds.password}\n`)
        : Promise.resolve();
      return prepare.then(() =>
        mysqlRows(
          [
            `--defaults-file=${defaults}`,
            "--protocol=TCP",
            `-h${o.host ?? opts.address}`,
            `-P${opts.port}`,
            `--connect-timeout=${o.connectTimeoutS ?? 2}`,
          ],
          query,
          `TCP ${o.host ?? opts.address}:${opts.port}`,
        )
      );
    },
  };
  await start({ extraArgs: opts.extraArgs });
  return node;
}
