/**
 * Figures for a cluster assembling itself, on the namespace test cluster (real Consul, real MariaDB):
 * - start to healthy primary (pre-start, mysqld, first health pass with bootstrap and first snapshot);
 * - replica start to replicating, for datasets of several sizes (restore, mysqld, first health pass);
 * - wall time and peak memory (RSS) of one `autopilot health` run on a steady primary and replica.
 *
 * Run: `deno task bench` (all sizes) or `deno task bench --sizes=10,100`. Prints a table; asserts nothing.
 *
 * @module
 */
// deno-lint-ignore-file no-console
import { parseArgs } from "node:util";
import { loadConfig } from "../src/config.ts";
import { ConsulStore } from "../src/consul.ts";
import { connectLocal } from "../src/local.ts";
import { takeAndPublishSnapshot } from "../src/snapshots.ts";
import { Cluster, type TestNode } from "../tests/integration/cluster.ts";
import { Harness, ip, REPO_ROOT } from "../tests/integration/harness/mod.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: { sizes: { type: "string", default: "10,100,1000" } },
});
const sizes = values.sizes!.split(",").map(Number).filter((n) => n > 0);

const ms = (t0: number) => performance.now() - t0;
const fmt = (m: number) => (m >= 1000 ? `${(m / 1000).toFixed(2)} s` : `${m.toFixed(0)} ms`);
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const p95 = (xs: number[]) =>
  [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(xs.length * 0.95))];

