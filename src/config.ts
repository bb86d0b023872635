/**
 * The environment, read once into one typed, validated, frozen {@link Config}.
 *
 * Every variable is declared once, below, in README order: its name, section, default, meaning, how its text
 * is read (a {@link Kind}: duration, size, flag, choice, whole number, path, secret…) and where its value lands
 * in `Config`. Everything else is derived from those declarations: the loader ({@link loadConfig}), the
 * effective values `autopilot config` prints ({@link describeConfig}, read back from where each value
 * landed), the README's configuration table ({@link configTableMarkdown}, `deno task docs`) and the variables
 * `deno.json`'s permission set allows ({@link ENV_NAMES}, also written by `deno task docs`; a unit test keeps
 * them equal). Variables the program reads outside this module are declared too, as internal ones.
 *
 * Values are taken literally: a `#` is part of the value, never a comment. Empty counts as unset; values are
 * trimmed, secrets are not. Every secret (a setting of a secret kind: `secret`, `pemKey`) also has a `_FILE`
 * twin ({@link fileTwin}): `MYSQL_PASSWORD_FILE=/run/secrets/db` reads the value from that file
 * ({@link readSecretFile}), as the official MySQL image's entrypoint does.
 *
 * @module
 */

import { looksLikeSecretKey, parseIdentities, parseRecipients } from "./backup/age_keys.ts";
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
  /** CONSUL_CACERT: the PEM file of the CA that signed Consul's HTTPS certificate (only with `https`). */
  readonly caFile?: string;
  /** CONSUL_CLIENT_CERT and CONSUL_CLIENT_KEY: a client certificate and its key, for Consul's `verify_incoming`. */
  readonly clientCert?: string;
  readonly clientKey?: string;
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
  /** The node's certificate, its key and the CA that signed every node's: TLS between servers and for clients. */
  readonly tls?: TlsFiles;
  /** REQUIRE_TLS: the application and replication accounts refuse connections without TLS. */
  readonly requireTls: boolean;
}

