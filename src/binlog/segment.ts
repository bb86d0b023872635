/**
 * The binlog archive's layout in the snapshot store, as pure functions: the keys of an archived binlog file
 * (a "segment") and the index entry written beside it.
 *
 * Each closed binlog file the primary archives becomes two objects under `binlogs/<cluster>/`, where
 * `<cluster>` is the cluster's snapshot name prefix (`clusterPrefix(BACKUP_NAME)`, e.g. `mysql-backup-`: the
 * rule retention tells a shared store's clusters apart by; `binlogs/` itself when the prefix is empty):
 * - `binlogs/<cluster>/<node>/<created>_<server_id>_<file>.zst`: the file, compressed with zstd (then encrypted
 *   with age when BACKUP_ENCRYPTION_KEY or BACKUP_ENCRYPTION_RECIPIENTS is set: same key, the entry says so);
 * - the same key ending in `.json`: its index entry, written after the data (the segment's commit marker):
 *   the GTID state before and after the file, its first and last transaction times, a mark per second of
 *   writes (the GTID position at the end of that second, so a restore to a time needs no scan), the stored
 *   size and SHA-256.
 *
 * The name holds the node, the server_id and the time the file was created (its Format_description event),
 * so names never collide across servers, failovers or restores: a restored or rebuilt server starts its
 * binlog numbering again, at a later time.
 *
 * @module
 */
import type { Flavour } from "../mysql/flavour.ts";
import { parseGtidSet } from "../mysql/gtid.ts";
import { checkKey } from "../storage/store.ts";
import { errorMessage } from "../text.ts";
import { type EncryptionInfo, parseEncryptionInfo } from "../backup/encryption.ts";

/** Where archived binlogs live in the store. */
export const BINLOG_PREFIX = "binlogs/";

/**
 * Where one cluster's archived binlogs live: `binlogs/<cluster>/`, or `binlogs/` for the empty prefix.
 *
 * @param cluster The cluster's snapshot name prefix (`clusterPrefix` in src/backup/manifest.ts).
 * @throws {RangeError} if the result is not a valid key prefix.
 */
export function archivePrefix(cluster: string): string {
  if (cluster === "") return BINLOG_PREFIX;
  checkKey(`${BINLOG_PREFIX}${cluster}/x`);
  return `${BINLOG_PREFIX}${cluster}/`;
}

/** The index entry format this module writes and reads. */
export const SEGMENT_FORMAT = 1;

/** Key suffix of a segment's compressed binlog file. */
export const SEGMENT_DATA_SUFFIX = ".zst";

/** Key suffix of a segment's index entry. */
export const SEGMENT_INDEX_SUFFIX = ".json";

/** Index entries larger than this are not index entries. */
export const MAX_SEGMENT_INDEX_BYTES = 1024 * 1024;

/** At most this many per-second marks are kept in an entry; a file with more writes-seconds keeps none. */
export const MAX_MARKS = 20_000;

/** One archived binlog file, as its index entry describes it. */
export interface Segment {
  readonly format: 1;
  /** The key of the compressed file ({@link segmentKeys}). */
  readonly key: string;
  readonly node: string;
  /** The server_id that wrote the file. */
  readonly serverId: number;
  /** The binlog file's own name, e.g. `mysql-bin.000004`. */
  readonly file: string;
  /** When the server created the file (its Format_description event), ISO 8601 UTC to the second. */
  readonly createdAt: string;
  readonly flavour: Flavour;
  /** The binlog state before the file (MariaDB: its Gtid_list; MySQL: its Previous_gtids). */
  readonly startState: string;
  /** The state after the file's last transaction. */
  readonly endState: string;
  readonly transactions: number;
  /** Unix seconds of the first and last transaction; absent when the file holds none. */
  readonly firstTime?: number;
  readonly lastTime?: number;
  /**
   * Per second in which transactions began (ascending), the GTID position after the last of them: MariaDB
   * the last GTID per domain, MySQL the executed set. Absent when the file has more than {@link MAX_MARKS}.
   */
  readonly marks?: readonly (readonly [second: number, position: string])[];
  /** Bytes of the binlog file itself. */
  readonly rawBytes: number;
  /**
   * Present when the stored bytes are the compressed file encrypted with age: the recipients (public keys)
   * it is encrypted to. The key stays the same either way.
   */
  readonly encryption?: EncryptionInfo;
  /** Stored (compressed, and encrypted if it is) bytes and their SHA-256. */
  readonly size: number;
  readonly sha256: string;
  /** When it was archived, ISO 8601 UTC. */
  readonly archivedAt: string;
  /**
   * Set when the file was left by a server crash (no Rotate or Stop event, its in-use flag still set, a newer
   * file after it): only its bytes up to its last committed transaction were archived.
   */
  readonly truncatedByCrash?: true;
}

