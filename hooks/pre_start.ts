/**
 * `autopilot pre-start`: runs once before mysqld starts (ContainerPilot's preStart job).
 *
 * It writes my.cnf from the environment, then settles the datadir:
 * 1. a datadir that already holds a database (a `mysql` subdirectory) is left untouched;
 * 2. otherwise, if Consul names a last snapshot, it is downloaded, verified and restored, and its GTID position
 *    is kept for the health hook to start replication from;
 * 3. otherwise an empty datadir is initialised.
 *
 * An attempt that fails logs one line (its number, why, when the next one starts), records that failure in
 * `STATE_DIR/pre-start-failure.json` for `autopilot status`, and leaves the datadir as it was: a restore builds
 * it in a staging directory and moves it into place only when it is complete, a failed bootstrap is cleaned.
 * Then pre-start tries again, 2 s later, doubling to at most 60 s (src/pre_start_retry.ts), until an attempt
 * succeeds: ContainerPilot starts mysqld only after pre-start succeeds and never runs it again, so giving up
 * would leave the container idle for ever. `--once` makes one attempt and exits 1 if it fails.
 *
 * SIGTERM or SIGINT ends it at once between attempts, and during one as soon as what is under way is undone
 * (child programs are killed, the staging directory removed or the bootstrap cleaned): it exits 1 with the
 * datadir as it was. (A request to Consul under way is not cut short: it ends within CONSUL_TIMEOUT.)
 *
 * Invalid configuration is not retried: mod.ts refuses it (exit 2, one line per problem) before this runs, since
 * the environment cannot change without a new container; ContainerPilot's snapshot job and `autopilot status`
 * keep printing the same lines.
 *
 * @module
 */
import { getLogger } from "@logtape/logtape";
import type { Config } from "../src/config.ts";
import { ConsulStore, ConsulUnavailableError } from "../src/consul.ts";
import { CommandFailedError, run } from "../src/exec.ts";
import { mysqlInitFile } from "../src/mysql/bootstrap.ts";
import { type Flavour, flavourFromBinaryVersion } from "../src/mysql/flavour.ts";
import { type BufferPoolChoice, nodeAddress } from "../src/node.ts";
import { chooseBufferPoolLogged, writeServerConfig } from "../src/local.ts";
import { newServerId, writeServerId } from "../src/server_id.ts";
import { publishedSnapshot, restoreConfiguredSnapshot } from "../src/snapshots.ts";
import { ConsulClusterKv } from "../src/cluster_kv.ts";
import { failureRecord, retryDelaySeconds } from "../src/pre_start_retry.ts";
import {
  clearPreStartFailure,
  readState,
  writeFileAtomic,
  writePreStartFailure,
  writeState,
} from "../src/state.ts";
import { errorMessage } from "../src/text.ts";
import { readTls, TlsConfigError } from "../src/mysql/tls.ts";
import { type CommandContext, EXIT } from "../src/command.ts";

const log = getLogger(["autopilot", "pre-start"]);

/** A failure of pre-start's own checks: its message is the line to log. */
class PreStartError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "PreStartError";
  }
}

const STOP_SIGNALS = ["SIGTERM", "SIGINT"] as const;