/** PEM files, as absolute paths (read by src/mysql/tls.ts; the key's contents never reach a log). */
export interface TlsFiles {
  /** The CA certificate(s) every node's certificate is signed by. */
  readonly ca: string;
  /** This node's certificate: it names the node's address (SAN IP or DNS). */
  readonly cert: string;
  /** This node's private key. */
  readonly key: string;
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
  /** On by default: move an errant node's datadir aside (never delete it) and rebuild it from the latest snapshot. */
  readonly rebuildErrant: boolean;
  /**
   * FAILSAFE_MODE: a primary that cannot reach Consul stays writable while every other member it knows of
   * replicates from it (src/ha/failsafe.ts).
   */
  readonly failsafe: boolean;
  /**
   * Whole-cluster recovery (Consul lost its keys): how long a node with data waits, from when it first saw no
   * primary lock, for the other nodes to report before the most advanced one is made primary.
   */
  readonly recoverySettleMs: number;
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
  /** How often the primary archives its binlogs (closing the open one when it holds transactions). */
  readonly archiveIntervalSeconds: number;
  /** age encryption of snapshots and archived binlogs; absent when neither key variable is set. */
  readonly encryption?: {
    readonly identity?: Secret;
    readonly recipients?: readonly string[];
    /** BACKUP_ALLOW_UNENCRYPTED (see EncryptionConfig in src/backup/encryption.ts). */
    readonly allowUnencrypted?: boolean;
  };
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

// ---- how a variable is declared ------------------------------------------------------------------------------

/** One environment variable as the README and `autopilot config` describe it. */
export interface VariableSpec {
  readonly name: string;
  /** The README section it is listed under; {@link INTERNAL} for a variable that is not a setting. */
  readonly section: string;
  /** The default as the README shows it; `-` where there is none (unset). */
  readonly default: string;
  readonly secret?: boolean;
  /** A secret's `_FILE` twin ({@link fileTwin}), the variable naming a file that holds the value. */
  readonly file?: string;
  readonly doc: string;
}

/** The section of the variables the program reads that are not settings (no README row, no `autopilot config`). */
export const INTERNAL = "internal";

/** What is wrong with a value, as the words after the variable's name ("must be an absolute path"). */
class Wrong {
  constructor(readonly what: string) {}
}

function wrong(what: string): Wrong {
  return new Wrong(what);
}

/** How a variable's text is read, and how `autopilot config` prints the value read. */
interface Kind<T> {
  /** Reads the text (never empty; trimmed unless the kind is secret). */
  parse(text: string): T | Wrong;
  show(value: T): string;
  /** Never trimmed, never printed: not in a problem, not by `autopilot config`. */
  readonly secret?: boolean;
}

/** The value read for a setting: `undefined` when unset, or when its section does not apply. */
type Values = <T>(setting: Setting<T>) => T | undefined;

/** A default that depends on other settings (declared before it) or on the machine. */
interface Derived {
  /** The default as the README shows it. */
  readonly doc: string;
  /** The default's text, read like a value from the environment; `undefined`: unset. */
  readonly text: (v: Values, host: ConfigHost) => string | undefined;
}

type Leaf = string | number | boolean | Secret | readonly string[];
/** The dotted paths of the fields of `O` that can hold a `T` ("mysql.port"). */
type PathTo<O, T> = {
  [K in keyof O & string]-?: NonNullable<O[K]> extends Leaf ? ([T] extends [NonNullable<O[K]>] ? K : never)
    : `${K}.${PathTo<NonNullable<O[K]>, T>}`;
}[keyof O & string];
type DeepPartial<T> = { [K in keyof T]?: NonNullable<T[K]> extends Leaf ? T[K] : DeepPartial<T[K]> };

/** What a declaration says about its variable, besides its name and kind. */
interface Options<T> {
  readonly doc: string;
  /** The default: text read as if the environment held it, or {@link Derived}. None: unset. */
  readonly default?: string | Derived;
  /** What the README and `autopilot config` show while there is no value (none: unset). */
  readonly unset?: string;
  /** Required: `true`, or the reason the problem gives in parentheses. */
  readonly required?: true | string;
  /** Where the value lands in `Config`; `autopilot config` reads it back from there. */
  readonly at?: NoInfer<PathTo<Config, T>>;
  /** Instead of `at`: the part of `Config` the value makes, given the other settings' values. */
  readonly land?: (value: T, v: Values) => DeepPartial<Config>;
  /** Instead of reading `at` back: the effective value as `autopilot config` prints it. */
  readonly show?: (config: Config) => string | undefined;
  /** Set both or neither: when one is set alone, the other one is reported missing. */
  readonly with?: Setting<unknown>;
  /** A rule against other settings, checked once every value is read: what is wrong, or `undefined`. */
  readonly check?: (value: T, v: Values) => string | undefined;
}

/** A setting: a variable the loader reads, declared once. */
interface Setting<T> extends VariableSpec {
  /** Position in README order; problems are reported in this order. */
  readonly index: number;
  readonly kind: Kind<T>;
  /** Read only when this other setting has this value (the selected snapshot store's settings). */
  readonly when?: Condition;
  /** The default's text, if any. */
  fallback(v: Values, host: ConfigHost): string | undefined;
  /** What the problem says when a required setting is missing. */
  readonly required?: string;
  readonly unset?: string;
  readonly with?: Setting<unknown>;
  check?(value: T, v: Values): string | undefined;
  land(value: T, v: Values): DeepPartial<Config>;
  /** The effective value as `autopilot config` prints it, read from the loaded configuration. */
  effective(config: Config): string | undefined;
}

interface Condition {
  readonly setting: Setting<string>;
  readonly is: string;
}

const SETTINGS: Setting<unknown>[] = [];
const INTERNALS: VariableSpec[] = [];

/** Declares the settings of one README section (read only `when` that setting has that value). */
function section(title: string, when?: Condition) {
  return <T>(name: string, kind: Kind<T>, o: Options<T>): Setting<T> => {
    const fallback = typeof o.default === "object" ? o.default.text : () => o.default as string | undefined;
    const required = o.required === undefined
      ? undefined
      : o.required !== true
      ? `is required (${o.required})`
      : when
      ? `is required when ${when.setting.name}=${when.is}`
      : "is required";
    const shownDefault = typeof o.default === "object"
      ? o.default.doc
      : o.default ?? o.unset ?? (o.required ? (when ? `required for ${when.is}` : "required") : "-");
    const at = o.at as string | undefined;
    const setting: Setting<T> = {
      name,
      section: title,
      default: shownDefault,
      ...(kind.secret ? { secret: true, file: fileTwin(name) } : {}),
      doc: o.doc,
      index: SETTINGS.length,
      kind,
      ...(when ? { when } : {}),
      fallback,
      ...(required ? { required } : {}),
      ...(o.unset !== undefined ? { unset: o.unset } : {}),
      ...(o.with ? { with: o.with } : {}),
      ...(o.check ? { check: o.check } : {}),
      land: o.land ?? ((value) => (at === undefined ? {} : nest(at, value) as DeepPartial<Config>)),
      effective: o.show ?? ((config) => {
        const value = at === undefined ? undefined : pathValue(config, at);
        return value === undefined ? undefined : kind.show(value as T);
      }),
    };
    SETTINGS.push(setting as Setting<unknown>);
    return setting;
  };
}

/** The variable that names a file holding secret `name`'s value: `MYSQL_PASSWORD_FILE` for `MYSQL_PASSWORD`. */
export function fileTwin(name: string): string {
  return `${name}_FILE`;
}

/**
 * Where a `_FILE` twin's file may be: the directories `deno.json`'s `autopilot` permission set lets the
 * program read (a unit test keeps them in that list). `/run/secrets` is where Docker (compose and swarm)
 * mounts secrets; the others are autopilot's own.
 */
export const SECRET_FILE_DIRS: readonly string[] = Object.freeze([
  "/run/secrets",
  "/var/lib/autopilot",
  "/var/lib/mysql",
  "/tmp",
]);

/** Declares a variable the program reads outside this module: in the permission set, not a setting. */
function internal(name: string, doc: string): void {
  INTERNALS.push(Object.freeze({ name, section: INTERNAL, default: "-", doc }));
}

/** A default prefixed with SERVICE_NAME. */
function namespaced(suffix: string): Derived {
  return { doc: `SERVICE_NAME${suffix}`, text: (v) => `${v(SERVICE_NAME)}${suffix}` };
}

// ---- kinds of value ------------------------------------------------------------------------------------------

function text(check?: (s: string) => string | undefined): Kind<string> {
  return {
    parse: (s) => {
      const what = check?.(s);
      return what === undefined ? s : wrong(what);
    },
    show: (s) => s,
  };
}

const path = text((s) => s.startsWith("/") ? undefined : "must be an absolute path");
const consulKey = text((s) =>
  /^[A-Za-z0-9._\/-]+$/.test(s) && !s.startsWith("/")
    ? undefined
    : "must be a Consul key of letters, digits, '.', '_', '-' and '/', not starting with '/'"
);
const account = text((s) =>
  /^[A-Za-z0-9_.-]{1,32}$/.test(s) ? undefined : "must be 1 to 32 letters, digits, '_', '.' or '-'"
);
const httpUrl = text((s) => isHttpUrl(s) ? undefined : "must be an http:// or https:// URL");

const secret: Kind<Secret> = { parse: (s) => new Secret(s), show: String, secret: true };

/**
 * age X25519 identities (`AGE-SECRET-KEY-1…`): one, or an identity file as `age-keygen -o` writes it (`#`
 * comment lines skipped), several for a key rotation; kept one a line. The message never shows them.
 */
const ageIdentity: Kind<Secret> = {
  parse: (s) => {
    const r = parseIdentities(s);
    if ("identities" in r) return new Secret(r.identities.join("\n"));
    const shape = "AGE-SECRET-KEY-1 followed by 58 characters (make one with `age-keygen -o FILE`)";
    return wrong(
      "wrongLine" in r
        ? `is not an age identity: line ${r.wrongLine} is neither a comment (#) nor ${shape}`
        : `is not an age identity: it holds no line ${shape}`,
    );
  },
  show: String,
  secret: true,
};

/** age X25519 recipients (`age1…`), comma separated. */
const ageRecipients: Kind<readonly string[]> = {
  parse: (s) => {
    const r = parseRecipients(s);
    return "wrong" in r
      ? wrong(
        `must be age recipients (age1 followed by 58 characters), comma separated; '${r.wrong}' is not one`,
      )
      : Object.freeze(r.recipients);
  },
  show: (r) => r.join(","),
};

/** A PEM private key, newlines written as `#` (an env file holds one line a variable). */
const pemKey: Kind<Secret> = {
  parse: (s) => {
    const key = s.replaceAll("#", "\n");
    return /-----BEGIN [A-Z ]*PRIVATE KEY-----/.test(key)
      ? new Secret(key)
      : wrong("is not a PEM private key (newlines may be written as '#')");
  },
  show: String,
  secret: true,
};

const TRUE = new Set(["1", "true", "yes", "on", "y"]);
const FALSE = new Set(["0", "false", "no", "off", "n"]);

const flag: Kind<boolean> = {
  parse: (s) =>
    TRUE.has(s.toLowerCase())
      ? true
      : FALSE.has(s.toLowerCase())
      ? false
      : wrong("must be true or false (also yes/no, on/off, 1/0)"),
  show: String,
};

/** One of the keys of `choices` (any case), read as that key's value; `names`: how each value prints. */
function oneOf<T extends string>(choices: Record<string, T>, names?: Record<T, string>): Kind<T> {
  return {
    parse: (s) =>
      Object.hasOwn(choices, s.toLowerCase())
        ? choices[s.toLowerCase()]
        : wrong(`must be one of ${Object.keys(choices).join(", ")}`),
    show: (value) => names?.[value] ?? value,
  };
}

function int(min: number, max: number): Kind<number> {
  return {
    parse: (s) => {
      const n = /^\d+$/.test(s) ? Number(s) : NaN;
      return Number.isSafeInteger(n) && n >= min && n <= max
        ? n
        : wrong(`must be a whole number from ${min} to ${max}`);
    },
    show: String,
  };
}

/** A duration ({@link parseDuration}) in milliseconds. */
function duration(minMs: number, maxMs = Number.MAX_SAFE_INTEGER): Kind<number> {
  return {
    parse: (s) => {
      const ms = parseDuration(s);
      if (ms === undefined) {
        return wrong("must be a duration such as 30, 90s, 15m, 24h or 1h30m (a plain number is seconds)");
      }
      if (ms < minMs || ms > maxMs) {
        return wrong(
          maxMs === Number.MAX_SAFE_INTEGER
            ? `must be at least ${fmtMs(minMs)}`
            : `must be from ${fmtMs(minMs)} to ${fmtMs(maxMs)}`,
        );
      }
      return ms;
    },
    show: fmtMs,
  };
}

/**
 * A duration ({@link parseDuration}) in whole seconds, rounded.
 *
 * @param o.goDuration ContainerPilot reads the variable too (a Go duration, which has no `d`): refuse days.
 */
function seconds(minMs: number, maxMs?: number, o: { goDuration?: boolean } = {}): Kind<number> {
  const ms = duration(minMs, maxMs);
  return {
    parse: (s) => {
      if (o.goDuration && /d/i.test(s)) {
        return wrong(
          "is read by ContainerPilot too, whose durations have no d: give hours instead, e.g. 24h",
        );
      }
      const value = ms.parse(s);
      return value instanceof Wrong ? value : Math.round(value / 1000);
    },
    show: (n) => `${n}s`,
  };
}

/** A memory size ({@link parseSize}) in bytes, at least 5M. */
const size: Kind<number> = {
  parse: (s) => {
    const bytes = parseSize(s);
    return bytes === undefined || bytes < 5 * 2 ** 20
      ? wrong("must be a size of at least 5M: megabytes, or a number with K, M or G (e.g. 512M, 2G)")
      : bytes;
  },
  show: (bytes) => `${bytes / 2 ** 20}M`,
};

interface ConsulAddress {
  readonly scheme: "http" | "https";
  readonly host: string;
  readonly port: number;
}

const consulAddress: Kind<ConsulAddress> = {
  parse: (s) => {
    const m = /^(?:(https?):\/\/)?(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9._-]+)(?::(\d{1,5}))?\/?$/.exec(s);
    if (!m || (m[3] !== undefined && (Number(m[3]) < 1 || Number(m[3]) > 65535))) {
      return wrong("must be host, host:port or http(s)://host:port");
    }
    return { scheme: (m[1] ?? "http") as "http" | "https", host: m[2], port: m[3] ? Number(m[3]) : 8500 };
  },
  show: (a) => `${a.scheme}://${a.host}:${a.port}`,
};

