/**
 * GTID sets for MySQL 8.4 / Percona 8.4 and GTID lists for MariaDB 10.11+, as immutable values.
 *
 * Failover decisions (which replica is most advanced, whether an old primary carries errant
 * transactions and may rejoin) are answered with {@link MysqlGtidSet} and {@link MariadbGtidSet}:
 * both parse the server's textual form, normalise it, and offer set algebra (`contains`, `subtract`,
 * `union`, `compare`).
 *
 * @module
 */

import type { Flavour } from "./flavour.ts";

/** The server family a GTID set belongs to (the same as {@link Flavour}). */
export type GtidFlavour = Flavour;

/** Outcome of comparing two GTID values: `subset` means "this is strictly contained in the other". */
export type GtidComparison = "equal" | "subset" | "superset" | "diverged";

/** Largest MySQL transaction number (GNO): 2^63-1. */
const MYSQL_MAX_GNO = (1n << 63n) - 1n;
/** Largest MariaDB domain id and server_id: 2^32-1. */
const MARIADB_MAX_U32 = (1n << 32n) - 1n;
/** Largest MariaDB seq_no: 2^64-1. */
const MARIADB_MAX_SEQ_NO = (1n << 64n) - 1n;

const UUID_PATTERN = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const TAG_PATTERN = /^[a-z_][a-z0-9_]{0,31}$/i;
const INTERVAL_PATTERN = /^(\d+)(?:\s*-\s*(\d+))?$/;
const MARIADB_GTID_PATTERN = /^(-?[^-]*)-(-?[^-]*)-(-?[^-]*)$/;
const DIGITS_PATTERN = /^\d+$/;
const NEGATIVE_PATTERN = /^-\s*\d+$/;

/**
 * Raised when the text of a GTID set (MySQL) or GTID list (MariaDB) is malformed.
 *
 * The message has the form
 * `Cannot parse MySQL GTID set: <what is wrong>: current value is '<input>'` (or
 * `Cannot parse MariaDB GTID list: ...` for MariaDB).
 */
export class GtidParseError extends SyntaxError {
  /** Flavour whose syntax was expected. */
  readonly flavour: GtidFlavour;
  /** The complete text that failed to parse. */
  readonly input: string;
  /** What is wrong with the input, without the surrounding context. */
  readonly reason: string;

  /**
   * Builds the error and its message.
   *
   * @param flavour flavour whose syntax was expected
   * @param reason what is wrong, e.g. `interval '5-3' has a start greater than its end`
   * @param input the complete text that failed to parse
   */
  constructor(flavour: GtidFlavour, reason: string, input: string) {
    const what = flavour === "mysql" ? "MySQL GTID set" : "MariaDB GTID list";
    super(`Cannot parse ${what}: ${reason}: current value is '${input}'`);
    this.name = "GtidParseError";
    this.flavour = flavour;
    this.input = input;
    this.reason = reason;
  }
}

/** Describes a value for a flavour-mixing TypeError. */
function describeValue(value: unknown): string {
  if (value instanceof MysqlGtidSet) return "a MysqlGtidSet";
  if (value instanceof MariadbGtidSet) return "a MariadbGtidSet";
  if (value === null) return "null";
  if (typeof value === "object") return `an instance of ${value.constructor?.name ?? "Object"}`;
  return `a ${typeof value}`;
}

// ---------------------------------------------------------------------------------------------------------
// MySQL
// ---------------------------------------------------------------------------------------------------------

/** An inclusive interval of MySQL transaction numbers, `[start, end]` with `1 <= start <= end <= 2^63-1`. */
export type MysqlGtidInterval = readonly [start: bigint, end: bigint];

/** The transactions of one source (UUID, optional tag) in a {@link MysqlGtidSet}. */
export interface MysqlGtidEntry {
  /** Source UUID, lowercase. */
  readonly uuid: string;
  /** Lowercase tag, or `""` for untagged GTIDs. */
  readonly tag: string;
  /** Sorted, disjoint, non-adjacent intervals (never empty). */
  readonly intervals: readonly MysqlGtidInterval[];
}

