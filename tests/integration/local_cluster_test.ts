/**
 * `scripts/local_cluster.ts`, the developer's local cluster, run as a user would run it: a subprocess that
 * brings up two nodes with the settings of an env file (compose's `env_file` syntax), prints how to reach
 * them and how to run `autopilot` on a node (the test runs those very lines), keeps them running (a killed
 * mysqld is restarted, as ContainerPilot's `restarts: unlimited` does) and, on SIGTERM or at the end of
 * `--duration`, stops every server it started and removes its namespaces. A bad setting stops it before
 * anything starts.
 *
 * The two-node run is stopped with SIGTERM once its checks are done (its `--duration` is only a safety net);
 * the `--duration` stop itself is tested on one node with a short duration. Every wait stops at once when the
 * script has exited.
 *
 * @module
 */
import { assert, assertEquals } from "../unit/assert.ts";
import { MysqlClient } from "../../src/mysql/client.ts";
import { Secret } from "../../src/config.ts";
import { PASSWORDS } from "../../scripts/local_cluster_env.ts";
import { ip, randomSecret, REPO_ROOT, run, StopWaiting, waitFor, type WaitOptions } from "./harness/mod.ts";

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

/** The script's own environment: this process's, without the passwords it would take from it. */
function scriptEnv(): Record<string, string> {
  const env = Deno.env.toObject();
  for (const name of PASSWORDS) delete env[name];
  return env;
}

/** Runs a command line the script printed, as a user would paste it into a root shell. */
async function shell(line: string): Promise<{ code: number; stdout: string; stderr: string }> {
  const out = await new Deno.Command("sh", { args: ["-c", line], stdin: "null" }).output();
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

/** How long a stopping script may take to stop its cluster and exit (pre-stop, mysqld, Consul, namespaces). */
const STOP_TIMEOUT_MS = 180_000;

/** scripts/local_cluster.ts running as a subprocess (its launcher), its output collected as it comes. */
class ScriptRun implements AsyncDisposable {
  out = "";
  err = "";
  exited = false;
  readonly status: Promise<Deno.CommandStatus>;
  readonly #child: Deno.ChildProcess;
  readonly #reading: Promise<unknown>;

  constructor(args: string[]) {
    this.#child = new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", "scripts/local_cluster.ts", ...args],
      cwd: REPO_ROOT,
      clearEnv: true,
      env: scriptEnv(),
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    this.#reading = Promise.all([
      this.#child.stdout.pipeThrough(new TextDecoderStream()).pipeTo(
        new WritableStream({ write: (s) => void (this.out += s) }),
      ),
      this.#child.stderr.pipeThrough(new TextDecoderStream()).pipeTo(
        new WritableStream({ write: (s) => void (this.err += s) }),
      ),
    ]);
    this.status = this.#child.status.then((s) => {
      this.exited = true;
      return s;
    });
  }

  #exitedWhile(what: string): StopWaiting {
    return new StopWaiting(`local_cluster.ts exited while waiting for ${what}:\n${this.out}\n${this.err}`);
  }

  /** {@linkcode waitFor}, which stops at once when the script has exited (its namespaces are gone then). */
  async waitFor<T>(what: string, check: () => T | Promise<T>, opts?: WaitOptions): Promise<NonNullable<T>> {
    try {
      return await waitFor(what, () => {
        if (this.exited) throw this.#exitedWhile(what);
        return check();
      }, opts);
    } catch (e) {
      if (this.exited && !(e instanceof StopWaiting)) throw this.#exitedWhile(what);
      throw e;
    }
  }

  /** Waits (at most `timeoutMs`) for the script to exit and for all of its output. */
  async exit(timeoutMs = STOP_TIMEOUT_MS): Promise<Deno.CommandStatus> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const s = await Promise.race([
      this.status,
      new Promise<undefined>((r) => timer = setTimeout(() => r(undefined), timeoutMs)),
    ]);
    clearTimeout(timer);
    if (s === undefined) {
      throw new Error(`local_cluster.ts did not exit within ${timeoutMs} ms:\n${this.out}`);
    }
    await this.#reading;
    return s;
  }

  /** Stops the script if it still runs: SIGTERM to the launcher, then SIGKILL if it does not exit in time. */
  async [Symbol.asyncDispose](): Promise<void> {
    if (!this.exited) {
      this.#child.kill("SIGTERM"); // it stops its cluster in order, then exits
      await this.exit().catch(() => {
        if (!this.exited) this.#child.kill("SIGKILL");
      });
    }
    await this.status;
    await this.#reading.catch(() => {});
  }
}

