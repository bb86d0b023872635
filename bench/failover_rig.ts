/**
 * What the failover bench runs around a namespace test cluster (tests/integration/cluster.ts): ContainerPilot's
 * health checks and its watch emulated per node, an independent writer and a read_only sampler. Every loop
 * here is bounded and stops by itself when asked; nothing here decides anything about the cluster.
 *
 * @module
 */
import { MysqlClient, MysqlQueryError } from "../src/mysql/client.ts";
import { Secret } from "../src/config.ts";
import { Cluster, SECRETS, type TestNode } from "../tests/integration/cluster.ts";
import { delay } from "../tests/integration/harness/mod.ts";
import type { Ack, Sample } from "./failover_figures.ts";
import { SHIPPED_INTERVALS } from "./costs.ts";

/** ContainerPilot's health interval (containerpilot.json5). */
export const HEALTH_INTERVAL_MS = SHIPPED_INTERVALS.healthSeconds * 1000;
/** ContainerPilot's watch interval for `<service>-primary` (containerpilot.json5). */
export const WATCH_INTERVAL_MS = SHIPPED_INTERVALS.watchSeconds * 1000;

/** Which nodes' ContainerPilot is alive (checks and watch run) and which can reach Consul (the watch's polls). */
export class NodeLife {
  readonly #gone = new Set<number>();
  readonly #cut = new Set<number>();
  /** The node is gone: its checks and watch stop until `back`. */
  gone(k: number): void {
    this.#gone.add(k);
  }
  back(k: number): void {
    this.#gone.delete(k);
  }
  /** The node's link is cut: its watch's polls fail (no events), its checks still run. */
  cut(k: number, cut: boolean): void {
    if (cut) this.#cut.add(k);
    else this.#cut.delete(k);
  }
  checks(k: number): boolean {
    return !this.#gone.has(k);
  }
  watches(k: number): boolean {
    return !this.#gone.has(k) && !this.#cut.has(k);
  }
  isGone(k: number): boolean {
    return this.#gone.has(k);
  }
}

/** A loop that runs until `stop()`, which waits for the iteration under way. */
interface Loop {
  stop(): Promise<void>;
}

/**
 * `autopilot health` on each node every HEALTH_INTERVAL_MS from the start of the previous pass, each node on
 * its own timer (as each container's ContainerPilot would run it), and never two passes at once on one node.
 */
export function healthChecks(c: Cluster, nodes: readonly TestNode[], life: NodeLife): Loop {
  let running = true;
  const loops = nodes.map(async (n, i) => {
    await delay(i * 700); // the containers did not start in the same instant
    while (running) {
      const started = performance.now();
      if (life.checks(n.k)) await c.run(n, ["health"]).catch(() => {});
      while (running && performance.now() - started < HEALTH_INTERVAL_MS) await delay(100);
    }
  });
  return {
    stop: async () => {
      running = false;
      await Promise.all(loops);
    },
  };
}

/**
 * ContainerPilot's watch on `<service>-primary`: every WATCH_INTERVAL_MS, the passing instances from Consul's
 * health API; when their count or (sorted by ID) address/port changed, `autopilot on-change` on every node
 * whose ContainerPilot is alive and reaches Consul (one run at a time per node). A failed poll changes nothing;
 * the first poll with an instance counts as a change, as in ContainerPilot (discovery/service.go,
 * compareForChange). One poll serves every node: they share one Consul agent here.
 */
export function primaryWatch(
  c: Cluster,
  nodes: readonly TestNode[],
  life: NodeLife,
  consulUrl: () => string,
  service = "mysql-primary",
): Loop & { changes: () => number } {
  let running = true;
  let changes = 0;
  const busy = new Map<number, Promise<void>>();
  const loop = (async () => {
    let last = "";
    while (running) {
      const started = performance.now();
      try {
        const res = await fetch(`${consulUrl()}/v1/health/service/${service}?passing=1`, {
          signal: AbortSignal.timeout(WATCH_INTERVAL_MS),
        });
        if (!res.ok) throw new Error(`HTTP ${res.status}`);
        const list = (await res.json()) as { Service: { ID: string; Address: string; Port: number } }[];
        const now = list.map((e) => e.Service).sort((a, b) => a.ID.localeCompare(b.ID))
          .map((s) => `${s.Address}:${s.Port}`).join(",");
        const changed = last === "" ? list.length > 0 : now !== last;
        last = now === "" ? "-" : now;
        if (changed) {
          changes++;
          for (const n of nodes) {
            if (!life.watches(n.k) || busy.has(n.k)) continue;
            busy.set(
              n.k,
              c.run(n, ["on-change"]).then(() => {}, () => {}).finally(() => busy.delete(n.k)),
            );
          }
        }
      } catch {
        // ContainerPilot logs a warning and publishes nothing.
      }
      while (running && performance.now() - started < WATCH_INTERVAL_MS) await delay(100);
    }
  })();
  return {
    stop: async () => {
      running = false;
      await loop;
      await Promise.all([...busy.values()]);
    },
    changes: () => changes,
  };
}

/**
 * Every `intervalMs`, every node's `@@read_only` over its own connection (root over the node's socket, so a
 * cut link does not hide a writable server), all nodes at once. A node that does not answer within 500 ms is
 * unknown (never counted as writable) and is reconnected at the next round.
 */
