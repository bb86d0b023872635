import { assertEquals } from "./assert.ts";
import { latestSnapshot, listSnapshots } from "../../src/backup/backup.ts";
import type { CorruptSnapshotError } from "../../src/backup/errors.ts";
import { dataKey, formatManifest, type Manifest, manifestKey } from "../../src/backup/manifest.ts";
import { NotFoundError, type ObjectInfo, type SnapshotStore } from "../../src/storage/store.ts";

/** A store in memory, for tests only. */
class MemoryStore implements SnapshotStore {
  readonly kind = "memory";
  readonly location = "memory:";
  readonly objects = new Map<string, Uint8Array>();

  async put(key: string, body: ReadableStream<Uint8Array>): Promise<ObjectInfo> {
    const bytes = new Uint8Array(await new Response(body).arrayBuffer());
    this.objects.set(key, bytes);
    return { key, size: bytes.length, modified: new Date() };
  }

  get(key: string): Promise<ReadableStream<Uint8Array>> {
    const bytes = this.objects.get(key);
    if (!bytes) return Promise.reject(new NotFoundError(this.kind, key));
    return Promise.resolve(ReadableStream.from([bytes]));
  }

  async *list(prefix = ""): AsyncIterable<ObjectInfo> {
    for (const [key, bytes] of this.objects) {
      if (key.startsWith(prefix)) yield { key, size: bytes.length, modified: new Date(0) };
    }
  }

  delete(keys: readonly string[]): Promise<void> {
    keys.forEach((k) => this.objects.delete(k));
    return Promise.resolve();
  }

  text(key: string, text: string): void {
    this.objects.set(key, new TextEncoder().encode(text));
  }
}

function manifest(name: string, createdAt: string, size = 10): Manifest {
  return {
    format: 1,
    name,
    key: dataKey(name),
    createdAt,
    nodeName: "n1",
    flavour: "mariadb",
    serverVersion: "10.11.19-MariaDB",
    tool: "mariabackup",
    compression: "zstd",
    sha256: "0".repeat(64),
    size,
    gtid: "0-1-3",
    binlog: { file: "mysql-bin.000001", position: 4 },
  };
}

function add(store: MemoryStore, m: Manifest, dataSize = m.size): void {
  store.objects.set(m.key, new Uint8Array(dataSize));
  store.text(manifestKey(m.name), formatManifest(m));
}

Deno.test("listSnapshots() lists complete snapshots newest first", async () => {
  const store = new MemoryStore();
  const a = manifest("b-2026-01-01", "2026-01-01T00:00:00.000Z");
  const b = manifest("b-2026-03-01", "2026-03-01T00:00:00.000Z");
  const c = manifest("b-2026-02-01", "2026-02-01T00:00:00.000Z");
  [a, b, c].forEach((m) => add(store, m));
  store.text("unrelated.txt", "x");
  assertEquals((await listSnapshots(store)).map((m) => m.name), [
    "b-2026-03-01",
    "b-2026-02-01",
    "b-2026-01-01",
  ]);
  assertEquals((await latestSnapshot(store))?.name, "b-2026-03-01");
});

Deno.test("listSnapshots() ignores a data object without a manifest (an incomplete backup)", async () => {
  const store = new MemoryStore();
  add(store, manifest("b-1", "2026-01-01T00:00:00.000Z"));
  store.objects.set(dataKey("b-2"), new Uint8Array(5));
  const invalid: string[] = [];
  assertEquals(
    (await listSnapshots(store, { onInvalid: (k) => invalid.push(k) })).map((m) => m.name),
    ["b-1"],
  );
  assertEquals(invalid, []);
});

Deno.test("listSnapshots() skips and reports manifests that do not match their data", async () => {
  const store = new MemoryStore();
  add(store, manifest("good", "2026-01-01T00:00:00.000Z"));
  add(store, manifest("short", "2026-01-02T00:00:00.000Z", 10), 7);
  const orphan = manifest("orphan", "2026-01-03T00:00:00.000Z");
  store.text(manifestKey("orphan"), formatManifest(orphan));
  store.text(manifestKey("broken"), "{");
  store.text(manifestKey("renamed"), formatManifest(manifest("good", "2026-01-04T00:00:00.000Z")));
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
