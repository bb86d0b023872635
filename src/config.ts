/**
 * The environment, read once into one typed, validated, frozen {@link Config}.
 *
 * Every variable is declared once in {@link VARIABLES}: its name, what it means, its default and how to parse
 * it. The same table drives validation, `autopilot config` and the README's configuration table, so they cannot
 * drift apart. Values are taken literally: a `#` is part of the value, never a comment.
 *
 * @module
 */

/** A secret value. It prints as `<redacted>` everywhere; only {@link Secret.reveal} gives the text. */
export class Secret {
  readonly #value: string;
  constructor(value: string) {
    this.#value = value;
    Object.freeze(this);
  }
  /** The secret text. Call it only where the value is handed to a server, never near a log. */
  reveal(): string {
    return this.#value;
  }
  toString(): string {
    return "<redacted>";
  }
  toJSON(): string {
    return "<redacted>";
  }
  [Symbol.for("Deno.customInspect")](): string {
    return "<redacted>";
  }
}

/** Thrown for a missing or malformed variable. The message is one line naming the variable. */
export class ConfigError extends Error {
  /** The variables that are wrong, one message each. */
  readonly problems: readonly string[];
  constructor(problems: readonly string[]) {
    super(problems.join("\n"));
    this.name = "ConfigError";
    this.problems = Object.freeze([...problems]);
  }
}

/** Log levels, in the names logtape uses. */
export type LogLevel = "debug" | "info" | "warning" | "error" | "fatal";
/** Where snapshots are stored. */
export type SnapshotBackend = "local" | "s3" | "manta";
/** The server family; `auto` asks the server (or the installed binary before it runs). */
export type FlavourSetting = "auto" | "mysql" | "mariadb";

/** The Consul agent this node talks to. */
export interface ConsulConfig {
  readonly scheme: "http" | "https";
  readonly host: string;
  readonly port: number;
  /** `scheme://host:port`, no trailing slash. */
  readonly url: string;
  readonly token?: Secret;
  /** Upper bound for one HTTP request to Consul. */
  readonly timeoutMs: number;
}

/** This node's identity. */
export interface NodeConfig {
  /** Stable name of this node (hostname by default); the server id is derived from it. */
  readonly name: string;
  /** Address peers use to reach this node's mysqld; unset means "ask ContainerPilot or the interfaces". */
  readonly address?: string;
  /** Failover priority: higher wins a tie on transactions received; 0 means never promote this node. */
  readonly priority: number;
  /** Directory for autopilot's own state (session id, generated root password). */
  readonly stateDir: string;
}

/** The local MySQL-family server and the accounts autopilot manages on it. */
export interface MysqlConfig {
  readonly flavour: FlavourSetting;
  readonly datadir: string;
  readonly cnfPath: string;
  readonly socket: string;
  readonly port: number;
  /** OS user mysqld runs as (the `user` option of my.cnf) and that owns the datadir. */
  readonly osUser: string;
  /** mysqld's temporary directory. */
  readonly tmpdir: string;
  readonly user?: string;
  readonly password?: Secret;
  readonly database?: string;
  readonly replUser: string;
  readonly replPassword: Secret;
  readonly rootPassword?: Secret;
  readonly randomRootPassword: boolean;
  readonly onetimePassword: boolean;
  /**
   * innodb_buffer_pool_size in bytes; unset means 70% of the memory available to the container after a
   * 384 MiB reserve, at least 128 MiB (`bufferPoolBytes()` in src/mysql/mycnf.ts).
   */
  readonly bufferPoolSize?: number;
  readonly connectTimeoutMs: number;
  /** A replica lagging more than this is unhealthy. */
  readonly maxLagSeconds: number;
  readonly semiSync: boolean;
}

/** Consul keys; every default is prefixed with SERVICE_NAME. */
export interface KeysConfig {
  readonly primary: string;
  readonly backupLock: string;
  readonly lastBackup: string;
  readonly lastBinlog: string;
  /** Where the last scheduled verification of a snapshot is recorded (BACKUP_VERIFY). */
  readonly lastVerified: string;
  readonly failoverLock: string;
  readonly failoverPause: string;
}

/** The Consul session that holds this node's locks. */
export interface SessionConfig {
  readonly name: string;
  readonly ttlSeconds: number;
}

/** Automatic failover behaviour. */
export interface FailoverConfig {
  /** After a failover, no automatic failover again within this period unless the new primary is gone. */
  readonly quietPeriodMs: number;
  /** Opt-in: move an errant node's datadir aside (never delete it) and rebuild it from the latest snapshot. */
  readonly rebuildErrant: boolean;
}

/** Periodic snapshots. */
export interface BackupConfig {
  /** Object name, with strftime directives. */
  readonly name: string;
  readonly ttlSeconds: number;
  readonly from: "primary" | "replica";
  readonly retainCount: number;
  readonly retainAgeMs?: number;
  readonly onStop: boolean;
  /** A healthy replica restores each new snapshot once, into a scratch directory, and checks it. */
  readonly verify: boolean;
}

/** S3-compatible store settings. */
export interface S3Config {
  readonly endpoint?: string;
  readonly region: string;
  readonly bucket: string;
  readonly prefix: string;
  readonly forcePathStyle: boolean;
  readonly accessKeyId?: Secret;
  readonly secretAccessKey?: Secret;
}

