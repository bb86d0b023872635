/**
 * The Manta store against a local Manta-protocol server (tests/integration/harness/manta.ts) that verifies
 * every request's HTTP Signature with the account's public key: the snapshot store contract
 * (store_contract.ts), what only Manta does (signatures, paging, streamed uploads and their size limit, TLS),
 * and a two-node cluster whose snapshots go
 * through it (SNAPSHOT_BACKEND=manta, the CLI under -P=autopilot inside network namespaces).
 */
import { assert, assertEquals, assertRejects, assertThrows } from "../unit/assert.ts";
import { type MantaConfig, Secret } from "../../src/config.ts";
import { MantaStore } from "../../src/storage/manta.ts";
import { StoreUnavailableError } from "../../src/storage/store.ts";
import { Cluster } from "./cluster.ts";
import { freePort, Harness, pathExists, waitFor } from "./harness/mod.ts";
import { type MantaServer, startManta } from "./harness/manta.ts";
import { filesBelow, listKeys, readText, storeContract, text, unlisted } from "./store_contract.ts";

const USER = "acct";
const BUCKET = `/${USER}/stor/snapshots`;

/** A throwaway key pair made by ssh-keygen: private key text, public key line, MD5 fingerprint. */
interface KeyPair {
  readonly privateKey: string;
  readonly publicKey: string;
  readonly md5: string;
}

