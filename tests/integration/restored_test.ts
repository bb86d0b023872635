import { assertEquals, assertRejects } from "../unit/assert.ts";
import {
  clearRestoredMark,
  readRestoredMark,
  RESTORED_FILE,
  RestoredMarkError,
  writeRestoredMark,
} from "../../src/restored.ts";

Deno.test("a restore mark round-trips through the datadir and is gone once cleared", async () => {
  const dir = await Deno.makeTempDir();
  try {
    assertEquals(await readRestoredMark(dir), undefined);
    assertEquals(await readRestoredMark(`${dir}/missing`), undefined);
    const mark = { snapshot: "mysql-backup-1", gtid: "0-1-5", binlogState: "0-1-5" };
    await writeRestoredMark(dir, mark);
    assertEquals(await readRestoredMark(dir), mark);
    await writeRestoredMark(dir, { snapshot: "mysql-backup-2", gtid: "" });
    assertEquals(await readRestoredMark(dir), { snapshot: "mysql-backup-2", gtid: "" });
    await clearRestoredMark(dir);
    assertEquals(await readRestoredMark(dir), undefined);
    await clearRestoredMark(dir); // nothing to clear: fine
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a damaged restore mark is refused with what to do, never read as no mark", async () => {
  const dir = await Deno.makeTempDir();
  try {
    for (const text of ["", "{", "[]", "null", '{"snapshot":"s"}', '{"snapshot":"s","gtid":5}']) {
      await Deno.writeTextFile(`${dir}/${RESTORED_FILE}`, text);
      const e = await assertRejects(() => readRestoredMark(dir), RestoredMarkError);
      assertEquals(
        e.message,
        `${dir}/${RESTORED_FILE} is not a restore mark: if this datadir already replicates, remove the file; ` +
          "otherwise restore the node again",
      );
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
