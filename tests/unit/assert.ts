/**
 * The few assertions the tests use (JSR's @std/assert cannot be reached from our machines).
 *
 * @module
 */
import { AssertionError, deepStrictEqual, ok } from "node:assert/strict";

/** Fails unless `actual` deep-equals `expected`. */
export function assertEquals<T>(actual: T, expected: T, message?: string): void {
  deepStrictEqual(actual, expected, message);
}

/** Fails unless `condition` is truthy. */
export function assert(condition: unknown, message?: string): asserts condition {
  ok(condition, message);
}

/** Fails unless `fn` throws an instance of `ErrorClass` whose message includes `includes`. */
export function assertThrows<E extends Error>(
  fn: () => unknown,
  ErrorClass: abstract new (...args: never[]) => E,
  includes?: string,
): E {
  try {
    fn();
  } catch (e) {
    return expectError(e, ErrorClass, includes);
  }
  throw new AssertionError({ message: `expected ${ErrorClass.name} to be thrown` });
}

/** Async version of {@link assertThrows}. */
export async function assertRejects<E extends Error>(
  fn: () => Promise<unknown>,
  ErrorClass: abstract new (...args: never[]) => E,
  includes?: string,
): Promise<E> {
  try {
    await fn();
  } catch (e) {
    return expectError(e, ErrorClass, includes);
  }
  throw new AssertionError({ message: `expected ${ErrorClass.name} to be rejected` });
}

function expectError<E extends Error>(
  e: unknown,
  ErrorClass: abstract new (...args: never[]) => E,
  includes: string | undefined,
): E {
  if (!(e instanceof ErrorClass)) {
    throw new AssertionError({ message: `expected ${ErrorClass.name}, got ${e}` });
  }
  if (includes !== undefined && !e.message.includes(includes)) {
    throw new AssertionError({ message: `expected message to include '${includes}', got '${e.message}'` });
  }
  return e;
}
