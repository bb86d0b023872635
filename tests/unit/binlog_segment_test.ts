/**
 * The archive's layout (src/binlog/segment.ts): keys, and index entries as written and read; and the replay
 * commands (src/binlog/replay.ts).
 */
import { assert, assertEquals, assertThrows } from "./assert.ts";
import {
  formatSegment,
  indexKeyOf,
  parseSegment,
  type Segment,
  SegmentIndexError,
  segmentKeys,
} from "../../src/binlog/segment.ts";
import { clientCommand, readerCommand } from "../../src/binlog/replay.ts";

Deno.test("segmentKeys: node, creation time and server_id in the name; node names sanitised", () => {
  const k = segmentKeys("n1", 3, "/var/lib/mysql/mysql-bin.000004", "2026-12-02T10:00:00.000Z");
  assertEquals(k, {
    data: "binlogs/n1/2026-12-02T10-00-00Z_3_mysql-bin.000004.zst",
    index: "binlogs/n1/2026-12-02T10-00-00Z_3_mysql-bin.000004.json",
  });
  assertEquals(indexKeyOf(k.data), k.index);
  // A cluster's archive lies under its snapshot name prefix.
  assertEquals(
    segmentKeys("n1", 3, "mysql-bin.000004", "2026-12-02T10:00:00Z", "mysql-backup-").data,
    "binlogs/mysql-backup-/n1/2026-12-02T10-00-00Z_3_mysql-bin.000004.zst",
  );
  assertEquals(indexKeyOf(k.index), undefined);
  assertEquals(indexKeyOf("snapshots/x.zst"), undefined);
  const keys = new Set([
    segmentKeys("n1", 3, "mysql-bin.000004", "2026-12-02T10:00:00Z").data,
    segmentKeys("n1", 4, "mysql-bin.000004", "2026-12-02T10:00:00Z").data,
    segmentKeys("n1", 3, "mysql-bin.000004", "2026-12-02T10:00:01Z").data,
    segmentKeys("n2", 3, "mysql-bin.000004", "2026-12-02T10:00:00Z").data,
  ]);
  assertEquals(keys.size, 4);
  assertEquals(
    segmentKeys("db 1:a/b", 1, "f.000001", "2026-12-02T10:00:00Z").data,
    "binlogs/db-1-a-b/2026-12-02T10-00-00Z_1_f.000001.zst",
  );
  assertThrows(() => segmentKeys("..", 1, "f.000001", "2026-12-02T10:00:00Z"), RangeError, "snapshot key");
});

const KEY = "binlogs/n1/2026-12-02T10-00-00Z_3_mysql-bin.000004";
const good: Segment = {
  format: 1,
  key: `${KEY}.zst`,
  node: "n1",
  serverId: 3,
  file: "mysql-bin.000004",
  createdAt: "2026-12-02T10:00:00Z",
  flavour: "mariadb",
  startState: "0-3-10",
  endState: "0-3-12,1-3-1",
  transactions: 3,
  firstTime: 1796256206,
  lastTime: 1796256208,
  marks: [[1796256206, "0-3-11"], [1796256208, "0-3-12,1-3-1"]],
  rawBytes: 1000,
  size: 400,
  sha256: "a".repeat(64),
  archivedAt: "2026-12-02T10:05:00.000Z",
};

Deno.test("parseSegment reads what formatSegment writes", () => {
  const text = formatSegment(good);
  assert(text.endsWith("}\n") && !text.slice(0, -1).includes("\n"), text);
  assertEquals(parseSegment(text, `${KEY}.json`), good);
  const bare: Segment = { ...good, transactions: 0 };
  delete (bare as { firstTime?: number }).firstTime;
  delete (bare as { lastTime?: number }).lastTime;
  delete (bare as { marks?: unknown }).marks;
  assertEquals(parseSegment(formatSegment(bare), `${KEY}.json`), bare);
  assertEquals(parseSegment(formatSegment({ ...good, startState: "" }), `${KEY}.json`).startState, "");
});

Deno.test("parseSegment rejects each malformed field, naming it", () => {
  const bad = (patch: Record<string, unknown>, says: string, key = `${KEY}.json`) => {
    const e = assertThrows(
      () => parseSegment(JSON.stringify({ ...good, ...patch }), key),
      SegmentIndexError,
      says,
    );
    assertEquals(e.key, key);
  };
  assertThrows(() => parseSegment("{", `${KEY}.json`), SegmentIndexError, "not valid JSON");
  assertThrows(() => parseSegment("[]", `${KEY}.json`), SegmentIndexError, "not a JSON object");
  bad({ format: 2 }, "format 2, which this autopilot cannot read");
  bad({ format: "1" }, "'format' must be 1");
  bad({ flavour: "postgres" }, "'flavour'");
  bad({ key: "binlogs/n1/other.zst" }, "'key' must be the data object beside it");
  bad({}, "'key' must be the data object beside it", "binlogs/n1/x.json");
  bad({ node: "" }, "'node' must be a non-empty string");
  bad({ file: 3 }, "'file' must be a non-empty string");
  bad({ serverId: -1 }, "'serverId' must be a non-negative integer");
  bad({ serverId: 1.5 }, "'serverId'");
  bad({ transactions: "3" }, "'transactions'");
  bad({ firstTime: -5 }, "'firstTime'");
  bad({ lastTime: "x" }, "'lastTime'");
  bad({ rawBytes: undefined }, "'rawBytes'");
  bad({ size: null }, "'size'");
  bad({ createdAt: "yesterday" }, "'createdAt' must be an ISO 8601 time");
  bad({ archivedAt: "" }, "'archivedAt'");
  bad({ sha256: "A".repeat(64) }, "'sha256' must be 64 lower-case hex digits");
  bad({ startState: 5 }, "'startState' must be a GTID state");
  bad({ endState: "0-1" }, "'endState'");
  bad({ endState: "3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5" }, "'endState'");
  bad({ marks: {} }, "'marks' must be an array");
  bad({ marks: [[1, 2]] }, "'marks' must hold [second, position] pairs");
  bad({ marks: [[1.5, "0-1-1"]] }, "'marks' must hold");
});

Deno.test("readerCommand and clientCommand, both flavours", () => {
  assertEquals(readerCommand("mariadb", "/w/0000.binlog", { after: "0-1-10", until: "0-1-12,1-1-5" }), [
    "mariadb-binlog",
    "--start-position=0-1-10",
    "--stop-position=0-1-12,1-1-5",
    "/w/0000.binlog",
  ]);
  assertEquals(readerCommand("mariadb", "f", { after: "" }), ["mariadb-binlog", "f"]);
  assertEquals(readerCommand("mariadb", "f", { after: "", until: "" }), ["mariadb-binlog", "f"]);
  const U = "3e11fa47-71ca-11e1-9e33-c80aa9429562";
  assertEquals(readerCommand("mysql", "f", { after: `${U}:1-10`, until: `${U}:1-12` }), [
    "mysqlbinlog",
    `--exclude-gtids=${U}:1-10`,
    `--include-gtids=${U}:1-12`,
    "f",
  ]);
  assertEquals(readerCommand("mysql", "f", { after: "" }), ["mysqlbinlog", "f"]);
  for (const flavour of ["mariadb", "mysql"] as const) {
    const c = clientCommand(flavour, "/w/mysqld.sock");
    assertEquals(c[0], flavour === "mariadb" ? "mariadb" : "mysql");
    assertEquals(c.slice(1, 3), ["--no-defaults", "--socket=/w/mysqld.sock"]);
    assert(c.some((a) => a.startsWith("--user=")) && c.includes("--binary-mode"), c.join(" "));
  }
});
