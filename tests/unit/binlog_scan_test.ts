/**
 * The binlog scanner on real MariaDB 10.11.19 binlogs (tests/unit/fixtures/binlog/) and on a MySQL 8.4 file
 * built here from bytes.
 *
 * The fixtures were written by a throwaway mariadbd (server_id=7, gtid_domain_id=0, binlog_format=ROW,
 * gtid_strict_mode=ON, binlog_checksum=CRC32, TZ=UTC) with:
 *
 * ```sql
 * CREATE DATABASE t1;                                                  -- 0-7-1
 * CREATE TABLE a (id INT PRIMARY KEY, v VARCHAR(20)) ENGINE=InnoDB;    -- 0-7-2
 * CREATE TABLE m (id INT) ENGINE=MyISAM;                               -- 0-7-3
 * INSERT INTO a VALUES (1,'one');                                      -- 0-7-4
 * BEGIN; INSERT ...; UPDATE ...; INSERT ...; COMMIT;                   -- 0-7-5
 * INSERT INTO m VALUES (10);                                           -- 0-7-6 (MyISAM: ends with a Query COMMIT)
 * FLUSH BINARY LOGS;                                                   -- mysql-bin.000001 closed
 * INSERT INTO a VALUES (4,'four');                                     -- 0-7-7
 * SET SESSION gtid_domain_id=1; INSERT INTO a VALUES (5,'five');       -- 1-7-1
 * SET SESSION server_id=8; INSERT INTO a VALUES (6,'six');             -- 0-8-8
 * ALTER TABLE a ADD COLUMN w INT;                                      -- 0-7-9
 * FLUSH BINARY LOGS;                                                   -- mysql-bin.000002 closed
 * DELETE FROM a WHERE id=6;                                            -- 0-7-10
 * -- mysql-bin.000003 copied here while still open
 * SET GLOBAL binlog_checksum=NONE;                                     -- rotates
 * INSERT INTO a VALUES (7,'seven',1); FLUSH BINARY LOGS;               -- 0-7-11 in mysql-bin.000004, no CRC
 * ```
 *
 * What `mariadb-binlog --base64-output=decode-rows -v` shows of them (abridged; 261203 0:03:26 UTC is
 * 1796256206):
 *
 * ```text
 * mysql-bin.000001
 * #261203  0:03:20 server id 7  end_log_pos 256 CRC32 0x13839786  Start: binlog v 4, server v 10.11.19-MariaDB-0+deb12u1-log created 261203  0:03:20 at startup
 * #261203  0:03:20 server id 7  end_log_pos 285 CRC32 0xde0f496e  Gtid list []
 * # at 328   #261203  0:03:26 server id 7  end_log_pos 370   GTID 0-7-1 ddl
 * # at 370   #261203  0:03:26 server id 7  end_log_pos 453   Query  xid=0
 * # at 453   #261203  0:03:26 ... end_log_pos 495   GTID 0-7-2 ddl      # at 495 ... end_log_pos 633   Query
 * # at 633   #261203  0:03:26 ... end_log_pos 675   GTID 0-7-3 ddl      # at 675 ... end_log_pos 786   Query
 * # at 786   #261203  0:03:27 ... end_log_pos 828   GTID 0-7-4 trans    # at 968 ... end_log_pos 999   Xid = 7
 * # at 999   #261203  0:03:27 ... end_log_pos 1041  GTID 0-7-5 trans    # at 1476 ... end_log_pos 1507 Xid = 10
 * # at 1507  #261203  0:03:28 ... end_log_pos 1549  GTID 0-7-6          # at 1677 ... end_log_pos 1748 Query COMMIT
 * # at 1748  #261203  0:03:28 ... end_log_pos 1795  Rotate to mysql-bin.000002  pos: 4
 * mysql-bin.000002
 * #261203  0:03:28 server id 7  end_log_pos 256  Start: binlog v 4, server v 10.11.19-MariaDB-0+deb12u1-log created 261203  0:03:28
 * #261203  0:03:28 server id 7  end_log_pos 299  Gtid list [0-7-6]
 * # at 385   #261203  0:03:29 server id 7 ... GTID 0-7-7 trans   # at 569 ... end_log_pos 600   Xid = 19
 * # at 600   #261203  0:03:29 server id 7 ... GTID 1-7-1 trans   # at 784 ... end_log_pos 815   Xid = 22
 * # at 815   #261203  0:03:29 server id 8 ... GTID 0-8-8 trans   # at 997 ... end_log_pos 1028  Xid = 25
 * # at 1028  #261203  0:03:29 server id 7 ... GTID 0-7-9 ddl     # at 1070 ... end_log_pos 1174 Query
 * # at 1174  ... end_log_pos 1221  Rotate to mysql-bin.000003  pos: 4
 * mysql-bin.000003 (open: 625 bytes)
 * #261203  0:03:29 server id 7  end_log_pos 331  Gtid list [0-8-8, 0-7-9, 1-7-1]
 * # at 374   #261203  0:03:29 ... end_log_pos 416   GTID 0-7-10 trans   # at 551 ... end_log_pos 582   Xid = 31
 * # at 582   #261203  0:03:30 ... end_log_pos 625   Binlog checkpoint mysql-bin.000003
 * mysql-bin.000004 (no CRC32)
 * #261203  0:05:08 server id 7  end_log_pos 327  Gtid list [0-8-8, 0-7-10, 1-7-1]
 * # at 405   #261203  0:05:08 ... end_log_pos 443   GTID 0-7-11 trans   # at 582 ... end_log_pos 609   Xid = 37
 * # at 609   ... end_log_pos 652   Rotate to mysql-bin.000005  pos: 4
 * ```
 */
