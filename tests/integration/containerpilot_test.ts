/**
 * The image's behaviour under the real ContainerPilot: every node is started the way a container is (its own
 * network, mount, UTS and PID namespaces, eth0, the image's paths, the shipped `containerpilot.json5` and the
 * shipped permission set; see `harness/container.ts`), against a real Consul agent. The suite runs when
 * `CONTAINERPILOT_BIN` names a ContainerPilot binary; otherwise it prints one line saying so and its tests are
 * ignored (no ContainerPilot can be installed on our machines, see README).
 *
 * Timings are printed (lines starting `[containerpilot]`), never asserted; waits are bounded.
 *
 * @module
 */
// deno-lint-ignore-file no-console
import JSON5 from "json5";
import { assert, assertEquals } from "../unit/assert.ts";
import { MysqlClient, MysqlQueryError } from "../../src/mysql/client.ts";
import { bufferPoolBytes } from "../../src/mysql/mycnf.ts";
import { Secret } from "../../src/config.ts";
import { delay, Harness, keepFiles, randomSecret, startConsul, stop, waitFor } from "./harness/mod.ts";
import { SWEEP_GRACE_MS } from "../../src/services.ts";
import {
  ContainerHost,
  type ContainerNode,
  containerPilotBin,
  type StopResult,
} from "./harness/container.ts";

const found = containerPilotBin();
const SKIP = "skip" in found ? found.skip : undefined;
const BIN = "bin" in found ? found.bin : "";
if (SKIP) console.log(`containerpilot_test.ts: the ContainerPilot tests were skipped: ${SKIP}`);

/** Compose's stop_grace_period (in seconds there): Docker kills a container that has not stopped by then. */
const STOP_GRACE_MS = Number(
  /^\s*stop_grace_period:\s*(\d+)s\s*$/m.exec(
    Deno.readTextFileSync(new URL("../../compose.yml", import.meta.url)),
  )
    ?.[1] ?? 10,
) * 1000;
const GIB = 2 ** 30;

function report(line: string): void {
  console.log(`[containerpilot] ${line}`);
}

function secs(ms: number): string {
  return `${(ms / 1000).toFixed(2)} s`;
}

// ---------------------------------------------------------------------------------------------------------
// the cluster: nodes, Consul, MySQL

interface HealthEntry {
  Service: { ID: string; Service: string; Address: string; Port: number };
  Checks: { CheckID: string; Status: string; ServiceID: string }[];
}

/** The nodes of one test, the Consul agent they share, and ways to look at both. */
class CpCluster {
  readonly secrets = { repl: randomSecret(), app: randomSecret() };
  readonly consulUrl: string;

  private constructor(readonly h: Harness, readonly host: ContainerHost, readonly consulAddr: string) {
    this.consulUrl = `http://${consulAddr}`;
  }

  static async create(h: Harness): Promise<CpCluster> {
    const consul = await h.startConsul();
    const host = await ContainerHost.create(h, { containerpilot: BIN });
    return new CpCluster(h, host, `${h.net.hostAddress}:${consul.port}`);
  }

  /**
   * Node k with compose's settings: the env_file (passwords, the app's database and user, a small buffer
   * pool) and compose's `environment` (CONSUL, SNAPSHOT_DIR). The root password is left random.
   */
  add(k: number, env: Record<string, string | undefined> = {}, memoryLimitBytes?: number): ContainerNode {
    const settings: Record<string, string | undefined> = {
      CONSUL: this.consulAddr,
      SNAPSHOT_DIR: "/var/lib/autopilot/snapshots",
      // a plain number: containerpilot.json5 makes it `5s` for ContainerPilot, as autopilot reads it
      BINLOG_ARCHIVE_INTERVAL: "5",
      MYSQL_REPL_USER: "repl",
      MYSQL_REPL_PASSWORD: this.secrets.repl,
      MYSQL_DATABASE: "app",
      MYSQL_USER: "app",
      MYSQL_PASSWORD: this.secrets.app,
      INNODB_BUFFER_POOL_SIZE: "128M",
      ...env,
    };
    const defined = Object.entries(settings).filter((e): e is [string, string] => e[1] !== undefined);
    return this.host.node(k, { env: Object.fromEntries(defined), memoryLimitBytes });
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.host.dispose();
  }

  // ---- Consul