/** Log levels: the Python names the original blueprint used, and logtape's, as logtape's. */
const LOG_LEVELS = {
  debug: "debug",
  info: "info",
  warn: "warning",
  warning: "warning",
  error: "error",
  critical: "fatal",
  fatal: "fatal",
} as const satisfies Record<string, LogLevel>;

const LOG_LEVEL_NAMES: Record<LogLevel, string> = {
  debug: "DEBUG",
  info: "INFO",
  warning: "WARN",
  error: "ERROR",
  fatal: "CRITICAL",
};

// ---- the variables, in README order ------------------------------------------------------------------------

const cluster = section("Cluster");
const SERVICE_NAME = cluster(
  "SERVICE_NAME",
  text((s) =>
    /^[a-z][a-zA-Z0-9-]+$/.test(s)
      ? undefined
      : "must start with a lower-case letter and contain only letters, digits and '-' (ContainerPilot's rule for service names)"
  ),
  {
    default: "mysql",
    at: "serviceName",
    doc: "Service name in Consul; prefixes every key and service default.",
  },
);
const CONSUL = cluster("CONSUL", consulAddress, {
  default: "consul",
  doc: "Consul agent: `host`, `host:port` or `http(s)://host:port` (port 8500).",
  land: ({ scheme, host, port }, v) => {
    const h = v(CONSUL_AGENT) ? "localhost" : host;
    return { consul: { scheme, host: h, port, url: `${scheme}://${h}:${port}` } };
  },
  show: (c) => c.consul.url,
});
const CONSUL_AGENT = cluster("CONSUL_AGENT", flag, {
  default: "false",
  doc: "`true`: talk to an agent on localhost, ignoring the host in CONSUL.",
  show: (c) => String(c.consul.host === "localhost"), // it lands in CONSUL's host
});
cluster("CONSUL_HTTP_TOKEN", secret, {
  at: "consul.token",
  doc: "ACL token for Consul (ContainerPilot reads it too).",
});
/** A TLS file for Consul: only with an `https://` CONSUL. */
const onlyHttps = (_: string, v: Values) =>
  v(CONSUL)?.scheme === "https"
    ? undefined
    : "is set but CONSUL is not https://: set CONSUL=https://host:port";
