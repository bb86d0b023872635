/**
 * The fake MysqlServer the HA action tests use: it passes the scenario real MariaDB passes
 * (tests/integration/server_test.ts), logs calls, and fails on request as the real client fails.
 */
import { assert, assertEquals, assertRejects } from "./assert.ts";
import { MysqlQueryError, MysqlUnavailableError } from "../../src/mysql/client.ts";
import { FakeServer } from "./fakes/fake_server.ts";
import { serverContract } from "./fakes/server_contract.ts";

const source = {
  host: "10.0.0.11",
  port: 3306,
  user: "repl",
  password: "pw",
  connectRetry: 1,
  heartbeatPeriod: 1,
};

Deno.test("FakeServer passes the scenario real MariaDB passes, in both flavours", async () => {
  for (const flavour of ["mariadb", "mysql"] as const) {
    const fake = new FakeServer(flavour);
    await serverContract(fake, source);
    assertEquals(fake.methods().slice(0, 5), [
      "status",
      "replicaStatus",
      "stopReplica",
      "startReplica",
      "setReadOnly",
    ]);
  }
});

Deno.test("FakeServer logs each call with its arguments and keeps run()'s statements", async () => {
  const fake = new FakeServer("mysql", { readOnly: false });
  await fake.setReadOnly(true);
  await fake.run(["CREATE DATABASE app", { sql: "CREATE USER ?", values: ["u"] }]);
  assertEquals(await fake.waitForGtids("u:1-3", 60), true);
  fake.state.waitAnswer = (gtids) => gtids === "";
  assertEquals(await fake.waitForGtids("u:1-3", 60), false);
  assertEquals(fake.calls, [
    { method: "setReadOnly", args: [true] },
    { method: "run", args: [["CREATE DATABASE app", { sql: "CREATE USER ?", values: ["u"] }]] },
    { method: "waitForGtids", args: ["u:1-3", 60] },
    { method: "waitForGtids", args: ["u:1-3", 60] },
  ]);
  assertEquals(fake.statements.length, 2);
  assertEquals(fake.state.readOnly, true);
});

Deno.test("FakeServer fails a method as told, for as many calls as told", async () => {
  const fake = new FakeServer().failOn("setReadOnly", undefined, 1);
  await assertRejects(() => fake.setReadOnly(true), MysqlUnavailableError, "told to fail");
  assertEquals(fake.state.readOnly, true); // unchanged by the failed call (it started read-only)
  await fake.setReadOnly(false);
  assertEquals(fake.state.readOnly, false);
  const refused = new MysqlQueryError("fake", "ER_SPECIFIC_ACCESS_DENIED_ERROR", 1227, "denied");
  fake.failOn("status", refused);
  await assertRejects(() => fake.status(), MysqlQueryError, "denied");
  await assertRejects(() => fake.status(), MysqlQueryError, "denied");
  assertEquals(fake.methods(), ["setReadOnly", "setReadOnly", "status", "status"]);
});

Deno.test("FakeServer refuses calls after close() or shutdown() and with an aborted signal, as the client does", async () => {
  const fake = new FakeServer();
  await assertRejects(
    () => fake.readOnly({ signal: AbortSignal.abort() }),
    MysqlUnavailableError,
    "deadline",
  );
  await fake.shutdown();
  assert(!fake.state.running && fake.closed);
  await fake.shutdown(); // never throws
  await assertRejects(() => fake.readOnly(), MysqlUnavailableError, "closed");
  const other = new FakeServer();
  {
    await using _ = other;
  }
  assertEquals([other.closed, other.state.running], [true, true]);
});

Deno.test("FakeServer.startReplicationAfter() sets the restored position in each flavour", async () => {
  const maria = new FakeServer("mariadb");
  await maria.startReplicationAfter("0-2-9", "0-1-4,0-2-9");
  assertEquals(await maria.gtidState(), {
    executed: "0-1-4,0-2-9",
    currentPos: "0-2-9",
    slavePos: "0-2-9",
    binlogPos: "0-2-9",
  });
  assertEquals((await maria.status()).hasTransactions, true);
  const mysql = new FakeServer("mysql");
  await mysql.startReplicationAfter("u:1-9");
  assertEquals(await mysql.gtidState(), { executed: "u:1-9" });
});
