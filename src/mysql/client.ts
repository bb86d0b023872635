/**
 * A small client over mysql2: the local server over its unix socket, peers over TCP with a connect timeout.
 *
 * No mysql2 error leaves this module: a server that cannot be reached becomes {@link MysqlUnavailableError},
 * a failed statement {@link MysqlQueryError}. Neither message contains SQL text or values (mysql2 attaches the
 * formatted statement, passwords included, to its errors; we drop it).
 *
 * @module
 */
import mysql from "mysql2/promise";
import type { Secret, TlsFiles } from "../config.ts";
import { parseServerVersion, type ServerVersion, type Statement } from "./flavour.ts";
import { clientSsl, peerNameProblem, readTlsFiles, TlsConfigError } from "./tls.ts";

/** Where and as whom to connect. */
export interface MysqlTarget {
  /** Unix socket of the local server; when set, host and port are ignored. */
  readonly socketPath?: string;
  readonly host?: string;
  readonly port?: number;
  readonly user: string;
  readonly password?: Secret;
  /** Give up connecting after this long (a cut link never answers). */
  readonly connectTimeoutMs: number;
  /**
   * TCP only: connect over TLS with these files, the server's certificate checked against the CA and against
   * `host` (its SAN must name it); never a fallback to plain text.
   */
  readonly tls?: TlsFiles;
}

/** The server could not be reached or the connection broke. */
export class MysqlUnavailableError extends Error {
  /** mysql2's error code, e.g. `ECONNREFUSED`, `ETIMEDOUT`, `PROTOCOL_CONNECTION_LOST`. */
  readonly code: string;
  constructor(where: string, code: string, detail: string) {
    super(`Cannot reach MySQL at ${where}: ${detail}`);
    this.name = "MysqlUnavailableError";
    this.code = code;
  }
}

/** A statement failed on the server. */
export class MysqlQueryError extends Error {
  /** Server error number, e.g. 1290 (read-only), 1045 (access denied). */
  readonly errno: number;
  readonly code: string;
  constructor(where: string, code: string, errno: number, detail: string) {
    super(`MySQL at ${where} refused a statement: ${detail}`);
    this.name = "MysqlQueryError";
    this.errno = errno;
    this.code = code;
  }
}

/** A row as mysql2 returns it: column name to value. */
export type Row = Record<string, unknown>;

interface Mysql2Error extends Error {
  code?: string;
  errno?: number;
  sqlMessage?: string;
  fatal?: boolean;
}

/** Errors that mean "no usable connection", as opposed to "the server refused this statement". */
const CONNECTION_CODES = new Set([
  "ECONNREFUSED",
  "ETIMEDOUT",
  "ENOENT",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "ECONNRESET",
  "EPIPE",
  "PROTOCOL_CONNECTION_LOST",
  "ER_CON_COUNT_ERROR",
  "ER_SERVER_SHUTDOWN",
]);

/** One connection to one server. Close it, or use `await using`. */
export class MysqlClient {
  readonly #conn: mysql.Connection;
  readonly #where: string;
  /** Aborted by close(): mysql2 never settles a statement in flight when its socket is destroyed. */
  readonly #closing = new AbortController();

  private constructor(conn: mysql.Connection, where: string) {
    this.#conn = conn;
    this.#where = where;
  }

