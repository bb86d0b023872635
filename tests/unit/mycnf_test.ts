import { assert, assertEquals } from "./assert.ts";
import { loadConfig } from "../../src/config.ts";
import { bufferPoolBytes, renderMyCnf, serverIdFor } from "../../src/mysql/mycnf.ts";
import { chooseBufferPool } from "../../src/node.ts";

const config = (extra: Record<string, string> = {}) =>
  loadConfig((n) => ({ MYSQL_REPL_PASSWORD: "x", NODE_NAME: "db-1", ...extra })[n], { hostname: () => "h" });
const GiB = 2 ** 30;
const MiB = 2 ** 20;
/** The buffer pool pre-start would choose with this configuration and memory. */
const pool = (c: ReturnType<typeof config>, memoryBytes: number) =>
  chooseBufferPool(c.mysql.bufferPoolSize, () => ({ bytes: memoryBytes, source: "container limit" })).bytes;

Deno.test("serverIdFor() is stable, in 1..2^32-1, and differs between nodes", () => {
  assertEquals(serverIdFor("db-1"), serverIdFor("db-1"));
  const ids = new Set(Array.from({ length: 1000 }, (_, i) => serverIdFor(`node-${i}`)));
  assertEquals(ids.size, 1000);
  for (const id of ids) assert(id >= 1 && id <= 0xffffffff, String(id));
  assert(serverIdFor("") >= 1);
});

Deno.test("bufferPoolBytes() is 70% of memory after a 384 MiB reserve, in whole MiB, at least 128 MiB", () => {
  assertEquals(bufferPoolBytes(GiB), 448 * MiB, "a 1 GiB container: (1024 - 384) * 0.7");
  assertEquals(bufferPoolBytes(10 * GiB), 6899 * MiB, "(10240 - 384) * 0.7 = 6899.2");
  assertEquals(bufferPoolBytes(2 * GiB), 1164 * MiB, "(2048 - 384) * 0.7 = 1164.8");
  assertEquals(bufferPoolBytes(512 * MiB), 128 * MiB, "the floor");
  assertEquals(bufferPoolBytes(100 * MiB), 128 * MiB, "less memory than the reserve");
});

Deno.test("renderMyCnf() starts every node read-only with replication stopped (MariaDB)", () => {
  const text = renderMyCnf(config(), {
    flavour: "mariadb",
    reportHost: "10.0.0.5",
    bufferPoolBytes: pool(config(), 2 * GiB),
  });
  for (
    const line of [
      "read_only = ON",
      "event_scheduler = ON",
      "skip_slave_start = ON",
      "gtid_strict_mode = ON",
      "slave_ddl_exec_mode = STRICT",
      "log_slave_updates = ON",
      "log_bin = mysql-bin",
      "binlog_format = ROW",
      `server_id = ${serverIdFor("db-1")}`,
      "report_host = 10.0.0.5",
      "datadir = /var/lib/mysql/data",
      "socket = /var/run/mysqld/mysqld.sock",
      "innodb_buffer_pool_size = 1164M",
    ]
  ) assert(text.split("\n").includes(line), `missing: ${line}\n${text}`);
  assert(!text.includes("super_read_only"), "MariaDB has no super_read_only");
  assert(!text.includes("semi_sync"));
  assert(text.split("\n").includes("user = mysql"), "mysqld runs as MYSQL_OS_USER");
});

Deno.test("renderMyCnf() uses MySQL 8.4 names: super_read_only, gtid_mode, skip_replica_start", () => {
  const c = config({ INNODB_BUFFER_POOL_SIZE: "256M", MYSQL_OS_USER: "mysqld" });
  const text = renderMyCnf(c, { flavour: "mysql", reportHost: "db-1", bufferPoolBytes: pool(c, GiB) });
  for (
    const line of [
      "super_read_only = ON",
      "event_scheduler = ON",
      "gtid_mode = ON",
      "enforce_gtid_consistency = ON",
      "skip_replica_start = ON",
      "log_replica_updates = ON",
      "replica_net_timeout = 4",
      "innodb_buffer_pool_size = 256M",
      "user = mysqld",
    ]
  ) assert(text.split("\n").includes(line), `missing: ${line}`);
  assert(!text.includes("gtid_strict_mode"));
  assert(!text.includes("slave_ddl_exec_mode"), "MySQL has no such variable: its replicas are always strict");
});

Deno.test("renderMyCnf() adds semi-sync AFTER_SYNC settings only when SEMI_SYNC is on", () => {
  const mysql = renderMyCnf(config({ SEMI_SYNC: "on" }), {
    flavour: "mysql",
    reportHost: "a",
    bufferPoolBytes: 128 * MiB,
  });
  assert(mysql.includes("plugin-load-add = semisync_source.so"));
  assert(mysql.includes("rpl_semi_sync_source_wait_point = AFTER_SYNC"));
  assert(mysql.includes("rpl_semi_sync_replica_enabled = ON"));
  const maria = renderMyCnf(config({ SEMI_SYNC: "on" }), {
    flavour: "mariadb",
    reportHost: "a",
    bufferPoolBytes: 128 * MiB,
  });
  assert(maria.includes("rpl_semi_sync_master_wait_point = AFTER_SYNC"));
  assert(maria.includes("rpl_semi_sync_slave_enabled = ON"));
  assert(!maria.includes("plugin-load-add"), "semi-sync is built into MariaDB");
  // MDEV-33465 (10.11.9+): crash recovery truncates an unacknowledged tail only in the replica role.
  assert(maria.includes("\ninit_rpl_role = SLAVE\n"), maria);
  assert(
    !mysql.includes("init_rpl_role"),
    "MySQL 8.4 has no such option: its manual says to discard the old source",
  );
  const async = renderMyCnf(config({}), { flavour: "mariadb", reportHost: "a", bufferPoolBytes: 128 * MiB });
  assert(!async.includes("init_rpl_role"), "without semi-sync a tail may be on a replica: never truncated");
});

const TLS = { MYSQL_TLS_CA: "/tls/ca.pem", MYSQL_TLS_CERT: "/tls/n1.pem", MYSQL_TLS_KEY: "/tls/n1-key.pem" };

Deno.test("renderMyCnf() with TLS names the CA, certificate and key for both flavours; without, none", () => {
  for (const flavour of ["mariadb", "mysql"] as const) {
    const c = config(TLS);
    const text = renderMyCnf(c, { flavour, reportHost: "10.0.0.5", bufferPoolBytes: 128 * MiB });
    const mysqld = text.slice(text.indexOf("[mysqld]"));
    for (const line of ["ssl_ca = /tls/ca.pem", "ssl_cert = /tls/n1.pem", "ssl_key = /tls/n1-key.pem"]) {
      assert(mysqld.split("\n").includes(line), `${flavour}: ${line}`);
    }
    const plain = renderMyCnf(config(), { flavour, reportHost: "10.0.0.5", bufferPoolBytes: 128 * MiB });
    assert(!/^ssl_/m.test(plain), `${flavour}: no ssl_ line without TLS settings`);
  }
});
