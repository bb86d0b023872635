/**
 * Snapshot identity and metadata, as pure functions: the backup name (strftime in UTC), the object keys, the
 * manifest (written last, it is the snapshot's commit marker) and the parsers for what mariabackup and
 * xtrabackup report (their log, and the binlog info file they put in the backup).
 *
 * @module
 */

import { checkKey } from "../storage/store.ts";
import type { Flavour } from "../mysql/flavour.ts";
import { parseGtidSet } from "../mysql/gtid.ts";
import { CorruptSnapshotError } from "./errors.ts";
import { type EncryptionInfo, parseEncryptionInfo } from "./encryption.ts";
import { errorMessage } from "../text.ts";

/** The manifest format this module writes and reads. */
export const MANIFEST_FORMAT = 1;

/** Key suffix of a snapshot's data object (an xbstream compressed with zstd). */
export const DATA_SUFFIX = ".xbstream.zst";

/** Key suffix of a snapshot's manifest. */
export const MANIFEST_SUFFIX = ".manifest.json";

/** A position in a binary log. */
export interface BinlogPosition {
  /** The binlog file name, e.g. `mysql-bin.000001`. */
  readonly file: string;
  /** The byte offset in that file. */
  readonly position: number;
}

/** The program that takes and prepares backups of a flavour. */
export type BackupTool = "mariabackup" | "xtrabackup";

/** What a snapshot is: written as JSON next to its data object, after it. */
export interface Manifest {
  /** Always {@link MANIFEST_FORMAT}. */
  readonly format: 1;
  /** The snapshot's name, rendered from `BACKUP_NAME`. */
  readonly name: string;
  /** The object key of the data, {@link dataKey}(name). */
  readonly key: string;
  /** When the backup started, ISO 8601 in UTC. */
  readonly createdAt: string;
  /** The node the backup was taken on. */
  readonly nodeName: string;
  /** The source server's family. */
  readonly flavour: Flavour;
  /** `SELECT VERSION()` of the source server. */
  readonly serverVersion: string;
  /** The program that took the backup and must prepare it: {@link backupTool}(flavour). */
  readonly tool: BackupTool;
  /** How the xbstream is compressed. */
  readonly compression: "zstd";
  /**
   * Present when the stored bytes are the compressed xbstream encrypted with age: the recipients (public
   * keys) it is encrypted to, never a secret. Absent: the stored bytes are the compressed xbstream.
   */
  readonly encryption?: EncryptionInfo;
  /** SHA-256 of the stored bytes (compressed, and encrypted if it is), 64 lower-case hex digits. */
  readonly sha256: string;
  /** Size of the stored bytes. */
  readonly size: number;
  /** The backup's GTID position in the flavour's own format (`0-1-16`, or a MySQL GTID set); may be empty. */
  readonly gtid: string;
  /** The source's binlog position at the backup's consistent point. */
  readonly binlog: BinlogPosition;
  /**
   * MariaDB only: the binlog state at the snapshot (the last GTID of each domain and server id, not only the
   * last one per domain), so that a node restored from it compares with the others server by server.
   */
  readonly binlogState?: string;
}

/** What mariabackup's or xtrabackup's log (stderr) says about a backup. */
export interface BackupLog {
  /** Whether the log has the tool's `completed OK!` marker. */
  readonly completedOk: boolean;
  /** The binlog position it reported, if any (none when the server runs without a binlog). */
  readonly binlog: BinlogPosition | undefined;
  /** The GTID position it reported, whitespace removed; `""` when it reported none. */
  readonly gtid: string;
}

/** What the binlog info file of a backup (`xtrabackup_binlog_info`, `mariadb_backup_binlog_info`) says. */
export interface BinlogInfo {
  /** The binlog file name, e.g. `mysql-bin.000001`. */
  readonly file: string;
  /** The byte offset in that file. */
  readonly position: number;
  /** The GTID position, whitespace removed; `""` when the file has none. */
  readonly gtid: string;
}

/** The names a backup's binlog info file has: 10.11 and xtrabackup write the first, MariaDB 11.x the second. */
export const BINLOG_INFO_FILES: readonly string[] = Object.freeze([
  "xtrabackup_binlog_info",
  "mariadb_backup_binlog_info",
]);

