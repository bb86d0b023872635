/**
 * The snapshot store contract against a real S3 server (versitygw, which enforces SigV4), and a cluster whose
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

/** `size` bytes of a fixed pseudo-random pattern, produced in chunks of odd sizes (never held whole). */
function patterned(size: number, opts: { failAfter?: number; onCancel?: () => void } = {}): {
  stream: ReadableStream<Uint8Array>;
  sha256: () => string;
} {
  const hash = createHash("sha256");
  const block = new Uint8Array(1_000_003);
  for (let i = 0; i < block.length; i += 65536) crypto.getRandomValues(block.subarray(i, i + 65536));
  let sent = 0;
  const stream = new ReadableStream<Uint8Array>({
    pull(c) {
      if (opts.failAfter !== undefined && sent >= opts.failAfter) {
        c.error(new Error("backup tool died"));
        return;
      }
      const n = Math.min(block.length - (sent % 7919), size - sent);
      if (n <= 0) {
        c.close();
        return;
      }
      const chunk = block.slice(sent % 7919, (sent % 7919) + n);
      hash.update(chunk);
      sent += n;
      c.enqueue(chunk);
    },
    cancel() {
      opts.onCancel?.();
    },
  });
  return { stream, sha256: () => hash.digest("hex") };
}

async function sha256Stream(stream: ReadableStream<Uint8Array>): Promise<{ sha256: string; size: number }> {
  const hash = createHash("sha256");
  let size = 0;
  for await (const chunk of stream) {
    hash.update(chunk);
    size += chunk.byteLength;
  }
  return { sha256: hash.digest("hex"), size };
}

const bytes = (s: string) => ReadableStream.from([new TextEncoder().encode(s)]);

Deno.test("S3Store stores, lists, reads and deletes objects below its prefix", async () => {
  await withS3(async (s3) => {
    const store = new S3Store(config(s3));
    const other = new S3Store(config(s3, { prefix: "other/" }));
    const whole = new S3Store(config(s3, { prefix: "" }));
    assertEquals(store.location, `s3://${BUCKET}/svc/`);
    for (const key of ["a-1", "a-2", "b-1", "sub/a-3"]) {
      const info = await store.put(key, bytes(`content of ${key}`));
      assertEquals([info.key, info.size], [key, `content of ${key}`.length]);
      assert(Math.abs(info.modified.getTime() - Date.now()) < 60_000, String(info.modified));
    }
    await other.put("a-1", bytes("another service's"));
    await store.put("empty", ReadableStream.from<Uint8Array>([]));

    const keys = async (s: S3Store, prefix?: string) =>
      (await Array.fromAsync(s.list(prefix))).map((o) => o.key).sort();
    assertEquals(await keys(store), ["a-1", "a-2", "b-1", "empty", "sub/a-3"]);
    assertEquals(await keys(store, "a-"), ["a-1", "a-2"]);
    assertEquals(await keys(store, "sub/"), ["sub/a-3"]);
    assertEquals(await keys(other), ["a-1"]);
    assertEquals(await keys(whole, "svc/a"), ["svc/a-1", "svc/a-2"]);
    assertEquals(
      (await Array.fromAsync(store.list("b-"))).map((o) => [o.key, o.size]),
      [["b-1", "content of b-1".length]],
    );

    assertEquals(await new Response(await store.get("sub/a-3")).text(), "content of sub/a-3");
    assertEquals(await new Response(await other.get("a-1")).text(), "another service's");
    assertEquals(await new Response(await store.get("empty")).text(), "");
    await assertRejects(() => store.get("missing"), NotFoundError, "No object 'missing' in the s3 store");
    await assertRejects(() => other.get("a-2"), NotFoundError, "No object 'a-2' in the s3 store");
    await assertRejects(() => store.get("../x"), RangeError, "Cannot use '../x' as a snapshot key");

    // Replacing an object, then deleting: missing keys are not an error.
    await store.put("a-2", bytes("second version"));
    assertEquals(await new Response(await store.get("a-2")).text(), "second version");
    await store.delete(["a-1", "never-existed", "sub/a-3"]);
    assertEquals(await keys(store), ["a-2", "b-1", "empty"]);
    assertEquals(await keys(other), ["a-1"]);
    await store.delete([]);

    // A prefix with characters that need encoding in paths and queries.
    const odd = new S3Store(config(s3, { prefix: "odd prefix+(1)/" }));
    await odd.put("k", bytes("odd"));
    assertEquals((await Array.fromAsync(odd.list("k"))).map((o) => o.key), ["k"]);
    assertEquals(await new Response(await odd.get("k")).text(), "odd");
    await odd.delete(["k"]);
    assertEquals(await Array.fromAsync(odd.list()), []);
  });
});

