/**
 * The files that put autopilot in a container agree with the program and with each other: `Dockerfile`,
 * `.dockerignore`, `containerpilot.json5`, `compose.yml` and its overrides, `_env.example`. No Docker engine
 * and no ContainerPilot run here, so these tests read the files: every command they run exists in the command
 * table, every variable they name exists in the configuration table (or is a ContainerPilot or Docker one
 * listed below), and what ContainerPilot and autopilot each make of the same environment is the same.
 *
 * `containerpilot.json5` is rendered first as a Go `text/template`, as ContainerPilot does, by a small renderer
 * for the part of the template language the file uses; anything else is refused, so the file cannot use syntax
 * this test does not understand.
 *
 * @module
 */
import { CONTAINERPILOT_SERVICE_TTL_SECONDS } from "../../src/services.ts";
import { load as parseYaml } from "js-yaml";
import JSON5 from "json5";
import { assert, assertEquals, assertThrows } from "./assert.ts";
import { type Command, COMMANDS } from "../../commands.ts";
import { type Config, ConfigError, loadConfig, VARIABLES } from "../../src/config.ts";
import { METRICS } from "../../src/metrics.ts";
import { PRE_STOP_BUDGET_MS } from "../../hooks/pre_stop.ts";
import { ENTRYPOINT_LIMIT_VARIABLE } from "../../src/node.ts";
import { SHIPPED_INTERVALS } from "../../bench/costs.ts";
import { autopilotRunFlags } from "../integration/harness/tools.ts";

const ROOT = decodeURIComponent(new URL("../../", import.meta.url).pathname).replace(/\/$/, "");
const read = (path: string): string => Deno.readTextFileSync(`${ROOT}/${path}`);
const exists = (path: string): boolean => {
  try {
    Deno.statSync(`${ROOT}/${path}`);
    return true;
  } catch {
    return false;
  }
};

/** Variables ContainerPilot itself reads (not autopilot): the path of its configuration file. */
const CONTAINERPILOT_VARIABLES = new Set(["CONTAINERPILOT"]);
/** Variables of the Docker side: the image's build argument, also used by the compose files. */
const DOCKER_VARIABLES = new Set(["FLAVOUR"]);
/** Every setting, and each secret's `_FILE` twin. */
const KNOWN = new Set([
  ...VARIABLES.flatMap((v) => [v.name, ...(v.file ? [v.file] : [])]),
  ...CONTAINERPILOT_VARIABLES,
  ...DOCKER_VARIABLES,
]);
/** The secret each `_FILE` twin stands for. */
const TWIN_OF = new Map(VARIABLES.filter((v) => v.file).map((v) => [v.file!, v.name]));
const SPEC = new Map(VARIABLES.map((v) => [v.name, v]));
/** The top-level keys ContainerPilot accepts; any other is an "unknown config keys" error. */
const CONTAINERPILOT_KEYS = new Set([
  "consul",
  "logging",
  "stopTimeout",
  "jobs",
  "watches",
  "telemetry",
  "control",
]);
/** Log levels ContainerPilot's logger (logrus) parses, after lower-casing. */
const LOGRUS_LEVELS = new Set(["panic", "fatal", "error", "warn", "warning", "info", "debug", "trace"]);
/** ContainerPilot's events a `when` may wait for. */
const EVENTS = new Set([
  "exitSuccess",
  "exitFailed",
  "stopping",
  "stopped",
  "healthy",
  "unhealthy",
  "changed",
  "enterMaintenance",
  "exitMaintenance",
  "startup",
  "shutdown",
]);
/** The one program ContainerPilot runs that is not autopilot. */
const SERVER_PROGRAM = "mysqld";

// ---- a Go text/template renderer, for the subset containerpilot.json5 uses ------------------------------

type Value = string | number | boolean;
type Token =
  | { kind: "field"; name: string }
  | { kind: "ident"; name: string }
  | { kind: "string"; value: string }
  | { kind: "number"; value: number }
  | { kind: "pipe" };
type Node =
  | { kind: "text"; text: string }
  | { kind: "action"; pipeline: Token[][] }
  | { kind: "if"; pipeline: Token[][]; then: Node[]; else: Node[] };

/** The variables a template refers to (`.NAME`). */
function templateFields(template: string): Set<string> {
  const fields = new Set<string>();
  for (const action of lexActions(template)) {
    for (const token of action.tokens) if (token.kind === "field") fields.add(token.name);
  }
  return fields;
}

/**
 * Renders a Go text/template with ContainerPilot's data (the environment, missing keys as "") and functions
 * (`default`, `regexReplaceAll`, `replaceAll`, plus Go's `eq`). Throws on anything outside that subset, and on
 * what Go itself refuses (e.g. a backslash outside a string in an action).
 */
function renderGoTemplate(template: string, env: Record<string, string>): string {
  const [nodes, rest] = parseNodes(lexActions(template), 0, template);
  if (rest !== undefined) throw new Error(`template: unexpected {{${rest}}}`);
  return renderNodes(nodes, env);
}

interface LexedAction {
  readonly start: number;
  readonly end: number;
  readonly tokens: Token[];
}

function lexActions(template: string): LexedAction[] {
  const actions: LexedAction[] = [];
  let at = 0;
  for (;;) {
    const open = template.indexOf("{{", at);
    if (open < 0) return actions;
    const close = template.indexOf("}}", open + 2);
    if (close < 0) throw new Error(`template: unclosed action at offset ${open}`);
    // A string may hold "}}": find the end of the action by lexing.
    const { tokens, end } = lexAction(template, open + 2);
    actions.push({ start: open, end, tokens });
    at = end;
  }
}

function lexAction(s: string, from: number): { tokens: Token[]; end: number } {
  const tokens: Token[] = [];
  let i = from;
  while (i < s.length) {
    const c = s[i];
    if (s.startsWith("}}", i)) return { tokens, end: i + 2 };
    if (c === " " || c === "\t" || c === "\n" || c === "\r") {
      i++;
    } else if (c === "|") {
      tokens.push({ kind: "pipe" });
      i++;
    } else if (c === '"') {
      let value = "";
      i++;
      for (;;) {
        if (i >= s.length || s[i] === "\n") throw new Error("template: unterminated quoted string");
        const d = s[i];
        if (d === '"') break;
        if (d === "\\") {
          const escapes: Record<string, string> = { "\\": "\\", '"': '"', n: "\n", t: "\t", r: "\r" };
          const e = escapes[s[i + 1]];
          if (e === undefined) throw new Error(`template: unknown escape sequence \\${s[i + 1]}`);
          value += e;
          i += 2;
        } else {
          value += d;
          i++;
        }
      }
      tokens.push({ kind: "string", value });
      i++;
    } else if (c === "`") {
      const close = s.indexOf("`", i + 1);
      if (close < 0) throw new Error("template: unterminated raw quoted string");
      tokens.push({ kind: "string", value: s.slice(i + 1, close) });
      i = close + 1;
    } else {
      const m = /^(?:\.([A-Za-z_][A-Za-z0-9_]*)|([A-Za-z_][A-Za-z0-9_]*)|(-?[0-9]+))/.exec(s.slice(i));
      if (!m) throw new Error(`template: unrecognized character in action: ${JSON.stringify(c)}`);
      if (m[1] !== undefined) tokens.push({ kind: "field", name: m[1] });
      else if (m[2] !== undefined) tokens.push({ kind: "ident", name: m[2] });
      else tokens.push({ kind: "number", value: Number(m[3]) });
      i += m[0].length;
    }
  }
  throw new Error("template: unclosed action");
}