/** Manta store settings. */
export interface MantaConfig {
  readonly url: string;
  readonly user: string;
  readonly subuser?: string;
  readonly role?: string;
  readonly keyId: string;
  readonly privateKey: Secret;
  readonly bucket: string;
  readonly tlsInsecure: boolean;
}

/** Where snapshots go. Only the selected backend's settings are present. */
export interface StorageConfig {
  readonly backend: SnapshotBackend;
  readonly localDir: string;
  readonly s3?: S3Config;
  readonly manta?: MantaConfig;
}

/** The whole configuration: typed, validated and frozen. */
export interface Config {
  readonly serviceName: string;
  readonly consul: ConsulConfig;
  readonly log: { readonly level: LogLevel; readonly format: "text" | "json" };
  readonly node: NodeConfig;
  readonly mysql: MysqlConfig;
  readonly keys: KeysConfig;
  readonly session: SessionConfig;
  readonly failover: FailoverConfig;
  readonly backup: BackupConfig;
  readonly storage: StorageConfig;
}

/** One environment variable: its documentation and whether it is secret. */
export interface VariableSpec {
  readonly name: string;
  readonly group: string;
  /** The default as the README shows it; `required` or `-` (unset) where there is none. */
  readonly default: string;
  readonly secret?: boolean;
  readonly doc: string;
}

