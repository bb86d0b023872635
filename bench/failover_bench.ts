/**
 * Failover figures on the namespace test cluster (real Consul, real MariaDB), with every node's health pass
 * running every 5 s as ContainerPilot's checks would. ContainerPilot's watch (which runs `on-change` within
 * about 2 s of the primary service changing) is not emulated, so these are upper bounds for that path.
 *
 * - kill -9 of the primary's mysqld: time to the first write acknowledged by the new primary;
 * - the primary's link cut: the same (dominated by the session TTL);
 * - planned switchover: the same, from the moment `autopilot switchover` starts.
 *
 * Run: `deno task bench:failover [--trials=N]`. Prints figures; durability is checked by the tests.
 *
 * @module
 */
// deno-lint-ignore-file no-console
import { parseArgs } from "node:util";
import { Cluster, type TestNode, writer } from "../tests/integration/cluster.ts";
import { Harness, kill9 } from "../tests/integration/harness/mod.ts";

const { values } = parseArgs({ args: Deno.args, options: { trials: { type: "string", default: "5" } } });
const trials = Math.max(1, Number(values.trials));

const fmt = (m: number) => `${(m / 1000).toFixed(2)} s`;
const pct = (xs: number[], p: number) =>
  [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(xs.length * p))];

async function cluster(h: Harness): Promise<{ c: Cluster; nodes: TestNode[] }> {
  const c = await Cluster.create(h);
  const nodes = [1, 2, 3].map((k) => c.node(k, { FAILOVER_QUIET_PERIOD: "0" }));
  for (const n of nodes) if ((await c.boot(n)).code !== 0) throw new Error(`${n.name} did not start`);
  await using app = await c.app(nodes[0]);
  await app.query("CREATE TABLE app.acked (id INT PRIMARY KEY)");
  return { c, nodes };
}

/** Runs one disruption under load; returns the time from it to the first write the new primary acknowledged. */
async function trial(disrupt: (c: Cluster, nodes: TestNode[], h: Harness) => Promise<void>): Promise<number> {
  await using h = await Harness.create({ nodes: 3 });
  const { c, nodes } = await cluster(h);
  const stopChecks = c.keepChecking(nodes, 5000);
  const w = writer(c);
  await new Promise((r) => setTimeout(r, 2000));
  const old = nodes[0].address;
  const t0 = performance.now();
  await disrupt(c, nodes, h);
  // Wait for writes to flow again, on the new primary.
  const onNew = () => w.acks().filter((a) => a.t > t0 && a.address !== old);
  while (onNew().length < 10 && performance.now() - t0 < 90_000) await new Promise((r) => setTimeout(r, 100));
  await w.stop();
  await stopChecks();
  const first = onNew()[0];
  if (first === undefined) throw new Error("writes never resumed on a new primary");
  return first.t - t0;
}

console.log("autopilot-mysql failover figures (MariaDB, namespace cluster, health every 5 s, no watch)\n");
for (
  const [name, disrupt] of [
    ["kill -9 of the primary's mysqld", async (_c: Cluster, n: TestNode[]) => await kill9(n[0].mysqld!.pid)],
    ["primary's link cut", async (_c: Cluster, _n: TestNode[], h: Harness) => await h.net.cut(1)],
    ["planned switchover", async (c: Cluster, n: TestNode[]) => {
      const r = await c.run(n[0], ["switchover"]);
      if (r.code !== 0) throw new Error(r.stderr);
    }],
  ] as const
) {
  const gaps: number[] = [];
  for (let i = 0; i < trials; i++) gaps.push(await trial(disrupt));
  console.log(
    `${name}: median ${fmt(pct(gaps, 0.5))}, p99 ${fmt(pct(gaps, 0.99))} (${gaps.map(fmt).join(", ")})`,
  );
}
