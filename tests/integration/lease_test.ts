/**
 * Fencing inside the server (src/mysql/lease.ts) on real MariaDB servers: the primary's health passes extend
 * the lease `autopilot.lease` without the binlog (no GTID, nothing replicated), and the event
 * `autopilot.lease_fence` turns the server read-only by itself once the lease lapses, whatever the hooks are
 * doing: frozen by SIGSTOP, or not running at all behind a cut link.
 *
 * The figures each test measures are printed (`[lease] ...`).
 */
import { assert, assertEquals } from "../unit/assert.ts";
import { loadConfig } from "../../src/config.ts";
import type { MysqlClient } from "../../src/mysql/client.ts";
import { clearLease, extendLease, installLease, leaseMsFor, leaseState } from "../../src/mysql/lease.ts";
import { Cluster, type TestNode } from "./cluster.ts";
import { autopilotRunFlags, delay, Harness, ip, REPO_ROOT, waitFor } from "./harness/mod.ts";

/** The default SESSION_TTL (no test here sets it) and the lease it gives. */
const TTL_SECONDS = loadConfig((n) => ({ MYSQL_REPL_PASSWORD: "x" } as Record<string, string>)[n], {
  hostname: () => "h",
}).session.ttlSeconds;
const LEASE_MS = leaseMsFor(TTL_SECONDS);
/** The event runs every second; the scheduler may start it a little late on a loaded machine. */
const FENCE_SLACK_MS = 1500;
/** ContainerPilot's health interval in containerpilot.json5. */
const HEALTH_INTERVAL_MS = 5000;

function report(line: string): void {
  // deno-lint-ignore no-console
  console.log(`[lease] ${line}`);
}

async function readOnly(db: MysqlClient): Promise<boolean> {
  return Number((await db.query("SELECT @@GLOBAL.read_only AS ro"))[0].ro) === 1;
}

/**
 * `autopilot health` on a node as a child process of this test, as autopilot_cli.ts runs it (autopilotRunFlags(),
 * in the node's namespace), but left running so that it can be frozen. `ip netns exec` execs, so the pid is
 * the pass itself.
 */
async function spawnPass(node: TestNode): Promise<Deno.ChildProcess> {
  return new Deno.Command(await ip(), {
    args: ["netns", "exec", node.ns, Deno.execPath(), "run", ...autopilotRunFlags(), "mod.ts", "health"],
    cwd: REPO_ROOT,
    clearEnv: true,
    env: {
      PATH: Deno.env.get("PATH") ?? "/usr/sbin:/usr/bin:/sbin:/bin",
      DENO_DIR: Deno.env.get("DENO_DIR") ?? "",
      NO_COLOR: "1",
      ...node.env,
    },
    stdin: "null",
    stdout: "null",
    stderr: "null",
  }).spawn();
}

/** Ends a pass this test spawned, frozen or not, and waits until it is gone. */
async function killPass(pass: Deno.ChildProcess): Promise<void> {
  try {
    pass.kill("SIGKILL"); // SIGKILL works on a stopped process
  } catch {
    // already gone
  }
  await pass.status;
}

/** Every `intervalMs` reads read_only on each server; records the moments when two or more were writable. */
function watchWritable(servers: ReadonlyMap<string, MysqlClient>, intervalMs = 50) {
  const writable = new Map<string, boolean>();
  const overlaps: { at: number; nodes: string[] }[] = [];
  const changes: { at: number; node: string; writable: boolean }[] = [];
  let running = true;
  let errors = 0;
  const done = (async () => {
    while (running) {
      const at = Date.now();
      await Promise.all([...servers].map(async ([name, db]) => {
        try {
          const w = !(await readOnly(db));
          if (writable.get(name) !== w) changes.push({ at, node: name, writable: w });
          writable.set(name, w);
        } catch {
          errors++;
        }
      }));
      const both = [...writable].filter(([, w]) => w).map(([n]) => n);
      if (both.length > 1) overlaps.push({ at, nodes: both });
      await delay(intervalMs);
    }
  })();
  return {
    stop: async () => {
      running = false;
      await done;
      return { overlaps, changes, errors };
    },
  };
}