const DIRECTIVES = "%Y %y %m %d %H %M %S %j %s %%";
const NAME_PATTERN = /^[A-Za-z0-9._-]+$/;
const BINLOG_FILE_PATTERN = /^[^\s\/']+$/;

/**
 * The cluster a snapshot name pattern (BACKUP_NAME) names: its text before the first directive, e.g.
 * `mysql-backup-` for `mysql-backup-%Y-%m-%dT%H-%M-%SZ`. A store shared by clusters tells their snapshots apart
 * by it (retention's rule) and keeps their binlog archives under it (src/binlog/segment.ts); `""` when the
 * pattern begins with a directive (every snapshot and archived binlog in the store is then this cluster's).
 */
export function clusterPrefix(pattern: string): string {
  return pattern.split("%")[0];
}

/** Whether a snapshot named `name` is of the cluster {@link clusterPrefix} gave `prefix`. */
export function ofCluster(prefix: string, name: string): boolean {
  return name.startsWith(prefix);
}

/**
 * Renders a backup name: strftime directives expanded in UTC.
 *
 * @param pattern The name with directives `%Y` (year), `%y` (2-digit year), `%m`, `%d`, `%H`, `%M`, `%S`
 *   (2 digits), `%j` (day of year, 001-366), `%s` (seconds since the epoch) and `%%` (a `%`).
 * @param date The moment to render.
 * @returns The name, e.g. `mysql-backup-2026-11-25T19-00-00Z` for `mysql-backup-%Y-%m-%dT%H-%M-%SZ`.
 * @throws {RangeError} for an unsupported directive, a `%` at the end, an invalid date, or a result that is
 *   not a valid object name (letters, digits, `.`, `_` and `-` only).
 */
export function renderBackupName(pattern: string, date: Date): string {
  const t = date.getTime();
  if (!Number.isFinite(t)) {
    throw new RangeError(`Cannot render backup name '${pattern}': the date is invalid`);
  }
  const pad = (n: number, width = 2) => String(n).padStart(width, "0");
  const year = date.getUTCFullYear();
  const dayOfYear = Math.floor(
    (Date.UTC(year, date.getUTCMonth(), date.getUTCDate()) - Date.UTC(year, 0, 1)) / 86_400_000,
  ) + 1;
  const values: Record<string, string> = {
    Y: pad(year, 4),
    y: pad(year % 100),
    m: pad(date.getUTCMonth() + 1),
    d: pad(date.getUTCDate()),
    H: pad(date.getUTCHours()),
    M: pad(date.getUTCMinutes()),
    S: pad(date.getUTCSeconds()),
    j: pad(dayOfYear, 3),
    s: String(Math.floor(t / 1000)),
    "%": "%",
  };
  const name = pattern.replace(/%(.?)/gs, (_, d: string) => {
    const value = values[d];
    if (value === undefined) {
      const what = d === "" ? "a '%' at the end" : `unsupported strftime directive '%${d}'`;
      throw new RangeError(`Cannot render backup name '${pattern}': ${what} (supported: ${DIRECTIVES})`);
    }
    return value;
  });
  if (!NAME_PATTERN.test(name)) {
    throw new RangeError(
      `Cannot use '${name}' as a backup name: use letters, digits, '.', '_' and '-' only (pattern '${pattern}')`,
    );
  }
  return name;
}

/**
 * The object key of a snapshot's data.
 *
 * @param name The snapshot's name.
 * @returns `<name>.xbstream.zst`
 * @throws {RangeError} if the name makes an invalid key.
 */
export function dataKey(name: string): string {
  return checkKey(`${name}${DATA_SUFFIX}`);
}

/**
 * The object key of a snapshot's manifest.
 *
 * @param name The snapshot's name.
 * @returns `<name>.manifest.json`
 * @throws {RangeError} if the name makes an invalid key.
 */
export function manifestKey(name: string): string {
  return checkKey(`${name}${MANIFEST_SUFFIX}`);
}

/**
 * The tool that backs up and prepares a flavour's datadir.
 *
 * @param flavour `mariadb` or `mysql`.
 * @returns `mariabackup` for MariaDB, `xtrabackup` for MySQL and Percona Server.
 */
export function backupTool(flavour: Flavour): BackupTool {
  return flavour === "mariadb" ? "mariabackup" : "xtrabackup";
}

/**
 * Serialises a manifest: pretty JSON with a final newline, fields in a fixed order.
 *
 * @param manifest The manifest.
 * @returns The text to store under {@link manifestKey}.
 */
export function formatManifest(manifest: Manifest): string {
  const m: Manifest = {
    format: manifest.format,
    name: manifest.name,
    key: manifest.key,
    createdAt: manifest.createdAt,
    nodeName: manifest.nodeName,
    flavour: manifest.flavour,
    serverVersion: manifest.serverVersion,
    tool: manifest.tool,
    compression: manifest.compression,
    ...(manifest.encryption !== undefined
      ? {
        encryption: { format: manifest.encryption.format, recipients: [...manifest.encryption.recipients] },
      }
      : {}),
    sha256: manifest.sha256,
    size: manifest.size,
    gtid: manifest.gtid,
    binlog: { file: manifest.binlog.file, position: manifest.binlog.position },
    ...(manifest.binlogState !== undefined ? { binlogState: manifest.binlogState } : {}),
  };
  return `${JSON.stringify(m, null, 2)}\n`;
}

/**
 * Parses and validates a manifest. Unknown fields are ignored (a later version may add some).
 *
 * @param text The manifest's JSON.
 * @param source Names the manifest in error messages (its key). @default "manifest"
 * @returns The manifest, frozen.
 * @throws {CorruptSnapshotError} naming the field at fault and its value, e.g. `Snapshot
 *   'mysql-backup-1.manifest.json' is corrupt: its manifest's 'size' must be a non-negative integer: current
 *   value is -1: …`.
 */
export function parseManifest(text: string, source = "manifest"): Manifest {
  const fail = (problem: string): never => {
    throw new CorruptSnapshotError(source, problem);
  };
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    fail(`its manifest is not valid JSON (${errorMessage(e)})`);
  }
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) {
    return fail(`its manifest must be a JSON object: current value is ${shown(raw)}`);
  }
  const o = raw as Record<string, unknown>;
  const bad = (field: string, what: string, value: unknown = o[field]): never =>
    fail(`its manifest's '${field}' ${what}: current value is ${shown(value)}`);
  const str = (field: string, test: (s: string) => boolean, what: string): string => {
    const v = o[field];
    return typeof v === "string" && test(v) ? v : bad(field, what);
  };
  if (o.format !== MANIFEST_FORMAT) {
    if (typeof o.format === "number" && Number.isInteger(o.format) && o.format > MANIFEST_FORMAT) {
      throw new CorruptSnapshotError(
        source,
        `its manifest has format ${o.format}, which this autopilot cannot read (it reads format ${MANIFEST_FORMAT})`,
        "upgrade autopilot to restore it",
      );
    }
    bad("format", `must be ${MANIFEST_FORMAT}`);
  }
  const name = str("name", (s) => NAME_PATTERN.test(s), "must be letters, digits, '.', '_' and '-'");
  const key = str("key", (s) => s === `${name}${DATA_SUFFIX}`, `must be '${name}${DATA_SUFFIX}'`);
  const createdAt = str("createdAt", isIsoDate, "must be an ISO 8601 UTC time like 2026-11-25T19:00:00.000Z");
  const nodeName = str("nodeName", (s) => s.trim() !== "", "must be a non-empty string");
  const flavour = str(
    "flavour",
    (s) => s === "mariadb" || s === "mysql",
    "must be 'mariadb' or 'mysql'",
  ) as Flavour;
  const serverVersion = str("serverVersion", (s) => s.trim() !== "", "must be a non-empty string");
  const tool = str(
    "tool",
    (s) => s === backupTool(flavour),
    `must be '${backupTool(flavour)}' for ${flavour}`,
  );
  const compression = str("compression", (s) => s === "zstd", "must be 'zstd'");
  const encryption = o.encryption === undefined ? undefined : parseEncryptionInfo(o.encryption);
  if (encryption !== undefined && "problem" in encryption) bad("encryption", encryption.problem);
  const sha256 = str("sha256", (s) => /^[0-9a-f]{64}$/.test(s), "must be 64 lower-case hex digits");
  const size = o.size;
  if (typeof size !== "number" || !Number.isSafeInteger(size) || size <= 0) {
    bad("size", "must be a positive integer");
  }
  const gtid = str("gtid", (s) => !/\s/.test(s) && isGtid(flavour, s), `must be a ${flavour} GTID position`);
  const b = o.binlog;
  if (typeof b !== "object" || b === null || Array.isArray(b)) bad("binlog", "must be an object");
  const binlog = b as Record<string, unknown>;
  if (typeof binlog.file !== "string" || !BINLOG_FILE_PATTERN.test(binlog.file)) {
    bad("binlog.file", "must be a binlog file name", binlog.file);
  }
  if (typeof binlog.position !== "number" || !Number.isSafeInteger(binlog.position) || binlog.position < 0) {
    bad("binlog.position", "must be a non-negative integer", binlog.position);
  }
  const binlogState = o.binlogState === undefined ? undefined : str(
    "binlogState",
    (s) => flavour === "mariadb" && !/\s/.test(s) && isGtid(flavour, s),
    "must be a MariaDB binlog state (mariadb snapshots only)",
  );
  return Object.freeze({
    format: MANIFEST_FORMAT,
    name,
    key,
    createdAt,
    nodeName,
    flavour,
    serverVersion,
    tool: tool as BackupTool,
    compression: compression as "zstd",
    ...(encryption !== undefined ? { encryption: encryption as EncryptionInfo } : {}),
    sha256,
    size: size as number,
    gtid,
    binlog: Object.freeze({ file: binlog.file as string, position: binlog.position as number }),
    ...(binlogState !== undefined ? { binlogState } : {}),
  });
}

