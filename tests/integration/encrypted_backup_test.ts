/**
 * Encrypted snapshots and archived binlogs against a real MariaDB and the local directory store: mariabackup |
 * zstd | age --encrypt into the store; age -d | zstd -d | mbstream back; a point-in-time restore that decrypts
 * the archived binlogs too.
 */
import { assert, assertEquals, assertRejects } from "../unit/assert.ts";
import { takeSnapshot } from "../../src/backup/backup.ts";
import { type Keyring, openKeyring } from "../../src/backup/encryption.ts";
import { CorruptSnapshotError, RestoreError } from "../../src/backup/errors.ts";
import { restoreSnapshot } from "../../src/backup/restore.ts";
import { readHead, uploadSegment } from "../../src/binlog/archiver.ts";
import { ReplayError, restoreToPoint } from "../../src/binlog/replay.ts";
import { Secret } from "../../src/config.ts";
import { LocalStore } from "../../src/storage/local.ts";
import { S3Store } from "../../src/storage/s3.ts";
import type { SnapshotStore } from "../../src/storage/store.ts";
import { AwsClient } from "aws4fetch";
import { Harness, type MariadbNode, pathExists, runOk, waitFor } from "./harness/mod.ts";
import { serve } from "./restored_server.ts";

const ROW = "secret-row-payload-7f3a";

function assertStringIncludes(actual: string, expected: string): void {
  assert(actual.includes(expected), `'${actual}' does not include '${expected}'`);
}

async function keygen(): Promise<{ identity: string; recipient: string }> {
  const out = await runOk("age-keygen", []);
  const identity = out.split("\n").find((l) => l.startsWith("AGE-SECRET-KEY-1"))!;
  const recipient = (await runOk("age-keygen", ["-y"], { stdin: `${identity}\n` })).trim();
  return { identity, recipient };
}

async function keyring(identity: string): Promise<Keyring> {
  return (await openKeyring({ identity: new Secret(identity) }))!;
}

async function one(node: MariadbNode, query: string): Promise<string> {
  return (await node.sql(query))[0][0];
}

async function setup(h: Harness, store: SnapshotStore = new LocalStore(`${h.dir}/snapshots`)) {
  const node = await h.startNode(1);
  await node.sql(
    "CREATE DATABASE app; USE app; CREATE TABLE t (id INT PRIMARY KEY, payload VARCHAR(64) NOT NULL); " +
      `INSERT INTO t SELECT seq, '${ROW}' FROM seq_1_to_5000;`,
  );
  const key = await keygen();
  const ring = await keyring(key.identity);
  const manifest = await takeSnapshot({
    store,
    flavour: "mariadb",
    cnfPath: node.cnf,
    socket: node.socket,
    user: "root",
    nodeName: node.name,
    serverVersion: await one(node, "SELECT VERSION()"),
    namePattern: "enc-%Y-%m-%dT%H-%M-%SZ",
    keyring: ring,
  });
  return { node, key, ring, store, manifest, path: `${h.dir}/snapshots/${manifest.key}` };
}

