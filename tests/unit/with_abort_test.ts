import { assert, assertEquals, assertRejects } from "./assert.ts";
import { withAbort } from "../../src/storage/store.ts";

Deno.test("withAbort() passes a stream through unchanged, and returns it as it is without a signal", async () => {
  const chunks = [new Uint8Array([1, 2]), new Uint8Array([3])];
  const out = await Array.fromAsync(withAbort(ReadableStream.from(chunks), new AbortController().signal));
  assertEquals(out, chunks);
  const source = ReadableStream.from(chunks);
  assert(withAbort(source, undefined) === source);
});

Deno.test("withAbort() fails the stream with the signal's reason, also a read waiting for data, and cancels the source", async () => {
  let cancelled: unknown;
  const source = new ReadableStream<Uint8Array>({
    start(c) {
      c.enqueue(new Uint8Array([1]));
    },
    cancel(reason) {
      cancelled = reason;
    },
  });
  const controller = new AbortController();
  const reader = withAbort(source, controller.signal).getReader();
  assertEquals((await reader.read()).value, new Uint8Array([1]));
  const waiting = reader.read(); // the source has nothing more yet
  const reason = new Error("stop reading");
  controller.abort(reason);
  await assertRejects(() => waiting, Error, "stop reading");
  await assertRejects(() => reader.read(), Error, "stop reading");
  assert(cancelled === reason, `the source was cancelled with ${cancelled}`);
});

Deno.test("withAbort() with a signal that was aborted already fails at once", async () => {
  let pulled = false;
  const source = new ReadableStream<Uint8Array>({
    pull(c) {
      pulled = true;
      c.enqueue(new Uint8Array([1]));
    },
  }, { highWaterMark: 0 });
  const reader = withAbort(source, AbortSignal.abort(new Error("early"))).getReader();
  await assertRejects(() => reader.read(), Error, "early");
  assert(!pulled, "the source was read");
});

Deno.test("withAbort() passes the source's own error on, and an abort after the end changes nothing", async () => {
  const failing = new ReadableStream<Uint8Array>({
    start(c) {
      c.error(new Error("disk error"));
    },
  });
  const controller = new AbortController();
  await assertRejects(() => Array.fromAsync(withAbort(failing, controller.signal)), Error, "disk error");
  const done = new AbortController();
  const out = await Array.fromAsync(withAbort(ReadableStream.from([new Uint8Array([7])]), done.signal));
  done.abort(new Error("late"));
  assertEquals(out, [new Uint8Array([7])]);
});
