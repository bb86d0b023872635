import { assert, assertEquals, assertThrows } from "./assert.ts";
import {
  ConfigError,
  configTableMarkdown,
  describeConfig,
  ENV_NAMES,
  fileTwin,
  INTERNAL,
  INTERNAL_VARIABLES,
  loadConfig,
  parseDuration,
  parseSize,
  Secret,
  SECRET_FILE_DIRS,
  VARIABLES,
} from "../../src/config.ts";
import { ENTRYPOINT_LIMIT_VARIABLE } from "../../src/node.ts";
import { withConfigTable, withEnvList } from "../../scripts/gen_docs.ts";

const host = { hostname: () => "node-a" };
const load = (vars: Record<string, string>) => loadConfig((n) => vars[n], host);
const base = { MYSQL_REPL_PASSWORD: "replpw" };
const problemsOf = (vars: Record<string, string>): readonly string[] => {
  try {
    load(vars);
  } catch (e) {
    if (e instanceof ConfigError) return e.problems;
    throw e;
  }
  throw new Error("expected a ConfigError");
};

Deno.test("loadConfig() gives documented defaults when only the required variable is set", () => {
  const c = load(base);
  assertEquals(c.serviceName, "mysql");
  assertEquals(c.consul.url, "http://consul:8500");
  assertEquals(c.consul.timeoutMs, 2000);
  assertEquals(c.log, { level: "info", format: "text" });
  assertEquals(c.node, { name: "node-a", priority: 1, stateDir: "/var/lib/autopilot" });
  assertEquals(c.mysql.datadir, "/var/lib/mysql/data");
  assertEquals(c.mysql.osUser, "mysql");
  assertEquals(c.mysql.replUser, "repl");
  assertEquals(c.mysql.replPassword.reveal(), "replpw");
  assertEquals(c.mysql.randomRootPassword, true);
  assertEquals(c.mysql.onetimePassword, false);
  assertEquals(c.mysql.bufferPoolSize, undefined);
  assertEquals(c.mysql.maxLagSeconds, 30);
  assertEquals(c.session, { name: "mysql-primary-lock", ttlSeconds: 20 });
  assertEquals(c.backup.name, "mysql-backup-%Y-%m-%dT%H-%M-%SZ");
  assertEquals(c.backup.ttlSeconds, 86400);
  assertEquals(c.storage, { backend: "local", localDir: "/var/lib/autopilot/snapshots" });
});

Deno.test("loadConfig() namespaces every key and session default with SERVICE_NAME", () => {
  const c = load({ ...base, SERVICE_NAME: "orders-db" });
  assertEquals(c.keys, {
    primary: "orders-db-primary",
    backupLock: "orders-db-backup-running",
    lastBackup: "orders-db-last-backup",
    lastBinlog: "orders-db-last-binlog",
    lastVerified: "orders-db-last-verified",
    failoverLock: "orders-db-failover-lock",
    failoverPause: "orders-db-failover-paused",
  });
  assertEquals(c.session.name, "orders-db-primary-lock");
  assertEquals(c.backup.name, "orders-db-backup-%Y-%m-%dT%H-%M-%SZ");
});

Deno.test("loadConfig() keeps an explicit key over the namespaced default", () => {
  assertEquals(
    load({ ...base, SERVICE_NAME: "x-db", PRIMARY_KEY: "legacy/primary" }).keys.primary,
    "legacy/primary",
  );
});

Deno.test("loadConfig() returns a deeply frozen object", () => {
  const c = load(base);
  assert(Object.isFrozen(c) && Object.isFrozen(c.mysql) && Object.isFrozen(c.storage));
  assertThrows(() => {
    (c.mysql as { port: number }).port = 1;
  }, TypeError);
});

Deno.test("loadConfig() takes a '#' in a value literally, never as a comment", () => {
  const c = load({ MYSQL_REPL_PASSWORD: "pa#ss word ", MYSQL_DATABASE: "app" });
  assertEquals(c.mysql.replPassword.reveal(), "pa#ss word ");
});

Deno.test("loadConfig() reports a missing replication password in one line naming the variable", () => {
  assertEquals(problemsOf({}), ["MYSQL_REPL_PASSWORD is required (replication user's password)"]);
});

Deno.test("loadConfig() reports every wrong variable, each with its current value", () => {
  assertEquals(problemsOf({ ...base, BACKUP_TTL: "1x", MYSQL_PORT: "70000", LOG_LEVEL: "chatty" }), [
    "LOG_LEVEL must be one of debug, info, warn, warning, error, critical, fatal: current value is 'chatty'",
    "MYSQL_PORT must be a whole number from 1 to 65535: current value is '70000'",
    "BACKUP_TTL must be a duration such as 30, 90s, 15m, 24h or 1h30m (a plain number is seconds): current value is '1x'",
  ]);
});

Deno.test("loadConfig() never shows a secret's value in a problem", () => {
  const problems = problemsOf({
    MYSQL_REPL_PASSWORD: "s3cret",
    MYSQL_ROOT_PASSWORD: "r00t",
    MYSQL_RANDOM_ROOT_PASSWORD: "yes",
  });
  assertEquals(problems, [
    "MYSQL_RANDOM_ROOT_PASSWORD cannot be true when MYSQL_ROOT_PASSWORD is set: current value is 'true'",
  ]);
  assert(!problems.join().includes("r00t"));
});

