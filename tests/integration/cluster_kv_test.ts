/**
 * ConsulClusterKv against a real Consul agent (dev mode, loopback): the ClusterKv contract
 * (tests/unit/fakes/cluster_kv_contract.ts, which the in-memory fake passes too), and what only the real one
 * does: the request read() makes.
 */
import { assertEquals } from "../unit/assert.ts";
import type { ConsulConfig } from "../../src/config.ts";
import { ConsulStore } from "../../src/consul.ts";
import { ConsulClusterKv } from "../../src/cluster_kv.ts";
import { clusterKvContract, type KvCluster } from "../unit/fakes/cluster_kv_contract.ts";
import { kvConfig } from "../unit/fakes/fake_cluster_kv.ts";
import { freePort, Harness } from "./harness/mod.ts";

function consulConfig(port: number, timeoutMs = 2000): ConsulConfig {
  return { scheme: "http", host: "127.0.0.1", port, url: `http://127.0.0.1:${port}`, timeoutMs };
}

clusterKvContract("Consul", async () => {
  const h = await Harness.create();
  const stores: ConsulStore[] = [];
  const store = (port: number, timeoutMs?: number) => {
    const s = new ConsulStore(consulConfig(port, timeoutMs));
    stores.push(s);
    return s;
  };
  try {
    const server = await h.startConsul();
    return {
      cluster(serviceName: string, env: Record<string, string> = {}): Promise<KvCluster> {
        const config = kvConfig({ SERVICE_NAME: serviceName, ...env });
        const consul = store(server.port);
        return Promise.resolve({
          kv: new ConsulClusterKv(config, consul),
          // No lock-delay: a case that ends a session goes on at once.
          newSession: () => consul.createSession({ name: "contract", ttlSeconds: 60, lockDelaySeconds: 0 }),
          endSession: (id) => consul.destroySession(id),
          put: (key, value) => consul.put(key, value),
          get: (key) => consul.get(key),
          unreachable: () => new ConsulClusterKv(config, store(freePort(), 1000)),
        });
      },
      async [Symbol.asyncDispose]() {
        for (const s of stores) s.close();
        await h[Symbol.asyncDispose]();
      },
    };
  } catch (e) {
    await h[Symbol.asyncDispose]();
    throw e;
  }
});

Deno.test("ConsulClusterKv.read() sees what one recursive read returns, plus a renamed key outside the prefix", async () => {
  await using h = await Harness.create();
  const server = await h.startConsul();
  const consul = new ConsulStore(consulConfig(server.port));
  try {
    const config = kvConfig({ SERVICE_NAME: "shop", LAST_BINLOG_KEY: "legacy/binlog" });
    const kv = new ConsulClusterKv(config, consul);
    const session = await consul.createSession({ name: "t", ttlSeconds: 60 });
    await kv.acquirePrimary(session, { node: "n1", address: "10.0.0.1", port: 3306 });
    await consul.put("legacy/binlog", "mysql-bin.000003");
    await consul.put("shop-failover-paused", "");
    // Exactly what the one recursive read holds, and the one key outside it.
    const prefix = await consul.getPrefix("shop-");
    assertEquals(prefix.map((e) => e.key), ["shop-failover-paused", "shop-primary"]);
    const view = await kv.read();
    assertEquals([view.primary.session, view.failoverPaused, view.lastBinlog], [
      session,
      true,
      "mysql-bin.000003",
    ]);
  } finally {
    consul.close();
  }
});