Deno.test("the lease is written without the binlog (no GTID, nothing replicated); a restored replica keeps the event and is fenced", async () => {
  await using h = await Harness.create({ nodes: 2 });
  const c = await Cluster.create(h);
  const [n1, n2] = [c.node(1), c.node(2)];
  assertEquals((await c.boot(n1)).code, 0);
  // n2 is restored from n1's first snapshot: before any pass runs there, the event came with the copy,
  // enabled (not SLAVESIDE_DISABLED) although another server created it.
  assertEquals((await c.preStart(n2)).code, 0);
  await c.startMysqld(n2);
  await using replica = await c.root(n2);
  const fenceEvent = async () =>
    (await replica.query(
      "SELECT STATUS AS status, ORIGINATOR AS originator, @@server_id AS id FROM information_schema.EVENTS " +
        "WHERE EVENT_SCHEMA = 'autopilot' AND EVENT_NAME = 'lease_fence'",
    ))[0];
  const restored = await fenceEvent();
  assertEquals(restored?.status, "ENABLED", JSON.stringify(restored));
  assert(String(restored.originator) !== String(restored.id), `not the copy's: ${JSON.stringify(restored)}`);
  assertEquals((await c.run(n2, ["health"])).code, 0);
  assertEquals((await fenceEvent())?.status, "ENABLED", "following disabled the event");
  await using primary = await c.root(n1);
  const gtids = async (db: MysqlClient) =>
    (await db.query(
      "SELECT @@gtid_binlog_state AS state, @@gtid_current_pos AS current, @@gtid_slave_pos AS slave",
    ))[0];
  const before = [await gtids(primary), await gtids(replica)];
  assert(String(before[0].state) !== "", "the bootstrap made no GTID: nothing to compare with");

  for (let i = 0; i < 3; i++) assertEquals((await c.run(n1, ["health"])).code, 0, "a primary's pass");
  const left = await leaseState(primary, "mariadb");
  assert(
    left !== undefined && left > LEASE_MS - 3000 && left <= LEASE_MS,
    `the pass left a lease of ${left} ms`,
  );
  // Every operation directly, twice over (all idempotent).
  for (let i = 0; i < 2; i++) {
    await installLease(primary, "mariadb");
    assert(await extendLease(primary, "mariadb", 3000));
    assert(await extendLease(primary, "mariadb", LEASE_MS, { turningWritable: true }));
    await clearLease(primary, "mariadb");
    assertEquals(await leaseState(primary, "mariadb"), undefined);
  }
  // Without a lease for a moment, n1 may have been fenced meanwhile: its next pass makes it writable again.
  assertEquals((await c.run(n1, ["health"])).code, 0);
  assertEquals(await readOnly(primary), false);
  assertEquals(
    Number((await primary.query("SELECT @@SESSION.sql_log_bin AS b"))[0].b),
    1,
    "sql_log_bin was left off on the connection",
  );

  assertEquals([await gtids(primary), await gtids(replica)], before, "the lease made a GTID");
  for (const log of await primary.query("SHOW BINARY LOGS")) {
    const events = await primary.query(`SHOW BINLOG EVENTS IN '${log.Log_name}'`);
    // The cluster identity (autopilot.cluster) is written with the binlog on purpose, at bootstrap.
    const leaked = events.filter((e) => /autopilot/i.test(String(e.Info)) && /lease/i.test(String(e.Info)));
    assertEquals(leaked, [], `the lease reached the binlog ${log.Log_name}`);
  }
  assertEquals(await leaseState(replica, "mariadb"), undefined, "a replica runs with a live lease");

  // The event fences the replica if anyone turns it writable: it has no lease.
  assertEquals(String((await replica.query("SELECT @@event_scheduler AS s"))[0].s), "ON");
  await replica.query("SET GLOBAL read_only = OFF");
  const t0 = performance.now();
  await waitFor("the replica turned writable by hand to be fenced", async () => await readOnly(replica), {
    timeoutMs: FENCE_SLACK_MS + 500,
    intervalMs: 20,
  });
  report(`a replica turned writable by hand was fenced after ${Math.round(performance.now() - t0)} ms`);
  assertEquals(await readOnly(primary), false, "the primary with its lease was fenced");
  assertEquals([await gtids(primary), await gtids(replica)], before, "the fence made a GTID");
});

