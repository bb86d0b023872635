/**
 * Replaying archived binlogs after a snapshot, two ways, on real MariaDB (measured for the issue "measure plain
 * replay against faster methods, such as feeding them as relay logs"):
 * - `plain`: what src/binlog/replay.ts does, `mariadb-binlog --start-position=<applied> [--stop-position=<target>]
 *   FILE | mariadb --binary-mode` per file;
 * - `relay`: the binlogs copied into the throwaway server's datadir as `relay-bin.000001`… with `relay-bin.index`,
 *   `CHANGE MASTER TO … RELAY_LOG_FILE='relay-bin.000001', RELAY_LOG_POS=<the snapshot's offset>`, `START SLAVE
 *   SQL_THREAD [UNTIL RELAY_LOG_FILE=…, RELAY_LOG_POS=<end of the target transaction>]`, waited for with
 *   MASTER_GTID_WAIT (log_slave_updates=ON, so that the replayed transactions land in the server's own binlog);
 * - `relay-par-opt`, `relay-par-cons`: the same with slave_parallel_threads=4 and slave_parallel_mode optimistic or
 *   conservative.
 *
 * A source mariadbd gets a table of ~1 KB rows with a secondary index, a mariabackup snapshot is taken in the
 * middle of a binlog file, then `--mib` MiB of ROW binlog are written after it (1000-row INSERT … SELECT
 * transactions, single-row and 200-row UPDATEs). Every trial restores the same prepared snapshot afresh (a copy)
 * and opens it with the cnf of `scratchServerCnf(…, {replay: true})` (innodb_flush_log_at_trx_commit and
 * sync_binlog at their defaults, 1 and 0), plus the relay-log settings for the relay methods. Each run's rows
 * (CHECKSUM TABLE), `@@gtid_binlog_state` and `@@gtid_slave_pos` are compared with plain replay's and the
 * source's; a stop at a GTID in the middle is checked per method; probes show what MariaDB 10.11 refuses or does
 * otherwise (UNTIL MASTER_GTID_POS for the SQL thread, MASTER_USE_GTID with relay logs, a start before the
 * snapshot's offset, the source's server_id equal to the throwaway server's).
 *
 * Run: `deno run -A bench/replay_methods_bench.ts [--mib=100] [--trials=3]
 * [--methods=plain,relay,relay-par-opt,relay-par-cons] [--no-probes]`. Needs root (mariadbd runs as root),
 * mariadbd, mariabackup, mbstream, mariadb-binlog and mariadb on PATH. Works in a temp dir under /tmp (sockets
 * only, no TCP), stops every server it started by pid, removes the dir. Prints tables; exits 1 when a check fails.
 *
 * @module
 */
// deno-lint-ignore-file no-console
import { parseArgs } from "node:util";
import { scratchServerCnf } from "../src/backup/verify.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    mib: { type: "string", default: "100" },
    trials: { type: "string", default: "3" },
    methods: { type: "string", default: "plain,relay,relay-par-opt,relay-par-cons" },
    "no-probes": { type: "boolean", default: false },
    "wait-seconds": { type: "string", default: "1800" },
  },
});
const MIB = Number(values.mib);
const TRIALS = Number(values.trials);
const METHODS = values.methods.split(",").filter((m) => m !== "");
const WAIT_S = Number(values["wait-seconds"]);
const KNOWN = ["plain", "relay", "relay-par-opt", "relay-par-cons"];
for (const m of METHODS) if (!KNOWN.includes(m)) throw new Error(`unknown method ${m}; known: ${KNOWN}`);
if (!METHODS.includes("plain")) METHODS.unshift("plain"); // the reference for the checks and the ratios

const SOURCE_ID = 7; // the throwaway server's is 1 (scratchServerCnf)
const dec = new TextDecoder();
const enc = new TextEncoder();
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

// ---- processes -------------------------------------------------------------------------------------------

