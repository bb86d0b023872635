/**
 * A real Consul agent for integration tests: a dev agent (in-memory server, single node), or with `dataDir` a
 * single server that keeps its data on disk, so that it can be stopped and started again with its data (the
 * failover bench's Consul outages).
 *
 * Cluster traffic binds to 127.0.0.1 on free ports; the HTTP API listens on free port P on every address in
 * `bindAddrs` (add the test network's host-leg address so nodes in namespaces can reach it). DNS and gRPC are
 * off, and so is the update check.
 *
 * With `tls` the API is HTTPS only (the HTTP port is off), on a certificate {@link makeConsulTls} signs with a CA
 * of the test's own; with `acl` the agent enforces ACLs with `default_policy = "deny"` and the given management
 * token (also the agent's own token), and {@link createAclToken} makes a token of a policy through the HTTP API.
 *
 * @module
 */

import { freePorts } from "./ports.ts";
import {
  ProcessGroup,
  processRunDir,
  randomId,
  runOk,
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
  /** Serve the API over HTTPS only, with this certificate ({@link makeConsulTls}). */
  tls?: ConsulTls;
  /** Enforce ACLs (`default_policy = "deny"`) with this management token (a UUID). */
  acl?: { readonly managementToken: string };
}

/** A CA and a server certificate signed by it, as PEM files. */
export interface ConsulTls {
  readonly caFile: string;
  readonly certFile: string;
  readonly keyFile: string;
  /** A client certificate the CA signed, and its key: the agent then requires one (`verify_incoming`). */
  readonly client?: { readonly certFile: string; readonly keyFile: string };
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
  /** `http://127.0.0.1:PORT` (`https://` with TLS). */
  readonly url: string;
  readonly scheme: "http" | "https";
  /** The certificate files it serves, with TLS. */
  readonly tls?: ConsulTls;
  /** The management token, with ACLs. */
  readonly managementToken?: string;
  /** Headers and fetch options that reach its API as management (the CA, the token). */
  readonly fetchInit: () => RequestInit & { client?: Deno.HttpClient };
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

async function getOk(url: string, init: RequestInit = {}): Promise<string | undefined> {
  const res = await fetch(url, { ...init, signal: AbortSignal.timeout(2000) });
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
    opts.tls ? "-1" : String(http),
    "-https-port",
    opts.tls ? String(http) : "-1",
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
    ...(opts.tls
      ? [
        "-hcl",
        `tls { defaults { ca_file = ${JSON.stringify(opts.tls.caFile)}, cert_file = ${
          JSON.stringify(opts.tls.certFile)
        }, key_file = ${JSON.stringify(opts.tls.keyFile)} }${
          opts.tls.client ? ", https { verify_incoming = true }" : ""
        } }`,
      ]
      : []),
    ...(opts.acl
      ? [
        "-hcl",
        `acl { enabled = true, default_policy = "deny", tokens { initial_management = ${
          JSON.stringify(opts.acl.managementToken)
        }, agent = ${JSON.stringify(opts.acl.managementToken)} } }`,
      ]
      : []),
    ...(opts.hcl ?? []).flatMap((h) => ["-hcl", h]),
  ];
  const spawnOpts = { name: "consul", program: consul, args, logFile: `${dir}/consul.log`, cwd: dir };
  const proc: ServerProcess = opts.group ? await opts.group.spawn(spawnOpts) : await spawnServer(spawnOpts);
  const scheme = opts.tls ? "https" : "http";
  const url = `${scheme}://127.0.0.1:${http}`;
  const ca = opts.tls ? await Deno.readTextFile(opts.tls.caFile) : undefined;
  const pair = opts.tls?.client
    ? {
      cert: await Deno.readTextFile(opts.tls.client.certFile),
      key: await Deno.readTextFile(opts.tls.client.keyFile),
    }
    : {};
  const fetchInit = () => ({
    ...(opts.acl ? { headers: { "X-Consul-Token": opts.acl.managementToken } } : {}),
    ...(ca ? { client: Deno.createHttpClient({ caCerts: [ca], ...pair }) } : {}),
  });
  try {
    await waitFor(`consul (pid ${proc.pid}) to elect itself leader at ${url}`, async () => {
      if (proc.exited) throw new StopWaiting(`consul (pid ${proc.pid}) exited during startup`);
      const init = fetchInit();
      try {
        const leader = await getOk(`${url}/v1/status/leader`, init);
        if (!leader || JSON.parse(leader) === "") return false;
        return (await getOk(`${url}/v1/agent/self`, init)) !== undefined;
      } finally {
        init.client?.close();
      }
    }, { timeoutMs: opts.timeoutMs ?? 20_000, intervalMs: 100 });
  } catch (e) {
    throw await startupFailed(proc, e);
  }
  return {
    httpAddr: `127.0.0.1:${http}`,
    url,
    scheme,
    ...(opts.tls ? { tls: opts.tls } : {}),
    ...(opts.acl ? { managementToken: opts.acl.managementToken } : {}),
    fetchInit,
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

/**
 * Makes a CA and a server certificate it signs for these IP addresses (and `localhost`), with
 * /usr/bin/openssl, in `dir`; and a second CA that signed nothing, for a client that must not trust the server.
 */
export async function makeConsulTls(
  dir: string,
  ips: readonly string[],
): Promise<
  ConsulTls & { readonly otherCaFile: string; readonly clientPair: NonNullable<ConsulTls["client"]> }
> {
  await Deno.mkdir(dir, { recursive: true, mode: 0o700 });
  const openssl = "/usr/bin/openssl";
  // A new EC key and a request for `subj`: self-signed (a CA, `name.pem`) or to be signed (`name.csr`).
  const request = (name: string, subj: string, selfSigned = false) =>
    runOk(openssl, [
      "req",
      ...(selfSigned ? ["-x509", "-days", "2"] : []),
      "-newkey",
      "ec",
      "-pkeyopt",
      "ec_paramgen_curve:prime256v1",
      "-nodes",
      "-keyout",
      `${dir}/${name}-key.pem`,
      "-out",
      `${dir}/${name}.${selfSigned ? "pem" : "csr"}`,
      "-subj",
      subj,
    ]);
  await request("ca", "/CN=autopilot test ca", true);
  await request("other-ca", "/CN=autopilot test other-ca", true);
  await request("server", "/CN=server.dc1.consul");
  const san = ["DNS:localhost", "DNS:server.dc1.consul", ...ips.map((ip) => `IP:${ip}`)].join(",");
  await Deno.writeTextFile(
    `${dir}/ext.cnf`,
    `subjectAltName=${san}\nextendedKeyUsage=serverAuth,clientAuth\n`,
  );
  await Deno.writeTextFile(`${dir}/client-ext.cnf`, "extendedKeyUsage=clientAuth\n");
  const sign = (name: string, ext: string) =>
    runOk(openssl, [
      "x509",
      "-req",
      "-in",
      `${dir}/${name}.csr`,
      "-CA",
      `${dir}/ca.pem`,
      "-CAkey",
      `${dir}/ca-key.pem`,
      "-CAcreateserial",
      "-out",
      `${dir}/${name}.pem`,
      "-days",
      "2",
      "-extfile",
      `${dir}/${ext}`,
    ]);
  await sign("server", "ext.cnf");
  await request("client", "/CN=autopilot test client");
  await sign("client", "client-ext.cnf");
  return {
    caFile: `${dir}/ca.pem`,
    certFile: `${dir}/server.pem`,
    keyFile: `${dir}/server-key.pem`,
    otherCaFile: `${dir}/other-ca.pem`,
    clientPair: { certFile: `${dir}/client.pem`, keyFile: `${dir}/client-key.pem` },
  };
}

/**
 * Creates an ACL policy with these HCL rules and a token that has only it, through the HTTP API as
 * management.
 *
 * @returns The token's secret.
 */
export async function createAclToken(server: ConsulServer, name: string, rules: string): Promise<string> {
  const call = async (path: string, body: unknown) => {
    const init = server.fetchInit();
    try {
      const res = await fetch(`${server.url}${path}`, {
        ...init,
        method: "PUT",
        body: JSON.stringify(body),
        signal: AbortSignal.timeout(5000),
      });
      const text = await res.text();
      if (!res.ok) throw new Error(`consul ${path}: HTTP ${res.status} ${text}`);
      return JSON.parse(text);
    } finally {
      init.client?.close();
    }
  };
  await call("/v1/acl/policy", { Name: name, Rules: rules });
  const token = await call("/v1/acl/token", { Description: name, Policies: [{ Name: name }] });
  return String(token.SecretID);
}