/**
 * Reads the outcome of a backup from the tool's log (its stderr): the `completed OK!` marker and the line
 * `MySQL binlog position: filename 'mysql-bin.000001', position '5614399', GTID of the last change '0-3-16'`
 * that mariabackup and xtrabackup print (the GTID part may be empty or missing; a MySQL GTID set may span
 * several lines).
 *
 * @param stderr The tool's whole stderr.
 * @returns The marker's presence, and the last binlog position and GTID reported.
 */
export function parseBackupLog(stderr: string): BackupLog {
  const completedOk = /(^|\s)completed OK!/m.test(stderr);
  const pattern =
    /MySQL binlog position: filename '([^']*)', position '?(\d+)'?(?:, GTID of the last change '([^']*)')?/g;
  let binlog: BinlogPosition | undefined;
  let gtid = "";
  for (const m of stderr.matchAll(pattern)) {
    const position = Number(m[2]);
    if (m[1] === "" || !Number.isSafeInteger(position)) continue;
    binlog = { file: m[1], position };
    gtid = normaliseGtid(m[3] ?? "");
  }
  return { completedOk, binlog, gtid };
}

/**
 * Parses the binlog info file a backup carries: `<file>\t<position>[\t<gtid>]`, e.g.
 * `mysql-bin.000001\t5614399\t0-3-16`. A MySQL GTID set may hold several comma-separated elements across lines.
 *
 * @param text The file's contents.
 * @returns The binlog file, position and GTID position (whitespace removed, `""` when absent).
 * @throws {SyntaxError} naming what is missing: `Cannot parse the backup's binlog info: … : current value is '…'`.
 */
