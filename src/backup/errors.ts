/**
 * The errors of the snapshot pipeline. Each message is one line: what is wrong, the value at fault, and what
 * to do; none carries a secret.
 *
 * @module
 */

/** What to do about a snapshot that cannot be used. */
export const CORRUPT_ADVICE =
  "it was not restored; take a new snapshot on the primary or publish an older one in LAST_BACKUP_KEY";

/**
 * A snapshot in the store is unusable: its bytes do not match its manifest, its manifest is malformed, its
 * data does not decompress or unpack, or it lacks the metadata a restore needs.
 */
export class CorruptSnapshotError extends Error {
  /** The snapshot's name (or, for an unreadable manifest, the manifest's key). */
  readonly snapshot: string;
  /** What is wrong, without the surrounding context. */
  readonly problem: string;

  /**
   * Builds the error and its message, `Snapshot '<snapshot>' is corrupt: <problem>: <advice>`.
   *
   * @param snapshot The snapshot's name, or the manifest's key when the name is unknown.
   * @param problem What is wrong, with the values at fault.
   * @param advice What the operator should do. @default {@link CORRUPT_ADVICE}
   * @param options `cause`: the underlying error.
   */
  constructor(snapshot: string, problem: string, advice: string = CORRUPT_ADVICE, options?: ErrorOptions) {
    super(`Snapshot '${snapshot}' is corrupt: ${problem}: ${advice}`, options);
    this.name = "CorruptSnapshotError";
    this.snapshot = snapshot;
    this.problem = problem;
  }
}

/** A backup failed; nothing was published (no manifest, no data object). */
export class BackupError extends Error {
  /** The name the snapshot would have had. */
  readonly snapshot: string;
  /** What went wrong, without the surrounding context. */
  readonly problem: string;

  /**
   * Builds the error and its message, `Cannot take snapshot '<snapshot>': <problem>: <advice>`.
   *
   * @param snapshot The name the snapshot would have had.
   * @param problem What went wrong, with the values at fault.
   * @param advice What happened to the store and what to do.
   * @param options `cause`: the underlying error.
   */
  constructor(
    snapshot: string,
    problem: string,
    advice =
      "nothing was stored (earlier snapshots are unchanged); fix the cause and take the snapshot again",
    options?: ErrorOptions,
  ) {
    super(`Cannot take snapshot '${snapshot}': ${problem}: ${advice}`, options);
    this.name = "BackupError";
    this.snapshot = snapshot;
    this.problem = problem;
  }
}

/** A restore failed for a reason other than the snapshot's own corruption; the datadir was not touched. */
export class RestoreError extends Error {
  /** The snapshot's name. */
  readonly snapshot: string;
  /** The datadir the snapshot was to be restored into. */
  readonly datadir: string;
  /** What went wrong, without the surrounding context. */
  readonly problem: string;

  /**
   * Builds the error and its message, `Cannot restore snapshot '<snapshot>' into '<datadir>': <problem>: <advice>`.
   *
   * @param snapshot The snapshot's name.
   * @param datadir The target datadir.
   * @param problem What went wrong, with the values at fault.
   * @param advice What happened to the datadir and what to do.
   * @param options `cause`: the underlying error.
   */
  constructor(
    snapshot: string,
    datadir: string,
    problem: string,
    advice = "the datadir was not touched; fix the cause and restore again",
    options?: ErrorOptions,
  ) {
    super(`Cannot restore snapshot '${snapshot}' into '${datadir}': ${problem}: ${advice}`, options);
    this.name = "RestoreError";
    this.snapshot = snapshot;
    this.datadir = datadir;
    this.problem = problem;
  }
}

/**
 * A failed program's error message without the timestamps mariabackup and xtrabackup put on each log line,
 * e.g. `mariabackup failed (exit code 1): Failed to connect to MariaDB server: Access denied …`.
 *
 * @param message The message of a `CommandFailedError` from `src/exec.ts`.
 * @returns The same message, shorter, without a final period.
 */
export function withoutLogPrefixes(message: string): string {
  return message
    .replace(/\[\d{2}\] \d{4}-\d\d-\d\d \d\d:\d\d:\d\d /g, "")
    .replace(
      /\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?([-+]\d\d:\d\d|Z) \d+ \[\w+\] (\[MY-\d+\] )?(\[\w+\] )?/g,
      "",
    )
    .replace(/\.$/, "");
}