Deno.test("switchover: an abandoned one extends the lease before turning writable again; a done one leaves none", async () => {
  await using h = await Harness.create({ nodes: 2 });
  const c = await Cluster.create(h);
  const [n1, n2] = [c.node(1), c.node(2)];
  for (const n of [n1, n2]) assertEquals((await c.boot(n)).code, 0);
  await using primary = await c.root(n1);
  await using app = await c.app(n1);
  await app.query("CREATE TABLE app.t (id INT PRIMARY KEY)");
  // n2 cannot catch up: the switchover gives up after its timeout, and n1 turns writable again.
  await c.sql(n2, "STOP SLAVE");
  await app.query("INSERT INTO app.t VALUES (1)");
  await clearLease(primary, "mariadb"); // so that only the switchover's own extension can leave one
  const abandoned = await c.run(n1, ["switchover", "--to", "n2", "--timeout", "2"]);
  assertEquals(abandoned.code, 1, abandoned.stderr);
  assert(abandoned.stderr.includes("switchover abandoned"), abandoned.stderr);
  assertEquals(await readOnly(primary), false);
  const left = await leaseState(primary, "mariadb");
  assert(left !== undefined && left > LEASE_MS - 3000, `the abandoned switchover left a lease of ${left} ms`);
  await delay(FENCE_SLACK_MS); // the event had its chance: the lease holds it off
  assertEquals(await readOnly(primary), false, "fenced after the abandoned switchover");

  await c.sql(n2, "START SLAVE");
  const done = await c.run(n1, ["switchover", "--to", "n2"]);
  assertEquals(done.code, 0, done.stderr);
  assertEquals(await readOnly(primary), true);
  assertEquals(await leaseState(primary, "mariadb"), undefined, "the old primary kept its lease");
  await waitFor("n2 writable primary", async () => {
    await Promise.all([n1, n2].map((n) => c.run(n, ["health"])));
    return (await c.run(n2, ["health", "--primary"])).code === 0;
  }, { timeoutMs: 20_000, intervalMs: 300 });
  await using next = await c.root(n2);
  assert(((await leaseState(next, "mariadb")) ?? 0) > 0, "the new primary has no lease");
  assertEquals(
    await leaseState(primary, "mariadb"),
    undefined,
    "the old primary, now a replica, has a lease",
  );
});

Deno.test("a primary whose hooks are frozen (SIGSTOP) while mysqld lives turns read-only within the lease", async () => {
  await using h = await Harness.create({ nodes: 1 });
  const c = await Cluster.create(h);
  const n1 = c.node(1);
  assertEquals((await c.boot(n1)).code, 0);
  await using db = await c.root(n1);
  // A few passes on ContainerPilot's schedule: the primary stays writable.
  for (let i = 0; i < 3; i++) {
    await delay(HEALTH_INTERVAL_MS);
    assertEquals((await c.run(n1, ["health"])).code, 0);
    assertEquals(await readOnly(db), false, "fenced while its passes ran");
  }
  // The next pass hangs for good (SIGSTOP shortly after it starts: wherever it is), and none follows.
  const pass = await spawnPass(n1);
  try {
    await delay(150);
    pass.kill("SIGSTOP");
    const frozenAt = Date.now();
    const fencedAt = await waitFor("the frozen primary to fence itself", async () => {
      return await readOnly(db) ? Date.now() : undefined;
    }, { timeoutMs: LEASE_MS + FENCE_SLACK_MS + 2000, intervalMs: 20 });
    // The lease row tells when the last pass extended it: SESSION_TTL/2 after the renewal it followed.
    const lapsedMs = -(await leaseState(db, "mariadb") ?? NaN);
    const leaseEnd = Date.now() - lapsedMs;
    const sinceRenewal = Math.round(fencedAt - (leaseEnd - LEASE_MS));
    report(
      `frozen primary read-only ${sinceRenewal} ms after its last renewal (lease ${LEASE_MS} ms, ` +
        `${Math.round(fencedAt - leaseEnd)} ms after it lapsed; ${fencedAt - frozenAt} ms after the freeze)`,
    );
    assert(Number.isFinite(sinceRenewal), "no lease row: nothing says when the last renewal was");
    assert(fencedAt >= leaseEnd - 100, `fenced ${leaseEnd - fencedAt} ms before the lease lapsed`);
    assert(sinceRenewal <= LEASE_MS + FENCE_SLACK_MS, `read-only only ${sinceRenewal} ms after the renewal`);
    pass.kill("SIGCONT");
    await pass.status;
  } finally {
    await killPass(pass);
  }
  // Its session is still alive (SESSION_TTL): the next pass makes it writable again.
  assertEquals((await c.run(n1, ["health"])).code, 0);
  assertEquals(await readOnly(db), false);
  assertEquals(await c.primaryName(), "n1");
});