Deno.test("an encrypted snapshot: ciphertext in the store, restored with the key; a flipped byte, a wrong key or no key stop it in one line with nothing touched", async () => {
  await using h = await Harness.create();
  const { node, key, ring, store, manifest, path } = await setup(h);

  // Stored: age, not zstd, and no plaintext; the manifest names the recipient, never the identity.
  const bytes = await Deno.readFile(path);
  assertEquals(new TextDecoder().decode(bytes.slice(0, 21)), "age-encryption.org/v1");
  assert(!(bytes[0] === 0x28 && bytes[1] === 0xb5 && bytes[2] === 0x2f && bytes[3] === 0xfd), "zstd magic");
  const manifestText = await Deno.readTextFile(`${h.dir}/snapshots/${manifest.name}.manifest.json`);
  assertEquals(manifest.encryption, { format: "age", recipients: [key.recipient] });
  assert(!manifestText.includes("AGE-SECRET-KEY"), "the manifest holds the identity");
  const plain = await runOk("bash", [
    "-c",
    `age -d -i <(echo ${key.identity}) ${path} | zstd -d -c | grep -c ${ROW} || true`,
  ]);
  assert(Number(plain.trim()) > 0, "the decrypted snapshot lacks the row");
  assert(!new TextDecoder().decode(bytes).includes(ROW), "the stored object holds a plaintext row");

  const datadir = `${h.dir}/restored/data`;
  // No key: one line naming BACKUP_ENCRYPTION_KEY, nothing made.
  const none = await assertRejects(
    () => restoreSnapshot({ store, manifest, datadir, flavour: "mariadb" }),
    RestoreError,
  );
  assertStringIncludes(none.message, "BACKUP_ENCRYPTION_KEY is not set");
  assert(!none.message.includes("\n"));
  assert(!(await pathExists(`${h.dir}/restored`)), "a restore without the key touched the disk");

  // A wrong key: one line, nothing made.
  const other = await keyring((await keygen()).identity);
  const wrong = await assertRejects(
    () => restoreSnapshot({ store, manifest, datadir, flavour: "mariadb", keyring: other }),
    RestoreError,
  );
  assertStringIncludes(wrong.message, "BACKUP_ENCRYPTION_KEY is not the identity of any of them");
  assert(!wrong.message.includes(key.identity) && !wrong.message.includes("\n"));
  assert(!(await pathExists(`${h.dir}/restored`)), "a restore with a wrong key touched the disk");

  // With the key: the rows are back.
  const sourceChecksum = (await node.sql("CHECKSUM TABLE app.t"))[0][1];
  const result = await restoreSnapshot({ store, manifest, datadir, flavour: "mariadb", keyring: ring });
  assertEquals(result.gtid, manifest.gtid);
  const sql = await serve(h, datadir, `${h.dir}/restored`);
  assertEquals((await sql("SELECT COUNT(*) FROM app.t WHERE payload = '" + ROW + "'"))[0][0], "5000");
  assertEquals((await sql("CHECKSUM TABLE app.t"))[0][1], sourceChecksum);
  await sql("SHUTDOWN");
  await waitFor(
    "the restored mariadbd to stop",
    async () => !(await pathExists(`${h.dir}/restored/mysqld.pid`)),
  );
  await Deno.remove(`${h.dir}/restored`, { recursive: true });

  // A byte flipped in the middle: detected, one line, nothing left.
  const middle = Math.floor(bytes.length / 2);
  bytes[middle] ^= 0x01;
  await Deno.writeFile(path, bytes);
  const corrupt = await assertRejects(
    () => restoreSnapshot({ store, manifest, datadir, flavour: "mariadb", keyring: ring }),
    CorruptSnapshotError,
  );
  assertStringIncludes(corrupt.message, "its SHA-256 is");
  assert(!(await pathExists(datadir)), "the datadir exists after a corrupt restore");
  // Even with a manifest that matches the flipped bytes, age's authentication refuses them.
  const { createHash } = await import("node:crypto");
  const forged = { ...manifest, sha256: createHash("sha256").update(bytes).digest("hex") };
  const unauth = await assertRejects(
    () => restoreSnapshot({ store, manifest: forged, datadir, flavour: "mariadb", keyring: ring }),
    CorruptSnapshotError,
  );
  assertStringIncludes(unauth.message, "it does not decrypt");
  assert(!(await pathExists(datadir)), "the datadir exists after an unauthenticated restore");
  // A manifest that drops the encryption record (a forged or old plaintext one) is refused by a node with the
  // key, before anything is read, unless BACKUP_ALLOW_UNENCRYPTED; allowed, these bytes then fail at zstd.
  const { encryption: _, ...plainManifest } = forged;
  const refused = await assertRejects(
    () => restoreSnapshot({ store, manifest: plainManifest, datadir, flavour: "mariadb", keyring: ring }),
    RestoreError,
  );
  assertStringIncludes(refused.message, "is not encrypted, but BACKUP_ENCRYPTION_KEY is set");
  assert(!(await pathExists(datadir)), "the datadir exists after a refused plaintext restore");
  const allowed = { ...ring, allowUnencrypted: true };
  const unzstd = await assertRejects(
    () => restoreSnapshot({ store, manifest: plainManifest, datadir, flavour: "mariadb", keyring: allowed }),
    CorruptSnapshotError,
  );
  assertStringIncludes(unzstd.message, "does not decompress");
  assert(!(await pathExists(datadir)), "the datadir exists after an undecompressable restore");
});

