/**
 * Figures for a cluster assembling itself, on the namespace test cluster (real Consul, real MariaDB):
 * - start to healthy primary (pre-start, mysqld, first health pass with bootstrap and first snapshot);
 * - replica start to replicating, for datasets of several sizes (restore, mysqld, first health pass);
 * - what the checks ContainerPilot runs cost, on a steady 3-node cluster: an empty `deno run`, `autopilot
 *   --version` and `--help`, one `health` pass on the primary and on a replica, one `snapshot` run with
 *   nothing due (wall, CPU user+sys and peak RSS of the whole process, from GNU time: median of 10 each), the
 *   share of one core per node they take at the shipped intervals, and whether each target is reached
 *   (bench/costs.ts).
 *
 * Run: `deno task bench` (all sizes), `deno task bench --sizes=10,100`, or `deno task bench --checks-only`
 * (the last section alone). Prints tables; asserts nothing.
 *
 * @module
 */
// deno-lint-ignore-file no-console
import { parseArgs } from "node:util";
import { loadConfig } from "../src/config.ts";
import { ConsulStore } from "../src/consul.ts";
import { openLocalServer } from "../src/mysql/server.ts";
import { takeAndPublishSnapshot } from "../src/snapshots.ts";
import { ConsulClusterKv } from "../src/cluster_kv.ts";
import { Cluster, type TestNode } from "../tests/integration/cluster.ts";
import { autopilotRunFlags, Harness, REPO_ROOT } from "../tests/integration/harness/mod.ts";
import { autopilot } from "../tests/integration/autopilot_cli.ts";
import {
  coreShare,
  median,
  medianCost,
  parseTimeOutput,
  type ProcessCost,
  SHIPPED_INTERVALS,
  TARGETS,
  TIME_FORMAT,
  verdict,
} from "./costs.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    sizes: { type: "string", default: "10,100,1000" },
    "checks-only": { type: "boolean", default: false },
  },
});
const sizes = values["checks-only"] ? [] : values.sizes!.split(",").map(Number).filter((n) => n > 0);

const ms = (t0: number) => performance.now() - t0;
const fmt = (m: number) => (m >= 1000 ? `${(m / 1000).toFixed(2)} s` : `${m.toFixed(0)} ms`);
const mib = (kib: number) => `${(kib / 1024).toFixed(1)} MiB`;

/** GNU time: measures a whole process (every thread) from exec to exit, as the kernel counts it (wait4). */
const GNU_TIME = "/usr/bin/time";

/**
 * Runs `program args` under GNU time (`-o` a file, so the program's own stderr stays its own) and returns its
 * wall time (measured here, around the whole run), CPU time (user + sys) and peak RSS.
 */
async function measured(
  run: (wrapper: string[]) => Promise<{ code: number; stderr: string }>,
): Promise<ProcessCost & { code: number; stderr: string }> {
  const out = await Deno.makeTempFile({ prefix: "autopilot-bench-time-" });
  try {
    const t0 = performance.now();
    const r = await run([GNU_TIME, "-f", TIME_FORMAT, "-o", out]);
    const wallMs = ms(t0);
    return { wallMs, ...parseTimeOutput(await Deno.readTextFile(out)), code: r.code, stderr: r.stderr };
  } finally {
    await Deno.remove(out);
  }
}

