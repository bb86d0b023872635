/**
 * Fencing inside the server: while a node is primary, mysqld itself holds it to a lease. The primary's health
 * pass extends the lease right after each renewal of its Consul session, to end SESSION_TTL/2 after that
 * renewal was sent; an event in the server (`autopilot.lease_fence`, every second) turns the server read-only
 * (super_read_only on MySQL) as soon as it is writable without a live lease, whatever the hooks are doing: a
 * pass that hangs, hooks that are frozen or gone, a cut link. Consul frees the lock no sooner than SESSION_TTL
 * after the last renewal, so the old primary is read-only before anyone else can be appointed.
 *
 * The SQL is the flavour's ({@link LeaseSql} in flavour.ts). Every write here runs with the session's binlog
 * off: nothing replicates and no GTID is made, so `gtid_binlog_state` / `gtid_executed` (what the failover and
 * errant-node checks compare) never change. The order is always: extend the lease, then turn writable.
 *
 * @module
 */
import { type MysqlClient, MysqlQueryError } from "./client.ts";

/** What the lease needs of a connection: statements, and closing it (a MysqlClient). */
export type LeaseConnection = Pick<MysqlClient, "query" | "close">;
import { type Flavour, sqlFor } from "./flavour.ts";

/** Server error numbers this module handles. */
const ER_OPTION_PREVENTS_STATEMENT = 1290; // read_only / super_read_only refused a write
const ER_BAD_DB_ERROR = 1049; // no schema `autopilot`
const ER_NO_SUCH_TABLE = 1146; // no table `autopilot.lease`

/** Options of the lease operations. */
export interface LeaseOptions {
  /** Aborts the call: the pass's deadline. */
  readonly signal?: AbortSignal;
}

/**
 * The lease's length for a session TTL: half of it, so that a primary whose renewals stop is read-only well
 * before Consul can free its lock (never sooner than one TTL after the last renewal).
 *
 * @param ttlSeconds SESSION_TTL in seconds.
 * @returns Milliseconds.
 */
export function leaseMsFor(ttlSeconds: number): number {
  return ttlSeconds * 500;
}

/**
 * How long a lease may still run when it is written: its full length counted from when the renewal it rests
 * on was sent, so a pass delayed between the renewal and the write never makes the lease outlast the session.
 *
 * @param leaseMs The lease's full length ({@link leaseMsFor}).
 * @param renewalSentAt When the renewal was sent (a monotonic clock such as `performance.now()`).
 * @param now The same clock now.
 * @returns Milliseconds, 0 when nothing is left.
 */
export function leaseLeftMs(leaseMs: number, renewalSentAt: number, now: number): number {
  return Math.max(0, Math.floor(leaseMs - Math.max(0, now - renewalSentAt)));
}

/**
 * Creates the lease's schema and table and (re)creates the fence event, idempotently, without the binlog.
 * Run on a server before it may turn writable; a datadir restored from a snapshot already has them.
 *
 * @throws {MysqlQueryError} when the server refuses (e.g. the account lacks the EVENT privilege).
 */
export async function installLease(
  db: LeaseConnection,
  flavour: Flavour,
  o: LeaseOptions = {},
): Promise<void> {
  const lease = sqlFor(flavour).lease;
  await withoutBinlog(
    db,
    flavour,
    () => asAdmin(db, flavour, () => runAll(db, lease.install, o.signal), true),
    o,
  );
}

/**
 * Sets the lease to end `ms` from now (server time), without the binlog. A server without the lease's table
 * (one that was primary before this version) gets it installed first.
 *
 * @param ms What is left of the lease ({@link leaseLeftMs}); 0 or less writes nothing.
 * @param turningWritable The caller turns the server writable next. On MySQL a super-read-only server then has
 *   super_read_only taken off (read_only stays on until the caller turns it off), so the lease can be written;
 *   otherwise a super-read-only MySQL server is left as it is: it needs no lease.
 * @returns Whether the lease was written.
 */
export async function extendLease(
  db: LeaseConnection,
  flavour: Flavour,
  ms: number,
  o: LeaseOptions & { readonly turningWritable?: boolean } = {},
): Promise<boolean> {
  if (!(ms > 0)) return false;
  const lease = sqlFor(flavour).lease;
  const write = async () => {
    try {
      const query = () => db.query(lease.extend(ms), { signal: o.signal });
      await (o.turningWritable ? asAdmin(db, flavour, query, false) : query());
      return true;
    } catch (e) {
      // MySQL checks super_read_only before it looks for the table: a fenced server needs no lease.
      if (isErrno(e, ER_OPTION_PREVENTS_STATEMENT) && !o.turningWritable) return false;
      throw e;
    }
  };
  return await withoutBinlog(db, flavour, async () => {
    try {
      return await write();
    } catch (e) {
      if (!isErrno(e, ER_NO_SUCH_TABLE, ER_BAD_DB_ERROR)) throw e;
      await asAdmin(db, flavour, () => runAll(db, lease.install, o.signal), o.turningWritable !== true);
      return await write();
    }
  }, o);
}