Deno.test("loadConfig() requires MYSQL_USER and MYSQL_PASSWORD together", () => {
  assertEquals(problemsOf({ ...base, MYSQL_USER: "app" }), [
    "MYSQL_PASSWORD must be set together with MYSQL_USER",
  ]);
  assertEquals(problemsOf({ ...base, MYSQL_PASSWORD: "x" }), [
    "MYSQL_USER must be set together with MYSQL_PASSWORD",
  ]);
});

Deno.test("loadConfig() turns off the random root password when a root password is given", () => {
  const c = load({ ...base, MYSQL_ROOT_PASSWORD: "r" });
  assertEquals(c.mysql.randomRootPassword, false);
  assertEquals(c.mysql.rootPassword?.reveal(), "r");
});

Deno.test("loadConfig() parses CONSUL as host, host:port or URL", () => {
  const cases: [string, string][] = [
    ["consul", "http://consul:8500"],
    ["10.0.0.5:8501", "http://10.0.0.5:8501"],
    ["https://c.example:443", "https://c.example:443"],
    ["http://127.0.0.1:18500/", "http://127.0.0.1:18500"],
  ];
  for (const [input, url] of cases) assertEquals(load({ ...base, CONSUL: input }).consul.url, url, input);
  assertEquals(load({ ...base, CONSUL: "consul:9", CONSUL_AGENT: "yes" }).consul.url, "http://localhost:9");
  assertEquals(problemsOf({ ...base, CONSUL: "ftp://x" }), [
    "CONSUL must be host, host:port or http(s)://host:port: current value is 'ftp://x'",
  ]);
  assertEquals(problemsOf({ ...base, CONSUL: "c:99999" }).length, 1);
});

Deno.test("loadConfig() accepts the flag spellings of the original blueprint", () => {
  for (const t of ["1", "true", "YES", "on", "y"]) {
    assertEquals(load({ ...base, SEMI_SYNC: t }).mysql.semiSync, true, t);
  }
  for (const f of ["0", "false", "No", "off", "n"]) {
    assertEquals(load({ ...base, SEMI_SYNC: f }).mysql.semiSync, false, f);
  }
  assertEquals(problemsOf({ ...base, SEMI_SYNC: "maybe" }), [
    "SEMI_SYNC must be true or false (also yes/no, on/off, 1/0): current value is 'maybe'",
  ]);
});

Deno.test("loadConfig() maps Python log level names to logtape's", () => {
  assertEquals(load({ ...base, LOG_LEVEL: "DEBUG" }).log.level, "debug");
  assertEquals(load({ ...base, LOG_LEVEL: "WARN" }).log.level, "warning");
  assertEquals(load({ ...base, LOG_LEVEL: "critical" }).log.level, "fatal");
});

Deno.test("loadConfig() bounds SESSION_TTL to what Consul accepts", () => {
  assertEquals(load({ ...base, SESSION_TTL: "25" }).session.ttlSeconds, 25);
  assertEquals(problemsOf({ ...base, SESSION_TTL: "5s" }), [
    "SESSION_TTL must be from 10s to 24h: current value is '5s'",
  ]);
  assertEquals(problemsOf({ ...base, SESSION_TTL: "25h" }).length, 1);
});

Deno.test("loadConfig() rejects BACKUP_NAME directives it cannot render", () => {
  assertEquals(load({ ...base, BACKUP_NAME: "db-%Y%m%d-%s" }).backup.name, "db-%Y%m%d-%s");
  assertEquals(
    problemsOf({ ...base, BACKUP_NAME: "db-%%" }).length,
    1,
    "'%' cannot appear in a snapshot key",
  );
  assertEquals(problemsOf({ ...base, BACKUP_NAME: "db-%Q" }), [
    "BACKUP_NAME has an unsupported strftime directive '%Q' (supported: %Y %y %m %d %H %M %S %j %s): current value is 'db-%Q'",
  ]);
  assertEquals(problemsOf({ ...base, BACKUP_NAME: "a/b" }).length, 1);
});

Deno.test("loadConfig() reads INNODB_BUFFER_POOL_SIZE as megabytes or with a unit", () => {
  assertEquals(load({ ...base, INNODB_BUFFER_POOL_SIZE: "512" }).mysql.bufferPoolSize, 512 * 2 ** 20);
  assertEquals(load({ ...base, INNODB_BUFFER_POOL_SIZE: "2G" }).mysql.bufferPoolSize, 2 * 2 ** 30);
  assertEquals(problemsOf({ ...base, INNODB_BUFFER_POOL_SIZE: "1K" }).length, 1);
  assertEquals(problemsOf({ ...base, INNODB_BUFFER_POOL_SIZE: "lots" }).length, 1);
});

Deno.test("loadConfig() requires absolute paths", () => {
  assertEquals(problemsOf({ ...base, MYSQL_DATADIR: "data" }), [
    "MYSQL_DATADIR must be an absolute path: current value is 'data'",
  ]);
});

