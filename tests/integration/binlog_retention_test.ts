/**
 * Retention and verification of the binlog archive on a real MariaDB primary and the directory store: snapshots
 * with archived binlogs between them (`autopilot archive`), `autopilot backup now` with BACKUP_RETAIN_COUNT=2
 * deletes exactly the archived binlogs before the oldest snapshot kept; `autopilot backup verify` of that
 * snapshot replays every archived binlog after it to the archive's end; a point-in-time restore to the end from
 * it still works; a corrupted archived binlog fails the verification, naming it and the last point reached.
 */
import { assert, assertEquals } from "../unit/assert.ts";
import { Cluster, type TestNode } from "./cluster.ts";
import { Harness, stop, waitFor } from "./harness/mod.ts";
import { listSegments } from "../../src/binlog/catalog.ts";
import { positionOf } from "../../src/binlog/plan.ts";
import { inventorySnapshots } from "../../src/backup/retention.ts";
import type { Manifest } from "../../src/backup/manifest.ts";
import type { Segment } from "../../src/binlog/segment.ts";
import { LocalStore } from "../../src/storage/local.ts";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function lastLine(stderr: string): string {
  return stderr.trim().split("\n").at(-1) ?? "";
}

/** The highest seq_no of a MariaDB state or position (one domain, as in this test). */
function seq(state: string): number {
  return Math.max(
    0,
    ...positionOf("mariadb", state).split(",").filter((g) => g !== "").map((g) => Number(g.split("-")[2])),
  );
}

async function segments(c: Cluster): Promise<Segment[]> {
  return await listSegments(new LocalStore(c.snapshots));
}

async function snapshots(dir: string): Promise<Manifest[]> {
  return (await inventorySnapshots(new LocalStore(dir))).filter((s) => s.state === "complete").map((s) =>
    s.manifest!
  );
}

async function ok(c: Cluster, node: TestNode, args: string[], env: Record<string, string> = {}) {
  const r = await c.run(node, args, env);
  assertEquals(r.code, 0, `${args.join(" ")}: ${r.stderr}`);
  return r;
}