Deno.test("encrypted archived binlogs: the index entry names the recipient, a point-in-time restore decrypts them, no key stops it before anything", async () => {
  await using h = await Harness.create();
  const { node, key, ring, store } = await setup(h);
  await node.sql(`INSERT INTO app.t VALUES (900001, '${ROW}-after'); FLUSH BINARY LOGS;`);
  const binlogs = (await node.sql("SHOW BINARY LOGS")).map((r) => r[0]);
  for (const file of binlogs.slice(0, -1)) {
    const head = await readHead(node.dataDir, file);
    const seg = await uploadSegment({ store, head, node: node.name, flavour: "mariadb", keyring: ring });
    assertEquals(seg.encryption, { format: "age", recipients: [key.recipient] });
    const stored = await Deno.readFile(`${h.dir}/snapshots/${seg.key}`);
    assertEquals(new TextDecoder().decode(stored.slice(0, 21)), "age-encryption.org/v1");
    assert(!new TextDecoder().decode(stored).includes(ROW), "an archived binlog holds a plaintext row");
  }
  const datadir = `${h.dir}/pitr/data`;
  await Deno.mkdir(`${h.dir}/tmp`);
  const base = {
    store,
    flavour: "mariadb" as const,
    datadir,
    target: { kind: "end" as const },
    tmpdir: `${h.dir}/tmp`,
    osUser: "root",
  };
  const none = await assertRejects(() => restoreToPoint(base), Error);
  assertStringIncludes(none.message, "BACKUP_ENCRYPTION_KEY is not set");
  assert(none instanceof ReplayError || none instanceof RestoreError, none.name);
  assert(!(await pathExists(datadir)), "a point-in-time restore without the key touched the datadir");

  const r = await restoreToPoint({ ...base, keyring: ring });
  assertEquals(r.plan.steps.length > 0, true);
  assert(await pathExists(`${datadir}/app/t.ibd`), "no app/t.ibd after the point-in-time restore");
  assertEquals(r.gtid, await one(node, "SELECT @@gtid_binlog_pos"));
  const sql = await serve(h, datadir, `${h.dir}/pitr`);
  assertEquals((await sql("SELECT payload FROM app.t WHERE id = 900001"))[0][0], `${ROW}-after`);
  assertEquals((await sql("SELECT COUNT(*) FROM app.t"))[0][0], "5001");
});

Deno.test("an encrypted snapshot in an S3 store (versitygw): ciphertext in the bucket, restored with the key", async () => {
  await using h = await Harness.create();
  const s3 = await h.startS3();
  const client = new AwsClient({
    accessKeyId: s3.accessKey,
    secretAccessKey: s3.secretKey,
    service: "s3",
    region: s3.region,
  });
  const made = await client.fetch(`${s3.endpoint}/enc`, { method: "PUT" });
  assert(made.ok, `create bucket: HTTP ${made.status} ${await made.text()}`);
  const store = new S3Store({
    endpoint: s3.endpoint,
    region: s3.region,
    bucket: "enc",
    prefix: "t/",
    forcePathStyle: true,
    accessKeyId: new Secret(s3.accessKey),
    secretAccessKey: new Secret(s3.secretKey),
  });
  const { node, ring, manifest } = await setup(h, store);
  const object = new Uint8Array(
    await (await client.fetch(`${s3.endpoint}/enc/t/${manifest.key}`)).arrayBuffer(),
  );
  assertEquals(object.length, manifest.size);
  assertEquals(new TextDecoder().decode(object.slice(0, 21)), "age-encryption.org/v1");
  assert(!new TextDecoder().decode(object).includes(ROW), "the bucket holds a plaintext row");
  const datadir = `${h.dir}/restored/data`;
  await restoreSnapshot({ store, manifest, datadir, flavour: "mariadb", keyring: ring });
  const sql = await serve(h, datadir, `${h.dir}/restored`);
  assertEquals((await sql("CHECKSUM TABLE app.t"))[0][1], (await node.sql("CHECKSUM TABLE app.t"))[0][1]);
});
