/**
 * What each entry point loads before it runs anything, read from the sources: the static imports that stay at
 * run time (`import type` and `export type` are erased; `import()` loads only when reached). The command
 * table must not load the commands, and a health pass must not load the snapshot code it needs only for
 * rare actions (those are dynamic imports at their point of use).
 */
import { assert, assertEquals } from "./assert.ts";

const ROOT = decodeURIComponent(new URL("../../", import.meta.url).pathname).replace(/\/$/, "");

/** The specifiers of the imports and re-exports of `source` that load at run time, and its dynamic ones. */
export function runtimeImports(source: string): { static: string[]; dynamic: string[] } {
  const code = source.replace(/\/\*[\s\S]*?\*\//g, "").replace(/^\s*\/\/.*$/gm, "");
  const found: string[] = [];
  const statement = /^\s*(import|export)\s+(type\s+)?([^;'"]*?\sfrom\s+)?["']([^"']+)["']/gm;
  for (const m of code.matchAll(statement)) {
    if (m[2] !== undefined) continue; // `import type …` / `export type … from`
    if (m[1] === "export" && m[3] === undefined) continue;
    found.push(m[4]);
  }
  const dynamic = [...code.matchAll(/\bimport\(\s*["']([^"']+)["']\s*\)/g)].map((m) => m[1]);
  return { static: found, dynamic };
}

function resolve(from: string, specifier: string): string {
  if (!specifier.startsWith(".")) return specifier; // a package (bare, npm: or node:)
  const dir = from.includes("/") ? from.slice(0, from.lastIndexOf("/")) : ".";
  const parts = `${dir}/${specifier}`.split("/");
  const out: string[] = [];
  for (const p of parts) {
    if (p === "..") out.pop();
    else if (p !== "." && p !== "") out.push(p);
  }
  return out.join("/");
}

/** Every module (repository path, or package specifier) that loading `entry` loads before it runs. */
function staticClosure(entry: string): Set<string> {
  const seen = new Set<string>();
  const todo = [entry];
  while (todo.length) {
    const path = todo.pop()!;
    for (const spec of runtimeImports(Deno.readTextFileSync(`${ROOT}/${path}`)).static) {
      const dep = resolve(path, spec);
      if (seen.has(dep)) continue;
      seen.add(dep);
      if (dep.endsWith(".ts")) todo.push(dep);
    }
  }
  return seen;
}

Deno.test("runtimeImports() skips type-only imports and tells dynamic ones apart", () => {
  const source = [
    'import { a } from "./a.ts";',
    'import type { B } from "./b.ts";',
    "import {",
    "  type C,",
    "  d,",
    '} from "../c.ts";',
    'import "./side.ts";',
    'export { e } from "./e.ts";',
    'export type { F } from "./f.ts";',
    "export const g = 1;",
    '// import { h } from "./h.ts";',
    'const i = await import("./i.ts");',
  ].join("\n");
  assertEquals(runtimeImports(source), {
    static: ["./a.ts", "../c.ts", "./side.ts", "./e.ts"],
    dynamic: ["./i.ts"],
  });
});

Deno.test("--help and --version load only the command table: no command, no package", () => {
  const loaded = [...staticClosure("mod.ts")].sort();
  assertEquals(loaded, [
    "commands.ts",
    "src/command.ts",
    "src/output.ts",
    "src/pre_stop_budget.ts",
  ]);
});

Deno.test("every command's implementation is a dynamic import of a literal path (deno compile embeds it)", () => {
  const { dynamic } = runtimeImports(Deno.readTextFileSync(`${ROOT}/commands.ts`));
  const modules = new Set(dynamic.map((s) => resolve("commands.ts", s)));
  for (const m of modules) assert(Deno.statSync(`${ROOT}/${m}`).isFile, m);
  assertEquals(modules.size, 10, [...modules].join(", ")); // health and on-change share hooks/health.ts
});

Deno.test("a health or on-change pass loads no snapshot, backup or storage code until an action needs it", () => {
  const loaded = staticClosure("hooks/health.ts");
  const heavy = [...loaded].filter((m) =>
    /^src\/(backup|storage)\//.test(m) || ["src/snapshots.ts", "src/rebuild.ts"].includes(m) ||
    /aws4fetch|manta/.test(m)
  );
  assertEquals(heavy, []);
  // what it does need, so that the check above reads the right graph
  for (const m of ["src/consul.ts", "src/mysql/client.ts", "mysql2/promise"]) {
    assert(loaded.has(m), `hooks/health.ts should load ${m}`);
  }
});

Deno.test("Consul is reached with fetch: no Consul package and no node:http(s) anywhere in the health pass", () => {
  const loaded = [...staticClosure("hooks/health.ts")];
  assertEquals(loaded.filter((m) => /^(npm:)?consul(@|$)|^node:https?$/.test(m)), []);
  const deno = JSON.parse(Deno.readTextFileSync(`${ROOT}/deno.json`));
  assertEquals(deno.imports.consul, undefined, "deno.json still maps the npm:consul package");
});