/** Sorts and merges overlapping or adjacent intervals; the input is not modified. */
function normaliseIntervals(intervals: readonly MysqlGtidInterval[]): MysqlGtidInterval[] {
  const sorted = [...intervals].sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
  const merged: [bigint, bigint][] = [];
  for (const [start, end] of sorted) {
    const last = merged[merged.length - 1];
    if (last !== undefined && start <= last[1] + 1n) {
      if (end > last[1]) last[1] = end;
    } else {
      merged.push([start, end]);
    }
  }
  return merged;
}

/** Removes the numbers in `b` from `a`; both must be normalised. */
function subtractIntervals(
  a: readonly MysqlGtidInterval[],
  b: readonly MysqlGtidInterval[],
): MysqlGtidInterval[] {
  const result: MysqlGtidInterval[] = [];
  let j = 0;
  for (const [aStart, aEnd] of a) {
    let start = aStart;
    while (j < b.length && b[j][1] < start) j++;
    let k = j;
    while (start <= aEnd && k < b.length && b[k][0] <= aEnd) {
      const [bStart, bEnd] = b[k];
      if (bStart > start) result.push([start, bStart - 1n]);
      if (bEnd >= start) start = bEnd + 1n;
      k++;
    }
    if (start <= aEnd) result.push([start, aEnd]);
  }
  return result;
}

/** Whether every number in `b` is also in `a`; both must be normalised. */
function containsIntervals(a: readonly MysqlGtidInterval[], b: readonly MysqlGtidInterval[]): boolean {
  let i = 0;
  for (const [bStart, bEnd] of b) {
    while (i < a.length && a[i][1] < bStart) i++;
    if (i === a.length || a[i][0] > bStart || a[i][1] < bEnd) return false;
  }
  return true;
}

function sameIntervals(a: readonly MysqlGtidInterval[], b: readonly MysqlGtidInterval[]): boolean {
  return a.length === b.length && a.every(([start, end], i) => start === b[i][0] && end === b[i][1]);
}

function formatInterval([start, end]: MysqlGtidInterval): string {
  return start === end ? `${start}` : `${start}-${end}`;
}

function mysqlKey(uuid: string, tag: string): string {
  return `${uuid}:${tag}`;
}

/** Freezes entries built from raw (possibly unnormalised) intervals, dropping empty ones, sorted. */
function buildMysqlEntries(
  groups: Iterable<{ uuid: string; tag: string; intervals: readonly MysqlGtidInterval[] }>,
): readonly MysqlGtidEntry[] {
  const entries: MysqlGtidEntry[] = [];
  for (const { uuid, tag, intervals } of groups) {
    const normalised = normaliseIntervals(intervals);
    if (normalised.length === 0) continue;
    entries.push(Object.freeze({
      uuid,
      tag,
      intervals: Object.freeze(
        normalised.map((interval) => Object.freeze([interval[0], interval[1]] as const)),
      ),
    }));
  }
  entries.sort((a, b) =>
    a.uuid < b.uuid ? -1 : a.uuid > b.uuid ? 1 : a.tag < b.tag ? -1 : a.tag > b.tag ? 1 : 0
  );
  return Object.freeze(entries);
}

/**
 * An immutable MySQL 8.4 / Percona 8.4 GTID set, such as `@@GLOBAL.gtid_executed`.
 *
 * Holds, per source UUID and optional tag (MySQL 8.3+ tagged GTIDs), a normalised list of transaction
 * number intervals. Values are compared by content; every operation returns a new value.
 */
export class MysqlGtidSet {
  /** Discriminant of the {@link GtidSet} union. */
  readonly flavour: "mysql" = "mysql";
  readonly #entries: readonly MysqlGtidEntry[];
  static #empty: MysqlGtidSet | undefined;

  private constructor(entries: readonly MysqlGtidEntry[]) {
    this.#entries = entries;
    Object.freeze(this);
  }

