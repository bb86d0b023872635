/**
 * Point-in-time recovery on real servers, the directory store: rows written before and after a snapshot, the
 * primary's binlogs archived (`autopilot archive`), a failover (kill -9), the new primary archiving on from
 * where the archive stands, more rows, then every node and Consul lost. A restore to a time between two known
 * writes gives exactly the rows up to it; a restore to the end holds every write that had been archived; both
 * start as the primary of a new cluster. Bad input (a malformed time, a time before the first snapshot, a GTID
 * the archive never saw) and a corrupt or missing archived binlog: one line each, nothing touched.
 */
import { assert, assertEquals } from "../unit/assert.ts";
import { Cluster, converge, type TestNode, writer } from "./cluster.ts";
import { type ConsulServer, Harness, kill9, pathExists, startConsul, waitFor } from "./harness/mod.ts";
import { listSegments } from "../../src/binlog/catalog.ts";
import { LocalStore } from "../../src/storage/local.ts";
import type { Segment } from "../../src/binlog/segment.ts";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function ids(c: Cluster, node: TestNode): Promise<number[]> {
  return (await c.sql(node, "SELECT id FROM app.p ORDER BY id")).map((r) => Number(r.id));
}

async function archive(c: Cluster, node: TestNode): Promise<void> {
  const r = await c.run(node, ["archive"]);
  assertEquals(r.code, 0, r.stderr);
}

function lastLine(stderr: string): string {
  return stderr.trim().split("\n").at(-1) ?? "";
}

/** The archive's segments, by key. */
async function segments(c: Cluster): Promise<Map<string, Segment>> {
  return new Map((await listSegments(new LocalStore(c.snapshots))).map((s) => [s.key, s]));
}

