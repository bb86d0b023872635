/**
 * A real Consul agent for integration tests: a dev agent (in-memory server, single node), or with `dataDir` a
 * single server that keeps its data on disk, so that it can be stopped and started again with its data (the
 * failover bench's Consul outages).
 *
 * Cluster traffic binds to 127.0.0.1 on free ports; the HTTP API listens on free port P on every address in
 * `bindAddrs` (add the test network's host-leg address so nodes in namespaces can reach it). DNS and gRPC are
 * off, and so is the update check.
 *
 * @module
 */

import { freePorts } from "./ports.ts";
import {
  ProcessGroup,
  processRunDir,
  randomId,
  ServerProcess,
  spawnServer,
  startupFailed,
  stop as stopPid,
  StopWaiting,
  waitFor,
} from "./proc.ts";
import { toolPath } from "./tools.ts";

/** Options for {@linkcode startConsul}. */
export interface StartConsulOptions {
  /** Addresses the HTTP API listens on (must exist on the host); default `["127.0.0.1"]`. */
  bindAddrs?: string[];
  /** Dir for the log; default a fresh dir in this process's run dir. */
  dir?: string;
  /** Process group to start consul in (a Harness passes its own). */
  group?: ProcessGroup;
  /** How long to wait for a leader; default 20 s. */
  timeoutMs?: number;
  /** HTTP port; default a free one (pass a stopped agent's port to restart "the same" agent). */
  httpPort?: number;
  /** More agent configuration (HCL), e.g. ACLs. */
  hcl?: readonly string[];
  /**
   * Run a single server (`-server -bootstrap-expect=1`) that keeps its data here instead of a dev agent; start
   * it again with the same dir and `clusterPorts` to get its data back.
   */
  dataDir?: string;
  /** Serf and server RPC ports; default free ones (a restarted server needs the same: raft knows them). */
  clusterPorts?: ConsulClusterPorts;
}

/** The ports a Consul agent uses besides HTTP. */
export interface ConsulClusterPorts {
  readonly serfLan: number;
  readonly serfWan: number;
  readonly server: number;
}

/** A running Consul dev agent. */
export interface ConsulServer {
  /** `127.0.0.1:PORT` (as used by CONSUL_HTTP_ADDR). */
  readonly httpAddr: string;
  /** `http://127.0.0.1:PORT`. */
  readonly url: string;
  /** The HTTP port (the same on every bind address). */
  readonly port: number;
  /** Addresses the HTTP API listens on. */
  readonly bindAddrs: readonly string[];
  readonly pid: number;
  readonly dir: string;
  /** consul's stdout+stderr. */
  readonly logFile: string;
  /** The agent's node name. */
  readonly nodeName: string;
  /** Its serf and server ports (pass them back to start the same server again). */
  readonly clusterPorts: ConsulClusterPorts;
  /** Where a persistent server keeps its data (undefined for a dev agent). */
  readonly dataDir?: string;
  /** Stops the agent by pid (SIGTERM, SIGKILL after 10 s). */
  stop(): Promise<void>;
}

async function getOk(url: string): Promise<string | undefined> {
  const res = await fetch(url, { signal: AbortSignal.timeout(2000) });
  const body = await res.text();
  return res.ok ? body : undefined;
}

/**
 * Starts `consul agent -dev` and waits until `/v1/status/leader` names a leader and `/v1/agent/self` answers.
 */
export async function startConsul(opts: StartConsulOptions = {}): Promise<ConsulServer> {
  const consul = await toolPath("CONSUL");
  const bindAddrs = opts.bindAddrs && opts.bindAddrs.length > 0 ? [...opts.bindAddrs] : ["127.0.0.1"];
  const id = randomId(6);
  const dir = opts.dir ?? `${await processRunDir()}/consul-${id}`;
  await Deno.mkdir(dir, { recursive: true, mode: 0o700 });
  const [freeHttp, freeLan, freeWan, freeServer] = freePorts(4);
  const http = opts.httpPort ?? freeHttp;
  const clusterPorts = opts.clusterPorts ?? { serfLan: freeLan, serfWan: freeWan, server: freeServer };
  const { serfLan, serfWan, server } = clusterPorts;
  // A restarted server must keep its node name and id: raft knows it by them.
  const nodeName = opts.dataDir ? "autopilot-test-server" : `autopilot-test-${id}`;
  if (opts.dataDir) await Deno.mkdir(opts.dataDir, { recursive: true, mode: 0o700 });
  const mode = opts.dataDir
    ? [
      "-server",
      "-bootstrap-expect",
      "1",
      "-data-dir",
      opts.dataDir,
      "-hcl",
      "performance { raft_multiplier = 1 }",
    ]
    : ["-dev"];
  const args = [
    "agent",
    ...mode,
    "-node",
    nodeName,
    "-bind",
    "127.0.0.1",
    "-client",
    bindAddrs.join(" "),
    "-http-port",
    String(http),
    "-https-port",
    "-1",
    "-dns-port",
    "-1",
    "-grpc-port",
    "-1",
    "-grpc-tls-port",
    "-1",
    "-serf-lan-port",
    String(serfLan),
    "-serf-wan-port",
    String(serfWan),
    "-server-port",
    String(server),
    "-disable-host-node-id",
    "-hcl",
    "disable_update_check = true",
    ...(opts.hcl ?? []).flatMap((h) => ["-hcl", h]),
  ];
  const spawnOpts = { name: "consul", program: consul, args, logFile: `${dir}/consul.log`, cwd: dir };
  const proc: ServerProcess = opts.group ? await opts.group.spawn(spawnOpts) : await spawnServer(spawnOpts);
  const url = `http://127.0.0.1:${http}`;
  try {
    await waitFor(`consul (pid ${proc.pid}) to elect itself leader at ${url}`, async () => {
      if (proc.exited) throw new StopWaiting(`consul (pid ${proc.pid}) exited during startup`);
      const leader = await getOk(`${url}/v1/status/leader`);
      if (!leader || JSON.parse(leader) === "") return false;
      return (await getOk(`${url}/v1/agent/self`)) !== undefined;
    }, { timeoutMs: opts.timeoutMs ?? 20_000, intervalMs: 100 });
  } catch (e) {
    throw await startupFailed(proc, e);
  }
  return {
    httpAddr: `127.0.0.1:${http}`,
    url,
    port: http,
    bindAddrs,
    pid: proc.pid,
    dir,
    logFile: proc.logFile,
    nodeName,
    clusterPorts,
    dataDir: opts.dataDir,
    stop: () => stopPid(proc.pid),
  };
}