/** Parses nodes until `{{else}}`/`{{end}}` (returned as the second value) or the end of the template. */
function parseNodes(
  actions: LexedAction[],
  textFrom: number,
  template: string,
): [Node[], string | undefined] {
  const nodes: Node[] = [];
  let at = textFrom;
  while (actions.length > 0) {
    const action = actions.shift()!;
    nodes.push({ kind: "text", text: template.slice(at, action.start) });
    at = action.end;
    const [first] = action.tokens;
    if (first?.kind === "ident" && (first.name === "else" || first.name === "end")) {
      if (action.tokens.length !== 1) throw new Error(`template: unsupported {{${first.name} ...}}`);
      // The caller continues after this action.
      actions.unshift({ start: action.end, end: action.end, tokens: [{ kind: "ident", name: "@resume" }] });
      return [nodes, first.name];
    }
    if (first?.kind === "ident" && first.name === "@resume") continue;
    if (first?.kind === "ident" && first.name === "if") {
      const pipeline = splitPipeline(action.tokens.slice(1));
      const [then, stop] = parseNodes(actions, action.end, template);
      if (stop === undefined) throw new Error("template: missing {{end}}");
      let otherwise: Node[] = [];
      let resumeAt = takeResume(actions);
      if (stop === "else") {
        const [elseNodes, stop2] = parseNodes(actions, resumeAt, template);
        if (stop2 !== "end") throw new Error("template: missing {{end}}");
        otherwise = elseNodes;
        resumeAt = takeResume(actions);
      }
      nodes.push({ kind: "if", pipeline, then, else: otherwise });
      at = resumeAt;
      continue;
    }
    if (first?.kind === "ident" && ["range", "with", "define", "template", "block"].includes(first.name)) {
      throw new Error(`template: {{${first.name}}} is not supported by this test`);
    }
    nodes.push({ kind: "action", pipeline: splitPipeline(action.tokens) });
  }
  nodes.push({ kind: "text", text: template.slice(at) });
  return [nodes, undefined];
}

function takeResume(actions: LexedAction[]): number {
  const resume = actions.shift();
  if (resume === undefined || resume.tokens[0]?.kind !== "ident" || resume.tokens[0].name !== "@resume") {
    throw new Error("template: internal error");
  }
  return resume.end;
}

function splitPipeline(tokens: Token[]): Token[][] {
  const commands: Token[][] = [[]];
  for (const t of tokens) {
    if (t.kind === "pipe") commands.push([]);
    else commands[commands.length - 1].push(t);
  }
  if (commands.some((c) => c.length === 0)) throw new Error("template: missing command in pipeline");
  return commands;
}

function renderNodes(nodes: Node[], env: Record<string, string>): string {
  let out = "";
  for (const node of nodes) {
    if (node.kind === "text") out += node.text;
    else if (node.kind === "action") out += String(evalPipeline(node.pipeline, env));
    else {
      const v = evalPipeline(node.pipeline, env);
      const truthy = v !== "" && v !== false && v !== 0;
      out += renderNodes(truthy ? node.then : node.else, env);
    }
  }
  return out;
}

function evalPipeline(commands: Token[][], env: Record<string, string>): Value {
  let piped: Value | undefined;
  for (const command of commands) {
    const operand = (t: Token): Value => {
      if (t.kind === "field") return env[t.name] ?? "";
      if (t.kind === "string" || t.kind === "number") return t.value;
      throw new Error(`template: unexpected ${t.kind} as an argument`);
    };
    const [head, ...rest] = command;
    if (head.kind !== "ident") {
      if (rest.length > 0 || piped !== undefined) {
        throw new Error("template: cannot give arguments to a value");
      }
      piped = operand(head);
      continue;
    }
    const args = rest.map(operand);
    if (piped !== undefined) args.push(piped);
    piped = callFunction(head.name, args);
  }
  return piped ?? "";
}

function callFunction(name: string, args: Value[]): Value {
  const str = (v: Value): string => {
    if (typeof v !== "string") throw new Error(`template: ${name} wants strings, got ${typeof v}`);
    return v;
  };
  const arity = (n: number) => {
    if (args.length !== n) throw new Error(`template: ${name} wants ${n} arguments, got ${args.length}`);
  };
  switch (name) {
    case "default": // ContainerPilot's: the value unless it is empty
      arity(2);
      return typeof args[1] === "string" && args[1] !== "" ? args[1] : String(args[0]);
    case "eq":
      arity(2);
      return args[0] === args[1];
    case "replaceAll":
      arity(3);
      return str(args[2]).split(str(args[0])).join(str(args[1]));
    case "regexReplaceAll":
      arity(3);
      return goReplaceAll(str(args[0]), str(args[1]), str(args[2]));
    default:
      throw new Error(`template: function ${JSON.stringify(name)} is not supported by this test`);
  }
}

/** Go's regexp.ReplaceAllString, for the RE2 syntax JavaScript shares (plus a leading `(?i)`). */
function goReplaceAll(re: string, template: string, s: string): string {
  let flags = "gu";
  if (re.startsWith("(?i)")) {
    re = re.slice(4);
    flags += "i";
  }
  if (/\(\?[A-Za-z]/.test(re)) {
    throw new Error(`template: regexp flags inside ${re} are not supported by this test`);
  }
  return s.replace(new RegExp(re, flags), (...match: unknown[]) => {
    const groups = match.slice(0, -2).map((g) => (g === undefined ? "" : String(g)));
    // Go's Expand: $name or ${name}, the longest run of letters, digits and '_'; $$ is a '$'.
    return template.replace(
      /\$(\$|\{([^}]*)\}|([A-Za-z0-9_]+))/g,
      (_all, all: string, braced?: string, bare?: string) => {
        if (all === "$") return "$";
        const name = braced ?? bare ?? "";
        return /^[0-9]+$/.test(name) ? groups[Number(name)] ?? "" : "";
      },
    );
  });
}

// ---- reading the files ---------------------------------------------------------------------------------

/** ContainerPilot's configuration as ContainerPilot would see it with this environment. */
// deno-lint-ignore no-explicit-any
function containerpilot(env: Record<string, string> = {}): any {
  return JSON5.parse(renderGoTemplate(read("containerpilot.json5"), env));
}

interface Instruction {
  readonly line: number;
  readonly keyword: string;
  readonly args: string;
}
interface Stage {
  readonly base: string;
  readonly name?: string;
  readonly platform?: string;
  readonly instructions: Instruction[];
}
interface Dockerfile {
  /** ARGs before the first FROM, with their defaults. */
  readonly globalArgs: Map<string, string | undefined>;
  readonly stages: Stage[];
}

/** Splits a Dockerfile into instructions (continuations joined, comments dropped) grouped by stage. */
function parseDockerfile(text: string): Dockerfile {
  const lines = text.split("\n");
  const instructions: Instruction[] = [];
  for (let i = 0; i < lines.length; i++) {
    const first = lines[i].trim();
    if (first === "" || first.startsWith("#")) continue;
    const start = i;
    let joined = lines[i];
    while (/\\\s*$/.test(joined) && i + 1 < lines.length) {
      joined = joined.replace(/\\\s*$/, " ");
      i++;
      // Comment lines inside a continued instruction are dropped, as Docker does.
      if (lines[i].trim().startsWith("#")) {
        joined += "\\";
        continue;
      }
      joined += lines[i];
    }
    const m = /^\s*([A-Za-z]+)\s*(.*)$/s.exec(joined);
    assert(m, `Dockerfile:${start + 1}: cannot read the instruction`);
    instructions.push({ line: start + 1, keyword: m[1].toUpperCase(), args: m[2].trim() });
  }
  const globalArgs = new Map<string, string | undefined>();
  const stages: Stage[] = [];
  for (const ins of instructions) {
    if (ins.keyword === "FROM") {
      const m = /^(?:--platform=(\S+)\s+)?(\S+)(?:\s+AS\s+(\S+))?$/i.exec(ins.args);
      assert(m, `Dockerfile:${ins.line}: cannot read FROM ${ins.args}`);
      stages.push({ platform: m[1], base: m[2], name: m[3], instructions: [] });
    } else if (stages.length === 0) {
      assertEquals(ins.keyword, "ARG", `Dockerfile:${ins.line}: only ARG may come before the first FROM`);
      const [name, dflt] = splitAssignment(ins.args);
      globalArgs.set(name, dflt);
    } else {
      stages[stages.length - 1].instructions.push(ins);
    }
  }
  return { globalArgs, stages };
}

