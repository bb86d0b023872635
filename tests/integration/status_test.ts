/**
 * `autopilot status` against a real three-node cluster (MariaDB in network namespaces, a real Consul agent):
 * run from a node's namespace and from the host namespace, before and after a kill -9 failover, as a table
 * and as JSON; and its exit code 2 when Consul cannot be reached or the usage is wrong.
 */
import { assert, assertEquals } from "../unit/assert.ts";
import { TABLE_COLUMNS } from "../../src/status.ts";
import { autopilot, type CliResult } from "./autopilot_cli.ts";
import { Cluster, SECRETS, type TestNode } from "./cluster.ts";
import { freePort, Harness, kill9, waitFor } from "./harness/mod.ts";

type Row = Record<(typeof TABLE_COLUMNS)[number], string>;

/** The table's node rows, keyed by node name (cells are separated by runs of two or more spaces). */
function tableRows(stdout: string): Map<string, Row> {
  const lines = stdout.split("\n");
  const header = lines.findIndex((l) => l.startsWith("NODE "));
  assert(header >= 0, `no table header in:\n${stdout}`);
  assertEquals(lines[header].split(/\s{2,}/), [...TABLE_COLUMNS]);
  const rows = new Map<string, Row>();
  for (const line of lines.slice(header + 1)) {
    if (line.trim() === "") break;
    const cells = line.split(/\s{2,}/);
    assertEquals(cells.length, TABLE_COLUMNS.length, `row '${line}'`);
    rows.set(cells[0], Object.fromEntries(TABLE_COLUMNS.map((c, i) => [c, cells[i]])) as Row);
  }
  return rows;
}

/** The report `status --json` printed, after checking that it survives a JSON round trip unchanged. */
// deno-lint-ignore no-explicit-any
function jsonReport(r: CliResult): any {
  const report = JSON.parse(r.stdout);
  assertEquals(JSON.stringify(report, null, 2), r.stdout.trim(), "JSON.parse then stringify changes nothing");
  return report;
}

/** The table and the JSON describe the same nodes. */
// deno-lint-ignore no-explicit-any
function assertSameNodes(rows: Map<string, Row>, report: any): void {
  assertEquals([...rows.keys()], report.nodes.map((n: { node: string }) => n.node));
  for (const n of report.nodes) {
    const row = rows.get(n.node)!;
    assertEquals(row.ADDRESS, `${n.address}:${n.port}`);
    assertEquals(row.ROLE, n.role);
    assertEquals(row.SERVER, n.reachable ? (n.readOnly ? "read-only" : "writable") : "unreachable");
    assertEquals(row["GTID EXECUTED"], n.gtidExecuted === null ? "?" : n.gtidExecuted || "-");
    assertEquals(row.ERRANT, n.errant === null ? "?" : n.errant || "-");
    assertEquals(row.LAG, n.replication ? (n.lagSeconds === null ? "?" : `${n.lagSeconds}s`) : "-");
    assertEquals(row.SOURCE, n.replication ? n.replication.sourceNode ?? n.replication.source : "-");
    assertEquals(row.CHECK.split(",")[0], n.checkStatus);
    assertEquals(n.check, n.checkStatus === "passing" ? "passing" : "not passing");
  }
}

async function gtidState(c: Cluster, node: TestNode): Promise<string> {
  return String((await c.sql(node, "SELECT @@gtid_binlog_state AS s"))[0].s);
}

async function source(c: Cluster, node: TestNode): Promise<string | undefined> {
  const [s] = await c.sql(node, "SHOW SLAVE STATUS");
  return s ? String(s.Master_Host) : undefined;
}

/**
 * What ContainerPilot does for the `mysql` service: register it with a TTL check in Consul, and after each
 * `autopilot health` pass or fail that check by the exit code.
 */
class ServiceChecks {
  constructor(readonly c: Cluster) {}

  async #put(path: string, body?: unknown): Promise<void> {
    const res = await fetch(`http://${this.c.consulAddr}${path}`, {
      method: "PUT",
      ...(body ? { body: JSON.stringify(body) } : {}),
      signal: AbortSignal.timeout(5000),
    });
    const text = await res.text();
    assert(res.ok, `PUT ${path}: ${res.status} ${text}`);
  }

  async register(node: TestNode): Promise<void> {
    await this.#put("/v1/agent/service/register", {
      ID: `mysql-${node.name}`,
      Name: "mysql",
      Address: node.address,
      Port: 3306,
      Check: { TTL: "120s" },
    });
  }

  /** Fails the node's check in Consul with `note` as its output, as ContainerPilot does when health fails. */
  async fail(node: TestNode, note: string): Promise<void> {
    await this.#put(`/v1/agent/check/fail/service:mysql-${node.name}?note=${encodeURIComponent(note)}`);
  }

  /** Removes the node's service from Consul's catalog. */
  async deregister(node: TestNode): Promise<void> {
    await this.#put(`/v1/agent/service/deregister/mysql-${node.name}`);
  }

  /** One `autopilot health` pass, reported to the node's TTL check. */
  async health(node: TestNode): Promise<CliResult> {
    const r = await this.c.run(node, ["health"]);
    await this.#put(`/v1/agent/check/${r.code === 0 ? "pass" : "fail"}/service:mysql-${node.name}`);
    return r;
  }
}

