/**
 * A node in a 1 GiB container on a machine with far more memory: `autopilot pre-start` (the CLI under
 * -P=autopilot) runs inside a memory cgroup limited to 1 GiB and sizes the buffer pool from that limit;
 * mysqld, started in the same cgroup from the my.cnf it wrote, then takes more data than its buffer pool
 * holds and is snapshotted while both health checks keep running beside it, as ContainerPilot would run them,
 * without the kernel's OOM killer touching anything in the cgroup.
 *
 * The "container" is a cgroup v1 memory cgroup or a cgroup v2 child with memory.max, whichever this machine
 * has (harness/cgroup.ts). No network namespace: `ip netns exec` remounts /sys, which hides the cgroup files
 * from the program inside (Deno then reports no limit).
 */
import { assert, assertEquals } from "../unit/assert.ts";
import { MysqlClient } from "../../src/mysql/client.ts";
import { bufferPoolBytes } from "../../src/mysql/mycnf.ts";
import { autopilot, type CliResult } from "./autopilot_cli.ts";
import { delay, freePort, Harness, waitFor } from "./harness/mod.ts";

const MiB = 2 ** 20;
const GiB = 2 ** 30;
/** Rows inserted per statement (each row about 1 KB). */
const CHUNK = 50_000;

function fmtMiB(bytes: number | undefined): string {
  return bytes === undefined ? "?" : `${Math.round(bytes / MiB)} MiB`;
}

async function vmHwm(pid: number): Promise<number | undefined> {
  const kb = /VmHWM:\s+(\d+) kB/.exec(await Deno.readTextFile(`/proc/${pid}/status`).catch(() => ""))?.[1];
  return kb === undefined ? undefined : Number(kb) * 1024;
}

