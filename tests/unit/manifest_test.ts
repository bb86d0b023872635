import { assert, assertEquals, assertThrows } from "./assert.ts";
import { CorruptSnapshotError } from "../../src/backup/errors.ts";
import {
  backupTool,
  dataKey,
  formatManifest,
  type Manifest,
  manifestKey,
  parseBackupLog,
  parseBinlogInfo,
  parseManifest,
  renderBackupName,
} from "../../src/backup/manifest.ts";

const SHA = "ab12".repeat(16);
const UUID_A = "3e11fa47-71ca-11e1-9e33-c80aa9429562";
const UUID_B = "8a94f357-aab4-11df-86ab-c80aa9429563";

const MANIFEST: Manifest = {
  format: 1,
  name: "mysql-backup-2026-11-25T19-00-00Z",
  key: "mysql-backup-2026-11-25T19-00-00Z.xbstream.zst",
  createdAt: "2026-11-25T19:00:00.000Z",
  nodeName: "mysql-1",
  flavour: "mariadb",
  serverVersion: "10.11.19-MariaDB-0+deb12u1-log",
  tool: "mariabackup",
  compression: "zstd",
  sha256: SHA,
  size: 1655484,
  gtid: "0-1-3",
  binlog: { file: "mysql-bin.000001", position: 763921 },
};

const ADVICE =
  "it was not restored; take a new snapshot on the primary or publish an older one in LAST_BACKUP_KEY";

Deno.test("renderBackupName() renders the default pattern in UTC", () => {
  const pattern = "mysql-backup-%Y-%m-%dT%H-%M-%SZ";
  assertEquals(
    renderBackupName(pattern, new Date("2026-11-25T19:00:05.999Z")),
    "mysql-backup-2026-11-25T19-00-05Z",
  );
  // 23:30 at UTC-5 is 04:30 the next day in UTC
  assertEquals(
    renderBackupName(pattern, new Date("2026-11-25T23:30:00-05:00")),
    "mysql-backup-2026-11-26T04-30-00Z",
  );
});

Deno.test("renderBackupName() pads day of year", () => {
  assertEquals(renderBackupName("d%j", new Date("2026-01-05T00:00:00Z")), "d005");
  assertEquals(renderBackupName("d%j", new Date("2026-02-10T23:59:59Z")), "d041");
  assertEquals(renderBackupName("d%j", new Date("2025-12-31T12:00:00Z")), "d365");
  assertEquals(renderBackupName("d%j", new Date("2024-12-31T23:59:59Z")), "d366");
  assertEquals(renderBackupName("d%j", new Date("2024-03-01T00:00:00Z")), "d061");
});

Deno.test("renderBackupName() renders %y, %s and pads every field", () => {
  const date = new Date("2009-02-03T04:05:06.700Z");
  assertEquals(renderBackupName("%y.%m.%d.%H.%M.%S", date), "09.02.03.04.05.06");
  assertEquals(renderBackupName("b-%s", date), `b-${Math.floor(date.getTime() / 1000)}`);
  assertEquals(renderBackupName("b-%s", new Date(1764097205999)), "b-1764097205");
  assertEquals(renderBackupName("%Y", new Date("0099-01-01T00:00:00Z")), "0099");
  assertEquals(renderBackupName("plain-name", date), "plain-name");
});

Deno.test("renderBackupName() refuses unsupported directives, a trailing '%' and invalid results", () => {
  const date = new Date("2026-11-25T19:00:00Z");
  assertThrows(
    () => renderBackupName("b-%q", date),
    RangeError,
    "Cannot render backup name 'b-%q': unsupported strftime directive '%q' (supported: %Y %y %m %d %H %M %S %j %s %%)",
  );
  assertThrows(
    () => renderBackupName("b-%", date),
    RangeError,
    "Cannot render backup name 'b-%': a '%' at the end",
  );
  assertThrows(
    () => renderBackupName("100%%", date),
    RangeError,
    "Cannot use '100%' as a backup name: use letters, digits, '.', '_' and '-' only (pattern '100%%')",
  );
  assertThrows(() => renderBackupName("b", new Date(NaN)), RangeError, "the date is invalid");
});

