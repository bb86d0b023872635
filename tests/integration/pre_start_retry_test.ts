/**
 * `autopilot pre-start` as ContainerPilot runs it (no `--once`): it retries a failure by itself, says why in one
 * line per attempt and in `autopilot status --self`, succeeds once the cause is gone, and stops at once on a
 * SIGTERM sent to its process group (as ContainerPilot signals its jobs), leaving nothing half-made. Real Consul
 * and MariaDB servers in network namespaces; the CLI under -P=autopilot.
 */
import { assert, assertEquals } from "../unit/assert.ts";
import { Cluster, type TestNode } from "./cluster.ts";
import { autopilotRunFlags, Harness, REPO_ROOT, type ServerProcess, waitFor } from "./harness/mod.ts";

/** Starts the retrying pre-start in `node`'s namespace, in a process group of its own (setsid, no fork). */
async function startPreStart(c: Cluster, node: TestNode): Promise<{ proc: ServerProcess; log: string }> {
  await c.preparePreStart(node);
  const log = `${node.dir}/pre-start.log`;
  const proc = await c.h.group.spawn({
    name: `autopilot pre-start ${node.name}`,
    program: "/usr/bin/setsid",
    args: [Deno.execPath(), "run", ...autopilotRunFlags(), "mod.ts", "pre-start"],
    logFile: log,
    netns: node.ns,
    cwd: REPO_ROOT,
    env: {
      PATH: Deno.env.get("PATH") ?? "/usr/sbin:/usr/bin:/sbin:/bin",
      DENO_DIR: Deno.env.get("DENO_DIR") ?? "",
      NO_COLOR: "1",
      ...node.env,
    },
  });
  return { proc, log };
}

async function logLines(path: string): Promise<string[]> {
  const text = await Deno.readTextFile(path).catch(() => "");
  return text.split("\n").filter((l) => l.trim() !== "" && !l.includes("experimental feature"));
}

