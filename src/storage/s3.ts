/**
 * The S3-compatible store: not written yet (a placeholder so `openStore()` stays stable while it is built).
 *
 * @module
 */
import type { S3Config } from "../config.ts";
import type { ObjectInfo, SnapshotStore } from "./store.ts";

/** A {@link SnapshotStore} on an S3-compatible bucket. */
export class S3Store implements SnapshotStore {
  readonly kind = "s3";
  readonly location: string;

  constructor(config: S3Config) {
    this.location = `s3://${config.bucket}/${config.prefix}`;
  }

  put(_key: string, _body: ReadableStream<Uint8Array>): Promise<ObjectInfo> {
    return Promise.reject(new Error("SNAPSHOT_BACKEND=s3 is not implemented yet"));
  }
  get(_key: string): Promise<ReadableStream<Uint8Array>> {
    return Promise.reject(new Error("SNAPSHOT_BACKEND=s3 is not implemented yet"));
  }
  async *list(_prefix?: string): AsyncIterable<ObjectInfo> {}
  delete(_keys: readonly string[]): Promise<void> {
    return Promise.reject(new Error("SNAPSHOT_BACKEND=s3 is not implemented yet"));
  }
}
