/**
 * The operator's snapshot commands on a real cluster: `autopilot backup list | verify` and `autopilot restore`,
 * run as ContainerPilot-less operators would run them (the CLI under -P=autopilot, in the node's namespace),
 * against snapshots of a real MariaDB primary in the local store, and retention (`pruneSnapshots`) on a local
 * store of real snapshots.
 */
import { assert, assertEquals } from "../unit/assert.ts";
import { takeSnapshot } from "../../src/backup/backup.ts";
import { createHash } from "node:crypto";
import { dataKey, formatManifest, type Manifest, manifestKey } from "../../src/backup/manifest.ts";
import { pruneSnapshots } from "../../src/backup/retention.ts";
import { LocalStore } from "../../src/storage/local.ts";
import { Cluster, type TestNode } from "./cluster.ts";
import { RESTORED_FILE } from "../../src/restored.ts";
import { autopilotRunFlags, Harness, pathExists, REPO_ROOT, runOk, waitFor } from "./harness/mod.ts";

const DAY = 86_400_000;

/** Takes a snapshot of the node's server into `storeDir`, named and dated by `now`. */
async function snapshot(c: Cluster, node: TestNode, storeDir: string, now: Date): Promise<Manifest> {
  const [v] = await c.sql(node, "SELECT VERSION() AS v");
  return await takeSnapshot({
    store: new LocalStore(storeDir),
    flavour: "mariadb",
    cnfPath: node.env.MYSQL_CNF,
    socket: node.env.MYSQL_SOCKET,
    user: "root",
    nodeName: node.name,
    serverVersion: String(v.v),
    namePattern: "mysql-backup-%Y-%m-%dT%H-%M-%SZ",
    now,
  });
}

/** Names, sizes and modification times of a directory's entries (top level), to prove nothing changed. */
async function listing(dir: string): Promise<string[]> {
  const out: string[] = [];
  for await (const e of Deno.readDir(dir)) {
    const st = await Deno.stat(`${dir}/${e.name}`);
    out.push(`${e.name} ${st.size} ${st.mtime?.getTime()}`);
  }
  return out.sort();
}

async function names(dir: string): Promise<string[]> {
  return (await Array.fromAsync(Deno.readDir(dir))).map((e) => e.name).sort();
}

/** The last line of a command's stderr (its one-line verdict; log lines come before it). */
function lastLine(stderr: string): string {
  return stderr.trim().split("\n").at(-1) ?? "";
}

