/**
 * Planned switchover on real servers, under a client that keeps writing: nothing acknowledged is lost, no
 * key is written twice, the old primary becomes a replica.
 */
import { assert, assertEquals } from "../unit/assert.ts";
import { Cluster, type TestNode, writer } from "./cluster.ts";
import { Harness, waitFor } from "./harness/mod.ts";

async function threeNodes(h: Harness): Promise<Cluster> {
  const c = await Cluster.create(h);
  for (const k of [1, 2, 3]) assertEquals((await c.boot(c.node(k))).code, 0);
  await using app = await c.app(c.node(1));
  await app.query("CREATE TABLE app.acked (id INT PRIMARY KEY)");
  return c;
}

async function ids(c: Cluster, node: TestNode): Promise<number[]> {
  return (await c.sql(node, "SELECT id FROM app.acked ORDER BY id")).map((r) => Number(r.id));
}

Deno.test("autopilot switchover moves the primary under load and loses no acknowledged write", async () => {
  await using h = await Harness.create({ nodes: 3 });
  const c = await threeNodes(h);
  const [n1, n2, n3] = [c.node(1), c.node(2), c.node(3)];
  const w = writer(c);
  await new Promise((r) => setTimeout(r, 1500));

  const r = await c.run(n1, ["switchover", "--to", "n3"]);
  assertEquals(r.code, 0, r.stderr);
  assert(r.stdout.startsWith("switchover: n1 -> n3"), r.stdout);
  // ContainerPilot's watch would now run on-change everywhere; the target finishes its promotion.
  await waitFor("n3 writable primary", async () => {
    await Promise.all([n1, n2, n3].map((n) => c.run(n, ["on-change"])));
    return (await c.run(n3, ["health", "--primary"])).code === 0;
  }, { timeoutMs: 20_000, intervalMs: 200 });
  await new Promise((r) => setTimeout(r, 1500));
  const acked = await w.stop();
  assert(acked.length > 20, `the writer made little progress: ${acked.length}`);

  for (const node of [n1, n2]) {
    await waitFor(`${node.name} follows n3`, async () => {
      await c.run(node, ["health"]);
      const [s] = await c.sql(node, "SHOW SLAVE STATUS");
      return s?.Master_Host === n3.address && s.Slave_SQL_Running === "Yes";
    }, { timeoutMs: 20_000, intervalMs: 300 });
  }
  const onPrimary = await ids(c, n3);
  assertEquals(new Set(onPrimary).size, onPrimary.length, "a key was written twice");
  const lost = acked.filter((id) => !onPrimary.includes(id));
  assertEquals(lost, [], "acknowledged keys are missing on the new primary");
  for (const node of [n1, n2]) {
    await waitFor(`${node.name} has every key`, async () => (await ids(c, node)).length === onPrimary.length);
  }
  assertEquals((await c.run(n1, ["health", "--primary"])).code, 1);
});

Deno.test("autopilot switchover refuses to run on a replica and leaves the primary alone", async () => {
  await using h = await Harness.create({ nodes: 3 });
  const c = await threeNodes(h);
  const r = await c.run(c.node(2), ["switchover"]);
  assertEquals(r.code, 1);
  assert(r.stderr.includes("does not hold the primary lock (the primary is n1): run it there"), r.stderr);
  assertEquals(await c.primaryName(), "n1");
  const bad = await c.run(c.node(1), ["switchover", "--to", "n9"]);
  assertEquals(bad.code, 1);
  assert(bad.stderr.includes("No live node named 'n9'"), bad.stderr);
  assertEquals((await c.run(c.node(1), ["health", "--primary"])).code, 0, "still the writable primary");
});

Deno.test("the primary's health pass leaves it read-only during its own switchover, and recovers an abandoned one", async () => {
  await using h = await Harness.create({ nodes: 2 });
  const c = await Cluster.create(h);
  const [n1, n2] = [c.node(1), c.node(2)];
  for (const n of [n1, n2]) assertEquals((await c.boot(n)).code, 0);
  const session = JSON.parse(await Deno.readTextFile(`${n1.env.STATE_DIR}/state.json`)).sessionId;
  const consul = c.consul();
  try {
    // What `autopilot switchover` does on n1 before it hands the lock over: the failover lock, then read-only.
    const value = (at: number) => JSON.stringify({ node: "n1", at, switchover: true });
    assert(await consul.tryAcquireLock("mysql-failover-lock", session, value(Date.now())));
    await c.sql(n1, "SET GLOBAL read_only = 1");
    const during = await c.run(n1, ["health"]);
    assertEquals(during.code, 1);
    assert(during.stderr.includes("switchover away from this node is under way"), during.stderr);
    assertEquals(
      Number((await c.sql(n1, "SELECT @@read_only AS ro"))[0].ro),
      1,
      "turned writable mid-switchover",
    );

    // A switchover that died long ago: its lock is released and the primary serves again.
    await consul.put("mysql-failover-lock", value(Date.now() - 10 * 60_000));
    assert(await consul.tryAcquireLock("mysql-failover-lock", session, value(Date.now() - 10 * 60_000)));
    const after = await c.run(n1, ["health"]);
    assertEquals(after.code, 0, after.stderr);
    assertEquals(Number((await c.sql(n1, "SELECT @@read_only AS ro"))[0].ro), 0);
  } finally {
    consul.close();
  }
});
