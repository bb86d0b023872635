/**
 * The statements that turn a new, empty server into the cluster's first primary: accounts, the application
 * database, the root password. Pure: values travel as placeholders, never inside the SQL text.
 *
 * They run once, on the node that won the primary lock in a new cluster, before the first snapshot, so every
 * replica (restored from that snapshot, or replicating from the first binlog) gets the same accounts and no
 * node ever has transactions the others lack.
 *
 * @module
 */
import { createHash } from "node:crypto";
import type { Config } from "../config.ts";
import type { Flavour, Statement } from "./flavour.ts";
import { identityStatements } from "./identity.ts";

/**
 * The local administrative account autopilot uses over the unix socket. MariaDB: `root`, authenticated by
 * the OS user (unix_socket). MySQL: `autopilot`@`localhost` with auth_socket, created by pre-start when it
 * initialises the datadir (see {@link mysqlInitFile}).
 */
export function localAdminUser(flavour: Flavour): string {
  return flavour === "mariadb" ? "root" : "autopilot";
}

/**
 * The SQL file MySQL's `--initialize-insecure --init-file` runs: the local admin account that autopilot uses
 * over the socket, authenticated by the OS user (no password anywhere). MariaDB needs none: its installer
 * sets root up with unix_socket.
 *
 * @param osUser The OS user autopilot runs as (root in the image).
 */
export function mysqlInitFile(osUser: string): string {
  const q = (s: string) => `'${s.replaceAll("\\", "\\\\").replaceAll("'", "''")}'`;
  return [
    `CREATE USER 'autopilot'@'localhost' IDENTIFIED WITH auth_socket AS ${q(osUser)};`,
    "GRANT ALL PRIVILEGES ON *.* TO 'autopilot'@'localhost' WITH GRANT OPTION;",
    "",
  ].join("\n");
}

/**
 * The bootstrap statements, in order.
 *
 * @param config The configuration (accounts, database).
 * @param flavour The server family.
 * @param rootPassword The root password to set (given or generated); `undefined` leaves root as installed.
 * @param identity The new cluster's identity (src/mysql/identity.ts), written last and with the binlog, so that
 *   every replica and every snapshot carries it.
 * @returns Statements with placeholders.
 */
export function bootstrapStatements(
  config: Config,
  flavour: Flavour,
  rootPassword?: string,
  identity?: string,
): Statement[] {
  const m = config.mysql;
  const s = (sql: string, ...values: (string | number)[]): Statement => ({ sql, values });
  // MariaDB writes CREATE USER and ALTER USER to the binlog as they were sent, so a password would reach every
  // replica's binlog and every snapshot: send MariaDB the hash only. MySQL rewrites them with the hash itself.
  // REQUIRE_TLS: a login without TLS is refused (MariaDB and MySQL 8.4: CREATE USER ... REQUIRE SSL).
  const require = m.requireTls ? " REQUIRE SSL" : "";
  const identifiedBy = (user: string, password: string): Statement =>
    flavour === "mariadb"
      ? s(
        `CREATE USER IF NOT EXISTS ?@'%' IDENTIFIED BY PASSWORD ?${require}`,
        user,
        nativePasswordHash(password),
      )
      : s(`CREATE USER IF NOT EXISTS ?@'%' IDENTIFIED BY ?${require}`, user, password);
  const out: Statement[] = [
    // Replicas read the binlog with it; the failover runner reads each node's replication state with it
    // (SHOW REPLICA STATUS: MariaDB's SLAVE MONITOR, MySQL's REPLICATION CLIENT). Nothing else.
    identifiedBy(m.replUser, m.replPassword.reveal()),
    s(
      flavour === "mariadb"
        ? "GRANT REPLICATION SLAVE, SLAVE MONITOR ON *.* TO ?@'%'"
        : "GRANT REPLICATION SLAVE, REPLICATION CLIENT ON *.* TO ?@'%'",
      m.replUser,
    ),
  ];
  if (m.database !== undefined) out.push(s("CREATE DATABASE IF NOT EXISTS ??", m.database));
  if (m.user !== undefined && m.password !== undefined) {
    out.push(identifiedBy(m.user, m.password.reveal()));
    // Database-level privileges only: no SUPER, no READ_ONLY ADMIN, so the application cannot write on a
    // read-only replica.
    if (m.database !== undefined) out.push(s("GRANT ALL PRIVILEGES ON ??.* TO ?@'%'", m.database, m.user));
  }
  if (rootPassword !== undefined) {
    out.push(
      flavour === "mariadb"
        // Keep unix_socket first so autopilot (OS root) still logs in without the password.
        ? s(
          "ALTER USER 'root'@'localhost' IDENTIFIED VIA unix_socket OR mysql_native_password USING ?",
          nativePasswordHash(rootPassword),
        )
        : s("ALTER USER 'root'@'localhost' IDENTIFIED BY ?", rootPassword),
    );
    if (m.onetimePassword) out.push(s("ALTER USER 'root'@'localhost' PASSWORD EXPIRE"));
  }
  if (identity !== undefined) out.push(...identityStatements(identity));
  return out;
}

/**
 * The `mysql_native_password` hash of a password: `*` and the upper-case hex of SHA1(SHA1(password)), what
 * MariaDB's `PASSWORD()` returns.
 */
export function nativePasswordHash(password: string): string {
  const inner = createHash("sha1").update(password, "utf8").digest();
  return "*" + createHash("sha1").update(inner).digest("hex").toUpperCase();
}

/** The accounts REQUIRE_TLS applies to: the replication account, and the application's if one is set. */
export function tlsAccounts(config: Config): string[] {
  return [config.mysql.replUser, ...(config.mysql.user !== undefined ? [config.mysql.user] : [])];
}

/**
 * REQUIRE_TLS in a running cluster: the statements that make the existing accounts refuse logins without TLS
 * (same text on MariaDB 10.11 and MySQL 8.4; `IF EXISTS`: an account made by hand may be gone). Run on the
 * primary once it is writable: they are binlogged, so every replica gets them too. Idempotent.
 */
export function requireTlsStatements(config: Config): Statement[] {
  return tlsAccounts(config).map((account) => ({
    sql: "ALTER USER IF EXISTS ?@'%' REQUIRE SSL",
    values: [account],
  }));
}
