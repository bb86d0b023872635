/**
 * Drives a test cluster the way ContainerPilot would: `autopilot pre-start`, then mysqld from the my.cnf it
 * wrote, then `autopilot health`, each node in its own network namespace, against a real Consul agent.
 * Shared by the lifecycle tests and the benchmarks.
 *
 * @module
 */
import { assertEquals } from "../unit/assert.ts";
import { MysqlClient, MysqlQueryError } from "../../src/mysql/client.ts";
import { Secret } from "../../src/config.ts";
import { ConsulStore } from "../../src/consul.ts";
import { primaryLockFrom, type PrimaryRecord } from "../../src/cluster_kv.ts";
import { autopilot, type CliResult } from "./autopilot_cli.ts";
import {
  type ConsulTls,
  createAclToken,
  type Harness,
  makeConsulTls,
  type ServerProcess,
  stop,
  waitFor,
} from "./harness/mod.ts";
import { defaultConsulPolicy } from "../../src/consul_policy.ts";

/** What a secured test Consul gives its nodes: its CA, the management token, the nodes' token. */
export interface SecuredConsul {
  readonly tls?: ConsulTls & { readonly otherCaFile: string };
  readonly managementToken?: string;
  readonly nodeToken?: string;
}

/** The passwords every test node is configured with. */
export const SECRETS = { repl: "repl-pw-1", app: "app-pw-2", root: "root-pw-3" };

/** One node of a test cluster. */
export interface TestNode {
  readonly k: number;
  readonly name: string;
  readonly ns: string;
  readonly address: string;
  readonly dir: string;
  readonly env: Record<string, string>;
  mysqld?: ServerProcess;
}

/** A test cluster on a harness network: nodes, their hooks, their servers. */
export class Cluster {
  readonly nodes = new Map<number, TestNode>();
  /** The nodes' Consul settings: CONSUL and, for a secured Consul, CONSUL_CACERT and CONSUL_HTTP_TOKEN. */
  readonly consulEnv: Record<string, string>;
  constructor(
    readonly h: Harness,
    readonly consulAddr: string,
    readonly snapshots: string,
    readonly secured: SecuredConsul = {},
  ) {
    this.consulEnv = {
      CONSUL: secured.tls ? `https://${consulAddr}` : consulAddr,
      ...(secured.tls ? { CONSUL_CACERT: secured.tls.caFile } : {}),
      ...(secured.nodeToken ? { CONSUL_HTTP_TOKEN: secured.nodeToken } : {}),
    };
  }

  /**
   * `persistentConsul`: a Consul server that keeps its data on disk (see `Harness.restartConsul`). `secured`:
   * a Consul over HTTPS (a CA made here) enforcing ACLs, whose nodes' token has only README's policy
   * (src/consul_policy.ts) and nothing else.
   */
  static async create(
    h: Harness,
    opts: { persistentConsul?: boolean; secured?: boolean } = {},
  ): Promise<Cluster> {
    if (!opts.secured) {
      const consul = await h.startConsul({ persistent: opts.persistentConsul });
      return new Cluster(h, `${h.net.hostAddress}:${consul.port}`, `${h.dir}/snapshots`);
    }
    const tls = await makeConsulTls(`${h.dir}/consul-tls`, ["127.0.0.1", h.net.hostAddress]);
    const managementToken = crypto.randomUUID();
    const consul = await h.startConsul({ persistent: opts.persistentConsul, tls, acl: { managementToken } });
    const nodeToken = await createAclToken(consul, "autopilot-mysql", defaultConsulPolicy());
    return new Cluster(h, `${h.net.hostAddress}:${consul.port}`, `${h.dir}/snapshots`, {
      tls,
      managementToken,
      nodeToken,
    });
  }

  node(k: number, extraEnv: Record<string, string> = {}): TestNode {
    const existing = this.nodes.get(k);
    if (existing) return existing;
    const net = this.h.net.node(k);
    const dir = `${this.h.dir}/node${k}`;
    const env = {
      NODE_NAME: `n${k}`,
      NODE_ADDRESS: net.address,
      ...this.consulEnv,
      MYSQL_DATADIR: `${dir}/data`,
      MYSQL_CNF: `${dir}/my.cnf`,
      MYSQL_SOCKET: `${dir}/run/mysqld.sock`,
      MYSQL_OS_USER: "root",
      MYSQL_TMPDIR: `${dir}/tmp`,
      STATE_DIR: `${dir}/state`,
      SNAPSHOT_DIR: this.snapshots,
      INNODB_BUFFER_POOL_SIZE: "64M",
      MYSQL_REPL_PASSWORD: SECRETS.repl,
      MYSQL_USER: "app",
      MYSQL_PASSWORD: SECRETS.app,
      MYSQL_DATABASE: "app",
      MYSQL_ROOT_PASSWORD: SECRETS.root,
      LOG_LEVEL: "DEBUG",
      ...extraEnv,
    };
    const node: TestNode = { k, name: `n${k}`, ns: net.ns, address: net.address, dir, env };
    this.nodes.set(k, node);
    return node;
  }

