/**
 * A streaming scanner of binary log files (format v4) for the binlog archiver and point-in-time restore.
 *
 * It reads every event's 19-byte common header (timestamp u32, type u8, server_id u32, event_size u32,
 * log_pos u32, flags u16, little-endian) and skips the body of all but the few events it needs: the
 * Format_description event (server version, checksum algorithm), the GTID events and GTID lists of both
 * flavours, and small Query events (to find `COMMIT`/`BEGIN`). Row events are never looked into, so the
 * work per byte is nil and the work per event a few dozen operations, as it must be under
 * `--jitless`. The CRC32 of the events whose bodies are read is checked (the rest is not: that would
 * cost a table look-up per byte).
 *
 * Transactions, as they end:
 * - MariaDB 10.11: a GTID event (162) starts one; it ends with an Xid event (16), a Query `COMMIT` or
 *   `ROLLBACK`, an XA_prepare event (38), or, when the GTID carries FL_STANDALONE (a DDL) or
 *   FL_COMPLETED_XA (an `XA COMMIT`/`XA ROLLBACK`), with the first Query event after it.
 * - MySQL 8.4: a Gtid_log event (33) starts one; if the first Query after it is not `BEGIN` or
 *   `XA START` it is a DDL and ends there; otherwise it ends with an Xid, a Query `COMMIT`, `ROLLBACK`,
 *   `XA COMMIT …` or `XA ROLLBACK …`, or an XA_prepare event. A Transaction_payload event (40, binlog
 *   transaction compression) holds the whole transaction and ends it. Anonymous transactions (34) are
 *   counted apart and have no GTID.
 * A GTID event arriving while a transaction is still open ends the open one just before it.
 *
 * References: MariaDB "Replication protocol" pages (FORMAT_DESCRIPTION_EVENT, GTID_EVENT, GTID_LIST_EVENT,
 * QUERY_EVENT); MySQL source documentation of `binary_log::Gtid_event`, `Previous_gtids_event` and
 * `Format_description_event`.
 *
 * @module
 */

import type { Flavour } from "../mysql/flavour.ts";
import { MariadbGtidSet, MysqlGtidSet } from "../mysql/gtid.ts";

/** One transaction of a binlog, reported as soon as its last event is complete. */
export interface BinlogTransaction {
  /** `domain-server_id-seq_no` (MariaDB) or `uuid:gno` (MySQL). */
  readonly gtid: string;
  /** Unix seconds in the header of its GTID event. */
  readonly time: number;
  /** Unix seconds in the header of its last event (the Xid or `COMMIT`). */
  readonly endTime: number;
  /** Offset in the file of its GTID event (a `--start-position` for it). */
  readonly startPosition: number;
  /**
   * Offset in the file just after its last event (its Xid or `COMMIT`): the `end_log_pos` that
   * `mariadb-binlog` shows for that event, and what `--stop-position` takes to include the transaction.
   */
  readonly endPosition: number;
}

/** What a binlog file holds, from {@link BinlogScanner.finish}. */
export interface BinlogSummary {
  /** MariaDB when the file carries MariaDB events (types 160..163), else from the server version. */
  readonly flavour: Flavour;
  /** server_id in the header of the Format_description event: the server that wrote the file. */
  readonly serverId: number;
  /** Unix seconds in the header of the Format_description event. */
  readonly createdAt: number;
  /** The server version in the Format_description event, e.g. `10.11.19-MariaDB-0+deb12u1-log`. */
  readonly serverVersion: string;
  /** Whether events carry a CRC32 (`binlog_checksum=CRC32`). */
  readonly checksum: boolean;
  /**
   * The Format_description event's LOG_EVENT_BINLOG_IN_USE_F flag: set while the server has the file
   * open, cleared when it closes it. Set on a closed file means the server died while writing it.
   */
  readonly inUse: boolean;
  /**
   * The binlog state before this file: MariaDB, the Gtid_list event (`d-s-n,...` as
   * {@link MariadbGtidSet.toString} prints it); MySQL, the Previous_gtids set ({@link MysqlGtidSet} text).
   */
  readonly startState: string;
  /** `startState` plus every GTID of a complete transaction in the file, in the same form. */
  readonly endState: string;
  readonly firstGtid?: string;
  readonly lastGtid?: string;
  /** Complete transactions with a GTID. */
  readonly transactions: number;
  /** Complete MySQL transactions without a GTID (Anonymous_gtid events, `gtid_mode=OFF`). */
  readonly anonymousTransactions: number;
  /** Unix seconds of the first complete transaction's GTID event; undefined when there is none. */
  readonly firstTime?: number;
  /** Unix seconds of the last event of the last complete transaction. */
  readonly lastTime?: number;
  /** The GTID of a transaction begun but not ended at the end of the file (an open binlog), if any. */
  readonly openGtid?: string;
  /** The file ends with a Rotate (4) or Stop (3) event: complete. False for the open binlog or a cut file. */
  readonly closed: boolean;
  /** Bytes scanned (all that was pushed). */
  readonly bytes: number;
  /** Offset after the last complete event. */
  readonly endPosition: number;
  /**
   * Offset after the last complete transaction, or after the last event before the first transaction:
   * where a copy of an open binlog can stop without cutting a transaction.
   */
  readonly committedPosition: number;
}