/** `autopilot pre-start` (`once`: `--once`, a single attempt). */
export async function runPreStart(ctx: CommandContext, once: boolean): Promise<number> {
  const { config } = ctx;
  const stateDir = config.node.stateDir;
  const stop = new AbortController();
  const handlers = STOP_SIGNALS.map((name) => {
    const handler = () => stop.abort(name);
    Deno.addSignalListener(name, handler);
    return [name, handler] as const;
  });
  try {
    await bestEffort("clear an earlier failure record", () => clearPreStartFailure(stateDir));
    // TLS files that cannot be used are refused before anything is touched, never a start without TLS: the
    // files do not change without a new container, so this is not retried.
    if (config.mysql.tls) {
      try {
        await readTls(config.mysql.tls);
      } catch (e) {
        if (!(e instanceof TlsConfigError)) throw e;
        log.error("Invalid TLS configuration: {reason}", { reason: e.message });
        return EXIT.usage;
      }
    }
    // Chosen (and logged) once: it depends on nothing an attempt can change.
    const pool = chooseBufferPoolLogged(config, log, ctx.env);
    let since: number | undefined;
    for (let attempt = 1;; attempt++) {
      let failure: unknown;
      try {
        await attemptPreStart(ctx, attempt, pool, stop.signal);
      } catch (e) {
        failure = e ?? new Error("failed");
      }
      if (failure === undefined) {
        if (since !== undefined) {
          log.info("Attempt {attempt} succeeded, after failures since {since}", {
            attempt,
            since: new Date(since).toISOString(),
          });
        }
        await bestEffort("clear the failure record", () => clearPreStartFailure(stateDir));
        return EXIT.ok;
      }
      if (stop.signal.aborted) return await stopped(stateDir, stop.signal, attempt, "during");
      const reason = errorMessage(failure);
      if (once) {
        log.error("{reason}", { reason });
        return EXIT.failed;
      }
      const now = Date.now();
      since ??= now;
      const delaySeconds = retryDelaySeconds(attempt);
      // recorded first: once the line is out, `autopilot status` says the same
      await bestEffort(
        "record the failure for 'autopilot status'",
        () => writePreStartFailure(stateDir, failureRecord(config.node.name, since!, attempt, reason, now)),
      );
      log.error("Attempt {attempt} failed: {reason}; trying again in {delay} s", {
        attempt,
        reason,
        delay: delaySeconds,
      });
      if (!(await sleep(delaySeconds * 1000, stop.signal))) {
        return await stopped(stateDir, stop.signal, attempt, "after");
      }
    }
  } finally {
    for (const [name, handler] of handlers) Deno.removeSignalListener(name, handler);
  }
}

/** Logs why pre-start stops before it succeeded, clears the failure record, and gives the exit code. */
async function stopped(
  stateDir: string,
  signal: AbortSignal,
  attempt: number,
  when: "during" | "after",
): Promise<number> {
  log.warn(
    "Stopped by {signal} {when} attempt {attempt}, before pre-start succeeded: the datadir is as it was",
    {
      signal: String(signal.reason),
      when,
      attempt,
    },
  );
  await bestEffort("clear the failure record", () => clearPreStartFailure(stateDir));
  return EXIT.failed;
}

/** Resolves true after `ms`, or false as soon as `signal` aborts. */
function sleep(ms: number, signal: AbortSignal): Promise<boolean> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve(false);
    const onAbort = () => {
      clearTimeout(timer);
      resolve(false);
    };
    const timer = setTimeout(() => {
      signal.removeEventListener("abort", onAbort);
      resolve(true);
    }, ms);
    signal.addEventListener("abort", onAbort, { once: true });
  });
}

let warnedBestEffort = false;

/** Runs `fn`; a failure is logged once per run (the attempt lines already say what is wrong), never thrown. */
async function bestEffort(what: string, fn: () => Promise<void>): Promise<void> {
  try {
    await fn();
  } catch (e) {
    if (warnedBestEffort) return;
    warnedBestEffort = true;
    log.warn("Cannot {what}: {e}", { what, e: errorMessage(e) });
  }
}

/**
 * One attempt: my.cnf, then the datadir. Throws when it fails, leaving the datadir as it was.
 *
 * @param attempt Its number: the first one logs what it wrote at INFO, the later ones at DEBUG.
 */
async function attemptPreStart(
  ctx: CommandContext,
  attempt: number,
  pool: BufferPoolChoice,
  signal: AbortSignal,
): Promise<void> {
  const { config } = ctx;
  const flavour = await detectFlavour(config);
  if (flavour === undefined) {
    throw new PreStartError("No MySQL or MariaDB server is installed (neither mariadbd nor mysqld runs)");
  }
  const address = nodeAddress(config, ctx.env, Deno.networkInterfaces());
  if (address === undefined) {
    throw new PreStartError(
      "Cannot tell this node's address (no NODE_ADDRESS, no CONTAINERPILOT_MYSQL_IP, no IPv4 interface)",
    );
  }
  await writeServerConfig(config, flavour, address, pool);
  await Deno.mkdir(config.node.stateDir, { recursive: true, mode: 0o700 });
  const state = await readState(config.node.stateDir);
  // A new run of mysqld: what the health pass last logged is to be logged again if it still holds.
  await writeState(config.node.stateDir, { ...state, flavour, reported: undefined });
  log[attempt === 1 ? "info" : "debug"]("Wrote {cnf} for {flavour} (report_host {address})", {
    cnf: config.mysql.cnfPath,
    flavour,
    address,
  });

  const datadir = config.mysql.datadir;
  if (await exists(`${datadir}/mysql`)) {
    log.info("{datadir} already holds a database: left untouched", { datadir });
    return;
  }
  if (!(await isEmptyOrMissing(datadir))) {
    throw new PreStartError(
      `${datadir} is not empty but holds no database (no mysql/ subdirectory): empty it or set MYSQL_DATADIR elsewhere`,
    );
  }
  signal.throwIfAborted();
  await restoreOrInitialise(config, flavour, datadir, address, pool, signal);
}

