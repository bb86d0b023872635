// Self-tests of the integration harness: real MariaDB, Consul and versitygw servers, real namespaces.
// Run as root: deno test -A tests/integration/harness_test.ts
import assert from "node:assert/strict";
import {
  cleanupLeftovers,
  createMemoryCgroup,
  freeze,
  Harness,
  inheritedMemoryLimit,
  ip,
  isAlive,
  type MariadbNode,
  memoryCgroupPlace,
  memoryMount,
  ownCgroup,
  pathExists,
  randomId,
  recordedCgroups,
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

Deno.test("Harness.restartConsul() behaviour: a persistent agent keeps its KV across a restart on the same port, empty drops it; freeze() stops it answering until thawed", async () => {
  await using h = await Harness.create();
  const consul = await h.startConsul({ persistent: true });
  const kv = `${consul.url}/v1/kv/autopilot/kept`;
  const put = await fetch(kv, { method: "PUT", body: "kept" });
  assert.equal((await put.text()).trim(), "true");
  const get = async (url: string) => {
    const res = await fetch(`${url}?raw`, { signal: AbortSignal.timeout(1500) });
    const body = await res.text();
    return res.status === 200 ? body : `HTTP ${res.status}`;
  };

  freeze(consul.pid, true);
  await assert.rejects(() => get(kv), "a frozen agent answered");
  freeze(consul.pid, false);
  assert.equal(await get(kv), "kept");

  await h.stopConsul();
  await assert.rejects(() => get(kv), "a stopped agent answered");
  const again = await h.restartConsul();
  assert.equal(again.port, consul.port);
  assert.notEqual(again.pid, consul.pid);
  await waitFor("the restarted agent to serve its KV", async () => (await get(kv)) === "kept", {
    timeoutMs: 15_000,
  });
  const empty = await h.restartConsul({ empty: true });
  assert.equal(empty.port, consul.port);
  assert.equal(await get(kv), "HTTP 404");
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

const MiB = 2 ** 20;

Deno.test("memoryMount(), ownCgroup(), memoryCgroupPlace(): the memory hierarchy and where a test cgroup goes", () => {
  const v1 = [
    "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755",
    "32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu",
    "35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory",
    "41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw",
  ].join("\n");
  assert.deepEqual(memoryMount(v1), { version: 1, mountPoint: "/sys/fs/cgroup/memory", root: "/" });
  const v2 = "30 23 0:26 /ct /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate";
  assert.deepEqual(memoryMount(v2), { version: 2, mountPoint: "/sys/fs/cgroup", root: "/ct" });
  assert.match(memoryMount("31 23 0:28 / /sys/fs/cgroup rw - tmpfs tmpfs rw") as string, /no memory cgroup/);

  const cgroups = "9:name=systemd:/\n4:memory:/runner/job1\n1:cpu,cpuacct:/\n0::/other\n";
  assert.equal(ownCgroup(cgroups, 1), "/runner/job1");
  assert.equal(ownCgroup(cgroups, 2), "/other");
  assert.equal(ownCgroup("0::/\n", 1), undefined);

  const m1 = { version: 1 as const, mountPoint: "/sys/fs/cgroup/memory", root: "/" };
  assert.deepEqual(memoryCgroupPlace(m1, "/runner/job1", "aptabcd_n1"), {
    parentDir: "/sys/fs/cgroup/memory/runner/job1",
    path: "/sys/fs/cgroup/memory/runner/job1/aptabcd_n1",
    relative: "/runner/job1/aptabcd_n1",
  });
  assert.deepEqual(memoryCgroupPlace(m1, "/", "aptabcd_n1"), {
    parentDir: "/sys/fs/cgroup/memory",
    path: "/sys/fs/cgroup/memory/aptabcd_n1",
    relative: "/aptabcd_n1",
  });
  // A mount that shows a cgroup below the root (bound from there): paths below it, relative from the root.
  const bound = { ...m1, root: "/runner" };
  assert.deepEqual(memoryCgroupPlace(bound, "/runner/job1", "aptabcd_n1"), {
    parentDir: "/sys/fs/cgroup/memory/job1",
    path: "/sys/fs/cgroup/memory/job1/aptabcd_n1",
    relative: "/runner/job1/aptabcd_n1",
  });
  assert.match(memoryCgroupPlace(bound, "/runner2/job", "x") as string, /outside the mounted hierarchy/);
  // v2: below the root the mount shows, whatever this process's cgroup.
  const m2 = { version: 2 as const, mountPoint: "/sys/fs/cgroup", root: "/" };
  assert.deepEqual(memoryCgroupPlace(m2, "/user.slice/x", "aptabcd_n1"), {
    parentDir: "/sys/fs/cgroup",
    path: "/sys/fs/cgroup/aptabcd_n1",
    relative: "/aptabcd_n1",
  });
});

Deno.test("Harness.memoryCgroup() behaviour: apt<tag>_<name> below this process's cgroup (v1), listed before it is made, the wrapper puts a process in it, a limit above an ancestor's is refused, dispose removes it", async () => {
  let path = "";
  let dir = "";
  {
    await using h = await Harness.create();
    dir = h.dir;
    const cg = await h.memoryCgroup("outer", 256 * MiB);
    path = cg.path;
    const mount = memoryMount(await Deno.readTextFile("/proc/self/mountinfo"));
    assert.ok(typeof mount !== "string", String(mount));
    const own = ownCgroup(await Deno.readTextFile("/proc/self/cgroup"), mount.version)!;
    const name = `apt${h.tag}_outer`;
    const parent = mount.version === 1 ? own : mount.root;
    assert.equal(cg.relative, `${parent === "/" ? "" : parent}/${name}`);
    assert.ok(
      cg.path.startsWith(`${mount.mountPoint}/`) && cg.path.endsWith(cg.relative.slice(mount.root.length)),
    );
    assert.deepEqual(await recordedCgroups(h.tag, h.dir), [cg.path]);
    const limit = await Deno.readTextFile(
      `${cg.path}/${mount.version === 1 ? "memory.limit_in_bytes" : "memory.max"}`,
    );
    assert.equal(limit.trim(), String(256 * MiB));
    assert.deepEqual(await inheritedMemoryLimit(mount, cg.path), { bytes: 256 * MiB, dir: cg.path });
    await assert.rejects(h.memoryCgroup("outer", MiB), Deno.errors.AlreadyExists);

    // A process started through the wrapper is in the cgroup, and makes its own test cgroups below it (v1), where
    // a limit above the 256 MiB it is in is refused before anything is made or listed.
    const cgroupTs = new URL("./harness/cgroup.ts", import.meta.url).href;
    const code = `
      import { createMemoryCgroup } from ${JSON.stringify(cgroupTs)};
      const run = ${JSON.stringify({ tag: h.tag, dir: h.dir })};
      const out = { cgroup: Deno.readTextFileSync("/proc/self/cgroup") };
      try {
        const inner = await createMemoryCgroup(run, "inner", ${128 * MiB});
        out.inner = inner.path;
        await inner.remove();
      } catch (e) { out.innerError = e.message; }
      try {
        const big = await createMemoryCgroup(run, "big", ${512 * MiB});
        out.big = big.path;
        await big.remove();
      } catch (e) { out.bigError = e.message; }
      console.log(JSON.stringify(out));`;
    const child = await new Deno.Command(cg.wrapper[0], {
      args: [...cg.wrapper.slice(1), Deno.execPath(), "eval", "-q", code],
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).output();
    const stderr = new TextDecoder().decode(child.stderr);
    assert.ok(child.success, stderr);
    const out = JSON.parse(new TextDecoder().decode(child.stdout));
    assert.equal(
      ownCgroup(out.cgroup, mount.version),
      cg.relative,
      "the wrapper did not put the process in it",
    );
    assert.equal(out.innerError, undefined);
    assert.equal(
      out.inner,
      mount.version === 1 ? `${cg.path}/apt${h.tag}_inner` : `${mount.mountPoint}/apt${h.tag}_inner`,
    );
    if (mount.version === 1) {
      assert.equal(out.big, undefined, "a 512 MiB cgroup was made inside a 256 MiB one");
      assert.match(
        out.bigError,
        new RegExp(
          `^cannot make memory cgroup big: a limit of ${512 * MiB} bytes is above the ${
            256 * MiB
          } that ${cg.path} allows`,
        ),
      );
      assert.deepEqual(await recordedCgroups(h.tag, h.dir), [cg.path, out.inner]);
    }
  }
  assert.ok(!(await pathExists(path)), `${path} was not removed`);
  assert.ok(!(await pathExists(dir)), `${dir} was not removed`);
});

Deno.test("Harness.dispose() behaviour: keeps the run dir while a memory cgroup it lists is still there", async () => {
  const h = await Harness.create();
  // Made for the run but not through the Harness, as a container node's is: the Harness does not remove it.
  const cg = await createMemoryCgroup(h, "stray", 64 * MiB);
  try {
    await assert.rejects(h.dispose(), (e: AggregateError) => {
      assert.match(
        String(e.errors),
        new RegExp(`memory cgroups still there \\(${cg.path}\\): run dir ${h.dir} kept`),
      );
      return true;
    });
    assert.ok(await pathExists(`${h.dir}/cgroups`), "the list of the run's cgroups went with the run dir");
  } finally {
    await cg.remove();
    await Deno.remove(h.dir, { recursive: true }).catch(() => {});
  }
});