Deno.test("loadConfig() requires the S3 bucket only for the s3 backend, and defaults path style with an endpoint", () => {
  assertEquals(problemsOf({ ...base, SNAPSHOT_BACKEND: "s3" }), [
    "S3_BUCKET is required when SNAPSHOT_BACKEND=s3",
  ]);
  const c = load({ ...base, SNAPSHOT_BACKEND: "s3", S3_BUCKET: "b", S3_ENDPOINT: "http://127.0.0.1:7070" });
  assertEquals(c.storage.s3?.forcePathStyle, true);
  assertEquals(c.storage.s3?.prefix, "mysql/");
  assertEquals(load({ ...base, SNAPSHOT_BACKEND: "s3", S3_BUCKET: "b" }).storage.s3?.forcePathStyle, false);
  assertEquals(problemsOf({ ...base, SNAPSHOT_BACKEND: "s3", S3_BUCKET: "b", S3_ACCESS_KEY_ID: "k" }), [
    "S3_SECRET_ACCESS_KEY must be set together with S3_ACCESS_KEY_ID",
  ]);
});

Deno.test("loadConfig() decodes a '#'-encoded Manta key and requires the Manta account settings", () => {
  assertEquals(problemsOf({ ...base, SNAPSHOT_BACKEND: "manta" }), [
    "MANTA_USER is required when SNAPSHOT_BACKEND=manta",
    "MANTA_KEY_ID is required when SNAPSHOT_BACKEND=manta",
    "MANTA_PRIVATE_KEY is required when SNAPSHOT_BACKEND=manta",
  ]);
  const key = "-----BEGIN RSA PRIVATE KEY-----#MIIB#-----END RSA PRIVATE KEY-----#";
  const c = load({
    ...base,
    SNAPSHOT_BACKEND: "manta",
    MANTA_USER: "acct",
    MANTA_KEY_ID: "aa:bb",
    MANTA_PRIVATE_KEY: key,
  });
  assertEquals(c.storage.manta?.privateKey.reveal(), key.replaceAll("#", "\n"));
  assertEquals(c.storage.manta?.bucket, "/acct/stor");
  assertEquals(c.storage.manta?.url, "https://us-east.manta.joyent.com");
  assertEquals(
    problemsOf({
      ...base,
      SNAPSHOT_BACKEND: "manta",
      MANTA_USER: "a",
      MANTA_KEY_ID: "k",
      MANTA_PRIVATE_KEY: "nope",
    }),
    ["MANTA_PRIVATE_KEY is not a PEM private key (newlines may be written as '#')"],
  );
});

Deno.test("Secret prints as <redacted> through String, JSON and Deno.inspect", () => {
  const s = new Secret("hunter2");
  assertEquals(`${s}`, "<redacted>");
  assertEquals(JSON.stringify({ s }), '{"s":"<redacted>"}');
  assertEquals(Deno.inspect({ s }), "{ s: <redacted> }");
  assertEquals(s.reveal(), "hunter2");
});

Deno.test("describeConfig() redacts every secret and marks defaults", () => {
  const env: Record<string, string> = {
    ...base,
    MYSQL_USER: "app",
    MYSQL_PASSWORD: "apppw",
    MYSQL_ROOT_PASSWORD: "rootpw",
  };
  const rows = describeConfig(load(env), (n) => env[n]);
  const text = JSON.stringify(rows);
  for (const secret of ["replpw", "apppw", "rootpw"]) assert(!text.includes(secret), secret);
  assertEquals(rows.find((r) => r.name === "MYSQL_PASSWORD"), {
    name: "MYSQL_PASSWORD",
    value: "<redacted>",
    source: "env",
  });
  assertEquals(rows.find((r) => r.name === "SESSION_TTL"), {
    name: "SESSION_TTL",
    value: "20s",
    source: "default",
  });
  assertEquals(rows.map((r) => r.name), VARIABLES.map((v) => v.name));
});

Deno.test("parseDuration() reads seconds and unit sums, and refuses the rest", () => {
  assertEquals(parseDuration("30"), 30_000);
  assertEquals(parseDuration("500ms"), 500);
  assertEquals(parseDuration("1h30m"), 5_400_000);
  assertEquals(parseDuration("1.5s"), 1500);
  assertEquals(parseDuration("2d"), 172_800_000);
  for (const bad of ["", "1x", "s", "-5s", "5 s", "1h-"]) assertEquals(parseDuration(bad), undefined, bad);
});

Deno.test("parseSize() reads megabytes by default", () => {
  assertEquals(parseSize("64"), 64 * 2 ** 20);
  assertEquals(parseSize("64k"), 64 * 1024);
  assertEquals(parseSize("1GB"), 2 ** 30);
  assertEquals(parseSize("1T"), undefined);
});

Deno.test("README's configuration table matches the variables the code reads", async () => {
  const readme = await Deno.readTextFile(new URL("../../README.md", import.meta.url));
  const start = readme.indexOf("<!-- config-table:start -->");
  const end = readme.indexOf("<!-- config-table:end -->");
  assert(start >= 0 && end > start, "README.md lacks the config-table markers");
  const table = readme.slice(start + "<!-- config-table:start -->".length, end);
  assertEquals(
    normaliseTables(table),
    normaliseTables(configTableMarkdown()),
    "run: deno task docs (README's config table is stale)",
  );
});