/** The two objects of one segment. */
export interface SegmentKeys {
  readonly data: string;
  readonly index: string;
}

/** A segment's index entry is unreadable or does not describe a segment. */
export class SegmentIndexError extends Error {
  readonly key: string;
  constructor(key: string, problem: string) {
    super(`Archived binlog index '${key}' is corrupt: ${problem}`);
    this.name = "SegmentIndexError";
    this.key = key;
  }
}

/** `2026-12-02T10:00:00.000Z` → `2026-12-02T10-00-00Z` (a key cannot hold `:`). */
function stamp(iso: string): string {
  return iso.replace(/\.\d+Z$/, "Z").replace(/:/g, "-");
}

/**
 * The keys of an archived binlog file.
 *
 * @param node NODE_NAME (characters a key cannot hold become `-`).
 * @param serverId The server_id that wrote it.
 * @param file Its name, e.g. `mysql-bin.000004`.
 * @param createdAt When the server created it (ISO 8601).
 * @param cluster The cluster's snapshot name prefix ({@link archivePrefix}). @default ""
 * @returns e.g. `binlogs/mysql-backup-/n1/2026-12-02T10-00-00Z_3_mysql-bin.000004.zst` and `….json`.
 * @throws {RangeError} if the result is not a valid key.
 */
export function segmentKeys(
  node: string,
  serverId: number,
  file: string,
  createdAt: string,
  cluster = "",
): SegmentKeys {
  const base = `${archivePrefix(cluster)}${node.replace(/[^A-Za-z0-9._-]/g, "-")}/${
    stamp(createdAt)
  }_${serverId}_${file.replace(/^.*\//, "")}`;
  return {
    data: checkKey(`${base}${SEGMENT_DATA_SUFFIX}`),
    index: checkKey(`${base}${SEGMENT_INDEX_SUFFIX}`),
  };
}

/** The index key that goes with a data key, or undefined for a key that is not a segment's data. */
export function indexKeyOf(dataKey: string): string | undefined {
  return dataKey.startsWith(BINLOG_PREFIX) && dataKey.endsWith(SEGMENT_DATA_SUFFIX)
    ? `${dataKey.slice(0, -SEGMENT_DATA_SUFFIX.length)}${SEGMENT_INDEX_SUFFIX}`
    : undefined;
}

/** Serialises an index entry: JSON, fields in a fixed order, marks on one line. */
export function formatSegment(s: Segment): string {
  const o: Segment = {
    format: s.format,
    key: s.key,
    node: s.node,
    serverId: s.serverId,
    file: s.file,
    createdAt: s.createdAt,
    flavour: s.flavour,
    startState: s.startState,
    endState: s.endState,
    transactions: s.transactions,
    ...(s.firstTime !== undefined ? { firstTime: s.firstTime } : {}),
    ...(s.lastTime !== undefined ? { lastTime: s.lastTime } : {}),
    rawBytes: s.rawBytes,
    ...(s.encryption !== undefined
      ? { encryption: { format: s.encryption.format, recipients: [...s.encryption.recipients] } }
      : {}),
    size: s.size,
    sha256: s.sha256,
    archivedAt: s.archivedAt,
    ...(s.truncatedByCrash ? { truncatedByCrash: true as const } : {}),
    ...(s.marks !== undefined ? { marks: s.marks } : {}),
  };
  return `${JSON.stringify(o)}\n`;
}

