/**
 * Replaying archived binlogs as relay logs (src/binlog/replay.ts, MariaDB): which bytes of a file the SQL
 * thread applies, the throwaway server's server_id, the relay log names and option file, and the statements.
 */
import { assert, assertEquals, assertRejects } from "./assert.ts";
import {
  relayLogName,
  relayRange,
  replayServerId,
  type ScannedTransaction,
} from "../../src/binlog/replay.ts";
import type { RecoveryPlan } from "../../src/binlog/plan.ts";
import { scratchServerCnf } from "../../src/backup/scratch_server.ts";
import { ServerOperator, type SqlConnection } from "../../src/mysql/server.ts";
import { parseServerVersion, sqlFor, type Statement } from "../../src/mysql/flavour.ts";
import { segment } from "./segments.ts";

/** Transactions of one file: `[gtid, start, end]`. */
function txns(...t: [string, number, number][]): ScannedTransaction[] {
  return t.map(([gtid, startPosition, endPosition]) => ({ gtid, startPosition, endPosition }));
}

const FILE = txns(["0-1-5", 300, 900], ["0-1-6", 900, 1500], ["0-1-7", 1500, 2100], ["0-1-8", 2100, 2700]);

Deno.test("relayRange: from the first transaction after the start to the end of the last up to the stop", () => {
  assertEquals(relayRange(FILE, { after: "" }), { kind: "range", start: 300, end: 2700, last: "0-1-8" });
  assertEquals(relayRange(FILE, { after: "0-1-5" }), { kind: "range", start: 900, end: 2700, last: "0-1-8" });
  assertEquals(relayRange(FILE, { after: "0-1-5", until: "0-1-7" }), {
    kind: "range",
    start: 900,
    end: 2100,
    last: "0-1-7",
  });
  // A start before the file: all of it (the snapshot's position in an earlier file).
  assertEquals(relayRange(FILE, { after: "0-1-2", until: "0-1-5" }), {
    kind: "range",
    start: 300,
    end: 900,
    last: "0-1-5",
  });
  // An empty stop is no stop, as for mariadb-binlog --stop-position.
  assertEquals(relayRange(FILE, { after: "0-1-6", until: "" }).kind, "range");
});

Deno.test("relayRange: nothing to apply when all is applied or past the stop, or the file has none", () => {
  assertEquals(relayRange(FILE, { after: "0-1-8" }), { kind: "none" });
  assertEquals(relayRange(FILE, { after: "0-1-9" }), { kind: "none" });
  assertEquals(relayRange(FILE, { after: "0-1-5", until: "0-1-5" }), { kind: "none" });
  assertEquals(relayRange([], { after: "" }), { kind: "none" });
});

Deno.test("relayRange: seq_no per domain, whatever the server_id (a failover keeps the domain's order)", () => {
  const after = txns(["0-1-7", 100, 200], ["0-2-8", 200, 300], ["0-2-9", 300, 400]);
  assertEquals(relayRange(after, { after: "0-1-7" }), { kind: "range", start: 200, end: 400, last: "0-2-9" });
  assertEquals(relayRange(after, { after: "0-1-7", until: "0-2-8" }), {
    kind: "range",
    start: 200,
    end: 300,
    last: "0-2-8",
  });
});

Deno.test("relayRange: two domains; a stop or start that cuts them apart is not one byte range", () => {
  const two = txns(["0-1-1", 100, 200], ["1-1-1", 200, 300], ["0-1-2", 300, 400], ["1-1-2", 400, 500]);
  assertEquals(relayRange(two, { after: "", until: "0-1-2,1-1-2" }).kind, "range");
  assertEquals(relayRange(two, { after: "0-1-1,1-1-1", until: "0-1-2,1-1-2" }), {
    kind: "range",
    start: 300,
    end: 500,
    last: "1-1-2",
  });
  // 0-1-2 without 1-1-1 before it: two ranges.
  assertEquals(relayRange(two, { after: "", until: "0-1-2,1-1-0" }), { kind: "scattered" });
  assertEquals(relayRange(two, { after: "1-1-1", until: "0-1-2,1-1-2" }), { kind: "scattered" });
  // A domain the stop does not name: none of it (as --stop-position prints none of it).
  assertEquals(relayRange(two, { after: "", until: "0-1-1" }), {
    kind: "range",
    start: 100,
    end: 200,
    last: "0-1-1",
  });
  assertEquals(relayRange(two, { after: "", until: "0-1-2" }), { kind: "scattered" });
});

function plan(snapshotState: string, ...serverIds: number[]): RecoveryPlan {
  return {
    snapshot: { name: "s", createdAt: "2026-11-15T12:00:00Z", state: snapshotState },
    steps: serverIds.map((id, i) => ({
      segment: segment(
        `0-1-${i * 10}`,
        id === 1 ? `0-1-${i * 10 + 10}` : `0-1-${i * 10},0-${id}-${i * 10 + 10}`,
        i,
        { serverId: id },
      ),
      after: `0-1-${i * 10}`,
    })),
    position: "",
  };
}

