/**
 * Backup and restore throughput and peak memory, per dataset size, against the directory store and a real S3
 * server (versitygw on loopback), next to the raw backup tool on the same data:
 * - `mariabackup --backup --stream=mbstream > /dev/null`, and the same through zstd (the tools alone);
 * - `takeSnapshot()` into each store (mariabackup | zstd | SHA-256 | store), then the read-back check the
 *   periodic task makes before it publishes (`checkStoredBytes()`: the stored object read and hashed again);
 * - the raw restore, `zstd -d < the stored file | mbstream -x` then `mariabackup --prepare` (the tools alone);
 * - `restoreSnapshot()` from each store (store | SHA-256 | zstd -d | mbstream, then --prepare).
 * - unless `--encrypt=false`: the same backups and restores encrypted (BACKUP_ENCRYPTION_KEY: `| age --encrypt`
 *   after zstd, `age --decrypt |` before zstd -d), each beside the raw tools with age in the same run
 *   (`mariabackup | zstd | age -r … > /dev/null`; `age -d < the stored file | zstd -d | mbstream -x`).
 *
 * Throughput is MiB of source datadir per second; "ratio" is our rate over the raw tools' rate measured in the
 * same run (backups against `mariabackup | zstd`, restores against the raw restore). Each backup and restore
 * runs in a child Deno process of its own, with the V8 flags of `deno task autopilot` (read from deno.json:
 * production runs jitless), which reports the CPU time it used itself and its peak RSS (VmHWM): what
 * `autopilot` itself would need (the tools' processes are not counted). The machine has few cores and the
 * tools keep them busy, so the CPU `autopilot` adds shows up as time.
 *
 * Each figure is the median of `--trials` runs (default 3), after one untimed run of the raw tool. The "idle"
 * row is a child that loads the same modules and opens the store, then exits: the baseline RSS.
 *
 * Then, unless `--stall=0`: the primary's longest write stall during a snapshot. A writer on the primary
 * commits single-row INSERTs (autocommit) one after another over TCP and records the longest gap between two
 * consecutive commits: for `--stall-seconds` with no snapshot (the baseline), and while a snapshot is taken on
 * the primary, and on a replica, of `--stall` MB of rows.
 *
 * Run: `deno task bench:backup` (100 MB and 1 GB of rows) or `deno task bench:backup --sizes=1000 --trials=3`.
 * Then, on the largest dataset, the point-in-time recovery figures of bench/pitr_bench.ts (`--binlog-mb=100`;
 * 0 skips them): archive lag, replay rate and a restore to a point, each beside the raw tools.
 * Prints tables; asserts nothing.
 *
 * @module
 */
// deno-lint-ignore-file no-console
import { parseArgs } from "node:util";
import { AwsClient } from "aws4fetch";
import { Secret } from "../src/config.ts";
import mysql from "mysql2/promise";
import { takeSnapshot } from "../src/backup/backup.ts";
import { checkStoredBytes } from "../src/snapshots.ts";
import { restoreSnapshot } from "../src/backup/restore.ts";
import { type Manifest, manifestKey } from "../src/backup/manifest.ts";
import {
  backupCommand,
  compressCommand,
  decompressCommand,
  extractCommand,
  prepareCommand,
} from "../src/backup/tools.ts";
import { LocalStore } from "../src/storage/local.ts";
import { decryptCommand, encryptCommand, openKeyring } from "../src/backup/encryption.ts";
import { S3Store } from "../src/storage/s3.ts";
import type { SnapshotStore } from "../src/storage/store.ts";
import {
  autopilotRunFlags,
  Harness,
  type MariadbNode,
  REPO_ROOT,
  type S3Server,
} from "../tests/integration/harness/mod.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    sizes: { type: "string", default: "100,1000" },
    trials: { type: "string", default: "3" },
    child: { type: "boolean", default: false },
    stall: { type: "string", default: "100" },
    "stall-seconds": { type: "string", default: "5" },
    /** Point-in-time recovery figures after these (bench/pitr_bench.ts): MiB of binlog; 0 skips them. */
    "binlog-mb": { type: "string", default: "100" },
    /** Also the encrypted backups and restores (age), beside the unencrypted ones. */
    encrypt: { type: "string", default: "true" },
  },
});