/** Every variable autopilot reads, in README order. */
export const VARIABLES: readonly VariableSpec[] = Object.freeze([
  // Cluster and Consul
  v("SERVICE_NAME", "Cluster", "mysql", "Service name in Consul; prefixes every key and service default."),
  v("CONSUL", "Cluster", "consul", "Consul agent: `host`, `host:port` or `http(s)://host:port` (port 8500)."),
  v(
    "CONSUL_AGENT",
    "Cluster",
    "false",
    "`true`: talk to an agent on localhost, ignoring the host in CONSUL.",
  ),
  v("CONSUL_HTTP_TOKEN", "Cluster", "-", "ACL token for Consul (ContainerPilot reads it too).", true),
  v("CONSUL_TIMEOUT", "Cluster", "2s", "Upper bound for one request to Consul."),
  v("LOG_LEVEL", "Cluster", "INFO", "DEBUG, INFO, WARN, ERROR or CRITICAL (Python names are accepted)."),
  v("LOG_FORMAT", "Cluster", "text", "`text` or `json` (one JSON object a line)."),
  // Node
  v("NODE_NAME", "Node", "hostname", "This node's stable name in Consul and in logs."),
  v("NODE_ADDRESS", "Node", "-", "Address peers reach this node on (default: ContainerPilot's, else eth0)."),
  v(
    "FAILOVER_PRIORITY",
    "Node",
    "1",
    "Tie-break among equally advanced candidates, higher wins; 0: never promote.",
  ),
  v(
    "STATE_DIR",
    "Node",
    "/var/lib/autopilot",
    "autopilot's own files: session id, generated root password (0600).",
  ),
  // MySQL
  v("MYSQL_FLAVOUR", "MySQL", "auto", "`auto`, `mysql` (MySQL/Percona 8.4) or `mariadb` (10.11+)."),
  v(
    "MYSQL_DATADIR",
    "MySQL",
    "/var/lib/mysql/data",
    "Data directory (absolute path). Below the volume's root, so a restore or a rebuild renames it in one step.",
  ),
  v("MYSQL_CNF", "MySQL", "/var/lib/autopilot/my.cnf", "Where the rendered server configuration is written."),
  v(
    "MYSQL_SOCKET",
    "MySQL",
    "/var/run/mysqld/mysqld.sock",
    "Unix socket autopilot uses for the local server.",
  ),
  v("MYSQL_PORT", "MySQL", "3306", "TCP port of every node's server."),
  v("MYSQL_OS_USER", "MySQL", "mysql", "OS user mysqld runs as and that owns the datadir."),
  v("MYSQL_TMPDIR", "MySQL", "/tmp", "mysqld's temporary directory (absolute path)."),
  v("MYSQL_USER", "MySQL", "-", "Application user to create (needs MYSQL_PASSWORD)."),
  v("MYSQL_PASSWORD", "MySQL", "-", "Application user's password.", true),
  v("MYSQL_DATABASE", "MySQL", "-", "Database to create; MYSQL_USER gets all privileges on it."),
  v("MYSQL_REPL_USER", "MySQL", "repl", "Replication user."),
  v("MYSQL_REPL_PASSWORD", "MySQL", "required", "Replication user's password.", true),
  v("MYSQL_ROOT_PASSWORD", "MySQL", "-", "Root password; unset means a random one (see next).", true),
  v(
    "MYSQL_RANDOM_ROOT_PASSWORD",
    "MySQL",
    "true if no root password",
    "Generate a random root password, written to STATE_DIR/root-password (0600), never to the log.",
  ),
  v(
    "MYSQL_ONETIME_PASSWORD",
    "MySQL",
    "false",
    "Expire the root password so it must be changed at first login.",
  ),
  v(
    "INNODB_BUFFER_POOL_SIZE",
    "MySQL",
    "70% of (memory - 384M)",
    "innodb_buffer_pool_size: megabytes, or K, M or G; default from the container's memory limit, at least 128M.",
  ),
  v("MYSQL_CONNECT_TIMEOUT", "MySQL", "2s", "Connect timeout to peers (a cut link never answers)."),
  v("MAX_REPLICATION_LAG", "MySQL", "30s", "A replica lagging more than this reports unhealthy."),
  v("SEMI_SYNC", "MySQL", "false", "Semi-synchronous replication (AFTER_SYNC); no silent fallback to async."),
  // Keys and sessions
  v("PRIMARY_KEY", "Consul keys", "SERVICE_NAME-primary", "Lock key held by the primary's session."),
  v("BACKUP_LOCK_KEY", "Consul keys", "SERVICE_NAME-backup-running", "Lock key held while a backup runs."),
  v("LAST_BACKUP_KEY", "Consul keys", "SERVICE_NAME-last-backup", "Names the latest complete snapshot."),
  v(
    "LAST_BINLOG_KEY",
    "Consul keys",
    "SERVICE_NAME-last-binlog",
    "Binlog file current at the last snapshot.",
  ),
  v(
    "LAST_VERIFIED_KEY",
    "Consul keys",
    "SERVICE_NAME-last-verified",
    "The last snapshot a replica verified (BACKUP_VERIFY), and the outcome.",
  ),
  v(
    "FAILOVER_LOCK_KEY",
    "Consul keys",
    "SERVICE_NAME-failover-lock",
    "Lock key held by the node running a failover or switchover; it keeps the record of the last one.",
  ),
  v(
    "FAILOVER_PAUSE_KEY",
    "Consul keys",
    "SERVICE_NAME-failover-paused",
    "If this key exists, no automatic failover.",
  ),
  v("SESSION_NAME", "Consul keys", "SERVICE_NAME-primary-lock", "Name of this node's Consul session."),
  v(
    "SESSION_TTL",
    "Consul keys",
    "20s",
    "Session TTL (10s to 24h). Consul may take up to twice this to expire a session.",
  ),
  // Failover
  v(
    "FAILOVER_QUIET_PERIOD",
    "Failover",
    "5m",
    "After a failover, none again within this period while the failed primary is still alive.",
  ),
  v(
    "REBUILD_ERRANT_NODE",
    "Failover",
    "false",
    "An errant node (transactions the primary lacks) moves its datadir aside to `MYSQL_DATADIR.errant-TIME` " +
      "(never deleted) and rebuilds from the latest snapshot. Needs MYSQL_DATADIR below the volume's root.",
  ),
  // Backups
  v(
    "BACKUP_NAME",
    "Backups",
    "SERVICE_NAME-backup-%Y-%m-%dT%H-%M-%SZ",
    "Snapshot name; strftime directives, UTC.",
  ),
  v("BACKUP_TTL", "Backups", "86400", "Time between snapshots: seconds, or a duration like 24h."),
  v("BACKUP_FROM", "Backups", "primary", "`primary`, or `replica` to spare the primary."),
  v(
    "BACKUP_RETAIN_COUNT",
    "Backups",
    "7",
    "Keep at least the newest N snapshots (the last one is never deleted).",
  ),
  v("BACKUP_RETAIN_AGE", "Backups", "-", "Also keep every snapshot newer than this duration."),
  v("BACKUP_ON_STOP", "Backups", "false", "Take a last snapshot when the primary is stopped cleanly."),
  v(
    "BACKUP_VERIFY",
    "Backups",
    "false",
    "A healthy replica restores each new snapshot in MYSQL_TMPDIR and checks every table.",
  ),
  v("SNAPSHOT_BACKEND", "Backups", "local", "`local` (a directory), `s3` or `manta`."),
  v(
    "SNAPSHOT_DIR",
    "Backups",
    "/var/lib/autopilot/snapshots",
    "Directory of the `local` store (absolute path).",
  ),
  // S3
  v("S3_ENDPOINT", "S3 store", "-", "Endpoint URL of an S3-compatible store (unset: AWS)."),
  v("S3_REGION", "S3 store", "us-east-1", "Region."),
  v("S3_BUCKET", "S3 store", "required for s3", "Bucket (must exist)."),
  v("S3_PREFIX", "S3 store", "SERVICE_NAME/", "Key prefix inside the bucket."),
  v(
    "S3_FORCE_PATH_STYLE",
    "S3 store",
    "true if S3_ENDPOINT",
    "Path-style requests (most S3-compatible servers).",
  ),
  v("S3_ACCESS_KEY_ID", "S3 store", "-", "Access key id.", true),
  v("S3_SECRET_ACCESS_KEY", "S3 store", "-", "Secret access key.", true),
  // Manta
  v("MANTA_URL", "Manta store", "https://us-east.manta.joyent.com", "Manta endpoint."),
  v("MANTA_USER", "Manta store", "required for manta", "Manta account."),
  v("MANTA_SUBUSER", "Manta store", "-", "Subuser, if any."),
  v("MANTA_ROLE", "Manta store", "-", "Role, if any."),
  v(
    "MANTA_KEY_ID",
    "Manta store",
    "required for manta",
    "SSH key fingerprint (`scripts/setup.sh` writes it).",
  ),
  v(
    "MANTA_PRIVATE_KEY",
    "Manta store",
    "required for manta",
    "Private key, newlines written as `#` (`scripts/setup.sh` encodes it).",
    true,
  ),
  v("MANTA_BUCKET", "Manta store", "/MANTA_USER/stor", "Manta directory for snapshots."),
  v("MANTA_TLS_INSECURE", "Manta store", "false", "Skip TLS certificate checks (tests only)."),
]);