export function readOnlySampler(
  nodes: readonly TestNode[],
  intervalMs = 100,
): Loop & { samples: Sample[]; writableNode: () => TestNode | undefined } {
  let running = true;
  const samples: Sample[] = [];
  const conns = new Map<number, MysqlClient>();
  const one = async (n: TestNode): Promise<boolean | undefined> => {
    try {
      let db = conns.get(n.k);
      if (db === undefined) {
        db = await MysqlClient.connect({
          socketPath: n.env.MYSQL_SOCKET,
          user: "root",
          connectTimeoutMs: 500,
        });
        conns.set(n.k, db);
      }
      const [row] = await db.query("SELECT @@GLOBAL.read_only AS ro", { timeoutMs: 500 });
      return Number(row.ro) === 0;
    } catch {
      const db = conns.get(n.k);
      conns.delete(n.k);
      await db?.close().catch(() => {});
      return undefined;
    }
  };
  const loop = (async () => {
    while (running) {
      const started = performance.now();
      const writable = await Promise.all(nodes.map(one));
      samples.push({ t: started, writable });
      while (running && performance.now() - started < intervalMs) await delay(10);
    }
    for (const db of conns.values()) await db.close().catch(() => {});
  })();
  return {
    samples,
    stop: async () => {
      running = false;
      await loop;
    },
    /** The node the last round saw as the only writable one. */
    writableNode: () => {
      const last = samples.at(-1);
      if (last === undefined) return undefined;
      const ws = nodes.filter((_, i) => last.writable[i] === true);
      return ws.length === 1 ? ws[0] : undefined;
    },
  };
}

/**
 * A client independent of Consul: appends keys from `firstId` into `app.bench`, to the node the sampler last saw
 * as the only writable one (else the node it wrote to last), one key every ~75 ms, each statement bounded by 1 s
 * (a cut link never answers). A key is retried until acknowledged; a duplicate-key error means an earlier
 * attempt committed, and counts as its acknowledgement.
 */
export function benchWriter(
  target: () => TestNode | undefined,
  firstId: number,
): Loop & { acks: Ack[]; failures: () => number } {
  let running = true;
  let failures = 0;
  const acks: Ack[] = [];
  const loop = (async () => {
    let id = firstId;
    let db: MysqlClient | undefined;
    let at: TestNode | undefined;
    while (running) {
      const node = target() ?? at;
      try {
        if (node === undefined) throw new Error("no writable node seen yet");
        if (db === undefined || at !== node) {
          await db?.close().catch(() => {});
          db = undefined;
          at = node;
          db = await MysqlClient.connect({
            host: node.address,
            port: 3306,
            user: "app",
            password: new Secret(SECRETS.app),
            connectTimeoutMs: 1000,
          });
        }
        try {
          await db.query({ sql: "INSERT INTO app.bench (id) VALUES (?)", values: [id] }, { timeoutMs: 1000 });
        } catch (e) {
          if (!(e instanceof MysqlQueryError && e.errno === 1062)) throw e;
        }
        acks.push({ id: id++, t: performance.now(), node: node.name });
        await delay(75);
      } catch {
        failures++;
        await db?.close().catch(() => {});
        db = undefined;
        await delay(50);
      }
    }
    await db?.close().catch(() => {});
  })();
  return {
    acks,
    failures: () => failures,
    stop: async () => {
      running = false;
      await loop;
    },
  };
}

/** One statement on a node over its socket, bounded (a hung server gives undefined, not a hang). */
export async function ask(node: TestNode, sql: string): Promise<Record<string, unknown>[] | undefined> {
  let db: MysqlClient | undefined;
  try {
    db = await MysqlClient.connect({
      socketPath: node.env.MYSQL_SOCKET,
      user: "root",
      connectTimeoutMs: 1000,
    });
    return await db.query(sql, { timeoutMs: 2000 });
  } catch {
    return undefined;
  } finally {
    await db?.close().catch(() => {});
  }
}

/** `node` is read-only and replicates from `primary` (I/O and SQL threads running). */
export async function replicates(node: TestNode, primary: TestNode): Promise<boolean> {
  const ro = await ask(node, "SELECT @@GLOBAL.read_only AS ro");
  if (ro === undefined || Number(ro[0].ro) !== 1) return false;
  const st = await ask(node, "SHOW SLAVE STATUS");
  const s = st?.[0];
  return s !== undefined && String(s.Master_Host) === primary.address && s.Slave_IO_Running === "Yes" &&
    s.Slave_SQL_Running === "Yes";
}

/** The node the primary lock names, when Consul answers (bounded by the client's own timeout). */
export async function lockHolder(c: Cluster, nodes: readonly TestNode[]): Promise<TestNode | undefined> {
  try {
    const name = await c.primaryName();
    return nodes.find((n) => n.name === name);
  } catch {
    return undefined;
  }
}

/**
 * The cluster is whole: the lock names a node, it is writable, and every other node replicates from it. Returns
 * the primary, or a line saying what is missing.
 */
export async function whole(
  c: Cluster,
  nodes: readonly TestNode[],
): Promise<{ primary: TestNode } | { missing: string }> {
  const p = await lockHolder(c, nodes);
  if (p === undefined) return { missing: "no lock holder" };
  const ro = await ask(p, "SELECT @@GLOBAL.read_only AS ro");
  if (ro === undefined || Number(ro[0].ro) !== 0) {
    return { missing: `${p.name} holds the lock but is not writable` };
  }
  for (const n of nodes) {
    if (n !== p && !(await replicates(n, p))) {
      return { missing: `${n.name} does not replicate from ${p.name}` };
    }
  }
  return { primary: p };
}

/** Polls `check` every `intervalMs` until it gives a value or `timeoutMs` passed; undefined on time-out. */
export async function within<T>(
  timeoutMs: number,
  check: () => Promise<T | undefined>,
  intervalMs = 250,
): Promise<T | undefined> {
  const end = performance.now() + timeoutMs;
  while (true) {
    const v = await check().catch(() => undefined);
    if (v !== undefined) return v;
    if (performance.now() >= end) return undefined;
    await delay(intervalMs);
  }
}