const trials = Math.max(1, Number(values.trials) || 1);

/** Where a child process finds its store (read from stdin, so the S3 secret never reaches argv). */
type StoreSpec =
  | { kind: "local"; dir: string }
  | { kind: "s3"; endpoint: string; bucket: string; accessKey: string; secretKey: string };

/** What a child process does. */
type Job =
  | { op: "idle"; store: StoreSpec }
  | { op: "backup"; store: StoreSpec; cnf: string; socket: string; version: string; identity?: string }
  | { op: "restore"; store: StoreSpec; manifest: Manifest; datadir: string; identity?: string };

/** What a child process reports. */
interface JobResult {
  ms: number;
  /** Backups: the read-back check's time, after `ms`. */
  checkMs?: number;
  /** CPU seconds of the child itself (not the tools it runs) during `ms`. */
  cpu?: { user: number; system: number };
  peakKiB: number;
  manifest?: Manifest;
}

function openStore(spec: StoreSpec): SnapshotStore {
  return spec.kind === "local" ? new LocalStore(spec.dir) : new S3Store({
    endpoint: spec.endpoint,
    region: "us-east-1",
    bucket: spec.bucket,
    prefix: "bench/",
    forcePathStyle: true,
    accessKeyId: new Secret(spec.accessKey),
    secretAccessKey: new Secret(spec.secretKey),
  });
}

/** CPU seconds this process has used, user and system, from /proc (clock ticks of 10 ms). */
async function cpuSeconds(): Promise<{ user: number; system: number }> {
  const fields = (await Deno.readTextFile("/proc/self/stat")).split(") ")[1].split(" ");
  return { user: Number(fields[11]) / 100, system: Number(fields[12]) / 100 };
}

/** CPU used since `from`. */
async function cpuSince(from: { user: number; system: number }): Promise<{ user: number; system: number }> {
  const now = await cpuSeconds();
  return { user: now.user - from.user, system: now.system - from.system };
}

async function peakKiB(pid: number | "self"): Promise<number> {
  const status = await Deno.readTextFile(`/proc/${pid}/status`);
  return Number(/VmHWM:\s+(\d+)/.exec(status)?.[1] ?? 0);
}

/** The child: runs one job, prints its result as JSON. */
async function child(): Promise<void> {
  const job: Job = JSON.parse(await new Response(Deno.stdin.readable).text());
  const store = openStore(job.store);
  // The bench's own throwaway key (on stdin, never in argv); opening it runs age-keygen -y once, before timing.
  const keyring = job.op !== "idle" && job.identity !== undefined
    ? await openKeyring({ identity: new Secret(job.identity) })
    : undefined;
  const cpu0 = await cpuSeconds();
  const t0 = performance.now();
  let manifest: Manifest | undefined;
  if (job.op === "backup") {
    manifest = await takeSnapshot({
      store,
      flavour: "mariadb",
      cnfPath: job.cnf,
      socket: job.socket,
      user: "root",
      nodeName: "bench",
      serverVersion: job.version,
      namePattern: `bench-${job.store.kind}-%Y-%m-%dT%H-%M-%SZ`,
      ...(keyring ? { keyring } : {}),
    });
    const ms = performance.now() - t0;
    const cpu = await cpuSince(cpu0);
    const t1 = performance.now();
    await checkStoredBytes(store, manifest);
    const checkMs = performance.now() - t1;
    console.log(
      JSON.stringify({ ms, checkMs, cpu, peakKiB: await peakKiB("self"), manifest } satisfies JobResult),
    );
    return;
  } else if (job.op === "restore") {
    await restoreSnapshot({
      store,
      manifest: job.manifest,
      datadir: job.datadir,
      flavour: "mariadb",
      ...(keyring ? { keyring } : {}),
    });
  }
  const ms = performance.now() - t0;
  const result: JobResult = {
    ms,
    cpu: await cpuSince(cpu0),
    peakKiB: await peakKiB("self"),
    manifest,
  };
  console.log(JSON.stringify(result));
}

