/**
 * `scripts/local_cluster.ts`, the developer's local cluster, run as a user would run it: a subprocess that
 * brings up two nodes, prints how to reach them, keeps them running (a killed mysqld is restarted, as
 * ContainerPilot's `restarts: unlimited` does) and, at the end of `--duration`, stops every server it started
 * and removes its namespaces.
 */
import { assert, assertEquals } from "../unit/assert.ts";
import { MysqlClient } from "../../src/mysql/client.ts";
import { Secret } from "../../src/config.ts";
import { autopilot } from "./autopilot_cli.ts";
import { ip, REPO_ROOT, run, StopWaiting, waitFor } from "./harness/mod.ts";

/** True while `pid` runs one of the given programs (a reused pid running something else does not count). */
function running(pid: number, programs: string[]): boolean {
  try {
    const argv0 = Deno.readTextFileSync(`/proc/${pid}/cmdline`).split("\0")[0];
    const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
    const state = stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3);
    return state !== "Z" && programs.some((p) => argv0.endsWith(p));
  } catch {
    return false;
  }
}

function match(text: string, re: RegExp, what: string): RegExpMatchArray {
  const m = text.match(re);
  assert(m !== null, `no ${what} in the output:\n${text}`);
  return m;
}

/** `autopilot status` from the host namespace with the env file the script printed (as status_test does). */
async function statusFromHost(envFile: string): Promise<{ code: number; stdout: string; stderr: string }> {
  const vars = Object.fromEntries(
    (await Deno.readTextFile(envFile)).split("\n").filter((l) => l.includes("=")).map((
      l,
    ) => [l.slice(0, l.indexOf("=")), l.slice(l.indexOf("=") + 1)]),
  );
  return await autopilot(["status"], { CONSUL: vars.CONSUL, MYSQL_REPL_PASSWORD: vars.MYSQL_REPL_PASSWORD });
}

