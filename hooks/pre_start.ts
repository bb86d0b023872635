/**
 * `autopilot pre-start`: runs once before mysqld starts (ContainerPilot's preStart job).
 *
 * It writes my.cnf from the environment, then settles the datadir:
 * 1. a datadir that already holds a database (a `mysql` subdirectory) is left untouched;
 * 2. otherwise, if Consul names a last snapshot, it is downloaded, verified and restored, and its GTID position
 *    is kept for the health hook to start replication from;
 * 3. otherwise an empty datadir is initialised.
 * Any failure exits non-zero with one line, and leaves no half-made datadir behind.
 *
 * @module
 */
import { getLogger } from "@logtape/logtape";
import type { Config } from "../src/config.ts";
import { ConsulStore, ConsulUnavailableError } from "../src/consul.ts";
import { CorruptSnapshotError } from "../src/backup/errors.ts";
import { restoreSnapshot } from "../src/backup/restore.ts";
import { CommandFailedError, run } from "../src/exec.ts";
import { mysqlInitFile } from "../src/mysql/bootstrap.ts";
import { type Flavour, flavourFromBinaryVersion } from "../src/mysql/flavour.ts";
import { type BufferPoolChoice, nodeAddress } from "../src/node.ts";
import { chooseBufferPoolLogged, writeServerConfig } from "../src/local.ts";
import { newServerId, writeServerId } from "../src/server_id.ts";
import { publishedSnapshot } from "../src/snapshots.ts";
import { readState, writeFileAtomic, writeState } from "../src/state.ts";
import { openStore, StoreUnavailableError } from "../src/storage/open.ts";
import type { Command, CommandContext } from "../src/cli/commands.ts";
import { EXIT } from "../src/cli/exit.ts";

const log = getLogger(["autopilot", "pre-start"]);

/** The `pre-start` command. */
export const preStartCommand: Command = {
  name: "pre-start",
  summary:
    "before mysqld starts: write my.cnf, then keep, restore (from the last snapshot) or create the datadir",
  options: {},
  async run(ctx: CommandContext): Promise<number> {
    const { config, env } = ctx;
    const flavour = await detectFlavour(config);
    if (flavour === undefined) {
      log.error(
        "No MySQL or MariaDB server is installed (neither mariadbd nor mysqld runs): cannot continue",
      );
      return EXIT.failed;
    }
    const address = nodeAddress(config, ctx.env, Deno.networkInterfaces());
    if (address === undefined) {
      log.error(
        "Cannot tell this node's address (no NODE_ADDRESS, no CONTAINERPILOT_MYSQL_IP, no IPv4 interface)",
      );
      return EXIT.failed;
    }
    const pool = chooseBufferPoolLogged(config, log, env);
    await writeServerConfig(config, flavour, address, pool);
    await Deno.mkdir(config.node.stateDir, { recursive: true, mode: 0o700 });
    const state = await readState(config.node.stateDir);
    await writeState(config.node.stateDir, { ...state, flavour });
    log.info("Wrote {cnf} for {flavour} (report_host {address})", {
      cnf: config.mysql.cnfPath,
      flavour,
      address,
    });

    const datadir = config.mysql.datadir;
    if (await exists(`${datadir}/mysql`)) {
      log.info("{datadir} already holds a database: left untouched", { datadir });
      return EXIT.ok;
    }
    if (!(await isEmptyOrMissing(datadir))) {
      log.error(
        "{datadir} is not empty but holds no database (no mysql/ subdirectory): empty it or set MYSQL_DATADIR elsewhere",
        { datadir },
      );
      return EXIT.failed;
    }
    try {
      return await restoreOrInitialise(config, flavour, datadir, address, pool);
    } catch (e) {
      if (
        e instanceof ConsulUnavailableError || e instanceof CorruptSnapshotError ||
        e instanceof CommandFailedError ||
        e instanceof StoreUnavailableError || (e instanceof Error && e.name === "RestoreError")
      ) {
        log.error("{message}", { message: e.message });
        return EXIT.failed;
      }
      throw e;
    }
  },
};

