import { assertEquals, assertRejects, assertThrows } from "./assert.ts";
import { DigestStream, hashedSource } from "../../src/backup/digest.ts";

const HELLO_WORLD_SHA256 = "b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9";
const enc = (s: string) => new TextEncoder().encode(s);

function chunks(...parts: string[]): ReadableStream<Uint8Array> {
  return ReadableStream.from(parts.map(enc));
}

Deno.test("DigestStream hashes and counts the bytes it passes on", async () => {
  const digest = new DigestStream();
  assertThrows(() => digest.digest, Error, "DigestStream.digest read before the stream ended");
  const out = await new Response(chunks("hello", " ", "world").pipeThrough(digest)).text();
  assertEquals(out, "hello world");
  assertEquals(digest.digest, { sha256: HELLO_WORLD_SHA256, size: 11 });
});

Deno.test("hashedSource() digests the whole source when read to the end", async () => {
  const source = hashedSource(chunks("hello", " world"));
  assertEquals(await new Response(source.readable).text(), "hello world");
  assertEquals(await source.done, { sha256: HELLO_WORLD_SHA256, size: 11 });
});

Deno.test("hashedSource() still digests the whole source when the consumer cancels early", async () => {
  const source = hashedSource(chunks("hello", " ", "world"));
  const reader = source.readable.getReader();
  assertEquals(new TextDecoder().decode((await reader.read()).value), "hello");
  await reader.cancel(new Error("consumer failed"));
  assertEquals(await source.done, { sha256: HELLO_WORLD_SHA256, size: 11 });
});

Deno.test("hashedSource() rejects when the source fails", async () => {
  const failing = new ReadableStream<Uint8Array>({
    start(c) {
      c.enqueue(enc("part"));
      c.error(new Error("connection reset"));
    },
  });
  const source = hashedSource(failing);
  await assertRejects(() => new Response(source.readable).text(), Error, "connection reset");
  await assertRejects(() => source.done, Error, "connection reset");
});

Deno.test("hashedSource() stops reading the rest after a cancel once the signal aborts", async () => {
  const controller = new AbortController();
  let pulls = 0;
  const endless = new ReadableStream<Uint8Array>({
    pull(c) {
      pulls++;
      if (pulls === 3) controller.abort(new Error("deadline"));
      c.enqueue(enc("x"));
    },
  }, { highWaterMark: 0 });
  const source = hashedSource(endless, controller.signal);
  const reader = source.readable.getReader();
  await reader.read();
  await reader.cancel();
  await assertRejects(() => source.done, Error, "deadline");
});