import { assert, assertEquals, assertRejects, assertThrows } from "./assert.ts";
import {
  BinlogScanError,
  BinlogScanner,
  type BinlogScanOptions,
  type BinlogSummary,
  type BinlogTransaction,
  scanBinlog,
  scanningStream,
} from "../../src/binlog/scan.ts";

const FIXTURES = new URL("./fixtures/binlog/", import.meta.url);
const read = (name: string) => Deno.readFile(new URL(name, FIXTURES));

/** 2026-12-03 00:03:NN UTC. */
const at = (minute: number, second: number) => Date.UTC(2026, 11, 3, 0, minute, second) / 1000;

function scan(bytes: Uint8Array, opts: BinlogScanOptions = {}): BinlogSummary {
  const scanner = new BinlogScanner(opts);
  scanner.push(bytes);
  return scanner.finish();
}

function streamOf(bytes: Uint8Array, chunk = 100): ReadableStream<Uint8Array> {
  let offset = 0;
  return new ReadableStream({
    pull(controller) {
      if (offset >= bytes.length) return controller.close();
      controller.enqueue(bytes.slice(offset, offset + chunk));
      offset += chunk;
    },
  });
}

Deno.test("a closed MariaDB binlog: states, GTIDs, times and positions as mariadb-binlog shows them", async () => {
  const s = scan(await read("mysql-bin.000001"));
  assertEquals(s, {
    flavour: "mariadb",
    serverId: 7,
    createdAt: at(3, 20),
    serverVersion: "10.11.19-MariaDB-0+deb12u1-log",
    checksum: true,
    inUse: false,
    startState: "",
    endState: "0-7-6",
    firstGtid: "0-7-1",
    lastGtid: "0-7-6",
    transactions: 6,
    anonymousTransactions: 0,
    firstTime: at(3, 26),
    lastTime: at(3, 28),
    openGtid: undefined,
    closed: true,
    bytes: 1795,
    endPosition: 1795,
    committedPosition: 1795,
  });
});

