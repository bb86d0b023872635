/**
 * The directory store: the snapshot store contract (store_contract.ts), and what only it does: the temporary
 * files of writers that died.
 */
import { assertEquals } from "../unit/assert.ts";
import { LocalStore, STALE_TMP_MS } from "../../src/storage/local.ts";
import type { SnapshotStore } from "../../src/storage/store.ts";
import { storeContract, unlisted } from "./store_contract.ts";

storeContract("local", async () => {
  const root = await Deno.makeTempDir({ prefix: "autopilot-store-" });
  let n = 0;
  return {
    newStore() {
      // Not created: the store makes its directory on the first put, and lists nothing before.
      const dir = `${root}/store-${++n}`;
      const store = new LocalStore(dir);
      return Promise.resolve({ store, hidden: () => unlisted(store, dir) });
    },
    async [Symbol.asyncDispose]() {
      await Deno.remove(root, { recursive: true });
    },
  };
});

async function withStore(fn: (store: SnapshotStore, root: string) => Promise<void>): Promise<void> {
  const root = await Deno.makeTempDir({ prefix: "autopilot-store-" });
  try {
    await fn(new LocalStore(root), root);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
}

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