/** The file is not a binlog, is corrupt, or (without `allowTruncated`) ends in the middle of an event. */
export class BinlogScanError extends Error {
  /** Offset in the file of the event (or byte) at fault. */
  readonly offset: number;

  constructor(offset: number, message: string) {
    super(message);
    this.name = "BinlogScanError";
    this.offset = offset;
  }
}

/** Options of {@link BinlogScanner}, {@link scanBinlog} and {@link scanningStream}. */
export interface BinlogScanOptions {
  /** Called for each complete transaction, in order; an exception it throws ends the scan. */
  readonly onTransaction?: (t: BinlogTransaction) => void;
  /**
   * Summarise a file cut in the middle of an event (the open binlog being written) up to its last complete
   * event instead of throwing. A file too short to hold its Format_description event still throws.
   */
  readonly allowTruncated?: boolean;
}

const MAGIC = [0xfe, 0x62, 0x69, 0x6e];
const HEADER = 19;
/** Largest event accepted: max_allowed_packet's ceiling (1 GiB) plus room for headers. */
const MAX_EVENT_SIZE = 0x40000000 + 0x100000;
/** Query events up to this size are read (enough for `COMMIT`, `BEGIN`, `XA START …` with any status). */
const MAX_QUERY_READ = 4096;

// Event types.
const QUERY = 2;
const STOP = 3;
const ROTATE = 4;
const FORMAT_DESCRIPTION = 15;
const XID = 16;
const MYSQL_GTID = 33;
const MYSQL_ANONYMOUS_GTID = 34;
const MYSQL_PREVIOUS_GTIDS = 35;
const XA_PREPARE = 38;
const MYSQL_TRANSACTION_PAYLOAD = 40;
const MYSQL_GTID_TAGGED = 42;
const MARIADB_ANNOTATE_ROWS = 160;
const MARIADB_GTID = 162;
const MARIADB_GTID_LIST = 163;
const MARIADB_START_ENCRYPTION = 164;

// MariaDB GTID event flags.
const FL_STANDALONE = 1;
const FL_COMPLETED_XA = 128;

const LOG_EVENT_BINLOG_IN_USE_F = 1;

/** Transaction state. */
const NONE = 0;
/** A MySQL GTID was seen, no Query yet: the first Query tells a DDL from a `BEGIN`. */
const FIRST_QUERY = 1;
/** Ends with the next Query event (MariaDB FL_STANDALONE or FL_COMPLETED_XA). */
const STANDALONE = 2;
/** Ends with Xid, `COMMIT`, `ROLLBACK`, XA … or XA_prepare. */
const OPEN = 3;

const CRC_TABLE = (() => {
  const table = new Int32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    table[n] = c;
  }
  return table;
})();

/** CRC32 (zlib's) of `bytes[start, end)`, as binlog checksums use it. */
function crc32(bytes: Uint8Array, start: number, end: number): number {
  let c = -1;
  for (let i = start; i < end; i++) c = CRC_TABLE[(c ^ bytes[i]) & 0xff] ^ (c >>> 8);
  return (c ^ -1) >>> 0;
}

function u16(b: Uint8Array, i: number): number {
  return b[i] | (b[i + 1] << 8);
}

function u32(b: Uint8Array, i: number): number {
  return (b[i] | (b[i + 1] << 8) | (b[i + 2] << 16) | (b[i + 3] << 24)) >>> 0;
}

/** A little-endian 64-bit integer: a number when it is safe, a bigint otherwise. */
function u64(b: Uint8Array, i: number): number | bigint {
  const lo = u32(b, i);
  const hi = u32(b, i + 4);
  if (hi < 0x200000) return hi * 0x100000000 + lo;
  return (BigInt(hi) << 32n) | BigInt(lo);
}