Deno.test("in a 1 GiB container, pre-start sizes the buffer pool from the limit, and mysqld survives a load larger than the pool and a snapshot", async () => {
  const t0 = performance.now();
  await using h = await Harness.create();
  const machine = Deno.systemMemoryInfo().total;
  assert(machine > 2 * GiB, `this test needs a machine with more than 2 GiB (it has ${fmtMiB(machine)})`);
  const cgroup = await h.memoryCgroup("mem", GiB);
  const consul = await h.startConsul();
  const dir = `${h.dir}/node`;
  for (const sub of ["run", "tmp"]) await Deno.mkdir(`${dir}/${sub}`, { recursive: true });
  // INNODB_BUFFER_POOL_SIZE unset: the size comes from the memory the container may use.
  const env = {
    NODE_NAME: "mem1",
    NODE_ADDRESS: "127.0.0.1",
    CONSUL: consul.httpAddr,
    MYSQL_DATADIR: `${dir}/data`,
    MYSQL_CNF: `${dir}/my.cnf`,
    MYSQL_SOCKET: `${dir}/run/mysqld.sock`,
    MYSQL_PORT: String(freePort()),
    MYSQL_OS_USER: "root",
    MYSQL_TMPDIR: `${dir}/tmp`,
    STATE_DIR: `${dir}/state`,
    SNAPSHOT_DIR: `${h.dir}/snapshots`,
    MYSQL_REPL_PASSWORD: "repl-pw-mem",
    LOG_LEVEL: "INFO",
  };
  const inContainer = (args: string[]) => autopilot(args, env, undefined, cgroup.wrapper);

  const pre = await inContainer(["pre-start"]);
  assertEquals(pre.code, 0, pre.stderr);
  const expected = bufferPoolBytes(GiB);
  assert(expected < GiB / 2, `the rule gives ${fmtMiB(expected)} for a 1 GiB container`);
  const line = pre.stderr.split("\n").find((l) => l.includes("innodb_buffer_pool_size =")) ?? "";
  assert(line.includes("[INF]"), `no INFO line naming the buffer pool size:\n${pre.stderr}`);
  assert(
    line.includes(`innodb_buffer_pool_size = ${expected / MiB}M, from the container's memory limit of 1024M`),
    line,
  );
  const cnf = await Deno.readTextFile(env.MYSQL_CNF);
  assertEquals(
    /^innodb_buffer_pool_size = (.*)$/m.exec(cnf)?.[1],
    `${expected / MiB}M`,
    `my.cnf's buffer pool is not derived from the 1 GiB limit (machine: ${fmtMiB(machine)})`,
  );

  const mysqld = await h.group.spawn({
    name: "mariadbd mem1",
    program: "/usr/sbin/mariadbd",
    args: [`--defaults-file=${env.MYSQL_CNF}`],
    logFile: `${dir}/mysqld.log`,
    wrapper: cgroup.wrapper,
  });
  const connect = () =>
    MysqlClient.connect({ socketPath: env.MYSQL_SOCKET, user: "root", connectTimeoutMs: 2000 });
  await using db = await waitFor("mariadbd mem1 to answer", async () => {
    if (mysqld.exited) throw new Error(`mariadbd exited at start: see ${dir}/mysqld.log`);
    return await connect();
  }, { timeoutMs: 30_000 });
  assert(cgroup.pids().includes(mysqld.pid), `mariadbd (pid ${mysqld.pid}) is not in ${cgroup.path}`);
  assertEquals(Number((await db.query("SELECT @@innodb_buffer_pool_size AS b"))[0].b), expected);
  const oomBefore = cgroup.oomKills();
  const first = await inContainer(["health"]);
  assertEquals(first.code, 0, `the first health pass did not make mem1 primary: ${first.stderr}`);

  // From here on the two health checks of containerpilot.json5 (`health` every 5 s, `health --primary`
  // every 2 s) run beside mysqld, here every second each so that they overlap the snapshot; they also keep
  // the session alive. Anonymous memory is sampled meanwhile: unlike the page cache it cannot be dropped
  // (there is no swap).
  const passes: CliResult[] = [];
  let running = true;
  let anonPeak = 0;
  const background = [["health"], ["health", "--primary"]].map(async (args) => {
    while (running) {
      passes.push(await inContainer(args));
      await delay(1000);
    }
  });
  background.push((async () => {
    while (running) {
      anonPeak = Math.max(anonPeak, cgroup.anonBytes());
      await delay(50);
    }
  })());
  let figures = "";
  try {
    // More rows than the pool holds (a 16 KB page takes about 15 of these rows), so every page of it is used.
    const rows = Math.ceil((expected / (16 * 1024)) * 15 * 1.1 / CHUNK) * CHUNK;
    const load0 = performance.now();
    await db.run([
      "CREATE DATABASE memtest",
      "USE memtest", // the seq_ tables are found only with a database selected
      "CREATE TABLE memtest.t (id INT PRIMARY KEY, pad VARCHAR(1000) NOT NULL) ENGINE=InnoDB",
    ]);
    for (let from = 0; from < rows; from += CHUNK) {
      await db.query(
        `INSERT INTO memtest.t SELECT seq, REPEAT('x', 1000) FROM seq_${from + 1}_to_${from + CHUNK}`,
        { timeoutMs: 120_000 },
      );
    }
    const loadMs = performance.now() - load0;
    const snapshot0 = performance.now();
    const snapshot = await inContainer(["backup", "now"]);
    const snapshotMs = performance.now() - snapshot0;
    const [count] = await db.query("SELECT COUNT(*) AS n FROM memtest.t");
    const pages = Object.fromEntries(
      (await db.query("SHOW GLOBAL STATUS LIKE 'Innodb_buffer_pool_pages_%'")).map((r) => [
        String(r.Variable_name).replace("Innodb_buffer_pool_pages_", ""),
        Number(r.Value),
      ]),
    );
    figures = `buffer pool ${fmtMiB(expected)}; ${rows} rows loaded in ${(loadMs / 1000).toFixed(1)} s; ` +
      `snapshot in ${(snapshotMs / 1000).toFixed(1)} s; pool pages data/free/total ` +
      `${pages.data}/${pages.free}/${pages.total}; mysqld peak RSS ${fmtMiB(await vmHwm(mysqld.pid))}; ` +
      `cgroup v${cgroup.version}: anonymous memory peak ${fmtMiB(anonPeak)}, usage peak ` +
      `${fmtMiB(cgroup.peakBytes())} of ${fmtMiB(cgroup.limitBytes)}; ${passes.length} health passes; ` +
      `test ${((performance.now() - t0) / 1000).toFixed(1)} s`;
    // deno-lint-ignore no-console
    console.error(figures);
    assertEquals(snapshot.code, 0, `backup now: ${snapshot.stderr}`);
    assertEquals(Number(count.n), rows);
    assert(
      pages.free < pages.total * 0.05,
      `the load did not fill the buffer pool, so it proves nothing: ${figures}`,
    );
  } catch (e) {
    await Promise.race([mysqld.status, delay(2000)]);
    const kills = cgroup.oomKills() - oomBefore;
    if (mysqld.exited || kills > 0) {
      throw new Error(
        `mariadbd did not survive: it ${mysqld.exited ? "exited" : "still runs"}, ${kills} OOM kill(s) in ` +
          `${cgroup.path}, anonymous memory peak ${fmtMiB(anonPeak)} (${e instanceof Error ? e.message : e})`,
      );
    }
    throw e;
  } finally {
    running = false;
    await Promise.all(background);
  }
  assert(!mysqld.exited, `mariadbd exited (see ${dir}/mysqld.log): ${figures}`);
  assertEquals(cgroup.oomKills(), oomBefore, `the OOM killer killed in ${cgroup.path}: ${figures}`);
  // What is left is for connections' buffers and the kernel: surviving one run is not enough.
  assert(anonPeak <= cgroup.limitBytes * 0.9, `less than 10% of the limit was left: ${figures}`);
  const failed = passes.filter((p) => p.code !== 0);
  assertEquals(failed.length, 0, `health passes failed: ${failed.map((p) => `${p.code}: ${p.stderr}`)}`);
  await using again = await connect();
  assertEquals(Number((await again.query("SELECT 1 AS one"))[0].one), 1);
});