  /**
   * Connects.
   *
   * @param target Where and as whom.
   * @param signal Aborts the attempt.
   * @returns A connected client.
   * @throws {MysqlUnavailableError} when the server cannot be reached in time.
   * @throws {MysqlQueryError} when the server refuses the login (e.g. access denied).
   */
  static async connect(target: MysqlTarget, signal?: AbortSignal): Promise<MysqlClient> {
    const where = describeTarget(target);
    const tls = target.tls && !target.socketPath
      ? await tlsOption(target.tls, target.host ?? "localhost", where)
      : undefined;
    const options: mysql.ConnectionOptions = {
      user: target.user,
      password: target.password?.reveal(),
      connectTimeout: target.connectTimeoutMs,
      supportBigNumbers: true,
      bigNumberStrings: true,
      dateStrings: true,
      multipleStatements: false,
      // Rows are read by a parser shared by every query (no code generated and compiled per result shape).
      disableEval: true,
      // No prepared statements are made (query() sends text); the default (16000) preallocates its cache.
      maxPreparedStatements: 1,
      ...(target.socketPath ? { socketPath: target.socketPath } : { host: target.host, port: target.port }),
      ...(tls ? { ssl: tls } : {}),
    };
    try {
      const conn = await abortable(() => mysql.createConnection(options), signal, where);
      // A dropped connection emits 'error' on the connection object; without a listener it would crash.
      conn.on("error", () => {});
      if (tls) {
        // mysql2 checks the chain against the CA, and a host name in the handshake (`verifyIdentity`), never
        // an IP address: check the peer's certificate names the address connected to, either way; for an IP
        // address this runs after the login was sent (README, "TLS"). (No session is
        // resumed, which could leave no certificate to look at: mysql2 keys its TLS session cache by the `ssl`
        // object, and each connection has its own.)
        const problem = peerCertProblem(conn, target.host ?? "localhost");
        if (problem !== undefined) {
          conn.destroy();
          throw new MysqlUnavailableError(where, "TLS_PEER_NAME", `TLS: ${problem}`);
        }
      }
      return new MysqlClient(conn, where);
    } catch (e) {
      throw translate(e, where);
    }
  }

  /** `host:port` or the socket path, for messages. */
  get where(): string {
    return this.#where;
  }

