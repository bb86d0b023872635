/**
 * This node's own small state, kept between hook runs in `STATE_DIR/state.json` (0600): each hook is a new
 * process, so whatever must outlive one run lives here. Written atomically (tmp, fsync, rename).
 *
 * @module
 */
import type { Flavour } from "./mysql/flavour.ts";
import type { LastReplicated } from "./replica_health.ts";

/** Another member of the cluster, as the last cluster view this node read showed it. */
export interface KnownMember {
  readonly node: string;
  readonly address: string;
  readonly port: number;
}
import type { LockObservation } from "./ha/heartbeat.ts";

/** What one hook run leaves for the next. */
export interface NodeState {
  /** The server family pre-start found installed. */
  readonly flavour?: Flavour;
  /** The Consul session that holds (or held) this node's locks. */
  readonly sessionId?: string;
  /**
   * REBUILD_ERRANT_NODE: the errant datadir was moved to `aside`; the next health passes restore the latest
   * snapshot in its place (again, if one was cut short) and then clear this.
   */
  readonly rebuilding?: { readonly aside: string };
  /**
   * Set while a pass re-points replication (from its STOP REPLICA until its START REPLICA): a pass cut short in
   * between leaves replication stopped by autopilot, not by an operator, and the next pass starts it.
   */
  readonly repointing?: string;
  /** The shape of the last unhealthy outcome the health pass logged (see health.ts report()), if unhealthy. */
  readonly reported?: string;
  /** This node bootstrapped the cluster and its first snapshot could not be stored: why (until one is). */
  readonly firstSnapshotPending?: string;
  /**
   * Where this node registered the `SERVICE_NAME-primary` service (`address:port`), until it withdraws it.
   */
  readonly advertised?: string;
  /**
   * The last save of this node's extra transactions (an errant node, src/errant.ts): which GTIDs, where
   * (`location`, the store; `base`, the keys' common start), when (ISO 8601). The same set is never saved twice.
   */
  readonly errantSaved?: {
    readonly gtids: string;
    readonly base: string;
    readonly location: string;
    readonly at: string;
  };
  /** The primary's sweep: catalog entries of departed nodes, by service id, and when each was first seen. */
  readonly deadEntries?: Readonly<Record<string, number>>;
  /**
   * The cluster as the last pass that read Consul's keys saw it: whether this node's session held the primary
   * lock, and the other live members (their member key held). Failsafe mode (src/ha/failsafe.ts) asks these
   * over MySQL while Consul cannot be reached. Rewritten only when it changes.
   */
  readonly members?: {
    readonly heldLock: boolean;
    readonly others: readonly KnownMember[];
    /**
     * The members this primary's last heartbeat published as the ones its failsafe checks (PrimaryRecord.checks):
     * the failsafe checks them as well as `others`, since any of them may take the lock over.
     */
    readonly published?: readonly KnownMember[];
  };
  /** Since when (boot clock, ms) this primary has stayed writable in failsafe mode, while it does. */
  readonly failsafeSince?: number;
  /**
   * The last pass that saw this replica's both threads running, with a known lag: its source, that lag and
   * when (boot clock, ms). A replica whose I/O thread reconnects stays healthy on it (src/replica_health.ts).
   */
  readonly replicated?: LastReplicated;
  /**
   * When this node first saw Consul without any primary lock record, on its boot clock (src/ha/recovery.ts):
   * the settle window of a whole-cluster recovery counts from it. Removed once a lock record exists again.
   */
  readonly recoverySince?: { readonly bootAt: number; readonly ms: number };
  /**
   * On a node that does not hold the primary lock: the holder's heartbeat as last seen (the lock's ModifyIndex
   * and when this node first saw it, on the boot clock), to tell a holder whose heartbeat stands still.
   */
  readonly lockSeen?: LockObservation;
}

/** The state file is unreadable or not ours. */
export class StateError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "StateError";
  }
}

/**
 * Reads the state file; a missing file is an empty state.
 *
 * @throws {StateError} if the file exists but is not a JSON object.
 */
export async function readState(dir: string): Promise<NodeState> {
  let text: string;
  try {
    text = await Deno.readTextFile(`${dir}/state.json`);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return {};
    throw e;
  }
  try {
    const value = JSON.parse(text);
    if (value === null || typeof value !== "object" || Array.isArray(value)) throw new Error("not an object");
    // keys earlier development versions wrote: a restart is now told by the server's own counters, and the
    // restore position is kept in the datadir (src/restored.ts)
    const { replication: _replication, restored: _restored, ...state } = value;
    return state as NodeState;
  } catch {
    throw new StateError(
      `Cannot read ${dir}/state.json: it is not a JSON object; move it aside to start afresh`,
    );
  }
}

/**
 * What `autopilot pre-start` records while it retries: the failure of its last attempt. Kept in a file of its
 * own (`STATE_DIR/pre-start-failure.json`), written by pre-start alone, so that nothing else that runs
 * meanwhile (an `on-change` pass rewrites `state.json`) can lose it. `autopilot status` shows it.
 */
export interface PreStartFailure {
  /** NODE_NAME of the node that wrote it. */
  readonly node: string;
  /** When the first failed attempt of this run ended (ISO 8601). */
  readonly since: string;
  /** The number of the attempt that failed (1 for the first). */
  readonly attempt: number;
  /** Why it failed: the one line pre-start logged. */
  readonly reason: string;
  /** When the next attempt starts (ISO 8601). */
  readonly nextAttemptAt: string;
}

