import { assert, assertEquals, assertRejects, assertThrows } from "./assert.ts";
import {
  cannotDecrypt,
  cannotRestore,
  cannotStorePlaintext,
  decryptCommand,
  encryptCommand,
  encryptionInfo,
  isAgeIdentity,
  isAgeRecipient,
  type Keyring,
  openKeyring,
  parseEncryptionInfo,
  parseRecipients,
  shortRecipient,
} from "../../src/backup/encryption.ts";
import { formatManifest, type Manifest, parseManifest } from "../../src/backup/manifest.ts";
import { formatSegment, indexKeyOf, parseSegment } from "../../src/binlog/segment.ts";
import { ConfigError, loadConfig, Secret } from "../../src/config.ts";
import { CorruptSnapshotError, RestoreError } from "../../src/backup/errors.ts";
import { restoreConfiguredSnapshot } from "../../src/snapshots.ts";
import { moveErrantDatadirAside, RebuildRefusedError } from "../../src/rebuild.ts";
import type { MysqlServer } from "../../src/mysql/server.ts";
import { fetchSegments, ReplayError } from "../../src/binlog/replay.ts";
import type { RecoveryPlan } from "../../src/binlog/plan.ts";
import type { SnapshotStore } from "../../src/storage/store.ts";
import { segment } from "./segments.ts";

// Throwaway test keys (age-keygen); R2 belongs to another identity.
const IDENTITY = "AGE-SECRET-KEY-1RSN7FHWPWC0M5VEZ9M0LSDN3066AP69EMUMFQMZKUX0SUQJSUFEQXPTAYS";
const R1 = "age13dnc37c7ymgf93unrv5hyt268m75yr8eef2ezrx5qq7gyxz0wyms7jhhm0";
const R2 = "age1tfplw6nty0rgjh0f48ypfhqkj49s57t8grnxl69gw7z325wtccwsr9j7yf";

const host = { hostname: () => "node-a" };
const problemsOf = (vars: Record<string, string>): readonly string[] => {
  try {
    loadConfig((n) => ({ MYSQL_REPL_PASSWORD: "replpw", ...vars })[n], host);
  } catch (e) {
    if (e instanceof ConfigError) return e.problems;
    throw e;
  }
  return [];
};

Deno.test("age keys: the shapes of an identity and of recipients", () => {
  assert(isAgeIdentity(IDENTITY));
  assert(!isAgeIdentity(IDENTITY.toLowerCase()), "lower case");
  assert(!isAgeIdentity(IDENTITY.slice(0, -1)), "one character short");
  assert(!isAgeIdentity(`${IDENTITY.slice(0, -1)}B`), "B is not a bech32 character");
  assert(isAgeRecipient(R1) && isAgeRecipient(R2));
  assert(!isAgeRecipient(R1.toUpperCase()) && !isAgeRecipient(IDENTITY) && !isAgeRecipient(`${R1}q`));
  assertEquals(parseRecipients(` ${R1} , ${R2},`), { recipients: [R1, R2] });
  assertEquals(parseRecipients(`${R1},ssh-ed25519 AAAA`), { wrong: "ssh-ed25519 AAAA" });
  assertEquals(shortRecipient(R1), "age13dnc37…7jhhm0");
});

Deno.test("loadConfig() reads the encryption keys, and rejects a malformed one in one line without showing it", () => {
  const config = loadConfig(
    (n) =>
      ({ MYSQL_REPL_PASSWORD: "replpw", BACKUP_ENCRYPTION_KEY: IDENTITY, BACKUP_ENCRYPTION_RECIPIENTS: R2 })[
        n
      ],
    host,
  );
  assertEquals(config.backup.encryption?.identity?.reveal(), IDENTITY);
  assertEquals(config.backup.encryption?.recipients, [R2]);
  assertEquals(loadConfig((n) => ({ MYSQL_REPL_PASSWORD: "replpw" })[n], host).backup.encryption, undefined);

  const bad = `${IDENTITY.slice(0, -3)}xyz`;
  const [problem, ...more] = problemsOf({ BACKUP_ENCRYPTION_KEY: bad });
  assertEquals(more, []);
  assert(problem.startsWith("BACKUP_ENCRYPTION_KEY is not an age identity"), problem);
  assert(!problem.includes(bad.slice(16)) && !problem.includes("\n"), problem);
  assertEquals(problemsOf({ BACKUP_ENCRYPTION_RECIPIENTS: `${R1},age1nope` }), [
    "BACKUP_ENCRYPTION_RECIPIENTS must be age recipients (age1 followed by 58 characters), comma separated; " +
    `'age1nope' is not one: current value is '${R1},age1nope'`,
  ]);
});

