/**
 * `autopilot status [--json]`: the cluster as a table (or JSON for scripts), from any node or from any machine
 * that reaches Consul and the nodes. Exit 0 only when the cluster is healthy; 1 otherwise, with the reasons in
 * one line on stderr; 2 for bad usage or when Consul cannot be reached.
 *
 * The gathering and the verdict live in `src/status.ts`.
 *
 * @module
 */
import { type CommandContext, EXIT } from "../command.ts";
import { print, printError } from "../output.ts";
import { ConsulAclError, ConsulRequestError, ConsulUnavailableError } from "../consul.ts";
import { describePreStartFailure } from "../pre_start_retry.ts";
import { readPreStartFailure } from "../state.ts";
import {
  gatherStatus,
  renderStatusTable,
  type StatusFacts,
  type StatusReport,
  summariseStatus,
} from "../status.ts";

/** `autopilot status [--json] [--self]`. */
export async function runStatus(ctx: CommandContext): Promise<number> {
  if (ctx.positionals.length > 0) {
    printError(
      `autopilot status: unexpected argument '${
        ctx.positionals[0]
      }': usage: autopilot status [--json] [--self]`,
    );
    return EXIT.usage;
  }
  let facts: StatusFacts;
  try {
    facts = await gatherStatus(ctx.config);
  } catch (e) {
    if (e instanceof ConsulUnavailableError || e instanceof ConsulRequestError) {
      // --self on a node whose pre-start retries: that is the reason to give (it may be this very one)
      const preStart = ctx.flags.self ? await readPreStartFailure(ctx.config.node.stateDir) : undefined;
      if (preStart?.node === ctx.config.node.name) {
        printError(`autopilot status: unhealthy: ${describePreStartFailure(preStart, Date.now())}`);
        return EXIT.failed;
      }
      printError(
        e instanceof ConsulAclError
          ? `autopilot status: ${e.message}`
          : `autopilot status: ${e.message} (CONSUL=${ctx.config.consul.url}): check that the agent runs there`,
      );
      // Docker reserves a health check's exit 2: for --self, "cannot tell" is "unhealthy".
      return ctx.flags.self ? EXIT.failed : EXIT.usage;
    }
    throw e;
  }
  const report = summariseStatus(facts);
  if (ctx.flags.self) return selfStatus(report, ctx.config.node.name, Boolean(ctx.flags.json));
  print(ctx.flags.json ? JSON.stringify(report, null, 2) : renderStatusTable(report));
  if (!report.healthy) {
    printError(`autopilot status: unhealthy: ${report.problems.join("; ").replace(/\s*\n\s*/g, " ")}`);
    return EXIT.failed;
  }
  return EXIT.ok;
}

/**
 * `--self`: this node's row only; healthy when it has no problems of its own. The lock holder's own problems
 * (unreachable, read-only, promotion unfinished) are cluster-wide ones in the report: they count here too.
 */
function selfStatus(report: StatusReport, name: string, json: boolean): number {
  const row = report.nodes.find((n) => n.node === name);
  if (row === undefined) {
    // A node whose pre-start keeps failing never started mysqld, so Consul does not know it: say why.
    printError(
      `autopilot status: unhealthy: ${
        report.preStart?.node === name
          ? describePreStartFailure(report.preStart, Date.parse(report.generatedAt))
          : `${name} is not known to Consul yet (no member record)`
      }`,
    );
    return EXIT.failed;
  }
  const problems = [...row.problems];
  if (row.role === "primary") {
    if (!row.reachable) problems.push(`${name}: unreachable: ${row.error ?? "no answer"}`);
    else if (row.readOnly !== false) problems.push(`${name}: holds the primary lock but is read-only`);
    else if (report.primary?.ready !== true) problems.push(`${name}: its promotion has not finished`);
  }
  print(
    json ? JSON.stringify(row, null, 2) : `${row.node}: ${row.role}${problems.length ? "" : ", healthy"}`,
  );
  if (problems.length > 0) {
    printError(`autopilot status: unhealthy: ${problems.join("; ").replace(/\s*\n\s*/g, " ")}`);
    return EXIT.failed;
  }
  return EXIT.ok;
}