async function run(argv: string[], stdin?: string): Promise<string> {
  const child = new Deno.Command(argv[0], {
    args: argv.slice(1),
    stdin: stdin === undefined ? "null" : "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  if (stdin !== undefined) {
    const w = child.stdin.getWriter();
    await w.write(enc.encode(stdin));
    await w.close();
  }
  const out = await child.output();
  if (!out.success) {
    throw new Error(
      `${argv.join(" ").slice(0, 200)}: exit ${out.code}: ${dec.decode(out.stderr).slice(-800)}`,
    );
  }
  return dec.decode(out.stdout);
}

/** A bash pipeline (`set -o pipefail`), arguments as $1…. */
const sh = (script: string, ...argv: string[]) =>
  run(["bash", "-c", `set -euo pipefail; ${script}`, "bash", ...argv]);

class Server {
  static readonly live = new Set<Server>();
  readonly dir: string;
  readonly sock: string;
  #child: Deno.ChildProcess | undefined;
  #exited: Promise<Deno.CommandStatus> | undefined;

  constructor(dir: string) {
    this.dir = dir;
    this.sock = `${dir}/mysqld.sock`;
  }

  async start(): Promise<void> {
    this.#child = new Deno.Command("mariadbd", {
      args: [`--defaults-file=${this.dir}/my.cnf`],
      stdin: "null",
      stdout: "null",
      stderr: "null",
    }).spawn();
    this.#exited = this.#child.status;
    Server.live.add(this);
    let gone = false;
    this.#exited.then(() => gone = true);
    for (let i = 0; i < 1200; i++) {
      if (gone) break;
      const ok = await new Deno.Command("mariadb-admin", {
        args: ["--no-defaults", `--socket=${this.sock}`, "--user=root", "ping"],
        stdout: "null",
        stderr: "null",
      }).output();
      if (ok.success) return;
      await sleep(100);
    }
    const err = await Deno.readTextFile(`${this.dir}/error.log`).catch(() => "");
    await this.stop();
    throw new Error(`mariadbd in ${this.dir} did not open: ${err.slice(-1500)}`);
  }

  /** SIGTERM by pid, waits; SIGKILL after 120 s. */
  async stop(): Promise<void> {
    if (this.#child === undefined) return;
    const child = this.#child;
    this.#child = undefined;
    try {
      child.kill("SIGTERM");
    } catch { /* gone already */ }
    const t = setTimeout(() => {
      try {
        child.kill("SIGKILL");
      } catch { /* gone */ }
    }, 120_000);
    await this.#exited;
    clearTimeout(t);
    Server.live.delete(this);
  }

  /** Rows of tab-separated columns. */
  async sql(stmt: string): Promise<string[][]> {
    const out = await run([
      "mariadb",
      "--no-defaults",
      `--socket=${this.sock}`,
      "--user=root",
      "-N",
      "-B",
      "-e",
      stmt,
    ]);
    return out.split("\n").filter((l) => l !== "").map((l) => l.split("\t"));
  }

  async one(stmt: string): Promise<string> {
    return (await this.sql(stmt))[0]?.[0] ?? "";
  }

  /** SHOW SLAVE STATUS as name → value. */
  async slaveStatus(): Promise<Record<string, string>> {
    const out = await run([
      "mariadb",
      "--no-defaults",
      `--socket=${this.sock}`,
      "--user=root",
      "-B",
      "-e",
      "SHOW SLAVE STATUS",
    ]);
    const [head, row] = out.split("\n");
    if (!row) return {};
    const names = head.split("\t");
    const vals = row.split("\t");
    return Object.fromEntries(names.map((n, i) => [n, vals[i] ?? ""]));
  }
}

// ---- setup: source, snapshot, binlogs ----------------------------------------------------------------------

const base = await Deno.makeTempDir({ dir: "/tmp", prefix: "replay-methods-" });
let cleaning = false;
async function cleanup() {
  if (cleaning) return;
  cleaning = true;
  await Promise.all([...Server.live].map((s) => s.stop()));
  await Deno.remove(base, { recursive: true }).catch(() => {});
}
const onSignal = () => {
  console.error("interrupted: stopping the servers, removing", base);
  cleanup().finally(() => Deno.exit(130));
};
Deno.addSignalListener("SIGINT", onSignal);
Deno.addSignalListener("SIGTERM", onSignal);

