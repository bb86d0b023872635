/**
 * The error boundary around each command (src/command_boundary.ts), on fake commands: no server is needed.
 */
import { assert, assertEquals } from "./assert.ts";
import { describeError, runCommand } from "../../src/command_boundary.ts";
import type { Command, CommandContext, MetricValues } from "../../src/command.ts";
import { EXIT } from "../../src/command.ts";
import { COMMANDS } from "../../commands.ts";
import { loadConfig } from "../../src/config.ts";
import type { LogLevel } from "../../src/config.ts";
import { setupLogging } from "../../src/log.ts";

const VARS: Record<string, string> = { MYSQL_REPL_PASSWORD: "replpw", NODE_NAME: "n1" };
const config = loadConfig((n) => VARS[n], { hostname: () => "h" });

function context(flags: CommandContext["flags"] = {}, positionals: string[] = []): CommandContext {
  return { config, env: (n) => VARS[n], flags, positionals };
}

function fake(run: () => Promise<number>, failureMetrics?: Command["failureMetrics"]): Command {
  return {
    name: "health",
    summary: "a fake command",
    options: {},
    ...(failureMetrics ? { failureMetrics } : {}),
    run,
  };
}

/** Runs `command` through the boundary with logging captured at `level`: the exit code, lines, metrics. */
async function guarded(command: Command, level: LogLevel = "info", ctx = context()) {
  const lines: string[] = [];
  const sent: MetricValues[] = [];
  setupLogging(level, "text", (line) => lines.push(line));
  const code = await runCommand(command, ctx, (values) => {
    sent.push(values);
    return Promise.resolve();
  });
  setupLogging("info", "text", () => {}); // nothing of a later test reaches this one's lines
  return { code, lines, sent };
}

const HEALTH_FAILED = { health_checks_total: 1, health_check_failures_total: 1, healthy: 0 };

Deno.test("a command that throws: one ERROR line naming the command and the error, its failure metric, exit 1", async () => {
  const r = await guarded(
    fake(
      () => Promise.reject(new TypeError("Cannot read properties of undefined (reading 'gtid')")),
      () => HEALTH_FAILED,
    ),
  );
  assertEquals(r.code, EXIT.failed);
  assertEquals(r.sent, [HEALTH_FAILED]);
  assertEquals(r.lines.length, 1, r.lines.join(""));
  const [line] = r.lines;
  assert(line.endsWith("\n") && !line.slice(0, -1).includes("\n"), `one line: ${line}`);
  assert(line.includes("[ERR] autopilot·health:"), line);
  assert(
    line.includes(
      "autopilot health stopped on an error: TypeError: Cannot read properties of undefined (reading 'gtid') " +
        "(exit 1; counted in autopilot_mysql_health_checks_total, autopilot_mysql_health_check_failures_total)",
    ),
    line,
  );
  assert(!/\bat .*command_boundary/.test(line), `no stack trace: ${line}`);
});

Deno.test("with LOG_LEVEL=DEBUG the stack follows, at DEBUG, after the same one ERROR line", async () => {
  const r = await guarded(fake(() => Promise.reject(new Error("boom"))), "debug");
  assertEquals(r.code, EXIT.failed);
  assertEquals(r.lines.length, 2, r.lines.join(""));
  assert(
    r.lines[0].includes("[ERR]") &&
      r.lines[0].includes("autopilot health stopped on an error: boom (exit 1)"),
  );
  assert(r.lines[1].includes("[DBG]") && r.lines[1].includes("Where it was thrown: Error: boom"), r.lines[1]);
  assert(/\bat runCommand \(/.test(r.lines[1]), `the stack: ${r.lines[1]}`);
});

Deno.test("a command with no failure metric sends none; a thrown non-Error is reported as text", async () => {
  const r = await guarded(fake(() => Promise.reject("the socket went away")));
  assertEquals([r.code, r.sent], [EXIT.failed, []]);
  assertEquals(r.lines.length, 1);
  assert(r.lines[0].includes("autopilot health stopped on an error: the socket went away (exit 1)"));
});

Deno.test("an exception thrown before the command's first await is caught too", async () => {
  const r = await guarded(fake(() => {
    throw new RangeError("bad value");
  }, () => HEALTH_FAILED));
  assertEquals([r.code, r.sent.length, r.lines.length], [EXIT.failed, 1, 1]);
  assert(r.lines[0].includes("RangeError: bad value"));
});

Deno.test("what a command returns passes through: no line, no metric", async () => {
  for (const code of [EXIT.ok, EXIT.failed, EXIT.usage]) {
    const r = await guarded(fake(() => Promise.resolve(code), () => HEALTH_FAILED));
    assertEquals([r.code, r.lines, r.sent], [code, [], []]);
  }
});

Deno.test("describeError() folds a message over several lines into one", () => {
  assertEquals(describeError(new Error("first\n  second\nthird ")), "first second third");
  assertEquals(describeError(new SyntaxError("")), "SyntaxError");
  assertEquals(describeError(Object.assign(new Error(""), { name: "Error" })), "Error");
  assertEquals(describeError(42), "42");
});

Deno.test("the command table names each command's failure metric (none where it has none)", () => {
  const metrics = (name: string, ctx = context()) =>
    COMMANDS.find((c) => c.name === name)!.failureMetrics?.(ctx);
  assertEquals(metrics("health"), HEALTH_FAILED);
  assertEquals(metrics("health", context({ primary: true })), {});
  assertEquals(metrics("on-change"), HEALTH_FAILED);
  assertEquals(metrics("snapshot"), { backup_failures_total: 1 });
  assertEquals(metrics("backup", context({}, ["now"])), { backup_failures_total: 1 });
  assertEquals(metrics("backup", context({}, ["list"])), {});
  for (const name of ["pre-start", "pre-stop", "switchover", "status", "restore", "config"]) {
    assertEquals(metrics(name), undefined, name);
  }
});

const mayRunMain = (await Deno.permissions.query({ name: "sys", kind: "hostname" })).state === "granted";

Deno.test({
  name: "mod.ts runs each command inside the boundary: a command that throws exits 1, main() does not reject",
  ignore: !mayRunMain,
  async fn() {
    const { main } = await import("../../mod.ts");
    let ran = 0;
    const boom: Command = {
      name: "boom",
      summary: "throws",
      options: {},
      run: () => {
        ran++;
        return Promise.reject(new Error("boom"));
      },
    };
    const env = (n: string) => ({ ...VARS, LOG_LEVEL: "CRITICAL" })[n]; // the ERROR line is not written here
    assertEquals(await main(["boom"], { commands: [boom], env }), EXIT.failed);
    assertEquals(ran, 1);
  },
});