Deno.test("a primary cut off with its hooks frozen fences itself before another is appointed: never two writable", async () => {
  await using h = await Harness.create({ nodes: 3 });
  const c = await Cluster.create(h);
  const [n1, n2, n3] = [c.node(1), c.node(2), c.node(3)];
  for (const n of [n1, n2, n3]) assertEquals((await c.boot(n)).code, 0);
  assertEquals((await c.run(n1, ["health"])).code, 0); // a fresh renewal and lease
  const servers = new Map<string, MysqlClient>();
  try {
    // Over each node's socket: a cut link does not stop the test from watching.
    for (const n of [n1, n2, n3]) servers.set(n.name, await c.root(n));
    const watch = watchWritable(servers);
    // n1's link goes and its hooks with it (no pass runs there any more); mysqld lives, writable.
    const cutAt = Date.now();
    await h.net.cut(1);
    let promoted: TestNode | undefined;
    try {
      await waitFor("a new primary among n2 and n3", async () => {
        await Promise.all([n2, n3].map((n) => c.run(n, ["health"])));
        const name = await c.primaryName();
        promoted = [n2, n3].find((n) => n.name === name);
        return promoted !== undefined && !(await readOnly(servers.get(promoted.name)!));
      }, { timeoutMs: 4 * TTL_SECONDS * 1000 + 20_000, intervalMs: 300 });
      await delay(2000); // keep watching a little after the promotion
    } finally {
      const { overlaps, changes, errors } = await watch.stop();
      const at = (node: string, writable: boolean) =>
        changes.find((e) => e.node === node && e.writable === writable && e.at >= cutAt)?.at;
      const fenced = at("n1", false);
      const writable = promoted && at(promoted.name, true);
      report(
        `link cut: n1 read-only after ${fenced && fenced - cutAt} ms, ${promoted?.name} writable after ` +
          `${writable && writable - cutAt} ms; ${overlaps.length} samples with two writable servers ` +
          `(${errors} failed reads)`,
      );
      assertEquals(overlaps, [], "two servers were writable at once");
      assert(fenced !== undefined, "the cut-off primary never fenced itself");
      assert(writable === undefined || fenced < writable, "the new primary turned writable first");
    }
    assert(promoted !== undefined);
    await h.net.heal(1);
  } finally {
    for (const db of servers.values()) await db.close();
  }
});

Deno.test("a lease renewed every pass never fences a healthy primary over a 10-minute run", async () => {
  const runMs = Number(Deno.env.get("AUTOPILOT_LEASE_SOAK_MS") ?? 10 * 60_000);
  await using h = await Harness.create({ nodes: 2 });
  const c = await Cluster.create(h);
  const [n1, n2] = [c.node(1), c.node(2)];
  for (const n of [n1, n2]) assertEquals((await c.boot(n)).code, 0);
  await using db = await c.root(n1);
  await using app = await c.app(n1);
  await app.query("CREATE TABLE app.soak (id INT AUTO_INCREMENT PRIMARY KEY)");
  let passes = 0;
  let failed = 0;
  let fencedSamples = 0;
  let smallest = Infinity;
  let writes = 0;
  let writeFailures = 0;
  const end = Date.now() + runMs;
  // Passes on both nodes at ContainerPilot's interval, as its timer starts them (a slow pass delays the next).
  const checker = (async () => {
    while (Date.now() < end) {
      const started = Date.now();
      const [r1] = await Promise.all([c.run(n1, ["health"]), c.run(n2, ["health"])]);
      passes++;
      if (r1.code !== 0) failed++;
      await delay(Math.max(0, HEALTH_INTERVAL_MS - (Date.now() - started)));
    }
  })();
  // Meanwhile: read_only, what is left of the lease, and an application write, every 100 ms.
  while (Date.now() < end) {
    if (await readOnly(db)) fencedSamples++;
    const left = await leaseState(db, "mariadb");
    smallest = Math.min(smallest, left ?? -Infinity);
    await app.query("INSERT INTO app.soak VALUES ()").then(() => writes++, () => writeFailures++);
    await delay(100);
  }
  await checker;
  report(
    `${
      Math.round(runMs / 1000)
    } s run: ${passes} passes every ${HEALTH_INTERVAL_MS} ms, ${failed} unhealthy, ` +
      `${fencedSamples} read-only samples, smallest lease left ${Math.round(smallest)} ms of ${LEASE_MS}, ` +
      `${writes} writes, ${writeFailures} refused`,
  );
  assert(passes >= Math.floor(runMs / HEALTH_INTERVAL_MS) - 2, `only ${passes} passes ran`);
  assertEquals(failed, 0, "a primary's pass was unhealthy");
  assertEquals(fencedSamples, 0, "the healthy primary was fenced");
  assert(smallest > 0, `the lease lapsed (smallest left: ${smallest} ms)`);
  assertEquals(writeFailures, 0, "the application's writes were refused");
  // The fence was armed all along: with the passes stopped, the primary turns read-only once the lease lapses.
  const left = (await leaseState(db, "mariadb"))!;
  const t0 = performance.now();
  await waitFor("the fence once the passes stop", () => readOnly(db), {
    timeoutMs: left + FENCE_SLACK_MS + 1000,
    intervalMs: 20,
  });
  report(`passes stopped: read-only ${Math.round(performance.now() - t0 - left)} ms after the lease lapsed`);
});
