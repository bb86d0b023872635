/**
 * Renders the server configuration file from the {@link Config}. Pure: machine facts come in as arguments.
 *
 * Every node starts read-only; only the holder of the primary lock turns that off. Replication never starts
 * by itself at boot: autopilot decides whom a node follows.
 *
 * @module
 */
import type { Config } from "../config.ts";
import type { Flavour } from "./flavour.ts";

/** Facts about this node that the configuration file depends on. */
export interface MyCnfFacts {
  readonly flavour: Flavour;
  /** Address peers reach this node on: `report_host`. */
  readonly reportHost: string;
  /** innodb_buffer_pool_size in bytes, as chosen by `chooseBufferPool()` (src/node.ts). */
  readonly bufferPoolBytes: number;
  /** Address mysqld listens on; default all addresses. */
  readonly bindAddress?: string;
  /** The datadir's server_id (src/server_id.ts); default {@link serverIdFor}(NODE_NAME). */
  readonly serverId?: number;
}

/**
 * A stable server id from the node's name: FNV-1a (32-bit) mapped into 1..2^32-1 (0 disables replication).
 *
 * @param nodeName The node's stable identity (NODE_NAME).
 * @returns The server id.
 */
export function serverIdFor(nodeName: string): number {
  let h = 0x811c9dc5;
  for (const byte of new TextEncoder().encode(nodeName)) {
    h ^= byte;
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return (h % 0xfffffffe) + 1;
}

/** Where mysqld writes its pid file: beside its socket (MYSQL_SOCKET's directory). */
export function pidFilePath(socket: string): string {
  return `${socket.slice(0, socket.lastIndexOf("/")) || "/"}/mysqld.pid`;
}

/**
 * Memory kept out of the buffer pool's share: mysqld's memory besides the pool (about 140 MiB for MariaDB
 * 10.11 with a full pool) and the hooks ContainerPilot runs beside it (a snapshot's autopilot, mariabackup
 * and zstd plus both health checks: about 200 MiB of anonymous memory at their peak), as measured in
 * tests/integration/memory_limit_test.ts.
 */
export const BUFFER_POOL_RESERVE_BYTES: number = 384 * 2 ** 20;

/** The smallest buffer pool chosen from memory (MariaDB's and MySQL's own default). */
export const BUFFER_POOL_FLOOR_BYTES: number = 128 * 2 ** 20;

/**
 * The buffer pool size when INNODB_BUFFER_POOL_SIZE is unset: 70% of the memory left after
 * {@link BUFFER_POOL_RESERVE_BYTES}, in whole MiB, at least {@link BUFFER_POOL_FLOOR_BYTES}. In a 1 GiB
 * container that is 448 MiB; a plain 70% (716 MiB) got mysqld OOM-killed there while a snapshot ran.
 *
 * @param memoryBytes Memory available to the container.
 * @returns Bytes.
 */
export function bufferPoolBytes(memoryBytes: number): number {
  const share = Math.floor(((memoryBytes - BUFFER_POOL_RESERVE_BYTES) * 0.7) / 2 ** 20) * 2 ** 20;
  return Math.max(BUFFER_POOL_FLOOR_BYTES, share);
}

/**
 * Renders the configuration file text.
 *
 * @param config The loaded configuration.
 * @param facts Facts about this node.
 * @returns The file's text, for `--defaults-file`.
 */
export function renderMyCnf(config: Config, facts: MyCnfFacts): string {
  const m = config.mysql;
  const pool = facts.bufferPoolBytes;
  const mariadb = facts.flavour === "mariadb";
  const lines: (string | false)[] = [
    "# Written by autopilot from the environment at every start; edits here are lost.",
    "[client]",
    `socket = ${m.socket}`,
    `port = ${m.port}`,
    "",
    "[mysqld]",
    `user = ${m.osUser}`,
    `datadir = ${m.datadir}`,
    `tmpdir = ${m.tmpdir}`,
    `socket = ${m.socket}`,
    `pid-file = ${pidFilePath(m.socket)}`,
    `port = ${m.port}`,
    `bind-address = ${facts.bindAddress ?? "0.0.0.0"}`,
    "skip-name-resolve = ON",
    `server_id = ${facts.serverId ?? serverIdFor(config.node.name)}`,
    `report_host = ${facts.reportHost}`,
    `report_port = ${m.port}`,
    "",
    "# Nobody writes until the primary lock says so; replication starts only when autopilot starts it.",
    "read_only = ON",
    !mariadb && "super_read_only = ON",
    // MySQL: autopilot's local account is authenticated by its OS user over the socket.
    !mariadb && "plugin-load-add = auth_socket.so",
    mariadb ? "skip_slave_start = ON" : "skip_replica_start = ON",
    // Runs autopilot.lease_fence (src/mysql/lease.ts): read-only once the primary's lease lapses. Off by
    // default on MariaDB.
    "event_scheduler = ON",
    "",
    "# Binary log and GTIDs",
    "log_bin = mysql-bin",
    "relay_log = relay-bin",
    "binlog_format = ROW",
    mariadb ? "log_slave_updates = ON" : "log_replica_updates = ON",
    mariadb ? "gtid_strict_mode = ON" : "gtid_mode = ON",
    mariadb ? "gtid_domain_id = 0" : "enforce_gtid_consistency = ON",
    // MariaDB's default (IDEMPOTENT) replays a CREATE TABLE the replica already has as CREATE OR REPLACE,
    // silently emptying it: a replica started at a wrong position must stop with an error instead, as MySQL's do.
    mariadb && "slave_ddl_exec_mode = STRICT",
    "relay_log_recovery = ON",
    "sync_binlog = 1",
    "innodb_flush_log_at_trx_commit = 1",
    // A silent source (cut link) is noticed after this many seconds; heartbeats come every second.
    mariadb ? "slave_net_timeout = 4" : "replica_net_timeout = 4",
    "",
    `innodb_buffer_pool_size = ${pool / 2 ** 20}M`,
    ...semiSyncLines(facts.flavour, m.semiSync),
    ...tlsLines(config),
    "",
  ];
  return lines.filter((l) => l !== false).join("\n");
}

function semiSyncLines(flavour: Flavour, on: boolean): string[] {
  if (!on) return [];
  // The source side is switched on at run time on the primary only; the timeout is as long as the server
  // allows, so that while semi-sync is enabled a commit never silently falls back to asynchronous.
  const forever = 4294967295;
  if (flavour === "mariadb") {
    return [
      "",
      "# Semi-synchronous replication (built into MariaDB)",
      "rpl_semi_sync_master_wait_point = AFTER_SYNC",
      `rpl_semi_sync_master_timeout = ${forever}`,
      "rpl_semi_sync_slave_enabled = ON",
      // Crash recovery discards the unacknowledged tail: a transaction in the binlog whose engine commit had
      // not happened (with AFTER_SYNC and no timeout, nobody was told it committed) is rolled back and cut
      // from the binlog, so an old primary killed while a commit waited for its acknowledgement comes back
      // with nothing the new primary lacks. MariaDB 10.6.19/10.11.9+ (MDEV-33465) do this only when the
      // server starts in the replica role; before that rpl_semi_sync_slave_enabled did. Every node starts in
      // it: the role only says what recovery does, autopilot decides who is primary after start.
      "init_rpl_role = SLAVE",
    ];
  }
  return [
    "",
    "# Semi-synchronous replication (MySQL 8.4 plugin names)",
    "plugin-load-add = semisync_source.so",
    "plugin-load-add = semisync_replica.so",
    "rpl_semi_sync_source_wait_point = AFTER_SYNC",
    `rpl_semi_sync_source_timeout = ${forever}`,
    "rpl_semi_sync_replica_enabled = ON",
  ];
}

function tlsLines(config: Config): string[] {
  const t = config.mysql.tls;
  if (!t) return [];
  // The same system variables on MariaDB 10.11 and MySQL 8.4 (MySQL would otherwise make its own
  // self-signed certificate at start; MariaDB would speak no TLS at all).
  return [
    "",
    "# TLS for clients and replicas (MYSQL_TLS_CA, MYSQL_TLS_CERT, MYSQL_TLS_KEY)",
    `ssl_ca = ${t.ca}`,
    `ssl_cert = ${t.cert}`,
    `ssl_key = ${t.key}`,
  ];
}
