/**
 * The Consul layer against a real Consul agent (dev mode, loopback).
 */
import { assert, assertEquals, assertRejects } from "../unit/assert.ts";
import { type ConsulConfig, Secret } from "../../src/config.ts";
import {
  ConsulAclError,
  ConsulRequestError,
  ConsulStore,
  ConsulUnavailableError,
  SessionGoneError,
} from "../../src/consul.ts";
import {
  type ConsulServer,
  createAclToken,
  freePort,
  Harness,
  makeConsulTls,
  startConsul,
  waitFor,
} from "./harness/mod.ts";

function configFor(port: number, timeoutMs = 2000): ConsulConfig {
  return { scheme: "http", host: "127.0.0.1", port, url: `http://127.0.0.1:${port}`, timeoutMs };
}

async function withConsul(fn: (store: ConsulStore, server: ConsulServer, h: Harness) => Promise<void>) {
  await using h = await Harness.create();
  const server = await h.startConsul();
  const store = new ConsulStore(configFor(server.port));
  try {
    await fn(store, server, h);
  } finally {
    store.close();
  }
}

async function rawGet(server: ConsulServer, path: string): Promise<unknown> {
  const res = await fetch(`${server.url}${path}`);
  return await res.json();
}

Deno.test("ConsulStore.createSession() makes a TTL session with no checks and no lock-delay", async () => {
  await withConsul(async (store, server) => {
    const id = await store.createSession({ name: "mysql-primary-lock", ttlSeconds: 10 });
    const [info] = await rawGet(server, `/v1/session/info/${id}`) as Record<string, unknown>[];
    assertEquals(info.Name, "mysql-primary-lock");
    assertEquals(info.TTL, "10s");
    assertEquals(info.Behavior, "release");
    assertEquals(info.LockDelay, 0);
    assertEquals(info.NodeChecks ?? [], []);
    assertEquals(info.ServiceChecks ?? [], []);
  });
});

Deno.test("ConsulStore.renewSession() is false once the session is gone, and ensureSession() re-creates it", async () => {
  await withConsul(async (store) => {
    const options = { name: "s", ttlSeconds: 10 };
    const id = await store.createSession(options);
    assertEquals(await store.renewSession(id), true);
    assertEquals(await store.ensureSession(id, options), { id, created: false });
    await store.destroySession(id);
    assertEquals(await store.renewSession(id), false);
    assertEquals(await store.sessionExists(id), false);
    const again = await store.ensureSession(id, options);
    assertEquals(again.created, true);
    assert(again.id !== id);
    assertEquals(await store.sessionExists(again.id), true);
  });
});

Deno.test("ConsulStore.tryAcquireLock() gives a lock to one session only, until it is released", async () => {
  await withConsul(async (store) => {
    const a = await store.createSession({ name: "a", ttlSeconds: 10 });
    const b = await store.createSession({ name: "b", ttlSeconds: 10 });
    assertEquals(await store.tryAcquireLock("mysql-primary", a, "node-a"), true);
    assertEquals(
      await store.tryAcquireLock("mysql-primary", a, "node-a"),
      true,
      "re-acquiring by the holder",
    );
    assertEquals(await store.tryAcquireLock("mysql-primary", b, "node-b"), false);
    assertEquals(await store.releaseLock("mysql-primary", b), false, "b never held it");
    const held = await store.get("mysql-primary");
    assertEquals([held?.value, held?.session], ["node-a", a]);
    assertEquals(await store.releaseLock("mysql-primary", a), true);
    assertEquals(
      await store.tryAcquireLock("mysql-primary", b, "node-b"),
      true,
      "a released it: no lock-delay",
    );
    assertEquals((await store.get("mysql-primary"))?.session, b);
  });
});

Deno.test("ConsulStore.tryAcquireLock() is refused during the lock-delay after the holder's session dies", async () => {
  await withConsul(async (store) => {
    const a = await store.createSession({ name: "a", ttlSeconds: 10, lockDelaySeconds: 2 });
    const b = await store.createSession({ name: "b", ttlSeconds: 10 });
    assert(await store.tryAcquireLock("k", a, "a"));
    await store.destroySession(a);
    assertEquals((await store.get("k"))?.session, undefined, "behaviour 'release' frees the key");
    const t0 = Date.now();
    assertEquals(await store.tryAcquireLock("k", b, "b"), false, "still inside a's lock-delay");
    await waitFor("lock-delay to pass", () => store.tryAcquireLock("k", b, "b"), {
      timeoutMs: 5000,
      intervalMs: 200,
    });
    const waited = Date.now() - t0;
    assert(waited >= 1000 && waited < 4000, `acquired after ${waited} ms`);
  });
});