  run(node: TestNode, args: string[], env: Record<string, string> = {}): Promise<CliResult> {
    return autopilot(args, { ...node.env, ...env }, node.ns);
  }

  /**
   * One pre-start attempt (`pre-start --once`): a failure is the test's to see, where ContainerPilot's
   * `pre-start` would try again for ever (tests/integration/pre_start_retry_test.ts runs that one).
   */
  async preStart(node: TestNode): Promise<CliResult> {
    await this.preparePreStart(node);
    return await this.run(node, ["pre-start", "--once"]);
  }

  /** The directories pre-start expects the image to have made (the socket's and the tmpdir). */
  async preparePreStart(node: TestNode): Promise<void> {
    await Deno.mkdir(`${node.dir}/run`, { recursive: true });
    await Deno.mkdir(`${node.dir}/tmp`, { recursive: true });
  }

  /** Starts mysqld as ContainerPilot's `mysql` job would: the my.cnf pre-start wrote, in the node's namespace. */
  async startMysqld(node: TestNode): Promise<void> {
    node.mysqld = await this.h.group.spawn({
      name: `mariadbd ${node.name}`,
      program: "/usr/sbin/mariadbd",
      args: [`--defaults-file=${node.env.MYSQL_CNF}`],
      logFile: `${node.dir}/mysqld.log`,
      netns: node.ns,
    });
    await waitFor(`mariadbd ${node.name}`, async () => {
      if (node.mysqld?.exited) throw new Error(`mariadbd ${node.name} exited: see ${node.dir}/mysqld.log`);
      await (await this.root(node)).close();
      return true;
    }, { timeoutMs: 30_000 });
  }

  async stopMysqld(node: TestNode): Promise<void> {
    if (node.mysqld) await stop(node.mysqld.pid);
  }

  async boot(node: TestNode): Promise<CliResult> {
    const pre = await this.preStart(node);
    assertEquals(pre.code, 0, `pre-start ${node.name}: ${pre.stderr}`);
    await this.startMysqld(node);
    return await this.run(node, ["health"]);
  }

  /**
   * Runs `autopilot health` on each node every `intervalMs`, as ContainerPilot would: each node on its own
   * (a pass that waits, e.g. for the node it appointed, never holds back another node's), until the returned
   * function is called (it waits for the passes under way). `seen` gets every pass's result. Without it,
   * sessions expire during long steps.
   */
  keepChecking(
    nodes: readonly TestNode[],
    intervalMs = 4000,
    seen?: (node: TestNode, result: CliResult) => void,
  ): () => Promise<void> {
    let running = true;
    const loops = nodes.map(async (n) => {
      while (running) {
        const r = await this.run(n, ["health"]);
        seen?.(n, r);
        for (let waited = 0; running && waited < intervalMs; waited += 100) {
          await new Promise((r) => setTimeout(r, 100));
        }
      }
    });
    return async () => {
      running = false;
      await Promise.all(loops);
    };
  }

  root(node: TestNode): Promise<MysqlClient> {
    return MysqlClient.connect({ socketPath: node.env.MYSQL_SOCKET, user: "root", connectTimeoutMs: 1000 });
  }

  app(node: TestNode): Promise<MysqlClient> {
    return MysqlClient.connect({
      host: node.address,
      port: 3306,
      user: "app",
      password: new Secret(SECRETS.app),
      connectTimeoutMs: 2000,
    });
  }

  async sql(node: TestNode, query: string): Promise<Record<string, unknown>[]> {
    await using db = await this.root(node);
    return await db.query(query);
  }

  /** The rows of `app.t`, the table the tests write to, on `node`. */
  async rows(node: TestNode): Promise<number> {
    return Number((await this.sql(node, "SELECT COUNT(*) AS n FROM app.t"))[0].n);
  }

