/**
 * An errant node (transactions the primary lacks): what is done with its extra transactions, and how.
 *
 * - SEMI_SYNC on, MariaDB, and a commit still waiting for its acknowledgement (a cut old primary: its mysqld
 *   lives, its commit waits for ever since rpl_semi_sync_master_timeout is as long as the server allows): the
 *   tail was never acknowledged to anyone. mysqld is killed (SIGKILL) and restarted (by ContainerPilot's
 *   `mysql` job, restarts: unlimited); it starts in the replica role (`init_rpl_role = SLAVE`, src/mysql/mycnf.ts),
 *   so crash recovery rolls back every transaction whose engine commit had not happened and cuts it from the
 *   binlog (MariaDB 10.6.19/10.11.9+, MDEV-33465; the error log says "Successfully truncated binlog file").
 *   Safety: with AFTER_SYNC the engine commit, and so the client's OK, comes only after a replica's ack, so
 *   what recovery cuts was told to nobody; what had committed stays, and if that is still errant the node is
 *   saved and rebuilt below. A clean SHUTDOWN would not do: it lets the waiting commit finish (measured on
 *   10.11.19, with innodb_fast_shutdown=3 too). The node is read-only and not primary (follow() only runs
 *   then), so the kill loses nothing durable (sync_binlog=1, innodb_flush_log_at_trx_commit=1). After the
 *   restart nothing waits (semi-sync is switched on at run time on a primary only), so it is never repeated.
 * - Otherwise (no semi-sync, MySQL, or nothing waiting) the extra transactions may have been acknowledged:
 *   they are saved to the snapshot store, as binlog events and as readable SQL (src/backup/manifest.ts names
 *   them), before REBUILD_ERRANT_NODE rebuilds the node. A save that fails stops the rebuild. MySQL 8.4 has no
 *   truncating recovery: its manual ("Semisynchronous Replication") says a failed source should be discarded,
 *   as it may hold transactions no replica acknowledged, so there a semi-sync tail is saved and rebuilt too.
 *
 * The tools: MariaDB's `mariadb-binlog` (`--start-position`/`--stop-position` as GTID lists, exclusive and
 * inclusive, `--do-domain-ids`, `--do-server-ids`); MySQL 8.4's `mysqlbinlog` (`--include-gtids`); both
 * `--base64-output=decode-rows --verbose` for the readable form.
 *
 * @module
 */
import type { Config } from "./config.ts";
import { type ErrantKeys, errantKeys } from "./backup/manifest.ts";
import { run } from "./exec.ts";
import type { Flavour } from "./mysql/flavour.ts";
import { MariadbGtidSet, subtractGtids } from "./mysql/gtid.ts";
import { MysqlClient } from "./mysql/client.ts";
import { pidFilePath } from "./mysql/mycnf.ts";
import { localTarget } from "./mysql/server.ts";
import { openStore } from "./storage/open.ts";
import { putMetrics } from "./metrics.ts";
import { delay } from "./abort.ts";

/** What is done with an errant node's extra transactions. */
export type ErrantPlan =
  | { readonly kind: "discard-tail"; readonly reason: string }
  | { readonly kind: "save"; readonly rebuild: boolean }
  | { readonly kind: "saved"; readonly rebuild: boolean };

/**
 * Decides what is done with an errant node's extra transactions (see the module's description).
 *
 * @param f.waitingForAck Commits waiting for a semi-sync acknowledgement on this server now
 *   (Rpl_semi_sync_master_wait_sessions), 0 when unknown.
 * @param f.savedGtids The extra GTIDs this node saved last (its state file), if any.
 */
export function planErrant(f: {
  readonly flavour: Flavour;
  readonly semiSync: boolean;
  readonly waitingForAck: number;
  readonly rebuild: boolean;
  readonly extra: string;
  readonly savedGtids?: string;
}): ErrantPlan {
  if (f.flavour === "mariadb" && f.semiSync && f.waitingForAck > 0) {
    return {
      kind: "discard-tail",
      reason: `${f.waitingForAck} commit${f.waitingForAck === 1 ? "" : "s"} still wait for a semi-sync ` +
        "acknowledgement: the tail was never acknowledged",
    };
  }
  if (f.savedGtids === f.extra) return { kind: "saved", rebuild: f.rebuild };
  return { kind: "save", rebuild: f.rebuild };
}