/** Markdown tables compared cell by cell: `deno fmt` pads cells and separator rows. */
function normaliseTables(markdown: string): string[] {
  return markdown.trim().split("\n").map((line) =>
    line.startsWith("|")
      ? line.split("|").map((cell) => cell.trim()).map((cell) => /^-+$/.test(cell) ? "---" : cell).join("|")
      : line.trim()
  );
}

Deno.test("loadConfig() reads FAILSAFE_MODE as a flag, on by default", () => {
  assertEquals(load(base).failover.failsafe, true);
  assertEquals(load({ ...base, FAILSAFE_MODE: "false" }).failover.failsafe, false);
});

Deno.test("loadConfig() reads REBUILD_ERRANT_NODE as a flag, on by default", () => {
  assertEquals(load({ ...base, REBUILD_ERRANT_NODE: "yes" }).failover.rebuildErrant, true);
  assertEquals(load({ ...base, REBUILD_ERRANT_NODE: "no" }).failover.rebuildErrant, false);
  assertEquals(load(base).failover.rebuildErrant, true);
  assertEquals(problemsOf({ ...base, REBUILD_ERRANT_NODE: "maybe" }), [
    "REBUILD_ERRANT_NODE must be true or false (also yes/no, on/off, 1/0): current value is 'maybe'",
  ]);
});

Deno.test("loadConfig() reports the problems in README order, whatever rule found them", () => {
  assertEquals(
    problemsOf({
      ...base,
      MANTA_URL: "ftp://m",
      SNAPSHOT_BACKEND: "manta",
      MYSQL_USER: "bad user",
      MYSQL_FLAVOUR: "oracle",
      CONSUL_TIMEOUT: "1x",
      CONSUL: "ftp://x",
    }),
    [
      "CONSUL must be host, host:port or http(s)://host:port: current value is 'ftp://x'",
      "CONSUL_TIMEOUT must be a duration such as 30, 90s, 15m, 24h or 1h30m (a plain number is seconds): current value is '1x'",
      "MYSQL_FLAVOUR must be one of auto, mysql, mariadb: current value is 'oracle'",
      "MYSQL_USER must be 1 to 32 letters, digits, '_', '.' or '-': current value is 'bad user'",
      "MYSQL_PASSWORD must be set together with MYSQL_USER",
      "MANTA_URL must be an http:// or https:// URL: current value is 'ftp://m'",
      "MANTA_USER is required when SNAPSHOT_BACKEND=manta",
      "MANTA_KEY_ID is required when SNAPSHOT_BACKEND=manta",
      "MANTA_PRIVATE_KEY is required when SNAPSHOT_BACKEND=manta",
    ],
  );
});

Deno.test("loadConfig() reads a store's settings only when that store is selected", () => {
  const c = load({ ...base, S3_ENDPOINT: "ftp://x", MANTA_URL: "nope", S3_BUCKET: "b" });
  assertEquals(c.storage, { backend: "local", localDir: "/var/lib/autopilot/snapshots" });
  assertEquals(describeConfig(c, () => undefined).find((r) => r.name === "S3_REGION")?.value, "(unset)");
});