Deno.test("retention prunes the archived binlogs with the snapshots; verification replays them to the archive's end", async (t) => {
  await using h = await Harness.create({ nodes: 2 });
  const c = await Cluster.create(h);
  const [n1, n2] = [c.node(1), c.node(2)];
  assertEquals((await c.boot(n1)).code, 0, "boot n1");
  // Health passes, as ContainerPilot runs them: the primary's session and lease stay alive.
  const stopChecking = c.keepChecking([n1], 2000);
  await using _checking = { [Symbol.asyncDispose]: stopChecking };
  await c.sql(n1, "CREATE TABLE app.r (id INT PRIMARY KEY)");
  // Four rounds: rows, the binlogs archived, a snapshot (one second apart: each has its own name).
  for (let round = 1; round <= 4; round++) {
    await c.sql(n1, `INSERT INTO app.r VALUES (${round * 10}), (${round * 10 + 1})`);
    await ok(c, n1, ["archive"]);
    await sleep(1100);
    await ok(c, n1, ["backup", "now"]);
  }
  await c.sql(n1, "INSERT INTO app.r VALUES (50), (51)");
  await ok(c, n1, ["archive"]);
  const before = await segments(c);
  const taken = await snapshots(c.snapshots);
  assert(taken.length >= 5, `snapshots: ${taken.map((m) => m.name)}`);

  let oldest: Manifest;
  await t.step(
    "backup now with BACKUP_RETAIN_COUNT=2: exactly the binlogs before the oldest kept go",
    async () => {
      await sleep(1100);
      await c.sql(n1, "INSERT INTO app.r VALUES (60)");
      await ok(c, n1, ["archive"]);
      const all = await segments(c);
      const r = await ok(c, n1, ["backup", "now"], { BACKUP_RETAIN_COUNT: "2" });
      const kept = await snapshots(c.snapshots);
      assertEquals(kept.length, 2, kept.map((m) => m.name).join(", "));
      oldest = kept.reduce((a, b) => (b.createdAt < a.createdAt ? b : a));
      const limit = seq(oldest.binlogState ?? oldest.gtid);
      const expectGone = all.filter((s) => seq(s.endState) <= limit).map((s) => s.key).sort();
      const left = (await segments(c)).map((s) => s.key).sort();
      assert(expectGone.length > 0 && expectGone.length < all.length, `gone: ${expectGone}`);
      assertEquals(left, all.map((s) => s.key).filter((k) => !expectGone.includes(k)).sort());
      for (const key of expectGone) {
        assert(r.stderr.includes(`Deleted archived binlog ${key}`), `no log line for ${key}`);
      }
      assert(before.length < all.length);
    },
  );

  await t.step(
    "backup verify of the oldest snapshot kept replays every binlog after it to the archive's end",
    async () => {
      const segs = await segments(c);
      const end = segs.reduce((a, b) => (seq(b.endState) > seq(a.endState) ? b : a)).endState;
      const v = await ok(c, n1, ["backup", "verify", oldest.name]);
      const m = /; (\d+) archived binlogs? after it replayed to the archive's end, (\S+)$/.exec(
        v.stdout.trim(),
      );
      assert(m !== null, v.stdout);
      assert(Number(m[1]) > 0, v.stdout);
      assertEquals(m[2], positionOf("mariadb", end));
    },
  );

  await t.step(
    "a point-in-time restore to the end from the oldest snapshot kept holds every archived row",
    async () => {
      // A copy of the store with only the oldest snapshot kept: --to-end must start from it.
      const copy = `${h.dir}/only-oldest`;
      await Deno.mkdir(copy);
      // The whole archive (binlogs/CLUSTER/NODE/…).
      const copyTree = async (from: string, to: string) => {
        await Deno.mkdir(to);
        for await (const e of Deno.readDir(from)) {
          if (e.isDirectory) await copyTree(`${from}/${e.name}`, `${to}/${e.name}`);
          else await Deno.copyFile(`${from}/${e.name}`, `${to}/${e.name}`);
        }
      };
      await copyTree(`${c.snapshots}/binlogs`, `${copy}/binlogs`);
      for (const suffix of [".manifest.json", ".xbstream.zst"]) {
        await Deno.copyFile(`${c.snapshots}/${oldest.name}${suffix}`, `${copy}/${oldest.name}${suffix}`);
      }
      await c.preparePreStart(n2);
      const r = await ok(c, n2, ["restore", "--to-end"], { SNAPSHOT_DIR: copy });
      const end = (await segments(c)).reduce((a, b) => (seq(b.endState) > seq(a.endState) ? b : a)).endState;
      assert(r.stdout.startsWith(`Restored snapshot '${oldest.name}'`), r.stdout);
      assert(r.stdout.includes(`: GTID ${positionOf("mariadb", end)}`), r.stdout);
      // A bare server on the restored datadir (not a cluster member: n1 is the primary there).
      const server = await h.group.spawn({
        name: "mariadbd n2 (restored)",
        program: "/usr/sbin/mariadbd",
        args: [
          "--no-defaults",
          `--datadir=${n2.env.MYSQL_DATADIR}`,
          `--socket=${n2.env.MYSQL_SOCKET}`,
          `--pid-file=${n2.dir}/run/restored.pid`,
          "--skip-networking",
          "--user=root",
          "--innodb-buffer-pool-size=64M",
        ],
        logFile: `${n2.dir}/restored.log`,
        netns: n2.ns,
      });
      try {
        await waitFor("the restored server", async () => {
          if (server.exited) throw new Error(`it exited: see ${n2.dir}/restored.log`);
          await (await c.root(n2)).close();
          return true;
        }, { timeoutMs: 30_000 });
        const ids = (await c.sql(n2, "SELECT id FROM app.r ORDER BY id")).map((row) => Number(row.id));
        assertEquals(ids, [10, 11, 20, 21, 30, 31, 40, 41, 50, 51, 60]);
      } finally {
        await stop(server.pid);
      }
    },
  );

  await t.step(
    "a corrupted archived binlog fails the verification, naming it and the last point reached",
    async () => {
      const after = (await segments(c)).filter((s) =>
        seq(s.endState) > seq(oldest.binlogState ?? oldest.gtid)
      )
        .sort((a, b) => seq(a.endState) - seq(b.endState));
      const victim = after.at(-1)!;
      const path = `${c.snapshots}/${victim.key}`;
      const bytes = await Deno.readFile(path);
      bytes[Math.floor(bytes.length / 2)] ^= 0xff;
      await Deno.writeFile(path, bytes);
      const v = await c.run(n1, ["backup", "verify", oldest.name]);
      assertEquals(v.code, 1, v.stderr);
      const line = lastLine(v.stderr);
      assert(line.startsWith(`autopilot backup verify: Snapshot '${oldest.name}' is good, but`), line);
      assert(line.includes(`Archived binlog ${victim.key} is corrupt`), line);
      const previous = after.length > 1 ? positionOf("mariadb", after.at(-2)!.endState) : undefined;
      if (previous !== undefined) assert(line.includes(`the last point reached is ${previous}`), line);
      assertEquals([...Deno.readDirSync(n1.env.MYSQL_TMPDIR)], [], "the scratch directory was left");
    },
  );
});
