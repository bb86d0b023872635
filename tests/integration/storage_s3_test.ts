/**
 * The S3 store against a real S3 server (versitygw, which enforces SigV4): the snapshot store contract
 * (store_contract.ts), what only S3 does (prefixes, multipart uploads, SigV4 refusals), and a cluster whose
 * snapshots go to it: the first node's snapshot lands in S3 and a second node restores from it, while a
 * corrupt or truncated object there is refused by pre-start.
 */
import { createHash } from "node:crypto";
import { AwsClient } from "aws4fetch";
import { assert, assertEquals, assertRejects } from "../unit/assert.ts";
import { type S3Config, Secret } from "../../src/config.ts";
import { PART_SIZE, S3Store } from "../../src/storage/s3.ts";
import { NotFoundError, StoreUnavailableError } from "../../src/storage/store.ts";
import { Cluster, type TestNode } from "./cluster.ts";
import { freePort, Harness, pathExists, type S3Server, startS3, waitFor } from "./harness/mod.ts";
import {
  listKeys,
  patterned,
  readText,
  sha256Stream,
  storeContract,
  text,
  unlisted,
} from "./store_contract.ts";

const BUCKET = "snapshots";

/** A signing client with the server's root credentials, for what the store does not do (buckets, uploads). */
function rootClient(s3: S3Server): AwsClient {
  return new AwsClient({
    accessKeyId: s3.accessKey,
    secretAccessKey: s3.secretKey,
    service: "s3",
    region: s3.region,
    retries: 0,
  });
}

async function createBucket(s3: S3Server, bucket = BUCKET): Promise<void> {
  const res = await rootClient(s3).fetch(`${s3.endpoint}/${bucket}`, { method: "PUT" });
  const answer = await res.text();
  assert(res.ok, `create bucket ${bucket}: HTTP ${res.status} ${answer}`);
}

/** Multipart uploads still pending in the bucket (ListMultipartUploads). */
async function pendingUploads(s3: S3Server, bucket = BUCKET): Promise<string[]> {
  const res = await rootClient(s3).fetch(`${s3.endpoint}/${bucket}?uploads`);
  const xml = await res.text();
  assert(res.ok, `list uploads: HTTP ${res.status} ${xml}`);
  return [...xml.matchAll(/<Upload>[\s\S]*?<Key>([^<]*)<\/Key>[\s\S]*?<\/Upload>/g)].map((m) => m[1]);
}

function config(s3: S3Server, extra: Partial<S3Config> = {}): S3Config {
  return {
    endpoint: s3.endpoint,
    region: s3.region,
    bucket: BUCKET,
    prefix: "svc/",
    forcePathStyle: true,
    accessKeyId: new Secret(s3.accessKey),
    secretAccessKey: new Secret(s3.secretKey),
    ...extra,
  };
}

/** A harness with an S3 server on loopback and an empty bucket; the caller disposes it. */
async function withS3(fn: (s3: S3Server, h: Harness) => Promise<void>): Promise<void> {
  await using h = await Harness.create();
  const s3 = await h.startS3();
  await createBucket(s3);
  await fn(s3, h);
}

storeContract("s3", async () => {
  const h = await Harness.create();
  let s3: S3Server;
  try {
    s3 = await h.startS3();
    await createBucket(s3);
  } catch (e) {
    await h[Symbol.asyncDispose]();
    throw e;
  }
  let n = 0;
  return {
    newStore() {
      const prefix = `contract-${++n}/`;
      const store = new S3Store(config(s3, { prefix }));
      const hidden = async () => [
        ...(await pendingUploads(s3)).filter((k) => k.startsWith(prefix)).map((k) =>
          `pending upload of ${k}`
        ),
        ...await unlisted(store, `${s3.bucketDir}/${BUCKET}/${prefix}`),
      ];
      return Promise.resolve({ store, hidden });
    },
    [Symbol.asyncDispose]: () => h[Symbol.asyncDispose](),
  };
});

