/**
 * The snapshot store contract: what `SnapshotStore` (src/storage/store.ts) promises, as one suite of Deno tests
 * that every backend runs. `storeContract(name, open)` registers it; storage_test.ts runs it against the
 * directory store, storage_s3_test.ts against versitygw and storage_manta_test.ts against the local
 * Manta-protocol server. What only one backend does (signatures, credentials, part layout, temporary files of
 * dead writers) is tested in that backend's file.
 *
 * The backend's servers are started once for the whole suite; each case gets a store of its own (its own
 * directory or prefix) that starts empty, so the cases cannot see each other's objects.
 *
 * @module
 */
import { createHash } from "node:crypto";
import { assert, assertEquals, assertRejects } from "../unit/assert.ts";
import { NotFoundError, type ObjectInfo, type SnapshotStore } from "../../src/storage/store.ts";
import { PART_SIZE } from "../../src/storage/s3.ts";
import { pruneSnapshots, retentionPolicy } from "../../src/backup/retention.ts";
import { dataKey, formatManifest, manifestKey, renderBackupName } from "../../src/backup/manifest.ts";
import { testManifest } from "../unit/memory_store.ts";
import { waitFor } from "./harness/mod.ts";
import { readHead, uploadSegment } from "../../src/binlog/archiver.ts";
import { listSegments } from "../../src/binlog/catalog.ts";
import { fetchSegments } from "../../src/binlog/replay.ts";

/** A store made for one case, and a way to see behind it. */
export interface ContractStore {
  /** Empty when the case starts, and apart from every other store the backend made. */
  readonly store: SnapshotStore;
  /**
   * What the backend holds for this store that `store.list()` does not show: temporary files, pending multipart
   * uploads, uploads the server has not finished. Once a put has settled there must be none.
   */
  hidden(): Promise<string[]>;
}

/** A backend's servers, started once for the suite; disposing it stops them (by pid, or in-process). */
export interface ContractBackend extends AsyncDisposable {
  /** A new, empty store of this backend. */
  newStore(): Promise<ContractStore>;
}

type Case = (c: ContractStore) => Promise<void>;

/**
 * Registers the contract's tests for one backend: one Deno test, one step per case, the backend opened once.
 *
 * @param name The backend, as in the test's name (`local`, `s3`, `manta`).
 * @param open Starts the backend's servers.
 */
export function storeContract(name: string, open: () => Promise<ContractBackend>): void {
  Deno.test(`SnapshotStore contract: ${name}`, async (t) => {
    await using backend = await open();
    for (const [title, run] of CASES) {
      await t.step(title, async () => await run(await backend.newStore()));
    }
  });
}

// ---------------------------------------------------------------------------------------------------------
// helpers, also used by the backends' own files

const MiB = 1024 * 1024;

/** A stream of one UTF-8 chunk. */
export const text = (s: string): ReadableStream<Uint8Array> =>
  ReadableStream.from([new TextEncoder().encode(s)]);

/** An object's bytes as text. */
export async function readText(store: SnapshotStore, key: string): Promise<string> {
  return await new Response(await store.get(key)).text();
}

/** Every key `store.list(prefix)` yields, sorted (duplicates kept, so that a duplicate fails a comparison). */
export async function listKeys(store: SnapshotStore, prefix?: string): Promise<string[]> {
  return (await Array.fromAsync(store.list(prefix))).map((o) => o.key).sort();
}

/**
 * `size` bytes of a pseudo-random pattern, produced in chunks of odd sizes (never held whole), optionally failing
 * with `backup tool died` after `failAfter` bytes; `sha256()` is the hash of what was produced.
 */
