/**
 * SHA-256 and byte counts of streams as they flow, so that nothing is held whole in memory. WebCrypto has no
 * streaming digest, so this uses `node:crypto`'s incremental `createHash`.
 *
 * @module
 */

import { createHash } from "node:crypto";

/** The SHA-256 (hex) and length of a byte stream. */
export interface Digest {
  /** SHA-256, 64 lower-case hex digits. */
  readonly sha256: string;
  /** Number of bytes. */
  readonly size: number;
}

/** A pass-through stream that hashes and counts the bytes written through it. */
export class DigestStream extends TransformStream<Uint8Array, Uint8Array> {
  readonly #result: { digest?: Digest };

  /** Makes the stream; read {@link DigestStream.digest} once its readable side has ended. */
  constructor() {
    const hash = createHash("sha256");
    const result: { digest?: Digest } = {};
    let size = 0;
    super({
      transform(chunk, controller) {
        hash.update(chunk);
        size += chunk.byteLength;
        controller.enqueue(chunk);
      },
      flush() {
        result.digest = { sha256: hash.digest("hex"), size };
      },
    });
    this.#result = result;
  }

  /**
   * The digest of everything that went through.
   *
   * @returns The SHA-256 and size.
   * @throws {Error} if the stream has not ended yet.
   */
  get digest(): Digest {
    if (!this.#result.digest) throw new Error("DigestStream.digest read before the stream ended");
    return this.#result.digest;
  }
}

/** A stream to hand to a consumer, and the digest of the whole source behind it. */
export interface HashedSource {
  /** Yields the source's bytes. */
  readonly readable: ReadableStream<Uint8Array>;
  /**
   * Resolves with the digest of the whole source once it has been read to its end, even when the consumer
   * cancelled `readable` early (the rest is then read and hashed without being passed on). Rejects if the
   * source fails, or when `signal` aborts before the end.
   */
  readonly done: Promise<Digest>;
}

/**
 * Wraps a source so that its whole digest is known even if the consumer stops early: a restore whose
 * decompressor rejects the data can then tell "the object differs from its manifest" (corrupt in the store)
 * from "the object is intact" (a local problem).
 *
 * @param source The bytes to pass on and hash.
 * @param signal Stops reading the rest after an early cancel.
 * @returns The stream to consume and the digest promise.
 */
export function hashedSource(source: ReadableStream<Uint8Array>, signal?: AbortSignal): HashedSource {
  const reader = source.getReader();
  const hash = createHash("sha256");
  let size = 0;
  let resolve!: (d: Digest) => void;
  let reject!: (e: unknown) => void;
  const done = new Promise<Digest>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  done.catch(() => {}); // the caller may never ask
  const take = (chunk: Uint8Array) => {
    hash.update(chunk);
    size += chunk.byteLength;
  };
  const finish = () => resolve({ sha256: hash.digest("hex"), size });
  const drain = async (reason: unknown) => {
    try {
      while (true) {
        if (signal?.aborted) {
          await reader.cancel(reason).catch(() => {});
          reject(signal.reason);
          return;
        }
        const { value, done: end } = await reader.read();
        if (end) break;
        take(value);
      }
      finish();
    } catch (e) {
      reject(e);
    }
  };
  const readable = new ReadableStream<Uint8Array>({
    async pull(controller) {
      try {
        const { value, done: end } = await reader.read();
        if (end) {
          finish();
          controller.close();
        } else {
          take(value);
          controller.enqueue(value);
        }
      } catch (e) {
        reject(e);
        controller.error(e);
      }
    },
    cancel(reason) {
      // Not awaited: the consumer's failure is reported at once while the rest is hashed.
      void drain(reason);
    },
  }, { highWaterMark: 0 });
  return { readable, done };
}
