/**
 * Archiving (src/binlog/archiver.ts): the per-second marks, and which local binlog file a primary archives
 * from, on the real MariaDB binlogs of tests/unit/fixtures/binlog/ (see binlog_scan_test.ts for what they
 * hold: 000001 starts empty and ends at 0-7-6; 000002 ends at 0-8-8,0-7-9,1-7-1; 000003 was copied while
 * open and holds 0-7-10; 000004 starts at 0-8-8,0-7-10,1-7-1).
 *
 * The unit tests run with read access only, so no upload can complete (zstd cannot be run, and the store
 * here refuses every object): the file a run starts from is the one its error names. What the uploads then
 * give (records, gaps) is tested in tests/integration/binlog_archiver_test.ts.
 */
import { assert, assertEquals, assertRejects } from "./assert.ts";
import {
  archiveBinlogs,
  ArchiveError,
  type ArchiveServer,
  MarkBuilder,
  readHead,
  uploadExtent,
  uploadSegment,
} from "../../src/binlog/archiver.ts";
import { isoSecond } from "../../src/binlog/plan.ts";
import { scanBinlog } from "../../src/binlog/scan.ts";
import { formatSegment, MAX_MARKS, parseSegment, segmentKeys } from "../../src/binlog/segment.ts";
import { MemoryStore } from "./memory_store.ts";
import type { ArchiveRecord } from "../../src/cluster_kv.ts";
import { MariadbGtidSet } from "../../src/mysql/gtid.ts";
import type { ObjectInfo, SnapshotStore } from "../../src/storage/store.ts";

const tx = (gtid: string, time: number) => ({ gtid, time, endTime: time, startPosition: 4, endPosition: 8 });

Deno.test("MarkBuilder (MariaDB): a position per second, every domain, the start state's domains kept", () => {
  const m = new MarkBuilder("mariadb", "0-8-8,0-7-9,1-7-1");
  m.add(tx("0-7-10", 100));
  m.add(tx("0-7-11", 100));
  m.add(tx("1-7-2", 101));
  m.add(tx("2-7-1", 103));
  m.add(tx("0-8-12", 103));
  assertEquals(m.marks(), [
    [100, "0-7-11,1-7-1"],
    [101, "0-7-11,1-7-2"],
    [103, "0-8-12,1-7-2,2-7-1"],
  ]);
  assertEquals(new MarkBuilder("mariadb", "").marks(), []);
});

Deno.test("MarkBuilder (MySQL): the executed set at the end of each second, including the start", () => {
  const U = "3e11fa47-71ca-11e1-9e33-c80aa9429562";
  const V = "4e11fa47-71ca-11e1-9e33-c80aa9429562";
  const m = new MarkBuilder("mysql", `${U}:1-10`);
  m.add(tx(`${U}:11`, 100));
  m.add(tx(`${U}:12`, 100));
  m.add(tx(`${V}:1`, 102));
  m.add(tx(`${U}:13`, 102));
  assertEquals(m.marks(), [[100, `${U}:1-12`], [102, `${U}:1-13,${V}:1`]]);
});

Deno.test("MarkBuilder: more than MAX_MARKS seconds gives no marks", () => {
  for (const flavour of ["mariadb", "mysql"] as const) {
    const U = "3e11fa47-71ca-11e1-9e33-c80aa9429562";
    const m = new MarkBuilder(flavour, "");
    for (let i = 0; i < MAX_MARKS; i++) {
      m.add(tx(flavour === "mariadb" ? `0-1-${i + 1}` : `${U}:${i + 1}`, i));
    }
    assertEquals(m.marks()?.length, MAX_MARKS);
    m.add(tx(flavour === "mariadb" ? `0-1-${MAX_MARKS + 1}` : `${U}:${MAX_MARKS + 1}`, MAX_MARKS));
    assertEquals(m.marks(), undefined);
  }
});

// ---------------------------------------------------------------------------------------------------------
// Where a run starts.
// ---------------------------------------------------------------------------------------------------------

const DIR = "tests/unit/fixtures/binlog";
const F = (n: number) => `mysql-bin.00000${n}`;
const END2 = "0-8-8,0-7-9,1-7-1"; // 000002's end, 000003's start
const END3 = "0-8-8,0-7-10,1-7-1"; // 000003's end, 000004's start

async function createdAt(n: number): Promise<string> {
  const bytes = await Deno.readFile(`${DIR}/${F(n)}`);
  return isoSecond((await scanBinlog(ReadableStream.from([bytes]), { allowTruncated: true })).createdAt);
}

/** A store that refuses every object. */
class RefusingStore implements SnapshotStore {
  readonly kind = "refusing";
  readonly location = "refusing:";
  readonly puts: string[] = [];
  put(key: string, body: ReadableStream<Uint8Array>): Promise<ObjectInfo> {
    this.puts.push(key);
    return body.cancel().then(() => Promise.reject(new Error(`refused ${key}`)));
  }
  get(): Promise<ReadableStream<Uint8Array>> {
    return Promise.reject(new Error("nothing here"));
  }
  async *list(): AsyncIterable<ObjectInfo> {}
  delete(): Promise<void> {
    return Promise.resolve();
  }
}