const PRE_START_FAILURE_FILE = "pre-start-failure.json";

/** Records pre-start's current failure, replacing the previous one (atomically). */
export async function writePreStartFailure(dir: string, failure: PreStartFailure): Promise<void> {
  await writeFileAtomic(`${dir}/${PRE_START_FAILURE_FILE}`, JSON.stringify(failure, null, 2) + "\n", 0o600);
}

/** Removes pre-start's failure record (pre-start succeeded or stopped); a missing record is fine. */
export async function clearPreStartFailure(dir: string): Promise<void> {
  try {
    await Deno.remove(`${dir}/${PRE_START_FAILURE_FILE}`);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return;
    throw e;
  }
  await syncDir(dir);
}

/**
 * Reads pre-start's failure record.
 *
 * @returns The record; `undefined` when there is none, or when it cannot be read or is not one (it is only
 *   ever shown, never acted on).
 */
export async function readPreStartFailure(dir: string): Promise<PreStartFailure | undefined> {
  let value: unknown;
  try {
    value = JSON.parse(await Deno.readTextFile(`${dir}/${PRE_START_FAILURE_FILE}`));
  } catch {
    return undefined;
  }
  const v = value as Record<string, unknown> | null;
  if (
    v === null || typeof v !== "object" || typeof v.node !== "string" || typeof v.since !== "string" ||
    typeof v.attempt !== "number" || typeof v.reason !== "string" || typeof v.nextAttemptAt !== "string"
  ) {
    return undefined;
  }
  return {
    node: v.node,
    since: v.since,
    attempt: v.attempt,
    reason: v.reason,
    nextAttemptAt: v.nextAttemptAt,
  };
}

/** Replaces the state file atomically (0600). */
export async function writeState(dir: string, state: NodeState): Promise<void> {
  await writeFileAtomic(`${dir}/state.json`, JSON.stringify(state, null, 2) + "\n", 0o600);
}

/**
 * Writes a file so that readers see the old or the new content, never a mix: tmp file, fsync, rename.
 *
 * @param mode Permission bits of the new file (0600 for anything holding a secret).
 */
export async function writeFileAtomic(path: string, text: string, mode = 0o644): Promise<void> {
  const dir = path.slice(0, path.lastIndexOf("/")) || "/";
  await Deno.mkdir(dir, { recursive: true, mode: 0o700 });
  const tmp = `${path}.tmp-${crypto.randomUUID()}`;
  try {
    const file = await Deno.open(tmp, { write: true, createNew: true, mode });
    try {
      await file.write(new TextEncoder().encode(text));
      await file.sync();
    } finally {
      file.close();
    }
    await Deno.chmod(tmp, mode);
    await Deno.rename(tmp, path);
  } catch (e) {
    await Deno.remove(tmp).catch(() => {});
    throw e;
  }
  await syncDir(dir);
}

/** Makes a rename or removal in `dir` durable (fsync of the directory). */
export async function syncDir(dir: string): Promise<void> {
  const d = await Deno.open(dir, { read: true });
  try {
    await d.sync();
  } finally {
    d.close();
  }
}

/**
 * Takes this node's pass lock (`STATE_DIR/pass.lock`, an advisory file lock): `health` and `on-change` act on
 * the same server and state file, and ContainerPilot may start one while the other runs. Released when the
 * returned handle is disposed, or when the process exits.
 *
 * @returns The held lock, or `undefined` when another pass still holds it after `waitMs`.
 */
export async function lockPasses(dir: string, waitMs: number): Promise<Disposable | undefined> {
  await Deno.mkdir(dir, { recursive: true, mode: 0o700 });
  const file = await Deno.open(`${dir}/pass.lock`, { read: true, write: true, create: true, mode: 0o600 });
  let timer: ReturnType<typeof setTimeout> | undefined;
  const locked = file.lock(true).then(() => true, () => false);
  const got = await Promise.race([
    locked,
    new Promise<false>((r) => timer = setTimeout(() => r(false), waitMs)),
  ]);
  clearTimeout(timer);
  // When waiting timed out the lock request stays pending: the process exits soon after, which ends it.
  if (!got) return undefined;
  return { [Symbol.dispose]: () => file.close() };
}

/** This node's state as a pass sees it: read once, saved by each step that changes it. */
export interface StateStore {
  /** The state as last read or saved. */
  readonly current: NodeState;
  /** Saves the state with `changes` applied; a field set to `undefined` is removed. */
  patch(changes: { readonly [K in keyof NodeState]?: NodeState[K] | undefined }): Promise<void>;
}

/** The {@link StateStore} in STATE_DIR's state file. */
export class StateFile implements StateStore {
  #state: NodeState;

  constructor(readonly dir: string, initial: NodeState) {
    this.#state = initial;
  }

  /** The state as last read or saved. */
  get current(): NodeState {
    return this.#state;
  }

  /** Saves the state with `changes` applied; a field set to `undefined` is removed. */
  async patch(changes: { readonly [K in keyof NodeState]?: NodeState[K] | undefined }): Promise<void> {
    const next = JSON.parse(JSON.stringify({ ...this.#state, ...changes })) as NodeState;
    await writeState(this.dir, next);
    this.#state = next;
  }
}