function v(name: string, group: string, dflt: string, doc: string, secret = false): VariableSpec {
  return Object.freeze({ name, group, default: dflt, doc, ...(secret ? { secret } : {}) });
}

/** Reads an environment variable; the loader never touches the real environment itself. */
export type EnvReader = (name: string) => string | undefined;

/** Facts about the machine that defaults depend on. */
export interface ConfigHost {
  hostname(): string;
}

/**
 * Reads, validates and freezes the configuration.
 *
 * @param env Reads one variable (for example `(n) => Deno.env.get(n)`); empty values count as unset.
 * @param host Supplies machine facts used by defaults (the hostname).
 * @returns The frozen configuration.
 * @throws {ConfigError} listing every wrong or missing variable, one line each.
 */
export function loadConfig(env: EnvReader, host: ConfigHost): Config {
  const r = new Reader(env);
  const serviceName = r.string(
    "SERVICE_NAME",
    "mysql",
    (s) =>
      /^[a-z][a-zA-Z0-9-]+$/.test(s)
        ? undefined
        : "must start with a lower-case letter and contain only letters, digits and '-' (ContainerPilot's rule for service names)",
  );
  const svc = serviceName ?? "mysql";

  const consul = readConsul(r);
  const log = {
    level: r.choice("LOG_LEVEL", "INFO", LOG_LEVELS) ?? "info",
    format: r.choice("LOG_FORMAT", "text", { text: "text", json: "json" } as const) ?? "text",
  };

  const node: NodeConfig = {
    name: r.string("NODE_NAME", host.hostname()) ?? "",
    ...opt("address", r.optString("NODE_ADDRESS")),
    priority: r.integer("FAILOVER_PRIORITY", 1, 0, 1_000_000) ?? 1,
    stateDir: r.path("STATE_DIR", "/var/lib/autopilot"),
  };

  const mysql = readMysql(r);
  const keys: KeysConfig = {
    primary: r.key("PRIMARY_KEY", `${svc}-primary`),
    backupLock: r.key("BACKUP_LOCK_KEY", `${svc}-backup-running`),
    lastBackup: r.key("LAST_BACKUP_KEY", `${svc}-last-backup`),
    lastBinlog: r.key("LAST_BINLOG_KEY", `${svc}-last-binlog`),
    lastVerified: r.key("LAST_VERIFIED_KEY", `${svc}-last-verified`),
    failoverLock: r.key("FAILOVER_LOCK_KEY", `${svc}-failover-lock`),
    failoverPause: r.key("FAILOVER_PAUSE_KEY", `${svc}-failover-paused`),
  };
  const session: SessionConfig = {
    name: r.string("SESSION_NAME", `${svc}-primary-lock`) ?? "",
    ttlSeconds: Math.round((r.duration("SESSION_TTL", "20s", 10_000, 86_400_000) ?? 20_000) / 1000),
  };
  const failover: FailoverConfig = {
    quietPeriodMs: r.duration("FAILOVER_QUIET_PERIOD", "5m", 0) ?? 0,
    rebuildErrant: r.flag("REBUILD_ERRANT_NODE", false),
  };
  const retainAgeMs = r.optDuration("BACKUP_RETAIN_AGE", 1);
  const backup: BackupConfig = {
    name: r.string("BACKUP_NAME", `${svc}-backup-%Y-%m-%dT%H-%M-%SZ`, checkBackupName) ?? "",
    ttlSeconds: Math.round((r.duration("BACKUP_TTL", "86400", 1000) ?? 0) / 1000),
    from: r.choice("BACKUP_FROM", "primary", { primary: "primary", replica: "replica" } as const) ??
      "primary",
    retainCount: r.integer("BACKUP_RETAIN_COUNT", 7, 1, 100_000) ?? 7,
    ...opt("retainAgeMs", retainAgeMs),
    onStop: r.flag("BACKUP_ON_STOP", false),
    verify: r.flag("BACKUP_VERIFY", false),
  };
  const storage = readStorage(r, svc);

  r.throwIfProblems();
  return deepFreeze({ serviceName: svc, consul, log, node, mysql, keys, session, failover, backup, storage });
}

const LOG_LEVELS = {
  debug: "debug",
  info: "info",
  warn: "warning",
  warning: "warning",
  error: "error",
  critical: "fatal",
  fatal: "fatal",
} as const satisfies Record<string, LogLevel>;

function readConsul(r: Reader): ConsulConfig {
  const raw = r.string("CONSUL", "consul") ?? "consul";
  const agent = r.flag("CONSUL_AGENT", false);
  const token = r.secret("CONSUL_HTTP_TOKEN");
  const timeoutMs = r.duration("CONSUL_TIMEOUT", "2s", 100, 60_000) ?? 2000;
  const m = /^(?:(https?):\/\/)?(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9._-]+)(?::(\d{1,5}))?\/?$/.exec(raw);
  if (!m || (m[3] !== undefined && (Number(m[3]) < 1 || Number(m[3]) > 65535))) {
    r.problem("CONSUL", raw, "must be host, host:port or http(s)://host:port");
    return { scheme: "http", host: "consul", port: 8500, url: "http://consul:8500", timeoutMs };
  }
  const scheme = (m[1] ?? "http") as "http" | "https";
  const host = agent ? "localhost" : m[2];
  const port = m[3] ? Number(m[3]) : 8500;
  return { scheme, host, port, url: `${scheme}://${host}:${port}`, ...opt("token", token), timeoutMs };
}