  /**
   * Parses the textual form of a GTID set, as printed by the server or accepted by `GTID_SUBSET()`.
   *
   * Accepts `uuid[:tag]:interval[:interval...]` elements separated by commas, where tags may switch within
   * an element (`uuid:1-5:tag1:3:7-9`), intervals are `N` or `N-M` with `1 <= N <= M <= 2^63-1`, and any
   * whitespace (including newlines) surrounds separators. UUIDs and tags are case-insensitive.
   *
   * @param text the GTID set text; empty or whitespace-only means the empty set
   * @returns the normalised set
   * @throws {GtidParseError} if the text is malformed (bad UUID or tag, missing interval, empty element,
   *   zero, non-numeric or out-of-range transaction number, interval start greater than end)
   */
  static parse(text: string): MysqlGtidSet {
    if (text.trim() === "") return MysqlGtidSet.empty();
    const fail = (reason: string): never => {
      throw new GtidParseError("mysql", reason, text);
    };
    const groups = new Map<string, { uuid: string; tag: string; intervals: MysqlGtidInterval[] }>();
    const elements = text.split(",");
    elements.forEach((rawElement, index) => {
      const element = rawElement.trim();
      if (element === "") {
        fail(index === elements.length - 1 ? "empty element after trailing comma" : "empty element");
      }
      const parts = element.split(":").map((part) => part.trim());
      const uuidText = parts[0];
      if (!UUID_PATTERN.test(uuidText)) fail(`invalid source UUID '${uuidText}'`);
      const uuid = uuidText.toLowerCase();
      if (parts.length === 1) fail(`missing interval after source UUID '${uuidText}'`);

      let tag = "";
      let tagNeedsInterval = false;
      const owner = (): string => (tag === "" ? `source UUID '${uuidText}'` : `tag '${tag}'`);
      for (let i = 1; i < parts.length; i++) {
        const part = parts[i];
        if (part === "") {
          fail(i === parts.length - 1 ? `missing interval after ${owner()}` : `empty tag in '${element}'`);
        }
        if (/^\d/.test(part)) {
          const interval = parseMysqlInterval(part, fail);
          const key = mysqlKey(uuid, tag);
          let group = groups.get(key);
          if (group === undefined) {
            group = { uuid, tag, intervals: [] };
            groups.set(key, group);
          }
          group.intervals.push(interval);
          tagNeedsInterval = false;
        } else if (/^[a-z_]/i.test(part)) {
          if (tagNeedsInterval) fail(`missing interval after ${owner()}`);
          if (!TAG_PATTERN.test(part)) {
            fail(`invalid tag '${part}' (expected [a-z_][a-z0-9_]{0,31})`);
          }
          tag = part.toLowerCase();
          tagNeedsInterval = true;
        } else {
          fail(`invalid interval '${part}'`);
        }
      }
      if (tagNeedsInterval) fail(`missing interval after ${owner()}`);
    });
    return new MysqlGtidSet(buildMysqlEntries(groups.values()));
  }

  /**
   * Returns the empty GTID set.
   *
   * @returns the (shared) empty set
   */
  static empty(): MysqlGtidSet {
    MysqlGtidSet.#empty ??= new MysqlGtidSet(Object.freeze([]));
    return MysqlGtidSet.#empty;
  }

  /**
   * Returns the normalised content: one entry per (uuid, tag), sorted by uuid then tag (untagged first).
   *
   * @returns frozen entries with frozen, sorted, merged intervals
   */
  entries(): readonly MysqlGtidEntry[] {
    return this.#entries;
  }

  /**
   * Prints the canonical form: one element per UUID, untagged intervals first and then `:tag:intervals`
   * groups, UUIDs and tags lowercase and sorted, elements separated by `,` without whitespace, single
   * transactions printed as `N` (e.g. `3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5:7:domain_1:1-3`).
   *
   * @returns the canonical text, `""` for the empty set
   */
  toString(): string {
    const elements = new Map<string, string[]>();
    for (const { uuid, tag, intervals } of this.#entries) {
      let parts = elements.get(uuid);
      if (parts === undefined) {
        parts = [uuid];
        elements.set(uuid, parts);
      }
      if (tag !== "") parts.push(tag);
      parts.push(...intervals.map(formatInterval));
    }
    return [...elements.values()].map((parts) => parts.join(":")).join(",");
  }