cluster("CONSUL_CACERT", path, {
  at: "consul.caFile",
  doc:
    "PEM file of the CA that signed Consul's HTTPS certificate (Consul's CLI reads the same variable; so does " +
    "ContainerPilot). Unset: the system's CAs.",
  check: onlyHttps,
});
const CONSUL_CLIENT_CERT = cluster("CONSUL_CLIENT_CERT", path, {
  at: "consul.clientCert",
  doc: "PEM file of a client certificate, for a Consul that verifies its clients (`verify_incoming`); with " +
    "CONSUL_CLIENT_KEY.",
  check: onlyHttps,
});
cluster("CONSUL_CLIENT_KEY", path, {
  at: "consul.clientKey",
  doc: "PEM file of the key of CONSUL_CLIENT_CERT.",
  with: CONSUL_CLIENT_CERT,
  check: onlyHttps,
});
cluster("CONSUL_TIMEOUT", duration(100, 60_000), {
  default: "2s",
  at: "consul.timeoutMs",
  doc: "Upper bound for one request to Consul.",
});
cluster("LOG_LEVEL", oneOf(LOG_LEVELS, LOG_LEVEL_NAMES), {
  default: "INFO",
  at: "log.level",
  doc: "DEBUG, INFO, WARN, ERROR or CRITICAL (Python names are accepted).",
});
cluster("LOG_FORMAT", oneOf({ text: "text", json: "json" } as const), {
  default: "text",
  at: "log.format",
  doc: "`text` or `json` (one JSON object a line).",
});

const node = section("Node");
node("NODE_NAME", text(), {
  default: { doc: "hostname", text: (_, host) => host.hostname() },
  at: "node.name",
  doc: "This node's stable name in Consul and in logs.",
});
node("NODE_ADDRESS", text(), {
  at: "node.address",
  doc: "Address peers reach this node on (default: ContainerPilot's, else eth0).",
});
node("FAILOVER_PRIORITY", int(0, 1_000_000), {
  default: "1",
  at: "node.priority",
  doc: "Tie-break among equally advanced candidates, higher wins; 0: never promote.",
});
node("STATE_DIR", path, {
  default: "/var/lib/autopilot",
  at: "node.stateDir",
  doc: "autopilot's own files: session id, generated root password (0600).",
});

const mysql = section("MySQL");
mysql("MYSQL_FLAVOUR", oneOf({ auto: "auto", mysql: "mysql", mariadb: "mariadb" } as const), {
  default: "auto",
  at: "mysql.flavour",
  doc: "`auto`, `mysql` (MySQL/Percona 8.4) or `mariadb` (10.11+).",
});
mysql("MYSQL_DATADIR", path, {
  default: "/var/lib/mysql/data",
  at: "mysql.datadir",
  doc:
    "Data directory (absolute path). Below the volume's root, so a restore or a rebuild renames it in one step.",
});
mysql("MYSQL_CNF", path, {
  default: "/var/lib/autopilot/my.cnf",
  at: "mysql.cnfPath",
  doc: "Where the rendered server configuration is written.",
});
mysql("MYSQL_SOCKET", path, {
  default: "/var/run/mysqld/mysqld.sock",
  at: "mysql.socket",
  doc: "Unix socket autopilot uses for the local server.",
});
mysql("MYSQL_PORT", int(1, 65535), {
  default: "3306",
  at: "mysql.port",
  doc: "TCP port of every node's server.",
});
mysql("MYSQL_OS_USER", account, {
  default: "mysql",
  at: "mysql.osUser",
  doc: "OS user mysqld runs as and that owns the datadir.",
});
mysql("MYSQL_TMPDIR", path, {
  default: "/tmp",
  at: "mysql.tmpdir",
  doc: "mysqld's temporary directory (absolute path).",
});
const MYSQL_USER = mysql("MYSQL_USER", account, {
  at: "mysql.user",
  doc: "Application user to create (needs MYSQL_PASSWORD).",
});
mysql("MYSQL_PASSWORD", secret, {
  with: MYSQL_USER,
  at: "mysql.password",
  doc: "Application user's password.",
});
mysql(
  "MYSQL_DATABASE",
  text((s) => /^[A-Za-z0-9_$]{1,64}$/.test(s) ? undefined : "must be 1 to 64 letters, digits, '_' or '$'"),
  { at: "mysql.database", doc: "Database to create; MYSQL_USER gets all privileges on it." },
);
mysql("MYSQL_REPL_USER", account, { default: "repl", at: "mysql.replUser", doc: "Replication user." });
mysql("MYSQL_REPL_PASSWORD", secret, {
  required: "replication user's password",
  at: "mysql.replPassword",
  doc: "Replication user's password.",
});
const MYSQL_ROOT_PASSWORD = mysql("MYSQL_ROOT_PASSWORD", secret, {
  at: "mysql.rootPassword",
  doc: "Root password; unset means a random one (see next).",
});
mysql("MYSQL_RANDOM_ROOT_PASSWORD", flag, {
  default: {
    doc: "true if no root password",
    text: (v) => String(v(MYSQL_ROOT_PASSWORD) === undefined),
  },
  check: (on, v) =>
    on && v(MYSQL_ROOT_PASSWORD) !== undefined ? "cannot be true when MYSQL_ROOT_PASSWORD is set" : undefined,
  at: "mysql.randomRootPassword",
  doc: "Generate a random root password, written to STATE_DIR/root-password (0600), never to the log.",
});
mysql("MYSQL_ONETIME_PASSWORD", flag, {
  default: "false",
  at: "mysql.onetimePassword",
  doc: "Expire the root password so it must be changed at first login.",
});
mysql("INNODB_BUFFER_POOL_SIZE", size, {
  unset: "70% of (memory - 384M)", // bufferPoolBytes() in src/mysql/mycnf.ts
  at: "mysql.bufferPoolSize",
  doc:
    "innodb_buffer_pool_size: megabytes, or K, M or G; default from the container's memory limit, at least 128M.",
});
mysql("MYSQL_CONNECT_TIMEOUT", duration(100, 60_000), {
  default: "2s",
  at: "mysql.connectTimeoutMs",
  doc: "Connect timeout to peers (a cut link never answers).",
});
mysql("MAX_REPLICATION_LAG", seconds(1000), {
  default: "30s",
  at: "mysql.maxLagSeconds",
  doc: "A replica lagging more than this reports unhealthy.",
});
mysql("SEMI_SYNC", flag, {
  default: "false",
  at: "mysql.semiSync",
  doc: "Semi-synchronous replication (AFTER_SYNC); no silent fallback to async.",
});

