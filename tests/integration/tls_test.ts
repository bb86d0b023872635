/**
 * TLS on real MariaDB 10.11 servers driven by the hooks: replication over TLS with the source's certificate
 * verified, REQUIRE_TLS refusing plain logins of the application and replication accounts, a failover and a
 * rejoin over TLS, and pre-start refusing certificates it cannot use.
 */
import { assert, assertEquals, assertRejects } from "../unit/assert.ts";
import { MysqlClient, MysqlQueryError } from "../../src/mysql/client.ts";
import { Secret } from "../../src/config.ts";
import { Cluster, converge, SECRETS, type TestNode } from "./cluster.ts";
import { Harness, kill9, waitFor } from "./harness/mod.ts";
import { makeTestPki, type TestPki } from "./harness/tls.ts";

async function pkiFor(h: Harness, nodes: number[]): Promise<TestPki> {
  const dir = `${h.dir}/tls`;
  await Deno.mkdir(dir);
  return await makeTestPki(dir, nodes.map((k) => `n${k}`), nodes.map((k) => h.net.node(k).address));
}

function tlsEnv(p: TestPki, cert = p.node): Record<string, string> {
  return { MYSQL_TLS_CA: p.ca.cert, MYSQL_TLS_CERT: cert.cert, MYSQL_TLS_KEY: cert.key };
}

async function slaveStatus(c: Cluster, node: TestNode): Promise<Record<string, unknown> | undefined> {
  return (await c.sql(node, "SHOW SLAVE STATUS"))[0];
}

/** Connects over TCP to `node` as `user`, over TLS with the node certificate of `tls` when given. */
function connectAs(node: TestNode, user: string, password: string, tls?: TestPki): Promise<MysqlClient> {
  return MysqlClient.connect({
    host: node.address,
    port: 3306,
    user,
    password: new Secret(password),
    connectTimeoutMs: 2000,
    ...(tls ? { tls: { ca: tls.ca.cert, cert: tls.node.cert, key: tls.node.key } } : {}),
  });
}

/** Connects over TCP as `user`, with or without TLS, and returns the session's cipher ("" for none). */
async function cipherAs(
  node: TestNode,
  user: string,
  password: string,
  tls?: TestPki,
): Promise<string> {
  await using db = await connectAs(node, user, password, tls);
  const [row] = await db.query("SHOW SESSION STATUS LIKE 'Ssl_cipher'");
  return String(row?.Value ?? "");
}