Deno.test("point-in-time restore across a failover and the loss of every node and Consul", async (t) => {
  await using h = await Harness.create({ nodes: 3 });
  const c = await Cluster.create(h);
  const [n1, n2, n3] = [c.node(1), c.node(2), c.node(3)];
  for (const n of [n1, n2]) assertEquals((await c.boot(n)).code, 0, `boot ${n.name}`);
  await using app1 = await c.app(n1);
  await app1.run(["CREATE TABLE app.p (id INT PRIMARY KEY)", "INSERT INTO app.p VALUES (1), (2)"]);
  const snap = await c.run(n1, ["backup", "now"]);
  assertEquals(snap.code, 0, snap.stderr);
  await app1.run(["INSERT INTO app.p VALUES (3)"]);
  await sleep(1100);
  const between = new Date();
  await sleep(1100);
  await app1.run(["INSERT INTO app.p VALUES (4)"]);
  await app1.close();

  await t.step("the primary archives its binlogs; a replica archives nothing", async () => {
    await archive(c, n2);
    assertEquals((await segments(c)).size, 0, "a replica archived");
    await archive(c, n1);
    const segs = [...(await segments(c)).values()];
    assert(segs.length > 0 && segs.every((s) => s.node === "n1"), JSON.stringify(segs.map((s) => s.key)));
    const r = await c.run(n1, ["archive"]); // nothing new: nothing uploaded
    assertEquals(r.code, 0, r.stderr);
    assertEquals((await segments(c)).size, segs.length);
  });

  const before = await segments(c);
  await kill9(n1.mysqld!.pid);
  await converge(
    c,
    [n1, n2],
    async () => (await c.primaryName()) === "n2" && (await c.run(n2, ["health", "--primary"])).code === 0,
  );
  await using app2 = await c.app(n2);
  await app2.run(["INSERT INTO app.p VALUES (5)", "INSERT INTO app.p VALUES (6)"]);

  await t.step("the new primary continues the archive: its own files, nothing overwritten", async () => {
    await archive(c, n2);
    const after = await segments(c);
    for (const [key, s] of before) assertEquals(after.get(key)?.sha256, s.sha256, `${key} changed`);
    const added = [...after.values()].filter((s) => !before.has(s.key));
    assert(added.length > 0 && added.every((s) => s.node === "n2"), JSON.stringify(added.map((s) => s.key)));
    const list = await c.run(n2, ["backup", "list"]);
    assertEquals(list.code, 0, list.stderr);
    assert(list.stdout.includes("Recoverable windows") && !list.stdout.includes("GAP"), list.stdout);
    const status = await c.run(n2, ["status"]);
    assert(
      /archive: +reaches .*archived by n2; holds everything the primary executed/.test(status.stdout),
      status.stdout,
    );
  });
  await app2.run(["INSERT INTO app.p VALUES (7)"]); // never archived: lost with the cluster
  await app2.close();

  // Every node and Consul lost.
  await kill9(n2.mysqld!.pid);
  await h.consul.stop();
  await c.preparePreStart(n3);

  await t.step("bad input: one line each, nothing touched", async () => {
    for (
      const [args, code, says] of [
        [["--to-time", "yesterday"], 2, "is not a time"],
        [["--to-time", "2000-01-01T00:00:00Z"], 1, "No snapshot precedes 2000-01-01T00:00:00.000Z"],
        [["--to-gtid", "0-999-5"], 1, "GTID 0-999-5 is in no archived binlog and no snapshot"],
        [["--to-gtid", "0-1-2,0-1-3"], 2, "duplicate"],
        [["--to-end", "--to-gtid", "0-1-1"], 2, "not several"],
      ] as const
    ) {
      const r = await c.run(n3, ["restore", ...args]);
      assertEquals(r.code, code, `${args.join(" ")}: ${r.stderr}`);
      assert(lastLine(r.stderr).includes(says), `${args.join(" ")}: ${lastLine(r.stderr)}`);
      assertEquals(await pathExists(n3.env.MYSQL_DATADIR), false, "the datadir was touched");
    }
    // A MYSQL_TMPDIR too long for the throwaway server's socket: said before anything is restored.
    const deep = `${h.dir}/${"t".repeat(90)}`;
    await Deno.mkdir(deep, { recursive: true });
    const r = await c.run(n3, ["restore", "--to-end"], { MYSQL_TMPDIR: deep });
    assertEquals(r.code, 1, r.stderr);
    assert(/socket path .* is longer than 107 characters/.test(lastLine(r.stderr)), lastLine(r.stderr));
    assertEquals(await pathExists(n3.env.MYSQL_DATADIR), false, "the datadir was touched");
  });

  /** A new, empty Consul on the old one's port: a new cluster. */
  let agent: ConsulServer | undefined;
  const newConsul = async (round: number) => {
    await agent?.stop();
    agent = await startConsul({
      bindAddrs: [...h.consul.bindAddrs],
      httpPort: h.consul.port,
      dir: `${h.dir}/consul-${round}`,
      group: h.group,
    });
  };

  await t.step(
    "restore to a time between two writes: exactly the rows before it; it starts as a primary",
    async () => {
      const r = await c.run(n3, ["restore", "--to-time", between.toISOString()]);
      assertEquals(r.code, 0, r.stderr);
      assert(r.stdout.includes("archived binlog"), r.stdout);
      await newConsul(1);
      const health = await c.boot(n3);
      assertEquals(health.code, 0, health.stderr);
      await waitFor("n3 primary", async () => (await c.run(n3, ["health", "--primary"])).code === 0);
      assertEquals(await ids(c, n3), [1, 2, 3]);
      await using app3 = await c.app(n3);
      await app3.run(["INSERT INTO app.p VALUES (100)"]);
      await c.stopMysqld(n3);
    },
  );

  await t.step(
    "restore to the end: every archived write; it starts as the primary of a new cluster",
    async () => {
      await Deno.remove(n1.env.MYSQL_DATADIR, { recursive: true });
      await Deno.remove(`${n1.dir}/run/mysqld.pid`); // killed -9: the operator removes what it left
      const r = await c.run(n1, ["restore", "--to-end"]);
      assertEquals(r.code, 0, r.stderr);
      await newConsul(2);
      const health = await c.boot(n1);
      assertEquals(health.code, 0, health.stderr);
      await waitFor("n1 primary", async () => (await c.run(n1, ["health", "--primary"])).code === 0);
      assertEquals(await ids(c, n1), [1, 2, 3, 4, 5, 6]);
      await c.stopMysqld(n1);
    },
  );

  await t.step(
    "a corrupt, then a missing archived binlog: the restore stops before it, naming the last point",
    async () => {
      await Deno.remove(n3.env.MYSQL_DATADIR, { recursive: true });
      const n2s = [...(await segments(c)).values()].filter((s) => s.node === "n2" && s.transactions > 0);
      const victim = n2s.sort((a, b) => a.archivedAt < b.archivedAt ? 1 : -1)[0];
      const path = `${c.snapshots}/${victim.key}`;
      const bytes = await Deno.readFile(path);
      bytes[Math.floor(bytes.length / 2)] ^= 0xff;
      await Deno.writeFile(path, bytes);
      let r = await c.run(n3, ["restore", "--to-end"]);
      assertEquals(r.code, 1, r.stderr);
      assert(
        /is corrupt .*the last point it can reach .* is 0-/.test(lastLine(r.stderr)),
        lastLine(r.stderr),
      );
      assertEquals(await pathExists(n3.env.MYSQL_DATADIR), false, "the datadir was touched");
      await Deno.remove(path);
      r = await c.run(n3, ["restore", "--to-end"]);
      assertEquals(r.code, 1, r.stderr);
      assert(lastLine(r.stderr).includes("The archive has a gap"), lastLine(r.stderr));
      assertEquals(await pathExists(n3.env.MYSQL_DATADIR), false, "the datadir was touched");
      const list = await c.run(n3, ["backup", "list"]);
      assertEquals(list.code, 0, list.stderr);
      assert(list.stdout.includes("GAP: no archived binlog continues from"), list.stdout);
      assert(list.stderr.includes(`${victim.key} is missing`), list.stderr);
    },
  );
});

