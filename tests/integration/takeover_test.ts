/**
 * The takeover of a stale primary lock (src/ha/takeover.ts) on real Consul and MariaDB servers: a primary
 * whose hooks stop (no pass runs there any more) while its mysqld and its Consul session live on is fenced by
 * its lease, and a replica takes the role over once the heartbeat has stood still for the lease and 2 s, well
 * before Consul would expire the old session (SESSION_TTL at the least). A sampler reads every node's read_only
 * every 100 ms: never two writable.
 *
 * The figures are printed (`[takeover] ...`).
 */
import { assert, assertEquals } from "../unit/assert.ts";
import { loadConfig } from "../../src/config.ts";
import type { MysqlClient } from "../../src/mysql/client.ts";
import { leaseMsFor } from "../../src/mysql/lease.ts";
import { readState } from "../../src/state.ts";
import { Cluster, type TestNode } from "./cluster.ts";
import { delay, Harness, waitFor } from "./harness/mod.ts";

const TTL_SECONDS = loadConfig((n) => ({ MYSQL_REPL_PASSWORD: "x" } as Record<string, string>)[n], {
  hostname: () => "h",
}).session.ttlSeconds;
const LEASE_MS = leaseMsFor(TTL_SECONDS);

function report(line: string): void {
  // deno-lint-ignore no-console
  console.log(`[takeover] ${line}`);
}

async function readOnly(db: MysqlClient): Promise<boolean> {
  return Number((await db.query("SELECT @@GLOBAL.read_only AS ro"))[0].ro) === 1;
}

/** Every `intervalMs` reads read_only on each server; records each change and every sample with two writable. */
function sampleWritable(servers: ReadonlyMap<string, MysqlClient>, intervalMs = 100) {
  const writable = new Map<string, boolean>();
  const overlaps: { at: number; nodes: string[] }[] = [];
  const changes: { at: number; node: string; writable: boolean }[] = [];
  let running = true;
  let samples = 0;
  const done = (async () => {
    while (running) {
      const at = Date.now();
      await Promise.all([...servers].map(async ([name, db]) => {
        const w = await readOnly(db).then((ro) => !ro, () => writable.get(name) ?? false);
        if (writable.get(name) !== w) changes.push({ at, node: name, writable: w });
        writable.set(name, w);
      }));
      samples++;
      const both = [...writable].filter(([, w]) => w).map(([n]) => n);
      if (both.length > 1) overlaps.push({ at, nodes: both });
      await delay(intervalMs);
    }
  })();
  return {
    stop: async () => {
      running = false;
      await done;
      return { overlaps, changes, samples };
    },
  };
}

Deno.test("a primary whose hooks stop is taken over once its heartbeat stands still, before its session expires: never two writable", async () => {
  await using h = await Harness.create({ nodes: 3 });
  const c = await Cluster.create(h);
  const [n1, n2, n3] = [c.node(1), c.node(2), c.node(3)];
  for (const n of [n1, n2, n3]) assertEquals((await c.boot(n)).code, 0);
  // Every node passes once more: n1 writes a heartbeat, n2 and n3 see it.
  for (const n of [n1, n2, n3]) assertEquals((await c.run(n, ["health"])).code, 0, n.name);
  const oldSession = (await readState(n1.env.STATE_DIR)).sessionId!;
  const consul = c.consul();
  const servers = new Map<string, MysqlClient>();
  try {
    for (const n of [n1, n2, n3]) servers.set(n.name, await c.root(n));
    const sampler = sampleWritable(servers);
    // n1's last pass: from now on none runs there (its hooks are stopped); mysqld and the link live on.
    const lastPassAt = Date.now();
    assertEquals((await c.run(n1, ["health"])).code, 0);
    let promoted: TestNode | undefined;
    let promotedAt: number | undefined;
    let sessionAlive = false;
    // n2 and n3 pass on their own, as under ContainerPilot: a pass waiting for the node it appointed never
    // holds back that node's next pass.
    const passes = c.keepChecking([n2, n3], 200, (_, r) => {
      for (const l of (r.stdout + r.stderr).split("\n")) {
        if (/heartbeat|taking the lock over|Took the primary lock over|Appointed|Failing over/.test(l)) {
          report(`log: ${l.slice(0, 300)}`);
        }
      }
    });
    try {
      await waitFor("a new writable primary among n2 and n3", async () => {
        const name = await c.primaryName();
        promoted = [n2, n3].find((n) => n.name === name);
        if (promoted === undefined || await readOnly(servers.get(promoted.name)!)) return false;
        promotedAt = Date.now();
        sessionAlive = await consul.sessionExists(oldSession);
        return true;
      }, { timeoutMs: LEASE_MS + 30_000, intervalMs: 200 });
      await delay(1500); // keep sampling a little after the promotion
    } finally {
      await passes();
      const { overlaps, changes, samples } = await sampler.stop();
      const at = (node: string, writable: boolean) =>
        changes.find((e) => e.node === node && e.writable === writable && e.at >= lastPassAt)?.at;
      const fencedAt = at("n1", false);
      const writableAt = promoted && at(promoted.name, true);
      report(
        `hooks stopped: n1 read-only after ${
          fencedAt && fencedAt - lastPassAt
        } ms, ${promoted?.name} writable ` +
          `after ${
            writableAt && writableAt - lastPassAt
          } ms (lease ${LEASE_MS} ms, SESSION_TTL ${TTL_SECONDS} s); ` +
          `${samples} samples, ${overlaps.length} with two writable`,
      );
      assertEquals(overlaps, [], "two servers were writable at once");
      assert(fencedAt !== undefined, "the stopped primary never fenced itself");
      assert(writableAt === undefined || fencedAt < writableAt, "the new primary turned writable first");
    }
    assert(promoted !== undefined && promotedAt !== undefined);
    assert(sessionAlive, "n1's session had expired: the role moved by Consul's expiry, not by the takeover");
    const tookMs = promotedAt - lastPassAt;
    assert(tookMs < TTL_SECONDS * 1000, `took ${tookMs} ms: no sooner than Consul's own expiry`);
    // n1's hooks run again: its heartbeat is refused (it no longer holds the lock), and it follows.
    await waitFor("n1 to follow the new primary", async () => (await c.run(n1, ["health"])).code === 0, {
      timeoutMs: 20_000,
      intervalMs: 500,
    });
    assertEquals(await readOnly(servers.get("n1")!), true);
    assertEquals(await c.primaryName(), promoted.name, "the role stayed where it went");
    const replica = (await c.sql(n1, "SHOW SLAVE STATUS"))[0];
    assertEquals(replica?.Master_Host, promoted.address, "n1 replicates from the new primary");
  } finally {
    consul.close();
    for (const db of servers.values()) await db.close();
  }
});