  async #get(path: string): Promise<unknown> {
    const res = await fetch(`${this.consulUrl}${path}`, { signal: AbortSignal.timeout(3000) });
    if (res.status === 404) {
      await res.body?.cancel();
      return undefined;
    }
    if (!res.ok) throw new Error(`Consul GET ${path}: HTTP ${res.status} ${await res.text()}`);
    return await res.json();
  }

  /** A KV entry's value and session, if the key exists. */
  async kv(key: string): Promise<{ value: string; session?: string } | undefined> {
    const entries = await this.#get(`/v1/kv/${key}`) as
      | { Value: string | null; Session?: string }[]
      | undefined;
    const e = entries?.[0];
    if (!e) return undefined;
    const value = e.Value === null ? "" : new TextDecoder().decode(
      Uint8Array.from(atob(e.Value), (c) => c.charCodeAt(0)),
    );
    return { value, ...(e.Session ? { session: e.Session } : {}) };
  }

  /** The node the primary lock names while a session holds it. */
  async lockHolder(): Promise<string | undefined> {
    const e = await this.kv("mysql-primary");
    if (!e?.session) return undefined;
    try {
      return JSON.parse(e.value).node;
    } catch {
      return undefined;
    }
  }

  /** The snapshot LAST_BACKUP_KEY names. */
  async lastBackup(): Promise<string | undefined> {
    const e = await this.kv("mysql-last-backup");
    return e ? JSON.parse(e.value).name : undefined;
  }

  /** Every instance of `service` in Consul's health API. */
  async health(service: string): Promise<HealthEntry[]> {
    return (await this.#get(`/v1/health/service/${service}`) as HealthEntry[] | undefined) ?? [];
  }

  /** The addresses of the instances of `service` whose every check passes, sorted. */
  async passing(service: string): Promise<string[]> {
    return (await this.health(service))
      .filter((e) => e.Checks.length > 0 && e.Checks.every((c) => c.Status === "passing"))
      .map((e) => e.Service.Address).sort();
  }

  /** The catalog's service instances at `address` (every service name), as `name/id`. */
  async catalogAt(address: string): Promise<string[]> {
    const names = Object.keys(await this.#get("/v1/catalog/services") as Record<string, unknown>);
    const out: string[] = [];
    for (const name of names) {
      const entries = await this.#get(`/v1/catalog/service/${name}`) as
        | { ServiceID: string; ServiceAddress: string }[]
        | undefined;
      for (const e of entries ?? []) if (e.ServiceAddress === address) out.push(`${name}/${e.ServiceID}`);
    }
    return out.sort();
  }

  // ---- MySQL, over TCP from the root namespace

  app(node: ContainerNode, connectTimeoutMs = 2000): Promise<MysqlClient> {
    return MysqlClient.connect({
      host: node.address,
      port: 3306,
      user: "app",
      password: new Secret(this.secrets.app),
      connectTimeoutMs,
    });
  }

  /** Replication state, read with the replication account (SLAVE MONITOR). */
  async replicaStatus(node: ContainerNode): Promise<Record<string, unknown> | undefined> {
    await using db = await MysqlClient.connect({
      host: node.address,
      port: 3306,
      user: "repl",
      password: new Secret(this.secrets.repl),
      connectTimeoutMs: 2000,
    });
    return (await db.query("SHOW SLAVE STATUS", { timeoutMs: 3000 }))[0];
  }

  async readOnly(node: ContainerNode): Promise<boolean> {
    await using db = await this.app(node);
    return Number((await db.query("SELECT @@read_only AS ro", { timeoutMs: 3000 }))[0].ro) === 1;
  }

  async sql(
    node: ContainerNode,
    sql: string,
    values: (string | number)[] = [],
  ): Promise<Record<string, unknown>[]> {
    await using db = await this.app(node);
    return await db.query({ sql, values }, { timeoutMs: 10_000 });
  }

  /**
   * What is still wrong with "`primary` is the writable lock holder and every one of `replicas` replicates
   * from it, read-only; Consul shows `mysql` passing for all of them and `mysql-primary` passing for exactly
   * the primary" (undefined when nothing is).
   */
  async problems(primary: ContainerNode, replicas: readonly ContainerNode[]): Promise<string | undefined> {
    const holder = await this.lockHolder();
    if (holder !== primary.name) return `the primary lock names ${holder ?? "nobody"}, not ${primary.name}`;
    if (await this.readOnly(primary)) return `${primary.name} holds the lock but is read-only`;
    for (const r of replicas) {
      if (!(await this.readOnly(r))) return `${r.name} is writable`;
      const s = await this.replicaStatus(r);
      if (!s) return `${r.name} does not replicate`;
      if (
        s.Master_Host !== primary.address || s.Slave_IO_Running !== "Yes" || s.Slave_SQL_Running !== "Yes"
      ) {
        return `${r.name} replicates from ${s.Master_Host} (IO ${s.Slave_IO_Running}, SQL ${s.Slave_SQL_Running}` +
          `${s.Last_IO_Error ? `, ${s.Last_IO_Error}` : ""}${
            s.Last_SQL_Error ? `, ${s.Last_SQL_Error}` : ""
          })`;
      }
    }
    const all = [primary, ...replicas].map((n) => n.address).sort();
    const mysql = await this.passing("mysql");
    if (JSON.stringify(all.filter((a) => mysql.includes(a))) !== JSON.stringify(all)) {
      return `Consul's mysql passes for [${mysql}], not for all of [${all}]`;
    }
    const primaries = await this.passing("mysql-primary");
    if (JSON.stringify(primaries) !== JSON.stringify([primary.address])) {
      return `Consul's mysql-primary passes for [${primaries}], not for exactly ${primary.address}`;
    }
    return undefined;
  }

  /** Waits until {@linkcode problems} finds nothing; returns how long it took. */
  async settle(
    primary: ContainerNode,
    replicas: readonly ContainerNode[],
    timeoutMs = 120_000,
  ): Promise<number> {
    const t0 = performance.now();
    const what = `${primary.name} primary${
      replicas.length ? `, ${replicas.map((r) => r.name)} its replicas` : ""
    }`;
    await waitFor(what, async () => {
      for (const n of [primary, ...replicas]) {
        if (!n.running) throw new Error(`${n.name} is not running: ${await lastLines(n)}`);
      }
      const p = await this.problems(primary, replicas);
      if (p) throw new Error(p);
      return true;
    }, { timeoutMs, intervalMs: 500 });
    return performance.now() - t0;
  }

  /** The live node the primary lock names, once it is writable (waits). */
  async primaryAmong(nodes: readonly ContainerNode[], timeoutMs = 90_000): Promise<ContainerNode> {
    return await waitFor(`a writable primary among ${nodes.map((n) => n.name)}`, async () => {
      const holder = await this.lockHolder();
      const node = nodes.find((n) => n.name === holder);
      if (!node) throw new Error(`the primary lock names ${holder ?? "nobody"}`);
      if (await this.readOnly(node)) throw new Error(`${node.name} holds the lock but is read-only`);
      return node;
    }, { timeoutMs, intervalMs: 200 });
  }
}

async function lastLines(node: ContainerNode, n = 15): Promise<string> {
  return (await node.log()).trimEnd().split("\n").slice(-n).join("\n");
}

/**
 * Tries a write on every node of `nodes` every 100 ms until one acknowledges it; returns that node and the
 * time since `t0` (performance.now()).
 */
/**
 * Busy loops (one `sh` each) that load the host's cores until disposed; started through the harness's process
 * group, so a test process that dies leaves none running.
 */
async function busyLoops(h: Harness, count: number): Promise<AsyncDisposable> {
  const loops = await Promise.all(Array.from({ length: count }, (_, i) =>
    h.group.spawn({
      name: `busy loop ${i + 1}`,
      program: "/bin/sh",
      args: ["-c", "while :; do :; done"],
      logFile: `${h.dir}/busy-loop.log`,
    })));
  return { [Symbol.asyncDispose]: async () => void await Promise.all(loops.map((p) => stop(p.pid))) };
}

/**
 * Polls every 50 ms until one of `nodes` answers writable and, after that, is the one passing instance of
 * `mysql-primary`: when each was first seen, from `t0`.
 */
async function primaryServiceLag(
  c: CpCluster,
  nodes: readonly ContainerNode[],
  t0: number,
): Promise<{ node: ContainerNode; writableMs: number; advertisedMs: number }> {
  let writable: { node: ContainerNode; ms: number } | undefined;
  return await waitFor("a new primary in mysql-primary", async () => {
    if (writable === undefined) {
      const found = await Promise.all(
        nodes.map((n) => c.readOnly(n).then((ro) => ro ? undefined : n, () => undefined)),
      );
      const node = found.find((n) => n !== undefined);
      if (node) writable = { node, ms: performance.now() - t0 };
      else return undefined;
    }
    const passing = await c.passing("mysql-primary").catch(() => []);
    if (passing.length !== 1 || passing[0] !== writable.node.address) return undefined;
    return { node: writable.node, writableMs: writable.ms, advertisedMs: performance.now() - t0 };
  }, { timeoutMs: 120_000, intervalMs: 50 });
}

async function firstWrite(
  c: CpCluster,
  nodes: readonly ContainerNode[],
  t0: number,
  timeoutMs = 120_000,
): Promise<{ node: ContainerNode; ms: number }> {
  const conns = new Map<ContainerNode, MysqlClient>();
  try {
    return await waitFor(`a write acknowledged by one of ${nodes.map((n) => n.name)}`, async () => {
      const tries = nodes.map(async (n) => {
        try {
          let db = conns.get(n);
          if (!db) {
            db = await c.app(n, 1000);
            conns.set(n, db);
          }
          await db.query({ sql: "INSERT INTO app.probe (node) VALUES (?)", values: [n.name] }, {
            timeoutMs: 2000,
          });
          return { node: n, ms: performance.now() - t0 };
        } catch (e) {
          if (!(e instanceof MysqlQueryError)) {
            await conns.get(n)?.close().catch(() => {});
            conns.delete(n);
          }
          return undefined;
        }
      });
      return (await Promise.all(tries)).find((r) => r !== undefined);
    }, { timeoutMs, intervalMs: 100 });
  } finally {
    for (const db of conns.values()) await db.close().catch(() => {});
  }
}

/**
 * Stops the primary `old` with SIGTERM while writing keys to it in a loop until it refuses one; then checks
 * another node of `others` became the writable primary and has every key `old` acknowledged.
 */
async function stopPrimaryUnderWrites(
  c: CpCluster,
  old: ContainerNode,
  others: readonly ContainerNode[],
  firstId: number,
): Promise<
  { stop: StopResult; successor: ContainerNode; acked: number; refusedMs: number; firstWriteMs: number }
> {
  const acked: number[] = [];
  let t0 = 0;
  let refusedAt = 0;
  let refusal = "";
  const db = await c.app(old);
  const writes = (async () => {
    try {
      for (let id = firstId; acked.length < 1_000_000; id++) {
        try {
          await db.query({ sql: "INSERT INTO app.acked (id) VALUES (?)", values: [id] }, {
            timeoutMs: 10_000,
          });
          acked.push(id);
        } catch (e) {
          refusedAt = performance.now();
          refusal = e instanceof Error ? e.message : String(e);
          return;
        }
      }
    } finally {
      await db.close().catch(() => {});
    }
  })();
  await waitFor("the first writes on the primary", () => acked.length >= 20 || refusedAt > 0, {
    timeoutMs: 10_000,
  });
  assert(refusedAt === 0, `${old.name} refused a write before it was stopped: ${refusal}`);
  t0 = performance.now();
  const stopping = old.stop({ graceMs: STOP_GRACE_MS });
  const next = firstWrite(c, others, t0, STOP_GRACE_MS);
  await writes;
  const [stop, first] = await Promise.all([stopping, next]);
  report(`  writes on ${old.name} refused ${secs(refusedAt - t0)} after SIGTERM (${refusal.slice(0, 120)})`);
  const successor = await c.primaryAmong(others);
  assertEquals(first.node.name, successor.name, "the node that took the first write is the lock holder");
  const ids = new Set(
    (await c.sql(successor, "SELECT id FROM app.acked WHERE id >= ?", [firstId])).map((r) => Number(r.id)),
  );
  const lost = acked.filter((id) => !ids.has(id));
  assertEquals(
    lost,
    [],
    `${lost.length} of ${acked.length} acknowledged writes are missing on ${successor.name}`,
  );
  return { stop, successor, acked: acked.length, refusedMs: refusedAt - t0, firstWriteMs: first.ms };
}

// ---------------------------------------------------------------------------------------------------------
// logs

const CRASH_RECOVERY = /crash recovery/i;
const MYSQLD_SHUTDOWN_COMPLETE = /^\S+ mysql \d+ .*(mysqld|mariadbd): Shutdown complete$/m;
const MYSQLD_READY = /(mysqld|mariadbd): ready for connections/;

/**
 * Whether a ContainerPilot log line is at WARN or ERROR level, and whose it is. ContainerPilot's `default`
 * format prints no level, so its own warnings and errors are known by their texts (`commands.go`,
 * `discovery/`, `telemetry/`); autopilot's and mysqld's carry their level.
 */
function problemOf(line: string): string | undefined {
  if (/\[(WRN|ERR|FTL|CRT)\]/.test(line)) return "autopilot";
  if (/\[(Warning|ERROR)\]/.test(line)) return "mysqld";
  if (/\[(INF|DBG|Note)\]/.test(line)) return undefined;
  if (
    /exited with error|timeout after|\bfailed\b|unable to start|\berror\b|invalid metric|non-numeric/i.test(
      line,
    )
  ) {
    return "containerpilot";
  }
  return undefined;
}

/** A line without its timestamp, pids and numbers, so that repeats of one message compare equal. */
function normalized(line: string): string {
  return line.replace(/^\S+\s+/, "").replace(/\b[0-9a-f]{8}-[0-9a-f-]{27}\b/g, "<id>").replace(/\d+/g, "N");
}

// ---------------------------------------------------------------------------------------------------------
// telemetry

interface DeclaredMetric {
  name: string;
  type: string;
}

async function declaredMetrics(c: CpCluster, node: ContainerNode): Promise<DeclaredMetric[]> {
  const cfg = JSON5.parse(await c.host.renderedConfig(node.containerEnv())) as {
    telemetry?: { metrics?: { namespace?: string; subsystem?: string; name: string; type: string }[] };
  };
  const metrics = cfg.telemetry?.metrics ?? [];
  assert(metrics.length > 0, "containerpilot.json5 declares no telemetry metrics");
  return metrics.map((m) => ({
    name: [m.namespace, m.subsystem, m.name].filter((p) => p).join("_"),
    type: m.type,
  }));
}

/** `/metrics` of a node: each sample's value by its name with labels, and each `# TYPE`. */
async function scrape(
  node: ContainerNode,
): Promise<{ types: Map<string, string>; values: Map<string, number> }> {
  const res = await fetch(`http://${node.address}:9090/metrics`, { signal: AbortSignal.timeout(3000) });
  const text = await res.text();
  if (!res.ok) throw new Error(`GET /metrics on ${node.name}: HTTP ${res.status}`);
  const types = new Map<string, string>();
  const values = new Map<string, number>();
  for (const line of text.split("\n")) {
    const t = line.match(/^# TYPE (\S+) (\S+)$/);
    if (t) types.set(t[1], t[2]);
    const v = line.match(/^([a-zA-Z_:][\w:]*(?:\{[^}]*\})?) (\S+)$/);
    if (v) values.set(v[1], Number(v[2]));
  }
  return { types, values };
}

// ---------------------------------------------------------------------------------------------------------
// the tests

Deno.test({
  name: "containerpilot: a 3-node cluster assembles, fails over, stops cleanly and stays quiet",
  ignore: SKIP !== undefined,
  fn: async (t) => {
    await using h = await Harness.create({ nodes: 3 });
    await using c = await CpCluster.create(h);
    const [n1, n2, n3] = [c.add(1), c.add(2), c.add(3)];
    const all = [n1, n2, n3];
    const live = () => all.filter((n) => n.running);
    let catalogWatch: Promise<{ goneMs?: number; left: string[] }> | undefined;
    const stopWatch = new AbortController();
    const ok: Record<string, boolean> = {};
    /** A step; `needs` names earlier steps (by key) without which it cannot run. */
    const step = async (key: string, name: string, needs: string[], fn: () => Promise<void>) => {
      const missing = needs.filter((n) => !ok[n]);
      ok[key] = await t.step({
        name: missing.length ? `${name} (not run: needs ${missing.join(", ")})` : name,
        ignore: missing.length > 0,
        fn: async () => {
          try {
            await fn();
          } catch (e) {
            for (const n of all) report(`  ${n.name} log tail:\n${await lastLines(n, 25)}`);
            throw e;
          }
        },
      }) && missing.length === 0;
    };

    try {
      await step(
        "bootstrap",
        "bootstrap: one node becomes primary, two more become replicas restored from its snapshot",
        [],
        async () => {
          let t0 = performance.now();
          await n1.start();
          await c.settle(n1, [], 120_000);
          report(`n1 start to writable primary, passing in Consul: ${secs(performance.now() - t0)}`);
          await n1.waitForLog(/No snapshot published: initialising an empty datadir/, { timeoutMs: 1000 });
          await using app = await c.app(n1);
          await app.run([
            "CREATE TABLE app.t (id INT PRIMARY KEY)",
            "CREATE TABLE app.acked (id INT PRIMARY KEY)",
            "CREATE TABLE app.probe (id INT AUTO_INCREMENT PRIMARY KEY, node VARCHAR(8))",
            "INSERT INTO app.t VALUES (1)",
          ]);
          t0 = performance.now();
          await Promise.all([n2.start(), n3.start()]);
          await c.settle(n1, [n2, n3], 180_000);
          report(`n2 and n3 start to replicating, passing in Consul: ${secs(performance.now() - t0)}`);
          for (const n of [n2, n3]) await n.waitForLog(/Restoring snapshot \S+/, { timeoutMs: 1000 });
          t0 = performance.now();
          await app.query("INSERT INTO app.t VALUES (2)");
          for (const n of [n2, n3]) {
            await waitFor(`row 2 on ${n.name}`, async () => {
              return (await c.sql(n, "SELECT COUNT(*) AS n FROM app.t"))[0].n == 2;
            }, { timeoutMs: 15_000, intervalMs: 20 });
          }
          report(`a row reached both replicas in ${secs(performance.now() - t0)}`);
          for (const n of [n2, n3]) {
            const refused = await c.sql(n, "INSERT INTO app.t VALUES (3)").then(() => undefined, (e) => e);
            assert(
              refused instanceof MysqlQueryError && refused.errno === 1290,
              `${n.name} accepted a write`,
            );
          }
          assertEquals(await c.passing("mysql"), all.map((n) => n.address).sort());
          assertEquals(await c.passing("mysql-primary"), [n1.address]);
        },
      );

      await step("telemetry", "telemetry: every declared metric is served, with the values the hooks sent", [
        "bootstrap",
      ], async () => {
        const declared = await declaredMetrics(c, n1);
        const expectRole = new Map([[n1, 2], [n2, 1], [n3, 1]]);
        for (const [node, role] of expectRole) {
          const got = await waitFor(`${node.name}'s metrics after a health pass`, async () => {
            const s = await scrape(node);
            const v = (m: string) => s.values.get(`autopilot_mysql_${m}`);
            if (v("role") !== role || v("healthy") !== 1 || !((v("health_checks_total") ?? 0) > 0)) {
              throw new Error(
                `role ${v("role")} (want ${role}), healthy ${v("healthy")}, health_checks_total ${
                  v("health_checks_total")
                }`,
              );
            }
            return s;
          }, { timeoutMs: 30_000, intervalMs: 1000 });
          const missing = declared.filter((m) => got.types.get(m.name) !== m.type).map((m) =>
            `${m.name} (${m.type}; served as ${got.types.get(m.name) ?? "nothing"})`
          );
          assertEquals(missing, [], `${node.name} does not serve every declared metric`);
          if (role === 2) {
            // ContainerPilot's binlog-archive task runs on its interval; the primary archives the bootstrap's
            // binlog.
            await node.waitForLog(/Archived \d+ binlog file\(s\)/, { timeoutMs: 30_000 });
            await waitFor(`${node.name}'s archiving metrics`, async () => {
              const runs = (await scrape(node)).values.get("autopilot_mysql_binlog_archive_runs_total") ?? 0;
              if (!(runs > 0)) throw new Error(`binlog_archive_runs_total ${runs}`);
              return true;
            }, { timeoutMs: 15_000, intervalMs: 1000 });
          }
          report(
            `${node.name} /metrics: ${declared.length} declared metrics served; role ${
              got.values.get("autopilot_mysql_role")
            }, health_checks_total ${got.values.get("autopilot_mysql_health_checks_total")}`,
          );
        }
      });

      await step(
        "log noise",
        "log noise: a steady cluster logs at most 5 lines a minute per node, no recurring warning",
        ["bootstrap"],
        async () => {
          await c.settle(n1, [n2, n3]);
          await delay(10_000); // the joins' last messages (watch events, first checks) are not steady state
          await c.settle(n1, [n2, n3]);
          const windowMs = 120_000;
          const marks = await Promise.all(all.map((n) => n.logMark()));
          await delay(windowMs);
          const ends = await Promise.all(all.map((n) => n.logMark()));
          const problems: string[] = [];
          for (const [i, n] of all.entries()) {
            const lines = await n.logSince(marks[i], ends[i]);
            const perMinute = lines.length / (windowMs / 60_000);
            report(
              `${n.name}: ${lines.length} log lines in ${windowMs / 1000} s (${
                perMinute.toFixed(1)
              } a minute)`,
            );
            // Every line, one per distinct message (numbers and ids masked), with its count.
            const distinct = new Map<string, number>();
            for (const l of lines) distinct.set(normalized(l), (distinct.get(normalized(l)) ?? 0) + 1);
            for (const [l, count] of distinct) {
              report(`  ${n.name} | ${String(count).padStart(3)} x ${l}`);
              if (count > 1 && problemOf(l)) problems.push(`${n.name}: ${count} times: ${l}`);
            }
            if (perMinute > 5) problems.push(`${n.name}: ${perMinute.toFixed(1)} lines a minute (at most 5)`);
          }
          assertEquals(problems, [], "log noise at steady state");
        },
      );

      await step(
        "kill -9",
        "kill -9 of the primary's mysqld: ContainerPilot restarts it, one primary takes writes, every node replicates",
        ["bootstrap"],
        async () => {
          const old = await c.primaryAmong(live());
          const others = live().filter((n) => n !== old);
          await c.settle(old, others);
          // A write just before the kill leaves redo to recover, so the restart must report crash recovery: the
          // check that a clean stop's next start does none can tell the two apart.
          await c.sql(old, "INSERT INTO app.probe (node) VALUES ('kill')");
          const mark = await old.logMark();
          const t0 = performance.now();
          const pid = await old.killMysqld();
          // The old node is tried too: if it takes writes again, it resumed the role and nobody replaced it.
          const [first, restarted] = await Promise.all([
            firstWrite(c, [old, ...others], t0),
            old.waitForMysqld({ not: pid }).then(() => performance.now() - t0),
          ]);
          await old.waitForLog(MYSQLD_READY, { since: mark, timeoutMs: 60_000 });
          const restartLog = (await old.logSince(mark)).join("\n");
          assert(
            CRASH_RECOVERY.test(restartLog),
            `${old.name}'s restarted mysqld reported no crash recovery`,
          );
          report(`kill -9 of ${old.name}'s mysqld: ContainerPilot restarted it after ${secs(restarted)}`);
          report(
            `kill -9 of ${old.name}'s mysqld: first write acknowledged by ${first.node.name} after ${
              secs(first.ms)
            }`,
          );
          // ContainerPilot restarts mysqld at once, so the old primary's next pass usually finds it up again and
          // keeps the role (nothing it acknowledged is lost that way); when a failover won the race instead, the
          // old node rejoins the new primary. Either way: one writable primary, the others its replicas.
          report(
            first.node === old
              ? `kill -9: ${old.name} kept the primary role on its restarted mysqld`
              : `kill -9: ${first.node.name} took over from ${old.name}`,
          );
          const successor = await c.primaryAmong(live());
          assertEquals(successor, first.node, "the node that took the first write is the primary");
          await c.settle(successor, live().filter((n) => n !== successor), 120_000);
          report(
            `kill -9: every node a replica of ${successor.name} ${
              secs(performance.now() - t0)
            } after the kill`,
          );
        },
      );

      await step(
        "whole-node kill",
        "whole-node kill of the primary, on a loaded host: failover, the new primary in mysql-primary as soon " +
          "as it is writable, and the dead node leaves the Consul catalog",
        ["bootstrap"],
        async () => {
          const old = await c.primaryAmong(live());
          const others = live().filter((n) => n !== old);
          await c.settle(old, others);
          const before = await c.catalogAt(old.address);
          assert(before.length > 0, `the catalog shows nothing at ${old.address} before the kill`);
          // A loaded host: as many busy loops as cores, for the whole failover.
          await using _load = await busyLoops(c.h, navigator.hardwareConcurrency);
          const t0 = performance.now();
          const advertised = primaryServiceLag(c, others, t0);
          await old.kill();
          catalogWatch = (async () => {
            let left = before;
            // The primary removes them once the node has been gone for SWEEP_GRACE_MS (src/services.ts).
            while (performance.now() - t0 < SWEEP_GRACE_MS + 120_000 && !stopWatch.signal.aborted) {
              left = await c.catalogAt(old.address).catch(() => left);
              if (left.length === 0) return { goneMs: performance.now() - t0, left };
              await delay(2000);
            }
            return { left };
          })();
          const first = await firstWrite(c, others, t0);
          report(
            `whole-node kill of ${old.name}: first write on the new primary ${first.node.name} after ${
              secs(first.ms)
            }`,
          );
          const successor = await c.primaryAmong(others);
          const lag = await advertised;
          report(
            `whole-node kill, host loaded: ${lag.node.name} writable ${
              secs(lag.writableMs)
            } after the kill, ` +
              `passing in mysql-primary ${secs(lag.advertisedMs)} after it (${
                secs(lag.advertisedMs - lag.writableMs)
              } later, as seen by polling both every 50 ms)`,
          );
          assertEquals(lag.node, successor, "the node in mysql-primary is the new primary");
          await c.settle(successor, others.filter((n) => n !== successor));
          report(
            `whole-node kill: cluster settled ${secs(performance.now() - t0)} after the kill; ` +
              `catalog entries of ${old.name} then: ${before.join(", ")} (watched in the background)`,
          );
        },
      );

      await step(
        "replica restart",
        "SIGTERM of a replica, then its restart keeping its datadir: a replica again, no restore",
        ["bootstrap"],
        async () => {
          const primary = await c.primaryAmong(live());
          const replica = live().find((n) => n !== primary);
          assert(replica, "no live replica");
          await c.settle(primary, live().filter((n) => n !== primary));
          const stop = await replica.stop({ graceMs: STOP_GRACE_MS });
          report(
            `SIGTERM of replica ${replica.name}: every process exited after ${secs(stop.ms)}` +
              (stop.exitedByItself ? "" : ` (did not exit within ${STOP_GRACE_MS / 1000} s: killed)`),
          );
          assert(stop.exitedByItself, `${replica.name} did not exit within the stop grace period`);
          assert(
            MYSQLD_SHUTDOWN_COMPLETE.test(await replica.log()),
            `${replica.name}'s mysqld did not shut down cleanly`,
          );
          const t0 = performance.now();
          // The restart also switches BACKUP_ON_STOP on for this node (a container re-created with a new
          // env_file, same volumes), for the last step.
          await replica.start({ env: { BACKUP_ON_STOP: "true" } });
          await c.settle(primary, live().filter((n) => n !== primary), 120_000);
          report(
            `restart of replica ${replica.name} on its datadir: replicating after ${
              secs(performance.now() - t0)
            }`,
          );
          const log = await replica.log();
          assert(
            /already holds a database: left untouched/.test(log),
            `${replica.name}'s pre-start did not keep its datadir`,
          );
          assert(!/Restoring snapshot/.test(log), `${replica.name} restored a snapshot on restart`);
          assert(!CRASH_RECOVERY.test(log), `${replica.name}'s mysqld did crash recovery after a clean stop`);
        },
      );

      await step(
        "primary stop",
        "SIGTERM of the primary: handover without losing a write, clean shutdown, clean restart",
        ["bootstrap"],
        async () => {
          const old = await c.primaryAmong(live());
          const others = live().filter((n) => n !== old);
          await c.settle(old, others);
          const r = await stopPrimaryUnderWrites(c, old, others, 1_000_000);
          report(
            `SIGTERM of primary ${old.name}: every process exited after ${secs(r.stop.ms)}` +
              (r.stop.exitedByItself ? "" : " (killed at the grace period)") +
              `; ${r.acked} writes acknowledged, none lost; first write on ${r.successor.name} ${
                secs(r.firstWriteMs)
              } after SIGTERM`,
          );
          assert(r.stop.exitedByItself, `${old.name} did not exit within the stop grace period`);
          assert(
            MYSQLD_SHUTDOWN_COMPLETE.test(await old.log()),
            `${old.name}'s mysqld did not shut down cleanly`,
          );
          const t0 = performance.now();
          await old.start();
          await c.settle(r.successor, live().filter((n) => n !== r.successor), 120_000);
          report(
            `restart of the old primary ${old.name}: a replica of ${r.successor.name} after ${
              secs(performance.now() - t0)
            }`,
          );
          const log = await old.log();
          assert(MYSQLD_READY.test(log));
          assert(!CRASH_RECOVERY.test(log), `${old.name}'s mysqld did crash recovery after a clean stop`);
          assert(!/Restoring snapshot/.test(log), `${old.name} restored a snapshot on restart`);
        },
      );

      await step(
        "backup on stop",
        "SIGTERM of the primary with BACKUP_ON_STOP=true: a last snapshot, then the handover",
        ["bootstrap"],
        async () => {
          const old = await c.primaryAmong(live());
          assertEquals(
            old.env.BACKUP_ON_STOP,
            "true",
            `the primary ${old.name} is not the node restarted with BACKUP_ON_STOP`,
          );
          const others = live().filter((n) => n !== old);
          await c.settle(old, others);
          const before = await c.lastBackup();
          const r = await stopPrimaryUnderWrites(c, old, others, 2_000_000);
          report(
            `SIGTERM of primary ${old.name} with BACKUP_ON_STOP: every process exited after ${
              secs(r.stop.ms)
            }` +
              (r.stop.exitedByItself ? "" : " (killed at the grace period)") +
              `; ${r.acked} writes acknowledged, none lost; first write on ${r.successor.name} ${
                secs(r.firstWriteMs)
              } after SIGTERM`,
          );
          assert(r.stop.exitedByItself, `${old.name} did not exit within the stop grace period`);
          const after = await c.lastBackup();
          assert(after !== undefined && after !== before, `no new snapshot was published (still ${before})`);
          const files = [...Deno.readDirSync(c.host.snapshotsDir)].map((e) => e.name);
          assert(
            files.includes(`${after}.manifest.json`),
            `${after} is not in the snapshots dir: ${files.join(", ")}`,
          );
          report(`BACKUP_ON_STOP: ${old.name} published ${after} (before: ${before})`);
          assert(
            MYSQLD_SHUTDOWN_COMPLETE.test(await old.log()),
            `${old.name}'s mysqld did not shut down cleanly`,
          );
        },
      );

      await step(
        "catalog",
        "the killed node's entries left the Consul catalog",
        ["whole-node kill"],
        async () => {
          assert(catalogWatch, "the whole-node kill did not run");
          const r = await catalogWatch;
          const waited = `${(SWEEP_GRACE_MS + 120_000) / 1000} s`;
          if (r.goneMs !== undefined) {
            report(`the killed node's catalog entries were gone ${secs(r.goneMs)} after the kill`);
          } else {
            report(
              `the killed node's catalog entries were still there ${waited} after the kill: ${
                r.left.join(", ")
              }`,
            );
          }
          assertEquals(r.left, [], `catalog entries left ${waited} after the whole-node kill`);
        },
      );
    } finally {
      stopWatch.abort();
      await catalogWatch;
      if (keepFiles()) report(`files kept in ${h.dir}`);
    }
  },
});

Deno.test({
  name:
    "containerpilot: a node in a 1 GiB memory cgroup sizes its buffer pool from it and survives a data load",
  ignore: SKIP !== undefined,
  fn: async (t) => {
    await using h = await Harness.create({ nodes: 1 });
    await using c = await CpCluster.create(h);
    const n1 = c.add(1, { INNODB_BUFFER_POOL_SIZE: undefined }, GIB);
    await n1.start();
    const booted = await t.step("the node sees its limit and becomes primary", async () => {
      // What the node sees is the harness's doing; this checks it is a container's view.
      const v1 = await n1.exec(["cat", "/sys/fs/cgroup/memory/memory.limit_in_bytes"]);
      const seen = v1.success ? v1 : await n1.exec(["cat", "/sys/fs/cgroup/memory.max"]);
      assertEquals(
        seen.stdout.trim(),
        String(GIB),
        `the node does not see its cgroup's limit: ${seen.stderr}`,
      );
      await c.settle(n1, [], 120_000).catch(async (e) => {
        report(`  n1 log tail:\n${await lastLines(n1, 25)}`);
        throw e;
      });
    });
    await t.step({
      name: "my.cnf's buffer pool derives from the 1 GiB limit",
      ignore: !booted,
      fn: async () => {
        const cnf = await Deno.readTextFile(`${n1.dir}/autopilot/my.cnf`);
        const pool = cnf.match(/^innodb_buffer_pool_size = (\S+)$/m)?.[1];
        const [server] = await c.sql(n1, "SELECT @@innodb_buffer_pool_size AS b");
        report(
          `memory: my.cnf innodb_buffer_pool_size = ${pool}; the server runs with ${
            Number(server.b) / 2 ** 20
          } MiB`,
        );
        assertEquals(
          pool,
          `${bufferPoolBytes(GIB) / 2 ** 20}M`,
          "the buffer pool does not derive from the 1 GiB limit",
        );
        // pre-start says where the figure came from, in one INFO line (never a silent fallback).
        const said = (await n1.log()).split("\n").find((l) => l.includes("innodb_buffer_pool_size = "));
        report(`memory: pre-start said: ${said?.replace(/^.*autopilot·pre-start: /, "")}`);
        assert(said?.includes("from the container's memory limit of 1024M"), `pre-start's line: ${said}`);
        // Like a container on a cgroup v1 host, the node sees its cgroup at the mount's root while
        // /proc/self/cgroup names its path from the host's: Deno's process.constrainedMemory() finds nothing
        // there, and the limit is the one the image's entrypoint passed on.
        const env = await n1.exec(["sh", "-c", "tr '\\0' '\\n' < /proc/1/environ"]);
        assert(
          /^AUTOPILOT_CGROUP_MEMORY_LIMIT=1073741824$/m.test(env.stdout),
          "the entrypoint passed no limit",
        );
      },
    });
    await t.step({
      name: "a load of 500k 1-KB rows, more than the buffer pool holds, does not get mysqld OOM-killed",
      ignore: !booted,
      fn: async () => {
        const pid = n1.mysqldPid();
        const rows = 500_000; // about 550 MB: more than the 448 MiB pool, so the pool fills
        const batch = 10_000;
        const t0 = performance.now();
        let failed: unknown;
        try {
          await using app = await c.app(n1);
          await app.query("CREATE TABLE app.load (id INT PRIMARY KEY, pad VARCHAR(1000)) ENGINE=InnoDB");
          for (let from = 1; from <= rows; from += batch) {
            await app.query(
              `INSERT INTO app.load SELECT seq, REPEAT(SHA1(seq), 25) FROM app.seq_${from}_to_${
                from + batch - 1
              }`,
              { timeoutMs: 120_000 },
            );
          }
        } catch (e) {
          failed = e;
        }
        const cgroup = n1.cgroup!;
        const oomKills = cgroup.oomKills();
        const peakBytes = cgroup.peakBytes();
        const peak = peakBytes === undefined ? "unknown" : `${(peakBytes / 2 ** 20).toFixed(0)} MiB`;
        report(
          `memory: the load of ${rows} rows ${failed ? "failed" : "finished"} after ${
            secs(performance.now() - t0)
          }; ` +
            `cgroup peak ${peak}, OOM kills ${oomKills}, mysqld pid ${pid} then ${n1.mysqldPid()}`,
        );
        const why = failed ? ` (the load failed: ${failed instanceof Error ? failed.message : failed})` : "";
        assertEquals(oomKills, 0, `the OOM killer ran in the node's cgroup${why}`);
        assertEquals(n1.mysqldPid(), pid, `mysqld was restarted during the load${why}`);
        if (failed) throw failed;
        const [count] = await c.sql(n1, "SELECT COUNT(*) AS n FROM app.load");
        assertEquals(Number(count.n), rows);
      },
    });
  },
});

Deno.test({
  name: "containerpilot: bad input is one clear line, a container that exits or retries, never a half-made " +
    "datadir or a primary advertised without its first snapshot",
  ignore: SKIP !== undefined,
  fn: async (t) => {
    await using h = await Harness.create({ nodes: 3 });
    await using c = await CpCluster.create(h);
    const datadirEntries = async (n: ContainerNode) => {
      const out: string[] = [];
      for await (const e of Deno.readDir(`${n.dir}/mysql`)) out.push(e.name);
      return out;
    };

    await t.step(
      "a missing password: the container exits 2 with one line per problem, nothing made",
      async () => {
        const n = c.add(1, { MYSQL_REPL_PASSWORD: undefined });
        const started = await n.start().then(() => undefined, (e: Error) => e);
        assert(started !== undefined, "the container kept running with an invalid configuration");
        const log = await n.log();
        report(`missing password: ${log.trim().split("\n").join(" | ")}`);
        assertEquals(
          log.trim(),
          "autopilot: invalid configuration: MYSQL_REPL_PASSWORD is required (replication user's password)",
        );
        assertEquals(await datadirEntries(n), [], "nothing in the datadir's volume");
      },
    );

    await t.step(
      "Consul unreachable: pre-start retries with one line each time, then comes up by itself",
      async () => {
        const port = h.consul.port;
        await stop(h.consul.pid);
        const n = c.add(2);
        await n.start();
        await n.waitForLog(/Attempt 2 failed: Cannot reach Consul/, { timeoutMs: 60_000 });
        const lines = (await n.log()).split("\n").filter((l) => /autopilot·pre-start/.test(l));
        report(`Consul unreachable: ${lines.at(-1)?.replace(/^.*autopilot·pre-start: /, "")}`);
        assertEquals(n.mysqldPid(), undefined, "mysqld started before pre-start succeeded");
        assertEquals(await datadirEntries(n), [], "pre-start made a datadir it could not finish");
        const self = await n.exec(["autopilot", "status", "--self"]);
        assertEquals(self.code, 1);
        assert(
          /pre-start|Cannot reach Consul/.test(self.stdout + self.stderr),
          `status --self: ${self.stdout}`,
        );
        report(
          `Consul unreachable: status --self says: ${(self.stdout + self.stderr).trim().split("\n")[0]}`,
        );
        const t0 = performance.now();
        await startConsul({
          httpPort: port,
          bindAddrs: ["127.0.0.1", h.net.hostAddress],
          dir: `${h.dir}/consul-again`,
          group: h.group,
        });
        await c.settle(n, [], 180_000);
        report(`Consul back: ${n.name} a writable primary ${secs(performance.now() - t0)} later, by itself`);
      },
    );

    await t.step(
      "an unwritable snapshot directory: the primary writes but is not advertised until a snapshot is stored",
      async () => {
        const primary = c.host.node(2);
        await primary.stop({ graceMs: STOP_GRACE_MS });
        // A fresh cluster whose store is a file where the directory should be.
        const n = c.add(3, {
          SNAPSHOT_DIR: "/var/lib/autopilot/snapshots/blocked/x",
          SERVICE_NAME: "blocked",
        });
        await Deno.writeTextFile(`${c.host.snapshotsDir}/blocked`, "");
        await n.start();
        await n.waitForLog(/First snapshot failed: /, { timeoutMs: 120_000 });
        await delay(12_000); // two more health passes
        const failed = (await n.log()).split("\n").filter((l) =>
          /First snapshot failed|No snapshot has been stored/.test(l)
        );
        report(
          `unwritable store: ${failed.length} line(s): ${failed.at(0)?.replace(/^.*autopilot·health: /, "")}`,
        );
        assertEquals(failed.length, 1, "the failure is one line, not one a pass");
        assertEquals(await c.passing("blocked-primary"), [], "advertised without a snapshot");
        assertEquals(await c.readOnly(n), false, "the primary writes meanwhile");
        await Deno.remove(`${c.host.snapshotsDir}/blocked`);
        const task = await n.exec(["autopilot", "snapshot"]); // what the 5-minute task does next
        assertEquals(task.code, 0, task.stderr);
        await waitFor(
          "the primary in blocked-primary",
          async () => (await c.passing("blocked-primary")).length === 1,
          {
            timeoutMs: 30_000,
            intervalMs: 500,
          },
        );
      },
    );
  },
});
