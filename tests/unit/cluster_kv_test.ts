/**
 * The Consul layout's pure parts (src/cluster_kv.ts): key names, and the parse and format of every value, on
 * plain data. What the real one does against Consul is tests/integration/cluster_kv_test.ts.
 */
import { assertEquals } from "./assert.ts";
import type { KvEntry } from "../../src/consul.ts";
import {
  clusterKeys,
  clusterViewFrom,
  failoverLockFrom,
  formatArchiveRecord,
  formatBackupLockRecord,
  formatFailoverRecord,
  formatManifestValue,
  formatMemberRecord,
  formatPrimaryRecord,
  formatVerificationRecord,
  keysOutsidePrefix,
  lastBackupFrom,
  membersFrom,
  membersPrefix,
  otherLiveReplicas,
  parseArchiveRecord,
  parseFailoverRecord,
  parseMemberRecord,
  parsePrimaryRecord,
  parseVerificationRecord,
  primaryLockFrom,
  splitMembers,
} from "../../src/cluster_kv.ts";
import { kvConfig } from "./fakes/fake_cluster_kv.ts";
import { memberRecord } from "./member_record.ts";
import { testManifest } from "./memory_store.ts";

const p1 = { node: "n1", address: "10.0.0.11", port: 3306, ready: true };

function entry(key: string, value: string, over: Partial<KvEntry> = {}): KvEntry {
  return { key, value, lockIndex: 0, modifyIndex: 1, ...over };
}

Deno.test("primaryLockFrom() reads the record and the holding session, ignoring foreign values", () => {
  const entry = { key: "k", value: JSON.stringify(p1), session: "s1", lockIndex: 1, modifyIndex: 5 };
  assertEquals(primaryLockFrom(entry), { record: p1, session: "s1", modifyIndex: 5 });
  const unready = { ...entry, value: JSON.stringify({ ...p1, ready: false }) };
  assertEquals(primaryLockFrom(unready).record?.ready, undefined);
  assertEquals(primaryLockFrom({ ...entry, session: undefined }), { record: p1, modifyIndex: 5 });
  assertEquals(primaryLockFrom({ ...entry, value: "n1" }), { session: "s1", modifyIndex: 5 });
  assertEquals(primaryLockFrom(undefined), {});
});

Deno.test("formatPrimaryRecord() writes {node, address, port} and ready only when true; parse reads it back", () => {
  const plain = { node: "n1", address: "10.0.0.11", port: 3306 };
  assertEquals(formatPrimaryRecord(plain), '{"node":"n1","address":"10.0.0.11","port":3306}');
  assertEquals(formatPrimaryRecord(p1), '{"node":"n1","address":"10.0.0.11","port":3306,"ready":true}');
  assertEquals(formatPrimaryRecord({ ...plain, ready: false }), formatPrimaryRecord(plain));
  // A wider object (a member record) still gives only the primary's fields.
  assertEquals(formatPrimaryRecord(memberRecord("n1")), '{"node":"n1","address":"10.0.0.1","port":3306}');
  assertEquals(parsePrimaryRecord(formatPrimaryRecord(p1)), p1);
  const stopped = { ...p1, fenced: true, executed: "0-1-9" };
  assertEquals(parsePrimaryRecord(formatPrimaryRecord(stopped)), stopped, "pre-stop's mark and GTIDs");
  assertEquals(
    formatPrimaryRecord({ ...memberRecord("n1"), fenced: true }),
    '{"node":"n1","address":"10.0.0.1","port":3306,"fenced":true,"executed":""}',
  );
  assertEquals(parsePrimaryRecord(formatPrimaryRecord(plain)), plain);
  assertEquals(
    formatPrimaryRecord(p1, 42),
    '{"node":"n1","address":"10.0.0.11","port":3306,"ready":true,"beat":42}',
  );
  assertEquals(
    parsePrimaryRecord(formatPrimaryRecord(p1, 42)),
    p1,
    "a heartbeat's beat is not part of the record",
  );
  assertEquals(parsePrimaryRecord(JSON.stringify({ ...p1, extra: 1 })), p1, "unknown fields dropped");
  for (const foreign of [undefined, "", "not json", "[]", "null", '"n1"', '{"node":"n1","address":"a"}']) {
    assertEquals(parsePrimaryRecord(foreign), undefined, String(foreign));
  }
  assertEquals(parsePrimaryRecord('{"node":"n1","address":"a","port":"3306"}'), undefined, "a port as text");
  assertEquals(parsePrimaryRecord('{"node":"n1","address":"a","port":3306.5}'), undefined);
});