Deno.test("TLS: replication verified over TLS, REQUIRE_TLS refuses plain logins, a failover and a rejoin over TLS", async () => {
  await using h = await Harness.create({ nodes: 2 });
  const p = await pkiFor(h, [1, 2]);
  const c = await Cluster.create(h);
  const env = { ...tlsEnv(p), REQUIRE_TLS: "true" };
  const [n1, n2] = [c.node(1, env), c.node(2, env)];
  for (const n of [n1, n2]) assertEquals((await c.boot(n)).code, 0, n.name);
  await using app = await connectAs(n1, "app", SECRETS.app, p);
  await app.run(["CREATE TABLE app.t (id INT PRIMARY KEY)", "INSERT INTO app.t VALUES (1), (2)"]);
  await app.close();
  await waitFor("rows on n2", async () => (await c.rows(n2)) === 2);

  const s = await slaveStatus(c, n2);
  assertEquals(
    [s?.Master_Host, s?.Master_SSL_Allowed, s?.Master_SSL_Verify_Server_Cert, s?.Master_SSL_CA_File],
    [n1.address, "Yes", "Yes", p.ca.cert],
  );

  // REQUIRE_TLS: both accounts refuse a plain login (access denied), and log in over TLS.
  for (const [user, password] of [["app", SECRETS.app], ["repl", SECRETS.repl]]) {
    const e = await assertRejects(() => cipherAs(n1, user, password), MysqlQueryError);
    assertEquals(e.errno, 1045, `${user} without TLS: ${e.message}`);
    assert((await cipherAs(n1, user, password, p)) !== "", `${user} over TLS`);
  }

  // autopilot status: the replica replicates over verified TLS; its own connections' cipher is shown.
  const status = await c.run(n2, ["status"]);
  assert(status.stdout.includes("n1 (TLS, verified)"), status.stdout);
  assert(/tls: +autopilot's connections: n1 TLS_\S+, n2 TLS_\S+/.test(status.stdout), status.stdout);

  // A failover: n1's server dies; n2 is promoted, and n1 comes back to replicate from it over TLS.
  await kill9(n1.mysqld!.pid);
  await converge(
    c,
    [n1, n2],
    async () => (await c.primaryName()) === "n2" && (await c.run(n2, ["health", "--primary"])).code === 0,
    40_000,
  );
  await c.preStart(n1);
  await c.startMysqld(n1);
  await converge(c, [n1, n2], async () => (await slaveStatus(c, n1))?.Master_Host === n2.address);
  await using app2 = await connectAs(n2, "app", SECRETS.app, p);
  await app2.query("INSERT INTO app.t VALUES (3)");
  await waitFor("row 3 on n1", async () => (await c.rows(n1)) === 3);
  const again = await slaveStatus(c, n1);
  assertEquals([again?.Master_SSL_Allowed, again?.Master_SSL_Verify_Server_Cert], ["Yes", "Yes"]);
});

Deno.test("TLS: pre-start refuses an expired certificate, one signed by another CA, or a key that is not its own", async () => {
  await using h = await Harness.create({ nodes: 1 });
  const p = await pkiFor(h, [1]);
  const c = await Cluster.create(h);
  const cases: [string, Record<string, string>, RegExp][] = [
    ["expired", tlsEnv(p, p.expired), /MYSQL_TLS_CERT \S+expired\.pem expired on/],
    ["other CA", tlsEnv(p, p.wrongCa), /is not signed by the CA in MYSQL_TLS_CA/],
    ["wrong key", { ...tlsEnv(p), MYSQL_TLS_KEY: p.wrongCa.key }, /does not match MYSQL_TLS_KEY/],
    [
      "unreadable",
      { ...tlsEnv(p), MYSQL_TLS_CA: `${p.dir}/none.pem` },
      /MYSQL_TLS_CA \S+none\.pem does not exist/,
    ],
    [
      "outside autopilot's permissions",
      { ...tlsEnv(p), MYSQL_TLS_CA: "/etc/ssl/certs/ca-certificates.crt" },
      /MYSQL_TLS_CA \/etc\/ssl\/certs\/ca-certificates\.crt is outside the directories autopilot may read/,
    ],
  ];
  const n1 = c.node(1);
  for (const [what, env, expected] of cases) {
    await c.preparePreStart(n1);
    const r = await c.run(n1, ["pre-start", "--once"], env);
    assertEquals(r.code, 2, `${what}: ${r.stderr}`);
    assert(expected.test(r.stderr), `${what}: ${r.stderr}`);
    assertEquals(r.stderr.trim().split("\n").filter((l) => l.includes("TLS")).length, 1, `${what}: one line`);
  }
  assert(!(await Deno.stat(`${n1.dir}/data`).then(() => true, () => false)), "no datadir was made");
});

/** Restarts `node`'s server presenting `cert` (its cnf edited after pre-start wrote it). */
async function presenting(c: Cluster, node: TestNode, cert: { cert: string; key: string }) {
  await c.stopMysqld(node);
  const cnf = await Deno.readTextFile(node.env.MYSQL_CNF);
  await Deno.writeTextFile(
    node.env.MYSQL_CNF,
    cnf.replace(/^ssl_cert = .*$/m, `ssl_cert = ${cert.cert}`).replace(
      /^ssl_key = .*$/m,
      `ssl_key = ${cert.key}`,
    ),
  );
  await c.startMysqld(node);
}

Deno.test("TLS: a source presenting a certificate the CA did not sign, or not naming it, is refused; status and health say so", async () => {
  await using h = await Harness.create({ nodes: 2 });
  const p = await pkiFor(h, [1, 2]);
  const c = await Cluster.create(h);
  const [n1, n2] = [c.node(1, tlsEnv(p)), c.node(2, tlsEnv(p))];
  for (const n of [n1, n2]) assertEquals((await c.boot(n)).code, 0, n.name);
  await waitFor("n2 replicating", async () => (await slaveStatus(c, n2))?.Slave_IO_Running === "Yes");
  // n1's server comes back presenting a certificate from another CA (as an impostor at its address would).
  await presenting(c, n1, p.wrongCa);
  await waitFor(
    "n2's receiver refusing n1",
    async () => /SSL/.test(String((await slaveStatus(c, n2))?.Last_IO_Error)),
  );
  const s = await slaveStatus(c, n2);
  assertEquals([s?.Slave_IO_Running, s?.Master_SSL_Allowed], ["Connecting", "Yes"], "never a plain fallback");

  const status = await c.run(n2, ["status"]);
  const lines = status.stdout.split("\n").filter((l) => l.includes("TLS handshake with the source failed"));
  assert(lines.length >= 1, status.stdout);
  // autopilot's own probe of n1 refuses its certificate too.
  assert(/n1.*certificate/i.test(status.stdout), status.stdout);
  const health = await c.run(n2, ["health"]);
  assert(health.code !== 0, "unhealthy");
  assert(health.stderr.includes("TLS handshake with the source failed"), health.stderr);

  // A certificate from the right CA that does not name n1's address: refused by the replica and by autopilot.
  await presenting(c, n1, p.misnamed);
  // (MariaDB names the failure `SSL certificate validation failure` on a first connection, and gives the
  // same text as for another CA when it reconnects.)
  let named = "";
  await waitFor("autopilot refusing n1's name", async () => {
    named = (await c.run(n2, ["status"])).stdout;
    return named.includes(`does not name ${n1.address}`);
  });
  assert(named.includes("TLS handshake with the source failed"), named);
  const after = await slaveStatus(c, n2);
  assertEquals(
    [after?.Slave_IO_Running, after?.Master_SSL_Allowed],
    ["Connecting", "Yes"],
    "never a plain fallback",
  );
});

/** Restarts a node's mysqld as a container restart would (pre-start, then mysqld), and runs its passes. */
async function restart(c: Cluster, node: TestNode, ready: () => Promise<boolean>): Promise<void> {
  await c.stopMysqld(node);
  assertEquals((await c.preStart(node)).code, 0, node.name);
  await c.startMysqld(node);
  await converge(c, [node], ready);
}

Deno.test("TLS turned on in a running cluster: primary then replica restarted with TLS, then REQUIRE_TLS", async () => {
  await using h = await Harness.create({ nodes: 2 });
  const p = await pkiFor(h, [1, 2]);
  const c = await Cluster.create(h);
  const [n1, n2] = [c.node(1), c.node(2)];
  for (const n of [n1, n2]) assertEquals((await c.boot(n)).code, 0, n.name);
  await waitFor("n2 replicating", async () => (await slaveStatus(c, n2))?.Slave_IO_Running === "Yes");
  assertEquals((await slaveStatus(c, n2))?.Master_SSL_Allowed, "No", "plain text without TLS settings");

  // 1. The TLS files on every node: the primary first (its server speaks TLS, plain logins still work)...
  for (const n of [n1, n2]) Object.assign(n.env, tlsEnv(p));
  // (Before the primary's restart, autopilot with TLS settings refuses its plain server, never falls back.)
  const before = await c.run(n2, ["status"]);
  assert(before.stdout.includes("TLS: the server does not speak TLS"), before.stdout);
  await restart(c, n1, async () => (await c.run(n1, ["health", "--primary"])).code === 0);
  assertEquals(await cipherAs(n1, "app", SECRETS.app), "", "a plain login still works");
  // ...then the replica, which is re-pointed over verified TLS (not restarted as it was set up).
  await restart(c, n2, async () => {
    const s = await slaveStatus(c, n2);
    return s?.Master_SSL_Allowed === "Yes" && s?.Slave_IO_Running === "Yes";
  });
  assertEquals((await slaveStatus(c, n2))?.Master_SSL_Verify_Server_Cert, "Yes");

  // 2. REQUIRE_TLS: the primary, turning writable again, alters the accounts; the replica gets it too.
  for (const n of [n1, n2]) n.env.REQUIRE_TLS = "true";
  await restart(c, n1, async () => (await c.run(n1, ["health", "--primary"])).code === 0);
  for (const n of [n1, n2]) {
    await waitFor(`plain logins refused on ${n.name}`, async () => {
      const plain = await cipherAs(n, "app", SECRETS.app).then(() => "accepted", (e) => e);
      return plain instanceof MysqlQueryError && plain.errno === 1045;
    });
    const e = await assertRejects(() => cipherAs(n, "repl", SECRETS.repl), MysqlQueryError);
    assertEquals(e.errno, 1045, `repl on ${n.name}`);
    assert((await cipherAs(n, "app", SECRETS.app, p)) !== "", `app over TLS on ${n.name}`);
  }
  // Replication (as repl, over TLS) goes on.
  await using app = await connectAs(n1, "app", SECRETS.app, p);
  await app.run(["CREATE TABLE app.t (id INT PRIMARY KEY)", "INSERT INTO app.t VALUES (1)"]);
  await waitFor("row on n2", async () => (await c.rows(n2)) === 1);
});