const keyring = (recipient: string): Keyring => ({
  recipients: [recipient],
  identity: { secret: new Secret(IDENTITY), recipient },
});

Deno.test("cannotDecrypt(): the identity must be one of the recipients; a missing key names BACKUP_ENCRYPTION_KEY", () => {
  const info = { format: "age" as const, recipients: [R1, R2] };
  assertEquals(cannotDecrypt(info, keyring(R1), "snapshot 's'"), undefined);
  assertEquals(cannotDecrypt(info, keyring(R2), "snapshot 's'"), undefined);
  const other = "age1qyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqs3290gq";
  assertEquals(
    cannotDecrypt({ format: "age", recipients: [R1] }, keyring(other), "snapshot 's'"),
    `snapshot 's' is encrypted (age, to ${
      shortRecipient(R1)
    }) and BACKUP_ENCRYPTION_KEY is not the identity of ` +
      `any of them (its recipient is ${shortRecipient(other)}): set the key it was encrypted for`,
  );
  for (const ring of [undefined, { recipients: [R1] }]) {
    assertEquals(
      cannotDecrypt({ format: "age", recipients: [R1] }, ring, "it"),
      `it is encrypted (age, to ${shortRecipient(R1)}) but BACKUP_ENCRYPTION_KEY is not set: set it to the ` +
        "identity (AGE-SECRET-KEY-1…) of one of those recipients",
    );
  }
});

Deno.test("the stages: age --encrypt to each recipient, age --decrypt with an identity file (never the key in argv)", () => {
  assertEquals(encryptCommand([R1, R2]), ["age", "--encrypt", "-r", R1, "-r", R2]);
  assertThrows(() => encryptCommand([]), RangeError);
  assertThrows(() => encryptCommand([IDENTITY]), RangeError, "not an age recipient");
  assertEquals(decryptCommand("/tmp/x/identity.txt"), ["age", "--decrypt", "-i", "/tmp/x/identity.txt"]);
  assertThrows(() => decryptCommand("identity.txt"), RangeError);
});

const MANIFEST: Manifest = {
  format: 1,
  name: "mysql-backup-2026-11-25T19-00-00Z",
  key: "mysql-backup-2026-11-25T19-00-00Z.xbstream.zst",
  createdAt: "2026-11-25T19:00:00.000Z",
  nodeName: "mysql-1",
  flavour: "mariadb",
  serverVersion: "10.11.19-MariaDB",
  tool: "mariabackup",
  compression: "zstd",
  sha256: "ab12".repeat(16),
  size: 1655484,
  gtid: "0-1-3",
  binlog: { file: "mysql-bin.000001", position: 763921 },
};

Deno.test("the manifest and the index entry record the recipients (public keys), never the identity", () => {
  const encryption = encryptionInfo({
    recipients: [R1, R2],
    identity: { secret: new Secret(IDENTITY), recipient: R1 },
  });
  const m: Manifest = { ...MANIFEST, encryption };
  const text = formatManifest(m);
  assert(!text.includes("AGE-SECRET-KEY"), text);
  assertEquals(JSON.parse(text).encryption, { format: "age", recipients: [R1, R2] });
  assertEquals(parseManifest(text), m);
  assertEquals(parseManifest(formatManifest(MANIFEST)).encryption, undefined, "an old, unencrypted one");
  assertThrows(
    () =>
      parseManifest(JSON.stringify({ ...MANIFEST, encryption: { format: "age", recipients: [IDENTITY] } })),
    Error,
    "its manifest's 'encryption' must list its age recipients (age1…)",
  );
  assertEquals(parseEncryptionInfo({ format: "gpg", recipients: [R1] }), {
    problem: "must have format 'age'",
  });

  const seg = segment("0-1-1", "0-1-2", 1, { encryption });
  const entry = formatSegment(seg);
  assert(!entry.includes("AGE-SECRET-KEY"), entry);
  assertEquals(parseSegment(entry, indexKeyOf(seg.key)!), seg);
  const plain = segment("0-1-2", "0-1-3", 2);
  assertEquals(parseSegment(formatSegment(plain), indexKeyOf(plain.key)!).encryption, undefined);
});

