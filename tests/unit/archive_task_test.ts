/**
 * `autopilot archive`'s deadline (src/archive_task.ts): below BINLOG_ARCHIVE_INTERVAL, so a run has ended
 * before ContainerPilot starts the next.
 */
import { assert, assertEquals } from "./assert.ts";
import { archiveDeadlineMs } from "../../src/archive_task.ts";

Deno.test("archiveDeadlineMs: the interval less a tenth, the margin 1 to 30 s", () => {
  assertEquals(archiveDeadlineMs(60), 54_000);
  assertEquals(archiveDeadlineMs(1), 500);
  assertEquals(archiveDeadlineMs(5), 4_000);
  assertEquals(archiveDeadlineMs(3600), 3_570_000);
  assertEquals(archiveDeadlineMs(86_400), 86_370_000);
  for (const s of [2, 10, 60, 600, 86_400]) assert(archiveDeadlineMs(s) < s * 1000, String(s));
});