Deno.test("formatFailoverRecord() writes what health and switchover wrote before, field for field", () => {
  // The values the hooks wrote with JSON.stringify (an undefined `promoted` is left out).
  const failover = { node: "n2", at: 1_000, failedPrimary: "n1", promoted: undefined };
  assertEquals(formatFailoverRecord(failover), JSON.stringify(failover));
  const done = { node: "n2", at: 1_000, failedPrimary: "n1", promoted: "n3" };
  assertEquals(formatFailoverRecord(done), JSON.stringify(done));
  const switchover = { node: "n1", at: 2_000, switchover: true, promoted: "n2" };
  assertEquals(formatFailoverRecord(switchover), JSON.stringify(switchover));
  assertEquals(formatFailoverRecord({ node: "n1", at: 2_000, switchover: false }), '{"node":"n1","at":2000}');
});

Deno.test("parseFailoverRecord() needs a node and a numeric time, and keeps only well-typed fields", () => {
  const done = { node: "n2", at: 1_000, failedPrimary: "n1", promoted: "n3" };
  assertEquals(parseFailoverRecord(formatFailoverRecord(done)), done);
  const switchover = { node: "n1", at: 2_000, switchover: true, promoted: "n2" };
  assertEquals(parseFailoverRecord(JSON.stringify(switchover)), switchover);
  assertEquals(parseFailoverRecord('{"node":"ghost","at":0}'), { node: "ghost", at: 0 });
  assertEquals(
    parseFailoverRecord('{"node":"n1","at":5,"failedPrimary":7,"switchover":"yes","promoted":null,"x":1}'),
    { node: "n1", at: 5 },
    "wrong types and unknown fields dropped",
  );
  for (
    const foreign of [
      undefined,
      "",
      "not json",
      "[]",
      "{}",
      '{"node":"n1"}',
      '{"at":5}',
      '{"node":"n1","at":"5"}',
    ]
  ) {
    assertEquals(parseFailoverRecord(foreign), undefined, String(foreign));
  }
});

Deno.test("failoverLockFrom(): no key is modifyIndex 0; a foreign value is kept raw, with no record", () => {
  assertEquals(failoverLockFrom(undefined), { modifyIndex: 0 });
  const value = formatFailoverRecord({ node: "n1", at: 9 });
  assertEquals(failoverLockFrom(entry("k", value, { session: "s", modifyIndex: 12 })), {
    session: "s",
    record: { node: "n1", at: 9 },
    value,
    modifyIndex: 12,
  });
  assertEquals(failoverLockFrom(entry("k", "held by hand", { modifyIndex: 3 })), {
    value: "held by hand",
    modifyIndex: 3,
  });
});

Deno.test("parseMemberRecord() needs node, address, an integer port and executed; the record is kept whole", () => {
  const m = memberRecord("n2", { hostname: "host-2", retrieved: "0-1-5" });
  assertEquals(formatMemberRecord(m), JSON.stringify(m));
  assertEquals(parseMemberRecord(formatMemberRecord(m)), m);
  const newer = { ...m, futureField: true };
  assertEquals(parseMemberRecord(JSON.stringify(newer)), newer, "a newer version's fields are kept");
  const { executed: _, ...noExecuted } = m;
  for (
    const foreign of [
      undefined,
      "not json",
      "[]",
      "null",
      JSON.stringify(noExecuted),
      JSON.stringify({ ...m, port: "3306" }),
      JSON.stringify({ ...m, node: 2 }),
    ]
  ) {
    assertEquals(parseMemberRecord(foreign), undefined, String(foreign));
  }
});