  /**
   * Returns the canonical text, so that JSON logs show the set rather than an empty object.
   *
   * @returns the same as {@link MysqlGtidSet.toString}
   */
  toJSON(): string {
    return this.toString();
  }

  /**
   * Tells whether the set holds no transaction.
   *
   * @returns `true` for the empty set
   */
  isEmpty(): boolean {
    return this.#entries.length === 0;
  }

  /**
   * Counts the transactions in the set.
   *
   * @returns the number of GTIDs, as a bigint (it can exceed `Number.MAX_SAFE_INTEGER`)
   */
  count(): bigint {
    let total = 0n;
    for (const { intervals } of this.#entries) {
      for (const [start, end] of intervals) total += end - start + 1n;
    }
    return total;
  }

  /**
   * Tells whether both sets hold exactly the same transactions.
   *
   * @param other another MySQL GTID set
   * @returns `true` if the sets are equal
   * @throws {TypeError} if `other` is not a {@link MysqlGtidSet}
   */
  equals(other: MysqlGtidSet): boolean {
    const that = MysqlGtidSet.#check("equals", other);
    const a = this.#entries;
    const b = that.#entries;
    return a.length === b.length &&
      a.every((entry, i) =>
        entry.uuid === b[i].uuid && entry.tag === b[i].tag && sameIntervals(entry.intervals, b[i].intervals)
      );
  }

  /**
   * Tells whether every transaction of `other` is in this set (like `GTID_SUBSET(other, this)`).
   *
   * @param other another MySQL GTID set
   * @returns `true` if this set is a (non-strict) superset of `other`
   * @throws {TypeError} if `other` is not a {@link MysqlGtidSet}
   */
  contains(other: MysqlGtidSet): boolean {
    const that = MysqlGtidSet.#check("contains", other);
    const mine = this.#byKey();
    return that.#entries.every((entry) => {
      const own = mine.get(mysqlKey(entry.uuid, entry.tag));
      return own !== undefined && containsIntervals(own.intervals, entry.intervals);
    });
  }

  /**
   * Returns the transactions of this set that are not in `other` (like `GTID_SUBTRACT(this, other)`).
   *
   * @param other the transactions to remove
   * @returns a new set; empty when `other` contains this set
   * @throws {TypeError} if `other` is not a {@link MysqlGtidSet}
   */
  subtract(other: MysqlGtidSet): MysqlGtidSet {
    const that = MysqlGtidSet.#check("subtract", other);
    const theirs = that.#byKey();
    const groups = this.#entries.map(({ uuid, tag, intervals }) => {
      const removed = theirs.get(mysqlKey(uuid, tag));
      return {
        uuid,
        tag,
        intervals: removed === undefined ? intervals : subtractIntervals(intervals, removed.intervals),
      };
    });
    return new MysqlGtidSet(buildMysqlEntries(groups));
  }

  /**
   * Returns the transactions that are in this set, in `other`, or in both.
   *
   * @param other another MySQL GTID set
   * @returns a new, normalised set
   * @throws {TypeError} if `other` is not a {@link MysqlGtidSet}
   */
  union(other: MysqlGtidSet): MysqlGtidSet {
    const that = MysqlGtidSet.#check("union", other);
    const groups = new Map<string, { uuid: string; tag: string; intervals: MysqlGtidInterval[] }>();
    for (const { uuid, tag, intervals } of [...this.#entries, ...that.#entries]) {
      const key = mysqlKey(uuid, tag);
      const group = groups.get(key);
      if (group === undefined) groups.set(key, { uuid, tag, intervals: [...intervals] });
      else group.intervals.push(...intervals);
    }
    return new MysqlGtidSet(buildMysqlEntries(groups.values()));
  }

  /**
   * Classifies how this set relates to `other`.
   *
   * @param other another MySQL GTID set
   * @returns `"equal"`, `"subset"` (this is strictly contained in `other`), `"superset"` (this strictly
   *   contains `other`) or `"diverged"` (each has transactions the other lacks)
   * @throws {TypeError} if `other` is not a {@link MysqlGtidSet}
   */
  compare(other: MysqlGtidSet): GtidComparison {
    MysqlGtidSet.#check("compare", other);
    const thisContainsOther = this.contains(other);
    const otherContainsThis = other.contains(this);
    if (thisContainsOther && otherContainsThis) return "equal";
    if (thisContainsOther) return "superset";
    if (otherContainsThis) return "subset";
    return "diverged";
  }

  #byKey(): Map<string, MysqlGtidEntry> {
    return new Map(this.#entries.map((entry) => [mysqlKey(entry.uuid, entry.tag), entry]));
  }

  static #check(operation: string, other: unknown): MysqlGtidSet {
    if (other instanceof MysqlGtidSet) return other;
    throw new TypeError(
      `MysqlGtidSet.${operation}() expects a MysqlGtidSet but got ${describeValue(other)}: ` +
        "MySQL and MariaDB GTIDs cannot be mixed",
    );
  }
}