const HEX: string[] = [];
for (let i = 0; i < 256; i++) HEX.push((i < 16 ? "0" : "") + i.toString(16));

function uuidAt(b: Uint8Array, i: number): string {
  let s = "";
  for (let k = 0; k < 16; k++) {
    if (k === 4 || k === 6 || k === 8 || k === 10) s += "-";
    s += HEX[b[i + k]];
  }
  return s;
}

/** Whether `b[start, end)` is exactly the ASCII text `word` (case-insensitive), or starts with it. */
function textIs(b: Uint8Array, start: number, end: number, word: string, prefix: boolean): boolean {
  const n = word.length;
  if (prefix ? end - start < n : end - start !== n) return false;
  for (let k = 0; k < n; k++) {
    const c = b[start + k];
    if ((c >= 0x61 && c <= 0x7a ? c - 32 : c) !== word.charCodeAt(k)) return false;
  }
  return true;
}

/** A mutable MySQL interval `[start, end]`. */
type Interval = [number | bigint, number | bigint];

/**
 * Scans a binlog pushed in chunks of any size, in order.
 *
 * Errors (a {@link BinlogScanError}) are thrown by the `push` that brings the bad bytes, or by `finish` for
 * a file that ends too early; after one, the scanner rejects further use with the same error.
 */
export class BinlogScanner {
  readonly #onTransaction?: (t: BinlogTransaction) => void;
  readonly #allowTruncated: boolean;
  #error: unknown;
  #finished = false;

  /** Bytes seen so far (= the offset of the next byte). */
  #bytes = 0;
  /** Offset of the current event (or of the magic, 0, before it). */
  #eventStart = 0;
  /** Bytes of the current event still to skip (its body is not read). */
  #skip = 0;
  /** Holds a header or a body that spans chunks. */
  #buf = new Uint8Array(256);
  #have = 0;
  /** Bytes wanted in `#buf` before the next step: 4 (magic), 19 (header) or the event size. */
  #want = 4;
  #gotMagic = false;

  // The current event's header, kept while its body is skipped.
  #type = 0;
  #time = 0;
  #size = 0;

  // From the Format_description event.
  #sawFde = false;
  #serverId = 0;
  #createdAt = 0;
  #serverVersion = "";
  #checksum = false;
  #inUse = false;
  #queryPostHeader = 13;
  #mariadbEvents = false;

  #sawStartState = false;
  #startMariadb = "";
  #startMysql = "";
  /** MariaDB: `domain-server_id` to the highest seq_no in this file. */
  #mariadbSeen = new Map<string, number | bigint>();
  /** MySQL: uuid to the intervals of GTIDs in this file, in the order seen. */
  #mysqlSeen = new Map<string, Interval[]>();
  #lastSidBytes = new Uint8Array(16);
  #lastSid = "";

  #endPosition = 0;
  #committedPosition = 0;
  #lastType = -1;
  #transactions = 0;
  #anonymous = 0;
  #firstGtid?: string;
  #lastGtid?: string;
  #firstTime?: number;
  #lastTime?: number;

  // The open transaction.
  #trx = NONE;
  #trxGtid = "";
  #trxAnonymous = false;
  #trxTime = 0;
  #trxStart = 0;
  #trxLastTime = 0;
  #trxLastEnd = 0;
  #trxDomainServer = "";
  #trxSeq: number | bigint = 0;
  #trxSid = "";
  #trxGno: number | bigint = 0;

  /**
   * @param opts.onTransaction called for each complete transaction, in order
   * @param opts.allowTruncated let {@link BinlogScanner.finish} summarise a file cut in an event
   */
  constructor(opts: BinlogScanOptions = {}) {
    this.#onTransaction = opts.onTransaction;
    this.#allowTruncated = opts.allowTruncated ?? false;
  }

