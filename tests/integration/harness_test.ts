// Self-tests of the integration harness: real MariaDB, Consul and versitygw servers, real namespaces.
// Run as root: deno test -A tests/integration/harness_test.ts
import assert from "node:assert/strict";
import {
  cleanupLeftovers,
  Harness,
  ip,
  isAlive,
  type MariadbNode,
  randomId,
  recordRun,
  run,
  runOk,
  type S3Server,
  stateDir,
  waitFor,
  withStateLock,
} from "./harness/mod.ts";

async function namespaces(): Promise<Set<string>> {
  const out = await runOk(await ip(), ["netns", "list"]);
  return new Set(out.split("\n").map((l) => l.trim().split(" ")[0]).filter((n) => n !== ""));
}

/** Opens a TCP connection (and closes it), or throws; `timeoutMs` bounds the connect. */
async function tcpConnect(hostname: string, port: number, timeoutMs: number): Promise<void> {
  const conn = await Deno.connect({ hostname, port, signal: AbortSignal.timeout(timeoutMs) });
  conn.close();
}

async function setUpReplica(replica: MariadbNode, primary: MariadbNode): Promise<void> {
  await replica.sql(
    `STOP SLAVE; SET GLOBAL read_only=ON;
     CHANGE MASTER TO MASTER_HOST='${primary.address}', MASTER_PORT=${primary.port},
       MASTER_USER='${primary.repl.user}', MASTER_PASSWORD='${primary.repl.password}',
       MASTER_USE_GTID=slave_pos, MASTER_CONNECT_RETRY=1;
     START SLAVE;`,
  );
}

Deno.test("Harness.startNodes() behaviour: GTID replication between two namespace nodes", async () => {
  await using h = await Harness.create({ nodes: 2 });
  const [primary, replica] = await h.startNodes([1, 2]);

  // Each mariadbd really runs in its own namespace and listens on its own address.
  for (const [k, node] of [[1, primary], [2, replica]] as const) {
    assert.equal((await runOk(await ip(), ["netns", "identify", String(node.pid)])).trim(), h.net.node(k).ns);
    assert.deepEqual(await node.sql("SELECT @@bind_address, @@server_id, @@gtid_binlog_pos"), [
      [h.net.node(k).address, String(k), ""],
    ]);
  }

  await setUpReplica(replica, primary);
  await primary.sql(
    `CREATE DATABASE t; CREATE TABLE t.x (id INT PRIMARY KEY, v VARCHAR(40));
     INSERT INTO t.x VALUES (1, 'from primary\tn1');`,
  );
  const [[gtid]] = await primary.sql("SELECT @@gtid_binlog_pos");
  assert.match(gtid, /^0-1-\d+$/);
  assert.deepEqual(await replica.sql(`SELECT MASTER_GTID_WAIT('${gtid}', 10)`), [["0"]]);
  assert.deepEqual(await replica.sql("SELECT id, v FROM t.x"), [["1", "from primary\tn1"]]);
  const [[slavePos, readOnly]] = await replica.sql("SELECT @@gtid_slave_pos, @@read_only");
  assert.deepEqual([slavePos, readOnly], [gtid, "1"]);
});

Deno.test("Network.cut() behaviour: TCP to a cut node times out, its unix socket answers, heal() restores TCP", async () => {
  await using h = await Harness.create({ nodes: 1 });
  const n1 = await h.startNode(1);

  await tcpConnect(n1.address, n1.port, 2000);
  assert.deepEqual(await n1.sqlTcp("SELECT CURRENT_USER()"), [["admin@%"]]);

  await h.net.cut(1);
  const t0 = performance.now();
  await assert.rejects(tcpConnect(n1.address, n1.port, 1500));
  const elapsed = performance.now() - t0;
  assert.ok(elapsed >= 1400, `connect to a cut node must hang until the timeout, failed after ${elapsed} ms`);
  assert.deepEqual(await n1.sql("SELECT 1"), [["1"]]);

  await h.net.heal(1);
  await waitFor("TCP to n1 after heal", async () => {
    await tcpConnect(n1.address, n1.port, 1000);
    return true;
  }, { timeoutMs: 5000, intervalMs: 100 });
  assert.deepEqual(await n1.sqlTcp("SELECT 2"), [["2"]]);
});