/** Runs a program (not in a namespace) from the repository root, with only PATH and DENO_DIR set. */
async function plain(wrapper: string[], argv: string[]): Promise<{ code: number; stderr: string }> {
  const [program, ...args] = [...wrapper, ...argv];
  const out = await new Deno.Command(program, {
    args,
    cwd: REPO_ROOT,
    clearEnv: true,
    env: { PATH: Deno.env.get("PATH") ?? "", DENO_DIR: Deno.env.get("DENO_DIR") ?? "", NO_COLOR: "1" },
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).output();
  return { code: out.code, stderr: new TextDecoder().decode(out.stderr) };
}

const loadAverage = async () => (await Deno.readTextFile("/proc/loadavg")).split(" ").slice(0, 3).join(" ");

/**
 * The cost of the checks ContainerPilot runs, on a steady 3-node cluster (one primary, two replicas), each
 * command run as ContainerPilot runs it (`deno run` with deno.json's autopilot task's flags, in the node's
 * namespace, the node's settings with the shipped LOG_LEVEL). The passes go round the nodes (primary, replica, replica, then the
 * snapshot task on the primary and a replica), so every session is renewed as ContainerPilot would renew it.
 */
async function checkCosts(runs: number): Promise<string> {
  await using h = await Harness.create({ nodes: 3 });
  const c = await Cluster.create(h);
  const nodes = [1, 2, 3].map((k) => c.node(k, { LOG_LEVEL: "INFO" }));
  for (const n of nodes) {
    const r = await c.boot(n);
    if (r.code !== 0) throw new Error(`${n.name} did not become healthy: ${r.stderr}`);
  }
  const [primary, replica, other] = nodes;
  const consul = c.consul();
  const lastBackup = async () => (await consul.get("mysql-last-backup"))?.value;
  const emptyDir = await Deno.makeTempDir({ prefix: "autopilot-bench-empty-" });
  try {
    const empty = `${emptyDir}/empty.ts`;
    await Deno.writeTextFile(empty, "");
    const deno = [Deno.execPath(), "run", ...autopilotRunFlags()];
    const plainRuns: Record<string, string[]> = {
      "empty `deno run`": [...deno, "--config", `${REPO_ROOT}/deno.json`, empty],
      "`autopilot --version`": [...deno, "mod.ts", "--version"],
      "`autopilot --help`": [...deno, "mod.ts", "--help"],
    };
    const figures = new Map<string, (ProcessCost & { code: number; stderr: string })[]>();
    const add = (name: string, r: ProcessCost & { code: number; stderr: string }) => {
      if (r.code !== 0) throw new Error(`${name} failed during the benchmark: ${r.stderr}`);
      figures.set(name, [...(figures.get(name) ?? []), r]);
    };
    const nodeRun = (node: typeof primary, command: string) => (wrapper: string[]) =>
      autopilot([command], node.env, node.ns, wrapper);
    const before = await lastBackup();
    const loadBefore = await loadAverage();
    // One round unmeasured: Deno's caches (transpiled modules, V8 code cache) are warm, as on a node.
    for (let round = 0; round <= runs; round++) {
      const keep = round > 0;
      for (const [name, argv] of Object.entries(plainRuns)) {
        const r = await measured((w) => plain(w, argv));
        if (keep) add(name, r);
      }
      for (
        const [name, node, command] of [
          ["`health`, steady primary", primary, "health"],
          ["`health`, steady replica", replica, "health"],
          ["", other, "health"],
          ["`snapshot`, nothing due, primary", primary, "snapshot"],
          ["`snapshot`, nothing due, replica", replica, "snapshot"],
          ["`archive`, nothing new, primary", primary, "archive"],
          ["`archive`, replica", replica, "archive"],
        ] as const
      ) {
        const r = await measured(nodeRun(node, command));
        if (keep && name !== "") add(name, r);
        else if (r.code !== 0) throw new Error(`${command} on ${node.name} failed: ${r.stderr}`);
      }
    }
    const loadAfter = await loadAverage();
    if ((await lastBackup()) !== before) {
      throw new Error("a snapshot was taken during the measurement: its cost is not a steady run's");
    }
    const cost = (name: string) => medianCost(figures.get(name)!);
    const target = (name: string): string => {
      const f = cost(name);
      if (name.includes("--version") || name.includes("--help")) {
        return `wall <= ${TARGETS.cliWallMs} ms: ${verdict(f.wallMs, TARGETS.cliWallMs)}`;
      }
      if (name.includes("replica") && name.includes("health")) {
        return `wall <= ${TARGETS.replicaHealthWallMs} ms: ${
          verdict(f.wallMs, TARGETS.replicaHealthWallMs)
        }; ` +
          `peak RSS <= ${TARGETS.replicaHealthPeakMiB} MiB: ${
            verdict(f.peakKiB / 1024, TARGETS.replicaHealthPeakMiB)
          }`;
      }
      return "";
    };
    const rows = [...figures.keys()].map((name) => {
      const f = cost(name);
      return `| ${name} | ${fmt(f.wallMs)} | ${fmt(f.wallP95Ms)} | ${fmt(f.cpuMs)} | ${mib(f.peakKiB)} | ${
        target(name)
      } |`;
    });
    const share = (role: string) =>
      coreShare([
        {
          name: "health",
          cpuMs: cost(`\`health\`, steady ${role}`).cpuMs,
          intervalSeconds: SHIPPED_INTERVALS.healthSeconds,
        },
        {
          name: "snapshot",
          cpuMs: cost(`\`snapshot\`, nothing due, ${role}`).cpuMs,
          intervalSeconds: SHIPPED_INTERVALS.snapshotSeconds,
        },
        {
          name: "archive",
          cpuMs: cost(role === "primary" ? "`archive`, nothing new, primary" : "`archive`, replica").cpuMs,
          intervalSeconds: SHIPPED_INTERVALS.archiveSeconds,
        },
      ]);
    const shares = ["primary", "replica"].map((role) => {
      const s = share(role);
      return `- ${role}: ${(s * 100).toFixed(2)} % of one core (target <= ${TARGETS.coreShare * 100} %: ${
        verdict(s, TARGETS.coreShare)
      })`;
    });
    return [
      `What the checks cost (steady 3-node cluster, \`deno run ${
        autopilotRunFlags().join(" ")
      }\` for every row, ` +
      `median of ${runs} runs each after ` +
      `one unmeasured round; wall measured around the process, CPU (user+sys) and peak RSS from GNU time; ` +
      `load average ${loadBefore} before, ${loadAfter} after):`,
      "",
      "| command | wall, median | wall, p95 | CPU user+sys | peak RSS | target |",
      "| --- | --- | --- | --- | --- | --- |",
      ...rows,
      "",
      `Share of one core per node at the shipped intervals (\`health\` every ${SHIPPED_INTERVALS.healthSeconds} s, ` +
      `the \`snapshot\` task every ${
        SHIPPED_INTERVALS.snapshotSeconds / 60
      } min, the \`binlog-archive\` task every ${SHIPPED_INTERVALS.archiveSeconds} s (BINLOG_ARCHIVE_INTERVAL's default); CPU time per run over its ` +
      "interval; on-change runs only when the primary changes and an actual snapshot once per BACKUP_TTL, so " +
      "neither is counted; ContainerPilot's own work is not counted):",
      ...shares,
    ].join("\n");
  } finally {
    consul.close();
    await Deno.remove(emptyDir, { recursive: true });
  }
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
    await using server = await openLocalServer(config, "mariadb");
    await takeAndPublishSnapshot(config, new ConsulClusterKv(config, consul), "mariadb", server);
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
for (let trial = 0; trial < (values["checks-only"] ? 0 : 3); trial++) {
  await using h = await Harness.create({ nodes: 1 });
  const c = await Cluster.create(h);
  const n1 = c.node(1);
  const t0 = performance.now();
  const r = await c.boot(n1);
  if (r.code !== 0) throw new Error(`primary did not become healthy: ${r.stderr}`);
  startups.push(ms(t0));
}
if (startups.length) {
  console.log(
    `start to healthy primary (pre-start, mysqld, bootstrap, first snapshot): median ${
      fmt(median(startups))
    }` +
      ` of ${startups.map(fmt).join(", ")}`,
  );
}

// 2. Replica start to replicating, per dataset size.
if (sizes.length) {
  console.log(
    "\n| dataset | snapshot stored | restore (pre-start) | mysqld start | replica start to replicating |",
  );
  console.log("| --- | --- | --- | --- | --- |");
}
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
}

// 3. What the checks cost on a steady cluster.
console.log(`\n${await checkCosts(10)}`);