Deno.test("S3Store keeps each prefix's objects apart, and encodes prefixes that need it", async () => {
  await withS3(async (s3) => {
    const store = new S3Store(config(s3));
    const other = new S3Store(config(s3, { prefix: "other/" }));
    const whole = new S3Store(config(s3, { prefix: "" }));
    assertEquals(store.location, `s3://${BUCKET}/svc/`);
    for (const key of ["a-1", "a-2", "b-1", "sub/a-3"]) await store.put(key, text(`content of ${key}`));
    await other.put("a-1", text("another service's"));

    assertEquals(await listKeys(store), ["a-1", "a-2", "b-1", "sub/a-3"]);
    assertEquals(await listKeys(other), ["a-1"]);
    assertEquals(await listKeys(whole, "svc/a"), ["svc/a-1", "svc/a-2"]);
    assertEquals(await listKeys(whole), ["other/a-1", "svc/a-1", "svc/a-2", "svc/b-1", "svc/sub/a-3"]);
    assertEquals(await readText(other, "a-1"), "another service's");
    assertEquals(await readText(whole, "svc/a-1"), "content of a-1");
    await assertRejects(() => other.get("a-2"), NotFoundError, "No object 'a-2' in the s3 store");
    await store.delete(["a-1", "never-existed", "sub/a-3"]);
    assertEquals(await listKeys(store), ["a-2", "b-1"]);
    assertEquals(await listKeys(other), ["a-1"]);

    // A prefix with characters that need encoding in paths and queries.
    const odd = new S3Store(config(s3, { prefix: "odd prefix+(1)/" }));
    await odd.put("k", text("odd"));
    assertEquals(await listKeys(odd, "k"), ["k"]);
    assertEquals(await readText(odd, "k"), "odd");
    await odd.delete(["k"]);
    assertEquals(await Array.fromAsync(odd.list()), []);
  });
});