/** Parses `N` or `N-M` (already trimmed, starting with a digit). */
function parseMysqlInterval(part: string, fail: (reason: string) => never): MysqlGtidInterval {
  const match = INTERVAL_PATTERN.exec(part);
  if (match === null) return fail(`invalid interval '${part}'`);
  const start = BigInt(match[1]);
  const end = match[2] === undefined ? start : BigInt(match[2]);
  if (start === 0n || end === 0n) fail(`transaction number must be at least 1 in interval '${part}'`);
  for (const value of [start, end]) {
    if (value > MYSQL_MAX_GNO) {
      fail(`transaction number ${value} in interval '${part}' exceeds the maximum ${MYSQL_MAX_GNO}`);
    }
  }
  if (start > end) fail(`interval '${part}' has a start greater than its end`);
  return [start, end];
}

// ---------------------------------------------------------------------------------------------------------
// MariaDB
// ---------------------------------------------------------------------------------------------------------

/** One MariaDB GTID `domain-server_id-seq_no`. */
export interface MariadbGtid {
  /** Replication domain id (unsigned 32-bit). */
  readonly domain: number;
  /** Id of the server that wrote the transaction (unsigned 32-bit). */
  readonly serverId: number;
  /** Sequence number within the domain (unsigned 64-bit). */
  readonly seqNo: bigint;
}

function mariadbKey(domain: number, serverId: number): string {
  return `${domain}-${serverId}`;
}

function formatMariadbGtid({ domain, serverId, seqNo }: MariadbGtid): string {
  return `${domain}-${serverId}-${seqNo}`;
}

/** Sorts by domain then server_id and freezes. */
function buildMariadbEntries(gtids: Iterable<MariadbGtid>): readonly MariadbGtid[] {
  const entries = [...gtids].map(({ domain, serverId, seqNo }) => Object.freeze({ domain, serverId, seqNo }));
  entries.sort((a, b) => a.domain - b.domain || a.serverId - b.serverId);
  return Object.freeze(entries);
}

/**
 * An immutable MariaDB 10.11+ GTID list, keyed by (domain, server_id) with the highest seq_no seen.
 *
 * Represents both positions (`@@gtid_slave_pos`, `@@gtid_current_pos`, `@@gtid_binlog_pos`: one GTID per
 * domain) and states (`@@gtid_binlog_state`: one GTID per domain and server_id). With `gtid_strict_mode`,
 * seq_no strictly increases along a domain's history, so `d-s-n` reads as "this history includes the
 * transactions server `s` wrote in domain `d` up to seq_no `n`"; set operations follow that reading.
 */
export class MariadbGtidSet {
  /** Discriminant of the {@link GtidSet} union. */
  readonly flavour: "mariadb" = "mariadb";
  readonly #entries: readonly MariadbGtid[];
  static #empty: MariadbGtidSet | undefined;

  private constructor(entries: readonly MariadbGtid[]) {
    this.#entries = entries;
    Object.freeze(this);
  }

