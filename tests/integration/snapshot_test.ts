/**
 * The periodic snapshot task (`autopilot snapshot`) on a namespace cluster: it backs up only when due (after
 * BACKUP_TTL, or after a gap in the binlog archive), only on the kind of node BACKUP_FROM names (a healthy
 * replica by default), and two nodes racing take one backup between them.
 */
import { assert, assertEquals } from "../unit/assert.ts";
import { Cluster, type TestNode } from "./cluster.ts";
import { Harness } from "./harness/mod.ts";

/** The complete snapshots in the directory store (one manifest each). */
function snapshots(c: Cluster): string[] {
  return [...Deno.readDirSync(c.snapshots)].map((e) => e.name).filter((n) => n.endsWith(".manifest.json"))
    .sort();
}

async function lastBackup(c: Cluster): Promise<{ name: string; nodeName: string; binlog: string }> {
  const consul = c.consul();
  try {
    const manifest = JSON.parse((await consul.get("mysql-last-backup"))?.value ?? "{}");
    const binlog = (await consul.get("mysql-last-binlog"))?.value ?? "";
    return { name: manifest.name, nodeName: manifest.nodeName, binlog };
  } finally {
    consul.close();
  }
}

async function snapshot(c: Cluster, node: TestNode, env: Record<string, string> = {}) {
  const r = await c.run(node, ["snapshot"], env);
  assertEquals(r.code, 0, `snapshot on ${node.name}: ${r.stderr}`);
  return r;
}

/** BACKUP_NAME has one-second resolution: wait until the next second so a new snapshot gets a new name. */
const nextSecond = () => new Promise((r) => setTimeout(r, 1100));

Deno.test("autopilot snapshot backs up only when due, only where BACKUP_FROM says, one node at a time", async (t) => {
  await using h = await Harness.create({ nodes: 3 });
  const c = await Cluster.create(h);
  const [n1, n2, n3] = [c.node(1), c.node(2), c.node(3)];
  for (const n of [n1, n2, n3]) assertEquals((await c.boot(n)).code, 0, `boot ${n.name}`);
  const stopChecking = c.keepChecking([n1, n2, n3]); // as ContainerPilot would: sessions and member records stay
  try {
    const first = snapshots(c);
    assertEquals(first.length, 1, first.join());

    await t.step("nothing is due right after the first snapshot: no backup anywhere", async () => {
      for (const n of [n1, n2, n3]) await snapshot(c, n);
      assertEquals(snapshots(c), first);
    });

    // The steps up to BACKUP_FROM=replica's are about the primary taking them.
    const fromPrimary = { BACKUP_FROM: "primary" };

    await t.step("a rotated binlog alone makes no snapshot due (the archiver rotates it)", async () => {
      await c.sql(n1, "FLUSH BINARY LOGS");
      await nextSecond();
      for (const n of [n1, n2, n3]) await snapshot(c, n, fromPrimary);
      assertEquals(snapshots(c), first);
    });

    await t.step("after BACKUP_TTL, the primary takes one; within it, none", async () => {
      await nextSecond();
      await snapshot(c, n1, { ...fromPrimary, BACKUP_TTL: "1h" });
      assertEquals(snapshots(c).length, 1);
      await nextSecond();
      const r = await snapshot(c, n1, { ...fromPrimary, BACKUP_TTL: "1s" });
      assert(r.stderr.includes("BACKUP_TTL is 1s"), r.stderr);
      assertEquals(snapshots(c).length, 2);
    });

    await t.step(
      "BACKUP_FROM=replica (the default): the primary leaves it to the replicas; two racing take one",
      async () => {
        await nextSecond();
        // BACKUP_TTL 2s: the primary's own check must come within twice that of the last snapshot's start, and
        // that snapshot may have taken over a second.
        const env = { BACKUP_TTL: "2s" };
        const onPrimary = await snapshot(c, n1, env);
        assertEquals(snapshots(c).length, 2, onPrimary.stderr);
        await nextSecond(); // due for the replicas now
        const [a, b] = await Promise.all([snapshot(c, n2, env), snapshot(c, n3, env)]);
        assertEquals(snapshots(c).length, 3, `${a.stderr}\n${b.stderr}`);
        const stood = [a, b].filter((r) =>
          /Another node is taking or verifying a snapshot|published snapshot .* meanwhile/.test(r.stderr)
        );
        assertEquals(stood.length, 1, `${a.stderr}\n${b.stderr}`);
        const last = await lastBackup(c);
        assert(["n2", "n3"].includes(last.nodeName), last.nodeName);
        // The replica records the primary's binlog, not its own.
        const [status] = await c.sql(n1, "SHOW MASTER STATUS");
        assertEquals(last.binlog, status.File);
        const consul = c.consul();
        try {
          assertEquals(
            (await consul.get("mysql-backup-running"))?.session,
            undefined,
            "the backup lock is still held",
          );
        } finally {
          consul.close();
        }
      },
    );

    await t.step("a forced snapshot (backup now) runs whatever the schedule says", async () => {
      await nextSecond();
      const r = await c.run(n2, ["backup", "now"]);
      assertEquals(r.code, 0, r.stderr);
      assertEquals(snapshots(c).length, 4);
    });

    await t.step(
      "BACKUP_VERIFY: one replica verifies each new snapshot once, a bad one is recorded and status reports it",
      async () => {
        const env = { BACKUP_VERIFY: "true" };
        const verified = async () => {
          const consul = c.consul();
          try {
            return JSON.parse((await consul.get("mysql-last-verified"))?.value ?? "null");
          } finally {
            consul.close();
          }
        };
        const onPrimary = await snapshot(c, n1, env);
        assert(!onPrimary.stderr.includes("Verifying"), onPrimary.stderr);
        assertEquals(await verified(), null);
        const good = (await lastBackup(c)).name;
        const r = await snapshot(c, n2, env);
        assert(r.stderr.includes(`Snapshot ${good} verified in`), r.stderr);
        assert(r.stderr.includes("tables pass CHECK TABLE"), r.stderr);
        const record = await verified();
        assertEquals([record.name, record.ok, record.node, record.error], [good, true, "n2", undefined]);
        const again = await snapshot(c, n3, env); // verified already: n3 does not do it again
        assert(!again.stderr.includes("Verifying"), again.stderr);
        assertEquals(await verified(), record);
        const ok = await c.run(n1, ["status"]);
        assert(ok.stdout.includes(`, verified on n2\n`), ok.stdout);

        // A new snapshot whose stored bytes are then damaged: the verification fails, and says so everywhere.
        await nextSecond();
        assertEquals((await c.run(n1, ["backup", "now"])).code, 0);
        const bad = (await lastBackup(c)).name;
        await Deno.truncate(`${c.snapshots}/${bad}.xbstream.zst`, 1000);
        const failed = await c.run(n3, ["snapshot"], env);
        assertEquals(failed.code, 1, failed.stderr);
        assert(failed.stderr.includes(`Snapshot ${bad} FAILED verification: `), failed.stderr);
        const badRecord = await verified();
        assertEquals([badRecord.name, badRecord.ok, badRecord.node], [bad, false, "n3"]);
        assert(badRecord.error.includes("is corrupt"), badRecord.error);
        const st = await c.run(n1, ["status"]);
        assertEquals(st.code, 1, st.stdout);
        assert(st.stdout.includes(`, FAILED verification on n3\n`), st.stdout);
        assert(st.stdout.includes(`the last snapshot ${bad} failed verification on n3: `), st.stdout);
        // recorded once: the other replica does not download it again
        const quiet = await snapshot(c, n2, env);
        assert(!quiet.stderr.includes("Verifying"), quiet.stderr);
      },
    );
  } finally {
    await stopChecking();
  }
});

