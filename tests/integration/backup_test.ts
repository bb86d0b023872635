/**
 * The snapshot pipeline against real MariaDB servers: mariabackup | zstd into a LocalStore, and back through
 * zstd -d | mbstream, mariabackup --prepare, into a datadir that a fresh mariadbd serves.
 */
import { createHash } from "node:crypto";
import { assert, assertEquals, assertRejects } from "../unit/assert.ts";
import { listSnapshots, takeSnapshot, type TakeSnapshotOptions } from "../../src/backup/backup.ts";
import { BackupError, CorruptSnapshotError, RestoreError } from "../../src/backup/errors.ts";
import {
  dataKey,
  formatManifest,
  type Manifest,
  manifestKey,
  parseManifest,
} from "../../src/backup/manifest.ts";
import { restoreSnapshot } from "../../src/backup/restore.ts";
import { LocalStore } from "../../src/storage/local.ts";
import { serve } from "./restored_server.ts";
import {
  Harness,
  type MariadbNode,
  pathExists,
  REPO_ROOT,
  run,
  runOk,
  toolPath,
  writeSecretFile,
} from "./harness/mod.ts";

const ROWS = 20_000;
const PATTERN = "test-backup-%Y-%m-%dT%H-%M-%SZ";

/** A database of ROWS rows on the node. */
async function seed(node: MariadbNode): Promise<void> {
  await node.sql(
    "CREATE DATABASE app; USE app; " +
      "CREATE TABLE t (id INT PRIMARY KEY, payload VARCHAR(64) NOT NULL, n INT NOT NULL) ENGINE=InnoDB; " +
      `INSERT INTO t SELECT seq, CONCAT('payload-', seq, '-', MD5(seq)), seq % 1000 FROM seq_1_to_${ROWS};`,
  );
}

async function one(node: MariadbNode, query: string): Promise<string> {
  return (await node.sql(query))[0][0];
}

/** A harness with one seeded node and a snapshot of it in the local store; the caller disposes `h`. */
async function seededSnapshot(
  opts: { seed?: boolean } = {},
): Promise<{ h: Harness; node: MariadbNode; opts: TakeSnapshotOptions; manifest: Manifest; path: string }> {
  const h = await Harness.create();
  try {
    const node = await h.startNode(1);
    if (opts.seed ?? true) await seed(node);
    const options = await snapshotOptions(h, node);
    const manifest = await takeSnapshot(options);
    return { h, node, opts: options, manifest, path: `${h.dir}/snapshots/${manifest.key}` };
  } catch (e) {
    await h.dispose();
    throw e;
  }
}

async function snapshotOptions(
  h: Harness,
  node: MariadbNode,
  extra: Partial<TakeSnapshotOptions> = {},
): Promise<TakeSnapshotOptions> {
  return {
    store: new LocalStore(`${h.dir}/snapshots`),
    flavour: "mariadb",
    cnfPath: node.cnf,
    socket: node.socket,
    user: "root",
    nodeName: node.name,
    serverVersion: await one(node, "SELECT VERSION()"),
    namePattern: PATTERN,
    ...extra,
  };
}

async function sha256File(path: string): Promise<string> {
  const hash = createHash("sha256");
  for await (const chunk of (await Deno.open(path)).readable) hash.update(chunk);
  return hash.digest("hex");
}