async function restoreOrInitialise(
  config: Config,
  flavour: Flavour,
  datadir: string,
  address: string,
  pool: BufferPoolChoice,
): Promise<number> {
  const consul = new ConsulStore(config.consul);
  let manifest;
  try {
    manifest = await publishedSnapshot(config, consul);
  } catch (e) {
    if (e instanceof ConsulUnavailableError) {
      throw new ConsulUnavailableError(
        "pre-start",
        `${e.message.replace(/^Cannot reach Consul \([^)]*\): /, "")} ` +
          `(at ${config.consul.url}); cannot tell whether a snapshot exists, so nothing was changed`,
      );
    }
    throw e;
  } finally {
    consul.close();
  }
  if (manifest !== undefined) {
    log.info("Restoring snapshot {name} (GTID {gtid}) into {datadir}", {
      name: manifest.name,
      gtid: manifest.gtid,
      datadir,
    });
    const store = await openStore(config);
    const t0 = performance.now();
    const restored = await restoreSnapshot({
      store,
      manifest,
      datadir,
      flavour,
      chownTo: config.mysql.osUser,
    });
    const serverId = await writeServerConfig(config, flavour, address, pool);
    log.info("Restored {name} in {ms} ms as server_id {serverId}; replication will start after {gtid}", {
      serverId,
      name: manifest.name,
      ms: Math.round(performance.now() - t0),
      gtid: restored.gtid,
    });
    return EXIT.ok;
  }
  log.info("No snapshot published: initialising an empty datadir in {datadir}", { datadir });
  await initialise(config, flavour, datadir);
  // A new datadir gets a new server id too: a node replacing one of the same name must not take its id.
  await writeServerId(datadir, newServerId());
  await writeServerConfig(config, flavour, address, pool);
  return EXIT.ok;
}

async function initialise(config: Config, flavour: Flavour, datadir: string): Promise<void> {
  const existed = await exists(datadir);
  const cnf = `--defaults-file=${config.mysql.cnfPath}`;
  try {
    if (flavour === "mariadb") {
      await run(["mariadb-install-db", cnf, "--auth-root-authentication-method=socket", "--skip-test-db"]);
    } else {
      // mysqld reads the init file after dropping to MYSQL_OS_USER: a private directory that user owns.
      const dir = await Deno.makeTempDir({ dir: config.mysql.tmpdir, prefix: "autopilot-init-" });
      try {
        const initFile = `${dir}/init.sql`;
        await writeFileAtomic(initFile, mysqlInitFile("root"), 0o600);
        await run(["chown", "-R", `${config.mysql.osUser}:`, dir]);
        await run(["mysqld", cnf, "--initialize-insecure", `--init-file=${initFile}`]);
      } finally {
        await Deno.remove(dir, { recursive: true }).catch(() => {});
      }
    }
  } catch (e) {
    // Leave the datadir as it was: absent, or empty.
    if (existed) {
      for await (const entry of Deno.readDir(datadir)) {
        await Deno.remove(`${datadir}/${entry.name}`, { recursive: true });
      }
    } else {
      await Deno.remove(datadir, { recursive: true }).catch(() => {});
    }
    throw e;
  }
}

async function detectFlavour(config: Config): Promise<Flavour | undefined> {
  if (config.mysql.flavour !== "auto") return config.mysql.flavour;
  for (const program of ["mariadbd", "mysqld"]) {
    try {
      const { stdout } = await run([program, "--version"]);
      const flavour = flavourFromBinaryVersion(stdout);
      if (flavour) return flavour;
    } catch (e) {
      if (!(e instanceof CommandFailedError)) throw e;
    }
  }
  return undefined;
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return false;
    throw e;
  }
}

async function isEmptyOrMissing(dir: string): Promise<boolean> {
  try {
    for await (const _ of Deno.readDir(dir)) return false;
    return true;
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return true;
    throw e;
  }
}
