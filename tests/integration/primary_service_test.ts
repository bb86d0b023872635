/**
 * The `mysql-primary` service that autopilot registers itself (src/services.ts), on real servers and a real
 * Consul: only the writable primary is in it, a switchover moves it, and the primary removes a dead node's
 * entries from the catalog.
 */
import { assert, assertEquals } from "../unit/assert.ts";
import { Cluster } from "./cluster.ts";
import { Harness, waitFor } from "./harness/mod.ts";
import { SWEEP_GRACE_MS } from "../../src/services.ts";
import { memberRecord } from "../unit/member_record.ts";

async function primaryInstances(c: Cluster): Promise<string[]> {
  const consul = c.consul();
  try {
    return (await consul.passingInstances("mysql-primary")).map((i) => `${i.id}@${i.address}:${i.port}`);
  } finally {
    consul.close();
  }
}

Deno.test("only the writable primary is in the mysql-primary service, and a switchover moves it", async () => {
  await using h = await Harness.create({ nodes: 2 });
  const c = await Cluster.create(h);
  const [n1, n2] = [c.node(1), c.node(2)];
  assertEquals((await c.boot(n1)).code, 0);
  assertEquals(
    await primaryInstances(c),
    [`mysql-primary-n1@${n1.address}:3306`],
    "in the pass that promoted it",
  );
  assertEquals((await c.boot(n2)).code, 0);
  assertEquals((await c.run(n2, ["health"])).code, 0);
  assertEquals(await primaryInstances(c), [`mysql-primary-n1@${n1.address}:3306`], "a replica is not in it");

  const r = await c.run(n1, ["switchover", "--to", "n2"]);
  assertEquals(r.code, 0, r.stderr);
  assertEquals(await primaryInstances(c), [], "the old primary leaves the service when it hands over");
  // ContainerPilot's watch sees the change and runs on-change everywhere; n2 promotes itself in that pass.
  await waitFor("n2 in the primary service", async () => {
    await Promise.all([n1, n2].map((n) => c.run(n, ["on-change"])));
    return (await primaryInstances(c)).join() === `mysql-primary-n2@${n2.address}:3306`;
  }, { timeoutMs: 20_000, intervalMs: 200 });
  assertEquals((await c.run(n1, ["health"])).code, 0, "n1 replicates from n2");
  assertEquals(await primaryInstances(c), [`mysql-primary-n2@${n2.address}:3306`]);
});

Deno.test("the primary removes a dead node's critical entries from the catalog, and only those", async () => {
  await using h = await Harness.create({ nodes: 1 });
  const c = await Cluster.create(h);
  const n1 = c.node(1);
  assertEquals((await c.boot(n1)).code, 0);
  const consul = c.consul();
  try {
    // A node that died: its member record departed (no session), its ContainerPilot services left critical.
    const record = memberRecord("n9", {
      hostname: "dead9",
      address: "10.99.0.99",
      updatedAt: Date.now() - 120_000,
    });
    await consul.put("mysql-members/n9", JSON.stringify(record));
    for (const [id, name] of [["mysql-dead9", "mysql"], ["containerpilot-dead9", "containerpilot"]]) {
      const res = await fetch(`${consul.url}/v1/agent/service/register`, {
        method: "PUT",
        body: JSON.stringify({
          ID: id,
          Name: name,
          Address: record.address,
          Port: 3306,
          Check: { TTL: "15s" },
        }),
      });
      assertEquals(res.status, 200, await res.text());
    }
    // Critical too, but no record says its node is gone: not ours to judge.
    const res = await fetch(`${consul.url}/v1/agent/service/register`, {
      method: "PUT",
      body: JSON.stringify({ ID: "mysql-stranger", Name: "mysql", Port: 3306, Check: { TTL: "15s" } }),
    });
    assertEquals(res.status, 200, await res.text());
    const ids = async () => (await consul.criticalServiceChecks()).map((x) => x.serviceId).sort();
    assertEquals(await ids(), ["containerpilot-dead9", "mysql-dead9", "mysql-stranger"]);

    assertEquals((await c.run(n1, ["health"])).code, 0);
    assertEquals(await ids(), ["containerpilot-dead9", "mysql-dead9", "mysql-stranger"], "first seen: kept");
    // The primary first saw them over a minute ago (what its state remembers between passes).
    const statePath = `${n1.env.STATE_DIR}/state.json`;
    const state = JSON.parse(await Deno.readTextFile(statePath));
    assertEquals(Object.keys(state.deadEntries).sort(), ["containerpilot-dead9", "mysql-dead9"]);
    for (const id of Object.keys(state.deadEntries)) state.deadEntries[id] -= SWEEP_GRACE_MS + 1000;
    await Deno.writeTextFile(statePath, JSON.stringify(state));
    const pass = await c.run(n1, ["health"]);
    assertEquals(pass.code, 0, pass.stderr);
    assertEquals(await ids(), ["mysql-stranger"]);
    assert(/Removed mysql-dead9 from Consul/.test(pass.stderr), pass.stderr);
    const after = JSON.parse(await Deno.readTextFile(statePath));
    assertEquals(after.deadEntries, undefined, "nothing left to watch");
  } finally {
    consul.close();
  }
});

Deno.test("a new primary whose first snapshot cannot be stored writes, but is not advertised until it is", async () => {
  await using h = await Harness.create({ nodes: 1 });
  const c = await Cluster.create(h);
  // A file where the snapshot directory's parent should be: every write into the store fails.
  const blocker = `${h.dir}/not-a-dir`;
  await Deno.writeTextFile(blocker, "");
  const n1 = c.node(1, { SNAPSHOT_DIR: `${blocker}/snapshots` });
  const first = await c.boot(n1);
  assertEquals(first.code, 1, "unhealthy while it has no snapshot");
  assert(
    /First snapshot failed: .*not advertised until a snapshot is stored/.test(first.stderr),
    first.stderr,
  );
  assertEquals(await primaryInstances(c), []);
  await using app = await c.app(n1);
  await app.run(["CREATE TABLE app.t (id INT PRIMARY KEY)", "INSERT INTO app.t VALUES (1)"]); // it is writable

  const again = await c.run(n1, ["health"]);
  assertEquals(again.code, 1);
  assert(
    !/First snapshot failed/.test(again.stderr.replace(/^.*\[DBG\].*$/gm, "")),
    `the same error is not repeated:\n${again.stderr}`,
  );

  await Deno.remove(blocker);
  assertEquals((await c.run(n1, ["health"])).code, 1, "the pass leaves the snapshot to the snapshot task");
  const snapshot = await c.run(n1, ["snapshot"]); // ContainerPilot's periodic task: due, since none is named
  assertEquals(snapshot.code, 0, snapshot.stderr);
  const fixed = await c.run(n1, ["health"]);
  assertEquals(fixed.code, 0, fixed.stderr);
  assert(/A snapshot is stored now: this primary is advertised/.test(fixed.stderr), fixed.stderr);
  assertEquals(await primaryInstances(c), [`mysql-primary-n1@${n1.address}:3306`]);
});
