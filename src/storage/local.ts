/**
 * The local directory store (the default): one file per key below a root directory, which can be a shared
 * volume. Writes go to a temporary file that is synced and renamed into place, so readers see whole objects
 * or nothing. A writer killed mid-way (a stopped container) leaves its temporary file; the next write in that
 * directory removes temporary files nobody has written to for {@link STALE_TMP_MS}.
 *
 * @module
 */
import { checkKey, NotFoundError, type ObjectInfo, type SnapshotStore, withAbort } from "./store.ts";

/** A temporary file unwritten for this long belongs to a writer that died (a live upload writes all along). */
export const STALE_TMP_MS = 60 * 60 * 1000;

const TMP_SUFFIX = /\.tmp-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** A {@link SnapshotStore} on a local directory. */
export class LocalStore implements SnapshotStore {
  readonly kind = "local";
  readonly location: string;

  constructor(root: string) {
    this.location = root.replace(/\/+$/, "");
  }

  async put(key: string, body: ReadableStream<Uint8Array>, signal?: AbortSignal): Promise<ObjectInfo> {
    const path = this.#path(checkKey(key));
    const dir = path.slice(0, path.lastIndexOf("/"));
    await Deno.mkdir(dir, { recursive: true });
    await removeStaleTmpFiles(dir);
    const tmp = `${path}.tmp-${crypto.randomUUID()}`;
    try {
      const file = await Deno.open(tmp, { write: true, createNew: true, mode: 0o640 });
      // Let the pipe close the file: with preventClose, Deno resolves pipeTo before the last writes land
      // (a stream from a child process lost its tail that way). Closing waits for every pending write.
      await body.pipeTo(file.writable, { signal });
      const synced = await Deno.open(tmp, { read: true });
      try {
        await synced.sync();
      } finally {
        synced.close();
      }
      await Deno.rename(tmp, path);
    } catch (e) {
      await Deno.remove(tmp).catch(() => {});
      throw e;
    }
    const stat = await Deno.stat(path);
    return { key, size: stat.size, modified: stat.mtime ?? new Date() };
  }

  async get(key: string, signal?: AbortSignal): Promise<ReadableStream<Uint8Array>> {
    const path = this.#path(checkKey(key));
    signal?.throwIfAborted();
    let file: Deno.FsFile;
    try {
      file = await Deno.open(path, { read: true });
    } catch (e) {
      if (isMissing(e)) throw new NotFoundError(this.kind, key);
      throw e;
    }
    let directory: boolean;
    try {
      directory = (await file.stat()).isDirectory;
    } catch (e) {
      file.close();
      throw e;
    }
    if (directory) {
      file.close();
      throw new NotFoundError(this.kind, key); // a directory is no object (list() never shows one)
    }
    return withAbort(fileChunks(file), signal);
  }

  async *list(prefix = ""): AsyncIterable<ObjectInfo> {
    yield* this.#walk("", prefix);
  }

  async delete(keys: readonly string[]): Promise<void> {
    for (const key of keys) {
      const path = this.#path(checkKey(key));
      try {
        if ((await Deno.lstat(path)).isDirectory) continue; // no object: the directory of others
        await Deno.remove(path);
      } catch (e) {
        if (!isMissing(e)) throw e;
      }
    }
  }

  async *#walk(dir: string, prefix: string): AsyncIterable<ObjectInfo> {
    let entries: Deno.DirEntry[];
    try {
      entries = await Array.fromAsync(Deno.readDir(dir === "" ? this.location : `${this.location}/${dir}`));
    } catch (e) {
      if (e instanceof Deno.errors.NotFound) return;
      throw e;
    }
    for (const entry of entries) {
      const key = dir === "" ? entry.name : `${dir}/${entry.name}`;
      if (entry.isDirectory) {
        if (prefix.startsWith(`${key}/`) || key.startsWith(prefix) || prefix === "") {
          yield* this.#walk(key, prefix);
        }
      } else if (entry.isFile && key.startsWith(prefix) && !TMP_SUFFIX.test(key)) {
        const stat = await Deno.stat(`${this.location}/${key}`);
        yield { key, size: stat.size, modified: stat.mtime ?? new Date(0) };
      }
    }
  }

  #path(key: string): string {
    return `${this.location}/${key}`;
  }
}

/** Bytes a read of {@link LocalStore.get}'s stream asks for: the file's own stream reads 64 KiB at a time. */
export const READ_CHUNK_BYTES = 1024 * 1024;

/**
 * The file's bytes in chunks of {@link READ_CHUNK_BYTES}; the file is closed at the end, on an error, or when
 * the reader cancels. Each chunk costs its reader the same fixed work whatever its size, so fewer is cheaper.
 */
function fileChunks(file: Deno.FsFile): ReadableStream<Uint8Array> {
  let closed = false;
  const close = () => {
    if (closed) return;
    closed = true;
    file.close();
  };
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      const buffer = new Uint8Array(READ_CHUNK_BYTES);
      let filled = 0;
      try {
        while (filled < buffer.byteLength) {
          const n = await file.read(buffer.subarray(filled));
          if (n === null) break;
          filled += n;
        }
      } catch (e) {
        close();
        controller.error(e);
        return;
      }
      if (filled > 0) controller.enqueue(filled === buffer.byteLength ? buffer : buffer.subarray(0, filled));
      if (filled < buffer.byteLength) {
        close();
        controller.close();
      }
    },
    cancel() {
      close();
    },
  }, { highWaterMark: 0 });
}

/** Whether a file system error means there is no such file (`a/b` where `a` is a file included). */
function isMissing(e: unknown): boolean {
  return e instanceof Deno.errors.NotFound || e instanceof Deno.errors.NotADirectory;
}

/** Removes what writers that died left in `dir` (best effort: another node may be sweeping it too). */
async function removeStaleTmpFiles(dir: string): Promise<void> {
  const cutoff = Date.now() - STALE_TMP_MS;
  for await (const entry of Deno.readDir(dir)) {
    if (!entry.isFile || !TMP_SUFFIX.test(entry.name)) continue;
    const path = `${dir}/${entry.name}`;
    try {
      const mtime = (await Deno.stat(path)).mtime?.getTime();
      if (mtime !== undefined && mtime < cutoff) await Deno.remove(path);
    } catch {
      // gone already, or not ours to remove: the next write tries again
    }
  }
}
