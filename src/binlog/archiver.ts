/**
 * Continuous binlog archiving, run on the writable primary by `autopilot archive` (ContainerPilot's task,
 * every BINLOG_ARCHIVE_INTERVAL): close the open binlog when it holds transactions (`FLUSH BINARY LOGS`), then
 * upload every closed binlog file the archive lacks, each compressed with zstd, hashed, and described by an
 * index entry written after it (src/binlog/segment.ts).
 *
 * Where to continue comes from the archive record in Consul (`SERVICE_NAME-binlog-archive`), else from the
 * store's index: the newest local file that starts inside what the archive holds is where this primary's
 * history continues, so a new primary after a failover uploads its own files from the one holding the
 * archive's last transaction on, and never a file another server wrote (names carry node and server_id). When
 * no local file starts inside the archive (a binlog purged before it was archived), that is a gap: it is
 * reported, every local file is uploaded, and the snapshot schedule takes a new snapshot (a new recoverable
 * span).
 *
 * Why flush and upload rather than stream with `mariadb-binlog --read-from-remote-server --raw --stop-never`:
 * a streaming reader is a second long-running process per node that must follow every failover, and its
 * output is still a growing file that must be cut to be uploaded; a flush costs one short lock per interval
 * (measured in `deno task bench:backup`) and leaves only immutable files to upload. docs/DEVELOPING.md has the
 * measurements.
 *
 * @module
 */
import { CommandFailedError, pipeline } from "../exec.ts";
import type { ArchiveRecord } from "../cluster_kv.ts";
import type { Flavour } from "../mysql/flavour.ts";
import { MysqlGtidSet, parseGtidSet } from "../mysql/gtid.ts";
import type { BinaryLogs, CallOptions } from "../mysql/server.ts";
import type { SnapshotStore } from "../storage/store.ts";
import { DigestStream } from "../backup/digest.ts";
import { compressCommand } from "../backup/tools.ts";
import { encryptCommand, encryptionInfo, type Keyring } from "../backup/encryption.ts";
import { errorMessage } from "../text.ts";
import { type BinlogSummary, type BinlogTransaction, scanBinlog, scanningStream } from "./scan.ts";
import {
  formatSegment,
  MAX_MARKS,
  parseSegment,
  type Segment,
  SEGMENT_FORMAT,
  type SegmentKeys,
  segmentKeys,
} from "./segment.ts";
import { isoSecond, positionOf } from "./plan.ts";

/** The server operations archiving needs (ServerOperator has them). */
export interface ArchiveServer {
  binaryLogs(o?: CallOptions): Promise<BinaryLogs>;
  flushBinaryLogs(o?: CallOptions): Promise<void>;
  gtidState(o?: CallOptions): Promise<{ readonly executed: string }>;
}

/** Archiving failed; the message says what and where. Nothing half-written counts: index entries come last. */
export class ArchiveError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "ArchiveError";
  }
}

/** What {@link archiveBinlogs} needs. */
export interface ArchiveOptions {
  readonly store: SnapshotStore;
  readonly server: ArchiveServer;
  readonly flavour: Flavour;
  /** NODE_NAME: the first part of every key this node writes (after the cluster's). */
  readonly node: string;
  /** The cluster's snapshot name prefix: its archive is `binlogs/<cluster>/` (src/binlog/segment.ts). */
  readonly cluster?: string;
  /** The archive record Consul holds, if any. */
  readonly last?: ArchiveRecord;
  /** When the newest published snapshot was taken (ISO 8601): a gap seen before it is not carried on. */
  readonly lastSnapshotAt?: string;
  /**
   * Called before each upload: throws (an {@link ArchiveError}) when this node is no longer the primary, so
   * that an archiver overtaken by a switchover stops before it uploads another file.
   */
  readonly beforeUpload?: () => Promise<void>;
  /** The store's index (read only when there is no record). */
  readonly listSegments: () => Promise<readonly Segment[]>;
  readonly signal?: AbortSignal;
  /** @default () => new Date() */
  readonly now?: () => Date;
  /** Encrypts every uploaded file (see {@link uploadSegment}). */
  readonly keyring?: Keyring;
}

/** What one run did. */
export interface ArchiveOutcome {
  readonly uploaded: readonly Segment[];
  /** The record to write to Consul. */
  readonly record: ArchiveRecord;
  /** Set when this run found a gap. */
  readonly gap?: NonNullable<ArchiveRecord["gap"]>;
  /** Whether it closed the open binlog. */
  readonly flushed: boolean;
}