function splitAssignment(text: string): [string, string | undefined] {
  const eq = text.indexOf("=");
  return eq < 0 ? [text.trim(), undefined] : [text.slice(0, eq).trim(), text.slice(eq + 1).trim()];
}

/** `ENV A=1 B=2` (or the old `ENV A 1`) as pairs. */
function envPairs(args: string): [string, string][] {
  if (!/^[A-Za-z_][A-Za-z0-9_]*=/.test(args)) {
    const [name, ...value] = args.split(/\s+/);
    return [[name, value.join(" ")]];
  }
  const pairs: [string, string][] = [];
  for (const m of args.matchAll(/([A-Za-z_][A-Za-z0-9_]*)=("(?:[^"\\]|\\.)*"|\S*)/g)) {
    pairs.push([m[1], m[2].replace(/^"(.*)"$/s, "$1")]);
  }
  return pairs;
}

/** Whether `.dockerignore` keeps `path` out of the build context (last matching pattern wins). */
function dockerignored(path: string): boolean {
  let ignored = false;
  for (const raw of read(".dockerignore").split("\n")) {
    const line = raw.trim();
    if (line === "" || line.startsWith("#")) continue;
    const negate = line.startsWith("!");
    const pattern = (negate ? line.slice(1) : line).replace(/^\/+|\/+$/g, "");
    const re = new RegExp(
      "^" + pattern.split("**").map((part) =>
        part.split("*").map((p) =>
          p.replace(/[.+?^${}()|[\]\\]/g, "\\$&")
        ).join("[^/]*")
      ).join(".*") + "(/.*)?$",
    );
    if (re.test(path.replace(/^\/+|\/+$/g, ""))) ignored = !negate;
  }
  return ignored;
}

// deno-lint-ignore no-explicit-any
type Yaml = any;
const COMPOSE_FILES = ["compose.yml", "compose.s3.yml", "compose.manta.yml", "local-compose.yml"];
function compose(file = "compose.yml"): Yaml {
  return parseYaml(read(file));
}

/** The `${NAME}` / `${NAME:-default}` / `$NAME` variables a compose file interpolates. */
function composeInterpolations(text: string): Map<string, string | undefined> {
  const vars = new Map<string, string | undefined>();
  for (
    const m of text.matchAll(/\$(?:\{([A-Za-z_][A-Za-z0-9_]*)(?::?-([^}]*))?\}|([A-Za-z_][A-Za-z0-9_]*))/g)
  ) {
    vars.set(m[1] ?? m[3], m[2]);
  }
  return vars;
}

/** Compose's `${NAME:-default}` with an empty shell environment. */
function interpolate(value: string): string {
  return value.replace(/\$\{([A-Za-z_][A-Za-z0-9_]*)(?::?-([^}]*))?\}/g, (_m, _n, d?: string) => d ?? "");
}

/** A service's `environment`, in either of compose's forms. */
function serviceEnvironment(service: Yaml): Record<string, string> {
  const env = service?.environment ?? {};
  if (Array.isArray(env)) {
    return Object.fromEntries(env.map((e: string) => splitAssignment(e)).map(([k, v]) => [k, v ?? ""]));
  }
  return Object.fromEntries(Object.entries(env).map(([k, v]) => [k, v === null ? "" : String(v)]));
}

/** `_env.example`: active `NAME=value` lines, and the commented-out `#NAME=value` examples. */
function envExample(): { active: Map<string, string>; commented: Map<string, string> } {
  const active = new Map<string, string>();
  const commented = new Map<string, string>();
  for (const line of read("_env.example").split("\n")) {
    const m = /^(#?)([A-Z][A-Z0-9_]*)=(.*)$/.exec(line);
    if (m) (m[1] ? commented : active).set(m[2], m[3]);
  }
  return { active, commented };
}

function load(env: Record<string, string>): Config {
  return loadConfig((n) => env[n], { hostname: () => "node-1" });
}

const BASE_ENV = { MYSQL_REPL_PASSWORD: "x" };

/** Checks that `command` (as ContainerPilot or Docker would run it) is an `autopilot` command that exists. */
function checkAutopilotCommand(argv: readonly string[], where: string): void {
  assertEquals(argv[0], "autopilot", `${where}: runs ${argv[0]}, not autopilot`);
  const command: Command | undefined = COMMANDS.find((c) => c.name === argv[1]);
  assert(command, `${where}: 'autopilot ${argv[1]}' is not a command (commands.ts)`);
  for (const arg of argv.slice(2)) {
    if (arg.startsWith("--")) {
      const name = arg.slice(2).split("=")[0];
      assert(
        Object.hasOwn(command.options, name),
        `${where}: 'autopilot ${command.name}' has no option --${name} (it has: ${
          Object.keys(command.options).map((o) => `--${o}`).join(", ") || "none"
        })`,
      );
    } else {
      assert(command.args !== undefined, `${where}: 'autopilot ${command.name}' takes no argument '${arg}'`);
    }
  }
}

/** ContainerPilot splits a string `exec` on single spaces; an array is taken as it is. */
function execArgv(exec: unknown): string[] {
  if (typeof exec === "string") return exec.split(" ");
  assert(Array.isArray(exec) && exec.every((a) => typeof a === "string"), `exec must be a string or strings`);
  return exec as string[];
}

// ---- the template renderer itself ------------------------------------------------------------------------

Deno.test("renderGoTemplate() renders fields, default, if/else, eq and regexReplaceAll as Go does", () => {
  const t =
    '{{ .A | default "x" }}-{{ if .B | eq "1" }}one{{ else }}{{ .B | regexReplaceAll `^(a)(b)?$` "${1}$2!" }}{{ end }}';
  assertEquals(renderGoTemplate(t, {}), "x-");
  assertEquals(renderGoTemplate(t, { A: "a", B: "1" }), "a-one");
  assertEquals(renderGoTemplate(t, { B: "ab" }), "x-ab!");
  assertEquals(renderGoTemplate(t, { B: "a" }), "x-a!");
  assertEquals(renderGoTemplate('{{ .X | regexReplaceAll `^\\s+|\\s+$` "" }}', { X: "  v  " }), "v");
});

Deno.test("renderGoTemplate() refuses what Go's text/template refuses", () => {
  assertThrows(() => renderGoTemplate('a {{ .A | default \\"x\\" }}', {}), Error, "unrecognized character");
  assertThrows(() => renderGoTemplate('{{ .A | default "\\s" }}', {}), Error, "unknown escape");
  assertThrows(() => renderGoTemplate("{{ if .A }}x", {}), Error, "missing {{end}}");
  assertThrows(() => renderGoTemplate("{{ .A | lower }}", {}), Error, "not supported");
});

// ---- containerpilot.json5 ----------------------------------------------------------------------------------

Deno.test("containerpilot.json5 renders as a Go template and parses as JSON5 with ContainerPilot's top-level keys", () => {
  const config = containerpilot();
  for (const key of Object.keys(config)) {
    assert(
      CONTAINERPILOT_KEYS.has(key),
      `containerpilot.json5: ContainerPilot refuses the top-level key '${key}'`,
    );
  }
  assert(Array.isArray(config.jobs) && config.jobs.length > 0, "containerpilot.json5 has no jobs");
  assert(Number.isInteger(config.stopTimeout), "stopTimeout must be a whole number of seconds");
});

Deno.test("containerpilot.json5 names only variables autopilot reads, with autopilot's defaults", () => {
  const text = read("containerpilot.json5");
  for (const name of templateFields(text)) {
    assert(KNOWN.has(name), `containerpilot.json5 uses {{ .${name} }}, which src/config.ts does not know`);
  }
  for (const m of text.matchAll(/\.([A-Z][A-Z0-9_]*) \| default "([^"]*)"/g)) {
    assertEquals(
      m[2],
      SPEC.get(m[1])?.default,
      `containerpilot.json5's default for ${m[1]} differs from src/config.ts's`,
    );
  }
});