function readMysql(r: Reader): MysqlConfig {
  const user = r.optString("MYSQL_USER");
  const password = r.secret("MYSQL_PASSWORD");
  if ((user === undefined) !== (password === undefined)) {
    r.problem(
      user === undefined ? "MYSQL_USER" : "MYSQL_PASSWORD",
      undefined,
      "must be set together with " + (user === undefined ? "MYSQL_PASSWORD" : "MYSQL_USER"),
    );
  }
  const rootPassword = r.secret("MYSQL_ROOT_PASSWORD");
  const randomRootPassword = r.flag("MYSQL_RANDOM_ROOT_PASSWORD", rootPassword === undefined);
  if (randomRootPassword && rootPassword !== undefined) {
    r.problem("MYSQL_RANDOM_ROOT_PASSWORD", "true", "cannot be true when MYSQL_ROOT_PASSWORD is set");
  }
  const replPassword = r.secret("MYSQL_REPL_PASSWORD");
  if (replPassword === undefined) {
    r.problem("MYSQL_REPL_PASSWORD", undefined, "is required (replication user's password)");
  }
  const database = r.optString("MYSQL_DATABASE");
  if (database !== undefined && !/^[A-Za-z0-9_$]{1,64}$/.test(database)) {
    r.problem("MYSQL_DATABASE", database, "must be 1 to 64 letters, digits, '_' or '$'");
  }
  const checkAccount = (s: string) =>
    /^[A-Za-z0-9_.-]{1,32}$/.test(s) ? undefined : "must be 1 to 32 letters, digits, '_', '.' or '-'";
  if (user !== undefined && checkAccount(user)) r.problem("MYSQL_USER", user, checkAccount(user)!);
  return {
    flavour:
      r.choice("MYSQL_FLAVOUR", "auto", { auto: "auto", mysql: "mysql", mariadb: "mariadb" } as const) ??
        "auto",
    datadir: r.path("MYSQL_DATADIR", "/var/lib/mysql/data"),
    cnfPath: r.path("MYSQL_CNF", "/var/lib/autopilot/my.cnf"),
    socket: r.path("MYSQL_SOCKET", "/var/run/mysqld/mysqld.sock"),
    port: r.integer("MYSQL_PORT", 3306, 1, 65535) ?? 3306,
    osUser: r.string("MYSQL_OS_USER", "mysql", checkAccount) ?? "mysql",
    tmpdir: r.path("MYSQL_TMPDIR", "/tmp"),
    ...opt("user", user),
    ...opt("password", password),
    ...opt("database", database),
    replUser: r.string("MYSQL_REPL_USER", "repl", checkAccount) ?? "repl",
    replPassword: replPassword ?? new Secret(""),
    ...opt("rootPassword", rootPassword),
    randomRootPassword,
    onetimePassword: r.flag("MYSQL_ONETIME_PASSWORD", false),
    ...opt("bufferPoolSize", r.size("INNODB_BUFFER_POOL_SIZE")),
    connectTimeoutMs: r.duration("MYSQL_CONNECT_TIMEOUT", "2s", 100, 60_000) ?? 2000,
    maxLagSeconds: Math.round((r.duration("MAX_REPLICATION_LAG", "30s", 1000) ?? 30_000) / 1000),
    semiSync: r.flag("SEMI_SYNC", false),
  };
}