/** The V8 flags of `deno task autopilot` (production runs jitless), so that the children run as it does. */
const v8Flags = autopilotRunFlags().filter((a) => a.startsWith("--v8-flags="));

async function runJob(job: Job): Promise<JobResult> {
  const proc = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", ...v8Flags, "bench/backup_bench.ts", "--child"],
    cwd: REPO_ROOT,
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const writer = proc.stdin.getWriter();
  await writer.write(new TextEncoder().encode(JSON.stringify(job)));
  await writer.close();
  const out = await proc.output();
  const text = new TextDecoder();
  if (!out.success) throw new Error(`${job.op} failed: ${text.decode(out.stderr)}`);
  return JSON.parse(text.decode(out.stdout).trim().split("\n").at(-1)!);
}

/** Times a shell pipeline (argv only; `$@` is the backup command). */
async function timeRaw(script: string, argv: string[]): Promise<number> {
  const t0 = performance.now();
  const out = await new Deno.Command("bash", {
    args: ["-c", `set -o pipefail; ${script}`, "bash", ...argv],
    stdout: "null",
    stderr: "piped",
  }).output();
  const ms = performance.now() - t0;
  if (!out.success) throw new Error(`raw backup failed: ${new TextDecoder().decode(out.stderr).slice(-500)}`);
  return ms;
}

async function fill(node: MariadbNode, megabytes: number): Promise<void> {
  // About 1 KB a row of hex digests: compresses about 2:1, like much real data (as bench/lifecycle_bench.ts).
  const payload = Array.from({ length: 28 }, (_, i) => `MD5(seq * ${i + 1})`).join(", ");
  await node.sql(
    "CREATE DATABASE IF NOT EXISTS app; " +
      "CREATE TABLE IF NOT EXISTS app.big (id INT PRIMARY KEY, payload VARCHAR(1024) NOT NULL)",
  );
  const rows = megabytes * 1000;
  const chunk = 50_000;
  for (let from = 1; from <= rows; from += chunk) {
    const to = Math.min(rows, from + chunk - 1);
    await node.sql(`INSERT INTO app.big SELECT seq, CONCAT(${payload}) FROM app.seq_${from}_to_${to}`);
  }
}

async function createBucket(s3: S3Server, bucket: string): Promise<void> {
  const client = new AwsClient({
    accessKeyId: s3.accessKey,
    secretAccessKey: s3.secretKey,
    service: "s3",
    region: s3.region,
  });
  const res = await client.fetch(`${s3.endpoint}/${bucket}`, { method: "PUT" });
  const answer = await res.text();
  if (!res.ok) throw new Error(`cannot create bucket ${bucket}: HTTP ${res.status} ${answer}`);
}

async function repeat<T>(fn: () => Promise<T>): Promise<T[]> {
  const out: T[] = [];
  for (let i = 0; i < trials; i++) out.push(await fn());
  return out;
}