Deno.test("autopilot backup list, backup verify and restore work on a real cluster's snapshots", async (t) => {
  await using h = await Harness.create({ nodes: 2 });
  const c = await Cluster.create(h);
  const [n1, n2] = [c.node(1), c.node(2)];
  const health = await c.boot(n1);
  assertEquals(health.code, 0, health.stderr);
  const consul = c.consul();
  try {
    const first = JSON.parse((await consul.get("mysql-last-backup"))!.value) as Manifest;
    await c.sql(n1, "CREATE TABLE app.t (id INT PRIMARY KEY, v VARCHAR(64))");
    await c.sql(n1, "INSERT INTO app.t SELECT seq, MD5(seq) FROM app.seq_1_to_100");
    // Dated after the bootstrap snapshot, one second apart, so each has its own name.
    const base = Date.now() + 60_000;
    const s1 = await snapshot(c, n1, c.snapshots, new Date(base + 1000));
    await c.sql(n1, "INSERT INTO app.t SELECT seq, MD5(seq) FROM app.seq_101_to_200");
    const s2 = await snapshot(c, n1, c.snapshots, new Date(base + 2000));
    await consul.putJson("mysql-last-backup", s2);
    const truncated = await snapshot(c, n1, c.snapshots, new Date(base + 3000));
    const corrupted = await snapshot(c, n1, c.snapshots, new Date(base + 4000));
    const truncatedPath = `${c.snapshots}/${truncated.key}`;
    await Deno.truncate(truncatedPath, Math.floor(truncated.size / 2));
    const corruptedPath = `${c.snapshots}/${corrupted.key}`;
    const bytes = await Deno.readFile(corruptedPath);
    for (let i = Math.floor(bytes.length / 2); i < Math.floor(bytes.length / 2) + 16; i++) bytes[i] ^= 0xff;
    await Deno.writeFile(corruptedPath, bytes);

    await t.step(
      "backup list shows every complete snapshot newest first and marks Consul's last",
      async () => {
        const r = await c.run(n1, ["backup", "list"]);
        assertEquals(r.code, 0, r.stderr);
        const lines = r.stdout.trimEnd().split("\n");
        assert(/^LAST\s+NAME\s+CREATED \(UTC\)\s+SIZE\s+GTID\s+NODE$/.test(lines[0]), lines[0]);
        const rowsShown = lines.slice(1).filter((l) => /mysql-backup-/.test(l));
        assertEquals(rowsShown.map((l) => l.match(/mysql-backup-\S+/)![0]), [
          corrupted.name,
          s2.name,
          s1.name,
          first.name,
        ]);
        assert(rowsShown[1].startsWith(`*     ${s2.name}`), rowsShown[1]);
        assert(rowsShown[1].includes(s2.gtid) && rowsShown[1].includes(" n1"), rowsShown[1]);
        assert(!rowsShown[0].startsWith("*"), rowsShown[0]);
        assert(r.stdout.includes("* the last snapshot, as Consul's mysql-last-backup names it"), r.stdout);
        assert(
          r.stderr.includes(
            `invalid snapshot '${truncated.name}': its data object is ${
              Math.floor(truncated.size / 2)
            } bytes but the manifest says ${truncated.size}`,
          ),
          r.stderr,
        );

        const j = await c.run(n1, ["backup", "list", "--json"]);
        assertEquals(j.code, 0, j.stderr);
        const out = JSON.parse(j.stdout);
        assertEquals(out.last, s2.name);
        assertEquals(out.lastKnown, true);
        assertEquals(out.store, { kind: "local", location: c.snapshots });
        assertEquals(
          out.snapshots.map((s: { name: string; last: boolean }) => [s.name, s.last]),
          [[corrupted.name, false], [s2.name, true], [s1.name, false], [first.name, false]],
        );
        assertEquals(out.snapshots[1].gtid, s2.gtid);
        assertEquals(out.snapshots[1].size, s2.size);
        assertEquals(out.problems.map((p: { name: string; state: string }) => [p.name, p.state]), [
          [truncated.name, "invalid"],
        ]);
      },
    );

    await t.step("backup list works without Consul and says on stderr it cannot tell the last", async () => {
      const r = await c.run(n1, ["backup", "list", "--json"], {
        CONSUL: "127.0.0.1:1",
        CONSUL_TIMEOUT: "1s",
      });
      assertEquals(r.code, 0, r.stderr);
      assert(r.stderr.includes("autopilot backup list: cannot tell which snapshot is the last: "), r.stderr);
      const out = JSON.parse(r.stdout);
      assertEquals([out.last, out.lastKnown, out.snapshots.length], [null, false, 4]);
      const table = await c.run(n1, ["backup", "list"], { CONSUL: "127.0.0.1:1", CONSUL_TIMEOUT: "1s" });
      assertEquals(table.code, 0, table.stderr);
      assert(!/^\*/m.test(table.stdout), table.stdout);
    });

    await t.step(
      "backup verify passes on a good snapshot and leaves the node and MYSQL_TMPDIR as they were",
      async () => {
        const datadirBefore = await names(n1.env.MYSQL_DATADIR);
        const named = await c.run(n1, ["backup", "verify", s1.name]);
        assertEquals(named.code, 0, named.stderr);
        assert(
          named.stdout.startsWith(`Snapshot '${s1.name}' is good: its SHA-256 and size match the manifest`),
          named.stdout,
        );
        assert(named.stdout.includes(`GTID ${s1.gtid} matches the manifest`), named.stdout);
        assert(/every table passed CHECK TABLE/.test(named.stdout), named.stdout);
        const latest = await c.run(n1, ["backup", "verify"]);
        assertEquals(latest.code, 0, latest.stderr);
        assert(latest.stdout.startsWith(`Snapshot '${s2.name}' is good`), latest.stdout);
        assertEquals(await names(n1.env.MYSQL_TMPDIR), []);
        assertEquals(await names(n1.env.MYSQL_DATADIR), datadirBefore);
        const again = await c.run(n1, ["health"]);
        assertEquals(again.code, 0, again.stderr);
      },
    );

    await t.step(
      "backup verify fails on a truncated and on a corrupted snapshot with one clear line",
      async () => {
        const tr = await c.run(n1, ["backup", "verify", truncated.name]);
        assertEquals(tr.code, 1, tr.stderr);
        assertEquals(
          lastLine(tr.stderr),
          `autopilot backup verify: Snapshot '${truncated.name}' is corrupt: its data object is ${
            Math.floor(truncated.size / 2)
          } bytes but the manifest says ${truncated.size}: do not restore it; take a new snapshot on the primary ` +
            "('autopilot backup now')",
        );
        const co = await c.run(n1, ["backup", "verify", corrupted.name]);
        assertEquals(co.code, 1, co.stderr);
        assert(
          new RegExp(
            `^autopilot backup verify: Snapshot '${corrupted.name}' is corrupt: its SHA-256 is [0-9a-f]{12}… ` +
              `but the manifest says ${corrupted.sha256.slice(0, 12)}…: do not restore it`,
          ).test(lastLine(co.stderr)),
          co.stderr,
        );
        assertEquals(co.stdout, "");
        assertEquals(await names(n1.env.MYSQL_TMPDIR), []);
      },
    );

    await t.step("backup refuses bad usage with exit 2 and an unknown name with exit 1", async () => {
      for (
        const args of [["backup"], ["backup", "frobnicate"], ["backup", "list", "extra"], [
          "backup",
          "now",
          "--json",
        ]]
      ) {
        const r = await c.run(n1, args);
        assertEquals(r.code, 2, `${args.join(" ")}: ${r.stderr}`);
        assert(lastLine(r.stderr).startsWith("autopilot backup: "), r.stderr);
      }
      const bad = await c.run(n1, ["backup", "verify", "no/such name"]);
      assertEquals(bad.code, 2, bad.stderr);
      const missing = await c.run(n1, ["backup", "verify", "mysql-backup-nope"]);
      assertEquals(missing.code, 1, missing.stderr);
      assertEquals(
        lastLine(missing.stderr),
        `autopilot backup verify: No snapshot named 'mysql-backup-nope' in the local store at ${c.snapshots}: ` +
          "run 'autopilot backup list' to see the snapshots it holds",
      );
      const help = await c.run(n1, ["backup", "--help"]);
      assertEquals(help.code, 0);
      assert(help.stdout.includes("backup verify [NAME]"), help.stdout);
    });

    await t.step(
      "restore refuses while a server runs or the datadir holds data, and touches nothing",
      async () => {
        const running = await c.run(n1, ["restore"]);
        assertEquals(running.code, 1, running.stderr);
        assertEquals(
          lastLine(running.stderr),
          `autopilot restore: a server answers on ${n1.env.MYSQL_SOCKET}: stop mysqld first; nothing was touched`,
        );
        await c.stopMysqld(n1);
        const state = await Deno.readTextFile(`${n1.env.STATE_DIR}/state.json`);
        const before = await listing(n1.env.MYSQL_DATADIR);
        const full = await c.run(n1, ["restore", s1.name]);
        assertEquals(full.code, 1, full.stderr);
        assert(
          lastLine(full.stderr).startsWith(
            `autopilot restore: ${n1.env.MYSQL_DATADIR} (MYSQL_DATADIR) is not empty (it holds `,
          ),
          full.stderr,
        );
        assert(lastLine(full.stderr).endsWith("move it aside first; nothing was touched"), full.stderr);
        assertEquals(await listing(n1.env.MYSQL_DATADIR), before);
        assertEquals(await Deno.readTextFile(`${n1.env.STATE_DIR}/state.json`), state);
        const dir = n1.env.MYSQL_DATADIR.slice(0, n1.env.MYSQL_DATADIR.lastIndexOf("/"));
        assertEquals((await names(dir)).filter((n) => n.includes(".restore-")), []);
        await c.startMysqld(n1);
        const back = await c.run(n1, ["health"]);
        assertEquals(back.code, 0, back.stderr);
      },
    );

    await t.step(
      "backup verify fails on a snapshot whose bytes match its manifest but whose table is damaged",
      async () => {
        // n1 was just restarted, so its pages are on disk: the backup's redo log does not rewrite them on prepare.
        const damaged = await snapshot(c, n1, c.snapshots, new Date(base + 5000));
        const x = `${h.dir}/damaged`;
        await Deno.mkdir(x);
        const path = `${c.snapshots}/${damaged.key}`;
        await runOk("bash", ["-c", 'zstd -q -d -c "$1" | mbstream -x -C "$2"', "-", path, x]);
        const ibd = await Deno.open(`${x}/app/t.ibd`, { read: true, write: true });
        await ibd.seek(3 * 16384 + 2000, Deno.SeekMode.Start); // inside page 3, a data page
        await ibd.write(new Uint8Array(64).fill(0x5a));
        ibd.close();
        await runOk("bash", [
          "-c",
          'cd "$1" && find . -type f | sed "s#^./##" | xargs mbstream -c | zstd -q -1 > "$2"',
          "-",
          x,
          path,
        ]);
        const repacked = await Deno.readFile(path);
        await Deno.writeTextFile(
          `${c.snapshots}/${manifestKey(damaged.name)}`,
          formatManifest({
            ...damaged,
            size: repacked.length,
            sha256: createHash("sha256").update(repacked).digest("hex"),
          }),
        );
        const r = await c.run(n1, ["backup", "verify", damaged.name]);
        assertEquals(r.code, 1, r.stderr);
        const line = lastLine(r.stderr);
        assert(
          line.startsWith(
            `autopilot backup verify: Snapshot '${damaged.name}' is corrupt: CHECK TABLE failed on a server ` +
              "started on it: app.t: ",
          ),
          r.stderr,
        );
        assert(line.includes("(server log: [ERROR] InnoDB:"), line);
        assert(line.endsWith(": take a new snapshot on the primary"), line);
        assertEquals(await names(n1.env.MYSQL_TMPDIR), []);
      },
    );

    await t.step(
      "restore fills a new node's empty datadir; the node started on it has the data and replicates",
      async () => {
        const r = await c.run(n2, ["restore"]);
        assertEquals(r.code, 0, r.stderr);
        assertEquals(
          r.stdout.trim(),
          `Restored snapshot '${s2.name}' (taken ${s2.createdAt} on n1) into ${n2.env.MYSQL_DATADIR}: GTID ${s2.gtid}; ` +
            "start the node: health will replicate from the primary after that position",
        );
        const mark = `${n2.env.MYSQL_DATADIR}/${RESTORED_FILE}`;
        assertEquals(JSON.parse(await Deno.readTextFile(mark)), { snapshot: s2.name, gtid: s2.gtid });
        const state = JSON.parse(await Deno.readTextFile(`${n2.env.STATE_DIR}/state.json`));
        assertEquals(state.flavour, "mariadb");

        const pre = await c.preStart(n2);
        assertEquals(pre.code, 0, pre.stderr);
        assert(pre.stderr.includes("already holds a database: left untouched"), pre.stderr);
        await c.startMysqld(n2);
        assertEquals(await c.rows(n2), 200);
        const health = await c.run(n2, ["health"]);
        assertEquals(health.code, 0, health.stderr);
        assert(!(await pathExists(mark)), "the restore mark outlived the start of replication");
        await c.sql(n1, "INSERT INTO app.t VALUES (201, 'after the restore')");
        await waitFor("row 201 on n2", async () => (await c.rows(n2)) === 201);
        const [status] = await c.sql(n2, "SHOW SLAVE STATUS");
        assertEquals([status.Master_Host, status.Using_Gtid], [n1.address, "Slave_Pos"]);
      },
    );

    await t.step(
      "restore NAME restores that snapshot, and refuses a corrupt one leaving no datadir",
      async () => {
        const env = {
          MYSQL_DATADIR: `${n2.dir}/other/data`,
          MYSQL_SOCKET: `${n2.dir}/other/run/mysqld.sock`,
          STATE_DIR: `${n2.dir}/other/state`,
        };
        // A pid file beside the socket: a server may be starting or stopping.
        const pidFile = `${n2.dir}/other/run/mysqld.pid`;
        await Deno.mkdir(`${n2.dir}/other/run`, { recursive: true });
        await Deno.writeTextFile(pidFile, "4242\n");
        const pid = await c.run(n2, ["restore", s1.name], env);
        assertEquals(pid.code, 1, pid.stderr);
        assertEquals(
          lastLine(pid.stderr),
          `autopilot restore: mysqld's pid file ${pidFile} names process 4242: a server may be starting or ` +
            "stopping; stop it, or delete the file if no mysqld runs; nothing was touched",
        );
        assert(!(await pathExists(`${n2.dir}/other/data`)), "a datadir was made despite the pid file");
        await Deno.remove(pidFile);
        const bad = await c.run(n2, ["restore", truncated.name], env);
        assertEquals(bad.code, 1, bad.stderr);
        assert(
          lastLine(bad.stderr).startsWith(
            `autopilot restore: Snapshot '${truncated.name}' is corrupt: its data object is`,
          ),
          bad.stderr,
        );
        assert(!(await pathExists(env.MYSQL_DATADIR)), "a datadir was left after a failed restore");
        assert(!(await pathExists(`${env.STATE_DIR}/state.json`)), "state written after a failed restore");
        const r = await c.run(n2, ["restore", s1.name], env);
        assertEquals(r.code, 0, r.stderr);
        assert(r.stdout.startsWith(`Restored snapshot '${s1.name}'`), r.stdout);
        assert(await pathExists(`${env.MYSQL_DATADIR}/mysql`), "no mysql/ in the restored datadir");
        assertEquals(
          JSON.parse(await Deno.readTextFile(`${env.MYSQL_DATADIR}/${RESTORED_FILE}`)),
          { snapshot: s1.name, gtid: s1.gtid },
        );
      },
    );
  } finally {
    consul.close();
  }
});