Deno.test("onTransaction gets each transaction, ending at its Xid's or COMMIT's end_log_pos", async () => {
  const seen: BinlogTransaction[] = [];
  scan(await read("mysql-bin.000001"), { onTransaction: (t) => seen.push(t) });
  const t = (gtid: string, time: number, startPosition: number, endPosition: number) => ({
    gtid,
    time,
    endTime: time,
    startPosition,
    endPosition,
  });
  assertEquals(seen, [
    t("0-7-1", at(3, 26), 328, 453), // DDL: GTID with FL_STANDALONE, then one Query
    t("0-7-2", at(3, 26), 453, 633),
    t("0-7-3", at(3, 26), 633, 786),
    t("0-7-4", at(3, 27), 786, 999), // Xid = 7, end_log_pos 999
    t("0-7-5", at(3, 27), 999, 1507), // Xid = 10, end_log_pos 1507
    t("0-7-6", at(3, 28), 1507, 1748), // MyISAM: Query COMMIT, end_log_pos 1748
  ]);
});

Deno.test("the next file's startState is its Gtid_list; endState keeps the highest seq_no per domain and server", async () => {
  const seen: string[] = [];
  const s = scan(await read("mysql-bin.000002"), {
    onTransaction: (t) => seen.push(`${t.gtid}@${t.endPosition}`),
  });
  assertEquals(s.startState, "0-7-6");
  assertEquals(s.endState, "0-7-9,0-8-8,1-7-1");
  assertEquals([s.firstGtid, s.lastGtid, s.transactions, s.closed], ["0-7-7", "0-7-9", 4, true]);
  assertEquals(seen, ["0-7-7@600", "1-7-1@815", "0-8-8@1028", "0-7-9@1174"]);
  const third = scan(await read("mysql-bin.000003"));
  assertEquals(third.startState, "0-7-9,0-8-8,1-7-1");
  assertEquals(third.endState, "0-7-10,0-8-8,1-7-1");
});

Deno.test("the open binlog: in use, not closed, ends with a complete event", async () => {
  const s = scan(await read("mysql-bin.000003"));
  assertEquals([s.inUse, s.closed, s.transactions, s.lastGtid], [true, false, 1, "0-7-10"]);
  assertEquals([s.endPosition, s.committedPosition, s.bytes], [625, 625, 625]);
});

Deno.test("a binlog without checksums (binlog_checksum=NONE)", async () => {
  const seen: BinlogTransaction[] = [];
  const s = scan(await read("mysql-bin.000004"), { onTransaction: (t) => seen.push(t) });
  assertEquals([s.checksum, s.closed, s.startState, s.endState], [
    false,
    true,
    "0-7-10,0-8-8,1-7-1",
    "0-7-11,0-8-8,1-7-1",
  ]);
  assertEquals(seen, [{
    gtid: "0-7-11",
    time: at(5, 8),
    endTime: at(5, 8),
    startPosition: 405,
    endPosition: 609,
  }]);
});

Deno.test("chunks split at every byte boundary give the same summary and transactions", async () => {
  for (const name of ["mysql-bin.000001", "mysql-bin.000004"]) {
    const bytes = await read(name);
    const expected: BinlogTransaction[] = [];
    const whole = scan(bytes, { onTransaction: (t) => expected.push(t) });
    for (let cut = 0; cut <= bytes.length; cut++) {
      const seen: BinlogTransaction[] = [];
      const scanner = new BinlogScanner({ onTransaction: (t) => seen.push(t) });
      scanner.push(bytes.subarray(0, cut));
      scanner.push(bytes.subarray(cut));
      assertEquals(scanner.finish(), whole, `${name} cut at ${cut}`);
      assertEquals(seen, expected, `${name} cut at ${cut}`);
    }
    for (const size of [1, 2, 3, 7, 19, 23, 64]) {
      const scanner = new BinlogScanner();
      for (let i = 0; i < bytes.length; i += size) scanner.push(bytes.subarray(i, i + size));
      assertEquals(scanner.finish(), whole, `${name} in chunks of ${size}`);
    }
  }
});

