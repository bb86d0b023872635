/**
 * `autopilot pre-stop`: ContainerPilot runs it when the `mysql` job is stopping, before mysqld gets SIGTERM.
 *
 * On a replica there is nothing to do. On the primary:
 * 1. With BACKUP_ON_STOP, take a last snapshot while the server still has every write (so a cluster that is
 *    stopped entirely comes back from its latest state).
 * 2. Hand the primary role to the best replica, as `autopilot switchover` does: no transaction lost, writes
 *    blocked only while it catches up. Without this, the cluster would wait for this node's Consul session to
 *    expire before failing over. With no replica to hand over to, the node stays primary until it stops: its
 *    session then expires and it resumes the role when it comes back.
 *
 * Failures are logged and the exit code says so, but nothing here stops the container from stopping.
 *
 * @module
 */
import { getLogger } from "@logtape/logtape";
import { ConsulStore, ConsulUnavailableError } from "../src/consul.ts";
import { primaryLockFrom } from "../src/ha.ts";
import { connectLocal, flavourOf } from "../src/local.ts";
import { otherLiveReplicas } from "../src/members.ts";
import { MysqlUnavailableError } from "../src/mysql/client.ts";
import { sqlFor } from "../src/mysql/flavour.ts";
import { readState } from "../src/state.ts";
import type { Command } from "../src/cli/commands.ts";
import { EXIT } from "../src/cli/exit.ts";
import { runSnapshot } from "./snapshot.ts";
import { switchover } from "./switchover.ts";

const log = getLogger(["autopilot", "pre-stop"]);

/** How long the stopping primary waits for a replica to catch up before it gives up handing over. */
const HANDOVER_TIMEOUT_MS = 20_000;

/** The `pre-stop` command. */
export const preStopCommand: Command = {
  name: "pre-stop",
  summary: "the container is stopping: on the primary, take a last snapshot if configured, then hand over",
  details:
    "On the primary: with BACKUP_ON_STOP=true, a last snapshot first; then the primary role moves to the\n" +
    "replica that has the most, as 'autopilot switchover' does (writes blocked until it has caught up, at\n" +
    `most ${
      HANDOVER_TIMEOUT_MS / 1000
    } s). On a replica: nothing. Exit 1 if a step failed; the stop goes on.`,
  options: {},
  async run({ config }): Promise<number> {
    const state = await readState(config.node.stateDir);
    const flavour = flavourOf(config, state);
    const consul = new ConsulStore(config.consul);
    try {
      const lock = primaryLockFrom(await consul.get(config.keys.primary));
      if (lock.session === undefined || lock.session !== state.sessionId) {
        log.info("Stopping a node that is not the primary: nothing to hand over");
        return EXIT.ok;
      }
      let code: number = EXIT.ok;
      if (config.backup.onStop) {
        log.info("BACKUP_ON_STOP: taking a last snapshot before stopping");
        code = await runSnapshot(config, { force: true });
      }
      const replicas = await otherLiveReplicas(config, consul);
      if (replicas.length === 0) {
        log.info("Stopping the primary with no live replica: it keeps the role until its session expires");
        return code;
      }
      await using db = await connectLocal(config, flavour);
      log.info("Stopping the primary: handing the role over to a replica");
      const handed = await switchover(config, consul, db, sqlFor(flavour), flavour, lock.session, {
        timeoutMs: HANDOVER_TIMEOUT_MS,
      });
      return handed === EXIT.ok ? code : EXIT.failed;
    } catch (e) {
      if (e instanceof ConsulUnavailableError || e instanceof MysqlUnavailableError) {
        log.error("Cannot hand over before stopping: {e}", { e: e.message });
        return EXIT.failed;
      }
      throw e;
    } finally {
      consul.close();
    }
  },
};
