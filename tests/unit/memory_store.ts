/**
 * Test fixtures for code that reads a snapshot store: a store in memory and sample manifests.
 */
import { dataKey, formatManifest, type Manifest, manifestKey } from "../../src/backup/manifest.ts";
import { NotFoundError, type ObjectInfo, type SnapshotStore } from "../../src/storage/store.ts";

/** A {@link SnapshotStore} in memory, for tests only. */
export class MemoryStore implements SnapshotStore {
  readonly kind = "memory";
  readonly location = "memory:";
  readonly objects = new Map<string, { bytes: Uint8Array; modified: Date }>();
  /** Keys whose deletion fails, as a store refusing permission would. */
  readonly failDelete = new Set<string>();

  /** @param defaultModified The modification time of objects {@link set} without one. */
  constructor(readonly defaultModified = new Date(0)) {}

  async put(key: string, body: ReadableStream<Uint8Array>): Promise<ObjectInfo> {
    const bytes = new Uint8Array(await new Response(body).arrayBuffer());
    const modified = new Date();
    this.set(key, bytes, modified);
    return { key, size: bytes.length, modified };
  }

  get(key: string): Promise<ReadableStream<Uint8Array>> {
    const o = this.objects.get(key);
    if (!o) return Promise.reject(new NotFoundError(this.kind, key));
    return Promise.resolve(ReadableStream.from([o.bytes]));
  }

  async *list(prefix = ""): AsyncIterable<ObjectInfo> {
    for (const [key, o] of this.objects) {
      if (key.startsWith(prefix)) yield { key, size: o.bytes.length, modified: o.modified };
    }
  }

  delete(keys: readonly string[]): Promise<void> {
    for (const k of keys) {
      if (this.failDelete.has(k)) return Promise.reject(new Error(`permission denied: ${k}`));
      this.objects.delete(k);
    }
    return Promise.resolve();
  }

  /** Stores an object directly (text is stored as UTF-8). */
  set(key: string, bytes: Uint8Array | string, modified = this.defaultModified): void {
    this.objects.set(key, {
      bytes: typeof bytes === "string" ? new TextEncoder().encode(bytes) : bytes,
      modified,
    });
  }
}

/** A MariaDB snapshot's manifest with the given name, date and size (its SHA-256 is all zeros). */
export function testManifest(name: string, createdAt: string, size = 10): Manifest {
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

/** Stores a snapshot: a data object of `dataSize` zero bytes and its manifest. */
export function addSnapshot(store: MemoryStore, m: Manifest, dataSize = m.size): void {
  store.set(m.key, new Uint8Array(dataSize));
  store.set(manifestKey(m.name), formatManifest(m));
}