Deno.test("dataKey() and manifestKey() name a snapshot's two objects", () => {
  assertEquals(dataKey("mysql-backup-x"), "mysql-backup-x.xbstream.zst");
  assertEquals(manifestKey("mysql-backup-x"), "mysql-backup-x.manifest.json");
  assertThrows(() => dataKey("../x"), RangeError, "Cannot use '../x.xbstream.zst' as a snapshot key");
});

Deno.test("backupTool() is mariabackup for MariaDB and xtrabackup for MySQL", () => {
  assertEquals(backupTool("mariadb"), "mariabackup");
  assertEquals(backupTool("mysql"), "xtrabackup");
});

Deno.test("parseManifest() reads what formatManifest() writes", () => {
  const text = formatManifest(MANIFEST);
  assert(text.endsWith("}\n"));
  const parsed = parseManifest(text, "m.json");
  assertEquals(parsed, MANIFEST);
  assert(Object.isFrozen(parsed) && Object.isFrozen(parsed.binlog));
  const mysql: Manifest = {
    ...MANIFEST,
    flavour: "mysql",
    tool: "xtrabackup",
    serverVersion: "8.4.3-3",
    gtid: `${UUID_A}:1-5,${UUID_B}:1-3`,
  };
  assertEquals(parseManifest(formatManifest(mysql)), mysql);
  assertEquals(parseManifest(formatManifest({ ...MANIFEST, gtid: "" })).gtid, "");
});

Deno.test("parseManifest() ignores unknown fields", () => {
  const text = JSON.stringify({ ...MANIFEST, comment: "none" });
  assertEquals(parseManifest(text), MANIFEST);
});

Deno.test("parseManifest() names the field at fault and its value", () => {
  const cases: [string, Record<string, unknown>, string][] = [
    ["format", { format: "1" }, "its manifest's 'format' must be 1: current value is '1'"],
    [
      "missing name",
      { name: undefined },
      "its manifest's 'name' must be letters, digits, '.', '_' and '-': current value is missing",
    ],
    [
      "key",
      { key: "other.xbstream.zst" },
      "its manifest's 'key' must be 'mysql-backup-2026-11-25T19-00-00Z.xbstream.zst': current value is 'other.xbstream.zst'",
    ],
    [
      "createdAt",
      { createdAt: "2026-11-25 19:00" },
      "its manifest's 'createdAt' must be an ISO 8601 UTC time like 2026-11-25T19:00:00.000Z: current value is '2026-11-25 19:00'",
    ],
    [
      "nodeName",
      { nodeName: "" },
      "its manifest's 'nodeName' must be a non-empty string: current value is ''",
    ],
    [
      "flavour",
      { flavour: "postgres" },
      "its manifest's 'flavour' must be 'mariadb' or 'mysql': current value is 'postgres'",
    ],
    [
      "tool",
      { tool: "xtrabackup" },
      "its manifest's 'tool' must be 'mariabackup' for mariadb: current value is 'xtrabackup'",
    ],
    [
      "compression",
      { compression: "gzip" },
      "its manifest's 'compression' must be 'zstd': current value is 'gzip'",
    ],
    [
      "sha256",
      { sha256: "AB12" },
      "its manifest's 'sha256' must be 64 lower-case hex digits: current value is 'AB12'",
    ],
    ["size", { size: -1 }, "its manifest's 'size' must be a positive integer: current value is -1"],
    [
      "size as text",
      { size: "12" },
      "its manifest's 'size' must be a positive integer: current value is '12'",
    ],
    [
      "gtid of the other flavour",
      { gtid: `${UUID_A}:1-5` },
      `its manifest's 'gtid' must be a mariadb GTID position: current value is '${UUID_A}:1-5'`,
    ],
    [
      "binlog",
      { binlog: "mysql-bin.000001" },
      "its manifest's 'binlog' must be an object: current value is 'mysql-bin.000001'",
    ],
    [
      "binlog.file",
      { binlog: { file: "../x", position: 4 } },
      "its manifest's 'binlog.file' must be a binlog file name: current value is '../x'",
    ],
    [
      "binlog.position",
      { binlog: { file: "mysql-bin.000001", position: 1.5 } },
      "its manifest's 'binlog.position' must be a non-negative integer: current value is 1.5",
    ],
  ];
  for (const [what, change, problem] of cases) {
    const e = assertThrows(
      () => parseManifest(JSON.stringify({ ...MANIFEST, ...change }), "m.manifest.json"),
      CorruptSnapshotError,
    );
    assertEquals(e.message, `Snapshot 'm.manifest.json' is corrupt: ${problem}: ${ADVICE}`, what);
    assertEquals(e.problem, problem, what);
  }
});