Deno.test("autopilot snapshot applies retention after each snapshot (BACKUP_RETAIN_COUNT), data and manifests alike", async () => {
  await using h = await Harness.create({ nodes: 1 });
  const c = await Cluster.create(h);
  const n1 = c.node(1, { BACKUP_RETAIN_COUNT: "2", BACKUP_TTL: "1s" });
  assertEquals((await c.boot(n1)).code, 0);
  for (let i = 0; i < 3; i++) {
    await nextSecond();
    await snapshot(c, n1);
  }
  const kept = snapshots(c);
  assertEquals(kept.length, 2, kept.join());
  assertEquals(kept.at(-1), `${(await lastBackup(c)).name}.manifest.json`);
  const data = [...Deno.readDirSync(c.snapshots)].filter((e) => e.name.endsWith(".xbstream.zst"));
  assertEquals(data.length, 2, "a data object was left behind");
});

Deno.test("autopilot snapshot at a container's start, before mysqld is up, does nothing quietly; backup now says why", async () => {
  await using h = await Harness.create({ nodes: 2 });
  const c = await Cluster.create(h);
  const [n1, n2] = [c.node(1), c.node(2)];
  const quiet = { LOG_LEVEL: "INFO" };
  // ContainerPilot runs the task at once: here on the first node of a new cluster, before its pre-start.
  const first = await c.run(n1, ["snapshot"], quiet);
  assertEquals([first.code, first.stderr], [0, ""]);
  const why = await c.run(n1, ["snapshot"]);
  assertEquals(why.code, 0, why.stderr);
  assert(
    why.stderr.includes("[DBG] autopilot·snapshot: No snapshot: this node takes no snapshot: no node holds"),
    why.stderr,
  );

  assertEquals((await c.boot(n1)).code, 0);
  const stopChecking = c.keepChecking([n1]);
  try {
    // A new replica: restored, its mysqld not started yet.
    assertEquals((await c.preStart(n2)).code, 0);
    const replica = await c.run(n2, ["snapshot"], { ...quiet, BACKUP_FROM: "primary" });
    assertEquals([replica.code, replica.stderr], [0, ""]);
    const byDefault = await c.run(n2, ["snapshot"], quiet);
    assertEquals([byDefault.code, byDefault.stderr], [0, ""]);
    // BACKUP_FROM=replica (the default): its own server decides, and it does not answer yet.
    const fromReplica = await c.run(n2, ["snapshot"]);
    assertEquals(fromReplica.code, 0, fromReplica.stderr);
    assert(
      fromReplica.stderr.includes(
        "No snapshot: this node takes no snapshot: its MySQL server does not answer",
      ),
      fromReplica.stderr,
    );
    assert(!/\[(ERR|WRN)\]/.test(fromReplica.stderr), fromReplica.stderr);
    // `backup now` asked for one: a server that does not answer is an error, as before.
    const forced = await c.run(n2, ["backup", "now"]);
    assertEquals(forced.code, 1, forced.stderr);
    assert(
      forced.stderr.includes("[ERR] autopilot·snapshot: No snapshot: Cannot reach MySQL"),
      forced.stderr,
    );
  } finally {
    await stopChecking();
  }
  // The primary's mysqld stops (a restart): its session still holds the lock, its server does not answer.
  await c.stopMysqld(n1);
  assertEquals(await c.primaryName(), "n1");
  const restarting = await c.run(n1, ["snapshot"], { ...quiet, BACKUP_TTL: "1s" });
  assertEquals([restarting.code, restarting.stderr], [0, ""]);
});
