/**
 * Opens the configured snapshot store. Remote stores are loaded with `await import()` only here, so hooks
 * that never touch snapshots (health on a steady node) never load their SDKs.
 *
 * @module
 */
import type { Config } from "../config.ts";
import { LocalStore } from "./local.ts";
import type { SnapshotStore } from "./store.ts";

/** The configured store does not exist in this build. */
export class StoreUnavailableError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "StoreUnavailableError";
  }
}

/**
 * Opens the store SNAPSHOT_BACKEND names.
 *
 * @throws {StoreUnavailableError} for a backend this version cannot use yet.
 */
export function openStore(config: Config): Promise<SnapshotStore> {
  switch (config.storage.backend) {
    case "local":
      return Promise.resolve(new LocalStore(config.storage.localDir));
    case "s3":
    case "manta":
      return Promise.reject(
        new StoreUnavailableError(
          `SNAPSHOT_BACKEND=${config.storage.backend} is not supported by this version yet: use SNAPSHOT_BACKEND=local`,
        ),
      );
  }
}