/**
 * Parses and checks an index entry.
 *
 * @param text The entry's JSON.
 * @param key Its key (it must be the data key's index key).
 * @throws {SegmentIndexError} naming the field at fault.
 */
export function parseSegment(text: string, key: string): Segment {
  const fail = (problem: string): never => {
    throw new SegmentIndexError(key, problem);
  };
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    return fail(`not valid JSON (${errorMessage(e)})`);
  }
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) return fail("not a JSON object");
  const o = raw as Record<string, unknown>;
  if (o.format !== SEGMENT_FORMAT) {
    return fail(
      typeof o.format === "number" && o.format > SEGMENT_FORMAT
        ? `it has format ${o.format}, which this autopilot cannot read (it reads ${SEGMENT_FORMAT}): upgrade autopilot`
        : `'format' must be ${SEGMENT_FORMAT}`,
    );
  }
  const str = (f: string): string =>
    typeof o[f] === "string" && o[f] !== "" ? o[f] as string : fail(`'${f}' must be a non-empty string`);
  const int = (f: string, optional = false): number | undefined => {
    const v = o[f];
    if (v === undefined && optional) return undefined;
    return typeof v === "number" && Number.isSafeInteger(v) && v >= 0
      ? v
      : fail(`'${f}' must be a non-negative integer`);
  };
  const flavour = str("flavour");
  if (flavour !== "mariadb" && flavour !== "mysql") fail("'flavour' must be 'mariadb' or 'mysql'");
  const gtid = (f: string): string => {
    const v = o[f];
    if (typeof v !== "string") return fail(`'${f}' must be a GTID state`);
    try {
      parseGtidSet(flavour as Flavour, v);
    } catch (e) {
      fail(`'${f}': ${errorMessage(e)}`);
    }
    return v;
  };
  const dataKey = str("key");
  if (indexKeyOf(dataKey) !== key) fail(`'key' must be the data object beside it, not '${dataKey}'`);
  const createdAt = str("createdAt");
  const archivedAt = str("archivedAt");
  for (const [f, v] of [["createdAt", createdAt], ["archivedAt", archivedAt]]) {
    if (!Number.isFinite(Date.parse(v))) fail(`'${f}' must be an ISO 8601 time`);
  }
  const sha256 = str("sha256");
  if (!/^[0-9a-f]{64}$/.test(sha256)) fail("'sha256' must be 64 lower-case hex digits");
  const encryption = o.encryption === undefined ? undefined : parseEncryptionInfo(o.encryption);
  if (encryption !== undefined && "problem" in encryption) fail(`'encryption' ${encryption.problem}`);
  let marks: [number, string][] | undefined;
  if (o.marks !== undefined) {
    if (!Array.isArray(o.marks)) fail("'marks' must be an array");
    marks = (o.marks as unknown[]).map((m) =>
      Array.isArray(m) && m.length === 2 && Number.isSafeInteger(m[0]) && typeof m[1] === "string"
        ? [m[0] as number, m[1] as string]
        : fail("'marks' must hold [second, position] pairs")
    );
  }
  if (o.truncatedByCrash !== undefined && o.truncatedByCrash !== true) {
    fail("'truncatedByCrash' must be true");
  }
  return Object.freeze({
    format: SEGMENT_FORMAT,
    key: dataKey,
    node: str("node"),
    serverId: int("serverId") as number,
    file: str("file"),
    createdAt,
    flavour: flavour as Flavour,
    startState: gtid("startState"),
    endState: gtid("endState"),
    transactions: int("transactions") as number,
    ...optionalNumber("firstTime", int("firstTime", true)),
    ...optionalNumber("lastTime", int("lastTime", true)),
    ...(marks !== undefined ? { marks: Object.freeze(marks) } : {}),
    rawBytes: int("rawBytes") as number,
    ...(encryption !== undefined ? { encryption: encryption as EncryptionInfo } : {}),
    size: int("size") as number,
    sha256,
    archivedAt,
    ...(o.truncatedByCrash === true ? { truncatedByCrash: true as const } : {}),
  });
}

function optionalNumber<K extends string>(k: K, v: number | undefined): { [P in K]?: number } {
  return (v === undefined ? {} : { [k]: v }) as { [P in K]?: number };
}
