/** An errant node's extra transactions: their names in the store, what is done with them, how they are read. */
import { assert, assertEquals } from "./assert.ts";
import { errantKeys, parseErrantKey } from "../../src/backup/manifest.ts";
import { errantBinlogCommands, missingFromOutput, planErrant, tailDiscardApplies } from "../../src/errant.ts";

const at = new Date("2026-12-02T15:56:44.123Z");

Deno.test("errantKeys() names the node, the time and the GTIDs, and parseErrantKey() reads them back", () => {
  const k = errantKeys("n1", at, "0-1-93,1-1-7");
  assertEquals(k.base, "errant-transactions/n1/2026-12-02T15-56-44Z_0-1-93_1-1-7");
  assertEquals(k.events, `${k.base}.events.sql`);
  assertEquals(k.readable, `${k.base}.readable.sql`);
  assertEquals(k.info, `${k.base}.json`);
  for (const key of [k.events, k.readable, k.info]) {
    assertEquals(parseErrantKey(key), {
      node: "n1",
      at: "2026-12-02T15:56:44Z",
      gtids: "0-1-93_1-1-7",
      base: k.base,
    });
  }
  assertEquals(parseErrantKey("mysql-backup-2026.xbstream.zst"), undefined);
  assertEquals(parseErrantKey(`${k.base}.manifest.json`), undefined, "never taken for a snapshot's manifest");
  assert(!k.info.endsWith(".manifest.json"), "retention would count it as a snapshot");
});

Deno.test("errantKeys() keeps MySQL GTID sets and odd node names inside the key alphabet, and long sets short", () => {
  const uuid = "3e11fa47-71ca-11e1-9e33-c80aa9429562";
  const k = errantKeys("db 1:a", at, `${uuid}:1-5:7,${uuid.replace("3e", "4f")}:9`);
  assertEquals(
    k.base,
    `errant-transactions/db-1-a/2026-12-02T15-56-44Z_${uuid}.1-5.7_${uuid.replace("3e", "4f")}.9`,
  );
  const long = errantKeys("n1", at, Array.from({ length: 40 }, (_, i) => `0-${i + 1}-100`).join(","));
  assert(long.base.endsWith("_etc"), long.base);
  assert(long.base.length < 200, long.base);
});

Deno.test("planErrant(): a MariaDB semi-sync tail still waiting for its ack is discarded, anything else saved", () => {
  const base = {
    flavour: "mariadb" as const,
    semiSync: true,
    waitingForAck: 1,
    rebuild: true,
    extra: "0-1-93",
  };
  assertEquals(planErrant(base).kind, "discard-tail");
  // Nothing waits: the tail committed (recovery of a MASTER-role start, or an acknowledged write): saved.
  assertEquals(planErrant({ ...base, waitingForAck: 0 }), { kind: "save", rebuild: true });
  // Without semi-sync a commit never waits, and its extra transactions may have been acknowledged.
  assertEquals(planErrant({ ...base, semiSync: false }), { kind: "save", rebuild: true });
  // MySQL 8.4 has no truncating recovery: its manual says to discard the old source, so it is saved.
  assertEquals(planErrant({ ...base, flavour: "mysql" }), { kind: "save", rebuild: true });
  assertEquals(planErrant({ ...base, waitingForAck: 0, rebuild: false }), { kind: "save", rebuild: false });
  // The same set saved already (a rebuild refused, or REBUILD_ERRANT_NODE off): not saved again.
  assertEquals(planErrant({ ...base, waitingForAck: 0, savedGtids: "0-1-93" }), {
    kind: "saved",
    rebuild: true,
  });
  assertEquals(planErrant({ ...base, waitingForAck: 0, savedGtids: "0-1-92" }).kind, "save");
});

Deno.test("errantBinlogCommands(): MariaDB reads each server's extra range, from what the primary has of it", () => {
  const files = ["/d/mysql-bin.000001", "/d/mysql-bin.000002"];
  // The old primary (server 1) wrote 93 and 94 after 92; the new one (server 2) wrote 93..100.
  assertEquals(errantBinlogCommands("mariadb", "0-1-94", "0-1-92,0-2-100", files, "events"), [[
    "/usr/bin/mariadb-binlog",
    "--no-defaults",
    "--do-domain-ids=0",
    "--do-server-ids=1",
    "--start-position=0-1-92",
    "--stop-position=0-1-94",
    ...files,
  ]]);
  // A server the primary has nothing of: from the first binlog on; readable form decodes rows.
  assertEquals(errantBinlogCommands("mariadb", "0-1-5,0-3-9", "0-1-5", files, "readable"), [[
    "/usr/bin/mariadb-binlog",
    "--no-defaults",
    "--do-domain-ids=0",
    "--do-server-ids=3",
    "--stop-position=0-3-9",
    "--base64-output=decode-rows",
    "--verbose",
    ...files,
  ]]);
  assertEquals(errantBinlogCommands("mariadb", "0-1-5", "0-1-7", files, "events"), [], "nothing extra");
});

Deno.test("errantBinlogCommands(): MySQL includes exactly the extra GTID set (mysqlbinlog --include-gtids)", () => {
  const u = "3e11fa47-71ca-11e1-9e33-c80aa9429562";
  assertEquals(errantBinlogCommands("mysql", `${u}:1-10`, `${u}:1-8`, ["/d/b.000001"], "readable"), [[
    "/usr/bin/mysqlbinlog",
    "--no-defaults",
    `--include-gtids=${u}:9-10`,
    "--base64-output=decode-rows",
    "--verbose",
    "/d/b.000001",
  ]]);
});

Deno.test("missingFromOutput(): a save whose output lacks an extra transaction's last GTID fails", () => {
  const readable = "#261202 15:56:44 server id 1  end_log_pos 1059 CRC32 0x05506da3 \tGTID 0-1-94 trans\n";
  assertEquals(missingFromOutput("mariadb", "0-1-94", "0-1-92", readable), []);
  assertEquals(missingFromOutput("mariadb", "0-1-94,0-3-2", "0-1-92", readable), ["0-3-2"]);
  assertEquals(missingFromOutput("mariadb", "0-1-940", "0-1-92", readable), ["0-1-940"]);
});

Deno.test("tailDiscardApplies(): only with SEMI_SYNC on MariaDB, before the fence of a node another node is primary of", () => {
  const other = { session: "s2", record: { node: "n2" } };
  const base = { flavour: "mariadb" as const, semiSync: true, self: "n1", session: "s1", lock: other };
  assertEquals(tailDiscardApplies(base), true);
  assertEquals(tailDiscardApplies({ ...base, semiSync: false }), false);
  assertEquals(tailDiscardApplies({ ...base, flavour: "mysql" }), false);
  // Nobody holds the lock (Consul out of reach, or a failover to come): this node may resume as primary.
  assertEquals(tailDiscardApplies({ ...base, lock: { record: { node: "n2" } } }), false);
  assertEquals(tailDiscardApplies({ ...base, lock: undefined }), false);
  // Its own lock (by its session, or its name under a lost session): never truncated.
  assertEquals(tailDiscardApplies({ ...base, lock: { session: "s1", record: { node: "n1" } } }), false);
  assertEquals(tailDiscardApplies({ ...base, lock: { session: "s9", record: { node: "n1" } } }), false);
});