Deno.test("FAILSAFE_MODE=false: a primary cut off (no answer over MySQL) is taken over once its heartbeat stands still, with no wait more", async () => {
  await using h = await Harness.create({ nodes: 3 });
  const c = await Cluster.create(h);
  const off = { FAILSAFE_MODE: "false" };
  const [n1, n2, n3] = [c.node(1, off), c.node(2, off), c.node(3, off)];
  for (const n of [n1, n2, n3]) assertEquals((await c.boot(n)).code, 0);
  for (const n of [n1, n2, n3]) assertEquals((await c.run(n, ["health"])).code, 0, n.name);
  const servers = new Map<string, MysqlClient>();
  try {
    // Over each node's socket: a cut link does not stop the test from watching.
    for (const n of [n1, n2, n3]) servers.set(n.name, await c.root(n));
    const sampler = sampleWritable(servers);
    const lastPassAt = Date.now();
    assertEquals((await c.run(n1, ["health"])).code, 0);
    await h.net.cut(1); // and with it n1's hooks: no pass reaches Consul there any more
    let promoted: TestNode | undefined;
    const logs: string[] = [];
    const passes = c.keepChecking([n2, n3], 200, (_, r) => {
      logs.push(...r.stderr.split("\n").filter((l) => /lock over|does not answer/.test(l)));
    });
    try {
      await waitFor("a new writable primary among n2 and n3", async () => {
        const name = await c.primaryName();
        promoted = [n2, n3].find((n) => n.name === name);
        return promoted !== undefined && !(await readOnly(servers.get(promoted.name)!));
      }, { timeoutMs: LEASE_MS + 30_000, intervalMs: 200 });
      await delay(1500);
    } finally {
      await passes();
      const { overlaps, changes, samples } = await sampler.stop();
      const at = (node: string, writable: boolean) =>
        changes.find((e) => e.node === node && e.writable === writable && e.at >= lastPassAt)?.at;
      const fencedAt = at("n1", false);
      const writableAt = promoted && at(promoted.name, true);
      report(
        `link cut, FAILSAFE_MODE=false: n1 read-only after ${fencedAt && fencedAt - lastPassAt} ms, ` +
          `${promoted?.name} writable after ${
            writableAt && writableAt - lastPassAt
          } ms; ${samples} samples, ` +
          `${overlaps.length} with two writable`,
      );
      assertEquals(overlaps, [], "two servers were writable at once");
      assert(fencedAt !== undefined, "the cut-off primary never fenced itself");
      assert(writableAt === undefined || fencedAt < writableAt, "the new primary turned writable first");
      if (writableAt !== undefined) {
        assert(
          writableAt - lastPassAt < TTL_SECONDS * 1000,
          `${writableAt - lastPassAt} ms after the cut: no sooner than Consul's own expiry`,
        );
      }
    }
    assert(logs.some((l) => l.includes("Took the primary lock over from n1 (no answer)")), logs.join("\n"));
    assert(!logs.some((l) => l.includes("does not answer over MySQL")), "it waited: " + logs.join("\n"));
    await h.net.heal(1);
  } finally {
    for (const db of servers.values()) await db.close();
  }
});

Deno.test("when Consul ends every session at once, the last primary takes its lock back at once: the role does not move", async () => {
  await using h = await Harness.create({ nodes: 2 });
  const c = await Cluster.create(h);
  const [n1, n2] = [c.node(1), c.node(2)];
  for (const n of [n1, n2]) assertEquals((await c.boot(n)).code, 0);
  const consul = c.consul();
  try {
    // As Consul does on its return from a freeze: every session invalidated (with a lock-delay, if any).
    const res = await fetch(`http://${c.consulAddr}/v1/session/list`);
    const sessions = (await res.json()) as { ID: string }[];
    assert(sessions.length >= 2, JSON.stringify(sessions));
    for (const s of sessions) await consul.destroySession(s.ID);
    assertEquals(await c.primaryName(), undefined, "nobody holds the lock");
    const retake = await c.run(n1, ["health"]);
    assertEquals(retake.code, 0, retake.stderr);
    assert(!retake.stderr.includes("Another node took the primary lock first"), retake.stderr);
    assert(retake.stderr.includes("Took the primary lock as n1"), retake.stderr);
    assertEquals(await c.primaryName(), "n1");
    assertEquals((await c.run(n2, ["health"])).code, 0, "n2 follows n1 again");
    assertEquals(await c.primaryName(), "n1");
    assertEquals((await consul.get("mysql-failover-lock"))?.value, undefined, "no failover ran");
  } finally {
    consul.close();
  }
});