/** A server whose binlogs are the fixtures `files` (the last one open), `after` once flushed. */
function server(files: number[], executed: string, after: number[] = files) {
  let current = files;
  const s = {
    flushes: 0,
    binaryLogs: () => Promise.resolve({ dir: DIR, files: current.map((n) => ({ file: F(n), size: 1 })) }),
    flushBinaryLogs: () => {
      s.flushes += 1;
      current = after;
      return Promise.resolve();
    },
    gtidState: () => Promise.resolve({ executed }),
  };
  return s satisfies ArchiveServer;
}

async function record(n: number, endState: string, node = "n1"): Promise<ArchiveRecord> {
  return {
    node,
    serverId: 7,
    file: F(n),
    createdAt: await createdAt(n),
    endState,
    caughtUpAt: "2026-12-03T00:00:00.000Z",
    lagSeconds: 0,
  };
}

/** Runs archiveBinlogs; returns the file the first upload was of (undefined when none was tried). */
async function startsFrom(
  srv: ReturnType<typeof server>,
  last: ArchiveRecord | undefined,
): Promise<string | undefined> {
  try {
    const out = await archiveBinlogs({
      store: new RefusingStore(),
      server: srv,
      flavour: "mariadb",
      node: "n1",
      ...(last ? { last } : {}),
      listSegments: () => Promise.resolve([]),
    });
    assertEquals(out.uploaded, []);
    return undefined;
  } catch (e) {
    assert(e instanceof ArchiveError, String(e));
    return /mysql-bin\.\d+/.exec(e.message)?.[0];
  }
}

Deno.test("archiveBinlogs: nothing new on the same node: no flush, no upload, the record kept", async () => {
  const srv = server([1, 2, 3], END2);
  const last = await record(2, END2);
  const out = await archiveBinlogs({
    store: new RefusingStore(),
    server: srv,
    flavour: "mariadb",
    node: "n1",
    last,
    listSegments: () => Promise.reject(new Error("not read when there is a record")),
    now: () => new Date("2026-12-03T01:00:00Z"),
  });
  assertEquals(srv.flushes, 0);
  assertEquals(out.flushed, false);
  assertEquals(out.uploaded, []);
  assertEquals(out.gap, undefined);
  assertEquals(out.record, { ...last, caughtUpAt: "2026-12-03T01:00:00.000Z", lagSeconds: 0 });
});

Deno.test("archiveBinlogs: transactions in the open file: it is flushed and archived next", async () => {
  const srv = server([1, 2, 3], END3, [1, 2, 3, 4]);
  assertEquals(await startsFrom(srv, await record(2, END2)), F(3));
  assertEquals(srv.flushes, 1);
});

Deno.test("archiveBinlogs: the open file is flushed only when the server executed beyond its start", async () => {
  for (
    const [executed, flushes] of [[END2, 0], ["0-8-8,0-7-9", 0], [END3, 1], [
      "0-8-8,0-7-9,1-7-1,2-7-1",
      1,
    ]] as const
  ) {
    const srv = server([1, 2, 3], executed, [1, 2, 3, 4]);
    await startsFrom(srv, await record(2, END2));
    assertEquals(srv.flushes, flushes, executed);
  }
});

Deno.test("archiveBinlogs: an empty archive uploads every closed file, from the first", async () => {
  assertEquals(await startsFrom(server([1, 2, 3], END2), undefined), F(1));
});

Deno.test("archiveBinlogs: a record naming a file before it was uploaded does not skip it", async () => {
  // A first run finds only an open file without transactions: its record names that file at its start.
  const out = await archiveBinlogs({
    store: new RefusingStore(),
    server: server([3], END2),
    flavour: "mariadb",
    node: "n1",
    listSegments: () => Promise.resolve([]),
  });
  assertEquals(out.uploaded, []);
  assertEquals(out.record.file, F(3));
  assertEquals(MariadbGtidSet.parse(out.record.endState).equals(MariadbGtidSet.parse(END2)), true);
  // The next run: 000003 now holds 0-7-10 and is closed: it must be archived.
  const srv = server([3], END3, [3, 4]);
  assertEquals(await startsFrom(srv, out.record), F(3));
  // Whereas a record of 000003 after its upload (its end state) skips it.
  assertEquals(await startsFrom(server([3, 4], END3), await record(3, END3)), undefined);
});

Deno.test("archiveBinlogs: after a failover, from the file holding the archive's last transaction", async () => {
  // The old primary (another node) archived up to 0-7-9 / 0-7-7; this node's 000002 holds them (replicated)
  // and what follows.
  for (const end of [END2, "0-7-7", "0-7-6"]) {
    assertEquals(await startsFrom(server([1, 2, 3], END2), await record(2, end, "old")), F(2), end);
  }
  assertEquals(await startsFrom(server([1, 2, 3], END2), await record(1, "0-7-3", "old")), F(1));
  // The archive is past every local file's start: the newest closed file that starts inside it.
  assertEquals(await startsFrom(server([1, 2, 4, 3], END3), await record(1, END3, "old")), F(4));
});

