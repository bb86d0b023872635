/**
 * Opens the configured snapshot store. Remote stores are loaded with `await import()` only here, so hooks
 * that never touch snapshots (health on a steady node) never load their SDKs.
 *
 * @module
 */
import type { Config } from "../config.ts";
import { LocalStore } from "./local.ts";
import type { SnapshotStore } from "./store.ts";

export { StoreUnavailableError } from "./store.ts";

/** Opens the store SNAPSHOT_BACKEND names. */
export async function openStore(config: Config): Promise<SnapshotStore> {
  const { storage } = config;
  switch (storage.backend) {
    case "local":
      return new LocalStore(storage.localDir);
    case "s3": {
      const { S3Store } = await import("./s3.ts");
      return new S3Store(storage.s3!);
    }
    case "manta": {
      const { MantaStore } = await import("./manta.ts");
      return new MantaStore(storage.manta!);
    }
  }
}
