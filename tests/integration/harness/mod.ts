/**
 * Integration test harness: real MariaDB, Consul and S3 servers on loopback or in network namespaces that
 * the test creates, all stopped by pid when the test ends.
 *
 * ```ts
 * await using h = await Harness.create({ nodes: 3 });
 * const [n1, n2] = await h.startNodes([1, 2]);
 * const consul = await h.startConsul();
 * await h.network!.cut(1);
 * ```
 *
 * Leftovers of a crashed run (pids, namespaces, run dirs) are removed by the next `Harness.create()`; see
 * `cleanupLeftovers()`. Set `AUTOPILOT_TEST_KEEP=1` to keep run dirs (logs, datadirs) for debugging.
 *
 * @module
 */

import { createMemoryCgroup, type MemoryCgroup } from "./cgroup.ts";
import { type ConsulServer, startConsul, type StartConsulOptions } from "./consul.ts";
import { type MariadbNode, startNode, type StartNodeOptions } from "./mariadb.ts";
import { createNetwork, type Network } from "./netns.ts";
import { freePort } from "./ports.ts";
import {
  cleanupLeftovers,
  type CleanupReport,
  keepFiles,
  newRun,
  pathExists,
  ProcessGroup,
  recordedCgroups,
} from "./proc.ts";
import { type S3Server, startS3 } from "./s3.ts";

export * from "./cgroup.ts";
export * from "./consul.ts";
export * from "./mariadb.ts";
export * from "./netns.ts";
export * from "./ports.ts";
export * from "./proc.ts";
export * from "./s3.ts";
export * from "./tools.ts";

/** Options for {@linkcode Harness.create}. */
export interface HarnessOptions {
  /**
   * Number of node namespaces to create (default 0: no network; nodes then run in the root namespace on
   * 127.0.0.1 with free ports).
   */
  nodes?: number;
}

/** Per-node options for {@linkcode Harness.startNode}. */
export type HarnessNodeOptions = Partial<
  Pick<StartNodeOptions, "readOnly" | "extraCnf" | "extraArgs" | "serverId" | "port">
>;

/** MariaDB port inside each node namespace (every namespace has its own port space). */
export const NODE_PORT = 3306;

let leftoversCleaned: Promise<CleanupReport> | undefined;

/**
 * One test's world: an optional namespace network, and the servers started through it. Disposing it (e.g. by
 * `await using`) stops every process it started, by pid, destroys the network and removes its run dir, even
 * when the test threw.
 */
export class Harness implements AsyncDisposable {
  /** The run's 4-character tag (namespaces are `apt<tag>_*`). */
  readonly tag: string;
  /** The run dir `$AUTOPILOT_TEST_STATE/runs/<tag>`: node dirs, consul and s3 dirs, logs. */
  readonly dir: string;
  /** The namespace network, when created with `nodes > 0`. */
  readonly network: Network | undefined;
  /** The processes started through this harness. */
  readonly group: ProcessGroup = new ProcessGroup();
  readonly #nodes = new Map<number, MariadbNode>();
  readonly #cgroups: MemoryCgroup[] = [];
  #consul: ConsulServer | undefined;
  #s3: S3Server | undefined;
  #disposed: Promise<void> | undefined;

  private constructor(tag: string, dir: string, network: Network | undefined) {
    this.tag = tag;
    this.dir = dir;
    this.network = network;
  }

  /**
   * Cleans earlier runs' leftovers (once per process), then makes a run dir and, for `nodes > 0`, the network.
   */
  static async create(opts: HarnessOptions = {}): Promise<Harness> {
    leftoversCleaned ??= cleanupLeftovers();
    await leftoversCleaned;
    const { tag, dir } = await newRun();
    let network: Network | undefined;
    try {
      if (opts.nodes) network = await createNetwork({ nodes: opts.nodes, prefix: `apt${tag}` });
    } catch (e) {
      if (!keepFiles()) await Deno.remove(dir, { recursive: true }).catch(() => {});
      throw e;
    }
    return new Harness(tag, dir, network);
  }

  /** The network (throws when the harness was created without nodes). */
  get net(): Network {
    if (!this.network) throw new Error("this Harness has no network: create it with { nodes: N }");
    return this.network;
  }

