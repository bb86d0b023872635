/**
 * Bringing a lost cluster back from its snapshots: every node and Consul's keys are gone, only the store is
 * left. `autopilot restore` on one stopped node, then its first health pass makes it primary with the
 * restored data; the periodic task publishes a snapshot at once (none is named), and new nodes restore it.
 */
import { assert, assertEquals } from "../unit/assert.ts";
import { Cluster } from "./cluster.ts";
import { Harness, waitFor } from "./harness/mod.ts";

Deno.test("a lost cluster comes back from the snapshot store: restore, primary, new replicas", async () => {
  await using h = await Harness.create({ nodes: 2 });
  const c = await Cluster.create(h);
  const [n1, n2] = [c.node(1), c.node(2)];
  assertEquals((await c.boot(n1)).code, 0);
  {
    await using app = await c.app(n1);
    await app.run(["CREATE TABLE app.t (id INT PRIMARY KEY)", "INSERT INTO app.t VALUES (1), (2), (3)"]);
  }
  await new Promise((r) => setTimeout(r, 1100)); // a new one-second snapshot name
  assertEquals((await c.run(n1, ["backup", "now"])).code, 0);

  // The whole cluster is lost: the node's server, datadir and state, and every key in Consul.
  await c.stopMysqld(n1);
  for (const dir of ["data", "state"]) await Deno.remove(`${n1.dir}/${dir}`, { recursive: true });
  const consul = c.consul();
  try {
    for (const entry of await consul.getPrefix("mysql")) await consul.delete(entry.key);
    assertEquals(await consul.getPrefix("mysql"), []);
  } finally {
    consul.close();
  }

  const restored = await c.run(n1, ["restore"]);
  assertEquals(restored.code, 0, restored.stderr);
  assertEquals((await c.boot(n1)).code, 0, "the restored node did not become primary");
  assertEquals(await c.primaryName(), "n1");
  assertEquals(await c.rows(n1), 3);
  {
    await using app = await c.app(n1);
    await app.query("INSERT INTO app.t VALUES (4)");
  }

  // No snapshot is named yet: the periodic task takes one at once, and a new node restores it.
  const snap = await c.run(n1, ["snapshot"]);
  assertEquals(snap.code, 0, snap.stderr);
  assert(snap.stderr.includes("no snapshot exists yet"), snap.stderr);
  assertEquals((await c.boot(n2)).code, 0);
  await waitFor("n2 has every row", async () => {
    await c.run(n2, ["health"]);
    return (await c.rows(n2).catch(() => 0)) === 4;
  }, { timeoutMs: 20_000, intervalMs: 500 });
  {
    await using app = await c.app(n1);
    await app.query("INSERT INTO app.t VALUES (5)");
  }
  await waitFor("n2 replicates new writes", async () => {
    return (await c.rows(n2)) === 5;
  });
});

Deno.test("every node lost, Consul kept: new nodes restore the named snapshot, one is promoted, the rest follow", async () => {
  await using h = await Harness.create({ nodes: 4 });
  const c = await Cluster.create(h);
  const [n1, n2, n3, n4] = [c.node(1), c.node(2), c.node(3), c.node(4)];
  for (const n of [n1, n2]) assertEquals((await c.boot(n)).code, 0);
  {
    await using app = await c.app(n1);
    await app.run(["CREATE TABLE app.t (id INT PRIMARY KEY)", "INSERT INTO app.t VALUES (1), (2), (3)"]);
  }
  await new Promise((r) => setTimeout(r, 1100));
  assertEquals((await c.run(n1, ["backup", "now"])).code, 0);
  // Both containers are stopped for good, as ContainerPilot stops one: its pre-stop hook shuts mysqld down.
  // The replica first, so the primary has nobody to hand over to: it keeps the lock, and its record says its
  // mysqld is down (fenced), which is what lets new nodes its failsafe never checked act on it. (Killed
  // without its hooks, it would be waited for: see the README, "A member the primary does not know of".)
  for (const n of [n2, n1]) {
    const stopped = await c.run(n, ["pre-stop"]);
    assertEquals(stopped.code, 0, `pre-stop ${n.name}: ${stopped.stderr}`);
  }
  assertEquals((await c.primaryRecord())?.fenced, true, "n1's lock record says it fenced itself");

  // Two new nodes: each restores the snapshot Consul names; the first takes n1's lock over once its heartbeat
  // has stood still for the lease and 2 s (n2 ended its session as it stopped, so no plan waits for it), the
  // second follows it from the same snapshot position.
  assertEquals((await c.preStart(n3)).code, 0);
  await c.startMysqld(n3);
  await waitFor("n3 promoted", async () => {
    await c.run(n3, ["health"]);
    return (await c.run(n3, ["health", "--primary"])).code === 0;
  }, { timeoutMs: 60_000, intervalMs: 500 });
  const stop = c.keepChecking([n3]);
  try {
    assertEquals((await c.boot(n4)).code, 0, "n4 does not follow n3");
    {
      await using app = await c.app(n3);
      await app.query("INSERT INTO app.t VALUES (4)");
    }
    await waitFor("n4 replicates from n3", async () => {
      return (await c.rows(n4)) === 4;
    });
  } finally {
    await stop();
  }
});