export function parseBinlogInfo(text: string): BinlogInfo {
  const fail = (what: string): never => {
    throw new SyntaxError(
      `Cannot parse the backup's binlog info: ${what}: current value is '${text.trim()}'`,
    );
  };
  const body = text.replace(/^\s+|\s+$/g, "");
  const first = body.indexOf("\t");
  if (body === "" || first < 0) fail("expected '<file>\\t<position>\\t<gtid>'");
  const second = body.indexOf("\t", first + 1);
  const file = body.slice(0, first).trim();
  const positionText = (second < 0 ? body.slice(first + 1) : body.slice(first + 1, second)).trim();
  const gtid = second < 0 ? "" : normaliseGtid(body.slice(second + 1));
  if (!BINLOG_FILE_PATTERN.test(file)) fail(`'${file}' is not a binlog file name`);
  const position = Number(positionText);
  if (!/^\d+$/.test(positionText) || !Number.isSafeInteger(position)) {
    fail(`position '${positionText}' is not a non-negative integer`);
  }
  return { file, position, gtid };
}

/** Removes whitespace (MySQL prints long GTID sets as `a:1-5,\nb:1-3`). */
function normaliseGtid(text: string): string {
  return text.replace(/\s+/g, "");
}

function isGtid(flavour: Flavour, text: string): boolean {
  try {
    parseGtidSet(flavour, text);
    return true;
  } catch {
    return false;
  }
}