const tls = section("TLS");
/** All three TLS files, or none: what is wrong when only some are set. */
const allTls = (_: string, v: Values) =>
  [MYSQL_TLS_CA, MYSQL_TLS_CERT, MYSQL_TLS_KEY].every((s) => v(s) !== undefined)
    ? undefined
    : "needs MYSQL_TLS_CA, MYSQL_TLS_CERT and MYSQL_TLS_KEY set together";
const MYSQL_TLS_CA: Setting<string> = tls("MYSQL_TLS_CA", path, {
  at: "mysql.tls.ca",
  check: allTls,
  doc: "PEM file of the CA that signed every node's certificate. Set with the next two, TLS is on for " +
    "clients, replication and autopilot's own connections to peers, each verifying the peer's certificate " +
    "against it and the peer's address (see [TLS](#tls)).",
});
const MYSQL_TLS_CERT: Setting<string> = tls("MYSQL_TLS_CERT", path, {
  at: "mysql.tls.cert",
  check: allTls,
  doc: "PEM file of this node's certificate, signed by MYSQL_TLS_CA, naming the address peers reach it on " +
    "(SAN IP or DNS).",
});
const MYSQL_TLS_KEY: Setting<string> = tls("MYSQL_TLS_KEY", path, {
  at: "mysql.tls.key",
  check: allTls,
  doc: "PEM file of this node's private key (its path is shown, never its contents).",
});
tls("REQUIRE_TLS", flag, {
  default: "false",
  at: "mysql.requireTls",
  check: (on, v) =>
    on && v(MYSQL_TLS_CA) === undefined ? "needs MYSQL_TLS_CA, MYSQL_TLS_CERT and MYSQL_TLS_KEY" : undefined,
  doc: "`true`: the application and replication accounts refuse connections without TLS (`REQUIRE SSL`, " +
    "set by the primary and replicated).",
});

const keys = section("Consul keys");
keys("PRIMARY_KEY", consulKey, {
  default: namespaced("-primary"),
  at: "keys.primary",
  doc: "Lock key held by the primary's session.",
});
keys("BACKUP_LOCK_KEY", consulKey, {
  default: namespaced("-backup-running"),
  at: "keys.backupLock",
  doc: "Lock key held while a backup runs.",
});
keys("LAST_BACKUP_KEY", consulKey, {
  default: namespaced("-last-backup"),
  at: "keys.lastBackup",
  doc: "Names the latest complete snapshot.",
});
keys("LAST_BINLOG_KEY", consulKey, {
  default: namespaced("-last-binlog"),
  at: "keys.lastBinlog",
  doc: "Binlog file current at the last snapshot.",
});
keys("LAST_VERIFIED_KEY", consulKey, {
  default: namespaced("-last-verified"),
  at: "keys.lastVerified",
  doc: "The last snapshot a replica verified (BACKUP_VERIFY), and the outcome.",
});
keys("FAILOVER_LOCK_KEY", consulKey, {
  default: namespaced("-failover-lock"),
  at: "keys.failoverLock",
  doc: "Lock key held by the node running a failover or switchover; it keeps the record of the last one.",
});
keys("FAILOVER_PAUSE_KEY", consulKey, {
  default: namespaced("-failover-paused"),
  at: "keys.failoverPause",
  doc: "If this key exists, no automatic failover.",
});
keys("SESSION_NAME", text(), {
  default: namespaced("-primary-lock"),
  at: "session.name",
  doc: "Name of this node's Consul session.",
});
keys("SESSION_TTL", seconds(10_000, 86_400_000), {
  default: "20s",
  at: "session.ttlSeconds",
  doc: "Session TTL (10s to 24h). Consul may take up to twice this to expire a session.",
});

const failover = section("Failover");
failover("FAILOVER_QUIET_PERIOD", duration(0), {
  default: "5m",
  at: "failover.quietPeriodMs",
  doc: "After a failover, none again within this period while the failed primary is still alive.",
});
failover("RECOVERY_SETTLE_WINDOW", duration(1000), {
  default: "30s",
  at: "failover.recoverySettleMs",
  doc:
    "Consul lost its keys (no primary lock at all) and nodes hold this cluster's data: they wait this long " +
    "for each other to report, then the one holding every transaction becomes primary. Never shorter than " +
    "SESSION_TTL/2 + 2s.",
});
failover("REBUILD_ERRANT_NODE", flag, {
  default: "true",
  at: "failover.rebuildErrant",
  doc: "An errant node (transactions the primary lacks) first saves them to the snapshot store " +
    "(`errant-transactions/NODE/TIME_GTIDS`, as binlog events and as readable SQL), then moves its datadir aside " +
    "to `MYSQL_DATADIR.errant-TIME` (never deleted) and rebuilds from the latest snapshot; `false`: saved, not " +
    "rebuilt. Needs MYSQL_DATADIR below the volume's root.",
});
failover("FAILSAFE_MODE", flag, {
  default: "true",
  at: "failover.failsafe",
  doc:
    "While Consul cannot be reached, the primary stays writable as long as every other member it knows of " +
    "answers over MySQL and replicates from it; read-only as soon as one does not. `false`: read-only at once.",
});