/** Runs health (reported to Consul's checks) on the nodes, round after round, until `done` holds. */
async function converge(
  checks: ServiceChecks,
  nodes: TestNode[],
  done: () => Promise<boolean>,
  timeoutMs = 40_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last: string[] = [];
  while (Date.now() < deadline) {
    const results = await Promise.all(nodes.map((n) => checks.health(n)));
    last = results.map((r, i) =>
      `${nodes[i].name} (${r.code}): ${r.stderr.split("\n").slice(-3).join(" / ")}`
    );
    if (await done()) return;
    await new Promise((r) => setTimeout(r, 300));
  }
  throw new Error(`the cluster did not converge in ${timeoutMs} ms:\n${last.join("\n")}`);
}

/** `status` with the INFO log level (the test nodes log at DEBUG), in a node's namespace. */
function statusOn(c: Cluster, node: TestNode, args: string[] = []): Promise<CliResult> {
  return c.run(node, ["status", ...args], { LOG_LEVEL: "INFO" });
}

/** `status` from the host namespace: only Consul's address and the replication password. */
function statusFromHost(c: Cluster, args: string[] = []): Promise<CliResult> {
  return autopilot(["status", ...args], { CONSUL: c.consulAddr, MYSQL_REPL_PASSWORD: SECRETS.repl });
}