Deno.test("membersFrom() takes the records under the prefix in key order, skipping what is not one", () => {
  const prefix = membersPrefix({ serviceName: "mysql" });
  assertEquals(prefix, "mysql-members/");
  const [n1, n2, n3] = ["n1", "n2", "n3"].map((n) => memberRecord(n));
  const entries = [
    entry("mysql-members/n3", formatMemberRecord(n3), { session: "s3" }),
    entry("mysql-members/n1", formatMemberRecord(n1), { session: "s1" }),
    entry("mysql-members/n0", "garbage"),
    entry("mysql-members/n2", formatMemberRecord(n2)),
    entry("mysql-shop-members/n9", formatMemberRecord(memberRecord("n9")), { session: "s9" }),
    entry("mysql-primary", formatPrimaryRecord(n1)),
  ];
  const members = membersFrom(entries, prefix);
  assertEquals(members, [{ record: n1, session: "s1" }, { record: n2 }, { record: n3, session: "s3" }]);
  assertEquals(splitMembers(members), {
    live: [{ record: n1, session: "s1" }, { record: n3, session: "s3" }],
    departed: [n2],
  });
});

Deno.test("otherLiveReplicas() leaves out this node, departed members and members that do not replicate", () => {
  const members = [
    { record: memberRecord("n1", { role: "primary" }), session: "s1" },
    { record: memberRecord("n2"), session: "s2" },
    { record: memberRecord("n3") },
    { record: memberRecord("n4", { role: "none" }), session: "s4" },
    { record: memberRecord("n5"), session: "s5" },
  ];
  assertEquals(otherLiveReplicas(members, "n5").map((m) => m.record.node), ["n2"]);
  assertEquals(otherLiveReplicas(members, "n1").map((m) => m.record.node), ["n2", "n5"]);
});

Deno.test("parseVerificationRecord() reads a record back and counts anything else as none", () => {
  const ok = { name: "b1", ok: true, node: "n2", at: "2026-11-25T12:00:00.000Z" };
  const bad = { ...ok, ok: false, error: "CHECK TABLE failed" };
  assertEquals(parseVerificationRecord(formatVerificationRecord(ok)), ok);
  assertEquals(parseVerificationRecord(formatVerificationRecord(bad)), bad);
  assertEquals(parseVerificationRecord(JSON.stringify({ ...ok, extra: 1 })), ok);
  const replayed = { ...ok, binlogs: 3, replayedTo: "0-1-42" };
  assertEquals(parseVerificationRecord(formatVerificationRecord(replayed)), replayed);
  assertEquals(parseVerificationRecord(JSON.stringify({ ...ok, binlogs: -1, replayedTo: 7 })), ok);
  for (
    const foreign of [
      undefined,
      "not json",
      "{}",
      JSON.stringify({ ...ok, ok: "true" }),
      JSON.stringify({ ...ok, error: 5 }),
      JSON.stringify({ name: "b1", ok: true, node: "n2" }),
    ]
  ) {
    assertEquals(parseVerificationRecord(foreign), undefined, String(foreign));
  }
});

Deno.test("the backup lock's value and LAST_BACKUP_KEY's: as written before, a blank value names nothing", () => {
  const holder = { node: "n1", job: "verify" as const, startedAt: "2026-11-25T12:00:00.000Z" };
  assertEquals(formatBackupLockRecord(holder), JSON.stringify(holder));
  const m = testManifest("b1", "2026-11-25T12:00:00.000Z");
  assertEquals(formatManifestValue(m), JSON.stringify(m));
  assertEquals(lastBackupFrom(entry("k", formatManifestValue(m))), JSON.stringify(m));
  assertEquals(lastBackupFrom(entry("k", " \n")), undefined);
  assertEquals(lastBackupFrom(entry("k", "")), undefined);
  assertEquals(lastBackupFrom(undefined), undefined);
});

Deno.test("clusterKeys() names every key from the configuration; only keys renamed outside the prefix cost a get", () => {
  const keys = clusterKeys(kvConfig({ SERVICE_NAME: "shop" }));
  assertEquals(keys, {
    prefix: "shop-",
    primary: "shop-primary",
    failoverLock: "shop-failover-lock",
    failoverPause: "shop-failover-paused",
    members: "shop-members/",
    backupLock: "shop-backup-running",
    lastBackup: "shop-last-backup",
    lastBinlog: "shop-last-binlog",
    lastVerified: "shop-last-verified",
    cluster: "shop-cluster",
    archive: "shop-binlog-archive",
  });
  assertEquals(keysOutsidePrefix(keys), []);
  const renamed = clusterKeys(kvConfig({
    SERVICE_NAME: "shop",
    PRIMARY_KEY: "legacy/primary",
    FAILOVER_LOCK_KEY: "shop-fo", // renamed, but still under the prefix
    LAST_VERIFIED_KEY: "legacy/primary", // the same key twice: one get
    BACKUP_LOCK_KEY: "ops/backup", // not part of the view
  }));
  assertEquals(keysOutsidePrefix(renamed), ["legacy/primary"]);
});