Deno.test("containerpilot.json5 runs only autopilot commands that exist, and mysqld with MYSQL_CNF", () => {
  const config = containerpilot({ MYSQL_CNF: "/x/my.cnf" });
  let autopilotRuns = 0;
  for (const job of config.jobs) {
    for (
      const [exec, where] of [[job.exec, `job ${job.name}`], [job.health?.exec, `job ${job.name}'s health`]]
    ) {
      if (exec === undefined) continue;
      const argv = execArgv(exec);
      if (argv[0] === SERVER_PROGRAM) {
        assertEquals(argv.slice(1), ["--defaults-file=/x/my.cnf"], `${where}: mysqld must read MYSQL_CNF`);
        continue;
      }
      checkAutopilotCommand(argv, `containerpilot.json5 ${where}`);
      autopilotRuns++;
    }
  }
  assert(autopilotRuns >= 4, "containerpilot.json5 should run the lifecycle hooks through autopilot");
});

Deno.test("the benchmark counts the checks' cost at the intervals containerpilot.json5 ships", () => {
  // deno-lint-ignore no-explicit-any
  const jobs: any[] = containerpilot().jobs;
  const checked = jobs.filter((j) => j.health?.exec === "autopilot health");
  assertEquals(checked.length, 1, "one job should have `autopilot health` as its check");
  assertEquals(checked[0].health.interval, SHIPPED_INTERVALS.healthSeconds, "health interval");
  const snapshot = jobs.find((j) => j.exec === "autopilot snapshot");
  assertEquals(snapshot?.when?.interval, `${SHIPPED_INTERVALS.snapshotSeconds / 60}m`, "snapshot interval");
  const archive = jobs.find((j) => j.exec === "autopilot archive");
  assertEquals(
    archive?.when?.interval,
    `${SHIPPED_INTERVALS.archiveSeconds}s`,
    "binlog-archive interval (its default)",
  );
  // deno-lint-ignore no-explicit-any
  const watches: any[] = containerpilot().watches;
  assertEquals(
    watches.map((w) => w.interval),
    [SHIPPED_INTERVALS.watchSeconds],
    "the primary watch's interval",
  );
});

Deno.test("containerpilot.json5 jobs and watches are valid for ContainerPilot and refer to each other", () => {
  const config = containerpilot();
  const jobs = new Set<string>(config.jobs.map((j: { name: string }) => j.name));
  const watches = new Set<string>((config.watches ?? []).map((w: { name: string }) => w.name));
  assertEquals(jobs.size, config.jobs.length, "job names must be unique");
  for (const w of config.watches ?? []) {
    assert(
      Number.isInteger(w.interval) && w.interval > 0,
      `watch ${w.name}: interval must be a positive integer`,
    );
  }
  for (const job of config.jobs) {
    const where = `containerpilot.json5 job ${job.name}`;
    if (job.port !== undefined) {
      assert(
        /^[a-z][a-zA-Z0-9-]+$/.test(job.name),
        `${where}: an advertised job's name must match ContainerPilot's rule`,
      );
      assert(Number.isInteger(job.port) && job.port > 0, `${where}: port must be a number`);
      assert(job.health?.exec !== undefined, `${where}: an advertised job needs a health check`);
      for (const k of ["interval", "ttl"]) {
        assert(
          Number.isInteger(job.health[k]) && job.health[k] > 0,
          `${where}: health.${k} must be a positive integer`,
        );
      }
    }
    const when = job.when;
    if (when?.source !== undefined) {
      const source: string = when.source;
      const ok = jobs.has(source) || (source.startsWith("watch.") && watches.has(source.slice(6))) ||
        ["SIGHUP", "SIGUSR2"].includes(source);
      assert(ok, `${where}: when.source '${source}' is no job, watch or signal`);
      assert((when.once === undefined) !== (when.each === undefined), `${where}: when needs once or each`);
      assert(EVENTS.has(when.once ?? when.each), `${where}: '${when.once ?? when.each}' is not an event`);
      assert(
        !(job.restarts === "unlimited" && when.each !== undefined),
        `${where}: unlimited restarts with each`,
      );
    } else if (when !== undefined) {
      assert(when.interval !== undefined, `${where}: when needs a source or an interval`);
    }
  }
});

Deno.test("containerpilot.json5 names every job and watch after SERVICE_NAME", () => {
  const config = containerpilot({ SERVICE_NAME: "db" });
  const names = config.jobs.map((j: { name: string }) => j.name);
  assert(names.includes("db"), `jobs: ${names.join(", ")}`);
  // autopilot registers db-primary itself (src/services.ts): a job would be a check failing on every replica.
  assert(!names.includes("db-primary"), `db-primary must not be a job: ${names.join(", ")}`);
  assert(!names.some((n: string) => n.startsWith("mysql")), `a job still says mysql: ${names.join(", ")}`);
  assertEquals(config.watches.map((w: { name: string }) => w.name), ["db-primary"]);
  assertEquals(config.telemetry.tags, ["db"], "the telemetry service is tagged with its cluster");
  const ports = config.jobs.filter((j: { port?: number }) => j.port !== undefined);
  assert(
    ports.every((j: { port: number }) => j.port === 3306),
    "advertised ports follow MYSQL_PORT's default",
  );
  const other = containerpilot({ MYSQL_PORT: "3307" }).jobs.filter((j: { port?: number }) =>
    j.port !== undefined
  );
  assert(other.every((j: { port: number }) => j.port === 3307), "advertised ports follow MYSQL_PORT");
});

Deno.test("containerpilot.json5 reaches the Consul agent autopilot reaches, for every CONSUL and CONSUL_AGENT", () => {
  const consuls = [
    undefined,
    "consul",
    "consul:8500",
    "consul:9500",
    "10.0.0.5",
    "http://consul:8500",
    "https://consul.example:8501/",
    "[::1]:8500",
  ];
  const agents = [undefined, "true", "false", "TRUE", "yes", "no", "on", "off", "1", "0"];
  let compared = 0;
  for (const CONSUL of consuls) {
    for (const CONSUL_AGENT of agents) {
      const env: Record<string, string> = { ...BASE_ENV };
      if (CONSUL !== undefined) env.CONSUL = CONSUL;
      if (CONSUL_AGENT !== undefined) env.CONSUL_AGENT = CONSUL_AGENT;
      const ours = load(env).consul;
      const rendered: string = containerpilot(env).consul;
      const m = /^(?:(https?):\/\/)?(\[[^\]]+\]|[^:/]+):(\d+)$/.exec(rendered);
      assert(m, `CONSUL=${CONSUL} CONSUL_AGENT=${CONSUL_AGENT}: ContainerPilot would get '${rendered}'`);
      assertEquals(
        { scheme: m[1] ?? "http", host: m[2], port: Number(m[3]) },
        { scheme: ours.scheme, host: ours.host, port: ours.port },
        `CONSUL=${CONSUL} CONSUL_AGENT=${CONSUL_AGENT}: ContainerPilot and autopilot would talk to different agents`,
      );
      compared++;
    }
  }
  assertEquals(compared, consuls.length * agents.length);
});

Deno.test("containerpilot.json5 gives ContainerPilot a log level it accepts for every LOG_LEVEL autopilot accepts", () => {
  const same = (level: string) => (level === "warn" ? "warning" : level);
  for (
    const LOG_LEVEL of [
      undefined,
      "DEBUG",
      "info",
      "WARN",
      "warning",
      "ERROR",
      "CRITICAL",
      "critical",
      "fatal",
    ]
  ) {
    const env: Record<string, string> = { ...BASE_ENV, ...(LOG_LEVEL ? { LOG_LEVEL } : {}) };
    const ours = load(env).log.level;
    const theirs = String(containerpilot(env).logging.level).toLowerCase();
    assert(LOGRUS_LEVELS.has(theirs), `LOG_LEVEL=${LOG_LEVEL}: ContainerPilot refuses level '${theirs}'`);
    assertEquals(
      same(theirs),
      ours,
      `LOG_LEVEL=${LOG_LEVEL}: ContainerPilot logs at ${theirs}, autopilot at ${ours}`,
    );
  }
});