async function keyPair(type: "rsa" | "ed25519", pem = false): Promise<KeyPair> {
  const dir = await Deno.makeTempDir({ prefix: "autopilot-key-" });
  try {
    const args = ["-q", "-t", type, "-N", "", "-C", "test", "-f", `${dir}/id`];
    if (type === "rsa") args.push("-b", "2048");
    if (pem) args.push("-m", "PEM");
    const gen = await new Deno.Command("ssh-keygen", { args, stdout: "null", stderr: "piped" }).output();
    assert(gen.success, new TextDecoder().decode(gen.stderr));
    const fp = await new Deno.Command("ssh-keygen", { args: ["-E", "md5", "-lf", `${dir}/id.pub`] }).output();
    const md5 = /MD5:([0-9a-f:]+)/.exec(new TextDecoder().decode(fp.stdout))![1];
    return {
      privateKey: await Deno.readTextFile(`${dir}/id`),
      publicKey: await Deno.readTextFile(`${dir}/id.pub`),
      md5,
    };
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

function config(server: MantaServer, key: KeyPair, over: Partial<MantaConfig> = {}): MantaConfig {
  return {
    url: server.url,
    user: USER,
    keyId: key.md5,
    privateKey: new Secret(key.privateKey),
    bucket: BUCKET,
    tlsInsecure: false,
    ...over,
  };
}

/** Asserts a message carries no part of the private key. */
function assertNoKey(message: string, key: KeyPair): void {
  assert(!message.includes("PRIVATE KEY"), message);
  const body = key.privateKey.split("\n").filter((l) => l && !l.startsWith("-----"));
  for (const line of body) assert(!message.includes(line.slice(0, 16)), `key material in: ${message}`);
}

const rsa = await keyPair("rsa");

storeContract("manta", async () => {
  const server = await startManta({ user: USER, publicKeys: [rsa.publicKey] });
  let n = 0;
  return {
    async newStore() {
      const dir = `${BUCKET}/contract-${++n}`;
      await server.mkdirp(dir);
      const store = new MantaStore(config(server, rsa, { bucket: dir }));
      const hidden = async () => [
        ...(await filesBelow(`${server.root}/.uploads`)).map((f) => `upload in progress: .uploads/${f}`),
        ...await unlisted(store, server.file(dir)),
      ];
      return { store, hidden };
    },
    [Symbol.asyncDispose]: () => server.stop(),
  };
});

Deno.test("MantaStore signs every request with an RSA (OpenSSH or PEM) or Ed25519 key", async () => {
  const pem = await keyPair("rsa", true);
  const ed = await keyPair("ed25519");
  await using server = await startManta({
    user: USER,
    publicKeys: [rsa.publicKey, pem.publicKey, ed.publicKey],
  });
  await server.mkdirp(BUCKET);
  assertEquals(
    server.fingerprints,
    [rsa.md5, pem.md5, ed.md5],
    "the harness computes ssh-keygen's fingerprints",
  );
  for (const key of [rsa, pem, ed]) {
    const store = new MantaStore(config(server, key));
    assertEquals(store.location, `${server.url}${BUCKET}`);
    const keys = ["a-1", "a-2", "b-1", "sub/a-3", "sub/deeper/c-4"];
    for (const k of keys) await store.put(k, text(`content of ${k}`));
    assertEquals(await readText(store, "sub/deeper/c-4"), "content of sub/deeper/c-4");
    assertEquals(await listKeys(store), keys);
    await store.delete(await listKeys(store));
    assertEquals(await listKeys(store), []);
    const used = server.requests.filter((r) => r.keyId?.endsWith(key.md5));
    assert(used.length > 10, `requests signed with ${key.md5}`);
  }
  assertEquals(server.requests.filter((r) => r.status === 401 || r.status === 403), []);
});

Deno.test("MantaStore lists directories with more entries than one page", async () => {
  await using server = await startManta({ user: USER, publicKeys: [rsa.publicKey] });
  await server.mkdirp(`${BUCKET}/many`);
  for (let i = 0; i < 1205; i++) {
    await Deno.writeTextFile(server.file(`${BUCKET}/many/k-${String(i).padStart(4, "0")}`), "x");
  }
  const store = new MantaStore(config(server, rsa));
  const keys = (await Array.fromAsync(store.list("many/"))).map((o) => o.key);
  assertEquals(keys.length, 1205);
  assertEquals(new Set(keys).size, 1205);
  assert(server.requests.filter((r) => r.method === "GET").length >= 2, "paged with limit and marker");
});

Deno.test("MantaStore streams a large object up and down without a content-length", async () => {
  await using server = await startManta({ user: USER, publicKeys: [rsa.publicKey] });
  await server.mkdirp(BUCKET);
  const store = new MantaStore(config(server, rsa));
  const size = 48 * 1024 * 1024;
  const chunk = 256 * 1024;
  let produced = 0;
  const up = new ReadableStream<Uint8Array>({
    pull(c) {
      if (produced >= size) return c.close();
      const b = new Uint8Array(chunk);
      for (let i = 0; i < chunk; i += 4096) b[i] = (produced + i) % 251;
      produced += chunk;
      c.enqueue(b);
    },
  }, { highWaterMark: 1 });
  const info = await store.put("big/object.bin", up);
  assertEquals(info.size, size);
  assertEquals((await Deno.stat(server.file(`${BUCKET}/big/object.bin`))).size, size);
  const put = server.requests.find((r) => r.method === "PUT" && r.path.endsWith("object.bin"))!;
  assertEquals(put.chunked, true, "the body was streamed, not sent with a precomputed length");
  let read = 0;
  let mismatch = 0;
  for await (const b of await store.get("big/object.bin")) {
    for (let i = 0; i < b.length; i++) {
      const pos = read + i;
      if (pos % 4096 === 0 && b[i] !== pos % 251) mismatch++;
    }
    read += b.length;
  }
  assertEquals([read, mismatch], [size, 0]);
});

Deno.test("MantaStore.put() raises Manta's limit for streamed objects with max-content-length when told the bound", async () => {
  // Manta refuses a streamed object over 5 GB unless max-content-length says more; here the limit is 1 MiB.
  await using server = await startManta({
    user: USER,
    publicKeys: [rsa.publicKey],
    streamLimitBytes: 1024 ** 2,
  });
  await server.mkdirp(BUCKET);
  const store = new MantaStore(config(server, rsa));
  const body = () => ReadableStream.from([new Uint8Array(1024 ** 2), new Uint8Array(1024)]);
  const e = await assertRejects(() => store.put("over.bin", body()), StoreUnavailableError);
  assert(
    e.message.includes(
      "refused 'over.bin' after 1049600 bytes as too large (HTTP 413 RequestEntityTooLarge",
    ) &&
      e.message.endsWith("streamed objects are limited to 5 GB unless the upload says how big it may get"),
    e.message,
  );
  assertEquals(await pathExists(server.file(`${BUCKET}/over.bin`)), false);
  const info = await store.put("over.bin", body(), undefined, { maxBytes: 2 * 1024 ** 2 });
  assertEquals(info.size, 1024 ** 2 + 1024);
  const puts = server.requests.filter((r) => r.method === "PUT" && r.path.endsWith("over.bin"));
  assertEquals(puts.map((r) => [r.status, r.maxContentLength]), [[413, undefined], [
    204,
    String(2 * 1024 ** 2),
  ]]);
});

Deno.test("MantaStore.put() cuts the request mid-body when the source fails, so Manta never commits it", async () => {
  await using server = await startManta({ user: USER, publicKeys: [rsa.publicKey] });
  await server.mkdirp(BUCKET);
  const store = new MantaStore(config(server, rsa));
  await store.put("dir/broken.bin", text("the previous version"));
  let sent = 0;
  const failing = new ReadableStream<Uint8Array>({
    pull(c) {
      if (sent >= 4 * 1024 * 1024) return c.error(new Error("backup tool died"));
      sent += 64 * 1024;
      c.enqueue(new Uint8Array(64 * 1024));
    },
  });
  await assertRejects(() => store.put("dir/broken.bin", failing), Error, "backup tool died");
  await waitFor(
    "the server to see the aborted upload",
    () => Promise.resolve(server.requests.some((r) => r.code === "aborted")),
  );
  const puts = server.requests.filter((r) => r.method === "PUT" && r.path.endsWith("/dir/broken.bin"));
  assertEquals(puts.map((r) => r.code), [undefined, "aborted"]);
  assertEquals(await readText(store, "dir/broken.bin"), "the previous version");
  assertEquals([...Deno.readDirSync(`${server.root}/.uploads`)], [], "no temporary upload left");
});

Deno.test("MantaStore reports a refused key, a wrong key id, a missing directory and no server as unavailable", async () => {
  await using server = await startManta({ user: USER, publicKeys: [rsa.publicKey] });
  await server.mkdirp(BUCKET);
  const other = await keyPair("rsa");

  const stranger = new MantaStore(config(server, other));
  const refused = await assertRejects(() => stranger.put("x", text("x")), StoreUnavailableError);
  assert(refused.message.includes(`/acct/keys/${other.md5}`), refused.message);
  assert(refused.message.includes("InvalidKeyId"), refused.message);
  assertNoKey(refused.message, other);
  assertEquals(server.requests.at(-1)?.status, 403);
  const listing = await assertRejects(() => Array.fromAsync(stranger.list()), StoreUnavailableError);
  assertNoKey(listing.message, other);

  const wrongUser = new MantaStore(config(server, rsa, { user: "someone" }));
  await assertRejects(() => wrongUser.get("x"), StoreUnavailableError, "refused /someone/keys/");

  const mismatch = assertThrows(
    () => new MantaStore(config(server, rsa, { keyId: other.md5 })),
    StoreUnavailableError,
  );
  assertEquals(
    mismatch.message,
    `MANTA_KEY_ID ${other.md5} is not the fingerprint of MANTA_PRIVATE_KEY (${rsa.md5}): ` +
      "set MANTA_KEY_ID to it or run scripts/setup.sh again",
  );
  new MantaStore(config(server, rsa, { keyId: `MD5:${rsa.md5.toUpperCase()}` })); // ssh-keygen's spelling works
  const garbage = assertThrows(
    () =>
      new MantaStore(
        config(server, rsa, { privateKey: new Secret("-----BEGIN RSA PRIVATE KEY-----\nAAAA\n") }),
      ),
    StoreUnavailableError,
    "MANTA_PRIVATE_KEY cannot be used",
  );
  assert(!garbage.message.includes("AAAA"), garbage.message);

  const missing = new MantaStore(config(server, rsa, { bucket: `/${USER}/stor/nowhere` }));
  const noDir = await assertRejects(() => missing.put("a/b", text("x")), StoreUnavailableError);
  assert(noDir.message.startsWith(`Manta directory /${USER}/stor/nowhere does not exist`), noDir.message);
  await assertRejects(() => missing.put("top", text("x")), StoreUnavailableError, "does not exist");
  await assertRejects(() => Array.fromAsync(missing.list()), StoreUnavailableError, "does not exist");

  const port = freePort();
  const away = new MantaStore(config(server, rsa, { url: `http://127.0.0.1:${port}` }));
  const down = await assertRejects(() => away.get("x"), StoreUnavailableError);
  assert(down.message.startsWith(`Cannot reach Manta at http://127.0.0.1:${port}`), down.message);
  await assertRejects(() => away.put("x", text("x")), StoreUnavailableError, "Cannot reach Manta");
});

Deno.test("MantaStore over HTTPS checks the certificate unless MANTA_TLS_INSECURE is set", async () => {
  const dir = await Deno.makeTempDir({ prefix: "autopilot-tls-" });
  try {
    const gen = await new Deno.Command("openssl", {
      args: ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1"]
        .concat(["-keyout", `${dir}/key.pem`, "-out", `${dir}/cert.pem`]),
      stdout: "null",
      stderr: "null",
    }).output();
    assert(gen.success, "openssl req failed");
    const tls = {
      cert: await Deno.readTextFile(`${dir}/cert.pem`),
      key: await Deno.readTextFile(`${dir}/key.pem`),
    };
    await using server = await startManta({ user: USER, publicKeys: [rsa.publicKey], tls });
    await server.mkdirp(BUCKET);
    assert(server.url.startsWith("https://"));
    const strict = new MantaStore(config(server, rsa));
    await assertRejects(
      () => strict.put("x", text("x")),
      StoreUnavailableError,
      "Cannot reach Manta at https://",
    );
    const insecure = new MantaStore(config(server, rsa, { tlsInsecure: true }));
    await insecure.put("x", text("over tls"));
    assertEquals(await readText(insecure, "x"), "over tls");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("the fake Manta refuses unsigned, badly signed and stale requests", async () => {
  await using server = await startManta({ user: USER, publicKeys: [rsa.publicKey] });
  const { createPrivateKey, sign } = await import("node:crypto");
  const key = createPrivateKey(await pemOf(rsa));
  const signed = (date: string, body = `date: ${date}`) =>
    `Signature keyId="/${USER}/keys/${rsa.md5}",algorithm="rsa-sha256",headers="date",signature="${
      sign("sha256", new TextEncoder().encode(body), key).toString("base64")
    }"`;
  const now = new Date().toUTCString();
  const status = async (headers: Record<string, string>) => {
    const res = await fetch(`${server.url}${BUCKET.replace("/snapshots", "")}`, { headers });
    await res.body?.cancel();
    return res.status;
  };
  assertEquals(await status({ date: now, authorization: signed(now) }), 200);
  assertEquals(await status({ date: now }), 401);
  assertEquals(await status({ date: now, authorization: signed(now, "date: something else") }), 403);
  const old = new Date(Date.now() - 3600_000).toUTCString();
  assertEquals(await status({ date: old, authorization: signed(old) }), 403);
  assertEquals(server.requests.at(-1)?.code, "RequestTimeTooSkewed");
});

/** The PEM form of an OpenSSH-format private key (ssh-keygen converts a copy). */
async function pemOf(key: KeyPair): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix: "autopilot-key-" });
  try {
    await Deno.writeTextFile(`${dir}/id`, key.privateKey, { mode: 0o600 });
    const out = await new Deno.Command("ssh-keygen", {
      args: ["-p", "-m", "PEM", "-N", "", "-P", "", "-f", `${dir}/id`],
      stdout: "null",
      stderr: "null",
    }).output();
    assert(out.success);
    return await Deno.readTextFile(`${dir}/id`);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("a cluster with SNAPSHOT_BACKEND=manta: the primary's first snapshot lands in Manta and a replica restores it", async () => {
  await using h = await Harness.create({ nodes: 2 });
  const c = await Cluster.create(h);
  await using manta = await startManta({
    user: USER,
    publicKeys: [rsa.publicKey],
    hostname: h.net.hostAddress,
    dir: `${h.dir}/manta`,
  });
  await manta.mkdirp(BUCKET);
  const env = {
    SNAPSHOT_BACKEND: "manta",
    MANTA_URL: manta.url,
    MANTA_USER: USER,
    MANTA_KEY_ID: rsa.md5,
    MANTA_PRIVATE_KEY: rsa.privateKey.replaceAll("\n", "#"),
    MANTA_BUCKET: BUCKET,
  };
  const [n1, n2] = [c.node(1, env), c.node(2, env)];
  const health = await c.boot(n1);
  assertEquals(health.code, 0, health.stderr);
  assertEquals(await c.primaryName(), "n1");
  assert(!health.stderr.includes(rsa.privateKey.split("\n")[1]), "the private key reached the log");

  const consul = c.consul();
  let name: string;
  try {
    const entry = await consul.get("mysql-last-backup");
    assert(entry !== undefined, `LAST_BACKUP_KEY not written: ${health.stderr}`);
    name = JSON.parse(entry.value).name;
  } finally {
    consul.close();
  }
  const stored = [...Deno.readDirSync(manta.file(BUCKET))].map((e) => e.name);
  assert(stored.includes(`${name}.xbstream.zst`), stored.join());
  assert(stored.includes(`${name}.manifest.json`), stored.join());
  assertEquals(manta.requests.filter((r) => r.status === 401 || r.status === 403), []);
  // The data object's upload named its bound: 1.5 x the datadir + 1 GiB, so big snapshots pass the 5 GB default.
  const upload = manta.requests.find((r) => r.method === "PUT" && r.path.endsWith(`${name}.xbstream.zst`));
  const bound = Number(upload?.maxContentLength);
  assert(
    bound > 1024 ** 3 && bound < 1024 ** 3 + 1.5 * 1024 ** 3,
    `max-content-length ${upload?.maxContentLength}`,
  );

  await using app = await c.app(n1);
  await app.run(["CREATE TABLE app.t (id INT PRIMARY KEY)", "INSERT INTO app.t VALUES (1), (2)"]);

  const pre = await c.preStart(n2);
  assertEquals(pre.code, 0, pre.stderr);
  assert(pre.stderr.includes("Restoring snapshot"), pre.stderr);
  assert(
    manta.requests.some((r) =>
      r.method === "GET" && r.path.endsWith(`${name}.xbstream.zst`) && r.status === 200
    ),
    "n2 read the snapshot from Manta",
  );
  await c.startMysqld(n2);
  const h2 = await c.run(n2, ["health"]);
  assertEquals(h2.code, 0, h2.stderr);
  await app.query("INSERT INTO app.t VALUES (3)");
  await waitFor("row 3 on n2", async () => {
    return (await c.rows(n2)) === 3;
  });
});
