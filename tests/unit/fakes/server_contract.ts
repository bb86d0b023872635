/**
 * One scenario for any {@link MysqlServer}: run on {@link FakeServer} by the unit tests and on a real MariaDB
 * server by tests/integration/server_test.ts, so that the fake behaves as the real one where it matters.
 *
 * @module
 */
import { assert, assertEquals, assertRejects } from "../assert.ts";
import { MysqlQueryError } from "../../../src/mysql/client.ts";
import type { SourceSpec } from "../../../src/mysql/flavour.ts";
import type { MysqlServer } from "../../../src/mysql/server.ts";

/** Polls `check` every 50 ms until it holds, for at most `ms`. */
async function eventually(what: string, check: () => Promise<boolean>, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`${what}: not within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/**
 * Runs the scenario.
 *
 * @param server A server that replicates from nobody and holds no transaction; it is left replicating from
 *   nobody, writable.
 * @param source A source it can replicate from (the fake needs none).
 */
export async function serverContract(server: MysqlServer, source: SourceSpec): Promise<void> {
  const fresh = await server.status();
  assertEquals([fresh.replica, fresh.hasTransactions], [undefined, false]);
  assertEquals(await server.replicaStatus(), undefined);
  await server.stopReplica(); // nothing runs: no error
  await assertRejects(() => server.startReplica(), MysqlQueryError); // no source

  await server.setReadOnly(true);
  assertEquals([await server.readOnly(), (await server.status()).readOnly], [true, true]);
  await server.setReadOnly(false);
  assertEquals([await server.readOnly(), (await server.status()).readOnly], [false, false]);

  await server.changeSource(source);
  const configured = await server.replicaStatus();
  assertEquals(
    configured && [configured.sourceHost, configured.sourcePort, configured.ioRunning, configured.sqlRunning],
    [source.host, source.port, "no", false],
  );
  await server.startReplica();
  await eventually("both replication threads run", async () => {
    const r = await server.replicaStatus();
    return r?.ioRunning === "yes" && r.sqlRunning;
  });
  const running = await server.status();
  assertEquals(running.replica?.sourceHost, source.host);
  assertEquals(running.replicationStartedThisRun, true);
  const refused = await assertRejects(() => server.changeSource(source), MysqlQueryError);
  assertEquals(refused.errno, 1198, refused.message); // a running replica must be stopped first

  await server.stopReplicaIo();
  const receiverStopped = await server.replicaStatus();
  assertEquals(
    [receiverStopped?.ioRunning, receiverStopped?.sqlRunning],
    ["no", true],
    "STOP REPLICA IO_THREAD stops the receiver only",
  );
  await server.stopReplica();
  const stopped = await server.replicaStatus();
  assert(stopped !== undefined, "STOP REPLICA forgot the source");
  assertEquals([stopped.ioRunning, stopped.sqlRunning], ["no", false]);
  await server.stopReplica(); // stopped already: no error

  await server.startReplica();
  await server.resetReplicaAll(); // stops it first
  assertEquals(await server.replicaStatus(), undefined);
  assertEquals((await server.status()).replica, undefined);
}
