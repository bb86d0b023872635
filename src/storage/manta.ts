/**
 * The Manta store: not written yet (a placeholder so `openStore()` stays stable while it is built).
 *
 * @module
 */
import type { MantaConfig } from "../config.ts";
import type { ObjectInfo, SnapshotStore } from "./store.ts";

/** A {@link SnapshotStore} on a Manta directory. */
export class MantaStore implements SnapshotStore {
  readonly kind = "manta";
  readonly location: string;

  constructor(config: MantaConfig) {
    this.location = `${config.url}${config.bucket}`;
  }

  put(_key: string, _body: ReadableStream<Uint8Array>): Promise<ObjectInfo> {
    return Promise.reject(new Error("SNAPSHOT_BACKEND=manta is not implemented yet"));
  }
  get(_key: string): Promise<ReadableStream<Uint8Array>> {
    return Promise.reject(new Error("SNAPSHOT_BACKEND=manta is not implemented yet"));
  }
  async *list(_prefix?: string): AsyncIterable<ObjectInfo> {}
  delete(_keys: readonly string[]): Promise<void> {
    return Promise.reject(new Error("SNAPSHOT_BACKEND=manta is not implemented yet"));
  }
}