export function patterned(size: number, opts: { failAfter?: number; onCancel?: () => void } = {}): {
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

/** SHA-256 and length of a stream, read to its end. */
export async function sha256Stream(
  stream: ReadableStream<Uint8Array>,
): Promise<{ sha256: string; size: number }> {
  const hash = createHash("sha256");
  let size = 0;
  for await (const chunk of stream) {
    hash.update(chunk);
    size += chunk.byteLength;
  }
  return { sha256: hash.digest("hex"), size };
}

/** Paths of the files below `dir`, relative to it, `/`-separated (none if `dir` does not exist). */
export async function filesBelow(dir: string, under = ""): Promise<string[]> {
  let entries: Deno.DirEntry[];
  try {
    entries = await Array.fromAsync(Deno.readDir(under === "" ? dir : `${dir}/${under}`));
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return [];
    throw e;
  }
  const out: string[] = [];
  for (const e of entries) {
    const path = under === "" ? e.name : `${under}/${e.name}`;
    if (e.isDirectory) out.push(...await filesBelow(dir, path));
    else out.push(path);
  }
  return out.sort();
}

/** The files below `dir` that `store.list()` does not show. */
export async function unlisted(store: SnapshotStore, dir: string): Promise<string[]> {
  const listed = new Set(await listKeys(store));
  return (await filesBelow(dir)).filter((f) => !listed.has(f));
}

/** Asserts the store hides nothing; a server may take a moment to notice a connection that was dropped. */
async function assertNothingHidden(c: ContractStore): Promise<void> {
  let last: string[] = [];
  await waitFor("the store to hold nothing it does not list", async () => {
    last = await c.hidden();
    return last.length === 0;
  }, { timeoutMs: 5000 }).catch(() => {});
  assertEquals(last, [], "held by the store but not listed");
}

async function assertNotFound(store: SnapshotStore, key: string): Promise<void> {
  const e = await assertRejects(
    () => store.get(key),
    NotFoundError,
    `No object '${key}' in the ${store.kind} store`,
  );
  assertEquals(e.key, key);
}

function assertRecent(info: ObjectInfo): void {
  assert(Math.abs(info.modified.getTime() - Date.now()) < 60_000, `${info.key}: modified ${info.modified}`);
}

// ---------------------------------------------------------------------------------------------------------
// the cases

const CASES: [string, Case][] = [
  ["put() then get() returns the same bytes, from empty to several S3 parts", async (c) => {
    const { store } = c;
    // S3 sends less than a part as one PUT and more as a multipart upload: sizes on either side of that.
    const sizes = [0, 1, 65_537, PART_SIZE - 1, PART_SIZE, 3 * PART_SIZE + 123_457];
    for (const size of sizes) {
      const key = `round/trip-${size}.bin`;
      const source = patterned(size);
      const info = await store.put(key, source.stream);
      assertEquals([info.key, info.size], [key, size]);
      assertRecent(info);
      assertEquals(await sha256Stream(await store.get(key)), { sha256: source.sha256(), size }, key);
    }
    const listed = (await Array.fromAsync(store.list("round/"))).map((o) => [o.key, o.size]);
    assertEquals(listed.sort(), sizes.map((s) => [`round/trip-${s}.bin`, s]).sort());
    await assertNothingHidden(c);
  }],

  ["put() stores every byte of a stream from a child process", async (c) => {
    const { store } = c;
    for (let trial = 0; trial < 3; trial++) {
      const child = new Deno.Command("sh", {
        args: ["-c", "head -c 3000000 /dev/urandom | zstd -q -1"],
        stdout: "piped",
      }).spawn();
      const hash = createHash("sha256");
      let sent = 0;
      const counted = child.stdout.pipeThrough(
        new TransformStream<Uint8Array, Uint8Array>({
          transform(chunk, c) {
            sent += chunk.byteLength;
            hash.update(chunk);
            c.enqueue(chunk);
          },
        }),
      );
      const info = await store.put(`trial-${trial}.zst`, counted);
      assert((await child.status).success, "the child failed");
      assertEquals(info.size, sent);
      const back = await sha256Stream(await store.get(`trial-${trial}.zst`));
      assertEquals(back, { sha256: hash.digest("hex"), size: sent });
    }
  }],

  ["put() of an existing key replaces the object", async (c) => {
    const { store } = c;
    await store.put("a-1", text("first version"));
    await store.put("sub/a-1", text("another object"));
    const info = await store.put("a-1", text("second, longer version"));
    assertEquals([info.key, info.size], ["a-1", "second, longer version".length]);
    assertEquals(await readText(store, "a-1"), "second, longer version");
    assertEquals(await readText(store, "sub/a-1"), "another object");
    assertEquals(
      (await Array.fromAsync(store.list("a-"))).map((o) => [o.key, o.size]),
      [["a-1", "second, longer version".length]],
    );
  }],

  ["get() of a missing key throws NotFoundError naming it", async (c) => {
    const { store } = c;
    await assertNotFound(store, "missing");
    await store.put("sub/a-3", text("content of sub/a-3"));
    await assertNotFound(store, "missing");
    await assertNotFound(store, "sub/nope/x"); // below a "directory" that does not exist
    await assertNotFound(store, "sub/a-"); // a prefix of an object's key
    await assertNotFound(store, "sub"); // a "directory": list() shows no object of that name
    await assertNotFound(store, "sub/a-3/x"); // below an object
    await store.delete(["sub/a-3"]);
    await assertNotFound(store, "sub/a-3");
    assertEquals(await listKeys(store), []);
  }],

  ["list() yields every object whose key starts with the prefix, with its size", async (c) => {
    const { store } = c;
    const keys = ["a-1", "a-2", "b-1", "empty", "sub/a-3", "sub/deeper/c-4"];
    for (const key of keys) {
      const content = key === "empty" ? "" : `content of ${key}`;
      const info = await store.put(
        key,
        key === "empty" ? ReadableStream.from<Uint8Array>([]) : text(content),
      );
      assertEquals([info.key, info.size], [key, content.length]);
    }
    assertEquals(await listKeys(store), keys);
    assertEquals(await listKeys(store, ""), keys);
    assertEquals(await listKeys(store, "a-"), ["a-1", "a-2"]);
    assertEquals(await listKeys(store, "a-1"), ["a-1"]);
    assertEquals(await listKeys(store, "sub/"), ["sub/a-3", "sub/deeper/c-4"]);
    assertEquals(await listKeys(store, "su"), ["sub/a-3", "sub/deeper/c-4"]);
    assertEquals(await listKeys(store, "sub/deeper/c"), ["sub/deeper/c-4"]);
    assertEquals(await listKeys(store, "sub/deeper/c-4"), ["sub/deeper/c-4"]);
    assertEquals(await listKeys(store, "sub/deeper/c-40"), []);
    assertEquals(await listKeys(store, "zzz"), []);
    assertEquals(await listKeys(store, "nowhere/"), []);
    for (const o of await Array.fromAsync(store.list())) {
      assertEquals(o.size, o.key === "empty" ? 0 : `content of ${o.key}`.length, o.key);
      assertRecent(o);
    }
    assertEquals(
      (await Array.fromAsync(store.list("b-"))).map((o) => [o.key, o.size]),
      [["b-1", "content of b-1".length]],
    );
    assertEquals(await readText(store, "sub/a-3"), "content of sub/a-3");
    assertEquals(await readText(store, "sub/deeper/c-4"), "content of sub/deeper/c-4");
    assertEquals(await readText(store, "empty"), "");

    // After deletes, list() shows what is left, and no "directories".
    await store.delete(["a-1", "sub/a-3"]);
    assertEquals(await listKeys(store), ["a-2", "b-1", "empty", "sub/deeper/c-4"]);
    assertEquals(await listKeys(store, "sub/"), ["sub/deeper/c-4"]);
    await store.delete(["sub/deeper/c-4"]);
    assertEquals(await listKeys(store, "sub/"), []);
    assertEquals(await listKeys(store, "su"), []);
    await store.delete(await listKeys(store));
    assertEquals(await listKeys(store), []);
  }],

  ["delete() removes several keys at once; missing keys are not an error", async (c) => {
    const { store } = c;
    for (const key of ["a-1", "a-2", "b-1", "sub/a-3", "sub/a-4"]) await store.put(key, text(key));
    await store.delete(["a-1", "never-existed", "sub/a-3", "sub/nope/x"]);
    assertEquals(await listKeys(store), ["a-2", "b-1", "sub/a-4"]);
    await assertNotFound(store, "a-1");
    await store.delete(["a-1", "sub/a-3"]); // again: already gone
    await store.delete([]);
    // Neither a "directory" nor a key below an object names an object: nothing to delete, nothing deleted.
    await store.delete(["sub", "sub/a-4/x"]);
    assertEquals(await listKeys(store), ["a-2", "b-1", "sub/a-4"]);
    assertEquals(await readText(store, "a-2"), "a-2");
    assertEquals(await readText(store, "sub/a-4"), "sub/a-4");
  }],

  ["list() and delete() handle more objects than one page or batch (1,000)", async (c) => {
    const { store } = c;
    const keys = Array.from({ length: 1105 }, (_, i) => `k/${String(i).padStart(5, "0")}`);
    for (let i = 0; i < keys.length; i += 50) {
      await Promise.all(keys.slice(i, i + 50).map((k) => store.put(k, text(k))));
    }
    assertEquals(await listKeys(store, "k/"), keys);
    await store.delete(keys.slice(5));
    assertEquals(await listKeys(store), keys.slice(0, 5));
  }],

  ["keys that could escape the store are refused with a RangeError", async (c) => {
    const { store } = c;
    for (const key of ["../x", "/etc/passwd", "a//b", "a/./b", "a/../../b", "sp ace", "", "a/"]) {
      await assertRejects(() => store.get(key), RangeError, `Cannot use '${key}' as a snapshot key`);
      await assertRejects(() => store.put(key, text("x")), RangeError, "Cannot use");
      await assertRejects(() => store.delete(["fine", key]), RangeError, "Cannot use");
    }
    assertEquals(await listKeys(store), []);
    await assertNothingHidden(c);
  }],

  ["a put() whose source fails publishes nothing and keeps the previous object", async (c) => {
    const { store } = c;
    await store.put("keep", text("an earlier object"));
    await store.put("dir/replaced.bin", text("the previous version"));

    // A small object: the source fails after its first chunk.
    const small = () =>
      new ReadableStream<Uint8Array>({
        start(c) {
          c.enqueue(new Uint8Array(1000));
          c.error(new Error("backup tool died"));
        },
      });
    await assertRejects(() => store.put("dir/broken.bin", small()), Error, "backup tool died");
    await assertNotFound(store, "dir/broken.bin");

    // A large one: the source fails after two and a half S3 parts.
    const large = patterned(10 * PART_SIZE, { failAfter: 2.5 * PART_SIZE });
    await assertRejects(() => store.put("dir/large.bin", large.stream), Error, "backup tool died");
    await assertNotFound(store, "dir/large.bin");

    // Over an existing object: the old one stays, whole.
    for (const body of [small(), patterned(10 * PART_SIZE, { failAfter: 2.5 * PART_SIZE }).stream]) {
      await assertRejects(() => store.put("dir/replaced.bin", body), Error, "backup tool died");
      assertEquals(await readText(store, "dir/replaced.bin"), "the previous version");
    }

    // A stream that already failed (and is locked by the failed put) is refused too.
    const failed = small();
    await assertRejects(() => store.put("dir/again.bin", failed), Error);
    await assertRejects(() => store.put("dir/again.bin", failed), Error);
    await assertNotFound(store, "dir/again.bin");

    assertEquals(await listKeys(store), ["dir/replaced.bin", "keep"]);
    assertEquals(await listKeys(store, "dir/"), ["dir/replaced.bin"]);
    assertEquals(await readText(store, "keep"), "an earlier object");
    await assertNothingHidden(c);
  }],

  ["an aborted put() publishes nothing and stops reading its source", async (c) => {
    const { store } = c;
    await store.put("keep", text("an earlier object"));
    for (const key of ["aborted.bin", "keep"]) {
      let cancelled = false;
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
      await assertRejects(() => store.put(key, endless, controller.signal), Error, "test abort");
      await waitFor(`the source of '${key}' to be cancelled`, () => cancelled);
      assert(produced < 8 * PART_SIZE, `read ${produced} bytes after the abort`);
    }
    await assertNotFound(store, "aborted.bin");
    assertEquals(await readText(store, "keep"), "an earlier object");

    // An abort before the first byte: nothing is stored.
    await assertRejects(
      () => store.put("never.bin", text("x"), AbortSignal.abort(new Error("early"))),
      Error,
      "early",
    );
    await assertNotFound(store, "never.bin");
    assertEquals(await listKeys(store), ["keep"]);
    assertEquals(await readText(store, "keep"), "an earlier object");
    await assertNothingHidden(c);
  }],

  ["an aborted get() stops: the stream fails with the signal's reason", async (c) => {
    const { store } = c;
    const size = 24 * MiB;
    const source = patterned(size);
    await store.put("big.bin", source.stream);

    await assertRejects(
      () => store.get("big.bin", AbortSignal.abort(new Error("aborted early"))),
      Error,
      "aborted early",
    );

    const controller = new AbortController();
    const reader = (await store.get("big.bin", controller.signal)).getReader();
    const first = await reader.read();
    assert(!first.done && first.value.byteLength > 0, "no first chunk");
    let read = first.value.byteLength;
    controller.abort(new Error("stop reading"));
    await assertRejects(
      async () => {
        for (;;) {
          const r = await reader.read();
          if (r.done) return;
          read += r.value.byteLength;
        }
      },
      Error,
      "stop reading",
    );
    assert(read < size, `read all ${size} bytes after the abort`);

    // The object is untouched, and a read without a signal gets all of it.
    assertEquals(await sha256Stream(await store.get("big.bin")), { sha256: source.sha256(), size });
  }],

  ["retention keeps the newest N, the snapshot Consul names and other clusters' snapshots", async (c) => {
    const { store } = c;
    const now = new Date();
    const day = 86_400_000;
    const pattern = "mysql-backup-%Y-%m-%dT%H-%M-%SZ";
    const policy = retentionPolicy({
      name: pattern,
      ttlSeconds: 86_400,
      from: "primary",
      retainCount: 2,
      archiveIntervalSeconds: 60,
      onStop: false,
      verify: false,
    });
    assertEquals(policy, { retainCount: 2, namePrefix: "mysql-backup-" });
    const ago = (days: number) => new Date(now.getTime() - days * day);
    /** Stores a snapshot as a backup does: its data object, then its manifest. */
    const snapshot = async (
      name: string,
      createdAt: Date,
      opts: { data?: boolean; dataSize?: number } = {},
    ) => {
      const size = 100 + name.length;
      const m = testManifest(name, createdAt.toISOString(), size);
      if (opts.data ?? true) {
        await store.put(m.key, ReadableStream.from([new Uint8Array(opts.dataSize ?? size)]));
      }
      await store.put(manifestKey(name), text(formatManifest(m)));
      return name;
    };
    const [d1, d2, d3, d4, d5] = [1, 2, 3, 4, 5].map((d) => renderBackupName(pattern, ago(d)));
    for (const [name, days] of [[d1, 1], [d2, 2], [d3, 3], [d4, 4], [d5, 5]] as const) {
      await snapshot(name, ago(days));
    }
    const other = await snapshot(renderBackupName("other-backup-%Y-%m-%dT%H-%M-%SZ", ago(9)), ago(9));
    const orphan = await snapshot("mysql-backup-orphan", ago(3), { data: false });
    const badSize = await snapshot("mysql-backup-bad-size", ago(6), { dataSize: 7 });
    await store.put(dataKey("mysql-backup-uploading"), text("a backup still being written"));
    await store.put("notes.txt", text("not a snapshot"));
    const before = await listKeys(store);
    const keysOf = (...names: string[]) => names.flatMap((n) => [dataKey(n), manifestKey(n)]);
    assertEquals(before.length, 2 * 8 - 1 + 2);

    // Consul names d5 as the last snapshot: it is kept, however old.
    const first = await pruneSnapshots(store, policy, { protect: d5, now });
    assertEquals([...first.deleted].sort(), [d3, d4, orphan].sort());
    assertEquals(first.failed, []);
    assertEquals(first.plan.keep.map((k) => `${k.snapshot.name}: ${k.reason}`), [
      "mysql-backup-uploading: data without a manifest, newer than 24h (maybe still being written)",
      `${d1}: one of the newest 2`,
      `${d2}: one of the newest 2`,
      `${d5}: the last snapshot (protected)`,
      `${badSize}: unusable: left for an operator to look at`,
      `${other}: not this cluster's (its name does not start with mysql-backup-)`,
    ]);
    const gone = new Set([...keysOf(d3, d4), manifestKey(orphan)]);
    assertEquals(await listKeys(store), before.filter((k) => !gone.has(k)));

    const second = await pruneSnapshots(store, { ...policy, retainCount: 1 }, { protect: d5, now });
    assertEquals(second.deleted, [d2]);
    assertEquals(
      await listKeys(store),
      [
        ...keysOf(d1, d5, other, badSize),
        dataKey("mysql-backup-uploading"),
        "notes.txt",
      ].sort(),
    );
    // The protected snapshot is whole.
    const protectedSize = 100 + d5.length;
    assertEquals((await sha256Stream(await store.get(dataKey(d5)))).size, protectedSize);
    await assertNothingHidden(c);
  }],
  [
    "the binlog archive: a real binlog and its index are stored, listed and fetched back checked; a lost one is seen",
    async (c) => {
      const { store } = c;
      const dir = new URL("../unit/fixtures/binlog", import.meta.url).pathname;
      const head = await readHead(dir, "mysql-bin.000001");
      const segment = await uploadSegment({ store, head, node: "n1", flavour: "mariadb" });
      assertEquals([segment.startState, segment.endState, segment.transactions], ["", "0-7-6", 6]);
      assertEquals(await listSegments(store), [segment]);
      const work = await Deno.makeTempDir({ prefix: "contract-binlog-" });
      try {
        const plan = {
          snapshot: { name: "s", createdAt: segment.createdAt, state: "" },
          steps: [{ segment, after: "" }],
          position: "0-7-6",
        };
        const [file] = await fetchSegments(store, plan, work);
        assertEquals(await Deno.readFile(file), await Deno.readFile(`${dir}/mysql-bin.000001`));
      } finally {
        await Deno.remove(work, { recursive: true });
      }
      await store.delete([segment.key]);
      const lost: string[] = [];
      assertEquals(await listSegments(store, { onLost: (s) => lost.push(s.key) }), []);
      assertEquals(lost, [segment.key]);
      await assertNothingHidden(c);
    },
  ],
];