Deno.test("ConsulStore.tryAcquireLock() with a session that does not exist throws SessionGoneError", async () => {
  await withConsul(async (store) => {
    const e = await assertRejects(
      () => store.tryAcquireLock("k", "00000000-0000-0000-0000-000000000000", "v"),
      SessionGoneError,
    );
    assertEquals(e.sessionId, "00000000-0000-0000-0000-000000000000");
  });
});

Deno.test("ConsulStore.tryAcquireLockIfUnchanged() takes the lock only if nobody wrote the key since it was read", async () => {
  await withConsul(async (store) => {
    const a = await store.createSession({ name: "a", ttlSeconds: 10, lockDelaySeconds: 2 });
    const b = await store.createSession({ name: "b", ttlSeconds: 10 });
    // Index 0: only if the key does not exist.
    assertEquals(await store.tryAcquireLockIfUnchanged("f", a, "a: élan", 0), true);
    assertEquals(await store.tryAcquireLockIfUnchanged("f", b, "b", 0), false, "it exists now");
    const held = await store.get("f");
    assertEquals([held?.value, held?.session], ["a: élan", a], "UTF-8 value and holder");
    assertEquals(await store.tryAcquireLockIfUnchanged("f", b, "b", held!.modifyIndex), false, "a holds it");
    assert(await store.releaseLock("f", a, "a's record"));
    const read = await store.get("f");
    await store.put("f", "written in between");
    assertEquals(
      await store.tryAcquireLockIfUnchanged("f", b, "b", read!.modifyIndex),
      false,
      "changed since",
    );
    assertEquals((await store.get("f"))?.value, "written in between", "a refused take changes nothing");
    const now = await store.get("f");
    assertEquals(await store.tryAcquireLockIfUnchanged("f", b, "b", now!.modifyIndex), true);
    assertEquals((await store.get("f"))?.session, b);
    // A dead holder's lock-delay holds here too.
    const c = await store.createSession({ name: "c", ttlSeconds: 10 });
    assert(await store.tryAcquireLock("g", a, "a"));
    await store.destroySession(a);
    const freed = await store.get("g");
    assertEquals(freed?.session, undefined);
    assertEquals(await store.tryAcquireLockIfUnchanged("g", c, "c", freed!.modifyIndex), false, "lock-delay");
    await assertRejects(
      () => store.tryAcquireLockIfUnchanged("h", "00000000-0000-0000-0000-000000000000", "v", 0),
      SessionGoneError,
    );
  });
});

Deno.test("ConsulStore.unlockIfUnchanged() frees a key from its holder only if nobody wrote it since it was read", async () => {
  await withConsul(async (store) => {
    const a = await store.createSession({ name: "a", ttlSeconds: 10 });
    const b = await store.createSession({ name: "b", ttlSeconds: 10 });
    assert(await store.tryAcquireLock("p", a, "a"));
    const read = (await store.get("p"))!;
    assertEquals(await store.unlockIfUnchanged("p", b, "x", read.modifyIndex), false, "b does not hold it");
    assertEquals(await store.unlockIfUnchanged("p", a, "x", read.modifyIndex + 1000), false, "other index");
    assert(await store.tryAcquireLock("p", a, "a again")); // the holder's heartbeat: a new index
    assertEquals(await store.unlockIfUnchanged("p", a, "x", read.modifyIndex), false, "moved since");
    assertEquals((await store.get("p"))?.session, a, "a refused takeover changes nothing");
    const now = (await store.get("p"))!;
    assertEquals(await store.unlockIfUnchanged("p", a, "a: été", now.modifyIndex), true);
    const freed = await store.get("p");
    assertEquals([freed?.session, freed?.value], [undefined, "a: été"]);
    assert(
      await store.sessionExists(a),
      "the holder's session lives on (Consul 1.14's /txn has no Session op)",
    );
    assert(await store.tryAcquireLock("p", b, "b"), "free at once: no lock-delay");
    assertEquals(await store.tryAcquireLock("p", a, "a"), false, "the old holder's heartbeat fails now");
  });
});

