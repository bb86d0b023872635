import { assert, assertEquals, assertRejects } from "../unit/assert.ts";
import { newServerId, SERVER_ID_FILE, serverIdOf, writeServerId } from "../../src/server_id.ts";
import { serverIdFor } from "../../src/mysql/mycnf.ts";

Deno.test("newServerId() is random, in 1..2^32-1", () => {
  const ids = Array.from({ length: 1000 }, newServerId);
  assert(ids.every((id) => Number.isInteger(id) && id >= 1 && id <= 0xffffffff));
  assert(new Set(ids).size > 990, "ids repeat");
});

Deno.test("serverIdOf(): the datadir's file if present, else the id from NODE_NAME; a bad file is refused", async () => {
  const dir = await Deno.makeTempDir();
  try {
    assertEquals(await serverIdOf(dir, "db-1"), serverIdFor("db-1"));
    await writeServerId(dir, 4294967295);
    assertEquals(await serverIdOf(dir, "db-1"), 4294967295);
    for (const bad of ["0", "4294967296", "12x", ""]) {
      await Deno.writeTextFile(`${dir}/${SERVER_ID_FILE}`, bad);
      await assertRejects(() => serverIdOf(dir, "db-1"), Error, "does not hold a server id");
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