/** Every file below `dir`, relative, sorted (an absent dir has none). */
async function filesBelow(dir: string): Promise<string[]> {
  const out: string[] = [];
  const walk = async (rel: string) => {
    for await (const e of Deno.readDir(rel ? `${dir}/${rel}` : dir)) {
      const path = rel ? `${rel}/${e.name}` : e.name;
      if (e.isDirectory) await walk(path);
      else out.push(path);
    }
  };
  try {
    await walk("");
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
  return out.sort();
}

/** The datadir was not created and no staging dir is left beside it. */
async function assertNothingLeft(datadir: string): Promise<void> {
  assert(!(await pathExists(datadir)), `${datadir} exists after a failed restore`);
  const parent = datadir.slice(0, datadir.lastIndexOf("/"));
  const left = (await Array.fromAsync(Deno.readDir(parent))).map((e) => e.name).filter((n) =>
    n.includes(".restore-")
  );
  assertEquals(left, [], "staging dirs left behind");
}

Deno.test("takeSnapshot() streams a hot backup to the store and writes a manifest that describes it", async () => {
  await using h = await Harness.create();
  const node = await h.startNode(1);
  await seed(node);
  const opts = await snapshotOptions(h, node, { now: new Date("2026-11-25T19:00:00.000Z") });
  const manifest = await takeSnapshot(opts);

  const name = "test-backup-2026-11-25T19-00-00Z";
  const dataPath = `${h.dir}/snapshots/${dataKey(name)}`;
  const manifestPath = `${h.dir}/snapshots/${manifestKey(name)}`;
  assertEquals(await filesBelow(`${h.dir}/snapshots`), [manifestKey(name), dataKey(name)]);
  const stored = parseManifest(await Deno.readTextFile(manifestPath), manifestPath);
  assertEquals(stored, manifest);
  assertEquals(JSON.parse(await Deno.readTextFile(manifestPath)).sha256, manifest.sha256);

  assertEquals(manifest.name, name);
  assertEquals(manifest.key, dataKey(name));
  assertEquals(manifest.createdAt, "2026-11-25T19:00:00.000Z");
  assertEquals([manifest.nodeName, manifest.flavour, manifest.tool], ["n1", "mariadb", "mariabackup"]);
  assertEquals(manifest.serverVersion, await one(node, "SELECT VERSION()"));
  assertEquals(manifest.gtid, await one(node, "SELECT @@GLOBAL.gtid_binlog_pos"));
  assertEquals(manifest.gtid, `0-${node.serverId}-3`);
  assertEquals(manifest.sha256, await sha256File(dataPath));
  assertEquals(manifest.size, (await Deno.stat(dataPath)).size);
  assert(manifest.size > 100_000, `only ${manifest.size} bytes stored`);
  const [status] = await node.sql("SHOW MASTER STATUS");
  assertEquals(manifest.binlog.file, status[0]);
  assert(
    manifest.binlog.position > 4 && manifest.binlog.position <= Number(status[1]),
    String(manifest.binlog),
  );
  assertEquals((await listSnapshots(opts.store)).map((m) => m.name), [name]);
});

Deno.test("restoreSnapshot() restores a snapshot that a fresh mariadbd serves with the same rows and checksum", async () => {
  const snap = await seededSnapshot();
  await using h = snap.h;
  const { node, opts, manifest } = snap;
  const sourceCount = await one(node, "SELECT COUNT(*) FROM app.t");
  const sourceChecksum = (await node.sql("CHECKSUM TABLE app.t"))[0][1];
  assertEquals(sourceCount, String(ROWS));
  // A write after the backup must not be in the restored copy.
  await node.sql("INSERT INTO app.t VALUES (0, 'after the backup', 0)");

  const dir = `${h.dir}/restored`;
  const datadir = `${dir}/data`;
  const result = await restoreSnapshot({ store: opts.store, manifest, datadir, flavour: "mariadb" });
  assertEquals(result.gtid, manifest.gtid);
  assertEquals(result.binlog, manifest.binlog);
  assert(await pathExists(`${datadir}/mysql`), "no mysql/ in the restored datadir");
  assertEquals(
    (await Array.fromAsync(Deno.readDir(dir))).map((e) => e.name).filter((n) => n.includes(".restore-")),
    [],
  );

  const sql = await serve(h, datadir, dir);
  assertEquals((await sql("SELECT COUNT(*) FROM app.t"))[0][0], sourceCount);
  assertEquals((await sql("CHECKSUM TABLE app.t"))[0][1], sourceChecksum);
  assertEquals((await sql("SELECT @@server_id"))[0][0], "99");
});

Deno.test("restoreSnapshot() refuses a snapshot with bytes flipped in the store and leaves nothing behind", async () => {
  const snap = await seededSnapshot();
  await using h = snap.h;
  const { opts, manifest, path } = snap;
  const bytes = await Deno.readFile(path);
  const middle = Math.floor(bytes.length / 2);
  for (let i = middle; i < middle + 16; i++) bytes[i] ^= 0xff;
  await Deno.writeFile(path, bytes);

  const datadir = `${h.dir}/restored/data`;
  const e = await assertRejects(
    () => restoreSnapshot({ store: opts.store, manifest, datadir, flavour: "mariadb" }),
    CorruptSnapshotError,
  );
  const actual = await sha256File(path);
  assertEquals(
    e.message,
    `Snapshot '${manifest.name}' is corrupt: its SHA-256 is ${actual.slice(0, 12)}… but the manifest says ` +
      `${manifest.sha256.slice(0, 12)}…: it was not restored; take a new snapshot on the primary or ` +
      "publish an older one in LAST_BACKUP_KEY",
  );
  await assertNothingLeft(datadir);
});

Deno.test("restoreSnapshot() refuses a truncated snapshot and leaves nothing behind", async () => {
  const snap = await seededSnapshot();
  await using h = snap.h;
  const { opts, manifest, path } = snap;
  const half = Math.floor(manifest.size / 2);
  await Deno.truncate(path, half);

  const datadir = `${h.dir}/restored/data`;
  await assertRejects(
    () => restoreSnapshot({ store: opts.store, manifest, datadir, flavour: "mariadb" }),
    CorruptSnapshotError,
    `Snapshot '${manifest.name}' is corrupt: its data object is ${half} bytes but the manifest says ${manifest.size}: ` +
      "it was not restored",
  );
  await assertNothingLeft(datadir);

  await Deno.remove(path);
  await assertRejects(
    () => restoreSnapshot({ store: opts.store, manifest, datadir, flavour: "mariadb" }),
    CorruptSnapshotError,
    `Snapshot '${manifest.name}' is corrupt: its data object '${manifest.key}' is missing from the local store`,
  );
  await assertNothingLeft(datadir);
});

Deno.test("restoreSnapshot() reports data that zstd or mbstream rejects in one line and leaves nothing behind", async () => {
  await using h = await Harness.create();
  const store = new LocalStore(`${h.dir}/snapshots`);
  const datadir = `${h.dir}/restored/data`;
  /** Stores `bytes` as a snapshot whose manifest matches them, so only the tools can object. */
  const storeBytes = async (name: string, bytes: Uint8Array): Promise<Manifest> => {
    const manifest: Manifest = {
      format: 1,
      name,
      key: dataKey(name),
      createdAt: new Date().toISOString(),
      nodeName: "n1",
      flavour: "mariadb",
      serverVersion: "10.11.19-MariaDB",
      tool: "mariabackup",
      compression: "zstd",
      sha256: createHash("sha256").update(bytes).digest("hex"),
      size: bytes.length,
      gtid: "0-1-3",
      binlog: { file: "mysql-bin.000001", position: 4 },
    };
    await store.put(manifest.key, ReadableStream.from([bytes]));
    await store.put(
      manifestKey(name),
      ReadableStream.from([new TextEncoder().encode(formatManifest(manifest))]),
    );
    return manifest;
  };
  const garbage = crypto.getRandomValues(new Uint8Array(64 * 1024));

  const notZstd = await storeBytes("garbage", garbage);
  const e1 = await assertRejects(
    () => restoreSnapshot({ store, manifest: notZstd, datadir, flavour: "mariadb" }),
    CorruptSnapshotError,
    "Snapshot 'garbage' is corrupt: it does not decompress: zstd failed (exit code 1): ",
  );
  assert(!e1.message.includes("\n"), e1.message);
  await assertNothingLeft(datadir);

  const compressed = `${h.dir}/not-xbstream.zst`;
  await runOk("bash", ["-c", `yes 'this is not an xbstream' | head -n 1000 | zstd -q -c > '${compressed}'`]);
  const notXbstream = await storeBytes("not-xbstream", await Deno.readFile(compressed));
  const e2 = await assertRejects(
    () => restoreSnapshot({ store, manifest: notXbstream, datadir, flavour: "mariadb" }),
    RestoreError,
    `Cannot restore snapshot 'not-xbstream' into '${datadir}': cannot unpack it: mbstream failed (exit code `,
  );
  assert(!e2.message.includes("\n"), e2.message);
  await assertNothingLeft(datadir);
});

Deno.test("takeSnapshot() that fails (wrong socket) leaves neither a data object nor a manifest", async () => {
  await using h = await Harness.create();
  const node = await h.startNode(1);
  const opts = await snapshotOptions(h, node, { socket: `${h.dir}/no-such.sock` });
  const e = await assertRejects(() => takeSnapshot(opts), BackupError, "Cannot take snapshot 'test-backup-");
  assert(e.message.includes("mariabackup failed (exit code 1)"), e.message);
  assert(e.message.includes("no-such.sock"), e.message);
  assert(
    e.message.endsWith(
      "nothing was stored (earlier snapshots are unchanged); fix the cause and take the snapshot again",
    ),
  );
  assert(!e.message.includes("\n"), e.message);
  assertEquals(await filesBelow(`${h.dir}/snapshots`), []);
  assertEquals(await listSnapshots(opts.store), []);
});

Deno.test("takeSnapshot() refuses to replace a committed snapshot of the same name", async () => {
  await using h = await Harness.create();
  const node = await h.startNode(1);
  const now = new Date("2026-11-25T19:00:00.000Z");
  const opts = await snapshotOptions(h, node, { now });
  const first = await takeSnapshot(opts);
  await node.sql("CREATE DATABASE later");
  await assertRejects(
    () => takeSnapshot(opts),
    BackupError,
    "Cannot take snapshot 'test-backup-2026-11-25T19-00-00Z': a snapshot of that name already exists in the " +
      `local store at ${h.dir}/snapshots: nothing was stored; make BACKUP_NAME give each snapshot a new name`,
  );
  assertEquals(await sha256File(`${h.dir}/snapshots/${first.key}`), first.sha256);
  assertEquals(await listSnapshots(opts.store), [first]);
});

Deno.test("takeSnapshot() reads the account's password only from an option file", async () => {
  await using h = await Harness.create();
  const node = await h.startNode(1);
  const password = "bk-Secret-4711";
  await node.sql(
    `CREATE USER 'backup'@'localhost' IDENTIFIED BY '${password}'; ` +
      "GRANT RELOAD, PROCESS, LOCK TABLES, BINLOG MONITOR, SELECT ON *.* TO 'backup'@'localhost';",
  );
  const optionFile = `${h.dir}/backup-client.cnf`;
  await writeSecretFile(optionFile, `[client]\npassword=${password}\n`);

  const without = await snapshotOptions(h, node, { user: "backup" });
  const e = await assertRejects(() => takeSnapshot(without), BackupError, "Access denied for user 'backup'");
  assert(!e.message.includes(password));

  const manifest = await takeSnapshot({ ...without, optionFile, now: new Date(Date.now() + 2000) });
  assertEquals(manifest.gtid, await one(node, "SELECT @@GLOBAL.gtid_binlog_pos"));
  assertEquals((await listSnapshots(without.store)).map((m) => m.name), [manifest.name]);
});

Deno.test("restoreSnapshot() refuses a non-empty datadir, leaves it unchanged, and replaces an empty one", async () => {
  const snap = await seededSnapshot({ seed: false });
  await using h = snap.h;
  const { opts, manifest } = snap;
  const datadir = `${h.dir}/restored/data`;
  await Deno.mkdir(`${datadir}/mysql`, { recursive: true });
  await Deno.writeTextFile(`${datadir}/keep.txt`, "precious\n");
  const before = await filesBelow(datadir);

  await assertRejects(
    () => restoreSnapshot({ store: opts.store, manifest, datadir, flavour: "mariadb" }),
    RestoreError,
    `Cannot restore snapshot '${manifest.name}' into '${datadir}': the datadir is not empty (it holds `,
  );
  assertEquals(await filesBelow(datadir), before);
  assertEquals(await Deno.readTextFile(`${datadir}/keep.txt`), "precious\n");
  assertEquals(
    (await Array.fromAsync(Deno.readDir(`${h.dir}/restored`))).map((e) => e.name).sort(),
    ["data"],
  );

  // An empty datadir, or one holding only a crashed restore's staging dir, is replaced by the restored one.
  await Deno.remove(datadir, { recursive: true });
  await Deno.mkdir(`${datadir}/.restore-0123456789ab`, { recursive: true });
  await Deno.writeTextFile(`${datadir}/.restore-0123456789ab/ibdata1`, "left by a crash");
  await restoreSnapshot({ store: opts.store, manifest, datadir, flavour: "mariadb", chownTo: "root" });
  const names = (await Array.fromAsync(Deno.readDir(datadir))).map((e) => e.name);
  assert(names.includes("mysql"), names.join());
  assertEquals(names.filter((n) => n.includes(".restore-")), []);
});

Deno.test("restoreSnapshot() refuses a snapshot of the other flavour without touching anything", async () => {
  await using h = await Harness.create();
  const manifest = parseManifest(formatManifest({
    format: 1,
    name: "from-mysql",
    key: dataKey("from-mysql"),
    createdAt: "2026-11-25T19:00:00.000Z",
    nodeName: "m1",
    flavour: "mysql",
    serverVersion: "8.4.3",
    tool: "xtrabackup",
    compression: "zstd",
    sha256: "0".repeat(64),
    size: 1,
    gtid: "",
    binlog: { file: "binlog.000001", position: 4 },
  }));
  const datadir = `${h.dir}/restored/data`;
  await assertRejects(
    () =>
      restoreSnapshot({ store: new LocalStore(`${h.dir}/snapshots`), manifest, datadir, flavour: "mariadb" }),
    RestoreError,
    `Cannot restore snapshot 'from-mysql' into '${datadir}': it was taken from a mysql server but this node runs ` +
      "mariadb: the datadir was not touched",
  );
  assert(!(await pathExists(`${h.dir}/restored`)));
});

Deno.test("restoreSnapshot() restores into an empty datadir that is a mount point (a volume)", async () => {
  const snap = await seededSnapshot();
  await using h = snap.h;
  const { opts, manifest } = snap;
  const dir = `${h.dir}/volume`;
  const datadir = `${dir}/data`;
  await Deno.mkdir(datadir, { recursive: true });
  await runOk("mount", ["-t", "tmpfs", "-o", "size=512m", "tmpfs", datadir]);
  try {
    assert((await Deno.stat(datadir)).dev !== (await Deno.stat(dir)).dev, "not a mount point");
    const result = await restoreSnapshot({ store: opts.store, manifest, datadir, flavour: "mariadb" });
    assertEquals(result.gtid, manifest.gtid);
    const names = (await Array.fromAsync(Deno.readDir(datadir))).map((e) => e.name);
    assert(
      names.includes("mysql") && names.includes("app") && names.includes("xtrabackup_binlog_info"),
      names.join(),
    );
    assertEquals(names.filter((n) => n.includes(".restore-")), []);
    assertEquals((await Array.fromAsync(Deno.readDir(dir))).map((e) => e.name), ["data"]);
    const sql = await serve(h, datadir, dir);
    assertEquals((await sql("SELECT COUNT(*) FROM app.t"))[0][0], String(ROWS));
  } finally {
    await h.group.stopAll();
    await run("umount", [datadir]);
  }
});

Deno.test("restoreSnapshot() stages inside the datadir when Deno may not write beside it", async () => {
  const snap = await seededSnapshot();
  await using h = snap.h;
  const { manifest } = snap;
  const script = `${h.dir}/restore.ts`;
  await Deno.writeTextFile(
    script,
    [
      `import { restoreSnapshot } from "file://${REPO_ROOT}/src/backup/restore.ts";`,
      `import { parseManifest } from "file://${REPO_ROOT}/src/backup/manifest.ts";`,
      `import { LocalStore } from "file://${REPO_ROOT}/src/storage/local.ts";`,
      "const [store, manifest, datadir] = Deno.args;",
      "try {",
      "  const result = await restoreSnapshot({",
      "    store: new LocalStore(store),",
      "    manifest: parseManifest(await Deno.readTextFile(manifest)),",
      "    datadir,",
      '    flavour: "mariadb",',
      "  });",
      "  Deno.stdout.writeSync(new TextEncoder().encode(JSON.stringify(result)));",
      "} catch (e) {",
      "  Deno.stderr.writeSync(new TextEncoder().encode(String(e)));",
      "  Deno.exit(1);",
      "}",
      "",
    ].join("\n"),
  );
  const manifestPath = `${h.dir}/snapshots/${manifestKey(manifest.name)}`;
  const deno = await toolPath("DENO");
  const restore = (datadir: string) =>
    run(deno, [
      "run",
      "--no-prompt",
      "--no-config",
      `--allow-read=${REPO_ROOT},${h.dir}/snapshots,${script},${datadir}`,
      `--allow-write=${datadir}`,
      "--allow-run",
      "--allow-env=NODE_V8_COVERAGE", // node:child_process reads it (src/exec.ts; in the autopilot set too)
      script,
      `${h.dir}/snapshots`,
      manifestPath,
      datadir,
    ], { cwd: h.dir });

  const datadir = `${h.dir}/restored/data`;
  await Deno.mkdir(`${h.dir}/restored`);
  const ok = await restore(datadir);
  assert(ok.success, ok.stderr);
  assertEquals(JSON.parse(ok.stdout).gtid, manifest.gtid);
  const names = (await Array.fromAsync(Deno.readDir(datadir))).map((e) => e.name);
  assert(names.includes("mysql") && names.includes("app"), names.join());
  assertEquals(names.filter((n) => n.includes(".restore-")), []);
  assertEquals((await Array.fromAsync(Deno.readDir(`${h.dir}/restored`))).map((e) => e.name), ["data"]);

  // A failure removes the datadir it made for its staging dir.
  await Deno.truncate(`${h.dir}/snapshots/${manifest.key}`, 1000);
  const other = `${h.dir}/restored/other`;
  const failed = await restore(other);
  assert(!failed.success);
  assert(
    failed.stderr.includes(`CorruptSnapshotError: Snapshot '${manifest.name}' is corrupt`),
    failed.stderr,
  );
  await assertNothingLeft(other);
});

/** A LocalStore that aborts `controller` once the first chunk of a data object has flowed through it. */
class AbortingStore extends LocalStore {
  constructor(root: string, readonly controller: AbortController) {
    super(root);
  }

  #tap(body: ReadableStream<Uint8Array>): ReadableStream<Uint8Array> {
    const controller = this.controller;
    return body.pipeThrough(
      new TransformStream({
        transform(chunk, c) {
          c.enqueue(chunk);
          controller.abort(new Error("test abort"));
        },
      }),
    );
  }

  override put(key: string, body: ReadableStream<Uint8Array>, signal?: AbortSignal) {
    return super.put(key, key.endsWith(".xbstream.zst") ? this.#tap(body) : body, signal);
  }

  override async get(key: string): Promise<ReadableStream<Uint8Array>> {
    return this.#tap(await super.get(key));
  }
}

Deno.test("takeSnapshot() cancelled by its signal mid-stream stores nothing", async () => {
  await using h = await Harness.create();
  const node = await h.startNode(1);
  await seed(node);
  const controller = new AbortController();
  const store = new AbortingStore(`${h.dir}/snapshots`, controller);
  const opts = await snapshotOptions(h, node, { store, signal: controller.signal });
  await assertRejects(() => takeSnapshot(opts), BackupError, "': it was cancelled: nothing was stored");
  assert(controller.signal.aborted);
  assertEquals(await filesBelow(`${h.dir}/snapshots`), []);
  await assertRejects(
    () => takeSnapshot({ ...opts, signal: AbortSignal.abort() }),
    BackupError,
    "': it was cancelled: nothing was stored",
  );
  assertEquals(await filesBelow(`${h.dir}/snapshots`), []);
});

Deno.test("restoreSnapshot() cancelled by its signal mid-stream leaves nothing behind", async () => {
  const snap = await seededSnapshot();
  await using h = snap.h;
  const { manifest } = snap;
  const controller = new AbortController();
  const store = new AbortingStore(`${h.dir}/snapshots`, controller);
  const datadir = `${h.dir}/restored/data`;
  await assertRejects(
    () => restoreSnapshot({ store, manifest, datadir, flavour: "mariadb", signal: controller.signal }),
    RestoreError,
    `Cannot restore snapshot '${manifest.name}' into '${datadir}': it was cancelled: the datadir was not touched`,
  );
  assert(controller.signal.aborted);
  await assertNothingLeft(datadir);
});