function median(xs: number[]): number {
  return [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
}

function maxPeak(results: JobResult[]): number {
  return Math.max(...results.map((r) => r.peakKiB));
}

/** The median CPU time the children used themselves, and of it the system's (the kernel's work for them). */
function cpu(results: JobResult[]): string {
  const all = median(results.map((r) => (r.cpu?.user ?? 0) + (r.cpu?.system ?? 0)));
  return `${all.toFixed(2)} s (${median(results.map((r) => r.cpu?.system ?? 0)).toFixed(2)} s system)`;
}

function mib(kib: number): string {
  return `${(kib / 1024).toFixed(0)} MiB`;
}

async function duKiB(path: string): Promise<number> {
  const out = await new Deno.Command("du", { args: ["-sk", path], stdout: "piped" }).output();
  return Number(new TextDecoder().decode(out.stdout).split("\t")[0]);
}

/** Our rate over the raw tools' rate (the same data, this run): their time over ours. */
function ratio(rawMs: number, oursMs: number): string {
  return `${(100 * rawMs / oursMs).toFixed(0)} %`;
}

async function main(): Promise<void> {
  const sizes = values.sizes!.split(",").map(Number).filter((n) => n > 0);
  console.log(
    `autopilot-mysql backup and restore figures (MariaDB, this machine; median of ${trials} runs; ` +
      `restore includes mariabackup --prepare; children run with ${v8Flags.join(" ") || "no V8 flags"})\n`,
  );
  console.log(
    "| dataset | what | time | MiB/s of datadir | ratio (ours / raw) | CPU (autopilot) | peak RSS (autopilot) |",
  );
  console.log("| --- | --- | --- | --- | --- | --- | --- |");
  for (const size of sizes) await sizeFigures(size);
  const stallMb = Number(values.stall);
  if (stallMb > 0) await stallFigures(stallMb, Number(values["stall-seconds"]) || 5);
}

const fmtS = (ms: number) => `${(ms / 1000).toFixed(2)} s`;

async function sizeFigures(size: number): Promise<void> {
  await using h = await Harness.create();
  const node = await h.startNode(1, { extraCnf: { innodb_buffer_pool_size: "256M" } });
  const s3 = await h.startS3();
  await createBucket(s3, "bench");
  await fill(node, size);
  await node.sql("FLUSH TABLES");
  const datadirMiB = (await duKiB(node.dataDir)) / 1024;
  const version = (await node.sql("SELECT VERSION()"))[0][0];
  const rate = (ms: number) => (datadirMiB / (ms / 1000)).toFixed(0);
  const rows: string[][] = [];

  const argv = backupCommand("mariadb", { defaultsFile: node.cnf, user: "root", socket: node.socket });
  const zstd = compressCommand().join(" ");
  await timeRaw('"$@" > /dev/null', argv); // warm-up: the first run reads the datadir from disk
  const raw = median(await repeat(() => timeRaw('"$@" > /dev/null', argv)));
  rows.push(["raw: mariabackup --stream=mbstream > /dev/null", fmtS(raw), rate(raw), "-", "-", "-"]);
  // The raw tools run just before each of our runs, so that the machine's ups and downs reach both alike.
  const rawZstdMs: number[] = [];
  const rawZstdRow = rows.push([]) - 1;
  // The same into a file in the directory store's directory, synced: what storing the bytes costs by itself.
  const rawFileMs: number[] = [];
  const rawFile = `${h.dir}/raw-backup.xbstream.zst`;
  const rawFileRow = rows.push([]) - 1;

  const stores: [string, StoreSpec][] = [
    ["directory", { kind: "local", dir: `${h.dir}/snapshots` }],
    ["S3 (versitygw, loopback)", {
      kind: "s3",
      endpoint: s3.endpoint,
      bucket: "bench",
      accessKey: s3.accessKey,
      secretKey: s3.secretKey,
    }],
  ];
  let stored = 0;
  // A throwaway key for the encrypted runs, and its identity in a file for the raw `age -d`.
  const keyText = new TextDecoder().decode(
    (await new Deno.Command("age-keygen", { stdout: "piped" }).output()).stdout,
  );
  const identity = keyText.split("\n").find((l) => l.startsWith("AGE-SECRET-KEY-1"))!;
  const recipient = /public key: (age1\w+)/.exec(keyText)![1];
  const identityFile = `${h.dir}/bench-identity.txt`;
  await Deno.writeTextFile(identityFile, `${identity}\n`, { mode: 0o600 });
  const variants = values.encrypt === "false" ? [false] : [false, true];
  /** The unencrypted backup's and restore's median times, per store: what encryption costs is read against them. */
  const plain = new Map<string, { backupMs: number; restoreMs: number }>();
  /** The directory store's copy of each variant's snapshot: the raw restores read it. */
  const localFiles = new Map<boolean, string>();
  for (const [label0, store] of stores) {
    const idle = await runJob({ op: "idle", store });
    rows.push([`idle child (baseline), ${label0}`, "-", "-", "-", "-", mib(idle.peakKiB)]);
    for (const encrypted of variants) {
      const label = encrypted ? `${label0}, encrypted (age)` : label0;
      const key = encrypted ? { identity } : {};
      const age = encrypted ? ` \\| ${encryptCommand([recipient]).join(" ")}` : "";
      const rawBackup = encrypted
        ? `"$@" | ${zstd} | ${encryptCommand([recipient]).join(" ")} > /dev/null`
        : `"$@" | ${zstd} > /dev/null`;
      const pairedRaw: number[] = [];
      let kept = false;
      const backups = await repeat(async () => {
        pairedRaw.push(await timeRaw(rawBackup, argv));
        if (store.kind === "local" && !encrypted) {
          rawFileMs.push(await timeRaw(`"$@" | ${zstd} > "${rawFile}" && sync "${rawFile}"`, argv));
          await Deno.remove(rawFile);
        }
        await new Promise((r) => setTimeout(r, 1100)); // snapshot names have 1 s resolution
        const result = await runJob({
          op: "backup",
          store,
          cnf: node.cnf,
          socket: node.socket,
          version,
          ...key,
        });
        // Only the first is kept (for the restores): each backup then writes into memory the page cache had
        // used before, as the raw tools' file does (on this VM, pages never used yet cost much more to fill).
        if (kept) await openStore(store).delete([manifestKey(result.manifest!.name), result.manifest!.key]);
        kept = true;
        return result;
      });
      if (!encrypted) rawZstdMs.push(...pairedRaw);
      const rawZstd = median(pairedRaw);
      const manifest = backups[0].manifest!;
      if (!encrypted) stored = manifest.size;
      if (encrypted) {
        rows.push([
          `raw: mariabackup --stream=mbstream \\| ${zstd}${age} > /dev/null (before each backup to ${label0})`,
          fmtS(rawZstd),
          rate(rawZstd),
          "(this backup's reference)",
          "-",
          "-",
        ]);
      }
      const backupMs = median(backups.map((b) => b.ms));
      const cost = (ms: number, of: "backupMs" | "restoreMs") =>
        encrypted
          ? `; ${ratio(plain.get(label0)![of], ms)} of the unencrypted ${of.slice(0, -2)}'s rate`
          : "";
      const checkMs = median(backups.map((b) => b.checkMs ?? 0));
      const bothMs = median(backups.map((b) => b.ms + (b.checkMs ?? 0)));
      const peak = mib(maxPeak(backups));
      const intoFile = store.kind === "local" && !encrypted
        ? ` (${ratio(median(rawFileMs), backupMs)} of the raw tools into a file)`
        : "";
      rows.push([
        `backup to ${label}`,
        fmtS(backupMs),
        rate(backupMs),
        ratio(rawZstd, backupMs) + intoFile + cost(backupMs, "backupMs"),
        cpu(backups),
        peak,
      ]);
      rows.push([`read-back check (${label})`, fmtS(checkMs), "-", "-", "-", "-"]);
      rows.push([
        `backup + read-back check (${label})`,
        fmtS(bothMs),
        rate(bothMs),
        ratio(rawZstd, bothMs),
        "-",
        "-",
      ]);
      // The raw restore reads the directory store's copy (the S3 store's object holds the same bytes).
      if (store.kind === "local") localFiles.set(encrypted, `${store.dir}/${manifest.key}`);
      const localFile = localFiles.get(encrypted);
      const rawDir = `${h.dir}/raw-restore`;
      const unzstd = encrypted
        ? `${decryptCommand(identityFile).join(" ")} < "$2" | ${decompressCommand().join(" ")}`
        : `${decompressCommand().join(" ")} < "$2"`;
      const script = `mkdir -p "$1" && ${unzstd} | ${extractCommand("mariadb", rawDir).join(" ")} && ${
        prepareCommand("mariadb", rawDir).join(" ")
      } 2>/dev/null`;
      const pairedRawRestore: number[] = [];
      const restores = await repeat(async () => {
        pairedRawRestore.push(await timeRaw(script, [rawDir, localFile!]));
        await Deno.remove(rawDir, { recursive: true });
        const datadir = `${h.dir}/restored-${store.kind}/data`;
        const result = await runJob({ op: "restore", store, manifest, datadir, ...key });
        await Deno.remove(`${h.dir}/restored-${store.kind}`, { recursive: true });
        return result;
      });
      const rawRestore = median(pairedRawRestore);
      rows.push([
        `raw: ${
          encrypted ? "age -d \\| " : ""
        }zstd -d \\| mbstream -x, then mariabackup --prepare (beside the restores from ${label})`,
        fmtS(rawRestore),
        rate(rawRestore),
        "(the restores' reference)",
        "-",
        "-",
      ]);
      const restoreMs = median(restores.map((r) => r.ms));
      if (!encrypted) plain.set(label0, { backupMs, restoreMs });
      rows.push([
        `restore from ${label}`,
        fmtS(restoreMs),
        rate(restoreMs),
        ratio(rawRestore, restoreMs) + cost(restoreMs, "restoreMs"),
        cpu(restores),
        mib(maxPeak(restores)),
      ]);
    }
  }
  const allRaw = median(rawZstdMs);
  rows[rawZstdRow] = [
    `raw: mariabackup --stream=mbstream \\| ${zstd} > /dev/null (before each backup)`,
    fmtS(allRaw),
    rate(allRaw),
    "(the backups' reference)",
    "-",
    "-",
  ];
  const fileRaw = median(rawFileMs);
  rows[rawFileRow] = [
    `raw: mariabackup --stream=mbstream \\| ${zstd} > a file, then sync (before each backup to the directory)`,
    fmtS(fileRaw),
    rate(fileRaw),
    "-",
    "-",
    "-",
  ];
  const dataset = `${size} MB of rows (datadir ${datadirMiB.toFixed(0)} MiB, snapshot ${
    (stored / 2 ** 20).toFixed(0)
  } MiB)`;
  for (const [i, row] of rows.entries()) console.log(`| ${i === 0 ? dataset : ""} | ${row.join(" | ")} |`);
}

/** Commits single-row INSERTs on `node` one after another until stopped; the longest gap between two. */
async function writer(
  node: MariadbNode,
): Promise<{ stop(): Promise<{ maxGapMs: number; commits: number }> }> {
  const conn = await mysql.createConnection({
    host: node.address,
    port: node.port,
    user: node.admin.user,
    password: node.admin.password,
  });
  await conn.query("CREATE TABLE IF NOT EXISTS app.w (id INT AUTO_INCREMENT PRIMARY KEY, v INT NOT NULL)");
  let stopping = false;
  let maxGapMs = 0;
  let commits = 0;
  const loop = (async () => {
    let last = performance.now();
    while (!stopping) {
      await conn.query("INSERT INTO app.w (v) VALUES (1)");
      const now = performance.now();
      maxGapMs = Math.max(maxGapMs, now - last);
      last = now;
      commits++;
    }
  })();
  return {
    async stop() {
      stopping = true;
      await loop;
      await conn.end();
      return { maxGapMs, commits };
    },
  };
}

/**
 * The primary's longest write stall: a writer on the primary with no snapshot, then while a snapshot is taken
 * on the primary, then while one is taken on a replica (each `trials` times; the writer runs from 0.5 s before
 * the snapshot to 0.5 s after it).
 */
async function stallFigures(sizeMb: number, seconds: number): Promise<void> {
  await using h = await Harness.create();
  const [primary, replica] = await Promise.all([
    h.startNode(1, { extraCnf: { innodb_buffer_pool_size: "256M" } }),
    h.startNode(2, { extraCnf: { innodb_buffer_pool_size: "256M" }, readOnly: true }),
  ]);
  await replica.sql(
    `CHANGE MASTER TO MASTER_HOST='${primary.address}', MASTER_PORT=${primary.port},
       MASTER_USER='${primary.repl.user}', MASTER_PASSWORD='${primary.repl.password}',
       MASTER_USE_GTID=slave_pos, MASTER_CONNECT_RETRY=1;
     START SLAVE;`,
  );
  await fill(primary, sizeMb);
  const version = (await primary.sql("SELECT VERSION()"))[0][0];
  const store: StoreSpec = { kind: "local", dir: `${h.dir}/snapshots` };
  const caughtUp = async () => {
    const [[gtid]] = await primary.sql("SELECT @@gtid_binlog_pos");
    await replica.sql(`SELECT MASTER_GTID_WAIT('${gtid}', 600)`);
  };
  await caughtUp();
  const pause = (ms: number) => new Promise((r) => setTimeout(r, ms));
  const during = async (on: MariadbNode) => {
    await pause(1100); // snapshot names have 1 s resolution
    const w = await writer(primary);
    await pause(500);
    const job = await runJob({ op: "backup", store, cnf: on.cnf, socket: on.socket, version });
    await pause(500);
    const r = await w.stop();
    await caughtUp();
    return { ...r, ms: job.ms };
  };
  const baseline = await repeat(async () => {
    const w = await writer(primary);
    await pause(seconds * 1000);
    return await w.stop();
  });
  const onPrimary = await repeat(() => during(primary));
  const onReplica = await repeat(() => during(replica));
  const ms = (x: number) => `${x.toFixed(0)} ms`;
  const line = (what: string, runs: { maxGapMs: number; commits: number }[], snap?: { ms: number }[]) =>
    console.log(
      `| ${what} | ${ms(median(runs.map((r) => r.maxGapMs)))} | ${
        ms(Math.max(...runs.map((r) => r.maxGapMs)))
      } | ${snap ? fmtS(median(snap.map((s) => s.ms))) : "-"} |`,
    );
  console.log(
    `\nThe primary's longest write stall (${sizeMb} MB of rows; a writer on the primary commits single-row ` +
      `INSERTs back to back over TCP; ${trials} runs)\n`,
  );
  console.log("| writer on the primary | longest gap between commits (median) | worst | snapshot took |");
  console.log("| --- | --- | --- | --- |");
  line(`no snapshot (baseline, ${seconds} s)`, baseline);
  line("snapshot taken on the primary", onPrimary, onPrimary);
  line("snapshot taken on a replica", onReplica, onReplica);
}

/** The point-in-time recovery figures, on the largest dataset: bench/pitr_bench.ts in a process of its own. */
async function pitr(): Promise<void> {
  const mib = Number(values["binlog-mb"]);
  if (!(mib > 0)) return;
  const snapshotMb = Math.max(...values.sizes!.split(",").map(Number).filter((n) => n > 0));
  console.log("");
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "bench/pitr_bench.ts", `--snapshot-mb=${snapshotMb}`, `--binlog-mb=${mib}`],
    cwd: REPO_ROOT,
    stdout: "inherit",
    stderr: "inherit",
  }).output();
  if (!out.success) throw new Error("bench/pitr_bench.ts failed");
}

if (values.child) await child();
else {
  try {
    await main();
  } catch (e) {
    // `await using` wraps the run's own failure when disposing fails too: print the run's first.
    if (e instanceof SuppressedError) {
      console.error("the run failed:", e.suppressed, "\nthen disposing failed:", e.error);
    }
    throw e;
  }
  await pitr();
}
