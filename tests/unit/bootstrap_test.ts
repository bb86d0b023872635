import { assert, assertEquals } from "./assert.ts";
import { loadConfig } from "../../src/config.ts";
import {
  bootstrapStatements,
  localAdminUser,
  mysqlInitFile,
  nativePasswordHash,
  requireTlsStatements,
} from "../../src/mysql/bootstrap.ts";

const config = (extra: Record<string, string> = {}) =>
  loadConfig((n) => ({ MYSQL_REPL_PASSWORD: "replpw", ...extra })[n], { hostname: () => "h" });

Deno.test("bootstrapStatements() gives the replication user replication and replica monitoring only", () => {
  assertEquals(bootstrapStatements(config(), "mariadb"), [
    {
      sql: "CREATE USER IF NOT EXISTS ?@'%' IDENTIFIED BY PASSWORD ?",
      values: ["repl", "*3FEBEA1F0E8D83C7578AACB7997039DA49CD121E"],
    },
    { sql: "GRANT REPLICATION SLAVE, SLAVE MONITOR ON *.* TO ?@'%'", values: ["repl"] },
  ]);
  assertEquals(bootstrapStatements(config(), "mysql")[1], {
    sql: "GRANT REPLICATION SLAVE, REPLICATION CLIENT ON *.* TO ?@'%'",
    values: ["repl"],
  });
});

Deno.test("bootstrapStatements() grants the application user its database only, never global rights", () => {
  const s = bootstrapStatements(
    config({ MYSQL_USER: "app", MYSQL_PASSWORD: "apppw", MYSQL_DATABASE: "shop" }),
    "mysql",
  );
  assertEquals(s.slice(2), [
    { sql: "CREATE DATABASE IF NOT EXISTS ??", values: ["shop"] },
    { sql: "CREATE USER IF NOT EXISTS ?@'%' IDENTIFIED BY ?", values: ["app", "apppw"] },
    { sql: "GRANT ALL PRIVILEGES ON ??.* TO ?@'%'", values: ["shop", "app"] },
  ]);
  for (const { sql } of s) {
    assert(!/ON \*\.\* TO \?@'%'/.test(sql) || sql.startsWith("GRANT REPLICATION SLAVE"), sql);
  }
});

Deno.test("bootstrapStatements() never puts a password in the SQL text", () => {
  const c = config({
    MYSQL_USER: "app",
    MYSQL_PASSWORD: "apppw",
    MYSQL_DATABASE: "shop",
    MYSQL_ROOT_PASSWORD: "r",
  });
  for (const flavour of ["mysql", "mariadb"] as const) {
    for (const { sql } of bootstrapStatements(c, flavour, "rootpw")) {
      for (const secret of ["replpw", "apppw", "rootpw"]) {
        assert(!sql.includes(secret), `${secret} in ${sql}`);
      }
    }
  }
});

Deno.test("bootstrapStatements() keeps unix_socket for root on MariaDB when it sets a root password", () => {
  const [last] = bootstrapStatements(config(), "mariadb", "rootpw").slice(-1);
  assertEquals(last, {
    sql: "ALTER USER 'root'@'localhost' IDENTIFIED VIA unix_socket OR mysql_native_password USING ?",
    values: ["*79D0CF9A6A052105DA1E1181406C34FC87AAC89D"],
  });
  const [mysql] = bootstrapStatements(config(), "mysql", "rootpw").slice(-1);
  assertEquals(mysql, { sql: "ALTER USER 'root'@'localhost' IDENTIFIED BY ?", values: ["rootpw"] });
});

Deno.test("bootstrapStatements() expires the root password when MYSQL_ONETIME_PASSWORD is on", () => {
  const s = bootstrapStatements(
    config({ MYSQL_ONETIME_PASSWORD: "yes", MYSQL_RANDOM_ROOT_PASSWORD: "yes" }),
    "mysql",
    "x",
  );
  assertEquals(s[s.length - 1], { sql: "ALTER USER 'root'@'localhost' PASSWORD EXPIRE", values: [] });
  assertEquals(
    bootstrapStatements(config({ MYSQL_ONETIME_PASSWORD: "yes" }), "mysql").length,
    2,
    "no root password",
  );
});

Deno.test("localAdminUser() and mysqlInitFile() authenticate autopilot by its OS user, with no password", () => {
  assertEquals(localAdminUser("mariadb"), "root");
  assertEquals(localAdminUser("mysql"), "autopilot");
  assertEquals(
    mysqlInitFile("root"),
    "CREATE USER 'autopilot'@'localhost' IDENTIFIED WITH auth_socket AS 'root';\n" +
      "GRANT ALL PRIVILEGES ON *.* TO 'autopilot'@'localhost' WITH GRANT OPTION;\n",
  );
  assert(mysqlInitFile("o'brien").includes("AS 'o''brien'"));
});

Deno.test("nativePasswordHash() is MariaDB's PASSWORD(): no password is sent to MariaDB, so none reaches its binlog", () => {
  assertEquals(nativePasswordHash("password"), "*2470C0C06DEE42FD1618BB99005ADCA2EC9D1E19");
  for (
    const st of bootstrapStatements(
      config({ MYSQL_USER: "app", MYSQL_PASSWORD: "apppw" }),
      "mariadb",
      "rootpw",
    )
  ) {
    assert(!st.values?.some((v) => ["replpw", "apppw", "rootpw"].includes(String(v))), st.sql);
  }
});

const TLS = { MYSQL_TLS_CA: "/tls/ca.pem", MYSQL_TLS_CERT: "/tls/n1.pem", MYSQL_TLS_KEY: "/tls/n1-key.pem" };

Deno.test("REQUIRE_TLS: a new cluster's accounts are created REQUIRE SSL, on both flavours", () => {
  const c = config({ ...TLS, REQUIRE_TLS: "true", MYSQL_USER: "app", MYSQL_PASSWORD: "apppw" });
  const creates = (flavour: "mysql" | "mariadb") =>
    bootstrapStatements(c, flavour).filter((s) => s.sql.startsWith("CREATE USER")).map((s) => s.sql);
  assertEquals(creates("mariadb"), [
    "CREATE USER IF NOT EXISTS ?@'%' IDENTIFIED BY PASSWORD ? REQUIRE SSL",
    "CREATE USER IF NOT EXISTS ?@'%' IDENTIFIED BY PASSWORD ? REQUIRE SSL",
  ]);
  assertEquals(creates("mysql"), [
    "CREATE USER IF NOT EXISTS ?@'%' IDENTIFIED BY ? REQUIRE SSL",
    "CREATE USER IF NOT EXISTS ?@'%' IDENTIFIED BY ? REQUIRE SSL",
  ]);
  // TLS without REQUIRE_TLS: plain logins stay allowed.
  assert(bootstrapStatements(config(TLS), "mysql").every((s) => !s.sql.includes("REQUIRE")));
});

Deno.test("REQUIRE_TLS in an existing cluster: the primary alters the replication and application accounts", () => {
  assertEquals(
    requireTlsStatements(config({ ...TLS, REQUIRE_TLS: "true", MYSQL_USER: "app", MYSQL_PASSWORD: "p" })),
    [
      { sql: "ALTER USER IF EXISTS ?@'%' REQUIRE SSL", values: ["repl"] },
      { sql: "ALTER USER IF EXISTS ?@'%' REQUIRE SSL", values: ["app"] },
    ],
  );
  assertEquals(requireTlsStatements(config({ ...TLS, REQUIRE_TLS: "true" })).map((s) => s.values), [[
    "repl",
  ]]);
});