/**
 * Removes the lease, without the binlog: for a node that stops being primary, so that it never runs with a
 * live one. Nothing to do on a server that never had one.
 */
export async function clearLease(db: LeaseConnection, flavour: Flavour, o: LeaseOptions = {}): Promise<void> {
  const lease = sqlFor(flavour).lease;
  await withoutBinlog(db, flavour, async () => {
    try {
      await db.query(lease.clear, { signal: o.signal });
    } catch (e) {
      if (isErrno(e, ER_NO_SUCH_TABLE, ER_BAD_DB_ERROR)) return;
      if (!isErrno(e, ER_OPTION_PREVENTS_STATEMENT)) throw e;
      // MySQL, super-read-only: lift it for the delete only when there is a live lease to remove.
      const left = await leaseState(db, flavour, o);
      if (left === undefined || left <= 0) return;
      await asAdmin(db, flavour, () => db.query(lease.clear, { signal: o.signal }), true, true);
    }
  }, o);
}

/**
 * What is left of the lease, in milliseconds by the server's clock: negative once it has lapsed, `undefined`
 * when there is none (no row, or no lease table).
 */
export async function leaseState(
  db: LeaseConnection,
  flavour: Flavour,
  o: LeaseOptions = {},
): Promise<number | undefined> {
  try {
    const [row] = await db.query(sqlFor(flavour).lease.state, { signal: o.signal });
    if (row === undefined || row.remaining_us === null || row.remaining_us === undefined) return undefined;
    return Number(row.remaining_us) / 1000;
  } catch (e) {
    if (isErrno(e, ER_NO_SUCH_TABLE, ER_BAD_DB_ERROR)) return undefined;
    throw e;
  }
}

function isErrno(e: unknown, ...errnos: number[]): boolean {
  return e instanceof MysqlQueryError && errnos.includes(e.errno);
}

/**
 * Runs `fn` with the session's binlog off, then puts it back. If it cannot be put back the connection is
 * closed: later statements on it must never write without the binlog.
 */
async function withoutBinlog<T>(
  db: LeaseConnection,
  flavour: Flavour,
  fn: () => Promise<T>,
  o: LeaseOptions,
): Promise<T> {
  const lease = sqlFor(flavour).lease;
  await db.query(lease.binlogOff, { signal: o.signal });
  let result: T;
  try {
    result = await fn();
  } catch (e) {
    await db.query(lease.binlogRestore).catch(() => db.close());
    throw e;
  }
  try {
    await db.query(lease.binlogRestore);
  } catch (e) {
    await db.close();
    throw e;
  }
  return result;
}

/**
 * Runs a write of the admin account's. MariaDB: as it is (the admin account writes through read_only). MySQL:
 * if super_read_only refuses it (or `refused`: it is known to), takes super_read_only off (read_only stays on)
 * and tries again (the fence event may turn it back on in between, hence a few tries), then puts it back on if
 * `restore`.
 */
async function asAdmin<T>(
  db: LeaseConnection,
  flavour: Flavour,
  fn: () => Promise<T>,
  restore: boolean,
  refused = false,
): Promise<T> {
  const lease = sqlFor(flavour).lease;
  if (lease.liftSuperReadOnly === undefined) return await fn();
  let lifted = false;
  try {
    if (refused) {
      await db.query(lease.liftSuperReadOnly);
      lifted = true;
    }
    for (let attempt = 1;; attempt++) {
      try {
        return await fn();
      } catch (e) {
        if (!isErrno(e, ER_OPTION_PREVENTS_STATEMENT) || attempt > 3) throw e;
      }
      await db.query(lease.liftSuperReadOnly);
      lifted = true;
    }
  } finally {
    if (lifted && restore) await db.query(lease.restoreSuperReadOnly!);
  }
}

async function runAll(
  db: LeaseConnection,
  statements: readonly string[],
  signal?: AbortSignal,
): Promise<void> {
  for (const statement of statements) await db.query(statement, { signal });
}