// ---- compose files and _env.example ------------------------------------------------------------------------

Deno.test("compose files parse and set only variables autopilot reads", () => {
  for (const file of COMPOSE_FILES) {
    const doc = compose(file);
    assert(doc?.services?.mysql, `${file}: no mysql service`);
    // The mysql service's settings are autopilot's (Consul's own service is configured by its command line).
    for (const key of Object.keys(serviceEnvironment(doc.services.mysql))) {
      assert(KNOWN.has(key), `${file}: the mysql service sets ${key}, which src/config.ts does not read`);
      assert(!SPEC.get(key)?.secret, `${file}: ${key} is a secret: set it in _env, never in a compose file`);
    }
    for (const name of composeInterpolations(read(file)).keys()) {
      assert(
        KNOWN.has(name),
        `${file} interpolates \${${name}}, which is neither autopilot's nor the build's`,
      );
    }
  }
});

Deno.test("compose.yml wires the mysql service to Consul and to the shared snapshot volume", () => {
  const doc = compose();
  const mysql = doc.services.mysql;
  const env = serviceEnvironment(mysql);
  const envFiles = [mysql.env_file].flat().map((f: string | { path: string }) =>
    typeof f === "string" ? f : f.path
  );
  assert(envFiles.includes("_env"), "compose.yml: the mysql service reads its settings from _env");
  // The Consul address autopilot (and, through the same variable, ContainerPilot) uses names the consul service.
  // (The secret files exist only in the container: the twins are left out here, BASE_ENV gives the password.)
  for (const name of Object.keys(env)) if (TWIN_OF.has(name)) delete env[name];
  const consul = load({ ...BASE_ENV, ...env }).consul;
  assert(doc.services[consul.host], `compose.yml: CONSUL points at '${consul.host}', which is no service`);
  assert(mysql.depends_on?.[consul.host], "compose.yml: mysql must wait for consul");
  // The default store is the directory store, on a named volume every mysql container mounts.
  const config = load({ ...BASE_ENV, ...env });
  assertEquals(config.storage.backend, "local");
  const dir = env.SNAPSHOT_DIR ?? SPEC.get("SNAPSHOT_DIR")!.default;
  const mount = (mysql.volumes ?? []).map((v: string) => v.split(":")).find(([, target]: string[]) =>
    dir === target || dir.startsWith(target + "/")
  );
  assert(mount, `compose.yml: SNAPSHOT_DIR ${dir} is on no volume of the mysql service`);
  assert(Object.hasOwn(doc.volumes ?? {}, mount[0]), `compose.yml: ${mount[0]} must be a named volume`);
  // The service is advertised under SERVICE_NAME: keep the compose service name the same.
  const { active } = envExample();
  assertEquals(active.get("SERVICE_NAME") ?? SPEC.get("SERVICE_NAME")!.default, "mysql");
  // The server's port stays unpublished (any number of replicas), and the image is built here.
  assertEquals(mysql.build.context, ".");
  assert(mysql.ports === undefined, "compose.yml: publishing 3306 would stop `--scale mysql=3`");
});

/** Seconds in a Go-style duration such as "60s", "12h" or "1m". */
function durationSeconds(text: string): number {
  const m = /^(\d+)(s|m|h)$/.exec(text);
  assert(m, `'${text}' is not a duration in seconds, minutes or hours`);
  return Number(m[1]) * { s: 1, m: 60, h: 3600 }[m[2] as "s" | "m" | "h"];
}

function preStopJob(env: Record<string, string> = {}) {
  return containerpilot(env).jobs.find((j: { name: string }) => j.name === "pre-stop");
}

Deno.test("pre-stop is bounded above its own budget, and longer only with BACKUP_ON_STOP", () => {
  const plain = durationSeconds(preStopJob().timeout);
  assert(plain * 1000 > PRE_STOP_BUDGET_MS, `pre-stop's timeout ${plain} s must exceed its budget`);
  for (const on of ["true", "yes", "ON", "1"]) {
    assert(durationSeconds(preStopJob({ BACKUP_ON_STOP: on }).timeout) >= 3600, `BACKUP_ON_STOP=${on}`);
  }
  for (const off of ["false", "no", "0", ""]) {
    assertEquals(
      durationSeconds(preStopJob({ BACKUP_ON_STOP: off }).timeout),
      plain,
      `BACKUP_ON_STOP=${off}`,
    );
  }
  // ContainerPilot sleeps the whole top-level stopTimeout on every stop (core/app.go): it must stay short.
  assert(containerpilot().stopTimeout <= 5, "the top-level stopTimeout is added to every stop");
  const mysql = containerpilot().jobs.find((j: { name: string }) => j.name === "mysql");
  assertEquals(mysql.stopTimeout, undefined, "a job's stopTimeout never fires in the fork: do not pretend");
});

/** Every secret a compose file hands over, and the store section whose secrets its overlay must hand over. */
const SECRET_WIRING: readonly { file: string; required: string[]; store?: string }[] = [
  { file: "compose.yml", required: ["MYSQL_REPL_PASSWORD_FILE", "MYSQL_PASSWORD_FILE"] },
  { file: "compose.s3.yml", required: ["S3_SECRET_ACCESS_KEY_FILE"], store: "S3 store" },
  { file: "compose.manta.yml", required: ["MANTA_PRIVATE_KEY_FILE"], store: "Manta store" },
];

Deno.test("compose files hand the secrets over as Docker secrets, each _FILE naming its /run/secrets file", () => {
  const { active } = envExample();
  for (const { file: name, required, store } of SECRET_WIRING) {
    // Each file on its own: compose merges an overlay's service `secrets:` and top-level `secrets:` into
    // compose.yml's, so an overlay declares what it adds.
    const doc = compose(name);
    const mysql = doc.services.mysql;
    const env = serviceEnvironment(mysql);
    const granted = new Set(
      (mysql.secrets ?? []).map((s: string | { source: string }) => typeof s === "string" ? s : s.source),
    );
    const twins = Object.keys(env).filter((k) => TWIN_OF.has(k));
    const storeSecrets = store === undefined
      ? []
      : VARIABLES.filter((v) => v.section === store && v.file !== undefined).map((v) => v.file!);
    for (const wanted of [...required, ...storeSecrets]) {
      assert(twins.includes(wanted), `${name}: the mysql service should set ${wanted}`);
    }
    for (const twin of twins) {
      const m = /^\/run\/secrets\/([A-Za-z0-9_.-]+)$/.exec(env[twin]);
      assert(m, `${name}: ${twin}=${env[twin]} is not a file in /run/secrets, where compose mounts secrets`);
      assert(granted.has(m[1]), `${name}: the mysql service does not list the secret ${m[1]} (${twin})`);
      const file = doc.secrets?.[m[1]]?.file;
      assert(typeof file === "string", `${name}: the top-level secret ${m[1]} has no file`);
      assertEquals(
        file,
        `./secrets/${m[1]}`,
        `${name}: ${m[1]} should be read from ./secrets/ (git ignores it)`,
      );
      // ... and not through the environment: a variable and its twin both set would be refused.
      const variable = TWIN_OF.get(twin)!;
      assert(!active.has(variable), `_env.example sets ${variable}, which ${name} reads from ${env[twin]}`);
    }
    assert(read(name).includes("README"), `${name}: say where the secrets are explained`);
  }
  assert(read(".gitignore").split("\n").includes("/secrets/"), ".gitignore must keep secrets/ out of git");
  // scripts/setup.sh writes the file compose.manta.yml reads the key from (secrets/NAME, as checked above).
  const keySecret = /[^/]+$/.exec(
    serviceEnvironment(compose("compose.manta.yml").services.mysql).MANTA_PRIVATE_KEY_FILE,
  )!;
  const setup = read("scripts/setup.sh");
  assert(setup.includes('secrets_dir="$root/secrets"'), "setup.sh: the secrets directory is not secrets/");
  assert(setup.includes(`"$secrets_dir/${keySecret[0]}"`), `setup.sh does not write secrets/${keySecret[0]}`);
});

