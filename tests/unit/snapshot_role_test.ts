/**
 * Which node the snapshot task counts as a primary or a healthy replica (roleOf() in hooks/snapshot.ts), on a
 * fake server: the replica-health rule is the one the health check uses (src/replica_health.ts).
 */
import { assertEquals } from "./assert.ts";
import { loadConfig } from "../../src/config.ts";
import type { ReplicaStatus } from "../../src/mysql/flavour.ts";
import { roleOf } from "../../src/snapshot_task.ts";
import { FakeServer } from "./fakes/fake_server.ts";

const config = loadConfig((n) => ({ MYSQL_REPL_PASSWORD: "pw", MAX_REPLICATION_LAG: "30s" })[n], {
  hostname: () => "n2",
});
const primary = { node: "n1", address: "10.0.0.11", port: 3306, ready: true };
const heldByN1 = { record: primary, session: "s1" };
const following: ReplicaStatus = {
  sourceHost: "10.0.0.11",
  sourcePort: 3306,
  ioRunning: "yes",
  sqlRunning: true,
  lagSeconds: 2,
  retrievedGtids: "",
  lastIoError: "",
  lastSqlError: "",
};

Deno.test("roleOf(): the writable, ready lock holder is the primary; a read-only one is neither yet", async () => {
  const own = { record: primary, session: "mine" };
  assertEquals(await roleOf(config, own, new FakeServer("mariadb", { readOnly: false }), "mine"), {
    kind: "primary",
  });
  assertEquals(await roleOf(config, own, new FakeServer("mariadb", { readOnly: true }), "mine"), {
    kind: "none",
    why: "it holds the primary lock but is not writable yet",
  });
});

Deno.test("roleOf(): a replica of the lock holder is a replica while the health rule calls it healthy", async () => {
  const server = new FakeServer("mariadb", { replica: following });
  assertEquals(await roleOf(config, heldByN1, server, "s2"), { kind: "replica" });
  server.state.replica = { ...following, lagSeconds: 31 };
  assertEquals(await roleOf(config, heldByN1, server, "s2"), {
    kind: "none",
    why: "replica of 10.0.0.11:3306 lags 31 s (limit 30 s)",
  });
  server.state.replica = { ...following, sqlRunning: false, lagSeconds: null };
  assertEquals(await roleOf(config, heldByN1, server, "s2"), {
    kind: "none",
    why: "replication from 10.0.0.11:3306 is not running (I/O thread: yes, SQL thread: no)",
  });
});

Deno.test("roleOf(): a node replicating from nobody, or from another node, is neither", async () => {
  assertEquals(await roleOf(config, heldByN1, new FakeServer(), "s2"), {
    kind: "none",
    why: "it is not replicating",
  });
  const elsewhere = new FakeServer("mariadb", { replica: { ...following, sourceHost: "10.0.0.13" } });
  assertEquals(await roleOf(config, heldByN1, elsewhere, "s2"), {
    kind: "none",
    why: "it replicates from 10.0.0.13:3306, not from n1",
  });
  assertEquals(await roleOf(config, {}, new FakeServer("mariadb", { replica: following }), "s2"), {
    kind: "none",
    why: "no node holds the primary lock",
  });
});