  /** A client of the cluster's Consul, as management when it enforces ACLs. */
  consul(): ConsulStore {
    const [host, port] = this.consulAddr.split(":");
    const { tls, managementToken } = this.secured;
    const scheme = tls ? "https" : "http";
    return new ConsulStore({
      scheme,
      host,
      port: Number(port),
      url: `${scheme}://${this.consulAddr}`,
      timeoutMs: 2000,
      ...(tls ? { caFile: tls.caFile } : {}),
      ...(managementToken ? { token: new Secret(managementToken) } : {}),
    });
  }

  /** The node the primary lock names (`key`: PRIMARY_KEY, `mysql-primary` unless SERVICE_NAME changes it). */
  /** Damages the bytes of the snapshot LAST_BACKUP_KEY names, in the directory store; returns its name. */
  async corruptLastSnapshot(): Promise<string> {
    const consul = this.consul();
    let name: string;
    try {
      name = JSON.parse((await consul.get("mysql-last-backup"))!.value).name;
    } finally {
      consul.close();
    }
    const path = `${this.snapshots}/${name}.xbstream.zst`;
    const bytes = await Deno.readFile(path);
    for (let i = Math.floor(bytes.length / 2); i < bytes.length / 2 + 64; i++) bytes[i] ^= 0xff;
    await Deno.writeFile(path, bytes);
    return name;
  }

  /** The primary lock's record, held or not. */
  async primaryRecord(key = "mysql-primary"): Promise<PrimaryRecord | undefined> {
    const consul = this.consul();
    try {
      return primaryLockFrom(await consul.get(key)).record;
    } finally {
      consul.close();
    }
  }

  async primaryName(key = "mysql-primary"): Promise<string | undefined> {
    const consul = this.consul();
    try {
      const lock = primaryLockFrom(await consul.get(key));
      return lock.session ? lock.record?.node : undefined;
    } finally {
      consul.close();
    }
  }
}

/**
 * A client that appends unique keys to whichever node the primary lock names, retrying a key until it is
 * acknowledged (a duplicate-key error means an earlier attempt committed) into `app.acked (id INT PRIMARY KEY)`.
 * `stop()` returns the acknowledged keys.
 */
export function writer(
  c: Cluster,
): {
  stop(): Promise<number[]>;
  failures: () => number;
  /** When each write was acknowledged (performance.now()) and by which server address. */
  acks: () => readonly { readonly t: number; readonly address: string }[];
} {
  let running = true;
  let failures = 0;
  const acked: number[] = [];
  const acks: { t: number; address: string }[] = [];
  const done = (async () => {
    let id = 1;
    let db: MysqlClient | undefined;
    let at = "";
    while (running) {
      try {
        const primary = c.nodes.get(Number((await c.primaryName())?.slice(1)));
        if (primary === undefined) throw new Error("no primary");
        if (db === undefined || at !== primary.address) {
          await db?.close();
          db = await MysqlClient.connect({
            host: primary.address,
            port: 3306,
            user: "app",
            password: new Secret(SECRETS.app),
            connectTimeoutMs: 1000,
          });
          at = primary.address;
        }
        try {
          // A cut link never answers: without a statement timeout this would wait for TCP to give up.
          await db.query({ sql: "INSERT INTO app.acked VALUES (?)", values: [id] }, { timeoutMs: 2000 });
        } catch (e) {
          if (!(e instanceof MysqlQueryError && e.errno === 1062)) throw e; // 1062: it had committed
        }
        acked.push(id++);
        acks.push({ t: performance.now(), address: at });
      } catch {
        failures++;
        await db?.close();
        db = undefined;
        await new Promise((r) => setTimeout(r, 20));
      }
    }
    await db?.close();
  })();
  return {
    stop: async () => {
      running = false;
      await done;
      return acked;
    },
    failures: () => failures,
    acks: () => acks,
  };
}

/**
 * Runs `health` on the nodes concurrently, round after round (`pauseMs` apart), until `done` holds; throws
 * with each node's last lines when it does not within `timeoutMs`.
 */
export async function converge(
  c: Cluster,
  nodes: TestNode[],
  done: () => Promise<boolean>,
  timeoutMs = 40_000,
  pauseMs = 300,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last: string[] = [];
  while (Date.now() < deadline) {
    const results = await Promise.all(nodes.map((n) => c.run(n, ["health"])));
    last = results.map((r, i) =>
      `${nodes[i].name} (${r.code}): ${r.stderr.split("\n").slice(-3).join(" / ")}`
    );
    if (await done()) return;
    await new Promise((r) => setTimeout(r, pauseMs));
  }
  throw new Error(`the cluster did not converge in ${timeoutMs} ms:\n${last.join("\n")}`);
}