Deno.test("parseManifest() refuses text that is not a JSON object", () => {
  assertThrows(
    () => parseManifest("[1]", "m.manifest.json"),
    CorruptSnapshotError,
    `Snapshot 'm.manifest.json' is corrupt: its manifest must be a JSON object: current value is [1]: ${ADVICE}`,
  );
  const e = assertThrows(() => parseManifest('{"format": 1', "m.manifest.json"), CorruptSnapshotError);
  assert(
    e.message.startsWith("Snapshot 'm.manifest.json' is corrupt: its manifest is not valid JSON ("),
    e.message,
  );
  assert(!e.message.includes("\n"), e.message);
});

Deno.test("parseManifest() asks for a newer autopilot for a newer format", () => {
  assertThrows(
    () => parseManifest(JSON.stringify({ ...MANIFEST, format: 2 }), "m.manifest.json"),
    CorruptSnapshotError,
    "Snapshot 'm.manifest.json' is corrupt: its manifest has format 2, which this autopilot cannot read " +
      "(it reads format 1): upgrade autopilot to restore it",
  );
});

const MARIADB_LOG =
  `[00] 2026-11-25 19:24:19 Connecting to MariaDB server host: localhost, user: root, password: not set, port: 45897, socket: /run/n1/mysqld.sock
[00] 2026-11-25 19:24:19 Using server version 10.11.19-MariaDB-0+deb12u1-log
mariabackup based on MariaDB server 10.11.19-MariaDB debian-linux-gnu (x86_64)
[00] 2026-11-25 19:24:20 Streaming xtrabackup_binlog_info
[00] 2026-11-25 19:24:20         ...done
[00] 2026-11-25 19:24:20 All tables unlocked
[00] 2026-11-25 19:24:20 Backup created in directory '/work/main/xtrabackup_backupfiles/'
[00] 2026-11-25 19:24:20 MySQL binlog position: filename 'mysql-bin.000001', position '763921', GTID of the last change '0-1-3'
[00] 2026-11-25 19:24:20 Streaming backup-my.cnf
[00] 2026-11-25 19:24:20 Redo log (from LSN 44760 to 1700760) was copied.
2026-11-25 19:24:20 0 [Note] InnoDB: Starting shutdown...
[00] 2026-11-25 19:24:20 completed OK!
`;

Deno.test("parseBackupLog() reads mariabackup's marker, binlog position and GTID", () => {
  assertEquals(parseBackupLog(MARIADB_LOG), {
    completedOk: true,
    binlog: { file: "mysql-bin.000001", position: 763921 },
    gtid: "0-1-3",
  });
  const multi = MARIADB_LOG.replace("'0-1-3'", "'0-1-3,1-2-40'");
  assertEquals(parseBackupLog(multi).gtid, "0-1-3,1-2-40");
});

Deno.test("parseBackupLog() notices a missing 'completed OK!' marker", () => {
  const log = MARIADB_LOG.replace("completed OK!", "Error: failed to stream");
  assertEquals(parseBackupLog(log).completedOk, false);
  assertEquals(parseBackupLog("").completedOk, false);
  assertEquals(parseBackupLog("").binlog, undefined);
});