Deno.test("Harness.startConsul() behaviour: KV PUT and GET over HTTP, from the root namespace and a node", async () => {
  await using h = await Harness.create({ nodes: 1 });
  const consul = await h.startConsul();
  assert.equal(consul.httpAddr, `127.0.0.1:${consul.port}`);

  const put = await fetch(`${consul.url}/v1/kv/autopilot/test`, { method: "PUT", body: "hello consul" });
  assert.equal(put.status, 200);
  assert.equal((await put.text()).trim(), "true");
  const get = await fetch(`${consul.url}/v1/kv/autopilot/test`);
  assert.equal(get.status, 200);
  const [entry] = await get.json() as { Key: string; Value: string }[];
  assert.equal(entry.Key, "autopilot/test");
  assert.equal(atob(entry.Value), "hello consul");

  // The agent also listens on the host leg, reachable from inside a node namespace (bash's /dev/tcp: no curl
  // needed on the machine).
  const r = await h.net.exec(1, [
    "bash",
    "-c",
    'exec 3<>"/dev/tcp/$0/$1" && printf "GET /v1/kv/autopilot/test?raw HTTP/1.0\\r\\n\\r\\n" >&3 && cat <&3',
    h.net.hostAddress,
    String(consul.port),
  ], { timeoutMs: 5000 });
  assert.match(r.stdout, /^HTTP\/1\.[01] 200 [\s\S]*\r\n\r\nhello consul$/, `from namespace n1: ${r.stderr}`);
});

async function hmac(key: Uint8Array<ArrayBuffer> | string, data: string): Promise<Uint8Array<ArrayBuffer>> {
  const raw = typeof key === "string" ? new TextEncoder().encode(key) : key;
  const k = await crypto.subtle.importKey("raw", raw, { name: "HMAC", hash: "SHA-256" }, false, ["sign"]);
  return new Uint8Array(await crypto.subtle.sign("HMAC", k, new TextEncoder().encode(data)));
}

