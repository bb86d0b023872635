/**
 * Point-in-time recovery figures, on a real primary run by autopilot (directory store), next to the raw tools
 * measured in the same run:
 * - archive lag under a steady write load: for each acknowledged write, the time until the archive holds it
 *   (`autopilot archive` every `--interval` seconds, as ContainerPilot's binlog-archive task runs it), p50 and
 *   p95; and the writer's longest wait during an archiving run (the FLUSH BINARY LOGS) beside its longest wait
 *   outside one;
 * - replay rate, MiB of binlog per second: ours (`autopilot restore --to-gtid`, its replay step: the binlogs
 *   as relay logs, applied by the SQL thread) against the raw tools, plain `mariadb-binlog FILES | mariadb`,
 *   into a server restored from the same snapshot by hand (ours can exceed 100 %);
 * - time to restore a snapshot of `--snapshot-mb` of rows plus `--binlog-mb` of archived binlogs to a point:
 *   `autopilot restore --to-gtid` against the raw tools (`zstd -d | mbstream -x`, `mariabackup --prepare`,
 *   `zstd -d` of each binlog, `mariadbd`, `mariadb-binlog | mariadb`).
 *
 * Run: `deno task bench:pitr` (defaults: 1000 MB snapshot, 100 MiB of binlog, 10 s interval, 60 s of writes),
 * e.g. `deno task bench:pitr --snapshot-mb=100 --binlog-mb=20 --duration=30` (`--help` lists the options).
 * Prints a table; asserts nothing.
 *
 * @module
 */
// deno-lint-ignore-file no-console
import { parseArgs } from "node:util";
import { Cluster, SECRETS, type TestNode } from "../tests/integration/cluster.ts";
import { Harness, stop } from "../tests/integration/harness/mod.ts";
import { MysqlClient } from "../src/mysql/client.ts";
import { Secret } from "../src/config.ts";
import { listSnapshots } from "../src/backup/backup.ts";
import { listSegments } from "../src/binlog/catalog.ts";
import { planRecovery, snapshotPoint } from "../src/binlog/plan.ts";
import { scratchServerCnf } from "../src/backup/verify.ts";
import { LocalStore } from "../src/storage/local.ts";

const { values } = parseArgs({
  // `deno task bench:pitr -- --help` passes the `--` on.
  args: Deno.args[0] === "--" ? Deno.args.slice(1) : Deno.args,
  options: {
    "snapshot-mb": { type: "string", default: "1000" },
    "binlog-mb": { type: "string", default: "100" },
    interval: { type: "string", default: "10" },
    duration: { type: "string", default: "60" },
    help: { type: "boolean", default: false },
  },
});
if (values.help) {
  console.log(
    "deno task bench:pitr [--snapshot-mb=1000] [--binlog-mb=100] [--interval=10] [--duration=60]\n" +
      "  --snapshot-mb  MB of rows in the snapshot\n" +
      "  --binlog-mb    MiB of binlog written after it, then replayed by autopilot restore and by the raw tools\n" +
      "  --interval     seconds between archiving runs during the write load\n" +
      "  --duration     seconds of the steady write load (archive lag)",
  );
  Deno.exit(0);
}
const snapshotMb = Number(values["snapshot-mb"]);
const binlogMb = Number(values["binlog-mb"]);
const intervalMs = Number(values.interval) * 1000;
const durationMs = Number(values.duration) * 1000;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const pct = (xs: number[], p: number) =>
  [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(xs.length * p))];
const s = (ms: number) => `${(ms / 1000).toFixed(2)} s`;

async function sh(script: string, ...argv: string[]): Promise<number> {
  const t0 = performance.now();
  const out = await new Deno.Command("bash", {
    args: ["-c", `set -euo pipefail; ${script}`, "bash", ...argv],
    stdout: "null",
    stderr: "piped",
  }).output();
  if (!out.success) throw new Error(`${script}: ${new TextDecoder().decode(out.stderr).slice(-800)}`);
  return performance.now() - t0;
}

/** The seq_no of domain 0 in a MariaDB GTID position or state (its highest). */
function seqOf(gtids: string): number {
  return Math.max(
    0,
    ...gtids.split(",").filter((g) => g.startsWith("0-")).map((g) => Number(g.split("-")[2])),
  );
}

