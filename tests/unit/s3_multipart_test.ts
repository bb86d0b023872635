/**
 * The S3 store's multipart logic against a scripted transport (the store itself is tested against a real S3
 * server in tests/integration/storage_s3_test.ts; a server that fails one part on demand is what this adds).
 */
import { assert, assertEquals, assertRejects } from "./assert.ts";
import { Secret } from "../../src/config.ts";
import { PART_SIZE, S3Store } from "../../src/storage/s3.ts";

/** A source of `parts` full parts plus a tail, handed out slowly, as a backup tool's output would be. */
function slowSource(parts: number): ReadableStream<Uint8Array> {
  const chunk = new Uint8Array(1024 * 1024);
  let left = parts * (PART_SIZE / chunk.byteLength) + 1;
  return new ReadableStream({
    async pull(controller) {
      await new Promise((r) => setTimeout(r, 2));
      if (left-- === 0) controller.close();
      else controller.enqueue(chunk);
    },
  });
}

Deno.test("S3Store.put() fails, and aborts the upload, when one part fails while the source is being read", async () => {
  const seen: string[] = [];
  const realFetch = globalThis.fetch;
  globalThis.fetch = async (input: RequestInfo | URL, init?: RequestInit) => {
    const req = input instanceof Request ? input : new Request(input, init);
    await req.body?.cancel();
    const url = new URL(req.url);
    const part = url.searchParams.get("partNumber");
    seen.push(
      `${req.method} ${part ? `part ${part}` : url.searchParams.has("uploads") ? "create" : "other"}`,
    );
    if (req.method === "POST" && url.searchParams.has("uploads")) {
      return new Response(
        "<InitiateMultipartUploadResult><UploadId>u-1</UploadId></InitiateMultipartUploadResult>",
      );
    }
    if (req.method === "PUT" && part === "2") {
      return new Response("<Error><Code>BadDigest</Code><Message>damaged</Message></Error>", { status: 400 });
    }
    if (req.method === "PUT") return new Response(null, { headers: { etag: `"e${part}"` } });
    if (req.method === "DELETE") return new Response(null, { status: 204 });
    return new Response("<CompleteMultipartUploadResult/>");
  };
  try {
    const store = new S3Store({
      endpoint: "http://s3.test:9000",
      region: "us-east-1",
      bucket: "b",
      prefix: "p/",
      forcePathStyle: true,
      accessKeyId: new Secret("AKIDEXAMPLE"),
      secretAccessKey: new Secret("secret-example"),
    });
    const error = await assertRejects(() => store.put("big.xbstream.zst", slowSource(4)), Error);
    assert(error.message.includes("BadDigest"), error.message);
  } finally {
    globalThis.fetch = realFetch;
  }
  assert(seen.includes("DELETE other"), `the upload was not aborted: ${seen.join(", ")}`);
  assertEquals(seen.filter((s) => s === "POST other"), [], `the upload was completed: ${seen.join(", ")}`);
});