/** Runs `autopilot health` in the node's namespace, polling the process's peak RSS (VmHWM) until it exits. */
async function measuredHealth(
  node: TestNode,
): Promise<{ wallMs: number; peakKiB: number; code: number; stderr: string }> {
  const t0 = performance.now();
  const child = new Deno.Command(await ip(), {
    args: ["netns", "exec", node.ns, Deno.execPath(), "run", "-P=autopilot", "mod.ts", "health"],
    cwd: REPO_ROOT,
    clearEnv: true,
    env: {
      PATH: Deno.env.get("PATH") ?? "",
      DENO_DIR: Deno.env.get("DENO_DIR") ?? "",
      ...node.env,
      LOG_LEVEL: "ERROR",
    },
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const stderr = new Response(child.stderr).text();
  let peakKiB = 0;
  let done = false;
  const status = child.status.then((s) => {
    done = true;
    return s;
  });
  while (!done) {
    try {
      const hwm = /VmHWM:\s+(\d+)/.exec(await Deno.readTextFile(`/proc/${child.pid}/status`));
      if (hwm) peakKiB = Math.max(peakKiB, Number(hwm[1]));
    } catch {
      // exited between checks
    }
    await new Promise((r) => setTimeout(r, 2));
  }
  return { wallMs: ms(t0), peakKiB, code: (await status).code, stderr: await stderr };
}

async function fill(c: Cluster, node: TestNode, megabytes: number): Promise<void> {
  // About 1 KB a row of hex digests: compresses about 2:1, like much real data.
  const payload = Array.from({ length: 28 }, (_, i) => `MD5(seq * ${i + 1})`).join(", ");
  await c.sql(
    node,
    "CREATE TABLE IF NOT EXISTS app.big (id INT PRIMARY KEY, payload VARCHAR(1024) NOT NULL)",
  );
  const rows = megabytes * 1000;
  const chunk = 50_000;
  for (let from = 1; from <= rows; from += chunk) {
    const to = Math.min(rows, from + chunk - 1);
    await c.sql(
      node,
      `INSERT INTO app.big SELECT seq, CONCAT(${payload}) FROM app.seq_${from}_to_${to}`,
    );
  }
}

async function publishSnapshot(node: TestNode): Promise<void> {
  const config = loadConfig((n) => node.env[n], { hostname: () => node.name });
  const consul = new ConsulStore(config.consul);
  try {
    await using db = await connectLocal(config, "mariadb");
    await takeAndPublishSnapshot(config, consul, "mariadb", db);
  } finally {
    consul.close();
  }
}

async function duKiB(path: string): Promise<number> {
  const out = await new Deno.Command("du", { args: ["-sk", path], stdout: "piped" }).output();
  return Number(new TextDecoder().decode(out.stdout).split("\t")[0]);
}

console.log("autopilot-mysql lifecycle figures (MariaDB, namespace cluster, this machine)\n");

// 1. Start to healthy primary.
const startups: number[] = [];
for (let trial = 0; trial < 3; trial++) {
  await using h = await Harness.create({ nodes: 1 });
  const c = await Cluster.create(h);
  const n1 = c.node(1);
  const t0 = performance.now();
  const r = await c.boot(n1);
  if (r.code !== 0) throw new Error(`primary did not become healthy: ${r.stderr}`);
  startups.push(ms(t0));
}
console.log(
  `start to healthy primary (pre-start, mysqld, bootstrap, first snapshot): median ${fmt(median(startups))}` +
    ` of ${startups.map(fmt).join(", ")}`,
);

// 2. Replica start to replicating, per dataset size; 3. health runs on the steady cluster.
console.log(
  "\n| dataset | snapshot stored | restore (pre-start) | mysqld start | replica start to replicating |",
);
console.log("| --- | --- | --- | --- | --- |");
let healthFigures = "";
for (const size of sizes) {
  await using h = await Harness.create({ nodes: 2 });
  const c = await Cluster.create(h);
  const [n1, n2] = [
    c.node(1, { INNODB_BUFFER_POOL_SIZE: "256M" }),
    c.node(2, { INNODB_BUFFER_POOL_SIZE: "256M" }),
  ];
  if ((await c.boot(n1)).code !== 0) throw new Error("primary did not start");
  const stopChecks = c.keepChecking([n1]); // as ContainerPilot would, or the primary's session expires
  await fill(c, n1, size);
  await publishSnapshot(n1);
  const stored = [...Deno.readDirSync(c.snapshots)].filter((e) => e.name.endsWith(".zst"))
    .map((e) => Deno.statSync(`${c.snapshots}/${e.name}`).size).reduce((a, b) => Math.max(a, b), 0);
  const t0 = performance.now();
  const pre = await c.preStart(n2);
  if (pre.code !== 0) throw new Error(`restore failed: ${pre.stderr}`);
  const restoreMs = ms(t0);
  const t1 = performance.now();
  await c.startMysqld(n2);
  const mysqldMs = ms(t1);
  let health = await c.run(n2, ["health"]);
  while (health.code !== 0 && ms(t0) < 600_000) health = await c.run(n2, ["health"]);
  await stopChecks();
  const datadirMiB = (await duKiB(n2.env.MYSQL_DATADIR)) / 1024;
  console.log(
    `| ${size} MB of rows (datadir ${datadirMiB.toFixed(0)} MiB) | ${(stored / 2 ** 20).toFixed(1)} MiB ` +
      `| ${fmt(restoreMs)} | ${fmt(mysqldMs)} | ${fmt(ms(t0))} |`,
  );
  if (healthFigures === "") {
    const lines: string[] = [];
    for (const [role, node] of [["primary", n1], ["replica", n2]] as const) {
      const runs = [];
      for (let i = 0; i < 15; i++) runs.push(await measuredHealth(node));
      if (runs.some((r) => r.code !== 0)) {
        throw new Error(`health on the ${role} failed during the benchmark`);
      }
      const walls = runs.map((r) => r.wallMs);
      lines.push(
        `| ${role} | ${fmt(median(walls))} | ${fmt(p95(walls))} | ${
          (median(runs.map((r) => r.peakKiB)) / 1024).toFixed(0)
        } MiB |`,
      );
    }
    healthFigures = ["| node | health wall, median | p95 | peak RSS |", "| --- | --- | --- | --- |", ...lines]
      .join("\n");
  }
}
console.log(`\n\`autopilot health\` on a steady cluster (deno run, 15 runs each):\n${healthFigures}`);