Deno.test("a file cut in the middle of an event throws naming the offset; allowTruncated summarises it", async () => {
  const bytes = await read("mysql-bin.000001");
  // 1000 is inside the GTID event at 999 (ends at 1041).
  const e = assertThrows(() => scan(bytes.subarray(0, 1000)), BinlogScanError, "at 999");
  assert(e.message.includes("truncated in the middle of an event"), e.message);
  assertEquals(e.offset, 999);
  const s = scan(bytes.subarray(0, 1000), { allowTruncated: true });
  assertEquals([s.closed, s.endPosition, s.committedPosition, s.transactions, s.lastGtid, s.endState], [
    false,
    999,
    999,
    4,
    "0-7-4",
    "0-7-4",
  ]);
  assertEquals(s.bytes, 1000);
  // 1200 is inside transaction 0-7-5 (events end at 1181 and 1235): a transaction is open.
  const open = scan(bytes.subarray(0, 1200), { allowTruncated: true });
  assertEquals([open.endPosition, open.committedPosition, open.openGtid, open.lastGtid, open.transactions], [
    1181,
    999,
    "0-7-5",
    "0-7-4",
    4,
  ]);
  // Cut inside a header (the Rotate at 1748) and right after a complete event.
  assertThrows(() => scan(bytes.subarray(0, 1750)), BinlogScanError, "at 1748");
  const atBoundary = scan(bytes.subarray(0, 1748));
  assertEquals([atBoundary.closed, atBoundary.transactions, atBoundary.endPosition], [false, 6, 1748]);
  // Cut in the Format_description event: nothing to summarise, even with allowTruncated.
  assertThrows(() => scan(bytes.subarray(0, 100), { allowTruncated: true }), BinlogScanError, "at 4");
  await assertRejects(() => scanBinlog(streamOf(bytes.subarray(0, 1000))), BinlogScanError, "at 999");
  assertEquals(
    (await scanBinlog(streamOf(bytes.subarray(0, 1000)), { allowTruncated: true })).endPosition,
    999,
  );
});

Deno.test("bad magic, impossible event sizes and a bad checksum throw", async () => {
  const bytes = await read("mysql-bin.000001");
  assertThrows(
    () => scan(new TextEncoder().encode("-- MariaDB dump\n")),
    BinlogScanError,
    "not a binlog: bad magic",
  );
  assertThrows(() => scan(new Uint8Array(0)), BinlogScanError, "not a binlog");
  const withSize = (offset: number, size: number) => {
    const copy = bytes.slice();
    new DataView(copy.buffer).setUint32(offset + 9, size, true);
    return copy;
  };
  assertThrows(() => scan(withSize(786, 12)), BinlogScanError, "event at 786 claims 12 bytes");
  // Large but possible (a Query up to max_allowed_packet): the file is too short for it.
  assertThrows(
    () => scan(withSize(786, 99999999)),
    BinlogScanError,
    "truncated in the middle of an event at 786 (the event claims 99999999 bytes, the file holds 1009 of them)",
  );
  assertThrows(
    () => scan(withSize(786, 0xffffffff)),
    BinlogScanError,
    "event at 786 claims 4294967295 bytes",
  );
  const corrupt = bytes.slice();
  corrupt[786 + 19] ^= 1; // seq_no of GTID 0-7-4
  assertThrows(() => scan(corrupt), BinlogScanError, "event at 786 (type 162) fails its checksum");
  const notFde = bytes.slice();
  notFde[4 + 4] = 2;
  assertThrows(() => scan(notFde), BinlogScanError, "not a Format_description event");
  // The error sticks.
  const scanner = new BinlogScanner();
  assertThrows(() => scanner.push(withSize(786, 5)), BinlogScanError);
  assertThrows(() => scanner.finish(), BinlogScanError, "at 786");
});

Deno.test("scanBinlog reads a stream; a signal aborts it", async () => {
  const bytes = await read("mysql-bin.000002");
  const seen: string[] = [];
  const s = await scanBinlog(streamOf(bytes, 37), { onTransaction: (t) => seen.push(t.gtid) });
  assertEquals([s.endState, seen.length], ["0-7-9,0-8-8,1-7-1", 4]);
  const controller = new AbortController();
  controller.abort(new Error("stop"));
  await assertRejects(() => scanBinlog(streamOf(bytes), { signal: controller.signal }), Error, "stop");
  await assertRejects(() => scanBinlog(streamOf(new Uint8Array(30))), BinlogScanError, "bad magic");
});