Deno.test("ConsulStore: an unrenewed TTL session expires within twice its TTL and frees its lock", async () => {
  await withConsul(async (store) => {
    const id = await store.createSession({ name: "short", ttlSeconds: 10 });
    assert(await store.tryAcquireLock("expiring", id, "v"));
    const t0 = Date.now();
    await waitFor("the session to expire", async () => !(await store.sessionExists(id)), {
      timeoutMs: 25_000,
      intervalMs: 250,
    });
    const took = Date.now() - t0;
    assert(took >= 9_000, `expired after only ${took} ms`);
    assertEquals((await store.get("expiring"))?.session, undefined);
  });
});

Deno.test("ConsulStore.putIfUnchanged() is create-only at index 0 and compare-and-set after", async () => {
  await withConsul(async (store) => {
    assertEquals(await store.putIfUnchanged("svc/last-backup", "a", 0), true);
    assertEquals(await store.putIfUnchanged("svc/last-backup", "b", 0), false, "exists already");
    const entry = await store.get("svc/last-backup");
    assertEquals(entry?.value, "a");
    assertEquals(await store.putIfUnchanged("svc/last-backup", "c", entry!.modifyIndex), true);
    assertEquals(
      await store.putIfUnchanged("svc/last-backup", "d", entry!.modifyIndex),
      false,
      "index moved on",
    );
    assertEquals((await store.get("svc/last-backup"))?.value, "c");
  });
});

Deno.test("ConsulStore.getJson() round-trips values and names the key when a value is not JSON", async () => {
  await withConsul(async (store) => {
    const manifest = { name: "mysql-backup-2026", gtid: "0-1-3", size: 123, nested: { ok: true } };
    await store.putJson("svc/manifest", manifest);
    assertEquals((await store.getJson("svc/manifest"))?.value, manifest);
    assertEquals(await store.getJson("svc/missing"), undefined);
    await store.put("svc/text", "not json");
    await assertRejects(
      () => store.getJson("svc/text"),
      SyntaxError,
      "Cannot parse Consul key 'svc/text' as JSON",
    );
    assert(await store.putJsonIfUnchanged("svc/new", [1], 0));
    assertEquals((await store.getPrefix("svc/")).map((e) => e.key), ["svc/manifest", "svc/new", "svc/text"]);
    await store.delete("svc/text");
    assertEquals(await store.get("svc/text"), undefined);
  });
});

Deno.test("ConsulStore.passingInstances() lists only instances whose checks pass", async () => {
  await withConsul(async (store, server) => {
    for (const [id, address] of [["mysql-n1", "10.99.0.11"], ["mysql-n2", "10.99.0.12"]]) {
      const res = await fetch(`${server.url}/v1/agent/service/register`, {
        method: "PUT",
        body: JSON.stringify({ ID: id, Name: "mysql", Address: address, Port: 3306, Check: { TTL: "30s" } }),
      });
      assertEquals(res.status, 200, await res.text());
    }
    assertEquals(await store.passingInstances("mysql"), [], "TTL checks start critical");
    await (await fetch(`${server.url}/v1/agent/check/pass/service:mysql-n2`, { method: "PUT" })).body
      ?.cancel();
    const passing = await store.passingInstances("mysql");
    assertEquals(passing.map((i) => [i.id, i.address, i.port]), [["mysql-n2", "10.99.0.12", 3306]]);
    assertEquals(await store.passingInstances("no-such-service"), []);
  });
});

Deno.test("ConsulStore registers, passes and removes an agent service, and lists critical service checks", async () => {
  await withConsul(async (store, server) => {
    const service = {
      id: "shop-primary-n1",
      name: "shop-primary",
      address: "10.99.0.11",
      port: 3306,
      ttlSeconds: 10,
      deregisterAfter: "1m",
    };
    assertEquals(await store.passServiceCheck(service.id), false, "an unknown check is not an error");
    await store.registerService(service);
    const passing = await store.passingInstances("shop-primary");
    assertEquals(passing.map((i) => [i.id, i.address, i.port]), [["shop-primary-n1", "10.99.0.11", 3306]]);
    const checks = await rawGet(server, "/v1/agent/checks") as Record<string, Record<string, unknown>>;
    const check = checks["service:shop-primary-n1"];
    assertEquals(check.Status, "passing", "a registered primary service passes at once");
    assertEquals(check.Type, "ttl");
    assertEquals(await store.passServiceCheck(service.id), true);
    assertEquals(await store.criticalServiceChecks(), []);

    // A critical one (a TTL check that never passed), as ContainerPilot leaves behind for a dead node.
    const res = await fetch(`${server.url}/v1/agent/service/register`, {
      method: "PUT",
      body: JSON.stringify({
        ID: "shop-c0ffee",
        Name: "shop",
        Tags: ["x"],
        Port: 3306,
        Check: { TTL: "30s" },
      }),
    });
    assertEquals(res.status, 200, await res.text());
    const critical = await store.criticalServiceChecks();
    assertEquals(critical.map((c) => c.serviceId), ["shop-c0ffee"]);
    assert(critical[0].node !== "", "the node is named, for a catalog deregistration");

    assertEquals(await store.deregisterService("shop-c0ffee"), true);
    assertEquals(await store.deregisterService(service.id), true);
    assertEquals(await store.passingInstances("shop-primary"), []);
    assertEquals(await store.criticalServiceChecks(), []);
    assertEquals(await store.deregisterService("shop-primary-n1"), false, "gone already, and no node named");
  });
});

