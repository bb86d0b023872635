/**
 * What each node of the local cluster (`scripts/local_cluster.ts`) gets in its environment: the user's env
 * file, as compose's `env_file` would hand it to every container, except the wiring the local cluster owns.
 * Pure decisions over plain values; the script does the reading, printing and starting.
 *
 * @module
 */
import { VARIABLES } from "../src/config.ts";
import type { EnvFileEntry } from "./env_file.ts";

/**
 * The variables the local cluster sets on every node itself, with the reason shown when an env file sets
 * one. SNAPSHOT_DIR is owned only while SNAPSHOT_BACKEND is `local` (see {@linkcode ownedVariables}).
 */
export const OWNED: Readonly<Record<string, string>> = Object.freeze({
  NODE_NAME: "each node is named n1, n2, ...",
  NODE_ADDRESS: "each node has its namespace's address",
  CONSUL: "the nodes use the cluster's own Consul agent",
  CONSUL_AGENT: "the Consul agent runs on the host, not in each node's namespace",
  CONTAINERPILOT_MYSQL_IP: "it is ContainerPilot's; the local cluster sets NODE_ADDRESS",
  STATE_DIR: "each node has its own directory in the run dir",
  MYSQL_DATADIR: "each node has its own directory in the run dir",
  MYSQL_CNF: "each node has its own directory in the run dir",
  MYSQL_SOCKET: "each node has its own directory in the run dir",
  MYSQL_TMPDIR: "each node has its own directory in the run dir",
  MYSQL_OS_USER: "mysqld runs as root, on files in the run dir",
  SNAPSHOT_DIR: "with SNAPSHOT_BACKEND=local the nodes share the run dir's snapshot directory",
});

/** The three passwords taken from the script's own environment too (it wins over the env file). */
export const PASSWORDS = ["MYSQL_REPL_PASSWORD", "MYSQL_PASSWORD", "MYSQL_ROOT_PASSWORD"] as const;

/** Settings the local cluster gives every node unless the env file says otherwise. */
export const LOCAL_DEFAULTS: Readonly<Record<string, string>> = Object.freeze({
  MYSQL_USER: "app",
  MYSQL_DATABASE: "app",
  INNODB_BUFFER_POOL_SIZE: "64M",
  LOG_LEVEL: "INFO",
});

const KNOWN = new Set(VARIABLES.map((v) => v.name));

/**
 * The owned variables for these settings: all of {@linkcode OWNED}, except SNAPSHOT_DIR when the user chose
 * another store (then SNAPSHOT_DIR is unused, and left as the user wrote it).
 */
export function ownedVariables(backend: string | undefined): string[] {
  const local = (backend ?? "").trim() === "" || backend!.trim().toLowerCase() === "local";
  return Object.keys(OWNED).filter((name) => local || name !== "SNAPSHOT_DIR");
}

/** What {@linkcode clusterSettings} works from. */
export interface ClusterSettingsInput {
  /** The env file's variables; undefined when no file was read. */
  readonly file?: ReadonlyMap<string, EnvFileEntry>;
  /** The env file's name, as notices show it. */
  readonly fileName?: string;
  /** The script's own environment: only {@linkcode PASSWORDS} are taken from it. */
  readonly environment: (name: string) => string | undefined;
  /** --log-level, when given. */
  readonly logLevel?: string;
  /** Makes a password for one nobody set. */
  readonly generate: () => string;
}

/** The settings every node gets, before its own wiring. */
export interface ClusterSettings {
  /** Every variable the nodes get besides the owned ones (an empty value means unset). */
  readonly settings: Readonly<Record<string, string>>;
  /** The passwords this run made up. */
  readonly generated: readonly string[];
  /** Passwords taken from the script's environment. */
  readonly fromEnvironment: readonly string[];
  /** One line each: what was overridden or ignored, and why. Never a value. */
  readonly notices: readonly string[];
}

/**
 * Merges the env file with the local cluster's defaults, the passwords from the environment and --log-level.
 * Precedence, lowest first: {@linkcode LOCAL_DEFAULTS}, the env file, the environment (passwords only) and
 * --log-level; owned variables are dropped from the file with a notice, unknown ones too.
 */
