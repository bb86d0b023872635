import { assert, assertEquals, assertRejects } from "./assert.ts";
import { withIdleTimeout } from "../../src/storage/store.ts";

Deno.test("withIdleTimeout() passes a stream through unchanged", async () => {
  const chunks = [new Uint8Array([1, 2]), new Uint8Array([3])];
  const out = await Array.fromAsync(withIdleTimeout(ReadableStream.from(chunks), "test", 1000));
  assertEquals(out, chunks);
});

Deno.test("withIdleTimeout() fails a read that waits too long for data, and cancels the source", async () => {
  let cancelled = false;
  const stalled = new ReadableStream<Uint8Array>({
    start(c) {
      c.enqueue(new Uint8Array([1]));
    },
    cancel() {
      cancelled = true;
    },
  });
  const reader = withIdleTimeout(stalled, "reading 'x'", 50).getReader();
  assertEquals((await reader.read()).value, new Uint8Array([1]));
  const e = await assertRejects(() => reader.read(), Error, "reading 'x': no data for 0.05 s");
  assert(e instanceof Error);
  assert(cancelled, "the source was not cancelled");
});

Deno.test("withIdleTimeout() does not count time the consumer spends busy", async () => {
  const source = ReadableStream.from([new Uint8Array([1]), new Uint8Array([2])]);
  const reader = withIdleTimeout(source, "test", 30).getReader();
  await reader.read();
  await new Promise((r) => setTimeout(r, 100)); // the consumer is busy longer than the timeout
  assertEquals((await reader.read()).value, new Uint8Array([2]));
});
