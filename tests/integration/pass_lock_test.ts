/** The per-node pass lock that keeps `health` and `on-change` from acting on one node at the same time. */
import { assertEquals } from "../unit/assert.ts";
import { lockPasses } from "../../src/state.ts";

/** Asks for the lock from another process (the way two hooks run) and says whether it got it. */
async function otherProcessGets(dir: string, waitMs: number): Promise<boolean> {
  const code = `import { lockPasses } from "${new URL("../../src/state.ts", import.meta.url).href}";\n` +
    `const held = await lockPasses(${JSON.stringify(dir)}, ${waitMs});\n` +
    `Deno.exit(held === undefined ? 3 : 0);`;
  const out = await new Deno.Command(Deno.execPath(), { args: ["eval", code], stderr: "inherit" }).output();
  return out.code === 0;
}

Deno.test("lockPasses(): one pass at a time per node; the lock is free again once released", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const held = await lockPasses(dir, 1000);
    assertEquals(held !== undefined, true);
    assertEquals(await otherProcessGets(dir, 300), false);
    held![Symbol.dispose]();
    assertEquals(await otherProcessGets(dir, 300), true);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