Deno.test("pruneSnapshots() on a local store of real snapshots keeps exactly the newest, the recent and the protected", async () => {
  await using h = await Harness.create({ nodes: 1 });
  const c = await Cluster.create(h);
  const n1 = c.node(1);
  const health = await c.boot(n1);
  assertEquals(health.code, 0, health.stderr);
  const dir = `${h.dir}/retention`;
  const now = new Date();
  const taken: Manifest[] = [];
  for (let d = 5; d >= 1; d--) taken.push(await snapshot(c, n1, dir, new Date(now.getTime() - d * DAY)));
  const [d5, d4, d3, d2, d1] = taken;
  // A backup that died before its manifest, two days ago; and one whose upload just finished.
  await Deno.copyFile(`${dir}/${d1.key}`, `${dir}/${dataKey("mysql-backup-stale")}`);
  const twoDaysAgo = new Date(now.getTime() - 2 * DAY);
  await Deno.utime(`${dir}/${dataKey("mysql-backup-stale")}`, twoDaysAgo, twoDaysAgo);
  await Deno.copyFile(`${dir}/${d1.key}`, `${dir}/${dataKey("mysql-backup-uploading")}`);
  const files = (ms: readonly Manifest[], extra: string[] = []) =>
    [...ms.flatMap((m) => [m.key, manifestKey(m.name)]), ...extra].sort();
  assertEquals(
    await names(dir),
    files(taken, [dataKey("mysql-backup-stale"), dataKey("mysql-backup-uploading")]),
  );

  const store = new LocalStore(dir);
  const first = await pruneSnapshots(store, { retainCount: 1, retainAgeMs: 2.5 * DAY }, {
    protect: d5.name,
    now,
  });
  assertEquals([...first.deleted].sort(), [d4.name, d3.name, "mysql-backup-stale"].sort());
  assertEquals(first.failed, []);
  assertEquals(
    first.plan.keep.map((k) => `${k.snapshot.name}: ${k.reason}`),
    [
      "mysql-backup-uploading: data without a manifest, newer than 24h (maybe still being written)",
      `${d1.name}: one of the newest 1`,
      `${d2.name}: newer than 60h`,
      `${d5.name}: the last snapshot (protected)`,
    ],
  );
  assertEquals(await names(dir), files([d5, d2, d1], [dataKey("mysql-backup-uploading")]));

  const second = await pruneSnapshots(store, { retainCount: 1 }, { protect: d5.name, now });
  assertEquals(second.deleted, [d2.name]);
  assertEquals(await names(dir), files([d5, d1], [dataKey("mysql-backup-uploading")]));

  // The protected snapshot is still whole: it restores (verify reads it end to end).
  const v = await c.run(n1, ["backup", "verify", d5.name], { SNAPSHOT_DIR: dir });
  assertEquals(v.code, 0, v.stderr);
});