Deno.test("compose.yml lets a stopping primary hand over and shut down before Docker kills it", () => {
  const grace = durationSeconds(String(compose().services.mysql.stop_grace_period ?? "10s"));
  const worst = durationSeconds(preStopJob().timeout) + containerpilot().stopTimeout;
  assert(grace > worst, `stop_grace_period ${grace} s must exceed pre-stop's timeout plus stopTimeout`);
});

Deno.test("compose files pin their images and build the flavours the Dockerfile has", () => {
  const dockerfile = parseDockerfile(read("Dockerfile"));
  for (const file of COMPOSE_FILES) {
    for (const [name, service] of Object.entries<Yaml>(compose(file).services)) {
      if (service.image === undefined || service.build !== undefined || name === "mysql") continue;
      const image = interpolate(service.image);
      assert(
        /:[^/]+$/.test(image) && !image.endsWith(":latest"),
        `${file}: ${name} image ${image} is not pinned`,
      );
    }
  }
  const flavour = interpolate(compose().services.mysql.build.args.FLAVOUR);
  assertEquals(
    flavour,
    dockerfile.globalArgs.get("FLAVOUR"),
    "compose.yml and the Dockerfile differ on FLAVOUR",
  );
  for (const file of ["compose.s3.yml", "compose.manta.yml"]) {
    const backend = serviceEnvironment(compose(file).services.mysql).SNAPSHOT_BACKEND;
    assertEquals(backend, file.split(".")[1], `${file} must select its store`);
  }
});

Deno.test("_env.example lists real settings, no secret values, and is accepted once the passwords are set", () => {
  const { active, commented } = envExample();
  for (const [name, value] of [...active, ...commented]) {
    assert(SPEC.has(name), `_env.example: ${name} is not a setting (src/config.ts)`);
    if (SPEC.get(name)!.secret) {
      assertEquals(value, "", `_env.example: ${name} must be left for the user to set`);
    }
  }
  assert(
    active.has("MYSQL_REPL_PASSWORD") || commented.has("MYSQL_REPL_PASSWORD"),
    "_env.example must name the one required setting",
  );
  // As given, the loader asks for the passwords ...
  const given = Object.fromEntries(active);
  const problems = assertThrows(() => load(given), ConfigError).problems.join("\n");
  assert(problems.includes("MYSQL_REPL_PASSWORD"), problems);
  // ... and with them (and every commented example switched on) it is satisfied.
  const filled = Object.fromEntries(
    [...commented, ...active].map(([k, v]) => [k, v === "" && SPEC.get(k)!.secret ? "secret" : v]),
  );
  filled.S3_BUCKET ||= "bucket";
  filled.MANTA_USER ||= "account";
  filled.MANTA_BUCKET ||= "/account/stor/snapshots";
  filled.MANTA_KEY_ID ||= "SHA256:abc";
  for (const [k, v] of Object.entries(filled)) if (v === "") delete filled[k];
  load(filled);
});

// ---- Dockerfile and .dockerignore ----------------------------------------------------------------------

Deno.test("Dockerfile pins every base image", () => {
  const { globalArgs, stages } = parseDockerfile(read("Dockerfile"));
  const names = new Set(stages.map((s) => s.name).filter((n) => n !== undefined));
  const flavours = ["mysql", "mariadb"];
  for (const stage of stages) {
    if (stage.base.includes("${")) {
      // FROM runtime-${FLAVOUR}: every flavour must name a stage above.
      for (const flavour of flavours) {
        const base = stage.base.replace(/\$\{(\w+)\}/g, (_m, n: string) => n === "FLAVOUR" ? flavour : "?");
        assert(names.has(base), `Dockerfile: FROM ${stage.base} with FLAVOUR=${flavour} names no stage`);
      }
      assert(
        flavours.includes(globalArgs.get("FLAVOUR") ?? ""),
        "Dockerfile: FLAVOUR's default is no flavour",
      );
      continue;
    }
    if (names.has(stage.base)) continue;
    const m = /^([^@]+?)(?::([^:@/]+))?(?:@sha256:([0-9a-f]{64}))?$/.exec(stage.base);
    assert(m && m[2] !== undefined, `Dockerfile: FROM ${stage.base} has no version tag`);
    assert(m[2] !== "latest" && /\d/.test(m[2]), `Dockerfile: FROM ${stage.base} is not pinned to a version`);
  }
  // Every flavour MYSQL_FLAVOUR accepts (other than auto) can be built.
  for (const flavour of flavours) {
    assertEquals(load({ ...BASE_ENV, MYSQL_FLAVOUR: flavour }).mysql.flavour, flavour);
    assert(names.has(`runtime-${flavour}`), `Dockerfile: no runtime-${flavour} stage`);
  }
});

Deno.test("Dockerfile copies only files of this repository that .dockerignore lets through", () => {
  const { stages } = parseDockerfile(read("Dockerfile"));
  let copied = 0;
  for (const ins of stages.flatMap((s) => s.instructions)) {
    if (ins.keyword !== "COPY" && ins.keyword !== "ADD") continue;
    const words = ins.args.split(/\s+/);
    if (words.some((w) => w.startsWith("--from="))) continue;
    const sources = words.filter((w) => !w.startsWith("--")).slice(0, -1);
    for (const source of sources) {
      assert(
        !/^[a-z]+:\/\//.test(source),
        `Dockerfile:${ins.line}: downloads ${source}; use RUN with a checksum`,
      );
      assert(exists(source), `Dockerfile:${ins.line}: ${source} is not in the repository`);
      assert(
        !dockerignored(source),
        `Dockerfile:${ins.line}: .dockerignore keeps ${source} out of the context`,
      );
      copied++;
    }
  }
  assert(copied > 0, "Dockerfile copies nothing from the repository");
  for (const secret of ["_env", ".git", "node_modules", "autopilot", "tests/unit/assert.ts"]) {
    assert(dockerignored(secret), `.dockerignore must keep ${secret} out of the build context`);
  }
});

Deno.test("Dockerfile verifies the checksum of everything it downloads by URL", () => {
  const { stages } = parseDockerfile(read("Dockerfile"));
  for (const ins of stages.flatMap((s) => s.instructions)) {
    if (ins.keyword === "ADD" && /\bhttps?:\/\//.test(ins.args)) {
      assert(
        /--checksum=sha256:[0-9a-f]{64}/.test(ins.args),
        `Dockerfile:${ins.line}: ADD of a URL without --checksum`,
      );
    }
    if (ins.keyword !== "RUN") continue;
    for (const m of ins.args.matchAll(/\b(curl|wget)\b/g)) {
      const after = ins.args.slice(m.index);
      assert(
        /\bsha(256|512)sum\b[^;&|]*(-c|--check)\b/.test(after),
        `Dockerfile:${ins.line}: ${m[1]} downloads something whose checksum is not verified afterwards`,
      );
    }
  }
});

Deno.test("Dockerfile compiles autopilot with deno.json's task, so with deno.json's permission flags", () => {
  const { stages } = parseDockerfile(read("Dockerfile"));
  const runs = stages.flatMap((s) => s.instructions).filter((i) => i.keyword === "RUN").map((i) => i.args);
  assert(runs.some((r) => /\bdeno task compile\b/.test(r)), "Dockerfile: no `deno task compile`");
  assert(
    !runs.some((r) => /\bdeno compile\b/.test(r)),
    "Dockerfile: `deno compile` repeats the task's flags",
  );
  const deno = JSON.parse(read("deno.json"));
  assert(
    /^deno compile -P=autopilot /.test(deno.tasks.compile),
    "the compile task must use the autopilot set",
  );
  assert(
    runs.some((r) => /\bdeno install --frozen\b/.test(r)),
    "Dockerfile: npm packages must be deno.lock's",
  );
});