  /**
   * Parses a comma-separated GTID list such as `0-1-11,0-2-12` (whitespace around elements and parts is
   * tolerated). Several GTIDs for one domain are accepted (state form).
   *
   * @param text the GTID list; empty or whitespace-only means the empty list
   * @returns the list, sorted by domain then server_id
   * @throws {GtidParseError} if an element is empty, does not have three parts, has a non-numeric,
   *   negative or out-of-range part, or repeats a (domain, server_id) pair
   */
  static parse(text: string): MariadbGtidSet {
    if (text.trim() === "") return MariadbGtidSet.empty();
    const fail = (reason: string): never => {
      throw new GtidParseError("mariadb", reason, text);
    };
    const seen = new Map<string, MariadbGtid>();
    const elements = text.split(",");
    elements.forEach((rawElement, index) => {
      const element = rawElement.trim();
      if (element === "") {
        fail(index === elements.length - 1 ? "empty element after trailing comma" : "empty element");
      }
      const match = MARIADB_GTID_PATTERN.exec(element);
      if (match === null) {
        fail(`GTID '${element}' does not have the three parts domain-server_id-seq_no`);
        return;
      }
      const domain = Number(parseMariadbPart(match[1], "domain", MARIADB_MAX_U32, element, fail));
      const serverId = Number(parseMariadbPart(match[2], "server_id", MARIADB_MAX_U32, element, fail));
      const seqNo = parseMariadbPart(match[3], "seq_no", MARIADB_MAX_SEQ_NO, element, fail);
      const key = mariadbKey(domain, serverId);
      if (seen.has(key)) fail(`duplicate domain-server_id pair ${key} in GTID '${element}'`);
      seen.set(key, { domain, serverId, seqNo });
    });
    return new MariadbGtidSet(buildMariadbEntries(seen.values()));
  }

  /**
   * Returns the empty GTID list.
   *
   * @returns the (shared) empty list
   */
  static empty(): MariadbGtidSet {
    MariadbGtidSet.#empty ??= new MariadbGtidSet(Object.freeze([]));
    return MariadbGtidSet.#empty;
  }

  /**
   * Returns the GTIDs, sorted by domain then server_id.
   *
   * @returns frozen GTIDs
   */
  entries(): readonly MariadbGtid[] {
    return this.#entries;
  }

  /**
   * Lists the replication domains present.
   *
   * @returns the distinct domain ids, ascending
   */
  domains(): number[] {
    return [...new Set(this.#entries.map(({ domain }) => domain))];
  }

  /**
   * Reduces the list to a position: per domain, the GTID with the largest seq_no (what
   * `@@gtid_binlog_pos` shows for a given `@@gtid_binlog_state`); suitable for `SET GLOBAL gtid_slave_pos`.
   * If two servers share the largest seq_no in a domain (impossible in strict mode), the lowest server_id
   * wins.
   *
   * @returns a new list with one GTID per domain
   */
  toPosition(): MariadbGtidSet {
    const best = new Map<number, MariadbGtid>();
    for (const gtid of this.#entries) {
      const current = best.get(gtid.domain);
      if (current === undefined || gtid.seqNo > current.seqNo) best.set(gtid.domain, gtid);
    }
    return new MariadbGtidSet(buildMariadbEntries(best.values()));
  }

  /**
   * Tells whether the list has at most one GTID per domain (position form).
   *
   * @returns `true` for a position (and for the empty list)
   */
  isPosition(): boolean {
    return this.domains().length === this.#entries.length;
  }

  /**
   * Prints the canonical form: GTIDs sorted by domain then server_id, separated by `,` (e.g. `0-1-11,0-2-12`).
   *
   * @returns the canonical text, `""` for the empty list
   */
  toString(): string {
    return this.#entries.map(formatMariadbGtid).join(",");
  }

  /**
   * Returns the canonical text, so that JSON logs show the list rather than an empty object.
   *
   * @returns the same as {@link MariadbGtidSet.toString}
   */
  toJSON(): string {
    return this.toString();
  }

  /**
   * Tells whether the list holds no GTID.
   *
   * @returns `true` for the empty list
   */
  isEmpty(): boolean {
    return this.#entries.length === 0;
  }

  /**
   * Tells whether both lists hold the same (domain, server_id) pairs with the same seq_no.
   *
   * @param other another MariaDB GTID list
   * @returns `true` if the lists are equal
   * @throws {TypeError} if `other` is not a {@link MariadbGtidSet}
   */
  equals(other: MariadbGtidSet): boolean {
    const that = MariadbGtidSet.#check("equals", other);
    const a = this.#entries;
    const b = that.#entries;
    return a.length === b.length &&
      a.every((gtid, i) =>
        gtid.domain === b[i].domain && gtid.serverId === b[i].serverId && gtid.seqNo === b[i].seqNo
      );
  }

  /**
   * Tells whether this history includes `other`'s: for every (domain, server_id) of `other`, this list has
   * the same pair with a seq_no at least as large. An old primary whose state is not contained in the new
   * primary's state has errant transactions and must not rejoin as is.
   *
   * @param other another MariaDB GTID list
   * @returns `true` if this list is a (non-strict) superset of `other`
   * @throws {TypeError} if `other` is not a {@link MariadbGtidSet}
   */
  contains(other: MariadbGtidSet): boolean {
    const that = MariadbGtidSet.#check("contains", other);
    const mine = this.#byKey();
    return that.#entries.every((gtid) => {
      const own = mine.get(mariadbKey(gtid.domain, gtid.serverId));
      return own !== undefined && own.seqNo >= gtid.seqNo;
    });
  }