function readStorage(r: Reader, svc: string): StorageConfig {
  const backend =
    r.choice("SNAPSHOT_BACKEND", "local", { local: "local", s3: "s3", manta: "manta" } as const) ??
      "local";
  const localDir = r.path("SNAPSHOT_DIR", "/var/lib/autopilot/snapshots");
  if (backend === "s3") {
    const endpoint = r.optString("S3_ENDPOINT");
    if (endpoint !== undefined && !isHttpUrl(endpoint)) {
      r.problem("S3_ENDPOINT", endpoint, "must be an http:// or https:// URL");
    }
    const bucket = r.optString("S3_BUCKET");
    if (bucket === undefined) r.problem("S3_BUCKET", undefined, "is required when SNAPSHOT_BACKEND=s3");
    const accessKeyId = r.secret("S3_ACCESS_KEY_ID");
    const secretAccessKey = r.secret("S3_SECRET_ACCESS_KEY");
    if ((accessKeyId === undefined) !== (secretAccessKey === undefined)) {
      r.problem(
        accessKeyId === undefined ? "S3_ACCESS_KEY_ID" : "S3_SECRET_ACCESS_KEY",
        undefined,
        "must be set together with " +
          (accessKeyId === undefined ? "S3_SECRET_ACCESS_KEY" : "S3_ACCESS_KEY_ID"),
      );
    }
    const s3: S3Config = {
      ...opt("endpoint", endpoint),
      region: r.string("S3_REGION", "us-east-1") ?? "us-east-1",
      bucket: bucket ?? "",
      prefix: r.string("S3_PREFIX", `${svc}/`, (s) =>
        s.startsWith("/") ? "must not start with '/'" : undefined) ??
        "",
      forcePathStyle: r.flag("S3_FORCE_PATH_STYLE", endpoint !== undefined),
      ...opt("accessKeyId", accessKeyId),
      ...opt("secretAccessKey", secretAccessKey),
    };
    return { backend, localDir, s3 };
  }
  if (backend === "manta") {
    const user = r.optString("MANTA_USER");
    const keyId = r.optString("MANTA_KEY_ID");
    const key = r.secret("MANTA_PRIVATE_KEY");
    for (const [name, value] of [["MANTA_USER", user], ["MANTA_KEY_ID", keyId], ["MANTA_PRIVATE_KEY", key]]) {
      if (value === undefined) {
        r.problem(name as string, undefined, "is required when SNAPSHOT_BACKEND=manta");
      }
    }
    const url = r.string("MANTA_URL", "https://us-east.manta.joyent.com") ?? "";
    if (!isHttpUrl(url)) r.problem("MANTA_URL", url, "must be an http:// or https:// URL");
    const privateKey = key === undefined ? new Secret("") : new Secret(key.reveal().replaceAll("#", "\n"));
    if (key !== undefined && !/-----BEGIN [A-Z ]*PRIVATE KEY-----/.test(privateKey.reveal())) {
      r.problem("MANTA_PRIVATE_KEY", undefined, "is not a PEM private key (newlines may be written as '#')");
    }
    const manta: MantaConfig = {
      url,
      user: user ?? "",
      ...opt("subuser", r.optString("MANTA_SUBUSER")),
      ...opt("role", r.optString("MANTA_ROLE")),
      keyId: keyId ?? "",
      privateKey,
      bucket: r.string("MANTA_BUCKET", `/${user ?? ""}/stor`) ?? "",
      tlsInsecure: r.flag("MANTA_TLS_INSECURE", false),
    };
    return { backend, localDir, manta };
  }
  return { backend, localDir };
}

/** strftime directives BACKUP_NAME may use (all of them UTC). */
const STRFTIME = new Set(["Y", "y", "m", "d", "H", "M", "S", "j", "s"]);

function checkBackupName(name: string): string | undefined {
  for (const m of name.matchAll(/%(.?)/g)) {
    if (!STRFTIME.has(m[1])) {
      return `has an unsupported strftime directive '%${m[1]}' (supported: %Y %y %m %d %H %M %S %j %s)`;
    }
  }
  if (/[^A-Za-z0-9._%-]/.test(name)) return "may contain only letters, digits, '.', '_', '-' and directives";
  return undefined;
}

function isHttpUrl(s: string): boolean {
  try {
    const u = new URL(s);
    return u.protocol === "http:" || u.protocol === "https:";
  } catch {
    return false;
  }
}

/**
 * Parses a duration: a plain number of seconds, or numbers with units `ms`, `s`, `m`, `h`, `d` (`1h30m`).
 *
 * @param text The duration text.
 * @returns Milliseconds, or `undefined` if the text is not a duration.
 */
export function parseDuration(text: string): number | undefined {
  if (/^\d+$/.test(text)) return Number(text) * 1000;
  const units: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };
  let total = 0;
  let rest = text;
  if (rest === "") return undefined;
  while (rest !== "") {
    const m = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)/.exec(rest);
    if (!m) return undefined;
    total += Number(m[1]) * units[m[2]];
    rest = rest.slice(m[0].length);
  }
  return Math.round(total);
}

/**
 * Parses a memory size: a plain number of megabytes, or a number with `K`, `M`, `G` (binary units).
 *
 * @param text The size text.
 * @returns Bytes, or `undefined` if the text is not a size.
 */
export function parseSize(text: string): number | undefined {
  const m = /^(\d+)([KMG]?)B?$/i.exec(text);
  if (!m) return undefined;
  const unit = { "": 2 ** 20, K: 2 ** 10, M: 2 ** 20, G: 2 ** 30 }[m[2].toUpperCase()] ?? 2 ** 20;
  return Number(m[1]) * unit;
}

const TRUE = new Set(["1", "true", "yes", "on", "y"]);
const FALSE = new Set(["0", "false", "no", "off", "n"]);

/** Reads variables and collects every problem, so one run reports all of them. */
class Reader {
  readonly #env: EnvReader;
  readonly #problems: string[] = [];
  constructor(env: EnvReader) {
    this.#env = env;
  }

  /** The raw value; empty counts as unset. Non-secret values are trimmed. */
  raw(name: string, trim = true): string | undefined {
    const value = this.#env(name);
    if (value === undefined) return undefined;
    const t = trim ? value.trim() : value;
    return t === "" ? undefined : t;
  }

  problem(name: string, value: string | undefined, what: string): void {
    const spec = VARIABLES.find((s) => s.name === name);
    const shown = value === undefined || spec?.secret ? "" : `: current value is '${value}'`;
    this.#problems.push(`${name} ${what}${shown}`);
  }

