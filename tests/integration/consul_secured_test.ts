/**
 * A whole cluster's life on a Consul over HTTPS (a CA made here with openssl) that enforces ACLs with
 * `default_policy = "deny"`, the nodes' token holding README's policy (src/consul_policy.ts) and nothing else:
 * bootstrap, replicas restored from the first snapshot, a snapshot, a switchover and a failover. Then what a
 * node says when its token is missing, unknown or weaker, and when Consul's certificate is not trusted: one line.
 */
import { assert, assertEquals } from "../unit/assert.ts";
import { defaultConsulPolicy } from "../../src/consul_policy.ts";
import { Cluster, converge, type TestNode } from "./cluster.ts";
import { createAclToken, Harness, kill9, waitFor } from "./harness/mod.ts";

/** The line of `stderr` that holds `text`, asserting there is one. */
function lineWith(stderr: string, text: string): string {
  const line = stderr.split("\n").find((l) => l.includes(text));
  assert(line !== undefined, `no line with '${text}' in:\n${stderr}`);
  return line;
}

async function untilPrimary(c: Cluster, nodes: TestNode[], among: TestNode[]): Promise<TestNode> {
  let found: TestNode | undefined;
  await converge(c, nodes, async () => {
    const name = await c.primaryName();
    found = among.find((n) => n.name === name);
    return found !== undefined &&
      (await c.run(found, ["health", "--primary"])).code === 0;
  }, 90_000).catch(async (e) => {
    const full = await Promise.all(nodes.map((n) => c.run(n, ["health"])));
    throw new Error(`${e}\n${full.map((r, i) => `--- ${nodes[i].name}\n${r.stderr}`).join("\n")}`);
  });
  return found!;
}