Deno.test("status shows every node before and after a kill -9 failover, from a node and from the host", async () => {
  await using h = await Harness.create({ nodes: 3 });
  const c = await Cluster.create(h);
  const checks = new ServiceChecks(c);
  const [n1, n2, n3] = [1, 2, 3].map((k) => c.node(k));
  for (const node of [n1, n2, n3]) {
    const r = await c.boot(node);
    assertEquals(r.code, 0, `${node.name}: ${r.stderr}`);
    await checks.register(node);
    assertEquals((await checks.health(node)).code, 0);
  }
  await using app = await c.app(n1);
  await app.run(["CREATE TABLE app.t (id INT PRIMARY KEY)", "INSERT INTO app.t VALUES (1), (2), (3)"]);
  await app.close();
  for (const node of [n2, n3]) await waitFor(`rows on ${node.name}`, async () => (await c.rows(node)) === 3);

  // Healthy, seen from n2's namespace and from the host's.
  const gtid = await gtidState(c, n1);
  assert(gtid !== "", "the primary has executed transactions");
  for (const r of [await statusOn(c, n2), await statusFromHost(c)]) {
    assertEquals(r.code, 0, `${r.stdout}\n${r.stderr}`);
    assertEquals(r.stderr, "");
    const table = tableRows(r.stdout);
    assertEquals([...table.keys()], ["n1", "n2", "n3"]);
    assertEquals(table.get("n1"), {
      NODE: "n1",
      ADDRESS: `${n1.address}:3306`,
      ROLE: "primary",
      CHECK: "passing",
      SERVER: "writable",
      SOURCE: "-",
      "IO/SQL": "-",
      LAG: "-",
      "GTID EXECUTED": gtid,
      ERRANT: "-",
    });
    for (const node of [n2, n3]) {
      const row = table.get(node.name)!;
      assertEquals(
        [row.ROLE, row.CHECK, row.SERVER, row.SOURCE, row["IO/SQL"], row.ERRANT],
        ["replica", "passing", "read-only", "n1", "yes/yes", "-"],
      );
      assert(/^\d+s$/.test(row.LAG), row.LAG);
      assertEquals(row["GTID EXECUTED"], await gtidState(c, node));
    }
    assert(r.stdout.startsWith(`primary:   n1 (${n1.address}:3306)\nsnapshot:  mysql-backup-`), r.stdout);
    assert(r.stdout.includes("\nfailover:  automatic\n"), r.stdout);
    assert(
      r.stdout.trimEnd().split("\n").at(-1)!.startsWith("healthy: n1 is the writable primary"),
      r.stdout,
    );
  }

  // The same, as JSON, from n3's namespace.
  const json = await statusOn(c, n3, ["--json"]);
  assertEquals(json.code, 0, json.stderr);
  const report = jsonReport(json);
  assertEquals([report.format, report.healthy, report.problems, report.service], [1, true, [], "mysql"]);
  assertEquals(report.primary, { node: "n1", address: n1.address, port: 3306, held: true, ready: true });
  assertEquals(report.nodes[1].replication.io, "yes");
  assertEquals(report.nodes[1].flavour, "mariadb");
  assertSameNodes(tableRows((await statusOn(c, n3)).stdout), report);

  // A node whose Consul check fails although its server looks sound (a reason only its own health pass sees;
  // after Consul lost its data, every check was critical) makes the cluster unhealthy, with that one reason;
  // so does a node whose service is missing from Consul's catalog.
  await checks.fail(n2, "replica lag unknown");
  const critical = await statusFromHost(c);
  assertEquals(critical.code, 1, critical.stdout);
  assertEquals(
    critical.stderr,
    "autopilot status: unhealthy: n2: its mysql check in Consul is critical (check 'Service 'mysql' check': " +
      "replica lag unknown); its server looks sound from here: see that node's ContainerPilot log",
  );
  assertEquals(tableRows(critical.stdout).get("n2")!.CHECK, "critical");
  const criticalSelf = await statusOn(c, n2, ["--self"]);
  assertEquals(criticalSelf.code, 1, criticalSelf.stdout);
  assert(criticalSelf.stderr.includes("n2: its mysql check in Consul is critical"), criticalSelf.stderr);
  assertEquals((await statusOn(c, n3, ["--self"])).code, 0, "n3's own check passes");
  await checks.deregister(n3);
  const missing = await statusFromHost(c, ["--json"]);
  assertEquals(missing.code, 1, missing.stdout);
  const missingReport = jsonReport(missing);
  assertEquals(missingReport.problems.length, 2, missingReport.problems.join("\n"));
  assertEquals(
    missingReport.problems[1],
    "n3: has a member record but no mysql service in Consul's catalog (ContainerPilot registers it on that " +
      "node: is it running there?)",
  );
  assertEquals(missingReport.nodes.map((n: { checkStatus: string }) => n.checkStatus), [
    "passing",
    "critical",
    "missing",
  ]);
  await checks.register(n3);
  // Every node passes again, the primary too: its session and check must not lapse during what follows.
  for (const node of [n1, n2, n3]) assertEquals((await checks.health(node)).code, 0);
  assertEquals((await statusFromHost(c)).code, 0, "healthy again once the checks pass");

  // A replica whose threads are stopped makes the cluster unhealthy, and the reason names it.
  await c.sql(n3, "STOP SLAVE");
  const stopped = await statusOn(c, n1);
  assertEquals(stopped.code, 1);
  assertEquals(
    stopped.stderr,
    "autopilot status: unhealthy: n3: replication is not running (I/O thread: no, SQL thread: no)",
  );
  assertEquals(tableRows(stopped.stdout).get("n3")!["IO/SQL"], "no/no");
  await c.sql(n3, "START SLAVE");
  assertEquals((await checks.health(n1)).code, 0);

  // --self on the primary: healthy while writable; a lock holder that is read-only is not.
  const primarySelf = await statusOn(c, n1, ["--self"]);
  assertEquals(
    [primarySelf.code, primarySelf.stdout.trim()],
    [0, "n1: primary, healthy"],
    primarySelf.stderr,
  );
  await c.sql(n1, "SET GLOBAL read_only = 1");
  const readOnlySelf = await statusOn(c, n1, ["--self"]);
  assertEquals(readOnlySelf.code, 1, readOnlySelf.stdout);
  assert(readOnlySelf.stderr.includes("n1: holds the primary lock but is read-only"), readOnlySelf.stderr);
  await c.sql(n1, "SET GLOBAL read_only = 0");

  // The primary's mysqld dies; health passes (as ContainerPilot runs them) fail over to a replica.
  await kill9(n1.mysqld!.pid);
  let primary: TestNode | undefined;
  await converge(checks, [n1, n2, n3], async () => {
    const name = await c.primaryName();
    primary = [n2, n3].find((n) => n.name === name);
    return primary !== undefined && (await c.run(primary, ["health", "--primary"])).code === 0;
  });
  const replica = primary === n2 ? n3 : n2;
  await converge(
    checks,
    [n1, n2, n3],
    async () => (await source(c, replica)) === primary!.address && (await checks.health(replica)).code === 0,
  );

  const after = [await statusOn(c, replica), await statusFromHost(c)];
  for (const r of after) {
    assertEquals(r.code, 1, r.stdout);
    assertEquals(r.stderr.split("\n").length, 1, r.stderr);
    assertEquals(
      r.stderr,
      "autopilot status: unhealthy: n1: unreachable: connection refused (is mysqld running?)",
    );
    const table = tableRows(r.stdout);
    assertEquals(
      [...table.values()].map((row) => [row.NODE, row.ROLE, row.SERVER, row.SOURCE]),
      [
        ["n1", "unknown", "unreachable", "-"],
        [primary!.name, "primary", "writable", "-"],
        [replica.name, "replica", "read-only", primary!.name],
      ].sort((a, b) => a[0].localeCompare(b[0])),
    );
    assertEquals(table.get("n1")!.CHECK, "critical", "n1's health fails, so does its Consul check");
    assertEquals(table.get(replica.name)!["GTID EXECUTED"], await gtidState(c, replica));
    assert(r.stdout.startsWith(`primary:   ${primary!.name} (${primary!.address}:3306)\n`), r.stdout);
    assert(r.stdout.includes(`last failover: n1 -> ${primary!.name} at `), r.stdout);
    assert(r.stdout.includes("  - n1: unreachable: connection refused"), r.stdout);
  }
  // --self (the image's HEALTHCHECK): the replica is healthy in its role although the cluster is not.
  const self = await statusOn(c, replica, ["--self"]);
  assertEquals([self.code, self.stdout.trim(), self.stderr], [0, `${replica.name}: replica, healthy`, ""]);
  const deadSelf = await statusOn(c, n1, ["--self"]);
  assertEquals(deadSelf.code, 1, deadSelf.stdout);
  assert(
    deadSelf.stderr.includes("n1: unreachable") || deadSelf.stderr.includes("unreachable"),
    deadSelf.stderr,
  );
  const afterJson = await statusFromHost(c, ["--json"]);
  assertEquals(afterJson.code, 1);
  const down = jsonReport(afterJson);
  assertEquals(down.healthy, false);
  assertEquals(down.problems, ["n1: unreachable: connection refused (is mysqld running?)"]);
  assertEquals(down.failover.last.failedPrimary, "n1");
  assertEquals(down.failover.last.promoted, primary!.name);
  assertSameNodes(tableRows(after[1].stdout), down);

  // The old primary comes back and rejoins as a replica: healthy again.
  await c.preStart(n1);
  await c.startMysqld(n1);
  await converge(
    checks,
    [n1, n2, n3],
    async () => (await source(c, n1)) === primary!.address && (await checks.health(n1)).code === 0,
  );
  const healed = await statusOn(c, n1);
  assertEquals(healed.code, 0, `${healed.stdout}\n${healed.stderr}`);
  const n1Row = tableRows(healed.stdout).get("n1")!;
  assertEquals([n1Row.ROLE, n1Row.SOURCE, n1Row["IO/SQL"], n1Row.ERRANT], [
    "replica",
    primary!.name,
    "yes/yes",
    "-",
  ]);

  // A node whose link is cut does not answer at all: a row saying so after the connect timeout, not a hang.
  await h.net.cut(replica.k);
  try {
    const cut = await statusFromHost(c);
    assertEquals(cut.code, 1, cut.stdout);
    assertEquals(
      cut.stderr,
      `autopilot status: unhealthy: ${replica.name}: unreachable: connection timed out (host down or link cut?)`,
    );
    assertEquals(tableRows(cut.stdout).get(replica.name)!.SERVER, "unreachable");
  } finally {
    await h.net.heal(replica.k);
  }
});

Deno.test("status exits 2 with one line when Consul cannot be reached or the usage is wrong", async () => {
  const env = { CONSUL: `127.0.0.1:${freePort()}`, MYSQL_REPL_PASSWORD: "x" };
  const r = await autopilot(["status"], env);
  assertEquals(r.code, 2);
  assertEquals(r.stdout, "");
  assertEquals(r.stderr.split("\n").length, 1, r.stderr);
  assert(r.stderr.startsWith("autopilot status: Cannot reach Consul"), r.stderr);
  assert(r.stderr.includes(`CONSUL=http://${env.CONSUL}`), r.stderr);

  const extra = await autopilot(["status", "now"], env);
  assertEquals([extra.code, extra.stdout], [2, ""]);
  assertEquals(
    extra.stderr,
    "autopilot status: unexpected argument 'now': usage: autopilot status [--json] [--self]",
  );
  const flag = await autopilot(["status", "--tree"], env);
  assertEquals(flag.code, 2);
});