async function restoreOrInitialise(
  config: Config,
  flavour: Flavour,
  datadir: string,
  address: string,
  pool: BufferPoolChoice,
  signal: AbortSignal,
): Promise<void> {
  const consul = new ConsulStore(config.consul);
  let manifest;
  try {
    manifest = await publishedSnapshot(new ConsulClusterKv(config, consul));
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
  signal.throwIfAborted();
  if (manifest !== undefined) {
    log.info("Restoring snapshot {name} (GTID {gtid}) into {datadir}", {
      name: manifest.name,
      gtid: manifest.gtid,
      datadir,
    });
    const t0 = performance.now();
    const restored = await restoreConfiguredSnapshot(config, { manifest, datadir, flavour, signal });
    const serverId = await writeServerConfig(config, flavour, address, pool);
    log.info("Restored {name} in {ms} ms as server_id {serverId}; replication will start after {gtid}", {
      serverId,
      name: manifest.name,
      ms: Math.round(performance.now() - t0),
      gtid: restored.gtid,
    });
    return;
  }
  log.info("No snapshot published: initialising an empty datadir in {datadir}", { datadir });
  await initialise(config, flavour, datadir, signal);
  // A new datadir gets a new server id too: a node replacing one of the same name must not take its id.
  await writeServerId(datadir, newServerId());
  await writeServerConfig(config, flavour, address, pool);
}

/** Staging directories a restore makes inside a datadir that is a mount point (src/backup/restore.ts). */
const INSIDE_STAGING = /^\.restore-[0-9a-f]{12}$/;

/**
 * Initialises an empty datadir in place; on failure the datadir is left as it was (absent, or emptied).
 *
 * When pre-start is stopped, ContainerPilot's SIGTERM reaches the whole process group: `mariadb-install-db`
 * exits at once while the bootstrap server it started may write for a moment longer, but `run()` returns only
 * once every holder of the installer's output pipes is gone, that server included, so the cleanup comes after it.
 */
async function initialise(config: Config, flavour: Flavour, datadir: string, signal: AbortSignal) {
  const existed = await exists(datadir);
  const cnf = `--defaults-file=${config.mysql.cnfPath}`;
  try {
    if (flavour === "mariadb") {
      await run(["mariadb-install-db", cnf, "--auth-root-authentication-method=socket", "--skip-test-db"], {
        signal,
      });
    } else {
      // mysqld reads the init file after dropping to MYSQL_OS_USER: a private directory that user owns.
      const dir = await Deno.makeTempDir({ dir: config.mysql.tmpdir, prefix: "autopilot-init-" });
      try {
        const initFile = `${dir}/init.sql`;
        await writeFileAtomic(initFile, mysqlInitFile("root"), 0o600);
        await run(["chown", "-R", `${config.mysql.osUser}:`, dir], { signal });
        await run(["mysqld", cnf, "--initialize-insecure", `--init-file=${initFile}`], { signal });
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

/**
 * The datadir is missing, or holds nothing but staging directories a killed restore left inside it (they are
 * removed; the restore would remove them too, but this check comes first).
 */
async function isEmptyOrMissing(dir: string): Promise<boolean> {
  const leftovers: string[] = [];
  try {
    for await (const entry of Deno.readDir(dir)) {
      if (!(entry.isDirectory && INSIDE_STAGING.test(entry.name))) return false;
      leftovers.push(entry.name);
    }
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return true;
    throw e;
  }
  for (const name of leftovers) await Deno.remove(`${dir}/${name}`, { recursive: true });
  return true;
}