Deno.test("parseBackupLog() accepts an empty or missing GTID", () => {
  const empty = MARIADB_LOG.replace("'0-1-3'", "''");
  assertEquals(parseBackupLog(empty).gtid, "");
  assertEquals(parseBackupLog(empty).binlog, { file: "mysql-bin.000001", position: 763921 });
  const none = MARIADB_LOG.replace(", GTID of the last change '0-1-3'", "");
  assertEquals(parseBackupLog(none), {
    completedOk: true,
    binlog: { file: "mysql-bin.000001", position: 763921 },
    gtid: "",
  });
});

Deno.test("parseBackupLog() reads xtrabackup 8.4's line with a multi-line MySQL GTID set", () => {
  const log = [
    "2026-11-25T19:00:01.123456-00:00 0 [Note] [MY-011825] [Xtrabackup] Backup created in directory '/tmp/x/'",
    "2026-11-25T19:00:01.123456-00:00 0 [Note] [MY-011825] [Xtrabackup] MySQL binlog position: filename " +
    `'binlog.000003', position '197', GTID of the last change '${UUID_A}:1-5,`,
    `${UUID_B}:1-3'`,
    "2026-11-25T19:00:02.000000-00:00 0 [Note] [MY-011825] [Xtrabackup] completed OK!",
  ].join("\n");
  assertEquals(parseBackupLog(log), {
    completedOk: true,
    binlog: { file: "binlog.000003", position: 197 },
    gtid: `${UUID_A}:1-5,${UUID_B}:1-3`,
  });
});

Deno.test("parseBinlogInfo() reads both tools' binlog info files", () => {
  assertEquals(parseBinlogInfo("mysql-bin.000001\t5614399\t0-3-16\n"), {
    file: "mysql-bin.000001",
    position: 5614399,
    gtid: "0-3-16",
  });
  assertEquals(parseBinlogInfo("mysql-bin.000001\t5614399\t0-3-16,1-3-4"), {
    file: "mysql-bin.000001",
    position: 5614399,
    gtid: "0-3-16,1-3-4",
  });
  assertEquals(parseBinlogInfo(`binlog.000003\t197\t${UUID_A}:1-5,\n${UUID_B}:1-3\n`), {
    file: "binlog.000003",
    position: 197,
    gtid: `${UUID_A}:1-5,${UUID_B}:1-3`,
  });
  assertEquals(parseBinlogInfo("binlog.000003\t197\n"), { file: "binlog.000003", position: 197, gtid: "" });
  assertEquals(parseBinlogInfo("binlog.000003\t197\t\n"), { file: "binlog.000003", position: 197, gtid: "" });
});

Deno.test("parseBinlogInfo() says what is wrong with a damaged file", () => {
  assertThrows(
    () => parseBinlogInfo(""),
    SyntaxError,
    "Cannot parse the backup's binlog info: expected '<file>\\t<position>\\t<gtid>': current value is ''",
  );
  assertThrows(
    () => parseBinlogInfo("mysql-bin.000001 5614399 0-3-16"),
    SyntaxError,
    "Cannot parse the backup's binlog info: expected '<file>\\t<position>\\t<gtid>': current value is " +
      "'mysql-bin.000001 5614399 0-3-16'",
  );
  assertThrows(
    () => parseBinlogInfo("mysql-bin.000001\tabc\t0-3-16"),
    SyntaxError,
    "Cannot parse the backup's binlog info: position 'abc' is not a non-negative integer: current value is",
  );
});

Deno.test("parseManifest() keeps a MariaDB snapshot's binlog state, and refuses one on a MySQL snapshot", () => {
  const withState: Manifest = { ...MANIFEST, gtid: "0-2-9", binlogState: "0-1-5,0-2-9" };
  assertEquals(parseManifest(formatManifest(withState)), withState);
  const mysql = {
    ...MANIFEST,
    flavour: "mysql",
    tool: "xtrabackup",
    gtid: `${UUID_A}:1-5`,
    binlogState: "0-1-5",
  };
  assertThrows(
    () => parseManifest(JSON.stringify(mysql)),
    CorruptSnapshotError,
    "its manifest's 'binlogState' must be a MariaDB binlog state (mariadb snapshots only)",
  );
});
