/**
 * `autopilot pre-stop` on real servers: a stopping primary takes its last snapshot (BACKUP_ON_STOP) and hands
 * the role to a replica with no write lost; a stopping replica changes nothing; a lone primary keeps its role.
 */
import { assert, assertEquals } from "../unit/assert.ts";
import { Cluster } from "./cluster.ts";
import { Harness, waitFor } from "./harness/mod.ts";

function snapshotCount(c: Cluster): number {
  return [...Deno.readDirSync(c.snapshots)].filter((e) => e.name.endsWith(".manifest.json")).length;
}

Deno.test("autopilot pre-stop: the primary takes a last snapshot, then hands over; a replica does nothing", async () => {
  await using h = await Harness.create({ nodes: 2 });
  const c = await Cluster.create(h);
  const [n1, n2] = [c.node(1, { BACKUP_ON_STOP: "true" }), c.node(2, { BACKUP_ON_STOP: "true" })];
  for (const n of [n1, n2]) assertEquals((await c.boot(n)).code, 0, `boot ${n.name}`);
  await using app = await c.app(n1);
  await app.run(["CREATE TABLE app.t (id INT PRIMARY KEY)", "INSERT INTO app.t VALUES (1), (2)"]);
  await new Promise((r) => setTimeout(r, 1100)); // the next snapshot needs a new (one-second) name
  for (const n of [n1, n2]) assertEquals((await c.run(n, ["health"])).code, 0); // members publish their roles

  const onReplica = await c.run(n2, ["pre-stop"]);
  assertEquals(onReplica.code, 0, onReplica.stderr);
  assert(onReplica.stderr.includes("not the primary: nothing to hand over"), onReplica.stderr);
  assertEquals(snapshotCount(c), 1);

  const r = await c.run(n1, ["pre-stop"]);
  assertEquals(r.code, 0, r.stderr);
  assertEquals(snapshotCount(c), 2, "no last snapshot");
  assert(r.stdout.startsWith("switchover: n1 -> n2"), `${r.stdout}\n${r.stderr}`);
  const consul = c.consul();
  try {
    const last = JSON.parse((await consul.get("mysql-last-backup"))?.value ?? "{}");
    assertEquals(last.nodeName, "n1");
  } finally {
    consul.close();
  }
  await waitFor("n2 writable primary", async () => {
    await c.run(n2, ["on-change"]);
    return (await c.run(n2, ["health", "--primary"])).code === 0;
  }, { timeoutMs: 20_000, intervalMs: 200 });
  assertEquals(await c.rows(n2), 2);
  const [ro] = await c.sql(n1, "SELECT @@read_only AS ro");
  assertEquals(Number(ro.ro), 1, "the stopping primary is still writable");
});

Deno.test("autopilot pre-stop: a primary with no replica keeps its role and takes no snapshot unless asked", async () => {
  await using h = await Harness.create({ nodes: 1 });
  const c = await Cluster.create(h);
  const n1 = c.node(1);
  assertEquals((await c.boot(n1)).code, 0);
  const r = await c.run(n1, ["pre-stop"]);
  assertEquals(r.code, 0, r.stderr);
  assert(r.stderr.includes("no live replica"), r.stderr);
  assertEquals(snapshotCount(c), 1);
  assertEquals((await c.run(n1, ["health", "--primary"])).code, 0, "no longer the writable primary");
});