Deno.test("scripts/local_cluster.ts brings up a healthy cluster, keeps it up, and removes all of it at the end", async () => {
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      "scripts/local_cluster.ts",
      "--nodes",
      "2",
      "--duration",
      "35",
      "--snapshot-interval",
      "10",
      "--status-interval",
      "10",
    ],
    cwd: REPO_ROOT,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  let out = "";
  let err = "";
  let exited = false;
  const reading = Promise.all([
    child.stdout.pipeThrough(new TextDecoderStream()).pipeTo(
      new WritableStream({ write: (s) => void (out += s) }),
    ),
    child.stderr.pipeThrough(new TextDecoderStream()).pipeTo(
      new WritableStream({ write: (s) => void (err += s) }),
    ),
  ]);
  const status = child.status.then((s) => {
    exited = true;
    return s;
  });
  try {
    await waitFor("the cluster to be healthy", () => {
      if (exited) throw new StopWaiting(`local_cluster.ts exited early:\n${out}\n${err}`);
      return out.includes("\ncluster is healthy (2 nodes");
    }, { timeoutMs: 180_000, intervalMs: 200 });
    await waitFor("the details after the healthy line", () => out.includes("\nstop: "), { timeoutMs: 5000 });

    // What it printed: both nodes with their address, namespace and mysqld pid; Consul; how to connect.
    const nodes = [
      ...out.matchAll(
        /^ {2}(n\d) {2}(10\.99\.\d+\.\d+):3306 {2}(primary|replica) {2}netns (\S+) {2}mysqld pid (\d+)$/gm,
      ),
    ]
      .map((m) => ({ name: m[1], address: m[2], role: m[3], ns: m[4], pid: Number(m[5]) }));
    assertEquals(nodes.map((n) => [n.name, n.role]), [["n1", "primary"], ["n2", "replica"]], out);
    const prefix = nodes[0].ns.replace(/_n1$/, "");
    assert(/^apt[a-z0-9]{4}$/.test(prefix), nodes[0].ns);
    const consulPid = Number(match(out, /^ {2}consul {4}pid (\d+) /m, "consul pid")[1]);
    const envFile = match(out, /\(set -a; \. (\S+\/status\.env);/, "status env file")[1];
    assertEquals((await Deno.stat(envFile)).mode! & 0o777, 0o600);
    const runDir = envFile.replace(/\/status\.env$/, "");
    assert(out.includes(`mariadb -h ${nodes[0].address} -u app -p app\n`), out);
    const appPassword = match(out, /app password: ([0-9a-f]+) {3}\(shown once/, "app password")[1];
    assertEquals(err, "", "nothing on stderr while it runs");

    // `autopilot status` as the printed instructions say: exit 0 on a healthy cluster.
    const st = await statusFromHost(envFile);
    assertEquals(st.code, 0, `${st.stdout}\n${st.stderr}`);
    assert(st.stdout.startsWith(`primary:   n1 (${nodes[0].address}:3306)\n`), st.stdout);

    // The app user with the printed password writes on the primary and reads the row on the replica.
    const connect = (address: string) =>
      MysqlClient.connect({
        host: address,
        port: 3306,
        user: "app",
        password: new Secret(appPassword),
        connectTimeoutMs: 2000,
      });
    {
      await using db = await connect(nodes[0].address);
      await db.run(["CREATE TABLE app.t (id INT PRIMARY KEY)", "INSERT INTO app.t VALUES (1)"]);
    }
    await waitFor("the row on n2", async () => {
      await using db = await connect(nodes[1].address);
      return Number((await db.query("SELECT COUNT(*) AS n FROM app.t"))[0].n) === 1;
    });

    // The replica's mysqld dies: the script starts it again, and the cluster is healthy again.
    Deno.kill(nodes[1].pid, "SIGKILL");
    const restarted = Number(
      (await waitFor("n2's mysqld restarted", () => out.match(/n2: mysqld restarted \(pid (\d+)\)/), {
        timeoutMs: 30_000,
      }))[1],
    );
    assert(restarted !== nodes[1].pid);
    await waitFor("status exit 0 after the restart", async () => {
      if (exited) {
        throw new StopWaiting(`local_cluster.ts exited before the cluster was healthy again:\n${out}`);
      }
      const st = await statusFromHost(envFile);
      if (st.code === 0) return true;
      // the reason is in the last error if this times out: the status and n2's recent hook output
      const log = await Deno.readTextFile(`${runDir}/node2/autopilot.log`).catch((e) => String(e));
      throw new Error(
        `status exit ${st.code}:\n${st.stdout}${st.stderr}\nn2's log (end):\n${log.slice(-3000)}`,
      );
    }, { timeoutMs: 30_000, intervalMs: 1000 });

    // At the end of --duration it stops by itself, exit 0, leaving nothing behind.
    const s = await status;
    await reading;
    assertEquals(s.code, 0, `${out}\n${err}`);
    assertEquals(err, "");
    assert(out.includes("stopping (--duration 35 s elapsed)"), out);
    assert(out.includes("--- autopilot status (exit 0) ---"), "the periodic status was printed");
    const summary = (name: string) =>
      match(
        out,
        new RegExp(
          `${name}: health (\\d+) runs \\((\\d+) failed\\), snapshot (\\d+) runs \\((\\d+) failed\\), ` +
            `on-change \\d+ runs, mysqld restarts (\\d+)`,
        ),
        `${name}'s summary`,
      ).slice(1).map(Number);
    const [, , n1Snapshots, n1SnapshotsFailed, n1Restarts] = summary("n1");
    const [, , n2Snapshots, n2SnapshotsFailed, n2Restarts] = summary("n2");
    assert(n1Snapshots >= 1 && n2Snapshots >= 1, "snapshot ran every --snapshot-interval");
    assertEquals([n1SnapshotsFailed, n2SnapshotsFailed, n1Restarts, n2Restarts], [0, 0, 0, 1]);

    const namespaces = (await run(await ip(), ["netns", "list"])).stdout;
    assert(!namespaces.includes(`${prefix}_`), `namespaces left:\n${namespaces}`);
    const links = (await run(await ip(), ["-o", "link", "show"])).stdout;
    assert(!links.includes(`${prefix}-host`), "the host leg is left");
    for (const pid of [consulPid, ...nodes.map((n) => n.pid), restarted]) {
      assert(!running(pid, ["consul", "mariadbd"]), `pid ${pid} still runs`);
    }
    const stopped = match(out, /stopped: pids ([\d ]+);/, "stopped pids")[1].split(" ").map(Number);
    for (const pid of [consulPid, ...nodes.map((n) => n.pid), restarted]) {
      assert(stopped.includes(pid), `${pid}`);
    }
    let dirLeft = true;
    try {
      await Deno.stat(runDir);
    } catch (e) {
      if (e instanceof Deno.errors.NotFound) dirLeft = false;
    }
    assert(!dirLeft, `${runDir} is left`);
  } finally {
    if (!exited) {
      child.kill("SIGTERM"); // it stops its cluster in order, then exits
      await status;
    }
    await reading.catch(() => {});
  }
});
