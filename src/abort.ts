/**
 * Waiting under a deadline: every wait of a pass takes the pass's `AbortSignal`.
 *
 * @module
 */

/** The pass ran out of time: thrown (as the signal's reason) by every wait once its deadline has passed. */
export class DeadlineError extends Error {
  constructor(readonly ms: number) {
    super(`did not finish within its deadline of ${ms / 1000} s`);
    this.name = "DeadlineError";
  }
}

/** A signal that aborts with a {@link DeadlineError} after `ms`. */
export function deadline(ms: number): AbortSignal {
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(new DeadlineError(ms)), ms);
  Deno.unrefTimer(timer);
  return controller.signal;
}

/**
 * Resolves after `ms` milliseconds; rejects with the signal's reason as soon as it aborts.
 *
 * @param options.signal The deadline.
 */
export function delay(ms: number, options: { readonly signal?: AbortSignal } = {}): Promise<void> {
  const { signal } = options;
  if (signal?.aborted) return Promise.reject(signal.reason);
  return new Promise((resolve, reject) => {
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal!.reason);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

/**
 * Settles with `work`, or rejects with the signal's reason as soon as it aborts (the work itself goes on, but
 * nobody waits for it: for calls that take no signal of their own).
 */
export function raceAbort<T>(work: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (signal === undefined) return work;
  if (signal.aborted) {
    work.catch(() => {});
    return Promise.reject(signal.reason);
  }
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener("abort", onAbort, { once: true });
    work.then(
      (v) => {
        signal.removeEventListener("abort", onAbort);
        resolve(v);
      },
      (e) => {
        signal.removeEventListener("abort", onAbort);
        reject(e);
      },
    );
  });
}