Deno.test("ConsulStore reports an unreachable agent as ConsulUnavailableError within its timeout", async () => {
  const store = new ConsulStore(configFor(freePort(), 1000));
  try {
    await assertRejects(
      () => store.get("k"),
      ConsulUnavailableError,
      "Cannot reach Consul (kv get): ECONNREFUSED",
    );
    await assertRejects(() => store.createSession({ name: "s", ttlSeconds: 10 }), ConsulUnavailableError);
  } finally {
    store.close();
  }
});

Deno.test("ConsulStore keeps working across a Consul restart (keep-alive sockets under this Deno)", async () => {
  await using h = await Harness.create();
  const first = await h.startConsul();
  const store = new ConsulStore(configFor(first.port));
  try {
    for (let i = 0; i < 20; i++) await store.put(`ka/${i}`, "x".repeat(200));
    await first.stop();
    // A new agent on the same port: the pooled sockets now point at a dead peer.
    const second = await startConsul({ group: h.group, httpPort: first.port });
    assertEquals(second.port, first.port);
    const t0 = performance.now();
    await store.put("ka/after-restart", "y".repeat(200)); // a PUT with a body on a stale socket: must not hang
    assertEquals((await store.get("ka/after-restart"))?.value, "y".repeat(200));
    assert(performance.now() - t0 < 2000, "requests after the restart were slow");
  } finally {
    store.close();
  }
});

Deno.test("ConsulStore sends CONSUL_HTTP_TOKEN as the X-Consul-Token header: Consul with ACLs refuses a wrong one", async () => {
  await using h = await Harness.create();
  const server = await startConsul({
    group: h.group,
    hcl: [
      'acl { enabled = true, default_policy = "allow", tokens { initial_management = "root-secret-1" } }',
    ],
  });
  const withToken = (token?: string) =>
    new ConsulStore({ ...configFor(server.port), ...(token ? { token: new Secret(token) } : {}) });
  const management = withToken("root-secret-1");
  const anonymous = withToken();
  const wrong = withToken("not-a-token");
  try {
    await management.put("acl/k", "v");
    assertEquals((await anonymous.get("acl/k"))?.value, "v", "anonymous may read under default allow");
    // A token Consul does not know is refused: only sent as the header would Consul see it at all.
    const e = await assertRejects(() => wrong.get("acl/k"), ConsulRequestError, "ACL not found");
    assertEquals(e.status, 403);
    assert(!e.message.includes("not-a-token"), e.message);
  } finally {
    for (const s of [management, anonymous, wrong]) s.close();
  }
});

Deno.test("ConsulStore gives up on an agent that never answers after CONSUL_TIMEOUT, token in a header only", async () => {
  // Accepts the connection and reads the request, then says nothing: a hung agent.
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const received: string[] = [];
  const held: Deno.Conn[] = [];
  const accepting = (async () => {
    for await (const conn of listener) {
      held.push(conn);
      const buf = new Uint8Array(4096);
      const n = await conn.read(buf);
      received.push(new TextDecoder().decode(buf.subarray(0, n ?? 0)));
    }
  })();
  const store = new ConsulStore({ ...configFor(listener.addr.port, 500), token: new Secret("tok-secret-2") });
  try {
    const t0 = performance.now();
    await assertRejects(
      () => store.get("k"),
      ConsulUnavailableError,
      "Cannot reach Consul (kv get): ETIMEDOUT",
    );
    const took = performance.now() - t0;
    assert(took >= 450 && took < 2000, `gave up after ${took.toFixed(0)} ms`);
    const [head] = received;
    const [requestLine, ...headers] = head.split("\r\n");
    assertEquals(requestLine, "GET /v1/kv/k HTTP/1.1");
    assert(headers.some((l) => /^x-consul-token: tok-secret-2$/i.test(l)), head);
  } finally {
    store.close();
    listener.close();
    for (const c of held) c.close();
    await accepting.catch(() => {});
  }
});