interface Txn {
  gtid: string;
  file: number; // index into the replayed files
  start: number;
  end: number;
}

interface Setup {
  prepared: string;
  snapGtid: string;
  snapFile: string;
  snapPos: number;
  files: string[]; // copies of the source's binlogs, snapshot's file first
  txns: Txn[]; // after the snapshot
  bytes: number; // binlog bytes after the snapshot's position
  sourceChecksum: string;
  sourceRows: string;
  sourceState: string;
}

function sourceCnf(dir: string): string {
  return [
    "[mysqld]",
    "user = root",
    `datadir = ${dir}/data`,
    `tmpdir = ${dir}/tmp`,
    `socket = ${dir}/mysqld.sock`,
    `pid-file = ${dir}/mysqld.pid`,
    `log-error = ${dir}/error.log`,
    "skip-networking",
    "skip-name-resolve",
    `server_id = ${SOURCE_ID}`,
    `log-bin = ${dir}/data/mysql-bin`,
    "binlog_format = ROW",
    "gtid_strict_mode = ON",
    "max_binlog_size = 32M",
    "innodb_buffer_pool_size = 256M",
    "innodb_log_file_size = 256M",
    "innodb_flush_log_at_trx_commit = 2", // the source's speed does not matter here
    "performance_schema = OFF",
    "[client]",
    `socket = ${dir}/mysqld.sock`,
    "",
  ].join("\n");
}

/** `n` 1000-row INSERT … SELECT transactions from id `from`, each followed by 3 single-row UPDATEs, every 4th by a 200-row one. */
function writes(from: number, n: number): string {
  const out = ["USE app;"];
  for (let i = 0; i < n; i++) {
    const lo = from + i * 1000;
    out.push(
      `INSERT INTO t SELECT seq, seq % 997, REPEAT(MD5(seq), 30) FROM seq_${lo}_to_${lo + 999};`,
    );
    for (let j = 0; j < 3; j++) {
      out.push(`UPDATE t SET k = k + 1, pad = REVERSE(pad) WHERE id = ${lo + j * 7};`);
    }
    if (i % 4 === 3) out.push(`UPDATE t SET k = k + 1 WHERE id BETWEEN ${lo - 3000} AND ${lo - 2801};`);
  }
  return out.join("\n");
}

async function binlogBytes(src: Server): Promise<Map<string, number>> {
  return new Map((await src.sql("SHOW BINARY LOGS")).map(([f, n]) => [f, Number(n)]));
}