export function clusterSettings(input: ClusterSettingsInput): ClusterSettings {
  const fileName = input.fileName ?? "the env file";
  const file = input.file ?? new Map<string, EnvFileEntry>();
  const owned = new Set(ownedVariables(file.get("SNAPSHOT_BACKEND")?.value));
  const settings: Record<string, string> = { ...LOCAL_DEFAULTS };
  const notices: string[] = [];
  const unknown: string[] = [];
  for (const [name, { value, line }] of file) {
    if (Object.hasOwn(OWNED, name)) {
      if (owned.has(name) && value.trim() !== "") {
        notices.push(
          `${fileName}:${line} sets ${name}: not used, the local cluster sets it (${OWNED[name]})`,
        );
        continue;
      }
      if (owned.has(name)) continue;
    } else if (!KNOWN.has(name)) {
      unknown.push(name);
      continue;
    }
    settings[name] = value;
  }
  if (unknown.length > 0) {
    notices.push(
      `${fileName} sets ${unknown.join(", ")}, which autopilot does not read: ignored ` +
        "(the variables are in the README's configuration table)",
    );
  }
  const set = (v: string | undefined): v is string => v !== undefined && v.trim() !== "";
  const fromEnvironment: string[] = [];
  for (const name of PASSWORDS) {
    const env = input.environment(name);
    if (!set(env)) continue;
    if (set(file.get(name)?.value)) {
      notices.push(`${name} is set in the environment and in ${fileName}: the environment's is used`);
    }
    settings[name] = env;
    fromEnvironment.push(name);
  }
  // Every password is set here, to a value or to "" (unset): nothing else supplies one.
  const generated: string[] = [];
  const needs: Record<(typeof PASSWORDS)[number], boolean> = {
    MYSQL_REPL_PASSWORD: true,
    // no application user, no password (MYSQL_USER= in the file)
    MYSQL_PASSWORD: set(settings.MYSQL_USER),
    // MYSQL_RANDOM_ROOT_PASSWORD set: autopilot's choice, not ours
    MYSQL_ROOT_PASSWORD: !set(settings.MYSQL_RANDOM_ROOT_PASSWORD),
  };
  for (const name of PASSWORDS) {
    if (set(settings[name])) continue;
    if (needs[name]) {
      settings[name] = input.generate();
      generated.push(name);
    } else {
      settings[name] = "";
    }
  }
  if (input.logLevel !== undefined) {
    if (set(file.get("LOG_LEVEL")?.value)) {
      notices.push(`--log-level ${input.logLevel} overrides LOG_LEVEL from ${fileName}`);
    }
    settings.LOG_LEVEL = input.logLevel;
  }
  return { settings, generated, fromEnvironment, notices };
}

/**
 * Node 1's environment as the validation before the start sees it: the settings, with the wiring's shape
 * (the run dir, addresses and Consul port exist only once the cluster starts; the script's own values are
 * valid by construction, so only the user's values can be wrong).
 */
export function validationEnv(settings: Readonly<Record<string, string>>): Record<string, string> {
  const dir = "/run/autopilot-local-cluster/node1";
  const wiring: Record<string, string> = {
    NODE_NAME: "n1",
    NODE_ADDRESS: "10.99.0.2",
    CONSUL: "10.99.0.1:8500",
    STATE_DIR: `${dir}/state`,
    MYSQL_DATADIR: `${dir}/data`,
    MYSQL_CNF: `${dir}/my.cnf`,
    MYSQL_SOCKET: `${dir}/run/mysqld.sock`,
    MYSQL_TMPDIR: `${dir}/tmp`,
    MYSQL_OS_USER: "root",
    SNAPSHOT_DIR: "/run/autopilot-local-cluster/snapshots",
  };
  const owned = ownedVariables(settings.SNAPSHOT_BACKEND);
  return { ...settings, ...Object.fromEntries(owned.map((name) => [name, wiring[name] ?? ""])) };
}

/** `s` as one word for sh: bare when it is plainly safe, else single-quoted. */
export function shellWord(s: string): string {
  return /^[A-Za-z0-9_\/.,:@%+=-]+$/.test(s) ? s : `'${s.replaceAll("'", `'\\''`)}'`;
}

/**
 * A file for sh's `.` that gives exactly `env` to what runs after it: it first unsets every variable autopilot
 * reads (so nothing leaks in from the caller's shell), then exports each of `env`'s, single-quoted.
 */
export function shellEnvFile(env: Readonly<Record<string, string>>, comment: readonly string[]): string {
  // the secrets' _FILE twins too: one left set beside its variable would be refused
  const clear = [
    ...new Set([...VARIABLES.flatMap((v) => [v.name, ...(v.file ? [v.file] : [])]), ...Object.keys(OWNED)]),
  ];
  return [
    ...comment.map((l) => `# ${l}`),
    `unset ${clear.join(" ")}`,
    ...Object.entries(env).map(([k, v]) => `export ${k}='${v.replaceAll("'", `'\\''`)}'`),
    "",
  ].join("\n");
}