/** The first bytes of a binlog file: its Format_description and Gtid_list / Previous_gtids events. */
const HEAD_BYTES = 64 * 1024;

/** What a binlog file's first events say. */
export interface Head {
  readonly file: string;
  readonly path: string;
  readonly serverId: number;
  readonly createdAt: string;
  readonly startState: string;
  /** Unix second of its first transaction, if the head holds one. */
  readonly firstTime?: number;
  /** Its Format_description event's in-use flag: set on a closed file, the server crashed writing it. */
  readonly inUse?: boolean;
}

/** Reads the head of `dir/file`: who wrote it, when it was created, the state before it. */
export async function readHead(dir: string, file: string, signal?: AbortSignal): Promise<Head> {
  const path = `${dir}/${file}`;
  const f = await Deno.open(path);
  let summary: BinlogSummary;
  try {
    const buf = new Uint8Array(HEAD_BYTES);
    let n = 0;
    while (n < buf.length) {
      const r = await f.read(buf.subarray(n));
      if (r === null) break;
      n += r;
    }
    summary = await scanBinlog(ReadableStream.from([buf.subarray(0, n)]), {
      allowTruncated: true,
      ...(signal ? { signal } : {}),
    });
  } finally {
    f.close();
  }
  return {
    file,
    path,
    serverId: summary.serverId,
    createdAt: isoSecond(summary.createdAt),
    startState: summary.startState,
    ...(summary.firstTime !== undefined ? { firstTime: summary.firstTime } : {}),
    ...(summary.inUse ? { inUse: true } : {}),
  };
}

/** How much of a closed binlog file {@link uploadSegment} archives. */
export interface UploadExtent {
  /** Bytes from the start (absent: the whole file). */
  readonly bytes?: number;
  /** The file was left by a crash: it is archived up to its last committed transaction. */
  readonly truncatedByCrash: boolean;
}

/**
 * How much of a file that is not the open binlog to archive. A file the server closed ends with a Rotate or
 * Stop event and is archived whole. A file whose in-use flag is still set and that has no such event was left
 * by a crash (mysqld rolled back its uncommitted tail on restart and went on in a new file): it is archived up
 * to its last committed transaction, so that archiving goes on with the files after it.
 *
 * @throws {BinlogScanError} if the file is not a binlog.
 */
export async function uploadExtent(head: Head, signal?: AbortSignal): Promise<UploadExtent> {
  if (!head.inUse) return { truncatedByCrash: false };
  const f = await Deno.open(head.path);
  const summary = await scanBinlog(f.readable, { allowTruncated: true, ...(signal ? { signal } : {}) });
  return summary.closed
    ? { truncatedByCrash: false }
    : { bytes: summary.committedPosition, truncatedByCrash: true };
}

/** The first `n` bytes of a stream. */
function firstBytes(source: ReadableStream<Uint8Array>, n: number): ReadableStream<Uint8Array> {
  let left = n;
  const reader = source.getReader();
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      if (left <= 0) {
        await reader.cancel().catch(() => {});
        controller.close();
        return;
      }
      const { done, value } = await reader.read();
      if (done) {
        controller.close();
        return;
      }
      const chunk = value.length > left ? value.subarray(0, left) : value;
      left -= chunk.length;
      controller.enqueue(chunk);
    },
    cancel(reason) {
      return reader.cancel(reason);
    },
  });
}

/**
 * The index entry the store holds already for `keys`, when its data object is there with the size it states
 * (undefined when there is no entry). A re-run after a run that stopped between uploads finds it.
 */
async function archivedEntry(store: SnapshotStore, keys: SegmentKeys, signal?: AbortSignal) {
  const listing = new Map<string, number>();
  for await (const o of store.list(keys.data.slice(0, keys.data.lastIndexOf("/") + 1))) {
    listing.set(o.key, o.size);
  }
  if (!listing.has(keys.index)) return undefined;
  const segment = parseSegment(await new Response(await store.get(keys.index, signal)).text(), keys.index);
  return { segment, dataSize: listing.get(keys.data) };
}

function within(flavour: Flavour, a: string, b: string): boolean {
  const x = parseGtidSet(flavour, a);
  const c = x.flavour === "mariadb"
    ? x.compare(parseGtidSet("mariadb", b))
    : x.compare(parseGtidSet("mysql", b));
  return c === "subset" || c === "equal";
}

