/**
 * A real S3 endpoint for integration tests: versitygw (Apache-2.0, enforces SigV4) with its posix backend.
 * Buckets are the sub-directories of `bucketDir`; the backend keeps object metadata in extended attributes,
 * so `bucketDir` must be on a filesystem with user xattrs (ext4, xfs, btrfs, tmpfs all have them).
 *
 * The root access key and secret go to versitygw through its environment (`ROOT_ACCESS_KEY_ID`,
 * `ROOT_SECRET_ACCESS_KEY`), never its command line.
 *
 * @module
 */

import { freePort } from "./ports.ts";
import {
  ProcessGroup,
  processRunDir,
  randomId,
  randomSecret,
  ServerProcess,
  spawnServer,
  startupFailed,
  stop as stopPid,
  StopWaiting,
  waitFor,
} from "./proc.ts";
import { toolPath } from "./tools.ts";

/** Options for {@linkcode startS3}. */
export interface StartS3Options {
  /** Dir holding `buckets/` and the log; default a fresh dir in this process's run dir. */
  dir?: string;
  /** Process group to start versitygw in (a Harness passes its own). */
  group?: ProcessGroup;
  /** How long to wait for the health endpoint; default 15 s. */
  timeoutMs?: number;
  /**
   * Address to listen on; default 127.0.0.1. Pass a Harness network's `hostAddress` to let processes in node
   * namespaces reach the server (the test process reaches that address too).
   */
  host?: string;
}

/** A running S3 server. */
export interface S3Server {
  /** `http://HOST:PORT` (path-style addressing); HOST is 127.0.0.1 unless another was asked for. */
  readonly endpoint: string;
  readonly port: number;
  readonly accessKey: string;
  readonly secretKey: string;
  readonly region: "us-east-1";
  /** The posix backend's root: every sub-directory is a bucket. */
  readonly bucketDir: string;
  readonly pid: number;
  readonly dir: string;
  /** versitygw's stdout+stderr (request log included). */
  readonly logFile: string;
  /** Stops the server by pid (SIGTERM, SIGKILL after 10 s). */
  stop(): Promise<void>;
}

/** Path of versitygw's unauthenticated health endpoint (GET). */
export const S3_HEALTH_PATH = "/health";

/**
 * Starts versitygw (posix backend) on 127.0.0.1 (or `opts.host`):<free port> and waits until its health endpoint
 * answers.
 */
export async function startS3(opts: StartS3Options = {}): Promise<S3Server> {
  const versitygw = await toolPath("VERSITYGW");
  const dir = opts.dir ?? `${await processRunDir()}/s3-${randomId(6)}`;
  const bucketDir = `${dir}/buckets`;
  await Deno.mkdir(bucketDir, { recursive: true, mode: 0o700 });
  const accessKey = `AK${randomSecret(9).toUpperCase()}`;
  const secretKey = randomSecret(20);
  const port = freePort();
  const host = opts.host ?? "127.0.0.1";
  const spawnOpts = {
    name: "versitygw",
    program: versitygw,
    args: [
      "--port",
      `${host}:${port}`,
      "--region",
      "us-east-1",
      "--health",
      S3_HEALTH_PATH,
      "posix",
      bucketDir,
    ],
    env: { ROOT_ACCESS_KEY_ID: accessKey, ROOT_SECRET_ACCESS_KEY: secretKey },
    logFile: `${dir}/versitygw.log`,
    cwd: dir,
  };
  const proc: ServerProcess = opts.group ? await opts.group.spawn(spawnOpts) : await spawnServer(spawnOpts);
  const endpoint = `http://${host}:${port}`;
  try {
    await waitFor(`versitygw (pid ${proc.pid}) to answer ${endpoint}${S3_HEALTH_PATH}`, async () => {
      if (proc.exited) throw new StopWaiting(`versitygw (pid ${proc.pid}) exited during startup`);
      const res = await fetch(`${endpoint}${S3_HEALTH_PATH}`, { signal: AbortSignal.timeout(2000) });
      await res.body?.cancel();
      return res.ok;
    }, { timeoutMs: opts.timeoutMs ?? 15_000, intervalMs: 50 });
  } catch (e) {
    throw await startupFailed(
      proc,
      e,
      (log) => /xattr|not supported/i.test(log) ? "\n(versitygw's posix backend needs user xattrs)" : "",
    );
  }
  return {
    endpoint,
    port,
    accessKey,
    secretKey,
    region: "us-east-1",
    bucketDir,
    pid: proc.pid,
    dir,
    logFile: proc.logFile,
    stop: () => stopPid(proc.pid),
  };
}
