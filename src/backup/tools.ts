/**
 * The command lines of the backup tools, per flavour, as pure argv builders: MariaDB uses mariabackup and
 * mbstream, MySQL 8.4 and Percona Server 8.4 use Percona XtraBackup 8.4 (xtrabackup, xbstream). Compression
 * is zstd.
 *
 * No password ever goes on a command line: a password reaches the tool through an option file, either
 * `--defaults-extra-file` (which the tools require as the very first option) or an option file that
 * `!include`s both the server's cnf and the password file ({@link includeOptionFiles}), because mariabackup and
 * xtrabackup refuse `--defaults-file` and `--defaults-extra-file` together.
 *
 * @module
 */

import type { Flavour } from "../mysql/flavour.ts";

/** How to reach the server to back up. */
export interface BackupCommandOptions {
  /** The option file read instead of the global ones (the server's cnf, or one made by {@link includeOptionFiles}). */
  readonly defaultsFile?: string;
  /**
   * An option file read after the global ones, e.g. a 0600 `[client]` file with `password=`. It becomes the
   * first option. Cannot be combined with {@link BackupCommandOptions.defaultsFile}.
   */
  readonly defaultsExtraFile?: string;
  /** The account the tool connects as. */
  readonly user: string;
  /** The server's unix socket; the option files' `socket` applies when omitted. */
  readonly socket?: string;
  /** MySQL only, and required there: the directory xtrabackup keeps its working files in while it streams. */
  readonly targetDir?: string;
}

/**
 * How often (ms) mariabackup's redo-log copier looks for new redo. Under `BACKUP STAGE BLOCK_COMMIT`, when
 * every commit on the server waits, mariabackup waits for the copier to reach the server's current LSN: with
 * the default (1000 ms) that wait held commits for up to a second on every snapshot (about 1.0 s measured on
 * 10.11.19); at 10 ms the block lasts about 40 ms. See docs/BENCHMARKS.md, Snapshots.
 */
export const MARIABACKUP_LOG_COPY_INTERVAL_MS = 10;

/**
 * The hot backup command, streaming an xbstream to stdout (its log goes to stderr). mariabackup polls the redo
 * log every {@link MARIABACKUP_LOG_COPY_INTERVAL_MS} ms, which keeps its block of commits short.
 *
 * @param flavour `mariadb` (mariabackup) or `mysql` (xtrabackup).
 * @param opts The server, account and option files.
 * @returns e.g. `["mariabackup", "--defaults-file=/etc/my.cnf", "--backup", "--stream=xbstream",
 *   "--log-copy-interval=10", "--user=root", "--socket=/run/mysqld/mysqld.sock"]`.
 * @throws {RangeError} for a relative or multi-line path, an invalid user name, both option files at once, or
 *   a missing `targetDir` on MySQL.
 */
export function backupCommand(flavour: Flavour, opts: BackupCommandOptions): string[] {
  if (opts.defaultsFile !== undefined && opts.defaultsExtraFile !== undefined) {
    throw new RangeError(
      "Cannot pass both --defaults-file and --defaults-extra-file: mariabackup and xtrabackup refuse them " +
        "together; make one option file that includes both (includeOptionFiles())",
    );
  }
  if (!/^[A-Za-z0-9_.$@-]{1,80}$/.test(opts.user) || opts.user.startsWith("-")) {
    throw new RangeError(
      `Cannot back up as user '${opts.user}': use 1 to 80 letters, digits, '_', '.', '$', '@' or '-'`,
    );
  }
  const argv = [flavour === "mariadb" ? "mariabackup" : "xtrabackup"];
  if (opts.defaultsExtraFile !== undefined) {
    argv.push(`--defaults-extra-file=${checkPath(opts.defaultsExtraFile, "option file")}`);
  }
  if (opts.defaultsFile !== undefined) {
    argv.push(`--defaults-file=${checkPath(opts.defaultsFile, "option file")}`);
  }
  argv.push("--backup", "--stream=xbstream");
  if (flavour === "mariadb") argv.push(`--log-copy-interval=${MARIABACKUP_LOG_COPY_INTERVAL_MS}`);
  if (flavour === "mysql") {
    if (opts.targetDir === undefined) {
      throw new RangeError("Cannot build the xtrabackup command: targetDir is required when streaming");
    }
    argv.push(`--target-dir=${checkPath(opts.targetDir, "target directory")}`);
  }
  argv.push(`--user=${opts.user}`);
  if (opts.socket !== undefined) argv.push(`--socket=${checkPath(opts.socket, "socket")}`);
  return argv;
}

/**
 * The command that unpacks an xbstream read from stdin into a directory (which must exist).
 *
 * @param flavour `mariadb` (mbstream) or `mysql` (xbstream).
 * @param dir An absolute directory path.
 * @returns e.g. `["mbstream", "-x", "-C", "/var/lib/mysql.restore-1a2b"]`.
 * @throws {RangeError} for a relative or multi-line path.
 */
export function extractCommand(flavour: Flavour, dir: string): string[] {
  return [flavour === "mariadb" ? "mbstream" : "xbstream", "-x", "-C", checkPath(dir, "directory")];
}

/**
 * The command that prepares an unpacked backup (applies its redo log) so that a server can start on it.
 *
 * @param flavour `mariadb` (mariabackup) or `mysql` (xtrabackup).
 * @param dir The absolute path of the unpacked backup.
 * @returns e.g. `["mariabackup", "--prepare", "--target-dir=/var/lib/mysql.restore-1a2b"]`.
 * @throws {RangeError} for a relative or multi-line path.
 */
export function prepareCommand(flavour: Flavour, dir: string): string[] {
  return [
    flavour === "mariadb" ? "mariabackup" : "xtrabackup",
    "--prepare",
    `--target-dir=${checkPath(dir, "directory")}`,
  ];
}

/**
 * The compressor between the backup tool and the store: fast level 1, all cores, quiet.
 *
 * @returns `["zstd", "-q", "-1", "-T0"]`
 */
export function compressCommand(): string[] {
  return ["zstd", "-q", "-1", "-T0"];
}

/**
 * The decompressor between the store and the unpacker: stdin to stdout, quiet.
 *
 * @returns `["zstd", "-q", "-d", "-c"]`
 */
export function decompressCommand(): string[] {
  return ["zstd", "-q", "-d", "-c"];
}

/**
 * The text of an option file that reads other option files in order (the server's cnf, then a password
 * file), for tools that accept only one `--defaults-file`. It holds paths only, no secret.
 *
 * @param paths Absolute paths of the option files.
 * @returns `!include <path>` lines.
 * @throws {RangeError} for a relative or multi-line path.
 */
export function includeOptionFiles(paths: readonly string[]): string {
  return paths.map((p) => `!include ${checkPath(p, "option file")}\n`).join("");
}

function checkPath(path: string, what: string): string {
  if (!path.startsWith("/") || /[\n\r\0]/.test(path)) {
    throw new RangeError(`Cannot use '${path}' as the ${what}: use an absolute path on one line`);
  }
  return path;
}