  /**
   * Scans the next bytes of the file.
   *
   * @param chunk the bytes following those pushed before (not kept: the caller may reuse it)
   * @throws {BinlogScanError} if these bytes show the file is not a valid binlog
   */
  push(chunk: Uint8Array): void {
    if (this.#error !== undefined) throw this.#error;
    if (this.#finished) throw new Error("BinlogScanner.push() after finish()");
    try {
      this.#push(chunk);
    } catch (e) {
      this.#error = e;
      throw e;
    }
  }

  /**
   * Ends the scan.
   *
   * @returns the summary of the file
   * @throws {BinlogScanError} if the file ends in the middle of an event (unless `allowTruncated`) or before
   *   its Format_description event is complete
   */
  finish(): BinlogSummary {
    if (this.#error !== undefined) throw this.#error;
    this.#finished = true;
    const cut = this.#skip > 0 || this.#have > 0;
    if (!this.#sawFde) {
      if (!this.#gotMagic && this.#bytes < 4) {
        this.#error = new BinlogScanError(0, `not a binlog: ${this.#bytes} bytes, shorter than the magic`);
      } else {
        this.#error = new BinlogScanError(
          this.#eventStart,
          `truncated before the end of the Format_description event at ${this.#eventStart}`,
        );
      }
      throw this.#error;
    }
    if (cut && !this.#allowTruncated) {
      const had = this.#bytes - this.#eventStart;
      const what = this.#have > 0 && this.#want === HEADER
        ? `the file ends ${had} bytes into its ${HEADER}-byte header`
        : `the event claims ${this.#size} bytes, the file holds ${had} of them`;
      this.#error = new BinlogScanError(
        this.#eventStart,
        `truncated in the middle of an event at ${this.#eventStart} (${what})`,
      );
      throw this.#error;
    }
    const mariadb = this.#mariadbEvents || /mariadb/i.test(this.#serverVersion);
    let startState: string;
    let endState: string;
    if (mariadb) {
      const start = MariadbGtidSet.parse(this.#startMariadb);
      const parts: string[] = [];
      for (const [key, seq] of this.#mariadbSeen) parts.push(`${key}-${seq}`);
      startState = start.toString();
      endState = start.union(MariadbGtidSet.parse(parts.join(","))).toString();
    } else {
      const start = MysqlGtidSet.parse(this.#startMysql);
      const parts: string[] = [];
      for (const [uuid, intervals] of this.#mysqlSeen) {
        parts.push(uuid + intervals.map(([a, b]) => (a === b ? `:${a}` : `:${a}-${b}`)).join(""));
      }
      startState = start.toString();
      endState = start.union(MysqlGtidSet.parse(parts.join(","))).toString();
    }
    return Object.freeze({
      flavour: mariadb ? "mariadb" : "mysql",
      serverId: this.#serverId,
      createdAt: this.#createdAt,
      serverVersion: this.#serverVersion,
      checksum: this.#checksum,
      inUse: this.#inUse,
      startState,
      endState,
      firstGtid: this.#firstGtid,
      lastGtid: this.#lastGtid,
      transactions: this.#transactions,
      anonymousTransactions: this.#anonymous,
      firstTime: this.#firstTime,
      lastTime: this.#lastTime,
      openGtid: this.#trx !== NONE && !this.#trxAnonymous ? this.#trxGtid : undefined,
      closed: !cut && (this.#lastType === ROTATE || this.#lastType === STOP),
      bytes: this.#bytes,
      endPosition: this.#endPosition,
      committedPosition: this.#committedPosition,
    });
  }

  #push(chunk: Uint8Array): void {
    const n = chunk.length;
    let off = 0;
    this.#bytes += n;
    const base = this.#bytes - n; // file offset of chunk[0]
    while (off < n) {
      if (this.#skip > 0) {
        const k = n - off < this.#skip ? n - off : this.#skip;
        off += k;
        this.#skip -= k;
        if (this.#skip === 0) this.#event(null, 0);
        continue;
      }
      if (this.#have === 0) {
        // Fast path: the header (and, when needed, the whole event) is in this chunk.
        if (this.#gotMagic && n - off >= HEADER) {
          this.#eventStart = base + off;
          const size = this.#header(chunk, off);
          if (!this.#needsBody()) {
            if (n - off >= size) {
              off += size;
              this.#event(null, 0);
            } else {
              this.#skip = size - (n - off);
              off = n;
            }
            continue;
          }
          if (n - off >= size) {
            this.#event(chunk, off);
            off += size;
            continue;
          }
          this.#want = size;
        } else {
          if (this.#gotMagic) this.#eventStart = base + off;
          this.#want = this.#gotMagic ? HEADER : 4;
        }
      }
      // Slow path: gather `#want` bytes into `#buf`.
      if (this.#buf.length < this.#want) {
        const bigger = new Uint8Array(Math.max(this.#want, this.#buf.length * 2));
        bigger.set(this.#buf.subarray(0, this.#have));
        this.#buf = bigger;
      }
      const k = Math.min(this.#want - this.#have, n - off);
      this.#buf.set(chunk.subarray(off, off + k), this.#have);
      this.#have += k;
      off += k;
      if (this.#have < this.#want) break;
      if (!this.#gotMagic) {
        this.#have = 0;
        this.#checkMagic(this.#buf);
        continue;
      }
      if (this.#want === HEADER) {
        const size = this.#header(this.#buf, 0);
        if (!this.#needsBody()) {
          this.#have = 0;
          this.#skip = size - HEADER;
          if (this.#skip === 0) this.#event(null, 0);
          continue;
        }
        this.#want = size;
        if (size > HEADER) continue;
      }
      this.#have = 0;
      this.#event(this.#buf, 0);
    }
  }

  #checkMagic(b: Uint8Array): void {
    for (let i = 0; i < 4; i++) {
      if (b[i] !== MAGIC[i]) {
        const got = Array.from(b.subarray(0, 4), (x) => x.toString(16).padStart(2, "0")).join(" ");
        throw new BinlogScanError(0, `not a binlog: bad magic (${got}, expected fe 62 69 6e)`);
      }
    }
    this.#gotMagic = true;
    this.#eventStart = 4;
    this.#endPosition = 4;
    this.#committedPosition = 4;
  }

  /** Reads and checks a common header at `b[i]`; returns the event size. */
  #header(b: Uint8Array, i: number): number {
    const type = b[i + 4];
    const size = u32(b, i + 9);
    const at = this.#eventStart;
    const min = HEADER + (this.#checksum ? 4 : 0);
    if (size < min) {
      throw new BinlogScanError(at, `event at ${at} claims ${size} bytes, less than its ${min}-byte minimum`);
    }
    if (size > MAX_EVENT_SIZE) throw new BinlogScanError(at, `event at ${at} claims ${size} bytes`);
    if (!this.#sawFde && type !== FORMAT_DESCRIPTION) {
      throw new BinlogScanError(at, `first event at ${at} has type ${type}, not a Format_description event`);
    }
    this.#type = type;
    this.#size = size;
    this.#time = u32(b, i);
    return size;
  }

  /** Whether the current event's body must be read. */
  #needsBody(): boolean {
    const type = this.#type;
    if (type === QUERY) return this.#trx !== NONE && this.#trx !== STANDALONE && this.#size <= MAX_QUERY_READ;
    return type === FORMAT_DESCRIPTION || type === MARIADB_GTID || type === MARIADB_GTID_LIST ||
      type === MYSQL_GTID || type === MYSQL_PREVIOUS_GTIDS || type === MYSQL_GTID_TAGGED ||
      type === MARIADB_START_ENCRYPTION;
  }

  /** Verifies the CRC32 of the event at `b[i]`, if checksums are on. */
  #verify(b: Uint8Array, i: number): void {
    if (!this.#checksum) return;
    const end = i + this.#size - 4;
    const want = u32(b, end);
    let got: number;
    if (this.#type === FORMAT_DESCRIPTION && (b[i + 17] & LOG_EVENT_BINLOG_IN_USE_F) !== 0) {
      // The checksum is of the event as first written, without the in-use flag (cleared at close).
      const copy = b.slice(i, end);
      copy[17] &= ~LOG_EVENT_BINLOG_IN_USE_F;
      got = crc32(copy, 0, copy.length);
    } else {
      got = crc32(b, i, end);
    }
    if (got !== want) {
      const hex = (x: number) => `0x${x.toString(16).padStart(8, "0")}`;
      throw new BinlogScanError(
        this.#eventStart,
        `event at ${this.#eventStart} (type ${this.#type}) fails its checksum: CRC32 ${hex(got)}, ` +
          `recorded ${hex(want)}`,
      );
    }
  }

  /** Handles a complete event; `b` holds it at `i` when its body was read, else is null. */
  #event(b: Uint8Array | null, i: number): void {
    const type = this.#type;
    const at = this.#eventStart;
    const end = at + this.#size;
    if (b !== null) {
      if (type === FORMAT_DESCRIPTION) this.#formatDescription(b, i);
      else {
        this.#verify(b, i);
        const body = i + HEADER;
        const bodyEnd = i + this.#size - (this.#checksum ? 4 : 0);
        switch (type) {
          case MARIADB_GTID:
            this.#mariadbGtid(b, body, bodyEnd, end);
            break;
          case MARIADB_GTID_LIST:
            this.#gtidList(b, body, bodyEnd);
            break;
          case MYSQL_GTID:
            this.#mysqlGtid(b, body, bodyEnd);
            break;
          case MYSQL_PREVIOUS_GTIDS:
            this.#previousGtids(b, body, bodyEnd);
            break;
          case QUERY:
            this.#query(b, body, bodyEnd, end);
            break;
          case MYSQL_GTID_TAGGED:
            throw new BinlogScanError(at, `tagged GTID event (type 42) at ${at} is not supported`);
          case MARIADB_START_ENCRYPTION:
            throw new BinlogScanError(
              at,
              `encrypted binlog (Start_encryption event at ${at}) is not supported`,
            );
        }
      }
    } else {
      switch (type) {
        case XID:
        case XA_PREPARE:
        case MYSQL_TRANSACTION_PAYLOAD:
          if (this.#trx !== NONE) this.#endTransaction(end);
          break;
        case QUERY:
          // A big Query (not a COMMIT), or one ending a standalone GTID.
          if (this.#trx === STANDALONE || this.#trx === FIRST_QUERY) this.#endTransaction(end);
          break;
        case MYSQL_ANONYMOUS_GTID:
          this.#beginTransaction(end, FIRST_QUERY, "", true);
          break;
        default:
          if (type >= MARIADB_ANNOTATE_ROWS && type <= MARIADB_GTID_LIST) this.#mariadbEvents = true;
      }
    }
    this.#lastType = type;
    this.#endPosition = end;
    if (this.#trx !== NONE) {
      this.#trxLastEnd = end;
      this.#trxLastTime = this.#time;
    } else {
      this.#committedPosition = end;
    }
  }

  #formatDescription(b: Uint8Array, i: number): void {
    const at = this.#eventStart;
    if (this.#sawFde) {
      // A second one (never written by a server into its own binlog): keep the first's facts.
      return;
    }
    const size = this.#size;
    if (size < HEADER + 57 + 5) {
      throw new BinlogScanError(at, `Format_description event at ${at} is ${size} bytes, too short`);
    }
    const body = i + HEADER;
    const version = u16(b, body);
    if (version !== 4) throw new BinlogScanError(at, `binlog format version ${version} at ${at}, not 4`);
    let v = "";
    for (let k = 0; k < 50; k++) {
      const c = b[body + 2 + k];
      if (c === 0) break;
      v += String.fromCharCode(c);
    }
    const headerLength = b[body + 56];
    if (headerLength !== HEADER) {
      throw new BinlogScanError(
        at,
        `Format_description event at ${at} gives a header length of ${headerLength}`,
      );
    }
    // The checksum algorithm byte comes before the 4 checksum bytes, which are there even when it is 0.
    const alg = b[i + size - 5];
    if (alg !== 0 && alg !== 1) {
      throw new BinlogScanError(at, `Format_description event at ${at} names checksum algorithm ${alg}`);
    }
    this.#checksum = alg === 1;
    this.#verify(b, i);
    const postHeaders = size - 5 - (body + 57 - i);
    if (postHeaders >= QUERY) this.#queryPostHeader = b[body + 57 + QUERY - 1];
    this.#sawFde = true;
    this.#serverVersion = v;
    this.#serverId = u32(b, i + 5);
    this.#createdAt = this.#time;
    this.#inUse = (u16(b, i + 17) & LOG_EVENT_BINLOG_IN_USE_F) !== 0;
  }

  #tooShort(what: string, need: number, have: number): never {
    const at = this.#eventStart;
    throw new BinlogScanError(at, `${what} event at ${at} has a ${have}-byte body, needs ${need}`);
  }

  #mariadbGtid(b: Uint8Array, body: number, bodyEnd: number, end: number): void {
    this.#mariadbEvents = true;
    if (bodyEnd - body < 13) this.#tooShort("GTID", 13, bodyEnd - body);
    const seq = u64(b, body);
    const domain = u32(b, body + 8);
    const flags = b[body + 12];
    const serverId = u32(b, body - HEADER + 5);
    const key = `${domain}-${serverId}`;
    this.#beginTransaction(
      end,
      flags & (FL_STANDALONE | FL_COMPLETED_XA) ? STANDALONE : OPEN,
      `${key}-${seq}`,
    );
    this.#trxDomainServer = key;
    this.#trxSeq = seq;
  }

  #gtidList(b: Uint8Array, body: number, bodyEnd: number): void {
    this.#mariadbEvents = true;
    if (bodyEnd - body < 4) this.#tooShort("Gtid_list", 4, bodyEnd - body);
    const count = u32(b, body) & 0x0fffffff;
    if (bodyEnd - body < 4 + 16 * count) this.#tooShort("Gtid_list", 4 + 16 * count, bodyEnd - body);
    // The first Gtid_list is the state before the file (one only is written, right after the FDE).
    if (this.#sawStartState) return;
    this.#sawStartState = true;
    const parts: string[] = [];
    for (let k = 0, p = body + 4; k < count; k++, p += 16) {
      parts.push(`${u32(b, p)}-${u32(b, p + 4)}-${u64(b, p + 8)}`);
    }
    this.#startMariadb = parts.join(",");
  }

  #mysqlGtid(b: Uint8Array, body: number, bodyEnd: number): void {
    if (bodyEnd - body < 25) this.#tooShort("Gtid_log", 25, bodyEnd - body);
    const last = this.#lastSidBytes;
    let same = this.#lastSid !== "";
    for (let k = 0; same && k < 16; k++) same = last[k] === b[body + 1 + k];
    if (!same) {
      last.set(b.subarray(body + 1, body + 17));
      this.#lastSid = uuidAt(b, body + 1);
    }
    const gno = u64(b, body + 17);
    this.#beginTransaction(this.#eventStart + this.#size, FIRST_QUERY, `${this.#lastSid}:${gno}`);
    this.#trxSid = this.#lastSid;
    this.#trxGno = gno;
  }

  #previousGtids(b: Uint8Array, body: number, bodyEnd: number): void {
    const at = this.#eventStart;
    if (bodyEnd - body < 8) this.#tooShort("Previous_gtids", 8, bodyEnd - body);
    if (b[body + 7] !== 0) {
      throw new BinlogScanError(at, `Previous_gtids event at ${at} is in the tagged format, not supported`);
    }
    const nSids = u64(b, body);
    const parts: string[] = [];
    let p = body + 8;
    for (let s = 0; s < Number(nSids); s++) {
      if (bodyEnd - p < 24) this.#tooShort("Previous_gtids", p - body + 24, bodyEnd - body);
      const uuid = uuidAt(b, p);
      const nIntervals = Number(u64(b, p + 16));
      p += 24;
      if (bodyEnd - p < 16 * nIntervals) {
        this.#tooShort("Previous_gtids", p - body + 16 * nIntervals, bodyEnd - body);
      }
      let text = uuid;
      for (let k = 0; k < nIntervals; k++, p += 16) {
        const start = BigInt(u64(b, p));
        const endExclusive = BigInt(u64(b, p + 8));
        if (endExclusive <= start) {
          throw new BinlogScanError(at, `Previous_gtids event at ${at} has an empty interval for ${uuid}`);
        }
        text += endExclusive - 1n === start ? `:${start}` : `:${start}-${endExclusive - 1n}`;
      }
      if (nIntervals > 0) parts.push(text);
    }
    if (this.#sawStartState) return;
    this.#sawStartState = true;
    this.#startMysql = parts.join(",");
  }

  #query(b: Uint8Array, body: number, bodyEnd: number, end: number): void {
    const post = this.#queryPostHeader;
    if (bodyEnd - body < post) this.#tooShort("Query", post, bodyEnd - body);
    const dbLength = b[body + 8];
    const statusLength = u16(b, body + 11);
    const q = body + post + statusLength + dbLength + 1;
    if (q > bodyEnd) this.#tooShort("Query", q - body, bodyEnd - body);
    if (this.#trx === FIRST_QUERY) {
      if (textIs(b, q, bodyEnd, "BEGIN", false) || textIs(b, q, bodyEnd, "XA START ", true)) {
        this.#trx = OPEN;
      } else {
        this.#endTransaction(end);
      }
      return;
    }
    if (
      textIs(b, q, bodyEnd, "COMMIT", false) || textIs(b, q, bodyEnd, "ROLLBACK", false) ||
      textIs(b, q, bodyEnd, "XA COMMIT ", true) || textIs(b, q, bodyEnd, "XA ROLLBACK ", true)
    ) {
      this.#endTransaction(end);
    }
  }

  #beginTransaction(end: number, state: number, gtid: string, anonymous = false): void {
    // A transaction left open ends before this one's GTID event.
    if (this.#trx !== NONE) this.#endTransaction(this.#trxLastEnd, true);
    this.#trx = state;
    this.#trxGtid = gtid;
    this.#trxAnonymous = anonymous;
    this.#trxTime = this.#time;
    this.#trxStart = this.#eventStart;
    this.#trxLastEnd = end;
  }

  #endTransaction(end: number, early = false): void {
    const time = early ? this.#trxLastTime : this.#time;
    this.#trx = NONE;
    this.#committedPosition = end;
    if (this.#trxAnonymous) {
      this.#anonymous++;
      return;
    }
    const gtid = this.#trxGtid;
    this.#transactions++;
    this.#firstGtid ??= gtid;
    this.#firstTime ??= this.#trxTime;
    this.#lastGtid = gtid;
    this.#lastTime = time;
    if (this.#trxDomainServer !== "") {
      const key = this.#trxDomainServer;
      const seen = this.#mariadbSeen.get(key);
      if (seen === undefined || seen < this.#trxSeq) this.#mariadbSeen.set(key, this.#trxSeq);
      this.#trxDomainServer = "";
    } else {
      let intervals = this.#mysqlSeen.get(this.#trxSid);
      if (intervals === undefined) {
        intervals = [];
        this.#mysqlSeen.set(this.#trxSid, intervals);
      }
      const gno = this.#trxGno;
      const last = intervals[intervals.length - 1];
      const next = last === undefined
        ? undefined
        : typeof last[1] === "number" && typeof gno === "number"
        ? last[1] + 1 === gno
        : BigInt(last[1]) + 1n === BigInt(gno);
      if (last !== undefined && next) {
        last[1] = gno;
      } else {
        intervals.push([gno, gno]);
      }
    }
    this.#onTransaction?.(
      Object.freeze({
        gtid,
        time: this.#trxTime,
        endTime: time,
        startPosition: this.#trxStart,
        endPosition: end,
      }),
    );
  }
}

/**
 * Scans a whole binlog stream.
 *
 * @param source the file's bytes; it is read to the end, or cancelled on an error or abort
 * @param opts.onTransaction called for each complete transaction, in order
 * @param opts.allowTruncated summarise a file cut in the middle of an event (the open binlog) up to its last
 *   complete event instead of throwing
 * @param opts.signal aborts the scan (rejecting with its reason)
 * @returns the summary
 * @throws {BinlogScanError} if the file is not a valid binlog
 */
export async function scanBinlog(
  source: ReadableStream<Uint8Array>,
  opts: BinlogScanOptions & { readonly signal?: AbortSignal } = {},
): Promise<BinlogSummary> {
  const scanner = new BinlogScanner(opts);
  const { signal } = opts;
  const reader = source.getReader();
  const onAbort = () => reader.cancel(signal?.reason).catch(() => {});
  signal?.addEventListener("abort", onAbort, { once: true });
  try {
    for (;;) {
      signal?.throwIfAborted();
      const { done, value } = await reader.read();
      signal?.throwIfAborted();
      if (done) break;
      scanner.push(value);
    }
    return scanner.finish();
  } catch (e) {
    await reader.cancel(e).catch(() => {});
    throw e;
  } finally {
    signal?.removeEventListener("abort", onAbort);
    reader.releaseLock();
  }
}

/**
 * A pass-through stream that scans the bytes going by, for copying a binlog while summarising it.
 *
 * A chunk is passed on only once scanned; a scan error errors the stream (so a copy of a bad file fails)
 * and rejects `summary`.
 *
 * @param opts.onTransaction called for each complete transaction, in order
 * @param opts.allowTruncated accept a file cut in the middle of an event (the open binlog)
 * @returns the stream, and the summary, which settles when the stream ends, errors or is cancelled
 */
export function scanningStream(opts: BinlogScanOptions = {}): {
  stream: TransformStream<Uint8Array, Uint8Array>;
  summary: Promise<BinlogSummary>;
} {
  const scanner = new BinlogScanner(opts);
  let resolve!: (s: BinlogSummary) => void;
  let reject!: (e: unknown) => void;
  const summary = new Promise<BinlogSummary>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  summary.catch(() => {}); // the stream reports the same error; an unread summary must not crash
  const stream = new TransformStream<Uint8Array, Uint8Array>({
    transform(chunk, controller) {
      try {
        scanner.push(chunk);
      } catch (e) {
        reject(e);
        throw e;
      }
      controller.enqueue(chunk);
    },
    flush() {
      try {
        resolve(scanner.finish());
      } catch (e) {
        reject(e);
        throw e;
      }
    },
    cancel(reason) {
      reject(reason ?? new Error("the binlog stream was cancelled"));
    },
  });
  return { stream, summary };
}
