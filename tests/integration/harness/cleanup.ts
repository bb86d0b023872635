// deno-lint-ignore-file no-console
/**
 * Stops servers and removes namespaces that a killed test run left behind (only what a run recorded, and only
 * when the run that recorded it is gone). `scripts/test.sh` runs it before the tests.
 *
 * @module
 */
import { cleanupLeftovers } from "./proc.ts";

const report = await cleanupLeftovers();
const parts = Object.entries(report).filter(([, v]) => Array.isArray(v) ? v.length > 0 : Boolean(v));
if (parts.length > 0) {
  console.log(
    `cleanup: removed leftovers of an earlier run: ${
      parts.map(([k, v]) => `${k}=${JSON.stringify(v)}`).join(" ")
    }`,
  );
}
