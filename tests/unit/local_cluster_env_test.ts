import { assert, assertEquals, assertThrows } from "./assert.ts";
import { ConfigError, loadConfig, VARIABLES } from "../../src/config.ts";
import { parseEnvFile } from "../../scripts/env_file.ts";
import {
  clusterSettings,
  type ClusterSettingsInput,
  LOCAL_DEFAULTS,
  OWNED,
  ownedVariables,
  shellEnvFile,
  shellWord,
  validationEnv,
} from "../../scripts/local_cluster_env.ts";

/** clusterSettings() over an env file's text, an environment and generated passwords "gen1", "gen2"... */
function merge(
  text: string | undefined,
  opts: Partial<ClusterSettingsInput> & { env?: Record<string, string> } = {},
) {
  let n = 0;
  return clusterSettings({
    file: text === undefined ? undefined : parseEnvFile(text),
    fileName: "_env",
    environment: (name) => opts.env?.[name],
    generate: () => `gen${++n}`,
    ...(opts.logLevel ? { logLevel: opts.logLevel } : {}),
  });
}

const configOf = (settings: Record<string, string>) => {
  const env = validationEnv(settings);
  return loadConfig((name) => env[name], { hostname: () => "n1" });
};

Deno.test("clusterSettings() without an env file: the local defaults and three generated passwords", () => {
  const r = merge(undefined);
  assertEquals(r.settings, {
    ...LOCAL_DEFAULTS,
    MYSQL_REPL_PASSWORD: "gen1",
    MYSQL_PASSWORD: "gen2",
    MYSQL_ROOT_PASSWORD: "gen3",
  });
  assertEquals(r.generated, ["MYSQL_REPL_PASSWORD", "MYSQL_PASSWORD", "MYSQL_ROOT_PASSWORD"]);
  assertEquals(r.notices, []);
  configOf(r.settings); // valid as it is
});

Deno.test("clusterSettings() applies every documented variable of the file to the nodes", () => {
  const text = [
    "SERVICE_NAME=shop",
    "SEMI_SYNC=true",
    "BACKUP_TTL=1h",
    "LOG_LEVEL=DEBUG",
    "INNODB_BUFFER_POOL_SIZE=128M",
    "MYSQL_USER=shopper",
    "MYSQL_PASSWORD='pa$$ word'",
    "MYSQL_REPL_PASSWORD=r",
    "S3_REGION=eu-west-1",
    "MANTA_USER=someone",
  ].join("\n");
  const r = merge(text);
  assertEquals(r.notices, []);
  for (
    const [k, v] of Object.entries(Object.fromEntries([...parseEnvFile(text)].map(([k, e]) => [k, e.value])))
  ) {
    assertEquals(r.settings[k], v, k);
  }
  assertEquals(r.settings.MYSQL_PASSWORD, "pa$$ word");
  assertEquals(r.settings.MYSQL_DATABASE, "app"); // a default the file did not override
  assertEquals(r.generated, ["MYSQL_ROOT_PASSWORD"]);
  const config = configOf(r.settings);
  assertEquals([config.serviceName, config.keys.primary, config.mysql.semiSync], [
    "shop",
    "shop-primary",
    true,
  ]);
  assertEquals(config.backup.ttlSeconds, 3600);
});

Deno.test("clusterSettings() does not use the owned wiring from the file, with one notice each and no value", () => {
  const text = [
    "NODE_NAME=db1",
    "MYSQL_DATADIR=/srv/mysql-datadir-secretish",
    "CONSUL=consul.example:8500",
    "CONSUL_AGENT=true",
    "SNAPSHOT_DIR=/srv/snapshots",
    "STATE_DIR=",
    "SERVICE_NAME=shop",
  ].join("\n");
  const r = merge(text);
  for (const name of Object.keys(OWNED)) assert(!(name in r.settings), `${name} is in the settings`);
  assertEquals(r.settings.SERVICE_NAME, "shop");
  assertEquals(r.notices, [
    "_env:1 sets NODE_NAME: not used, the local cluster sets it (each node is named n1, n2, ...)",
    "_env:2 sets MYSQL_DATADIR: not used, the local cluster sets it (each node has its own directory in the run dir)",
    "_env:3 sets CONSUL: not used, the local cluster sets it (the nodes use the cluster's own Consul agent)",
    "_env:4 sets CONSUL_AGENT: not used, the local cluster sets it " +
    "(the Consul agent runs on the host, not in each node's namespace)",
    "_env:5 sets SNAPSHOT_DIR: not used, the local cluster sets it " +
    "(with SNAPSHOT_BACKEND=local the nodes share the run dir's snapshot directory)",
  ]); // STATE_DIR= (empty) sets nothing: no notice
  assert(!r.notices.join("\n").includes("/srv/"), "a value was printed");
});