Deno.test("a cluster lives its whole life on an HTTPS Consul with ACLs, its token holding only README's policy", async () => {
  await using h = await Harness.create({ nodes: 3 });
  const c = await Cluster.create(h, { secured: true });
  assert(c.consulEnv.CONSUL.startsWith("https://"), c.consulEnv.CONSUL);
  const [n1, n2, n3] = [c.node(1), c.node(2), c.node(3)];

  // Bootstrap, and two replicas restored from the first primary's snapshot.
  for (const n of [n1, n2, n3]) {
    const pre = await c.preStart(n);
    assertEquals(pre.code, 0, `pre-start ${n.name}: ${pre.stderr}`);
    if (n !== n1) lineWith(pre.stderr, "Restoring snapshot");
    await c.startMysqld(n);
    const r = await c.run(n, ["health"]);
    assertEquals(r.code, 0, `health ${n.name}: ${r.stderr}`);
  }
  assertEquals(await c.primaryName(), "n1");
  await using app = await c.app(n1);
  await app.run(["CREATE TABLE app.t (id INT PRIMARY KEY)", "INSERT INTO app.t VALUES (1), (2)"]);
  await app.close();
  for (const n of [n2, n3]) await waitFor(`rows on ${n.name}`, async () => (await c.rows(n)) === 2);

  // A snapshot, published in Consul.
  const snap = await c.run(n2, ["backup", "now"]);
  assertEquals(snap.code, 0, snap.stderr);
  const consul = c.consul();
  try {
    assertEquals(JSON.parse((await consul.get("mysql-last-backup"))!.value).nodeName, "n2");
  } finally {
    consul.close();
  }

  // A switchover to n2.
  const sw = await c.run(n1, ["switchover", "--to", "n2"]);
  assertEquals(sw.code, 0, sw.stderr);
  await waitFor("n2 writable primary", async () => {
    await Promise.all([n1, n2, n3].map((n) => c.run(n, ["on-change"])));
    return (await c.run(n2, ["health", "--primary"])).code === 0;
  }, { timeoutMs: 30_000, intervalMs: 300 });

  for (const n of [n1, n3]) {
    await waitFor(`${n.name} follows n2`, async () => {
      await c.run(n, ["health"]);
      const [s] = await c.sql(n, "SHOW SLAVE STATUS");
      return s?.Master_Host === n2.address && s.Slave_SQL_Running === "Yes";
    }, { timeoutMs: 30_000, intervalMs: 300 });
  }

  // A failover: n2's server dies, n1 or n3 takes over and has every row.
  await using app2 = await c.app(n2);
  await app2.run(["INSERT INTO app.t VALUES (3)"]);
  await app2.close();
  for (const n of [n1, n3]) await waitFor(`row 3 on ${n.name}`, async () => (await c.rows(n)) === 3);
  await kill9(n2.mysqld!.pid);
  const next = await untilPrimary(c, [n1, n3], [n1, n3]);
  assertEquals(await c.rows(next), 3);

  // Under ContainerPilot a healthy pass registers the SERVICE_NAME service again when the agent lacks it, as
  // ContainerPilot's fork does: the policy's `service "mysql"` rule allows that.
  const service = `mysql-${Deno.hostname()}`;
  const underCp = await c.run(next, ["health"], { CONTAINERPILOT_PID: "1" });
  assertEquals(underCp.code, 0, underCp.stderr);
  assert(!underCp.stderr.includes("Cannot check the mysql service"), underCp.stderr);
  const management = c.consul();
  try {
    assert(await management.hasAgentService(service), `${service} is not registered`);
  } finally {
    management.close();
  }

  // What a node says when its token or its CA is wrong: one line naming what was refused, exit non-zero.
  const other = next === n1 ? n3 : n1;
  const noToken = await c.run(other, ["status"], { CONSUL_HTTP_TOKEN: "" });
  assertEquals(noToken.code, 2, noToken.stderr);
  const anon = lineWith(noToken.stderr, 'Consul refused kv get recurse on the keys under "mysql-"');
  assert(anon.includes("CONSUL_HTTP_TOKEN is unset"), anon);
  assert(anon.includes("Consul ACL policy"), anon);

  const unknown = await c.run(other, ["status"], { CONSUL_HTTP_TOKEN: crypto.randomUUID() });
  assertEquals(unknown.code, 2, unknown.stderr);
  lineWith(unknown.stderr, "Consul does not know the token in CONSUL_HTTP_TOKEN (ACL not found)");

  // The same policy with every key rule read-only: the snapshot's lock is refused.
  const readOnly = defaultConsulPolicy().replace(
    /^(key(?:_prefix)? .*?)policy = "write"/gm,
    '$1policy = "read"',
  );
  assert(!/^key.*"write"/m.test(readOnly), readOnly);
  const weak = await createAclToken(h.consul, "autopilot-keys-read-only", readOnly);
  const refused = await c.run(next, ["backup", "now"], { CONSUL_HTTP_TOKEN: weak });
  assertEquals(refused.code, 1, refused.stderr);
  const line = lineWith(refused.stderr, 'Consul refused lock acquire on key "mysql-backup-running"');
  assert(line.includes('lacks key:write on "mysql-backup-running"'), line);
  assert(!line.includes(weak), "the token is in the log");

  // A CA that did not sign Consul's certificate: one line, and no request over plain HTTP.
  const untrusted = await c.run(other, ["status"], { CONSUL_CACERT: c.secured.tls!.otherCaFile });
  assertEquals(untrusted.code, 2, untrusted.stderr);
  lineWith(
    untrusted.stderr,
    `is not trusted (UnknownIssuer): CONSUL_CACERT (${c.secured.tls!.otherCaFile}) is not the CA`,
  );
  const noCa = await c.run(other, ["status"], { CONSUL_CACERT: "" });
  assertEquals(noCa.code, 2, noCa.stderr);
  lineWith(
    noCa.stderr,
    "is not trusted (UnknownIssuer): set CONSUL_CACERT to the PEM file of the CA that signed it",
  );
  // A CA file outside the directories the permission set may read: one line naming the variable, the path and
  // those directories, not Deno's "run again with the --allow-read flag".
  const outside = await c.run(other, ["status"], { CONSUL_CACERT: "/etc/autopilot-test/consul-ca.pem" });
  assert(outside.code !== 0, outside.stderr);
  lineWith(
    outside.stderr,
    "CONSUL_CACERT /etc/autopilot-test/consul-ca.pem is outside the directories autopilot may read " +
      "(/run/secrets, /var/lib/autopilot, /var/lib/mysql, /tmp): put it in one of them",
  );
  assert(!outside.stderr.includes("--allow-read"), outside.stderr);
});
