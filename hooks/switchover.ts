/**
 * `autopilot switchover [--to NODE] [--timeout SECONDS]`: planned move of the primary role, run on the current
 * primary (the steps are src/ha/switchover.ts).
 *
 * @module
 */
import { getLogger } from "@logtape/logtape";
import { ConsulClusterKv } from "../src/cluster_kv.ts";
import { ConsulStore } from "../src/consul.ts";
import { switchover, switchoverLine } from "../src/ha/switchover.ts";
import { leaseMsFor } from "../src/mysql/lease.ts";
import { flavourOf } from "../src/local.ts";
import { openLocalServer, openPeerServer } from "../src/mysql/server.ts";
import { readState } from "../src/state.ts";
import { withdrawPrimary } from "../src/services.ts";
import { type CommandContext, EXIT } from "../src/command.ts";
import { print, printError } from "../src/output.ts";
import { nodeAddress } from "../src/node.ts";

const log = getLogger(["autopilot", "switchover"]);

/** `autopilot switchover [--to NODE] [--timeout SECONDS]`. */
export async function runSwitchover(ctx: CommandContext): Promise<number> {
  const config = ctx.config;
  const state = await readState(config.node.stateDir);
  const timeoutMs = Number(ctx.flags.timeout ?? 30) * 1000;
  if (!Number.isFinite(timeoutMs) || timeoutMs <= 0) {
    printError(
      `autopilot switchover: --timeout must be a number of seconds: current value is '${ctx.flags.timeout}'`,
    );
    return EXIT.usage;
  }
  const consul = new ConsulStore(config.consul);
  try {
    const kv = new ConsulClusterKv(config, consul);
    const lock = await kv.primary();
    if (lock.session === undefined || lock.session !== state.sessionId) {
      log.error(
        "This node ({node}) does not hold the primary lock (the primary is {primary}): run it there",
        { node: config.node.name, primary: lock.session ? lock.record?.node ?? "unknown" : "nobody" },
      );
      return EXIT.failed;
    }
    await using server = await openLocalServer(config, flavourOf(config, state));
    const address = nodeAddress(config, ctx.env, Deno.networkInterfaces()) ?? lock.record?.address ?? "";
    const done = await switchover({
      kv,
      server,
      openPeer: (target) => openPeerServer(config, target),
      me: { self: { node: config.node.name, address, port: config.mysql.port }, session: lock.session },
      withdraw: () => withdrawPrimary(config, consul, config.node.name),
      ...(typeof ctx.flags.to === "string" ? { to: ctx.flags.to } : {}),
      timeoutMs,
      leaseMs: leaseMsFor(config.session.ttlSeconds),
    });
    if (done === undefined) return EXIT.failed;
    print(switchoverLine(config.node.name, done));
    return EXIT.ok;
  } finally {
    consul.close();
  }
}
