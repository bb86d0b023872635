/**
 * The in-memory ClusterKv the HA unit tests use: the contract real Consul passes (so it keeps Consul's lock
 * semantics), and its test helpers.
 */
import { assert, assertEquals, assertRejects } from "./assert.ts";
import { ConsulUnavailableError } from "../../src/consul.ts";
import { clusterKvContract } from "./fakes/cluster_kv_contract.ts";
import { FakeClusterKv, kvConfig } from "./fakes/fake_cluster_kv.ts";

clusterKvContract("in-memory fake", () =>
  Promise.resolve({
    cluster(serviceName: string, env: Record<string, string> = {}) {
      const config = kvConfig({ SERVICE_NAME: serviceName, ...env });
      const fake = new FakeClusterKv(config);
      return Promise.resolve({
        kv: fake,
        newSession: () => Promise.resolve(fake.createSession()),
        endSession: (id: string) => Promise.resolve(fake.endSession(id)),
        put: (key: string, value: string) => Promise.resolve(fake.put(key, value)),
        get: (key: string) => Promise.resolve(fake.entry(key)),
        unreachable: () => new FakeClusterKv(config).down(),
      });
    },
    [Symbol.asyncDispose]: () => Promise.resolve(),
  }));

const p1 = { node: "n1", address: "10.0.0.1", port: 3306 };

Deno.test("FakeClusterKv.down({after}) lets that many calls through, then every call fails until up()", async () => {
  const kv = new FakeClusterKv();
  const s = kv.createSession();
  kv.down({ after: 2 });
  await kv.read();
  assertEquals(await kv.acquirePrimary(s, p1), true);
  await assertRejects(() => kv.primary(), ConsulUnavailableError, "Cannot reach Consul (primary)");
  await assertRejects(() => kv.read(), ConsulUnavailableError);
  kv.up();
  assertEquals((await kv.primary()).session, s);
  assertEquals(kv.calls, ["read", "acquirePrimary", "primary", "read", "primary"]);
});

Deno.test("FakeClusterKv.endSession({lockDelay}) keeps a lock from every session until endLockDelay()", async () => {
  const kv = new FakeClusterKv();
  const [a, b] = [kv.createSession(), kv.createSession()];
  assert(await kv.acquirePrimary(a, p1));
  kv.endSession(a, { lockDelay: true });
  assertEquals(kv.sessionAlive(a), false);
  assertEquals(await kv.acquirePrimary(b, p1), false, "in the lock-delay");
  kv.endLockDelay();
  assertEquals(await kv.acquirePrimary(b, p1), true);
});

Deno.test("FakeClusterKv keys are the configured ones, under their real names", async () => {
  const kv = new FakeClusterKv(kvConfig({ SERVICE_NAME: "shop", PRIMARY_KEY: "legacy/primary" }));
  const s = kv.createSession();
  assert(await kv.acquirePrimary(s, p1));
  assert(
    await kv.publishMember(s, {
      ...p1,
      priority: 1,
      flavour: "mariadb",
      role: "primary",
      executed: "",
      retrieved: "",
      updatedAt: 1,
    }),
  );
  assertEquals(kv.entries().map((e) => [e.key, e.session]), [
    ["legacy/primary", s],
    ["shop-members/n1", s],
  ]);
  kv.delete("legacy/primary");
  assertEquals((await kv.read()).primary, {});
});