async function setup(): Promise<Setup> {
  const dir = `${base}/source`;
  await Deno.mkdir(`${dir}/tmp`, { recursive: true });
  await Deno.writeTextFile(`${dir}/my.cnf`, sourceCnf(dir));
  await run([
    "mariadb-install-db",
    `--defaults-file=${dir}/my.cnf`,
    "--auth-root-authentication-method=normal",
    "--skip-test-db",
  ]);
  const src = new Server(dir);
  await src.start();
  await src.sql(
    "CREATE DATABASE app; CREATE TABLE app.t (id BIGINT PRIMARY KEY, k INT NOT NULL, pad VARCHAR(1000) NOT NULL, " +
      "KEY (k)) ENGINE=InnoDB",
  );
  // 20 MiB of rows before the snapshot, then a few transactions in the same binlog file just before it
  await run(["mariadb", "--no-defaults", `--socket=${src.sock}`, "--user=root"], writes(1, 20));
  await run(["mariadb", "--no-defaults", `--socket=${src.sock}`, "--user=root"], writes(20_001, 3));
  const snapXb = `${base}/snap.xb`;
  await sh(
    `mariabackup --defaults-file="$1/my.cnf" --backup --stream=xbstream --user=root --socket="$1/mysqld.sock" ` +
      `2>"$2.log" >"$2"`,
    dir,
    snapXb,
  );
  const prepared = `${base}/prepared`;
  await Deno.mkdir(prepared);
  await sh(
    `mbstream -x -C "$1" <"$2" && mariabackup --prepare --target-dir="$1" >"$1.log" 2>&1`,
    prepared,
    snapXb,
  );
  await Deno.remove(snapXb);
  const [snapFile, snapPosText, snapGtid] = (await Deno.readTextFile(`${prepared}/xtrabackup_binlog_info`))
    .trim().split("\t");
  const snapPos = Number(snapPosText);
  // after the snapshot: --mib MiB of binlog, written 10 MiB at a time
  let next = 23_001;
  const after = async () => {
    let n = 0;
    for (const [f, b] of await binlogBytes(src)) if (f >= snapFile) n += f === snapFile ? b - snapPos : b;
    return n;
  };
  while (await after() < MIB * 1024 * 1024) {
    const left = MIB * 1024 * 1024 - await after();
    const n = Math.max(1, Math.min(10, Math.ceil(left / (1.1 * 1024 * 1024))));
    await run(["mariadb", "--no-defaults", `--socket=${src.sock}`, "--user=root"], writes(next, n));
    next += n * 1000;
  }
  await src.sql("FLUSH BINARY LOGS");
  const names = [...(await binlogBytes(src)).keys()].filter((f) => f >= snapFile).slice(0, -1); // closed ones
  const files: string[] = [];
  const txns: Txn[] = [];
  for (const [i, name] of names.entries()) {
    const copy = `${base}/binlogs/${name}`;
    await Deno.mkdir(`${base}/binlogs`, { recursive: true });
    await Deno.copyFile(`${dir}/data/${name}`, copy);
    files.push(copy);
    let cur: Txn | undefined;
    for (const [, pos, type, , end, info] of await src.sql(`SHOW BINLOG EVENTS IN '${name}'`)) {
      if (type === "Gtid") {
        const gtid = /GTID (\d+-\d+-\d+)/.exec(info)![1];
        cur = { gtid, file: i, start: Number(pos), end: Number(end) };
        if (i > 0 || Number(pos) >= snapPos) txns.push(cur);
      } else if (cur && !["Rotate", "Stop", "Binlog_checkpoint", "Gtid_list", "Format_desc"].includes(type)) {
        cur.end = Number(end);
      }
    }
  }
  const bytes = (await Promise.all(files.map((f) => Deno.stat(f)))).reduce((n, s) => n + s.size, 0) - snapPos;
  const sourceChecksum = (await src.sql("CHECKSUM TABLE app.t"))[0][1];
  const sourceRows = await src.one("SELECT COUNT(*) FROM app.t");
  const sourceState = await src.one("SELECT @@gtid_binlog_state");
  await src.stop();
  await Deno.remove(`${dir}/data`, { recursive: true });
  return {
    prepared,
    snapGtid,
    snapFile,
    snapPos,
    files,
    txns,
    bytes,
    sourceChecksum,
    sourceRows,
    sourceState,
  };
}

// ---- one replay --------------------------------------------------------------------------------------------

interface Target {
  txn: Txn; // the last transaction to apply
  whole: boolean; // the end of the archive
}

interface Outcome {
  ms: number;
  copyMs: number;
  checksum: string;
  rows: string;
  binlogState: string;
  slavePos: string;
  error: string;
  ownBinlogBytes: number;
}

let trialNo = 0;

/** A fresh restore of the snapshot (a copy of the prepared dir) with the scratch cnf plus `extra`. */
async function scratch(s: Setup, extra: string[]): Promise<{ dir: string; data: string; server: Server }> {
  const dir = `${base}/trial-${++trialNo}`;
  const data = `${dir}/data`;
  await Deno.mkdir(`${dir}/tmp`, { recursive: true });
  await run(["cp", "-a", s.prepared, data]);
  await Deno.writeTextFile(
    `${dir}/my.cnf`,
    scratchServerCnf("mariadb", dir, "root", { datadir: data, replay: true }) + extra.join("\n") + "\n",
  );
  return { dir, data, server: new Server(dir) };
}

/** The snapshot's binlog state, as restoreToPoint sets it (ServerOperator.startReplicationAfter). */
async function setSnapshotState(server: Server, s: Setup): Promise<void> {
  await server.sql(
    `RESET MASTER; SET GLOBAL gtid_binlog_state = '${s.snapGtid}'; SET GLOBAL gtid_slave_pos = '${s.snapGtid}'`,
  );
}