/** What the script printed once the cluster was healthy: the nodes, Consul, the run dir. */
function healthyBlock(out: string) {
  const nodes = [
    ...out.matchAll(
      /^ {2}(n\d) {2}(10\.99\.\d+\.\d+):3306 {2}(primary|replica) {2}netns (\S+) {2}mysqld pid (\d+)$/gm,
    ),
  ]
    .map((m) => ({ name: m[1], address: m[2], role: m[3], ns: m[4], pid: Number(m[5]) }));
  assert(nodes.length > 0, `no nodes in the output:\n${out}`);
  const prefix = nodes[0].ns.replace(/_n1$/, "");
  assert(/^apt[a-z0-9]{4}$/.test(prefix), nodes[0].ns);
  const [, consulPid, consulAddr] = match(out, /^ {2}consul {4}pid (\d+) {2}http:\/\/(\S+) /m, "consul");
  const socket = match(out, /over a node's socket: mariadb -S (\S+) -u root\n/, "root socket")[1];
  const runDir = socket.replace(/\/node\d\/run\/mysqld\.sock$/, "");
  assert(runDir !== socket, socket);
  const stopPid = Number(match(out, /^stop: Ctrl-C, or kill -TERM (\d+);/m, "the stop command")[1]);
  return { nodes, prefix, consulPid: Number(consulPid), consulAddr, runDir, stopPid };
}

/** After the script exited: every server it started is stopped, its namespaces, host leg and run dir gone. */
async function assertAllRemoved(out: string, block: ReturnType<typeof healthyBlock>, more: number[] = []) {
  const namespaces = (await run(await ip(), ["netns", "list"])).stdout;
  assert(!namespaces.includes(`${block.prefix}_`), `namespaces left:\n${namespaces}`);
  const links = (await run(await ip(), ["-o", "link", "show"])).stdout;
  assert(!links.includes(`${block.prefix}-host`), "the host leg is left");
  const pids = [block.consulPid, ...block.nodes.map((n) => n.pid), ...more];
  for (const pid of pids) assert(!running(pid, ["consul", "mariadbd"]), `pid ${pid} still runs`);
  const stopped = match(out, /stopped: pids ([\d ]+);/, "stopped pids")[1].split(" ").map(Number);
  for (const pid of pids) assert(stopped.includes(pid), `${pid}`);
  let dirLeft = true;
  try {
    await Deno.stat(block.runDir);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) dirLeft = false;
  }
  assert(!dirLeft, `${block.runDir} is left`);
}

/** Runs scripts/local_cluster.ts to its end (for runs that stop before anything starts). */
async function script(args: string[]): Promise<{ code: number; stdout: string; stderr: string[] }> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "scripts/local_cluster.ts", ...args],
    cwd: REPO_ROOT,
    clearEnv: true,
    env: scriptEnv(),
    stdin: "null",
    signal: AbortSignal.timeout(60_000),
  }).output();
  const dec = new TextDecoder();
  const stderr = dec.decode(out.stderr).split("\n").filter((l) => l !== "");
  return { code: out.code, stdout: dec.decode(out.stdout), stderr };
}