/**
 * Whether a node about to be fenced should first look for a semi-sync tail to discard by a crash restart: SEMI_SYNC
 * on, MariaDB (MySQL 8.4 has no truncating recovery), and another node, under another session, holds the primary
 * lock (this node will follow it; a node that may still resume as primary is never truncated).
 */
export function tailDiscardApplies(f: {
  readonly flavour: Flavour;
  readonly semiSync: boolean;
  readonly self: string;
  readonly session?: string;
  readonly lock?: { readonly session?: string; readonly record?: { readonly node: string } };
}): boolean {
  const lock = f.lock;
  return f.semiSync && f.flavour === "mariadb" && lock?.session !== undefined && lock.session !== f.session &&
    lock.record !== undefined && lock.record.node !== f.self;
}

/** The binlog reader of a flavour. */
export function binlogTool(flavour: Flavour): string {
  return flavour === "mariadb" ? "/usr/bin/mariadb-binlog" : "/usr/bin/mysqlbinlog";
}

/** The two forms a save writes. */
export type ErrantForm = "events" | "readable";

/**
 * The command lines that print exactly the extra transactions (`mine` - `theirs`) from this server's binlog
 * files, in one form; their outputs, concatenated, are the save.
 *
 * MariaDB: one run per (domain, server_id) with extras, `--do-domain-ids`, `--do-server-ids` and the GTID
 * range from what the primary has of that server (`--start-position`, exclusive) to this node's last
 * (`--stop-position`, inclusive). MySQL: `--include-gtids` with the extra set.
 *
 * @param files The binlog files, absolute paths, oldest first.
 */
export function errantBinlogCommands(
  flavour: Flavour,
  mine: string,
  theirs: string,
  files: readonly string[],
  form: ErrantForm,
): string[][] {
  const decode = form === "readable" ? ["--base64-output=decode-rows", "--verbose"] : [];
  const tool = binlogTool(flavour);
  if (flavour === "mysql") {
    const extra = subtractGtids("mysql", mine, theirs).toString();
    return extra === "" ? [] : [[
      tool,
      "--no-defaults",
      `--include-gtids=${extra}`,
      ...decode,
      ...files,
    ]];
  }
  const have = new Map(
    MariadbGtidSet.parse(theirs).entries().map((g) => [`${g.domain}-${g.serverId}`, g.seqNo]),
  );
  return (subtractGtids("mariadb", mine, theirs) as MariadbGtidSet).entries().map((g) => {
    const from = have.get(`${g.domain}-${g.serverId}`);
    return [
      tool,
      "--no-defaults",
      `--do-domain-ids=${g.domain}`,
      `--do-server-ids=${g.serverId}`,
      ...(from === undefined ? [] : [`--start-position=${g.domain}-${g.serverId}-${from}`]),
      `--stop-position=${g.domain}-${g.serverId}-${g.seqNo}`,
      ...decode,
      ...files,
    ];
  });
}

/**
 * Whether the readable output holds every extra transaction's last GTID (a binlog purged meanwhile would not):
 * MariaDB prints `GTID d-s-n` in each transaction's header. MySQL: `GTID_NEXT= 'uuid:n'` at least once.
 *
 * @returns The GTIDs missing from the output; empty when all are there.
 */
export function missingFromOutput(
  flavour: Flavour,
  mine: string,
  theirs: string,
  readable: string,
): string[] {
  if (flavour === "mysql") {
    return readable.includes("GTID_NEXT=") ? [] : [subtractGtids("mysql", mine, theirs).toString()];
  }
  return (subtractGtids("mariadb", mine, theirs) as MariadbGtidSet).entries()
    .map((g) => `${g.domain}-${g.serverId}-${g.seqNo}`)
    .filter((gtid) => !new RegExp(`\\bGTID ${gtid}\\b`).test(readable));
}

/** What a save wrote. */
export interface SavedErrant {
  readonly keys: ErrantKeys;
  /** The store's location, for messages. */
  readonly location: string;
}

/**
 * Saves the extra transactions (`mine` - `theirs`) from the local server's binlog files to the snapshot store,
 * both forms and a `.json` that says what they are. Throws (one line) when anything fails: the caller must then
 * not rebuild.
 */