const backups = section("Backups");
backups("BACKUP_NAME", text(checkBackupName), {
  default: namespaced("-backup-%Y-%m-%dT%H-%M-%SZ"),
  at: "backup.name",
  doc: "Snapshot name; strftime directives, UTC.",
});
backups("BACKUP_TTL", seconds(1000), {
  default: "86400",
  at: "backup.ttlSeconds",
  doc: "Time between snapshots: seconds, or a duration like 24h.",
});
backups("BACKUP_FROM", oneOf({ primary: "primary", replica: "replica" } as const), {
  default: "replica",
  at: "backup.from",
  doc: "Who takes them: `replica` (a healthy one; the primary if none is) or `primary`.",
});
backups("BACKUP_RETAIN_COUNT", int(1, 100_000), {
  default: "7",
  at: "backup.retainCount",
  doc: "Keep at least the newest N snapshots (the last one is never deleted), and every archived binlog a " +
    "kept snapshot needs.",
});
backups("BACKUP_RETAIN_AGE", duration(1), {
  at: "backup.retainAgeMs",
  doc: "Also keep every snapshot newer than this duration.",
});
backups("BACKUP_ON_STOP", flag, {
  default: "false",
  at: "backup.onStop",
  doc: "Take a last snapshot when the primary is stopped cleanly.",
});
backups("BACKUP_VERIFY", flag, {
  default: "false",
  at: "backup.verify",
  doc: "A healthy replica restores each new snapshot in MYSQL_TMPDIR, checks every table and replays the " +
    "archived binlogs after it to the archive's end.",
});
backups("BACKUP_ENCRYPTION_KEY", ageIdentity, {
  at: "backup.encryption.identity",
  doc:
    "An age identity (`AGE-SECRET-KEY-1…`, from `age-keygen`), or the file `age-keygen -o` writes (its `#` " +
    "comment lines are skipped; best as BACKUP_ENCRYPTION_KEY_FILE, a Docker secret): snapshots and archived " +
    "binlogs are encrypted to its recipient before they leave the node, and restores, verification and " +
    "point-in-time restores decrypt with it. Several identities, one a line, while a key is rotated: the last " +
    "is the one encrypted to, every one decrypts. Unset on every node: nothing is encrypted.",
});
backups("BACKUP_ENCRYPTION_RECIPIENTS", ageRecipients, {
  at: "backup.encryption.recipients",
  doc: "age recipients (`age1…`, comma separated) to encrypt to as well, or instead: a node with only " +
    "these encrypts but cannot restore.",
});
backups("BACKUP_ALLOW_UNENCRYPTED", flag, {
  at: "backup.encryption.allowUnencrypted",
  doc:
    "`true` lets a node with BACKUP_ENCRYPTION_KEY restore (and verify) unencrypted snapshots and archived " +
    "binlogs, such as those of a cluster from before encryption was turned on, and lets a node with neither key " +
    "variable store unencrypted ones though the cluster's last snapshot is encrypted (encryption turned off on " +
    "purpose). Unset: both are refused, with one line.",
});
backups("BINLOG_ARCHIVE_INTERVAL", seconds(1000, 86_400_000, { goDuration: true }), {
  default: "60s",
  at: "backup.archiveIntervalSeconds",
  doc:
    "How often the primary closes its open binlog (when it holds transactions) and archives every closed " +
    "binlog to the snapshot store, for point-in-time restores; ContainerPilot's `binlog-archive` task interval " +
    "(so no `d`: 24h at most).",
});
const SNAPSHOT_BACKEND = backups(
  "SNAPSHOT_BACKEND",
  oneOf({ local: "local", s3: "s3", manta: "manta" } as const),
  {
    default: "local",
    at: "storage.backend",
    doc: "`local` (a directory), `s3` or `manta`.",
  },
);
backups("SNAPSHOT_DIR", path, {
  default: "/var/lib/autopilot/snapshots",
  at: "storage.localDir",
  doc: "Directory of the `local` store (absolute path).",
});

const s3 = section("S3 store", { setting: SNAPSHOT_BACKEND, is: "s3" });
const S3_ENDPOINT = s3("S3_ENDPOINT", httpUrl, {
  at: "storage.s3.endpoint",
  doc: "Endpoint URL of an S3-compatible store (unset: AWS).",
});
s3("S3_REGION", text(), { default: "us-east-1", at: "storage.s3.region", doc: "Region." });
s3("S3_BUCKET", text(), { required: true, at: "storage.s3.bucket", doc: "Bucket (must exist)." });
s3("S3_PREFIX", text((s) => s.startsWith("/") ? "must not start with '/'" : undefined), {
  default: namespaced("/"),
  at: "storage.s3.prefix",
  doc: "Key prefix inside the bucket.",
});
s3("S3_FORCE_PATH_STYLE", flag, {
  default: { doc: "true if S3_ENDPOINT", text: (v) => String(v(S3_ENDPOINT) !== undefined) },
  at: "storage.s3.forcePathStyle",
  doc: "Path-style requests (most S3-compatible servers).",
});
const S3_ACCESS_KEY_ID = s3("S3_ACCESS_KEY_ID", secret, {
  at: "storage.s3.accessKeyId",
  doc: "Access key id.",
});
s3("S3_SECRET_ACCESS_KEY", secret, {
  with: S3_ACCESS_KEY_ID,
  at: "storage.s3.secretAccessKey",
  doc: "Secret access key.",
});

const manta = section("Manta store", { setting: SNAPSHOT_BACKEND, is: "manta" });
manta("MANTA_URL", httpUrl, {
  default: "https://us-east.manta.joyent.com",
  at: "storage.manta.url",
  doc: "Manta endpoint.",
});
const MANTA_USER = manta("MANTA_USER", text(), {
  required: true,
  at: "storage.manta.user",
  doc: "Manta account.",
});
manta("MANTA_SUBUSER", text(), { at: "storage.manta.subuser", doc: "Subuser, if any." });
manta("MANTA_ROLE", text(), { at: "storage.manta.role", doc: "Role, if any." });
manta("MANTA_KEY_ID", text(), {
  required: true,
  at: "storage.manta.keyId",
  doc: "SSH key fingerprint (`scripts/setup.sh` writes it).",
});
manta("MANTA_PRIVATE_KEY", pemKey, {
  required: true,
  at: "storage.manta.privateKey",
  doc: "Private key, newlines written as `#` (`scripts/setup.sh` writes the key file for its `_FILE` twin).",
});
manta("MANTA_BUCKET", text(), {
  default: { doc: "/MANTA_USER/stor", text: (v) => `/${v(MANTA_USER) ?? ""}/stor` },
  at: "storage.manta.bucket",
  doc: "Manta directory for snapshots.",
});
manta("MANTA_TLS_INSECURE", flag, {
  default: "false",
  at: "storage.manta.tlsInsecure",
  doc: "Skip TLS certificate checks (tests only).",
});