  /**
   * Returns what this list has that `other` lacks: the GTIDs of this list whose (domain, server_id) is
   * missing from `other` or has a lower seq_no there. `isEmpty()` on the result means "no errant
   * transactions".
   *
   * @param other the list to compare against
   * @returns a new list holding entries of this list, unchanged
   * @throws {TypeError} if `other` is not a {@link MariadbGtidSet}
   */
  subtract(other: MariadbGtidSet): MariadbGtidSet {
    const that = MariadbGtidSet.#check("subtract", other);
    const theirs = that.#byKey();
    return new MariadbGtidSet(buildMariadbEntries(this.#entries.filter((gtid) => {
      const their = theirs.get(mariadbKey(gtid.domain, gtid.serverId));
      return their === undefined || their.seqNo < gtid.seqNo;
    })));
  }

  /**
   * Combines both lists, keeping the largest seq_no per (domain, server_id).
   *
   * @param other another MariaDB GTID list
   * @returns a new list
   * @throws {TypeError} if `other` is not a {@link MariadbGtidSet}
   */
  union(other: MariadbGtidSet): MariadbGtidSet {
    const that = MariadbGtidSet.#check("union", other);
    const merged = this.#byKey();
    for (const gtid of that.#entries) {
      const key = mariadbKey(gtid.domain, gtid.serverId);
      const own = merged.get(key);
      if (own === undefined || own.seqNo < gtid.seqNo) merged.set(key, gtid);
    }
    return new MariadbGtidSet(buildMariadbEntries(merged.values()));
  }

  /**
   * Classifies how this history relates to `other`'s, using {@link MariadbGtidSet.contains}.
   *
   * @param other another MariaDB GTID list
   * @returns `"equal"`, `"subset"` (this is strictly contained in `other`), `"superset"` (this strictly
   *   contains `other`) or `"diverged"` (each has transactions the other lacks)
   * @throws {TypeError} if `other` is not a {@link MariadbGtidSet}
   */
  compare(other: MariadbGtidSet): GtidComparison {
    MariadbGtidSet.#check("compare", other);
    const thisContainsOther = this.contains(other);
    const otherContainsThis = other.contains(this);
    if (thisContainsOther && otherContainsThis) return "equal";
    if (thisContainsOther) return "superset";
    if (otherContainsThis) return "subset";
    return "diverged";
  }

  #byKey(): Map<string, MariadbGtid> {
    return new Map(this.#entries.map((gtid) => [mariadbKey(gtid.domain, gtid.serverId), gtid]));
  }

  static #check(operation: string, other: unknown): MariadbGtidSet {
    if (other instanceof MariadbGtidSet) return other;
    throw new TypeError(
      `MariadbGtidSet.${operation}() expects a MariadbGtidSet but got ${describeValue(other)}: ` +
        "MySQL and MariaDB GTIDs cannot be mixed",
    );
  }
}