const PEM = "-----BEGIN RSA PRIVATE KEY-----#MIIB#-----END RSA PRIVATE KEY-----#";
/** Every setting set (and valid), for each store. */
const EVERYTHING: Record<string, string>[] = [
  {
    SERVICE_NAME: "orders-db",
    CONSUL: "https://c.example:8501",
    CONSUL_HTTP_TOKEN: "tok",
    CONSUL_CACERT: "/var/lib/autopilot/consul-ca.pem",
    CONSUL_CLIENT_CERT: "/var/lib/autopilot/client.pem",
    CONSUL_CLIENT_KEY: "/var/lib/autopilot/client-key.pem",
    CONSUL_TIMEOUT: "1500ms",
    LOG_LEVEL: "warn",
    LOG_FORMAT: "json",
    NODE_NAME: "n1",
    NODE_ADDRESS: "10.1.1.1",
    FAILOVER_PRIORITY: "0",
    STATE_DIR: "/s",
    MYSQL_FLAVOUR: "MariaDB",
    MYSQL_DATADIR: "/d",
    MYSQL_CNF: "/d.cnf",
    MYSQL_SOCKET: "/sock",
    MYSQL_PORT: "3307",
    MYSQL_OS_USER: "root",
    MYSQL_TMPDIR: "/t",
    MYSQL_USER: "app",
    MYSQL_PASSWORD: " app pw ",
    MYSQL_DATABASE: "app",
    MYSQL_REPL_USER: "r",
    MYSQL_REPL_PASSWORD: "replpw",
    MYSQL_ROOT_PASSWORD: "r00t",
    MYSQL_ONETIME_PASSWORD: "yes",
    INNODB_BUFFER_POOL_SIZE: "1G",
    MYSQL_CONNECT_TIMEOUT: "1m",
    MAX_REPLICATION_LAG: "1m30s",
    SEMI_SYNC: "on",
    MYSQL_TLS_CA: "/tls/ca.pem",
    MYSQL_TLS_CERT: "/tls/n1.pem",
    MYSQL_TLS_KEY: "/tls/n1-key.pem",
    REQUIRE_TLS: "true",
    PRIMARY_KEY: "a/primary",
    BACKUP_LOCK_KEY: "a/backup",
    LAST_BACKUP_KEY: "a/last",
    LAST_BINLOG_KEY: "a/binlog",
    LAST_VERIFIED_KEY: "a/verified",
    FAILOVER_LOCK_KEY: "a/lock",
    FAILOVER_PAUSE_KEY: "a/pause",
    SESSION_NAME: "sess",
    SESSION_TTL: "2m",
    FAILOVER_QUIET_PERIOD: "0",
    REBUILD_ERRANT_NODE: "n",
    FAILSAFE_MODE: "off",
    RECOVERY_SETTLE_WINDOW: "45s",
    BACKUP_NAME: "db-%Y%m%d",
    BACKUP_TTL: "1h",
    BACKUP_FROM: "primary",
    BACKUP_RETAIN_COUNT: "3",
    BACKUP_RETAIN_AGE: "7d",
    BACKUP_ON_STOP: "true",
    BACKUP_VERIFY: "1",
    // a throwaway test key (age-keygen), and another key's recipient
    BACKUP_ENCRYPTION_KEY: "AGE-SECRET-KEY-1RSN7FHWPWC0M5VEZ9M0LSDN3066AP69EMUMFQMZKUX0SUQJSUFEQXPTAYS",
    BACKUP_ENCRYPTION_RECIPIENTS: "age1tfplw6nty0rgjh0f48ypfhqkj49s57t8grnxl69gw7z325wtccwsr9j7yf",
    BACKUP_ALLOW_UNENCRYPTED: "true",
    BINLOG_ARCHIVE_INTERVAL: "5m",
    SNAPSHOT_DIR: "/snap",
  },
  {
    MYSQL_REPL_PASSWORD: "replpw",
    SNAPSHOT_BACKEND: "S3",
    S3_ENDPOINT: "http://127.0.0.1:7070",
    S3_REGION: "eu-west-1",
    S3_BUCKET: "b",
    S3_PREFIX: "p/",
    S3_FORCE_PATH_STYLE: "no",
    S3_ACCESS_KEY_ID: "k",
    S3_SECRET_ACCESS_KEY: "s",
  },
  { MYSQL_REPL_PASSWORD: "replpw", MYSQL_RANDOM_ROOT_PASSWORD: "no", SNAPSHOT_BACKEND: "s3", S3_BUCKET: "b" },
  {
    MYSQL_REPL_PASSWORD: "replpw",
    CONSUL: "consul:9",
    CONSUL_AGENT: "yes",
    SNAPSHOT_BACKEND: "manta",
    MANTA_URL: "http://m:1",
    MANTA_USER: "acct",
    MANTA_SUBUSER: "sub",
    MANTA_ROLE: "role",
    MANTA_KEY_ID: "aa:bb",
    MANTA_PRIVATE_KEY: PEM,
    MANTA_BUCKET: "/acct/x",
    MANTA_TLS_INSECURE: "yes",
  },
  {
    MYSQL_REPL_PASSWORD: "replpw",
    SNAPSHOT_BACKEND: "manta",
    MANTA_USER: "u",
    MANTA_KEY_ID: "k",
    MANTA_PRIVATE_KEY: PEM,
  },
];

Deno.test("autopilot config shows each value where it landed: fed back, its values load the same configuration", () => {
  const spec = new Map(VARIABLES.map((v) => [v.name, v]));
  for (const env of [base as Record<string, string>, ...EVERYTHING]) {
    const config = load(env);
    const rows = describeConfig(config, (n) => env[n]);
    for (const name of Object.keys(env)) {
      const row = rows.find((r) => r.name === name);
      assertEquals(row?.source, "env", name);
      assert(row?.value !== "(unset)", `${name} is set but autopilot config shows it unset`);
    }
    // A default shown as the README shows it needs no feeding back (nor can INNODB_BUFFER_POOL_SIZE's be).
    const shown = rows.filter((r) =>
      r.value !== "(unset)" && r.value !== "<redacted>" &&
      !(r.source === "default" && r.value === spec.get(r.name)!.default)
    );
    const secrets = VARIABLES.filter((v) => v.secret && env[v.name] !== undefined);
    const again = load({
      ...Object.fromEntries(shown.map((r) => [r.name, r.value])),
      ...Object.fromEntries(secrets.map((v) => [v.name, env[v.name]])),
    });
    assertEquals(again, config, JSON.stringify(env));
  }
});

Deno.test("every setting lands in the configuration: leaving it out changes what loadConfig() returns", () => {
  for (const spec of VARIABLES) {
    const env = EVERYTHING.find((e) => spec.name in e);
    assert(env !== undefined, `no test environment sets ${spec.name}`);
    const { [spec.name]: _, ...without } = env;
    let after;
    try {
      after = load(without);
    } catch (e) {
      assert(e instanceof ConfigError, String(e));
      continue; // a required setting
    }
    assert(JSON.stringify(norm(after)) !== JSON.stringify(norm(load(env))), `${spec.name} changes nothing`);
  }
});

/** Secrets compared by value. */
function norm(x: unknown): unknown {
  if (x instanceof Secret) return `secret:${x.reveal()}`;
  if (x !== null && typeof x === "object") return Object.entries(x).map(([k, v]) => [k, norm(v)]).sort();
  return x;
}

