/**
 * `autopilot pre-stop` on real servers: a stopping primary takes its last snapshot (BACKUP_ON_STOP) and hands
 * the role to a replica with no write lost; a stopping replica hands nothing over and ends its session; a lone
 * primary keeps its role and marks its lock record fenced. Each then shuts its mysqld down cleanly.
 */
import { assert, assertEquals } from "../unit/assert.ts";
import { Cluster, type TestNode } from "./cluster.ts";
import { delay, Harness, waitFor } from "./harness/mod.ts";
import { readState } from "../../src/state.ts";

function snapshotCount(c: Cluster): number {
  return [...Deno.readDirSync(c.snapshots)].filter((e) => e.name.endsWith(".manifest.json")).length;
}

/** Waits for the node's mysqld to exit and checks it shut down cleanly (exit 0, InnoDB's shutdown logged). */
async function shutDownCleanly(node: TestNode): Promise<void> {
  const status = await Promise.race([
    node.mysqld!.status,
    delay(60_000).then(() => {
      throw new Error(`mariadbd ${node.name} still runs 60 s after pre-stop`);
    }),
  ]);
  assertEquals(status.code, 0, `mariadbd ${node.name} exit`);
  const log = await Deno.readTextFile(node.mysqld!.logFile);
  assert(/Shutdown complete/.test(log), `no clean shutdown in ${node.mysqld!.logFile}:\n${log.slice(-2000)}`);
}

Deno.test("autopilot pre-stop: the primary takes a last snapshot, hands over, then shuts mysqld down", async () => {
  await using h = await Harness.create({ nodes: 2 });
  const c = await Cluster.create(h);
  const [n1, n2] = [c.node(1, { BACKUP_ON_STOP: "true" }), c.node(2, { BACKUP_ON_STOP: "true" })];
  for (const n of [n1, n2]) assertEquals((await c.boot(n)).code, 0, `boot ${n.name}`);
  await using app = await c.app(n1);
  await app.run(["CREATE TABLE app.t (id INT PRIMARY KEY)", "INSERT INTO app.t VALUES (1), (2)"]);
  await new Promise((r) => setTimeout(r, 1100)); // the next snapshot needs a new (one-second) name
  for (const n of [n1, n2]) assertEquals((await c.run(n, ["health"])).code, 0); // members publish their roles

  const r = await c.run(n1, ["pre-stop"]);
  assertEquals(r.code, 0, r.stderr);
  assertEquals(snapshotCount(c), 2, "no last snapshot");
  assert(r.stdout.startsWith("switchover: n1 -> n2"), `${r.stdout}\n${r.stderr}`);
  assert(/mysqld shut down cleanly/.test(r.stderr), r.stderr);
  await shutDownCleanly(n1);
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
});

Deno.test("autopilot pre-stop: a replica hands nothing over and shuts its mysqld down cleanly", async () => {
  await using h = await Harness.create({ nodes: 2 });
  const c = await Cluster.create(h);
  const [n1, n2] = [c.node(1, { BACKUP_ON_STOP: "true" }), c.node(2, { BACKUP_ON_STOP: "true" })];
  for (const n of [n1, n2]) assertEquals((await c.boot(n)).code, 0, `boot ${n.name}`);
  const r = await c.run(n2, ["pre-stop"]);
  assertEquals(r.code, 0, r.stderr);
  assert(r.stderr.includes("not the primary: nothing to hand over"), r.stderr);
  await shutDownCleanly(n2);
  assertEquals(snapshotCount(c), 1, "a replica takes no last snapshot");
  {
    const session = (await readState(n2.env.STATE_DIR)).sessionId!;
    const consul = c.consul();
    try {
      assertEquals(await consul.sessionExists(session), false, "its session ended: no longer a live member");
    } finally {
      consul.close();
    }
  }
  assertEquals((await c.run(n1, ["health", "--primary"])).code, 0, "the primary is untouched");
  // Stopping again (ContainerPilot runs pre-stop once, but a stop of a node whose mysqld is down happens too)
  const again = await c.run(n2, ["pre-stop"]);
  assertEquals(again.code, 0, again.stderr);
  assert(/mysqld does not answer/.test(again.stderr), again.stderr);
});

Deno.test("autopilot pre-stop: a primary with no replica keeps its role, takes no snapshot unless asked, and stops", async () => {
  await using h = await Harness.create({ nodes: 1 });
  const c = await Cluster.create(h);
  const n1 = c.node(1);
  assertEquals((await c.boot(n1)).code, 0);
  const r = await c.run(n1, ["pre-stop"]);
  assertEquals(r.code, 0, r.stderr);
  assert(r.stderr.includes("no live replica"), r.stderr);
  assertEquals(snapshotCount(c), 1);
  await shutDownCleanly(n1);
  assertEquals(await c.primaryName(), "n1", "it keeps the primary lock until its session expires");
  assertEquals((await c.primaryRecord())?.fenced, true, "and its record says its mysqld is down");
  const consul = c.consul();
  try {
    assertEquals(await consul.passingInstances("mysql-primary"), [], "but it is no longer advertised");
  } finally {
    consul.close();
  }
});