internal(
  "CONTAINERPILOT_MYSQL_IP",
  "Set by ContainerPilot: the address it advertises for the `mysql` job (nodeAddress() in src/node.ts).",
);
internal(
  "CONTAINERPILOT_PID",
  "Set by ContainerPilot for what it runs: a health check under it registers the `SERVICE_NAME` service " +
    "again when the agent lost it (src/services.ts).",
);
internal(
  "NODE_V8_COVERAGE",
  "Read (never set) by `node:child_process`, which src/exec.ts uses to join a pipeline's stages by pipes.",
);
internal(
  "AUTOPILOT_CGROUP_MEMORY_LIMIT",
  "Set by the image's entrypoint: the cgroup's memory limit (ENTRYPOINT_LIMIT_VARIABLE in src/node.ts).",
);

/** Every setting, in README order. */
export const VARIABLES: readonly VariableSpec[] = Object.freeze(SETTINGS.map((s) => Object.freeze(s)));

/** The variables the program reads that are not settings: set by ContainerPilot or the image's entrypoint. */
export const INTERNAL_VARIABLES: readonly VariableSpec[] = Object.freeze([...INTERNALS]);

/**
 * Every variable name the program reads: the settings in README order (each secret followed by its `_FILE`
 * twin), then the internal ones. This is the `env` list of `deno.json`'s `autopilot` permission set
 * (`deno task docs` writes it there).
 */
export const ENV_NAMES: readonly string[] = Object.freeze(
  [...VARIABLES, ...INTERNAL_VARIABLES].flatMap((v) => v.file === undefined ? [v.name] : [v.name, v.file]),
);

// ---- the loader --------------------------------------------------------------------------------------------

/** Reads an environment variable; the loader never touches the real environment itself. */
export type EnvReader = (name: string) => string | undefined;

/** Facts about the machine that defaults depend on, and the files secrets are read from. */
export interface ConfigHost {
  hostname(): string;
  /**
   * The text of the file a `_FILE` twin names; throws when it cannot be read.
   * @default Deno.readTextFileSync
   */
  readFile?(path: string): string;
}

/** A setting's text as found: from the variable, from its `_FILE` twin's file, or what is wrong with them. */
type Found = { text: string; from?: string } | { problem: string } | undefined;

/** `value`, unless it is empty or unset. */
function nonEmpty(value: string | undefined): string | undefined {
  return value === undefined || value === "" ? undefined : value;
}

/**
 * The text of a setting: from the environment (trimmed unless secret), or for a secret from the file its
 * `_FILE` twin names ({@link readSecretFile}); empty counts as unset. Every setting is read here and only here.
 */
function readText(env: EnvReader, setting: VariableSpec, host: ConfigHost): Found {
  const raw = env(setting.name);
  const value = nonEmpty(setting.secret || raw === undefined ? raw : raw.trim());
  const path = setting.file === undefined ? undefined : nonEmpty(env(setting.file)?.trim());
  if (path === undefined) return value === undefined ? undefined : { text: value };
  if (value !== undefined) {
    return { problem: `${setting.name} and ${setting.file} are both set: set only one of them` };
  }
  const text = readSecretFile(path, host.readFile ?? Deno.readTextFileSync);
  const from = `${setting.file}=${path}`;
  return text instanceof Wrong ? { problem: `${from} ${text.what}` } : { text, from };
}

/**
 * The value a secret's file holds: its whole content less ONE trailing newline (`\n` or `\r\n`), the one an
 * editor or `echo` adds. (The official MySQL image's `file_env` reads `"$(< file)"`, which strips every
 * trailing newline; here a value that ends in newlines keeps all but the last.) Nothing else is trimmed.
 *
 * @returns The text, or what is wrong with the file, in words that never include its content.
 */
function readSecretFile(path: string, readFile: (path: string) => string): string | Wrong {
  if (!path.startsWith("/")) return wrong("must be an absolute path");
  let content: string;
  try {
    content = readFile(path);
  } catch (e) {
    return wrong(`cannot be read: ${unreadable(e)}`);
  }
  const text = content.endsWith("\r\n")
    ? content.slice(0, -2)
    : content.endsWith("\n")
    ? content.slice(0, -1)
    : content;
  return text === "" ? wrong("is an empty file: write the secret in it") : text;
}

/** The one line for a non-secret setting whose value holds a secret key (`AGE-SECRET-KEY-`, `-----BEGIN`). */
function secretKeyMisplaced(s: Setting<unknown>): string {
  const head = `${s.name} holds a secret key (its value is not shown)`;
  if (s.kind === ageRecipients) {
    return `${head}: that is a secret key, not a recipient: put the identity (AGE-SECRET-KEY-1…) in ` +
      "BACKUP_ENCRYPTION_KEY_FILE and its public key (age1…, from `age-keygen -y`) here, and replace that key " +
      "if it was shared";
  }
  if (s.kind === path) {
    return `${head}: that is a secret key, not a path: write the PEM to a file and set ${s.name} to the file's ` +
      "absolute path";
  }
  return `${head}: that is a secret key, not a value for ${s.name}: remove it, and replace that key if it was shared`;
}

/** Why a file could not be read, in a few words (never its content). */
function unreadable(e: unknown): string {
  if (e instanceof Deno.errors.NotFound) return "no such file";
  if (e instanceof Deno.errors.IsADirectory) return "it is a directory";
  if (e instanceof Deno.errors.NotCapable) {
    const dirs = SECRET_FILE_DIRS.join(", ");
    return `autopilot may read files only under ${dirs}: put it there (Docker mounts secrets in /run/secrets)`;
  }
  if (e instanceof Deno.errors.PermissionDenied) return "permission denied (check the file's owner and mode)";
  return e instanceof Error ? e.name : String(e);
}

/**
 * Reads, validates and freezes the configuration: each setting in README order (a setting's default may
 * depend on the ones before it), then the rules between settings, then each value where it lands.
 *
 * @param env Reads one variable (for example `(n) => Deno.env.get(n)`); empty values count as unset.
 * @param host Supplies machine facts used by defaults (the hostname).
 * @returns The frozen configuration.
 * @throws {ConfigError} listing every wrong or missing variable, one line each, in README order.
 */