Deno.test("Dockerfile: the image has every program and path deno.json's permission set names", () => {
  const { stages } = parseDockerfile(read("Dockerfile"));
  const permissions = JSON.parse(read("deno.json")).permissions.autopilot;
  const allowedRun = new Set<string>(permissions.run);
  // Each flavour's stage checks, at build time, the programs autopilot may run on it.
  const checked = new Set<string>();
  for (const flavour of ["mysql", "mariadb"]) {
    const stage = stages.find((s) => s.name === `runtime-${flavour}`)!;
    const loop = stage.instructions.map((i) => i.args).join("\n").match(/for program in ([^;]+);/);
    assert(loop, `Dockerfile: runtime-${flavour} does not check its programs`);
    const programs = loop[1].trim().split(/\s+/);
    for (const p of programs) {
      assert(
        allowedRun.has(p),
        `Dockerfile: runtime-${flavour} checks ${p}, which deno.json does not let run`,
      );
      checked.add(p);
    }
    const needed = flavour === "mysql"
      ? ["/usr/sbin/mysqld", "/usr/bin/xtrabackup", "/usr/bin/xbstream"]
      : ["/usr/sbin/mariadbd", "/usr/bin/mariadb-install-db", "/usr/bin/mariabackup", "/usr/bin/mbstream"];
    for (const p of [...needed, "/usr/bin/zstd", "/usr/bin/chown"]) {
      assert(programs.includes(p), `Dockerfile: runtime-${flavour} does not check ${p}`);
    }
  }
  for (const p of allowedRun) assert(checked.has(p), `deno.json lets autopilot run ${p}; no image has it`);
  // The final stage makes the writable paths, and the cnf lives where autopilot may write its temporary file.
  const final = stages[stages.length - 1];
  const env = new Map(final.instructions.filter((i) => i.keyword === "ENV").flatMap((i) => envPairs(i.args)));
  const cnf = env.get("MYSQL_CNF") ?? SPEC.get("MYSQL_CNF")!.default;
  const cnfDir = cnf.slice(0, cnf.lastIndexOf("/"));
  assert(
    (permissions.write as string[]).some((p) => cnfDir === p || cnfDir.startsWith(p + "/")),
    `MYSQL_CNF ${cnf}: autopilot writes it through a temporary file in ${cnfDir}, which deno.json does not let it write`,
  );
  const script = final.instructions.filter((i) => i.keyword === "RUN").map((i) => i.args).join("\n");
  for (const path of ["/var/run/mysqld", "/var/lib/autopilot", "/tmp"]) {
    assert(script.includes(path), `Dockerfile: the image does not make ${path}`);
  }
  assert(script.includes("/var/lib/mysql"), "Dockerfile: the image does not check the datadir's owner");
  for (const name of [...env.keys()]) {
    assert(KNOWN.has(name), `Dockerfile sets ${name}, which neither autopilot nor ContainerPilot reads`);
  }
  const volumes = final.instructions.filter((i) => i.keyword === "VOLUME").map((i) => JSON.parse(i.args))
    .flat();
  for (const name of ["MYSQL_DATADIR", "STATE_DIR"]) {
    const path = env.get(name) ?? SPEC.get(name)!.default;
    const volume = volumes.find((v: string) => path === v || path.startsWith(v + "/"));
    assert(volume, `Dockerfile: ${name} (${path}) must be on a volume`);
    assert(
      (permissions.write as string[]).some((p) => path === p || path.startsWith(p + "/")),
      `Dockerfile: ${name} (${path}) is outside deno.json's write permissions`,
    );
  }
});

Deno.test("Dockerfile starts ContainerPilot with the shipped containerpilot.json5 and a health check that asks autopilot", () => {
  const { stages } = parseDockerfile(read("Dockerfile"));
  const final = stages[stages.length - 1];
  const find = (k: string) => final.instructions.filter((i) => i.keyword === k);
  const env = new Map(find("ENV").flatMap((i) => envPairs(i.args)));
  const copied = find("COPY").map((i) => i.args.split(/\s+/)).find((w) => w[0] === "containerpilot.json5");
  assert(copied, "Dockerfile: containerpilot.json5 is not in the image");
  assertEquals(env.get("CONTAINERPILOT"), copied[1], "CONTAINERPILOT must name the copied configuration");
  assertEquals(JSON.parse(find("ENTRYPOINT")[0].args), ["/usr/local/bin/autopilot-entrypoint"]);
  const entrypoint = find("COPY").map((i) => i.args.split(/\s+/)).find((w) =>
    w[1] === "/usr/local/bin/autopilot-entrypoint"
  );
  assertEquals(entrypoint?.[0], "image/entrypoint.sh", "the entrypoint is the script in image/");
  // It hands the cgroup limit to autopilot under the name src/node.ts reads, then becomes ContainerPilot.
  const script = read("image/entrypoint.sh");
  assert(
    script.includes(`export ${ENTRYPOINT_LIMIT_VARIABLE}`),
    `entrypoint must export ${ENTRYPOINT_LIMIT_VARIABLE}`,
  );
  for (const file of ["/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"]) {
    assert(script.includes(file), `entrypoint must read ${file}`);
  }
  assert(
    /^exec \/usr\/local\/bin\/containerpilot "\$@"$/m.test(script),
    "entrypoint must exec ContainerPilot",
  );
  // A wrong setting ends the container at once (exit 2, one line per problem) rather than leaving it idle.
  assert(
    /^\/usr\/local\/bin\/autopilot config >\/dev\/null \|\| exit \$\?$/m.test(script),
    "entrypoint must check the configuration first",
  );
  assert(
    /CONSUL_HTTP_SSL_VERIFY=\$\{CONSUL_HTTP_SSL_VERIFY:-true\}/.test(script) &&
      script.includes("export CONSUL_HTTP_SSL_VERIFY"),
    "entrypoint must turn ContainerPilot's check of Consul's certificate on (its fork skips it otherwise)",
  );
  assert(
    Deno.statSync(`${ROOT}/image/entrypoint.sh`).mode! & 0o100,
    "image/entrypoint.sh must be executable",
  );
  assertEquals(
    JSON.parse(find("CMD")[0]?.args ?? "null"),
    [],
    "the base image's CMD must not reach ContainerPilot",
  );
  const autopilotDest = find("COPY").map((i) => i.args.split(/\s+/)).find((w) => w[1] === "/src/autopilot");
  assertEquals(
    autopilotDest?.[2],
    "/usr/local/bin/autopilot",
    "autopilot must be on PATH for ContainerPilot's jobs",
  );
  const health = find("HEALTHCHECK");
  assertEquals(health.length, 1, "Dockerfile: one HEALTHCHECK");
  const cmd = /\bCMD\s+(\[.*\])\s*$/.exec(health[0].args);
  assert(cmd, "HEALTHCHECK must use the exec form");
  const argv: string[] = JSON.parse(cmd[1]);
  checkAutopilotCommand(argv, "Dockerfile HEALTHCHECK");
  assert(
    !(argv[1] === "health" && argv.length === 2),
    "HEALTHCHECK must not run `autopilot health`: it acts",
  );
});

Deno.test("containerpilot.json5 declares exactly the metrics autopilot sends, with their types and help", () => {
  const declared = containerpilot().telemetry.metrics.map((
    m: { namespace: string; subsystem: string; name: string; type: string; help: string },
  ) => [`${m.namespace}_${m.subsystem}_${m.name}`, m.type, m.help]);
  assertEquals(declared, METRICS.map((m) => [`autopilot_mysql_${m.name}`, m.type, m.help]));
});

