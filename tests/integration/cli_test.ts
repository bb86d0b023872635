/**
 * The CLI as ContainerPilot runs it: `deno run` with the very permission set `deno compile` uses (-P=autopilot
 * from deno.json), never -A, so a permission the program lacks fails here.
 */
import { assert, assertEquals } from "../unit/assert.ts";
import { REPO_ROOT } from "./harness/mod.ts";
import { autopilot } from "./autopilot_cli.ts";

Deno.test("autopilot --help lists every command and exits 0", async () => {
  const r = await autopilot(["--help"]);
  assertEquals(r.code, 0, r.stderr);
  assert(r.stdout.includes("usage: autopilot COMMAND"));
  assert(/^\s+config\s+print the effective configuration/m.test(r.stdout), r.stdout);
  const help = await autopilot(["help", "config"]);
  assert(help.stdout.startsWith("usage: autopilot config"), help.stdout);
  assert(help.stdout.includes("--json"));
});

Deno.test("autopilot config prints every setting with secrets redacted", async () => {
  const r = await autopilot(["config"], {
    MYSQL_REPL_PASSWORD: "repl-s3cret",
    MYSQL_ROOT_PASSWORD: "root-s3cret",
    MYSQL_USER: "app",
    MYSQL_PASSWORD: "app-s3cret",
    SERVICE_NAME: "orders",
    NODE_NAME: "db-7",
  });
  assertEquals(r.code, 0, r.stderr);
  for (const secret of ["repl-s3cret", "root-s3cret", "app-s3cret"]) {
    assert(!r.stdout.includes(secret), secret);
  }
  assert(/^MYSQL_REPL_PASSWORD\s+<redacted>$/m.test(r.stdout), r.stdout);
  assert(/^PRIMARY_KEY\s+orders-primary\s+\(default\)$/m.test(r.stdout), r.stdout);
  assert(/^NODE_NAME\s+db-7$/m.test(r.stdout));
  assertEquals(r.stderr, "");
});

Deno.test("autopilot config --json prints parseable JSON with secrets redacted", async () => {
  const r = await autopilot(["config", "--json"], {
    MYSQL_REPL_PASSWORD: "repl-s3cret",
    CONSUL: "10.0.0.9:8501",
  });
  assertEquals(r.code, 0, r.stderr);
  const json = JSON.parse(r.stdout);
  assertEquals(json.MYSQL_REPL_PASSWORD, "<redacted>");
  assertEquals(json.CONSUL, "http://10.0.0.9:8501");
  assertEquals(json.NODE_NAME.length > 0, true, "the hostname default needs --allow-sys=hostname");
});

Deno.test("autopilot with a missing variable prints one line naming it and exits 2", async () => {
  const r = await autopilot(["config"]);
  assertEquals(r.code, 2);
  assertEquals(r.stdout, "");
  assertEquals(
    r.stderr,
    "autopilot: invalid configuration: MYSQL_REPL_PASSWORD is required (replication user's password)",
  );
});

Deno.test("autopilot with wrong values prints one line per variable and exits 2", async () => {
  const r = await autopilot(["config"], {
    MYSQL_REPL_PASSWORD: "x",
    BACKUP_TTL: "soon",
    MYSQL_DATADIR: "rel/path",
  });
  assertEquals(r.code, 2);
  assertEquals(r.stderr.split("\n"), [
    "autopilot: invalid configuration: MYSQL_DATADIR must be an absolute path: current value is 'rel/path'",
    "autopilot: invalid configuration: BACKUP_TTL must be a duration such as 30, 90s, 15m, 24h or 1h30m (a plain number is seconds): current value is 'soon'",
  ]);
});

Deno.test("under its permission set autopilot reads a secret's file in /run/secrets, and refuses one elsewhere", async () => {
  // /run/secrets is readable: a missing file there is "no such file", not a permission refusal.
  const missing = await autopilot(["config"], {
    MYSQL_REPL_PASSWORD_FILE: "/run/secrets/autopilot-test-none",
  });
  assertEquals(missing.code, 2);
  assertEquals(
    missing.stderr,
    "autopilot: invalid configuration: MYSQL_REPL_PASSWORD_FILE=/run/secrets/autopilot-test-none cannot be read: no such file",
  );
  // /etc is not: one line naming the variable, the path and where a secret file may be; never the content.
  const outside = await autopilot(["config"], { MYSQL_REPL_PASSWORD_FILE: "/etc/hostname" });
  assertEquals(outside.code, 2);
  assertEquals(
    outside.stderr,
    "autopilot: invalid configuration: MYSQL_REPL_PASSWORD_FILE=/etc/hostname cannot be read: autopilot may " +
      "read files only under /run/secrets, /var/lib/autopilot, /var/lib/mysql, /tmp: put it there (Docker " +
      "mounts secrets in /run/secrets)",
  );
  // A readable file: its content less one newline, shown redacted with where it came from.
  const file = await Deno.makeTempFile({ dir: "/tmp", prefix: "autopilot-secret-" });
  try {
    await Deno.writeTextFile(file, "cli-secret-text\n");
    const ok = await autopilot(["config"], { MYSQL_REPL_PASSWORD_FILE: file });
    assertEquals(ok.code, 0, ok.stderr);
    assert(!ok.stdout.includes("cli-secret-text"), ok.stdout);
    const line = ok.stdout.split("\n").find((l) => l.startsWith("MYSQL_REPL_PASSWORD "));
    assertEquals(line?.replace(/ +/g, " "), `MYSQL_REPL_PASSWORD <redacted> (from the file ${file})`);
  } finally {
    await Deno.remove(file);
  }
});

Deno.test("autopilot with an unknown command or option exits 2 with a hint", async () => {
  const r = await autopilot(["frobnicate"]);
  assertEquals(r.code, 2);
  assertEquals(
    r.stderr,
    "autopilot: unknown command 'frobnicate': run 'autopilot --help' for the list of commands",
  );
  const o = await autopilot(["config", "--nope"], { MYSQL_REPL_PASSWORD: "x" });
  assertEquals(o.code, 2);
  assert(o.stderr.startsWith("autopilot config: Unknown option '--nope'"), o.stderr);
});

// The variables it may read: tests/unit/config_test.ts keeps that list equal to src/config.ts's declarations.
Deno.test("deno.json's autopilot permission set runs only the server tools, and compile uses it", async () => {
  const denoJson = JSON.parse(await Deno.readTextFile(`${REPO_ROOT}/deno.json`));
  assertEquals(denoJson.permissions.autopilot.run, [
    "/usr/sbin/mariadbd",
    "/usr/sbin/mysqld",
    "/usr/bin/mariadb-install-db",
    "/usr/bin/mariabackup",
    "/usr/bin/mbstream",
    "/usr/bin/xtrabackup",
    "/usr/bin/xbstream",
    "/usr/bin/zstd",
    "/usr/bin/age", // snapshots and archived binlogs encrypted and decrypted (src/backup/encryption.ts)
    "/usr/bin/age-keygen",
    "/usr/bin/chown",
    "/usr/bin/mariadb-binlog", // errant transactions saved (src/errant.ts); archived binlogs replayed
    "/usr/bin/mariadb", // the client that applies a replayed binlog (src/binlog/replay.ts)
    "/usr/bin/mysql",
    "/usr/bin/mysqlbinlog",
    "/usr/bin/kill", // a cut semi-sync primary is crash-restarted (src/ha/rebuild.ts); Deno signals need all runs
  ], "only the server tools, by absolute path, never a shell");
  assert(denoJson.tasks.compile.includes("-P=autopilot"), "compile must use the same permission set");
});
