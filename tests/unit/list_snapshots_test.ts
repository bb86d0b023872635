import { assertEquals } from "./assert.ts";
import { latestSnapshot, listSnapshots } from "../../src/backup/backup.ts";
import type { CorruptSnapshotError } from "../../src/backup/errors.ts";
import { dataKey, formatManifest, manifestKey } from "../../src/backup/manifest.ts";
import { addSnapshot, MemoryStore, testManifest } from "./memory_store.ts";

Deno.test("listSnapshots() lists complete snapshots newest first", async () => {
  const store = new MemoryStore();
  const a = testManifest("b-2026-01-01", "2026-01-01T00:00:00.000Z");
  const b = testManifest("b-2026-03-01", "2026-03-01T00:00:00.000Z");
  const c = testManifest("b-2026-02-01", "2026-02-01T00:00:00.000Z");
  [a, b, c].forEach((m) => addSnapshot(store, m));
  store.set("unrelated.txt", "x");
  assertEquals((await listSnapshots(store)).map((m) => m.name), [
    "b-2026-03-01",
    "b-2026-02-01",
    "b-2026-01-01",
  ]);
  assertEquals((await latestSnapshot(store))?.name, "b-2026-03-01");
});

Deno.test("listSnapshots() ignores a data object without a manifest (an incomplete backup)", async () => {
  const store = new MemoryStore();
  addSnapshot(store, testManifest("b-1", "2026-01-01T00:00:00.000Z"));
  store.set(dataKey("b-2"), new Uint8Array(5));
  const invalid: string[] = [];
  assertEquals(
    (await listSnapshots(store, { onInvalid: (k) => invalid.push(k) })).map((m) => m.name),
    ["b-1"],
  );
  assertEquals(invalid, []);
});

Deno.test("listSnapshots() skips and reports manifests that do not match their data", async () => {
  const store = new MemoryStore();
  addSnapshot(store, testManifest("good", "2026-01-01T00:00:00.000Z"));
  addSnapshot(store, testManifest("short", "2026-01-02T00:00:00.000Z", 10), 7);
  const orphan = testManifest("orphan", "2026-01-03T00:00:00.000Z");
  store.set(manifestKey("orphan"), formatManifest(orphan));
  store.set(manifestKey("broken"), "{");
  store.set(manifestKey("renamed"), formatManifest(testManifest("good", "2026-01-04T00:00:00.000Z")));
  const invalid = new Map<string, string>();
  const onInvalid = (k: string, e: CorruptSnapshotError) => invalid.set(k, e.message);
  assertEquals((await listSnapshots(store, { onInvalid })).map((m) => m.name), ["good"]);
  const skipped = "it is skipped; delete it, or take a new snapshot";
  assertEquals(
    invalid.get("short.manifest.json"),
    `Snapshot 'short' is corrupt: its data object 'short.xbstream.zst' is 7 bytes but the manifest says 10: ${skipped}`,
  );
  assertEquals(
    invalid.get("orphan.manifest.json"),
    `Snapshot 'orphan' is corrupt: its data object 'orphan.xbstream.zst' is missing: ${skipped}`,
  );
  assertEquals(
    invalid.get("renamed.manifest.json"),
    `Snapshot 'renamed' is corrupt: its manifest names the snapshot 'good': ${skipped}`,
  );
  assertEquals(
    invalid.get("broken.manifest.json")?.startsWith("Snapshot 'broken.manifest.json' is corrupt: "),
    true,
  );
  assertEquals(invalid.size, 4);
});

Deno.test("latestSnapshot() is undefined for an empty store", async () => {
  assertEquals(await latestSnapshot(new MemoryStore()), undefined);
});