Deno.test("S3Store lists and deletes more objects than one page or batch holds", async () => {
  await withS3(async (s3) => {
    const store = new S3Store(config(s3));
    const keys = Array.from({ length: 1105 }, (_, i) => `k/${String(i).padStart(5, "0")}`);
    for (let i = 0; i < keys.length; i += 50) {
      await Promise.all(keys.slice(i, i + 50).map((k) => store.put(k, bytes(k))));
    }
    assertEquals((await Array.fromAsync(store.list("k/"))).map((o) => o.key).sort(), keys);
    await store.delete(keys.slice(5));
    assertEquals((await Array.fromAsync(store.list())).map((o) => o.key).sort(), keys.slice(0, 5));
  });
});

Deno.test("S3Store.put() uploads an object of several parts and get() streams it back", async () => {
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

    // Exactly one part's worth goes up as a one-part upload; less than that as a single PUT.
    for (const n of [PART_SIZE, PART_SIZE - 1]) {
      const exact = patterned(n);
      assertEquals((await store.put(`edge-${n}`, exact.stream)).size, n);
      assertEquals(await sha256Stream(await store.get(`edge-${n}`)), { sha256: exact.sha256(), size: n });
    }
    assertEquals(await pendingUploads(s3), []);
  });
});

Deno.test("S3Store.put() that fails or is aborted mid-stream leaves no object and no pending upload", async () => {
  await withS3(async (s3) => {
    const store = new S3Store(config(s3));
    await store.put("keep", bytes("an earlier object"));

    // The source fails after two and a half parts.
    let cancelled = false;
    const failing = patterned(10 * PART_SIZE, {
      failAfter: 2.5 * PART_SIZE,
      onCancel: () => cancelled = true,
    });
    await assertRejects(() => store.put("broken.bin", failing.stream), Error, "backup tool died");
    assertEquals((await Array.fromAsync(store.list())).map((o) => o.key), ["keep"]);
    await assertRejects(() => store.get("broken.bin"), NotFoundError);
    assertEquals(await pendingUploads(s3), []);

    // The caller aborts while parts are in flight: the producer is cancelled, nothing stays.
    cancelled = false;
    const controller = new AbortController();
    let produced = 0;
    const endless = patterned(1e12, { onCancel: () => cancelled = true }).stream.pipeThrough(
      new TransformStream<Uint8Array, Uint8Array>({
        transform(chunk, c) {
          produced += chunk.byteLength;
          if (produced > 3 * PART_SIZE) controller.abort(new Error("test abort"));
          c.enqueue(chunk);
        },
      }),
    );
    await assertRejects(() => store.put("aborted.bin", endless, controller.signal), Error, "test abort");
    await waitFor("the source to be cancelled", () => cancelled);
    assert(produced < 8 * PART_SIZE, `read ${produced} bytes after the abort`);
    assertEquals((await Array.fromAsync(store.list())).map((o) => o.key), ["keep"]);
    assertEquals(await pendingUploads(s3), []);

    // An abort before the first byte: nothing is sent at all.
    await assertRejects(
      () => store.put("never.bin", bytes("x"), AbortSignal.abort(new Error("early"))),
      Error,
      "early",
    );
    assertEquals((await Array.fromAsync(store.list())).map((o) => o.key), ["keep"]);
    assertEquals(await new Response(await store.get("keep")).text(), "an earlier object");
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
        ["put", () => store.put("x", bytes("data"))],
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