export async function saveErrantTransactions(
  config: Config,
  flavour: Flavour,
  a: { readonly mine: string; readonly theirs: string; readonly primary: string; readonly now?: Date },
): Promise<SavedErrant> {
  const extra = subtractGtids(flavour, a.mine, a.theirs).toString();
  const files = await binlogFiles(config, flavour);
  const print = async (form: ErrantForm) => {
    let out = "";
    for (const argv of errantBinlogCommands(flavour, a.mine, a.theirs, files, form)) {
      out += (await run(argv, { signal: AbortSignal.timeout(60_000) })).stdout;
    }
    return out;
  };
  const events = await print("events");
  const readable = await print("readable");
  const missing = missingFromOutput(flavour, a.mine, a.theirs, readable);
  if (missing.length > 0) {
    throw new Error(`the binlog files no longer hold ${missing.join(",")} (purged?)`);
  }
  const at = a.now ?? new Date();
  const keys = errantKeys(config.node.name, at, extra);
  const store = await openStore(config);
  const info = {
    node: config.node.name,
    savedAt: at.toISOString(),
    flavour,
    gtids: extra,
    thisNodeExecuted: a.mine,
    primary: a.primary,
    primaryExecuted: a.theirs,
    events: keys.events,
    readable: keys.readable,
    note: "Transactions this node had and the primary lacked, saved before the node was rebuilt; nothing " +
      "was merged. The events keep their original GTIDs (SET @@session.gtid_seq_no / server_id lines): on a " +
      "primary that has moved past them gtid_strict_mode refuses them as they are, so strip those lines " +
      "before replaying what you want with the mysql client, or re-apply it from the readable form.",
  };
  const body = (text: string) => new Blob([text]).stream();
  await store.put(keys.events, body(events));
  await store.put(keys.readable, body(readable));
  await store.put(keys.info, body(JSON.stringify(info, null, 2) + "\n"));
  await putMetrics({ errant_transactions_saved_total: 1 });
  return { keys, location: store.location };
}

/** The local server's binlog files, absolute paths, oldest first. */
async function binlogFiles(config: Config, flavour: Flavour): Promise<string[]> {
  await using db = await MysqlClient.connect(localTarget(config, flavour));
  const [base] = await db.query("SELECT @@GLOBAL.log_bin_basename AS base");
  const dir = String(base?.base ?? "").replace(/\/[^/]*$/, "") || config.mysql.datadir;
  const logs = await db.query("SHOW BINARY LOGS");
  return logs.map((r) => String(r.Log_name)).map((name) => name.startsWith("/") ? name : `${dir}/${name}`);
}

/** Commits waiting for a semi-sync acknowledgement on the local server now (MariaDB); 0 when unknown. */
export async function commitsWaitingForAck(config: Config, flavour: Flavour): Promise<number> {
  if (flavour !== "mariadb") return 0;
  try {
    await using db = await MysqlClient.connect(localTarget(config, flavour));
    const [row] = await db.query("SHOW GLOBAL STATUS LIKE 'Rpl_semi_sync_master_wait_sessions'");
    return Number(row?.Value ?? 0) || 0;
  } catch {
    return 0;
  }
}

/** The program that sends mysqld SIGKILL (Deno.kill would need every program allowed). */
export const KILL_PROGRAM = "/usr/bin/kill";

/**
 * Kills the local mysqld (SIGKILL) so that its crash recovery discards the unacknowledged tail, and waits until
 * it is gone (its socket refuses connections). The pid is the one in its pid file, which mysqld rewrites at each
 * start: call this only right after the server answered on its socket, so the file is the running server's.
 *
 * @throws {Error} one line, when the pid file holds no pid, or mysqld still answers 10 s after SIGKILL.
 */
export async function killLocalServer(config: Config): Promise<number> {
  const file = pidFilePath(config.mysql.socket);
  const pid = Number((await Deno.readTextFile(file)).trim());
  if (!Number.isInteger(pid) || pid <= 1) throw new Error(`${file} holds no pid`);
  await run([KILL_PROGRAM, "-KILL", String(pid)]);
  for (let i = 0; i < 100; i++) {
    const answers = await Deno.connect({ transport: "unix", path: config.mysql.socket }).then(
      (conn) => (conn.close(), true),
      () => false,
    );
    if (!answers) return pid;
    await delay(100);
  }
  throw new Error(`mysqld (pid ${pid}) still answers 10 s after SIGKILL`);
}