Deno.test("ConsulStore follows no redirect: the token never goes where an answer points", async () => {
  // Something other than Consul on the agent's address that redirects, and the address it redirects to.
  const elsewhere = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const reached: string[] = [];
  const watching = (async () => {
    for await (const conn of elsewhere) {
      const buf = new Uint8Array(4096);
      reached.push(new TextDecoder().decode(buf.subarray(0, (await conn.read(buf)) ?? 0)));
      conn.close();
    }
  })();
  const redirecting = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen: () => {} },
    () =>
      new Response("", {
        status: 307,
        headers: { location: `http://127.0.0.1:${elsewhere.addr.port}/v1/kv/k` },
      }),
  );
  const store = new ConsulStore({ ...configFor(redirecting.addr.port), token: new Secret("tok-secret-3") });
  try {
    const e = await assertRejects(
      () => store.get("k"),
      ConsulRequestError,
      "Consul refused kv get (HTTP 307)",
    );
    assertEquals(e.status, 307);
    assertEquals(reached, [], "the redirect was followed");
  } finally {
    store.close();
    await redirecting.shutdown();
    elsewhere.close();
    await watching.catch(() => {});
  }
});

Deno.test("ConsulStore over HTTPS to an agent that verifies its clients: CONSUL_CLIENT_CERT and KEY are presented", async () => {
  await using h = await Harness.create();
  const tls = await makeConsulTls(`${h.dir}/tls`, ["127.0.0.1"]);
  const server = await startConsul({ group: h.group, tls: { ...tls, client: tls.clientPair } });
  const https = { ...configFor(server.port), scheme: "https" as const, url: server.url, caFile: tls.caFile };
  const withPair = new ConsulStore({
    ...https,
    clientCert: tls.clientPair.certFile,
    clientKey: tls.clientPair.keyFile,
  });
  const without = new ConsulStore(https);
  try {
    await withPair.put("mtls/k", "v");
    assertEquals((await withPair.get("mtls/k"))?.value, "v");
    // Without a client certificate the agent refuses it, never answering over plain HTTP: as an alert in the
    // handshake or, TLS 1.3 checking the client's certificate after it, as the connection closed. Both name
    // the variables to set.
    const e = await assertRejects(() => without.get("mtls/k"), ConsulUnavailableError);
    assert(
      e.message.includes("(CertificateRequired): it verifies its clients, so set CONSUL_CLIENT_CERT") ||
        e.message.includes("(if Consul verifies its clients, set CONSUL_CLIENT_CERT and CONSUL_CLIENT_KEY)"),
      e.message,
    );
    assert(!e.message.includes("\n"), e.message);
  } finally {
    withPair.close();
    without.close();
  }
});

Deno.test("a lock refused by ACLs is an ACL error naming the key, never 'someone else holds it' (/txn answers 409)", async () => {
  await using h = await Harness.create();
  const managementToken = crypto.randomUUID();
  const server = await startConsul({ group: h.group, acl: { managementToken } });
  const weak = await createAclToken(
    server,
    "keys-read-only",
    'key_prefix "" { policy = "read" }\nsession_prefix "" { policy = "write" }',
  );
  const store = new ConsulStore({ ...configFor(server.port), token: new Secret(weak) });
  try {
    const session = await store.createSession({ name: "acl-test", ttlSeconds: 30 });
    for (
      const attempt of [
        () => store.tryAcquireLockIfUnchanged("mysql-primary", session, "{}", 0),
        () => store.tryAcquireLock("mysql-primary", session, "{}"),
        () => store.put("mysql-last-backup", "{}"),
      ]
    ) {
      const e = await assertRejects(attempt, ConsulAclError);
      assert(e.message.includes('lacks key:write on "mysql-'), e.message);
      assert(e.message.includes("Consul ACL policy"), e.message);
      assert(!e.message.includes(weak), "the token is in the message");
    }
    // A read the token may make of keys that are not there is still "none", not a refusal.
    assertEquals(await store.getPrefix("mysql-"), []);
  } finally {
    store.close();
  }
});