Deno.test("restoreConfiguredSnapshot() decrypts with BACKUP_ENCRYPTION_KEY (pre-start, rebuild and restore alike)", async () => {
  const dir = await Deno.makeTempDir({ prefix: "autopilot-restore-key-" });
  try {
    // An encrypted snapshot whose data object is not in the store: the key is checked first, then the data.
    const manifest: Manifest = { ...MANIFEST, encryption: { format: "age", recipients: [R1] } };
    const configWith = (vars: Record<string, string>) =>
      loadConfig((n) => ({ MYSQL_REPL_PASSWORD: "replpw", SNAPSHOT_DIR: `${dir}/store`, ...vars })[n], host);
    const datadir = `${dir}/data`;
    const opts = { manifest, datadir, flavour: "mariadb" } as const;
    const none = await assertRejects(() => restoreConfiguredSnapshot(configWith({}), opts), RestoreError);
    assert(none.message.includes("BACKUP_ENCRYPTION_KEY is not set"), none.message);
    // With the key it gets past the check to the (missing) data.
    const keyed = configWith({ BACKUP_ENCRYPTION_KEY: IDENTITY });
    const e = await assertRejects(() => restoreConfiguredSnapshot(keyed, opts), CorruptSnapshotError);
    assert(!e.message.includes("BACKUP_ENCRYPTION_KEY"), e.message);
    assertEquals([...Deno.readDirSync(dir)].map((d) => d.name).filter((n) => n.startsWith("data")), []);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("moveErrantDatadirAside() refuses, with the datadir where it was, when this node cannot decrypt the snapshot", async () => {
  const dir = await Deno.makeTempDir({ prefix: "autopilot-rebuild-key-" });
  try {
    const datadir = `${dir}/data`;
    await Deno.mkdir(datadir);
    await Deno.writeTextFile(`${datadir}/ibdata1`, "x");
    const configWith = (vars: Record<string, string>) =>
      loadConfig((n) => ({ MYSQL_REPL_PASSWORD: "replpw", MYSQL_DATADIR: datadir, ...vars })[n], host);
    const manifest: Manifest = { ...MANIFEST, encryption: { format: "age", recipients: [R2] } };
    // Never reached: the refusal comes before mysqld is asked anything.
    const server = {} as MysqlServer;
    const moved: string[] = [];
    const onMoved = (aside: string) => Promise.resolve(void moved.push(aside));
    for (
      const [vars, says] of [
        [{ BACKUP_ENCRYPTION_RECIPIENTS: R2 }, "BACKUP_ENCRYPTION_KEY is not set"],
        [{ BACKUP_ENCRYPTION_KEY: IDENTITY }, "is not the identity of any of them"],
      ] as const
    ) {
      const e = await assertRejects(
        () => moveErrantDatadirAside(configWith(vars), "mariadb", server, manifest, "0-1-5", onMoved),
        RebuildRefusedError,
      );
      assert(
        e.message.includes(says) && e.message.includes(MANIFEST.name) && !e.message.includes("\n"),
        e.message,
      );
    }
    assertEquals(moved, []);
    assertEquals(await Deno.readTextFile(`${datadir}/ibdata1`), "x");
    assertEquals([...Deno.readDirSync(dir)].map((d) => d.name), ["data"]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("cannotRestore(): with a key, an unencrypted object is refused unless BACKUP_ALLOW_UNENCRYPTED is set", () => {
  const what = "snapshot 's'";
  assertEquals(cannotRestore(undefined, undefined, what), undefined, "no keys: plaintext as before");
  assertEquals(
    cannotRestore(undefined, { recipients: [R2] }, what),
    undefined,
    "encrypts only: restores nothing",
  );
  const refused = cannotRestore(undefined, keyring(R1), what)!;
  assert(refused.startsWith("snapshot 's' is not encrypted, but BACKUP_ENCRYPTION_KEY is set"), refused);
  assert(refused.includes("BACKUP_ALLOW_UNENCRYPTED=true"), refused);
  assertEquals(cannotRestore(undefined, { ...keyring(R1), allowUnencrypted: true }, what), undefined);
  const info = { format: "age" as const, recipients: [R2] };
  assertEquals(
    cannotRestore(info, { ...keyring(R1), allowUnencrypted: true }, what),
    cannotDecrypt(info, keyring(R1), what),
  );
  assertEquals(cannotRestore({ format: "age", recipients: [R1] }, keyring(R1), what), undefined);
});

Deno.test("cannotStorePlaintext(): a node without keys does not write plaintext into an encrypted cluster", () => {
  const info = { format: "age" as const, recipients: [R1] };
  const refused = cannotStorePlaintext(info, undefined, false, "the snapshot")!;
  assertEquals(
    refused,
    "the snapshot would be stored unencrypted, but the cluster's last snapshot is encrypted (age, to " +
      "age13dnc37…7jhhm0): set BACKUP_ENCRYPTION_KEY or BACKUP_ENCRYPTION_RECIPIENTS on this node as on the " +
      "others (or BACKUP_ALLOW_UNENCRYPTED=true to turn encryption off on purpose)",
  );
  assertEquals(cannotStorePlaintext(info, undefined, true, "the snapshot"), undefined);
  assertEquals(cannotStorePlaintext(info, { recipients: [R2] }, false, "the snapshot"), undefined);
  assertEquals(
    cannotStorePlaintext(undefined, undefined, false, "the snapshot"),
    undefined,
    "a plaintext cluster",
  );
});

Deno.test("restore with BACKUP_ENCRYPTION_KEY: an unencrypted snapshot or binlog is refused before anything is touched", async () => {
  const dir = await Deno.makeTempDir({ prefix: "autopilot-restore-plain-" });
  try {
    const configWith = (vars: Record<string, string>) =>
      loadConfig((n) => ({ MYSQL_REPL_PASSWORD: "replpw", SNAPSHOT_DIR: `${dir}/store`, ...vars })[n], host);
    const opts = { manifest: MANIFEST, datadir: `${dir}/data`, flavour: "mariadb" } as const;
    const keyed = configWith({ BACKUP_ENCRYPTION_KEY: IDENTITY });
    const e = await assertRejects(() => restoreConfiguredSnapshot(keyed, opts), RestoreError);
    assert(e.message.includes("is not encrypted, but BACKUP_ENCRYPTION_KEY is set"), e.message);
    // Allowed: it gets past the check to the (missing) data.
    const allowed = configWith({ BACKUP_ENCRYPTION_KEY: IDENTITY, BACKUP_ALLOW_UNENCRYPTED: "true" });
    await assertRejects(() => restoreConfiguredSnapshot(allowed, opts), CorruptSnapshotError);
    assertEquals([...Deno.readDirSync(dir)].map((d) => d.name).filter((n) => n.startsWith("data")), []);

    const seg = segment("0-1-3", "0-1-4", 1);
    const plan = { snapshot: MANIFEST, steps: [{ segment: seg, after: "0-1-3" }] } as unknown as RecoveryPlan;
    const store = {
      kind: "local",
      get: () => Promise.reject(new Error("not to be read")),
    } as unknown as SnapshotStore;
    const r = await assertRejects(
      () => fetchSegments(store, plan, `${dir}/binlogs`, undefined, keyring(R1)),
      ReplayError,
    );
    assert(
      r.message.includes(`Archived binlog ${seg.key} is not encrypted, but BACKUP_ENCRYPTION_KEY`),
      r.message,
    );
    assert(r.message.endsWith("nothing was touched"), r.message);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("BACKUP_ENCRYPTION_KEY_FILE takes the file age-keygen -o writes, with several identities for a rotation", async () => {
  const NEW = "AGE-SECRET-KEY-18CFJU45AR24HP7R60K44DQRU9LXWFYAQC3QXVHEP683XLQFGX04Q3UK8E2";
  const keygenFile = (key: string) =>
    `# created: 2026-12-03T06:25:05Z\n# public key: (its recipient)\n${key}\n`;
  const load = (file: string) =>
    loadConfig((n) => ({ MYSQL_REPL_PASSWORD: "replpw", BACKUP_ENCRYPTION_KEY_FILE: "/run/secrets/k" })[n], {
      ...host,
      readFile: () => file,
    });
  assertEquals(load(keygenFile(IDENTITY)).backup.encryption?.identity?.reveal(), IDENTITY);
  const rotated = load(`${keygenFile(IDENTITY)}\n${keygenFile(NEW)}`).backup.encryption!;
  assertEquals(rotated.identity?.reveal(), `${IDENTITY}\n${NEW}`);

  const problem = (file: string) => {
    try {
      load(file);
    } catch (e) {
      if (e instanceof ConfigError) return e.problems.join("\n");
      throw e;
    }
    return "";
  };
  const bad = problem(`# created: x\n${IDENTITY}\n${IDENTITY.slice(0, -2)}\n`);
  assert(bad.startsWith("BACKUP_ENCRYPTION_KEY is not an age identity: line 3 is neither a comment"), bad);
  assert(bad.includes("(read from BACKUP_ENCRYPTION_KEY_FILE=/run/secrets/k)") && !bad.includes("RSN7"), bad);
  assert(problem("# public key: age1…\n\n").includes("it holds no line AGE-SECRET-KEY-1"));

  // The last identity is the one encrypted to; every one decrypts.
  const keyring = (await openKeyring(rotated))!;
  const older = (await openKeyring({ identity: new Secret(IDENTITY) }))!.identity!.recipient;
  assertEquals(older, R1);
  assert(keyring.identity!.recipient !== R1 && keyring.recipients.length === 1, String(keyring.recipients));
  assertEquals(keyring.identity!.decrypts, [R1, keyring.identity!.recipient]);
  assertEquals(cannotDecrypt({ format: "age", recipients: [R1] }, keyring, "snapshot 's'"), undefined);
  const other = cannotDecrypt({ format: "age", recipients: [R2] }, keyring, "snapshot 's'")!;
  assert(other.includes("its recipients are age13dnc37…7jhhm0, "), other);
});

Deno.test("a secret key typed into a non-secret variable is never shown: one line says it is a key, not a recipient or path", () => {
  const pem = "-----BEGIN PRIVATE KEY-----#MIIEvQIBADANBgkqhkiG9w0BAQEFAASC#-----END PRIVATE KEY-----";
  for (
    const [vars, says] of [
      [{ BACKUP_ENCRYPTION_RECIPIENTS: IDENTITY }, "not a recipient"],
      [{ BACKUP_ENCRYPTION_RECIPIENTS: `${R1}, ${IDENTITY.toLowerCase()}` }, "not a recipient"],
      [{ MYSQL_TLS_KEY: pem }, "not a path"],
      [{ MYSQL_TLS_CERT: pem.replaceAll("PRIVATE KEY", "CERTIFICATE") }, "not a path"],
      [{ CONSUL_CLIENT_KEY: pem }, "not a path"],
    ] as const
  ) {
    const name = Object.keys(vars)[0];
    const problems = problemsOf(vars);
    const mine = problems.filter((p) => p.startsWith(`${name} `));
    assertEquals(mine.length, 1, problems.join("\n"));
    assert(
      mine[0].startsWith(
        `${name} holds a secret key (its value is not shown): that is a secret key, ${says}`,
      ),
      mine[0],
    );
    for (const p of problems) {
      assert(!/RSN7FHWP|rsn7fhwp|MIIEvQ|-----BEGIN/.test(p), p);
    }
  }
  // Anything else is still shown, to help.
  assert(
    problemsOf({ MYSQL_TLS_KEY: "tls/key.pem" }).some((p) => p.includes("current value is 'tls/key.pem'")),
  );
});