Deno.test("ownedVariables(): SNAPSHOT_DIR is the user's once another store is chosen", () => {
  for (const backend of [undefined, "", "local", " LOCAL "]) {
    assert(ownedVariables(backend).includes("SNAPSHOT_DIR"), String(backend));
  }
  for (const backend of ["s3", "manta", "S3"]) {
    assertEquals(ownedVariables(backend), Object.keys(OWNED).filter((n) => n !== "SNAPSHOT_DIR"));
  }
  const r = merge("SNAPSHOT_BACKEND=s3\nSNAPSHOT_DIR=/srv/snapshots\nS3_BUCKET=b\n");
  assertEquals([r.settings.SNAPSHOT_DIR, r.notices], ["/srv/snapshots", []]);
  assertEquals(configOf(r.settings).storage, {
    backend: "s3",
    localDir: "/srv/snapshots",
    s3: { region: "us-east-1", bucket: "b", prefix: "mysql/", forcePathStyle: false },
  });
});

Deno.test("clusterSettings() ignores what autopilot does not read, in one notice", () => {
  const r = merge("SEMISYNC=true\nSEMI_SYNC=true\nFLAVOUR=mariadb\n");
  assertEquals(r.settings.SEMI_SYNC, "true");
  assert(!("SEMISYNC" in r.settings) && !("FLAVOUR" in r.settings));
  assertEquals(r.notices, [
    "_env sets SEMISYNC, FLAVOUR, which autopilot does not read: ignored " +
    "(the variables are in the README's configuration table)",
  ]);
});

Deno.test("clusterSettings(): a password from the environment wins over the file's, which wins over a generated one", () => {
  const text = "MYSQL_REPL_PASSWORD=from-file\nMYSQL_PASSWORD=app-from-file\nMYSQL_ROOT_PASSWORD=\n";
  const r = merge(text, { env: { MYSQL_REPL_PASSWORD: "from-env", MYSQL_ROOT_PASSWORD: "root-env" } });
  assertEquals(
    [r.settings.MYSQL_REPL_PASSWORD, r.settings.MYSQL_PASSWORD, r.settings.MYSQL_ROOT_PASSWORD],
    ["from-env", "app-from-file", "root-env"],
  );
  assertEquals(r.fromEnvironment, ["MYSQL_REPL_PASSWORD", "MYSQL_ROOT_PASSWORD"]);
  assertEquals(r.generated, []);
  assertEquals(r.notices, [
    "MYSQL_REPL_PASSWORD is set in the environment and in _env: the environment's is used",
  ]);
  assert(!r.notices.join("").includes("from-"), "a password was printed");
  // Empty (as _env.example leaves them) counts as unset, in the file and in the environment.
  const empty = merge("MYSQL_REPL_PASSWORD=\nMYSQL_PASSWORD=\n", { env: { MYSQL_PASSWORD: "" } });
  assertEquals(empty.generated, ["MYSQL_REPL_PASSWORD", "MYSQL_PASSWORD", "MYSQL_ROOT_PASSWORD"]);
});

Deno.test("clusterSettings() makes no app password without an app user, no root one for a random root", () => {
  const r = merge("MYSQL_USER=\nMYSQL_DATABASE=\nMYSQL_RANDOM_ROOT_PASSWORD=true\n");
  assertEquals(
    [r.settings.MYSQL_USER, r.settings.MYSQL_PASSWORD, r.settings.MYSQL_ROOT_PASSWORD],
    ["", "", ""],
  );
  assertEquals(r.generated, ["MYSQL_REPL_PASSWORD"]);
  const config = configOf(r.settings);
  assertEquals([config.mysql.user, config.mysql.password, config.mysql.randomRootPassword], [
    undefined,
    undefined,
    true,
  ]);
});