async function payloadRows(
  c: Cluster,
  node: TestNode,
  table: string,
  rows: number,
  chunk: number,
): Promise<string[]> {
  const payload = Array.from({ length: 28 }, (_, i) => `MD5(seq * ${i + 1})`).join(", ");
  await c.sql(
    node,
    `CREATE TABLE IF NOT EXISTS app.${table} (id INT PRIMARY KEY, payload VARCHAR(1024) NOT NULL, k INT, KEY (k))`,
  );
  const gtids: string[] = [];
  await using db = await MysqlClient.connect({
    socketPath: node.env.MYSQL_SOCKET,
    user: "root",
    connectTimeoutMs: 2000,
  });
  for (let from = 1; from <= rows; from += chunk) {
    const to = Math.min(rows, from + chunk - 1);
    await db.query(
      `INSERT INTO app.${table} SELECT seq, CONCAT(${payload}), seq % 97 FROM app.seq_${from}_to_${to}`,
    );
    gtids.push(String((await db.query("SELECT @@last_gtid AS g"))[0].g));
  }
  return gtids;
}

async function main(): Promise<void> {
  console.log(
    `autopilot-mysql point-in-time recovery figures (MariaDB, directory store, this machine; snapshot of ${snapshotMb} MB ` +
      `of rows, ${binlogMb} MiB of binlog, archive every ${intervalMs / 1000} s)\n`,
  );
  await using h = await Harness.create({ nodes: 2 });
  const c = await Cluster.create(h);
  const n1 = c.node(1, { INNODB_BUFFER_POOL_SIZE: "256M" });
  const boot = await c.boot(n1);
  if (boot.code !== 0) throw new Error(`boot: ${boot.stderr}`);
  // The health passes ContainerPilot would run: they keep the primary's lease, hence it writable.
  const stopChecking = c.keepChecking([n1], 4000);
  await payloadRows(c, n1, "big", snapshotMb * 1000, 50_000);
  const snap = await c.run(n1, ["backup", "now"]);
  if (snap.code !== 0) throw new Error(`backup now: ${snap.stderr}`);
  // The binlog that holds the fill is archived now, so that what is replayed below is what came after.
  if ((await c.run(n1, ["archive"])).code !== 0) throw new Error("archive failed");

  // 1. Archive lag under a steady write load.
  await c.sql(n1, "CREATE TABLE app.w (id INT PRIMARY KEY AUTO_INCREMENT, at BIGINT)");
  const acks: { t: number; seq: number }[] = [];
  let writing = true;
  const writer = (async () => {
    await using db = await MysqlClient.connect({
      host: n1.address,
      port: 3306,
      user: "app",
      password: new Secret(SECRETS.app),
      connectTimeoutMs: 2000,
    });
    while (writing) {
      await db.query("INSERT INTO app.w (at) VALUES (1)");
      const g = String((await db.query("SELECT @@last_gtid AS g"))[0].g);
      acks.push({ t: performance.now(), seq: seqOf(g) });
      await sleep(20);
    }
  })();
  const runs: { start: number; end: number; seq: number }[] = [];
  const consul = c.consul();
  const t0 = performance.now();
  while (performance.now() - t0 < durationMs) {
    await sleep(intervalMs);
    const start = performance.now();
    const r = await c.run(n1, ["archive"]);
    const end = performance.now();
    if (r.code !== 0) throw new Error(`archive: ${r.stderr}`);
    const record = JSON.parse((await consul.get("mysql-binlog-archive"))!.value) as { endState: string };
    runs.push({ start, end, seq: seqOf(record.endState) });
  }
  writing = false;
  await writer;
  consul.close();
  const lags: number[] = [];
  for (const a of acks) {
    const run = runs.find((r) => r.seq >= a.seq);
    if (run !== undefined) lags.push(run.end - a.t);
  }
  const gapsIn: number[] = [];
  const gapsOut: number[] = [];
  for (let i = 1; i < acks.length; i++) {
    const gap = acks[i].t - acks[i - 1].t;
    (runs.some((r) => acks[i].t >= r.start && acks[i - 1].t <= r.end) ? gapsIn : gapsOut).push(gap);
  }

  // 2. Binlog volume, archived, and a point near its end.
  const gtids = await payloadRows(c, n1, "volume", binlogMb * 1000, 1000);
  const archiveT0 = performance.now();
  const ar = await c.run(n1, ["archive"]);
  const archiveMs = performance.now() - archiveT0;
  if (ar.code !== 0) throw new Error(`archive: ${ar.stderr}`);
  const point = gtids[Math.floor(gtids.length * 0.9)];
  await stopChecking();
  await c.stopMysqld(n1);

  // 3. Ours: autopilot restore --to-gtid into an empty datadir.
  const n2 = c.node(2);
  await c.preparePreStart(n2);
  const oursT0 = performance.now();
  const ours = await c.run(n2, ["restore", "--to-gtid", point]);
  const oursMs = performance.now() - oursT0;
  if (ours.code !== 0) throw new Error(`restore: ${ours.stderr}`);
  const m = /\(([\d.]+) MiB replayed in ([\d.]+) s\)/.exec(ours.stdout);
  const replayedMiB = Number(m?.[1]);
  const oursReplayS = Number(m?.[2]);

  // 4. The raw tools, same snapshot, same binlogs.
  const store = new LocalStore(c.snapshots);
  const manifests = await listSnapshots(store);
  const plan = planRecovery("mariadb", manifests.map(snapshotPoint), await listSegments(store), {
    kind: "gtid",
    gtid: point,
  });
  const manifest = manifests.find((x) => x.name === plan.snapshot.name)!;
  const raw = `${h.dir}/raw`;
  await Deno.mkdir(`${raw}/data`, { recursive: true });
  await Deno.mkdir(`${raw}/tmp`, { recursive: true });
  const rawT0 = performance.now();
  await sh('zstd -q -d -c "$1" | mbstream -x -C "$2"', `${c.snapshots}/${manifest.key}`, `${raw}/data`);
  await sh('mariabackup --prepare --target-dir="$1" >/dev/null 2>&1', `${raw}/data`);
  const files: string[] = [];
  for (const [i, step] of plan.steps.entries()) {
    const f = `${raw}/${i}.binlog`;
    await sh('zstd -q -d -c "$1" > "$2"', `${c.snapshots}/${step.segment.key}`, f);
    files.push(f);
  }
  await Deno.writeTextFile(
    `${raw}/my.cnf`,
    scratchServerCnf("mariadb", raw, "root", { datadir: `${raw}/data`, replay: true }),
  );
  const server = await h.group.spawn({
    name: "mariadbd raw",
    program: "/usr/sbin/mariadbd",
    args: [`--defaults-file=${raw}/my.cnf`],
    logFile: `${raw}/out.log`,
  });
  let rawReplayMs = 0;
  try {
    for (let i = 0; i < 600; i++) {
      try {
        await (await MysqlClient.connect({
          socketPath: `${raw}/mysqld.sock`,
          user: "root",
          connectTimeoutMs: 2000,
        })).close();
        break;
      } catch {
        await sleep(100);
      }
    }
    await using db = await MysqlClient.connect({
      socketPath: `${raw}/mysqld.sock`,
      user: "root",
      connectTimeoutMs: 2000,
    });
    await db.query("RESET MASTER");
    await db.query({ sql: "SET GLOBAL gtid_binlog_state = ?", values: [plan.snapshot.state] });
    const rt0 = performance.now();
    await sh(
      `mariadb-binlog --start-position="$1" --stop-position="$2" "\${@:4}" | mariadb --no-defaults --socket="$3" --user=root --binary-mode`,
      plan.steps[0].after,
      point,
      `${raw}/mysqld.sock`,
      ...files,
    );
    rawReplayMs = performance.now() - rt0;
  } finally {
    await stop(server.pid);
  }
  const rawMs = performance.now() - rawT0;

  console.log("| figure | autopilot | raw tools | ratio |");
  console.log("| --- | --- | --- | --- |");
  console.log(
    `| archive lag, p50 / p95 (${lags.length} writes, ${runs.length} runs every ${intervalMs / 1000} s) | ${
      s(pct(lags, 0.5))
    } / ${s(pct(lags, 0.95))} | - | - |`,
  );
  console.log(
    `| writer's longest wait during an archiving run / outside one | ${
      Math.round(Math.max(0, ...gapsIn))
    } ms | ${Math.round(Math.max(0, ...gapsOut))} ms (outside) | - |`,
  );
  console.log(`| archiving ${binlogMb} MiB of binlog (one run) | ${s(archiveMs)} | - | - |`);
  const rawRate = replayedMiB / (rawReplayMs / 1000);
  const oursRate = replayedMiB / oursReplayS;
  console.log(
    `| replay rate, MiB of binlog per second (${replayedMiB.toFixed(0)} MiB) | ${
      oursRate.toFixed(1)
    } MiB/s (relay logs) | ${rawRate.toFixed(1)} MiB/s (mariadb-binlog \\| mariadb) | ${
      (oursRate / rawRate * 100).toFixed(0)
    }% |`,
  );
  console.log(
    `| restore ${snapshotMb} MB snapshot + ${replayedMiB.toFixed(0)} MiB of binlog to a GTID | ${
      s(oursMs)
    } | ${s(rawMs)} | ${(rawMs / oursMs * 100).toFixed(0)}% of raw speed |`,
  );
}

await main();
