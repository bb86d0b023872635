/**
 * The snapshot store contract, run against the local directory store (S3 and Manta join it later).
 */
import { assert, assertEquals, assertRejects } from "../unit/assert.ts";
import { LocalStore, STALE_TMP_MS } from "../../src/storage/local.ts";
import { NotFoundError, type SnapshotStore } from "../../src/storage/store.ts";

async function withStore(fn: (store: SnapshotStore, root: string) => Promise<void>): Promise<void> {
  const root = await Deno.makeTempDir({ prefix: "autopilot-store-" });
  try {
    await fn(new LocalStore(root), root);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
}

Deno.test("LocalStore.put() stores every byte of a stream from a child process", async () => {
  await withStore(async (store) => {
    for (let trial = 0; trial < 3; trial++) {
      const child = new Deno.Command("sh", {
        args: ["-c", "head -c 3000000 /dev/urandom | zstd -q -1"],
        stdout: "piped",
      }).spawn();
      let sent = 0;
      const counted = child.stdout.pipeThrough(
        new TransformStream<Uint8Array, Uint8Array>({
          transform(chunk, c) {
            sent += chunk.byteLength;
            c.enqueue(chunk);
          },
        }),
      );
      const info = await store.put(`trial-${trial}.zst`, counted);
      await child.status;
      assertEquals(info.size, sent);
      const back = new Uint8Array(await new Response(await store.get(`trial-${trial}.zst`)).arrayBuffer());
      assertEquals(back.length, sent);
    }
  });
});

Deno.test("LocalStore.put() leaves no object and no temporary file when the source fails", async () => {
  await withStore(async (store, root) => {
    const failing = new ReadableStream<Uint8Array>({
      start(c) {
        c.enqueue(new Uint8Array(1000));
        c.error(new Error("backup tool died"));
      },
    });
    await assertRejects(() => store.put("dir/broken.bin", failing), Error, "backup tool died");
    assertEquals([...Deno.readDirSync(`${root}/dir`)], []);
    await assertRejects(
      () => store.get("dir/broken.bin"),
      NotFoundError,
      "No object 'dir/broken.bin' in the local store",
    );
  });
});

Deno.test("LocalStore.put() removes temporary files a dead writer left, and none a live one is writing", async () => {
  await withStore(async (store, root) => {
    await Deno.mkdir(`${root}/dir`);
    const dead = `${root}/dir/old.zst.tmp-${crypto.randomUUID()}`;
    const live = `${root}/dir/new.zst.tmp-${crypto.randomUUID()}`;
    const notOurs = `${root}/dir/notes.tmp-1`;
    for (const p of [dead, live, notOurs]) await Deno.writeTextFile(p, "partial");
    const old = new Date(Date.now() - STALE_TMP_MS - 60_000);
    await Deno.utime(dead, old, old);
    await Deno.utime(notOurs, old, old);
    const past = new Date(Date.now() - STALE_TMP_MS + 60_000); // written to 59 minutes ago: still alive
    await Deno.utime(live, past, past);
    await store.put("dir/next.zst", ReadableStream.from([new Uint8Array(10)]));
    const names = [...Deno.readDirSync(`${root}/dir`)].map((e) => e.name).sort();
    assertEquals(names, ["new.zst" + live.slice(live.lastIndexOf(".tmp-")), "next.zst", "notes.tmp-1"]);
    assertEquals((await Array.fromAsync(store.list("dir/"))).map((o) => o.key).sort(), [
      "dir/next.zst",
      "dir/notes.tmp-1",
    ]);
  });
});

Deno.test("LocalStore.list() finds objects by prefix and delete() ignores missing keys", async () => {
  await withStore(async (store) => {
    for (const key of ["a-1", "a-2", "b-1", "sub/a-3"]) {
      await store.put(key, ReadableStream.from([new TextEncoder().encode(key)]));
    }
    const keys = async (prefix?: string) =>
      (await Array.fromAsync(store.list(prefix))).map((o) => o.key).sort();
    assertEquals(await keys("a-"), ["a-1", "a-2"]);
    assertEquals(await keys(), ["a-1", "a-2", "b-1", "sub/a-3"]);
    assertEquals(await keys("sub/"), ["sub/a-3"]);
    await store.delete(["a-1", "never-existed"]);
    assertEquals(await keys("a-"), ["a-2"]);
  });
});

Deno.test("LocalStore refuses keys that could escape its directory", async () => {
  await withStore(async (store) => {
    for (const key of ["../x", "/etc/passwd", "a//b", "a/./b", "sp ace"]) {
      await assertRejects(() => store.get(key), RangeError, "Cannot use");
    }
    assert(true);
  });
});