Deno.test("clusterSettings(): --log-level wins over the file's LOG_LEVEL, with a notice", () => {
  assertEquals(merge("LOG_LEVEL=WARN").settings.LOG_LEVEL, "WARN");
  const r = merge("LOG_LEVEL=WARN", { logLevel: "DEBUG" });
  assertEquals([r.settings.LOG_LEVEL, r.notices], ["DEBUG", [
    "--log-level DEBUG overrides LOG_LEVEL from _env",
  ]]);
  assertEquals(merge(undefined, { logLevel: "ERROR" }).notices, []);
});

Deno.test("validationEnv() gives loadConfig() the user's bad values and valid wiring", () => {
  const problems = (text: string) => assertThrows(() => configOf(merge(text).settings), ConfigError).problems;
  assertEquals(problems("SESSION_TTL=abc\nMYSQL_DATADIR=relative"), [
    "SESSION_TTL must be a duration such as 30, 90s, 15m, 24h or 1h30m (a plain number is seconds): " +
    "current value is 'abc'",
  ]); // MYSQL_DATADIR is the local cluster's, so the user's relative path is no problem
  assertEquals(problems("SERVICE_NAME=Shop"), [
    "SERVICE_NAME must start with a lower-case letter and contain only letters, digits and '-' " +
    "(ContainerPilot's rule for service names): current value is 'Shop'",
  ]);
  assertEquals(problems("SNAPSHOT_BACKEND=s3"), ["S3_BUCKET is required when SNAPSHOT_BACKEND=s3"]);
  const env = validationEnv({ SNAPSHOT_BACKEND: "manta", SNAPSHOT_DIR: "/mine", MYSQL_REPL_PASSWORD: "x" });
  assertEquals(env.SNAPSHOT_DIR, "/mine");
  for (const name of ownedVariables("manta")) assert(name in env, name);
});

Deno.test("shellWord() and shellEnvFile() give sh exactly the values, whatever they hold", () => {
  assertEquals(shellWord("/tmp/run/node1/autopilot.env"), "/tmp/run/node1/autopilot.env");
  assertEquals(shellWord("a b"), "'a b'");
  assertEquals(shellWord("it's"), "'it'\\''s'");
  assertEquals(shellWord(""), "''");
  const file = shellEnvFile({ A: "x", P: 'it\'s $HOME `x` \\ "q"\nline 2' }, ["comment"]);
  const lines = file.split("\n");
  assertEquals(lines[0], "# comment");
  const unset = lines[1].split(" ");
  assertEquals(unset[0], "unset");
  for (const v of VARIABLES) assert(unset.includes(v.name), `${v.name} is not unset first`);
  assertEquals(lines.slice(2).join("\n"), "export A='x'\nexport P='it'\\''s $HOME `x` \\ \"q\"\nline 2'\n");
});

Deno.test("local_cluster.ts --help names every variable the local cluster owns, and its defaults", () => {
  const source = Deno.readTextFileSync(new URL("../../scripts/local_cluster.ts", import.meta.url));
  const usage = source.slice(
    source.indexOf("const USAGE ="),
    source.indexOf("/** The command line, parsed. */"),
  )
    .replace(/\s+/g, " ");
  for (const name of Object.keys(OWNED)) assert(usage.includes(name), `--help does not name ${name}`);
  assert(usage.includes("SNAPSHOT_DIR unless SNAPSHOT_BACKEND is s3 or manta"));
  const defaults = Object.entries(LOCAL_DEFAULTS).map(([k, v]) => `${k}=${v}`).join(", ");
  assert(usage.includes(defaults), `--help does not give the defaults ${defaults}`);
});

Deno.test("_env.example reads as an env file and gives the local cluster valid settings, examples on or off", () => {
  const text = Deno.readTextFileSync(new URL("../../_env.example", import.meta.url));
  for (const file of [text, text.replace(/^#([A-Z][A-Z0-9_]*=)/gm, "$1")]) {
    const r = merge(file);
    assertEquals(r.notices, []);
    configOf(r.settings);
  }
});