  /**
   * Starts MariaDB node k (1-based): in namespace k at its 10.99.X.(10+k) address, port 3306, or without a
   * network on 127.0.0.1 and a free port. server_id defaults to k; its dir is `<run dir>/n<k>`.
   */
  async startNode(k: number, opts: HarnessNodeOptions = {}): Promise<MariadbNode> {
    this.#checkOpen();
    if (this.#nodes.has(k)) throw new Error(`node ${k} was already started; use node(${k}).start()`);
    const netNode = this.network?.node(k);
    const node = await startNode({
      name: `n${k}`,
      dir: `${this.dir}/n${k}`,
      netns: netNode?.ns,
      address: netNode?.address ?? "127.0.0.1",
      port: opts.port ?? (netNode ? NODE_PORT : freePort()),
      serverId: opts.serverId ?? k,
      readOnly: opts.readOnly,
      extraCnf: opts.extraCnf,
      extraArgs: opts.extraArgs,
      group: this.group,
    });
    this.#nodes.set(k, node);
    return node;
  }

  /** Starts several nodes in parallel (default: every node of the network). */
  startNodes(ks?: number[], opts: HarnessNodeOptions = {}): Promise<MariadbNode[]> {
    const list = ks ?? this.net.nodes.map((n) => n.index);
    return Promise.all(list.map((k) => this.startNode(k, opts)));
  }

  /** Node k, started before with {@linkcode startNode}. */
  node(k: number): MariadbNode {
    const n = this.#nodes.get(k);
    if (!n) throw new Error(`node ${k} has not been started`);
    return n;
  }

  /** Nodes started so far, by number. */
  get nodes(): MariadbNode[] {
    return [...this.#nodes.entries()].sort((a, b) => a[0] - b[0]).map((e) => e[1]);
  }

  /**
   * Starts the Consul dev agent. Its HTTP API listens on 127.0.0.1 and, with a network, on the host-leg
   * address too, so processes in node namespaces reach it at `<hostAddress>:<port>`.
   */
  async startConsul(
    opts: Pick<StartConsulOptions, "bindAddrs" | "tls" | "acl"> & { persistent?: boolean } = {},
  ): Promise<ConsulServer> {
    this.#checkOpen();
    if (this.#consul) throw new Error("consul was already started");
    const bindAddrs = opts.bindAddrs ?? ["127.0.0.1", ...(this.network ? [this.network.hostAddress] : [])];
    const dataDir = opts.persistent ? `${this.dir}/consul/data` : undefined;
    this.#consul = await startConsul({
      bindAddrs,
      dir: `${this.dir}/consul`,
      group: this.group,
      dataDir,
      ...(opts.tls ? { tls: opts.tls } : {}),
      ...(opts.acl ? { acl: opts.acl } : {}),
    });
    return this.#consul;
  }

  /** Stops the Consul agent by pid (it can be started again with {@linkcode restartConsul}). */
  async stopConsul(): Promise<void> {
    await this.consul.stop();
  }

  /**
   * Starts the Consul agent again on the same addresses and ports (stopping it first if it runs). A persistent
   * one (`startConsul({ persistent: true })`) comes back with its data unless `empty`, which deletes its data
   * dir first; a dev agent always comes back empty.
   */
  async restartConsul(opts: { empty?: boolean } = {}): Promise<ConsulServer> {
    this.#checkOpen();
    const old = this.consul;
    await old.stop();
    if (opts.empty && old.dataDir) await Deno.remove(old.dataDir, { recursive: true }).catch(() => {});
    this.#consul = await startConsul({
      bindAddrs: [...old.bindAddrs],
      dir: old.dir,
      group: this.group,
      httpPort: old.port,
      clusterPorts: old.clusterPorts,
      dataDir: old.dataDir,
      ...(old.tls ? { tls: old.tls } : {}),
      ...(old.managementToken ? { acl: { managementToken: old.managementToken } } : {}),
    });
    return this.#consul;
  }

  /** The Consul agent (throws when not started). */
  get consul(): ConsulServer {
    if (!this.#consul) throw new Error("consul has not been started");
    return this.#consul;
  }

  /** Starts the S3 server (versitygw). */
  async startS3(): Promise<S3Server> {
    this.#checkOpen();
    if (this.#s3) throw new Error("s3 was already started");
    this.#s3 = await startS3({ dir: `${this.dir}/s3`, group: this.group });
    return this.#s3;
  }

  /** The S3 server (throws when not started). */
  get s3(): S3Server {
    if (!this.#s3) throw new Error("s3 has not been started");
    return this.#s3;
  }

  /**
   * Makes memory cgroup `apt<tag>_<name>` limited to `limitBytes` (v2 or v1, where and how: see cgroup.ts),
   * listed in the run dir first. Disposing the harness removes it, after it has stopped the processes.
   */
  async memoryCgroup(name: string, limitBytes: number): Promise<MemoryCgroup> {
    this.#checkOpen();
    const cg = await createMemoryCgroup(this, name, limitBytes);
    this.#cgroups.push(cg);
    return cg;
  }

  /** Every pid started through this harness (node restarts included), running or not. */
  pids(): number[] {
    return [...this.group.pids];
  }

  /** Every namespace of this harness's network. */
  namespaces(): string[] {
    return this.network?.namespaces() ?? [];
  }

  #checkOpen(): void {
    if (this.#disposed) throw new Error("this Harness was disposed");
  }

  /**
   * Stops every process (by pid), removes its memory cgroups, destroys the network and removes the run dir
   * (kept with AUTOPILOT_TEST_KEEP=1, and when a memory cgroup it lists is still there, so that the next run's
   * `cleanupLeftovers()` removes that). Idempotent; every step runs even if an earlier one failed.
   */
  dispose(): Promise<void> {
    this.#disposed ??= this.#dispose();
    return this.#disposed;
  }

  async #dispose(): Promise<void> {
    const errors: unknown[] = [];
    await this.group.stopAll().catch((e) => errors.push(e));
    for (const cg of this.#cgroups) await cg.remove().catch((e) => errors.push(e));
    if (this.network) await this.network.destroy().catch((e) => errors.push(e));
    const cgroupsLeft: string[] = [];
    for (const path of await recordedCgroups(this.tag, this.dir)) {
      if (await pathExists(path).catch(() => true)) cgroupsLeft.push(path);
    }
    if (cgroupsLeft.length > 0) {
      errors.push(
        new Error(`memory cgroups still there (${cgroupsLeft.join(" ")}): run dir ${this.dir} kept`),
      );
    } else if (!keepFiles()) await Deno.remove(this.dir, { recursive: true }).catch((e) => errors.push(e));
    if (errors.length > 0) throw new AggregateError(errors, `Harness ${this.tag}: dispose failed`);
  }

  /** For `await using h = await Harness.create(...)`. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.dispose();
  }
}
