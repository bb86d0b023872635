/**
 * Reading the binlog archive's index from a store: every segment whose index entry parses and whose data
 * object exists with the size it states. A data object without an index entry is an upload that did not
 * finish and is ignored (retention deletes it once older than any upload lasts); an index entry without its
 * data object is reported as invalid (its binlog is lost, which the recovery plan then sees as a gap).
 *
 * @module
 */
import type { Flavour } from "../mysql/flavour.ts";
import type { ObjectInfo, SnapshotStore } from "../storage/store.ts";
import {
  archivePrefix,
  MAX_SEGMENT_INDEX_BYTES,
  parseSegment,
  type Segment,
  SEGMENT_INDEX_SUFFIX,
} from "./segment.ts";
import { errorMessage } from "../text.ts";

/** Options of {@link listSegments}. */
export interface ListSegmentsOptions {
  /** Called for each index entry that is skipped, with the reason. @default ignore them */
  readonly onInvalid?: (key: string, problem: string) => void;
  /**
   * Called, after `onInvalid`, for a valid index entry whose binlog is missing or of another size: what it held
   * is known but cannot be replayed (a recovery plan sees the gap).
   */
  readonly onLost?: (segment: Segment) => void;
  readonly signal?: AbortSignal;
  /** The cluster whose archive is read (its snapshot name prefix, `binlogs/<cluster>/`). @default "" */
  readonly cluster?: string;
  /** How many index entries are read at once. @default 16 */
  readonly concurrency?: number;
}

/**
 * Every complete segment in the store, in no particular order.
 *
 * @param objects The store's listing of `binlogs/`, when the caller has it already.
 * @throws {Error} whatever the store throws when listing or reading fails.
 */
export async function listSegments(
  store: SnapshotStore,
  opts: ListSegmentsOptions = {},
  objects?: ReadonlyMap<string, ObjectInfo>,
): Promise<Segment[]> {
  const prefix = archivePrefix(opts.cluster ?? "");
  let listing = objects;
  if (listing === undefined) {
    const m = new Map<string, ObjectInfo>();
    for await (const o of store.list(prefix)) m.set(o.key, o);
    listing = m;
  }
  const indexKeys = [...listing.keys()].filter((k) =>
    k.startsWith(prefix) && k.endsWith(SEGMENT_INDEX_SUFFIX)
  );
  const out: Segment[] = [];
  let next = 0;
  const worker = async () => {
    while (next < indexKeys.length) {
      const key = indexKeys[next++];
      opts.signal?.throwIfAborted();
      const info = listing.get(key)!;
      if (info.size > MAX_SEGMENT_INDEX_BYTES) {
        opts.onInvalid?.(key, `it is ${info.size} bytes, more than an index entry can be`);
        continue;
      }
      let segment: Segment;
      try {
        segment = parseSegment(await new Response(await store.get(key, opts.signal)).text(), key);
      } catch (e) {
        if (e instanceof Error && e.name === "SegmentIndexError") {
          opts.onInvalid?.(key, errorMessage(e));
          continue;
        }
        throw e;
      }
      const data = listing.get(segment.key);
      if (data !== undefined && data.size === segment.size) {
        out.push(segment);
        continue;
      }
      opts.onInvalid?.(
        key,
        data === undefined
          ? `its binlog ${segment.key} is missing`
          : `its binlog ${segment.key} is ${data.size} bytes but the index says ${segment.size}`,
      );
      opts.onLost?.(segment);
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, opts.concurrency ?? 16) }, worker));
  return out;
}

/** A cluster's archived binlogs of one flavour, for a replay plan: {@link replayableSegments}. */
export interface ReplayableSegments {
  /** The complete segments. */
  readonly segments: Segment[];
  /** Valid index entries whose binlog is missing or of another size (a recovery plan sees the gap). */
  readonly lost: Segment[];
}

/**
 * A cluster's segments of `flavour` and its lost ones, as a replay is planned from: each index entry that is
 * skipped is warned about on `log`, naming it and why.
 *
 * @throws {Error} whatever the store throws when listing or reading fails.
 */
export async function replayableSegments(
  store: SnapshotStore,
  opts: {
    readonly cluster: string;
    readonly flavour: Flavour;
    /** The caller's logger (its category names the pass). */
    readonly log: { readonly warn: (message: string, properties: Record<string, unknown>) => void };
    readonly signal?: AbortSignal | undefined;
  },
): Promise<ReplayableSegments> {
  const { flavour, log, signal } = opts;
  const lost: Segment[] = [];
  const segments = await listSegments(store, {
    cluster: opts.cluster,
    onInvalid: (key, problem) => log.warn("Archived binlog {key} is not used: {problem}", { key, problem }),
    onLost: (s) => lost.push(s),
    ...(signal ? { signal } : {}),
  });
  const mine = (s: Segment) => s.flavour === flavour;
  return { segments: segments.filter(mine), lost: lost.filter(mine) };
}
