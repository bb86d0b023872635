// deno-lint-ignore-file no-console
/**
 * Regenerates what is derived from the variable declarations in `src/config.ts` (run: `deno task docs`, which
 * then runs `deno fmt README.md deno.json`: this writes the table unpadded, and the committed files are
 * formatted):
 *
 * - the README's configuration table, between its config-table markers;
 * - the `env` list of `deno.json`'s `autopilot` permission set: every variable the program reads;
 * - the README's Consul ACL policy (src/consul_policy.ts, for the default SERVICE_NAME and keys), between its
 *   consul-policy markers.
 *
 * Unit tests (tests/unit/config_test.ts) fail while either is stale.
 *
 * @module
 */
import { configTableMarkdown, ENV_NAMES } from "../src/config.ts";
import { defaultConsulPolicy } from "../src/consul_policy.ts";

const START = "<!-- config-table:start -->";
const END = "<!-- config-table:end -->";

/** `readme` with its configuration table replaced, or an error naming what is missing. */
export function withConfigTable(readme: string): string | Error {
  const start = readme.indexOf(START);
  const end = readme.indexOf(END);
  if (start < 0 || end < start) return new Error(`README.md lacks the markers ${START} ... ${END}`);
  return readme.slice(0, start + START.length) + "\n" + configTableMarkdown() + readme.slice(end);
}

const POLICY_START = "<!-- consul-policy:start -->";
const POLICY_END = "<!-- consul-policy:end -->";

/** `readme` with its Consul ACL policy replaced, or an error naming what is missing. */
export function withConsulPolicy(readme: string): string | Error {
  const start = readme.indexOf(POLICY_START);
  const end = readme.indexOf(POLICY_END);
  if (start < 0 || end < start) {
    return new Error(`README.md lacks the markers ${POLICY_START} ... ${POLICY_END}`);
  }
  return readme.slice(0, start + POLICY_START.length) + "\n\n```hcl\n" + defaultConsulPolicy() + "```\n\n" +
    readme.slice(end);
}

/**
 * `denoJson` (the file's text) with the `autopilot` permission set's `env` list replaced by {@link ENV_NAMES},
 * one name a line; only that list's text changes.
 */
export function withEnvList(denoJson: string): string | Error {
  const parsed = JSON.parse(denoJson);
  if (!Array.isArray(parsed?.permissions?.autopilot?.env)) {
    return new Error("deno.json has no permissions.autopilot.env list");
  }
  const lists = [...denoJson.matchAll(/^( *)"env": \[[^\]]*\]/gm)];
  if (lists.length !== 1) {
    return new Error(
      `deno.json has ${lists.length} "env" lists, expected exactly one (permissions.autopilot)`,
    );
  }
  const [found, indent] = lists[0];
  const list = `${indent}"env": [\n${ENV_NAMES.map((n) => `${indent}  "${n}"`).join(",\n")}\n${indent}]`;
  return denoJson.replace(found, list);
}

if (import.meta.main) {
  const readme = (text: string) => {
    const table = withConfigTable(text);
    return table instanceof Error ? table : withConsulPolicy(table);
  };
  for (const [name, update] of [["README.md", readme], ["deno.json", withEnvList]] as const) {
    const path = new URL(`../${name}`, import.meta.url);
    const text = await Deno.readTextFile(path);
    const updated = update(text);
    if (updated instanceof Error) {
      console.error(`gen_docs: ${updated.message}`);
      Deno.exit(1);
    }
    if (updated !== text) await Deno.writeTextFile(path, updated);
  }
}