/** Parses one numeric part of a MariaDB GTID. */
function parseMariadbPart(
  rawPart: string,
  name: string,
  max: bigint,
  element: string,
  fail: (reason: string) => never,
): bigint {
  const part = rawPart.trim();
  if (part === "") return fail(`missing ${name} in GTID '${element}'`);
  if (NEGATIVE_PATTERN.test(part)) return fail(`${name} ${part} in GTID '${element}' is negative`);
  if (!DIGITS_PATTERN.test(part)) return fail(`${name} '${part}' in GTID '${element}' is not a number`);
  const value = BigInt(part);
  if (value > max) return fail(`${name} ${part} in GTID '${element}' is out of range (maximum ${max})`);
  return value;
}

// ---------------------------------------------------------------------------------------------------------
// Both flavours
// ---------------------------------------------------------------------------------------------------------

/** A GTID value of either flavour; narrow it with its `flavour` property. */
export type GtidSet = MysqlGtidSet | MariadbGtidSet;

/**
 * Parses GTID text of the given flavour.
 *
 * @param flavour `"mysql"` for a MySQL GTID set, `"mariadb"` for a MariaDB GTID list
 * @param text the text as printed by the server; empty means the empty set
 * @returns a {@link MysqlGtidSet} or a {@link MariadbGtidSet}
 * @throws {GtidParseError} if the text is malformed for that flavour
 * @throws {TypeError} if the flavour is unknown
 */
export function parseGtidSet(flavour: "mysql", text: string): MysqlGtidSet;
/**
 * Parses GTID text of the given flavour.
 *
 * @param flavour `"mysql"` for a MySQL GTID set, `"mariadb"` for a MariaDB GTID list
 * @param text the text as printed by the server; empty means the empty list
 * @returns a {@link MysqlGtidSet} or a {@link MariadbGtidSet}
 * @throws {GtidParseError} if the text is malformed for that flavour
 * @throws {TypeError} if the flavour is unknown
 */
export function parseGtidSet(flavour: "mariadb", text: string): MariadbGtidSet;
/**
 * Parses GTID text of the given flavour.
 *
 * @param flavour `"mysql"` for a MySQL GTID set, `"mariadb"` for a MariaDB GTID list
 * @param text the text as printed by the server; empty means the empty set
 * @returns a {@link MysqlGtidSet} or a {@link MariadbGtidSet}
 * @throws {GtidParseError} if the text is malformed for that flavour
 * @throws {TypeError} if the flavour is unknown
 */
export function parseGtidSet(flavour: GtidFlavour, text: string): GtidSet;
export function parseGtidSet(flavour: GtidFlavour, text: string): GtidSet {
  switch (flavour) {
    case "mysql":
      return MysqlGtidSet.parse(text);
    case "mariadb":
      return MariadbGtidSet.parse(text);
    default:
      throw new TypeError(`Unknown GTID flavour '${String(flavour)}': expected "mysql" or "mariadb"`);
  }
}

/**
 * The transactions in `a` that `b` lacks, both given as text in the flavour's format.
 *
 * @param flavour The server family both sets come from.
 * @param a The set to subtract from (e.g. an old primary's).
 * @param b The set to subtract (e.g. the new primary's).
 * @returns `a - b`; empty when `b` contains all of `a`.
 * @throws {GtidParseError} if either text is malformed.
 */
export function subtractGtids(flavour: GtidFlavour, a: string, b: string): GtidSet {
  return flavour === "mysql"
    ? MysqlGtidSet.parse(a).subtract(MysqlGtidSet.parse(b))
    : MariadbGtidSet.parse(a).subtract(MariadbGtidSet.parse(b));
}