/** Resolves with the exit code, or throws when the process is still running after `ms`. */
async function exitWithin(proc: ServerProcess, ms: number): Promise<number> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${proc.name} still runs after ${ms} ms`)), ms);
  });
  try {
    return (await Promise.race([proc.status, late])).code;
  } finally {
    clearTimeout(timer);
  }
}

const pathExists = (p: string) => Deno.stat(p).then(() => true, () => false);

/** Staging directories a restore or a bootstrap makes beside the datadir (`MYSQL_DATADIR` is `<dir>/data`). */
function stagingLeftovers(node: TestNode): string[] {
  return [...Deno.readDirSync(node.dir)].map((e) => e.name).filter((n) => /^data\.(init|restore)-/.test(n));
}

/** Pids of processes whose command line names `text` (the servers a node's pre-start started). */
function pidsMentioning(text: string): number[] {
  const pids: number[] = [];
  for (const e of Deno.readDirSync("/proc")) {
    if (!/^\d+$/.test(e.name)) continue;
    try {
      if (Deno.readTextFileSync(`/proc/${e.name}/cmdline`).replaceAll("\0", " ").includes(text)) {
        pids.push(Number(e.name));
      }
    } catch {
      // gone meanwhile
    }
  }
  return pids;
}

/** BACKUP_NAME has one-second resolution: wait until the next second so a new snapshot gets a new name. */
const nextSecond = () => new Promise((r) => setTimeout(r, 1100));

Deno.test("pre-start retries a corrupt newest snapshot, says why, stops on SIGTERM, and succeeds once a good one is published", async (t) => {
  await using h = await Harness.create({ nodes: 3 });
  const c = await Cluster.create(h);
  const [n1, n2, n3] = [c.node(1), c.node(2), c.node(3)];
  assertEquals((await c.boot(n1)).code, 0);
  {
    await using app = await c.app(n1);
    await app.run(["CREATE TABLE app.t (id INT PRIMARY KEY)", "INSERT INTO app.t VALUES (1), (2), (3)"]);
  }
  await nextSecond();
  assertEquals((await c.run(n1, ["backup", "now"])).code, 0);
  const name = await c.corruptLastSnapshot(); // the newest snapshot's bytes are damaged in the store
  const stopChecking = c.keepChecking([n1]); // n1 stays primary (its session renewed) throughout
  try {
    const n2PreStart = await startPreStart(c, n2);

    await t.step("each failed attempt logs one line and leaves nothing; status --self says why", async () => {
      await waitFor("n2's second attempt to fail", async () => {
        return (await logLines(n2PreStart.log)).some((l) => l.includes("Attempt 2 failed: "));
      }, { timeoutMs: 30_000, intervalMs: 100 });
      const failed = (await logLines(n2PreStart.log)).filter((l) => l.includes("[ERR]"));
      assertEquals(failed.length, 2, failed.join("\n"));
      for (const [i, line] of failed.entries()) {
        assert(
          line.includes(`Attempt ${i + 1} failed: Snapshot '${name}' is corrupt: its SHA-256 is `),
          line,
        );
        assert(line.endsWith(`; trying again in ${[2, 4][i]} s`), line);
      }
      assertEquals(n2PreStart.proc.exited, false);
      assertEquals(await pathExists(n2.env.MYSQL_DATADIR), false, "a failed attempt left a datadir");
      assertEquals(stagingLeftovers(n2), []);

      const self = await c.run(n2, ["status", "--self"], { LOG_LEVEL: "INFO" });
      assertEquals(self.code, 1, self.stdout);
      assertEquals(self.stderr.split("\n").length, 1, self.stderr);
      assert(
        /^autopilot status: unhealthy: n2: pre-start cannot finish \((2|3) attempts failed since \S+\): Snapshot '/
          .test(self.stderr),
        self.stderr,
      );
      assert(self.stderr.includes("is corrupt: its SHA-256 is "), self.stderr);
      assert(/; next attempt in \d+ s$/.test(self.stderr), self.stderr);
      // The cluster-wide status, run on n2, names it too; run elsewhere it knows nothing of it.
      const all = await c.run(n2, ["status"], { LOG_LEVEL: "INFO" });
      assertEquals(all.code, 1, all.stdout);
      assert(all.stdout.includes("\n  - n2: pre-start cannot finish ("), all.stdout);
      const onN1 = await c.run(n1, ["status"], { LOG_LEVEL: "INFO" });
      assert(!onN1.stdout.includes("pre-start"), onN1.stdout);
    });

    await t.step("SIGTERM to its process group during the backoff ends pre-start at once", async () => {
      const n3PreStart = await startPreStart(c, n3);
      await waitFor("n3's second attempt to fail", async () => {
        return (await logLines(n3PreStart.log)).some((l) => l.includes("Attempt 2 failed: "));
      }, { timeoutMs: 30_000, intervalMs: 50 });
      const record = `${n3.env.STATE_DIR}/pre-start-failure.json`;
      assertEquals(JSON.parse(await Deno.readTextFile(record)).attempt, 2);
      Deno.kill(-n3PreStart.proc.pid, "SIGTERM"); // the waiting is 4 s now
      // Within 3 s, below the 4 s wait it was in (and no third attempt, checked below): it stopped at once.
      const code = await exitWithin(n3PreStart.proc, 3000);
      assertEquals(code, 1);
      const lines = await logLines(n3PreStart.log);
      assert(
        lines.at(-1)!.includes(
          "[WRN] autopilot·pre-start: Stopped by SIGTERM after attempt 2, before pre-start succeeded: " +
            "the datadir is as it was",
        ),
        lines.join("\n"),
      );
      assertEquals(lines.filter((l) => l.includes("Attempt 3")), []);
      assertEquals(await pathExists(n3.env.MYSQL_DATADIR), false);
      assertEquals(stagingLeftovers(n3), []);
      assertEquals(await pathExists(record), false, "the failure record outlived pre-start");
    });

    await t.step("a good snapshot published: the retrying pre-start succeeds by itself", async () => {
      // the damaged one stays as it is: a new snapshot, published in LAST_BACKUP_KEY, replaces it
      await nextSecond();
      const published = await c.run(n1, ["backup", "now"]);
      assertEquals(published.code, 0, published.stderr);
      const code = await exitWithin(n2PreStart.proc, 90_000);
      const lines = await logLines(n2PreStart.log);
      assertEquals(code, 0, lines.join("\n"));
      assert(lines.some((l) => /Attempt \d+ succeeded, after failures since /.test(l)), lines.join("\n"));
      assert(lines.some((l) => l.includes("Restored mysql-backup-")), lines.join("\n"));
      assertEquals(await pathExists(`${n2.env.STATE_DIR}/pre-start-failure.json`), false);
      assertEquals(stagingLeftovers(n2), []);
      await c.startMysqld(n2);
      const health = await c.run(n2, ["health"]);
      assertEquals(health.code, 0, health.stderr);
      {
        await using app = await c.app(n1);
        await app.query("INSERT INTO app.t VALUES (4)");
      }
      await waitFor("row 4 on n2", async () => (await c.rows(n2)) === 4);
    });
  } finally {
    await stopChecking();
  }
});

Deno.test("SIGTERM to pre-start's process group during a bootstrap leaves no half-made datadir", async (t) => {
  await using h = await Harness.create({ nodes: 2 });
  const c = await Cluster.create(h); // an empty Consul: no snapshot, so pre-start initialises a datadir
  const entries = (dir: string) =>
    Array.fromAsync(Deno.readDir(dir)).then((e) => e.map((x) => x.name), () => []);
  // the image's datadir does not exist before the first start; one made beforehand (empty) must stay so
  for (const [k, made] of [[1, false], [2, true]] as const) {
    await t.step(
      made ? "an empty datadir made beforehand stays empty" : "a missing datadir stays missing",
      async () => {
        const node = c.node(k);
        const datadir = node.env.MYSQL_DATADIR;
        if (made) await Deno.mkdir(datadir, { recursive: true });
        const { proc, log } = await startPreStart(c, node);
        try {
          await waitFor(
            "the bootstrap to write the datadir",
            async () => (await entries(datadir)).length > 0,
            {
              timeoutMs: 30_000,
              intervalMs: 20,
            },
          );
          await new Promise((r) => setTimeout(r, 300)); // mariadb-install-db takes over a second: it is mid-way
          Deno.kill(-proc.pid, "SIGTERM");
          const code = await exitWithin(proc, 15_000);
          const lines = await logLines(log);
          assertEquals(code, 1, lines.join("\n"));
          assert(lines.some((l) => l.includes("Stopped by SIGTERM during attempt 1")), lines.join("\n"));
          // The bootstrap server the installer started may outlive it for a moment: once it is gone too, nothing
          // is left.
          await waitFor(
            "the bootstrap server to exit",
            () => pidsMentioning(node.env.MYSQL_CNF).length === 0,
            {
              timeoutMs: 15_000,
            },
          );
          await new Promise((r) => setTimeout(r, 500));
          if (made) assertEquals(await entries(datadir), [], "a half-made datadir was left behind");
          else assertEquals(await pathExists(datadir), false, "a half-made datadir was left behind");
          // and the next start initialises it
          const again = await c.preStart(node);
          assertEquals(again.code, 0, again.stderr);
          assert(await pathExists(`${datadir}/mysql`), "no datadir after a clean start");
        } finally {
          // Servers a pre-start under test started and left running: stop them, by pid.
          for (const pid of pidsMentioning(node.env.MYSQL_CNF)) {
            try {
              Deno.kill(pid, "SIGKILL");
            } catch {
              // gone
            }
          }
        }
      },
    );
  }
});