Deno.test("S3Store.put() uploads an object of several parts as one multipart upload, and leaves none pending", async () => {
  await withS3(async (s3) => {
    const store = new S3Store(config(s3));
    const size = 3 * PART_SIZE + 123_457;
    const source = patterned(size);
    const info = await store.put("big/object.bin", source.stream);
    assertEquals(info.size, size);
    const back = await sha256Stream(await store.get("big/object.bin"));
    assertEquals(back, { sha256: source.sha256(), size });
    // A multipart object's ETag ends in -<parts>.
    const head = await rootClient(s3).fetch(`${s3.endpoint}/${BUCKET}/svc/big/object.bin`, {
      method: "HEAD",
    });
    assert(/-4"?$/.test(head.headers.get("etag") ?? ""), `ETag ${head.headers.get("etag")}`);
    assertEquals(await pendingUploads(s3), []);

    // Exactly one part's worth goes up as a one-part upload, less than that as a single PUT.
    for (const [n, etag] of [[PART_SIZE, /-1"?$/], [PART_SIZE - 1, /^"?[0-9a-f]{32}"?$/]] as const) {
      assertEquals((await store.put(`edge-${n}`, patterned(n).stream)).size, n);
      const res = await rootClient(s3).fetch(`${s3.endpoint}/${BUCKET}/svc/edge-${n}`, { method: "HEAD" });
      assert(etag.test(res.headers.get("etag") ?? ""), `edge-${n}: ETag ${res.headers.get("etag")}`);
    }
    assertEquals(await pendingUploads(s3), []);
  });
});

Deno.test("S3Store reports bad credentials, a missing bucket and an unreachable server as StoreUnavailableError", async () => {
  await withS3(async (s3) => {
    const wrongSecret = "wrong-secret-0123456789abcdef";
    const badSecret = new S3Store(config(s3, { secretAccessKey: new Secret(wrongSecret) }));
    const unknownKey = "AKUNKNOWN0123456789";
    const badKey = new S3Store(config(s3, { accessKeyId: new Secret(unknownKey) }));
    const noBucket = new S3Store(config(s3, { bucket: "no-such-bucket" }));
    const port = freePort();
    const unreachable = new S3Store(config(s3, { endpoint: `http://127.0.0.1:${port}` }));

    const failures: [S3Store, string][] = [
      [badSecret, `The S3 store at ${s3.endpoint} refused our credentials for bucket '${BUCKET}' (`],
      [badKey, `The S3 store at ${s3.endpoint} refused our credentials for bucket '${BUCKET}' (`],
      [noBucket, `The bucket 'no-such-bucket' does not exist at ${s3.endpoint}: create it, or fix S3_BUCKET`],
      [unreachable, `Cannot reach the S3 store at http://127.0.0.1:${port} to `],
    ];
    for (const [store, expected] of failures) {
      const calls: [string, () => Promise<unknown>][] = [
        ["put", () => store.put("x", text("data"))],
        ["put large", () => store.put("y", patterned(PART_SIZE + 1).stream)],
        ["get", () => store.get("x")],
        ["list", () => Array.fromAsync(store.list())],
        ["delete", () => store.delete(["x"])],
      ];
      for (const [name, call] of calls) {
        const e = await assertRejects(call, StoreUnavailableError, expected);
        assert(!e.message.includes("\n"), e.message);
        for (const secret of [s3.secretKey, wrongSecret, unknownKey]) {
          assert(!e.message.includes(secret), `${name}: the message holds a secret: ${e.message}`);
        }
      }
    }
    const e = await assertRejects(() => badSecret.get("x"), StoreUnavailableError);
    assert(
      e.message.endsWith("check S3_ACCESS_KEY_ID and S3_SECRET_ACCESS_KEY and the bucket's policy"),
      e.message,
    );
    // None of them left anything behind.
    assertEquals(await Array.fromAsync(new S3Store(config(s3, { prefix: "" })).list()), []);
    assertEquals(await pendingUploads(s3), []);
  });
});

// ---------------------------------------------------------------------------------------------------------
// A cluster whose snapshots go to S3

/** A 2-node cluster with SNAPSHOT_BACKEND=s3 against versitygw on the host leg, reachable from the nodes. */
async function s3Cluster(h: Harness): Promise<{ c: Cluster; s3: S3Server; n1: TestNode; n2: TestNode }> {
  const c = await Cluster.create(h);
  const s3 = await startS3({ dir: `${h.dir}/s3`, group: h.group, host: h.net.hostAddress });
  await createBucket(s3);
  const env = {
    SNAPSHOT_BACKEND: "s3",
    SNAPSHOT_DIR: `${h.dir}/no-local-snapshots`,
    S3_ENDPOINT: s3.endpoint,
    S3_BUCKET: BUCKET,
    S3_ACCESS_KEY_ID: s3.accessKey,
    S3_SECRET_ACCESS_KEY: s3.secretKey,
  };
  return { c, s3, n1: c.node(1, env), n2: c.node(2, env) };
}

function assertNoSecret(s3: S3Server, ...outputs: string[]): void {
  for (const out of outputs) {
    assert(!out.includes(s3.secretKey), "the S3 secret key was printed");
    assert(!out.includes(s3.accessKey), "the S3 access key id was printed");
  }
}

Deno.test("A cluster stores its first snapshot in S3, and a new node restores from it and replicates", async (t) => {
  await using h = await Harness.create({ nodes: 2 });
  const { c, s3, n1, n2 } = await s3Cluster(h);
  const store = new S3Store(config(s3, { prefix: "mysql/" }));
  let snapshot = "";

  await t.step("the first node bootstraps as primary and its first snapshot lands in S3", async () => {
    const health = await c.boot(n1);
    assertEquals(health.code, 0, health.stderr);
    assertNoSecret(s3, health.stdout, health.stderr);
    assertEquals(await c.primaryName(), "n1");
    const consul = c.consul();
    try {
      const entry = await consul.get("mysql-last-backup");
      assert(entry !== undefined, "LAST_BACKUP_KEY not written");
      snapshot = JSON.parse(entry.value).name;
    } finally {
      consul.close();
    }
    const keys = (await Array.fromAsync(store.list())).map((o) => o.key).sort();
    assertEquals(keys, [`${snapshot}.manifest.json`, `${snapshot}.xbstream.zst`]);
    assert(!(await pathExists(`${h.dir}/no-local-snapshots`)), "a snapshot went to the local directory");
    assertEquals(await pendingUploads(s3), []);
  });

  await t.step("a second node restores it in pre-start and replicates", async () => {
    await using app = await c.app(n1);
    await app.run(["CREATE TABLE app.t (id INT PRIMARY KEY)", "INSERT INTO app.t VALUES (1), (2)"]);
    const pre = await c.preStart(n2);
    assertEquals(pre.code, 0, pre.stderr);
    assert(pre.stderr.includes(`Restoring snapshot ${snapshot}`), pre.stderr);
    assertNoSecret(s3, pre.stdout, pre.stderr);
    await c.startMysqld(n2);
    const health = await c.run(n2, ["health"]);
    assertEquals(health.code, 0, health.stderr);
    await app.query("INSERT INTO app.t VALUES (3)");
    await waitFor("row 3 on n2", async () => {
      return (await c.rows(n2)) === 3;
    });
    const [status] = await c.sql(n2, "SHOW SLAVE STATUS");
    assertEquals([status.Master_Host, status.Using_Gtid], [n1.address, "Slave_Pos"]);
  });
});

Deno.test("pre-start refuses a corrupt or truncated snapshot object in S3 and starts nothing from it", async (t) => {
  await using h = await Harness.create({ nodes: 2 });
  const { c, s3, n1, n2 } = await s3Cluster(h);
  const store = new S3Store(config(s3, { prefix: "mysql/" }));
  const health = await c.boot(n1);
  assertEquals(health.code, 0, health.stderr);
  const consul = c.consul();
  let manifest: { name: string; key: string; size: number; sha256: string };
  try {
    manifest = JSON.parse((await consul.get("mysql-last-backup"))!.value);
  } finally {
    consul.close();
  }
  const original = new Uint8Array(await new Response(await store.get(manifest.key)).arrayBuffer());
  assertEquals(original.length, manifest.size);
  const datadir = n2.env.MYSQL_DATADIR;

  await t.step("bytes flipped in the object", async () => {
    const flipped = original.slice();
    const middle = Math.floor(flipped.length / 2);
    for (let i = middle; i < middle + 16; i++) flipped[i] ^= 0xff;
    await store.put(manifest.key, ReadableStream.from([flipped]));
    const actual = createHash("sha256").update(flipped).digest("hex");
    const pre = await c.preStart(n2);
    assertEquals(pre.code, 1, pre.stderr);
    assert(
      pre.stderr.includes(
        `Snapshot '${manifest.name}' is corrupt: its SHA-256 is ${
          actual.slice(0, 12)
        }… but the manifest says ` +
          `${manifest.sha256.slice(0, 12)}…: it was not restored`,
      ),
      pre.stderr,
    );
    assert(!(await pathExists(`${datadir}/mysql`)), "a datadir was restored from a corrupt snapshot");
  });

  await t.step("the object cut to half its size", async () => {
    const half = Math.floor(original.length / 2);
    await store.put(manifest.key, ReadableStream.from([original.slice(0, half)]));
    const pre = await c.preStart(n2);
    assertEquals(pre.code, 1, pre.stderr);
    assert(
      pre.stderr.includes(
        `Snapshot '${manifest.name}' is corrupt: its data object is ${half} bytes but the manifest says ` +
          `${manifest.size}: it was not restored`,
      ),
      pre.stderr,
    );
    assert(!(await pathExists(`${datadir}/mysql`)), "a datadir was restored from a truncated snapshot");
  });

  await t.step("the object missing", async () => {
    await store.delete([manifest.key]);
    const pre = await c.preStart(n2);
    assertEquals(pre.code, 1, pre.stderr);
    assert(
      pre.stderr.includes(
        `Snapshot '${manifest.name}' is corrupt: its data object '${manifest.key}' is missing from the s3 store`,
      ),
      pre.stderr,
    );
    assert(!(await pathExists(`${datadir}/mysql`)));
  });

  await t.step("the original bytes back: the same node restores", async () => {
    await store.put(manifest.key, ReadableStream.from([original]));
    const pre = await c.preStart(n2);
    assertEquals(pre.code, 0, pre.stderr);
    assert(await pathExists(`${datadir}/mysql`), "no datadir restored");
  });
});