Deno.test("scripts/local_cluster.ts brings up a healthy cluster with an env file's settings, keeps it up, and on SIGTERM removes all of it", async () => {
  // An env file as a user would write it for compose: a service name, semi-sync, an application account,
  // passwords with quotes, '$' and '#' in them, a comment, the 'export' and 'KEY: VALUE' forms, and a
  // path the local cluster owns.
  const dir = await Deno.makeTempDir({ prefix: "autopilot-local-cluster-" });
  try {
    const tag = randomSecret(4);
    const appPassword = `it's-${tag} $x #1`;
    const replPassword = `r"${tag}\\ $ pw`;
    const envFile = `${dir}/test.env`;
    await Deno.writeTextFile(
      envFile,
      [
        "# the local cluster's integration test",
        "SERVICE_NAME=shop",
        "SEMI_SYNC=true",
        "export MYSQL_USER=shopper",
        "MYSQL_DATABASE: shop",
        `MYSQL_PASSWORD='it\\'s-${tag} $x #1'`,
        `MYSQL_REPL_PASSWORD="r\\"${tag}\\\\ $$ pw"   # a comment`,
        "MYSQL_DATADIR=/not/used",
        "",
      ].join("\n"),
      { mode: 0o600 },
    );
    // --duration is only a safety net, far beyond the bounded waits below: the test stops it with SIGTERM.
    await using script = new ScriptRun([
      "--env-file",
      envFile,
      "--nodes",
      "2",
      "--duration",
      "900",
      "--snapshot-interval",
      "10",
      "--status-interval",
      "10",
    ]);
    await script.waitFor(
      "the cluster to be healthy",
      () => script.out.includes("\ncluster is healthy (2 nodes"),
      {
        timeoutMs: 180_000,
        intervalMs: 200,
      },
    );
    await script.waitFor("the details after the healthy line", () => script.out.includes("\nstop: "), {
      timeoutMs: 5000,
    });
    const out = script.out;

    // It said which file it read, and that the file's MYSQL_DATADIR is not used.
    assert(out.includes(`] env file ${envFile}: 7 variables read\n`), out);
    assert(
      out.includes(`] notice: ${envFile}:8 sets MYSQL_DATADIR: not used, the local cluster sets it`),
      out,
    );
    assert(/cluster is healthy \(2 nodes, up in \d+ s, SERVICE_NAME shop\)\n/.test(out), out);
    assert(out.includes("\nstops by itself in 900 s (--duration)\n"), out);

    // What it printed: both nodes with their address, namespace and mysqld pid; Consul; how to connect.
    const block = healthyBlock(out);
    const { nodes, runDir } = block;
    assertEquals(nodes.map((n) => [n.name, n.role]), [["n1", "primary"], ["n2", "replica"]], out);
    assert(out.includes(`mariadb -h ${nodes[0].address} -u shopper -p shop\n`), out);
    assert(out.includes(`shopper password: the MYSQL_PASSWORD in ${envFile}\n`), out);
    for (const k of [1, 2]) {
      assert(
        out.includes(`  n${k}: ${runDir}/node${k}/autopilot.log (hooks), ${runDir}/node${k}/mysqld.log\n`),
      );
      assertEquals((await Deno.stat(`${runDir}/node${k}/autopilot.env`)).mode! & 0o777, 0o600);
    }
    const command = (what: string) => {
      const line = match(out, new RegExp(`^ {2}${what}: +(.+)$`, "m"), `the '${what}' command`)[1];
      assert(
        line.startsWith(`ip netns exec ${nodes[0].ns} sh -c '. ${runDir}/node1/autopilot.env && `),
        line,
      );
      return line;
    };
    assertEquals(script.err, "", "nothing on stderr while it runs");

    // The file's settings reached the nodes: Consul's keys have the SERVICE_NAME prefix, semi-sync is on.
    const keys = await (await fetch(`http://${block.consulAddr}/v1/kv/?keys`)).json() as string[];
    assert(keys.includes("shop-primary") && keys.includes("shop-last-backup"), keys.join(" "));
    assert(!keys.some((k) => k.startsWith("mysql-")), keys.join(" "));
    const semiSync = async (k: number, variable: string, kind: "VARIABLES" | "STATUS") => {
      await using db = await MysqlClient.connect({
        socketPath: `${runDir}/node${k}/run/mysqld.sock`,
        user: "root",
        connectTimeoutMs: 2000,
      });
      return String((await db.query(`SHOW GLOBAL ${kind} LIKE '${variable}'`))[0]?.Value);
    };
    assertEquals(await semiSync(1, "rpl_semi_sync_master_enabled", "VARIABLES"), "ON");
    assertEquals(await semiSync(2, "rpl_semi_sync_slave_enabled", "VARIABLES"), "ON");
    await script.waitFor(
      "n2 acknowledging n1's transactions",
      async () => await semiSync(1, "Rpl_semi_sync_master_clients", "STATUS") === "1",
    );

    // `autopilot status` as printed: exit 0 on a healthy cluster (it read the node's file: the replication
    // password, with its quotes and '$', reaches the servers intact).
    const st = await shell(command("status"));
    assertEquals(st.code, 0, `${st.stdout}\n${st.stderr}`);
    assert(st.stdout.startsWith(`primary:   n1 (${nodes[0].address}:3306)\n`), st.stdout);

    // The replication password is the double-quoted value as compose reads it.
    {
      await using db = await MysqlClient.connect({
        host: nodes[1].address,
        port: 3306,
        user: "repl",
        password: new Secret(replPassword),
        connectTimeoutMs: 2000,
      });
      await db.query("SELECT 1");
    }

    // The app user with the file's password writes on the primary and reads the row on the replica.
    const connect = (address: string) =>
      MysqlClient.connect({
        host: address,
        port: 3306,
        user: "shopper",
        password: new Secret(appPassword),
        connectTimeoutMs: 2000,
      });
    {
      await using db = await connect(nodes[0].address);
      await db.run(["CREATE TABLE shop.t (id INT PRIMARY KEY)", "INSERT INTO shop.t VALUES (1)"]);
    }
    await script.waitFor("the row on n2", async () => {
      await using db = await connect(nodes[1].address);
      return Number((await db.query("SELECT COUNT(*) AS n FROM shop.t"))[0].n) === 1;
    });

    // `autopilot backup now` and `autopilot switchover` as printed, on the primary n1.
    const backup = await shell(command("backup now"));
    assertEquals(backup.code, 0, `${backup.stdout}\n${backup.stderr}`);
    assert(/Snapshot shop-backup-\S+ published/.test(backup.stderr), backup.stderr);
    const switchover = await shell(command("switchover"));
    assertEquals(switchover.code, 0, `${switchover.stdout}\n${switchover.stderr}`);
    assert(switchover.stdout.startsWith("switchover: n1 -> n2"), switchover.stdout);
    await script.waitFor("n2 as the primary in status", async () => {
      const st = await shell(command("status"));
      return st.code === 0 && st.stdout.startsWith(`primary:   n2 (${nodes[1].address}:3306)\n`);
    }, { timeoutMs: 30_000, intervalMs: 1000 });

    // The replica's mysqld (n1's, now) dies: the script starts it again, and the cluster is healthy again.
    Deno.kill(nodes[0].pid, "SIGKILL");
    const restarted = Number(
      (await script.waitFor(
        "n1's mysqld restarted",
        () => script.out.match(/n1: mysqld restarted \(pid (\d+)\)/),
        { timeoutMs: 30_000 },
      ))[1],
    );
    assert(restarted !== nodes[0].pid);
    await script.waitFor("status exit 0 after the restart", async () => {
      const st = await shell(command("status"));
      if (st.code === 0) return true;
      // the reason is in the last error if this times out: the status and n1's recent hook output
      const log = await Deno.readTextFile(`${runDir}/node1/autopilot.log`).catch((e) => String(e));
      throw new Error(
        `status exit ${st.code}:\n${st.stdout}${st.stderr}\nn1's log (end):\n${log.slice(-3000)}`,
      );
    }, { timeoutMs: 30_000, intervalMs: 1000 });

    // The periodic jobs ran (every 10 s): the status was printed and each node ran `snapshot`. These are
    // conditions, not a wait for time to pass: they are usually met already.
    await script.waitFor(
      "the periodic status",
      () => script.out.includes("--- autopilot status (exit 0) ---"),
      {
        timeoutMs: 30_000,
        intervalMs: 500,
      },
    );
    for (const k of [1, 2]) {
      await script.waitFor(`a snapshot run on n${k}`, async () => {
        const log = await Deno.readTextFile(`${runDir}/node${k}/autopilot.log`);
        return /^\S+ snapshot: autopilot snapshot -> exit \d+$/m.test(log);
      }, { timeoutMs: 30_000, intervalMs: 500 });
    }

    // SIGTERM, as the printed `stop:` line says: it stops in order, exit 0, leaving nothing behind, and no
    // password was shown.
    assert(running(block.stopPid, [Deno.execPath()]), `pid ${block.stopPid} of the stop line is not deno`);
    Deno.kill(block.stopPid, "SIGTERM");
    const s = await script.exit();
    const all = script.out;
    assertEquals(s.code, 0, `${all}\n${script.err}`);
    assertEquals(script.err, "");
    assert(!all.includes(tag), "a password from the env file was printed");
    assert(all.includes("] stopping (signal)\n"), all);
    assert(!all.includes("stopping (--duration"), all);
    const summary = (name: string) =>
      match(
        all,
        new RegExp(
          `${name}: health (\\d+) runs \\((\\d+) failed\\), snapshot (\\d+) runs \\((\\d+) failed\\), ` +
            `on-change \\d+ runs, mysqld restarts (\\d+)`,
        ),
        `${name}'s summary`,
      ).slice(1).map(Number);
    const [, , n1Snapshots, n1SnapshotsFailed, n1Restarts] = summary("n1");
    const [, , n2Snapshots, n2SnapshotsFailed, n2Restarts] = summary("n2");
    assert(n1Snapshots >= 1 && n2Snapshots >= 1, "snapshot ran every --snapshot-interval");
    assertEquals([n1SnapshotsFailed, n2SnapshotsFailed, n1Restarts, n2Restarts], [0, 0, 1, 0]);
    await assertAllRemoved(all, block, [restarted]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("scripts/local_cluster.ts --duration: one node stops by itself when the duration has elapsed and removes all of it", async () => {
  const dir = await Deno.makeTempDir({ prefix: "autopilot-local-cluster-" });
  try {
    await Deno.writeTextFile(`${dir}/solo.env`, "SERVICE_NAME=solo\n", { mode: 0o600 });
    const durationS = 3;
    await using script = new ScriptRun([
      "--env-file",
      `${dir}/solo.env`,
      "--nodes",
      "1",
      "--duration",
      String(durationS),
      "--status-interval",
      "0",
    ]);
    await script.waitFor("the cluster to be healthy", () => script.out.includes("\nstop: "), {
      timeoutMs: 180_000,
      intervalMs: 100,
    });
    const healthyAt = performance.now();
    const block = healthyBlock(script.out);
    assertEquals(block.nodes.map((n) => [n.name, n.role]), [["n1", "primary"]], script.out);
    assert(script.out.includes(`\nstops by itself in ${durationS} s (--duration)\n`), script.out);

    // Nothing is sent to it: it stops by itself, not before the duration has elapsed (less the time this
    // test took to see the healthy line), exit 0.
    const s = await script.exit();
    const ranMs = performance.now() - healthyAt;
    assertEquals(s.code, 0, `${script.out}\n${script.err}`);
    assertEquals(script.err, "");
    assert(script.out.includes(`] stopping (--duration ${durationS} s elapsed)\n`), script.out);
    assert(!script.out.includes("stopping (signal)"), script.out);
    assert(ranMs >= (durationS - 1) * 1000, `it stopped ${Math.round(ranMs)} ms after it was healthy`);
    await assertAllRemoved(script.out, block);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("scripts/local_cluster.ts stops before anything starts, with one line and exit 2, on a bad env file", async () => {
  const dir = await Deno.makeTempDir({ prefix: "autopilot-local-cluster-" });
  try {
    // A bad value: the line `autopilot config` prints for it.
    await Deno.writeTextFile(`${dir}/bad.env`, "SERVICE_NAME=shop\nSEMI_SYNC=true\nSESSION_TTL=abc\n");
    let r = await script(["--env-file", `${dir}/bad.env`, "--nodes", "1"]);
    assertEquals([r.code, r.stdout, r.stderr], [2, "", [
      "autopilot: invalid configuration: SESSION_TTL must be a duration such as 30, 90s, 15m, 24h or 1h30m " +
      "(a plain number is seconds): current value is 'abc'",
    ]]);
    // A file that is not there.
    r = await script(["--env-file", `${dir}/none.env`]);
    assertEquals([r.code, r.stdout, r.stderr], [2, "", [
      `local_cluster: env file ${dir}/none.env: no such file`,
    ]]);
    // A value compose would read differently: the line and the name, not the value.
    await Deno.writeTextFile(`${dir}/dollar.env`, "# passwords\nMYSQL_PASSWORD=pw$secret\n");
    r = await script(["--env-file", `${dir}/dollar.env`]);
    assertEquals([r.code, r.stdout, r.stderr.length], [2, "", 1], r.stderr.join("\n"));
    assert(
      r.stderr[0].startsWith(
        `local_cluster: env file ${dir}/dollar.env: line 2: MYSQL_PASSWORD: the value holds`,
      ),
      r.stderr[0],
    );
    assert(!r.stderr[0].includes("secret"), r.stderr[0]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