Deno.test("deno.json's autopilot permission set allows exactly the declared variables", async () => {
  const denoJson = JSON.parse(await Deno.readTextFile(new URL("../../deno.json", import.meta.url)));
  const allowed: string[] = denoJson.permissions.autopilot.env;
  const declared = [...ENV_NAMES];
  assertEquals(
    {
      "allowed, not declared": allowed.filter((n) => !declared.includes(n)).sort(),
      "declared, not allowed": declared.filter((n) => !allowed.includes(n)).sort(),
    },
    { "allowed, not declared": [], "declared, not allowed": [] },
    "run: deno task docs (deno.json's env list is stale)",
  );
  assertEquals([...allowed].sort(), declared.sort(), "each name once");
});

Deno.test("every variable the program reads by name is declared in src/config.ts", () => {
  const root = new URL("../../", import.meta.url);
  const files = ["mod.ts"];
  const walk = (dir: string) => {
    for (const e of Deno.readDirSync(new URL(dir, root))) {
      if (e.isDirectory) walk(`${dir}/${e.name}`);
      else if (e.name.endsWith(".ts")) files.push(`${dir}/${e.name}`);
    }
  };
  walk("src");
  walk("hooks");
  const read = new Set<string>();
  for (const file of files) {
    const source = Deno.readTextFileSync(new URL(file, root));
    for (const m of source.matchAll(/\b(?:env|Deno\.env\.get)\(\s*["'`]([A-Z][A-Z0-9_]*)["'`]/g)) {
      read.add(m[1]);
    }
  }
  read.add(ENTRYPOINT_LIMIT_VARIABLE);
  assert(read.has("CONTAINERPILOT_MYSQL_IP"), "the scan finds src/node.ts's read");
  const undeclared = [...read].filter((n) => !ENV_NAMES.includes(n));
  assertEquals(undeclared, [], "declare these in src/config.ts (internal() if they are not settings)");
  for (const v of INTERNAL_VARIABLES) {
    assertEquals(v.section, INTERNAL);
    assert(!VARIABLES.some((s) => s.name === v.name), `${v.name} is both a setting and internal`);
  }
});

Deno.test("deno task docs rewrites only deno.json's env list, from the declarations", async () => {
  const text = await Deno.readTextFile(new URL("../../deno.json", import.meta.url));
  const stale = text.replace(/\n *"SEMI_SYNC",/, "").replace('"MYSQL_PORT"', '"MYSQL_PORT_OLD"');
  assert(stale !== text);
  const fixed = withEnvList(stale);
  assert(typeof fixed === "string", String(fixed));
  assertEquals(JSON.parse(fixed).permissions.autopilot.env, [...ENV_NAMES]);
  const { permissions: _a, ...rest } = JSON.parse(fixed);
  const { permissions: _b, ...restBefore } = JSON.parse(text);
  assertEquals(rest, restBefore);
  assert(withEnvList(text.replace('"fmt": {', '"fmt": {\n    "env": [],')) instanceof Error, "two env lists");
  assertEquals(withConfigTable("no markers") instanceof Error, true);
});

// ---- secrets from files (the `_FILE` twins) -------------------------------------------------------------------

/** A host whose files are `files`; any other path is missing. */
const withFiles = (files: Record<string, string | Error>) => ({
  hostname: () => "node-a",
  readFile: (path: string) => {
    const f = files[path];
    if (f === undefined) {
      throw new Deno.errors.NotFound(`No such file or directory (os error 2): readfile '${path}'`);
    }
    if (f instanceof Error) throw f;
    return f;
  },
});
const problemsWith = (vars: Record<string, string>, files: Record<string, string | Error>) => {
  try {
    loadConfig((n) => vars[n], withFiles(files));
  } catch (e) {
    if (e instanceof ConfigError) return e.problems;
    throw e;
  }
  throw new Error("expected a ConfigError");
};

Deno.test("every secret has a _FILE twin, in the permission set right after it", () => {
  const secrets = VARIABLES.filter((v) => v.secret);
  for (
    const name of [
      "MYSQL_PASSWORD",
      "MYSQL_REPL_PASSWORD",
      "MYSQL_ROOT_PASSWORD",
      "S3_ACCESS_KEY_ID",
      "S3_SECRET_ACCESS_KEY",
      "MANTA_PRIVATE_KEY",
      "CONSUL_HTTP_TOKEN",
    ]
  ) {
    assert(secrets.some((v) => v.name === name), `${name} is not declared secret`);
  }
  for (const v of VARIABLES) {
    assertEquals(v.file, v.secret ? fileTwin(v.name) : undefined, v.name);
    if (v.file) assertEquals(ENV_NAMES[ENV_NAMES.indexOf(v.name) + 1], v.file);
  }
  assert(!VARIABLES.some((v) => v.name.endsWith("_FILE")), "a _FILE twin must never be a setting itself");
});

Deno.test("loadConfig() reads a secret from the file its _FILE twin names, less one trailing newline", () => {
  const files = {
    "/run/secrets/repl": "repl pw\n",
    "/run/secrets/app": "  app pw \r\n",
    "/run/secrets/root": "root\n\n",
    "/run/secrets/token": "tok",
    "/run/secrets/manta": "-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n-----END OPENSSH PRIVATE KEY-----\n",
  };
  const config = loadConfig((n) =>
    ({
      MYSQL_REPL_PASSWORD_FILE: "/run/secrets/repl",
      MYSQL_USER: "app",
      MYSQL_PASSWORD_FILE: " /run/secrets/app ", // the path is trimmed, as any value is
      MYSQL_ROOT_PASSWORD_FILE: "/run/secrets/root",
      CONSUL_HTTP_TOKEN_FILE: "/run/secrets/token",
      SNAPSHOT_BACKEND: "manta",
      MANTA_USER: "u",
      MANTA_KEY_ID: "SHA256:x",
      MANTA_PRIVATE_KEY_FILE: "/run/secrets/manta",
    } as Record<string, string>)[n], withFiles(files));
  assert(config.mysql.replPassword instanceof Secret);
  assertEquals(config.mysql.replPassword.reveal(), "repl pw");
  assertEquals(config.mysql.password?.reveal(), "  app pw "); // never trimmed: only the newline goes
  assertEquals(config.mysql.rootPassword?.reveal(), "root\n"); // one newline only
  assertEquals(config.mysql.randomRootPassword, false); // a root password from a file counts as given
  assertEquals(config.consul.token?.reveal(), "tok");
  assertEquals(
    config.storage.manta?.privateKey.reveal(),
    "-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n-----END OPENSSH PRIVATE KEY-----",
  );
  assert(!JSON.stringify(config).includes("repl pw"));
});

Deno.test("loadConfig() refuses a secret given both ways, in one line naming both variables", () => {
  const problems = problemsWith(
    { MYSQL_REPL_PASSWORD: "pw-in-env", MYSQL_REPL_PASSWORD_FILE: "/run/secrets/repl" },
    { "/run/secrets/repl": "pw-in-file" },
  );
  assertEquals(problems, [
    "MYSQL_REPL_PASSWORD and MYSQL_REPL_PASSWORD_FILE are both set: set only one of them",
  ]);
});

Deno.test("loadConfig() names the variable and the path of an unreadable or empty secret file, never its content", () => {
  const cases: [string | undefined, string, string][] = [
    [
      undefined,
      "/run/secrets/missing",
      "MYSQL_REPL_PASSWORD_FILE=/run/secrets/missing cannot be read: no such file",
    ],
    [
      "\n",
      "/run/secrets/empty",
      "MYSQL_REPL_PASSWORD_FILE=/run/secrets/empty is an empty file: write the secret in it",
    ],
    [
      "",
      "/run/secrets/empty",
      "MYSQL_REPL_PASSWORD_FILE=/run/secrets/empty is an empty file: write the secret in it",
    ],
    ["pw", "secrets/repl", "MYSQL_REPL_PASSWORD_FILE=secrets/repl must be an absolute path"],
  ];
  for (const [content, path, line] of cases) {
    const files = content === undefined ? {} : { [path]: content };
    assertEquals(problemsWith({ MYSQL_REPL_PASSWORD_FILE: path }, files), [line]);
  }
  const denied = problemsWith({ MYSQL_REPL_PASSWORD_FILE: "/run/secrets/r" }, {
    "/run/secrets/r": new Deno.errors.PermissionDenied("Permission denied (os error 13)"),
  });
  assertEquals(denied, [
    "MYSQL_REPL_PASSWORD_FILE=/run/secrets/r cannot be read: permission denied (check the file's owner and mode)",
  ]);
  const outside = problemsWith({ MYSQL_REPL_PASSWORD_FILE: "/etc/pw" }, {
    "/etc/pw": new Deno.errors.NotCapable('Requires read access to "/etc/pw"'),
  });
  assertEquals(outside.length, 1);
  assert(
    outside[0].startsWith("MYSQL_REPL_PASSWORD_FILE=/etc/pw cannot be read: autopilot may read"),
    outside[0],
  );
  assert(outside[0].includes("/run/secrets"), outside[0]);
  // Together with another wrong variable: one line each, in README order; the file's content appears in none.
  const both = problemsWith({ MYSQL_REPL_PASSWORD_FILE: "/run/secrets/e", MYSQL_PORT: "x" }, {
    "/run/secrets/e": "",
  });
  assertEquals(both.length, 2);
  assert(both[0].startsWith("MYSQL_PORT "), both[0]);
});

Deno.test("loadConfig() names the file a wrong secret was read from, never its content", () => {
  const problems = problemsWith({
    ...base,
    SNAPSHOT_BACKEND: "manta",
    MANTA_USER: "u",
    MANTA_KEY_ID: "SHA256:x",
    MANTA_PRIVATE_KEY_FILE: "/run/secrets/key",
  }, { "/run/secrets/key": "not-a-key-text\n" });
  assertEquals(problems, [
    "MANTA_PRIVATE_KEY is not a PEM private key (newlines may be written as '#') " +
    "(read from MANTA_PRIVATE_KEY_FILE=/run/secrets/key)",
  ]);
});

Deno.test("loadConfig() counts a secret read from a file as set, for the rules between settings", () => {
  // MYSQL_USER and MYSQL_PASSWORD go together: the password from a file satisfies it.
  assertEquals(
    problemsWith({ ...base, MYSQL_PASSWORD_FILE: "/run/secrets/app" }, {
      "/run/secrets/app": "secret-text\n",
    }),
    ["MYSQL_USER must be set together with MYSQL_PASSWORD"],
  );
  const problems = problemsWith({
    ...base,
    MYSQL_ROOT_PASSWORD_FILE: "/run/secrets/root",
    MYSQL_RANDOM_ROOT_PASSWORD: "true",
  }, {
    "/run/secrets/root": "secret-text",
  });
  assertEquals(problems, [
    "MYSQL_RANDOM_ROOT_PASSWORD cannot be true when MYSQL_ROOT_PASSWORD is set: current value is 'true'",
  ]);
});

Deno.test("loadConfig() reads a _FILE twin only for the store selected, like its variable", () => {
  // S3_SECRET_ACCESS_KEY_FILE names a missing file, but the store is the directory one: never read.
  load({ ...base, S3_SECRET_ACCESS_KEY_FILE: "/run/secrets/nope" });
});

Deno.test("describeConfig() says a secret came from a file, with the path, never the value", () => {
  const env: Record<string, string> = { ...base, MYSQL_USER: "app", MYSQL_PASSWORD_FILE: "/run/secrets/app" };
  const config = loadConfig((n) => env[n], withFiles({ "/run/secrets/app": "file-secret\n" }));
  const rows = describeConfig(config, (n) => env[n]);
  assert(!JSON.stringify(rows).includes("file-secret"));
  assertEquals(rows.find((r) => r.name === "MYSQL_PASSWORD"), {
    name: "MYSQL_PASSWORD",
    value: "<redacted>",
    source: "file",
    file: "/run/secrets/app",
  });
  assertEquals(rows.find((r) => r.name === "MYSQL_REPL_PASSWORD")?.source, "env");
});

Deno.test("deno.json lets autopilot read every directory a secret file may be in, /run/secrets first", async () => {
  const denoJson = JSON.parse(await Deno.readTextFile(new URL("../../deno.json", import.meta.url)));
  const readable: string[] = denoJson.permissions.autopilot.read;
  for (const dir of SECRET_FILE_DIRS) {
    assert(readable.includes(dir), `${dir} is not in permissions.autopilot.read`);
  }
  assertEquals(SECRET_FILE_DIRS[0], "/run/secrets");
});

Deno.test("TLS: the three files together or none; REQUIRE_TLS needs them; without them, plain text as before", () => {
  const files = {
    MYSQL_TLS_CA: "/tls/ca.pem",
    MYSQL_TLS_CERT: "/tls/n1.pem",
    MYSQL_TLS_KEY: "/tls/n1-key.pem",
  };
  const on = load({ ...base, ...files, REQUIRE_TLS: "yes" });
  assertEquals(on.mysql.tls, { ca: "/tls/ca.pem", cert: "/tls/n1.pem", key: "/tls/n1-key.pem" });
  assertEquals(on.mysql.requireTls, true);
  const off = load(base);
  assertEquals([off.mysql.tls, off.mysql.requireTls], [undefined, false]);
  const { MYSQL_TLS_KEY: _, ...noKey } = files;
  const e = assertThrows(() => load({ ...base, ...noKey }), ConfigError);
  assertEquals(e.problems, [
    "MYSQL_TLS_CA needs MYSQL_TLS_CA, MYSQL_TLS_CERT and MYSQL_TLS_KEY set together: current value is '/tls/ca.pem'",
    "MYSQL_TLS_CERT needs MYSQL_TLS_CA, MYSQL_TLS_CERT and MYSQL_TLS_KEY set together: current value is '/tls/n1.pem'",
  ]);
  assertEquals(
    assertThrows(() => load({ ...base, REQUIRE_TLS: "true" }), ConfigError).problems,
    ["REQUIRE_TLS needs MYSQL_TLS_CA, MYSQL_TLS_CERT and MYSQL_TLS_KEY: current value is 'true'"],
  );
  // (A wrong path counts as unset for the rule between the three, which then names the other two as well.)
  const wrongPath = assertThrows(() => load({ ...base, ...files, MYSQL_TLS_KEY: "key.pem" }), ConfigError);
  assert(wrongPath.problems.includes("MYSQL_TLS_KEY must be an absolute path: current value is 'key.pem'"));
});

Deno.test("CONSUL_CACERT and the client certificate need an https CONSUL; the certificate and key go together", () => {
  assertEquals(problemsOf({ ...base, CONSUL: "consul:8500", CONSUL_CACERT: "/tmp/ca.pem" }), [
    "CONSUL_CACERT is set but CONSUL is not https://: set CONSUL=https://host:port: current value is '/tmp/ca.pem'",
  ]);
  assertEquals(problemsOf({ ...base, CONSUL: "https://consul:8501", CONSUL_CLIENT_CERT: "/tmp/c.pem" }), [
    "CONSUL_CLIENT_KEY must be set together with CONSUL_CLIENT_CERT",
  ]);
  assertEquals(problemsOf({ ...base, CONSUL: "https://consul:8501", CONSUL_CACERT: "ca.pem" }), [
    "CONSUL_CACERT must be an absolute path: current value is 'ca.pem'",
  ]);
  const c = load({ ...base, CONSUL: "https://consul:8501", CONSUL_CACERT: "/tmp/ca.pem" }).consul;
  assertEquals([c.scheme, c.caFile, c.clientCert], ["https", "/tmp/ca.pem", undefined]);
});
