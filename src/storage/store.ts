/**
 * Where snapshots live: one small, stream-based interface with the local directory, S3 and Manta behind it.
 * Retention, "latest snapshot" and manifests are written once, above it.
 *
 * @module
 */

/** One stored object. */
export interface ObjectInfo {
  /** The key relative to the store's root, `/`-separated, e.g. `mysql-backup-2026-11-25T19-00-00Z.xbstream.zst`. */
  readonly key: string;
  readonly size: number;
  readonly modified: Date;
}

/** A key that does not exist. Every backend maps its own "missing" answer to this one class. */
export class NotFoundError extends Error {
  readonly key: string;
  constructor(store: string, key: string) {
    super(`No object '${key}' in the ${store} store`);
    this.name = "NotFoundError";
    this.key = key;
  }
}

/**
 * The store cannot be used: unreachable, refused our credentials, or its bucket or directory is missing.
 * The message says what is wrong and what to do, without secrets.
 */
export class StoreUnavailableError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "StoreUnavailableError";
  }
}

/** What a caller may know about an object it is about to stream. */
export interface PutOptions {
  /**
   * More bytes than the object can hold. Manta needs it for streamed objects over its default limit (5 GB,
   * sent as `max-content-length`); the other stores ignore it.
   */
  readonly maxBytes?: number;
}

/** A snapshot store. Implementations never buffer a whole object in memory. */
export interface SnapshotStore {
  /** `local`, `s3` or `manta`. */
  readonly kind: string;
  /** A human-readable location (`/var/lib/autopilot/snapshots`, `s3://bucket/prefix/`), no secrets. */
  readonly location: string;
  /**
   * Stores `body` under `key`, replacing any object of that name only once `body` has been read to its end:
   * a failed or aborted upload leaves no partial object behind. When `signal` aborts, `body` is cancelled and
   * the promise rejects with the signal's reason.
   */
  put(
    key: string,
    body: ReadableStream<Uint8Array>,
    signal?: AbortSignal,
    opts?: PutOptions,
  ): Promise<ObjectInfo>;
  /**
   * Streams an object. Once `signal` aborts, the stream fails with its reason and the file or connection
   * behind it is closed.
   *
   * @throws {NotFoundError} if no object has that key (nothing does that `list()` does not show).
   */
  get(key: string, signal?: AbortSignal): Promise<ReadableStream<Uint8Array>>;
  /** Every object whose key starts with `prefix`, in no particular order. */
  list(prefix?: string): AsyncIterable<ObjectInfo>;
  /**
   * Deletes objects; missing ones are not an error. A key that names no object `list()` shows is missing, also
   * one that names a "directory" holding others (which are left alone) or lies below an object.
   */
  delete(keys: readonly string[]): Promise<void>;
}

/**
 * Checks a key: relative, `/`-separated, no empty, `.` or `..` segments, printable ASCII.
 *
 * @throws {RangeError} naming the key.
 */
export function checkKey(key: string): string {
  if (!/^[A-Za-z0-9._\-\/]+$/.test(key) || key.split("/").some((s) => s === "" || s === "." || s === "..")) {
    throw new RangeError(
      `Cannot use '${key}' as a snapshot key: use letters, digits, '.', '_', '-' and '/' only`,
    );
  }
  return key;
}

/** How long a download may go without receiving a byte before it is given up. */
export const READ_IDLE_TIMEOUT_MS = 120_000;

/**
 * Passes `source` through, failing it (and cancelling the source) when a read waits longer than `ms` for
 * data: a connection that stalls after the headers would otherwise hang a restore forever. The clock runs only
 * while the consumer is waiting for data, never while it is busy.
 */
export function withIdleTimeout(
  source: ReadableStream<Uint8Array>,
  what: string,
  ms: number = READ_IDLE_TIMEOUT_MS,
): ReadableStream<Uint8Array> {
  const reader = source.getReader();
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      let timer: ReturnType<typeof setTimeout> | undefined;
      const stalled = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`${what}: no data for ${ms / 1000} s`)), ms);
      });
      try {
        const { value, done } = await Promise.race([reader.read(), stalled]);
        if (done) controller.close();
        else controller.enqueue(value);
      } catch (e) {
        reader.cancel(e).catch(() => {});
        controller.error(e);
      } finally {
        clearTimeout(timer);
      }
    },
    cancel(reason) {
      return reader.cancel(reason);
    },
  }, { highWaterMark: 0 });
}

/**
 * Passes `source` through until `signal` aborts; then the stream fails with the signal's reason and `source` is
 * cancelled, which closes the file or connection it reads from.
 */
export function withAbort(
  source: ReadableStream<Uint8Array>,
  signal: AbortSignal | undefined,
): ReadableStream<Uint8Array> {
  if (signal === undefined) return source;
  const reader = source.getReader();
  let onAbort = () => {};
  return new ReadableStream<Uint8Array>({
    start(controller) {
      onAbort = () => {
        controller.error(signal.reason);
        reader.cancel(signal.reason).catch(() => {});
      };
      if (signal.aborted) onAbort();
      else signal.addEventListener("abort", onAbort, { once: true });
    },
    async pull(controller) {
      try {
        const { value, done } = await reader.read();
        if (signal.aborted) return; // already failed with the reason
        if (done) {
          signal.removeEventListener("abort", onAbort);
          controller.close();
        } else {
          controller.enqueue(value);
        }
      } catch (e) {
        if (signal.aborted) return;
        signal.removeEventListener("abort", onAbort);
        controller.error(e);
      }
    },
    cancel(reason) {
      signal.removeEventListener("abort", onAbort);
      return reader.cancel(reason);
    },
  }, { highWaterMark: 0 });
}