  /**
   * Runs one statement and returns its rows (empty for statements without a result set).
   *
   * @param statement SQL text, or a {@link Statement} whose `?` placeholders mysql2 fills in and escapes.
   * @param options `timeoutMs` bounds the statement; `signal` aborts it (the connection is then destroyed).
   * @returns The rows.
   * @throws {MysqlQueryError} when the server refuses it; {@link MysqlUnavailableError} when the link fails.
   */
  async query(
    statement: string | Statement,
    options: { timeoutMs?: number; signal?: AbortSignal } = {},
  ): Promise<Row[]> {
    const { sql, values } = typeof statement === "string" ? { sql: statement, values: [] } : statement;
    try {
      const signal = options.signal
        ? AbortSignal.any([options.signal, this.#closing.signal])
        : this.#closing.signal;
      const [rows] = await abortable(
        () =>
          this.#conn.query({
            sql,
            values: [...values],
            ...(options.timeoutMs ? { timeout: options.timeoutMs } : {}),
          }),
        signal,
        this.#where,
        () => this.#conn.destroy(),
      );
      return Array.isArray(rows) ? (rows as Row[]) : [];
    } catch (e) {
      throw translate(e, this.#where);
    }
  }

  /** Runs statements in order, stopping at the first failure. */
  async run(statements: readonly (string | Statement)[], signal?: AbortSignal): Promise<void> {
    for (const s of statements) await this.query(s, { signal });
  }

  /**
   * Asks the server what it is.
   *
   * @returns Flavour and version.
   * @throws {UnsupportedServerError} for a server this program cannot manage.
   */
  async version(signal?: AbortSignal): Promise<ServerVersion> {
    const [row] = await this.query("SELECT VERSION() AS version, @@version_comment AS comment", { signal });
    return parseServerVersion(String(row.version), String(row.comment ?? ""));
  }

  /**
   * Closes the connection; never throws, and never waits more than a second: on a cut link the polite goodbye
   * (COM_QUIT) is never answered, so the socket is then destroyed.
   */
  async close(): Promise<void> {
    this.#closing.abort(CLOSED);
    let timer: ReturnType<typeof setTimeout> | undefined;
    const gaveUp = new Promise<"timeout">((resolve) => timer = setTimeout(() => resolve("timeout"), 1000));
    try {
      const how = await Promise.race([this.#conn.end().then(() => "closed" as const), gaveUp]);
      if (how === "timeout") this.#conn.destroy();
    } catch {
      this.#conn.destroy();
    } finally {
      clearTimeout(timer);
    }
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}

async function tlsOption(files: TlsFiles, host: string, where: string) {
  try {
    return clientSsl(await readTlsFiles(files), host);
  } catch (e) {
    if (e instanceof TlsConfigError) throw new MysqlUnavailableError(where, "TLS_FILES", `TLS: ${e.message}`);
    throw e;
  }
}

/** What is wrong with the name in the certificate the server presented (undefined: it names `host`). */
function peerCertProblem(conn: mysql.Connection, host: string): string | undefined {
  // The TLS socket mysql2 upgraded the connection to (its core connection's `stream`).
  const stream = (conn as unknown as {
    connection?: { stream?: { getPeerCertificate?: (detailed: boolean) => { raw?: Uint8Array } } };
  }).connection?.stream;
  const raw = stream?.getPeerCertificate?.(true)?.raw;
  if (raw === undefined || raw.length === 0) return `the server at ${host} presented no certificate`;
  return peerNameProblem(raw, host);
}

/** The abort reason close() uses, to tell it from a caller's deadline. */
const CLOSED = Symbol("closed");

function describeTarget(t: MysqlTarget): string {
  return t.socketPath ? t.socketPath : `${t.host}:${t.port ?? 3306}`;
}

/**
 * Starts `start()` unless `signal` is already aborted, and settles with it unless `signal` aborts first (then
 * `onAbort` runs). Nothing is started after an abort: a statement sent then would run on the server with nobody
 * waiting for its outcome, and its failure would surface as an unhandled rejection that ends the process.
 */
async function abortable<T>(
  start: () => Promise<T>,
  signal: AbortSignal | undefined,
  where: string,
  onAbort?: () => void,
): Promise<T> {
  if (!signal) return await start();
  const abortError = () =>
    signal.reason === CLOSED
      ? new MysqlUnavailableError(
        where,
        "CLOSED",
        "the connection was closed while a statement was under way",
      )
      : new MysqlUnavailableError(where, "ABORTED", "gave up: the caller's deadline passed");
  if (signal.aborted) throw abortError();
  const promise = start();
  let listener: (() => void) | undefined;
  const aborted = new Promise<never>((_, reject) => {
    listener = () => {
      onAbort?.();
      reject(abortError());
    };
    signal.addEventListener("abort", listener, { once: true });
  });
  try {
    return await Promise.race([promise, aborted]);
  } finally {
    if (listener) signal.removeEventListener("abort", listener);
    promise.catch(() => {}); // a late rejection after abort is expected and already reported
  }
}

function translate(e: unknown, where: string): Error {
  if (e instanceof MysqlUnavailableError || e instanceof MysqlQueryError) return e;
  const err = e as Mysql2Error;
  const code = err?.code ?? "UNKNOWN";
  if (code === "HANDSHAKE_NO_SSL_SUPPORT") {
    return new MysqlUnavailableError(
      where,
      code,
      "TLS: the server does not speak TLS (is it started with MYSQL_TLS_CA, MYSQL_TLS_CERT and MYSQL_TLS_KEY?)",
    );
  }
  if (code === "HANDSHAKE_SSL_ERROR" && /altnames|does not match certificate/i.test(err?.message ?? "")) {
    // verifyIdentity's check, in the handshake: node:tls's words name the host and the certificate's names.
    return new MysqlUnavailableError(where, "TLS_PEER_NAME", `TLS: ${err.message}`);
  }
  if (
    code === "HANDSHAKE_SSL_ERROR" ||
    /certificate|self.signed|TLS|SSL/i.test(err?.message ?? "") && !err?.sqlMessage
  ) {
    return new MysqlUnavailableError(
      where,
      code,
      `TLS: the server's certificate was refused (${err?.message ?? String(e)}): it must be signed by ` +
        "MYSQL_TLS_CA and valid",
    );
  }
  if (CONNECTION_CODES.has(code) || (err?.fatal && !err.sqlMessage)) {
    const detail = code === "ETIMEDOUT"
      ? "connection timed out (host down or link cut?)"
      : code === "ECONNREFUSED"
      ? "connection refused (is mysqld running?)"
      : code === "ENOENT"
      ? "socket does not exist (is mysqld running?)"
      : `${code}: ${err?.message ?? String(e)}`;
    return new MysqlUnavailableError(where, code, detail);
  }
  if (typeof err?.errno === "number" && err.sqlMessage !== undefined) {
    return new MysqlQueryError(where, code, err.errno, `${err.sqlMessage} (error ${err.errno}, ${code})`);
  }
  // Anything else (a timeout of our own, a protocol error): keep mysql2's message, never its `sql` field.
  return new MysqlUnavailableError(where, code, err?.message ?? String(e));
}