Deno.test("archiveBinlogs: no local file starts inside the archive: a gap, and every closed file goes up", async () => {
  // 000001 purged; the archive ends at 0-7-3: the first local file starts at 0-7-6.
  assertEquals(await startsFrom(server([2, 3], END2), await record(1, "0-7-3", "old")), F(2));
  await assertRejects(
    () =>
      archiveBinlogs({
        store: new RefusingStore(),
        server: server([], ""),
        flavour: "mariadb",
        node: "n1",
        listSegments: () => Promise.resolve([]),
      }),
    ArchiveError,
    "log_bin is off",
  );
});

// ---------------------------------------------------------------------------------------------------------
// A file left by a crash; re-runs.
// ---------------------------------------------------------------------------------------------------------

Deno.test("uploadExtent: a file left by a crash is archived up to its last committed transaction", async () => {
  // crashed-bin.000003: 000003 (in-use flag set, no rotate) with 12 bytes of a cut event after it.
  const crashed = await readHead(DIR, "crashed-bin.000003");
  assertEquals(crashed.inUse, true);
  assertEquals(await uploadExtent(crashed), { bytes: 625, truncatedByCrash: true });
  // A file the server closed goes up whole.
  assertEquals(await uploadExtent(await readHead(DIR, F(2))), { truncatedByCrash: false });
});

Deno.test("uploadSegment: a file archived already is skipped, its objects never deleted", async () => {
  const head = await readHead(DIR, F(2));
  const keys = segmentKeys("n1", head.serverId, head.file, head.createdAt);
  const entry = {
    format: 1 as const,
    key: keys.data,
    node: "n1",
    serverId: head.serverId,
    file: head.file,
    createdAt: head.createdAt,
    flavour: "mariadb" as const,
    startState: head.startState,
    endState: END2,
    transactions: 4,
    rawBytes: (await Deno.stat(head.path)).size,
    size: 3,
    sha256: "0".repeat(64),
    archivedAt: "2026-12-03T00:00:00.000Z",
  };
  const store = new MemoryStore();
  store.set(keys.data, new Uint8Array(3));
  store.set(keys.index, formatSegment(entry));
  const puts: string[] = [];
  const deletes: string[] = [];
  const watched: SnapshotStore = {
    kind: store.kind,
    location: store.location,
    put: (k, b) => (puts.push(k), store.put(k, b)),
    get: (k) => store.get(k),
    list: (p) => store.list(p),
    delete: (ks) => (deletes.push(...ks), store.delete(ks)),
  };
  const again = await uploadSegment({ store: watched, head, node: "n1", flavour: "mariadb" });
  assertEquals(again, parseSegment(formatSegment(entry), keys.index));
  assertEquals([puts, deletes], [[], []]);
  // An entry that describes the file otherwise is neither overwritten nor its data deleted.
  store.set(keys.index, formatSegment({ ...entry, rawBytes: 1 }));
  await assertRejects(
    () => uploadSegment({ store: watched, head, node: "n1", flavour: "mariadb" }),
    ArchiveError,
    "does not match",
  );
  assertEquals([puts, deletes, store.objects.has(keys.data)], [[], [], true]);
});

Deno.test("archiveBinlogs: an archiver that lost the primary lock during the run uploads nothing more", async () => {
  const store = new RefusingStore();
  await assertRejects(
    () =>
      archiveBinlogs({
        store,
        server: server([1, 2, 3], END2),
        flavour: "mariadb",
        node: "n1",
        beforeUpload: () => Promise.reject(new ArchiveError("this node no longer holds the primary lock")),
        listSegments: () => Promise.resolve([]),
      }),
    ArchiveError,
    "no longer holds the primary lock",
  );
  assertEquals(store.puts, []);
});

Deno.test("archiveBinlogs: a gap is carried in the record until a snapshot taken after it", async () => {
  const gap = { after: "0-7-3", resumes: "0-7-6", at: "2026-12-03T00:30:00.000Z" };
  const run = async (lastSnapshotAt?: string) =>
    (await archiveBinlogs({
      store: new RefusingStore(),
      server: server([1, 2, 3], END2),
      flavour: "mariadb",
      node: "n1",
      last: { ...(await record(2, END2)), gap },
      ...(lastSnapshotAt !== undefined ? { lastSnapshotAt } : {}),
      listSegments: () => Promise.resolve([]),
    })).record.gap;
  assertEquals(await run(), gap);
  assertEquals(await run("2026-12-03T00:10:00.000Z"), gap, "a snapshot older than the gap");
  assertEquals(await run("2026-12-03T01:00:00.000Z"), undefined);
});