Deno.test("the README documents every metric by its full name and type", () => {
  const readme = read("README.md");
  for (const m of METRICS) {
    const row = new RegExp(`\\|\\s*\`autopilot_mysql_${m.name}\`\\s*\\|\\s*${m.type}\\s*\\|`);
    assert(row.test(readme), `README lacks the row of autopilot_mysql_${m.name} (${m.type})`);
  }
});

Deno.test("the image's binary, `deno task autopilot` and every test run autopilot with the same flags", () => {
  const deno = JSON.parse(read("deno.json"));
  const compile = String(deno.tasks.compile).split(/\s+/);
  assertEquals(compile.slice(0, 2), ["deno", "compile"]);
  const baked = compile.slice(2).filter((w, i, all) => w !== "--output" && all[i - 1] !== "--output")
    .filter((w) => w !== "mod.ts");
  const run = autopilotRunFlags(read("deno.json"));
  assertEquals(run, baked, "deno.json: the autopilot and compile tasks' flags differ");
  assert(run.includes("-P=autopilot"), run.join(" "));
  assert(run.some((f) => f.startsWith("--v8-flags=")), "the V8 flags are part of both tasks");
  // Nothing runs the program with flags of its own: they come from autopilotRunFlags().
  const spelled: string[] = [];
  for (const dir of ["tests", "scripts", "bench"]) {
    for (const path of walkTs(`${ROOT}/${dir}`)) {
      const text = Deno.readTextFileSync(path);
      const code = text.replace(/^\s*(\*|\/\/).*$/gm, "");
      if (
        /["']run["']\s*,\s*["']-P=autopilot["']/.test(code) ||
        /\brun (-q )?-P=autopilot (\$\{|mod\.ts)/.test(code)
      ) {
        spelled.push(path.slice(ROOT.length + 1));
      }
    }
  }
  assertEquals(spelled, [], "these run autopilot with flags of their own; use autopilotRunFlags()");
});

function* walkTs(dir: string): Generator<string> {
  for (const e of Deno.readDirSync(dir)) {
    const path = `${dir}/${e.name}`;
    if (e.isDirectory) yield* walkTs(path);
    else if (e.name.endsWith(".ts")) yield path;
  }
}

Deno.test("autopilot registers the SERVICE_NAME job's service as containerpilot.json5 makes ContainerPilot do", () => {
  // src/services.ts containerPilotRegistration(): the id, name, port, TTL, and no tags, meta, initial status
  // or consul extras (the fork would send them, and the copy would differ).
  // deno-lint-ignore no-explicit-any
  const job = containerpilot({ SERVICE_NAME: "shop", MYSQL_PORT: "3307" }).jobs.find((j: any) =>
    j.name === "shop"
  );
  assertEquals(job.health.ttl, CONTAINERPILOT_SERVICE_TTL_SECONDS);
  assertEquals(job.port, 3307);
  for (const key of ["tags", "meta", "initial_status", "consul"]) {
    assertEquals(job[key], undefined, `the ${key} of job shop are not copied by autopilot's registration`);
  }
});

Deno.test("containerpilot.json5 gives ContainerPilot BINLOG_ARCHIVE_INTERVAL as a duration, whatever form autopilot accepts", () => {
  const interval = (v: string) =>
    containerpilot({ BINLOG_ARCHIVE_INTERVAL: v }).jobs.find((j: { name: string }) =>
      j.name === "binlog-archive"
    ).when
      .interval;
  assertEquals(interval("90"), "90s");
  assertEquals(interval(" 45 "), "45s");
  assertEquals(interval("2m"), "2m");
  assertEquals(interval("1h30m"), "1h30m");
  // A Go duration has no d: autopilot refuses it for this variable (the template would pass it on as it is).
  for (const v of ["1d", "0.5d", "1D"]) {
    const e = assertThrows(() => load({ ...BASE_ENV, BINLOG_ARCHIVE_INTERVAL: v }), ConfigError);
    assert(e.message.includes("BINLOG_ARCHIVE_INTERVAL") && e.message.includes("no d"), e.message);
  }
  // What it accepts, the template turns into what Go's time.ParseDuration reads.
  for (const v of ["90", "24h", "1h30m", "0.5h", "1500ms"]) {
    load({ ...BASE_ENV, BINLOG_ARCHIVE_INTERVAL: v });
    assert(/^(\d+(\.\d+)?(ns|us|ms|s|m|h))+$/.test(interval(v)), `${v} -> ${interval(v)}`);
  }
});

const canRunSh = (await Deno.permissions.query({ name: "run", command: "sh" })).state === "granted" &&
  (await Deno.permissions.query({ name: "write" })).state === "granted";

/**
 * Runs image/entrypoint.sh with stand-ins for autopilot (exits 0) and ContainerPilot (prints the Consul token
 * variables it was given) and returns what the stand-in printed, or the script's stderr when it failed.
 */
async function runEntrypoint(env: Record<string, string>, files: Record<string, string>) {
  const dir = await Deno.makeTempDir({ prefix: "entrypoint-test-" });
  try {
    for (const [name, text] of Object.entries(files)) await Deno.writeTextFile(`${dir}/${name}`, text);
    await Deno.writeTextFile(`${dir}/autopilot`, "#!/bin/sh\nexit 0\n", { mode: 0o755 });
    await Deno.writeTextFile(
      `${dir}/containerpilot`,
      `#!/bin/sh\nprintf 'token=[%s] file=%s' "\${CONSUL_HTTP_TOKEN-unset}" "\${CONSUL_HTTP_TOKEN_FILE-unset}"\n`,
      { mode: 0o755 },
    );
    const script = read("image/entrypoint.sh").replaceAll("/usr/local/bin/", `${dir}/`);
    assert(!script.includes("/usr/local/bin"), "every program the entrypoint starts is replaced");
    const out = await new Deno.Command("sh", {
      args: ["-c", script, "entrypoint"],
      env: Object.fromEntries(Object.entries(env).map(([k, v]) => [k, v.replaceAll("$DIR", dir)])),
      clearEnv: true,
      stdout: "piped",
      stderr: "piped",
    }).output();
    const text = new TextDecoder().decode(out.success ? out.stdout : out.stderr);
    return { success: out.success, text: text.replaceAll(dir, "$DIR") };
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test({
  name: "the entrypoint hands ContainerPilot the token CONSUL_HTTP_TOKEN_FILE names, and unsets the twin",
  ignore: !canRunSh,
  async fn() {
    const PATH = "/usr/bin:/bin";
    // The file less one trailing newline, as autopilot reads it (src/config.ts readSecretFile).
    for (
      const [content, token] of [
        ["s3cr3t-token\n", "s3cr3t-token"],
        ["s3cr3t-token\r\n", "s3cr3t-token"],
        ["s3cr3t-token", "s3cr3t-token"],
        ["two\n\n", "two\n"],
      ]
    ) {
      assertEquals(
        await runEntrypoint({ PATH, CONSUL_HTTP_TOKEN_FILE: "$DIR/token" }, { token: content }),
        { success: true, text: `token=[${token}] file=unset` },
        JSON.stringify(content),
      );
    }
    // Without the twin, or with the token itself set, nothing changes.
    assertEquals(
      await runEntrypoint({ PATH, CONSUL_HTTP_TOKEN: "direct" }, {}),
      { success: true, text: "token=[direct] file=unset" },
    );
    assertEquals(await runEntrypoint({ PATH }, {}), { success: true, text: "token=[unset] file=unset" });
    // A file the shell cannot read (autopilot config, which checks it first, is a stand-in here): one line.
    const missing = await runEntrypoint({ PATH, CONSUL_HTTP_TOKEN_FILE: "$DIR/missing" }, {});
    assertEquals(missing.success, false, "ContainerPilot is not started");
    assertEquals(
      missing.text.trimEnd().split("\n").at(-1),
      "autopilot-entrypoint: CONSUL_HTTP_TOKEN_FILE=$DIR/missing cannot be read",
    );
  },
});