  throwIfProblems(): void {
    if (this.#problems.length > 0) throw new ConfigError(this.#problems);
  }

  optString(name: string): string | undefined {
    return this.raw(name);
  }

  string(name: string, dflt: string, check?: (s: string) => string | undefined): string | undefined {
    const value = this.raw(name) ?? dflt;
    const wrong = check?.(value);
    if (wrong !== undefined) {
      this.problem(name, value, wrong);
      return undefined;
    }
    return value;
  }

  key(name: string, dflt: string): string {
    return this.string(
      name,
      dflt,
      (s) =>
        /^[A-Za-z0-9._\/-]+$/.test(s) && !s.startsWith("/")
          ? undefined
          : "must be a Consul key of letters, digits, '.', '_', '-' and '/', not starting with '/'",
    ) ?? dflt;
  }

  secret(name: string): Secret | undefined {
    const value = this.raw(name, false);
    return value === undefined ? undefined : new Secret(value);
  }

  path(name: string, dflt: string): string {
    return this.string(name, dflt, (s) => s.startsWith("/") ? undefined : "must be an absolute path") ?? dflt;
  }

  flag(name: string, dflt: boolean): boolean {
    const value = this.raw(name);
    if (value === undefined) return dflt;
    if (TRUE.has(value.toLowerCase())) return true;
    if (FALSE.has(value.toLowerCase())) return false;
    this.problem(name, value, "must be true or false (also yes/no, on/off, 1/0)");
    return dflt;
  }

  choice<T extends string>(name: string, dflt: string, choices: Record<string, T>): T | undefined {
    const value = this.raw(name) ?? dflt;
    const found = Object.hasOwn(choices, value.toLowerCase()) ? choices[value.toLowerCase()] : undefined;
    if (found === undefined) {
      const names = [...new Set(Object.keys(choices))].join(", ");
      this.problem(name, value, `must be one of ${names}`);
    }
    return found;
  }

  integer(name: string, dflt: number, min: number, max: number): number | undefined {
    const value = this.raw(name);
    if (value === undefined) return dflt;
    const n = /^\d+$/.test(value) ? Number(value) : NaN;
    if (!Number.isSafeInteger(n) || n < min || n > max) {
      this.problem(name, value, `must be a whole number from ${min} to ${max}`);
      return undefined;
    }
    return n;
  }

  duration(name: string, dflt: string, minMs: number, maxMs = Number.MAX_SAFE_INTEGER): number | undefined {
    const value = this.raw(name) ?? dflt;
    const ms = parseDuration(value);
    if (ms === undefined) {
      this.problem(
        name,
        value,
        "must be a duration such as 30, 90s, 15m, 24h or 1h30m (a plain number is seconds)",
      );
      return undefined;
    }
    if (ms < minMs || ms > maxMs) {
      const range = maxMs === Number.MAX_SAFE_INTEGER
        ? `at least ${fmtMs(minMs)}`
        : `from ${fmtMs(minMs)} to ${fmtMs(maxMs)}`;
      this.problem(name, value, `must be ${range}`);
      return undefined;
    }
    return ms;
  }

  optDuration(name: string, minMs: number): number | undefined {
    return this.raw(name) === undefined ? undefined : this.duration(name, "0", minMs);
  }

  size(name: string): number | undefined {
    const value = this.raw(name);
    if (value === undefined) return undefined;
    const bytes = parseSize(value);
    if (bytes === undefined || bytes < 5 * 2 ** 20) {
      this.problem(
        name,
        value,
        "must be a size of at least 5M: megabytes, or a number with K, M or G (e.g. 512M, 2G)",
      );
      return undefined;
    }
    return bytes;
  }
}

function fmtMs(ms: number): string {
  if (ms % 3_600_000 === 0) return `${ms / 3_600_000}h`;
  if (ms % 60_000 === 0) return `${ms / 60_000}m`;
  if (ms % 1000 === 0) return `${ms / 1000}s`;
  return `${ms}ms`;
}

/** `{ [key]: value }` when the value is defined, `{}` otherwise (keeps optional fields truly absent). */
function opt<K extends string, T>(key: K, value: T | undefined): { [P in K]?: T } {
  return (value === undefined ? {} : { [key]: value }) as { [P in K]?: T };
}

function deepFreeze<T>(value: T): T {
  if (value !== null && typeof value === "object" && !(value instanceof Secret)) {
    for (const child of Object.values(value)) deepFreeze(child);
    Object.freeze(value);
  }
  return value;
}

/**
 * The effective configuration as `NAME=value` lines for `autopilot config`, secrets redacted.
 *
 * @param env The same reader the configuration was loaded from.
 * @returns One entry per variable: its name, the effective value text, and whether it came from the default.
 */
export function describeConfig(
  config: Config,
  env: EnvReader,
): { name: string; value: string; source: "env" | "default" }[] {
  const effective = effectiveValues(config);
  return VARIABLES.map((spec) => {
    const set = (env(spec.name) ?? "").trim() !== "";
    const value = effective[spec.name];
    const shown = spec.secret ? (value === undefined ? "(unset)" : "<redacted>") : value ?? "(unset)";
    return { name: spec.name, value: shown, source: set ? "env" : "default" };
  });
}

function effectiveValues(c: Config): Record<string, string | undefined> {
  const s = (x: unknown) => (x === undefined ? undefined : String(x));
  const secs = (n: number) => `${n}s`;
  const ms = (n: number | undefined) => (n === undefined ? undefined : fmtMs(n));
  const levelNames: Record<LogLevel, string> = {
    debug: "DEBUG",
    info: "INFO",
    warning: "WARN",
    error: "ERROR",
    fatal: "CRITICAL",
  };
  return {
    SERVICE_NAME: c.serviceName,
    CONSUL: c.consul.url,
    CONSUL_AGENT: s(c.consul.host === "localhost"),
    CONSUL_HTTP_TOKEN: s(c.consul.token),
    CONSUL_TIMEOUT: ms(c.consul.timeoutMs),
    LOG_LEVEL: levelNames[c.log.level],
    LOG_FORMAT: c.log.format,
    NODE_NAME: c.node.name,
    NODE_ADDRESS: c.node.address,
    FAILOVER_PRIORITY: s(c.node.priority),
    STATE_DIR: c.node.stateDir,
    MYSQL_FLAVOUR: c.mysql.flavour,
    MYSQL_DATADIR: c.mysql.datadir,
    MYSQL_CNF: c.mysql.cnfPath,
    MYSQL_SOCKET: c.mysql.socket,
    MYSQL_PORT: s(c.mysql.port),
    MYSQL_OS_USER: c.mysql.osUser,
    MYSQL_TMPDIR: c.mysql.tmpdir,
    MYSQL_USER: c.mysql.user,
    MYSQL_PASSWORD: s(c.mysql.password),
    MYSQL_DATABASE: c.mysql.database,
    MYSQL_REPL_USER: c.mysql.replUser,
    MYSQL_REPL_PASSWORD: s(c.mysql.replPassword),
    MYSQL_ROOT_PASSWORD: s(c.mysql.rootPassword),
    MYSQL_RANDOM_ROOT_PASSWORD: s(c.mysql.randomRootPassword),
    MYSQL_ONETIME_PASSWORD: s(c.mysql.onetimePassword),
    INNODB_BUFFER_POOL_SIZE: c.mysql.bufferPoolSize === undefined
      ? "70% of (memory - 384M)"
      : `${c.mysql.bufferPoolSize / 2 ** 20}M`,
    MYSQL_CONNECT_TIMEOUT: ms(c.mysql.connectTimeoutMs),
    MAX_REPLICATION_LAG: secs(c.mysql.maxLagSeconds),
    SEMI_SYNC: s(c.mysql.semiSync),
    PRIMARY_KEY: c.keys.primary,
    BACKUP_LOCK_KEY: c.keys.backupLock,
    LAST_BACKUP_KEY: c.keys.lastBackup,
    LAST_BINLOG_KEY: c.keys.lastBinlog,
    LAST_VERIFIED_KEY: c.keys.lastVerified,
    FAILOVER_LOCK_KEY: c.keys.failoverLock,
    FAILOVER_PAUSE_KEY: c.keys.failoverPause,
    SESSION_NAME: c.session.name,
    SESSION_TTL: secs(c.session.ttlSeconds),
    FAILOVER_QUIET_PERIOD: ms(c.failover.quietPeriodMs),
    REBUILD_ERRANT_NODE: s(c.failover.rebuildErrant),
    BACKUP_NAME: c.backup.name,
    BACKUP_TTL: secs(c.backup.ttlSeconds),
    BACKUP_FROM: c.backup.from,
    BACKUP_RETAIN_COUNT: s(c.backup.retainCount),
    BACKUP_RETAIN_AGE: ms(c.backup.retainAgeMs),
    BACKUP_ON_STOP: s(c.backup.onStop),
    BACKUP_VERIFY: s(c.backup.verify),
    SNAPSHOT_BACKEND: c.storage.backend,
    SNAPSHOT_DIR: c.storage.localDir,
    S3_ENDPOINT: c.storage.s3?.endpoint,
    S3_REGION: c.storage.s3?.region,
    S3_BUCKET: c.storage.s3?.bucket,
    S3_PREFIX: c.storage.s3?.prefix,
    S3_FORCE_PATH_STYLE: s(c.storage.s3?.forcePathStyle),
    S3_ACCESS_KEY_ID: s(c.storage.s3?.accessKeyId),
    S3_SECRET_ACCESS_KEY: s(c.storage.s3?.secretAccessKey),
    MANTA_URL: c.storage.manta?.url,
    MANTA_USER: c.storage.manta?.user,
    MANTA_SUBUSER: c.storage.manta?.subuser,
    MANTA_ROLE: c.storage.manta?.role,
    MANTA_KEY_ID: c.storage.manta?.keyId,
    MANTA_PRIVATE_KEY: s(c.storage.manta?.privateKey),
    MANTA_BUCKET: c.storage.manta?.bucket,
    MANTA_TLS_INSECURE: s(c.storage.manta?.tlsInsecure),
  };
}

/** The README's configuration table, generated from {@link VARIABLES}. */
export function configTableMarkdown(): string {
  const lines: string[] = [];
  let group = "";
  for (const spec of VARIABLES) {
    if (spec.group !== group) {
      group = spec.group;
      lines.push("", `**${group}**`, "", "| variable | default | meaning |", "| --- | --- | --- |");
    }
    const secret = spec.secret ? " Secret: never printed." : "";
    lines.push(
      `| \`${spec.name}\` | ${
        spec.default === "-" ? "unset" : `\`${spec.default}\``
      } | ${spec.doc}${secret} |`,
    );
  }
  return lines.join("\n").trimStart() + "\n";
}