async function sha256Hex(data: string): Promise<string> {
  const d = new Uint8Array(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(data)));
  return Array.from(d, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** A minimal AWS SigV4-signed request without a body (path-style, no query string). */
async function s3Request(s3: S3Server, method: string, path: string): Promise<Response> {
  const url = new URL(path, s3.endpoint);
  const amzDate = new Date().toISOString().replace(/[-:]/g, "").replace(/\.\d+/, "");
  const date = amzDate.slice(0, 8);
  const payloadHash = await sha256Hex("");
  const canonical = [
    method,
    url.pathname,
    "",
    `host:${url.host}`,
    `x-amz-content-sha256:${payloadHash}`,
    `x-amz-date:${amzDate}`,
    "",
    "host;x-amz-content-sha256;x-amz-date",
    payloadHash,
  ].join("\n");
  const scope = `${date}/${s3.region}/s3/aws4_request`;
  const toSign = ["AWS4-HMAC-SHA256", amzDate, scope, await sha256Hex(canonical)].join("\n");
  let key = await hmac(`AWS4${s3.secretKey}`, date);
  for (const part of [s3.region, "s3", "aws4_request"]) key = await hmac(key, part);
  const signature = Array.from(await hmac(key, toSign), (b) => b.toString(16).padStart(2, "0")).join("");
  return fetch(url, {
    method,
    headers: {
      "x-amz-date": amzDate,
      "x-amz-content-sha256": payloadHash,
      authorization: `AWS4-HMAC-SHA256 Credential=${s3.accessKey}/${scope}, ` +
        `SignedHeaders=host;x-amz-content-sha256;x-amz-date, Signature=${signature}`,
    },
  });
}

Deno.test("Harness.startS3() behaviour: S3 XML error without credentials, bucket created with them", async () => {
  await using h = await Harness.create();
  const s3 = await h.startS3();

  const anon = await fetch(`${s3.endpoint}/`);
  const body = await anon.text();
  assert.equal(anon.status, 403, body);
  assert.match(body, /<Error>[\s\S]*<Code>AccessDenied<\/Code>/);

  const create = await s3Request(s3, "PUT", "/harness-bucket");
  assert.equal(create.status, 200, await create.text());
  assert.ok((await Deno.stat(`${s3.bucketDir}/harness-bucket`)).isDirectory);
  const list = await s3Request(s3, "GET", "/");
  const listing = await list.text();
  assert.equal(list.status, 200, listing);
  assert.match(listing, /<Name>harness-bucket<\/Name>/);
});

Deno.test("Harness.dispose() behaviour: stops every pid and removes every namespace, also when the test threw", async () => {
  let h: Harness | undefined;
  await assert.rejects(
    async () => {
      await using inner = await Harness.create({ nodes: 2 });
      h = inner;
      const [n1] = await inner.startNodes();
      await n1.stop();
      await n1.start({ extraArgs: ["--read-only"] });
      assert.deepEqual(await n1.sql("SELECT @@read_only"), [["1"]]);
      await inner.node(2).kill9();
      await inner.node(2).start();
      await inner.startConsul();
      await inner.startS3();
      assert.equal(inner.pids().length, 6); // 2 nodes started twice each, consul, s3
      for (const pid of [n1.pid, inner.node(2).pid, inner.consul.pid, inner.s3.pid]) assert.ok(isAlive(pid));
      throw new Error("test body failed");
    },
    /test body failed/,
  );
  assert.ok(h);
  for (const pid of h.pids()) assert.ok(!isAlive(pid), `pid ${pid} still alive after dispose`);
  const left = await namespaces();
  for (const ns of h.namespaces()) assert.ok(!left.has(ns), `namespace ${ns} still exists`);
  assert.equal(h.namespaces().length, 3);
  const link = await run(await ip(), ["link", "show", h.net.hostIf]);
  assert.ok(!link.success, `host link ${h.net.hostIf} still exists`);
  await assert.rejects(Deno.stat(h.dir), Deno.errors.NotFound);
});

Deno.test("cleanupLeftovers() behaviour: removes a dead run's process and namespace, spares a mismatched pid", async () => {
  const IP = await ip();
  const tag = randomId(4);
  const ns = `apt${tag}_n1`;
  const sleeper = new Deno.Command("sleep", { args: ["60"], stdin: "null", stdout: "null", stderr: "null" })
    .spawn();
  const bystander = new Deno.Command("sleep", { args: ["60"], stdin: "null", stdout: "null", stderr: "null" })
    .spawn();
  try {
    const start = (pid: number) => {
      const s = Deno.readTextFileSync(`/proc/${pid}/stat`);
      return s.slice(s.lastIndexOf(")") + 2).split(" ")[19];
    };
    const deadOwner = "1:0"; // pid 1 with another start time: a run that has ended
    await recordRun(tag); // recorded for this live process
    await withStateLock(async () => {
      await Deno.writeTextFile(
        `${stateDir()}/pids`,
        `${sleeper.pid}\t${start(sleeper.pid)}\t/usr/bin/sleep\t${deadOwner}\n` +
          `${bystander.pid}\t${start(bystander.pid)}\t/usr/sbin/mariadbd\t${deadOwner}\n`, // other program
        { append: true },
      );
    });
    await runOk(IP, ["netns", "add", ns]);

    const first = await cleanupLeftovers();
    assert.ok(first.killed.includes(sleeper.pid), `killed: ${first.killed}`);
    assert.equal((await sleeper.status).signal, "SIGTERM");
    assert.ok(!first.killed.includes(bystander.pid) && isAlive(bystander.pid), "a mismatched pid was killed");
    assert.ok((await namespaces()).has(ns), "a live owner's namespace was deleted");

    // Once the tag belongs to a dead owner only, its namespace goes.
    await withStateLock(async () => {
      const runs = (await Deno.readTextFile(`${stateDir()}/tags`)).split("\n")
        .filter((l) => l !== "" && !l.startsWith(`${tag}\t`));
      await Deno.writeTextFile(`${stateDir()}/tags`, [...runs, `${tag}\t${deadOwner}`].join("\n") + "\n");
    });
    const second = await cleanupLeftovers();
    assert.ok(second.namespaces.includes(ns), `namespaces: ${second.namespaces}`);
    assert.ok(!(await namespaces()).has(ns));
  } finally {
    for (const p of [sleeper, bystander]) {
      try {
        p.kill("SIGKILL");
      } catch { /* gone */ }
      await p.status;
    }
    await run(IP, ["netns", "del", ns]);
  }
});