Deno.test("autopilot backup verify interrupted by SIGINT stops its throwaway server and removes its scratch dir", async () => {
  await using h = await Harness.create({ nodes: 1 });
  const c = await Cluster.create(h);
  const n1 = c.node(1);
  assertEquals((await c.boot(n1)).code, 0);
  const tmp = n1.env.MYSQL_TMPDIR;
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", ...autopilotRunFlags(), "mod.ts", "backup", "verify"],
    cwd: REPO_ROOT,
    clearEnv: true,
    env: { PATH: Deno.env.get("PATH") ?? "", DENO_DIR: Deno.env.get("DENO_DIR") ?? "", ...n1.env },
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  // Interrupt once the throwaway server is up (its scratch directory holds a socket).
  let exited = false;
  const status = child.status.then(() => exited = true);
  await waitFor("the throwaway server", async () => {
    if (exited) throw new Error("verify ended before its server was seen");
    for await (const e of Deno.readDir(tmp)) {
      if (e.name.startsWith("autopilot-verify-") && await pathExists(`${tmp}/${e.name}/mysqld.sock`)) {
        return true;
      }
    }
    return false;
  }, { timeoutMs: 60_000, intervalMs: 10 }).catch(async (e) => {
    const out = await child.output();
    throw new Error(`${(e as Error).message}: ${new TextDecoder().decode(out.stderr)}`);
  });
  child.kill("SIGINT");
  await status;
  const out = await child.output();
  const stderr = new TextDecoder().decode(out.stderr);
  assertEquals(out.code, 1, stderr);
  assert(stderr.includes("interrupted; cleaned up"), stderr);
  assertEquals((await names(tmp)).filter((n) => n.startsWith("autopilot-verify-")), [], "scratch dir left");
  const servers = await new Deno.Command("pgrep", { args: ["-f", `${tmp}/autopilot-verify-`] }).output();
  assertEquals(new TextDecoder().decode(servers.stdout).trim(), "", "throwaway server left running");
});