export function loadConfig(env: EnvReader, host: ConfigHost): Config {
  /** Each setting read: its value (the default's when the text is wrong) and whether it was set and valid. */
  const read = new Map<Setting<unknown>, { value: unknown; set: boolean; ok: boolean }>();
  const v: Values = <T>(s: Setting<T>) => read.get(s as Setting<unknown>)?.value as T | undefined;
  const problems: { index: number; text: string }[] = [];
  const problem = (s: Setting<unknown>, what: string, value?: string) => {
    if (value !== undefined && !s.secret && looksLikeSecretKey(value)) {
      // Key material typed into the wrong variable: neither the value nor a message that may quote it.
      problems.push({ index: s.index, text: secretKeyMisplaced(s) });
      return;
    }
    const shown = value === undefined || s.secret ? "" : `: current value is '${value}'`;
    problems.push({ index: s.index, text: `${s.name} ${what}${shown}` });
  };

  for (const s of SETTINGS) {
    if (s.when && v(s.when.setting) !== s.when.is) continue;
    const found = readText(env, s, host);
    if (found !== undefined && "problem" in found) {
      problems.push({ index: s.index, text: found.problem });
      read.set(s, { value: undefined, set: true, ok: false });
      continue;
    }
    const given = found?.text;
    const text = given ?? s.fallback(v, host);
    const value = text === undefined ? undefined : s.kind.parse(text);
    if (text === undefined && s.required) problem(s, s.required);
    if (!(value instanceof Wrong)) {
      read.set(s, { value, set: given !== undefined, ok: true });
      continue;
    }
    // a secret read from a file: say which
    problem(s, found?.from === undefined ? value.what : `${value.what} (read from ${found.from})`, text);
    // For the settings after it, a wrong value counts as its default (SERVICE_NAME's, in the key names).
    const fallback = given === undefined ? undefined : s.fallback(v, host);
    const parsed = fallback === undefined ? undefined : s.kind.parse(fallback);
    read.set(s, { value: parsed instanceof Wrong ? undefined : parsed, set: given !== undefined, ok: false });
  }

  for (const [s, r] of read) {
    if (s.with) {
      const other = read.get(s.with)?.set ?? false;
      if (r.set && !other) problem(s.with, `must be set together with ${s.name}`);
      if (!r.set && other) problem(s, `must be set together with ${s.with.name}`);
    }
    if (s.check && r.ok && r.value !== undefined) {
      const what = s.check(r.value, v);
      if (what !== undefined) problem(s, what, s.kind.show(r.value));
    }
  }
  if (problems.length > 0) {
    throw new ConfigError(problems.sort((a, b) => a.index - b.index).map((p) => p.text));
  }

  const config: Record<string, unknown> = {};
  for (const [s, r] of read) if (r.value !== undefined) merge(config, s.land(r.value, v));
  return deepFreeze(config as unknown as Config);
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

function fmtMs(ms: number): string {
  if (ms % 3_600_000 === 0) return `${ms / 3_600_000}h`;
  if (ms % 60_000 === 0) return `${ms / 60_000}m`;
  if (ms % 1000 === 0) return `${ms / 1000}s`;
  return `${ms}ms`;
}

/** `{ a: { b: value } }` for the path `a.b`. */
function nest(path: string, value: unknown): Record<string, unknown> {
  return path.split(".").reduceRight<unknown>((inner, key) => ({ [key]: inner }), value) as Record<
    string,
    unknown
  >;
}

function pathValue(config: Config, path: string): unknown {
  return path.split(".").reduce<unknown>(
    (o, key) => (o as Record<string, unknown> | undefined)?.[key],
    config,
  );
}

function isPlainObject(x: unknown): x is Record<string, unknown> {
  return x !== null && typeof x === "object" && !(x instanceof Secret) && !Array.isArray(x);
}

/** Copies `part` into `into`, merging the objects both have. */
function merge(into: Record<string, unknown>, part: object): void {
  for (const [key, value] of Object.entries(part)) {
    const there = into[key];
    if (isPlainObject(value) && isPlainObject(there)) merge(there, value);
    else into[key] = isPlainObject(value) ? { ...value } : value;
  }
}

function deepFreeze<T>(value: T): T {
  if (isPlainObject(value)) {
    for (const child of Object.values(value)) deepFreeze(child);
    Object.freeze(value);
  }
  return value;
}

// ---- autopilot config and the README -----------------------------------------------------------------------

/**
 * The effective configuration as `NAME=value` lines for `autopilot config`, secrets redacted: each setting's
 * value read back from where it landed in the configuration.
 *
 * @param env The same reader the configuration was loaded from.
 * @returns One entry per variable: its name, the effective value text, and whether it came from the default.
 */
export function describeConfig(
  config: Config,
  env: EnvReader,
): { name: string; value: string; source: "env" | "default" | "file"; file?: string }[] {
  return SETTINGS.map((s) => {
    const set = (env(s.name) ?? "").trim() !== "";
    const value = s.effective(config) ?? s.unset;
    const shown = s.secret ? (value === undefined ? "(unset)" : "<redacted>") : value ?? "(unset)";
    const file = s.file === undefined || set ? undefined : nonEmpty(env(s.file)?.trim());
    if (file !== undefined) return { name: s.name, value: shown, source: "file", file };
    return { name: s.name, value: shown, source: set ? "env" : "default" };
  });
}

/** The README's configuration table, generated from the settings. */
export function configTableMarkdown(): string {
  const lines: string[] = [];
  let section = "";
  for (const spec of VARIABLES) {
    if (spec.section !== section) {
      section = spec.section;
      lines.push("", `**${section}**`, "", "| variable | default | meaning |", "| --- | --- | --- |");
    }
    const secret = spec.secret ? ` Secret: never printed; or read from the file \`${spec.file}\` names.` : "";
    lines.push(
      `| \`${spec.name}\` | ${
        spec.default === "-" ? "unset" : `\`${spec.default}\``
      } | ${spec.doc}${secret} |`,
    );
  }
  return lines.join("\n").trimStart() + "\n";
}
