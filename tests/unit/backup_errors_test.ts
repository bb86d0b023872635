import { assertEquals } from "./assert.ts";
import {
  BackupError,
  CorruptSnapshotError,
  RestoreError,
  withoutLogPrefixes,
} from "../../src/backup/errors.ts";

Deno.test("CorruptSnapshotError says what is wrong and what to do, in one line", () => {
  const e = new CorruptSnapshotError("mysql-backup-1", "its SHA-256 is ab12… but the manifest says cd34…");
  assertEquals(
    e.message,
    "Snapshot 'mysql-backup-1' is corrupt: its SHA-256 is ab12… but the manifest says cd34…: it was not " +
      "restored; take a new snapshot on the primary or publish an older one in LAST_BACKUP_KEY",
  );
  assertEquals([e.name, e.snapshot], ["CorruptSnapshotError", "mysql-backup-1"]);
});

Deno.test("BackupError and RestoreError name the snapshot, the problem and the outcome", () => {
  const b = new BackupError("b-1", "mariabackup failed (exit code 1): Access denied");
  assertEquals(
    b.message,
    "Cannot take snapshot 'b-1': mariabackup failed (exit code 1): Access denied: nothing was stored (earlier " +
      "snapshots are unchanged); fix the cause and take the snapshot again",
  );
  const r = new RestoreError("b-1", "/var/lib/mysql", "the datadir is not empty (it holds 'ibdata1')");
  assertEquals(
    r.message,
    "Cannot restore snapshot 'b-1' into '/var/lib/mysql': the datadir is not empty (it holds 'ibdata1'): the " +
      "datadir was not touched; fix the cause and restore again",
  );
  assertEquals([b.name, r.name, r.datadir], ["BackupError", "RestoreError", "/var/lib/mysql"]);
});

Deno.test("withoutLogPrefixes() drops mariabackup's and xtrabackup's timestamps", () => {
  assertEquals(
    withoutLogPrefixes(
      "mariabackup failed (exit code 1): [00] 2026-11-25 19:32:10 Connecting to MariaDB server host: " +
        "localhost | [00] 2026-11-25 19:32:10 Failed to connect to MariaDB server: Access denied.",
    ),
    "mariabackup failed (exit code 1): Connecting to MariaDB server host: localhost | Failed to connect to " +
      "MariaDB server: Access denied",
  );
  assertEquals(
    withoutLogPrefixes(
      "xtrabackup failed (exit code 1): 2026-11-25T19:00:01.123456-00:00 0 [ERROR] [MY-011825] [Xtrabackup] " +
        "Failed to connect to MySQL server",
    ),
    "xtrabackup failed (exit code 1): Failed to connect to MySQL server",
  );
  assertEquals(
    withoutLogPrefixes("zstd failed (exit code 1): zstd: /*stdin*\\: unsupported format"),
    "zstd failed (exit code 1): zstd: /*stdin*\\: unsupported format",
  );
});