Deno.test("clusterViewFrom() picks the keys by exact name out of everything under the prefix", () => {
  const keys = clusterKeys(kvConfig({ SERVICE_NAME: "mysql" }));
  const [n1, n2] = [memberRecord("n1", { role: "primary" }), memberRecord("n2")];
  const m = testManifest("b1", "2026-11-25T12:00:00.000Z");
  const verified = { name: "b1", ok: true, node: "n2", at: "t" };
  const failover = formatFailoverRecord({ node: "n2", at: 5, failedPrimary: "n0", promoted: "n1" });
  const view = clusterViewFrom(keys, [
    entry("mysql-primary", formatPrimaryRecord(p1), { session: "s1" }),
    entry("mysql-failover-lock", failover, { modifyIndex: 40 }),
    entry("mysql-failover-paused", "upgrade"),
    entry("mysql-members/n1", formatMemberRecord(n1), { session: "s1" }),
    entry("mysql-members/n2", formatMemberRecord(n2)),
    entry("mysql-last-backup", formatManifestValue(m)),
    entry("mysql-last-binlog", "mysql-bin.000004"),
    entry("mysql-last-verified", formatVerificationRecord(verified)),
    entry("mysql-backup-running", "{}", { session: "s9" }),
    // another service whose name starts with this one's
    entry("mysql-shop-primary", formatPrimaryRecord({ node: "x", address: "x", port: 1 }), { session: "sx" }),
    entry("mysql-shop-members/x", formatMemberRecord(memberRecord("x")), { session: "sx" }),
  ]);
  assertEquals(view, {
    primary: { record: p1, session: "s1", modifyIndex: 1 },
    failoverLock: {
      record: { node: "n2", at: 5, failedPrimary: "n0", promoted: "n1" },
      value: failover,
      modifyIndex: 40,
    },
    failoverPaused: true,
    live: [{ record: n1, session: "s1" }],
    departed: [n2],
    snapshotPublished: true,
    members: [{ record: n1, session: "s1" }, { record: n2 }],
    failoverPause: "upgrade",
    lastBackup: JSON.stringify(m),
    lastBinlog: "mysql-bin.000004",
    lastVerified: verified,
  });
  const empty = clusterViewFrom(keys, [
    entry("mysql-last-verified", "garbage"),
    entry("mysql-last-backup", ""),
  ]);
  assertEquals(empty, {
    primary: {},
    failoverLock: { modifyIndex: 0 },
    failoverPaused: false,
    live: [],
    departed: [],
    snapshotPublished: false,
    members: [],
  });
});

Deno.test("the archive record round-trips, and a value that is not one counts as none", () => {
  const record = {
    node: "n2",
    serverId: 7,
    file: "mysql-bin.000004",
    createdAt: "2026-12-02T10:00:00Z",
    endState: "0-1-100,0-7-150",
    lastTime: 1764669600,
    caughtUpAt: "2026-12-02T10:01:00.000Z",
    lagSeconds: 12,
    gap: { after: "0-1-90", resumes: "0-1-95", at: "2026-12-02T09:00:00.000Z" },
  };
  assertEquals(parseArchiveRecord(formatArchiveRecord(record)), record);
  const { gap: _, lastTime: __, ...bare } = record;
  assertEquals(parseArchiveRecord(formatArchiveRecord(bare)), bare);
  for (
    const bad of [
      undefined,
      "",
      "{",
      "[]",
      JSON.stringify({ ...record, serverId: "7" }),
      JSON.stringify({ ...record, endState: 5 }),
    ]
  ) {
    assertEquals(parseArchiveRecord(bad), undefined, String(bad));
  }
  // a malformed gap is dropped, the rest kept
  assertEquals(parseArchiveRecord(JSON.stringify({ ...record, gap: { after: 1 } })), {
    ...bare,
    lastTime: record.lastTime,
  });
});