/** Builds a segment's per-second marks from its transactions, in order. */
export class MarkBuilder {
  readonly #flavour: Flavour;
  readonly #bySecond = new Map<number, string>();
  readonly #domains = new Map<string, string>();
  #set: MysqlGtidSet;
  #pending: string[] = [];
  #second: number | undefined;

  /** @param startState The file's start state (MySQL marks are sets that include it). */
  constructor(flavour: Flavour, startState: string) {
    this.#flavour = flavour;
    this.#set = flavour === "mysql" ? MysqlGtidSet.parse(startState) : MysqlGtidSet.empty();
    if (flavour === "mariadb") {
      for (const g of parseGtidSet("mariadb", positionOf("mariadb", startState)).entries()) {
        this.#domains.set(String(g.domain), `${g.domain}-${g.serverId}-${g.seqNo}`);
      }
    }
  }

  add(t: BinlogTransaction): void {
    if (this.#flavour === "mariadb") {
      this.#domains.set(t.gtid.slice(0, t.gtid.indexOf("-")), t.gtid);
      this.#bySecond.set(t.time, [...this.#domains.values()].join(","));
      return;
    }
    if (this.#second !== undefined && this.#second !== t.time) this.#flush();
    this.#second = t.time;
    this.#pending.push(t.gtid);
  }

  #flush(): void {
    if (this.#second === undefined || this.#pending.length === 0) return;
    this.#set = this.#set.union(MysqlGtidSet.parse(this.#pending.join(",")));
    this.#pending = [];
    this.#bySecond.set(this.#second, this.#set.toString());
  }

  /** The marks, ascending by second; undefined when there are more than {@link MAX_MARKS}. */
  marks(): [number, string][] | undefined {
    this.#flush();
    if (this.#bySecond.size > MAX_MARKS) return undefined;
    return [...this.#bySecond.entries()].sort((a, b) => a[0] - b[0]);
  }
}

/**
 * Uploads one closed binlog file: the file (up to its last committed transaction when a crash left it,
 * {@link uploadExtent}) through the scanner and zstd into the store, hashed, then its index entry. A file whose
 * index entry the store holds already (with its data) is not uploaded again: that entry is returned. Throws
 * (leaving no index entry, and never deleting a data object that has one) if the file is not a complete
 * binlog or the store fails.
 */
export async function uploadSegment(o: {
  readonly store: SnapshotStore;
  readonly head: Head;
  readonly node: string;
  /** The cluster's snapshot name prefix. @default "" */
  readonly cluster?: string;
  readonly flavour: Flavour;
  readonly signal?: AbortSignal;
  readonly now?: () => Date;
  /** Encrypts the file (age, after zstd) to the keyring's recipients; the index entry records them. */
  readonly keyring?: Keyring;
}): Promise<Segment> {
  const { store, head, signal } = o;
  const keys = segmentKeys(o.node, head.serverId, head.file, head.createdAt, o.cluster ?? "");
  const extent = await uploadExtent(head, signal);
  // An index entry is the commit marker of its data object: never overwritten, its data never deleted.
  let existing: Awaited<ReturnType<typeof archivedEntry>>;
  try {
    existing = await archivedEntry(store, keys, signal);
  } catch (e) {
    throw new ArchiveError(`Cannot read ${keys.index} in the ${store.kind} store: ${errorMessage(e)}`, {
      cause: e,
    });
  }
  if (existing !== undefined) {
    const rawBytes = extent.bytes ?? (await Deno.stat(head.path)).size;
    const s = existing.segment;
    if (s.startState === head.startState && s.rawBytes === rawBytes && existing.dataSize === s.size) return s;
    throw new ArchiveError(
      `${keys.index} in the ${store.kind} store already describes ${head.path} but does not match it (${
        existing.dataSize === s.size
          ? `it says ${s.rawBytes} bytes from ${s.startState || "(empty)"}, the file has ${rawBytes} from ${
            head.startState || "(empty)"
          }`
          : `its data object ${keys.data} is missing or of another size`
      }): it is left as it is; move it aside by hand if it is wrong`,
    );
  }
  const marks = new MarkBuilder(o.flavour, head.startState);
  const scan = scanningStream({
    onTransaction: (t) => marks.add(t),
    ...(extent.truncatedByCrash ? { allowTruncated: true } : {}),
  });
  const digest = new DigestStream();
  const file = await Deno.open(head.path);
  const bytes = extent.bytes !== undefined ? firstBytes(file.readable, extent.bytes) : file.readable;
  /** Deletes the data object written, unless an index entry (another run's) now stands beside it. */
  const discard = async () => {
    const entry = await archivedEntry(store, keys).catch(() => "unknown" as const);
    if (entry === undefined) await store.delete([keys.data]).catch(() => {});
  };
  let stored: { size: number } | undefined;
  try {
    const stages = [{ argv: compressCommand() }];
    if (o.keyring) stages.push({ argv: encryptCommand(o.keyring.recipients) });
    await pipeline(stages, {
      source: bytes.pipeThrough(scan.stream),
      sink: async (out) => {
        stored = await store.put(keys.data, out.pipeThrough(digest), signal);
      },
      ...(signal ? { signal } : {}),
    });
  } catch (e) {
    await discard();
    if (e instanceof CommandFailedError) throw new ArchiveError(`Cannot compress ${head.path}: ${e.message}`);
    throw new ArchiveError(`Cannot archive ${head.path} to the ${store.kind} store: ${errorMessage(e)}`, {
      cause: e,
    });
  }
  const summary = await scan.summary;
  const { sha256, size } = digest.digest;
  const complete = summary.closed || (extent.truncatedByCrash && summary.bytes === extent.bytes);
  if (!complete || summary.startState !== head.startState || stored?.size !== size) {
    await discard();
    throw new ArchiveError(
      !complete
        ? `${head.path} does not end with a rotate or stop event: it is not a complete binlog`
        : summary.startState !== head.startState
        ? `${head.path} changed while it was read`
        : `the ${store.kind} store holds ${stored?.size ?? 0} bytes of ${keys.data} but ${size} were sent`,
    );
  }
  const m = marks.marks();
  const segment: Segment = Object.freeze({
    format: SEGMENT_FORMAT,
    key: keys.data,
    node: o.node,
    serverId: head.serverId,
    file: head.file,
    createdAt: head.createdAt,
    flavour: o.flavour,
    startState: summary.startState,
    endState: summary.endState,
    transactions: summary.transactions,
    ...(summary.firstTime !== undefined ? { firstTime: summary.firstTime } : {}),
    ...(summary.lastTime !== undefined ? { lastTime: summary.lastTime } : {}),
    ...(m !== undefined ? { marks: m } : {}),
    rawBytes: summary.bytes,
    ...(o.keyring ? { encryption: encryptionInfo(o.keyring) } : {}),
    size,
    sha256,
    archivedAt: (o.now ?? (() => new Date()))().toISOString(),
    ...(extent.truncatedByCrash ? { truncatedByCrash: true as const } : {}),
  });
  await store.put(
    keys.index,
    ReadableStream.from([new TextEncoder().encode(formatSegment(segment))]),
    signal,
  );
  return segment;
}

function withoutGap({ gap: _, ...rest }: ArchiveRecord): ArchiveRecord {
  return rest;
}

/** The archive's end along any history, from the index: the newest segment's record (no record in Consul). */
function recordFromIndex(segments: readonly Segment[]): ArchiveRecord | undefined {
  let newest: Segment | undefined;
  for (const s of segments) if (newest === undefined || s.archivedAt > newest.archivedAt) newest = s;
  return newest === undefined ? undefined : {
    node: newest.node,
    serverId: newest.serverId,
    file: newest.file,
    createdAt: newest.createdAt,
    endState: newest.endState,
    ...(newest.lastTime !== undefined ? { lastTime: newest.lastTime } : {}),
    caughtUpAt: newest.archivedAt,
    lagSeconds: 0,
  };
}

/**
 * One archiving run on the primary (the caller checked that this node is the writable lock holder).
 *
 * @returns What was uploaded and the record to write to Consul.
 * @throws {ArchiveError} when a file cannot be read, scanned or stored (the files before it stay archived).
 */
export async function archiveBinlogs(o: ArchiveOptions): Promise<ArchiveOutcome> {
  const { flavour, server, signal } = o;
  const now = o.now ?? (() => new Date());
  const last = o.last ?? recordFromIndex(await o.listSegments());
  let logs = await server.binaryLogs({ ...(signal ? { signal } : {}) });
  if (logs.files.length === 0 || logs.dir === "") {
    throw new ArchiveError("the server has no binary log (log_bin is off): nothing can be archived");
  }
  const executed = (await server.gtidState({ ...(signal ? { signal } : {}) })).executed;
  const openHead = await readHead(logs.dir, logs.files[logs.files.length - 1].file, signal);
  const startedAt = now();
  // Transactions in the open file: close it, so that it can be uploaded whole.
  const flushed = !within(flavour, executed, openHead.startState);
  const lagSeconds = flushed
    ? Math.max(0, Math.round(startedAt.getTime() / 1000 - (openHead.firstTime ?? startedAt.getTime() / 1000)))
    : 0;
  if (flushed) {
    await server.flushBinaryLogs({ ...(signal ? { signal } : {}) });
    logs = await server.binaryLogs({ ...(signal ? { signal } : {}) });
  }
  const closed = logs.files.slice(0, -1).map((f) => f.file);
  // The heads newest first, until one starts inside what the archive holds.
  const heads: Head[] = [];
  let from = 0;
  let continues = last === undefined;
  for (let i = closed.length - 1; i >= 0; i--) {
    const head = await readHead(logs.dir, closed[i], signal);
    heads.unshift(head);
    if (
      last !== undefined && last.node === o.node && last.serverId === head.serverId &&
      last.file === head.file && last.createdAt === head.createdAt
    ) {
      // This very file is the last archived one: upload the ones after it. Unless the record named it
      // before it was uploaded (a run that found only an open file without transactions records that file
      // and its start state): then the file is uploaded too when it holds transactions, that is when what
      // follows it starts beyond the record.
      const next = heads[1]?.startState ??
        (flushed
          ? (await readHead(logs.dir, logs.files[logs.files.length - 1].file, signal)).startState
          : openHead.startState);
      from = within(flavour, next, last.endState) ? 1 : 0;
      continues = true;
      break;
    }
    if (last !== undefined && within(flavour, head.startState, last.endState)) {
      from = 0;
      continues = true;
      break;
    }
  }
  const todo = heads.slice(from);
  // Files whose whole content the archive holds already (the next file's start is inside it) are skipped.
  const nextStart = (i: number) => i + 1 < todo.length ? todo[i + 1].startState : undefined;
  let gap: ArchiveOutcome["gap"];
  if (!continues && last !== undefined && todo.length > 0) {
    gap = {
      after: positionOf(flavour, last.endState),
      resumes: positionOf(flavour, todo[0].startState),
      at: startedAt.toISOString(),
    };
  }
  const uploaded: Segment[] = [];
  for (let i = 0; i < todo.length; i++) {
    const next = nextStart(i);
    if (last !== undefined && continues && next !== undefined && within(flavour, next, last.endState)) {
      continue;
    }
    await o.beforeUpload?.();
    uploaded.push(
      await uploadSegment({
        store: o.store,
        head: todo[i],
        node: o.node,
        cluster: o.cluster ?? "",
        flavour,
        signal,
        now,
        ...(o.keyring ? { keyring: o.keyring } : {}),
      }),
    );
  }
  const newest = uploaded[uploaded.length - 1];
  const base: ArchiveRecord = newest !== undefined
    ? {
      node: o.node,
      serverId: newest.serverId,
      file: newest.file,
      createdAt: newest.createdAt,
      endState: newest.endState,
      ...(newest.lastTime !== undefined ? { lastTime: newest.lastTime } : {}),
      caughtUpAt: startedAt.toISOString(),
      lagSeconds,
    }
    : last !== undefined
    ? {
      ...withoutGap(last),
      caughtUpAt: within(flavour, executed, last.endState) ? startedAt.toISOString() : last.caughtUpAt,
      lagSeconds,
    }
    : {
      node: o.node,
      serverId: openHead.serverId,
      file: openHead.file,
      createdAt: openHead.createdAt,
      endState: openHead.startState,
      caughtUpAt: startedAt.toISOString(),
      lagSeconds,
    };
  const record: ArchiveRecord = gap !== undefined
    ? { ...base, gap }
    : last?.gap && !(o.lastSnapshotAt !== undefined && o.lastSnapshotAt > last.gap.at)
    ? { ...base, gap: last.gap }
    : base;
  return { uploaded, record, ...(gap !== undefined ? { gap } : {}), flushed };
}
