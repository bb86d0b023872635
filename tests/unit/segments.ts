/**
 * Plain archive data for the unit tests of retention and verification: MariaDB segments (archived binlogs)
 * and snapshots, dated relative to one fixed moment.
 */
import { type Segment, segmentKeys } from "../../src/binlog/segment.ts";
import type { Manifest } from "../../src/backup/manifest.ts";
import { testManifest } from "./memory_store.ts";

export const DAY = 86_400_000;
export const NOW = new Date("2026-11-25T12:00:00.000Z");

let fileNo = 0;

/** A MariaDB segment from `start` to `end`, created `minutes` after ten days before {@link NOW}. */
export function segment(start: string, end: string, minutes: number, extra: Partial<Segment> = {}): Segment {
  const createdAt = new Date(NOW.getTime() - 10 * DAY + minutes * 60_000).toISOString();
  const file = `mysql-bin.${String(++fileNo).padStart(6, "0")}`;
  return {
    format: 1,
    key: segmentKeys("n1", 1, file, createdAt).data,
    node: "n1",
    serverId: 1,
    file,
    createdAt,
    flavour: "mariadb",
    startState: start,
    endState: end,
    transactions: 1,
    rawBytes: 100,
    size: 4,
    sha256: "0".repeat(64),
    archivedAt: createdAt,
    ...extra,
  };
}

/** A snapshot taken `daysAgo` days before {@link NOW} at `gtid`. */
export function snapshot(name: string, daysAgo: number, gtid: string): Manifest {
  return { ...testManifest(name, new Date(NOW.getTime() - daysAgo * DAY).toISOString()), gtid };
}
