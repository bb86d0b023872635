// deno-lint-ignore-file no-console
/**
 * Regenerates the README's configuration table from `src/config.ts` (run: `deno task docs`, which then runs
 * `deno fmt README.md`: this writes the table unpadded, and the committed README is formatted).
 *
 * @module
 */
import { configTableMarkdown } from "../src/config.ts";

const START = "<!-- config-table:start -->";
const END = "<!-- config-table:end -->";
const path = new URL("../README.md", import.meta.url);
const readme = await Deno.readTextFile(path);
const start = readme.indexOf(START);
const end = readme.indexOf(END);
if (start < 0 || end < start) {
  console.error(`gen_docs: README.md lacks the markers ${START} ... ${END}`);
  Deno.exit(1);
}
const updated = readme.slice(0, start + START.length) + "\n" + configTableMarkdown() + readme.slice(end);
if (updated !== readme) await Deno.writeTextFile(path, updated);
