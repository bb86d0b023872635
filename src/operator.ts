/**
 * What the operator commands (`autopilot backup`, `autopilot restore`) share: the snapshot Consul names as the
 * last, looked up without throwing, and the errors they report as one line instead of a stack trace.
 *
 * @module
 */
import type { Config } from "./config.ts";
import { ConsulStore } from "./consul.ts";
import { CorruptSnapshotError, RestoreError } from "./backup/errors.ts";
import type { Manifest } from "./backup/manifest.ts";
import { SnapshotNotFoundError, VerifyError } from "./backup/verify.ts";
import { CommandFailedError } from "./exec.ts";
import { publishedSnapshot } from "./snapshots.ts";
import { ConsulClusterKv } from "./cluster_kv.ts";
import { StoreUnavailableError } from "./storage/open.ts";
import { errorMessage } from "./text.ts";

/** What Consul's LAST_BACKUP_KEY says: the manifest, nothing, or why it could not be read. */
export interface PublishedLookup {
  /** The manifest it holds; unset when the key is missing or could not be read. */
  readonly manifest?: Manifest;
  /** Why it could not be read (Consul unreachable or refusing, or the key holds no valid manifest). */
  readonly error?: string;
}

/**
 * Reads the snapshot Consul names as the last, never throwing: operator commands work without Consul.
 *
 * @param config The configuration (Consul's address and LAST_BACKUP_KEY).
 * @returns The manifest, or the reason it could not be read.
 */
export async function lookupPublished(config: Config): Promise<PublishedLookup> {
  let consul: ConsulStore | undefined;
  try {
    consul = new ConsulStore(config.consul);
    const manifest = await publishedSnapshot(new ConsulClusterKv(config, consul));
    return manifest ? { manifest } : {};
  } catch (e) {
    return { error: errorMessage(e) };
  } finally {
    consul?.close();
  }
}

/**
 * Where Consul's archive record (`SERVICE_NAME-binlog-archive`, written by the current primary's archiver)
 * says the current history ends, never throwing: undefined when it cannot be read or holds none (the planner
 * then takes the newest archived binlog's end).
 */
export async function lookupArchiveHead(config: Config): Promise<string | undefined> {
  let consul: ConsulStore | undefined;
  try {
    consul = new ConsulStore(config.consul);
    return (await new ConsulClusterKv(config, consul).archiveRecord())?.endState;
  } catch {
    return undefined;
  } finally {
    consul?.close();
  }
}

/** A line on stderr for errors an operator command reports instead of a stack trace, else undefined. */
export function operatorError(e: unknown): string | undefined {
  if (
    e instanceof CorruptSnapshotError || e instanceof RestoreError || e instanceof VerifyError ||
    e instanceof SnapshotNotFoundError || e instanceof StoreUnavailableError ||
    e instanceof CommandFailedError
  ) {
    return e.message;
  }
  return undefined;
}
