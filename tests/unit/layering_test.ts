/**
 * The layering of the program's modules, read from the sources: no import circles, and no upward or sideways
 * imports. Every import counts, `import type` and dynamic `import()` included.
 *
 * Three layers, each importing only from the ones below it:
 * - the entry: `mod.ts` and the command table `commands.ts` (the `.ts` files at the root);
 * - the commands: `hooks/*` (lifecycle hooks) and `src/cli/*` (operator commands), which never import each
 *   other;
 * - the library: the rest of `src/`, which imports neither a command nor the entry.
 */
import { assert, assertEquals } from "./assert.ts";

const ROOT = decodeURIComponent(new URL("../../", import.meta.url).pathname).replace(/\/$/, "");

/** One import in a source file: the specifier as written and the line it is on. */
export interface ImportRef {
  readonly specifier: string;
  readonly line: number;
}

/**
 * Every import of `source`: static imports and re-exports (type-only ones too), side-effect imports, and
 * dynamic `import("…")` (also in `typeof import("…")`). Comments are skipped; strings are not searched.
 */
export function parseImports(source: string): ImportRef[] {
  // Blank out comments, keeping strings (a "//" in a URL is no comment) and every newline (for line numbers).
  const code = source.replace(
    /"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*'|`(?:[^`\\]|\\.)*`|\/\*[\s\S]*?\*\/|\/\/[^\n]*/g,
    (m) => m.startsWith("/") ? m.replace(/[^\n]/g, " ") : m,
  );
  const found: { specifier: string; index: number }[] = [];
  const statement =
    /(?:^|[;}\n])\s*(?:import|export)\s+(?:type\s+)?(?:[^;'"`]*?\sfrom\s*)?["']([^"'\n]+)["']/g;
  for (const m of code.matchAll(statement)) found.push({ specifier: m[1], index: m.index + m[0].length });
  for (const m of code.matchAll(/\bimport\s*\(\s*["']([^"'\n]+)["']\s*\)/g)) {
    found.push({ specifier: m[1], index: m.index });
  }
  return found
    .map(({ specifier, index }) => ({ specifier, line: code.slice(0, index).split("\n").length }))
    .sort((a, b) => a.line - b.line);
}

/** The repository path `specifier` names, seen from the file `from`; undefined for a package. */
export function resolvePath(from: string, specifier: string): string | undefined {
  if (!specifier.startsWith("./") && !specifier.startsWith("../")) return undefined; // bare, npm:, node:
  const out = from.split("/").slice(0, -1);
  for (const part of specifier.split("/")) {
    if (part === "..") out.pop();
    else if (part !== "." && part !== "") out.push(part);
  }
  return out.join("/");
}

/** A module graph: each module's path, and the repository paths it imports (with the line of each). */
export type ModuleGraph = ReadonlyMap<string, readonly { readonly to: string; readonly line: number }[]>;

type Layer = "entry" | "command" | "library";

/** The layer of a module, or undefined for a file outside the program (tests, scripts, bench). */
export function layerOf(path: string): Layer | undefined {
  if (!path.includes("/")) return "entry";
  if (/^(hooks|src\/cli)\//.test(path)) return "command";
  if (path.startsWith("src/")) return "library";
  return undefined;
}

const RANK: Record<Layer, number> = { library: 0, command: 1, entry: 2 };

/** An import that breaks the layering on purpose, until the change named in `why` removes it. */
export interface KnownException {
  readonly from: string;
  readonly to: string;
  readonly why: string;
}

/**
 * Every import of `graph` that goes upward (the library importing a command or the entry, a command the
 * entry), sideways (one command importing another) or out of the program, one line each.
 */
export function upwardImports(graph: ModuleGraph): string[] {
  const problems: string[] = [];
  for (const [from, deps] of graph) {
    const mine = layerOf(from)!;
    for (const { to, line } of deps) {
      const theirs = layerOf(to);
      const at = `${from}:${line} imports ${to}`;
      if (theirs === undefined) problems.push(`${at}, which is not part of the program`);
      else if (RANK[theirs] > RANK[mine]) problems.push(`${at}: the ${mine} imports the ${theirs} above it`);
      else if (theirs === "command" && mine === "command") {
        problems.push(`${at}: a command imports another command (move what they share into src/)`);
      }
    }
  }
  return problems;
}

/**
 * The import circles of `graph`: one per strongly connected component (the modules that import each other,
 * directly or not), with one shortest circle through its first module in sort order, so that the report reads
 * the same on every run.
 */
export function importCycles(graph: ModuleGraph): { modules: string[]; circle: string[] }[] {
  // Tarjan's strongly connected components.
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const components: string[][] = [];
  const next = (m: string) => [...new Set((graph.get(m) ?? []).map((d) => d.to))].sort();
  const visit = (m: string) => {
    index.set(m, index.size);
    low.set(m, index.get(m)!);
    stack.push(m);
    onStack.add(m);
    for (const n of next(m)) {
      if (!index.has(n)) {
        visit(n);
        low.set(m, Math.min(low.get(m)!, low.get(n)!));
      } else if (onStack.has(n)) low.set(m, Math.min(low.get(m)!, index.get(n)!));
    }
    if (low.get(m) === index.get(m)) {
      const component: string[] = [];
      let n: string;
      do {
        n = stack.pop()!;
        onStack.delete(n);
        component.push(n);
      } while (n !== m);
      if (component.length > 1 || next(m).includes(m)) components.push(component.sort());
    }
  };
  for (const m of [...graph.keys()].sort()) if (!index.has(m)) visit(m);
  // One shortest circle through each component's first module (breadth first, inside the component).
  return components.sort((a, b) => a[0].localeCompare(b[0])).map((component) => {
    const inside = new Set(component);
    const start = component[0];
    const cameFrom = new Map<string, string>();
    const queue = [start];
    while (queue.length) {
      const m = queue.shift()!;
      for (const n of next(m)) {
        if (!inside.has(n) || cameFrom.has(n)) continue;
        cameFrom.set(n, m);
        if (n === start) queue.length = 0;
        else queue.push(n);
      }
    }
    const between: string[] = [];
    for (let m = cameFrom.get(start)!; m !== start; m = cameFrom.get(m)!) between.unshift(m);
    return { modules: component, circle: [start, ...between, start] };
  });
}

/** The module graph of the program: every `.ts` file at the root, under `hooks/` and under `src/`. */
function programGraph(): Map<string, { to: string; line: number }[]> {
  const files: string[] = [];
  const walk = (dir: string) => {
    for (const e of Deno.readDirSync(`${ROOT}/${dir}`)) {
      const path = dir === "." ? e.name : `${dir}/${e.name}`;
      if (e.isDirectory && (dir !== "." || ["hooks", "src"].includes(e.name))) walk(path);
      else if (e.isFile && e.name.endsWith(".ts")) files.push(path);
    }
  };
  walk(".");
  const graph = new Map<string, { to: string; line: number }[]>();
  for (const file of files.sort()) {
    const deps = parseImports(Deno.readTextFileSync(`${ROOT}/${file}`)).flatMap(({ specifier, line }) => {
      const to = resolvePath(file, specifier);
      return to === undefined ? [] : [{ to, line }];
    });
    graph.set(file, deps);
  }
  return graph;
}

/**
 * Imports that break the layering today. Each must still exist (the test says so once it is gone, so that the
 * list only shrinks).
 */
const KNOWN_UPWARD: readonly KnownException[] = [];

function isKnown(problem: string): boolean {
  return KNOWN_UPWARD.some((k) => problem.startsWith(`${k.from}:`) && problem.includes(` imports ${k.to}`));
}

Deno.test("parseImports() finds static, type-only, side-effect, re-exported and dynamic imports", () => {
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
    'export * from "./g.ts";',
    "export const h = 1;",
    '// import { i } from "./i.ts";',
    '/* import { j } from "./j.ts"; */',
    'const k = await import("./k.ts");',
    'type L = typeof import("./l.ts");',
    'const url = "http://example.invalid/"; import { m } from "./m.ts";',
    "const text = \"import { n } from './n.ts'\";",
    'import { o } from "npm:o@1";',
  ].join("\n");
  assertEquals(parseImports(source).map((i) => `${i.line} ${i.specifier}`), [
    "1 ./a.ts",
    "2 ./b.ts",
    "6 ../c.ts",
    "7 ./side.ts",
    "8 ./e.ts",
    "9 ./f.ts",
    "10 ./g.ts",
    "14 ./k.ts",
    "15 ./l.ts",
    "16 ./m.ts",
    "18 npm:o@1",
  ]);
});

Deno.test("resolvePath() resolves relative specifiers and leaves packages out", () => {
  assertEquals(resolvePath("hooks/health.ts", "../src/ha/decide.ts"), "src/ha/decide.ts");
  assertEquals(resolvePath("src/cli/status_command.ts", "./../status.ts"), "src/status.ts");
  assertEquals(resolvePath("mod.ts", "./commands.ts"), "commands.ts");
  assertEquals(resolvePath("src/log.ts", "@logtape/logtape"), undefined);
  assertEquals(resolvePath("src/exec.ts", "node:child_process"), undefined);
});

Deno.test("upwardImports() and importCycles() name every offending import and every circle", () => {
  const g = (edges: Record<string, string[]>): ModuleGraph =>
    new Map(Object.entries(edges).map(([from, tos]) => [from, tos.map((to, i) => ({ to, line: i + 1 }))]));
  const clean = g({
    "mod.ts": ["commands.ts", "src/output.ts"],
    "commands.ts": ["hooks/health.ts", "src/cli/status_command.ts", "src/command.ts"],
    "hooks/health.ts": ["src/command.ts", "src/ha/decide.ts"],
    "src/cli/status_command.ts": ["src/status.ts"],
    "src/status.ts": ["src/ha/decide.ts"],
    "src/ha/decide.ts": [],
    "src/command.ts": [],
    "src/output.ts": [],
  });
  assertEquals(upwardImports(clean), []);
  assertEquals(importCycles(clean), []);
  const bad = g({
    "mod.ts": ["commands.ts"],
    "commands.ts": ["hooks/a.ts"],
    "hooks/a.ts": ["src/cli/b.ts", "src/x.ts"],
    "src/cli/b.ts": ["commands.ts", "src/y.ts"],
    "src/w.ts": ["hooks/a.ts", "scripts/s.ts"],
    "src/x.ts": ["src/y.ts"],
    "src/y.ts": ["src/z.ts"],
    "src/z.ts": ["src/x.ts", "src/z.ts"],
    "src/self.ts": ["src/self.ts"],
  });
  assertEquals(upwardImports(bad), [
    "hooks/a.ts:1 imports src/cli/b.ts: a command imports another command (move what they share into src/)",
    "src/cli/b.ts:1 imports commands.ts: the command imports the entry above it",
    "src/w.ts:1 imports hooks/a.ts: the library imports the command above it",
    "src/w.ts:2 imports scripts/s.ts, which is not part of the program",
  ]);
  assertEquals(importCycles(bad), [
    {
      modules: ["commands.ts", "hooks/a.ts", "src/cli/b.ts"],
      circle: ["commands.ts", "hooks/a.ts", "src/cli/b.ts", "commands.ts"],
    },
    { modules: ["src/self.ts"], circle: ["src/self.ts", "src/self.ts"] },
    {
      modules: ["src/x.ts", "src/y.ts", "src/z.ts"],
      circle: ["src/x.ts", "src/y.ts", "src/z.ts", "src/x.ts"],
    },
  ]);
});

Deno.test("no module imports a layer above its own, and no command imports another", () => {
  const problems = upwardImports(programGraph());
  const unknown = problems.filter((p) => !isKnown(p));
  assertEquals(unknown, [], `layering broken:\n${unknown.join("\n")}`);
  const gone = KNOWN_UPWARD.filter((k) =>
    !problems.some((p) => p.startsWith(`${k.from}:`) && p.includes(k.to))
  );
  assertEquals(gone, [], "these known exceptions are fixed: remove them from KNOWN_UPWARD");
});

Deno.test("the program has no import circle", () => {
  const cycles = importCycles(programGraph()).map((c) =>
    `${c.circle.join(" → ")}${
      c.modules.length > c.circle.length - 1 ? ` (one of the circles among ${c.modules.join(", ")})` : ""
    }`
  );
  assertEquals(cycles, [], `import circles:\n${cycles.join("\n")}`);
});

Deno.test("the graph read here covers the program: mod.ts, the command table, every hook and command", () => {
  const graph = programGraph();
  for (const m of ["mod.ts", "hooks/health.ts", "src/config.ts"]) assert(graph.has(m), m);
  assert((graph.get("mod.ts") ?? []).length > 0, "mod.ts imports something");
});

const canRun = (await Deno.permissions.query({ name: "run", command: Deno.execPath() })).state === "granted";

Deno.test({
  name: "the imports read here are the ones deno itself finds from mod.ts (deno info)",
  ignore: !canRun,
  async fn() {
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["info", "--json", "mod.ts"],
      cwd: ROOT,
      stdout: "piped",
      stderr: "piped",
    }).output();
    assert(out.success, new TextDecoder().decode(out.stderr));
    const info = JSON.parse(new TextDecoder().decode(out.stdout)) as {
      modules: {
        specifier: string;
        dependencies?: { code?: { specifier: string }; type?: { specifier: string } }[];
      }[];
    };
    const prefix = `file://${ROOT}/`;
    const local = (s: string | undefined) => s?.startsWith(prefix) ? s.slice(prefix.length) : undefined;
    const fromDeno = new Set<string>();
    for (const m of info.modules) {
      const from = local(m.specifier);
      if (from === undefined) continue;
      for (const d of m.dependencies ?? []) {
        for (const to of [local(d.code?.specifier), local(d.type?.specifier)]) {
          if (to !== undefined) fromDeno.add(`${from} -> ${to}`);
        }
      }
    }
    const graph = programGraph();
    const reached = new Set([...fromDeno].map((e) => e.split(" -> ")[0]));
    const ours = new Set(
      [...graph].filter(([from]) => reached.has(from)).flatMap(([from, deps]) =>
        deps.map((d) => `${from} -> ${d.to}`)
      ),
    );
    assertEquals([...ours].filter((e) => !fromDeno.has(e)).sort(), [], "edges only this test finds");
    assertEquals([...fromDeno].filter((e) => !ours.has(e)).sort(), [], "edges only deno info finds");
  },
});