function isIsoDate(s: string): boolean {
  const d = new Date(s);
  return Number.isFinite(d.getTime()) && d.toISOString() === s;
}

function shown(value: unknown): string {
  if (typeof value === "string") return `'${value.length > 80 ? `${value.slice(0, 80)}…` : value}'`;
  if (value === undefined) return "missing";
  const json = JSON.stringify(value);
  return json.length > 80 ? `${json.slice(0, 80)}…` : json;
}

/** Where an errant node's extra transactions are saved in the snapshot store, before it is rebuilt. */
export const ERRANT_PREFIX = "errant-transactions/";

/** The objects one save of an errant node's extra transactions writes, all with one base name. */
export interface ErrantKeys {
  /** `errant-transactions/<node>/<time>_<gtids>` */
  readonly base: string;
  /** The binlog events themselves, as `mysqlbinlog` prints them (BINLOG '...' statements a client can replay). */
  readonly events: string;
  /** The same events as readable SQL (`--base64-output=decode-rows --verbose`): to read, not to replay. */
  readonly readable: string;
  /** What was saved: node, time, the full GTID set, the primary it lacked them against. */
  readonly info: string;
}

/** The longest GTID part of an errant save's name; the full set is in its `.json`. */
const ERRANT_GTID_CHARS = 120;

/**
 * The keys of one save of an errant node's extra transactions: which node, when (UTC, to the second) and which
 * GTIDs (`,` becomes `_` and `:` becomes `.`, cut after {@link ERRANT_GTID_CHARS} characters with `_etc`).
 *
 * @param node NODE_NAME (characters a key cannot hold become `-`).
 * @param at When they were saved.
 * @param gtids The extra GTIDs, in the flavour's text form.
 * @returns e.g. `errant-transactions/n1/2026-12-02T15-56-44Z_0-1-93.events.sql` and its siblings.
 */
export function errantKeys(node: string, at: Date, gtids: string): ErrantKeys {
  const stamp = at.toISOString().replace(/\.\d+Z$/, "Z").replace(/:/g, "-");
  let set = gtids.replace(/\s+/g, "").replace(/,/g, "_").replace(/:/g, ".").replace(/[^A-Za-z0-9._-]/g, "-");
  if (set.length > ERRANT_GTID_CHARS) set = `${set.slice(0, ERRANT_GTID_CHARS)}_etc`;
  const base = `${ERRANT_PREFIX}${node.replace(/[^A-Za-z0-9._-]/g, "-")}/${stamp}_${set}`;
  return {
    base: checkKey(base),
    events: checkKey(`${base}.events.sql`),
    readable: checkKey(`${base}.readable.sql`),
    info: checkKey(`${base}.json`),
  };
}

/** One save, read back from its key's name (see {@link errantKeys}). */
export interface ErrantSave {
  readonly node: string;
  /** ISO 8601, to the second. */
  readonly at: string;
  /** The GTID part of the name (shortened, `_`-separated, as in the key). */
  readonly gtids: string;
  /** The key's base: add `.events.sql`, `.readable.sql` or `.json`. */
  readonly base: string;
}

/** The save a key belongs to, or undefined for a key {@link errantKeys} did not make. */
export function parseErrantKey(key: string): ErrantSave | undefined {
  const m =
    /^errant-transactions\/([^/]+)\/(\d{4}-\d\d-\d\dT\d\d-\d\d-\d\dZ)_(.*)\.(events\.sql|readable\.sql|json)$/
      .exec(key);
  if (!m || key.endsWith(MANIFEST_SUFFIX)) return undefined;
  const [, node, stamp, gtids] = m;
  const at = stamp.replace(/T(\d\d)-(\d\d)-(\d\d)Z$/, "T$1:$2:$3Z");
  return { node, at, gtids, base: key.slice(0, key.length - m[4].length - 1) };
}
