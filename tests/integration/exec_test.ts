/**
 * src/exec.ts with real child processes: exit codes, pipes, pipefail, deadlines.
 */
import { assert, assertEquals, assertRejects } from "../unit/assert.ts";
import { CommandFailedError, pipeline, run } from "../../src/exec.ts";

const text = async (s: ReadableStream<Uint8Array>) => await new Response(s).text();

Deno.test("run() returns stdout and stderr of a successful program", async () => {
  const r = await run(["sh", "-c", "echo out; echo err >&2"]);
  assertEquals(r, { code: 0, stdout: "out\n", stderr: "err\n" });
});

Deno.test("run() feeds stdin and passes only the given environment", async () => {
  const r = await run(["sh", "-c", 'cat; printf "[%s][%s]" "$GREETING" "$HOME"'], {
    stdin: "in ",
    env: { GREETING: "hi" },
  });
  assertEquals(r.stdout, "in [hi][]");
});

Deno.test("run() throws CommandFailedError with the end of stderr for a disallowed exit code", async () => {
  const e = await assertRejects(
    () => run(["sh", "-c", "echo one >&2; echo two >&2; exit 3"]),
    CommandFailedError,
    "sh failed (exit code 3): one | two",
  );
  assertEquals(e.code, 3);
  assertEquals((await run(["sh", "-c", "exit 3"], { allowCodes: [0, 3] })).code, 3);
});

Deno.test("run() reports a missing program as code 127", async () => {
  const e = await assertRejects(() => run(["/nonexistent/program"]), CommandFailedError, "not found");
  assertEquals(e.code, 127);
});

Deno.test("run() kills the program when the signal aborts and reports code 124", async () => {
  const t0 = performance.now();
  const e = await assertRejects(
    () => run(["sleep", "30"], { signal: AbortSignal.timeout(200) }),
    CommandFailedError,
  );
  assertEquals(e.code, 124);
  assert(performance.now() - t0 < 5000);
});

Deno.test("run() drains a large stdout without blocking", async () => {
  const r = await run(["sh", "-c", "head -c 3000000 /dev/zero | tr '\\0' x; echo done >&2"]);
  assertEquals([r.stdout.length, r.stderr], [3_000_000, "done\n"]);
});

Deno.test("pipeline() streams source through every stage into the sink", async () => {
  let got = "";
  const stderrs = await pipeline(
    [{ argv: ["tr", "a-z", "A-Z"] }, { argv: ["sh", "-c", "rev; echo second >&2"] }],
    {
      source: ReadableStream.from([new TextEncoder().encode("hello\n")]),
      sink: async (s) => void (got = await text(s)),
    },
  );
  assertEquals(got, "OLLEH\n");
  assertEquals(stderrs, ["", "second\n"]);
});

Deno.test("pipeline() fails when an early stage fails even though the last succeeds (pipefail)", async () => {
  let got = "";
  const e = await assertRejects(
    () =>
      pipeline([{ argv: ["sh", "-c", "echo partial; echo broken >&2; exit 5"] }, { argv: ["cat"] }], {
        sink: async (s) => void (got = await text(s)),
      }),
    CommandFailedError,
    "sh failed (exit code 5): broken",
  );
  assertEquals(e.code, 5);
  assertEquals(got, "partial\n");
});

Deno.test("pipeline() kills the other stages and rethrows when the sink fails", async () => {
  const t0 = performance.now();
  await assertRejects(
    () =>
      pipeline([{ argv: ["sh", "-c", "yes"] }, { argv: ["cat"] }], {
        sink: async (s) => {
          const reader = s.getReader();
          await reader.read();
          await reader.cancel();
          throw new Error("store refused the upload");
        },
      }),
    Error,
    "store refused the upload",
  );
  assert(performance.now() - t0 < 5000, "stages were not killed");
});

Deno.test("pipeline() kills a hanging stage when the signal aborts", async () => {
  const e = await assertRejects(
    () => pipeline([{ argv: ["sleep", "30"] }, { argv: ["cat"] }], { signal: AbortSignal.timeout(200) }),
    CommandFailedError,
  );
  assertEquals(e.program, "sleep");
});

Deno.test("pipeline() stops at once, its source cancelled, when a stage cannot be started", async () => {
  let cancelled: unknown;
  const source = new ReadableStream<Uint8Array>({
    pull() {},
    cancel(reason) {
      cancelled = reason;
    },
  });
  const e = await assertRejects(
    () => pipeline([{ argv: ["cat"] }, { argv: ["/nonexistent/program"] }], { source }),
    CommandFailedError,
  );
  assertEquals([e.program, e.code], ["/nonexistent/program", 127]);
  assert(cancelled !== undefined, "the source was not cancelled");
});