Deno.test("replayServerId: the highest id no file's writer and no state along the plan names", () => {
  assertEquals(replayServerId("mariadb", plan("0-1-3", 1, 2)), 4294967295);
  assertEquals(replayServerId("mariadb", plan("0-4294967295-3", 1)), 4294967294);
  assertEquals(replayServerId("mariadb", plan("0-1-3", 4294967295, 2)), 4294967294);
  // A server id only in a state (a replicated GTID in a file another server wrote) is taken too.
  const p = plan("0-1-3", 1);
  const seg = { ...p.steps[0].segment, endState: "0-1-10,0-4294967294-9,0-4294967295-10" };
  assertEquals(replayServerId("mariadb", { ...p, steps: [{ ...p.steps[0], segment: seg }] }), 4294967293);
  // MySQL: the writers' ids only (its states hold source UUIDs).
  const U = "3e11fa47-71ca-11e1-9e33-c80aa9429562";
  const mysqlPlan: RecoveryPlan = { snapshot: { ...p.snapshot, state: `${U}:1-5` }, steps: [], position: "" };
  assertEquals(replayServerId("mysql", mysqlPlan), 4294967295);
  const mysqlStep = {
    segment: {
      ...p.steps[0].segment,
      flavour: "mysql" as const,
      serverId: 4294967295,
      startState: `${U}:1-5`,
      endState: `${U}:1-9`,
    },
    after: `${U}:1-5`,
  };
  assertEquals(replayServerId("mysql", { ...mysqlPlan, steps: [mysqlStep] }), 4294967294);
});

Deno.test("relayLogName: relay-bin.000001 for the first step, in step order", () => {
  assertEquals([relayLogName(0), relayLogName(1), relayLogName(41)], [
    "relay-bin.000001",
    "relay-bin.000002",
    "relay-bin.000042",
  ]);
});

Deno.test("scratchServerCnf with relay logs: the replay server_id, the relay log where the files are, no recovery", () => {
  const cnf = scratchServerCnf("mariadb", "/w", "mysql", {
    datadir: "/d",
    replay: { serverId: 4294967295, relayLog: "/w/relay-bin" },
  });
  for (
    const line of [
      "server_id = 4294967295",
      "relay_log = /w/relay-bin",
      "relay_log_index = /w/relay-bin.index",
      "relay_log_recovery = OFF",
      "log_slave_updates = ON",
      "skip-slave-start",
      "log-bin = /w/replay-bin",
      "gtid_strict_mode = ON",
    ]
  ) assert(cnf.split("\n").includes(line), `${line} missing from\n${cnf}`);
  const plain = scratchServerCnf("mysql", "/w", "mysql", { replay: { serverId: 7 } });
  assert(plain.includes("server_id = 7") && !plain.includes("relay_log"), plain);
  assert(scratchServerCnf("mariadb", "/w", "mysql", { replay: true }).includes("server_id = 1"));
  assert(!scratchServerCnf("mariadb", "/w", "mysql", { replay: false }).includes("log-bin ="));
});

Deno.test("the relay-log statements: CHANGE MASTER without GTID positioning, the SQL thread alone UNTIL", async () => {
  assertEquals(sqlFor("mysql").relayReplay, undefined);
  const sent: string[] = [];
  const db: SqlConnection = {
    where: "recorded",
    query(s: string | Statement) {
      sent.push(typeof s === "string" ? s : `${s.sql} <- ${s.values.join(", ")}`);
      return Promise.resolve([]);
    },
    version: () => Promise.resolve(parseServerVersion("10.11.19-MariaDB")),
    close: () => Promise.resolve(),
  };
  await new ServerOperator(db, "mariadb").applyRelayLog({
    relayFile: "relay-bin.000002",
    relayPos: 4321,
    sourceFile: "mysql-bin.000007",
    sourcePos: 4321,
    port: 1,
  }, 98765);
  assertEquals(sent, [
    "CHANGE MASTER TO MASTER_HOST='127.0.0.1', MASTER_PORT=?, RELAY_LOG_FILE=?, RELAY_LOG_POS=?, " +
    "MASTER_LOG_FILE=?, MASTER_LOG_POS=? <- 1, relay-bin.000002, 4321, mysql-bin.000007, 4321",
    "START SLAVE SQL_THREAD UNTIL RELAY_LOG_FILE=?, RELAY_LOG_POS=? <- relay-bin.000002, 98765",
  ]);
  assert(!sent[0].includes("MASTER_USE_GTID"));
  await assertRejects(
    () =>
      new ServerOperator(db, "mysql").applyRelayLog({
        relayFile: "r",
        relayPos: 4,
        sourceFile: "b",
        sourcePos: 4,
        port: 1,
      }, 5),
    RangeError,
  );
  const row = sqlFor("mariadb").replicaStatusFromRow({
    Master_Host: "127.0.0.1",
    Slave_SQL_Running: "No",
    Relay_Log_File: "/w/relay-bin.000002",
    Relay_Log_Pos: "98765",
    Last_SQL_Error: "Error 'Duplicate entry' on query",
  });
  assertEquals([row.relayLogFile, row.relayLogPos, row.sqlRunning], ["/w/relay-bin.000002", 98765, false]);
  assert(row.lastSqlError.includes("Duplicate"), row.lastSqlError);
});