Deno.test("scanningStream passes the bytes through unchanged and resolves the summary", async () => {
  const bytes = await read("mysql-bin.000001");
  const { stream, summary } = scanningStream();
  const out = new Uint8Array(await new Response(streamOf(bytes, 50).pipeThrough(stream)).arrayBuffer());
  assertEquals(out, bytes);
  assertEquals((await summary).endState, "0-7-6");
  // A bad file errors the stream and rejects the summary.
  const bad = scanningStream();
  await assertRejects(
    () => new Response(streamOf(bytes.subarray(0, 1000)).pipeThrough(bad.stream)).arrayBuffer(),
    BinlogScanError,
    "at 999",
  );
  await assertRejects(() => bad.summary, BinlogScanError, "at 999");
  const open = scanningStream({ allowTruncated: true });
  await new Response(streamOf(bytes.subarray(0, 1000)).pipeThrough(open.stream)).arrayBuffer();
  assertEquals((await open.summary).closed, false);
});

// ---------------------------------------------------------------------------------------------------------
// MySQL 8.4, built from bytes
// ---------------------------------------------------------------------------------------------------------

const CRC_TABLE = Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});

function crc32(bytes: Uint8Array): number {
  let c = 0xffffffff;
  for (const b of bytes) c = CRC_TABLE[(c ^ b) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

function le(value: number | bigint, width: number): number[] {
  let v = BigInt(value);
  const out: number[] = [];
  for (let i = 0; i < width; i++, v >>= 8n) out.push(Number(v & 0xffn));
  return out;
}

const ascii = (text: string) => [...new TextEncoder().encode(text)];
const uuidBytes = (uuid: string) => uuid.replaceAll("-", "").match(/../g)!.map((h) => parseInt(h, 16));

/** Builds a binlog of `events` (type, timestamp, body), with CRC32 checksums. */
function binlog(events: readonly [type: number, time: number, body: number[]][]): Uint8Array {
  const out = [0xfe, 0x62, 0x69, 0x6e];
  for (const [type, time, body] of events) {
    const size = 19 + body.length + 4;
    const event = [
      ...le(time, 4),
      type,
      ...le(1, 4),
      ...le(size, 4),
      ...le(out.length + size, 4),
      0,
      0,
      ...body,
    ];
    out.push(...event, ...le(crc32(new Uint8Array(event)), 4));
  }
  return new Uint8Array(out);
}

const SOURCE = "3e11fa47-71ca-11e1-9e33-c80aa9429562";
const OTHER = "8a94f357-aab4-11df-86ab-c80aa9429562";

function fde(version: string): number[] {
  const postHeaders = Array.from({ length: 41 }, () => 0);
  postHeaders[1] = 13; // QUERY_EVENT
  const name = [...ascii(version), ...Array.from({ length: 50 - version.length }, () => 0)];
  return [...le(4, 2), ...name, ...le(1_700_000_000, 4), 19, ...postHeaders, 1 /* CRC32 */];
}

function gtid(uuid: string, gno: number): number[] {
  // flags, sid, gno, lt_type 2, last_committed, sequence_number, immediate_commit_timestamp (7 bytes)
  return [1, ...uuidBytes(uuid), ...le(gno, 8), 2, ...le(0, 8), ...le(1, 8), ...le(1_700_000_100_000_000, 7)];
}

function query(text: string): number[] {
  // thread_id, exec_time, db_len 0, error_code, status_vars_len 0, db "" NUL, query
  return [...le(9, 4), ...le(0, 4), 0, ...le(0, 2), ...le(0, 2), 0, ...ascii(text)];
}

Deno.test("a MySQL 8.4 binlog built from bytes: Previous_gtids, Gtid_log events, MySQL GTID sets", () => {
  const previous = [
    ...le(2, 8),
    ...uuidBytes(SOURCE),
    ...le(1, 8),
    ...le(1, 8),
    ...le(6, 8), // 1-5 (the end is exclusive)
    ...uuidBytes(OTHER),
    ...le(2, 8),
    ...le(1, 8),
    ...le(3, 8),
    ...le(10, 8),
    ...le(11, 8), // 1-2:10
  ];
  const bytes = binlog([
    [15, 1_700_000_000, fde("8.4.0")],
    [35, 1_700_000_000, previous],
    [33, 1_700_000_100, gtid(SOURCE, 6)],
    [2, 1_700_000_100, query("BEGIN")],
    [19, 1_700_000_100, Array.from({ length: 30 }, (_, i) => i)], // Table_map (not read)
    [30, 1_700_000_100, Array.from({ length: 60 }, (_, i) => i)], // Write_rows (not read)
    [16, 1_700_000_101, le(77, 8)], // Xid
    [33, 1_700_000_102, gtid(SOURCE, 7)],
    [2, 1_700_000_102, query("CREATE TABLE t (id INT PRIMARY KEY)")], // DDL: no BEGIN, ends here
    [33, 1_700_000_103, gtid(SOURCE, 8)],
    [2, 1_700_000_103, query("BEGIN")],
    [2, 1_700_000_103, query("INSERT INTO t VALUES (1)")],
    [16, 1_700_000_104, le(78, 8)],
    [4, 1_700_000_105, [...le(4, 8), ...ascii("binlog.000002")]], // Rotate
  ]);
  const seen: BinlogTransaction[] = [];
  const s = scan(bytes, { onTransaction: (t) => seen.push(t) });
  assertEquals(s.flavour, "mysql");
  assertEquals(s.serverVersion, "8.4.0");
  assertEquals(s.startState, `${SOURCE}:1-5,${OTHER}:1-2:10`);
  assertEquals(s.endState, `${SOURCE}:1-8,${OTHER}:1-2:10`);
  assertEquals([s.firstGtid, s.lastGtid, s.transactions, s.closed], [`${SOURCE}:6`, `${SOURCE}:8`, 3, true]);
  assertEquals([s.firstTime, s.lastTime, s.createdAt, s.serverId], [
    1_700_000_100,
    1_700_000_104,
    1_700_000_000,
    1,
  ]);
  assertEquals(seen.map((t) => [t.gtid, t.time, t.endTime]), [
    [`${SOURCE}:6`, 1_700_000_100, 1_700_000_101],
    [`${SOURCE}:7`, 1_700_000_102, 1_700_000_102],
    [`${SOURCE}:8`, 1_700_000_103, 1_700_000_104],
  ]);
  // Each transaction ends where the next begins, and the last before the Rotate.
  assertEquals(seen[0].endPosition, seen[1].startPosition);
  assertEquals(seen[1].endPosition, seen[2].startPosition);
  assertEquals(seen[2].endPosition, bytes.length - (19 + 8 + 13 + 4));
  for (let cut = 0; cut <= bytes.length; cut++) {
    const scanner = new BinlogScanner();
    scanner.push(bytes.subarray(0, cut));
    scanner.push(bytes.subarray(cut));
    assertEquals(scanner.finish(), s, `cut at ${cut}`);
  }
});

Deno.test("MySQL: a gap and a second source make several intervals; no Previous_gtids means an empty start", () => {
  const bytes = binlog([
    [15, 1, fde("8.4.3")],
    [33, 2, gtid(SOURCE, 1)],
    [16, 2, le(1, 8)],
    [33, 3, gtid(SOURCE, 3)],
    [16, 3, le(2, 8)],
    [33, 4, gtid(OTHER, 9)],
    [16, 4, le(3, 8)],
  ]);
  const s = scan(bytes);
  assertEquals([s.startState, s.endState, s.closed], ["", `${SOURCE}:1:3,${OTHER}:9`, false]);
});