async function outcome(server: Server, ms: number, copyMs: number, error: string): Promise<Outcome> {
  const checksum = (await server.sql("CHECKSUM TABLE app.t"))[0][1];
  const rows = await server.one("SELECT COUNT(*) FROM app.t");
  const binlogState = await server.one("SELECT @@gtid_binlog_state");
  const slavePos = await server.one("SELECT @@gtid_slave_pos");
  const own = (await server.sql("SHOW BINARY LOGS")).reduce((n, r) => n + Number(r[1]), 0);
  return { ms, copyMs, checksum, rows, binlogState, slavePos, error, ownBinlogBytes: own };
}

async function plain(s: Setup, target: Target): Promise<Outcome> {
  const { dir, server } = await scratch(s, []);
  try {
    await server.start();
    await setSnapshotState(server, s);
    const t0 = performance.now();
    let applied = s.snapGtid;
    let error = "";
    for (const [i, file] of s.files.entries()) {
      if (i > target.txn.file) break;
      const stop = target.whole ? [] : [`--stop-position=${target.txn.gtid}`];
      try {
        await sh(
          `mariadb-binlog "$@" | mariadb --no-defaults --socket="${server.sock}" --user=root --binary-mode`,
          `--start-position=${applied}`,
          ...stop,
          file,
        );
      } catch (e) {
        error = String(e).slice(0, 300);
        break;
      }
      applied = await server.one("SELECT @@gtid_binlog_pos");
    }
    const ms = performance.now() - t0;
    return await outcome(server, ms, 0, error);
  } finally {
    await server.stop();
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}

interface RelayOpts {
  parallel?: "optimistic" | "conservative";
  /** RELAY_LOG_POS of the first relay log; default the snapshot's offset. */
  startPos?: number;
  serverId?: number;
  logSlaveUpdates?: boolean;
  /** MASTER_LOG_FILE/POS beside RELAY_LOG_FILE/POS. @default true */
  masterLog?: boolean;
}

/** Copies the binlogs in as relay logs. */
async function relayFiles(s: Setup, data: string, upTo: number): Promise<number> {
  const t0 = performance.now();
  const index: string[] = [];
  for (const [i, file] of s.files.entries()) {
    if (i > upTo) break;
    const name = `relay-bin.${String(i + 1).padStart(6, "0")}`;
    await Deno.copyFile(file, `${data}/${name}`);
    index.push(`./${name}`);
  }
  await Deno.writeTextFile(`${data}/relay-bin.index`, index.join("\n") + "\n");
  return performance.now() - t0;
}

function relayCnf(o: RelayOpts): string[] {
  return [
    "relay_log = relay-bin",
    "relay_log_recovery = OFF",
    `log_slave_updates = ${o.logSlaveUpdates === false ? "OFF" : "ON"}`,
    ...(o.serverId !== undefined ? [`server_id = ${o.serverId}`] : []),
    ...(o.parallel ? ["slave_parallel_threads = 4", `slave_parallel_mode = ${o.parallel}`] : []),
  ];
}

async function relay(s: Setup, target: Target, o: RelayOpts = {}): Promise<Outcome> {
  const { dir, data, server } = await scratch(s, relayCnf(o));
  try {
    const copyMs = await relayFiles(s, data, target.txn.file);
    await server.start();
    await setSnapshotState(server, s);
    const t0 = performance.now();
    await server.sql(
      `CHANGE MASTER TO MASTER_HOST = '127.0.0.1', MASTER_PORT = 24099, ` +
        `RELAY_LOG_FILE = 'relay-bin.000001', RELAY_LOG_POS = ${o.startPos ?? s.snapPos}` +
        // the binlogs have no Rotate event naming the source's file, as a relay log written by an IO thread does:
        // without a master log name the parallel workers crash mariadbd 10.11.19 (SIGSEGV in compare_log_name)
        (o.masterLog === false ? "" : `, MASTER_LOG_FILE = '${s.snapFile}', MASTER_LOG_POS = ${s.snapPos}`),
    );
    const until = target.whole
      ? ""
      : ` UNTIL RELAY_LOG_FILE = 'relay-bin.${
        String(target.txn.file + 1).padStart(6, "0")
      }', RELAY_LOG_POS = ${target.txn.end}`;
    await server.sql(`START SLAVE SQL_THREAD${until}`);
    let error = "";
    const deadline = performance.now() + WAIT_S * 1000;
    for (;;) {
      if (await server.one(`SELECT MASTER_GTID_WAIT('${target.txn.gtid}', 1)`) === "0") break;
      const st = await server.slaveStatus();
      if (st.Slave_SQL_Running !== "Yes") {
        error = st.Last_SQL_Error ||
          `SQL thread stopped at ${st.Relay_Log_File}:${st.Relay_Log_Pos}, no error`;
        break;
      }
      if (performance.now() > deadline) {
        error = "timeout";
        break;
      }
    }
    const ms = performance.now() - t0;
    if (!target.whole && error === "") {
      // UNTIL: the SQL thread stops by itself right after the target; wait for it, then check nothing went past
      for (let i = 0; i < 100 && (await server.slaveStatus()).Slave_SQL_Running === "Yes"; i++) {
        await sleep(100);
      }
    }
    await server.sql("STOP SLAVE");
    return await outcome(server, ms, copyMs, error);
  } catch (e) {
    const log = await Deno.readTextFile(`${dir}/error.log`).catch(() => "");
    throw new Error(`${e}\nerror.log: ${log.slice(-3000)}`);
  } finally {
    await server.stop();
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}

function runMethod(m: string, s: Setup, target: Target): Promise<Outcome> {
  switch (m) {
    case "plain":
      return plain(s, target);
    case "relay":
      return relay(s, target);
    case "relay-par-opt":
      return relay(s, target, { parallel: "optimistic" });
    default:
      return relay(s, target, { parallel: "conservative" });
  }
}

// ---- probes: what MariaDB 10.11 refuses or does otherwise --------------------------------------------------

async function probe(
  s: Setup,
  what: string,
  extra: string[],
  statements: string[],
  upTo: number,
): Promise<string> {
  const { dir, data, server } = await scratch(s, extra);
  try {
    await relayFiles(s, data, upTo);
    await server.start();
    await setSnapshotState(server, s);
    const out: string[] = [];
    for (const stmt of statements) {
      try {
        if (stmt.startsWith("WAIT ")) {
          const [, gtid, secs] = stmt.split(" ");
          const r = await server.one(`SELECT MASTER_GTID_WAIT('${gtid}', ${secs})`);
          const st = await server.slaveStatus();
          out.push(
            `wait ${gtid}: ${r === "0" ? "reached" : "not reached"}; SQL thread ${st.Slave_SQL_Running}` +
              (st.Last_SQL_Error ? `, error: ${st.Last_SQL_Error.slice(0, 160)}` : ""),
          );
        } else {
          await server.sql(stmt);
          out.push(`ok: ${stmt.slice(0, 90)}`);
        }
      } catch (e) {
        out.push(
          `REFUSED: ${stmt.slice(0, 90)}: ${
            String(e).split("\n").filter((l) => l.startsWith("ERROR")).join(" ")
          }`,
        );
      }
    }
    const relayLeft = [...Deno.readDirSync(data)].filter((e) => /^relay-bin\.\d+$/.test(e.name));
    const sizes = await Promise.all(relayLeft.map((e) => Deno.stat(`${data}/${e.name}`).then((x) => x.size)));
    try {
      const o = await outcome(server, 0, 0, "");
      out.push(
        `relay logs left: ${relayLeft.length} (${
          (sizes.reduce((a, b) => a + b, 0) / 1048576).toFixed(1)
        } MiB); ` +
          `rows ${o.rows}; gtid_slave_pos ${o.slavePos}; gtid_binlog_state ${o.binlogState}`,
      );
    } catch {
      const log = await Deno.readTextFile(`${dir}/error.log`).catch(() => "");
      const crash = log.split("\n").filter((l) => /got signal|compare_log_name|ERROR/.test(l)).slice(0, 3);
      out.push(`the server is gone: ${crash.join(" | ") || log.slice(-300)}`);
    }
    await server.sql("STOP SLAVE").catch(() => {});
    return `${what}\n  ${out.join("\n  ")}`;
  } finally {
    await server.stop();
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}

// ---- main --------------------------------------------------------------------------------------------------

let failed = false;
try {
  const t0 = performance.now();
  const s = await setup();
  const last = s.txns[s.txns.length - 1];
  const midT = s.txns.find((t) => t.file === Math.floor(s.files.length / 2) && t.end - t.start > 500_000) ??
    s.txns[Math.floor(s.txns.length / 2)];
  console.log(
    `MariaDB ${(await run(["mariadbd", "--version"])).trim()}\n` +
      `source: ${s.sourceRows} rows, ${s.txns.length} transactions after the snapshot ` +
      `(${s.snapGtid} at ${s.snapFile}:${s.snapPos}), ${(s.bytes / 1048576).toFixed(1)} MiB of binlog in ` +
      `${s.files.length} files (the first starts before the snapshot); set up in ${
        ((performance.now() - t0) / 1000).toFixed(0)
      } s\nthrowaway server: scratchServerCnf(replay) (innodb_flush_log_at_trx_commit=1, sync_binlog=0, ` +
      `buffer pool 64M), server_id 1; the source's is ${SOURCE_ID}\n`,
  );
  const whole: Target = { txn: last, whole: true };
  const results = new Map<string, Outcome[]>(METHODS.map((m) => [m, []]));
  for (let t = 1; t <= TRIALS; t++) {
    for (const m of METHODS) {
      const o = await runMethod(m, s, whole);
      results.get(m)!.push(o);
      console.log(
        `trial ${t} ${m}: ${(o.ms / 1000).toFixed(2)} s${
          o.copyMs ? ` (+ ${(o.copyMs / 1000).toFixed(2)} s copying)` : ""
        }` +
          `${o.error ? ` ERROR ${o.error}` : ""}`,
      );
    }
  }
  const mb = s.bytes / 1048576;
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
  const plainMed = median(results.get("plain")!.map((o) => o.ms));
  console.log(`\n${mb.toFixed(1)} MiB of binlog, ${TRIALS} trial(s) each, median (min-max)`);
  console.log("| method | seconds | MiB/s | ratio to plain (time) |\n|---|---|---|---|");
  for (const [m, os] of results) {
    const ms = os.map((o) => o.ms);
    const med = median(ms);
    console.log(
      `| ${m} | ${(med / 1000).toFixed(2)} (${(Math.min(...ms) / 1000).toFixed(2)}-${
        (Math.max(...ms) / 1000).toFixed(2)
      }) | ${(mb / (med / 1000)).toFixed(2)} | ${(med / plainMed).toFixed(2)} |`,
    );
  }

  // correctness: every run against the source (whole archive) and plain replay
  console.log("\ncorrectness, whole archive (target " + last.gtid + "):");
  const check = (
    label: string,
    o: Outcome,
    want: { checksum: string; rows: string; binlogState: string },
  ) => {
    const problems: string[] = [];
    if (o.error) problems.push(`error ${o.error}`);
    if (o.checksum !== want.checksum) problems.push(`checksum ${o.checksum} != ${want.checksum}`);
    if (o.rows !== want.rows) problems.push(`rows ${o.rows} != ${want.rows}`);
    if (o.binlogState !== want.binlogState) {
      problems.push(`gtid_binlog_state ${o.binlogState} != ${want.binlogState}`);
    }
    if (problems.length) failed = true;
    console.log(
      `  ${label}: ${
        problems.length ? "WRONG: " + problems.join("; ") : "rows, checksum, gtid_binlog_state equal"
      }` +
        `; gtid_slave_pos ${o.slavePos}; own binlog ${(o.ownBinlogBytes / 1048576).toFixed(1)} MiB`,
    );
  };
  for (const [m, os] of results) {
    os.forEach((o, i) =>
      check(`${m} #${i + 1}`, o, {
        checksum: s.sourceChecksum,
        rows: s.sourceRows,
        binlogState: s.sourceState,
      })
    );
  }
  console.log(
    `  (source: checksum ${s.sourceChecksum}, ${s.sourceRows} rows, gtid_binlog_state ${s.sourceState})`,
  );

  // a stop in the middle: a GTID in a middle file
  console.log(
    `\ncorrectness, stop at ${midT.gtid} (file ${midT.file + 1} of ${s.files.length}, ends at ${midT.end}):`,
  );
  const midTarget: Target = { txn: midT, whole: false };
  const midRef = await plain(s, midTarget);
  const wantMid = { checksum: midRef.checksum, rows: midRef.rows, binlogState: midRef.binlogState };
  const midBinlogPos = midRef.binlogState.split(",").find((g) => g.startsWith(midT.gtid.split("-")[0] + "-"));
  if (midBinlogPos !== midT.gtid) {
    failed = true;
    console.log(`  plain: WRONG: stopped at ${midRef.binlogState}, not ${midT.gtid}`);
  }
  check("plain", midRef, wantMid);
  for (const m of METHODS.filter((m) => m !== "plain")) check(m, await runMethod(m, s, midTarget), wantMid);

  if (!values["no-probes"]) {
    console.log("\nprobes (relay logs in the datadir, snapshot state set):");
    const cm = (extra = "", pos = s.snapPos) =>
      `CHANGE MASTER TO MASTER_HOST='127.0.0.1', MASTER_PORT=24099, ${extra}` +
      `RELAY_LOG_FILE='relay-bin.000001', RELAY_LOG_POS=${pos}`;
    const firstFileLast = s.txns.filter((t) => t.file === 0).at(-1) ?? s.txns[0];
    console.log(
      await probe(s, "UNTIL MASTER_GTID_POS with the SQL thread only:", relayCnf({}), [
        cm(),
        `START SLAVE SQL_THREAD UNTIL MASTER_GTID_POS = '${firstFileLast.gtid}'`,
      ], 0),
    );
    console.log(
      await probe(
        s,
        "MASTER_USE_GTID=slave_pos with RELAY_LOG_FILE/POS, then START SLAVE SQL_THREAD:",
        relayCnf({}),
        [
          cm("MASTER_USE_GTID=slave_pos, "),
          "START SLAVE SQL_THREAD",
          `WAIT ${firstFileLast.gtid} 5`,
        ],
        0,
      ),
    );
    console.log(
      await probe(
        s,
        "gtid_ignore_duplicates=ON, relay log from its start (before the snapshot), no MASTER_USE_GTID:",
        [...relayCnf({}), "gtid_ignore_duplicates = ON"],
        [cm("", 4), "START SLAVE SQL_THREAD", `WAIT ${firstFileLast.gtid} 20`],
        0,
      ),
    );
    console.log(
      await probe(
        s,
        `the throwaway server's server_id equal to the source's (${SOURCE_ID}):`,
        relayCnf({ serverId: SOURCE_ID }),
        [
          cm(),
          "START SLAVE SQL_THREAD",
          `WAIT ${firstFileLast.gtid} 60`,
        ],
        0,
      ),
    );
    console.log(
      await probe(
        s,
        "parallel (optimistic, 4 threads), RELAY_LOG_FILE/POS without MASTER_LOG_FILE/POS:",
        relayCnf({ parallel: "optimistic" }),
        [cm(), "START SLAVE SQL_THREAD", `WAIT ${firstFileLast.gtid} 60`],
        0,
      ),
    );
    console.log(
      await probe(s, "log_slave_updates=OFF:", relayCnf({ logSlaveUpdates: false }), [
        cm(),
        "START SLAVE SQL_THREAD",
        `WAIT ${firstFileLast.gtid} 60`,
      ], 0),
    );
  }
} catch (e) {
  failed = true;
  console.error(e);
} finally {
  await cleanup();
  Deno.removeSignalListener("SIGINT", onSignal);
  Deno.removeSignalListener("SIGTERM", onSignal);
}
Deno.exit(failed ? 1 : 0);
