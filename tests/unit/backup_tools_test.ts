import { assert, assertEquals, assertThrows } from "./assert.ts";
import {
  backupCommand,
  compressCommand,
  decompressCommand,
  extractCommand,
  includeOptionFiles,
  prepareCommand,
} from "../../src/backup/tools.ts";

Deno.test("backupCommand() streams mariabackup with the server's cnf, user and socket, polling redo every 10 ms", () => {
  assertEquals(
    backupCommand("mariadb", {
      defaultsFile: "/etc/my.cnf",
      user: "root",
      socket: "/run/mysqld/mysqld.sock",
    }),
    [
      "mariabackup",
      "--defaults-file=/etc/my.cnf",
      "--backup",
      "--stream=xbstream",
      "--log-copy-interval=10",
      "--user=root",
      "--socket=/run/mysqld/mysqld.sock",
    ],
  );
  assertEquals(backupCommand("mariadb", { defaultsFile: "/etc/my.cnf", user: "backup" }), [
    "mariabackup",
    "--defaults-file=/etc/my.cnf",
    "--backup",
    "--stream=xbstream",
    "--log-copy-interval=10",
    "--user=backup",
  ]);
});

Deno.test("backupCommand() streams xtrabackup with a target dir for its working files", () => {
  assertEquals(
    backupCommand("mysql", {
      defaultsFile: "/etc/my.cnf",
      user: "root",
      socket: "/var/run/mysqld/mysqld.sock",
      targetDir: "/tmp/autopilot-backup-x/xtrabackup",
    }),
    [
      "xtrabackup",
      "--defaults-file=/etc/my.cnf",
      "--backup",
      "--stream=xbstream",
      "--target-dir=/tmp/autopilot-backup-x/xtrabackup",
      "--user=root",
      "--socket=/var/run/mysqld/mysqld.sock",
    ],
  );
  assertThrows(
    () => backupCommand("mysql", { defaultsFile: "/etc/my.cnf", user: "root" }),
    RangeError,
    "Cannot build the xtrabackup command: targetDir is required when streaming",
  );
});

Deno.test("backupCommand() puts --defaults-extra-file first and never a password", () => {
  for (const flavour of ["mariadb", "mysql"] as const) {
    const argv = backupCommand(flavour, {
      defaultsExtraFile: "/var/lib/autopilot/backup-client.cnf",
      user: "backup",
      socket: "/run/mysqld/mysqld.sock",
      targetDir: "/tmp/t",
    });
    assertEquals(argv[1], "--defaults-extra-file=/var/lib/autopilot/backup-client.cnf");
    assert(!argv.some((a) => /pass|^-p/i.test(a)), argv.join(" "));
  }
});

Deno.test("backupCommand() refuses both option files, relative paths and odd user names", () => {
  assertThrows(
    () =>
      backupCommand("mariadb", { defaultsFile: "/etc/my.cnf", defaultsExtraFile: "/x.cnf", user: "root" }),
    RangeError,
    "Cannot pass both --defaults-file and --defaults-extra-file: mariabackup and xtrabackup refuse them together",
  );
  assertThrows(
    () => backupCommand("mariadb", { defaultsFile: "my.cnf", user: "root" }),
    RangeError,
    "Cannot use 'my.cnf' as the option file: use an absolute path on one line",
  );
  assertThrows(
    () => backupCommand("mariadb", { defaultsFile: "/etc/my.cnf", user: "root", socket: "/x\n--password=y" }),
    RangeError,
    "as the socket: use an absolute path on one line",
  );
  assertThrows(
    () => backupCommand("mariadb", { defaultsFile: "/etc/my.cnf", user: "-proot" }),
    RangeError,
    "Cannot back up as user '-proot': use 1 to 80 letters, digits, '_', '.', '$', '@' or '-'",
  );
  assertThrows(() => backupCommand("mariadb", { user: "a b" }), RangeError, "Cannot back up as user 'a b'");
});

Deno.test("extractCommand() and prepareCommand() use each flavour's tools", () => {
  assertEquals(extractCommand("mariadb", "/var/lib/mysql.restore-1"), [
    "mbstream",
    "-x",
    "-C",
    "/var/lib/mysql.restore-1",
  ]);
  assertEquals(extractCommand("mysql", "/var/lib/mysql.restore-1"), [
    "xbstream",
    "-x",
    "-C",
    "/var/lib/mysql.restore-1",
  ]);
  assertEquals(prepareCommand("mariadb", "/d"), ["mariabackup", "--prepare", "--target-dir=/d"]);
  assertEquals(prepareCommand("mysql", "/d"), ["xtrabackup", "--prepare", "--target-dir=/d"]);
  assertThrows(() => extractCommand("mariadb", "-rf"), RangeError, "Cannot use '-rf' as the directory");
});

Deno.test("compressCommand() and decompressCommand() are quiet zstd filters", () => {
  assertEquals(compressCommand(), ["zstd", "-q", "-1", "-T0"]);
  assertEquals(decompressCommand(), ["zstd", "-q", "-d", "-c"]);
});

Deno.test("includeOptionFiles() reads the server's cnf, then the password file", () => {
  assertEquals(
    includeOptionFiles(["/etc/my.cnf", "/var/lib/autopilot/client.cnf"]),
    "!include /etc/my.cnf\n!include /var/lib/autopilot/client.cnf\n",
  );
  assertThrows(() => includeOptionFiles(["/a\n[client]"]), RangeError, "use an absolute path on one line");
});