Deno.test("a switchover while the primary archives under writes: archiving continues on the new primary, no overwrite, no gap", async () => {
  await using h = await Harness.create({ nodes: 2 });
  const c = await Cluster.create(h);
  const [n1, n2] = [c.node(1), c.node(2)];
  for (const n of [n1, n2]) assertEquals((await c.boot(n)).code, 0, `boot ${n.name}`);
  await using app = await c.app(n1);
  await app.query("CREATE TABLE app.acked (id INT PRIMARY KEY)");
  await app.close();
  const w = writer(c);
  await sleep(1000);
  await archive(c, n1);
  await sleep(500);
  // The archiver and the switchover at once, as ContainerPilot may run them.
  const [during, moved] = await Promise.all([
    c.run(n1, ["archive"]),
    c.run(n1, ["switchover", "--to", "n2"]),
  ]);
  assertEquals(moved.code, 0, moved.stderr);
  assert([0, 1].includes(during.code), during.stderr); // it may find the lock moving and stop
  await waitFor("n2 writable primary", async () => {
    await Promise.all([n1, n2].map((n) => c.run(n, ["on-change"])));
    return (await c.run(n2, ["health", "--primary"])).code === 0;
  }, { timeoutMs: 20_000, intervalMs: 200 });
  await sleep(1000);
  const before = await segments(c);
  const mtimes = new Map<string, number>();
  for (const key of before.keys()) {
    mtimes.set(key, (await Deno.stat(`${c.snapshots}/${key}`)).mtime!.getTime());
  }
  await archive(c, n2);
  const acked = await w.stop();
  assert(acked.length > 20, `the writer made little progress: ${acked.length}`);
  await archive(c, n2); // everything acknowledged is archived now
  const after = await segments(c);
  for (const [key, s] of before) {
    assertEquals(after.get(key)?.sha256, s.sha256, `${key} changed`);
    assertEquals(
      (await Deno.stat(`${c.snapshots}/${key}`)).mtime!.getTime(),
      mtimes.get(key),
      `${key} rewritten`,
    );
  }
  assert([...after.values()].some((s) => s.node === "n2"), "the new primary archived nothing");
  // The whole history restores: every acknowledged write, none twice.
  await c.stopMysqld(n1);
  await c.stopMysqld(n2);
  await Deno.remove(n1.env.MYSQL_DATADIR, { recursive: true });
  const r = await c.run(n1, ["restore", "--to-end"]);
  assertEquals(r.code, 0, r.stderr);
  assert(!r.stderr.includes("gap"), r.stderr);
  await h.consul.stop();
  await startConsul({
    bindAddrs: [...h.consul.bindAddrs],
    httpPort: h.consul.port,
    dir: `${h.dir}/consul-2`,
    group: h.group,
  });
  assertEquals((await c.boot(n1)).code, 0);
  const restored = (await c.sql(n1, "SELECT id FROM app.acked ORDER BY id")).map((row) => Number(row.id));
  assertEquals(acked.filter((id) => !restored.includes(id)), [], "acknowledged writes are missing");
});
